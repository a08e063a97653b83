//! Objects a fleet shares through a Redis server: [`stockade_redis_options`],
//! the `_new_redis` constructors' errors and [`stockade_redis_last_error`].
//! The constructors themselves live with their handles
//! (`stockade_limiter_handle_new_redis`, ...).

use core::cell::RefCell;
use core::ffi::{CStr, c_char};
use core::fmt;
use std::ffi::CString;
use std::string::ToString;

use crate::boundary::arg;
use crate::status::stockade_status;

/// What a Redis-backed object decides while its server cannot answer (the
/// `fallback` field of `stockade_redis_options`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_redis_fallback {
    /// Decide with a local machine (the default): a limiter admits at
    /// `requests_per_period / expected_instances` (at least 1) per period,
    /// a bulkhead at `max_concurrent / expected_instances` (at least 1), a
    /// breaker counts and trips on this host alone.
    Local = 0,
    /// Admit every call (nothing is refused because of Redis; the
    /// dependency is unprotected meanwhile).
    Open = 1,
    /// Refuse every call with `STOCKADE_STATUS_REDIS_UNAVAILABLE`.
    Closed = 2,
}

/// Whose clock the fleet's decisions read (the `time` field of
/// `stockade_redis_options`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_redis_time {
    /// Redis's `TIME`, read inside each script (the default): one clock for
    /// the whole fleet.
    Server = 0,
    /// The calling host's wall clock, for servers that forbid `TIME` in
    /// scripts. Every host must keep its clock in step (NTP): a host whose
    /// clock runs ahead by `d` consumes the next `d` of the limit early.
    Client = 1,
}

/// Why a Redis command got no answer (the `store_failure` field of a
/// `STOCKADE_EVENT_KIND_STORE_UNAVAILABLE` event; 0 in other events).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_store_failure {
    /// Not a `STORE_UNAVAILABLE` event.
    None = 0,
    /// No reply within `command_timeout_ms` (or no connection within
    /// `connect_timeout_ms`).
    Timeout = 1,
    /// The connection was refused, reset or closed.
    Connection = 2,
    /// The server answered with an error (out of memory, busy, a read-only
    /// replica, a script error).
    Server = 3,
    /// The reply did not have the expected shape.
    Protocol = 4,
    /// Every connection this process may open was busy for
    /// `command_timeout_ms`.
    PoolExhausted = 5,
    /// The connection's guard breaker is open after repeated failures:
    /// nothing was sent.
    GuardOpen = 6,
    /// A cause this version of the header does not know.
    Other = 255,
}

