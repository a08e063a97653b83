//! Objects shared between processes: [`stockade_shared_options`], the
//! `_new_shared` constructors' errors, [`stockade_shared_unlink`] and
//! [`stockade_shared_last_error`]. The constructors themselves live with
//! their handles (`stockade_limiter_handle_new_shared`, ...).

use core::cell::RefCell;
use core::ffi::c_char;
use core::fmt;
use std::ffi::CString;

use crate::boundary::arg;
use crate::status::stockade_status;

/// Where and how a shared object is opened: the `options` argument of
/// `stockade_limiter_handle_new_shared`, `stockade_breaker_handle_new_shared`
/// and `stockade_bulkhead_handle_new_shared`. All zero (`{0}`) means the
/// defaults, as does `stockade_shared_options_default()`.
///
/// **What is shared.** Every process on the host that opens the same kind
/// and `name` (with the same `directory` and `group_access`) uses one
/// machine in a memory-mapped file: the rate limiter's schedule, the
/// circuit breaker's state and the failures it counts towards tripping,
/// the bulkhead's permits. Other bindings
/// open the same objects: a C program and Python workers
/// (`RateLimiter(..., shared=True)`) share one limit when they open the
/// same name in the same directory with equal configs (a different config
/// is reported as `STOCKADE_STATUS_SHARED_CONFIG_MISMATCH`, never merged).
/// Events and listeners are per process: each process hears what its own
/// calls did. In `stockade_metrics`, a breaker's `state` and a bulkhead's
/// `in_flight` and `queue_depth` are host-wide; the call counters
/// (`calls`, `successes`, `failures`, `rejections`, `timeouts`) count this
/// process's calls.
///
/// **The file.** `<directory>/stockade-<uid>-<kind>-<name>` (with
/// `group_access`: `stockade-g<gid>-...`), `<kind>` being `limiter`,
/// `breaker`, `bulkhead` or `budget`; bytes of the name outside
/// `[A-Za-z0-9._-]` are written as `%XX`. The first process creates it
/// with the config it gives (mode 0600, 0660 with `group_access`); later
/// processes must give the same config (else
/// `STOCKADE_STATUS_SHARED_CONFIG_MISMATCH`, unless `adopt_stored_config`).
/// It is opened without following a symbolic link, and only if it is a
/// regular file of the caller's user (group) with the size its header
/// states (else `STOCKADE_STATUS_SHARED_REFUSED`).
///
/// **Who removes it.** Nothing removes it by itself: it outlives the
/// processes, so a restarted worker finds the state its predecessors left
/// (an open breaker stays open). `stockade_shared_unlink` (or deleting the
/// file) removes the name; processes that have it open keep using the old
/// object, and the next open creates a fresh one. `/dev/shm` is cleared at
/// boot.
///
/// **Time.** Shared objects read `CLOCK_MONOTONIC`, the host's clock, so a
/// shared handle's event times (`stockade_event.at_ns`) are nanoseconds
/// since boot, not since the process's first use of a clock.
///
/// **fork.** A forked child keeps using the limiter and breaker its parent
/// opened (the mapping survives `fork`). A bulkhead's permits are owned per
/// process: the child takes its own owner slot on its first bulkhead call,
/// and permits its parent held stay the parent's (a permit acquired before
/// the fork and released in the child does nothing). When a process dies
/// holding bulkhead permits, they come back before any caller is refused
/// for lack of them. Threads do not survive `fork`: in a child, a breaker
/// that had listeners before the fork emits no `MONITOR` events (its
/// monitor thread stayed in the parent).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_shared_options {
    /// The directory of the file, NUL-terminated; NULL for the default,
    /// `/dev/shm` (memory, cleared at boot). It must exist. In a directory
    /// anyone can write, such as `/dev/shm`, another user can take a name
    /// first (the open is then refused, never misled): give one only your
    /// service's user can write (systemd's `RuntimeDirectory=`) when that
    /// matters. Copied during the call.
    pub directory: *const c_char,
    /// How long an open may wait for another process that is rebuilding a
    /// file left from an earlier boot, ms; 0 = the default, 1000.
    pub open_timeout_ms: u64,
    /// A bulkhead's owner slots: how many processes may have it open at
    /// once (1 to 4096; 0 = the default, 256). Part of a bulkhead's stored
    /// config; ignored by the limiter and breaker.
    pub max_processes: u32,
    /// Let the processes of the caller's group open the object too (mode
    /// 0660, the file name carries the group id, a file owned by any
    /// member of the group is accepted).
    pub group_access: bool,
    /// When the stored config differs from the one given, use the stored
    /// one instead of failing with `STOCKADE_STATUS_SHARED_CONFIG_MISMATCH`.
    pub adopt_stored_config: bool,
}

