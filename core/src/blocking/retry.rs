//! The retry pattern for threads: [`Retry`], its options [`RetryConfig`]
//! and the [`ErrorMatcher`]s of `retryable_errors`.

use core::fmt::{self, Display};
#[cfg(feature = "async")]
use core::pin::Pin;
use core::time::Duration;
use std::boxed::Box;
use std::string::{String, ToString};
use std::sync::Arc;
use std::vec::Vec;

use regex::Regex;

use super::events::Counter;
use super::registry::{self, registered};
use super::shell::Shell;
use super::timeout::current_deadline;
use super::wait::WaitList;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::backoff::{Backoff, BackoffConfig, BackoffSchedule, Jitter};
use crate::budget::RetryBudget;
use crate::clock::{MonotonicClock, Timestamp};
use crate::sync::{AtomicU64, Ordering};

/// One entry of [`RetryConfig::retryable_errors`]: matched against the
/// text of an error (its [`Display`] output).
///
/// Two matchers are equal when they are of the same kind with the same
/// pattern string (regexes are compared by their source text).
///
/// # Examples
///
/// ```
/// use stockade::blocking::ErrorMatcher;
///
/// let substring = ErrorMatcher::from("network error");
/// assert!(substring.matches("GET /users: network error (reset)"));
/// let regex = ErrorMatcher::regex(r"\b5\d\d\b")?;
/// assert!(regex.matches("HTTP 503 Service Unavailable"));
/// assert!(!regex.matches("HTTP 404 Not Found"));
/// # Ok::<(), regex::Error>(())
/// ```
#[derive(Clone, Debug)]
pub enum ErrorMatcher {
    /// Matches messages containing this text (case-sensitive), like a
    /// string in the spec's `retryableErrors`.
    Substring(Arc<str>),
    /// Matches messages in which this regular expression finds a match
    /// (anywhere, unless anchored), like a `RegExp` in the spec's
    /// `retryableErrors`. Syntax: the [`regex`] crate's.
    Regex(Regex),
}

impl ErrorMatcher {
    /// A substring matcher.
    pub fn substring(text: impl Into<Arc<str>>) -> ErrorMatcher {
        ErrorMatcher::Substring(text.into())
    }

    /// A regex matcher.
    ///
    /// # Errors
    ///
    /// The pattern's syntax error.
    pub fn regex(pattern: &str) -> Result<ErrorMatcher, regex::Error> {
        Regex::new(pattern).map(ErrorMatcher::Regex)
    }

    /// `true` if `message` matches.
    pub fn matches(&self, message: &str) -> bool {
        match self {
            ErrorMatcher::Substring(s) => message.contains(&**s),
            ErrorMatcher::Regex(r) => r.is_match(message),
        }
    }

    /// The pattern text.
    pub fn pattern(&self) -> &str {
        match self {
            ErrorMatcher::Substring(s) => s,
            ErrorMatcher::Regex(r) => r.as_str(),
        }
    }
}

impl PartialEq for ErrorMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ErrorMatcher::Substring(a), ErrorMatcher::Substring(b)) => a == b,
            (ErrorMatcher::Regex(a), ErrorMatcher::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

impl Eq for ErrorMatcher {}

impl From<&str> for ErrorMatcher {
    fn from(text: &str) -> Self {
        ErrorMatcher::substring(text)
    }
}

impl From<String> for ErrorMatcher {
    fn from(text: String) -> Self {
        ErrorMatcher::substring(text)
    }
}

impl From<Regex> for ErrorMatcher {
    fn from(regex: Regex) -> Self {
        ErrorMatcher::Regex(regex)
    }
}

/// Retry options: the core [`BackoffConfig`] (attempts, delays, jitter,
/// total time budget) plus which errors are retried, the jitter seed and an
/// optional shared [`RetryBudget`].
///
/// The spec's options map as: `maxAttempts` → `backoff.max_attempts` (3),
/// `initialDelay` → `backoff.initial_delay` (1 s), `maxDelay` →
/// `backoff.max_delay` (30 s), `backoffFactor` → `backoff.backoff_factor`
/// (2), `retryableErrors` → [`retryable_errors`](Self::retryable_errors)
/// (empty: every error is retryable). The `with_*` methods set the backoff
/// fields without spelling out `backoff`.
///
/// Configs are compared (for the registry) field by field; regexes by
/// their pattern text, budgets by identity (the same `Arc`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::RetryConfig;
///
/// let config = RetryConfig::DEFAULT
///     .with_max_attempts(5)
///     .with_initial_delay(Duration::from_millis(100))
///     .retry_on("connection reset")
///     .retry_on_regex(r"5\d\d")?;
/// assert_eq!(config.backoff.max_delay, Duration::from_secs(30));
/// assert_eq!(config.retryable_errors.len(), 2);
/// # Ok::<(), regex::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts, delays, jitter and the optional total time budget
    /// (`max_elapsed`: a retry happens only if its delay ends within it),
    /// validated by [`Backoff::new`].
    pub backoff: BackoffConfig,
    /// Which errors are retried: an error is retryable if its `Display`
    /// text matches any of these; an empty list (the default) retries
    /// every error. See [`Retry`] for how errors of nested patterns are
    /// treated and for predicates on the error value.
    pub retryable_errors: Vec<ErrorMatcher>,
    /// The jitter seed. `None` (the default) derives it from the name, so a
    /// given `Retry` is deterministic; processes that share a name then
    /// share delays too, so give each process its own seed when jitter
    /// should spread retries across processes. Each call draws its own
    /// sequence from the seed.
    pub seed: Option<u64>,
    /// A budget shared with other retries (default `None`): each call
    /// deposits into it, each retry withdraws, and a refused retry ends the
    /// call with [`Error::RetriesExhausted`].
    pub budget: Option<Arc<RetryBudget>>,
}

