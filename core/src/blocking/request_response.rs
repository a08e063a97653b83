//! The request-response pattern: a named handler that always answers with
//! a [`Response`], with a per-request timeout and optional protection.
//!
//! The user-facing documentation is on [`RequestResponsePattern`].

use core::fmt;
#[cfg(feature = "async")]
use core::future::Future;
use core::marker::PhantomData;
use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::collections::BTreeMap;
use std::format;
use std::panic::catch_unwind;
use std::string::{String, ToString};
use std::sync::Arc;

use super::pool::{self, NoOutcome, WorkerPool};
use super::registry::{self, Registered};
use super::shell::{Shell, panic_message};
use super::timeout::DEFAULT_IDLE_TIMEOUT;
#[cfg(feature = "async")]
use super::timeout::InFlight;
use super::{
    Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer, Unprotected,
};
use crate::clock::{MonotonicClock, Timestamp};
use crate::error::{ConfigError, ConfigOption, ConfigValue};
use crate::sync::{AtomicU64, Ordering};

/// A request's metadata: timeout, correlation id, free-form headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// How long the caller waits for the response (spec `timeout`, in ms
    /// there). `None`: the pattern's `default_timeout`, if any.
    pub timeout: Option<Duration>,
    /// Identifies the request in logs and in its response. Generated
    /// (`"<pattern name>-<n>"`) when absent.
    pub correlation_id: Option<String>,
    /// Free-form headers.
    pub headers: BTreeMap<String, String>,
}

/// A request: the data for the handler and its [`Metadata`] (spec:
/// `{ data, metadata: { timeout } }`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::Request;
///
/// let request = Request::new("id-123")
///     .with_timeout(Duration::from_secs(5))
///     .with_correlation_id("trace-7")
///     .with_header("tenant", "acme");
/// assert_eq!(request.metadata.timeout, Some(Duration::from_secs(5)));
/// assert_eq!(request.metadata.headers["tenant"], "acme");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request<D> {
    /// The payload.
    pub data: D,
    /// Timeout, correlation id, headers.
    pub metadata: Metadata,
}

impl<D> Request<D> {
    /// A request with no timeout, no correlation id and no headers.
    pub fn new(data: D) -> Self {
        Request {
            data,
            metadata: Metadata::default(),
        }
    }

    /// Sets [`Metadata::timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.metadata.timeout = Some(timeout);
        self
    }

    /// Sets [`Metadata::correlation_id`].
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.correlation_id = Some(id.into());
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.headers.insert(name.into(), value.into());
        self
    }

    /// The correlation id (set on every request the handler sees).
    pub fn correlation_id(&self) -> Option<&str> {
        self.metadata.correlation_id.as_deref()
    }
}

/// A response (spec: `{ data, status }`): what the handler returned, or
/// what the pattern made of a failure.
///
/// # Examples
///
/// ```
/// use stockade::blocking::Response;
///
/// let ok = Response::ok("done");
/// assert_eq!((ok.status, ok.data), (200, Some("done")));
/// let missing = Response::<()>::error(404, "no such user");
/// assert!(!missing.is_success());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response<D> {
    /// The payload, if any.
    pub data: Option<D>,
    /// An HTTP-style status code.
    pub status: u16,
    /// What went wrong, for error statuses.
    pub error: Option<String>,
    /// The request's correlation id; the pattern sets it (whatever the
    /// handler put here is replaced).
    pub correlation_id: String,
    /// When a refused request may be retried (429 and 503 from a rate
    /// limiter or circuit breaker).
    pub retry_after: Option<Duration>,
}

impl<D> Response<D> {
    /// A 200 response with `data`.
    pub fn ok(data: D) -> Self {
        Self::with_status(200, data)
    }

    /// A response with `status` and `data`.
    pub fn with_status(status: u16, data: D) -> Self {
        Response {
            data: Some(data),
            status,
            error: None,
            correlation_id: String::new(),
            retry_after: None,
        }
    }

    /// A response with `status`, no data, and an error message.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Response {
            data: None,
            status,
            error: Some(message.into()),
            correlation_id: String::new(),
            retry_after: None,
        }
    }

    /// `true` for a 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Options of a [`RequestResponsePattern`] (the spec has none; these bound
/// the worker pool that enforces timeouts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestResponseConfig {
    /// Worker threads for requests with a timeout (default 8), started on
    /// demand. A handler that blocks forever keeps its worker.
    pub max_workers: usize,
    /// Timed requests that may wait for a busy worker (default 16); beyond
    /// that they get a 503.
    pub max_queue: usize,
    /// The timeout of requests whose metadata has none (default `None`:
    /// they run on the caller's thread, as long as they take).
    pub default_timeout: Option<Duration>,
}

impl RequestResponseConfig {
    /// 8 workers, 16 queued requests, no default timeout.
    pub const DEFAULT: RequestResponseConfig = RequestResponseConfig {
        max_workers: 8,
        max_queue: 16,
        default_timeout: None,
    };

    /// Sets [`max_workers`](Self::max_workers).
    #[must_use]
    pub const fn with_max_workers(mut self, workers: usize) -> Self {
        self.max_workers = workers;
        self
    }

    /// Sets [`max_queue`](Self::max_queue).
    #[must_use]
    pub const fn with_max_queue(mut self, queue: usize) -> Self {
        self.max_queue = queue;
        self
    }

    /// Sets [`default_timeout`](Self::default_timeout).
    #[must_use]
    pub const fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = Some(timeout);
        self
    }

    /// Checks the config: `max_workers` at least 1, `default_timeout` not
    /// zero. `usize::MAX` for `max_workers` or `max_queue` means
    /// "unbounded" (the pool's sums saturate).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the option.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.max_workers == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxWorkers,
                ConfigValue::Count(0),
            ));
        }
        if let Some(timeout) = self.default_timeout {
            if timeout.is_zero() {
                return Err(ConfigError::zero(
                    ConfigOption::DefaultTimeout,
                    ConfigValue::Duration(Duration::ZERO),
                ));
            }
        }
        Ok(())
    }
}

