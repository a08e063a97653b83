//! Where the blocking layer hands events and executions to telemetry
//! (features `metrics` and `tracing`, `crate::telemetry`). Without them
//! every hook is empty and inlines to nothing.

#[cfg(feature = "tracing")]
use std::boxed::Box;

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
    /// `None` while no subscriber wants `INFO` spans: then nothing is made,
    /// entered or closed. Boxed, so that `None` is one null word to write
    /// and test; dropped by hand (see `Drop`), so that the `None` case is
    /// one inlined check instead of a call to drop glue.
    #[cfg(feature = "tracing")]
    span: core::mem::ManuallyDrop<Option<Box<tracing::span::EnteredSpan>>>,
}

impl ExecSpan {
    /// Enters a new execution span of the instance `name` of type `kind`
    /// (nothing but one load of `tracing`'s global level filter while no
    /// subscriber wants `INFO` spans; a disabled span, after the callsite's
    /// interest check, while one wants other spans).
    #[inline(always)]
    pub(crate) fn enter(kind: PatternKind, name: &str) -> ExecSpan {
        let _ = (kind, name);
        ExecSpan {
            #[cfg(feature = "tracing")]
            span: core::mem::ManuallyDrop::new(if crate::telemetry::trace::spans_enabled() {
                Some(Box::new(
                    crate::telemetry::trace::execution_span(kind, name).entered(),
                ))
            } else {
                None
            }),
        }
    }

    /// `true` if [`enter`](Self::enter) may make a span: always `false`
    /// without the feature `tracing`.
    #[inline(always)]
    pub(crate) fn wanted() -> bool {
        #[cfg(feature = "tracing")]
        {
            crate::telemetry::trace::spans_enabled()
        }
        #[cfg(not(feature = "tracing"))]
        {
            false
        }
    }

    /// No span (the placeholder of a span moved out).
    #[inline(always)]
    pub(crate) fn none() -> ExecSpan {
        ExecSpan {
            #[cfg(feature = "tracing")]
            span: core::mem::ManuallyDrop::new(None),
        }
    }

    /// Records how the execution ended (`success`, `failure`, `timeout`,
    /// `ignored`, `rejected`).
    #[inline(always)]
    pub(crate) fn outcome(&self, outcome: &'static str) {
        #[cfg(feature = "tracing")]
        {
            if let Some(span) = &*self.span {
                record_outcome(span, outcome);
            }
        }
        let _ = outcome;
    }
}

#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn record_outcome(span: &tracing::span::EnteredSpan, outcome: &'static str) {
    span.record(crate::telemetry::names::OUTCOME, outcome);
}

#[cfg(feature = "tracing")]
impl Drop for ExecSpan {
    #[inline(always)]
    fn drop(&mut self) {
        if self.span.is_some() {
            // What is left behind is `None`, which needs no drop.
            close(self.span.take());
        }
    }
}

/// Exits and closes an entered span.
#[cfg(feature = "tracing")]
#[cold]
#[inline(never)]
fn close(span: Option<Box<tracing::span::EnteredSpan>>) {
    drop(span);
}
