//! The fleet-wide rate limiter against a real `redis-server` (feature
//! `redis`): the script decides exactly as the core machine, several
//! processes share one strict limit, keys expire and share one Cluster
//! slot, and the server's failures (kill -9, CLIENT PAUSE, SCRIPT FLUSH)
//! end in bounded calls and the configured fallback.
//!
//! This binary re-executes itself to play the other processes of a fleet,
//! so it has its own `main`. Every wait has a watchdog. Each test starts
//! its own server.
//!
//! Run: `cargo test -p stockade --features redis --test redis_limiter`.

#[path = "common/redis_server.rs"]
mod redis_server;
#[macro_use]
#[path = "common/processes.rs"]
mod processes;

use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use processes::finish;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use redis_server::{RedisServer, cluster_slot};
use stockade::blocking::{Error, EventKind, RateLimiter as Blocking};
use stockade::clock::{Clock, ManualClock, MonotonicClock};
use stockade::limiter::{Mode, RateLimitError, RateLimiter, RateLimiterConfig};
use stockade::redis::{
    Fallback, RedisError, RedisLimitError, RedisOptions, RedisRateLimiter, RedisReservation,
    StoreFailure, Via,
};

const ROLE: &str = "STOCKADE_TEST_ROLE";
const WATCHDOG: Duration = Duration::from_secs(60);

/// A name no other test of this run uses.
fn unique(stem: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{stem}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// Runs `f` on a thread and fails if it takes longer than `limit`.
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("watchdog: no result within {limit:?}"))
}

/// `EVALSHA` calls the server has served (INFO commandstats).
fn evalsha_calls(server: &RedisServer) -> u64 {
    let info = server.command(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

// --- the script decides as the core ---------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Try(u32),
    Reserve(u32, Duration),
    /// Cancel the outstanding reservation at this index (modulo).
    Cancel(usize),
    /// Move the clock to an outstanding reservation's `ready_at` (index
    /// modulo), plus -1, 0 or +1 µs, if that is not in the past.
    ToReady(usize, i8),
    AdvanceUs(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..=4).prop_map(Op::Try),
        3 => (0u32..=4, 0u64..400_000_000).prop_map(|(n, ns)| Op::Reserve(n, Duration::from_nanos(ns))),
        2 => any::<usize>().prop_map(Op::Cancel),
        1 => (any::<usize>(), -1i8..=1).prop_map(|(i, d)| Op::ToReady(i, d)),
        3 => prop_oneof![0u64..=5, 0u64..200_000].prop_map(Op::AdvanceUs),
    ]
}

/// Configs whose emission interval is a whole number of microseconds (the
/// case where the script must decide exactly as the core).
fn whole_micros_config() -> impl Strategy<Value = RateLimiterConfig> {
    (
        1u32..=8,
        1u64..=50_000,
        any::<bool>(),
        proptest::option::of(1u32..=8),
        0u32..=6,
        0u64..500_000_000,
    )
        .prop_map(|(n, interval_us, strict, burst, queue, timeout_ns)| {
            let mode = if strict { Mode::Strict } else { Mode::Bursty };
            let burst = burst.map(|b| b.min(n));
            let per_period = match (strict, burst) {
                (true, Some(b)) => n - b + 1,
                (true, None) => n,
                (false, _) => n,
            };
            RateLimiterConfig {
                requests_per_period: n,
                period: Duration::from_micros(interval_us * u64::from(per_period)),
                burst,
                max_queue_size: queue,
                queue_timeout: Duration::from_nanos(timeout_ns),
                mode,
            }
        })
}

