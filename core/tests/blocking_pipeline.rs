//! Composition: a timeout stage returns on time inside a pipeline and the
//! policies outside count it; static and run-time pipelines give the same
//! outcomes; a panic is a failure in every pattern's metrics; unbounded
//! pool options do not overflow.
#![cfg(all(feature = "std", not(stockade_loom)))]

mod common;
use common::within;

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use stockade::blocking::VirtualClock;
use stockade::prelude::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn retry_fast() -> RetryConfig {
    RetryConfig::DEFAULT
        .with_initial_delay(MS(10))
        .with_max_delay(MS(20))
}

/// The spec's pipeline limiter → breaker → retry → timeout(200 ms) around a
/// 500 ms call: three attempts, each abandoned at its deadline, so the
/// caller has its answer after about 3 × 200 ms + 30 ms of back-off (it
/// used to wait 3 × 500 ms). Real time, because the work really blocks;
/// bounded by a watchdog.
#[test]
fn a_timeout_stage_returns_on_time_and_the_breaker_counts_it() {
    let limiter =
        Arc::new(RateLimiter::unregistered("p-limiter", RateLimiterConfig::DEFAULT).unwrap());
    let breaker =
        Arc::new(CircuitBreaker::unregistered("p-breaker", BreakerConfig::DEFAULT).unwrap());
    let retry = Arc::new(Retry::unregistered("p-retry", retry_fast()).unwrap());
    let timeout =
        Arc::new(Timeout::unregistered("p-timeout", TimeoutConfig::new(MS(200)).unwrap()).unwrap());
    let attempts = Arc::new(AtomicU32::new(0));
    let (l, b, r, t, a) = (
        Arc::clone(&limiter),
        Arc::clone(&breaker),
        Arc::clone(&retry),
        Arc::clone(&timeout),
        Arc::clone(&attempts),
    );
    let (out, elapsed) = within(Duration::from_secs(20), move || {
        let pipeline = Pipeline::new().then(&l).then(&b).then(&r).then_timeout(&t);
        let start = Instant::now();
        let out = pipeline.execute(move || {
            a.fetch_add(1, Ordering::SeqCst);
            thread::sleep(MS(500)); // the slow operation itself
            Ok::<_, String>(1)
        });
        (out.map_err(|e| e.to_string()), start.elapsed())
    });
    assert!(out.is_err());
    let message = out.unwrap_err();
    assert!(
        message.starts_with("gave up after 3 attempts: timed out after 200ms"),
        "{message}"
    );
    // 3 × 200 ms + 30 ms of back-off, plus generous slack for a loaded
    // machine; the cooperative timeout took 1.53 s.
    assert!(elapsed >= MS(600), "{elapsed:?}");
    assert!(elapsed < MS(1400), "{elapsed:?}");
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
    assert_eq!(timeout.metrics().timeouts, 3);
    // The breaker outside the retry saw one failed request.
    let m = breaker.metrics();
    assert_eq!((m.calls, m.failures, m.successes), (1, 1, 0));
    assert_eq!(retry.metrics().failures, 1);
    assert_eq!(limiter.metrics().failures, 1);

    // A breaker inside the retry counts every timed-out attempt.
    let breaker =
        Arc::new(CircuitBreaker::unregistered("p-inner", BreakerConfig::DEFAULT).unwrap());
    let (b, r, t) = (
        Arc::clone(&breaker),
        Arc::clone(&retry),
        Arc::clone(&timeout),
    );
    within(Duration::from_secs(20), move || {
        let pipeline = Pipeline::new().then(&r).then(&b).then_timeout(&t);
        let out = pipeline.execute(|| {
            thread::sleep(MS(500));
            Ok::<_, String>(1)
        });
        assert!(matches!(
            out,
            Err(Error::RetriesExhausted { attempts: 3, .. })
        ));
    });
    assert_eq!(breaker.metrics().failures, 3);
}

/// The same on virtual time: the timeout's caller returns when the clock
/// passes the deadline, whatever the work does.
#[test]
fn a_timeout_stage_on_virtual_time() {
    let clock = Arc::new(VirtualClock::new());
    let breaker =
        CircuitBreaker::with_timer("v-breaker", BreakerConfig::DEFAULT, Arc::clone(&clock))
            .unwrap();
    let timeout = Timeout::with_timer(
        "v-timeout",
        TimeoutConfig::new(Duration::from_secs(2)).unwrap(),
        Arc::clone(&clock),
    )
    .unwrap();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let blocked = Arc::new(std::sync::Mutex::new(blocked));
    thread::scope(|s| {
        let pipeline = Pipeline::new().then(&breaker).then_timeout(&timeout);
        let caller = s.spawn(move || {
            pipeline.execute(move || {
                let _ = blocked.lock().unwrap().recv();
                Ok::<_, String>(())
            })
        });
        common::wait_for(|| clock.waiting() >= 1 && timeout.busy_workers() == 1);
        clock.advance(Duration::from_secs(2));
        let out = caller.join().unwrap();
        assert!(matches!(out, Err(Error::TimedOut { after }) if after == Duration::from_secs(2)));
    });
    release.send(()).unwrap();
    assert_eq!(breaker.metrics().failures, 1);
}

