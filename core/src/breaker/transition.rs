//! The transitions of the control word, and the value that reports one.
//!
//! Every change of the control word is computed by a *pure step*: a
//! function from the observed word to `Ok((value, new word))` or `Err(e)`.
//! A step may read (the clock, the `since` stamp) but writes nothing; it
//! notes what should happen afterwards in its result or in out-parameters
//! the caller owns (a stamp repair, [`Fix`]). [`update_ctrl`] applies a
//! step with one compare-and-swap; its caller then performs the effects
//! with [`commit`]: stamping the new generation's start, moving the
//! failure-rate window, counting, and building the [`Transition`] value.
//!
//! One effect comes *before* the compare-and-swap: a step that closes the
//! circuit gets an empty failure-rate window for the new generation
//! first, so no call of the new generation finds an old window. Readying
//! it early is harmless if the CAS then fails: the control word at
//! generation `g` can only move to `g + 1`, whoever moves it, and a window
//! of generation `g + 1` is never written while the control word is not
//! closed at `g + 1`.
//!
//! Because every transition is one successful CAS that increments the
//! generation by one, exactly one call performs each transition, and that
//! call, and only it, returns the [`Transition`].
//!
//! **What a race can cost.** All decisions on the control word are exact
//! under any interleaving: at most `half_open_max_probes` probes run at
//! once within a round, no concurrent failure or probe success is lost,
//! and a verdict is counted only in the generation it was admitted in. The
//! failure-rate window is exact once concurrent reports have finished (of
//! two concurrent reporters, the later one sees both calls), but in
//! between it is statistical: a slot claimed and not yet written reads as
//! the call it replaces (as a success in a fresh window); a report whose
//! thread sleeps between claiming and writing its slot while the circuit
//! is reset (or opens and closes again) can set one bit of the new window;
//! a closed-state report racing with the transition that ends its
//! generation may go unrecorded (it is stale a moment later anyway); and
//! when two threads ready the same window at the same moment the slower
//! one's clearing can erase a bit just written in it. Each makes an
//! evaluation see one call's bit as it was a moment earlier or later.
#[allow(unused_imports)]
use super::*;

/// A state change performed by a call, returned by that call (and only
/// that one): every transition is reported exactly once.
///
/// `generation` is the generation the transition began (each transition
/// increments it by one, wrapping at [`CircuitBreaker::GENERATIONS`]), so
/// transitions are totally ordered: sorted by generation, each `from` is
/// the previous `to`. A new half-open round is a transition from
/// [`BreakerState::HalfOpen`] to itself, and [`trip`](CircuitBreaker::trip)
/// on an open breaker one from `Open` to `Open`.
///
/// Plain data with a C layout (8 bytes).
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Transition};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT.with_failure_threshold(1))?;
/// let clock = ManualClock::new();
/// let permit = breaker.try_acquire(&clock)?;
/// assert_eq!(permit.transition(), None); // closed: admitted, nothing changed
/// let opened = permit.failure(&clock);
/// assert_eq!(
///     opened,
///     Some(Transition { from: BreakerState::Closed, to: BreakerState::Open, generation: 1 })
/// );
/// assert_eq!(breaker.reset(&clock).from, BreakerState::Open);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Transition {
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// The generation the transition began.
    pub generation: u32,
}

impl Transition {
    /// `true` when the state changed (not a new half-open round, and not
    /// a trip of an open breaker).
    pub const fn changes_state(self) -> bool {
        !matches!(
            (self.from, self.to),
            (BreakerState::Closed, BreakerState::Closed)
                | (BreakerState::Open, BreakerState::Open)
                | (BreakerState::HalfOpen, BreakerState::HalfOpen)
                | (BreakerState::ForcedOpen, BreakerState::ForcedOpen)
                | (BreakerState::Disabled, BreakerState::Disabled)
        )
    }
}

/// Why an admission step did not admit.
pub(super) enum Refusal {
    Rejected(BreakerRejected),
    /// The time stamp belongs to a newer generation than control word
    /// `.0`: decide again on a fresh control word.
    Reload(Word),
}

/// Why a report step did not count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum NotCounted {
    /// The generation moved on.
    Stale,
    /// A half-open round with no probe in flight: the token was already
    /// reported (or released).
    NotInFlight,
}

impl From<NotCounted> for TokenError {
    fn from(e: NotCounted) -> TokenError {
        match e {
            NotCounted::Stale => TokenError::Stale,
            NotCounted::NotInFlight => TokenError::AlreadyReported,
        }
    }
}

