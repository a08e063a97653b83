//! # Stockade
//!
//! Resilience patterns — circuit breaker, rate limiter, bulkhead, timeout,
//! retry with backoff, request-response — as small, lock-free state machines
//! for firmware and Rust services today. The same machines are meant to
//! serve C/C++ and Python programs too: a C ABI and a Python module, thin
//! translations of this crate, are the next steps of the roadmap and are
//! not published yet.
//!
//! The crate is `no_std` and needs no heap. Each machine keeps its
//! decision state in plain atomic words (no pointers inside), has a
//! `const fn` constructor so it can live in a `static`, and gets time only
//! from a [`Clock`](clock::Clock) passed to each call that needs it.
//! With the `std` feature (on by default) the `blocking` module adds the
//! API a threaded Rust program uses: closures, waiting queues, sleeping
//! retries, timeouts, composition, registries, events and metrics.
//!
//! | pattern | core state machine | blocking API (`std`) |
//! | --- | --- | --- |
//! | Circuit breaker | [`breaker::CircuitBreaker`] | `blocking::CircuitBreaker` |
//! | Rate limiter | [`limiter::RateLimiter`] | `blocking::RateLimiter` |
//! | Bulkhead | [`bulkhead::Bulkhead`] | `blocking::Bulkhead` |
//! | Retry | [`backoff::Backoff`], `budget::RetryBudget` | `blocking::Retry` |
//! | Timeout | [`deadline::Deadline`] | `blocking::Timeout` |
//! | Request-response | — | `blocking::RequestResponsePattern` |
//! | Fallback | — | `blocking::Fallback` |
//! | Hedging | [`hedging::HedgeRound`] | `blocking::Hedging` |
//!
//! # The core, one example per machine
//!
//! Every example runs on a [`ManualClock`](clock::ManualClock); firmware
//! uses a [`TickClock`](clock::TickClock) over its hardware counter, and
//! hosts use `MonotonicClock` (or the coarser, cheaper `CoarseClock`).
//!
//! ## Circuit breaker
//!
//! ```
//! use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
//! use stockade::clock::ManualClock;
//!
//! static CLOCK: ManualClock = ManualClock::new();
//! static BREAKER: CircuitBreaker = match CircuitBreaker::new(BreakerConfig::DEFAULT) {
//!     Ok(b) => b,
//!     Err(_) => panic!("bad config"),
//! };
//!
//! for _ in 0..5 {
//!     BREAKER.try_acquire(&CLOCK).unwrap().failure(&CLOCK);
//! }
//! assert_eq!(BREAKER.state(), BreakerState::Open);
//! let rejected = BREAKER.try_acquire(&CLOCK).unwrap_err();
//! assert_eq!(rejected.retry_after().map(|d| d.as_secs()), Some(60));
//! ```
//!
//! ## Rate limiter
//!
//! ```
//! use std::time::Duration;
//! use stockade::clock::ManualClock;
//! use stockade::limiter::{RateLimiter, RateLimiterConfig};
//!
//! let clock = ManualClock::new();
//! let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT)?; // 10 per second
//! for _ in 0..10 {
//!     limiter.try_acquire(&clock)?;
//! }
//! let refused = limiter.try_acquire(&clock).unwrap_err();
//! assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
//!
//! // A reservation books the next slot and says how long to wait.
//! let booked = limiter.reserve(1, Duration::from_secs(1), &clock)?;
//! assert_eq!(booked.wait(), Duration::from_millis(100));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Bulkhead
//!
//! ```
//! use stockade::bulkhead::{Bulkhead, BulkheadConfig};
//!
//! let bulkhead = Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(2))?;
//! let a = bulkhead.try_acquire()?;
//! let _b = bulkhead.try_acquire()?;
//! assert!(bulkhead.try_acquire().is_err()); // full
//! drop(a); // permits are released on drop
//! assert!(bulkhead.try_acquire().is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Backoff
//!
//! ```
//! use std::time::Duration;
//! use stockade::backoff::{Backoff, BackoffConfig};
//!
//! let backoff = Backoff::new(BackoffConfig::DEFAULT.with_max_attempts(4))?;
//! let mut schedule = backoff.schedule(7);
//! let delays: Vec<_> = std::iter::from_fn(|| schedule.next_delay(Duration::ZERO)).collect();
//! assert_eq!(delays, [1, 2, 4].map(Duration::from_secs));
//! # Ok::<(), stockade::ConfigError>(())
//! ```
//!
//! ## Deadline (the Timeout pattern's core)
//!
//! ```
//! use std::time::Duration;
//! use stockade::clock::ManualClock;
//! use stockade::deadline::TimeoutConfig;
//!
//! let clock = ManualClock::new();
//! let deadline = TimeoutConfig::DEFAULT.deadline(&clock); // 5 s
//! clock.advance(Duration::from_secs(2));
//! assert_eq!(deadline.remaining(&clock), Duration::from_secs(3));
//! clock.advance(Duration::from_secs(3));
//! assert!(deadline.is_expired(&clock));
//! ```
//!
//! # The blocking API, one example per pattern
//!
//! The spec's usage blocks, in Rust (each type's docs has more), with one
//! `use` line: [`prelude`]. `X::new(name, config)` registers the pattern
//! under its name (the spec's `CircuitBreaker.getBreaker(name)` is
//! `CircuitBreaker::get_breaker(name)`). A real program uses the default
//! [`MonotonicClock`](clock::MonotonicClock); these examples run on a
//! simulated clock that only moves when told to
//! (`with_timer(.., clock)`: unregistered instances for tests).
//!
//! ```
//! # #[cfg(feature = "std")] {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use stockade::prelude::*;
//!
//! let clock = Arc::new(VirtualClock::auto_advance()); // sleeps move simulated time
//! # fn find_user(id: &str) -> Result<String, String> { Err(format!("db down for {id}")) }
//!
//! // Circuit breaker: 3 failures open it for `reset_timeout`.
//! let breaker = CircuitBreaker::with_timer(
//!     "databaseConnection",
//!     BreakerConfig::DEFAULT
//!         .with_failure_threshold(3)
//!         .with_reset_timeout(Duration::from_secs(30))
//!         .with_half_open_timeout(Duration::from_secs(5)),
//!     Arc::clone(&clock),
//! )?;
//! let protected_find_user = breaker.wrap(|id: &str| find_user(id));
//! for _ in 0..3 {
//!     assert!(matches!(protected_find_user("123"), Err(Error::Inner(_))));
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! assert!(matches!(protected_find_user("123"), Err(Error::BreakerOpen { .. })));
//!
//! // Bulkhead: at most 10 at once, up to 20 waiting.
//! let bulkhead = Bulkhead::with_timer(
//!     "apiRequests",
//!     BulkheadConfig::DEFAULT.with_max_concurrent(10).with_max_queue(20),
//!     Arc::clone(&clock),
//! )?;
//! assert_eq!(bulkhead.execute(|| Ok::<_, std::io::Error>("data"))?, "data");
//!
//! // Timeout: the caller gets its answer or `TimedOut` by the deadline.
//! let timeout = Timeout::with_timer("databaseQuery", TimeoutConfig::DEFAULT, Arc::clone(&clock))?;
//! let rows = timeout.execute(|| Ok::<_, std::io::Error>(vec!["alice", "bob"]))?;
//! assert_eq!(rows.len(), 2);
//!
//! // Retry: 3 attempts, 1 s then 2 s back-off, only for matching errors.
//! let retry = Retry::with_timer(
//!     "apiCall",
//!     RetryConfig::DEFAULT.retry_on("network error").retry_on_regex(r"5\d\d")?,
//!     Arc::clone(&clock),
//! )?;
//! let mut attempts = 0;
//! let fetched = retry.execute(|| {
//!     attempts += 1;
//!     if attempts < 3 { Err("HTTP 503") } else { Ok("payload") }
//! });
//! assert_eq!((fetched.ok(), attempts), (Some("payload"), 3));
//!
//! // Rate limiter: 100 per minute, callers beyond that queue (up to 50).
//! let limiter = RateLimiter::with_timer(
//!     "apiRequests",
//!     RateLimiterConfig::DEFAULT
//!         .with_requests_per_period(100)
//!         .with_period(Duration::from_secs(60))
//!         .with_max_queue_size(50),
//!     Arc::clone(&clock),
//! )?;
//! assert!(limiter.execute(|| Ok::<_, String>(())).is_ok());
//!
//! // Combine them: built once, executed many times; the timeout bounds
//! // each attempt and returns on time.
//! let pipeline = Pipeline::new()
//!     .then(&limiter)
//!     .then(&bulkhead)
//!     .then(&retry)
//!     .then_timeout(&timeout);
//! assert_eq!(pipeline.execute(|| Ok::<_, std::io::Error>(7))?, 7);
//!
//! // Request-response: callers always get a `Response`.
//! let service = RequestResponsePattern::new("myService", |request: &Request<u32>| {
//!     Ok::<_, String>(Response::ok(request.data * 2))
//! })?;
//! let response = service.execute(Request::new(21).with_timeout(Duration::from_secs(5)));
//! assert_eq!((response.status, response.data), (200, Some(42)));
//!
//! // Named patterns are registered: the spec's `getBreaker` finds them.
//! let shared = CircuitBreaker::new("payments", BreakerConfig::DEFAULT)?;
//! assert!(Arc::ptr_eq(&shared, &CircuitBreaker::get_breaker("payments")));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Async Rust, one example per pattern
//!
//! With feature `tokio` (or `async-io`; both imply `async`), every pattern
//! of the blocking API also runs futures, on **the same object**: one
//! named, registered breaker, limiter or bulkhead serves threads and tasks
//! with one state, one set of events and one set of metrics. Each form is
//! the blocking name plus `_async` (`execute_async`, `acquire_async`,
//! `execute_classified_async`, `execute_if_async`); the async
//! [`Policy`](blocking::Policy) is `AsyncPolicy`,
//! and a [`Pipeline`](blocking::Pipeline) of async-capable patterns runs
//! futures with `execute_async`. Waits never block a thread: a limiter's
//! reservation and a retry's back-off are sleeps on an
//! `AsyncTimer`, a bulkhead's queue wakes tasks
//! through their `Waker`s (in one FIFO with blocking callers), and a
//! timeout drops the future at its deadline; a Redis-backed pattern's
//! round trips run on its Redis store's I/O threads while the task awaits
//! them (each pattern's `execute_async` states the limits). Dropping any
//! of these futures cancels the call and gives back what it held. These examples use
//! `TokioClock` on tokio's paused time, so waits
//! take no real time; a program uses the default clock (`X::new(..)`).
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use stockade::prelude::*;
//! use stockade::blocking::TokioClock;
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
//! # runtime.block_on(async {
//! let clock = TokioClock::new();
//! let start = tokio::time::Instant::now();
//!
//! // Circuit breaker: the call's future runs while the permit is held.
//! let breaker = CircuitBreaker::with_timer("db", BreakerConfig::DEFAULT, clock)?;
//! assert_eq!(breaker.execute_async(async { Ok::<_, String>("row") }).await?, "row");
//!
//! // Bulkhead: a task waits its turn without blocking its thread.
//! let bulkhead = Bulkhead::with_timer("api", BulkheadConfig::DEFAULT.with_max_concurrent(1), clock)?;
//! let held = bulkhead.acquire_async().await?;
//! assert!(matches!(bulkhead.try_acquire(), Err(Error::BulkheadFull)));
//! drop(held);
//! assert_eq!(bulkhead.execute_async(async { Ok::<_, String>(1) }).await?, 1);
//!
//! // Rate limiter: 10 per second, no burst; the second call sleeps 100 ms.
//! let limiter = RateLimiter::with_timer(
//!     "quota",
//!     RateLimiterConfig::DEFAULT.with_requests_per_period(10).with_burst(1),
//!     clock,
//! )?;
//! limiter.acquire_async(1).await?;
//! limiter.acquire_async(1).await?;
//! assert_eq!(start.elapsed(), Duration::from_millis(100));
//!
//! // Retry: the back-off (1 s) is a sleep on the clock.
//! let retry = Retry::with_timer("flaky", RetryConfig::DEFAULT, clock)?;
//! let attempts = AtomicU32::new(0);
//! let fetched = retry
//!     .execute_async(|| async {
//!         if attempts.fetch_add(1, Ordering::Relaxed) == 0 { Err("HTTP 503") } else { Ok("payload") }
//!     })
//!     .await?;
//! assert_eq!(fetched, "payload");
//!
//! // Timeout: the future is dropped at the deadline.
//! let timeout = Timeout::with_timer("slow", TimeoutConfig::new(Duration::from_secs(2))?, clock)?;
//! let late = timeout
//!     .execute_async(async {
//!         tokio::time::sleep(Duration::from_secs(60)).await;
//!         Ok::<_, String>(())
//!     })
//!     .await;
//! assert!(matches!(late, Err(Error::TimedOut { .. })));
//!
//! // Combine them: `then_async` adds the timeout, which bounds each attempt.
//! let pipeline = Pipeline::new()
//!     .then(&limiter)
//!     .then(&bulkhead)
//!     .then(&breaker)
//!     .then(&retry)
//!     .then_async(&timeout);
//! assert_eq!(pipeline.execute_async(|| async { Ok::<_, String>(7) }).await?, 7);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The request-response pattern's async form takes an async handler,
//! chosen by the constructor (`new_async`, `unregistered_async`, ...; the
//! handler kind is part of the pattern's type, so `execute` and
//! `execute_async` cannot be mixed up), and always answers with a
//! [`Response`](blocking::Response), as `execute` does:
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use stockade::prelude::*;
//! use stockade::blocking::TokioClock;
//!
//! # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
//! # runtime.block_on(async {
//! let service = RequestResponsePattern::with_timer_async(
//!     "lookup",
//!     RequestResponseConfig::DEFAULT.with_default_timeout(Duration::from_secs(2)),
//!     TokioClock::new(),
//!     |request: Arc<Request<u32>>| async move {
//!         tokio::time::sleep(Duration::from_secs(u64::from(request.data))).await;
//!         Ok::<_, String>(Response::ok(request.data * 2))
//!     },
//! )?;
//! let response = service.execute_async(Request::new(1)).await;
//! assert_eq!((response.status, response.data), (200, Some(2)));
//! // Past the deadline the handler's future is dropped: a 504.
//! assert_eq!(service.execute_async(Request::new(5)).await.status, 504);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//!
//! Invalid configuration returns a [`ConfigError`] naming the option; a
//! rejection is a small `Copy` value that says when to come back. Nothing in
//! the core panics on any input.
//!
//! # Features
//!
//! - `std` (default): the `blocking` API, and the host clocks
//!   `clock::MonotonicClock` and `clock::CoarseClock` (through the `quanta`
//!   crate). Implies `fallback`, which is a no-op on hosts with 64-bit
//!   atomics.
//! - `critical-section`: passed through to portable-atomic, for chips
//!   without compare-and-swap (Cortex-M0, RV32IMC): atomics take a critical
//!   section from the implementation the firmware provides. The firmware
//!   chooses (or sets `--cfg portable_atomic_unsafe_assume_single_core`);
//!   the library never does.
//! - `fallback`: passed through to portable-atomic, whose lock-based 64-bit
//!   atomics then stand in where the target has none. Only
//!   [`ManualClock`](clock::ManualClock) needs them there; no state machine
//!   ever takes a lock.
//!
//! - `async`: the async forms of every blocking pattern (see
//!   [above](#async-rust-one-example-per-pattern)), with no dependency of
//!   its own: bring an `AsyncTimer`.
//! - `tokio`: `async` with tokio's timer: the default
//!   [`MonotonicClock`](clock::MonotonicClock) waits with `tokio::time`
//!   inside a tokio runtime, and `TokioClock`
//!   reads tokio's (pausable) time.
//! - `async-io`: `async` with async-io's timer, for any executor (smol,
//!   async-std, a custom one); with `tokio` too, a wait made inside a tokio
//!   runtime uses tokio's timer and any other async-io's.
//!
//! The C and Python bindings will add features of their own.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", test, stockade_loom))]
extern crate std;

