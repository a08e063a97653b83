//! Permits (RAII) and plain-data tokens, and what reporting a token
//! twice or never does.
//!
//! A [`BreakerToken`] names the generation its call was admitted in (and
//! its start, with a slow-call threshold). A verdict counts only in that
//! generation; see [`CircuitBreaker::report`] for the exact rules.

#[allow(unused_imports)]
use super::*;

/// A plain-data (`Copy`, `#[repr(C)]`, 16 bytes) record of an admitted
/// call, for bindings that cannot hold a [`BreakerPermit`]'s borrow: the
/// generation it was admitted in, and its start time when the breaker has
/// a slow-call threshold.
///
/// Get one with [`BreakerPermit::into_token`]; report it once with
/// [`CircuitBreaker::report`], or re-attach it to a permit with
/// [`BreakerPermit::from_token`].
///
/// * **Never reported**: no lasting harm. Closed: nothing was counted for
///   it. Half-open: its probe slot stays taken until the round ends
///   (`half_open_timeout`); a round that ends without a successful probe
///   is followed by a new round, so the breaker is never wedged.
/// * **Reported twice**: once the generation has moved on, every report
///   returns [`TokenError::Stale`] and changes nothing. Within the same
///   half-open round, a second report is refused with
///   [`TokenError::AlreadyReported`] when no probe of the round is in
///   flight; see [`CircuitBreaker::report`] for the case where one is, and
///   for the closed state, where a second report cannot be told from
///   another call's.
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, BreakerToken, CircuitBreaker, Outcome};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT)?;
/// let clock = ManualClock::new();
/// let token = breaker.try_acquire(&clock)?.into_token();
/// // ... hand `token` across the FFI boundary and back ...
/// let token = BreakerToken::from_parts(token.generation(), token.started_at());
/// assert_eq!(breaker.report(token, Outcome::Success, &clock), Ok(None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
#[must_use = "report the token's outcome with CircuitBreaker::report"]
pub struct BreakerToken {
    // Field order: the 8-byte field first, so that the compiler moves a
    // permit's token as one 8-byte and two 4-byte pieces, each read back
    // from a store of the same width. With the generation first it copied
    // `timed` and half of `started_at` as one 8-byte load spanning two
    // stores: a store-forwarding stall of about 4 ns on every closed call.
    /// The start, in nanoseconds of the breaker's clock.
    started_at: u64,
    generation: u32,
    /// 1 when `started_at` holds a start time, else 0.
    timed: u32,
}

impl BreakerToken {
    /// Rebuilds a token from its parts (for bindings that store them).
    pub const fn from_parts(generation: u32, started_at: Option<Timestamp>) -> BreakerToken {
        match started_at {
            Some(t) => BreakerToken {
                generation,
                timed: 1,
                started_at: t.as_nanos(),
            },
            None => BreakerToken {
                generation,
                timed: 0,
                started_at: 0,
            },
        }
    }

    /// The generation the call was admitted in.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// When the call was admitted, recorded only when the breaker has a
    /// slow-call threshold.
    pub const fn started_at(self) -> Option<Timestamp> {
        if self.timed != 0 {
            Some(Timestamp::from_nanos(self.started_at))
        } else {
            None
        }
    }
}

/// A token's verdict was not counted.
///
/// `#[repr(u8)]` with explicit discriminants: the numbers are part of the
/// C ABI and are never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TokenError {
    /// The token's generation is over (the breaker changed state, or a
    /// half-open round ended, since the call was admitted), or the token
    /// was forged. Counted in [`BreakerMetrics::stale_verdicts`] unless the
    /// outcome was [`Outcome::Ignored`].
    Stale = 1,
    /// A half-open probe's token, reported while no probe of its round is
    /// in flight: it was reported (or released) already. Nothing changed.
    AlreadyReported = 2,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Stale => "circuit breaker token is stale: the breaker changed state since the call was admitted",
            TokenError::AlreadyReported => "circuit breaker token was already reported",
        })
    }
}

impl core::error::Error for TokenError {}

/// Permission to make one call through a [`CircuitBreaker`].
///
/// Give it a verdict with [`success`](Self::success),
/// [`failure`](Self::failure) or [`ignore`](Self::ignore). Dropping it
/// without one is the same as `ignore`: a half-open probe slot is freed and
/// nothing is counted.
#[derive(Debug)]
#[must_use = "give the permit a verdict: success, failure or ignore"]
pub struct BreakerPermit<'a> {
    pub(super) breaker: &'a CircuitBreaker,
    pub(super) token: BreakerToken,
    pub(super) transition: Option<Transition>,
}

