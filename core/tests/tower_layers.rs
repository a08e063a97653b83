//! The tower layers (feature `tower`, on tokio with paused time): each
//! pattern's layer and the combined pipeline layer admit, refuse with the
//! right error and HTTP status, call the inner service only once admitted,
//! reserve nothing in `poll_ready`, and make `Send` futures.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::poll_once;

use core::future::Future;
use core::pin::{Pin, pin};
use core::sync::atomic::Ordering::SeqCst;
use core::sync::atomic::{AtomicBool, AtomicU32};
use core::task::{Context, Poll};
use core::time::Duration;
use std::sync::Arc;

use stockade::blocking::{
    Bulkhead, CircuitBreaker, Error, Pipeline, RateLimiter, Retry, RetryConfig, Timeout, TokioClock,
};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::bulkhead::BulkheadConfig;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::tower::{
    BulkheadLayer, CircuitBreakerLayer, PolicyLayer, RateLimiterLayer, RetryLayer, TimeoutLayer,
};
use tower::{Layer, Service, ServiceExt};

/// What the test service answers to a request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Answer {
    Ok(u32),
    Fail,
    /// Answers `Ok` with a status-like 500 (for `failing_on`).
    ServerError,
    /// Sleeps this long (tokio time), then answers `Ok(0)`.
    Slow(Duration),
}

/// A request that is not `Clone` (as axum's bodies are not).
struct Unique(Answer);

/// Sets its flag when dropped while still armed (`Some`).
struct OnCancel(Option<Arc<AtomicBool>>);

impl Drop for OnCancel {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, SeqCst);
        }
    }
}

/// Counts `poll_ready` and `call`; answers as the request says.
#[derive(Clone, Default)]
struct Probe {
    readies: Arc<AtomicU32>,
    calls: Arc<AtomicU32>,
    /// Set when a slow answer's future is dropped before it finished.
    dropped: Arc<AtomicBool>,
}

impl Probe {
    fn answer(&self, answer: Answer) -> Pin<Box<dyn Future<Output = Result<u32, String>> + Send>> {
        self.calls.fetch_add(1, SeqCst);
        let dropped = Arc::clone(&self.dropped);
        Box::pin(async move {
            match answer {
                Answer::Ok(n) => Ok(n),
                Answer::Fail => Err(String::from("inner failed")),
                Answer::ServerError => Ok(500),
                Answer::Slow(d) => {
                    let mut cancelled = OnCancel(Some(dropped));
                    tokio::time::sleep(d).await;
                    cancelled.0 = None;
                    Ok(0)
                }
            }
        })
    }
}

impl Service<Answer> for Probe {
    type Response = u32;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.readies.fetch_add(1, SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, answer: Answer) -> Self::Future {
        self.answer(answer)
    }
}

impl Service<Unique> for Probe {
    type Response = u32;
    type Error = String;
    type Future = Pin<Box<dyn Future<Output = Result<u32, String>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.readies.fetch_add(1, SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Unique) -> Self::Future {
        self.answer(request.0)
    }
}

fn breaker(failures: u32) -> Arc<CircuitBreaker<TokioClock>> {
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(failures)
        .with_reset_timeout(Duration::from_secs(60));
    Arc::new(CircuitBreaker::with_timer("tower", config, TokioClock::new()).unwrap())
}

fn limiter(per_second: u32, queue_timeout: Duration) -> Arc<RateLimiter<TokioClock>> {
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(per_second)
        .with_period(Duration::from_secs(1))
        .with_burst(1)
        .with_queue_timeout(queue_timeout);
    Arc::new(RateLimiter::with_timer("tower", config, TokioClock::new()).unwrap())
}

fn bulkhead(concurrent: u32) -> Arc<Bulkhead<TokioClock>> {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(concurrent)
        .with_max_queue(0);
    Arc::new(Bulkhead::with_timer("tower", config, TokioClock::new()).unwrap())
}

fn timeout(after: Duration) -> Arc<Timeout<TokioClock>> {
    let config = TimeoutConfig::new(after).unwrap();
    Arc::new(Timeout::with_timer("tower", config, TokioClock::new()).unwrap())
}

