//! Fallback of the blocking tier: `stockade_fallback`.

use core::ffi::{c_char, c_int, c_void};
use std::boxed::Box;
use std::sync::Arc;

use super::{
    CallbackFailed, Release, error_status, give, name_arg, new_error_status, pattern,
    stockade_callback, stockade_listener_fn, stockade_metrics, stockade_policy,
    stockade_release_fn,
};
use crate::boundary::{Out, arg};
use crate::status::stockade_status;
use stockade_core::blocking::{BoxError, DynPolicy, DynValue, Error, Fallback, FallbackConfig};

/// A fallback of the blocking tier (the core's `blocking::Fallback`): when
/// a callback fails, or a pattern refuses it, a fallback callback gives
/// the outcome instead. Heap-allocated, safe to share between threads;
/// free with `stockade_fallback_free`.
pub struct stockade_fallback {
    inner: Arc<Fallback>,
}

super::handle_type!(stockade_fallback, Fallback);

const GET: fn(&str) -> Option<Arc<Fallback>> = Fallback::get;

/// Chooses the failures a fallback handles: `status` says what failed
/// (`CALLBACK_FAILED` with the callback's non-zero `code`, or a pattern's
/// refusal such as `BREAKER_OPEN`, `RATE_LIMITED`, `BULKHEAD_FULL`,
/// `TIMED_OUT`, `RETRIES_EXHAUSTED` with `code` 0, or the code of the
/// last failed attempt inside `RETRIES_EXHAUSTED`); true = handled.
pub type stockade_fallback_classifier_fn = Option<
    unsafe extern "C" fn(status: stockade_status, code: c_int, user_data: *mut c_void) -> bool,
>;

/// The fallback: called with what failed (as for the classifier), returns
/// 0 (the call succeeds; leave the fallback value in `user_data`) or
/// non-zero (the call fails with `CALLBACK_FAILED`).
pub type stockade_fallback_fn = Option<
    unsafe extern "C" fn(status: stockade_status, code: c_int, user_data: *mut c_void) -> c_int,
>;

/// The status and callback code of an error, as the classifier and the
/// fallback see them.
pub(super) fn what_failed<E: AsCode>(e: &Error<E>) -> (stockade_status, c_int) {
    (error_status(e), e.inner().map_or(0, AsCode::code))
}

/// The code of a failed C callback behind an error.
pub(super) trait AsCode {
    fn code(&self) -> c_int;
}

impl AsCode for CallbackFailed {
    fn code(&self) -> c_int {
        self.0
    }
}

impl AsCode for BoxError {
    fn code(&self) -> c_int {
        self.downcast_ref::<CallbackFailed>().map_or(0, |c| c.0)
    }
}