impl PartialEq for RetryConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_budget = match (&self.budget, &other.budget) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.backoff == other.backoff
            && self.retryable_errors == other.retryable_errors
            && self.seed == other.seed
            && same_budget
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig::DEFAULT
    }
}

impl RetryConfig {
    /// The spec's defaults: 3 attempts, 1 s initial delay doubling up to
    /// 30 s, every error retryable, seed from the name, no budget.
    pub const DEFAULT: RetryConfig = RetryConfig {
        backoff: BackoffConfig::DEFAULT,
        retryable_errors: Vec::new(),
        seed: None,
        budget: None,
    };

    /// Checks the config as [`Retry::new`] would.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`](crate::ConfigError) naming the first invalid
    /// backoff option.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        Backoff::new(self.backoff).map(|_| ())
    }

    /// This config with `backoff.max_attempts` set (total attempts, the
    /// first included).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.backoff.max_attempts = max_attempts;
        self
    }

    /// This config with `backoff.initial_delay` set.
    #[must_use]
    pub fn with_initial_delay(mut self, initial_delay: Duration) -> Self {
        self.backoff.initial_delay = initial_delay;
        self
    }

    /// This config with `backoff.max_delay` set.
    #[must_use]
    pub fn with_max_delay(mut self, max_delay: Duration) -> Self {
        self.backoff.max_delay = max_delay;
        self
    }

    /// This config with `backoff.backoff_factor` set.
    #[must_use]
    pub fn with_backoff_factor(mut self, backoff_factor: f64) -> Self {
        self.backoff.backoff_factor = backoff_factor;
        self
    }

    /// This config with `backoff.jitter` set.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.backoff.jitter = jitter;
        self
    }

    /// This config with `backoff.max_elapsed` set: the total time budget of
    /// one call, sleeps included.
    #[must_use]
    pub fn with_max_elapsed(mut self, max_elapsed: Option<Duration>) -> Self {
        self.backoff.max_elapsed = max_elapsed;
        self
    }

    /// This config with `backoff` replaced.
    #[must_use]
    pub fn with_backoff(mut self, backoff: BackoffConfig) -> Self {
        self.backoff = backoff;
        self
    }

    /// This config with `seed` set.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// This config sharing `budget`.
    #[must_use]
    pub fn with_budget(mut self, budget: Arc<RetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// This config also retrying errors whose text contains `text`.
    #[must_use]
    pub fn retry_on(mut self, text: impl Into<Arc<str>>) -> Self {
        self.retryable_errors.push(ErrorMatcher::substring(text));
        self
    }

    /// This config also retrying errors whose text matches the regular
    /// expression `pattern`.
    ///
    /// # Errors
    ///
    /// The pattern's syntax error.
    pub fn retry_on_regex(mut self, pattern: &str) -> Result<Self, regex::Error> {
        self.retryable_errors.push(ErrorMatcher::regex(pattern)?);
        Ok(self)
    }

    /// This config also retrying errors that `matcher` matches.
    #[must_use]
    pub fn retry_on_matcher(mut self, matcher: impl Into<ErrorMatcher>) -> Self {
        self.retryable_errors.push(matcher.into());
        self
    }
}

