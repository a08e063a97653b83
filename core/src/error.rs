//! Configuration errors: small `Copy` values that name the offending
//! option, the value given and the rule it broke, in the user's units.
//!
//! ```
//! use std::time::Duration;
//! use stockade::backoff::{Backoff, BackoffConfig};
//! use stockade::{ConfigOption, ConfigProblem};
//!
//! let err = Backoff::new(BackoffConfig::DEFAULT.with_backoff_factor(0.5)).unwrap_err();
//! assert_eq!(err.option, ConfigOption::BackoffFactor);
//! assert!(matches!(err.problem, ConfigProblem::TooSmall { .. }));
//! assert_eq!(err.to_string(), "invalid backoff_factor = 0.5: must be at least 1");
//! ```

use core::fmt;
use core::time::Duration;

/// An invalid configuration value: which option, the value given, and what
/// is wrong with it.
///
/// Displayed as `invalid <option> = <value>: <rule>`, with durations
/// written the way a person writes them (`30s`, `200ms`, `1h 30min`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfigError {
    /// The option.
    pub option: ConfigOption,
    /// The value that was given.
    pub value: ConfigValue,
    /// What is wrong with it.
    pub problem: ConfigProblem,
}

/// Every configuration option of every pattern, with a stable number.
///
/// One concept has one name across patterns: the bulkhead's and the rate
/// limiter's `queue_timeout` are the same option with the same rule. The
/// numbers are part of the C ABI and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum ConfigOption {
    /// Circuit breaker: consecutive failures that open it (spec `failureThreshold`).
    FailureThreshold = 1,
    /// Circuit breaker: how long it stays open (spec `resetTimeout`).
    ResetTimeout = 2,
    /// Circuit breaker: how long a half-open round lasts (spec `halfOpenTimeout`).
    HalfOpenTimeout = 3,
    /// Circuit breaker: interval between monitoring events (spec `monitorInterval`).
    MonitorInterval = 4,
    /// Circuit breaker: probes admitted at once while half-open.
    HalfOpenMaxProbes = 5,
    /// Circuit breaker: successful probes needed to close.
    HalfOpenSuccessesToClose = 6,
    /// Circuit breaker: failure-rate threshold, in percent.
    FailureRateThreshold = 7,
    /// Circuit breaker: calls in the failure-rate window.
    FailureRateWindowSize = 8,
    /// Circuit breaker: calls needed before the failure rate is judged.
    FailureRateMinimumCalls = 9,
    /// Circuit breaker: a call slower than this counts as a failure.
    SlowCallThreshold = 10,
    /// Rate limiter: permits per period (spec `requestsPerPeriod`).
    RequestsPerPeriod = 20,
    /// Rate limiter: the period (spec `periodInMs`).
    Period = 21,
    /// Rate limiter: permits that may be taken at once.
    Burst = 22,
    /// Rate limiter: permits that may wait in the queue (spec `maxQueueSize`).
    MaxQueueSize = 23,
    /// Rate limiter and bulkhead: the longest wait in the queue (spec `queueTimeout`).
    QueueTimeout = 24,
    /// Rate limiter: bursty or strict (only a raw, integer mode can be invalid).
    Mode = 25,
    /// Bulkhead: calls running at once (spec `maxConcurrent`).
    MaxConcurrent = 30,
    /// Bulkhead and request-response: callers that may wait (spec `maxQueue`).
    MaxQueue = 31,
    /// Retry and hedging: attempts in all, the first included (spec `maxAttempts`).
    MaxAttempts = 40,
    /// Retry: the delay before the first retry (spec `initialDelay`).
    InitialDelay = 41,
    /// Retry: the longest delay between attempts (spec `maxDelay`).
    MaxDelay = 42,
    /// Retry: the delay multiplier (spec `backoffFactor`).
    BackoffFactor = 43,
    /// Retry: the total time budget, sleeps included.
    MaxElapsed = 44,
    /// Retry: the error matchers (spec `retryableErrors`).
    RetryableErrors = 45,
    /// Retry: how delays are randomised.
    Jitter = 46,
    /// Retry budget: retries allowed per call.
    BudgetRatio = 50,
    /// Retry budget: retries allowed per second regardless of calls.
    MinRetriesPerSecond = 51,
    /// Retry budget: the most tokens the budget holds.
    MaxTokens = 52,
    /// Timeout: the time allowed (spec `timeoutMs`).
    Timeout = 60,
    /// Timeout, request-response and hedging: worker threads in the pool.
    MaxWorkers = 61,
    /// Timeout and request-response: how long an idle worker lives.
    IdleTimeout = 62,
    /// Request-response: the timeout of a request that names none.
    DefaultTimeout = 63,
}

