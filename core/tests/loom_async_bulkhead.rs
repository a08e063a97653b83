//! Loom models of the async bulkhead's cancellation (feature `async`): a
//! task waiting in the FIFO is dropped while a release grants it a permit.
//! Under every interleaving (up to the preemption bound) the permit is
//! never lost — it goes on to the next waiter, a parked thread or a task
//! woken through its `Waker` — no wake-up is lost (a waiter left waiting
//! would park forever, which loom reports as a deadlock), and every count
//! is back to zero at the end.
//!
//! Mutations that must fail these models (apply, run, see it fail,
//! revert):
//!
//! | where | mutation | first failure |
//! | --- | --- | --- |
//! | `Queued::drop` (bulkhead.rs), state `GRANTED` | `bulkhead.release(Held::Local(..))` → `drop(waiter.permit(&bulkhead.core))` (the permit back to the core, nobody granted) | `a_dropped_task_hands_its_permit_to_a_parked_thread`: loom deadlock (the thread behind is never granted) |
//! | `Queued::drop`, state `WAITING` | `bulkhead.leave_locked(..)` → nothing (the dropped task stays queued) | `a_dropped_task_hands_its_permit_to_a_parked_thread`: loom deadlock (the release grants the dropped task) |
//!
//! Loom has no time: the model timer's clock stands still, its async
//! sleep never completes and its `park_until` parks until unparked, so a
//! waiter waits until it is granted.
//!
//! Run with
//! `RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p stockade --profile loom --features async --test loom_async_bulkhead`.
#![cfg(stockade_loom)]

use core::future::{Future, Pending, pending};
use core::task::{Context, Poll, Waker};

use loom::sync::Arc;
use loom::thread;
use stockade::blocking::{AsyncTimer, Bulkhead, Error, Timer};
use stockade::bulkhead::BulkheadConfig;
use stockade::clock::{Clock, Timestamp};

/// Time stands still; a park lasts until an unpark; an async sleep never
/// ends.
struct ModelTimer;

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
        thread::park();
    }
}

impl AsyncTimer for ModelTimer {
    type Sleep = Pending<()>;

    fn sleep_until_async(&self, _deadline: Timestamp) -> Pending<()> {
        pending()
    }
}

/// One permit, two queue places.
fn bulkhead() -> Arc<Bulkhead<ModelTimer>> {
    let config = BulkheadConfig::DEFAULT
        .with_max_concurrent(1)
        .with_max_queue(2);
    Arc::new(Bulkhead::with_timer("loom-async", config, ModelTimer).expect("valid config"))
}

fn poll_once<F: Future>(f: core::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Every permit back, nobody queued; `successes` calls counted.
fn assert_drained(b: &Bulkhead<ModelTimer>, successes: u64) {
    let m = b.metrics();
    assert_eq!(m.in_flight, 0, "a permit leaked");
    assert_eq!(m.queue_depth, 0, "a queue place leaked");
    assert_eq!(m.successes, successes);
}

/// A queued task is dropped while another thread releases the permit (so
/// the release grants the task, or finds it gone); a blocking waiter
/// queued behind it must get the permit either way.
#[test]
fn a_dropped_task_hands_its_permit_to_a_parked_thread() {
    loom::model(|| {
        let b = bulkhead();
        let token = b.acquire().expect("the only permit").into_token();
        let mut task = Box::pin(b.execute_async(async { Ok::<_, ()>("task") }));
        assert!(poll_once(task.as_mut()).is_pending(), "the task queued");
        let thread_waiter = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.execute(|| Ok::<_, ()>("thread")))
        };
        let releaser = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.release_token(token).expect("held"))
        };
        drop(task);
        releaser.join().unwrap();
        assert!(matches!(thread_waiter.join().unwrap(), Ok("thread")));
        assert_drained(&b, 2);
    });
}

/// As above, the next waiter a task driven by `block_on`: it must be
/// woken through its waker, by the release or by the dropped task's
/// hand-on.
#[test]
fn a_dropped_task_hands_its_permit_to_a_waiting_task() {
    loom::model(|| {
        let b = bulkhead();
        let token = b.acquire().expect("the only permit").into_token();
        let mut first = Box::pin(b.execute_async(async { Ok::<_, ()>("first") }));
        assert!(
            poll_once(first.as_mut()).is_pending(),
            "the first task queued"
        );
        let second = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                loom::future::block_on(b.execute_async(async { Ok::<_, ()>("second") }))
            })
        };
        let releaser = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.release_token(token).expect("held"))
        };
        drop(first);
        releaser.join().unwrap();
        assert!(matches!(second.join().unwrap(), Ok("second")));
        assert_drained(&b, 2);
    });
}

/// A task waits (driven by `block_on`) while the holder releases: the
/// grant and the task's registering of its waker race; it is always woken
/// and runs.
#[test]
fn a_release_racing_a_waiting_task_always_wakes_it() {
    loom::model(|| {
        let b = bulkhead();
        let token = b.acquire().expect("the only permit").into_token();
        let task = {
            let b = Arc::clone(&b);
            thread::spawn(move || {
                loom::future::block_on(b.execute_async(async { Ok::<_, ()>(()) }))
            })
        };
        b.release_token(token).expect("held");
        assert!(task.join().unwrap().is_ok());
        assert_drained(&b, 2);
    });
}

/// A queued task is dropped while another thread disposes the bulkhead
/// (the drain and the drop race for the task's place): nothing is left
/// queued or held, and the next caller is told `Disposed`.
#[test]
fn a_dropped_task_racing_dispose_leaves_nothing() {
    loom::model(|| {
        let b = bulkhead();
        let guard = b.acquire().expect("the only permit");
        let mut task = Box::pin(b.execute_async(async { Ok::<_, ()>(()) }));
        assert!(poll_once(task.as_mut()).is_pending(), "the task queued");
        let disposer = {
            let b = Arc::clone(&b);
            thread::spawn(move || b.dispose())
        };
        drop(task);
        disposer.join().unwrap();
        drop(guard);
        let m = b.metrics();
        assert_eq!((m.in_flight, m.queue_depth), (0, 0));
        assert!(matches!(
            b.execute(|| Ok::<_, ()>(())),
            Err(Error::Disposed)
        ));
    });
}
