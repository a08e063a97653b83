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

/// Division of a `u64` by a `u32` fixed at construction, without a division
/// at run time: a multiply-high and two shifts (Granlund and Montgomery,
/// "Division by invariant integers using multiplication", 1994, figure
/// 4.1), exact for every dividend and divisor.
///
/// On 32-bit targets a 64-bit division is a call into `compiler-builtins`
/// (about 0.9 KiB of code on Cortex-M, and tens to hundreds of cycles);
/// this is four 32×32→64 multiplies. The state machines' clock-to-tick
/// conversions and nanoseconds-to-`Duration` conversions go through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Divisor {
    /// The divisor `d` (at least 1).
    divisor: u32,
    /// `l = ceil(log2(d))`, 0 to 32.
    log: u32,
    /// `floor(2^64 · (2^l − d) / d) + 1`, which fits 64 bits for every
    /// `u32` divisor; as two halves so the type stays 4-byte aligned.
    magic: [u32; 2],
}

impl Divisor {
    /// Divides by `divisor`; zero is taken as one.
    pub(crate) const fn new(divisor: u32) -> Divisor {
        let d = if divisor == 0 { 1 } else { divisor };
        let log = u32::BITS - (d - 1).leading_zeros();
        // `2^l − d < d`, so the quotient `floor(2^64 · (2^l − d) / d)` is
        // below 2^64 and the sum at most 2^64 − 1 (the maximum needs
        // `d >= 2^64`).
        let magic = fraction_bits((1u64 << log) - d as u64, d as u64).wrapping_add(1);
        Divisor {
            divisor: d,
            log,
            magic: [magic as u32, (magic >> 32) as u32],
        }
    }

    /// The divisor.
    #[inline]
    pub(crate) const fn get(self) -> u32 {
        self.divisor
    }

    /// `n / d`, rounded down.
    #[inline]
    pub(crate) const fn div(self, n: u64) -> u64 {
        let magic = (self.magic[1] as u64) << 32 | self.magic[0] as u64;
        let t = mul_hi(n, magic);
        // `t <= n`, and `t + (n - t) / 2 <= n`: nothing overflows.
        let (sh1, sh2) = if self.log == 0 {
            (0, 0)
        } else {
            (1, self.log - 1)
        };
        (t + ((n - t) >> sh1)) >> sh2
    }

    /// `(n / d, n % d)`.
    #[inline]
    pub(crate) const fn div_rem(self, n: u64) -> (u64, u32) {
        let q = self.div(n);
        (
            q,
            n.wrapping_sub(q.wrapping_mul(self.divisor as u64)) as u32,
        )
    }
}

/// The high 64 bits of the 128-bit product.
/// `floor(2^64 · a / d)` for `a < d`, by 64 steps of binary long
/// division: the reciprocal needs no general 64-bit division routine (on
/// a 32-bit core, a firmware that makes a limiter from a plan links only
/// this loop).
const fn fraction_bits(a: u64, d: u64) -> u64 {
    // `rest < d <= 2^32`, so `rest << 1` fits.
    let mut rest = a;
    let mut quotient = 0u64;
    let mut bit = 0;
    while bit < 64 {
        rest <<= 1;
        quotient <<= 1;
        if rest >= d {
            rest -= d;
            quotient |= 1;
        }
        bit += 1;
    }
    quotient
}

#[inline]
#[cfg(target_pointer_width = "64")]
const fn mul_hi(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) >> 64) as u64
}

/// The high 64 bits of the 128-bit product, from four 32×32→64 products
/// (a 128-bit multiply would be a library call on some 32-bit targets).
#[inline]
#[cfg(any(not(target_pointer_width = "64"), test))]
const fn mul_hi_by_halves(a: u64, b: u64) -> u64 {
    let (a0, a1) = (a & 0xffff_ffff, a >> 32);
    let (b0, b1) = (b & 0xffff_ffff, b >> 32);
    let low = a0 * b0;
    let cross1 = a1 * b0;
    let cross2 = a0 * b1;
    // Below 3 · 2^32: no overflow.
    let mid = (low >> 32) + (cross1 & 0xffff_ffff) + (cross2 & 0xffff_ffff);
    a1 * b1 + (cross1 >> 32) + (cross2 >> 32) + (mid >> 32)
}

#[cfg(not(target_pointer_width = "64"))]
use mul_hi_by_halves as mul_hi;

