//! One named test per bug class that resilience libraries have shipped
//! (Polly, resilience4j, governor, tokio, tokio-retry), each shown to fail
//! on a build that reintroduces the bug.
//!
//! Every test runs on virtual time (`ManualClock`, `VirtualClock`): no
//! test waits for real time to pass, and every wait on another thread is
//! bounded by the watchdog of `common::wait_until` (30 s), so a broken
//! build fails instead of hanging.
//!
//! # Mutations
//!
//! Each test's doc names the smallest change of the production code that
//! brings its bug back, and the first line of the failure it then
//! produces. To reproduce: apply the change, run
//! `cargo test -p stockade --test bug_classes NAME`, see it fail, revert.
//! The table, with lines as of the commit that added this file:
//!
//! | test | file:line | mutation | first line of the failure |
//! | --- | --- | --- | --- |
//! | [`bug_class_half_open_admits_at_most_n_probes`] | `core/src/breaker/transition.rs:273` | `a_of(w) < self.config.half_open_max_probes` → `<=` | `a probe beyond half_open_max_probes was admitted` |
//! | [`bug_class_stale_verdicts_never_change_a_newer_state`] | `core/src/breaker/machine.rs:354` | `let g = token.generation() as Word;` → `let g = gen_of(w);` | `a failure admitted before the reset re-opened the circuit` |
//! | [`bug_class_a_probe_is_freed_by_panic_or_drop`] | `core/src/breaker/permit.rs:234` | `self.breaker.release(self.token);` → `let _ = self.token;` | `a probe dropped by a panic still holds its slot` (after the test's own `the protected call panicked`) |
//! | [`bug_class_each_transition_is_reported_exactly_once`] | `core/src/breaker/transition.rs:193` | `gen_of(old) == gen_of(new)` → `mode_of(old) == mode_of(new)` | `a transition's side effects were lost or duplicated` |
//! | [`bug_class_limiter_grants_exactly_burst_and_n_permits_under_threads`] | `core/src/limiter/plan.rs:219` | `c.burst as u128 * interval` → `(c.burst as u128 + 1) * interval` | `granted beyond the burst on a frozen clock` |
//! | [`bug_class_a_clock_stepping_back_admits_nothing_early`] | `core/src/breaker/word.rs:143` | `if d > MAX_ELAPSED` → `if d > TIME_MASK` | `a clock stepped back re-opened the circuit early` |
//! | [`bug_class_huge_values_and_the_end_of_time_do_not_overflow`] | `core/src/limiter/gcra.rs:239` | `view.tick.checked_add(lead)` → `Some(view.tick.wrapping_add(lead))` | `the theoretical arrival time wrapped at the end of the clock range` |
//! | [`bug_class_backoff_caps_before_it_can_overflow`] | `core/src/backoff.rs:480` | `init as f64 * power` → `init.wrapping_mul(power as u64) as f64` | `the delay went down: the multiply overflowed before the cap` |
//! | [`bug_class_no_lost_or_spurious_wake_up_on_timeout_and_dispose`] | `core/src/blocking/bulkhead.rs:599` | `waiter.thread.unpark();` → deleted | `timed out waiting until a thread finishes` |
//! | [`bug_class_no_queue_jumping_and_no_head_of_line_blocking`] | `core/src/blocking/bulkhead.rs:768` | `waiters.remove(at);` → `let _ = at;` | `timed out waiting until a thread finishes` |
//!
//! The lost wake-up of the blocking bulkhead's hand-off is also checked
//! under every interleaving (up to loom's preemption bound) by
//! `core/tests/loom_blocking_bulkhead.rs`: its invariant "a free permit and
//! a queued waiter never coexist without a wake-up owed"
//! (`assert_no_wake_up_owed`) after a closure's release
//! (`a_release_racing_a_queueing_waiter_always_grants_it`), a guard's
//! (`a_guard_release_racing_a_queueing_waiter_always_grants_it`) and a
//! token's (`a_token_release_racing_a_queueing_waiter_always_grants_it`).
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
use common::wait_until;

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::Barrier;
use std::thread;

