//! Retry budget: a shared token bucket that caps how much extra load
//! retries may add, so a retry storm cannot amplify an outage.
//!
//! Every *call* (first attempt) deposits [`ratio`] tokens, every *retry*
//! withdraws one token, and [`min_retries_per_second`] tokens trickle in
//! with time whatever the traffic, so a quiet client can still retry. The
//! bucket holds at most [`max_tokens`] and starts full. Over any stretch of
//! time of length `W`, the retries a [`RetryBudget`] allows are therefore at
//! most
//!
//! ```text
//! max_tokens + ratio · calls + min_retries_per_second · W
//! ```
//!
//! — with the defaults (20 %, 10/s, 100) a service taking 1 000 calls a
//! second can add at most about 210 retries a second once its bucket is
//! drained, however badly its dependency fails. (This is Finagle's retry
//! budget, with a cap instead of a deposit time-to-live.)
//!
//! [`ratio`]: RetryBudgetConfig::ratio
//! [`min_retries_per_second`]: RetryBudgetConfig::min_retries_per_second
//! [`max_tokens`]: RetryBudgetConfig::max_tokens
//!
//! # The state word
//!
//! The whole state is **one** atomic [`Word`](#memory-layout): the time at
//! which the bucket will be full again — the *theoretical arrival time* of
//! GCRA, as in the [rate limiter](crate::limiter). Balances are counted in
//! fixed-point *units*; one token is [`token_units`](RetryBudget::token_units)
//! of them:
//!
//! * **With a floor** (`min_retries_per_second > 0`) a unit is one *tick* of
//!   time ([`resolution`](RetryBudget::resolution)) and a token is the time
//!   the floor takes to earn one retry, `1 s / min_retries_per_second`. The
//!   balance at `now` is `capacity - clamp(full_at - now, 0, capacity)`, so
//!   the floor refill is just time passing; a deposit moves `full_at` back
//!   by `ratio` tokens' worth of time (never before `now`), a retry moves
//!   it forward by one token. Every operation reads the clock once.
//! * **Without a floor** the balance does not depend on time and the clock
//!   is never read; a token is 1000 units (so `ratio` is kept to a
//!   thousandth) and the word holds `capacity - balance`.
//!
//! Each operation is one load and at most one compare-and-swap; a deposit
//! into a full bucket and a refused withdrawal write nothing.
//!
//! `ratio` is rounded to the nearest unit (an error below 0.1 % of a
//! token); the floor's token time is rounded *up* to whole units, so the
//! floor never refills faster than configured.
//!
//! # Time, ticks and the wrap
//!
//! * **64-bit layout:** a tick is one nanosecond and `full_at` is compared
//!   in plain order, so the budget is exact for any clock movement. A clock
//!   that steps backwards reads the state at the earlier time against the
//!   same `full_at` (never clamped): fewer tokens while it is behind, and
//!   nothing gained when it comes back, so the bound above holds with `W`
//!   measured to the latest time seen. At the very end of the clock's
//!   range (within `capacity` of `u64::MAX` ns, 584 years) the floor stops
//!   refilling.
//! * **32-bit layout:** the tick is the coarsest power of two nanoseconds
//!   that keeps at least 1000 ticks per token (so `ratio` keeps its
//!   thousandths), and `max_tokens` is limited to [`MAX_TOKENS`] (2^18), so
//!   the capacity stays below 2^29 ticks, an eighth of the wrap. The word
//!   wraps after [`wrap_period`](RetryBudget::wrap_period) (78 hours with
//!   the defaults). A `full_at` that appears more than `2·capacity` ahead
//!   of now is stale and read as a full bucket; deposits into a full bucket
//!   refresh a `full_at` that fell an eighth of the wrap behind. The corner
//!   that remains is conservative: a budget left idle (no call at all) for
//!   close to a multiple of the wrap period may see up to `2·capacity` of
//!   time as spent (fewer retries, never more) until time moves on by that
//!   much. A backwards step up to `capacity` behaves as with the 64-bit
//!   layout; a larger one is indistinguishable from a wrap and may grant up
//!   to one extra bucket.
//!
//! # Memory layout
//!
//! [`RetryBudget`] is `#[repr(C)]` plain data — one atomic word plus
//! configuration numbers, no pointers — so it can live in a `static` or in
//! memory shared between processes (with a clock they share).
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::budget::{RetryBudget, RetryBudgetConfig};
//! use stockade::clock::ManualClock;
//!
//! // 50 % of calls may be retried, no floor, at most 2 tokens banked.
//! static BUDGET: RetryBudget = match RetryBudget::new(
//!     RetryBudgetConfig::DEFAULT
//!         .with_ratio(0.5)
//!         .with_min_retries_per_second(0)
//!         .with_max_tokens(2),
//! ) {
//!     Ok(b) => b,
//!     Err(_) => panic!("invalid budget"),
//! };
//! let clock = ManualClock::new(); // not read without a floor
//!
//! // The bucket starts full: two retries may go at once...
//! assert!(BUDGET.try_withdraw(&clock).is_ok());
//! assert!(BUDGET.try_withdraw(&clock).is_ok());
//! // ...then a retry needs two calls' deposits.
//! let refused = BUDGET.try_withdraw(&clock).unwrap_err();
//! assert_eq!(refused.retry_after(), None); // no floor: time alone never helps
//! BUDGET.deposit(&clock);
//! assert!(BUDGET.try_withdraw(&clock).is_err());
//! BUDGET.deposit(&clock);
//! assert!(BUDGET.try_withdraw(&clock).is_ok());
//! ```

