//! Circuit breaker: closed → open → half-open → closed, lock-free.
//!
//! A [`CircuitBreaker`] stops calling a dependency that keeps failing. It
//! counts failures while **closed**; when a rule fires it **opens** and
//! rejects every call for [`reset_timeout`](BreakerConfig::reset_timeout);
//! then it goes **half-open** and lets a few *probe* calls through. A failed
//! probe opens it again; successful probes close it.
//!
//! ```text
//!            failure rule fires                 reset_timeout elapsed
//!  Closed ─────────────────────────► Open ─────────────────────────► HalfOpen
//!    ▲                                ▲                                 │
//!    │                                └──────── a probe fails ──────────┤
//!    │                                                                  │
//!    └─ half_open_timeout elapsed with ≥ 1 successful probe and none ◄──┘
//!       failed (or half_open_successes_to_close successes)
//! ```
//!
//! Manual modes sit beside the machine: [`trip`](CircuitBreaker::trip)
//! (open now), [`force_open`](CircuitBreaker::force_open) (open until
//! [`reset`](CircuitBreaker::reset)), [`disable`](CircuitBreaker::disable)
//! (admit everything, record nothing) and `reset` (closed, counters cleared).
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
//! use stockade::clock::ManualClock;
//!
//! // A breaker can live in a `static`: `new` is a `const fn`.
//! static BREAKER: CircuitBreaker =
//!     match CircuitBreaker::new(BreakerConfig::DEFAULT.with_failure_threshold(2)) {
//!         Ok(breaker) => breaker,
//!         Err(_) => panic!("invalid breaker configuration"),
//!     };
//! static CLOCK: ManualClock = ManualClock::new();
//!
//! // Two consecutive failures open the circuit.
//! for _ in 0..2 {
//!     let permit = BREAKER.try_acquire(&CLOCK).expect("closed");
//!     permit.failure(&CLOCK); // the call failed
//! }
//! assert_eq!(BREAKER.state(), BreakerState::Open);
//! let rejected = BREAKER.try_acquire(&CLOCK).unwrap_err();
//! assert!(rejected.retry_after >= Duration::from_secs(60));
//!
//! // After `reset_timeout` one probe is let through; others wait.
//! CLOCK.advance(rejected.retry_after);
//! let probe = BREAKER.try_acquire(&CLOCK).expect("half-open probe");
//! assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
//! assert!(BREAKER.try_acquire(&CLOCK).is_err());
//! probe.success(&CLOCK);
//!
//! // The round lasts `half_open_timeout` (30 s); with a successful probe
//! // and no failed one, the next call after it closes the circuit.
//! CLOCK.advance(Duration::from_secs(31));
//! let permit = BREAKER.try_acquire(&CLOCK).expect("closed again");
//! assert_eq!(BREAKER.state(), BreakerState::Closed);
//! permit.success(&CLOCK);
//! ```
//!
//! # How the options are interpreted
//!
//! * `failure_threshold` (spec `failureThreshold`, default 5): that many
//!   *consecutive* failures while closed open the circuit; a success resets
//!   the count.
//! * `reset_timeout` (`resetTimeout`, 60 s): time open before half-open.
//! * `half_open_timeout` (`halfOpenTimeout`, 30 s, "time to wait in
//!   half-open state before fully closing"): a half-open *round* lasts this
//!   long. During it at most `half_open_max_probes` probes run at once (a
//!   probe that reports or is dropped frees its slot). Any failed probe
//!   re-opens the circuit. The circuit closes when the round has lasted
//!   `half_open_timeout` and at least one probe succeeded (checked when a
//!   probe reports success and on every [`try_acquire`](CircuitBreaker::try_acquire)).
//!   A round that ends with no successful probe, for instance because a
//!   caller crashed while holding the only probe permit, is followed by a
//!   fresh round (new generation) instead of staying wedged. So
//!   `half_open_timeout` should be longer than a call normally takes:
//!   verdicts of probes from an earlier round are ignored.
//!   `half_open_successes_to_close` (optional) closes the circuit early,
//!   after that many successful probes in one round.
//! * `monitor_interval` (`monitorInterval`, 5 s): validated and stored for
//!   the blocking layer, which emits metrics events at that interval. The
//!   state machine itself does not use it.
//! * `failure_rate` (beyond the spec, as in resilience4j): a count-based
//!   sliding window over the last `window_size` calls while closed; once it
//!   holds at least `minimum_calls` calls, a failure rate at or above
//!   `threshold_percent` opens the circuit. The window starts empty at each
//!   close. Either rule opening the circuit is enough.
//! * `slow_call_threshold` (beyond the spec): a call that reports success
//!   later than this after it was admitted counts as a failure. Only with
//!   this option does admission read the clock in the closed state.
//!
//! # Generations: stale verdicts are ignored
//!
//! Every state change (including a new half-open round and every manual
//! operation) increments a *generation* counter. A permit carries the
//! generation it was admitted in; a verdict whose generation is not the
//! current one is ignored. So a slow success that started before the
//! circuit opened cannot close it, and a late failure from an earlier
//! half-open round cannot re-open a later one (the stale-verdict bug
//! reported against Polly in #217/#219).
//!
//! The generation field wraps: it holds [`CircuitBreaker::GENERATIONS`]
//! values (2²⁹ with the 64-bit layout, 2¹³ = 8192 with the 32-bit layout).
//! A permit that outlives a whole multiple of that many state changes is
//! mistaken for a current one; a permit that lives across fewer than
//! `GENERATIONS` transitions is always recognised as stale. Automatic
//! transitions are on average at least `min(reset_timeout / 2,
//! half_open_timeout)` apart (30 s with the defaults), so with the 32-bit
//! layout and default timeouts a permit must live about 68 hours to be
//! mistaken (about 510 years with the 64-bit layout); manual operations
//! can cycle faster.
//!
//! # Permits and tokens
//!
//! [`try_acquire`](CircuitBreaker::try_acquire) returns a [`BreakerPermit`]
//! that borrows the breaker; give it a verdict with
//! [`success`](BreakerPermit::success), [`failure`](BreakerPermit::failure)
//! or [`ignore`](BreakerPermit::ignore). Dropping it without a verdict
//! counts as *ignored*: it frees a half-open probe slot and counts neither
//! as success nor as failure. Bindings that cannot hold a borrow use
//! [`acquire_token`](CircuitBreaker::acquire_token) /
//! [`into_token`](BreakerPermit::into_token) and
//! [`report`](CircuitBreaker::report) with a plain-data [`PermitToken`].
//! Report each token at most once: a token is `Copy`, and reporting it
//! twice in half-open frees a probe slot twice. A token that is never
//! reported does not wedge the breaker (see the half-open rounds above).
//!
//! # Cost
//!
//! In the closed state with no slow-call threshold, `try_acquire` is one
//! atomic load. A success report with no pending consecutive failures, on
//! a breaker with neither a slow-call threshold nor a failure-rate window,
//! is one atomic load too, and dropping a permit without a verdict is one
//! atomic load in every state but half-open. These fast paths are inlined
//! into the caller, read no clock and write nothing; everything else goes
//! to an out-of-line general path. Failures, rejections, and all open and
//! half-open operations use compare-and-swap on one state word and bump a
//! statistics counter. With `failure_rate` enabled every closed-state
//! report also claims a window slot (one CAS), sets or clears its bit
//! (one read-modify-write), re-reads the position (one read-modify-write)
//! and loads up to four ring words.
//!
//! # State layout and time horizons
//!
//! The machine is plain data: a few atomic words and the configuration,
//! no pointers, no heap.
//!
//! * `ctrl` (one word of the target's native CAS width, 64 or 32 bits):
//!   `mode (3 bits) | generation | A | B`. 64-bit layout: generation 29 bits,
//!   A and B 16 bits each. 32-bit layout: generation 13 bits, A and B 8 bits
//!   each. Closed: A = consecutive failures. Half-open: A = probes in flight,
//!   B = successful probes this round (saturating). Counts are therefore
//!   limited to [`CircuitBreaker::MAX_COUNT`] (65535 or 255).
//! * `since`: `generation tag | time` — the time the current generation
//!   began, in ticks, tagged with the generation's low bits (8 bits in the
//!   64-bit layout, 6 bits in the 32-bit one). The winner of a transition
//!   CASes `ctrl` first and stamps `since` right after. A reader that finds
//!   the tag of an older generation treats the time as "just now" (an open
//!   circuit rejects with the full `reset_timeout`) and stamps it itself,
//!   so a transition interrupted between the two steps (a preempted
//!   thread, a crashed process sharing the breaker) never wedges the
//!   breaker or makes it admit early. The tag also stops a late stamp of an
//!   older generation from overwriting a newer one, and every stamp comes
//!   from a clock reading taken after the transition was observed, so a
//!   generation is never dated before it began.
//!   64-bit layout: 56 bits of nanoseconds ([`CircuitBreaker::TICK`] = 1 ns),
//!   wrapping after 2⁵⁶ ns ≈ 834 days. 32-bit layout: 26 bits of
//!   2²⁰ ns ≈ 1.05 ms ticks, wrapping after 2⁴⁶ ns ≈ 19.5 hours. Timeouts
//!   must be at most [`CircuitBreaker::MAX_TIMEOUT`] (half the wrap period:
//!   ≈ 417 days and ≈ 9.77 hours); with the 32-bit layout a timeout ends
//!   up to two ticks (≈ 2.1 ms) late, never early.
//! * the failure-rate window: a position word (`generation | filled |
//!   next`) and a 128-bit ring of four 32-bit atomics, one bit per call. A
//!   report from an older generation cannot claim a slot. The winner of
//!   every transition moves the window to its new generation (so the
//!   window's generation never lags far enough behind to look newer); the
//!   thread that closes the circuit does so *before* publishing the closed
//!   state, so the new generation's calls always find an empty window.
//! * statistics counters: five 32-bit atomics, wrapping.
//!
//! **Clock steps and wrap-around.** Elapsed time is the wrapping
//! difference of tick counts. If the clock appears to be *behind* the stamp
//! (it stepped backwards, or an open breaker sat idle for more than half a
//! wrap period) the breaker restamps the generation's start with the
//! current time: no time has passed. An open breaker idle across a wrap may
//! therefore look recently opened and stay open up to one more
//! `reset_timeout` (a half-open round may likewise last one more
//! `half_open_timeout`); it never admits early. A clock jump larger than
//! the wrap period is seen modulo the period.
//!
//! **What a race can cost.** All decisions on the control word are exact
//! under any interleaving: at most `half_open_max_probes` probes run at
//! once within a round, no concurrent failure or probe success is lost,
//! and a verdict is counted only in the generation it was admitted in. The
//! failure-rate window is exact once concurrent reports have finished (of
//! two concurrent reporters, the later one sees both calls), but in
//! between it is statistical: a slot claimed and not yet written reads as
//! the call it replaces (as a success in a fresh window); a report whose
//! thread sleeps between claiming and writing its slot while the circuit
//! is reset (or opens and closes again) can set one bit of the new window;
//! and when two threads close the circuit at the same moment the slower
//! one's window clearing can erase a bit just written in the new window.
//! Each makes an evaluation see one call's bit as it was a moment
//! earlier or later.
use core::convert::Infallible;
use core::fmt;
use core::mem::ManuallyDrop;
use core::time::Duration;

