//! Rate limiter: a token bucket as GCRA in one atomic word.
//!
//! A [`RateLimiter`] admits at most [`requests_per_period`] requests per
//! [`period`] on average, lets up to [`burst`] of them through at once, and
//! can book future slots for callers that are willing to wait (a FIFO queue
//! bounded by [`max_queue_size`] and [`queue_timeout`]).
//!
//! It is the *Generic Cell Rate Algorithm*: the whole state is one number,
//! the **theoretical arrival time** (TAT), kept in one atomic [`Word`]
//! (`u64`, or `u32` on targets without 64-bit compare-and-swap). With the
//! *emission interval* `T` (the time one permit "costs") and the burst
//! capacity `B`, a request for `n` permits at time `now` is granted when
//! `max(TAT, now) + n·T <= now + B·T`, and then moves the TAT there. Every
//! decision is one load and one compare-and-swap; a rejection writes nothing.
//!
//! [`requests_per_period`]: RateLimiterConfig::requests_per_period
//! [`period`]: RateLimiterConfig::period
//! [`burst`]: RateLimiterConfig::burst
//! [`max_queue_size`]: RateLimiterConfig::max_queue_size
//! [`queue_timeout`]: RateLimiterConfig::queue_timeout
//! [`Word`]: #memory-layout
//!
//! # Options
//!
//! | option (spec name) | default | meaning |
//! | --- | --- | --- |
//! | `requests_per_period` (`requestsPerPeriod`) | 10 | permits per `period` |
//! | `period` (`periodInMs`) | 1 s | the period |
//! | `burst` | `None` | permits available at once; `None` = `requests_per_period` ([`Mode::Bursty`]) or 1 ([`Mode::Strict`]) |
//! | `max_queue_size` (`maxQueueSize`) | 100 | permits that may be booked ahead (waiting) at once |
//! | `queue_timeout` (`queueTimeout`) | 30 s | the longest a reservation may wait |
//! | `mode` | [`Mode::Bursty`] | see below |
//!
//! # Which mode
//!
//! * **[`Mode::Bursty`]** (default) — protect *your own* service. The
//!   emission interval is `period / requests_per_period` and up to `burst`
//!   permits go through at once. A full bucket followed by a period of
//!   sustained traffic lets up to `burst + requests_per_period` permits
//!   through within one period (close to `2N` with the default burst): the
//!   documented bound is **at most `burst + floor(W / T)` permits in any
//!   closed time window of length `W`**, `T` being
//!   [`emission_interval`](RateLimiter::emission_interval). That is the
//!   right behaviour for a service (the average is what matters, idle time
//!   earns a burst), but it breaks a third party's quota that is counted
//!   over sliding windows (see governor issues #184 and #219).
//! * **[`Mode::Strict`]** — comply with *someone else's* quota: never more
//!   than `requests_per_period` (`N`) permits in **any** half-open window of
//!   length `period` (`P`). It keeps the single word: GCRA with burst `B`
//!   admits at most `B + floor(W / T)` permits in a window of length `W`, so
//!   choosing `T = P / (N - B + 1)` (rounded *up* to whole ticks, and with
//!   the window measured in whole ticks) gives at most `N` in any window
//!   shorter than `P`. The price of a burst is sustained rate: the limiter
//!   sustains `N - B + 1` permits per period. The default strict burst is
//!   therefore **1 — pure pacing at `N / P`**, which keeps the full quota
//!   as throughput and simply spaces requests `P / N` apart; set `burst` up
//!   to `N` if a faster start matters more than throughput (`burst = N / 2`
//!   gives half the quota at once and about half of it sustained).
//!
//! # Reservations and the queue
//!
//! [`reserve`](RateLimiter::reserve) books the next free slot(s) and tells
//! the caller how long to wait: the blocking layer queues callers FIFO by
//! letting each one sleep until its [`Reservation::ready_at`]. The queue is
//! not stored anywhere — it *is* the part of the TAT that lies beyond
//! `now + B·T`: the **queue depth** is that distance divided by `T`,
//! rounded up ([`queue_depth`](RateLimiter::queue_depth)), counted in
//! permits (a reservation of `n` permits counts `n`). So the whole decision
//! stays one CAS, and a reservation is refused, booking nothing, when
//!
//! * the queue depth after booking would exceed `max_queue_size`
//!   ([`RateLimitError::QueueFull`], checked first), or
//! * its wait would exceed the caller's `max_wait` or `queue_timeout`,
//!   whichever is smaller ([`RateLimitError::WaitTooLong`]).
//!
//! `max_queue_size = 0` or `queue_timeout = 0` means "never wait":
//! `reserve` then only succeeds when the permits are available at once. A
//! caller that gives up before its `ready_at` may hand a waiting booking
//! back with [`cancel`](RateLimiter::cancel), which succeeds only while
//! nobody booked after it (otherwise the slot simply stays used:
//! conservative). A [`Reservation`] is not `Copy`: cancelling consumes it,
//! so a booking cannot be handed back twice.
//!
//! `max_queue_size` counts permits, not callers, and the depth is derived
//! from time: a reservation of `n` permits leaves the queue gradually, one
//! emission interval per permit, although its caller waits for all `n`.
//!
//! # Errors
//!
//! Rejections are [`RateLimitError`] values that say when to come back:
//! `RateLimited { retry_after }` (no permit now; nothing was consumed),
//! `QueueFull { retry_after }`, `WaitTooLong { wait, retry_after }`, and
//! `ExceedsCapacity { requested, capacity }` for a request of more than
//! `burst` permits, which can never succeed. Every `retry_after` is exact:
//! retrying that much later succeeds unless someone else took the permits
//! meanwhile, and retrying one nanosecond earlier fails. (The exception is
//! the end of the 64-bit clock range, below.)
//!
//! # Time, ticks and the wrap
//!
//! The TAT is stored as *ticks* of `2^shift` nanoseconds
//! ([`resolution`](RateLimiter::resolution)), and the clock is read after
//! loading the word, so with a monotonic clock the TAT is never more than
//! `max_lead = B·T + min(queue_timeout, max_queue_size·T)` ahead of now.
//!
//! * **64-bit layout:** one tick is one nanosecond of the clock and the
//!   TAT does not wrap: it is compared in plain order, so the limiter is
//!   exact for any clock movement, forwards or backwards, however large.
//!   The one limit is the end of the clock's range: a grant or booking whose
//!   TAT would pass `u64::MAX` ns (584 years after the clock's epoch, in
//!   practice only a saturated test clock) is refused with
//!   `RateLimited { retry_after: Duration::MAX }`.
//! * **32-bit layout:** the shift is chosen per limiter at construction: the
//!   largest one that keeps at least 2^10 ticks per emission interval
//!   (rounding error below 0.1 %), raised further only if `max_lead` would
//!   not fit in 2^29 ticks (an eighth of the wrap); that always succeeds
//!   with at least 2^8 ticks per interval because the 32-bit layout limits
//!   `burst` and `max_queue_size` to 2^19. The word wraps after
//!   [`wrap_period`](RateLimiter::wrap_period) (78 hours with the default
//!   options). A TAT that appears more than `2·max_lead` ahead of now (or
//!   behind it) is stale and read as a full bucket, which keeps a limiter
//!   that idled across any number of wraps correct. The one remaining
//!   corner is conservative, never over-granting: an idle gap within
//!   `2·max_lead` *before* a multiple of the wrap period (for a fresh
//!   limiter: a first use within that distance before a multiple of the
//!   wrap after the clock's epoch) may show up to `2·max_lead` of time as
//!   used — the bucket partly or fully drained, possibly a wait — which
//!   heals as the clock moves on, within at most `2·max_lead`.
//!
//! A clock that steps backwards is "no time passed", or even more
//! conservative: decisions are made at the earlier time against the same
//! TAT, so the limiter may see fewer permits, never more. The 64-bit layout
//! guarantees that for any backwards step; the 32-bit layout for steps up
//! to `max_lead` (a larger one is indistinguishable from a wrap and may
//! grant up to one extra burst).
//!
//! # Memory layout
//!
//! [`RateLimiter`] is `#[repr(C)]` plain data — one atomic word plus
//! configuration numbers, no pointers — so it can live in a `static` or in
//! memory shared between processes. `Word` is `u64` where the target has
//! 64-bit atomics and `u32` otherwise (or with
//! `RUSTFLAGS="--cfg stockade_force_32bit"`); no wider atomic is ever used.
//! The size is 48 bytes with the 64-bit layout (8-byte TAT, three 8-byte
//! tick counts, burst, queue size, shift) and 28 bytes with the 32-bit
//! layout (everything 4 bytes).
//!
//! `try_acquire` costs one load, one clock read and one compare-and-swap
//! (retried, with backoff, only under contention); a rejection costs no
//! write at all.
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::clock::{Clock, ManualClock};
//! use stockade::limiter::{RateLimitError, RateLimiter, RateLimiterConfig};
//!
//! // 2 requests per second, bursts of 2, a queue of at most 1 permit.
//! const CONFIG: RateLimiterConfig = RateLimiterConfig::DEFAULT
//!     .with_requests_per_period(2)
//!     .with_period(Duration::from_secs(1))
//!     .with_max_queue_size(1);
//! static LIMITER: RateLimiter = match RateLimiter::new(CONFIG) {
//!     Ok(limiter) => limiter,
//!     Err(_) => panic!("invalid rate limiter configuration"),
//! };
//! let clock = ManualClock::new();
//!
//! // One permit costs 500 ms (rounded up to whole ticks in the 32-bit layout).
//! let interval = LIMITER.emission_interval();
//! assert!(interval >= Duration::from_millis(500) && interval < Duration::from_millis(501));
//!
//! assert!(LIMITER.try_acquire(&clock).is_ok());
//! assert!(LIMITER.try_acquire(&clock).is_ok());
//! assert_eq!(
//!     LIMITER.try_acquire(&clock),
//!     Err(RateLimitError::RateLimited { retry_after: interval })
//! );
//!
//! // A caller willing to wait books the next slot...
//! let booked = LIMITER.reserve(1, Duration::from_secs(1), &clock).unwrap();
//! assert_eq!(booked.wait(), interval);
//! assert_eq!(LIMITER.queue_depth(&clock), 1);
//! // ...and the queue (one permit) is now full.
//! assert!(matches!(
//!     LIMITER.reserve(1, Duration::from_secs(5), &clock),
//!     Err(RateLimitError::QueueFull { .. })
//! ));
//!
//! clock.advance(booked.wait()); // the blocking layer sleeps here
//! assert_eq!(clock.now(), booked.ready_at());
//! ```

