//! Permits counted per owner, so that the permits of an owner that is gone
//! (a process killed at any instruction) can be returned exactly.
//!
//! A [`Bulkhead`] counts its permits in one word and cannot tell whose they
//! are. An [`OwnerSlot`] keeps one owner's account beside it: taking a
//! permit is the bulkhead's compare-and-swap bracketed by two atomic adds
//! on the owner's slot (an "in flight" mark, then the count), and
//! returning one is the same in reverse (the count and the mark in one
//! add, then the bulkhead's subtraction, then the mark cleared). So a
//! slot's count is exact
//! whenever its owner has no operation in flight, and an owner that stops
//! between the brackets leaves its mark.
//!
//! [`return_orphans`] then computes what owners that are gone still hold,
//! whatever their slots say: from a consistent snapshot of the live slots
//! (two reads of every live slot around one read of the bulkhead's count,
//! no live operation in flight, nothing changed, within a time window) it
//! returns `in_use - (permits the live owners hold)` in one
//! compare-and-swap. The result is exact even for an owner stopped
//! mid-operation, and even if a previous `return_orphans` stopped half way:
//! it never returns a permit a live owner holds.
//!
//! The shared-memory bulkhead (feature `shared-memory`) keeps one slot per
//! process and learns who is gone from the kernel's file locks.
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::bulkhead::owners::{OwnerSlot, return_orphans};
//! use stockade::bulkhead::{Bulkhead, BulkheadConfig};
//! use stockade::clock::ManualClock;
//!
//! let bulkhead = Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(2))?;
//! let slots = [OwnerSlot::new(), OwnerSlot::new()];
//! slots[0].try_acquire(&bulkhead).unwrap();
//! slots[1].try_acquire(&bulkhead).unwrap();
//! assert!(slots[0].try_acquire(&bulkhead).is_err()); // full
//!
//! // Owner 1 is gone without releasing: give its permit back.
//! let mut scratch = [0u64; 2];
//! let gone = |i: usize| i == 1;
//! let back = return_orphans(&bulkhead, 2, |i| &slots[i], gone, &mut scratch, &ManualClock::new(), Duration::from_millis(10));
//! assert_eq!(back, Some(1));
//! assert_eq!(bulkhead.in_use(), 1);
//! assert_eq!(slots[1].held(), 0);
//! # Ok::<(), stockade::ConfigError>(())
//! ```

use core::fmt;
use core::time::Duration;

use super::{Bulkhead, BulkheadCounts, BulkheadFull, NotHeld};
use crate::clock::Clock;
use crate::sync::{AtomicU64, Ordering, const_fn_unless_loom};

/// Permits held (bits 0..24).
const HELD_ONE: u64 = 1;
const HELD_MASK: u64 = (1 << 24) - 1;
/// Operations between their two slot writes (bits 24..40).
const INFLIGHT_ONE: u64 = 1 << 24;
const INFLIGHT_MASK: u64 = ((1 << 16) - 1) << 24;
/// Operations started (bits 40..64, wrapping): tells a snapshot that a slot
/// changed between two reads.
const SEQ_ONE: u64 = 1 << 40;
const SEQ_MASK: u64 = !((1 << 40) - 1);

/// One owner's account of a [`Bulkhead`]'s permits: one atomic word,
/// `#[repr(transparent)]`, so it can live in memory other processes map.
///
/// Limits: at most [`MAX_HELD`](Self::MAX_HELD) permits held by one owner,
/// and at most 65 535 of its operations in flight at the same instant
/// (threads of one owner inside `try_acquire`/`release` at once).
#[repr(transparent)]
pub struct OwnerSlot {
    word: AtomicU64,
}

impl fmt::Debug for OwnerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.word.load(Ordering::SeqCst);
        f.debug_struct("OwnerSlot")
            .field("held", &(w & HELD_MASK))
            .field("in_flight", &((w & INFLIGHT_MASK) >> 24))
            .finish()
    }
}

impl Default for OwnerSlot {
    fn default() -> Self {
        OwnerSlot::new()
    }
}

impl OwnerSlot {
    /// The most permits one owner may hold.
    pub const MAX_HELD: u32 = HELD_MASK as u32;

    const_fn_unless_loom! {
        /// An owner that holds nothing.
        pub fn new() -> OwnerSlot {
            OwnerSlot {
                word: AtomicU64::new(0),
            }
        }
    }

