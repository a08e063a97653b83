//! The blocking API: every pattern of the spec for threads, no async
//! runtime needed (feature `std`, on by default).
//!
//! Each pattern wraps a core state machine, runs closures
//! (`execute(|| …)`, `wrap(f)`), waits where the spec waits (FIFO queues
//! that park, sleeping retries), emits [`Event`]s, keeps [`Metrics`], is
//! shared by name through a per-type registry (`X::new(name, config)`
//! registers, `X::get_<pattern>(name)` finds it; see
//! [`CircuitBreaker::new`]) and can be [disposed](CircuitBreaker::dispose).
//! Time comes from a [`Timer`]: [`MonotonicClock`](crate::clock::MonotonicClock)
//! by default, or a [`VirtualClock`] for tests and simulations.
//!
//! With feature `async` (brought in by `tokio` or `async-io`), the same
//! objects also run futures: `execute_async` and `acquire_async` beside
//! `execute` and `acquire`, `AsyncPolicy` beside [`Policy`], and
//! `Pipeline::execute_async`. Tasks wait on an `AsyncTimer` instead of
//! parking (in the same queues as threads), and a dropped future gives
//! back whatever it held; see the crate docs' "Async Rust".

mod error;
mod events;
mod home;
mod hooks;
mod pool;
mod registry;
mod shell;
mod timer;
mod wait;

pub use error::{Error, ErrorKind};
pub use events::{Event, EventKind, ListenerId, Metrics, Observed, PatternKind};
pub use pool::{DetachedCall, PoolCounts, Refused, WaitError, WorkerPool};
pub use registry::registered_instances;
pub use shell::panic_message;
pub use timer::{Timer, VirtualClock};
mod dynamic;
mod policy;
pub use dynamic::{BoxError, DynCall, DynPipeline, DynPolicy, DynResult, DynValue, Next};
#[cfg(feature = "async")]
pub use dynamic::{DynAsyncCall, DynAsyncPolicy, DynCallFuture, DynFuture, NextAsync};
#[cfg(feature = "async")]
pub use policy::AsyncPolicy;
pub use policy::{Nested, Pipeline, Policy, TimedPipeline, TimeoutStage, Unprotected};
#[cfg(feature = "async")]
pub(crate) mod async_call;
#[cfg(feature = "async")]
mod async_timer;
#[cfg(feature = "async")]
pub use async_timer::AsyncTimer;
#[cfg(any(feature = "tokio", feature = "async-io"))]
pub use async_timer::RuntimeSleep;
#[cfg(feature = "tokio")]
pub use async_timer::TokioClock;
mod timeout;
pub use timeout::{
    Cooperative, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_WORKERS, Timeout, current_deadline,
    with_deadline,
};
mod retry;
pub use retry::{ErrorMatcher, Retry, RetryConfig};
mod breaker;
pub use breaker::{BreakerGuard, BreakerGuardToken, CircuitBreaker};
mod request_response;
#[cfg(feature = "async")]
pub use request_response::AsyncHandler;
pub use request_response::{
    BlockingHandler, Metadata, Request, RequestResponseConfig, RequestResponsePattern, Response,
};
mod bulkhead;
pub use bulkhead::{Bulkhead, BulkheadGuard};
mod limiter;
pub use limiter::RateLimiter;
mod fallback;
pub use fallback::{DynFallbackFn, DynHandleIf, Fallback, FallbackConfig, FallbackStage};
mod hedging;
pub use hedging::Hedging;
#[cfg(feature = "tower")]
pub(crate) use {
    breaker::KeptCall, bulkhead::GuardedCall, hooks::Traced, limiter::LimitedCall,
    timeout::TimedCall,
};
