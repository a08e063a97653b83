//! The bulkhead of the blocking tier: `stockade_bulkhead_handle` (callers
//! wait in a queue for a slot).

use core::ffi::{c_char, c_void};
use core::time::Duration;
use std::boxed::Box;
use std::sync::{Arc, Mutex};

use super::redis::{self, stockade_redis_options};
use super::shared::{self, stockade_shared_options};
#[cfg(feature = "shared-memory")]
use super::shared_bulkhead::{Refusal, SharedBulkheadPattern};
use super::{
    Handle, Pattern, PolicyHandle, give, name_arg, new_error_status, stockade_callback,
    stockade_listener_fn, stockade_metrics, stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::bulkhead::stockade_bulkhead_config;
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use stockade_core::blocking::Bulkhead;
#[cfg(feature = "shared-memory")]
use stockade_core::blocking::Error;
use stockade_core::bulkhead::BulkheadToken;

/// A bulkhead of the blocking tier (the core's `blocking::Bulkhead`): at
/// most `max_concurrent` callbacks run at once; others wait in a queue (up
/// to `max_queue`, for at most `queue_timeout_ms`). Heap-allocated, safe
/// to share between threads; free with `stockade_bulkhead_handle_free`.
/// Made by `stockade_bulkhead_handle_new` (this process's bulkhead) or
/// `stockade_bulkhead_handle_new_shared` (one bulkhead for every process
/// on the host, which waits by polling: see there); every other function
/// works on both.
pub struct stockade_bulkhead_handle {
    inner: BulkheadRef,
}

/// The bulkhead behind a handle: this process's, or one shared between
/// processes.
#[derive(Clone)]
enum BulkheadRef {
    Local(Arc<Bulkhead>),
    #[cfg(feature = "shared-memory")]
    Shared(Arc<SharedBulkheadPattern>),
}

impl Handle for stockade_bulkhead_handle {
    type P = Bulkhead;
    fn wrap(inner: Arc<Bulkhead>) -> Self {
        stockade_bulkhead_handle {
            inner: BulkheadRef::Local(inner),
        }
    }
    fn dyn_pattern(&self) -> &dyn Pattern {
        match &self.inner {
            BulkheadRef::Local(b) => &**b,
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => &**s,
        }
    }
}

impl PolicyHandle for stockade_bulkhead_handle {
    fn policy(&self) -> Arc<dyn stockade_core::blocking::DynPolicy> {
        match &self.inner {
            BulkheadRef::Local(b) => b.clone(),
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => s.clone(),
        }
    }
}

/// The status of a shared bulkhead's refusal.
#[cfg(feature = "shared-memory")]
fn refusal_status(r: Refusal) -> stockade_status {
    super::error_status(&r.into_error::<()>())
}

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

/// Makes a handle to the bulkhead `name` that every process on the host
/// shares (see `stockade_shared_options`): `stockade_bulkhead_handle_new`
/// with one more argument. The first process to open `name` creates it
/// with `config` and `options->max_processes` owner slots; the others must
/// give the same config and `max_processes` (or set
/// `options->adopt_stored_config`). At most `max_concurrent` permits are
/// held host-wide; the permits of a process that dies (however it dies)
/// come back before any caller is refused for lack of them. Every function
/// of `stockade_bulkhead_handle` works on the handle, with these
/// differences from a local bulkhead:
///
/// - **Waiting polls.** A caller that finds every permit held waits (if
///   `max_queue` host-wide waiters allow it) by polling, 50 µs doubling to
///   1 ms, for up to `queue_timeout_ms`: a freed permit is seen within
///   1 ms plus scheduling delay, and there is no FIFO order across
///   processes (a newcomer may take a permit that frees up while a waiter
///   sleeps; `_try_acquire` and `_try_execute` do not defer to waiters).
/// - **Metrics.** `in_flight` and `queue_depth` are host-wide; the call
///   counters are this process's.
/// - **Dispose** affects this process's handles only (its waiters give up
///   at their next poll); other processes keep using the bulkhead.
/// - **fork.** A forked child takes its own owner slot on its first call
///   (`SHARED_NO_OWNER_SLOT` or `SHARED_IO` if it cannot; the message is
///   then in `stockade_shared_last_error()`). A permit acquired before the
///   fork stays the parent's: releasing it in the child does nothing.
/// - Not registered: `_get` does not find it (the registry is per
///   process); open it again instead.
///
/// `max_concurrent` may be at most 16777215.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`name`, `config`, `options`, `out`);
///   `INVALID_CONFIG` (`*error` names the option if not NULL);
///   `INVALID_ARGUMENT` (`name` empty, too long or not UTF-8,
///   `max_processes` above 4096, an empty `options->directory`);
///   `SHARED_CONFIG_MISMATCH`; `SHARED_REFUSED`; `SHARED_INCOMPATIBLE`;
///   `SHARED_IO`; `SHARED_BUSY`; `SHARED_NO_OWNER_SLOT` (every owner slot
///   is held by a live process); `SHARED_UNSUPPORTED` (not Linux, or built
///   without the feature). `stockade_shared_last_error()` gives the full
///   message of a failure (the path, and for a mismatch both configs).
/// - Ownership: `*out` is the caller's; free it with
///   `stockade_bulkhead_handle_free` (the process's owner slot is given up
///   when the last handle, permit and pipeline holding the bulkhead are
///   freed, or when the process exits). The file stays (see
///   `stockade_shared_unlink`).
/// - Thread safety: any thread. Blocks: while the file is opened (file
///   system calls; up to `open_timeout_ms` if another process is
///   rebuilding it or a dead process's slot is being reaped).
///
/// # Safety
///
/// Pointers valid or NULL; `name` and `options->directory` NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_new_shared(
    name: *const c_char,
    config: *const stockade_bulkhead_config,
    options: *const stockade_shared_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_bulkhead_handle,
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
            let bulkhead = SharedBulkheadPattern::open(name, config, &options)
                // SAFETY: `error` valid or NULL.
                .map_err(|e| unsafe { shared::shared_status(e, error) })?;
            let handle = stockade_bulkhead_handle {
                inner: BulkheadRef::Shared(Arc::new(bulkhead)),
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

/// Makes a handle to the bulkhead `name` that every process sharing the
/// Redis server of `options->url` shares (see `stockade_redis_options`):
/// `stockade_bulkhead_handle_new` with one more argument. At most `max_concurrent` permits are held
/// fleet-wide; each is a lease in Redis that its holder renews, so the
/// permits of a process that dies come back within `options->lease_ttl_ms`
/// (default 30000). The first process to use `name` stores `config`; the
/// others must give the same config (or set `adopt_stored_config`).
/// Every function of `stockade_bulkhead_handle` works on the handle; its events
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
///   `stockade_bulkhead_handle_free` (the registry keeps its own reference
///   until `stockade_bulkhead_handle_dispose`). The keys in Redis expire when
///   idle.
/// - Thread safety: any thread. Blocks: no (no network I/O).
///   Calls on the handle make a round trip to Redis to take and to
///   release a permit, each bounded by the options' timeouts.
///
/// # Safety
///
/// Pointers valid or NULL; `name`, `options->url` and `options->prefix`
/// NUL-terminated or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_bulkhead_handle_new_redis(
    name: *const c_char,
    config: *const stockade_bulkhead_config,
    options: *const stockade_redis_options,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_bulkhead_handle,
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
            let inner = Bulkhead::redis(name, config, &options)
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
        let h = unsafe { arg(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        let run = || unsafe { super::call(callback, user_data) };
        match &h.inner {
            BulkheadRef::Local(b) => b.execute(run),
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => s.run(s.wait_for(None), || run().map_err(Error::Inner)),
        }
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
        let h = unsafe { arg(handle) }?;
        let callback = callback.ok_or(stockade_status::NullArgument)?;
        // SAFETY: function contract.
        let run = || unsafe { super::call(callback, user_data) };
        match &h.inner {
            BulkheadRef::Local(b) => b.try_execute(run),
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => s.run(Duration::ZERO, || run().map_err(Error::Inner)),
        }
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
    /// `None` once released: the permit itself remembers, so a second
    /// release is always detected (the core's tokens cannot tell).
    held: Mutex<Option<Held>>,
}

/// A held slot and its bulkhead (kept alive by the permit).
enum Held {
    Local(Arc<Bulkhead>, BulkheadToken),
    #[cfg(feature = "shared-memory")]
    Shared(
        Arc<SharedBulkheadPattern>,
        stockade_core::shared::SharedToken,
    ),
}

impl stockade_bulkhead_permit {
    /// Releases the slot unless already released.
    fn release(&self) -> Result<(), stockade_status> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(stockade_status::TokenAlreadyUsed)?;
        match held {
            Held::Local(b, token) => b.release_token(token),
            #[cfg(feature = "shared-memory")]
            Held::Shared(s, token) => s.release(token, false),
        }
        .map_err(|_| stockade_status::TokenAlreadyUsed)
    }
}

/// `*out` = a new permit holding `held`.
///
/// # Safety
///
/// `out` checked, valid for writes.
unsafe fn give_permit(out: Out<*mut stockade_bulkhead_permit>, held: Held) {
    let permit = stockade_bulkhead_permit {
        held: Mutex::new(Some(held)),
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
        let timeout = (timeout_ms != 0).then(|| Duration::from_millis(timeout_ms));
        let held = match &h.inner {
            BulkheadRef::Local(b) => {
                let guard = match timeout {
                    None => b.acquire(),
                    Some(t) => b.acquire_timeout(t),
                }
                .map_err(|e| super::error_status(&e))?;
                Held::Local(Arc::clone(b), guard.into_token())
            }
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => {
                let token = s.admit(s.wait_for(timeout)).map_err(refusal_status)?;
                Held::Shared(Arc::clone(s), token)
            }
        };
        // SAFETY: checked out-pointer.
        unsafe { give_permit(out, held) };
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
        let held = match &h.inner {
            BulkheadRef::Local(b) => {
                let guard = b.try_acquire().map_err(|e| super::error_status(&e))?;
                Held::Local(Arc::clone(b), guard.into_token())
            }
            #[cfg(feature = "shared-memory")]
            BulkheadRef::Shared(s) => {
                let token = s.admit(Duration::ZERO).map_err(refusal_status)?;
                Held::Shared(Arc::clone(s), token)
            }
        };
        // SAFETY: checked out-pointer.
        unsafe { give_permit(out, held) };
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
