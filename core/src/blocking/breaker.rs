//! The blocking circuit breaker: runs closures through the lock-free core
//! [`crate::breaker::CircuitBreaker`], with events, metrics, a monitor
//! thread and a registry.
//!
//! The user-facing documentation is on [`CircuitBreaker`].

#[cfg(feature = "async")]
#[cfg(feature = "redis")]
use core::convert::Infallible;
use core::fmt;
#[cfg(feature = "async")]
use core::future::Future;
use core::mem::ManuallyDrop;
use core::panic::AssertUnwindSafe;
#[cfg(feature = "async")]
use core::pin::Pin;
#[cfg(feature = "async")]
use core::task::Poll;
use core::time::Duration;
#[cfg(feature = "redis")]
use std::boxed::Box;
use std::collections::VecDeque;
use std::panic::{catch_unwind, resume_unwind};
use std::sync::{Arc, Weak};
use std::vec::Vec;

use super::home::Home;
use super::hooks::ExecSpan;
use super::registry::{self, registered};
use super::shell::Shell;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::breaker::{
    BreakerConfig, BreakerMetrics, BreakerRejected, BreakerState, BreakerToken,
    CircuitBreaker as Machine, Outcome, Transition,
};
use crate::clock::{Clock, MonotonicClock, Timestamp};
use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicU32, Mutex, Ordering};

/// A circuit breaker for blocking calls (spec: `CircuitBreaker`).
///
/// Counts the failures of the calls it runs; after `failure_threshold`
/// consecutive failures it *opens* and refuses calls with
/// [`Error::BreakerOpen`] for `reset_timeout`, then lets probe calls
/// through (*half-open*) and closes again once they succeed. The state
/// machine is the lock-free core [`crate::breaker::CircuitBreaker`]; its
/// documentation explains every option ([`BreakerConfig`]: the spec's
/// `failure_threshold` 5, `reset_timeout` 60 s, `half_open_timeout` 30 s,
/// `monitor_interval` 5 s, plus resilience4j's failure-rate window,
/// slow-call threshold and half-open probe count).
///
/// * [`execute`](Self::execute) counts `Ok` as a success and `Err` as a
///   failure; [`execute_classified`](Self::execute_classified) lets a
///   predicate decide (a failure, a success, or [`Outcome::Ignored`]).
/// * Work that is not one closure (a binding's `with` block, a call whose
///   end is observed elsewhere) takes a permit with
///   [`try_acquire`](Self::try_acquire) and gives its [`BreakerGuard`] a
///   verdict: the same path `execute` takes.
/// * A closure that panics counts as a failure; the panic continues to the
///   caller.
/// * Manual control: [`trip`](Self::trip), [`reset`](Self::reset),
///   [`force_open`](Self::force_open), [`disable`](Self::disable).
/// * Events: `StateChanged { from, to, generation }`, `Rejected`, `Disposed`, and
///   `Monitor(metrics)` every `monitor_interval` while anyone listens (see
///   below).
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{CircuitBreaker, Error};
/// use stockade::breaker::BreakerConfig;
///
/// # struct Database;
/// # #[derive(Debug, PartialEq)] struct User(String);
/// # impl Database {
/// #     fn find_user(&self, id: &str) -> Result<User, std::io::Error> { Ok(User(id.to_owned())) }
/// # }
/// # let database = Database;
/// // Create a circuit breaker
/// let breaker = CircuitBreaker::new(
///     "databaseConnection",
///     BreakerConfig::DEFAULT
///         .with_failure_threshold(3)
///         .with_reset_timeout(Duration::from_secs(30)) // 30 seconds
///         .with_half_open_timeout(Duration::from_secs(5)), // 5 seconds
/// )?;
///
/// // Use with any function
/// let get_user = |id: &str| {
///     breaker.execute(|| {
///         // Database operation that might fail
///         database.find_user(id)
///     })
/// };
/// assert_eq!(get_user("42").unwrap(), User("42".into()));
///
/// // Or wrap a function for reuse
/// let protected_find_user = breaker.wrap(|id: &str| database.find_user(id));
/// let user = protected_find_user("123").unwrap();
/// assert_eq!(user, User("123".into()));
///
/// // Three failures open the circuit: calls are refused without running.
/// for _ in 0..3 {
///     let _ = breaker.execute(|| Err::<(), _>("connection refused"));
/// }
/// assert!(matches!(
///     protected_find_user("123"),
///     Err(Error::BreakerOpen { retry_after, .. }) if retry_after <= Duration::from_secs(30)
/// ));
/// # Ok::<(), Error>(())
/// ```
///
/// # Cost
///
/// In the closed state (no slow-call threshold, no failure-rate window) a
/// successful [`execute`](Self::execute) is: one atomic load to admit, the
/// closure, one atomic load to report, and one increment of the success
/// counter. No lock, no allocation, no clock read. The success counter is
/// striped per thread: for up to eight live threads the increment is a
/// plain load and store of the thread's own cache line (no `lock`-prefixed
/// read-modify-write, no line shared between threads); further threads
/// share one atomic counter.
///
/// Everything else (counting failures and rejections, emitting events)
/// happens only when the core says something happened: a transition it
/// returned, a rejection, a failure.
///
/// # State-change events
///
/// Every core call that changes the state returns the
/// [`Transition`] it performed (exactly one call returns each), so no
/// transition is missed or guessed: the call that performed it hands it
/// to the event log. Transitions carry their generation, and the log
/// delivers them in generation order, holding back one that overtook an
/// earlier one still on its way from another thread. The events
/// therefore form a chain: each `StateChanged { from, to, generation }`
/// has as `from` the previous event's `to`, and generations increase. A
/// new half-open round (half-open to half-open) and a trip of an open
/// breaker are transitions but not state changes: they emit nothing.
/// [`breaker_metrics`](Self::breaker_metrics)`().state_changes` counts
/// the state changes, so while a listener is subscribed (and before
/// `dispose`) it sees exactly that many `StateChanged` events.
///
/// Events are queued under that lock and delivered in order, outside it, by
/// one thread at a time; a listener may call back into the breaker (its
/// own events are delivered after it returns). An event is normally
/// delivered before the call that caused it returns, unless another thread
/// is delivering events at that moment (then that thread delivers it).
///
/// # The monitor thread
///
/// While the breaker has listeners, a background thread emits
/// `Monitor(metrics)` every `monitor_interval`, sleeping on the breaker's
/// [`Timer`] (so a [`VirtualClock`](super::VirtualClock) drives it). It
/// holds only a `Weak` reference to the breaker's state and a handle to the
/// timer; it stops when the last listener unsubscribes, on
/// [`dispose`](Self::dispose), or when the breaker is dropped
/// (each wakes it at once). A monitor tick that finds itself late (the
/// clock jumped several intervals) emits one event, not one per missed
/// interval.
///
/// # Dispose
///
/// Disposing forces the core open (so the hot path needs no separate
/// "disposed" check: the rejection path tells a disposed breaker from a
/// forced-open one). [`state`](Self::state) of a disposed breaker
/// is therefore [`BreakerState::ForcedOpen`].
pub struct CircuitBreaker<T: Timer = MonotonicClock> {
    inner: Arc<Inner<T>>,
}

/// The breaker's shared state; the monitor thread holds a `Weak` to it.
struct Inner<T> {
    /// The state machine (its control word is the first field), or one
    /// shared between processes.
    core: Home<Machine>,
    /// Name, config, timer, listeners, dispose flag, registry entry and
    /// counters. The one counter the hot path writes, `successes`, is
    /// striped: per-thread stripes, each on its own cache line (also away
    /// from the control word).
    shell: Shell<BreakerConfig, Arc<T>>,
    /// The last transition delivered, early arrivals, and the events
    /// waiting for delivery.
    events: Mutex<EventLog>,
    /// Serialises manual operations with `dispose`.
    manual: Mutex<()>,
    monitor: Mutex<Option<MonitorHandle>>,
    /// The fleet-wide breaker on Redis, when made by
    /// [`CircuitBreaker::redis`]; `core` is then the local fallback.
    #[cfg(feature = "redis")]
    fleet: Option<Box<Fleet>>,
}

/// A Redis-backed breaker's engine and fallback.
#[cfg(feature = "redis")]
struct Fleet {
    engine: Arc<crate::redis::RedisCircuitBreaker>,
    fallback: crate::redis::Fallback,
    fallback_decisions: super::events::Counter,
}

/// What a call admitted by the fleet reports to it.
#[cfg(feature = "redis")]
#[derive(Clone, Copy, Debug)]
enum Ticket {
    /// Nothing (disabled, or decided under the fallback).
    None,
    /// Admitted closed in this fleet generation: a failure is recorded.
    Closed(u64),
    /// A probe: generation and lease.
    Probe(u64, u64),
}

/// The transitions in generation order, and the event queue.
struct EventLog {
    /// The generation of the last transition taken in order.
    generation: u32,
    /// The state it entered.
    state: BreakerState,
    /// Transitions that arrived before an earlier one (a thread that
    /// performed the earlier one has not handed it over yet).
    early: Vec<Transition>,
    pending: VecDeque<Pending>,
    draining: bool,
    /// The machine is shared between processes: generations taken by
    /// other processes never arrive here, so a transition is delivered
    /// as it arrives, never held back for a gap.
    gaps: bool,
}

enum Pending {
    Event(Event),
    /// Dispose: clear the listeners once the events before it are out.
    ClearListeners,
}

/// How to stop the running monitor thread.
struct MonitorHandle {
    stop: Arc<AtomicU32>,
    thread: Thread,
}

impl MonitorHandle {
    fn stop(self) {
        self.stop.store(1, Ordering::Release);
        self.thread.unpark();
    }
}

