//! The request-response pattern: `stockade_request_response`, a named C
//! handler of byte requests answering byte responses with an HTTP-style
//! status.

use core::ffi::{CStr, c_char, c_void};
use core::time::Duration;
use std::boxed::Box;
use std::ffi::CString;
use std::string::String;
use std::sync::Arc;
use std::vec::Vec;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError, Weak};

use stockade_core::blocking::{Request, RequestResponseConfig, RequestResponsePattern, Response};

use super::protection::CProtection;
use super::{
    Release, Rr, give, name_arg, new_error_status, pattern, stockade_listener_fn, stockade_metrics,
    stockade_policy,
};
use crate::boundary::{Out, arg};
use crate::config_error::{self, stockade_config_error, write_c};
use crate::status::stockade_status;
use crate::time::millis;

/// Bytes of `stockade_response.correlation_id`, NUL included.
pub const STOCKADE_CORRELATION_ID_LEN: usize = 64;
/// Bytes of `stockade_response.error`, NUL included.
pub const STOCKADE_RESPONSE_ERROR_LEN: usize = 128;

/// Options of a request-response pattern: start from
/// `stockade_request_response_config_default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_request_response_config {
    /// The timeout of requests that name none, ms; 0 = none (they run on
    /// the caller's thread as long as they take).
    pub default_timeout_ms: u64,
    /// Worker threads for requests with a timeout (default 8); at least 1.
    pub max_workers: u32,
    /// Timed requests that may wait for a busy worker (default 16).
    pub max_queue: u32,
    /// The protection every attempt runs under (Rust's `protected_by`), or
    /// NULL (default) for none: any pattern's `_as_policy` view (a
    /// limiter, breaker, bulkhead, retry, timeout) or a pipeline's
    /// (`stockade_pipeline_as_policy`). `stockade_request_response_new`
    /// takes its own reference: the policy may be freed right after.
    /// Its refusals become responses as in Rust: a limiter's 429, an open
    /// breaker's or a full bulkhead's 503, a timeout's 504 (see
    /// `stockade_request_response_execute`). A timeout stage in it bounds
    /// each attempt as Rust's cooperative timeout stage does: a late
    /// attempt's result becomes a 504, but the request returns only once
    /// that attempt returned; to return on time, give the request a
    /// `timeout_ms` (or the pattern a `default_timeout_ms`).
    pub policy: *const stockade_policy,
}

/// 8 workers, 16 queued requests, no default timeout, no protection.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_request_response_config_default() -> stockade_request_response_config {
    let d = RequestResponseConfig::DEFAULT;
    stockade_request_response_config {
        default_timeout_ms: d.default_timeout.map_or(0, millis),
        max_workers: u32::try_from(d.max_workers).unwrap_or(u32::MAX),
        max_queue: u32::try_from(d.max_queue).unwrap_or(u32::MAX),
        policy: core::ptr::null(),
    }
}

impl stockade_request_response_config {
    fn to_core(self) -> Result<RequestResponseConfig, stockade_core::ConfigError> {
        let mut c = RequestResponseConfig::DEFAULT
            .with_max_workers(self.max_workers as usize)
            .with_max_queue(self.max_queue as usize);
        if self.default_timeout_ms > 0 {
            c = c.with_default_timeout(Duration::from_millis(self.default_timeout_ms));
        }
        c.validate()?;
        Ok(c)
    }
}

/// A request: bytes for the handler and a timeout.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_request {
    /// The payload (`len` bytes; may be NULL when `len` is 0). Copied by
    /// `stockade_request_response_execute`.
    pub data: *const c_void,
    /// Bytes of `data`.
    pub len: usize,
    /// How long the caller waits for the response, ms; 0 = the pattern's
    /// `default_timeout_ms`.
    pub timeout_ms: u64,
    /// The request's correlation id (NUL-terminated), or NULL to have one
    /// generated (`"<name>-<n>"`).
    pub correlation_id: *const c_char,
}

/// A response: an HTTP-style status, bytes, and for errors a message.
///
/// Two uses. **The handler fills one** (zeroed before the call): `status`
/// (0 is read as 200), `data`/`len` pointing to the handler's memory
/// (copied when it returns), optionally `error`. **`_execute` fills the
/// caller's** (`*response_out`): then `data` is owned by stockade — free
/// it with `stockade_response_clear`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_response {
    /// The payload, or NULL.
    pub data: *const c_void,
    /// Bytes of `data`.
    pub len: usize,
    /// When a refused request may be retried (429/503 from a limiter or
    /// breaker), ms; 0 = unknown.
    pub retry_after_ms: u64,
    /// HTTP-style status: 200 success, 429 rate limited, 503 unavailable
    /// (breaker open, bulkhead or pool full), 504 timed out, 500 handler
    /// failure.
    pub status: u16,
    /// The request's correlation id, NUL-terminated (set by `_execute`).
    pub correlation_id: [c_char; STOCKADE_CORRELATION_ID_LEN],
    /// What went wrong, NUL-terminated ("" on success), truncated to fit.
    pub error: [c_char; STOCKADE_RESPONSE_ERROR_LEN],
}

