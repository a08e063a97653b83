//! Retry delays: exponential backoff with a cap, optional jitter, an attempt
//! limit and an optional total time budget.
//!
//! [`Backoff`] is a pure calculator. It never sleeps and never reads a
//! clock: the caller (the blocking retry loop, a firmware task, a binding)
//! measures the time its attempts took and asks for the next delay.
//!
//! - [`Backoff::delay`] is the base delay before retry number `n`
//!   (1-based), without jitter: `min(initial_delay * backoff_factor^(n-1),
//!   max_delay)`, computed without overflow for every `n`.
//! - [`Backoff::schedule`] starts a [`BackoffSchedule`], a small `Copy`
//!   state that hands out the delays of one operation (with jitter from a
//!   seeded [`SplitMix64`], so a seed always gives the same delays) until
//!   the attempts or the time budget run out.
//!
//! # Jitter
//!
//! The [`Jitter`] variants follow the AWS Architecture Blog post
//! "Exponential Backoff And Jitter". With `base` the un-jittered delay of
//! the retry and `cap` = `max_delay`:
//!
//! | variant        | delay                                              |
//! |----------------|----------------------------------------------------|
//! | `None`         | `base`                                             |
//! | `Full`         | `random_between(0, base)`                          |
//! | `Equal`        | `base/2 + random_between(0, base/2)`               |
//! | `Decorrelated` | `min(cap, random_between(initial_delay, prev * 3))`, `prev` starting at `initial_delay` |
//!
//! Every jittered delay lies in `[0, max_delay]`. Decorrelated jitter grows
//! by its own rule and ignores `backoff_factor`.
//!
//! # Examples
//!
//! A retry loop; the clock is a [`ManualClock`](crate::clock::ManualClock)
//! standing in for real time, and the operation fails every time.
//!
//! ```
//! use core::time::Duration;
//! use stockade::backoff::{Backoff, BackoffConfig};
//! use stockade::clock::{Clock, ManualClock};
//!
//! let backoff = Backoff::new(BackoffConfig::DEFAULT.with_max_attempts(4))?;
//! let clock = ManualClock::new();
//! let start = clock.now();
//!
//! let mut schedule = backoff.schedule(0x5eed);
//! let mut slept = Vec::new();
//! loop {
//!     let failed = true; // run the operation here
//!     if !failed {
//!         break;
//!     }
//!     let elapsed = clock.now().saturating_duration_since(start);
//!     match schedule.next_delay(elapsed) {
//!         Some(delay) => {
//!             slept.push(delay);
//!             clock.advance(delay); // sleep here
//!         }
//!         None => break, // give up
//!     }
//! }
//! assert_eq!(slept, [1, 2, 4].map(Duration::from_secs));
//! assert_eq!(schedule.attempts_made(), 4);
//! # Ok::<(), stockade::ConfigError>(())
//! ```

use core::time::Duration;

use crate::clock::duration_to_nanos_saturating;
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};

/// How delays are randomised (AWS Architecture Blog definitions; see the
/// [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Jitter {
    /// No randomness: the base exponential delay.
    #[default]
    None = 0,
    /// Uniform in `[0, base]`.
    Full = 1,
    /// Uniform in `[base/2, base]`.
    Equal = 2,
    /// `min(max_delay, uniform in [initial_delay, 3 * previous delay])`.
    /// With a zero `initial_delay` every delay is zero.
    Decorrelated = 3,
}

/// Backoff options.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::backoff::{BackoffConfig, Jitter};
///
/// let config = BackoffConfig::DEFAULT
///     .with_initial_delay(Duration::from_millis(100))
///     .with_max_elapsed(Some(Duration::from_secs(10)))
///     .with_jitter(Jitter::Full);
/// assert_eq!(config.max_attempts, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry (spec `initialDelay`, default 1 s).
    /// Zero is allowed: retry at once (every base delay is then zero).
    pub initial_delay: Duration,
    /// Multiplier between consecutive base delays (spec `backoffFactor`,
    /// default 2.0). Must be finite and at least 1.0.
    pub backoff_factor: f64,
    /// Cap on every delay (spec `maxDelay`, default 30 s). Must not be less
    /// than `initial_delay`.
    pub max_delay: Duration,
    /// Total attempts, the first one included (spec `maxAttempts`,
    /// default 3): at most `max_attempts - 1` delays. Must be at least 1.
    pub max_attempts: u32,
    /// Optional total time budget (no spec counterpart, default `None`):
    /// a delay is handed out only if `elapsed + delay <= max_elapsed`.
    /// Must not be zero.
    pub max_elapsed: Option<Duration>,
    /// Randomisation of delays (no spec counterpart, default
    /// [`Jitter::None`]).
    pub jitter: Jitter,
}

