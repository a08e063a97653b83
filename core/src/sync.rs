//! The one place that names atomic types.
//!
//! Every state machine imports its atomics, spin hints and the state-word
//! type from here. Under `--cfg stockade_loom` the loom model checker's
//! types replace them, so the same code is model-checked.
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