use core::fmt;
use core::time::Duration;

use crate::clock::Clock;
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
use crate::sync::{self, AtomicWord, Ordering, WIDE, WORD_BITS, Word, const_fn_unless_loom};

/// Units per token without a floor (and the least with one): `ratio` is kept
/// to a thousandth of a token.
const TOKEN_SCALE: u64 = 1000;

/// The largest `max_tokens`: `u32::MAX` with the 64-bit layout, 2^18 with
/// the 32-bit layout (so the capacity stays below 2^29 ticks).
pub const MAX_TOKENS: u32 = if WIDE { u32::MAX } else { 1 << 18 };

/// The largest `min_retries_per_second`: one million (a token of 1000
/// nanoseconds, the finest that keeps `ratio` to a thousandth).
pub const MAX_MIN_RETRIES_PER_SECOND: u32 = 1_000_000;

/// A `full_at` within this distance behind now is fresh (32-bit layout).
const FRESH: Word = 1 << (WORD_BITS - 3);

/// Retry budget options.
///
/// # Examples
///
/// ```
/// use stockade::budget::RetryBudgetConfig;
///
/// let config = RetryBudgetConfig::DEFAULT.with_ratio(0.1).with_max_tokens(20);
/// assert_eq!(config.min_retries_per_second, 10);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct RetryBudgetConfig {
    /// Tokens each call (first attempt) deposits: the share of calls that
    /// may be retried on average (default 0.2: retries add at most 20 %
    /// load). Must be finite and not negative; kept to a thousandth of a
    /// token. Zero means only the floor and the initial bucket allow
    /// retries. Values above `max_tokens` fill the bucket in one call.
    pub ratio: f64,
    /// Retries per second allowed whatever the traffic (default 10), so a
    /// client with few calls can still retry. Zero disables the floor (and
    /// the budget never reads the clock). At most
    /// [`MAX_MIN_RETRIES_PER_SECOND`].
    pub min_retries_per_second: u32,
    /// Most tokens the bucket holds, and its initial balance (default 100):
    /// the largest burst of retries. Must be at least 1; at most
    /// [`MAX_TOKENS`].
    pub max_tokens: u32,
}

impl RetryBudgetConfig {
    /// The defaults: 20 % of calls, a floor of 10 retries a second, 100
    /// tokens (Finagle's defaults, with its 10 s deposit lifetime turned
    /// into the cap).
    pub const DEFAULT: RetryBudgetConfig = RetryBudgetConfig {
        ratio: 0.2,
        min_retries_per_second: 10,
        max_tokens: 100,
    };

    /// This config with `ratio` set.
    pub const fn with_ratio(self, ratio: f64) -> RetryBudgetConfig {
        RetryBudgetConfig { ratio, ..self }
    }

    /// This config with `min_retries_per_second` set.
    pub const fn with_min_retries_per_second(
        self,
        min_retries_per_second: u32,
    ) -> RetryBudgetConfig {
        RetryBudgetConfig {
            min_retries_per_second,
            ..self
        }
    }