/// Retries failing operations with exponential backoff (the spec's Retry
/// pattern).
///
/// [`execute`](Self::execute) runs the closure; when it fails with a
/// retryable error, the retry sleeps on its timer for the next backoff
/// delay and runs it again, up to `max_attempts` attempts in all. The last
/// failure comes back as [`Error::RetriesExhausted`] with the attempt count
/// and the last error (also with `max_attempts = 1`); an error that is not
/// retryable comes back at once as itself ([`Error::Inner`]), whatever the
/// attempt.
///
/// # Which errors are retried
///
/// * **The closure's own errors** — [`execute`](Self::execute) (which needs
///   `E: Display`) matches their text against
///   [`retryable_errors`](RetryConfig::retryable_errors) (empty: all).
///   [`execute_if`](Self::execute_if) takes a predicate on the error value
///   instead (no `Display` needed; call [`is_retryable`](Self::is_retryable)
///   in it to combine both).
/// * **Inside a [`Pipeline`](super::Pipeline)** the same matchers apply to
///   the call's own error ([`Policy`] requires it to be `Display`).
/// * [`Error::TimedOut`] of a timeout nested inside the retry (a timeout
///   per attempt) is always retried.
/// * A refusal that says when to come back — [`Error::BreakerOpen`],
///   [`Error::RateLimited`] — is retried after `max(backoff delay,
///   retry_after)` if `retry_after <= max_delay` (and it fits the time
///   budget and deadline); a longer one is returned at once as itself.
/// * Every other error of a nested pattern — [`Error::BulkheadFull`],
///   [`Error::QueueTimeout`] (retrying would only add load where there is
///   too much), [`Error::RetriesExhausted`] (a nested retry already tried),
///   [`Error::Disposed`], [`Error::Panicked`], … — is returned at once.
///
/// # When retrying stops early
///
/// * `max_elapsed` (the total time budget): a delay is taken only if it
///   ends within the budget, measured from the call's start.
/// * The thread's [current deadline](super::current_deadline) (set by an
///   enclosing [`Timeout`](super::Timeout)): the retry never sleeps to or
///   past it. The deadline must come from the same clock as this retry's.
/// * A [`RetryBudget`] that refuses the retry (an [`EventKind::Rejected`]
///   event, counted in `rejections`).
///
/// Each of these ends the call with [`Error::RetriesExhausted`].
/// [`dispose`](Self::dispose) wakes a retry sleeping in back-off, which
/// returns [`Error::Disposed`].
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Retry, RetryConfig};
///
/// # struct Api;
/// # impl Api { fn fetch_data(&self) -> Result<String, std::io::Error> { Ok("data".into()) } }
/// # let api = Api;
/// // Create a retry handler
/// let retry = Retry::new(
///     "apiCall",
///     RetryConfig::default()
///         .with_max_attempts(3)
///         .with_initial_delay(Duration::from_millis(1000))
///         .with_backoff_factor(2.0)
///         .retry_on("network error")
///         .retry_on("timeout")
///         .retry_on_regex(r"5\d\d")?, // strings or regexes
/// )?;
///
/// // Execute with retry
/// let result = retry.execute(|| api.fetch_data())?;
/// assert_eq!(result, "data");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// On virtual time, watching the back-off: attempts at 0 s, 1 s and 3 s.
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Error, Retry, RetryConfig, VirtualClock};
/// use stockade::clock::Clock;
///
/// let clock = VirtualClock::auto_advance(); // sleeps move the clock
/// let retry = Retry::with_timer("flaky", RetryConfig::default(), &clock)?;
/// let mut started = Vec::new();
/// let out: Result<(), _> = retry.execute(|| {
///     started.push(clock.now().as_nanos() / 1_000_000_000);
///     Err("HTTP 503")
/// });
/// assert_eq!(started, [0, 1, 3]);
/// match out {
///     Err(Error::RetriesExhausted { attempts, last }) => {
///         assert_eq!(attempts, 3);
///         assert_eq!(last.into_inner(), Some("HTTP 503"));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
pub struct Retry<T: Timer = MonotonicClock> {
    shell: Shell<RetryConfig, T>,
    backoff: Backoff,
    seed: u64,
    retries: Counter,
    refusals: Counter,
    next_call: AtomicU64,
    sleepers: WaitList,
}

impl<T: Timer> fmt::Debug for Retry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "Retry", |_| {})
    }
}

