//! The blocking tier (hosted, feature `std`): heap handles over the core's
//! `blocking` layer, running C callbacks.
//!
//! Every pattern has the same shape: an opaque handle with `_new` (named:
//! registered; NULL name: anonymous), `_get(name)`, `_free`, `_dispose`,
//! `_metrics` (a plain [`stockade_metrics`] snapshot), `_subscribe` /
//! `_unsubscribe` (events as [`stockade_event`]) and, for the patterns a
//! pipeline can hold, `_as_policy` (a [`stockade_policy`] view). The shared
//! parts live here; one file per pattern holds its exported functions.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::fmt;
use std::boxed::Box;
use std::ffi::CString;
use std::sync::Arc;

use stockade_core::blocking::{
    Bulkhead, CircuitBreaker, DynPolicy, Error, Event, Fallback, Hedging, ListenerId, Metrics,
    PatternKind, RateLimiter, RequestResponsePattern, Retry, Timeout,
};

use crate::boundary::{Out, arg};
use crate::breaker::stockade_breaker_state;
use crate::status::stockade_status;

pub mod breaker;
pub mod bulkhead;
pub mod events;
pub mod fallback;
pub mod hedging;
pub mod limiter;
pub mod pipeline;
pub mod prometheus;
mod protection;
pub mod redis;
pub mod request_response;
pub mod retry;
pub mod shared;
#[cfg(feature = "shared-memory")]
mod shared_bulkhead;
pub mod timeout;

pub use events::{stockade_event, stockade_event_kind, stockade_pattern_kind};

/// The protected operation: returns 0 (`STOCKADE_OUTCOME_SUCCESS`) on
/// success, anything else (e.g. `STOCKADE_OUTCOME_FAILURE`, or an error
/// code of the caller's) on failure, counted as a failure by the pattern.
/// Called with the `user_data` given to the function that runs it; it must
/// not unwind (no C++ exception may escape it).
pub type stockade_callback = Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>;

/// A callback that is not NULL.
pub(crate) type CallbackFn = unsafe extern "C" fn(user_data: *mut c_void) -> c_int;

/// Called once when stockade no longer uses a `user_data` it was given
/// (after a detached callback finished, or when it will never run): the
/// place to free it.
pub type stockade_release_fn = Option<unsafe extern "C" fn(user_data: *mut c_void)>;

/// A per-thread "last error" message: what `stockade_shared_last_error`
/// and `stockade_redis_last_error` return. Each family keeps its own slot
/// (a `thread_local!` `RefCell<CString>`), so a Redis failure never
/// overwrites the message of a shared-memory one.
pub(crate) type LastErrorSlot = std::thread::LocalKey<core::cell::RefCell<CString>>;

/// Sets `slot` to `message` ("" for none). A message with a NUL byte is
/// cut at it (a name given with one cannot reach here: C strings end at
/// their NUL). Does nothing while the thread is being torn down.
pub(crate) fn set_last_error_in(slot: &'static LastErrorSlot, message: impl fmt::Display) {
    use std::string::ToString;
    let text = message.to_string();
    let text = match text.find('\0') {
        Some(at) => &text[..at],
        None => &text[..],
    };
    let c = CString::new(text).unwrap_or_default();
    let _ = slot.try_with(|e| *e.borrow_mut() = c);
}

/// The message in `slot`, NUL-terminated, valid until the calling thread
/// next sets it or exits; `""` while the thread is being torn down.
pub(crate) fn last_error_in(slot: &'static LastErrorSlot) -> *const c_char {
    crate::boundary::run_value(c"".as_ptr(), || {
        slot.try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr())
    })
}

