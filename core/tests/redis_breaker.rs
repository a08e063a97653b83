//! The fleet-wide circuit breaker against a real `redis-server`: every
//! test starts its own server; "other hosts" are real processes (this
//! binary re-executed in a child role, see `child_role`). Every wait has a
//! watchdog; no speed is asserted, only the bounds the docs state.
//!
//! Run: `cargo test -p stockade --features redis --test redis_breaker`.

// The shared harness, as it is: not every helper in it is used here.
#[path = "common/redis_server.rs"]
mod redis_server;
#[macro_use]
#[path = "common/processes.rs"]
mod processes;

use core::time::Duration;
use processes::finish;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use redis_server::{RedisServer, cluster_slot};
use stockade::blocking::{CircuitBreaker, Error, EventKind};
use stockade::breaker::{BreakerConfig, BreakerState, Outcome};
use stockade::redis::{Fallback, FleetAdmission, RedisCircuitBreaker, RedisError, RedisOptions};

const ROLE: &str = "STOCKADE_BREAKER_ROLE";
const URL: &str = "STOCKADE_BREAKER_URL";
const NAME: &str = "STOCKADE_BREAKER_NAME";
const WATCHDOG: Duration = Duration::from_secs(30);
const SYNC: Duration = Duration::from_millis(300);
const COMMAND: Duration = Duration::from_millis(100);

/// Polls `done` until it holds; fails the test after `limit`.
#[track_caller]
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "watchdog: {what} not within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn options(url: &str) -> RedisOptions {
    RedisOptions::new(url)
        .sync_interval(SYNC)
        .command_timeout(COMMAND)
        .connect_timeout(COMMAND)
}

fn trip_config() -> BreakerConfig {
    BreakerConfig::DEFAULT
        .with_failure_threshold(3)
        .with_reset_timeout(Duration::from_secs(30))
}

fn probe_config() -> BreakerConfig {
    BreakerConfig::DEFAULT
        .with_failure_threshold(1)
        .with_reset_timeout(Duration::from_millis(200))
        .with_half_open_timeout(Duration::from_secs(20))
        .with_half_open_max_probes(2)
        .with_half_open_successes_to_close(2)
}

