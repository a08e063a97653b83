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
