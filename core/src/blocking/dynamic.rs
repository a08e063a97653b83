//! Run-time composition: [`DynPolicy`], the object-safe face of every
//! pattern, and [`DynPipeline`], a pipeline built from a list chosen at run
//! time (Python's `pipeline(limiter, breaker, retry, timeout)`, a C array
//! of handles).
//!
//! The static [`Pipeline`](super::Pipeline) stays the zero-cost path for
//! Rust; a `DynPipeline` pays one virtual call per stage and per call a few
//! allocations (the call's `Arc`, the boxed value).
//!
//! At the `dyn` boundary the call is a shared, thread-safe function
//! returning a type-erased value or a type-erased error:
//! [`DynCall`] = `Arc<dyn Fn() -> Result<DynValue, BoxError> + Send + Sync>`.
//! That is what the two bindings have: the C layer wraps its callback
//! (returning success or failure with a message) and the Python layer a
//! Python function (an exception becomes the `BoxError`). Shared and
//! `'static` because a [`Timeout`](super::Timeout) stage runs the rest of
//! the pipeline on its worker and returns on time; `Fn` because a
//! [`Retry`](super::Retry) calls it again, possibly while an abandoned
//! attempt still runs.
//!
//! With feature `async`, `DynAsyncPolicy` is the object-safe face of the
//! patterns' async forms and `DynPipeline::new_async` composes them: the
//! call is then a function making boxed `Send` futures, and each stage
//! returns one (a box per stage and attempt). Only stages with an async
//! form are `DynAsyncPolicy` (a pattern on a timer that is not an
//! `AsyncTimer` is not), so a pipeline that could not run its stages
//! asynchronously does not compile. The bindings do not use it.

use core::any::Any;
use core::fmt;
use std::boxed::Box;
use std::sync::Arc;
use std::vec::Vec;

use super::{
    Bulkhead, CircuitBreaker, Error, Pipeline, Policy, RateLimiter, Retry, Timeout, Timer,
};

/// A type-erased error: what a call at the `dyn` boundary fails with.
pub type BoxError = Box<dyn core::error::Error + Send + Sync>;

/// A type-erased value: what a call at the `dyn` boundary returns.
pub type DynValue = Box<dyn Any + Send>;

/// The call at the `dyn` boundary.
pub type DynCall = Arc<dyn Fn() -> Result<DynValue, BoxError> + Send + Sync>;

/// What a stage returns: the value, or why there is none.
pub type DynResult = Result<DynValue, Error<BoxError>>;

/// The rest of a [`DynPipeline`] as seen by one stage: the stages inside
/// it, then the call. Cheap to clone, `Send + 'static`: a timeout stage
/// moves it to a worker.
#[derive(Clone)]
pub struct Next {
    stages: Arc<[Arc<dyn DynPolicy>]>,
    index: usize,
    tail: Tail,
}

/// What runs after a pipeline's last stage.
#[derive(Clone)]
enum Tail {
    /// The call itself.
    Call(DynCall),
    /// The rest of the enclosing pipeline (this pipeline is one of its
    /// stages): its stages' errors pass through unchanged, as if the two
    /// pipelines were one.
    Outer(Arc<Next>),
}

impl Next {
    /// Runs the rest of the pipeline once.
    pub fn run(&self) -> DynResult {
        match self.stages.get(self.index) {
            Some(stage) => stage.run_dyn(&Next {
                stages: Arc::clone(&self.stages),
                index: self.index + 1,
                tail: self.tail.clone(),
            }),
            None => match &self.tail {
                Tail::Call(call) => call().map_err(Error::Inner),
                Tail::Outer(outer) => outer.run(),
            },
        }
    }
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field("stages_left", &(self.stages.len() - self.index))
            .finish_non_exhaustive()
    }
}

/// A pattern as a stage of a [`DynPipeline`] (object-safe): runs `next`
/// under its protection, as [`Policy::run`] does for static pipelines.
/// Every pattern implements it (a [`Timeout`] returns on time: it runs
/// `next` on its worker), and so does a static [`Pipeline`].
pub trait DynPolicy: Send + Sync {
    /// Runs `next` (the stages inside this one, then the call) under this
    /// policy: once, several times (a retry) or not at all (a rejection).
    fn run_dyn(&self, next: &Next) -> DynResult;
}

