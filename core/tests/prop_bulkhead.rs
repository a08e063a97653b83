//! The bulkhead against a tiny single-threaded reference model.
//!
//! Random sequences of every operation (RAII and tokens, including contract
//! breaches such as releasing a token twice) must give the model's
//! outcome and leave the model's counts. A second property keeps to the
//! contract and checks that permits and queue places are never lost or
//! duplicated: the counters always equal the guards/raw handles held, and
//! end at zero.
#![cfg(not(stockade_loom))]

use proptest::prelude::*;
use stockade::bulkhead::{
    Admission, Bulkhead, BulkheadConfig, BulkheadCounts, BulkheadFull, BulkheadPermit,
    BulkheadToken, LeaveQueue, NotHeld, QueueTicket, QueuedAcquire, RawAdmission,
};

/// A token as a binding holds it; its counts do not matter to a release.
const TOKEN: BulkheadToken = BulkheadToken::from_counts(BulkheadCounts {
    in_use: 0,
    queued: 0,
});

/// The reference: two plain counters and the rules, written as directly as
/// possible.
#[derive(Clone, Copy, Debug)]
struct Model {
    max: u32,
    max_queue: u32,
    in_use: u32,
    queued: u32,
}

impl Model {
    fn full(&self) -> BulkheadFull {
        BulkheadFull {
            in_use: self.in_use,
            queued: self.queued,
        }
    }

    fn counts(&self) -> BulkheadCounts {
        BulkheadCounts {
            in_use: self.in_use,
            queued: self.queued,
        }
    }

    fn try_acquire(&mut self) -> Result<BulkheadCounts, BulkheadFull> {
        if self.queued == 0 && self.in_use < self.max {
            self.in_use += 1;
            Ok(self.counts())
        } else {
            Err(self.full())
        }
    }

    fn release(&mut self) -> Result<BulkheadCounts, NotHeld> {
        if self.in_use == 0 {
            Err(NotHeld)
        } else {
            self.in_use -= 1;
            Ok(self.counts())
        }
    }

    fn enqueue(&mut self) -> RawAdmission {
        if let Ok(granted) = self.try_acquire() {
            RawAdmission::Acquired(BulkheadToken::from_counts(granted))
        } else if self.queued < self.max_queue {
            self.queued += 1;
            RawAdmission::Enqueued
        } else {
            RawAdmission::Full(self.full())
        }
    }

    fn acquire_queued(&mut self) -> QueuedAcquire {
        if self.queued == 0 {
            QueuedAcquire::NotQueued
        } else if self.in_use >= self.max {
            QueuedAcquire::Wait
        } else {
            self.queued -= 1;
            self.in_use += 1;
            QueuedAcquire::Acquired {
                token: BulkheadToken::from_counts(self.counts()),
                wake_next: self.queued > 0 && self.in_use < self.max,
            }
        }
    }

