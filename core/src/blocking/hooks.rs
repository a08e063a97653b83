//! Where the blocking layer hands events and executions to telemetry
//! (features `metrics` and `tracing`, `crate::telemetry`). Without them
//! every hook is empty and inlines to nothing.

use super::{Event, PatternKind};

/// `true` if telemetry wants events: a metrics collector exists, or a
/// `tracing` subscriber is interested in the target `stockade`.
#[inline(always)]
pub(crate) fn wants_events() -> bool {
    #[cfg(feature = "metrics")]
    {
        if crate::telemetry::metrics::counting_events() {
            return true;
        }
    }
    #[cfg(feature = "tracing")]
    {
        if crate::telemetry::trace::events_enabled() {
            return true;
        }
    }
    false
}

/// Hands an event to telemetry (built because [`wants_events`] or a
/// listener wanted it).
#[inline]
pub(crate) fn record_event(event: &Event) {
    #[cfg(feature = "metrics")]
    crate::telemetry::metrics::record_event(event);
    #[cfg(feature = "tracing")]
    crate::telemetry::trace::record_event(event);
    let _ = event;
}

/// The `tracing` span of one execution (feature `tracing`; empty
/// otherwise): entered while the protected call runs, with its outcome
/// recorded when known.
pub(crate) struct ExecSpan {
    #[cfg(feature = "tracing")]
    span: tracing::span::EnteredSpan,
}

impl ExecSpan {
    /// Enters a new execution span of the instance `name` of type `kind`
    /// (a disabled span, costing one interest check, while no subscriber
    /// wants it).
    #[inline(always)]
    pub(crate) fn enter(kind: PatternKind, name: &str) -> ExecSpan {
        let _ = (kind, name);
        ExecSpan {
            #[cfg(feature = "tracing")]
            span: crate::telemetry::trace::execution_span(kind, name).entered(),
        }
    }

    /// No span (the placeholder of a span moved out).
    #[inline(always)]
    pub(crate) fn none() -> ExecSpan {
        ExecSpan {
            #[cfg(feature = "tracing")]
            span: tracing::Span::none().entered(),
        }
    }

    /// Records how the execution ended (`success`, `failure`, `timeout`,
    /// `ignored`).
    #[inline(always)]
    pub(crate) fn outcome(&self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        {
            if !self.span.is_disabled() {
                self.span.record(crate::telemetry::names::OUTCOME, outcome);
            }
        }
        let _ = outcome;
    }
}
