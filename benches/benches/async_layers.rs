//! The async forms and the tower layers on their healthy path: what a
//! pattern adds to a future that is ready at once, and what a layer adds
//! to a service that answers at once.
//!
//! Every future here completes on its first poll (a permit is free, the
//! first attempt succeeds, the deadline is far): each operation is polled
//! once with a no-op waker inside a tokio runtime's context (the timers
//! need one), so no executor's scheduling is measured, only the futures'
//! own work. A future that is not ready at once is counted as a refusal
//! and fails the bench.
//!
//! Groups (one criterion function per implementation, at 1 and 2 threads
//! on one shared instance; a service is cloned once per thread, as tower
//! clones services per connection):
//! - `async-limiter`: `RateLimiter::acquire_async(1)` (`stockade`), the
//!   `RateLimiterLayer` service (`stockade-layer`), governor's
//!   `until_ready` (`governor`); 10^9 permits per second, so every call is
//!   granted.
//! - `async-retry`: `Retry::execute_async` (`stockade`), the `RetryLayer`
//!   service (`stockade-layer`), backon's `Retryable::retry(..).sleep(tokio
//!   sleep)` (`backon`), tower-resilience's retry layer
//!   (`tower-resilience`); 3 attempts, exponential from 1 s, the first
//!   attempt succeeds.
//! - `async-timeout`: `Timeout::execute_async` (`stockade`), the
//!   `TimeoutLayer` service (`stockade-layer`), `tokio::time::timeout`
//!   (`tokio`), `tower::timeout::Timeout` (`tower`); 10 s.
//! - `async-bulkhead`: `Bulkhead::execute_async` (`stockade`), the
//!   `BulkheadLayer` service (`stockade-layer`),
//!   `tower::limit::ConcurrencyLimit` (`tower-limit`); 64 permits, more
//!   than threads. At 2 threads the two contend for one instance.
//! - `async-breaker`: `CircuitBreaker::execute_async` (`stockade`), the
//!   `CircuitBreakerLayer` service (`stockade-layer`), tower-resilience's
//!   circuit breaker layer (`tower-resilience`); closed, every call
//!   succeeds.
//!
//! Targets (issue 18): at most 1.0× each peer on its healthy path, checked
//! on interleaved single-thread comparisons ([`stockade_bench::paired`])
//! after the groups; and the bulkhead layer at most 0.5×
//! `ConcurrencyLimit` at 2 threads (criterion's medians).

use core::convert::Infallible;
use core::future::Future;
use core::hint::black_box;
use core::num::NonZeroU32;
use core::pin::pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::Arc;

use backon::{ExponentialBuilder, Retryable};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use stockade::blocking::{Bulkhead, CircuitBreaker, RateLimiter, Retry, RetryConfig, Timeout};
use stockade::breaker::BreakerConfig;
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::MonotonicClock;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::tower::{
    BulkheadLayer, CircuitBreakerLayer, RateLimiterLayer, RetryLayer, TimeoutLayer,
};
use stockade_bench::{
    THREADS, assert_no_rejections, note_rejection, run_threads_with, threads_label,
};
use tokio::runtime::Handle;
use tower::{Layer, Service};

/// Permits of the bulkheads: more than there are threads.
const PERMITS: u32 = 64;

/// Permits per second of the limiters: every call is granted.
const RATE: u32 = 1_000_000_000;

/// The timeouts' deadline: never reached.
const DEADLINE: Duration = Duration::from_secs(10);

/// Calls whose future was not ready on its first poll (see [`now`]).
static WAITED: AtomicU64 = AtomicU64::new(0);

/// Polls `future` to completion with a no-op waker: once on the healthy
/// path. A future still pending after its first poll (a limiter's
/// reservation a few nanoseconds ahead of the caller's clock read when two
/// threads race) is counted in [`WAITED`] and polled again until ready
/// (every wait here is on a clock that moves without a driver).
#[inline]
fn now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
        return out;
    }
    waited();
    loop {
        std::thread::yield_now();
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[cold]
#[inline(never)]
fn waited() {
    WAITED.fetch_add(1, Ordering::Relaxed);
}

/// Prints how many calls of `group` waited (not the healthy path).
fn report_waits(group: &str) {
    let waited = WAITED.swap(0, Ordering::Relaxed);
    if waited > 0 {
        println!("{group}: {waited} calls were not ready on their first poll");
    }
}

/// Counts an error as a refusal (the healthy path has none).
#[inline]
fn ok<T, E>(result: Result<T, E>) {
    if black_box(result).is_err() {
        note_rejection();
    }
}

/// The healthy call: ready at once with a one-register result.
#[inline(never)]
fn healthy() -> core::future::Ready<Result<u32, Infallible>> {
    core::future::ready(Ok(black_box(42)))
}

/// A service that answers at once.
#[derive(Clone, Copy, Debug)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = core::future::Ready<Result<u32, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, request: u32) -> Self::Future {
        core::future::ready(Ok(black_box(request)))
    }
}