/// Which Redis server a fleet-wide object lives in, and what it decides
/// when the server cannot answer: the `options` argument of
/// `stockade_limiter_handle_new_redis`, `stockade_bulkhead_handle_new_redis`
/// and `stockade_breaker_handle_new_redis`. Start from
/// `stockade_redis_options_default()` (or `{0}`: a zero field means its
/// default) and set `url`.
///
/// **What is shared.** Every process, on any host, that opens the same
/// kind and `name` with the same `url` and `prefix` uses one object kept in
/// Redis: the rate limiter's schedule (one script call per decision), the
/// bulkhead's permits (leases that expire `lease_ttl_ms` after a holder
/// stops renewing them, so the permits of a host that dies come back), the
/// circuit breaker's state and the failures counted towards tripping it.
/// Other bindings open the same objects: a C program and Python processes
/// (`RateLimiter(..., redis="redis://...")`) share one limit when they open
/// the same name with equal configs (a different config is
/// `STOCKADE_STATUS_REDIS_CONFIG_MISMATCH` on the first call that meets the
/// stored one, unless `adopt_stored_config`). Events and metrics are this
/// process's own.
///
/// **Redis is never a hard dependency.** Making a handle does not contact
/// the server. Every command waits at most `connect_timeout_ms` for a
/// connection and `command_timeout_ms` for a reply; after `guard_failures`
/// failed commands in a row nothing is sent for `guard_reset_timeout_ms`.
/// Meanwhile `fallback` decides; the handle's listeners get
/// `STOCKADE_EVENT_KIND_STORE_UNAVAILABLE` when the server stops answering
/// and `STOCKADE_EVENT_KIND_STORE_RECOVERED` when it answers again, and
/// `stockade_metrics.fallback_decisions` counts the decisions taken under
/// the fallback.
///
/// **Keys.** `<prefix>:v1:{<kind>:<name>}` (and `<that>:<part>`), kind
/// `limiter`, `bulkhead` or `breaker`; the braces keep one object's keys in
/// one Redis Cluster slot. Keys expire when idle. Point `url` at the
/// primary (a replica refuses script writes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_redis_options {
    /// The server, NUL-terminated: `redis://[:password@]host[:port][/db]`
    /// or `redis+unix:///path` (`rediss://` is not supported by this
    /// build). Required. Copied during the call; a password in it is never
    /// shown in messages.
    pub url: *const c_char,
    /// The first part of every key, NUL-terminated; NULL for the default,
    /// `"stockade"`. Not empty, no braces, whitespace or control
    /// characters.
    pub prefix: *const c_char,
    /// The longest wait for a new connection, ms (1 to 60000); 0 = the
    /// default, 250.
    pub connect_timeout_ms: u64,
    /// The longest wait for one command's reply, and for a free
    /// connection, ms (1 to 60000); 0 = the default, 100.
    pub command_timeout_ms: u64,
    /// How long the connection's guard breaker stays open before one
    /// command probes the server again, ms (1 to 3600000); 0 = the default,
    /// 1000.
    pub guard_reset_timeout_ms: u64,
    /// How long a lease lives, ms (1 to 3600000): a limiter's unused leased
    /// permits are dropped then; a bulkhead permit is returned by Redis
    /// this long after its holder stopped renewing it. 0 = the pattern's
    /// default (limiter 100, bulkhead 30000).
    pub lease_ttl_ms: u64,
    /// Breaker: how often a host re-reads the fleet's state besides
    /// pub/sub messages, ms (1 to 3600000); 0 = the default, 1000.
    pub sync_interval_ms: u64,
    /// Breaker: the window in which failures are counted fleet-wide, ms
    /// (1 to 86400000); 0 = the default, 60000.
    pub failure_window_ms: u64,
    /// Connections this process keeps to the server (1 to 1024); 0 = the
    /// default, 16.
    pub max_connections: u32,
    /// Processes sharing the object, to divide the limit for the local
    /// fallback; 0 = the default, 1.
    pub expected_instances: u32,
    /// Consecutive failed commands that open the connection's guard
    /// breaker (1 to 1000); 0 = the default, 3.
    pub guard_failures: u32,
    /// Limiter: permits this process takes from Redis in one script call
    /// and hands out locally (at most 1000000); 0 = off (the default).
    /// Leasing weakens a strict limiter's bound to `N` in any window of
    /// length `period - lease_ttl`.
    pub lease_permits: u32,
    /// Breaker: distinct hosts that must have seen failures in the window
    /// to open it (1 to 1000); 0 = the default, 1.
    pub quorum: u32,
    /// What to decide while Redis cannot answer: a
    /// `stockade_redis_fallback` number (default `LOCAL`, 0).
    pub fallback: u8,
    /// Whose clock decides: a `stockade_redis_time` number (default
    /// `SERVER`, 0).
    pub time: u8,
    /// When the config stored in Redis differs from the one given, use the
    /// stored one instead of failing with
    /// `STOCKADE_STATUS_REDIS_CONFIG_MISMATCH`.
    pub adopt_stored_config: bool,
}

/// The defaults with no `url` (set it): prefix `"stockade"`, connect
/// timeout 250 ms, command timeout 100 ms, 16 connections, the server's
/// clock, the local fallback, 1 expected instance, guard breaker after 3
/// failures for 1000 ms, no leasing, the pattern's lease time, breaker
/// sync every 1000 ms over a 60000 ms window with a quorum of 1, the
/// stored config must equal the one given.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_redis_options_default() -> stockade_redis_options {
    stockade_redis_options {
        url: core::ptr::null(),
        prefix: core::ptr::null(),
        connect_timeout_ms: 250,
        command_timeout_ms: 100,
        guard_reset_timeout_ms: 1000,
        lease_ttl_ms: 0,
        sync_interval_ms: 1000,
        failure_window_ms: 60_000,
        max_connections: 16,
        expected_instances: 1,
        guard_failures: 3,
        lease_permits: 0,
        quorum: 1,
        fallback: stockade_redis_fallback::Local as u8,
        time: stockade_redis_time::Server as u8,
        adopt_stored_config: false,
    }
}

