//! The discrete-event simulation: one flaky upstream, the same arrivals
//! sent twice — straight to it, and through Stockade's core state machines.
//!
//! Single-threaded and deterministic: an event queue ordered by time, ties
//! broken by the order the events were scheduled. A caller in flight is
//! not a thread but a few pending events; the state machines (limiter
//! reservations, bulkhead permits, breaker permits, backoff schedules,
//! deadlines) are the real ones, reading time from the clock the loop
//! moves.

use core::cmp::Reverse;
use core::time::Duration;
use std::collections::{BinaryHeap, VecDeque};
use std::thread;
use std::time::Instant;

use stockade::backoff::{Backoff, BackoffConfig, BackoffSchedule, Jitter};
use stockade::breaker::{BreakerConfig, BreakerPermit, BreakerState, CircuitBreaker};
use stockade::bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit};
use stockade::clock::{Clock, ManualClock, Timestamp};
use stockade::deadline::TimeoutConfig;
use stockade::limiter::{Mode, RateLimiter, RateLimiterConfig};

use crate::rng::Rng;

const SECOND: u64 = 1_000_000_000;
const MILLI: u64 = 1_000_000;

/// The upstream serves this many calls in any one-second window before it
/// degrades.
pub const UPSTREAM_QUOTA: u32 = 50;
/// The share of calls that are slow during the latency spike.
pub const SLOW_SHARE: f64 = 0.6;
/// Requests per second the clients send, outside the overload phase.
pub const NORMAL_RATE: f64 = 30.0;
/// Requests per second the clients send during the overload phase.
pub const OVERLOAD_RATE: f64 = 110.0;

/// The protection's settings (printed in the legend).
pub mod settings {
    use core::time::Duration;

    /// Rate limiter: at most this many calls in any one-second window...
    pub const LIMIT_PER_SECOND: u32 = 45;
    /// ...at most this many at once...
    pub const LIMIT_BURST: u32 = 5;
    /// ...and a caller waits at most this long for its slot.
    pub const LIMIT_MAX_WAIT: Duration = Duration::from_millis(250);
    /// Bookings that may wait at once.
    pub const LIMIT_QUEUE: u32 = 20;
    /// Bulkhead: callers inside the breaker at once.
    pub const BULKHEAD: u32 = 8;
    /// Breaker: consecutive failed requests that open it.
    pub const BREAKER_FAILURES: u32 = 5;
    /// Breaker: time open before probing.
    pub const BREAKER_RESET: Duration = Duration::from_secs(3);
    /// Breaker: length of a half-open round.
    pub const BREAKER_HALF_OPEN: Duration = Duration::from_secs(1);
    /// Breaker: probes at once while half-open.
    pub const BREAKER_PROBES: u32 = 2;
    /// Retry: attempts per request, the first included.
    pub const RETRY_ATTEMPTS: u32 = 3;
    /// Retry: first back-off delay (then doubled, "equal" jitter).
    pub const RETRY_DELAY: Duration = Duration::from_millis(50);
    /// Retry: no retry that would start later than this after the first attempt.
    pub const RETRY_BUDGET: Duration = Duration::from_millis(600);
    /// Timeout: per attempt.
    pub const TIMEOUT: Duration = Duration::from_millis(400);
}

/// What the upstream is going through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Fast and reliable.
    Healthy,
    /// Most calls fail fast (HTTP 503).
    Failing,
    /// Most calls take 1.5 to 3 s (a slow replica).
    Slow,
    /// Clients send far more than the upstream's quota.
    Overload,
    /// Healthy again.
    Recovery,
}

impl Phase {
    /// Where each phase starts, as a fraction of the run.
    const STARTS: [(f64, Phase); 5] = [
        (0.0, Phase::Healthy),
        (0.15, Phase::Failing),
        (0.35, Phase::Slow),
        (0.55, Phase::Overload),
        (0.75, Phase::Recovery),
    ];

    /// The phase at `t_nanos` into a run of `total_seconds`.
    pub fn at(t_nanos: u64, total_seconds: u32) -> Phase {
        let fraction = t_nanos as f64 / (f64::from(total_seconds) * SECOND as f64);
        let mut phase = Phase::Healthy;
        for (start, p) in Phase::STARTS {
            if fraction >= start {
                phase = p;
            }
        }
        phase
    }

