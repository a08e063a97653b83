//! The hedging pattern for threads: [`Hedging`] runs the attempts of a
//! call on its bounded worker pool, driving a core
//! [`HedgeRound`](crate::hedging::HedgeRound).

use core::fmt;
use core::panic::AssertUnwindSafe;
use std::format;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::vec::Vec;

use super::dynamic::{DynPolicy, DynResult, Next};
use super::events::Counter;
use super::pool::{DetachedCall, Refused, WorkerPool};
use super::registry::{self, registered};
use super::shell::{Shell, panic_message};
use super::timeout::{DEFAULT_IDLE_TIMEOUT, current_deadline, with_deadline};
use super::wait::WaitList;
use super::{Error, Event, EventKind, ListenerId, Metrics, PatternKind, Timer};
use crate::clock::{MonotonicClock, Timestamp};
use crate::hedging::{HedgeRound, HedgeStep, HedgingConfig};
use crate::sync::Mutex;
use crate::sync::thread::{self, Thread};

/// Runs extra attempts of a slow call and takes the first success (Polly's
/// and cockatiel's Hedging): a tail-latency tool for idempotent calls.
///
/// A call's first attempt starts at once on a worker of the hedging's
/// pool; when `delay` passes without a success — or at once when an
/// attempt fails — another attempt starts, up to `max_attempts` in all
/// (see [`HedgeRound`](crate::hedging::HedgeRound) for the exact rules).
/// The caller waits on its thread:
///
/// * **The first success wins** and is returned at once. The other
///   attempts are **detached, not stopped** (a blocking closure cannot be
///   stopped): they run on to the end on their workers, which stay busy,
///   and their results are dropped there.
/// * **If every attempt fails**, the call returns the failure of the
///   attempt that finished last ([`Error::Inner`] with its error, or
///   [`Error::Panicked`]).
/// * **A full pool is not an error.** At most `max_workers` attempts (over
///   every call of this instance, losers still running included) run at
///   once. A hedge that finds every worker busy is not launched and the
///   call goes on with the attempts it has (no more hedges for it); a first
///   attempt that finds every worker busy runs on the caller's thread,
///   unhedged. Both count in `rejections` and emit
///   [`EventKind::Rejected`].
///
/// Because attempts run on other threads, possibly at the same time and
/// after the call returned, the closure must be `Fn() + Send + Sync +
/// 'static` and its result `Send + 'static`; share what it needs through
/// `Arc`s. Hedge only calls that are safe to make twice. The caller's
/// [current deadline](super::current_deadline) is every attempt's current
/// deadline.
///
/// A hedging is not a [`Policy`](super::Policy), whose calls are `FnMut`
/// and may borrow: it is a stage of a [`DynPipeline`](super::DynPipeline)
/// (each attempt runs the stages inside it), or wraps a static pipeline
/// shared by `Arc` in its closure.
///
/// Counters: `calls` (finished calls) = `successes` + `failures`;
/// `hedges` (extra attempts launched), `hedges_won` (calls whose result
/// came from an extra attempt), `rejections` (launches the full pool
/// refused), `in_flight` (attempts running now on the pool, losers
/// included).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use stockade::prelude::*;
///
/// let hedging = Hedging::unregistered(
///     "search",
///     HedgingConfig::DEFAULT.with_delay(Duration::from_millis(50)).with_max_attempts(3),
/// )?;
/// let hits = hedging.execute(|| Ok::<_, String>(vec!["stockade"]))?;
/// assert_eq!(hits, ["stockade"]);
/// assert_eq!(hedging.metrics().successes, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Hedging<T: Timer = MonotonicClock> {
    shell: Shell<HedgingConfig, T>,
    pool: Arc<WorkerPool>,
    hedges: Counter,
    won: Counter,
    refused: Counter,
    waiters: WaitList,
}

impl<T: Timer> fmt::Debug for Hedging<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shell.debug(f, "Hedging", |_| {})
    }
}

impl Hedging<MonotonicClock> {
    /// A hedging on the real clock, registered as `name` (see
    /// [`get_hedging`](Self::get_hedging)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] naming `max_attempts` or `max_workers`
    /// (see [`HedgingConfig::validate`]); [`Error::NameTaken`] if a live
    /// hedging is registered as `name`.
    pub fn new(name: &str, config: HedgingConfig) -> Result<Arc<Self>, Error> {
        registry::register(name, || Self::unregistered(name, config))
    }

    fn shell(&self) -> &Shell<HedgingConfig, MonotonicClock> {
        &self.shell
    }
}

