//! The rate limiter of the blocking tier: `stockade_limiter_handle`
//! (waits in a FIFO queue).

use core::ffi::{c_char, c_void};
use std::sync::Arc;

use super::redis::{self, stockade_redis_options};
use super::shared::{self, stockade_shared_options};
use super::{
    Handle, Pattern, PolicyHandle, give, name_arg, new_error_status, stockade_callback,
    stockade_listener_fn, stockade_metrics, stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::config_error::{self, stockade_config_error};
use crate::limiter::stockade_limiter_config;
use crate::status::stockade_status;
use stockade_core::blocking::RateLimiter;

/// A rate limiter of the blocking tier (the core's `blocking::RateLimiter`):
/// callers wait their turn in a FIFO queue (up to the config's
/// `max_queue_size` and `queue_timeout_ms`). Heap-allocated, safe to share
/// between threads; free with `stockade_limiter_handle_free`. Made by
/// `stockade_limiter_handle_new` (this process's limiter) or
/// `stockade_limiter_handle_new_shared` (one limiter for every process on
/// the host); every other function works on both.
pub struct stockade_limiter_handle {
    inner: Limiter,
}

/// The limiter behind a handle: this process's, or one shared between
/// processes (on the host's clock).
enum Limiter {
    Local(Arc<RateLimiter>),
    #[cfg(feature = "shared-memory")]
    Shared(Arc<RateLimiter<stockade_core::shared::HostClock>>),
}

/// `$body` with `$l` bound to the handle's limiter, whichever it is.
macro_rules! with_limiter {
    ($h:expr, $l:ident => $body:expr) => {
        match &$h.inner {
            Limiter::Local($l) => $body,
            #[cfg(feature = "shared-memory")]
            Limiter::Shared($l) => $body,
        }
    };
}

impl Handle for stockade_limiter_handle {
    type P = RateLimiter;
    fn wrap(inner: Arc<RateLimiter>) -> Self {
        stockade_limiter_handle {
            inner: Limiter::Local(inner),
        }
    }
    fn dyn_pattern(&self) -> &dyn Pattern {
        with_limiter!(self, l => &**l)
    }
}

impl PolicyHandle for stockade_limiter_handle {
    fn policy(&self) -> Arc<dyn stockade_core::blocking::DynPolicy> {
        with_limiter!(self, l => l.clone())
    }
}

/// `$body` with `$l` bound to the limiter behind the handle pointer `$h`
/// (`NULL_ARGUMENT` for NULL).
macro_rules! limiter {
    ($h:expr, $l:ident => $body:expr) => {{
        // SAFETY: the exported function's contract (a live handle or NULL).
        let h = unsafe { arg($h) }?;
        with_limiter!(h, $l => $body)
    }};
}

const GET: fn(&str) -> Option<Arc<RateLimiter>> = RateLimiter::get;

fn to_core(
    c: stockade_limiter_config,
) -> Result<stockade_core::limiter::RateLimiterConfig, stockade_core::ConfigError> {
    c.to_core()
}

/// Makes a rate limiter handle. With a `name` (NUL-terminated UTF-8) it is
/// registered: `stockade_limiter_handle_get(name)` finds it, and a second live rate limiter of that
/// name is refused; with NULL it is anonymous.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`config`, `out`); `INVALID_CONFIG`
///   (`*error` names the option if not NULL); `NAME_TAKEN`;
///   `INVALID_ARGUMENT` (`name` not UTF-8).
/// - Ownership: `*out` is the caller's; free it with `stockade_limiter_handle_free` (the
///   registry keeps its own reference until `stockade_limiter_handle_dispose`).
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `name` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_new(
    name: *const c_char,
    config: *const stockade_limiter_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_limiter_handle,
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
            Some(name) => RateLimiter::new(name, config),
            None => RateLimiter::unregistered("", config).map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Makes a handle to the rate limiter `name` that every process on the
/// host shares (see `stockade_shared_options`): `stockade_limiter_handle_new`
/// with one more argument. The first process to open `name` creates it
/// with `config`; the others must give the same config (or set
/// `options->adopt_stored_config`). Every grant, by any process, counts
/// against one limit: N processes with a strict limiter of 10 per second
/// get 10 per second between them, not 10 each. The FIFO queue of booked
/// permits is host-wide too (callers wait for their booked time in their
/// own process). Every function of `stockade_limiter_handle` works on the
/// handle; its events are this process's. Not registered: `_get` does not
/// find it (the registry is per process); open it again instead.
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
///   `stockade_limiter_handle_free`. The file stays (see
///   `stockade_shared_unlink`).
/// - Thread safety: any thread. Blocks: while the file is opened (file
///   system calls; up to `open_timeout_ms` if another process is
///   rebuilding it).
///
/// # Safety
///
/// Pointers valid or NULL; `name` and `options->directory` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_new_shared(
    name: *const c_char,
    config: *const stockade_limiter_config,
    options: *const stockade_shared_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_limiter_handle,
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
        let config = unsafe { config_error::check(to_core(config), error) }
            .inspect_err(|_| shared::set_last_error("invalid config (see *error)"))?;
        #[cfg(feature = "shared-memory")]
        {
            // SAFETY: function contract.
            let options = unsafe { shared::to_core(options) }?;
            let limiter = RateLimiter::shared(name, config, &options)
                // SAFETY: `error` valid or NULL.
                .map_err(|e| unsafe { shared::open_status(e, error) })?;
            let handle = stockade_limiter_handle {
                inner: Limiter::Shared(Arc::new(limiter)),
            };
            // SAFETY: checked out-pointer.
            unsafe { out.write(std::boxed::Box::into_raw(std::boxed::Box::new(handle))) };
            Ok(())
        }
        #[cfg(not(feature = "shared-memory"))]
        {
            let _ = (options, out, name, config);
            Err(shared::unsupported())
        }
    })
}