mod sync;
mod time;

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod hedging;
pub mod limiter;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "shared-memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "shared-memory")))]
pub mod shared;

#[cfg(feature = "std")]
pub mod blocking;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

#[cfg(feature = "std")]
pub mod telemetry;

pub use error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue, HumanDuration};

/// Everything a program using the blocking patterns needs, in one `use`:
/// the eight patterns, their configs, [`Error`](blocking::Error),
/// [`Pipeline`](blocking::Pipeline) and [`DynPipeline`](blocking::DynPipeline),
/// [`Request`](blocking::Request) / [`Response`](blocking::Response), the
/// breaker's state and the [`VirtualClock`](blocking::VirtualClock) for
/// tests; with feature `async`, `AsyncPolicy`, `AsyncTimer` and
/// `DynAsyncPolicy`.
///
/// ```
/// use stockade::prelude::*;
///
/// let breaker = CircuitBreaker::unregistered("db", BreakerConfig::DEFAULT)?;
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// # Ok::<(), Error>(())
/// ```
#[cfg(feature = "std")]
pub mod prelude {
    #[cfg(feature = "async")]
    pub use crate::blocking::{AsyncPolicy, AsyncTimer, DynAsyncPolicy};
    pub use crate::blocking::{
        Bulkhead, CircuitBreaker, DynPipeline, DynPolicy, Error, ErrorKind, Fallback,
        FallbackConfig, Hedging, Pipeline, Policy, RateLimiter, Request, RequestResponseConfig,
        RequestResponsePattern, Response, Retry, RetryConfig, Timeout, Timer, VirtualClock,
    };
    pub use crate::breaker::{BreakerConfig, BreakerState};
    pub use crate::bulkhead::BulkheadConfig;
    pub use crate::deadline::TimeoutConfig;
    pub use crate::hedging::HedgingConfig;
    pub use crate::limiter::RateLimiterConfig;
}

/// The crate README's example, run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
