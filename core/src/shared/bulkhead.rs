//! [`SharedBulkhead`]: a host-wide bulkhead whose permits come back when
//! the process holding them dies.
// Off Linux no region is ever opened, so the pieces that work on one are
// unused there (the API still builds and answers `Unsupported`).
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports, unused_mut))]

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::path::Path;
use std::sync::Once;
use std::vec;
use std::vec::Vec;

use super::{SharedError, SharedOptions};
use crate::bulkhead::owners::{OwnerSlot, return_orphans};
use crate::bulkhead::{Bulkhead, BulkheadConfig, BulkheadCounts, BulkheadFull, NotHeld};
use crate::clock::Clock;

use super::HostClock;
#[cfg(target_os = "linux")]
use super::{region, sys};

/// The byte whose lock makes one process the reaper at a time.
const REAPER_LOCK_BYTE: u64 = 1;
/// A reaper's two reads of the slots must fit in this, so that a slot's
/// 24-bit operation number cannot wrap between them (that takes 2^24
/// atomic adds on one cache line, far over 10 ms).
const SNAPSHOT_WINDOW: Duration = Duration::from_millis(10);
/// Snapshot attempts per reap.
const SNAPSHOT_ATTEMPTS: u32 = 64;
/// A waiter's first and longest poll interval.
const FIRST_POLL: Duration = Duration::from_micros(50);
const LONGEST_POLL: Duration = Duration::from_millis(1);

/// Counts the forks of this process: the child's `pthread_atfork` handler
/// adds one, so an object can tell it is in a child on its next call.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);
static FORK_HANDLER: Once = Once::new();

#[cfg(target_os = "linux")]
unsafe extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic add.
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Why a shared bulkhead gave no permit.
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedBulkheadError {
    /// Every permit is held (or the wait queue is full).
    Full(BulkheadFull),
    /// No permit came free within the queue timeout.
    TimedOut {
        /// How long the caller waited.
        waited: Duration,
    },
    /// This process holds no owner slot and could not take one (in a
    /// forked child, or when every slot is held).
    Owner(SharedError),
}

impl fmt::Display for SharedBulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedBulkheadError::Full(full) => full.fmt(f),
            SharedBulkheadError::TimedOut { waited } => write!(
                f,
                "no bulkhead permit came free within {}",
                crate::HumanDuration(*waited)
            ),
            SharedBulkheadError::Owner(e) => e.fmt(f),
        }
    }
}

impl core::error::Error for SharedBulkheadError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SharedBulkheadError::Owner(e) => Some(e),
            _ => None,
        }
    }
}

/// A permit of a [`SharedBulkhead`], recorded as held by this process
/// until it is dropped.
#[must_use = "dropping a permit releases it at once"]
pub struct SharedPermit<'a> {
    bulkhead: &'a SharedBulkhead,
    token: SharedToken,
}

impl SharedPermit<'_> {
    /// The counts right after the grant (host-wide).
    pub fn granted(&self) -> BulkheadCounts {
        self.token.granted
    }

    /// The permit as a plain token, for a layer that keeps it past this
    /// borrow; release it with [`SharedBulkhead::release`].
    pub fn into_token(self) -> SharedToken {
        let token = self.token;
        core::mem::forget(self);
        token
    }
}

impl Drop for SharedPermit<'_> {
    fn drop(&mut self) {
        let _ = self.bulkhead.release(self.token);
    }
}

impl fmt::Debug for SharedPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPermit")
            .field("token", &self.token)
            .finish()
    }
}

/// A permit as plain data: which owner slot holds it, in which fork
/// generation. Release it exactly once; a token from before a `fork`
/// released in the child does nothing (the parent holds that permit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedToken {
    slot: u32,
    generation: u64,
    granted: BulkheadCounts,
}

impl SharedToken {
    /// The counts right after the grant.
    pub fn granted(&self) -> BulkheadCounts {
        self.granted
    }
}

/// A waiter's place among a [`SharedBulkhead`]'s waiters
/// ([`SharedBulkhead::join_queue`]); leaves the queue when dropped.
#[must_use = "dropping the place leaves the queue"]
pub struct QueuePlace<'a> {
    bulkhead: &'a SharedBulkhead,
    slot: u32,
}

