//! What the blocking patterns share for `dispose`: the flag every call
//! checks, and the list of threads a `dispose` must wake.

use std::vec::Vec;

use crate::sync::thread::{self, Thread};
use crate::sync::{AtomicU32, Mutex, Ordering};

/// Threads blocked in a pattern that `dispose` must wake.
#[derive(Debug, Default)]
pub(super) struct WaitList {
    threads: Mutex<Vec<Thread>>,
    /// Tasks waiting (feature `async`), by the id of their registration.
    #[cfg(feature = "async")]
    tasks: Mutex<Vec<(u64, core::task::Waker)>>,
}

/// A task's place in a [`WaitList`] (feature `async`): its waker is
/// (re)set at each poll; leaves the list on drop.
#[cfg(feature = "async")]
pub(super) struct TaskWaiting<'a> {
    list: &'a WaitList,
    /// Given at the first [`set_waker`](Self::set_waker): a call that
    /// never waits touches nothing shared.
    id: Option<u64>,
}

#[cfg(feature = "async")]
impl TaskWaiting<'_> {
    /// Records `waker` as the one `wake_all` wakes for this task.
    pub(super) fn set_waker(&mut self, waker: &core::task::Waker) {
        static NEXT: crate::sync::unmodelled::AtomicU64 =
            crate::sync::unmodelled::AtomicU64::new(0);
        let mut tasks = self.list.tasks.lock();
        if let Some(me) = self.id {
            if let Some((_, known)) = tasks.iter_mut().find(|(id, _)| *id == me) {
                known.clone_from(waker);
                return;
            }
        }
        let me = *self
            .id
            .get_or_insert_with(|| NEXT.fetch_add(1, Ordering::Relaxed));
        tasks.push((me, waker.clone()));
    }
}

#[cfg(feature = "async")]
impl Drop for TaskWaiting<'_> {
    fn drop(&mut self) {
        let Some(me) = self.id else {
            return;
        };
        let mut tasks = self.list.tasks.lock();
        if let Some(i) = tasks.iter().position(|(id, _)| *id == me) {
            tasks.swap_remove(i);
        }
    }
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

    /// A task's registration (feature `async`); its waker is set by
    /// [`TaskWaiting::set_waker`].
    #[cfg(feature = "async")]
    pub(super) fn register_task(&self) -> TaskWaiting<'_> {
        TaskWaiting {
            list: self,
            id: None,
        }
    }

    /// Unparks every registered thread and wakes every registered task.
    pub(super) fn wake_all(&self) {
        for t in self.threads.lock().iter() {
            t.unpark();
        }
        #[cfg(feature = "async")]
        for (_, waker) in self.tasks.lock().iter() {
            waker.wake_by_ref();
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
