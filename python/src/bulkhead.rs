//! `stockade.Bulkhead`: the core's lock-free permit counts, and one FIFO
//! queue shared by waiting threads and waiting coroutines.
//!
//! The core counts permits in use and waiters queued in one word and never
//! lets a newcomer take a permit while anyone is queued. This module keeps
//! the queue itself: a caller that has to wait takes its place in the core
//! count and in the FIFO under one mutex, and a released permit is handed
//! straight to the front waiter under that mutex (the core's
//! `acquire_queued_raw`), so the FIFO order holds across threads and event
//! loops and no wake-up is lost. A thread waits on its own condition
//! variable with the GIL released, in slices (Ctrl-C); a coroutine awaits
//! an asyncio future that the granting thread resolves through the
//! coroutine's own loop.
//!
//! With `redis=`, the blocking layer's Redis-backed bulkhead holds the
//! permits instead (`blocking::Bulkhead::redis`): a thread takes and gives
//! back a permit with the GIL released, a coroutine does the same on the
//! loop's default executor (`stockade._aio.bulkhead_off_loop`).

use core::sync::atomic::{AtomicU8, Ordering};
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use stockade::HumanDuration;
use stockade::bulkhead::{
    Bulkhead as Core, BulkheadConfig, BulkheadToken, LeaveQueue, QueuedAcquire, RawAdmission,
};
use stockade::shared::{QueuePlace, QueueToken, SharedBulkhead, SharedBulkheadError, SharedToken};

use crate::call::{CallArgs, aio, call, is_awaitable};
use crate::context::ContextStack;
use crate::convert::{count_u32, duration};
use crate::errors::{Exc, config_error, disposed, secs};
use crate::events::{Event, Listeners, MetricsSnapshot};
use crate::redis::{forward_store_events, open_error, other_error};
use crate::registry;
use crate::retry::{Counter, interrupts};
use crate::shared::shared_error;
use crate::wait::{DisposeFlag, SIGNAL_SLICE};
use crate::wrap::{Target, is_async_callable, wrap};

const KIND: &str = "bulkhead";

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const DISPOSED: u8 = 2;

/// A permit: of this process's bulkhead, or of one shared between
/// processes (`shared=`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    Local(BulkheadToken),
    Shared(SharedToken),
    /// A permit of the Redis-backed bulkhead (`redis=`).
    Fleet(BulkheadToken),
}

/// A waiting thread: its state and, once granted, its permit.
struct ThreadSlot {
    state: Mutex<(u8, Option<Token>)>,
    cv: Condvar,
}

/// A waiting coroutine: its future, resolved through its loop, and once
/// granted its permit.
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct AsyncSlot {
    state: AtomicU8,
    token: Mutex<Option<Token>>,
    future: Py<PyAny>,
}

/// A permit held by an `async def` call or a `with` block (the core's
/// token).
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct Permit {
    token: Mutex<Option<Token>>,
}

/// A coroutine's place among the waiters of a bulkhead shared between
/// processes: it polls (`stockade._aio`).
#[pyclass(module = "stockade._stockade", frozen)]
pub(crate) struct SharedPlace {
    place: Mutex<Option<QueueToken>>,
}

#[pymethods]
impl SharedPlace {
    /// Marks the object for `stockade._aio`: poll, do not await a future.
    #[getter]
    fn polls(&self) -> bool {
        true
    }
}

impl Permit {
    fn new(token: Token) -> Permit {
        Permit {
            token: Mutex::new(Some(token)),
        }
    }
}

enum Waiter {
    Thread(Arc<ThreadSlot>),
    Async(Py<AsyncSlot>),
}

/// Waiters granted a permit, to tell once the queue's lock is released.
#[derive(Default)]
struct Wakes(Vec<(Waiter, Token)>);

/// A bulkhead.
#[pyclass(module = "stockade", frozen, subclass, weakref)]
pub(crate) struct Bulkhead {
    name: String,
    config: BulkheadConfig,
    core: Core,
    /// A bulkhead shared between processes (`shared=`): every permit is
    /// its, and waiters poll it; `core` and `queue` are then unused.
    shared: Option<SharedBulkhead>,
    /// A bulkhead shared by a fleet through Redis (`redis=`): every permit
    /// is its; `core` and `queue` are then unused.
    fleet: Option<Arc<stockade::blocking::Bulkhead>>,
    queue: Mutex<VecDeque<Waiter>>,
    pub(crate) listeners: Arc<Listeners>,
    calls: Counter,
    successes: Counter,
    failures: Counter,
    rejections: Counter,
    timeouts: Counter,
    pub(crate) disposed: DisposeFlag,
    entered: ContextStack,
}