impl BackoffConfig {
    /// The spec's defaults: 1 s initial delay, factor 2, 30 s cap, 3
    /// attempts; no budget, no jitter.
    pub const DEFAULT: BackoffConfig = BackoffConfig {
        initial_delay: Duration::from_secs(1),
        backoff_factor: 2.0,
        max_delay: Duration::from_secs(30),
        max_attempts: 3,
        max_elapsed: None,
        jitter: Jitter::None,
    };

    /// This config with `initial_delay` set.
    pub const fn with_initial_delay(self, initial_delay: Duration) -> BackoffConfig {
        BackoffConfig {
            initial_delay,
            ..self
        }
    }

    /// This config with `backoff_factor` set.
    pub const fn with_backoff_factor(self, backoff_factor: f64) -> BackoffConfig {
        BackoffConfig {
            backoff_factor,
            ..self
        }
    }

    /// This config with `max_delay` set.
    pub const fn with_max_delay(self, max_delay: Duration) -> BackoffConfig {
        BackoffConfig { max_delay, ..self }
    }

    /// This config with `max_attempts` set.
    pub const fn with_max_attempts(self, max_attempts: u32) -> BackoffConfig {
        BackoffConfig {
            max_attempts,
            ..self
        }
    }

    /// This config with `max_elapsed` set.
    pub const fn with_max_elapsed(self, max_elapsed: Option<Duration>) -> BackoffConfig {
        BackoffConfig {
            max_elapsed,
            ..self
        }
    }

    /// This config with `jitter` set.
    pub const fn with_jitter(self, jitter: Jitter) -> BackoffConfig {
        BackoffConfig { jitter, ..self }
    }
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig::DEFAULT
    }
}

impl Jitter {
    /// The jitter kind numbered `n` (its discriminant), if there is one.
    pub const fn from_u8(n: u8) -> Option<Jitter> {
        match n {
            0 => Some(Jitter::None),
            1 => Some(Jitter::Full),
            2 => Some(Jitter::Equal),
            3 => Some(Jitter::Decorrelated),
            _ => None,
        }
    }
}

/// [`BackoffConfig`] as plain integers, for C and other callers that
/// cannot build a `Duration` or an `Option`.
///
/// Durations are whole milliseconds; `max_elapsed_ms == 0` means "no time
/// budget"; `jitter` is a [`Jitter`] discriminant. Convert with
/// `BackoffConfig::try_from(raw)`, which validates it like
/// [`Backoff::new`].
///
/// # Examples
///
/// ```
/// use stockade::backoff::{BackoffConfig, Jitter, RawBackoffConfig};
///
/// let raw = RawBackoffConfig { max_attempts: 5, jitter: Jitter::Full as u8, ..RawBackoffConfig::DEFAULT };
/// let config = BackoffConfig::try_from(raw)?;
/// assert_eq!((config.max_attempts, config.jitter), (5, Jitter::Full));
/// assert_eq!(config.to_raw(), raw);
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct RawBackoffConfig {
    /// [`BackoffConfig::initial_delay`] in milliseconds (default 1000).
    pub initial_delay_ms: u64,
    /// [`BackoffConfig::max_delay`] in milliseconds (default 30 000).
    pub max_delay_ms: u64,
    /// [`BackoffConfig::max_elapsed`] in milliseconds; 0 for none (the default).
    pub max_elapsed_ms: u64,
    /// [`BackoffConfig::backoff_factor`] (default 2.0).
    pub backoff_factor: f64,
    /// [`BackoffConfig::max_attempts`] (default 3).
    pub max_attempts: u32,
    /// [`BackoffConfig::jitter`] as its discriminant (default 0, none).
    pub jitter: u8,
}

impl RawBackoffConfig {
    /// The spec's defaults, as [`BackoffConfig::DEFAULT`].
    pub const DEFAULT: RawBackoffConfig = BackoffConfig::DEFAULT.to_raw();
}

impl Default for RawBackoffConfig {
    fn default() -> Self {
        RawBackoffConfig::DEFAULT
    }
}

impl BackoffConfig {
    /// The plain-integer form. Durations are truncated to whole
    /// milliseconds (saturating at `u64::MAX`).
    pub const fn to_raw(&self) -> RawBackoffConfig {
        RawBackoffConfig {
            initial_delay_ms: crate::time::duration_to_millis_saturating(self.initial_delay),
            max_delay_ms: crate::time::duration_to_millis_saturating(self.max_delay),
            max_elapsed_ms: match self.max_elapsed {
                Some(d) => crate::time::duration_to_millis_saturating(d),
                None => 0,
            },
            backoff_factor: self.backoff_factor,
            max_attempts: self.max_attempts,
            jitter: self.jitter as u8,
        }
    }

