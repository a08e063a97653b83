//! The circuit breaker of the blocking tier: `stockade_breaker_handle`.

use core::ffi::{c_char, c_void};
use std::boxed::Box;
use std::sync::Arc;

use stockade_core::blocking::CircuitBreaker;

use super::redis::{self, stockade_redis_options};
use super::shared::{self, stockade_shared_options};
use super::{
    Handle, Pattern, PolicyHandle, call, name_arg, new_error_status, stockade_callback,
    stockade_listener_fn, stockade_metrics, stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::breaker::{stockade_breaker_config, stockade_breaker_state};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;

/// A circuit breaker of the blocking tier (the core's
/// `blocking::CircuitBreaker`): runs callbacks, counts their failures,
/// optionally registered by name. Heap-allocated; free it with
/// `stockade_breaker_handle_free`. Safe to share between threads. Made by
/// `stockade_breaker_handle_new` (this process's breaker) or
/// `stockade_breaker_handle_new_shared` (one breaker for every process on
/// the host); every other function works on both.
pub struct stockade_breaker_handle {
    inner: Breaker,
}

/// The breaker behind a handle: this process's, or one shared between
/// processes (on the host's clock).
enum Breaker {
    Local(Arc<CircuitBreaker>),
    #[cfg(feature = "shared-memory")]
    Shared(Arc<CircuitBreaker<stockade_core::shared::HostClock>>),
}

/// `$body` with `$b` bound to the handle's breaker, whichever it is.
macro_rules! with_breaker {
    ($h:expr, $b:ident => $body:expr) => {
        match &$h.inner {
            Breaker::Local($b) => $body,
            #[cfg(feature = "shared-memory")]
            Breaker::Shared($b) => $body,
        }
    };
}

impl Handle for stockade_breaker_handle {
    type P = CircuitBreaker;
    fn wrap(inner: Arc<CircuitBreaker>) -> Self {
        stockade_breaker_handle {
            inner: Breaker::Local(inner),
        }
    }
    fn dyn_pattern(&self) -> &dyn Pattern {
        with_breaker!(self, b => &**b)
    }
}

impl PolicyHandle for stockade_breaker_handle {
    fn policy(&self) -> Arc<dyn stockade_core::blocking::DynPolicy> {
        with_breaker!(self, b => b.clone())
    }
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
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        let handle = Box::new(stockade_breaker_handle::wrap(inner));
        // SAFETY: `out` valid for writes.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Makes a handle to the circuit breaker `name` that every process on the
/// host shares (see `stockade_shared_options`): `stockade_breaker_handle_new`
/// with one more argument. The first process to open `name` creates it
/// with `config`; the others must give the same config (or set
/// `options->adopt_stored_config`). One state for all: failures counted by
/// any process trip it, and once open it refuses calls in every process
/// on their next call; `half_open_max_probes` probes run host-wide. Every
/// function of `stockade_breaker_handle` works on the handle. Events are
/// this process's own: it hears the transitions it made itself (a
/// `STATE_CHANGED`'s `from` is the state last announced in this process).
/// In `stockade_breaker_handle_metrics` the `state` is host-wide; the
/// counters count this process's calls. Not registered: `_get` does not find it (the registry
/// is per process); open it again instead.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`name`, `config`, `options`, `out`);
///   `INVALID_CONFIG` (`*error` names the option if not NULL);
///   `INVALID_ARGUMENT` (`name` empty, too long or not UTF-8, an empty
///   `options->directory`); `SHARED_CONFIG_MISMATCH`; `SHARED_REFUSED`;
///   `SHARED_INCOMPATIBLE`; `SHARED_IO`; `SHARED_BUSY`;
///   `SHARED_UNSUPPORTED` (not Linux, or built without the feature).
///   `stockade_shared_last_error()` gives the full message of a failure
///   (the path, and for a mismatch both configs).
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_breaker_handle_free`. The file stays (see
///   `stockade_shared_unlink`).
/// - Thread safety: any thread. Blocks: while the file is opened (file
///   system calls; up to `open_timeout_ms` if another process is
///   rebuilding it).
///
/// # Safety
///
/// Pointers valid or NULL; `name` and `options->directory` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_new_shared(
    name: *const c_char,
    config: *const stockade_breaker_config,
    options: *const stockade_shared_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_breaker_handle,
) -> stockade_status {
    ffi_boundary!({
        shared::set_last_error("");
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        // SAFETY: function contract.
        let options = unsafe { shared::options_arg(options) }?;
        let out = Out::new(out)?;
        // SAFETY: function contract.
        let name = unsafe { shared::shared_name(name) }?;
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(config.to_core(), error) }
            .inspect_err(|_| shared::set_last_error("invalid config (see *error)"))?;
        #[cfg(feature = "shared-memory")]
        {
            // SAFETY: function contract.
            let options = unsafe { shared::to_core(options) }?;
            let breaker = CircuitBreaker::shared(name, config, &options)
                // SAFETY: `error` valid or NULL.
                .map_err(|e| unsafe { shared::open_status(e, error) })?;
            let handle = stockade_breaker_handle {
                inner: Breaker::Shared(Arc::new(breaker)),
            };
            // SAFETY: checked out-pointer.
            unsafe { out.write(Box::into_raw(Box::new(handle))) };
            Ok(())
        }
        #[cfg(not(feature = "shared-memory"))]
        {
            let _ = (options, out, name, config);
            Err(shared::unsupported())
        }
    })
}

/// Makes a handle to the circuit breaker `name` that every process sharing the
/// Redis server of `options->url` shares (see `stockade_redis_options`):
/// `stockade_breaker_handle_new` with one more argument. One state for the fleet: failures counted by
/// any process trip it, and a trip by one process makes the others refuse
/// calls within `options->sync_interval_ms` (sooner through pub/sub); a
/// closed breaker admits calls with no round trip. The first process to
/// use `name` stores `config`; the others must give the same config (or
/// set `adopt_stored_config`).
/// Every function of `stockade_breaker_handle` works on the handle; its events
/// (with `STOCKADE_EVENT_KIND_STORE_UNAVAILABLE` and `_STORE_RECOVERED`)
/// and metrics (with `fallback_decisions`) are this process's. Making it
/// does not contact Redis (the first call does), so it succeeds while the
/// server is down. It is registered under `name` like a `_new` handle
/// (`_get` finds it; `_dispose` frees the name).
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`name`, `config`, `options`,
///   `options->url`, `out`); `INVALID_CONFIG` (`*error` names the option if
///   not NULL); `INVALID_ARGUMENT` (`name` not UTF-8 or not usable in a
///   key, an unknown `fallback` or `time` number, a string not UTF-8);
///   `REDIS_INVALID_URL`; `REDIS_INVALID_OPTION`; `NAME_TAKEN`;
///   `REDIS_UNSUPPORTED` (built without the `redis` feature).
///   `stockade_redis_last_error()` gives the full message of a failure.
///   Later calls on the handle may also return `REDIS_UNAVAILABLE` (the
///   fallback is `CLOSED` and Redis did not answer) and
///   `REDIS_CONFIG_MISMATCH` (another config is stored under the key),
///   with the message in `stockade_redis_last_error()`.
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_breaker_handle_free` (the registry keeps its own reference
///   until `stockade_breaker_handle_dispose`). The keys in Redis expire when
///   idle.
/// - Thread safety: any thread. Blocks: no (no network I/O).
///   Calls on the handle read a cached state when closed; reporting a
///   failure and half-open probes make a round trip, bounded by the
///   options' timeouts.
///
/// # Safety
///
/// Pointers valid or NULL; `name`, `options->url` and `options->prefix`
/// NUL-terminated or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_new_redis(
    name: *const c_char,
    config: *const stockade_breaker_config,
    options: *const stockade_redis_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_breaker_handle,
) -> stockade_status {
    ffi_boundary!({
        redis::set_last_error("");
        // SAFETY: function contract.
        let config =
            *unsafe { arg(config) }.inspect_err(|_| redis::set_last_error("config is NULL"))?;
        // SAFETY: function contract.
        let options = unsafe { redis::options_arg(options) }?;
        let out = Out::new(out).inspect_err(|_| redis::set_last_error("out is NULL"))?;
        // SAFETY: function contract.
        let name = unsafe { redis::redis_name(name) }?;
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(config.to_core(), error) }
            .inspect_err(|_| redis::set_last_error("invalid config (see *error)"))?;
        #[cfg(feature = "redis")]
        {
            // SAFETY: function contract.
            let options = unsafe { redis::to_core(options) }?;
            let inner = CircuitBreaker::redis(name, config, &options)
                // SAFETY: `error` valid or NULL.
                .map_err(|e| unsafe { redis::open_status(e, error) })?;
            // SAFETY: checked out-pointer.
            unsafe { super::give(out, inner) };
            Ok(())
        }
        #[cfg(not(feature = "redis"))]
        {
            // SAFETY: function contract.
            unsafe { redis::check_strings(options) }?;
            let _ = (out, name, config);
            Err(redis::unsupported())
        }
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
    // SAFETY: function contract.
    unsafe { super::get(name, out, CircuitBreaker::get) }
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
    // SAFETY: function contract.
    unsafe { super::free(handle) }
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
    callback: stockade_callback,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // `move`: the closure holds the two pointers themselves, in
        // registers, not the address of a stack copy of them.
        // SAFETY: function contract.
        let run = move || unsafe { call(callback, user_data) };
        with_breaker!(h, b => b.execute(run)).map_err(|e| super::error_status(&e))
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
        let h = unsafe { arg(handle) }?;
        let out = Out::new(out_state)?;
        let state = with_breaker!(h, b => b.state());
        // SAFETY: valid for writes.
        unsafe { out.write(state.into()) };
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
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the breaker's counters now (`state` set).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_metrics(
    handle: *const stockade_breaker_handle,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the breaker:
/// `STATE_CHANGED` (from/to/generation), `MONITOR`, `REJECTED`
/// (retry_after_ms), `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until
///   `stockade_breaker_handle_unsubscribe` returned (or the breaker is
///   gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_subscribe(
    handle: *const stockade_breaker_handle,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `_subscribe` on this breaker).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, or another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_unsubscribe(
    handle: *const stockade_breaker_handle,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the breaker as a pipeline stage (free with
/// `stockade_policy_free`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_handle_as_policy(
    handle: *const stockade_breaker_handle,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}