registered!(
    Hedging,
    HedgingConfig,
    "hedging",
    get_hedging,
    "Hedging.getHedging"
);

/// Where a call's attempts leave their outcomes for the waiting caller.
struct Race<O> {
    state: Mutex<RaceState<O>>,
}

struct RaceState<O> {
    /// Outcomes not taken yet: the attempt's number and its outcome (`Err`
    /// with a panic's payload).
    outcomes: Vec<(u32, thread::Result<O>)>,
    /// The thread to wake.
    caller: Thread,
    /// `false` once the caller returned: late outcomes are dropped on the
    /// worker.
    open: bool,
}

impl<O> Race<O> {
    fn deliver(&self, attempt: u32, outcome: thread::Result<O>) {
        let mut state = self.state.lock();
        if state.open {
            state.outcomes.push((attempt, outcome));
            let caller = state.caller.clone();
            drop(state);
            caller.unpark();
        } else {
            drop(state);
            drop(outcome);
        }
    }

    fn take(&self) -> Vec<(u32, thread::Result<O>)> {
        core::mem::take(&mut self.state.lock().outcomes)
    }

    /// Closes the race; outcomes still queued are dropped here.
    fn close(&self) {
        let left = {
            let mut state = self.state.lock();
            state.open = false;
            core::mem::take(&mut state.outcomes)
        };
        drop(left);
    }
}

impl<T: Timer> Hedging<T> {
    /// A hedging on `timer` (a [`VirtualClock`](super::VirtualClock) in
    /// tests: the delays pass when it is advanced), not registered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] as for [`new`](Hedging::new).
    pub fn with_timer(
        name: impl Into<Arc<str>>,
        config: HedgingConfig,
        timer: T,
    ) -> Result<Self, Error> {
        config.validate()?;
        let name: Arc<str> = name.into();
        Ok(Hedging {
            pool: Arc::new(WorkerPool::new(
                format!("stockade-hedging:{name}"),
                config.max_workers,
                0,
                DEFAULT_IDLE_TIMEOUT,
            )),
            shell: Shell::new(PatternKind::Hedging, name, config, timer),
            hedges: Counter::default(),
            won: Counter::default(),
            refused: Counter::default(),
            waiters: WaitList::default(),
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        self.shell.name()
    }

    /// The config.
    pub fn config(&self) -> &HedgingConfig {
        self.shell.config()
    }

    /// The timer.
    pub fn timer(&self) -> &T {
        self.shell.timer()
    }

    /// `true` once disposed.
    pub fn is_disposed(&self) -> bool {
        self.shell.is_disposed()
    }

    /// Subscribes a listener to this hedging's events
    /// ([`EventKind::HedgeLaunched`], [`EventKind::HedgeWon`],
    /// [`EventKind::Rejected`] when the pool is full,
    /// [`EventKind::Disposed`]).
    pub fn subscribe(&self, listener: impl Fn(&Event) + Send + Sync + 'static) -> ListenerId {
        self.shell.subscribe(listener)
    }

    /// Removes a listener; `false` if it was not subscribed.
    pub fn unsubscribe(&self, id: ListenerId) -> bool {
        self.shell.unsubscribe(id)
    }

    /// A snapshot of the counters (see the [type docs](Hedging)).
    pub fn metrics(&self) -> Metrics {
        let counters = &self.shell.counters;
        let successes = counters.successes.get();
        let failures = counters.failures.get();
        Metrics {
            calls: successes.wrapping_add(failures),
            successes,
            failures,
            rejections: self.refused.get(),
            hedges: self.hedges.get(),
            hedges_won: self.won.get(),
            in_flight: self.pool.counts().busy as u64,
            ..Metrics::default()
        }
    }

    /// Disposes the hedging: callers waiting for their attempts wake with
    /// [`Error::Disposed`] (the attempts go on), later calls fail with
    /// `Disposed`, idle workers exit (busy ones after their attempt), a
    /// [`EventKind::Disposed`] event is emitted, listeners are removed, and
    /// the registry forgets it. Idempotent.
    pub fn dispose(&self) {
        if !self.shell.begin_dispose() {
            return;
        }
        self.pool.shutdown();
        self.waiters.wake_all();
        self.shell.finish_dispose();
    }
}

impl<T: Timer + Clone + 'static> Hedging<T> {
    /// Runs `f` hedged (see the [type docs](Hedging)): the first attempt to
    /// succeed gives the result.
    ///
    /// # Errors
    ///
    /// The last failure when every attempt failed ([`Error::Inner`] with
    /// `f`'s error, [`Error::Panicked`]); [`Error::Disposed`], also for a
    /// caller waiting when the hedging is disposed.
    pub fn execute<R, E, F>(&self, f: F) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.run_hedged(move || f().map_err(Error::Inner))
    }

