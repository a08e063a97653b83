//! The bulkhead: at most `max_concurrent` holders at once, and a bounded
//! queue of waiters behind them.
//!
//! [`Bulkhead`] is a lock-free counting semaphore whose two counters — the
//! permits in use and the waiters queued — live in **one** atomic word, so
//! every decision ("is a permit free *and* is nobody queued?") is a single
//! compare-and-swap. The core never blocks and never parks a thread: a
//! blocking layer keeps its own FIFO of parked waiters (under a mutex) and
//! uses the core only for the counts:
//!
//! 1. [`Bulkhead::enqueue`] either hands out a permit at once
//!    ([`Admission::Acquired`]), takes a place in the queue
//!    ([`Admission::Enqueued`] with a [`QueueTicket`]), or refuses
//!    ([`Admission::Full`]).
//! 2. A waiter that is woken at the front of its queue calls
//!    [`QueueTicket::try_acquire`], which takes a permit *and* leaves the
//!    queue in one CAS when a permit is free.
//! 3. A waiter that times out (after [`BulkheadConfig::queue_timeout`], a
//!    value the core only stores) drops its ticket, which leaves the queue.
//! 4. Releasing a permit reports the counts after it
//!    ([`BulkheadCounts`]), so the blocking layer knows whether to wake the
//!    front waiter.
//!
//! There is no barging: [`Bulkhead::try_acquire`] and [`Bulkhead::enqueue`]
//! refuse to hand a free permit to a newcomer while anyone is queued, so the
//! blocking layer's FIFO order holds.
//!
//! Every transition reports what it did: a permit carries the counts right
//! after it was granted ([`BulkheadPermit::granted`]), a release the counts
//! after it.
//!
//! Permits and tickets are RAII guards (`#[must_use]`, released on drop), so
//! they cannot leak or be duplicated. Bindings that cannot hold a borrow (C,
//! Python) turn a permit into a plain [`BulkheadToken`]
//! ([`BulkheadPermit::into_token`]) and hand it back with
//! [`Bulkhead::release`], or turn it back into a guard with
//! [`BulkheadPermit::from_token`]; see [`BulkheadToken`] for what a token
//! released twice or never does. No operation leaves a counter
//! underflowed: releasing a bulkhead with no permit in use is refused with
//! [`NotHeld`] and changes nothing.
//!
//! # Examples
//!
//! ```
//! use stockade::bulkhead::{Admission, Bulkhead, BulkheadConfig};
//!
//! let bulkhead = Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(2).with_max_queue(1))?;
//!
//! let a = bulkhead.try_acquire().expect("a permit is free");
//! let b = bulkhead.try_acquire().expect("a permit is free");
//! assert!(bulkhead.try_acquire().is_err()); // both permits are held
//!
//! // The blocking layer queues a waiter behind the holders...
//! let ticket = match bulkhead.enqueue() {
//!     Admission::Enqueued(ticket) => ticket,
//!     _ => unreachable!(),
//! };
//! assert!(matches!(bulkhead.enqueue(), Admission::Full(_))); // the queue is full too
//!
//! // ...a holder finishes and learns that someone is waiting...
//! assert!(a.release()?.has_waiters());
//!
//! // ...and the woken waiter takes the freed permit and leaves the queue at once.
//! let c = ticket.try_acquire().ok().expect("a permit was freed");
//! assert_eq!((bulkhead.in_use(), bulkhead.queued()), (2, 0));
//! drop((b, c));
//! assert_eq!(bulkhead.available(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cost
//!
//! Taking a permit is one load and one compare-and-swap (more only when it
//! races); a guard gives its permit back with one `fetch_sub` (it proves a
//! permit is held), [`Bulkhead::release`] with a compare-and-swap that
//! refuses to underflow. See [`BulkheadPermit::release`] for the one case
//! where a guard finds its permit already gone.
//!
//! # State word
//!
//! | layout | bits `0..H` | bits `H..2H` | per-field max (`H` bits) |
//! |--------|-------------|--------------|---------------------------|
//! | 64-bit | `in_use`    | `queued`     | 4 294 967 295 (`H` = 32)  |
//! | 32-bit | `in_use`    | `queued`     | 65 535 (`H` = 16)         |
//!
//! With the 32-bit layout [`Bulkhead::new`] rejects `max_concurrent` or
//! `max_queue` above 65 535 ([`ConfigProblem::TooLarge`](crate::ConfigProblem::TooLarge)). The bulkhead
//! keeps no time in its word, so there is no wrap horizon.

use core::fmt;
use core::time::Duration;

use crate::clock::duration_to_nanos_saturating;
use crate::error::{ConfigError, ConfigOption, ConfigValue};
use crate::sync::{self, AtomicWord, Ordering, WORD_BITS, Word, const_fn_unless_loom};

#[cfg(any(target_has_atomic = "64", stockade_loom))]
pub mod owners;

/// Bits per counter in the state word: 32 (64-bit layout) or 16 (32-bit).
const FIELD_BITS: u32 = WORD_BITS / 2;
/// Mask of one counter (the low half of the word).
const FIELD_MASK: Word = Word::MAX >> FIELD_BITS;
/// The largest `max_concurrent` / `max_queue` the layout can hold:
/// `u32::MAX` with the 64-bit layout, 65 535 with the 32-bit one.
#[allow(clippy::unnecessary_cast)] // a no-op only with the 32-bit layout
pub const MAX_LIMIT: u32 = FIELD_MASK as u32;

/// `value > MAX_LIMIT`, spelled so that it is not a constant `false` to
/// the compiler's eyes on the 64-bit layout (where every `u32` fits).
const fn exceeds_limit(value: u32) -> bool {
    value as u64 > MAX_LIMIT as u64
}

#[inline]
#[allow(clippy::unnecessary_cast)] // a no-op only with the 32-bit layout
const fn in_use_of(word: Word) -> u32 {
    (word & FIELD_MASK) as u32
}

#[inline]
#[allow(clippy::unnecessary_cast)] // a no-op only with the 32-bit layout
const fn queued_of(word: Word) -> u32 {
    (word >> FIELD_BITS) as u32
}

/// Packs the counters; callers keep both at most [`MAX_LIMIT`].
#[inline]
const fn pack(in_use: u32, queued: u32) -> Word {
    ((queued as Word) << FIELD_BITS) | (in_use as Word & FIELD_MASK)
}

