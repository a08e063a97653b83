//! Loom models of the retry budget: under every interleaving (up to the
//! preemption bound) concurrent deposits and withdrawals never let retries
//! exceed what the deposits (and the floor's time) paid for, and no unit is
//! lost or created.
//!
//! Run with
//! `RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p stockade --release --test loom_budget`.
#![cfg(stockade_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;
use stockade::budget::{RetryBudget, RetryBudgetConfig};
use stockade::clock::ManualClock;

struct Shared {
    budget: RetryBudget,
    clock: ManualClock,
    grants: AtomicUsize,
}

impl Shared {
    fn new(config: RetryBudgetConfig) -> Arc<Shared> {
        Arc::new(Shared {
            budget: RetryBudget::new(config).expect("valid config"),
            clock: ManualClock::new(),
            grants: AtomicUsize::new(0),
        })
    }

    fn withdraw(&self) {
        if self.budget.try_withdraw(&self.clock).is_ok() {
            self.grants.fetch_add(1, SeqCst);
        }
    }

    fn drain(&self) {
        while self.budget.try_withdraw(&self.clock).is_ok() {}
    }
}

/// Three callers each record a call and then try a retry, on a drained
/// budget without a floor: 3 × 0.5 tokens pay for exactly one retry,
/// whatever the interleaving, and the half token left over is kept.
#[test]
fn concurrent_deposits_pay_for_exactly_one_retry() {
    loom::model(|| {
        let shared = Shared::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(0.5)
                .with_min_retries_per_second(0)
                .with_max_tokens(2),
        );
        shared.drain();
        let caller = |s: Arc<Shared>| {
            move || {
                s.budget.deposit(&s.clock);
                s.withdraw();
            }
        };
        let a = thread::spawn(caller(shared.clone()));
        let b = thread::spawn(caller(shared.clone()));
        caller(shared.clone())();
        a.join().expect("thread a");
        b.join().expect("thread b");
        // The last withdrawal comes after every deposit (each thread
        // deposits before it withdraws), so exactly one retry is granted.
        assert_eq!(shared.grants.load(SeqCst), 1);
        assert_eq!(shared.budget.balance_units(&shared.clock), 500);
    });
}

/// More contention: three callers each record a call and then try two
/// retries. Units are conserved exactly: what was deposited is either
/// granted or still in the bucket.
#[test]
fn units_are_conserved_under_contention() {
    loom::model(|| {
        let shared = Shared::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(0.5)
                .with_min_retries_per_second(0)
                .with_max_tokens(2),
        );
        shared.drain();
        let caller = |s: Arc<Shared>| {
            move || {
                s.budget.deposit(&s.clock);
                s.withdraw();
                s.withdraw();
            }
        };
        let a = thread::spawn(caller(shared.clone()));
        let b = thread::spawn(caller(shared.clone()));
        caller(shared.clone())();
        a.join().expect("thread a");
        b.join().expect("thread b");
        let grants = shared.grants.load(SeqCst) as u64;
        assert_eq!(grants, 1);
        assert_eq!(
            shared.budget.balance_units(&shared.clock) + grants * 1000,
            1500
        );
    });
}

/// Withdrawals race each other and a deposit on a budget holding one
/// token: at most 1 + 0.5 tokens were ever there, so at most one retry, and
/// what was not granted is still in the bucket.
#[test]
fn racing_withdrawals_never_overdraw() {
    loom::model(|| {
        let shared = Shared::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(0.5)
                .with_min_retries_per_second(0)
                .with_max_tokens(1),
        );
        let a = {
            let s = shared.clone();
            thread::spawn(move || s.withdraw())
        };
        let b = {
            let s = shared.clone();
            thread::spawn(move || {
                s.budget.deposit(&s.clock);
                s.withdraw();
            })
        };
        shared.withdraw();
        a.join().expect("thread a");
        b.join().expect("thread b");
        let grants = shared.grants.load(SeqCst) as u64;
        assert_eq!(grants, 1);
        // 1000 (initial) + deposit (500, or 0 if the bucket was full) - 1000.
        let left = shared.budget.balance_units(&shared.clock);
        assert!(left == 500 || left == 0, "left {left}");
    });
}

/// The floor: one token per microsecond. Two retries race the clock moving
/// by one microsecond on a drained budget: at most one retry, and a token
/// not taken is still there at the end.
#[test]
fn floor_refill_is_granted_once() {
    loom::model(|| {
        let shared = Shared::new(
            RetryBudgetConfig::DEFAULT
                .with_ratio(0.0)
                .with_min_retries_per_second(1_000_000)
                .with_max_tokens(1),
        );
        shared.drain();
        let a = {
            let s = shared.clone();
            thread::spawn(move || s.withdraw())
        };
        let b = {
            let s = shared.clone();
            thread::spawn(move || s.withdraw())
        };
        shared.clock.advance(core::time::Duration::from_micros(1));
        a.join().expect("thread a");
        b.join().expect("thread b");
        let grants = shared.grants.load(SeqCst) as u32;
        assert!(grants <= 1, "{grants} retries from one token");
        assert_eq!(grants + shared.budget.available(&shared.clock), 1);
    });
}
