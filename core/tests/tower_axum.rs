//! The axum example's router (`examples/axum.rs`: one Stockade layer on
//! `/work/{kind}`) served on 127.0.0.1 and driven by a bounded load of raw
//! HTTP/1.1 requests: 200s, then 429s past the limiter, 503s once the
//! breaker opened or the bulkhead is full, 504s for a slow handler. Each
//! test stops its server and fails on a real-time watchdog instead of
//! hanging. Nothing leaves 127.0.0.1.
#![cfg(not(stockade_loom))]

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/axum.rs"]
mod example;

use core::future::{Future, IntoFuture};
use core::net::SocketAddr;
use core::time::Duration;
use std::time::Instant;

use example::{Guards, Limits};
use stockade::breaker::BreakerState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The most any test may take, in real time.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Limits under which nothing is refused: each test lowers one.
const ROOMY: Limits = Limits {
    requests: 10_000,
    period: Duration::from_secs(60),
    concurrent: 64,
    failures: 10_000,
    timeout: Duration::from_secs(20),
};

/// One answer: the status and the `Retry-After` header, if any.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
}

/// Serves the example's router over `guards` on 127.0.0.1 (a free port);
/// the server stops when the returned task is aborted.
async fn serve(guards: &Guards) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.ip().is_loopback());
    let server = axum::serve(listener, example::router(guards)).into_future();
    let task = tokio::spawn(async move {
        server.await.unwrap();
    });
    (addr, task)
}

/// `GET path` over a new connection (HTTP/1.1, `Connection: close`).
async fn get(addr: SocketAddr, path: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let retry_after = lines.take_while(|line| !line.is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    Answer {
        status,
        retry_after,
    }
}

/// `n` concurrent `GET path`s; their answers, in completion order.
async fn load(addr: SocketAddr, path: &'static str, n: usize) -> Vec<Answer> {
    let mut requests = JoinSet::new();
    for _ in 0..n {
        requests.spawn(get(addr, path));
    }
    requests.join_all().await
}

fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

/// Runs `test` under the watchdog.
async fn watched(test: impl Future<Output = ()>) {
    tokio::time::timeout(WATCHDOG, test)
        .await
        .expect("the test hit its watchdog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_load_is_all_200() {
    watched(async {
        let guards = Guards::new("axum-healthy", ROOMY).unwrap();
        let (addr, server) = serve(&guards).await;
        for _ in 0..5 {
            let answers = load(addr, "/work/ok", 40).await;
            assert_eq!(count(&answers, 200), 40, "{answers:?}");
        }
        assert_eq!(get(addr, "/health").await.status, 200);
        let m = guards.breaker.metrics();
        assert_eq!((m.successes, m.failures, m.rejections), (200, 0, 0));
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_rate_limit_429_with_retry_after() {
    watched(async {
        // 5 per minute: no permit comes back while the test runs.
        let limits = Limits {
            requests: 5,
            ..ROOMY
        };
        let guards = Guards::new("axum-limited", limits).unwrap();
        let (addr, server) = serve(&guards).await;
        let answers = load(addr, "/work/ok", 20).await;
        assert_eq!(count(&answers, 200), 5, "{answers:?}");
        assert_eq!(count(&answers, 429), 15, "{answers:?}");
        for refused in answers.iter().filter(|a| a.status == 429) {
            // The next permit is about 12 s away (rounded up).
            let after = refused.retry_after.expect("a 429 says when to retry");
            assert!((1..=12).contains(&after), "{refused:?}");
        }
        // The unprotected route is not limited.
        assert_eq!(get(addr, "/health").await.status, 200);
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_breaker_trips_503_with_retry_after() {
    watched(async {
        let limits = Limits {
            failures: 3,
            ..ROOMY
        };
        let guards = Guards::new("axum-breaker", limits).unwrap();
        let (addr, server) = serve(&guards).await;
        assert_eq!(get(addr, "/work/ok").await.status, 200);
        // The handler's 500s are the failures the breaker counts.
        for _ in 0..3 {
            assert_eq!(get(addr, "/work/fail").await.status, 500);
        }
        assert_eq!(guards.breaker.state(), BreakerState::Open);
        let answers = load(addr, "/work/ok", 20).await;
        assert_eq!(count(&answers, 503), 20, "{answers:?}");
        assert!(
            answers.iter().all(|a| a.retry_after == Some(60)),
            "{answers:?}"
        );
        let m = guards.breaker.metrics();
        assert_eq!((m.successes, m.failures, m.rejections), (1, 3, 20));
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bulkhead_answers_503() {
    watched(async {
        let limits = Limits {
            concurrent: 2,
            ..ROOMY
        };
        let guards = Guards::new("axum-bulkhead", limits).unwrap();
        let (addr, server) = serve(&guards).await;
        // Two slow requests hold both permits (for 20 s, the timeout).
        let slow = tokio::spawn(load(addr, "/work/sleep-30000", 2));
        let start = Instant::now();
        while guards.bulkhead.metrics().in_flight < 2 {
            assert!(
                start.elapsed() < WATCHDOG,
                "the slow requests never arrived"
            );
            tokio::task::yield_now().await;
        }
        let refused = load(addr, "/work/ok", 10).await;
        assert_eq!(count(&refused, 503), 10, "{refused:?}");
        assert!(
            refused.iter().all(|a| a.retry_after.is_none()),
            "{refused:?}"
        );
        assert_eq!(guards.bulkhead.metrics().rejections, 10);
        slow.abort();
        server.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_answers_504_and_gives_its_permit_back() {
    watched(async {
        let limits = Limits {
            concurrent: 4,
            timeout: Duration::from_millis(300),
            ..ROOMY
        };
        let guards = Guards::new("axum-timeout", limits).unwrap();
        let (addr, server) = serve(&guards).await;
        let start = Instant::now();
        let answers = load(addr, "/work/sleep-30000", 4).await;
        assert_eq!(count(&answers, 504), 4, "{answers:?}");
        assert!(start.elapsed() >= Duration::from_millis(300));
        // The handlers were dropped at the deadline: the permits are back.
        assert_eq!(guards.bulkhead.metrics().in_flight, 0);
        assert_eq!(guards.timeout.metrics().timeouts, 4);
        assert_eq!(get(addr, "/work/ok").await.status, 200);
        server.abort();
    })
    .await;
}