    fn leave(&mut self) -> LeaveQueue {
        if self.queued == 0 {
            LeaveQueue::NotQueued
        } else {
            self.queued -= 1;
            LeaveQueue::Left {
                wake_next: self.queued > 0 && self.in_use < self.max,
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    TryAcquire,
    TryAcquireRaw,
    ReleaseRaw,
    DropPermit(usize),
    ReleasePermit(usize),
    Enqueue,
    EnqueueRaw,
    TicketAcquire(usize),
    TicketLeave(usize),
    DropTicket(usize),
    AcquireQueuedRaw,
    LeaveQueueRaw,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::TryAcquire),
        2 => Just(Op::TryAcquireRaw),
        2 => Just(Op::ReleaseRaw),
        2 => any::<usize>().prop_map(Op::DropPermit),
        2 => any::<usize>().prop_map(Op::ReleasePermit),
        3 => Just(Op::Enqueue),
        2 => Just(Op::EnqueueRaw),
        3 => any::<usize>().prop_map(Op::TicketAcquire),
        1 => any::<usize>().prop_map(Op::TicketLeave),
        1 => any::<usize>().prop_map(Op::DropTicket),
        2 => Just(Op::AcquireQueuedRaw),
        1 => Just(Op::LeaveQueueRaw),
    ]
}

fn config() -> impl Strategy<Value = BulkheadConfig> {
    (1u32..=4, 0u32..=4).prop_map(|(max, queue)| {
        BulkheadConfig::DEFAULT
            .with_max_concurrent(max)
            .with_max_queue(queue)
    })
}

fn take<T>(v: &mut Vec<T>, i: usize) -> Option<T> {
    if v.is_empty() {
        None
    } else {
        let len = v.len();
        Some(v.swap_remove(i % len))
    }
}

fn assert_counts(b: &Bulkhead, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(b.in_use(), m.in_use);
    prop_assert_eq!(b.queued(), m.queued);
    prop_assert_eq!(b.available(), m.max - m.in_use);
    prop_assert_eq!(b.waiter_can_proceed(), m.queued > 0 && m.in_use < m.max);
    prop_assert!(m.in_use <= m.max && m.queued <= m.max_queue);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every operation, contract breaches included, matches the model.
    #[test]
    fn matches_the_model(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let b = Bulkhead::new(config).expect("valid config");
        let mut m = Model { max: config.max_concurrent, max_queue: config.max_queue, in_use: 0, queued: 0 };
        let mut permits: Vec<BulkheadPermit<'_>> = Vec::new();
        let mut tickets: Vec<QueueTicket<'_>> = Vec::new();
        for op in ops {
            match op {
                Op::TryAcquire => {
                    let want = m.try_acquire();
                    match b.try_acquire() {
                        Ok(p) => { prop_assert_eq!(want, Ok(p.granted())); permits.push(p); }
                        Err(e) => prop_assert_eq!(want, Err(e)),
                    }
                }
                Op::TryAcquireRaw => prop_assert_eq!(
                    b.try_acquire().map(BulkheadPermit::into_token),
                    m.try_acquire().map(BulkheadToken::from_counts)
                ),
                Op::ReleaseRaw => prop_assert_eq!(b.release(TOKEN), m.release()),
                Op::DropPermit(i) => {
                    if let Some(p) = take(&mut permits, i) {
                        drop(p);
                        let _ = m.release();
                    }
                }
                Op::ReleasePermit(i) => {
                    if let Some(p) = take(&mut permits, i) {
                        prop_assert_eq!(p.release(), m.release());
                    }
                }
                Op::Enqueue => match (b.enqueue(), m.enqueue()) {
                    (Admission::Acquired(p), RawAdmission::Acquired(t)) => {
                        prop_assert_eq!(p.granted(), t.granted());
                        permits.push(p);
                    }
                    (Admission::Enqueued(t), RawAdmission::Enqueued) => tickets.push(t),
                    (Admission::Full(e), RawAdmission::Full(f)) => prop_assert_eq!(e, f),
                    (got, want) => prop_assert!(false, "enqueue: got {:?}, model {:?}", got, want),
                },
                Op::EnqueueRaw => prop_assert_eq!(b.enqueue_raw(), m.enqueue()),
                Op::TicketAcquire(i) => {
                    if let Some(t) = take(&mut tickets, i) {
                        match (t.try_acquire(), m.acquire_queued()) {
                            (Ok(p), QueuedAcquire::Acquired { .. }) => permits.push(p),
                            // A ticket whose place was taken by a raw breach
                            // stays a ticket.
                            (Err(t), QueuedAcquire::Wait | QueuedAcquire::NotQueued) => tickets.push(t),
                            (got, want) => prop_assert!(false, "ticket: got {:?}, model {:?}", got.is_ok(), want),
                        }
                    }
                }
                Op::TicketLeave(i) => {
                    if let Some(t) = take(&mut tickets, i) {
                        let want = matches!(m.leave(), LeaveQueue::Left { wake_next: true });
                        prop_assert_eq!(t.leave(), want);
                    }
                }
                Op::DropTicket(i) => {
                    if let Some(t) = take(&mut tickets, i) {
                        drop(t);
                        let _ = m.leave();
                    }
                }
                Op::AcquireQueuedRaw => prop_assert_eq!(b.acquire_queued_raw(), m.acquire_queued()),
                Op::LeaveQueueRaw => prop_assert_eq!(b.leave_queue_raw(), m.leave()),
            }
            assert_counts(&b, &m)?;
        }
        // Dropping every guard returns what each still owns (never more).
        for p in permits.drain(..) {
            drop(p);
            let _ = m.release();
        }
        for t in tickets.drain(..) {
            drop(t);
            let _ = m.leave();
        }
        assert_counts(&b, &m)?;
    }

    /// Keeping to the raw contract, the counters always equal what is held,
    /// and everything comes back.
    #[test]
    fn nothing_leaks_or_duplicates(config in config(), ops in prop::collection::vec(op(), 1..80)) {
        let b = Bulkhead::new(config).expect("valid config");
        let mut permits: Vec<BulkheadPermit<'_>> = Vec::new();
        let mut tickets: Vec<QueueTicket<'_>> = Vec::new();
        let (mut raw_permits, mut raw_tickets) = (0u32, 0u32);
        for op in ops {
            // Set when the op reports that a waiter should be woken.
            let mut woke = false;
            let could_proceed = b.waiter_can_proceed();
            match op {
                Op::TryAcquire => {
                    if let Ok(p) = b.try_acquire() { permits.push(p) }
                }
                Op::TryAcquireRaw => {
                    if b.try_acquire().map(BulkheadPermit::into_token).is_ok() { raw_permits += 1 }
                }
                Op::ReleaseRaw => {
                    if raw_permits > 0 {
                        raw_permits -= 1;
                        let r = b.release(TOKEN);
                        prop_assert!(r.is_ok(), "{:?}", r);
                        woke = r.is_ok_and(BulkheadCounts::has_waiters);
                    }
                }
                Op::DropPermit(i) => drop(take(&mut permits, i)),
                Op::ReleasePermit(i) => {
                    if let Some(p) = take(&mut permits, i) {
                        let r = p.release();
                        prop_assert!(r.is_ok(), "{:?}", r);
                        woke = r.is_ok_and(BulkheadCounts::has_waiters);
                    }
                }
                Op::Enqueue => match b.enqueue() {
                    Admission::Acquired(p) => permits.push(p),
                    Admission::Enqueued(t) => tickets.push(t),
                    Admission::Full(_) => {}
                },
                Op::EnqueueRaw => match b.enqueue_raw() {
                    RawAdmission::Acquired(_) => raw_permits += 1,
                    RawAdmission::Enqueued => raw_tickets += 1,
                    RawAdmission::Full(_) => {}
                },
                Op::TicketAcquire(i) => {
                    if let Some(t) = take(&mut tickets, i) {
                        match t.try_acquire() {
                            Ok(p) => permits.push(p),
                            Err(t) => tickets.push(t),
                        }
                    }
                }
                Op::TicketLeave(i) => {
                    if let Some(t) = take(&mut tickets, i) { woke = t.leave(); }
                }
                Op::DropTicket(i) => drop(take(&mut tickets, i)),
                Op::AcquireQueuedRaw => {
                    if raw_tickets > 0 {
                        match b.acquire_queued_raw() {
                            QueuedAcquire::Acquired { wake_next, .. } => {
                                raw_tickets -= 1;
                                raw_permits += 1;
                                woke = wake_next;
                            }
                            QueuedAcquire::Wait => {}
                            QueuedAcquire::NotQueued => prop_assert!(false, "queued place lost"),
                        }
                    }
                }
                Op::LeaveQueueRaw => {
                    if raw_tickets > 0 {
                        raw_tickets -= 1;
                        match b.leave_queue_raw() {
                            LeaveQueue::Left { wake_next } => woke = wake_next,
                            LeaveQueue::NotQueued => prop_assert!(false, "queued place lost"),
                        }
                    }
                }
            }
            prop_assert_eq!(b.in_use(), permits.len() as u32 + raw_permits);
            prop_assert_eq!(b.queued(), tickets.len() as u32 + raw_tickets);
            prop_assert!(b.in_use() <= config.max_concurrent);
            prop_assert!(b.queued() <= config.max_queue);
            // No lost wake-up: an op that lets a queued waiter proceed when
            // none could before reports it (guard drops report nothing, so
            // they are exempt). Only releases can do this.
            if b.waiter_can_proceed() && !could_proceed {
                let silent = matches!(op, Op::DropPermit(_));
                prop_assert!(woke || silent, "{:?} freed a permit for a waiter silently", op);
            }
        }
        drop(permits);
        drop(tickets);
        for _ in 0..raw_permits {
            let r = b.release(TOKEN);
            prop_assert!(r.is_ok(), "{:?}", r);
        }
        for _ in 0..raw_tickets {
            let l = b.leave_queue_raw();
            prop_assert!(matches!(l, LeaveQueue::Left { .. }), "{:?}", l);
        }
        prop_assert_eq!((b.in_use(), b.queued()), (0, 0));
        prop_assert_eq!(b.release(TOKEN), Err(NotHeld));
        prop_assert_eq!(b.leave_queue_raw(), LeaveQueue::NotQueued);
    }
}
