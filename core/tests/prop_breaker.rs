//! Random operations on a `CircuitBreaker` against a tiny sequential
//! reference model of its documented semantics; decisions and state are
//! compared after every operation.
#![cfg(not(stockade_loom))]

extern crate alloc;

use alloc::collections::VecDeque;
use core::time::Duration;

use proptest::prelude::*;
use stockade::breaker::{
    BreakerConfig, BreakerPermit, BreakerState, BreakerToken, CircuitBreaker, FailureRateConfig,
    Outcome, TokenError, Transition, WindowMetrics,
};

/// A rejection as the model sees it: the state and `retry_after()`.
type Rejection = (BreakerState, Option<Duration>);
use stockade::clock::{Clock, ManualClock, Timestamp};

// ---------------------------------------------------------------------------
// The reference model: the documented rules, written plainly.

/// Time as the breaker documents it: `TICK`-sized ticks, wrapping after
/// `TIME_WRAP`; "behind" when the wrapped difference is half a wrap or more.
struct Time {
    tick: u64,
    wrap: u64,
}

impl Time {
    fn new() -> Time {
        let tick = CircuitBreaker::TICK.as_nanos() as u64;
        let wrap = (CircuitBreaker::TIME_WRAP.as_nanos() / CircuitBreaker::TICK.as_nanos()) as u64;
        Time { tick, wrap }
    }
    fn ticks(&self, now: u64) -> u64 {
        (now / self.tick) % self.wrap
    }
    /// A timeout in ticks: rounded up, plus one tick when ticks are
    /// coarser than a nanosecond (stamps are rounded down).
    fn timeout(&self, d: Duration) -> u64 {
        let ns = d.as_nanos() as u64;
        ns.div_ceil(self.tick) + u64::from(self.tick > 1)
    }
    fn elapsed(&self, now: u64, since: u64) -> Option<u64> {
        let d = (self.ticks(now) + self.wrap - since) % self.wrap;
        if d >= self.wrap / 2 { None } else { Some(d) }
    }
    fn remaining(&self, ticks: u64, now: u64) -> Duration {
        Duration::from_nanos(ticks * self.tick - now % self.tick)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ModelToken {
    generation: u64,
    start: Option<u64>,
}

struct Model {
    cfg: BreakerConfig,
    time: Time,
    state: BreakerState,
    generation: u64,
    consecutive: u32,
    in_flight: u32,
    successes: u32,
    since: u64,
    window: VecDeque<bool>,
    failures: u32,
    slow_calls: u32,
    rejections: u32,
    transitions: u32,
    state_changes: u32,
    stale: u32,
    /// The transition the last operation performed.
    last: Option<Transition>,
}

impl Model {
    fn new(cfg: BreakerConfig) -> Model {
        Model {
            cfg,
            time: Time::new(),
            state: BreakerState::Closed,
            generation: 0,
            consecutive: 0,
            in_flight: 0,
            successes: 0,
            since: 0,
            window: VecDeque::new(),
            failures: 0,
            slow_calls: 0,
            rejections: 0,
            transitions: 0,
            state_changes: 0,
            stale: 0,
            last: None,
        }
    }

    fn enter(&mut self, state: BreakerState, now: u64) {
        let from = self.state;
        self.state = state;
        self.generation = (self.generation + 1) % u64::from(CircuitBreaker::GENERATIONS);
        self.consecutive = 0;
        self.in_flight = 0;
        self.successes = 0;
        self.window.clear();
        self.since = self.time.ticks(now);
        self.transitions += 1;
        self.state_changes += u32::from(from != state);
        self.last = Some(Transition {
            from,
            to: state,
            generation: self.generation as u32,
        });
    }

    /// Elapsed ticks in this generation; a clock behind the stamp restamps.
    fn elapsed(&mut self, now: u64) -> u64 {
        match self.time.elapsed(now, self.since) {
            Some(e) => e,
            None => {
                self.since = self.time.ticks(now);
                0
            }
        }
    }

    fn token(&self, now: u64) -> ModelToken {
        let start = match (self.cfg.slow_call_threshold, self.state) {
            (Some(_), s) if s != BreakerState::Disabled => Some(now),
            _ => None,
        };
        ModelToken {
            generation: self.generation,
            start,
        }
    }

    fn acquire(&mut self, now: u64) -> Result<ModelToken, Rejection> {
        self.last = None;
        let reset = self.time.timeout(self.cfg.reset_timeout);
        let round = self.time.timeout(self.cfg.half_open_timeout);
        let result = match self.state {
            BreakerState::Closed | BreakerState::Disabled => Ok(()),
            BreakerState::ForcedOpen => Err((BreakerState::ForcedOpen, None)),
            BreakerState::Open => {
                let e = self.elapsed(now);
                if e >= reset {
                    self.enter(BreakerState::HalfOpen, now);
                    self.in_flight = 1;
                    Ok(())
                } else {
                    Err((
                        BreakerState::Open,
                        Some(self.time.remaining(reset - e, now)),
                    ))
                }
            }
            BreakerState::HalfOpen => {
                let e = self.elapsed(now);
                if e >= round {
                    if self.successes > 0 {
                        self.enter(BreakerState::Closed, now);
                    } else {
                        self.enter(BreakerState::HalfOpen, now);
                        self.in_flight = 1;
                    }
                    Ok(())
                } else if self.in_flight < self.cfg.half_open_max_probes {
                    self.in_flight += 1;
                    Ok(())
                } else {
                    Err((
                        BreakerState::HalfOpen,
                        Some(self.time.remaining(round - e, now)),
                    ))
                }
            }
        };
        match result {
            Ok(()) => Ok(self.token(now)),
            Err(r) => {
                self.rejections += 1;
                Err(r)
            }
        }
    }

    /// The documented result of `report`; the transition is in `last`.
    fn report(&mut self, token: ModelToken, outcome: Outcome, now: u64) -> Result<(), TokenError> {
        self.last = None;
        if token.generation != self.generation {
            if outcome != Outcome::Ignored {
                self.stale += 1;
            }
            return Err(TokenError::Stale);
        }
        let closed = match self.state {
            BreakerState::Closed => true,
            BreakerState::HalfOpen => false,
            _ => return Ok(()),
        };
        if !closed && self.in_flight == 0 {
            // Reported (or released) already.
            if outcome != Outcome::Ignored {
                self.stale += 1;
            }
            return Err(TokenError::AlreadyReported);
        }
        let slow = match (outcome, self.cfg.slow_call_threshold, token.start) {
            (Outcome::Success, Some(limit), Some(start)) => {
                Duration::from_nanos(now.saturating_sub(start)) > limit
            }
            _ => false,
        };
        let failed = match outcome {
            Outcome::Ignored => {
                if !closed {
                    self.in_flight -= 1;
                }
                return Ok(());
            }
            Outcome::Failure => true,
            Outcome::Success => slow,
        };
        if failed {
            self.failures += 1;
            self.slow_calls += u32::from(slow);
        }
        if closed {
            if failed {
                self.consecutive += 1;
                if self.consecutive >= self.cfg.failure_threshold {
                    self.enter(BreakerState::Open, now);
                    return Ok(());
                }
            } else {
                self.consecutive = 0;
            }
            if let Some(fr) = self.cfg.failure_rate {
                self.window.push_back(failed);
                if self.window.len() > fr.window_size as usize {
                    self.window.pop_front();
                }
                let calls = self.window.len() as u64;
                let fails = self.window.iter().filter(|f| **f).count() as u64;
                if calls >= u64::from(fr.minimum_calls)
                    && fails * 100 >= u64::from(fr.threshold_percent) * calls
                {
                    self.enter(BreakerState::Open, now);
                }
            }
        } else if failed {
            self.enter(BreakerState::Open, now);
        } else {
            self.in_flight = self.in_flight.saturating_sub(1);
            self.successes += 1;
            let early =
                matches!(self.cfg.half_open_successes_to_close, Some(n) if self.successes >= n);
            let round = self.time.timeout(self.cfg.half_open_timeout);
            if early || self.elapsed(now) >= round {
                self.enter(BreakerState::Closed, now);
            }
        }
        Ok(())
    }

    fn last_transition(&self, now: u64) -> u64 {
        match self.time.elapsed(now, self.since) {
            Some(e) => now.saturating_sub(e * self.time.tick + now % self.time.tick),
            None => now,
        }
    }
}

// ---------------------------------------------------------------------------
// Random operations.

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    AcquireToken,
    Verdict(usize, Outcome),
    /// Drop a permit without a verdict.
    Drop(usize),
    /// Turn a permit into a token (which may then be lost forever).
    IntoToken(usize),
    ReportToken(usize, Outcome),
    Advance(u64),
    /// Wait exactly the last rejection's `retry_after` (`true`: 1 ns less).
    WaitAsAdvised(bool),
    Back(u64),
    Jump(u64),
    Trip,
    Reset,
    ForceOpen,
    Disable,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignored),
    ]
}

