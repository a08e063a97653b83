//! The timeout pattern for threads: [`Timeout`], the thread's
//! [current deadline](current_deadline), and the bounded worker pool behind
//! [`Timeout::execute_detached`].

use core::any::Any;
use core::cell::Cell;
use core::fmt;
use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::boxed::Box;
use std::panic::catch_unwind;
use std::string::String;
use std::sync::Arc;
use std::thread::{self, Thread};
use std::vec::Vec;

use parking_lot::Mutex;

use super::events::{Counter, Listeners};
use super::registry::{self, Registered};
use super::wait::{DisposeFlag, WaitList};
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::clock::{MonotonicClock, Timestamp};
use crate::deadline::{Deadline, TimeoutConfig};
use crate::sync::{AtomicU64, Ordering};

std::thread_local! {
    static CURRENT_DEADLINE: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// The deadline the calling thread is working under, if any: the earliest
/// deadline of the [`Timeout`]s (and [`with_deadline`] scopes) it is running
/// inside.
///
/// Code deep in a call stack can honour it without being handed it — a
/// [`Retry`](super::Retry) never sleeps past it, a loop can stop early.
/// The deadline is a timestamp of the clock of the `Timeout` that set it:
/// compare it against the same clock.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Error, Timeout, current_deadline};
/// use stockade::deadline::TimeoutConfig;
///
/// assert_eq!(current_deadline(), None);
/// let timeout = Timeout::new("query", TimeoutConfig::new(Duration::from_secs(5))?)?;
/// let seen = timeout.execute(|deadline| Ok::<_, Error>(current_deadline() == Some(deadline)))?;
/// assert!(seen);
/// assert_eq!(current_deadline(), None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current_deadline() -> Option<Deadline> {
    CURRENT_DEADLINE.with(Cell::get)
}

/// Runs `f` with `deadline` as the thread's [current
/// deadline](current_deadline) — or the current one, if that is earlier —
/// and restores the previous one afterwards (also when `f` panics).
///
/// For deadlines that come from elsewhere (a request's own timeout, a
/// caller's budget); [`Timeout::execute`] sets it by itself.
///
/// # Examples
///
/// ```
/// use stockade::blocking::{current_deadline, with_deadline};
/// use stockade::clock::Timestamp;
/// use stockade::deadline::Deadline;
///
/// let outer = Deadline::at(Timestamp::from_nanos(5));
/// let inner = Deadline::at(Timestamp::from_nanos(9));
/// with_deadline(outer, || {
///     // Nested scopes keep the earlier deadline.
///     with_deadline(inner, || assert_eq!(current_deadline(), Some(outer)));
/// });
/// assert_eq!(current_deadline(), None);
/// ```
pub fn with_deadline<R>(deadline: Deadline, f: impl FnOnce() -> R) -> R {
    let effective = match current_deadline() {
        Some(current) => current.min(deadline),
        None => deadline,
    };
    let _scope = DeadlineScope::enter(effective);
    f()
}

/// Sets the thread's current deadline; restores the previous one on drop.
struct DeadlineScope {
    previous: Option<Deadline>,
}

impl DeadlineScope {
    fn enter(deadline: Deadline) -> DeadlineScope {
        DeadlineScope {
            previous: CURRENT_DEADLINE.with(|c| c.replace(Some(deadline))),
        }
    }
}

impl Drop for DeadlineScope {
    fn drop(&mut self) {
        CURRENT_DEADLINE.with(|c| c.set(self.previous));
    }
}

/// A piece of work for a pool worker. It calls the `&dyn Fn()` it is given
/// once its work is done and before it hands the result over, so the
/// worker is back in the pool by the time its caller returns.
type Job = Box<dyn FnOnce(&dyn Fn()) + Send + 'static>;

/// A parked pool worker: where its next job is put.
struct WorkerSlot {
    job: Mutex<Option<Job>>,
    thread: Thread,
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Arc<WorkerSlot>>,
    workers: usize,
    busy: usize,
    shutdown: bool,
}

/// A bounded pool of worker threads, grown on demand up to `max_workers`;
/// a worker idle for `idle_timeout` (on the pattern's timer) exits.
struct Pool {
    state: Mutex<PoolState>,
    max_workers: usize,
    idle_timeout: Duration,
}

