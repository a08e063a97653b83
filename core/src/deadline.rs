//! The timeout pattern's core: a [`Deadline`] is a point in time after which
//! an operation has taken too long, and [`TimeoutConfig`] holds the spec's
//! `timeoutMs` option.
//!
//! A deadline is a plain [`Timestamp`] (`Copy`, 8 bytes, no clock inside):
//! it is made from a clock once, then checked against the same clock with
//! [`Deadline::remaining`] and [`Deadline::is_expired`]. The blocking layer
//! uses `remaining` as its wait timeout; cooperative code checks
//! `is_expired` between steps. Nothing here cancels an operation.
//!
//! Arithmetic saturates: a timeout too long to represent (past `u64::MAX`
//! nanoseconds, 584 years) gives [`Deadline::NEVER`]. A clock that steps
//! backwards never panics; it only makes more time remain.
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::clock::ManualClock;
//! use stockade::deadline::{Deadline, TimeoutConfig};
//!
//! let clock = ManualClock::new();
//! let config = TimeoutConfig::default(); // 5 s, the spec's timeoutMs = 5000
//! let deadline = config.deadline(&clock);
//!
//! clock.advance(Duration::from_secs(3));
//! assert_eq!(deadline.remaining(&clock), Duration::from_secs(2));
//! assert!(!deadline.is_expired(&clock));
//!
//! clock.advance(Duration::from_secs(2));
//! assert_eq!(deadline.remaining(&clock), Duration::ZERO);
//! assert!(deadline.is_expired(&clock));
//!
//! assert!(!Deadline::NEVER.is_expired(&clock));
//! ```

use core::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::error::{ConfigError, ConfigOption, ConfigValue};

/// A point in time after which an operation has timed out.
///
/// Ordered by time: the earlier deadline is the smaller one, so
/// `a.min(b)` is the tighter of two deadlines.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::clock::{ManualClock, Timestamp};
/// use stockade::deadline::Deadline;
///
/// let clock = ManualClock::starting_at(Timestamp::from_nanos(1_000));
/// let outer = Deadline::at(Timestamp::from_nanos(5_000));
/// let inner = Deadline::after(&clock, Duration::from_nanos(10_000));
/// let effective = outer.min(inner);
/// assert_eq!(effective.expires_at(), Timestamp::from_nanos(5_000));
/// assert_eq!(effective.remaining(&clock), Duration::from_nanos(4_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Deadline(Timestamp);

impl Deadline {
    /// `size_of::<Deadline>()`: the bytes C must provide to hold one.
    pub const SIZE: usize = core::mem::size_of::<Deadline>();
    /// `align_of::<Deadline>()`: the alignment C must provide.
    pub const ALIGN: usize = core::mem::align_of::<Deadline>();

    /// A deadline that never expires: the end of time (`u64::MAX`
    /// nanoseconds). Its [`remaining`](Self::remaining) time is
    /// [`Duration::MAX`].
    pub const NEVER: Deadline = Deadline(Timestamp::from_nanos(u64::MAX));

    /// `timeout` from now on `clock` (reads the clock once), saturating at
    /// [`Deadline::NEVER`].
    pub fn after<C: Clock + ?Sized>(clock: &C, timeout: Duration) -> Deadline {
        Deadline(clock.now().saturating_add(timeout))
    }

    /// A deadline at `timestamp` (of the clock it will be checked against).
    pub const fn at(timestamp: Timestamp) -> Deadline {
        Deadline(timestamp)
    }

    /// When it expires.
    pub const fn expires_at(&self) -> Timestamp {
        self.0
    }

    /// `true` for [`Deadline::NEVER`] (and deadlines saturated to it).
    pub const fn is_never(&self) -> bool {
        self.0.as_nanos() == u64::MAX
    }

    /// Time left on `clock`: zero once the deadline has passed,
    /// [`Duration::MAX`] for [`Deadline::NEVER`]. Never panics; a clock
    /// that stepped backwards just leaves more time.
    pub fn remaining<C: Clock + ?Sized>(&self, clock: &C) -> Duration {
        if self.is_never() {
            return Duration::MAX;
        }
        self.0.saturating_duration_since(clock.now())
    }

    /// `true` once `clock` has reached the deadline (so exactly when
    /// [`remaining`](Self::remaining) is zero). [`Deadline::NEVER`] never
    /// expires.
    pub fn is_expired<C: Clock + ?Sized>(&self, clock: &C) -> bool {
        !self.is_never() && clock.now() >= self.0
    }

    /// The earlier of two deadlines.
    pub const fn min(self, other: Deadline) -> Deadline {
        if other.0.as_nanos() < self.0.as_nanos() {
            other
        } else {
            self
        }
    }
}

