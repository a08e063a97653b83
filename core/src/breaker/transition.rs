//! The transitions of the control word.
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
//! and when two threads close the circuit at the same moment the slower
//! one's window clearing can erase a bit just written in the new window.
//! Each makes an evaluation see one call's bit as it was a moment
//! earlier or later.
#[allow(unused_imports)]
use super::*;

/// Why an admission step did not admit.
pub(super) enum Refusal {
    Rejected(BreakerRejected),
    /// The time stamp belongs to a newer generation than control word
    /// `.0`: decide again on a fresh control word.
    Reload(Word),
}

/// An admission decided on the control word.
#[derive(Clone, Copy)]
pub(super) struct Admitted {
    pub(super) mode: Word,
    pub(super) generation: Word,
    /// The admission began a new generation (a transition).
    pub(super) entered: bool,
}

impl CircuitBreaker {
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

    /// The pure admission decision for control word `w`.
    pub(super) fn acquire_step<C: Clock + ?Sized>(
        &self,
        w: Word,
        now: &mut LazyNow<'_, C>,
        fix: &mut Fix,
        suspect: Option<Word>,
    ) -> Result<(Admitted, Word), Refusal> {
        let g = gen_of(w);
        let mode = mode_of(w);
        match mode {
            CLOSED | DISABLED => Ok((
                Admitted {
                    mode,
                    generation: g,
                    entered: false,
                },
                w,
            )),
            OPEN => {
                let t = now.get();
                let e = self.admission_elapsed(w, t, fix, suspect)?;
                if e >= self.reset_ticks {
                    let g1 = next_gen(g);
                    Ok((
                        Admitted {
                            mode: HALF_OPEN,
                            generation: g1,
                            entered: true,
                        },
                        pack(HALF_OPEN, g1, 1, 0),
                    ))
                } else {
                    Err(Refusal::Rejected(BreakerRejected {
                        state: BreakerState::Open,
                        retry_after: remaining(self.reset_ticks - e, t),
                    }))
                }
            }
            HALF_OPEN => {
                let t = now.get();
                let e = self.admission_elapsed(w, t, fix, suspect)?;
                if e >= self.half_open_ticks {
                    // The round is over: close if a probe succeeded (none
                    // failed, or we would be open), else start a new round.
                    let g1 = next_gen(g);
                    let next = if b_of(w) > 0 {
                        self.prepare_window(g1);
                        CLOSED
                    } else {
                        HALF_OPEN
                    };
                    let probes = if next == HALF_OPEN { 1 } else { 0 };
                    Ok((
                        Admitted {
                            mode: next,
                            generation: g1,
                            entered: true,
                        },
                        pack(next, g1, probes, 0),
                    ))
                } else if a_of(w) < self.config.half_open_max_probes as Word {
                    Ok((
                        Admitted {
                            mode,
                            generation: g,
                            entered: false,
                        },
                        pack(HALF_OPEN, g, a_of(w) + 1, b_of(w)),
                    ))
                } else {
                    Err(Refusal::Rejected(BreakerRejected {
                        state: BreakerState::HalfOpen,
                        retry_after: remaining(self.half_open_ticks - e, t),
                    }))
                }
            }
            _ => Err(Refusal::Rejected(BreakerRejected {
                state: BreakerState::ForcedOpen,
                retry_after: Duration::MAX,
            })),
        }
    }

    /// A success while closed: resets the consecutive failures (skipped
    /// when already zero: then this is a plain load) and records the call
    /// in the window.
    pub(super) fn closed_success<C: Clock + ?Sized>(
        &self,
        w: Word,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> bool {
        if a_of(w) != 0 {
            let reset = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
                if mode_of(w) != CLOSED || gen_of(w) != g {
                    return Err(());
                }
                Ok(((), pack(CLOSED, g, 0, b_of(w))))
            });
            if reset.is_err() {
                return false;
            }
        }
        self.record(g, false, now);
        true
    }

    /// A failure while closed: counts it, opening at the threshold.
    pub(super) fn closed_failure<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> bool {
        let threshold = self.config.failure_threshold as Word;
        let counted = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != CLOSED || gen_of(w) != g {
                return Err(());
            }
            let failures = a_of(w).saturating_add(1).min(FIELD_MAX);
            if failures >= threshold {
                Ok((true, pack(OPEN, next_gen(g), 0, 0)))
            } else {
                Ok((false, pack(CLOSED, g, failures, b_of(w))))
            }
        });
        match counted {
            Ok(true) => {
                self.enter(next_gen(g), now.fresh());
                true
            }
            Ok(false) => {
                self.record(g, true, now);
                true
            }
            Err(()) => false,
        }
    }

    /// A successful probe: frees its slot, counts it, and closes the
    /// circuit on `half_open_successes_to_close` or at the round's end.
    pub(super) fn probe_success<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> bool {
        let to_close = match self.config.half_open_successes_to_close {
            Some(n) => n as Word,
            None => 0,
        };
        let mut fix: Fix = None;
        let closed = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            fix = None;
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            let successes = b_of(w).saturating_add(1).min(FIELD_MAX);
            let close = (to_close != 0 && successes >= to_close)
                || self.elapsed(g, now.get(), &mut fix) >= self.half_open_ticks;
            if close {
                let g1 = next_gen(g);
                self.prepare_window(g1);
                Ok((true, pack(CLOSED, g1, 0, 0)))
            } else {
                Ok((
                    false,
                    pack(HALF_OPEN, g, a_of(w).saturating_sub(1), successes),
                ))
            }
        });
        match closed {
            Ok(true) => {
                self.enter(next_gen(g), now.fresh());
                true
            }
            Ok(false) => {
                if let Some((g, seen)) = fix {
                    self.restamp(g, seen, now.get());
                }
                true
            }
            Err(()) => false,
        }
    }

    /// A failed probe: re-opens the circuit.
    pub(super) fn probe_failure<C: Clock + ?Sized>(
        &self,
        g: Word,
        now: &mut LazyNow<'_, C>,
    ) -> bool {
        let opened = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            Ok(((), pack(OPEN, next_gen(g), 0, 0)))
        });
        if opened.is_ok() {
            self.enter(next_gen(g), now.fresh());
        }
        opened.is_ok()
    }
}
