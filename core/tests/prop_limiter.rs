//! The rate limiter against a tiny reference GCRA: random operations and
//! clock moves (backwards steps, huge jumps, word wraps), every decision
//! compared; and the window bounds of both modes checked on the grant log.
#![cfg(not(stockade_loom))]

use core::time::Duration;

use proptest::prelude::*;
use stockade::clock::{ManualClock, Timestamp};
use stockade::limiter::{Mode, RateLimitError, RateLimiter, RateLimiterConfig, Reservation};

/// The 64-bit layout is in use (its resolution is always 1 ns and its
/// clock range never wraps).
fn wide(l: &RateLimiter) -> bool {
    l.wrap_period().as_nanos() == 1 << 64
}

/// Ticks of the 32-bit word.
const WRAP32: u128 = 1 << 32;

/// The reference: plain GCRA on whole ticks, absolute `u128` time, no
/// wrapping, written from the documented rules only.
struct Model {
    wide: bool,
    tick: u128,
    interval: u128,
    burst: u128,
    limit: u128,
    queue: u128,
    queue_timeout: u128,
    tat: u128,
}

/// Intervals per period: `N` (bursty) or `N - B + 1` (strict).
fn per_period(config: &RateLimiterConfig, burst: u128) -> u128 {
    let n = config.requests_per_period as u128;
    match config.mode {
        Mode::Bursty => n,
        Mode::Strict => n - burst + 1,
    }
}

/// The documented 32-bit tick rule: `(tick, interval in ticks)`. The
/// interval `I = ceil(P / per_period)` ns is cut into at most
/// `cap = min(fit, max(1024, ceil(I / u32::MAX)))` ticks (`fit` keeping
/// the lead within 2^29 ticks); exactly, with the most ticks in
/// `(cap / 2, cap]`, when one divides `I`; else in ticks of
/// `ceil(I / cap)` ns, the interval rounded up.
fn expected_tick32(config: &RateLimiterConfig, burst: u128) -> (u128, u128) {
    let interval = config.period.as_nanos().div_ceil(per_period(config, burst));
    let timeout = config.queue_timeout.as_nanos().min(u64::MAX as u128);
    let queue = (config.max_queue_size as u128).min(timeout / interval + 1);
    let fit = (1u128 << 29) / (burst + queue);
    let needed = interval.div_ceil(u32::MAX as u128);
    let cap = fit.min(needed.max(1024));
    if interval <= cap {
        return (1, interval);
    }
    let low = (cap / 2 + 1).max(needed);
    if let Some(ticks) = (low..=cap).rev().find(|t| interval % t == 0) {
        return (interval / ticks, ticks);
    }
    let tick = interval.div_ceil(cap);
    (tick, interval.div_ceil(tick))
}

fn nanos(n: u128) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap())
}

const END_OF_TIME: RateLimitError = RateLimitError::RateLimited {
    retry_after: Duration::MAX,
};

impl Model {
    fn new(config: &RateLimiterConfig, limiter: &RateLimiter) -> Model {
        let wide = wide(limiter);
        let burst = config.burst.unwrap_or(match config.mode {
            Mode::Bursty => config.requests_per_period,
            Mode::Strict => 1,
        }) as u128;
        let (tick, interval) = if wide {
            (
                1,
                config.period.as_nanos().div_ceil(per_period(config, burst)),
            )
        } else {
            expected_tick32(config, burst)
        };
        assert_eq!(limiter.resolution().as_nanos(), tick, "{config:?}");
        let queue = config.max_queue_size as u128;
        let queue_timeout =
            (config.queue_timeout.as_nanos().min(u64::MAX as u128) / tick).min(queue * interval);
        let m = Model {
            wide,
            tick,
            interval,
            burst,
            limit: burst * interval,
            queue,
            queue_timeout,
            tat: 0,
        };
        assert_eq!(limiter.emission_interval().as_nanos(), interval * tick);
        assert_eq!(limiter.burst() as u128, burst);
        assert_eq!(limiter.max_queue_size() as u128, queue);
        assert_eq!(limiter.queue_timeout().as_nanos(), queue_timeout * tick);
        if !wide {
            assert!(interval >= 1 << 9 || tick == 1, "{config:?}: precision");
            assert!(m.max_lead() <= 1 << 29, "{config:?}: lead");
            assert_eq!(limiter.wrap_period().as_nanos(), WRAP32 * tick);
        }
        m
    }