    /// Permits this owner holds (those of operations in flight aside).
    pub fn held(&self) -> u32 {
        (self.word.load(Ordering::SeqCst) & HELD_MASK) as u32
    }

    /// Operations of this owner between their two slot writes now.
    pub fn in_flight(&self) -> u32 {
        ((self.word.load(Ordering::SeqCst) & INFLIGHT_MASK) >> 24) as u32
    }

    /// `true` when the owner holds nothing and has nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.word.load(Ordering::SeqCst) & (HELD_MASK | INFLIGHT_MASK) == 0
    }

    /// Takes a permit of `bulkhead` for this owner.
    ///
    /// # Errors
    ///
    /// [`BulkheadFull`] when every permit is held (or callers are queued
    /// in the bulkhead's own queue), or this owner already holds
    /// [`MAX_HELD`](Self::MAX_HELD).
    #[inline]
    pub fn try_acquire(&self, bulkhead: &Bulkhead) -> Result<BulkheadCounts, BulkheadFull> {
        self.begin();
        if self.word.load(Ordering::SeqCst) & HELD_MASK == HELD_MASK {
            self.abort();
            return Err(BulkheadFull {
                in_use: bulkhead.in_use(),
                queued: bulkhead.queued(),
            });
        }
        match bulkhead.try_acquire() {
            Ok(permit) => {
                let granted = permit.into_token().granted();
                self.commit_acquire();
                Ok(granted)
            }
            Err(full) => {
                self.abort();
                Err(full)
            }
        }
    }

    /// Returns one of this owner's permits to `bulkhead`.
    ///
    /// # Errors
    ///
    /// [`NotHeld`] — a caller bug — when this owner holds none; nothing
    /// changes.
    #[inline]
    pub fn release(&self, bulkhead: &Bulkhead) -> Result<BulkheadCounts, NotHeld> {
        self.begin_release()?;
        // The claim proves the bulkhead counts this permit: one subtraction
        // (which still refuses to underflow), not a compare-and-swap loop.
        let released = bulkhead.release_held();
        self.commit_release();
        released
    }

    /// Step 1 of a grant: the in-flight mark (and a new operation number).
    #[inline]
    pub(crate) fn begin(&self) {
        self.word
            .fetch_add(INFLIGHT_ONE + SEQ_ONE, Ordering::SeqCst);
    }

    /// Step 3 of a grant that the bulkhead made: count it, clear the mark.
    #[inline]
    pub(crate) fn commit_acquire(&self) {
        self.word
            .fetch_add(HELD_ONE.wrapping_sub(INFLIGHT_ONE), Ordering::SeqCst);
    }

    /// Step 3 of a grant that the bulkhead refused: clear the mark.
    #[inline]
    pub(crate) fn abort(&self) {
        self.word.fetch_sub(INFLIGHT_ONE, Ordering::SeqCst);
    }

    /// Step 1 of a release: takes one permit off the count and sets the
    /// in-flight mark, in one add (refusing, and undoing the add, when
    /// none is held: so two releases of one permit cannot both pass).
    #[inline]
    pub(crate) fn begin_release(&self) -> Result<(), NotHeld> {
        // held - 1 borrows from nothing when held > 0, so the add's carry
        // lands in the in-flight field: held - 1, in flight + 1, seq + 1.
        const CLAIM: u64 = (SEQ_ONE + INFLIGHT_ONE).wrapping_sub(HELD_ONE);
        let before = self.word.fetch_add(CLAIM, Ordering::SeqCst);
        if before & HELD_MASK == 0 {
            self.word.fetch_sub(CLAIM, Ordering::SeqCst);
            return Err(NotHeld);
        }
        Ok(())
    }

    /// Step 3 of a release: clear the mark.
    #[inline]
    pub(crate) fn commit_release(&self) {
        self.word.fetch_sub(INFLIGHT_ONE, Ordering::SeqCst);
    }

    /// Forgets a gone owner's account (after its permits were returned);
    /// the operation number moves on.
    pub(crate) fn clear(&self) {
        let w = self.word.load(Ordering::SeqCst);
        self.word
            .store((w & SEQ_MASK).wrapping_add(SEQ_ONE), Ordering::SeqCst);
    }

    fn load(&self) -> u64 {
        self.word.load(Ordering::SeqCst)
    }
}