    /// The phases with their start and end second (rounded), in order.
    pub fn spans(total_seconds: u32) -> Vec<(Phase, f64, f64)> {
        let total = f64::from(total_seconds);
        Phase::STARTS
            .iter()
            .enumerate()
            .map(|(i, &(start, phase))| {
                let end = Phase::STARTS.get(i + 1).map_or(1.0, |next| next.0);
                (phase, start * total, end * total)
            })
            .collect()
    }

    /// A short name for the tables.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Failing => "failing",
            Phase::Slow => "slow",
            Phase::Overload => "overload",
            Phase::Recovery => "recovery",
        }
    }

    fn arrival_rate(self) -> f64 {
        if self == Phase::Overload {
            OVERLOAD_RATE
        } else {
            NORMAL_RATE
        }
    }
}

/// The circuit breaker's state, as the demo shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Circuit {
    /// Calls pass.
    Closed,
    /// Calls are rejected.
    Open,
    /// A few probes pass.
    HalfOpen,
}

impl Circuit {
    fn of(state: BreakerState) -> Circuit {
        match state {
            BreakerState::Closed | BreakerState::Disabled => Circuit::Closed,
            BreakerState::Open | BreakerState::ForcedOpen => Circuit::Open,
            BreakerState::HalfOpen => Circuit::HalfOpen,
        }
    }

    /// The name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "OPEN",
            Circuit::HalfOpen => "half-open",
        }
    }
}

/// How one request ended. Every request ends exactly one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Served.
    Ok,
    /// Shed by the rate limiter: its queue was full or the wait too long.
    Shed,
    /// Rejected: the bulkhead was full.
    BulkheadFull,
    /// Rejected: the circuit breaker was open (never reached the upstream).
    BreakerOpen,
    /// The attempt's deadline passed before the upstream answered.
    TimedOut,
    /// The upstream answered with an error (after the retries, if any).
    Failed,
}

/// What happened to the requests that arrived in one second (and, for the
/// time-based columns, during that second).
#[derive(Clone, Debug, PartialEq)]
pub struct Second {
    /// Requests that arrived.
    pub offered: u32,
    /// ... served.
    pub ok: u32,
    /// ... shed by the rate limiter.
    pub shed: u32,
    /// ... rejected because the bulkhead was full.
    pub bulkhead_full: u32,
    /// ... rejected because the breaker was open.
    pub breaker_open: u32,
    /// ... timed out.
    pub timed_out: u32,
    /// ... failed by the upstream.
    pub failed: u32,
    /// Calls that reached the upstream, started this second (retries included).
    pub upstream_calls: u32,
    /// Of those, calls that found the upstream over its quota.
    pub over_quota: u32,
    /// Retries scheduled this second.
    pub retries: u32,
    /// Median latency seen by this second's callers, in milliseconds.
    pub p50_ms: u64,
    /// 99th-percentile latency seen by this second's callers, in milliseconds.
    pub p99_ms: u64,
    /// Most callers waiting at once during the second.
    pub peak_waiting: u32,
    /// The breaker states the second went through, ending with the state at
    /// its end (empty in the unprotected run).
    pub breaker: Vec<Circuit>,
}

impl Second {
    fn new() -> Second {
        Second {
            offered: 0,
            ok: 0,
            shed: 0,
            bulkhead_full: 0,
            breaker_open: 0,
            timed_out: 0,
            failed: 0,
            upstream_calls: 0,
            over_quota: 0,
            retries: 0,
            p50_ms: 0,
            p99_ms: 0,
            peak_waiting: 0,
            breaker: Vec::new(),
        }
    }

    /// The sum of every way a request can end: equals `offered` when every
    /// request is accounted for exactly once.
    pub fn ended(&self) -> u32 {
        self.ok + self.shed + self.bulkhead_full + self.breaker_open + self.timed_out + self.failed
    }

    fn count(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Ok => &mut self.ok,
            Outcome::Shed => &mut self.shed,
            Outcome::BulkheadFull => &mut self.bulkhead_full,
            Outcome::BreakerOpen => &mut self.breaker_open,
            Outcome::TimedOut => &mut self.timed_out,
            Outcome::Failed => &mut self.failed,
        };
        *slot += 1;
    }
}

/// One run's records.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// One record per second.
    pub seconds: Vec<Second>,
    /// Every breaker state change: seconds since the start, new state
    /// (starts with `(0.0, Closed)`; empty in the unprotected run).
    pub breaker_changes: Vec<(f64, Circuit)>,
}

