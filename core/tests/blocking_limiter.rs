//! The blocking rate limiter: options and defaults, waiting for a booked
//! slot on virtual time, FIFO order, the queue bounds (`max_queue_size`,
//! `queue_timeout`), dispose wake-ups, registry, composition, and a
//! multi-threaded run checked against the rate bound.
//!
//! Time is a `VirtualClock`; "a thread is parked" is observed through
//! `VirtualClock::waiting()`, never through sleeps.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
#[allow(unused_imports)]
use common::{unique, wait_for, wait_until, within};

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::{Arc, Mutex};
use std::thread;

use stockade::blocking::{
    Bulkhead, Error, Event, EventKind, Metrics, PatternKind, Pipeline, Policy, RateLimiter, Timer,
    VirtualClock,
};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, Timestamp};
use stockade::limiter::{Mode, RateLimiterConfig};
use stockade::{ConfigError, ConfigOption, ConfigValue};

type Result<T, E = ()> = core::result::Result<T, Error<E>>;

const MS: Duration = Duration::from_millis(1);

/// On a failing test, moves virtual time past every deadline so that the
/// scope's parked threads finish and the failure is reported (see the
/// bulkhead tests).
struct Unstick<'a>(&'a VirtualClock);

impl Drop for Unstick<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.advance(Duration::from_secs(1 << 40));
        }
    }
}

/// Joins a scoped thread, failing (instead of hanging) if it does not finish.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    wait_until("a thread finishes", || handle.is_finished());
    handle.join().expect("the thread panicked")
}

/// The emission interval `T` the limiter actually uses: exact with the
/// 64-bit layout, rounded up to whole ticks of 2^k ns with the 32-bit one
/// (`--cfg stockade_force_32bit`), so tests count in `T`, not milliseconds.
fn interval(limiter: &RateLimiter<impl Timer>) -> Duration {
    limiter.core().emission_interval()
}

/// The instant `d` after the clock's zero.
fn at(d: Duration) -> Timestamp {
    Timestamp::from_nanos(d.as_nanos() as u64)
}

/// `true` with the 64-bit state layout, where intervals are exact.
fn exact(limiter: &RateLimiter<impl Timer>) -> bool {
    limiter.core().resolution() == Duration::from_nanos(1)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `per_second` permits per second, burst 1, the given queue bounds.
fn paced(per_second: u32, max_queue_size: u32, queue_timeout: Duration) -> RateLimiterConfig {
    RateLimiterConfig {
        requests_per_period: per_second,
        period: Duration::from_secs(1),
        burst: Some(1),
        max_queue_size,
        queue_timeout,
        mode: Mode::Bursty,
    }
}

fn record(limiter: &RateLimiter<impl Timer>) -> Arc<Mutex<Vec<Event>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    limiter.subscribe(move |e: &Event| sink.lock().unwrap().push(e.clone()));
    log
}

fn kinds(log: &Mutex<Vec<Event>>) -> Vec<EventKind> {
    log.lock().unwrap().iter().map(|e| e.kind.clone()).collect()
}

/// Spawns `f` on a scoped thread and waits until it is parked on the clock
/// as its `nth` sleeper (1-based).
fn parked<'s, R: Send + 's>(
    scope: &'s thread::Scope<'s, '_>,
    clock: &VirtualClock,
    nth: usize,
    f: impl FnOnce() -> R + Send + 's,
) -> thread::ScopedJoinHandle<'s, R> {
    let handle = scope.spawn(f);
    wait_until("the caller is parked", || clock.waiting() == nth);
    handle
}