/// The kind of a shared object (`stockade_shared_unlink`'s `kind`, and
/// the `<kind>` in its file name).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_shared_kind {
    /// A circuit breaker (`stockade_breaker_handle_new_shared`).
    Breaker = 1,
    /// A rate limiter (`stockade_limiter_handle_new_shared`).
    Limiter = 2,
    /// A bulkhead (`stockade_bulkhead_handle_new_shared`).
    Bulkhead = 3,
    /// A retry budget (shared by other bindings: Rust, Python).
    Budget = 4,
}

/// The defaults: `/dev/shm`, no group access, the stored config must equal
/// the one given, 256 owner slots, 1000 ms open timeout.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_shared_options_default() -> stockade_shared_options {
    stockade_shared_options {
        directory: core::ptr::null(),
        open_timeout_ms: 1000,
        max_processes: 256,
        group_access: false,
        adopt_stored_config: false,
    }
}

std::thread_local! {
    /// The message of this thread's last failed shared call ("" after a
    /// successful one).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Sets this thread's last shared error ("" for none).
pub(crate) fn set_last_error(message: impl fmt::Display) {
    super::set_last_error_in(&LAST_ERROR, message);
}

/// The full message of the calling thread's last `_new_shared` or
/// `stockade_shared_unlink` call, NUL-terminated, if it failed (or of a
/// later call on a shared bulkhead that returned `SHARED_NO_OWNER_SLOT` or
/// `SHARED_IO`: a forked child that could not take an owner slot): it names
/// the file and what was wrong, e.g. for
/// `STOCKADE_STATUS_SHARED_CONFIG_MISMATCH` both configs (`"/dev/shm/...
/// holds another config: stored RateLimiterConfig { ... }, given
/// RateLimiterConfig { ... } (use the same config, or adopt the stored
/// one)"`); `""` when that call succeeded or none was made. Configs are
/// shown in Rust's terms (durations as `1s`, `250ms`).
///
/// - Ownership: the string belongs to the library; it stays valid until
///   the calling thread's next `_new_shared`, `stockade_shared_unlink` or
///   failing shared bulkhead call, or until the thread exits. Do not free
///   it.
/// - Thread safety: per thread (each thread sees its own calls). Blocks:
///   no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_shared_last_error() -> *const c_char {
    super::last_error_in(&LAST_ERROR)
}

/// A name argument of a shared object: required, UTF-8. Sets the last
/// error on failure.
///
/// # Safety
///
/// A non-NULL `name` must be NUL-terminated.
pub(crate) unsafe fn shared_name<'a>(name: *const c_char) -> Result<&'a str, stockade_status> {
    // SAFETY: forwarded contract.
    match unsafe { super::name_arg(name) } {
        Ok(Some(name)) => Ok(name),
        Ok(None) => {
            set_last_error("a shared object needs a name (name is NULL)");
            Err(stockade_status::NullArgument)
        }
        Err(status) => {
            set_last_error("the name of a shared object must be UTF-8");
            Err(status)
        }
    }
}

/// The options argument, checked for NULL (setting the last error).
///
/// # Safety
///
/// A non-NULL `options` must point to a valid `stockade_shared_options`.
pub(crate) unsafe fn options_arg<'a>(
    options: *const stockade_shared_options,
) -> Result<&'a stockade_shared_options, stockade_status> {
    // SAFETY: forwarded contract.
    unsafe { arg(options) }.inspect_err(|_| set_last_error("options is NULL"))
}

/// Without the `shared-memory` feature (or off Linux): the status of
/// every shared function once its arguments are checked.
#[cfg(not(all(feature = "shared-memory", target_os = "linux")))]
pub(crate) fn unsupported() -> stockade_status {
    if cfg!(feature = "shared-memory") {
        set_last_error(
            "shared memory is not supported here: shared memory regions are implemented \
             for Linux only",
        );
    } else {
        set_last_error(
            "shared memory is not supported here: this library was built without the \
             shared-memory feature",
        );
    }
    stockade_status::SharedUnsupported
}

#[cfg(feature = "shared-memory")]
pub(crate) use enabled::*;

#[cfg(feature = "shared-memory")]
mod enabled {
    use core::time::Duration;
    use std::path::PathBuf;

    use stockade_core::blocking::Error;
    use stockade_core::shared::{SharedError, SharedOptions};

