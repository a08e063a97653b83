//! One limiter, one concurrency limit and one circuit breaker for a whole
//! fleet, kept in a Redis server (feature `redis`).
//!
//! [`crate::shared`] shares a machine between the processes of one host;
//! this module shares it between hosts. Each decision that must be
//! fleet-wide is **one script call** (`EVALSHA`, reloaded after
//! `SCRIPT FLUSH` or a restart) that runs the core's own arithmetic on
//! integers inside Redis, so the fleet gets the same answers a single
//! machine would give, and each decision that need not be (a closed
//! breaker admitting a call, a limiter refusing a caller it already
//! refused) is taken locally with no round trip.
//!
//! The blocking API makes them like local patterns:
//! [`blocking::RateLimiter::redis`](crate::blocking::RateLimiter::redis),
//! [`blocking::Bulkhead::redis`](crate::blocking::Bulkhead::redis) and
//! [`blocking::CircuitBreaker::redis`](crate::blocking::CircuitBreaker::redis)
//! return the same types as `new`, which compose, emit events and report
//! metrics the same way.
//!
//! # Redis is never a hard dependency
//!
//! * **Every command is bounded** ([`RedisOptions`]): at most
//!   `connect_timeout` (250 ms) for a connection and `command_timeout`
//!   (100 ms) for a reply, so a call returns within `connect_timeout + 2 ×
//!   command_timeout` even when the server hangs, and within
//!   `command_timeout` on an open connection.
//! * **A guard breaker** (a core [`CircuitBreaker`](crate::breaker::CircuitBreaker)
//!   per server and process) opens after `guard_failures` (3) failed
//!   commands in a row; while it is open no command is sent and every
//!   decision is taken at once under the fallback, so a long outage costs
//!   no timeouts. After `guard_reset_timeout` (1 s) one command probes the
//!   server; when it answers, everything is decided by Redis again.
//! * **The fallback** ([`Fallback`]) says what to decide meanwhile: with
//!   the local machine (the default), admit everything, or refuse
//!   everything. Events say when the server stops answering and when it
//!   answers again (`StoreUnavailable`, `StoreRecovered`), and the metric
//!   `fallback_decisions` counts the decisions taken under the fallback.
//!
//! # Whose clock
//!
//! By default Redis's `TIME`, read inside the script: hosts' clocks may
//! disagree, the fleet's decisions do not. All times are **integer
//! microseconds since 1970**: a Lua number (a double) holds them exactly
//! until the year 2255, where nanoseconds would already lose precision.
//! [`TimeSource::Client`] passes the caller's wall clock instead, for
//! servers that forbid `TIME` in scripts; it needs the hosts' clocks kept
//! in step (NTP).
//!
//! # Keys
//!
//! Every object has a base key `<prefix>:v1:{<kind>:<name>}` (kind
//! `limiter`, `bulkhead` or `breaker`) and maybe more keys
//! `<base>:<part>`. The prefix ([`RedisOptions::prefix`], default
//! `stockade`) separates applications; `v1` is the key format, so a later
//! format never misreads these keys; the braces are Redis Cluster's hash
//! tag, so all keys of one object live in one slot and one script can touch
//! them all. Every key expires when it is idle, so an object nobody uses
//! leaves nothing behind, and an absent key always means "nothing is in
//! use" (a full bucket, no permits taken, a closed breaker). The config is
//! stored beside the state and compared on every write: another config is
//! [`RedisError::ConfigMismatch`], naming both, unless
//! [`RedisOptions::adopt_stored_config`] is set.
//!
//! Reads and writes go to the server in the URL: point it at the primary.
//! A replica may still hold keys the primary has expired, and refuses
//! script writes.

mod breaker;
mod error;
mod keys;
mod options;
pub(crate) mod store;

pub use breaker::{FleetAdmission, FleetEvent, RedisCircuitBreaker};
pub use error::{RedisError, StoreFailure};
pub use options::{Fallback, RedisOptions, TimeSource};