// `Word` is `u64` or `u32` by layout: casts between it and `u64` are needed
// in one layout and no-ops in the other.
#![allow(clippy::unnecessary_cast)]

use core::fmt;
use core::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
use crate::sync::{AtomicWord, Ordering, WIDE, Word, const_fn_unless_loom, update};
use crate::time::TickUnit;

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

/// Why a permit was not granted or a reservation not booked.
///
/// Nothing is consumed by a rejection. Every `retry_after` is exact: as
/// long as nobody else takes permits meanwhile, the same call succeeds
/// that much later and fails one nanosecond earlier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateLimitError {
    /// No permit is available now ([`RateLimiter::try_acquire`],
    /// [`RateLimiter::try_acquire_n`]).
    RateLimited {
        /// When the requested permits will be available.
        retry_after: Duration,
    },
    /// Booking would put more than `max_queue_size` permits in the queue
    /// ([`RateLimiter::reserve`]).
    QueueFull {
        /// When the queue will have room for this reservation.
        retry_after: Duration,
    },
    /// The reservation would have to wait longer than the caller's
    /// `max_wait` or the configured `queue_timeout`
    /// ([`RateLimiter::reserve`]).
    WaitTooLong {
        /// How long it would have had to wait.
        wait: Duration,
        /// When its wait will fit the limit.
        retry_after: Duration,
    },
    /// More permits were requested than the burst capacity: this can never
    /// succeed.
    ExceedsCapacity {
        /// Permits requested.
        requested: u32,
        /// The burst capacity.
        capacity: u32,
    },
}

