//! The one bounded worker pool of the blocking layer: [`Timeout`]'s
//! detached calls and [`RequestResponsePattern`]'s timed requests run on
//! it, and so do the language bindings' detached calls (Python's
//! `Timeout.execute`).
//!
//! [`WorkerPool`] documents its admission, idle workers, abandoning and
//! shutdown.
//!
//! [`Timeout`]: super::Timeout
//! [`RequestResponsePattern`]: super::RequestResponsePattern

use core::cell::Cell;
use core::fmt;
use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;
use std::boxed::Box;
use std::collections::VecDeque;
use std::panic::catch_unwind;
use std::string::String;
use std::sync::{Arc, OnceLock};
use std::vec::Vec;

use super::Timer;
use crate::clock::Timestamp;
use crate::sync::Mutex;
use crate::sync::thread::{self, Thread};

/// A job for a worker. `run` calls `ready` once its work is done and before
/// it hands the result over, so the worker is free again by the time its
/// caller returns; `cancel` is called instead when the pool shuts down
/// before a worker took the job.
trait Task: Send {
    fn run(self: Box<Self>, ready: &dyn Fn());
    fn cancel(self: Box<Self>);
}

struct State {
    queue: VecDeque<Box<dyn Task>>,
    /// Idle workers parked for a job.
    idle: Vec<Thread>,
    /// Live worker threads.
    workers: usize,
    /// Workers running a job.
    busy: usize,
    shutdown: bool,
}

impl State {
    fn new(shutdown: bool) -> State {
        State {
            queue: VecDeque::new(),
            idle: Vec::new(),
            workers: 0,
            busy: 0,
            shutdown,
        }
    }
}

/// The pool's bookkeeping in one process. A child forked from a process
/// that used the pool inherits the parent's generation (its workers, busy
/// count, idle list and queue, and possibly its lock held by a thread the
/// child does not have) but none of its threads: the child never touches
/// it and starts a generation of its own, chained after the parent's.
struct Generation {
    /// The process this generation belongs to.
    pid: u32,
    state: Mutex<State>,
    /// The generation of a child forked from this process (set in the
    /// child only).
    next: OnceLock<Arc<Generation>>,
}

impl Generation {
    fn new(pid: u32, shutdown: bool) -> Generation {
        Generation {
            pid,
            state: Mutex::new(State::new(shutdown)),
            next: OnceLock::new(),
        }
    }
}

/// Why [`WorkerPool::submit`] did not accept a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refused {
    /// Every worker is busy and the queue is full (or no worker thread
    /// could be started).
    Full,
    /// The pool was [shut down](WorkerPool::shutdown).
    Shutdown,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::Full => "every worker is busy and the queue is full",
            Refused::Shutdown => "the worker pool was shut down",
        })
    }
}

impl core::error::Error for Refused {}

/// A snapshot of a [`WorkerPool`]'s threads and queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PoolCounts {
    /// Live worker threads, busy or idle.
    pub workers: usize,
    /// Workers running a job (including jobs whose callers gave up).
    pub busy: usize,
    /// Jobs waiting for a worker.
    pub queued: usize,
}

