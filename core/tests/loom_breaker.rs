//! Loom models of the circuit breaker's concurrency claims.
//!
//! Run with
//! `RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p stockade --release --test loom_breaker`
//! (add `--cfg stockade_force_32bit` for the 32-bit layout).
#![cfg(stockade_loom)]

use core::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker, FailureRateConfig, Outcome};
use stockade::clock::ManualClock;

const RESET: Duration = Duration::from_secs(60);
const ROUND: Duration = Duration::from_secs(30);

fn setup(config: BreakerConfig) -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
    let breaker = CircuitBreaker::new(config).expect("valid config");
    (Arc::new(breaker), Arc::new(ManualClock::new()))
}

/// Opens the breaker and waits out `reset_timeout`: the next acquire is
/// the first probe.
fn ready_for_probes(config: BreakerConfig) -> (Arc<CircuitBreaker>, Arc<ManualClock>) {
    let (b, c) = setup(config);
    b.trip(&*c);
    c.advance(RESET + Duration::from_secs(1));
    (b, c)
}

/// `threads` callers race for probes; exactly `probes` are admitted.
fn probes_admitted(probes: u32, threads: usize) {
    loom::model(move || {
        let (b, c) = ready_for_probes(BreakerConfig::DEFAULT.with_half_open_max_probes(probes));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (b, c) = (b.clone(), c.clone());
                thread::spawn(move || match b.try_acquire(&*c) {
                    Ok(p) => (
                        1,
                        usize::from(p.transition().is_some()),
                        Some(p.into_token()),
                    ),
                    Err(_) => (0, 0, None),
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let admitted: usize = results.iter().map(|r| r.0).sum();
        assert_eq!(admitted, probes as usize);
        // Exactly one admission performed Open -> HalfOpen, and said so.
        assert_eq!(results.iter().map(|r| r.1).sum::<usize>(), 1);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.metrics(&*c).probes_in_flight, probes);
    });
}

#[test]
fn half_open_admits_exactly_one_probe_of_three_racers() {
    probes_admitted(1, 3);
}

#[test]
fn half_open_admits_exactly_two_probes_of_three_racers() {
    probes_admitted(2, 3);
}

/// Callers that take a probe, hold it, and drop it (freeing the slot)
/// never hold more than `half_open_max_probes` at once. The main thread
/// holds all slots but one throughout; two threads race for the last
/// one, the first taking it twice.
fn probes_never_overlap(probes: usize) {
    loom::model(move || {
        let config = BreakerConfig::DEFAULT.with_half_open_max_probes(probes as u32);
        let (b, c) = ready_for_probes(config);
        let held: Vec<_> = (1..probes).map(|_| b.try_acquire(&*c).unwrap()).collect();
        let holding = Arc::new(AtomicUsize::new(held.len()));
        let handles: Vec<_> = [2, 1]
            .into_iter()
            .map(|tries| {
                let (b, c, holding) = (b.clone(), c.clone(), holding.clone());
                thread::spawn(move || {
                    for _ in 0..tries {
                        if let Ok(permit) = b.try_acquire(&*c) {
                            let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= probes, "{now} probes at once");
                            holding.fetch_sub(1, Ordering::SeqCst);
                            drop(permit);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.metrics(&*c).probes_in_flight as usize, held.len());
        drop(held);
        assert_eq!(b.metrics(&*c).probes_in_flight, 0);
    });
}

#[test]
fn dropped_probes_free_slots_but_never_overlap_one() {
    probes_never_overlap(1);
}

#[test]
fn dropped_probes_free_slots_but_never_overlap_two() {
    probes_never_overlap(2);
}

/// Two calls admitted while closed fail concurrently: with a threshold of
/// two, neither count is lost and the circuit opens.
#[test]
fn concurrent_failures_reach_the_threshold() {
    loom::model(|| {
        let (b, c) = setup(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let tokens = [
            b.try_acquire(&*c).unwrap().into_token(),
            b.try_acquire(&*c).unwrap().into_token(),
        ];
        let handles: Vec<_> = tokens
            .into_iter()
            .map(|t| {
                let (b, c) = (b.clone(), c.clone());
                thread::spawn(move || b.report(t, Outcome::Failure, &*c).unwrap())
            })
            .collect();
        let reported: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // Exactly one report performed (and returned) the transition.
        let opened: Vec<_> = reported.into_iter().flatten().collect();
        assert_eq!(opened.len(), 1);
        assert_eq!(
            (opened[0].from, opened[0].to),
            (BreakerState::Closed, BreakerState::Open)
        );
        let m = b.metrics(&*c);
        assert_eq!(m.state, BreakerState::Open);
        assert_eq!((m.failures, m.transitions, m.stale_verdicts), (2, 1, 0));
    });
}

/// The failure-rate window: concurrent reports land in different ring
/// positions; whichever evaluates last sees both, so a rate that needs
/// both calls opens the circuit.
fn window_decides(first: Outcome, second: Outcome, percent: u32) {
    loom::model(move || {
        let rate = FailureRateConfig::new(percent, 2, 2);
        let config = BreakerConfig::DEFAULT
            .with_failure_threshold(CircuitBreaker::MAX_COUNT)
            .with_failure_rate(rate);
        let (b, c) = setup(config);
        let tokens = [
            b.try_acquire(&*c).unwrap().into_token(),
            b.try_acquire(&*c).unwrap().into_token(),
        ];
        let handles: Vec<_> = tokens
            .into_iter()
            .zip([first, second])
            .map(|(t, outcome)| {
                let (b, c) = (b.clone(), c.clone());
                thread::spawn(move || b.report(t, outcome, &*c).unwrap())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.state(), BreakerState::Open);
    });
}

#[test]
fn concurrent_window_failures_are_not_lost() {
    window_decides(Outcome::Failure, Outcome::Failure, 100);
}

#[test]
fn concurrent_window_success_and_failure_reach_minimum_calls() {
    window_decides(Outcome::Success, Outcome::Failure, 50);
}

/// As above, with the two calls in different words of the window's bit
/// ring (slots 31 and 32): each reporter re-reads the ring with
/// read-modify-writes, so the later one sees the other's bit.
#[test]
fn concurrent_window_failures_in_different_ring_words_are_not_lost() {
    loom::model(|| {
        // 2 failures of 33 calls is 6.06 %; 1 of 33 is 3.03 %.
        let rate = FailureRateConfig::new(6, 64, 33);
        let config = BreakerConfig::DEFAULT
            .with_failure_threshold(CircuitBreaker::MAX_COUNT)
            .with_failure_rate(rate);
        let (b, c) = setup(config);
        for _ in 0..31 {
            let t = b.try_acquire(&*c).unwrap().into_token();
            b.report(t, Outcome::Success, &*c).unwrap();
        }
        let tokens = [
            b.try_acquire(&*c).unwrap().into_token(),
            b.try_acquire(&*c).unwrap().into_token(),
        ];
        let handles: Vec<_> = tokens
            .into_iter()
            .map(|t| {
                let (b, c) = (b.clone(), c.clone());
                thread::spawn(move || b.report(t, Outcome::Failure, &*c).unwrap())
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(b.state(), BreakerState::Open);
    });
}

/// Two probes succeed concurrently with `half_open_successes_to_close` 2:
/// neither success is lost and the circuit closes.
#[test]
fn concurrent_probe_successes_close_the_circuit() {
    loom::model(|| {
        let config = BreakerConfig::DEFAULT
            .with_half_open_max_probes(2)
            .with_half_open_successes_to_close(2);
        let (b, c) = ready_for_probes(config);
        let tokens = [
            b.try_acquire(&*c).unwrap().into_token(),
            b.try_acquire(&*c).unwrap().into_token(),
        ];
        let handles: Vec<_> = tokens
            .into_iter()
            .map(|t| {
                let (b, c) = (b.clone(), c.clone());
                thread::spawn(move || b.report(t, Outcome::Success, &*c).unwrap())
            })
            .collect();
        let reported: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let closed: Vec<_> = reported.into_iter().flatten().collect();
        assert_eq!(closed.len(), 1, "one report closed it, and only it says so");
        assert_eq!(closed[0].to, BreakerState::Closed);
        assert_eq!(b.state(), BreakerState::Closed);
    });
}

/// The probe success that closes the circuit races with a call admitted
/// in the new closed generation that fails at once. The window is readied
/// for that generation before the control word moves, so the failure is
/// recorded (neither refused for an old window nor wiped by the closing
/// thread) and, at 100 % from one call, opens the circuit again.
#[test]
fn a_failure_right_after_closing_counts_in_the_window() {
    loom::model(|| {
        let rate = FailureRateConfig::new(100, 2, 1);
        let config = BreakerConfig::DEFAULT
            .with_failure_threshold(CircuitBreaker::MAX_COUNT)
            .with_half_open_successes_to_close(1)
            .with_failure_rate(rate);
        let (b, c) = ready_for_probes(config);
        let probe = b.try_acquire(&*c).unwrap().into_token();
        let closer = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.report(probe, Outcome::Success, &*c).unwrap())
        };
        let caller = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || match b.try_acquire(&*c) {
                Ok(permit) => {
                    permit.failure(&*c);
                    true
                }
                Err(_) => false, // still half-open, its one probe taken
            })
        };
        let closed = closer.join().unwrap();
        assert_eq!(closed.map(|t| t.to), Some(BreakerState::Closed));
        let admitted = caller.join().unwrap();
        let expected = if admitted {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        assert_eq!(b.state(), expected);
    });
}

/// A failure from before a trip-and-reset races with them: whatever the
/// order, it never opens the breaker after the reset.
fn a_stale_failure_never_opens(config: BreakerConfig) {
    loom::model(move || {
        let (b, c) = setup(config);
        let old = b.try_acquire(&*c).unwrap().into_token();
        let reporter = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.report(old, Outcome::Failure, &*c).is_ok())
        };
        let operator = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                b.trip(&*c);
                b.reset(&*c);
            })
        };
        reporter.join().unwrap();
        operator.join().unwrap();
        let m = b.metrics(&*c);
        assert_eq!(m.state, BreakerState::Closed);
        assert_eq!(m.consecutive_failures, 0);
    });
}

#[test]
fn a_stale_failure_never_opens_a_reset_breaker() {
    a_stale_failure_never_opens(BreakerConfig::DEFAULT.with_failure_threshold(1));
}

/// As above, the failure opening through the failure-rate window (100 %
/// from one call): a rate read from the old generation's window never
/// opens the new generation.
#[test]
fn a_stale_window_verdict_never_opens_a_reset_breaker() {
    a_stale_failure_never_opens(
        BreakerConfig::DEFAULT
            .with_failure_threshold(CircuitBreaker::MAX_COUNT)
            .with_failure_rate(FailureRateConfig::new(100, 2, 1)),
    );
}

/// A success from before a trip-and-reset races with them and with the
/// new generation's first failure: whatever the order, it never resets
/// the new generation's count of consecutive failures.
#[test]
fn a_stale_success_never_resets_a_newer_failure_count() {
    loom::model(|| {
        let (b, c) = setup(BreakerConfig::DEFAULT.with_failure_threshold(3));
        b.try_acquire(&*c).unwrap().failure(&*c); // a success has a count to reset
        let old = b.try_acquire(&*c).unwrap().into_token();
        let reporter = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.report(old, Outcome::Success, &*c).is_ok())
        };
        let operator = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                b.trip(&*c);
                b.reset(&*c);
                b.try_acquire(&*c).unwrap().failure(&*c);
            })
        };
        reporter.join().unwrap();
        operator.join().unwrap();
        let m = b.metrics(&*c);
        assert_eq!(m.state, BreakerState::Closed);
        assert_eq!(m.consecutive_failures, 1, "the new generation's failure");
    });
}