impl RateLimitError {
    /// When retrying makes sense, or `None` if it never does.
    pub const fn retry_after(&self) -> Option<Duration> {
        match *self {
            RateLimitError::RateLimited { retry_after }
            | RateLimitError::QueueFull { retry_after }
            | RateLimitError::WaitTooLong { retry_after, .. } => Some(retry_after),
            RateLimitError::ExceedsCapacity { .. } => None,
        }
    }
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RateLimitError::RateLimited { retry_after } => {
                write!(f, "rate limited: retry after {retry_after:?}")
            }
            RateLimitError::QueueFull { retry_after } => {
                write!(f, "rate limiter queue is full: retry after {retry_after:?}")
            }
            RateLimitError::WaitTooLong { wait, retry_after } => write!(
                f,
                "rate limiter wait of {wait:?} is too long: retry after {retry_after:?}"
            ),
            RateLimitError::ExceedsCapacity {
                requested,
                capacity,
            } => write!(
                f,
                "{requested} permits exceed the rate limiter's burst capacity of {capacity}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl core::error::Error for RateLimitError {}

/// A booked slot: the permits are the caller's from [`ready_at`](Self::ready_at) on.
///
/// The blocking layer sleeps for [`wait`](Self::wait) and then proceeds
/// without asking the limiter again. A caller that gives up earlier may
/// hand the booking back with [`RateLimiter::cancel`].
///
/// A reservation is deliberately neither `Copy` nor `Clone`: cancelling
/// consumes it, so the same booking cannot be handed back twice (a second
/// cancel could otherwise free a slot that someone else booked since).
#[derive(Debug, PartialEq, Eq, Hash)]
#[must_use = "a reservation books permits: wait until `ready_at`, or cancel it"]
pub struct Reservation {
    permits: u32,
    wait: Duration,
    ready_at: Timestamp,
    /// The TAT this booking wrote.
    tat: Word,
    /// The TAT it replaced.
    prev: Word,
}

impl Reservation {
    /// Permits booked.
    pub const fn permits(&self) -> u32 {
        self.permits
    }

    /// How long to wait from the moment of booking (zero if the permits
    /// were available at once).
    pub const fn wait(&self) -> Duration {
        self.wait
    }

    /// When the permits may be used: the booking time plus [`wait`](Self::wait).
    pub const fn ready_at(&self) -> Timestamp {
        self.ready_at
    }

    /// `true` if the permits were available at once.
    pub const fn is_immediate(&self) -> bool {
        self.wait.is_zero()
    }
}

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
struct Plan {
    unit: TickUnit,
    interval: Word,
    limit: Word,
    queue_timeout: Word,
    burst: u32,
    max_queue_size: u32,
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

const fn plan(config: &RateLimiterConfig) -> Result<Plan, ConfigError> {
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
const fn nanos_to_duration(nanos: u128) -> Duration {
    let secs = nanos / 1_000_000_000;
    if secs > u64::MAX as u128 {
        Duration::MAX
    } else {
        Duration::new(secs as u64, (nanos % 1_000_000_000) as u32)
    }
}

/// A lock-free GCRA rate limiter in one atomic word.
///
/// See the [module documentation](self) for the algorithm, the modes, the
/// queue and the time horizon.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::clock::ManualClock;
/// use stockade::limiter::{RateLimiter, RateLimiterConfig};
///
/// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT).unwrap(); // 10/s, burst 10
/// let clock = ManualClock::new();
/// for _ in 0..10 {
///     limiter.try_acquire(&clock).unwrap();
/// }
/// let retry = limiter.try_acquire(&clock).unwrap_err().retry_after().unwrap();
/// assert_eq!(retry, limiter.emission_interval()); // 100 ms (rounded up to ticks)
/// clock.advance(retry);
/// assert!(limiter.try_acquire(&clock).is_ok());
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct RateLimiter {
    /// The theoretical arrival time, in wrapping ticks.
    tat: AtomicWord,
    /// `T`, the emission interval, in ticks.
    interval: Word,
    /// `B·T`: how far the TAT may be ahead of now for a grant.
    limit: Word,
    /// `min(queue_timeout, max_queue_size · T)` in ticks (rounded down).
    queue_timeout: Word,
    /// `B`.
    burst: u32,
    /// `Q`, in permits.
    max_queue_size: u32,
    /// Ticks of `2^shift` ns.
    unit: TickUnit,
}

/// What the word says at `now`: the tick, how far the TAT is ahead of it.
#[derive(Clone, Copy)]
struct View {
    now: Timestamp,
    tick: Word,
    lead: u64,
}

impl RateLimiter {
    const_fn_unless_loom! {
        /// A limiter with a full bucket, or the first invalid option.
        ///
        /// # Errors
        ///
        /// A [`ConfigError`] naming the option: `requests_per_period` zero or
        /// more than one per nanosecond of `period`; `period` zero or too
        /// long; `burst` `Some(0)`, above `requests_per_period` in strict
        /// mode, or (like `max_queue_size`, `queue_timeout`) too large for
        /// the state layout.
        pub fn new(config: RateLimiterConfig) -> Result<RateLimiter, ConfigError> {
            match plan(&config) {
                Ok(plan) => Ok(RateLimiter {
                    tat: AtomicWord::new(0),
                    interval: plan.interval,
                    limit: plan.limit,
                    queue_timeout: plan.queue_timeout,
                    burst: plan.burst,
                    max_queue_size: plan.max_queue_size,
                    unit: plan.unit,
                }),
                Err(e) => Err(e),
            }
        }
    }

    /// The burst capacity `B`: the most permits one call can get.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The queue bound, in permits.
    pub const fn max_queue_size(&self) -> u32 {
        self.max_queue_size
    }

    /// The emission interval `T` actually used: the time one permit costs,
    /// rounded up to whole ticks.
    pub const fn emission_interval(&self) -> Duration {
        nanos_to_duration((self.interval as u128) << self.unit.shift())
    }

    /// The tick: the resolution of the state word (1 ns with the 64-bit
    /// layout, a per-limiter power of two with the 32-bit layout).
    pub const fn resolution(&self) -> Duration {
        Duration::from_nanos(self.unit.nanos_per_tick())
    }

    /// The effective queue timeout: `queue_timeout` rounded down to the
    /// resolution and capped at `max_queue_size` emission intervals.
    pub const fn queue_timeout(&self) -> Duration {
        nanos_to_duration((self.queue_timeout as u128) << self.unit.shift())
    }

    /// How long the state word takes to wrap: `2^(32 + shift)` ns with the
    /// 32-bit layout; 2^64 ns (584 years, the whole clock range, which the
    /// 64-bit layout does not wrap around) with the 64-bit layout.
    pub const fn wrap_period(&self) -> Duration {
        nanos_to_duration(1u128 << (Word::BITS + self.unit.shift()))
    }

    /// The largest lead (TAT minus now) the 32-bit layout reads as a real
    /// TAT; beyond it the TAT is stale and the bucket full.
    #[inline]
    const fn stale_after(&self) -> Word {
        // limit + queue_timeout <= 2^29 (checked in `plan`).
        self.limit
            .saturating_add(self.queue_timeout)
            .saturating_mul(2)
    }

    /// Reads the clock (after the word was loaded) and relates it to `tat`.
    #[inline]
    fn view<C: Clock + ?Sized>(&self, tat: Word, clock: &C) -> View {
        let now = clock.now();
        let tick = self.unit.ticks(now);
        let lead = if WIDE {
            // Nanoseconds that never wrap: plain order.
            if tat > tick { (tat - tick) as u64 } else { 0 }
        } else {
            let d = tat.wrapping_sub(tick);
            if d <= self.stale_after() { d as u64 } else { 0 }
        };
        View { now, tick, lead }
    }

    /// The TAT `lead` ticks after the view's tick; `None` past the end of
    /// the 64-bit clock range.
    #[inline]
    fn tat_at(view: &View, lead: u64) -> Option<Word> {
        if WIDE {
            (view.tick as u64).checked_add(lead).map(|tat| tat as Word)
        } else {
            Some(view.tick.wrapping_add(lead as Word))
        }
    }

    /// The refusal at the end of the 64-bit clock range.
    const END_OF_TIME: RateLimitError = RateLimitError::RateLimited {
        retry_after: Duration::MAX,
    };

    /// `ticks` from the view's tick on, as a duration from its exact `now`.
    #[inline]
    fn after(&self, view: &View, ticks: u64) -> Duration {
        let frac = view.now.as_nanos() & (self.unit.nanos_per_tick() - 1);
        let shift = self.unit.shift();
        let nanos = if ticks > u64::MAX >> shift {
            u64::MAX
        } else {
            ticks << shift
        };
        Duration::from_nanos(nanos.saturating_sub(frac))
    }

    #[inline]
    fn cost(&self, n: u32) -> u64 {
        (n as u64).saturating_mul(self.interval as u64)
    }

    /// Takes one permit now, or says when to retry. Consumes nothing on
    /// rejection.
    ///
    /// One load, one clock read, one compare-and-swap (retried under
    /// contention).
    ///
    /// # Errors
    ///
    /// [`RateLimitError::RateLimited`] with the exact `retry_after`.
    #[inline]
    pub fn try_acquire<C: Clock + ?Sized>(&self, clock: &C) -> Result<(), RateLimitError> {
        self.try_acquire_n(1, clock)
    }

    /// Takes `n` permits now (all or nothing), or says when to retry.
    /// `n = 0` always succeeds without reading the clock.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ExceedsCapacity`] if `n` is greater than the burst
    /// (it never can succeed), else [`RateLimitError::RateLimited`] with the
    /// exact time until all `n` permits are available (or `Duration::MAX`
    /// at the end of the 64-bit clock range, see the module docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::clock::ManualClock;
    /// use stockade::limiter::{RateLimitError, RateLimiter, RateLimiterConfig};
    ///
    /// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT.with_burst(5)).unwrap();
    /// let clock = ManualClock::new();
    /// assert!(limiter.try_acquire_n(3, &clock).is_ok());
    /// assert!(matches!(limiter.try_acquire_n(3, &clock), Err(RateLimitError::RateLimited { .. })));
    /// assert_eq!(
    ///     limiter.try_acquire_n(6, &clock),
    ///     Err(RateLimitError::ExceedsCapacity { requested: 6, capacity: 5 })
    /// );
    /// ```
    pub fn try_acquire_n<C: Clock + ?Sized>(
        &self,
        n: u32,
        clock: &C,
    ) -> Result<(), RateLimitError> {
        self.check_capacity(n)?;
        if n == 0 {
            return Ok(());
        }
        let cost = self.cost(n);
        update(&self.tat, Ordering::AcqRel, |tat| {
            let view = self.view(tat, clock);
            let next = view.lead.saturating_add(cost);
            if next <= self.limit as u64 {
                match Self::tat_at(&view, next) {
                    Some(tat) => Ok(((), tat)),
                    None => Err(Self::END_OF_TIME),
                }
            } else {
                Err(RateLimitError::RateLimited {
                    retry_after: self.after(&view, next - self.limit as u64),
                })
            }
        })
    }

    /// Books `n` permits at the next free slot and says how long to wait
    /// for them; refuses, booking nothing, if the queue would overflow or
    /// the wait would exceed `max_wait` or the queue timeout.
    ///
    /// Reservations are served in booking order (FIFO): each one's
    /// `ready_at` is at least `n · T` after the previous one's. A
    /// reservation whose permits are available at once has a zero wait and
    /// counts as an acquisition. `n = 0` books nothing and is ready now.
    ///
    /// # Errors
    ///
    /// [`RateLimitError::ExceedsCapacity`] if `n` is greater than the
    /// burst; [`RateLimitError::QueueFull`] if more than `max_queue_size`
    /// permits would be waiting; [`RateLimitError::WaitTooLong`] if the
    /// wait would exceed `min(max_wait, queue_timeout)`;
    /// `RateLimited { retry_after: Duration::MAX }` only if the booking
    /// would pass the end of the 64-bit clock range.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::clock::ManualClock;
    /// use stockade::limiter::{RateLimiter, RateLimiterConfig};
    ///
    /// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT.with_burst(1)).unwrap();
    /// let clock = ManualClock::new();
    /// let first = limiter.reserve(1, Duration::from_secs(1), &clock).unwrap();
    /// let second = limiter.reserve(1, Duration::from_secs(1), &clock).unwrap();
    /// assert_eq!(first.wait(), Duration::ZERO);
    /// assert_eq!(second.wait(), limiter.emission_interval()); // about 100 ms
    /// ```
    pub fn reserve<C: Clock + ?Sized>(
        &self,
        n: u32,
        max_wait: Duration,
        clock: &C,
    ) -> Result<Reservation, RateLimitError> {
        self.check_capacity(n)?;
        if n == 0 {
            let now = clock.now();
            let tick = self.unit.ticks(now);
            return Ok(Reservation {
                permits: 0,
                wait: Duration::ZERO,
                ready_at: now,
                tat: tick,
                prev: tick,
            });
        }
        let cost = self.cost(n);
        let max_wait = if max_wait.as_nanos() < self.queue_timeout().as_nanos() {
            max_wait
        } else {
            self.queue_timeout()
        };
        let queue_room = (self.max_queue_size as u64).saturating_mul(self.interval as u64);
        update(&self.tat, Ordering::AcqRel, |tat| {
            let view = self.view(tat, clock);
            let next = view.lead.saturating_add(cost);
            // What a cancel restores. Only a waiting reservation can be
            // cancelled, and waiting means the lead was honoured (> 0), so
            // this is `max(TAT, now)`.
            let prev = tat;
            let over = next.saturating_sub(self.limit as u64);
            let wait = if over == 0 {
                Duration::ZERO
            } else if over > queue_room {
                return Err(RateLimitError::QueueFull {
                    retry_after: self.after(&view, over - queue_room),
                });
            } else {
                let wait = self.after(&view, over);
                if wait > max_wait {
                    return Err(RateLimitError::WaitTooLong {
                        wait,
                        retry_after: wait.saturating_sub(max_wait),
                    });
                }
                wait
            };
            let Some(booked) = Self::tat_at(&view, next) else {
                return Err(Self::END_OF_TIME);
            };
            let reservation = Reservation {
                permits: n,
                wait,
                ready_at: view.now.saturating_add(wait),
                tat: booked,
                prev,
            };
            Ok((reservation, booked))
        })
    }

    /// Hands back a reservation that is still waiting, so the next caller
    /// can have its slot; gives it back as `Err` if that is not possible.
    ///
    /// This succeeds only for a reservation that had to wait, before its
    /// `ready_at`, and while nobody booked after it: the latest booking can
    /// be undone exactly, an earlier one cannot without moving everyone
    /// behind it. Otherwise the permits simply stay booked, which is
    /// conservative (the caller may still use them at `ready_at`). After a
    /// successful cancel the caller must not use the permits.
    ///
    /// # Errors
    ///
    /// The reservation itself, unchanged, when it cannot be handed back.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::clock::ManualClock;
    /// use stockade::limiter::{RateLimiter, RateLimiterConfig};
    ///
    /// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT.with_burst(1)).unwrap();
    /// let clock = ManualClock::new();
    /// limiter.try_acquire(&clock).unwrap();
    /// let waiting = limiter.reserve(1, Duration::from_secs(1), &clock).unwrap();
    /// assert_eq!(limiter.queue_depth(&clock), 1);
    /// assert!(limiter.cancel(waiting, &clock).is_ok()); // the caller gave up
    /// assert_eq!(limiter.queue_depth(&clock), 0);
    /// ```
    pub fn cancel<C: Clock + ?Sized>(
        &self,
        reservation: Reservation,
        clock: &C,
    ) -> Result<(), Reservation> {
        if reservation.wait.is_zero() || clock.now() >= reservation.ready_at {
            return Err(reservation);
        }
        match self.tat.compare_exchange(
            reservation.tat,
            reservation.prev,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(_) => Err(reservation),
        }
    }

    /// Permits that [`try_acquire_n`](Self::try_acquire_n) could take right
    /// now (between 0 and the burst).
    pub fn available<C: Clock + ?Sized>(&self, clock: &C) -> u32 {
        let view = self.view(self.tat.load(Ordering::Acquire), clock);
        let free = (self.limit as u64).saturating_sub(view.lead) / self.interval as u64;
        if free > u32::MAX as u64 {
            u32::MAX
        } else {
            free as u32
        }
    }

    /// Permits booked but not yet ready: how far the TAT lies beyond
    /// `now + B·T`, in emission intervals, rounded up (saturating at
    /// `u32::MAX`, which only a clock stepped far back can show).
    pub fn queue_depth<C: Clock + ?Sized>(&self, clock: &C) -> u32 {
        let view = self.view(self.tat.load(Ordering::Acquire), clock);
        let over = view.lead.saturating_sub(self.limit as u64);
        let interval = self.interval as u64;
        let depth = over / interval + if over % interval != 0 { 1 } else { 0 };
        if depth > u32::MAX as u64 {
            u32::MAX
        } else {
            depth as u32
        }
    }

    #[inline]
    fn check_capacity(&self, n: u32) -> Result<(), RateLimitError> {
        if n > self.burst {
            Err(RateLimitError::ExceedsCapacity {
                requested: n,
                capacity: self.burst,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(all(test, not(stockade_loom)))]
// The crate links `std` (not `alloc`) for its tests.
#[allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const NS: Duration = Duration::from_nanos(1);
    const SEC: Duration = Duration::from_secs(1);

    fn limiter(config: RateLimiterConfig) -> RateLimiter {
        match RateLimiter::new(config) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    fn config_error(config: RateLimiterConfig) -> ConfigError {
        match RateLimiter::new(config) {
            Ok(_) => panic!("accepted {config:?}"),
            Err(e) => e,
        }
    }

    fn at(nanos: u64) -> ManualClock {
        ManualClock::starting_at(Timestamp::from_nanos(nanos))
    }

    /// A clock at `nanos` rounded down to `l`'s tick, so waits are whole
    /// intervals in both layouts (`retry_after_is_exact` covers the rest).
    fn aligned(l: &RateLimiter, nanos: u64) -> ManualClock {
        let tick = l.resolution().as_nanos() as u64;
        at(nanos / tick * tick)
    }

    /// Grants until the first rejection; the count.
    fn drain(l: &RateLimiter, clock: &ManualClock) -> u32 {
        let mut n = 0;
        while l.try_acquire(clock).is_ok() {
            n += 1;
            assert!(n <= 1_000_000, "limiter never stops granting");
        }
        n
    }

    fn retry_after(r: Result<(), RateLimitError>) -> Duration {
        match r {
            Err(RateLimitError::RateLimited { retry_after }) => retry_after,
            other => panic!("expected RateLimited, got {other:?}"),
        }
    }

    /// `d` is `expected` rounded up by at most 1/1024 (the 32-bit layout's
    /// tick rounding), or exactly `expected` with the 64-bit layout.
    fn assert_rounded_up(d: Duration, expected: Duration) {
        if WIDE {
            assert_eq!(d, expected);
        } else {
            assert!(
                d >= expected && d <= expected + expected / 1024,
                "{d:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn spec_defaults() {
        let c = RateLimiterConfig::DEFAULT;
        assert_eq!(c.requests_per_period, 10);
        assert_eq!(c.period, Duration::from_millis(1000));
        assert_eq!(c.burst, None);
        assert_eq!(c.max_queue_size, 100);
        assert_eq!(c.queue_timeout, Duration::from_millis(30_000));
        assert_eq!(c.mode, Mode::Bursty);
        assert_eq!(RateLimiterConfig::default(), c);
        assert_eq!(Mode::default(), Mode::Bursty);

        let l = limiter(c);
        assert_eq!(l.burst(), 10);
        assert_eq!(l.max_queue_size(), 100);
        assert_rounded_up(l.emission_interval(), Duration::from_millis(100));
        // The queue holds 100 permits = 10 s, less than the 30 s timeout.
        assert_eq!(l.queue_timeout(), l.emission_interval() * 100);
        let clock = ManualClock::new();
        assert_eq!(l.available(&clock), 10);
        assert_eq!(drain(&l, &clock), 10);
        assert_eq!(l.available(&clock), 0);
    }

    #[test]
    fn builders_set_every_option() {
        let c = RateLimiterConfig::DEFAULT
            .with_requests_per_period(7)
            .with_period(Duration::from_secs(3))
            .with_burst(4)
            .with_max_queue_size(9)
            .with_queue_timeout(Duration::from_secs(2))
            .with_mode(Mode::Strict);
        assert_eq!(
            c,
            RateLimiterConfig {
                requests_per_period: 7,
                period: Duration::from_secs(3),
                burst: Some(4),
                max_queue_size: 9,
                queue_timeout: Duration::from_secs(2),
                mode: Mode::Strict,
            }
        );
        let l = limiter(c);
        assert_eq!(l.burst(), 4);
        assert_eq!(l.max_queue_size(), 9);
        // Strict: T = 3 s / (7 - 4 + 1).
        assert_rounded_up(l.emission_interval(), Duration::from_millis(750));
        assert!(l.queue_timeout() <= Duration::from_secs(2));
        assert!(l.queue_timeout() > Duration::from_secs(2) - l.resolution());
    }

    #[test]
    fn rate_and_period_set_the_interval() {
        let l = limiter(
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(3)
                .with_period(Duration::from_secs(1)),
        );
        // 1 s / 3 rounded up: never faster than the configured rate.
        assert_rounded_up(l.emission_interval(), Duration::from_nanos(333_333_334));
        assert_eq!(l.burst(), 3);
        let clock = ManualClock::new();
        assert_eq!(drain(&l, &clock), 3);
        // A long run grants the rate, not more.
        let mut granted = 0;
        for _ in 0..3000 {
            clock.advance(Duration::from_millis(1));
            granted += drain(&l, &clock);
        }
        assert_eq!(granted, 8); // 3 s at 3/s, minus the partial interval in flight
    }

    #[test]
    fn burst_caps_grants_at_once() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(3));
        let clock = at(12_345);
        assert_eq!(drain(&l, &clock), 3);
        // Idle time refills to the burst, not beyond.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(l.available(&clock), 3);
        assert_eq!(drain(&l, &clock), 3);
        // Bursts larger than the rate are allowed in bursty mode.
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(25));
        assert_eq!(drain(&l, &clock), 25);
    }

    #[test]
    fn n_permits_all_or_nothing() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(5));
        let clock = aligned(&l, 999);
        assert_eq!(l.try_acquire_n(0, &clock), Ok(()));
        assert_eq!(l.available(&clock), 5);
        assert_eq!(l.try_acquire_n(3, &clock), Ok(()));
        assert_eq!(l.available(&clock), 2);
        // 3 more: rejected, and nothing consumed.
        let wait = retry_after(l.try_acquire_n(3, &clock));
        assert_eq!(wait, l.emission_interval());
        assert_eq!(l.available(&clock), 2);
        assert_eq!(l.try_acquire_n(2, &clock), Ok(()));
        // More than the burst never succeeds: a distinct error, no clock needed.
        assert_eq!(
            l.try_acquire_n(6, &clock),
            Err(RateLimitError::ExceedsCapacity {
                requested: 6,
                capacity: 5
            })
        );
        clock.advance(Duration::from_secs(100));
        assert_eq!(
            l.try_acquire_n(u32::MAX, &clock),
            Err(RateLimitError::ExceedsCapacity {
                requested: u32::MAX,
                capacity: 5
            })
        );
        assert_eq!(l.try_acquire_n(5, &clock), Ok(()));
    }

    #[test]
    fn retry_after_is_exact() {
        for start in [0, 1, 77_777_777, 123_456_789_012] {
            let l = limiter(
                RateLimiterConfig::DEFAULT
                    .with_requests_per_period(7)
                    .with_burst(4),
            );
            let clock = at(start);
            assert_eq!(drain(&l, &clock), 4);
            clock.advance(Duration::from_millis(30));
            for n in [1, 2, 4] {
                let wait = retry_after(l.try_acquire_n(n, &clock));
                let base = clock.now();
                // One nanosecond early: still rejected, retry_after shrinks by 1 ns.
                clock.set(base.saturating_add(wait - NS));
                assert_eq!(retry_after(l.try_acquire_n(n, &clock)), NS);
                clock.set(base.saturating_add(wait));
                assert_eq!(
                    l.try_acquire_n(n, &clock),
                    Ok(()),
                    "n = {n}, start = {start}"
                );
            }
        }
    }

    #[test]
    fn reservations_are_fifo_and_bounded() {
        let l = limiter(
            RateLimiterConfig::DEFAULT
                .with_burst(2)
                .with_max_queue_size(3),
        );
        let t = l.emission_interval();
        let clock = aligned(&l, 5_000);
        let start = clock.now();
        let mut ready = [Timestamp::ZERO; 5];
        for (i, slot) in ready.iter_mut().enumerate() {
            let r = match l.reserve(1, Duration::MAX, &clock) {
                Ok(r) => r,
                Err(e) => panic!("reservation {i}: {e}"),
            };
            assert_eq!(r.permits(), 1);
            assert_eq!(r.is_immediate(), i < 2);
            assert_eq!(r.ready_at(), start.saturating_add(r.wait()));
            *slot = r.ready_at();
            assert_eq!(l.queue_depth(&clock), (i as u32).saturating_sub(1));
        }
        // Two at once, then one per interval, in booking order.
        assert_eq!(ready[0], start);
        assert_eq!(ready[1], start);
        for (k, &r) in ready.iter().enumerate().skip(2) {
            assert_eq!(r, start.saturating_add(t * (k as u32 - 1)));
        }
        // The queue (3 permits) is full: refused, nothing consumed.
        let full = l.reserve(1, Duration::MAX, &clock);
        assert_eq!(full, Err(RateLimitError::QueueFull { retry_after: t }));
        assert_eq!(l.queue_depth(&clock), 3);
        // try_acquire does not jump the queue.
        assert!(l.try_acquire(&clock).is_err());
        // Once the first waiter is due, there is room for one more.
        clock.advance(t);
        assert_eq!(l.queue_depth(&clock), 2);
        let r = l.reserve(1, Duration::MAX, &clock).unwrap();
        assert_eq!(r.ready_at(), start.saturating_add(t * 4));
    }

    #[test]
    fn reservation_refusals_consume_nothing() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(1));
        let t = l.emission_interval();
        let clock = aligned(&l, 31);
        assert!(l.reserve(1, Duration::ZERO, &clock).unwrap().is_immediate());
        // The next slot is one interval away: a shorter max wait refuses it.
        assert_eq!(
            l.reserve(1, t - NS, &clock),
            Err(RateLimitError::WaitTooLong {
                wait: t,
                retry_after: NS
            })
        );
        assert_eq!(
            l.reserve(1, Duration::ZERO, &clock),
            Err(RateLimitError::WaitTooLong {
                wait: t,
                retry_after: t
            })
        );
        assert_eq!(l.queue_depth(&clock), 0);
        // ...and the refusals did not move the slot.
        let r = l.reserve(1, t, &clock).unwrap();
        assert_eq!(r.wait(), t);
        assert_eq!(l.queue_depth(&clock), 1);
        // WaitTooLong's retry_after is exact.
        let e = l.reserve(1, t, &clock).unwrap_err();
        assert_eq!(
            e,
            RateLimitError::WaitTooLong {
                wait: t * 2,
                retry_after: t
            }
        );
        clock.advance(t - NS);
        assert!(l.reserve(1, t, &clock).is_err());
        clock.advance(NS);
        assert_eq!(l.reserve(1, t, &clock).unwrap().wait(), t);
    }

    #[test]
    fn queue_timeout_bounds_the_wait() {
        let l = limiter(
            RateLimiterConfig::DEFAULT
                .with_burst(1)
                .with_queue_timeout(Duration::from_millis(250)),
        );
        let t = l.emission_interval();
        assert_eq!(
            l.queue_timeout(),
            Duration::from_nanos(
                (250_000_000 / l.resolution().as_nanos() * l.resolution().as_nanos()) as u64
            )
        );
        let clock = ManualClock::new();
        assert!(l.reserve(1, Duration::MAX, &clock).is_ok()); // immediate
        assert_eq!(l.reserve(1, Duration::MAX, &clock).unwrap().wait(), t);
        assert_eq!(l.reserve(1, Duration::MAX, &clock).unwrap().wait(), t * 2);
        // The third waiter would wait 300 ms > 250 ms.
        match l.reserve(1, Duration::MAX, &clock) {
            Err(RateLimitError::WaitTooLong { wait, retry_after }) => {
                assert_eq!(wait, t * 3);
                assert_eq!(retry_after, t * 3 - l.queue_timeout());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.queue_depth(&clock), 2);
    }

    #[test]
    fn zero_queue_means_never_wait() {
        for c in [
            RateLimiterConfig::DEFAULT.with_max_queue_size(0),
            RateLimiterConfig::DEFAULT.with_queue_timeout(Duration::ZERO),
        ] {
            let l = limiter(c.with_burst(2));
            let clock = ManualClock::new();
            assert!(l.reserve(2, Duration::MAX, &clock).unwrap().is_immediate());
            assert!(l.reserve(1, Duration::MAX, &clock).is_err());
            assert_eq!(l.queue_depth(&clock), 0);
            clock.advance(l.emission_interval());
            assert!(l.reserve(1, Duration::MAX, &clock).unwrap().is_immediate());
        }
    }

    #[test]
    fn n_permit_reservations_count_in_the_queue() {
        let l = limiter(
            RateLimiterConfig::DEFAULT
                .with_burst(4)
                .with_max_queue_size(5),
        );
        let t = l.emission_interval();
        let clock = aligned(&l, 3);
        assert!(l.reserve(4, Duration::MAX, &clock).unwrap().is_immediate());
        let r = l.reserve(3, Duration::MAX, &clock).unwrap();
        assert_eq!(r.wait(), t * 3);
        assert_eq!(l.queue_depth(&clock), 3);
        // 3 more would make 6 waiting > 5.
        assert_eq!(
            l.reserve(3, Duration::MAX, &clock),
            Err(RateLimitError::QueueFull { retry_after: t })
        );
        let r = l.reserve(2, Duration::MAX, &clock).unwrap();
        assert_eq!(r.wait(), t * 5);
        assert_eq!(r.permits(), 2);
        assert_eq!(
            l.reserve(5, Duration::MAX, &clock),
            Err(RateLimitError::ExceedsCapacity {
                requested: 5,
                capacity: 4
            })
        );
        let r0 = l.reserve(0, Duration::ZERO, &clock).unwrap();
        assert!(r0.is_immediate());
        assert_eq!(r0.permits(), 0);
        assert!(l.cancel(r0, &clock).is_err());
    }

    #[test]
    fn cancel_returns_only_the_latest_waiting_booking() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(1));
        let t = l.emission_interval();
        let clock = aligned(&l, 10);
        let now = l.reserve(1, Duration::MAX, &clock).unwrap();
        let a = l.reserve(1, Duration::MAX, &clock).unwrap();
        let b = l.reserve(1, Duration::MAX, &clock).unwrap();
        let a_ready = a.ready_at();
        let now = l.cancel(now, &clock).unwrap_err(); // it did not wait
        // Not even after a clock that stepped back.
        clock.set(Timestamp::ZERO);
        let _now = l.cancel(now, &clock).unwrap_err();
        clock.set(Timestamp::from_nanos(
            a_ready.as_nanos() - t.as_nanos() as u64,
        ));
        let a = l.cancel(a, &clock).unwrap_err(); // b was booked after it
        assert_eq!(l.queue_depth(&clock), 2);
        assert_eq!(l.cancel(b, &clock), Ok(()));
        assert_eq!(l.queue_depth(&clock), 1);
        assert_eq!(l.cancel(a, &clock), Ok(())); // now it is the latest
        assert_eq!(l.queue_depth(&clock), 0);
        assert_eq!(retry_after(l.try_acquire(&clock)), t);
        // The slot of `a` is free again.
        let again = l.reserve(1, Duration::MAX, &clock).unwrap();
        assert_eq!(again.ready_at(), a_ready);
        // Past its ready time a booking cannot be returned.
        clock.set(again.ready_at());
        let again = l.cancel(again, &clock).unwrap_err();
        assert_eq!(again.ready_at(), a_ready);
    }

    #[test]
    fn strict_mode_never_exceeds_the_quota_in_any_window() {
        for burst in [None, Some(1), Some(3), Some(5)] {
            let mut c = RateLimiterConfig::DEFAULT
                .with_requests_per_period(5)
                .with_period(SEC)
                .with_mode(Mode::Strict);
            c.burst = burst;
            let l = limiter(c);
            let clock = at(1_234);
            // Hammer every millisecond for 5 s; log grant times.
            let mut log = [0u64; 64];
            let mut len = 0;
            for _ in 0..5000 {
                while l.try_acquire(&clock).is_ok() {
                    log[len] = clock.now().as_nanos();
                    len += 1;
                }
                clock.advance(Duration::from_millis(1));
            }
            let log = &log[..len];
            let p = SEC.as_nanos() as u64;
            for (i, &start) in log.iter().enumerate() {
                let in_window = log[i..].iter().take_while(|&&g| g < start + p).count();
                assert!(
                    in_window <= 5,
                    "burst {burst:?}: {in_window} grants in a window"
                );
            }
            // Sustained rate is N - B + 1 per period.
            let b = burst.unwrap_or(1) as usize;
            assert!(
                len >= b + (5 - b + 1) * 4,
                "burst {burst:?}: only {len} grants"
            );
        }
        // Bursty mode, for contrast, admits close to 2N in one period.
        let l = limiter(RateLimiterConfig::DEFAULT.with_requests_per_period(5));
        let clock = ManualClock::new();
        let mut granted = drain(&l, &clock);
        for _ in 0..999 {
            clock.advance(Duration::from_millis(1));
            granted += drain(&l, &clock);
        }
        assert_eq!(granted, 9);
    }

    #[test]
    fn strict_mode_checks_burst() {
        let c = RateLimiterConfig::DEFAULT.with_mode(Mode::Strict);
        assert_eq!(limiter(c).burst(), 1);
        assert_rounded_up(limiter(c).emission_interval(), Duration::from_millis(100));
        assert_eq!(limiter(c.with_burst(10)).burst(), 10);
        assert_eq!(
            config_error(c.with_burst(11)),
            ConfigError::new(
                ConfigOption::Burst,
                ConfigValue::Count(11),
                ConfigProblem::Exceeds {
                    other: ConfigOption::RequestsPerPeriod,
                    limit: ConfigValue::Count(10),
                }
            )
        );
    }

    #[test]
    fn backwards_clock_never_grants_extra() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(3));
        let t = l.emission_interval();
        let clock = at(3_600_000_000_000);
        assert_eq!(drain(&l, &clock), 3);
        let drained = clock.now();
        // Steps back by less than a second, then by more: nothing new.
        for back in [NS, t, SEC, SEC * 5] {
            clock.set(Timestamp::from_nanos(
                drained.as_nanos() - back.as_nanos() as u64,
            ));
            assert_eq!(drain(&l, &clock), 0);
            assert_eq!(l.available(&clock), 0);
            assert!(retry_after(l.try_acquire(&clock)) > back);
        }
        // Back at the drain time and one interval on: exactly one.
        clock.set(drained.saturating_add(t));
        assert_eq!(drain(&l, &clock), 1);
        // With a half-empty bucket, a step back does not refill it either.
        clock.advance(t);
        assert_eq!(l.available(&clock), 1);
        clock.set(drained);
        assert_eq!(l.available(&clock), 0);
    }