    /// How far the TAT may legitimately be ahead of now, in ticks.
    fn max_lead(&self) -> u128 {
        self.limit + self.queue_timeout
    }

    /// `(tick, sub-tick nanoseconds, lead)` at `now`.
    fn at(&self, now: u64) -> (u128, u128, u128) {
        let now = now as u128;
        let t = now / self.tick;
        (t, now % self.tick, self.tat.saturating_sub(t))
    }

    fn fits(&self, tat: u128) -> bool {
        !self.wide || tat <= u64::MAX as u128
    }

    fn acquire(&mut self, n: u32, now: u64) -> Result<(), RateLimitError> {
        let nn = n as u128;
        if nn > self.burst {
            return Err(RateLimitError::ExceedsCapacity {
                requested: n,
                capacity: self.burst as u32,
            });
        }
        if n == 0 {
            return Ok(());
        }
        let (t, frac, lead) = self.at(now);
        let next = lead + nn * self.interval;
        if next > self.limit {
            return Err(RateLimitError::RateLimited {
                retry_after: nanos((next - self.limit) * self.tick - frac),
            });
        }
        if !self.fits(t + next) {
            return Err(END_OF_TIME);
        }
        self.tat = t + next;
        Ok(())
    }

    /// The reservation's `(permits, wait, ready_at)`, plus the model TATs
    /// `(booked, previous)` for cancelling.
    #[allow(clippy::type_complexity)]
    fn reserve(
        &mut self,
        n: u32,
        max_wait: Duration,
        now: u64,
    ) -> Result<((u32, Duration, Timestamp), (u128, u128)), RateLimitError> {
        let nn = n as u128;
        if nn > self.burst {
            return Err(RateLimitError::ExceedsCapacity {
                requested: n,
                capacity: self.burst as u32,
            });
        }
        let ts = Timestamp::from_nanos(now);
        if n == 0 {
            return Ok(((0, Duration::ZERO, ts), (0, 0)));
        }
        let (t, frac, lead) = self.at(now);
        let next = lead + nn * self.interval;
        let over = next.saturating_sub(self.limit);
        let mut wait = 0;
        if over > 0 {
            let room = self.queue * self.interval;
            if over > room {
                return Err(RateLimitError::QueueFull {
                    retry_after: nanos((over - room) * self.tick - frac),
                });
            }
            wait = over * self.tick - frac;
            let limit = max_wait.as_nanos().min(self.queue_timeout * self.tick);
            if wait > limit {
                return Err(RateLimitError::WaitTooLong {
                    wait: nanos(wait),
                    retry_after: nanos(wait - limit),
                });
            }
        }
        if !self.fits(t + next) {
            return Err(END_OF_TIME);
        }
        let prev = t + lead;
        self.tat = t + next;
        let ready = Timestamp::from_nanos(now).saturating_add(nanos(wait));
        Ok(((n, nanos(wait), ready), (self.tat, prev)))
    }

    fn cancel(&mut self, booking: &Booking, now: u64) -> bool {
        let reservation = booking.reservation.as_ref().unwrap();
        if reservation.wait().is_zero() {
            return false;
        }
        if Timestamp::from_nanos(now) >= reservation.ready_at() {
            return false;
        }
        if self.tat != booking.tat {
            return false;
        }
        self.tat = booking.prev;
        true
    }

    fn available(&self, now: u64) -> u32 {
        let (_, _, lead) = self.at(now);
        (self.limit.saturating_sub(lead) / self.interval) as u32
    }

    fn queue_depth(&self, now: u64) -> u32 {
        let (_, _, lead) = self.at(now);
        let depth = lead.saturating_sub(self.limit).div_ceil(self.interval);
        depth.min(u32::MAX as u128) as u32
    }
}

struct Booking {
    /// `None` once handed back.
    reservation: Option<Reservation>,
    tat: u128,
    prev: u128,
    /// Index in the grant log.
    logged: usize,
}