/// A raw connection for the tests' own counters (not the library's).
fn raw(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

fn cmd_i64(con: &mut redis::Connection, args: &[&str]) -> i64 {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<Option<i64>>(con).unwrap().unwrap_or(0)
}

fn redis_time_us(con: &mut redis::Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(con).unwrap();
    s * 1_000_000 + us
}

fn spawn(role: &str, url: &str, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_role",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(URL, url)
        .env(NAME, name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Waits for a forked child (checking `watchdog` meanwhile); it must exit 0.
fn wait_child(pid: libc::pid_t, watchdog: &dyn Fn()) {
    let mut status = 0;
    loop {
        watchdog();
        // SAFETY: `pid` is this process's child; `status` is writable.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid failed");
        if r == pid {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "forked child failed: {status}"
    );
}

/// The other processes of the fleet. Not a test of its own: ignored, run
/// only by `spawn`.
#[test]
#[ignore = "a child role, run by the other tests"]
fn child_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let url = std::env::var(URL).unwrap();
    let name = std::env::var(NAME).unwrap();
    let mut con = raw(&url);
    let start = Instant::now();
    let watchdog = || assert!(start.elapsed() < WATCHDOG, "watchdog: child {role}");
    match role.as_str() {
        // Runs closed calls until one is refused; records when (Redis time).
        "watch" => {
            let b = CircuitBreaker::redis(&name, trip_config(), &options(&url)).unwrap();
            let engine = b.redis_breaker().unwrap();
            while engine.generation() == 0 {
                watchdog();
                std::thread::sleep(Duration::from_millis(1));
            }
            cmd_i64(&mut con, &["INCR", "test:ready"]);
            loop {
                watchdog();
                match b.execute(|| Ok::<_, ()>(())) {
                    Ok(()) => std::thread::sleep(Duration::from_millis(1)),
                    Err(Error::BreakerOpen { .. }) => break,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            let seen = redis_time_us(&mut con);
            let _: () = redis::cmd("SET")
                .arg(format!("test:seen:{}", std::process::id()))
                .arg(seen)
                .query(&mut con)
                .unwrap();
        }
        // Tries to probe until released; counts probes and refusals.
        "probe" => {
            let b = CircuitBreaker::redis(&name, probe_config(), &options(&url)).unwrap();
            while cmd_i64(&mut con, &["EXISTS", "test:release"]) == 0 {
                watchdog();
                let ran = b.execute(|| {
                    cmd_i64(&mut con, &["INCR", "test:probes"]);
                    while cmd_i64(&mut con, &["EXISTS", "test:release"]) == 0 {
                        watchdog();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok::<_, ()>(())
                });
                match ran {
                    Ok(()) => {}
                    Err(Error::BreakerOpen { .. }) => {
                        cmd_i64(&mut con, &["INCR", "test:refused"]);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        }
        // Takes a probe and holds it until killed.
        "hold" => {
            let b = CircuitBreaker::redis(
                &name,
                probe_config().with_half_open_max_probes(1),
                &options(&url).lease_ttl(Duration::from_millis(500)),
            )
            .unwrap();
            loop {
                watchdog();
                let _ = b.execute(|| {
                    cmd_i64(&mut con, &["INCR", "test:probes"]);
                    loop {
                        watchdog();
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    #[allow(unreachable_code)]
                    Ok::<_, ()>(())
                });
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // A breaker made before a fork: the forked child runs closed calls
        // until the fleet's trip reaches it, and records when.
        "fork" => {
            let b = CircuitBreaker::redis(&name, trip_config(), &options(&url)).unwrap();
            let engine = b.redis_breaker().unwrap();
            while engine.generation() == 0 {
                watchdog();
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
            // SAFETY: `fork` has no preconditions; the child runs only the
            // closure below and leaves through `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let checks = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                    let mut con = raw(&url);
                    cmd_i64(&mut con, &["INCR", "test:ready"]);
                    loop {
                        watchdog();
                        match b.execute(|| Ok::<_, ()>(())) {
                            Ok(()) => std::thread::sleep(Duration::from_millis(1)),
                            Err(Error::BreakerOpen { .. }) => break,
                            Err(e) => panic!("unexpected {e:?}"),
                        }
                    }
                    let seen = redis_time_us(&mut con);
                    let _: () = redis::cmd("SET")
                        .arg("test:seen:fork")
                        .arg(seen)
                        .query(&mut con)
                        .unwrap();
                }));
                // SAFETY: ends the child without running the parent's
                // exit handlers or returning into the harness.
                unsafe { libc::_exit(i32::from(checks.is_err())) };
            }
            wait_child(pid, &watchdog);
        }
        // A forked child is a host of its own for the quorum: one failure
        // in the child and one in the parent open a breaker that needs
        // two failures from two hosts.
        "fork-quorum" => {
            let config = trip_config().with_failure_threshold(2);
            let b = CircuitBreaker::redis(&name, config, &options(&url).quorum(2)).unwrap();
            assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
            // SAFETY: `fork` has no preconditions; the child runs only the
            // closure below and leaves through `_exit`.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let checks = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                    assert!(matches!(
                        b.execute(|| Err::<(), _>("down")),
                        Err(Error::Inner("down"))
                    ));
                    assert_eq!(
                        b.redis_breaker().unwrap().sync().unwrap(),
                        BreakerState::Closed
                    );
                }));
                // SAFETY: ends the child without running the parent's
                // exit handlers or returning into the harness.
                unsafe { libc::_exit(i32::from(checks.is_err())) };
            }
            wait_child(pid, &watchdog);
            assert!(matches!(
                b.execute(|| Err::<(), _>("down")),
                Err(Error::Inner("down"))
            ));
            assert_eq!(
                b.redis_breaker().unwrap().sync().unwrap(),
                BreakerState::Open,
                "the forked child counted as the parent's host"
            );
        }
        // One failure from another host (quorum).
        "fail" => {
            let b = CircuitBreaker::redis(&name, trip_config(), &options(&url).quorum(2)).unwrap();
            assert!(b.execute(|| Err::<(), _>("down")).is_err());
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_trip_in_one_process_is_seen_by_the_others_within_the_bound() {
    let server = RedisServer::start();
    let url = server.url();
    let children: Vec<Child> = (0..3).map(|_| spawn("watch", &url, "trip")).collect();
    wait_until(WATCHDOG, "children ready", || {
        server.command(&["GET", "test:ready"]) == "3"
    });
    let b = CircuitBreaker::redis("trip", trip_config(), &options(&url)).unwrap();
    for _ in 0..3 {
        assert!(matches!(
            b.execute(|| Err::<(), _>("down")),
            Err(Error::Inner("down"))
        ));
    }
    assert_eq!(b.state(), BreakerState::Open);
    assert!(matches!(
        b.execute(|| Ok::<_, ()>(())),
        Err(Error::BreakerOpen {
            state: BreakerState::Open,
            ..
        })
    ));
    let key = b.redis_breaker().unwrap().key().to_owned();
    let since: i64 = server.command(&["HGET", &key, "since"]).parse().unwrap();
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    for child in children {
        finish(child, WATCHDOG);
    }
    // The stated bound: sync_interval + 2 × command_timeout after the
    // trip; plus the child's own TIME round trip after it saw it.
    let bound = SYNC + 3 * COMMAND;
    for pid in pids {
        let seen: i64 = server
            .command(&["GET", &format!("test:seen:{pid}")])
            .parse()
            .unwrap();
        let lag = Duration::from_micros(u64::try_from(seen - since).unwrap_or(0));
        assert!(
            lag <= bound,
            "process {pid} saw the trip {lag:?} after it, bound {bound:?}"
        );
    }
    b.dispose();
}

#[test]
fn a_child_forked_after_the_breaker_was_made_follows_the_fleet() {
    let server = RedisServer::start();
    let url = server.url();
    let child = spawn("fork", &url, "forked");
    wait_until(WATCHDOG, "the forked child ready", || {
        server.command(&["GET", "test:ready"]) == "1"
    });
    let b = CircuitBreaker::redis("forked", trip_config(), &options(&url)).unwrap();
    for _ in 0..3 {
        let _ = b.execute(|| Err::<(), _>("down"));
    }
    assert_eq!(b.state(), BreakerState::Open);
    let key = b.redis_breaker().unwrap().key().to_owned();
    let since: i64 = server.command(&["HGET", &key, "since"]).parse().unwrap();
    finish(child, WATCHDOG);
    let seen: i64 = server.command(&["GET", "test:seen:fork"]).parse().unwrap();
    let lag = Duration::from_micros(u64::try_from(seen - since).unwrap_or(0));
    let bound = SYNC + 3 * COMMAND;
    assert!(
        lag <= bound,
        "the forked child saw the trip {lag:?} after it, bound {bound:?}"
    );
    b.dispose();
}

/// Script calls the server has run (EVALSHA and EVAL).
fn script_calls(server: &RedisServer) -> u64 {
    let stats = server.command(&["INFO", "commandstats"]);
    stats
        .lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .map(|l| {
            let calls = l.split("calls=").nth(1).unwrap().split(',').next().unwrap();
            calls.parse::<u64>().unwrap()
        })
        .sum()
}

#[test]
fn closed_calls_cost_no_round_trip() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("cheap", trip_config(), &options(&url)).unwrap();
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    let before = script_calls(&server);
    let start = Instant::now();
    for _ in 0..2_000 {
        assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    }
    // Only the background sync may have run meanwhile: one per
    // sync_interval (and one in flight).
    let syncs = start.elapsed().as_millis() as u64 / SYNC.as_millis() as u64 + 2;
    let ran = script_calls(&server) - before;
    assert!(ran <= syncs, "{ran} script calls for 2000 closed calls");
    b.dispose();
}

#[test]
fn a_forked_child_is_a_host_of_its_own_for_the_quorum() {
    let server = RedisServer::start();
    finish(spawn("fork-quorum", &server.url(), "fork-quorum"), WATCHDOG);
}

#[test]
fn a_trip_arrives_by_message_without_waiting_for_a_sync() {
    let server = RedisServer::start();
    let url = server.url();
    // Syncs an hour apart: only the message can bring the trip.
    let slow = options(&url).sync_interval(Duration::from_secs(3600));
    let b = CircuitBreaker::redis("message", trip_config(), &slow).unwrap();
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    let channel = format!("{}:events", b.redis_breaker().unwrap().key());
    wait_until(WATCHDOG, "subscribed", || {
        server.command(&["PUBSUB", "NUMSUB", &channel]) == format!("{channel}\n1")
    });
    let other = RedisCircuitBreaker::new("message", trip_config(), &slow).unwrap();
    other.set_state(BreakerState::Open).unwrap();
    wait_until(Duration::from_secs(10), "the message", || {
        b.state() == BreakerState::Open
    });
    assert_eq!(b.redis_breaker().unwrap().generation(), other.generation());
    assert!(matches!(
        b.execute(|| Ok::<_, ()>(())),
        Err(Error::BreakerOpen { .. })
    ));
    b.dispose();
}

#[test]
fn a_lost_message_is_made_up_by_the_sync_within_the_bound() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("lost", trip_config(), &options(&url)).unwrap();
    let engine = Arc::clone(b.redis_breaker().unwrap());
    wait_until(WATCHDOG, "first sync", || engine.generation() != 0);
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    // Another host's trip whose message was lost: the state written with
    // no PUBLISH.
    let now: i64 = {
        let mut con = raw(&url);
        redis_time_us(&mut con)
    };
    let written = Instant::now();
    server.command(&[
        "HSET",
        engine.key(),
        "st",
        "1",
        "g",
        &now.to_string(),
        "since",
        &now.to_string(),
        "cg",
        "0",
        "succ",
        "0",
    ]);
    wait_until(WATCHDOG, "the sync", || {
        b.execute(|| Ok::<_, ()>(())).is_err()
    });
    let lag = written.elapsed();
    let bound = SYNC + 2 * COMMAND;
    assert!(
        lag <= bound,
        "saw the lost trip after {lag:?}, bound {bound:?}"
    );
    assert_eq!(engine.generation(), now as u64);
    b.dispose();
}

#[test]
fn exactly_k_probes_run_fleet_wide() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("probes", probe_config(), &options(&url)).unwrap();
    b.trip().unwrap();
    let children: Vec<Child> = (0..4).map(|_| spawn("probe", &url, "probes")).collect();
    // Wait until the two probes run and the others have been refused many
    // times since (asking Redis at least every sync_interval).
    wait_until(WATCHDOG, "two probes", || {
        server.command(&["GET", "test:probes"]) == "2"
    });
    let refused_at_k: i64 = server
        .command(&["GET", "test:refused"])
        .parse()
        .unwrap_or(0);
    // A refused host asks Redis again at least every sync_interval: over
    // three of them every child has asked several times.
    let k_reached = Instant::now();
    wait_until(WATCHDOG, "refusals after the probes started", || {
        server
            .command(&["GET", "test:refused"])
            .parse::<i64>()
            .unwrap_or(0)
            >= refused_at_k + 200
            && k_reached.elapsed() >= 3 * SYNC
    });
    let key = b.redis_breaker().unwrap().key().to_owned();
    // Redis's view: two leases, half-open.
    assert_eq!(server.command(&["ZCARD", &format!("{key}:probes")]), "2");
    assert_eq!(server.command(&["HGET", &key, "st"]), "2");
    assert_eq!(
        server.command(&["GET", "test:probes"]),
        "2",
        "more than K probes ran"
    );
    server.command(&["SET", "test:release", "1"]);
    for child in children {
        finish(child, WATCHDOG);
    }
    // Two successes close the fleet's breaker (half_open_successes_to_close).
    wait_until(WATCHDOG, "closed", || {
        server.command(&["HGET", &key, "st"]) == "0"
    });
    wait_until(WATCHDOG, "closed here", || {
        b.state() == BreakerState::Closed
    });
    b.dispose();
}

#[test]
fn a_probe_held_by_a_killed_process_is_freed_by_its_lease() {
    let server = RedisServer::start();
    let url = server.url();
    let opts = options(&url).lease_ttl(Duration::from_millis(500));
    let config = probe_config().with_half_open_max_probes(1);
    let b = CircuitBreaker::redis("lease", config, &opts).unwrap();
    b.trip().unwrap();
    let mut holder = spawn("hold", &url, "lease");
    wait_until(WATCHDOG, "the probe taken", || {
        server.command(&["GET", "test:probes"]) == "1"
    });
    // The only probe is held: this process is refused.
    assert!(matches!(
        b.execute(|| Ok::<_, ()>(())),
        Err(Error::BreakerOpen {
            state: BreakerState::HalfOpen,
            ..
        })
    ));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // Within the lease (Redis's clock) the slot is free again.
    let freed = Instant::now();
    wait_until(WATCHDOG, "the lease to expire", || {
        b.execute(|| Ok::<_, ()>(())).is_ok()
    });
    assert!(freed.elapsed() <= Duration::from_millis(500) + SYNC + 2 * COMMAND);
    b.dispose();
}

#[test]
fn stale_generation_verdicts_change_nothing() {
    let server = RedisServer::start();
    let url = server.url();
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(1)
        .with_reset_timeout(Duration::from_millis(50))
        .with_half_open_timeout(Duration::from_secs(20))
        .with_half_open_max_probes(2);
    let engine = RedisCircuitBreaker::new("stale", config, &options(&url)).unwrap();
    let FleetAdmission::Closed { generation: old } = engine.admit().unwrap() else {
        panic!("closed");
    };
    // The fleet moves on: open, then closed again.
    engine.set_state(BreakerState::Open).unwrap();
    engine.set_state(BreakerState::Closed).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Closed);
    let generation = engine.generation();
    // A failure admitted before: ignored (threshold 1 would open).
    engine.failure(old).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Closed);
    assert_eq!(engine.generation(), generation);
    // A current one counts.
    engine.failure(generation).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Open);
    // Half-open round `g1`, two probes; then a new round `g2`.
    wait_until(WATCHDOG, "a probe", || {
        matches!(engine.admit(), Ok(FleetAdmission::Probe { .. }))
    });
    let FleetAdmission::Probe {
        generation: g1,
        lease: l1,
    } = engine.admit().unwrap()
    else {
        panic!("second probe");
    };
    engine.set_state(BreakerState::Open).unwrap();
    let mut next = None;
    wait_until(WATCHDOG, "a new round", || {
        if let Ok(FleetAdmission::Probe { generation, lease }) = engine.admit() {
            next = Some((generation, lease));
        }
        next.is_some()
    });
    let (g2, l2) = next.unwrap();
    assert!(g2 > g1);
    assert_eq!(engine.generation(), g2);
    // The old round's failure does not re-open the new one, with its own
    // lease or with one of the new round.
    assert!(!engine.verdict(g1, l1, Outcome::Failure).unwrap());
    assert!(!engine.verdict(g1, l2, Outcome::Failure).unwrap());
    assert_eq!(engine.sync().unwrap(), BreakerState::HalfOpen);
    assert_eq!(engine.generation(), g2);
    // The current round's does.
    assert!(engine.verdict(g2, l2, Outcome::Failure).unwrap());
    assert_eq!(engine.sync().unwrap(), BreakerState::Open);
}