    #[test]
    fn huge_jumps_refill_to_the_burst_only() {
        let l = limiter(RateLimiterConfig::DEFAULT);
        let clock = at(17);
        assert_eq!(drain(&l, &clock), 10);
        // 100 years later (36.5 Ms) and 200 years later: a full bucket, no more.
        for _ in 0..2 {
            clock.advance(Duration::from_secs(100 * 365 * 86_400));
            assert_eq!(l.available(&clock), 10);
            assert_eq!(drain(&l, &clock), 10);
        }
        // The clock saturates at the end of time. The 64-bit TAT does not
        // wrap: nothing can be booked past u64::MAX ns. The 32-bit one wraps
        // on: frozen time grants a burst at most.
        clock.advance(Duration::MAX);
        assert_eq!(clock.now().as_nanos(), u64::MAX);
        if WIDE {
            assert_eq!(l.try_acquire(&clock), Err(RateLimiter::END_OF_TIME));
            assert_eq!(
                l.reserve(1, Duration::MAX, &clock),
                Err(RateLimiter::END_OF_TIME)
            );
            assert_eq!(l.available(&clock), 10); // it reads as full, but...
            assert_eq!(drain(&l, &clock), 0); // ...books nothing
        } else {
            assert!(drain(&l, &clock) <= 10);
            assert_eq!(drain(&l, &clock), 0);
            assert!(l.reserve(1, Duration::MAX, &clock).is_ok());
            assert_eq!(drain(&l, &clock), 0);
        }
    }