    /// Converts and validates a plain-integer config (as
    /// `BackoffConfig::try_from`, but `const`).
    ///
    /// # Errors
    ///
    /// As [`Backoff::new`], and `jitter` [`Invalid`](ConfigProblem::Invalid)
    /// for an unknown discriminant.
    pub const fn from_raw(raw: RawBackoffConfig) -> Result<BackoffConfig, ConfigError> {
        let jitter = match Jitter::from_u8(raw.jitter) {
            Some(j) => j,
            None => {
                return Err(ConfigError::new(
                    ConfigOption::Jitter,
                    ConfigValue::Count(raw.jitter as u64),
                    ConfigProblem::Invalid,
                ));
            }
        };
        let config = BackoffConfig {
            initial_delay: Duration::from_millis(raw.initial_delay_ms),
            backoff_factor: raw.backoff_factor,
            max_delay: Duration::from_millis(raw.max_delay_ms),
            max_attempts: raw.max_attempts,
            max_elapsed: if raw.max_elapsed_ms == 0 {
                None
            } else {
                Some(Duration::from_millis(raw.max_elapsed_ms))
            },
            jitter,
        };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }

    /// Checks every option (see [`Backoff::new`]).
    ///
    /// # Errors
    ///
    /// As [`Backoff::new`].
    pub const fn validate(&self) -> Result<(), ConfigError> {
        match Backoff::new(*self) {
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl TryFrom<RawBackoffConfig> for BackoffConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBackoffConfig) -> Result<Self, ConfigError> {
        BackoffConfig::from_raw(raw)
    }
}

/// A validated backoff policy: a pure delay calculator (plain data, `Copy`).
///
/// Durations are kept in whole nanoseconds, saturating at `u64::MAX`
/// (584 years, i.e. forever).
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::backoff::{Backoff, BackoffConfig};
///
/// let backoff = Backoff::default();
/// let secs: Vec<u64> = (1..=7).map(|n| backoff.delay(n).as_secs()).collect();
/// assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
/// assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(30));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Backoff {
    initial_nanos: u64,
    max_nanos: u64,
    factor: f64,
    /// Meaningful only when `has_budget`.
    budget_nanos: u64,
    max_attempts: u32,
    has_budget: bool,
    jitter: Jitter,
}

impl Backoff {
    /// `size_of::<Backoff>()`: the bytes C must provide to hold one.
    pub const SIZE: usize = core::mem::size_of::<Backoff>();
    /// `align_of::<Backoff>()`: the alignment C must provide.
    pub const ALIGN: usize = core::mem::align_of::<Backoff>();