impl<'a> QueuePlace<'a> {
    /// Takes a permit if one is free now (reaping dead owners when full).
    /// Keeps the place on failure; a granted caller may drop the place.
    ///
    /// # Errors
    ///
    /// [`SharedBulkheadError::Full`] while every permit is held.
    pub fn try_acquire(&self) -> Result<SharedPermit<'a>, SharedBulkheadError> {
        let b = self.bulkhead;
        if let Ok(token) = b.take(self.slot) {
            return Ok(SharedPermit { bulkhead: b, token });
        }
        let _ = b.reap();
        b.take(self.slot)
            .map(|token| SharedPermit { bulkhead: b, token })
            .map_err(SharedBulkheadError::Full)
    }

    /// The interval before the next poll after one of `last`: double it,
    /// at most 1 ms (start at 50 µs).
    pub fn next_poll(&self, last: Duration) -> Duration {
        (last * 2).clamp(FIRST_POLL, LONGEST_POLL)
    }

    /// The first poll interval, 50 µs.
    pub const FIRST_POLL: Duration = FIRST_POLL;

    /// The place as plain data, for a layer that keeps it past this borrow
    /// (an event loop's task); use it with
    /// [`SharedBulkhead::try_acquire_queued`] and give it back exactly once
    /// with [`SharedBulkhead::leave_queue`].
    pub fn into_token(self) -> QueueToken {
        let token = QueueToken {
            slot: self.slot,
            generation: self.bulkhead.generation.load(Ordering::Relaxed),
        };
        core::mem::forget(self);
        token
    }
}

/// A [`QueuePlace`] as plain data ([`QueuePlace::into_token`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueToken {
    slot: u32,
    generation: u64,
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        // In a forked child the place was the parent's: its slot's count
        // is the parent's to keep.
        if self.bulkhead.generation.load(Ordering::Relaxed)
            == FORK_GENERATION.load(Ordering::Relaxed)
        {
            self.bulkhead
                .waiters(self.slot)
                .fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl fmt::Debug for QueuePlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuePlace")
            .field("slot", &self.slot)
            .finish()
    }
}

/// This process's owner slot.
#[derive(Clone, Copy, Debug)]
struct Owner {
    slot: u32,
    generation: u64,
}

