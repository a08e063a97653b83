//! The fleet-wide bulkhead against a real `redis-server` (one per test),
//! with real processes: this binary spawns itself in a child role to play
//! the other hosts, so it has its own `main`. Every wait has a watchdog.
//!
//! Run: `cargo test -p stockade --features redis --test redis_bulkhead`.

#[path = "common/redis_server.rs"]
mod redis_server;
#[macro_use]
#[path = "common/processes.rs"]
mod processes;

use core::time::Duration;
use processes::{env_u64, finish};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use redis::Commands;
use redis_server::{RedisServer, cluster_slot};
use stockade::blocking::{Bulkhead, Error, EventKind};
use stockade::bulkhead::BulkheadConfig;
use stockade::redis::{Fallback, RedisBulkhead, RedisBulkheadError, RedisError, RedisOptions};

const ROLE: &str = "STOCKADE_RB_ROLE";
const URL: &str = "STOCKADE_RB_URL";
const WATCHDOG: Duration = Duration::from_secs(60);

/// Options for tests: short timeouts, a short lease.
fn options(url: &str, lease_ttl: Duration) -> RedisOptions {
    RedisOptions::new(url)
        .connect_timeout(Duration::from_millis(200))
        .command_timeout(Duration::from_millis(100))
        .guard_reset_timeout(Duration::from_millis(500))
        .lease_ttl(lease_ttl)
}

fn config(max_concurrent: u32, max_queue: u32, queue_timeout: Duration) -> BulkheadConfig {
    BulkheadConfig::DEFAULT
        .with_max_concurrent(max_concurrent)
        .with_max_queue(max_queue)
        .with_queue_timeout(queue_timeout)
}