    #[test]
    fn end_of_time() {
        let l = limiter(RateLimiterConfig::DEFAULT);
        let t = l.emission_interval();
        let clock = at(u64::MAX - 3 * t.as_nanos() as u64);
        if WIDE {
            // Three intervals of clock range left: three grants, then refused.
            assert_eq!(drain(&l, &clock), 3);
            assert_eq!(l.try_acquire(&clock), Err(RateLimiter::END_OF_TIME));
            // Rejections that are not about the end stay exact.
            assert_eq!(
                l.try_acquire_n(10, &clock),
                Err(RateLimitError::RateLimited { retry_after: t * 3 })
            );
        } else {
            // The 32-bit word wraps across it. (Use the limiter half a wrap
            // earlier first: a fresh word at this clock value would sit in
            // the documented wrap corner.)
            let wrap = l.wrap_period().as_nanos() as u64;
            let start = clock.now().as_nanos();
            clock.set(Timestamp::from_nanos(start - wrap / 2));
            assert_eq!(drain(&l, &clock), 10);
            let tick = l.resolution().as_nanos() as u64;
            clock.set(Timestamp::from_nanos(start / tick * tick));
            assert_eq!(drain(&l, &clock), 10);
            assert_eq!(retry_after(l.try_acquire(&clock)), t);
            clock.advance(t);
            assert_eq!(drain(&l, &clock), 1);
        }
    }

