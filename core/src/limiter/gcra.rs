//! The GCRA word and its transitions: [`RateLimiter`](crate::limiter::RateLimiter).
// `Word` is `u64` or `u32` by layout: casts between it and `u64` are needed
// in one layout and no-ops in the other.
#![allow(clippy::unnecessary_cast)]

use core::time::Duration;

use super::plan::{Plan, TickPlan, check_tick_plan, nanos_to_duration, plan};
use super::{
    CancelError, RateLimitError, RateLimiterConfig, RawRateLimiterConfig, Reservation,
    ReservationToken,
};
use crate::clock::{Clock, Timestamp};
use crate::error::ConfigError;
use crate::sync::{AtomicWord, Ordering, WIDE, Word, const_fn_unless_loom, update};
use crate::time::{Divisor, duration_from_nanos};

/// A lock-free GCRA rate limiter in one atomic word.
///
/// See the [module documentation](crate::limiter) for the algorithm, the modes, the
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
/// assert_eq!(retry, limiter.emission_interval()); // 100 ms
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
    /// Nanoseconds per tick: 1 with the 64-bit layout; with the 32-bit
    /// layout chosen so that the emission interval is a whole number of
    /// ticks (see [`plan`]), with its reciprocal, so reading the clock
    /// costs a multiply, not a 64-bit division.
    tick: Divisor,
}

