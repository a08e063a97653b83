//! What the blocking patterns share for `dispose`: the flag every call
//! checks, and the list of threads a `dispose` must wake.

use std::vec::Vec;

use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicU32, Mutex, Ordering};

/// Threads blocked in a pattern that `dispose` must wake.
#[derive(Debug, Default)]
pub(super) struct WaitList {
    threads: Mutex<Vec<Thread>>,
}

/// A thread's place in a [`WaitList`]; leaves it on drop.
pub(super) struct Waiting<'a> {
    list: &'a WaitList,
}

impl WaitList {
    /// Registers the calling thread.
    pub(super) fn register(&self) -> Waiting<'_> {
        self.threads.lock().push(thread::current());
        Waiting { list: self }
    }

    /// Unparks every registered thread.
    pub(super) fn wake_all(&self) {
        for t in self.threads.lock().iter() {
            t.unpark();
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let me = thread::current().id();
        let mut threads = self.list.threads.lock();
        if let Some(i) = threads.iter().position(|t| t.id() == me) {
            threads.swap_remove(i);
        }
    }
}

/// A pattern's `disposed` flag: set once by `dispose`, read on every call.
#[derive(Debug, Default)]
pub(super) struct DisposeFlag(AtomicU32);

impl DisposeFlag {
    /// Sets it; `true` if it was already set.
    pub(super) fn set(&self) -> bool {
        self.0.swap(1, Ordering::AcqRel) == 1
    }
    #[inline]
    pub(super) fn get(&self) -> bool {
        self.0.load(Ordering::Acquire) == 1
    }
}