type V = Arc<VirtualClock>;
type Patterns = (
    Arc<RateLimiter<V>>,
    Arc<CircuitBreaker<V>>,
    Arc<Retry<V>>,
    Arc<Timeout<V>>,
);

/// Outcome of a pipeline run, comparable across error types.
fn shape<E>(out: &Result<u32, Error<E>>) -> String {
    fn kind<E>(e: &Error<E>) -> &'static str {
        match e {
            Error::Inner(_) => "inner",
            Error::BreakerOpen { .. } => "open",
            Error::TimedOut { .. } => "timed out",
            _ => "other",
        }
    }
    match out {
        Ok(v) => format!("ok {v}"),
        Err(Error::RetriesExhausted { attempts, last }) => {
            format!("exhausted {attempts}: {}", kind(last))
        }
        Err(e) => kind(e).into(),
    }
}

#[test]
fn static_and_dynamic_pipelines_agree() {
    fn patterns(tag: &str) -> Patterns {
        let clock = Arc::new(VirtualClock::auto_advance());
        (
            Arc::new(
                RateLimiter::with_timer(tag, RateLimiterConfig::DEFAULT, Arc::clone(&clock))
                    .unwrap(),
            ),
            Arc::new(
                CircuitBreaker::with_timer(
                    tag,
                    BreakerConfig::DEFAULT.with_failure_threshold(2),
                    Arc::clone(&clock),
                )
                .unwrap(),
            ),
            Arc::new(
                Retry::with_timer(
                    tag,
                    RetryConfig::DEFAULT.retry_on("503"),
                    Arc::clone(&clock),
                )
                .unwrap(),
            ),
            Arc::new(Timeout::with_timer(tag, TimeoutConfig::DEFAULT, clock).unwrap()),
        )
    }
    // Outcomes of a scripted call sequence: success, retried failure,
    // non-retryable failure, then the breaker (2 failures) is open.
    let script: [fn(u32) -> Result<u32, String>; 4] = [
        |_| Ok(7),
        |_| Err("HTTP 503".into()),
        |_| Err("HTTP 400".into()),
        |_| Ok(8),
    ];
    let (l, b, r, t) = patterns("static");
    let stat = Pipeline::new().then(&l).then(&b).then(&r).then_timeout(&t);
    let static_out: Vec<String> = script
        .iter()
        .map(|f| {
            let f = *f;
            shape(&stat.execute(move || f(0)))
        })
        .collect();
    let static_metrics = (b.metrics(), r.metrics(), t.metrics());

    let (l, b, r, t) = patterns("dynamic");
    let stages: Vec<Arc<dyn DynPolicy>> = vec![l, b.clone(), r.clone(), t.clone()];
    let dynamic = DynPipeline::new(stages);
    let dynamic_out: Vec<String> = script
        .iter()
        .map(|f| {
            let f = *f;
            shape(&dynamic.execute(move || f(0)))
        })
        .collect();
    assert_eq!(static_out, dynamic_out);
    assert_eq!(static_out, ["ok 7", "exhausted 3: inner", "inner", "open"]);
    assert_eq!(static_metrics, (b.metrics(), r.metrics(), t.metrics()));
}

#[test]
fn a_panic_is_a_failure_in_every_pattern() {
    fn panics() -> Result<u32, String> {
        panic!("bug")
    }
    let check = |name: &str, m: stockade::blocking::Metrics| {
        assert_eq!(
            (m.calls, m.failures, m.successes),
            (1, 1, 0),
            "{name}: {m:?}"
        );
    };
    let b = CircuitBreaker::unregistered("panic", BreakerConfig::DEFAULT).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| b.execute(panics))).is_err());
    check("breaker", b.metrics());
    let h = Bulkhead::unregistered("panic", BulkheadConfig::DEFAULT).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| h.execute(panics))).is_err());
    check("bulkhead", h.metrics());
    let l = RateLimiter::unregistered("panic", RateLimiterConfig::DEFAULT).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| l.execute(panics))).is_err());
    check("limiter", l.metrics());
    let r = Retry::unregistered("panic", RetryConfig::DEFAULT).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| r.execute(panics))).is_err());
    check("retry", r.metrics());
    let t = Timeout::unregistered("panic", TimeoutConfig::DEFAULT).unwrap();
    assert!(catch_unwind(AssertUnwindSafe(|| t.execute_cooperative(|_| panics()))).is_err());
    check("cooperative timeout", t.metrics());
    let t = Timeout::unregistered("panic", TimeoutConfig::DEFAULT).unwrap();
    assert!(matches!(t.execute(panics), Err(Error::Panicked { message }) if &*message == "bug"));
    check("timeout", t.metrics());
    let rr = RequestResponsePattern::unregistered(
        "panic",
        RequestResponseConfig::DEFAULT,
        |_: &Request<u8>| -> Result<Response<u8>, String> { panic!("bug") },
    )
    .unwrap();
    assert_eq!(rr.execute(Request::new(1)).status, 500);
    assert_eq!(
        rr.execute(Request::new(1).with_timeout(Duration::from_secs(5)))
            .status,
        500
    );
    let m = rr.metrics();
    assert_eq!((m.calls, m.failures), (2, 2));
}