/// Bulkhead options.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use stockade::bulkhead::BulkheadConfig;
///
/// let config = BulkheadConfig::DEFAULT
///     .with_max_concurrent(4)
///     .with_queue_timeout(Duration::from_secs(2));
/// assert_eq!(config.max_queue, 100);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BulkheadConfig {
    /// Most permits held at once (spec `maxConcurrent`, default 10).
    /// Must be at least 1; at most [`MAX_LIMIT`] (65 535 with the 32-bit
    /// layout).
    pub max_concurrent: u32,
    /// Most waiters queued at once (spec `maxQueue`, default 100). Zero
    /// means no queue: a full bulkhead refuses at once. At most
    /// [`MAX_LIMIT`].
    pub max_queue: u32,
    /// Longest time a waiter stays queued (spec `queueTimeout`, default
    /// 30 s). The core only validates and stores it, in whole nanoseconds
    /// saturating at `u64::MAX` (584 years, i.e. forever); the blocking
    /// layer enforces it. Zero is valid and means "never wait": a caller
    /// that would have to queue is refused at once.
    pub queue_timeout: Duration,
}

impl BulkheadConfig {
    /// The spec's defaults: 10 concurrent, 100 queued, 30 s queue timeout.
    pub const DEFAULT: BulkheadConfig = BulkheadConfig {
        max_concurrent: 10,
        max_queue: 100,
        queue_timeout: Duration::from_secs(30),
    };

    /// This config with `max_concurrent` set.
    #[must_use]
    pub const fn with_max_concurrent(self, max_concurrent: u32) -> BulkheadConfig {
        BulkheadConfig {
            max_concurrent,
            ..self
        }
    }

    /// This config with `max_queue` set.
    #[must_use]
    pub const fn with_max_queue(self, max_queue: u32) -> BulkheadConfig {
        BulkheadConfig { max_queue, ..self }
    }

    /// This config with `queue_timeout` set.
    #[must_use]
    pub const fn with_queue_timeout(self, queue_timeout: Duration) -> BulkheadConfig {
        BulkheadConfig {
            queue_timeout,
            ..self
        }
    }

    /// Checks every option (see [`Bulkhead::new`]).
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxConcurrent,
                ConfigValue::Count(0),
            ));
        }
        if exceeds_limit(self.max_concurrent) {
            return Err(ConfigError::count_above(
                ConfigOption::MaxConcurrent,
                self.max_concurrent as u64,
                MAX_LIMIT as u64,
            ));
        }
        if exceeds_limit(self.max_queue) {
            return Err(ConfigError::count_above(
                ConfigOption::MaxQueue,
                self.max_queue as u64,
                MAX_LIMIT as u64,
            ));
        }
        Ok(())
    }
}

impl BulkheadConfig {
    /// The plain form a C or Python binding passes.
    pub const fn to_raw(&self) -> RawBulkheadConfig {
        let ms = self.queue_timeout.as_millis();
        RawBulkheadConfig {
            queue_timeout_ms: if ms > u64::MAX as u128 {
                u64::MAX
            } else {
                ms as u64
            },
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
        }
    }
}

/// [`BulkheadConfig`] as plain integers, for C and Python bindings: the
/// queue timeout in whole milliseconds (0: never wait). Convert with
/// `BulkheadConfig::try_from(raw)`, which validates every option
/// ([`BulkheadConfig::validate`]).
///
/// # Examples
///
/// ```
/// use stockade::bulkhead::{BulkheadConfig, RawBulkheadConfig};
///
/// let raw = RawBulkheadConfig { max_concurrent: 4, ..RawBulkheadConfig::DEFAULT };
/// assert_eq!(BulkheadConfig::try_from(raw)?.to_raw(), raw);
/// assert!(BulkheadConfig::try_from(RawBulkheadConfig { max_concurrent: 0, ..raw }).is_err());
/// # Ok::<(), stockade::ConfigError>(())
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RawBulkheadConfig {
    /// `queue_timeout` in milliseconds.
    pub queue_timeout_ms: u64,
    /// `max_concurrent`.
    pub max_concurrent: u32,
    /// `max_queue`.
    pub max_queue: u32,
}

impl RawBulkheadConfig {
    /// [`BulkheadConfig::DEFAULT`] in plain form.
    pub const DEFAULT: RawBulkheadConfig = BulkheadConfig::DEFAULT.to_raw();

    /// The config, validated.
    ///
    /// # Errors
    ///
    /// The first invalid option, as for [`BulkheadConfig::validate`].
    pub const fn to_config(&self) -> Result<BulkheadConfig, ConfigError> {
        let config = BulkheadConfig {
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            queue_timeout: Duration::from_millis(self.queue_timeout_ms),
        };
        match config.validate() {
            Ok(()) => Ok(config),
            Err(e) => Err(e),
        }
    }
}

impl Default for RawBulkheadConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<RawBulkheadConfig> for BulkheadConfig {
    type Error = ConfigError;

    fn try_from(raw: RawBulkheadConfig) -> Result<Self, ConfigError> {
        raw.to_config()
    }
}

impl Default for BulkheadConfig {
    fn default() -> Self {
        BulkheadConfig::DEFAULT
    }
}

/// A lock-free bulkhead: a counting semaphore plus queue bookkeeping in one
/// atomic word. See the [module docs](self) for the protocol.
///
/// Plain data (one atomic word and the limits, no pointers), so it can live
/// in a `static` or in memory shared between processes.
///
/// # Examples
///
/// ```
/// use stockade::bulkhead::{Bulkhead, BulkheadConfig};
///
/// static POOL: Bulkhead = match Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(1)) {
///     Ok(b) => b,
///     Err(_) => panic!("invalid config"),
/// };
///
/// let permit = POOL.try_acquire().expect("free");
/// let full = POOL.try_acquire().unwrap_err();
/// assert_eq!(full.in_use, 1);
/// drop(permit);
/// assert_eq!(POOL.in_use(), 0);
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct Bulkhead {
    /// `in_use | queued << FIELD_BITS`.
    state: AtomicWord,
    max_concurrent: u32,
    max_queue: u32,
    queue_timeout_nanos: u64,
}

impl Bulkhead {
    const_fn_unless_loom! {
        /// A bulkhead with no permit in use and nobody queued.
        ///
        /// # Errors
        ///
        /// - `max_concurrent`: [`Zero`](crate::ConfigProblem::Zero), or
        ///   [`TooLarge`](crate::ConfigProblem::TooLarge) above [`MAX_LIMIT`]
        ///   (65 535 with the 32-bit layout);
        /// - `max_queue`: [`TooLarge`](crate::ConfigProblem::TooLarge) above
        ///   [`MAX_LIMIT`].
        ///
        /// A zero `queue_timeout` is valid, as for the rate limiter: a
        /// caller never waits, so a full bulkhead rejects at once.
        #[allow(clippy::question_mark)] // `?` is not allowed in a const fn
        pub fn new(config: BulkheadConfig) -> Result<Bulkhead, ConfigError> {
            if let Err(e) = config.validate() {
                return Err(e);
            }
            Ok(Bulkhead {
                state: AtomicWord::new(0),
                max_concurrent: config.max_concurrent,
                max_queue: config.max_queue,
                queue_timeout_nanos: duration_to_nanos_saturating(config.queue_timeout),
            })
        }
    }

