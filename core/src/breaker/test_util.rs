//! Helpers shared by the breaker's unit tests.
#![allow(dead_code, unused_imports)]

pub(super) use super::*;
pub(super) use crate::clock::ManualClock;
pub(super) use core::cell::Cell;
extern crate alloc;
pub(super) use alloc::string::ToString;

pub(super) const SEC: Duration = Duration::from_secs(1);
pub(super) const NS: Duration = Duration::from_nanos(1);
/// How late a timer may end: two ticks with the 32-bit layout.
pub(super) const SLACK: Duration = if ROUND_UP == 0 {
    Duration::ZERO
} else {
    Duration::from_nanos(2 * UNIT.nanos_per_tick())
};

pub(super) fn breaker(config: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new(config).expect("valid config")
}

/// A clock at an odd time, so tick rounding is exercised.
pub(super) fn clock() -> ManualClock {
    ManualClock::starting_at(Timestamp::from_nanos(1_234_567_891_011))
}

pub(super) fn fail(b: &CircuitBreaker, c: &ManualClock) {
    b.try_acquire(c).expect("admitted").failure(c);
}

pub(super) fn succeed(b: &CircuitBreaker, c: &ManualClock) {
    b.try_acquire(c).expect("admitted").success(c);
}

#[track_caller]
pub(super) fn rejected(b: &CircuitBreaker, c: &ManualClock) -> BreakerRejected {
    b.try_acquire(c).expect_err("rejected")
}

/// `actual` is `expected`, up to the layout's tick slack.
#[track_caller]
pub(super) fn assert_about(actual: Duration, expected: Duration) {
    assert!(
        actual >= expected && actual <= expected + SLACK,
        "{actual:?} not within [{expected:?}, {expected:?} + {SLACK:?}]"
    );
}

/// Waits out a rejection: one nanosecond early is still rejected, then
/// the next call is admitted.
#[track_caller]
pub(super) fn wait_out<'b>(b: &'b CircuitBreaker, c: &ManualClock) -> BreakerPermit<'b> {
    let r = rejected(b, c);
    c.advance(r.retry_after().unwrap() - NS);
    let again = rejected(b, c);
    assert_eq!(again.retry_after().unwrap(), NS, "retry_after is exact");
    c.advance(NS);
    b.try_acquire(c)
        .expect("admitted once retry_after has passed")
}

pub(super) fn metrics(b: &CircuitBreaker, c: &ManualClock) -> BreakerMetrics {
    b.metrics(c)
}

pub(super) struct CountingClock {
    pub(super) now: Cell<u64>,
    pub(super) reads: Cell<u32>,
}

impl CountingClock {
    pub(super) fn take(&self) -> u32 {
        self.reads.replace(0)
    }
}

impl Clock for CountingClock {
    fn now(&self) -> Timestamp {
        self.reads.set(self.reads.get() + 1);
        Timestamp::from_nanos(self.now.get())
    }
}
