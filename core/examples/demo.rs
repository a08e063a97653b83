//! The main job: Stockade's patterns composed in front of a flaky service.
//!
//! A simulated service goes through five phases — healthy, a failure burst,
//! a latency spike, overload, recovery — while clients call it through one
//! pipeline: rate limiter → bulkhead → circuit breaker → retry → timeout.
//! Everything runs on a [`VirtualClock`]: each request is a real thread
//! that really blocks (in the limiter's queue, the bulkhead's queue, retry
//! back-off, the service's latency), but on simulated time, so a minute of
//! traffic takes a moment. The table shows, second by second, what each
//! pattern did.
//!
//! Run: `cargo run --release -p stockade --example demo`

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::thread;

use stockade::blocking::{
    Bulkhead, CircuitBreaker, Error, EventKind, Pipeline, RateLimiter, Retry, RetryConfig, Timeout,
    Timer, VirtualClock, current_deadline,
};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, Timestamp};
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;

const SECONDS: u64 = 50;
const STEP: Duration = Duration::from_millis(10);

/// What the simulated service is going through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Healthy,
    FailureBurst,
    LatencySpike,
    Overload,
    Recovery,
}

impl Phase {
    fn at(second: u64) -> Phase {
        match second {
            0..10 => Phase::Healthy,
            10..20 => Phase::FailureBurst,
            20..28 => Phase::LatencySpike,
            28..38 => Phase::Overload,
            _ => Phase::Recovery,
        }
    }

    /// Requests the clients send per second.
    fn offered_per_second(self) -> u64 {
        if self == Phase::Overload { 80 } else { 20 }
    }

    /// How long the service takes, and how often it fails (per mille).
    fn behaviour(self) -> (Duration, u64) {
        match self {
            Phase::Healthy | Phase::Recovery => (Duration::from_millis(40), 10),
            Phase::FailureBurst => (Duration::from_millis(40), 900),
            Phase::LatencySpike => (Duration::from_millis(1500), 0),
            Phase::Overload => (Duration::from_millis(300), 10),
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Phase::Healthy => "healthy",
            Phase::FailureBurst => "failure burst",
            Phase::LatencySpike => "latency spike",
            Phase::Overload => "overload",
            Phase::Recovery => "recovery",
        })
    }
}

/// The service's error: an HTTP-ish status line.
#[derive(Debug)]
struct ServiceError(&'static str);

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// The flaky service: sleeps its latency on the simulated clock (honouring
/// the caller's deadline, as cooperative code does) and fails at its
/// phase's rate, deterministically per call number.
struct Service {
    clock: Arc<VirtualClock>,
    calls: AtomicU64,
}

impl Service {
    fn call(&self) -> Result<u32, ServiceError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let second = self.clock.now().as_nanos() / 1_000_000_000;
        let (latency, fail_per_mille) = Phase::at(second).behaviour();
        let latency = match current_deadline() {
            Some(deadline) => latency.min(deadline.remaining(&*self.clock)),
            None => latency,
        };
        self.clock.sleep(latency);
        // A deterministic hash of the call number (SplitMix64's finaliser)
        // decides failures. (Runs can still differ by a few requests where
        // threads race for a bulkhead slot handed over between steps.)
        let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let roll = (z ^ (z >> 31)) % 1000;
        if roll < fail_per_mille {
            Err(ServiceError("503 service unavailable"))
        } else {
            Ok(200)
        }
    }
}

/// Outcome counters for the requests that arrived in one second.
#[derive(Default)]
struct Second {
    offered: AtomicU32,
    ok: AtomicU32,
    rate_limited: AtomicU32,
    bulkhead_full: AtomicU32,
    breaker_open: AtomicU32,
    timed_out: AtomicU32,
    failed: AtomicU32,
    retries: AtomicU32,
    /// The breaker's state at the end of the second.
    breaker_state: AtomicU32,
}

fn bump(counter: &AtomicU32) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn state_name(state: u32) -> &'static str {
    match state {
        0 => "closed",
        1 => "OPEN",
        2 => "half-open",
        _ => "?",
    }
}

fn state_code(state: BreakerState) -> u32 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open | BreakerState::ForcedOpen => 1,
        BreakerState::HalfOpen => 2,
        BreakerState::Disabled => 3,
    }
}