impl Bulkhead {
    /// Permits held: here, or host-wide for a shared bulkhead.
    fn in_use(&self) -> u32 {
        if let Some(fleet) = &self.fleet {
            return u32::try_from(fleet.metrics().in_flight).unwrap_or(u32::MAX);
        }
        match &self.shared {
            Some(shared) => shared.in_use(),
            None => self.core.in_use(),
        }
    }

    /// Callers waiting: here, or host-wide for a shared bulkhead.
    fn queued(&self) -> u32 {
        if let Some(fleet) = &self.fleet {
            return u32::try_from(fleet.metrics().queue_depth).unwrap_or(u32::MAX);
        }
        match &self.shared {
            Some(shared) => shared.waiting(),
            None => self.core.queued(),
        }
    }

    /// Counts an admitted call's outcome: a success, a failure, or (`None`)
    /// no outcome — an interruption, which is taken back out of `calls`.
    fn count(&self, outcome: Option<bool>) {
        match outcome {
            Some(true) => self.successes.inc(),
            Some(false) => self.failures.inc(),
            None => self.calls.dec(),
        }
    }

    fn check_disposed(&self, py: Python<'_>) -> PyResult<()> {
        if self.disposed.get() {
            Err(disposed(py, "Bulkhead", &self.name))
        } else {
            Ok(())
        }
    }

    fn full(&self, py: Python<'_>) -> PyErr {
        self.rejections.inc();
        self.listeners
            .emit(py, || Event::new(KIND, &self.name, "rejected"));
        Exc::BulkheadFull.err(
            py,
            (
                format!(
                    "Bulkhead '{}' is full: {} running, {} queued",
                    self.name, self.config.max_concurrent, self.config.max_queue
                ),
                self.name.clone(),
            ),
        )
    }

    fn timed_out_error(&self, py: Python<'_>, waited: Duration) -> PyErr {
        self.timeouts.inc();
        self.listeners.emit(py, || {
            let mut e = Event::new(KIND, &self.name, "queue_timeout");
            e.waited = Some(secs(waited));
            e
        });
        Exc::QueueTimeout.err(
            py,
            (
                format!(
                    "Bulkhead '{}': no slot within queue_timeout ({})",
                    self.name,
                    HumanDuration(self.config.queue_timeout)
                ),
                self.name.clone(),
                secs(waited),
            ),
        )
    }

    /// Hands free permits to the front waiters (queue lock held).
    fn grant(&self, queue: &mut VecDeque<Waiter>, wakes: &mut Wakes) {
        while !queue.is_empty() {
            match self.core.acquire_queued_raw() {
                QueuedAcquire::Acquired { token, wake_next } => {
                    match queue.pop_front() {
                        Some(w) => wakes.0.push((w, Token::Local(token))),
                        // Unreachable: the FIFO holds exactly the core's
                        // queued count. Keep the permit count right.
                        None => {
                            let _ = self.core.release(token);
                        }
                    }
                    if !wake_next {
                        break;
                    }
                }
                _ => break,
            }
        }
    }

    /// Tells granted waiters (queue lock released). A coroutine whose loop
    /// is gone gives its permit back.
    fn wake(&self, py: Python<'_>, wakes: Wakes) {
        for (w, token) in wakes.0 {
            match w {
                Waiter::Thread(slot) => {
                    *slot.state.lock() = (GRANTED, Some(token));
                    slot.cv.notify_one();
                }
                Waiter::Async(slot) => {
                    *slot.get().token.lock() = Some(token);
                    slot.get().state.store(GRANTED, Ordering::Release);
                    static GRANT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                    let ok = aio(py, &GRANT, "resolve")
                        .and_then(|f| f.call1((slot.get().future.bind(py), py.None())))
                        .map(|r| r.is_truthy().unwrap_or(false))
                        .unwrap_or(false);
                    if !ok && let Some(token) = slot.get().token.lock().take() {
                        // Nobody will run with it: hand it on.
                        self.release(py, token);
                    }
                }
            }
        }
    }

    /// Gives a permit back, handing it to the front waiter if any.
    pub(crate) fn release(&self, py: Python<'_>, token: Token) {
        let token = match (token, &self.shared) {
            (Token::Fleet(t), _) => {
                if let Some(fleet) = &self.fleet {
                    // A round trip to Redis: the GIL released.
                    let fleet = Arc::clone(fleet);
                    py.detach(move || {
                        let _ = fleet.release_token(t);
                    });
                }
                return;
            }
            (Token::Local(t), _) => t,
            (Token::Shared(t), Some(shared)) => {
                let _ = shared.release(t);
                return;
            }
            (Token::Shared(_), None) => return,
        };
        if self.core.release(token).is_ok_and(|c| c.has_waiters()) {
            let mut wakes = Wakes::default();
            self.grant(&mut self.queue.lock(), &mut wakes);
            self.wake(py, wakes);
        }
    }

