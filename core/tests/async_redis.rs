//! The async forms of patterns shared by a fleet through Redis (features
//! `tokio` and `redis`), against a real `redis-server`: a Redis bulkhead's
//! waiting task is admitted when the lease returns (its waits between
//! polls are async sleeps), a Redis limiter and breaker decide as their
//! blocking forms do; their round trips run on the store's I/O threads,
//! so another task of a one-thread runtime runs while one waits in Redis
//! (held there by `CLIENT PAUSE ... WRITE`, seen as `blocked_clients`),
//! and a call dropped while its round trip is in flight gives back what
//! the round trip took. With feature `async-io`, the same wake-up drives a
//! task on async-io's executor.
#![cfg(not(stockade_loom))]

mod async_util;
use async_util::{PATIENCE, until};

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

use core::sync::atomic::{AtomicBool, Ordering::SeqCst};
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

/// A field of `INFO <section>` (`name:value` lines).
fn info(server: &RedisServer, section: &str, name: &str) -> String {
    let text = server.command(&["INFO", section]);
    text.lines()
        .find_map(|line| line.trim_end().strip_prefix(name)?.strip_prefix(':'))
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Clients whose commands wait in Redis (here: postponed by a pause).
fn blocked_clients(server: &RedisServer) -> u64 {
    info(server, "clients", "blocked_clients").parse().unwrap()
}

/// `EVALSHA` calls the server executed (every script call of the engines).
fn script_calls(server: &RedisServer) -> u64 {
    let stats = info(server, "commandstats", "cmdstat_evalsha");
    stats
        .split(',')
        .find_map(|kv| kv.strip_prefix("calls="))
        .map_or(0, |n| n.parse().unwrap())
}

/// Holds every script call in Redis (reads still answer) until
/// [`resume`]; ends by itself after 60 s should a test fail first.
fn pause_writes(server: &RedisServer) {
    assert_eq!(
        server.command(&["CLIENT", "PAUSE", "60000", "WRITE"]),
        "+OK"
    );
}

fn resume(server: &RedisServer) {
    assert_eq!(server.command(&["CLIENT", "UNPAUSE"]), "+OK");
}

/// A limiter's TAT in Redis (µs since 1970: the key's first 16 digits).
fn stored_tat(server: &RedisServer, key: &str) -> u64 {
    server.command(&["GET", key])[..16].parse().unwrap()
}

/// Options whose round trips outlast the tests' pauses (no timeout: each
/// call decides through Redis, never by the fallback).
fn patient(server: &RedisServer) -> RedisOptions {
    RedisOptions::new(server.url()).command_timeout(Duration::from_secs(50))
}

/// One permit an hour, one at once, up to two hours of queue.
fn hourly() -> RateLimiterConfig {
    RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(3600))
        .with_burst(1)
        .with_queue_timeout(Duration::from_secs(7200))
}

#[tokio::test]
async fn a_redis_limiter_round_trip_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis("async-rt-limiter", hourly(), &patient(&server)).unwrap();
    pause_writes(&server);
    let call = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire_async(1).await })
    };
    // A one-thread runtime: this task can only see the call's round trip
    // waiting in Redis if polling the call did not block the thread.
    until("the limiter's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    assert!(!call.is_finished());
    resume(&server);
    let out = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call never finished")
        .unwrap();
    assert!(out.is_ok(), "{out:?}");
    let engine = limiter.redis_limiter().unwrap();
    assert_eq!(engine.fallback_decisions(), 0, "Redis decided");
    assert_eq!(limiter.metrics().successes, 1);
}

