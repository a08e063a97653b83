//! The blocking tier's Hedging config and Fallback and Hedging calls
//! through the C ABI, from arbitrary bytes:
//!
//! * a `stockade_hedging_config` with any field values gives either a
//!   handle (`OK`) or `INVALID_CONFIG` with a `stockade_config_error`
//!   naming `max_attempts` or `max_workers` (the options that can be
//!   wrong), a NUL-terminated name and message — exactly when the core's
//!   rules say so (never a panic, `INTERNAL_ERROR`, or another status);
//! * a fallback (it has no config in the C ABI: what it handles is its
//!   classifier) run with an arbitrary callback code, classifier choice
//!   and fallback code returns exactly the documented status and counts
//!   the call once;
//! * a hedged call (`_execute` or `_execute_if`, arbitrary codes per
//!   attempt and classifier choices per code) returns `OK` with the number
//!   of an attempt that returned 0, or `CALLBACK_FAILED` when some attempt
//!   failed; it starts 1 to `max_attempts` attempts, classifies failures
//!   only (no more than the failed attempts it started; none without a
//!   classifier), counts the call once, and calls `release` exactly once;
//!   once the hedging is freed its workers exit (Linux: the target counts
//!   the process's threads).
#![no_main]

use core::ffi::{CStr, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use stockade_ffi::blocking::fallback::*;
use stockade_ffi::blocking::hedging::*;
use stockade_ffi::blocking::stockade_metrics;
use stockade_ffi::config_error::{stockade_config_option_str, stockade_config_problem_str};
use stockade_ffi::stockade_config_error;
use stockade_ffi::stockade_status as S;

/// How long a test waits for the losers to finish before failing.
const WATCHDOG: Duration = Duration::from_secs(20);

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

fn metrics_of_fallback(h: *const stockade_fallback) -> stockade_metrics {
    // SAFETY: all-zero is a valid `stockade_metrics` (integers only).
    let mut m: stockade_metrics = unsafe { core::mem::zeroed() };
    // SAFETY: `h` live.
    assert_eq!(unsafe { stockade_fallback_metrics(h, &mut m) }, S::Ok);
    m
}

fn metrics_of_hedging(h: *const stockade_hedging) -> stockade_metrics {
    // SAFETY: as above.
    let mut m: stockade_metrics = unsafe { core::mem::zeroed() };
    // SAFETY: `h` live.
    assert_eq!(unsafe { stockade_hedging_metrics(h, &mut m) }, S::Ok);
    m
}

// --- Fallback ----------------------------------------------------------------

struct FallbackCase {
    code: c_int,
    handle: bool,
    fallback_code: c_int,
    classified: AtomicU32,
    replaced: AtomicU32,
}

unsafe extern "C" fn fb_call(user_data: *mut c_void) -> c_int {
    // SAFETY: a live `FallbackCase` (the test's stack, during the call).
    unsafe { &*user_data.cast::<FallbackCase>() }.code
}

unsafe extern "C" fn fb_classify(status: S, code: c_int, user_data: *mut c_void) -> bool {
    // SAFETY: as above.
    let case = unsafe { &*user_data.cast::<FallbackCase>() };
    assert_eq!(status, S::CallbackFailed);
    assert_eq!(code, case.code);
    case.classified.fetch_add(1, Ordering::Relaxed);
    case.handle
}

unsafe extern "C" fn fb_replace(status: S, code: c_int, user_data: *mut c_void) -> c_int {
    // SAFETY: as above.
    let case = unsafe { &*user_data.cast::<FallbackCase>() };
    assert_eq!(status, S::CallbackFailed);
    assert_eq!(code, case.code);
    case.replaced.fetch_add(1, Ordering::Relaxed);
    case.fallback_code
}

fn fallback(u: &mut Unstructured<'_>) -> Result<()> {
    let mut h: *mut stockade_fallback = ptr::null_mut();
    // SAFETY: NULL name (anonymous), `h` writable.
    assert_eq!(unsafe { stockade_fallback_new(ptr::null(), &mut h) }, S::Ok);
    let calls: u8 = u.int_in_range(1..=4)?;
    for n in 1..=u64::from(calls) {
        let case = FallbackCase {
            code: if u.ratio(1, 2)? { 0 } else { u.arbitrary()? },
            handle: u.arbitrary()?,
            fallback_code: if u.ratio(1, 2)? { 0 } else { u.arbitrary()? },
            classified: AtomicU32::new(0),
            replaced: AtomicU32::new(0),
        };
        let with_classifier: bool = u.arbitrary()?;
        let classifier: stockade_fallback_classifier_fn = if with_classifier {
            Some(fb_classify)
        } else {
            None
        };
        let data = ptr::from_ref(&case).cast_mut().cast::<c_void>();
        // SAFETY: `h` live; the callbacks read `case`, alive for the call.
        let st = unsafe {
            stockade_fallback_execute(h, Some(fb_call), classifier, Some(fb_replace), data)
        };
        let handled = case.code != 0 && (!with_classifier || case.handle);
        let expected = match (case.code, handled) {
            (0, _) => S::Ok,
            (_, true) if case.fallback_code == 0 => S::Ok,
            _ => S::CallbackFailed,
        };
        assert_eq!(
            st, expected,
            "fallback: code {} handled {handled}",
            case.code
        );
        let classified = u32::from(case.code != 0 && with_classifier);
        assert_eq!(case.classified.load(Ordering::Relaxed), classified);
        assert_eq!(case.replaced.load(Ordering::Relaxed), u32::from(handled));
        let m = metrics_of_fallback(h);
        assert_eq!(m.calls, n, "every call counted once");
        assert_eq!(m.successes + m.failures + m.fallbacks, m.calls);
    }
    // SAFETY: `h` from `_new`, freed once.
    unsafe { stockade_fallback_free(h) };
    Ok(())
}

// --- Hedging -----------------------------------------------------------------

/// What a hedged call's attempts and classifier saw, kept by the test
/// after the case is released.
#[derive(Default)]
struct Seen {
    started: AtomicU32,
    classified: AtomicU32,
    released: AtomicU32,
}

/// One hedged call's script, shared with the attempts (which may outlive
/// the call): freed by `release`.
struct HedgeCase {
    /// What attempt n returns (index n - 1): 0, or the unique code n.
    codes: Vec<c_int>,
    /// Whether the classifier hedges on attempt n's failure.
    hedge_on: Vec<bool>,
    seen: Arc<Seen>,
}

unsafe extern "C" fn hd_attempt(attempt: u32, user_data: *mut c_void) -> c_int {
    // SAFETY: the boxed `HedgeCase`, alive until `release`.
    let case = unsafe { &*user_data.cast::<HedgeCase>() };
    case.seen.started.fetch_add(1, Ordering::SeqCst);
    let index = attempt as usize - 1;
    assert!(
        index < case.codes.len(),
        "attempt {attempt} past max_attempts"
    );
    case.codes[index]
}

unsafe extern "C" fn hd_classify(status: S, code: c_int, user_data: *mut c_void) -> bool {
    // SAFETY: as above.
    let case = unsafe { &*user_data.cast::<HedgeCase>() };
    assert_eq!(status, S::CallbackFailed);
    assert!(code >= 1, "a success is never classified (code {code})");
    case.seen.classified.fetch_add(1, Ordering::SeqCst);
    // Attempt n fails with code n.
    case.hedge_on[code as usize - 1]
}

unsafe extern "C" fn hd_release(user_data: *mut c_void) {
    // SAFETY: the boxed `HedgeCase`, released once (checked by the count).
    let case = unsafe { Box::from_raw(user_data.cast::<HedgeCase>()) };
    case.seen.released.fetch_add(1, Ordering::SeqCst);
}

fn hedging(u: &mut Unstructured<'_>) -> Result<()> {
    let config = stockade_hedging_config {
        // Any delay is valid; a run only waits on it while an attempt is
        // in flight, and the attempts here return at once.
        delay_ms: u.arbitrary()?,
        max_attempts: if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=8)?
        },
        max_workers: if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            u.int_in_range(0..=4)?
        },
    };
    baseline();
    let mut e = fresh_error();
    let mut h: *mut stockade_hedging = ptr::null_mut();
    // SAFETY: NULL name; pointers valid.
    let st = unsafe { stockade_hedging_new(ptr::null(), &config, &mut e, &mut h) };
    let valid = (1..=64).contains(&config.max_attempts) && config.max_workers > 0;
    if !valid {
        assert_eq!(st, S::InvalidConfig, "hedging: {config:?}");
        assert!(h.is_null());
        let option = static_str(stockade_config_option_str(e.option));
        let expected = if config.max_attempts == 0 || config.max_attempts > 64 {
            "max_attempts"
        } else {
            "max_workers"
        };
        assert_eq!(option, expected, "hedging: {config:?}");
        assert_eq!(cstr_of(&e.option_name), option);
        assert_ne!(
            static_str(stockade_config_problem_str(e.problem)),
            "unknown problem"
        );
        assert!(!cstr_of(&e.message).is_empty());
        return Ok(());
    }
    assert_eq!(st, S::Ok, "hedging: {config:?}");
    // A big pool is created lazily: its threads start with the attempts.
    let calls: u8 = u.int_in_range(1..=3)?;
    for n in 1..=u64::from(calls) {
        let attempts = config.max_attempts as usize;
        // Unique non-zero failure codes (attempt i fails with i + 1), or 0.
        let mut codes = Vec::with_capacity(attempts);
        let mut hedge_on = Vec::with_capacity(attempts);
        for i in 0..attempts {
            let ok = u.ratio(1, 3)?;
            codes.push(if ok { 0 } else { i as c_int + 1 });
            hedge_on.push(u.arbitrary()?);
        }
        let with_classifier: bool = u.arbitrary()?;
        let seen = Arc::new(Seen::default());
        let raw = Box::into_raw(Box::new(HedgeCase {
            codes: codes.clone(),
            hedge_on,
            seen: Arc::clone(&seen),
        }));
        let mut won = 0u32;
        // SAFETY: `h` live; `raw` is valid until `hd_release`, which the
        // library calls exactly once; `won` writable.
        let st = unsafe {
            if with_classifier {
                stockade_hedging_execute_if(
                    h,
                    Some(hd_attempt),
                    Some(hd_classify),
                    raw.cast(),
                    Some(hd_release),
                    &mut won,
                )
            } else {
                stockade_hedging_execute(
                    h,
                    Some(hd_attempt),
                    raw.cast(),
                    Some(hd_release),
                    &mut won,
                )
            }
        };
        match st {
            S::Ok => {
                assert!((1..=config.max_attempts).contains(&won), "won {won}");
                assert_eq!(codes[won as usize - 1], 0, "the winner returned 0");
            }
            S::CallbackFailed => {
                assert!(codes.iter().any(|&c| c != 0), "some attempt failed");
            }
            other => panic!("hedging: undocumented status {other:?}"),
        }
        let m = metrics_of_hedging(h);
        assert_eq!(m.calls, n, "every call counted once");
        assert_eq!(m.successes + m.failures, m.calls);
        assert_eq!(m.successes, m.calls - m.failures);
        assert!(m.hedges_won <= m.hedges);
        // The losers may still run: wait for the release.
        let start = Instant::now();
        while seen.released.load(Ordering::SeqCst) == 0 {
            assert!(start.elapsed() < WATCHDOG, "watchdog: release never called");
            std::thread::yield_now();
        }
        assert_eq!(
            seen.released.load(Ordering::SeqCst),
            1,
            "release exactly once"
        );
        let started = seen.started.load(Ordering::SeqCst);
        assert!(
            (1..=config.max_attempts).contains(&started),
            "started {started}"
        );
        let classified = seen.classified.load(Ordering::SeqCst);
        if with_classifier {
            let failures = codes[..started as usize]
                .iter()
                .filter(|&&c| c != 0)
                .count();
            assert!(classified as usize <= failures, "classified {classified}");
        } else {
            assert_eq!(classified, 0);
        }
    }
    // SAFETY: `h` from `_new`, freed once.
    unsafe { stockade_hedging_free(h) };
    // The pool's workers exit once it is gone: wait for them, so that no
    // thread of this input outlives it (LeakSanitizer would report the
    // allocations of threads still exiting when the fuzzer stops).
    let start = Instant::now();
    while threads() > baseline() {
        assert!(
            start.elapsed() < WATCHDOG,
            "watchdog: the pool's workers did not exit"
        );
        std::thread::yield_now();
    }
    Ok(())
}

/// The threads of this process now (Linux: `/proc/self/status`).
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads: line")
}

/// The threads before any hedging ran.
fn baseline() -> usize {
    static BASELINE: OnceLock<usize> = OnceLock::new();
    *BASELINE.get_or_init(threads)
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    if u.arbitrary()? {
        hedging(u)
    } else {
        fallback(u)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