    /// This config with `max_tokens` set.
    pub const fn with_max_tokens(self, max_tokens: u32) -> RetryBudgetConfig {
        RetryBudgetConfig { max_tokens, ..self }
    }

    /// Checks every option (see [`RetryBudget::new`]).
    ///
    /// # Errors
    ///
    /// As [`RetryBudget::new`].
    pub const fn validate(&self) -> Result<(), ConfigError> {
        let ratio = ConfigValue::Factor(self.ratio);
        if !self.ratio.is_finite() {
            return Err(ConfigError::new(
                ConfigOption::BudgetRatio,
                ratio,
                ConfigProblem::NotFinite,
            ));
        }
        if self.ratio < 0.0 {
            return Err(ConfigError::new(
                ConfigOption::BudgetRatio,
                ratio,
                ConfigProblem::TooSmall {
                    min: ConfigValue::Factor(0.0),
                },
            ));
        }
        if self.min_retries_per_second > MAX_MIN_RETRIES_PER_SECOND {
            return Err(ConfigError::count_above(
                ConfigOption::MinRetriesPerSecond,
                self.min_retries_per_second as u64,
                MAX_MIN_RETRIES_PER_SECOND as u64,
            ));
        }
        if self.max_tokens == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxTokens,
                ConfigValue::Count(0),
            ));
        }
        if self.max_tokens as u64 > MAX_TOKENS as u64 {
            return Err(ConfigError::count_above(
                ConfigOption::MaxTokens,
                self.max_tokens as u64,
                MAX_TOKENS as u64,
            ));
        }
        Ok(())
    }
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig::DEFAULT
    }
}

/// A retry was refused: the budget holds less than one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BudgetExhausted {
    /// Until the floor alone earns a token; `None` without a floor.
    retry_after: Option<Duration>,
}

impl BudgetExhausted {
    /// A refusal; `retry_after` is `None` when time alone never helps.
    pub const fn new(retry_after: Option<Duration>) -> BudgetExhausted {
        BudgetExhausted { retry_after }
    }

    /// How long until the floor alone earns a token (other calls' deposits
    /// may make it sooner); `None` without a floor, when time alone never
    /// earns one.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for BudgetExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            None => f.write_str("retry budget exhausted"),
            Some(wait) => write!(
                f,
                "retry budget exhausted; a retry is allowed in {}",
                crate::HumanDuration(wait)
            ),
        }
    }
}

impl core::error::Error for BudgetExhausted {}

/// A lock-free retry budget shared by every caller of a dependency (see the
/// [module docs](self)).
///
/// Call [`deposit`](Self::deposit) once per call (its first attempt) and
/// [`try_withdraw`](Self::try_withdraw) before each retry; when it refuses,
/// give up. The blocking [`Retry`](crate::blocking) does both when given
/// the budget.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::budget::{RetryBudget, RetryBudgetConfig};
/// use stockade::clock::ManualClock;
///
/// let budget = RetryBudget::new(
///     RetryBudgetConfig::DEFAULT.with_min_retries_per_second(2).with_max_tokens(1),
/// )?;
/// let clock = ManualClock::new();
/// assert!(budget.try_withdraw(&clock).is_ok()); // the initial token
/// let refused = budget.try_withdraw(&clock).unwrap_err();
/// assert_eq!(refused.retry_after(), Some(Duration::from_millis(500))); // the floor: 2 per second
/// clock.advance(Duration::from_millis(500));
/// assert!(budget.try_withdraw(&clock).is_ok());
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct RetryBudget {
    /// When the bucket is full again, in units (ticks with a floor);
    /// without a floor, `capacity - balance`.
    full_at: AtomicWord,
    /// Units one retry costs.
    token: Word,
    /// Units one call deposits (at most `capacity`).
    deposit: Word,
    /// Units the bucket holds: `max_tokens * token`.
    capacity: Word,
    /// The configuration as given.
    ratio: f64,
    /// Tick = `2^shift` ns (with a floor).
    shift: u32,
    min_retries_per_second: u32,
    max_tokens: u32,
    /// `min_retries_per_second > 0`: time refills the bucket. A `u32`, not
    /// a `bool`, so every bit pattern is a value (the budget can live in
    /// memory that other processes map).
    floor: u32,
}