fn rate_limited<R: core::fmt::Debug, E: core::fmt::Debug>(r: Result<R, E>) -> Duration {
    match r {
        Err(Error::RateLimited { retry_after }) => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[test]
fn defaults_are_the_spec_values() {
    let d = RateLimiterConfig::default();
    assert_eq!(
        d,
        RateLimiterConfig {
            requests_per_period: 10,
            period: Duration::from_secs(1),
            burst: None,
            max_queue_size: 100,
            queue_timeout: Duration::from_secs(30),
            mode: Mode::Bursty,
        }
    );
    let clock = VirtualClock::new();
    let limiter = RateLimiter::with_timer("defaults", d, &clock).unwrap();
    assert_eq!(limiter.name(), "defaults");
    assert_eq!(*limiter.config(), RateLimiterConfig::DEFAULT);
    assert_eq!(limiter.metrics(), Metrics::default());
    // 10 per second with a burst of 10 (bursty mode's default burst).
    let t = interval(&limiter);
    assert!(t >= ms(100) && t < ms(101), "{t:?}");
    assert!(!exact(&limiter) || t == ms(100));
    for _ in 0..10 {
        limiter.try_execute(|| Ok::<_, &str>(())).unwrap();
    }
    assert_eq!(rate_limited(limiter.try_execute(|| Ok::<_, &str>(()))), t);
    // max_queue_size 100: ten callers book ten permits each...
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let waiters: Vec<_> = (1..=10)
            .map(|i| parked(s, &clock, i, move || lim.acquire(10)))
            .collect();
        assert_eq!(limiter.metrics().queue_depth, 100);
        // ...and the 101st permit is refused at once: room in one interval.
        assert_eq!(rate_limited(limiter.execute(|| Ok::<_, &str>(()))), t);
        clock.advance(t * 100);
        for w in waiters {
            join(w).unwrap();
        }
    });
    assert_eq!(clock.now(), at(t * 100));
    let m = limiter.metrics();
    assert_eq!(
        (m.calls, m.successes, m.rejections, m.queue_depth),
        (22, 20, 2, 0)
    );

    // queue_timeout 30 s binds when the queue could hold more: 1 per second.
    let clock = VirtualClock::new();
    let slow = RateLimiter::with_timer(
        "defaults-slow",
        d.with_requests_per_period(1).with_burst(1),
        &clock,
    )
    .unwrap();
    slow.execute(|| Ok::<_, &str>(())).unwrap();
    let t = interval(&slow);
    // Waits of 1 s, 2 s, ..., 30 s fit the 30 s queue timeout (29 with the
    // 32-bit layout, whose interval is a little over 1 s and whose timeout
    // is rounded down to ticks)...
    let timeout = slow.core().queue_timeout();
    let fits = (timeout.as_nanos() / t.as_nanos()) as usize;
    assert!(!exact(&slow) || (fits, timeout) == (30, Duration::from_secs(30)));
    assert!(fits >= 29);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &slow;
        let waiters: Vec<_> = (1..=fits)
            .map(|i| parked(s, &clock, i, move || lim.execute(|| Ok::<_, &str>(i))))
            .collect();
        // ...the next wait does not: it would fit one interval later.
        assert_eq!(
            rate_limited(slow.execute(|| Ok::<_, &str>(0))),
            t * (fits as u32 + 1) - timeout
        );
        clock.advance(t * fits as u32);
        for (i, w) in waiters.into_iter().enumerate() {
            assert_eq!(join(w).unwrap(), i + 1);
        }
    });
}

#[test]
fn invalid_options_name_the_option() {
    let bad = |c: RateLimiterConfig| match RateLimiter::unregistered("bad", c) {
        Err(Error::InvalidConfig(e)) => e,
        other => panic!("expected InvalidConfig, got {other:?}"),
    };
    let d = RateLimiterConfig::DEFAULT;
    assert_eq!(
        bad(d.with_requests_per_period(0)),
        ConfigError::zero(ConfigOption::RequestsPerPeriod, ConfigValue::Count(0))
    );
    assert_eq!(
        bad(d.with_period(Duration::ZERO)),
        ConfigError::zero(ConfigOption::Period, ConfigValue::Duration(Duration::ZERO))
    );
    assert_eq!(
        bad(d.with_burst(0)),
        ConfigError::zero(ConfigOption::Burst, ConfigValue::Count(0))
    );
    assert_eq!(
        bad(d.with_burst(11).with_mode(Mode::Strict)).to_string(),
        "invalid burst = 11: must not exceed requests_per_period (= 10)"
    );
}