    /// `size_of::<Bulkhead>()` (24 bytes in both layouts), for C code that
    /// embeds the bulkhead.
    pub const SIZE: usize = core::mem::size_of::<Bulkhead>();

    /// `align_of::<Bulkhead>()`.
    pub const ALIGN: usize = core::mem::align_of::<Bulkhead>();

    /// The configuration (durations as stored: whole nanoseconds,
    /// saturating at `u64::MAX`).
    pub const fn config(&self) -> BulkheadConfig {
        BulkheadConfig {
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            queue_timeout: Duration::from_nanos(self.queue_timeout_nanos),
        }
    }

    /// Takes a permit if one is free and nobody is queued (no barging past
    /// waiters). The permit is returned when the guard is dropped; it
    /// carries the counts right after the grant
    /// ([`granted`](BulkheadPermit::granted)).
    ///
    /// Never waits; the blocking layer's `try_execute` means the same.
    ///
    /// # Errors
    ///
    /// [`BulkheadFull`] when all permits are held or waiters are queued.
    /// The bulkhead keeps no time, so the error carries no `retry_after`:
    /// a permit comes back whenever a holder finishes.
    #[inline]
    pub fn try_acquire(&self) -> Result<BulkheadPermit<'_>, BulkheadFull> {
        let max = self.max_concurrent;
        let granted = sync::update(&self.state, Ordering::AcqRel, |w| step_acquire(w, max))?;
        Ok(BulkheadPermit {
            bulkhead: self,
            token: BulkheadToken { granted },
        })
    }

    /// Returns the permit of a [`BulkheadToken`]
    /// ([`BulkheadPermit::into_token`]), reporting the counts after the
    /// release (if `queued > 0`, wake the front waiter).
    ///
    /// One compare-and-swap that refuses to underflow: see
    /// [`BulkheadToken`] for a token released twice or never.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] — a caller bug — when no permit was in use; nothing
    /// changes.
    #[inline]
    pub fn release(&self, token: BulkheadToken) -> Result<BulkheadCounts, NotHeld> {
        let _ = token;
        sync::update(&self.state, Ordering::AcqRel, step_release)
    }

    /// Returns `n` permits at once, in one compare-and-swap, for a layer
    /// that returns the permits of an owner that can no longer release
    /// them itself (the shared-memory bulkhead's reaper returns a dead
    /// process's permits this way). `n = 0` changes nothing.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] when fewer than `n` permits are in use; nothing changes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::bulkhead::{Bulkhead, BulkheadConfig};
    ///
    /// let bulkhead = Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(3))?;
    /// let tokens: Vec<_> = (0..3).map(|_| bulkhead.try_acquire().unwrap().into_token()).collect();
    /// assert_eq!(bulkhead.release_many(2).unwrap().in_use, 1);
    /// assert!(bulkhead.release_many(2).is_err()); // only one is in use
    /// # drop(tokens);
    /// # Ok::<(), stockade::ConfigError>(())
    /// ```
    pub fn release_many(&self, n: u32) -> Result<BulkheadCounts, NotHeld> {
        sync::update(&self.state, Ordering::AcqRel, |w| {
            let (in_use, queued) = (in_use_of(w), queued_of(w));
            if in_use < n {
                return Err(NotHeld);
            }
            let after = BulkheadCounts {
                in_use: in_use - n,
                queued,
            };
            Ok((after, after.pack()))
        })
    }

    /// Returns the permit of a guard ([`BulkheadPermit`]): one
    /// `fetch_sub` instead of [`release`](Self::release)'s load-and-CAS
    /// loop. The guard proves a permit is held, so `in_use` is at least 1
    /// and the subtraction cannot borrow from `queued`, unless a token
    /// released twice already took this guard's permit. That case shows
    /// as `in_use` 0 in the returned previous word: the subtraction is
    /// undone at once and the result is [`NotHeld`], the same outcome and
    /// final counts as `release`'s refusal (see [`BulkheadPermit::release`]
    /// for the instant in between).
    ///
    /// `AcqRel` as every other transition of the word: the release half
    /// publishes the holder's work to the next holder, the acquire half
    /// keeps the reported `queued` count ordered like `release`'s.
    #[inline]
    fn release_held(&self) -> Result<BulkheadCounts, NotHeld> {
        let previous = self.state.fetch_sub(1, Ordering::AcqRel);
        if in_use_of(previous) == 0 {
            return self.undo_underflow();
        }
        Ok(BulkheadCounts {
            in_use: in_use_of(previous) - 1,
            queued: queued_of(previous),
        })
    }

    /// Undoes [`release_held`](Self::release_held)'s subtraction from a
    /// word with no permit in use (only after a token was released twice).
    #[cold]
    #[inline(never)]
    fn undo_underflow(&self) -> Result<BulkheadCounts, NotHeld> {
        self.state.fetch_add(1, Ordering::AcqRel);
        Err(NotHeld)
    }

    /// Takes a permit if one is free and nobody is queued; otherwise takes a
    /// place in the queue if fewer than `max_queue` are queued; otherwise
    /// refuses. One CAS.
    ///
    /// The blocking layer parks an [`Admission::Enqueued`] waiter in its own
    /// FIFO, wakes it when a release's [`BulkheadCounts`] show waiters, and then calls
    /// [`QueueTicket::try_acquire`]; it drops the ticket on timeout.
    pub fn enqueue(&self) -> Admission<'_> {
        match self.enqueue_raw() {
            RawAdmission::Acquired(token) => {
                Admission::Acquired(BulkheadPermit::from_token(self, token))
            }
            RawAdmission::Enqueued => Admission::Enqueued(QueueTicket { bulkhead: self }),
            RawAdmission::Full(full) => Admission::Full(full),
        }
    }

    /// [`enqueue`](Self::enqueue) without guards. An
    /// [`Acquired`](RawAdmission::Acquired) token must be released exactly
    /// once with [`release`](Self::release); an
    /// [`Enqueued`](RawAdmission::Enqueued) must end exactly once, either in
    /// an `Acquired` from [`acquire_queued_raw`](Self::acquire_queued_raw)
    /// or in [`leave_queue_raw`](Self::leave_queue_raw).
    pub fn enqueue_raw(&self) -> RawAdmission {
        let (max, max_queue) = (self.max_concurrent, self.max_queue);
        match sync::update(&self.state, Ordering::AcqRel, |w| {
            step_enqueue(w, max, max_queue)
        }) {
            Ok(admission) => admission,
            Err(full) => RawAdmission::Full(full),
        }
    }

    /// For a queued waiter (normally the front of the blocking layer's
    /// queue, just woken): if a permit is free, takes it **and** leaves the
    /// queue in one CAS.
    ///
    /// [`QueuedAcquire::Acquired`] carries the permit's token (make it a
    /// guard with [`BulkheadPermit::from_token`]) and says whether the
    /// *next* waiter should be woken too (more waiters queued and a permit
    /// still free);
    /// [`QueuedAcquire::Wait`] means no permit is free, keep waiting;
    /// [`QueuedAcquire::NotQueued`] — a caller bug — means nobody was
    /// queued, and nothing changed.
    pub fn acquire_queued_raw(&self) -> QueuedAcquire {
        let max = self.max_concurrent;
        match sync::update(&self.state, Ordering::AcqRel, |w| {
            step_acquire_queued(w, max)
        }) {
            Ok(granted) => QueuedAcquire::Acquired {
                token: BulkheadToken { granted },
                wake_next: granted.queued > 0 && granted.in_use < max,
            },
            Err(outcome) => outcome,
        }
    }

    /// For a queued waiter that gives up (timeout, cancellation, dispose):
    /// leaves the queue.
    ///
    /// [`LeaveQueue::Left`] says whether the next waiter should be woken (it
    /// may have been owed the wake-up this waiter consumed);
    /// [`LeaveQueue::NotQueued`] — a caller bug — means nobody was queued,
    /// and nothing changed (no underflow).
    pub fn leave_queue_raw(&self) -> LeaveQueue {
        let max = self.max_concurrent;
        sync::update(&self.state, Ordering::AcqRel, |w| step_leave(w, max))
            .unwrap_or(LeaveQueue::NotQueued)
    }

    /// Permits in use now.
    pub fn in_use(&self) -> u32 {
        in_use_of(self.state.load(Ordering::Acquire))
    }

    /// Waiters queued now.
    pub fn queued(&self) -> u32 {
        queued_of(self.state.load(Ordering::Acquire))
    }

    /// Permits not in use now (`max_concurrent - in_use`). Waiters queued
    /// may be about to take them; [`try_acquire`](Self::try_acquire) does
    /// not barge past them.
    pub fn available(&self) -> u32 {
        self.max_concurrent.saturating_sub(self.in_use())
    }

    /// `true` when waiters are queued and a permit is free: the blocking
    /// layer should make sure its front waiter is awake. (The `_raw`
    /// operations report this atomically with their change; this is a
    /// snapshot.)
    pub fn waiter_can_proceed(&self) -> bool {
        let w = self.state.load(Ordering::Acquire);
        queued_of(w) > 0 && in_use_of(w) < self.max_concurrent
    }
}