use crate::clock::{Clock, Timestamp, duration_to_nanos_saturating};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
use crate::sync::const_fn_unless_loom;
use crate::sync::{self, AtomicU32, AtomicWord, Ordering, WIDE, WORD_BITS, Word};
use crate::time::TickUnit;

// ---------------------------------------------------------------------------
// State-word layout.

/// Bits of the mode field at the top of `ctrl`.
const MODE_BITS: u32 = 3;
/// Bits of each of the fields A and B.
const FIELD_BITS: u32 = if WIDE { 16 } else { 8 };
/// Bits of the generation.
const GEN_BITS: u32 = WORD_BITS - MODE_BITS - 2 * FIELD_BITS;
const FIELD_MAX: Word = (1 << FIELD_BITS) - 1;
const GEN_MASK: Word = (1 << GEN_BITS) - 1;
#[allow(clippy::unnecessary_cast)] // `Word` is `u32` in the 32-bit layout
const FIELD_MAX_U64: u64 = FIELD_MAX as u64;

/// A state-word field (generation, count) as `u32`: every field fits.
#[allow(clippy::unnecessary_cast)] // `Word` is `u32` in the 32-bit layout
#[inline]
const fn field_u32(field: Word) -> u32 {
    field as u32
}
const A_SHIFT: u32 = FIELD_BITS;
const GEN_SHIFT: u32 = 2 * FIELD_BITS;
const MODE_SHIFT: u32 = WORD_BITS - MODE_BITS;

const CLOSED: Word = 0;
const OPEN: Word = 1;
const HALF_OPEN: Word = 2;
const FORCED_OPEN: Word = 3;
const DISABLED: Word = 4;

/// Bits of the generation tag at the top of `since`.
const TAG_BITS: u32 = if WIDE { 8 } else { 6 };
const TIME_BITS: u32 = WORD_BITS - TAG_BITS;
const TIME_MASK: Word = (1 << TIME_BITS) - 1;
const TAG_MASK: Word = (1 << TAG_BITS) - 1;
/// One tick: 1 ns (64-bit layout) or 2^20 ns (32-bit layout).
const UNIT: TickUnit = TickUnit::from_shift(if WIDE { 0 } else { 20 });
/// Stamps are floored to a tick; with ticks coarser than a nanosecond a
/// timeout needs one extra tick so it never ends early.
const ROUND_UP: Word = if UNIT.shift() > 0 { 1 } else { 0 };
/// The largest elapsed tick count told apart from "the clock is behind".
const MAX_ELAPSED: Word = TIME_MASK >> 1;
/// The largest timeout in ticks before the extra rounding tick.
const MAX_TIMEOUT_TICKS: Word = MAX_ELAPSED - ROUND_UP;

/// Words of the failure-rate ring.
const RING_WORDS: usize = 4;
/// Largest failure-rate window: 32 calls per ring word.
const MAX_WINDOW: u32 = 32 * RING_WORDS as u32;
/// Window position word: `generation << 16 | filled << 8 | next`.
const POS_GEN_SHIFT: u32 = 16;

#[inline]
const fn mode_of(w: Word) -> Word {
    w >> MODE_SHIFT
}
#[inline]
const fn gen_of(w: Word) -> Word {
    (w >> GEN_SHIFT) & GEN_MASK
}
#[inline]
const fn a_of(w: Word) -> Word {
    (w >> A_SHIFT) & FIELD_MAX
}
#[inline]
const fn b_of(w: Word) -> Word {
    w & FIELD_MAX
}
#[inline]
const fn pack(mode: Word, generation: Word, a: Word, b: Word) -> Word {
    (mode << MODE_SHIFT)
        | ((generation & GEN_MASK) << GEN_SHIFT)
        | ((a & FIELD_MAX) << A_SHIFT)
        | (b & FIELD_MAX)
}
#[inline]
const fn next_gen(generation: Word) -> Word {
    generation.wrapping_add(1) & GEN_MASK
}
/// `true` when generation `old` precedes `new` (by less than half the
/// generation space).
#[inline]
const fn gen_is_older(old: Word, new: Word) -> bool {
    let d = new.wrapping_sub(old) & GEN_MASK;
    d != 0 && d <= GEN_MASK >> 1
}

#[inline]
const fn stamp_word(generation: Word, ticks: Word) -> Word {
    ((generation & TAG_MASK) << TIME_BITS) | (ticks & TIME_MASK)
}
/// `true` when tag `old` precedes `new`.
#[inline]
const fn tag_is_older(old: Word, new: Word) -> bool {
    let d = new.wrapping_sub(old) & TAG_MASK;
    d != 0 && d <= TAG_MASK >> 1
}
#[inline]
const fn now_ticks(t: Timestamp) -> Word {
    UNIT.ticks(t) & TIME_MASK
}
/// Ticks from `since` to `now`, or `None` when `now` looks behind.
#[inline]
const fn elapsed_ticks(now: Word, since: Word) -> Option<Word> {
    let d = now.wrapping_sub(since) & TIME_MASK;
    if d > MAX_ELAPSED { None } else { Some(d) }
}
/// Time from `now` until `ticks` more tick boundaries have passed.
#[inline]
const fn remaining(ticks: Word, now: Timestamp) -> Duration {
    let within_tick = now.as_nanos() & (UNIT.nanos_per_tick() - 1);
    Duration::from_nanos(UNIT.to_nanos(ticks).saturating_sub(within_tick))
}

#[inline]
const fn pos_pack(generation: Word, filled: Word, next: Word) -> Word {
    ((generation & GEN_MASK) << POS_GEN_SHIFT) | ((filled & 0xff) << 8) | (next & 0xff)
}
#[inline]
const fn pos_gen(p: Word) -> Word {
    (p >> POS_GEN_SHIFT) & GEN_MASK
}
#[inline]
const fn pos_filled(p: Word) -> Word {
    (p >> 8) & 0xff
}
#[inline]
const fn pos_next(p: Word) -> Word {
    p & 0xff
}

// ---------------------------------------------------------------------------
// Configuration.

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
    /// most [`CircuitBreaker::MAX_TIMEOUT`].
    pub reset_timeout: Duration,
    /// Length of a half-open round: the circuit closes once a round has
    /// lasted this long with at least one successful probe and no failed
    /// one (spec `halfOpenTimeout`, "time to wait in half-open state before
    /// fully closing", default 30 s). At most [`CircuitBreaker::MAX_TIMEOUT`].
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

/// `?` for `const fn`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}

const fn check_count(option: ConfigOption, value: u32) -> Result<Word, ConfigError> {
    if value == 0 {
        return Err(ConfigError::zero(option, ConfigValue::Count(0)));
    }
    if value as u64 > FIELD_MAX_U64 {
        return Err(ConfigError::count_above(
            option,
            value as u64,
            FIELD_MAX_U64,
        ));
    }
    Ok(value as Word)
}

const fn check_timeout(option: ConfigOption, timeout: Duration) -> Result<Word, ConfigError> {
    let nanos = duration_to_nanos_saturating(timeout);
    if nanos == 0 {
        return Err(ConfigError::zero(option, ConfigValue::Duration(timeout)));
    }
    match UNIT.duration_ticks(nanos, MAX_TIMEOUT_TICKS) {
        Some(ticks) => Ok(ticks + ROUND_UP),
        None => Err(ConfigError::duration_above(
            option,
            timeout,
            Duration::from_nanos(UNIT.to_nanos(MAX_TIMEOUT_TICKS)),
        )),
    }
}

const fn check_duration(option: ConfigOption, duration: Duration) -> Result<(), ConfigError> {
    if duration.is_zero() {
        return Err(ConfigError::zero(option, ConfigValue::Duration(duration)));
    }
    if duration.as_nanos() > u64::MAX as u128 {
        return Err(ConfigError::duration_above(
            option,
            duration,
            Duration::from_nanos(u64::MAX),
        ));
    }
    Ok(())
}

const fn check_failure_rate(fr: FailureRateConfig) -> Result<(), ConfigError> {
    let percent = fr.threshold_percent as u64;
    if percent == 0 {
        return Err(ConfigError::zero(
            ConfigOption::FailureRateThreshold,
            ConfigValue::Count(0),
        ));
    }
    if percent > 100 {
        return Err(ConfigError::count_above(
            ConfigOption::FailureRateThreshold,
            percent,
            100,
        ));
    }
    if fr.window_size == 0 {
        return Err(ConfigError::zero(
            ConfigOption::FailureRateWindowSize,
            ConfigValue::Count(0),
        ));
    }
    if fr.window_size > MAX_WINDOW {
        return Err(ConfigError::count_above(
            ConfigOption::FailureRateWindowSize,
            fr.window_size as u64,
            MAX_WINDOW as u64,
        ));
    }
    if fr.minimum_calls == 0 {
        return Err(ConfigError::zero(
            ConfigOption::FailureRateMinimumCalls,
            ConfigValue::Count(0),
        ));
    }
    if fr.minimum_calls > fr.window_size {
        return Err(ConfigError::new(
            ConfigOption::FailureRateMinimumCalls,
            ConfigValue::Count(fr.minimum_calls as u64),
            ConfigProblem::Exceeds {
                other: ConfigOption::FailureRateWindowSize,
                limit: ConfigValue::Count(fr.window_size as u64),
            },
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Public value types.

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass; failures are counted.
    Closed,
    /// Calls are rejected until `reset_timeout` has passed.
    Open,
    /// A few probe calls pass to test the dependency.
    HalfOpen,
    /// Opened by [`CircuitBreaker::force_open`]: rejects until
    /// [`CircuitBreaker::reset`].
    ForcedOpen,
    /// Set by [`CircuitBreaker::disable`]: admits every call and records
    /// nothing until [`CircuitBreaker::reset`].
    Disabled,
}

impl BreakerState {
    const fn from_mode(mode: Word) -> BreakerState {
        match mode {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            HALF_OPEN => BreakerState::HalfOpen,
            DISABLED => BreakerState::Disabled,
            // FORCED_OPEN; other values are never written.
            _ => BreakerState::ForcedOpen,
        }
    }

    /// The state's name in snake case (`"half_open"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on an admitted call, for [`CircuitBreaker::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The call succeeded (a failure if slower than `slow_call_threshold`).
    Success,
    /// The call failed.
    Failure,
    /// The call does not count (cancelled, or an error that says nothing
    /// about the dependency's health). Frees a half-open probe slot.
    Ignored,
}

/// A call was rejected: the circuit is open (or half-open with all probe
/// slots taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerRejected {
    /// The state that rejected the call.
    pub state: BreakerState,
    /// How long until a call may be admitted, assuming no other caller
    /// takes the slot first. Open: until `reset_timeout` has passed.
    /// Half-open: at most until the current round ends (a probe slot may
    /// free up sooner). [`Duration::MAX`] when forced open.
    pub retry_after: Duration,
}

impl fmt::Display for BreakerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.state {
            BreakerState::ForcedOpen => f.write_str("circuit breaker is forced open"),
            state => write!(
                f,
                "circuit breaker is {state}; retry after {:?}",
                self.retry_after
            ),
        }
    }
}

