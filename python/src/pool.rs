//! The worker threads of `Timeout.execute` for plain functions: the
//! caller hands the call to a worker and waits (the GIL released, in
//! slices for Ctrl-C) until the result or its deadline, whichever comes
//! first. A call that outlives its deadline goes on running on its worker;
//! its result is dropped there.
//!
//! The blocking layer has the same pool (`blocking::Timeout`'s), but it is
//! crate-private and waits on its `Timer` without a way to check for
//! signals between slices; see the report in the README's Python section.

use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;

use crate::wait::SIGNAL_SLICE;

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    workers: usize,
}

/// A bounded pool that never queues: a job runs on an idle worker or a
/// new one, or is refused.
pub(crate) struct Pool {
    state: Mutex<State>,
    cv: Condvar,
    max_workers: usize,
    idle_timeout: Duration,
}

/// All workers are busy.
pub(crate) struct PoolFull;

impl Pool {
    pub(crate) fn new(max_workers: usize, idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                idle: 0,
                workers: 0,
            }),
            cv: Condvar::new(),
            max_workers,
            idle_timeout,
        })
    }

    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// Workers alive, and how many of them are busy.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = self.state.lock();
        (s.workers, s.workers - s.idle)
    }

    pub(crate) fn submit(self: &Arc<Pool>, job: Job) -> Result<(), PoolFull> {
        let mut s = self.state.lock();
        if s.idle > s.jobs.len() {
            s.jobs.push_back(job);
            drop(s);
            self.cv.notify_one();
            return Ok(());
        }
        if s.workers >= self.max_workers {
            return Err(PoolFull);
        }
        s.workers += 1;
        s.jobs.push_back(job);
        drop(s);
        let pool = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("stockade-timeout".into())
            .spawn(move || pool.work());
        if spawned.is_err() {
            let mut s = self.state.lock();
            s.workers -= 1;
            // The job stays queued only if another worker can take it.
            if s.idle < s.jobs.len() {
                s.jobs.pop_back();
                return Err(PoolFull);
            }
        }
        Ok(())
    }

    fn work(&self) {
        let mut s = self.state.lock();
        loop {
            if let Some(job) = s.jobs.pop_front() {
                drop(s);
                job();
                s = self.state.lock();
                continue;
            }
            s.idle += 1;
            let timed_out = self.cv.wait_for(&mut s, self.idle_timeout).timed_out();
            s.idle -= 1;
            if timed_out && s.jobs.is_empty() {
                s.workers -= 1;
                return;
            }
        }
    }
}

/// Where a worker leaves a call's outcome for its caller.
pub(crate) struct Slot {
    outcome: Mutex<Option<PyResult<Py<PyAny>>>>,
    cv: Condvar,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot {
            outcome: Mutex::new(None),
            cv: Condvar::new(),
        })
    }

    pub(crate) fn put(&self, outcome: PyResult<Py<PyAny>>) {
        *self.outcome.lock() = Some(outcome);
        self.cv.notify_all();
    }

    /// Waits until the outcome or `deadline`: `Ok(None)` when the time is
    /// up, `Err` with a signal handler's exception (Ctrl-C).
    pub(crate) fn wait(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
    ) -> PyResult<Option<PyResult<Py<PyAny>>>> {
        loop {
            let got = py.detach(|| {
                let mut outcome = self.outcome.lock();
                if outcome.is_none() {
                    let left = deadline.map_or(SIGNAL_SLICE, |d| {
                        d.saturating_duration_since(Instant::now())
                    });
                    if !left.is_zero() {
                        self.cv.wait_for(&mut outcome, left.min(SIGNAL_SLICE));
                    }
                }
                outcome.take()
            });
            if let Some(o) = got {
                return Ok(Some(o));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            py.check_signals()?;
        }
    }
}