    use super::*;
    use crate::config_error::stockade_config_error;

    /// The core's options from the C ones (setting the last error when
    /// they are invalid).
    ///
    /// # Safety
    ///
    /// A non-NULL `o.directory` must be NUL-terminated.
    pub(crate) unsafe fn to_core(
        o: &stockade_shared_options,
    ) -> Result<SharedOptions, stockade_status> {
        let mut options = SharedOptions::new()
            .group_access(o.group_access)
            .adopt_stored_config(o.adopt_stored_config);
        if o.max_processes != 0 {
            options = options.max_processes(o.max_processes);
        }
        if o.open_timeout_ms != 0 {
            options = options.open_timeout(Duration::from_millis(o.open_timeout_ms));
        }
        if !o.directory.is_null() {
            // SAFETY: non-NULL and NUL-terminated (caller's contract).
            let bytes = unsafe { core::ffi::CStr::from_ptr(o.directory) }.to_bytes();
            if bytes.is_empty() {
                set_last_error("options.directory is empty (pass NULL for the default)");
                return Err(stockade_status::InvalidArgument);
            }
            options = options.directory(path(bytes)?);
        }
        Ok(options)
    }

    #[cfg(unix)]
    fn path(bytes: &[u8]) -> Result<PathBuf, stockade_status> {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)))
    }

    #[cfg(not(unix))]
    fn path(bytes: &[u8]) -> Result<PathBuf, stockade_status> {
        match core::str::from_utf8(bytes) {
            Ok(s) => Ok(PathBuf::from(s)),
            Err(_) => {
                set_last_error("options.directory is not UTF-8");
                Err(stockade_status::InvalidArgument)
            }
        }
    }

    /// The status of a shared open's error, filling `*error` for an invalid
    /// config and setting the thread's last error.
    ///
    /// # Safety
    ///
    /// `error` valid for a write or NULL.
    pub(crate) unsafe fn shared_status(
        e: SharedError,
        error: *mut stockade_config_error,
    ) -> stockade_status {
        if let SharedError::InvalidConfig(c) = &e {
            set_last_error(crate::config_error::CMessage(c));
            // SAFETY: forwarded contract.
            return unsafe { crate::config_error::report(error, c) };
        }
        set_last_error(&e);
        status_of(&e)
    }

    /// The status of a shared object's error.
    pub(crate) fn status_of(e: &SharedError) -> stockade_status {
        match e {
            SharedError::Unsupported(_) => stockade_status::SharedUnsupported,
            SharedError::InvalidName { .. } | SharedError::InvalidOption { .. } => {
                stockade_status::InvalidArgument
            }
            SharedError::InvalidConfig(_) => stockade_status::InvalidConfig,
            SharedError::Io { .. } => stockade_status::SharedIo,
            SharedError::Refused { .. } => stockade_status::SharedRefused,
            SharedError::Incompatible { .. } | SharedError::OtherTimeNamespace { .. } => {
                stockade_status::SharedIncompatible
            }
            SharedError::ConfigMismatch { .. } => stockade_status::SharedConfigMismatch,
            SharedError::NoOwnerSlot { .. } => stockade_status::SharedNoOwnerSlot,
            SharedError::Busy { .. } => stockade_status::SharedBusy,
            _ => stockade_status::InternalError,
        }
    }

    /// The status of a blocking-layer constructor's error (`shared`).
    ///
    /// # Safety
    ///
    /// `error` valid for a write or NULL.
    pub(crate) unsafe fn open_status(
        e: Error,
        error: *mut stockade_config_error,
    ) -> stockade_status {
        match e {
            // SAFETY: forwarded contract.
            Error::Shared(e) => unsafe { shared_status(e, error) },
            // SAFETY: forwarded contract.
            Error::InvalidConfig(c) => unsafe {
                shared_status(SharedError::InvalidConfig(c), error)
            },
            e => {
                set_last_error(&e);
                super::super::error_status(&e)
            }
        }
    }
}