impl CircuitBreaker<MonotonicClock> {
    /// A breaker on the system's monotonic clock, registered as `name`:
    /// the spec's `new CircuitBreaker('databaseConnection', {...})`, found
    /// again with [`get_breaker`](Self::get_breaker).
    ///
    /// The registry rules, the same for every pattern: a name holds one
    /// live instance per pattern type, process-wide; constructing a second
    /// one under a taken name fails with [`Error::NameTaken`] (also with
    /// the same config: two constructions are two instances — use
    /// [`get_or_create`](Self::get_or_create) to share one);
    /// [`dispose`](Self::dispose) frees the name. A registered instance
    /// lives until disposed. [`unregistered`](Self::unregistered) and
    /// [`with_timer`](Self::with_timer) build instances no registry knows.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming the first invalid option (see
    /// [`crate::breaker::CircuitBreaker::new`]); [`Error::NameTaken`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use stockade::prelude::*;
    ///
    /// let breaker = CircuitBreaker::new("databaseConnection", BreakerConfig::DEFAULT.with_failure_threshold(3))?;
    /// let same = CircuitBreaker::get_breaker("databaseConnection");
    /// assert!(Arc::ptr_eq(&breaker, &same));
    /// assert_eq!(same.config().failure_threshold, 3);
    /// assert!(matches!(
    ///     CircuitBreaker::new("databaseConnection", BreakerConfig::DEFAULT),
    ///     Err(Error::NameTaken { .. })
    /// ));
    /// breaker.dispose(); // frees the name
    /// assert!(CircuitBreaker::get("databaseConnection").is_none());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(name: &str, config: BreakerConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<BreakerConfig, Arc<MonotonicClock>> {
        &self.inner.shell
    }

    /// A circuit breaker shared by every process, on every host, that
    /// opens `name` on the same Redis server (feature `redis`; see
    /// [the module docs](crate::redis#the-circuit-breaker) for the
    /// guarantees), registered as `name` like [`new`](Self::new) and of
    /// the same type: it composes, emits events and reports metrics like
    /// a local breaker.
    ///
    /// * **Closed calls cost no round trip**: admission reads this
    ///   process's cached copy of the fleet's state (one load more than a
    ///   local breaker); a success sends nothing; a failure is one script
    ///   call that records it in the fleet's failure window
    ///   ([`RedisOptions::failure_window`](crate::redis::RedisOptions::failure_window)):
    ///   `failure_threshold` failures **in the window**, fleet-wide (not
    ///   consecutive, as locally), open the fleet's breaker, with
    ///   [`quorum`](crate::redis::RedisOptions::quorum) only when that
    ///   many hosts failed in it.
    /// * **A trip anywhere** reaches this process by pub/sub at once, and
    ///   at the latest by the sync every `sync_interval`.
    /// * **Half-open**: at most `half_open_max_probes` probes fleet-wide,
    ///   on leases Redis's clock expires.
    /// * **Manual operations** ([`trip`](Self::trip), [`reset`](Self::reset),
    ///   [`force_open`](Self::force_open), [`disable`](Self::disable)) act
    ///   on the whole fleet (and on this process's local breaker) and
    ///   return the fleet's previous state as this process saw it; when
    ///   Redis cannot be reached they act on the local breaker only and
    ///   return [`Error::Redis`].
    /// * **Events and state**: [`state`](Self::state) and
    ///   `Metrics::state` are the fleet's state as this process last saw
    ///   it; `StateChanged` is emitted for each fleet state change this
    ///   process observes, its `generation` counting those changes here
    ///   (1, 2, 3, …). [`breaker_metrics`](Self::breaker_metrics) is the
    ///   local breaker's, so its `state_changes` does not count these
    ///   events.
    /// * **Dispose** stops this process's use of the fleet's breaker
    ///   (and its background thread); the state in Redis is untouched.
    /// * **When Redis cannot answer**, the options'
    ///   [`Fallback`](crate::redis::Fallback) decides: the local breaker
    ///   (which counts every call of this process all along), admit, or
    ///   refuse with [`Error::Redis`]. Closed calls still cost no round
    ///   trip. `StoreUnavailable` / `StoreRecovered` events mark each
    ///   change, and [`Metrics::fallback_decisions`] counts the calls
    ///   decided under the fallback.
    ///
    /// Construction contacts nothing: Redis need not be up.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config; [`Error::Redis`]
    /// for an invalid option, name or URL, or a config with a
    /// `failure_rate` window (not supported on Redis);
    /// [`Error::NameTaken`]. A config stored in Redis that differs is
    /// [`Error::Redis`]`(`[`ConfigMismatch`](crate::redis::RedisError::ConfigMismatch)`)`
    /// on the first call that meets it (unless the options adopt it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::BreakerConfig;
    /// use stockade::redis::{Fallback, RedisOptions};
    ///
    /// let options = RedisOptions::new("redis://127.0.0.1:6379/0")
    ///     .failure_window(Duration::from_secs(30))
    ///     .fallback(Fallback::Local);
    /// let payments = CircuitBreaker::redis(
    ///     "payments",
    ///     BreakerConfig::DEFAULT.with_failure_threshold(20),
    ///     &options,
    /// )?;
    /// let charged = payments.execute(|| Ok::<_, String>("charged"));
    /// # let _ = charged;
    /// # Ok::<(), Error>(())
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(
        name: &str,
        config: BreakerConfig,
        options: &crate::redis::RedisOptions,
    ) -> Result<Arc<Self>, Error> {
        registry::register(name, || {
            let engine = crate::redis::RedisCircuitBreaker::new(name, config, options)?;
            let core = Machine::new(config)?;
            let fleet = Box::new(Fleet {
                engine: Arc::clone(&engine),
                fallback: options.fallback_value(),
                fallback_decisions: super::events::Counter::default(),
            });
            let breaker = Self::build_with(
                name.into(),
                config,
                MonotonicClock::new(),
                Home::Local(core),
                Some(fleet),
            );
            let weak = Arc::downgrade(&breaker.inner);
            // The log starts where the engine's count of state changes
            // is (its thread may have observed some already); its lock,
            // held across, keeps later ones waiting until it does.
            let mut log = breaker.inner.events.lock();
            let start = engine.on_event(move |event| {
                let Some(inner) = weak.upgrade() else { return };
                match event {
                    crate::redis::FleetEvent::Transition(t) => inner.transitioned(t),
                    crate::redis::FleetEvent::Unavailable(cause) => {
                        inner.publish(EventKind::StoreUnavailable { cause });
                    }
                    crate::redis::FleetEvent::Recovered => inner.publish(EventKind::StoreRecovered),
                }
            });
            if let Some((changes, state)) = start {
                log.generation = changes & (Machine::GENERATIONS - 1);
                log.state = state;
            }
            drop(log);
            Ok(breaker)
        })
    }
}

registered!(
    CircuitBreaker,
    BreakerConfig,
    "circuit breaker",
    get_breaker,
    "CircuitBreaker.getBreaker"
);

#[cfg(feature = "shared-memory")]
impl CircuitBreaker<crate::shared::HostClock> {
    /// A circuit breaker that every process on the host that opens `name`
    /// shares (feature `shared-memory`, Linux; see [`crate::shared`]): a
    /// trip in one worker rejects in all of them on their next call, and
    /// `half_open_max_probes` probes run host-wide. Everything else is as
    /// for a local breaker. Events are this process's own: each process
    /// hears the transitions it made itself, in the order they arrive, and
    /// a `StateChanged`'s `from` is the state last announced in this
    /// process. [`metrics`](Self::metrics) counts this process's calls;
    /// [`breaker_metrics`](Self::breaker_metrics), the machine's own counts
    /// (generation, consecutive failures, failures, rejections, probes,
    /// transitions), is host-wide. Not registered: the registry is per
    /// process.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for an invalid config; [`Error::Shared`]
    /// when the region cannot be opened.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::BreakerConfig;
    /// use stockade::shared::SharedOptions;
    ///
    /// let inventory = CircuitBreaker::shared("inventory", BreakerConfig::DEFAULT, &SharedOptions::new())?;
    /// let stock = inventory.execute(|| Ok::<_, String>(42));
    /// # let _ = stock;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn shared(
        name: &str,
        config: BreakerConfig,
        options: &crate::shared::SharedOptions,
    ) -> Result<Self, Error> {
        let region = crate::shared::Shared::<Machine>::open(name, config, options)?;
        let config = *region.config();
        Ok(Self::build(
            name.into(),
            config,
            crate::shared::HostClock,
            Home::shared(region),
        ))
    }
}

