//! The public value types: state, outcome, rejection.

#[allow(unused_imports)]
use super::*;

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until `reset_timeout` has passed.
    Open,
    /// A few probe calls pass to test the dependency.
    HalfOpen,
    /// Opened by [`CircuitBreaker::force_open`]: rejects until
    /// [`CircuitBreaker::reset`].
    ForcedOpen,
    /// Set by [`CircuitBreaker::disable`]: admits every call and records
    /// nothing until [`CircuitBreaker::reset`].
    Disabled,
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

    /// The state's name in snake case (`"half_open"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded (a failure if slower than `slow_call_threshold`).
    Success,
    /// The call failed.
    Failure,
    /// The call does not count (cancelled, or an error that says nothing
    /// about the dependency's health). Frees a half-open probe slot.
    Ignored,
}

/// A call was rejected: the circuit is open (or half-open with all probe
/// slots taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerRejected {
    /// The state that rejected the call.
    pub state: BreakerState,
    /// How long until a call may be admitted, assuming no other caller
    /// takes the slot first. Open: until `reset_timeout` has passed.
    /// Half-open: at most until the current round ends (a probe slot may
    /// free up sooner). [`Duration::MAX`] when forced open.
    pub retry_after: Duration,
}

impl fmt::Display for BreakerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            BreakerState::ForcedOpen => f.write_str("circuit breaker is forced open"),
            state => write!(
                f,
                "circuit breaker is {state}; retry after {:?}",
                self.retry_after
            ),
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
        let r = BreakerRejected {
            state: BreakerState::HalfOpen,
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            r.to_string(),
            "circuit breaker is half_open; retry after 1.5s"
        );
        assert_eq!(BreakerState::Closed.to_string(), "closed");
    }
}