fn main() -> Result<(), Box<dyn core::error::Error>> {
    let clock = Arc::new(VirtualClock::new());
    let service = Service {
        clock: Arc::clone(&clock),
        calls: AtomicU64::new(0),
    };

    // The protection, outermost first.
    let limiter = RateLimiter::with_timer(
        "service",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(40)
            .with_period(Duration::from_secs(1))
            .with_max_queue_size(20)
            .with_queue_timeout(Duration::from_millis(500)),
        Arc::clone(&clock),
    )?;
    let bulkhead = Bulkhead::with_timer(
        "service",
        BulkheadConfig::DEFAULT
            .with_max_concurrent(8)
            .with_max_queue(8)
            .with_queue_timeout(Duration::from_millis(250)),
        Arc::clone(&clock),
    )?;
    let breaker = CircuitBreaker::with_timer(
        "service",
        BreakerConfig::DEFAULT
            .with_failure_threshold(5)
            .with_reset_timeout(Duration::from_secs(2))
            .with_half_open_timeout(Duration::from_secs(2))
            .with_half_open_max_probes(2),
        Arc::clone(&clock),
    )?;
    let retry = Retry::with_timer(
        "service",
        RetryConfig::default()
            .with_max_attempts(2)
            .with_initial_delay(Duration::from_millis(50))
            .with_backoff_factor(2.0)
            .retry_on_regex(r"5\d\d")?,
        Arc::clone(&clock),
    )?;
    let timeout = Timeout::with_timer(
        "service",
        TimeoutConfig::new(Duration::from_millis(800))?,
        Arc::clone(&clock),
    )?;
    let pipeline = Pipeline::new()
        .then(&limiter)
        .then(&bulkhead)
        .then(&breaker)
        .then(&retry)
        .then(timeout.cooperative());

    let seconds: Arc<Vec<Second>> = Arc::new((0..SECONDS).map(|_| Second::default()).collect());
    let second_of = |t: Timestamp| (t.as_nanos() / 1_000_000_000) as usize;
    let per_second = Arc::clone(&seconds);
    retry.subscribe(move |event| {
        if let EventKind::Retry { .. } = event.kind
            && let Some(s) = per_second.get(second_of(event.at))
        {
            bump(&s.retries);
        }
    });
    run(&clock, &pipeline, &service, &breaker, &seconds);
    print_table(&seconds);
    let m = breaker.metrics();
    println!();
    println!(
        "breaker: {} calls, {} failures, {} rejections; bulkhead: {} rejections, {} queue timeouts; limiter: {} rejections",
        m.calls,
        m.failures,
        m.rejections,
        bulkhead.metrics().rejections,
        bulkhead.metrics().timeouts,
        limiter.metrics().rejections
    );
    Ok(())
}

/// Drives simulated time: each 10 ms step starts the requests that arrive
/// in it, waits until every request thread is blocked on the clock or
/// done, then moves the clock on.
fn run<P: stockade::blocking::Policy + Sync>(
    clock: &Arc<VirtualClock>,
    pipeline: &P,
    service: &Service,
    breaker: &CircuitBreaker<Arc<VirtualClock>>,
    seconds: &[Second],
) {
    let alive = AtomicU64::new(0);
    let steps_per_second = (Duration::from_secs(1).as_nanos() / STEP.as_nanos()) as u64;
    thread::scope(|scope| {
        let mut arrivals_due = 0.0f64;
        for step in 0..SECONDS * steps_per_second {
            let second = step / steps_per_second;
            let phase = Phase::at(second);
            let stats = &seconds[second as usize];
            arrivals_due += phase.offered_per_second() as f64 / steps_per_second as f64;
            while arrivals_due >= 1.0 {
                arrivals_due -= 1.0;
                bump(&stats.offered);
                alive.fetch_add(1, Ordering::SeqCst);
                let alive = &alive;
                scope.spawn(move || {
                    let outcome = pipeline.run(|| service.call().map_err(Error::Inner));
                    match outcome {
                        Ok(_) => bump(&stats.ok),
                        Err(Error::RateLimited { .. }) => bump(&stats.rate_limited),
                        Err(Error::BulkheadFull | Error::QueueTimeout { .. }) => {
                            bump(&stats.bulkhead_full)
                        }
                        Err(Error::BreakerOpen { .. }) => bump(&stats.breaker_open),
                        Err(Error::TimedOut { .. }) => bump(&stats.timed_out),
                        Err(Error::RetriesExhausted { last, .. }) => match *last {
                            Error::TimedOut { .. } => bump(&stats.timed_out),
                            Error::BreakerOpen { .. } => bump(&stats.breaker_open),
                            _ => bump(&stats.failed),
                        },
                        Err(_) => bump(&stats.failed),
                    }
                    alive.fetch_sub(1, Ordering::SeqCst);
                });
            }
            wait_until_quiet(clock, &alive);
            stats
                .breaker_state
                .store(state_code(breaker.state()), Ordering::Relaxed);
            clock.advance(STEP);
        }
        // Let the stragglers finish.
        while alive.load(Ordering::SeqCst) > 0 {
            wait_until_quiet(clock, &alive);
            clock.advance(STEP);
        }
    });
}

/// Waits until every live request thread is parked on the clock.
fn wait_until_quiet(clock: &VirtualClock, alive: &AtomicU64) {
    loop {
        let live = alive.load(Ordering::SeqCst);
        if live == 0 || clock.waiting() as u64 >= live {
            return;
        }
        thread::yield_now();
    }
}

fn print_table(seconds: &[Second]) {
    println!(
        "{:>4}  {:<13} {:>7} {:>5} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7}  breaker",
        "t(s)",
        "phase",
        "offered",
        "ok",
        "429 limit",
        "503 bulk",
        "503 open",
        "504 time",
        "500 err",
        "retries"
    );
    for (second, s) in seconds.iter().enumerate() {
        let get = |c: &AtomicU32| c.load(Ordering::Relaxed);
        println!(
            "{:>4}  {:<13} {:>7} {:>5} {:>9} {:>9} {:>8} {:>8} {:>7} {:>7}  {}",
            second,
            Phase::at(second as u64),
            get(&s.offered),
            get(&s.ok),
            get(&s.rate_limited),
            get(&s.bulkhead_full),
            get(&s.breaker_open),
            get(&s.timed_out),
            get(&s.failed),
            get(&s.retries),
            state_name(get(&s.breaker_state)),
        );
    }
}
