//! The limiter's options: [`RateLimiterConfig`] and [`Mode`].

use core::time::Duration;

use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};

/// How a [`RateLimiter`](crate::limiter::RateLimiter) trades bursts against window guarantees.
///
/// See the [module documentation](crate::limiter#which-mode) for when to use which.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Classic GCRA token bucket: emission interval `period / N`, `burst`
    /// permits at once (default `N`). Protects your own service; may admit
    /// up to `burst + N` permits within one period.
    #[default]
    Bursty = 0,
    /// Never more than `N` permits in any window of length `period`:
    /// emission interval `period / (N - burst + 1)`, default `burst` 1 (pure
    /// pacing). For third-party quotas enforced over sliding windows.
    Strict = 1,
}

/// Options of a [`RateLimiter`](crate::limiter::RateLimiter); see the [module docs](crate::limiter#options).
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::limiter::{Mode, RateLimiterConfig};
///
/// // A third-party API allows 100 calls per minute, counted over sliding windows.
/// let config = RateLimiterConfig::DEFAULT
///     .with_requests_per_period(100)
///     .with_period(Duration::from_secs(60))
///     .with_mode(Mode::Strict);
/// assert_eq!(config.burst, None); // strict default: 1, pure pacing
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RateLimiterConfig {
    /// Permits per `period` (spec `requestsPerPeriod`, default 10). Must be
    /// greater than zero, and at most one per nanosecond of `period`.
    pub requests_per_period: u32,
    /// The period (spec `periodInMs`, default 1 s). Must be greater than
    /// zero and fit in 64 bits of nanoseconds (at most 2^61 ns, 73 years,
    /// with the 64-bit layout).
    pub period: Duration,
    /// Permits that may be taken at once. `None` (the default) means
    /// `requests_per_period` in [`Mode::Bursty`] and 1 in [`Mode::Strict`].
    /// `Some(0)` is an error, and so is more than `requests_per_period` in
    /// strict mode. (A C binding maps 0 to `None`.) At most 2^19 with the
    /// 32-bit layout.
    pub burst: Option<u32>,
    /// Permits that may be booked ahead, waiting, at once (spec
    /// `maxQueueSize`, default 100). Zero means reservations never wait.
    /// At most 2^19 with the 32-bit layout.
    pub max_queue_size: u32,
    /// The longest a reservation may wait (spec `queueTimeout`, default
    /// 30 s), rounded down to the limiter's
    /// [`resolution`](crate::limiter::RateLimiter::resolution). Zero means reservations never
    /// wait; values longer than the queue can hold
    /// (`max_queue_size · emission interval`, `Duration::MAX` included)
    /// leave waiting bounded by `max_queue_size` alone.
    pub queue_timeout: Duration,
    /// Bursty (default) or strict; see [`Mode`].
    pub mode: Mode,
}

impl RateLimiterConfig {
    /// The spec's defaults: 10 requests per second, burst 10, a queue of
    /// 100, a queue timeout of 30 s, [`Mode::Bursty`].
    pub const DEFAULT: RateLimiterConfig = RateLimiterConfig {
        requests_per_period: 10,
        period: Duration::from_secs(1),
        burst: None,
        max_queue_size: 100,
        queue_timeout: Duration::from_secs(30),
        mode: Mode::Bursty,
    };

    /// Sets `requests_per_period`.
    #[must_use]
    pub const fn with_requests_per_period(mut self, requests: u32) -> Self {
        self.requests_per_period = requests;
        self
    }

    /// Sets `period`.
    #[must_use]
    pub const fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets `burst` to `Some(burst)`.
    #[must_use]
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets `max_queue_size`.
    #[must_use]
    pub const fn with_max_queue_size(mut self, max_queue_size: u32) -> Self {
        self.max_queue_size = max_queue_size;
        self
    }

    /// Sets `queue_timeout`.
    #[must_use]
    pub const fn with_queue_timeout(mut self, queue_timeout: Duration) -> Self {
        self.queue_timeout = queue_timeout;
        self
    }

