//! Timeout of the blocking tier: `stockade_timeout` (returns on time; the
//! callback runs on the timeout's worker pool).

use core::ffi::{c_char, c_void};
use std::sync::Arc;

use super::{
    give, name_arg, new_error_status, pattern, stockade_callback, stockade_listener_fn,
    stockade_metrics, stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::config_error::{self, stockade_config_error};
use crate::deadline::stockade_timeout_config;
use crate::status::stockade_status;
use stockade_core::blocking::Timeout;
use stockade_core::deadline::TimeoutConfig;

/// A timeout of the blocking tier (the core's `blocking::Timeout`): runs a
/// callback on its bounded worker pool and returns when it finished or the
/// time is up, whichever comes first. Heap-allocated, safe to share
/// between threads; free with `stockade_timeout_free`.
pub struct stockade_timeout {
    inner: Arc<Timeout>,
}

super::handle_type!(stockade_timeout, Timeout, policy);

const GET: fn(&str) -> Option<Arc<Timeout>> = Timeout::get;

fn to_core(c: stockade_timeout_config) -> Result<TimeoutConfig, stockade_core::ConfigError> {
    c.to_core()
}

/// Makes a timeout handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_timeout_get(name)` finds it, and a second live timeout of that
/// name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`*error` names the option if not NULL); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with `stockade_timeout_free` (the
///   registry keeps its own reference until `stockade_timeout_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_new(
    name: *const c_char,
    config: *const stockade_timeout_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_timeout,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        // SAFETY: function contract.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(to_core(config), error) }?;
        let made = match name {
            Some(name) => Timeout::new(name, config),
            None => Timeout::unregistered("", config).map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Runs `callback(user_data)` on a worker of the timeout's pool and waits
/// for it until `timeout_ms` (or the calling thread's deadline, if
/// earlier): **returns on time, while a late callback keeps running on
/// its worker** (its result is then dropped).
///
/// `user_data` must therefore stay valid until the callback has returned,
/// which may be after this function returned `TIMED_OUT`. Pass a
/// `release` (optional): it is called exactly once, with `user_data`, on
/// every path, when stockade no longer uses it — after the callback
/// returned (on the worker thread), or when it will never run (pool full,
/// disposed, a NULL argument; on this thread before returning) — so C can
/// free `user_data` there.
///
/// - Statuses: `OK` (returned 0 in time); `CALLBACK_FAILED` (returned
///   non-zero in time); `TIMED_OUT`; `QUEUE_FULL` (every worker busy: not
///   run); `DISPOSED`; `NULL_ARGUMENT` (`timeout`, `callback`; `release`
///   is called before returning).
/// - Blocks: up to the timeout. Thread safety: any number of threads at
///   once; the callback runs on another thread and must not unwind;
///   `release` may run on any thread.
///
/// # Safety
///
/// `timeout` live; `callback` and `release` callable with `user_data` from
/// another thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_execute(
    timeout: *const stockade_timeout,
    callback: stockade_callback,
    user_data: *mut c_void,
    release: super::stockade_release_fn,
) -> stockade_status {
    ffi_boundary!({
        // First: every path below releases `user_data` once.
        let data = super::Release::new(user_data, release);
        // SAFETY: function contract.
        let t = unsafe { pattern(timeout) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        let job = super::Detached::new(callback, data);
        t.execute(move || job.run())
            .map_err(|e| super::error_status(&e))
    })
}

/// `*out` = a new handle to the registered timeout called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_timeout_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_get(
    name: *const c_char,
    out: *mut *mut stockade_timeout,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the timeout lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_timeout_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_free(handle: *mut stockade_timeout) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the timeout: it refuses every call from now on (`DISPOSED`)
/// and its name is free again. Handles stay valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_dispose(
    handle: *const stockade_timeout,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the timeout's counters now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_metrics(
    handle: *const stockade_timeout,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the timeout:
/// `TIMED_OUT` (duration_ms = the limit), `REJECTED` (pool full), `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until `stockade_timeout_unsubscribe`
///   returned (or the timeout is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_subscribe(
    handle: *const stockade_timeout,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_timeout_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_unsubscribe(
    handle: *const stockade_timeout,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the timeout as a pipeline stage (free with
/// `stockade_policy_free`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_timeout_as_policy(
    handle: *const stockade_timeout,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}