#[tokio::test]
async fn a_limiter_call_dropped_during_its_round_trip_cancels_the_booking_it_made() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis("async-drop-limiter", hourly(), &patient(&server)).unwrap();
    limiter.acquire_async(1).await.unwrap(); // the burst: granted now
    let key = limiter.redis_limiter().unwrap().key().to_owned();
    let granted_tat = stored_tat(&server, &key);
    let calls = script_calls(&server);
    pause_writes(&server);
    // Would be booked to wait an hour behind the grant.
    let call = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire_async(1).await })
    };
    until("the booking's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    resume(&server);
    // The booking runs when Redis resumes; its cancel follows it.
    until("the booking and its cancel ran", || {
        script_calls(&server) == calls + 2
    })
    .await;
    assert_eq!(
        stored_tat(&server, &key),
        granted_tat,
        "the dropped call's booking was not handed back"
    );
    let m = limiter.metrics();
    assert_eq!(
        (m.successes, m.rejections),
        (1, 0),
        "a dropped call counts nothing"
    );
    // The slot is free again: the next caller books an hour, not two.
    let engine = limiter.redis_limiter().unwrap();
    let next = engine.reserve(1, Duration::from_secs(7200)).unwrap();
    assert!(next.wait() <= Duration::from_secs(3600), "{next:?}");
    assert!(engine.cancel(next));
}

#[tokio::test]
async fn a_limiter_call_dropped_while_it_sleeps_cancels_its_booking() {
    let server = RedisServer::start();
    let limiter = RateLimiter::redis("async-sleep-limiter", hourly(), &patient(&server)).unwrap();
    limiter.acquire_async(1).await.unwrap();
    let key = limiter.redis_limiter().unwrap().key().to_owned();
    let granted_tat = stored_tat(&server, &key);
    let calls = script_calls(&server);
    let call = {
        let limiter = Arc::clone(&limiter);
        tokio::spawn(async move { limiter.acquire_async(1).await })
    };
    until("the call is booked an hour ahead", || {
        stored_tat(&server, &key) > granted_tat
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    until("the cancel ran", || script_calls(&server) == calls + 2).await;
    assert_eq!(stored_tat(&server, &key), granted_tat);
}

/// A Redis bulkhead of one permit (tasks may wait a minute for it).
fn single(server: &RedisServer, name: &str) -> Arc<Bulkhead> {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_queue_timeout(Duration::from_secs(60));
    let options = patient(server).lease_ttl(Duration::from_secs(300));
    Arc::new(Bulkhead::redis_unregistered(name, config, &options).unwrap())
}

fn fleet_in_use(b: &Bulkhead) -> (u32, u32) {
    let fleet = b.redis_bulkhead().unwrap().fleet_counts().unwrap();
    (fleet.in_use, fleet.queued)
}

#[tokio::test]
async fn a_redis_bulkhead_admission_round_trip_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let b = single(&server, "async-rt-bulkhead");
    pause_writes(&server);
    let call = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>("ran") }).await })
    };
    until("the admission's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    assert!(!call.is_finished());
    resume(&server);
    let out = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call never finished")
        .unwrap();
    assert_eq!(out.unwrap(), "ran");
    // The release was awaited: nothing is held when the call returns.
    assert_eq!(b.metrics().in_flight, 0);
    assert_eq!(fleet_in_use(&b), (0, 0), "a lease leaked");
}

#[tokio::test]
async fn a_redis_bulkhead_release_round_trip_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let b = single(&server, "async-release-bulkhead");
    // One call first, unpaused: the I/O thread is started.
    b.execute_async(async { Ok::<_, ()>(()) }).await.unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let call = {
        let b = Arc::clone(&b);
        let go = Arc::clone(&go);
        tokio::spawn(async move {
            b.execute_async(async move {
                // Running: the test pauses Redis, then lets the call end.
                until("the test lets the call end", || go.load(SeqCst)).await;
                Ok::<_, ()>("ran")
            })
            .await
        })
    };
    until("the call runs", || b.metrics().in_flight == 1).await;
    pause_writes(&server);
    go.store(true, SeqCst);
    until("the release's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    assert!(!call.is_finished(), "the call ended before its release");
    resume(&server);
    let out = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call never finished")
        .unwrap();
    assert_eq!(out.unwrap(), "ran");
    assert_eq!(fleet_in_use(&b), (0, 0), "a lease leaked");
    assert_eq!(b.metrics().successes, 2);
}