fn differential_case(
    options: &RedisOptions,
    config: RateLimiterConfig,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let core = RateLimiter::new(config).unwrap();
    let engine = RedisRateLimiter::new(&unique("diff"), config, options).unwrap();
    prop_assert_eq!(engine.emission_interval(), core.emission_interval());
    let clock = ManualClock::new();
    // The script's clock: microseconds since 1970, as Redis TIME reads.
    let base_us = now_us();
    let at = |clock: &ManualClock| base_us + clock.now().as_nanos() / 1000;
    let mut outstanding: Vec<(stockade::limiter::ReservationToken, RedisReservation)> = Vec::new();
    for op in ops {
        match op {
            Op::Try(n) => {
                let ours = core.try_acquire_n(*n, &clock);
                let theirs = engine.try_acquire_at(*n, at(&clock));
                match (ours, theirs) {
                    (Ok(()), Ok(grant)) => {
                        prop_assert!(*n == 0 || grant.via == Via::Redis);
                    }
                    (Err(e), Err(RedisLimitError::Limited(f))) => prop_assert_eq!(e, f),
                    (a, b) => prop_assert!(false, "{op:?}: core {a:?}, script {b:?}"),
                }
            }
            Op::Reserve(n, max_wait) => {
                let ours = core.reserve(*n, *max_wait, &clock);
                let theirs = engine.reserve_at(*n, *max_wait, at(&clock));
                match (ours, theirs) {
                    (Ok(a), Ok(b)) => {
                        prop_assert_eq!(
                            (a.wait(), a.permits()),
                            (b.wait(), b.permits()),
                            "{:?}",
                            op
                        );
                        if !a.is_immediate() {
                            outstanding.push((a.into_token(), b));
                        }
                    }
                    (Err(e), Err(RedisLimitError::Limited(f))) => prop_assert_eq!(e, f, "{:?}", op),
                    (a, b) => prop_assert!(false, "{op:?}: core {a:?}, script {b:?}"),
                }
            }
            Op::Cancel(i) => {
                if !outstanding.is_empty() {
                    let (token, reservation) = outstanding.remove(i % outstanding.len());
                    let ours = core.cancel(token, &clock);
                    let theirs = engine.cancel_at(reservation, at(&clock));
                    prop_assert_eq!(ours, theirs, "{:?}", op);
                }
            }
            Op::ToReady(i, delta) => {
                if !outstanding.is_empty() {
                    let ready = outstanding[i % outstanding.len()].0.ready_at().as_nanos();
                    let target = ready.saturating_add_signed(i64::from(*delta) * 1000);
                    if target > clock.now().as_nanos() {
                        clock.set(stockade::clock::Timestamp::from_nanos(target));
                    }
                }
            }
            Op::AdvanceUs(us) => clock.advance(Duration::from_micros(*us)),
        }
    }
    Ok(())
}

fn script_decides_as_the_core() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url()).command_timeout(Duration::from_secs(2));
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                whole_micros_config(),
                proptest::collection::vec(op(), 1..60),
            ),
            |(config, ops)| differential_case(&options, config, &ops),
        )
        .unwrap();

    // A strict interval that is not whole microseconds is rounded up: the
    // script never admits more than the core.
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(3)
        .with_period(Duration::from_millis(1))
        .with_mode(Mode::Strict);
    let engine = RedisRateLimiter::new(&unique("round"), config, &options).unwrap();
    let core = RateLimiter::new(config).unwrap();
    assert_eq!(core.emission_interval(), Duration::from_nanos(333_334));
    assert_eq!(engine.emission_interval(), Duration::from_micros(334));
    let t0 = now_us();
    assert!(engine.try_acquire_at(1, t0).is_ok());
    assert_eq!(
        engine.try_acquire_at(1, t0 + 333),
        Err(RedisLimitError::Limited(RateLimitError::RateLimited {
            retry_after: Duration::from_micros(1)
        }))
    );
    assert!(engine.try_acquire_at(1, t0 + 334).is_ok());
}

// --- the local fast paths --------------------------------------------------

