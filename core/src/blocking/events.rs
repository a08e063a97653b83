//! Events and metrics (the spec's "monitor pattern metrics").
//!
//! Every pattern keeps a [`Metrics`] snapshot and lets listeners subscribe
//! to [`Event`]s. Dispatch costs one relaxed load when nobody listens (with
//! the telemetry features, one more load for a metrics collector and
//! `tracing`'s interest check); a listener that panics is caught and does
//! not break the pattern.

use core::fmt;
use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::panic::catch_unwind;
use std::sync::Arc;
use std::vec::Vec;

use crossbeam_utils::CachePadded;

use crate::breaker::BreakerState;
use crate::clock::Timestamp;
use crate::sync::{AtomicU64, Ordering, RwLock};

/// Which pattern emitted an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// [`CircuitBreaker`](super::CircuitBreaker).
    CircuitBreaker,
    /// [`Bulkhead`](super::Bulkhead).
    Bulkhead,
    /// [`RateLimiter`](super::RateLimiter).
    RateLimiter,
    /// [`Retry`](super::Retry).
    Retry,
    /// [`Timeout`](super::Timeout).
    Timeout,
    /// [`RequestResponsePattern`](super::RequestResponsePattern).
    RequestResponse,
    /// [`Fallback`](super::Fallback).
    Fallback,
    /// [`Hedging`](super::Hedging).
    Hedging,
}

/// Something a pattern did.
#[derive(Clone, Debug)]
pub struct Event {
    /// The pattern type.
    pub pattern: PatternKind,
    /// The instance's name.
    pub name: Arc<str>,
    /// When, on the pattern's clock.
    pub at: Timestamp,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EventKind {
    /// A circuit breaker changed state.
    StateChanged {
        /// The state before.
        from: BreakerState,
        /// The state after.
        to: BreakerState,
        /// The breaker's generation after the change (see
        /// [`crate::breaker::Transition`]): increases from event to event
        /// (wrapping at `CircuitBreaker::GENERATIONS`).
        generation: u32,
    },
    /// The periodic monitoring event a circuit breaker emits every
    /// `monitor_interval` while it has listeners.
    Monitor(Metrics),
    /// A call was refused without running (breaker open, bulkhead full,
    /// rate limited).
    Rejected {
        /// When a new attempt may succeed, if known.
        retry_after: Option<Duration>,
    },
    /// A failed attempt will be retried after `delay`.
    Retry {
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The back-off before the next attempt.
        delay: Duration,
    },
    /// A call ran out of time.
    TimedOut {
        /// The limit that was exceeded.
        after: Duration,
    },
    /// A caller gave up waiting in a queue.
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The pattern was disposed.
    Disposed,
    /// A [`Fallback`](super::Fallback) replaced a failed call's outcome
    /// with its fallback.
    FallbackUsed,
    /// A [`Hedging`](super::Hedging) launched an extra attempt.
    HedgeLaunched {
        /// The attempt's number (2 for the first hedge).
        attempt: u32,
    },
    /// A hedged attempt (not the first) gave a hedged call its result.
    HedgeWon {
        /// The winning attempt's number (2 or more).
        attempt: u32,
    },
    /// A Redis-backed pattern's server stopped answering (feature
    /// `redis`): from now on decisions follow its
    /// [`Fallback`](crate::redis::Fallback) until `StoreRecovered`.
    #[cfg(feature = "redis")]
    StoreUnavailable {
        /// Why the command that failed got no answer.
        cause: crate::redis::StoreFailure,
    },
    /// A Redis-backed pattern's server answers again (feature `redis`).
    #[cfg(feature = "redis")]
    StoreRecovered,
}

/// A snapshot of a pattern's counters. Fields a pattern does not use are
/// zero (or `None`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Calls that finished, the same in every pattern: the sum of the
    /// outcomes (`successes`, `failures`, `rejections`, `timeouts`, and a
    /// breaker's ignored outcomes). Calls still queued or running are not
    /// counted yet; calls refused because the pattern was disposed are not
    /// counted.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed: the closure's error, or its panic.
    pub failures: u64,
    /// Calls refused without running.
    pub rejections: u64,
    /// Calls that timed out (in a queue or running).
    pub timeouts: u64,
    /// Retries performed.
    pub retries: u64,
    /// Callers waiting in the queue now.
    pub queue_depth: u64,
    /// Calls running now.
    pub in_flight: u64,
    /// A circuit breaker's state.
    pub state: Option<BreakerState>,
    /// Decisions a Redis-backed pattern took under its fallback because
    /// Redis did not answer (feature `redis`; 0 otherwise).
    pub fallback_decisions: u64,
    /// Calls whose outcome a [`Fallback`](super::Fallback) replaced.
    pub fallbacks: u64,
    /// Extra attempts a [`Hedging`](super::Hedging) launched.
    pub hedges: u64,
    /// Hedged calls whose result came from an extra attempt.
    pub hedges_won: u64,
}

