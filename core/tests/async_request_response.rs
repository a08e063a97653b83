//! The request-response pattern's async form (feature `async`, tokio with
//! paused time): an async handler run by `execute_async` under the
//! protection policy's async form, with the statuses, counters, events
//! and correlation ids of `execute`, and the handler's future dropped at
//! the request's deadline.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, assert_send, poll_once};

use core::convert::Infallible;
use core::pin::pin;
use core::sync::atomic::Ordering::SeqCst;
use core::sync::atomic::{AtomicU32, AtomicUsize};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{
    AsyncHandler, AsyncPolicy, CircuitBreaker, Error, Event, EventKind, Pipeline, RateLimiter,
    Request, RequestResponseConfig, RequestResponsePattern, Response, Retry, RetryConfig, Timeout,
    TokioClock, Unprotected,
};
use stockade::breaker::BreakerConfig;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;

/// An async pattern on tokio's (paused) time.
type Pattern<P = Unprotected> =
    RequestResponsePattern<u32, String, P, TokioClock, AsyncHandler<u32, String>>;

const SEC: Duration = Duration::from_secs(1);

/// A pattern named `name` around `handler`, on tokio's time.
fn pattern<H, Fut>(name: &str, config: RequestResponseConfig, handler: H) -> Pattern
where
    H: Fn(Arc<Request<u32>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<String>, String>> + Send + 'static,
{
    RequestResponsePattern::with_timer_async(name, config, TokioClock::new(), handler).unwrap()
}

/// Answers `"got <n>"` at once.
async fn echo(request: Arc<Request<u32>>) -> Result<Response<String>, String> {
    Ok(Response::ok(format!("got {}", request.data)))
}

/// The pattern's events, collected.
fn collect<P>(p: &Pattern<P>) -> Arc<Mutex<Vec<Event>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    p.subscribe(move |e| sink.lock().unwrap().push(e.clone()));
    events
}