impl ConfigOption {
    /// The option numbered `n` (its discriminant), if there is one.
    pub const fn from_u16(n: u16) -> Option<ConfigOption> {
        Some(match n {
            1 => ConfigOption::FailureThreshold,
            2 => ConfigOption::ResetTimeout,
            3 => ConfigOption::HalfOpenTimeout,
            4 => ConfigOption::MonitorInterval,
            5 => ConfigOption::HalfOpenMaxProbes,
            6 => ConfigOption::HalfOpenSuccessesToClose,
            7 => ConfigOption::FailureRateThreshold,
            8 => ConfigOption::FailureRateWindowSize,
            9 => ConfigOption::FailureRateMinimumCalls,
            10 => ConfigOption::SlowCallThreshold,
            20 => ConfigOption::RequestsPerPeriod,
            21 => ConfigOption::Period,
            22 => ConfigOption::Burst,
            23 => ConfigOption::MaxQueueSize,
            24 => ConfigOption::QueueTimeout,
            25 => ConfigOption::Mode,
            30 => ConfigOption::MaxConcurrent,
            31 => ConfigOption::MaxQueue,
            40 => ConfigOption::MaxAttempts,
            41 => ConfigOption::InitialDelay,
            42 => ConfigOption::MaxDelay,
            43 => ConfigOption::BackoffFactor,
            44 => ConfigOption::MaxElapsed,
            45 => ConfigOption::RetryableErrors,
            46 => ConfigOption::Jitter,
            50 => ConfigOption::BudgetRatio,
            51 => ConfigOption::MinRetriesPerSecond,
            52 => ConfigOption::MaxTokens,
            60 => ConfigOption::Timeout,
            61 => ConfigOption::MaxWorkers,
            62 => ConfigOption::IdleTimeout,
            63 => ConfigOption::DefaultTimeout,
            _ => return None,
        })
    }

    /// The option's name as written in Rust (`failure_threshold`); Python
    /// uses the same name, C the same name as a struct field.
    pub const fn as_str(self) -> &'static str {
        match core::str::from_utf8(self.as_c_str().to_bytes()) {
            Ok(name) => name,
            Err(_) => "",
        }
    }

    /// [`as_str`](Self::as_str) with a terminating NUL, for C.
    pub const fn as_c_str(self) -> &'static core::ffi::CStr {
        match self {
            ConfigOption::FailureThreshold => c"failure_threshold",
            ConfigOption::ResetTimeout => c"reset_timeout",
            ConfigOption::HalfOpenTimeout => c"half_open_timeout",
            ConfigOption::MonitorInterval => c"monitor_interval",
            ConfigOption::HalfOpenMaxProbes => c"half_open_max_probes",
            ConfigOption::HalfOpenSuccessesToClose => c"half_open_successes_to_close",
            ConfigOption::FailureRateThreshold => c"failure_rate_threshold",
            ConfigOption::FailureRateWindowSize => c"failure_rate_window_size",
            ConfigOption::FailureRateMinimumCalls => c"failure_rate_minimum_calls",
            ConfigOption::SlowCallThreshold => c"slow_call_threshold",
            ConfigOption::RequestsPerPeriod => c"requests_per_period",
            ConfigOption::Period => c"period",
            ConfigOption::Burst => c"burst",
            ConfigOption::MaxQueueSize => c"max_queue_size",
            ConfigOption::QueueTimeout => c"queue_timeout",
            ConfigOption::Mode => c"mode",
            ConfigOption::MaxConcurrent => c"max_concurrent",
            ConfigOption::MaxQueue => c"max_queue",
            ConfigOption::MaxAttempts => c"max_attempts",
            ConfigOption::InitialDelay => c"initial_delay",
            ConfigOption::MaxDelay => c"max_delay",
            ConfigOption::BackoffFactor => c"backoff_factor",
            ConfigOption::MaxElapsed => c"max_elapsed",
            ConfigOption::RetryableErrors => c"retryable_errors",
            ConfigOption::Jitter => c"jitter",
            ConfigOption::BudgetRatio => c"ratio",
            ConfigOption::MinRetriesPerSecond => c"min_retries_per_second",
            ConfigOption::MaxTokens => c"max_tokens",
            ConfigOption::Timeout => c"timeout",
            ConfigOption::MaxWorkers => c"max_workers",
            ConfigOption::IdleTimeout => c"idle_timeout",
            ConfigOption::DefaultTimeout => c"default_timeout",
        }
    }
}