#[tokio::test]
async fn a_bulkhead_call_dropped_during_its_admission_round_trip_releases_the_lease_it_got() {
    let server = RedisServer::start();
    let b = single(&server, "async-drop-bulkhead");
    assert_eq!(fleet_in_use(&b), (0, 0)); // loads the script
    let calls = script_calls(&server);
    pause_writes(&server);
    let call = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>("ran") }).await })
    };
    until("the admission's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    resume(&server);
    // The admission grants a lease when Redis resumes; its release follows.
    until("the grant and its release ran", || {
        script_calls(&server) == calls + 2
    })
    .await;
    assert_eq!(fleet_in_use(&b), (0, 0), "the dropped call's lease leaked");
    let m = b.metrics();
    assert_eq!((m.in_flight, m.successes, m.failures), (0, 0, 0));
}

#[tokio::test]
async fn a_bulkhead_call_dropped_while_its_release_is_in_flight_still_releases() {
    let server = RedisServer::start();
    let b = single(&server, "async-drop-release-bulkhead");
    let go = Arc::new(AtomicBool::new(false));
    let call = {
        let b = Arc::clone(&b);
        let go = Arc::clone(&go);
        tokio::spawn(async move {
            b.execute_async(async move {
                until("the test lets the call end", || go.load(SeqCst)).await;
                Ok::<_, ()>("ran")
            })
            .await
        })
    };
    until("the call runs", || b.metrics().in_flight == 1).await;
    let calls = script_calls(&server);
    pause_writes(&server);
    go.store(true, SeqCst);
    until("the release's round trip waits in Redis", || {
        blocked_clients(&server) == 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    resume(&server);
    until("the release ran", || script_calls(&server) == calls + 1).await;
    assert_eq!(fleet_in_use(&b), (0, 0), "the lease leaked");
}

#[tokio::test]
async fn a_bulkhead_task_dropped_while_it_waits_leaves_the_fleet_queue() {
    let server = RedisServer::start();
    let b = single(&server, "async-leave-bulkhead");
    let held = b.acquire().unwrap();
    let call = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.execute_async(async { Ok::<_, ()>("ran") }).await })
    };
    until("the task waits in the fleet's queue", || {
        b.metrics().queue_depth == 1
    })
    .await;
    assert_eq!(fleet_in_use(&b), (1, 1));
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    until("the task's place is left", || fleet_in_use(&b) == (1, 0)).await;
    drop(held);
    assert_eq!(fleet_in_use(&b), (0, 0));
}

/// A Redis breaker that opens on one failure, half-opens 50 ms later with
/// one probe that closes it, and syncs in the background only when it
/// starts (so that no background script call runs during a test).
fn fragile(server: &RedisServer, name: &str) -> Arc<CircuitBreaker> {
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(1)
        .with_reset_timeout(Duration::from_millis(50))
        .with_half_open_timeout(Duration::from_secs(60))
        .with_half_open_max_probes(1)
        .with_half_open_successes_to_close(1);
    let options = patient(server).sync_interval(Duration::from_secs(3600));
    CircuitBreaker::redis(name, config, &options).unwrap()
}

/// Spawns `breaker.execute_async(...)` whose call sets `ran`; returns the
/// task and a flag set just before its first poll.
fn spawn_breaker_call(
    breaker: &Arc<CircuitBreaker>,
    fail: bool,
    ran: &Arc<AtomicBool>,
) -> (
    tokio::task::JoinHandle<Result<(), Error<&'static str>>>,
    Arc<AtomicBool>,
) {
    let polled = Arc::new(AtomicBool::new(false));
    let task = {
        let breaker = Arc::clone(breaker);
        let (polled, ran) = (Arc::clone(&polled), Arc::clone(ran));
        tokio::spawn(async move {
            polled.store(true, SeqCst);
            breaker
                .execute_async(async move {
                    ran.store(true, SeqCst);
                    if fail { Err("down") } else { Ok(()) }
                })
                .await
        })
    };
    (task, polled)
}