/// The status of a blocking-layer error.
pub(crate) fn error_status<E>(e: &Error<E>) -> stockade_status {
    match e {
        Error::Inner(_) | Error::Panicked { .. } => stockade_status::CallbackFailed,
        Error::BreakerOpen { state, .. } => {
            if *state == stockade_core::breaker::BreakerState::HalfOpen {
                stockade_status::BreakerHalfOpenFull
            } else {
                stockade_status::BreakerOpen
            }
        }
        Error::BulkheadFull => stockade_status::BulkheadFull,
        Error::QueueTimeout { .. } => stockade_status::QueueTimeout,
        Error::RateLimited { retry_after } if *retry_after == core::time::Duration::MAX => {
            stockade_status::PermitsExceedBurst
        }
        Error::RateLimited { .. } => stockade_status::RateLimited,
        Error::TimedOut { .. } => stockade_status::TimedOut,
        Error::RetriesExhausted { .. } => stockade_status::RetriesExhausted,
        Error::Disposed => stockade_status::Disposed,
        Error::InvalidConfig(_) => stockade_status::InvalidConfig,
        Error::NameTaken { .. } => stockade_status::NameTaken,
        Error::PoolFull => stockade_status::QueueFull,
        #[cfg(feature = "shared-memory")]
        Error::Shared(e) => shared::status_of(e),
        #[cfg(feature = "redis")]
        Error::Redis(e) => redis::call_status(e),
        _ => stockade_status::InternalError,
    }
}

/// The status of a constructor's error, filling `*error` for an invalid
/// config.
///
/// # Safety
///
/// `error` valid for a write or NULL.
pub(crate) unsafe fn new_error_status(
    e: Error,
    error: *mut crate::config_error::stockade_config_error,
) -> stockade_status {
    match e {
        // SAFETY: forwarded contract.
        Error::InvalidConfig(c) => unsafe { crate::config_error::report(error, &c) },
        e => error_status(&e),
    }
}

/// A name argument: NULL for none, else NUL-terminated UTF-8.
///
/// # Safety
///
/// A non-NULL `name` must be a NUL-terminated string.
pub(crate) unsafe fn name_arg<'a>(name: *const c_char) -> Result<Option<&'a str>, stockade_status> {
    if name.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str()
        .map(Some)
        .map_err(|_| stockade_status::InvalidArgument)
}

/// A name that must be given (`_get`).
///
/// # Safety
///
/// As [`name_arg`].
pub(crate) unsafe fn required_name<'a>(name: *const c_char) -> Result<&'a str, stockade_status> {
    // SAFETY: forwarded contract.
    unsafe { name_arg(name) }?.ok_or(stockade_status::NullArgument)
}

/// A failed C callback: the code it returned. The error the patterns see
/// (and retry on, and count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CallbackFailed(pub(crate) c_int);

impl fmt::Display for CallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "callback failed with code {}", self.0)
    }
}

impl core::error::Error for CallbackFailed {}

/// Runs a C callback: `Ok(())` for 0, `Err(code)` otherwise.
///
/// # Safety
///
/// `callback` must be callable with `user_data`.
#[inline(always)]
pub(crate) unsafe fn call(
    callback: CallbackFn,
    user_data: *mut c_void,
) -> Result<(), CallbackFailed> {
    // SAFETY: caller's contract.
    match unsafe { callback(user_data) } {
        0 => Ok(()),
        code => Err(CallbackFailed(code)),
    }
}

/// A `user_data` and its optional `release`: `release(user_data)` is called
/// exactly once, when this is dropped. Every exported function that takes a
/// `release` makes one **before checking any argument**, so that every path
/// out of it (a NULL argument, an invalid config, a refusal, a panic, or
/// success followed by the last use) releases the data once.
pub(crate) struct Release {
    user_data: *mut c_void,
    release: stockade_release_fn,
}

// SAFETY: the C caller promises (documented on every function taking a
// `release`) that `release` may be called from any thread with its data,
// and that the callbacks given with it may run on other threads with it.
unsafe impl Send for Release {}
// SAFETY: as above; the pointer is only passed to C, never dereferenced.
unsafe impl Sync for Release {}

impl Release {
    pub(crate) fn new(user_data: *mut c_void, release: stockade_release_fn) -> Release {
        Release { user_data, release }
    }

    pub(crate) fn user_data(&self) -> *mut c_void {
        self.user_data
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            // SAFETY: called once (this is dropped once), after the last use
            // of `user_data` by stockade; the caller's contract.
            unsafe { release(self.user_data) }
        }
    }
}

/// A C callback and its data, moved to another thread (a timeout's worker,
/// a pipeline's detached stage) and released once when dropped: after it
/// ran, or when it will never run.
pub(crate) struct Detached {
    callback: CallbackFn,
    data: Release,
}

