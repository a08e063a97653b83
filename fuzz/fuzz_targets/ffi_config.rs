//! Config validation of every core-tier pattern through the C ABI: each
//! raw config struct filled from arbitrary bytes (every field, floats
//! included, any bit pattern) must give either a working object (`OK`) or
//! `INVALID_CONFIG` with a `stockade_config_error` that names a known
//! option and problem and carries a NUL-terminated name and message;
//! storage too small or misaligned gives its own status. Never a panic
//! (the boundary's `INTERNAL_ERROR`) or any other status.
#![no_main]

use core::ffi::{CStr, c_void};
use core::ptr;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use stockade_ffi::backoff::*;
use stockade_ffi::breaker::*;
use stockade_ffi::budget::*;
use stockade_ffi::bulkhead::*;
use stockade_ffi::clock::stockade_clock;
use stockade_ffi::config_error::{stockade_config_option_str, stockade_config_problem_str};
use stockade_ffi::deadline::*;
use stockade_ffi::limiter::*;
use stockade_ffi::stockade_config_error;
use stockade_ffi::stockade_status as S;

#[repr(C, align(8))]
struct Storage([u8; 264]);

unsafe extern "C" fn zero_clock(_: *mut c_void) -> u64 {
    0
}

/// A config error as the library leaves it: all zero, name and message
/// empty (every field is an integer, float or `c_char` array).
fn fresh_error() -> stockade_config_error {
    // SAFETY: all-zero is a valid `stockade_config_error`.
    unsafe { core::mem::zeroed() }
}

fn cstr_of(buf: &[core::ffi::c_char]) -> &str {
    // SAFETY: `c_char` and `u8` have the same size and alignment.
    let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), buf.len()) };
    let s = CStr::from_bytes_until_nul(bytes).expect("the field is NUL-terminated");
    s.to_str().expect("the field is UTF-8")
}

fn static_str(p: *const core::ffi::c_char) -> &'static str {
    assert!(!p.is_null());
    // SAFETY: the library returns static NUL-terminated strings.
    unsafe { CStr::from_ptr(p) }.to_str().expect("UTF-8")
}

