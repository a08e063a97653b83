//! The native helpers of `stockade.Fallback` and `stockade.Hedging`
//! (written in Python, `stockade/_fallback.py`): the core's hedging round
//! (`stockade::hedging::HedgeRound`, the same decisions as the Rust and C
//! hedging), the worker pool a hedging's threaded attempts run on (the
//! core's `WorkerPool`, as for the Rust hedging), option validation with
//! the core's config errors, and their events.

use core::time::Duration;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use stockade::blocking::{DetachedCall, WorkerPool};
use stockade::clock::{MonotonicClock, Timestamp};
use stockade::hedging::{HedgeRound as CoreRound, HedgeStep, HedgingConfig};

use crate::convert::{count_u32, count_usize, duration};
use crate::errors::{config_error, secs};
use crate::events::Event;

/// Seconds on `time.monotonic()` as a core timestamp (negative: 0).
fn at(seconds: f64) -> Timestamp {
    let nanos = seconds * 1e9;
    if nanos.is_finite() && nanos > 0.0 {
        Timestamp::from_nanos(nanos as u64)
    } else {
        Timestamp::ZERO
    }
}

/// The bookkeeping of one hedged call: the core's `HedgeRound`, on
/// seconds.
#[pyclass(module = "stockade._stockade", name = "_HedgeRound", frozen)]
pub(crate) struct HedgeRound {
    round: Mutex<CoreRound>,
}

#[pymethods]
impl HedgeRound {
    #[new]
    fn new(delay: f64, max_attempts: u32) -> HedgeRound {
        let config = HedgingConfig::DEFAULT
            .with_delay(Duration::try_from_secs_f64(delay).unwrap_or(Duration::ZERO))
            .with_max_attempts(max_attempts);
        HedgeRound {
            round: Mutex::new(CoreRound::new(&config)),
        }
    }

    /// What to do at `now` (seconds): `("launch", attempt)`,
    /// `("wait_until", seconds)`, `("wait", None)` or `("failed", None)`.
    fn next_step(&self, py: Python<'_>, now: f64) -> PyResult<(&'static str, Py<PyAny>)> {
        Ok(match self.round.lock().next_step(at(now)) {
            HedgeStep::Launch { attempt } => {
                ("launch", attempt.into_pyobject(py)?.into_any().unbind())
            }
            HedgeStep::WaitUntil(t) => (
                "wait_until",
                (t.as_nanos() as f64 / 1e9)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            ),
            HedgeStep::WaitForResult => ("wait", py.None()),
            HedgeStep::Failed => ("failed", py.None()),
        })
    }

    fn launched(&self, now: f64) {
        self.round.lock().launched(at(now));
    }

    fn failed(&self, now: f64) {
        self.round.lock().failed(at(now));
    }

    fn refused(&self) {
        self.round.lock().refused();
    }
}

/// The clock of the attempt pools' idle timeouts.
static CLOCK: MonotonicClock = MonotonicClock::new();

/// How long an idle worker of an attempt pool waits for work before it
/// exits.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The threads a `Hedging`'s plain-function attempts run on: the core's
/// `WorkerPool` (the one the Rust `blocking::Hedging` runs its attempts
/// on), `max_workers` threads started on demand and reused, each exiting
/// after a minute idle or once the pool is gone.
///
/// Every submitted attempt runs, even after its call returned (a loser):
/// the Python side takes a `max_workers` slot before submitting and gives
/// it back when the attempt ends, and a job dropped unrun would never give
/// it back. The queue (`max_workers` long) only bridges the moment a
/// worker has given its slot back but not yet taken its next job.
#[pyclass(module = "stockade._stockade", name = "_AttemptPool", frozen)]
pub(crate) struct AttemptPool {
    pool: Arc<WorkerPool>,
}

#[pymethods]
impl AttemptPool {
    #[new]
    fn new(name: &str, max_workers: usize) -> AttemptPool {
        AttemptPool {
            pool: Arc::new(WorkerPool::new(
                format!("stockade-hedging:{name}"),
                max_workers,
                max_workers,
                IDLE_TIMEOUT,
            )),
        }
    }

