//! The blocking face of a bulkhead shared between processes: the core's
//! [`SharedBulkhead`] (permits host-wide, owner slots, the reaper) with
//! what a `stockade_bulkhead_handle` promises on top: waiting up to
//! `queue_timeout`, this process's counters and listeners, dispose, and a
//! pipeline stage.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;
use std::boxed::Box;
use std::sync::{Arc, RwLock};
use std::vec::Vec;

use stockade_core::blocking::{
    DynPolicy, DynResult, Error, Event, EventKind, ListenerId, Metrics, Next, PatternKind,
};
use stockade_core::bulkhead::{BulkheadConfig, NotHeld};
use stockade_core::clock::Clock;
use stockade_core::shared::{
    HostClock, QueuePlace, SharedBulkhead, SharedBulkheadError, SharedError, SharedOptions,
    SharedToken,
};

/// Listener ids of shared bulkheads: the upper half of the id space, so
/// they never name a listener of the core's patterns (whose ids count up
/// from 1) and stay unique in the process.
static NEXT_LISTENER_ID: AtomicU64 = AtomicU64::new(1 << 63);

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// Why a call got no permit.
pub(crate) enum Refusal {
    Full,
    Timeout(Duration),
    Disposed,
    /// A forked child could not take an owner slot.
    Owner(SharedError),
}

impl Refusal {
    pub(crate) fn into_error<E>(self) -> Error<E> {
        match self {
            Refusal::Full => Error::BulkheadFull,
            Refusal::Timeout(waited) => Error::QueueTimeout { waited },
            Refusal::Disposed => Error::Disposed,
            Refusal::Owner(e) => Error::Shared(e),
        }
    }
}

/// A bulkhead every process on the host shares, as a blocking pattern.
pub(crate) struct SharedBulkheadPattern {
    bulkhead: SharedBulkhead,
    name: Arc<str>,
    disposed: AtomicBool,
    successes: AtomicU64,
    failures: AtomicU64,
    rejections: AtomicU64,
    timeouts: AtomicU64,
    listeners: RwLock<Vec<(ListenerId, Listener)>>,
    /// `listeners.len()`, read without the lock on every event.
    listening: AtomicU64,
}

impl SharedBulkheadPattern {
    /// Opens the shared bulkhead `name` (see [`SharedBulkhead::open`]).
    pub(crate) fn open(
        name: &str,
        config: BulkheadConfig,
        options: &SharedOptions,
    ) -> Result<Self, SharedError> {
        let bulkhead = SharedBulkhead::open(name, config, options)?;
        Ok(SharedBulkheadPattern {
            bulkhead,
            name: Arc::from(name),
            disposed: AtomicBool::new(false),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            listeners: RwLock::new(Vec::new()),
            listening: AtomicU64::new(0),
        })
    }

    fn config(&self) -> &BulkheadConfig {
        self.bulkhead.config()
    }

