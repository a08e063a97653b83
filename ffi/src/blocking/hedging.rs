//! Hedging of the blocking tier: `stockade_hedging` (the attempts run on
//! the hedging's worker pool).

use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicU32, Ordering};
use core::time::Duration;
use std::sync::Arc;

use super::{
    CallbackFailed, Release, error_status, give, name_arg, new_error_status, pattern,
    stockade_listener_fn, stockade_metrics, stockade_policy, stockade_release_fn,
};
use crate::boundary::{Out, arg};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use stockade_core::blocking::{Error, Hedging};
use stockade_core::hedging::HedgingConfig;

/// Hedging options (the core's `HedgingConfig`): start from
/// `stockade_hedging_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_hedging_config {
    /// How long an attempt runs without a success before the next one is
    /// launched, ms (default 2000); 0 launches every attempt at once.
    pub delay_ms: u64,
    /// Attempts in all, the first included (default 2); 1 to 64.
    pub max_attempts: u32,
    /// Worker threads of the hedging's pool: the most attempts running at
    /// once over every call (default 16); must be greater than 0.
    pub max_workers: u32,
}

/// The defaults: 2000 ms delay, 2 attempts, 16 workers.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_hedging_config_default() -> stockade_hedging_config {
    let d = HedgingConfig::DEFAULT;
    stockade_hedging_config {
        delay_ms: crate::time::millis(d.delay),
        max_attempts: d.max_attempts,
        max_workers: u32::try_from(d.max_workers).unwrap_or(u32::MAX),
    }
}

fn to_core(c: stockade_hedging_config) -> Result<HedgingConfig, stockade_core::ConfigError> {
    let config = HedgingConfig {
        delay: Duration::from_millis(c.delay_ms),
        max_attempts: c.max_attempts,
        max_workers: c.max_workers as usize,
    };
    config.validate()?;
    Ok(config)
}

/// A hedging of the blocking tier (the core's `blocking::Hedging`): runs
/// a callback on its worker pool and, when it is slow (or fails), runs it
/// again; the first success wins. Heap-allocated, safe to share between
/// threads; free with `stockade_hedging_free`.
pub struct stockade_hedging {
    inner: Arc<Hedging>,
}

super::handle_type!(stockade_hedging, Hedging, policy);

const GET: fn(&str) -> Option<Arc<Hedging>> = Hedging::get;

/// One attempt of a hedged call: `attempt` numbers the attempts in the
/// order they start (1, 2, ...), so that each can leave its result in its
/// own place in `user_data`. Returns 0 on success, non-zero on failure.
pub type stockade_hedged_fn =
    Option<unsafe extern "C" fn(attempt: u32, user_data: *mut c_void) -> c_int>;

/// Chooses the failed attempts that launch the next attempt at once (the
/// same shape as `stockade_fallback_classifier_fn`): `status` is
/// `CALLBACK_FAILED` and `code` the attempt's non-zero return value; true =
/// hedge on it, false = the failure is final.
pub type stockade_hedging_classifier_fn = Option<
    unsafe extern "C" fn(status: stockade_status, code: c_int, user_data: *mut c_void) -> bool,
>;

/// Makes a hedging handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_hedging_get(name)` finds it, and a second live
/// hedging of that name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`max_attempts` 0 or above 64, `max_workers` 0; `*error` names the
///   option if not NULL); `NAME_TAKEN`; `INVALID_ARGUMENT` (`name` not
///   UTF-8).
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_hedging_free` (the registry keeps its own reference until
///   `stockade_hedging_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_new(
    name: *const c_char,
    config: *const stockade_hedging_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_hedging,
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
            Some(name) => Hedging::new(name, config),
            None => Hedging::unregistered("", config).map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// A hedged C callback and its data, shared by the attempts and released
/// once when the last attempt is done with it.
struct Attempts {
    callback: unsafe extern "C" fn(u32, *mut c_void) -> c_int,
    started: AtomicU32,
    data: Release,
}

/// Runs `callback(attempt, user_data)` hedged: the first attempt on a
/// worker of the hedging's pool, another when `delay_ms` passes without a
/// success or at once when an attempt fails, up to `max_attempts`; the
/// first attempt to return 0 wins and this function returns with
/// `*out_attempt` (optional) = its number. **The other attempts are not
/// stopped**: they run on to the end on their workers after this function
/// returned (their outcome is dropped), possibly at the same time as each
/// other, so the callback must be safe to run concurrently with itself.
/// When every worker is busy, a hedge is not launched (counted in
/// `rejections`), and a first attempt runs on this thread, unhedged.
///
/// `user_data` must therefore stay valid until the last attempt returned.
/// Pass a `release` (optional): it is called exactly once, with
/// `user_data`, when stockade no longer uses it — after the last attempt
/// returned (possibly on a worker thread, possibly after this function
/// returned), or before this function returns when no attempt runs
/// (disposed, a NULL argument).
///
/// - Statuses: `OK` (an attempt returned 0); `CALLBACK_FAILED` (every
///   attempt failed); `DISPOSED`; `NULL_ARGUMENT` (`hedging`, `callback`;
///   `release` is called before returning).
/// - Blocks: until an attempt succeeds or every attempt failed. Thread
///   safety: any number of threads at once; the callback must not unwind.
///
/// # Safety
///
/// `hedging` live; `callback` and `release` callable with `user_data`
/// from any thread; `out_attempt` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_execute(
    hedging: *const stockade_hedging,
    callback: stockade_hedged_fn,
    user_data: *mut c_void,
    release: stockade_release_fn,
    out_attempt: *mut u32,
) -> stockade_status {
    // SAFETY: function contract; no classifier.
    unsafe { execute_with(hedging, callback, None, user_data, release, out_attempt) }
}

