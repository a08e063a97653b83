//! `since`: when the current generation began.
//!
//! **Clock steps and wrap-around.** Elapsed time is the wrapping
//! difference of tick counts, so the breaker knows it only modulo
//! [`CircuitBreaker::TIME_WRAP`] (≈ 834 days with the 64-bit layout,
//! ≈ 19.5 hours with the 32-bit one). A difference of half the wrap or
//! more is read as the clock being *behind* the stamp, and the breaker
//! restamps the generation's start with the current time: no time has
//! passed. Exactly:
//!
//! * A clock that steps **backwards** by less than
//!   [`CircuitBreaker::BACKWARD_HORIZON`] (half the wrap, minus one tick
//!   of rounding) is "no time passed": never an early admission.
//! * A backwards step of `BACKWARD_HORIZON` or more (up to a whole wrap)
//!   is indistinguishable from the clock moving *forwards* by
//!   `TIME_WRAP - step`, and is read that way: an open breaker may admit a
//!   probe at once if that is at least `reset_timeout`. Only the 32-bit
//!   layout's horizon (≈ 9.77 hours) is within reach of a real clock; the
//!   32-bit layout has no room for more time bits in its state word.
//! * A breaker idle (no call) for more than half a wrap looks behind: an
//!   open breaker may then look recently opened and stay open up to one
//!   more `reset_timeout` (a half-open round may likewise last one more
//!   `half_open_timeout`); it never admits early.
//! * Any jump is seen modulo the wrap period.
#[allow(unused_imports)]
use super::*;

/// Reads the clock only when asked, and at most once until told to forget.
///
/// Rule for time stamps: a stamp for generation `g` must come from a
/// reading taken *after* observing `g` in the control word, so it is never
/// earlier than the transition to `g`. Admission therefore forgets its
/// reading for each control word it decides on, and transition stamps use
/// [`fresh`](Self::fresh) readings taken after the compare-and-swap.
pub(super) struct LazyNow<'c, C: Clock + ?Sized> {
    pub(super) clock: &'c C,
    pub(super) now: Option<Timestamp>,
}

impl<'c, C: Clock + ?Sized> LazyNow<'c, C> {
    pub(super) fn new(clock: &'c C) -> Self {
        LazyNow { clock, now: None }
    }

    #[inline]
    pub(super) fn get(&mut self) -> Timestamp {
        match self.now {
            Some(t) => t,
            None => self.fresh(),
        }
    }

    /// Reads the clock now (and remembers the reading).
    #[inline]
    pub(super) fn fresh(&mut self) -> Timestamp {
        let t = self.clock.now();
        self.now = Some(t);
        t
    }

    /// Forgets the reading: the next [`get`](Self::get) reads the clock.
    #[inline]
    pub(super) fn forget(&mut self) {
        self.now = None;
    }
}

/// What `since` says about generation `g`.
pub(super) enum SinceView {
    /// Stamped for `g`; this many ticks ago.
    Elapsed(Word),
    /// Stamped for `g`, but the clock looks behind the stamp.
    Behind(Word),
    /// Not yet stamped for `g` (still holds an older generation's stamp).
    Unstamped(Word),
    /// Holds a newer generation's stamp: the caller's view of the control
    /// word is stale.
    Superseded(Word),
}

/// A stamp repair to try after a decision: `(generation, observed since)`.
pub(super) type Fix = Option<(Word, Word)>;