const SEC: u64 = 1_000_000_000;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Acquire),
        2 => Just(Op::AcquireToken),
        8 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Verdict(i, o)),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::IntoToken),
        2 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::ReportToken(i, o)),
        6 => prop_oneof![0..2 * SEC, (0..8u64).prop_map(|s| s * SEC), 0..8 * SEC].prop_map(Op::Advance),
        4 => any::<bool>().prop_map(Op::WaitAsAdvised),
        1 => (0..20 * SEC).prop_map(Op::Back),
        1 => prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            (0..4u64).prop_map(|k| (CircuitBreaker::TIME_WRAP.as_nanos() as u64).saturating_mul(k)),
        ]
        .prop_map(Op::Jump),
        1 => Just(Op::Trip),
        1 => Just(Op::Reset),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
    ]
}

fn timeout() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1..6u64).prop_map(Duration::from_secs),
        (1..6 * SEC).prop_map(Duration::from_nanos),
    ]
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        1..5u32,
        timeout(),
        timeout(),
        1..4u32,
        proptest::option::of(1..4u32),
        proptest::option::weighted(
            0.4,
            (1..=100u32, prop_oneof![1..10u32, 1..=128u32])
                .prop_flat_map(|(p, w)| (1..=w).prop_map(move |m| FailureRateConfig::new(p, w, m))),
        ),
        proptest::option::weighted(0.3, timeout()),
    )
        .prop_map(
            |(threshold, reset, round, probes, to_close, rate, slow)| BreakerConfig {
                failure_threshold: threshold,
                reset_timeout: reset,
                half_open_timeout: round,
                half_open_max_probes: probes,
                half_open_successes_to_close: to_close,
                failure_rate: rate,
                slow_call_threshold: slow,
                ..BreakerConfig::DEFAULT
            },
        )
}

