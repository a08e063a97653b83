//! The timeout pattern for threads: [`Timeout`] and the thread's
//! [current deadline](current_deadline).

use core::cell::Cell;
use core::fmt;
use core::time::Duration;
use std::format;
use std::sync::Arc;

use super::events::StripedGauge;
use super::hooks::ExecSpan;
use super::pool::{self, NoOutcome, WorkerPool};
use super::registry::{self, registered};
use super::shell::{Shell, panic_message};
use super::wait::WaitList;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Policy, Timer};
use crate::clock::{MonotonicClock, Timestamp};
use crate::deadline::{Deadline, TimeoutConfig};
use crate::error::{ConfigError, ConfigOption, ConfigValue};
#[cfg(feature = "async")]
use core::{pin::Pin, task::Poll};

#[cfg(feature = "async")]
use super::async_call::{Keep, Lift, Wrap, counted};
#[cfg(feature = "async")]
use super::hooks::Traced;

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
/// let timeout = Timeout::unregistered("query", TimeoutConfig::new(Duration::from_secs(5))?)?;
/// let seen = timeout.execute_cooperative(|deadline| Ok::<_, Error>(current_deadline() == Some(deadline)))?;
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
/// caller's budget); a [`Timeout`] sets it by itself (on the worker, for
/// [`Timeout::execute`]).
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

/// Default most worker threads per [`Timeout`].
pub const DEFAULT_MAX_WORKERS: usize = 16;

/// Default time an idle worker waits for more work before it exits.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds how long a caller waits for an operation (the spec's Timeout:
/// `timeout.execute(op)` rejects after `timeoutMs` and the caller moves on).
///
/// ```
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// # fn query(_sql: &str) -> Result<Vec<String>, String> { Ok(vec!["ada".into()]) }
/// // Create a timeout
/// let timeout = Timeout::new("databaseQuery", TimeoutConfig::new(Duration::from_millis(5000))?)?;
///
/// // Execute with timeout
/// match timeout.execute(|| query("SELECT * FROM users")) {
///     Ok(users) => assert_eq!(users, ["ada"]),
///     Err(Error::TimedOut { after }) => println!("gave up after {after:?}"),
///     Err(other) => println!("query failed: {other}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A running closure cannot be killed, so there are two honest forms:
///
/// * **Returns on time** — [`execute`](Self::execute), [`wrap`](Self::wrap)
///   and a timeout stage in a [`Pipeline`](super::Pipeline)
///   ([`then_timeout`](super::Pipeline::then_timeout)): the closure runs on
///   a worker of the timeout's bounded pool and the caller gets
///   [`Error::TimedOut`] at the deadline, woken earlier by the result if it
///   comes first. **After a timeout the work goes on** on its worker (its
///   late result is dropped there), keeping that worker busy; when all
///   `max_workers` are busy a call is refused at once with
///   [`Error::PoolFull`]. Because the closure moves to another thread, it
///   must be `Send + 'static` (and so must its result): the compiler says
///   so. While it runs, the deadline is the worker's [`current_deadline`].
/// * **Cooperative** — [`execute_cooperative`](Self::execute_cooperative):
///   the closure runs on the caller's thread and receives the
///   [`Deadline`], which is also the thread's [`current_deadline`] (so code
///   deep in the call stack, and a [`Retry`](super::Retry), can honour it).
///   It borrows freely, but an operation that ignores its deadline makes
///   the caller wait for it; a late result is dropped and the caller gets
///   [`Error::TimedOut`]. [`cooperative`](Self::cooperative) is this form
///   as a pipeline stage.
///
/// Each call gets its own deadline of `timeout` from its start (or the
/// thread's current deadline, if earlier). Counters: a call that finishes
/// is one of `successes`, `failures` (the closure's error or panic — a
/// panic on a worker comes back as [`Error::Panicked`], a cooperative one
/// continues to the caller), `timeouts`, `rejections` (pool full).
///
/// **After `fork`** a child process has none of the parent's worker
/// threads; the pool starts afresh in the child on its first use there
/// (no workers, all `max_workers` free; see [`WorkerPool`], "After
/// `fork`"), so the child's calls run on workers of its own. Counters and
/// listeners are copied as they were at the fork; a call that another
/// parent thread was making at the fork stays in the child's copy of
/// `in_flight` (that thread does not exist in the child).
///
/// # Examples
///
/// On virtual time: the caller gets `TimedOut` when the clock passes the
/// deadline, while the work is still blocked.
///
/// ```
/// use std::sync::{Arc, mpsc};
/// use std::thread;
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// let clock = Arc::new(VirtualClock::new());
/// let timeout = Timeout::with_timer("slow", TimeoutConfig::new(Duration::from_secs(2))?, Arc::clone(&clock))?;
/// let (release, blocked) = mpsc::channel::<()>();
/// let (started, running) = mpsc::channel::<()>();
/// thread::scope(|s| {
///     let caller = s.spawn(|| {
///         timeout.execute(move || {
///             started.send(()).unwrap();
///             blocked.recv().map(|()| 42)
///         })
///     });
///     // The work runs on a worker (a job not started when its caller gives
///     // up is skipped), and the caller waits on the clock.
///     running.recv().unwrap();
///     while clock.waiting() == 0 {
///         thread::yield_now();
///     }
///     clock.advance(Duration::from_secs(2));
///     let out = caller.join().unwrap();
///     assert!(matches!(out, Err(Error::TimedOut { after }) if after == Duration::from_secs(2)));
/// });
/// release.send(()).unwrap(); // the work was still running; let it finish
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Timeout<T: Timer = MonotonicClock> {
    shell: Shell<TimeoutConfig, T>,
    in_flight: StripedGauge,
    waiters: WaitList,
    pool: Arc<WorkerPool>,
}

