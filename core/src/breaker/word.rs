//! The state words' bit layouts.
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
#[allow(unused_imports)]
use super::*;

/// Bits of the mode field at the top of `ctrl`.
pub(super) const MODE_BITS: u32 = 3;
/// Bits of each of the fields A and B.
pub(super) const FIELD_BITS: u32 = if WIDE { 16 } else { 8 };
/// Bits of the generation.
pub(super) const GEN_BITS: u32 = WORD_BITS - MODE_BITS - 2 * FIELD_BITS;
pub(super) const FIELD_MAX: Word = (1 << FIELD_BITS) - 1;
pub(super) const GEN_MASK: Word = (1 << GEN_BITS) - 1;
#[allow(clippy::unnecessary_cast)] // `Word` is `u32` in the 32-bit layout
pub(super) const FIELD_MAX_U64: u64 = FIELD_MAX as u64;

/// A state-word field (generation, count) as `u32`: every field fits.
#[allow(clippy::unnecessary_cast)] // `Word` is `u32` in the 32-bit layout
#[inline]
pub(super) const fn field_u32(field: Word) -> u32 {
    field as u32
}
pub(super) const A_SHIFT: u32 = FIELD_BITS;
pub(super) const GEN_SHIFT: u32 = 2 * FIELD_BITS;
pub(super) const MODE_SHIFT: u32 = WORD_BITS - MODE_BITS;

pub(super) const CLOSED: Word = 0;
pub(super) const OPEN: Word = 1;
pub(super) const HALF_OPEN: Word = 2;
pub(super) const FORCED_OPEN: Word = 3;
pub(super) const DISABLED: Word = 4;

/// Bits of the generation tag at the top of `since`.
pub(super) const TAG_BITS: u32 = if WIDE { 8 } else { 6 };
pub(super) const TIME_BITS: u32 = WORD_BITS - TAG_BITS;
pub(super) const TIME_MASK: Word = (1 << TIME_BITS) - 1;
pub(super) const TAG_MASK: Word = (1 << TAG_BITS) - 1;
/// One tick: 1 ns (64-bit layout) or 2^20 ns (32-bit layout).
pub(super) const UNIT: TickUnit = TickUnit::from_shift(if WIDE { 0 } else { 20 });
/// Stamps are floored to a tick; with ticks coarser than a nanosecond a
/// timeout needs one extra tick so it never ends early.
pub(super) const ROUND_UP: Word = if UNIT.shift() > 0 { 1 } else { 0 };
/// The largest elapsed tick count told apart from "the clock is behind".
pub(super) const MAX_ELAPSED: Word = TIME_MASK >> 1;
/// The largest timeout in ticks before the extra rounding tick.
pub(super) const MAX_TIMEOUT_TICKS: Word = MAX_ELAPSED - ROUND_UP;

/// Words of the failure-rate ring.
pub(super) const RING_WORDS: usize = 4;
/// Largest failure-rate window: 32 calls per ring word.
pub(super) const MAX_WINDOW: u32 = 32 * RING_WORDS as u32;
/// Window position word: `generation << 16 | filled << 8 | next`.
pub(super) const POS_GEN_SHIFT: u32 = 16;

#[inline]
pub(super) const fn mode_of(w: Word) -> Word {
    w >> MODE_SHIFT
}
#[inline]
pub(super) const fn gen_of(w: Word) -> Word {
    (w >> GEN_SHIFT) & GEN_MASK
}
#[inline]
pub(super) const fn a_of(w: Word) -> Word {
    (w >> A_SHIFT) & FIELD_MAX
}
#[inline]
pub(super) const fn b_of(w: Word) -> Word {
    w & FIELD_MAX
}
#[inline]
pub(super) const fn pack(mode: Word, generation: Word, a: Word, b: Word) -> Word {
    (mode << MODE_SHIFT)
        | ((generation & GEN_MASK) << GEN_SHIFT)
        | ((a & FIELD_MAX) << A_SHIFT)
        | (b & FIELD_MAX)
}
#[inline]
pub(super) const fn next_gen(generation: Word) -> Word {
    generation.wrapping_add(1) & GEN_MASK
}
/// `true` when generation `old` precedes `new` (by less than half the
/// generation space).
#[inline]
pub(super) const fn gen_is_older(old: Word, new: Word) -> bool {
    let d = new.wrapping_sub(old) & GEN_MASK;
    d != 0 && d <= GEN_MASK >> 1
}

#[inline]
pub(super) const fn stamp_word(generation: Word, ticks: Word) -> Word {
    ((generation & TAG_MASK) << TIME_BITS) | (ticks & TIME_MASK)
}
/// `true` when tag `old` precedes `new`.
#[inline]
pub(super) const fn tag_is_older(old: Word, new: Word) -> bool {
    let d = new.wrapping_sub(old) & TAG_MASK;
    d != 0 && d <= TAG_MASK >> 1
}
#[inline]
pub(super) const fn now_ticks(t: Timestamp) -> Word {
    UNIT.ticks(t) & TIME_MASK
}
/// Ticks from `since` to `now`, or `None` when `now` looks behind.
#[inline]
pub(super) const fn elapsed_ticks(now: Word, since: Word) -> Option<Word> {
    let d = now.wrapping_sub(since) & TIME_MASK;
    if d > MAX_ELAPSED { None } else { Some(d) }
}
/// Time from `now` until `ticks` more tick boundaries have passed.
#[inline]
pub(super) const fn remaining(ticks: Word, now: Timestamp) -> Duration {
    let within_tick = now.as_nanos() & (UNIT.nanos_per_tick() - 1);
    crate::time::duration_from_nanos(UNIT.to_nanos(ticks).saturating_sub(within_tick))
}

#[inline]
pub(super) const fn pos_pack(generation: Word, filled: Word, next: Word) -> Word {
    ((generation & GEN_MASK) << POS_GEN_SHIFT) | ((filled & 0xff) << 8) | (next & 0xff)
}
#[inline]
pub(super) const fn pos_gen(p: Word) -> Word {
    (p >> POS_GEN_SHIFT) & GEN_MASK
}
#[inline]
pub(super) const fn pos_filled(p: Word) -> Word {
    (p >> 8) & 0xff
}
#[inline]
pub(super) const fn pos_next(p: Word) -> Word {
    p & 0xff
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

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
}
