//! Configuration to numbers: validation and the tick plan.
// `Word` is `u64` or `u32` by layout: casts between it and `u64` are needed
// in one layout and no-ops in the other.
#![allow(clippy::unnecessary_cast)]

use core::time::Duration;

use super::{Mode, RateLimiterConfig};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
use crate::sync::{WIDE, Word};
use crate::time::TickUnit;

/// The longest the TAT may lie ahead of now, in ticks.
#[cfg(all(target_has_atomic = "64", not(stockade_force_32bit)))]
const MAX_LEAD: u128 = 1 << 62;
#[cfg(not(all(target_has_atomic = "64", not(stockade_force_32bit))))]
const MAX_LEAD: u128 = 1 << 29;

/// The longest period the 64-bit layout accepts (73 years), so that the
/// default burst's lead `N · ceil(P / N)` stays below [`MAX_LEAD`].
const MAX_PERIOD_64: u64 = 1 << 61;

/// The largest `burst` / `max_queue_size` of the 32-bit layout.
const MAX_COUNT_32: u32 = 1 << 19;

/// Ticks per emission interval the 32-bit layout aims for.
const PRECISE_TICKS: u128 = 1 << 10;

/// The validated, derived numbers a limiter runs on.
pub(super) struct Plan {
    pub(super) unit: TickUnit,
    pub(super) interval: Word,
    pub(super) limit: Word,
    pub(super) queue_timeout: Word,
    pub(super) burst: u32,
    pub(super) max_queue_size: u32,
}

const fn err(
    option: ConfigOption,
    value: ConfigValue,
    problem: ConfigProblem,
) -> Result<Plan, ConfigError> {
    Err(ConfigError::new(option, value, problem))
}

/// A count above `max`.
const fn count_above(option: ConfigOption, value: u32, max: u64) -> Result<Plan, ConfigError> {
    Err(ConfigError::count_above(option, value as u64, max))
}

/// The emission interval in ticks of `2^shift` ns, rounded up.
const fn interval_ticks(period: u64, requests: u32, burst: u32, strict: bool, shift: u32) -> u128 {
    let p = period as u128;
    if strict {
        // The closed tick span of a half-open ns window of length `p` is at
        // most `span`; `k` intervals must cover more than that.
        let tick = 1u128 << shift;
        let span = (p + tick - 2) / tick;
        let k = requests as u128 - burst as u128 + 1;
        (span + 1).div_ceil(k)
    } else {
        let d = (requests as u128) << shift;
        p.div_ceil(d)
    }
}

/// `(limit, queue wait)` in ticks at `shift`: `B·T` and `min(timeout, Q·T)`.
const fn lead_parts(
    interval: u128,
    burst: u32,
    queue: u32,
    timeout: u64,
    shift: u32,
) -> (u128, u128) {
    let limit = burst as u128 * interval;
    let by_size = queue as u128 * interval;
    let by_time = (timeout >> shift) as u128;
    (limit, if by_time < by_size { by_time } else { by_size })
}