#[test]
fn burst_period_and_mode_shape_the_rate() {
    let clock = VirtualClock::new();
    // Bursty, 4 per 2 s, burst 2: two at once, then one every 500 ms.
    let bursty = RateLimiter::with_timer(
        "bursty",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(4)
            .with_period(Duration::from_secs(2))
            .with_burst(2),
        &clock,
    )
    .unwrap();
    let t = interval(&bursty);
    assert!(t >= ms(500) && t < ms(501) && (!exact(&bursty) || t == ms(500)));
    bursty.try_acquire(2).unwrap();
    assert_eq!(rate_limited(bursty.try_acquire(1)), t);
    assert_eq!(rate_limited(bursty.try_acquire(2)), t * 2);
    // Strict, 4 per 2 s: default burst 1, one every 500 ms; never more than
    // 4 in any 2 s window.
    let strict = RateLimiter::with_timer(
        "strict",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(4)
            .with_period(Duration::from_secs(2))
            .with_mode(Mode::Strict),
        &clock,
    )
    .unwrap();
    let t = interval(&strict);
    assert!(t >= ms(500) && t < ms(501) && (!exact(&strict) || t == ms(500)));
    strict.try_acquire(1).unwrap();
    assert_eq!(rate_limited(strict.try_acquire(1)), t);
    // Strict with burst 2: the interval grows to P / (N - B + 1).
    let strict2 = RateLimiter::with_timer(
        "strict2",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(4)
            .with_period(Duration::from_secs(3))
            .with_burst(2)
            .with_mode(Mode::Strict),
        &clock,
    )
    .unwrap();
    let t = interval(&strict2);
    let one = Duration::from_secs(1);
    assert!(t >= one && t < one + ms(1) && (!exact(&strict2) || t == one));
    strict2.try_acquire(2).unwrap();
    assert_eq!(rate_limited(strict2.try_acquire(1)), t);
}

#[test]
fn execute_waits_for_its_slot_on_virtual_time() {
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("slot", paced(10, 5, Duration::from_secs(1)), &clock).unwrap();
    assert_eq!(
        limiter.execute(|| Ok::<_, &str>(clock.now())).unwrap(),
        Timestamp::ZERO
    );
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let waiter = parked(s, &clock, 1, || {
            limiter.execute(|| Ok::<_, &str>(clock.now()))
        });
        assert_eq!(limiter.metrics().queue_depth, 1);
        let t = interval(&limiter);
        clock.advance(t - ms(1));
        assert!(!waiter.is_finished());
        assert_eq!(clock.waiting(), 1);
        // A spurious wake-up 1 ms early: the waiter checks the time and
        // parks again. (Correct code never finishes here; the spin only
        // gives a wrong one the chance to show itself.)
        waiter.thread().unpark();
        for _ in 0..10_000 {
            thread::yield_now();
        }
        wait_until("the waiter parks again", || clock.waiting() == 1);
        assert!(!waiter.is_finished(), "ran before its slot");
        clock.advance(ms(1));
        assert_eq!(join(waiter).unwrap(), at(t));
    });
    let m = limiter.metrics();
    assert_eq!((m.calls, m.successes, m.queue_depth), (2, 2, 0));
}

#[test]
fn waiters_run_in_fifo_order_one_interval_apart() {
    const N: usize = 6;
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("fifo", paced(10, N as u32, Duration::from_secs(5)), &clock)
            .unwrap();
    limiter.try_acquire(1).unwrap();
    let t = interval(&limiter);
    let order = Mutex::new(Vec::new());
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let (lim, order, clk) = (&limiter, &order, &clock);
        let waiters: Vec<_> = (0..N)
            .map(|i| {
                parked(s, &clock, i + 1, move || {
                    lim.execute(|| {
                        order.lock().unwrap().push((i, clk.now()));
                        Ok::<_, &str>(())
                    })
                })
            })
            .collect();
        assert_eq!(limiter.metrics().queue_depth, N as u64);
        // One interval at a time: exactly the next in line runs.
        for done in 1..=N {
            clock.advance(t);
            wait_until("the next waiter runs", || {
                order.lock().unwrap().len() == done
            });
        }
        for w in waiters {
            join(w).unwrap();
        }
    });
    let expected: Vec<_> = (0..N).map(|i| (i, at(t * (i as u32 + 1)))).collect();
    assert_eq!(*order.lock().unwrap(), expected);
}

