//! The shell every blocking pattern shares: name, config, timer,
//! listeners, dispose flag, registry entry and counters, with one way to
//! count an outcome (a panic is a failure) and one `Debug`.

use core::any::{Any, TypeId};
use core::fmt;
use std::string::String;
use std::sync::{Arc, OnceLock};

use super::events::{Counter, Listeners, StripedCounter};
use super::hooks::ExecSpan;
use super::registry;
use super::wait::DisposeFlag;
use super::{Event, EventKind, ListenerId, Metrics, PatternKind, Timer};

/// The outcome counters of a pattern. `calls` is not stored: it is the sum
/// of the outcomes, so it counts calls that **finished** (the same in every
/// pattern).
#[derive(Default)]
pub(crate) struct Counters {
    /// Striped: the hot path's only write.
    pub(crate) successes: StripedCounter,
    pub(crate) failures: Counter,
    pub(crate) rejections: Counter,
    pub(crate) timeouts: Counter,
    /// Outcomes a breaker's classification ignored.
    pub(crate) ignored: Counter,
}

impl Counters {
    /// Calls that finished: successes, failures, rejections, timeouts and
    /// ignored outcomes.
    pub(crate) fn calls(&self) -> u64 {
        self.successes
            .get()
            .wrapping_add(self.failures.get())
            .wrapping_add(self.rejections.get())
            .wrapping_add(self.timeouts.get())
            .wrapping_add(self.ignored.get())
    }

    /// The counters as [`Metrics`] (the pattern adds what else it has).
    pub(crate) fn metrics(&self) -> Metrics {
        Metrics {
            calls: self.calls(),
            successes: self.successes.get(),
            failures: self.failures.get(),
            rejections: self.rejections.get(),
            timeouts: self.timeouts.get(),
            ..Metrics::default()
        }
    }
}

/// A call being run; see [`Shell::running`].
pub(crate) struct Running<'a> {
    counters: &'a Counters,
    finished: bool,
    span: ExecSpan,
}

impl Running<'_> {
    /// The call returned: counts `Ok` as a success and `Err` as a failure.
    #[inline]
    pub(crate) fn finish<R, E>(mut self, result: &Result<R, E>) {
        self.finished = true;
        if result.is_ok() {
            self.counters.successes.incr();
            self.span.outcome("success");
        } else {
            self.counters.failures.incr();
            self.span.outcome("failure");
        }
    }

    /// The call returned; the caller counts the outcome itself (and
    /// records it on the returned span, still entered until dropped).
    #[inline]
    pub(crate) fn disarm(mut self) -> ExecSpan {
        self.finished = true;
        let span = core::mem::replace(&mut self.span, ExecSpan::none());
        drop(self);
        span
    }
}

impl Drop for Running<'_> {
    /// A call that did not return panicked (a failure) or, in the async
    /// forms, was cancelled: its future dropped (not counted).
    #[inline]
    fn drop(&mut self) {
        if !self.finished && std::thread::panicking() {
            self.counters.failures.incr();
            self.span.outcome("failure");
        }
    }
}

/// A future's call being run; see [`Counters::running_async`].
#[cfg(feature = "async")]
pub(crate) struct AsyncRunning<'a> {
    counters: &'a Counters,
    finished: bool,
}

#[cfg(feature = "async")]
impl Counters {
    /// For the async forms: counts like [`Shell::running`], but without
    /// a `tracing` span (an entered span must not be held across an
    /// `.await`: it is `!Send` and would be entered on one thread and
    /// exited on another), so the future stays `Send`.
    #[inline]
    pub(crate) fn running_async(&self) -> AsyncRunning<'_> {
        AsyncRunning {
            counters: self,
            finished: false,
        }
    }
}

#[cfg(feature = "async")]
impl AsyncRunning<'_> {
    /// The call returned: counts `Ok` as a success and `Err` as a failure.
    #[inline]
    pub(crate) fn finish<R, E>(mut self, result: &Result<R, E>) {
        self.finished = true;
        if result.is_ok() {
            self.counters.successes.incr();
        } else {
            self.counters.failures.incr();
        }
    }

    /// The call returned; the caller counts the outcome itself.
    #[inline]
    pub(crate) fn disarm(mut self) {
        self.finished = true;
    }
}

#[cfg(feature = "async")]
impl Drop for AsyncRunning<'_> {
    /// A call that did not return panicked (a failure) or was cancelled:
    /// its future dropped (not counted).
    #[inline]
    fn drop(&mut self) {
        if !self.finished && std::thread::panicking() {
            self.counters.failures.incr();
        }
    }
}

/// Name, config, timer, listeners, dispose flag, registry entry and
/// counters: what every blocking pattern has.
pub(crate) struct Shell<C, T> {
    kind: PatternKind,
    name: Arc<str>,
    config: C,
    timer: T,
    pub(crate) listeners: Listeners,
    disposed: DisposeFlag,
    /// The registry this instance is registered in, once it is.
    registered: OnceLock<TypeId>,
    pub(crate) counters: Counters,
}