/// Returns to `bulkhead` the permits that the owners for which `gone(i)` is
/// `true` still hold, exactly, and clears their slots; `Some(returned)`, or
/// `None` when no consistent snapshot could be had this time (a live owner
/// had an operation in flight, or a slot changed between the two reads, or
/// the reads took longer than `window`): call again later.
///
/// `slot(i)` for `i < owners` are the bulkhead's owner slots; `scratch`
/// holds at least `owners` words. `window` bounds the time between the two
/// reads of a slot, measured on `clock`, so that a slot's 24-bit operation
/// number cannot wrap between them unnoticed (that takes 2^24 atomic adds
/// on one cache line: choose a window far shorter, e.g. 10 ms).
///
/// The caller guarantees that gone owners run no operation any more and
/// that no other `return_orphans` on the same bulkhead runs at the same
/// time (the shared-memory bulkhead holds a lock for each). Live owners
/// may run concurrently: their permits are never returned.
///
/// # Panics
///
/// If `scratch` is shorter than `owners`.
pub fn return_orphans<'a, C: Clock + ?Sized>(
    bulkhead: &Bulkhead,
    owners: usize,
    slot: impl Fn(usize) -> &'a OwnerSlot,
    gone: impl Fn(usize) -> bool,
    scratch: &mut [u64],
    clock: &C,
    window: Duration,
) -> Option<u32> {
    let first = &mut scratch[..owners];
    let t0 = clock.now();
    for (i, w) in first.iter_mut().enumerate() {
        *w = slot(i).load();
    }
    let in_use = bulkhead.in_use();
    let mut live_held: u64 = 0;
    for (i, &w) in first.iter().enumerate() {
        if gone(i) {
            continue;
        }
        if w & INFLIGHT_MASK != 0 || slot(i).load() != w {
            return None;
        }
        live_held += w & HELD_MASK;
    }
    if clock.now().saturating_duration_since(t0) > window {
        return None;
    }
    // The bulkhead counts every permit; the live owners hold exactly theirs
    // (nothing in flight): the rest is the gone owners', whatever their
    // slots say.
    let orphaned = u64::from(in_use).saturating_sub(live_held) as u32;
    if orphaned > 0 && bulkhead.release_many(orphaned).is_err() {
        // Cannot happen while the counts hold: leave everything as it is.
        return None;
    }
    // Cleared only after their permits are back, so that a concurrent
    // reader counting them as held sees no more than the truth.
    for i in 0..owners {
        if gone(i) {
            slot(i).clear();
        }
    }
    Some(orphaned)
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::bulkhead::BulkheadConfig;
    use crate::clock::ManualClock;

    fn bulkhead(max: u32) -> Bulkhead {
        Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(max)).unwrap()
    }

    const WINDOW: Duration = Duration::from_millis(10);

    /// Returns owner 1's permits (gone), owner 0 being live.
    fn reap_owner_1(b: &Bulkhead, slots: &[OwnerSlot; 2], clock: &ManualClock) -> Option<u32> {
        let mut scratch = [0; 2];
        return_orphans(b, 2, |i| &slots[i], |i| i == 1, &mut scratch, clock, WINDOW)
    }

    #[test]
    fn an_owner_stopped_at_any_step_is_returned_exactly() {
        // (steps run before stopping, permits the bulkhead counts for it)
        type Step = fn(&OwnerSlot, &Bulkhead);
        let cases: [(&str, Step, u32); 6] = [
            (
                "holds one",
                |s, b| {
                    s.try_acquire(b).unwrap();
                },
                1,
            ),
            ("acquire: marked", |s, _| s.begin(), 0),
            (
                "acquire: granted, not counted",
                |s, b| {
                    s.begin();
                    let _ = b.try_acquire().unwrap().into_token();
                },
                1,
            ),
            (
                "release: claimed",
                |s, b| {
                    s.try_acquire(b).unwrap();
                    s.begin_release().unwrap();
                },
                1,
            ),
            (
                "release: returned, not uncounted",
                |s, b| {
                    s.try_acquire(b).unwrap();
                    s.begin_release().unwrap();
                    b.release_many(1).unwrap();
                },
                0,
            ),
            ("idle", |_, _| {}, 0),
        ];
        for (name, steps, owed) in cases {
            let b = bulkhead(3);
            let slots = [OwnerSlot::new(), OwnerSlot::new()];
            slots[0].try_acquire(&b).unwrap(); // a live owner's permit
            steps(&slots[1], &b);
            assert_eq!(b.in_use(), 1 + owed, "{name}");
            let back = reap_owner_1(&b, &slots, &ManualClock::new());
            assert_eq!(back, Some(owed), "{name}");
            assert_eq!(b.in_use(), 1, "{name}: the live owner's permit stays");
            assert!(slots[1].is_idle(), "{name}");
            // A second pass (a reaper that stopped before clearing) returns nothing more.
            let again = reap_owner_1(&b, &slots, &ManualClock::new());
            assert_eq!(again, Some(0), "{name}");
            slots[0].release(&b).unwrap();
            assert_eq!(b.in_use(), 0, "{name}");
        }
    }

    #[test]
    fn a_live_operation_in_flight_defers_the_snapshot() {
        let b = bulkhead(2);
        let slots = [OwnerSlot::new(), OwnerSlot::new()];
        slots[1].try_acquire(&b).unwrap();
        slots[0].begin(); // live, mid-acquire
        let clock = ManualClock::new();
        assert_eq!(reap_owner_1(&b, &slots, &clock), None);
        assert_eq!(b.in_use(), 1, "nothing returned without a snapshot");
        slots[0].abort();
        assert_eq!(reap_owner_1(&b, &slots, &clock), Some(1));
    }

    #[test]
    fn a_slow_snapshot_is_discarded() {
        struct Slow(ManualClock);
        impl Clock for Slow {
            fn now(&self) -> crate::clock::Timestamp {
                self.0.advance(Duration::from_millis(6));
                self.0.now()
            }
        }
        let b = bulkhead(1);
        let slots = [OwnerSlot::new()];
        slots[0].try_acquire(&b).unwrap();
        let mut scratch = [0; 1];
        let slow = Slow(ManualClock::new());
        assert_eq!(
            return_orphans(
                &b,
                1,
                |i| &slots[i],
                |_| true,
                &mut scratch,
                &slow,
                Duration::from_millis(5)
            ),
            None
        );
        assert_eq!(b.in_use(), 1);
    }

    #[test]
    fn a_slot_that_changed_between_the_reads_defers_the_snapshot() {
        // The live owner 0 takes a permit after the first read of its slot
        // (so the bulkhead's count includes it) and returns it before the
        // second: its held count and in-flight mark read the same twice,
        // only the operation number tells the reads apart. Taken as
        // consistent, the snapshot would return owner 0's permit too.
        let b = bulkhead(3);
        let slots = [OwnerSlot::new(), OwnerSlot::new()];
        slots[0].try_acquire(&b).unwrap();
        slots[1].try_acquire(&b).unwrap();
        let calls = core::cell::Cell::new(0);
        let slot = |i: usize| {
            calls.set(calls.get() + 1);
            match calls.get() {
                2 => drop(slots[0].try_acquire(&b).unwrap()),
                3 => drop(slots[0].release(&b).unwrap()),
                _ => {}
            }
            &slots[i]
        };
        let mut scratch = [0; 2];
        let clock = ManualClock::new();
        let first = return_orphans(&b, 2, slot, |i| i == 1, &mut scratch, &clock, WINDOW);
        assert_eq!(first, None);
        assert_eq!((b.in_use(), slots[0].held()), (2, 1));
        assert_eq!(reap_owner_1(&b, &slots, &clock), Some(1));
        assert_eq!((b.in_use(), slots[0].held()), (1, 1));
    }

    #[test]
    fn an_operation_in_flight_is_not_counted_as_held() {
        // An owner holding three permits, stopped inside a fourth acquire.
        let s = OwnerSlot::new();
        s.word.store(3 * HELD_ONE, Ordering::SeqCst);
        s.begin();
        assert_eq!((s.held(), s.in_flight()), (3, 1));
        assert_eq!(std::format!("{s:?}"), "OwnerSlot { held: 3, in_flight: 1 }");
        assert!(!s.is_idle());
        s.abort();
        assert_eq!((s.held(), s.in_flight()), (3, 0));
    }

    #[test]
    fn double_release_and_the_cap_are_refused() {
        let b = bulkhead(2);
        let s = OwnerSlot::new();
        assert_eq!(s.release(&b), Err(NotHeld));
        s.try_acquire(&b).unwrap();
        s.release(&b).unwrap();
        assert_eq!(s.release(&b), Err(NotHeld));
        assert_eq!(b.in_use(), 0);
        assert!(s.is_idle());
    }
}

