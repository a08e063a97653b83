//! The async forms of patterns shared by a fleet through Redis (features
//! `tokio` and `redis`), against a real `redis-server`: a Redis bulkhead's
//! waiting task is admitted when the lease returns (its waits between
//! polls are async sleeps), a Redis limiter and breaker decide as their
//! blocking forms do.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::until;

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

use core::time::Duration;
use std::sync::Arc;

use stockade::blocking::{Bulkhead, CircuitBreaker, Error, RateLimiter};
use stockade::breaker::{BreakerConfig, BreakerState};
use stockade::bulkhead::BulkheadConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::redis::RedisOptions;

#[tokio::test]
async fn a_redis_bulkhead_admits_a_waiting_task_when_the_lease_returns() {
    let server = RedisServer::start();
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_secs(30));
    let b = Arc::new(
        Bulkhead::redis_unregistered("async-b", config, &RedisOptions::new(server.url())).unwrap(),
    );
    let held = b.acquire().unwrap();
    let task = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>("ran") }).await })
    };
    until("the task waits in the fleet's queue", || {
        b.metrics().queue_depth == 1
    })
    .await;
    drop(held);
    assert_eq!(task.await.unwrap().unwrap(), "ran");
    let m = b.metrics();
    assert_eq!((m.in_flight, m.queue_depth, m.successes), (0, 0, 2));
    let fleet = b.redis_bulkhead().unwrap().fleet_counts().unwrap();
    assert_eq!(fleet.in_use, 0, "a lease leaked");
}

#[tokio::test]
async fn a_redis_limiter_and_breaker_decide_as_blocking_ones_do() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url());
    let name = format!("async-redis-{}", std::process::id());
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(3600))
        .with_burst(1)
        .with_queue_timeout(Duration::ZERO);
    let limiter = RateLimiter::redis(&name, config, &options).unwrap();
    limiter
        .execute_async(async { Ok::<_, ()>(()) })
        .await
        .unwrap();
    assert!(matches!(
        limiter.acquire_async(1).await,
        Err(Error::RateLimited { .. })
    ));

    let breaker = CircuitBreaker::redis(
        &name,
        BreakerConfig::DEFAULT.with_failure_threshold(1),
        &options,
    )
    .unwrap();
    assert_eq!(
        breaker
            .execute_async(async { Ok::<_, &str>(1) })
            .await
            .unwrap(),
        1
    );
    let _ = breaker.execute_async(async { Err::<(), _>("down") }).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(matches!(
        breaker.execute_async(async { Ok::<_, &str>(2) }).await,
        Err(Error::BreakerOpen { .. })
    ));
}