#[tokio::test]
async fn a_redis_breaker_failure_report_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let breaker = fragile(&server, "async-report-breaker");
    // Heard from Redis: a closed call is admitted from the cache.
    breaker
        .execute_async(async { Ok::<_, &str>(()) })
        .await
        .unwrap();
    pause_writes(&server);
    let ran = Arc::new(AtomicBool::new(false));
    let (call, _) = spawn_breaker_call(&breaker, true, &ran);
    until("the call ran", || ran.load(SeqCst)).await;
    until("a round trip waits in Redis", || {
        blocked_clients(&server) >= 1
    })
    .await;
    // Its failure's report cannot have landed: Redis holds every script.
    assert!(!call.is_finished(), "the call ended before its report");
    resume(&server);
    let out = tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call never finished")
        .unwrap();
    assert!(matches!(out, Err(Error::Inner("down"))), "{out:?}");
    // The report was awaited: the fleet's breaker is open when it returns.
    assert_eq!(breaker.state(), BreakerState::Open);
    assert_eq!(breaker.metrics().failures, 1);
}

/// Trips `breaker` and waits until its next call asks Redis for a probe.
async fn trip_and_wait_for_a_probe(breaker: &CircuitBreaker) {
    let _ = breaker.execute_async(async { Err::<(), _>("down") }).await;
    assert_eq!(breaker.state(), BreakerState::Open);
    let engine = breaker.redis_breaker().unwrap();
    until("a probe is due", || {
        engine.admit_without_round_trip().is_none()
    })
    .await;
}

#[tokio::test]
async fn a_redis_breaker_probe_request_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let breaker = fragile(&server, "async-probe-breaker");
    trip_and_wait_for_a_probe(&breaker).await;
    pause_writes(&server);
    let ran = Arc::new(AtomicBool::new(false));
    let (call, polled) = spawn_breaker_call(&breaker, false, &ran);
    until("the call was polled", || polled.load(SeqCst)).await;
    until("a round trip waits in Redis", || {
        blocked_clients(&server) >= 1
    })
    .await;
    assert!(
        !call.is_finished() && !ran.load(SeqCst),
        "admitted before Redis answered"
    );
    resume(&server);
    tokio::time::timeout(PATIENCE, call)
        .await
        .expect("the call never finished")
        .unwrap()
        .unwrap();
    assert!(ran.load(SeqCst));
    // The probe's success was reported (awaited): the fleet closed.
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// Probe leases held in Redis (the breaker's `<key>:probes` set).
fn probe_leases(server: &RedisServer, breaker: &CircuitBreaker) -> u64 {
    let key = format!("{}:probes", breaker.redis_breaker().unwrap().key());
    server.command(&["ZCARD", &key]).parse().unwrap()
}

#[tokio::test]
async fn a_breaker_call_dropped_during_its_probe_request_frees_the_probe() {
    use stockade::redis::FleetAdmission;
    let server = RedisServer::start();
    let breaker = fragile(&server, "async-drop-probe-breaker");
    trip_and_wait_for_a_probe(&breaker).await;
    pause_writes(&server);
    let calls = script_calls(&server);
    let ran = Arc::new(AtomicBool::new(false));
    let (call, polled) = spawn_breaker_call(&breaker, false, &ran);
    until("the call was polled", || polled.load(SeqCst)).await;
    until("a round trip waits in Redis", || {
        blocked_clients(&server) >= 1
    })
    .await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    resume(&server);
    // The probe is granted when Redis resumes; the dropped call's ignored
    // verdict follows from the I/O thread and frees the one lease (which
    // would otherwise be held for a minute).
    until("the probe was granted and freed", || {
        script_calls(&server) >= calls + 2 && probe_leases(&server, &breaker) == 0
    })
    .await;
    let engine = breaker.redis_breaker().unwrap();
    let Ok(FleetAdmission::Probe { generation, lease }) = engine.admit() else {
        panic!("the dropped call's probe was not freed");
    };
    engine
        .verdict(generation, lease, stockade::breaker::Outcome::Ignored)
        .unwrap();
    assert!(!ran.load(SeqCst));
    let m = breaker.metrics();
    assert_eq!(
        (m.successes, m.failures, m.calls),
        (0, 1, 1),
        "the dropped call is not counted"
    );
}