impl Default for RequestResponseConfig {
    fn default() -> Self {
        RequestResponseConfig::DEFAULT
    }
}

/// The stored blocking handler, with its error already turned into a
/// message.
type Handler<Req, Resp> =
    Arc<dyn Fn(&Request<Req>) -> Result<Response<Resp>, String> + Send + Sync>;

/// The handler of a pattern made by [`new`](RequestResponsePattern::new)
/// and the other blocking constructors: a function that answers on the
/// thread that calls it. Such a pattern is run with
/// [`execute`](RequestResponsePattern::execute). This is the default of
/// [`RequestResponsePattern`]'s last type parameter; it is opaque.
pub struct BlockingHandler<Req, Resp>(Handler<Req, Resp>);

impl<Req, Resp> fmt::Debug for BlockingHandler<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandler").finish_non_exhaustive()
    }
}

/// The future of one call of an async handler, its error already turned
/// into a message.
#[cfg(feature = "async")]
type HandlerFuture<Resp> =
    core::pin::Pin<std::boxed::Box<dyn Future<Output = Result<Response<Resp>, String>> + Send>>;

/// The handler of a pattern made by
/// [`new_async`](RequestResponsePattern::new_async) and the other `_async`
/// constructors (feature `async`): a function that makes a future of the
/// response. Such a pattern is run with
/// [`execute_async`](RequestResponsePattern::execute_async). Opaque.
#[cfg(feature = "async")]
pub struct AsyncHandler<Req, Resp>(
    Arc<dyn Fn(Arc<Request<Req>>) -> HandlerFuture<Resp> + Send + Sync>,
);

#[cfg(feature = "async")]
impl<Req, Resp> fmt::Debug for AsyncHandler<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncHandler").finish_non_exhaustive()
    }
}

/// Why an attempt failed, as the protection policies see it
/// ([`Error::Inner`]): they count these as failures.
enum Failure<Resp> {
    /// The handler returned an error.
    Handler(String),
    /// The handler panicked.
    Panicked(String),
    /// The handler answered with a 5xx status: a failure for breakers and
    /// retries; the caller gets this response.
    Status(Response<Resp>),
}

impl<Resp> fmt::Display for Failure<Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Handler(message) => f.write_str(message),
            Failure::Panicked(message) => write!(f, "handler panicked: {message}"),
            Failure::Status(response) => match &response.error {
                Some(message) => f.write_str(message),
                None => write!(f, "status {}", response.status),
            },
        }
    }
}

type Outcome<Resp> = Result<Response<Resp>, Failure<Resp>>;

/// What a handler did (answered, failed, or panicked with this payload),
/// as an attempt's outcome.
fn classify<Resp>(answer: std::thread::Result<Result<Response<Resp>, String>>) -> Outcome<Resp> {
    match answer {
        Ok(Ok(response)) if response.status >= 500 => Err(Failure::Status(response)),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(message)) => Err(Failure::Handler(message)),
        Err(payload) => Err(panicked(payload.as_ref())),
    }
}

/// A handler's panic, from its payload.
fn panicked<Resp>(payload: &(dyn core::any::Any + Send)) -> Failure<Resp> {
    Failure::Panicked(panic_message(payload).to_string())
}

/// Runs the blocking handler, turning a panic into a failure.
fn run_handler<Req, Resp>(handler: &Handler<Req, Resp>, request: &Request<Req>) -> Outcome<Resp> {
    classify(catch_unwind(AssertUnwindSafe(|| handler(request))))
}

// --- The pattern -----------------------------------------------------------

/// How a finished request is counted.
enum Class {
    Success,
    Failure,
    Rejected(Option<Duration>),
    TimedOut(Duration),
}