use stockade::backoff::{Backoff, BackoffConfig, Jitter};
use stockade::blocking::{Bulkhead, Error, VirtualClock};
use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Outcome, Transition};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, ManualClock, Timestamp};
use stockade::limiter::{RateLimitError, RateLimiter, RateLimiterConfig};

const SEC: Duration = Duration::from_secs(1);
/// The breaker's open period in these tests.
const RESET: Duration = Duration::from_secs(10);
/// Enough past a deadline in either state layout (the 32-bit layout's
/// ticks are about a millisecond).
const SLACK: Duration = Duration::from_millis(100);

fn breaker(config: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new(config.with_reset_timeout(RESET)).expect("valid breaker config")
}

/// A limiter of `burst` permits refilling one every 100 ms.
fn limiter(burst: u32) -> RateLimiter {
    RateLimiter::new(
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(10)
            .with_period(SEC)
            .with_burst(burst),
    )
    .expect("valid limiter config")
}

/// Polly #216, resilience4j #1090: a half-open breaker let more than
/// `half_open_max_probes` calls through (a check-then-act race, or a `<=`
/// for a `<`). Sequentially and with 8 threads racing for 3 slots, exactly
/// `N` probes are admitted.
///
/// Mutation: `core/src/breaker/transition.rs:273`,
/// `a_of(w) < self.config.half_open_max_probes` → `<=`. Fails with
/// `a probe beyond half_open_max_probes was admitted`.
#[test]
fn bug_class_half_open_admits_at_most_n_probes() {
    const N: u32 = 3;
    let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(N));
    let c = ManualClock::new();
    b.trip(&c);
    c.advance(RESET + SLACK);
    let probes: Vec<_> = (0..N)
        .map(|i| {
            b.try_acquire(&c)
                .unwrap_or_else(|e| panic!("probe {i}: {e}"))
        })
        .collect();
    assert!(
        b.try_acquire(&c).is_err(),
        "a probe beyond half_open_max_probes was admitted"
    );
    assert_eq!(b.metrics(&c).probes_in_flight, N);
    drop(probes);

    // Threads racing for the slots of a fresh round.
    let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(N));
    b.trip(&c);
    c.advance(RESET + SLACK);
    let admitted = AtomicU32::new(0);
    let start = Barrier::new(8);
    thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                start.wait();
                for _ in 0..100 {
                    if let Ok(p) = b.try_acquire(&c) {
                        admitted.fetch_add(1, SeqCst);
                        // Kept in flight: the slot stays taken.
                        let _ = p.into_token();
                    }
                }
            });
        }
    });
    assert_eq!(
        admitted.load(SeqCst),
        N,
        "a probe beyond half_open_max_probes was admitted"
    );
}

