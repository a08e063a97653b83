//! The fallback pattern for threads: [`Fallback`], its options
//! [`FallbackConfig`] and its pipeline stage [`FallbackStage`].

use core::fmt::{self, Display};
use std::string::ToString;
use std::sync::Arc;
use std::vec::Vec;

use super::Timer;
use super::dynamic::{BoxError, DynPolicy, DynResult, Next};
use super::events::Counter;
use super::registry::{self, registered};
use super::shell::Shell;
use super::{Error, ErrorKind, ErrorMatcher, Event, EventKind, ListenerId, Metrics, PatternKind};
use crate::clock::MonotonicClock;

/// Which failures a [`Fallback`] replaces.
///
/// An error is handled when its [kind](Error::kind) is in
/// [`handled_kinds`](Self::handled_kinds) (an empty list: every kind) and,
/// if it is the call's own error ([`ErrorKind::Inner`]), its `Display`
/// text matches one of [`handled_errors`](Self::handled_errors) (an empty
/// list: every text). The default handles every error.
///
/// Configs are compared (for the registry) field by field; regexes by
/// their pattern text.
///
/// # Examples
///
/// ```
/// use stockade::blocking::{ErrorKind, FallbackConfig};
///
/// // Only the breaker's and the limiter's refusals, and "HTTP 503".
/// let config = FallbackConfig::DEFAULT
///     .on_kind(ErrorKind::BreakerOpen)
///     .on_kind(ErrorKind::RateLimited)
///     .on_kind(ErrorKind::Inner)
///     .on_error("HTTP 503");
/// assert_eq!(config.handled_kinds.len(), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FallbackConfig {
    /// The kinds of error handled; empty (the default): every kind.
    pub handled_kinds: Vec<ErrorKind>,
    /// The call's own errors handled, by their text; empty (the default):
    /// every one. Applies to [`ErrorKind::Inner`] only.
    pub handled_errors: Vec<ErrorMatcher>,
}

impl FallbackConfig {
    /// Every error handled.
    pub const DEFAULT: FallbackConfig = FallbackConfig {
        handled_kinds: Vec::new(),
        handled_errors: Vec::new(),
    };

    /// This config also handling errors of `kind`.
    #[must_use]
    pub fn on_kind(mut self, kind: ErrorKind) -> Self {
        self.handled_kinds.push(kind);
        self
    }

    /// This config also handling the call's own errors whose text contains
    /// `text`.
    #[must_use]
    pub fn on_error(mut self, text: impl Into<Arc<str>>) -> Self {
        self.handled_errors.push(ErrorMatcher::substring(text));
        self
    }

    /// This config also handling the call's own errors whose text matches
    /// the regular expression `pattern`.
    ///
    /// # Errors
    ///
    /// The pattern's syntax error.
    pub fn on_error_regex(mut self, pattern: &str) -> Result<Self, regex::Error> {
        self.handled_errors.push(ErrorMatcher::regex(pattern)?);
        Ok(self)
    }

    /// `true` if `error` is handled under this config.
    pub fn handles<E: Display>(&self, error: &Error<E>) -> bool {
        let kind = error.kind();
        if !self.handled_kinds.is_empty() && !self.handled_kinds.contains(&kind) {
            return false;
        }
        if kind != ErrorKind::Inner || self.handled_errors.is_empty() {
            return true;
        }
        let text = error.to_string();
        self.handled_errors.iter().any(|m| m.matches(&text))
    }
}