impl stockade_response {
    const EMPTY: stockade_response = stockade_response {
        data: core::ptr::null(),
        len: 0,
        retry_after_ms: 0,
        status: 0,
        correlation_id: [0; STOCKADE_CORRELATION_ID_LEN],
        error: [0; STOCKADE_RESPONSE_ERROR_LEN],
    };
}

/// The handler: reads `*request` and fills `*response` (zeroed before the
/// call). Its answer is the response `_execute` returns, as a Rust
/// handler's `Response` is:
///
/// - It returns `OK`: the response it filled; `status` 0 is read as 200.
/// - It returns another status: a response with `response->status` if it
///   set one, else the HTTP status of the returned status, as the pattern
///   answers the same refusal from its own policy: `RATE_LIMITED` 429;
///   `BREAKER_OPEN`, `BREAKER_HALF_OPEN_FULL`, `BULKHEAD_FULL`,
///   `QUEUE_TIMEOUT`, `QUEUE_FULL`, `DISPOSED` 503; `TIMED_OUT` 504; any
///   other (a number no status has too) 500. Its `error` is
///   `response->error` if set, else the status's message
///   (`stockade_status_str`).
///
/// In both cases `response->retry_after_ms` (if set) is kept, and a 5xx
/// status counts as a failure for the pattern's protection policy (a
/// breaker counts it, a retry repeats it) and in its metrics; a status
/// below 500 (a handler's own 429 too) is a success there, as in Rust.
/// Called on the caller's thread, on a worker when the request has a
/// timeout, or on a timeout stage's worker; it must not unwind.
pub type stockade_handler_fn = Option<
    unsafe extern "C" fn(
        request: *const stockade_request,
        response: *mut stockade_response,
        user_data: *mut c_void,
    ) -> stockade_status,
>;

/// The C handler and its data, released when the pattern is dropped (the
/// handler is never called again then).
struct CHandler {
    /// The handler as it is called: returning the status's number, so that
    /// a number no status has is a failure, not an invalid enum value.
    handler: RawHandler,
    data: Release,
}

/// `stockade_handler_fn`'s function with its `stockade_status` (a
/// `uint32_t` in C) read as the number it is.
type RawHandler =
    unsafe extern "C" fn(*const stockade_request, *mut stockade_response, *mut c_void) -> u32;

/// The handler as a [`RawHandler`].
fn raw_handler(
    handler: unsafe extern "C" fn(
        *const stockade_request,
        *mut stockade_response,
        *mut c_void,
    ) -> stockade_status,
) -> RawHandler {
    // SAFETY: the same C function type but for the return value, which is
    // a `uint32_t` in C either way (`stockade_status` is `repr(u32)`): the
    // call ABI is identical; reading it as `u32` accepts any value C
    // returns.
    unsafe { core::mem::transmute::<_, RawHandler>(handler) }
}

fn c_text(buf: &[c_char]) -> Option<String> {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| u8::from_ne_bytes(c.to_ne_bytes()))
        .collect();
    (!bytes.is_empty()).then(|| String::from_utf8_lossy(&bytes).into_owned())
}

