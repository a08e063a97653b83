//! Behaviour tests of the rate limiter.

// The crate links `std` (not `alloc`) for its tests.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]
// `Word` is `u64` or `u32` by layout.
#![allow(clippy::unnecessary_cast)]

use core::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock, Timestamp};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
use crate::sync::WIDE;

const NS: Duration = Duration::from_nanos(1);
const SEC: Duration = Duration::from_secs(1);

pub(super) fn limiter(config: RateLimiterConfig) -> RateLimiter {
    match RateLimiter::new(config) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

pub(super) fn config_error(config: RateLimiterConfig) -> ConfigError {
    match RateLimiter::new(config) {
        Ok(_) => panic!("accepted {config:?}"),
        Err(e) => e,
    }
}

fn at(nanos: u64) -> ManualClock {
    ManualClock::starting_at(Timestamp::from_nanos(nanos))
}

/// A clock at `nanos` rounded down to `l`'s tick, so waits are whole
/// intervals in both layouts (`retry_after_is_exact` covers the rest).
fn aligned(l: &RateLimiter, nanos: u64) -> ManualClock {
    let tick = l.resolution().as_nanos() as u64;
    at(nanos / tick * tick)
}

/// Grants until the first rejection; the count.
fn drain(l: &RateLimiter, clock: &ManualClock) -> u32 {
    let mut n = 0;
    while l.try_acquire(clock).is_ok() {
        n += 1;
        assert!(n <= 1_000_000, "limiter never stops granting");
    }
    n
}

fn retry_after(r: Result<(), RateLimitError>) -> Duration {
    match r {
        Err(RateLimitError::RateLimited { retry_after }) => retry_after,
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// `d` is `expected` rounded up by at most 1/1024 (the 32-bit layout's
/// tick rounding), or exactly `expected` with the 64-bit layout.
fn assert_rounded_up(d: Duration, expected: Duration) {
    if WIDE {
        assert_eq!(d, expected);
    } else {
        assert!(
            d >= expected && d <= expected + expected / 1024,
            "{d:?} vs {expected:?}"
        );
    }
}

#[test]
fn spec_defaults() {
    let c = RateLimiterConfig::DEFAULT;
    assert_eq!(c.requests_per_period, 10);
    assert_eq!(c.period, Duration::from_millis(1000));
    assert_eq!(c.burst, None);
    assert_eq!(c.max_queue_size, 100);
    assert_eq!(c.queue_timeout, Duration::from_millis(30_000));
    assert_eq!(c.mode, Mode::Bursty);
    assert_eq!(RateLimiterConfig::default(), c);
    assert_eq!(Mode::default(), Mode::Bursty);

    let l = limiter(c);
    assert_eq!(l.burst(), 10);
    assert_eq!(l.max_queue_size(), 100);
    assert_rounded_up(l.emission_interval(), Duration::from_millis(100));
    // The queue holds 100 permits = 10 s, less than the 30 s timeout.
    assert_eq!(l.queue_timeout(), l.emission_interval() * 100);
    let clock = ManualClock::new();
    assert_eq!(l.available(&clock), 10);
    assert_eq!(drain(&l, &clock), 10);
    assert_eq!(l.available(&clock), 0);
}

#[test]
fn builders_set_every_option() {
    let c = RateLimiterConfig::DEFAULT
        .with_requests_per_period(7)
        .with_period(Duration::from_secs(3))
        .with_burst(4)
        .with_max_queue_size(9)
        .with_queue_timeout(Duration::from_secs(2))
        .with_mode(Mode::Strict);
    assert_eq!(
        c,
        RateLimiterConfig {
            requests_per_period: 7,
            period: Duration::from_secs(3),
            burst: Some(4),
            max_queue_size: 9,
            queue_timeout: Duration::from_secs(2),
            mode: Mode::Strict,
        }
    );
    let l = limiter(c);
    assert_eq!(l.burst(), 4);
    assert_eq!(l.max_queue_size(), 9);
    // Strict: T = 3 s / (7 - 4 + 1).
    assert_rounded_up(l.emission_interval(), Duration::from_millis(750));
    assert!(l.queue_timeout() <= Duration::from_secs(2));
    assert!(l.queue_timeout() > Duration::from_secs(2) - l.resolution());
}

#[test]
fn rate_and_period_set_the_interval() {
    let l = limiter(
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(3)
            .with_period(Duration::from_secs(1)),
    );
    // 1 s / 3 rounded up: never faster than the configured rate.
    assert_rounded_up(l.emission_interval(), Duration::from_nanos(333_333_334));
    assert_eq!(l.burst(), 3);
    let clock = ManualClock::new();
    assert_eq!(drain(&l, &clock), 3);
    // A long run grants the rate, not more.
    let mut granted = 0;
    for _ in 0..3000 {
        clock.advance(Duration::from_millis(1));
        granted += drain(&l, &clock);
    }
    assert_eq!(granted, 8); // 3 s at 3/s, minus the partial interval in flight
}

#[test]
fn burst_caps_grants_at_once() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(3));
    let clock = at(12_345);
    assert_eq!(drain(&l, &clock), 3);
    // Idle time refills to the burst, not beyond.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(l.available(&clock), 3);
    assert_eq!(drain(&l, &clock), 3);
    // Bursts larger than the rate are allowed in bursty mode.
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(25));
    assert_eq!(drain(&l, &clock), 25);
}