/// A bulkhead for every process on the host, whose permits come back when
/// a process holding them dies.
///
/// # How ownership is kept
///
/// Each process that opens the bulkhead takes an *owner slot*: a word in
/// the region that counts the permits it holds, and a byte of the file that
/// it keeps locked with an open-file-description lock (`F_OFD_SETLK`). The
/// kernel drops that lock when the process dies, however it dies — unlike a
/// pid, which can be reused and differs between PID namespaces. Taking a
/// permit is the core's one compare-and-swap on the shared word, bracketed
/// by two atomic adds on the caller's slot (an "in flight" mark, then the
/// count); releasing is the same in reverse. So a slot's count is exact
/// whenever no operation of its process is in flight, and a process killed
/// between the brackets leaves an in-flight mark.
///
/// The accounting is the core's [`owners`](crate::bulkhead::owners)
/// module (model-checked with loom for an owner stopped at each step).
///
/// **Reaping.** A caller that finds the bulkhead full first reaps: under a
/// host-wide reaper lock (another locked byte) it locks every slot whose
/// owner is gone, takes a consistent snapshot of the live slots (two reads
/// of every slot around one read of the shared word, within 10 ms, no live
/// operation in flight, nothing changed), and returns the difference
/// between the permits in use and those the live processes hold, in one
/// compare-and-swap. That difference is exact even for a process killed
/// mid-operation, and even if a reaper itself dies mid-reap (the next one
/// computes it again). Then it clears and unlocks the dead slots.
///
/// **The bound.** A dead process's permits are back before any caller is
/// refused for lack of them, except while a snapshot cannot be had (a live
/// process has an operation in flight at each of 64 attempts): then the
/// refused caller, and every later one that finds the bulkhead full, tries
/// again, and a waiting caller tries at each poll (at most every 1 ms).
/// Capacity is never over-committed: a reaper returns only permits no live
/// process holds.
///
/// # Waiting
///
/// A caller that finds every permit held waits for up to `queue_timeout`
/// (if `max_queue` allows: waiters are counted per owner slot and the
/// total never exceeds `max_queue`) by polling: 50 µs, doubling to 1 ms.
/// So a freed permit is seen within 1 ms plus scheduling delay, nobody
/// spins, and there is no FIFO across processes: a newcomer may take a
/// permit that frees up while a waiter sleeps.
///
/// # Limits
///
/// `max_concurrent` at most 16 777 215; at most 65 535 threads of one
/// process inside `try_acquire`/`release` at the same instant; at most
/// [`SharedOptions::max_processes`] processes with the bulkhead open.
///
/// # Fork
///
/// A forked child shares its parent's open file description, and with it
/// the parent's slot lock. On its first call the child opens the file
/// again, maps it in place of the inherited mapping and takes a slot of
/// its own; permits its parent held stay the parent's (a token from
/// before the fork, released in the child, does nothing). Until that first
/// call the child keeps the parent's slot lock alive, so a parent that
/// dies meanwhile is reaped once the child calls or exits.
///
/// # Examples
///
/// ```no_run
/// use stockade::bulkhead::BulkheadConfig;
/// use stockade::shared::{SharedBulkhead, SharedOptions};
///
/// let config = BulkheadConfig::DEFAULT.with_max_concurrent(4);
/// let db = SharedBulkhead::open("database", config, &SharedOptions::new())?;
/// if let Ok(permit) = db.try_acquire() {
///     // at most 4 processes' calls here at once, host-wide
///     drop(permit);
/// }
/// # Ok::<(), stockade::shared::SharedError>(())
/// ```
pub struct SharedBulkhead {
    #[cfg(target_os = "linux")]
    region: region::Region,
    machine: NonNull<Bulkhead>,
    config: BulkheadConfig,
    slots: u32,
    created: bool,
    /// `slot` of the current owner, and the fork generation it was taken
    /// in; read on every call.
    slot: AtomicU32,
    generation: AtomicU64,
    /// Serialises taking a new slot (after a fork).
    owner: parking_lot::Mutex<Owner>,
}

// SAFETY: `machine` and the slot words point into the mapping `region`
// owns for as long as `self` lives; they are reached through atomics only.
unsafe impl Send for SharedBulkhead {}
// SAFETY: as for `Send`.
unsafe impl Sync for SharedBulkhead {}

