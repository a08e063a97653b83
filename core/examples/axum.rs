//! An axum service whose route is protected by one Stockade layer: a rate
//! limiter, a bulkhead, a circuit breaker and a timeout composed in a
//! pipeline, turned into a tower layer, with the refusals answered as HTTP
//! statuses (429, 503, 504).
//!
//! Run: `cargo run -p stockade --example axum --features tower,tokio`, then
//! `curl -i http://127.0.0.1:3000/work/ok` (or `/work/sleep-3000` for a
//! slow answer, `/work/fail` for a 500 the breaker counts).
//!
//! `tests/tower_axum.rs` serves this router on 127.0.0.1 and drives it.

use core::time::Duration;
use std::sync::Arc;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use stockade::blocking::{Bulkhead, CircuitBreaker, Error, RateLimiter, Timeout};
use stockade::breaker::BreakerConfig;
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::MonotonicClock;
use stockade::limiter::RateLimiterConfig;
use stockade::prelude::{Pipeline, TimeoutConfig};
use tower::ServiceBuilder;

/// The patterns guarding `/work`, kept to inspect them (state, metrics).
#[derive(Clone, Debug)]
pub struct Guards {
    /// Requests per period, no waiting: past it, 429.
    pub limiter: Arc<RateLimiter>,
    /// Requests in flight at once, no queue: past it, 503.
    pub bulkhead: Arc<Bulkhead>,
    /// Opens after consecutive failures (500s): then 503 at once.
    pub breaker: Arc<CircuitBreaker>,
    /// Each request's time: past it, 504.
    pub timeout: Arc<Timeout>,
}

/// The limits of one [`Guards`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Requests per `period` (and the burst).
    pub requests: u32,
    /// The limiter's period.
    pub period: Duration,
    /// Requests in flight at once.
    pub concurrent: u32,
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// Time allowed per request.
    pub timeout: Duration,
}

impl Guards {
    /// The patterns, unregistered (so several routers can coexist, as the
    /// tests make).
    pub fn new(name: &str, limits: Limits) -> Result<Guards, Error> {
        let limiter = RateLimiterConfig::DEFAULT
            .with_requests_per_period(limits.requests)
            .with_period(limits.period)
            .with_burst(limits.requests)
            .with_queue_timeout(Duration::ZERO);
        let bulkhead = BulkheadConfig::DEFAULT
            .with_max_concurrent(limits.concurrent)
            .with_max_queue(0);
        let breaker = BreakerConfig::DEFAULT
            .with_failure_threshold(limits.failures)
            .with_reset_timeout(Duration::from_secs(60));
        let clock = MonotonicClock::new();
        Ok(Guards {
            limiter: Arc::new(RateLimiter::with_timer(name, limiter, clock)?),
            bulkhead: Arc::new(Bulkhead::with_timer(name, bulkhead, clock)?),
            breaker: Arc::new(CircuitBreaker::with_timer(name, breaker, clock)?),
            timeout: Arc::new(Timeout::with_timer(
                name,
                TimeoutConfig::new(limits.timeout)?,
                clock,
            )?),
        })
    }
}

/// `GET /work/ok` answers "done"; `/work/fail` answers 500;
/// `/work/sleep-<ms>` answers "done" after `ms` milliseconds.
async fn work(Path(kind): Path<String>) -> Response {
    if kind == "fail" {
        return (StatusCode::INTERNAL_SERVER_ERROR, "failed").into_response();
    }
    if let Some(ms) = kind.strip_prefix("sleep-") {
        let Ok(ms) = ms.parse() else {
            return (StatusCode::BAD_REQUEST, "sleep-<milliseconds>").into_response();
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
    } else if kind != "ok" {
        return (StatusCode::NOT_FOUND, "ok, fail or sleep-<ms>").into_response();
    }
    "done".into_response()
}

/// A refusal as its HTTP answer: [`Error::http_status`], the message as
/// the body, and `Retry-After` (whole seconds, rounded up) when the
/// refusal says when to come back.
pub async fn refusal(error: Error<core::convert::Infallible>) -> Response {
    let status =
        StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, error.to_string()).into_response();
    if let Some(after) = error.retry_after() {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// The app: `/work` behind one Stockade layer (limiter → bulkhead →
/// breaker → timeout), 5xx answers counted as failures; `/health`
/// unprotected.
pub fn router(guards: &Guards) -> Router {
    let stockade = Pipeline::new()
        .then_async(Arc::clone(&guards.limiter))
        .then_async(Arc::clone(&guards.bulkhead))
        .then_async(Arc::clone(&guards.breaker))
        .then_async(Arc::clone(&guards.timeout))
        .into_layer()
        .failing_on(|r: &Response| r.status().is_server_error());
    Router::new()
        .route(
            "/work/{kind}",
            get(work).layer(
                ServiceBuilder::new()
                    .layer(HandleErrorLayer::new(refusal))
                    .layer(stockade),
            ),
        )
        .route("/health", get(|| async { "ok" }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn core::error::Error>> {
    let guards = Guards::new(
        "axum-example",
        Limits {
            requests: 20,
            period: Duration::from_secs(1),
            concurrent: 4,
            failures: 5,
            timeout: Duration::from_secs(2),
        },
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router(&guards)).await?;
    Ok(())
}