impl<'a> BreakerPermit<'a> {
    /// Re-attaches a token to its breaker: the permit reports on drop
    /// like any other. Use it to get the RAII guard back after a token
    /// crossed a boundary. Attaching a token to another breaker than the
    /// one that issued it is harmless but meaningless (its verdicts are
    /// almost always stale there).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::breaker::{BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker};
    /// use stockade::clock::ManualClock;
    ///
    /// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT.with_failure_threshold(1))?;
    /// let clock = ManualClock::new();
    /// let token = breaker.try_acquire(&clock)?.into_token();
    /// let permit = BreakerPermit::from_token(&breaker, token);
    /// permit.failure(&clock);
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub const fn from_token(breaker: &'a CircuitBreaker, token: BreakerToken) -> BreakerPermit<'a> {
        BreakerPermit {
            breaker,
            token,
            transition: None,
        }
    }

    /// Takes the permit apart without running its `Drop` (a permit given
    /// a verdict must not also be released as "ignored").
    #[inline]
    pub(super) fn disarm(self) -> (&'a CircuitBreaker, BreakerToken) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.token)
    }

    /// The transition this admission performed (open to half-open, or the
    /// end of a half-open round), if any. `None` for a permit made with
    /// [`from_token`](Self::from_token).
    pub const fn transition(&self) -> Option<Transition> {
        self.transition
    }

    /// The call succeeded. Counts as a failure if it took longer than the
    /// breaker's slow-call threshold. Returns the transition this verdict
    /// performed, if any (a stale verdict performs none; see
    /// [`CircuitBreaker::report`]).
    #[inline]
    pub fn success<C: Clock + ?Sized>(self, clock: &C) -> Option<Transition> {
        // The common case first, reading only the generation (see
        // `success_changes_nothing`).
        if self.breaker.success_changes_nothing(self.token.generation) {
            core::mem::forget(self);
            return None;
        }
        // `report` would check the same case again.
        let (breaker, token) = self.disarm();
        breaker
            .report_slow(token, Outcome::Success, clock)
            .ok()
            .flatten()
    }

    /// The call failed. Returns the transition this verdict performed, if
    /// any.
    #[inline]
    pub fn failure<C: Clock + ?Sized>(self, clock: &C) -> Option<Transition> {
        let (breaker, token) = self.disarm();
        breaker
            .report(token, Outcome::Failure, clock)
            .ok()
            .flatten()
    }

    /// The call does not count; frees a half-open probe slot. Never
    /// changes the state.
    pub fn ignore(self) {
        drop(self);
    }

    /// The permit's token, without giving a verdict.
    pub const fn token(&self) -> BreakerToken {
        self.token
    }

    /// Turns the permit into a plain-data token, to be reported later with
    /// [`CircuitBreaker::report`] (or re-attached with
    /// [`from_token`](Self::from_token)). No verdict is given now.
    pub fn into_token(self) -> BreakerToken {
        self.disarm().1
    }
}

impl Drop for BreakerPermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.breaker.release(self.token);
    }
}

impl CircuitBreaker {
    /// No verdict: frees the probe slot if `token` is a probe of the
    /// current half-open round.
    #[inline]
    pub(super) fn release(&self, token: BreakerToken) {
        // Only a probe of the current round holds a slot; anything else
        // (the common case: a closed breaker) is this one load.
        let w = self.ctrl.load(Ordering::Acquire);
        if mode_of(w) == HALF_OPEN && gen_of(w) == token.generation as Word {
            let _ = self.release_probe(token);
        }
    }