fn connection(url: &str) -> redis::Connection {
    let con = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

// --- Child roles -------------------------------------------------------------

fn child(role: &str) {
    let url = std::env::var(URL).unwrap();
    let name = std::env::var("NAME").unwrap();
    let max = env_u64("MAX") as u32;
    let lease_ttl = Duration::from_millis(env_u64("LEASE_MS"));
    let opts = options(&url, lease_ttl);
    match role {
        // Calls through the fleet's bulkhead; inside each, INCR/DECR of a
        // separate key measures the fleet's concurrency independently.
        "hammer" => {
            let threads = env_u64("THREADS");
            let iterations = env_u64("ITERATIONS");
            let bulkhead = Arc::new(
                Bulkhead::redis_unregistered(
                    &name,
                    config(max, 100, Duration::from_secs(30)),
                    &opts.fallback(Fallback::FailClosed),
                )
                .unwrap(),
            );
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let bulkhead = Arc::clone(&bulkhead);
                    let url = url.clone();
                    std::thread::spawn(move || {
                        let mut con = connection(&url);
                        let mut most = 0i64;
                        for _ in 0..iterations {
                            bulkhead
                                .execute(|| {
                                    let now: i64 = con.incr("measured", 1)?;
                                    most = most.max(now);
                                    // The call's work.
                                    std::thread::sleep(Duration::from_millis(2));
                                    con.decr::<_, _, i64>("measured", 1)
                                })
                                .unwrap_or_else(|e| panic!("call refused: {e}"));
                        }
                        most
                    })
                })
                .collect();
            let most = handles.into_iter().map(|h| h.join().unwrap()).max();
            let m = bulkhead.metrics();
            println!(
                "{} {} {}",
                most.unwrap_or(0),
                m.successes,
                m.fallback_decisions
            );
        }
        // Takes HOLD permits, says so, and keeps them until killed.
        "holder" => {
            let bulkhead =
                RedisBulkhead::new(&name, config(max, 10, Duration::from_secs(1)), &opts).unwrap();
            for _ in 0..env_u64("HOLD") {
                let lease = bulkhead.try_acquire().unwrap();
                let _ = lease.into_token();
            }
            println!("held");
            std::io::stdout().flush().unwrap();
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            unreachable!("the holder is killed");
        }
        // Waits for a permit; inside, INCR of "order" tells who came first.
        "waiter" => {
            let queue_timeout = Duration::from_millis(env_u64("QUEUE_MS"));
            let bulkhead = Bulkhead::redis_unregistered(
                &name,
                config(max, env_u64("MAX_QUEUE") as u32, queue_timeout),
                &opts.fallback(Fallback::FailClosed),
            )
            .unwrap();
            let mut con = connection(&url);
            println!("joining");
            std::io::stdout().flush().unwrap();
            let start = Instant::now();
            match bulkhead.execute(|| con.incr::<_, _, i64>("order", 1)) {
                Ok(order) => println!("admitted {order}"),
                Err(Error::QueueTimeout { waited }) => println!(
                    "timeout {} {}",
                    waited.as_millis(),
                    start.elapsed().as_millis()
                ),
                Err(e) => println!("error {e}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, url: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role)
        .env(URL, url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Reads a child's stdout line by line on a thread, so that every read has
/// a watchdog.
struct Lines(mpsc::Receiver<String>);

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(rx)
    }

    fn next(&self) -> String {
        self.0
            .recv_timeout(WATCHDOG)
            .expect("watchdog: no line from the child")
    }
}

fn kill_and_reap(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Runs `f` on a thread and fails the test if it takes longer than the
/// watchdog.
fn watched<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(core::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("watchdog: still running after {WATCHDOG:?}"),
    }
}

/// Polls `f` (every 5 ms) until it is true or `limit` passes; returns the
/// time it took, or `None`.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.command(&["EXISTS", key]) == "1"
}

// --- Tests ---------------------------------------------------------------------

/// Four processes of two threads each share a limit of 3: the concurrency
/// measured with a separate counter never exceeds 3, every call is admitted
/// by Redis (no fallback), and nothing is left held afterwards.
fn fleet_limit_holds_across_processes() {
    let server = RedisServer::start();
    let url = server.url();
    let env = [
        ("NAME", "fleet".to_string()),
        ("MAX", "3".to_string()),
        ("LEASE_MS", "2000".to_string()),
        ("THREADS", "2".to_string()),
        ("ITERATIONS", "40".to_string()),
    ];
    let mut children: Vec<Child> = (0..4).map(|_| spawn("hammer", &url, &env)).collect();
    let lines: Vec<Lines> = children.iter_mut().map(Lines::of).collect();
    let mut most = 0;
    for l in &lines {
        let line = l.next();
        let fields: Vec<u64> = line.split(' ').map(|f| f.parse().unwrap()).collect();
        most = most.max(fields[0]);
        assert_eq!(fields[1], 80, "every call ran: {line}");
        assert_eq!(fields[2], 0, "every decision came from Redis: {line}");
    }
    for c in children {
        finish(c, WATCHDOG);
    }
    assert!(most <= 3, "fleet-wide concurrency {most} > 3");
    assert!(most >= 1);
    let probe = RedisBulkhead::new(
        "fleet",
        config(3, 100, Duration::from_secs(30)),
        &options(&url, Duration::from_secs(2)),
    )
    .unwrap();
    let counts = probe.fleet_counts().unwrap();
    assert_eq!((counts.in_use, counts.queued), (0, 0), "nothing left held");
    assert!(!exists(&server, probe.keys()[1]), "no leases key when idle");
}

/// A holder killed with SIGKILL: while it lives its leases are renewed
/// (held for 3 × lease_ttl), and once it is dead they come back within
/// lease_ttl, each lease on its own (this process holds another one all
/// along, so the leases key itself never expires); then the keys are gone.
fn killed_holder_returns_its_permits() {
    let server = RedisServer::start();
    let url = server.url();
    let lease_ttl = Duration::from_millis(300);
    let ours = RedisBulkhead::new(
        "killed",
        config(3, 10, Duration::from_secs(1)),
        &options(&url, lease_ttl),
    )
    .unwrap();
    let kept = ours.try_acquire().unwrap();
    let env = [
        ("NAME", "killed".to_string()),
        ("MAX", "3".to_string()),
        ("LEASE_MS", "300".to_string()),
        ("HOLD", "2".to_string()),
    ];
    let mut holder = spawn("holder", &url, &env);
    let lines = Lines::of(&mut holder);
    assert_eq!(lines.next(), "held");
    // For three lease times the holder's renewals keep both permits.
    let start = Instant::now();
    while start.elapsed() < lease_ttl * 3 {
        assert!(
            matches!(ours.try_acquire(), Err(RedisBulkheadError::Full(_))),
            "a live holder's permit was taken after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_and_reap(holder);
    let back = within(lease_ttl * 4, || {
        ours.fleet_counts().map(|c| c.in_use) == Ok(1)
    })
    .expect("the dead holder's permits never came back");
    assert!(
        back <= lease_ttl + Duration::from_millis(50),
        "permits came back after {back:?}, more than lease_ttl"
    );
    let a = ours.try_acquire().unwrap();
    let b = ours.try_acquire().unwrap();
    assert!(matches!(
        ours.try_acquire(),
        Err(RedisBulkheadError::Full(_))
    ));
    drop((a, b, kept));
    // Idle: the leases key is gone at once, the config key within lease_ttl.
    assert!(!exists(&server, ours.keys()[1]));
    within(lease_ttl * 2, || !exists(&server, ours.keys()[0]))
        .expect("the config key outlived lease_ttl after the last use");
}

/// A call that runs for 4 × lease_ttl keeps its permit (renewed by the
/// keeper): another instance is refused all along, and no lease is lost.
fn long_call_keeps_its_permit() {
    let server = RedisServer::start();
    let url = server.url();
    let lease_ttl = Duration::from_millis(300);
    let opts = options(&url, lease_ttl);
    let holder = Arc::new(
        Bulkhead::redis_unregistered("long", config(1, 0, Duration::ZERO), &opts).unwrap(),
    );
    let other = RedisBulkhead::new("long", config(1, 0, Duration::ZERO), &opts).unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let runner = {
        let holder = Arc::clone(&holder);
        std::thread::spawn(move || {
            holder.execute(|| {
                started_tx.send(()).unwrap();
                // Runs until the test says it is done.
                done_rx.recv_timeout(WATCHDOG).map_err(|_| "watchdog")
            })
        })
    };
    started_rx.recv_timeout(WATCHDOG).unwrap();
    let start = Instant::now();
    while start.elapsed() < lease_ttl * 4 {
        assert!(
            matches!(other.try_acquire(), Err(RedisBulkheadError::Full(_))),
            "the long call's permit was lost after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    done_tx.send(()).unwrap();
    runner.join().unwrap().unwrap();
    let engine = holder.redis_bulkhead().unwrap();
    assert_eq!(engine.lost_leases(), 0);
    assert_eq!(engine.held(), 0);
    assert!(other.try_acquire().is_ok(), "released after the call");
}

/// max_queue and queue_timeout hold fleet-wide: with the one permit held,
/// two processes wait; a third caller (here) finds the queue full at once;
/// the waiters time out after queue_timeout and leave no entry behind.
fn queue_bounds_hold_fleet_wide() {
    let server = RedisServer::start();
    let url = server.url();
    let opts = options(&url, Duration::from_secs(2));
    let cfg = config(1, 2, Duration::from_millis(800));
    let ours = Bulkhead::redis_unregistered("queue", cfg, &opts).unwrap();
    let engine = ours.redis_bulkhead().unwrap();
    let permit = ours.acquire().unwrap();
    let env = [
        ("NAME", "queue".to_string()),
        ("MAX", "1".to_string()),
        ("LEASE_MS", "2000".to_string()),
        ("MAX_QUEUE", "2".to_string()),
        ("QUEUE_MS", "800".to_string()),
    ];
    let mut waiters: Vec<Child> = (0..2).map(|_| spawn("waiter", &url, &env)).collect();
    let lines: Vec<Lines> = waiters.iter_mut().map(Lines::of).collect();
    for l in &lines {
        assert_eq!(l.next(), "joining");
    }
    within(WATCHDOG, || {
        engine.fleet_counts().map(|c| c.queued) == Ok(2)
    })
    .expect("the two waiters never queued");
    // The queue is full fleet-wide: refused at once, not after queue_timeout.
    let start = Instant::now();
    assert!(matches!(
        ours.acquire_timeout(Duration::from_millis(800)),
        Err(Error::BulkheadFull)
    ));
    assert!(start.elapsed() < Duration::from_millis(800));
    for l in &lines {
        let line = l.next();
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields[0], "timeout", "{line}");
        let waited: u64 = fields[1].parse().unwrap();
        assert!(waited >= 800, "timed out after {waited} ms < queue_timeout");
    }
    for c in waiters {
        finish(c, WATCHDOG);
    }
    let counts = engine.fleet_counts().unwrap();
    assert_eq!(
        (counts.in_use, counts.queued),
        (1, 0),
        "no waiter entry left"
    );
    assert!(!exists(&server, engine.keys()[2]));
    assert!(!exists(&server, engine.keys()[3]));
    drop(permit);
}

/// Waiters of different processes are admitted in the order they joined.
fn queue_is_fifo_across_processes() {
    let server = RedisServer::start();
    let url = server.url();
    let opts = options(&url, Duration::from_secs(2));
    let ours = Bulkhead::redis_unregistered("fifo", config(1, 10, Duration::from_secs(20)), &opts)
        .unwrap();
    let engine = ours.redis_bulkhead().unwrap();
    let permit = ours.acquire().unwrap();
    let env = [
        ("NAME", "fifo".to_string()),
        ("MAX", "1".to_string()),
        ("LEASE_MS", "2000".to_string()),
        ("MAX_QUEUE", "10".to_string()),
        ("QUEUE_MS", "20000".to_string()),
    ];
    let mut children = Vec::new();
    let mut lines = Vec::new();
    for n in 1..=3u32 {
        let mut c = spawn("waiter", &url, &env);
        let l = Lines::of(&mut c);
        assert_eq!(l.next(), "joining");
        // The next one starts only once this one is queued.
        within(WATCHDOG, || {
            engine.fleet_counts().map(|c| c.queued) == Ok(n)
        })
        .expect("a waiter never queued");
        children.push(c);
        lines.push(l);
    }
    drop(permit);
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(l.next(), format!("admitted {}", n + 1), "FIFO order");
    }
    for c in children {
        finish(c, WATCHDOG);
    }
}

/// Every key of one bulkhead hashes to one Cluster slot; they carry the
/// prefix and the format version; an idle bulkhead leaves no key behind.
fn keys_share_a_slot_and_expire_when_idle() {
    let server = RedisServer::start();
    let url = server.url();
    let lease_ttl = Duration::from_millis(300);
    let b = RedisBulkhead::new(
        "slots",
        config(2, 5, Duration::from_secs(1)),
        &options(&url, lease_ttl).prefix("app"),
    )
    .unwrap();
    let keys = b.keys();
    assert_eq!(keys[0], "app:v1:{bulkhead:slots}");
    for k in keys {
        assert_eq!(cluster_slot(k), cluster_slot(keys[0]), "{k}");
    }
    let lease = b.try_acquire().unwrap();
    assert!(exists(&server, keys[0]) && exists(&server, keys[1]));
    let pttl: i64 = server.command(&["PTTL", keys[1]]).parse().unwrap();
    assert!(
        pttl > 0 && pttl <= 301,
        "leases key expires with its lease: {pttl}"
    );
    drop(lease);
    assert!(!exists(&server, keys[1]), "no lease: no leases key");
    within(lease_ttl * 2, || server.command(&["DBSIZE"]) == "0")
        .expect("keys left behind by an idle bulkhead");
}

/// kill -9 of the server mid-run: every call returns within
/// 2 × command_timeout and the local fallback decides (at max /
/// expected_instances), with one StoreUnavailable; after a restart on the
/// same port, Redis decides again within guard_reset_timeout, with one
/// StoreRecovered.
fn server_killed_mid_run_falls_back_and_recovers() {
    let mut server = RedisServer::start();
    let url = server.url();
    let opts = options(&url, Duration::from_secs(2))
        .connect_timeout(Duration::from_millis(100))
        .fallback(Fallback::Local)
        .expected_instances(2);
    let bulkhead =
        Bulkhead::redis_unregistered("outage", config(4, 0, Duration::ZERO), &opts).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    {
        let events = Arc::clone(&events);
        bulkhead.subscribe(move |e| events.lock().unwrap().push(e.kind.clone()));
    }
    let engine = bulkhead.redis_bulkhead().unwrap();
    let before = bulkhead.acquire().unwrap();
    assert_eq!(engine.held(), 1, "a Redis lease");
    server.kill();
    let bound = Duration::from_millis(200); // 2 × command_timeout
    fn timed(bound: Duration, f: impl FnOnce()) {
        let start = Instant::now();
        f();
        let took = start.elapsed();
        assert!(took <= bound, "a call took {took:?} > {bound:?}");
    }
    // The release of a Redis permit while Redis is down: bounded.
    timed(bound, || drop(before));
    assert_eq!(engine.held(), 0, "never counted twice: forgotten at once");
    // Local fallback: 4 / 2 = 2 at once here.
    let mut held = Vec::new();
    for _ in 0..2 {
        timed(bound, || held.push(bulkhead.try_acquire().unwrap()));
    }
    timed(bound, || {
        assert!(matches!(bulkhead.try_acquire(), Err(Error::BulkheadFull)))
    });
    for _ in 0..20 {
        timed(bound, || {
            assert!(matches!(bulkhead.try_acquire(), Err(Error::BulkheadFull)))
        });
    }
    assert_eq!(bulkhead.metrics().in_flight, 2);
    assert!(bulkhead.metrics().fallback_decisions >= 23);
    drop(held);
    let unavailable = |events: &[EventKind]| {
        events
            .iter()
            .filter(|e| matches!(e, EventKind::StoreUnavailable { .. }))
            .count()
    };
    assert_eq!(unavailable(&events.lock().unwrap()), 1);
    server.restart();
    let restarted = Instant::now();
    let back = within(Duration::from_secs(5), || match bulkhead.try_acquire() {
        Ok(guard) => {
            let from_redis = engine.held() == 1;
            drop(guard);
            from_redis
        }
        Err(_) => false,
    })
    .expect("Redis never decided again");
    let since_restart = restarted.elapsed();
    assert!(
        since_restart <= Duration::from_millis(500) + bound,
        "recovered {since_restart:?} after the restart ({back:?} polling)"
    );
    let events = events.lock().unwrap();
    assert_eq!(unavailable(&events), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, EventKind::StoreRecovered))
            .count(),
        1
    );
}

/// FailOpen admits and FailClosed refuses with a typed error while the
/// server is down; both count fallback decisions; construction needs no
/// server.
fn fail_open_and_fail_closed() {
    let mut server = RedisServer::start();
    let url = server.url();
    server.kill();
    let open = Bulkhead::redis_unregistered(
        "open",
        config(1, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(1)).fallback(Fallback::FailOpen),
    )
    .expect("construction needs no server");
    let closed = Bulkhead::redis_unregistered(
        "closed",
        config(1, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(1)).fallback(Fallback::FailClosed),
    )
    .unwrap();
    let a = open.acquire().unwrap();
    let b = open.acquire().unwrap();
    assert_eq!(open.metrics().in_flight, 2, "admitted beyond the limit");
    drop((a, b));
    assert_eq!(open.metrics().in_flight, 0);
    assert_eq!(open.metrics().fallback_decisions, 2);
    match closed.execute(|| Ok::<_, ()>(())) {
        Err(Error::Redis(RedisError::Unavailable { .. })) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(closed.metrics().fallback_decisions, 1);
}

/// CLIENT PAUSE: a call returns within 2 × command_timeout (unanswered),
/// and Redis decides again once the pause ends.
fn client_pause_is_bounded() {
    let server = RedisServer::start();
    let url = server.url();
    let b = RedisBulkhead::new(
        "pause",
        config(1, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(1)),
    )
    .unwrap();
    drop(b.try_acquire().unwrap()); // connection and script ready
    assert_eq!(server.command(&["CLIENT", "PAUSE", "300"]), "+OK");
    let start = Instant::now();
    let refused = b.try_acquire();
    let took = start.elapsed();
    assert!(
        matches!(
            refused,
            Err(RedisBulkheadError::Redis(RedisError::Unavailable { .. }))
        ),
        "{refused:?}"
    );
    assert!(took <= Duration::from_millis(200), "took {took:?}");
    within(WATCHDOG, || {
        start.elapsed() > Duration::from_millis(300) && b.try_acquire().is_ok()
    })
    .expect("Redis never decided again after the pause");
}

/// A reply that never came (the server busy past command_timeout, then
/// running the script): the lease it granted is removed by the keeper's
/// one retry (at lease_ttl / 3), long before it would expire, so no permit
/// is lost to a lost reply.
fn lost_reply_loses_no_permit() {
    let server = Arc::new(RedisServer::start());
    let url = server.url();
    let lease_ttl = Duration::from_secs(3);
    let b = RedisBulkhead::new(
        "lost",
        config(1, 0, Duration::ZERO),
        &options(&url, lease_ttl),
    )
    .unwrap();
    drop(b.try_acquire().unwrap()); // connection and script ready
    // A script that keeps the server busy for 600 ms.
    let busy = {
        let server = Arc::clone(&server);
        std::thread::spawn(move || {
            server.command(&[
                "EVAL",
                "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
                 repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - s > 600000 return 1",
                "0",
            ])
        })
    };
    // A probe on a connection pool of its own (other settings, another
    // store) sees when the busy script runs, so that `b`'s pooled
    // connection stays clean and its call is sent.
    let probe = RedisBulkhead::new(
        "probe",
        config(1, 0, Duration::ZERO),
        &options(&url, lease_ttl).command_timeout(Duration::from_millis(50)),
    )
    .unwrap();
    within(WATCHDOG, || probe.fleet_counts().is_err()).expect("the server was never busy");
    let start = Instant::now();
    let refused = b.try_acquire();
    assert!(
        matches!(
            refused,
            Err(RedisBulkheadError::Redis(RedisError::Unavailable { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(busy.join().unwrap(), "1");
    // The script ran after the busy one and took the permit; the keeper's
    // retry removes it at about lease_ttl / 3 (1 s), not at expiry (3 s).
    let held_after_busy = b.fleet_counts().unwrap().in_use;
    within(lease_ttl * 3 / 4, || {
        b.fleet_counts().map(|c| c.in_use) == Ok(0)
    })
    .expect("the unanswered call's lease stayed until it expired");
    assert!(start.elapsed() < lease_ttl);
    assert_eq!(
        held_after_busy, 1,
        "the unanswered script did take the permit"
    );
    assert!(b.try_acquire().is_ok());
}

/// SCRIPT FLUSH between calls: the script is loaded again.
fn script_flush_reloads_the_script() {
    let server = RedisServer::start();
    let url = server.url();
    let b = RedisBulkhead::new(
        "flush",
        config(1, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(1)),
    )
    .unwrap();
    drop(b.try_acquire().unwrap());
    assert_eq!(server.command(&["SCRIPT", "FLUSH"]), "+OK");
    let lease = b.try_acquire().expect("reloaded after SCRIPT FLUSH");
    assert!(matches!(b.try_acquire(), Err(RedisBulkheadError::Full(_))));
    drop(lease);
}

/// Another config in Redis is a typed error naming both, on the call (the
/// constructor succeeds); adopting it enforces the stored limits.
fn config_mismatch_is_typed_or_adopted() {
    let server = RedisServer::start();
    let url = server.url();
    let opts = options(&url, Duration::from_secs(1));
    let first = RedisBulkhead::new("cfg", config(1, 0, Duration::ZERO), &opts).unwrap();
    let lease = first.try_acquire().unwrap();
    let second = Bulkhead::redis_unregistered("cfg", config(5, 0, Duration::ZERO), &opts).unwrap();
    match second.try_acquire() {
        Err(Error::Redis(RedisError::ConfigMismatch { key, stored, ours })) => {
            assert_eq!(key, "stockade:v1:{bulkhead:cfg}");
            assert_eq!(stored, "max_concurrent=1,max_queue=0");
            assert_eq!(ours, "max_concurrent=5,max_queue=0");
        }
        other => panic!("expected ConfigMismatch, got {other:?}"),
    }
    let adopting = RedisBulkhead::new(
        "cfg",
        config(5, 0, Duration::ZERO),
        &opts.clone().adopt_stored_config(true),
    )
    .unwrap();
    // The stored limit (1) is in force: full.
    assert!(matches!(
        adopting.try_acquire(),
        Err(RedisBulkheadError::Full(_))
    ));
    assert_eq!(adopting.effective_config().max_concurrent, 1);
    drop(lease);
    assert!(adopting.try_acquire().is_ok());
}

/// Dispose while waiting in the fleet's queue: the waiter returns
/// Disposed and its entry leaves the queue; a timed-out waiter too.
fn dispose_and_timeout_leave_no_waiter() {
    let server = RedisServer::start();
    let url = server.url();
    let opts = options(&url, Duration::from_secs(2));
    let holder = RedisBulkhead::new("leave", config(1, 5, Duration::ZERO), &opts).unwrap();
    let lease = holder.try_acquire().unwrap();
    let waiting = Arc::new(
        Bulkhead::redis_unregistered("leave", config(1, 5, Duration::from_secs(30)), &opts)
            .unwrap(),
    );
    let w = Arc::clone(&waiting);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(matches!(w.acquire(), Err(Error::Disposed)));
    });
    within(WATCHDOG, || {
        holder.fleet_counts().map(|c| c.queued) == Ok(1)
    })
    .expect("never queued");
    assert_eq!(waiting.metrics().queue_depth, 1);
    waiting.dispose();
    assert!(
        rx.recv_timeout(WATCHDOG)
            .expect("watchdog: waiter never woke")
    );
    assert_eq!(holder.fleet_counts().unwrap().queued, 0, "left the queue");
    let timing =
        Bulkhead::redis_unregistered("leave", config(1, 5, Duration::from_millis(200)), &opts)
            .unwrap();
    let t = watched(move || {
        let r = timing.acquire().map(|_| ());
        (r, timing.redis_bulkhead().unwrap().fleet_counts().unwrap())
    });
    assert!(matches!(t.0, Err(Error::QueueTimeout { .. })));
    assert_eq!(
        (t.1.in_use, t.1.queued),
        (1, 0),
        "no permit lost, no entry left"
    );
    drop(lease);
}

/// The registry knows a Redis bulkhead like a local one, and it composes.
fn registered_and_composes() {
    let server = RedisServer::start();
    let url = server.url();
    let b = Bulkhead::redis(
        "rb-registered",
        config(2, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(1)),
    )
    .unwrap();
    assert!(b.is_redis());
    let found = Bulkhead::get("rb-registered").expect("registered");
    assert!(Arc::ptr_eq(&b, &found));
    assert!(matches!(
        Bulkhead::redis(
            "rb-registered",
            config(2, 0, Duration::ZERO),
            &options(&url, Duration::from_secs(1))
        ),
        Err(Error::NameTaken { .. })
    ));
    let token = b.acquire().unwrap().into_token();
    assert_eq!(
        b.redis_bulkhead().unwrap().fleet_counts().unwrap().in_use,
        1
    );
    assert_eq!(b.release_token(token), Ok(()));
    assert_eq!(
        b.redis_bulkhead().unwrap().fleet_counts().unwrap().in_use,
        0
    );
    let result = b.execute(|| Ok::<_, ()>(7));
    assert_eq!(result.unwrap(), 7);
    assert_eq!(b.metrics().successes, 2);
    // In a pipeline behind a breaker, the call runs holding a fleet lease.
    let breaker = Arc::new(
        stockade::blocking::CircuitBreaker::unregistered(
            "rb-breaker",
            stockade::breaker::BreakerConfig::DEFAULT,
        )
        .unwrap(),
    );
    let pipeline = stockade::blocking::Pipeline::new().then(&breaker).then(&b);
    let inside = pipeline.execute(|| Ok::<_, String>(b.redis_bulkhead().unwrap().held()));
    assert_eq!(inside.unwrap(), 1, "the call held one lease");
    assert_eq!(b.redis_bulkhead().unwrap().held(), 0);
    assert_eq!(b.metrics().successes, 3);
    assert_eq!(breaker.metrics().successes, 1);
    b.dispose();
    assert!(Bulkhead::get("rb-registered").is_none());
}

/// Same decisions as the core: random sequences of acquires, joins,
/// releases and leaves run through the script and through the core
/// machine (with the blocking layer's FIFO hand-off modelled), and every
/// decision, every admitted waiter and the counts agree.
fn same_decisions_as_the_core() {
    use std::collections::VecDeque;
    use stockade::bulkhead::{Bulkhead as Core, LeaveQueue, QueuedAcquire, RawAdmission};
    let server = RedisServer::start();
    let url = server.url();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for round in 0..6 {
        let max = 1 + next(4) as u32;
        let max_queue = next(4) as u32;
        let cfg = config(max, max_queue, Duration::from_secs(1));
        let name = format!("diff-{round}");
        let redis = RedisBulkhead::new(&name, cfg, &options(&url, Duration::from_secs(5))).unwrap();
        let core = Core::new(cfg).unwrap();
        // Held permits: (core token, Redis lease); waiters in FIFO order:
        // (id, Redis waiter).
        let mut held = Vec::new();
        let mut waiting: VecDeque<(u32, stockade::redis::RedisWaiter<'_>)> = VecDeque::new();
        let mut ids = 0u32;
        for step in 0..150 {
            let what = format!("round {round} (max {max}, queue {max_queue}) step {step}");
            match next(4) {
                0 => {
                    let c = core.try_acquire();
                    let r = redis.try_acquire();
                    assert_eq!(c.is_ok(), r.is_ok(), "acquire: {what}");
                    if let (Ok(c), Ok(r)) = (c, r) {
                        held.push((c.into_token(), r));
                    }
                }
                1 => {
                    ids += 1;
                    let mut w = redis.waiter();
                    let r = w.poll();
                    match core.enqueue_raw() {
                        RawAdmission::Acquired(token) => {
                            let lease = r.unwrap_or_else(|e| panic!("{e}: {what}"));
                            held.push((token, lease.expect("admitted at once")));
                        }
                        RawAdmission::Enqueued => {
                            assert!(matches!(r, Ok(None)), "join: {what}");
                            waiting.push_back((ids, w));
                        }
                        RawAdmission::Full(_) => {
                            assert!(
                                matches!(r, Err(RedisBulkheadError::QueueFull(_))),
                                "join refused: {what}"
                            );
                        }
                    }
                }
                2 if !held.is_empty() => {
                    let (token, lease) = held.swap_remove(next(held.len() as u64) as usize);
                    core.release(token).unwrap();
                    lease.release().unwrap();
                }
                3 if !waiting.is_empty() => {
                    let at = next(waiting.len() as u64) as usize;
                    drop(waiting.remove(at));
                    if let LeaveQueue::Left { wake_next: true } = core.leave_queue_raw() {
                        panic!("a free permit next to a waiter: {what}");
                    }
                }
                _ => continue,
            }
            // The core's hand-off: free permits go to the front waiters.
            let mut granted = Vec::new();
            while !waiting.is_empty() {
                match core.acquire_queued_raw() {
                    QueuedAcquire::Acquired { token, .. } => granted.push(token),
                    _ => break,
                }
            }
            // Redis: every waiter polls, the last first (the order of polls
            // must not matter); exactly the first `granted.len()` in the
            // queue are admitted.
            let order: Vec<u32> = waiting.iter().map(|(id, _)| *id).collect();
            let mut admitted = Vec::new();
            let mut still = VecDeque::new();
            for (id, mut w) in waiting.drain(..).rev() {
                match w.poll().unwrap_or_else(|e| panic!("{e}: {what}")) {
                    Some(lease) => admitted.push((id, lease)),
                    None => still.push_front((id, w)),
                }
            }
            admitted.reverse();
            assert_eq!(admitted.len(), granted.len(), "grants: {what}");
            let first: Vec<u32> = admitted.iter().map(|(id, _)| *id).collect();
            assert_eq!(first, order[..first.len()], "FIFO grants: {what}");
            waiting = still;
            for ((_, lease), token) in admitted.into_iter().zip(granted) {
                held.push((token, lease));
            }
            let counts = redis.fleet_counts().unwrap();
            assert_eq!(
                (counts.in_use, counts.queued),
                (core.in_use(), core.queued()),
                "counts: {what}"
            );
        }
    }
}

/// TimeSource::Client: the lease's expiry is the client's clock plus
/// lease_ttl; the default lease_ttl is 30 s.
fn client_time_sets_the_expiry() {
    let server = RedisServer::start();
    let url = server.url();
    let plain = RedisBulkhead::new(
        "default-ttl",
        config(1, 0, Duration::ZERO),
        &RedisOptions::new(url.as_str()),
    )
    .unwrap();
    assert_eq!(plain.lease_ttl(), stockade::redis::DEFAULT_LEASE_TTL);
    assert_eq!(plain.lease_ttl(), Duration::from_secs(30));
    let b = RedisBulkhead::new(
        "client-time",
        config(1, 0, Duration::ZERO),
        &options(&url, Duration::from_secs(2)).time(stockade::redis::TimeSource::Client),
    )
    .unwrap();
    let micros = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64
    };
    let before = micros();
    let lease = b.try_acquire().unwrap();
    let after = micros();
    let score: i64 = server
        .command(&["ZSCORE", b.keys()[1], lease.id()])
        .parse()
        .unwrap();
    assert!(
        (before + 2_000_000..=after + 2_000_000).contains(&score),
        "expiry {score} not in [{before}, {after}] + 2 s"
    );
    assert!(matches!(b.try_acquire(), Err(RedisBulkheadError::Full(_))));
    drop(lease);
    assert!(b.try_acquire().is_ok());
}

/// Bad input is a typed error naming what is wrong, before any server is
/// contacted.
fn bad_input_is_typed() {
    let opts = RedisOptions::new("redis://127.0.0.1:1/0");
    assert!(matches!(
        Bulkhead::redis_unregistered("x", config(0, 0, Duration::ZERO), &opts),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        Bulkhead::redis_unregistered("a{b", config(1, 0, Duration::ZERO), &opts),
        Err(Error::Redis(RedisError::InvalidName { .. }))
    ));
    match Bulkhead::redis_unregistered(
        "x",
        config(1, 0, Duration::ZERO),
        &opts.clone().lease_ttl(Duration::from_millis(250)),
    ) {
        Err(Error::Redis(RedisError::InvalidOption { option, .. })) => {
            assert_eq!(option, "lease_ttl");
        }
        other => panic!("expected InvalidOption, got {other:?}"),
    }
    assert!(matches!(
        Bulkhead::redis_unregistered(
            "x",
            config(1, 0, Duration::ZERO),
            &RedisOptions::new("not a url")
        ),
        Err(Error::Redis(RedisError::InvalidUrl { .. }))
    ));
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let tests = tests![
        fleet_limit_holds_across_processes,
        killed_holder_returns_its_permits,
        long_call_keeps_its_permit,
        queue_bounds_hold_fleet_wide,
        queue_is_fifo_across_processes,
        keys_share_a_slot_and_expire_when_idle,
        server_killed_mid_run_falls_back_and_recovers,
        fail_open_and_fail_closed,
        client_pause_is_bounded,
        lost_reply_loses_no_permit,
        script_flush_reloads_the_script,
        config_mismatch_is_typed_or_adopted,
        dispose_and_timeout_leave_no_waiter,
        registered_and_composes,
        bad_input_is_typed,
        client_time_sets_the_expiry,
        same_decisions_as_the_core,
    ];
    processes::run_tests("redis_bulkhead", &tests);
}