/// A probe of an ended half-open round succeeds while a new round admits a
/// probe: if the new round began first, the old success is stale and the
/// breaker stays half-open; otherwise the success counted in its own round
/// and closed the circuit.
#[test]
fn a_stale_probe_success_never_closes_a_later_round() {
    loom::model(|| {
        let config = BreakerConfig::DEFAULT.with_half_open_successes_to_close(1);
        let (b, c) = ready_for_probes(config);
        let old = b.try_acquire(&*c).unwrap().into_token();
        c.advance(ROUND + Duration::from_secs(1)); // the round ends unreported
        let reporter = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.report(old, Outcome::Success, &*c).is_ok())
        };
        let prober = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                // Admitted either way: as the first probe of a new round,
                // or by the circuit the old success closed.
                let permit = b.try_acquire(&*c).unwrap();
                let began = permit.transition().map(|t| t.to) == Some(BreakerState::HalfOpen);
                let _ = permit.into_token();
                began
            })
        };
        reporter.join().unwrap();
        let new_round = prober.join().unwrap();
        let expected = if new_round {
            BreakerState::HalfOpen
        } else {
            BreakerState::Closed
        };
        assert_eq!(b.state(), expected);
    });
}

/// A probe of an ended half-open round fails while a new round admits a
/// probe: if the new probe was admitted, the old failure is stale and the
/// breaker stays half-open; otherwise the failure came first and opened it.
#[test]
fn a_stale_probe_failure_never_reopens_a_later_round() {
    loom::model(|| {
        let (b, c) = ready_for_probes(BreakerConfig::DEFAULT);
        let old = b.try_acquire(&*c).unwrap().into_token();
        c.advance(ROUND + Duration::from_secs(1)); // the round ends unreported
        let reporter = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.report(old, Outcome::Failure, &*c).is_ok())
        };
        let prober = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.try_acquire(&*c).map(|p| p.into_token()).is_ok())
        };
        reporter.join().unwrap();
        let admitted = prober.join().unwrap();
        let expected = if admitted {
            BreakerState::HalfOpen
        } else {
            BreakerState::Open
        };
        assert_eq!(b.state(), expected);
    });
}