impl core::error::Error for BreakerRejected {}

/// A plain-data (`Copy`) record of an admitted call, for bindings that
/// cannot hold a [`BreakerPermit`]'s borrow: the generation it was admitted
/// in, and its start time when the breaker has a slow-call threshold.
///
/// Report it once with [`CircuitBreaker::report`]. A token that is never
/// reported does no lasting harm.
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, CircuitBreaker, Outcome, PermitToken};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).unwrap();
/// let clock = ManualClock::new();
/// let token = breaker.acquire_token(&clock).unwrap();
/// // ... hand `token` across the FFI boundary and back ...
/// let token = PermitToken::from_parts(token.generation(), token.started_at());
/// breaker.report(token, Outcome::Success, &clock);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "report the token's outcome with CircuitBreaker::report"]
pub struct PermitToken {
    generation: u32,
    started_at: Option<Timestamp>,
}

impl PermitToken {
    /// Rebuilds a token from its parts (for bindings that store them).
    pub const fn from_parts(generation: u32, started_at: Option<Timestamp>) -> PermitToken {
        PermitToken {
            generation,
            started_at,
        }
    }

    /// The generation the call was admitted in.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// When the call was admitted, recorded only when the breaker has a
    /// slow-call threshold.
    pub const fn started_at(self) -> Option<Timestamp> {
        self.started_at
    }
}

/// Permission to make one call through a [`CircuitBreaker`].
///
/// Give it a verdict with [`success`](Self::success),
/// [`failure`](Self::failure) or [`ignore`](Self::ignore). Dropping it
/// without one is the same as `ignore`: a half-open probe slot is freed and
/// nothing is counted.
#[derive(Debug)]
#[must_use = "give the permit a verdict: success, failure or ignore"]
pub struct BreakerPermit<'a> {
    breaker: &'a CircuitBreaker,
    token: PermitToken,
}

impl<'a> BreakerPermit<'a> {
    /// Takes the permit apart without running its `Drop` (a permit given
    /// a verdict must not also be released as "ignored").
    #[inline]
    fn disarm(self) -> (&'a CircuitBreaker, PermitToken) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.token)
    }

    /// The call succeeded. Counts as a failure if it took longer than the
    /// breaker's slow-call threshold.
    #[inline]
    pub fn success<C: Clock + ?Sized>(self, clock: &C) {
        let (breaker, token) = self.disarm();
        breaker.report(token, Outcome::Success, clock);
    }

    /// The call failed.
    #[inline]
    pub fn failure<C: Clock + ?Sized>(self, clock: &C) {
        let (breaker, token) = self.disarm();
        breaker.report(token, Outcome::Failure, clock);
    }

    /// The call does not count; frees a half-open probe slot.
    pub fn ignore(self) {
        drop(self);
    }

    /// The permit's token, without giving a verdict.
    pub const fn token(&self) -> PermitToken {
        self.token
    }

    /// Turns the permit into a plain-data token, to be reported later with
    /// [`CircuitBreaker::report`]. No verdict is given now.
    pub fn into_token(self) -> PermitToken {
        self.disarm().1
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.breaker.release(self.token);
    }
}

/// A snapshot of a breaker's state and statistics, from
/// [`CircuitBreaker::metrics`].
///
/// Fields are read one after another, not atomically together; counters
/// wrap at `u32::MAX`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerMetrics {
    /// The state.
    pub state: BreakerState,
    /// The generation (incremented by every state change, wrapping at
    /// [`CircuitBreaker::GENERATIONS`]).
    pub generation: u32,
    /// Consecutive failures (closed state; 0 otherwise).
    pub consecutive_failures: u32,
    /// Probes in flight (half-open state; 0 otherwise).
    pub probes_in_flight: u32,
    /// Successful probes in the current round (half-open; 0 otherwise).
    pub probe_successes: u32,
    /// The failure-rate window, when configured.
    pub window: Option<WindowMetrics>,
    /// Failures counted (including slow calls), wrapping.
    pub failures: u32,
    /// Slow calls counted as failures, wrapping.
    pub slow_calls: u32,
    /// Calls rejected, wrapping.
    pub rejections: u32,
    /// State changes (including new half-open rounds and manual
    /// operations), wrapping.
    pub transitions: u32,
    /// Verdicts ignored because they came from an earlier generation,
    /// wrapping.
    pub stale_verdicts: u32,
    /// When the current generation began (to a tick). The current time if
    /// the transition is still being recorded or the clock stepped back.
    pub last_transition: Timestamp,
}

/// The failure-rate window's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowMetrics {
    /// Calls in the window (at most `window_size`; 0 unless closed).
    pub calls: u32,
    /// Failed calls among them.
    pub failures: u32,
}

impl WindowMetrics {
    /// `failures * 100 / calls`, or 0 for an empty window.
    pub const fn failure_rate_percent(self) -> u32 {
        if self.calls == 0 {
            0
        } else {
            (self.failures as u64 * 100 / self.calls as u64) as u32
        }
    }
}

// ---------------------------------------------------------------------------
// The machine.

/// A lock-free circuit breaker. See the [module documentation](self).
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).unwrap();
/// let clock = ManualClock::new();
/// match breaker.try_acquire(&clock) {
///     Ok(permit) => {
///         let call_ok = true; // make the call here
///         if call_ok { permit.success(&clock) } else { permit.failure(&clock) }
///     }
///     Err(rejected) => println!("not now: {rejected}"),
/// }
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct CircuitBreaker {
    /// `mode | generation | A | B`.
    ctrl: AtomicWord,
    /// `generation tag | ticks`: when the current generation began.
    since: AtomicWord,
    /// Failure-rate window position: `generation | filled | next`.
    window_pos: AtomicWord,
    /// Failure-rate window: one bit per call, 1 = failure.
    window_bits: [AtomicU32; RING_WORDS],
    failures: AtomicU32,
    slow_calls: AtomicU32,
    rejections: AtomicU32,
    transitions: AtomicU32,
    stale: AtomicU32,
    reset_ticks: Word,
    half_open_ticks: Word,
    config: BreakerConfig,
}

/// Reads the clock only when asked, and at most once until told to forget.
///
/// Rule for time stamps: a stamp for generation `g` must come from a
/// reading taken *after* observing `g` in the control word, so it is never
/// earlier than the transition to `g`. Admission therefore forgets its
/// reading for each control word it decides on, and transition stamps use
/// [`fresh`](Self::fresh) readings taken after the compare-and-swap.
struct LazyNow<'c, C: Clock + ?Sized> {
    clock: &'c C,
    now: Option<Timestamp>,
}

impl<'c, C: Clock + ?Sized> LazyNow<'c, C> {
    fn new(clock: &'c C) -> Self {
        LazyNow { clock, now: None }
    }

    #[inline]
    fn get(&mut self) -> Timestamp {
        match self.now {
            Some(t) => t,
            None => self.fresh(),
        }
    }

    /// Reads the clock now (and remembers the reading).
    #[inline]
    fn fresh(&mut self) -> Timestamp {
        let t = self.clock.now();
        self.now = Some(t);
        t
    }

    /// Forgets the reading: the next [`get`](Self::get) reads the clock.
    #[inline]
    fn forget(&mut self) {
        self.now = None;
    }
}

/// What `since` says about generation `g`.
enum SinceView {
    /// Stamped for `g`; this many ticks ago.
    Elapsed(Word),
    /// Stamped for `g`, but the clock looks behind the stamp.
    Behind(Word),
    /// Not yet stamped for `g` (still holds an older generation's stamp).
    Unstamped(Word),
    /// Holds a newer generation's stamp: the caller's view of the control
    /// word is stale.
    Superseded(Word),
}

/// A stamp repair to try after a decision: `(generation, observed since)`.
type Fix = Option<(Word, Word)>;

/// Why an admission step did not admit.
enum Refusal {
    Rejected(BreakerRejected),
    /// The time stamp belongs to a newer generation than control word
    /// `.0`: decide again on a fresh control word.
    Reload(Word),
}

/// An admission decided on the control word.
#[derive(Clone, Copy)]
struct Admitted {
    mode: Word,
    generation: Word,
    /// The admission began a new generation (a transition).
    entered: bool,
}

impl CircuitBreaker {
    /// The number of distinct generations before the counter wraps
    /// (2²⁹ with the 64-bit layout, 2¹³ with the 32-bit layout).
    pub const GENERATIONS: u32 = 1 << GEN_BITS;

    /// The largest `failure_threshold`, `half_open_max_probes` and
    /// `half_open_successes_to_close` (65535, or 255 with the 32-bit
    /// layout).
    pub const MAX_COUNT: u32 = field_u32(FIELD_MAX);

    /// The resolution of the breaker's timers (1 ns, or 2²⁰ ns ≈ 1.05 ms
    /// with the 32-bit layout).
    pub const TICK: Duration = Duration::from_nanos(UNIT.nanos_per_tick());

    /// The period after which the stored tick time wraps (2⁵⁶ ns ≈ 834
    /// days, or 2⁴⁶ ns ≈ 19.5 hours with the 32-bit layout).
    pub const TIME_WRAP: Duration = Duration::from_nanos(
        UNIT.to_nanos(TIME_MASK)
            .saturating_add(UNIT.nanos_per_tick()),
    );

