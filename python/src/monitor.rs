//! A breaker's monitor thread: `Event(kind="monitor", metrics=...)` every
//! `monitor_interval` while anyone listens, as the blocking breaker's
//! `Monitor(metrics)`.
//!
//! The first listener starts the thread; it stops when the last listener
//! is removed, on `dispose()`, when the breaker is collected (the thread
//! holds only a weak reference to it, and the breaker's drop wakes it), and
//! at interpreter exit (an `atexit` hook stops every monitor thread and
//! waits, briefly, until they have left, so that none attaches to a
//! finalizing interpreter). The thread is a plain Rust thread, unknown to
//! `threading`, so it never holds up exit. It sleeps detached from the
//! interpreter on a condition variable (a stop wakes it at once) and
//! attaches only to build the metrics dict and call the listeners. A tick
//! that finds itself late emits one event, not one per missed interval.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

use crate::breaker::CircuitBreaker;

/// How long the `atexit` hook waits for monitor threads to leave (a
/// listener still running then is left behind).
const EXIT_GRACE: Duration = Duration::from_secs(1);

/// What every monitor thread sleeps on.
struct Global {
    /// The interpreter is exiting: no thread starts, every thread leaves.
    shutdown: bool,
    /// Monitor threads that may still attach to the interpreter.
    alive: usize,
}

static STATE: Mutex<Global> = Mutex::new(Global {
    shutdown: false,
    alive: 0,
});
/// Woken on every stop, exit and shutdown (one condition for all: there
/// are few monitor threads, and each rechecks what it waits for).
static WAKE: Condvar = Condvar::new();

/// One monitor thread's stop flag (set under `STATE`'s lock, also by the
/// thread itself when it leaves).
#[derive(Default)]
struct Control {
    stop: AtomicBool,
}

