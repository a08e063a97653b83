//! Configuration and its validation.

#[allow(unused_imports)]
use super::*;

/// Configuration of a [`CircuitBreaker`]; [`BreakerConfig::DEFAULT`] holds
/// the spec's defaults.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::breaker::{BreakerConfig, FailureRateConfig};
///
/// const CONFIG: BreakerConfig = BreakerConfig::DEFAULT
///     .with_failure_threshold(3)
///     .with_reset_timeout(Duration::from_secs(30))
///     .with_half_open_max_probes(2)
///     .with_failure_rate(FailureRateConfig::new(50, 20, 10))
///     .with_slow_call_threshold(Duration::from_secs(2));
/// assert_eq!(CONFIG.half_open_timeout, Duration::from_secs(30));
/// assert_eq!(BreakerConfig::default(), BreakerConfig::DEFAULT);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerConfig {
    /// Consecutive failures in the closed state that open the circuit
    /// (spec `failureThreshold`, default 5). At most
    /// [`CircuitBreaker::MAX_COUNT`].
    pub failure_threshold: u32,
    /// Time open before half-open (spec `resetTimeout`, default 60 s). At
    /// most [`CircuitBreaker::MAX_TIMEOUT`]. Exact to the nanosecond in the
    /// 64-bit layout; in the 32-bit layout it ends up to two
    /// [`CircuitBreaker::TICK`]s (≈ 2.1 ms) late, never early (the default
    /// 60 s: 60.001615872 s after a trip on a tick boundary).
    pub reset_timeout: Duration,
    /// Length of a half-open round: the circuit closes once a round has
    /// lasted this long with at least one successful probe and no failed
    /// one (spec `halfOpenTimeout`, "time to wait in half-open state before
    /// fully closing", default 30 s). At most [`CircuitBreaker::MAX_TIMEOUT`].
    /// In the 32-bit layout it ends up to two [`CircuitBreaker::TICK`]s
    /// (≈ 2.1 ms) late, never early.
    pub half_open_timeout: Duration,
    /// Interval between monitoring events (spec `monitorInterval`, default
    /// 5 s). Validated and stored for the blocking layer; not used by the
    /// state machine.
    pub monitor_interval: Duration,
    /// Probes admitted at once in the half-open state (default 1). At most
    /// [`CircuitBreaker::MAX_COUNT`].
    pub half_open_max_probes: u32,
    /// Close early after this many successful probes in one half-open
    /// round (default `None`: only the round's end closes). At most
    /// [`CircuitBreaker::MAX_COUNT`].
    pub half_open_successes_to_close: Option<u32>,
    /// Also open on a failure rate over a sliding window (default `None`).
    ///
    /// Needs the `failure-rate` feature (on with `std`); without it
    /// [`CircuitBreaker::new`] refuses `Some` with
    /// [`ConfigProblem::Unsupported`], and none of the window's code is
    /// linked.
    pub failure_rate: Option<FailureRateConfig>,
    /// Count a call that succeeds slower than this as a failure (default
    /// `None`).
    pub slow_call_threshold: Option<Duration>,
}

impl BreakerConfig {
    /// The spec's defaults: `failure_threshold` 5, `reset_timeout` 60 s,
    /// `half_open_timeout` 30 s, `monitor_interval` 5 s, one half-open
    /// probe, no early close, no failure-rate window, no slow-call
    /// threshold.
    pub const DEFAULT: BreakerConfig = BreakerConfig {
        failure_threshold: 5,
        reset_timeout: Duration::from_secs(60),
        half_open_timeout: Duration::from_secs(30),
        monitor_interval: Duration::from_secs(5),
        half_open_max_probes: 1,
        half_open_successes_to_close: None,
        failure_rate: None,
        slow_call_threshold: None,
    };