impl<T: Timer> fmt::Debug for Timeout<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "Timeout", |s| {
            s.field("max_workers", &self.pool.max_workers());
        })
    }
}

impl Timeout<MonotonicClock> {
    /// A timeout on the real clock, registered as `name` (see
    /// [`get_timeout`](Self::get_timeout)); its pool has
    /// [`DEFAULT_MAX_WORKERS`] workers.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a zero `timeout`; [`Error::NameTaken`]
    /// if a live timeout is registered as `name`.
    pub fn new(name: &str, config: TimeoutConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<TimeoutConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(
    Timeout,
    TimeoutConfig,
    "timeout",
    get_timeout,
    "Timeout.getTimeout"
);

impl<T: Timer> Timeout<T> {
    /// A timeout on `timer` (a [`VirtualClock`](super::VirtualClock) in
    /// tests), not registered, with a pool of [`DEFAULT_MAX_WORKERS`]
    /// workers that exit after [`DEFAULT_IDLE_TIMEOUT`] idle.
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
        let name: Arc<str> = name.into();
        Ok(Timeout {
            pool: Arc::new(WorkerPool::new(
                format!("stockade-timeout:{name}"),
                DEFAULT_MAX_WORKERS,
                0,
                DEFAULT_IDLE_TIMEOUT,
            )),
            shell: Shell::new(PatternKind::Timeout, name, config, timer),
            in_flight: StripedGauge::default(),
            waiters: WaitList::default(),
        })
    }

    /// This timeout with a pool of at most `max_workers` threads, each
    /// exiting after `idle_timeout` without work (on the timer).
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
    /// use stockade::prelude::*;
    ///
    /// let timeout = Timeout::unregistered("dns", TimeoutConfig::DEFAULT)?.with_pool(4, Duration::from_secs(10))?;
    /// assert_eq!(timeout.max_workers(), 4);
    /// # Ok::<(), stockade::blocking::Error>(())
    /// ```
    pub fn with_pool(mut self, max_workers: usize, idle_timeout: Duration) -> Result<Self, Error> {
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
        self.pool = Arc::new(WorkerPool::new(
            format!("stockade-timeout:{}", self.shell.name()),
            max_workers,
            0,
            idle_timeout,
        ));
        Ok(self)
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config.
    pub fn config(&self) -> &TimeoutConfig {
        self.shell.config()
    }

    /// The timer.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// The most workers.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers()
    }

    /// Worker threads alive now (busy or idle).
    pub fn workers(&self) -> usize {
        self.pool.counts().workers
    }

    /// Workers running a closure now (including closures whose callers
    /// already timed out).
    pub fn busy_workers(&self) -> usize {
        self.pool.counts().busy
    }

    /// Runs `f` on the caller's thread with a deadline `timeout` from now
    /// (or the thread's [current deadline](current_deadline), if earlier),
    /// which `f` receives and which is the current deadline while it runs.
    ///
    /// `f` is not interrupted: if it returns at or after the deadline, its
    /// result (value or error) is dropped and the call fails with
    /// [`Error::TimedOut`]. If the deadline has already passed, `f` does not
    /// run. A panic in `f` counts as a failure and continues to the caller
    /// (the current deadline is restored).
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
    /// use stockade::prelude::*;
    ///
    /// let clock = VirtualClock::new();
    /// let timeout = Timeout::with_timer("batch", TimeoutConfig::new(Duration::from_secs(1))?, &clock)?;
    /// let out: Result<u32, Error<&str>> = timeout.execute_cooperative(|deadline| {
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
    pub fn execute_cooperative<R, E>(
        &self,
        f: impl FnOnce(Deadline) -> Result<R, E>,
    ) -> Result<R, Error<E>> {
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
        let (start, deadline) = self.deadline();
        let allowed = deadline.expires_at().saturating_duration_since(start);
        if deadline.is_expired(self.timer()) {
            return Err(self.timed_out(allowed));
        }
        let running = self.shell.running();
        let out = {
            let _running = InFlight::enter(&self.in_flight);
            let _scope = DeadlineScope::enter(deadline);
            f(deadline)
        };
        let span = running.disarm();
        if deadline.is_expired(self.timer()) {
            drop(out);
            span.outcome("timeout");
            return Err(self.timed_out(allowed));
        }
        match out {
            Ok(value) => {
                self.shell.counters.successes.incr();
                span.outcome("success");
                Ok(value)
            }
            Err(e) => {
                self.shell.counters.failures.incr();
                span.outcome("failure");
                Err(lift(e))
            }
        }
    }

    /// `(now, the call's deadline)`.
    fn deadline(&self) -> (Timestamp, Deadline) {
        let start = self.timer().now();
        let own = Deadline::at(start.saturating_add(self.config().timeout));
        let deadline = match current_deadline() {
            Some(current) => current.min(own),
            None => own,
        };
        (start, deadline)
    }

    fn timed_out<E>(&self, after: Duration) -> Error<E> {
        self.shell.counters.timeouts.incr();
        self.shell.emit(EventKind::TimedOut { after });
        Error::TimedOut { after }
    }

    /// `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// A reusable function protected by the cooperative form: `f` runs on
    /// the caller's thread and can read its deadline with
    /// [`current_deadline`].
    pub fn wrap_cooperative<'a, A, R, E>(
        &'a self,
        f: impl Fn(A) -> Result<R, E> + 'a,
    ) -> impl Fn(A) -> Result<R, Error<E>> + 'a {
        move |arg: A| self.execute_cooperative(|_| f(arg))
    }

    /// This timeout as a cooperative pipeline stage: the call runs on the
    /// caller's thread under the deadline (see
    /// [`execute_cooperative`](Self::execute_cooperative)). For a stage
    /// that returns on time, use
    /// [`Pipeline::then_timeout`](super::Pipeline::then_timeout).
    pub fn cooperative(&self) -> Cooperative<'_, T> {
        Cooperative(self)
    }

    /// Subscribes a listener to this timeout's events
    /// ([`EventKind::TimedOut`], [`EventKind::Rejected`] when the pool is
    /// full, [`EventKind::Disposed`]).
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters: `calls` (calls that finished),
    /// `successes`, `failures` (the closure's errors and panics),
    /// `timeouts`, `rejections` (refused because the pool was full) and
    /// `in_flight` (callers inside the timeout now).
    pub fn metrics(&self) -> Metrics {
        Metrics {
            in_flight: self.in_flight.get(),
            ..self.shell.counters.metrics()
        }
    }

    /// Disposes the timeout: callers waiting for a worker's result wake
    /// with [`Error::Disposed`] (their work goes on), later calls fail with
    /// `Disposed`, idle workers exit (busy ones after their job), a
    /// [`EventKind::Disposed`] event is emitted, listeners are removed, and
    /// the registry forgets the timeout. A cooperative call already running
    /// finishes normally. Idempotent.
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        self.pool.shutdown();
        self.waiters.wake_all();
        self.shell.finish_dispose();
    }
}