impl Control {
    fn stop(&self) {
        let _state = STATE.lock();
        self.stop.store(true, Ordering::Release);
        WAKE.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// A breaker's monitor: the running thread's control, and how many of its
/// threads are still alive.
#[derive(Default)]
pub(crate) struct Monitor {
    running: Mutex<Option<Arc<Control>>>,
    alive: Arc<AtomicUsize>,
}

impl Monitor {
    /// Starts or stops the thread so that it runs exactly while `breaker`
    /// has listeners and is not disposed. Called after every change to
    /// either: the check is made under the monitor's lock, so concurrent
    /// changes end in the state the last of them saw.
    pub(crate) fn update(breaker: &Bound<'_, CircuitBreaker>) -> PyResult<()> {
        let this = breaker.get();
        let monitor = &this.monitor;
        // Made before taking the lock: allocating may run the collector,
        // and so Python code that could wait for this lock.
        let weak = if this.listeners.any() && !this.disposed.get() {
            Some(PyWeakrefReference::new(breaker.as_any())?.unbind())
        } else {
            None
        };
        let mut running = monitor.running.lock();
        let wanted = this.listeners.any() && !this.disposed.get();
        let live = running.as_ref().is_some_and(|c| !c.stopped());
        let unused = match weak {
            Some(weak) if wanted && !live => {
                *running = monitor.spawn(weak, this.name(), this.monitor_interval_duration());
                None
            }
            weak => {
                if !wanted && let Some(control) = running.take() {
                    control.stop();
                }
                weak
            }
        };
        drop(running);
        drop(unused);
        Ok(())
    }

    /// A new thread, or `None` at interpreter exit or when the system
    /// refuses a thread (then there are no monitor events; the next
    /// listener tries again).
    fn spawn(
        &self,
        weak: Py<PyWeakrefReference>,
        name: &str,
        interval: Duration,
    ) -> Option<Arc<Control>> {
        {
            let mut state = STATE.lock();
            if state.shutdown {
                drop(state);
                // Attached (the caller is), so released at once.
                drop(weak);
                return None;
            }
            state.alive += 1;
            self.alive.fetch_add(1, Ordering::AcqRel);
        }
        let control = Arc::new(Control::default());
        let thread_control = Arc::clone(&control);
        let alive = Arc::clone(&self.alive);
        let first = Instant::now().checked_add(interval);
        let spawned = std::thread::Builder::new()
            .name(format!("stockade-breaker-monitor:{name}"))
            .spawn(move || run(weak, &thread_control, &alive, interval, first));
        match spawned {
            Ok(_) => Some(control),
            Err(_) => {
                // The closure, and its weak reference, were dropped here.
                leave(&self.alive);
                None
            }
        }
    }

    /// `true` while a monitor thread of this breaker is alive.
    pub(crate) fn running(&self) -> bool {
        self.alive.load(Ordering::Acquire) != 0
    }

    /// Waits (detached) until no monitor thread of this breaker is alive,
    /// at most `timeout`; `true` if none is.
    pub(crate) fn wait_stopped(&self, py: Python<'_>, timeout: Duration) -> bool {
        let alive = &self.alive;
        py.detach(|| wait_until_none(alive, timeout))
    }
}

impl Drop for Monitor {
    /// The breaker is gone: wake its thread, which finds the weak
    /// reference dead and leaves.
    fn drop(&mut self) {
        if let Some(control) = self.running.get_mut().take() {
            control.stop();
        }
    }
}

/// The monitor thread.
fn run(
    weak: Py<PyWeakrefReference>,
    control: &Control,
    alive: &AtomicUsize,
    interval: Duration,
    mut next: Option<Instant>,
) {
    let mut state = STATE.lock();
    loop {
        if state.shutdown || control.stopped() {
            break;
        }
        let now = Instant::now();
        match next {
            Some(due) if now < due => {
                WAKE.wait_until(&mut state, due);
                continue;
            }
            Some(_) => {}
            // An interval past the end of time: wait for the stop.
            None => {
                WAKE.wait(&mut state);
                continue;
            }
        }
        drop(state);
        let go_on = Python::try_attach(|py| tick(py, &weak, control)).unwrap_or(false);
        state = STATE.lock();
        if !go_on {
            break;
        }
        next = now.checked_add(interval);
    }
    control.stop.store(true, Ordering::Release);
    let shutdown = state.shutdown;
    drop(state);
    // The weak reference is released attached, before the thread counts
    // as gone (so the `atexit` hook's wait covers this attach too); at
    // exit it is left to the process.
    let mut weak = Some(weak);
    if !shutdown {
        Python::try_attach(|_| drop(weak.take()));
    }
    core::mem::forget(weak);
    leave(alive);
}

/// One tick, attached: `false` when the thread should leave.
fn tick(py: Python<'_>, weak: &Py<PyWeakrefReference>, control: &Control) -> bool {
    if STATE.lock().shutdown || control.stopped() {
        return false;
    }
    let breaker = match weak.bind(py).upgrade_as::<CircuitBreaker>() {
        Ok(Some(b)) => b,
        Ok(None) => return false,
        Err(e) => {
            e.write_unraisable(py, None);
            return false;
        }
    };
    let this = breaker.get();
    if this.disposed.get() {
        return false;
    }
    this.emit_monitor(py);
    true
}

/// A thread of the breaker counting `alive` has left.
fn leave(alive: &AtomicUsize) {
    let mut state = STATE.lock();
    state.alive -= 1;
    alive.fetch_sub(1, Ordering::AcqRel);
    drop(state);
    WAKE.notify_all();
}

fn wait_until_none(alive: &AtomicUsize, timeout: Duration) -> bool {
    let deadline = Instant::now().checked_add(timeout);
    let mut state = STATE.lock();
    while alive.load(Ordering::Acquire) != 0 {
        match deadline {
            Some(d) => {
                if WAKE.wait_until(&mut state, d).timed_out() {
                    return alive.load(Ordering::Acquire) == 0;
                }
            }
            None => WAKE.wait(&mut state),
        }
    }
    true
}

/// The `atexit` hook: stops every monitor thread and waits (detached, at
/// most `EXIT_GRACE`) until they have left.
#[pyfunction]
#[pyo3(name = "_stop_monitors")]
pub(crate) fn stop_all(py: Python<'_>) {
    py.detach(|| {
        let deadline = Instant::now() + EXIT_GRACE;
        let mut state = STATE.lock();
        state.shutdown = true;
        WAKE.notify_all();
        while state.alive != 0 {
            if WAKE.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
    });
}