#[test]
fn quorum_mode_opens_only_when_q_hosts_failed() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("quorum", trip_config(), &options(&url).quorum(2)).unwrap();
    for _ in 0..6 {
        assert!(matches!(
            b.execute(|| Err::<(), _>("down")),
            Err(Error::Inner("down"))
        ));
    }
    let engine = b.redis_breaker().unwrap();
    assert_eq!(
        engine.sync().unwrap(),
        BreakerState::Closed,
        "one host alone opened it"
    );
    finish(spawn("fail", &url, "quorum"), WATCHDOG);
    assert_eq!(
        engine.sync().unwrap(),
        BreakerState::Open,
        "two hosts did not open it"
    );
    b.dispose();
}

#[test]
fn keys_share_one_cluster_slot_and_expire_when_idle() {
    let server = RedisServer::start();
    let url = server.url();
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(2)
        .with_reset_timeout(Duration::from_millis(100))
        .with_half_open_timeout(Duration::from_millis(100));
    let opts = options(&url).failure_window(Duration::from_millis(200));
    let engine = RedisCircuitBreaker::new("idle:keys", config, &opts).unwrap();
    let FleetAdmission::Closed { generation } = engine.admit().unwrap() else {
        panic!("closed");
    };
    engine.failure(generation).unwrap();
    let base = engine.key().to_owned();
    let keys = [
        base.clone(),
        format!("{base}:failures"),
        format!("{base}:hosts"),
    ];
    for key in &keys {
        assert_eq!(server.command(&["EXISTS", key]), "1", "{key}");
        assert_eq!(cluster_slot(key), cluster_slot(&base), "{key}");
        let ttl: i64 = server.command(&["PTTL", key]).parse().unwrap();
        // Idle time: max(window, reset + half-open, lease) + 1 s.
        assert!(ttl > 0 && ttl <= 1_201, "{key}: {ttl} ms");
    }
    assert_eq!(cluster_slot(&format!("{base}:probes")), cluster_slot(&base));
    assert_eq!(cluster_slot(&format!("{base}:events")), cluster_slot(&base));
    engine.stop_background();
    wait_until(Duration::from_secs(10), "idle keys to expire", || {
        keys.iter().all(|k| server.command(&["EXISTS", k]) == "0")
    });
    // Absent = closed with no failures: one failure does not open (2 needed).
    let FleetAdmission::Closed { generation } = engine.admit().unwrap() else {
        panic!("closed");
    };
    engine.failure(generation).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Closed);
    assert!(
        engine.generation() > generation,
        "generations keep growing across expiry"
    );
}