impl Default for Bulkhead {
    /// A bulkhead with [`BulkheadConfig::DEFAULT`].
    fn default() -> Self {
        Bulkhead {
            state: AtomicWord::new(0),
            max_concurrent: BulkheadConfig::DEFAULT.max_concurrent,
            max_queue: BulkheadConfig::DEFAULT.max_queue,
            queue_timeout_nanos: duration_to_nanos_saturating(
                BulkheadConfig::DEFAULT.queue_timeout,
            ),
        }
    }
}

// --- Pure transitions ------------------------------------------------------

fn step_acquire(w: Word, max: u32) -> Result<(BulkheadCounts, Word), BulkheadFull> {
    let (in_use, queued) = (in_use_of(w), queued_of(w));
    if queued > 0 || in_use >= max {
        return Err(BulkheadFull { in_use, queued });
    }
    // in_use < max <= MAX_LIMIT, so in_use + 1 fits the field.
    let after = BulkheadCounts {
        in_use: in_use + 1,
        queued,
    };
    Ok((after, after.pack()))
}

fn step_release(w: Word) -> Result<(BulkheadCounts, Word), NotHeld> {
    let (in_use, queued) = (in_use_of(w), queued_of(w));
    if in_use == 0 {
        return Err(NotHeld);
    }
    let after = BulkheadCounts {
        in_use: in_use - 1,
        queued,
    };
    Ok((after, after.pack()))
}

fn step_enqueue(w: Word, max: u32, max_queue: u32) -> Result<(RawAdmission, Word), BulkheadFull> {
    let (in_use, queued) = (in_use_of(w), queued_of(w));
    if queued == 0 && in_use < max {
        let granted = BulkheadCounts {
            in_use: in_use + 1,
            queued,
        };
        Ok((
            RawAdmission::Acquired(BulkheadToken { granted }),
            granted.pack(),
        ))
    } else if queued < max_queue {
        Ok((RawAdmission::Enqueued, pack(in_use, queued + 1)))
    } else {
        Err(BulkheadFull { in_use, queued })
    }
}

fn step_acquire_queued(w: Word, max: u32) -> Result<(BulkheadCounts, Word), QueuedAcquire> {
    let (in_use, queued) = (in_use_of(w), queued_of(w));
    if queued == 0 {
        return Err(QueuedAcquire::NotQueued);
    }
    if in_use >= max {
        return Err(QueuedAcquire::Wait);
    }
    let granted = BulkheadCounts {
        in_use: in_use + 1,
        queued: queued - 1,
    };
    Ok((granted, granted.pack()))
}

fn step_leave(w: Word, max: u32) -> Result<(LeaveQueue, Word), ()> {
    let (in_use, queued) = (in_use_of(w), queued_of(w));
    if queued == 0 {
        return Err(());
    }
    let queued = queued - 1;
    let wake_next = queued > 0 && in_use < max;
    Ok((LeaveQueue::Left { wake_next }, pack(in_use, queued)))
}

// --- Guards and outcomes ----------------------------------------------------

/// A held bulkhead permit; dropping it releases the permit.
///
/// Use [`release`](Self::release) instead of dropping when you need to know
/// whether waiters are queued, and [`into_token`](Self::into_token) to
/// hand the permit across a boundary that cannot hold a borrow.
#[must_use = "dropping a permit releases it at once"]
#[derive(Debug)]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
    token: BulkheadToken,
}

