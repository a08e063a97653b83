//! The async forms and the tower layers allocate nothing on their healthy
//! path (a permit free, the call ready at once, the breaker closed): their
//! futures are named types whose waiting state is boxed only by a call
//! that must wait. Counted by a global allocator that counts this
//! thread's allocations.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::poll_once;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::convert::Infallible;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::alloc::System;
use std::sync::Arc;

use stockade::blocking::{Bulkhead, CircuitBreaker, Error, Pipeline, RateLimiter, Timeout};
use stockade::breaker::BreakerConfig;
use stockade::bulkhead::BulkheadConfig;
use stockade::deadline::TimeoutConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::tower::{BulkheadLayer, CircuitBreakerLayer, RateLimiterLayer, TimeoutLayer};
use tower::{Layer, Service};

/// The system allocator, counting the allocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// count is a `const`-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Allocations this thread made while running `f`.
fn allocations_in<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let out = f();
    (out, ALLOCATIONS.with(Cell::get) - before)
}

/// Polls `future` once; it must be ready.
fn ready<F: Future>(future: F) -> F::Output {
    match poll_once(pin!(future)) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the healthy path waited"),
    }
}

/// A service that answers at once, and whose clones allocate nothing.
#[derive(Clone, Copy)]
struct Echo;

impl Service<u32> for Echo {
    type Response = u32;
    type Error = Infallible;
    type Future = core::future::Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, n: u32) -> Self::Future {
        core::future::ready(Ok(n + 1))
    }
}

/// Calls `service` once (polled ready first) and checks the answer.
fn call<S>(service: &mut S, n: u32)
where
    S: Service<u32, Response = u32, Error = Error<Infallible>>,
{
    assert!(matches!(
        poll_once(pin!(core::future::poll_fn(|cx| service.poll_ready(cx)))),
        Poll::Ready(Ok(()))
    ));
    assert_eq!(ready(service.call(n)).unwrap(), n + 1);
}

struct Patterns {
    breaker: Arc<CircuitBreaker>,
    bulkhead: Arc<Bulkhead>,
    limiter: Arc<RateLimiter>,
    timeout: Arc<Timeout>,
}

fn patterns() -> Patterns {
    Patterns {
        breaker: Arc::new(
            CircuitBreaker::unregistered("no-alloc", BreakerConfig::DEFAULT).unwrap(),
        ),
        bulkhead: Arc::new(
            Bulkhead::unregistered("no-alloc", BulkheadConfig::DEFAULT.with_max_concurrent(4))
                .unwrap(),
        ),
        limiter: Arc::new(
            RateLimiter::unregistered(
                "no-alloc",
                RateLimiterConfig::DEFAULT
                    .with_requests_per_period(1_000_000)
                    .with_burst(1_000_000),
            )
            .unwrap(),
        ),
        timeout: Arc::new(
            Timeout::unregistered(
                "no-alloc",
                TimeoutConfig::new(Duration::from_secs(10)).unwrap(),
            )
            .unwrap(),
        ),
    }
}

#[test]
fn the_async_forms_allocate_nothing_on_the_healthy_path() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let p = patterns();
    // Warm up: thread-locals (the metrics' stripes) are made at first use.
    for _ in 0..2 {
        let ((), n) = allocations_in(|| {
            ready(p.breaker.execute_async(async { Ok::<_, Infallible>(1) })).unwrap();
            ready(p.bulkhead.execute_async(async { Ok::<_, Infallible>(1) })).unwrap();
            ready(p.limiter.execute_async(async { Ok::<_, Infallible>(1) })).unwrap();
            ready(p.timeout.execute_async(async { Ok::<_, Infallible>(1) })).unwrap();
        });
        if n == 0 {
            return;
        }
    }
    panic!("the async forms allocated on their healthy path");
}

#[test]
fn the_layers_allocate_nothing_on_the_healthy_path() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _inside = runtime.enter();
    let p = patterns();
    let mut breaker = CircuitBreakerLayer::new(Arc::clone(&p.breaker)).layer(Echo);
    let mut bulkhead = BulkheadLayer::new(Arc::clone(&p.bulkhead)).layer(Echo);
    let mut limiter = RateLimiterLayer::new(Arc::clone(&p.limiter)).layer(Echo);
    let mut timeout = TimeoutLayer::new(Arc::clone(&p.timeout)).layer(Echo);
    let mut pipeline = Pipeline::new()
        .then_async(Arc::clone(&p.limiter))
        .then_async(Arc::clone(&p.bulkhead))
        .then_async(Arc::clone(&p.breaker))
        .then_async(Arc::clone(&p.timeout))
        .into_layer()
        .layer(Echo);
    let mut counts = Vec::with_capacity(4);
    for round in 0..4 {
        let ((), n) = allocations_in(|| {
            call(&mut breaker, round);
            call(&mut bulkhead, round);
            call(&mut limiter, round);
            call(&mut timeout, round);
            call(&mut pipeline, round);
        });
        counts.push(n);
    }
    // The first round may make this thread's metrics stripe.
    assert_eq!(
        &counts[1..],
        &[0, 0, 0],
        "allocations per round: {counts:?}"
    );
    assert_eq!(p.bulkhead.metrics().successes, 8);
    assert_eq!(p.breaker.metrics().successes, 8);
}
