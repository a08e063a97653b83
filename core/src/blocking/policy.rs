//! Composition (the spec's "combine patterns"): the [`Policy`] trait and
//! [`Pipeline`].
//!
//! Every pattern is a `Policy`: something that runs a call under its
//! protection. A [`Pipeline`] nests policies in the order they are added —
//! the first is outermost — and is built once and executed many times.
//! Nesting is static (generic types), so a pipeline allocates nothing per
//! call beyond what its patterns need.

use core::fmt::Display;
use std::sync::Arc;

use super::{Error, Timeout, Timer};

/// Runs calls under a protection: every pattern of the blocking layer
/// implements it, and [`Pipeline`] composes them.
///
/// `call` returns the protected operation's result with its error already
/// lifted into [`Error`], so a policy sees the errors of the policies nested
/// inside it (a retry sees a breaker's `BreakerOpen`) and can pass them on
/// unchanged. The call's own error must be `Display`: a retry matches its
/// `retryable_errors` against that text.
///
/// A [`Timeout`] is not a `Policy`: to return on time it runs the call on
/// another thread, which needs a `Send + 'static` call. Add it to a
/// pipeline with [`Pipeline::then_timeout`], or as the cooperative stage
/// [`Timeout::cooperative`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a `Policy`",
    note = "a `Timeout` stage is added with `Pipeline::then_timeout(&timeout)` \
            (or `.then(timeout.cooperative())` for the cooperative form)"
)]
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
    pub(crate) outer: Outer,
    pub(crate) inner: Inner,
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
/// the attempts, and the timeout bounds each attempt (added last, with
/// [`then_timeout`](Self::then_timeout)). Put the breaker *inside* the
/// retry instead if every attempt should count.
///
/// The nesting is static: a pipeline costs nothing beyond its patterns.
/// To build one from a list chosen at run time, see
/// [`DynPipeline`](super::DynPipeline).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// let breaker = CircuitBreaker::new("db", BreakerConfig::DEFAULT)?;
/// let bulkhead = Bulkhead::new("db", BulkheadConfig::DEFAULT)?;
/// let retry = Retry::new("db", RetryConfig::DEFAULT.with_initial_delay(Duration::ZERO))?;
/// let pipeline = Pipeline::new().then(&bulkhead).then(&breaker).then(&retry);
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
    pub(crate) policy: P,
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

    /// Adds `timeout` as the innermost stage, bounding each attempt and
    /// returning on time (see [`Timeout::execute`]): the call then runs on
    /// the timeout's workers, so it must be `Send + Sync + 'static` (an
    /// attempt abandoned at its deadline may still run while the next one
    /// starts). A policy outside sees the timeout as [`Error::TimedOut`]: a
    /// breaker counts it as a failure, a retry retries it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::prelude::*;
    ///
    /// let breaker = CircuitBreaker::new("search", BreakerConfig::DEFAULT)?;
    /// let timeout = Timeout::new("search", TimeoutConfig::new(Duration::from_secs(2))?)?;
    /// let pipeline = Pipeline::new().then(&breaker).then_timeout(&timeout);
    /// assert_eq!(pipeline.execute(|| Ok::<_, String>(7))?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn then_timeout<Tm: TimeoutStage>(self, timeout: Tm) -> TimedPipeline<P, Tm> {
        TimedPipeline {
            policy: self.policy,
            timeout,
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

/// A [`Timeout`] by value, reference or `Arc`: the last stage of a
/// [`TimedPipeline`].
pub trait TimeoutStage {
    /// The timeout's timer.
    type Timer: Timer + Clone + 'static;
    /// The timeout.
    fn timeout(&self) -> &Timeout<Self::Timer>;
}

impl<T: Timer + Clone + 'static> TimeoutStage for Timeout<T> {
    type Timer = T;
    fn timeout(&self) -> &Timeout<T> {
        self
    }
}

impl<S: TimeoutStage + ?Sized> TimeoutStage for &S {
    type Timer = S::Timer;
    fn timeout(&self) -> &Timeout<S::Timer> {
        (**self).timeout()
    }
}

