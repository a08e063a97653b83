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
#[derive(Clone)]
pub struct DynPipeline {
    stages: Arc<[Arc<dyn DynPolicy>]>,
}

impl Default for DynPipeline {
    fn default() -> Self {
        DynPipeline::new(Vec::new())
    }
}

impl fmt::Debug for DynPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynPipeline")
            .field("stages", &self.stages.len())
            .finish()
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
        let mut stages: Vec<Arc<dyn DynPolicy>> = self.stages.iter().cloned().collect();
        stages.push(stage);
        DynPipeline::new(stages)
    }

    /// The number of stages.
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// `true` without stages.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
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
    /// The call's own error as [`Error::Inner`], or a stage's error.
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
        self.execute_dyn(call)
            .map(|value| match value.downcast::<R>() {
                Ok(value) => *value,
                Err(_) => unreachable!("the call returns an R"),
            })
    }
}