fn kinds(events: &Mutex<Vec<Event>>) -> Vec<EventKind> {
    events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.kind.clone())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_handler_answers_with_correlation_ids_and_headers() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let p = {
        let seen = Arc::clone(&seen);
        pattern(
            "rr-async-ok",
            RequestResponseConfig::DEFAULT,
            move |request: Arc<Request<u32>>| {
                let seen = Arc::clone(&seen);
                async move {
                    seen.lock().unwrap().push((
                        request.correlation_id().map(String::from),
                        request.metadata.headers.get("tenant").cloned(),
                    ));
                    tokio::time::sleep(SEC).await;
                    Ok(Response::with_status(201, format!("got {}", request.data)))
                }
            },
        )
    };
    let first = p
        .execute_async(Request::new(5).with_header("tenant", "acme"))
        .await;
    assert_eq!(
        (first.status, first.data.as_deref(), first.error.as_deref()),
        (201, Some("got 5"), None)
    );
    assert_eq!(first.correlation_id, "rr-async-ok-1");
    let second = p
        .execute_async(Request::new(6).with_correlation_id("trace-6"))
        .await;
    assert_eq!(second.correlation_id, "trace-6");
    let third = p.execute_async(Request::new(7)).await;
    assert_eq!(third.correlation_id, "rr-async-ok-2");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Some("rr-async-ok-1".into()), Some("acme".into())),
            (Some("trace-6".into()), None),
            (Some("rr-async-ok-2".into()), None),
        ]
    );
    let m = p.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.in_flight, m.queue_depth),
        (3, 3, 0, 0, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn handler_errors_panics_and_5xx_answers_are_failures() {
    let p = pattern(
        "rr-async-fail",
        RequestResponseConfig::DEFAULT,
        |request: Arc<Request<u32>>| async move {
            tokio::task::yield_now().await;
            match request.data {
                1 => Err(String::from("database unreachable")),
                2 => panic!("handler bug {}", request.data),
                3 => Ok(Response::error(503, "upstream busy")),
                _ => Ok(Response::error(404, "no such user")),
            }
        },
    );
    let events = collect(&p);
    let error = p.execute_async(Request::new(1)).await;
    assert_eq!(
        (error.status, error.error.as_deref(), error.data),
        (500, Some("database unreachable"), None)
    );
    let panicked = p.execute_async(Request::new(2)).await;
    assert_eq!(
        (panicked.status, panicked.error.as_deref()),
        (500, Some("handler panicked: handler bug 2"))
    );
    assert_eq!(panicked.correlation_id, "rr-async-fail-2");
    let busy = p.execute_async(Request::new(3)).await;
    assert_eq!(
        (busy.status, busy.error.as_deref()),
        (503, Some("upstream busy"))
    );
    let missing = p.execute_async(Request::new(4)).await;
    assert_eq!(missing.status, 404);
    let m = p.metrics();
    assert_eq!(
        (m.calls, m.successes, m.failures, m.rejections),
        (4, 1, 3, 0)
    );
    assert!(kinds(&events).is_empty(), "{:?}", kinds(&events));
}

#[tokio::test(start_paused = true)]
async fn a_panic_while_making_the_future_is_a_500() {
    let p = pattern(
        "rr-async-make-panic",
        RequestResponseConfig::DEFAULT,
        |request: Arc<Request<u32>>| -> core::future::Ready<Result<Response<String>, String>> {
            panic!("no future for {}", request.data)
        },
    );
    let r = p.execute_async(Request::new(9)).await;
    assert_eq!(
        (r.status, r.error.as_deref()),
        (500, Some("handler panicked: no future for 9"))
    );
    assert_eq!(p.metrics().failures, 1);
}

#[tokio::test(start_paused = true)]
async fn the_handler_future_is_dropped_at_the_deadline_with_a_504() {
    let (guard, dropped) = DropFlag::new();
    let guard = Arc::new(Mutex::new(Some(guard)));
    let dropped_at = Arc::new(Mutex::new(None));
    let p = {
        let dropped_at = Arc::clone(&dropped_at);
        pattern(
            "rr-async-timeout",
            RequestResponseConfig::DEFAULT,
            move |request: Arc<Request<u32>>| {
                let guard = guard.lock().unwrap().take();
                let dropped_at = Arc::clone(&dropped_at);
                async move {
                    struct Stamp(Arc<Mutex<Option<tokio::time::Instant>>>);
                    impl Drop for Stamp {
                        fn drop(&mut self) {
                            *self.0.lock().unwrap() = Some(tokio::time::Instant::now());
                        }
                    }
                    let _stamp = Stamp(dropped_at);
                    let _guard = guard;
                    tokio::time::sleep(Duration::from_secs(u64::from(request.data))).await;
                    Ok(Response::ok(String::from("late")))
                }
            },
        )
    };
    let events = collect(&p);
    let start = tokio::time::Instant::now();
    let r = p
        .execute_async(Request::new(60).with_timeout(2 * SEC))
        .await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.data),
        (504, Some("timed out after 2s"), None)
    );
    assert_eq!(start.elapsed(), 2 * SEC);
    assert!(
        dropped.load(SeqCst),
        "the handler's future outlived its deadline"
    );
    assert_eq!(
        dropped_at.lock().unwrap().expect("dropped") - start,
        2 * SEC
    );
    assert_eq!(kinds(&events), [EventKind::TimedOut { after: 2 * SEC }]);
    let m = p.metrics();
    assert_eq!((m.calls, m.timeouts, m.in_flight), (1, 1, 0));
    // An answer within the deadline passes.
    let prompt = p.execute_async(Request::new(1).with_timeout(2 * SEC)).await;
    assert_eq!(prompt.status, 200);
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_and_its_deadline_cover_every_attempt() {
    let attempts = Arc::new(AtomicU32::new(0));
    let p = {
        let attempts = Arc::clone(&attempts);
        pattern(
            "rr-async-default-timeout",
            RequestResponseConfig::DEFAULT.with_default_timeout(Duration::from_millis(2500)),
            move |_: Arc<Request<u32>>| {
                attempts.fetch_add(1, SeqCst);
                async {
                    tokio::time::sleep(SEC).await;
                    Err::<Response<String>, _>(String::from("HTTP 503"))
                }
            },
        )
    };
    // Attempts at 0 s and 1 s (no back-off) fail after 1 s each; the third
    // starts at 2 s and is dropped at 2.5 s: the deadline is the request's.
    let retry = Retry::with_timer(
        "rr-async-default-timeout",
        RetryConfig::DEFAULT
            .with_max_attempts(5)
            .with_initial_delay(Duration::ZERO),
        TokioClock::new(),
    )
    .unwrap();
    let p = p.protected_by(&retry);
    let start = tokio::time::Instant::now();
    let r = p.execute_async(Request::new(1)).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_millis(2500));
    assert_eq!(attempts.load(SeqCst), 3);
    // Past the deadline, the retry's next attempt is refused without
    // calling the handler.
    assert_eq!(p.metrics().timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_rate_limiters_refusal_is_a_429_with_retry_after() {
    let limiter = RateLimiter::with_timer(
        "rr-async-limited",
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(1)
            .with_burst(1)
            .with_queue_timeout(Duration::from_millis(500)),
        TokioClock::new(),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let p = {
        let calls = Arc::clone(&calls);
        pattern(
            "rr-async-limited",
            RequestResponseConfig::DEFAULT,
            move |request: Arc<Request<u32>>| {
                calls.fetch_add(1, SeqCst);
                echo(request)
            },
        )
    }
    .protected_by(&limiter);
    let events = collect(&p);
    assert_eq!(p.execute_async(Request::new(1)).await.status, 200);
    let refused = p.execute_async(Request::new(2)).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    let retry_after = refused.retry_after.expect("a 429 says when to come back");
    assert!(
        retry_after > Duration::ZERO && retry_after <= SEC,
        "{retry_after:?}"
    );
    assert_eq!(
        calls.load(SeqCst),
        1,
        "a refused request reached the handler"
    );
    assert_eq!(
        kinds(&events),
        [EventKind::Rejected {
            retry_after: Some(retry_after)
        }]
    );
    let m = p.metrics();
    assert_eq!((m.calls, m.successes, m.rejections), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_answers_503_without_the_handler() {
    let breaker = CircuitBreaker::with_timer(
        "rr-async-breaker",
        BreakerConfig::DEFAULT
            .with_failure_threshold(2)
            .with_reset_timeout(Duration::from_secs(60)),
        TokioClock::new(),
    )
    .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let p = {
        let calls = Arc::clone(&calls);
        pattern(
            "rr-async-breaker",
            RequestResponseConfig::DEFAULT,
            move |_: Arc<Request<u32>>| {
                calls.fetch_add(1, SeqCst);
                async { Err::<Response<String>, _>(String::from("database unreachable")) }
            },
        )
    }
    .protected_by(&breaker);
    assert_eq!(p.execute_async(Request::new(1)).await.status, 500);
    assert_eq!(p.execute_async(Request::new(2)).await.status, 500);
    let refused = p.execute_async(Request::new(3)).await;
    assert_eq!(refused.status, 503);
    // The reset timeout, up to two of the breaker's ticks late (1 ns each
    // with the 64-bit state layout, about 1 ms with the 32-bit one).
    let slack = 2 * stockade::breaker::CircuitBreaker::TICK;
    let retry_after = refused.retry_after.expect("an open breaker says when");
    assert!(
        retry_after >= Duration::from_secs(60) && retry_after <= Duration::from_secs(60) + slack,
        "{retry_after:?}"
    );
    assert_eq!(calls.load(SeqCst), 2);
    assert_eq!(refused.correlation_id, "rr-async-breaker-3");
    // Forced open: no time is meaningful.
    breaker.force_open().unwrap();
    let forced = p.execute_async(Request::new(4)).await;
    assert_eq!((forced.status, forced.retry_after), (503, None));
    let m = p.metrics();
    assert_eq!((m.failures, m.rejections), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_request_counts_nothing() {
    let breaker = CircuitBreaker::with_timer(
        "rr-async-dropped",
        BreakerConfig::DEFAULT,
        TokioClock::new(),
    )
    .unwrap();
    let (guard, dropped) = DropFlag::new();
    let guard = Arc::new(Mutex::new(Some(guard)));
    let p = pattern(
        "rr-async-dropped",
        RequestResponseConfig::DEFAULT,
        move |_: Arc<Request<u32>>| {
            let guard = guard.lock().unwrap().take();
            async move {
                let _guard = guard;
                core::future::pending::<()>().await;
                Ok(Response::ok(String::new()))
            }
        },
    )
    .protected_by(&breaker);
    let events = collect(&p);
    {
        let mut running = pin!(p.execute_async(Request::new(1).with_timeout(SEC)));
        assert!(poll_once(running.as_mut()).is_pending());
        assert_eq!(p.metrics().in_flight, 1);
        assert!(!dropped.load(SeqCst));
    }
    assert!(dropped.load(SeqCst), "the handler's future was not dropped");
    let m = p.metrics();
    assert_eq!((m.calls, m.in_flight, m.timeouts), (0, 0, 0), "{m:?}");
    assert!(kinds(&events).is_empty(), "{:?}", kinds(&events));
    // The breaker gives back its permit: no success, no failure (its own
    // `calls` counts the dropped call as an ignored outcome).
    let b = breaker.metrics();
    assert_eq!((b.successes, b.failures, b.in_flight), (0, 0, 0), "{b:?}");
    // The deadline of the dropped request passes: nothing happens.
    tokio::time::sleep(2 * SEC).await;
    assert_eq!(p.metrics().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn an_async_pipeline_with_a_timeout_stage_protects_each_attempt() {
    let timeout = Timeout::with_timer(
        "rr-async-pipeline",
        TimeoutConfig::new(SEC).unwrap(),
        TokioClock::new(),
    )
    .unwrap();
    let retry = Retry::with_timer(
        "rr-async-pipeline",
        RetryConfig::DEFAULT
            .with_max_attempts(2)
            .with_initial_delay(Duration::ZERO),
        TokioClock::new(),
    )
    .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let p = {
        let attempts = Arc::clone(&attempts);
        pattern(
            "rr-async-pipeline",
            RequestResponseConfig::DEFAULT,
            move |request: Arc<Request<u32>>| {
                let n = attempts.fetch_add(1, SeqCst);
                async move {
                    if n == 0 {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    }
                    echo(request).await
                }
            },
        )
    }
    .protected_by(Pipeline::new().then(&retry).then_async(&timeout));
    let start = tokio::time::Instant::now();
    let future = assert_send(p.execute_async(Request::new(3)));
    let r = future.await;
    assert_eq!((r.status, r.data.as_deref()), (200, Some("got 3")));
    assert_eq!(start.elapsed(), SEC);
    assert_eq!(attempts.load(SeqCst), 2);
    assert_eq!(timeout.metrics().timeouts, 1);
    // Both attempts time out: the retry gives up with the last status.
    let slow = pattern(
        "rr-async-pipeline-slow",
        RequestResponseConfig::DEFAULT,
        |_: Arc<Request<u32>>| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(Response::ok(String::new()))
        },
    )
    .protected_by(Pipeline::new().then(&retry).then_async(&timeout));
    let r = slow.execute_async(Request::new(1)).await;
    assert_eq!(r.status, 504);
    assert_eq!(
        r.error.as_deref(),
        Some("gave up after 2 attempts: timed out after 1s")
    );
}

/// A policy that always refuses with one error (as the blocking tests'
/// `Fixed`), to check each status of the mapping.
struct Refuse(MakeError);

/// Makes the error a [`Refuse`] refuses with.
type MakeError = fn() -> Error<Infallible>;

impl AsyncPolicy for Refuse {
    fn run_async<R, E, F, Fut>(&self, _call: F) -> impl Future<Output = Result<R, Error<E>>>
    where
        E: core::fmt::Display,
        F: Fn() -> Fut + Clone,
        Fut: Future<Output = Result<R, Error<E>>>,
    {
        let error = (self.0)().map_inner(|never| match never {});
        async move { Err(error) }
    }
}

#[tokio::test(start_paused = true)]
async fn protection_errors_map_to_the_blocking_forms_statuses() {
    let cases: [(MakeError, u16); 5] = [
        (|| Error::BulkheadFull, 503),
        (|| Error::QueueTimeout { waited: SEC }, 503),
        (|| Error::Disposed, 503),
        (|| Error::TimedOut { after: SEC }, 504),
        (
            || {
                Error::InvalidConfig(stockade::ConfigError::zero(
                    stockade::ConfigOption::MaxWorkers,
                    stockade::ConfigValue::Count(0),
                ))
            },
            500,
        ),
    ];
    for (make, status) in cases {
        let p = pattern("rr-async-map", RequestResponseConfig::DEFAULT, echo)
            .protected_by(Refuse(make));
        let r = p.execute_async(Request::new(1)).await;
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.error.as_deref(), Some(make().to_string().as_str()));
        assert_eq!(r.status, make().http_status());
    }
}

#[tokio::test(start_paused = true)]
async fn a_disposed_pattern_answers_503() {
    let p = pattern("rr-async-dispose", RequestResponseConfig::DEFAULT, echo);
    p.dispose();
    let r = p.execute_async(Request::new(1)).await;
    assert_eq!(
        (r.status, r.error.as_deref()),
        (503, Some("the pattern was disposed"))
    );
    assert_eq!(r.correlation_id, "rr-async-dispose-1");
}

#[tokio::test(start_paused = true)]
async fn async_patterns_have_a_registry_of_their_own() {
    let name = "rr-async-registry";
    let made = RequestResponsePattern::new_async(name, echo).unwrap();
    assert!(matches!(
        RequestResponsePattern::new_async(name, echo),
        Err(Error::NameTaken { .. })
    ));
    type Registered = RequestResponsePattern<
        u32,
        String,
        Unprotected,
        stockade::clock::MonotonicClock,
        AsyncHandler<u32, String>,
    >;
    let found = Registered::get_async(name).expect("registered");
    assert!(Arc::ptr_eq(&made, &found));
    // The blocking registry of the same payload types is another one.
    assert!(RequestResponsePattern::<u32, String>::get(name).is_none());
    let blocking = RequestResponsePattern::new(name, |r: &Request<u32>| {
        Ok::<_, String>(Response::ok(r.data.to_string()))
    })
    .unwrap();
    assert_eq!(blocking.execute(Request::new(4)).data.as_deref(), Some("4"));
    let shared =
        RequestResponsePattern::get_or_create_async(name, RequestResponseConfig::DEFAULT, echo)
            .unwrap();
    assert!(Arc::ptr_eq(&made, &shared));
    assert_eq!(
        made.execute_async(Request::new(4)).await.data.as_deref(),
        Some("got 4")
    );
    made.dispose();
    assert!(Registered::get_async(name).is_none());
    blocking.dispose();
}