/// Why a job was not started.
enum Refused {
    Full,
    Shutdown,
}

impl Pool {
    fn new(max_workers: usize, idle_timeout: Duration) -> Pool {
        Pool {
            state: Mutex::new(PoolState::default()),
            max_workers,
            idle_timeout,
        }
    }

    /// Hands `job` to an idle worker, or starts a new one if the pool is not
    /// at its limit. Never queues.
    fn submit<T: Timer + Clone + 'static>(
        self: &Arc<Self>,
        job: Job,
        timer: &T,
    ) -> Result<(), Refused> {
        let mut state = self.state.lock();
        if state.shutdown {
            return Err(Refused::Shutdown);
        }
        if let Some(worker) = state.idle.pop() {
            // Stored under the pool lock: a worker that finds itself no
            // longer idle (under the same lock) knows its job is there.
            *worker.job.lock() = Some(job);
            state.busy += 1;
            drop(state);
            worker.thread.unpark();
            return Ok(());
        }
        if state.workers >= self.max_workers {
            return Err(Refused::Full);
        }
        state.workers += 1;
        state.busy += 1;
        drop(state);
        let pool = Arc::clone(self);
        let timer = timer.clone();
        let spawned = thread::Builder::new()
            .name(String::from("stockade-timeout"))
            .spawn(move || pool.work(job, timer));
        if spawned.is_err() {
            let mut state = self.state.lock();
            state.workers -= 1;
            state.busy -= 1;
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// A worker's life: run a job, wait idle for the next, exit after
    /// `idle_timeout` or at shutdown.
    fn work<T: Timer>(&self, first: Job, timer: T) {
        let me = Arc::new(WorkerSlot {
            job: Mutex::new(None),
            thread: thread::current(),
        });
        let mut job = Some(first);
        while let Some(run) = job.take() {
            // `Some(stay)` once the worker went idle (`stay` false: the
            // pool shut down, exit).
            let idle: Cell<Option<bool>> = Cell::new(None);
            let ready = || {
                if idle.get().is_none() {
                    idle.set(Some(self.go_idle(&me)));
                }
            };
            // Jobs catch their own panics; this is the last line of defence
            // so that the pool's counts stay right.
            let _ = catch_unwind(AssertUnwindSafe(|| run(&ready)));
            ready();
            if idle.get() != Some(true) {
                return;
            }
            job = self.wait_for_job(&me, &timer);
        }
    }

    /// Puts a worker whose job is done back in the pool; `false` if the
    /// pool shut down (the worker is then gone from the counts).
    fn go_idle(&self, me: &Arc<WorkerSlot>) -> bool {
        let mut state = self.state.lock();
        state.busy -= 1;
        if state.shutdown {
            state.workers -= 1;
            return false;
        }
        state.idle.push(Arc::clone(me));
        true
    }

    /// Waits idle for a job; `None` means exit.
    fn wait_for_job<T: Timer>(&self, me: &Arc<WorkerSlot>, timer: &T) -> Option<Job> {
        let until = timer.now().saturating_add(self.idle_timeout);
        loop {
            if let Some(job) = me.job.lock().take() {
                return Some(job);
            }
            {
                let mut state = self.state.lock();
                if state.shutdown || timer.now() >= until {
                    if let Some(i) = state.idle.iter().position(|w| Arc::ptr_eq(w, me)) {
                        state.idle.swap_remove(i);
                        state.workers -= 1;
                        return None;
                    }
                    // A caller took this worker: its job is stored; loop to
                    // take it.
                    continue;
                }
            }
            timer.park_until(until);
        }
    }

    /// Stops the pool: idle workers exit now, busy ones after their job.
    fn shutdown(&self) {
        let mut state = self.state.lock();
        state.shutdown = true;
        for worker in state.idle.iter() {
            worker.thread.unpark();
        }
    }

    fn counts(&self) -> (usize, usize) {
        let state = self.state.lock();
        (state.workers, state.busy)
    }
}

/// Where a detached job leaves its outcome for the caller.
struct Handoff<R, E> {
    outcome: Mutex<Option<thread::Result<Result<R, E>>>>,
    caller: Thread,
}

/// Default most worker threads per [`Timeout`] for
/// [`execute_detached`](Timeout::execute_detached).
pub const DEFAULT_MAX_WORKERS: usize = 16;

/// Default time an idle detached worker waits for more work before it
/// exits.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Limits how long a caller waits for an operation (the spec's Timeout
/// pattern), in the two forms a blocking closure allows.
///
/// A running closure cannot be killed, so there are two honest forms:
///
/// * **Cooperative** — [`execute`](Self::execute): the closure runs on the
///   caller's thread and receives the [`Deadline`]; while it runs the
///   deadline is also the thread's [`current_deadline`], so code deep in
///   the call stack (and a [`Retry`](super::Retry)) can honour it. Nested
///   timeouts keep the earlier deadline. If the closure returns after the
///   deadline its result is **dropped** and the caller gets
///   [`Error::TimedOut`]; an operation that ignores its deadline still makes
///   the caller wait for it. This is the form the [`Policy`] impl (and so a
///   [`Pipeline`](super::Pipeline)) uses.
/// * **Detached** — [`execute_detached`](Self::execute_detached): the
///   closure runs on a worker from a bounded pool and the caller returns
///   [`Error::TimedOut`] on time, woken by the result if it comes first.
///   **After a timeout the work goes on** on its worker (its result is
///   dropped there), keeping that worker busy. When every worker is busy
///   the call is refused at once with [`Error::BulkheadFull`] rather than
///   queued. A closure that panics gives [`Error::Panicked`]; the pool
///   carries on.
///
/// Each call gets its own deadline of `timeout` from its start (taken in
/// with the current deadline, whichever is earlier): the spec's
/// `timeoutMs`. Waiting uses the timer `T`, so a
/// [`VirtualClock`](super::VirtualClock) drives timeouts in tests.
///
/// # Examples
///
/// The spec's usage:
///
/// ```
/// use std::time::Duration;
/// use stockade::blocking::{Error, Timeout};
/// use stockade::deadline::TimeoutConfig;
///
/// # struct Database;
/// # impl Database { fn query(&self, _sql: &str) -> Result<Vec<String>, String> { Ok(vec!["ada".into()]) } }
/// # let database = Database;
/// // Create a timeout
/// let timeout = Timeout::new("databaseQuery", TimeoutConfig::new(Duration::from_millis(5000))?)?;
///
/// // Execute with timeout
/// match timeout.execute(|_deadline| database.query("SELECT * FROM users")) {
///     Ok(users) => assert_eq!(users, ["ada"]),
///     Err(Error::TimedOut { after }) => println!("gave up after {after:?}"),
///     Err(other) => println!("query failed: {other}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A detached call on virtual time: the caller gets `TimedOut` when the
/// clock passes the deadline, while the work is still blocked.
///
/// ```
/// use std::sync::{Arc, mpsc};
/// use std::thread;
/// use std::time::Duration;
/// use stockade::blocking::{Error, Timeout, VirtualClock};
/// use stockade::deadline::TimeoutConfig;
///
/// let clock = Arc::new(VirtualClock::new());
/// let timeout = Timeout::with_timer("slow", TimeoutConfig::new(Duration::from_secs(2))?, Arc::clone(&clock))?;
/// let (release, blocked) = mpsc::channel::<()>();
/// thread::scope(|s| {
///     let caller = s.spawn(|| timeout.execute_detached(move || blocked.recv().map(|()| 42)));
///     while clock.waiting() == 0 {
///         thread::yield_now(); // until the caller waits on the clock
///     }
///     clock.advance(Duration::from_secs(2));
///     let out = caller.join().unwrap();
///     assert!(matches!(out, Err(Error::TimedOut { after }) if after == Duration::from_secs(2)));
/// });
/// release.send(()).unwrap(); // the work was still running; let it finish
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Timeout<T: Timer = MonotonicClock> {
    name: Arc<str>,
    config: TimeoutConfig,
    timer: T,
    listeners: Listeners,
    calls: Counter,
    successes: Counter,
    failures: Counter,
    timeouts: Counter,
    rejections: Counter,
    in_flight: AtomicU64,
    disposed: DisposeFlag,
    waiters: WaitList,
    pool: Arc<Pool>,
}

impl<T: Timer> fmt::Debug for Timeout<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("disposed", &self.is_disposed())
            .finish_non_exhaustive()
    }
}