fn refusals_are_cached_and_leases_serve_locally() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url());
    // One permit per second: after the first, every try is refused.
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(1));
    let engine = RedisRateLimiter::new(&unique("cache"), config, &options).unwrap();
    assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
    let calls = evalsha_calls(&server);
    for _ in 0..100 {
        let refused = engine.try_acquire(1).unwrap_err();
        let RedisLimitError::Limited(RateLimitError::RateLimited { retry_after }) = refused else {
            panic!("{refused:?}")
        };
        assert!(retry_after <= Duration::from_secs(1) && retry_after > Duration::from_millis(500));
    }
    // A reservation that would wait longer than allowed: refused locally too.
    assert!(matches!(
        engine.reserve(1, Duration::from_millis(1)),
        Err(RedisLimitError::Limited(RateLimitError::WaitTooLong { .. }))
    ));
    assert_eq!(
        evalsha_calls(&server),
        calls,
        "cached refusals made no round trip"
    );

    // Leasing: one script call takes 5 permits, 4 are handed out locally.
    let config = RateLimiterConfig::DEFAULT.with_requests_per_period(100);
    let leasing = options
        .clone()
        .lease_permits(5)
        .lease_ttl(Duration::from_millis(200));
    let engine = RedisRateLimiter::new(&unique("lease"), config, &leasing).unwrap();
    let calls = evalsha_calls(&server);
    let vias: Vec<Via> = (0..5).map(|_| engine.try_acquire(1).unwrap().via).collect();
    assert_eq!(
        vias,
        [Via::Redis, Via::Local, Via::Local, Via::Local, Via::Local]
    );
    assert_eq!(evalsha_calls(&server), calls + 1);
    assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
    // Redis counts leased permits at the grant: another process sees
    // them gone. Burst 10, one permit every 100 ms: a lease of 4 takes
    // 1 + 3.
    let name = unique("lease10");
    let burst10 = RateLimiterConfig::DEFAULT
        .with_requests_per_period(100)
        .with_period(Duration::from_secs(10))
        .with_burst(10);
    let counted = RedisRateLimiter::new(&name, burst10, &options.clone().lease_permits(4)).unwrap();
    let probe = RedisRateLimiter::new(&name, burst10, &options).unwrap();
    assert_eq!(counted.try_acquire(1).unwrap().via, Via::Redis);
    let free = (0..10)
        .take_while(|_| probe.try_acquire(1).is_ok_and(|g| g.via == Via::Redis))
        .count();
    assert_eq!(free, 6, "the 3 leased permits are counted in Redis");
    // Unused leased permits die with the lease.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(250) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
}

// --- keys -------------------------------------------------------------------

fn keys_expire_when_idle_and_share_one_slot() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url()).prefix("keytest");
    // 10 per 200 ms: a burst of 10 refills within 200 ms.
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(10)
        .with_period(Duration::from_millis(200));
    let name = unique("idle");
    let engine = RedisRateLimiter::new(&name, config, &options).unwrap();
    let key = engine.key().to_string();
    assert_eq!(key, format!("keytest:v1:{{limiter:{name}}}"));
    assert_eq!(server.command(&["EXISTS", &key]), "0", "nothing before use");
    for _ in 0..10 {
        engine.try_acquire(1).unwrap();
    }
    let pttl: i64 = server.command(&["PTTL", &key]).parse().unwrap();
    // The bucket is full again within 200 ms; the key lives 1 s more.
    assert!(pttl > 1000 && pttl <= 1200, "PTTL {pttl}");
    let start = Instant::now();
    while server.command(&["EXISTS", &key]) == "1" {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "watchdog: key never expired"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Gone a second after the bucket is full: a full burst is granted again.
    assert!(start.elapsed() >= Duration::from_millis(900));
    for _ in 0..10 {
        assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
    }
    // The slot function is the specification's (CRC16 test vector; this
    // binary has no harness to run the helper's own test).
    // CRC16("123456789") = 0x31C3, already below 16384.
    assert_eq!(cluster_slot("123456789"), 0x31c3);
    // Every key the object has hashes to the slot of its hash tag.
    let keys = server.command(&["KEYS", "keytest:*"]);
    assert!(!keys.is_empty());
    for k in keys.lines() {
        assert_eq!(
            cluster_slot(k),
            cluster_slot(&format!("{{limiter:{name}}}")),
            "{k}"
        );
        assert_eq!(cluster_slot(k), cluster_slot(&key));
    }
}

