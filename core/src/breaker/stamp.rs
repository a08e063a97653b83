//! `since`: when the current generation began.
//!
//! **Clock steps and wrap-around.** Elapsed time is the wrapping
//! difference of tick counts. If the clock appears to be *behind* the stamp
//! (it stepped backwards, or an open breaker sat idle for more than half a
//! wrap period) the breaker restamps the generation's start with the
//! current time: no time has passed. An open breaker idle across a wrap may
//! therefore look recently opened and stay open up to one more
//! `reset_timeout` (a half-open round may likewise last one more
//! `half_open_timeout`); it never admits early. A clock jump larger than
//! the wrap period is seen modulo the period.
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
}