    /// A validated policy.
    ///
    /// # Errors
    ///
    /// - `backoff_factor`: [`NotFinite`](ConfigProblem::NotFinite) for NaN
    ///   or ±∞; [`TooSmall`](ConfigProblem::TooSmall) below 1.0;
    /// - `initial_delay`: [`Exceeds`](ConfigProblem::Exceeds) `max_delay`;
    /// - `max_attempts`: [`Zero`](ConfigProblem::Zero);
    /// - `max_elapsed`: [`Zero`](ConfigProblem::Zero) for `Some(0)`.
    pub const fn new(config: BackoffConfig) -> Result<Backoff, ConfigError> {
        let factor = config.backoff_factor;
        if !factor.is_finite() {
            return Err(ConfigError::new(
                ConfigOption::BackoffFactor,
                ConfigValue::Factor(factor),
                ConfigProblem::NotFinite,
            ));
        }
        if factor < 1.0 {
            return Err(ConfigError::new(
                ConfigOption::BackoffFactor,
                ConfigValue::Factor(factor),
                ConfigProblem::TooSmall {
                    min: ConfigValue::Factor(1.0),
                },
            ));
        }
        let initial = duration_to_nanos_saturating(config.initial_delay);
        let max = duration_to_nanos_saturating(config.max_delay);
        if max < initial {
            return Err(ConfigError::new(
                ConfigOption::InitialDelay,
                ConfigValue::Duration(config.initial_delay),
                ConfigProblem::Exceeds {
                    other: ConfigOption::MaxDelay,
                    limit: ConfigValue::Duration(config.max_delay),
                },
            ));
        }
        if config.max_attempts == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxAttempts,
                ConfigValue::Count(0),
            ));
        }
        if let Some(budget) = config.max_elapsed {
            if budget.is_zero() {
                return Err(ConfigError::zero(
                    ConfigOption::MaxElapsed,
                    ConfigValue::Duration(budget),
                ));
            }
        }
        Ok(Backoff::from_valid(config))
    }

    /// Builds without validating; `config` must be valid.
    const fn from_valid(config: BackoffConfig) -> Backoff {
        let (has_budget, budget) = match config.max_elapsed {
            Some(d) => (true, d),
            None => (false, Duration::ZERO),
        };
        Backoff {
            initial_nanos: duration_to_nanos_saturating(config.initial_delay),
            max_nanos: duration_to_nanos_saturating(config.max_delay),
            factor: config.backoff_factor,
            budget_nanos: duration_to_nanos_saturating(budget),
            max_attempts: config.max_attempts,
            has_budget,
            jitter: config.jitter,
        }
    }

    /// The configuration (durations as stored: whole nanoseconds,
    /// saturating at `u64::MAX`).
    pub const fn config(&self) -> BackoffConfig {
        BackoffConfig {
            initial_delay: Duration::from_nanos(self.initial_nanos),
            backoff_factor: self.factor,
            max_delay: Duration::from_nanos(self.max_nanos),
            max_attempts: self.max_attempts,
            max_elapsed: if self.has_budget {
                Some(Duration::from_nanos(self.budget_nanos))
            } else {
                None
            },
            jitter: self.jitter,
        }
    }

    /// The base delay (no jitter) before retry number `retry`, 1-based:
    /// `min(initial_delay * backoff_factor^(retry - 1), max_delay)`.
    ///
    /// Retry 0 is treated as retry 1. Any `u32` is fine: the power is
    /// computed by squaring in at most 32 steps and saturates at the cap.
    /// The result never decreases as `retry` grows.
    pub const fn delay(&self, retry: u32) -> Duration {
        Duration::from_nanos(self.delay_nanos(retry))
    }

    const fn delay_nanos(&self, retry: u32) -> u64 {
        let init = self.initial_nanos;
        let max = self.max_nanos;
        let mut n = retry.saturating_sub(1);
        if n == 0 || init == 0 || self.factor <= 1.0 {
            return init;
        }
        // Right-to-left exponentiation by squaring. With factor >= 1 and
        // round-to-nearest (monotone) multiplication the result is monotone
        // in `n`: the product of the squares for the low bits `0..k` of
        // `n` never exceeds the square for bit `k` that `n + 1` uses
        // instead. Overflow goes to +inf, which the cap absorbs.
        let mut power = 1.0f64;
        let mut square = self.factor;
        loop {
            if n & 1 == 1 {
                power *= square;
            }
            n >>= 1;
            if n == 0 || power == f64::INFINITY {
                break;
            }
            square *= square;
        }
        let scaled = init as f64 * power;
        if scaled >= max as f64 {
            return max;
        }
        // Float -> int casts saturate. Clamp into [init, max]: `init as
        // f64` may have rounded below `init` for delays over 2^53 ns.
        let nanos = scaled as u64;
        if nanos > max {
            max
        } else if nanos < init {
            init
        } else {
            nanos
        }
    }

    /// Starts the delays of one operation; `seed` drives the jitter (the
    /// same seed gives the same delays). Without jitter the seed is unused.
    pub const fn schedule(&self, seed: u64) -> BackoffSchedule {
        BackoffSchedule {
            backoff: *self,
            rng: SplitMix64::new(seed),
            prev_nanos: self.initial_nanos,
            attempts: 0,
            done: false,
        }
    }
}

impl Default for Backoff {
    /// A policy with [`BackoffConfig::DEFAULT`].
    fn default() -> Self {
        Backoff::from_valid(BackoffConfig::DEFAULT)
    }
}

/// The delays of one operation under a [`Backoff`]: a small `Copy` state,
/// deterministic for its seed.
///
/// Call [`next_delay`](Self::next_delay) after each failed attempt. Once it
/// returns `None` it always does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffSchedule {
    backoff: Backoff,
    rng: SplitMix64,
    /// The previous delay (decorrelated jitter), starting at
    /// `initial_delay`.
    prev_nanos: u64,
    attempts: u32,
    done: bool,
}

impl BackoffSchedule {
    /// `size_of::<BackoffSchedule>()`: the bytes C must provide to hold one.
    pub const SIZE: usize = core::mem::size_of::<BackoffSchedule>();
    /// `align_of::<BackoffSchedule>()`: the alignment C must provide.
    pub const ALIGN: usize = core::mem::align_of::<BackoffSchedule>();