/// What to simulate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// Seeds the arrivals, the upstream's behaviour and the retry jitter.
    pub seed: u64,
    /// Simulated seconds of traffic (the phases scale with it).
    pub seconds: u32,
    /// `None`: simulated time. `Some(speed)`: the wall clock, `speed`
    /// simulated seconds per real second.
    pub real_time: Option<f64>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            seed: 42,
            seconds: 40,
            real_time: None,
        }
    }
}

/// Both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What was simulated.
    pub config: Config,
    /// The arrivals sent straight to the upstream.
    pub unprotected: Run,
    /// The same arrivals through limiter → bulkhead → breaker → retry → timeout.
    pub protected: Run,
}

/// Runs the outage twice: unprotected and protected.
pub fn simulate(config: Config) -> Report {
    let arrivals = arrivals(config.seed, config.seconds);
    match config.real_time {
        None => Report {
            config,
            unprotected: run(&arrivals, config, false, &ManualClock::new()),
            protected: run(&arrivals, config, true, &ManualClock::new()),
        },
        Some(speed) => {
            // Both runs at once, each on its own thread and its own view of
            // the wall clock, started together.
            let start = Instant::now();
            let (unprotected, protected) = thread::scope(|scope| {
                let unprotected =
                    scope.spawn(|| run(&arrivals, config, false, &WallClock { start, speed }));
                let protected = run(&arrivals, config, true, &WallClock { start, speed });
                (
                    unprotected.join().expect("unprotected run panicked"),
                    protected,
                )
            });
            Report {
                config,
                unprotected,
                protected,
            }
        }
    }
}

/// The clients' requests: a Poisson process whose rate follows the phase.
fn arrivals(seed: u64, seconds: u32) -> Vec<u64> {
    let mut rng = Rng::new(seed ^ 0xA11_1A15);
    let end = u64::from(seconds) * SECOND;
    let mut t = 0u64;
    let mut out = Vec::new();
    loop {
        let rate = Phase::at(t, seconds).arrival_rate();
        let gap = -(1.0 - rng.unit()).ln() / rate;
        t += (gap * SECOND as f64) as u64;
        if t >= end {
            return out;
        }
        out.push(t);
    }
}

/// A clock the event loop can move to the next event.
trait SimClock: Clock {
    /// Returns once the clock reads at least `t`.
    fn wait_until(&self, t: Timestamp);
}

impl SimClock for ManualClock {
    fn wait_until(&self, t: Timestamp) {
        let now = self.now();
        if t > now {
            self.advance(t.saturating_duration_since(now));
        }
    }
}

/// The wall clock, `speed` times faster (or slower) than real time.
struct WallClock {
    start: Instant,
    speed: f64,
}

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos((self.start.elapsed().as_nanos() as f64 * self.speed) as u64)
    }
}

impl SimClock for WallClock {
    fn wait_until(&self, t: Timestamp) {
        let ahead = t.saturating_duration_since(self.now());
        if !ahead.is_zero() {
            thread::sleep(ahead.div_f64(self.speed));
        }
    }
}

/// The flaky upstream.
struct Upstream {
    rng: Rng,
    seconds: u32,
    /// Start times of the calls in the last second.
    window: VecDeque<u64>,
}

/// One upstream call's fate, decided when it starts.
struct Call {
    latency: Duration,
    ok: bool,
    over_quota: bool,
}