/// The spec's `RequestResponsePattern`: a named handler for
/// request-response interactions. [`execute`](Self::execute) (or, for an
/// async handler, `execute_async`) always returns a
/// [`Response`].
///
/// `Req` and `Resp` are the request and response payload types; `P` the
/// protection policy ([`Unprotected`] unless
/// [`protected_by`](Self::protected_by) was used); `T` the [`Timer`]
/// timeouts are measured and waited on; `H` the kind of handler:
/// [`BlockingHandler`] (the default: [`new`](Self::new) and the other
/// blocking constructors) or, with feature `async`, `AsyncHandler`
/// (`new_async` and the other `_async` constructors).
/// The kind decides how the pattern runs, and the types keep the two
/// apart: a blocking pattern has [`execute`](Self::execute) and no
/// `execute_async`, an async one has `execute_async` and no `execute`.
///
/// # How a request runs
///
/// 1. The request gets a correlation id (its own, or `"<name>-<n>"`).
/// 2. If the pattern is protected ([`protected_by`](Self::protected_by)),
///    the [`Policy`] (a breaker, a [`Pipeline`](super::Pipeline), ...) runs
///    the attempts on the caller's thread.
/// 3. Each attempt calls the handler. Without a timeout it runs on the
///    caller's thread. With one (the request's `metadata.timeout`, else the
///    pattern's `default_timeout`), it runs on the pattern's bounded worker
///    pool and the caller waits on the [`Timer`] until the request's
///    deadline. The deadline is fixed when the request starts and covers
///    every attempt: a retried attempt gets the time that is left.
/// 4. Whatever happened becomes a [`Response`]: the handler's own, or one
///    with the status HTTP callers expect (table on
///    [`execute`](Self::execute)). A handler error or panic is a
///    500, never an unwind.
///
/// An async pattern runs the same steps in the caller's future, without
/// a thread: its policy's `AsyncPolicy` form runs the attempts, and a
/// deadline drops the handler's future (see
/// `execute_async`).
///
/// # Work that outlives its caller
///
/// A blocking handler cannot be stopped from outside. When a deadline
/// passes, the caller gets its 504 at once and the handler **goes on
/// running** on its worker until it returns; its result is then dropped.
/// Jobs whose caller gave up before a worker picked them are skipped. The
/// pool is bounded (`max_workers` threads, `max_queue` waiting jobs): when
/// it is exhausted, for instance by handlers that never return, timed
/// requests are refused with a 503 instead of spawning more threads.
/// After `fork`, the child's requests run on workers of the child's own
/// (the pool starts afresh there: see [`WorkerPool`], "After `fork`").
/// (An async handler's future is dropped at the deadline instead, and an
/// async pattern starts no worker.)
///
/// Time spent in the protection layers before an attempt (a rate limiter's
/// or bulkhead's queue, a retry's back-off) counts against the deadline,
/// but those waits are bounded by their own options, not by the deadline:
/// a request may wait there past its deadline and then gets its 504
/// without calling the handler again.
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Request, RequestResponsePattern, Response};
///
/// #[derive(Debug, PartialEq)]
/// struct Lookup { id: String }
///
/// let handler = |request: &Request<Lookup>| {
///     // Process the request
///     Ok::<_, String>(Response::ok(format!("Success: {}", request.data.id)))
/// };
///
/// let pattern = RequestResponsePattern::new("myService", handler)?;
///
/// // Execute a request
/// let response = pattern.execute(
///     Request::new(Lookup { id: "123".into() }).with_timeout(Duration::from_millis(5000)),
/// );
/// assert_eq!(response.status, 200);
/// assert_eq!(response.data.as_deref(), Some("Success: 123"));
/// assert!(response.correlation_id.starts_with("myService-"));
/// # Ok::<(), stockade::blocking::Error>(())
/// ```
///
/// Protected by a circuit breaker: failures open it, and then requests get
/// a 503 without reaching the handler.
///
/// ```
/// use std::sync::Arc;
/// use stockade::prelude::*;
///
/// let breaker = CircuitBreaker::new("db", BreakerConfig::DEFAULT.with_failure_threshold(2))?;
/// let pattern = RequestResponsePattern::unregistered("users", RequestResponseConfig::DEFAULT, |_: &Request<u32>| {
///     Err::<Response<String>, _>("database unreachable")
/// })?
/// .protected_by(Arc::clone(&breaker))
/// .register()?; // in the registry of its own type (payloads and policy)
/// assert_eq!(pattern.execute(Request::new(1)).status, 500);
/// assert_eq!(pattern.execute(Request::new(2)).status, 500);
/// let refused = pattern.execute(Request::new(3));
/// assert_eq!(refused.status, 503);
/// assert!(refused.retry_after.is_some());
/// # Ok::<(), stockade::blocking::Error>(())
/// ```
///
/// An async handler (feature `tokio` here), protected by a rate limiter:
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// async fn load_user(id: u32) -> Result<String, std::io::Error> {
///     Ok(format!("user {id}")) // an HTTP or database call
/// }
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
/// # runtime.block_on(async {
/// let limiter = RateLimiter::new("users-async", RateLimiterConfig::DEFAULT.with_requests_per_period(100))?;
/// let pattern = RequestResponsePattern::unregistered_async(
///     "users-async",
///     RequestResponseConfig::DEFAULT.with_default_timeout(Duration::from_secs(2)),
///     |request: Arc<Request<u32>>| async move { load_user(request.data).await.map(Response::ok) },
/// )?
/// .protected_by(limiter);
/// let response = pattern.execute_async(Request::new(7).with_correlation_id("trace-7")).await;
/// assert_eq!((response.status, response.data.as_deref()), (200, Some("user 7")));
/// assert_eq!(response.correlation_id, "trace-7");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RequestResponsePattern<
    Req,
    Resp,
    P = Unprotected,
    T: Timer = MonotonicClock,
    H = BlockingHandler<Req, Resp>,
> {
    shell: Shell<RequestResponseConfig, T>,
    handler: H,
    policy: P,
    pool: PoolOwner,
    next_id: AtomicU64,
    in_flight: super::events::StripedGauge,
    /// The payload types (the handler's own type is `H`).
    payloads: PhantomData<fn(Req) -> Resp>,
}

/// Turns a handler with any displayable error into the stored form.
fn handler<Req, Resp, E, H>(handler: H) -> BlockingHandler<Req, Resp>
where
    H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
    E: fmt::Display,
{
    BlockingHandler(Arc::new(move |request: &Request<Req>| {
        handler(request).map_err(|e| e.to_string())
    }))
}

/// Turns an async handler with any displayable error into the stored form.
#[cfg(feature = "async")]
fn async_handler<Req, Resp, E, H, Fut>(handler: H) -> AsyncHandler<Req, Resp>
where
    H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
    E: fmt::Display,
    Resp: 'static,
{
    AsyncHandler(Arc::new(move |request: Arc<Request<Req>>| {
        let answer = handler(request);
        std::boxed::Box::pin(async move { answer.await.map_err(|e| e.to_string()) })
            as HandlerFuture<Resp>
    }))
}