/// A pattern instance as telemetry reads it: its type, name and counters.
///
/// Every blocking pattern on the monotonic clock implements it;
/// [`registered_instances`](super::registered_instances) returns every registered instance as
/// one, and `stockade::telemetry::metrics::Collector::watch` (feature
/// `metrics`) takes one that no registry knows.
///
/// # Examples
///
/// ```
/// use stockade::blocking::{Observed, PatternKind};
/// use stockade::prelude::*;
///
/// let breaker = CircuitBreaker::new("doc-observed", BreakerConfig::DEFAULT)?;
/// let seen = stockade::blocking::registered_instances();
/// let mine = seen.iter().find(|o| o.name() == "doc-observed").unwrap();
/// assert_eq!(mine.kind(), PatternKind::CircuitBreaker);
/// assert_eq!(Observed::metrics(&**mine).calls, 0);
/// # breaker.dispose();
/// # Ok::<(), Error>(())
/// ```
pub trait Observed: Send + Sync {
    /// The pattern's type.
    fn kind(&self) -> PatternKind;
    /// The instance's name.
    fn name(&self) -> &str;
    /// A snapshot of its counters (the pattern's `metrics()`).
    fn metrics(&self) -> Metrics;
    /// `true` once disposed.
    fn is_disposed(&self) -> bool;
}

/// Identifies a subscribed listener, to remove it again.
///
/// Bindings that cannot keep a Rust value (C, Python) pass it as a `u64`:
/// [`as_u64`](Self::as_u64) and [`from_u64`](Self::from_u64). The number
/// is opaque (make no arithmetic on it) but stable: it names the same
/// subscription for the instance's whole lifetime. Ids are unique in the
/// process (never reused, never 0), so an id of another instance, a
/// made-up number or an id already removed is unknown to `unsubscribe`,
/// which returns `false` and removes nothing.
///
/// # Examples
///
/// ```
/// use stockade::blocking::{Bulkhead, ListenerId};
/// use stockade::bulkhead::BulkheadConfig;
///
/// let a = Bulkhead::unregistered("a", BulkheadConfig::DEFAULT)?;
/// let b = Bulkhead::unregistered("b", BulkheadConfig::DEFAULT)?;
/// let raw: u64 = a.subscribe(|_| {}).as_u64(); // e.g. handed to C
/// assert!(!b.unsubscribe(ListenerId::from_u64(raw))); // another instance's
/// assert!(a.unsubscribe(ListenerId::from_u64(raw)));
/// assert!(!a.unsubscribe(ListenerId::from_u64(raw))); // already removed
/// # Ok::<(), stockade::blocking::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

impl ListenerId {
    /// The id as a number, for a binding to hand out.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The id a binding handed out with [`as_u64`](Self::as_u64). Any
    /// number is accepted: one that names no subscription of the instance
    /// makes `unsubscribe` return `false`.
    pub const fn from_u64(id: u64) -> ListenerId {
        ListenerId(id)
    }
}

/// Unique in the process, so that one instance's id never names another
/// instance's listener. Process-wide, so outside loom's model.
static NEXT_LISTENER_ID: crate::sync::unmodelled::AtomicU64 =
    crate::sync::unmodelled::AtomicU64::new(1);