/// Replaces a failed call's outcome with a fallback: a value, or what a
/// function of the error returns (Polly's and cockatiel's Fallback).
///
/// The fallback runs on the errors the [`FallbackConfig`] chooses (by
/// default every error), Stockade's own included: a breaker's
/// [`Error::BreakerOpen`], a limiter's [`Error::RateLimited`], a full
/// bulkhead, a timeout. Other errors come back unchanged. The function
/// receives the error by value and returns the call's result, so it can
/// also fail (return `Err`).
///
/// * [`execute_or`](Self::execute_or): a value.
/// * [`execute_or_else`](Self::execute_or_else): a function of the error.
/// * [`execute_if`](Self::execute_if): the errors chosen by a predicate on
///   the typed error instead of the config (no `Display` needed).
/// * [`run_or_else`](Self::run_or_else): around a call whose errors are
///   already [`Error`]s, such as a [`Pipeline`](super::Pipeline)'s
///   `execute`: the static way to put a fallback outside a pipeline.
/// * [`stage`](Self::stage): a [`DynPipeline`](super::DynPipeline) stage.
/// * With feature `async`, futures: `execute_or_async`,
///   `execute_or_else_async` and `execute_if_async` (whose fallback is a
///   function returning a future), `run_or_else_async` around a
///   `Pipeline`'s `execute_async`; same config, events and metrics.
///
/// A fallback is not a [`Policy`](super::Policy): a `Policy` must run calls
/// of any result type, and a fallback value has one type.
///
/// Counters: each finished call is one of `successes` (the call succeeded),
/// `failures` (it failed and its error was not handled, or it panicked)
/// and `fallbacks` (its error was handled: the fallback gave the result);
/// `calls` is their sum.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// let breaker = CircuitBreaker::unregistered("prices", BreakerConfig::DEFAULT.with_failure_threshold(1))?;
/// let fallback = Fallback::unregistered("prices", FallbackConfig::DEFAULT.on_kind(ErrorKind::BreakerOpen))?;
/// let pipeline = Pipeline::new().then(&breaker);
///
/// // The call's own failure is not handled: it comes back (and opens the breaker).
/// let failed = fallback.run_or_else(|| pipeline.execute(|| Err::<u32, _>("down")), |_| Ok(0));
/// assert_eq!(failed.unwrap_err().into_inner(), Some("down"));
/// // The open breaker's refusal is: the cached price comes back.
/// let cached = fallback.run_or_else(|| pipeline.execute(|| Ok::<u32, &str>(99)), |_| Ok(42));
/// assert_eq!(cached.unwrap(), 42);
/// assert_eq!(fallback.metrics().fallbacks, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fallback<T: Timer = MonotonicClock> {
    shell: Shell<FallbackConfig, T>,
    fallbacks: Counter,
}

impl<T: Timer> fmt::Debug for Fallback<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "Fallback", |_| {})
    }
}