macro_rules! dyn_via_policy {
    ($($ty:ty),*) => {$(
        impl<T: Timer + 'static> DynPolicy for $ty {
            fn run_dyn(&self, next: &Next) -> DynResult {
                self.run(|| next.run())
            }
        }
    )*};
}

dyn_via_policy!(CircuitBreaker<T>, Bulkhead<T>, RateLimiter<T>, Retry<T>);

impl<T: Timer + Clone + 'static> DynPolicy for Timeout<T> {
    fn run_dyn(&self, next: &Next) -> DynResult {
        let next = next.clone();
        self.run_detached(move || next.run())
    }
}

impl<P: Policy + Send + Sync> DynPolicy for Pipeline<P> {
    fn run_dyn(&self, next: &Next) -> DynResult {
        self.run(|| next.run())
    }
}

impl DynPolicy for DynPipeline {
    /// Runs this pipeline's stages, then `next` (the enclosing pipeline's
    /// stages inside this one, then the call).
    fn run_dyn(&self, next: &Next) -> DynResult {
        Next {
            stages: Arc::clone(&self.stages),
            index: 0,
            tail: Tail::Outer(Arc::new(next.clone())),
        }
        .run()
    }
}

/// Patterns composed in an order chosen at run time: the first stage is
/// outermost, as in [`Pipeline`]. Stages are shared (`Arc`), so the same
/// pattern can sit in several pipelines and in a registry.
///
/// A `DynPipeline` is itself a [`DynPolicy`], so it can be a stage of
/// another: `[a, [b, c], d]` runs exactly as `[a, b, c, d]` (the inner
/// stages' errors reach the outer ones unchanged, not wrapped as
/// [`Error::Inner`]).
///
/// `S` is the stages' kind, chosen by the constructor:
/// [`DynPolicy`] (the default; [`new`](Self::new)), run by
/// [`execute`](Self::execute) on the caller's thread, or, with feature
/// `async`, `DynAsyncPolicy` (`DynPipeline::new_async`), run by
/// `execute_async` in the caller's future. Each kind has only its own
/// `execute`; an async pipeline is likewise a stage of another async
/// one.
///
/// # Examples
///
/// The same patterns, composed statically and from a list:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// let limiter = RateLimiter::new("dyn-doc", RateLimiterConfig::DEFAULT)?;
/// let breaker = CircuitBreaker::new("dyn-doc", BreakerConfig::DEFAULT)?;
/// let retry = Retry::new("dyn-doc", RetryConfig::DEFAULT.with_initial_delay(Duration::ZERO))?;
/// let timeout = Timeout::new("dyn-doc", TimeoutConfig::new(Duration::from_secs(1))?)?;
///
/// let stages: Vec<Arc<dyn DynPolicy>> = vec![limiter, breaker, retry, timeout];
/// let pipeline = DynPipeline::new(stages);
/// assert_eq!(pipeline.execute(|| Ok::<_, String>(42))?, 42);
/// let failed = pipeline.execute(|| Err::<(), _>("HTTP 503")).unwrap_err();
/// assert!(matches!(failed, Error::RetriesExhausted { attempts: 3, .. }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DynPipeline<S: ?Sized = dyn DynPolicy> {
    stages: Arc<[Arc<S>]>,
}

impl<S: ?Sized> Clone for DynPipeline<S> {
    fn clone(&self) -> Self {
        DynPipeline {
            stages: Arc::clone(&self.stages),
        }
    }
}

impl Default for DynPipeline {
    fn default() -> Self {
        DynPipeline::new(Vec::new())
    }
}

impl<S: ?Sized> fmt::Debug for DynPipeline<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynPipeline")
            .field("stages", &self.stages.len())
            .finish()
    }
}

impl<S: ?Sized> DynPipeline<S> {
    /// The number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// `true` without stages.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// This pipeline's stages and `stage` inside them.
    fn and_then(&self, stage: Arc<S>) -> DynPipeline<S> {
        let mut stages: Vec<Arc<S>> = self.stages.iter().cloned().collect();
        stages.push(stage);
        DynPipeline {
            stages: Arc::from(stages),
        }
    }
}