impl<T: Timer + Clone + 'static> Timeout<T> {
    /// Runs `f` on a worker of this timeout's bounded pool and waits for
    /// its result until the deadline (`timeout` from now, or the thread's
    /// [current deadline](current_deadline) if earlier): the caller returns
    /// on time (the spec's `timeout.execute(op)`).
    ///
    /// After a timeout **`f` keeps running** on its worker (which stays
    /// busy) and its late result is dropped there. The wait parks on the
    /// timer and is woken by the result, so a
    /// [`VirtualClock`](super::VirtualClock) drives it. Each call allocates
    /// its job and result slot.
    ///
    /// # Errors
    ///
    /// * [`Error::Inner`] with `f`'s error;
    /// * [`Error::TimedOut`] with the time the call was allowed;
    /// * [`Error::PoolFull`] at once when all
    ///   [`max_workers`](Self::max_workers) are busy (never queued);
    /// * [`Error::Panicked`] if `f` panicked (the worker survives);
    /// * [`Error::Disposed`], also for callers waiting when the timeout is
    ///   disposed.
    pub fn execute<R, E, F>(&self, f: F) -> Result<R, Error<E>>
    where
        F: FnOnce() -> Result<R, E> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.run_detached(move || f().map_err(Error::Inner))
    }

    /// The detached form with the error already lifted (a pipeline's
    /// stage: errors of stages inside come back unchanged).
    pub(crate) fn run_detached<R, E, F>(&self, f: F) -> Result<R, Error<E>>
    where
        F: FnOnce() -> Result<R, Error<E>> + Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let _running = InFlight::enter(&self.in_flight);
        // The caller's span: `f` runs on a worker thread, outside it.
        let span = ExecSpan::enter(self.shell.kind(), self.shell.name());
        let (start, deadline) = self.deadline();
        let allowed = deadline.expires_at().saturating_duration_since(start);
        // Registered before the first check: `dispose` sets the flag, then
        // wakes the registered threads.
        let _waiting = self.waiters.register();
        let outcome = pool::run_detached(
            &self.pool,
            self.timer(),
            deadline.expires_at(),
            || self.is_disposed(),
            move || with_deadline(deadline, f),
        );
        let counters = &self.shell.counters;
        match outcome {
            Ok(Ok(Ok(value))) => {
                counters.successes.incr();
                span.outcome("success");
                Ok(value)
            }
            Ok(Ok(Err(e))) => {
                counters.failures.incr();
                span.outcome("failure");
                Err(e)
            }
            Ok(Err(payload)) => {
                counters.failures.incr();
                span.outcome("failure");
                Err(Error::Panicked {
                    message: panic_message(payload.as_ref()),
                })
            }
            Err(NoOutcome::TimedOut) => {
                span.outcome("timeout");
                Err(self.timed_out(allowed))
            }
            Err(NoOutcome::Full) => {
                span.outcome("rejected");
                counters.rejections.incr();
                self.shell.emit(EventKind::Rejected { retry_after: None });
                Err(Error::PoolFull)
            }
            Err(NoOutcome::Disposed) => Err(Error::Disposed),
        }
    }

    /// A reusable function protected by this timeout (the spec's `wrap`):
    /// each call runs `f` through [`execute`](Self::execute).
    pub fn wrap<'a, A, R, E, F>(&'a self, f: F) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
        A: Send + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let f = Arc::new(f);
        move |arg: A| {
            let f = Arc::clone(&f);
            self.execute(move || f(arg))
        }
    }
}

