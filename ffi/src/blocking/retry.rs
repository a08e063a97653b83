//! Retry of the blocking tier: `stockade_retry`.

use core::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use super::{
    give, name_arg, new_error_status, pattern, stockade_callback, stockade_listener_fn,
    stockade_metrics, stockade_policy,
};
use crate::backoff::stockade_backoff_config;
use crate::boundary::{Out, arg};
use crate::budget::stockade_retry_budget_config;
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use stockade_core::backoff::{BackoffConfig, RawBackoffConfig};
use stockade_core::blocking::{Retry, RetryConfig};
use stockade_core::budget::RetryBudget;

/// Retry options (the core's `RetryConfig`): start from
/// `stockade_retry_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct stockade_retry_config {
    /// Attempts, delays, jitter, total time budget.
    pub backoff: stockade_backoff_config,
    /// The retry budget's options, used when `has_budget` is true: the
    /// retry gets its own budget (each call deposits, each retry
    /// withdraws; a refused retry ends the call with `RETRIES_EXHAUSTED`).
    pub budget: stockade_retry_budget_config,
    /// The jitter seed, used when `has_seed` is true (default: derived from
    /// the name).
    pub seed: u64,
    /// Whether `seed` is set (default false).
    pub has_seed: bool,
    /// Whether the retry has a budget (default false).
    pub has_budget: bool,
}

/// The spec's defaults: 3 attempts, 1 s initial delay doubling up to 30 s,
/// no jitter, no budget, seed from the name.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_retry_config_default() -> stockade_retry_config {
    stockade_retry_config {
        backoff: crate::backoff::stockade_backoff_config_default(),
        budget: crate::budget::stockade_retry_budget_config_default(),
        seed: 0,
        has_seed: false,
        has_budget: false,
    }
}

fn to_core(c: stockade_retry_config) -> Result<RetryConfig, stockade_core::ConfigError> {
    let backoff = BackoffConfig::try_from(RawBackoffConfig::from(c.backoff))?;
    let mut config = RetryConfig::DEFAULT.with_backoff(backoff);
    if c.has_seed {
        config = config.with_seed(c.seed);
    }
    if c.has_budget {
        config = config.with_budget(Arc::new(RetryBudget::new(c.budget.into())?));
    }
    config.validate()?;
    Ok(config)
}

/// A retry of the blocking tier (the core's `blocking::Retry`): runs a
/// callback again after a back-off while it fails. Heap-allocated, safe to
/// share between threads; free with `stockade_retry_free`.
pub struct stockade_retry {
    inner: Arc<Retry>,
}

super::handle_type!(stockade_retry, Retry, policy);

const GET: fn(&str) -> Option<Arc<Retry>> = Retry::get;

/// Makes a retry handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_retry_get(name)` finds it, and a second live retry of that
/// name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`*error` names the option if not NULL); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with `stockade_retry_free` (the
///   registry keeps its own reference until `stockade_retry_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_new(
    name: *const c_char,
    config: *const stockade_retry_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_retry,
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
            Some(name) => Retry::new(name, config),
            None => Retry::unregistered("", config).map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Decides whether a failure is retried: `code` is what the callback
/// returned (non-zero); true = retry.
pub type stockade_retry_classifier_fn =
    Option<unsafe extern "C" fn(code: c_int, user_data: *mut c_void) -> bool>;

/// Runs `callback(user_data)` on this thread; while it returns non-zero
/// (a failure) it is run again after the back-off delay, up to
/// `max_attempts` in all (and within `max_elapsed_ms`, the thread's
/// deadline and the budget). With a `classifier` (optional, NULL = every
/// failure is retried), `classifier(code, user_data)` returning false ends
/// the call at once.
///
/// - Statuses: `OK` (an attempt returned 0); `RETRIES_EXHAUSTED` (every
///   allowed attempt failed); `CALLBACK_FAILED` (a failure the classifier
///   did not retry); `DISPOSED`; `NULL_ARGUMENT` (`retry`, `callback`).
/// - Blocks: while attempts run and during the delays (sleeps). Thread
///   safety: any number of threads at once. Callbacks must not unwind.
///
/// # Safety
///
/// `retry` live; `callback` (and `classifier`) callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_execute(
    retry: *const stockade_retry,
    callback: stockade_callback,
    classifier: stockade_retry_classifier_fn,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let r = unsafe { pattern(retry) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        let result = r.execute_if(
            |e: &super::CallbackFailed| match classifier {
                // SAFETY: function contract.
                Some(classify) => unsafe { classify(e.0, user_data) },
                None => true,
            },
            // SAFETY: function contract.
            || unsafe { super::call(callback, user_data) },
        );
        result.map_err(|e| super::error_status(&e))
    })
}

/// `*out` = a new handle to the registered retry called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_retry_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_get(
    name: *const c_char,
    out: *mut *mut stockade_retry,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the retry lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_retry_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_free(handle: *mut stockade_retry) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the retry: it refuses every call from now on (`DISPOSED`)
/// and its name is free again. Handles stay valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_dispose(handle: *const stockade_retry) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the retry's counters now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_metrics(
    handle: *const stockade_retry,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the retry:
/// `RETRY` (attempt, delay_ms), `REJECTED` (a budget refused a retry), `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until `stockade_retry_unsubscribe`
///   returned (or the retry is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_subscribe(
    handle: *const stockade_retry,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_retry_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_unsubscribe(
    handle: *const stockade_retry,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the retry as a pipeline stage (free with
/// `stockade_policy_free`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_retry_as_policy(
    handle: *const stockade_retry,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}
