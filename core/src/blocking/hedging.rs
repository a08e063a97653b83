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
#[cfg(feature = "async")]
use crate::sync::{AtomicU64, Ordering};

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
/// * **Which failures hedge**: [`execute`](Self::execute) launches the
///   next attempt at once on every failure;
///   [`execute_if`](Self::execute_if) only on the failures its predicate
///   accepts (Polly's `ShouldHandle`): a failure it rejects is the call's
///   result at once, and the attempts in flight become losers.
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
/// With feature `async`, [`execute_async`](Self::execute_async) hedges
/// futures instead: the attempts run concurrently inside the caller's
/// future (no thread, no spawned task), and the losers are **cancelled**
/// (their futures dropped) as soon as one succeeds. A hedging is also an
/// [`AsyncPolicy`](super::AsyncPolicy).
///
/// Counters: `calls` (finished calls) = `successes` + `failures`;
/// `hedges` (extra attempts launched), `hedges_won` (calls whose result
/// came from an extra attempt), `rejections` (launches refused at the cap),
/// `in_flight` (attempts running now on the pool, losers included, plus
/// the async attempts in flight).
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
    /// Async attempts in flight (feature `async`), capped by
    /// `max_workers` apart from the pool's threads.
    #[cfg(feature = "async")]
    async_in_flight: AtomicU64,
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
            #[cfg(feature = "async")]
            async_in_flight: AtomicU64::new(0),
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
    /// [`EventKind::Rejected`] when the pool is full or, for async calls,
    /// the cap is reached,
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
            in_flight: self.in_flight(),
            ..Metrics::default()
        }
    }

    /// Attempts running now: the pool's busy workers, plus (feature
    /// `async`) the async attempts in flight.
    fn in_flight(&self) -> u64 {
        let threads = self.pool.counts().busy as u64;
        #[cfg(feature = "async")]
        let threads = threads.wrapping_add(self.async_in_flight.load(Ordering::Relaxed));
        threads
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
        self.run_hedged(move || f().map_err(Error::Inner), |_| true)
    }

    /// Runs `f` hedged, launching the next attempt early only for the
    /// failures `hedge_if` accepts (Polly's `ShouldHandle`); otherwise as
    /// [`execute`](Self::execute).
    ///
    /// `hedge_if` sees each failed attempt's error ([`Error::Inner`] with
    /// `f`'s error, or [`Error::Panicked`]) on the caller's thread, as the
    /// outcomes arrive:
    ///
    /// * **Accepted** (`true`): as in [`execute`](Self::execute) — the next
    ///   attempt (if any is left) is launched at once, and if this was the
    ///   last attempt in flight with none left to launch, the call returns
    ///   the failure.
    /// * **Rejected** (`false`): the failure is **final**: the call returns
    ///   it at once, no more attempts are launched, and the attempts still
    ///   in flight are treated as losers (detached: they run on to the end
    ///   on their workers and their outcomes are dropped). An attempt in
    ///   flight wins over a rejected failure only if its success reached
    ///   the caller first: outcomes are taken in the order they arrive, and
    ///   the first success or rejected failure among them decides the call.
    ///
    /// The predicate never sees a success, and never sees the outcome of a
    /// first attempt run unhedged on the caller's thread (a full pool): that
    /// outcome is the call's, as in `execute`. A predicate that panics
    /// unwinds to the caller (the attempts in flight are detached; the call
    /// counts as a failure). [`execute`](Self::execute) is `execute_if`
    /// with a predicate accepting every failure.
    ///
    /// # Errors
    ///
    /// The rejected failure; otherwise as [`execute`](Self::execute).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::time::Duration;
    /// use stockade::blocking::{Error, Hedging};
    /// use stockade::hedging::HedgingConfig;
    ///
    /// #[derive(Debug, PartialEq)]
    /// enum Fetch { Busy, NotFound }
    ///
    /// let config = HedgingConfig::DEFAULT.with_delay(Duration::from_secs(60)).with_max_attempts(3);
    /// let hedging = Hedging::unregistered("lookup", config)?;
    /// let calls = Arc::new(AtomicU32::new(0));
    /// let counted = Arc::clone(&calls);
    /// // Busy: try another replica at once; NotFound: every replica would say so.
    /// let out: Result<(), _> = hedging.execute_if(
    ///     |e| matches!(e, Error::Inner(Fetch::Busy)),
    ///     move || match counted.fetch_add(1, Ordering::SeqCst) {
    ///         0 => Err(Fetch::Busy),
    ///         _ => Err(Fetch::NotFound),
    ///     },
    /// );
    /// assert!(matches!(out, Err(Error::Inner(Fetch::NotFound))));
    /// assert_eq!(calls.load(Ordering::SeqCst), 2); // the third attempt was never launched
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn execute_if<R, E, P, F>(&self, hedge_if: P, f: F) -> Result<R, Error<E>>
    where
        P: FnMut(&Error<E>) -> bool,
        F: Fn() -> Result<R, E> + Send + Sync + 'static,
        R: Send + 'static,
        E: Send + 'static,
    {
        self.run_hedged(move || f().map_err(Error::Inner), hedge_if)
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
    /// `hedge_if` chooses the failures that launch the next attempt (see
    /// [`execute_if`](Self::execute_if)); `|_| true` for every failure.
    pub(crate) fn run_hedged<R, E, F, P>(&self, f: F, hedge_if: P) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, Error<E>> + Send + Sync + 'static,
        P: FnMut(&Error<E>) -> bool,
        R: Send + 'static,
        E: Send + 'static,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.running();
        let out = self.race(Arc::new(f), hedge_if);
        running.finish(&out);
        out
    }

    fn race<R, E, F, P>(&self, f: Arc<F>, mut hedge_if: P) -> Result<R, Error<E>>
    where
        F: Fn() -> Result<R, Error<E>> + Send + Sync + 'static,
        P: FnMut(&Error<E>) -> bool,
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
            // The first success, or the first failure `hedge_if` rejects,
            // in the order the outcomes arrived.
            let mut decided = None;
            for (attempt, outcome) in race.take() {
                let error = match outcome {
                    Ok(Ok(value)) => {
                        decided = Some(Ok((attempt, value)));
                        break;
                    }
                    Ok(Err(e)) => e,
                    Err(payload) => Error::Panicked {
                        message: panic_message(payload.as_ref()),
                    },
                };
                if !hedge_if(&error) {
                    decided = Some(Err(error));
                    break;
                }
                last_failure = Some(error);
                round.failed(timer.now());
            }
            match decided {
                Some(Ok((attempt, value))) => {
                    if attempt > 1 {
                        self.won.incr();
                        self.shell.emit(EventKind::HedgeWon { attempt });
                    }
                    break Ok(value);
                }
                Some(Err(error)) => break Err(error),
                None => {}
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

// --- Async (feature `async`) ------------------------------------------------

/// An async attempt's place under `max_workers`: given back on drop (the
/// attempt finished, lost, or its call was dropped).
#[cfg(feature = "async")]
struct AsyncSlot<'a>(&'a AtomicU64);