fn construction_needs_no_server_and_checks_its_input() {
    // Nothing listens on this port: construction still succeeds.
    let server = RedisServer::start();
    let url = server.url();
    drop(server);
    let options = RedisOptions::new(url).fallback(Fallback::FailOpen);
    let limiter = Blocking::redis(&unique("lazy"), RateLimiterConfig::DEFAULT, &options).unwrap();
    assert!(
        limiter.try_acquire(1).is_ok(),
        "fail-open while nobody answers"
    );
    assert_eq!(limiter.metrics().fallback_decisions, 1);
    limiter.dispose();
    // Bad input: typed errors naming what is wrong.
    assert!(matches!(
        RedisRateLimiter::new("a{b", RateLimiterConfig::DEFAULT, &options),
        Err(RedisError::InvalidName { .. })
    ));
    assert!(matches!(
        RedisRateLimiter::new(
            "x",
            RateLimiterConfig::DEFAULT.with_requests_per_period(0),
            &options
        ),
        Err(RedisError::InvalidConfig(_))
    ));
    // A lead beyond 2^51 µs (71 years) would not be exact in Lua doubles.
    let yearly = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_secs(72 * 365 * 86_400));
    match RedisRateLimiter::new("x", yearly, &options) {
        Err(RedisError::InvalidConfig(e)) => assert_eq!(e.option.as_str(), "burst"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Blocking::redis(
            "x",
            RateLimiterConfig::DEFAULT,
            &options.clone().command_timeout(Duration::ZERO)
        ),
        Err(Error::Redis(RedisError::InvalidOption {
            option: "command_timeout",
            ..
        }))
    ));
}

fn client_time_source_passes_the_hosts_clock() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url()).time(stockade::redis::TimeSource::Client);
    let engine =
        RedisRateLimiter::new(&unique("client"), RateLimiterConfig::DEFAULT, &options).unwrap();
    let before = now_us();
    let grant = engine.try_acquire(1).unwrap();
    let after = now_us();
    let at = grant.server_time_us.unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
}

fn script_flush_reloads_the_script() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url());
    let engine =
        RedisRateLimiter::new(&unique("flush"), RateLimiterConfig::DEFAULT, &options).unwrap();
    assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
    assert_eq!(server.command(&["SCRIPT", "FLUSH"]), "+OK");
    assert_eq!(engine.try_acquire(1).unwrap().via, Via::Redis);
    assert_eq!(engine.fallback_decisions(), 0);
    assert!(engine.is_available());
}

fn config_mismatch_is_typed_and_adopt_works() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url());
    let name = unique("mismatch");
    let stored = RateLimiterConfig::DEFAULT.with_requests_per_period(5);
    let first = RedisRateLimiter::new(&name, stored, &options).unwrap();
    first.try_acquire(1).unwrap();
    let other = RateLimiterConfig::DEFAULT.with_requests_per_period(7);
    let second = RedisRateLimiter::new(&name, other, &options).unwrap();
    match second.try_acquire(1) {
        Err(RedisLimitError::Redis(RedisError::ConfigMismatch { key, stored, ours })) => {
            assert_eq!(key, first.key());
            assert!(stored.contains("requests_per_period=5"), "{stored}");
            assert!(ours.contains("requests_per_period=7"), "{ours}");
        }
        other => panic!("{other:?}"),
    }
    // Through the blocking API: a typed error on the call, not at
    // construction (Redis is contacted lazily), and not a fallback.
    let blocking = Blocking::redis(&name, other, &options).unwrap();
    assert!(matches!(
        blocking.try_acquire(1),
        Err(Error::Redis(RedisError::ConfigMismatch { .. }))
    ));
    assert!(matches!(
        blocking.acquire(1),
        Err(Error::Redis(RedisError::ConfigMismatch { .. }))
    ));
    assert_eq!(blocking.metrics().fallback_decisions, 0);
    blocking.dispose();

    let adopting =
        RedisRateLimiter::new(&name, other, &options.clone().adopt_stored_config(true)).unwrap();
    assert!(adopting.try_acquire(1).is_ok());
    assert_eq!(adopting.config(), stored);
    assert_eq!(
        second.fallback_decisions() + adopting.fallback_decisions(),
        0
    );
}

