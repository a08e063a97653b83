//! The blocking tier (hosted, feature `std`): heap handles over the core's
//! `blocking` layer, running C callbacks.
//!
//! First pattern: the circuit breaker (`stockade_breaker_handle`). The
//! other blocking patterns follow the same shape (see the README's list of
//! what is not translated yet).

use core::ffi::{CStr, c_char, c_int, c_void};
use std::boxed::Box;
use std::sync::Arc;

use stockade_core::blocking::{CircuitBreaker, Error};

use crate::boundary::{Out, arg};
use crate::breaker::{stockade_breaker_config, stockade_breaker_state};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;

/// The protected operation: returns 0 on success, anything else on
/// failure (counted as a failure by the pattern). Called on the calling
/// thread with the `user_data` given to the function that runs it.
pub type stockade_callback = unsafe extern "C" fn(user_data: *mut c_void) -> c_int;

/// The status of a blocking-layer error.
pub(crate) fn error_status<E>(e: &Error<E>) -> stockade_status {
    match e {
        Error::Inner(_) => stockade_status::CallbackFailed,
        Error::BreakerOpen { state, .. } => {
            if *state == stockade_core::breaker::BreakerState::HalfOpen {
                stockade_status::BreakerHalfOpenFull
            } else {
                stockade_status::BreakerOpen
            }
        }
        Error::BulkheadFull => stockade_status::BulkheadFull,
        Error::QueueTimeout { .. } => stockade_status::QueueTimeout,
        Error::RateLimited { .. } => stockade_status::RateLimited,
        Error::TimedOut { .. } => stockade_status::TimedOut,
        Error::RetriesExhausted { .. } => stockade_status::RetriesExhausted,
        Error::Disposed => stockade_status::Disposed,
        Error::InvalidConfig(_) => stockade_status::InvalidConfig,
        Error::NameTaken { .. } => stockade_status::NameTaken,
        Error::PoolFull => stockade_status::QueueFull,
        _ => stockade_status::InternalError,
    }
}

/// A name argument: NULL for none, else NUL-terminated UTF-8.
///
/// # Safety
///
/// A non-NULL `name` must be a NUL-terminated string.
unsafe fn name_arg<'a>(name: *const c_char) -> Result<Option<&'a str>, stockade_status> {
    if name.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    let name = unsafe { CStr::from_ptr(name) };
    name.to_str()
        .map(Some)
        .map_err(|_| stockade_status::InvalidArgument)
}

/// Runs a C callback: `Ok(())` for 0, `Err(code)` otherwise.
///
/// # Safety
///
/// `callback` must be callable with `user_data`.
unsafe fn call(callback: stockade_callback, user_data: *mut c_void) -> Result<(), c_int> {
    // SAFETY: caller's contract.
    match unsafe { callback(user_data) } {
        0 => Ok(()),
        code => Err(code),
    }
}

/// A circuit breaker of the blocking tier (the core's
/// `blocking::CircuitBreaker`): runs callbacks, counts their failures,
/// optionally registered by name. Heap-allocated; free it with
/// `stockade_breaker_handle_free`. Safe to share between threads.
pub struct stockade_breaker_handle {
    inner: Arc<CircuitBreaker>,
}

/// Makes a breaker handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_breaker_handle_get(name)` finds it, and a second
/// live breaker of that name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`*error` names the option if not NULL); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_breaker_handle_free` (the registry keeps its own reference
///   until `stockade_breaker_handle_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_new(
    name: *const c_char,
    config: *const stockade_breaker_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_breaker_handle,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        // SAFETY: function contract.
        let name = unsafe { name_arg(name) }?;
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(config.to_core(), error) }?;
        let made = match name {
            Some(name) => CircuitBreaker::new(name, config),
            None => CircuitBreaker::unregistered("", config).map(Arc::new),
        };
        let inner = made.map_err(|e| match e {
            Error::InvalidConfig(c) => {
                // SAFETY: `error` valid or NULL.
                unsafe { config_error::report(error, &c) }
            }
            e => error_status(&e),
        })?;
        let handle = Box::new(stockade_breaker_handle { inner });
        // SAFETY: `out` valid for writes.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// `*out` = a new handle to the registered breaker called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_breaker_handle_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_get(
    name: *const c_char,
    out: *mut *mut stockade_breaker_handle,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let name = unsafe { name_arg(name) }?.ok_or(stockade_status::NullArgument)?;
        let out = Out::new(out)?;
        let inner = CircuitBreaker::get(name).ok_or(stockade_status::NotFound)?;
        // SAFETY: `out` valid for writes.
        unsafe { out.write(Box::into_raw(Box::new(stockade_breaker_handle { inner }))) };
        Ok(())
    })
}

/// Frees a handle (the breaker lives on while other handles or the
/// registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_breaker_handle_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_free(handle: *mut stockade_breaker_handle) {
    crate::boundary::run_value((), || {
        if !handle.is_null() {
            // SAFETY: made by `Box::into_raw` and not freed (contract).
            drop(unsafe { Box::from_raw(handle) });
        }
    });
}

/// # Safety
///
/// A non-NULL `h` must be a live handle.
unsafe fn handle<'a>(
    h: *const stockade_breaker_handle,
) -> Result<&'a CircuitBreaker, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(h) }.map(|h| &*h.inner)
}

/// Runs `callback(user_data)` through the breaker: refused while open,
/// counted as a success (returns 0) or a failure (any other value).
///
/// - Statuses: `OK` (ran, succeeded); `CALLBACK_FAILED` (ran, failed:
///   counted); `BREAKER_OPEN`; `BREAKER_HALF_OPEN_FULL`; `DISPOSED`;
///   `NULL_ARGUMENT` (`handle`, `callback`).
/// - Blocks: only while the callback runs (on this thread).
/// - Thread safety: any number of threads at once. The callback must not
///   unwind (C++ exceptions must not escape it).
///
/// # Safety
///
/// `handle` live; `callback` callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_execute(
    handle: *const stockade_breaker_handle,
    callback: Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::handle(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        b.execute(|| unsafe { call(callback, user_data) })
            .map_err(|e| error_status(&e))
    })
}

/// `*out_state` = the breaker's state.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live; `out_state` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_get_state(
    handle: *const stockade_breaker_handle,
    out_state: *mut stockade_breaker_state,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::handle(handle) }?;
        let out = Out::new(out_state)?;
        // SAFETY: valid for writes.
        unsafe { out.write(b.state().into()) };
        Ok(())
    })
}

/// Disposes of the breaker: it refuses every call from now on
/// (`DISPOSED`) and its name is free again. Handles stay valid until
/// freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_dispose(
    handle: *const stockade_breaker_handle,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        unsafe { self::handle(handle) }?.dispose();
        Ok(())
    })
}