std::thread_local! {
    /// The message of this thread's last failed Redis call ("" after a
    /// successful constructor).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Sets this thread's last Redis error ("" for none).
pub(crate) fn set_last_error(message: impl fmt::Display) {
    super::set_last_error_in(&LAST_ERROR, message);
}

/// The full message of the calling thread's last failed Redis call,
/// NUL-terminated: of a `_new_redis` constructor (`""` when the last one
/// succeeded), or of a later call on a Redis-backed handle that returned a
/// `STOCKADE_STATUS_REDIS_` status (`"Redis unavailable (no reply in time);
/// refused (fallback: closed)"`, a config mismatch with both configs and
/// the key). A password in a URL is shown as `***`.
///
/// - Ownership: the string belongs to the library; it stays valid until
///   the calling thread's next `_new_redis` call or failing Redis call, or
///   until the thread exits. Do not free it.
/// - Thread safety: per thread (each thread sees its own calls). Blocks:
///   no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_redis_last_error() -> *const c_char {
    super::last_error_in(&LAST_ERROR)
}

/// A name argument of a Redis object: required, UTF-8. Sets the last
/// error on failure.
///
/// # Safety
///
/// A non-NULL `name` must be NUL-terminated.
pub(crate) unsafe fn redis_name<'a>(name: *const c_char) -> Result<&'a str, stockade_status> {
    // SAFETY: forwarded contract.
    match unsafe { super::name_arg(name) } {
        Ok(Some(name)) => Ok(name),
        Ok(None) => {
            set_last_error("a Redis object needs a name (name is NULL)");
            Err(stockade_status::NullArgument)
        }
        Err(status) => {
            set_last_error("the name of a Redis object must be UTF-8");
            Err(status)
        }
    }
}

/// The options argument, checked for NULL (setting the last error).
///
/// # Safety
///
/// A non-NULL `options` must point to a valid `stockade_redis_options`.
pub(crate) unsafe fn options_arg<'a>(
    options: *const stockade_redis_options,
) -> Result<&'a stockade_redis_options, stockade_status> {
    // SAFETY: forwarded contract.
    unsafe { arg(options) }.inspect_err(|_| set_last_error("options is NULL"))
}

/// A string field: NULL is `None`; not UTF-8 is `INVALID_ARGUMENT`.
///
/// # Safety
///
/// A non-NULL `p` must be NUL-terminated.
unsafe fn text<'a>(p: *const c_char, field: &str) -> Result<Option<&'a str>, stockade_status> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: non-NULL and NUL-terminated (caller's contract).
    let s = unsafe { CStr::from_ptr(p) };
    match s.to_str() {
        Ok(s) => Ok(Some(s)),
        Err(_) => {
            set_last_error(format_args!("options.{field} is not UTF-8"));
            Err(stockade_status::InvalidArgument)
        }
    }
}

/// Without the `redis` feature: the status of every `_new_redis` function
/// once its arguments are checked.
#[cfg(not(feature = "redis"))]
pub(crate) fn unsupported() -> stockade_status {
    set_last_error("Redis is not supported here: this library was built without the redis feature");
    stockade_status::RedisUnsupported
}

/// The options' strings, checked (so a build without the feature reports
/// a bad argument the same way).
///
/// # Safety
///
/// `o.url` and `o.prefix` NUL-terminated or NULL.
pub(crate) unsafe fn check_strings(
    o: &stockade_redis_options,
) -> Result<(&str, Option<&str>), stockade_status> {
    // SAFETY: forwarded contract.
    let url = unsafe { text(o.url, "url") }?;
    let Some(url) = url else {
        set_last_error("options.url is NULL (a Redis object needs its server's URL)");
        return Err(stockade_status::NullArgument);
    };
    // SAFETY: forwarded contract.
    let prefix = unsafe { text(o.prefix, "prefix") }?;
    Ok((url, prefix))
}

#[cfg(feature = "redis")]
pub(crate) use enabled::*;

#[cfg(feature = "redis")]
mod enabled {
    use core::time::Duration;

    use stockade_core::blocking::Error;
    use stockade_core::redis::{Fallback, RedisError, RedisOptions, StoreFailure, TimeSource};

    use super::*;
    use crate::config_error::stockade_config_error;

