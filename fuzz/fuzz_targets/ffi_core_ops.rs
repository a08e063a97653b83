//! An operation stream over the C ABI's core tier: one limiter, bulkhead,
//! breaker, retry budget, backoff schedule and deadline, each made from a
//! random config, then random calls on them (NULL where the API checks
//! it) while a test clock moves forward and back.
//!
//! Invariants checked on every call: no panic (the boundary would turn one
//! into `INTERNAL_ERROR`, which fails here too), every status is one the
//! function documents, a limiter never grants more than its rate allows
//! over the time seen, a reservation never waits longer than it was
//! allowed to, a bulkhead's `in_use` never exceeds `max_concurrent` and
//! matches the permits held, a retry budget never reports more than
//! `max_tokens`, a forced-open breaker rejects with `UINT64_MAX`.
#![no_main]

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use stockade_ffi::backoff::*;
use stockade_ffi::breaker::*;
use stockade_ffi::budget::*;
use stockade_ffi::bulkhead::*;
use stockade_ffi::clock::stockade_clock;
use stockade_ffi::deadline::*;
use stockade_ffi::limiter::*;
use stockade_ffi::stockade_status as S;

/// Storage for any core-tier object: large and aligned enough for each.
#[repr(C, align(8))]
struct Storage([u8; 256]);

impl Storage {
    fn new() -> Box<Self> {
        Box::new(Storage([0; 256]))
    }
    fn ptr(&mut self) -> *mut c_void {
        self.0.as_mut_ptr().cast()
    }
}

/// The test clock's callback: `user_data` is a `Cell<u64>`.
unsafe extern "C" fn now_ns(user_data: *mut c_void) -> u64 {
    // SAFETY: every clock made here points at the target's live `Cell<u64>`.
    unsafe { (*user_data.cast::<Cell<u64>>()).get() }
}

/// A zeroed plain C struct (tokens, transitions, metrics): every field of
/// these is an integer, a bool or a fieldless enum whose 0 is valid.
fn zeroed<T: Copy>() -> T {
    // SAFETY: only used for the `#[repr(C)]` structs above, for which the
    // all-zero bit pattern is a valid value.
    unsafe { core::mem::zeroed() }
}

/// `ptr` or NULL, as the fuzzer picks.
fn maybe<T>(null: bool, p: *mut T) -> *mut T {
    if null { ptr::null_mut() } else { p }
}

fn check(status: S, allowed: &[S], what: &str) {
    assert!(
        allowed.contains(&status),
        "{what}: undocumented status {status:?} (allowed {allowed:?})"
    );
}

const MS: u128 = 1_000_000;

struct Limiter {
    h: *const stockade_limiter,
    cfg: stockade_limiter_config,
    burst: u32,
    /// Permits granted (taken now or booked), less the ones cancelled.
    granted: u128,
    min_now: u64,
    max_now: u64,
    tokens: Vec<stockade_limiter_token>,
}

impl Limiter {
    /// The most permits the limiter's arithmetic allows between the
    /// earliest and the latest clock reading it saw, with every booking
    /// reaching at most `queue_timeout` past the latest.
    fn bound(&self) -> u128 {
        let rpp = self.cfg.requests_per_period as u128;
        let period = (self.cfg.period_ms as u128 * MS).max(1);
        let span = (self.max_now - self.min_now) as u128 + self.cfg.queue_timeout_ms as u128 * MS;
        (self.burst as u128).max(rpp) + rpp * (span / period + 1)
    }
}