/// A bounded pool of worker threads that run detached calls: the one
/// [`Timeout`] and [`RequestResponsePattern`] use (with features `async`
/// and `redis`, each Redis store also runs its async callers' round trips
/// on a pool of its own).
///
/// A call is two steps: [`WorkerPool::submit`] hands a closure to a worker
/// and returns a [`DetachedCall`]; [`DetachedCall::wait_until`] waits for
/// its outcome until a deadline, and may be called again and again with
/// short deadlines (a caller that must check for signals between slices,
/// like Python's Ctrl-C, waits that way). Dropping the handle abandons the
/// call.
///
/// * **Admission.** Workers are started on demand up to `max_workers`; at
///   most `max_queue` jobs wait for a busy worker, and a job beyond that is
///   [refused](Refused::Full) at once. A [`Timeout`] pool never queues
///   (`max_queue = 0`): a call runs now or is refused, so its deadline
///   never passes in a queue. All sums saturate: `usize::MAX` means
///   "unbounded".
/// * **Idle workers.** A worker idle for `idle_timeout` exits. The idle
///   time is measured on the [`Timer`] given to `submit` (the worker keeps
///   a clone): [`MonotonicClock`] for real time, a
///   [`VirtualClock`](super::VirtualClock) in tests.
/// * **Abandoning.** A job whose handle was dropped before a worker picked
///   it is skipped. After its caller gave up, a running job **goes on** on
///   its worker and its late result is dropped there: a blocking closure
///   cannot be stopped from outside.
/// * **Shutdown.** [`WorkerPool::shutdown`] refuses later jobs
///   ([`Refused::Shutdown`]), cancels the queued ones (their handles get
///   [`WaitError::Cancelled`]), wakes idle workers to exit; busy workers
///   exit after their job. The pool does not shut down by itself when
///   dropped: its workers hold it until they idle out, so owners call
///   `shutdown` when they go away.
/// * **After `fork`.** A child process inherits none of the parent's
///   worker threads. The pool notices the new process id on its next use
///   in the child and starts there with fresh bookkeeping: no workers, no
///   busy ones, no queue, the full `max_workers` available; the child's
///   workers are started on demand as usual. The parent's jobs (queued or
///   running at the fork) are not the child's: they never run in the
///   child, and a [`DetachedCall`] of the parent's that the child waits
///   for gets no outcome before its deadline. The parent's pool is
///   unaffected. A pool shut down before the fork stays shut down in the
///   child. (The check is the process id: a grandchild that never used the
///   pool between forks and got the pid of the process that last used it
///   is the one case it cannot tell apart, which needs that process to
///   have exited and its pid to be reused.)
///
/// [`Timeout`]: super::Timeout
/// [`RequestResponsePattern`]: super::RequestResponsePattern
/// [`MonotonicClock`]: crate::clock::MonotonicClock
///
/// # Examples
///
/// A caller that waits in short slices, doing something between them
/// (Python checks for Ctrl-C there):
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use stockade::blocking::{WaitError, WorkerPool};
/// use stockade::clock::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock::new();
/// let pool = Arc::new(WorkerPool::new("doc-worker", 2, 0, Duration::from_secs(10)));
/// let mut call = pool.submit(&clock, || 6 * 7)?;
/// let deadline = clock.now().saturating_add(Duration::from_secs(5));
/// let outcome = loop {
///     let slice_end = clock.now().saturating_add(Duration::from_millis(20)).min(deadline);
///     match call.wait_until(&clock, slice_end) {
///         Ok(outcome) => break outcome,
///         Err(WaitError::TimedOut) if clock.now() < deadline => {} // check signals here
///         Err(e) => panic!("no answer: {e}"),
///     }
/// };
/// assert_eq!(outcome.ok(), Some(42)); // `Err` would carry a panic's payload
/// pool.shutdown();
/// # Ok::<(), stockade::blocking::Refused>(())
/// ```
pub struct WorkerPool {
    /// The bookkeeping of the process that created the pool; a forked
    /// child's is chained after it (see [`Generation`]).
    first: Arc<Generation>,
    /// [`shutdown`](Self::shutdown) was called (in this process or before
    /// a fork): a child's new generation starts shut down.
    shut_down: AtomicBool,
    thread_name: Arc<str>,
    max_workers: usize,
    max_queue: usize,
    idle_timeout: Duration,
}

impl fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("thread_name", &self.thread_name)
            .field("max_workers", &self.max_workers)
            .field("max_queue", &self.max_queue)
            .field("idle_timeout", &self.idle_timeout)
            .field("counts", &self.counts())
            .finish()
    }
}

impl WorkerPool {
    /// A pool with no threads yet: workers named `thread_name` are started
    /// on demand up to `max_workers`, at most `max_queue` jobs wait for a
    /// busy worker, and a worker idle for `idle_timeout` exits.
    /// `max_workers = 0` refuses every job; `usize::MAX` means "unbounded".
    pub fn new(
        thread_name: impl Into<Arc<str>>,
        max_workers: usize,
        max_queue: usize,
        idle_timeout: Duration,
    ) -> WorkerPool {
        WorkerPool {
            first: Arc::new(Generation::new(std::process::id(), false)),
            shut_down: AtomicBool::new(false),
            thread_name: thread_name.into(),
            max_workers,
            max_queue,
            idle_timeout,
        }
    }

    /// The most worker threads.
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// The most jobs waiting for a worker.
    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// This process's generation: the last one in the chain, or a new
    /// one after it when the last belongs to another process (this one
    /// is a forked child).
    fn generation(&self) -> &Arc<Generation> {
        let pid = std::process::id();
        let mut generation = &self.first;
        loop {
            if let Some(next) = generation.next.get() {
                generation = next;
            } else if generation.pid == pid {
                return generation;
            } else {
                let shut_down = self.shut_down.load(Ordering::Acquire);
                generation = generation
                    .next
                    .get_or_init(|| Arc::new(Generation::new(pid, shut_down)));
            }
        }
    }

    /// Workers, busy workers and queued jobs now (in this process: see
    /// "After `fork`" above).
    pub fn counts(&self) -> PoolCounts {
        let state = self.generation().state.lock();
        PoolCounts {
            workers: state.workers,
            busy: state.busy,
            queued: state.queue.len(),
        }
    }

    /// Hands `job` to a worker (starting one if every live worker is
    /// taken, queueing it if none can be started) and returns its handle.
    /// A new worker measures its idle time on a clone of `timer`. A panic
    /// in `job` is caught on the worker and comes back as the outcome's
    /// `Err`.
    ///
    /// # Errors
    ///
    /// [`Refused::Full`] when `max_workers` are busy and `max_queue` jobs
    /// already wait; [`Refused::Shutdown`] after [`shutdown`](Self::shutdown).
    pub fn submit<T, O, F>(self: &Arc<Self>, timer: &T, job: F) -> Result<DetachedCall<O>, Refused>
    where
        T: Timer + Clone + 'static,
        F: FnOnce() -> O + Send + 'static,
        O: Send + 'static,
    {
        let handoff = Arc::new(Handoff {
            state: Mutex::new(Waiting {
                slot: Slot::Pending,
                caller: thread::current(),
            }),
        });
        let task = Box::new(Detached {
            job,
            handoff: Arc::clone(&handoff),
        });
        self.enqueue(task, timer)?;
        Ok(DetachedCall { handoff })
    }