/// Loom models: a live owner acquiring and releasing while a reaper returns
/// a gone owner's permits, for the gone owner stopped at each step.
/// Run with `RUSTFLAGS="--cfg stockade_loom" cargo test -p stockade --profile loom --lib owners::loom_models`.
#[cfg(all(test, stockade_loom))]
mod loom_models {
    use super::*;
    use crate::bulkhead::BulkheadConfig;
    use crate::clock::ManualClock;
    use ::loom::sync::Arc;
    use ::loom::thread;

    struct World {
        bulkhead: Bulkhead,
        slots: [OwnerSlot; 2],
        clock: ManualClock,
    }

    impl World {
        /// A bulkhead of 2 permits and two idle owners.
        fn new() -> Arc<World> {
            Arc::new(World {
                bulkhead: Bulkhead::new(BulkheadConfig::DEFAULT.with_max_concurrent(2)).unwrap(),
                slots: [OwnerSlot::new(), OwnerSlot::new()],
                clock: ManualClock::new(),
            })
        }
    }

    /// `stop` puts owner 1 where it stopped; `owed` is what the bulkhead
    /// counts for it.
    fn model(stop: fn(&OwnerSlot, &Bulkhead), owed: u32) {
        ::loom::model(move || {
            let world = World::new();
            stop(&world.slots[1], &world.bulkhead);
            let live = {
                let w = Arc::clone(&world);
                thread::spawn(move || {
                    // The live owner's permits are never taken from it: its
                    // release always finds one.
                    if w.slots[0].try_acquire(&w.bulkhead).is_ok() {
                        w.slots[0]
                            .release(&w.bulkhead)
                            .expect("the live owner's permit was returned by the reaper");
                    }
                })
            };
            let mut scratch = [0u64; 2];
            let w = &world;
            let first = return_orphans(
                &w.bulkhead,
                2,
                |i| &w.slots[i],
                |i| i == 1,
                &mut scratch,
                &w.clock,
                Duration::from_secs(1),
            );
            live.join().unwrap();
            if let Some(n) = first {
                assert_eq!(n, owed, "returned what the gone owner did not hold");
            } else {
                let n = return_orphans(
                    &w.bulkhead,
                    2,
                    |i| &w.slots[i],
                    |i| i == 1,
                    &mut scratch,
                    &w.clock,
                    Duration::from_secs(1),
                );
                assert_eq!(
                    n,
                    Some(owed),
                    "quiet: the snapshot must succeed and be exact"
                );
            }
            assert_eq!(
                w.bulkhead.in_use(),
                0,
                "a permit leaked or was returned twice"
            );
        });
    }