#[tokio::test]
async fn a_breaker_probe_dropped_while_it_runs_frees_its_lease() {
    let server = RedisServer::start();
    let breaker = fragile(&server, "async-drop-running-probe-breaker");
    trip_and_wait_for_a_probe(&breaker).await;
    let ran = Arc::new(AtomicBool::new(false));
    let call = {
        let breaker = Arc::clone(&breaker);
        let ran = Arc::clone(&ran);
        tokio::spawn(async move {
            breaker
                .execute_async(async move {
                    ran.store(true, SeqCst);
                    core::future::pending::<Result<(), &str>>().await
                })
                .await
        })
    };
    until("the probe runs", || ran.load(SeqCst)).await;
    assert_eq!(probe_leases(&server, &breaker), 1);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    // Its ignored verdict goes from an I/O thread: the lease is freed long
    // before it would expire (a minute).
    until("the dropped probe's lease is freed", || {
        probe_leases(&server, &breaker) == 0
    })
    .await;
}

#[tokio::test]
async fn a_redis_bulkhead_guard_released_async_leaves_the_polling_thread_free() {
    let server = RedisServer::start();
    let b = single(&server, "async-guard-bulkhead");
    let guard = b.acquire_async().await.unwrap();
    assert_eq!(fleet_in_use(&b), (1, 0));
    pause_writes(&server);
    let released = AtomicBool::new(false);
    // One task, two futures: the release is polled first; the watcher
    // only runs while the release waits without blocking the thread.
    let release = async {
        guard.success_async().await;
        released.store(true, SeqCst);
    };
    let watch = async {
        until("the release's round trip waits in Redis", || {
            blocked_clients(&server) >= 1
        })
        .await;
        assert!(!released.load(SeqCst), "released before Redis answered");
        resume(&server);
    };
    tokio::time::timeout(PATIENCE, async { tokio::join!(release, watch) })
        .await
        .expect("the release never finished");
    assert!(released.load(SeqCst));
    assert_eq!(fleet_in_use(&b), (0, 0), "the lease leaked");
    let m = b.metrics();
    assert_eq!((m.in_flight, m.successes), (0, 1));
}

#[tokio::test]
async fn a_redis_bulkhead_task_that_times_out_has_left_the_fleet_queue_when_refused() {
    let server = RedisServer::start();
    let b = single(&server, "async-timeout-bulkhead");
    let held = b.acquire().unwrap();
    let refused = b.acquire_timeout_async(Duration::from_millis(50)).await;
    assert!(
        matches!(refused, Err(Error::QueueTimeout { .. })),
        "{refused:?}"
    );
    // The leave was awaited: no place is left behind in Redis.
    assert_eq!(fleet_in_use(&b), (1, 0));
    assert_eq!(b.metrics().queue_depth, 0);
    drop(held);
    assert_eq!(fleet_in_use(&b), (0, 0));
}

/// The I/O threads wake the task through its waker, on any executor: here
/// async-io's `block_on`, outside any tokio runtime.
#[cfg(feature = "async-io")]
#[test]
fn a_redis_round_trip_wakes_a_task_on_async_io() {
    use core::future::{Future, poll_fn};
    use core::task::Poll;
    let server = RedisServer::start();
    let b = single(&server, "async-io-bulkhead");
    pause_writes(&server);
    async_io::block_on(async {
        let mut call = core::pin::pin!(b.execute_async(async { Ok::<_, ()>("ran") }));
        // Its admission's round trip waits in Redis: the first poll
        // returns at once, without an answer.
        poll_fn(|cx| {
            assert!(
                call.as_mut().poll(cx).is_pending(),
                "decided while Redis is paused"
            );
            Poll::Ready(())
        })
        .await;
        let start = std::time::Instant::now();
        while blocked_clients(&server) == 0 {
            assert!(
                start.elapsed() < PATIENCE,
                "the round trip never reached Redis"
            );
            std::thread::yield_now();
        }
        resume(&server);
        let mut watchdog = core::pin::pin!(async_io::Timer::after(PATIENCE));
        let out = poll_fn(|cx| {
            if let Poll::Ready(out) = call.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            assert!(
                watchdog.as_mut().poll(cx).is_pending(),
                "the call never finished"
            );
            Poll::Pending
        })
        .await;
        assert_eq!(out.unwrap(), "ran");
    });
    assert_eq!(fleet_in_use(&b), (0, 0));
}