/// `(n / d, n % d)` for any divisor, for the set-up paths (building a
/// machine from its config), never a per-call path. Native division on
/// 64-bit targets; on others a shift-and-subtract loop instead of the
/// 64-bit division routine (about 900 bytes of `compiler-builtins` on a
/// Cortex-M, more than the rest of a limiter's construction). `d = 0`
/// gives `(u64::MAX, n)` instead of a panic.
#[inline]
pub(crate) const fn div_rem_u64(n: u64, d: u64) -> (u64, u64) {
    if d == 0 {
        return (u64::MAX, n);
    }
    if cfg!(target_pointer_width = "64") {
        (n / d, n % d)
    } else {
        div_rem_u64_by_shifts(n, d)
    }
}

/// The 32-bit targets' [`div_rem_u64`] (tested on every host). `d > 0`.
#[inline(never)]
const fn div_rem_u64_by_shifts(n: u64, d: u64) -> (u64, u64) {
    if n < d {
        return (0, n);
    }
    if n >> 32 == 0 {
        // Both fit 32 bits: the target's own 32-bit division.
        let (n, d) = (n as u32, d as u32);
        return ((n / d) as u64, (n % d) as u64);
    }
    // `d <= n`, so the shift is 0 to 63 and `d << shift` does not overflow.
    let shift = d.leading_zeros() - n.leading_zeros();
    let mut divisor = d << shift;
    let mut rest = n;
    let mut quotient = 0u64;
    let mut bit = shift + 1;
    while bit > 0 {
        quotient <<= 1;
        if rest >= divisor {
            rest -= divisor;
            quotient |= 1;
        }
        divisor >>= 1;
        bit -= 1;
    }
    (quotient, rest)
}

/// `n / d` rounded down; see [`div_rem_u64`].
#[inline]
pub(crate) const fn div_u64(n: u64, d: u64) -> u64 {
    div_rem_u64(n, d).0
}

/// `n / d` rounded up; see [`div_rem_u64`].
#[inline]
pub(crate) const fn div_ceil_u64(n: u64, d: u64) -> u64 {
    let (q, r) = div_rem_u64(n, d);
    if r == 0 { q } else { q + 1 }
}

/// `Duration::from_millis` without a 64-bit division on 32-bit targets.
/// Out of line: config conversions call it once per duration option.
#[inline(never)]
pub(crate) const fn duration_from_millis(millis: u64) -> core::time::Duration {
    let (secs, ms) = MILLIS_PER_SEC.div_rem(millis);
    let ms = if ms > 999 { 999 } else { ms };
    core::time::Duration::new(secs, ms * 1_000_000)
}

/// Milliseconds per second, as a [`Divisor`].
const MILLIS_PER_SEC: Divisor = Divisor::new(1000);

/// Nanoseconds per second, as a [`Divisor`].
const NANOS_PER_SEC: Divisor = Divisor::new(1_000_000_000);

/// `Duration::from_nanos`, without a 64-bit division on 32-bit targets
/// (where it would link `compiler-builtins`' division); the standard
/// conversion (one multiply by the compiler's own reciprocal) elsewhere.
#[inline]
pub(crate) const fn duration_from_nanos(nanos: u64) -> core::time::Duration {
    if cfg!(target_pointer_width = "64") {
        core::time::Duration::from_nanos(nanos)
    } else {
        duration_from_nanos_by_reciprocal(nanos)
    }
}