#[test]
fn a_full_queue_refuses_at_once() {
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("bounded", paced(10, 2, Duration::from_secs(5)), &clock).unwrap();
    let log = record(&limiter);
    let t = interval(&limiter);
    limiter.try_acquire(1).unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let a = parked(s, &clock, 1, move || lim.execute(|| Ok::<_, &str>(1)));
        let b = parked(s, &clock, 2, move || lim.execute(|| Ok::<_, &str>(2)));
        // Two permits are queued: the third caller is refused without
        // waiting, and told when the queue has room.
        assert_eq!(rate_limited(limiter.execute(|| Ok::<_, &str>(3))), t);
        assert_eq!(clock.now(), Timestamp::ZERO);
        clock.advance(t * 2);
        assert_eq!(join(a).unwrap(), 1);
        assert_eq!(join(b).unwrap(), 2);
    });
    let events = log.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].pattern, PatternKind::RateLimiter);
    assert_eq!(&*events[0].name, "bounded");
    assert_eq!(
        events[0].kind,
        EventKind::Rejected {
            retry_after: Some(t)
        }
    );
    let m = limiter.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (4, 3, 1));
}

#[test]
fn a_wait_longer_than_queue_timeout_is_refused_at_once() {
    let clock = VirtualClock::new();
    let limiter = RateLimiter::with_timer("timeout", paced(10, 10, ms(250)), &clock).unwrap();
    let t = interval(&limiter);
    // 250 ms, rounded down to the resolution with the 32-bit layout.
    let timeout = limiter.core().queue_timeout();
    assert!(!exact(&limiter) || timeout == ms(250));
    limiter.try_acquire(1).unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let a = parked(s, &clock, 1, move || lim.acquire(1)); // waits 100 ms
        let b = parked(s, &clock, 2, move || lim.acquire(1)); // waits 200 ms
        // 300 ms > 250 ms: refused; it would fit 50 ms later.
        assert_eq!(rate_limited(limiter.acquire(1)), t * 3 - timeout);
        assert_eq!(
            rate_limited(limiter.execute(|| Ok::<_, &str>(()))),
            t * 3 - timeout
        );
        assert!(!exact(&limiter) || t * 3 - timeout == ms(50));
        clock.advance(t * 2);
        join(a).unwrap();
        join(b).unwrap();
    });
    let m = limiter.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (5, 3, 2));
}

#[test]
fn zero_queue_never_waits() {
    let clock = VirtualClock::new();
    for config in [
        paced(10, 0, Duration::from_secs(1)),
        paced(10, 5, Duration::ZERO),
    ] {
        let limiter = RateLimiter::with_timer("no-wait", config, &clock).unwrap();
        limiter.execute(|| Ok::<_, &str>(())).unwrap();
        assert_eq!(
            rate_limited(limiter.execute(|| Ok::<_, &str>(()))),
            interval(&limiter)
        );
        assert_eq!(clock.waiting(), 0);
    }
}

#[test]
fn try_acquire_and_acquire_take_several_permits() {
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("permits", RateLimiterConfig::DEFAULT.with_burst(5), &clock)
            .unwrap();
    let t = interval(&limiter);
    limiter.try_acquire(3).unwrap();
    assert_eq!(rate_limited(limiter.try_acquire(3)), t);
    // More than the burst never succeeds.
    assert_eq!(rate_limited(limiter.try_acquire(6)), Duration::MAX);
    assert_eq!(rate_limited(limiter.acquire(6)), Duration::MAX);
    // Zero permits: at once.
    limiter.try_acquire(0).unwrap();
    limiter.acquire(0).unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        // Two left; four more need two intervals.
        let waiter = parked(s, &clock, 1, move || lim.acquire(4));
        assert_eq!(limiter.metrics().queue_depth, 2);
        clock.advance(t * 2);
        join(waiter).unwrap();
    });
    let m = limiter.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (7, 4, 3));
}

#[test]
fn execute_counts_outcomes_and_panics_continue() {
    let limiter =
        RateLimiter::with_timer("outcomes", RateLimiterConfig::DEFAULT, VirtualClock::new())
            .unwrap();
    assert_eq!(limiter.execute(|| Ok::<_, &str>(1)).unwrap(), 1);
    assert!(matches!(
        limiter.execute(|| Err::<(), _>("no")),
        Err(Error::Inner("no"))
    ));
    assert!(matches!(
        limiter.try_execute(|| Err::<(), _>("no")),
        Err(Error::Inner("no"))
    ));
    let caught = catch_unwind(AssertUnwindSafe(|| {
        limiter.execute(|| -> core::result::Result<(), ()> { panic!("closure bug") })
    }));
    assert!(caught.is_err(), "the panic must reach the caller");
    let m = limiter.metrics();
    assert_eq!(
        (
            m.calls,
            m.successes,
            m.failures,
            m.rejections,
            m.timeouts,
            m.in_flight
        ),
        (4, 1, 3, 0, 0, 0)
    );
    let double = limiter.wrap(|x: u32| x.checked_mul(2).ok_or("overflow"));
    assert_eq!(double(21).unwrap(), 42);
    assert_eq!(double(u32::MAX).unwrap_err().into_inner(), Some("overflow"));
}