impl<T: Timer + 'static> CircuitBreaker<T> {
    /// A breaker that reads and waits on `timer` (for example an
    /// `Arc<VirtualClock>` in tests), not registered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`CircuitBreaker::new`].
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: BreakerConfig,
        timer: T,
    ) -> Result<Self, Error> {
        let core = Machine::new(config)?;
        Ok(Self::build(name.into(), config, timer, Home::Local(core)))
    }

    fn build(name: Arc<str>, config: BreakerConfig, timer: T, core: Home<Machine>) -> Self {
        Self::build_with(
            name,
            config,
            timer,
            core,
            #[cfg(feature = "redis")]
            None,
        )
    }

    fn build_with(
        name: Arc<str>,
        config: BreakerConfig,
        timer: T,
        core: Home<Machine>,
        #[cfg(feature = "redis")] fleet: Option<Box<Fleet>>,
    ) -> Self {
        let gaps = core.is_shared();
        // A shared machine may have moved on already (read once, here); a
        // new local one is closed, generation 0, and reads no clock.
        let (generation, state) = if gaps {
            (core.metrics(&timer).generation, core.state())
        } else {
            (0, BreakerState::Closed)
        };
        CircuitBreaker {
            inner: Arc::new(Inner {
                core,
                shell: Shell::new(PatternKind::CircuitBreaker, name, config, Arc::new(timer)),
                events: Mutex::new(EventLog {
                    generation,
                    state,
                    early: Vec::new(),
                    pending: VecDeque::new(),
                    draining: false,
                    gaps,
                }),
                manual: Mutex::new(()),
                monitor: Mutex::new(None),
                #[cfg(feature = "redis")]
                fleet,
            }),
        }
    }

    /// The instance's name.
    pub fn name(&self) -> &str {
        self.inner.shell.name()
    }

    /// The config it was created with.
    pub fn config(&self) -> &BreakerConfig {
        self.inner.shell.config()
    }

    /// The timer it reads.
    pub fn timer(&self) -> &T {
        self.inner.shell.timer()
    }

    /// Runs `f` if the circuit admits it, counting `Ok` as a success and
    /// `Err` as a failure.
    ///
    /// A panic in `f` counts as a failure and then continues to unwind.
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with `f`'s own error; [`Error::BreakerOpen`] without
    /// running `f` when the circuit is open (or half-open with every probe
    /// slot taken), with the state and how long until a call may be
    /// admitted; [`Error::Disposed`] after [`dispose`](Self::dispose).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::{BreakerConfig, BreakerState};
    ///
    /// let breaker = CircuitBreaker::new("doc-execute", BreakerConfig::DEFAULT.with_failure_threshold(1))?;
    /// assert_eq!(breaker.execute(|| Ok::<_, &str>(7)).unwrap(), 7);
    /// let failed = breaker.execute(|| Err::<u32, _>("down")).unwrap_err();
    /// assert_eq!(failed.into_inner(), Some("down"));
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// let refused = breaker.execute(|| Ok::<_, &str>(7)).unwrap_err();
    /// assert!(matches!(refused, Error::BreakerOpen { state: BreakerState::Open, .. }));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn execute<R, E>(&self, f: impl FnOnce() -> Result<R, E>) -> Result<R, Error<E>> {
        match self.guarded(f, |result: &Result<R, E>| match result {
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        }) {
            Ok(result) => result.map_err(Error::Inner),
            Err(refused) => Err(refused),
        }
    }

    /// Runs `f` if the circuit admits it; `classify` decides what the
    /// result means for the breaker: [`Outcome::Success`],
    /// [`Outcome::Failure`], or [`Outcome::Ignored`] (counted neither way,
    /// for errors that say nothing about the dependency's health, such as a
    /// "not found"). `classify` may also count an `Ok` as a failure.
    ///
    /// A panic in `f` (or in `classify`) counts as a failure and then
    /// continues to unwind.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::{BreakerConfig, BreakerState, Outcome};
    ///
    /// #[derive(Debug)]
    /// enum DbError { NotFound, Unavailable }
    ///
    /// let breaker = CircuitBreaker::new("doc-classified", BreakerConfig::DEFAULT.with_failure_threshold(1))?;
    /// let classify = |r: &Result<u32, DbError>| match r {
    ///     Ok(_) | Err(DbError::NotFound) => Outcome::Ignored,
    ///     Err(DbError::Unavailable) => Outcome::Failure,
    /// };
    /// let _ = breaker.execute_classified(classify, || Err(DbError::NotFound));
    /// assert_eq!(breaker.state(), BreakerState::Closed);
    /// let _ = breaker.execute_classified(classify, || Err(DbError::Unavailable));
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn execute_classified<R, E>(
        &self,
        classify: impl FnOnce(&Result<R, E>) -> Outcome,
        f: impl FnOnce() -> Result<R, E>,
    ) -> Result<R, Error<E>> {
        match self.guarded(f, classify) {
            Ok(result) => result.map_err(Error::Inner),
            Err(refused) => Err(refused),
        }
    }

    /// A reusable protected function (the spec's `wrap`): each call of the
    /// returned function runs `f` through [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::BreakerConfig;
    ///
    /// let breaker = CircuitBreaker::new("doc-wrap", BreakerConfig::DEFAULT)?;
    /// let parse = breaker.wrap(|s: &str| s.parse::<u32>());
    /// assert_eq!(parse("42").unwrap(), 42);
    /// assert!(parse("x").unwrap_err().into_inner().is_some());
    /// # Ok::<(), Error>(())
    /// ```
    pub fn wrap<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a {
        move |arg: A| self.execute(|| f(arg))
    }

    /// The current state: one atomic load. An open breaker whose
    /// `reset_timeout` has passed reports [`BreakerState::Open`] until the
    /// next call moves it to half-open. A disposed breaker is
    /// [`BreakerState::ForcedOpen`]. For a breaker made by
    /// [`redis`](CircuitBreaker::redis), the fleet's state as this process
    /// last saw it (`Closed` before it first heard from Redis).
    pub fn state(&self) -> BreakerState {
        self.inner.state()
    }

    /// Opens the circuit now; it goes half-open after `reset_timeout` as
    /// usual. Returns the previous state.
    ///
    /// # Errors
    ///
    /// [`Error::Disposed`] after [`dispose`](Self::dispose).
    pub fn trip(&self) -> Result<BreakerState, Error> {
        self.manual(|core, timer| core.trip(timer))
    }

    /// Closes the circuit, from any state (also leaves the forced-open and
    /// disabled modes), with the core's consecutive-failure count and
    /// window cleared (the lifetime counters of [`metrics`](Self::metrics)
    /// stay). Returns the previous state.
    ///
    /// # Errors
    ///
    /// [`Error::Disposed`] after [`dispose`](Self::dispose).
    pub fn reset(&self) -> Result<BreakerState, Error> {
        self.manual(|core, timer| core.reset(timer))
    }

    /// Opens the circuit until [`reset`](Self::reset) (or
    /// [`trip`](Self::trip) or [`disable`](Self::disable)). Returns the
    /// previous state.
    ///
    /// # Errors
    ///
    /// [`Error::Disposed`] after [`dispose`](Self::dispose).
    pub fn force_open(&self) -> Result<BreakerState, Error> {
        self.manual(|core, timer| core.force_open(timer))
    }

    /// Admits every call and lets no outcome change the state until
    /// [`reset`](Self::reset) (or [`trip`](Self::trip) or
    /// [`force_open`](Self::force_open)). Outcomes still count in
    /// [`metrics`](Self::metrics). Returns the previous state.
    ///
    /// # Errors
    ///
    /// [`Error::Disposed`] after [`dispose`](Self::dispose).
    pub fn disable(&self) -> Result<BreakerState, Error> {
        self.manual(|core, timer| core.disable(timer))
    }

    /// A snapshot of the counters, as in the `Monitor` events.
    ///
    /// Every call ends as exactly one of `successes`, `failures` (an error
    /// or result the classification counted as a failure, a panic, or a
    /// success slower than `slow_call_threshold`), `rejections` (refused
    /// while open or half-open), or an ignored outcome (not shown
    /// separately); `calls` is their sum, so a call is counted once it has
    /// finished. Calls still running are not tracked (`in_flight` is 0: the
    /// hot path pays for one counter only). Calls refused because the
    /// breaker was disposed are not counted. Outcomes are counted as the
    /// calls classified them, also when the core ignored a verdict as stale
    /// (see [`breaker_metrics`](Self::breaker_metrics) for the core's view).
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics()
    }

    /// The core state machine's own statistics: generation, consecutive
    /// failures, probes in flight, failure-rate window, slow calls,
    /// transitions, stale verdicts.
    ///
    /// For a breaker made by [`redis`](CircuitBreaker::redis), these are
    /// this process's local breaker's (the fallback's) statistics; the
    /// fleet's state and generation are on
    /// [`redis_breaker`](Self::redis_breaker).
    pub fn breaker_metrics(&self) -> BreakerMetrics {
        self.inner.core.metrics(&**self.inner.shell.timer())
    }

    /// The fleet-wide engine of a breaker made by
    /// [`redis`](CircuitBreaker::redis) (feature `redis`): the fleet's
    /// state, generation and availability as this process sees them.
    /// `None` for a local or host-shared breaker.
    #[cfg(feature = "redis")]
    pub fn redis_breaker(&self) -> Option<&Arc<crate::redis::RedisCircuitBreaker>> {
        self.inner.fleet.as_ref().map(|f| &f.engine)
    }

    /// Calls `listener` for every event: `StateChanged { from, to, generation }`,
    /// `Rejected`, `Disposed`, and `Monitor(metrics)` every
    /// `monitor_interval` while anyone listens (the first listener starts
    /// the monitor thread). A listener that panics is caught and does no
    /// harm.
    ///
    /// Subscribing to a disposed breaker registers nothing that will ever
    /// be called.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use stockade::blocking::{CircuitBreaker, Error, EventKind};
    /// use stockade::breaker::{BreakerConfig, BreakerState};
    ///
    /// let breaker = CircuitBreaker::new("doc-events", BreakerConfig::DEFAULT)?;
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let id = breaker.subscribe(move |event| {
    ///     if let EventKind::StateChanged { from, to, .. } = event.kind {
    ///         log.lock().unwrap().push((from, to));
    ///     }
    /// });
    /// breaker.trip()?;
    /// breaker.reset()?;
    /// assert!(breaker.unsubscribe(id));
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [(BreakerState::Closed, BreakerState::Open), (BreakerState::Open, BreakerState::Closed)]
    /// );
    /// # Ok::<(), Error>(())
    /// ```
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        let inner = &*self.inner;
        let id = {
            // Under the log's lock, so no event is half-delivered to it.
            let _log = inner.events.lock();
            inner.shell.listeners.add(Arc::new(listener))
        };
        self.start_monitor();
        if self.is_disposed() {
            // `dispose` may have cleared the listeners before this one was
            // added: nobody will ever call it.
            inner.shell.listeners.clear();
            inner.stop_monitor();
        }
        id
    }

    /// Removes a listener; `false` if it was not subscribed. Removing the
    /// last one stops the monitor thread.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        let removed = self.inner.shell.listeners.remove(id);
        let mut monitor = self.inner.monitor.lock();
        if !self.inner.shell.listeners.any() {
            if let Some(handle) = monitor.take() {
                handle.stop();
            }
        }
        removed
    }

    /// `true` once [`dispose`](Self::dispose) was called.
    pub fn is_disposed(&self) -> bool {
        self.inner.is_disposed()
    }

    /// Shuts the breaker down: later calls fail with [`Error::Disposed`]
    /// (calls already running finish normally; their outcome is ignored),
    /// manual operations fail with `Disposed`, a `Disposed` event is
    /// emitted, listeners are removed, the monitor thread stops and the
    /// registry forgets the instance. Calling it again does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::BreakerConfig;
    ///
    /// let breaker = CircuitBreaker::new("doc-dispose", BreakerConfig::DEFAULT)?;
    /// breaker.dispose();
    /// assert!(matches!(breaker.execute(|| Ok::<_, ()>(())), Err(Error::Disposed)));
    /// assert!(matches!(breaker.trip(), Err(Error::Disposed)));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn dispose(&self) {
        let inner = &*self.inner;
        {
            let _manual = inner.manual.lock();
            if !inner.shell.begin_dispose() {
                return;
            }
            // From now on the core refuses every call; the rejection path
            // reports `Disposed`. Manual operations, serialised with this
            // by the lock, see the flag and never leave forced-open.
            let forced = inner.core.force_open(&**inner.shell.timer());
            #[cfg(feature = "redis")]
            if let Some(fleet) = &inner.fleet {
                // This process leaves the fleet; the fleet's state stays.
                fleet.engine.stop_background();
            }
            // Taken in order but not announced: the flag is set.
            #[cfg(feature = "redis")]
            let forced = inner.fleet.is_none().then_some(forced);
            #[cfg(not(feature = "redis"))]
            let forced = Some(forced);
            if let Some(forced) = forced {
                inner.transitioned(forced);
            }
        }
        inner.stop_monitor();
        {
            let mut log = inner.events.lock();
            if inner.shell.listeners.wanted() {
                let event = inner.event(EventKind::Disposed);
                log.pending.push_back(Pending::Event(event));
            }
            log.pending.push_back(Pending::ClearListeners);
        }
        inner.drain();
        inner.shell.unregister();
    }

    // --- Permits held across calls ------------------------------------------

    /// Asks the circuit to admit one call and returns its permit as a
    /// guard: the acquire-then-report form of [`execute`](Self::execute),
    /// for work that is not one closure (a binding's `with` block, a call
    /// whose end another task observes). `execute` itself is this
    /// followed by the closure and the guard's verdict, so both count,
    /// emit events and decide exactly alike, for a local, a
    /// [`shared`](CircuitBreaker::shared) and a
    /// [`redis`](CircuitBreaker::redis) breaker.
    ///
    /// Give the guard its verdict with [`success`](BreakerGuard::success),
    /// [`failure`](BreakerGuard::failure), [`ignore`](BreakerGuard::ignore)
    /// or [`report`](BreakerGuard::report); dropping it without one is
    /// `ignore` (also during a panic: unlike `execute`, the guard cannot
    /// tell a panic of the protected work from any other). A success
    /// slower than `slow_call_threshold`, measured from this admission,
    /// counts as a failure.
    ///
    /// A refusal is counted in [`metrics`](Self::metrics) and emits
    /// `Rejected`; an admission that moves the breaker (open to
    /// half-open) emits its `StateChanged` before this returns. For a
    /// Redis-backed breaker, admitting a call of a closed breaker and
    /// reporting a success make no round trip (once this process has heard
    /// from Redis: its first call, and a forked child's, asks); admitting
    /// a probe, and reporting a failure or any probe's verdict (also by
    /// dropping the guard), are one round trip each (bounded by the
    /// options' `command_timeout`). See
    /// [`try_acquire_without_round_trip`](Self::try_acquire_without_round_trip)
    /// and [`BreakerGuard::report_without_round_trip`] for a thread that
    /// must not block.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute) (without `Inner`):
    /// [`Error::BreakerOpen`] with the state and how long until a call may
    /// be admitted; [`Error::Disposed`] after [`dispose`](Self::dispose);
    /// for a Redis-backed breaker [`Error::Redis`] when Redis cannot
    /// decide and the fallback refuses (or the stored config differs).
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::{BreakerConfig, BreakerState};
    ///
    /// let breaker = CircuitBreaker::new("doc-try-acquire", BreakerConfig::DEFAULT.with_failure_threshold(2))?;
    /// let call = breaker.try_acquire()?;
    /// // ... work that is not one closure ...
    /// call.success();
    ///
    /// breaker.try_acquire()?.failure();
    /// drop(breaker.try_acquire()?); // no verdict: ignored
    /// breaker.try_acquire()?.failure(); // the second failure opens it
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// assert!(matches!(breaker.try_acquire(), Err(Error::BreakerOpen { .. })));
    ///
    /// let m = breaker.metrics();
    /// assert_eq!((m.successes, m.failures, m.rejections), (1, 2, 1));
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn try_acquire(&self) -> Result<BreakerGuard<'_, T>, Error> {
        self.admit()
    }

    /// [`try_acquire`](Self::try_acquire) when it can decide without a
    /// round trip to Redis: always `Some` for a local or host-shared
    /// breaker; for a Redis-backed one, `None` when admitting would ask
    /// Redis (nothing heard from it yet, or an open or half-open breaker
    /// whose wait is over: a probe request). `None` takes nothing and is
    /// not a refusal: call `try_acquire` where a round trip may block.
    /// For a thread that must not block (an event loop's); a closed
    /// breaker decides here once this process has heard from Redis.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Self::try_acquire), inside the `Some`.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::BreakerConfig;
    ///
    /// let breaker = CircuitBreaker::new("doc-without-round-trip", BreakerConfig::DEFAULT)?;
    /// let call = match breaker.try_acquire_without_round_trip() {
    ///     Some(decided) => decided?,
    ///     None => breaker.try_acquire()?, // elsewhere, where it may block
    /// };
    /// if let Err(call) = call.report_without_round_trip(stockade::breaker::Outcome::Success) {
    ///     call.success(); // elsewhere, where it may block
    /// }
    /// assert_eq!(breaker.metrics().successes, 1);
    /// # Ok::<(), Error>(())
    /// ```
    #[inline]
    pub fn try_acquire_without_round_trip(&self) -> Option<Result<BreakerGuard<'_, T>, Error>> {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.inner.fleet {
            let inner = &*self.inner;
            return inner
                .admit_fleet(fleet, false)
                .map(|admitted| admitted.map(|held| BreakerGuard { inner, held }));
        }
        Some(self.admit())
    }

    // --- Calls ------------------------------------------------------------

    /// Admits a call: its guard, or the refusal (counted, with an event).
    #[inline]
    fn admit<E>(&self) -> Result<BreakerGuard<'_, T>, Error<E>> {
        let inner = &*self.inner;
        #[cfg(feature = "redis")]
        if let Some(fleet) = &inner.fleet {
            return inner
                .admit_fleet_asking(fleet)
                .map(|held| BreakerGuard { inner, held });
        }
        inner.admit_local().map(|token| BreakerGuard {
            inner,
            held: Held::Local(token),
        })
    }

    /// Admits the call, runs it, reports its classified outcome. `Err` only
    /// for a refusal.
    ///
    /// [`admit`](Self::admit) and the guard's verdict, with the guard
    /// taken apart: the same functions decide and count, but a local
    /// breaker's call keeps only its token across the closure (a whole
    /// guard, with room for a Redis-backed call's state, is copied around
    /// the call on the closed path).
    ///
    /// Whether the call may be traced is decided first, once: a call
    /// nobody traces then runs exactly the untraced code (the check is
    /// one load of `tracing`'s level filter and a branch); a traced one
    /// runs the same steps, out of line, in its span.
    #[inline]
    fn guarded<X, E>(
        &self,
        f: impl FnOnce() -> X,
        classify: impl FnOnce(&X) -> Outcome,
    ) -> Result<X, Error<E>> {
        if ExecSpan::wanted() {
            return self.guarded_traced(f, classify);
        }
        self.guarded_in::<_, _, false>(f, classify)
    }

    /// [`guarded`](Self::guarded) in an execution span: out of line, off
    /// the untraced path.
    #[cold]
    #[inline(never)]
    fn guarded_traced<X, E>(
        &self,
        f: impl FnOnce() -> X,
        classify: impl FnOnce(&X) -> Outcome,
    ) -> Result<X, Error<E>> {
        self.guarded_in::<_, _, true>(f, classify)
    }

    /// [`guarded`](Self::guarded), the call in an execution span if
    /// `TRACED`.
    #[inline(always)]
    fn guarded_in<X, E, const TRACED: bool>(
        &self,
        f: impl FnOnce() -> X,
        classify: impl FnOnce(&X) -> Outcome,
    ) -> Result<X, Error<E>> {
        let inner = &*self.inner;
        #[cfg(feature = "redis")]
        if let Some(fleet) = &inner.fleet {
            // The closed path, inline: the fleet's cached word says closed
            // and the local breaker admits without a clock (closed, no
            // slow-call threshold). A success is the local report and a
            // count, as `finish_fleet` makes it; anything else goes there.
            let closed = match fleet.engine.admit_without_round_trip() {
                Some(Ok(crate::redis::FleetAdmission::Closed { generation })) => Some(generation),
                _ => None,
            };
            if let (Some(generation), Some(permit)) = (
                closed,
                closed.and_then(|_| inner.core.try_acquire_without_clock()),
            ) {
                let token = permit.into_token();
                return Ok(run_then::<_, TRACED>(
                    inner.shell.name_arc(),
                    f,
                    classify,
                    move |outcome| {
                        if outcome == Outcome::Success {
                            let _ = inner.core.report(token, outcome, &**inner.shell.timer());
                            inner.shell.counters.successes.incr();
                        } else {
                            let held = Held::Fleet {
                                local: Some(token),
                                ticket: Ticket::Closed(generation),
                                started: None,
                            };
                            inner.finish_held(held, outcome, true);
                        }
                    },
                ));
            }
            let held = inner.admit_fleet_asking(fleet)?;
            return Ok(run_then::<_, TRACED>(
                inner.shell.name_arc(),
                f,
                classify,
                move |outcome| {
                    inner.finish_held(held, outcome, true);
                },
            ));
        }
        // The closed path without a clock (no slow-call threshold); the
        // general admission otherwise.
        let token = match inner.core.try_acquire_without_clock() {
            Some(permit) => permit.into_token(),
            None => inner.admit_local()?,
        };
        Ok(run_then::<_, TRACED>(
            inner.shell.name_arc(),
            f,
            classify,
            move |outcome| inner.finish(token, outcome),
        ))
    }

    /// Runs a manual operation unless disposed, then reports the change.
    fn manual(&self, op: impl FnOnce(&Machine, &T) -> Transition) -> Result<BreakerState, Error> {
        let inner = &*self.inner;
        #[cfg(feature = "redis")]
        if let Some(fleet) = &inner.fleet {
            let _manual = inner.manual.lock();
            if inner.is_disposed() {
                return Err(Error::Disposed);
            }
            // The local breaker follows (it decides under the fallback);
            // its transition is not announced: the fleet's is.
            let local = op(&inner.core, &**inner.shell.timer());
            return Ok(fleet.engine.set_state(local.to)?);
        }
        let transition = {
            let _manual = inner.manual.lock();
            if inner.is_disposed() {
                return Err(Error::Disposed);
            }
            op(&inner.core, &**inner.shell.timer())
        };
        inner.transitioned(transition);
        Ok(transition.from)
    }

    fn start_monitor(&self) {
        let inner = &*self.inner;
        let mut monitor = inner.monitor.lock();
        if monitor.is_some() || inner.is_disposed() || !inner.shell.listeners.any() {
            return;
        }
        let stop = Arc::new(AtomicU32::new(0));
        let weak = Arc::downgrade(&self.inner);
        let timer = Arc::clone(inner.shell.timer());
        let interval = inner.core.config().monitor_interval;
        // The first deadline is fixed now, so advancing a virtual clock
        // right after `subscribe` is seen by the thread.
        let first = timer.now().saturating_add(interval);
        let thread_stop = Arc::clone(&stop);
        let spawned = thread::Builder::new()
            .name(std::format!(
                "stockade-breaker-monitor:{}",
                inner.shell.name()
            ))
            .spawn(move || monitor_loop(&weak, &*timer, &thread_stop, interval, first));
        // Without a thread there are no `Monitor` events; a later
        // `subscribe` tries again.
        if let Ok(handle) = spawned {
            *monitor = Some(MonitorHandle {
                stop,
                thread: handle.thread().clone(),
            });
        }
    }
}

