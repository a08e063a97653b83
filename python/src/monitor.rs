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
//!
//! # After `fork`
//!
//! A forked child has none of the parent's monitor threads. Hooks
//! registered with `os.register_at_fork` keep the shared state usable in
//! the child: before the fork the forking thread takes `STATE`'s lock (so
//! no monitor thread holds it across the fork), and the child starts a new
//! *fork epoch* with no threads counted alive, then restarts the monitor
//! of every breaker that still has listeners. A thread is counted, and a
//! breaker's monitor is taken as running, only in the epoch that started
//! it. `STATE` and `WAKE` are the standard library's futex-based lock and
//! condition variable: `parking_lot`'s keep their waiters in a process-wide
//! table, and the child's first notify would hand the lock to a parent
//! thread that does not exist in the child (which hung a child's exit).

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use core::time::Duration;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, TryLockError, WaitTimeoutResult};
use std::time::Instant;

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

/// The fork epoch: 0 in the process that imported the module, one more in
/// each forked child (set by [`after_fork_in_child`]).
static EPOCH: AtomicU32 = AtomicU32::new(0);

/// Breakers whose monitor thread was started (weak references, pruned of
/// dead ones as new ones come): the child restarts the monitors of those
/// that still have listeners. Touched only while attached.
static MONITORED: Mutex<Vec<Py<PyWeakrefReference>>> = Mutex::new(Vec::new());

thread_local! {
    /// `STATE`'s guard, held by the forking thread across the fork.
    static HELD_FOR_FORK: RefCell<Option<MutexGuard<'static, Global>>> =
        const { RefCell::new(None) };
}

fn epoch() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// `STATE`'s lock. A thread attached to the interpreter never blocks on
/// it while attached: it waits detached and tries again. The forking
/// thread holds `STATE` from the `before` at-fork hook to the fork, running
/// Python meanwhile; a thread that blocked attached (a monitor's tick, a
/// breaker's `add_listener` or its deallocation) would keep the GIL that
/// the forking thread needs to get to the fork: both would wait forever.
fn lock() -> MutexGuard<'static, Global> {
    // The lock guards plain counters and flags: a panic while holding it
    // leaves them consistent.
    match STATE.try_lock() {
        Ok(guard) => return guard,
        Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => {}
    }
    // SAFETY: `PyGILState_Check` only reads this thread's state; it is
    // callable whether or not the thread is attached.
    if unsafe { pyo3::ffi::PyGILState_Check() } == 0 {
        return STATE.lock().unwrap_or_else(PoisonError::into_inner);
    }
    Python::attach(|py| {
        loop {
            // Wait detached until the holder lets go, then take it attached
            // (another thread may have been faster: wait again).
            py.detach(|| drop(STATE.lock().unwrap_or_else(PoisonError::into_inner)));
            match STATE.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
    })
}