type Listener = Arc<dyn Fn(&Event) + Send + Sync>;

/// The listeners of one pattern instance.
pub(crate) struct Listeners {
    count: AtomicU64,
    list: RwLock<Vec<(ListenerId, Listener)>>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            count: AtomicU64::new(0),
            list: RwLock::new(Vec::new()),
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.len())
            .finish()
    }
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) -> ListenerId {
        // Relaxed: only uniqueness matters. A u64 does not wrap in practice.
        let id = ListenerId(NEXT_LISTENER_ID.fetch_add(1, Ordering::Relaxed));
        let mut list = self.list.write();
        list.push((id, listener));
        self.count.store(list.len() as u64, Ordering::Release);
        id
    }

    pub(crate) fn remove(&self, id: ListenerId) -> bool {
        let mut list = self.list.write();
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        self.count.store(list.len() as u64, Ordering::Release);
        list.len() != before
    }

    pub(crate) fn clear(&self) {
        let mut list = self.list.write();
        list.clear();
        self.count.store(0, Ordering::Release);
    }

    /// Number of listeners.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire) as usize
    }

    /// `true` if any listener is subscribed: one relaxed load.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) != 0
    }

    /// `true` if anyone wants events: a listener, or telemetry (a metrics
    /// collector, a `tracing` subscriber interested in the target
    /// `stockade`). Without the telemetry features, [`any`](Self::any).
    #[inline]
    pub(crate) fn wanted(&self) -> bool {
        self.any() || super::hooks::wants_events()
    }

    /// Builds the event only if someone wants it, hands it to telemetry,
    /// then calls each listener, catching panics. Listeners are called
    /// outside the lock, so a listener may subscribe or unsubscribe.
    #[inline]
    pub(crate) fn emit(&self, make: impl FnOnce() -> Event) {
        if self.wanted() {
            self.emit_slow(make());
        }
    }

    #[cold]
    fn emit_slow(&self, event: Event) {
        super::hooks::record_event(&event);
        if !self.any() {
            return;
        }
        let listeners: Vec<Listener> = self
            .list
            .read()
            .iter()
            .map(|(_, l)| Arc::clone(l))
            .collect();
        for listener in listeners {
            // A panicking listener must not break the pattern or the other
            // listeners; its panic message still reaches the panic hook.
            let _ = catch_unwind(AssertUnwindSafe(|| listener(&event)));
        }
    }
}

/// A monotonically increasing event counter for metrics.
///
/// Relaxed increments; the snapshot may be a moment stale, never torn.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub(crate) fn incr(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Stripes of a [`StripedCounter`]: threads that own one count without a
/// read-modify-write.
pub(crate) const STRIPES: usize = 8;
/// No stripe: count on the shared word.
#[cfg(not(stockade_loom))] // Loom counts on the shared word.
const NO_STRIPE: usize = usize::MAX;

/// The stripes handed out to live threads, and those returned by threads
/// that ended.
#[cfg(not(stockade_loom))] // Loom counts on the shared word.
struct StripeTable {
    next: usize,
    free: Vec<usize>,
}

#[cfg(not(stockade_loom))] // Loom counts on the shared word.
static STRIPE_TABLE: crate::sync::unmodelled::Mutex<StripeTable> =
    crate::sync::unmodelled::Mutex::new(StripeTable {
        next: 0,
        free: Vec::new(),
    });

/// A thread's claim on a stripe (process-wide: the same index in every
/// counter), returned when the thread ends.
#[cfg(not(stockade_loom))] // Loom counts on the shared word.
struct StripeClaim(usize);

#[cfg(not(stockade_loom))] // Loom counts on the shared word.
impl StripeClaim {
    fn claim() -> StripeClaim {
        let mut table = STRIPE_TABLE.lock();
        if let Some(stripe) = table.free.pop() {
            return StripeClaim(stripe);
        }
        if table.next < STRIPES {
            table.next += 1;
            return StripeClaim(table.next - 1);
        }
        StripeClaim(NO_STRIPE)
    }
}