    /// Queues `task` for a free worker, starting one if every live worker
    /// is taken. On refusal the task is dropped (never run).
    fn enqueue<T: Timer + Clone + 'static>(
        self: &Arc<Self>,
        task: Box<dyn Task>,
        timer: &T,
    ) -> Result<(), Refused> {
        let generation = self.generation();
        let mut state = generation.state.lock();
        if state.shutdown {
            return Err(Refused::Shutdown);
        }
        let free = state.workers - state.busy;
        let startable = self.max_workers.saturating_sub(state.workers);
        let waiting = state.queue.len().saturating_add(1);
        if waiting
            > free
                .saturating_add(startable)
                .saturating_add(self.max_queue)
        {
            return Err(Refused::Full);
        }
        if waiting > free && startable > 0 {
            let pool = Arc::clone(self);
            let home = Arc::clone(generation);
            let timer = timer.clone();
            let spawned = thread::Builder::new()
                .name(String::from(&*self.thread_name))
                .spawn(move || pool.work(&home, &timer));
            match spawned {
                Ok(_) => state.workers += 1,
                // No worker now and none could be started: nobody would run it.
                Err(_) if state.workers == 0 => return Err(Refused::Full),
                Err(_) => {}
            }
        }
        state.queue.push_back(task);
        if let Some(worker) = state.idle.pop() {
            worker.unpark();
        }
        Ok(())
    }

    /// A worker's life: run jobs, wait idle for more, exit after
    /// `idle_timeout` without work or at shutdown.
    /// A worker works for the generation that started it.
    fn work<T: Timer>(&self, generation: &Generation, timer: &T) {
        let me = thread::current();
        let mut idle_until: Option<Timestamp> = None;
        let mut state = generation.state.lock();
        loop {
            if let Some(task) = state.queue.pop_front() {
                state.busy += 1;
                drop(state);
                let done = Cell::new(false);
                let ready = || {
                    if !done.replace(true) {
                        generation.state.lock().busy -= 1;
                    }
                };
                // Tasks catch their own panics; this keeps the counts right
                // should anything else unwind.
                let _ = catch_unwind(AssertUnwindSafe(|| task.run(&ready)));
                ready();
                idle_until = None;
                state = generation.state.lock();
                continue;
            }
            if state.shutdown {
                state.workers -= 1;
                return;
            }
            let now = timer.now();
            let until = *idle_until.get_or_insert(now.saturating_add(self.idle_timeout));
            if now >= until {
                state.workers -= 1;
                return;
            }
            state.idle.push(me.clone());
            drop(state);
            timer.park_until(until);
            state = generation.state.lock();
            if let Some(i) = state.idle.iter().position(|t| t.id() == me.id()) {
                state.idle.swap_remove(i);
            }
        }
    }

    /// Stops the pool: later jobs are refused, queued jobs are cancelled
    /// (their handles get [`WaitError::Cancelled`]), idle workers exit now,
    /// busy ones after their job. Idempotent.
    pub fn shutdown(&self) {
        self.shut_down.store(true, Ordering::Release);
        let cancelled = {
            let mut state = self.generation().state.lock();
            state.shutdown = true;
            for worker in state.idle.drain(..) {
                worker.unpark();
            }
            core::mem::take(&mut state.queue)
        };
        for task in cancelled {
            task.cancel();
        }
    }
}

/// Where a detached job leaves its outcome for the waiting caller.
struct Handoff<O> {
    state: Mutex<Waiting<O>>,
}

struct Waiting<O> {
    slot: Slot<O>,
    /// The thread to unpark when the slot settles: the last one to wait.
    caller: Thread,
}

enum Slot<O> {
    Pending,
    Done(thread::Result<O>),
    /// The handle was dropped: the result is not wanted.
    Abandoned,
    /// The pool shut down before a worker took the job, or the outcome was
    /// already taken.
    Cancelled,
}

impl<O> Handoff<O> {
    /// Settles a pending slot and wakes the caller; `to` is dropped here
    /// (on the worker) if the caller gave up.
    fn settle(&self, to: Slot<O>) {
        let mut state = self.state.lock();
        if matches!(state.slot, Slot::Pending) {
            state.slot = to;
            let caller = state.caller.clone();
            drop(state);
            caller.unpark();
        } else {
            drop(state);
            drop(to);
        }
    }
}

struct Detached<F, O> {
    job: F,
    handoff: Arc<Handoff<O>>,
}

impl<F, O> Task for Detached<F, O>
where
    F: FnOnce() -> O + Send,
    O: Send,
{
    fn run(self: Box<Self>, ready: &dyn Fn()) {
        if matches!(self.handoff.state.lock().slot, Slot::Abandoned) {
            return; // the caller gave up before the job started
        }
        let outcome = catch_unwind(AssertUnwindSafe(self.job));
        ready();
        self.handoff.settle(Slot::Done(outcome));
    }

    fn cancel(self: Box<Self>) {
        self.handoff.settle(Slot::Cancelled);
    }
}