// --- Async (feature `async`) ------------------------------------------------

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> Timeout<T> {
    /// Awaits `call` until `timeout` after the call starts, and at the
    /// deadline **drops** `call` (which cancels it: nothing of it runs
    /// afterwards) and returns [`Error::TimedOut`]. No thread is involved:
    /// the deadline is a sleep on the [`AsyncTimer`](super::AsyncTimer)
    /// raced against `call`. Same timeout, same events and metrics as the
    /// blocking forms.
    ///
    /// `call` is polled first at each wake-up, so a result ready at the
    /// deadline is returned. The thread's
    /// [current deadline](current_deadline) does not apply (a task moves
    /// between threads): nest async timeouts instead; the shortest wins.
    /// A panic while polling `call` counts as a failure and continues to
    /// the caller. [`dispose`](Self::dispose) wakes calls in flight: they
    /// drop `call` and return [`Error::Disposed`].
    ///
    /// # Errors
    ///
    /// [`Error::Inner`] with `call`'s error, [`Error::TimedOut`] with the
    /// time the call was allowed, [`Error::Disposed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::time::Duration;
    /// use stockade::prelude::*;
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    /// let timeout = Timeout::new("doc-execute-async", TimeoutConfig::new(Duration::from_millis(20))?)?;
    /// let slow = async {
    ///     tokio::time::sleep(Duration::from_secs(60)).await;
    ///     Ok::<_, String>("late")
    /// };
    /// let out = timeout.execute_async(slow).await; // `slow` is dropped at 20 ms
    /// assert!(matches!(out, Err(Error::TimedOut { after }) if after == Duration::from_millis(20)));
    /// assert_eq!(timeout.execute_async(async { Ok::<_, String>(7) }).await.unwrap(), 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub fn execute_async<R, E>(
        &self,
        call: impl core::future::Future<Output = Result<R, E>>,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>> {
        self.run_future::<_, Wrap>(call)
    }

    /// The async form, `L` turning the call's error into the result's: a
    /// hand-written future (see [`TimedCall`]).
    #[inline]
    pub(crate) fn run_future<F, L>(&self, call: F) -> Traced<'_, TimedCall<'_, T, F, L>> {
        Traced::new(
            PatternKind::Timeout,
            self.name(),
            TimedCall {
                timeout: self,
                stage: TimedStage::Start,
                lift: core::marker::PhantomData,
                call: CallSlot::Live { call },
            },
        )
    }

    /// An entered async call dropped before it finished (cancelled, or a
    /// panic unwinding): it leaves `in_flight`, and counts as a failure
    /// only while panicking. Out of line: the healthy path never runs it.
    #[cold]
    #[inline(never)]
    fn abandon(&self) {
        self.in_flight.decr();
        if std::thread::panicking() {
            self.shell.counters.failures.incr();
        }
    }
}

