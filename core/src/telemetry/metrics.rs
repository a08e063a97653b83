//! Pattern snapshots and events as metrics, through the `metrics` crate's
//! facade (feature `metrics`): whatever recorder the application installed
//! (`metrics-exporter-prometheus`, an OpenTelemetry bridge, ...) gets them.
//!
//! A [`Collector`] reports every registered instance (and the unregistered
//! ones it [watches](Collector::watch)) each time [`collect`](Collector::collect)
//! runs: the counters as absolute values, the gauges as set values. As the
//! `metrics-process` crate does, the application calls `collect` when it
//! suits it: before rendering a scrape, or from a timer. While at least one
//! `Collector` exists, events of every instance in the process are counted
//! as they happen (`stockade.events`, `stockade.retry.delay`); with none,
//! no event is built for metrics at all.
//!
//! | metric | type | unit | attributes |
//! | --- | --- | --- | --- |
//! | `stockade.<pattern type>.calls` | counter | `{call}` | `stockade.pattern.name`, `stockade.outcome` (`success`, `failure`, `rejected`, `timeout`, `ignored`) |
//! | `stockade.<pattern type>.retries` | counter | `{retry}` | `stockade.pattern.name` |
//! | `stockade.<pattern type>.in_flight` | gauge | `{call}` | `stockade.pattern.name` |
//! | `stockade.<pattern type>.queue_depth` | gauge | `{call}` | `stockade.pattern.name` |
//! | `stockade.<pattern type>.fallback_decisions` | counter | `{decision}` | `stockade.pattern.name` (feature `redis` only) |
//! | `stockade.circuit_breaker.state` | gauge | `1` | `stockade.pattern.name`, `stockade.circuit_breaker.state` (1 for the current state, 0 for the others) |
//! | `stockade.events` | counter | `{event}` | `stockade.pattern.type`, `stockade.pattern.name`, `stockade.event.kind` |
//! | `stockade.retry.delay` | histogram | `s` | `stockade.pattern.name` |
//!
//! Every pattern reports every [`Metrics`] field (those it does not use stay
//! 0), so a pattern type added later is reported without a table to
//! extend. The outcomes add up to the snapshot's `calls`: `ignored` is what
//! `calls` holds beyond successes, failures, rejections and timeouts (a
//! breaker's ignored outcomes).
//!
//! # Examples
//!
//! ```
//! use stockade::prelude::*;
//! use stockade::telemetry::metrics::Collector;
//!
//! // In a program: install a recorder first, e.g.
//! // metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
//! let collector = Collector::new();
//! collector.describe();
//! let local = Bulkhead::unregistered("doc-local", BulkheadConfig::DEFAULT)?;
//! let local = std::sync::Arc::new(local);
//! collector.watch(&local); // not registered: watched explicitly
//! local.execute(|| Ok::<_, &str>(())).unwrap();
//! collector.collect(); // e.g. right before rendering a scrape
//! # Ok::<(), stockade::blocking::Error>(())
//! ```

use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::HashSet;
use std::string::String;
use std::sync::{Arc, Weak};
use std::vec::Vec;

use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::{breaker_state, event_kind, metric, names, pattern_type};
use crate::blocking::{Event, EventKind, Metrics, Observed, PatternKind, registered_instances};
use crate::breaker::BreakerState;
use crate::sync::unmodelled::Mutex;

/// Every breaker state, for the state gauge.
const BREAKER_STATES: [BreakerState; 5] = [
    BreakerState::Closed,
    BreakerState::Open,
    BreakerState::HalfOpen,
    BreakerState::ForcedOpen,
    BreakerState::Disabled,
];

/// Live collectors: while nonzero, events are counted.
static COLLECTORS: AtomicUsize = AtomicUsize::new(0);

/// `true` while a [`Collector`] exists: one relaxed load.
#[inline(always)]
pub(crate) fn counting_events() -> bool {
    COLLECTORS.load(Ordering::Relaxed) != 0
}

/// Counts an event (only while a collector exists).
pub(crate) fn record_event(event: &Event) {
    if !counting_events() {
        return;
    }
    let name: String = String::from(&*event.name);
    counter!(
        names::EVENTS,
        names::PATTERN_TYPE => pattern_type(event.pattern),
        names::PATTERN_NAME => name.clone(),
        names::EVENT_KIND => event_kind(&event.kind),
    )
    .increment(1);
    if let EventKind::Retry { delay, .. } = &event.kind {
        histogram!(names::RETRY_DELAY, names::PATTERN_NAME => name).record(delay.as_secs_f64());
    }
}

/// Reports pattern snapshots to the installed `metrics` recorder; see the
/// [module](self) for the names.
///
/// Instances are told apart by type and name: two instances of one type
/// with the same name (a registered one and a watched unregistered one)
/// report to the same series, and the one collected last wins. An
/// instance both registered and watched is reported once.
pub struct Collector {
    watched: Mutex<Vec<Weak<dyn Observed>>>,
    described: Mutex<HashSet<PatternKind>>,
}

impl Default for Collector {
    fn default() -> Self {
        Collector::new()
    }
}