impl Fallback<MonotonicClock> {
    /// A fallback registered as `name` (see
    /// [`get_fallback`](Self::get_fallback)).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if a live fallback is registered as `name`.
    pub fn new(name: &str, config: FallbackConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<FallbackConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(
    Fallback,
    FallbackConfig,
    "fallback",
    get_fallback,
    "Fallback.getFallback"
);

impl<T: Timer> Fallback<T> {
    /// A fallback whose events are stamped by `timer`, not registered.
    ///
    /// # Errors
    ///
    /// None today (every `FallbackConfig` is valid); the `Result` keeps the
    /// constructors alike.
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: FallbackConfig,
        timer: T,
    ) -> Result<Self, Error> {
        Ok(Fallback {
            shell: Shell::new(PatternKind::Fallback, name.into(), config, timer),
            fallbacks: Counter::default(),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config.
    pub fn config(&self) -> &FallbackConfig {
        self.shell.config()
    }

    /// `true` if the config handles `error`.
    pub fn handles<E: Display>(&self, error: &Error<E>) -> bool {
        self.config().handles(error)
    }

    /// Runs `call`; if it fails with a handled error, returns `Ok(value)`
    /// instead.
    ///
    /// # Errors
    ///
    /// `call`'s error when it is not handled, as [`Error::Inner`];
    /// [`Error::Disposed`] (the call does not run).
    pub fn execute_or<R, E: Display>(
        &self,
        value: R,
        call: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.run_with(
            || call().map_err(Error::Inner),
            |e| self.handles(e),
            |_| Ok(value),
        )
    }

    /// Runs `call`; if it fails with a handled error, returns what
    /// `fallback` makes of the error.
    ///
    /// # Errors
    ///
    /// `call`'s error when it is not handled; `fallback`'s error;
    /// [`Error::Disposed`] (the call does not run).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{Error, Fallback, FallbackConfig};
    ///
    /// let fallback = Fallback::unregistered("greeting", FallbackConfig::DEFAULT.on_error("timeout"))?;
    /// let hello = fallback.execute_or_else(|e| Ok(format!("hello (cached, after: {e})")), || Err("timeout"));
    /// assert_eq!(hello.unwrap(), "hello (cached, after: timeout)");
    /// let other: Result<String, _> = fallback.execute_or_else(|_| Ok(String::new()), || Err("denied"));
    /// assert!(matches!(other, Err(Error::Inner("denied"))));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn execute_or_else<R, E: Display>(
        &self,
        fallback: impl FnOnce(Error<E>) -> Result<R, Error<E>>,
        call: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.run_with(
            || call().map_err(Error::Inner),
            |e| self.handles(e),
            fallback,
        )
    }

    /// Runs `call`; if it fails with an error for which `handle_if` returns
    /// `true` (the predicate replaces the config), returns what `fallback`
    /// makes of it.
    ///
    /// # Errors
    ///
    /// As [`execute_or_else`](Self::execute_or_else).
    pub fn execute_if<R, E>(
        &self,
        handle_if: impl FnOnce(&Error<E>) -> bool,
        fallback: impl FnOnce(Error<E>) -> Result<R, Error<E>>,
        call: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        self.run_with(|| call().map_err(Error::Inner), handle_if, fallback)
    }

    /// Runs `call`, whose errors are already [`Error`]s (a
    /// [`Pipeline`](super::Pipeline)'s `execute`, another pattern's), and
    /// replaces a handled error with what `fallback` makes of it.
    ///
    /// # Errors
    ///
    /// As [`execute_or_else`](Self::execute_or_else).
    pub fn run_or_else<R, E: Display>(
        &self,
        call: impl FnOnce() -> Result<R, Error<E>>,
        fallback: impl FnOnce(Error<E>) -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        self.run_with(call, |e| self.handles(e), fallback)
    }

    /// The call, counted: a handled error goes to `fallback`.
    fn run_with<R, E>(
        &self,
        call: impl FnOnce() -> Result<R, Error<E>>,
        handle_if: impl FnOnce(&Error<E>) -> bool,
        fallback: impl FnOnce(Error<E>) -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.running();
        match call() {
            Ok(value) => {
                running.finish(&Ok::<(), ()>(()));
                Ok(value)
            }
            Err(error) if handle_if(&error) => {
                running.disarm();
                self.fallbacks.incr();
                self.shell.emit(EventKind::FallbackUsed);
                fallback(error)
            }
            Err(error) => {
                running.finish(&Err::<(), ()>(()));
                Err(error)
            }
        }
    }

    /// `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Subscribes a listener to this fallback's events
    /// ([`EventKind::FallbackUsed`] before the fallback runs,
    /// [`EventKind::Disposed`]).
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters: `calls`, `successes`, `failures` and
    /// `fallbacks` (see the [type docs](Fallback)).
    pub fn metrics(&self) -> Metrics {
        let counters = &self.shell.counters;
        let successes = counters.successes.get();
        let failures = counters.failures.get();
        let fallbacks = self.fallbacks.get();
        Metrics {
            calls: successes.wrapping_add(failures).wrapping_add(fallbacks),
            successes,
            failures,
            fallbacks,
            ..Metrics::default()
        }
    }

    /// Disposes the fallback: later calls fail with [`Error::Disposed`]
    /// without running, a [`EventKind::Disposed`] event is emitted,
    /// listeners are removed, and the registry forgets it. Idempotent.
    pub fn dispose(&self) {
        if self.shell.begin_dispose() {
            self.shell.finish_dispose();
        }
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
impl<T: Timer> Fallback<T> {
    /// [`execute_or`](Self::execute_or) for a future: awaits `call`; if it
    /// fails with a handled error, returns `Ok(value)` instead. Same
    /// config, events and metrics as the blocking forms.
    ///
    /// Dropping the returned future drops `call` (cancelling it); the call
    /// is not counted. A panic while polling `call` counts as a failure and
    /// continues to the caller.
    ///
    /// # Errors
    ///
    /// As [`execute_or`](Self::execute_or).
    pub async fn execute_or_async<R, E: Display>(
        &self,
        value: R,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> Result<R, Error<E>> {
        self.run_with_async(
            async { call.await.map_err(Error::Inner) },
            |e| self.handles(e),
            |_| core::future::ready(Ok(value)),
        )
        .await
    }

    /// [`execute_or_else`](Self::execute_or_else) for futures: awaits
    /// `call`; if it fails with a handled error, awaits the future
    /// `fallback` makes of the error. The fallback is a function returning
    /// a future, so it can itself be async (a cache read, a second
    /// service); a plain value or computation is
    /// `|e| std::future::ready(Ok(..))` (or `|e| async move { .. }`).
    /// Dropping the returned future drops whichever of `call` and the
    /// fallback's future runs.
    ///
    /// # Errors
    ///
    /// As [`execute_or_else`](Self::execute_or_else).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::future::ready;
    /// use stockade::blocking::{Error, Fallback, FallbackConfig};
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    /// let fallback = Fallback::unregistered("doc-fallback-async", FallbackConfig::DEFAULT.on_error("timeout"))?;
    /// // An async fallback (say, a cache read) for the chosen errors...
    /// let cached = fallback
    ///     .execute_or_else_async(|e| async move { Ok(format!("cached, after: {e}")) }, async { Err("timeout") })
    ///     .await;
    /// assert_eq!(cached.unwrap(), "cached, after: timeout");
    /// // ...and a plain value through `ready`; other errors come back.
    /// let other: Result<String, _> = fallback
    ///     .execute_or_else_async(|_| ready(Ok(String::new())), async { Err("denied") })
    ///     .await;
    /// assert!(matches!(other, Err(Error::Inner("denied"))));
    /// assert_eq!(fallback.metrics().fallbacks, 1);
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub async fn execute_or_else_async<R, E, Fb, FbFut>(
        &self,
        fallback: Fb,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> Result<R, Error<E>>
    where
        E: Display,
        Fb: FnOnce(Error<E>) -> FbFut,
        FbFut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.run_with_async(
            async { call.await.map_err(Error::Inner) },
            |e| self.handles(e),
            fallback,
        )
        .await
    }

    /// [`execute_if`](Self::execute_if) for futures: `handle_if` chooses
    /// the handled errors instead of the config; otherwise as
    /// [`execute_or_else_async`](Self::execute_or_else_async).
    ///
    /// # Errors
    ///
    /// As [`execute_or_else`](Self::execute_or_else).
    pub async fn execute_if_async<R, E, Fb, FbFut>(
        &self,
        handle_if: impl FnOnce(&Error<E>) -> bool,
        fallback: Fb,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> Result<R, Error<E>>
    where
        Fb: FnOnce(Error<E>) -> FbFut,
        FbFut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.run_with_async(
            async { call.await.map_err(Error::Inner) },
            handle_if,
            fallback,
        )
        .await
    }

    /// [`run_or_else`](Self::run_or_else) for futures: awaits `call`, whose
    /// errors are already [`Error`]s (a [`Pipeline`](super::Pipeline)'s
    /// `execute_async`, another pattern's), and replaces a handled error
    /// with what `fallback`'s future gives. The way to put a fallback
    /// outside an async pipeline (a fallback is not an
    /// [`AsyncPolicy`](super::AsyncPolicy), for the reason it is not a
    /// `Policy`: its value has one type).
    ///
    /// # Errors
    ///
    /// As [`execute_or_else`](Self::execute_or_else).
    pub async fn run_or_else_async<R, E, Fb, FbFut>(
        &self,
        call: impl core::future::Future<Output = Result<R, Error<E>>>,
        fallback: Fb,
    ) -> Result<R, Error<E>>
    where
        E: Display,
        Fb: FnOnce(Error<E>) -> FbFut,
        FbFut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.run_with_async(call, |e| self.handles(e), fallback)
            .await
    }

    /// The async `run_with`: counted as the blocking one (the fallback's
    /// own outcome is not counted).
    async fn run_with_async<R, E, FbFut>(
        &self,
        call: impl core::future::Future<Output = Result<R, Error<E>>>,
        handle_if: impl FnOnce(&Error<E>) -> bool,
        fallback: impl FnOnce(Error<E>) -> FbFut,
    ) -> Result<R, Error<E>>
    where
        FbFut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.counters.running_async();
        match call.await {
            Ok(value) => {
                running.finish(&Ok::<(), ()>(()));
                Ok(value)
            }
            Err(error) if handle_if(&error) => {
                running.disarm();
                self.fallbacks.incr();
                self.shell.emit(EventKind::FallbackUsed);
                fallback(error).await
            }
            Err(error) => {
                running.finish(&Err::<(), ()>(()));
                Err(error)
            }
        }
    }
}

/// What a [`FallbackStage`] returns for a handled error.
pub type DynFallbackFn = dyn Fn(Error<BoxError>) -> DynResult + Send + Sync;

/// Chooses a [`FallbackStage`]'s errors instead of the config.
pub type DynHandleIf = dyn Fn(&Error<BoxError>) -> bool + Send + Sync;

/// A [`Fallback`] as a stage of a [`DynPipeline`](super::DynPipeline)
/// (from [`Fallback::stage`]): runs the stages inside it and replaces a
/// handled error with what its function returns. Usually the outermost
/// stage, so that it sees every other stage's refusals.
#[derive(Clone)]
pub struct FallbackStage<T: Timer = MonotonicClock> {
    fallback: Arc<Fallback<T>>,
    handle_if: Option<Arc<DynHandleIf>>,
    value: Arc<DynFallbackFn>,
}

impl<T: Timer> fmt::Debug for FallbackStage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackStage")
            .field("fallback", &self.fallback)
            .field("predicate", &self.handle_if.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: Timer> Fallback<T> {
    /// This fallback as a [`DynPipeline`](super::DynPipeline) stage whose
    /// handled errors (chosen by the config) get what `fallback` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stockade::blocking::DynValue;
    /// use stockade::prelude::*;
    ///
    /// let fallback = Arc::new(Fallback::unregistered("dyn-fallback", FallbackConfig::DEFAULT)?);
    /// let stage = fallback.stage(|_| Ok(Box::new(0u32) as DynValue));
    /// let pipeline = DynPipeline::new(vec![Arc::new(stage)]);
    /// assert_eq!(pipeline.execute(|| Err::<u32, _>("down"))?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stage(
        self: &Arc<Self>,
        fallback: impl Fn(Error<BoxError>) -> DynResult + Send + Sync + 'static,
    ) -> FallbackStage<T> {
        FallbackStage {
            fallback: Arc::clone(self),
            handle_if: None,
            value: Arc::new(fallback),
        }
    }

    /// [`stage`](Self::stage) with the handled errors chosen by `handle_if`
    /// instead of the config.
    pub fn stage_if(
        self: &Arc<Self>,
        handle_if: impl Fn(&Error<BoxError>) -> bool + Send + Sync + 'static,
        fallback: impl Fn(Error<BoxError>) -> DynResult + Send + Sync + 'static,
    ) -> FallbackStage<T> {
        FallbackStage {
            fallback: Arc::clone(self),
            handle_if: Some(Arc::new(handle_if)),
            value: Arc::new(fallback),
        }
    }
}

impl<T: Timer + 'static> DynPolicy for FallbackStage<T> {
    fn run_dyn(&self, next: &Next) -> DynResult {
        self.fallback.run_with(
            || next.run(),
            |e| match &self.handle_if {
                Some(handle_if) => handle_if(e),
                None => self.fallback.handles(e),
            },
            |e| (self.value)(e),
        )
    }
}

#[cfg(feature = "async")]
impl<T: Timer + 'static> super::dynamic::DynAsyncPolicy for FallbackStage<T> {
    /// Awaits the stages inside it and replaces a handled error with what
    /// its function returns, as [`run_dyn`](DynPolicy::run_dyn) does.
    fn run_dyn_async<'a>(
        &'a self,
        next: &'a super::dynamic::NextAsync,
    ) -> super::dynamic::DynFuture<'a> {
        std::boxed::Box::pin(self.fallback.run_with_async(
            next.run(),
            |e| match &self.handle_if {
                Some(handle_if) => handle_if(e),
                None => self.fallback.handles(e),
            },
            |e| core::future::ready((self.value)(e)),
        ))
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use std::string::String;

    #[test]
    fn the_config_chooses_kinds_and_texts() {
        let all = FallbackConfig::DEFAULT;
        assert!(all.handles(&Error::Inner("x")));
        assert!(all.handles(&Error::<&str>::BulkheadFull));
        let some = FallbackConfig::DEFAULT
            .on_kind(ErrorKind::Inner)
            .on_kind(ErrorKind::TimedOut)
            .on_error("503")
            .on_error_regex("^reset")
            .unwrap();
        assert!(some.handles(&Error::Inner("HTTP 503")));
        assert!(some.handles(&Error::Inner("reset by peer")));
        assert!(!some.handles(&Error::Inner("peer reset")));
        assert!(some.handles(&Error::<&str>::TimedOut {
            after: core::time::Duration::from_secs(1)
        }));
        assert!(!some.handles(&Error::<&str>::BulkheadFull));
        // Texts apply to the call's own errors only.
        let texts = FallbackConfig::DEFAULT.on_error("nothing matches this");
        assert!(texts.handles(&Error::<&str>::PoolFull));
        assert!(!texts.handles(&Error::Inner("boom")));
    }

    #[test]
    fn counts_each_call_once() {
        let f = Fallback::unregistered("t", FallbackConfig::DEFAULT.on_error("soft")).unwrap();
        assert_eq!(f.execute_or(1, || Ok::<_, &str>(5)).unwrap(), 5);
        assert_eq!(f.execute_or(1, || Err("soft")).unwrap(), 1);
        assert!(matches!(
            f.execute_or(1, || Err("hard")),
            Err(Error::Inner("hard"))
        ));
        let refused: Result<u8, _> = f.execute_or_else(
            |e| Err(Error::Inner(String::from("still ") + &e.to_string())),
            || Err(String::from("soft")),
        );
        assert_eq!(refused.unwrap_err().into_inner().unwrap(), "still soft");
        let m = f.metrics();
        assert_eq!(
            (m.calls, m.successes, m.failures, m.fallbacks),
            (4, 1, 1, 2)
        );
        f.dispose();
        let mut ran = false;
        let out = f.execute_or(0, || {
            ran = true;
            Ok::<_, &str>(1)
        });
        assert!(matches!(out, Err(Error::Disposed)));
        assert!(!ran);
    }
}
