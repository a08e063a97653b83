//! Stockade's fleet-wide machines on a real Redis server against the floor
//! and a peer, in the same run, on the same server.
//!
//! **Limiter** (latency per decision, p50 and p99, at 1, 8 and 64
//! connections: that many threads, each with a connection of its own):
//! - `INCR` (the floor): one `INCR` round trip on a plain connection of the
//!   same client crate, the cheapest command that writes;
//! - `redis_rate`: go-redis/redis_rate's GCRA script body (`allowN`),
//!   called with `EVALSHA` on a plain connection, as redis_rate does. The
//!   script is not part of this repository: give its file with
//!   `STOCKADE_REDIS_RATE_LUA=<path>` (the `allowN` script of
//!   github.com/go-redis/redis_rate, `script_allow_n.lua` or the string in
//!   `lua.go`); without it the row is left out and says so;
//! - `stockade`: `blocking::RateLimiter::redis(..).try_acquire(1)` with
//!   `max_connections` = the thread count (one script call per acquire,
//!   Redis's `TIME`), on the grant path (10⁶ per second: never refused);
//! - `stockade, refused`: the same limiter exhausted (1 per hour): a
//!   refusal answered from the local cache of the last `retry_after`,
//!   without a round trip.
//!
//! **Breaker** (ns per call, one thread, interleaved with
//! [`stockade_bench::paired`]): a closed `blocking::CircuitBreaker::redis`
//! `execute` against a local one's.
//!
//! The last column is Redis's own time per command of the row (`INFO
//! commandstats`' `usec_per_call` of `INCR` or `EVALSHA`, reset before
//! each row): what the script itself costs the server.
//!
//! The server is started by the bench on a free loopback port
//! (`redis-server`, or `$STOCKADE_REDIS_SERVER`), without persistence.
//! Settings: `STOCKADE_REDIS_OPS` (decisions per thread per row, default
//! 20000), `STOCKADE_REDIS_THREADS` (default `1,8,64`). Without `--bench`
//! on the command line (as `cargo test --benches` runs it) every row runs
//! briefly as a smoke check and nothing is written. Output: Markdown on
//! stdout, also written to `<criterion home>/redis/report.md`.

use core::fmt::Write as _;
use core::hint::black_box;
use core::time::Duration;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use stockade::blocking::{CircuitBreaker, RateLimiter};
use stockade::breaker::BreakerConfig;
use stockade::limiter::RateLimiterConfig;
use stockade::redis::RedisOptions;
use stockade_bench::{criterion_home, paired};

#[path = "../../core/tests/common/redis_server.rs"]
mod redis_server;

/// One row's latencies, sorted.
struct Row {
    name: String,
    threads: usize,
    latencies_ns: Vec<u64>,
    wall: Duration,
    /// Redis's own time per command of the row (`INFO commandstats`,
    /// `usec_per_call` of `INCR` or `EVALSHA`), if it sent any.
    server_us: Option<f64>,
}

impl Row {
    fn percentile(&self, p: f64) -> f64 {
        let i = ((self.latencies_ns.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_ns[i] as f64 / 1000.0
    }

    fn per_second(&self) -> f64 {
        self.latencies_ns.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `op` `ops` times on each of `threads` threads, each with its own
/// state from `setup`, started together; returns every latency.
fn run<S, U, O>(name: &str, threads: usize, ops: usize, setup: U, op: O) -> Row
where
    U: Fn(usize) -> S + Sync,
    O: Fn(&mut S) + Sync,
{
    let barrier = Barrier::new(threads + 1);
    let (latencies, wall) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (setup, op, barrier) = (&setup, &op, &barrier);
                scope.spawn(move || {
                    let mut state = setup(t);
                    for _ in 0..ops / 10 + 1 {
                        op(&mut state);
                    }
                    barrier.wait();
                    let mut latencies = Vec::with_capacity(ops);
                    for _ in 0..ops {
                        let start = Instant::now();
                        op(&mut state);
                        latencies.push(start.elapsed().as_nanos() as u64);
                    }
                    latencies
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("bench thread"))
            .collect();
        (all, start.elapsed())
    });
    let mut latencies_ns = latencies;
    latencies_ns.sort_unstable();
    let row = Row {
        name: name.into(),
        threads,
        latencies_ns,
        wall,
        server_us: None,
    };
    eprintln!(
        "{name} @ {threads}: p50 {:.1} µs, p99 {:.1} µs, {:.0}/s",
        row.percentile(0.5),
        row.percentile(0.99),
        row.per_second()
    );
    row
}

/// Redis's microseconds per call of `command` since the last
/// `CONFIG RESETSTAT` (`None` if it served none).
fn server_usec(server: &redis_server::RedisServer, command: &str) -> Option<f64> {
    let prefix = format!("cmdstat_{command}:");
    server
        .command(&["INFO", "commandstats"])
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()).map(str::to_owned))
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|field| field.strip_prefix("usec_per_call="))
                .and_then(|v| v.parse().ok())
        })
}

/// Runs `row` after resetting the server's statistics and records its
/// server time per `command`.
fn with_server_time(
    server: &redis_server::RedisServer,
    command: &str,
    row: impl FnOnce() -> Row,
) -> Row {
    server.command(&["CONFIG", "RESETSTAT"]);
    let mut row = row();
    row.server_us = server_usec(server, command);
    row
}

