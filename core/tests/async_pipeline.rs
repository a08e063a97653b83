//! Composition of the async forms (feature `async`, tokio with paused
//! time): nesting order, a full pipeline with a per-attempt timeout,
//! `TimedPipeline::execute_async`, and `Send` futures.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, assert_send};

use core::fmt::Display;
use core::future::Future;
use core::sync::atomic::{AtomicU32, Ordering::SeqCst};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{
    AsyncPolicy, Bulkhead, CircuitBreaker, Error, Pipeline, RateLimiter, Retry, RetryConfig,
    Timeout, TokioClock,
};
use stockade::breaker::BreakerConfig;
use stockade::bulkhead::BulkheadConfig;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;

/// A policy that records when it starts and ends.
struct Trace(&'static str, Arc<Mutex<Vec<&'static str>>>);

impl AsyncPolicy for Trace {
    async fn run_async<R, E, F, Fut>(&self, call: F) -> Result<R, Error<E>>
    where
        E: Display,
        F: Fn() -> Fut + Clone,
        Fut: Future<Output = Result<R, Error<E>>>,
    {
        self.1.lock().unwrap().push(self.0);
        let out = call().await;
        self.1.lock().unwrap().push(self.0);
        out
    }
}

#[tokio::test(start_paused = true)]
async fn first_added_is_outermost() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let pipeline = Pipeline::new()
        .then_async(Trace("a", Arc::clone(&log)))
        .then_async(Trace("b", Arc::clone(&log)))
        .then_async(Trace("c", Arc::clone(&log)));
    let out = pipeline
        .execute_async(|| async {
            log.lock().unwrap().push("call");
            Ok::<_, &str>(7)
        })
        .await;
    assert_eq!(out.unwrap(), 7);
    assert_eq!(*log.lock().unwrap(), ["a", "b", "c", "call", "c", "b", "a"]);
}

#[tokio::test(start_paused = true)]
async fn every_pattern_in_one_pipeline() {
    let clock = TokioClock::new();
    let limiter = RateLimiter::with_timer(
        "p",
        RateLimiterConfig::DEFAULT.with_requests_per_period(100),
        clock,
    )
    .unwrap();
    let bulkhead = Bulkhead::with_timer("p", BulkheadConfig::DEFAULT, clock).unwrap();
    let breaker = CircuitBreaker::with_timer("p", BreakerConfig::DEFAULT, clock).unwrap();
    let retry = Retry::with_timer(
        "p",
        RetryConfig::DEFAULT.with_initial_delay(Duration::from_millis(10)),
        clock,
    )
    .unwrap();
    let timeout = Timeout::with_timer(
        "p",
        TimeoutConfig::new(Duration::from_secs(1)).unwrap(),
        clock,
    )
    .unwrap();
    let pipeline = Pipeline::new()
        .then(&limiter)
        .then(&bulkhead)
        .then(&breaker)
        .then(&retry)
        .then_async(&timeout);
    let attempts = AtomicU32::new(0);
    let (guard, first_dropped) = DropFlag::new();
    let guard = Mutex::new(Some(guard));
    let start = tokio::time::Instant::now();
    let out = assert_send(pipeline.execute_async(|| {
        let n = attempts.fetch_add(1, SeqCst) + 1;
        let held = guard.lock().unwrap().take();
        async move {
            let _held = held;
            if n == 1 {
                // Too slow: dropped by the timeout at 1 s, then retried.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, &str>(n)
        }
    }))
    .await;
    assert_eq!(out.unwrap(), 2);
    assert!(first_dropped.load(SeqCst));
    assert_eq!(start.elapsed(), Duration::from_millis(1010));
    assert_eq!(timeout.metrics().timeouts, 1);
    assert_eq!(retry.metrics().retries, 1);
    // The breaker sees the request's final outcome, the limiter and
    // bulkhead one request.
    assert_eq!(breaker.metrics().successes, 1);
    assert_eq!(bulkhead.metrics().successes, 1);
    assert_eq!(limiter.metrics().successes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_timed_pipeline_runs_futures_too() {
    let clock = TokioClock::new();
    let breaker = CircuitBreaker::with_timer(
        "tp",
        BreakerConfig::DEFAULT.with_failure_threshold(1),
        clock,
    )
    .unwrap();
    let timeout = Timeout::with_timer(
        "tp",
        TimeoutConfig::new(Duration::from_secs(2)).unwrap(),
        clock,
    )
    .unwrap();
    let pipeline = Pipeline::new().then(&breaker).then_timeout(&timeout);
    let out = pipeline
        .execute_async(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok::<_, &str>(())
        })
        .await;
    assert!(matches!(out, Err(Error::TimedOut { .. })), "{out:?}");
    // The breaker outside counted the timeout as a failure.
    assert_eq!(breaker.metrics().failures, 1);
}

/// The workspace README's async example is the crate README's, which runs
/// as a doc test (the crate README's hidden `# ` lines aside).
#[test]
fn the_readme_example_is_the_doc_tested_one() {
    fn example(readme: &str, heading: &str) -> String {
        let section = &readme[readme.find(heading).expect("the section")..];
        let code = &section[section.find("```rust\n").expect("the example") + 8..];
        let code = &code[..code.find("```").expect("its end")];
        code.lines()
            .filter(|l| !l.starts_with("# ") && *l != "#")
            .collect::<Vec<_>>()
            .join("\n")
    }
    let root = include_str!("../../README.md");
    let crate_readme = include_str!("../README.md");
    let shown = example(root, "## Async Rust");
    assert!(shown.contains("execute_async"), "{shown}");
    assert_eq!(shown, example(crate_readme, "## Async Rust"));
}
