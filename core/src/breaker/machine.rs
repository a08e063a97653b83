//! The machine: admission, reports and manual control.

#[allow(unused_imports)]
use super::*;

/// A lock-free circuit breaker. See the [module documentation](crate::breaker).
///
/// # Examples
///
/// ```
/// use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
/// use stockade::clock::ManualClock;
///
/// let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).unwrap();
/// let clock = ManualClock::new();
/// match breaker.try_acquire(&clock) {
///     Ok(permit) => {
///         let call_ok = true; // make the call here
///         if call_ok { permit.success(&clock); } else { permit.failure(&clock); }
///     }
///     Err(rejected) => println!("not now: {rejected}"),
/// }
/// assert_eq!(breaker.state(), BreakerState::Closed);
/// ```
#[derive(Debug)]
#[repr(C)]
pub struct CircuitBreaker {
    /// `mode | generation | A | B`.
    pub(super) ctrl: AtomicWord,
    /// `generation tag | ticks`: when the current generation began.
    pub(super) since: AtomicWord,
    /// Failure-rate window position: `generation | filled | next`.
    pub(super) window_pos: AtomicWord,
    /// Failure-rate window: one bit per call, 1 = failure.
    pub(super) window_bits: [AtomicU32; RING_WORDS],
    pub(super) failures: AtomicU32,
    pub(super) slow_calls: AtomicU32,
    pub(super) rejections: AtomicU32,
    pub(super) transitions: AtomicU32,
    pub(super) state_changes: AtomicU32,
    pub(super) stale: AtomicU32,
    pub(super) reset_ticks: Word,
    pub(super) half_open_ticks: Word,
    /// The configuration as plain integers (see `StoredConfig`).
    pub(super) config: StoredConfig,
}

impl CircuitBreaker {
    /// `size_of::<CircuitBreaker>()`: the bytes C must reserve to place a
    /// breaker in its own storage (with [`ALIGN`](Self::ALIGN)). Differs
    /// between the 64-bit and 32-bit layouts and between targets.
    pub const SIZE: usize = core::mem::size_of::<CircuitBreaker>();

    /// `align_of::<CircuitBreaker>()`.
    pub const ALIGN: usize = core::mem::align_of::<CircuitBreaker>();

    /// The number of distinct generations before the counter wraps
    /// (2²⁹ with the 64-bit layout, 2¹³ with the 32-bit layout).
    pub const GENERATIONS: u32 = 1 << GEN_BITS;

    /// The largest `failure_threshold`, `half_open_max_probes` and
    /// `half_open_successes_to_close` (65535, or 255 with the 32-bit
    /// layout).
    pub const MAX_COUNT: u32 = field_u32(FIELD_MAX);

    /// The resolution of the breaker's timers (1 ns, or 2²⁰ ns ≈ 1.05 ms
    /// with the 32-bit layout).
    pub const TICK: Duration = Duration::from_nanos(UNIT.nanos_per_tick());

    /// The period after which the stored tick time wraps (2⁵⁶ ns ≈ 834
    /// days, or 2⁴⁶ ns ≈ 19.5 hours with the 32-bit layout).
    pub const TIME_WRAP: Duration = Duration::from_nanos(
        UNIT.to_nanos(TIME_MASK)
            .saturating_add(UNIT.nanos_per_tick()),
    );

    /// The longest backwards clock step the breaker is sure to read as "no
    /// time passed" is one tick shorter than this (half of
    /// [`TIME_WRAP`](Self::TIME_WRAP): ≈ 417 days, or ≈ 9.77 hours with
    /// the 32-bit layout). A step back by this much or more, up to a whole
    /// wrap, reads as the clock moving forwards by `TIME_WRAP - step`.
    pub const BACKWARD_HORIZON: Duration = Duration::from_nanos(
        UNIT.to_nanos(MAX_ELAPSED)
            .saturating_add(UNIT.nanos_per_tick()),
    );

    /// The largest `reset_timeout` and `half_open_timeout` (≈ 417 days, or
    /// ≈ 9.77 hours with the 32-bit layout).
    pub const MAX_TIMEOUT: Duration = Duration::from_nanos(UNIT.to_nanos(MAX_TIMEOUT_TICKS));

    const_fn_unless_loom! {
        /// A closed breaker with `config`, or the first invalid option.
        ///
        /// # Errors
        ///
        /// A [`ConfigError`] naming the option: a count or duration of zero,
        /// a count above [`MAX_COUNT`](Self::MAX_COUNT), a timeout above
        /// [`MAX_TIMEOUT`](Self::MAX_TIMEOUT), a `failure_rate` with a
        /// percentage outside 1..=100, a window outside
        /// 1..=[`FailureRateConfig::MAX_WINDOW_SIZE`], or `minimum_calls`
        /// above `window_size`.
        pub fn new(config: BreakerConfig) -> Result<CircuitBreaker, ConfigError> {
            Self::build::<true>(config)
        }
    }

