//! # Stockade
//!
//! Resilience patterns — circuit breaker, rate limiter, bulkhead, timeout,
//! retry with backoff — as small, lock-free state machines that firmware,
//! C/C++ programs, Rust services and Python programs share.
//!
//! The crate is `#![no_std]` and needs no heap. Each machine keeps its
//! decision state in plain atomic words (no pointers inside), has a
//! `const fn` constructor so it can live in a `static`, and gets time only
//! from a [`Clock`](clock::Clock) passed to each call.
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