fn check_state(b: &CircuitBreaker, m: &Model, clock: &ManualClock) -> Result<(), TestCaseError> {
    let now = clock.now().as_nanos();
    let got = b.metrics(clock);
    prop_assert_eq!(b.state(), m.state);
    prop_assert_eq!(got.state, m.state);
    prop_assert_eq!(u64::from(got.generation), m.generation);
    let closed = m.state == BreakerState::Closed;
    let half = m.state == BreakerState::HalfOpen;
    prop_assert_eq!(
        got.consecutive_failures,
        if closed { m.consecutive } else { 0 }
    );
    prop_assert_eq!(got.probes_in_flight, if half { m.in_flight } else { 0 });
    prop_assert_eq!(got.probe_successes, if half { m.successes } else { 0 });
    let window = m.cfg.failure_rate.map(|_| WindowMetrics {
        calls: m.window.len() as u32,
        failures: m.window.iter().filter(|f| **f).count() as u32,
    });
    prop_assert_eq!(got.window, window);
    prop_assert_eq!(
        (
            got.failures,
            got.slow_calls,
            got.rejections,
            got.transitions,
            got.state_changes,
            got.stale_verdicts
        ),
        (
            m.failures,
            m.slow_calls,
            m.rejections,
            m.transitions,
            m.state_changes,
            m.stale
        )
    );
    prop_assert_eq!(got.last_transition.as_nanos(), m.last_transition(now));
    Ok(())
}

