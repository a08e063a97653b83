//! Configuration to numbers: validation and the tick plan.
// `Word` is `u64` or `u32` by layout: casts between it and `u64` are needed
// in one layout and no-ops in the other.
#![allow(clippy::unnecessary_cast)]

use core::time::Duration;

use super::{Mode, RateLimiterConfig};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue, explain};
use crate::sync::{WIDE, Word};
use crate::time::{div_ceil_u64, div_rem_u64, div_u64};

/// The longest the TAT may lie ahead of now, in ticks.
#[cfg(all(target_has_atomic = "64", not(stockade_force_32bit)))]
pub(super) const MAX_LEAD: u128 = 1 << 62;
#[cfg(not(all(target_has_atomic = "64", not(stockade_force_32bit))))]
pub(super) const MAX_LEAD: u128 = 1 << 29;

/// The longest period the 64-bit layout accepts (73 years), so that the
/// default burst's lead `N · ceil(P / N)` stays below [`MAX_LEAD`].
const MAX_PERIOD_64: u64 = 1 << 61;

/// The largest `burst` / `max_queue_size` of the 32-bit layout.
pub(super) const MAX_COUNT_32: u32 = 1 << 19;

/// The most ticks per emission interval the 32-bit layout uses (it uses at
/// least half as many when an exact cut exists, and at least 2^9 always):
/// fine enough that the strict window's slack is about 1/1000 of an
/// interval, coarse enough for a long wrap period (119 hours with the
/// default options).
const MAX_TICKS_PER_INTERVAL: u64 = 1 << 10;

/// The validated, derived numbers a limiter runs on.
pub(super) struct Plan {
    /// Nanoseconds per tick (1 with the 64-bit layout).
    pub(super) tick_nanos: u32,
    pub(super) interval: Word,
    pub(super) limit: Word,
    pub(super) queue_timeout: Word,
    pub(super) burst: u32,
    pub(super) max_queue_size: u32,
}

/// The options checked one by one, before any tick arithmetic.
struct Checked {
    requests: u32,
    /// The period in nanoseconds (at least `requests`).
    period: u64,
    burst: u32,
    /// The option a too-large burst is reported against: `burst`, or
    /// `requests_per_period` when the burst defaults to it.
    burst_option: ConfigOption,
    strict: bool,
    queue: u32,
    /// `queue_timeout` in nanoseconds, saturating.
    timeout: u64,
    /// `queue_timeout` as given, for error messages.
    queue_timeout: Duration,
}

/// Step 1: every option on its own (zero, too long, too many).
const fn check_options<const EXPLAIN: bool>(
    config: &RateLimiterConfig,
) -> Result<Checked, ConfigError> {
    let requests = config.requests_per_period;
    if requests == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(ConfigOption::RequestsPerPeriod, ConfigValue::Count(0),)
        ));
    }
    let period_nanos = config.period.as_nanos();
    if period_nanos == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(ConfigOption::Period, ConfigValue::Duration(config.period),)
        ));
    }
    let max_period = if WIDE { MAX_PERIOD_64 } else { u64::MAX };
    if period_nanos > max_period as u128 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::duration_above(
                ConfigOption::Period,
                config.period,
                Duration::from_nanos(max_period),
            )
        ));
    }
    let period = period_nanos as u64;
    let strict = matches!(config.mode, Mode::Strict);
    let (burst, burst_option) = match config.burst {
        Some(0) => {
            return Err(explain!(
                EXPLAIN,
                ConfigError::zero(ConfigOption::Burst, ConfigValue::Count(0),)
            ));
        }
        Some(b) => (b, ConfigOption::Burst),
        None if strict => (1, ConfigOption::Burst),
        None => (requests, ConfigOption::RequestsPerPeriod),
    };
    if strict && burst > requests {
        return Err(explain!(
            EXPLAIN,
            ConfigError::new(
                ConfigOption::Burst,
                ConfigValue::Count(burst as u64),
                ConfigProblem::Exceeds {
                    other: ConfigOption::RequestsPerPeriod,
                    limit: ConfigValue::Count(requests as u64),
                },
            )
        ));
    }
    if period < requests as u64 {
        // The emission interval would round to zero nanoseconds.
        return Err(explain!(
            EXPLAIN,
            ConfigError::count_above(ConfigOption::RequestsPerPeriod, requests as u64, period,)
        ));
    }
    let queue = config.max_queue_size;
    if !WIDE {
        if burst > MAX_COUNT_32 {
            return Err(explain!(
                EXPLAIN,
                ConfigError::count_above(burst_option, burst as u64, MAX_COUNT_32 as u64,)
            ));
        }
        if queue > MAX_COUNT_32 {
            return Err(explain!(
                EXPLAIN,
                ConfigError::count_above(
                    ConfigOption::MaxQueueSize,
                    queue as u64,
                    MAX_COUNT_32 as u64,
                )
            ));
        }
    }
    Ok(Checked {
        requests,
        period,
        burst,
        burst_option,
        strict,
        queue,
        timeout: crate::clock::duration_to_nanos_saturating(config.queue_timeout),
        queue_timeout: config.queue_timeout,
    })
}