    /// The core's options from the C ones, validated (setting the last
    /// error when they are invalid).
    ///
    /// # Safety
    ///
    /// `o.url` and `o.prefix` NUL-terminated or NULL.
    pub(crate) unsafe fn to_core(
        o: &stockade_redis_options,
    ) -> Result<RedisOptions, stockade_status> {
        // SAFETY: forwarded contract.
        let (url, prefix) = unsafe { check_strings(o) }?;
        let fallback = match o.fallback {
            0 => Fallback::Local,
            1 => Fallback::FailOpen,
            2 => Fallback::FailClosed,
            other => {
                set_last_error(format_args!(
                    "options.fallback = {other}: must be 0 (local), 1 (open) or 2 (closed)"
                ));
                return Err(stockade_status::InvalidArgument);
            }
        };
        let time = match o.time {
            0 => TimeSource::Server,
            1 => TimeSource::Client,
            other => {
                set_last_error(format_args!(
                    "options.time = {other}: must be 0 (server) or 1 (client)"
                ));
                return Err(stockade_status::InvalidArgument);
            }
        };
        let ms = Duration::from_millis;
        let mut r = RedisOptions::new(url)
            .fallback(fallback)
            .time(time)
            .adopt_stored_config(o.adopt_stored_config)
            .lease_permits(o.lease_permits);
        if let Some(prefix) = prefix {
            r = r.prefix(prefix);
        }
        if o.connect_timeout_ms != 0 {
            r = r.connect_timeout(ms(o.connect_timeout_ms));
        }
        if o.command_timeout_ms != 0 {
            r = r.command_timeout(ms(o.command_timeout_ms));
        }
        if o.guard_reset_timeout_ms != 0 {
            r = r.guard_reset_timeout(ms(o.guard_reset_timeout_ms));
        }
        if o.lease_ttl_ms != 0 {
            r = r.lease_ttl(ms(o.lease_ttl_ms));
        }
        if o.sync_interval_ms != 0 {
            r = r.sync_interval(ms(o.sync_interval_ms));
        }
        if o.failure_window_ms != 0 {
            r = r.failure_window(ms(o.failure_window_ms));
        }
        if o.max_connections != 0 {
            r = r.max_connections(o.max_connections);
        }
        if o.expected_instances != 0 {
            r = r.expected_instances(o.expected_instances);
        }
        if o.guard_failures != 0 {
            r = r.guard_failures(o.guard_failures);
        }
        if o.quorum != 0 {
            r = r.quorum(o.quorum);
        }
        r.validate().map_err(|e| {
            set_last_error(c_names(&e));
            status_of(&e)
        })?;
        Ok(r)
    }

    /// The message of an error, with the Rust builder's option names given
    /// their C field names (`connect_timeout` → `connect_timeout_ms`).
    fn c_names(e: &RedisError) -> std::string::String {
        match e {
            RedisError::InvalidOption { option, .. } => {
                let field = match *option {
                    "connect_timeout"
                    | "command_timeout"
                    | "guard_reset_timeout"
                    | "lease_ttl"
                    | "sync_interval"
                    | "failure_window" => {
                        std::format!("{option}_ms")
                    }
                    other => other.to_string(),
                };
                std::format!("options.{field}: {e}")
            }
            other => other.to_string(),
        }
    }

    /// The status of a Redis error.
    pub(crate) fn status_of(e: &RedisError) -> stockade_status {
        match e {
            RedisError::InvalidConfig(_) => stockade_status::InvalidConfig,
            RedisError::InvalidOption { .. } => stockade_status::RedisInvalidOption,
            RedisError::InvalidUrl { .. } => stockade_status::RedisInvalidUrl,
            RedisError::InvalidName { .. } => stockade_status::InvalidArgument,
            RedisError::ConfigMismatch { .. } => stockade_status::RedisConfigMismatch,
            RedisError::Unavailable { .. } => stockade_status::RedisUnavailable,
            _ => stockade_status::InternalError,
        }
    }

    /// The status of a Redis error met by a call on a handle, setting the
    /// thread's last Redis error.
    pub(crate) fn call_status(e: &RedisError) -> stockade_status {
        set_last_error(e);
        status_of(e)
    }

    /// The status of a `redis` constructor's error, filling `*error` for an
    /// invalid config and setting the thread's last error.
    ///
    /// # Safety
    ///
    /// `error` valid for a write or NULL.
    pub(crate) unsafe fn open_status(
        e: Error,
        error: *mut stockade_config_error,
    ) -> stockade_status {
        match e {
            Error::InvalidConfig(c) | Error::Redis(RedisError::InvalidConfig(c)) => {
                set_last_error(crate::config_error::CMessage(&c));
                // SAFETY: forwarded contract.
                unsafe { crate::config_error::report(error, &c) }
            }
            Error::Redis(e) => {
                set_last_error(c_names(&e));
                status_of(&e)
            }
            e => {
                set_last_error(&e);
                super::super::error_status(&e)
            }
        }
    }