/// Where a [`TimedCall`] is.
#[cfg(feature = "async")]
enum TimedStage<'a, T: super::AsyncTimer> {
    /// Not started: the deadline is set at the first poll.
    Start,
    /// Entered (in `in_flight`), at its first poll.
    Entered,
    /// Not ready at its first poll: racing the deadline (the sleep boxed,
    /// made only by a call that waits).
    Racing {
        deadline: Timestamp,
        waiting: super::wait::TaskWaiting<'a>,
        sleep: Pin<std::boxed::Box<T::Sleep>>,
    },
    /// Finished, timed out or refused (counted).
    Done,
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// The call a [`TimedCall`] runs, dropped in place at the deadline.
    #[project = CallSlotProj]
    enum CallSlot<F> {
        Live { #[pin] call: F },
        Gone,
    }
}

#[cfg(feature = "async")]
pin_project_lite::pin_project! {
    /// A future bounded by a timeout (`execute_async`, and the tower
    /// layer's): a call ready at its first poll needs neither a sleep nor a
    /// registration; otherwise it races a (boxed) sleep until the deadline,
    /// where the call is dropped in place and the result is
    /// [`Error::TimedOut`]. Dropped early, it counts nothing (a failure only
    /// while a panic unwinds).
    pub(crate) struct TimedCall<'a, T: super::AsyncTimer, F, L> {
        timeout: &'a Timeout<T>,
        stage: TimedStage<'a, T>,
        lift: core::marker::PhantomData<fn() -> L>,
        #[pin]
        call: CallSlot<F>,
    }
    impl<'a, T: super::AsyncTimer, F, L> PinnedDrop for TimedCall<'a, T, F, L> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // An entered call that has not finished (`call` itself is
            // dropped after this, as a field).
            if matches!(this.stage, TimedStage::Entered | TimedStage::Racing { .. }) {
                *this.stage = TimedStage::Done;
                this.timeout.abandon();
            }
        }
    }
}

