//! The request-response pattern: a named handler that always answers with
//! a [`Response`], with a per-request timeout and optional protection.
//!
//! The user-facing documentation is on [`RequestResponsePattern`].

use core::fmt;
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

/// The handler, with its error already turned into a message.
type Handler<Req, Resp> =
    Arc<dyn Fn(&Request<Req>) -> Result<Response<Resp>, String> + Send + Sync>;

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

/// Runs the handler, turning a panic into a failure.
fn run_handler<Req, Resp>(handler: &Handler<Req, Resp>, request: &Request<Req>) -> Outcome<Resp> {
    match catch_unwind(AssertUnwindSafe(|| handler(request))) {
        Ok(Ok(response)) if response.status >= 500 => Err(Failure::Status(response)),
        Ok(Ok(response)) => Ok(response),
        Ok(Err(message)) => Err(Failure::Handler(message)),
        Err(payload) => Err(Failure::Panicked(
            panic_message(payload.as_ref()).to_string(),
        )),
    }
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
/// request-response interactions. [`execute`](Self::execute) always
/// returns a [`Response`].
///
/// `Req` and `Resp` are the request and response payload types; `P` the
/// protection policy ([`Unprotected`] unless
/// [`protected_by`](Self::protected_by) was used); `T` the [`Timer`]
/// timeouts are measured and waited on.
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
/// # Work that outlives its caller
///
/// A handler cannot be stopped from outside. When a deadline passes, the
/// caller gets its 504 at once and the handler **goes on running** on its
/// worker until it returns; its result is then dropped. Jobs whose caller
/// gave up before a worker picked them are skipped. The pool is bounded
/// (`max_workers` threads, `max_queue` waiting jobs): when it is exhausted,
/// for instance by handlers that never return, timed requests are refused
/// with a 503 instead of spawning more threads.
/// After `fork`, the child's requests run on workers of the child's own
/// (the pool starts afresh there: see [`WorkerPool`], "After `fork`").
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
pub struct RequestResponsePattern<Req, Resp, P = Unprotected, T: Timer = MonotonicClock> {
    shell: Shell<RequestResponseConfig, T>,
    handler: Handler<Req, Resp>,
    policy: P,
    pool: PoolOwner,
    next_id: AtomicU64,
    in_flight: AtomicU64,
}

/// Turns a handler with any displayable error into the stored form.
fn handler<Req, Resp, E, H>(handler: H) -> Handler<Req, Resp>
where
    H: Fn(&Request<Req>) -> Result<Response<Resp>, E> + Send + Sync + 'static,
    E: fmt::Display,
{
    Arc::new(move |request: &Request<Req>| handler(request).map_err(|e| e.to_string()))
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

impl<Req, Resp, P> RequestResponsePattern<Req, Resp, P, MonotonicClock>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Policy + Send + Sync + 'static,
{
    /// Registers this (unregistered) pattern as `name`'s instance in the
    /// registry of its type (payload types and policy).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if a live pattern of this type holds its name.
    pub fn register(self) -> Result<Arc<Self>, Error> {
        let name = Arc::clone(self.shell.name_arc());
        registry::register(&name, || Ok(self))
    }
}

impl<Req, Resp, P> super::Observed for RequestResponsePattern<Req, Resp, P, MonotonicClock>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Policy + Send + Sync + 'static,
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

impl<Req, Resp, P> Registered for RequestResponsePattern<Req, Resp, P, MonotonicClock>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Policy + Send + Sync + 'static,
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
            handler: self::handler(handler),
            policy: Unprotected,
            next_id: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
        })
    }

    /// The same pattern with every attempt run under `policy`: a
    /// [`CircuitBreaker`](super::CircuitBreaker), a
    /// [`Pipeline`](super::Pipeline), any [`Policy`] (by value, reference
    /// or `Arc`). Protection errors become statuses (see
    /// [`execute`](RequestResponsePattern::execute)).
    pub fn protected_by<Q: Policy>(self, policy: Q) -> RequestResponsePattern<Req, Resp, Q, T> {
        let RequestResponsePattern {
            shell,
            handler,
            policy: Unprotected,
            pool,
            next_id,
            in_flight,
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
        }
    }
}

impl<Req, Resp, P, T> RequestResponsePattern<Req, Resp, P, T>
where
    Req: Send + Sync + 'static,
    Resp: Send + 'static,
    P: Policy,
    T: Timer + Clone + 'static,
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
    pub fn execute(&self, mut request: Request<Req>) -> Response<Resp> {
        let correlation_id = match &request.metadata.correlation_id {
            Some(id) => id.clone(),
            None => {
                let n = self.next_id.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
                let id = format!("{}-{n}", self.name());
                request.metadata.correlation_id = Some(id.clone());
                id
            }
        };
        let result = if self.is_disposed() {
            Err(Error::Disposed)
        } else {
            let timeout = request.metadata.timeout.or(self.config().default_timeout);
            let deadline = timeout.map(|t| (self.timer().now().saturating_add(t), t));
            let request = Arc::new(request);
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            // The policies do not unwind on their own and the handler's
            // panics are caught inside each attempt; this catches anything
            // else so that the caller always gets a response.
            let result = catch_unwind(AssertUnwindSafe(|| {
                self.policy.run(|| self.attempt(&request, deadline))
            }))
            .unwrap_or_else(|_| {
                Err(Error::Inner(Failure::Panicked(String::from(
                    "a protection policy panicked",
                ))))
            });
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            result
        };
        let mut response = self.respond(result);
        response.correlation_id = correlation_id;
        response
    }

    /// A snapshot of the counters: `calls` (requests answered), `successes`
    /// (the handler answered with a status below 500), `failures` (handler
    /// errors, panics and 5xx answers), `rejections` (429/503 from a
    /// protection layer, a full worker pool, or a disposed pattern),
    /// `timeouts` (504), `in_flight` (requests being handled now) and
    /// `queue_depth` (timed requests waiting for a worker).
    pub fn metrics(&self) -> Metrics {
        Metrics {
            in_flight: self.in_flight.load(Ordering::Relaxed),
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
            None => run_handler(&self.handler, request),
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
        let handler = Arc::clone(&self.handler);
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
            Ok(Err(payload)) => Ok(Err(Failure::Panicked(
                panic_message(payload.as_ref()).to_string(),
            ))),
            Err(NoOutcome::TimedOut) => Err(Error::TimedOut { after: timeout }),
            Err(NoOutcome::Full) if !self.is_disposed() => Err(Error::PoolFull),
            Err(_) => Err(Error::Disposed),
        }
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

impl<Req, Resp, P, T: Timer> fmt::Debug for RequestResponsePattern<Req, Resp, P, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "RequestResponsePattern", |_| {})
    }
}