impl CHandler {
    fn handle(&self, request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, String> {
        let id = request
            .correlation_id()
            .and_then(|id| CString::new(id).ok())
            .unwrap_or_default();
        let c_request = stockade_request {
            data: request.data.as_ptr().cast(),
            len: request.data.len(),
            timeout_ms: request.metadata.timeout.map_or(0, millis),
            correlation_id: id.as_ptr(),
        };
        let mut c_response = stockade_response::EMPTY;
        // SAFETY: the handler's contract; both structs live for the call.
        let raw = unsafe { (self.handler)(&c_request, &mut c_response, self.data.user_data()) };
        let status = stockade_status::from_u32(raw);
        if status != Some(stockade_status::Ok) {
            let code = match c_response.status {
                0 => status.map_or(500, http_status),
                code => code,
            };
            let message = c_text(&c_response.error).unwrap_or_else(|| match status {
                Some(status) => status.message().to_string_lossy().into_owned(),
                None => format!("the handler returned an unknown status ({raw})"),
            });
            let mut response = Response::error(code, message);
            response.retry_after = retry_after(c_response.retry_after_ms);
            return Ok(response);
        }
        let data = if c_response.data.is_null() || c_response.len == 0 {
            Vec::new()
        } else {
            // SAFETY: the handler points `data` at `len` bytes valid until
            // it returned (it just did; they are copied now, before any
            // other handler code runs on this thread).
            unsafe { core::slice::from_raw_parts(c_response.data.cast::<u8>(), c_response.len) }
                .to_vec()
        };
        let code = if c_response.status == 0 {
            200
        } else {
            c_response.status
        };
        let mut response = Response::with_status(code, data);
        response.error = c_text(&c_response.error);
        response.retry_after = retry_after(c_response.retry_after_ms);
        Ok(response)
    }
}

/// A handler's `retry_after_ms`: 0 is none.
fn retry_after(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The HTTP status of a handler's non-OK status: what the pattern answers
/// when its own policy refuses the same way (`execute`'s table).
fn http_status(status: stockade_status) -> u16 {
    use stockade_status as S;
    match status {
        S::RateLimited => 429,
        S::BreakerOpen
        | S::BreakerHalfOpenFull
        | S::BulkheadFull
        | S::QueueTimeout
        | S::QueueFull
        | S::Disposed => 503,
        S::TimedOut => 504,
        _ => 500,
    }
}

/// The core's pattern over bytes before it is protected.
type Unprotected = RequestResponsePattern<Vec<u8>, Vec<u8>>;

/// A request-response pattern (the core's `RequestResponsePattern` over
/// bytes): a named handler; `_execute` always produces a response.
/// Heap-allocated, safe to share between threads; free with
/// `stockade_request_response_free`.
pub struct stockade_request_response {
    inner: Arc<Rr>,
}

super::handle_type!(stockade_request_response, Rr);

/// Makes a request-response pattern serving requests with
/// `handler(request, response, user_data)`. With a `name` it is
/// registered (`stockade_request_response_get`); NULL: anonymous.
/// `config` NULL = the defaults (no protection); `config->policy` (not
/// NULL) protects every request, as Rust's `protected_by`.
/// `release(user_data)` (optional) is called exactly once: when the
/// pattern is gone (last handle freed, disposed, no request running), or,
/// when this function fails (any status but `OK`, a NULL `handler`
/// included), before it returns.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handler`, `out`); `INVALID_CONFIG`
///   (`*error` if not NULL); `NAME_TAKEN`; `INVALID_ARGUMENT` (`name` not
///   UTF-8).
/// - Ownership: free `*out` with `stockade_request_response_free`.
/// - Thread safety: any thread; the handler runs on callers' threads and
///   on the pattern's workers, several at once. Blocks: no.
///
/// # Safety
///
/// Pointers valid or NULL; `handler` and `release` callable with
/// `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_new(
    name: *const c_char,
    config: *const stockade_request_response_config,
    handler: stockade_handler_fn,
    user_data: *mut c_void,
    release: super::stockade_release_fn,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_request_response,
) -> stockade_status {
    ffi_boundary!({
        // First: every path below releases `user_data` once (on failure
        // when this returns, else when the pattern is gone).
        let data = Release::new(user_data, release);
        let handler = handler.ok_or(stockade_status::NullArgument)?;
        let h = CHandler {
            handler: raw_handler(handler),
            data,
        };
        let out = Out::new(out)?;
        // SAFETY: function contract.
        let name = unsafe { name_arg(name) }?;
        let config = if config.is_null() {
            stockade_request_response_config_default()
        } else {
            // SAFETY: non-NULL, valid (function contract).
            unsafe { *config }
        };
        // SAFETY: a non-NULL policy is live (function contract).
        let protection =
            CProtection(unsafe { config.policy.as_ref() }.map(|p| Arc::clone(&p.inner)));
        // SAFETY: `error` valid or NULL.
        let config = unsafe { config_error::check(config.to_core(), error) }?;
        let serve = move |request: &Request<Vec<u8>>| h.handle(request);
        let made = Unprotected::unregistered(name.unwrap_or(""), config, serve)
            .map(|rr| rr.protected_by(protection));
        let made = match name {
            Some(name) => made.and_then(|rr| register(name, rr)),
            None => made.map(Arc::new),
        };
        // SAFETY: `error` valid or NULL.
        let inner = made.map_err(|e| unsafe { new_error_status(e, error) })?;
        // SAFETY: checked out-pointer.
        unsafe { give(out, inner) };
        Ok(())
    })
}

/// Runs `*request` through the pattern (under its config's `policy`, if
/// any): `*response_out` = the handler's response, or the failure's, with
/// the correlation id set, exactly as Rust's `RequestResponsePattern`
/// answers:
///
/// | what happened | `status` | `error`, `retry_after_ms` |
/// |---|---|---|
/// | the handler answered | its status (see `stockade_handler_fn`) | its own |
/// | a rate limiter in the policy refused | 429 | its message; when to retry |
/// | a circuit breaker in the policy refused (open, or half-open and full) | 503 | its message; when to retry (0 when forced open) |
/// | a bulkhead was full or its queue timed out, or the pattern's worker pool was full | 503 | its message; 0 |
/// | the request's deadline passed, or a timeout stage in the policy gave up | 504 | `timed out after <timeout>` |
/// | a retry in the policy gave up | the last attempt's status | `gave up after <n> attempts: <last error>` |
/// | the pattern (or a pattern in its policy) was disposed | 503 | `the pattern was disposed` |
///
/// Free `response_out->data` with `stockade_response_clear`. Metrics:
/// `calls` counts every request answered, refusals included: `successes`
/// (a handler status below 500), `failures` (a 5xx from the handler, or a
/// 500 for a policy's own error), `rejections` (429/503 from the policy, a
/// full pool or a disposed pattern), `timeouts` (504).
///
/// - Statuses: `OK` (`*response_out` written: look at its `status`);
///   `NULL_ARGUMENT` (`rr`, `request`, `response_out`, or `request->data`
///   NULL with `len` > 0); `INVALID_ARGUMENT` (correlation id not UTF-8).
/// - Blocks: while the handler runs, or up to the request's timeout.
///   Thread safety: any number of threads at once.
///
/// # Safety
///
/// `rr` live; `request` valid (its `data` `len` bytes); `response_out`
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_execute(
    rr: *const stockade_request_response,
    request: *const stockade_request,
    response_out: *mut stockade_response,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let rr = unsafe { pattern(rr) }?;
        // SAFETY: function contract.
        let req = unsafe { arg(request) }?;
        let out = Out::new(response_out)?;
        let data = if req.len == 0 {
            Vec::new()
        } else if req.data.is_null() {
            return Err(stockade_status::NullArgument);
        } else {
            // SAFETY: `len` bytes (function contract).
            unsafe { core::slice::from_raw_parts(req.data.cast::<u8>(), req.len) }.to_vec()
        };
        let mut request = Request::new(data);
        if req.timeout_ms > 0 {
            request = request.with_timeout(Duration::from_millis(req.timeout_ms));
        }
        if !req.correlation_id.is_null() {
            // SAFETY: NUL-terminated (function contract).
            let id = unsafe { CStr::from_ptr(req.correlation_id) };
            let id = id.to_str().map_err(|_| stockade_status::InvalidArgument)?;
            request = request.with_correlation_id(id);
        }
        let response = rr.execute(request);
        let mut c = stockade_response::EMPTY;
        c.status = response.status;
        c.retry_after_ms = response.retry_after.map_or(0, millis);
        write_c(
            &mut c.correlation_id,
            format_args!("{}", response.correlation_id),
        );
        if let Some(e) = &response.error {
            write_c(&mut c.error, format_args!("{e}"));
        }
        if let Some(data) = response.data.filter(|d| !d.is_empty()) {
            let data: Box<[u8]> = data.into_boxed_slice();
            c.len = data.len();
            c.data = Box::into_raw(data).cast::<u8>().cast_const().cast();
        }
        // SAFETY: checked out-pointer.
        unsafe { out.write(c) };
        Ok(())
    })
}

