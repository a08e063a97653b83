//! Permits (RAII) and plain-data tokens.

#[allow(unused_imports)]
use super::*;

/// A plain-data (`Copy`) record of an admitted call, for bindings that
/// cannot hold a [`BreakerPermit`]'s borrow: the generation it was admitted
/// in, and its start time when the breaker has a slow-call threshold.
///
/// Report it once with [`CircuitBreaker::report`]. A token that is never
/// reported does no lasting harm.
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, CircuitBreaker, Outcome, PermitToken};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).unwrap();
/// let clock = ManualClock::new();
/// let token = breaker.acquire_token(&clock).unwrap();
/// // ... hand `token` across the FFI boundary and back ...
/// let token = PermitToken::from_parts(token.generation(), token.started_at());
/// breaker.report(token, Outcome::Success, &clock);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "report the token's outcome with CircuitBreaker::report"]
pub struct PermitToken {
    pub(super) generation: u32,
    pub(super) started_at: Option<Timestamp>,
}

impl PermitToken {
    /// Rebuilds a token from its parts (for bindings that store them).
    pub const fn from_parts(generation: u32, started_at: Option<Timestamp>) -> PermitToken {
        PermitToken {
            generation,
            started_at,
        }
    }

    /// The generation the call was admitted in.
    pub const fn generation(self) -> u32 {
        self.generation
    }

    /// When the call was admitted, recorded only when the breaker has a
    /// slow-call threshold.
    pub const fn started_at(self) -> Option<Timestamp> {
        self.started_at
    }
}

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
    pub(super) token: PermitToken,
}

impl<'a> BreakerPermit<'a> {
    /// Takes the permit apart without running its `Drop` (a permit given
    /// a verdict must not also be released as "ignored").
    #[inline]
    pub(super) fn disarm(self) -> (&'a CircuitBreaker, PermitToken) {
        let this = ManuallyDrop::new(self);
        (this.breaker, this.token)
    }

    /// The call succeeded. Counts as a failure if it took longer than the
    /// breaker's slow-call threshold.
    #[inline]
    pub fn success<C: Clock + ?Sized>(self, clock: &C) {
        let (breaker, token) = self.disarm();
        breaker.report(token, Outcome::Success, clock);
    }

    /// The call failed.
    #[inline]
    pub fn failure<C: Clock + ?Sized>(self, clock: &C) {
        let (breaker, token) = self.disarm();
        breaker.report(token, Outcome::Failure, clock);
    }

    /// The call does not count; frees a half-open probe slot.
    pub fn ignore(self) {
        drop(self);
    }

    /// The permit's token, without giving a verdict.
    pub const fn token(&self) -> PermitToken {
        self.token
    }

    /// Turns the permit into a plain-data token, to be reported later with
    /// [`CircuitBreaker::report`]. No verdict is given now.
    pub fn into_token(self) -> PermitToken {
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
    pub(super) fn release(&self, token: PermitToken) {
        // Only a probe of the current round holds a slot; anything else
        // (the common case: a closed breaker) is this one load.
        let w = self.ctrl.load(Ordering::Acquire);
        if mode_of(w) == HALF_OPEN && gen_of(w) == token.generation as Word {
            self.release_probe(token);
        }
    }

    /// Frees the probe slot of `token` if it is still a probe of the
    /// current half-open round.
    #[inline(never)]
    pub(super) fn release_probe(&self, token: PermitToken) {
        let g = token.generation as Word;
        let _ = sync::update(&self.ctrl, Ordering::AcqRel, |w| {
            if mode_of(w) != HALF_OPEN || gen_of(w) != g {
                return Err(());
            }
            Ok(((), pack(HALF_OPEN, g, a_of(w).saturating_sub(1), b_of(w))))
        });
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
        b.report(lost, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.report(lost, Outcome::Ignored, &c);
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
        let t = b.acquire_token(&c).unwrap();
        assert_eq!(t.generation(), 0);
        assert_eq!(t.started_at(), None);
        let t = PermitToken::from_parts(t.generation(), t.started_at());
        b.report(t, Outcome::Success, &c);
        b.report(t, Outcome::Ignored, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        let t = b.try_acquire(&c).unwrap().into_token();
        b.report(t, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Open);
        // A forged generation outside the field never matches.
        b.report(
            PermitToken::from_parts(u32::MAX, None),
            Outcome::Failure,
            &c,
        );
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
    }
}