    /// A reusable function protected by this hedging (the spec's `wrap`);
    /// the argument is cloned for each attempt.
    pub fn wrap<'a, A, R, E, F>(&'a self, f: F) -> impl Fn(A) -> Result<R, Error<E>> + 'a
    where
        F: Fn(A) -> Result<R, E> + Send + Sync + 'static,
        A: Clone + Send + Sync + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let f = Arc::new(f);
        move |arg: A| {
            let f = Arc::clone(&f);
            self.execute(move || f(arg.clone()))
        }
    }

    /// The hedged call with the error already lifted (a pipeline's stage:
    /// errors of stages inside come back unchanged).
    pub(crate) fn run_hedged<R, E, F>(&self, f: F) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, Error<E>> + Send + Sync + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.running();
        let out = self.race(Arc::new(f));
        running.finish(&out);
        out
    }

    fn race<R, E, F>(&self, f: Arc<F>) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, Error<E>> + Send + Sync + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        let timer = self.timer();
        let deadline = current_deadline();
        let race = Arc::new(Race {
            state: Mutex::new(RaceState {
                outcomes: Vec::new(),
                caller: thread::current(),
                open: true,
            }),
        });
        // Registered before the first check: `dispose` sets the flag, then
        // wakes the registered threads.
        let _waiting = self.waiters.register();
        let mut round = HedgeRound::new(self.config());
        // Dropped when the call returns: losers not started are skipped.
        let mut calls: Vec<DetachedCall<()>> = Vec::new();
        let mut last_failure: Option<Error<E>> = None;
        let out = loop {
            let mut winner = None;
            for (attempt, outcome) in race.take() {
                match outcome {
                    Ok(Ok(value)) => {
                        winner = Some((attempt, value));
                        break;
                    }
                    Ok(Err(e)) => last_failure = Some(e),
                    Err(payload) => {
                        last_failure = Some(Error::Panicked {
                            message: panic_message(payload.as_ref()),
                        });
                    }
                }
                round.failed(timer.now());
            }
            if let Some((attempt, value)) = winner {
                if attempt > 1 {
                    self.won.incr();
                    self.shell.emit(EventKind::HedgeWon { attempt });
                }
                break Ok(value);
            }
            if self.is_disposed() {
                break Err(Error::Disposed);
            }
            let now = timer.now();
            match round.next_step(now) {
                HedgeStep::Launch { attempt } => {
                    let job = {
                        let f = Arc::clone(&f);
                        let race = Arc::clone(&race);
                        move || {
                            let outcome = catch_unwind(AssertUnwindSafe(|| match deadline {
                                Some(d) => with_deadline(d, &*f),
                                None => f(),
                            }));
                            race.deliver(attempt, outcome);
                        }
                    };
                    match self.pool.submit(timer, job) {
                        Ok(call) => {
                            calls.push(call);
                            round.launched(now);
                            if attempt > 1 {
                                self.hedges.incr();
                                self.shell.emit(EventKind::HedgeLaunched { attempt });
                            }
                        }
                        Err(Refused::Shutdown) => break Err(Error::Disposed),
                        Err(Refused::Full) => {
                            self.refused.incr();
                            self.shell.emit(EventKind::Rejected { retry_after: None });
                            if attempt == 1 {
                                // Unhedged, on this thread.
                                break match catch_unwind(AssertUnwindSafe(|| f())) {
                                    Ok(out) => out,
                                    Err(payload) => Err(Error::Panicked {
                                        message: panic_message(payload.as_ref()),
                                    }),
                                };
                            }
                            round.refused();
                        }
                    }
                }
                HedgeStep::WaitUntil(due) => timer.park_until(due),
                HedgeStep::WaitForResult => timer.park_until(Timestamp::from_nanos(u64::MAX)),
                HedgeStep::Failed => {
                    break Err(last_failure.take().unwrap_or(Error::Disposed));
                }
            }
        };
        race.close();
        drop(calls);
        out
    }
}

impl<T: Timer> Drop for Hedging<T> {
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

impl<T: Timer + Clone + 'static> DynPolicy for Hedging<T> {
    /// Each attempt runs the stages inside the hedging, then the call, on
    /// a worker.
    fn run_dyn(&self, next: &Next) -> DynResult {
        let next = next.clone();
        self.run_hedged(move || next.run())
    }
}