/// Runs `f`, classifies its result and hands the outcome to `verdict`
/// (also on a panic: a failure, before the panic continues), in an
/// execution span (feature `tracing`) if `TRACED`; without it no span is
/// made or checked (the caller decided, see [`CircuitBreaker::guarded`]).
#[inline(always)]
fn run_then<X, const TRACED: bool>(
    name: &Arc<str>,
    f: impl FnOnce() -> X,
    classify: impl FnOnce(&X) -> Outcome,
    verdict: impl FnOnce(Outcome),
) -> X {
    let span = if TRACED {
        ExecSpan::enter(PatternKind::CircuitBreaker, name)
    } else {
        ExecSpan::none()
    };
    run_then_in(span, f, classify, verdict)
}

/// `span` (the execution's `tracing` span, entered) gets the outcome.
#[inline(always)]
fn run_then_in<X>(
    span: ExecSpan,
    f: impl FnOnce() -> X,
    classify: impl FnOnce(&X) -> Outcome,
    verdict: impl FnOnce(Outcome),
) -> X {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let result = f();
        let outcome = classify(&result);
        (result, outcome)
    }));
    match run {
        Ok((result, outcome)) => {
            span.outcome(match outcome {
                Outcome::Success => "success",
                Outcome::Failure => "failure",
                Outcome::Ignored => "ignored",
            });
            verdict(outcome);
            result
        }
        Err(panic) => {
            span.outcome("failure");
            verdict(Outcome::Failure);
            resume_unwind(panic)
        }
    }
}