#[test]
fn n_permits_all_or_nothing() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(5));
    let clock = aligned(&l, 999);
    assert_eq!(l.try_acquire_n(0, &clock), Ok(()));
    assert_eq!(l.available(&clock), 5);
    assert_eq!(l.try_acquire_n(3, &clock), Ok(()));
    assert_eq!(l.available(&clock), 2);
    // 3 more: rejected, and nothing consumed.
    let wait = retry_after(l.try_acquire_n(3, &clock));
    assert_eq!(wait, l.emission_interval());
    assert_eq!(l.available(&clock), 2);
    assert_eq!(l.try_acquire_n(2, &clock), Ok(()));
    // More than the burst never succeeds: a distinct error, no clock needed.
    assert_eq!(
        l.try_acquire_n(6, &clock),
        Err(RateLimitError::ExceedsCapacity {
            requested: 6,
            capacity: 5
        })
    );
    clock.advance(Duration::from_secs(100));
    assert_eq!(
        l.try_acquire_n(u32::MAX, &clock),
        Err(RateLimitError::ExceedsCapacity {
            requested: u32::MAX,
            capacity: 5
        })
    );
    assert_eq!(l.try_acquire_n(5, &clock), Ok(()));
}

#[test]
fn retry_after_is_exact() {
    for start in [0, 1, 77_777_777, 123_456_789_012] {
        let l = limiter(
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(7)
                .with_burst(4),
        );
        let clock = at(start);
        assert_eq!(drain(&l, &clock), 4);
        clock.advance(Duration::from_millis(30));
        for n in [1, 2, 4] {
            let wait = retry_after(l.try_acquire_n(n, &clock));
            let base = clock.now();
            // One nanosecond early: still rejected, retry_after shrinks by 1 ns.
            clock.set(base.saturating_add(wait - NS));
            assert_eq!(retry_after(l.try_acquire_n(n, &clock)), NS);
            clock.set(base.saturating_add(wait));
            assert_eq!(
                l.try_acquire_n(n, &clock),
                Ok(()),
                "n = {n}, start = {start}"
            );
        }
    }
}

#[test]
fn reservations_are_fifo_and_bounded() {
    let l = limiter(
        RateLimiterConfig::DEFAULT
            .with_burst(2)
            .with_max_queue_size(3),
    );
    let t = l.emission_interval();
    let clock = aligned(&l, 5_000);
    let start = clock.now();
    let mut ready = [Timestamp::ZERO; 5];
    for (i, slot) in ready.iter_mut().enumerate() {
        let r = match l.reserve(1, Duration::MAX, &clock) {
            Ok(r) => r,
            Err(e) => panic!("reservation {i}: {e}"),
        };
        assert_eq!(r.permits(), 1);
        assert_eq!(r.is_immediate(), i < 2);
        assert_eq!(r.ready_at(), start.saturating_add(r.wait()));
        *slot = r.ready_at();
        assert_eq!(l.queue_depth(&clock), (i as u32).saturating_sub(1));
    }
    // Two at once, then one per interval, in booking order.
    assert_eq!(ready[0], start);
    assert_eq!(ready[1], start);
    for (k, &r) in ready.iter().enumerate().skip(2) {
        assert_eq!(r, start.saturating_add(t * (k as u32 - 1)));
    }
    // The queue (3 permits) is full: refused, nothing consumed.
    let full = l.reserve(1, Duration::MAX, &clock);
    assert_eq!(full, Err(RateLimitError::QueueFull { retry_after: t }));
    assert_eq!(l.queue_depth(&clock), 3);
    // try_acquire does not jump the queue.
    assert!(l.try_acquire(&clock).is_err());
    // Once the first waiter is due, there is room for one more.
    clock.advance(t);
    assert_eq!(l.queue_depth(&clock), 2);
    let r = l.reserve(1, Duration::MAX, &clock).unwrap();
    assert_eq!(r.ready_at(), start.saturating_add(t * 4));
}