/// The 32-bit targets' [`duration_from_nanos`] (tested on every host).
/// Out of line: it serves rejections (their `retry_after`), and one copy
/// is smaller than one per caller.
#[inline(never)]
const fn duration_from_nanos_by_reciprocal(nanos: u64) -> core::time::Duration {
    let (secs, sub) = NANOS_PER_SEC.div_rem(nanos);
    // `sub < 10^9` already; the clamp lets the compiler see it and drop
    // `Duration::new`'s carry (and its panic message).
    let sub = if sub > 999_999_999 { 999_999_999 } else { sub };
    core::time::Duration::new(secs, sub)
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    /// How many random operands the tests below draw: fewer under Miri,
    /// which interprets every step of every division (the edge cases are
    /// all kept).
    const RANDOM: usize = if cfg!(miri) { 1_000 } else { 100_000 };

    #[test]
    fn divisor_magic_matches_the_128_bit_formula() {
        let mut divisors = std::vec![
            1u32,
            2,
            3,
            7,
            10,
            1000,
            1_000_000_000,
            u32::MAX - 1,
            u32::MAX
        ];
        divisors.extend((0..32).map(|k| 1u32 << k));
        divisors.extend((1..32).map(|k| (1u32 << k) + 1));
        for d in divisors {
            let div = Divisor::new(d);
            let log = u32::BITS - (d - 1).leading_zeros();
            let want = ((1u128 << 64) * ((1u128 << log) - d as u128) / d as u128 + 1) as u64;
            let got = (div.magic[1] as u64) << 32 | div.magic[0] as u64;
            assert_eq!(got, want, "d = {d}");
        }
    }

    #[test]
    fn division_by_shifts_agrees_with_native_division() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let edges = [
            1,
            2,
            3,
            7,
            1000,
            u32::MAX as u64,
            1 << 32,
            (1 << 32) + 1,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &n in &edges {
            for &d in &edges {
                assert_eq!(
                    super::div_rem_u64_by_shifts(n, d),
                    (n / d, n % d),
                    "{n} / {d}"
                );
            }
        }
        for _ in 0..RANDOM {
            let n = next();
            let d = next() >> (next() % 64);
            if d == 0 {
                continue;
            }
            assert_eq!(
                super::div_rem_u64_by_shifts(n, d),
                (n / d, n % d),
                "{n} / {d}"
            );
            assert_eq!(super::div_ceil_u64(n, d), n.div_ceil(d));
        }
        assert_eq!(super::div_rem_u64(5, 0), (u64::MAX, 5));
    }

    #[test]
    fn millis_become_durations_exactly() {
        for ms in [0, 1, 999, 1000, 1001, 123_456_789, u64::MAX / 2, u64::MAX] {
            assert_eq!(
                super::duration_from_millis(ms),
                core::time::Duration::from_millis(ms)
            );
        }
    }

    use super::*;
    use core::time::Duration;

    /// Dividends that stress the reciprocal: around multiples of `d`, of
    /// powers of two, and the ends of the range.
    fn dividends(d: u32) -> impl Iterator<Item = u64> {
        let d = u64::from(d);
        let mut v = std::vec![0, 1, 2, u64::MAX, u64::MAX - 1, u64::MAX / d * d];
        for k in 0..64 {
            let p = 1u64 << k;
            v.extend([p - 1, p, p + 1]);
            if let Some(m) = (p / d).checked_mul(d) {
                v.extend([m.saturating_sub(1), m, m + 1]);
            }
        }
        for q in [1u64, 2, 1 << 20, 1 << 31, 1 << 32, 1 << 33, u64::MAX / d] {
            if let Some(m) = q.checked_mul(d) {
                v.extend([m - 1, m, m.saturating_add(1), m.saturating_add(d - 1)]);
            }
        }
        v.into_iter()
    }

    #[test]
    fn divisor_is_exact() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut divisors = std::vec![
            1,
            2,
            3,
            5,
            7,
            10,
            1_000,
            33_334,
            100_000,
            1_000_000,
            1_000_000_000,
            (1 << 31) - 1,
            1 << 31,
            (1 << 31) + 1,
            u32::MAX - 1,
            u32::MAX,
        ];
        divisors.extend((0..32).map(|k| 1u32 << k));
        divisors.extend((0..RANDOM / 500).map(|_| (next() >> (next() % 64)) as u32 | 1));
        for d in divisors {
            let div = Divisor::new(d);
            assert_eq!(div.get(), d);
            let randoms: std::vec::Vec<u64> =
                (0..RANDOM / 200).map(|_| next() >> (next() % 64)).collect();
            for n in dividends(d).chain(randoms) {
                let want = (n / u64::from(d), (n % u64::from(d)) as u32);
                assert_eq!(div.div_rem(n), want, "{n} / {d}");
            }
        }
        assert_eq!(Divisor::new(0), Divisor::new(1));
    }

    #[test]
    fn mul_hi_by_halves_is_the_wide_product() {
        let mut x = 1u64;
        for _ in 0..RANDOM / 10 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let y = x.rotate_left(17) ^ 0xdead_beef;
            for (a, b) in [(x, y), (u64::MAX, y), (x, u64::MAX), (u64::MAX, u64::MAX)] {
                let want = ((u128::from(a) * u128::from(b)) >> 64) as u64;
                assert_eq!(mul_hi_by_halves(a, b), want);
            }
        }
    }

    #[test]
    fn duration_from_nanos_matches_the_standard_one() {
        let mut n = 7u64;
        let check = |n: u64| {
            assert_eq!(
                duration_from_nanos_by_reciprocal(n),
                Duration::from_nanos(n)
            );
            assert_eq!(duration_from_nanos(n), Duration::from_nanos(n));
        };
        for k in 0..64 {
            check((1 << k) - 1);
            check(1 << k);
        }
        for s in [0u64, 1, 999, 18_446_744_073] {
            for sub in [0u64, 1, 999_999_999] {
                if let Some(v) = s
                    .checked_mul(1_000_000_000)
                    .and_then(|v| v.checked_add(sub))
                {
                    check(v);
                }
            }
        }
        check(u64::MAX);
        for _ in 0..RANDOM {
            n = n
                .wrapping_mul(2_862_933_555_777_941_757)
                .wrapping_add(3_037_000_493);
            check(n >> (n % 64));
        }
    }
}