/// The monitor thread: emits `Monitor` every `interval` until stopped.
fn monitor_loop<T: Timer>(
    weak: &Weak<Inner<T>>,
    timer: &T,
    stop: &AtomicU32,
    interval: Duration,
    mut next: Timestamp,
) {
    loop {
        if stop.load(Ordering::Acquire) != 0 {
            return;
        }
        let now = timer.now();
        if now < next {
            timer.park_until(next);
            continue;
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        if inner.is_disposed() || stop.load(Ordering::Acquire) != 0 {
            return;
        }
        let metrics = inner.metrics();
        inner.publish(EventKind::Monitor(metrics));
        drop(inner);
        next = now.saturating_add(interval);
    }
}

impl<T: Timer> Inner<T> {
    #[inline]
    fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// A local (or host-shared) breaker's admission: its token (the
    /// transition it performed announced), or the refusal.
    #[inline]
    fn admit_local<E>(&self) -> Result<BreakerToken, Error<E>> {
        let permit = match self.core.try_acquire(&**self.shell.timer()) {
            Ok(permit) => permit,
            Err(rejected) => return Err(self.refused(rejected)),
        };
        if let Some(transition) = permit.transition() {
            self.transitioned(transition);
        }
        Ok(permit.into_token())
    }
    /// [`admit_fleet`](Self::admit_fleet), asking Redis when needed.
    #[cfg(feature = "redis")]
    #[inline]
    fn admit_fleet_asking<E>(&self, fleet: &Fleet) -> Result<Held, Error<E>> {
        // Asking is allowed: always `Some`.
        self.admit_fleet(fleet, true)
            .unwrap_or_else(|| Err(Error::Redis(fleet.engine.unavailable_error())))
    }

    /// A guard's verdict; without `ask`, `false` instead of a round trip
    /// (nothing reported).
    #[inline]
    fn finish_held(&self, held: Held, outcome: Outcome, ask: bool) -> bool {
        match held {
            Held::Local(token) => {
                let _ = ask;
                self.finish(token, outcome);
                true
            }
            #[cfg(feature = "redis")]
            Held::Fleet {
                local,
                ticket,
                started,
            } => match &self.fleet {
                Some(fleet) => self.finish_fleet(fleet, local, ticket, started, outcome, ask),
                None => true,
            },
        }
    }

    /// Gives the core its verdict and counts the outcome. The fast path
    /// (a success the core took without a transition, no slow-call
    /// measurement) is one report and one relaxed increment.
    #[inline]
    fn finish(&self, token: BreakerToken, outcome: Outcome) {
        let reported = self.core.report(token, outcome, &**self.shell.timer());
        if outcome == Outcome::Success && token.started_at().is_none() && reported == Ok(None) {
            self.shell.counters.successes.incr();
        } else {
            self.finish_slow(token, outcome, reported);
        }
    }

    #[cold]
    #[inline(never)]
    fn finish_slow(
        &self,
        token: BreakerToken,
        outcome: Outcome,
        reported: Result<Option<Transition>, crate::breaker::TokenError>,
    ) {
        let counted = match (outcome, token.started_at(), self.core.slow_call_threshold()) {
            (Outcome::Success, Some(start), Some(threshold)) => {
                // Measured again here, after the core measured it: a call
                // within a clock step of the threshold may be counted
                // differently here than in the core's `slow_calls`.
                if self.shell.timer().now().saturating_duration_since(start) > threshold {
                    Outcome::Failure
                } else {
                    Outcome::Success
                }
            }
            _ => outcome,
        };
        match counted {
            Outcome::Success => self.shell.counters.successes.incr(),
            Outcome::Failure => self.shell.counters.failures.incr(),
            Outcome::Ignored => self.shell.counters.ignored.incr(),
        }
        if let Ok(Some(transition)) = reported {
            self.transitioned(transition);
        }
    }

    /// A Redis-backed breaker's admission: the fleet decides (closed: from
    /// the cache, no round trip), the local breaker counts every call and
    /// decides under [`Fallback::Local`](crate::redis::Fallback::Local).
    ///
    /// Without `ask`, `None` instead of a round trip (nothing taken).
    #[cfg(feature = "redis")]
    #[inline(never)]
    fn admit_fleet<E>(&self, fleet: &Fleet, ask: bool) -> Option<Result<Held, Error<E>>> {
        let local = match self.admit_fleet_local() {
            Ok(local) => local,
            Err(disposed) => return Some(Err(disposed)),
        };
        let admission = if ask {
            fleet.engine.admit()
        } else {
            match fleet.engine.admit_without_round_trip() {
                Some(admission) => admission,
                None => {
                    self.release_local(local);
                    return None;
                }
            }
        };
        Some(self.admit_fleet_with(fleet, local, admission))
    }

    /// The local breaker's look at a Redis-backed breaker's call: it sees
    /// every call, so it is warm for the fallback; its own transitions are
    /// not announced (the events are the fleet's). `Err` once disposed.
    #[cfg(feature = "redis")]
    fn admit_fleet_local<E>(&self) -> Result<Result<BreakerToken, BreakerRejected>, Error<E>> {
        let local = self
            .core
            .try_acquire(&**self.shell.timer())
            .map(|p| p.into_token());
        if let Err(rejected) = local {
            if rejected.state() == BreakerState::ForcedOpen && self.is_disposed() {
                return Err(Error::Disposed);
            }
        }
        Ok(local)
    }

    /// Hands the local breaker's token back unused.
    #[cfg(feature = "redis")]
    fn release_local(&self, local: Result<BreakerToken, BreakerRejected>) {
        if let Ok(token) = local {
            let _ = self
                .core
                .report(token, Outcome::Ignored, &**self.shell.timer());
        }
    }

    /// A Redis-backed breaker's admission once the fleet decided.
    #[cfg(feature = "redis")]
    fn admit_fleet_with<E>(
        &self,
        fleet: &Fleet,
        local: Result<BreakerToken, BreakerRejected>,
        admission: Result<crate::redis::FleetAdmission, crate::redis::RedisError>,
    ) -> Result<Held, Error<E>> {
        use crate::redis::{Fallback, FleetAdmission, RedisError};
        let timer = &**self.shell.timer();
        let ticket = match admission {
            Ok(FleetAdmission::Closed { generation }) => Ticket::Closed(generation),
            Ok(FleetAdmission::Probe { generation, lease }) => Ticket::Probe(generation, lease),
            Ok(FleetAdmission::Refused { state, retry_after }) => {
                self.release_local(local);
                return Err(self.fleet_refused(state, retry_after));
            }
            Ok(_) => Ticket::None,
            Err(RedisError::Unavailable { cause, retry_after }) => {
                fleet.fallback_decisions.incr();
                match fleet.fallback {
                    Fallback::FailOpen => Ticket::None,
                    Fallback::FailClosed => {
                        self.release_local(local);
                        return Err(Error::Redis(RedisError::Unavailable { cause, retry_after }));
                    }
                    _ => match local {
                        Ok(_) => Ticket::None,
                        Err(rejected) => return Err(self.refused(rejected)),
                    },
                }
            }
            Err(other) => {
                self.release_local(local);
                return Err(Error::Redis(other));
            }
        };
        Ok(Held::Fleet {
            local: local.ok(),
            ticket,
            started: self.core.slow_call_threshold().map(|_| timer.now()),
        })
    }

    /// A Redis-backed breaker's verdict: counted here, reported to the
    /// local breaker and, when it says something, to the fleet. Out of
    /// line, as [`admit_fleet`](Self::admit_fleet), so that a local
    /// breaker's calls inline small.
    #[cfg(feature = "redis")]
    #[inline(never)]
    ///
    /// Without `ask`, `false` instead of a round trip (nothing reported).
    fn finish_fleet(
        &self,
        fleet: &Fleet,
        local: Option<BreakerToken>,
        ticket: Ticket,
        started: Option<Timestamp>,
        outcome: Outcome,
        ask: bool,
    ) -> bool {
        match self.settle_fleet(local, ticket, started, outcome, ask) {
            Some(owed) => {
                if let Some(report) = owed {
                    report.send(&fleet.engine);
                }
                true
            }
            None => false,
        }
    }

    /// [`finish_fleet`](Self::finish_fleet) but the round trip: the
    /// verdict counted and given to the local breaker, and the report owed
    /// to the fleet, if any. Without `ask`, `None` instead when one is
    /// owed (nothing done).
    #[cfg(feature = "redis")]
    fn settle_fleet(
        &self,
        local: Option<BreakerToken>,
        ticket: Ticket,
        started: Option<Timestamp>,
        outcome: Outcome,
        ask: bool,
    ) -> Option<Option<crate::redis::FleetReport>> {
        use crate::redis::FleetReport;
        let timer = &**self.shell.timer();
        let counted = match (outcome, started, self.core.slow_call_threshold()) {
            (Outcome::Success, Some(start), Some(threshold))
                if timer.now().saturating_duration_since(start) > threshold =>
            {
                Outcome::Failure
            }
            _ => outcome,
        };
        let report = match ticket {
            Ticket::Closed(generation) if counted == Outcome::Failure => {
                Some(FleetReport::Failure(generation))
            }
            Ticket::Probe(generation, lease) => {
                Some(FleetReport::Verdict(generation, lease, counted))
            }
            _ => None,
        };
        if report.is_some() && !ask {
            return None;
        }
        if let Some(token) = local {
            let _ = self.core.report(token, outcome, timer);
        }
        match counted {
            Outcome::Success => self.shell.counters.successes.incr(),
            Outcome::Failure => self.shell.counters.failures.incr(),
            Outcome::Ignored => self.shell.counters.ignored.incr(),
        }
        Some(report)
    }

    /// [`admit_fleet`](Self::admit_fleet) for a task: the fleet's round
    /// trip, when one is needed, on the Redis store's I/O threads. Dropped
    /// while it runs, the local breaker's token is handed back here and a
    /// probe the fleet grants is reported ignored from the I/O thread.
    #[cfg(all(feature = "redis", feature = "async"))]
    async fn admit_fleet_async(&self, fleet: &Fleet) -> Result<Held, Error<Infallible>> {
        /// Hands the local token back unless disarmed.
        struct Owed<'a, T: Timer>(&'a Inner<T>, Option<Result<BreakerToken, BreakerRejected>>);
        impl<T: Timer> Drop for Owed<'_, T> {
            fn drop(&mut self) {
                if let Some(local) = self.1.take() {
                    self.0.release_local(local);
                }
            }
        }
        let local = self.admit_fleet_local()?;
        let mut owed = Owed(self, Some(local));
        let admission = fleet.engine.admit_async().await;
        owed.1 = None;
        self.admit_fleet_with(fleet, local, admission)
    }

    /// A guard's verdict whose report to the fleet (a round trip) the
    /// caller sends: everything else done here. `None` when nothing is
    /// owed.
    #[cfg(all(feature = "redis", feature = "async"))]
    fn finish_deferred(
        &self,
        held: Held,
        outcome: Outcome,
    ) -> Option<(
        &Arc<crate::redis::RedisCircuitBreaker>,
        crate::redis::FleetReport,
    )> {
        match held {
            Held::Local(token) => {
                self.finish(token, outcome);
                None
            }
            Held::Fleet {
                local,
                ticket,
                started,
            } => {
                let fleet = self.fleet.as_ref()?;
                let report = self.settle_fleet(local, ticket, started, outcome, true)??;
                Some((&fleet.engine, report))
            }
        }
    }

    /// A refused call: the error to return (counted, with an event).
    #[cold]
    #[inline(never)]
    fn refused<E>(&self, rejected: BreakerRejected) -> Error<E> {
        if rejected.state() == BreakerState::ForcedOpen && self.is_disposed() {
            return Error::Disposed;
        }
        self.shell.counters.rejections.incr();
        self.publish(EventKind::Rejected {
            retry_after: rejected.retry_after(),
        });
        Error::BreakerOpen {
            state: rejected.state(),
            // Forced open: no time is meaningful; `Error::retry_after`
            // and the message say so.
            retry_after: rejected.retry_after().unwrap_or(Duration::MAX),
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics {
            state: Some(self.state()),
            #[cfg(feature = "redis")]
            fallback_decisions: self
                .fleet
                .as_ref()
                .map_or(0, |f| f.fallback_decisions.get()),
            ..self.shell.counters.metrics()
        }
    }

    /// The state: the local machine's, or the fleet's as cached.
    #[inline]
    fn state(&self) -> BreakerState {
        #[cfg(feature = "redis")]
        if let Some(fleet) = &self.fleet {
            if self.is_disposed() {
                return BreakerState::ForcedOpen;
            }
            return fleet.engine.state();
        }
        self.core.state()
    }

    /// A call the fleet refused: the error to return (counted, with an
    /// event).
    #[cfg(feature = "redis")]
    #[cold]
    #[inline(never)]
    fn fleet_refused<E>(&self, state: BreakerState, retry_after: Option<Duration>) -> Error<E> {
        self.shell.counters.rejections.incr();
        self.publish(EventKind::Rejected { retry_after });
        Error::BreakerOpen {
            state,
            retry_after: retry_after.unwrap_or(Duration::MAX),
        }
    }

    fn event(&self, kind: EventKind) -> Event {
        self.shell.event(kind)
    }

    /// Queues an event (if anyone listens) and delivers the queue.
    fn publish(&self, kind: EventKind) {
        if !self.shell.listeners.wanted() {
            return;
        }
        {
            let mut log = self.events.lock();
            if self.is_disposed() {
                return;
            }
            let event = self.event(kind);
            log.pending.push_back(Pending::Event(event));
        }
        self.drain();
    }

    /// Takes a transition the core returned to one of this breaker's
    /// calls, in generation order, and queues a `StateChanged` event for
    /// each state change (while anyone listens and until disposed).
    #[cold]
    #[inline(never)]
    fn transitioned(&self, transition: Transition) {
        /// Generations ahead of the last one taken (wrapping); `0` or
        /// more than half the space means "not ahead".
        fn ahead(of: u32, g: u32) -> u32 {
            g.wrapping_sub(of) & (Machine::GENERATIONS - 1)
        }
        /// A thread that performed a transition and has not handed it over
        /// yet (it was preempted right after the core call) holds back the
        /// later ones. Every transition is handed over (nothing between
        /// the core call and this function can fail), so this is a bound
        /// on memory against a thread stopped for good (a debugger), not
        /// a timeout: past this many, stop waiting for it (its transition,
        /// when it comes, is dropped as old, and the next event's `from`
        /// is the last state announced).
        const MAX_EARLY: usize = if Machine::GENERATIONS / 4 < 4096 {
            (Machine::GENERATIONS / 4) as usize
        } else {
            4096
        };
        let queued = {
            let mut log = self.events.lock();
            let a = ahead(log.generation, transition.generation);
            if a == 0 || a > Machine::GENERATIONS / 2 {
                return; // older than one already taken: stopped waiting
            }
            log.early.push(transition);
            let mut queued = false;
            loop {
                let next = log.generation.wrapping_add(1) & (Machine::GENERATIONS - 1);
                let found = match log.early.iter().position(|t| t.generation == next) {
                    Some(i) => Some(i),
                    // Shared: the gap is another process's transitions.
                    None if log.gaps && !log.early.is_empty() => {
                        let from = log.generation;
                        (0..log.early.len()).min_by_key(|&i| ahead(from, log.early[i].generation))
                    }
                    None if log.early.len() > MAX_EARLY => {
                        // Skip the gap: take the earliest that arrived.
                        let from = log.generation;
                        (0..log.early.len()).min_by_key(|&i| ahead(from, log.early[i].generation))
                    }
                    None => None,
                };
                let Some(i) = found else { break };
                let t = log.early.swap_remove(i);
                let from = log.state;
                log.generation = t.generation;
                log.state = t.to;
                // `from` is `t.from` unless a gap was skipped.
                if from != t.to && self.shell.listeners.wanted() && !self.is_disposed() {
                    let event = self.event(EventKind::StateChanged {
                        from,
                        to: t.to,
                        generation: t.generation,
                    });
                    log.pending.push_back(Pending::Event(event));
                    queued = true;
                }
            }
            queued
        };
        if queued {
            self.drain();
        }
    }

    /// Delivers queued events in order, unless another thread (or this
    /// one, from inside a listener) is delivering them already.
    fn drain(&self) {
        {
            let mut log = self.events.lock();
            if log.draining {
                return;
            }
            log.draining = true;
        }
        // Listener panics are caught by `Listeners`; this guard only keeps
        // the queue usable should anything else unwind.
        struct Draining<'a>(&'a Mutex<EventLog>);
        impl Drop for Draining<'_> {
            fn drop(&mut self) {
                self.0.lock().draining = false;
            }
        }
        let guard = Draining(&self.events);
        loop {
            let next = {
                let mut log = self.events.lock();
                match log.pending.pop_front() {
                    Some(next) => next,
                    None => {
                        log.draining = false;
                        core::mem::forget(guard);
                        return;
                    }
                }
            };
            match next {
                Pending::Event(event) => self.shell.listeners.emit(|| event),
                Pending::ClearListeners => self.shell.listeners.clear(),
            }
        }
    }

    fn stop_monitor(&self) {
        if let Some(handle) = self.monitor.lock().take() {
            handle.stop();
        }
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        // Wake the monitor thread: it finds the breaker gone and exits.
        if let Some(handle) = self.monitor.get_mut().take() {
            handle.stop();
        }
    }
}

