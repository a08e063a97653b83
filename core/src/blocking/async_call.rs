//! What the patterns' named async-call futures share (feature `async`):
//! how a call's own error becomes the pattern's [`Error`], and the boxed
//! admission a call awaits only when it must wait.
//!
//! The patterns' `execute_async` futures are written by hand, not as
//! `async fn`s, so that a call admitted at once carries no waiting state
//! (the wait is boxed, allocated only by a call that waits), and so that
//! the tower layers can name them in their response futures.

use core::future::Future;
use core::pin::Pin;
use std::boxed::Box;

use super::Error;

/// Turns a call's error `X` into the pattern's `Error<Self::Caller>`.
pub(crate) trait Lift<X> {
    /// The caller's error type inside the pattern's [`Error`].
    type Caller;
    /// The pattern's error for the call's error `x`.
    fn lift(x: X) -> Error<Self::Caller>;
}

/// The call's error is the caller's: `E` becomes [`Error::Inner`] (the
/// `execute_async` forms).
pub(crate) enum Wrap {}

impl<E> Lift<E> for Wrap {
    type Caller = E;
    #[inline]
    fn lift(e: E) -> Error<E> {
        Error::Inner(e)
    }
}

/// The call's error is already an [`Error`] and passes through unchanged
/// (a policy inside a pipeline or a layer).
pub(crate) enum Keep {}

impl<E> Lift<Error<E>> for Keep {
    type Caller = E;
    #[inline]
    fn lift(e: Error<E>) -> Error<E> {
        e
    }
}

/// A wait for admission, boxed: only a call that cannot be admitted at its
/// first poll makes one.
pub(crate) type Wait<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a call's first look at its pattern decided.
pub(crate) enum FirstLook<'a, P, Rf> {
    /// Admitted at once, holding `P`.
    Admitted(P),
    /// Refused at once (counted, announced).
    Refused(Rf),
    /// It must wait: this future admits or refuses it.
    Wait(Wait<'a, Result<P, Rf>>),
}

/// Where a named async call is in its admission: not looked yet, waiting
/// (boxed), admitted holding `P`, or done. `Rf` is the pattern's refusal.
pub(crate) enum Admission<'a, P, Rf> {
    /// Not admitted yet: the first poll looks.
    Start,
    /// Waiting for admission.
    Waiting(Wait<'a, Result<P, Rf>>),
    /// Admitted: `P` is held while the call runs.
    Running(P),
    /// Refused, or finished and counted.
    Done,
}

impl<'a, P, Rf> Admission<'a, P, Rf> {
    /// Drives the admission: `Ready(Ok(()))` once admitted (the stage is
    /// `Running`), `Ready(Err)` when refused (the stage is `Done`),
    /// `Pending` while waiting. `first_look` is asked at the first poll
    /// only; `pattern` names the pattern in the panic of a poll after
    /// completion.
    #[inline]
    pub(crate) fn poll_admitted(
        &mut self,
        cx: &mut core::task::Context<'_>,
        first_look: impl FnOnce() -> FirstLook<'a, P, Rf>,
        pattern: &str,
    ) -> core::task::Poll<Result<(), Rf>> {
        use core::task::Poll;
        match self {
            Admission::Running(_) => Poll::Ready(Ok(())),
            Admission::Start => match first_look() {
                FirstLook::Admitted(permit) => {
                    *self = Admission::Running(permit);
                    Poll::Ready(Ok(()))
                }
                FirstLook::Refused(refusal) => {
                    *self = Admission::Done;
                    Poll::Ready(Err(refusal))
                }
                FirstLook::Wait(wait) => {
                    *self = Admission::Waiting(wait);
                    self.poll_waiting(cx, pattern)
                }
            },
            Admission::Waiting(_) | Admission::Done => self.poll_waiting(cx, pattern),
        }
    }

    /// [`poll_admitted`](Self::poll_admitted) while waiting. Out of line:
    /// a call admitted at once never runs it.
    #[inline(never)]
    fn poll_waiting(
        &mut self,
        cx: &mut core::task::Context<'_>,
        pattern: &str,
    ) -> core::task::Poll<Result<(), Rf>> {
        use core::task::Poll;
        let Admission::Waiting(wait) = self else {
            panic!("{pattern}'s async call polled after it completed")
        };
        match wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(permit)) => {
                *self = Admission::Running(permit);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(refusal)) => {
                *self = Admission::Done;
                Poll::Ready(Err(refusal))
            }
        }
    }

    /// Ends the admission: the permit held, if the call was running.
    #[inline]
    pub(crate) fn finish(&mut self) -> Option<P> {
        match core::mem::replace(self, Admission::Done) {
            Admission::Running(permit) => Some(permit),
            _ => None,
        }
    }
}

/// A finished call's outcome counted (a success or a failure) and its
/// error lifted by `L`.
#[inline]
pub(crate) fn counted<R, X, L: Lift<X>>(
    counters: &super::shell::Counters,
    out: Result<R, X>,
) -> Result<R, Error<L::Caller>> {
    match out {
        Ok(value) => {
            counters.successes.incr();
            Ok(value)
        }
        Err(e) => {
            counters.failures.incr();
            Err(L::lift(e))
        }
    }
}
