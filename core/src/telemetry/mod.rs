//! Telemetry for operators: pattern metrics through the `metrics` crate's
//! facade (feature `metrics`) and events and spans through `tracing`
//! (feature `tracing`). The names and the functions that build them are
//! here with `std` alone, for exporters of other kinds (the C library's
//! Prometheus text, `stockade_prometheus_write`, is built from them).
//!
//! The names are documented once, in `docs/telemetry.md` of the
//! repository, and are the constants of [`names`]: OpenTelemetry style
//! (lowercase, dot-separated, units in UCUM, no `_total` in a counter's
//! name). The Python package's `stockade.prometheus` collector and the C
//! library's `stockade_prometheus_write` use the same names. A pattern's type and an event's kind appear as the snake-case
//! form of the [`PatternKind`] and [`EventKind`] variant
//! (`circuit_breaker`, `state_changed`), as in the Python and C bindings:
//! [`pattern_type()`] and [`event_kind()`].
//!
//! Nothing here costs anything while nobody listens: without a
//! `metrics::Collector` (feature `metrics`) no event is built for
//! metrics, and without a `tracing` subscriber interested in the target
//! `stockade` each event site and each execution pays one interest check.
//!
//! # Examples
//!
//! The README's example: a Prometheus scrape of every registered pattern
//! (`metrics-exporter-prometheus` here; any `metrics` recorder works).
//!
//! ```
//! # #[cfg(feature = "metrics")] {
//! use metrics_exporter_prometheus::PrometheusBuilder;
//! use stockade::prelude::*;
//! use stockade::telemetry::metrics::Collector;
//!
//! let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
//! let collector = Collector::new(); // every registered pattern, and events
//! let breaker = CircuitBreaker::new("db", BreakerConfig::DEFAULT)?;
//! breaker.execute(|| Ok::<_, &str>(())).unwrap();
//! collector.collect(); // e.g. in the /metrics handler, before rendering
//! let scrape = prometheus.render();
//! assert!(scrape.contains(
//!     r#"stockade_circuit_breaker_calls{stockade_pattern_name="db",stockade_outcome="success"} 1"#
//! ));
//! # }
//! # Ok::<(), stockade::blocking::Error>(())
//! ```

use core::fmt::{self, Write};
use std::string::String;

use crate::blocking::{EventKind, PatternKind};
use crate::breaker::BreakerState;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "tracing")]
pub(crate) mod trace;

/// The names of the metrics, attributes, spans and events (see
/// `docs/telemetry.md` for types, units and what a Prometheus scrape shows).
/// Metric names with a pattern type in them are built by [`metric`].
pub mod names {
    /// Attribute: the pattern's type ([`pattern_type`](super::pattern_type)),
    /// on events and spans.
    pub const PATTERN_TYPE: &str = "stockade.pattern.type";
    /// Attribute: the instance's name.
    pub const PATTERN_NAME: &str = "stockade.pattern.name";
    /// Attribute: how a call ended (`success`, `failure`, `rejected`,
    /// `timeout`, `ignored`).
    pub const OUTCOME: &str = "stockade.outcome";
    /// Attribute: an event's kind ([`event_kind`](super::event_kind)).
    pub const EVENT_KIND: &str = "stockade.event.kind";
    /// Attribute: a circuit breaker's state (`closed`, `open`,
    /// `half_open`, `forced_open`, `disabled`); on a `state_changed` event,
    /// the state after the change.
    pub const BREAKER_STATE: &str = "stockade.circuit_breaker.state";
    /// Attribute: on a `state_changed` event, the state before the change.
    pub const BREAKER_PREVIOUS_STATE: &str = "stockade.circuit_breaker.previous_state";

    /// Metric suffix (counter, `{call}`): calls that finished, by
    /// [`OUTCOME`]: `stockade.<pattern type>.calls`.
    pub const CALLS: &str = "calls";
    /// Metric suffix (counter, `{retry}`): retries performed.
    pub const RETRIES: &str = "retries";
    /// Metric suffix (gauge, `{call}`): calls running now.
    pub const IN_FLIGHT: &str = "in_flight";
    /// Metric suffix (gauge, `{call}`): callers waiting in the queue now.
    pub const QUEUE_DEPTH: &str = "queue_depth";
    /// Metric suffix (counter, `{decision}`): decisions a Redis-backed
    /// pattern took under its fallback.
    pub const FALLBACK_DECISIONS: &str = "fallback_decisions";
    /// Metric (gauge, `1`): 1 for the breaker's current
    /// [`BREAKER_STATE`], 0 for the others.
    pub const BREAKER_STATE_METRIC: &str = "stockade.circuit_breaker.state";
    /// Metric (counter, `{event}`): events emitted, by [`PATTERN_TYPE`],
    /// [`PATTERN_NAME`] and [`EVENT_KIND`].
    pub const EVENTS: &str = "stockade.events";
    /// Metric (histogram, `s`): the back-off before each retry.
    pub const RETRY_DELAY: &str = "stockade.retry.delay";