fn run(cfg: BreakerConfig, start: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::starting_at(Timestamp::from_nanos(start));
    let b = CircuitBreaker::new(cfg).expect("generated configs are valid");
    let mut m = Model::new(cfg);
    m.since = m.time.ticks(0);
    // The breaker starts closed "at time zero" of its tick clock.
    let mut permits: Vec<(BreakerPermit<'_>, ModelToken)> = Vec::new();
    let mut tokens: Vec<(BreakerToken, ModelToken)> = Vec::new();
    let mut advised = Duration::ZERO;
    for op in ops {
        let now = clock.now().as_nanos();
        match op {
            Op::Acquire | Op::AcquireToken => {
                let expected = m.acquire(now);
                let got = if matches!(op, Op::Acquire) {
                    b.try_acquire(&clock)
                        .map(|p| (p.token(), p.transition(), Some(p)))
                } else {
                    b.try_acquire(&clock).map(|p| {
                        let transition = p.transition();
                        (p.into_token(), transition, None)
                    })
                };
                match (got, expected) {
                    (Ok((token, transition, permit)), Ok(mt)) => {
                        prop_assert_eq!(transition, m.last, "the admission's transition");
                        prop_assert_eq!(u64::from(token.generation()), mt.generation);
                        prop_assert_eq!(token.started_at().map(|t| t.as_nanos()), mt.start);
                        match permit {
                            Some(p) => permits.push((p, mt)),
                            None => tokens.push((token, mt)),
                        }
                    }
                    (Err(r), Err(mr)) => {
                        prop_assert_eq!((r.state(), r.retry_after()), mr);
                        if let Some(after) = r.retry_after() {
                            advised = after;
                        }
                    }
                    (got, expected) => prop_assert!(
                        false,
                        "decision differs: breaker {:?}, model {:?}",
                        got.map(|(t, _, _)| t),
                        expected
                    ),
                }
            }
            Op::Verdict(i, outcome) if !permits.is_empty() => {
                let (p, mt) = permits.swap_remove(i % permits.len());
                let _ = m.report(mt, outcome, now);
                let transition = match outcome {
                    Outcome::Success => p.success(&clock),
                    Outcome::Failure => p.failure(&clock),
                    Outcome::Ignored => {
                        p.ignore();
                        None
                    }
                };
                prop_assert_eq!(transition, m.last, "the verdict's transition");
            }
            Op::Drop(i) if !permits.is_empty() => {
                let (p, mt) = permits.swap_remove(i % permits.len());
                let _ = m.report(mt, Outcome::Ignored, now);
                drop(p);
            }
            Op::IntoToken(i) if !permits.is_empty() => {
                let (p, mt) = permits.swap_remove(i % permits.len());
                tokens.push((p.into_token(), mt));
            }
            Op::ReportToken(i, outcome) if !tokens.is_empty() => {
                // Tokens stay in the list: a second report of one must
                // match the model too (stale, already reported, or taken
                // as another call's, as documented).
                let (t, mt) = tokens[i % tokens.len()];
                if i % 3 == 0 {
                    let _ = tokens.swap_remove(i % tokens.len());
                }
                let expected = m.report(mt, outcome, now).map(|()| m.last);
                prop_assert_eq!(b.report(t, outcome, &clock), expected);
            }
            Op::Advance(d) => clock.advance(Duration::from_nanos(d)),
            Op::WaitAsAdvised(early) => {
                let nanos = u64::from(early && !advised.is_zero());
                clock.advance(advised - Duration::from_nanos(nanos));
            }
            Op::Back(d) => clock.set(Timestamp::from_nanos(now.saturating_sub(d))),
            Op::Jump(t) => clock.set(Timestamp::from_nanos(t)),
            Op::Trip => {
                let got = b.trip(&clock);
                m.enter(BreakerState::Open, now);
                prop_assert_eq!(Some(got), m.last);
            }
            Op::Reset => {
                let got = b.reset(&clock);
                m.enter(BreakerState::Closed, now);
                prop_assert_eq!(Some(got), m.last);
            }
            Op::ForceOpen => {
                let got = b.force_open(&clock);
                m.enter(BreakerState::ForcedOpen, now);
                prop_assert_eq!(Some(got), m.last);
            }
            Op::Disable => {
                let got = b.disable(&clock);
                m.enter(BreakerState::Disabled, now);
                prop_assert_eq!(Some(got), m.last);
            }
            _ => {}
        }
        check_state(&b, &m, &clock)?;
    }
    // Remaining permits drop here: each must behave as "ignored".
    while let Some((p, mt)) = permits.pop() {
        let now = clock.now().as_nanos();
        let _ = m.report(mt, Outcome::Ignored, now);
        drop(p);
        check_state(&b, &m, &clock)?;
    }
    Ok(())
}

proptest! {
    // 512 cases unless PROPTEST_CASES says otherwise.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn breaker_matches_the_reference_model(
        cfg in config(),
        start in prop_oneof![Just(0u64), 0..1_000 * SEC, any::<u64>()],
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run(cfg, start, ops)?;
    }
}

/// The model itself follows the documented cycle, so a model bug that
/// mirrors a breaker bug has to get past this too.
#[test]
fn the_model_follows_the_documented_cycle() {
    let slack = 2 * CircuitBreaker::TICK.as_nanos() as u64;
    let mut m = Model::new(BreakerConfig::DEFAULT.with_failure_threshold(2));
    for _ in 0..2 {
        let t = m.acquire(0).unwrap();
        m.report(t, Outcome::Failure, 0).unwrap();
    }
    assert_eq!(m.state, BreakerState::Open);
    let r = m.acquire(0).unwrap_err();
    assert!(r.1.unwrap() >= Duration::from_secs(60));
    assert!(m.acquire(60 * SEC - 1).is_err());
    let probe = m.acquire(60 * SEC + slack).unwrap();
    assert_eq!(m.state, BreakerState::HalfOpen);
    assert!(m.acquire(60 * SEC + slack).is_err());
    m.report(probe, Outcome::Success, 61 * SEC).unwrap();
    assert_eq!(m.state, BreakerState::HalfOpen);
    let t = m.acquire(90 * SEC + 2 * slack).unwrap();
    assert_eq!(m.state, BreakerState::Closed);
    assert_eq!(
        m.report(probe, Outcome::Failure, 91 * SEC),
        Err(TokenError::Stale)
    );
    assert_eq!((m.state, m.stale), (BreakerState::Closed, 1));
    m.report(t, Outcome::Success, 91 * SEC).unwrap();
    assert_eq!(m.transitions, 3);
}