#[cfg(feature = "async")]
impl<T, F, R, X, L> core::future::Future for TimedCall<'_, T, F, L>
where
    T: super::AsyncTimer,
    F: core::future::Future<Output = Result<R, X>>,
    L: Lift<X>,
{
    type Output = Result<R, Error<L::Caller>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<Self::Output> {
        /// How the race ended.
        enum Ended<X> {
            Done(X),
            TimedOut,
            Disposed,
        }
        let mut this = self.project();
        let timeout: &Timeout<T> = this.timeout;
        let first = matches!(this.stage, TimedStage::Start);
        if first {
            if timeout.is_disposed() {
                *this.stage = TimedStage::Done;
                this.call.set(CallSlot::Gone);
                return Poll::Ready(Err(Error::Disposed));
            }
            timeout.in_flight.incr();
            *this.stage = TimedStage::Entered;
        }
        let CallSlotProj::Live { call } = this.call.as_mut().project() else {
            panic!("a timeout's async call polled after it completed");
        };
        let ended = match call.poll(cx) {
            Poll::Ready(out) => Ended::Done(out),
            Poll::Pending => {
                if first {
                    // Not ready at once: from here the call races the
                    // deadline, and wakes on a dispose.
                    let deadline = timeout
                        .timer()
                        .now()
                        .saturating_add(timeout.config().timeout);
                    *this.stage = TimedStage::Racing {
                        deadline,
                        waiting: timeout.waiters.register_task(),
                        sleep: std::boxed::Box::pin(timeout.timer().sleep_until_async(deadline)),
                    };
                }
                let TimedStage::Racing {
                    deadline,
                    waiting,
                    sleep,
                } = this.stage
                else {
                    panic!("a timeout's async call polled after it completed");
                };
                waiting.set_waker(cx.waker());
                if timeout.is_disposed() {
                    Ended::Disposed
                } else {
                    let mut sleep = sleep.as_mut();
                    match super::async_timer::poll_deadline(
                        timeout.timer(),
                        *deadline,
                        &mut sleep,
                        cx,
                    ) {
                        Poll::Ready(()) => Ended::TimedOut,
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        };
        // Finished: the call is dropped before the result is returned, the
        // registration and the sleep with the stage.
        this.call.set(CallSlot::Gone);
        *this.stage = TimedStage::Done;
        timeout.in_flight.decr();
        Poll::Ready(match ended {
            Ended::Done(out) => counted::<R, X, L>(&timeout.shell.counters, out),
            Ended::TimedOut => Err(timeout.timed_out(timeout.config().timeout)),
            Ended::Disposed => Err(Error::Disposed),
        })
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> super::AsyncPolicy for Timeout<T> {
    /// Bounds each future `call` makes by the timeout, dropping it at the
    /// deadline (see [`execute_async`](Timeout::execute_async)). A policy
    /// outside sees [`Error::TimedOut`].
    fn run_async<R, E, F, Fut>(
        &self,
        call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        E: core::fmt::Display,
        F: Fn() -> Fut + Clone,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.run_future::<_, Keep>(call())
    }
}

impl<T: Timer> Drop for Timeout<T> {
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

/// A [`Timeout`] as a cooperative pipeline stage (from
/// [`Timeout::cooperative`]): the call runs on the caller's thread and
/// sees the deadline through [`current_deadline`]; a late result is dropped
/// for [`Error::TimedOut`], but the caller waits for it.
#[derive(Debug)]
pub struct Cooperative<'a, T: Timer = MonotonicClock>(&'a Timeout<T>);

impl<T: Timer> Clone for Cooperative<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Timer> Copy for Cooperative<'_, T> {}

impl<T: Timer> Policy for Cooperative<'_, T> {
    fn run<R, E: core::fmt::Display, F>(&self, mut call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Result<R, Error<E>>,
    {
        self.0.run_cooperative(|_| call(), |e| e)
    }
}

/// Counts a caller in `in_flight` until dropped (also on unwind, and
/// when an async caller's future is dropped).
pub(super) struct InFlight<'a>(&'a StripedGauge);

impl<'a> InFlight<'a> {
    pub(super) fn enter(counter: &'a StripedGauge) -> InFlight<'a> {
        counter.incr();
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decr();
    }
}
