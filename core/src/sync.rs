//! The one place that names atomic types, locks and thread parking.
//!
//! Every state machine imports its atomics, spin hints and the state-word
//! type from here; with feature `std` the blocking layer also takes its
//! locks ([`Mutex`], [`RwLock`]), the [`Arc`] of its hand-off records and
//! its thread handles and parking ([`thread`]) from here. Under
//! `--cfg stockade_loom` the loom model checker's types replace them, so
//! the same code is model-checked (as tokio's `loom` module does). Outside
//! loom every item is a plain re-export: zero cost.
//!
//! Process-wide state (registries, the coarse clock's upkeep thread) cannot
//! be modelled: a loom object must not outlive one model execution. It uses
//! [`unmodelled`], which is the real thing under loom too.
//!
//! # The state word
//!
//! Each machine keeps its decision state in words of type [`Word`], the
//! widest width the target can compare-and-swap natively: `u64` where
//! `target_has_atomic = "64"`, otherwise `u32` (Cortex-M3/M4/M33,
//! riscv32imac, and chips that get CAS from portable-atomic's
//! single-core or critical-section backends). `--cfg stockade_force_32bit`
//! selects the 32-bit layout on any host so both layouts are tested.

/// Only where it is lock-free, or where the user opted into portable-atomic's
/// lock-based fallback (feature `fallback`, implied by `std`).
#[cfg(all(
    not(stockade_loom),
    any(target_has_atomic = "64", feature = "fallback")
))]
pub(crate) use portable_atomic::AtomicU64;
#[cfg(not(stockade_loom))]
pub(crate) use portable_atomic::{AtomicU32, Ordering, fence};

#[cfg(stockade_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(all(target_has_atomic = "64", not(stockade_force_32bit)))]
mod width {
    /// The state-word integer: as wide as the target's native CAS.
    pub(crate) type Word = u64;
    /// The atomic state word.
    pub(crate) type AtomicWord = super::AtomicU64;
}

#[cfg(not(all(target_has_atomic = "64", not(stockade_force_32bit))))]
mod width {
    /// The state-word integer: as wide as the target's native CAS.
    pub(crate) type Word = u32;
    /// The atomic state word.
    pub(crate) type AtomicWord = super::AtomicU32;
}

pub(crate) use width::{AtomicWord, Word};

/// Bits in a [`Word`].
pub(crate) const WORD_BITS: u32 = Word::BITS;

/// `true` when the 64-bit state layout is in use.
pub(crate) const WIDE: bool = WORD_BITS == 64;

/// A CAS retry loop helper: applies the pure transition `f` to the current
/// value of `atomic` until the compare-and-swap succeeds or `f` declines.
///
/// `f` maps the observed word to `Ok((result, new_word))` or `Err(e)`; an
/// `Err` returns without writing. Contended retries back off with
/// [`crossbeam_utils::Backoff`].
#[inline]
pub(crate) fn update<T, E>(
    atomic: &AtomicWord,
    success: Ordering,
    mut f: impl FnMut(Word) -> Result<(T, Word), E>,
) -> Result<T, E> {
    let backoff = crossbeam_utils::Backoff::new();
    let mut current = atomic.load(Ordering::Acquire);
    loop {
        let (value, next) = f(current)?;
        if next == current {
            return Ok(value);
        }
        match atomic.compare_exchange_weak(current, next, success, Ordering::Acquire) {
            Ok(_) => return Ok(value),
            Err(actual) => {
                current = actual;
                backoff.spin();
            }
        }
    }
}