/// Makes a fallback handle. It handles the failures its classifier
/// chooses (given to `_execute` or `_as_policy`). With a `name`
/// (NUL-terminated UTF-8) it is registered: `stockade_fallback_get(name)`
/// finds it, and a second live fallback of that name is refused; with
/// NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`out`); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_fallback_free` (the registry keeps its own reference until
///   `stockade_fallback_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_new(
    name: *const c_char,
    out: *mut *mut stockade_fallback,
) -> stockade_status {
    ffi_boundary!({
        let out = Out::new(out)?;
        // SAFETY: function contract.
        let name = unsafe { name_arg(name) }?;
        let made = match name {
            Some(name) => Fallback::new(name, FallbackConfig::DEFAULT),
            None => Fallback::unregistered("", FallbackConfig::DEFAULT).map(Arc::new),
        };
        // SAFETY: NULL error: a fallback config cannot be invalid.
        let inner = made.map_err(|e| unsafe { new_error_status(e, core::ptr::null_mut()) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Runs `callback(user_data)` on this thread. If it fails (non-zero) and
/// `classifier(CALLBACK_FAILED, code, user_data)` returns true (NULL
/// classifier: every failure is handled), returns what
/// `fallback(CALLBACK_FAILED, code, user_data)` returns instead.
///
/// - Statuses: `OK` (the callback, or the fallback, returned 0);
///   `CALLBACK_FAILED` (a failure not handled, or the fallback returned
///   non-zero); `DISPOSED` (nothing runs); `NULL_ARGUMENT` (`handle`,
///   `callback`, `fallback`).
/// - Blocks: while the callbacks run. Thread safety: any number of
///   threads at once. Callbacks must not unwind.
///
/// # Safety
///
/// `handle` live; the callbacks callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_execute(
    handle: *const stockade_fallback,
    callback: stockade_callback,
    classifier: stockade_fallback_classifier_fn,
    fallback: stockade_fallback_fn,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let f = unsafe { pattern(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        let fallback = fallback.ok_or(stockade_status::NullArgument)?;
        let result = f.execute_if(
            |e: &Error<CallbackFailed>| match classifier {
                Some(classify) => {
                    let (status, code) = what_failed(e);
                    // SAFETY: function contract.
                    unsafe { classify(status, code, user_data) }
                }
                None => true,
            },
            |e| {
                let (status, code) = what_failed(&e);
                // SAFETY: function contract.
                match unsafe { fallback(status, code, user_data) } {
                    0 => Ok(()),
                    code => Err(Error::Inner(CallbackFailed(code))),
                }
            },
            // SAFETY: function contract.
            || unsafe { super::call(callback, user_data) },
        );
        result.map_err(|e| error_status(&e))
    })
}

/// A fallback's callbacks as a pipeline stage: classifier, fallback and
/// their data, released when the stage is gone.
struct Callbacks {
    classifier: stockade_fallback_classifier_fn,
    fallback: unsafe extern "C" fn(stockade_status, c_int, *mut c_void) -> c_int,
    data: Release,
}

/// `*out` = the fallback as a pipeline stage (free with
/// `stockade_policy_free`) that handles what `classifier` chooses (NULL:
/// every failure) of the stages inside it and the pipeline's callback,
/// with `fallback`. Put it first (outermost) to see every stage's
/// refusal: the classifier and the fallback get the refusal's status
/// (`BREAKER_OPEN`, `RATE_LIMITED`, `BULKHEAD_FULL`, `TIMED_OUT`, ...)
/// with code 0, or `CALLBACK_FAILED` with the pipeline callback's code.
/// `release(user_data)` (optional) is called exactly once, when the stage
/// is gone (its policy and every pipeline holding it freed), or before
/// returning on a NULL argument.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `fallback`, `out`).
/// - Thread safety: any thread; the classifier and the fallback run on
///   the thread that runs the stage, possibly several at once.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL; the callbacks and
/// `release` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_as_policy(
    handle: *const stockade_fallback,
    classifier: stockade_fallback_classifier_fn,
    fallback: stockade_fallback_fn,
    user_data: *mut c_void,
    release: stockade_release_fn,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    ffi_boundary!({
        // First: every path below releases `user_data` once.
        let data = Release::new(user_data, release);
        // SAFETY: function contract.
        let h = unsafe { arg(handle) }?;
        let fallback = fallback.ok_or(stockade_status::NullArgument)?;
        let out = Out::new(out)?;
        let callbacks = Arc::new(Callbacks {
            classifier,
            fallback,
            data,
        });
        let chooser = Arc::clone(&callbacks);
        let stage = h.inner.stage_if(
            move |e: &Error<BoxError>| match chooser.classifier {
                Some(classify) => {
                    let (status, code) = what_failed(e);
                    // SAFETY: the caller promised the classifier may be
                    // called with its data from any thread until `release`,
                    // which runs when `chooser` (this closure) is gone.
                    unsafe { classify(status, code, chooser.data.user_data()) }
                }
                None => true,
            },
            move |e| {
                let (status, code) = what_failed(&e);
                // SAFETY: as above.
                match unsafe { (callbacks.fallback)(status, code, callbacks.data.user_data()) } {
                    0 => Ok(Box::new(()) as DynValue),
                    code => Err(Error::Inner(Box::new(CallbackFailed(code)) as BoxError)),
                }
            },
        );
        let inner: Arc<dyn DynPolicy> = Arc::new(stage);
        // SAFETY: checked out-pointer.
        unsafe { out.write(Box::into_raw(Box::new(stockade_policy { inner }))) };
        Ok(())
    })
}

/// `*out` = a new handle to the registered fallback called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_fallback_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_get(
    name: *const c_char,
    out: *mut *mut stockade_fallback,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the fallback lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_fallback_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_free(handle: *mut stockade_fallback) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the fallback: it refuses every call from now on
/// (`DISPOSED`, nothing runs) and its name is free again. Handles stay
/// valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_dispose(
    handle: *const stockade_fallback,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the fallback's counters now: `calls` = `successes` +
/// `failures` + `fallbacks` (calls whose failure the fallback handled).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_metrics(
    handle: *const stockade_fallback,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the fallback:
/// `FALLBACK_USED` (before the fallback runs), `DISPOSED`. `*out_id` = the
/// subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until
///   `stockade_fallback_unsubscribe` returned (or the fallback is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_subscribe(
    handle: *const stockade_fallback,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_fallback_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_fallback_unsubscribe(
    handle: *const stockade_fallback,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}
