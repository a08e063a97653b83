//! Events and execution spans as `tracing` data (feature `tracing`),
//! under the target `stockade`.
//!
//! Events: `state_changed`, `disposed`, `store_unavailable` and
//! `store_recovered` at `INFO`; every other kind at `DEBUG`. Each carries
//! `stockade.pattern.type`, `stockade.pattern.name` and
//! `stockade.event.kind`, plus its own fields (see `docs/telemetry.md`).
//! Spans: `stockade.execute` at `INFO` around each execution, with
//! `stockade.pattern.type`, `stockade.pattern.name` and, once known,
//! `stockade.outcome`.

use tracing::{Level, Span, enabled, info_span};

use super::{breaker_state, event_kind, pattern_type};
use crate::blocking::{Event, EventKind, PatternKind};

/// `true` if a subscriber wants `stockade` events at `INFO` or `DEBUG`:
/// two callsite interest checks.
#[inline(always)]
pub(crate) fn events_enabled() -> bool {
    enabled!(target: "stockade", Level::INFO) || enabled!(target: "stockade", Level::DEBUG)
}

/// `true` unless no subscriber can want an `INFO` span: the compile-time
/// level filter and one relaxed load of the global one (`OFF` while no
/// subscriber exists).
#[inline(always)]
pub(crate) fn spans_enabled() -> bool {
    Level::INFO <= tracing::level_filters::STATIC_MAX_LEVEL
        && Level::INFO <= tracing::level_filters::LevelFilter::current()
}

/// The span of one execution (disabled while nobody wants it).
#[inline(always)]
pub(crate) fn execution_span(kind: PatternKind, name: &str) -> Span {
    info_span!(
        target: "stockade",
        "stockade.execute",
        stockade.pattern.type = tracing::field::display(DisplayType(kind)),
        stockade.pattern.name = name,
        stockade.outcome = tracing::field::Empty,
    )
}

/// The pattern type, formatted only when a subscriber records it.
struct DisplayType(PatternKind);

impl core::fmt::Display for DisplayType {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&pattern_type(self.0))
    }
}

/// An event as a `tracing` event.
pub(crate) fn record_event(event: &Event) {
    if !events_enabled() {
        return;
    }
    let kind = event_kind(&event.kind);
    let pattern = pattern_type(event.pattern);
    let name: &str = &event.name;
    // `if let` rather than `match`: a kind added later falls through to the
    // generic event instead of breaking an exhaustive match.
    if let EventKind::StateChanged {
        from,
        to,
        generation,
    } = &event.kind
    {
        tracing::event!(
            target: "stockade",
            Level::INFO,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            stockade.circuit_breaker.previous_state = breaker_state(*from),
            stockade.circuit_breaker.state = breaker_state(*to),
            stockade.circuit_breaker.generation = *generation,
            "stockade {pattern} {name}: state changed to {}", breaker_state(*to)
        );
    } else if let EventKind::Rejected { retry_after } = &event.kind {
        tracing::event!(
            target: "stockade",
            Level::DEBUG,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            stockade.retry_after = retry_after.map(|d| d.as_secs_f64()),
            "stockade {pattern} {name}: call rejected"
        );
    } else if let EventKind::Retry { attempt, delay } = &event.kind {
        tracing::event!(
            target: "stockade",
            Level::DEBUG,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            stockade.retry.attempt = *attempt,
            stockade.retry.delay = delay.as_secs_f64(),
            "stockade {pattern} {name}: attempt {attempt} failed, retrying"
        );
    } else if let EventKind::TimedOut { after } = &event.kind {
        tracing::event!(
            target: "stockade",
            Level::DEBUG,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            stockade.timeout = after.as_secs_f64(),
            "stockade {pattern} {name}: call timed out"
        );
    } else if let EventKind::QueueTimeout { waited } = &event.kind {
        tracing::event!(
            target: "stockade",
            Level::DEBUG,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            stockade.queue.waited = waited.as_secs_f64(),
            "stockade {pattern} {name}: gave up waiting in the queue"
        );
    } else if matches!(event.kind, EventKind::Monitor(_)) {
        tracing::event!(
            target: "stockade",
            Level::DEBUG,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            "stockade {pattern} {name}: {kind}"
        );
    } else {
        tracing::event!(
            target: "stockade",
            Level::INFO,
            stockade.pattern.type = %pattern,
            stockade.pattern.name = name,
            stockade.event.kind = %kind,
            "stockade {pattern} {name}: {kind}"
        );
    }
}
