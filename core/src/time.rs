//! Time inside state words: wrapping ticks of a power-of-two unit.
//!
//! A state word cannot hold a 64-bit timestamp next to other fields on a
//! 32-bit target, so machines store time as `Word`-sized *ticks*: the
//! timestamp's nanoseconds shifted right by a per-machine `shift`, wrapping
//! at the word's width. Differences are computed with wrapping arithmetic.
//!
//! With the 64-bit layout a tick is typically one nanosecond and the word
//! wraps after 584 years. With the 32-bit layout the word wraps after
//! `2^(32 + shift)` nanoseconds; each machine documents its horizon and how
//! it stays correct when idle across a wrap.

use crate::clock::Timestamp;
use crate::sync::Word;

/// A power-of-two time unit for state-word ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TickUnit {
    shift: u32,
}

impl TickUnit {
    /// One tick = `2^shift` nanoseconds.
    pub(crate) const fn from_shift(shift: u32) -> TickUnit {
        TickUnit {
            shift: if shift > 63 { 63 } else { shift },
        }
    }

    /// The shift.
    pub(crate) const fn shift(self) -> u32 {
        self.shift
    }

    /// Nanoseconds per tick.
    pub(crate) const fn nanos_per_tick(self) -> u64 {
        1u64 << self.shift
    }

    /// The timestamp as wrapping ticks.
    #[inline]
    pub(crate) const fn ticks(self, t: Timestamp) -> Word {
        (t.as_nanos() >> self.shift) as Word
    }

    /// A duration of `nanos` in whole ticks, rounded up, or `None` if it
    /// exceeds `max_ticks`.
    #[allow(
        clippy::unnecessary_cast,
        reason = "`Word` is u32 with the 32-bit layout"
    )]
    pub(crate) const fn duration_ticks(self, nanos: u64, max_ticks: Word) -> Option<Word> {
        let mask = self.nanos_per_tick() - 1;
        let ticks = (nanos >> self.shift) + if nanos & mask != 0 { 1 } else { 0 };
        if ticks > max_ticks as u64 {
            None
        } else {
            Some(ticks as Word)
        }
    }

    /// Nanoseconds in `ticks` ticks (saturating).
    #[inline]
    #[allow(
        clippy::unnecessary_cast,
        reason = "`Word` is u32 with the 32-bit layout"
    )]
    pub(crate) const fn to_nanos(self, ticks: Word) -> u64 {
        (ticks as u64).saturating_mul(self.nanos_per_tick())
    }
}

/// `duration` in whole milliseconds (truncated), saturating at `u64::MAX`:
/// the unit of every plain-integer (`Raw…Config`) duration.
pub(crate) const fn duration_to_millis_saturating(duration: core::time::Duration) -> u64 {
    let millis = duration.as_millis();
    if millis > u64::MAX as u128 {
        u64::MAX
    } else {
        millis as u64
    }
}