#[derive(Clone, Debug)]
enum Op {
    Acquire(u32),
    Reserve(u32, Option<u16>),
    Cancel(usize),
    Available,
    QueueDepth,
    /// Forward by `k/1000` of a period.
    Advance(u32),
    /// Forward by a few nanoseconds (sub-tick moves).
    Nudge(u16),
    /// Forward by `k/1000` of the word's wrap period plus `wraps` wraps
    /// (with the 64-bit layout: by up to about 2^47 ns).
    Jump(u8, u16),
    /// Backwards by `k/1000` of a period (bounded, see `run`).
    Back(u32),
    /// To exactly the last rejection's `retry_after` (or 1 ns before it):
    /// the boundaries where off-by-one errors live.
    AtRetry(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![5 => Just(1u32), 4 => 0u32..=6, 1 => Just(u32::MAX)].prop_map(Op::Acquire),
        4 => (prop_oneof![Just(1u32), 0u32..=6], proptest::option::of(any::<u16>()))
            .prop_map(|(n, w)| Op::Reserve(n, w)),
        1 => any::<usize>().prop_map(Op::Cancel),
        1 => Just(Op::Available),
        1 => Just(Op::QueueDepth),
        5 => (0u32..=1500).prop_map(Op::Advance),
        1 => any::<u16>().prop_map(Op::Nudge),
        1 => (0u8..=4, any::<u16>()).prop_map(|(w, k)| Op::Jump(w, k)),
        2 => (0u32..=3000).prop_map(Op::Back),
        3 => any::<bool>().prop_map(Op::AtRetry),
    ]
}

fn config(mode: Option<Mode>) -> impl Strategy<Value = RateLimiterConfig> {
    let mode = match mode {
        Some(m) => Just(m).boxed(),
        None => prop_oneof![Just(Mode::Bursty), Just(Mode::Strict)].boxed(),
    };
    (
        prop_oneof![1u32..=12, 1u32..=1000],
        prop_oneof![
            1_000_000u64..=5_000_000_000,
            Just(1_000_000_000u64),
            1_000u64..=100_000
        ],
        any::<u32>(),
        proptest::option::of(0u32..=24),
        0u32..=8,
        prop_oneof![0u64..=3000, Just(u64::MAX)],
        mode,
    )
        .prop_map(|(n, period, b, burst_given, queue, timeout_ms, mode)| {
            let burst = burst_given.map(|_| match mode {
                Mode::Bursty => 1 + b % (2 * n).min(40),
                Mode::Strict => 1 + b % n,
            });
            let period = period.max(n as u64);
            RateLimiterConfig {
                requests_per_period: n,
                period: Duration::from_nanos(period),
                burst,
                max_queue_size: queue,
                queue_timeout: if timeout_ms == u64::MAX {
                    Duration::MAX
                } else {
                    Duration::from_nanos(period / 1000 * timeout_ms)
                },
                mode,
            }
        })
}

/// `now + retry_after` of a rejection that has one (and is not the end of time).
fn retry_point(now: u64, error: &Option<RateLimitError>) -> Option<u64> {
    let after = error.as_ref()?.retry_after()?;
    u64::try_from(after.as_nanos())
        .ok()
        .and_then(|a| now.checked_add(a))
}

/// A permit use: `(time in ns, permits)`.
type Log = Vec<(u64, u32, bool)>;