    /// Two threads of one owner release its one permit at once (a caller
    /// bug): exactly one succeeds, and another owner's permit is untouched.
    #[test]
    fn a_permit_released_twice_at_once_is_returned_once() {
        ::loom::model(|| {
            let world = World::new();
            world.slots[0].try_acquire(&world.bulkhead).unwrap();
            world.slots[1].try_acquire(&world.bulkhead).unwrap();
            let other = {
                let w = Arc::clone(&world);
                thread::spawn(move || w.slots[0].release(&w.bulkhead).is_ok())
            };
            let mine = world.slots[0].release(&world.bulkhead).is_ok();
            let theirs = other.join().unwrap();
            assert!(
                mine ^ theirs,
                "released {} times",
                u8::from(mine) + u8::from(theirs)
            );
            assert_eq!(
                world.bulkhead.in_use(),
                1,
                "the other owner's permit was taken"
            );
            assert!(world.slots[0].is_idle());
            assert_eq!(world.slots[1].held(), 1);
        });
    }

    #[test]
    fn owner_gone_holding_one() {
        model(
            |s, b| {
                s.try_acquire(b).unwrap();
            },
            1,
        );
    }

    #[test]
    fn owner_gone_after_the_grant_before_counting() {
        model(
            |s, b| {
                s.begin();
                let _ = b.try_acquire().unwrap().into_token();
            },
            1,
        );
    }

    #[test]
    fn owner_gone_after_marking_an_acquire() {
        model(|s, _| s.begin(), 0);
    }

    #[test]
    fn owner_gone_after_returning_before_uncounting() {
        model(
            |s, b| {
                s.try_acquire(b).unwrap();
                s.begin_release().unwrap();
                b.release_many(1).unwrap();
            },
            0,
        );
    }
}