    /// Sets [`failure_threshold`](Self::failure_threshold).
    #[must_use]
    pub const fn with_failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures;
        self
    }

    /// Sets [`reset_timeout`](Self::reset_timeout).
    #[must_use]
    pub const fn with_reset_timeout(mut self, timeout: Duration) -> Self {
        self.reset_timeout = timeout;
        self
    }

    /// Sets [`half_open_timeout`](Self::half_open_timeout).
    #[must_use]
    pub const fn with_half_open_timeout(mut self, timeout: Duration) -> Self {
        self.half_open_timeout = timeout;
        self
    }

    /// Sets [`monitor_interval`](Self::monitor_interval).
    #[must_use]
    pub const fn with_monitor_interval(mut self, interval: Duration) -> Self {
        self.monitor_interval = interval;
        self
    }

    /// Sets [`half_open_max_probes`](Self::half_open_max_probes).
    #[must_use]
    pub const fn with_half_open_max_probes(mut self, probes: u32) -> Self {
        self.half_open_max_probes = probes;
        self
    }

    /// Sets [`half_open_successes_to_close`](Self::half_open_successes_to_close)
    /// to `Some(successes)`.
    #[must_use]
    pub const fn with_half_open_successes_to_close(mut self, successes: u32) -> Self {
        self.half_open_successes_to_close = Some(successes);
        self
    }

    /// Sets [`failure_rate`](Self::failure_rate).
    #[must_use]
    pub const fn with_failure_rate(mut self, failure_rate: FailureRateConfig) -> Self {
        self.failure_rate = Some(failure_rate);
        self
    }

    /// Checks every option, in declaration order; the first invalid one
    /// is the error. [`CircuitBreaker::new`] calls this.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the option: a count or duration of zero,
    /// a count above [`CircuitBreaker::MAX_COUNT`], a timeout above
    /// [`CircuitBreaker::MAX_TIMEOUT`], a `failure_rate` with a percentage
    /// outside 1..=100, a window outside
    /// 1..=[`FailureRateConfig::MAX_WINDOW_SIZE`], or `minimum_calls`
    /// above `window_size`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::ConfigOption;
    /// use stockade::breaker::BreakerConfig;
    ///
    /// assert!(BreakerConfig::DEFAULT.validate().is_ok());
    /// let err = BreakerConfig::DEFAULT.with_failure_threshold(0).validate().unwrap_err();
    /// assert_eq!(err.option, ConfigOption::FailureThreshold);
    /// ```
    pub const fn validate(&self) -> Result<(), ConfigError> {
        self.check::<true>()
    }

    /// [`validate`](Self::validate), describing a refusal only when
    /// `EXPLAIN` (else [`ConfigError::UNEXPLAINED`]).
    pub(super) const fn check<const EXPLAIN: bool>(&self) -> Result<(), ConfigError> {
        tri!(check_count::<EXPLAIN>(
            ConfigOption::FailureThreshold,
            self.failure_threshold
        ));
        tri!(check_timeout::<EXPLAIN>(
            ConfigOption::ResetTimeout,
            self.reset_timeout
        ));
        tri!(check_timeout::<EXPLAIN>(
            ConfigOption::HalfOpenTimeout,
            self.half_open_timeout
        ));
        tri!(check_duration::<EXPLAIN>(
            ConfigOption::MonitorInterval,
            self.monitor_interval
        ));
        tri!(check_count::<EXPLAIN>(
            ConfigOption::HalfOpenMaxProbes,
            self.half_open_max_probes
        ));
        if let Some(n) = self.half_open_successes_to_close {
            tri!(check_count::<EXPLAIN>(
                ConfigOption::HalfOpenSuccessesToClose,
                n
            ));
        }
        if let Some(fr) = self.failure_rate {
            tri!(check_failure_rate::<EXPLAIN>(fr));
        }
        if let Some(d) = self.slow_call_threshold {
            tri!(check_duration::<EXPLAIN>(
                ConfigOption::SlowCallThreshold,
                d
            ));
        }
        Ok(())
    }

    /// The plain C form of this configuration: durations in whole
    /// milliseconds, rounded up (so a sub-millisecond duration stays
    /// non-zero), `0` for the options that are off.
    #[must_use]
    pub const fn to_raw(&self) -> RawBreakerConfig {
        const fn ms(d: Duration) -> u64 {
            let nanos = duration_to_nanos_saturating(d);
            crate::time::div_ceil_u64(nanos, 1_000_000)
        }
        let (rate, window, minimum) = match self.failure_rate {
            Some(fr) => (fr.threshold_percent, fr.window_size, fr.minimum_calls),
            None => (0, 0, 0),
        };
        RawBreakerConfig {
            failure_threshold: self.failure_threshold,
            half_open_max_probes: self.half_open_max_probes,
            half_open_successes_to_close: match self.half_open_successes_to_close {
                Some(n) => n,
                None => 0,
            },
            failure_rate_threshold: rate,
            failure_rate_window_size: window,
            failure_rate_minimum_calls: minimum,
            reset_timeout: ms(self.reset_timeout),
            half_open_timeout: ms(self.half_open_timeout),
            monitor_interval: ms(self.monitor_interval),
            slow_call_threshold: match self.slow_call_threshold {
                Some(d) => ms(d),
                None => 0,
            },
        }
    }

    /// Sets [`slow_call_threshold`](Self::slow_call_threshold).
    #[must_use]
    pub const fn with_slow_call_threshold(mut self, threshold: Duration) -> Self {
        self.slow_call_threshold = Some(threshold);
        self
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig::DEFAULT
    }
}