/// What an admitted call holds until its verdict.
#[derive(Clone, Copy, Debug)]
enum Held {
    /// The local (or host-shared) machine's token.
    Local(BreakerToken),
    /// A Redis-backed breaker's call: the local breaker's token (`None`
    /// when only the fleet admitted it), what the fleet is owed, and the
    /// start when there is a slow-call threshold.
    #[cfg(feature = "redis")]
    Fleet {
        local: Option<BreakerToken>,
        ticket: Ticket,
        started: Option<Timestamp>,
    },
}

/// One call admitted by a blocking [`CircuitBreaker`], from
/// [`try_acquire`](CircuitBreaker::try_acquire): the breaker's permit,
/// held until the call's verdict.
///
/// Give it a verdict with [`success`](Self::success),
/// [`failure`](Self::failure), [`ignore`](Self::ignore) or
/// [`report`](Self::report) (each consumes it). Dropping it without one
/// is [`ignore`](Self::ignore), as for the core's
/// [`BreakerPermit`](crate::breaker::BreakerPermit): nothing changes in
/// the breaker's state and a half-open probe slot is freed (for a
/// Redis-backed breaker's probe, with a round trip that frees its lease:
/// see [`report_without_round_trip`](Self::report_without_round_trip)).
/// [`into_token`](Self::into_token) turns it into plain data for bindings
/// that cannot hold a borrow; [`from_token`](Self::from_token) re-attaches
/// it.
///
/// A guard given its verdict after the breaker changed state (another
/// call's verdict, a manual operation, [`dispose`](CircuitBreaker::dispose))
/// is counted in [`metrics`](CircuitBreaker::metrics) as given, and the
/// state machine ignores it as stale, exactly as for
/// [`execute`](CircuitBreaker::execute).
#[must_use = "give the call a verdict: success, failure or ignore (dropping it ignores it)"]
pub struct BreakerGuard<'a, T: Timer = MonotonicClock> {
    inner: &'a Inner<T>,
    held: Held,
}

/// A [`BreakerGuard`] as plain data (`Copy`, `Send`), from
/// [`BreakerGuard::into_token`], for a binding that keeps an admitted call
/// where a borrow of the breaker cannot live (a Python `with` block).
/// Re-attach it with [`BreakerGuard::from_token`] to give its verdict.
///
/// * **Never reported**: as a dropped guard, minus the release: nothing is
///   counted; a half-open probe's slot stays taken until its round ends
///   (`half_open_timeout`; for a Redis-backed breaker, its lease expires),
///   and a new round follows, so the breaker is never wedged.
/// * **Reported twice**, or to another breaker: the second verdict counts
///   in that breaker's [`metrics`](CircuitBreaker::metrics) again, and its
///   state machine takes it as the core takes a
///   [`BreakerToken`] reported twice (see
///   [`crate::breaker::CircuitBreaker::report`]: stale once the generation
///   moved on; in the closed state indistinguishable from another call's
///   verdict). Report each token once, to the breaker that issued it.
#[derive(Clone, Copy, Debug)]
pub struct BreakerGuardToken {
    held: Held,
}

