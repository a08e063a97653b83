//! The public value types: state, outcome, rejection.

#[allow(unused_imports)]
use super::*;

/// The state of a [`CircuitBreaker`].
///
/// `#[repr(u8)]` with explicit discriminants: the numbers are part of the
/// C ABI and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed = 0,
    /// Calls are rejected until `reset_timeout` has passed.
    Open = 1,
    /// A few probe calls pass to test the dependency.
    HalfOpen = 2,
    /// Opened by [`CircuitBreaker::force_open`]: rejects until
    /// [`CircuitBreaker::reset`].
    ForcedOpen = 3,
    /// Set by [`CircuitBreaker::disable`]: admits every call and records
    /// nothing until [`CircuitBreaker::reset`].
    Disabled = 4,
}

impl BreakerState {
    pub(super) const fn from_mode(mode: Word) -> BreakerState {
        match mode {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            DISABLED => BreakerState::Disabled,
            // FORCED_OPEN; other values are never written.
            _ => BreakerState::ForcedOpen,
        }
    }

    /// The state's name in snake case (`"half_open"`), as in metrics and
    /// configuration files.
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }

    /// The state as words (`"half-open"`, `"forced open"`), for messages.
    pub const fn as_words(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
            BreakerState::ForcedOpen => "forced open",
            BreakerState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on an admitted call, for [`CircuitBreaker::report`].
///
/// `#[repr(u8)]` with explicit discriminants: the numbers are part of the
/// C ABI and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Outcome {
    /// The call succeeded (a failure if slower than `slow_call_threshold`).
    Success = 0,
    /// The call failed.
    Failure = 1,
    /// The call does not count (cancelled, or an error that says nothing
    /// about the dependency's health). Frees a half-open probe slot.
    Ignored = 2,
}

/// A call was rejected: the circuit is open, half-open with all probe
/// slots taken, or forced open.
///
/// Displayed as `circuit breaker is open; retry after 30s`, or
/// `circuit breaker is forced open` (no time: it stays open until reset).
///
/// # Examples
///
/// The times here are the 64-bit layout's, exact to the nanosecond. With
/// the 32-bit layout (targets without 64-bit atomics) the breaker's timers
/// count [`CircuitBreaker::TICK`]s of 2²⁰ ns ≈ 1.05 ms and round a timeout
/// up by at most two ticks, so that it never ends early: the same trip
/// gives a `retry_after` of 60.001615872 s (`retry after 1min 0.002s`).
///
/// ```
/// use std::time::Duration;
/// use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT)?;
/// let clock = ManualClock::new();
/// breaker.trip(&clock);
/// let rejected = breaker.try_acquire(&clock).unwrap_err();
/// assert_eq!(rejected.state(), BreakerState::Open);
/// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(60)));
/// assert_eq!(rejected.to_string(), "circuit breaker is open; retry after 1min");
/// breaker.force_open(&clock);
/// let rejected = breaker.try_acquire(&clock).unwrap_err();
/// assert_eq!(rejected.retry_after(), None);
/// assert_eq!(rejected.to_string(), "circuit breaker is forced open");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerRejected {
    state: BreakerState,
    retry_after: Option<Duration>,
}

impl BreakerRejected {
    /// A rejection by `state` that ends after `retry_after`.
    pub(super) const fn after(state: BreakerState, retry_after: Duration) -> BreakerRejected {
        BreakerRejected {
            state,
            retry_after: Some(retry_after),
        }
    }

    /// The rejection of a forced-open breaker: no time is meaningful.
    pub(super) const fn forced_open() -> BreakerRejected {
        BreakerRejected {
            state: BreakerState::ForcedOpen,
            retry_after: None,
        }
    }

    /// The state that rejected the call.
    pub const fn state(&self) -> BreakerState {
        self.state
    }

    /// How long until a call may be admitted, assuming no other caller
    /// takes the slot first. Open: until `reset_timeout` has passed.
    /// Half-open: at most until the current round ends (a probe slot may
    /// free up sooner). `None` when forced open: it stays open until
    /// [`CircuitBreaker::reset`] (or another manual operation).
    ///
    /// Exact in the 64-bit layout. In the 32-bit layout the time is counted
    /// in [`CircuitBreaker::TICK`]s (≈ 1.05 ms) and is up to two ticks
    /// (≈ 2.1 ms) longer than the exact time, never shorter.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for BreakerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}", self.state.as_words())?;
        match self.retry_after {
            Some(d) => write!(f, "; retry after {}", crate::HumanDuration(d)),
            None => Ok(()),
        }
    }
}

impl core::error::Error for BreakerRejected {}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn rejection_display() {
        let r = BreakerRejected::after(BreakerState::HalfOpen, Duration::from_millis(1500));
        assert_eq!(
            r.to_string(),
            "circuit breaker is half-open; retry after 1.5s"
        );
        assert_eq!(r.retry_after(), Some(Duration::from_millis(1500)));
        let r = BreakerRejected::after(BreakerState::Open, Duration::from_nanos(29_999_995_579));
        assert_eq!(r.to_string(), "circuit breaker is open; retry after 30s");
        let r = BreakerRejected::forced_open();
        assert_eq!(r.to_string(), "circuit breaker is forced open");
        assert_eq!(r.retry_after(), None);
        assert_eq!(BreakerState::Closed.to_string(), "closed");
    }
}