/// Polly #217, #219: a verdict of a call admitted before a transition
/// (a late failure, a late success) drove the state it was not admitted
/// in. A verdict counts only in its own generation.
///
/// Mutation: `core/src/breaker/machine.rs:354` (`report_slow`),
/// `let g = token.generation() as Word;` → `let g = gen_of(w);` (the
/// verdict is applied to the current generation). Fails with `a failure
/// admitted before the reset re-opened the circuit`.
#[test]
fn bug_class_stale_verdicts_never_change_a_newer_state() {
    let c = ManualClock::new();
    // A failure from before a reset.
    let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
    let old = b.try_acquire(&c).unwrap().into_token();
    b.reset(&c);
    let _ = b.report(old, Outcome::Failure, &c);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "a failure admitted before the reset re-opened the circuit"
    );

    // A slow success from before a trip: it neither closes the half-open
    // circuit nor frees the current probe's slot.
    let b = breaker(BreakerConfig::DEFAULT);
    let slow = b.try_acquire(&c).unwrap().into_token();
    b.trip(&c);
    c.advance(RESET + SLACK);
    let probe = b.try_acquire(&c).expect("the probe");
    let _ = b.report(slow, Outcome::Success, &c);
    let m = b.metrics(&c);
    assert_eq!(
        (
            m.state,
            m.probes_in_flight,
            m.probe_successes,
            m.stale_verdicts
        ),
        (BreakerState::HalfOpen, 1, 0, 1),
        "a success admitted before the trip counted in the half-open round"
    );

    // A late failure of an earlier half-open round does not re-open a
    // later round.
    let b = breaker(
        BreakerConfig::DEFAULT
            .with_half_open_max_probes(2)
            .with_half_open_timeout(Duration::from_secs(5)),
    );
    drop(probe);
    b.trip(&c);
    c.advance(RESET + SLACK);
    let early = b.try_acquire(&c).unwrap().into_token();
    c.advance(Duration::from_secs(5) + SLACK);
    let later = b.try_acquire(&c).expect("a probe of the next round");
    let _ = b.report(early, Outcome::Failure, &c);
    assert_eq!(
        b.state(),
        BreakerState::HalfOpen,
        "a failure of an earlier round re-opened a later one"
    );
    drop(later);
}

/// Polly #311, resilience4j #903: a probe whose call panicked (or whose
/// permit was dropped without a verdict) kept its half-open slot, and the
/// breaker stayed half-open refusing everyone. Here the slot comes back
/// at once; a lost plain-data token's slot comes back when the round ends.
///
/// Mutation: `core/src/breaker/permit.rs:234` (`Drop for BreakerPermit`),
/// `self.breaker.release(self.token);` → `let _ = self.token;`. Fails
/// with `a probe dropped by a panic still holds its slot` (the panic
/// message printed before it, `the protected call panicked`, is the
/// test's own, caught).
#[test]
fn bug_class_a_probe_is_freed_by_panic_or_drop() {
    let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(1));
    let c = ManualClock::new();
    b.trip(&c);
    c.advance(RESET + SLACK);
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _probe = b.try_acquire(&c).expect("the probe");
        panic!("the protected call panicked");
    }));
    assert!(panicked.is_err());
    let probe = b.try_acquire(&c);
    assert!(
        probe.is_ok(),
        "a probe dropped by a panic still holds its slot"
    );
    drop(probe);
    assert!(
        b.try_acquire(&c).is_ok(),
        "a dropped probe still holds its slot"
    );

    // A token never reported (its caller crashed) holds its slot until the
    // half-open round ends, then a new round admits a probe.
    let b = breaker(
        BreakerConfig::DEFAULT
            .with_half_open_max_probes(1)
            .with_half_open_timeout(Duration::from_secs(5)),
    );
    b.trip(&c);
    c.advance(RESET + SLACK);
    let _lost = b.try_acquire(&c).unwrap().into_token();
    assert!(b.try_acquire(&c).is_err());
    c.advance(Duration::from_secs(5) + SLACK);
    assert!(
        b.try_acquire(&c).is_ok(),
        "a lost probe token wedged the breaker past its round"
    );
}