#[test]
fn kill_9_closed_calls_run_without_redis_and_failures_fall_back_locally() {
    let mut server = RedisServer::start();
    let url = server.url();
    let guard_reset = Duration::from_millis(500);
    let opts = options(&url).guard_reset_timeout(guard_reset);
    let b = CircuitBreaker::redis("kill", trip_config(), &opts).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    b.subscribe(move |e| match e.kind {
        EventKind::StoreUnavailable { .. } => log.lock().unwrap().push("unavailable"),
        EventKind::StoreRecovered => log.lock().unwrap().push("recovered"),
        _ => {}
    });
    let engine = Arc::clone(b.redis_breaker().unwrap());
    wait_until(WATCHDOG, "first sync", || engine.generation() != 0);
    server.kill();
    let limit = 2 * COMMAND;
    // Closed calls keep running with no round trip.
    for _ in 0..200 {
        let t = Instant::now();
        assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
        assert!(t.elapsed() <= limit, "a closed call took {:?}", t.elapsed());
    }
    // Failures: each returns within the bound; the local breaker trips.
    for _ in 0..3 {
        let t = Instant::now();
        assert!(matches!(
            b.execute(|| Err::<(), _>("down")),
            Err(Error::Inner("down"))
        ));
        assert!(
            t.elapsed() <= limit,
            "a failing call took {:?}",
            t.elapsed()
        );
    }
    wait_until(WATCHDOG, "unavailable", || !engine.is_available());
    let t = Instant::now();
    assert!(
        matches!(
            b.execute(|| Ok::<_, ()>(())),
            Err(Error::BreakerOpen { .. })
        ),
        "the local fallback did not trip"
    );
    assert!(t.elapsed() <= limit);
    assert!(b.metrics().fallback_decisions >= 1);
    // The engine marks itself down, then announces it (on whichever thread
    // saw the failure): wait for the event, then check it came once.
    wait_until(WATCHDOG, "unavailable event", || {
        !events.lock().unwrap().is_empty()
    });
    assert_eq!(*events.lock().unwrap(), ["unavailable"]);
    // Restart: recovered within guard_reset_timeout + sync_interval (+ a
    // round trip); the fleet (empty again) admits.
    server.restart();
    let restarted = Instant::now();
    wait_until(WATCHDOG, "recovered", || engine.is_available());
    let bound = guard_reset + SYNC + 2 * COMMAND;
    assert!(
        restarted.elapsed() <= bound,
        "recovered after {:?}, bound {bound:?}",
        restarted.elapsed()
    );
    wait_until(WATCHDOG, "event", || events.lock().unwrap().len() == 2);
    assert_eq!(*events.lock().unwrap(), ["unavailable", "recovered"]);
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    b.dispose();
}