/// Step 2: the emission interval in nanoseconds, rounded up (never faster
/// than configured): `P / N` (bursty) or `P / (N - B + 1)` (strict).
const fn interval_nanos(c: &Checked) -> u64 {
    // `period >= requests >= intervals`, so this is at least 1.
    div_ceil_u64(c.period, interval_per_period(c) as u64)
}

/// Step 3: the tick (nanoseconds) and the interval in ticks.
///
/// 64-bit layout: one tick is one nanosecond. 32-bit layout: the interval
/// is cut into at most [`MAX_TICKS_PER_INTERVAL`] ticks (fewer if the lead
/// would not fit [`MAX_LEAD`]), **exactly** when some tick length divides
/// it — so `N` per `P` stays exact and a caller polling every `P / N` is
/// admitted every time — else rounded up by less than one tick. Ticks need
/// not be powers of two.
const fn choose_tick<const EXPLAIN: bool>(
    c: &Checked,
    interval: u64,
) -> Result<(u32, u64), ConfigError> {
    if WIDE {
        return Ok((1, interval));
    }
    // Permits' worth of queue the lead may hold: at most `max_queue_size`,
    // and at most `queue_timeout` (plus the rounding) in intervals.
    let by_time = div_u64(c.timeout, interval).saturating_add(1);
    let queue = if by_time < c.queue as u64 {
        by_time
    } else {
        c.queue as u64
    };
    // `burst + queue <= 2^20`, so at least 2^9 ticks per interval fit.
    let fit = div_u64(MAX_LEAD as u64, c.burst as u64 + queue);
    // A tick is at most `u32::MAX` ns: a long interval needs more ticks.
    let needed = div_ceil_u64(interval, u32::MAX as u64);
    if needed > fit {
        return Err(explain!(EXPLAIN, {
            let max = (u32::MAX as u128) * (fit as u128) * (interval_per_period(c) as u128);
            ConfigError::duration_above(
                ConfigOption::Period,
                crate::time::duration_from_nanos(c.period),
                nanos_to_duration(max),
            )
        }));
    }
    let wanted = if needed > MAX_TICKS_PER_INTERVAL {
        needed
    } else {
        MAX_TICKS_PER_INTERVAL
    };
    let cap = if fit < wanted { fit } else { wanted };
    if interval <= cap {
        return Ok((1, interval));
    }
    // An exact cut, finest first, within a factor of two of the cap.
    let mut ticks = cap;
    while ticks > cap / 2 && ticks >= needed {
        let (tick, rest) = div_rem_u64(interval, ticks);
        if rest == 0 {
            return Ok((tick as u32, ticks));
        }
        ticks -= 1;
    }
    // No exact cut: the smallest tick that keeps `cap` ticks per interval
    // (at most `u32::MAX` ns as `cap >= needed`).
    let tick = div_ceil_u64(interval, cap);
    Ok((tick as u32, div_ceil_u64(interval, tick)))
}

/// Intervals per period: `N` or `N - B + 1`.
const fn interval_per_period(c: &Checked) -> u32 {
    if c.strict {
        c.requests - c.burst + 1
    } else {
        c.requests
    }
}