impl DynPipeline {
    /// A pipeline of `stages`, the first outermost.
    pub fn new(stages: Vec<Arc<dyn DynPolicy>>) -> DynPipeline {
        DynPipeline {
            stages: Arc::from(stages),
        }
    }

    /// This pipeline with `stage` added inside the stages so far.
    #[must_use]
    pub fn then(self, stage: Arc<dyn DynPolicy>) -> DynPipeline {
        self.and_then(stage)
    }

    /// Runs the type-erased `call` through every stage: the entry point of
    /// the bindings.
    ///
    /// # Errors
    ///
    /// The call's own error as [`Error::Inner`], or a stage's error.
    pub fn execute_dyn(&self, call: DynCall) -> DynResult {
        Next {
            stages: Arc::clone(&self.stages),
            index: 0,
            tail: Tail::Call(call),
        }
        .run()
    }

    /// Runs `call` through every stage; its error comes back boxed as
    /// [`Error::Inner`].
    ///
    /// # Errors
    ///
    /// The call's own error as [`Error::Inner`], or a stage's error. A
    /// stage that answers with a value of another type than `R` (a
    /// [`FallbackStage`](super::FallbackStage) whose function returns one)
    /// is reported as an [`Error::Inner`] naming `R`, not a panic.
    pub fn execute<R, E, F>(&self, call: F) -> Result<R, Error<BoxError>>
    where
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
        R: Send + 'static,
        E: Into<BoxError>,
    {
        let call: DynCall = Arc::new(move || match call() {
            Ok(value) => Ok(Box::new(value) as DynValue),
            Err(e) => Err(e.into()),
        });
        self.execute_dyn(call).and_then(downcast::<R>)
    }
}