#[test]
fn fail_closed_refuses_and_fail_open_admits_while_redis_is_down() {
    let mut server = RedisServer::start();
    let url = server.url();
    let closed = CircuitBreaker::redis(
        "fc",
        trip_config(),
        &options(&url).fallback(Fallback::FailClosed),
    )
    .unwrap();
    let open = CircuitBreaker::redis(
        "fo",
        trip_config(),
        &options(&url).fallback(Fallback::FailOpen),
    )
    .unwrap();
    for b in [&closed, &open] {
        let engine = b.redis_breaker().unwrap();
        wait_until(WATCHDOG, "first sync", || engine.generation() != 0);
    }
    server.kill();
    for b in [&closed, &open] {
        let engine = Arc::clone(b.redis_breaker().unwrap());
        wait_until(WATCHDOG, "unavailable", || {
            let _ = b.execute(|| Err::<(), _>("down"));
            !engine.is_available()
        });
    }
    assert!(matches!(
        closed.execute(|| Ok::<_, ()>(())),
        Err(Error::Redis(RedisError::Unavailable { .. }))
    ));
    for _ in 0..10 {
        assert!(open.execute(|| Err::<(), _>("down")).is_err());
    }
    assert!(
        open.execute(|| Ok::<_, ()>(())).is_ok(),
        "fail-open refused"
    );
    assert!(closed.metrics().fallback_decisions >= 1);
    assert!(open.metrics().fallback_decisions >= 11);
    closed.dispose();
    open.dispose();
}