impl<Req, Resp> RequestResponsePattern<Req, Resp>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
{
    /// The spec's `new RequestResponsePattern(name, handler)`: the default
    /// config, unprotected, on the monotonic clock, registered as `name`
    /// (the registry rules are those of
    /// [`CircuitBreaker::new`](super::CircuitBreaker::new); the registry is
    /// per payload type).
    ///
    /// The handler gets each request by reference and answers with a
    /// [`Response`] (its status is kept; a 5xx status counts as a failure
    /// for protection policies) or an error (a 500 response with the
    /// error's message).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if a live pattern of these payload types is
    /// registered as `name`.
    pub fn new<E, H>(name: &str, handler: H) -> Result<Arc<Self>, Error>
    where
        H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        Self::with_config(name, RequestResponseConfig::DEFAULT, handler)
    }

    /// A pattern with `config`, registered as `name`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `max_workers` or `default_timeout` of
    /// zero; [`Error::NameTaken`].
    pub fn with_config<E, H>(
        name: &str,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Arc<Self>, Error>
    where
        H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        registry::register(name, || Self::unregistered(name, config, handler))
    }

    /// A pattern with `config` that no registry knows (to be
    /// [protected](Self::protected_by), and then perhaps
    /// [registered](RequestResponsePattern::register)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`with_config`](Self::with_config).
    pub fn unregistered<E, H>(
        name: impl Into<Arc<str>>,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Self, Error>
    where
        H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        Self::with_timer(name, config, MonotonicClock, handler)
    }

    /// The pattern registered as `name` (same payload types) if its config
    /// equals `config`, or a new one with `config` and `handler` registered
    /// under that name. When the name is already registered, `handler` is
    /// dropped: the first registration's handler serves.
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if `name` is registered with another config;
    /// [`Error::InvalidConfig`] as for [`with_config`](Self::with_config).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stockade::prelude::*;
    ///
    /// let echo = |r: &Request<u32>| Ok::<_, String>(Response::ok(r.data));
    /// let a = RequestResponsePattern::get_or_create("doc-echo", RequestResponseConfig::DEFAULT, echo)?;
    /// let b = RequestResponsePattern::get_or_create("doc-echo", RequestResponseConfig::DEFAULT, echo)?;
    /// assert!(Arc::ptr_eq(&a, &b));
    /// a.dispose();
    /// assert!(RequestResponsePattern::<u32, u32>::get("doc-echo").is_none());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_or_create<E, H>(
        name: &str,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Arc<Self>, Error>
    where
        H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        registry::get_or_create(name, &config, || Self::unregistered(name, config, handler))
    }

    /// The live pattern registered as `name` with these payload types, if
    /// any.
    pub fn get(name: &str) -> Option<Arc<Self>> {
        registry::get(name)
    }

    /// The spec's getter: the live pattern registered as `name` with these
    /// payload types. Unlike the other patterns' getters it cannot create
    /// one with defaults (a pattern needs its handler), so it is
    /// [`get`](Self::get).
    pub fn get_request_response(name: &str) -> Option<Arc<Self>> {
        registry::get(name)
    }
}

/// The constructors of a pattern with an async handler (feature `async`):
/// the blocking constructors' twins, named with `_async`.
#[cfg(feature = "async")]
impl<Req, Resp>
    RequestResponsePattern<Req, Resp, Unprotected, MonotonicClock, AsyncHandler<Req, Resp>>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
{
    /// [`new`](RequestResponsePattern::new) with an async handler: the
    /// default config, unprotected, on the monotonic clock, registered as
    /// `name` in the registry of async patterns with these payload types
    /// (apart from the blocking patterns': a blocking and an async pattern
    /// may share a name). Run it with
    /// [`execute_async`](RequestResponsePattern::execute_async).
    ///
    /// The handler gets each request as an `Arc` (a retry calls it again
    /// with the same request) and returns a `Send + 'static` future of a
    /// [`Response`] (its status is kept; a 5xx status counts as a failure
    /// for protection policies) or an error (a 500 response with the
    /// error's message).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if a live async pattern of these payload types
    /// is registered as `name`.
    pub fn new_async<E, H, Fut>(name: &str, handler: H) -> Result<Arc<Self>, Error>
    where
        H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
        E: fmt::Display,
    {
        Self::with_config_async(name, RequestResponseConfig::DEFAULT, handler)
    }

    /// [`with_config`](RequestResponsePattern::with_config) with an async
    /// handler (see [`new_async`](Self::new_async)). `max_workers` and
    /// `max_queue` do not apply: an async pattern runs no worker.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for `max_workers` or `default_timeout` of
    /// zero; [`Error::NameTaken`].
    pub fn with_config_async<E, H, Fut>(
        name: &str,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Arc<Self>, Error>
    where
        H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
        E: fmt::Display,
    {
        registry::register(name, || Self::unregistered_async(name, config, handler))
    }

    /// [`unregistered`](RequestResponsePattern::unregistered) with an async
    /// handler (see [`new_async`](Self::new_async)): to be
    /// [protected](Self::protected_by), and then perhaps
    /// [registered](RequestResponsePattern::register).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for
    /// [`with_config_async`](Self::with_config_async).
    pub fn unregistered_async<E, H, Fut>(
        name: impl Into<Arc<str>>,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Self, Error>
    where
        H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
        E: fmt::Display,
    {
        Self::with_timer_async(name, config, MonotonicClock, handler)
    }

    /// [`get_or_create`](RequestResponsePattern::get_or_create) with an
    /// async handler: the async pattern registered as `name` (same payload
    /// types) if its config equals `config`, or a new one.
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if `name` is registered with another config;
    /// [`Error::InvalidConfig`] as for
    /// [`with_config_async`](Self::with_config_async).
    pub fn get_or_create_async<E, H, Fut>(
        name: &str,
        config: RequestResponseConfig,
        handler: H,
    ) -> Result<Arc<Self>, Error>
    where
        H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
        E: fmt::Display,
    {
        registry::get_or_create(name, &config, || {
            Self::unregistered_async(name, config, handler)
        })
    }

    /// The live async pattern registered as `name` with these payload
    /// types, if any ([`get`](RequestResponsePattern::get) finds the
    /// blocking ones). Its name is not `get` so that
    /// `RequestResponsePattern::get(name)` keeps naming the blocking
    /// getter when the types are inferred; with explicit payload types,
    /// `RequestResponsePattern::<Req, Resp>` is the blocking pattern's
    /// type (the defaults apply), so name an async pattern's in full, as
    /// below, or let the use infer it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stockade::blocking::{AsyncHandler, Unprotected};
    /// use stockade::clock::MonotonicClock;
    /// use stockade::prelude::*;
    ///
    /// type Echo = RequestResponsePattern<u32, u32, Unprotected, MonotonicClock, AsyncHandler<u32, u32>>;
    ///
    /// let echo = |r: Arc<Request<u32>>| async move { Ok::<_, String>(Response::ok(r.data)) };
    /// let made = RequestResponsePattern::new_async("doc-echo-async", echo)?;
    /// let found = Echo::get_async("doc-echo-async").unwrap();
    /// assert!(Arc::ptr_eq(&made, &found));
    /// assert!(RequestResponsePattern::<u32, u32>::get("doc-echo-async").is_none()); // not blocking
    /// made.dispose();
    /// assert!(Echo::get_async("doc-echo-async").is_none());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn get_async(name: &str) -> Option<Arc<Self>> {
        registry::get(name)
    }
}

impl<Req, Resp, P, H> RequestResponsePattern<Req, Resp, P, MonotonicClock, H>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Send + Sync + 'static,
    H: Send + Sync + 'static,
{
    /// Registers this (unregistered) pattern as `name`'s instance in the
    /// registry of its type (payload types, policy and handler kind).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if a live pattern of this type holds its name.
    pub fn register(self) -> Result<Arc<Self>, Error> {
        let name = Arc::clone(self.shell.name_arc());
        registry::register(&name, || Ok(self))
    }
}

impl<Req, Resp, P, H> super::Observed for RequestResponsePattern<Req, Resp, P, MonotonicClock, H>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Send + Sync + 'static,
    H: Send + Sync + 'static,
{
    fn kind(&self) -> PatternKind {
        self.shell.kind()
    }

    fn name(&self) -> &str {
        self.shell.name()
    }

    fn metrics(&self) -> Metrics {
        RequestResponsePattern::metrics(self)
    }

    fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }
}