/// The failure-rate rule: a count-based sliding window over the last
/// calls in the closed state (resilience4j's `COUNT_BASED` window).
///
/// The circuit opens when the window holds at least `minimum_calls` calls
/// and `failures * 100 >= threshold_percent * calls`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FailureRateConfig {
    /// Failure rate in percent (1..=100) at or above which the circuit
    /// opens.
    pub threshold_percent: u32,
    /// Calls the window remembers (1..=[`FailureRateConfig::MAX_WINDOW_SIZE`]).
    pub window_size: u32,
    /// Calls the window must hold before the rate is evaluated
    /// (1..=`window_size`).
    pub minimum_calls: u32,
}

impl FailureRateConfig {
    /// The largest `window_size`: the window is a fixed bit ring, no heap.
    pub const MAX_WINDOW_SIZE: u32 = MAX_WINDOW;

    /// resilience4j's defaults scaled to the largest window: 50 %, window
    /// of 100 calls, evaluated from 100 calls on.
    pub const DEFAULT: FailureRateConfig = FailureRateConfig::new(50, 100, 100);

    /// A failure-rate rule.
    #[must_use]
    pub const fn new(threshold_percent: u32, window_size: u32, minimum_calls: u32) -> Self {
        FailureRateConfig {
            threshold_percent,
            window_size,
            minimum_calls,
        }
    }
}

impl Default for FailureRateConfig {
    fn default() -> Self {
        FailureRateConfig::DEFAULT
    }
}