impl fmt::Display for ConfigOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration value in the option's own unit: a count, a duration or
/// a factor.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigValue {
    /// A count (permits, attempts, calls, percent).
    Count(u64),
    /// A duration.
    Duration(Duration),
    /// A real-valued factor or ratio.
    Factor(f64),
    /// A value that has no single number (e.g. an invalid pattern).
    Other,
}

impl fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigValue::Count(n) => write!(f, "{n}"),
            ConfigValue::Duration(d) => HumanDuration(d).fmt(f),
            ConfigValue::Factor(x) => write!(f, "{x}"),
            ConfigValue::Other => f.write_str("(given value)"),
        }
    }
}

/// What is wrong with a configuration value.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The value must be greater than zero.
    Zero,
    /// The value exceeds the largest accepted value.
    TooLarge {
        /// The largest accepted value, in the option's unit.
        max: ConfigValue,
    },
    /// The value is below the smallest accepted value.
    TooSmall {
        /// The smallest accepted value, in the option's unit.
        min: ConfigValue,
    },
    /// The value must not exceed another option's value.
    Exceeds {
        /// The other option.
        other: ConfigOption,
        /// The other option's value.
        limit: ConfigValue,
    },
    /// The value is not a finite number.
    NotFinite,
    /// The value is malformed (e.g. a pattern that does not compile).
    Invalid,
    /// The option needs a Cargo feature this build of the library was
    /// made without (e.g. `failure_rate` without `failure-rate`).
    Unsupported {
        /// The feature to enable.
        feature: &'static str,
    },
}

/// `$e` when `$explain`, else [`ConfigError::UNEXPLAINED`], without
/// computing `$e`: a check generic over `const EXPLAIN: bool` describes a
/// refusal only when asked, so the lean constructors link none of the code
/// that computes descriptions.
macro_rules! explain {
    ($explain:expr, $e:expr) => {
        if $explain {
            $e
        } else {
            $crate::error::ConfigError::UNEXPLAINED
        }
    };
}
pub(crate) use explain;

impl ConfigError {
    /// What the lean constructors' internal checks return instead of a
    /// description (never returned to a caller: they return `None`).
    pub(crate) const UNEXPLAINED: ConfigError = ConfigError::new(
        ConfigOption::FailureThreshold,
        ConfigValue::Count(0),
        ConfigProblem::Invalid,
    );

    /// An error for `option`, given `value`, with `problem`.
    pub const fn new(option: ConfigOption, value: ConfigValue, problem: ConfigProblem) -> Self {
        ConfigError {
            option,
            value,
            problem,
        }
    }

    /// `option` was zero and must be greater.
    pub const fn zero(option: ConfigOption, value: ConfigValue) -> Self {
        ConfigError::new(option, value, ConfigProblem::Zero)
    }

    /// A count `value` of `option` above `max`.
    pub const fn count_above(option: ConfigOption, value: u64, max: u64) -> Self {
        ConfigError::new(
            option,
            ConfigValue::Count(value),
            ConfigProblem::TooLarge {
                max: ConfigValue::Count(max),
            },
        )
    }

