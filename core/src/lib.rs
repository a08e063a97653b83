//! # Stockade
//!
//! Resilience patterns — circuit breaker, rate limiter, bulkhead, timeout,
//! retry with backoff, request-response — as small, lock-free state machines
//! that firmware, C/C++ programs, Rust services and Python programs share.
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
//!
//! # The core, one example per machine
//!
//! Every example runs on a [`ManualClock`](clock::ManualClock); firmware
//! uses a [`TickClock`](clock::TickClock) over its hardware counter, and
//! hosts use `MonotonicClock`.
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
//! assert_eq!(rejected.retry_after.as_secs(), 60);
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
//! # Errors
//!
//! Invalid configuration returns a [`ConfigError`] naming the option; a
//! rejection is a small `Copy` value that says when to come back. Nothing in
//! the core panics on any input.
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
pub mod limiter;

#[cfg(feature = "std")]
pub mod blocking;

pub use error::{ConfigError, ConfigProblem};
