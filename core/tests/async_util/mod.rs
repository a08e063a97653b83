//! Helpers shared by the async integration tests (tokio, paused time).
#![allow(dead_code)]

use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::sync::Arc;
use std::time::Instant;

/// How long (in real time) a helper waits for another thread or task.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `future` once with a waker that does nothing: puts a waiter in
/// place (queued, reserved) without running it further.
pub(crate) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Yields to the runtime until `cond` holds; fails after [`PATIENCE`] of
/// real time (a watchdog, not a sleep used as synchronisation).
pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting until {what}");
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

/// Sets its flag when dropped: shows a future was dropped (cancelled).
pub(crate) struct DropFlag(pub(crate) Arc<AtomicBool>);

impl DropFlag {
    /// A guard and the flag it sets.
    pub(crate) fn new() -> (DropFlag, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (DropFlag(Arc::clone(&flag)), flag)
    }
}

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Fails to compile unless `T` is `Send`.
pub(crate) fn assert_send<T: Send>(value: T) -> T {
    value
}
