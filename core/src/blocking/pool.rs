//! The one bounded worker pool of the blocking layer: [`Timeout`]'s
//! detached calls and [`RequestResponsePattern`]'s timed requests run on
//! it, and the caller waits for the result until its deadline.
//!
//! Workers are started on demand up to `max_workers`; at most `max_queue`
//! jobs wait for a busy worker (a [`Timeout`] pool never queues); a worker
//! idle for `idle_timeout` (on the pattern's [`Timer`]) exits. A job whose
//! caller gave up before a worker picked it is skipped. After its caller's
//! deadline a running job **goes on** on its worker and its late result is
//! dropped there: a blocking closure cannot be stopped from outside.
//!
//! [`Timeout`]: super::Timeout
//! [`RequestResponsePattern`]: super::RequestResponsePattern

use core::cell::Cell;
use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::boxed::Box;
use std::collections::VecDeque;
use std::panic::catch_unwind;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use super::Timer;
use crate::clock::Timestamp;
use crate::sync::Mutex;
use crate::sync::thread::{self, Thread};

/// A job for a worker. `run` calls `ready` once its work is done and before
/// it hands the result over, so the worker is free again by the time its
/// caller returns; `cancel` is called instead when the pool shuts down
/// before a worker took the job.
pub(crate) trait Task: Send {
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

/// Why a job was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every worker is busy and the queue is full.
    Full,
    /// The pool shut down.
    Shutdown,
}

/// A bounded pool of worker threads (see the [module docs](self)).
pub(crate) struct WorkerPool {
    state: Mutex<State>,
    thread_name: Arc<str>,
    max_workers: usize,
    max_queue: usize,
    idle_timeout: Duration,
}

impl WorkerPool {
    pub(crate) fn new(
        thread_name: Arc<str>,
        max_workers: usize,
        max_queue: usize,
        idle_timeout: Duration,
    ) -> WorkerPool {
        WorkerPool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                idle: Vec::new(),
                workers: 0,
                busy: 0,
                shutdown: false,
            }),
            thread_name,
            max_workers,
            max_queue,
            idle_timeout,
        }
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Queues `task` for a free worker, starting one if every live worker
    /// is taken; refuses when `max_workers` are busy and `max_queue` jobs
    /// already wait. All sums saturate: `usize::MAX` means "unbounded".
    pub(crate) fn submit<T: Timer + Clone + 'static>(
        self: &Arc<Self>,
        task: Box<dyn Task>,
        timer: &T,
    ) -> Result<(), (Refused, Box<dyn Task>)> {
        let mut state = self.state.lock();
        if state.shutdown {
            return Err((Refused::Shutdown, task));
        }
        let free = state.workers - state.busy;
        let startable = self.max_workers.saturating_sub(state.workers);
        let waiting = state.queue.len().saturating_add(1);
        if waiting
            > free
                .saturating_add(startable)
                .saturating_add(self.max_queue)
        {
            return Err((Refused::Full, task));
        }
        if waiting > free && startable > 0 {
            let pool = Arc::clone(self);
            let timer = timer.clone();
            let spawned = thread::Builder::new()
                .name(String::from(&*self.thread_name))
                .spawn(move || pool.work(&timer));
            match spawned {
                Ok(_) => state.workers += 1,
                // No worker now and none could be started: nobody would run it.
                Err(_) if state.workers == 0 => return Err((Refused::Full, task)),
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
    fn work<T: Timer>(&self, timer: &T) {
        let me = thread::current();
        let mut idle_until: Option<Timestamp> = None;
        let mut state = self.state.lock();
        loop {
            if let Some(task) = state.queue.pop_front() {
                state.busy += 1;
                drop(state);
                let done = Cell::new(false);
                let ready = || {
                    if !done.replace(true) {
                        self.state.lock().busy -= 1;
                    }
                };
                // Tasks catch their own panics; this keeps the counts right
                // should anything else unwind.
                let _ = catch_unwind(AssertUnwindSafe(|| task.run(&ready)));
                ready();
                idle_until = None;
                state = self.state.lock();
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
            state = self.state.lock();
            if let Some(i) = state.idle.iter().position(|t| t.id() == me.id()) {
                state.idle.swap_remove(i);
            }
        }
    }

    /// Stops the pool: queued jobs are cancelled, idle workers exit now,
    /// busy ones after their job. Idempotent.
    pub(crate) fn shutdown(&self) {
        let cancelled = {
            let mut state = self.state.lock();
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

    /// `(live workers, busy workers, queued jobs)`.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let state = self.state.lock();
        (state.workers, state.busy, state.queue.len())
    }
}

/// Where a detached job leaves its outcome for the waiting caller.
struct Handoff<O> {
    state: Mutex<Slot<O>>,
    caller: Thread,
}

enum Slot<O> {
    Pending,
    Done(thread::Result<O>),
    /// The caller's deadline passed: the result is not wanted.
    Abandoned,
    /// The pool shut down before a worker took the job.
    Cancelled,
}

impl<O> Handoff<O> {
    fn settle(&self, to: Slot<O>) {
        let mut state = self.state.lock();
        if matches!(*state, Slot::Pending) {
            *state = to;
            drop(state);
            self.caller.unpark();
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
        if matches!(*self.handoff.state.lock(), Slot::Abandoned) {
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

/// Why a detached call gave no outcome.
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
    let handoff = Arc::new(Handoff {
        state: Mutex::new(Slot::Pending),
        caller: thread::current(),
    });
    let task = Box::new(Detached {
        job,
        handoff: Arc::clone(&handoff),
    });
    match pool.submit(task, timer) {
        Ok(()) => {}
        Err((Refused::Full, _)) => return Err(NoOutcome::Full),
        Err((Refused::Shutdown, _)) => return Err(NoOutcome::Disposed),
    }
    loop {
        {
            let mut state = handoff.state.lock();
            match core::mem::replace(&mut *state, Slot::Pending) {
                Slot::Done(outcome) => return Ok(outcome),
                Slot::Cancelled => return Err(NoOutcome::Disposed),
                Slot::Pending | Slot::Abandoned => {}
            }
            if disposed() {
                *state = Slot::Abandoned;
                return Err(NoOutcome::Disposed);
            }
            if timer.now() >= deadline {
                // The job goes on (or is skipped if not started yet); its
                // result will be dropped.
                *state = Slot::Abandoned;
                return Err(NoOutcome::TimedOut);
            }
        }
        timer.park_until(deadline);
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::blocking::VirtualClock;

    #[test]
    fn unbounded_options_do_not_overflow_admission() {
        let clock = Arc::new(VirtualClock::new());
        let pool = Arc::new(WorkerPool::new(
            Arc::from("t"),
            usize::MAX,
            usize::MAX,
            Duration::from_secs(1),
        ));
        let out = run_detached(
            &pool,
            &clock,
            Timestamp::from_nanos(u64::MAX),
            || false,
            || 7,
        );
        assert_eq!(out.ok().and_then(Result::ok), Some(7));
        pool.shutdown();
    }

    #[test]
    fn a_full_pool_refuses() {
        let clock = Arc::new(VirtualClock::new());
        let pool = Arc::new(WorkerPool::new(
            Arc::from("t"),
            0,
            0,
            Duration::from_secs(1),
        ));
        let out = run_detached(
            &pool,
            &clock,
            Timestamp::from_nanos(u64::MAX),
            || false,
            || 7,
        );
        assert_eq!(out.err(), Some(NoOutcome::Full));
    }
}
