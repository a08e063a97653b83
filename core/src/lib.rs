//! # Stockade
//!
//! Resilience patterns — circuit breaker, rate limiter, bulkhead, timeout,
//! retry with backoff, request-response — as small, lock-free state machines
//! that firmware, C/C++ programs, Rust services and Python programs share.
//!
//! The crate is `#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "std", test, stockade_loom))]
extern crate std;

mod sync;
mod time;

pub mod backoff;
pub mod breaker;
pub mod bulkhead;
pub mod clock;
pub mod deadline;
pub mod error;
pub mod limiter;

#[cfg(feature = "std")]
pub mod blocking;

pub use error::{ConfigError, ConfigProblem};