#[test]
fn reservation_refusals_consume_nothing() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(1));
    let t = l.emission_interval();
    let clock = aligned(&l, 31);
    assert!(l.reserve(1, Duration::ZERO, &clock).unwrap().is_immediate());
    // The next slot is one interval away: a shorter max wait refuses it.
    assert_eq!(
        l.reserve(1, t - NS, &clock),
        Err(RateLimitError::WaitTooLong {
            wait: t,
            retry_after: NS
        })
    );
    assert_eq!(
        l.reserve(1, Duration::ZERO, &clock),
        Err(RateLimitError::WaitTooLong {
            wait: t,
            retry_after: t
        })
    );
    assert_eq!(l.queue_depth(&clock), 0);
    // ...and the refusals did not move the slot.
    let r = l.reserve(1, t, &clock).unwrap();
    assert_eq!(r.wait(), t);
    assert_eq!(l.queue_depth(&clock), 1);
    // WaitTooLong's retry_after is exact.
    let e = l.reserve(1, t, &clock).unwrap_err();
    assert_eq!(
        e,
        RateLimitError::WaitTooLong {
            wait: t * 2,
            retry_after: t
        }
    );
    clock.advance(t - NS);
    assert!(l.reserve(1, t, &clock).is_err());
    clock.advance(NS);
    assert_eq!(l.reserve(1, t, &clock).unwrap().wait(), t);
}

#[test]
fn queue_timeout_bounds_the_wait() {
    let l = limiter(
        RateLimiterConfig::DEFAULT
            .with_burst(1)
            .with_queue_timeout(Duration::from_millis(250)),
    );
    let t = l.emission_interval();
    assert_eq!(
        l.queue_timeout(),
        Duration::from_nanos(
            (250_000_000 / l.resolution().as_nanos() * l.resolution().as_nanos()) as u64
        )
    );
    let clock = ManualClock::new();
    assert!(l.reserve(1, Duration::MAX, &clock).is_ok()); // immediate
    assert_eq!(l.reserve(1, Duration::MAX, &clock).unwrap().wait(), t);
    assert_eq!(l.reserve(1, Duration::MAX, &clock).unwrap().wait(), t * 2);
    // The third waiter would wait 300 ms > 250 ms.
    match l.reserve(1, Duration::MAX, &clock) {
        Err(RateLimitError::WaitTooLong { wait, retry_after }) => {
            assert_eq!(wait, t * 3);
            assert_eq!(retry_after, t * 3 - l.queue_timeout());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(l.queue_depth(&clock), 2);
}

#[test]
fn zero_queue_means_never_wait() {
    for c in [
        RateLimiterConfig::DEFAULT.with_max_queue_size(0),
        RateLimiterConfig::DEFAULT.with_queue_timeout(Duration::ZERO),
    ] {
        let l = limiter(c.with_burst(2));
        let clock = ManualClock::new();
        assert!(l.reserve(2, Duration::MAX, &clock).unwrap().is_immediate());
        assert!(l.reserve(1, Duration::MAX, &clock).is_err());
        assert_eq!(l.queue_depth(&clock), 0);
        clock.advance(l.emission_interval());
        assert!(l.reserve(1, Duration::MAX, &clock).unwrap().is_immediate());
    }
}

#[test]
fn n_permit_reservations_count_in_the_queue() {
    let l = limiter(
        RateLimiterConfig::DEFAULT
            .with_burst(4)
            .with_max_queue_size(5),
    );
    let t = l.emission_interval();
    let clock = aligned(&l, 3);
    assert!(l.reserve(4, Duration::MAX, &clock).unwrap().is_immediate());
    let r = l.reserve(3, Duration::MAX, &clock).unwrap();
    assert_eq!(r.wait(), t * 3);
    assert_eq!(l.queue_depth(&clock), 3);
    // 3 more would make 6 waiting > 5.
    assert_eq!(
        l.reserve(3, Duration::MAX, &clock),
        Err(RateLimitError::QueueFull { retry_after: t })
    );
    let r = l.reserve(2, Duration::MAX, &clock).unwrap();
    assert_eq!(r.wait(), t * 5);
    assert_eq!(r.permits(), 2);
    assert_eq!(
        l.reserve(5, Duration::MAX, &clock),
        Err(RateLimitError::ExceedsCapacity {
            requested: 5,
            capacity: 4
        })
    );
    let r0 = l.reserve(0, Duration::ZERO, &clock).unwrap();
    assert!(r0.is_immediate());
    assert_eq!(r0.permits(), 0);
    assert_eq!(
        l.cancel(r0.into_token(), &clock),
        Err(CancelError::Immediate)
    );
}

#[test]
fn cancel_returns_only_the_latest_waiting_booking() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(1));
    let t = l.emission_interval();
    let clock = aligned(&l, 10);
    let now = l.reserve(1, Duration::MAX, &clock).unwrap();
    let a = l.reserve(1, Duration::MAX, &clock).unwrap();
    let b = l.reserve(1, Duration::MAX, &clock).unwrap();
    let a_ready = a.ready_at();
    let (now, a, b) = (now.into_token(), a.into_token(), b.into_token());
    // It did not wait...
    assert_eq!(l.cancel(now, &clock), Err(CancelError::Immediate));
    // ...not even after a clock that stepped back.
    clock.set(Timestamp::ZERO);
    assert_eq!(l.cancel(now, &clock), Err(CancelError::Immediate));
    clock.set(Timestamp::from_nanos(
        a_ready.as_nanos() - t.as_nanos() as u64,
    ));
    // b was booked after it.
    assert_eq!(l.cancel(a, &clock), Err(CancelError::Superseded));
    assert_eq!(l.queue_depth(&clock), 2);
    assert_eq!(l.cancel(b, &clock), Ok(1));
    assert_eq!(l.queue_depth(&clock), 1);
    // A second cancel of the same token is refused and changes nothing.
    assert_eq!(l.cancel(b, &clock), Err(CancelError::Superseded));
    assert_eq!(l.queue_depth(&clock), 1);
    assert_eq!(l.cancel(a, &clock), Ok(1)); // now it is the latest
    assert_eq!(l.queue_depth(&clock), 0);
    assert_eq!(retry_after(l.try_acquire(&clock)), t);
    // The slot of `a` is free again.
    let again = l.reserve(1, Duration::MAX, &clock).unwrap();
    assert_eq!(again.ready_at(), a_ready);
    // Past its ready time a booking cannot be returned.
    clock.set(again.ready_at());
    let again = again.into_token();
    assert_eq!(l.cancel(again, &clock), Err(CancelError::Ready));
    assert_eq!(again.ready_at(), a_ready);
    // The token round-trips.
    let back = Reservation::from_token(again);
    assert_eq!((back.permits(), back.ready_at()), (1, a_ready));
    assert_eq!(back.into_token(), again);
}