fn wait(guard: MutexGuard<'static, Global>) -> MutexGuard<'static, Global> {
    WAKE.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

fn wait_until(
    guard: MutexGuard<'static, Global>,
    deadline: Instant,
) -> (MutexGuard<'static, Global>, WaitTimeoutResult) {
    let timeout = deadline.saturating_duration_since(Instant::now());
    WAKE.wait_timeout(guard, timeout)
        .unwrap_or_else(PoisonError::into_inner)
}

/// One monitor thread's stop flag (set under `STATE`'s lock, also by the
/// thread itself when it leaves), and the fork epoch it was started in.
struct Control {
    stop: AtomicBool,
    epoch: u32,
}

impl Control {
    fn stop(&self) {
        let _state = lock();
        self.stop.store(true, Ordering::Release);
        WAKE.notify_all();
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Running in this process: not stopped, and started in this epoch
    /// (a thread of the parent's does not exist in a forked child).
    fn live(&self) -> bool {
        !self.stopped() && self.epoch == epoch()
    }
}

/// How many threads of one breaker are alive: the fork epoch they were
/// started in (high 32 bits) and their count (low 32 bits). A count of
/// another epoch is a parent's, and counts as none.
#[derive(Default)]
struct Alive(AtomicU64);

impl Alive {
    fn count(&self) -> u64 {
        let word = self.0.load(Ordering::Acquire);
        if (word >> 32) as u32 == epoch() {
            word & u64::from(u32::MAX)
        } else {
            0
        }
    }

    fn enter(&self) {
        let now = u64::from(epoch()) << 32;
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                Some(if word & !u64::from(u32::MAX) == now {
                    word + 1
                } else {
                    now | 1
                })
            });
    }

    /// A thread counted by `enter` in this epoch (so its count is this
    /// epoch's) has left.
    fn leave(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A breaker's monitor: the running thread's control, and how many of its
/// threads are still alive.
#[derive(Default)]
pub(crate) struct Monitor {
    running: parking_lot::Mutex<Option<Arc<Control>>>,
    alive: Arc<Alive>,
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
        let live = running.as_ref().is_some_and(|c| c.live());
        let unused = match weak {
            Some(weak) if wanted && !live => {
                let remembered = weak.clone_ref(breaker.py());
                *running = monitor.spawn(weak, this.name(), this.monitor_interval_duration());
                if running.is_some() {
                    remember(breaker.py(), remembered);
                    None
                } else {
                    Some(remembered)
                }
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
            let mut state = lock();
            if state.shutdown {
                drop(state);
                // Attached (the caller is), so released at once.
                drop(weak);
                return None;
            }
            state.alive += 1;
            self.alive.enter();
        }
        let control = Arc::new(Control {
            stop: AtomicBool::new(false),
            epoch: epoch(),
        });
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
        self.alive.count() != 0
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
    alive: &Alive,
    interval: Duration,
    mut next: Option<Instant>,
) {
    let mut state = lock();
    loop {
        if state.shutdown || control.stopped() {
            break;
        }
        let now = Instant::now();
        match next {
            Some(due) if now < due => {
                state = wait_until(state, due).0;
                continue;
            }
            Some(_) => {}
            // An interval past the end of time: wait for the stop.
            None => {
                state = wait(state);
                continue;
            }
        }
        drop(state);
        let go_on = Python::try_attach(|py| tick(py, &weak, control)).unwrap_or(false);
        state = lock();
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
    if lock().shutdown || control.stopped() {
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
fn leave(alive: &Alive) {
    let mut state = lock();
    state.alive -= 1;
    alive.leave();
    drop(state);
    WAKE.notify_all();
}

fn wait_until_none(alive: &Alive, timeout: Duration) -> bool {
    let deadline = Instant::now().checked_add(timeout);
    let mut state = lock();
    while alive.count() != 0 {
        match deadline {
            Some(d) => {
                let (guard, waited) = wait_until(state, d);
                state = guard;
                if waited.timed_out() && Instant::now() >= d {
                    return alive.count() == 0;
                }
            }
            None => state = wait(state),
        }
    }
    true
}

/// Remembers a breaker whose monitor thread was started (attached), and
/// forgets the breakers that are gone.
fn remember(py: Python<'_>, weak: Py<PyWeakrefReference>) {
    let Some(breaker) = weak.bind(py).upgrade() else {
        return;
    };
    let mut monitored = MONITORED.lock().unwrap_or_else(PoisonError::into_inner);
    monitored.retain(|w| w.bind(py).upgrade().is_some());
    let known = monitored
        .iter()
        .any(|w| w.bind(py).upgrade().is_some_and(|b| b.is(&breaker)));
    if !known {
        monitored.push(weak);
    }
}

/// The `atexit` hook: stops every monitor thread and waits (detached, at
/// most `EXIT_GRACE`) until they have left.
#[pyfunction]
#[pyo3(name = "_stop_monitors")]
pub(crate) fn stop_all(py: Python<'_>) {
    py.detach(|| {
        let deadline = Instant::now() + EXIT_GRACE;
        let mut state = lock();
        state.shutdown = true;
        WAKE.notify_all();
        while state.alive != 0 && Instant::now() < deadline {
            state = wait_until(state, deadline).0;
        }
    });
}

/// `os.register_at_fork(before=...)`: the forking thread takes `STATE`'s
/// lock, so that no monitor thread holds it across the fork.
#[pyfunction]
#[pyo3(name = "_before_fork")]
pub(crate) fn before_fork() {
    // No thread waits attached for `STATE` (see `lock`), and none waits
    // to attach while holding it, so this wait ends.
    let guard = lock();
    HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some(guard));
}

/// `os.register_at_fork(after_in_parent=...)`: releases `STATE`.
#[pyfunction]
#[pyo3(name = "_after_fork_in_parent")]
pub(crate) fn after_fork_in_parent() {
    HELD_FOR_FORK.with(|held| drop(held.borrow_mut().take()));
}

/// `os.register_at_fork(after_in_child=...)`: a new fork epoch with none
/// of the parent's monitor threads, then the monitor of every breaker
/// that still has listeners starts again.
#[pyfunction]
#[pyo3(name = "_after_fork_in_child")]
pub(crate) fn after_fork_in_child(py: Python<'_>) {
    let held = HELD_FOR_FORK.with(|held| held.borrow_mut().take());
    let mut state = held.unwrap_or_else(lock);
    state.alive = 0;
    EPOCH.fetch_add(1, Ordering::AcqRel);
    drop(state);
    let breakers: Vec<Py<PyWeakrefReference>> = MONITORED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|w| w.clone_ref(py))
        .collect();
    for weak in breakers {
        if let Ok(Some(breaker)) = weak.bind(py).upgrade_as::<CircuitBreaker>()
            && let Err(e) = Monitor::update(&breaker)
        {
            e.write_unraisable(py, Some(breaker.as_any()));
        }
    }
}