    /// Span: one execution of a protected call, from admission to outcome.
    pub const EXECUTE_SPAN: &str = "stockade.execute";
    /// The `tracing` target of every span and event.
    pub const TARGET: &str = "stockade";
}

/// `stockade.<pattern type>.<suffix>`, e.g.
/// `metric(PatternKind::CircuitBreaker, names::CALLS)` is
/// `"stockade.circuit_breaker.calls"`.
pub fn metric(kind: PatternKind, suffix: &str) -> String {
    let mut name = String::from("stockade.");
    push_snake(&mut name, &kind);
    name.push('.');
    name.push_str(suffix);
    name
}

/// A pattern type's name: its [`PatternKind`] variant in snake case
/// (`CircuitBreaker` → `circuit_breaker`), as in the Python and C bindings.
pub fn pattern_type(kind: PatternKind) -> String {
    let mut name = String::new();
    push_snake(&mut name, &kind);
    name
}

/// An event kind's name: its [`EventKind`] variant in snake case
/// (`StateChanged` → `state_changed`), as the Python binding's `kind`.
pub fn event_kind(kind: &EventKind) -> String {
    let mut name = String::new();
    push_snake(&mut name, kind);
    name
}

/// A breaker state's name, as [`names::BREAKER_STATE`] shows it.
pub const fn breaker_state(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
        BreakerState::ForcedOpen => "forced_open",
        BreakerState::Disabled => "disabled",
    }
}

/// Appends the variant name that starts `value`'s `Debug` form, in snake
/// case. Generic, so that a variant added later gets its name without a
/// table to extend; the formatting stops at the variant's name (its fields
/// are never formatted).
fn push_snake(out: &mut String, value: &dyn fmt::Debug) {
    struct Snake<'a> {
        out: &'a mut String,
        first: bool,
    }
    impl Write for Snake<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for c in s.chars() {
                if !c.is_ascii_alphanumeric() {
                    // The variant's name is over: stop formatting.
                    return Err(fmt::Error);
                }
                if c.is_ascii_uppercase() {
                    if !self.first {
                        self.out.push('_');
                    }
                    self.out.push(c.to_ascii_lowercase());
                } else {
                    self.out.push(c);
                }
                self.first = false;
            }
            Ok(())
        }
    }
    // The error only says the name ended.
    let _ = write!(Snake { out, first: true }, "{value:?}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    #[test]
    fn names_are_the_bindings_snake_case() {
        assert_eq!(pattern_type(PatternKind::CircuitBreaker), "circuit_breaker");
        assert_eq!(pattern_type(PatternKind::RateLimiter), "rate_limiter");
        assert_eq!(pattern_type(PatternKind::Bulkhead), "bulkhead");
        assert_eq!(pattern_type(PatternKind::Retry), "retry");
        assert_eq!(pattern_type(PatternKind::Timeout), "timeout");
        assert_eq!(
            pattern_type(PatternKind::RequestResponse),
            "request_response"
        );
        assert_eq!(
            metric(PatternKind::CircuitBreaker, names::CALLS),
            "stockade.circuit_breaker.calls"
        );
        let changed = EventKind::StateChanged {
            from: BreakerState::Closed,
            to: BreakerState::Open,
            generation: 1,
        };
        assert_eq!(event_kind(&changed), "state_changed");
        assert_eq!(
            event_kind(&EventKind::Monitor(Default::default())),
            "monitor"
        );
        assert_eq!(
            event_kind(&EventKind::TimedOut {
                after: Duration::from_secs(1)
            }),
            "timed_out"
        );
        assert_eq!(
            event_kind(&EventKind::QueueTimeout {
                waited: Duration::ZERO
            }),
            "queue_timeout"
        );
        assert_eq!(event_kind(&EventKind::Disposed), "disposed");
        assert_eq!(breaker_state(BreakerState::HalfOpen), "half_open");
    }
}