impl Detached {
    pub(crate) fn new(callback: CallbackFn, data: Release) -> Detached {
        Detached { callback, data }
    }

    pub(crate) fn run(&self) -> Result<(), CallbackFailed> {
        // SAFETY: the caller of the exported function promised the callback
        // may be called with its user data, from any thread, until
        // `release` (which runs when `data` is dropped, after this).
        unsafe { call(self.callback, self.data.user_data()) }
    }
}

/// A counters snapshot of any blocking pattern (the core's `Metrics`);
/// fields a pattern does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct stockade_metrics {
    /// Calls that finished: the sum of `successes`, `failures`,
    /// `rejections` and `timeouts` (and a breaker's ignored outcomes).
    /// **Refusals count**: a call refused without running is a finished
    /// call, counted in `calls` and `rejections`. Calls still queued or
    /// running are not counted yet. A call refused because the pattern was
    /// disposed (`DISPOSED`) is not counted, except by a request-response
    /// pattern, which answers it with a 503 counted in `rejections`.
    pub calls: u64,
    /// Calls that succeeded.
    pub successes: u64,
    /// Calls that failed (the callback returned non-zero).
    pub failures: u64,
    /// Calls refused without running.
    pub rejections: u64,
    /// Calls that timed out (in a queue or running).
    pub timeouts: u64,
    /// Retries performed.
    pub retries: u64,
    /// Callers waiting in the queue now.
    pub queue_depth: u64,
    /// Calls running now.
    pub in_flight: u64,
    /// A circuit breaker's state (a `stockade_breaker_state` number); 255
    /// for the other patterns.
    pub state: u8,
    /// Decisions a Redis-backed handle (`_new_redis`) took under its
    /// fallback because Redis did not answer; 0 for other handles.
    pub fallback_decisions: u64,
    /// A fallback's calls whose outcome the fallback callback replaced; 0
    /// for other handles.
    pub fallbacks: u64,
    /// Extra attempts a hedging launched; 0 for other handles.
    pub hedges: u64,
    /// A hedging's calls whose result came from an extra attempt; 0 for
    /// other handles.
    pub hedges_won: u64,
}

impl From<Metrics> for stockade_metrics {
    fn from(m: Metrics) -> Self {
        stockade_metrics {
            calls: m.calls,
            successes: m.successes,
            failures: m.failures,
            rejections: m.rejections,
            timeouts: m.timeouts,
            retries: m.retries,
            queue_depth: m.queue_depth,
            in_flight: m.in_flight,
            state: m
                .state
                .map_or(u8::MAX, |s| stockade_breaker_state::from(s) as u8),
            fallback_decisions: m.fallback_decisions,
            fallbacks: m.fallbacks,
            hedges: m.hedges,
            hedges_won: m.hedges_won,
        }
    }
}

/// What every blocking pattern offers the shared functions.
pub(crate) trait Pattern: Send + Sync + 'static {
    fn metrics(&self) -> Metrics;
    fn subscribe(&self, listener: Box<dyn Fn(&Event) + Send + Sync>) -> ListenerId;
    fn unsubscribe(&self, id: ListenerId) -> bool;
    fn dispose(&self);
}

macro_rules! impl_pattern {
    ($($ty:ty),*) => {$(
        impl Pattern for $ty {
            fn metrics(&self) -> Metrics { <$ty>::metrics(self) }
            fn subscribe(&self, listener: Box<dyn Fn(&Event) + Send + Sync>) -> ListenerId {
                <$ty>::subscribe(self, listener)
            }
            fn unsubscribe(&self, id: ListenerId) -> bool { <$ty>::unsubscribe(self, id) }
            fn dispose(&self) { <$ty>::dispose(self) }
        }
    )*};
}

/// The request-response pattern of the C ABI: byte payloads, protected by
/// the `stockade_policy` of its config (or by none).
pub(crate) type Rr = RequestResponsePattern<Vec<u8>, Vec<u8>, protection::CProtection>;