/// `(token units, shift)` for a config (valid).
const fn token_and_shift(min_retries_per_second: u32) -> (u64, u32) {
    if min_retries_per_second == 0 {
        return (TOKEN_SCALE, 0);
    }
    let token_ns = 1_000_000_000u64.div_ceil(min_retries_per_second as u64);
    if WIDE {
        return (token_ns, 0);
    }
    let mut shift = 0;
    while (token_ns >> (shift + 1)) >= TOKEN_SCALE {
        shift += 1;
    }
    (token_ns.div_ceil(1u64 << shift), shift)
}

impl RetryBudget {
    /// `size_of::<RetryBudget>()`: the bytes C must provide to hold one.
    pub const SIZE: usize = core::mem::size_of::<RetryBudget>();
    /// `align_of::<RetryBudget>()`: the alignment C must provide.
    pub const ALIGN: usize = core::mem::align_of::<RetryBudget>();

    const_fn_unless_loom! {
        /// A validated budget, starting full.
        ///
        /// # Errors
        ///
        /// - `ratio`: [`NotFinite`](ConfigProblem::NotFinite) for NaN or
        ///   ±∞, [`TooSmall`](ConfigProblem::TooSmall) `{ min: 0 }` when
        ///   negative;
        /// - `min_retries_per_second`: [`TooLarge`](ConfigProblem::TooLarge)
        ///   above [`MAX_MIN_RETRIES_PER_SECOND`];
        /// - `max_tokens`: [`Zero`](ConfigProblem::Zero), or
        ///   [`TooLarge`](ConfigProblem::TooLarge) above [`MAX_TOKENS`]
        ///   (2^18 with the 32-bit layout).
        // No `?` in a `const fn` (this one is `const` outside loom).
        #[allow(clippy::question_mark)]
        pub fn new(config: RetryBudgetConfig) -> Result<RetryBudget, ConfigError> {
            if let Err(e) = config.validate() {
                return Err(e);
            }
            let (token, shift) = token_and_shift(config.min_retries_per_second);
            // At most 2^32 * 10^9 < 2^63 (64-bit) or 2^18 * 2000 < 2^29 (32-bit).
            let capacity = config.max_tokens as u64 * token;
            // Float -> int casts saturate; the ratio is finite and >= 0.
            let deposit = (config.ratio * token as f64 + 0.5) as u64;
            let deposit = if deposit > capacity { capacity } else { deposit };
            Ok(RetryBudget {
                full_at: AtomicWord::new(0),
                token: token as Word,
                deposit: deposit as Word,
                capacity: capacity as Word,
                ratio: config.ratio,
                shift,
                min_retries_per_second: config.min_retries_per_second,
                max_tokens: config.max_tokens,
                floor: (config.min_retries_per_second > 0) as u32,
            })
        }
    }

    /// The configuration.
    pub const fn config(&self) -> RetryBudgetConfig {
        RetryBudgetConfig {
            ratio: self.ratio,
            min_retries_per_second: self.min_retries_per_second,
            max_tokens: self.max_tokens,
        }
    }

    /// Units one retry costs (one token).
    #[allow(clippy::unnecessary_cast)] // a no-op only with the 64-bit layout
    pub const fn token_units(&self) -> u64 {
        self.token as u64
    }

    /// Units one call deposits: `ratio` tokens, rounded to the nearest unit
    /// (at most the capacity).
    #[allow(clippy::unnecessary_cast)] // a no-op only with the 64-bit layout
    pub const fn deposit_units(&self) -> u64 {
        self.deposit as u64
    }

    /// Units the bucket holds: `max_tokens` tokens.
    #[allow(clippy::unnecessary_cast)] // a no-op only with the 64-bit layout
    pub const fn capacity_units(&self) -> u64 {
        self.capacity as u64
    }

    /// With a floor, the time one unit takes to refill (`2^shift` ns: 1 ns
    /// with the 64-bit layout); `None` without a floor (units are then
    /// thousandths of a token and time plays no part).
    pub const fn resolution(&self) -> Option<Duration> {
        if self.floor != 0 {
            Some(Duration::from_nanos(1u64 << self.shift))
        } else {
            None
        }
    }