#[test]
fn script_flush_reloads_the_script() {
    let server = RedisServer::start();
    let url = server.url();
    let config = BreakerConfig::DEFAULT.with_failure_threshold(1);
    let engine = RedisCircuitBreaker::new("flush", config, &options(&url)).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Closed);
    assert_eq!(server.command(&["SCRIPT", "FLUSH"]), "+OK");
    let FleetAdmission::Closed { generation } = engine.admit().unwrap() else {
        panic!("closed");
    };
    engine.failure(generation).unwrap();
    assert_eq!(engine.sync().unwrap(), BreakerState::Open);
}

#[test]
fn another_stored_config_is_a_typed_error_or_adopted() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis(
        "cfg",
        BreakerConfig::DEFAULT.with_failure_threshold(2),
        &options(&url),
    )
    .unwrap();
    let engine = b.redis_breaker().unwrap();
    // Nothing stored yet: closed calls run.
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok());
    // Another deployment stores another config: the next sync meets it;
    // from then on every call says so.
    let one = RedisCircuitBreaker::new(
        "cfg",
        BreakerConfig::DEFAULT.with_failure_threshold(1),
        &options(&url),
    )
    .unwrap();
    one.set_state(BreakerState::Closed).unwrap();
    wait_until(WATCHDOG, "the mismatch", || {
        b.execute(|| Ok::<_, ()>(())).is_err()
    });
    // A process that starts now meets it on its first call.
    let fresh = CircuitBreaker::redis(
        "cfg-fresh",
        BreakerConfig::DEFAULT,
        &options(&url).prefix("other"),
    )
    .unwrap();
    assert!(fresh.execute(|| Ok::<_, ()>(())).is_ok());
    fresh.dispose();
    let two = RedisCircuitBreaker::new(
        "cfg",
        BreakerConfig::DEFAULT.with_failure_threshold(3),
        &options(&url),
    )
    .unwrap();
    assert!(matches!(
        two.admit(),
        Err(RedisError::ConfigMismatch { .. })
    ));
    match b.execute(|| Ok::<_, ()>(())) {
        Err(Error::Redis(RedisError::ConfigMismatch { key, stored, ours })) => {
            assert_eq!(key, engine.key());
            assert!(stored.contains("failure_threshold=1,"), "{stored}");
            assert!(ours.contains("failure_threshold=2,"), "{ours}");
        }
        other => panic!("expected a config mismatch, got {other:?}"),
    }
    // Adopting: the stored threshold (1) applies.
    let adopt = RedisCircuitBreaker::new(
        "cfg",
        BreakerConfig::DEFAULT.with_failure_threshold(2),
        &options(&url).adopt_stored_config(true),
    )
    .unwrap();
    let FleetAdmission::Closed { generation } =
        adopt.sync().map(|_| adopt.admit().unwrap()).unwrap()
    else {
        panic!("closed");
    };
    adopt.failure(generation).unwrap();
    assert_eq!(adopt.sync().unwrap(), BreakerState::Open);
    b.dispose();
}

#[test]
fn state_changes_are_events_with_increasing_generations() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("events", trip_config(), &options(&url)).unwrap();
    let other = RedisCircuitBreaker::new("events", trip_config(), &options(&url)).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    b.subscribe(move |e| {
        if let EventKind::StateChanged {
            from,
            to,
            generation,
        } = e.kind
        {
            log.lock().unwrap().push((from, to, generation));
        }
    });
    // Another host's operations, seen here by message or sync.
    other.set_state(BreakerState::Open).unwrap();
    wait_until(WATCHDOG, "open", || b.state() == BreakerState::Open);
    other.set_state(BreakerState::Closed).unwrap();
    wait_until(WATCHDOG, "closed", || b.state() == BreakerState::Closed);
    // This host's own.
    b.force_open().unwrap();
    assert_eq!(b.state(), BreakerState::ForcedOpen);
    assert!(matches!(
        b.execute(|| Ok::<_, ()>(())),
        Err(Error::BreakerOpen {
            state: BreakerState::ForcedOpen,
            ..
        })
    ));
    wait_until(WATCHDOG, "the other host sees it", || {
        other.sync().unwrap() == BreakerState::ForcedOpen
    });
    b.reset().unwrap();
    // Whichever thread of this process observes a fleet transition first
    // (the caller from its reply, or the subscriber from the message)
    // emits it: the last one may still be on its way.
    wait_until(WATCHDOG, "four state changes", || {
        seen.lock().unwrap().len() >= 4
    });
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|(f, t, _)| (*f, *t)).collect::<Vec<_>>(),
        [
            (BreakerState::Closed, BreakerState::Open),
            (BreakerState::Open, BreakerState::Closed),
            (BreakerState::Closed, BreakerState::ForcedOpen),
            (BreakerState::ForcedOpen, BreakerState::Closed),
        ]
    );
    assert!(seen.windows(2).all(|w| w[1].2 > w[0].2), "{seen:?}");
    b.dispose();
}