/// Step 4: the lead `B·T + min(queue_timeout, Q·T)` in ticks, which must
/// fit [`MAX_LEAD`]; the error names the option that overflows it.
const fn check_lead<const EXPLAIN: bool>(
    c: &Checked,
    tick: u32,
    interval: u64,
) -> Result<Plan, ConfigError> {
    let interval = interval as u128;
    let limit = c.burst as u128 * interval;
    let by_size = c.queue as u128 * interval;
    let by_time = div_u64(c.timeout, tick as u64) as u128;
    let wait = if by_time < by_size { by_time } else { by_size };
    if limit > MAX_LEAD {
        return Err(explain!(
            EXPLAIN,
            ConfigError::count_above(
                c.burst_option,
                c.burst as u64,
                div_u64(MAX_LEAD as u64, interval as u64),
            )
        ));
    }
    if limit + wait > MAX_LEAD {
        let room = MAX_LEAD - limit;
        return Err(explain!(
            EXPLAIN,
            if by_time <= by_size {
                ConfigError::duration_above(
                    ConfigOption::QueueTimeout,
                    c.queue_timeout,
                    nanos_to_duration(room * tick as u128),
                )
            } else {
                ConfigError::count_above(
                    ConfigOption::MaxQueueSize,
                    c.queue as u64,
                    div_u64(room as u64, interval as u64),
                )
            }
        ));
    }
    Ok(Plan {
        tick_nanos: tick,
        interval: interval as Word,
        limit: limit as Word,
        queue_timeout: wait as Word,
        burst: c.burst,
        max_queue_size: c.queue,
    })
}

/// A limiter's numbers worked out in advance, in ticks of `tick_nanos`
/// nanoseconds, for [`RateLimiter::from_tick_plan`](super::RateLimiter::from_tick_plan):
/// what a C firmware's `STOCKADE_LIMITER_PLAN` macro computes at compile
/// time, so the firmware links no planning code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TickPlan {
    /// Nanoseconds per tick, at least 1.
    pub tick_nanos: u32,
    /// The emission interval `T` (the time one permit costs), in ticks, at
    /// least 1.
    pub interval_ticks: u32,
    /// `B`, the burst capacity, at least 1.
    pub burst: u32,
    /// `Q`, the queue bound in permits.
    pub max_queue_size: u32,
    /// The effective queue timeout in ticks: at most `max_queue_size`
    /// intervals.
    pub queue_timeout_ticks: u32,
}

/// The plan of a [`TickPlan`], or `None` if the machine cannot run on it:
/// a zero tick, interval or burst; a count above the 32-bit layout's
/// 2^19; a queue timeout above `max_queue_size` intervals; or a lead
/// `B·T + queue_timeout` beyond the layout's horizon (2^29 ticks, or
/// 2^62 ns with the 64-bit layout, where a tick is 1 ns and the plan's
/// ticks are multiplied out).
pub(super) const fn check_tick_plan(p: &TickPlan) -> Option<Plan> {
    if p.tick_nanos == 0 || p.interval_ticks == 0 || p.burst == 0 {
        return None;
    }
    if !WIDE && (p.burst > MAX_COUNT_32 || p.max_queue_size > MAX_COUNT_32) {
        return None;
    }
    // In the layout's ticks; every product below fits `u128` (64-bit
    // layout: u32 * u32 * u32) and `u64` (32-bit layout: u32 * u32).
    let (tick, interval, wait) = if WIDE {
        (
            1,
            p.interval_ticks as u128 * p.tick_nanos as u128,
            p.queue_timeout_ticks as u128 * p.tick_nanos as u128,
        )
    } else {
        (
            p.tick_nanos,
            p.interval_ticks as u128,
            p.queue_timeout_ticks as u128,
        )
    };
    if WIDE {
        let limit = p.burst as u128 * interval;
        if wait > p.max_queue_size as u128 * interval || limit + wait > MAX_LEAD {
            return None;
        }
        Some(Plan {
            tick_nanos: tick,
            interval: interval as Word,
            limit: limit as Word,
            queue_timeout: wait as Word,
            burst: p.burst,
            max_queue_size: p.max_queue_size,
        })
    } else {
        // 32-bit arithmetic products in `u64`: no 128-bit code on the
        // targets that use this layout.
        let (interval, wait) = (interval as u64, wait as u64);
        let limit = p.burst as u64 * interval;
        if wait > p.max_queue_size as u64 * interval || limit + wait > MAX_LEAD as u64 {
            return None;
        }
        Some(Plan {
            tick_nanos: tick,
            interval: interval as Word,
            limit: limit as Word,
            queue_timeout: wait as Word,
            burst: p.burst,
            max_queue_size: p.max_queue_size,
        })
    }
}

