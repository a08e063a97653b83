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

/// The `tracing` span of one async execution (feature `tracing` with an
/// async form; empty otherwise): made at the future's first poll if a
/// subscriber wants `INFO` spans, entered around each poll (an entered
/// guard never crosses an `.await`, so the future stays `Send`), its
/// outcome recorded when the future completes, closed when it is dropped.
#[cfg(feature = "async")]
pub(crate) struct AsyncSpan<'a> {
    #[cfg(feature = "tracing")]
    state: SpanState<'a>,
    #[cfg(not(feature = "tracing"))]
    name: core::marker::PhantomData<&'a str>,
}

/// Where an [`AsyncSpan`] is.
#[cfg(all(feature = "async", feature = "tracing"))]
enum SpanState<'a> {
    /// Not polled yet: the span is decided at the first poll.
    Unstarted(PatternKind, &'a str),
    /// Nobody wanted it.
    Off,
    /// Made (boxed: `Off` stays one word).
    On(Box<tracing::Span>),
}

#[cfg(feature = "async")]
impl<'a> AsyncSpan<'a> {
    /// The span of an execution of the instance `name` of type `kind`,
    /// decided at the first poll.
    #[inline(always)]
    pub(crate) fn new(kind: PatternKind, name: &'a str) -> AsyncSpan<'a> {
        let _ = (kind, name);
        AsyncSpan {
            #[cfg(feature = "tracing")]
            state: SpanState::Unstarted(kind, name),
            #[cfg(not(feature = "tracing"))]
            name: core::marker::PhantomData,
        }
    }
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A pattern's async call inside its [`AsyncSpan`] (the async twin of
    /// [`ExecSpan`]): without feature `tracing` it is the call itself.
    pub(crate) struct Traced<'a, F> {
        #[pin]
        call: F,
        span: AsyncSpan<'a>,
    }
}

#[cfg(feature = "async")]
impl<'a, F> Traced<'a, F> {
    /// `call` in the span of an execution of `name` (type `kind`).
    #[inline(always)]
    pub(crate) fn new(kind: PatternKind, name: &'a str, call: F) -> Traced<'a, F> {
        Traced {
            call,
            span: AsyncSpan::new(kind, name),
        }
    }
}

#[cfg(feature = "async")]
impl<F, R, E> core::future::Future for Traced<'_, F>
where
    F: core::future::Future<Output = Result<R, super::Error<E>>>,
{
    type Output = F::Output;

    #[inline(always)]
    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<F::Output> {
        let this = self.project();
        #[cfg(feature = "tracing")]
        {
            if let SpanState::Unstarted(kind, name) = this.span.state {
                this.span.state = if crate::telemetry::trace::spans_enabled() {
                    start_async_span(kind, name)
                } else {
                    SpanState::Off
                };
            }
            if let SpanState::On(span) = &this.span.state {
                return poll_in_span(span, this.call, cx);
            }
        }
        this.call.poll(cx)
    }
}

/// Makes an async execution's span (out of line: only with a subscriber).
#[cfg(all(feature = "async", feature = "tracing"))]
#[cold]
#[inline(never)]
fn start_async_span(kind: PatternKind, name: &str) -> SpanState<'static> {
    SpanState::On(Box::new(crate::telemetry::trace::execution_span(
        kind, name,
    )))
}

/// Polls `call` inside `span`, recording its outcome when it completes.
#[cfg(all(feature = "async", feature = "tracing"))]
fn poll_in_span<F, R, E>(
    span: &tracing::Span,
    call: core::pin::Pin<&mut F>,
    cx: &mut core::task::Context<'_>,
) -> core::task::Poll<F::Output>
where
    F: core::future::Future<Output = Result<R, super::Error<E>>>,
{
    let polled = span.in_scope(|| call.poll(cx));
    if let core::task::Poll::Ready(result) = &polled {
        let outcome = match result {
            Ok(_) => "success",
            Err(super::Error::TimedOut { .. }) => "timeout",
            Err(e) if e.is_rejection() || matches!(e, super::Error::Disposed) => "rejected",
            Err(_) => "failure",
        };
        span.record(crate::telemetry::names::OUTCOME, outcome);
    }
    polled
}