#[test]
fn auto_advance_clock_runs_waits_instantly() {
    let clock = VirtualClock::auto_advance();
    let limiter =
        RateLimiter::with_timer("auto", paced(2, 10, Duration::from_secs(10)), &clock).unwrap();
    let times: Vec<_> = (0..5)
        .map(|_| limiter.execute(|| Ok::<_, &str>(clock.now())).unwrap())
        .collect();
    let t = interval(&limiter);
    assert!(!exact(&limiter) || t == ms(500));
    let expected: Vec<_> = (0..5).map(|i| at(t * i)).collect();
    assert_eq!(times, expected);
}

#[test]
fn dispose_wakes_waiters_and_fails_later_calls() {
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("dispose", paced(10, 5, Duration::from_secs(5)), &clock).unwrap();
    let log = record(&limiter);
    limiter.try_acquire(1).unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let waiters: Vec<_> = (1..=3)
            .map(|i| parked(s, &clock, i, move || lim.execute(|| Ok::<_, &str>(()))))
            .collect();
        assert_eq!(limiter.metrics().queue_depth, 3);
        limiter.dispose();
        assert!(limiter.is_disposed());
        for w in waiters {
            assert!(matches!(join(w), Err(Error::Disposed)));
        }
        assert_eq!(
            clock.now(),
            Timestamp::ZERO,
            "woken by dispose, not by time"
        );
    });
    // At least the latest booking was handed back.
    assert!(limiter.metrics().queue_depth < 3);
    assert!(matches!(
        limiter.execute(|| Ok::<_, &str>(())),
        Err(Error::Disposed)
    ));
    assert!(matches!(
        limiter.try_execute(|| Ok::<_, &str>(())),
        Err(Error::Disposed)
    ));
    assert!(matches!(limiter.acquire(1), Err(Error::Disposed)));
    assert!(matches!(limiter.try_acquire(1), Err(Error::Disposed)));
    assert_eq!(kinds(&log), vec![EventKind::Disposed]);
    limiter.dispose();
    assert_eq!(kinds(&log), vec![EventKind::Disposed]);
    let m = limiter.metrics();
    // Callers refused because the limiter was disposed did not finish a call.
    assert_eq!((m.calls, m.successes, m.rejections), (1, 1, 0));

    // A single waiter's booking is the latest: it is handed back entirely.
    let clock = VirtualClock::new();
    let limiter =
        RateLimiter::with_timer("dispose-one", paced(10, 5, Duration::from_secs(5)), &clock)
            .unwrap();
    limiter.try_acquire(1).unwrap();
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let waiter = parked(s, &clock, 1, move || lim.acquire(1));
        limiter.dispose();
        assert!(matches!(join(waiter), Err(Error::Disposed)));
    });
    assert_eq!(limiter.metrics().queue_depth, 0);
}

#[test]
fn listeners_can_be_removed() {
    let limiter =
        RateLimiter::with_timer("listeners", paced(1, 0, MS), VirtualClock::new()).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let id = limiter.subscribe(move |_| {
        count.fetch_add(1, SeqCst);
    });
    limiter.try_acquire(1).unwrap();
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen.load(SeqCst), 1);
    assert!(limiter.unsubscribe(id));
    assert!(!limiter.unsubscribe(id));
    assert!(limiter.try_acquire(1).is_err());
    assert_eq!(seen.load(SeqCst), 1);
}