    /// Takes a permit now (`Ok(Some(token))`), or a place in the queue
    /// (`Ok(None)`), or refuses.
    fn admit(
        &self,
        py: Python<'_>,
        waiter: impl FnOnce() -> PyResult<Waiter>,
    ) -> PyResult<Option<Token>> {
        self.check_disposed(py)?;
        self.calls.inc();
        if let Ok(permit) = self.core.try_acquire() {
            return Ok(Some(Token::Local(permit.into_token())));
        }
        if self.config.queue_timeout.is_zero() {
            // "Never wait": a caller who would have to is refused.
            return Err(self.full(py));
        }
        let waiter = waiter()?;
        let mut queue = self.queue.lock();
        match self.core.enqueue_raw() {
            RawAdmission::Acquired(token) => Ok(Some(Token::Local(token))),
            RawAdmission::Full(_) => {
                drop(queue);
                Err(self.full(py))
            }
            RawAdmission::Enqueued => {
                queue.push_back(waiter);
                Ok(None)
            }
        }
    }

    /// Removes a waiter that gives up from the queue: `true` if it was
    /// still there (it holds nothing), `false` if it was granted a permit
    /// or woken by `dispose` meanwhile.
    fn leave(&self, py: Python<'_>, is_it: impl Fn(&Waiter) -> bool) -> bool {
        let mut wakes = Wakes::default();
        let removed = {
            let mut queue = self.queue.lock();
            match queue.iter().position(is_it) {
                Some(i) => {
                    queue.remove(i);
                    if let LeaveQueue::Left { wake_next: true } = self.core.leave_queue_raw() {
                        self.grant(&mut queue, &mut wakes);
                    }
                    true
                }
                None => false,
            }
        };
        self.wake(py, wakes);
        removed
    }

    /// A permit now, if one is free: this process's, or (shared) the
    /// host's.
    #[inline]
    fn try_take(&self, py: Python<'_>) -> PyResult<Option<Token>> {
        if let Some(fleet) = &self.fleet {
            let fleet = Arc::clone(fleet);
            return match py.detach(move || fleet.try_acquire().map(|g| g.into_token())) {
                Ok(token) => Ok(Some(Token::Fleet(token))),
                Err(stockade::blocking::Error::BulkheadFull) => Ok(None),
                Err(e) => Err(other_error(py, e, "Bulkhead", &self.name)),
            };
        }
        match &self.shared {
            None => Ok(self
                .core
                .try_acquire()
                .ok()
                .map(|p| Token::Local(p.into_token()))),
            Some(shared) => match shared.try_acquire() {
                Ok(p) => Ok(Some(Token::Shared(p.into_token()))),
                Err(SharedBulkheadError::Owner(e)) => Err(shared_error(py, e)),
                Err(_) => Ok(None),
            },
        }
    }

    /// Takes a permit of a bulkhead shared between processes for a thread:
    /// polls (the GIL released between polls, signals checked).
    fn acquire_thread_shared(&self, py: Python<'_>, shared: &SharedBulkhead) -> PyResult<Token> {
        self.check_disposed(py)?;
        self.calls.inc();
        if let Some(token) = self.try_take(py)? {
            return Ok(token);
        }
        let place = match shared.join_queue() {
            Ok(place) => place,
            Err(SharedBulkheadError::Owner(e)) => return Err(shared_error(py, e)),
            Err(_) => return Err(self.full(py)),
        };
        let start = Instant::now();
        let limit = self.config.queue_timeout;
        let mut poll = QueuePlace::FIRST_POLL;
        loop {
            if let Ok(p) = place.try_acquire() {
                return Ok(Token::Shared(p.into_token()));
            }
            let waited = start.elapsed();
            if waited >= limit {
                return Err(self.timed_out_error(py, waited));
            }
            if self.disposed.get() {
                return Err(disposed(py, "Bulkhead", &self.name));
            }
            let nap = poll.min(limit - waited);
            py.detach(|| std::thread::sleep(nap));
            py.check_signals()?;
            poll = place.next_poll(poll);
        }
    }