    /// After how much time the state word wraps: `Some` only with a floor
    /// and the 32-bit layout.
    pub const fn wrap_period(&self) -> Option<Duration> {
        if self.floor != 0 && !WIDE {
            Some(Duration::from_nanos(1u64 << (WORD_BITS + self.shift)))
        } else {
            None
        }
    }

    /// Now in units: ticks with a floor, else zero (without reading the
    /// clock). Near the end of the 64-bit range time stops at
    /// `MAX - capacity` so that `now + lead` never overflows.
    #[inline]
    fn now_units<C: Clock + ?Sized>(&self, clock: &C) -> Word {
        if self.floor == 0 {
            return 0;
        }
        let ticks = (clock.now().as_nanos() >> self.shift) as Word;
        if WIDE {
            let limit = Word::MAX - self.capacity;
            if ticks > limit { limit } else { ticks }
        } else {
            ticks
        }
    }

    /// How many units the bucket lacks at `now` (zero: full). It may
    /// exceed the capacity after the clock stepped backwards: the state is
    /// then read at the earlier time, never clamped, so that nothing is
    /// gained when the clock comes back.
    #[inline]
    fn lead(&self, full_at: Word, now: Word) -> Word {
        if self.floor == 0 || WIDE {
            full_at.saturating_sub(now)
        } else {
            let d = full_at.wrapping_sub(now);
            // More than 2 * capacity ahead: stale (`full_at` is behind now
            // after an idle time, or a wrap): full.
            if d > self.capacity.saturating_mul(2) {
                0
            } else {
                d
            }
        }
    }

    /// The balance for a lead.
    #[inline]
    const fn balance_of(&self, lead: Word) -> Word {
        self.capacity.saturating_sub(lead)
    }

    /// The word for a bucket `lead` units from full at `now`.
    #[inline]
    const fn word(now: Word, lead: Word) -> Word {
        now.wrapping_add(lead)
    }

    /// Records a call (its first attempt): adds `ratio` tokens, up to
    /// `max_tokens`. Reads the clock once with a floor, never without one.
    /// A deposit into a full bucket writes nothing.
    #[inline]
    pub fn deposit<C: Clock + ?Sized>(&self, clock: &C) {
        let now = self.now_units(clock);
        let _ = sync::update(&self.full_at, Ordering::AcqRel, |old| {
            Ok::<_, core::convert::Infallible>(((), self.deposit_step(old, now)))
        });
    }

    /// The deposit transition.
    #[inline]
    fn deposit_step(&self, old: Word, now: Word) -> Word {
        let lead = self.lead(old, now);
        if lead == 0 {
            // Full already: keep the word unless (32-bit) it is going stale.
            let fresh = self.floor == 0 || WIDE || now.wrapping_sub(old) <= FRESH;
            return if fresh { old } else { now };
        }
        Self::word(now, lead.saturating_sub(self.deposit))
    }

    /// Takes one token for a retry, or refuses (writing nothing) when the
    /// budget holds less than one. Reads the clock once with a floor, never
    /// without one.
    ///
    /// # Errors
    ///
    /// [`BudgetExhausted`] with the time until the floor alone earns a token
    /// (`None` without a floor).
    pub fn try_withdraw<C: Clock + ?Sized>(&self, clock: &C) -> Result<(), BudgetExhausted> {
        let now = self.now_units(clock);
        sync::update(&self.full_at, Ordering::AcqRel, |old| {
            self.withdraw_step(old, now)
        })
    }

    /// The withdrawal transition.
    #[inline]
    fn withdraw_step(&self, old: Word, now: Word) -> Result<((), Word), BudgetExhausted> {
        let lead = self.lead(old, now);
        // token <= capacity; lead <= limit keeps lead + token <= capacity.
        let limit = self.capacity - self.token;
        if lead <= limit {
            Ok(((), Self::word(now, lead + self.token)))
        } else {
            Err(BudgetExhausted::new(self.units_to_time(lead - limit)))
        }
    }