    /// Sets `mode`.
    #[must_use]
    pub const fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

impl RateLimiterConfig {
    /// Checks every option, as [`RateLimiter::new`](super::RateLimiter::new)
    /// does (the one place options are validated).
    ///
    /// # Errors
    ///
    /// The first invalid option, as for `RateLimiter::new`.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        match super::plan::plan::<true>(self) {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The plain form a C or Python binding passes.
    pub const fn to_raw(&self) -> RawRateLimiterConfig {
        RawRateLimiterConfig {
            period_ms: millis_saturating(self.period),
            queue_timeout_ms: millis_saturating(self.queue_timeout),
            requests_per_period: self.requests_per_period,
            burst: match self.burst {
                Some(b) => b,
                None => 0,
            },
            max_queue_size: self.max_queue_size,
            mode: self.mode as u8,
        }
    }
}

/// A duration in whole milliseconds, saturating at `u64::MAX`.
const fn millis_saturating(d: Duration) -> u64 {
    let ms = d.as_millis();
    if ms > u64::MAX as u128 {
        u64::MAX
    } else {
        ms as u64
    }
}

/// [`RateLimiterConfig`] as plain integers, for C and Python bindings.
///
/// Durations are whole milliseconds; `burst = 0` means "none" (the mode's
/// default); `mode` is [`Mode`]'s discriminant (0 bursty, 1 strict).
/// Convert with `RateLimiterConfig::try_from(raw)`, which validates every
/// option ([`RateLimiterConfig::validate`]).
///
/// # Examples
///
/// ```
/// use stockade::limiter::{RateLimiterConfig, RawRateLimiterConfig};
///
/// let raw = RawRateLimiterConfig { requests_per_period: 100, mode: 1, ..RawRateLimiterConfig::DEFAULT };
/// let config = RateLimiterConfig::try_from(raw)?;
/// assert_eq!(config.to_raw(), raw);
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawRateLimiterConfig {
    /// `period` in milliseconds.
    pub period_ms: u64,
    /// `queue_timeout` in milliseconds (0: never wait).
    pub queue_timeout_ms: u64,
    /// `requests_per_period`.
    pub requests_per_period: u32,
    /// `burst`; 0 means `None`.
    pub burst: u32,
    /// `max_queue_size`.
    pub max_queue_size: u32,
    /// [`Mode`] as its discriminant: 0 bursty, 1 strict.
    pub mode: u8,
}

impl RawRateLimiterConfig {
    /// [`RateLimiterConfig::DEFAULT`] in plain form.
    pub const DEFAULT: RawRateLimiterConfig = RateLimiterConfig::DEFAULT.to_raw();

    /// The config, validated.
    ///
    /// # Errors
    ///
    /// An unknown `mode` ([`ConfigProblem::Invalid`]), or the first invalid
    /// option as for [`RateLimiterConfig::validate`].
    pub const fn to_config(&self) -> Result<RateLimiterConfig, ConfigError> {
        let Some(config) = self.unvalidated() else {
            return Err(ConfigError::new(
                ConfigOption::Mode,
                ConfigValue::Count(self.mode as u64),
                ConfigProblem::Invalid,
            ));
        };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }

    /// The config as it reads, unchecked; `None` for an unknown `mode`.
    pub(super) const fn unvalidated(&self) -> Option<RateLimiterConfig> {
        let mode = match self.mode {
            0 => Mode::Bursty,
            1 => Mode::Strict,
            _ => return None,
        };
        Some(RateLimiterConfig {
            requests_per_period: self.requests_per_period,
            period: crate::time::duration_from_millis(self.period_ms),
            burst: if self.burst == 0 {
                None
            } else {
                Some(self.burst)
            },
            max_queue_size: self.max_queue_size,
            queue_timeout: crate::time::duration_from_millis(self.queue_timeout_ms),
            mode,
        })
    }
}

impl Default for RawRateLimiterConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<RawRateLimiterConfig> for RateLimiterConfig {
    type Error = ConfigError;

    fn try_from(raw: RawRateLimiterConfig) -> Result<Self, ConfigError> {
        raw.to_config()
    }
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}