    /// Runs `job()` on a worker, attached to the interpreter; `False` if
    /// the pool refused it (nothing runs). An exception `job` raises goes
    /// to `sys.unraisablehook` (the hedging's `_attempt` catches its
    /// own).
    fn submit(&self, job: Py<PyAny>) -> bool {
        // The handle is kept until the job has run: dropping it earlier
        // would skip a job not started yet.
        let handle: Arc<Mutex<Option<DetachedCall<()>>>> = Arc::new(Mutex::new(None));
        let keep = Arc::clone(&handle);
        let submitted = self.pool.submit(&CLOCK, move || {
            Python::attach(|py| {
                if let Err(e) = job.bind(py).call0() {
                    e.write_unraisable(py, Some(job.bind(py)));
                }
                drop(job);
            });
            // Taken out of the lock, dropped after it: the job's outcome
            // (nothing) is dropped on this worker.
            let call = keep.lock().take();
            drop(call);
        });
        match submitted {
            Ok(call) => {
                *handle.lock() = Some(call);
                true
            }
            Err(_) => false,
        }
    }

    /// Workers running an attempt now.
    fn busy(&self) -> usize {
        self.pool.counts().busy
    }
}

impl Drop for AttemptPool {
    /// Idle workers exit now, busy ones after their attempt.
    fn drop(&mut self) {
        self.pool.shutdown();
    }
}

/// `Hedging`'s options validated as the core does: `(delay in seconds,
/// max_attempts, max_workers)`, or `stockade.ConfigError` naming the
/// option.
#[pyfunction]
#[pyo3(name = "_hedging_config", signature = (delay, max_attempts, max_workers))]
pub(crate) fn hedging_config(
    py: Python<'_>,
    delay: &Bound<'_, PyAny>,
    max_attempts: &Bound<'_, PyAny>,
    max_workers: &Bound<'_, PyAny>,
) -> PyResult<(f64, u32, usize)> {
    let config = HedgingConfig {
        delay: duration(delay, "delay")?,
        max_attempts: count_u32(max_attempts, "max_attempts")?,
        max_workers: count_usize(max_workers, "max_workers")?,
    };
    config.validate().map_err(|e| config_error(py, e))?;
    Ok((secs(config.delay), config.max_attempts, config.max_workers))
}

/// An event of the patterns written in Python.
#[pyfunction]
#[pyo3(name = "_event", signature = (pattern, name, kind, attempt = None, error = None))]
pub(crate) fn event(
    pattern: &str,
    name: &str,
    kind: &str,
    attempt: Option<u32>,
    error: Option<Py<PyAny>>,
) -> PyResult<Event> {
    let (pattern, kind) = python_event_names(pattern, kind)?;
    let mut e = Event::new(pattern, name, kind);
    e.attempt = attempt;
    e.error = error;
    Ok(e)
}

/// The static names of an event of the patterns written in Python, or
/// `ValueError` naming what is unknown.
pub(crate) fn python_event_names(
    pattern: &str,
    kind: &str,
) -> PyResult<(&'static str, &'static str)> {
    let pattern = match pattern {
        "fallback" => "fallback",
        "hedging" => "hedging",
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown pattern {other:?}"
            )));
        }
    };
    let kind = match kind {
        "fallback_used" => "fallback_used",
        "hedge_launched" => "hedge_launched",
        "hedge_won" => "hedge_won",
        "rejected" => "rejected",
        "disposed" => "disposed",
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown event kind {other:?}"
            )));
        }
    };
    Ok((pattern, kind))
}

/// `True` if calling `func` gives an awaitable (an `async def` function, or
/// a pipeline stage over one).
#[pyfunction]
#[pyo3(name = "_is_async")]
pub(crate) fn is_async(func: &Bound<'_, PyAny>) -> PyResult<bool> {
    crate::wrap::is_async_callable(func)
}