/// Declares a `const fn` that is a plain `fn` under loom, whose atomics
/// have no `const` constructors.
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(stockade_loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(stockade_loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;

// --- The blocking layer's locks and threads (feature `std`) --------------

/// Under Miri, the standard library's locks behind `parking_lot`'s API:
/// a contended `parking_lot` lock casts an integer to a pointer (its
/// waiter queue, `parking_lot_core`'s `word_lock`), which Miri refuses
/// under `-Zmiri-strict-provenance`; whether a test contends depends on
/// Miri's thread schedule.
#[cfg(all(feature = "std", not(stockade_loom), miri))]
pub(crate) use self::std_locks::{Mutex, RwLock};
#[cfg(all(feature = "std", not(stockade_loom), not(miri)))]
pub(crate) use parking_lot::{Mutex, RwLock};
/// The `Arc` of records shared between a waiter and the thread that wakes
/// it (loom's checks that every one is freed). Public API types keep
/// `std::sync::Arc`.
#[cfg(all(feature = "std", not(stockade_loom)))]
pub(crate) use std::sync::Arc;

/// Thread handles and parking, as the blocking layer uses them.
#[cfg(all(feature = "std", not(stockade_loom)))]
pub(crate) mod thread {
    pub(crate) use std::thread::{Builder, Result, Thread, current, park, park_timeout, sleep};
}

#[cfg(all(feature = "std", stockade_loom))]
pub(crate) use self::model::{Mutex, RwLock};
#[cfg(all(feature = "std", stockade_loom))]
pub(crate) use loom::sync::Arc;

/// Thread handles and parking, as the blocking layer uses them: loom's.
/// Loom has no time, so a timed park or a sleep is a yield: a timed park
/// may return early anyway, and callers loop on their condition.
#[cfg(all(feature = "std", stockade_loom))]
pub(crate) mod thread {
    use core::time::Duration;

    pub(crate) use loom::thread::{Builder, Thread, current, park};
    pub(crate) use std::thread::Result;

    /// A timed park: under loom, a yield (an early return).
    pub(crate) fn park_timeout(_timeout: Duration) {
        loom::thread::yield_now();
    }

    /// A sleep: under loom, a yield.
    pub(crate) fn sleep(_duration: Duration) {
        loom::thread::yield_now();
    }
}

/// Loom's locks behind `parking_lot`'s infallible API (loom's `lock()`
/// returns a `LockResult`; a panic while locked fails the model anyway).
#[cfg(all(feature = "std", stockade_loom))]
mod model {
    use core::fmt;
    use std::sync::PoisonError;

    pub(crate) use loom::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

    /// `parking_lot::Mutex`'s API over `loom::sync::Mutex`.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn get_mut(&mut self) -> MutexGuard<'_, T> {
            self.lock()
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Mutex").finish_non_exhaustive()
        }
    }

    /// `parking_lot::RwLock`'s API over `loom::sync::RwLock`.
    #[derive(Default)]
    pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> RwLock<T> {
            RwLock(loom::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<T> fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RwLock").finish_non_exhaustive()
        }
    }
}

/// The standard library's locks behind `parking_lot`'s infallible API,
/// for Miri (see [`Mutex`]'s import above). A panic while locked leaves
/// the data as it was, as with `parking_lot` (no poisoning).
#[cfg(all(feature = "std", miri))]
mod std_locks {
    use core::fmt;
    use std::sync::PoisonError;

    pub(crate) use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

    /// `parking_lot::Mutex`'s API over `std::sync::Mutex`.
    #[derive(Default)]
    pub(crate) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Mutex<T> {
            Mutex(std::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<T> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Mutex").finish_non_exhaustive()
        }
    }

    /// `parking_lot::RwLock`'s API over `std::sync::RwLock`.
    #[derive(Default)]
    pub(crate) struct RwLock<T>(std::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) const fn new(value: T) -> RwLock<T> {
            RwLock(std::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(PoisonError::into_inner)
        }

        pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(PoisonError::into_inner)
        }
    }

    impl<T> fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RwLock").finish_non_exhaustive()
        }
    }
}

/// Locks and threads for process-wide state that loom cannot model (a
/// loom object must not outlive one model execution): the pattern
/// registries, the event counters' stripe table, the listener-id counter,
/// the coarse clock's upkeep thread. The real thing in every build (the
/// standard library's locks under Miri, as above).
#[cfg(feature = "std")]
pub(crate) mod unmodelled {
    #[cfg(miri)]
    pub(crate) use super::std_locks::Mutex;
    #[cfg(not(miri))]
    pub(crate) use parking_lot::Mutex;
    pub(crate) use portable_atomic::AtomicU64;
    pub(crate) use std::thread;
}