impl<Req, Resp, P, H> Registered for RequestResponsePattern<Req, Resp, P, MonotonicClock, H>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Send + Sync + 'static,
    H: Send + Sync + 'static,
{
    type Config = RequestResponseConfig;

    fn registered_config(&self) -> &RequestResponseConfig {
        self.shell.config()
    }

    fn registered_is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    fn mark_registered(&self) {
        self.shell.mark_registered::<Self>();
    }

    fn identity(&self) -> usize {
        self.shell.identity()
    }
}

impl<Req, Resp, T: Timer, H> RequestResponsePattern<Req, Resp, Unprotected, T, H> {
    /// An unprotected pattern around `handler`.
    fn build(
        name: impl Into<Arc<str>>,
        config: RequestResponseConfig,
        timer: T,
        handler: H,
    ) -> Result<Self, Error> {
        config.validate()?;
        let name: Arc<str> = name.into();
        Ok(RequestResponsePattern {
            pool: PoolOwner(Arc::new(WorkerPool::new(
                format!("stockade-rr-worker:{name}"),
                config.max_workers,
                config.max_queue,
                DEFAULT_IDLE_TIMEOUT,
            ))),
            shell: Shell::new(PatternKind::RequestResponse, name, config, timer),
            handler,
            policy: Unprotected,
            next_id: AtomicU64::new(0),
            in_flight: super::events::StripedGauge::default(),
            payloads: PhantomData,
        })
    }

    /// The same pattern under `policy`.
    fn with_policy<Q>(self, policy: Q) -> RequestResponsePattern<Req, Resp, Q, T, H> {
        let RequestResponsePattern {
            shell,
            handler,
            policy: Unprotected,
            pool,
            next_id,
            in_flight,
            payloads,
        } = self;
        // Unregistered: a registered pattern lives in an `Arc` and is never
        // moved here.
        RequestResponsePattern {
            shell,
            handler,
            policy,
            pool,
            next_id,
            in_flight,
            payloads,
        }
    }
}

impl<Req, Resp, T> RequestResponsePattern<Req, Resp, Unprotected, T>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    T: Timer,
{
    /// A pattern that measures and waits for timeouts on `timer` (for
    /// example a [`VirtualClock`](super::VirtualClock) in tests), not
    /// registered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for
    /// [`with_config`](RequestResponsePattern::with_config).
    pub fn with_timer<E, H>(
        name: impl Into<Arc<str>>,
        config: RequestResponseConfig,
        timer: T,
        handler: H,
    ) -> Result<Self, Error>
    where
        H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
        E: fmt::Display,
    {
        Self::build(name, config, timer, self::handler(handler))
    }

    /// The same pattern with every attempt run under `policy`: a
    /// [`CircuitBreaker`](super::CircuitBreaker), a
    /// [`Pipeline`](super::Pipeline), any [`Policy`] (by value, reference
    /// or `Arc`). Protection errors become statuses (see
    /// [`execute`](RequestResponsePattern::execute)).
    pub fn protected_by<Q: Policy>(self, policy: Q) -> RequestResponsePattern<Req, Resp, Q, T> {
        self.with_policy(policy)
    }
}

