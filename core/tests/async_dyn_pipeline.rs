//! The run-time composed async pipeline (feature `async`, tokio with
//! paused time): `DynPipeline::new_async` of `Arc<dyn DynAsyncPolicy>`
//! stages, run by `execute_async` through each stage's async form.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{DropFlag, assert_send, poll_once};

use core::pin::pin;
use core::sync::atomic::AtomicU32;
use core::sync::atomic::Ordering::SeqCst;
use core::time::Duration;
use std::sync::{Arc, Mutex};

use stockade::blocking::{
    Bulkhead, CircuitBreaker, DynAsyncPolicy, DynPipeline, DynPolicy, DynValue, Error, Fallback,
    FallbackConfig, Hedging, RateLimiter, Retry, RetryConfig, Timeout, TokioClock,
};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::bulkhead::BulkheadConfig;
use stockade::deadline::TimeoutConfig;
use stockade::hedging::HedgingConfig;
use stockade::limiter::RateLimiterConfig;

const SEC: Duration = Duration::from_secs(1);

fn retry(name: &str, attempts: u32) -> Arc<Retry<TokioClock>> {
    let config = RetryConfig::DEFAULT
        .with_max_attempts(attempts)
        .with_initial_delay(Duration::ZERO);
    Arc::new(Retry::with_timer(name, config, TokioClock::new()).unwrap())
}

fn timeout(name: &str, after: Duration) -> Arc<Timeout<TokioClock>> {
    let config = TimeoutConfig::new(after).unwrap();
    Arc::new(Timeout::with_timer(name, config, TokioClock::new()).unwrap())
}