/// resilience4j #646, #891: a transition's side effects (the event, the
/// counters, the new state's time stamp) were lost under a race or
/// emitted twice. Every change of generation is returned as a
/// [`Transition`] to exactly one caller: sequentially through every kind
/// of transition, and with 8 threads racing to perform the same one.
///
/// Mutation: `core/src/breaker/transition.rs:193` (`commit`),
/// `gen_of(old) == gen_of(new)` → `mode_of(old) == mode_of(new)` (a new
/// half-open round looks like no transition). Fails with `a transition's
/// side effects were lost or duplicated`.
#[test]
fn bug_class_each_transition_is_reported_exactly_once() {
    let b = breaker(
        BreakerConfig::DEFAULT
            .with_failure_threshold(1)
            .with_half_open_timeout(Duration::from_secs(5)),
    );
    let c = ManualClock::new();
    let mut seen: Vec<Transition> = Vec::new();
    seen.extend(b.try_acquire(&c).unwrap().failure(&c)); // closed -> open
    c.advance(RESET + SLACK);
    let probe = b.try_acquire(&c).unwrap(); // open -> half-open
    seen.extend(probe.transition());
    let _ = probe.into_token(); // lost: the round will end with no verdict
    c.advance(Duration::from_secs(5) + SLACK);
    let probe = b.try_acquire(&c).unwrap(); // half-open -> a new half-open round
    seen.extend(probe.transition());
    seen.extend(probe.success(&c)); // the round ends at its timeout: closes only then
    seen.push(b.trip(&c));
    seen.push(b.reset(&c));
    for round in 0..50 {
        // Threads race to take the open -> half-open transition.
        seen.extend(b.try_acquire(&c).unwrap().failure(&c));
        c.advance(RESET + SLACK);
        let start = Barrier::new(8);
        let won: Vec<Option<Transition>> = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        b.try_acquire(&c).ok().and_then(|p| {
                            let t = p.transition();
                            let _ = p.into_token();
                            t
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won: Vec<Transition> = won.into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        seen.extend(won);
        seen.push(b.reset(&c));
    }
    let m = b.metrics(&c);
    let generations: Vec<u32> = seen.iter().map(|t| t.generation).collect();
    assert_eq!(
        (seen.len() as u32, m.transitions, generations),
        (m.generation, m.generation, (1..=m.generation).collect()),
        "a transition's side effects were lost or duplicated"
    );
}

/// governor #107, #249: a bucket of `burst` gave `burst + 1`, `n` permits
/// were checked against the wrong capacity, and threads racing on one
/// limiter were over-granted. On a frozen clock exactly `burst` single
/// permits, or `burst` at once, are granted, `burst + 1` at once is
/// refused as never possible, and 4 threads together get exactly
/// `burst`.
///
/// Mutation: `core/src/limiter/plan.rs:219`,
/// `c.burst as u128 * interval` → `(c.burst as u128 + 1) * interval`.
/// Fails with `granted beyond the burst on a frozen clock`.
#[test]
fn bug_class_limiter_grants_exactly_burst_and_n_permits_under_threads() {
    const BURST: u32 = 5;
    let c = ManualClock::starting_at(Timestamp::from_nanos(1 << 40));
    let l = limiter(BURST);
    let granted = (0..2 * BURST).filter(|_| l.try_acquire(&c).is_ok()).count() as u32;
    assert_eq!(granted, BURST, "granted beyond the burst on a frozen clock");
    // One interval later exactly one more.
    c.advance(l.emission_interval());
    assert!(l.try_acquire(&c).is_ok());
    assert!(l.try_acquire(&c).is_err(), "granted beyond the refill");

    let l = limiter(BURST);
    assert_eq!(
        l.try_acquire_n(BURST + 1, &c),
        Err(RateLimitError::ExceedsCapacity {
            requested: BURST + 1,
            capacity: BURST
        })
    );
    assert!(l.try_acquire_n(BURST, &c).is_ok(), "n = burst refused");
    assert!(
        l.try_acquire_n(1, &c).is_err(),
        "granted beyond the burst on a frozen clock"
    );

    let l = limiter(BURST);
    let granted = AtomicU32::new(0);
    let start = Barrier::new(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                start.wait();
                for _ in 0..1000 {
                    if l.try_acquire(&c).is_ok() {
                        granted.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(
        granted.load(SeqCst),
        BURST,
        "granted beyond the burst on a frozen clock"
    );
}

/// governor #299: a clock reading older than the state (a clock stepped
/// back, or a `now` read before another thread's update) was taken as a
/// long elapsed time and admitted early. An open breaker whose clock
/// steps back stays open (it counts its open period again from the
/// step), and a limiter grants nothing extra (for any step in the 64-bit
/// layout, for steps up to `max_lead` in the 32-bit one, as documented).
///
/// Mutation: `core/src/breaker/word.rs:143` (`elapsed_ticks`),
/// `if d > MAX_ELAPSED` → `if d > TIME_MASK` (a time behind reads as a
/// huge elapsed time). Fails with `a clock stepped back re-opened the
/// circuit early`.
#[test]
fn bug_class_a_clock_stepping_back_admits_nothing_early() {
    let t0 = Timestamp::from_nanos(100 * SEC.as_nanos() as u64);
    let c = ManualClock::starting_at(t0);
    let b = breaker(BreakerConfig::DEFAULT);
    b.trip(&c);
    c.set(Timestamp::from_nanos(50 * SEC.as_nanos() as u64));
    assert!(
        b.try_acquire(&c).is_err(),
        "a clock stepped back re-opened the circuit early"
    );
    // The open period counts again from the step back.
    let back = Timestamp::from_nanos(50 * SEC.as_nanos() as u64);
    c.set(back.saturating_add(RESET - SLACK));
    assert!(
        b.try_acquire(&c).is_err(),
        "a clock stepped back re-opened the circuit early"
    );
    // Live: the circuit still half-opens once time moves on.
    c.set(back.saturating_add(RESET + SLACK));
    assert!(b.try_acquire(&c).is_ok(), "the circuit never half-opened");

    // The limiter: used up at t0, then the clock steps back: by 1 s (within
    // `max_lead`, about 10 s here, the 32-bit layout's horizon) and, in the
    // 64-bit layout, exact for any step, by 60 s.
    let wide = CircuitBreaker::TICK == Duration::from_nanos(1);
    let steps: &[u64] = if wide { &[1, 60] } else { &[1] };
    for &back in steps {
        let c = ManualClock::starting_at(t0);
        let l = limiter(2);
        assert!(l.try_acquire_n(2, &c).is_ok());
        c.set(Timestamp::from_nanos(
            t0.as_nanos() - back * SEC.as_nanos() as u64,
        ));
        let extra = (0..10).filter(|_| l.try_acquire(&c).is_ok()).count();
        assert_eq!(
            extra, 0,
            "a clock stepped back by {back} s granted more permits"
        );
    }
}

/// governor #203, tokio #3095: arithmetic on huge values (a far deadline,
/// the end of the clock range, `Duration::MAX` options) overflowed: a
/// panic in debug builds, a wrapped time that grants without limit in
/// release builds. Huge options are refused or work; a limiter at the
/// end of the clock range never grants beyond its burst; the same holds
/// in the 32-bit state layout (`--cfg stockade_force_32bit`, where the
/// state's time wraps by design).
///
/// Mutation: `core/src/limiter/gcra.rs:239` (`tat_at`),
/// `view.tick.checked_add(lead)` → `Some(view.tick.wrapping_add(lead))`.
/// Fails with `the theoretical arrival time wrapped at the end of the
/// clock range`.
#[test]
fn bug_class_huge_values_and_the_end_of_time_do_not_overflow() {
    for start in [u64::MAX - 1, u64::MAX - SEC.as_nanos() as u64, u64::MAX] {
        let c = ManualClock::starting_at(Timestamp::from_nanos(start));
        let l = limiter(3);
        let granted = (0..20).filter(|_| l.try_acquire(&c).is_ok()).count();
        assert!(
            granted <= 3,
            "the theoretical arrival time wrapped at the end of the clock range: {granted} grants"
        );
    }
    // Huge options: a clear error or a working machine, never a panic.
    let huge = RateLimiterConfig::DEFAULT
        .with_requests_per_period(u32::MAX)
        .with_period(Duration::MAX)
        .with_burst(u32::MAX)
        .with_queue_timeout(Duration::MAX);
    if let Ok(l) = RateLimiter::new(huge) {
        let c = ManualClock::starting_at(Timestamp::from_nanos(u64::MAX - 1));
        let _ = l.try_acquire(&c);
        let _ = l.reserve(1, Duration::MAX, &c);
    }
    let huge = BreakerConfig::DEFAULT
        .with_reset_timeout(Duration::MAX)
        .with_half_open_timeout(Duration::MAX);
    if let Ok(b) = CircuitBreaker::new(huge) {
        let c = ManualClock::starting_at(Timestamp::from_nanos(u64::MAX - 1));
        b.trip(&c);
        let refused = b.try_acquire(&c).expect_err("open");
        assert!(refused.retry_after().is_some_and(|d| d > RESET));
    }
    // A bulkhead at its largest size counts without overflowing.
    let big = BulkheadConfig::DEFAULT
        .with_max_concurrent(u32::MAX)
        .with_max_queue(u32::MAX);
    if let Ok(b) = stockade::bulkhead::Bulkhead::new(big) {
        let p = b.try_acquire().expect("a permit");
        drop(p);
        assert_eq!(b.in_use(), 0);
    }
}

/// tokio-retry #1: the exponential delay was multiplied in integers and
/// capped afterwards, so a late retry overflowed (a panic, or a wrapped,
/// tiny delay). The delay never decreases, never exceeds `max_delay`,
/// reaches it, and stays there up to retry `u32::MAX`, with and without
/// jitter.
///
/// Mutation: `core/src/backoff.rs:480` (`delay_nanos`),
/// `let scaled = init as f64 * power;` →
/// `let scaled = init.wrapping_mul(power as u64) as f64;`. Fails with
/// `the delay went down: the multiply overflowed before the cap`.
#[test]
fn bug_class_backoff_caps_before_it_can_overflow() {
    let max = Duration::from_secs(3600);
    for factor in [1.5, 2.0, 10.0, 1e300] {
        let config = BackoffConfig::DEFAULT
            .with_initial_delay(Duration::from_millis(3))
            .with_backoff_factor(factor)
            .with_max_delay(max)
            .with_max_attempts(u32::MAX)
            .with_max_elapsed(None)
            .with_jitter(Jitter::None);
        let b = Backoff::new(config).expect("valid backoff");
        let mut last = Duration::ZERO;
        for retry in (1..=2000).chain([u32::MAX / 2, u32::MAX - 1, u32::MAX]) {
            let d = b.delay(retry);
            assert!(
                d >= last,
                "the delay went down: the multiply overflowed before the cap \
                 (factor {factor}, retry {retry}: {d:?} after {last:?})"
            );
            assert!(d <= max, "retry {retry}: {d:?} above the cap");
            last = d;
        }
        assert_eq!(last, max, "factor {factor}: the cap is never reached");
        let mut jittered = Backoff::new(config.with_jitter(Jitter::Full))
            .unwrap()
            .schedule(7);
        for _ in 0..200 {
            let d = jittered.next_delay(Duration::ZERO).expect("attempts left");
            assert!(d <= max, "a jittered delay above the cap: {d:?}");
        }
    }
}

/// Unsticks parked threads when a test fails inside `thread::scope`: on
/// unwinding it moves virtual time past every deadline, so the scope's
/// join does not hang.
struct Unstick<'a>(&'a VirtualClock);

impl Drop for Unstick<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.advance(Duration::from_secs(1 << 40));
        }
    }
}

/// Joins a scoped thread, failing (instead of hanging) if it does not
/// finish within the watchdog.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    wait_until("a thread finishes", || handle.is_finished());
    handle.join().expect("the thread panicked")
}

