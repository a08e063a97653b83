//! Helpers shared by the blocking integration tests.
#![allow(dead_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

/// How long any helper waits for another thread before failing the test.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Spins (yielding) until `cond` holds: waits for another thread to reach a
/// state, never for time to pass. Fails the test after [`PATIENCE`].
#[track_caller]
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// [`wait_until`] without a description.
#[track_caller]
pub(crate) fn wait_for(cond: impl FnMut() -> bool) {
    wait_until("the condition holds", cond);
}

/// A name no other test uses (for registry tests).
pub(crate) fn unique(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `f` on its own thread and fails the test if it does not finish
/// within `limit` (a watchdog instead of a hang).
#[track_caller]
pub(crate) fn within<R: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(_) => panic!("did not finish within {limit:?}"),
    }
}