/// Removes the name of the shared object `name` of kind `kind` (a
/// `stockade_shared_kind` number) in the directory of `options`, without
/// opening it: processes that have it open keep using it, and the next
/// `_new_shared` of the name creates a fresh one with its caller's config.
/// Removing a name that does not exist is not an error.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`name`, `options`);
///   `INVALID_ARGUMENT` (unknown `kind`, a name that cannot be a file
///   name, `name` not UTF-8); `SHARED_IO` (the file exists but cannot be
///   removed); `SHARED_UNSUPPORTED` (not Linux, or built without the
///   feature). `stockade_shared_last_error()` gives
///   the full message of a failure.
/// - Thread safety: any thread. Blocks: no (one `unlink(2)`).
///
/// # Safety
///
/// `name` NUL-terminated or NULL; `options` valid or NULL, its
/// `directory` NUL-terminated or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_shared_unlink(
    kind: u32,
    name: *const c_char,
    options: *const stockade_shared_options,
) -> stockade_status {
    ffi_boundary!({
        set_last_error("");
        // SAFETY: function contract.
        let name = unsafe { shared_name(name) }?;
        // SAFETY: function contract.
        let options = unsafe { options_arg(options) }?;
        let kind = match kind {
            1 => stockade_shared_kind::Breaker,
            2 => stockade_shared_kind::Limiter,
            3 => stockade_shared_kind::Bulkhead,
            4 => stockade_shared_kind::Budget,
            other => {
                set_last_error(format_args!(
                    "unknown shared object kind {other} (1 breaker, 2 limiter, 3 bulkhead, 4 budget)"
                ));
                return Err(stockade_status::InvalidArgument);
            }
        };
        #[cfg(all(feature = "shared-memory", target_os = "linux"))]
        {
            use stockade_core::shared::unlink;
            // SAFETY: function contract.
            let options = unsafe { to_core(options) }?;
            match kind {
                stockade_shared_kind::Breaker => {
                    unlink::<stockade_core::breaker::CircuitBreaker>(name, &options)
                }
                stockade_shared_kind::Limiter => {
                    unlink::<stockade_core::limiter::RateLimiter>(name, &options)
                }
                stockade_shared_kind::Bulkhead => {
                    unlink::<stockade_core::bulkhead::Bulkhead>(name, &options)
                }
                stockade_shared_kind::Budget => {
                    unlink::<stockade_core::budget::RetryBudget>(name, &options)
                }
            }
            // SAFETY: NULL is a valid `error`.
            .map_err(|e| unsafe { shared_status(e, core::ptr::null_mut()) })
        }
        #[cfg(not(all(feature = "shared-memory", target_os = "linux")))]
        {
            let _ = (name, options, kind);
            Err(unsupported())
        }
    })
}

#[cfg(all(test, feature = "shared-memory"))]
mod tests {
    use super::*;
    use core::ffi::CStr;
    use core::time::Duration;
    use std::path::PathBuf;
    use stockade_core::shared::{Refusal, SharedError, SharedOptions};