impl<'a> BulkheadPermit<'a> {
    /// The bulkhead this permit belongs to.
    pub fn bulkhead(&self) -> &'a Bulkhead {
        self.bulkhead
    }

    /// The counts right after this permit was granted (this permit
    /// included in `in_use`).
    pub const fn granted(&self) -> BulkheadCounts {
        self.token.granted
    }

    /// Releases the permit, reporting the counts after it (if
    /// `queued > 0`, wake the front waiter).
    ///
    /// One `fetch_sub`: the guard proves a permit is held, so the count
    /// cannot underflow, unless a token released twice
    /// ([`Bulkhead::release`]) already took this guard's permit. Then the
    /// guard sees that `in_use` was 0, adds the one back at once and
    /// returns [`NotHeld`] with the counts as they were, as
    /// `Bulkhead::release` would. Between those two steps the word reads as
    /// all permits in use and one waiter fewer (with nobody queued: a full
    /// queue). An operation racing with them can be refused, and a waiter
    /// leaving the queue or a further double release in that instant can
    /// leave the counts wrong for good.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] only after such a double release; nothing changes.
    #[inline]
    pub fn release(self) -> Result<BulkheadCounts, NotHeld> {
        let bulkhead = self.bulkhead;
        core::mem::forget(self);
        bulkhead.release_held()
    }

    /// Gives up the guard without releasing: the caller now owes exactly
    /// one [`Bulkhead::release`] of the token (or
    /// [`from_token`](Self::from_token) to make it a guard again). See
    /// [`BulkheadToken`] for what releasing it twice or never does.
    pub fn into_token(self) -> BulkheadToken {
        let token = self.token;
        core::mem::forget(self);
        token
    }

    /// The guard of a token from [`into_token`](Self::into_token) or from
    /// the queue path ([`RawAdmission::Acquired`],
    /// [`QueuedAcquire::Acquired`]): it takes over the obligation to
    /// release the permit (on drop or [`release`](Self::release)).
    ///
    /// A token of another bulkhead, or one already released, is a caller
    /// bug with the consequences [`BulkheadToken`] documents; it never
    /// underflows a counter.
    pub fn from_token(bulkhead: &'a Bulkhead, token: BulkheadToken) -> BulkheadPermit<'a> {
        BulkheadPermit { bulkhead, token }
    }
}

impl Drop for BulkheadPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.bulkhead.release_held();
    }
}

/// A held permit as a plain value, for bindings that cannot hold a borrow
/// (C, Python): from [`BulkheadPermit::into_token`] or the queue path,
/// returned with [`Bulkhead::release`] or made a guard again with
/// [`BulkheadPermit::from_token`].
///
/// It records the counts right after the grant ([`granted`](Self::granted));
/// the bulkhead keeps no per-permit state, so a token does not identify its
/// permit. Its contract is to be released exactly once:
///
/// * **Never released:** the permit leaks for good (`in_use` stays one
///   higher; the bulkhead has one permit fewer until it is rebuilt).
/// * **Released twice, when no permit is in use:** refused with
///   [`NotHeld`], nothing changes.
/// * **Released twice while other permits are outstanding:** cannot be
///   detected (that would take per-permit storage): the second release
///   returns *another* holder's permit, so one more caller than
///   `max_concurrent` may run until that holder releases, and the robbed
///   holder's own release later is refused with [`NotHeld`] if it finds
///   `in_use` at zero, or returns yet another holder's permit. The counts
///   never underflow and never exceed their fields; every excess is
///   bounded by the number of extra releases.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BulkheadToken {
    granted: BulkheadCounts,
}

impl BulkheadToken {
    /// The counts right after the grant.
    pub const fn granted(self) -> BulkheadCounts {
        self.granted
    }

    /// A token that records `granted` (for a layer that stored a token's
    /// counts, e.g. across an atomic). It is a permit only if one was
    /// granted and not yet released: see the type's contract.
    pub const fn from_counts(granted: BulkheadCounts) -> BulkheadToken {
        BulkheadToken { granted }
    }
}

/// The bulkhead's two counts after a transition.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BulkheadCounts {
    /// Permits in use.
    pub in_use: u32,
    /// Waiters queued.
    pub queued: u32,
}

impl BulkheadCounts {
    /// `true` when waiters are queued: after a release, wake the front one.
    pub const fn has_waiters(self) -> bool {
        self.queued > 0
    }

    /// The state word; callers keep both counts at most [`MAX_LIMIT`].
    #[inline]
    const fn pack(self) -> Word {
        pack(self.in_use, self.queued)
    }
}

/// A release with no permit in use (a token released twice, or a token
/// that was never granted): refused, nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NotHeld;

impl fmt::Display for NotHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bulkhead release refused: no permit is in use")
    }
}

impl core::error::Error for NotHeld {}

/// A place in a bulkhead's queue; dropping it leaves the queue.
///
/// The blocking layer holds one per parked waiter. When woken it calls
/// [`try_acquire`](Self::try_acquire); on timeout it drops the ticket (or
/// calls [`leave`](Self::leave) to learn whether to wake the next waiter).
#[must_use = "dropping a ticket leaves the queue at once"]
#[derive(Debug)]
pub struct QueueTicket<'a> {
    bulkhead: &'a Bulkhead,
}

impl<'a> QueueTicket<'a> {
    /// The bulkhead this ticket belongs to.
    pub fn bulkhead(&self) -> &'a Bulkhead {
        self.bulkhead
    }

    /// Takes a permit and leaves the queue in one CAS if a permit is free;
    /// otherwise gives the ticket back (keep waiting).
    ///
    /// After a success, check [`Bulkhead::waiter_can_proceed`] to chain the
    /// wake-up to the next waiter.
    ///
    /// # Errors
    ///
    /// The ticket itself, when no permit is free.
    pub fn try_acquire(self) -> Result<BulkheadPermit<'a>, QueueTicket<'a>> {
        let bulkhead = self.bulkhead;
        match bulkhead.acquire_queued_raw() {
            QueuedAcquire::Acquired { token, .. } => {
                core::mem::forget(self);
                Ok(BulkheadPermit::from_token(bulkhead, token))
            }
            // `NotQueued` can only follow a raw-API contract breach
            // (someone else left the queue on our behalf). Nothing to take;
            // the ticket's drop will find nobody queued and change nothing.
            QueuedAcquire::Wait | QueuedAcquire::NotQueued => Err(self),
        }
    }

    /// Leaves the queue; `true` when the next waiter should be woken (more
    /// waiters queued and a permit free).
    pub fn leave(self) -> bool {
        let bulkhead = self.bulkhead;
        core::mem::forget(self);
        matches!(
            bulkhead.leave_queue_raw(),
            LeaveQueue::Left { wake_next: true }
        )
    }

    /// Gives up the guard while staying queued: the caller now owes exactly
    /// one [`Bulkhead::acquire_queued_raw`] success or
    /// [`Bulkhead::leave_queue_raw`].
    pub fn into_raw(self) -> &'a Bulkhead {
        let bulkhead = self.bulkhead;
        core::mem::forget(self);
        bulkhead
    }
}

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        let _ = self.bulkhead.leave_queue_raw();
    }
}