fn limiter_config(u: &mut Unstructured<'_>) -> Result<stockade_limiter_config> {
    Ok(stockade_limiter_config {
        period_ms: u.int_in_range(1..=5000)?,
        queue_timeout_ms: u.int_in_range(0..=20_000)?,
        requests_per_period: u.int_in_range(1..=1000)?,
        burst: u.int_in_range(0..=1200)?,
        max_queue_size: u.int_in_range(0..=2000)?,
        mode: u.int_in_range(0..=1)?,
    })
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let time = Cell::new(u.int_in_range(0..=1u64 << 40)?);
    let clock = stockade_clock {
        now_ns: Some(now_ns),
        user_data: ptr::from_ref(&time).cast_mut().cast(),
    };
    let null_fn_clock = stockade_clock {
        now_ns: None,
        user_data: ptr::null_mut(),
    };

    // The limiter.
    let mut lim_storage = Storage::new();
    let lcfg = limiter_config(u)?;
    let mut lim_out: *mut stockade_limiter = ptr::null_mut();
    // SAFETY: storage of its size, valid pointers.
    let st = unsafe {
        stockade_limiter_init(lim_storage.ptr(), 256, &lcfg, ptr::null_mut(), &mut lim_out)
    };
    check(st, &[S::Ok, S::InvalidConfig], "limiter_init");
    let mut lim = (st == S::Ok).then(|| Limiter {
        h: lim_out,
        cfg: lcfg,
        burst: match (lcfg.burst, lcfg.mode) {
            (0, 0) => lcfg.requests_per_period,
            (0, _) => 1,
            (b, _) => b,
        },
        granted: 0,
        min_now: time.get(),
        max_now: time.get(),
        tokens: Vec::new(),
    });

    // The bulkhead.
    let mut bh_storage = Storage::new();
    let bcfg = stockade_bulkhead_config {
        queue_timeout_ms: u.arbitrary()?,
        max_concurrent: u.int_in_range(0..=64)?,
        max_queue: u.int_in_range(0..=64)?,
    };
    let mut bh: *mut stockade_bulkhead = ptr::null_mut();
    // SAFETY: as above.
    let st =
        unsafe { stockade_bulkhead_init(bh_storage.ptr(), 256, &bcfg, ptr::null_mut(), &mut bh) };
    check(st, &[S::Ok, S::InvalidConfig], "bulkhead_init");
    let bh = (st == S::Ok).then_some(bh.cast_const());
    let mut bh_held: Vec<stockade_bulkhead_token> = Vec::new();
    let mut bh_copy_released = false;

    // The breaker.
    let mut br_storage = Storage::new();
    let rcfg = stockade_breaker_config {
        failure_threshold: u.int_in_range(0..=8)?,
        half_open_max_probes: u.int_in_range(0..=4)?,
        half_open_successes_to_close: u.int_in_range(0..=4)?,
        failure_rate_threshold: u.int_in_range(0..=101)?,
        failure_rate_window_size: u.int_in_range(0..=16)?,
        failure_rate_minimum_calls: u.int_in_range(0..=16)?,
        reset_timeout_ms: u.int_in_range(0..=10_000)?,
        half_open_timeout_ms: u.int_in_range(0..=10_000)?,
        monitor_interval_ms: u.int_in_range(0..=10_000)?,
        slow_call_threshold_ms: u.int_in_range(0..=10_000)?,
    };
    let mut br: *mut stockade_breaker = ptr::null_mut();
    // SAFETY: as above.
    let st =
        unsafe { stockade_breaker_init(br_storage.ptr(), 256, &rcfg, ptr::null_mut(), &mut br) };
    check(st, &[S::Ok, S::InvalidConfig], "breaker_init");
    let br = (st == S::Ok).then_some(br.cast_const());
    let mut br_tokens: Vec<stockade_breaker_token> = Vec::new();

    // The retry budget.
    let mut bu_storage = Storage::new();
    let ucfg = stockade_retry_budget_config {
        ratio: *u.choose(&[
            0.0,
            0.1,
            0.5,
            1.0,
            2.5,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            1e300,
        ])?,
        min_retries_per_second: u.int_in_range(0..=1000)?,
        max_tokens: u.int_in_range(0..=1000)?,
    };
    let mut bu: *mut stockade_retry_budget = ptr::null_mut();
    // SAFETY: as above.
    let st = unsafe {
        stockade_retry_budget_init(bu_storage.ptr(), 256, &ucfg, ptr::null_mut(), &mut bu)
    };
    check(st, &[S::Ok, S::InvalidConfig], "retry_budget_init");
    let bu = (st == S::Ok).then_some(bu.cast_const());

    // The backoff policy and one schedule.
    let mut bo_storage = Storage::new();
    let mut sc_storage = Storage::new();
    let ocfg = stockade_backoff_config {
        initial_delay_ms: u.int_in_range(0..=10_000)?,
        max_delay_ms: u.int_in_range(0..=100_000)?,
        max_elapsed_ms: u.arbitrary()?,
        backoff_factor: *u.choose(&[1.0, 1.5, 2.0, 10.0, 0.5, f64::NAN, 1e308])?,
        max_attempts: u.int_in_range(0..=20)?,
        jitter: u.int_in_range(0..=4)?,
    };
    let mut bo: *mut stockade_backoff = ptr::null_mut();
    // SAFETY: as above.
    let st =
        unsafe { stockade_backoff_init(bo_storage.ptr(), 256, &ocfg, ptr::null_mut(), &mut bo) };
    check(st, &[S::Ok, S::InvalidConfig], "backoff_init");
    let mut sched: Option<*mut stockade_backoff_schedule> = None;
    if st == S::Ok {
        let mut s: *mut stockade_backoff_schedule = ptr::null_mut();
        // SAFETY: `bo` from init; storage of its size.
        let st = unsafe {
            stockade_backoff_schedule_init(sc_storage.ptr(), 256, bo, u.arbitrary()?, &mut s)
        };
        check(st, &[S::Ok], "backoff_schedule_init");
        sched = Some(s);
    }
    let mut sched_exhausted = false;

    let mut deadline = stockade_deadline_never();

    let steps = u.arbitrary_len::<u8>()?.min(512);
    for _ in 0..steps {
        let null: bool = u.ratio(1, 16)?;
        let c: *const stockade_clock = if null {
            if u.arbitrary()? {
                ptr::null()
            } else {
                &null_fn_clock
            }
        } else {
            &clock
        };
        match u.int_in_range(0..=20u8)? {
            // The clock moves forward, or back a little.
            0 => time.set(
                time.get()
                    .saturating_add(u.int_in_range(0..=3_000_000_000)?),
            ),
            1 => time.set(
                time.get()
                    .saturating_sub(u.int_in_range(0..=1_000_000_000)?),
            ),
            2 => {
                let Some(l) = lim.as_mut() else { continue };
                let permits: u32 = if u.arbitrary()? {
                    u.int_in_range(0..=4)?
                } else {
                    u.arbitrary()?
                };
                let mut retry = 0u64;
                // SAFETY: `l.h` from init; other pointers valid or NULL.
                let st = unsafe { stockade_limiter_try_acquire(l.h, c, permits, &mut retry) };
                if null {
                    check(st, &[S::NullArgument], "limiter_try_acquire(NULL clock)");
                    continue;
                }
                l.min_now = l.min_now.min(time.get());
                l.max_now = l.max_now.max(time.get());
                check(
                    st,
                    &[S::Ok, S::RateLimited, S::PermitsExceedBurst],
                    "limiter_try_acquire",
                );
                if permits == 0 {
                    assert_eq!(st, S::Ok, "0 permits always succeed");
                }
                if permits > l.burst {
                    assert_eq!(st, S::PermitsExceedBurst, "{permits} > burst {}", l.burst);
                    assert_eq!(retry, u64::MAX);
                }
                if st == S::Ok {
                    l.granted += permits as u128;
                }
            }
            3 => {
                let Some(l) = lim.as_mut() else { continue };
                let permits: u32 = u.int_in_range(0..=8)?;
                let max_wait: u64 = if u.arbitrary()? {
                    u.int_in_range(0..=30_000)?
                } else {
                    u.arbitrary()?
                };
                let mut tok: stockade_limiter_token = zeroed();
                let null_tok = null && u.arbitrary()?;
                // SAFETY: as above.
                let st = unsafe {
                    stockade_limiter_reserve(
                        l.h,
                        if null_tok { &clock } else { c },
                        permits,
                        max_wait,
                        maybe(null_tok, &mut tok),
                        ptr::null_mut(),
                    )
                };
                if null {
                    check(st, &[S::NullArgument], "limiter_reserve(NULL)");
                    continue;
                }
                l.min_now = l.min_now.min(time.get());
                l.max_now = l.max_now.max(time.get());
                check(
                    st,
                    &[
                        S::Ok,
                        S::QueueFull,
                        S::QueueTimeout,
                        S::PermitsExceedBurst,
                        S::RateLimited,
                    ],
                    "limiter_reserve",
                );
                if st == S::Ok {
                    assert_eq!(tok.permits, permits);
                    assert_eq!(tok.used, 0);
                    let allowed = (max_wait.min(l.cfg.queue_timeout_ms) as u128) * MS;
                    assert!(
                        tok.wait_ns as u128 <= allowed,
                        "waits {} ns, allowed {allowed}",
                        tok.wait_ns
                    );
                    l.granted += permits as u128;
                    l.tokens.push(tok);
                }
            }
            4 => {
                let Some(l) = lim.as_mut() else { continue };
                if l.tokens.is_empty() {
                    continue;
                }
                let i = u.choose_index(l.tokens.len())?;
                let mut returned = 0u32;
                let before_used = l.tokens[i].used;
                // SAFETY: as above; the token came from this limiter.
                let st =
                    unsafe { stockade_limiter_cancel(l.h, &mut l.tokens[i], c, &mut returned) };
                if null {
                    check(st, &[S::NullArgument], "limiter_cancel(NULL clock)");
                    continue;
                }
                check(
                    st,
                    &[S::Ok, S::TokenAlreadyUsed, S::NotCancellable],
                    "limiter_cancel",
                );
                if before_used != 0 {
                    assert_eq!(st, S::TokenAlreadyUsed, "a cancelled token cancels again");
                }
                if st == S::Ok {
                    assert!(returned <= l.tokens[i].permits);
                    l.granted -= returned as u128;
                }
            }
            5 => {
                let Some(l) = lim.as_ref() else { continue };
                let (mut avail, mut depth) = (0u32, 0u32);
                // SAFETY: as above.
                let st = unsafe { stockade_limiter_available(l.h, c, &mut avail) };
                // SAFETY: as above.
                let st2 = unsafe { stockade_limiter_queue_depth(l.h, c, maybe(null, &mut depth)) };
                if null {
                    check(st, &[S::NullArgument], "limiter_available(NULL)");
                    check(st2, &[S::NullArgument], "limiter_queue_depth(NULL)");
                    continue;
                }
                check(st, &[S::Ok], "limiter_available");
                check(st2, &[S::Ok], "limiter_queue_depth");
                assert!(avail <= l.burst, "available {avail} > burst {}", l.burst);
            }
            6 => {
                let Some(b) = bh else { continue };
                let mut tok: stockade_bulkhead_token = zeroed();
                // SAFETY: `b` from init; other pointers valid or NULL.
                let st = unsafe { stockade_bulkhead_try_acquire(b, maybe(null, &mut tok)) };
                if null {
                    check(st, &[S::NullArgument], "bulkhead_try_acquire(NULL)");
                    continue;
                }
                check(st, &[S::Ok, S::BulkheadFull], "bulkhead_try_acquire");
                if !bh_copy_released {
                    assert_eq!(st == S::Ok, (bh_held.len() as u32) < bcfg.max_concurrent);
                }
                if st == S::Ok {
                    assert!(
                        tok.in_use <= bcfg.max_concurrent,
                        "in_use {} > max",
                        tok.in_use
                    );
                    bh_held.push(tok);
                }
            }
            7 => {
                let Some(b) = bh else { continue };
                if bh_held.is_empty() {
                    continue;
                }
                let i = u.choose_index(bh_held.len())?;
                let copy: bool = u.ratio(1, 8)?;
                let mut tok = bh_held[i];
                // SAFETY: as above.
                let st = unsafe { stockade_bulkhead_release(b, maybe(null, &mut tok)) };
                if null {
                    check(st, &[S::NullArgument], "bulkhead_release(NULL)");
                    continue;
                }
                check(st, &[S::Ok, S::TokenAlreadyUsed], "bulkhead_release");
                if !bh_copy_released {
                    assert_eq!(st, S::Ok, "releasing a held permit");
                }
                if copy {
                    // Keep the unreleased copy: releasing it again returns
                    // another holder's permit (documented), never underflows.
                    bh_copy_released = true;
                } else {
                    bh_held.swap_remove(i);
                    // Released through this token: a second release is refused.
                    // SAFETY: as above.
                    let again = unsafe { stockade_bulkhead_release(b, &mut tok) };
                    check(again, &[S::TokenAlreadyUsed], "bulkhead_release twice");
                }
            }
            8 => {
                let Some(b) = bh else { continue };
                let (mut in_use, mut queued, mut avail) = (0u32, 0u32, 0u32);
                // SAFETY: as above.
                let st = unsafe {
                    stockade_bulkhead_counts(
                        if null { ptr::null() } else { b },
                        &mut in_use,
                        &mut queued,
                        &mut avail,
                    )
                };
                if null {
                    check(st, &[S::NullArgument], "bulkhead_counts(NULL)");
                    continue;
                }
                check(st, &[S::Ok], "bulkhead_counts");
                assert!(
                    in_use <= bcfg.max_concurrent,
                    "in_use {in_use} > max {}",
                    bcfg.max_concurrent
                );
                assert_eq!(queued, 0, "the core tier never queues");
                assert_eq!(in_use + avail, bcfg.max_concurrent);
                if !bh_copy_released {
                    assert_eq!(in_use as usize, bh_held.len());
                }
            }
            9 => {
                let Some(b) = br else { continue };
                let mut tok: stockade_breaker_token = zeroed();
                let mut tr: stockade_breaker_transition = zeroed();
                let mut retry = 0u64;
                let mut state = stockade_breaker_state::Closed;
                // SAFETY: `b` from init; other pointers valid.
                let st0 = unsafe { stockade_breaker_get_state(b, &mut state) };
                check(st0, &[S::Ok], "breaker_get_state");
                // SAFETY: as above.
                let st = unsafe { stockade_breaker_acquire(b, c, &mut tok, &mut tr, &mut retry) };
                if null {
                    check(st, &[S::NullArgument], "breaker_acquire(NULL clock)");
                    continue;
                }
                check(
                    st,
                    &[S::Ok, S::BreakerOpen, S::BreakerHalfOpenFull],
                    "breaker_acquire",
                );
                match state {
                    stockade_breaker_state::ForcedOpen => {
                        assert_eq!(st, S::BreakerOpen);
                        assert_eq!(retry, u64::MAX);
                    }
                    stockade_breaker_state::Disabled => assert_eq!(st, S::Ok),
                    _ => {}
                }
                if st == S::Ok {
                    br_tokens.push(tok);
                }
            }
            10 => {
                let Some(b) = br else { continue };
                if br_tokens.is_empty() {
                    continue;
                }
                let i = u.choose_index(br_tokens.len())?;
                let outcome: u8 = u.int_in_range(0..=3)?;
                let mut tr: stockade_breaker_transition = zeroed();
                let before_used = br_tokens[i].used;
                // SAFETY: as above; the token came from this breaker.
                let st =
                    unsafe { stockade_breaker_report(b, &mut br_tokens[i], outcome, c, &mut tr) };
                if null {
                    check(st, &[S::NullArgument], "breaker_report(NULL clock)");
                    continue;
                }
                check(
                    st,
                    &[
                        S::Ok,
                        S::TokenAlreadyUsed,
                        S::TokenStale,
                        S::InvalidArgument,
                    ],
                    "breaker_report",
                );
                if outcome > 2 {
                    assert_eq!(st, S::InvalidArgument, "unknown outcome {outcome}");
                } else if before_used != 0 {
                    assert_eq!(st, S::TokenAlreadyUsed);
                }
                if st == S::Ok && tr.happened {
                    assert_ne!(tr.from, tr.to, "a transition changes the state");
                }
            }
            11 => {
                let Some(b) = br else { continue };
                let mut tr: stockade_breaker_transition = zeroed();
                let which: u8 = u.int_in_range(0..=3)?;
                // SAFETY: as above.
                let st = unsafe {
                    match which {
                        0 => stockade_breaker_trip(b, c, &mut tr),
                        1 => stockade_breaker_reset(b, c, &mut tr),
                        2 => stockade_breaker_force_open(b, c, &mut tr),
                        _ => stockade_breaker_disable(b, c, &mut tr),
                    }
                };
                if null {
                    check(st, &[S::NullArgument], "breaker admin(NULL clock)");
                    continue;
                }
                check(st, &[S::Ok], "breaker admin");
                let mut state = stockade_breaker_state::Closed;
                // SAFETY: as above.
                check(
                    unsafe { stockade_breaker_get_state(b, &mut state) },
                    &[S::Ok],
                    "get_state",
                );
                let expected = match which {
                    0 => stockade_breaker_state::Open,
                    1 => stockade_breaker_state::Closed,
                    2 => stockade_breaker_state::ForcedOpen,
                    _ => stockade_breaker_state::Disabled,
                };
                assert_eq!(state, expected, "after admin operation {which}");
            }
            12 => {
                let Some(b) = br else { continue };
                let mut m: stockade_breaker_metrics = zeroed();
                // SAFETY: as above.
                let st = unsafe { stockade_breaker_get_metrics(b, c, &mut m) };
                if null {
                    check(st, &[S::NullArgument], "breaker_get_metrics(NULL clock)");
                    continue;
                }
                check(st, &[S::Ok], "breaker_get_metrics");
                if m.state == stockade_breaker_state::HalfOpen {
                    assert!(m.probes_in_flight <= rcfg.half_open_max_probes.max(1));
                }
                assert!(m.window_failures <= m.window_calls);
            }
            13 => {
                let Some(b) = bu else { continue };
                // SAFETY: `b` from init; clock valid or NULL.
                let st = unsafe { stockade_retry_budget_deposit(b, c) };
                check(
                    st,
                    if null { &[S::NullArgument] } else { &[S::Ok] },
                    "retry_budget_deposit",
                );
            }
            14 => {
                let Some(b) = bu else { continue };
                let mut retry = 0u64;
                // SAFETY: as above.
                let st = unsafe { stockade_retry_budget_try_withdraw(b, c, &mut retry) };
                check(
                    st,
                    if null {
                        &[S::NullArgument]
                    } else {
                        &[S::Ok, S::BudgetExhausted]
                    },
                    "retry_budget_try_withdraw",
                );
                if st == S::BudgetExhausted && ucfg.min_retries_per_second == 0 {
                    assert_eq!(retry, u64::MAX, "no floor: never");
                }
            }
            15 => {
                let Some(b) = bu else { continue };
                let mut tokens = 0u32;
                // SAFETY: as above.
                let st = unsafe { stockade_retry_budget_available(b, c, &mut tokens) };
                check(
                    st,
                    if null { &[S::NullArgument] } else { &[S::Ok] },
                    "retry_budget_available",
                );
                if st == S::Ok {
                    assert!(
                        tokens <= ucfg.max_tokens,
                        "{tokens} > max_tokens {}",
                        ucfg.max_tokens
                    );
                }
            }
            16 => {
                let Some(b) = bu else { continue };
                // SAFETY: as above.
                check(
                    unsafe { stockade_retry_budget_reset(b) },
                    &[S::Ok],
                    "retry_budget_reset",
                );
            }
            17 => {
                let Some(s) = sched else { continue };
                let elapsed: u64 = u.arbitrary()?;
                let mut delay = 0u64;
                // SAFETY: `s` from init, used by this thread only.
                let st =
                    unsafe { stockade_backoff_schedule_next(s, elapsed, maybe(null, &mut delay)) };
                if null {
                    check(st, &[S::NullArgument], "backoff_schedule_next(NULL)");
                    continue;
                }
                check(st, &[S::Ok, S::RetriesExhausted], "backoff_schedule_next");
                if sched_exhausted {
                    assert_eq!(st, S::RetriesExhausted, "exhausted stays exhausted");
                }
                if st == S::Ok {
                    assert!(
                        delay <= ocfg.max_delay_ms,
                        "delay {delay} > max {}",
                        ocfg.max_delay_ms
                    );
                } else {
                    sched_exhausted = true;
                }
                let mut attempts = 0u32;
                // SAFETY: as above.
                check(
                    unsafe { stockade_backoff_schedule_attempts(s, &mut attempts) },
                    &[S::Ok],
                    "attempts",
                );
                assert!(
                    attempts <= ocfg.max_attempts,
                    "{attempts} attempts > {}",
                    ocfg.max_attempts
                );
            }
            18 => {
                if bo.is_null() {
                    continue;
                }
                let retry: u32 = u.arbitrary()?;
                let mut delay = 0u64;
                // SAFETY: `bo` from init.
                let st = unsafe { stockade_backoff_delay_ms(bo, retry, &mut delay) };
                check(st, &[S::Ok], "backoff_delay_ms");
                assert!(delay <= ocfg.max_delay_ms);
            }
            19 => {
                let timeout: u64 = u.arbitrary()?;
                let mut d = stockade_deadline { expires_at_ns: 0 };
                // SAFETY: pointers valid or NULL.
                let st = unsafe { stockade_deadline_after(c, timeout, &mut d) };
                if null {
                    check(st, &[S::NullArgument], "deadline_after(NULL)");
                    continue;
                }
                check(st, &[S::Ok], "deadline_after");
                // SAFETY: as above.
                let r = unsafe { stockade_deadline_remaining_ms(d, &clock) };
                check(r.status, &[S::Ok], "remaining");
                let rem = r.ms;
                if d.expires_at_ns == u64::MAX {
                    // Saturated at "never" (documented).
                    assert_eq!(rem, u64::MAX, "a deadline that never expires");
                } else {
                    assert!(rem <= timeout, "remaining {rem} > timeout {timeout}");
                }
                deadline = stockade_deadline_min(deadline, d);
                assert!(deadline.expires_at_ns <= d.expires_at_ns);
            }
            _ => {
                // SAFETY: as above.
                let e = unsafe { stockade_deadline_is_expired(deadline, c) };
                if null {
                    check(e.status, &[S::NullArgument], "deadline_is_expired(NULL)");
                    assert!(e.expired, "a refused call reads as expired");
                    continue;
                }
                check(e.status, &[S::Ok], "deadline_is_expired");
                // SAFETY: as above.
                let r = unsafe { stockade_deadline_remaining_ms(deadline, &clock) };
                check(r.status, &[S::Ok], "remaining");
                let rem = r.ms;
                if e.expired {
                    assert_eq!(rem, 0, "an expired deadline has no time left");
                }
            }
        }
        if let Some(l) = lim.as_ref() {
            assert!(
                l.granted <= l.bound(),
                "limiter granted {} permits, its rate allows {} (config {:?}, clock {}..{})",
                l.granted,
                l.bound(),
                l.cfg,
                l.min_now,
                l.max_now
            );
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
