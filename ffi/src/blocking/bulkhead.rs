//! The bulkhead of the blocking tier: `stockade_bulkhead_handle` (callers
//! wait in a queue for a slot).

use core::ffi::{c_char, c_void};
use core::time::Duration;
use std::sync::{Arc, Mutex};

use super::{
    give, name_arg, new_error_status, pattern, stockade_callback, stockade_listener_fn,
    stockade_metrics, stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::bulkhead::stockade_bulkhead_config;
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use stockade_core::blocking::Bulkhead;
use stockade_core::bulkhead::BulkheadToken;

/// A bulkhead of the blocking tier (the core's `blocking::Bulkhead`): at
/// most `max_concurrent` callbacks run at once; others wait in a queue (up
/// to `max_queue`, for at most `queue_timeout_ms`). Heap-allocated, safe
/// to share between threads; free with `stockade_bulkhead_handle_free`.
pub struct stockade_bulkhead_handle {
    inner: Arc<Bulkhead>,
}

super::handle_type!(stockade_bulkhead_handle, Bulkhead);

const GET: fn(&str) -> Option<Arc<Bulkhead>> = Bulkhead::get;

fn to_core(
    c: stockade_bulkhead_config,
) -> Result<stockade_core::bulkhead::BulkheadConfig, stockade_core::ConfigError> {
    c.to_core()
}

/// Makes a bulkhead handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_bulkhead_handle_get(name)` finds it, and a second live bulkhead of that
/// name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`*error` names the option if not NULL); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with `stockade_bulkhead_handle_free` (the
///   registry keeps its own reference until `stockade_bulkhead_handle_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_new(
    name: *const c_char,
    config: *const stockade_bulkhead_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_bulkhead_handle,
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
            Some(name) => Bulkhead::new(name, config),
            None => Bulkhead::unregistered("", config).map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Runs `callback(user_data)` on this thread once a slot is free, waiting
/// in the queue for one (up to `queue_timeout_ms`); the slot is released
/// when the callback returns.
///
/// - Statuses: `OK` (ran, returned 0); `CALLBACK_FAILED` (ran, returned
///   non-zero); `BULKHEAD_FULL` (no slot and the queue is full);
///   `QUEUE_TIMEOUT`; `DISPOSED`; `NULL_ARGUMENT` (`handle`, `callback`).
/// - Blocks: while waiting and while the callback runs. Thread safety: any
///   number of threads at once. The callback must not unwind.
///
/// # Safety
///
/// `handle` live; `callback` callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_execute(
    handle: *const stockade_bulkhead_handle,
    callback: stockade_callback,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { pattern(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        b.execute(|| unsafe { super::call(callback, user_data) })
            .map_err(|e| super::error_status(&e))
    })
}

/// Runs `callback(user_data)` only if a slot is free now (never waits).
///
/// - Statuses: as `stockade_bulkhead_handle_execute`, without
///   `QUEUE_TIMEOUT`. Blocks: only while the callback runs.
///
/// # Safety
///
/// `handle` live; `callback` callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_try_execute(
    handle: *const stockade_bulkhead_handle,
    callback: stockade_callback,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { pattern(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        b.try_execute(|| unsafe { super::call(callback, user_data) })
            .map_err(|e| super::error_status(&e))
    })
}

/// `*out` = a new handle to the registered bulkhead called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_bulkhead_handle_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_get(
    name: *const c_char,
    out: *mut *mut stockade_bulkhead_handle,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the bulkhead lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_bulkhead_handle_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_free(handle: *mut stockade_bulkhead_handle) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the bulkhead: it refuses every call from now on (`DISPOSED`)
/// and its name is free again. Handles stay valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_dispose(
    handle: *const stockade_bulkhead_handle,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the bulkhead's counters now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_metrics(
    handle: *const stockade_bulkhead_handle,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the bulkhead:
/// `REJECTED`, `QUEUE_TIMEOUT` (duration_ms = the wait), `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until `stockade_bulkhead_handle_unsubscribe`
///   returned (or the bulkhead is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_subscribe(
    handle: *const stockade_bulkhead_handle,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_bulkhead_handle_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_unsubscribe(
    handle: *const stockade_bulkhead_handle,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the bulkhead as a pipeline stage (free with
/// `stockade_policy_free`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_as_policy(
    handle: *const stockade_bulkhead_handle,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}

/// A slot of a blocking bulkhead held across calls (from
/// `stockade_bulkhead_handle_acquire` / `_try_acquire`): the
/// acquire-then-release form of `stockade_bulkhead_handle_execute`.
/// Heap-allocated; it keeps its bulkhead alive. Release it with
/// `stockade_bulkhead_permit_release` (the front waiter, if any, is granted
/// the slot; counted as a success), then free it with
/// `stockade_bulkhead_permit_free` (which releases it first if needed).
pub struct stockade_bulkhead_permit {
    bulkhead: Arc<Bulkhead>,
    /// `None` once released: the permit itself remembers, so a second
    /// release is always detected (the core's tokens cannot tell).
    token: Mutex<Option<BulkheadToken>>,
}

impl stockade_bulkhead_permit {
    /// Releases the slot unless already released.
    fn release(&self) -> Result<(), stockade_status> {
        let token = self
            .token
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(stockade_status::TokenAlreadyUsed)?;
        self.bulkhead
            .release_token(token)
            .map_err(|_| stockade_status::TokenAlreadyUsed)
    }
}

/// `*out` = a new permit of `b` holding `token`.
///
/// # Safety
///
/// `out` checked, valid for writes.
unsafe fn give_permit(
    out: Out<*mut stockade_bulkhead_permit>,
    b: &Arc<Bulkhead>,
    token: BulkheadToken,
) {
    let permit = stockade_bulkhead_permit {
        bulkhead: Arc::clone(b),
        token: Mutex::new(Some(token)),
    };
    // SAFETY: valid for writes (caller's contract).
    unsafe { out.write(Box::into_raw(Box::new(permit))) }
}

/// Takes a slot, waiting in the FIFO queue for at most `timeout_ms`
/// milliseconds, and never longer than the config's `queue_timeout_ms`
/// (0 = wait the config's `queue_timeout_ms`; a config `queue_timeout_ms`
/// of 0 never waits). `*out` = the held slot.
///
/// - Statuses: `OK`; `BULKHEAD_FULL` (no slot and the queue is full, or
///   no slot and no waiting allowed); `QUEUE_TIMEOUT`; `DISPOSED`;
///   `NULL_ARGUMENT` (`handle`, `out`).
/// - Ownership: `*out` is the caller's: release it with
///   `stockade_bulkhead_permit_release` and free it with
///   `stockade_bulkhead_permit_free`.
/// - Blocks: while waiting. Thread safety: any number of threads at once;
///   slots are granted in arrival order.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_acquire(
    handle: *const stockade_bulkhead_handle,
    timeout_ms: u64,
    out: *mut *mut stockade_bulkhead_permit,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(handle) }?;
        let out = Out::new(out)?;
        let b = &h.inner;
        let guard = if timeout_ms == 0 {
            b.acquire()
        } else {
            b.acquire_timeout(Duration::from_millis(timeout_ms))
        }
        .map_err(|e| super::error_status(&e))?;
        // SAFETY: checked out-pointer.
        unsafe { give_permit(out, b, guard.into_token()) };
        Ok(())
    })
}

/// Takes a slot only if one is free now and nobody is queued (never
/// waits). `*out` = the held slot.
///
/// - Statuses: `OK`; `BULKHEAD_FULL`; `DISPOSED`; `NULL_ARGUMENT`
///   (`handle`, `out`).
/// - Ownership, thread safety: as `stockade_bulkhead_handle_acquire`.
///   Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_try_acquire(
    handle: *const stockade_bulkhead_handle,
    out: *mut *mut stockade_bulkhead_permit,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(handle) }?;
        let out = Out::new(out)?;
        let guard = h.inner.try_acquire().map_err(|e| super::error_status(&e))?;
        // SAFETY: checked out-pointer.
        unsafe { give_permit(out, &h.inner, guard.into_token()) };
        Ok(())
    })
}

/// Releases the slot: if callers are queued, the front one is granted it.
/// Counted as a successful call of the bulkhead. The permit stays
/// allocated until `stockade_bulkhead_permit_free`.
///
/// - Statuses: `OK`; `TOKEN_ALREADY_USED` (released before: nothing
///   changes, no count moves); `NULL_ARGUMENT`.
/// - Thread safety: any thread (also another than the one that acquired
///   it); of two concurrent releases exactly one returns `OK`. Blocks: no
///   (a short lock when waiters are queued).
///
/// # Safety
///
/// `permit` live (not freed) or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_permit_release(
    permit: *const stockade_bulkhead_permit,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        unsafe { arg(permit) }?.release()
    })
}

/// Frees a permit, releasing its slot first if it was not released (as
/// `stockade_bulkhead_permit_release`). NULL is a no-op.
///
/// - Thread safety: any thread, once per permit, after every call on it
///   returned. Blocks: no.
///
/// # Safety
///
/// `permit` from `stockade_bulkhead_handle_acquire`/`_try_acquire`, not
/// freed before, or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_permit_free(permit: *mut stockade_bulkhead_permit) {
    crate::boundary::run_value((), || {
        if !permit.is_null() {
            // SAFETY: made by `Box::into_raw` and not freed (contract).
            let permit = unsafe { Box::from_raw(permit) };
            let _ = permit.release();
        }
    });
}