#[cfg(feature = "async")]
impl<Req, Resp, T> RequestResponsePattern<Req, Resp, Unprotected, T, AsyncHandler<Req, Resp>>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    T: Timer,
{
    /// [`with_timer`](RequestResponsePattern::with_timer) with an async
    /// handler (see [`new_async`](RequestResponsePattern::new_async)): for
    /// example a `TokioClock`, so that tests on tokio's paused time
    /// measure deadlines in that time.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for
    /// [`with_config_async`](RequestResponsePattern::with_config_async).
    pub fn with_timer_async<E, H, Fut>(
        name: impl Into<Arc<str>>,
        config: RequestResponseConfig,
        timer: T,
        handler: H,
    ) -> Result<Self, Error>
    where
        H: Fn(Arc<Request<Req>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Response<Resp>, E>> + Send + 'static,
        E: fmt::Display,
    {
        Self::build(name, config, timer, async_handler(handler))
    }

    /// The same async pattern with every attempt run under `policy`: any
    /// [`AsyncPolicy`](super::AsyncPolicy) (by value, reference or `Arc`),
    /// such as a [`CircuitBreaker`](super::CircuitBreaker) or an async
    /// [`Pipeline`](super::Pipeline), including one with a
    /// [`Timeout`](super::Timeout) added by `then_async`. Protection errors
    /// become statuses (see
    /// [`execute_async`](RequestResponsePattern::execute_async)).
    pub fn protected_by<Q: super::AsyncPolicy>(
        self,
        policy: Q,
    ) -> RequestResponsePattern<Req, Resp, Q, T, AsyncHandler<Req, Resp>> {
        self.with_policy(policy)
    }
}

impl<Req, Resp, P, T, H> RequestResponsePattern<Req, Resp, P, T, H>
where
    T: Timer,
{
    /// The instance's name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config it was created with.
    pub fn config(&self) -> &RequestResponseConfig {
        self.shell.config()
    }

    /// The timer it measures timeouts on.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// The protection policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// A snapshot of the counters: `calls` (requests answered), `successes`
    /// (the handler answered with a status below 500), `failures` (handler
    /// errors, panics and 5xx answers), `rejections` (429/503 from a
    /// protection layer, a full worker pool, or a disposed pattern),
    /// `timeouts` (504), `in_flight` (requests being handled now) and
    /// `queue_depth` (timed requests waiting for a worker; always 0 for an
    /// async pattern). A request whose `execute_async` future was dropped
    /// before it answered is not counted.
    pub fn metrics(&self) -> Metrics {
        Metrics {
            in_flight: self.in_flight.get(),
            queue_depth: self.pool.0.counts().queued as u64,
            ..self.shell.counters.metrics()
        }
    }

    /// Calls `listener` for every event: `Rejected` (429/503 from a
    /// protection layer or a full worker pool), `TimedOut` (504),
    /// `Disposed`. A listener that panics is caught and does no harm.
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// `true` once [`dispose`](Self::dispose) was called.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Shuts the pattern down: later requests get a 503 with the error
    /// `the pattern was disposed`, as do callers whose timed request is
    /// still waiting for a worker; requests already running finish (their
    /// callers still get their response, or a 504 at their deadline). The
    /// worker pool stops (workers exit once their handler returns), a
    /// `Disposed` event is emitted, listeners are removed and the registry
    /// forgets the instance. Calling it again does nothing.
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        self.shell.finish_dispose();
        // After the listeners are gone: the callers it wakes emit nothing.
        self.pool.0.shutdown();
    }

    /// The request's correlation id: its own, or a new `"<name>-<n>"` set
    /// on it.
    fn correlate(&self, request: &mut Request<Req>) -> String {
        match &request.metadata.correlation_id {
            Some(id) => id.clone(),
            None => {
                let n = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                let id = format!("{}-{n}", self.name());
                request.metadata.correlation_id = Some(id.clone());
                id
            }
        }
    }

    /// When the request's time is up, and how long it was allowed: its
    /// `metadata.timeout`, else the pattern's `default_timeout`, from now.
    fn deadline(&self, request: &Request<Req>) -> Option<(Timestamp, Duration)> {
        let timeout = request.metadata.timeout.or(self.config().default_timeout);
        timeout.map(|t| (self.timer().now().saturating_add(t), t))
    }

    /// Counts the outcome, emits events, and makes the response.
    fn respond(&self, result: Result<Response<Resp>, Error<Failure<Resp>>>) -> Response<Resp> {
        let (response, class) = match result {
            Ok(response) => (response, Class::Success),
            Err(error) => error_response(error),
        };
        let counters = &self.shell.counters;
        match class {
            Class::Success => counters.successes.incr(),
            Class::Failure => counters.failures.incr(),
            Class::Rejected(retry_after) => {
                counters.rejections.incr();
                self.shell.emit(EventKind::Rejected { retry_after });
            }
            Class::TimedOut(after) => {
                counters.timeouts.incr();
                self.shell.emit(EventKind::TimedOut { after });
            }
        }
        response
    }
}

impl<Req, Resp, P, T> RequestResponsePattern<Req, Resp, P, T>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Policy,
    T: Timer + Clone + 'static,
{
    /// Handles `request` and always answers (spec `pattern.execute(...)`).
    ///
    /// The response carries the request's correlation id (generated as
    /// `"<name>-<n>"` when the request has none; the handler sees it in
    /// `request.metadata.correlation_id`). Statuses:
    ///
    /// | what happened | status | `error` |
    /// |---|---|---|
    /// | the handler answered | its status | its message |
    /// | the handler returned an error | 500 | the error's message |
    /// | the handler panicked | 500 | `handler panicked: <message>` |
    /// | a rate limiter refused ([`Error::RateLimited`]) | 429 | with `retry_after` |
    /// | a circuit breaker refused ([`Error::BreakerOpen`]) | 503 | with `retry_after` (unless forced open) |
    /// | a bulkhead was full or its queue timed out, or the worker pool was full | 503 | |
    /// | the deadline passed ([`Error::TimedOut`]) | 504 | `timed out after <timeout>` |
    /// | retries exhausted ([`Error::RetriesExhausted`]) | the last attempt's status | `gave up after <n> attempts: <last error>` |
    /// | this pattern (or a policy) was disposed | 503 | `the pattern was disposed` |
    /// | a policy reported a configuration error | 500 | |
    ///
    /// A handler response with a 5xx status counts as a failure for the
    /// protection policies (a breaker counts it, a retry repeats it) and is
    /// returned as it is.
    ///
    /// Only a pattern with a blocking handler has `execute`; one made with
    /// an async handler is run with
    /// `execute_async`.
    pub fn execute(&self, mut request: Request<Req>) -> Response<Resp> {
        let correlation_id = self.correlate(&mut request);
        let result = if self.is_disposed() {
            Err(Error::Disposed)
        } else {
            let deadline = self.deadline(&request);
            let request = Arc::new(request);
            self.in_flight.incr();
            // The policies do not unwind on their own and the handler's
            // panics are caught inside each attempt; this catches anything
            // else so that the caller always gets a response.
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.policy.run(|| self.attempt(&request, deadline))
            }))
            .unwrap_or_else(|_| Err(policy_panicked()));
            self.in_flight.decr();
            result
        };
        let mut response = self.respond(result);
        response.correlation_id = correlation_id;
        response
    }

    /// One attempt: the handler, detached when there is a deadline.
    fn attempt(
        &self,
        request: &Arc<Request<Req>>,
        deadline: Option<(Timestamp, Duration)>,
    ) -> Result<Response<Resp>, Error<Failure<Resp>>> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let outcome = match deadline {
            None => run_handler(&self.handler.0, request),
            Some((at, timeout)) => self.run_detached(request, at, timeout)?,
        };
        outcome.map_err(Error::Inner)
    }

    /// Runs the handler on the pool and waits for it until `at`. A
    /// request already running when the pattern is disposed still gets its
    /// response (or its 504).
    fn run_detached(
        &self,
        request: &Arc<Request<Req>>,
        at: Timestamp,
        timeout: Duration,
    ) -> Result<Outcome<Resp>, Error<Failure<Resp>>> {
        let handler = Arc::clone(&self.handler.0);
        let request = Arc::clone(request);
        let outcome = pool::run_detached(
            &self.pool.0,
            self.timer(),
            at,
            || false,
            move || run_handler(&handler, &request),
        );
        match outcome {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(payload)) => Ok(Err(panicked(payload.as_ref()))),
            Err(NoOutcome::TimedOut) => Err(Error::TimedOut { after: timeout }),
            Err(NoOutcome::Full) if !self.is_disposed() => Err(Error::PoolFull),
            Err(_) => Err(Error::Disposed),
        }
    }
}