    /// A duration `value` of `option` above `max`.
    pub const fn duration_above(option: ConfigOption, value: Duration, max: Duration) -> Self {
        ConfigError::new(
            option,
            ConfigValue::Duration(value),
            ConfigProblem::TooLarge {
                max: ConfigValue::Duration(max),
            },
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}", self.option)?;
        if !matches!(self.value, ConfigValue::Other) {
            write!(f, " = {}", self.value)?;
        }
        f.write_str(": ")?;
        match self.problem {
            ConfigProblem::Zero => f.write_str("must be greater than zero"),
            ConfigProblem::TooLarge { max } => write!(f, "must be at most {max}"),
            ConfigProblem::TooSmall { min } => write!(f, "must be at least {min}"),
            ConfigProblem::Exceeds { other, limit } => {
                write!(f, "must not exceed {other} (= {limit})")
            }
            ConfigProblem::NotFinite => f.write_str("must be a finite number"),
            ConfigProblem::Invalid => f.write_str("is malformed"),
            ConfigProblem::Unsupported { feature } => {
                write!(f, "needs the `{feature}` feature, which this build lacks")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// A [`Duration`] displayed the way a person writes it: `30s`, `1.5s`,
/// `200ms`, `250µs`, `1h 30min`.
///
/// Below a minute it shows up to three decimals of the largest fitting
/// unit, trailing zeros dropped (29.999 995 579 s shows as `30s`); from a
/// minute up it shows hours, minutes and seconds, the seconds rounded to
/// the millisecond.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let nanos = d.as_nanos();
        if nanos < 1_000 {
            return write!(f, "{nanos}ns");
        }
        if nanos < 1_000_000 {
            return decimal(f, nanos, 1_000, "µs");
        }
        if nanos < 1_000_000_000 {
            return decimal(f, nanos, 1_000_000, "ms");
        }
        // Round to the millisecond first, so 59.9996 s becomes 1min.
        let millis = (nanos + 500_000) / 1_000_000;
        if millis < 60_000 {
            return decimal(f, millis, 1_000, "s");
        }
        let hours = millis / 3_600_000;
        let minutes = millis / 60_000 % 60;
        let rest = millis % 60_000;
        let mut sep = "";
        if hours > 0 {
            write!(f, "{hours}h")?;
            sep = " ";
        }
        if minutes > 0 {
            write!(f, "{sep}{minutes}min")?;
            sep = " ";
        }
        if rest > 0 {
            f.write_str(sep)?;
            decimal(f, rest, 1_000, "s")?;
        }
        Ok(())
    }
}

/// Writes `value / per` with up to three decimals (rounded to nearest),
/// trailing zeros dropped, then `unit`.
fn decimal(f: &mut fmt::Formatter<'_>, value: u128, per: u128, unit: &str) -> fmt::Result {
    // Thousandths of the unit, rounded to nearest.
    let thousandths = (value * 1_000 + per / 2) / per;
    let whole = thousandths / 1_000;
    let mut frac = thousandths % 1_000;
    if frac == 0 {
        return write!(f, "{whole}{unit}");
    }
    let mut digits = 3;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    write!(f, "{whole}.{frac:0digits$}{unit}")
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::string::ToString;

    fn human(d: Duration) -> std::string::String {
        HumanDuration(d).to_string()
    }

    #[test]
    fn display_names_option_value_and_rule_in_user_units() {
        let e = ConfigError::zero(ConfigOption::Period, ConfigValue::Duration(Duration::ZERO));
        assert_eq!(
            e.to_string(),
            "invalid period = 0ns: must be greater than zero"
        );
        let e = ConfigError::new(
            ConfigOption::InitialDelay,
            ConfigValue::Duration(Duration::from_secs(60)),
            ConfigProblem::Exceeds {
                other: ConfigOption::MaxDelay,
                limit: ConfigValue::Duration(Duration::from_secs(30)),
            },
        );
        assert_eq!(
            e.to_string(),
            "invalid initial_delay = 1min: must not exceed max_delay (= 30s)"
        );
        let e = ConfigError::duration_above(
            ConfigOption::Period,
            Duration::MAX,
            Duration::from_secs(3600 * 24 * 365),
        );
        assert_eq!(
            e.to_string(),
            "invalid period = 5124095576030431h 16s: must be at most 8760h"
        );
        let e = ConfigError::count_above(ConfigOption::Burst, 900, 10);
        assert_eq!(e.to_string(), "invalid burst = 900: must be at most 10");
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(human(Duration::ZERO), "0ns");
        assert_eq!(human(Duration::from_nanos(999)), "999ns");
        assert_eq!(human(Duration::from_micros(146)), "146µs");
        assert_eq!(human(Duration::from_nanos(146_500)), "146.5µs");
        assert_eq!(human(Duration::from_nanos(200_146_944)), "200.147ms");
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(Duration::from_nanos(29_999_995_579)), "30s");
        assert_eq!(human(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(human(Duration::from_secs(60)), "1min");
        assert_eq!(human(Duration::from_nanos(59_999_600_000)), "1min");
        assert_eq!(human(Duration::from_secs(90)), "1min 30s");
        assert_eq!(human(Duration::from_secs(5400)), "1h 30min");
        assert_eq!(human(Duration::from_millis(3_600_250)), "1h 0.25s");
    }

    #[test]
    fn option_numbers_and_names_are_stable() {
        assert_eq!(ConfigOption::FailureThreshold as u16, 1);
        assert_eq!(ConfigOption::QueueTimeout as u16, 24);
        assert_eq!(ConfigOption::DefaultTimeout as u16, 63);
        assert_eq!(ConfigOption::QueueTimeout.as_str(), "queue_timeout");
        assert_eq!(ConfigOption::QueueTimeout.as_c_str(), c"queue_timeout");
        // Every number maps back to its option, and no two share a name.
        let mut seen = std::vec::Vec::new();
        for n in 0..=u16::MAX {
            if let Some(option) = ConfigOption::from_u16(n) {
                assert_eq!(option as u16, n);
                assert!(!seen.contains(&option.as_str()), "{option:?}");
                seen.push(option.as_str());
            }
        }
        assert_eq!(seen.len(), 32);
    }
}