/// Frees the `data` of a response filled by
/// `stockade_request_response_execute` and sets it to NULL / 0. NULL and
/// an already cleared response are no-ops.
///
/// - Thread safety: the thread owning the response. Never fails.
///
/// # Safety
///
/// `response` NULL, or filled by `_execute` (or cleared).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_response_clear(response: *mut stockade_response) {
    crate::boundary::run_value((), || {
        // SAFETY: function contract.
        if let Some(r) = unsafe { response.as_mut() } {
            if !r.data.is_null() {
                let slice =
                    core::ptr::slice_from_raw_parts_mut(r.data.cast::<u8>().cast_mut(), r.len);
                // SAFETY: made by `Box::into_raw` of a `Box<[u8]>` of `len`
                // bytes in `_execute`, not freed before (contract).
                drop(unsafe { Box::from_raw(slice) });
            }
            r.data = core::ptr::null();
            r.len = 0;
        }
    });
}

/// The C patterns by name, for `stockade_request_response_get`: the core
/// registers each named pattern (it holds it until disposed, and refuses a
/// second live one of the same name), but only the unprotected Rust type
/// has a lookup. Entries are weak; a disposed pattern is not found.
static NAMED: Mutex<BTreeMap<String, Weak<Rr>>> = Mutex::new(BTreeMap::new());