    /// Takes a permit of the Redis-backed bulkhead for a thread, waiting
    /// (up to `queue_timeout`) with the GIL released.
    fn acquire_thread_fleet(
        &self,
        py: Python<'_>,
        fleet: &Arc<stockade::blocking::Bulkhead>,
    ) -> PyResult<Token> {
        use stockade::blocking::Error;
        self.check_disposed(py)?;
        self.calls.inc();
        let fleet = Arc::clone(fleet);
        match py.detach(move || fleet.acquire().map(|g| g.into_token())) {
            Ok(token) => Ok(Token::Fleet(token)),
            Err(Error::BulkheadFull) => Err(self.full(py)),
            Err(Error::QueueTimeout { waited }) => Err(self.timed_out_error(py, waited)),
            Err(e @ Error::Redis(_)) => {
                // Refused by Redis (fallback closed, config mismatch): a
                // rejection, as the blocking layer counts it.
                self.rejections.inc();
                Err(other_error(py, e, "Bulkhead", &self.name))
            }
            Err(e) => {
                self.calls.dec(); // not an outcome: see `count`
                Err(other_error(py, e, "Bulkhead", &self.name))
            }
        }
    }

    /// Takes a permit for a thread, waiting in the queue.
    fn acquire_thread(&self, py: Python<'_>) -> PyResult<Token> {
        if let Some(fleet) = &self.fleet {
            return self.acquire_thread_fleet(py, fleet);
        }
        if let Some(shared) = &self.shared {
            return self.acquire_thread_shared(py, shared);
        }
        let slot = Arc::new(ThreadSlot {
            state: Mutex::new((WAITING, None)),
            cv: Condvar::new(),
        });
        if let Some(token) = self.admit(py, || Ok(Waiter::Thread(Arc::clone(&slot))))? {
            return Ok(token);
        }
        let start = Instant::now();
        let deadline = start.checked_add(self.config.queue_timeout);
        let is_me = |w: &Waiter| matches!(w, Waiter::Thread(s) if Arc::ptr_eq(s, &slot));
        loop {
            let state = py.detach(|| {
                let mut state = slot.state.lock();
                if state.0 == WAITING {
                    let now = Instant::now();
                    let left = deadline.map_or(SIGNAL_SLICE, |d| d.saturating_duration_since(now));
                    if !left.is_zero() {
                        slot.cv.wait_for(&mut state, left.min(SIGNAL_SLICE));
                    }
                }
                *state
            });
            match state {
                (GRANTED, Some(token)) => return Ok(token),
                (DISPOSED, _) => {
                    self.calls.dec(); // not an outcome: see `count`
                    return Err(disposed(py, "Bulkhead", &self.name));
                }
                _ => {}
            }
            if let Err(signal) = py.check_signals() {
                if !self.leave(py, is_me)
                    && let (GRANTED, Some(token)) = *slot.state.lock()
                {
                    self.release(py, token);
                }
                self.calls.dec();
                return Err(signal);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                if self.leave(py, is_me) {
                    return Err(self.timed_out_error(py, start.elapsed()));
                }
                // Granted (or disposed) as the time ran out: take it.
                if let (GRANTED, Some(token)) = *slot.state.lock() {
                    return Ok(token);
                }
                self.calls.dec();
                return Err(disposed(py, "Bulkhead", &self.name));
            }
        }
    }