/// What the word says at `now`: the tick, how far the TAT is ahead of it.
#[derive(Clone, Copy)]
struct View {
    now: Timestamp,
    tick: Word,
    /// Nanoseconds of `now` past the start of `tick` (0 with the 64-bit
    /// layout).
    frac: u32,
    /// How far the TAT is ahead of `tick`; with the 32-bit layout at most
    /// `2·max_lead < 2^31`, so the callers' sums of a lead and a cost
    /// (at most `max_lead`) stay in `u32` arithmetic.
    lead: Word,
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
            match plan::<true>(&config) {
                Ok(plan) => Ok(RateLimiter::with_plan(&plan)),
                Err(e) => Err(e),
            }
        }
    }

    const_fn_unless_loom! {
        /// The limiter [`new`](Self::new)`(raw.to_config()?)` makes, or
        /// `None` where that returns an error: the same checks and the same
        /// limiter, but a refusal is not described, so none of the code
        /// that describes it is linked. For firmware, where that code is
        /// most of a constructor's flash (the C ABI's
        /// `stockade_limiter_init_lean`).
        #[inline(always)]
        pub fn from_raw_lean(raw: &RawRateLimiterConfig) -> Option<RateLimiter> {
            let Some(config) = raw.unvalidated() else {
                return None;
            };
            match plan::<false>(&config) {
                Ok(plan) => Some(RateLimiter::with_plan(&plan)),
                Err(_) => None,
            }
        }
    }

    const_fn_unless_loom! {
        /// A limiter with a full bucket running on `plan`, numbers worked
        /// out in advance (the C header's `STOCKADE_LIMITER_PLAN`, at
        /// compile time), or `None` if the machine cannot run on them
        /// (see [`TickPlan`]). Only checks, no planning: for firmware,
        /// which then links none of the planning code (the C ABI's
        /// `stockade_limiter_init_planned`). The 32-bit layout runs on the
        /// plan's ticks as they are; the 64-bit layout on their
        /// nanoseconds (ticks times `tick_nanos`).
        #[inline(always)]
        pub fn from_tick_plan(plan: &TickPlan) -> Option<RateLimiter> {
            match check_tick_plan(plan) {
                Some(plan) => Some(RateLimiter::with_plan(&plan)),
                None => None,
            }
        }
    }

    const_fn_unless_loom! {
        /// A limiter with a full bucket running on `plan`.
        fn with_plan(plan: &Plan) -> RateLimiter {
            RateLimiter {
                tat: AtomicWord::new(0),
                interval: plan.interval,
                limit: plan.limit,
                queue_timeout: plan.queue_timeout,
                burst: plan.burst,
                max_queue_size: plan.max_queue_size,
                tick: Divisor::new(plan.tick_nanos),
            }
        }
    }

    /// A copy of this limiter, state included (tests probe a copy so the
    /// original's sequence is left alone).
    #[cfg(all(test, not(stockade_loom)))]
    pub(super) fn snapshot(&self) -> RateLimiter {
        RateLimiter {
            tat: AtomicWord::new(self.tat.load(Ordering::Acquire)),
            ..*self
        }
    }

    /// `size_of::<RateLimiter>()`: 56 bytes with the 64-bit layout, 40
    /// with the 32-bit one (for C code that embeds the limiter).
    pub const SIZE: usize = core::mem::size_of::<RateLimiter>();

    /// `align_of::<RateLimiter>()`.
    pub const ALIGN: usize = core::mem::align_of::<RateLimiter>();

    /// The burst capacity `B`: the most permits one call can get.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// The queue bound, in permits.
    pub const fn max_queue_size(&self) -> u32 {
        self.max_queue_size
    }

    /// The emission interval `T` actually used: the time one permit costs.
    /// Exactly `period / requests_per_period` (bursty) or
    /// `period / (requests_per_period - burst + 1)` (strict) when that is a
    /// whole number of nanoseconds that the 32-bit layout can cut into
    /// ticks exactly; otherwise rounded up, by less than a nanosecond
    /// (64-bit) or less than one [`resolution`](Self::resolution) (32-bit).
    pub const fn emission_interval(&self) -> Duration {
        duration_from_nanos(self.nanos(self.interval))
    }

    /// The tick: the resolution of the state word (1 ns with the 64-bit
    /// layout; with the 32-bit layout a per-limiter whole number of
    /// nanoseconds, at most 1/512 and usually about 1/1000 of the
    /// emission interval, chosen to divide it).
    pub const fn resolution(&self) -> Duration {
        Duration::from_nanos(self.tick.get() as u64)
    }

    /// The effective queue timeout: `queue_timeout` rounded down to the
    /// resolution and capped at `max_queue_size` emission intervals.
    pub const fn queue_timeout(&self) -> Duration {
        duration_from_nanos(self.nanos(self.queue_timeout))
    }

    /// How long the state word takes to wrap: `2^32` ticks with the
    /// 32-bit layout; 2^64 ns (584 years, the whole clock range, which the
    /// 64-bit layout does not wrap around) with the 64-bit layout.
    pub const fn wrap_period(&self) -> Duration {
        nanos_to_duration((1u128 << Word::BITS) * self.tick.get() as u128)
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

    /// `ticks` ticks in nanoseconds: exact, as the configured numbers fit
    /// (with the 32-bit layout `u32` ticks of `u32` nanoseconds; with the
    /// 64-bit layout a tick is 1 ns).
    #[inline]
    const fn nanos(&self, ticks: Word) -> u64 {
        ticks as u64 * self.tick.get() as u64
    }

    /// `now` as wrapping ticks, and the nanoseconds past the tick's start.
    #[inline]
    fn ticks(&self, now: Timestamp) -> (Word, u32) {
        if WIDE {
            (now.as_nanos() as Word, 0)
        } else {
            let (ticks, frac) = self.tick.div_rem(now.as_nanos());
            (ticks as Word, frac)
        }
    }

    /// Relates a clock reading to `tat`.
    #[inline]
    fn view(&self, tat: Word, now: Timestamp) -> View {
        let (tick, frac) = self.ticks(now);
        let lead = if WIDE {
            // Nanoseconds that never wrap: plain order.
            tat.saturating_sub(tick)
        } else {
            let d = tat.wrapping_sub(tick);
            if d <= self.stale_after() { d } else { 0 }
        };
        View {
            now,
            tick,
            frac,
            lead,
        }
    }

    /// Compare-and-swaps the word with `f(tat, view)` until it lands (see
    /// [`update`]); `f` sees the loaded word and the clock related to it.
    ///
    /// Where the clock is read differs by layout. In the 64-bit layout the
    /// clock is read once, before the loop: the word holds plain
    /// nanoseconds, so a reading older than the word only makes the lead
    /// look longer (never a permit too many), and a contended retry does
    /// not pay for another read. In the 32-bit layout the word wraps, so
    /// the clock is read after each load: a reading far older than the word
    /// would be taken for a wrapped, stale word.
    #[inline]
    fn update_tat<C: Clock + ?Sized, T, E>(
        &self,
        clock: &C,
        mut f: impl FnMut(Word, View) -> Result<(T, Word), E>,
    ) -> Result<T, E> {
        if WIDE {
            let now = clock.now();
            update(&self.tat, Ordering::AcqRel, |tat| {
                f(tat, self.view(tat, now))
            })
        } else {
            update(&self.tat, Ordering::AcqRel, |tat| {
                f(tat, self.view(tat, clock.now()))
            })
        }
    }

    /// The TAT `lead` ticks after the view's tick; `None` past the end of
    /// the 64-bit clock range.
    #[inline]
    fn tat_at(view: &View, lead: Word) -> Option<Word> {
        if WIDE {
            view.tick.checked_add(lead)
        } else {
            Some(view.tick.wrapping_add(lead))
        }
    }

    /// The refusal at the end of the 64-bit clock range.
    pub(super) const END_OF_TIME: RateLimitError = RateLimitError::RateLimited {
        retry_after: Duration::MAX,
    };

    /// `ticks` from the view's tick on, as a duration from its exact `now`.
    #[inline]
    fn after(&self, view: &View, ticks: Word) -> Duration {
        let nanos = (ticks as u64).saturating_mul(self.tick.get() as u64);
        duration_from_nanos(nanos.saturating_sub(view.frac as u64))
    }

    #[inline]
    fn cost(&self, n: u32) -> Word {
        // With the 32-bit layout `n <= burst` keeps this within `limit`.
        (n as Word).saturating_mul(self.interval)
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
    #[inline]
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
        self.update_tat(clock, |_, view| {
            let next = view.lead.saturating_add(cost);
            if next <= self.limit {
                match Self::tat_at(&view, next) {
                    Some(tat) => Ok(((), tat)),
                    None => Err(Self::END_OF_TIME),
                }
            } else {
                Err(RateLimitError::RateLimited {
                    retry_after: self.after(&view, next - self.limit),
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
            let (tick, _) = self.ticks(now);
            return Ok(Reservation {
                permits: 0,
                wait: Duration::ZERO,
                ready_at: now,
                tat: tick,
                prev: tick,
            });
        }
        let cost = self.cost(n);
        self.update_tat(clock, |tat, view| {
            let next = view.lead.saturating_add(cost);
            // What a cancel restores. Only a waiting reservation can be
            // cancelled, and waiting means the lead was honoured (> 0), so
            // this is `max(TAT, now)`.
            let prev = tat;
            let over = next.saturating_sub(self.limit);
            // An immediate grant (the common case) is the check of
            // `try_acquire_n`: no queue or wait arithmetic.
            let (wait, ready_at) = if over == 0 {
                (Duration::ZERO, view.now)
            } else {
                let wait = self.queued_wait(&view, over, max_wait)?;
                (wait, view.now.saturating_add(wait))
            };
            let Some(booked) = Self::tat_at(&view, next) else {
                return Err(Self::END_OF_TIME);
            };
            let reservation = Reservation {
                permits: n,
                wait,
                ready_at,
                tat: booked,
                prev,
            };
            Ok((reservation, booked))
        })
    }

    /// The wait of a booking `over` ticks beyond the burst, or why it is
    /// refused: more than `max_queue_size` permits would be waiting
    /// (checked first), or the wait would exceed `min(max_wait,
    /// queue_timeout)`.
    #[inline(never)]
    fn queued_wait(
        &self,
        view: &View,
        over: Word,
        max_wait: Duration,
    ) -> Result<Duration, RateLimitError> {
        let queue_room = (self.max_queue_size as Word).saturating_mul(self.interval);
        if over > queue_room {
            return Err(RateLimitError::QueueFull {
                retry_after: self.after(view, over - queue_room),
            });
        }
        let max_wait = if max_wait.as_nanos() < self.queue_timeout().as_nanos() {
            max_wait
        } else {
            self.queue_timeout()
        };
        let wait = self.after(view, over);
        if wait > max_wait {
            return Err(RateLimitError::WaitTooLong {
                wait,
                retry_after: wait.saturating_sub(max_wait),
            });
        }
        Ok(wait)
    }

    /// Hands back a booking that is still waiting, so the next caller can
    /// have its slot; reports the permits returned.
    ///
    /// This succeeds only for a reservation that had to wait, before its
    /// `ready_at`, and while nobody booked after it: the latest booking can
    /// be undone exactly, an earlier one cannot without moving everyone
    /// behind it. Otherwise the permits simply stay booked, which is
    /// conservative (the caller may still use them at `ready_at`). After a
    /// successful cancel the caller must not use the permits. See
    /// [`ReservationToken`] for a token cancelled twice.
    ///
    /// One compare-and-swap (through the pure transition "the word still
    /// holds this booking → put back the word it replaced").
    ///
    /// # Errors
    ///
    /// [`CancelError`] saying why; nothing changed.
    ///
    /// # Examples
    ///
    /// ```
    /// use core::time::Duration;
    /// use stockade::clock::ManualClock;
    /// use stockade::limiter::{CancelError, RateLimiter, RateLimiterConfig};
    ///
    /// let limiter = RateLimiter::new(RateLimiterConfig::DEFAULT.with_burst(1)).unwrap();
    /// let clock = ManualClock::new();
    /// limiter.try_acquire(&clock).unwrap();
    /// let waiting = limiter.reserve(1, Duration::from_secs(1), &clock).unwrap().into_token();
    /// assert_eq!(limiter.queue_depth(&clock), 1);
    /// assert_eq!(limiter.cancel(waiting, &clock), Ok(1)); // the caller gave up
    /// assert_eq!(limiter.queue_depth(&clock), 0);
    /// assert_eq!(limiter.cancel(waiting, &clock), Err(CancelError::Superseded));
    /// ```
    pub fn cancel<C: Clock + ?Sized>(
        &self,
        token: ReservationToken,
        clock: &C,
    ) -> Result<u32, CancelError> {
        let reservation = Reservation::from_token(token);
        if reservation.wait.is_zero() {
            return Err(CancelError::Immediate);
        }
        if clock.now() >= reservation.ready_at {
            return Err(CancelError::Ready);
        }
        let (booked, prev) = (reservation.tat, reservation.prev);
        update(&self.tat, Ordering::AcqRel, |tat| {
            if tat == booked {
                Ok((reservation.permits, prev))
            } else {
                Err(CancelError::Superseded)
            }
        })
    }

    /// Permits that [`try_acquire_n`](Self::try_acquire_n) could take right
    /// now (between 0 and the burst).
    pub fn available<C: Clock + ?Sized>(&self, clock: &C) -> u32 {
        let view = self.view(self.tat.load(Ordering::Acquire), clock.now());
        let free = self.limit.saturating_sub(view.lead) / self.interval;
        if free > u32::MAX as Word {
            u32::MAX
        } else {
            free as u32
        }
    }

    /// Permits booked but not yet ready: how far the TAT lies beyond
    /// `now + B·T`, in emission intervals, rounded up (saturating at
    /// `u32::MAX`, which only a clock stepped far back can show).
    pub fn queue_depth<C: Clock + ?Sized>(&self, clock: &C) -> u32 {
        let view = self.view(self.tat.load(Ordering::Acquire), clock.now());
        let over = view.lead.saturating_sub(self.limit);
        let depth = over.div_ceil(self.interval);
        if depth > u32::MAX as Word {
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