/// Runs `ops`, comparing every decision with the model; the grant log
/// (use times: now for acquisitions, `ready_at` for reservations; the flag
/// marks cancelled bookings).
fn run(config: &RateLimiterConfig, ops: &[Op], start: u64) -> Result<(Log, u64), TestCaseError> {
    let limiter = RateLimiter::new(*config).map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let mut model = Model::new(config, &limiter);
    let period = config.period.as_nanos() as u64;
    let tick = model.tick as u64;
    let wrap = if model.wide {
        0
    } else {
        (WRAP32 * model.tick).min(1 << 63) as u64
    };
    let max_lead_ns = (model.max_lead() * model.tick) as u64;
    // In the 32-bit layout keep away from u64::MAX (covered by unit tests).
    let ceiling = if model.wide { u64::MAX } else { 1 << 62 };
    let mut now = start.min(ceiling);
    let mut high = now;
    let mut log: Log = Vec::new();
    let mut bookings: Vec<Booking> = Vec::new();
    // When the last rejection said to come back.
    let mut retry_at: Option<u64> = None;
    let clock = ManualClock::starting_at(Timestamp::from_nanos(now));

    for op in ops {
        match *op {
            Op::Advance(k) => now = now.saturating_add(period / 1000 * k as u64),
            Op::Nudge(k) => now = now.saturating_add(k as u64 % (2 * tick + 7)),
            Op::Jump(w, k) => {
                let j = if model.wide {
                    (1u64 << 47) / 65_536 * k as u64
                } else {
                    wrap.saturating_mul(w as u64)
                        .saturating_add(wrap / 65_536 * k as u64)
                };
                now = now.saturating_add(j);
            }
            Op::AtRetry(early) => {
                if let Some(at) = retry_at.take() {
                    now = at.saturating_sub(early as u64);
                }
            }
            Op::Back(k) => {
                let back = period / 1000 * k as u64;
                // The 32-bit layout is exact for steps up to the max lead
                // below the highest clock value seen; the 64-bit one for any.
                let floor = if model.wide {
                    0
                } else {
                    high.saturating_sub(max_lead_ns)
                };
                now = now.saturating_sub(back).max(floor);
            }
            _ => {}
        }
        now = now.min(ceiling);
        if !model.wide {
            // The 32-bit layout is exact for backwards steps up to the max
            // lead below the highest clock value seen (the 64-bit one for any).
            now = now.max(high.saturating_sub(max_lead_ns));
        }
        if !model.wide {
            // Stay out of the documented wrap corner: a gap since the TAT
            // that lies just before a multiple of the wrap (see module docs).
            let t = now as u128 / model.tick;
            if t > model.tat && (t - model.tat) % WRAP32 >= WRAP32 / 2 {
                now = now.checked_add((WRAP32 / 2 * model.tick) as u64).unwrap();
            }
        }
        high = high.max(now);
        clock.set(Timestamp::from_nanos(now));

        match *op {
            Op::Acquire(n) => {
                let expected = model.acquire(n, now);
                let got = if n == 1 {
                    limiter.try_acquire(&clock)
                } else {
                    limiter.try_acquire_n(n, &clock)
                };
                prop_assert_eq!(got, expected, "acquire {} at {}", n, now);
                retry_at = retry_point(now, &expected.err());
                if expected.is_ok() && n > 0 {
                    log.push((now, n, false));
                }
            }
            Op::Reserve(n, w) => {
                let max_wait = match w {
                    None => Duration::MAX,
                    Some(w) => Duration::from_nanos(period / 10_000 * w as u64),
                };
                let expected = model.reserve(n, max_wait, now);
                let got = limiter.reserve(n, max_wait, &clock);
                match (got, expected) {
                    (Ok(r), Ok(((permits, wait, ready), (tat, prev)))) => {
                        prop_assert_eq!(
                            (r.permits(), r.wait(), r.ready_at()),
                            (permits, wait, ready)
                        );
                        prop_assert_eq!(r.is_immediate(), wait.is_zero());
                        let logged = log.len();
                        if n > 0 {
                            log.push((ready.as_nanos(), n, false));
                        }
                        bookings.push(Booking {
                            reservation: Some(r),
                            tat,
                            prev,
                            logged,
                        });
                    }
                    (Err(g), Err(e)) => {
                        prop_assert_eq!(g, e, "reserve {} at {}", n, now);
                        retry_at = retry_point(now, &Some(e));
                    }
                    (g, e) => {
                        prop_assert!(false, "reserve {} at {}: {:?} vs model {:?}", n, now, g, e)
                    }
                }
            }
            Op::Cancel(i) => {
                // Each reservation can be offered back once: cancel consumes it.
                bookings.retain(|b| b.reservation.is_some());
                if !bookings.is_empty() {
                    let i = i % bookings.len();
                    let expected = model.cancel(&bookings[i], now);
                    let r = bookings[i].reservation.take().unwrap();
                    let permits = r.permits();
                    let token = r.into_token();
                    match limiter.cancel(token, &clock) {
                        Ok(returned) => {
                            prop_assert!(expected, "cancel succeeded, model refused");
                            prop_assert_eq!(returned, permits);
                            log[bookings[i].logged].2 = true;
                        }
                        Err(_) => {
                            prop_assert!(!expected, "cancel refused, model succeeded");
                            // Refused: still booked, and may be offered again.
                            bookings[i].reservation = Some(Reservation::from_token(token));
                        }
                    }
                }
            }
            Op::Available => prop_assert_eq!(limiter.available(&clock), model.available(now)),
            Op::QueueDepth => prop_assert_eq!(limiter.queue_depth(&clock), model.queue_depth(now)),
            _ => {}
        }
        prop_assert!(limiter.available(&clock) as u128 <= model.burst);
    }
    log.retain(|&(_, _, cancelled)| !cancelled);
    log.sort_unstable();
    Ok((log, tick))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_reference_gcra(
        config in config(None),
        ops in prop::collection::vec(op(), 1..160),
        // Near u64::MAX the 64-bit layout meets the end of the clock range.
        start in prop_oneof![Just(0u64), 0u64..1 << 40, 0u64..1 << 62, u64::MAX - (1 << 34)..=u64::MAX],
    ) {
        run(&config, &ops, start)?;
    }

    /// Strict mode: never more than N permits in any window
    /// [a, a + P - resolution + 1 ns) (the full period with the 64-bit
    /// layout, whose resolution is 1 ns).
    #[test]
    fn strict_mode_never_exceeds_quota(
        config in config(Some(Mode::Strict)),
        ops in prop::collection::vec(op(), 1..160),
        start in 0u64..1 << 40,
    ) {
        let (log, tick) = run(&config, &ops, start)?;
        let p = config.period.as_nanos() as u64 - (tick - 1);
        for (i, &(a, _, _)) in log.iter().enumerate() {
            let used: u64 = log[i..]
                .iter()
                .take_while(|&&(g, _, _)| g < a.saturating_add(p))
                .map(|&(_, n, _)| n as u64)
                .sum();
            prop_assert!(
                used <= config.requests_per_period as u64,
                "{} permits in [{}, {} + P)", used, a, a
            );
        }
    }

    /// Bursty mode: at most burst + floor(W / T) permits in any closed
    /// window whose ends lie W whole ticks apart.
    #[test]
    fn bursty_mode_respects_gcra_bound(
        config in config(Some(Mode::Bursty)),
        ops in prop::collection::vec(op(), 1..160),
        start in 0u64..1 << 40,
    ) {
        let limiter = RateLimiter::new(config).unwrap();
        let burst = limiter.burst() as u64;
        let (log, tick) = run(&config, &ops, start)?;
        let interval = limiter.emission_interval().as_nanos() as u64 / tick;
        for i in 0..log.len() {
            let mut used = 0u64;
            for &(b, n, _) in &log[i..] {
                used += n as u64;
                let span = b / tick - log[i].0 / tick;
                prop_assert!(used <= burst + span / interval, "{} permits over {} ticks", used, span);
            }
        }
    }
}

/// The bounds are tight, so the window properties can fail: a hammering run
/// reaches them.
#[test]
fn window_bounds_are_reached() {
    let config = RateLimiterConfig::DEFAULT.with_requests_per_period(5);
    let ops: Vec<Op> = (0..400)
        .flat_map(|_| [Op::Acquire(1), Op::Acquire(1), Op::Advance(5)])
        .collect();
    let (log, _) = run(&config, &ops, 0).unwrap();
    // Bursty: 5 at once + 4 more within the first second = 9 > 5.
    let in_first_second = log.iter().filter(|&&(t, _, _)| t < 1_000_000_000).count();
    assert_eq!(in_first_second, 9);
    let (log, _) = run(&config.with_mode(Mode::Strict), &ops, 0).unwrap();
    let in_first_second = log.iter().filter(|&&(t, _, _)| t < 1_000_000_000).count();
    assert_eq!(in_first_second, 5);
}