/// Why [`DetachedCall::wait_until`] returned without an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitError {
    /// The deadline passed first; the call goes on and may be waited for
    /// again.
    TimedOut,
    /// No outcome will come: the pool shut down before a worker took the
    /// job, or an earlier wait already returned the outcome.
    Cancelled,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitError::TimedOut => "the detached call has not finished by the deadline",
            WaitError::Cancelled => "the detached call will not give an outcome",
        })
    }
}

impl core::error::Error for WaitError {}

/// A job handed to a [`WorkerPool`], from [`WorkerPool::submit`].
///
/// Dropping it abandons the call: a job not started yet is skipped, and
/// the late result of a running one is dropped on its worker (a result
/// already delivered is dropped with the handle).
#[must_use = "dropping a DetachedCall abandons the job"]
pub struct DetachedCall<O> {
    handoff: Arc<Handoff<O>>,
}

impl<O> fmt::Debug for DetachedCall<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.handoff.state.lock().slot {
            Slot::Pending => "pending",
            Slot::Done(_) => "done",
            Slot::Abandoned => "abandoned",
            Slot::Cancelled => "cancelled",
        };
        f.debug_struct("DetachedCall")
            .field("state", &state)
            .finish()
    }
}

/// How a wait ended.
enum Waited<O> {
    Outcome(thread::Result<O>),
    Failed(WaitError),
    /// The caller's `stop()` turned true.
    Stopped,
}

impl<O> DetachedCall<O> {
    /// Waits on `timer` until the job's outcome or `deadline`, whichever
    /// comes first (a `deadline` already past only takes an outcome that is
    /// there). The outcome is the job's value, or `Err` with the payload of
    /// its panic. Call it again after [`WaitError::TimedOut`] to wait
    /// longer, from any thread.
    ///
    /// # Errors
    ///
    /// [`WaitError::TimedOut`] when `deadline` passed first;
    /// [`WaitError::Cancelled`] when no outcome will come.
    pub fn wait_until<T: Timer + ?Sized>(
        &mut self,
        timer: &T,
        deadline: Timestamp,
    ) -> Result<std::thread::Result<O>, WaitError> {
        match self.wait_unless(timer, deadline, || false) {
            Waited::Outcome(outcome) => Ok(outcome),
            Waited::Failed(e) => Err(e),
            Waited::Stopped => Err(WaitError::TimedOut), // `stop` is never true
        }
    }

    /// [`wait_until`](Self::wait_until) that also ends when `stop()` turns
    /// true: it is checked after each wake-up, so whoever makes it true
    /// must unpark this thread (see `WaitList`).
    fn wait_unless<T: Timer + ?Sized>(
        &mut self,
        timer: &T,
        deadline: Timestamp,
        stop: impl Fn() -> bool,
    ) -> Waited<O> {
        let me = thread::current();
        {
            let mut state = self.handoff.state.lock();
            if state.caller.id() != me.id() {
                state.caller = me;
            }
        }
        loop {
            {
                let mut state = self.handoff.state.lock();
                match core::mem::replace(&mut state.slot, Slot::Pending) {
                    Slot::Done(outcome) => {
                        state.slot = Slot::Cancelled;
                        return Waited::Outcome(outcome);
                    }
                    Slot::Cancelled | Slot::Abandoned => {
                        state.slot = Slot::Cancelled;
                        return Waited::Failed(WaitError::Cancelled);
                    }
                    Slot::Pending => {}
                }
            }
            if stop() {
                return Waited::Stopped;
            }
            if timer.now() >= deadline {
                return Waited::Failed(WaitError::TimedOut);
            }
            timer.park_until(deadline);
        }
    }
}

impl<O> Drop for DetachedCall<O> {
    fn drop(&mut self) {
        let mut state = self.handoff.state.lock();
        let left = core::mem::replace(&mut state.slot, Slot::Abandoned);
        drop(state);
        drop(left);
    }
}

/// Where a job awaited by a task is (see [`WorkerPool::submit_async`]).
#[cfg(all(feature = "async", feature = "redis"))]
enum Landed<F, O> {
    /// Not taken by a worker yet; the waker of the task's last poll.
    Queued(F, Option<core::task::Waker>),
    /// Running on a worker.
    Running(Option<core::task::Waker>),
    /// Done; not taken yet.
    Done(thread::Result<O>),
    /// The task gave up before a worker took the job: the worker drops it
    /// unrun.
    Abandoned(F),
    /// The pool shut down before a worker took the job: it goes back to
    /// the task unrun.
    Returned(F),
    /// Taken by the task, or the task gave up while it ran.
    Gone,
}

/// A job whose outcome a task awaits through its waker.
#[cfg(all(feature = "async", feature = "redis"))]
struct AsyncJob<F, O> {
    landing: Arc<Mutex<Landed<F, O>>>,
}