/// A token carries its booking: the permits, ready time and wait of the
/// reservation it came from.
#[test]
fn a_token_carries_its_booking() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(3));
    let clock = aligned(&l, 10);
    drain(&l, &clock);
    let r = l.reserve(3, Duration::MAX, &clock).unwrap();
    assert!(!r.is_immediate());
    let (permits, ready_at, wait) = (r.permits(), r.ready_at(), r.wait());
    assert_eq!(permits, 3);
    assert_eq!(wait, ready_at.saturating_duration_since(clock.now()));
    let token = r.into_token();
    assert_eq!(
        (token.permits(), token.ready_at(), token.wait()),
        (permits, ready_at, wait)
    );
    assert_eq!(l.cancel(token, &clock), Ok(3));
}

/// Each refused cancel says why, in words of its own.
#[test]
fn cancel_errors_say_why() {
    let all = [
        CancelError::Immediate,
        CancelError::Ready,
        CancelError::Superseded,
    ];
    let texts = all.map(|e| std::format!("{e}"));
    for (e, text) in all.iter().zip(&texts) {
        assert!(
            text.starts_with("reservation not cancelled: ") && text.len() > 30,
            "{e:?}: {text:?}"
        );
        assert_eq!(e.retry_after(), None);
    }
    assert!(texts[0] != texts[1] && texts[1] != texts[2] && texts[0] != texts[2]);
}

/// The polling step of the strict-mode window test: every millisecond, or
/// every 10 ms under Miri, which interprets every poll. The grants fall on
/// multiples of the 200 ms emission interval either way, so both find the
/// same grant times.
const HAMMER_MS: u64 = if cfg!(miri) { 10 } else { 1 };