fn retry(attempts: u32) -> Arc<Retry<TokioClock>> {
    let config = RetryConfig::DEFAULT
        .with_max_attempts(attempts)
        .with_initial_delay(Duration::from_millis(100));
    Arc::new(Retry::with_timer("tower", config, TokioClock::new()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn breaker_layer_counts_errors_then_refuses_with_503() {
    let probe = Probe::default();
    let b = breaker(2);
    let service = CircuitBreakerLayer::new(Arc::clone(&b)).layer(probe.clone());
    assert_eq!(service.clone().oneshot(Answer::Ok(7)).await.unwrap(), 7);
    for _ in 0..2 {
        let e = service.clone().oneshot(Answer::Fail).await.unwrap_err();
        assert_eq!(e.inner().map(String::as_str), Some("inner failed"));
        assert_eq!(e.http_status(), 500);
    }
    assert_eq!(b.state(), BreakerState::Open);
    let refused = service.clone().oneshot(Answer::Ok(1)).await.unwrap_err();
    assert!(matches!(refused, Error::BreakerOpen { .. }), "{refused:?}");
    assert_eq!(refused.http_status(), 503);
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(60)));
    // The refused request never reached the inner service.
    assert_eq!(probe.calls.load(SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn failing_on_counts_responses_but_returns_them() {
    let probe = Probe::default();
    let b = breaker(2);
    let service = CircuitBreakerLayer::new(Arc::clone(&b))
        .failing_on(|status: &u32| *status >= 500)
        .layer(probe.clone());
    for _ in 0..2 {
        assert_eq!(
            service.clone().oneshot(Answer::ServerError).await.unwrap(),
            500
        );
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.metrics().failures, 2);
    let refused = service.oneshot(Answer::Ok(1)).await.unwrap_err();
    assert_eq!(refused.http_status(), 503);
}

#[tokio::test(start_paused = true)]
async fn limiter_layer_refuses_with_429_or_waits_its_turn() {
    let probe = Probe::default();
    let service = RateLimiterLayer::new(limiter(10, Duration::ZERO)).layer(probe.clone());
    assert_eq!(service.clone().oneshot(Answer::Ok(1)).await.unwrap(), 1);
    let refused = service.clone().oneshot(Answer::Ok(2)).await.unwrap_err();
    assert!(matches!(refused, Error::RateLimited { .. }), "{refused:?}");
    assert_eq!(refused.http_status(), 429);
    assert_eq!(refused.retry_after(), Some(Duration::from_millis(100)));
    assert_eq!(probe.calls.load(SeqCst), 1);

    // With a queue: the second request waits 100 ms (paused time).
    let queued = RateLimiterLayer::new(limiter(10, Duration::from_secs(1))).layer(probe.clone());
    let start = tokio::time::Instant::now();
    for n in 0..2 {
        assert_eq!(queued.clone().oneshot(Answer::Ok(n)).await.unwrap(), n);
    }
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn bulkhead_layer_refuses_with_503_and_calls_inner_only_once_admitted() {
    let probe = Probe::default();
    let b = bulkhead(1);
    let service = BulkheadLayer::new(Arc::clone(&b)).layer(probe.clone());
    let mut first = pin!(
        service
            .clone()
            .oneshot(Answer::Slow(Duration::from_secs(1)))
    );
    assert!(poll_once(first.as_mut()).is_pending());
    assert_eq!(b.metrics().in_flight, 1);
    let refused = service.clone().oneshot(Answer::Ok(2)).await.unwrap_err();
    assert!(matches!(refused, Error::BulkheadFull), "{refused:?}");
    assert_eq!(refused.http_status(), 503);
    assert_eq!(
        probe.calls.load(SeqCst),
        1,
        "the refused request was not sent"
    );
    assert_eq!(first.await.unwrap(), 0);
    assert_eq!(b.metrics().in_flight, 0);
    assert_eq!(service.oneshot(Answer::Ok(3)).await.unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn poll_ready_reserves_nothing() {
    let b = bulkhead(1);
    let l = limiter(1, Duration::ZERO);
    let layer = Pipeline::new()
        .then_async(Arc::clone(&l))
        .then_async(Arc::clone(&b))
        .into_layer();
    // Polled ready, then dropped: no permit of either is held or spent.
    for _ in 0..3 {
        let mut service = layer.layer(Probe::default());
        let ready = ServiceExt::<Answer>::ready(&mut service).await;
        assert!(ready.is_ok());
        drop(service);
    }
    assert_eq!(b.metrics().in_flight, 0);
    let service = layer.layer(Probe::default());
    assert_eq!(service.oneshot(Answer::Ok(5)).await.unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_gives_its_permit_back() {
    let probe = Probe::default();
    let b = bulkhead(1);
    let service = BulkheadLayer::new(Arc::clone(&b)).layer(probe.clone());
    {
        let mut slow = pin!(
            service
                .clone()
                .oneshot(Answer::Slow(Duration::from_secs(10)))
        );
        assert!(poll_once(slow.as_mut()).is_pending());
        assert_eq!(b.metrics().in_flight, 1);
    }
    assert_eq!(b.metrics().in_flight, 0);
    assert!(probe.dropped.load(SeqCst), "the inner future was dropped");
    assert_eq!(service.oneshot(Answer::Ok(4)).await.unwrap(), 4);
}

#[tokio::test(start_paused = true)]
async fn timeout_layer_drops_the_inner_future_with_504() {
    let probe = Probe::default();
    let service = TimeoutLayer::new(timeout(Duration::from_millis(50))).layer(probe.clone());
    let start = tokio::time::Instant::now();
    let e = service
        .clone()
        .oneshot(Answer::Slow(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::TimedOut { after } if after == Duration::from_millis(50)));
    assert_eq!(e.http_status(), 504);
    assert_eq!(start.elapsed(), Duration::from_millis(50));
    assert!(probe.dropped.load(SeqCst));
    assert_eq!(service.oneshot(Answer::Ok(9)).await.unwrap(), 9);
}

/// Fails its first `fail` calls, then answers `Ok(attempt)`.
#[derive(Clone)]
struct Flaky {
    fail: u32,
    calls: Arc<AtomicU32>,
    readies: Arc<AtomicU32>,
}

impl Service<String> for Flaky {
    type Response = u32;
    type Error = String;
    type Future = core::future::Ready<Result<u32, String>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
        self.readies.fetch_add(1, SeqCst);
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: String) -> Self::Future {
        let n = self.calls.fetch_add(1, SeqCst) + 1;
        core::future::ready(if n <= self.fail {
            Err(format!("{request}: attempt {n} failed"))
        } else {
            Ok(n)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn retry_layer_sends_a_clone_per_attempt_to_a_ready_clone() {
    let flaky = Flaky {
        fail: 2,
        calls: Arc::new(AtomicU32::new(0)),
        readies: Arc::new(AtomicU32::new(0)),
    };
    let r = retry(3);
    let service = RetryLayer::new(Arc::clone(&r)).layer(flaky.clone());
    assert_eq!(service.oneshot(String::from("req")).await.unwrap(), 3);
    assert_eq!(flaky.calls.load(SeqCst), 3);
    // `oneshot` readied the service once; each retry readied its clone.
    assert_eq!(flaky.readies.load(SeqCst), 3);
    assert_eq!(r.metrics().retries, 2);

    // Exhausted: the last attempt's error, with the inner error inside.
    let always = Flaky {
        fail: u32::MAX,
        ..flaky
    };
    let e = RetryLayer::new(retry(2))
        .layer(always)
        .oneshot(String::from("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::RetriesExhausted { attempts: 2, .. }),
        "{e:?}"
    );
    assert_eq!(e.http_status(), 500);
}

#[tokio::test(start_paused = true)]
async fn retry_returns_the_last_failing_response_as_the_response() {
    let probe = Probe::default();
    let service = RetryLayer::new(retry(3))
        .failing_on(|status: &u32| *status >= 500)
        .layer(probe.clone());
    assert_eq!(service.oneshot(Answer::ServerError).await.unwrap(), 500);
    assert_eq!(probe.calls.load(SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn one_pipeline_layer_with_a_request_that_is_not_clone() {
    let probe = Probe::default();
    let b = breaker(1);
    let layer = Pipeline::new()
        .then_async(limiter(1000, Duration::from_secs(1)))
        .then_async(bulkhead(4))
        .then_async(Arc::clone(&b))
        .then_async(timeout(Duration::from_millis(20)))
        .into_layer();
    let service = layer.layer(probe.clone());
    assert_eq!(
        service
            .clone()
            .oneshot(Unique(Answer::Ok(11)))
            .await
            .unwrap(),
        11
    );
    // The timeout inside the breaker: a 504 that the breaker counts.
    let e = service
        .clone()
        .oneshot(Unique(Answer::Slow(Duration::from_secs(1))))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 504);
    assert_eq!(b.state(), BreakerState::Open);
    let e = service.oneshot(Unique(Answer::Ok(1))).await.unwrap_err();
    assert_eq!(e.http_status(), 503);
    assert_eq!(probe.calls.load(SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn replaying_pipeline_layer_retries_inside_the_breaker() {
    let flaky = Flaky {
        fail: 1,
        calls: Arc::new(AtomicU32::new(0)),
        readies: Arc::new(AtomicU32::new(0)),
    };
    let b = breaker(5);
    let layer = Pipeline::new()
        .then_async(Arc::clone(&b))
        .then_async(retry(3))
        .into_replaying_layer();
    let out = layer.layer(flaky.clone()).oneshot(String::from("r")).await;
    assert_eq!(out.unwrap(), 2);
    assert_eq!(b.metrics().successes, 1);
    assert_eq!(b.metrics().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn the_response_future_is_send() {
    let probe = Probe::default();
    let layer = PolicyLayer::new(
        Pipeline::new()
            .then_async(bulkhead(2))
            .then_async(breaker(3))
            .then_async(timeout(Duration::from_secs(1))),
    );
    let mut service = layer.layer(probe);
    ServiceExt::<Answer>::ready(&mut service).await.unwrap();
    let future = service.call(Answer::Ok(8));
    // `tokio::spawn` needs `Send + 'static`; the timeout inside bounds it.
    let out = tokio::spawn(future).await.unwrap();
    assert_eq!(out.unwrap(), 8);
}