#[test]
fn registry_and_get_limiter() {
    let limiter = RateLimiter::get_limiter("registry-requests");
    assert_eq!(*limiter.config(), RateLimiterConfig::DEFAULT);
    assert!(Arc::ptr_eq(
        &limiter,
        &RateLimiter::get_limiter("registry-requests")
    ));
    assert!(Arc::ptr_eq(
        &limiter,
        &RateLimiter::get("registry-requests").unwrap()
    ));
    assert!(Arc::ptr_eq(
        &limiter,
        &RateLimiter::get_or_create("registry-requests", RateLimiterConfig::DEFAULT).unwrap()
    ));
    let other = RateLimiterConfig::DEFAULT.with_requests_per_period(3);
    assert!(matches!(
        RateLimiter::get_or_create("registry-requests", other),
        Err(Error::NameTaken { .. })
    ));
    // get_limiter returns what is registered, whatever its options.
    let custom = RateLimiter::get_or_create("registry-custom", other).unwrap();
    assert!(Arc::ptr_eq(
        &custom,
        &RateLimiter::get_limiter("registry-custom")
    ));
    assert!(matches!(
        RateLimiter::get_or_create("registry-bad", other.with_requests_per_period(0)),
        Err(Error::InvalidConfig(_))
    ));
    limiter.dispose();
    assert!(RateLimiter::get("registry-requests").is_none());
    let fresh = RateLimiter::get_limiter("registry-requests");
    assert!(!Arc::ptr_eq(&limiter, &fresh));
    assert!(!fresh.is_disposed());
    fresh.dispose();
    custom.dispose();
    assert!(RateLimiter::get("registry-custom").is_none());
}

#[test]
fn as_a_policy_in_a_pipeline() {
    let clock = VirtualClock::new();
    let limiter = RateLimiter::with_timer("pipeline", paced(10, 0, MS), &clock).unwrap();
    let bulkhead = Bulkhead::unregistered("pipeline", BulkheadConfig::DEFAULT).unwrap();
    let pipeline = Pipeline::new().then(&limiter).then(&bulkhead);
    assert_eq!(pipeline.execute(|| Ok::<_, &str>(5)).unwrap(), 5);
    // The limiter refuses before the bulkhead is reached.
    assert!(matches!(
        pipeline.execute(|| Ok::<_, &str>(5)),
        Err(Error::RateLimited { .. })
    ));
    assert_eq!(bulkhead.metrics().calls, 1);
    // Policy::run through an Arc passes inner errors unchanged.
    clock.advance(interval(&limiter));
    let shared = Arc::new(&limiter);
    let r: Result<(), &str> = shared.run(|| Err(Error::Inner("inner")));
    assert!(matches!(r, Err(Error::Inner("inner"))));
    let m = limiter.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.rejections),
        (3, 1, 1, 1)
    );
}

#[test]
fn on_the_real_clock_waiters_sleep_their_turn_and_are_disposed() {
    // The default timer (MonotonicClock); no upper time bounds.
    let fast =
        RateLimiter::unregistered("real-fast", paced(1000, 5, Duration::from_secs(1))).unwrap();
    let start = stockade::clock::MonotonicClock.now();
    for _ in 0..3 {
        fast.execute(|| Ok::<_, &str>(())).unwrap();
    }
    let elapsed = stockade::clock::MonotonicClock
        .now()
        .saturating_duration_since(start);
    assert!(elapsed >= interval(&fast) * 2, "{elapsed:?}");
    // One permit an hour: a waiter would sleep for an hour, dispose wakes it.
    let slow = RateLimiter::unregistered(
        "real-slow",
        paced(1, 5, Duration::from_secs(7200)).with_period(Duration::from_secs(3600)),
    )
    .unwrap();
    slow.try_acquire(1).unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| slow.execute(|| Ok::<_, &str>(())));
        wait_until("the waiter books", || slow.metrics().queue_depth == 1);
        slow.dispose();
        assert!(matches!(join(waiter), Err(Error::Disposed)));
    });
    assert_eq!(slow.metrics().queue_depth, 0);
}

