//! Loom models: the rate limiter never grants beyond its quota, and never
//! loses or duplicates a slot, under concurrent acquires, reservations and
//! cancels, with a fixed clock or one advanced by another thread.
//!
//! ```text
//! RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test -p stockade --release --test loom_limiter
//! ```
#![cfg(stockade_loom)]

use core::time::Duration;

use loom::sync::Arc;
use loom::thread;
use stockade::clock::{Clock, ManualClock, Timestamp};
use stockade::limiter::{RateLimiter, RateLimiterConfig};

fn limiter(burst: u32, queue: u32) -> RateLimiter {
    RateLimiter::new(
        RateLimiterConfig::DEFAULT
            .with_burst(burst)
            .with_max_queue_size(queue),
    )
    .unwrap()
}

type Shared = Arc<(RateLimiter, ManualClock)>;

fn shared(burst: u32, queue: u32) -> Shared {
    Arc::new((limiter(burst, queue), ManualClock::new()))
}

/// Three threads race for two permits at a fixed time: exactly two win.
#[test]
fn concurrent_acquires_take_exactly_the_burst() {
    loom::model(|| {
        let s = shared(2, 0);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.0.try_acquire(&s.1).is_ok())
            })
            .collect();
        let granted = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count();
        assert_eq!(granted, 2);
        assert_eq!(s.0.available(&s.1), 0);
    });
}

/// Two reservations and an acquire race for one permit plus a queue of two:
/// exactly one gets the permit at once, the others are booked one interval
/// apart, FIFO, with no slot shared or skipped.
#[test]
fn reservations_book_distinct_consecutive_slots() {
    loom::model(|| {
        let s = shared(1, 2);
        let t = s.0.emission_interval();
        let reservers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    let r = s.0.reserve(1, Duration::MAX, &s.1).unwrap();
                    r.ready_at().as_nanos()
                })
            })
            .collect();
        let acquired = {
            let s = s.clone();
            thread::spawn(move || s.0.try_acquire(&s.1).is_ok())
        };
        let mut ready: Vec<u64> = reservers.into_iter().map(|h| h.join().unwrap()).collect();
        let acquired = acquired.join().unwrap();
        if acquired {
            ready.push(0);
        }
        ready.sort_unstable();
        let t = t.as_nanos() as u64;
        let expected: Vec<u64> = (0..ready.len() as u64).map(|k| k * t).collect();
        assert_eq!(ready, expected);
        // Everyone who did not get the permit at once is queued.
        assert_eq!(s.0.queue_depth(&s.1) as usize, ready.len() - 1);
    });
}

/// One thread moves time by one interval while two acquire: at most
/// burst + 1 grants, and never more than that counting what is left (if
/// both grants happened after the tick, one permit of the first interval
/// was simply never taken: GCRA does not bank it).
#[test]
fn advancing_clock_grants_at_most_one_more() {
    loom::model(|| {
        let s = shared(1, 0);
        let t = s.0.emission_interval();
        let ticker = {
            let s = s.clone();
            thread::spawn(move || s.1.advance(t))
        };
        let acquirers: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.0.try_acquire(&s.1).is_ok())
            })
            .collect();
        ticker.join().unwrap();
        let granted = acquirers
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&ok| ok)
            .count() as u32;
        assert!(granted >= 1);
        assert_eq!(s.1.now(), Timestamp::ZERO.saturating_add(t));
        let left = s.0.available(&s.1);
        assert!(granted + left <= 2, "granted {granted}, {left} left");
        assert!(granted + left >= 1);
    });
}

/// A waiter that gives up races a newcomer: a cancel never frees a slot
/// that someone else holds. The live bookings always occupy exactly the
/// first slots after the drained bucket.
#[test]
fn cancel_never_frees_someone_elses_slot() {
    loom::model(|| {
        let s = shared(1, 2);
        let t = s.0.emission_interval().as_nanos() as u64;
        s.0.try_acquire(&s.1).unwrap();
        let quitter = {
            let s = s.clone();
            thread::spawn(move || {
                let r = s.0.reserve(1, Duration::MAX, &s.1).unwrap();
                let token = r.into_token();
                match s.0.cancel(token, &s.1) {
                    Ok(_) => None,
                    Err(_) => Some(token.ready_at().as_nanos()),
                }
            })
        };
        let stayer = {
            let s = s.clone();
            thread::spawn(move || {
                let r = s.0.reserve(1, Duration::MAX, &s.1).unwrap();
                r.ready_at().as_nanos()
            })
        };
        let mut live: Vec<u64> = quitter.join().unwrap().into_iter().collect();
        live.push(stayer.join().unwrap());
        live.sort_unstable();
        let expected: Vec<u64> = (1..=live.len() as u64).map(|k| k * t).collect();
        assert_eq!(live, expected);
        assert_eq!(s.0.queue_depth(&s.1) as usize, live.len());
    });
}