fn bulkhead<'c>(name: &str, clock: &'c VirtualClock) -> Bulkhead<&'c VirtualClock> {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_max_queue(4)
        .with_queue_timeout(Duration::from_secs(60));
    Bulkhead::with_timer(name, config, clock).expect("valid bulkhead config")
}

/// tokio #900: a waiter missed its wake-up when a timeout, an
/// interruption or a shutdown raced it, or woke spuriously and ran
/// without a permit. A parked waiter unparked spuriously parks again; a
/// waiter times out exactly when virtual time passes its deadline; a
/// dispose wakes a parked waiter at once with `Disposed` (the Rust
/// blocking API has no interruption of its own; the Python binding's
/// is tested in `python/tests/test_bulkhead.py`,
/// `test_keyboard_interrupt_while_queued_leaks_no_permit`).
///
/// Mutation: `core/src/blocking/bulkhead.rs:599` (`dispose`),
/// `waiter.thread.unpark();` deleted. Fails with `timed out waiting until
/// a thread finishes` (the watchdog).
#[test]
fn bug_class_no_lost_or_spurious_wake_up_on_timeout_and_dispose() {
    let clock = VirtualClock::new();
    let b = bulkhead("bug-class-wake-ups", &clock);
    let held = b.acquire().expect("the only permit");
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let timing_out = s.spawn(|| b.acquire_timeout(Duration::from_secs(10)).map(drop));
        wait_until("the first waiter is parked", || {
            b.metrics().queue_depth == 1 && clock.waiting() == 1
        });
        // A spurious wake-up admits nobody: the waiter parks again.
        for _ in 0..100 {
            timing_out.thread().unpark();
            thread::yield_now();
        }
        wait_until("the waiter parks again", || clock.waiting() == 1);
        assert!(
            !timing_out.is_finished(),
            "a spurious wake-up ended the wait"
        );
        assert_eq!(b.metrics().in_flight, 1, "admitted without a permit");
        // Its deadline passes: it wakes with a timeout.
        clock.advance(Duration::from_secs(10));
        assert!(matches!(join(timing_out), Err(Error::QueueTimeout { .. })));

        let disposed = s.spawn(|| b.execute(|| Ok::<_, ()>(())));
        wait_until("the second waiter is parked", || {
            b.metrics().queue_depth == 1 && clock.waiting() == 1
        });
        b.dispose();
        assert!(matches!(join(disposed), Err(Error::Disposed)));
        assert_eq!(
            clock.now(),
            Timestamp::from_nanos(10 * SEC.as_nanos() as u64),
            "woken by dispose, not by time"
        );
    });
    drop(held);
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.timeouts), (0, 0, 1));
}