/// What a policy that panicked (rather than the handler, whose panics are
/// caught in each attempt) amounts to.
fn policy_panicked<Resp>() -> Error<Failure<Resp>> {
    Error::Inner(Failure::Panicked(String::from(
        "a protection policy panicked",
    )))
}

/// Polls `future`, turning a panic into its payload.
#[cfg(feature = "async")]
fn poll_caught<F: Future + ?Sized>(
    future: core::pin::Pin<&mut F>,
    cx: &mut core::task::Context<'_>,
) -> core::task::Poll<std::thread::Result<F::Output>> {
    match catch_unwind(AssertUnwindSafe(|| future.poll(cx))) {
        Ok(poll) => poll.map(Ok),
        Err(payload) => core::task::Poll::Ready(Err(payload)),
    }
}

#[cfg(feature = "async")]
impl<Req, Resp, P, T> RequestResponsePattern<Req, Resp, P, T, AsyncHandler<Req, Resp>>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: super::AsyncPolicy,
    T: super::AsyncTimer + Clone,
{
    /// Handles `request` in the caller's future and always answers: the
    /// async form of [`execute`](RequestResponsePattern::execute), for a
    /// pattern made with an async handler
    /// ([`new_async`](RequestResponsePattern::new_async)), on the same
    /// object model. The statuses (through [`Error::http_status`]: 429,
    /// 503, 504, 500, with `retry_after` on a limiter's or breaker's
    /// refusal), correlation ids, counters and events are
    /// [`execute`](RequestResponsePattern::execute)'s.
    ///
    /// What differs is how it waits, and that no thread is involved:
    ///
    /// * The protection policy runs through its
    ///   [`AsyncPolicy`](super::AsyncPolicy) form: a limiter's or
    ///   bulkhead's wait and a retry's back-off are sleeps on its timer, a
    ///   [`Timeout`](super::Timeout) stage (added to a pipeline by
    ///   `then_async`) drops each attempt at its own deadline.
    /// * With a timeout (the request's `metadata.timeout`, else the
    ///   pattern's `default_timeout`), the handler's future is raced
    ///   against a sleep on the pattern's [`AsyncTimer`](super::AsyncTimer)
    ///   until the request's deadline and **dropped** there (cancelled:
    ///   nothing of it runs afterwards; the caller gets a 504). The
    ///   deadline is fixed when `execute_async` is called (as the
    ///   correlation id is), not when its future is first polled, and
    ///   covers every attempt; an attempt that would start past it gets
    ///   the 504 without calling the handler. The handler's future is
    ///   polled first at each wake-up, so an answer ready at the deadline
    ///   is returned.
    /// * The handler is called when an attempt starts (once the policy
    ///   admitted it), not when a policy makes the attempt's future, so a
    ///   refused request never calls it.
    /// * A panic while the handler makes or polls its future is a 500
    ///   (`handler panicked: <message>`), as in the blocking form; so is a
    ///   panic in a policy (`handler panicked: a protection policy
    ///   panicked`).
    /// * [`dispose`](RequestResponsePattern::dispose) lets requests already
    ///   running finish (or time out); a request first polled after it,
    ///   and a later attempt of a running one, get a 503.
    ///
    /// Dropping the returned future cancels the request at once: the
    /// handler's future is dropped, each protection policy gives back what
    /// it held (see their `execute_async`), and the pattern counts nothing
    /// and emits nothing for it. The future is `Send` when the pattern is
    /// `Sync`, and the policy's futures and the timer's sleep are `Send`.
    ///
    /// # Examples
    ///
    /// A deadline drops a handler that takes too long (tokio's paused
    /// time, so the 2 s take no real time):
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use stockade::blocking::TokioClock;
    /// use stockade::prelude::*;
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build()?;
    /// # runtime.block_on(async {
    /// let pattern = RequestResponsePattern::with_timer_async(
    ///     "slow-service",
    ///     RequestResponseConfig::DEFAULT,
    ///     TokioClock::new(),
    ///     |request: Arc<Request<u64>>| async move {
    ///         tokio::time::sleep(Duration::from_secs(request.data)).await;
    ///         Ok::<_, String>(Response::ok("done"))
    ///     },
    /// )?;
    /// let quick = pattern.execute_async(Request::new(1).with_timeout(Duration::from_secs(2))).await;
    /// assert_eq!(quick.status, 200);
    /// let late = pattern.execute_async(Request::new(60).with_timeout(Duration::from_secs(2))).await;
    /// assert_eq!(late.status, 504);
    /// assert_eq!(late.error.as_deref(), Some("timed out after 2s"));
    /// assert_eq!(pattern.metrics().timeouts, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_async(
        &self,
        mut request: Request<Req>,
    ) -> impl Future<Output = Response<Resp>> + '_ {
        let correlation_id = self.correlate(&mut request);
        let deadline = self.deadline(&request);
        let request = Arc::new(request);
        let run = self
            .policy
            .run_async(move || self.attempt_async(Arc::clone(&request), deadline));
        self.answer_async(run, correlation_id)
    }

    /// Runs the policy's future `run` (unless the pattern was disposed)
    /// and makes its response. `run` is a parameter, made before: a future
    /// of a closure made in this `async fn` would hold the closure's
    /// borrow of the pattern in the state it keeps across awaits, where
    /// the compiler cannot prove it `Send`.
    async fn answer_async<Run>(&self, run: Run, correlation_id: String) -> Response<Resp>
    where
        Run: Future<Output = Result<Response<Resp>, Error<Failure<Resp>>>>,
    {
        let result = if self.is_disposed() {
            Err(Error::Disposed)
        } else {
            // Counted out when this future finishes or is dropped.
            let _in_flight = InFlight::enter(&self.in_flight);
            let mut run = core::pin::pin!(run);
            // As in `execute`: the handler's panics are caught in each
            // attempt; this catches a policy's.
            match core::future::poll_fn(|cx| poll_caught(run.as_mut(), cx)).await {
                Ok(result) => result,
                Err(_) => Err(policy_panicked()),
            }
        };
        let mut response = self.respond(result);
        response.correlation_id = correlation_id;
        response
    }

    /// One attempt: the handler's future, dropped at the deadline if there
    /// is one.
    async fn attempt_async(
        &self,
        request: Arc<Request<Req>>,
        deadline: Option<(Timestamp, Duration)>,
    ) -> Result<Response<Resp>, Error<Failure<Resp>>> {
        use core::future::poll_fn;
        use core::task::Poll;
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        if let Some((at, timeout)) = deadline {
            if self.timer().now() >= at {
                return Err(Error::TimedOut { after: timeout });
            }
        }
        let made = catch_unwind(AssertUnwindSafe(|| (self.handler.0)(request)));
        let mut answer = made.map_err(|payload| Error::Inner(panicked(payload.as_ref())))?;
        // The answer, or the time allowed when the deadline came first.
        let answered = match deadline {
            None => Ok(poll_fn(|cx| poll_caught(answer.as_mut(), cx)).await),
            Some((at, timeout)) => {
                // An answer ready on the first poll needs no sleep.
                match poll_fn(|cx| Poll::Ready(poll_caught(answer.as_mut(), cx))).await {
                    Poll::Ready(answered) => Ok(answered),
                    Poll::Pending => {
                        let mut sleep = core::pin::pin!(self.timer().sleep_until_async(at));
                        poll_fn(|cx| {
                            if let Poll::Ready(answered) = poll_caught(answer.as_mut(), cx) {
                                return Poll::Ready(Ok(answered));
                            }
                            super::async_timer::poll_deadline(self.timer(), at, &mut sleep, cx)
                                .map(|()| Err(timeout))
                        })
                        .await
                    }
                }
            }
        };
        // The handler's future is dropped here, before the result is
        // returned: at the deadline, nothing of it runs afterwards.
        drop(answer);
        match answered {
            Ok(answered) => classify(answered).map_err(Error::Inner),
            Err(after) => Err(Error::TimedOut { after }),
        }
    }
}