    fn last() -> String {
        // SAFETY: the pointer is valid until this thread's next shared call.
        unsafe { CStr::from_ptr(stockade_shared_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn every_error_has_its_status() {
        let path = PathBuf::from("/dev/shm/x");
        let cases = [
            (
                SharedError::Refused {
                    path: path.clone(),
                    reason: Refusal::Symlink,
                },
                stockade_status::SharedRefused,
            ),
            (
                SharedError::ConfigMismatch {
                    path: path.clone(),
                    stored: "A".into(),
                    ours: "B".into(),
                },
                stockade_status::SharedConfigMismatch,
            ),
            (
                SharedError::Incompatible {
                    path: path.clone(),
                    field: "version",
                    stored: 1,
                    ours: 2,
                },
                stockade_status::SharedIncompatible,
            ),
            (
                SharedError::OtherTimeNamespace {
                    path: path.clone(),
                    stored: 1,
                    ours: 2,
                },
                stockade_status::SharedIncompatible,
            ),
            (
                SharedError::Io {
                    path: path.clone(),
                    action: "open",
                    source: std::io::Error::from_raw_os_error(13),
                },
                stockade_status::SharedIo,
            ),
            (
                SharedError::NoOwnerSlot {
                    path: path.clone(),
                    max_processes: 2,
                },
                stockade_status::SharedNoOwnerSlot,
            ),
            (SharedError::Busy { path }, stockade_status::SharedBusy),
            (
                SharedError::Unsupported("here"),
                stockade_status::SharedUnsupported,
            ),
        ];
        for (e, want) in cases {
            let text = e.to_string();
            // SAFETY: NULL is a valid `error`.
            assert_eq!(unsafe { shared_status(e, core::ptr::null_mut()) }, want);
            assert_eq!(last(), text);
        }
    }

    #[test]
    fn a_message_is_cut_at_a_nul_and_cleared_by_success() {
        set_last_error("before\0after");
        assert_eq!(last(), "before");
        set_last_error("");
        assert_eq!(last(), "");
    }

    /// C's default configs are the core's defaults, which Rust's and
    /// Python's constructors use for an option not given: a C program and
    /// Python workers that change the same options open the same object.
    #[test]
    fn c_default_configs_equal_the_other_bindings_defaults() {
        use stockade_core::breaker::BreakerConfig;
        use stockade_core::bulkhead::BulkheadConfig;
        use stockade_core::limiter::{Mode, RateLimiterConfig};
        let mut l = crate::limiter::stockade_limiter_config_default();
        assert_eq!(l.to_core().unwrap(), RateLimiterConfig::DEFAULT);
        l.mode = crate::limiter::stockade_limiter_mode::Strict as u8;
        assert_eq!(
            l.to_core().unwrap(),
            RateLimiterConfig::DEFAULT.with_mode(Mode::Strict)
        );
        let b = crate::breaker::stockade_breaker_config_default();
        assert_eq!(b.to_core().unwrap(), BreakerConfig::DEFAULT);
        let h = crate::bulkhead::stockade_bulkhead_config_default();
        assert_eq!(h.to_core().unwrap(), BulkheadConfig::DEFAULT);
    }

    #[test]
    fn zero_options_are_the_defaults() {
        // SAFETY: all-zero is a valid value (NULL directory).
        let zero: stockade_shared_options = unsafe { core::mem::zeroed() };
        // SAFETY: NULL directory.
        let o = unsafe { to_core(&zero) }.unwrap();
        assert_eq!(o, SharedOptions::new());
        // SAFETY: NULL directory.
        let d = unsafe { to_core(&stockade_shared_options_default()) }.unwrap();
        assert_eq!(d, SharedOptions::new());
        let set = stockade_shared_options {
            directory: c"/run/app".as_ptr(),
            open_timeout_ms: 5,
            max_processes: 8,
            group_access: true,
            adopt_stored_config: true,
        };
        // SAFETY: a NUL-terminated directory.
        let o = unsafe { to_core(&set) }.unwrap();
        assert_eq!(o.directory_path(), PathBuf::from("/run/app"));
        assert_eq!(o.open_timeout_value(), Duration::from_millis(5));
        assert_eq!(o.max_processes_value(), 8);
        assert!(o.group_access_value() && o.adopt_stored_config_value());
        let empty = stockade_shared_options {
            directory: c"".as_ptr(),
            ..set
        };
        // SAFETY: a NUL-terminated directory.
        let refused = unsafe { to_core(&empty) };
        assert_eq!(refused.unwrap_err(), stockade_status::InvalidArgument);
        assert!(last().contains("directory"));
    }
}

/// Built without the feature: every shared function checks its arguments,
/// then says so.
#[cfg(all(test, not(feature = "shared-memory")))]
mod unsupported_tests {
    use super::*;
    use core::ffi::CStr;

    #[test]
    fn every_shared_function_returns_unsupported() {
        let o = stockade_shared_options_default();
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
                crate::blocking::limiter::stockade_limiter_handle_new_shared(
                    name, &l, &o, null, &mut lo
                ),
                stockade_status::SharedUnsupported
            );
            assert_eq!(
                crate::blocking::breaker::stockade_breaker_handle_new_shared(
                    name, &b, &o, null, &mut bo
                ),
                stockade_status::SharedUnsupported
            );
            assert_eq!(
                crate::blocking::bulkhead::stockade_bulkhead_handle_new_shared(
                    name, &h, &o, null, &mut ho
                ),
                stockade_status::SharedUnsupported
            );
            assert_eq!(
                stockade_shared_unlink(2, name, &o),
                stockade_status::SharedUnsupported
            );
            // Arguments are still checked first.
            assert_eq!(
                stockade_shared_unlink(2, core::ptr::null(), &o),
                stockade_status::NullArgument
            );
            let message = CStr::from_ptr(stockade_shared_last_error()).to_string_lossy();
            assert!(message.contains("name"), "{message}");
        }
        assert!(lo.is_null() && bo.is_null() && ho.is_null());
    }

    #[test]
    fn the_message_names_the_feature() {
        let o = stockade_shared_options_default();
        // SAFETY: valid arguments.
        let status = unsafe { stockade_shared_unlink(1, c"x".as_ptr(), &o) };
        assert_eq!(status, stockade_status::SharedUnsupported);
        // SAFETY: valid until this thread's next shared call.
        let message = unsafe { CStr::from_ptr(stockade_shared_last_error()) }.to_string_lossy();
        assert!(message.contains("shared-memory feature"), "{message}");
    }
}