impl<T: Timer + Clone + 'static> TimeoutStage for Arc<Timeout<T>> {
    type Timer = T;
    fn timeout(&self) -> &Timeout<T> {
        self
    }
}

/// A [`Pipeline`] whose innermost stage is a [`Timeout`] that returns on
/// time (from [`Pipeline::then_timeout`]).
#[derive(Clone, Copy, Debug)]
pub struct TimedPipeline<P, Tm> {
    policy: P,
    timeout: Tm,
}

impl<P: Policy, Tm: TimeoutStage> TimedPipeline<P, Tm> {
    /// Runs `call` through every policy; each attempt runs on the
    /// timeout's workers and the caller moves on at its deadline. The
    /// call's own error comes back as [`Error::Inner`].
    ///
    /// # Errors
    ///
    /// As the policies and [`Timeout::execute`] say.
    pub fn execute<R, E, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
        R: Send + 'static,
        E: Display + Send + 'static,
    {
        let call = Arc::new(call);
        let timeout = self.timeout.timeout();
        self.policy.run(|| {
            let call = Arc::clone(&call);
            timeout.run_detached(move || call().map_err(Error::Inner))
        })
    }

    /// A reusable protected function (the spec's `wrap`).
    pub fn wrap<'a, A, R, E, G>(&'a self, f: G) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        G: Fn(A) -> Result<R, E> + Send + Sync + 'static,
        A: Clone + Send + Sync + 'static,
        R: Send + 'static,
        E: Display + Send + 'static,
    {
        let f = Arc::new(f);
        move |arg: A| {
            let f = Arc::clone(&f);
            self.execute(move || f(arg.clone()))
        }
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
pub use asynchronous::AsyncPolicy;

/// The async twins (feature `async`).
#[cfg(feature = "async")]
mod asynchronous {
    use core::fmt::Display;
    use core::future::Future;
    use std::sync::Arc;

    use super::{Nested, Pipeline, TimedPipeline, TimeoutStage, Unprotected};
    #[allow(unused_imports, reason = "named in the docs")]
    use crate::blocking::Timeout;
    use crate::blocking::{AsyncTimer, Error};

    /// Runs futures under a protection (feature `async`): the async twin of
    /// [`Policy`](crate::blocking::Policy), implemented by every pattern of the blocking layer (the
    /// same objects: their state, events and metrics are shared with their
    /// blocking calls), by [`Timeout`] (which drops the future at the
    /// deadline), and by [`Pipeline`]s of them.
    ///
    /// `call` makes the protected future; it may be called several times (a
    /// retry) or not at all (a rejection). It is `Fn + Clone`, not
    /// `FnMut`: each nested policy holds its own copy while an attempt
    /// runs (a closure that captures only references or `Arc`s is `Clone`
    /// and copies for free); keep mutable state in the future or behind an
    /// atomic or a lock. Owning copies, rather than borrowing one `call`
    /// across an await, is also what lets the compiler prove a pipeline's
    /// future `Send`.
    ///
    /// The returned future is `Send` when the call's futures and the policies
    /// are; dropping it cancels the call at once, and every pattern gives back
    /// what it held (see each pattern's `execute_async`).
    pub trait AsyncPolicy {
        /// Runs the futures `call` makes under this policy.
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>;
    }

    impl<P: AsyncPolicy + ?Sized> AsyncPolicy for &P {
        #[inline]
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>,
        {
            (**self).run_async(call)
        }
    }

    impl<P: AsyncPolicy + ?Sized> AsyncPolicy for Arc<P> {
        #[inline]
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>,
        {
            (**self).run_async(call)
        }
    }

    impl AsyncPolicy for Unprotected {
        #[inline]
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>,
        {
            call()
        }
    }

    impl<Outer: AsyncPolicy, Inner: AsyncPolicy> AsyncPolicy for Nested<Outer, Inner> {
        #[inline]
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>,
        {
            let inner = &self.inner;
            self.outer.run_async(move || inner.run_async(call.clone()))
        }
    }

    impl<P: AsyncPolicy> AsyncPolicy for Pipeline<P> {
        #[inline]
        fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, Error<E>>>,
        {
            self.policy.run_async(call)
        }
    }

    impl<P> Pipeline<P> {
        /// Adds `inner` inside the policies added so far, as
        /// [`then`](Self::then) does, for a policy that may be async only (a
        /// [`Timeout`], whose async form drops the future at the deadline and
        /// so composes anywhere in the order). A pipeline with such a stage
        /// runs futures only ([`execute_async`](Self::execute_async)).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "tokio")] {
        /// use std::time::Duration;
        /// use stockade::prelude::*;
        ///
        /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        /// # runtime.block_on(async {
        /// let breaker = CircuitBreaker::new("doc-then-async", BreakerConfig::DEFAULT)?;
        /// let timeout = Timeout::new("doc-then-async", TimeoutConfig::new(Duration::from_secs(2))?)?;
        /// let pipeline = Pipeline::new().then_async(&timeout).then_async(&breaker);
        /// let value = pipeline.execute_async(|| async { Ok::<_, String>(7) }).await?;
        /// assert_eq!(value, 7);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// # }).unwrap();
        /// # }
        /// ```
        pub fn then_async<Q: AsyncPolicy>(self, inner: Q) -> Pipeline<Nested<P, Q>> {
            Pipeline {
                policy: Nested {
                    outer: self.policy,
                    inner,
                },
            }
        }
    }

    impl<P: AsyncPolicy> Pipeline<P> {
        /// Runs the futures `call` makes through every policy (feature
        /// `async`); the call's own error comes back as [`Error::Inner`].
        /// `call` is called once per attempt (a retry inside calls it again).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "tokio")] {
        /// use std::time::Duration;
        /// use stockade::prelude::*;
        ///
        /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        /// # runtime.block_on(async {
        /// let bulkhead = Bulkhead::new("doc-pipeline-async", BulkheadConfig::DEFAULT)?;
        /// let breaker = CircuitBreaker::new("doc-pipeline-async", BreakerConfig::DEFAULT)?;
        /// let retry = Retry::new("doc-pipeline-async", RetryConfig::DEFAULT.with_initial_delay(Duration::from_millis(1)))?;
        /// let pipeline = Pipeline::new().then(&bulkhead).then(&breaker).then(&retry);
        ///
        /// let attempts = std::sync::atomic::AtomicU32::new(0);
        /// let value = pipeline
        ///     .execute_async(|| async {
        ///         let n = attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        ///         if n < 2 { Err("flaky") } else { Ok(42) }
        ///     })
        ///     .await;
        /// assert_eq!(value.ok(), Some(42));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// # }).unwrap();
        /// # }
        /// ```
        pub fn execute_async<R, E, F, Fut>(
            &self,
            call: F,
        ) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, E>>,
        {
            self.policy.run_async(move || {
                let attempt = call();
                async move { attempt.await.map_err(Error::Inner) }
            })
        }
    }

    impl<P: AsyncPolicy, Tm: TimeoutStage> TimedPipeline<P, Tm>
    where
        Tm::Timer: AsyncTimer,
    {
        /// Runs the futures `call` makes through every policy, each attempt
        /// bounded by the timeout, which drops the attempt's future at its
        /// deadline (see [`Timeout::execute_async`]); no thread is involved.
        /// The call's own error comes back as [`Error::Inner`].
        pub fn execute_async<R, E, F, Fut>(
            &self,
            call: F,
        ) -> impl Future<Output = Result<R, Error<E>>>
        where
            E: Display,
            F: Fn() -> Fut + Clone,
            Fut: Future<Output = Result<R, E>>,
        {
            let timeout = self.timeout.timeout();
            self.policy.run_async(move || {
                timeout.run_future::<_, crate::blocking::async_call::Wrap>(call())
            })
        }
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