/// Validates `config` and derives the numbers the limiter runs on.
///
/// `EXPLAIN = false`: the same checks and the same plan, but a refusal
/// carries [`ConfigError::UNEXPLAINED`] instead of a description, so none
/// of the code that computes one (limits in other units, 128-bit
/// arithmetic) is linked (the lean constructors, for firmware).
pub(super) const fn plan<const EXPLAIN: bool>(
    config: &RateLimiterConfig,
) -> Result<Plan, ConfigError> {
    let checked = match check_options::<EXPLAIN>(config) {
        Ok(c) => c,
        Err(e) => return Err(e),
    };
    let interval = interval_nanos(&checked);
    match choose_tick::<EXPLAIN>(&checked, interval) {
        Ok((tick, ticks)) => check_lead::<EXPLAIN>(&checked, tick, ticks),
        Err(e) => Err(e),
    }
}

/// A `u128` count of nanoseconds as a `Duration`, saturating.
/// No 128- or 64-bit division: `10^9 = 2^9 · 1953125`, so the seconds
/// are `(nanos >> 9) / 1953125` and the rest `512 · r + (nanos & 511)`.
pub(super) const fn nanos_to_duration(nanos: u128) -> Duration {
    // At least `(u64::MAX + 1) · 10^9` ns: more seconds than a Duration has.
    if nanos >> 9 > u64::MAX as u128 {
        return Duration::MAX;
    }
    let (secs, r) = div_rem_u64((nanos >> 9) as u64, 1_953_125);
    Duration::new(secs, (r as u32) << 9 | (nanos & 511) as u32)
}

#[cfg(all(test, not(stockade_loom)))]
#[allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]
mod tests {
    #[test]
    fn nanos_become_durations_without_division() {
        let cases: [u128; 9] = [
            0,
            1,
            999_999_999,
            1_000_000_000,
            1_000_000_511,
            u64::MAX as u128,
            (u64::MAX as u128) * 1_000_000_000 + 999_999_999,
            (u64::MAX as u128 + 1) * 1_000_000_000,
            u128::MAX,
        ];
        for nanos in cases {
            let secs = nanos / 1_000_000_000;
            let want = if secs > u64::MAX as u128 {
                Duration::MAX
            } else {
                Duration::new(secs as u64, (nanos % 1_000_000_000) as u32)
            };
            assert_eq!(nanos_to_duration(nanos), want, "{nanos}");
        }
    }

    use super::super::RateLimiter;
    use super::super::tests::{config_error, limiter};
    use super::*;

