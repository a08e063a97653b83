//! Composition (the spec's "combine patterns"): the [`Policy`] trait and
//! [`Pipeline`].
//!
//! Every pattern is a `Policy`: something that runs a call under its
//! protection. A [`Pipeline`] nests policies in the order they are added —
//! the first is outermost — and is built once and executed many times.
//! Nesting is static (generic types), so a pipeline allocates nothing per
//! call beyond what its patterns need.

use std::sync::Arc;

use super::Error;

/// Runs calls under a protection: every pattern of the blocking layer
/// implements it, and [`Pipeline`] composes them.
///
/// `call` returns the protected operation's result with its error already
/// lifted into [`Error`], so a policy sees the errors of the policies nested
/// inside it (a retry sees a breaker's `BreakerOpen`) and can pass them on
/// unchanged. The call's own error must be `Display`: a retry matches its
/// `retryable_errors` against that text.
pub trait Policy {
    /// Runs `call` under this policy. `call` may run several times (a retry)
    /// or not at all (a rejection).
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>;
}

impl<P: Policy + ?Sized> Policy for &P {
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        (**self).run(call)
    }
}

impl<P: Policy + ?Sized> Policy for Arc<P> {
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        (**self).run(call)
    }
}

/// The policy that adds nothing: runs the call once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Unprotected;

impl Policy for Unprotected {
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        call()
    }
}

/// Two policies nested: `outer` runs a call that runs `inner`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nested<Outer, Inner> {
    outer: Outer,
    inner: Inner,
}

impl<Outer: Policy, Inner: Policy> Policy for Nested<Outer, Inner> {
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.outer.run(|| self.inner.run(&mut call))
    }
}

/// Patterns composed in a chosen order, built once, executed many times.
///
/// Policies are added outermost first: `Pipeline::new().then(a).then(b)`
/// runs a call as `a(b(call))`. Add patterns by reference (`&breaker`) or
/// `Arc` to share them with other pipelines, or by value to own them.
///
/// The usual order, from outside in, is rate limiter → bulkhead → circuit
/// breaker → retry → timeout → call: the limiter and bulkhead meter
/// *requests*, the breaker sees each request's final outcome, retry repeats
/// the attempts, and the timeout bounds each attempt. Put the breaker
/// *inside* the retry instead if every attempt should count.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Bulkhead, CircuitBreaker, Error, Pipeline, Retry, RetryConfig};
/// use stockade::bulkhead::BulkheadConfig;
///
/// let breaker = CircuitBreaker::new("db", Default::default())?;
/// let bulkhead = Bulkhead::new("db", BulkheadConfig::default())?;
/// let retry = Retry::new("db", RetryConfig::default().with_initial_delay(Duration::ZERO))?;
/// let pipeline = Pipeline::new().then(&bulkhead).then(&breaker).then(&retry);
///
///
/// let mut attempts = 0;
/// let value = pipeline.execute(|| {
///     attempts += 1;
///     if attempts < 2 { Err("flaky") } else { Ok(42) }
/// });
/// assert_eq!(value.ok(), Some(42));
/// assert_eq!(attempts, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Pipeline<P = Unprotected> {
    policy: P,
}

impl Pipeline<Unprotected> {
    /// An empty pipeline: calls run unprotected until policies are added.
    pub const fn new() -> Pipeline<Unprotected> {
        Pipeline {
            policy: Unprotected,
        }
    }
}

impl<P: Policy> Pipeline<P> {
    /// Adds `inner` inside the policies added so far.
    pub fn then<Q: Policy>(self, inner: Q) -> Pipeline<Nested<P, Q>> {
        Pipeline {
            policy: Nested {
                outer: self.policy,
                inner,
            },
        }
    }

    /// Runs `call` through every policy; the call's own error comes back as
    /// [`Error::Inner`].
    pub fn execute<R, E: core::fmt::Display>(
        &self,
        mut call: impl FnMut() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.policy.run(|| call().map_err(Error::Inner))
    }

    /// A reusable protected function (the spec's `wrap`).
    pub fn wrap<'a, A, R, E: core::fmt::Display>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        A: Clone,
    {
        move |arg: A| self.execute(|| f(arg.clone()))
    }
}

impl<P: Policy> Policy for Pipeline<P> {
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.policy.run(call)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;
    use std::vec::Vec;

    /// A policy that records when it starts and ends.
    struct Trace<'a>(&'static str, &'a RefCell<Vec<&'static str>>);

    impl Policy for Trace<'_> {
        fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
        where
            F: FnMut() -> Result<R, Error<E>>,
        {
            self.1.borrow_mut().push(self.0);
            let result = call();
            self.1.borrow_mut().push(self.0);
            result
        }
    }

    #[test]
    fn first_added_is_outermost() {
        let log = RefCell::new(Vec::new());
        let pipeline = Pipeline::new()
            .then(Trace("a", &log))
            .then(Trace("b", &log))
            .then(Trace("c", &log));
        let out: Result<u8, Error<&str>> = pipeline.execute(|| {
            log.borrow_mut().push("call");
            Ok(7)
        });
        assert_eq!(out.unwrap(), 7);
        assert_eq!(*log.borrow(), ["a", "b", "c", "call", "c", "b", "a"]);
    }

    #[test]
    fn inner_error_is_preserved() {
        let pipeline = Pipeline::new().then(Unprotected);
        let out: Result<(), Error<&str>> = pipeline.execute(|| Err("boom"));
        assert!(matches!(out, Err(Error::Inner("boom"))));
        let f = pipeline.wrap(|x: u32| if x > 1 { Ok(x * 2) } else { Err("small") });
        assert_eq!(f(4).unwrap(), 8);
        assert_eq!(f(1).unwrap_err().into_inner(), Some("small"));
    }
}