#[cfg(not(stockade_loom))] // Loom counts on the shared word.
impl Drop for StripeClaim {
    fn drop(&mut self) {
        // From now on this thread counts on the shared words (a destructor
        // of another thread-local may still count).
        STRIPE.set(NO_STRIPE);
        if self.0 != NO_STRIPE {
            // The mutex orders this thread's last increments before the
            // next owner's first.
            STRIPE_TABLE.lock().free.push(self.0);
        }
    }
}

/// [`STRIPE`] before the thread's first count.
#[cfg(not(stockade_loom))] // Loom counts on the shared word.
const UNCLAIMED: usize = usize::MAX - 1;

#[cfg(not(stockade_loom))] // Loom counts on the shared word.
std::thread_local! {
    /// This thread's stripe: [`UNCLAIMED`] before its first count,
    /// [`NO_STRIPE`] when it has none (all taken, or its claim was
    /// returned as the thread ends). A `const` cell without a destructor:
    /// reading it is one load, with no lazy-initialisation check, and it
    /// stays readable while the thread's other thread-locals are destroyed.
    static STRIPE: core::cell::Cell<usize> = const { core::cell::Cell::new(UNCLAIMED) };
    /// The claim behind [`STRIPE`], made at the thread's first count and
    /// returned (its destructor) when the thread ends.
    static CLAIM: StripeClaim = StripeClaim::claim();
}

/// Claims this thread's stripe at its first count: the index, or
/// [`NO_STRIPE`] (none free, or the thread's thread-locals are being
/// destroyed).
#[cfg(not(stockade_loom))] // Loom counts on the shared word.
#[cold]
#[inline(never)]
fn claim_stripe() -> usize {
    let stripe = CLAIM.try_with(|claim| claim.0).unwrap_or(NO_STRIPE);
    // The claim's destructor, if it already ran, set `NO_STRIPE`; do not
    // overwrite that with the index it returned.
    if STRIPE.get() == UNCLAIMED {
        STRIPE.set(stripe);
    }
    STRIPE.get()
}

/// This thread's stripe of `stripes`, or `None` (count on the shared
/// word): the thread has none, or under loom, which runs its threads on one
/// OS thread with one set of thread-locals (stripes would be shared).
#[inline]
fn this_threads(stripes: &[CachePadded<AtomicU64>; STRIPES]) -> Option<&CachePadded<AtomicU64>> {
    #[cfg(stockade_loom)]
    {
        let _ = stripes;
        None
    }
    #[cfg(not(stockade_loom))]
    {
        let mut index = STRIPE.get();
        if index == UNCLAIMED {
            index = claim_stripe();
        }
        stripes.get(index)
    }
}

/// An event counter whose increment is a plain load and store (no
/// read-modify-write, no `lock` prefix) for up to [`STRIPES`] live threads:
/// each owns a stripe no other thread writes. Other threads (and threads
/// whose thread-locals are being destroyed) increment a shared word.
/// Reading sums everything: exact once concurrent increments are done.
#[derive(Default)]
pub(crate) struct StripedCounter {
    stripes: [CachePadded<AtomicU64>; STRIPES],
    shared: Counter,
}

impl StripedCounter {
    #[inline]
    pub(crate) fn incr(&self) {
        match this_threads(&self.stripes) {
            Some(stripe) => {
                // Only this thread writes the stripe.
                let n = stripe.load(Ordering::Relaxed);
                stripe.store(n.wrapping_add(1), Ordering::Relaxed);
            }
            None => self.shared.incr(),
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.stripes.iter().fold(self.shared.get(), |sum, s| {
            sum.wrapping_add(s.load(Ordering::Relaxed))
        })
    }
}

/// A gauge (`in_flight`) whose changes are read-modify-writes on the
/// changing thread's stripe, so threads that start and end calls at once
/// share no written cache line; a call that ends on another thread than
/// it started on subtracts on that thread's stripe, and the sum stays
/// right. Reading sums every stripe: exact once concurrent changes are
/// done; read while calls start and end elsewhere, it may miss some (it
/// never reads below zero).
#[derive(Default)]
pub(crate) struct StripedGauge {
    stripes: [CachePadded<AtomicU64>; STRIPES],
    shared: AtomicU64,
}

impl StripedGauge {
    /// This thread's stripe, or the shared word (see [`StripedCounter`]).
    #[inline]
    fn word(&self) -> &AtomicU64 {
        match this_threads(&self.stripes) {
            Some(stripe) => stripe,
            None => &self.shared,
        }
    }