impl CircuitBreaker {
    /// Ticks since generation `g` began, as seen at `t`, for a report.
    /// Unknown (not yet stamped, or the clock looks behind) counts as zero,
    /// and a stamp repair is noted in `fix`. Superseded also counts as
    /// zero: the report's compare-and-swap then fails on the changed
    /// control word and the report is found stale.
    #[inline]
    pub(super) fn elapsed(&self, g: Word, t: Timestamp, fix: &mut Fix) -> Word {
        match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => e,
            SinceView::Behind(seen) | SinceView::Unstamped(seen) => {
                *fix = Some((g, seen));
                0
            }
            SinceView::Superseded(_) => 0,
        }
    }

    pub(super) fn view_since(&self, g: Word, now: Word) -> SinceView {
        let s = self.since.load(Ordering::Acquire);
        let tag = s >> TIME_BITS;
        let want = g & TAG_MASK;
        if tag == want {
            match elapsed_ticks(now, s & TIME_MASK) {
                Some(e) => SinceView::Elapsed(e),
                None => SinceView::Behind(s),
            }
        } else if tag_is_older(tag, want) {
            SinceView::Unstamped(s)
        } else {
            SinceView::Superseded(s)
        }
    }

    /// One attempt to stamp generation `g` as beginning at `t`, replacing
    /// the observed value `seen` (an older generation's stamp, or `g`'s
    /// stamp that the clock is behind of). Losing the race is fine: the
    /// winner stamped a time at least as recent.
    #[inline(never)]
    pub(super) fn restamp(&self, g: Word, seen: Word, t: Timestamp) {
        let _ = self.since.compare_exchange(
            seen,
            stamp_word(g, now_ticks(t)),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Records that this thread began generation `g` at `t`: stamps `since`
    /// unless a newer stamp (or a helper's stamp for `g`) is already there,
    /// and moves the failure-rate window to `g` (a no-op when closing: that
    /// was done before the control word moved). So the window's generation
    /// follows every transition and never falls half the generation space
    /// behind, where it would look newer.
    pub(super) fn enter(&self, g: Word, t: Timestamp) {
        let stamp = stamp_word(g, now_ticks(t));
        let want = g & TAG_MASK;
        let mut s = self.since.load(Ordering::Acquire);
        while tag_is_older(s >> TIME_BITS, want) {
            match self
                .since
                .compare_exchange_weak(s, stamp, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        self.prepare_window(g);
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn a_clock_stepping_back_means_no_time_passed() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        c.advance(Duration::from_secs(1000));
        b.trip(&c);
        c.advance(Duration::from_secs(50));
        c.set(Timestamp::from_nanos(
            c.now().as_nanos() - 200 * 1_000_000_000,
        ));
        // Behind the stamp: restamped to now, the full timeout again.
        let r = rejected(&b, &c);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(60));
        let probe = wait_out(&b, &c);
        // Half-open: the round restarts from a backwards step too.
        probe.success(&c);
        c.set(Timestamp::from_nanos(c.now().as_nanos() - 10_000_000_000));
        let p = b.try_acquire(&c).unwrap();
        c.advance(Duration::from_secs(29));
        p.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        c.advance(SEC + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn huge_clock_jumps_never_admit_early_or_panic() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::new();
        b.trip(&c);
        for jump in [1u64 << 62, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
            c.set(Timestamp::from_nanos(jump));
            // Seen modulo the wrap period: open at most one more timeout.
            match b.try_acquire(&c) {
                Ok(p) => {
                    p.failure(&c);
                }
                Err(r) => assert!(r.retry_after().unwrap() <= Duration::from_secs(60) + SLACK),
            }
            assert_ne!(b.state(), BreakerState::Closed);
        }
        // At the end of time the clock is stuck: still no panic.
        c.advance(Duration::MAX);
        let _ = b.try_acquire(&c);
        let _ = b.metrics(&c);
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);

        // A jump of more than half the wrap period looks behind: restamp.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::new();
        b.trip(&c);
        c.advance(CircuitBreaker::TIME_WRAP / 2 + Duration::from_secs(1));
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        // A jump of a whole wrap period looks like no time: wait again.
        let b = breaker(BreakerConfig::DEFAULT);
        b.trip(&c);
        c.advance(CircuitBreaker::TIME_WRAP);
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        drop(wait_out(&b, &c));
    }

    #[test]
    fn an_unstamped_transition_counts_as_just_now() {
        // As if the thread that opened the breaker died before stamping.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.ctrl.store(pack(OPEN, 1, 0, 0), Ordering::Release);
        c.advance(Duration::from_secs(3600));
        let r = rejected(&b, &c);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(60));
        // The reader stamped it, so the timeout runs from now.
        assert_eq!(b.since.load(Ordering::Acquire) >> TIME_BITS, 1);
        drop(wait_out(&b, &c));

        // A late winner never overwrites a newer generation's stamp.
        let b = breaker(BreakerConfig::DEFAULT);
        b.trip(&c); // generation 1
        b.since.store(stamp_word(2, 0), Ordering::Release);
        b.enter(1, c.now());
        assert_eq!(b.since.load(Ordering::Acquire), stamp_word(2, 0));
        // A stamp that looks newer while the control word stays put is in
        // fact ancient (more than half the tag space behind): repaired.
        c.advance(Duration::from_secs(3600));
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        assert_eq!(b.since.load(Ordering::Acquire) >> TIME_BITS, 1);
        drop(wait_out(&b, &c));
    }

    #[test]
    fn backwards_steps_within_the_horizon_are_no_time_and_beyond_it_are_documented() {
        let h = CircuitBreaker::BACKWARD_HORIZON;
        assert_eq!(h, CircuitBreaker::TIME_WRAP / 2);
        let tick = CircuitBreaker::TICK;
        let start = Timestamp::from_nanos(1 << 62);
        let back = |by: Duration| Timestamp::from_nanos(start.as_nanos() - by.as_nanos() as u64);

        // Just inside the horizon: no time passed, the full timeout again.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::starting_at(start);
        b.trip(&c);
        c.set(back(h - 2 * tick));
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        drop(wait_out(&b, &c));

        // Beyond it: read as the clock moving forwards by TIME_WRAP - step
        // (here far more than reset_timeout), as documented.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::starting_at(start);
        b.trip(&c);
        c.set(back(h + 2 * tick));
        let probe = b
            .try_acquire(&c)
            .expect("documented: beyond the horizon a step back reads as forward");
        assert_eq!(probe.transition().unwrap().to, BreakerState::HalfOpen);

        // A step back by a whole wrap minus 30 s reads as 30 s forward.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = ManualClock::starting_at(start);
        b.trip(&c);
        c.set(back(CircuitBreaker::TIME_WRAP - Duration::from_secs(30)));
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(30),
        );
    }
}