/// One request through `service`: ready, call, the response (polled once).
#[inline]
fn serve<S: Service<u32>>(service: &mut S) {
    let ready = service.poll_ready(&mut Context::from_waker(Waker::noop()));
    if !matches!(ready, Poll::Ready(Ok(()))) {
        return note_rejection();
    }
    match now(service.call(black_box(7))) {
        Ok(response) => {
            black_box(response);
        }
        _ => note_rejection(),
    }
}

/// Adds one benchmark per thread count: `setup` makes the shared state
/// (per criterion sample), `per_thread` each thread's handle on it (a
/// service clone), `op` one operation; every thread runs inside `rt`'s
/// context. Times with [`run_threads_with`].
fn bench<S, T, U, P, O>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    rt: &Handle,
    setup: U,
    per_thread: P,
    op: O,
) where
    S: Sync,
    U: Fn() -> S,
    P: Fn(&S) -> T + Sync,
    O: Fn(&mut T) + Sync,
{
    for threads in THREADS {
        group.bench_function(BenchmarkId::new(name, threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                let state = setup();
                // Each thread enters the runtime's context and takes its
                // handle before the barrier; the guard lives with the handle.
                let make = || (rt.enter(), per_thread(&state));
                run_threads_with(threads, iters, &make, &|(_, mine)| op(mine))
            });
        });
    }
}

/// A thread's handle on a shared pattern.
fn share<T: ?Sized>(shared: &Arc<T>) -> Arc<T> {
    Arc::clone(shared)
}

fn limiter() -> Arc<RateLimiter> {
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(RATE)
        .with_period(Duration::from_secs(1))
        .with_burst(RATE);
    Arc::new(RateLimiter::with_timer("bench", config, MonotonicClock::new()).expect("config"))
}

fn governor() -> governor::DefaultDirectRateLimiter {
    governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(RATE).expect("non-zero"),
    ))
}

fn retry() -> Arc<Retry> {
    let config = RetryConfig::DEFAULT
        .with_max_attempts(3)
        .with_initial_delay(Duration::from_secs(1));
    Arc::new(Retry::with_timer("bench", config, MonotonicClock::new()).expect("config"))
}

fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_max_times(2)
        .with_min_delay(Duration::from_secs(1))
}

fn resilience_retry() -> tower_resilience::retry::RetryLayer<u32, u32, Infallible> {
    tower_resilience::retry::RetryLayer::<u32, u32, Infallible>::builder()
        .max_attempts(3)
        .exponential_backoff(Duration::from_secs(1))
        .build()
}

fn timeout() -> Arc<Timeout> {
    let config = TimeoutConfig::new(DEADLINE).expect("config");
    Arc::new(Timeout::with_timer("bench", config, MonotonicClock::new()).expect("config"))
}

fn bulkhead() -> Arc<Bulkhead> {
    let config = BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS);
    Arc::new(Bulkhead::with_timer("bench", config, MonotonicClock::new()).expect("config"))
}

fn breaker() -> Arc<CircuitBreaker> {
    Arc::new(
        CircuitBreaker::with_timer("bench", BreakerConfig::DEFAULT, MonotonicClock::new())
            .expect("config"),
    )
}

fn resilience_breaker() -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("config")
}