pub(super) const fn plan(config: &RateLimiterConfig) -> Result<Plan, ConfigError> {
    let requests = config.requests_per_period;
    if requests == 0 {
        return err(
            ConfigOption::RequestsPerPeriod,
            ConfigValue::Count(0),
            ConfigProblem::Zero,
        );
    }
    let period_nanos = config.period.as_nanos();
    if period_nanos == 0 {
        return err(
            ConfigOption::Period,
            ConfigValue::Duration(config.period),
            ConfigProblem::Zero,
        );
    }
    let max_period = if WIDE { MAX_PERIOD_64 } else { u64::MAX };
    if period_nanos > max_period as u128 {
        return Err(ConfigError::duration_above(
            ConfigOption::Period,
            config.period,
            Duration::from_nanos(max_period),
        ));
    }
    let period = period_nanos as u64;
    let strict = matches!(config.mode, Mode::Strict);
    let (burst, burst_option) = match config.burst {
        Some(0) => {
            return err(
                ConfigOption::Burst,
                ConfigValue::Count(0),
                ConfigProblem::Zero,
            );
        }
        Some(b) => (b, ConfigOption::Burst),
        None if strict => (1, ConfigOption::Burst),
        None => (requests, ConfigOption::RequestsPerPeriod),
    };
    if strict && burst > requests {
        return Err(ConfigError::new(
            ConfigOption::Burst,
            ConfigValue::Count(burst as u64),
            ConfigProblem::Exceeds {
                other: ConfigOption::RequestsPerPeriod,
                limit: ConfigValue::Count(requests as u64),
            },
        ));
    }
    if period < requests as u64 {
        // The emission interval would round to zero nanoseconds.
        return count_above(ConfigOption::RequestsPerPeriod, requests, period);
    }
    let queue = config.max_queue_size;
    if !WIDE {
        if burst > MAX_COUNT_32 {
            return count_above(burst_option, burst, MAX_COUNT_32 as u64);
        }
        if queue > MAX_COUNT_32 {
            return count_above(ConfigOption::MaxQueueSize, queue, MAX_COUNT_32 as u64);
        }
    }
    let timeout = crate::clock::duration_to_nanos_saturating(config.queue_timeout);

    // 64-bit: one tick = 1 ns. 32-bit: the coarsest tick that keeps
    // PRECISE_TICKS per interval, coarser still while the lead does not fit.
    let mut shift = 0;
    if !WIDE {
        while shift < 62
            && interval_ticks(period, requests, burst, strict, shift + 1) >= PRECISE_TICKS
        {
            shift += 1;
        }
        while shift < 62 {
            let interval = interval_ticks(period, requests, burst, strict, shift);
            let (limit, wait) = lead_parts(interval, burst, queue, timeout, shift);
            if limit + wait <= MAX_LEAD {
                break;
            }
            shift += 1;
        }
    }
    let interval = interval_ticks(period, requests, burst, strict, shift);
    let (limit, wait) = lead_parts(interval, burst, queue, timeout, shift);
    if limit > MAX_LEAD {
        return count_above(burst_option, burst, (MAX_LEAD / interval) as u64);
    }
    if limit + wait > MAX_LEAD {
        let room = MAX_LEAD - limit;
        let by_time = (timeout >> shift) as u128;
        return if by_time <= queue as u128 * interval {
            Err(ConfigError::duration_above(
                ConfigOption::QueueTimeout,
                config.queue_timeout,
                Duration::from_nanos((room << shift) as u64),
            ))
        } else {
            count_above(ConfigOption::MaxQueueSize, queue, (room / interval) as u64)
        };
    }
    Ok(Plan {
        unit: TickUnit::from_shift(shift),
        interval: interval as Word,
        limit: limit as Word,
        queue_timeout: wait as Word,
        burst,
        max_queue_size: queue,
    })
}

/// A `u128` count of nanoseconds as a `Duration`, saturating.
pub(super) const fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = nanos / 1_000_000_000;
    if secs > u64::MAX as u128 {
        Duration::MAX
    } else {
        Duration::new(secs as u64, (nanos % 1_000_000_000) as u32)
    }
}

#[cfg(all(test, not(stockade_loom)))]
#[allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]
mod tests {
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
        ] {
            let l = limiter(c);
            let tick = l.resolution().as_nanos();
            assert!(tick.is_power_of_two());
            let ticks_per_interval = l.emission_interval().as_nanos() / tick;
            let lead = (l.emission_interval() * l.burst() + l.queue_timeout()).as_nanos() / tick;
            if WIDE {
                assert_eq!(tick, 1);
                assert!(lead <= 1 << 62);
            } else {
                assert!(ticks_per_interval >= 1 << 8 || tick == 1, "{c:?}");
                assert!(lead <= 1 << 29, "{c:?}");
                if c == RateLimiterConfig::DEFAULT {
                    assert!(ticks_per_interval >= 1 << 10);
                    // 2^16 ns ticks: the word wraps after 78 hours.
                    assert_eq!(tick, 1 << 16);
                    assert_eq!(l.wrap_period().as_secs(), 281_474);
                }
            }
        }
    }
}