impl core::fmt::Debug for Collector {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Collector")
            .field("watched", &self.watched.lock().len())
            .finish()
    }
}

impl Collector {
    /// A collector of every registered instance (as they are at each
    /// [`collect`](Self::collect)); from now until it is dropped, events of
    /// every instance are counted.
    pub fn new() -> Collector {
        COLLECTORS.fetch_add(1, Ordering::Relaxed);
        Collector {
            watched: Mutex::new(Vec::new()),
            described: Mutex::new(HashSet::new()),
        }
    }

    /// Reports `instance` too (one no registry knows, e.g. made with
    /// `unregistered`), until it is dropped or disposed.
    pub fn watch<P: Observed + 'static>(&self, instance: &Arc<P>) {
        let weak: Weak<dyn Observed> = Arc::downgrade(instance) as Weak<dyn Observed>;
        self.watched.lock().push(weak);
    }

    /// Describes the metrics (unit, help text) of the pattern types of the
    /// live instances to the recorder, once per type and collector;
    /// [`collect`](Self::collect) does the same for each type it meets.
    /// Exporters that print help text (Prometheus's `# HELP`) show it.
    pub fn describe(&self) {
        for instance in self.instances() {
            self.describe_kind(instance.kind());
        }
    }

    /// Reports the current snapshot of every registered and watched live
    /// instance: counters with `absolute`, gauges with `set`.
    pub fn collect(&self) {
        for instance in self.instances() {
            self.describe_kind(instance.kind());
            report(instance.kind(), instance.name(), &instance.metrics());
        }
    }

    /// The live instances, each once.
    fn instances(&self) -> Vec<Arc<dyn Observed>> {
        let mut all = registered_instances();
        {
            let mut watched = self.watched.lock();
            watched.retain(|w| w.upgrade().is_some_and(|o| !o.is_disposed()));
            all.extend(watched.iter().filter_map(Weak::upgrade));
        }
        let mut seen = HashSet::new();
        all.retain(|o| seen.insert(Arc::as_ptr(o).cast::<u8>() as usize));
        all
    }

    fn describe_kind(&self, kind: PatternKind) {
        if !self.described.lock().insert(kind) {
            return;
        }
        let t = pattern_type(kind);
        describe_counter!(
            metric(kind, names::CALLS),
            Unit::Count,
            std::format!("Calls of a {t} that finished, by outcome")
        );
        describe_counter!(
            metric(kind, names::RETRIES),
            Unit::Count,
            std::format!("Retries a {t} performed")
        );
        describe_gauge!(
            metric(kind, names::IN_FLIGHT),
            Unit::Count,
            std::format!("Calls a {t} is running now")
        );
        describe_gauge!(
            metric(kind, names::QUEUE_DEPTH),
            Unit::Count,
            std::format!("Callers waiting in a {t}'s queue now")
        );
        #[cfg(feature = "redis")]
        describe_counter!(
            metric(kind, names::FALLBACK_DECISIONS),
            Unit::Count,
            std::format!("Decisions a Redis-backed {t} took under its fallback")
        );
        if kind == PatternKind::CircuitBreaker {
            describe_gauge!(
                names::BREAKER_STATE_METRIC,
                Unit::Count,
                "1 for the circuit breaker's current state, 0 for the others"
            );
        }
        describe_counter!(
            names::EVENTS,
            Unit::Count,
            "Events the patterns emitted, by kind"
        );
        describe_histogram!(
            names::RETRY_DELAY,
            Unit::Seconds,
            "The back-off before each retry"
        );
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        COLLECTORS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One instance's snapshot as metrics.
fn report(kind: PatternKind, name: &str, m: &Metrics) {
    let calls = metric(kind, names::CALLS);
    let known = m
        .successes
        .wrapping_add(m.failures)
        .wrapping_add(m.rejections)
        .wrapping_add(m.timeouts);
    for (outcome, value) in [
        ("success", m.successes),
        ("failure", m.failures),
        ("rejected", m.rejections),
        ("timeout", m.timeouts),
        ("ignored", m.calls.saturating_sub(known)),
    ] {
        counter!(
            calls.clone(),
            names::PATTERN_NAME => String::from(name),
            names::OUTCOME => outcome,
        )
        .absolute(value);
    }
    counter!(metric(kind, names::RETRIES), names::PATTERN_NAME => String::from(name))
        .absolute(m.retries);
    gauge!(metric(kind, names::IN_FLIGHT), names::PATTERN_NAME => String::from(name))
        .set(m.in_flight as f64);
    gauge!(metric(kind, names::QUEUE_DEPTH), names::PATTERN_NAME => String::from(name))
        .set(m.queue_depth as f64);
    #[cfg(feature = "redis")]
    counter!(metric(kind, names::FALLBACK_DECISIONS), names::PATTERN_NAME => String::from(name))
        .absolute(m.fallback_decisions);
    if let Some(current) = m.state {
        for state in BREAKER_STATES {
            gauge!(
                names::BREAKER_STATE_METRIC,
                names::PATTERN_NAME => String::from(name),
                names::BREAKER_STATE => breaker_state(state),
            )
            .set(if state == current { 1.0 } else { 0.0 });
        }
    }
}