    /// For a coroutine: a `Permit` if one is held now, else the
    /// `AsyncSlot` whose future to await (`stockade._aio`).
    fn acquire_async<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if let Some(shared) = &self.shared {
            self.check_disposed(py)?;
            self.calls.inc();
            if let Some(token) = self.try_take(py)? {
                return Ok(Bound::new(py, Permit::new(token))?.into_any());
            }
            return match shared.join_queue() {
                Ok(place) => Ok(Bound::new(
                    py,
                    SharedPlace {
                        place: Mutex::new(Some(place.into_token())),
                    },
                )?
                .into_any()),
                Err(SharedBulkheadError::Owner(e)) => Err(shared_error(py, e)),
                Err(_) => Err(self.full(py)),
            };
        }
        let mut made = None;
        let admitted = self.admit(py, || {
            static FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            let future = aio(py, &FUTURE, "new_future")?.call0()?;
            let slot = Bound::new(
                py,
                AsyncSlot {
                    state: AtomicU8::new(WAITING),
                    token: Mutex::new(None),
                    future: future.unbind(),
                },
            )?;
            made = Some(slot.clone());
            Ok(Waiter::Async(slot.unbind()))
        })?;
        match (admitted, made) {
            (Some(token), _) => Ok(Bound::new(py, Permit::new(token))?.into_any()),
            (None, Some(slot)) => Ok(slot.into_any()),
            (None, None) => unreachable!("queued without a slot"),
        }
    }

    /// The coroutine that waits for a permit, then awaits `func(...)` (or
    /// returns `value` when `func` is `None`), and releases the permit
    /// when it ends (unless `hold` is false: `async with` keeps it).
    fn async_call<'py>(
        slf: &Bound<'py, Bulkhead>,
        func: Option<CallArgs<'_, 'py>>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        static CALL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let (f, a, k) = match func {
            Some((f, a, k)) => (
                f.clone(),
                a.clone().into_any(),
                k.map(|k| k.clone().into_any()),
            ),
            None => (py.None().into_bound(py), py.None().into_bound(py), None),
        };
        aio(py, &CALL, "bulkhead_call")?.call1((
            slf,
            secs(slf.get().config.queue_timeout),
            f,
            a,
            k,
            value,
        ))
    }

    /// `stockade._aio.bulkhead_off_loop(self, func, args, kwargs, value)`.
    fn off_loop<'py>(
        slf: &Bound<'py, Bulkhead>,
        func: Bound<'py, PyAny>,
        args: Bound<'py, PyAny>,
        kwargs: Option<Bound<'py, PyAny>>,
        value: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static OFF_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        aio(slf.py(), &OFF_LOOP, "bulkhead_off_loop")?.call1((slf, func, args, kwargs, value))
    }

    /// `run` for the Redis-backed bulkhead: a thread takes the permit here
    /// (the GIL released), a coroutine on the loop's default executor.
    fn run_fleet<'py>(
        slf: &Bound<'py, Bulkhead>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if is_async_callable(func)? {
            return Bulkhead::off_loop(
                slf,
                func.clone(),
                args.clone().into_any(),
                kwargs.map(|k| k.clone().into_any()),
                py.None().into_bound(py),
            );
        }
        let token = this.acquire_thread(py)?;
        let result = call(func, args, kwargs);
        match result {
            Ok(value) if is_awaitable(&value) => {
                // A coroutine that has not started: it takes its own
                // permit when it runs (one that is never awaited holds
                // nothing).
                this.count(None);
                this.release(py, token);
                let none = py.None().into_bound(py);
                Bulkhead::off_loop(slf, value, none.clone(), None, none)
            }
            result => {
                let outcome = match &result {
                    Ok(_) => Some(true),
                    Err(e) if interrupts(e.value(py)) => None,
                    Err(_) => Some(false),
                };
                this.count(outcome);
                this.release(py, token);
                result
            }
        }
    }

    pub(crate) fn run<'py>(
        slf: &Bound<'py, Bulkhead>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        this.check_disposed(py)?;
        if this.fleet.is_some() {
            return Bulkhead::run_fleet(slf, func, args, kwargs);
        }
        // Fast path: a free permit and nobody queued.
        if let Some(token) = this.try_take(py)? {
            let result = call(func, args, kwargs);
            match result {
                Ok(value) if is_awaitable(&value) => {
                    // An `async def` function: its coroutine has not
                    // started. Give the permit back and let the coroutine
                    // take one when it runs, so a coroutine that is never
                    // awaited holds nothing.
                    this.release(py, token);
                    static HOLD: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                    aio(py, &HOLD, "bulkhead_hold")?.call1((
                        slf,
                        secs(this.config.queue_timeout),
                        value,
                    ))
                }
                Ok(value) => {
                    this.calls.inc();
                    this.successes.inc();
                    this.release(py, token);
                    Ok(value)
                }
                Err(e) => {
                    // An interruption is no outcome, and not a call.
                    if !interrupts(e.value(py)) {
                        this.calls.inc();
                        this.failures.inc();
                    }
                    this.release(py, token);
                    Err(e)
                }
            }
        } else if is_async_callable(func)? {
            Bulkhead::async_call(slf, Some((func, args, kwargs)), py.None().into_bound(py))
        } else {
            let token = this.acquire_thread(py)?;
            let result = call(func, args, kwargs);
            let outcome = match &result {
                Ok(_) => Some(true),
                Err(e) if interrupts(e.value(py)) => None,
                Err(_) => Some(false),
            };
            this.count(outcome);
            this.release(py, token);
            result
        }
    }
}

/// The outcome of a `with` block from `__exit__`'s `exc_type`: a success,
/// a failure (an `Exception`), or none (an interruption).
fn exit_outcome(py: Python<'_>, exc_type: Option<&Bound<'_, PyAny>>) -> Option<bool> {
    match exc_type {
        Some(t) if !t.is_none() => {
            let exception = py.get_type::<pyo3::exceptions::PyException>();
            t.cast::<pyo3::types::PyType>()
                .is_ok_and(|t| t.is_subclass(&exception).unwrap_or(true))
                .then_some(false)
        }
        _ => Some(true),
    }
}

