//! The retry times the breaker's docs state, in the layout under test
//! (the 64-bit one on a 64-bit host, the 32-bit one with
//! `--cfg stockade_force_32bit`): exact with 1 ns ticks, rounded up by at
//! most two ticks with 2²⁰ ns ticks.

use core::time::Duration;
use stockade::breaker::{BreakerConfig, CircuitBreaker};
use stockade::clock::ManualClock;

#[test]
fn a_tripped_default_breaker_states_its_retry_time_as_documented() {
    let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).unwrap();
    let clock = ManualClock::new();
    breaker.trip(&clock);
    let rejected = breaker.try_acquire(&clock).unwrap_err();
    let after = rejected.retry_after().unwrap();
    if CircuitBreaker::TICK == Duration::from_nanos(1) {
        assert_eq!(after, Duration::from_secs(60));
        assert_eq!(
            rejected.to_string(),
            "circuit breaker is open; retry after 1min"
        );
    } else {
        assert_eq!(CircuitBreaker::TICK, Duration::from_nanos(1 << 20));
        assert_eq!(after, Duration::from_nanos(60_001_615_872));
        assert_eq!(
            rejected.to_string(),
            "circuit breaker is open; retry after 1min 0.002s"
        );
    }
    // Never early, at most two ticks late.
    let exact = Duration::from_secs(60);
    assert!(after >= exact && after - exact <= 2 * CircuitBreaker::TICK);
    // And it is the time that works: admitted exactly then, not a tick before.
    clock.advance(after - Duration::from_nanos(1));
    assert!(breaker.try_acquire(&clock).is_err());
    clock.advance(Duration::from_nanos(1));
    assert!(breaker.try_acquire(&clock).is_ok());
}