#[test]
fn strict_mode_never_exceeds_the_quota_in_any_window() {
    for burst in [None, Some(1), Some(3), Some(5)] {
        let mut c = RateLimiterConfig::DEFAULT
            .with_requests_per_period(5)
            .with_period(SEC)
            .with_mode(Mode::Strict);
        c.burst = burst;
        let l = limiter(c);
        let clock = at(1_234);
        // Hammer every millisecond for 5 s; log grant times.
        let mut log = [0u64; 64];
        let mut len = 0;
        for _ in 0..5000 / HAMMER_MS {
            while l.try_acquire(&clock).is_ok() {
                log[len] = clock.now().as_nanos();
                len += 1;
            }
            clock.advance(Duration::from_millis(HAMMER_MS));
        }
        let log = &log[..len];
        let p = SEC.as_nanos() as u64;
        for (i, &start) in log.iter().enumerate() {
            let in_window = log[i..].iter().take_while(|&&g| g < start + p).count();
            assert!(
                in_window <= 5,
                "burst {burst:?}: {in_window} grants in a window"
            );
        }
        // Sustained rate is N - B + 1 per period.
        let b = burst.unwrap_or(1) as usize;
        assert!(
            len >= b + (5 - b + 1) * 4,
            "burst {burst:?}: only {len} grants"
        );
    }
    // Bursty mode, for contrast, admits close to 2N in one period.
    let l = limiter(RateLimiterConfig::DEFAULT.with_requests_per_period(5));
    let clock = ManualClock::new();
    let mut granted = drain(&l, &clock);
    for _ in 0..999 / HAMMER_MS {
        clock.advance(Duration::from_millis(HAMMER_MS));
        granted += drain(&l, &clock);
    }
    assert_eq!(granted, 9);
}

#[test]
fn strict_mode_checks_burst() {
    let c = RateLimiterConfig::DEFAULT.with_mode(Mode::Strict);
    assert_eq!(limiter(c).burst(), 1);
    assert_rounded_up(limiter(c).emission_interval(), Duration::from_millis(100));
    assert_eq!(limiter(c.with_burst(10)).burst(), 10);
    assert_eq!(
        config_error(c.with_burst(11)),
        ConfigError::new(
            ConfigOption::Burst,
            ConfigValue::Count(11),
            ConfigProblem::Exceeds {
                other: ConfigOption::RequestsPerPeriod,
                limit: ConfigValue::Count(10),
            }
        )
    );
}

/// The largest burst is the one the error names: with one request per
/// 2^61 ns (the longest period of the 64-bit layout) a burst of 2 puts the
/// lead exactly at its limit (2^62 ticks) and is accepted; 3 is refused,
/// naming 2. The 64-bit layout only: the 32-bit one picks a tick per
/// limiter, so its limit is a number of ticks of that limiter.
#[test]
fn the_largest_burst_is_the_one_the_error_names() {
    if !WIDE {
        return;
    }
    let c = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_nanos(1 << 61))
        .with_max_queue_size(0);
    assert_eq!(limiter(c.with_burst(2)).burst(), 2);
    assert_eq!(
        config_error(c.with_burst(3)),
        ConfigError::new(
            ConfigOption::Burst,
            ConfigValue::Count(3),
            ConfigProblem::TooLarge {
                max: ConfigValue::Count(2)
            }
        )
    );
}

/// The 32-bit layout's documented maxima together: a burst and a queue of
/// 2^19 each, with a queue timeout long enough to fill the queue, fit its
/// lead (the interval is cut into fewer ticks to make room).
#[test]
fn the_32_bit_layouts_largest_burst_and_queue_fit_together() {
    if WIDE {
        return;
    }
    let c = RateLimiterConfig::DEFAULT
        .with_burst(1 << 19)
        .with_max_queue_size(1 << 19)
        .with_queue_timeout(Duration::from_secs(1 << 30));
    let l = limiter(c);
    assert_eq!((l.burst(), l.max_queue_size()), (1 << 19, 1 << 19));
    // The whole queue can wait: its timeout is capped at the queue's length.
    assert_eq!(l.queue_timeout(), l.emission_interval() * (1 << 19));
}

/// The 32-bit layout's longest period is the one its error names: at it
/// the limiter is built (a tick of at most `u32::MAX` ns), a nanosecond
/// more is refused naming the same maximum.
#[test]
fn the_32_bit_layouts_longest_period_is_the_one_the_error_names() {
    if WIDE {
        return;
    }
    let c = RateLimiterConfig::DEFAULT
        .with_requests_per_period(2)
        .with_period(Duration::from_secs(100 * 365 * 86_400));
    let too_long = config_error(c);
    let max = match too_long.problem {
        ConfigProblem::TooLarge {
            max: ConfigValue::Duration(max),
        } => max,
        other => panic!("{other:?}"),
    };
    assert_eq!(too_long.option, ConfigOption::Period);
    assert!(max < c.period);
    let l = limiter(c.with_period(max));
    assert!(l.resolution() <= Duration::from_nanos(u32::MAX as u64));
    assert_eq!(
        config_error(c.with_period(max + NS)),
        ConfigError::duration_above(ConfigOption::Period, max + NS, max)
    );
}