impl Retry<MonotonicClock> {
    /// A retry on the real clock, registered as `name` (see
    /// [`get_retrier`](Self::get_retrier)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for invalid backoff options (see
    /// [`Backoff::new`]); [`Error::NameTaken`] if a live retry is
    /// registered as `name`.
    pub fn new(name: &str, config: RetryConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<RetryConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(Retry, RetryConfig, "retry", get_retrier, "Retry.getRetrier");

/// FNV-1a of the name: the default jitter seed.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<T: Timer> Retry<T> {
    /// A retry on `timer` (a [`VirtualClock`](super::VirtualClock) in tests
    /// and simulations), not registered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for invalid backoff options.
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: RetryConfig,
        timer: T,
    ) -> Result<Self, Error> {
        let name: Arc<str> = name.into();
        let backoff = Backoff::new(config.backoff)?;
        Ok(Retry {
            seed: config.seed.unwrap_or_else(|| name_seed(&name)),
            shell: Shell::new(PatternKind::Retry, name, config, timer),
            backoff,
            retries: Counter::default(),
            refusals: Counter::default(),
            next_call: AtomicU64::new(0),
            sleepers: WaitList::default(),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config.
    pub fn config(&self) -> &RetryConfig {
        self.shell.config()
    }

    /// The timer.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// `true` if `error`'s text matches
    /// [`retryable_errors`](RetryConfig::retryable_errors) (always, when the
    /// list is empty). Formats the error only when there are matchers.
    pub fn is_retryable<E: Display + ?Sized>(&self, error: &E) -> bool {
        let matchers = &self.config().retryable_errors;
        if matchers.is_empty() {
            return true;
        }
        let text = error.to_string();
        matchers.iter().any(|m| m.matches(&text))
    }

    /// Runs `call`, retrying retryable failures (see the [type
    /// docs](Retry)).
    ///
    /// # Errors
    ///
    /// [`Error::RetriesExhausted`] (attempts made, last error) when the
    /// attempts, time budget, deadline or retry budget ran out;
    /// [`Error::Inner`] at once for an error that is not retryable;
    /// [`Error::Disposed`].
    pub fn execute<R, E: Display>(
        &self,
        mut call: impl FnMut() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.run_with(|| call().map_err(Error::Inner), |e| self.is_retryable(e))
    }

    /// Runs `call`, retrying the failures for which `retry_if` returns
    /// `true` (the predicate replaces `retryable_errors`; `E` needs no
    /// `Display`).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, Retry, RetryConfig, VirtualClock};
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum DbError { Deadlock, Constraint }
    ///
    /// let retry = Retry::with_timer("db", RetryConfig::default(), VirtualClock::auto_advance())?;
    /// let mut attempts = 0;
    /// let out: Result<(), _> = retry.execute_if(
    ///     |e: &DbError| *e == DbError::Deadlock,
    ///     || { attempts += 1; Err(if attempts == 1 { DbError::Deadlock } else { DbError::Constraint }) },
    /// );
    /// assert!(matches!(out, Err(Error::Inner(DbError::Constraint))));
    /// assert_eq!(attempts, 2);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn execute_if<R, E>(
        &self,
        mut retry_if: impl FnMut(&E) -> bool,
        mut call: impl FnMut() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.run_with(|| call().map_err(Error::Inner), |e| retry_if(e))
    }

    /// A reusable function protected by this retry (the spec's `wrap`);
    /// the argument is cloned for each attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Retry, RetryConfig, VirtualClock};
    ///
    /// let retry = Retry::with_timer("sq", RetryConfig::default(), VirtualClock::auto_advance())?;
    /// let square = retry.wrap(|x: u64| x.checked_mul(x).ok_or("overflow"));
    /// assert_eq!(square(12).unwrap(), 144);
    /// assert!(square(u64::MAX).is_err());
    /// # Ok::<(), stockade::blocking::Error>(())
    /// ```
    pub fn wrap<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        A: Clone,
        E: Display,
    {
        move |arg: A| self.execute(|| f(arg.clone()))
    }

    /// How long to wait at least before retrying `error`, or `None` if it
    /// is not retried.
    fn wait_before_retry<E>(
        &self,
        error: &Error<E>,
        retryable: &mut impl FnMut(&E) -> bool,
    ) -> Option<Duration> {
        match error {
            Error::Inner(e) => retryable(e).then_some(Duration::ZERO),
            nested => nested.retry_floor(self.config().backoff.max_delay),
        }
    }

    /// The retry loop, counted: the call's final outcome is a success or
    /// a failure (also when an attempt panics).
    fn run_with<R, E>(
        &self,
        call: impl FnMut() -> Result<R, Error<E>>,
        retryable: impl FnMut(&E) -> bool,
    ) -> Result<R, Error<E>> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.running();
        let out = self.attempts(call, retryable);
        running.finish(&out);
        out
    }

    /// Runs the attempts: the first at once, each retry after its
    /// back-off, until one succeeds or the retry gives up.
    fn attempts<R, E>(
        &self,
        mut call: impl FnMut() -> Result<R, Error<E>>,
        mut retryable: impl FnMut(&E) -> bool,
    ) -> Result<R, Error<E>> {
        let mut state = Attempts {
            start: self.begin(),
            schedule: None,
            attempts: 0,
        };
        loop {
            state.attempts = state.attempts.saturating_add(1);
            let error = match call() {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let until = self.plan_retry(&mut state, error, &mut retryable, true)?;
            if !self.back_off(until) {
                return Err(Error::Disposed);
            }
        }
    }

    /// A call's first steps: the budget's deposit; the start, when the
    /// time budget needs it.
    #[inline]
    fn begin(&self) -> Option<Timestamp> {
        let config = self.config();
        let timer = self.timer();
        if let Some(budget) = &config.budget {
            budget.deposit(timer);
        }
        // The clock is read up front only when the time budget needs it.
        config.backoff.max_elapsed.map(|_| timer.now())
    }

    /// After a failed attempt: until when to back off before the next
    /// one (the retry counted and announced), or the error to return.
    /// With `thread_deadline`, a retry that would start at or after the
    /// thread's [current deadline](super::current_deadline) gives up.
    fn plan_retry<E>(
        &self,
        state: &mut Attempts,
        error: Error<E>,
        retryable: &mut impl FnMut(&E) -> bool,
        thread_deadline: bool,
    ) -> Result<Timestamp, Error<E>> {
        let config = self.config();
        let timer = self.timer();
        let attempts = state.attempts;
        let Some(at_least) = self.wait_before_retry(&error, retryable) else {
            return Err(error);
        };
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let schedule = state
            .schedule
            .get_or_insert_with(|| self.backoff.schedule(self.call_seed()));
        let now = timer.now();
        let elapsed = state
            .start
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s));
        let Some(delay) = schedule.next_delay_at_least(elapsed, at_least) else {
            return Err(exhausted(attempts, error));
        };
        let until = now.saturating_add(delay);
        if thread_deadline && current_deadline().is_some_and(|d| until >= d.expires_at()) {
            return Err(exhausted(attempts, error));
        }
        if let Some(budget) = &config.budget {
            if let Err(refused) = budget.try_withdraw(timer) {
                self.refusals.incr();
                self.shell.emit(EventKind::Rejected {
                    retry_after: refused.retry_after(),
                });
                return Err(exhausted(attempts, error));
            }
        }
        self.retries.incr();
        self.shell.emit(EventKind::Retry {
            attempt: attempts,
            delay,
        });
        Ok(until)
    }