    /// The C number of a store failure.
    pub(crate) fn failure_of(cause: StoreFailure) -> stockade_store_failure {
        match cause {
            StoreFailure::Timeout => stockade_store_failure::Timeout,
            StoreFailure::Connection => stockade_store_failure::Connection,
            StoreFailure::Server => stockade_store_failure::Server,
            StoreFailure::Protocol => stockade_store_failure::Protocol,
            StoreFailure::PoolExhausted => stockade_store_failure::PoolExhausted,
            StoreFailure::GuardOpen => stockade_store_failure::GuardOpen,
            _ => stockade_store_failure::Other,
        }
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use super::*;
    use core::time::Duration;
    use stockade_core::redis::{Fallback, RedisError, RedisOptions, StoreFailure, TimeSource};

    fn last() -> std::string::String {
        // SAFETY: the pointer is valid until this thread's next Redis call.
        unsafe { CStr::from_ptr(stockade_redis_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    const URL: &CStr = c"redis://127.0.0.1:6379/0";

    #[test]
    fn the_defaults_and_zero_are_the_core_defaults() {
        let core = RedisOptions::new(URL.to_str().unwrap());
        let d = stockade_redis_options {
            url: URL.as_ptr(),
            ..stockade_redis_options_default()
        };
        // SAFETY: NUL-terminated url, NULL prefix.
        assert_eq!(unsafe { to_core(&d) }.unwrap(), core);
        // SAFETY: all-zero is a valid value (NULL pointers).
        let mut zero: stockade_redis_options = unsafe { core::mem::zeroed() };
        zero.url = URL.as_ptr();
        // SAFETY: as above.
        assert_eq!(unsafe { to_core(&zero) }.unwrap(), core);
    }

    #[test]
    fn every_field_reaches_the_core() {
        let o = stockade_redis_options {
            url: URL.as_ptr(),
            prefix: c"app".as_ptr(),
            connect_timeout_ms: 11,
            command_timeout_ms: 12,
            guard_reset_timeout_ms: 13,
            lease_ttl_ms: 14,
            sync_interval_ms: 15,
            failure_window_ms: 16,
            max_connections: 17,
            expected_instances: 18,
            guard_failures: 19,
            lease_permits: 20,
            quorum: 21,
            fallback: stockade_redis_fallback::Closed as u8,
            time: stockade_redis_time::Client as u8,
            adopt_stored_config: true,
        };
        let ms = Duration::from_millis;
        let want = RedisOptions::new(URL.to_str().unwrap())
            .prefix("app")
            .connect_timeout(ms(11))
            .command_timeout(ms(12))
            .guard_reset_timeout(ms(13))
            .lease_ttl(ms(14))
            .sync_interval(ms(15))
            .failure_window(ms(16))
            .max_connections(17)
            .expected_instances(18)
            .guard_failures(19)
            .lease_permits(20)
            .quorum(21)
            .fallback(Fallback::FailClosed)
            .time(TimeSource::Client)
            .adopt_stored_config(true);
        // SAFETY: NUL-terminated strings.
        assert_eq!(unsafe { to_core(&o) }.unwrap(), want);
        let open = stockade_redis_options {
            fallback: stockade_redis_fallback::Open as u8,
            ..o
        };
        // SAFETY: as above.
        let got = unsafe { to_core(&open) }.unwrap();
        assert_eq!(got.fallback_value(), Fallback::FailOpen);
    }

    #[test]
    fn bad_options_are_typed_and_named() {
        let base = stockade_redis_options {
            url: URL.as_ptr(),
            ..stockade_redis_options_default()
        };
        let cases: [(stockade_redis_options, stockade_status, &str); 7] = [
            (
                stockade_redis_options {
                    url: core::ptr::null(),
                    ..base
                },
                stockade_status::NullArgument,
                "options.url is NULL",
            ),
            (
                stockade_redis_options {
                    url: c"http://x".as_ptr(),
                    ..base
                },
                stockade_status::RedisInvalidUrl,
                "http://x",
            ),
            (
                stockade_redis_options {
                    fallback: 3,
                    ..base
                },
                stockade_status::InvalidArgument,
                "options.fallback = 3",
            ),
            (
                stockade_redis_options { time: 2, ..base },
                stockade_status::InvalidArgument,
                "options.time = 2",
            ),
            (
                stockade_redis_options {
                    max_connections: 5000,
                    ..base
                },
                stockade_status::RedisInvalidOption,
                "options.max_connections",
            ),
            (
                stockade_redis_options {
                    command_timeout_ms: 61_000,
                    ..base
                },
                stockade_status::RedisInvalidOption,
                "options.command_timeout_ms",
            ),
            (
                stockade_redis_options {
                    prefix: c"a b".as_ptr(),
                    ..base
                },
                stockade_status::RedisInvalidOption,
                "options.prefix",
            ),
        ];
        for (o, status, text) in cases {
            // SAFETY: NUL-terminated strings or NULL.
            assert_eq!(unsafe { to_core(&o) }.unwrap_err(), status);
            assert!(last().contains(text), "{} lacks {text}", last());
        }
    }

    #[test]
    fn every_error_has_its_status_and_message() {
        let cases = [
            (
                RedisError::Unavailable {
                    cause: StoreFailure::Timeout,
                    retry_after: None,
                },
                stockade_status::RedisUnavailable,
            ),
            (
                RedisError::ConfigMismatch {
                    key: "k".into(),
                    stored: "A".into(),
                    ours: "B".into(),
                },
                stockade_status::RedisConfigMismatch,
            ),
            (
                RedisError::InvalidUrl {
                    url: "u".into(),
                    reason: "r".into(),
                },
                stockade_status::RedisInvalidUrl,
            ),
            (
                RedisError::InvalidName {
                    name: "n".into(),
                    reason: "r",
                },
                stockade_status::InvalidArgument,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            assert_eq!(call_status(&e), want);
            assert_eq!(last(), text);
        }
        let failures = [
            (StoreFailure::Timeout, stockade_store_failure::Timeout),
            (StoreFailure::Connection, stockade_store_failure::Connection),
            (StoreFailure::Server, stockade_store_failure::Server),
            (StoreFailure::Protocol, stockade_store_failure::Protocol),
            (
                StoreFailure::PoolExhausted,
                stockade_store_failure::PoolExhausted,
            ),
            (StoreFailure::GuardOpen, stockade_store_failure::GuardOpen),
        ];
        for (cause, want) in failures {
            assert_eq!(failure_of(cause), want);
        }
    }
}

/// Built without the feature: every `_new_redis` function checks its
/// arguments, then says so.
#[cfg(all(test, not(feature = "redis")))]
mod unsupported_tests {
    use super::*;

    #[test]
    fn every_redis_constructor_returns_unsupported() {
        let o = stockade_redis_options {
            url: c"redis://127.0.0.1:6379/0".as_ptr(),
            ..stockade_redis_options_default()
        };
        let l = crate::limiter::stockade_limiter_config_default();
        let b = crate::breaker::stockade_breaker_config_default();
        let h = crate::bulkhead::stockade_bulkhead_config_default();
        let (mut lo, mut bo, mut ho) = (
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
        );
        let name = c"x".as_ptr();
        let null = core::ptr::null_mut();
        // SAFETY: valid arguments throughout.
        unsafe {
            assert_eq!(
                crate::blocking::limiter::stockade_limiter_handle_new_redis(
                    name, &l, &o, null, &mut lo
                ),
                stockade_status::RedisUnsupported
            );
            assert_eq!(
                crate::blocking::breaker::stockade_breaker_handle_new_redis(
                    name, &b, &o, null, &mut bo
                ),
                stockade_status::RedisUnsupported
            );
            assert_eq!(
                crate::blocking::bulkhead::stockade_bulkhead_handle_new_redis(
                    name, &h, &o, null, &mut ho
                ),
                stockade_status::RedisUnsupported
            );
            let message = CStr::from_ptr(stockade_redis_last_error()).to_string_lossy();
            assert!(message.contains("redis feature"), "{message}");
            // Arguments are still checked first.
            let no_url = stockade_redis_options {
                url: core::ptr::null(),
                ..o
            };
            assert_eq!(
                crate::blocking::limiter::stockade_limiter_handle_new_redis(
                    name, &l, &no_url, null, &mut lo
                ),
                stockade_status::NullArgument
            );
        }
        assert!(lo.is_null() && bo.is_null() && ho.is_null());
    }
}