/// resilience4j PR #906: a newcomer took a freed permit ahead of the
/// queued waiters (queue jumping), or a waiter that had left the queue
/// (timed out) stayed at its head and swallowed the next hand-off, so
/// the waiters behind it never ran (head-of-line blocking). A newcomer is
/// refused while anyone waits; the front waiter times out; the release
/// then goes to the next waiter.
///
/// Mutation: `core/src/blocking/bulkhead.rs:768` (`admit_slow`, the
/// timeout path), `waiters.remove(at);` → `let _ = at;`. Fails with
/// `timed out waiting until a thread finishes` (the watchdog: the permit
/// went to the departed waiter).
#[test]
fn bug_class_no_queue_jumping_and_no_head_of_line_blocking() {
    let clock = VirtualClock::new();
    let b = bulkhead("bug-class-head-of-line", &clock);
    let held = b.acquire().expect("the only permit");
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let front = s.spawn(|| b.acquire_timeout(Duration::from_secs(5)).map(drop));
        wait_until("the front waiter is parked", || {
            b.metrics().queue_depth == 1 && clock.waiting() == 1
        });
        let behind = s.spawn(|| b.execute(|| Ok::<_, ()>(7)));
        wait_until("the second waiter is parked", || {
            b.metrics().queue_depth == 2 && clock.waiting() == 2
        });
        assert!(
            matches!(b.try_acquire(), Err(Error::BulkheadFull)),
            "a newcomer jumped the queue"
        );
        clock.advance(Duration::from_secs(5));
        assert!(matches!(join(front), Err(Error::QueueTimeout { .. })));
        assert_eq!(b.metrics().queue_depth, 1);
        held.success();
        assert_eq!(join(behind).unwrap(), 7);
    });
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.timeouts), (0, 0, 1));
}
