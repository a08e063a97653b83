//! Loom models of the blocking bulkhead's hand-off: a releasing thread
//! grants its permit to a parked waiter under the queue lock and unparks
//! it. Under every interleaving (up to the preemption bound) a queued
//! waiter is always granted or disposed (a lost wake-up would leave it
//! parked forever, which loom reports as a deadlock), grants follow FIFO
//! order, at most `max_concurrent` closures run at once, and the counts
//! are back to zero at the end.
//!
//! The hand-off's invariant is also checked where it must hold, not only
//! through its symptom: **a free permit and a queued waiter never coexist
//! without a wake-up owed.** A wake-up is owed from a release that found
//! waiters until that release returns (it grants under the queue lock
//! before returning), so once a release has returned, and no other
//! release can be in flight, nobody is queued while a permit is free
//! ([`Shared::assert_no_wake_up_owed`]). Every way to release a permit is
//! modelled: a closure's end (`execute`), a guard's drop, and a token
//! handed back with `release_token` (the path a lost wake-up once survived
//! these models in: none of them released through it).
//!
//! Mutations that must fail these models (apply, run, see it fail,
//! revert):
//!
//! | file:line | mutation | first failure |
//! | --- | --- | --- |
//! | `core/src/blocking/bulkhead.rs:531-533` (`release_token`) | `if counts.has_waiters() { self.wake_waiters(); }` → `let _ = counts;` | `a_token_release_racing_a_queueing_waiter_always_grants_it` panicked: `a free permit and a queued waiter coexist with no wake-up owed (1 queued, 0 in use): the release lost its wake-up` (the other seven models pass on this build) |
//! | `core/src/blocking/bulkhead.rs:807` (`release`) | `is_ok_and(BulkheadCounts::has_waiters)` → `is_ok_and(\|_\| false)` | `a_guard_release_racing_a_queueing_waiter_always_grants_it` panicked with the same message; the other models report a loom deadlock |
//!
//! The blocking layer's locks, `Arc`s and thread parking are loom's here
//! (through the crate's sync shim). Loom has no time: the model timer's
//! clock stands still and its `park_until` parks until unparked, so a
//! waiter waits until it is granted or the bulkhead is disposed.
//!
//! Run with
//! `RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p stockade --profile loom --test loom_blocking_bulkhead`.
#![cfg(stockade_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use stockade::blocking::{Bulkhead, Error, Timer};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, Timestamp};

/// A timer loom can run: time stands still (no queue timeout ever
/// expires) and a park lasts until an unpark. It counts the parks, so a
/// test can wait until a waiter is queued (a waiter parks only after it
/// joined the queue, and only a grant or a dispose unparks it).
#[derive(Default)]
struct ModelTimer {
    parks: AtomicUsize,
}

impl Clock for ModelTimer {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(0)
    }
}

impl Timer for ModelTimer {
    fn sleep_until(&self, _deadline: Timestamp) {
        unreachable!("the bulkhead never sleeps");
    }

    fn park_until(&self, _deadline: Timestamp) {
        self.parks.fetch_add(1, SeqCst);
        thread::park();
    }
}

/// The bulkhead under test plus an independent count of the closures
/// running and a record of the order they ran in.
struct Shared {
    bulkhead: Bulkhead<ModelTimer>,
    inside: AtomicUsize,
    /// The next ticket to hand out: tickets record the order closures ran.
    order: AtomicUsize,
}

impl Shared {
    /// One permit, `max_queue` places; the default 30 s queue timeout
    /// never expires on the model timer.
    fn new(max_queue: u32) -> Arc<Shared> {
        let config = BulkheadConfig::DEFAULT
            .with_max_concurrent(1)
            .with_max_queue(max_queue);
        Arc::new(Shared {
            bulkhead: Bulkhead::with_timer("loom", config, ModelTimer::default())
                .expect("valid config"),
            inside: AtomicUsize::new(0),
            order: AtomicUsize::new(0),
        })
    }

    /// The body of every closure: counts itself in (never more than one
    /// at once) and out, and returns its ticket.
    fn enter(&self) -> usize {
        let now = self.inside.fetch_add(1, SeqCst) + 1;
        assert_eq!(now, 1, "{now} closures inside a bulkhead of one permit");
        self.order.fetch_add(1, SeqCst)
    }