    /// Frees the probe slot of `token` if it is still a probe of the
    /// current half-open round. Never a transition.
    #[inline(never)]
    pub(super) fn release_probe(&self, token: BreakerToken) -> Result<(), NotCounted> {
        let g = token.generation as Word;
        update_ctrl(self, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(NotCounted::Stale);
            }
            if a_of(w) == 0 {
                return Err(NotCounted::NotInFlight);
            }
            Ok(((), pack(HALF_OPEN, g, a_of(w) - 1, b_of(w))))
        })
        .map(|_| ())
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn a_lost_probe_token_does_not_wedge_the_breaker() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let lost = wait_out(&b, &c).into_token(); // the caller crashed
        let g = metrics(&b, &c).generation;
        // The round ends without a verdict; a new round admits a new probe.
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let m = metrics(&b, &c);
        assert_eq!((m.generation, m.probes_in_flight), (g + 1, 1));
        // The old round's late verdicts are ignored.
        let _ = b.report(lost, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let _ = b.report(lost, Outcome::Ignored, &c);
        assert!(b.try_acquire(&c).is_err(), "the new probe keeps its slot");
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
        probe.success(&c);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_round_with_only_lost_probes_restarts_not_closes() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        let c = clock();
        b.trip(&c);
        let _lost = wait_out(&b, &c).into_token();
        c.advance(Duration::from_secs(30) + SLACK);
        let p = b.try_acquire(&c).unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(metrics(&b, &c).probes_in_flight, 1);
        drop(p);
    }

    #[test]
    fn dropping_a_closed_permit_counts_nothing() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = clock();
        fail(&b, &c);
        drop(b.try_acquire(&c).unwrap());
        b.try_acquire(&c).unwrap().ignore();
        let m = metrics(&b, &c);
        assert_eq!((m.consecutive_failures, m.failures), (1, 1));
    }

    #[test]
    fn tokens_round_trip() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let c = clock();
        let t = b.try_acquire(&c).unwrap().into_token();
        assert_eq!(t.generation(), 0);
        assert_eq!(t.started_at(), None);
        let t = BreakerToken::from_parts(t.generation(), t.started_at());
        let _ = b.report(t, Outcome::Success, &c);
        let _ = b.report(t, Outcome::Ignored, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        let t = b.try_acquire(&c).unwrap().into_token();
        let _ = b.report(t, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Open);
        // A forged generation outside the field never matches.
        let _ = b.report(
            BreakerToken::from_parts(u32::MAX, None),
            Outcome::Failure,
            &c,
        );
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
    }

    #[test]
    fn a_token_reported_twice_is_refused_or_bounded() {
        // Half-open, one probe: the second report is refused and changes
        // nothing.
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        let c = clock();
        b.trip(&c);
        let probe = wait_out(&b, &c);
        let t = probe.into_token();
        assert_eq!(b.report(t, Outcome::Ignored, &c), Ok(None));
        assert_eq!(
            b.report(t, Outcome::Success, &c),
            Err(TokenError::AlreadyReported)
        );
        assert_eq!(
            b.report(t, Outcome::Failure, &c),
            Err(TokenError::AlreadyReported)
        );
        assert_eq!(
            b.report(t, Outcome::Ignored, &c),
            Err(TokenError::AlreadyReported)
        );
        let m = metrics(&b, &c);
        assert_eq!(
            (
                m.state,
                m.probes_in_flight,
                m.probe_successes,
                m.stale_verdicts
            ),
            (BreakerState::HalfOpen, 0, 0, 2)
        );
        // With another probe in flight a second report is taken as its
        // verdict: its slot is freed, counts stay in bounds.
        let a = b.try_acquire(&c).unwrap().into_token();
        let other = b.try_acquire(&c).unwrap();
        assert_eq!(b.report(a, Outcome::Success, &c), Ok(None));
        assert_eq!(b.report(a, Outcome::Success, &c), Ok(None));
        let m = metrics(&b, &c);
        assert_eq!((m.probes_in_flight, m.probe_successes), (0, 2));
        drop(other); // its slot is already free: nothing below zero
        assert_eq!(metrics(&b, &c).probes_in_flight, 0);

        // Once the generation moved on, every report is stale.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let t = b.try_acquire(&c).unwrap().into_token();
        let opened = b.report(t, Outcome::Failure, &c).unwrap().unwrap();
        assert_eq!(
            (opened.from, opened.to),
            (BreakerState::Closed, BreakerState::Open)
        );
        assert_eq!(b.report(t, Outcome::Failure, &c), Err(TokenError::Stale));
        assert_eq!(b.report(t, Outcome::Success, &c), Err(TokenError::Stale));
        let m = metrics(&b, &c);
        assert_eq!((m.failures, m.transitions, m.stale_verdicts), (1, 1, 2));

        // Closed, same generation: counted again, as documented.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(3));
        let t = b.try_acquire(&c).unwrap().into_token();
        assert_eq!(b.report(t, Outcome::Failure, &c), Ok(None));
        assert_eq!(b.report(t, Outcome::Failure, &c), Ok(None));
        assert_eq!(metrics(&b, &c).consecutive_failures, 2);
        assert!(b.report(t, Outcome::Failure, &c).unwrap().is_some());
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn a_token_never_reported_does_not_wedge_and_from_token_reattaches() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let _lost = wait_out(&b, &c).into_token();
        assert!(b.try_acquire(&c).is_err(), "the lost probe holds its slot");
        c.advance(Duration::from_secs(30) + SLACK);
        let p = b.try_acquire(&c).expect("a new round");
        let round = p.transition().unwrap();
        assert_eq!(
            (round.from, round.to),
            (BreakerState::HalfOpen, BreakerState::HalfOpen)
        );
        assert!(!round.changes_state());
        // Re-attached, the permit releases its slot on drop.
        let t = p.into_token();
        drop(BreakerPermit::from_token(&b, t));
        assert_eq!(metrics(&b, &c).probes_in_flight, 0);
        let token = BreakerToken::from_parts(7, Some(Timestamp::from_nanos(9)));
        assert_eq!(
            (token.generation(), token.started_at()),
            (7, Some(Timestamp::from_nanos(9)))
        );
        assert_eq!(core::mem::size_of::<BreakerToken>(), 16);
    }

    #[test]
    fn token_errors_say_what_went_wrong() {
        assert!(TokenError::Stale.to_string().contains("stale"));
        assert!(
            TokenError::AlreadyReported
                .to_string()
                .contains("already reported")
        );
    }
}