#[cfg(all(feature = "async", feature = "redis"))]
impl<F, O> Task for AsyncJob<F, O>
where
    F: FnOnce() -> O + Send,
    O: Send,
{
    fn run(self: Box<Self>, ready: &dyn Fn()) {
        let mut landing = self.landing.lock();
        let job = match core::mem::replace(&mut *landing, Landed::Gone) {
            Landed::Queued(job, waker) => {
                *landing = Landed::Running(waker);
                job
            }
            Landed::Abandoned(job) => {
                drop(landing);
                // Nobody wants it: dropped unrun, here on the worker.
                drop(job);
                return;
            }
            other => {
                *landing = other;
                return;
            }
        };
        drop(landing);
        let outcome = catch_unwind(AssertUnwindSafe(job));
        ready();
        let mut landing = self.landing.lock();
        if let Landed::Running(waker) = &mut *landing {
            let waker = waker.take();
            *landing = Landed::Done(outcome);
            drop(landing);
            if let Some(waker) = waker {
                waker.wake();
            }
        } else {
            drop(landing);
            // Nobody wants it: dropped here, on the worker.
            drop(outcome);
        }
    }

    fn cancel(self: Box<Self>) {
        let mut landing = self.landing.lock();
        match core::mem::replace(&mut *landing, Landed::Gone) {
            Landed::Queued(job, waker) => {
                *landing = Landed::Returned(job);
                drop(landing);
                if let Some(waker) = waker {
                    waker.wake();
                }
            }
            Landed::Abandoned(job) => {
                drop(landing);
                drop(job);
            }
            other => *landing = other,
        }
    }
}

/// A job that always runs once a worker takes it (nobody awaits it).
#[cfg(all(feature = "async", feature = "redis"))]
struct Spawned<F>(F);

#[cfg(all(feature = "async", feature = "redis"))]
impl<F: FnOnce() + Send> Task for Spawned<F> {
    fn run(self: Box<Self>, ready: &dyn Fn()) {
        let _ = catch_unwind(AssertUnwindSafe(self.0));
        ready();
    }

    fn cancel(self: Box<Self>) {}
}

#[cfg(all(feature = "async", feature = "redis"))]
impl WorkerPool {
    /// Hands `job` to a worker, as [`submit`](Self::submit) does (idle
    /// time measured on [`MonotonicClock`](crate::clock::MonotonicClock)),
    /// for a task to await: the returned [`AsyncCall`] is a future woken
    /// through the task's waker when the job is done (no thread waits for
    /// it).
    ///
    /// Dropping the `AsyncCall` abandons the job, and whatever the job or
    /// its outcome owns is dropped on a worker, never on the task's thread
    /// (so a drop that hands back what the job took, with a blocking call,
    /// does not block the task's thread): a job not started is dropped
    /// unrun by the worker that takes it; a running one goes on and its
    /// outcome is dropped on its worker; an outcome delivered and not taken
    /// is handed to a worker to drop ([`spawn`](Self::spawn); dropped on
    /// the dropping thread only if the pool refuses it).
    ///
    /// # Errors
    ///
    /// `job` back, unrun, when the pool refuses it ([`Refused`]).
    pub(crate) fn submit_async<O, F>(self: &Arc<Self>, job: F) -> Result<AsyncCall<F, O>, F>
    where
        F: FnOnce() -> O + Send + 'static,
        O: Send + 'static,
    {
        let landing = Arc::new(Mutex::new(Landed::Queued(job, None)));
        let task = Box::new(AsyncJob {
            landing: Arc::clone(&landing),
        });
        if self
            .enqueue(task, &crate::clock::MonotonicClock::new())
            .is_err()
        {
            // The task was dropped unrun: the job is still in the landing.
            return match core::mem::replace(&mut *landing.lock(), Landed::Gone) {
                Landed::Queued(job, _) => Err(job),
                _ => unreachable!("a refused job never reaches a worker"),
            };
        }
        Ok(AsyncCall {
            landing,
            pool: Arc::clone(self),
        })
    }

    /// Hands `job` to a worker and forgets it: it runs once a worker takes
    /// it (not if the pool shuts down first). A panic in it is caught.
    ///
    /// # Errors
    ///
    /// As [`submit`](Self::submit); the job is dropped unrun, here.
    pub(crate) fn spawn<F>(self: &Arc<Self>, job: F) -> Result<(), Refused>
    where
        F: FnOnce() + Send + 'static,
    {
        self.enqueue(Box::new(Spawned(job)), &crate::clock::MonotonicClock::new())
    }
}

/// A job handed to a [`WorkerPool`] by [`WorkerPool::submit_async`]: a
/// future of its outcome, or of the job itself, unrun, when the pool shut
/// down before a worker took it. A panic in the job resumes on the task
/// that polls.
#[cfg(all(feature = "async", feature = "redis"))]
pub(crate) struct AsyncCall<F: Send + 'static, O: Send + 'static> {
    landing: Arc<Mutex<Landed<F, O>>>,
    pool: Arc<WorkerPool>,
}