impl Timeout<MonotonicClock> {
    /// A timeout on the real clock.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero `timeout`.
    pub fn new(name: impl Into<Arc<str>>, config: TimeoutConfig) -> Result<Self, Error> {
        Timeout::with_timer(name, config, MonotonicClock::new())
    }

    /// The timeout registered as `name`, or a new one with `config`
    /// registered under that name (its pool has the default size).
    ///
    /// # Errors
    ///
    /// [`Error::NameTaken`] if `name` is registered with another config;
    /// [`Error::InvalidConfig`].
    pub fn get_or_create(name: &str, config: TimeoutConfig) -> Result<Arc<Self>, Error> {
        registry::get_or_create(name, &config, || Timeout::new(name, config))
    }

    /// The live timeout registered as `name`, if any.
    pub fn get(name: &str) -> Option<Arc<Self>> {
        registry::get(name)
    }
}

impl Registered for Timeout<MonotonicClock> {
    type Options = TimeoutConfig;
    fn options(&self) -> &TimeoutConfig {
        &self.config
    }
    fn is_disposed(&self) -> bool {
        self.disposed.get()
    }
}

impl<T: Timer> Timeout<T> {
    /// A timeout on `timer` (a [`VirtualClock`](super::VirtualClock) in
    /// tests), with a detached pool of [`DEFAULT_MAX_WORKERS`] workers that
    /// exit after [`DEFAULT_IDLE_TIMEOUT`] idle.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero `timeout`.
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: TimeoutConfig,
        timer: T,
    ) -> Result<Self, Error> {
        config.validate()?;
        Ok(Timeout {
            name: name.into(),
            config,
            timer,
            listeners: Listeners::default(),
            calls: Counter::default(),
            successes: Counter::default(),
            failures: Counter::default(),
            timeouts: Counter::default(),
            rejections: Counter::default(),
            in_flight: AtomicU64::new(0),
            disposed: DisposeFlag::default(),
            waiters: WaitList::default(),
            pool: Arc::new(Pool::new(DEFAULT_MAX_WORKERS, DEFAULT_IDLE_TIMEOUT)),
        })
    }

    /// This timeout with a detached pool of at most `max_workers` threads,
    /// each exiting after `idle_timeout` without work (on the timer).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `max_workers` or `idle_timeout` when
    /// zero.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::blocking::Timeout;
    /// use stockade::deadline::TimeoutConfig;
    ///
    /// let timeout = Timeout::new("dns", TimeoutConfig::DEFAULT)?.with_pool(4, Duration::from_secs(10))?;
    /// assert_eq!(timeout.max_workers(), 4);
    /// # Ok::<(), stockade::blocking::Error>(())
    /// ```
    pub fn with_pool(mut self, max_workers: usize, idle_timeout: Duration) -> Result<Self, Error> {
        use crate::error::{ConfigError, ConfigOption, ConfigValue};
        if max_workers == 0 {
            return Err(ConfigError::zero(ConfigOption::MaxWorkers, ConfigValue::Count(0)).into());
        }
        if idle_timeout.is_zero() {
            return Err(ConfigError::zero(
                ConfigOption::IdleTimeout,
                ConfigValue::Duration(idle_timeout),
            )
            .into());
        }
        self.pool.shutdown();
        self.pool = Arc::new(Pool::new(max_workers, idle_timeout));
        Ok(self)
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The options (named like every pattern's `options()`).
    pub fn options(&self) -> &TimeoutConfig {
        &self.config
    }

    /// The timer.
    pub fn timer(&self) -> &T {
        &self.timer
    }

    /// The most detached workers.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers
    }

    /// Detached worker threads alive now (busy or idle).
    pub fn workers(&self) -> usize {
        self.pool.counts().0
    }

    /// Detached workers running a job now (including jobs whose callers
    /// already timed out).
    pub fn busy_workers(&self) -> usize {
        self.pool.counts().1
    }

    /// Runs `f` on the caller's thread with a deadline `timeout` from now
    /// (or the thread's [current deadline](current_deadline), if earlier),
    /// which `f` receives and which is the current deadline while it runs.
    ///
    /// `f` is not interrupted: if it returns at or after the deadline, its
    /// result (value or error) is dropped and the call fails with
    /// [`Error::TimedOut`]. If the deadline has already passed, `f` does not
    /// run. A panic in `f` propagates (the current deadline is restored).
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with `f`'s error, [`Error::TimedOut`] with the time
    /// the call was allowed, [`Error::Disposed`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, Timeout, VirtualClock};
    /// use stockade::deadline::TimeoutConfig;
    ///
    /// let clock = VirtualClock::new();
    /// let timeout = Timeout::with_timer("batch", TimeoutConfig::new(Duration::from_secs(1))?, &clock)?;
    /// let out: Result<u32, Error<&str>> = timeout.execute(|deadline| {
    ///     let mut done = 0;
    ///     while !deadline.is_expired(&clock) && done < 10 {
    ///         clock.advance(Duration::from_millis(300)); // a unit of work
    ///         done += 1;
    ///     }
    ///     Ok(done) // too late: dropped
    /// });
    /// assert!(matches!(out, Err(Error::TimedOut { .. })));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn execute<R, E>(&self, f: impl FnOnce(Deadline) -> Result<R, E>) -> Result<R, Error<E>> {
        self.run_cooperative(f, Error::Inner)
    }

    /// The cooperative form with the error already lifted.
    fn run_cooperative<R, X, E>(
        &self,
        f: impl FnOnce(Deadline) -> Result<R, X>,
        lift: impl FnOnce(X) -> Error<E>,
    ) -> Result<R, Error<E>> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        self.calls.incr();
        let (start, deadline) = self.deadline();
        let allowed = deadline.expires_at().saturating_duration_since(start);
        if deadline.is_expired(&self.timer) {
            return Err(self.timed_out(allowed));
        }
        let out = {
            let _running = InFlight::enter(&self.in_flight);
            let _scope = DeadlineScope::enter(deadline);
            f(deadline)
        };
        if deadline.is_expired(&self.timer) {
            drop(out);
            return Err(self.timed_out(allowed));
        }
        match out {
            Ok(value) => {
                self.successes.incr();
                Ok(value)
            }
            Err(e) => {
                self.failures.incr();
                Err(lift(e))
            }
        }
    }

    /// `(now, the call's deadline)`.
    fn deadline(&self) -> (Timestamp, Deadline) {
        let start = self.timer.now();
        let own = Deadline::at(start.saturating_add(self.config.timeout));
        let deadline = match current_deadline() {
            Some(current) => current.min(own),
            None => own,
        };
        (start, deadline)
    }

    fn timed_out<E>(&self, after: Duration) -> Error<E> {
        self.timeouts.incr();
        self.emit(EventKind::TimedOut { after });
        Error::TimedOut { after }
    }

    fn emit(&self, kind: EventKind) {
        self.listeners.emit(|| Event {
            pattern: PatternKind::Timeout,
            name: Arc::clone(&self.name),
            at: self.timer.now(),
            kind,
        });
    }

    /// `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.disposed.get()
    }

    /// A reusable function protected by the cooperative form: `f` runs on
    /// the caller's thread and can read its deadline with
    /// [`current_deadline`] (the spec's `wrap`).
    pub fn wrap<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a {
        move |arg: A| self.execute(|_| f(arg))
    }

    /// Subscribes a listener to this timeout's events
    /// ([`EventKind::TimedOut`], [`EventKind::Rejected`] when the pool is
    /// full, [`EventKind::Disposed`]).
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.listeners.add(Arc::new(listener))
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.listeners.remove(id)
    }

    /// A snapshot of the counters: `calls`, `successes`, `failures` (the
    /// closure's errors and panics), `timeouts`, `rejections` (detached
    /// calls refused because the pool was full) and `in_flight` (callers
    /// inside `execute` or `execute_detached`).
    pub fn metrics(&self) -> Metrics {
        Metrics {
            calls: self.calls.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            rejections: self.rejections.get(),
            timeouts: self.timeouts.get(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            ..Metrics::default()
        }
    }

    /// Disposes the timeout: callers waiting in
    /// [`execute_detached`](Self::execute_detached) wake with
    /// [`Error::Disposed`] (their work goes on), later calls fail with
    /// `Disposed`, idle workers exit (busy ones after their job), a
    /// [`EventKind::Disposed`] event is emitted, listeners are removed, and
    /// the registry forgets the timeout. A cooperative call already running
    /// finishes normally. Idempotent.
    pub fn dispose(&self) {
        if self.disposed.set() {
            return;
        }
        self.pool.shutdown();
        self.waiters.wake_all();
        self.emit(EventKind::Disposed);
        self.listeners.clear();
        // Forget this instance if it is the registered one (a registry
        // lookup drops disposed entries).
        let _ = registry::get::<Timeout<MonotonicClock>>(&self.name);
    }
}