/// `stockade_hedging_execute`, launching the next attempt at once only for
/// the failures `classifier` chooses (Polly's `ShouldHandle`).
///
/// When an attempt fails with code `code`, `classifier(CALLBACK_FAILED,
/// code, user_data)` is called **on this thread** (while other attempts
/// may be running on workers with the same `user_data`):
///
/// - true: as in `stockade_hedging_execute`: the next attempt (if any is
///   left) starts at once; when no attempt is left running or to start,
///   this function returns `CALLBACK_FAILED`.
/// - false: the failure is **final**: this function returns
///   `CALLBACK_FAILED` at once and starts no more attempts; the attempts
///   still running are treated as losers (they run on to the end and
///   their outcome is dropped, `release` after the last). An attempt
///   running at that moment wins only if its success reached this thread
///   first: outcomes are taken in the order they arrive, and the first
///   success or rejected failure decides.
///
/// NULL `classifier`: every failure is hedged on (exactly
/// `stockade_hedging_execute`). The classifier is never called for a first
/// attempt run unhedged on this thread (a full pool): its outcome is the
/// call's. `*out_attempt` is written only on `OK`.
///
/// - Statuses, blocking, thread safety: as `stockade_hedging_execute`; the
///   classifier must not unwind.
///
/// # Safety
///
/// As `stockade_hedging_execute`; `classifier` callable with `user_data`
/// on this thread while attempts run elsewhere.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_execute_if(
    hedging: *const stockade_hedging,
    callback: stockade_hedged_fn,
    classifier: stockade_hedging_classifier_fn,
    user_data: *mut c_void,
    release: stockade_release_fn,
    out_attempt: *mut u32,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe {
        execute_with(
            hedging,
            callback,
            classifier,
            user_data,
            release,
            out_attempt,
        )
    }
}

/// The hedged call of `stockade_hedging_execute` and `_execute_if`.
///
/// # Safety
///
/// As `stockade_hedging_execute_if`.
unsafe fn execute_with(
    hedging: *const stockade_hedging,
    callback: stockade_hedged_fn,
    classifier: stockade_hedging_classifier_fn,
    user_data: *mut c_void,
    release: stockade_release_fn,
    out_attempt: *mut u32,
) -> stockade_status {
    ffi_boundary!({
        // First: every path below releases `user_data` once.
        let data = Release::new(user_data, release);
        // SAFETY: function contract.
        let h = unsafe { pattern(hedging) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        let attempts = Attempts {
            callback,
            started: AtomicU32::new(0),
            data,
        };
        let call = move || {
            let attempt = attempts.started.fetch_add(1, Ordering::Relaxed) + 1;
            // SAFETY: the caller promised the callback may be called
            // with its data from any thread, concurrently, until
            // `release` (which runs when `attempts` is dropped, after
            // the last attempt).
            match unsafe { (attempts.callback)(attempt, attempts.data.user_data()) } {
                0 => Ok(attempt),
                code => Err(CallbackFailed(code)),
            }
        };
        let won = match classifier {
            // Without a classifier: `execute`, whose filter accepts every
            // failure at no cost.
            None => h.execute(call),
            Some(classify) => h.execute_if(
                |e: &Error<CallbackFailed>| {
                    let (status, code) = super::fallback::what_failed(e);
                    // SAFETY: function contract: the classifier is called
                    // on this thread, before this function returns, while
                    // `user_data` is still valid (`release` runs after
                    // the caller's own reference to the attempts is gone).
                    unsafe { classify(status, code, user_data) }
                },
                call,
            ),
        }
        .map_err(|e| error_status(&e))?;
        if !out_attempt.is_null() {
            // SAFETY: valid for a write (function contract).
            unsafe { out_attempt.write(won) };
        }
        Ok(())
    })
}

/// `*out` = a new handle to the registered hedging called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_hedging_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_get(
    name: *const c_char,
    out: *mut *mut stockade_hedging,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the hedging lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_hedging_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_free(handle: *mut stockade_hedging) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the hedging: it refuses every call from now on
/// (`DISPOSED`), callers waiting for their attempts return `DISPOSED`
/// (the attempts run on), and its name is free again. Handles stay valid
/// until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_dispose(
    handle: *const stockade_hedging,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the hedging's counters now: `calls` = `successes` +
/// `failures`; `hedges` (extra attempts launched), `hedges_won`,
/// `rejections` (launches refused for a full pool), `in_flight` (attempts
/// running on the pool, losers included).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_metrics(
    handle: *const stockade_hedging,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the hedging:
/// `HEDGE_LAUNCHED` and `HEDGE_WON` (`attempt`), `REJECTED` (a launch
/// refused for a full pool), `DISPOSED`. `*out_id` = the subscription's
/// id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until
///   `stockade_hedging_unsubscribe` returned (or the hedging is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_subscribe(
    handle: *const stockade_hedging,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_hedging_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_unsubscribe(
    handle: *const stockade_hedging,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the hedging as a pipeline stage (free with
/// `stockade_policy_free`): each attempt runs the stages inside it and the
/// pipeline's callback on a worker, so that callback may run several times
/// at once and after `stockade_pipeline_execute` returned (its `release`
/// says when it is done).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_hedging_as_policy(
    handle: *const stockade_hedging,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}