    /// The largest `reset_timeout` and `half_open_timeout` (≈ 417 days, or
    /// ≈ 9.77 hours with the 32-bit layout).
    pub const MAX_TIMEOUT: Duration = Duration::from_nanos(UNIT.to_nanos(MAX_TIMEOUT_TICKS));

    const_fn_unless_loom! {
        /// A closed breaker with `config`, or the first invalid option.
        ///
        /// # Errors
        ///
        /// A [`ConfigError`] naming the option: a count or duration of zero,
        /// a count above [`MAX_COUNT`](Self::MAX_COUNT), a timeout above
        /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT), a `failure_rate` with a
        /// percentage outside 1..=100, a window outside
        /// 1..=[`FailureRateConfig::MAX_WINDOW_SIZE`], or `minimum_calls`
        /// above `window_size`.
        pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, ConfigError> {
            tri!(check_count(ConfigOption::FailureThreshold, config.failure_threshold));
            let reset_ticks = tri!(check_timeout(ConfigOption::ResetTimeout, config.reset_timeout));
            let half_open_ticks = tri!(check_timeout(ConfigOption::HalfOpenTimeout, config.half_open_timeout));
            tri!(check_duration(ConfigOption::MonitorInterval, config.monitor_interval));
            tri!(check_count(ConfigOption::HalfOpenMaxProbes, config.half_open_max_probes));
            if let Some(n) = config.half_open_successes_to_close {
                tri!(check_count(ConfigOption::HalfOpenSuccessesToClose, n));
            }
            if let Some(fr) = config.failure_rate {
                tri!(check_failure_rate(fr));
            }
            if let Some(d) = config.slow_call_threshold {
                tri!(check_duration(ConfigOption::SlowCallThreshold, d));
            }
            Ok(CircuitBreaker {
                ctrl: AtomicWord::new(pack(CLOSED, 0, 0, 0)),
                since: AtomicWord::new(stamp_word(0, 0)),
                window_pos: AtomicWord::new(pos_pack(0, 0, 0)),
                window_bits: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
                failures: AtomicU32::new(0),
                slow_calls: AtomicU32::new(0),
                rejections: AtomicU32::new(0),
                transitions: AtomicU32::new(0),
                stale: AtomicU32::new(0),
                reset_ticks,
                half_open_ticks,
                config,
            })
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state: one atomic load, no clock. An open breaker whose
    /// `reset_timeout` has passed still reports [`BreakerState::Open`]
    /// until the next [`try_acquire`](Self::try_acquire) moves it to
    /// half-open.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_mode(mode_of(self.ctrl.load(Ordering::Acquire)))
    }