impl<'a, T: Timer> BreakerGuard<'a, T> {
    /// Re-attaches a token from [`into_token`](Self::into_token) to the
    /// breaker that issued it; see [`BreakerGuardToken`] for the rules.
    ///
    /// # Examples
    ///
    /// ```
    /// use stockade::blocking::{BreakerGuard, CircuitBreaker, Error};
    /// use stockade::breaker::{BreakerConfig, BreakerState};
    ///
    /// let breaker = CircuitBreaker::new("doc-guard-token", BreakerConfig::DEFAULT.with_failure_threshold(1))?;
    /// let token = breaker.try_acquire()?.into_token(); // e.g. kept by a binding
    /// BreakerGuard::from_token(&breaker, token).failure();
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_token(breaker: &'a CircuitBreaker<T>, token: BreakerGuardToken) -> Self {
        BreakerGuard {
            inner: &breaker.inner,
            held: token.held,
        }
    }

    /// The call succeeded (a failure if slower than `slow_call_threshold`).
    #[inline]
    pub fn success(self) {
        self.report(Outcome::Success);
    }

    /// The call failed. For a Redis-backed breaker, one round trip
    /// records it in the fleet's failure window.
    #[inline]
    pub fn failure(self) {
        self.report(Outcome::Failure);
    }

    /// The call does not count (counted as ignored in
    /// [`metrics`](CircuitBreaker::metrics)); frees a half-open probe
    /// slot. What dropping the guard does.
    #[inline]
    pub fn ignore(self) {
        self.report(Outcome::Ignored);
    }

    /// Gives the call the verdict `outcome`, as decided by a
    /// classification (see [`CircuitBreaker::execute_classified`]).
    #[inline]
    pub fn report(self, outcome: Outcome) {
        let this = ManuallyDrop::new(self);
        this.inner.finish_held(this.held, outcome, true);
    }

    /// [`report`](Self::report) if the verdict needs no round trip: `Ok`
    /// once given; the guard back, with nothing reported, if it would
    /// need one (only for a Redis-backed breaker: a failure of a closed
    /// call, including a success slower than `slow_call_threshold`, and
    /// any verdict on a half-open probe). For a thread that must not
    /// block (an event loop's): give the returned guard its verdict
    /// elsewhere.
    ///
    /// # Errors
    ///
    /// The guard itself, when its verdict would need a round trip.
    #[inline]
    pub fn report_without_round_trip(self, outcome: Outcome) -> Result<(), Self> {
        if self.inner.finish_held(self.held, outcome, false) {
            core::mem::forget(self);
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Gives up the guard without a verdict: the caller now owes one
    /// through [`from_token`](Self::from_token).
    pub fn into_token(self) -> BreakerGuardToken {
        let this = ManuallyDrop::new(self);
        BreakerGuardToken { held: this.held }
    }
}

impl<T: Timer> Drop for BreakerGuard<'_, T> {
    fn drop(&mut self) {
        self.inner.finish_held(self.held, Outcome::Ignored, true);
    }
}

impl<T: Timer> fmt::Debug for BreakerGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerGuard")
            .field("breaker", &self.inner.shell.name())
            .finish_non_exhaustive()
    }
}

impl<T: Timer + 'static> Policy for CircuitBreaker<T> {
    /// Runs `call` if the circuit admits it. `Ok` counts as a success;
    /// [`Error::Inner`], [`Error::TimedOut`] and
    /// [`Error::RetriesExhausted`] count as failures; refusals by policies
    /// nested inside the breaker ([`Error::is_rejection`]) and
    /// [`Error::Disposed`] are ignored: the dependency was never called.
    #[inline]
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        match self.guarded(&mut call, |result: &Result<R, Error<E>>| match result {
            Ok(_) => Outcome::Success,
            Err(e) if e.is_rejection() || matches!(e, Error::Disposed) => Outcome::Ignored,
            Err(_) => Outcome::Failure,
        }) {
            Ok(result) => result,
            Err(refused) => Err(refused),
        }
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
impl<T: Timer + 'static> CircuitBreaker<T> {
    /// Awaits `call` if the circuit admits it, counting `Ok` as a success
    /// and `Err` as a failure: [`execute`](Self::execute) for a future, on
    /// the same breaker (state, events and metrics shared with blocking
    /// callers). The admission and the verdict decide without waiting;
    /// the permit is held across the await.
    ///
    /// **Dropping the returned future** before `call` finished gives the
    /// call no verdict: it is ignored (as a dropped [`BreakerGuard`]):
    /// nothing is counted and a half-open probe's slot is freed at once,
    /// so a cancelled probe never holds the breaker half-open. A panic
    /// while polling `call` counts as a failure and continues.
    ///
    /// A breaker made by [`redis`](Self::redis) decides as its blocking
    /// calls do, and never blocks the thread that polls: a closed call and
    /// its success make no round trip (once this process has heard from
    /// Redis); a probe request (and the first call, before anything was
    /// heard), a failure's report and a probe's verdict are one round trip
    /// each, run on one of the Redis store's I/O threads (at most the
    /// options' `max_connections` per server and settings, started on
    /// demand, each exiting after 60 s idle; calls beyond them wait their
    /// turn in FIFO order, a wait not bounded by `command_timeout`) while
    /// the task awaits it. A report is awaited: the future completes once
    /// the fleet has it (a trip is visible to this process's next call, as
    /// in the blocking form). **Dropped while a round trip is in flight**,
    /// the future does not stop it: a probe granted to the dropped
    /// admission is reported ignored from the I/O thread (freeing its
    /// lease at once) and the local breaker's permit is handed back; a
    /// report goes on. A probe dropped while its call runs is reported
    /// ignored from an I/O thread too (not awaited). Should the OS refuse
    /// to start any I/O thread, these round trips run on the thread that
    /// polls (or drops), as in the blocking form.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use stockade::blocking::{CircuitBreaker, Error};
    /// use stockade::breaker::{BreakerConfig, BreakerState};
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # runtime.block_on(async {
    /// let breaker = CircuitBreaker::new("doc-execute-async", BreakerConfig::DEFAULT.with_failure_threshold(1))?;
    /// assert_eq!(breaker.execute_async(async { Ok::<_, &str>(7) }).await.unwrap(), 7);
    /// let failed = breaker.execute_async(async { Err::<u32, _>("down") }).await;
    /// assert_eq!(failed.unwrap_err().into_inner(), Some("down"));
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// // The same breaker refuses blocking callers too.
    /// assert!(matches!(breaker.execute(|| Ok::<_, &str>(7)), Err(Error::BreakerOpen { .. })));
    /// # Ok::<(), Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    #[inline]
    pub fn execute_async<R, E, F>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
    where
        F: Future<Output = Result<R, E>>,
    {
        super::hooks::Traced::new(
            PatternKind::CircuitBreaker,
            self.name(),
            Flat {
                guarded: self.guarded_async(call, |result: &Result<R, E>| match result {
                    Ok(_) => Outcome::Success,
                    Err(_) => Outcome::Failure,
                }),
            },
        )
    }

    /// [`execute_classified`](Self::execute_classified) for a future:
    /// `classify` decides what `call`'s result means for the breaker. As
    /// [`execute_async`](Self::execute_async) for cancellation.
    ///
    /// # Errors
    ///
    /// As [`execute`](Self::execute).
    #[inline]
    pub fn execute_classified_async<R, E, F>(
        &self,
        classify: impl FnOnce(&Result<R, E>) -> Outcome,
        call: F,
    ) -> impl Future<Output = Result<R, Error<E>>>
    where
        F: Future<Output = Result<R, E>>,
    {
        super::hooks::Traced::new(
            PatternKind::CircuitBreaker,
            self.name(),
            Flat {
                guarded: self.guarded_async(call, classify),
            },
        )
    }

    /// The future that admits the call at its first poll, awaits it and
    /// reports its classified outcome; `Err` only for a refusal. The async
    /// twin of `guarded`, written by hand (no generator): the closed path
    /// without a clock, the verdict owed across the await.
    #[inline]
    fn guarded_async<X, E, F, C>(&self, call: F, classify: C) -> Guarded<'_, T, F, C, E>
    where
        F: Future<Output = X>,
        C: FnOnce(&X) -> Outcome,
    {
        Guarded {
            call,
            inner: &self.inner,
            stage: Stage::Start,
            classify: Some(classify),
            fleet: Default::default(),
            error: core::marker::PhantomData,
        }
    }
}

/// A Redis-backed breaker's round trip in flight for a [`Guarded`] call.
#[cfg(all(feature = "async", feature = "redis"))]
enum FleetTrip<'a, O> {
    /// The admission, waiting for the fleet.
    Admitting(super::async_call::Wait<'a, Result<Held, Error<Infallible>>>),
    /// The report, and the call's output held back until it lands.
    Settling(super::async_call::Wait<'a, ()>, O),
}

/// A [`Guarded`] call's fleet round trip in flight (feature `redis`).
#[cfg(all(feature = "async", feature = "redis"))]
type FleetWait<'a, O> = Option<std::boxed::Box<FleetTrip<'a, O>>>;

/// Without feature `redis` there is no fleet: nothing to hold.
#[cfg(all(feature = "async", not(feature = "redis")))]
type FleetWait<'a, O> = core::marker::PhantomData<fn() -> (&'a (), O)>;

/// Where a [`Guarded`] call is.
#[cfg(feature = "async")]
#[derive(Clone, Copy)]
enum Stage {
    /// Not admitted yet (admission is at the first poll).
    Start,
    /// Admitted: the verdict is owed.
    Running(Held),
    /// Refused or reported.
    Done,
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// An async call through a breaker: admitted at its first poll,
    /// reported when `call` is ready. Dropped while running (cancelled, or
    /// a panic unwinds) it owes its verdict: `Ignored`, or `Failure` while
    /// panicking.
    struct Guarded<'a, T: Timer, F: Future, C, E> {
        #[pin]
        call: F,
        inner: &'a Inner<T>,
        stage: Stage,
        classify: Option<C>,
        // A Redis-backed breaker's round trip in flight on the store's I/O
        // threads: its admission, or its report with the call's output
        // held back until it lands (boxed, and nothing at all without
        // feature `redis`: the local path's future stays small).
        fleet: FleetWait<'a, F::Output>,
        error: core::marker::PhantomData<fn() -> E>,
    }
    impl<'a, T: Timer, F: Future, C, E> PinnedDrop for Guarded<'a, T, F, C, E> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Stage::Running(held) = *this.stage {
                abandoned(this.inner, held);
            }
        }
    }
}

/// An admitted async call dropped before its verdict: `Ignored`, or
/// `Failure` while panicking. Out of line: the healthy path never runs it.
#[cfg(feature = "async")]
#[cold]
#[inline(never)]
fn abandoned<T: Timer>(inner: &Inner<T>, held: Held) {
    let outcome = if std::thread::panicking() {
        Outcome::Failure
    } else {
        Outcome::Ignored
    };
    #[cfg(feature = "redis")]
    if !inner.finish_held(held, outcome, false) {
        // Not awaited: the fleet's report goes from an I/O thread.
        if let Some((engine, report)) = inner.finish_deferred(held, outcome) {
            engine.report_off_thread(report);
        }
    }
    #[cfg(not(feature = "redis"))]
    inner.finish_held(held, outcome, true);
}