fn named() -> std::sync::MutexGuard<'static, BTreeMap<String, Weak<Rr>>> {
    NAMED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `rr` as `name` in the core's registry, then in [`NAMED`].
///
/// No lock of ours is held while a pattern may be dropped (its handler's
/// `release` is C code, which may call back in). A name's entry is its
/// live registration: the core lets at most one pattern that is not
/// disposed hold a name, so if the entry found is still live and not
/// disposed, `rr` (registered earlier) has been disposed since, and the
/// entry stays.
fn register(name: &str, rr: Rr) -> Result<Arc<Rr>, stockade_core::blocking::Error> {
    let rr = rr.register()?;
    // Let go after the lock: it may be the last reference to a disposed
    // pattern.
    let previous;
    {
        let mut map = named();
        previous = map.get(name).and_then(Weak::upgrade);
        let current = previous
            .as_ref()
            .is_some_and(|p| !p.is_disposed() && !Arc::ptr_eq(p, &rr));
        if !current {
            map.retain(|_, p| p.strong_count() > 0);
            map.insert(String::from(name), Arc::downgrade(&rr));
        }
    }
    drop(previous);
    Ok(rr)
}

/// The live pattern registered as `name`.
fn lookup(name: &str) -> Option<Arc<Rr>> {
    // The lock is released before a pattern that is found disposed (and
    // may then be dropped here) is let go.
    let found = named().get(name).and_then(Weak::upgrade);
    found.filter(|rr| !rr.is_disposed())
}

const GET: fn(&str) -> Option<Arc<Rr>> = lookup;

/// `*out` = a new handle to the registered request-response pattern called `name`.
///
/// - Statuses: `OK`; `NOT_FOUND`; `NULL_ARGUMENT`; `INVALID_ARGUMENT`
///   (`name` not UTF-8).
/// - Ownership: free `*out` with `stockade_request_response_free`.
/// - Thread safety: any thread. Blocks: no (a short lock on the registry).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_get(
    name: *const c_char,
    out: *mut *mut stockade_request_response,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::get(name, out, GET) }
}

/// Frees a handle (the request-response pattern lives on while other handles, policies,
/// pipelines or the registry hold it). NULL is a no-op.
///
/// - Thread safety: any thread, once per handle, after every call on this
///   handle has returned. Blocks: no.
///
/// # Safety
///
/// `handle` from `stockade_request_response_new`/`_get`, not freed before.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_free(handle: *mut stockade_request_response) {
    // SAFETY: function contract.
    unsafe { super::free(handle) }
}

/// Disposes of the request-response pattern: it refuses every call from now on (`DISPOSED`)
/// and its name is free again. Handles stay valid until freed.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_dispose(
    handle: *const stockade_request_response,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::dispose(handle) }
}

/// `*out` = the request-response pattern's counters now.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `handle` live or NULL; `out` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_metrics(
    handle: *const stockade_request_response,
    out: *mut stockade_metrics,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::metrics(handle, out) }
}

/// Calls `listener(event, user_data)` for every event of the request-response pattern:
/// `REJECTED`, `TIMED_OUT`, `DISPOSED`. `*out_id` = the subscription's id.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`handle`, `listener`, `out_id`).
/// - Ownership: `user_data` must stay valid until `stockade_request_response_unsubscribe`
///   returned (or the request-response pattern is gone).
/// - Thread safety: the listener runs on the thread where the event
///   happened, possibly several at once; it must not unwind. Blocks: no.
///
/// # Safety
///
/// `handle` live; `listener` callable with `user_data` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_subscribe(
    handle: *const stockade_request_response,
    listener: stockade_listener_fn,
    user_data: *mut c_void,
    out_id: *mut u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::subscribe(handle, listener, user_data, out_id) }
}

/// Removes the listener `id` (from `stockade_request_response_subscribe`).
///
/// - Statuses: `OK`; `NOT_FOUND` (unknown id, another pattern's, or
///   already removed); `NULL_ARGUMENT`. Thread safety: any thread.
///
/// # Safety
///
/// `handle` live or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_request_response_unsubscribe(
    handle: *const stockade_request_response,
    id: u64,
) -> stockade_status {
    // SAFETY: function contract.
    unsafe { super::unsubscribe(handle, id) }
}