#[cfg(all(feature = "async", feature = "redis"))]
impl<F: Send + 'static, O: Send + 'static> core::future::Future for AsyncCall<F, O> {
    type Output = Result<O, F>;

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<Result<O, F>> {
        use core::task::Poll;
        let mut landing = self.landing.lock();
        let remember = |known: Option<core::task::Waker>| match known {
            Some(w) if w.will_wake(cx.waker()) => Some(w),
            _ => Some(cx.waker().clone()),
        };
        match core::mem::replace(&mut *landing, Landed::Gone) {
            Landed::Done(Ok(value)) => Poll::Ready(Ok(value)),
            Landed::Done(Err(panic)) => {
                drop(landing);
                std::panic::resume_unwind(panic)
            }
            Landed::Returned(job) => Poll::Ready(Err(job)),
            Landed::Queued(job, waker) => {
                *landing = Landed::Queued(job, remember(waker));
                Poll::Pending
            }
            Landed::Running(waker) => {
                *landing = Landed::Running(remember(waker));
                Poll::Pending
            }
            Landed::Abandoned(_) | Landed::Gone => {
                drop(landing);
                panic!("a detached async call polled after it completed")
            }
        }
    }
}

#[cfg(all(feature = "async", feature = "redis"))]
impl<F: Send + 'static, O: Send + 'static> Drop for AsyncCall<F, O> {
    fn drop(&mut self) {
        let mut landing = self.landing.lock();
        match core::mem::replace(&mut *landing, Landed::Gone) {
            // The worker that takes it drops it.
            Landed::Queued(job, _) => *landing = Landed::Abandoned(job),
            Landed::Done(outcome) => {
                drop(landing);
                // A refused job is dropped unrun (the outcome with it, here).
                let _ = self.pool.spawn(move || drop(outcome));
            }
            // Running: its worker drops the outcome. Returned: the pool is
            // shut down, nobody else can drop it.
            _ => {}
        }
    }
}

/// Why [`run_detached`] gave no outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoOutcome {
    /// The pool was full.
    Full,
    /// The pool shut down or `disposed()` turned true.
    Disposed,
    /// The deadline passed first.
    TimedOut,
}