    const_fn_unless_loom! {
        /// The breaker [`new`](Self::new)`(raw.to_config()?)` makes, or
        /// `None` where that returns an error: the same checks and the same
        /// breaker, but a refusal is not described, so none of the code
        /// that describes it is linked. For firmware, where that code is
        /// much of a constructor's flash (the C ABI's
        /// `stockade_breaker_init_lean`).
        #[inline(always)]
        pub fn from_raw_lean(raw: &RawBreakerConfig) -> Option<CircuitBreaker> {
            match Self::build::<false>(raw.unvalidated()) {
                Ok(breaker) => Some(breaker),
                Err(_) => None,
            }
        }
    }

    const_fn_unless_loom! {
        /// [`new`](Self::new), describing a refusal only when `EXPLAIN`.
        #[inline(always)]
        fn build<const EXPLAIN: bool>(config: BreakerConfig) -> Result<CircuitBreaker, ConfigError> {
            tri!(config.check::<EXPLAIN>());
            let reset_ticks = tri!(check_timeout::<EXPLAIN>(ConfigOption::ResetTimeout, config.reset_timeout));
            let half_open_ticks = tri!(check_timeout::<EXPLAIN>(ConfigOption::HalfOpenTimeout, config.half_open_timeout));
            Ok(CircuitBreaker {
                ctrl: AtomicWord::new(pack(CLOSED, 0, 0, 0)),
                since: AtomicWord::new(stamp_word(0, 0)),
                window_pos: AtomicWord::new(pos_pack(0, 0, 0)),
                window_bits: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
                failures: AtomicU32::new(0),
                slow_calls: AtomicU32::new(0),
                rejections: AtomicU32::new(0),
                transitions: AtomicU32::new(0),
                state_changes: AtomicU32::new(0),
                stale: AtomicU32::new(0),
                reset_ticks,
                half_open_ticks,
                config: StoredConfig::new(&config),
            })
        }
    }

    /// The configuration (a copy: the machine stores it as plain
    /// integers, so it can live in memory other processes map).
    pub const fn config(&self) -> BreakerConfig {
        self.config.config()
    }

    /// The config's `slow_call_threshold`, read without building the whole
    /// [`config`](Self::config) (for layers that check it on every call).
    #[inline]
    pub const fn slow_call_threshold(&self) -> Option<Duration> {
        if self.config.has_slow_call_threshold() {
            self.config.slow_call_threshold()
        } else {
            None
        }
    }