/// The outcome of [`Bulkhead::enqueue`].
#[must_use = "an admission holds a permit or a queue place"]
#[derive(Debug)]
pub enum Admission<'a> {
    /// A permit was free and nobody was queued: it is yours.
    Acquired(BulkheadPermit<'a>),
    /// You are queued: wait to be woken, then
    /// [`QueueTicket::try_acquire`].
    Enqueued(QueueTicket<'a>),
    /// All permits are held and the queue is full.
    Full(BulkheadFull),
}

/// The outcome of [`Bulkhead::enqueue_raw`].
#[must_use = "an admission holds a permit or a queue place"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RawAdmission {
    /// A permit was taken: release its token with [`Bulkhead::release`]
    /// (or make it a guard with [`BulkheadPermit::from_token`]).
    Acquired(BulkheadToken),
    /// A queue place was taken: end it with
    /// [`Bulkhead::acquire_queued_raw`] or [`Bulkhead::leave_queue_raw`].
    Enqueued,
    /// All permits are held and the queue is full.
    Full(BulkheadFull),
}

/// The outcome of [`Bulkhead::acquire_queued_raw`].
#[must_use = "an acquired permit must be released"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QueuedAcquire {
    /// The permit was taken and the queue left; release its token with
    /// [`Bulkhead::release`] (or make it a guard with
    /// [`BulkheadPermit::from_token`]).
    Acquired {
        /// The permit.
        token: BulkheadToken,
        /// More waiters are queued and a permit is still free: wake the
        /// next one.
        wake_next: bool,
    },
    /// No permit is free: stay queued.
    Wait,
    /// Nobody was queued (caller bug). Nothing changed.
    NotQueued,
}

/// The outcome of [`Bulkhead::leave_queue_raw`].
#[must_use = "the next waiter may need waking"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaveQueue {
    /// The queue place was given up.
    Left {
        /// More waiters are queued and a permit is free: wake the next one.
        wake_next: bool,
    },
    /// Nobody was queued (caller bug). Nothing changed.
    NotQueued,
}

/// A refusal: all permits are held (or waiters are queued ahead), and — for
/// [`Bulkhead::enqueue`] — the queue is full.
///
/// It carries a snapshot of the counts when it was refused. Its
/// [`retry_after`](Self::retry_after) is always `None`: the bulkhead keeps
/// no time, and a permit returns whenever a holder finishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BulkheadFull {
    /// Permits in use when refused.
    pub in_use: u32,
    /// Waiters queued when refused.
    pub queued: u32,
}

impl BulkheadFull {
    /// When to come back: always `None` (a permit returns whenever a
    /// holder finishes). Present so that every rejection in Stockade is read
    /// the same way.
    pub const fn retry_after(&self) -> Option<core::time::Duration> {
        None
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead full: {} permits in use, {} waiters queued",
            self.in_use, self.queued
        )
    }
}

