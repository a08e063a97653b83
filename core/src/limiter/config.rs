//! The limiter's options: [`RateLimiterConfig`] and [`Mode`].

use core::time::Duration;

/// How a [`RateLimiter`] trades bursts against window guarantees.
///
/// See the [module documentation](self#which-mode) for when to use which.
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

/// Options of a [`RateLimiter`]; see the [module docs](self#options).
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
    /// [`resolution`](RateLimiter::resolution). Zero means reservations never
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
    pub const fn with_requests_per_period(mut self, requests: u32) -> Self {
        self.requests_per_period = requests;
        self
    }

    /// Sets `period`.
    pub const fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// Sets `burst` to `Some(burst)`.
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets `max_queue_size`.
    pub const fn with_max_queue_size(mut self, max_queue_size: u32) -> Self {
        self.max_queue_size = max_queue_size;
        self
    }

    /// Sets `queue_timeout`.
    pub const fn with_queue_timeout(mut self, queue_timeout: Duration) -> Self {
        self.queue_timeout = queue_timeout;
        self
    }

    /// Sets `mode`.
    pub const fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}