    /// The jitter seed of the next failing call.
    fn call_seed(&self) -> u64 {
        let n = self.next_call.fetch_add(1, Ordering::Relaxed);
        self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Sleeps until `until` unless disposed: `false` if disposed.
    fn back_off(&self, until: Timestamp) -> bool {
        let timer = self.timer();
        if timer.now() >= until {
            return !self.is_disposed();
        }
        let _sleeping = self.sleepers.register();
        loop {
            if self.is_disposed() {
                return false;
            }
            if timer.now() >= until {
                return true;
            }
            timer.interruptible_sleep_until(until);
        }
    }

    /// `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Subscribes a listener to this retry's events
    /// ([`EventKind::Retry`] before each back-off, [`EventKind::Rejected`]
    /// when the retry budget refuses, [`EventKind::Disposed`]).
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters: `calls` (calls that finished, each a
    /// success or a failure), `successes`, `failures` (calls that ended in
    /// an error or a panic), `retries` (back-offs taken) and `rejections`
    /// (retries the retry budget refused; the call they end is a failure).
    pub fn metrics(&self) -> Metrics {
        let counters = &self.shell.counters;
        let successes = counters.successes.get();
        let failures = counters.failures.get();
        Metrics {
            calls: successes.wrapping_add(failures),
            successes,
            failures,
            retries: self.retries.get(),
            rejections: self.refusals.get(),
            ..Metrics::default()
        }
    }

    /// Disposes the retry: calls sleeping in back-off wake with
    /// [`Error::Disposed`], later calls fail with `Disposed`, a
    /// [`EventKind::Disposed`] event is emitted, listeners are removed, and
    /// the registry forgets the retry. An attempt already running finishes
    /// (its result is returned if it succeeds). Idempotent.
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        self.sleepers.wake_all();
        self.shell.finish_dispose();
    }
}

impl<T: Timer> Policy for Retry<T> {
    /// Retries `call` (see the [type docs](Retry) for which errors).
    fn run<R, E: core::fmt::Display, F>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.run_with(call, |e| self.is_retryable(e))
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> Retry<T> {
    /// [`execute`](Self::execute) for futures: awaits the future `call`
    /// makes, and after a retryable error sleeps its back-off on the
    /// [`AsyncTimer`](super::AsyncTimer) (no thread is held) before making
    /// the next. Same options, budget, events and metrics as the blocking
    /// form. The thread's [current deadline](super::current_deadline) does
    /// not apply (a task moves between threads); bound the whole call with
    /// an async [`Timeout`](super::Timeout) outside it instead, which drops
    /// it (attempt or back-off) at its deadline.
    ///
    /// Dropping the returned future cancels the attempt or the back-off in
    /// progress; the call is not counted. [`dispose`](Self::dispose) wakes
    /// a task in its back-off with [`Error::Disposed`].
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, Retry, RetryConfig, TokioClock};
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    /// # runtime.block_on(async {
    /// let config = RetryConfig::DEFAULT.with_initial_delay(Duration::from_millis(100));
    /// let retry = Retry::with_timer("doc-retry-async", config, TokioClock::new())?;
    /// let attempts = AtomicU32::new(0);
    /// let value = retry
    ///     .execute_async(|| async {
    ///         let n = attempts.fetch_add(1, Ordering::Relaxed) + 1;
    ///         if n < 3 { Err(format!("attempt {n} failed")) } else { Ok(n) }
    ///     })
    ///     .await;
    /// assert_eq!(value.unwrap(), 3);
    /// assert_eq!(retry.metrics().retries, 2);
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn execute_async<R, E, F, Fut>(
        &self,
        mut call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, E>>,
    {
        self.attempting(
            move || InnerErr { attempt: call() },
            move |e: &E| self.is_retryable(e),
        )
    }

    /// [`execute_if`](Self::execute_if) for futures: `retry_if` decides
    /// which of `call`'s errors are retried; otherwise as
    /// [`execute_async`](Self::execute_async).
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    pub fn execute_if_async<R, E, F, Fut>(
        &self,
        retry_if: impl FnMut(&E) -> bool,
        mut call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, E>>,
    {
        self.attempting(move || InnerErr { attempt: call() }, retry_if)
    }

    /// The async `run_with`: the first attempt at the first poll, then
    /// the retries if it failed; counts the call's outcome.
    #[inline]
    fn attempting<R, E, Fut, C, P>(
        &self,
        call: C,
        retryable: P,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        C: FnMut() -> Fut,
        P: FnMut(&E) -> bool,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        super::hooks::Traced::new(
            PatternKind::Retry,
            self.name(),
            Attempting {
                retry: self,
                stage: Stage::Start,
                start: None,
                call: Some(call),
                retryable: Some(retryable),
                make_rest: Self::retries_async::<R, E, Fut, C, P>,
                first: None,
                rest: None,
            },
        )
    }

    /// After a failed attempt whose back-off ends at `until`: the
    /// back-offs and further attempts, until one succeeds or the retry
    /// gives up.
    async fn retries_async<R, E, Fut, C, P>(
        &self,
        mut state: Attempts,
        mut until: Timestamp,
        mut call: C,
        mut retryable: P,
    ) -> Result<R, Error<E>>
    where
        C: FnMut() -> Fut,
        P: FnMut(&E) -> bool,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        loop {
            let backed_off = super::async_timer::sleep_until_or_disposed(
                self.timer(),
                &self.sleepers,
                until,
                || self.is_disposed(),
            )
            .await;
            if !backed_off {
                return Err(Error::Disposed);
            }
            state.attempts = state.attempts.saturating_add(1);
            let error = match call().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            until = self.plan_retry(&mut state, error, &mut retryable, false)?;
        }
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> super::AsyncPolicy for Retry<T> {
    /// Retries the futures `call` makes (see [`execute_async`](Retry::execute_async)).
    fn run_async<R, E, F, Fut>(
        &self,
        call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        E: Display,
        F: Fn() -> Fut + Clone,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.attempting(call, move |e: &E| self.is_retryable(e))
    }
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// An attempt's future with its error lifted into [`Error::Inner`]
    /// (by hand: no generator around the caller's future).
    struct InnerErr<F> {
        #[pin]
        attempt: F,
    }
}

#[cfg(feature = "async")]
impl<F, R, E> core::future::Future for InnerErr<F>
where
    F: core::future::Future<Output = Result<R, E>>,
{
    type Output = Result<R, Error<E>>;

    #[inline]
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        self.project().attempt.poll(cx).map_err(Error::Inner)
    }
}

/// Makes the future of the back-offs and later attempts after a failed
/// first one ([`Retry::retries_async`]), naming its type for
/// [`Attempting`].
#[cfg(feature = "async")]
trait RestFn<'a, T: super::AsyncTimer + 'a, R, E, C, P>:
    Fn(&'a Retry<T>, Attempts, Timestamp, C, P) -> Self::Rest
{
    /// The future of the retries.
    type Rest: core::future::Future<Output = Result<R, Error<E>>>;
}

#[cfg(feature = "async")]
impl<'a, T, R, E, C, P, F, S> RestFn<'a, T, R, E, C, P> for F
where
    T: super::AsyncTimer + 'a,
    F: Fn(&'a Retry<T>, Attempts, Timestamp, C, P) -> S,
    S: core::future::Future<Output = Result<R, Error<E>>>,
{
    type Rest = S;
}

/// Where an [`Attempting`] call is.
#[cfg(feature = "async")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Not started (the first attempt is made at the first poll).
    Start,
    /// The first attempt runs in `first`.
    First,
    /// The first attempt failed and is retried: `rest` backs off and
    /// makes the later attempts.
    Rest,
    /// Returned (or refused at the start).
    Done,
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// An async call through a retry ([`Retry::execute_async`]), written
    /// by hand (no generator) so that a first attempt that succeeds costs
    /// little more than itself: the first attempt runs here, and only if
    /// it fails and is retried is the future of the back-offs and later
    /// attempts made (`rest`, boxed: the call stays small, cheap to move,
    /// and one that does not wait allocates nothing). Counts the call's
    /// outcome when it returns; dropped before that (cancelled) it is not
    /// counted, unless the thread is panicking (a failure, as a panic
    /// unwinding out of an attempt is).
    struct Attempting<'a, T: super::AsyncTimer, R, E, Fut, C, P, M: RestFn<'a, T, R, E, C, P>> {
        retry: &'a Retry<T>,
        stage: Stage,
        start: Option<Timestamp>,
        call: Option<C>,
        retryable: Option<P>,
        make_rest: M,
        #[pin]
        first: Option<Fut>,
        rest: Option<Pin<Box<M::Rest>>>,
    }
    impl<'a, T: super::AsyncTimer, R, E, Fut, C, P, M: RestFn<'a, T, R, E, C, P>> PinnedDrop for Attempting<'a, T, R, E, Fut, C, P, M> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if matches!(*this.stage, Stage::First | Stage::Rest) && std::thread::panicking() {
                this.retry.shell.counters.failures.incr();
            }
        }
    }
}

#[cfg(feature = "async")]
impl<'a, T, R, E, Fut, C, P, M> core::future::Future for Attempting<'a, T, R, E, Fut, C, P, M>
where
    T: super::AsyncTimer,
    C: FnMut() -> Fut,
    P: FnMut(&E) -> bool,
    Fut: core::future::Future<Output = Result<R, Error<E>>>,
    M: RestFn<'a, T, R, E, C, P>,
{
    type Output = Result<R, Error<E>>;

    #[inline]
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Self::Output> {
        let mut this = self.as_mut().project();
        let retry = *this.retry;
        if *this.stage == Stage::Start {
            if retry.is_disposed() {
                *this.stage = Stage::Done;
                return core::task::Poll::Ready(Err(Error::Disposed));
            }
            *this.start = retry.begin();
            let Some(call) = this.call.as_mut() else {
                unreachable!("an attempting call holds its closure until its first attempt fails")
            };
            *this.stage = Stage::First;
            // A panic making or running an attempt, or deciding on a
            // retry, counts as a failure as it unwinds (as in a blocking
            // call), not later when the future is dropped.
            let unwinding = Unwinding {
                retry,
                stage: &mut *this.stage,
            };
            this.first.set(Some(call()));
            core::mem::forget(unwinding);
        }
        if *this.stage == Stage::First {
            let Some(first) = this.first.as_mut().as_pin_mut() else {
                unreachable!("the first attempt runs in `first`")
            };
            let unwinding = Unwinding {
                retry,
                stage: &mut *this.stage,
            };
            match first.poll(cx) {
                core::task::Poll::Pending => {
                    core::mem::forget(unwinding);
                    return core::task::Poll::Pending;
                }
                core::task::Poll::Ready(Ok(value)) => {
                    this.first.set(None);
                    core::mem::forget(unwinding);
                    *this.stage = Stage::Done;
                    retry.shell.counters.successes.incr();
                    return core::task::Poll::Ready(Ok(value));
                }
                core::task::Poll::Ready(Err(error)) => {
                    let ended = start_rest(
                        retry,
                        error,
                        *this.start,
                        this.first,
                        this.call,
                        this.retryable,
                        this.make_rest,
                        this.rest,
                    );
                    core::mem::forget(unwinding);
                    if let Some(error) = ended {
                        *this.stage = Stage::Done;
                        retry.shell.counters.failures.incr();
                        return core::task::Poll::Ready(Err(error));
                    }
                    *this.stage = Stage::Rest;
                }
            }
        }
        self.poll_rest(cx)
    }
}

#[cfg(feature = "async")]
impl<'a, T, R, E, Fut, C, P, M> Attempting<'a, T, R, E, Fut, C, P, M>
where
    T: super::AsyncTimer,
    M: RestFn<'a, T, R, E, C, P>,
{
    /// Polls the back-offs and later attempts after a failed first one,
    /// and counts the call's outcome when they end. Out of line: the
    /// healthy path never runs it.
    #[inline(never)]
    fn poll_rest(
        self: Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Result<R, Error<E>>> {
        let this = self.project();
        let retry = *this.retry;
        let rest = match this.rest.as_mut() {
            Some(rest) if *this.stage == Stage::Rest => rest,
            _ => panic!("a retry's async call polled after it completed"),
        };
        let unwinding = Unwinding {
            retry,
            stage: &mut *this.stage,
        };
        let polled = rest.as_mut().poll(cx);
        core::mem::forget(unwinding);
        let out = core::task::ready!(polled);
        *this.stage = Stage::Done;
        *this.rest = None;
        let counters = &retry.shell.counters;
        if out.is_ok() {
            counters.successes.incr();
        } else {
            counters.failures.incr();
        }
        core::task::Poll::Ready(out)
    }
}

/// After a failed first attempt: drops it, and either ends the call (the
/// error to return: not retried, or the retry gives up at once) or makes
/// the future of the back-offs and later attempts (`None`). Out of line:
/// the healthy path never runs it.
#[cfg(feature = "async")]
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn start_rest<'a, T, R, E, Fut, C, P, M>(
    retry: &'a Retry<T>,
    error: Error<E>,
    start: Option<Timestamp>,
    mut first: Pin<&mut Option<Fut>>,
    call: &mut Option<C>,
    retryable: &mut Option<P>,
    make_rest: &M,
    rest: &mut Option<Pin<Box<M::Rest>>>,
) -> Option<Error<E>>
where
    T: super::AsyncTimer + 'a,
    P: FnMut(&E) -> bool,
    M: RestFn<'a, T, R, E, C, P>,
{
    first.set(None);
    let (Some(call), Some(mut retryable)) = (call.take(), retryable.take()) else {
        unreachable!("the closures are taken only here")
    };
    let mut state = Attempts {
        start,
        schedule: None,
        attempts: 1,
    };
    match retry.plan_retry(&mut state, error, &mut retryable, false) {
        Ok(until) => {
            *rest = Some(Box::pin(make_rest(retry, state, until, call, retryable)));
            None
        }
        Err(error) => Some(error),
    }
}

/// Counts a failure if a panic unwinds out of an attempt's poll
/// (forgotten when the poll returns).
#[cfg(feature = "async")]
struct Unwinding<'s, 'a, T: Timer> {
    retry: &'a Retry<T>,
    stage: &'s mut Stage,
}

#[cfg(feature = "async")]
impl<T: Timer> Drop for Unwinding<'_, '_, T> {
    #[cold]
    fn drop(&mut self) {
        *self.stage = Stage::Done;
        self.retry.shell.counters.failures.incr();
    }
}

/// One call's progress through its attempts.
struct Attempts {
    /// When the call started, if the time budget needs it.
    start: Option<Timestamp>,
    /// Made at the first retry.
    schedule: Option<BackoffSchedule>,
    /// Attempts made so far.
    attempts: u32,
}

fn exhausted<E>(attempts: u32, last: Error<E>) -> Error<E> {
    Error::RetriesExhausted {
        attempts,
        last: Box::new(last),
    }
}