#[cfg(feature = "async")]
impl<'a> AsyncSlot<'a> {
    /// A place if fewer than `cap` are taken.
    fn try_take(count: &'a AtomicU64, cap: usize) -> Option<AsyncSlot<'a>> {
        let cap = u64::try_from(cap).unwrap_or(u64::MAX);
        let mut n = count.load(Ordering::Relaxed);
        loop {
            if n >= cap {
                return None;
            }
            match count.compare_exchange_weak(n, n + 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(AsyncSlot(count)),
                Err(now) => n = now,
            }
        }
    }
}

#[cfg(feature = "async")]
impl Drop for AsyncSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One async attempt: its number, its future, its place under the cap
/// (`None` for a first attempt run unhedged).
#[cfg(feature = "async")]
struct AsyncAttempt<'a, Fut> {
    attempt: u32,
    future: core::pin::Pin<std::boxed::Box<Fut>>,
    _slot: Option<AsyncSlot<'a>>,
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> Hedging<T> {
    /// Hedges futures: [`execute`](Self::execute)'s rules (see
    /// [`HedgeRound`](crate::hedging::HedgeRound)) with the attempts run
    /// concurrently **inside the returned future**, which polls them
    /// itself: no thread, no spawned task, any runtime. `call` makes each
    /// attempt's future; the next attempt is made `delay` after the last
    /// one (a sleep on the [`AsyncTimer`](super::AsyncTimer)), or at once
    /// when an attempt fails, up to `max_attempts`.
    ///
    /// * **The first success wins**: every other attempt's future is
    ///   **dropped** (cancelled) before the value is returned.
    /// * **If every attempt fails**, the failure of the attempt that
    ///   finished last comes back as [`Error::Inner`].
    /// * **The cap.** `max_workers` bounds the async attempts in flight
    ///   over every async call of this instance (apart from the pool's
    ///   threads, which async attempts do not use; `in_flight` shows
    ///   both). A hedge refused at the cap is not made and the call goes
    ///   on with the attempts it has (no more hedges for it); a first
    ///   attempt refused at the cap runs anyway, unhedged and outside
    ///   `in_flight` (as the blocking form runs it on the caller's
    ///   thread). Both count in `rejections`
    ///   and emit [`EventKind::Rejected`].
    /// * **Dropping the returned future** drops every attempt and gives
    ///   their places back; the call is not counted.
    ///   [`dispose`](Self::dispose) wakes a call in flight: it drops its
    ///   attempts and returns [`Error::Disposed`].
    ///
    /// Unlike the blocking form, `call` need not be `Send`, `Sync` or
    /// `'static` (nothing leaves the caller's future), and attempts may
    /// borrow. Each attempt's future is boxed (one allocation per
    /// attempt, plus the list of attempts per call). A panic while polling
    /// an attempt drops the others, counts as a failure and continues to
    /// the caller (it is not turned into [`Error::Panicked`]). The
    /// thread's [current deadline](super::current_deadline) does not
    /// apply; bound the call with an async [`Timeout`](super::Timeout).
    ///
    /// # Errors
    ///
    /// The last failure when every attempt failed ([`Error::Inner`]);
    /// [`Error::Disposed`].
    ///
    /// # Examples
    ///
    /// ```
    /// # #[cfg(feature = "tokio")] {
    /// use std::time::Duration;
    /// use stockade::blocking::{Hedging, TokioClock};
    /// use stockade::hedging::HedgingConfig;
    ///
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
    /// # runtime.block_on(async {
    /// let config = HedgingConfig::DEFAULT.with_delay(Duration::from_millis(50));
    /// let hedging = Hedging::with_timer("doc-hedging-async", config, TokioClock::new())?;
    /// let replicas = [Duration::from_secs(10), Duration::from_millis(5)]; // the first is stuck
    /// let next = std::sync::atomic::AtomicUsize::new(0);
    /// let answer = hedging
    ///     .execute_async(|| {
    ///         let replica = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ///         async move {
    ///             tokio::time::sleep(replicas[replica]).await;
    ///             Ok::<_, String>(replica)
    ///         }
    ///     })
    ///     .await?;
    /// assert_eq!(answer, 1); // the hedge, at 55 ms; the stuck attempt was dropped
    /// assert_eq!(hedging.metrics().hedges_won, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    pub async fn execute_async<R, E, F, Fut>(&self, call: F) -> Result<R, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, E>>,
    {
        self.execute_if_async(|_: &Error<E>| true, call).await
    }

    /// [`execute_if`](Self::execute_if) for futures: `hedge_if` chooses
    /// the failures that launch the next attempt at once; a failure it
    /// rejects is **final**: the call returns it, no more attempts are
    /// made, and every attempt still in flight is **dropped** (cancelled)
    /// before it returns. Outcomes are seen in the order the attempts'
    /// futures are polled to completion; the first success or rejected
    /// failure decides. `hedge_if` runs inside the returned future and
    /// sees [`Error::Inner`] only (a panicking attempt continues to the
    /// caller, as in [`execute_async`](Self::execute_async)). Otherwise as
    /// `execute_async`.
    ///
    /// # Errors
    ///
    /// The rejected failure; otherwise as
    /// [`execute_async`](Self::execute_async).
    pub async fn execute_if_async<R, E, P, F, Fut>(
        &self,
        hedge_if: P,
        mut call: F,
    ) -> Result<R, Error<E>>
    where
        P: FnMut(&Error<E>) -> bool,
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, E>>,
    {
        self.run_hedged_async(
            move || {
                let attempt = call();
                async move { attempt.await.map_err(Error::Inner) }
            },
            hedge_if,
        )
        .await
    }

    /// The hedged futures with the error already lifted (an async
    /// pipeline's stage: errors of stages inside come back unchanged);
    /// `hedge_if` as for [`execute_if_async`](Self::execute_if_async).
    async fn run_hedged_async<R, E, F, Fut, P>(&self, call: F, hedge_if: P) -> Result<R, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
        P: FnMut(&Error<E>) -> bool,
    {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let running = self.shell.counters.running_async();
        let out = self.race_async(call, hedge_if).await;
        running.finish(&out);
        out
    }

    async fn race_async<R, E, F, Fut, P>(&self, mut call: F, mut hedge_if: P) -> Result<R, Error<E>>
    where
        F: FnMut() -> Fut,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
        P: FnMut(&Error<E>) -> bool,
    {
        use core::future::poll_fn;
        use core::pin::pin;
        use core::task::Poll;

        let timer = self.timer();
        let cap = self.config().max_workers;
        let mut round = HedgeRound::new(self.config());
        let mut attempts: Vec<AsyncAttempt<'_, Fut>> = Vec::new();
        let mut last_failure: Option<Error<E>> = None;
        // The sleep until the next hedge is due, and its deadline.
        let mut sleep = pin!(None::<T::Sleep>);
        let mut sleep_due = None;
        let mut waiting = self.waiters.register_task();
        let out = poll_fn(|cx| {
            // Registered before the dispose check: a dispose after it
            // wakes this task.
            waiting.set_waker(cx.waker());
            loop {
                let mut i = 0;
                while i < attempts.len() {
                    match attempts[i].future.as_mut().poll(cx) {
                        Poll::Pending => i += 1,
                        Poll::Ready(Ok(value)) => {
                            return Poll::Ready(Ok((attempts[i].attempt, value)));
                        }
                        Poll::Ready(Err(e)) => {
                            if !hedge_if(&e) {
                                // Final: the others are dropped below.
                                return Poll::Ready(Err(e));
                            }
                            last_failure = Some(e);
                            drop(attempts.swap_remove(i));
                            round.failed(timer.now());
                        }
                    }
                }
                if self.is_disposed() {
                    return Poll::Ready(Err(Error::Disposed));
                }
                let now = timer.now();
                match round.next_step(now) {
                    HedgeStep::Launch { attempt } => {
                        let slot = AsyncSlot::try_take(&self.async_in_flight, cap);
                        let unhedged = slot.is_none();
                        if unhedged {
                            self.refused.incr();
                            self.shell.emit(EventKind::Rejected { retry_after: None });
                            if attempt > 1 {
                                round.refused();
                                continue;
                            }
                        }
                        attempts.push(AsyncAttempt {
                            attempt,
                            future: std::boxed::Box::pin(call()),
                            _slot: slot,
                        });
                        round.launched(now);
                        if unhedged {
                            // A first attempt refused at the cap: unhedged.
                            round.refused();
                        }
                        if attempt > 1 {
                            self.hedges.incr();
                            self.shell.emit(EventKind::HedgeLaunched { attempt });
                        }
                    }
                    HedgeStep::WaitUntil(due) => {
                        if sleep_due != Some(due) || sleep.is_none() {
                            sleep.set(Some(timer.sleep_until_async(due)));
                            sleep_due = Some(due);
                        }
                        let Some(mut pending) = sleep.as_mut().as_pin_mut() else {
                            unreachable!("the sleep was set above");
                        };
                        if super::async_timer::poll_deadline(timer, due, &mut pending, cx)
                            .is_pending()
                        {
                            return Poll::Pending;
                        }
                        sleep.set(None);
                        sleep_due = None;
                    }
                    HedgeStep::WaitForResult => return Poll::Pending,
                    HedgeStep::Failed => {
                        return Poll::Ready(Err(last_failure.take().unwrap_or(Error::Disposed)));
                    }
                }
            }
        })
        .await;
        // The losers are cancelled before the result is returned.
        drop(attempts);
        let (attempt, value) = out?;
        if attempt > 1 {
            self.won.incr();
            self.shell.emit(EventKind::HedgeWon { attempt });
        }
        Ok(value)
    }
}

#[cfg(feature = "async")]
impl<T: super::AsyncTimer> super::AsyncPolicy for Hedging<T> {
    /// Hedges the futures `call` makes (see
    /// [`execute_async`](Hedging::execute_async)): each attempt runs the
    /// policies inside the hedging, then the call; the losers' futures
    /// (and what their inner policies hold) are dropped.
    fn run_async<R, E, F, Fut>(
        &self,
        call: F,
    ) -> impl core::future::Future<Output = Result<R, Error<E>>>
    where
        E: core::fmt::Display,
        F: Fn() -> Fut + Clone,
        Fut: core::future::Future<Output = Result<R, Error<E>>>,
    {
        self.run_hedged_async(call, |_| true)
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
        self.run_hedged(move || next.run(), |_| true)
    }
}