/// A breaker configuration as plain integers, for C: durations in
/// milliseconds, `0` for "none" in the optional options. Every field is
/// named like the option it holds ([`crate::ConfigOption::as_str`]), so a
/// [`ConfigError`] names the field to fix.
///
/// * `half_open_successes_to_close`: `0` = none (only the round's end
///   closes).
/// * `failure_rate_threshold`: `0` = no failure-rate rule; then
///   `failure_rate_window_size` and `failure_rate_minimum_calls` are
///   ignored.
/// * `slow_call_threshold`: `0` = none.
///
/// Converted and validated in one place: `BreakerConfig::try_from(raw)`
/// (the same checks as [`BreakerConfig::validate`]);
/// [`BreakerConfig::to_raw`] goes back.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::breaker::{BreakerConfig, RawBreakerConfig};
///
/// let raw = RawBreakerConfig { reset_timeout: 30_000, ..RawBreakerConfig::DEFAULT };
/// let config = BreakerConfig::try_from(raw)?;
/// assert_eq!(config.reset_timeout, Duration::from_secs(30));
/// assert_eq!(config.to_raw(), raw);
/// let zero = RawBreakerConfig { failure_threshold: 0, ..raw };
/// assert_eq!(
///     BreakerConfig::try_from(zero).unwrap_err().to_string(),
///     "invalid failure_threshold = 0: must be greater than zero"
/// );
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct RawBreakerConfig {
    /// [`BreakerConfig::failure_threshold`].
    pub failure_threshold: u32,
    /// [`BreakerConfig::half_open_max_probes`].
    pub half_open_max_probes: u32,
    /// [`BreakerConfig::half_open_successes_to_close`]; `0` = none.
    pub half_open_successes_to_close: u32,
    /// [`FailureRateConfig::threshold_percent`]; `0` = no failure-rate rule.
    pub failure_rate_threshold: u32,
    /// [`FailureRateConfig::window_size`].
    pub failure_rate_window_size: u32,
    /// [`FailureRateConfig::minimum_calls`].
    pub failure_rate_minimum_calls: u32,
    /// [`BreakerConfig::reset_timeout`], in milliseconds.
    pub reset_timeout: u64,
    /// [`BreakerConfig::half_open_timeout`], in milliseconds.
    pub half_open_timeout: u64,
    /// [`BreakerConfig::monitor_interval`], in milliseconds.
    pub monitor_interval: u64,
    /// [`BreakerConfig::slow_call_threshold`], in milliseconds; `0` = none.
    pub slow_call_threshold: u64,
}

impl RawBreakerConfig {
    /// The spec's defaults ([`BreakerConfig::DEFAULT`]).
    pub const DEFAULT: RawBreakerConfig = BreakerConfig::DEFAULT.to_raw();

    /// The configuration, validated: what `BreakerConfig::try_from` does,
    /// as a `const fn`.
    ///
    /// # Errors
    ///
    /// As [`BreakerConfig::validate`].
    pub const fn to_config(self) -> Result<BreakerConfig, ConfigError> {
        let config = self.unvalidated();
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }

    /// The config as it reads, unchecked.
    #[inline(always)]
    pub(super) const fn unvalidated(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.failure_threshold,
            reset_timeout: crate::time::duration_from_millis(self.reset_timeout),
            half_open_timeout: crate::time::duration_from_millis(self.half_open_timeout),
            monitor_interval: crate::time::duration_from_millis(self.monitor_interval),
            half_open_max_probes: self.half_open_max_probes,
            half_open_successes_to_close: match self.half_open_successes_to_close {
                0 => None,
                n => Some(n),
            },
            failure_rate: match self.failure_rate_threshold {
                0 => None,
                percent => Some(FailureRateConfig::new(
                    percent,
                    self.failure_rate_window_size,
                    self.failure_rate_minimum_calls,
                )),
            },
            slow_call_threshold: match self.slow_call_threshold {
                0 => None,
                ms => Some(crate::time::duration_from_millis(ms)),
            },
        }
    }
}

impl Default for RawBreakerConfig {
    fn default() -> Self {
        RawBreakerConfig::DEFAULT
    }
}

impl TryFrom<RawBreakerConfig> for BreakerConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBreakerConfig) -> Result<BreakerConfig, ConfigError> {
        raw.to_config()
    }
}

pub(super) const fn check_count<const EXPLAIN: bool>(
    option: ConfigOption,
    value: u32,
) -> Result<Word, ConfigError> {
    if value == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(option, ConfigValue::Count(0))
        ));
    }
    if value as u64 > FIELD_MAX_U64 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::count_above(option, value as u64, FIELD_MAX_U64,)
        ));
    }
    Ok(value as Word)
}

pub(super) const fn check_timeout<const EXPLAIN: bool>(
    option: ConfigOption,
    timeout: Duration,
) -> Result<Word, ConfigError> {
    let nanos = duration_to_nanos_saturating(timeout);
    if nanos == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(option, ConfigValue::Duration(timeout))
        ));
    }
    match UNIT.duration_ticks(nanos, MAX_TIMEOUT_TICKS) {
        Some(ticks) => Ok(ticks + ROUND_UP),
        None => Err(explain!(
            EXPLAIN,
            ConfigError::duration_above(
                option,
                timeout,
                Duration::from_nanos(UNIT.to_nanos(MAX_TIMEOUT_TICKS)),
            )
        )),
    }
}