#[test]
fn a_listener_set_late_continues_the_numbering_of_state_changes() {
    let server = RedisServer::start();
    let url = server.url();
    let engine = RedisCircuitBreaker::new("late", trip_config(), &options(&url)).unwrap();
    let other = RedisCircuitBreaker::new("late", trip_config(), &options(&url)).unwrap();
    other.set_state(BreakerState::Open).unwrap();
    // Observed with nobody listening: change 1.
    assert_eq!(engine.sync().unwrap(), BreakerState::Open);
    let heard = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&heard);
    let start = engine.on_event(move |event| {
        if let stockade::redis::FleetEvent::Transition(t) = event {
            log.lock().unwrap().push(t);
        }
    });
    assert_eq!(start, Some((1, BreakerState::Open)));
    assert_eq!(engine.on_event(|_| {}), None, "a second listener was taken");
    other.set_state(BreakerState::Closed).unwrap();
    wait_until(WATCHDOG, "the reset heard", || {
        !heard.lock().unwrap().is_empty()
    });
    let heard = heard.lock().unwrap().clone();
    assert_eq!(heard.len(), 1);
    assert_eq!(
        (heard[0].from, heard[0].to, heard[0].generation),
        (BreakerState::Open, BreakerState::Closed, 2)
    );
}

#[test]
fn client_pause_keeps_every_call_within_the_bound() {
    let server = RedisServer::start();
    let url = server.url();
    let b = CircuitBreaker::redis("pause", trip_config(), &options(&url)).unwrap();
    let engine = Arc::clone(b.redis_breaker().unwrap());
    wait_until(WATCHDOG, "first sync", || engine.generation() != 0);
    assert_eq!(server.command(&["CLIENT", "PAUSE", "1000"]), "+OK");
    let limit = 2 * COMMAND;
    for i in 0..50 {
        let t = Instant::now();
        let result = if i % 10 == 0 {
            b.execute(|| Err::<(), _>("down"))
        } else {
            b.execute(|| Ok::<_, &str>(()))
        };
        assert!(
            t.elapsed() <= limit,
            "call {i} took {:?} ({result:?})",
            t.elapsed()
        );
    }
    // The paused script calls timed out: the store is unavailable.
    assert!(!engine.is_available());
    b.dispose();
}

#[test]
fn a_redis_breaker_composes_in_a_pipeline_and_is_registered() {
    use stockade::blocking::Pipeline;
    let server = RedisServer::start();
    let url = server.url();
    let config = trip_config().with_failure_threshold(2);
    let b = CircuitBreaker::redis("piped", config, &options(&url)).unwrap();
    assert!(Arc::ptr_eq(&b, &CircuitBreaker::get("piped").unwrap()));
    assert!(matches!(
        CircuitBreaker::redis("piped", config, &options(&url)),
        Err(Error::NameTaken { .. })
    ));
    let pipeline = Pipeline::new().then(&b);
    let ran = core::sync::atomic::AtomicU32::new(0);
    let call = || {
        ran.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        Err::<(), _>("down")
    };
    for _ in 0..2 {
        assert!(matches!(pipeline.execute(call), Err(Error::Inner("down"))));
    }
    assert!(matches!(
        pipeline.execute(call),
        Err(Error::BreakerOpen {
            state: BreakerState::Open,
            ..
        })
    ));
    assert_eq!(ran.load(core::sync::atomic::Ordering::SeqCst), 2);
    let other = RedisCircuitBreaker::new("piped", config, &options(&url)).unwrap();
    assert_eq!(other.sync().unwrap(), BreakerState::Open);
    let m = b.metrics();
    assert_eq!(
        (m.failures, m.rejections, m.state),
        (2, 1, Some(BreakerState::Open))
    );
    b.dispose();
    assert!(CircuitBreaker::get("piped").is_none());
    assert!(matches!(
        b.execute(|| Ok::<_, ()>(())),
        Err(Error::Disposed)
    ));
}

#[test]
fn construction_needs_no_server_and_the_first_call_falls_back() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let b = CircuitBreaker::redis("absent", trip_config(), &options(&url)).unwrap();
    let t = Instant::now();
    assert!(
        b.execute(|| Ok::<_, ()>(())).is_ok(),
        "the local fallback refused"
    );
    assert!(t.elapsed() <= Duration::from_millis(100) + 2 * COMMAND);
    assert_eq!(b.metrics().fallback_decisions, 1);
    assert!(!b.redis_breaker().unwrap().is_available());
    // The server comes up: the fleet decides again.
    server.restart();
    let engine = Arc::clone(b.redis_breaker().unwrap());
    wait_until(WATCHDOG, "recovered", || engine.is_available());
    for _ in 0..3 {
        let _ = b.execute(|| Err::<(), _>("down"));
    }
    assert_eq!(engine.sync().unwrap(), BreakerState::Open);
    b.dispose();
}