    /// One more.
    #[inline]
    pub(crate) fn incr(&self) {
        self.word().fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer.
    #[inline]
    pub(crate) fn decr(&self) {
        self.word().fetch_sub(1, Ordering::Relaxed);
    }

    /// The sum (a stripe alone may be "negative": its calls ended here but
    /// started elsewhere), never below zero.
    pub(crate) fn get(&self) -> u64 {
        let sum = self
            .stripes
            .iter()
            .fold(self.shared.load(Ordering::Relaxed), |sum, s| {
                sum.wrapping_add(s.load(Ordering::Relaxed))
            });
        // Wrapped below zero: a read that saw an end but not its start.
        if sum > u64::MAX / 2 { 0 } else { sum }
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicUsize;

    fn event() -> Event {
        Event {
            pattern: PatternKind::Retry,
            name: Arc::from("x"),
            at: Timestamp::ZERO,
            kind: EventKind::Disposed,
        }
    }

    #[test]
    fn panicking_listener_does_not_stop_the_others() {
        let listeners = Listeners::default();
        let seen = Arc::new(AtomicUsize::new(0));
        listeners.add(Arc::new(|_: &Event| panic!("listener bug")));
        let s = Arc::clone(&seen);
        let id = listeners.add(Arc::new(move |_: &Event| {
            s.fetch_add(1, core::sync::atomic::Ordering::SeqCst);
        }));
        listeners.emit(event);
        assert_eq!(seen.load(core::sync::atomic::Ordering::SeqCst), 1);
        assert!(listeners.remove(id));
        assert!(!listeners.remove(id));
        assert_eq!(listeners.len(), 1);
    }

    #[test]
    fn no_listener_means_no_event_is_built() {
        let listeners = Listeners::default();
        listeners.emit(|| unreachable!("event built with no listener"));
    }
    #[test]
    fn striped_counts_are_exact_and_stripes_are_reused() {
        // Fewer increments under Miri (interpreted threads are slow); the
        // stripe reuse is the same.
        const PER_THREAD: u64 = if cfg!(miri) { 20 } else { 1000 };
        let c = StripedCounter::default();
        c.incr();
        for _ in 0..3 {
            std::thread::scope(|s| {
                for _ in 0..(STRIPES + 4) {
                    s.spawn(|| {
                        for _ in 0..PER_THREAD {
                            c.incr();
                        }
                    });
                }
            });
        }
        assert_eq!(c.get(), 1 + 3 * (STRIPES as u64 + 4) * PER_THREAD);
        let table = STRIPE_TABLE.lock();
        assert!(table.next <= STRIPES);
        assert!(table.free.len() <= STRIPES);
    }

    #[test]
    fn a_gauge_changed_on_several_threads_sums_to_what_is_in_flight() {
        let gauge = StripedGauge::default();
        gauge.incr();
        gauge.incr();
        assert_eq!(gauge.get(), 2);
        // Ended on other threads than it started on: their stripes go
        // below zero, the sum stays right.
        std::thread::scope(|scope| {
            scope.spawn(|| gauge.decr());
        });
        assert_eq!(gauge.get(), 1);
        let rounds = if cfg!(miri) { 100 } else { 10_000 };
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..rounds {
                        gauge.incr();
                        let seen = gauge.get();
                        assert!((1..=5).contains(&seen), "in flight: {seen}");
                        gauge.decr();
                    }
                });
            }
        });
        assert_eq!(gauge.get(), 1);
        std::thread::scope(|scope| {
            scope.spawn(|| gauge.decr());
        });
        assert_eq!(gauge.get(), 0);
        // A read that sees an end before its start is never below zero.
        gauge.decr();
        assert_eq!(gauge.get(), 0);
    }
}