/// Several threads run many calls through one limiter while a ticker moves
/// virtual time; the moments the closures ran must respect the rate:
/// the k-th run (0-based, sorted) is at least `(k + 1 - burst)` emission
/// intervals after the start. Dispose at the end leaves no booking queued.
#[test]
fn concurrent_callers_never_exceed_the_rate() {
    const THREADS: usize = 4;
    const CALLS: usize = 300;
    const BURST: u32 = 3;
    let clock = VirtualClock::new();
    let limiter = RateLimiter::with_timer(
        "concurrent",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(100)
            .with_burst(BURST)
            .with_max_queue_size(THREADS as u32)
            .with_queue_timeout(Duration::from_secs(1)),
        &clock,
    )
    .unwrap();
    let interval = interval(&limiter);
    assert!(interval >= ms(10) && interval < ms(11));
    let runs = Mutex::new(Vec::with_capacity(THREADS * CALLS));
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let ticker = s.spawn(|| {
            let mut step = 1u64;
            while !done.load(SeqCst) {
                if clock.waiting() > 0 {
                    step = step * 7 % 13;
                    clock.advance(Duration::from_millis(step));
                }
                thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (limiter, runs, clock) = (&limiter, &runs, &clock);
                s.spawn(move || {
                    for _ in 0..CALLS {
                        // Queue room for every thread: nobody is refused.
                        limiter
                            .execute(|| {
                                runs.lock().unwrap().push(clock.now());
                                Ok::<_, &str>(())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in workers {
            join(w);
        }
        done.store(true, SeqCst);
        join(ticker);
    });
    let mut runs = runs.into_inner().unwrap();
    assert_eq!(runs.len(), THREADS * CALLS);
    runs.sort();
    for (k, at) in runs.iter().enumerate() {
        let earliest = (k as u64 + 1).saturating_sub(u64::from(BURST)) * interval.as_nanos() as u64;
        assert!(
            at.as_nanos() >= earliest,
            "run {k} at {at:?}, before {earliest} ns"
        );
    }
    let m = limiter.metrics();
    assert_eq!((m.successes, m.rejections), ((THREADS * CALLS) as u64, 0));
    limiter.dispose();
    assert_eq!(limiter.metrics().queue_depth, 0);
}

#[test]
fn acquire_timeout_waits_at_most_its_timeout_and_never_beyond_the_config() {
    let clock = VirtualClock::new();
    let limiter = RateLimiter::with_timer("acq-timeout", paced(10, 10, ms(250)), &clock).unwrap();
    let log = record(&limiter);
    let t = interval(&limiter);
    let config_timeout = limiter.core().queue_timeout();
    limiter.try_acquire(1).unwrap();
    // The next permit is one interval away: a shorter timeout is refused
    // at once with the exact remainder, booking nothing.
    let short = t / 4;
    assert_eq!(rate_limited(limiter.acquire_timeout(1, short)), t - short);
    assert_eq!(limiter.metrics().queue_depth, 0, "nothing booked");
    // Zero never waits: the whole wait is the retry_after.
    assert_eq!(rate_limited(limiter.acquire_timeout(1, Duration::ZERO)), t);
    // A timeout longer than the config's is capped by it: three intervals
    // (300 ms) is past 250 ms however long the caller would wait.
    thread::scope(|s| {
        let _unstick = Unstick(&clock);
        let lim = &limiter;
        let a = parked(s, &clock, 1, move || lim.acquire_timeout(1, t)); // waits t
        let b = parked(s, &clock, 2, move || lim.acquire_timeout(1, ms(3_600_000))); // 2t
        assert_eq!(
            rate_limited(limiter.acquire_timeout(1, ms(3_600_000))),
            t * 3 - config_timeout
        );
        assert_eq!(limiter.metrics().queue_depth, 2);
        clock.advance(t);
        join(a).unwrap();
        assert_eq!(clock.now(), at(t));
        assert!(!b.is_finished());
        clock.advance(t);
        join(b).unwrap();
    });
    // n = 0 returns at once whatever the timeout.
    limiter.acquire_timeout(0, Duration::ZERO).unwrap();
    let m = limiter.metrics();
    assert_eq!(
        (m.calls, m.successes, m.rejections, m.queue_depth),
        (7, 4, 3, 0)
    );
    assert_eq!(
        kinds(&log),
        vec![
            EventKind::Rejected {
                retry_after: Some(t - short)
            },
            EventKind::Rejected {
                retry_after: Some(t)
            },
            EventKind::Rejected {
                retry_after: Some(t * 3 - config_timeout)
            },
        ]
    );
    limiter.dispose();
    assert!(matches!(
        limiter.acquire_timeout(1, ms(10)),
        Err(Error::Disposed)
    ));
}