    #[test]
    fn validation_names_the_option() {
        let d = RateLimiterConfig::DEFAULT;
        let check = |config: RateLimiterConfig, option: &str, problem: ConfigProblem| {
            let err = config_error(config);
            assert_eq!(
                (err.option.as_str(), err.problem),
                (option, problem),
                "{config:?}"
            );
        };
        let count = |n: u64| ConfigProblem::TooLarge {
            max: ConfigValue::Count(n),
        };
        let nanos = |n: u64| ConfigProblem::TooLarge {
            max: ConfigValue::Duration(Duration::from_nanos(n)),
        };
        check(
            d.with_requests_per_period(0),
            "requests_per_period",
            ConfigProblem::Zero,
        );
        check(d.with_period(Duration::ZERO), "period", ConfigProblem::Zero);
        check(d.with_burst(0), "burst", ConfigProblem::Zero);
        check(
            d.with_burst(0).with_mode(Mode::Strict),
            "burst",
            ConfigProblem::Zero,
        );
        // More than one request per nanosecond: the interval rounds to zero.
        check(
            d.with_period(Duration::from_nanos(9)),
            "requests_per_period",
            count(9),
        );
        assert!(RateLimiter::new(d.with_period(Duration::from_nanos(10))).is_ok());
        // Durations that overflow.
        let max_period = if WIDE { 1u64 << 61 } else { u64::MAX };
        check(d.with_period(Duration::MAX), "period", nanos(max_period));
        if WIDE {
            assert!(RateLimiter::new(d.with_period(Duration::from_nanos(1 << 61))).is_ok());
            check(
                d.with_period(Duration::from_nanos((1 << 61) + 1)),
                "period",
                nanos(1 << 61),
            );
            // A lead beyond 2^62 ns (146 years).
            let yearly = d
                .with_requests_per_period(1)
                .with_period(Duration::from_secs(365 * 86_400));
            check(yearly.with_burst(200), "burst", count(146));
            check(
                yearly
                    .with_burst(100)
                    .with_max_queue_size(100)
                    .with_queue_timeout(Duration::MAX),
                "max_queue_size",
                count(46),
            );
            let e_timeout = config_error(
                yearly
                    .with_burst(100)
                    .with_max_queue_size(100)
                    .with_queue_timeout(Duration::from_secs(100 * 365 * 86_400)),
            );
            assert_eq!(e_timeout.option, ConfigOption::QueueTimeout);
            assert!(matches!(
                e_timeout.problem,
                ConfigProblem::TooLarge {
                    max: ConfigValue::Duration(_)
                }
            ));
            // u32::MAX counts are fine with the 64-bit layout.
            assert!(RateLimiter::new(d.with_burst(u32::MAX).with_max_queue_size(u32::MAX)).is_ok());
        } else {
            check(d.with_burst((1 << 19) + 1), "burst", count(1 << 19));
            check(
                d.with_requests_per_period((1 << 19) + 1),
                "requests_per_period",
                count(1 << 19),
            );
            check(
                d.with_max_queue_size((1 << 19) + 1),
                "max_queue_size",
                count(1 << 19),
            );
            // A strict limiter's default burst is 1, so a high rate is fine.
            assert!(
                RateLimiter::new(d.with_requests_per_period(1 << 20).with_mode(Mode::Strict))
                    .is_ok()
            );
        }
        // Display names the option and the value, in the user's units.
        let msg = std::format!("{}", config_error(d.with_burst(0)));
        assert_eq!(msg, "invalid burst = 0: must be greater than zero");
        if WIDE {
            let msg = std::format!("{}", config_error(d.with_period(Duration::MAX)));
            assert_eq!(
                msg,
                "invalid period = 5124095576030431h 16s: must be at most 640511h 56min 49.214s"
            );
        }
    }

