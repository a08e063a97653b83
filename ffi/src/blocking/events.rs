//! [`stockade_event`]: what a listener receives.

use core::ffi::c_char;
use std::ffi::CString;

use stockade_core::blocking::{Event, EventKind};

use super::stockade_metrics;
use crate::breaker::stockade_breaker_state;
use crate::time::millis;

/// The pattern that emitted an event.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_pattern_kind {
    /// A circuit breaker.
    CircuitBreaker = 0,
    /// A bulkhead.
    Bulkhead = 1,
    /// A rate limiter.
    RateLimiter = 2,
    /// A retry.
    Retry = 3,
    /// A timeout.
    Timeout = 4,
    /// A request-response pattern.
    RequestResponse = 5,
    /// A fallback.
    Fallback = 6,
    /// A hedging.
    Hedging = 7,
}

/// What happened (which fields of `stockade_event` are set).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_event_kind {
    /// A breaker changed state: `from`, `to`, `generation`.
    StateChanged = 0,
    /// A breaker's periodic monitoring event: `metrics`.
    Monitor = 1,
    /// A call was refused without running: `retry_after_ms` (0 = unknown).
    Rejected = 2,
    /// A failed attempt will be retried: `attempt` (1-based), `delay_ms`.
    Retry = 3,
    /// A call ran out of time: `duration_ms` = the limit.
    TimedOut = 4,
    /// A caller gave up waiting in a queue: `duration_ms` = its wait.
    QueueTimeout = 5,
    /// The pattern was disposed.
    Disposed = 6,
    /// A Redis-backed handle's server stopped answering: from now on its
    /// fallback decides, until `STORE_RECOVERED`. `store_failure` says why.
    /// Emitted once per outage, by the call that met it.
    StoreUnavailable = 7,
    /// A Redis-backed handle's server answers again: Redis decides again.
    StoreRecovered = 8,
    /// A fallback replaced a failed call's outcome with its callback's.
    FallbackUsed = 9,
    /// A hedging launched an extra attempt: `attempt` (2 for the first
    /// hedge).
    HedgeLaunched = 10,
    /// An extra attempt gave a hedged call its result: `attempt` (2 or
    /// more).
    HedgeWon = 11,
    /// An event this version of the header does not know.
    Other = 255,
}

/// An event, valid only during the listener call. Fields that do not
/// belong to `kind` are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_event {
    /// The pattern type.
    pub pattern: stockade_pattern_kind,
    /// What happened.
    pub kind: stockade_event_kind,
    /// `STATE_CHANGED`: the state before.
    pub from: stockade_breaker_state,
    /// `STATE_CHANGED`: the state after.
    pub to: stockade_breaker_state,
    /// `STATE_CHANGED`: the breaker's generation after the change.
    pub generation: u32,
    /// `RETRY`: the attempt that failed (1-based); `HEDGE_LAUNCHED`,
    /// `HEDGE_WON`: the attempt's number.
    pub attempt: u32,
    /// The instance's name (NUL-terminated; "" if anonymous).
    pub name: *const c_char,
    /// When, on the pattern's clock, in nanoseconds.
    pub at_ns: u64,
    /// `REJECTED`: when a new attempt may succeed, ms; 0 = unknown.
    pub retry_after_ms: u64,
    /// `RETRY`: the back-off before the next attempt, ms.
    pub delay_ms: u64,
    /// `TIMED_OUT`: the limit; `QUEUE_TIMEOUT`: the wait, ms.
    pub duration_ms: u64,
    /// `MONITOR`: the breaker's counters.
    pub metrics: stockade_metrics,
    /// `STORE_UNAVAILABLE`: why the server did not answer (a
    /// `stockade_store_failure` number).
    pub store_failure: u8,
}

impl stockade_event {
    pub(crate) fn from_core(e: &Event, name: &CString) -> stockade_event {
        let mut out = stockade_event {
            pattern: super::pattern_kind(e.pattern),
            kind: stockade_event_kind::Other,
            from: stockade_breaker_state::Closed,
            to: stockade_breaker_state::Closed,
            generation: 0,
            attempt: 0,
            name: name.as_ptr(),
            at_ns: e.at.as_nanos(),
            retry_after_ms: 0,
            delay_ms: 0,
            duration_ms: 0,
            metrics: stockade_metrics::default(),
            store_failure: 0,
        };
        match &e.kind {
            EventKind::StateChanged {
                from,
                to,
                generation,
            } => {
                out.kind = stockade_event_kind::StateChanged;
                out.from = (*from).into();
                out.to = (*to).into();
                out.generation = *generation;
            }
            EventKind::Monitor(m) => {
                out.kind = stockade_event_kind::Monitor;
                out.metrics = (*m).into();
            }
            EventKind::Rejected { retry_after } => {
                out.kind = stockade_event_kind::Rejected;
                out.retry_after_ms = retry_after.map_or(0, millis);
            }
            EventKind::Retry { attempt, delay } => {
                out.kind = stockade_event_kind::Retry;
                out.attempt = *attempt;
                out.delay_ms = millis(*delay);
            }
            EventKind::TimedOut { after } => {
                out.kind = stockade_event_kind::TimedOut;
                out.duration_ms = millis(*after);
            }
            EventKind::QueueTimeout { waited } => {
                out.kind = stockade_event_kind::QueueTimeout;
                out.duration_ms = millis(*waited);
            }
            EventKind::Disposed => out.kind = stockade_event_kind::Disposed,
            EventKind::FallbackUsed => out.kind = stockade_event_kind::FallbackUsed,
            EventKind::HedgeLaunched { attempt } => {
                out.kind = stockade_event_kind::HedgeLaunched;
                out.attempt = *attempt;
            }
            EventKind::HedgeWon { attempt } => {
                out.kind = stockade_event_kind::HedgeWon;
                out.attempt = *attempt;
            }
            #[cfg(feature = "redis")]
            EventKind::StoreUnavailable { cause } => {
                out.kind = stockade_event_kind::StoreUnavailable;
                out.store_failure = super::redis::failure_of(*cause) as u8;
            }
            #[cfg(feature = "redis")]
            EventKind::StoreRecovered => out.kind = stockade_event_kind::StoreRecovered,
            _ => {}
        }
        out
    }
}