impl<T: Timer + Clone + 'static> Timeout<T> {
    /// Runs `f` on a worker thread of this timeout's bounded pool and waits
    /// for its result until the deadline (`timeout` from now, or the
    /// thread's [current deadline](current_deadline) if earlier).
    ///
    /// The caller returns [`Error::TimedOut`] on time; **`f` keeps running**
    /// on its worker (which stays busy) and its late result is dropped
    /// there. The wait parks on the timer and is woken by the result, so a
    /// [`VirtualClock`](super::VirtualClock) drives it. Each call allocates
    /// its job and result slot.
    ///
    /// # Errors
    ///
    /// * [`Error::Inner`] with `f`'s error;
    /// * [`Error::TimedOut`] with the time the call was allowed;
    /// * [`Error::BulkheadFull`] at once when all
    ///   [`max_workers`](Self::max_workers) are busy (never queued);
    /// * [`Error::Panicked`] if `f` panicked (the worker survives);
    /// * [`Error::Disposed`], also for callers waiting when the timeout is
    ///   disposed.
    pub fn execute_detached<R, E, F>(&self, f: F) -> Result<R, Error<E>>
    where
        F: FnOnce() -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        self.calls.incr();
        let _running = InFlight::enter(&self.in_flight);
        let (start, deadline) = self.deadline();
        let allowed = deadline.expires_at().saturating_duration_since(start);
        if deadline.is_expired(&self.timer) {
            return Err(self.timed_out(allowed));
        }
        let handoff = Arc::new(Handoff::<R, E> {
            outcome: Mutex::new(None),
            caller: thread::current(),
        });
        let job: Job = {
            let handoff = Arc::clone(&handoff);
            Box::new(move |ready: &dyn Fn()| {
                let outcome = catch_unwind(AssertUnwindSafe(f));
                ready();
                *handoff.outcome.lock() = Some(outcome);
                handoff.caller.unpark();
            })
        };
        match self.pool.submit(job, &self.timer) {
            Ok(()) => {}
            Err(Refused::Full) => {
                self.rejections.incr();
                self.emit(EventKind::Rejected { retry_after: None });
                return Err(Error::BulkheadFull);
            }
            Err(Refused::Shutdown) => return Err(Error::Disposed),
        }
        let _waiting = self.waiters.register();
        loop {
            if let Some(outcome) = handoff.outcome.lock().take() {
                return match outcome {
                    Ok(Ok(value)) => {
                        self.successes.incr();
                        Ok(value)
                    }
                    Ok(Err(e)) => {
                        self.failures.incr();
                        Err(Error::Inner(e))
                    }
                    Err(payload) => {
                        self.failures.incr();
                        Err(Error::Panicked {
                            message: panic_message(payload.as_ref()),
                        })
                    }
                };
            }
            if self.is_disposed() {
                return Err(Error::Disposed);
            }
            if deadline.is_expired(&self.timer) {
                return Err(self.timed_out(allowed));
            }
            self.timer.park_until(deadline.expires_at());
        }
    }

    /// A reusable function protected by the detached form.
    pub fn wrap_detached<'a, A, R, E, F>(&'a self, f: F) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let f = Arc::new(f);
        move |arg: A| {
            let f = Arc::clone(&f);
            self.execute_detached(move || f(arg))
        }
    }
}

impl<T: Timer> Drop for Timeout<T> {
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

impl<T: Timer> Policy for Timeout<T> {
    /// The cooperative form: `call` runs on the caller's thread and sees
    /// the deadline through [`current_deadline`].
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.run_cooperative(|_| call(), |e| e)
    }
}

/// Counts a caller in `in_flight` until dropped (also on unwind).
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> InFlight<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}