    fn emit(&self, kind: EventKind) {
        if self.listening.load(Ordering::Acquire) == 0 {
            return;
        }
        let event = Event {
            pattern: PatternKind::Bulkhead,
            name: Arc::clone(&self.name),
            at: HostClock.now(),
            kind,
        };
        // Called outside the lock, so a listener may subscribe or
        // unsubscribe.
        let list: Vec<Listener> = self
            .listeners
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| Arc::clone(l))
            .collect();
        for listener in list {
            let _ = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| listener(&event)));
        }
    }

    fn reject(&self) -> Refusal {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.emit(EventKind::Rejected { retry_after: None });
        Refusal::Full
    }

    fn owner(e: SharedError) -> Refusal {
        crate::blocking::shared::set_last_error(&e);
        Refusal::Owner(e)
    }

    /// A permit, waiting up to `wait` (polling: 50 µs doubling to 1 ms).
    pub(crate) fn admit(&self, wait: Duration) -> Result<SharedToken, Refusal> {
        if self.disposed.load(Ordering::Acquire) {
            return Err(Refusal::Disposed);
        }
        match self.bulkhead.try_acquire() {
            Ok(permit) => return Ok(permit.into_token()),
            Err(SharedBulkheadError::Owner(e)) => return Err(Self::owner(e)),
            Err(_) => {}
        }
        if wait.is_zero() {
            return Err(self.reject());
        }
        let place = match self.bulkhead.join_queue() {
            Ok(place) => place,
            Err(SharedBulkheadError::Owner(e)) => return Err(Self::owner(e)),
            Err(_) => return Err(self.reject()),
        };
        let start = HostClock.now();
        let mut poll = QueuePlace::FIRST_POLL;
        loop {
            if let Ok(permit) = place.try_acquire() {
                return Ok(permit.into_token());
            }
            if self.disposed.load(Ordering::Acquire) {
                return Err(Refusal::Disposed);
            }
            let waited = HostClock.now().saturating_duration_since(start);
            if waited >= wait {
                drop(place);
                self.timeouts.fetch_add(1, Ordering::Relaxed);
                self.emit(EventKind::QueueTimeout { waited });
                return Err(Refusal::Timeout(waited));
            }
            std::thread::sleep(poll.min(wait - waited));
            poll = place.next_poll(poll);
        }
    }

    /// The wait of `acquire(timeout)`: at most the config's `queue_timeout`.
    pub(crate) fn wait_for(&self, timeout: Option<Duration>) -> Duration {
        let limit = self.config().queue_timeout;
        timeout.map_or(limit, |t| t.min(limit))
    }

    /// Returns a permit and counts the call's outcome.
    pub(crate) fn release(&self, token: SharedToken, failed: bool) -> Result<(), NotHeld> {
        self.bulkhead.release(token)?;
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        } else {
            self.successes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Runs `call` holding a permit taken within `wait`, counts its
    /// outcome, releases the permit (also if `call` unwinds).
    pub(crate) fn run<R, E>(
        &self,
        wait: Duration,
        call: impl FnOnce() -> Result<R, Error<E>>,
    ) -> Result<R, Error<E>> {
        let token = self.admit(wait).map_err(Refusal::into_error)?;
        struct Held<'a> {
            pattern: &'a SharedBulkheadPattern,
            token: SharedToken,
            failed: bool,
        }
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                let _ = self.pattern.release(self.token, self.failed);
            }
        }
        let mut held = Held {
            pattern: self,
            token,
            failed: true,
        };
        let result = call();
        held.failed = result.is_err();
        drop(held);
        result
    }

    /// This process's counters; `in_flight` and `queue_depth` host-wide.
    pub(crate) fn metrics(&self) -> Metrics {
        let successes = self.successes.load(Ordering::Relaxed);
        let failures = self.failures.load(Ordering::Relaxed);
        let rejections = self.rejections.load(Ordering::Relaxed);
        let timeouts = self.timeouts.load(Ordering::Relaxed);
        Metrics {
            calls: successes + failures + rejections + timeouts,
            successes,
            failures,
            rejections,
            timeouts,
            queue_depth: u64::from(self.bulkhead.waiting()),
            in_flight: u64::from(self.bulkhead.in_use()),
            ..Metrics::default()
        }
    }

    pub(crate) fn subscribe(&self, listener: Box<dyn Fn(&Event) + Send + Sync>) -> ListenerId {
        let id = ListenerId::from_u64(NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed));
        let mut list = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        // A disposed bulkhead keeps no listener: it would never be called.
        if !self.disposed.load(Ordering::Acquire) {
            list.push((id, Arc::from(listener)));
            self.listening.store(list.len() as u64, Ordering::Release);
        }
        id
    }

    pub(crate) fn unsubscribe(&self, id: ListenerId) -> bool {
        let mut list = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        self.listening.store(list.len() as u64, Ordering::Release);
        list.len() != before
    }

    /// This process's handles refuse every call from now on; waiters in
    /// this process give up at their next poll. Other processes are not
    /// affected. Emits `Disposed` once, then drops the listeners.
    pub(crate) fn dispose(&self) {
        if self.disposed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.emit(EventKind::Disposed);
        let mut list = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        list.clear();
        self.listening.store(0, Ordering::Release);
    }
}

impl DynPolicy for SharedBulkheadPattern {
    fn run_dyn(&self, next: &Next) -> DynResult {
        self.run(self.config().queue_timeout, || next.run())
    }
}

impl crate::blocking::Pattern for SharedBulkheadPattern {
    fn metrics(&self) -> Metrics {
        SharedBulkheadPattern::metrics(self)
    }
    fn subscribe(&self, listener: Box<dyn Fn(&Event) + Send + Sync>) -> ListenerId {
        SharedBulkheadPattern::subscribe(self, listener)
    }
    fn unsubscribe(&self, id: ListenerId) -> bool {
        SharedBulkheadPattern::unsubscribe(self, id)
    }
    fn dispose(&self) {
        SharedBulkheadPattern::dispose(self)
    }
}