#[test]
fn the_client_clock_option_decides_on_the_hosts_wall_clock() {
    use stockade::redis::TimeSource;
    let server = RedisServer::start();
    let url = server.url();
    let config = BreakerConfig::DEFAULT.with_failure_threshold(1);
    let engine = RedisCircuitBreaker::new(
        "client-time",
        config,
        &options(&url).time(TimeSource::Client),
    )
    .unwrap();
    let FleetAdmission::Closed { generation } = engine.admit().unwrap() else {
        panic!("closed");
    };
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    engine.failure(generation).unwrap();
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    assert_eq!(engine.state(), BreakerState::Open);
    let since: i64 = server
        .command(&["HGET", engine.key(), "since"])
        .parse()
        .unwrap();
    assert!(
        (before..=after).contains(&since),
        "{before} <= {since} <= {after}"
    );
}

#[test]
fn the_permit_api_gives_the_fleet_the_same_decisions_as_execute() {
    let server = RedisServer::start();
    let url = server.url();
    let config = BreakerConfig::DEFAULT
        .with_failure_threshold(3)
        .with_reset_timeout(Duration::from_millis(200))
        .with_half_open_timeout(Duration::from_secs(20))
        .with_half_open_successes_to_close(1);
    let b = CircuitBreaker::redis("permit", config, &options(&url)).unwrap();
    let key = b.redis_breaker().unwrap().key().to_owned();
    assert!(b.execute(|| Ok::<_, ()>(())).is_ok()); // contacts Redis
    let before = script_calls(&server);
    let start = Instant::now();
    // Closed: admissions, successes and calls without a verdict make no
    // round trip, and count nothing fleet-wide.
    for _ in 0..100 {
        b.try_acquire().unwrap().success();
        drop(b.try_acquire().unwrap());
        let decided = b
            .try_acquire_without_round_trip()
            .expect("closed: decided here");
        assert!(
            decided
                .unwrap()
                .report_without_round_trip(Outcome::Ignored)
                .is_ok()
        );
    }
    // Only the background sync may have run meanwhile (one per
    // sync_interval, and one in flight).
    let syncs = start.elapsed().as_millis() as u64 / SYNC.as_millis() as u64 + 2;
    let spent = script_calls(&server) - before;
    assert!(spent <= syncs, "{spent} script calls for 300 closed guards");
    // Another host's view of the same fleet breaker.
    let other = RedisCircuitBreaker::new("permit", config, &options(&url)).unwrap();
    // Failures given through guards count fleet-wide, with execute's.
    b.try_acquire().unwrap().failure();
    // A closed call's failure is a round trip: handed back, unreported.
    let call = b.try_acquire_without_round_trip().unwrap().unwrap();
    let call = call
        .report_without_round_trip(Outcome::Failure)
        .unwrap_err();
    assert_eq!(other.sync().unwrap(), BreakerState::Closed);
    call.report(Outcome::Failure);
    assert_eq!(other.sync().unwrap(), BreakerState::Closed);
    assert!(matches!(
        b.execute(|| Err::<(), _>("down")),
        Err(Error::Inner("down"))
    ));
    assert_eq!(other.sync().unwrap(), BreakerState::Open, "fleet-wide");
    assert_eq!(b.state(), BreakerState::Open);
    assert!(matches!(
        b.try_acquire(),
        Err(Error::BreakerOpen {
            state: BreakerState::Open,
            ..
        })
    ));
    // Half-open: a guard holds the fleet's one probe lease until its
    // verdict; dropped, the lease is freed; a success closes the fleet.
    // Refused from the cache until the wait is over; then admitting is a
    // probe request, a round trip: `None` without one.
    let mut refused = 1;
    wait_until(WATCHDOG, "the wait over", || {
        match b.try_acquire_without_round_trip() {
            None => true,
            Some(Err(Error::BreakerOpen { .. })) => {
                refused += 1;
                false
            }
            Some(other) => panic!("expected a refusal or None, got {other:?}"),
        }
    });
    let mut probe = None;
    wait_until(WATCHDOG, "a probe", || {
        probe = b.try_acquire().ok();
        refused += u64::from(probe.is_none());
        probe.is_some()
    });
    let probe = probe.unwrap();
    assert_eq!(server.command(&["ZCARD", &format!("{key}:probes")]), "1");
    // Any verdict on a probe is a round trip.
    let probe = probe
        .report_without_round_trip(Outcome::Success)
        .unwrap_err();
    assert_eq!(server.command(&["ZCARD", &format!("{key}:probes")]), "1");
    assert!(matches!(
        other.admit().unwrap(),
        FleetAdmission::Refused {
            state: BreakerState::HalfOpen,
            ..
        }
    ));
    drop(probe);
    assert_eq!(server.command(&["ZCARD", &format!("{key}:probes")]), "0");
    let token = b.try_acquire().unwrap().into_token();
    assert_eq!(server.command(&["ZCARD", &format!("{key}:probes")]), "1");
    stockade::blocking::BreakerGuard::from_token(&b, token).success();
    assert_eq!(other.sync().unwrap(), BreakerState::Closed);
    wait_until(WATCHDOG, "closed here", || {
        b.state() == BreakerState::Closed
    });
    let m = b.metrics();
    assert_eq!((m.successes, m.failures, m.rejections), (102, 3, refused));
    b.dispose();
    assert!(matches!(b.try_acquire(), Err(Error::Disposed)));
}