/// `core::error::Error` is `std::error::Error`: implemented without the
/// `std` feature too.
impl core::error::Error for BulkheadFull {}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use std::string::ToString;

    /// A token as a binding would hold it (the counts do not matter).
    const TOKEN: BulkheadToken = BulkheadToken::from_counts(BulkheadCounts {
        in_use: 0,
        queued: 0,
    });

    fn counts(in_use: u32, queued: u32) -> Result<BulkheadCounts, NotHeld> {
        Ok(BulkheadCounts { in_use, queued })
    }

    /// Takes a permit as a token.
    fn take(b: &Bulkhead) -> Result<BulkheadToken, BulkheadFull> {
        b.try_acquire().map(BulkheadPermit::into_token)
    }

    fn bulkhead(max: u32, queue: u32) -> Bulkhead {
        Bulkhead::new(
            BulkheadConfig::DEFAULT
                .with_max_concurrent(max)
                .with_max_queue(queue),
        )
        .expect("valid config")
    }

    #[test]
    fn defaults_are_the_spec_values() {
        let d = BulkheadConfig::default();
        assert_eq!(d.max_concurrent, 10);
        assert_eq!(d.max_queue, 100);
        assert_eq!(d.queue_timeout, Duration::from_millis(30_000));
        let b = Bulkhead::default();
        assert_eq!(b.config(), BulkheadConfig::DEFAULT);
        assert_eq!(Bulkhead::new(d).expect("valid").config(), d);
        assert_eq!((b.in_use(), b.queued(), b.available()), (0, 0, 10));
    }

    #[test]
    fn config_errors_name_the_option() {
        let bad = |c: BulkheadConfig| Bulkhead::new(c).unwrap_err();
        let d = BulkheadConfig::DEFAULT;
        assert_eq!(
            bad(d.with_max_concurrent(0)),
            ConfigError::zero(ConfigOption::MaxConcurrent, ConfigValue::Count(0))
        );
        assert_eq!(
            bad(d.with_max_concurrent(0)).to_string(),
            "invalid max_concurrent = 0: must be greater than zero"
        );
        // A zero queue timeout is valid, as for the limiter: never wait.
        assert!(Bulkhead::new(d.with_queue_timeout(Duration::ZERO)).is_ok());
        // A queue of zero is valid: no queueing.
        assert!(Bulkhead::new(d.with_max_queue(0)).is_ok());
        // Very long timeouts saturate rather than fail.
        let b = Bulkhead::new(d.with_queue_timeout(Duration::MAX)).expect("valid");
        assert_eq!(b.config().queue_timeout, Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn layout_limits() {
        let d = BulkheadConfig::DEFAULT;
        if crate::sync::WIDE {
            assert_eq!(MAX_LIMIT, u32::MAX);
            let b = Bulkhead::new(d.with_max_concurrent(u32::MAX).with_max_queue(u32::MAX))
                .expect("fits 32-bit fields");
            assert!(take(&b).is_ok());
            assert_eq!(b.available(), u32::MAX - 1);
        } else {
            assert_eq!(MAX_LIMIT, 65_535);
            assert!(Bulkhead::new(d.with_max_concurrent(65_535).with_max_queue(65_535)).is_ok());
            assert_eq!(
                Bulkhead::new(d.with_max_concurrent(65_536)).unwrap_err(),
                ConfigError::count_above(ConfigOption::MaxConcurrent, 65_536, 65_535)
            );
            assert_eq!(
                Bulkhead::new(d.with_max_queue(65_536)).unwrap_err(),
                ConfigError::count_above(ConfigOption::MaxQueue, 65_536, 65_535)
            );
        }
    }

    #[test]
    fn fields_at_their_maximum_do_not_bleed() {
        let b = bulkhead(MAX_LIMIT, MAX_LIMIT);
        b.state
            .store(pack(MAX_LIMIT - 1, MAX_LIMIT - 1), Ordering::Relaxed);
        assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        assert_eq!((b.in_use(), b.queued()), (MAX_LIMIT - 1, MAX_LIMIT));
        assert!(matches!(b.enqueue_raw(), RawAdmission::Full(_)));
        let QueuedAcquire::Acquired { token, wake_next } = b.acquire_queued_raw() else {
            panic!("a permit is free");
        };
        assert!(!wake_next);
        assert_eq!(token.granted(), counts(MAX_LIMIT, MAX_LIMIT - 1).unwrap());
        assert_eq!((b.in_use(), b.queued()), (MAX_LIMIT, MAX_LIMIT - 1));
        assert_eq!(b.acquire_queued_raw(), QueuedAcquire::Wait);
        assert_eq!(b.release(token), counts(MAX_LIMIT - 1, MAX_LIMIT - 1));
    }

    #[test]
    fn try_acquire_up_to_the_limit_and_release_on_drop() {
        let b = bulkhead(2, 5);
        let p1 = b.try_acquire().expect("free");
        let p2 = b.try_acquire().expect("free");
        assert_eq!(b.available(), 0);
        assert_eq!(
            b.try_acquire().unwrap_err(),
            BulkheadFull {
                in_use: 2,
                queued: 0
            }
        );
        assert_eq!(p1.granted(), counts(1, 0).unwrap());
        assert_eq!(p2.granted(), counts(2, 0).unwrap());
        drop(p1);
        assert_eq!(b.in_use(), 1);
        assert_eq!(p2.release(), counts(0, 0));
        assert_eq!(b.in_use(), 0);
        assert!(core::ptr::eq(b.try_acquire().expect("free").bulkhead(), &b));
    }

    #[test]
    fn tokens_acquire_and_release() {
        let b = bulkhead(1, 0);
        let token = take(&b).expect("free");
        assert_eq!(token.granted(), counts(1, 0).unwrap());
        assert!(take(&b).is_err());
        let released = b.release(token);
        assert_eq!(released, counts(0, 0));
        assert!(!released.unwrap().has_waiters(), "no one to wake");
        // Released twice with no permit in use: refused, nothing changes.
        assert_eq!(b.release(token), Err(NotHeld));
        assert_eq!((b.in_use(), b.queued()), (0, 0));
        // A token turned back into a guard releases on drop.
        let token = take(&b).expect("free");
        assert_eq!(b.in_use(), 1);
        drop(BulkheadPermit::from_token(&b, token));
        assert_eq!(b.in_use(), 0);
        // ...and a guard of a token already released is refused too.
        assert_eq!(
            BulkheadPermit::from_token(&b, token).release(),
            Err(NotHeld)
        );
        assert_eq!(b.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_double_release_among_holders_is_bounded() {
        // The documented limit: with other permits out, a second release
        // of one token returns another holder's permit, and that holder's
        // own release is then refused. Counts never underflow.
        let b = bulkhead(2, 0);
        let first = take(&b).expect("free");
        let second = b.try_acquire().expect("free");
        assert_eq!(b.release(first), counts(1, 0));
        assert_eq!(b.release(first), counts(0, 0)); // undetectable: took `second`'s
        let extra = b.try_acquire().expect("free");
        let more = b.try_acquire().expect("free"); // 3 callers in all, max 2
        assert_eq!(b.in_use(), 2);
        drop(extra);
        assert_eq!(second.release(), counts(0, 0));
        drop(more); // the robbed count: refused, nothing changes
        assert_eq!((b.in_use(), b.queued()), (0, 0));
    }

    #[test]
    fn enqueue_acquires_queues_then_refuses() {
        let b = bulkhead(1, 2);
        let p = match b.enqueue() {
            Admission::Acquired(p) => p,
            other => panic!("expected a permit, got {other:?}"),
        };
        let t1 = match b.enqueue() {
            Admission::Enqueued(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        assert_eq!(
            b.enqueue_raw(),
            RawAdmission::Full(BulkheadFull {
                in_use: 1,
                queued: 2
            })
        );
        assert!(matches!(b.enqueue(), Admission::Full(_)));
        assert_eq!((b.in_use(), b.queued()), (1, 2));
        assert!(!b.waiter_can_proceed());

        // The holder leaves: two queued, wake the front.
        let r = p.release();
        assert_eq!(r, counts(0, 2));
        assert!(r.is_ok_and(BulkheadCounts::has_waiters));
        assert!(b.waiter_can_proceed());

        // No barging: a newcomer cannot take the free permit.
        assert_eq!(
            b.try_acquire().unwrap_err(),
            BulkheadFull {
                in_use: 0,
                queued: 2
            }
        );
        assert!(matches!(b.enqueue(), Admission::Full(_)));

        // The front waiter takes it and leaves the queue in one step.
        let p = t1.try_acquire().expect("a permit is free");
        assert_eq!((b.in_use(), b.queued()), (1, 1));
        // The raw waiter has to wait.
        assert_eq!(b.acquire_queued_raw(), QueuedAcquire::Wait);
        drop(p);
        assert_eq!(
            b.acquire_queued_raw(),
            QueuedAcquire::Acquired {
                token: BulkheadToken::from_counts(counts(1, 0).unwrap()),
                wake_next: false
            }
        );
        assert_eq!((b.in_use(), b.queued()), (1, 0));
        assert_eq!(b.acquire_queued_raw(), QueuedAcquire::NotQueued);
        assert_eq!(b.release(TOKEN), counts(0, 0));
        assert_eq!((b.in_use(), b.queued()), (0, 0));
    }

    #[test]
    fn no_queue_means_refuse_when_full() {
        let b = bulkhead(1, 0);
        let RawAdmission::Acquired(token) = b.enqueue_raw() else {
            panic!("a permit is free");
        };
        assert_eq!(
            b.enqueue_raw(),
            RawAdmission::Full(BulkheadFull {
                in_use: 1,
                queued: 0
            })
        );
        assert_eq!(b.release(token), counts(0, 0));
    }

    #[test]
    fn acquire_queued_reports_chained_wakeups() {
        let b = bulkhead(3, 5);
        for _ in 0..3 {
            assert!(take(&b).is_ok());
        }
        for _ in 0..3 {
            assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        }
        // Two permits come back before the front waiter runs.
        assert_eq!(b.release(TOKEN), counts(2, 3));
        assert_eq!(b.release(TOKEN), counts(1, 3));
        // The first woken waiter is told to wake the next one...
        assert!(matches!(
            b.acquire_queued_raw(),
            QueuedAcquire::Acquired {
                wake_next: true,
                ..
            }
        ));
        // ...which takes the last free permit; the third has to wait.
        assert!(matches!(
            b.acquire_queued_raw(),
            QueuedAcquire::Acquired {
                wake_next: false,
                ..
            }
        ));
        assert_eq!(b.acquire_queued_raw(), QueuedAcquire::Wait);
        assert_eq!((b.in_use(), b.queued()), (3, 1));
    }

    #[test]
    fn leaving_the_queue() {
        let b = bulkhead(1, 3);
        assert!(take(&b).is_ok());
        let t1 = match b.enqueue() {
            Admission::Enqueued(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        let t2 = match b.enqueue() {
            Admission::Enqueued(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        assert_eq!(b.queued(), 2);
        // No permit free: leaving wakes nobody.
        assert!(!t1.leave());
        assert_eq!(b.queued(), 1);
        // The ticket can wait and still be dropped.
        let t2 = t2.try_acquire().expect_err("no permit is free");
        assert!(core::ptr::eq(t2.bulkhead(), &b));
        drop(t2);
        assert_eq!(b.queued(), 0);
        // Underflow guard.
        assert_eq!(b.leave_queue_raw(), LeaveQueue::NotQueued);
        assert_eq!((b.in_use(), b.queued()), (1, 0));

        // A waiter that times out after a wake-up was sent to it passes the
        // wake-up on.
        assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        assert_eq!(b.release(TOKEN), counts(0, 2));
        assert_eq!(b.leave_queue_raw(), LeaveQueue::Left { wake_next: true });
        assert_eq!(b.leave_queue_raw(), LeaveQueue::Left { wake_next: false });
        assert_eq!((b.in_use(), b.queued()), (0, 0));
    }

    #[test]
    fn raw_ticket_and_contract_breach_do_not_underflow() {
        let b = bulkhead(1, 1);
        let token = take(&b).expect("free");
        let t = match b.enqueue() {
            Admission::Enqueued(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        // Someone breaches the raw contract and removes our queue place.
        assert_eq!(b.leave_queue_raw(), LeaveQueue::Left { wake_next: false });
        assert_eq!(b.release(token), counts(0, 0));
        // The ticket finds nobody queued: no permit is taken out of thin air.
        let t = t.try_acquire().expect_err("not queued any more");
        drop(t);
        assert_eq!((b.in_use(), b.queued()), (0, 0));

        // into_raw keeps the queue place.
        assert!(take(&b).is_ok());
        let t = match b.enqueue() {
            Admission::Enqueued(t) => t,
            other => panic!("expected a ticket, got {other:?}"),
        };
        let raw = t.into_raw();
        assert_eq!(raw.queued(), 1);
        assert_eq!(raw.leave_queue_raw(), LeaveQueue::Left { wake_next: false });
    }

    #[test]
    fn a_guard_robbed_by_a_double_release_changes_nothing() {
        let b = bulkhead(2, 3);
        let p = b.try_acquire().expect("free");
        let q = b.try_acquire().expect("free");
        for _ in 0..2 {
            assert_eq!(b.enqueue_raw(), RawAdmission::Enqueued);
        }
        // Two double releases take both guards' permits.
        assert_eq!(b.release(TOKEN), counts(1, 2));
        assert_eq!(b.release(TOKEN), counts(0, 2));
        assert_eq!((b.in_use(), b.queued()), (0, 2));
        // The guards' single `fetch_sub` would borrow from `queued`: undone.
        assert_eq!(p.release(), Err(NotHeld));
        assert_eq!((b.in_use(), b.queued()), (0, 2));
        drop(q);
        assert_eq!((b.in_use(), b.queued()), (0, 2));
        // Nobody queued: the borrow wraps the whole word, and is undone.
        assert_eq!(b.leave_queue_raw(), LeaveQueue::Left { wake_next: true });
        assert_eq!(b.leave_queue_raw(), LeaveQueue::Left { wake_next: false });
        assert_eq!(b.state.load(Ordering::Relaxed), 0);
        assert_eq!(
            BulkheadPermit::from_token(&b, TOKEN).release(),
            Err(NotHeld)
        );
        assert_eq!(b.state.load(Ordering::Relaxed), 0);
        // Both fields at their maximum.
        b.state.store(pack(0, MAX_LIMIT), Ordering::Relaxed);
        drop(BulkheadPermit::from_token(&b, TOKEN));
        assert_eq!((b.in_use(), b.queued()), (0, MAX_LIMIT));
        b.state.store(pack(MAX_LIMIT, MAX_LIMIT), Ordering::Relaxed);
        assert_eq!(
            BulkheadPermit::from_token(&b, TOKEN).release(),
            counts(MAX_LIMIT - 1, MAX_LIMIT)
        );
        assert_eq!((b.in_use(), b.queued()), (MAX_LIMIT - 1, MAX_LIMIT));
    }

    #[test]
    fn errors_display() {
        extern crate alloc;
        use alloc::string::ToString;
        let e = BulkheadFull {
            in_use: 3,
            queued: 7,
        };
        assert_eq!(
            e.to_string(),
            "bulkhead full: 3 permits in use, 7 waiters queued"
        );
        assert_eq!(
            NotHeld.to_string(),
            "bulkhead release refused: no permit is in use"
        );
    }

    #[test]
    fn sizes() {
        let size = core::mem::size_of::<Bulkhead>();
        assert_eq!(size, 24, "Bulkhead is {size} bytes");
        assert_eq!(Bulkhead::SIZE, size);
        assert_eq!(Bulkhead::ALIGN, core::mem::align_of::<Bulkhead>());
    }

    #[test]
    fn raw_config_round_trips_and_validates_in_one_place() {
        assert_eq!(
            RawBulkheadConfig::default(),
            BulkheadConfig::DEFAULT.to_raw()
        );
        assert_eq!(
            BulkheadConfig::try_from(RawBulkheadConfig::DEFAULT),
            Ok(BulkheadConfig::DEFAULT)
        );
        let zero = RawBulkheadConfig {
            max_concurrent: 0,
            ..RawBulkheadConfig::DEFAULT
        };
        assert_eq!(
            BulkheadConfig::try_from(zero),
            Err(ConfigError::zero(
                ConfigOption::MaxConcurrent,
                ConfigValue::Count(0)
            ))
        );
        // u32::MAX counts: an error with the 32-bit layout, never a panic.
        let max = RawBulkheadConfig {
            max_concurrent: u32::MAX,
            max_queue: u32::MAX,
            queue_timeout_ms: u64::MAX,
        };
        assert_eq!(BulkheadConfig::try_from(max).is_ok(), crate::sync::WIDE);
        // Zero queue timeout is valid: never wait.
        let no_wait = RawBulkheadConfig {
            queue_timeout_ms: 0,
            ..RawBulkheadConfig::DEFAULT
        };
        assert!(BulkheadConfig::try_from(no_wait).is_ok());
    }

    #[test]
    fn raw_config_saturates_a_queue_timeout_beyond_u64_milliseconds() {
        let raw = |timeout| {
            BulkheadConfig::DEFAULT
                .with_queue_timeout(timeout)
                .to_raw()
                .queue_timeout_ms
        };
        assert_eq!(raw(Duration::MAX), u64::MAX);
        // 385 ms past u64::MAX ms: truncated, it would read as 384 ms.
        assert_eq!(raw(Duration::from_secs(u64::MAX / 1000 + 1)), u64::MAX);
        assert_eq!(raw(Duration::from_millis(u64::MAX)), u64::MAX);
        assert_eq!(raw(Duration::from_millis(u64::MAX - 1)), u64::MAX - 1);
    }
}