    /// Records that an attempt failed, `elapsed` after the operation began,
    /// and returns how long to wait before the next attempt — or `None` to
    /// give up: `max_attempts` attempts have been made, or the delay would
    /// end past the budget.
    ///
    /// **The budget includes the sleep:** a delay is handed out only if
    /// `elapsed + delay <= max_elapsed`; otherwise the schedule stops (it
    /// does not clip the delay, since an attempt started at the very end of
    /// the budget would overrun it anyway).
    pub fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        self.next_delay_at_least(elapsed, Duration::ZERO)
    }

    /// [`next_delay`](Self::next_delay) with a floor: the delay is at least
    /// `at_least` (for example the `retry_after` of a refusal that said
    /// when to come back), and the budget applies to that longer delay.
    /// The jitter's own sequence is not moved by the floor.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::backoff::{Backoff, BackoffConfig};
    ///
    /// let backoff = Backoff::new(
    ///     BackoffConfig::DEFAULT.with_max_elapsed(Some(Duration::from_secs(10))),
    /// )?;
    /// let mut schedule = backoff.schedule(0);
    /// // The schedule's own first delay is 1 s; the floor makes it 3 s.
    /// let floor = Duration::from_secs(3);
    /// assert_eq!(schedule.next_delay_at_least(Duration::ZERO, floor), Some(floor));
    /// // A floor that would end past the 10 s budget stops the schedule.
    /// assert_eq!(schedule.next_delay_at_least(Duration::from_secs(4), Duration::from_secs(7)), None);
    /// assert!(schedule.is_exhausted());
    /// # Ok::<(), stockade::error::ConfigError>(())
    /// ```
    pub fn next_delay_at_least(
        &mut self,
        elapsed: Duration,
        at_least: Duration,
    ) -> Option<Duration> {
        if self.done {
            return None;
        }
        self.attempts = self.attempts.saturating_add(1);
        if self.attempts >= self.backoff.max_attempts {
            self.done = true;
            return None;
        }
        // The retry about to happen is number `attempts` (1-based).
        let base = self.backoff.delay_nanos(self.attempts);
        let nanos = match self.backoff.jitter {
            Jitter::None => base,
            Jitter::Full => self.rng.between(0, base),
            Jitter::Equal => {
                let half = base / 2;
                (base - half) + self.rng.between(0, half)
            }
            Jitter::Decorrelated => {
                let hi = self.prev_nanos.saturating_mul(3);
                let d = self.rng.between(self.backoff.initial_nanos, hi);
                let d = if d > self.backoff.max_nanos {
                    self.backoff.max_nanos
                } else {
                    d
                };
                self.prev_nanos = d;
                d
            }
        };
        let nanos = nanos.max(duration_to_nanos_saturating(at_least));
        if self.backoff.has_budget
            && duration_to_nanos_saturating(elapsed).saturating_add(nanos)
                > self.backoff.budget_nanos
        {
            self.done = true;
            return None;
        }
        Some(Duration::from_nanos(nanos))
    }

    /// Failed attempts recorded so far (calls to
    /// [`next_delay`](Self::next_delay) before it first returned `None`,
    /// that call included).
    pub const fn attempts_made(&self) -> u32 {
        self.attempts
    }

    /// `true` once [`next_delay`](Self::next_delay) has returned `None`.
    pub const fn is_exhausted(&self) -> bool {
        self.done
    }

    /// The policy.
    pub const fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