pub(super) const fn check_duration<const EXPLAIN: bool>(
    option: ConfigOption,
    duration: Duration,
) -> Result<(), ConfigError> {
    if duration.is_zero() {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(option, ConfigValue::Duration(duration))
        ));
    }
    if duration.as_nanos() > u64::MAX as u128 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::duration_above(option, duration, Duration::from_nanos(u64::MAX),)
        ));
    }
    Ok(())
}

pub(super) const fn check_failure_rate<const EXPLAIN: bool>(
    fr: FailureRateConfig,
) -> Result<(), ConfigError> {
    let percent = fr.threshold_percent as u64;
    if !cfg!(feature = "failure-rate") {
        return Err(explain!(
            EXPLAIN,
            ConfigError::new(
                ConfigOption::FailureRateThreshold,
                ConfigValue::Count(percent),
                ConfigProblem::Unsupported {
                    feature: "failure-rate",
                },
            )
        ));
    }
    if percent == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(ConfigOption::FailureRateThreshold, ConfigValue::Count(0),)
        ));
    }
    if percent > 100 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::count_above(ConfigOption::FailureRateThreshold, percent, 100,)
        ));
    }
    if fr.window_size == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(ConfigOption::FailureRateWindowSize, ConfigValue::Count(0),)
        ));
    }
    if fr.window_size > MAX_WINDOW {
        return Err(explain!(
            EXPLAIN,
            ConfigError::count_above(
                ConfigOption::FailureRateWindowSize,
                fr.window_size as u64,
                MAX_WINDOW as u64,
            )
        ));
    }
    if fr.minimum_calls == 0 {
        return Err(explain!(
            EXPLAIN,
            ConfigError::zero(ConfigOption::FailureRateMinimumCalls, ConfigValue::Count(0),)
        ));
    }
    if fr.minimum_calls > fr.window_size {
        return Err(explain!(
            EXPLAIN,
            ConfigError::new(
                ConfigOption::FailureRateMinimumCalls,
                ConfigValue::Count(fr.minimum_calls as u64),
                ConfigProblem::Exceeds {
                    other: ConfigOption::FailureRateWindowSize,
                    limit: ConfigValue::Count(fr.window_size as u64),
                },
            )
        ));
    }
    Ok(())
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn a_duration_of_u64_max_nanoseconds_is_the_largest_accepted() {
        let max = Duration::from_nanos(u64::MAX);
        let c = BreakerConfig::DEFAULT.with_slow_call_threshold(max);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.with_slow_call_threshold(max + NS).validate(),
            Err(ConfigError::duration_above(
                ConfigOption::SlowCallThreshold,
                max + NS,
                max
            ))
        );
    }

    #[test]
    fn defaults_match_the_spec() {
        let d = BreakerConfig::DEFAULT;
        assert_eq!(d.failure_threshold, 5);
        assert_eq!(d.reset_timeout, Duration::from_millis(60_000));
        assert_eq!(d.half_open_timeout, Duration::from_millis(30_000));
        assert_eq!(d.monitor_interval, Duration::from_millis(5_000));
        assert_eq!(d.half_open_max_probes, 1);
        assert_eq!(d.half_open_successes_to_close, None);
        assert_eq!(d.failure_rate, None);
        assert_eq!(d.slow_call_threshold, None);
        assert_eq!(BreakerConfig::default(), d);
        assert_eq!(
            FailureRateConfig::default(),
            FailureRateConfig::new(50, 100, 100)
        );

        // The defaults drive the whole cycle.
        let b = breaker(BreakerConfig::default());
        assert_eq!(b.config(), d);
        let c = clock();
        for _ in 0..4 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let r = rejected(&b, &c);
        assert_eq!(r.state(), BreakerState::HalfOpen);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(30));
        probe.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[track_caller]
    fn assert_config_error(config: BreakerConfig, option: &str, problem: ConfigProblem) {
        let err = CircuitBreaker::new(config).expect_err("invalid");
        assert_eq!((err.option.as_str(), err.problem), (option, problem));
    }

    #[test]
    #[cfg(feature = "failure-rate")]
    fn the_raw_config_converts_and_validates_in_one_place() {
        assert_eq!(RawBreakerConfig::DEFAULT, RawBreakerConfig::default());
        assert_eq!(
            BreakerConfig::try_from(RawBreakerConfig::DEFAULT),
            Ok(BreakerConfig::DEFAULT)
        );
        let full = BreakerConfig::DEFAULT
            .with_half_open_successes_to_close(2)
            .with_failure_rate(FailureRateConfig::new(50, 20, 10))
            .with_slow_call_threshold(Duration::from_millis(250));
        assert_eq!(BreakerConfig::try_from(full.to_raw()), Ok(full));
        // Sub-millisecond durations round up, never to "none".
        let fine = BreakerConfig::DEFAULT.with_slow_call_threshold(Duration::from_nanos(1));
        assert_eq!(fine.to_raw().slow_call_threshold, 1);
        // The failure-rate rule is off at threshold 0; the rest is ignored.
        let off = RawBreakerConfig {
            failure_rate_window_size: 999,
            ..RawBreakerConfig::DEFAULT
        };
        assert_eq!(BreakerConfig::try_from(off).unwrap().failure_rate, None);
        // Errors name the field.
        for (raw, option) in [
            (
                RawBreakerConfig {
                    failure_threshold: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "failure_threshold",
            ),
            (
                RawBreakerConfig {
                    reset_timeout: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "reset_timeout",
            ),
            (
                RawBreakerConfig {
                    half_open_timeout: u64::MAX,
                    ..RawBreakerConfig::DEFAULT
                },
                "half_open_timeout",
            ),
            (
                RawBreakerConfig {
                    monitor_interval: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "monitor_interval",
            ),
            (
                RawBreakerConfig {
                    half_open_max_probes: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "half_open_max_probes",
            ),
            (
                RawBreakerConfig {
                    failure_rate_threshold: 101,
                    failure_rate_window_size: 10,
                    failure_rate_minimum_calls: 5,
                    ..RawBreakerConfig::DEFAULT
                },
                "failure_rate_threshold",
            ),
            (
                RawBreakerConfig {
                    failure_rate_threshold: 50,
                    failure_rate_window_size: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "failure_rate_window_size",
            ),
            (
                RawBreakerConfig {
                    failure_rate_threshold: 50,
                    failure_rate_window_size: 10,
                    failure_rate_minimum_calls: 0,
                    ..RawBreakerConfig::DEFAULT
                },
                "failure_rate_minimum_calls",
            ),
        ] {
            let err = BreakerConfig::try_from(raw).unwrap_err();
            assert_eq!(err.option.as_str(), option);
            assert_eq!(raw.to_config(), Err(err));
        }
    }

    #[test]
    fn every_option_is_validated() {
        let d = BreakerConfig::DEFAULT;
        let max = CircuitBreaker::MAX_COUNT;
        let too_many = ConfigProblem::TooLarge {
            max: ConfigValue::Count(max as u64),
        };
        assert_config_error(
            d.with_failure_threshold(0),
            "failure_threshold",
            ConfigProblem::Zero,
        );
        assert_config_error(
            d.with_failure_threshold(max + 1),
            "failure_threshold",
            too_many,
        );
        assert!(CircuitBreaker::new(d.with_failure_threshold(max)).is_ok());

        let long = ConfigProblem::TooLarge {
            max: ConfigValue::Duration(CircuitBreaker::MAX_TIMEOUT),
        };
        for (option, set) in [
            (
                "reset_timeout",
                BreakerConfig::with_reset_timeout as fn(_, _) -> _,
            ),
            ("half_open_timeout", BreakerConfig::with_half_open_timeout),
        ] {
            assert_config_error(set(d, Duration::ZERO), option, ConfigProblem::Zero);
            assert_config_error(set(d, CircuitBreaker::MAX_TIMEOUT + NS), option, long);
            assert_config_error(set(d, Duration::MAX), option, long);
            assert!(CircuitBreaker::new(set(d, CircuitBreaker::MAX_TIMEOUT)).is_ok());
            assert!(CircuitBreaker::new(set(d, NS)).is_ok());
        }

        assert_config_error(
            d.with_monitor_interval(Duration::ZERO),
            "monitor_interval",
            ConfigProblem::Zero,
        );
        assert_config_error(
            d.with_monitor_interval(Duration::MAX),
            "monitor_interval",
            ConfigProblem::TooLarge {
                max: ConfigValue::Duration(Duration::from_nanos(u64::MAX)),
            },
        );
        assert_config_error(
            d.with_half_open_max_probes(0),
            "half_open_max_probes",
            ConfigProblem::Zero,
        );
        assert_config_error(
            d.with_half_open_max_probes(max + 1),
            "half_open_max_probes",
            too_many,
        );
        assert_config_error(
            d.with_half_open_successes_to_close(0),
            "half_open_successes_to_close",
            ConfigProblem::Zero,
        );
        assert_config_error(
            d.with_half_open_successes_to_close(max + 1),
            "half_open_successes_to_close",
            too_many,
        );
        assert_config_error(
            d.with_slow_call_threshold(Duration::ZERO),
            "slow_call_threshold",
            ConfigProblem::Zero,
        );
        assert_config_error(
            d.with_slow_call_threshold(Duration::MAX),
            "slow_call_threshold",
            ConfigProblem::TooLarge {
                max: ConfigValue::Duration(Duration::from_nanos(u64::MAX)),
            },
        );

        #[cfg(feature = "failure-rate")]
        {
            let rate = |p, w, m| d.with_failure_rate(FailureRateConfig::new(p, w, m));
            assert_config_error(
                rate(0, 10, 5),
                "failure_rate_threshold",
                ConfigProblem::Zero,
            );
            assert_config_error(
                rate(101, 10, 5),
                "failure_rate_threshold",
                ConfigProblem::TooLarge {
                    max: ConfigValue::Count(100),
                },
            );
            assert_config_error(
                rate(50, 0, 1),
                "failure_rate_window_size",
                ConfigProblem::Zero,
            );
            assert_config_error(
                rate(50, 129, 5),
                "failure_rate_window_size",
                ConfigProblem::TooLarge {
                    max: ConfigValue::Count(128),
                },
            );
            assert_config_error(
                rate(50, 10, 0),
                "failure_rate_minimum_calls",
                ConfigProblem::Zero,
            );
            assert_config_error(
                rate(50, 10, 11),
                "failure_rate_minimum_calls",
                ConfigProblem::Exceeds {
                    other: ConfigOption::FailureRateWindowSize,
                    limit: ConfigValue::Count(10),
                },
            );
            assert!(CircuitBreaker::new(rate(100, 128, 128)).is_ok());
            assert!(CircuitBreaker::new(rate(1, 1, 1)).is_ok());
        }
        // Without the feature any failure rate is refused, naming it.
        #[cfg(not(feature = "failure-rate"))]
        assert_config_error(
            d.with_failure_rate(FailureRateConfig::new(50, 10, 5)),
            "failure_rate_threshold",
            ConfigProblem::Unsupported {
                feature: "failure-rate",
            },
        );
    }
}

/// A duration as two plain integers: `#[repr(C)]`, every bit pattern a
/// value (unlike `Duration`, whose layout is the compiler's and whose
/// nanoseconds field has invalid values), so a breaker placed in memory
/// that another build or process maps is still plain data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(super) struct Span {
    secs: u64,
    nanos: u32,
    _pad: u32,
}

impl Span {
    pub(super) const fn new(d: Duration) -> Span {
        Span {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
            _pad: 0,
        }
    }

    /// `None` for the zero span (a valid config has no zero duration).
    const fn get(self) -> Option<Duration> {
        if self.secs == 0 && self.nanos == 0 {
            None
        } else {
            // `% 1e9`: a stored value is always in range; the modulo keeps
            // `Duration::new` from panicking on bytes it did not write.
            Some(Duration::new(self.secs, self.nanos % 1_000_000_000))
        }
    }

    const fn or_zero(self) -> Duration {
        match self.get() {
            Some(d) => d,
            None => Duration::ZERO,
        }
    }
}

/// The breaker's configuration as the machine stores it: plain integers,
/// `0` for an option that is off (a valid config has no zero count or
/// duration). Round-trips a valid [`BreakerConfig`] exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(super) struct StoredConfig {
    pub(super) failure_threshold: u32,
    pub(super) half_open_max_probes: u32,
    /// `0`: none.
    pub(super) half_open_successes_to_close: u32,
    /// `0`: no failure-rate rule.
    pub(super) failure_rate_threshold: u32,
    pub(super) failure_rate_window_size: u32,
    pub(super) failure_rate_minimum_calls: u32,
    reset_timeout: Span,
    half_open_timeout: Span,
    monitor_interval: Span,
    /// Zero: none.
    slow_call_threshold: Span,
}

impl StoredConfig {
    pub(super) const fn new(c: &BreakerConfig) -> StoredConfig {
        let (failure_rate_threshold, failure_rate_window_size, failure_rate_minimum_calls) =
            match c.failure_rate {
                Some(fr) => (fr.threshold_percent, fr.window_size, fr.minimum_calls),
                None => (0, 0, 0),
            };
        StoredConfig {
            failure_threshold: c.failure_threshold,
            half_open_max_probes: c.half_open_max_probes,
            half_open_successes_to_close: match c.half_open_successes_to_close {
                Some(n) => n,
                None => 0,
            },
            failure_rate_threshold,
            failure_rate_window_size,
            failure_rate_minimum_calls,
            reset_timeout: Span::new(c.reset_timeout),
            half_open_timeout: Span::new(c.half_open_timeout),
            monitor_interval: Span::new(c.monitor_interval),
            slow_call_threshold: match c.slow_call_threshold {
                Some(d) => Span::new(d),
                None => Span::new(Duration::ZERO),
            },
        }
    }

    pub(super) const fn config(&self) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: self.failure_threshold,
            reset_timeout: self.reset_timeout.or_zero(),
            half_open_timeout: self.half_open_timeout.or_zero(),
            monitor_interval: self.monitor_interval.or_zero(),
            half_open_max_probes: self.half_open_max_probes,
            half_open_successes_to_close: match self.half_open_successes_to_close {
                0 => None,
                n => Some(n),
            },
            failure_rate: self.failure_rate(),
            slow_call_threshold: self.slow_call_threshold(),
        }
    }

    /// The window, if configured; always `None` without the
    /// `failure-rate` feature, so the window's code is never linked.
    #[inline]
    pub(super) const fn failure_rate(&self) -> Option<FailureRateConfig> {
        if !cfg!(feature = "failure-rate") {
            return None;
        }
        match self.failure_rate_threshold {
            0 => None,
            t => Some(FailureRateConfig::new(
                t,
                self.failure_rate_window_size,
                self.failure_rate_minimum_calls,
            )),
        }
    }

    #[inline]
    pub(super) const fn has_failure_rate(&self) -> bool {
        cfg!(feature = "failure-rate") && self.failure_rate_threshold != 0
    }

    #[inline]
    pub(super) const fn slow_call_threshold(&self) -> Option<Duration> {
        self.slow_call_threshold.get()
    }

    #[inline]
    pub(super) const fn has_slow_call_threshold(&self) -> bool {
        self.slow_call_threshold.secs != 0 || self.slow_call_threshold.nanos != 0
    }
}