impl fmt::Debug for SharedBulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBulkhead")
            .field("path", &self.path())
            .field("config", &self.config)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl SharedBulkhead {
    /// The largest `max_concurrent` of a shared bulkhead.
    pub const MAX_CONCURRENT: u32 = OwnerSlot::MAX_HELD;

    /// Opens the shared bulkhead `name`, creating it with `config` if it
    /// does not exist, and takes this process's owner slot.
    ///
    /// # Errors
    ///
    /// As [`Shared::open`](super::Shared::open); also
    /// [`SharedError::InvalidConfig`] for `max_concurrent` above
    /// [`MAX_CONCURRENT`](Self::MAX_CONCURRENT),
    /// [`SharedError::InvalidOption`] for `max_processes` outside
    /// 1..=[`SharedOptions::MAX_PROCESSES`], and
    /// [`SharedError::NoOwnerSlot`] when every slot is held by a live
    /// process.
    pub fn open(
        name: &str,
        config: BulkheadConfig,
        options: &SharedOptions,
    ) -> Result<SharedBulkhead, SharedError> {
        use crate::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};
        if config.max_concurrent > Self::MAX_CONCURRENT {
            return Err(SharedError::InvalidConfig(ConfigError::new(
                ConfigOption::MaxConcurrent,
                ConfigValue::Count(u64::from(config.max_concurrent)),
                ConfigProblem::TooLarge {
                    max: ConfigValue::Count(u64::from(Self::MAX_CONCURRENT)),
                },
            )));
        }
        let slots = options.max_processes_value();
        if slots == 0 || slots > SharedOptions::MAX_PROCESSES {
            return Err(SharedError::InvalidOption {
                option: "max_processes",
                value: u64::from(slots),
                problem: "must be between 1 and 4096",
            });
        }
        #[cfg(target_os = "linux")]
        {
            FORK_HANDLER.call_once(|| {
                // Failing to register (ENOMEM) leaves children to keep the
                // parent's slot: permits are still never over-committed.
                let _ = sys::at_fork_child(after_fork_in_child);
            });
            let generation = FORK_GENERATION.load(Ordering::SeqCst);
            let opened = region::open::<Bulkhead>(name, config, options, slots)?;
            let slots = opened.region.layout().slots;
            let bulkhead = SharedBulkhead {
                machine: opened.machine,
                config: opened.config,
                slots,
                created: opened.created,
                region: opened.region,
                slot: AtomicU32::new(u32::MAX),
                generation: AtomicU64::new(generation),
                owner: parking_lot::Mutex::new(Owner {
                    slot: u32::MAX,
                    generation,
                }),
            };
            let slot = bulkhead.take_slot(options.open_timeout_value())?;
            *bulkhead.owner.lock() = Owner { slot, generation };
            bulkhead.slot.store(slot, Ordering::SeqCst);
            Ok(bulkhead)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (name, config, options);
            Err(SharedError::Unsupported(
                "shared memory regions are implemented for Linux only",
            ))
        }
    }

    /// The config in force.
    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    /// Whether this open created the region.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The region's file.
    pub fn path(&self) -> &Path {
        #[cfg(target_os = "linux")]
        {
            self.region.path()
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    /// The number of owner slots (`max_processes`).
    pub fn max_processes(&self) -> u32 {
        self.slots
    }

    /// Removes the region's name, as [`Shared::unlink`](super::Shared::unlink).
    ///
    /// # Errors
    ///
    /// [`SharedError::Io`] if the file cannot be removed.
    pub fn unlink(&self) -> Result<(), SharedError> {
        #[cfg(target_os = "linux")]
        {
            self.region.unlink()
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    fn machine(&self) -> &Bulkhead {
        // SAFETY: `machine` points at the initialised bulkhead inside the
        // mapping `region` keeps alive; shared only through its atomics.
        unsafe { self.machine.as_ref() }
    }

    /// Permits held host-wide (including those of dead processes not yet
    /// reaped).
    pub fn in_use(&self) -> u32 {
        self.machine().in_use()
    }

    /// Permits free host-wide.
    pub fn available(&self) -> u32 {
        self.config.max_concurrent.saturating_sub(self.in_use())
    }

    /// Callers waiting for a permit, host-wide.
    pub fn waiting(&self) -> u32 {
        (0..self.slots)
            .map(|i| self.waiters(i).load(Ordering::SeqCst))
            .fold(0u32, |a, w| a.saturating_add(w as u32))
    }

    /// Permits this process holds.
    pub fn held_here(&self) -> u32 {
        match self.current_slot() {
            Ok(slot) => self.word(slot).held(),
            Err(_) => 0,
        }
    }

    /// Owner slot `i`'s account (the first word of the slot).
    fn word(&self, i: u32) -> &OwnerSlot {
        #[cfg(target_os = "linux")]
        {
            let offset = self.region.layout().slots_offset + i as usize * region::SLOT_STRIDE;
            // SAFETY: `i < slots`, so the slot lies within the mapping
            // (checked at open), at a multiple of 128; an `OwnerSlot` is
            // one native `AtomicU64` (`repr(transparent)`); the reference
            // lives as long as `&self`, which holds the mapping.
            unsafe { region::at::<OwnerSlot>(self.region.base(), offset).as_ref() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = i;
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    /// The waiter count of owner slot `i` (8 bytes after its word).
    fn waiters(&self, i: u32) -> &AtomicU64 {
        #[cfg(target_os = "linux")]
        {
            let offset = self.region.layout().slots_offset + i as usize * region::SLOT_STRIDE + 8;
            // SAFETY: as in `word`: 8 bytes after it, within the slot.
            unsafe { region::at::<AtomicU64>(self.region.base(), offset).as_ref() }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = i;
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    #[cfg(target_os = "linux")]
    fn lock_offset(&self, i: u32) -> u64 {
        (self.region.layout().slots_offset + i as usize * region::SLOT_STRIDE) as u64
    }

    /// This process's slot; after a fork, a new one.
    #[inline]
    fn current_slot(&self) -> Result<u32, SharedError> {
        let now = FORK_GENERATION.load(Ordering::Relaxed);
        if now == self.generation.load(Ordering::Relaxed) {
            return Ok(self.slot.load(Ordering::Relaxed));
        }
        self.reattach(now)
    }

    #[cold]
    fn reattach(&self, now: u64) -> Result<u32, SharedError> {
        let mut owner = self.owner.lock();
        if owner.generation == now {
            return Ok(owner.slot);
        }
        #[cfg(target_os = "linux")]
        {
            self.region.reopen()?;
            let slot = self.take_slot(Duration::from_secs(1))?;
            *owner = Owner {
                slot,
                generation: now,
            };
            self.slot.store(slot, Ordering::SeqCst);
            self.generation.store(now, Ordering::SeqCst);
            Ok(slot)
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    /// Locks a free owner slot, first reaping what a dead owner left in it.
    #[cfg(target_os = "linux")]
    fn take_slot(&self, timeout: Duration) -> Result<u32, SharedError> {
        for i in 0..self.slots {
            let locked = {
                let file = self.region.file();
                sys::try_lock_byte(&file, self.lock_offset(i))
                    .map_err(|e| self.region.io("lock an owner slot of", e))?
            };
            if !locked {
                continue;
            }
            if !self.word(i).is_idle() || self.waiters(i).load(Ordering::SeqCst) != 0 {
                // A dead owner's leftovers: reap this slot (we hold its
                // lock) before using it.
                let deadline = HostClock.now().saturating_add(timeout);
                loop {
                    match self.reap_slots(&[i])? {
                        Some(_) => break,
                        None if HostClock.now() >= deadline => {
                            let file = self.region.file();
                            let _ = sys::unlock_byte(&file, self.lock_offset(i));
                            return Err(SharedError::Busy {
                                path: self.path().to_path_buf(),
                            });
                        }
                        None => std::thread::sleep(FIRST_POLL),
                    }
                }
            }
            return Ok(i);
        }
        Err(SharedError::NoOwnerSlot {
            path: self.path().to_path_buf(),
            max_processes: self.slots,
        })
    }

    /// Takes a permit if one is free, never waiting. A caller that finds
    /// the bulkhead full reaps dead owners first (see the type docs).
    ///
    /// # Errors
    ///
    /// [`SharedBulkheadError::Full`] when every permit is held by a live
    /// process; [`SharedBulkheadError::Owner`] in a forked child that could
    /// not take an owner slot.
    #[inline]
    pub fn try_acquire(&self) -> Result<SharedPermit<'_>, SharedBulkheadError> {
        let slot = self.current_slot().map_err(SharedBulkheadError::Owner)?;
        match self.take(slot) {
            Ok(token) => Ok(SharedPermit {
                bulkhead: self,
                token,
            }),
            Err(_) => self.try_acquire_after_reap(slot),
        }
    }

    #[cold]
    fn try_acquire_after_reap(&self, slot: u32) -> Result<SharedPermit<'_>, SharedBulkheadError> {
        let _ = self.reap();
        self.take(slot)
            .map(|token| SharedPermit {
                bulkhead: self,
                token,
            })
            .map_err(SharedBulkheadError::Full)
    }

    /// Takes a permit, waiting up to the config's `queue_timeout` (see
    /// the type docs: polling, no FIFO across processes).
    ///
    /// # Errors
    ///
    /// [`SharedBulkheadError::Full`] at once when `max_queue` callers
    /// already wait (or `queue_timeout` is zero);
    /// [`SharedBulkheadError::TimedOut`] when no permit came free in time;
    /// [`SharedBulkheadError::Owner`] as for `try_acquire`.
    pub fn acquire(&self) -> Result<SharedPermit<'_>, SharedBulkheadError> {
        self.acquire_timeout(self.config.queue_timeout)
    }

    /// [`acquire`](Self::acquire) waiting at most `min(timeout,
    /// queue_timeout)`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Self::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SharedPermit<'_>, SharedBulkheadError> {
        let slot = self.current_slot().map_err(SharedBulkheadError::Owner)?;
        let full = match self.take(slot) {
            Ok(token) => {
                return Ok(SharedPermit {
                    bulkhead: self,
                    token,
                });
            }
            Err(full) => full,
        };
        let _ = self.reap();
        if let Ok(token) = self.take(slot) {
            return Ok(SharedPermit {
                bulkhead: self,
                token,
            });
        }
        let limit = timeout.min(self.config.queue_timeout);
        if limit.is_zero() {
            return Err(SharedBulkheadError::Full(full));
        }
        let place = self.join_queue()?;
        let start = HostClock.now();
        let mut poll = FIRST_POLL;
        loop {
            if let Ok(permit) = place.try_acquire() {
                return Ok(permit);
            }
            let waited = HostClock.now().saturating_duration_since(start);
            if waited >= limit {
                return Err(SharedBulkheadError::TimedOut { waited });
            }
            std::thread::sleep(poll.min(limit - waited));
            poll = place.next_poll(poll);
        }
    }

    /// A place among the waiters, for a caller that polls by itself (an
    /// event loop, or a thread that checks for signals between polls): it
    /// counts towards `max_queue` until dropped. Poll with
    /// [`QueuePlace::try_acquire`] at intervals of
    /// [`QueuePlace::next_poll`] (50 µs doubling to 1 ms).
    ///
    /// # Errors
    ///
    /// [`SharedBulkheadError::Full`] when `max_queue` callers already wait
    /// (or `max_queue` or `queue_timeout` is zero: nobody waits);
    /// [`SharedBulkheadError::Owner`] as for `try_acquire`.
    pub fn join_queue(&self) -> Result<QueuePlace<'_>, SharedBulkheadError> {
        let slot = self.current_slot().map_err(SharedBulkheadError::Owner)?;
        let full = || {
            SharedBulkheadError::Full(BulkheadFull {
                in_use: self.in_use(),
                queued: self.waiting(),
            })
        };
        if self.config.max_queue == 0 || self.config.queue_timeout.is_zero() {
            return Err(full());
        }
        // Count first, then check the total, so two processes joining at
        // once never both fit past `max_queue`.
        let mine = self.waiters(slot);
        mine.fetch_add(1, Ordering::SeqCst);
        if self.waiting() > self.config.max_queue {
            mine.fetch_sub(1, Ordering::SeqCst);
            return Err(full());
        }
        Ok(QueuePlace {
            bulkhead: self,
            slot,
        })
    }

    /// [`QueuePlace::try_acquire`] for a place kept as a token.
    ///
    /// # Errors
    ///
    /// As [`QueuePlace::try_acquire`]; [`SharedBulkheadError::Owner`] for a
    /// token from before a `fork` (the place was the parent's).
    pub fn try_acquire_queued(
        &self,
        place: &QueueToken,
    ) -> Result<SharedPermit<'_>, SharedBulkheadError> {
        let slot = self.current_slot().map_err(SharedBulkheadError::Owner)?;
        if place.generation != self.generation.load(Ordering::Relaxed) || place.slot != slot {
            return self.try_acquire();
        }
        let borrowed = core::mem::ManuallyDrop::new(QueuePlace {
            bulkhead: self,
            slot,
        });
        borrowed.try_acquire()
    }

    /// Leaves the waiters ([`QueuePlace`]'s drop, for a place kept as a
    /// token). A token from before a `fork` does nothing in the child.
    pub fn leave_queue(&self, place: QueueToken) {
        if place.generation == self.generation.load(Ordering::Relaxed)
            && place.generation == FORK_GENERATION.load(Ordering::Relaxed)
            && place.slot < self.slots
        {
            let w = self.waiters(place.slot);
            let _ = w.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
    }

    /// One grant, recorded in this process's owner slot.
    #[inline]
    fn take(&self, slot: u32) -> Result<SharedToken, BulkheadFull> {
        let granted = self.word(slot).try_acquire(self.machine())?;
        Ok(SharedToken {
            slot,
            generation: self.generation.load(Ordering::Relaxed),
            granted,
        })
    }

    /// Returns a permit: the slot's in-flight mark, the core's release,
    /// the slot's count. A token from before a `fork`, released in the
    /// child, does nothing: the permit is the parent's.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] — a caller bug — when this process holds no permit in
    /// the token's slot; nothing changes.
    pub fn release(&self, token: SharedToken) -> Result<(), NotHeld> {
        if token.generation != FORK_GENERATION.load(Ordering::Relaxed)
            || token.generation != self.generation.load(Ordering::Relaxed)
            || token.slot >= self.slots
        {
            return Ok(());
        }
        self.word(token.slot).release(self.machine()).map(|_| ())
    }

    /// Returns one permit this process holds, for a layer that keeps
    /// permits as counts only (the blocking bulkhead's tokens): the same as
    /// releasing one of this process's [`SharedToken`]s.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] when this process holds no permit (in a forked child,
    /// the parent's permits are not the child's).
    pub fn release_held(&self) -> Result<(), NotHeld> {
        let slot = self.current_slot().map_err(|_| NotHeld)?;
        self.release(SharedToken {
            slot,
            generation: self.generation.load(Ordering::Relaxed),
            granted: BulkheadCounts::default(),
        })
    }

    /// Returns the permits of owners that are gone (see the type docs);
    /// called by itself when the bulkhead is found full. Returns how many
    /// permits came back, or `None` when another process is reaping or no
    /// consistent snapshot could be had (try again later).
    ///
    /// # Errors
    ///
    /// [`SharedError::Io`] if a lock operation fails.
    pub fn reap(&self) -> Result<Option<u32>, SharedError> {
        #[cfg(target_os = "linux")]
        {
            let mine = self.current_slot()?;
            let mut dead = Vec::new();
            {
                let file = self.region.file();
                for i in 0..self.slots {
                    if i == mine {
                        continue;
                    }
                    if self.word(i).is_idle() && self.waiters(i).load(Ordering::SeqCst) == 0 {
                        continue;
                    }
                    if sys::try_lock_byte(&file, self.lock_offset(i))
                        .map_err(|e| self.region.io("lock an owner slot of", e))?
                    {
                        dead.push(i);
                    }
                }
            }
            if dead.is_empty() {
                return Ok(Some(0));
            }
            let result = self.reap_slots(&dead);
            let file = self.region.file();
            for &i in &dead {
                let _ = sys::unlock_byte(&file, self.lock_offset(i));
            }
            result
        }
        #[cfg(not(target_os = "linux"))]
        {
            unreachable!("no SharedBulkhead exists off Linux")
        }
    }

    /// Reaps `dead` (slots whose locks the caller holds), under the
    /// reaper lock. `None`: not now (lock busy, or no snapshot).
    #[cfg(target_os = "linux")]
    fn reap_slots(&self, dead: &[u32]) -> Result<Option<u32>, SharedError> {
        let file = self.region.file();
        if !sys::try_lock_byte(&file, REAPER_LOCK_BYTE)
            .map_err(|e| self.region.io("lock the reaper byte of", e))?
        {
            return Ok(None);
        }
        // A dead process waits no more.
        for &i in dead {
            self.waiters(i).store(0, Ordering::SeqCst);
        }
        let mut scratch = vec![0u64; self.slots as usize];
        let mut returned = None;
        for attempt in 0..SNAPSHOT_ATTEMPTS {
            if attempt > 0 {
                std::thread::yield_now();
            }
            returned = return_orphans(
                self.machine(),
                self.slots as usize,
                |i| self.word(i as u32),
                |i| dead.contains(&(i as u32)),
                &mut scratch,
                &HostClock,
                SNAPSHOT_WINDOW,
            );
            if returned.is_some() {
                break;
            }
        }
        let _ = sys::unlock_byte(&file, REAPER_LOCK_BYTE);
        Ok(returned)
    }
}