#[test]
fn backwards_clock_never_grants_extra() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(3));
    let t = l.emission_interval();
    let clock = at(3_600_000_000_000);
    assert_eq!(drain(&l, &clock), 3);
    let drained = clock.now();
    // Steps back by less than a second, then by more: nothing new.
    for back in [NS, t, SEC, SEC * 5] {
        clock.set(Timestamp::from_nanos(
            drained.as_nanos() - back.as_nanos() as u64,
        ));
        assert_eq!(drain(&l, &clock), 0);
        assert_eq!(l.available(&clock), 0);
        assert!(retry_after(l.try_acquire(&clock)) > back);
    }
    // Back at the drain time and one interval on: exactly one.
    clock.set(drained.saturating_add(t));
    assert_eq!(drain(&l, &clock), 1);
    // With a half-empty bucket, a step back does not refill it either.
    clock.advance(t);
    assert_eq!(l.available(&clock), 1);
    clock.set(drained);
    assert_eq!(l.available(&clock), 0);
}

#[test]
fn huge_jumps_refill_to_the_burst_only() {
    let l = limiter(RateLimiterConfig::DEFAULT);
    let clock = at(17);
    assert_eq!(drain(&l, &clock), 10);
    // 100 years later (36.5 Ms) and 200 years later: a full bucket, no more.
    for _ in 0..2 {
        clock.advance(Duration::from_secs(100 * 365 * 86_400));
        assert_eq!(l.available(&clock), 10);
        assert_eq!(drain(&l, &clock), 10);
    }
    // The clock saturates at the end of time. The 64-bit TAT does not
    // wrap: nothing can be booked past u64::MAX ns. The 32-bit one wraps
    // on: frozen time grants a burst at most.
    clock.advance(Duration::MAX);
    assert_eq!(clock.now().as_nanos(), u64::MAX);
    if WIDE {
        assert_eq!(l.try_acquire(&clock), Err(RateLimiter::END_OF_TIME));
        assert_eq!(
            l.reserve(1, Duration::MAX, &clock),
            Err(RateLimiter::END_OF_TIME)
        );
        assert_eq!(l.available(&clock), 10); // it reads as full, but...
        assert_eq!(drain(&l, &clock), 0); // ...books nothing
    } else {
        assert!(drain(&l, &clock) <= 10);
        assert_eq!(drain(&l, &clock), 0);
        assert!(l.reserve(1, Duration::MAX, &clock).is_ok());
        assert_eq!(drain(&l, &clock), 0);
    }
}

#[test]
fn end_of_time() {
    let l = limiter(RateLimiterConfig::DEFAULT);
    let t = l.emission_interval();
    let clock = at(u64::MAX - 3 * t.as_nanos() as u64);
    if WIDE {
        // Three intervals of clock range left: three grants, then refused.
        assert_eq!(drain(&l, &clock), 3);
        assert_eq!(l.try_acquire(&clock), Err(RateLimiter::END_OF_TIME));
        // Rejections that are not about the end stay exact.
        assert_eq!(
            l.try_acquire_n(10, &clock),
            Err(RateLimitError::RateLimited { retry_after: t * 3 })
        );
    } else {
        // The 32-bit word wraps across it. (Use the limiter half a wrap
        // earlier first: a fresh word at this clock value would sit in
        // the documented wrap corner.)
        let wrap = l.wrap_period().as_nanos() as u64;
        let start = clock.now().as_nanos();
        clock.set(Timestamp::from_nanos(start - wrap / 2));
        assert_eq!(drain(&l, &clock), 10);
        let tick = l.resolution().as_nanos() as u64;
        clock.set(Timestamp::from_nanos(start / tick * tick));
        assert_eq!(drain(&l, &clock), 10);
        assert_eq!(retry_after(l.try_acquire(&clock)), t);
        clock.advance(t);
        assert_eq!(drain(&l, &clock), 1);
    }
}