/// The CAS helper for `ctrl`: applies the pure step `f` until the
/// compare-and-swap succeeds or `f` declines; returns the step's value and
/// the old and new words. Readies the window before a CAS that closes
/// the circuit (see the module docs).
/// Adds one to a statistics counter (wrapping). Out of line: one copy of
/// the read-modify-write serves every counter.
#[inline(never)]
pub(super) fn count(counter: &AtomicU32) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[inline]
pub(super) fn update_ctrl<T, E>(
    breaker: &CircuitBreaker,
    mut f: impl FnMut(Word) -> Result<(T, Word), E>,
) -> Result<(T, Word, Word), E> {
    let backoff = crossbeam_utils::Backoff::new();
    let mut current = breaker.ctrl.load(Ordering::Acquire);
    loop {
        let (value, next) = f(current)?;
        if next == current {
            return Ok((value, current, next));
        }
        match breaker.swap_ctrl(current, next, &backoff) {
            Ok(()) => return Ok((value, current, next)),
            Err(actual) => current = actual,
        }
    }
}

impl CircuitBreaker {
    /// [`update_ctrl`]'s compare-and-swap of `current` for `next`, after
    /// readying the failure-rate window if `next` closes the circuit; on
    /// failure it backs off and returns the word found. Out of line: every
    /// transition loop shares this one copy (on a microcontroller that is
    /// worth more than the call).
    #[inline(never)]
    fn swap_ctrl(
        &self,
        current: Word,
        next: Word,
        backoff: &crossbeam_utils::Backoff,
    ) -> Result<(), Word> {
        if mode_of(next) == CLOSED && gen_of(next) != gen_of(current) {
            self.prepare_window(gen_of(next));
        }
        match self
            .ctrl
            .compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(actual) => {
                backoff.spin();
                Err(actual)
            }
        }
    }

    /// The effects of a successful CAS from `old` to `new`: when the
    /// generation changed, stamps its start (with a clock reading taken
    /// now, after the CAS), moves the window, counts, and returns the
    /// transition.
    pub(super) fn commit<C: Clock + ?Sized>(
        &self,
        old: Word,
        new: Word,
        now: &mut LazyNow<'_, C>,
    ) -> Option<Transition> {
        if gen_of(old) == gen_of(new) {
            return None;
        }
        let g = gen_of(new);
        self.enter(g, now.fresh());
        count(&self.transitions);
        let transition = Transition {
            from: BreakerState::from_mode(mode_of(old)),
            to: BreakerState::from_mode(mode_of(new)),
            generation: field_u32(g),
        };
        if transition.changes_state() {
            count(&self.state_changes);
        }
        Some(transition)
    }

    /// Ticks since generation `g` (of control word `w`) began, for an
    /// admission decision. Unknown time (not yet stamped, or the clock looks
    /// behind) counts as zero and notes a stamp repair in `fix`. A stamp of
    /// a newer generation means `w` is stale: decide again on a fresh
    /// control word, unless `w` was already `suspect` (then the stamp is
    /// not newer but very old, and is repaired).
    pub(super) fn admission_elapsed(
        &self,
        w: Word,
        t: Timestamp,
        fix: &mut Fix,
        suspect: Option<Word>,
    ) -> Result<Word, Refusal> {
        let g = gen_of(w);
        match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => Ok(e),
            SinceView::Behind(seen) | SinceView::Unstamped(seen) => {
                *fix = Some((g, seen));
                Ok(0)
            }
            SinceView::Superseded(seen) => {
                if suspect == Some(w) {
                    *fix = Some((g, seen));
                    Ok(0)
                } else {
                    Err(Refusal::Reload(w))
                }
            }
        }
    }

    /// The admission step for control word `w`: pure (reads the clock and
    /// `since`, writes nothing but the caller's `fix`).
    pub(super) fn acquire_step<C: Clock + ?Sized>(
        &self,
        w: Word,
        now: &mut LazyNow<'_, C>,
        fix: &mut Fix,
        suspect: Option<Word>,
    ) -> Result<((), Word), Refusal> {
        let g = gen_of(w);
        let mode = mode_of(w);
        let (timeout, state) = match mode {
            CLOSED | DISABLED => return Ok(((), w)),
            OPEN => (self.reset_ticks, BreakerState::Open),
            HALF_OPEN => (self.half_open_ticks, BreakerState::HalfOpen),
            _ => return Err(Refusal::Rejected(BreakerRejected::forced_open())),
        };
        // Open and half-open share the clock reading and the rejection
        // (one copy of each: this is the firmware's admission path too).
        let t = now.get();
        let e = self.admission_elapsed(w, t, fix, suspect)?;
        if e >= timeout {
            let g1 = next_gen(g);
            if mode == OPEN {
                Ok(((), pack(HALF_OPEN, g1, 1, 0)))
            } else if b_of(w) > 0 {
                // The round is over: close if a probe succeeded (none
                // failed, or we would be open), else start a new round.
                Ok(((), pack(CLOSED, g1, 0, 0)))
            } else {
                Ok(((), pack(HALF_OPEN, g1, 1, 0)))
            }
        } else if mode == HALF_OPEN && a_of(w) < self.config.half_open_max_probes as Word {
            Ok(((), pack(HALF_OPEN, g, a_of(w) + 1, b_of(w))))
        } else {
            Err(Refusal::Rejected(BreakerRejected::after(
                state,
                remaining(timeout - e, t),
            )))
        }
    }

    /// A success while closed: resets the consecutive failures (skipped
    /// when already zero: then this is a plain load) and records the call
    /// in the window, which may open the circuit.
    pub(super) fn closed_success<C: Clock + ?Sized>(
        &self,
        w: Word,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> Result<Option<Transition>, NotCounted> {
        if a_of(w) != 0 {
            update_ctrl(self, |w| {
                if mode_of(w) != CLOSED || gen_of(w) != g {
                    return Err(NotCounted::Stale);
                }
                Ok(((), pack(CLOSED, g, 0, b_of(w))))
            })?;
        }
        Ok(self.record(g, false, now))
    }

    /// A failure while closed: counts it, opening at the threshold; else
    /// records it in the window, which may open the circuit.
    pub(super) fn closed_failure<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> Result<Option<Transition>, NotCounted> {
        let threshold = self.config.failure_threshold as Word;
        let ((), old, new) = update_ctrl(self, |w| {
            if mode_of(w) != CLOSED || gen_of(w) != g {
                return Err(NotCounted::Stale);
            }
            let failures = a_of(w).saturating_add(1).min(FIELD_MAX);
            if failures >= threshold {
                Ok(((), pack(OPEN, next_gen(g), 0, 0)))
            } else {
                Ok(((), pack(CLOSED, g, failures, b_of(w))))
            }
        })?;
        match self.commit(old, new, now) {
            Some(opened) => Ok(Some(opened)),
            None => Ok(self.record(g, true, now)),
        }
    }

    /// A successful probe: frees its slot, counts it, and closes the
    /// circuit on `half_open_successes_to_close` or at the round's end.
    pub(super) fn probe_success<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> Result<Option<Transition>, NotCounted> {
        // 0: no early close.
        let to_close = self.config.half_open_successes_to_close as Word;
        let mut fix: Fix = None;
        let ((), old, new) = update_ctrl(self, |w| {
            fix = None;
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(NotCounted::Stale);
            }
            if a_of(w) == 0 {
                return Err(NotCounted::NotInFlight);
            }
            let successes = b_of(w).saturating_add(1).min(FIELD_MAX);
            let close = (to_close != 0 && successes >= to_close)
                || self.elapsed(g, now.get(), &mut fix) >= self.half_open_ticks;
            if close {
                Ok(((), pack(CLOSED, next_gen(g), 0, 0)))
            } else {
                Ok(((), pack(HALF_OPEN, g, a_of(w) - 1, successes)))
            }
        })?;
        let transition = self.commit(old, new, now);
        if transition.is_none() {
            if let Some((g, seen)) = fix {
                self.restamp(g, seen, now.get());
            }
        }
        Ok(transition)
    }

    /// A failed probe: re-opens the circuit.
    pub(super) fn probe_failure<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> Result<Option<Transition>, NotCounted> {
        let ((), old, new) = update_ctrl(self, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(NotCounted::Stale);
            }
            if a_of(w) == 0 {
                return Err(NotCounted::NotInFlight);
            }
            Ok(((), pack(OPEN, next_gen(g), 0, 0)))
        })?;
        Ok(self.commit(old, new, now))
    }

    /// The manual step: `mode` from any state, in a new generation.
    pub(super) fn set_mode<C: Clock + ?Sized>(&self, mode: Word, clock: &C) -> Transition {
        let moved = update_ctrl(self, |w| {
            Ok::<_, Infallible>(((), pack(mode, next_gen(gen_of(w)), 0, 0)))
        });
        let ((), old, new) = match moved {
            Ok(moved) => moved,
            Err(never) => match never {},
        };
        let mut now = LazyNow::new(clock);
        match self.commit(old, new, &mut now) {
            Some(transition) => transition,
            // Unreachable: the generation always changes. Described
            // anyway rather than panicking.
            None => Transition {
                from: BreakerState::from_mode(mode_of(old)),
                to: BreakerState::from_mode(mode_of(new)),
                generation: field_u32(gen_of(new)),
            },
        }
    }
}