/// Makes a handle to the rate limiter `name` that every process sharing the
/// Redis server of `options->url` shares (see `stockade_redis_options`):
/// `stockade_limiter_handle_new` with one more argument. The first process to use `name`
/// stores `config` beside the state; the others must give the same config
/// (or set `options->adopt_stored_config`). Every grant, by any process on
/// any host, counts against one limit, decided by one script call in Redis
/// with the core's arithmetic: N processes with a strict limiter of 10 per
/// second get 10 per second between them. A caller that must wait books
/// its slot in Redis and waits in its own process.
/// Every function of `stockade_limiter_handle` works on the handle; its events
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
///   `stockade_limiter_handle_free` (the registry keeps its own reference
///   until `stockade_limiter_handle_dispose`). The keys in Redis expire when
///   idle.
/// - Thread safety: any thread. Blocks: no (no network I/O).
///   Calls on the handle make one round trip to Redis per decision, each
///   bounded by the options' timeouts.
///
/// # Safety
///
/// Pointers valid or NULL; `name`, `options->url` and `options->prefix`
/// NUL-terminated or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_new_redis(
    name: *const c_char,
    config: *const stockade_limiter_config,
    options: *const stockade_redis_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_limiter_handle,
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
        let config = unsafe { config_error::check(to_core(config), error) }
            .inspect_err(|_| redis::set_last_error("invalid config (see *error)"))?;
        #[cfg(feature = "redis")]
        {
            // SAFETY: function contract.
            let options = unsafe { redis::to_core(options) }?;
            let inner = RateLimiter::redis(name, config, &options)
                // SAFETY: `error` valid or NULL.
                .map_err(|e| unsafe { redis::open_status(e, error) })?;
            // SAFETY: checked out-pointer.
            unsafe { give(out, inner) };
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

/// Takes `n` permits, waiting in the FIFO queue until they are granted,
/// for at most `timeout_ms` milliseconds and never longer than the
/// config's `queue_timeout_ms` (`timeout_ms` = 0: wait up to the config's
/// `queue_timeout_ms`; `n` = 0 returns at once).
///
/// - Statuses: `OK` (granted); `RATE_LIMITED` (the queue is full or the
///   wait would exceed the allowed wait: refused at once, nothing taken);
///   `PERMITS_EXCEED_BURST` (`n` above the burst: never possible);
///   `DISPOSED`; `NULL_ARGUMENT`.
/// - Blocks: yes, up to the allowed wait. Thread safety: any number of
///   threads at once; granted in arrival order.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_acquire(
    handle: *const stockade_limiter_handle,
    n: u32,
    timeout_ms: u64,
) -> stockade_status {
    ffi_boundary!({
        limiter!(handle, l => if timeout_ms == 0 {
            l.acquire(n)
        } else {
            l.acquire_timeout(n, core::time::Duration::from_millis(timeout_ms))
        })
        .map_err(|e| super::error_status(&e))
    })
}

/// Takes `n` permits if they are available now (all or nothing; never
/// waits).
///
/// - Statuses: `OK`; `RATE_LIMITED`; `PERMITS_EXCEED_BURST`; `DISPOSED`;
///   `NULL_ARGUMENT`. Blocks: no. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_try_acquire(
    handle: *const stockade_limiter_handle,
    n: u32,
) -> stockade_status {
    ffi_boundary!({ limiter!(handle, l => l.try_acquire(n)).map_err(|e| super::error_status(&e)) })
}

/// Takes one permit (waiting as `_acquire` does), then runs
/// `callback(user_data)` on this thread.
///
/// - Statuses: `OK` (ran, returned 0); `CALLBACK_FAILED` (ran, returned
///   non-zero); `RATE_LIMITED`; `DISPOSED`; `NULL_ARGUMENT` (`handle`,
///   `callback`).
/// - Blocks: while waiting and while the callback runs. Thread safety: any
///   number of threads at once. The callback must not unwind.
///
/// # Safety
///
/// `handle` live; `callback` callable with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_execute(
    handle: *const stockade_limiter_handle,
    callback: stockade_callback,
    user_data: *mut c_void,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let h = unsafe { arg(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        let run = || unsafe { super::call(callback, user_data) };
        with_limiter!(h, l => l.execute(run)).map_err(|e| super::error_status(&e))
    })
}

/// `*out` = a new handle to the registered rate limiter called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_limiter_handle_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_get(
    name: *const c_char,
    out: *mut *mut stockade_limiter_handle,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the rate limiter lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_limiter_handle_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_free(handle: *mut stockade_limiter_handle) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the rate limiter: it refuses every call from now on (`DISPOSED`)
/// and its name is free again. Handles stay valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_dispose(
    handle: *const stockade_limiter_handle,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the rate limiter's counters now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_metrics(
    handle: *const stockade_limiter_handle,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the rate limiter:
/// `REJECTED` (retry_after_ms), `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until `stockade_limiter_handle_unsubscribe`
///   returned (or the rate limiter is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_subscribe(
    handle: *const stockade_limiter_handle,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_limiter_handle_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_unsubscribe(
    handle: *const stockade_limiter_handle,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}

/// `*out` = the rate limiter as a pipeline stage (free with
/// `stockade_policy_free`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_limiter_handle_as_policy(
    handle: *const stockade_limiter_handle,
    out: *mut *mut stockade_policy,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::as_policy(handle, out) }
}