#[test]
fn idle_across_word_wraps() {
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(4));
    let t = l.emission_interval();
    let wrap = l.wrap_period();
    let clock = aligned(&l, 1_000_000_000);
    assert_eq!(drain(&l, &clock), 4);
    // 2^32 ticks is a wrap of the 32-bit layout; the 64-bit one wraps
    // after 584 years. Idle across 2^32 ticks, 1.5 and 3.25 wraps of the
    // real word, and a quarter of a wrap.
    let ticks32 = l.resolution() * (1 << 16) * (1 << 16);
    let mut gaps = [ticks32 + t * 50, Duration::ZERO, Duration::ZERO, wrap / 4];
    if !WIDE {
        gaps[1] = wrap + wrap / 2;
        gaps[2] = wrap * 3 + wrap / 4;
    }
    for gap in gaps {
        if gap.is_zero() {
            continue;
        }
        clock.advance(gap);
        assert_eq!(l.available(&clock), 4, "gap {gap:?}");
        assert_eq!(drain(&l, &clock), 4, "gap {gap:?}");
        assert_eq!(retry_after(l.try_acquire(&clock)), t);
    }
}

#[test]
fn wrap_corner_is_conservative() {
    // An idle gap of exactly one wrap makes the drained word look fresh:
    // the limiter may see the bucket as used (conservative), never more.
    let l = limiter(RateLimiterConfig::DEFAULT.with_burst(4));
    let wrap = l.wrap_period();
    if WIDE {
        assert_eq!(wrap.as_nanos(), 1u128 << 64);
        return;
    }
    assert_eq!(wrap.as_nanos(), l.resolution().as_nanos() << 32);
    let clock = at(1_000);
    assert_eq!(drain(&l, &clock), 4);
    clock.advance(wrap);
    assert_eq!(drain(&l, &clock), 0); // the corner: looks drained
    // It heals within the lead, like a real drained bucket.
    clock.advance(l.emission_interval() * 4);
    assert_eq!(drain(&l, &clock), 4);
}

#[test]
fn extreme_configs_never_panic() {
    let periods = [
        Duration::from_nanos(1),
        Duration::from_micros(1),
        SEC,
        Duration::from_nanos(1 << 61),
        Duration::from_nanos(u64::MAX),
        Duration::MAX,
    ];
    // Under Miri (about a minute for all 2304 configs), every 13th of
    // them, which still tries every value of every axis.
    let stride = if cfg!(miri) { 13 } else { 1 };
    let (mut accepted, mut index) = (0, 0);
    for requests in [1, 2, 1000, u32::MAX] {
        for period in periods {
            for burst in [None, Some(1), Some(1 << 19), Some(u32::MAX)] {
                for queue in [0, 1, 1 << 19, u32::MAX] {
                    for timeout in [Duration::ZERO, SEC, Duration::MAX] {
                        for mode in [Mode::Bursty, Mode::Strict] {
                            index += 1;
                            if index % stride != 0 {
                                continue;
                            }
                            let c = RateLimiterConfig {
                                requests_per_period: requests,
                                period,
                                burst,
                                max_queue_size: queue,
                                queue_timeout: timeout,
                                mode,
                            };
                            let Ok(l) = RateLimiter::new(c) else { continue };
                            accepted += 1;
                            assert!(l.emission_interval() >= l.resolution());
                            for now in [0, 1 << 40, u64::MAX - 1, u64::MAX, 3] {
                                let clock = at(now);
                                let _ = l.try_acquire_n(l.burst(), &clock);
                                let _ = l.try_acquire(&clock);
                                let _ = l.reserve(1, Duration::MAX, &clock);
                                if let Ok(r) = l.reserve(l.burst(), SEC, &clock) {
                                    let _ = l.cancel(r.into_token(), &clock);
                                }
                                assert!(l.available(&clock) <= l.burst());
                                let _ = l.queue_depth(&clock);
                            }
                            let _ = (l.queue_timeout(), l.wrap_period());
                        }
                    }
                }
            }
        }
    }
    assert!(accepted * stride > 100, "{accepted} of every {stride}");
}

#[test]
fn layout_size() {
    let size = core::mem::size_of::<RateLimiter>();
    std::println!("size_of::<RateLimiter>() = {size} (WIDE = {WIDE})");
    assert_eq!(size, if WIDE { 56 } else { 40 });
    assert_eq!(RateLimiter::SIZE, size);
    assert_eq!(RateLimiter::ALIGN, core::mem::align_of::<RateLimiter>());
}