/// A tiny seedable pseudo-random generator (SplitMix64, Steele, Lea and
/// Flood 2014): 64 bits of state, no dependencies. Not cryptographic; good
/// enough to spread retries.
///
/// # Examples
///
/// ```
/// use stockade::backoff::SplitMix64;
///
/// let mut a = SplitMix64::new(7);
/// let mut b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.between(10, 20) <= 20);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed` (any value, zero included).
    pub const fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub const fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`), by multiply-high
    /// scaling (bias below 2^-64 per value).
    pub const fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let r = self.next_u64();
        let span = hi - lo;
        if span == u64::MAX {
            return r;
        }
        // r * (span + 1) / 2^64 < span + 1, so lo + it <= hi.
        lo + ((r as u128 * (span as u128 + 1)) >> 64) as u64
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn a_floor_lengthens_the_delay_without_moving_the_jitter() {
        for j in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let b = jittered(j);
            let (mut plain, mut floored) = (b.schedule(11), b.schedule(11));
            let floor = Duration::from_millis(700);
            for _ in 0..b.max_attempts {
                let base = plain.next_delay(Duration::ZERO);
                let with_floor = floored.next_delay_at_least(Duration::ZERO, floor);
                assert_eq!(with_floor, base.map(|d| d.max(floor)), "{j:?}");
            }
            assert!(floored.is_exhausted());
        }
    }

    #[test]
    fn raw_config_round_trips_and_validates_in_one_place() {
        assert_eq!(
            BackoffConfig::try_from(RawBackoffConfig::DEFAULT),
            Ok(BackoffConfig::DEFAULT)
        );
        let raw = RawBackoffConfig {
            initial_delay_ms: 250,
            max_delay_ms: 10_000,
            max_elapsed_ms: 60_000,
            backoff_factor: 1.5,
            max_attempts: 6,
            jitter: Jitter::Decorrelated as u8,
        };
        let config = BackoffConfig::try_from(raw).expect("valid");
        assert_eq!(config.max_elapsed, Some(Duration::from_secs(60)));
        assert_eq!(config.initial_delay, Duration::from_millis(250));
        assert_eq!(config.jitter, Jitter::Decorrelated);
        assert_eq!(config.to_raw(), raw);
        // 0 means "no budget".
        let none = BackoffConfig::try_from(RawBackoffConfig {
            max_elapsed_ms: 0,
            ..raw
        });
        assert_eq!(none.map(|c| c.max_elapsed), Ok(None));
        // The same validation as `Backoff::new`, naming the option.
        let err = BackoffConfig::try_from(RawBackoffConfig {
            max_attempts: 0,
            ..raw
        })
        .unwrap_err();
        assert_eq!(err.option, ConfigOption::MaxAttempts);
        let err = BackoffConfig::try_from(RawBackoffConfig { jitter: 4, ..raw }).unwrap_err();
        assert_eq!(err.to_string(), "invalid jitter = 4: is malformed");
        for j in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            assert_eq!(Jitter::from_u8(j as u8), Some(j));
        }
    }

    #[test]
    fn size_and_align_constants_match() {
        assert_eq!(Backoff::SIZE, core::mem::size_of::<Backoff>());
        assert_eq!(Backoff::ALIGN, core::mem::align_of::<Backoff>());
        assert_eq!(
            crate::budget::RetryBudget::SIZE,
            core::mem::size_of::<crate::budget::RetryBudget>()
        );
        assert_eq!(
            crate::budget::RetryBudget::ALIGN,
            core::mem::align_of::<crate::budget::RetryBudget>()
        );
        assert_eq!(crate::deadline::Deadline::SIZE, 8);
        assert_eq!(
            crate::deadline::Deadline::ALIGN,
            core::mem::align_of::<u64>()
        );
    }
    extern crate alloc;
    use alloc::vec::Vec;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn delays(backoff: &Backoff, seed: u64) -> Vec<Duration> {
        let mut s = backoff.schedule(seed);
        let mut out = Vec::new();
        while let Some(d) = s.next_delay(Duration::ZERO) {
            out.push(d);
        }
        out
    }

    #[test]
    fn defaults_are_the_spec_values() {
        let c = BackoffConfig::default();
        assert_eq!(c.initial_delay, Duration::from_millis(1000));
        assert_eq!(c.backoff_factor, 2.0);
        assert_eq!(c.max_delay, Duration::from_millis(30_000));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.max_elapsed, None);
        assert_eq!(c.jitter, Jitter::None);
        assert_eq!(Backoff::new(c), Ok(Backoff::default()));
        assert_eq!(Backoff::default().config(), c);
        // Three attempts: two delays.
        assert_eq!(delays(&Backoff::default(), 0), [S(1), S(2)]);
    }

    #[test]
    fn base_sequence_doubles_to_the_cap() {
        let b = Backoff::default();
        let got: Vec<Duration> = (1..=8).map(|n| b.delay(n)).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30].map(S));
        assert_eq!(b.delay(0), S(1));
        let b = Backoff::new(BackoffConfig::DEFAULT.with_max_attempts(8)).expect("valid");
        assert_eq!(delays(&b, 1), [1, 2, 4, 8, 16, 30, 30].map(S));
    }

    #[test]
    fn huge_retry_numbers_saturate() {
        let b = Backoff::default();
        for n in [33, 64, 1_000, 1 << 20, u32::MAX - 1, u32::MAX] {
            assert_eq!(b.delay(n), S(30), "retry {n}");
        }
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_backoff_factor(f64::MAX)
                .with_max_delay(Duration::MAX),
        )
        .expect("valid");
        assert_eq!(b.delay(1), S(1));
        assert_eq!(b.delay(2), Duration::from_nanos(u64::MAX));
        assert_eq!(b.delay(u32::MAX), Duration::from_nanos(u64::MAX));
        // A factor barely above one creeps up, monotonically.
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_backoff_factor(1.000_000_1)
                .with_max_delay(Duration::MAX),
        )
        .expect("valid");
        let mut last = Duration::ZERO;
        for n in (0..u32::MAX).step_by(9_999_991) {
            let d = b.delay(n);
            assert!(d >= last, "retry {n}: {d:?} < {last:?}");
            last = d;
        }
        assert_eq!(b.delay(u32::MAX), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn factor_one_is_constant() {
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_backoff_factor(1.0)
                .with_max_attempts(5),
        )
        .expect("valid");
        assert_eq!(delays(&b, 9), [S(1); 4]);
        assert_eq!(b.delay(u32::MAX), S(1));
        // Exact past 2^53 ns too, where `initial as f64` rounds (up, here).
        let initial = Duration::from_nanos((1 << 53) + 3);
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_initial_delay(initial)
                .with_max_delay(Duration::from_nanos(1 << 54))
                .with_backoff_factor(1.0),
        )
        .expect("valid");
        assert_eq!([b.delay(1), b.delay(2), b.delay(u32::MAX)], [initial; 3]);
    }

    #[test]
    fn fractional_factor_and_zero_initial() {
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_initial_delay(Duration::from_millis(100))
                .with_backoff_factor(1.5),
        )
        .expect("valid");
        assert_eq!(b.delay(2), Duration::from_millis(150));
        assert_eq!(b.delay(3), Duration::from_millis(225));
        let b = Backoff::new(BackoffConfig::DEFAULT.with_initial_delay(Duration::ZERO))
            .expect("zero initial delay is allowed");
        assert_eq!(b.delay(10), Duration::ZERO);
    }

    #[test]
    fn config_errors_name_the_option() {
        let d = BackoffConfig::DEFAULT;
        let err = |c: BackoffConfig| Backoff::new(c).unwrap_err();
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = err(d.with_backoff_factor(f));
            assert_eq!(
                (e.option, e.problem),
                (ConfigOption::BackoffFactor, ConfigProblem::NotFinite)
            );
        }
        for f in [0.999, 0.0, -2.0] {
            assert_eq!(
                err(d.with_backoff_factor(f)),
                ConfigError::new(
                    ConfigOption::BackoffFactor,
                    ConfigValue::Factor(f),
                    ConfigProblem::TooSmall {
                        min: ConfigValue::Factor(1.0)
                    }
                )
            );
        }
        assert_eq!(
            err(d.with_backoff_factor(0.5)).to_string(),
            "invalid backoff_factor = 0.5: must be at least 1"
        );
        // The option that is out of range is blamed, with both values.
        assert_eq!(
            err(d.with_initial_delay(Duration::MAX)).to_string(),
            "invalid initial_delay = 5124095576030431h 16s: must not exceed max_delay (= 30s)"
        );
        assert_eq!(
            err(d.with_max_delay(Duration::from_millis(999))),
            ConfigError::new(
                ConfigOption::InitialDelay,
                ConfigValue::Duration(S(1)),
                ConfigProblem::Exceeds {
                    other: ConfigOption::MaxDelay,
                    limit: ConfigValue::Duration(Duration::from_millis(999)),
                }
            )
        );
        assert_eq!(
            err(d.with_max_attempts(0)),
            ConfigError::zero(ConfigOption::MaxAttempts, ConfigValue::Count(0))
        );
        assert_eq!(
            err(d.with_max_elapsed(Some(Duration::ZERO))),
            ConfigError::zero(
                ConfigOption::MaxElapsed,
                ConfigValue::Duration(Duration::ZERO)
            )
        );
        // Boundary values are accepted.
        assert!(Backoff::new(d.with_max_delay(S(1))).is_ok());
        assert!(Backoff::new(d.with_max_attempts(1)).is_ok());
        assert!(Backoff::new(d.with_max_elapsed(Some(Duration::from_nanos(1)))).is_ok());
        // Durations past u64 nanoseconds saturate; so does the comparison.
        let b = Backoff::new(
            d.with_initial_delay(Duration::MAX)
                .with_max_delay(Duration::MAX),
        )
        .expect("valid");
        assert_eq!(b.config().initial_delay, Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn new_is_const() {
        const B: Result<Backoff, ConfigError> = Backoff::new(BackoffConfig::DEFAULT);
        assert!(B.is_ok());
        const D: Duration = Backoff::from_valid(BackoffConfig::DEFAULT).delay(3);
        assert_eq!(D, S(4));
    }

    #[test]
    fn one_attempt_means_no_delay() {
        let b = Backoff::new(BackoffConfig::DEFAULT.with_max_attempts(1)).expect("valid");
        let mut s = b.schedule(0);
        assert!(!s.is_exhausted(), "not before the first attempt");
        assert_eq!(s.next_delay(Duration::ZERO), None);
        assert_eq!(s.attempts_made(), 1);
        assert!(s.is_exhausted());
        assert_eq!(s.next_delay(Duration::ZERO), None);
        assert_eq!(s.attempts_made(), 1);
    }

    fn jittered(jitter: Jitter) -> Backoff {
        Backoff::new(
            BackoffConfig::DEFAULT
                .with_max_attempts(12)
                .with_jitter(jitter),
        )
        .expect("valid")
    }

    #[test]
    fn full_jitter_bounds() {
        let b = jittered(Jitter::Full);
        let mut below_half = false;
        for seed in 0..200 {
            for (i, d) in delays(&b, seed).into_iter().enumerate() {
                let base = b.delay(i as u32 + 1);
                assert!(d <= base, "seed {seed} retry {}: {d:?}", i + 1);
                below_half |= d < base / 2;
            }
        }
        assert!(below_half, "full jitter never went below half the base");
    }

    #[test]
    fn equal_jitter_bounds() {
        let b = jittered(Jitter::Equal);
        let mut distinct = false;
        for seed in 0..200 {
            for (i, d) in delays(&b, seed).into_iter().enumerate() {
                let base = b.delay(i as u32 + 1);
                assert!(d <= base && d >= base / 2, "seed {seed}: {d:?} vs {base:?}");
                distinct |= d != base;
            }
        }
        assert!(distinct);
    }

    #[test]
    fn decorrelated_jitter_bounds() {
        let b = jittered(Jitter::Decorrelated);
        let mut hit_cap = false;
        for seed in 0..200 {
            let mut prev = S(1);
            for d in delays(&b, seed) {
                assert!(d >= S(1) && d <= S(30), "seed {seed}: {d:?}");
                assert!(d <= prev * 3, "seed {seed}: {d:?} after {prev:?}");
                hit_cap |= d == S(30);
                prev = d;
            }
        }
        assert!(hit_cap);
    }

    #[test]
    fn jitter_is_deterministic_per_seed() {
        for j in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
            let b = jittered(j);
            assert_eq!(delays(&b, 42), delays(&b, 42));
            assert_ne!(delays(&b, 42), delays(&b, 43), "{j:?}");
        }
        // Pinned values: a change to the generator is a visible change.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        // Copies replay.
        let mut s = jittered(Jitter::Full).schedule(5);
        let mut t = s;
        assert_eq!(s.next_delay(S(0)), t.next_delay(S(0)));
    }

    #[test]
    fn between_covers_its_range() {
        let mut r = SplitMix64::new(1);
        let mut seen = [false; 4];
        for _ in 0..100 {
            let v = r.between(10, 13);
            assert!((10..=13).contains(&v));
            seen[(v - 10) as usize] = true;
        }
        assert_eq!(seen, [true; 4]);
        assert_eq!(r.between(5, 5), 5);
        assert_eq!(r.between(7, 3), 7);
        let _ = r.between(0, u64::MAX);
        assert!(r.between(u64::MAX - 1, u64::MAX) >= u64::MAX - 1);
    }

    #[test]
    fn budget_includes_the_sleep() {
        let b = Backoff::new(
            BackoffConfig::DEFAULT
                .with_max_attempts(10)
                .with_max_elapsed(Some(S(10))),
        )
        .expect("valid");
        let mut s = b.schedule(0);
        // elapsed 0 + 1 s fits; 1.5 + 2 fits; 4 + 4 = 8 fits; 9 + 8 > 10: stop.
        assert_eq!(s.next_delay(S(0)), Some(S(1)));
        assert_eq!(s.next_delay(Duration::from_millis(1500)), Some(S(2)));
        assert_eq!(s.next_delay(S(6)), Some(S(4)));
        assert_eq!(s.next_delay(S(9)), None);
        assert_eq!(s.attempts_made(), 4);
        assert_eq!(s.next_delay(S(0)), None, "stays exhausted");
        // Exactly on the budget is allowed.
        let mut s = b.schedule(0);
        assert_eq!(s.next_delay(S(9)), Some(S(1)));
        // Past the budget already.
        let mut s = b.schedule(0);
        assert_eq!(s.next_delay(S(11)), None);
        // Huge elapsed values saturate instead of overflowing.
        let mut s = b.schedule(0);
        assert_eq!(s.next_delay(Duration::MAX), None);
    }

    #[test]
    fn attempts_made_counts_failures() {
        let b = Backoff::default();
        let mut s = b.schedule(0);
        assert_eq!(s.attempts_made(), 0);
        assert!(s.next_delay(S(0)).is_some());
        assert_eq!(s.attempts_made(), 1);
        assert!(s.next_delay(S(0)).is_some());
        assert!(s.next_delay(S(0)).is_none());
        assert_eq!(s.attempts_made(), 3);
        assert_eq!(s.backoff(), &b);
    }

    #[test]
    fn sizes() {
        assert_eq!(core::mem::size_of::<Backoff>(), 40);
        assert_eq!(core::mem::size_of::<BackoffSchedule>(), 64);
    }
}