    #[test]
    fn idle_across_word_wraps() {
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(4));
        let t = l.emission_interval();
        let wrap = l.wrap_period();
        let clock = aligned(&l, 1_000_000_000);
        assert_eq!(drain(&l, &clock), 4);
        // 2^32 ticks is a wrap of the 32-bit layout; the 64-bit one wraps
        // after 584 years. Idle across 2^32 ticks, 1.5 and 3.25 wraps of the
        // real word, and a quarter of a wrap.
        let ticks32 = l.resolution() * (1 << 16) * (1 << 16);
        let mut gaps = [ticks32 + t * 50, Duration::ZERO, Duration::ZERO, wrap / 4];
        if !WIDE {
            gaps[1] = wrap + wrap / 2;
            gaps[2] = wrap * 3 + wrap / 4;
        }
        for gap in gaps {
            if gap.is_zero() {
                continue;
            }
            clock.advance(gap);
            assert_eq!(l.available(&clock), 4, "gap {gap:?}");
            assert_eq!(drain(&l, &clock), 4, "gap {gap:?}");
            assert_eq!(retry_after(l.try_acquire(&clock)), t);
        }
    }

    #[test]
    fn wrap_corner_is_conservative() {
        // An idle gap of exactly one wrap makes the drained word look fresh:
        // the limiter may see the bucket as used (conservative), never more.
        let l = limiter(RateLimiterConfig::DEFAULT.with_burst(4));
        let wrap = l.wrap_period();
        if WIDE {
            assert_eq!(wrap.as_nanos(), 1u128 << 64);
            return;
        }
        assert_eq!(
            wrap.as_nanos(),
            1u128 << (32 + l.resolution().as_nanos().trailing_zeros())
        );
        let clock = at(1_000);
        assert_eq!(drain(&l, &clock), 4);
        clock.advance(wrap);
        assert_eq!(drain(&l, &clock), 0); // the corner: looks drained
        // It heals within the lead, like a real drained bucket.
        clock.advance(l.emission_interval() * 4);
        assert_eq!(drain(&l, &clock), 4);
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
    fn errors_display_and_retry_after() {
        use std::string::ToString;
        let cases = [
            (
                RateLimitError::RateLimited {
                    retry_after: Duration::from_millis(5),
                },
                "rate limited: retry after 5ms",
                Some(Duration::from_millis(5)),
            ),
            (
                RateLimitError::QueueFull { retry_after: SEC },
                "rate limiter queue is full: retry after 1s",
                Some(SEC),
            ),
            (
                RateLimitError::WaitTooLong {
                    wait: SEC * 3,
                    retry_after: SEC,
                },
                "rate limiter wait of 3s is too long: retry after 1s",
                Some(SEC),
            ),
            (
                RateLimitError::ExceedsCapacity {
                    requested: 11,
                    capacity: 10,
                },
                "11 permits exceed the rate limiter's burst capacity of 10",
                None,
            ),
        ];
        for (error, text, retry) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.retry_after(), retry);
        }
        #[cfg(feature = "std")]
        {
            let boxed: std::boxed::Box<dyn std::error::Error> = std::boxed::Box::new(cases[0].0);
            assert!(boxed.to_string().contains("rate limited"));
        }
    }

    #[test]
    fn extreme_configs_never_panic() {
        let periods = [
            Duration::from_nanos(1),
            Duration::from_micros(1),
            SEC,
            Duration::from_nanos(1 << 61),
            Duration::from_nanos(u64::MAX),
            Duration::MAX,
        ];
        let mut accepted = 0;
        for requests in [1, 2, 1000, u32::MAX] {
            for period in periods {
                for burst in [None, Some(1), Some(1 << 19), Some(u32::MAX)] {
                    for queue in [0, 1, 1 << 19, u32::MAX] {
                        for timeout in [Duration::ZERO, SEC, Duration::MAX] {
                            for mode in [Mode::Bursty, Mode::Strict] {
                                let c = RateLimiterConfig {
                                    requests_per_period: requests,
                                    period,
                                    burst,
                                    max_queue_size: queue,
                                    queue_timeout: timeout,
                                    mode,
                                };
                                let Ok(l) = RateLimiter::new(c) else { continue };
                                accepted += 1;
                                assert!(l.emission_interval() >= l.resolution());
                                for now in [0, 1 << 40, u64::MAX - 1, u64::MAX, 3] {
                                    let clock = at(now);
                                    let _ = l.try_acquire_n(l.burst(), &clock);
                                    let _ = l.try_acquire(&clock);
                                    let _ = l.reserve(1, Duration::MAX, &clock);
                                    if let Ok(r) = l.reserve(l.burst(), SEC, &clock) {
                                        let _ = l.cancel(r, &clock);
                                    }
                                    assert!(l.available(&clock) <= l.burst());
                                    let _ = l.queue_depth(&clock);
                                }
                                let _ = (l.queue_timeout(), l.wrap_period());
                            }
                        }
                    }
                }
            }
        }
        assert!(accepted > 100, "{accepted}");
    }

    #[test]
    fn layout_size() {
        let size = core::mem::size_of::<RateLimiter>();
        std::println!("size_of::<RateLimiter>() = {size} (WIDE = {WIDE})");
        assert_eq!(size, if WIDE { 48 } else { 28 });
    }

    #[test]
    fn const_and_static_construction() {
        static LIMITER: RateLimiter = match RateLimiter::new(RateLimiterConfig::DEFAULT) {
            Ok(l) => l,
            Err(_) => panic!("default config is valid"),
        };
        const BAD: Result<RateLimiter, ConfigError> =
            RateLimiter::new(RateLimiterConfig::DEFAULT.with_requests_per_period(0));
        assert!(BAD.is_err());
        let clock = ManualClock::new();
        assert_eq!(LIMITER.available(&clock), 10);
    }
}