#[cfg(feature = "async")]
impl<'a, T: Timer, F: Future, C: FnOnce(&F::Output) -> Outcome, E> Future
    for Guarded<'a, T, F, C, E>
{
    type Output = Result<F::Output, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let inner: &'a Inner<T> = this.inner;
        #[cfg(feature = "redis")]
        if this.fleet.is_some() {
            if let Some(ready) = poll_fleet(this.fleet, this.stage, cx) {
                return ready;
            }
        }
        let held = match *this.stage {
            Stage::Running(held) => held,
            Stage::Start => {
                let admitted = match admit_held(inner) {
                    Some(admitted) => admitted,
                    #[cfg(feature = "redis")]
                    None => match inner.fleet.as_ref() {
                        Some(fleet) => {
                            let mut admitting: super::async_call::Wait<'a, _> =
                                std::boxed::Box::pin(inner.admit_fleet_async(fleet));
                            match admitting.as_mut().poll(cx) {
                                Poll::Ready(admitted) => admitted.map_err(retype),
                                Poll::Pending => {
                                    *this.fleet =
                                        Some(std::boxed::Box::new(FleetTrip::Admitting(admitting)));
                                    return Poll::Pending;
                                }
                            }
                        }
                        None => Err(Error::Disposed),
                    },
                    #[cfg(not(feature = "redis"))]
                    None => Err(Error::Disposed),
                };
                match admitted {
                    Ok(held) => {
                        *this.stage = Stage::Running(held);
                        held
                    }
                    Err(refused) => {
                        *this.stage = Stage::Done;
                        return Poll::Ready(Err(refused));
                    }
                }
            }
            Stage::Done => panic!("a breaker's async call polled after it completed"),
        };
        // A panic in `call` reports a failure as it unwinds (as a panic in
        // a blocking call does), not later when the future is dropped.
        let unwinding = Unwinding {
            inner,
            held,
            stage: &mut *this.stage,
        };
        let polled = this.call.poll(cx);
        core::mem::forget(unwinding);
        let result = core::task::ready!(polled);
        *this.stage = Stage::Done;
        let outcome = match this.classify.take() {
            Some(classify) => classify(&result),
            None => Outcome::Ignored,
        };
        match held {
            Held::Local(token) => inner.finish(token, outcome),
            #[cfg(feature = "redis")]
            held => {
                if !inner.finish_held(held, outcome, false) {
                    // The fleet's report: a round trip on an I/O thread,
                    // awaited (as the blocking call waits for it).
                    if let Some((engine, report)) = inner.finish_deferred(held, outcome) {
                        let mut settling: super::async_call::Wait<'a, ()> =
                            std::boxed::Box::pin(engine.report_async(report));
                        if settling.as_mut().poll(cx).is_pending() {
                            *this.fleet =
                                Some(std::boxed::Box::new(FleetTrip::Settling(settling, result)));
                            return Poll::Pending;
                        }
                    }
                }
            }
        }
        Poll::Ready(Ok(result))
    }
}

/// A Redis-backed breaker's async call between polls: an admission
/// waiting for the fleet, or a report in flight. `Some` when this poll
/// ends here; `None` when the call is admitted and must be polled.
#[cfg(all(feature = "redis", feature = "async"))]
#[cold]
#[inline(never)]
fn poll_fleet<O, E>(
    fleet: &mut FleetWait<'_, O>,
    stage: &mut Stage,
    cx: &mut core::task::Context<'_>,
) -> Option<Poll<Result<O, Error<E>>>> {
    let admitted = match fleet.as_deref_mut()? {
        FleetTrip::Settling(report, _) => {
            if report.as_mut().poll(cx).is_pending() {
                return Some(Poll::Pending);
            }
            return match fleet.take().map(|f| *f) {
                Some(FleetTrip::Settling(_, out)) => Some(Poll::Ready(Ok(out))),
                _ => None,
            };
        }
        FleetTrip::Admitting(wait) => match wait.as_mut().poll(cx) {
            Poll::Pending => return Some(Poll::Pending),
            Poll::Ready(admitted) => admitted,
        },
    };
    *fleet = None;
    match admitted {
        Ok(held) => {
            *stage = Stage::Running(held);
            None
        }
        Err(refused) => {
            *stage = Stage::Done;
            Some(Poll::Ready(Err(retype(refused))))
        }
    }
}

/// A refusal (which holds no call error) as the call's error type.
#[cfg(all(feature = "redis", feature = "async"))]
fn retype<E>(refused: Error<Infallible>) -> Error<E> {
    refused.map_inner(|never| match never {})
}

/// Reports a failure if a panic unwinds out of an async call's poll
/// (forgotten when the poll returns).
#[cfg(feature = "async")]
struct Unwinding<'s, 'a, T: Timer> {
    inner: &'a Inner<T>,
    held: Held,
    stage: &'s mut Stage,
}

#[cfg(feature = "async")]
impl<T: Timer> Drop for Unwinding<'_, '_, T> {
    fn drop(&mut self) {
        *self.stage = Stage::Done;
        abandoned(self.inner, self.held);
    }
}

/// A breaker's admission for an async call: the closed path without a
/// clock, the general (or fleet's, when it needs no round trip) admission
/// otherwise; `None` when the fleet must be asked.
#[cfg(feature = "async")]
#[inline]
fn admit_held<T: Timer, E>(inner: &Inner<T>) -> Option<Result<Held, Error<E>>> {
    #[cfg(feature = "redis")]
    if let Some(fleet) = &inner.fleet {
        // `None`: the fleet must be asked (a round trip, awaited).
        return inner.admit_fleet(fleet, false);
    }
    Some(match inner.core.try_acquire_without_clock() {
        Some(permit) => Ok(Held::Local(permit.into_token())),
        None => inner.admit_local().map(Held::Local),
    })
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A [`Guarded`] call whose own result is itself a `Result`: the
    /// call's error lifted into [`Error::Inner`].
    struct Flat<G> {
        #[pin]
        guarded: G,
    }
}

#[cfg(feature = "async")]
impl<G, R, E> Future for Flat<G>
where
    G: Future<Output = Result<Result<R, E>, Error<E>>>,
{
    type Output = Result<R, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        match core::task::ready!(self.project().guarded.poll(cx)) {
            Ok(result) => Poll::Ready(result.map_err(Error::Inner)),
            Err(refused) => Poll::Ready(Err(refused)),
        }
    }
}

/// How a breaker classifies a call whose error is already an [`Error`]
/// (a policy inside a pipeline or a layer): a refusal or a dispose inside
/// is not the call's failure.
#[cfg(feature = "async")]
fn classify_kept<R, E>(result: &Result<R, Error<E>>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(e) if e.is_rejection() || matches!(e, Error::Disposed) => Outcome::Ignored,
        Err(_) => Outcome::Failure,
    }
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A [`Guarded`] call whose error is already an [`Error`], classified
    /// by [`classify_kept`]: the async policy's and the tower layer's
    /// future, nameable (the classifier is a function pointer).
    pub(crate) struct KeptCall<'a, T: Timer, F: Future, R, E> {
        #[pin]
        guarded: Guarded<'a, T, F, fn(&Result<R, Error<E>>) -> Outcome, E>,
    }
}

#[cfg(feature = "async")]
impl<T: Timer, F, R, E> Future for KeptCall<'_, T, F, R, E>
where
    F: Future<Output = Result<R, Error<E>>>,
{
    type Output = Result<R, Error<E>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        match core::task::ready!(self.project().guarded.poll(cx)) {
            Ok(result) => Poll::Ready(result),
            Err(refused) => Poll::Ready(Err(refused)),
        }
    }
}

#[cfg(feature = "async")]
impl<T: Timer + 'static> CircuitBreaker<T> {
    /// Awaits `call`, whose error is already an [`Error`], if the circuit
    /// admits it (see [`KeptCall`]).
    #[inline]
    pub(crate) fn run_kept_async<F, R, E>(
        &self,
        call: F,
    ) -> super::hooks::Traced<'_, KeptCall<'_, T, F, R, E>>
    where
        F: Future<Output = Result<R, Error<E>>>,
    {
        super::hooks::Traced::new(
            PatternKind::CircuitBreaker,
            self.name(),
            KeptCall {
                guarded: self.guarded_async(
                    call,
                    classify_kept::<R, E> as fn(&Result<R, Error<E>>) -> Outcome,
                ),
            },
        )
    }
}

#[cfg(feature = "async")]
impl<T: Timer + 'static> super::AsyncPolicy for CircuitBreaker<T> {
    /// Awaits `call` if the circuit admits it, classifying as
    /// [`Policy::run`] does; a dropped future is ignored (see
    /// [`execute_async`](CircuitBreaker::execute_async)).
    #[inline]
    fn run_async<R, E, F, Fut>(&self, call: F) -> impl Future<Output = Result<R, Error<E>>>
    where
        E: core::fmt::Display,
        F: Fn() -> Fut + Clone,
        Fut: Future<Output = Result<R, Error<E>>>,
    {
        self.run_kept_async(call())
    }
}

impl<T: Timer> fmt::Debug for CircuitBreaker<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.shell.debug(f, "CircuitBreaker", |s| {
            s.field("state", &self.inner.state());
        })
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::blocking::VirtualClock;
    use std::thread;

    #[track_caller]
    fn wait_for(mut done: impl FnMut() -> bool) {
        for _ in 0..50_000_000u64 {
            if done() {
                return;
            }
            thread::yield_now();
        }
        panic!("condition never became true");
    }

    #[test]
    fn the_monitor_thread_holds_a_weak_reference_and_exits() {
        let clock = Arc::new(VirtualClock::new());
        let b =
            CircuitBreaker::with_timer("unit-monitor", BreakerConfig::DEFAULT, Arc::clone(&clock))
                .unwrap();
        assert_eq!(Arc::weak_count(&b.inner), 0);
        let id = b.subscribe(|_| {});
        assert_eq!(
            (Arc::strong_count(&b.inner), Arc::weak_count(&b.inner)),
            (1, 1)
        );
        wait_for(|| clock.waiting() == 1);
        assert!(b.unsubscribe(id));
        // The thread dropped its `Weak` on the way out.
        wait_for(|| Arc::weak_count(&b.inner) == 0);
        assert!(b.inner.monitor.lock().is_none());

        // Two listeners, one thread; dispose stops it.
        b.subscribe(|_| {});
        b.subscribe(|_| {});
        assert_eq!(Arc::weak_count(&b.inner), 1);
        b.dispose();
        wait_for(|| Arc::weak_count(&b.inner) == 0);
        assert_eq!(clock.waiting(), 0);
    }
}