// --- the blocking limiter ---------------------------------------------------

fn blocking_limiter_queues_and_dispose_cancels() {
    let server = RedisServer::start();
    let options = RedisOptions::new(server.url());
    // One permit per 400 ms, strict.
    let config = RateLimiterConfig::DEFAULT
        .with_requests_per_period(1)
        .with_period(Duration::from_millis(400))
        .with_mode(Mode::Strict);
    let name = unique("blocking");
    let limiter = Blocking::redis(&name, config, &options).unwrap();
    assert!(limiter.is_redis());
    assert!(
        Arc::ptr_eq(&Blocking::get(&name).unwrap(), &limiter),
        "registered like new"
    );
    assert!(matches!(
        Blocking::redis(&name, config, &options),
        Err(Error::NameTaken { .. })
    ));
    // The first runs at once; the second waits for its slot (~400 ms).
    let start = Instant::now();
    assert_eq!(limiter.execute(|| Ok::<_, ()>(1)).unwrap(), 1);
    assert_eq!(limiter.execute(|| Ok::<_, ()>(2)).unwrap(), 2);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(390), "waited {waited:?}");
    assert!(matches!(
        limiter.try_acquire(1),
        Err(Error::RateLimited { .. })
    ));
    // A third waits; dispose wakes it and it hands its booking back.
    let waiter = {
        let limiter = Arc::clone(&limiter);
        std::thread::spawn(move || limiter.acquire(1))
    };
    let engine = limiter.redis_limiter().unwrap();
    let deadline = Instant::now() + WATCHDOG;
    while limiter.metrics().queue_depth == 0 {
        assert!(
            Instant::now() < deadline,
            "watchdog: the waiter never booked"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    limiter.dispose();
    let outcome = within(WATCHDOG, move || waiter.join().unwrap());
    assert!(matches!(outcome, Err(Error::Disposed)), "{outcome:?}");
    // Its slot was handed back: the next booking waits one interval at most.
    let probe = RedisRateLimiter::new(&name, config, &options).unwrap();
    let next = probe.reserve(1, Duration::from_secs(5)).unwrap();
    assert!(
        next.wait() <= Duration::from_millis(400),
        "{:?}",
        next.wait()
    );
    let _ = engine;
    let m = limiter.metrics();
    assert_eq!(m.fallback_decisions, 0);
    assert!(m.successes >= 2 && m.rejections >= 1, "{m:?}");
}

// --- failures ---------------------------------------------------------------

fn fast_options(server: &RedisServer, fallback: Fallback) -> RedisOptions {
    RedisOptions::new(server.url())
        .command_timeout(Duration::from_millis(100))
        .connect_timeout(Duration::from_millis(100))
        .guard_failures(3)
        .guard_reset_timeout(Duration::from_millis(500))
        .fallback(fallback)
        .expected_instances(2)
}

fn kill_restart(fallback: Fallback) {
    let mut server = RedisServer::start();
    let options = fast_options(&server, fallback);
    // 20 per second, burst 20: the local share is 10.
    let config = RateLimiterConfig::DEFAULT.with_requests_per_period(20);
    let limiter = Blocking::redis(&unique(fallback.name()), config, &options).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = Arc::clone(&events);
        limiter.subscribe(move |e| {
            if matches!(
                e.kind,
                EventKind::StoreUnavailable { .. } | EventKind::StoreRecovered
            ) {
                events.lock().unwrap().push(e.kind.clone());
            }
        });
    }
    limiter.try_acquire(1).unwrap();
    server.kill();
    let bound = options.command_timeout_value() * 2;
    let mut outcomes = Vec::new();
    for i in 0..30 {
        let started = Instant::now();
        // Both paths: the non-waiting one and the queue's (which never
        // waits here, with a zero timeout).
        let outcome = if i % 2 == 0 {
            limiter.try_acquire(1)
        } else {
            limiter.acquire_timeout(1, Duration::ZERO)
        };
        let took = started.elapsed();
        assert!(
            took <= bound,
            "{fallback:?}: a call took {took:?} with the server dead"
        );
        outcomes.push(outcome);
    }
    let granted = outcomes.iter().filter(|o| o.is_ok()).count();
    match fallback {
        Fallback::Local => {
            // The local share (10) granted, the rest refused by the limit.
            assert_eq!(granted, 10, "{outcomes:?}");
            assert!(
                outcomes
                    .iter()
                    .all(|o| o.is_ok() || matches!(o, Err(Error::RateLimited { .. })))
            );
        }
        Fallback::FailOpen => assert_eq!(granted, 30),
        _ => {
            assert_eq!(granted, 0);
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, Err(Error::Redis(RedisError::Unavailable { .. })))),
                "{outcomes:?}"
            );
        }
    }
    assert_eq!(limiter.metrics().fallback_decisions, 30);
    {
        let kinds = events.lock().unwrap();
        assert_eq!(kinds.len(), 1, "{kinds:?}");
        assert!(
            matches!(
                kinds[0],
                EventKind::StoreUnavailable {
                    cause: StoreFailure::Connection | StoreFailure::Timeout
                }
            ),
            "{kinds:?}"
        );
    }
    let down_since = Instant::now();
    server.restart();
    let restarted = Instant::now();
    let engine = limiter.redis_limiter().unwrap();
    loop {
        if engine.try_acquire(1).is_ok_and(|g| g.via == Via::Redis) {
            break;
        }
        assert!(
            restarted.elapsed() <= options.guard_reset_timeout_value() + Duration::from_millis(500),
            "{fallback:?}: not recovered {:?} after the restart",
            restarted.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = down_since;
    let kinds = events.lock().unwrap().clone();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(matches!(kinds[0], EventKind::StoreUnavailable { .. }));
    assert_eq!(kinds[1], EventKind::StoreRecovered);
    limiter.dispose();
}

fn kill_9_falls_back_locally_and_recovers() {
    kill_restart(Fallback::Local);
}

fn kill_9_fails_open_and_recovers() {
    kill_restart(Fallback::FailOpen);
}

fn kill_9_fails_closed_and_recovers() {
    kill_restart(Fallback::FailClosed);
}

fn client_pause_bounds_every_call() {
    let server = RedisServer::start();
    let options = fast_options(&server, Fallback::Local);
    let limiter = Blocking::redis(&unique("pause"), RateLimiterConfig::DEFAULT, &options).unwrap();
    limiter.try_acquire(1).unwrap();
    assert_eq!(server.command(&["CLIENT", "PAUSE", "500", "ALL"]), "+OK");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while started.elapsed() < Duration::from_millis(700) {
        let t = Instant::now();
        let _ = limiter.try_acquire(1);
        slowest = slowest.max(t.elapsed());
        calls += 1;
    }
    let bound = options.command_timeout_value() * 2;
    assert!(
        slowest <= bound,
        "slowest call {slowest:?} during CLIENT PAUSE"
    );
    assert!(calls > 3 && limiter.metrics().fallback_decisions >= 1);
    // After the pause, Redis decides again (at most a guard reset later).
    let engine = limiter.redis_limiter().unwrap();
    let deadline = Instant::now() + options.guard_reset_timeout_value() + Duration::from_secs(1);
    while !engine.try_acquire(1).is_ok_and(|g| g.via == Via::Redis) {
        assert!(
            Instant::now() < deadline,
            "not recovered after CLIENT PAUSE"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    limiter.dispose();
}

// --- several processes, one strict limit -----------------------------------

const FLEET_N: u32 = 50;
const FLEET_P: Duration = Duration::from_millis(100);
const FLEET_RUN: Duration = Duration::from_secs(3);

fn fleet_config() -> RateLimiterConfig {
    RateLimiterConfig::DEFAULT
        .with_requests_per_period(FLEET_N)
        .with_period(FLEET_P)
        .with_mode(Mode::Strict)
        .with_max_queue_size(1000)
        .with_queue_timeout(Duration::from_secs(10))
}

/// A child of the fleet: books permits one at a time (at most three
/// ahead), sleeps until each is ready, and prints Redis's time of each
/// grant.
fn fleet_child() {
    let url = std::env::var("STOCKADE_TEST_URL").unwrap();
    let name = std::env::var("STOCKADE_TEST_NAME").unwrap();
    let until_us: u64 = std::env::var("STOCKADE_TEST_UNTIL")
        .unwrap()
        .parse()
        .unwrap();
    let options = RedisOptions::new(url).command_timeout(Duration::from_secs(1));
    let engine = RedisRateLimiter::new(&name, fleet_config(), &options).unwrap();
    let clock = MonotonicClock::new();
    let mut out = String::new();
    // Up to three bookings ahead, so that a child the scheduler delays
    // for a few intervals leaves no gap in the fleet's queue.
    let mut booked = std::collections::VecDeque::new();
    loop {
        while booked.len() < 3 && now_us() < until_us {
            let next = engine.reserve(1, Duration::from_secs(10)).unwrap();
            assert_eq!(next.via(), Via::Redis);
            out.push_str(&format!("{}\n", next.server_ready_at_us().unwrap()));
            booked.push_back(next);
        }
        let Some(first) = booked.pop_front() else {
            break;
        };
        while clock.now() < first.ready_at() {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    assert_eq!(engine.fallback_decisions(), 0);
    print!("{out}");
}

fn strict_limit_holds_across_processes() {
    let server = RedisServer::start();
    let name = unique("fleet");
    let until = now_us() + FLEET_RUN.as_micros() as u64;
    let children: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .env(ROLE, "fleet")
                .env("STOCKADE_TEST_URL", server.url())
                .env("STOCKADE_TEST_NAME", &name)
                .env("STOCKADE_TEST_UNTIL", until.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut grants: Vec<u64> = Vec::new();
    let mut per_child = Vec::new();
    for child in children {
        let out = finish(child, WATCHDOG);
        let times: Vec<u64> = out.lines().map(|l| l.parse().unwrap()).collect();
        per_child.push(times.len());
        grants.extend(times);
    }
    grants.sort_unstable();
    let n = FLEET_N as usize;
    let p = FLEET_P.as_micros() as u64;
    assert!(
        per_child.iter().all(|&c| c > 10),
        "every process was served: {per_child:?}"
    );
    // Every half-open window of length P holds at most N grants.
    for i in 0..grants.len().saturating_sub(n) {
        assert!(
            grants[i + n] - grants[i] >= p,
            "{} grants within {} µs from {}",
            n + 1,
            grants[i + n] - grants[i],
            grants[i]
        );
    }
    // Throughput: at least 99 % of N / P over the run.
    let span = grants[grants.len() - 1] - grants[0];
    let expected = span as f64 * f64::from(FLEET_N) / p as f64;
    let got = (grants.len() - 1) as f64;
    println!(
        "fleet: {} grants by {per_child:?} in {span} µs: {:.2} % of N/P",
        grants.len(),
        100.0 * got / expected
    );
    assert!(
        span >= (FLEET_RUN.as_micros() as u64) * 9 / 10,
        "the run lasted {span} µs"
    );
    assert!(got >= 0.99 * expected, "{got} grants, {expected} expected");
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        match role.as_str() {
            "fleet" => fleet_child(),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let tests = tests![
        script_decides_as_the_core,
        refusals_are_cached_and_leases_serve_locally,
        keys_expire_when_idle_and_share_one_slot,
        construction_needs_no_server_and_checks_its_input,
        client_time_source_passes_the_hosts_clock,
        script_flush_reloads_the_script,
        config_mismatch_is_typed_and_adopt_works,
        blocking_limiter_queues_and_dispose_cancels,
        kill_9_falls_back_locally_and_recovers,
        kill_9_fails_open_and_recovers,
        kill_9_fails_closed_and_recovers,
        client_pause_bounds_every_call,
        strict_limit_holds_across_processes,
    ];
    processes::run_tests("redis_limiter", &tests);
}