/// Timeout options.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::deadline::TimeoutConfig;
///
/// let config = TimeoutConfig::new(Duration::from_millis(250))?;
/// assert_eq!(config.timeout, Duration::from_millis(250));
/// assert!(TimeoutConfig::new(Duration::ZERO).is_err());
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeoutConfig {
    /// How long an operation may take (spec `timeoutMs`, default 5000 ms).
    /// Must be greater than zero; values too long to represent give
    /// deadlines that never expire.
    pub timeout: Duration,
}

impl TimeoutConfig {
    /// The spec's default: 5000 ms.
    pub const DEFAULT: TimeoutConfig = TimeoutConfig {
        timeout: Duration::from_millis(5000),
    };

    /// A validated config.
    ///
    /// # Errors
    ///
    /// `timeout`: [`Zero`](crate::ConfigProblem::Zero).
    pub const fn new(timeout: Duration) -> Result<TimeoutConfig, ConfigError> {
        let config = TimeoutConfig { timeout };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }

    /// Checks the options (for configs built from the `pub` fields).
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.timeout.is_zero() {
            return Err(ConfigError::zero(
                ConfigOption::Timeout,
                ConfigValue::Duration(self.timeout),
            ));
        }
        Ok(())
    }

    /// The deadline of an operation starting now on `clock`.
    pub fn deadline<C: Clock + ?Sized>(&self, clock: &C) -> Deadline {
        Deadline::after(clock, self.timeout)
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        TimeoutConfig::DEFAULT
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn default_is_the_spec_value() {
        assert_eq!(TimeoutConfig::default().timeout, MS(5000));
        assert_eq!(TimeoutConfig::DEFAULT.validate(), Ok(()));
        assert_eq!(TimeoutConfig::new(MS(5000)), Ok(TimeoutConfig::DEFAULT));
    }

    #[test]
    fn zero_timeout_is_rejected() {
        let e = ConfigError::zero(ConfigOption::Timeout, ConfigValue::Duration(Duration::ZERO));
        assert_eq!(TimeoutConfig::new(Duration::ZERO), Err(e));
        assert_eq!(
            TimeoutConfig {
                timeout: Duration::ZERO
            }
            .validate(),
            Err(e)
        );
        assert!(TimeoutConfig::new(Duration::from_nanos(1)).is_ok());
        const C: Result<TimeoutConfig, ConfigError> = TimeoutConfig::new(Duration::MAX);
        assert!(C.is_ok());
    }

    #[test]
    fn counts_down_and_expires() {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(100));
        let d = Deadline::after(&clock, MS(10));
        assert_eq!(d.expires_at().as_nanos(), 100 + 10_000_000);
        assert_eq!(d.remaining(&clock), MS(10));
        clock.advance(MS(4));
        assert_eq!(d.remaining(&clock), MS(6));
        assert!(!d.is_expired(&clock));
        clock.advance(MS(6) - Duration::from_nanos(1));
        assert_eq!(d.remaining(&clock), Duration::from_nanos(1));
        assert!(!d.is_expired(&clock));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(d.remaining(&clock), Duration::ZERO);
        assert!(d.is_expired(&clock));
        clock.advance(Duration::from_secs(1_000));
        assert_eq!(d.remaining(&clock), Duration::ZERO);
        assert!(d.is_expired(&clock));
    }

    #[test]
    fn backwards_clock_only_adds_time() {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(1_000_000));
        let d = TimeoutConfig::new(MS(1)).expect("valid").deadline(&clock);
        clock.advance(MS(5));
        assert!(d.is_expired(&clock));
        clock.set(Timestamp::ZERO);
        assert_eq!(d.remaining(&clock), MS(2));
        assert!(!d.is_expired(&clock));
    }

    #[test]
    fn saturates_to_never() {
        let clock = ManualClock::starting_at(Timestamp::from_nanos(u64::MAX - 5));
        let d = Deadline::after(&clock, MS(1));
        assert_eq!(d, Deadline::NEVER);
        assert!(d.is_never());
        assert!(!d.is_expired(&clock));
        assert_eq!(d.remaining(&clock), Duration::MAX);
        clock.advance(Duration::MAX);
        assert!(!Deadline::NEVER.is_expired(&clock));
        let d = Deadline::after(&ManualClock::new(), Duration::MAX);
        assert!(d.is_never());
        // A deadline one nanosecond short of the end of time still expires.
        let d = Deadline::at(Timestamp::from_nanos(u64::MAX - 1));
        assert!(!d.is_never());
        assert!(d.is_expired(&clock));
        assert_eq!(d.remaining(&clock), Duration::ZERO);
    }

    #[test]
    fn ordering_and_min() {
        let a = Deadline::at(Timestamp::from_nanos(5));
        let b = Deadline::at(Timestamp::from_nanos(9));
        assert!(a < b && b < Deadline::NEVER);
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        assert_eq!(Deadline::NEVER.min(b), b);
        assert_eq!(a.min(a), a);
    }

    #[test]
    fn size() {
        assert_eq!(core::mem::size_of::<Deadline>(), 8);
    }
}