/// `usize::MAX` is the natural "unbounded": the pool's admission sum must
/// not overflow (debug builds panicked, release builds refused work).
#[test]
fn unbounded_pool_options_do_not_overflow() {
    for config in [
        RequestResponseConfig::DEFAULT.with_max_queue(usize::MAX),
        RequestResponseConfig::DEFAULT.with_max_workers(usize::MAX),
        RequestResponseConfig::DEFAULT
            .with_max_workers(usize::MAX)
            .with_max_queue(usize::MAX),
    ] {
        assert_eq!(config.validate(), Ok(()));
        let rr = RequestResponsePattern::unregistered("unbounded", config, |r: &Request<u8>| {
            Ok::<_, String>(Response::ok(r.data))
        })
        .unwrap();
        let response = rr.execute(Request::new(9).with_timeout(Duration::from_secs(5)));
        assert_eq!(
            (response.status, response.data),
            (200, Some(9)),
            "{config:?}"
        );
    }
    let t = Timeout::unregistered("unbounded", TimeoutConfig::DEFAULT)
        .unwrap()
        .with_pool(usize::MAX, Duration::from_secs(1))
        .unwrap();
    assert_eq!(t.execute(|| Ok::<_, String>(1)).unwrap(), 1);
}

#[test]
fn nested_and_flat_dynamic_pipelines_agree() {
    type Stages = (
        Arc<RateLimiter<Arc<VirtualClock>>>,
        Arc<CircuitBreaker<Arc<VirtualClock>>>,
        Arc<Retry<Arc<VirtualClock>>>,
        Arc<Timeout<Arc<VirtualClock>>>,
    );
    fn patterns(tag: &str) -> Stages {
        let clock = Arc::new(VirtualClock::auto_advance());
        (
            Arc::new(
                RateLimiter::with_timer(
                    tag,
                    // 4 per hour, never waiting: the fifth call is refused.
                    RateLimiterConfig::DEFAULT
                        .with_requests_per_period(4)
                        .with_period(Duration::from_secs(3600))
                        .with_queue_timeout(Duration::ZERO),
                    Arc::clone(&clock),
                )
                .unwrap(),
            ),
            Arc::new(
                CircuitBreaker::with_timer(
                    tag,
                    BreakerConfig::DEFAULT.with_failure_threshold(2),
                    Arc::clone(&clock),
                )
                .unwrap(),
            ),
            Arc::new(
                Retry::with_timer(
                    tag,
                    RetryConfig::DEFAULT.retry_on("503"),
                    Arc::clone(&clock),
                )
                .unwrap(),
            ),
            Arc::new(Timeout::with_timer(tag, TimeoutConfig::DEFAULT, clock).unwrap()),
        )
    }
    fn dyn_of(stages: Vec<Arc<dyn DynPolicy>>) -> Arc<dyn DynPolicy> {
        Arc::new(DynPipeline::new(stages))
    }
    // Success, retried failure, non-retryable failure, the breaker (2
    // failures) refuses, then the limiter's 4 permits are spent. The
    // breaker's and the limiter's refusals must reach the caller as
    // themselves through the nesting, not as the call's own error.
    let script: [fn() -> Result<u32, String>; 5] = [
        || Ok(7),
        || Err("HTTP 503".into()),
        || Err("HTTP 400".into()),
        || Ok(8),
        || Ok(9),
    ];
    let run = |pipeline: &DynPipeline, stages: &Stages| {
        let out: Vec<String> = script
            .iter()
            .map(|f| {
                let f = *f;
                let r = pipeline.execute(f).map_err(|e| match e {
                    Error::RateLimited { .. } => "limited".to_string(),
                    e => shape(&Err::<u32, _>(e)),
                });
                match r {
                    Ok(v) => format!("ok {v}"),
                    Err(e) => e,
                }
            })
            .collect();
        let (l, b, r, t) = stages;
        (out, l.metrics(), b.metrics(), r.metrics(), t.metrics())
    };

    let s = patterns("flat");
    let flat = DynPipeline::new(vec![s.0.clone(), s.1.clone(), s.2.clone(), s.3.clone()]);
    let expected = run(&flat, &s);
    assert_eq!(
        expected.0,
        ["ok 7", "exhausted 3: inner", "inner", "open", "limited"]
    );

    // [l, [b, r], t]
    let s = patterns("nested-middle");
    let nested = DynPipeline::new(vec![
        s.0.clone(),
        dyn_of(vec![s.1.clone(), s.2.clone()]),
        s.3.clone(),
    ]);
    assert_eq!(run(&nested, &s), expected);

    // [[l], [b, [r, [t]]], []]
    let s = patterns("nested-deep");
    let deep = DynPipeline::new(vec![
        dyn_of(vec![s.0.clone()]),
        dyn_of(vec![
            s.1.clone(),
            dyn_of(vec![s.2.clone(), dyn_of(vec![s.3.clone()])]),
        ]),
        dyn_of(Vec::new()),
    ]);
    assert_eq!(run(&deep, &s), expected);
}