/// Checks one `_init`'s result; `size`/`offset` are what it was given.
fn check(what: &str, st: S, e: &stockade_config_error, size: usize, need: usize, offset: usize) {
    if size < need {
        assert_eq!(st, S::StorageTooSmall, "{what}: {size} < {need} bytes");
        return;
    }
    if !offset.is_multiple_of(8) {
        assert_eq!(st, S::StorageMisaligned, "{what}: offset {offset}");
        return;
    }
    match st {
        S::Ok => {}
        S::InvalidConfig => {
            let option = static_str(stockade_config_option_str(e.option));
            assert_ne!(
                option, "unknown option",
                "{what}: option {} names nothing",
                e.option
            );
            let problem = static_str(stockade_config_problem_str(e.problem));
            assert_ne!(problem, "unknown problem", "{what}: problem {}", e.problem);
            let name = cstr_of(&e.option_name);
            assert_eq!(name, option, "{what}: option_name");
            let message = cstr_of(&e.message);
            assert!(!message.is_empty(), "{what}: empty message");
        }
        other => panic!("{what}: undocumented status {other:?}"),
    }
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut storage = Box::new(Storage([0; 264]));
    // Usually whole and aligned; sometimes short or off by a few bytes.
    let offset: usize = if u.ratio(1, 8)? {
        u.int_in_range(0..=7)?
    } else {
        0
    };
    let size: usize = if u.ratio(1, 8)? {
        u.int_in_range(0..=256)?
    } else {
        256
    };
    // SAFETY: `offset` <= 7 and `size` <= 256 stay inside the 264 bytes.
    let p: *mut c_void = unsafe { storage.0.as_mut_ptr().add(offset) }.cast();
    let mut e = fresh_error();
    let pick: u8 = u.int_in_range(0..=5)?;
    match pick {
        0 => {
            let cfg = stockade_limiter_config {
                period_ms: u.arbitrary()?,
                queue_timeout_ms: u.arbitrary()?,
                requests_per_period: u.arbitrary()?,
                burst: u.arbitrary()?,
                max_queue_size: u.arbitrary()?,
                mode: u.arbitrary()?,
            };
            let mut out: *mut stockade_limiter = ptr::null_mut();
            // SAFETY: `p` writable for `size` bytes; other pointers valid.
            let st = unsafe { stockade_limiter_init(p, size, &cfg, &mut e, &mut out) };
            check("limiter", st, &e, size, STOCKADE_LIMITER_SIZE, offset);
            if st == S::Ok {
                let mut avail = 0u32;
                let clock = stockade_clock {
                    now_ns: Some(zero_clock),
                    user_data: ptr::null_mut(),
                };
                // SAFETY: `out` from init.
                assert_eq!(
                    unsafe { stockade_limiter_available(out, &clock, &mut avail) },
                    S::Ok
                );
                assert!(avail >= 1, "a new limiter is full: at least one permit");
            }
        }
        1 => {
            let cfg = stockade_bulkhead_config {
                queue_timeout_ms: u.arbitrary()?,
                max_concurrent: u.arbitrary()?,
                max_queue: u.arbitrary()?,
            };
            let mut out: *mut stockade_bulkhead = ptr::null_mut();
            // SAFETY: as above.
            let st = unsafe { stockade_bulkhead_init(p, size, &cfg, &mut e, &mut out) };
            check("bulkhead", st, &e, size, STOCKADE_BULKHEAD_SIZE, offset);
            if st == S::Ok {
                let mut avail = 0u32;
                // SAFETY: `out` from init.
                let st = unsafe {
                    stockade_bulkhead_counts(out, ptr::null_mut(), ptr::null_mut(), &mut avail)
                };
                assert_eq!(st, S::Ok);
                assert_eq!(
                    avail, cfg.max_concurrent,
                    "a new bulkhead has every permit free"
                );
            }
        }
        2 => {
            let cfg = stockade_breaker_config {
                failure_threshold: u.arbitrary()?,
                half_open_max_probes: u.arbitrary()?,
                half_open_successes_to_close: u.arbitrary()?,
                failure_rate_threshold: u.arbitrary()?,
                failure_rate_window_size: u.arbitrary()?,
                failure_rate_minimum_calls: u.arbitrary()?,
                reset_timeout_ms: u.arbitrary()?,
                half_open_timeout_ms: u.arbitrary()?,
                monitor_interval_ms: u.arbitrary()?,
                slow_call_threshold_ms: u.arbitrary()?,
            };
            let mut out: *mut stockade_breaker = ptr::null_mut();
            // SAFETY: as above.
            let st = unsafe { stockade_breaker_init(p, size, &cfg, &mut e, &mut out) };
            check("breaker", st, &e, size, STOCKADE_BREAKER_SIZE, offset);
            if st == S::Ok {
                let mut state = stockade_breaker_state::Open;
                // SAFETY: `out` from init.
                assert_eq!(
                    unsafe { stockade_breaker_get_state(out, &mut state) },
                    S::Ok
                );
                assert_eq!(
                    state,
                    stockade_breaker_state::Closed,
                    "a new breaker is closed"
                );
            }
        }
        3 => {
            let cfg = stockade_retry_budget_config {
                ratio: f64::from_bits(u.arbitrary()?),
                min_retries_per_second: u.arbitrary()?,
                max_tokens: u.arbitrary()?,
            };
            let mut out: *mut stockade_retry_budget = ptr::null_mut();
            // SAFETY: as above.
            let st = unsafe { stockade_retry_budget_init(p, size, &cfg, &mut e, &mut out) };
            check(
                "retry budget",
                st,
                &e,
                size,
                STOCKADE_RETRY_BUDGET_SIZE,
                offset,
            );
        }
        4 => {
            let cfg = stockade_backoff_config {
                initial_delay_ms: u.arbitrary()?,
                max_delay_ms: u.arbitrary()?,
                max_elapsed_ms: u.arbitrary()?,
                backoff_factor: f64::from_bits(u.arbitrary()?),
                max_attempts: u.arbitrary()?,
                jitter: u.arbitrary()?,
            };
            let mut out: *mut stockade_backoff = ptr::null_mut();
            // SAFETY: as above.
            let st = unsafe { stockade_backoff_init(p, size, &cfg, &mut e, &mut out) };
            check("backoff", st, &e, size, STOCKADE_BACKOFF_SIZE, offset);
            if st == S::Ok {
                let mut got = cfg;
                // SAFETY: `out` from init.
                assert_eq!(unsafe { stockade_backoff_config_get(out, &mut got) }, S::Ok);
                assert_eq!(got.max_attempts, cfg.max_attempts);
                assert!(got.initial_delay_ms <= got.max_delay_ms);
                let mut d = 0u64;
                // SAFETY: as above.
                assert_eq!(
                    unsafe { stockade_backoff_delay_ms(out, u.arbitrary()?, &mut d) },
                    S::Ok
                );
                assert!(d <= got.max_delay_ms);
            }
        }
        _ => {
            let cfg = stockade_timeout_config {
                timeout_ms: u.arbitrary()?,
            };
            let clock = stockade_clock {
                now_ns: Some(zero_clock),
                user_data: ptr::null_mut(),
            };
            let mut d = stockade_deadline { expires_at_ns: 0 };
            // SAFETY: pointers valid.
            let st = unsafe { stockade_timeout_config_deadline(&cfg, &clock, &mut e, &mut d) };
            check("timeout", st, &e, usize::MAX, 0, 0);
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