/// Runs `job` on `pool` and waits on `timer` until it is done, `deadline`
/// passes, or `disposed()` turns true (the disposing thread must unpark the
/// waiter: see `WaitList`). A panic in `job` comes back as `Ok(Err(payload))`.
/// Given up, the call is abandoned (see [`DetachedCall`]).
pub(crate) fn run_detached<T, O>(
    pool: &Arc<WorkerPool>,
    timer: &T,
    deadline: Timestamp,
    disposed: impl Fn() -> bool,
    job: impl FnOnce() -> O + Send + 'static,
) -> Result<thread::Result<O>, NoOutcome>
where
    T: Timer + Clone + 'static,
    O: Send + 'static,
{
    if timer.now() >= deadline {
        return Err(NoOutcome::TimedOut);
    }
    let mut call = pool.submit(timer, job).map_err(|refused| match refused {
        Refused::Full => NoOutcome::Full,
        Refused::Shutdown => NoOutcome::Disposed,
    })?;
    match call.wait_unless(timer, deadline, disposed) {
        Waited::Outcome(outcome) => Ok(outcome),
        Waited::Failed(WaitError::TimedOut) => Err(NoOutcome::TimedOut),
        Waited::Failed(WaitError::Cancelled) | Waited::Stopped => Err(NoOutcome::Disposed),
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::blocking::VirtualClock;
    use crate::clock::{Clock, MonotonicClock};
    use core::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    /// Bounds every wait on another thread in these tests.
    const WATCHDOG: Duration = Duration::from_secs(10);

    fn far() -> Timestamp {
        Timestamp::from_nanos(u64::MAX)
    }

    /// A job that blocks until the gate is opened (or the watchdog
    /// fires), then returns `value`.
    struct Gate {
        open: mpsc::Sender<()>,
        started: mpsc::Receiver<()>,
    }

    impl Gate {
        /// Waits until the job runs on a worker.
        fn started(&self) {
            self.started
                .recv_timeout(WATCHDOG)
                .expect("job never started");
        }

        fn open(&self) {
            self.open.send(()).unwrap();
        }
    }

    fn gated<O: Send + 'static>(value: O) -> (Gate, impl FnOnce() -> O + Send) {
        let (open, gate) = mpsc::channel::<()>();
        let (started_tx, started) = mpsc::channel::<()>();
        let job = move || {
            let _ = started_tx.send(());
            gate.recv_timeout(WATCHDOG).expect("gate never opened");
            value
        };
        (Gate { open, started }, job)
    }

    fn within_watchdog(clock: &MonotonicClock) -> Timestamp {
        clock.now().saturating_add(WATCHDOG)
    }

    #[test]
    fn unbounded_options_do_not_overflow_admission() {
        let clock = Arc::new(VirtualClock::new());
        let pool = Arc::new(WorkerPool::new(
            "t",
            usize::MAX,
            usize::MAX,
            Duration::from_secs(1),
        ));
        let out = run_detached(&pool, &clock, far(), || false, || 7);
        assert_eq!(out.ok().and_then(Result::ok), Some(7));
        pool.shutdown();
    }

    #[test]
    fn a_full_pool_refuses() {
        let clock = Arc::new(VirtualClock::new());
        let pool = Arc::new(WorkerPool::new("t", 0, 0, Duration::from_secs(1)));
        let out = run_detached(&pool, &clock, far(), || false, || 7);
        assert_eq!(out.err(), Some(NoOutcome::Full));
    }

    #[test]
    fn a_busy_pool_without_queue_refuses_then_shuts_down() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(60)));
        let (gate, job) = gated(1);
        let mut first = pool.submit(&clock, job).unwrap();
        gate.started();
        assert_eq!(pool.submit(&clock, || 2).err(), Some(Refused::Full));
        gate.open();
        assert_eq!(
            first
                .wait_until(&clock, within_watchdog(&clock))
                .unwrap()
                .ok(),
            Some(1)
        );
        assert_eq!(
            pool.counts(),
            PoolCounts {
                workers: 1,
                busy: 0,
                queued: 0
            }
        );
        pool.shutdown();
        assert_eq!(pool.submit(&clock, || 3).err(), Some(Refused::Shutdown));
    }

    #[test]
    fn a_wait_in_slices_times_out_until_the_job_is_done() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(60)));
        let (gate, job) = gated(42);
        let mut call = pool.submit(&clock, job).unwrap();
        gate.started();
        // The job cannot finish before the gate opens: every slice ends
        // without an outcome.
        for _ in 0..3 {
            let slice_end = clock.now().saturating_add(Duration::from_millis(5));
            assert_eq!(
                call.wait_until(&clock, slice_end).err(),
                Some(WaitError::TimedOut)
            );
        }
        assert_eq!(pool.counts().busy, 1);
        gate.open();
        let outcome = call.wait_until(&clock, within_watchdog(&clock));
        assert_eq!(outcome.unwrap().ok(), Some(42));
        // The outcome is taken once.
        assert_eq!(
            call.wait_until(&clock, clock.now()).err(),
            Some(WaitError::Cancelled)
        );
        pool.shutdown();
    }

    #[test]
    fn a_panic_is_the_outcome_and_the_worker_survives() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(60)));
        let mut call = pool.submit(&clock, || -> u8 { panic!("boom") }).unwrap();
        let payload = call
            .wait_until(&clock, within_watchdog(&clock))
            .unwrap()
            .unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom"));
        let mut next = pool.submit(&clock, || 5).unwrap();
        assert_eq!(
            next.wait_until(&clock, within_watchdog(&clock))
                .unwrap()
                .ok(),
            Some(5)
        );
        assert_eq!(pool.counts().workers, 1);
        pool.shutdown();
    }

    #[test]
    fn dropping_the_handle_skips_a_job_not_started() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 2, Duration::from_secs(60)));
        let (gate, job) = gated(1);
        let mut first = pool.submit(&clock, job).unwrap();
        gate.started();
        let ran = Arc::new(AtomicBool::new(false));
        let skipped = {
            let ran = Arc::clone(&ran);
            pool.submit(&clock, move || ran.store(true, Ordering::SeqCst))
                .unwrap()
        };
        // One worker, FIFO: `last` runs after the dropped job was handled.
        let mut last = pool.submit(&clock, || 3).unwrap();
        assert_eq!(pool.counts().queued, 2);
        drop(skipped);
        gate.open();
        assert_eq!(
            first
                .wait_until(&clock, within_watchdog(&clock))
                .unwrap()
                .ok(),
            Some(1)
        );
        assert_eq!(
            last.wait_until(&clock, within_watchdog(&clock))
                .unwrap()
                .ok(),
            Some(3)
        );
        assert!(!ran.load(Ordering::SeqCst), "an abandoned job ran");
        pool.shutdown();
    }

    /// Reports the name of the thread that drops it.
    struct ReportsDrop(mpsc::Sender<Option<String>>);

    impl Drop for ReportsDrop {
        fn drop(&mut self) {
            let name = std::thread::current().name().map(String::from);
            let _ = self.0.send(name);
        }
    }

    #[test]
    fn a_late_result_is_dropped_on_the_worker() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new(
            "late-worker",
            1,
            0,
            Duration::from_secs(60),
        ));
        let (dropped_tx, dropped) = mpsc::channel();
        let (gate, job) = gated(ReportsDrop(dropped_tx));
        let mut call = pool.submit(&clock, job).unwrap();
        gate.started();
        assert_eq!(
            call.wait_until(&clock, clock.now()).err(),
            Some(WaitError::TimedOut)
        );
        drop(call);
        gate.open();
        let dropped_on = dropped
            .recv_timeout(WATCHDOG)
            .expect("result never dropped");
        assert_eq!(dropped_on.as_deref(), Some("late-worker"));
        pool.shutdown();
    }

    #[test]
    fn shutdown_cancels_a_queued_job() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 1, Duration::from_secs(60)));
        let (gate, job) = gated(1);
        let mut running = pool.submit(&clock, job).unwrap();
        gate.started();
        let mut queued = pool.submit(&clock, || 2).unwrap();
        pool.shutdown();
        assert_eq!(
            queued.wait_until(&clock, within_watchdog(&clock)).err(),
            Some(WaitError::Cancelled)
        );
        // A running job still delivers its outcome.
        gate.open();
        assert_eq!(
            running
                .wait_until(&clock, within_watchdog(&clock))
                .unwrap()
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn a_call_can_be_waited_for_from_another_thread() {
        let clock = MonotonicClock::new();
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(60)));
        let (gate, job) = gated(9);
        let call = pool.submit(&clock, job).unwrap();
        gate.started();
        let (done_tx, done) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let mut call = call;
            let clock = MonotonicClock::new();
            let _ = done_tx.send(call.wait_until(&clock, within_watchdog(&clock)).ok());
        });
        gate.open();
        let got = done.recv_timeout(WATCHDOG).expect("waiter never woke");
        assert_eq!(got.and_then(Result::ok), Some(9));
        waiter.join().unwrap();
        pool.shutdown();
    }

    /// Polls `call` once with a waker that counts its wake-ups.
    #[cfg(all(feature = "async", feature = "redis"))]
    fn poll_counting<F: Send + 'static, O: Send + 'static>(
        call: &mut AsyncCall<F, O>,
        woken: &Arc<WakeCount>,
    ) -> core::task::Poll<Result<O, F>> {
        let waker = core::task::Waker::from(Arc::clone(woken));
        core::future::Future::poll(
            core::pin::Pin::new(call),
            &mut core::task::Context::from_waker(&waker),
        )
    }

    #[cfg(all(feature = "async", feature = "redis"))]
    #[derive(Default)]
    struct WakeCount(core::sync::atomic::AtomicUsize);

    #[cfg(all(feature = "async", feature = "redis"))]
    impl std::task::Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[cfg(all(feature = "async", feature = "redis"))]
    #[test]
    fn an_async_call_wakes_its_task_with_the_outcome() {
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(60)));
        let (gate, job) = gated(7);
        let mut call = pool.submit_async(job).unwrap_or_else(|_| panic!("refused"));
        let woken = Arc::new(WakeCount::default());
        assert!(poll_counting(&mut call, &woken).is_pending());
        gate.started();
        gate.open();
        let start = std::time::Instant::now();
        while woken.0.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < WATCHDOG, "the task was never woken");
            std::thread::yield_now();
        }
        assert!(matches!(
            poll_counting(&mut call, &woken),
            core::task::Poll::Ready(Ok(7))
        ));
        pool.shutdown();
    }

    #[cfg(all(feature = "async", feature = "redis"))]
    #[test]
    fn an_abandoned_async_call_drops_its_late_outcome_on_a_worker() {
        let pool = Arc::new(WorkerPool::new(
            "late-async",
            1,
            usize::MAX,
            Duration::from_secs(60),
        ));
        // Running when abandoned: its outcome is dropped on its worker.
        let (dropped_tx, dropped) = mpsc::channel();
        let (gate, job) = gated(ReportsDrop(dropped_tx.clone()));
        let mut call = pool.submit_async(job).unwrap_or_else(|_| panic!("refused"));
        let woken = Arc::new(WakeCount::default());
        assert!(poll_counting(&mut call, &woken).is_pending());
        gate.started();
        drop(call);
        gate.open();
        let on = dropped
            .recv_timeout(WATCHDOG)
            .expect("outcome never dropped");
        assert_eq!(on.as_deref(), Some("late-async"));
        // Landed and not taken when abandoned: handed to a worker to drop.
        let call = pool
            .submit_async(move || ReportsDrop(dropped_tx))
            .unwrap_or_else(|_| panic!("refused"));
        let start = std::time::Instant::now();
        while !matches!(*call.landing.lock(), Landed::Done(_)) {
            assert!(start.elapsed() < WATCHDOG, "the job never ran");
            std::thread::yield_now();
        }
        drop(call);
        let on = dropped
            .recv_timeout(WATCHDOG)
            .expect("outcome never dropped");
        assert_eq!(on.as_deref(), Some("late-async"));
        pool.shutdown();
    }

    #[test]
    fn an_idle_worker_exits_on_the_timer() {
        let clock = Arc::new(VirtualClock::new());
        let pool = Arc::new(WorkerPool::new("t", 1, 0, Duration::from_secs(30)));
        let mut call = pool.submit(&clock, || 1).unwrap();
        // The VirtualClock does not move: only the outcome ends this wait.
        assert_eq!(call.wait_until(&clock, far()).unwrap().ok(), Some(1));
        assert_eq!(pool.counts().workers, 1);
        // Wait (bounded) for the worker to park idle on the clock.
        let start = std::time::Instant::now();
        while clock.waiting() == 0 {
            assert!(start.elapsed() < WATCHDOG, "worker never went idle");
            std::thread::yield_now();
        }
        clock.advance(Duration::from_secs(30));
        while pool.counts().workers != 0 {
            assert!(start.elapsed() < WATCHDOG, "idle worker did not exit");
            std::thread::yield_now();
        }
    }
}