/// The pipeline's value as an `R`. The call returns one, but a stage may
/// answer with a value of its own (a
/// [`FallbackStage`](super::FallbackStage)'s function): another type is an
/// [`Error::Inner`] naming `R`, not a panic.
fn downcast<R: 'static>(value: DynValue) -> Result<R, Error<BoxError>> {
    match value.downcast::<R>() {
        Ok(value) => Ok(*value),
        Err(_) => Err(Error::Inner(BoxError::from(std::format!(
            "a stage answered with a value that is not a `{}`",
            core::any::type_name::<R>()
        )))),
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
pub use asynchronous::{DynAsyncCall, DynAsyncPolicy, DynCallFuture, DynFuture, NextAsync};

/// The async twins (feature `async`): [`DynAsyncPolicy`] and
/// `DynPipeline<dyn DynAsyncPolicy>`.
#[cfg(feature = "async")]
mod asynchronous {
    use core::fmt;
    use core::future::Future;
    use core::pin::Pin;
    use std::boxed::Box;
    use std::sync::Arc;
    use std::vec::Vec;

    use super::{BoxError, DynPipeline, DynResult, DynValue};
    use crate::blocking::{
        AsyncPolicy, AsyncTimer, Bulkhead, CircuitBreaker, Error, Hedging, RateLimiter, Retry,
        Timeout, Timer,
    };

    /// What a stage of an async [`DynPipeline`] returns: a boxed `Send`
    /// future of the value, or of why there is none.
    pub type DynFuture<'a> = Pin<Box<dyn Future<Output = DynResult> + Send + 'a>>;

    /// The future of one call at the async `dyn` boundary: the value, or
    /// the call's own error.
    pub type DynCallFuture = Pin<Box<dyn Future<Output = Result<DynValue, BoxError>> + Send>>;

    /// The call at the async `dyn` boundary: makes one attempt's future
    /// each time it is called (a retry calls it again).
    pub type DynAsyncCall = Arc<dyn Fn() -> DynCallFuture + Send + Sync>;

    /// The rest of an async [`DynPipeline`] as seen by one stage: the
    /// stages inside it, then the call. Cheap to clone; the futures
    /// [`run`](Self::run) makes own what they need.
    #[derive(Clone)]
    pub struct NextAsync {
        stages: Arc<[Arc<dyn DynAsyncPolicy>]>,
        index: usize,
        tail: Tail,
    }

    /// What runs after an async pipeline's last stage.
    #[derive(Clone)]
    enum Tail {
        /// The call itself.
        Call(DynAsyncCall),
        /// The rest of the enclosing pipeline (this pipeline is one of its
        /// stages): its stages' errors pass through unchanged.
        Outer(Arc<NextAsync>),
    }

    impl NextAsync {
        /// A future that runs the rest of the pipeline once. Nothing runs
        /// (not even the call's synchronous part) until it is polled.
        pub fn run(&self) -> DynFuture<'static> {
            match self.stages.get(self.index) {
                Some(stage) => {
                    let stage = Arc::clone(stage);
                    let next = NextAsync {
                        stages: Arc::clone(&self.stages),
                        index: self.index + 1,
                        tail: self.tail.clone(),
                    };
                    Box::pin(async move { stage.run_dyn_async(&next).await })
                }
                None => match &self.tail {
                    Tail::Call(call) => {
                        let call = Arc::clone(call);
                        Box::pin(async move { call().await.map_err(Error::Inner) })
                    }
                    Tail::Outer(outer) => outer.run(),
                },
            }
        }
    }

    impl fmt::Debug for NextAsync {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("NextAsync")
                .field("stages_left", &(self.stages.len() - self.index))
                .finish_non_exhaustive()
        }
    }

    /// A pattern as a stage of an async [`DynPipeline`] (object-safe, feature
    /// `async`): runs the futures `next` makes under its protection, as
    /// [`AsyncPolicy::run_async`] does for static pipelines. The async twin
    /// of [`DynPolicy`](super::DynPolicy).
    ///
    /// Implemented by every pattern whose async form fits a type-erased
    /// stage: [`CircuitBreaker`] (any timer), [`Bulkhead`], [`RateLimiter`],
    /// [`Retry`], [`Timeout`] and [`Hedging`] on an [`AsyncTimer`] (the
    /// default clock with feature `tokio` or `async-io`, `TokioClock`),
    /// a [`FallbackStage`](super::super::FallbackStage), and an async
    /// `DynPipeline` itself. A pattern on a timer that is not an
    /// `AsyncTimer` (a [`VirtualClock`](super::super::VirtualClock)) has no
    /// async form and is not one: the pipeline does not compile, rather than
    /// fail at run time. A static [`Pipeline`](super::super::Pipeline) is
    /// not one either (its future's `Send` cannot be named for any policy):
    /// give its patterns as stages.
    pub trait DynAsyncPolicy: Send + Sync {
        /// Runs the futures `next` makes (the stages inside this one, then
        /// the call) under this policy: once, several times (a retry) or not
        /// at all (a rejection). Dropping the future cancels it, as the
        /// pattern's `execute_async` says.
        fn run_dyn_async<'a>(&'a self, next: &'a NextAsync) -> DynFuture<'a>;
    }

    impl<T: Timer + 'static> DynAsyncPolicy for CircuitBreaker<T> {
        fn run_dyn_async<'a>(&'a self, next: &'a NextAsync) -> DynFuture<'a> {
            Box::pin(self.run_async(move || next.run()))
        }
    }

    macro_rules! dyn_async_via_policy {
        ($($ty:ty),*) => {$(
            impl<T: AsyncTimer + 'static> DynAsyncPolicy for $ty {
                fn run_dyn_async<'a>(&'a self, next: &'a NextAsync) -> DynFuture<'a> {
                    Box::pin(self.run_async(move || next.run()))
                }
            }
        )*};
    }

    dyn_async_via_policy!(
        Bulkhead<T>,
        RateLimiter<T>,
        Retry<T>,
        Timeout<T>,
        Hedging<T>
    );

    impl DynAsyncPolicy for DynPipeline<dyn DynAsyncPolicy> {
        /// Runs this pipeline's stages, then `next` (the enclosing
        /// pipeline's stages inside this one, then the call).
        fn run_dyn_async<'a>(&'a self, next: &'a NextAsync) -> DynFuture<'a> {
            NextAsync {
                stages: Arc::clone(&self.stages),
                index: 0,
                tail: Tail::Outer(Arc::new(next.clone())),
            }
            .run()
        }
    }

    impl DynPipeline<dyn DynAsyncPolicy> {
        /// A pipeline of async `stages`, the first outermost (feature
        /// `async`): the run-time composed twin of an async
        /// [`Pipeline`](super::super::Pipeline), run by
        /// [`execute_async`](Self::execute_async). Each stage is a
        /// [`DynAsyncPolicy`]; the stages are the same objects as
        /// everywhere else (their state, events and metrics are shared with
        /// their blocking and async callers).
        ///
        /// # Examples
        ///
        /// ```
        /// # #[cfg(feature = "tokio")] {
        /// use std::sync::Arc;
        /// use std::time::Duration;
        /// use stockade::blocking::DynAsyncPolicy;
        /// use stockade::prelude::*;
        ///
        /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        /// # runtime.block_on(async {
        /// let limiter = RateLimiter::new("dyn-async-doc", RateLimiterConfig::DEFAULT)?;
        /// let breaker = CircuitBreaker::new("dyn-async-doc", BreakerConfig::DEFAULT)?;
        /// let retry = Retry::new("dyn-async-doc", RetryConfig::DEFAULT.with_initial_delay(Duration::ZERO))?;
        /// let timeout = Timeout::new("dyn-async-doc", TimeoutConfig::new(Duration::from_secs(1))?)?;
        ///
        /// // Chosen at run time, e.g. from a config file.
        /// let stages: Vec<Arc<dyn DynAsyncPolicy>> = vec![limiter, breaker, retry, timeout];
        /// let pipeline = DynPipeline::new_async(stages);
        /// assert_eq!(pipeline.execute_async(|| async { Ok::<_, String>(42) }).await?, 42);
        /// let slow = pipeline
        ///     .execute_async(|| async {
        ///         tokio::time::sleep(Duration::from_secs(60)).await; // dropped at 1 s, 3 times
        ///         Ok::<_, String>(0)
        ///     })
        ///     .await;
        /// assert!(matches!(slow, Err(Error::RetriesExhausted { attempts: 3, .. })));
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// # })?;
        /// # }
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn new_async(stages: Vec<Arc<dyn DynAsyncPolicy>>) -> DynPipeline<dyn DynAsyncPolicy> {
            DynPipeline {
                stages: Arc::from(stages),
            }
        }

        /// This async pipeline with `stage` added inside the stages so far.
        #[must_use]
        pub fn then(self, stage: Arc<dyn DynAsyncPolicy>) -> DynPipeline<dyn DynAsyncPolicy> {
            self.and_then(stage)
        }

        /// Runs the futures the type-erased `call` makes through every
        /// stage. The future owns what it needs (`'static`) and is `Send`;
        /// dropping it cancels the call, and every stage gives back what it
        /// held.
        ///
        /// # Errors
        ///
        /// The call's own error as [`Error::Inner`], or a stage's error.
        pub fn execute_dyn_async(&self, call: DynAsyncCall) -> DynFuture<'static> {
            NextAsync {
                stages: Arc::clone(&self.stages),
                index: 0,
                tail: Tail::Call(call),
            }
            .run()
        }

        /// Runs the futures `call` makes through every stage; the call's
        /// error comes back boxed as [`Error::Inner`]. `call` is called
        /// once per attempt, when the attempt starts.
        ///
        /// # Errors
        ///
        /// The call's own error as [`Error::Inner`], or a stage's error. A
        /// stage that answers with a value of another type than `R` (a
        /// [`FallbackStage`](super::super::FallbackStage) whose function
        /// returns one) is reported as an [`Error::Inner`] naming `R`, not
        /// a panic.
        pub fn execute_async<R, E, F, Fut>(
            &self,
            call: F,
        ) -> impl Future<Output = Result<R, Error<BoxError>>> + Send + 'static
        where
            F: Fn() -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<R, E>> + Send + 'static,
            R: Send + 'static,
            E: Into<BoxError>,
        {
            let call: DynAsyncCall = Arc::new(move || {
                let attempt = call();
                Box::pin(async move {
                    match attempt.await {
                        Ok(value) => Ok(Box::new(value) as DynValue),
                        Err(e) => Err(e.into()),
                    }
                }) as DynCallFuture
            });
            let run = self.execute_dyn_async(call);
            async move { run.await.and_then(super::downcast::<R>) }
        }
    }
}