impl<C, T> Shell<C, T> {
    pub(crate) fn new(kind: PatternKind, name: Arc<str>, config: C, timer: T) -> Self {
        Shell {
            kind,
            name,
            config,
            timer,
            listeners: Listeners::default(),
            disposed: DisposeFlag::default(),
            registered: OnceLock::new(),
            counters: Counters::default(),
        }
    }

    #[inline]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    #[inline]
    pub(crate) fn kind(&self) -> PatternKind {
        self.kind
    }

    /// Counts a failure unless [`Running::finish`] is called first: a
    /// closure that panics (unwinds past the guard) is a failure. Enters
    /// the execution's `tracing` span (feature `tracing`).
    #[inline]
    pub(crate) fn running(&self) -> Running<'_> {
        Running {
            counters: &self.counters,
            finished: false,
            span: ExecSpan::enter(self.kind, &self.name),
        }
    }

    #[inline]
    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    #[inline]
    pub(crate) fn config(&self) -> &C {
        &self.config
    }

    #[inline]
    pub(crate) fn timer(&self) -> &T {
        &self.timer
    }

    #[inline]
    pub(crate) fn is_disposed(&self) -> bool {
        self.disposed.get()
    }

    /// Sets the dispose flag: `true` the first time.
    pub(crate) fn begin_dispose(&self) -> bool {
        !self.disposed.set()
    }

    /// Notes that the registry of `Registered` type `P` holds this instance.
    pub(crate) fn mark_registered<P: Any>(&self) {
        let _ = self.registered.set(TypeId::of::<P>());
    }

    /// Removes this instance from its registry, if it is registered.
    pub(crate) fn unregister(&self) {
        if let Some(type_id) = self.registered.get() {
            registry::forget(*type_id, &self.name, self.identity());
        }
    }

    /// Identifies this shell (its address) in the registry.
    pub(crate) fn identity(&self) -> usize {
        core::ptr::from_ref(self).cast::<u8>() as usize
    }

    pub(crate) fn subscribe(
        &self,
        listener: impl Fn(&Event) + Send + Sync + 'static,
    ) -> ListenerId {
        let id = self.listeners.add(Arc::new(listener));
        if self.is_disposed() {
            // `dispose` may have cleared the listeners before this one was
            // added: nobody will ever call it.
            self.listeners.clear();
        }
        id
    }

    pub(crate) fn unsubscribe(&self, id: ListenerId) -> bool {
        self.listeners.remove(id)
    }

    /// `Debug` of the pattern: its type, name, config, disposed flag, and
    /// what `more` adds.
    pub(crate) fn debug(
        &self,
        f: &mut fmt::Formatter<'_>,
        type_name: &str,
        more: impl FnOnce(&mut fmt::DebugStruct<'_, '_>),
    ) -> fmt::Result
    where
        C: fmt::Debug,
    {
        let mut s = f.debug_struct(type_name);
        s.field("name", &self.name).field("config", &self.config);
        more(&mut s);
        s.field("disposed", &self.is_disposed())
            .field("registered", &self.registered.get().is_some())
            .finish_non_exhaustive()
    }
}

impl<C, T: Timer> Shell<C, T> {
    pub(crate) fn event(&self, kind: EventKind) -> Event {
        Event {
            pattern: self.kind,
            name: Arc::clone(&self.name),
            at: self.timer.now(),
            kind,
        }
    }

    /// Emits an event to the listeners (built only if anyone listens).
    #[inline]
    pub(crate) fn emit(&self, kind: EventKind) {
        self.listeners.emit(|| self.event(kind));
    }

    /// The end of every `dispose`: the `Disposed` event, listeners
    /// removed, the registry entry forgotten.
    pub(crate) fn finish_dispose(&self) {
        self.emit(EventKind::Disposed);
        self.listeners.clear();
        self.unregister();
    }
}

/// The text of a panic payload (the `Err` of a [`DetachedCall`]'s outcome
/// or of [`std::panic::catch_unwind`]): the message of a `panic!` with a
/// string, else `"non-string panic payload"`. It is what
/// [`Error::Panicked`](super::Error::Panicked) carries.
///
/// [`DetachedCall`]: super::DetachedCall
///
/// # Examples
///
/// ```
/// use stockade::blocking::panic_message;
///
/// let payload = std::panic::catch_unwind(|| panic!("disk {} gone", 3)).unwrap_err();
/// assert_eq!(&*panic_message(payload.as_ref()), "disk 3 gone");
/// ```
pub fn panic_message(payload: &(dyn Any + Send)) -> Arc<str> {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        Arc::from(*s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        Arc::from(s.as_str())
    } else {
        Arc::from("non-string panic payload")
    }
}