fn connection(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("client");
    client.get_connection().expect("connection")
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let ops: usize = std::env::var("STOCKADE_REDIS_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 20_000 } else { 200 });
    let thread_counts: Vec<usize> = std::env::var("STOCKADE_REDIS_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    let server = redis_server::RedisServer::start();
    let url = server.url();
    let redis_rate = std::env::var("STOCKADE_REDIS_RATE_LUA")
        .ok()
        .map(|path| std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")));

    let mut rows: Vec<Row> = Vec::new();
    for &threads in &thread_counts {
        rows.push(with_server_time(&server, "incr", || {
            run(
                "INCR (floor)",
                threads,
                ops,
                |t| (connection(&url), format!("bench:incr:{t}")),
                |(con, key)| {
                    let n: i64 = redis::cmd("INCR").arg(&*key).query(con).expect("INCR");
                    black_box(n);
                },
            )
        }));
        if let Some(source) = &redis_rate {
            let script = redis::Script::new(source);
            rows.push(with_server_time(&server, "evalsha", || {
                run(
                    "redis_rate allowN",
                    threads,
                    ops,
                    |_| connection(&url),
                    |con| {
                        // burst, rate, period (s), cost: 10^6 per second.
                        let reply: redis::Value = script
                            .key("bench:redis_rate")
                            .arg(1_000_000)
                            .arg(1_000_000)
                            .arg(1)
                            .arg(1)
                            .invoke(con)
                            .expect("redis_rate script");
                        black_box(reply);
                    },
                )
            }));
        }
        let options = RedisOptions::new(url.clone())
            .max_connections(threads as u32)
            .command_timeout(Duration::from_secs(1));
        let limiter = RateLimiter::redis(
            &format!("bench-grant-{threads}"),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1_000_000)
                .with_period(Duration::from_secs(1)),
            &options,
        )
        .expect("limiter");
        rows.push(with_server_time(&server, "evalsha", || {
            run(
                "stockade try_acquire",
                threads,
                ops,
                |_| Arc::clone(&limiter),
                |limiter| {
                    limiter
                        .try_acquire(1)
                        .expect("granted: the limit is never reached");
                },
            )
        }));
        let exhausted = RateLimiter::redis(
            &format!("bench-refused-{threads}"),
            RateLimiterConfig::DEFAULT
                .with_requests_per_period(1)
                .with_period(Duration::from_secs(3600))
                .with_max_queue_size(0),
            &options,
        )
        .expect("limiter");
        let _ = exhausted.try_acquire(1);
        rows.push(run(
            "stockade try_acquire, refused (cached)",
            threads,
            ops,
            |_| Arc::clone(&exhausted),
            |limiter| {
                assert!(limiter.try_acquire(1).is_err(), "exhausted for an hour");
            },
        ));
        assert_eq!(
            limiter.metrics().fallback_decisions,
            0,
            "every decision came from Redis"
        );
        limiter.dispose();
        exhausted.dispose();
    }

    // The closed breaker: no round trip on the closed path.
    let local = CircuitBreaker::new("bench-local", BreakerConfig::DEFAULT).expect("breaker");
    let fleet = CircuitBreaker::redis(
        "bench-fleet",
        BreakerConfig::DEFAULT,
        &RedisOptions::new(url.clone()),
    )
    .expect("breaker");
    let breaker = paired(
        "redis-breaker",
        "closed execute, redis",
        || {
            black_box(fleet.execute(|| Ok::<u32, ()>(black_box(1)))).expect("closed");
        },
        "closed execute, local",
        || {
            black_box(local.execute(|| Ok::<u32, ()>(black_box(1)))).expect("closed");
        },
    );

    let mut report = String::new();
    let _ = writeln!(
        report,
        "#### Across a fleet: Redis {} on loopback (`benches/benches/redis.rs`)\n",
        server
            .command(&["INFO", "server"])
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
    );
    let _ = writeln!(
        report,
        "| limiter decision | connections | p50 µs | p99 µs | decisions/s | p50 ÷ INCR | p99 ÷ INCR | Redis µs/command |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for row in &rows {
        let floor = rows
            .iter()
            .find(|r| r.threads == row.threads && r.name.starts_with("INCR"))
            .expect("floor row");
        let _ = writeln!(
            report,
            "| {} | {} | {:.1} | {:.1} | {:.0} | {:.2}× | {:.2}× | {} |",
            row.name,
            row.threads,
            row.percentile(0.5),
            row.percentile(0.99),
            row.per_second(),
            row.percentile(0.5) / floor.percentile(0.5),
            row.percentile(0.99) / floor.percentile(0.99),
            row.server_us
                .map_or_else(|| "—".to_owned(), |us| format!("{us:.2}")),
        );
    }
    if redis_rate.is_none() {
        let _ = writeln!(
            report,
            "\n(redis_rate's script not measured: set `STOCKADE_REDIS_RATE_LUA` to its file.)"
        );
    }
    let _ = writeln!(
        report,
        "\n| breaker, closed `execute` | ns/call | ratio |\n| --- | ---: | ---: |\n| local | {:.1} | 1.00× |\n| Redis-backed | {:.1} | {:.2}× (p10 {:.2}, p90 {:.2}) |",
        breaker.reference_ns,
        breaker.subject_ns,
        breaker.ratio,
        breaker.ratio_p10,
        breaker.ratio_p90
    );
    println!("{report}");
    if measuring {
        let dir = criterion_home().join("redis");
        std::fs::create_dir_all(&dir).expect("report directory");
        std::fs::write(dir.join("report.md"), &report).expect("report");
    }
    fleet.dispose();
    local.dispose();
}