impl Upstream {
    fn call(&mut self, now: u64) -> Call {
        while self.window.front().is_some_and(|&t| t + SECOND <= now) {
            self.window.pop_front();
        }
        self.window.push_back(now);
        let load = self.window.len() as f64;
        let quota = f64::from(UPSTREAM_QUOTA);
        let (lo_ms, hi_ms, mut fail) = match Phase::at(now, self.seconds) {
            Phase::Healthy | Phase::Recovery | Phase::Overload => (20, 80, 0.01),
            Phase::Failing => (10, 40, 0.85),
            Phase::Slow if self.rng.unit() < SLOW_SHARE => (1500, 3000, 0.01),
            Phase::Slow => (20, 80, 0.01),
        };
        let mut latency_ms = self.rng.between(lo_ms, hi_ms) as f64;
        let over_quota = load > quota;
        if over_quota {
            // Past its quota the upstream thrashes: slower, and it sheds
            // with errors.
            let excess = (load - quota) / quota;
            fail = (fail + 0.25 + 0.5 * excess).min(0.95);
            latency_ms *= 1.0 + 2.0 * excess;
        }
        let ok = self.rng.unit() >= fail;
        Call {
            latency: Duration::from_micros((latency_ms * 1000.0) as u64),
            ok,
            over_quota,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Request `i` arrives.
    Arrive(usize),
    /// Request `i`'s limiter reservation is ready.
    LimiterReady(usize),
    /// Request `i`'s back-off delay is over: next attempt.
    RetryWake(usize),
    /// Request `i`'s attempt `n` ends (answered or past its deadline).
    AttemptEnd(usize, u32),
}

/// A protected caller's permits and retry state.
struct Caller<'m> {
    arrived: u64,
    bulkhead: Option<BulkheadPermit<'m>>,
    breaker: Option<BreakerPermit<'m>>,
    schedule: Option<BackoffSchedule>,
    first_attempt: u64,
    attempts: u32,
    /// The current attempt's result, decided when it started.
    pending: Option<AttemptResult>,
}

#[derive(Clone, Copy)]
enum AttemptResult {
    Answered { ok: bool },
    TimedOut,
}

/// The protection: the real core state machines.
struct Machines {
    limiter: RateLimiter,
    bulkhead: Bulkhead,
    breaker: CircuitBreaker,
    backoff: Backoff,
    timeout: TimeoutConfig,
}

impl Machines {
    fn new() -> Machines {
        use settings::*;
        let fail = |e: stockade::ConfigError| -> ! { panic!("demo configuration: {e}") };
        Machines {
            limiter: RateLimiter::new(
                RateLimiterConfig::DEFAULT
                    .with_requests_per_period(LIMIT_PER_SECOND)
                    .with_period(Duration::from_secs(1))
                    .with_mode(Mode::Strict)
                    .with_burst(LIMIT_BURST)
                    .with_max_queue_size(LIMIT_QUEUE)
                    .with_queue_timeout(LIMIT_MAX_WAIT),
            )
            .unwrap_or_else(|e| fail(e)),
            bulkhead: Bulkhead::new(
                BulkheadConfig::DEFAULT
                    .with_max_concurrent(BULKHEAD)
                    .with_max_queue(0),
            )
            .unwrap_or_else(|e| fail(e)),
            breaker: CircuitBreaker::new(
                BreakerConfig::DEFAULT
                    .with_failure_threshold(BREAKER_FAILURES)
                    .with_reset_timeout(BREAKER_RESET)
                    .with_half_open_timeout(BREAKER_HALF_OPEN)
                    .with_half_open_max_probes(BREAKER_PROBES),
            )
            .unwrap_or_else(|e| fail(e)),
            backoff: Backoff::new(
                BackoffConfig::DEFAULT
                    .with_max_attempts(RETRY_ATTEMPTS)
                    .with_initial_delay(RETRY_DELAY)
                    .with_backoff_factor(2.0)
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_elapsed(Some(RETRY_BUDGET))
                    .with_jitter(Jitter::Equal),
            )
            .unwrap_or_else(|e| fail(e)),
            timeout: TimeoutConfig::new(TIMEOUT).unwrap_or_else(|e| fail(e)),
        }
    }
}

/// The event loop of one run.
struct Sim<'a, 'm, C: SimClock> {
    clock: &'a C,
    protected: bool,
    seed: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    upstream: Upstream,
    machines: &'m Machines,
    callers: Vec<Caller<'m>>,
    latencies: Vec<Vec<u64>>,
    seconds: Vec<Second>,
    /// The second whose record is open for the time-based columns.
    current: usize,
    waiting: u32,
    breaker_changes: Vec<(f64, Circuit)>,
}

fn run<C: SimClock>(arrivals: &[u64], config: Config, protected: bool, clock: &C) -> Run {
    let machines = Machines::new();
    let total = config.seconds as usize;
    let mut sim = Sim {
        clock,
        protected,
        seed: config.seed,
        queue: BinaryHeap::new(),
        seq: 0,
        upstream: Upstream {
            rng: Rng::new(config.seed ^ 0x0005_7AEA_3000),
            seconds: config.seconds,
            window: VecDeque::new(),
        },
        machines: &machines,
        callers: Vec::with_capacity(arrivals.len()),
        latencies: vec![Vec::new(); total],
        seconds: (0..total).map(|_| Second::new()).collect(),
        current: 0,
        waiting: 0,
        breaker_changes: Vec::new(),
    };
    if protected {
        sim.breaker_changes.push((0.0, Circuit::Closed));
        sim.seconds[0].breaker.push(Circuit::Closed);
    }
    for (i, &t) in arrivals.iter().enumerate() {
        sim.callers.push(Caller {
            arrived: t,
            bulkhead: None,
            breaker: None,
            schedule: None,
            first_attempt: 0,
            attempts: 0,
            pending: None,
        });
        sim.schedule(t, Event::Arrive(i));
    }
    while let Some(Reverse((t, _, event))) = sim.queue.pop() {
        clock.wait_until(Timestamp::from_nanos(t));
        let now = clock.now().as_nanos();
        sim.roll_to(now);
        sim.handle(now, event);
        sim.note_breaker(now);
    }
    sim.roll_to(u64::MAX);
    sim.finish_records();
    Run {
        seconds: sim.seconds,
        breaker_changes: sim.breaker_changes,
    }
}

impl<'m, C: SimClock> Sim<'_, 'm, C> {
    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, event)));
    }

    fn second_of(&self, t: u64) -> usize {
        ((t / SECOND) as usize).min(self.seconds.len() - 1)
    }

    /// Opens the records of the seconds up to `now`: callers still waiting
    /// count towards each new second's peak, and each inherits the breaker
    /// state the previous one ended in.
    fn roll_to(&mut self, now: u64) {
        let target = self.second_of(now);
        while self.current < target {
            let end_state = self.seconds[self.current].breaker.last().copied();
            self.current += 1;
            let record = &mut self.seconds[self.current];
            record.peak_waiting = record.peak_waiting.max(self.waiting);
            record.breaker.extend(end_state);
        }
    }

    fn note_breaker(&mut self, now: u64) {
        if !self.protected {
            return;
        }
        let state = Circuit::of(self.machines.breaker.state());
        let record = &mut self.seconds[self.current];
        if record.breaker.last() != Some(&state) {
            record.breaker.push(state);
            self.breaker_changes
                .push((now as f64 / SECOND as f64, state));
        }
    }

    fn handle(&mut self, now: u64, event: Event) {
        match event {
            Event::Arrive(i) => {
                // The second it was due, as its outcome is counted
                // (`finish`): on the wall clock `now` can be a little later,
                // past the end of that second, when the thread is late.
                let second = self.second_of(self.callers[i].arrived);
                self.seconds[second].offered += 1;
                self.waiting += 1;
                let record = &mut self.seconds[self.current];
                record.peak_waiting = record.peak_waiting.max(self.waiting);
                if self.protected {
                    self.enter_limiter(now, i);
                } else {
                    self.start_attempt(now, i);
                }
            }
            Event::LimiterReady(i) => self.enter_bulkhead(now, i),
            Event::RetryWake(i) => self.start_attempt(now, i),
            Event::AttemptEnd(i, _) => self.attempt_ended(now, i),
        }
    }

    fn enter_limiter(&mut self, now: u64, i: usize) {
        let machines = self.machines;
        match machines
            .limiter
            .reserve(1, settings::LIMIT_MAX_WAIT, self.clock)
        {
            Ok(reservation) if reservation.is_immediate() => self.enter_bulkhead(now, i),
            // The slot is booked: the caller waits until it is due, then
            // goes on without asking the limiter again.
            Ok(reservation) => {
                self.schedule(reservation.ready_at().as_nanos(), Event::LimiterReady(i))
            }
            Err(_) => self.finish(now, i, Outcome::Shed),
        }
    }

    fn enter_bulkhead(&mut self, now: u64, i: usize) {
        let machines = self.machines;
        match machines.bulkhead.try_acquire() {
            Ok(permit) => {
                self.callers[i].bulkhead = Some(permit);
                self.enter_breaker(now, i);
            }
            Err(_) => self.finish(now, i, Outcome::BulkheadFull),
        }
    }

    fn enter_breaker(&mut self, now: u64, i: usize) {
        let machines = self.machines;
        match machines.breaker.try_acquire(self.clock) {
            Ok(permit) => {
                let caller = &mut self.callers[i];
                caller.breaker = Some(permit);
                // Each request's jitter is seeded by the run's seed and the
                // request: the same in every run.
                caller.schedule = Some(
                    machines
                        .backoff
                        .schedule(self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                );
                caller.first_attempt = now;
                self.start_attempt(now, i);
            }
            Err(_) => self.finish(now, i, Outcome::BreakerOpen),
        }
    }

    fn start_attempt(&mut self, now: u64, i: usize) {
        let call = self.upstream.call(now);
        let second = self.second_of(now);
        let record = &mut self.seconds[second];
        record.upstream_calls += 1;
        record.over_quota += u32::from(call.over_quota);
        let caller = &mut self.callers[i];
        caller.attempts += 1;
        let attempt = caller.attempts;
        let (after, result) = if self.protected {
            // The Timeout pattern: the attempt gets a deadline; past it the
            // caller stops waiting (the upstream goes on working).
            let deadline = self.machines.timeout.deadline(self.clock);
            let remaining = deadline.remaining(self.clock);
            if call.latency >= remaining {
                (remaining, AttemptResult::TimedOut)
            } else {
                (call.latency, AttemptResult::Answered { ok: call.ok })
            }
        } else {
            (call.latency, AttemptResult::Answered { ok: call.ok })
        };
        caller.pending = Some(result);
        let at = now + after.as_nanos() as u64;
        self.schedule(at, Event::AttemptEnd(i, attempt));
    }

    fn attempt_ended(&mut self, now: u64, i: usize) {
        let result = self.callers[i]
            .pending
            .take()
            .expect("an attempt is pending");
        if !self.protected {
            let ok = matches!(result, AttemptResult::Answered { ok: true });
            let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
            self.finish(now, i, outcome);
            return;
        }
        let clock = self.clock;
        let outcome = match result {
            AttemptResult::Answered { ok: true } => {
                if let Some(permit) = self.callers[i].breaker.take() {
                    permit.success(clock);
                }
                Outcome::Ok
            }
            AttemptResult::TimedOut | AttemptResult::Answered { ok: false } => {
                let caller = &mut self.callers[i];
                let elapsed = Duration::from_nanos(now - caller.first_attempt);
                if let Some(delay) = caller.schedule.as_mut().and_then(|s| s.next_delay(elapsed)) {
                    let second = self.second_of(now);
                    self.seconds[second].retries += 1;
                    self.schedule(now + delay.as_nanos() as u64, Event::RetryWake(i));
                    return;
                }
                if matches!(result, AttemptResult::TimedOut) {
                    Outcome::TimedOut
                } else {
                    Outcome::Failed
                }
            }
        };
        if outcome != Outcome::Ok
            && let Some(permit) = self.callers[i].breaker.take()
        {
            permit.failure(clock);
        }
        self.finish(now, i, outcome);
    }

    /// The request is over: count it in the second it arrived, and let go
    /// of its permits.
    fn finish(&mut self, now: u64, i: usize, outcome: Outcome) {
        let caller = &mut self.callers[i];
        caller.breaker = None;
        caller.bulkhead = None;
        let arrived = caller.arrived;
        let second = self.second_of(arrived);
        self.seconds[second].count(outcome);
        self.latencies[second].push(now - arrived);
        self.waiting -= 1;
    }

    fn finish_records(&mut self) {
        for (record, latencies) in self.seconds.iter_mut().zip(&mut self.latencies) {
            latencies.sort_unstable();
            record.p50_ms = percentile(latencies, 50) / MILLI;
            record.p99_ms = percentile(latencies, 99) / MILLI;
        }
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;

    /// A clock whose waits end late, as a busy machine's wall clock does.
    struct LateClock {
        inner: ManualClock,
        late: Duration,
    }

    impl Clock for LateClock {
        fn now(&self) -> Timestamp {
            self.inner.now()
        }
    }

    impl SimClock for LateClock {
        fn wait_until(&self, t: Timestamp) {
            self.inner.wait_until(t.saturating_add(self.late));
        }
    }

    #[test]
    fn late_wake_ups_still_count_each_request_in_the_second_it_arrived() {
        let config = Config::default();
        let arrivals = arrivals(config.seed, config.seconds);
        for protected in [false, true] {
            let clock = LateClock {
                inner: ManualClock::new(),
                late: Duration::from_millis(30),
            };
            let run = run(&arrivals, config, protected, &clock);
            let offered: u32 = run.seconds.iter().map(|s| s.offered).sum();
            assert_eq!(offered as usize, arrivals.len());
            for (t, s) in run.seconds.iter().enumerate() {
                assert_eq!(s.ended(), s.offered, "second {t}, protected: {protected}");
            }
        }
    }
}