    fn leave(&self) {
        self.inside.fetch_sub(1, SeqCst);
    }

    /// A thread that makes one [`call`](Self::call).
    fn spawn_waiter(s: &Arc<Shared>) -> thread::JoinHandle<Result<usize, Error<()>>> {
        let s = Arc::clone(s);
        thread::spawn(move || s.call())
    }

    /// Runs a closure through the bulkhead; its ticket, or the refusal.
    fn call(&self) -> Result<usize, Error<()>> {
        self.bulkhead.execute(|| {
            let ticket = self.enter();
            self.leave();
            Ok(ticket)
        })
    }

    /// Yields until the waiters parked `n` times in total.
    fn wait_parked(&self, n: usize) {
        while self.bulkhead.timer().parks.load(SeqCst) < n {
            thread::yield_now();
        }
    }

    /// The hand-off's invariant: a free permit and a queued waiter do not
    /// coexist once the releases have returned. Call it where no other
    /// release can be in flight (only one waiter may still be running, so
    /// the two reads cannot tear: the waiter is queued only while the
    /// permit is held, and granted before the release returns).
    fn assert_no_wake_up_owed(&self) {
        let queued = self.bulkhead.metrics().queue_depth;
        let in_use = self.bulkhead.metrics().in_flight;
        assert!(
            queued == 0 || in_use == 1,
            "a free permit and a queued waiter coexist with no wake-up owed \
             ({queued} queued, {in_use} in use): the release lost its wake-up"
        );
    }

    /// Every permit back, nobody queued, nobody inside; `successes`
    /// closures ran.
    fn assert_drained(&self, successes: u64) {
        let m = self.bulkhead.metrics();
        assert_eq!(m.in_flight, 0, "a permit leaked");
        assert_eq!(m.queue_depth, 0, "a queue place leaked");
        assert_eq!(self.inside.load(SeqCst), 0);
        assert_eq!(m.successes, successes);
        assert_eq!(m.rejections + m.timeouts + m.failures, 0);
    }
}

/// (a) A holder releases while a waiter arrives: the waiter queues (or
/// finds the permit free), and is always granted. A lost wake-up (the
/// grant's unpark before the waiter parks, or a release that misses the
/// newly queued waiter) would leave it parked: loom reports a deadlock.
#[test]
fn a_release_racing_a_queueing_waiter_always_grants_it() {
    loom::model(|| {
        let s = Shared::new(1);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            // The waiter starts while the only permit is held.
            let waiter = Shared::spawn_waiter(&s);
            s.leave();
            Ok::<_, ()>(waiter)
        });
        let waiter = holder.expect("the holder ran first");
        s.assert_no_wake_up_owed();
        assert!(
            matches!(waiter.join().unwrap(), Ok(1)),
            "the waiter ran second"
        );
        s.assert_drained(2);
    });
}

/// (a2) As (a), the permit held as a guard: its drop releases it and
/// grants the waiter; once the drop returned no wake-up is owed.
#[test]
fn a_guard_release_racing_a_queueing_waiter_always_grants_it() {
    loom::model(|| {
        let s = Shared::new(1);
        let guard = s.bulkhead.acquire().expect("the only permit");
        let waiter = Shared::spawn_waiter(&s);
        drop(guard);
        s.assert_no_wake_up_owed();
        assert!(matches!(waiter.join().unwrap(), Ok(0)), "the waiter ran");
        s.assert_drained(2);
    });
}

/// (a3) As (a), the permit held as a plain token (the C and Python
/// bindings' way) and handed back with `release_token`, which must grant
/// the waiter as every other release does.
#[test]
fn a_token_release_racing_a_queueing_waiter_always_grants_it() {
    loom::model(|| {
        let s = Shared::new(1);
        let token = s.bulkhead.acquire().expect("the only permit").into_token();
        let waiter = Shared::spawn_waiter(&s);
        s.bulkhead.release_token(token).expect("the token is held");
        s.assert_no_wake_up_owed();
        assert!(matches!(waiter.join().unwrap(), Ok(0)), "the waiter ran");
        s.assert_drained(2);
    });
}