#[pymethods]
impl AsyncSlot {
    /// The future to await.
    #[getter]
    fn future(&self, py: Python<'_>) -> Py<PyAny> {
        self.future.clone_ref(py)
    }
}

#[pymethods]
impl Bulkhead {
    #[new]
    #[pyo3(signature = (
        name, *, max_concurrent = None, max_queue = None, queue_timeout = None, shared = None,
        redis = None,
    ))]
    fn new(
        py: Python<'_>,
        name: String,
        max_concurrent: Option<&Bound<'_, PyAny>>,
        max_queue: Option<&Bound<'_, PyAny>>,
        queue_timeout: Option<&Bound<'_, PyAny>>,
        shared: Option<&Bound<'_, PyAny>>,
        redis: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Bulkhead>> {
        let mut c = BulkheadConfig::DEFAULT;
        if let Some(v) = max_concurrent {
            c.max_concurrent = count_u32(v, "max_concurrent")?;
        }
        if let Some(v) = max_queue {
            c.max_queue = count_u32(v, "max_queue")?;
        }
        if let Some(v) = queue_timeout {
            c.queue_timeout = duration(v, "queue_timeout")?;
        }
        let core = Core::new(c).map_err(|e| config_error(py, e))?;
        let redis = crate::redis::options(py, redis, shared)?;
        let listeners = Arc::new(Listeners::default());
        let fleet = match redis {
            None => None,
            Some(options) => {
                // No round trip: Redis is contacted by the first call.
                let fleet = py
                    .detach(|| stockade::blocking::Bulkhead::redis(&name, c, &options))
                    .map_err(|e| open_error(py, e, "bulkhead", &name))?;
                fleet.subscribe(forward_store_events(&listeners, KIND, &name));
                Some(fleet)
            }
        };
        let shared = match crate::shared::options(shared)? {
            None => None,
            Some(options) => Some(
                py.detach(|| SharedBulkhead::open(&name, c, &options))
                    .map_err(|e| shared_error(py, e))?,
            ),
        };
        let c = shared.as_ref().map_or(c, |s| *s.config());
        let b = Py::new(
            py,
            Bulkhead {
                entered: ContextStack::new(py, &name)?,
                name,
                config: c,
                core,
                shared,
                fleet,
                queue: Mutex::new(VecDeque::new()),
                listeners,
                calls: Counter::default(),
                successes: Counter::default(),
                failures: Counter::default(),
                rejections: Counter::default(),
                timeouts: Counter::default(),
                disposed: DisposeFlag::default(),
            },
        )?;
        if let Err(e) = registry::register(KIND, &b.get().name, b.clone_ref(py).into_any()) {
            if let Some(fleet) = &b.get().fleet {
                fleet.dispose();
            }
            return Err(e);
        }
        Ok(b)
    }

    /// The bulkhead registered as `name`, or a new one with the default
    /// options (registered under that name).
    #[classmethod]
    fn get_bulkhead(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Py<PyAny>> {
        if let Some(found) = registry::get(cls.py(), KIND, name) {
            return Ok(found);
        }
        Ok(cls.call1((name,))?.unbind())
    }

    /// Runs `func(*args, **kwargs)` holding one of `max_concurrent`
    /// permits, waiting in the FIFO queue for one (up to `queue_timeout`:
    /// `QueueTimeoutError`); a full queue raises `BulkheadFullError`. With
    /// an `async def` function, returns an awaitable that waits with
    /// asyncio.
    #[pyo3(signature = (func, /, *args, **kwargs))]
    fn execute<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Bulkhead::run(slf, func, args, kwargs)
    }

    /// `func` protected by this bulkhead (a decorator).
    fn wrap<'py>(slf: &Bound<'py, Self>, func: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Bulkhead(slf.clone().unbind()), func)
    }

    /// `@bulkhead` as a decorator: the same as `wrap`.
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        wrap(Target::Bulkhead(slf.clone().unbind()), func)
    }

    /// `with bulkhead:` holds a permit for the block (waiting as
    /// `execute`).
    fn __enter__(slf: &Bound<'_, Self>) -> PyResult<Py<Bulkhead>> {
        let this = slf.get();
        let py = slf.py();
        let token = this.acquire_thread(py)?;
        this.entered
            .push(py, Bound::new(py, Permit::new(token))?.into_any())?;
        Ok(slf.clone().unbind())
    }

    #[pyo3(signature = (exc_type = None, _exc = None, _traceback = None))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _exc: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let permit = self.entered.pop(py)?;
        let outcome = exit_outcome(py, exc_type);
        self._release(py, permit.cast::<Permit>()?, outcome);
        Ok(false)
    }

    /// `async with bulkhead:` holds a permit for the block, waiting with
    /// asyncio.
    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        if slf.get().fleet.is_some() {
            let py = slf.py();
            slf.get().check_disposed(py)?;
            let none = py.None().into_bound(py);
            return Bulkhead::off_loop(slf, none.clone(), none, None, slf.clone().into_any());
        }
        Bulkhead::async_call(slf, None, slf.clone().into_any())
    }

    #[pyo3(signature = (exc_type = None, exc = None, traceback = None))]
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_type: Option<&Bound<'py, PyAny>>,
        exc: Option<&Bound<'py, PyAny>>,
        traceback: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let py = slf.py();
        if this.fleet.is_some() {
            // The release is a round trip: on the loop's default executor.
            let permit = this.entered.pop(py)?;
            let outcome = exit_outcome(py, exc_type);
            static RELEASE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            return aio(py, &RELEASE, "release_off_loop")?.call1((slf, permit, outcome, false));
        }
        let suppress = this.__exit__(py, exc_type, exc, traceback)?;
        static READY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        aio(py, &READY, "ready")?.call1((suppress,))
    }

    // The protocol of `stockade._aio.bulkhead_call`.

    /// A `Permit` held now, or the `AsyncSlot` to wait on.
    fn _acquire<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.acquire_async(py)
    }

    /// A permit, waiting as a thread does (the GIL released while it
    /// waits): what `stockade._aio` runs on the loop's default executor
    /// for a Redis-backed bulkhead.
    fn _acquire_blocking<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, Permit>> {
        let token = self.acquire_thread(py)?;
        Bound::new(py, Permit::new(token))
    }

    /// The slot's future completed: its permit.
    fn _granted<'py>(
        &self,
        py: Python<'py>,
        slot: &Bound<'py, AsyncSlot>,
    ) -> PyResult<Bound<'py, Permit>> {
        match slot.get().token.lock().take() {
            Some(token) => Bound::new(py, Permit::new(token)),
            None => {
                self.calls.dec(); // disposed while queued: no outcome
                Err(disposed(py, "Bulkhead", &self.name))
            }
        }
    }

    /// The wait ran out: raises `QueueTimeoutError` if still queued;
    /// returns the permit if it was granted meanwhile.
    fn _timed_out<'py>(
        &self,
        py: Python<'py>,
        slot: &Bound<'py, AsyncSlot>,
        waited: f64,
    ) -> PyResult<Bound<'py, Permit>> {
        let me = slot.as_ptr();
        if self.leave(py, |w| matches!(w, Waiter::Async(s) if s.as_ptr() == me)) {
            return Err(self.timed_out_error(py, Duration::from_secs_f64(waited.max(0.0))));
        }
        self._granted(py, slot)
    }

    /// The waiting coroutine gave up (cancelled, or woken by dispose):
    /// leaves the queue, or gives back a permit granted meanwhile. No
    /// outcome: the call is taken back out of `calls`.
    fn _abandon(&self, py: Python<'_>, slot: &Bound<'_, AsyncSlot>) {
        self.calls.dec();
        let me = slot.as_ptr();
        if !self.leave(py, |w| matches!(w, Waiter::Async(s) if s.as_ptr() == me))
            && let Some(token) = slot.get().token.lock().take()
        {
            self.release(py, token);
        }
    }

    /// A shared bulkhead's waiting coroutine polls: its permit, or `None`.
    fn _poll<'py>(
        &self,
        py: Python<'py>,
        place: &Bound<'py, SharedPlace>,
    ) -> PyResult<Option<Bound<'py, Permit>>> {
        self.check_disposed(py)?;
        let (Some(shared), Some(token)) = (&self.shared, *place.get().place.lock()) else {
            return Err(disposed(py, "Bulkhead", &self.name));
        };
        match shared.try_acquire_queued(&token) {
            Ok(p) => Ok(Some(Bound::new(
                py,
                Permit::new(Token::Shared(p.into_token())),
            )?)),
            Err(SharedBulkheadError::Owner(e)) => Err(shared_error(py, e)),
            Err(_) => Ok(None),
        }
    }

    /// A shared bulkhead's waiting coroutine ran out of time.
    fn _poll_timed_out(&self, py: Python<'_>, waited: f64) -> PyResult<()> {
        Err(self.timed_out_error(py, Duration::from_secs_f64(waited.max(0.0))))
    }

    /// A shared bulkhead's waiting coroutine leaves the waiters (once).
    fn _leave(&self, place: &Bound<'_, SharedPlace>) {
        if let (Some(shared), Some(token)) = (&self.shared, place.get().place.lock().take()) {
            shared.leave_queue(token);
        }
    }

    /// The file of the region this bulkhead shares with other processes
    /// (`shared=`), or `None` for a bulkhead of this process alone.
    #[getter]
    fn shared_path(&self) -> Option<String> {
        self.shared.as_ref().map(|s| s.path().display().to_string())
    }

    /// Gives back a permit (once), counting the call's outcome: `True` a
    /// success, `False` a failure, `None` an interruption (see `count`).
    fn _release(&self, py: Python<'_>, permit: &Bound<'_, Permit>, outcome: Option<bool>) {
        if let Some(token) = permit.get().token.lock().take() {
            self.count(outcome);
            self.release(py, token);
        }
    }

    /// `async with`: the permit the block holds until `__aexit__`.
    fn _enter(&self, py: Python<'_>, permit: &Bound<'_, Permit>) -> PyResult<()> {
        self.entered.push(py, permit.clone().into_any())
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    #[getter]
    fn max_concurrent(&self) -> u32 {
        self.config.max_concurrent
    }
    #[getter]
    fn max_queue(&self) -> u32 {
        self.config.max_queue
    }
    #[getter]
    fn queue_timeout(&self) -> f64 {
        secs(self.config.queue_timeout)
    }
    /// `True` for a bulkhead shared through Redis (`redis=`).
    #[getter]
    fn is_redis(&self) -> bool {
        self.fleet.is_some()
    }

    /// Calls running now (for a bulkhead shared through Redis: this
    /// process's).
    #[getter]
    fn in_flight(&self) -> u32 {
        self.in_use()
    }
    /// Callers waiting now.
    #[getter]
    fn queue_depth(&self) -> u32 {
        self.queued()
    }

    /// Counters: `calls`, `successes`, `failures`, `rejections` (full; for
    /// a bulkhead shared through Redis also the calls Redis refused),
    /// `timeouts` (queue timeouts), `in_flight`, `queue_depth`, and
    /// `fallback_decisions` (a bulkhead shared through Redis).
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        MetricsSnapshot {
            fallback_decisions: self
                .fleet
                .as_ref()
                .map_or(0, |f| f.metrics().fallback_decisions),
            calls: self.calls.get(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            rejections: self.rejections.get(),
            timeouts: self.timeouts.get(),
            in_flight: self.in_use() as u64,
            queue_depth: self.queued() as u64,
            ..MetricsSnapshot::default()
        }
        .to_dict(py, &self.name)
    }

    /// Calls `callback(event)` on rejections and queue timeouts (and on
    /// `dispose`; with `redis=` also `"store_unavailable"` and
    /// `"store_recovered"`); returns `callback`.
    fn add_listener(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = crate::events::listener)] callback: Py<PyAny>,
    ) -> Py<PyAny> {
        self.listeners.add(callback.clone_ref(py));
        callback
    }

    /// Removes a listener; `True` if it was there.
    fn remove_listener(&self, callback: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.listeners.remove(callback)
    }

    /// Refuses every later call with `DisposedError`, wakes every queued
    /// caller (threads and coroutines raise `DisposedError`), and
    /// unregisters the name. Calls already running finish normally.
    fn dispose(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        let py = slf.py();
        if this.disposed.set() {
            if let Some(fleet) = &this.fleet {
                // Wakes the threads waiting in it (`DisposedError`).
                fleet.dispose();
            }
            let drained: Vec<Waiter> = {
                let mut queue = this.queue.lock();
                let all: Vec<Waiter> = queue.drain(..).collect();
                for _ in &all {
                    let _ = this.core.leave_queue_raw();
                }
                all
            };
            for w in drained {
                match w {
                    Waiter::Thread(slot) => {
                        *slot.state.lock() = (DISPOSED, None);
                        slot.cv.notify_one();
                    }
                    Waiter::Async(slot) => {
                        slot.get().state.store(DISPOSED, Ordering::Release);
                        static RESOLVE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                        let err = disposed(py, "Bulkhead", &this.name).into_value(py);
                        aio(py, &RESOLVE, "resolve")?.call1((slot.get().future.bind(py), err))?;
                    }
                }
            }
            this.listeners.close(py, KIND, &this.name);
        }
        registry::unregister(KIND, &this.name, slf.as_any());
        Ok(())
    }

    #[getter]
    fn disposed(&self) -> bool {
        self.disposed.get()
    }

    fn __repr__(&self) -> String {
        format!(
            "Bulkhead({:?}, max_concurrent={}, max_queue={}, queue_timeout={})",
            self.name,
            self.config.max_concurrent,
            self.config.max_queue,
            secs(self.config.queue_timeout)
        )
    }
}