    /// The floor time of `units`, or `None` without a floor.
    #[allow(clippy::unnecessary_cast)] // a no-op only with the 64-bit layout
    const fn units_to_time(&self, units: Word) -> Option<Duration> {
        if self.floor == 0 {
            return None;
        }
        Some(Duration::from_nanos(
            (units as u64).saturating_mul(1u64 << self.shift),
        ))
    }

    /// The balance now, in units (`0..=capacity_units`). Reads the clock
    /// once with a floor.
    #[allow(clippy::unnecessary_cast)] // a no-op only with the 64-bit layout
    pub fn balance_units<C: Clock + ?Sized>(&self, clock: &C) -> u64 {
        let now = self.now_units(clock);
        let lead = self.lead(self.full_at.load(Ordering::Acquire), now);
        self.balance_of(lead) as u64
    }

    /// Whole tokens (retries) available now.
    pub fn available<C: Clock + ?Sized>(&self, clock: &C) -> u32 {
        (self.balance_units(clock) / self.token_units()) as u32
    }

    /// Fills the bucket again (as new).
    pub fn reset(&self) {
        self.full_at.store(0, Ordering::Release);
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, Timestamp};
    use std::string::ToString;

    fn budget(ratio: f64, floor: u32, max: u32) -> RetryBudget {
        RetryBudget::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(ratio)
                .with_min_retries_per_second(floor)
                .with_max_tokens(max),
        )
        .expect("valid")
    }

    fn drain(b: &RetryBudget, clock: &ManualClock) -> u32 {
        let mut n = 0;
        while b.try_withdraw(clock).is_ok() {
            n += 1;
            assert!(n <= b.config().max_tokens, "withdrew more than the bucket");
        }
        n
    }

    #[test]
    fn defaults() {
        let c = RetryBudgetConfig::default();
        assert_eq!(c.ratio, 0.2);
        assert_eq!(c.min_retries_per_second, 10);
        assert_eq!(c.max_tokens, 100);
        let b = RetryBudget::new(c).expect("valid");
        assert_eq!(b.config(), c);
        let clock = ManualClock::new();
        assert_eq!(b.available(&clock), 100);
        assert_eq!(b.balance_units(&clock), b.capacity_units());
        if WIDE {
            assert_eq!(b.token_units(), 100_000_000);
            assert_eq!(b.deposit_units(), 20_000_000);
            assert_eq!(b.resolution(), Some(Duration::from_nanos(1)));
            assert_eq!(b.wrap_period(), None);
        } else {
            // 10^8 ns per token: a tick of 2^16 ns gives 1526 ticks.
            assert_eq!(b.resolution(), Some(Duration::from_nanos(1 << 16)));
            assert_eq!(b.token_units(), 1526);
            assert_eq!(b.deposit_units(), 305);
            assert_eq!(b.wrap_period(), Some(Duration::from_nanos(1 << 48)));
        }
    }

    #[test]
    fn validation_names_the_option() {
        let d = RetryBudgetConfig::DEFAULT;
        let err = |c: RetryBudgetConfig| RetryBudget::new(c).expect_err("invalid");
        for ratio in [f64::NAN, f64::INFINITY] {
            let e = err(d.with_ratio(ratio));
            assert_eq!(
                (e.option, e.problem),
                (ConfigOption::BudgetRatio, ConfigProblem::NotFinite)
            );
        }
        assert_eq!(
            err(d.with_ratio(-0.1)).to_string(),
            "invalid ratio = -0.1: must be at least 0"
        );
        assert_eq!(
            err(d.with_max_tokens(0)),
            ConfigError::zero(ConfigOption::MaxTokens, ConfigValue::Count(0))
        );
        assert_eq!(
            err(d.with_min_retries_per_second(1_000_001)),
            ConfigError::count_above(ConfigOption::MinRetriesPerSecond, 1_000_001, 1_000_000)
        );
        if !WIDE {
            assert_eq!(
                err(d.with_max_tokens((1 << 18) + 1)),
                ConfigError::count_above(ConfigOption::MaxTokens, (1 << 18) + 1, 1 << 18)
            );
        }
        // The extremes are accepted.
        for c in [
            d.with_ratio(0.0),
            d.with_ratio(1e300),
            d.with_min_retries_per_second(0),
            d.with_min_retries_per_second(1),
            d.with_min_retries_per_second(1_000_000),
            d.with_max_tokens(1),
            d.with_max_tokens(MAX_TOKENS),
            d.with_max_tokens(MAX_TOKENS).with_min_retries_per_second(1),
        ] {
            let b = RetryBudget::new(c).expect("valid");
            assert!(b.token_units() >= 1000);
            assert!(b.deposit_units() <= b.capacity_units());
            assert_eq!(b.capacity_units(), c.max_tokens as u64 * b.token_units());
            if !WIDE {
                assert!(b.capacity_units() < 1 << 29);
            }
        }
    }

    #[test]
    fn new_is_const() {
        static B: Result<RetryBudget, ConfigError> = RetryBudget::new(RetryBudgetConfig::DEFAULT);
        assert!(B.is_ok());
    }

    #[test]
    fn ratio_without_floor() {
        let b = budget(0.2, 0, 3);
        let clock = ManualClock::new();
        assert_eq!(b.resolution(), None);
        assert_eq!(b.token_units(), 1000);
        assert_eq!(b.deposit_units(), 200);
        assert_eq!(drain(&b, &clock), 3);
        // Time does nothing without a floor.
        clock.advance(Duration::from_secs(1_000_000));
        let e = b.try_withdraw(&clock).unwrap_err();
        assert_eq!(e.retry_after(), None);
        // Five calls earn one retry.
        for _ in 0..4 {
            b.deposit(&clock);
            assert!(b.try_withdraw(&clock).is_err());
        }
        b.deposit(&clock);
        assert_eq!(b.balance_units(&clock), 1000);
        assert!(b.try_withdraw(&clock).is_ok());
        assert_eq!(b.balance_units(&clock), 0);
        // Deposits stop at the cap.
        for _ in 0..100 {
            b.deposit(&clock);
        }
        assert_eq!(b.available(&clock), 3);
        assert_eq!(b.balance_units(&clock), 3000);
    }

    #[test]
    fn floor_refills_with_time() {
        let b = budget(0.0, 4, 2); // a token every 250 ms, two banked
        let clock = ManualClock::starting_at(Timestamp::from_nanos(123_456_789));
        assert_eq!(drain(&b, &clock), 2);
        let e = b.try_withdraw(&clock).unwrap_err();
        let tick = b.resolution().expect("floor").as_nanos() as u64;
        let wait = e.retry_after().expect("a floor earns tokens");
        assert!(wait >= Duration::from_millis(250), "{wait:?}");
        assert!(wait <= Duration::from_millis(250) + Duration::from_nanos(2 * tick));
        clock.advance(wait - Duration::from_nanos(1).max(Duration::from_nanos(tick)));
        assert!(b.try_withdraw(&clock).is_err(), "refilled early");
        clock.advance(Duration::from_nanos(2 * tick));
        assert!(b.try_withdraw(&clock).is_ok());
        // A long idle refills to the cap, not beyond.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(b.available(&clock), 2);
        assert_eq!(drain(&b, &clock), 2);
    }

    #[test]
    fn deposits_and_floor_add_up() {
        let b = budget(0.5, 1, 10);
        let clock = ManualClock::new();
        assert_eq!(drain(&b, &clock), 10);
        b.deposit(&clock);
        b.deposit(&clock);
        assert!(b.try_withdraw(&clock).is_ok());
        assert!(b.try_withdraw(&clock).is_err());
        b.deposit(&clock);
        // (One tick more: the floor's token time is rounded up to ticks.)
        clock.advance(Duration::from_millis(500) + b.resolution().expect("floor"));
        // Half a token from the call, half from the floor.
        assert!(b.try_withdraw(&clock).is_ok());
        assert_eq!(b.available(&clock), 0);
    }

    #[test]
    fn backwards_clock_never_grants_more() {
        let b = budget(0.25, 10, 5);
        let tick = b.resolution().expect("floor");
        let clock = ManualClock::starting_at(Timestamp::from_nanos(1_000_000_000_000));
        assert_eq!(drain(&b, &clock), 5);
        // 400 ms back (less than the capacity, 500 ms of floor): read at the
        // earlier time, the bucket lacks 400 ms more; nothing is granted.
        clock.set(Timestamp::from_nanos(999_600_000_000));
        assert!(b.try_withdraw(&clock).is_err());
        assert_eq!(b.available(&clock), 0);
        // Deposits made meanwhile are kept...
        for _ in 0..4 {
            b.deposit(&clock);
        }
        assert_eq!(b.available(&clock), 0);
        // ...and count once the clock is back: one token, not a second of
        // floor refill on top.
        clock.set(Timestamp::from_nanos(1_000_000_000_000));
        assert_eq!(b.available(&clock), 1);
        clock.advance(Duration::from_millis(100) + tick);
        assert_eq!(b.available(&clock), 2);
    }

    #[test]
    fn idle_across_wraps_refills() {
        let b = budget(0.2, 10, 100);
        let clock = ManualClock::new();
        assert_eq!(drain(&b, &clock), 100);
        // Idle for a long time, and for lengths around multiples of the wrap.
        let mut rng = crate::backoff::SplitMix64::new(9);
        // 200 idle spells (20 under Miri, where each drain is slow).
        let spells = if cfg!(miri) { 20 } else { 200 };
        for _ in 0..spells {
            let jump = rng.between(1, 1 << 52);
            clock.advance(Duration::from_nanos(jump));
            let avail = b.available(&clock);
            assert!(avail <= 100);
            // Never more than the cap, and a stale word reads as full
            // except in the documented corner near a multiple of the wrap.
            if let Some(wrap) = b.wrap_period() {
                let wrap = wrap.as_nanos() as u64;
                let tick = b.resolution().expect("floor").as_nanos() as u64;
                let corner = 2 * b.capacity_units() * tick;
                let phase = jump % wrap;
                if phase > corner && phase < wrap - corner {
                    assert_eq!(avail, 100, "jump {jump}");
                }
            } else {
                assert_eq!(avail, 100);
            }
            drain(&b, &clock);
        }
    }

    #[test]
    fn full_deposits_keep_the_word_fresh() {
        if WIDE {
            return;
        }
        let b = budget(0.2, 10, 100);
        let clock = ManualClock::new();
        let tick = b.resolution().expect("floor").as_nanos() as u64;
        let wrap_ticks = 1u64 << WORD_BITS;
        // A busy healthy service: deposits only, across several wraps, in
        // steps that put an unrefreshed word half a bucket short of full
        // after eight of them (inside the stale-word corner).
        let step = wrap_ticks / 8 - b.capacity_units() / 16;
        for i in 0..40 {
            clock.advance(Duration::from_nanos(step * tick));
            b.deposit(&clock);
            assert_eq!(b.available(&clock), 100, "step {i}");
        }
        // Deposits further apart than a word stays fresh: each finds the
        // word stale and moves it to now. Unmoved, it would be a sixteenth
        // of a bucket short of full after four of these steps.
        let step = wrap_ticks / 4 - b.capacity_units() / 16;
        for i in 0..40 {
            clock.advance(Duration::from_nanos(step * tick));
            b.deposit(&clock);
            assert_eq!(b.available(&clock), 100, "sparse step {i}");
        }
    }

    #[test]
    fn end_of_time_does_not_overflow() {
        let b = budget(0.2, 10, 3);
        let clock = ManualClock::starting_at(Timestamp::from_nanos(u64::MAX - 5));
        assert!(b.available(&clock) <= 3);
        let n = drain(&b, &clock);
        assert!(n <= 3);
        b.deposit(&clock);
        clock.advance(Duration::MAX);
        let _ = b.try_withdraw(&clock);
        assert!(b.available(&clock) <= 3);
    }

    #[test]
    fn reset_fills_again() {
        let b = budget(0.2, 0, 2);
        let clock = ManualClock::new();
        assert_eq!(drain(&b, &clock), 2);
        b.reset();
        assert_eq!(b.available(&clock), 2);
    }

    #[test]
    fn display() {
        use std::string::ToString;
        let e = BudgetExhausted::new(None);
        assert_eq!(e.to_string(), "retry budget exhausted");
        let e = BudgetExhausted::new(Some(Duration::from_millis(5)));
        assert_eq!(
            e.to_string(),
            "retry budget exhausted; a retry is allowed in 5ms"
        );
    }

    #[test]
    fn size() {
        let expected = if WIDE { 56 } else { 40 };
        assert_eq!(core::mem::size_of::<RetryBudget>(), expected);
    }
}