impl_pattern!(
    CircuitBreaker,
    RateLimiter,
    Bulkhead,
    Retry,
    Timeout,
    Rr,
    Fallback,
    Hedging
);
#[cfg(feature = "shared-memory")]
impl_pattern!(
    CircuitBreaker<stockade_core::shared::HostClock>,
    RateLimiter<stockade_core::shared::HostClock>
);

/// A C handle type: a box around a pattern. `P` is the pattern of a
/// local handle (what `_new` makes and the registry holds).
pub(crate) trait Handle: Sized + 'static {
    type P: Pattern;
    /// A handle to a local pattern.
    fn wrap(inner: Arc<Self::P>) -> Self;
    /// The pattern behind the handle (local or shared), for the functions
    /// every handle has (metrics, listeners, dispose).
    fn dyn_pattern(&self) -> &dyn Pattern;
}

/// A handle type that only ever holds its local pattern (no shared
/// variant): its functions reach the pattern's own type directly.
pub(crate) trait Single: Handle {
    fn inner(&self) -> &Arc<Self::P>;
}

/// A handle that can be a pipeline stage (`_as_policy`).
pub(crate) trait PolicyHandle {
    fn policy(&self) -> Arc<dyn DynPolicy>;
}

macro_rules! handle_type {
    ($handle:ident, $p:ty) => {
        impl $crate::blocking::Handle for $handle {
            type P = $p;
            fn wrap(inner: ::std::sync::Arc<$p>) -> Self {
                $handle { inner }
            }
            fn dyn_pattern(&self) -> &dyn $crate::blocking::Pattern {
                &*self.inner
            }
        }
        impl $crate::blocking::Single for $handle {
            fn inner(&self) -> &::std::sync::Arc<$p> {
                &self.inner
            }
        }
    };
    ($handle:ident, $p:ty, policy) => {
        $crate::blocking::handle_type!($handle, $p);
        impl $crate::blocking::PolicyHandle for $handle {
            fn policy(&self) -> ::std::sync::Arc<dyn ::stockade_core::blocking::DynPolicy> {
                self.inner.clone()
            }
        }
    };
}
pub(crate) use handle_type;

/// The pattern behind a handle argument.
///
/// # Safety
///
/// A non-NULL `h` must be a live handle.
#[inline(always)]
pub(crate) unsafe fn pattern<'a, H: Single>(h: *const H) -> Result<&'a H::P, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(h) }.map(|h| &**h.inner())
}

/// `*out` = a new handle to `inner`.
///
/// # Safety
///
/// `out` checked, valid for writes.
pub(crate) unsafe fn give<H: Handle>(out: Out<*mut H>, inner: Arc<H::P>) {
    // SAFETY: valid for writes (caller's contract).
    unsafe { out.write(Box::into_raw(Box::new(H::wrap(inner)))) }
}

/// `_get(name, out)` through the pattern's registry lookup.
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
pub(crate) unsafe fn get<H: Handle>(
    name: *const c_char,
    out: *mut *mut H,
    lookup: fn(&str) -> Option<Arc<H::P>>,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let name = unsafe { required_name(name) }?;
        let out = Out::new(out)?;
        let inner = lookup(name).ok_or(stockade_status::NotFound)?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// `_free(h)`.
///
/// # Safety
///
/// `h` from `Box::into_raw` of an `H` and not freed, or NULL.
pub(crate) unsafe fn free<H>(h: *mut H) {
    crate::boundary::run_value((), || {
        if !h.is_null() {
            // SAFETY: made by `Box::into_raw` and not freed (contract).
            drop(unsafe { Box::from_raw(h) });
        }
    });
}

/// `_dispose(h)`.
///
/// # Safety
///
/// `h` live or NULL.
pub(crate) unsafe fn dispose<H: Handle>(h: *const H) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        unsafe { arg(h) }?.dyn_pattern().dispose();
        Ok(())
    })
}

/// `_metrics(h, out)`.
///
/// # Safety
///
/// `h` live or NULL; `out` valid or NULL.
pub(crate) unsafe fn metrics<H: Handle>(
    h: *const H,
    out: *mut stockade_metrics,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let p = unsafe { arg(h) }?.dyn_pattern();
        let out = Out::new(out)?;
        // SAFETY: checked out-pointer.
        unsafe { out.write(p.metrics().into()) };
        Ok(())
    })
}