/// The response for a failed request, and how to count it. The status is
/// [`Error::http_status`]'s, but for a handler's own error response, which
/// is returned as it is.
fn error_response<Resp>(error: Error<Failure<Resp>>) -> (Response<Resp>, Class) {
    let message = error.to_string();
    match error {
        Error::Inner(Failure::Status(response)) => (response, Class::Failure),
        Error::RetriesExhausted { last, .. } => {
            let (mut response, class) = error_response(*last);
            response.error = Some(message);
            (response, class)
        }
        error => {
            let mut response = Response::error(error.http_status(), message);
            let class = match error {
                Error::BreakerOpen { retry_after, .. } => {
                    let retry_after = (retry_after != Duration::MAX).then_some(retry_after);
                    response.retry_after = retry_after;
                    Class::Rejected(retry_after)
                }
                Error::RateLimited { retry_after } => {
                    response.retry_after = Some(retry_after);
                    Class::Rejected(Some(retry_after))
                }
                Error::BulkheadFull
                | Error::PoolFull
                | Error::QueueTimeout { .. }
                | Error::Disposed => Class::Rejected(None),
                Error::TimedOut { after } => Class::TimedOut(after),
                // Redis refused a fail-closed call: the protection could
                // not decide, so the request is refused as unavailable.
                #[cfg(feature = "redis")]
                Error::Redis(crate::redis::RedisError::Unavailable { retry_after, .. }) => {
                    response.retry_after = retry_after;
                    Class::Rejected(retry_after)
                }
                _ => Class::Failure,
            };
            (response, class)
        }
    }
}

/// Shuts the pool down when the pattern goes away.
struct PoolOwner(Arc<WorkerPool>);

impl Drop for PoolOwner {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl<Req, Resp, P, T: Timer, H> fmt::Debug for RequestResponsePattern<Req, Resp, P, T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "RequestResponsePattern", |_| {})
    }
}