    /// Asks to make a call.
    ///
    /// Closed or disabled: admitted (reads the clock only with a slow-call
    /// threshold, to record the start). Open: rejected until
    /// `reset_timeout` has passed, then admitted as the first probe of a
    /// half-open round. Half-open: admitted while fewer than
    /// `half_open_max_probes` probes are in flight; ends the round if it
    /// has lasted `half_open_timeout` (closing the circuit, or starting a
    /// new round). Forced open: rejected.
    ///
    /// # Errors
    ///
    /// [`BreakerRejected`] with the state and how long to wait.
    #[inline]
    pub fn try_acquire<C: Clock + ?Sized>(
        &self,
        clock: &C,
    ) -> Result<BreakerPermit<'_>, BreakerRejected> {
        let token = self.acquire_token(clock)?;
        Ok(BreakerPermit {
            breaker: self,
            token,
        })
    }

    /// Like [`try_acquire`](Self::try_acquire), returning a plain-data
    /// token to pass to [`report`](Self::report) later.
    ///
    /// # Errors
    ///
    /// [`BreakerRejected`] with the state and how long to wait.
    #[inline]
    pub fn acquire_token<C: Clock + ?Sized>(
        &self,
        clock: &C,
    ) -> Result<PermitToken, BreakerRejected> {
        // Fast path: closed with no slow-call threshold needs no clock and
        // changes nothing, so the decision is this one load; it is exactly
        // what the general path decides for such a word (it finds the word
        // unchanged, skips its compare-and-swap and records no start).
        //
        // Ordering: the breaker itself needs no more than `Relaxed` here.
        // The decision reads nothing but this word, and whatever this
        // load may return, an `Acquire` load may return too (only later
        // reads differ). A later report loads `ctrl` with `Acquire` itself
        // and every write of `ctrl` is a release read-modify-write, so the
        // report synchronizes with every transition up to the word it
        // sees without help from this load. `Acquire` is kept anyway: it
        // is what the general path always gave (an admitted call
        // happens-after the transition that let it in, e.g. a `reset`),
        // and it costs nothing on x86-64 (a plain `mov`, like `Relaxed`)
        // and little elsewhere.
        let w = self.ctrl.load(Ordering::Acquire);
        if mode_of(w) == CLOSED && self.config.slow_call_threshold.is_none() {
            return Ok(PermitToken {
                generation: field_u32(gen_of(w)),
                started_at: None,
            });
        }
        self.acquire_token_slow(clock)
    }

    /// The general admission: every state, with clock readings and
    /// transitions. Out of line so the fast path above inlines small.
    #[inline(never)]
    fn acquire_token_slow<C: Clock + ?Sized>(
        &self,
        clock: &C,
    ) -> Result<PermitToken, BreakerRejected> {
        let mut now = LazyNow::new(clock);
        let mut fix: Fix = None;
        let mut suspect = None;
        let decided = loop {
            let decided = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
                fix = None;
                now.forget();
                self.acquire_step(w, &mut now, &mut fix, suspect)
            });
            match decided {
                Err(Refusal::Reload(w)) => suspect = Some(w),
                Err(Refusal::Rejected(rejected)) => break Err(rejected),
                Ok(admitted) => break Ok(admitted),
            }
        };
        match decided {
            Ok(admitted) => {
                if admitted.entered {
                    self.enter(admitted.generation, now.fresh());
                } else if let Some((g, seen)) = fix {
                    self.restamp(g, seen, now.get());
                }
                let started_at =
                    if self.config.slow_call_threshold.is_some() && admitted.mode != DISABLED {
                        Some(now.get())
                    } else {
                        None
                    };
                Ok(PermitToken {
                    generation: field_u32(admitted.generation),
                    started_at,
                })
            }
            Err(rejected) => {
                if let Some((g, seen)) = fix {
                    self.restamp(g, seen, now.get());
                }
                self.rejections.fetch_add(1, Ordering::Relaxed);
                Err(rejected)
            }
        }
    }

    /// Ticks since generation `g` (of control word `w`) began, for an
    /// admission decision. Unknown time (not yet stamped, or the clock looks
    /// behind) counts as zero and notes a stamp repair in `fix`. A stamp of
    /// a newer generation means `w` is stale: decide again on a fresh
    /// control word, unless `w` was already `suspect` (then the stamp is
    /// not newer but very old, and is repaired).
    fn admission_elapsed(
        &self,
        w: Word,
        t: Timestamp,
        fix: &mut Fix,
        suspect: Option<Word>,
    ) -> Result<Word, Refusal> {
        let g = gen_of(w);
        match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => Ok(e),
            SinceView::Behind(seen) | SinceView::Unstamped(seen) => {
                *fix = Some((g, seen));
                Ok(0)
            }
            SinceView::Superseded(seen) => {
                if suspect == Some(w) {
                    *fix = Some((g, seen));
                    Ok(0)
                } else {
                    Err(Refusal::Reload(w))
                }
            }
        }
    }

    /// The pure admission decision for control word `w`.
    fn acquire_step<C: Clock + ?Sized>(
        &self,
        w: Word,
        now: &mut LazyNow<'_, C>,
        fix: &mut Fix,
        suspect: Option<Word>,
    ) -> Result<(Admitted, Word), Refusal> {
        let g = gen_of(w);
        let mode = mode_of(w);
        match mode {
            CLOSED | DISABLED => Ok((
                Admitted {
                    mode,
                    generation: g,
                    entered: false,
                },
                w,
            )),
            OPEN => {
                let t = now.get();
                let e = self.admission_elapsed(w, t, fix, suspect)?;
                if e >= self.reset_ticks {
                    let g1 = next_gen(g);
                    Ok((
                        Admitted {
                            mode: HALF_OPEN,
                            generation: g1,
                            entered: true,
                        },
                        pack(HALF_OPEN, g1, 1, 0),
                    ))
                } else {
                    Err(Refusal::Rejected(BreakerRejected {
                        state: BreakerState::Open,
                        retry_after: remaining(self.reset_ticks - e, t),
                    }))
                }
            }
            HALF_OPEN => {
                let t = now.get();
                let e = self.admission_elapsed(w, t, fix, suspect)?;
                if e >= self.half_open_ticks {
                    // The round is over: close if a probe succeeded (none
                    // failed, or we would be open), else start a new round.
                    let g1 = next_gen(g);
                    let next = if b_of(w) > 0 {
                        self.prepare_window(g1);
                        CLOSED
                    } else {
                        HALF_OPEN
                    };
                    let probes = if next == HALF_OPEN { 1 } else { 0 };
                    Ok((
                        Admitted {
                            mode: next,
                            generation: g1,
                            entered: true,
                        },
                        pack(next, g1, probes, 0),
                    ))
                } else if a_of(w) < self.config.half_open_max_probes as Word {
                    Ok((
                        Admitted {
                            mode,
                            generation: g,
                            entered: false,
                        },
                        pack(HALF_OPEN, g, a_of(w) + 1, b_of(w)),
                    ))
                } else {
                    Err(Refusal::Rejected(BreakerRejected {
                        state: BreakerState::HalfOpen,
                        retry_after: remaining(self.half_open_ticks - e, t),
                    }))
                }
            }
            _ => Err(Refusal::Rejected(BreakerRejected {
                state: BreakerState::ForcedOpen,
                retry_after: Duration::MAX,
            })),
        }
    }

    /// Ticks since generation `g` began, as seen at `t`, for a report.
    /// Unknown (not yet stamped, or the clock looks behind) counts as zero,
    /// and a stamp repair is noted in `fix`. Superseded also counts as
    /// zero: the report's compare-and-swap then fails on the changed
    /// control word and the report is found stale.
    #[inline]
    fn elapsed(&self, g: Word, t: Timestamp, fix: &mut Fix) -> Word {
        match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => e,
            SinceView::Behind(seen) | SinceView::Unstamped(seen) => {
                *fix = Some((g, seen));
                0
            }
            SinceView::Superseded(_) => 0,
        }
    }

    fn view_since(&self, g: Word, now: Word) -> SinceView {
        let s = self.since.load(Ordering::Acquire);
        let tag = s >> TIME_BITS;
        let want = g & TAG_MASK;
        if tag == want {
            match elapsed_ticks(now, s & TIME_MASK) {
                Some(e) => SinceView::Elapsed(e),
                None => SinceView::Behind(s),
            }
        } else if tag_is_older(tag, want) {
            SinceView::Unstamped(s)
        } else {
            SinceView::Superseded(s)
        }
    }

    /// One attempt to stamp generation `g` as beginning at `t`, replacing
    /// the observed value `seen` (an older generation's stamp, or `g`'s
    /// stamp that the clock is behind of). Losing the race is fine: the
    /// winner stamped a time at least as recent.
    fn restamp(&self, g: Word, seen: Word, t: Timestamp) {
        let _ = self.since.compare_exchange(
            seen,
            stamp_word(g, now_ticks(t)),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Records that this thread began generation `g` at `t`: stamps `since`
    /// unless a newer stamp (or a helper's stamp for `g`) is already there,
    /// and moves the failure-rate window to `g` (a no-op when closing: that
    /// was done before the control word moved). So the window's generation
    /// follows every transition and never falls half the generation space
    /// behind, where it would look newer.
    fn enter(&self, g: Word, t: Timestamp) {
        let stamp = stamp_word(g, now_ticks(t));
        let want = g & TAG_MASK;
        let mut s = self.since.load(Ordering::Acquire);
        while tag_is_older(s >> TIME_BITS, want) {
            match self
                .since
                .compare_exchange_weak(s, stamp, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        self.prepare_window(g);
        self.transitions.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports the outcome of the call `token` was admitted for.
    ///
    /// A token from an earlier generation is ignored (counted in
    /// [`BreakerMetrics::stale_verdicts`]). Reads the clock only when the
    /// decision needs it: to measure a call against the slow-call
    /// threshold, in the half-open state, and to time-stamp a transition.
    /// Report each token at most once.
    #[inline]
    pub fn report<C: Clock + ?Sized>(&self, token: PermitToken, outcome: Outcome, clock: &C) {
        // Fast path: a success of the current closed generation with no
        // consecutive failures to reset, on a breaker with neither a
        // slow-call threshold (nothing to measure) nor a failure-rate
        // window (nothing to record), changes nothing: the general path
        // would find the same and return without a write. The generation
        // is compared unmasked, so a forged token never matches.
        // Ordering: as in `acquire_token`, `Acquire` like the general path.
        if outcome == Outcome::Success
            && self.config.slow_call_threshold.is_none()
            && self.config.failure_rate.is_none()
        {
            let w = self.ctrl.load(Ordering::Acquire);
            if mode_of(w) == CLOSED && gen_of(w) == token.generation as Word && a_of(w) == 0 {
                return;
            }
        }
        self.report_slow(token, outcome, clock);
    }

    /// The general report: every state and outcome. Out of line so the
    /// fast path above inlines small.
    #[inline(never)]
    fn report_slow<C: Clock + ?Sized>(&self, token: PermitToken, outcome: Outcome, clock: &C) {
        let w = self.ctrl.load(Ordering::Acquire);
        let g = token.generation as Word;
        if gen_of(w) != g {
            if outcome != Outcome::Ignored {
                self.stale.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let mode = mode_of(w);
        if mode != CLOSED && mode != HALF_OPEN {
            // Disabled records nothing; open states admit no calls.
            return;
        }
        let mut now = LazyNow::new(clock);
        let (failed, slow) = match outcome {
            Outcome::Ignored => {
                self.release(token);
                return;
            }
            Outcome::Failure => (true, false),
            Outcome::Success => {
                let slow = self.is_slow(token, &mut now);
                (slow, slow)
            }
        };
        let counted = match (mode, failed) {
            (CLOSED, false) => self.closed_success(w, g, &mut now),
            (CLOSED, true) => self.closed_failure(g, &mut now),
            (_, false) => self.probe_success(g, &mut now),
            (_, true) => self.probe_failure(g, &mut now),
        };
        if !counted {
            self.stale.fetch_add(1, Ordering::Relaxed);
        } else if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
            if slow {
                self.slow_calls.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn is_slow<C: Clock + ?Sized>(&self, token: PermitToken, now: &mut LazyNow<'_, C>) -> bool {
        match (self.config.slow_call_threshold, token.started_at) {
            (Some(threshold), Some(start)) => {
                now.get().saturating_duration_since(start) > threshold
            }
            _ => false,
        }
    }

    /// A success while closed: resets the consecutive failures (skipped
    /// when already zero: then this is a plain load) and records the call
    /// in the window.
    fn closed_success<C: Clock + ?Sized>(
        &self,
        w: Word,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> bool {
        if a_of(w) != 0 {
            let reset = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
                if mode_of(w) != CLOSED || gen_of(w) != g {
                    return Err(());
                }
                Ok(((), pack(CLOSED, g, 0, b_of(w))))
            });
            if reset.is_err() {
                return false;
            }
        }
        self.record(g, false, now);
        true
    }

    /// A failure while closed: counts it, opening at the threshold.
    fn closed_failure<C: Clock + ?Sized>(&self, g: Word, now: &mut LazyNow<'_, C>) -> bool {
        let threshold = self.config.failure_threshold as Word;
        let counted = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != CLOSED || gen_of(w) != g {
                return Err(());
            }
            let failures = a_of(w).saturating_add(1).min(FIELD_MAX);
            if failures >= threshold {
                Ok((true, pack(OPEN, next_gen(g), 0, 0)))
            } else {
                Ok((false, pack(CLOSED, g, failures, b_of(w))))
            }
        });
        match counted {
            Ok(true) => {
                self.enter(next_gen(g), now.fresh());
                true
            }
            Ok(false) => {
                self.record(g, true, now);
                true
            }
            Err(()) => false,
        }
    }

    /// A successful probe: frees its slot, counts it, and closes the
    /// circuit on `half_open_successes_to_close` or at the round's end.
    fn probe_success<C: Clock + ?Sized>(&self, g: Word, now: &mut LazyNow<'_, C>) -> bool {
        let to_close = match self.config.half_open_successes_to_close {
            Some(n) => n as Word,
            None => 0,
        };
        let mut fix: Fix = None;
        let closed = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            fix = None;
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            let successes = b_of(w).saturating_add(1).min(FIELD_MAX);
            let close = (to_close != 0 && successes >= to_close)
                || self.elapsed(g, now.get(), &mut fix) >= self.half_open_ticks;
            if close {
                let g1 = next_gen(g);
                self.prepare_window(g1);
                Ok((true, pack(CLOSED, g1, 0, 0)))
            } else {
                Ok((
                    false,
                    pack(HALF_OPEN, g, a_of(w).saturating_sub(1), successes),
                ))
            }
        });
        match closed {
            Ok(true) => {
                self.enter(next_gen(g), now.fresh());
                true
            }
            Ok(false) => {
                if let Some((g, seen)) = fix {
                    self.restamp(g, seen, now.get());
                }
                true
            }
            Err(()) => false,
        }
    }

    /// A failed probe: re-opens the circuit.
    fn probe_failure<C: Clock + ?Sized>(&self, g: Word, now: &mut LazyNow<'_, C>) -> bool {
        let opened = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            Ok(((), pack(OPEN, next_gen(g), 0, 0)))
        });
        if opened.is_ok() {
            self.enter(next_gen(g), now.fresh());
        }
        opened.is_ok()
    }

    /// No verdict: frees the probe slot if `token` is a probe of the
    /// current half-open round.
    #[inline]
    fn release(&self, token: PermitToken) {
        // Only a probe of the current round holds a slot; anything else
        // (the common case: a closed breaker) is this one load.
        let w = self.ctrl.load(Ordering::Acquire);
        if mode_of(w) == HALF_OPEN && gen_of(w) == token.generation as Word {
            self.release_probe(token);
        }
    }

    /// Frees the probe slot of `token` if it is still a probe of the
    /// current half-open round.
    #[inline(never)]
    fn release_probe(&self, token: PermitToken) {
        let g = token.generation as Word;
        let _ = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            Ok(((), pack(HALF_OPEN, g, a_of(w).saturating_sub(1), b_of(w))))
        });
    }

    // -- failure-rate window ------------------------------------------------

    /// Readies an empty window for generation `g`. Called before the
    /// control word moves to a closed generation, so no call of `g` sees an
    /// old window, and after every transition (see [`enter`](Self::enter)).
    /// Never moves the window back to an older generation: a report of an
    /// older generation cannot claim a slot afterwards.
    fn prepare_window(&self, g: Word) {
        if self.config.failure_rate.is_none() {
            return;
        }
        let installed = sync::update(&self.window_pos, Ordering::AcqRel, |p| {
            if gen_is_older(pos_gen(p), g) {
                Ok(((), pos_pack(g, 0, 0)))
            } else {
                Err(())
            }
        });
        if installed.is_ok() {
            for cell in &self.window_bits {
                cell.store(0, Ordering::Release);
            }
        }
    }

    /// Records a call of closed generation `g` in the window and opens the
    /// circuit if the failure rate calls for it.
    fn record<C: Clock + ?Sized>(&self, g: Word, failed: bool, now: &mut LazyNow<'_, C>) {
        let Some(fr) = self.config.failure_rate else {
            return;
        };
        let size = fr.window_size as Word;
        let claimed = sync::update(&self.window_pos, Ordering::AcqRel, |p| {
            if pos_gen(p) != g {
                return Err(());
            }
            let slot = pos_next(p);
            let next = if slot + 1 >= size { 0 } else { slot + 1 };
            let filled = (pos_filled(p) + 1).min(size);
            Ok((slot, pos_pack(g, filled, next)))
        });
        let Ok(slot) = claimed else {
            return;
        };
        let bit = 1u32 << (slot % 32);
        if let Some(cell) = self.window_bits.get((slot / 32) as usize) {
            if failed {
                cell.fetch_or(bit, Ordering::AcqRel);
            } else {
                cell.fetch_and(!bit, Ordering::AcqRel);
            }
        }
        // Re-read the position with a read-modify-write: all reporters'
        // re-reads are totally ordered on this word and each synchronizes
        // with the ones before it, so of two concurrent reporters the later
        // one sees the other's bit (in whichever ring word it is).
        let p = self.window_pos.fetch_add(0, Ordering::AcqRel);
        if pos_gen(p) != g {
            return;
        }
        let calls = field_u32(pos_filled(p));
        if calls < fr.minimum_calls {
            return;
        }
        let failures = self.window_failures(calls);
        if u64::from(failures) * 100 >= u64::from(fr.threshold_percent) * u64::from(calls) {
            let opened = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
                if mode_of(w) != CLOSED || gen_of(w) != g {
                    return Err(());
                }
                Ok(((), pack(OPEN, next_gen(g), 0, 0)))
            });
            if opened.is_ok() {
                self.enter(next_gen(g), now.fresh());
            }
        }
    }

    /// Failure bits among the first `calls` slots.
    fn window_failures(&self, calls: u32) -> u32 {
        let mut failures = 0;
        let mut base = 0u32;
        for cell in &self.window_bits {
            if base >= calls {
                break;
            }
            let bits = cell.load(Ordering::Acquire);
            let n = calls - base;
            let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
            failures += (bits & mask).count_ones();
            base += 32;
        }
        failures
    }

    // -- manual control -----------------------------------------------------

    fn set_mode<C: Clock + ?Sized>(&self, mode: Word, clock: &C) -> BreakerState {
        let moved = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            let g1 = next_gen(gen_of(w));
            if mode == CLOSED {
                self.prepare_window(g1);
            }
            Ok::<_, Infallible>(((mode_of(w), g1), pack(mode, g1, 0, 0)))
        });
        let (previous, g1) = match moved {
            Ok(moved) => moved,
            Err(never) => match never {},
        };
        self.enter(g1, clock.now());
        BreakerState::from_mode(previous)
    }

    /// Opens the circuit now, from any state; it goes half-open after
    /// `reset_timeout` as usual. Returns the previous state.
    pub fn trip<C: Clock + ?Sized>(&self, clock: &C) -> BreakerState {
        self.set_mode(OPEN, clock)
    }

    /// Closes the circuit, from any state (also leaves the forced-open and
    /// disabled modes), with counters and window cleared. Returns the
    /// previous state.
    pub fn reset<C: Clock + ?Sized>(&self, clock: &C) -> BreakerState {
        self.set_mode(CLOSED, clock)
    }

    /// Opens the circuit until [`reset`](Self::reset) (or
    /// [`trip`](Self::trip) or [`disable`](Self::disable)). Returns the
    /// previous state.
    pub fn force_open<C: Clock + ?Sized>(&self, clock: &C) -> BreakerState {
        self.set_mode(FORCED_OPEN, clock)
    }

    /// Admits every call and records nothing until [`reset`](Self::reset)
    /// (or [`trip`](Self::trip) or [`force_open`](Self::force_open)).
    /// Returns the previous state.
    pub fn disable<C: Clock + ?Sized>(&self, clock: &C) -> BreakerState {
        self.set_mode(DISABLED, clock)
    }

    /// A snapshot of the state and statistics. Reads the clock once, to
    /// date the last transition.
    pub fn metrics<C: Clock + ?Sized>(&self, clock: &C) -> BreakerMetrics {
        let w = self.ctrl.load(Ordering::Acquire);
        let g = gen_of(w);
        let mode = mode_of(w);
        let (consecutive_failures, probes_in_flight, probe_successes) = match mode {
            CLOSED => (field_u32(a_of(w)), 0, 0),
            HALF_OPEN => (0, field_u32(a_of(w)), field_u32(b_of(w))),
            _ => (0, 0, 0),
        };
        let window = self.config.failure_rate.map(|_| {
            let p = self.window_pos.load(Ordering::Acquire);
            if mode == CLOSED && pos_gen(p) == g {
                let calls = field_u32(pos_filled(p));
                WindowMetrics {
                    calls,
                    failures: self.window_failures(calls),
                }
            } else {
                WindowMetrics {
                    calls: 0,
                    failures: 0,
                }
            }
        });
        let t = clock.now();
        let last_transition = match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => {
                let ago = UNIT
                    .to_nanos(e)
                    .saturating_add(t.as_nanos() & (UNIT.nanos_per_tick() - 1));
                Timestamp::from_nanos(t.as_nanos().saturating_sub(ago))
            }
            _ => t,
        };
        BreakerMetrics {
            state: BreakerState::from_mode(mode),
            generation: field_u32(g),
            consecutive_failures,
            probes_in_flight,
            probe_successes,
            window,
            failures: self.failures.load(Ordering::Relaxed),
            slow_calls: self.slow_calls.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            stale_verdicts: self.stale.load(Ordering::Relaxed),
            last_transition,
        }
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use core::cell::Cell;
    extern crate alloc;
    use alloc::string::ToString;

    const SEC: Duration = Duration::from_secs(1);
    const NS: Duration = Duration::from_nanos(1);
    /// How late a timer may end: two ticks with the 32-bit layout.
    const SLACK: Duration = if ROUND_UP == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(2 * UNIT.nanos_per_tick())
    };

    fn breaker(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new(config).expect("valid config")
    }

    /// A clock at an odd time, so tick rounding is exercised.
    fn clock() -> ManualClock {
        ManualClock::starting_at(Timestamp::from_nanos(1_234_567_891_011))
    }

    fn fail(b: &CircuitBreaker, c: &ManualClock) {
        b.try_acquire(c).expect("admitted").failure(c);
    }

    fn succeed(b: &CircuitBreaker, c: &ManualClock) {
        b.try_acquire(c).expect("admitted").success(c);
    }

    #[track_caller]
    fn rejected(b: &CircuitBreaker, c: &ManualClock) -> BreakerRejected {
        b.try_acquire(c).expect_err("rejected")
    }

    /// `actual` is `expected`, up to the layout's tick slack.
    #[track_caller]
    fn assert_about(actual: Duration, expected: Duration) {
        assert!(
            actual >= expected && actual <= expected + SLACK,
            "{actual:?} not within [{expected:?}, {expected:?} + {SLACK:?}]"
        );
    }

    /// Waits out a rejection: one nanosecond early is still rejected, then
    /// the next call is admitted.
    #[track_caller]
    fn wait_out<'b>(b: &'b CircuitBreaker, c: &ManualClock) -> BreakerPermit<'b> {
        let r = rejected(b, c);
        c.advance(r.retry_after - NS);
        let again = rejected(b, c);
        assert_eq!(again.retry_after, NS, "retry_after is exact");
        c.advance(NS);
        b.try_acquire(c)
            .expect("admitted once retry_after has passed")
    }

    fn metrics(b: &CircuitBreaker, c: &ManualClock) -> BreakerMetrics {
        b.metrics(c)
    }

    struct CountingClock {
        now: Cell<u64>,
        reads: Cell<u32>,
    }

    impl CountingClock {
        fn take(&self) -> u32 {
            self.reads.replace(0)
        }
    }

    impl Clock for CountingClock {
        fn now(&self) -> Timestamp {
            self.reads.set(self.reads.get() + 1);
            Timestamp::from_nanos(self.now.get())
        }
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
        assert_eq!(b.config(), &d);
        let c = clock();
        for _ in 0..4 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let r = rejected(&b, &c);
        assert_eq!(r.state, BreakerState::HalfOpen);
        assert_about(r.retry_after, Duration::from_secs(30));
        probe.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn consecutive_failures_open_and_success_resets_them() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(3));
        let c = clock();
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 2);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        let m = metrics(&b, &c);
        assert_eq!(m.failures, 5);
        assert_eq!(m.transitions, 1);
        assert_eq!(m.generation, 1);
        assert_eq!(m.consecutive_failures, 0);
        let r = rejected(&b, &c);
        assert_eq!(r.state, BreakerState::Open);
        assert_about(r.retry_after, Duration::from_secs(60));
        assert_eq!(metrics(&b, &c).rejections, 1);
    }

    #[test]
    fn open_waits_exactly_reset_timeout() {
        let b = breaker(BreakerConfig::DEFAULT.with_reset_timeout(Duration::from_millis(1500)));
        let c = clock();
        let t0 = c.now();
        b.trip(&c);
        c.advance(Duration::from_millis(1500) - NS);
        assert_eq!(rejected(&b, &c).state, BreakerState::Open);
        c.set(t0);
        let probe = wait_out(&b, &c);
        assert!(c.now().saturating_duration_since(t0) >= Duration::from_millis(1500));
        assert!(c.now().saturating_duration_since(t0) <= Duration::from_millis(1500) + SLACK);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop(probe);
    }

    #[test]
    fn half_open_admits_at_most_max_probes_and_drop_frees_a_slot() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        let c = clock();
        b.trip(&c);
        let p1 = wait_out(&b, &c);
        let p2 = b.try_acquire(&c).expect("second probe");
        let r = rejected(&b, &c);
        assert_eq!(r.state, BreakerState::HalfOpen);
        assert_about(r.retry_after, Duration::from_secs(30));
        assert_eq!(metrics(&b, &c).probes_in_flight, 2);
        drop(p1); // no verdict: frees the slot, counts nothing
        let m = metrics(&b, &c);
        assert_eq!(
            (m.probes_in_flight, m.probe_successes, m.failures),
            (1, 0, 0)
        );
        let p3 = b.try_acquire(&c).expect("slot freed by drop");
        p3.ignore();
        let p4 = b.try_acquire(&c).expect("slot freed by ignore");
        assert!(b.try_acquire(&c).is_err());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop((p2, p4));
    }

    #[test]
    fn failed_probe_reopens_with_a_fresh_reset_timeout() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let probe = wait_out(&b, &c);
        let g = metrics(&b, &c).generation;
        c.advance(Duration::from_secs(10));
        probe.failure(&c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(metrics(&b, &c).generation, g + 1);
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop(probe);
    }

    #[test]
    fn closes_when_the_round_ends_with_a_success_checked_on_report() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let first = wait_out(&b, &c);
        c.advance(SEC);
        first.success(&c);
        // One success does not close before the round ends...
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(metrics(&b, &c).probe_successes, 1);
        // ...and the freed slot admits another probe.
        let second = b.try_acquire(&c).expect("slot free again");
        c.advance(Duration::from_secs(29) + SLACK);
        second.success(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        let m = metrics(&b, &c);
        assert_eq!((m.probes_in_flight, m.probe_successes), (0, 0));
    }

    #[test]
    fn closes_when_the_round_ends_with_a_success_checked_on_acquire() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_timeout(Duration::from_secs(5)));
        let c = clock();
        b.trip(&c);
        wait_out(&b, &c).success(&c);
        let held = b.try_acquire(&c).expect("second probe");
        let r = rejected(&b, &c);
        assert_about(r.retry_after, Duration::from_secs(5));
        c.advance(r.retry_after - NS);
        assert!(b.try_acquire(&c).is_err());
        c.advance(NS);
        let closed = b.try_acquire(&c).expect("round over: closed");
        assert_eq!(b.state(), BreakerState::Closed);
        // The probe still in flight belongs to the ended round.
        held.failure(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
        closed.success(&c);
    }

    #[test]
    fn successes_to_close_closes_early() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_half_open_max_probes(2)
                .with_half_open_successes_to_close(3),
        );
        let c = clock();
        b.trip(&c);
        let p1 = wait_out(&b, &c);
        let p2 = b.try_acquire(&c).unwrap();
        p1.success(&c);
        p2.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_lost_probe_token_does_not_wedge_the_breaker() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let lost = wait_out(&b, &c).into_token(); // the caller crashed
        let g = metrics(&b, &c).generation;
        // The round ends without a verdict; a new round admits a new probe.
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let m = metrics(&b, &c);
        assert_eq!((m.generation, m.probes_in_flight), (g + 1, 1));
        // The old round's late verdicts are ignored.
        b.report(lost, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.report(lost, Outcome::Ignored, &c);
        assert!(b.try_acquire(&c).is_err(), "the new probe keeps its slot");
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
        probe.success(&c);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_round_with_only_lost_probes_restarts_not_closes() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        let c = clock();
        b.trip(&c);
        let _lost = wait_out(&b, &c).into_token();
        c.advance(Duration::from_secs(30) + SLACK);
        let p = b.try_acquire(&c).unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(metrics(&b, &c).probes_in_flight, 1);
        drop(p);
    }

    #[test]
    fn stale_verdicts_do_not_drive_the_current_state() {
        // A slow success that began before the trip cannot close the circuit
        // or release the current probe's slot.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        let slow = b.try_acquire(&c).unwrap();
        b.trip(&c);
        let probe = wait_out(&b, &c);
        c.advance(Duration::from_secs(31));
        slow.success(&c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::HalfOpen);
        assert_eq!(
            (m.probes_in_flight, m.probe_successes, m.stale_verdicts),
            (1, 0, 1)
        );
        drop(probe);

        // A failure from before a reset does not count after it.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let old = b.try_acquire(&c).unwrap();
        b.reset(&c);
        old.failure(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).failures, 0);

        // A late failure from an earlier half-open round does not re-open
        // a later round; a late success does not count towards closing.
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        b.trip(&c);
        let early_a = wait_out(&b, &c).into_token();
        let early_b = b.acquire_token(&c).unwrap();
        c.advance(Duration::from_secs(30) + SLACK);
        let later = b.try_acquire(&c).unwrap();
        b.report(early_a, Outcome::Failure, &c);
        b.report(early_b, Outcome::Success, &c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::HalfOpen);
        assert_eq!((m.probes_in_flight, m.probe_successes), (1, 0));
        later.failure(&c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn dropping_a_closed_permit_counts_nothing() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = clock();
        fail(&b, &c);
        drop(b.try_acquire(&c).unwrap());
        b.try_acquire(&c).unwrap().ignore();
        let m = metrics(&b, &c);
        assert_eq!((m.consecutive_failures, m.failures), (1, 1));
    }

    #[test]
    fn slow_successes_count_as_failures() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(2)
                .with_slow_call_threshold(SEC),
        );
        let c = clock();
        // Exactly the threshold is not slower than it.
        let p = b.try_acquire(&c).unwrap();
        assert!(p.token().started_at().is_some());
        c.advance(SEC);
        p.success(&c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        // A clock that stepped back measures no time.
        let p = b.try_acquire(&c).unwrap();
        c.set(Timestamp::from_nanos(5));
        p.success(&c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        for _ in 0..2 {
            let p = b.try_acquire(&c).unwrap();
            c.advance(SEC + NS);
            p.success(&c);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let m = metrics(&b, &c);
        assert_eq!((m.failures, m.slow_calls), (2, 2));
    }

    #[test]
    fn the_clock_is_read_only_when_the_decision_needs_it() {
        let c = CountingClock {
            now: Cell::new(1_000),
            reads: Cell::new(0),
        };
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        b.try_acquire(&c).unwrap().success(&c);
        b.try_acquire(&c).unwrap().failure(&c);
        b.try_acquire(&c).unwrap().success(&c);
        drop(b.try_acquire(&c).unwrap());
        assert_eq!(c.take(), 0, "closed path reads no clock");
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire(&c).unwrap().failure(&c);
        b.try_acquire(&c).unwrap().failure(&c);
        assert_eq!(c.take(), 1, "opening stamps the time");
        assert!(b.try_acquire(&c).is_err());
        assert_eq!(c.take(), 1, "open reads the clock once");
        b.force_open(&c);
        c.take();
        assert!(b.try_acquire(&c).is_err());
        b.disable(&c);
        c.take();
        b.try_acquire(&c).unwrap().failure(&c);
        assert_eq!(c.take(), 0, "forced open and disabled read no clock");

        let b = breaker(BreakerConfig::DEFAULT.with_slow_call_threshold(SEC));
        let p = b.try_acquire(&c).unwrap();
        assert_eq!(
            c.take(),
            1,
            "slow-call threshold: admission records the start"
        );
        p.success(&c);
        assert_eq!(c.take(), 1);
    }

    fn rate_breaker(percent: u32, window: u32, minimum: u32) -> CircuitBreaker {
        breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(CircuitBreaker::MAX_COUNT)
                .with_failure_rate(FailureRateConfig::new(percent, window, minimum)),
        )
    }

    #[test]
    fn failure_rate_opens_after_minimum_calls() {
        let b = rate_breaker(50, 4, 4);
        let c = clock();
        succeed(&b, &c);
        fail(&b, &c);
        succeed(&b, &c);
        assert_eq!(
            metrics(&b, &c).window,
            Some(WindowMetrics {
                calls: 3,
                failures: 1
            })
        );
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(metrics(&b, &c).window.unwrap().calls, 0);
    }

    #[test]
    fn failure_rate_is_evaluated_on_success_too() {
        let b = rate_breaker(50, 10, 2);
        let c = clock();
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        succeed(&b, &c); // 1 of 2 failed: 50 %
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_slides() {
        let b = rate_breaker(50, 4, 4);
        let c = clock();
        fail(&b, &c);
        for _ in 0..4 {
            succeed(&b, &c); // the failure slides out
        }
        let w = metrics(&b, &c).window.unwrap();
        assert_eq!((w.calls, w.failures, w.failure_rate_percent()), (4, 0, 0));
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c); // 2 of the last 4, though only 3 of 7 overall
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_spans_several_words() {
        let b = rate_breaker(50, 100, 100);
        let c = clock();
        for _ in 0..60 {
            succeed(&b, &c);
        }
        for _ in 0..40 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).window.unwrap().failure_rate_percent(), 40);
        for _ in 0..9 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_starts_empty_after_closing() {
        let b = rate_breaker(50, 8, 2);
        let c = clock();
        for _ in 0..3 {
            fail(&b, &c);
            if b.state() == BreakerState::Open {
                break;
            }
        }
        assert_eq!(b.state(), BreakerState::Open);
        wait_out(&b, &c).success(&c);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        succeed(&b, &c);
        assert_eq!(
            metrics(&b, &c).window,
            Some(WindowMetrics {
                calls: 2,
                failures: 0
            })
        );
        // And after a manual reset.
        fail(&b, &c);
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).window.unwrap().failures, 0);
    }

    #[test]
    fn failure_rate_survives_a_long_time_without_closing() {
        // More than half the generation space of transitions without
        // closing (a dependency down for days: open, half-open, open, ...).
        let b = rate_breaker(50, 4, 2);
        let c = clock();
        let flaps = (CircuitBreaker::GENERATIONS / 2 + 10).min(20_000);
        for _ in 0..flaps {
            b.trip(&c);
        }
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).window.unwrap().calls, 1);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn either_rule_opens_the_circuit() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(2)
                .with_failure_rate(FailureRateConfig::new(90, 10, 10)),
        );
        let c = clock();
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn manual_modes() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        assert_eq!(b.trip(&c), BreakerState::Closed);
        assert_eq!(b.state(), BreakerState::Open);
        c.advance(Duration::from_secs(59));
        // Tripping an open breaker restarts its timer.
        assert_eq!(b.trip(&c), BreakerState::Open);
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));

        assert_eq!(b.force_open(&c), BreakerState::Open);
        let r = rejected(&b, &c);
        assert_eq!(r.state, BreakerState::ForcedOpen);
        assert_eq!(r.retry_after, Duration::MAX);
        assert_eq!(r.to_string(), "circuit breaker is forced open");
        c.advance(Duration::from_secs(3600));
        assert_eq!(rejected(&b, &c).state, BreakerState::ForcedOpen);

        assert_eq!(b.reset(&c), BreakerState::ForcedOpen);
        assert_eq!(b.state(), BreakerState::Closed);

        assert_eq!(b.disable(&c), BreakerState::Closed);
        let kept = b.try_acquire(&c).unwrap();
        for _ in 0..20 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Disabled);
        let m = metrics(&b, &c);
        assert_eq!(
            (m.failures, m.consecutive_failures, m.stale_verdicts),
            (0, 0, 0)
        );
        assert_eq!(b.reset(&c), BreakerState::Disabled);
        kept.failure(&c); // from the disabled generation: stale now
        let m = metrics(&b, &c);
        assert_eq!(
            (m.state, m.failures, m.stale_verdicts),
            (BreakerState::Closed, 0, 1)
        );
        assert_eq!(m.transitions, 6);
    }

    #[test]
    fn metrics_snapshot() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = clock();
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::Closed);
        assert_eq!(m.window, None);
        assert_eq!((m.generation, m.transitions, m.rejections), (0, 0, 0));
        c.advance(SEC);
        let t_trip = c.now();
        fail(&b, &c);
        fail(&b, &c);
        c.advance(SEC);
        let _ = b.try_acquire(&c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::Open);
        assert_eq!(
            (m.generation, m.transitions, m.rejections, m.failures),
            (1, 1, 1, 2)
        );
        assert!(m.last_transition <= t_trip);
        assert!(t_trip.saturating_duration_since(m.last_transition) < CircuitBreaker::TICK);
        // Backwards clock: the transition is "now".
        c.set(Timestamp::from_nanos(7));
        assert_eq!(metrics(&b, &c).last_transition, Timestamp::from_nanos(7));
    }

    #[test]
    fn a_clock_stepping_back_means_no_time_passed() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        c.advance(Duration::from_secs(1000));
        b.trip(&c);
        c.advance(Duration::from_secs(50));
        c.set(Timestamp::from_nanos(
            c.now().as_nanos() - 200 * 1_000_000_000,
        ));
        // Behind the stamp: restamped to now, the full timeout again.
        let r = rejected(&b, &c);
        assert_about(r.retry_after, Duration::from_secs(60));
        let probe = wait_out(&b, &c);
        // Half-open: the round restarts from a backwards step too.
        probe.success(&c);
        c.set(Timestamp::from_nanos(c.now().as_nanos() - 10_000_000_000));
        let p = b.try_acquire(&c).unwrap();
        c.advance(Duration::from_secs(29));
        p.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        c.advance(SEC + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn huge_clock_jumps_never_admit_early_or_panic() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::new();
        b.trip(&c);
        for jump in [1u64 << 62, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
            c.set(Timestamp::from_nanos(jump));
            // Seen modulo the wrap period: open at most one more timeout.
            match b.try_acquire(&c) {
                Ok(p) => p.failure(&c),
                Err(r) => assert!(r.retry_after <= Duration::from_secs(60) + SLACK),
            }
            assert_ne!(b.state(), BreakerState::Closed);
        }
        // At the end of time the clock is stuck: still no panic.
        c.advance(Duration::MAX);
        let _ = b.try_acquire(&c);
        let _ = b.metrics(&c);
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);

        // A jump of more than half the wrap period looks behind: restamp.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::new();
        b.trip(&c);
        c.advance(CircuitBreaker::TIME_WRAP / 2 + Duration::from_secs(1));
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));
        // A jump of a whole wrap period looks like no time: wait again.
        let b = breaker(BreakerConfig::DEFAULT);
        b.trip(&c);
        c.advance(CircuitBreaker::TIME_WRAP);
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));
        drop(wait_out(&b, &c));
    }

    #[test]
    fn an_unstamped_transition_counts_as_just_now() {
        // As if the thread that opened the breaker died before stamping.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.ctrl.store(pack(OPEN, 1, 0, 0), Ordering::Release);
        c.advance(Duration::from_secs(3600));
        let r = rejected(&b, &c);
        assert_about(r.retry_after, Duration::from_secs(60));
        // The reader stamped it, so the timeout runs from now.
        assert_eq!(b.since.load(Ordering::Acquire) >> TIME_BITS, 1);
        drop(wait_out(&b, &c));

        // A late winner never overwrites a newer generation's stamp.
        let b = breaker(BreakerConfig::DEFAULT);
        b.trip(&c); // generation 1
        b.since.store(stamp_word(2, 0), Ordering::Release);
        b.enter(1, c.now());
        assert_eq!(b.since.load(Ordering::Acquire), stamp_word(2, 0));
        // A stamp that looks newer while the control word stays put is in
        // fact ancient (more than half the tag space behind): repaired.
        c.advance(Duration::from_secs(3600));
        assert_about(rejected(&b, &c).retry_after, Duration::from_secs(60));
        assert_eq!(b.since.load(Ordering::Acquire) >> TIME_BITS, 1);
        drop(wait_out(&b, &c));
    }

    #[test]
    fn tokens_round_trip() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let c = clock();
        let t = b.acquire_token(&c).unwrap();
        assert_eq!(t.generation(), 0);
        assert_eq!(t.started_at(), None);
        let t = PermitToken::from_parts(t.generation(), t.started_at());
        b.report(t, Outcome::Success, &c);
        b.report(t, Outcome::Ignored, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        let t = b.try_acquire(&c).unwrap().into_token();
        b.report(t, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Open);
        // A forged generation outside the field never matches.
        b.report(
            PermitToken::from_parts(u32::MAX, None),
            Outcome::Failure,
            &c,
        );
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
    }

    #[test]
    fn fast_paths_decide_as_the_general_path() {
        // Closed, default config: acquire, success and drop read no clock
        // and change nothing.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = CountingClock {
            now: Cell::new(7),
            reads: Cell::new(0),
        };
        let t = b.acquire_token(&c).unwrap();
        assert_eq!((t.generation(), t.started_at()), (0, None));
        b.report(t, Outcome::Success, &c);
        drop(b.try_acquire(&c).unwrap());
        b.try_acquire(&c).unwrap().success(&c);
        assert_eq!(c.take(), 0);
        let before = b.ctrl.load(Ordering::Acquire);
        // A token that carries a start time (from another breaker or a
        // binding) is not measured without a threshold.
        let started = PermitToken::from_parts(0, Some(Timestamp::from_nanos(0)));
        b.report(started, Outcome::Success, &c);
        assert_eq!((b.ctrl.load(Ordering::Acquire), c.take()), (before, 0));

        // A pending consecutive failure is reset by a success (general path).
        fail(&b, &clock());
        assert_eq!(metrics(&b, &clock()).consecutive_failures, 1);
        succeed(&b, &clock());
        assert_eq!(metrics(&b, &clock()).consecutive_failures, 0);
        fail(&b, &clock());
        assert_eq!(b.state(), BreakerState::Closed);

        // Forged generations never match, even ones equal to the current
        // generation modulo the field.
        for forged in [CircuitBreaker::GENERATIONS, u32::MAX, 1] {
            b.report(PermitToken::from_parts(forged, None), Outcome::Success, &c);
        }
        let m = metrics(&b, &clock());
        assert_eq!((m.stale_verdicts, m.consecutive_failures), (3, 1));

        // A stale success of an older closed generation is stale.
        b.trip(&c);
        b.reset(&c);
        b.report(t, Outcome::Success, &c);
        assert_eq!(metrics(&b, &clock()).stale_verdicts, 4);

        // With a slow-call threshold admission records the start, and a
        // slow success counts as a failure.
        let b = breaker(BreakerConfig::DEFAULT.with_slow_call_threshold(SEC));
        c.take();
        let t = b.acquire_token(&c).unwrap();
        assert_eq!(
            (t.started_at(), c.take()),
            (Some(Timestamp::from_nanos(7)), 1)
        );
        c.now.set(7 + 2_000_000_000);
        b.report(t, Outcome::Success, &c);
        let m = metrics(&b, &clock());
        assert_eq!((m.consecutive_failures, m.slow_calls), (1, 1));

        // Disabled: no start recorded even with a threshold, nothing counted.
        b.disable(&c);
        let t = b.acquire_token(&c).unwrap();
        assert_eq!(t.started_at(), None);
        b.report(t, Outcome::Success, &c);
        b.report(t, Outcome::Failure, &c);
        assert_eq!(metrics(&b, &clock()).failures, 1);

        // With a failure-rate window a success is recorded in it.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_rate(FailureRateConfig::new(50, 4, 2)));
        succeed(&b, &clock());
        assert_eq!(metrics(&b, &clock()).window.unwrap().calls, 1);

        // Half-open: a verdict frees the probe's slot once (it does not
        // also run the drop path), dropping a probe frees its slot.
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(3));
        let c = clock();
        b.trip(&c);
        c.advance(Duration::from_secs(61));
        let p1 = b.try_acquire(&c).unwrap();
        let p2 = b.try_acquire(&c).unwrap();
        let p3 = b.try_acquire(&c).unwrap();
        assert_eq!(metrics(&b, &c).probes_in_flight, 3);
        p2.success(&c);
        let m = metrics(&b, &c);
        assert_eq!((m.probes_in_flight, m.probe_successes), (2, 1));
        let t3 = p3.into_token();
        assert_eq!(metrics(&b, &c).probes_in_flight, 2);
        drop(p1);
        assert_eq!(metrics(&b, &c).probes_in_flight, 1);
        b.report(t3, Outcome::Ignored, &c);
        assert_eq!(metrics(&b, &c).probes_in_flight, 0);
    }

    #[test]
    fn rejection_display() {
        let r = BreakerRejected {
            state: BreakerState::HalfOpen,
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(
            r.to_string(),
            "circuit breaker is half_open; retry after 1.5s"
        );
        assert_eq!(BreakerState::Closed.to_string(), "closed");
    }

    #[track_caller]
    fn assert_config_error(config: BreakerConfig, option: &str, problem: ConfigProblem) {
        let err = CircuitBreaker::new(config).expect_err("invalid");
        assert_eq!((err.option.as_str(), err.problem), (option, problem));
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

    #[test]
    fn layout_constants() {
        assert_eq!(MODE_BITS + GEN_BITS + 2 * FIELD_BITS, WORD_BITS);
        assert_eq!(next_gen(GEN_MASK), 0);
        assert!(gen_is_older(GEN_MASK, 0));
        assert!(!gen_is_older(0, GEN_MASK));
        assert!(tag_is_older(TAG_MASK, 0));
        assert!(!tag_is_older(3, 3));
        let w = pack(DISABLED, GEN_MASK, FIELD_MAX, FIELD_MAX);
        assert_eq!(
            (mode_of(w), gen_of(w), a_of(w), b_of(w)),
            (DISABLED, GEN_MASK, FIELD_MAX, FIELD_MAX)
        );
        let p = pos_pack(GEN_MASK, 128, 127);
        assert_eq!(
            (pos_gen(p), pos_filled(p), pos_next(p)),
            (GEN_MASK, 128, 127)
        );
        if WIDE {
            assert_eq!(CircuitBreaker::GENERATIONS, 1 << 29);
            assert_eq!(CircuitBreaker::MAX_COUNT, 65_535);
            assert_eq!(CircuitBreaker::TICK, NS);
            assert_eq!(CircuitBreaker::TIME_WRAP, Duration::from_nanos(1 << 56));
        } else {
            assert_eq!(CircuitBreaker::GENERATIONS, 1 << 13);
            assert_eq!(CircuitBreaker::MAX_COUNT, 255);
            assert_eq!(CircuitBreaker::TICK, Duration::from_nanos(1 << 20));
            assert_eq!(CircuitBreaker::TIME_WRAP, Duration::from_nanos(1 << 46));
        }
        assert!(CircuitBreaker::MAX_TIMEOUT < CircuitBreaker::TIME_WRAP / 2);
    }

    #[test]
    fn generation_wraps_after_the_documented_horizon() {
        if WIDE {
            return; // 2^29 transitions: too slow for a unit test
        }
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let c = clock();
        let old = b.acquire_token(&c).unwrap();
        for _ in 0..CircuitBreaker::GENERATIONS - 2 {
            b.trip(&c);
        }
        b.reset(&c); // generation GENERATIONS - 1: the token is stale
        b.report(old, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        b.trip(&c);
        b.reset(&c); // wrapped to the token's generation + 1
        b.report(old, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