    /// The current state: one atomic load, no clock. An open breaker whose
    /// `reset_timeout` has passed still reports [`BreakerState::Open`]
    /// until the next [`try_acquire`](Self::try_acquire) moves it to
    /// half-open.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_mode(mode_of(self.ctrl.load(Ordering::Acquire)))
    }

    /// Asks to make a call.
    ///
    /// Closed or disabled: admitted (reads the clock only with a slow-call
    /// threshold, to record the start). Open: rejected until
    /// `reset_timeout` has passed, then admitted as the first probe of a
    /// half-open round. Half-open: admitted while fewer than
    /// `half_open_max_probes` probes are in flight; ends the round if it
    /// has lasted `half_open_timeout` (closing the circuit, or starting a
    /// new round). Forced open: rejected.
    ///
    /// A transition this admission performed is in
    /// [`BreakerPermit::transition`]; a rejection never changes the state.
    /// For a plain-data token, use `try_acquire(..)?.into_token()`.
    ///
    /// # Errors
    ///
    /// [`BreakerRejected`] with the state and how long to wait.
    #[inline]
    pub fn try_acquire<C: Clock + ?Sized>(
        &self,
        clock: &C,
    ) -> Result<BreakerPermit<'_>, BreakerRejected> {
        // Fast path: closed with no slow-call threshold needs no clock and
        // changes nothing, so the decision is this one load; it is exactly
        // what the general path decides for such a word (it finds the word
        // unchanged, skips its compare-and-swap and records no start).
        //
        // Ordering: the breaker itself needs no more than `Relaxed` here.
        // The decision reads nothing but this word, and whatever this
        // load may return, an `Acquire` load may return too (only later
        // reads differ). A later report loads `ctrl` with `Acquire` itself
        // and every write of `ctrl` is a release read-modify-write, so the
        // report synchronizes with every transition up to the word it
        // sees without help from this load. `Acquire` is kept anyway: it
        // is what the general path always gave (an admitted call
        // happens-after the transition that let it in, e.g. a `reset`),
        // and it costs nothing on x86-64 (a plain `mov`, like `Relaxed`)
        // and little elsewhere.
        if let Some(permit) = self.try_acquire_without_clock() {
            return Ok(permit);
        }
        self.acquire_slow(clock)
    }

    /// The first step of [`try_acquire`](Self::try_acquire), one load and
    /// no clock: `Some(permit)` when the breaker admits at once (closed,
    /// no slow-call threshold: what `try_acquire` then decides too, with
    /// no transition), `None` when the general path must decide (call
    /// `try_acquire`; `None` is not a rejection). For callers that want the
    /// common case without the general path's set-up (the C ABI).
    #[inline(always)]
    pub fn try_acquire_without_clock(&self) -> Option<BreakerPermit<'_>> {
        let w = self.ctrl.load(Ordering::Acquire);
        if mode_of(w) == CLOSED && !self.config.has_slow_call_threshold() {
            return Some(BreakerPermit {
                breaker: self,
                token: BreakerToken::from_parts(field_u32(gen_of(w)), None),
                transition: None,
            });
        }
        None
    }

    /// The general admission: every state, with clock readings and
    /// transitions. Out of line so the fast path above inlines small.
    #[inline(never)]
    fn acquire_slow<C: Clock + ?Sized>(
        &self,
        clock: &C,
    ) -> Result<BreakerPermit<'_>, BreakerRejected> {
        let mut now = LazyNow::new(clock);
        let mut fix: Fix = None;
        let mut suspect = None;
        let decided = loop {
            let decided = update_ctrl(self, |w| {
                fix = None;
                now.forget();
                self.acquire_step(w, &mut now, &mut fix, suspect)
            });
            match decided {
                Err(Refusal::Reload(w)) => suspect = Some(w),
                Err(Refusal::Rejected(rejected)) => break Err(rejected),
                Ok(((), old, new)) => break Ok((old, new)),
            }
        };
        match decided {
            Ok((old, new)) => {
                let transition = self.commit(old, new, &mut now);
                if transition.is_none() {
                    if let Some((g, seen)) = fix {
                        self.restamp(g, seen, now.get());
                    }
                }
                let started_at =
                    if self.config.has_slow_call_threshold() && mode_of(new) != DISABLED {
                        Some(now.get())
                    } else {
                        None
                    };
                Ok(BreakerPermit {
                    breaker: self,
                    token: BreakerToken::from_parts(field_u32(gen_of(new)), started_at),
                    transition,
                })
            }
            Err(rejected) => {
                if let Some((g, seen)) = fix {
                    self.restamp(g, seen, now.get());
                }
                count(&self.rejections);
                Err(rejected)
            }
        }
    }

    /// Reports the outcome of the call `token` was admitted for; returns
    /// the transition the verdict performed, if any.
    ///
    /// Reads the clock only when the decision needs it: to measure a call
    /// against the slow-call threshold, in the half-open state, and to
    /// time-stamp a transition. A verdict counts only in the generation
    /// its call was admitted in:
    ///
    /// * A token of an earlier generation (or a forged one) changes
    ///   nothing: `Err(`[`TokenError::Stale`]`)`, counted in
    ///   [`BreakerMetrics::stale_verdicts`] unless the outcome is
    ///   [`Outcome::Ignored`].
    /// * Disabled: nothing is recorded, `Ok(None)`.
    ///
    /// **Reporting a token twice.** After the first report, once the
    /// generation has moved on (the report opened or closed the circuit,
    /// or anything else did), a second report is stale as above. Within
    /// the same generation:
    ///
    /// * Half-open: with no probe of the round in flight, the second report
    ///   changes nothing and returns `Err(`[`TokenError::AlreadyReported`]`)`
    ///   (counted as a stale verdict unless ignored). With another probe in
    ///   flight it cannot be told from that probe's verdict and is taken as
    ///   it: it frees that probe's slot early (one more probe may be
    ///   admitted while it still runs) and, for a success, counts one more
    ///   successful probe; that probe's own report later gets
    ///   `AlreadyReported` if no other probe is in flight. Counts stay
    ///   within their bounds: probes in flight never go below zero or
    ///   above `half_open_max_probes`.
    /// * Closed: a token carries no identity beyond its generation, so a
    ///   second report counts as another call's: a success again resets
    ///   the consecutive failures and adds a success to the failure-rate
    ///   window; a failure again adds one to the consecutive failures, to
    ///   [`BreakerMetrics::failures`] and a failure to the window (so the
    ///   circuit may open one call early). Every count saturates or wraps
    ///   as documented; no invariant of the machine depends on the caller.
    ///
    /// A [`BreakerPermit`] cannot be reported twice: its verdicts consume
    /// it. A token that is never reported does no lasting harm (see
    /// [`BreakerToken`]).
    ///
    /// # Errors
    ///
    /// [`TokenError`] when the verdict was not counted.
    #[inline]
    pub fn report<C: Clock + ?Sized>(
        &self,
        token: BreakerToken,
        outcome: Outcome,
        clock: &C,
    ) -> Result<Option<Transition>, TokenError> {
        // Fast path: a success that changes nothing returns after one load.
        if outcome == Outcome::Success && self.success_changes_nothing(token.generation()) {
            return Ok(None);
        }
        self.report_slow(token, outcome, clock)
    }

    /// Whether a success of `generation` is a no-op: the generation is the
    /// current closed one with no consecutive failures to reset, and the
    /// breaker has neither a slow-call threshold (nothing to measure) nor
    /// a failure-rate window (nothing to record). The general path would
    /// find the same and return without a write. The generation is
    /// compared unmasked, so a forged token never matches.
    ///
    /// Takes the bare generation, not the token, so that a permit's
    /// success reads one `u32` of itself: copying the whole token here
    /// would cost a store-forwarding stall on the hot path.
    #[inline(always)]
    pub(super) fn success_changes_nothing(&self, generation: u32) -> bool {
        // Ordering: as in `try_acquire`, `Acquire` like the general path.
        !self.config.has_slow_call_threshold() && !self.config.has_failure_rate() && {
            let w = self.ctrl.load(Ordering::Acquire);
            mode_of(w) == CLOSED && gen_of(w) == generation as Word && a_of(w) == 0
        }
    }

    /// Whether [`report`](Self::report) of a success for a call admitted
    /// in `generation` would return `Ok(None)` after one load, changing
    /// nothing: the generation is the current closed one with no
    /// consecutive failures to reset, and the breaker measures no slow
    /// calls and keeps no failure-rate window. For callers that keep
    /// tokens in a form of their own (the C ABI's plain-data token):
    /// checking this first spares building a [`BreakerToken`] on the
    /// common path. Like `report`'s own check, the answer describes the
    /// moment of its one load.
    #[inline(always)]
    pub fn success_is_noop(&self, generation: u32) -> bool {
        self.success_changes_nothing(generation)
    }

    /// The general report: every state and outcome. Out of line so the
    /// fast path above inlines small.
    #[inline(never)]
    pub(super) fn report_slow<C: Clock + ?Sized>(
        &self,
        token: BreakerToken,
        outcome: Outcome,
        clock: &C,
    ) -> Result<Option<Transition>, TokenError> {
        let w = self.ctrl.load(Ordering::Acquire);
        let g = token.generation() as Word;
        if gen_of(w) != g || token.generation() >= Self::GENERATIONS {
            if outcome != Outcome::Ignored {
                count(&self.stale);
            }
            return Err(TokenError::Stale);
        }
        let mode = mode_of(w);
        if mode != CLOSED && mode != HALF_OPEN {
            // Disabled records nothing; open states admit no calls.
            return Ok(None);
        }
        let mut now = LazyNow::new(clock);
        let (failed, slow) = match outcome {
            Outcome::Ignored => {
                return match mode {
                    CLOSED => Ok(None),
                    _ => self.release_probe(token).map(|()| None).map_err(Into::into),
                };
            }
            Outcome::Failure => (true, false),
            Outcome::Success => {
                let slow = self.is_slow(token, &mut now);
                (slow, slow)
            }
        };
        let counted = match (mode, failed) {
            (CLOSED, false) => self.closed_success(w, g, &mut now),
            (CLOSED, true) => self.closed_failure(g, &mut now),
            (_, false) => self.probe_success(g, &mut now),
            (_, true) => self.probe_failure(g, &mut now),
        };
        match counted {
            Err(e) => {
                count(&self.stale);
                Err(e.into())
            }
            Ok(transition) => {
                if failed {
                    count(&self.failures);
                    if slow {
                        count(&self.slow_calls);
                    }
                }
                Ok(transition)
            }
        }
    }

    fn is_slow<C: Clock + ?Sized>(&self, token: BreakerToken, now: &mut LazyNow<'_, C>) -> bool {
        match (self.config.slow_call_threshold(), token.started_at()) {
            (Some(threshold), Some(start)) => {
                now.get().saturating_duration_since(start) > threshold
            }
            _ => false,
        }
    }

    // -- manual control -----------------------------------------------------

    /// Opens the circuit now, from any state; it goes half-open after
    /// `reset_timeout` as usual. Returns the transition (its `from` is the
    /// previous state; tripping an open breaker restarts its timer, a
    /// transition from `Open` to `Open`).
    pub fn trip<C: Clock + ?Sized>(&self, clock: &C) -> Transition {
        self.set_mode(OPEN, clock)
    }

    /// Closes the circuit, from any state (also leaves the forced-open and
    /// disabled modes), with the consecutive failures, the half-open probe
    /// counts and the failure-rate window cleared. The lifetime totals of
    /// [`BreakerMetrics`] (`failures`, `slow_calls`, `rejections`,
    /// `transitions`, `state_changes`, `stale_verdicts`) are not cleared:
    /// they count over the breaker's whole life. Returns the transition.
    pub fn reset<C: Clock + ?Sized>(&self, clock: &C) -> Transition {
        self.set_mode(CLOSED, clock)
    }

    /// Opens the circuit until [`reset`](Self::reset) (or
    /// [`trip`](Self::trip) or [`disable`](Self::disable)). Returns the
    /// transition.
    pub fn force_open<C: Clock + ?Sized>(&self, clock: &C) -> Transition {
        self.set_mode(FORCED_OPEN, clock)
    }

    /// Admits every call and records nothing until [`reset`](Self::reset)
    /// (or [`trip`](Self::trip) or [`force_open`](Self::force_open)).
    /// Returns the transition.
    pub fn disable<C: Clock + ?Sized>(&self, clock: &C) -> Transition {
        self.set_mode(DISABLED, clock)
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn consecutive_failures_open_and_success_resets_them() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(3));
        let c = clock();
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 2);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        let m = metrics(&b, &c);
        assert_eq!(m.failures, 5);
        assert_eq!(m.transitions, 1);
        assert_eq!(m.generation, 1);
        assert_eq!(m.consecutive_failures, 0);
        let r = rejected(&b, &c);
        assert_eq!(r.state(), BreakerState::Open);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(60));
        assert_eq!(metrics(&b, &c).rejections, 1);
    }

    #[test]
    fn open_waits_exactly_reset_timeout() {
        let b = breaker(BreakerConfig::DEFAULT.with_reset_timeout(Duration::from_millis(1500)));
        let c = clock();
        let t0 = c.now();
        b.trip(&c);
        c.advance(Duration::from_millis(1500) - NS);
        assert_eq!(rejected(&b, &c).state(), BreakerState::Open);
        c.set(t0);
        let probe = wait_out(&b, &c);
        assert!(c.now().saturating_duration_since(t0) >= Duration::from_millis(1500));
        assert!(c.now().saturating_duration_since(t0) <= Duration::from_millis(1500) + SLACK);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop(probe);
    }

    #[test]
    fn half_open_admits_at_most_max_probes_and_drop_frees_a_slot() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        let c = clock();
        b.trip(&c);
        let p1 = wait_out(&b, &c);
        let p2 = b.try_acquire(&c).expect("second probe");
        let r = rejected(&b, &c);
        assert_eq!(r.state(), BreakerState::HalfOpen);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(30));
        assert_eq!(metrics(&b, &c).probes_in_flight, 2);
        drop(p1); // no verdict: frees the slot, counts nothing
        let m = metrics(&b, &c);
        assert_eq!(
            (m.probes_in_flight, m.probe_successes, m.failures),
            (1, 0, 0)
        );
        let p3 = b.try_acquire(&c).expect("slot freed by drop");
        p3.ignore();
        let p4 = b.try_acquire(&c).expect("slot freed by ignore");
        assert!(b.try_acquire(&c).is_err());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop((p2, p4));
    }

    #[test]
    fn failed_probe_reopens_with_a_fresh_reset_timeout() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let probe = wait_out(&b, &c);
        let g = metrics(&b, &c).generation;
        c.advance(Duration::from_secs(10));
        probe.failure(&c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(metrics(&b, &c).generation, g + 1);
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );
        let probe = wait_out(&b, &c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        drop(probe);
    }

    #[test]
    fn closes_when_the_round_ends_with_a_success_checked_on_report() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        b.trip(&c);
        let first = wait_out(&b, &c);
        c.advance(SEC);
        first.success(&c);
        // One success does not close before the round ends...
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(metrics(&b, &c).probe_successes, 1);
        // ...and the freed slot admits another probe.
        let second = b.try_acquire(&c).expect("slot free again");
        c.advance(Duration::from_secs(29) + SLACK);
        second.success(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        let m = metrics(&b, &c);
        assert_eq!((m.probes_in_flight, m.probe_successes), (0, 0));
    }

    #[test]
    fn closes_when_the_round_ends_with_a_success_checked_on_acquire() {
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_timeout(Duration::from_secs(5)));
        let c = clock();
        b.trip(&c);
        wait_out(&b, &c).success(&c);
        let held = b.try_acquire(&c).expect("second probe");
        let r = rejected(&b, &c);
        assert_about(r.retry_after().unwrap(), Duration::from_secs(5));
        c.advance(r.retry_after().unwrap() - NS);
        assert!(b.try_acquire(&c).is_err());
        c.advance(NS);
        let closed = b.try_acquire(&c).expect("round over: closed");
        assert_eq!(b.state(), BreakerState::Closed);
        // The probe still in flight belongs to the ended round.
        held.failure(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).stale_verdicts, 1);
        closed.success(&c);
    }

    #[test]
    fn successes_to_close_closes_early() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_half_open_max_probes(2)
                .with_half_open_successes_to_close(3),
        );
        let c = clock();
        b.trip(&c);
        let p1 = wait_out(&b, &c);
        let p2 = b.try_acquire(&c).unwrap();
        p1.success(&c);
        p2.success(&c);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn stale_verdicts_do_not_drive_the_current_state() {
        // A slow success that began before the trip cannot close the circuit
        // or release the current probe's slot.
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        let slow = b.try_acquire(&c).unwrap();
        b.trip(&c);
        let probe = wait_out(&b, &c);
        c.advance(Duration::from_secs(31));
        slow.success(&c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::HalfOpen);
        assert_eq!(
            (m.probes_in_flight, m.probe_successes, m.stale_verdicts),
            (1, 0, 1)
        );
        drop(probe);

        // A reset clears the state's counts, not the lifetime totals.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(3));
        fail(&b, &c);
        fail(&b, &c);
        let before = metrics(&b, &c);
        assert_eq!((before.consecutive_failures, before.failures), (2, 2));
        b.reset(&c);
        let after = metrics(&b, &c);
        assert_eq!((after.consecutive_failures, after.failures), (0, 2));
        assert_eq!(after.transitions, before.transitions + 1);
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed, "the count restarted");

        // A failure from before a reset does not count after it.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let old = b.try_acquire(&c).unwrap();
        b.reset(&c);
        old.failure(&c);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).failures, 0);

        // A late failure from an earlier half-open round does not re-open
        // a later round; a late success does not count towards closing.
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(2));
        b.trip(&c);
        let early_a = wait_out(&b, &c).into_token();
        let early_b = b.try_acquire(&c).unwrap().into_token();
        c.advance(Duration::from_secs(30) + SLACK);
        let later = b.try_acquire(&c).unwrap();
        let _ = b.report(early_a, Outcome::Failure, &c);
        let _ = b.report(early_b, Outcome::Success, &c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::HalfOpen);
        assert_eq!((m.probes_in_flight, m.probe_successes), (1, 0));
        later.failure(&c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn slow_successes_count_as_failures() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(2)
                .with_slow_call_threshold(SEC),
        );
        let c = clock();
        // Exactly the threshold is not slower than it.
        let p = b.try_acquire(&c).unwrap();
        assert!(p.token().started_at().is_some());
        c.advance(SEC);
        p.success(&c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        // A clock that stepped back measures no time.
        let p = b.try_acquire(&c).unwrap();
        c.set(Timestamp::from_nanos(5));
        p.success(&c);
        assert_eq!(metrics(&b, &c).consecutive_failures, 0);
        for _ in 0..2 {
            let p = b.try_acquire(&c).unwrap();
            c.advance(SEC + NS);
            p.success(&c);
        }
        assert_eq!(b.state(), BreakerState::Open);
        let m = metrics(&b, &c);
        assert_eq!((m.failures, m.slow_calls), (2, 2));
    }

    #[test]
    fn the_clock_is_read_only_when_the_decision_needs_it() {
        let c = CountingClock {
            now: Cell::new(1_000),
            reads: Cell::new(0),
        };
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        b.try_acquire(&c).unwrap().success(&c);
        b.try_acquire(&c).unwrap().failure(&c);
        b.try_acquire(&c).unwrap().success(&c);
        drop(b.try_acquire(&c).unwrap());
        assert_eq!(c.take(), 0, "closed path reads no clock");
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire(&c).unwrap().failure(&c);
        b.try_acquire(&c).unwrap().failure(&c);
        assert_eq!(c.take(), 1, "opening stamps the time");
        assert!(b.try_acquire(&c).is_err());
        assert_eq!(c.take(), 1, "open reads the clock once");
        b.force_open(&c);
        c.take();
        assert!(b.try_acquire(&c).is_err());
        b.disable(&c);
        c.take();
        b.try_acquire(&c).unwrap().failure(&c);
        assert_eq!(c.take(), 0, "forced open and disabled read no clock");

        let b = breaker(BreakerConfig::DEFAULT.with_slow_call_threshold(SEC));
        let p = b.try_acquire(&c).unwrap();
        assert_eq!(
            c.take(),
            1,
            "slow-call threshold: admission records the start"
        );
        p.success(&c);
        assert_eq!(c.take(), 1);
    }

    #[test]
    fn manual_modes() {
        let b = breaker(BreakerConfig::DEFAULT);
        let c = clock();
        assert_eq!(b.trip(&c).from, BreakerState::Closed);
        assert_eq!(b.state(), BreakerState::Open);
        c.advance(Duration::from_secs(59));
        // Tripping an open breaker restarts its timer.
        assert_eq!(b.trip(&c).from, BreakerState::Open);
        assert_about(
            rejected(&b, &c).retry_after().unwrap(),
            Duration::from_secs(60),
        );

        assert_eq!(b.force_open(&c).from, BreakerState::Open);
        let r = rejected(&b, &c);
        assert_eq!(r.state(), BreakerState::ForcedOpen);
        assert_eq!(r.retry_after(), None);
        assert_eq!(r.to_string(), "circuit breaker is forced open");
        c.advance(Duration::from_secs(3600));
        assert_eq!(rejected(&b, &c).state(), BreakerState::ForcedOpen);

        assert_eq!(b.reset(&c).from, BreakerState::ForcedOpen);
        assert_eq!(b.state(), BreakerState::Closed);

        assert_eq!(b.disable(&c).from, BreakerState::Closed);
        let kept = b.try_acquire(&c).unwrap();
        for _ in 0..20 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Disabled);
        let m = metrics(&b, &c);
        assert_eq!(
            (m.failures, m.consecutive_failures, m.stale_verdicts),
            (0, 0, 0)
        );
        assert_eq!(b.reset(&c).from, BreakerState::Disabled);
        kept.failure(&c); // from the disabled generation: stale now
        let m = metrics(&b, &c);
        assert_eq!(
            (m.state, m.failures, m.stale_verdicts),
            (BreakerState::Closed, 0, 1)
        );
        assert_eq!(m.transitions, 6);
    }

    #[test]
    #[cfg(feature = "failure-rate")]
    fn public_fast_path_checks_answer_as_try_acquire_and_report() {
        let c = clock();
        // Closed, no threshold: admitted without a clock, and a success of
        // the current generation is a no-op.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let t = b.try_acquire_without_clock().unwrap().into_token();
        assert_eq!((t.generation(), t.started_at()), (0, None));
        assert!(b.success_is_noop(0));
        assert!(!b.success_is_noop(1));
        // A pending consecutive failure: a success resets it, not a no-op.
        fail(&b, &c);
        assert!(!b.success_is_noop(0));
        succeed(&b, &c);
        assert!(b.success_is_noop(0));
        // Open: no decision without a clock (None), and try_acquire rejects.
        b.trip(&c);
        assert!(b.try_acquire_without_clock().is_none());
        assert!(b.try_acquire(&c).is_err());
        assert!(!b.success_is_noop(1));
        // A slow-call threshold needs the clock: None, then try_acquire admits.
        let b = breaker(BreakerConfig::DEFAULT.with_slow_call_threshold(SEC));
        assert!(b.try_acquire_without_clock().is_none());
        assert!(!b.success_is_noop(0));
        assert!(b.try_acquire(&c).is_ok());
        // A failure-rate window records successes: never a no-op.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_rate(FailureRateConfig::new(50, 4, 2)));
        assert!(b.try_acquire_without_clock().is_some());
        assert!(!b.success_is_noop(0));
    }

    #[test]
    #[cfg(feature = "failure-rate")]
    fn fast_paths_decide_as_the_general_path() {
        // Closed, default config: acquire, success and drop read no clock
        // and change nothing.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = CountingClock {
            now: Cell::new(7),
            reads: Cell::new(0),
        };
        let t = b.try_acquire(&c).unwrap().into_token();
        assert_eq!((t.generation(), t.started_at()), (0, None));
        let _ = b.report(t, Outcome::Success, &c);
        drop(b.try_acquire(&c).unwrap());
        b.try_acquire(&c).unwrap().success(&c);
        assert_eq!(c.take(), 0);
        let before = b.ctrl.load(Ordering::Acquire);
        // A token that carries a start time (from another breaker or a
        // binding) is not measured without a threshold.
        let started = BreakerToken::from_parts(0, Some(Timestamp::from_nanos(0)));
        let _ = b.report(started, Outcome::Success, &c);
        assert_eq!((b.ctrl.load(Ordering::Acquire), c.take()), (before, 0));

        // A pending consecutive failure is reset by a success (general path).
        fail(&b, &clock());
        assert_eq!(metrics(&b, &clock()).consecutive_failures, 1);
        succeed(&b, &clock());
        assert_eq!(metrics(&b, &clock()).consecutive_failures, 0);
        fail(&b, &clock());
        assert_eq!(b.state(), BreakerState::Closed);

        // Forged generations never match, even ones equal to the current
        // generation modulo the field.
        for forged in [CircuitBreaker::GENERATIONS, u32::MAX, 1] {
            let _ = b.report(BreakerToken::from_parts(forged, None), Outcome::Success, &c);
        }
        let m = metrics(&b, &clock());
        assert_eq!((m.stale_verdicts, m.consecutive_failures), (3, 1));

        // A stale success of an older closed generation is stale.
        b.trip(&c);
        b.reset(&c);
        let _ = b.report(t, Outcome::Success, &c);
        assert_eq!(metrics(&b, &clock()).stale_verdicts, 4);

        // With a slow-call threshold admission records the start, and a
        // slow success counts as a failure.
        let b = breaker(BreakerConfig::DEFAULT.with_slow_call_threshold(SEC));
        c.take();
        let t = b.try_acquire(&c).unwrap().into_token();
        assert_eq!(
            (t.started_at(), c.take()),
            (Some(Timestamp::from_nanos(7)), 1)
        );
        c.now.set(7 + 2_000_000_000);
        let _ = b.report(t, Outcome::Success, &c);
        let m = metrics(&b, &clock());
        assert_eq!((m.consecutive_failures, m.slow_calls), (1, 1));

        // Disabled: no start recorded even with a threshold, nothing counted.
        b.disable(&c);
        let t = b.try_acquire(&c).unwrap().into_token();
        assert_eq!(t.started_at(), None);
        let _ = b.report(t, Outcome::Success, &c);
        let _ = b.report(t, Outcome::Failure, &c);
        assert_eq!(metrics(&b, &clock()).failures, 1);

        // With a failure-rate window a success is recorded in it.
        let b = breaker(BreakerConfig::DEFAULT.with_failure_rate(FailureRateConfig::new(50, 4, 2)));
        succeed(&b, &clock());
        assert_eq!(metrics(&b, &clock()).window.unwrap().calls, 1);

        // Half-open: a verdict frees the probe's slot once (it does not
        // also run the drop path), dropping a probe frees its slot.
        let b = breaker(BreakerConfig::DEFAULT.with_half_open_max_probes(3));
        let c = clock();
        b.trip(&c);
        c.advance(Duration::from_secs(61));
        let p1 = b.try_acquire(&c).unwrap();
        let p2 = b.try_acquire(&c).unwrap();
        let p3 = b.try_acquire(&c).unwrap();
        assert_eq!(metrics(&b, &c).probes_in_flight, 3);
        p2.success(&c);
        let m = metrics(&b, &c);
        assert_eq!((m.probes_in_flight, m.probe_successes), (2, 1));
        let t3 = p3.into_token();
        assert_eq!(metrics(&b, &c).probes_in_flight, 2);
        drop(p1);
        assert_eq!(metrics(&b, &c).probes_in_flight, 1);
        let _ = b.report(t3, Outcome::Ignored, &c);
        assert_eq!(metrics(&b, &c).probes_in_flight, 0);
    }

    #[test]
    fn size_and_align_are_exported() {
        assert_eq!(CircuitBreaker::SIZE, core::mem::size_of::<CircuitBreaker>());
        assert_eq!(
            CircuitBreaker::ALIGN,
            core::mem::align_of::<CircuitBreaker>()
        );
        assert_eq!(core::mem::size_of::<Transition>(), 8);
        assert_eq!(core::mem::size_of::<BreakerState>(), 1);
        assert_eq!(core::mem::size_of::<Outcome>(), 1);
        assert_eq!(core::mem::size_of::<TokenError>(), 1);
        // The discriminants are part of the C ABI.
        assert_eq!(
            [
                BreakerState::Closed as u8,
                BreakerState::Open as u8,
                BreakerState::HalfOpen as u8,
                BreakerState::ForcedOpen as u8,
                BreakerState::Disabled as u8,
            ],
            [0, 1, 2, 3, 4]
        );
        assert_eq!(
            [
                Outcome::Success as u8,
                Outcome::Failure as u8,
                Outcome::Ignored as u8
            ],
            [0, 1, 2]
        );
        assert_eq!(
            [TokenError::Stale as u8, TokenError::AlreadyReported as u8],
            [1, 2]
        );
    }

    #[test]
    fn generation_wraps_after_the_documented_horizon() {
        if WIDE {
            return; // 2^29 transitions: too slow for a unit test
        }
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(1));
        let c = clock();
        let old = b.try_acquire(&c).unwrap().into_token();
        for _ in 0..CircuitBreaker::GENERATIONS - 2 {
            b.trip(&c);
        }
        b.reset(&c); // generation GENERATIONS - 1: the token is stale
        let _ = b.report(old, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        b.trip(&c);
        b.reset(&c); // wrapped to the token's generation + 1
        let _ = b.report(old, Outcome::Failure, &c);
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