/// A probe of an ended half-open round is dropped without a verdict while
/// a new round admits a probe: the old probe's slot is gone with its round,
/// so the drop frees nothing of the new round, whichever comes first, and
/// the new probe still holds the round's only slot.
#[test]
fn a_stale_probe_dropped_never_frees_a_later_rounds_slot() {
    loom::model(|| {
        let (b, c) = ready_for_probes(BreakerConfig::DEFAULT);
        let old = b.try_acquire(&*c).unwrap().into_token();
        c.advance(ROUND + Duration::from_secs(1)); // the round ends unreported
        let dropper = {
            let b = b.clone();
            thread::spawn(move || drop(stockade::breaker::BreakerPermit::from_token(&b, old)))
        };
        let prober = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.try_acquire(&*c).map(|p| p.into_token()).is_ok())
        };
        dropper.join().unwrap();
        assert!(prober.join().unwrap(), "the new round admits a probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(
            b.metrics(&*c).probes_in_flight,
            1,
            "the new probe keeps its slot"
        );
        assert!(b.try_acquire(&*c).is_err(), "and the round has no other");
    });
}

/// A caller racing with the transition that opens the breaker is either
/// admitted while still closed or rejected: the time stamp of the new
/// generation is never taken from an older one, so nothing is admitted
/// early (the clock is already far past `reset_timeout` of the initial
/// stamp).
#[test]
fn a_racing_caller_is_never_admitted_by_an_old_time_stamp() {
    loom::model(|| {
        let (b, c) = setup(BreakerConfig::DEFAULT);
        c.advance(RESET * 10);
        let operator = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                b.trip(&*c);
            })
        };
        let caller = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || b.try_acquire(&*c).ok().map(|p| p.into_token().generation()))
        };
        operator.join().unwrap();
        if let Some(generation) = caller.join().unwrap() {
            assert_eq!(generation, 0, "admitted only while closed");
        }
        assert_eq!(b.state(), BreakerState::Open);
        let rejected = b.try_acquire(&*c).unwrap_err();
        assert!(rejected.retry_after().unwrap() >= RESET);
    });
}

/// A caller reads the clock, then another thread advances the clock and
/// trips the breaker again. The caller's earlier reading must not be taken
/// for a clock that stepped back: restamping the new generation with it
/// would date the trip too early and admit calls before `reset_timeout`.
#[test]
fn an_early_clock_reading_never_backdates_a_trip() {
    loom::model(|| {
        let (b, c) = setup(BreakerConfig::DEFAULT);
        b.trip(&*c);
        let caller = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                let _ = b.try_acquire(&*c).map(|p| p.into_token());
            })
        };
        let operator = {
            let (b, c) = (b.clone(), c.clone());
            thread::spawn(move || {
                c.advance(RESET * 2);
                b.trip(&*c);
            })
        };
        caller.join().unwrap();
        operator.join().unwrap();
        // Tripped "now": a full reset_timeout to go.
        let rejected = b.try_acquire(&*c).unwrap_err();
        assert_eq!(rejected.state(), BreakerState::Open);
        assert!(rejected.retry_after().unwrap() >= RESET);
    });
}