/// (b) Two waiters queue behind a holder, the second racing the
/// holder's release: the first queued runs first, then the second; no
/// permit is lost and nobody barges.
#[test]
fn two_waiters_are_granted_in_fifo_order() {
    loom::model(|| {
        let s = Shared::new(2);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            let first = Shared::spawn_waiter(&s);
            // The first waiter is queued before the second starts.
            s.wait_parked(1);
            let second = Shared::spawn_waiter(&s);
            s.leave();
            Ok::<_, ()>((first, second))
        });
        let (first, second) = holder.expect("the holder ran first");
        assert!(
            matches!(first.join().unwrap(), Ok(1)),
            "the first waiter ran second"
        );
        assert!(
            matches!(second.join().unwrap(), Ok(2)),
            "the second waiter ran last"
        );
        s.assert_drained(3);
    });
}

/// (b2) Two waiters race each other and the holder's release, in no
/// set order: all three closures run, one at a time, and no permit or
/// queue place is lost.
#[test]
fn two_racing_waiters_and_a_release_all_run() {
    loom::model(|| {
        let s = Shared::new(2);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            let waiters = (Shared::spawn_waiter(&s), Shared::spawn_waiter(&s));
            s.leave();
            Ok::<_, ()>(waiters)
        });
        let (a, b) = holder.expect("the holder ran first");
        let mut tickets = [a.join().unwrap(), b.join().unwrap()].map(|r| r.expect("ran"));
        tickets.sort_unstable();
        assert_eq!(tickets, [1, 2]);
        s.assert_drained(3);
    });
}

/// (c1) `dispose` right after the holder's release, racing a waiter that
/// queues or finds the permit free: the waiter runs or returns
/// `Disposed`, never hangs; the counts return to zero.
#[test]
fn dispose_racing_a_waiter_wakes_or_runs_it() {
    loom::model(|| {
        let s = Shared::new(1);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            let waiter = Shared::spawn_waiter(&s);
            s.leave();
            Ok::<_, ()>(waiter)
        });
        let waiter = holder.expect("the holder ran first");
        s.bulkhead.dispose();
        let ran = match waiter.join().unwrap() {
            Ok(ticket) => {
                assert_eq!(ticket, 1);
                1
            }
            Err(Error::Disposed) => 0,
            Err(other) => panic!("the waiter failed with {other:?}"),
        };
        s.assert_drained(1 + ran);
    });
}

/// (c2) `dispose` while the permit is held, racing a waiter that
/// arrives: a waiter that queued is woken by the drain with `Disposed`,
/// and nobody queues after the drain (where no dispose would wake it).
/// The waiter may still run, but only without ever queueing: it passed
/// the disposed check before the dispose and found the permit free after
/// the holder's release. The counts return to zero.
#[test]
fn dispose_while_held_leaves_nobody_queued() {
    loom::model(|| {
        let s = Shared::new(1);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            let waiter = Shared::spawn_waiter(&s);
            s.bulkhead.dispose();
            s.leave();
            Ok::<_, ()>(waiter)
        });
        let waiter = holder.expect("the holder ran first");
        let result = waiter.join().unwrap();
        let parked = s.bulkhead.timer().parks.load(SeqCst);
        match result {
            Err(Error::Disposed) => s.assert_drained(1),
            Ok(ticket) => {
                assert_eq!(parked, 0, "a waiter queued after the drain");
                assert_eq!(ticket, 1);
                s.assert_drained(2);
            }
            Err(other) => panic!("the waiter failed with {other:?}"),
        }
    });
}

/// (c3) `dispose` from a third thread racing both the holder's release
/// and a queued waiter's grant.
#[test]
fn dispose_racing_a_grant_wakes_or_runs_the_waiter() {
    loom::model(|| {
        let s = Shared::new(1);
        let holder = s.bulkhead.execute(|| {
            s.enter();
            let waiter = Shared::spawn_waiter(&s);
            // Only the dispose races; the waiter is queued.
            s.wait_parked(1);
            let disposer = {
                let s = Arc::clone(&s);
                thread::spawn(move || s.bulkhead.dispose())
            };
            s.leave();
            Ok::<_, ()>((waiter, disposer))
        });
        let (waiter, disposer) = holder.expect("the holder ran first");
        disposer.join().unwrap();
        let ran = match waiter.join().unwrap() {
            Ok(ticket) => {
                assert_eq!(ticket, 1);
                1
            }
            Err(Error::Disposed) => 0,
            Err(other) => panic!("the waiter failed with {other:?}"),
        };
        s.assert_drained(1 + ran);
        assert!(s.bulkhead.is_disposed());
    });
}