#[test]
fn raw_config_round_trips_and_validates_in_one_place() {
    let raw = RawRateLimiterConfig::DEFAULT;
    assert_eq!(RawRateLimiterConfig::default(), raw);
    assert_eq!((raw.burst, raw.mode), (0, 0)); // none, bursty
    assert_eq!(
        RateLimiterConfig::try_from(raw),
        Ok(RateLimiterConfig::DEFAULT)
    );
    let strict = RateLimiterConfig::DEFAULT
        .with_mode(Mode::Strict)
        .with_burst(3)
        .with_queue_timeout(Duration::ZERO);
    assert_eq!(RateLimiterConfig::try_from(strict.to_raw()), Ok(strict));
    assert_eq!(Mode::Strict as u8, 1);
    // An unknown mode names the option; nothing else is checked twice.
    let bad = config_error_raw(RawRateLimiterConfig { mode: 7, ..raw });
    assert_eq!(
        (bad.option, bad.problem),
        (ConfigOption::Mode, ConfigProblem::Invalid)
    );
    let zero = config_error_raw(RawRateLimiterConfig {
        requests_per_period: 0,
        ..raw
    });
    assert_eq!(zero.option, ConfigOption::RequestsPerPeriod);
    assert_eq!(
        RateLimiterConfig::DEFAULT.with_burst(0).validate(),
        Err(config_error(RateLimiterConfig::DEFAULT.with_burst(0)))
    );
    // Extreme integers: an error or a limiter, never a panic.
    for requests in [1, u32::MAX] {
        for big in [0, 1, u32::MAX] {
            let raw = RawRateLimiterConfig {
                period_ms: u64::MAX,
                queue_timeout_ms: u64::MAX,
                requests_per_period: requests,
                burst: big,
                max_queue_size: big,
                mode: 1,
            };
            let _ = RateLimiterConfig::try_from(raw);
            let _ = RateLimiterConfig::try_from(RawRateLimiterConfig { mode: 0, ..raw });
        }
    }
}

fn config_error_raw(raw: RawRateLimiterConfig) -> ConfigError {
    match RateLimiterConfig::try_from(raw) {
        Ok(c) => panic!("accepted {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn const_and_static_construction() {
    static LIMITER: RateLimiter = match RateLimiter::new(RateLimiterConfig::DEFAULT) {
        Ok(l) => l,
        Err(_) => panic!("default config is valid"),
    };
    const BAD: Result<RateLimiter, ConfigError> =
        RateLimiter::new(RateLimiterConfig::DEFAULT.with_requests_per_period(0));
    assert!(BAD.is_err());
    let clock = ManualClock::new();
    assert_eq!(LIMITER.available(&clock), 10);
}

/// A caller polling every `P / N` or `P / 2N` gets `N` per `P` (±1 at the
/// edges) in both modes and both layouts, and after every refusal,
/// advancing by exactly its `retry_after` admits (one nanosecond less does
/// not).
#[test]
fn periodic_callers_get_the_quota() {
    let periods = [
        Duration::from_millis(1),
        SEC,
        Duration::from_secs(60),
        Duration::from_secs(3600),
    ];
    // Under Miri, which interprets every poll: one and ten per period.
    let quotas: &[u32] = if cfg!(miri) {
        &[1, 10]
    } else {
        &[1, 5, 10, 100, 1000]
    };
    for &n in quotas {
        for period in periods {
            for mode in [Mode::Bursty, Mode::Strict] {
                for polls_per_slot in [1u32, 2] {
                    let config = RateLimiterConfig::DEFAULT
                        .with_requests_per_period(n)
                        .with_period(period)
                        .with_mode(mode);
                    let l = limiter(config);
                    let step = period / (n * polls_per_slot);
                    let clock = at(123_456_789);
                    let case = std::format!("{n} per {period:?}, {mode:?}, every {step:?}");
                    // One period to drain the initial burst, then four counted.
                    let warm_up = n * polls_per_slot;
                    let mut granted = 0;
                    for poll in 0..5 * n * polls_per_slot {
                        match l.try_acquire(&clock) {
                            Ok(()) => granted += u32::from(poll >= warm_up),
                            Err(e) => {
                                let wait = e.retry_after().expect("rate limited");
                                assert!(wait <= step, "{case}: retry after {wait:?}");
                                let probe = l.snapshot();
                                if wait > NS {
                                    let early =
                                        at(clock.now().as_nanos() + wait.as_nanos() as u64 - 1);
                                    assert!(probe.try_acquire(&early).is_err(), "{case}: early");
                                }
                                let due = at(clock.now().as_nanos() + wait.as_nanos() as u64);
                                assert_eq!(
                                    probe.try_acquire(&due),
                                    Ok(()),
                                    "{case}: at retry_after"
                                );
                            }
                        }
                        clock.advance(step);
                    }
                    assert!(
                        granted.abs_diff(4 * n) <= 1,
                        "{case}: {granted} granted in 4 periods"
                    );
                }
            }
        }
    }
}