fn breaker(name: &str) -> Arc<CircuitBreaker<TokioClock>> {
    Arc::new(CircuitBreaker::with_timer(name, BreakerConfig::DEFAULT, TokioClock::new()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn each_stage_runs_its_async_form() {
    let limiter = Arc::new(
        RateLimiter::with_timer(
            "dyn-async",
            RateLimiterConfig::DEFAULT.with_requests_per_period(100),
            TokioClock::new(),
        )
        .unwrap(),
    );
    let bulkhead = Arc::new(
        Bulkhead::with_timer("dyn-async", BulkheadConfig::DEFAULT, TokioClock::new()).unwrap(),
    );
    let breaker = breaker("dyn-async");
    let timeout = timeout("dyn-async", SEC);
    let stages: Vec<Arc<dyn DynAsyncPolicy>> = vec![
        limiter.clone(),
        bulkhead.clone(),
        breaker.clone(),
        retry("dyn-async", 3),
        timeout.clone(),
    ];
    let pipeline = DynPipeline::new_async(stages);
    assert_eq!(pipeline.len(), 5);
    assert_eq!(
        pipeline
            .execute_async(|| async { Ok::<_, String>(42) })
            .await
            .unwrap(),
        42
    );
    // Every attempt is dropped by the timeout at 1 s, then retried.
    let dropped = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let out = {
        let dropped = Arc::clone(&dropped);
        pipeline
            .execute_async(move || {
                let (guard, flag) = DropFlag::new();
                let dropped = Arc::clone(&dropped);
                async move {
                    struct Count(Arc<core::sync::atomic::AtomicBool>, Arc<AtomicU32>);
                    impl Drop for Count {
                        fn drop(&mut self) {
                            if self.0.load(SeqCst) {
                                self.1.fetch_add(1, SeqCst);
                            }
                        }
                    }
                    let _guard = guard;
                    let _count = Count(flag, dropped);
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok::<u32, String>(0)
                }
            })
            .await
    };
    assert!(
        matches!(&out, Err(Error::RetriesExhausted { attempts: 3, last }) if matches!(**last, Error::TimedOut { .. })),
        "{out:?}"
    );
    assert_eq!(start.elapsed(), 3 * SEC);
    assert_eq!(timeout.metrics().timeouts, 3);
    // The same objects as everywhere: the breaker counted one success and
    // one failure (the retry's last error), the limiter two calls.
    let b = breaker.metrics();
    assert_eq!((b.successes, b.failures), (1, 1), "{b:?}");
    assert_eq!(limiter.metrics().successes + limiter.metrics().failures, 2);
    assert_eq!(bulkhead.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn the_calls_own_error_comes_back_boxed() {
    let pipeline = DynPipeline::new_async(vec![breaker("dyn-async-inner")]);
    let out = pipeline
        .execute_async(|| async { Err::<(), _>("boom") })
        .await;
    let error = out.unwrap_err();
    assert_eq!(
        error.inner().map(ToString::to_string).as_deref(),
        Some("boom")
    );
    // An empty pipeline runs the call once.
    let empty = DynPipeline::new_async(Vec::new());
    assert!(empty.is_empty());
    assert_eq!(
        empty
            .execute_async(|| async { Ok::<_, String>(1) })
            .await
            .unwrap(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_call_is_never_made_and_nested_errors_pass_unchanged() {
    let open = breaker("dyn-async-open");
    open.force_open().unwrap();
    // `[retry, [closed], open]` runs as `[retry, closed, open]`: the open
    // breaker's refusal reaches the closed one and the retry unchanged.
    let closed = breaker("dyn-async-closed");
    let inner = DynPipeline::new_async(vec![closed.clone()]);
    let retry = retry("dyn-async-open", 3);
    let outer = DynPipeline::new_async(vec![retry.clone(), Arc::new(inner), open.clone()]);
    let made = Arc::new(AtomicU32::new(0));
    let out = {
        let made = Arc::clone(&made);
        outer
            .execute_async(move || {
                made.fetch_add(1, SeqCst);
                async { Ok::<_, String>(()) }
            })
            .await
    };
    // The retry saw the breaker's refusal itself (not wrapped as the
    // call's error) and returned it at once: a forced-open breaker says no
    // time to come back.
    assert!(
        matches!(
            out,
            Err(Error::BreakerOpen {
                state: BreakerState::ForcedOpen,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(made.load(SeqCst), 0, "a refused attempt called the call");
    assert_eq!(retry.metrics().retries, 0);
    // The closed breaker ignored the refusal (not the call's failure).
    let c = closed.metrics();
    assert_eq!(
        (c.failures, c.state),
        (0, Some(BreakerState::Closed)),
        "{c:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_future_gives_back_what_its_stages_held() {
    let bulkhead = Arc::new(
        Bulkhead::with_timer(
            "dyn-async-drop",
            BulkheadConfig::DEFAULT.with_max_concurrent(1),
            TokioClock::new(),
        )
        .unwrap(),
    );
    let pipeline = DynPipeline::new_async(vec![bulkhead.clone(), breaker("dyn-async-drop")]);
    let (guard, dropped) = DropFlag::new();
    let guard = Mutex::new(Some(guard));
    let guard = Arc::new(guard);
    {
        let guard = Arc::clone(&guard);
        let mut running = pin!(pipeline.execute_async(move || {
            let held = guard.lock().unwrap().take();
            async move {
                let _held = held;
                core::future::pending::<()>().await;
                Ok::<_, String>(())
            }
        }));
        assert!(poll_once(running.as_mut()).is_pending());
        assert_eq!(bulkhead.metrics().in_flight, 1);
        assert!(matches!(bulkhead.try_acquire(), Err(Error::BulkheadFull)));
    }
    assert!(
        dropped.load(SeqCst),
        "the call's future outlived its caller"
    );
    assert_eq!(bulkhead.metrics().in_flight, 0, "the permit was kept");
    assert!(bulkhead.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn the_future_is_send_and_static() {
    let pipeline = DynPipeline::new_async(vec![
        breaker("dyn-async-spawn"),
        timeout("dyn-async-spawn", SEC),
    ]);
    let future = assert_send(pipeline.execute_async(|| async { Ok::<_, String>(5) }));
    drop(pipeline);
    assert_eq!(tokio::spawn(future).await.unwrap().unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_stage_and_a_hedging_stage() {
    let fallback = Arc::new(
        Fallback::with_timer(
            "dyn-async-fallback",
            FallbackConfig::DEFAULT,
            TokioClock::new(),
        )
        .unwrap(),
    );
    let hedging = Arc::new(
        Hedging::with_timer(
            "dyn-async-hedging",
            HedgingConfig::DEFAULT.with_delay(Duration::from_millis(100)),
            TokioClock::new(),
        )
        .unwrap(),
    );
    let pipeline = DynPipeline::new_async(vec![
        Arc::new(fallback.stage(|_| Ok(Box::new(7u32) as DynValue))),
        hedging.clone(),
    ]);
    // The first attempt is slow; the hedge 100 ms later wins.
    let attempts = Arc::new(AtomicU32::new(0));
    let start = tokio::time::Instant::now();
    let won = {
        let attempts = Arc::clone(&attempts);
        pipeline
            .execute_async(move || {
                let n = attempts.fetch_add(1, SeqCst);
                async move {
                    if n == 0 {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    Ok::<u32, String>(n)
                }
            })
            .await
    };
    assert_eq!(won.unwrap(), 1);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(hedging.metrics().hedges_won, 1);
    // Every attempt fails: the fallback's value.
    let replaced = pipeline
        .execute_async(|| async { Err::<u32, _>("down") })
        .await;
    assert_eq!(replaced.unwrap(), 7);
    assert_eq!(fallback.metrics().fallbacks, 1);
    // A fallback value of another type is an error naming the type, not a
    // panic, in both forms.
    let mistyped = pipeline
        .execute_async(|| async { Err::<String, _>("down") })
        .await
        .unwrap_err();
    assert_eq!(
        mistyped.to_string(),
        "a stage answered with a value that is not a `alloc::string::String`"
    );
    let blocking =
        DynPipeline::new(vec![
            Arc::new(fallback.stage(|_| Ok(Box::new(7u32) as DynValue))) as Arc<dyn DynPolicy>,
        ]);
    let mistyped = blocking.execute(|| Err::<String, _>("down")).unwrap_err();
    assert!(matches!(mistyped, Error::Inner(_)), "{mistyped:?}");
    assert_eq!(
        mistyped.to_string(),
        "a stage answered with a value that is not a `alloc::string::String`"
    );
}