fn async_layers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let rt = runtime.handle();

    let mut group = c.benchmark_group("async-limiter");
    bench(&mut group, "stockade", rt, limiter, share, |l| {
        ok(now(l.acquire_async(1)));
    });
    bench(
        &mut group,
        "stockade-layer",
        rt,
        || RateLimiterLayer::new(limiter()).layer(Echo),
        Clone::clone,
        serve,
    );
    bench(
        &mut group,
        "governor",
        rt,
        || Arc::new(governor()),
        share,
        |g| {
            now(g.until_ready());
        },
    );
    group.finish();
    assert_no_rejections("async group");
    report_waits("async group");

    let mut group = c.benchmark_group("async-retry");
    bench(&mut group, "stockade", rt, retry, share, |r| {
        ok(now(r.execute_async(healthy)));
    });
    bench(
        &mut group,
        "stockade-layer",
        rt,
        || RetryLayer::new(retry()).layer(Echo),
        Clone::clone,
        serve,
    );
    bench(
        &mut group,
        "backon",
        rt,
        backoff,
        |b| *b,
        |b| {
            ok(now(healthy.retry(*b).sleep(tokio::time::sleep)));
        },
    );
    bench(
        &mut group,
        "tower-resilience",
        rt,
        || resilience_retry().layer(Echo),
        Clone::clone,
        serve,
    );
    group.finish();
    assert_no_rejections("async group");
    report_waits("async group");

    let mut group = c.benchmark_group("async-timeout");
    bench(&mut group, "stockade", rt, timeout, share, |t| {
        ok(now(t.execute_async(healthy())));
    });
    bench(
        &mut group,
        "stockade-layer",
        rt,
        || TimeoutLayer::new(timeout()).layer(Echo),
        Clone::clone,
        serve,
    );
    bench(
        &mut group,
        "tokio",
        rt,
        || (),
        |()| (),
        |()| {
            ok(now(tokio::time::timeout(DEADLINE, healthy())));
        },
    );
    bench(
        &mut group,
        "tower",
        rt,
        || tower::timeout::TimeoutLayer::new(DEADLINE).layer(Echo),
        Clone::clone,
        serve,
    );
    group.finish();
    assert_no_rejections("async group");
    report_waits("async group");

    let mut group = c.benchmark_group("async-bulkhead");
    bench(&mut group, "stockade", rt, bulkhead, share, |b| {
        ok(now(b.execute_async(healthy())));
    });
    bench(
        &mut group,
        "stockade-layer",
        rt,
        || BulkheadLayer::new(bulkhead()).layer(Echo),
        Clone::clone,
        serve,
    );
    bench(
        &mut group,
        "tower-limit",
        rt,
        || tower::limit::ConcurrencyLimit::new(Echo, PERMITS as usize),
        Clone::clone,
        serve,
    );
    group.finish();
    assert_no_rejections("async group");
    report_waits("async group");

    let mut group = c.benchmark_group("async-breaker");
    bench(&mut group, "stockade", rt, breaker, share, |b| {
        ok(now(b.execute_async(healthy())));
    });
    bench(
        &mut group,
        "stockade-layer",
        rt,
        || CircuitBreakerLayer::new(breaker()).layer(Echo),
        Clone::clone,
        serve,
    );
    bench(
        &mut group,
        "tower-resilience",
        rt,
        || resilience_breaker().layer(Echo),
        Clone::clone,
        serve,
    );
    group.finish();
    assert_no_rejections("async group");
    report_waits("async group");
    assert_no_rejections("async");

    // The targets, on interleaved rounds (one thread, in the runtime's
    // context).
    let _context = rt.enter();
    let l = limiter();
    let g = governor();
    stockade_bench::paired(
        "async-limiter",
        "stockade",
        || {
            ok(now(l.acquire_async(1)));
        },
        "governor",
        || {
            now(g.until_ready());
        },
    );
    let r = retry();
    let b = backoff();
    stockade_bench::paired(
        "async-retry",
        "stockade",
        || {
            ok(now(r.execute_async(healthy)));
        },
        "backon",
        || {
            ok(now(healthy.retry(b).sleep(tokio::time::sleep)));
        },
    );
    let mut ours = RetryLayer::new(retry()).layer(Echo);
    let mut theirs = resilience_retry().layer(Echo);
    stockade_bench::paired(
        "async-retry",
        "stockade-layer",
        || serve(&mut ours),
        "tower-resilience",
        || serve(&mut theirs),
    );
    let t = timeout();
    stockade_bench::paired(
        "async-timeout",
        "stockade",
        || {
            ok(now(t.execute_async(healthy())));
        },
        "tokio",
        || {
            ok(now(tokio::time::timeout(DEADLINE, healthy())));
        },
    );
    let mut ours = TimeoutLayer::new(timeout()).layer(Echo);
    let mut theirs = tower::timeout::TimeoutLayer::new(DEADLINE).layer(Echo);
    stockade_bench::paired(
        "async-timeout",
        "stockade-layer",
        || serve(&mut ours),
        "tower",
        || serve(&mut theirs),
    );
    let mut ours = BulkheadLayer::new(bulkhead()).layer(Echo);
    let mut theirs = tower::limit::ConcurrencyLimit::new(Echo, PERMITS as usize);
    stockade_bench::paired(
        "async-bulkhead",
        "stockade-layer",
        || serve(&mut ours),
        "tower-limit",
        || serve(&mut theirs),
    );
    let mut ours = CircuitBreakerLayer::new(breaker()).layer(Echo);
    let mut theirs = resilience_breaker().layer(Echo);
    stockade_bench::paired(
        "async-breaker",
        "stockade-layer",
        || serve(&mut ours),
        "tower-resilience",
        || serve(&mut theirs),
    );
    assert_no_rejections("async (paired)");
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = async_layers
}
criterion_main!(benches);