/// A shared, `'static` view of a pattern as a pipeline stage: made by a
/// handle's `_as_policy`, given (in an array) to `stockade_pipeline_new`,
/// freed with `stockade_policy_free`. The pattern lives while any handle,
/// policy or pipeline holds it.
pub struct stockade_policy {
    pub(crate) inner: Arc<dyn DynPolicy>,
}

/// `_as_policy(h, out)`.
///
/// # Safety
///
/// `h` live or NULL; `out` valid or NULL.
pub(crate) unsafe fn as_policy<H: PolicyHandle>(
    h: *const H,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(h) }?;
        let out = Out::new(out)?;
        let inner = h.policy();
        // SAFETY: checked out-pointer.
        unsafe { out.write(Box::into_raw(Box::new(stockade_policy { inner }))) };
        Ok(())
    })
}

/// Frees a policy view (the pattern lives on while other handles,
/// policies or pipelines hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per policy. Blocks: no.
///
/// # Safety
///
/// `policy` from an `_as_policy` function, not freed before, or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_policy_free(policy: *mut stockade_policy) {
    // SAFETY: function contract.
    unsafe { free(policy) }
}

// ---------------------------------------------------------------------------
// Listeners: C ids are the core's `ListenerId::as_u64()` (process-unique,
// so an id of another pattern is unknown to `_unsubscribe`).

/// Called for every event of the pattern it is subscribed to, on the
/// thread where the event happened; `event` (and its `name`) is valid only
/// during the call. Must not unwind, should return quickly.
pub type stockade_listener_fn =
    Option<unsafe extern "C" fn(event: *const stockade_event, user_data: *mut c_void)>;

struct CListener {
    listener: unsafe extern "C" fn(event: *const stockade_event, user_data: *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the C caller promises (documented on `_subscribe`) that the
// listener may be called from any thread with its user data.
unsafe impl Send for CListener {}
// SAFETY: as above.
unsafe impl Sync for CListener {}

/// `_subscribe(h, listener, user_data, out_id)`.
///
/// # Safety
///
/// `h` live or NULL; `out_id` valid or NULL; `listener` callable with
/// `user_data` from any thread until unsubscribed.
pub(crate) unsafe fn subscribe<H: Handle>(
    h: *const H,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(h) }?;
        let listener = listener.ok_or(stockade_status::NullArgument)?;
        let out = Out::new(out_id)?;
        let c = CListener {
            listener,
            user_data,
        };
        let id = h.dyn_pattern().subscribe(Box::new(move |event: &Event| {
            let c = &c;
            crate::boundary::run_value((), || {
                let name = CString::new(event.name.as_bytes()).unwrap_or_default();
                let event = stockade_event::from_core(event, &name);
                // SAFETY: the subscriber's contract; `event` lives for the call.
                unsafe { (c.listener)(&event, c.user_data) };
            });
        }));
        // SAFETY: checked out-pointer.
        unsafe { out.write(id.as_u64()) };
        Ok(())
    })
}

/// `_unsubscribe(h, id)`.
///
/// # Safety
///
/// `h` live or NULL.
pub(crate) unsafe fn unsubscribe<H: Handle>(h: *const H, id: u64) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(h) }?;
        if h.dyn_pattern().unsubscribe(ListenerId::from_u64(id)) {
            Ok(())
        } else {
            Err(stockade_status::NotFound)
        }
    })
}

/// Which pattern an event came from.
pub(crate) fn pattern_kind(p: PatternKind) -> stockade_pattern_kind {
    match p {
        PatternKind::CircuitBreaker => stockade_pattern_kind::CircuitBreaker,
        PatternKind::Bulkhead => stockade_pattern_kind::Bulkhead,
        PatternKind::RateLimiter => stockade_pattern_kind::RateLimiter,
        PatternKind::Retry => stockade_pattern_kind::Retry,
        PatternKind::Timeout => stockade_pattern_kind::Timeout,
        PatternKind::RequestResponse => stockade_pattern_kind::RequestResponse,
        PatternKind::Fallback => stockade_pattern_kind::Fallback,
        PatternKind::Hedging => stockade_pattern_kind::Hedging,
    }
}