    #[test]
    fn a_tick_plan_runs_as_planned() {
        for c in [
            RateLimiterConfig::DEFAULT,
            RateLimiterConfig::DEFAULT.with_mode(Mode::Strict),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1_000)
                .with_burst(1_000),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(3)
                .with_max_queue_size(0),
            RateLimiterConfig::DEFAULT
                .with_burst(1 << 19)
                .with_max_queue_size(1 << 19),
        ] {
            let p = plan::<true>(&c).unwrap();
            // A plan `plan` made, as ticks (the 64-bit layout's are
            // nanoseconds: 1 ns ticks).
            let (Ok(interval_ticks), Ok(queue_timeout_ticks)) = (
                u32::try_from(p.interval as u64),
                u32::try_from(p.queue_timeout as u64),
            ) else {
                continue;
            };
            let tp = TickPlan {
                tick_nanos: p.tick_nanos,
                interval_ticks,
                burst: p.burst,
                max_queue_size: p.max_queue_size,
                queue_timeout_ticks,
            };
            let planned = RateLimiter::from_tick_plan(&tp).expect("a plan `plan` made");
            assert_eq!(
                std::format!("{planned:?}"),
                std::format!("{:?}", limiter(c)),
                "{c:?}"
            );
        }
        let good = TickPlan {
            tick_nanos: 100_000,
            interval_ticks: 1_000,
            burst: 10,
            max_queue_size: 100,
            queue_timeout_ticks: 100_000,
        };
        let l = RateLimiter::from_tick_plan(&good).unwrap();
        assert_eq!(l.emission_interval(), Duration::from_millis(100));
        assert_eq!(l.queue_timeout(), Duration::from_secs(10));
        assert_eq!(l.burst(), 10);
        for bad in [
            TickPlan {
                tick_nanos: 0,
                ..good
            },
            TickPlan {
                interval_ticks: 0,
                ..good
            },
            TickPlan { burst: 0, ..good },
            // More than max_queue_size intervals of queue timeout.
            TickPlan {
                queue_timeout_ticks: 100_001,
                ..good
            },
            // A lead beyond the horizon (2^29 ticks; 2^62 ns).
            TickPlan {
                tick_nanos: u32::MAX,
                interval_ticks: u32::MAX,
                burst: 1 << 19,
                ..good
            },
        ] {
            assert!(RateLimiter::from_tick_plan(&bad).is_none(), "{bad:?}");
        }
        if !WIDE {
            for bad in [
                TickPlan {
                    burst: (1 << 19) + 1,
                    interval_ticks: 1,
                    ..good
                },
                TickPlan {
                    max_queue_size: (1 << 19) + 1,
                    ..good
                },
                TickPlan {
                    interval_ticks: 1 << 25,
                    burst: 16,
                    queue_timeout_ticks: 1,
                    ..good
                },
            ] {
                assert!(RateLimiter::from_tick_plan(&bad).is_none(), "{bad:?}");
            }
            // 2^29 ticks of lead exactly is fine.
            let edge = TickPlan {
                interval_ticks: 1 << 25,
                burst: 16,
                queue_timeout_ticks: 0,
                ..good
            };
            assert!(RateLimiter::from_tick_plan(&edge).is_some());
        }
    }

    #[test]
    fn thirty_two_bit_precision_and_horizon() {
        for c in [
            RateLimiterConfig::DEFAULT,
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1_000_000)
                .with_burst(1_000),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1)
                .with_period(Duration::from_secs(365 * 86_400)),
            RateLimiterConfig::DEFAULT
                .with_burst(1 << 19)
                .with_max_queue_size(1 << 19),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(3)
                .with_period(Duration::from_nanos(10))
                .with_queue_timeout(Duration::MAX),
            // 1 s / 3 has no exact cut: rounded up by less than a tick.
            RateLimiterConfig::DEFAULT.with_requests_per_period(3),
            RateLimiterConfig::DEFAULT.with_mode(Mode::Strict),
        ] {
            let l = limiter(c);
            let tick = l.resolution().as_nanos();
            let ticks_per_interval = l.emission_interval().as_nanos() / tick;
            assert_eq!(l.emission_interval().as_nanos() % tick, 0, "{c:?}");
            let lead = (l.emission_interval() * l.burst() + l.queue_timeout()).as_nanos() / tick;
            // Never faster than configured, slower by less than a tick.
            let per_period = match (c.mode, c.burst) {
                (Mode::Strict, Some(b)) => c.requests_per_period - b + 1,
                _ => c.requests_per_period,
            };
            let exact = c.period.as_nanos().div_ceil(u128::from(per_period));
            let interval = l.emission_interval().as_nanos();
            assert!(interval >= exact && interval < exact + tick, "{c:?}");
            if WIDE {
                assert_eq!(tick, 1);
                assert!(lead <= 1 << 62);
            } else {
                assert!(ticks_per_interval >= 1 << 9 || tick == 1, "{c:?}");
                assert!(lead <= 1 << 29, "{c:?}");
                if c == RateLimiterConfig::DEFAULT {
                    // 100 µs ticks cut 100 ms exactly: the word wraps
                    // after 119 hours.
                    assert_eq!(tick, 100_000);
                    assert_eq!(l.emission_interval(), Duration::from_millis(100));
                    assert_eq!(l.wrap_period().as_secs(), 429_496);
                }
            }
        }
    }
}
