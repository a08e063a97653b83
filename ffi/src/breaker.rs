//! The circuit breaker (core tier): the core's lock-free `CircuitBreaker`
//! in caller storage, with plain-data tokens and transitions as values.

use core::ffi::{c_int, c_void};

use stockade_core::breaker::{
    BreakerConfig, BreakerMetrics, BreakerPermit, BreakerRejected, BreakerState, BreakerToken,
    CircuitBreaker, Outcome, RawBreakerConfig, TokenError, Transition,
};
use stockade_core::clock::Timestamp;

use crate::boundary::{Out, arg, no_unwind, storage};
use crate::clock::{CClock, stockade_clock};
use crate::config_error::{self, stockade_config_error};
use crate::status::stockade_status;
use crate::time::millis;

/// Circuit breaker options (the core's `RawBreakerConfig`): start from
/// `stockade_breaker_config_default()` and change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_breaker_config {
    /// Consecutive failures that open the circuit (default 5); 1 to 65535
    /// (255 on 32-bit microcontrollers).
    pub failure_threshold: u32,
    /// Probes admitted at once while half-open (default 1).
    pub half_open_max_probes: u32,
    /// Close early after this many successful probes in one half-open
    /// round; 0 = none (the default: only the round's end closes, see
    /// `half_open_timeout_ms`).
    pub half_open_successes_to_close: u32,
    /// Also open when this percentage of the last
    /// `failure_rate_window_size` calls failed; 0 = no failure-rate rule
    /// (the default). 1 to 100. A core-tier library built without the
    /// `failure-rate` feature (`--no-default-features`, as firmware is
    /// built) refuses a value other than 0 with `INVALID_CONFIG`,
    /// `problem` `STOCKADE_CONFIG_PROBLEM_UNSUPPORTED`, and links none of
    /// the window's code; hosted builds always have it.
    pub failure_rate_threshold: u32,
    /// Calls in the failure-rate window (used when
    /// `failure_rate_threshold` > 0).
    pub failure_rate_window_size: u32,
    /// Calls needed before the failure rate is judged (at most
    /// `failure_rate_window_size`).
    pub failure_rate_minimum_calls: u32,
    /// Time open before half-open, ms (default 60000).
    pub reset_timeout_ms: u64,
    /// Length of a half-open round, ms (default 30000). With the default
    /// `half_open_successes_to_close` (0) a successful probe does **not**
    /// close the circuit by itself: the circuit closes when the round has
    /// lasted `half_open_timeout_ms` and at least one probe succeeded
    /// (checked when a probe reports success and on every acquire), so a
    /// default breaker closes at the end of the round, not on the first
    /// successful probe. During the round at most `half_open_max_probes`
    /// probes run at once (a reported probe frees its slot). Any failed
    /// probe re-opens the circuit. A round that ends with no successful
    /// probe (e.g. the caller holding the only probe never reported) is
    /// followed by a fresh round instead of staying wedged; verdicts of
    /// probes from an earlier round are ignored, so this should be longer
    /// than a call normally takes.
    pub half_open_timeout_ms: u64,
    /// Interval between monitoring events, ms (default 5000; used by the
    /// blocking tier's listeners).
    pub monitor_interval_ms: u64,
    /// A success slower than this counts as a failure, ms; 0 = none (the
    /// default).
    pub slow_call_threshold_ms: u64,
}

impl From<stockade_breaker_config> for RawBreakerConfig {
    fn from(c: stockade_breaker_config) -> Self {
        RawBreakerConfig {
            failure_threshold: c.failure_threshold,
            half_open_max_probes: c.half_open_max_probes,
            half_open_successes_to_close: c.half_open_successes_to_close,
            failure_rate_threshold: c.failure_rate_threshold,
            failure_rate_window_size: c.failure_rate_window_size,
            failure_rate_minimum_calls: c.failure_rate_minimum_calls,
            reset_timeout: c.reset_timeout_ms,
            half_open_timeout: c.half_open_timeout_ms,
            monitor_interval: c.monitor_interval_ms,
            slow_call_threshold: c.slow_call_threshold_ms,
        }
    }
}

impl From<RawBreakerConfig> for stockade_breaker_config {
    fn from(c: RawBreakerConfig) -> Self {
        stockade_breaker_config {
            failure_threshold: c.failure_threshold,
            half_open_max_probes: c.half_open_max_probes,
            half_open_successes_to_close: c.half_open_successes_to_close,
            failure_rate_threshold: c.failure_rate_threshold,
            failure_rate_window_size: c.failure_rate_window_size,
            failure_rate_minimum_calls: c.failure_rate_minimum_calls,
            reset_timeout_ms: c.reset_timeout,
            half_open_timeout_ms: c.half_open_timeout,
            monitor_interval_ms: c.monitor_interval,
            slow_call_threshold_ms: c.slow_call_threshold,
        }
    }
}

impl stockade_breaker_config {
    /// The validated core config.
    pub(crate) fn to_core(self) -> Result<BreakerConfig, stockade_core::ConfigError> {
        BreakerConfig::try_from(RawBreakerConfig::from(self))
    }
}

/// A circuit breaker's state (the core's `BreakerState`, same numbers).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_breaker_state {
    /// Calls pass; failures are counted.
    Closed = 0,
    /// Calls are rejected until `reset_timeout_ms` has passed.
    Open = 1,
    /// A few probe calls pass to test the dependency.
    HalfOpen = 2,
    /// Opened by `stockade_breaker_force_open`: rejects until reset.
    ForcedOpen = 3,
    /// Set by `stockade_breaker_disable`: admits every call, records
    /// nothing, until reset.
    Disabled = 4,
}

impl From<BreakerState> for stockade_breaker_state {
    fn from(s: BreakerState) -> Self {
        match s {
            BreakerState::Closed => stockade_breaker_state::Closed,
            BreakerState::Open => stockade_breaker_state::Open,
            BreakerState::HalfOpen => stockade_breaker_state::HalfOpen,
            BreakerState::ForcedOpen => stockade_breaker_state::ForcedOpen,
            BreakerState::Disabled => stockade_breaker_state::Disabled,
        }
    }
}

/// A call's verdict for `stockade_breaker_report` (the core's `Outcome`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_outcome {
    /// The call succeeded (a failure if slower than `slow_call_threshold_ms`).
    Success = 0,
    /// The call failed.
    Failure = 1,
    /// The call does not count (cancelled, or an error that says nothing
    /// about the dependency's health); frees a half-open probe slot.
    Ignored = 2,
}

const fn outcome_from_u8(n: u8) -> Option<Outcome> {
    match n {
        0 => Some(Outcome::Success),
        1 => Some(Outcome::Failure),
        2 => Some(Outcome::Ignored),
        _ => None,
    }
}

/// An admitted call (the core's `BreakerToken`): plain data owned by the
/// caller (one thread at a time). Report it once with
/// `stockade_breaker_report`, which marks it used: reporting the same
/// token again returns `TOKEN_ALREADY_USED` and changes nothing. A token
/// never reported does no lasting harm (a half-open probe slot frees
/// itself when the round ends).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_breaker_token {
    /// The generation the call was admitted in.
    pub generation: u32,
    /// 1 when `started_at_ns` holds the call's start (the breaker has a
    /// slow-call threshold), else 0.
    pub timed: u32,
    /// The call's start, in the clock's nanoseconds (when `timed`).
    pub started_at_ns: u64,
    /// 1 once reported through this token.
    pub used: u32,
}

impl From<BreakerToken> for stockade_breaker_token {
    fn from(t: BreakerToken) -> Self {
        let started = t.started_at();
        stockade_breaker_token {
            generation: t.generation(),
            timed: u32::from(started.is_some()),
            started_at_ns: started.map_or(0, Timestamp::as_nanos),
            used: 0,
        }
    }
}

impl From<stockade_breaker_token> for BreakerToken {
    fn from(t: stockade_breaker_token) -> Self {
        let started = (t.timed != 0).then(|| Timestamp::from_nanos(t.started_at_ns));
        BreakerToken::from_parts(t.generation, started)
    }
}

/// A state change a call performed (the core's `Transition`), reported
/// through the optional `stockade_breaker_transition *` out-parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_breaker_transition {
    /// Whether the call performed a transition; when false the other
    /// fields are 0.
    pub happened: bool,
    /// The state before (a `stockade_breaker_state`).
    pub from: stockade_breaker_state,
    /// The state after (a `stockade_breaker_state`).
    pub to: stockade_breaker_state,
    /// The generation the transition began.
    pub generation: u32,
}

impl From<Option<Transition>> for stockade_breaker_transition {
    fn from(t: Option<Transition>) -> Self {
        match t {
            Some(t) => stockade_breaker_transition {
                happened: true,
                from: t.from.into(),
                to: t.to.into(),
                generation: t.generation,
            },
            None => stockade_breaker_transition {
                happened: false,
                from: stockade_breaker_state::Closed,
                to: stockade_breaker_state::Closed,
                generation: 0,
            },
        }
    }
}

/// A snapshot of a breaker's state and counters (the core's
/// `BreakerMetrics`). Counters wrap at `UINT32_MAX`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct stockade_breaker_metrics {
    /// The state.
    pub state: stockade_breaker_state,
    /// Whether a failure-rate window is configured (`window_*` valid).
    pub has_window: bool,
    /// The generation (incremented by every transition, wrapping).
    pub generation: u32,
    /// Consecutive failures (closed; 0 otherwise).
    pub consecutive_failures: u32,
    /// Probes in flight (half-open; 0 otherwise).
    pub probes_in_flight: u32,
    /// Successful probes in the current round (half-open; 0 otherwise).
    pub probe_successes: u32,
    /// Calls in the failure-rate window.
    pub window_calls: u32,
    /// Failed calls in the failure-rate window.
    pub window_failures: u32,
    /// Failures counted (slow calls included).
    pub failures: u32,
    /// Slow calls counted as failures.
    pub slow_calls: u32,
    /// Calls rejected.
    pub rejections: u32,
    /// Transitions (new half-open rounds and manual operations included).
    pub transitions: u32,
    /// Transitions that changed the state.
    pub state_changes: u32,
    /// Verdicts ignored because their token was stale or already reported.
    pub stale_verdicts: u32,
    /// When the current generation began, in the clock's nanoseconds.
    pub last_transition_ns: u64,
}

impl From<BreakerMetrics> for stockade_breaker_metrics {
    fn from(m: BreakerMetrics) -> Self {
        stockade_breaker_metrics {
            state: m.state.into(),
            has_window: m.window.is_some(),
            generation: m.generation,
            consecutive_failures: m.consecutive_failures,
            probes_in_flight: m.probes_in_flight,
            probe_successes: m.probe_successes,
            window_calls: m.window.map_or(0, |w| w.calls),
            window_failures: m.window.map_or(0, |w| w.failures),
            failures: m.failures,
            slow_calls: m.slow_calls,
            rejections: m.rejections,
            transitions: m.transitions,
            state_changes: m.state_changes,
            stale_verdicts: m.stale_verdicts,
            last_transition_ns: m.last_transition.as_nanos(),
        }
    }
}

/// Bytes of storage a `stockade_breaker` needs (every supported target).
pub const STOCKADE_BREAKER_SIZE: usize = 176;
/// Alignment a `stockade_breaker`'s storage needs.
pub const STOCKADE_BREAKER_ALIGN: usize = 8;

assert_storage_fits!(
    CircuitBreaker,
    STOCKADE_BREAKER_SIZE,
    STOCKADE_BREAKER_ALIGN
);
const _: () = assert!(
    CircuitBreaker::SIZE <= STOCKADE_BREAKER_SIZE
        && CircuitBreaker::ALIGN <= STOCKADE_BREAKER_ALIGN
);

/// A lock-free circuit breaker (the core's `CircuitBreaker`) in caller
/// storage. Every function on it may be called from any number of threads
/// (and interrupt handlers) at once.
pub struct stockade_breaker {
    _opaque: [u8; 0],
}

/// The spec's defaults: `failure_threshold` 5, `reset_timeout_ms` 60000,
/// `half_open_timeout_ms` 30000, `monitor_interval_ms` 5000, one
/// half-open probe; no early close, failure-rate rule or slow-call
/// threshold.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_breaker_config_default() -> stockade_breaker_config {
    RawBreakerConfig::DEFAULT.into()
}

/// Validates `config` and makes a closed breaker in `storage`
/// (`STOCKADE_BREAKER_SIZE` bytes aligned to `STOCKADE_BREAKER_ALIGN`);
/// `*out` = the breaker (the address of `storage`).
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (a count or timeout of 0, a count above the
///   layout's maximum, a failure-rate rule out of range; `*error` names
///   it if not NULL); `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed (do not
///   reuse the storage while another thread may still use the breaker).
/// - Thread safety: share the breaker freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_init(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_breaker_config,
    error: *mut stockade_config_error,
    out: *mut *mut stockade_breaker,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<CircuitBreaker>(storage, storage_size, STOCKADE_BREAKER_SIZE)?;
        let result = config.to_core().and_then(CircuitBreaker::new);
        // SAFETY: `error` valid or NULL.
        let breaker = unsafe { config_error::check(result, error) }?;
        // SAFETY: `slot` checked for size and alignment, writable; `out`
        // valid for writes.
        unsafe {
            slot.write(breaker);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// `stockade_breaker_init` without the error description: the same
/// checks and the same breaker, but a refused config is `INVALID_CONFIG`
/// alone, with no `stockade_config_error` to say why. For firmware: the
/// code that describes a refusal is much of `stockade_breaker_init`'s
/// flash, and a firmware that never calls `stockade_breaker_init` links
/// none of it (the README's "Firmware cost" table). Test a config with
/// `stockade_breaker_init` on the host to learn what is wrong with it.
///
/// - Statuses: `OK`; `NULL_ARGUMENT` (`storage`, `config`, `out`);
///   `INVALID_CONFIG` (every config `stockade_breaker_init` refuses);
///   `STORAGE_TOO_SMALL`; `STORAGE_MISALIGNED`.
/// - Ownership: the caller owns the storage; no cleanup is needed (do not
///   reuse the storage while another thread may still use the breaker).
/// - Thread safety: share the breaker freely. Blocks: no.
///
/// # Safety
///
/// `storage` writable for `storage_size` bytes; other pointers valid or
/// NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_init_lean(
    storage: *mut c_void,
    storage_size: usize,
    config: *const stockade_breaker_config,
    out: *mut *mut stockade_breaker,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let config = *unsafe { arg(config) }?;
        let out = Out::new(out)?;
        let slot = self::storage::<CircuitBreaker>(storage, storage_size, STOCKADE_BREAKER_SIZE)?;
        let breaker =
            CircuitBreaker::from_raw_lean(&config.into()).ok_or(stockade_status::InvalidConfig)?;
        // SAFETY: `slot` checked for size and alignment, writable; `out`
        // valid for writes.
        unsafe {
            slot.write(breaker);
            out.write(slot.cast());
        }
        Ok(())
    })
}

/// # Safety
///
/// A non-NULL `b` must come from `stockade_breaker_init`.
pub(crate) unsafe fn breaker<'a>(
    b: *const stockade_breaker,
) -> Result<&'a CircuitBreaker, stockade_status> {
    // SAFETY: function contract.
    unsafe { arg(b.cast::<CircuitBreaker>()) }
}

/// The status of a rejection: open or forced open, or half-open with
/// every probe taken.
pub(crate) fn rejection_status(r: &BreakerRejected) -> stockade_status {
    match r.state() {
        BreakerState::HalfOpen => stockade_status::BreakerHalfOpenFull,
        _ => stockade_status::BreakerOpen,
    }
}

/// Writes an optional transition out-parameter.
///
/// # Safety
///
/// A non-NULL `out` must be valid for writes.
unsafe fn write_transition(out: *mut stockade_breaker_transition, t: Option<Transition>) {
    if let Ok(out) = Out::new(out) {
        // SAFETY: non-NULL, valid for writes (caller's contract).
        unsafe { out.write(t.into()) };
    }
}

/// Asks to make a call. On `OK`, `*out_token` records the admission:
/// make the call, then report it with `stockade_breaker_report`.
///
/// - Statuses: `OK`; `BREAKER_OPEN` (open or forced open: do not call);
///   `BREAKER_HALF_OPEN_FULL` (half-open, every probe taken);
///   `NULL_ARGUMENT` (`breaker`, `clock` or its `now_ns`, `out_token`).
///   On a rejection `*retry_after_ms`, if not NULL, is set to how long
///   until a call may be admitted (`UINT64_MAX` when forced open).
/// - `transition` (optional): whether this admission moved the breaker
///   (open to half-open, or the end of a half-open round), on `OK`.
/// - Thread safety: any thread; lock-free. Blocks: no. Reads the clock
///   only when the decision needs time (never on a closed breaker without
///   a slow-call threshold).
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_acquire(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    out_token: *mut stockade_breaker_token,
    transition: *mut stockade_breaker_transition,
    retry_after_ms: *mut u64,
) -> stockade_status {
    // The fast path cannot panic; the general path runs inside the panic
    // boundary (see `no_unwind`).
    no_unwind(|| {
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        // SAFETY: function contract.
        if unsafe { arg(clock) }?.now_ns.is_none() {
            return Err(stockade_status::NullArgument);
        }
        let out = Out::new(out_token)?;
        // The common case (closed, no slow-call threshold): one load, no
        // clock, no transition.
        if let Some(permit) = b.try_acquire_without_clock() {
            // SAFETY: valid for writes or NULL (function contract).
            unsafe {
                write_transition(transition, None);
                out.write(permit.into_token().into());
            }
            return Ok(stockade_status::Ok);
        }
        // SAFETY: `clock` checked above; other pointers valid or NULL.
        Ok(unsafe { acquire_general(b, clock, out, transition, retry_after_ms) })
    })
}

/// `stockade_breaker_acquire` past its fast path: every state, with clock
/// readings and transitions. Out of line, so that the exported function
/// stays small (and inlinable into C under cross-language LTO), and
/// `extern "C"` (it cannot unwind: its body runs inside the panic
/// boundary), so that calling it needs no landing pad there.
///
/// # Safety
///
/// `clock` non-NULL and valid; `out` valid for writes; other pointers
/// valid or NULL.
#[inline(never)]
unsafe extern "C" fn acquire_general(
    b: &CircuitBreaker,
    clock: *const stockade_clock,
    out: Out<stockade_breaker_token>,
    transition: *mut stockade_breaker_transition,
    retry_after_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        match b.try_acquire(&clock) {
            Ok(permit) => {
                let t = permit.transition();
                // SAFETY: valid for writes (function contract).
                unsafe {
                    write_transition(transition, t);
                    out.write(permit.into_token().into());
                }
                Ok(())
            }
            Err(rejected) => {
                // SAFETY: valid or NULL (function contract).
                unsafe { write_retry_after(retry_after_ms, &rejected) };
                Err(rejection_status(&rejected))
            }
        }
    })
}

/// Writes the optional `retry_after_ms` of a rejection (`UINT64_MAX`:
/// forced open). Out of line and cold: the admitting path stays small.
///
/// # Safety
///
/// A non-NULL `out` must be valid for writes.
#[cold]
#[inline(never)]
unsafe fn write_retry_after(out: *mut u64, rejected: &BreakerRejected) {
    if let Ok(after) = Out::new(out) {
        let ms = rejected.retry_after().map_or(u64::MAX, millis);
        // SAFETY: non-NULL, valid for writes (caller's contract).
        unsafe { after.write(ms) };
    }
}

/// The call `stockade_breaker_call` protects: returns 0
/// (`STOCKADE_OUTCOME_SUCCESS`) on success and anything else on failure
/// (the blocking tier's `stockade_callback` convention). Called with the
/// `user_data` given to `stockade_breaker_call`, on the calling thread; it
/// must not unwind (no C++ exception may escape it).
pub type stockade_call_fn = Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>;

/// Acquire, run, report in one call: asks `breaker` to admit a call and,
/// if admitted, runs `call(user_data)` and reports its verdict (0 is a
/// success, anything else a failure; a success slower than
/// `slow_call_threshold_ms` counts as a failure). The same as
/// `stockade_breaker_acquire`, the call, then `stockade_breaker_report`,
/// without a token to keep: the verdict is reported exactly once.
///
/// - Statuses: `OK` (the call ran and its verdict was reported; a verdict
///   the breaker ignores because it changed state during the call, as
///   `TOKEN_STALE` would say, is still `OK`); `BREAKER_OPEN`,
///   `BREAKER_HALF_OPEN_FULL` (not run: `*retry_after_ms`, if not NULL,
///   as `stockade_breaker_acquire` sets it); `NULL_ARGUMENT` (`breaker`,
///   `clock` or its `now_ns`, `call`; nothing ran).
/// - `out_result` (optional): on `OK`, what `call` returned.
/// - Thread safety: any thread; lock-free around the call. Blocks: only
///   as long as `call` does.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; `call` callable with
/// `user_data`; other pointers valid or NULL.
// `#[inline]` does not change how Rust treats an exported function (hence
// the lint, allowed here), but rustc still gives the LLVM function its
// `inlinehint` attribute (checked with rustc 1.85 and 1.95), which the C
// compiler reads under cross-language LTO: it raises clang's inlining
// threshold for this function from 225 to 325, above its cost (300 with
// clang 19: the function pointer call and the two out-of-line general
// paths are calls). tests/c/lto.sh fails if it is not inlined.
#[allow(unused_attributes)]
#[inline]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_call(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    call: stockade_call_fn,
    user_data: *mut c_void,
    out_result: *mut c_int,
    retry_after_ms: *mut u64,
) -> stockade_status {
    // The fast path cannot panic (`call` is C: it cannot unwind into Rust);
    // the general paths run inside the panic boundary (see `no_unwind`).
    no_unwind(|| {
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        // SAFETY: function contract.
        if unsafe { arg(clock) }?.now_ns.is_none() {
            return Err(stockade_status::NullArgument);
        }
        let call = call.ok_or(stockade_status::NullArgument)?;
        let Some(permit) = b.try_acquire_without_clock() else {
            // SAFETY: `clock` checked above; other pointers as the caller
            // promised.
            return Ok(unsafe {
                call_general(b, clock, call, user_data, out_result, retry_after_ms)
            });
        };
        // Only the generation is kept across the call: the closed path's
        // token has no start time, and the general report rebuilds it.
        let generation = permit.into_token().generation();
        // SAFETY: the caller promised `call` may be called with `user_data`.
        let result = unsafe { call(user_data) };
        // The common case, a success that changes nothing: one load.
        if result == 0 && b.success_is_noop(generation) {
            // SAFETY: valid for writes or NULL (function contract).
            unsafe { write_result(out_result, result) };
            return Ok(stockade_status::Ok);
        }
        // SAFETY: `clock` checked above; `out_result` valid or NULL.
        Ok(unsafe { report_call(b, generation, result, clock, out_result) })
    })
}

/// Writes the optional result out-parameter of `stockade_breaker_call`.
///
/// # Safety
///
/// `out` valid for writes or NULL.
#[inline(always)]
unsafe fn write_result(out: *mut c_int, result: c_int) {
    if let Ok(out) = Out::new(out) {
        // SAFETY: non-NULL, valid for writes (caller's contract).
        unsafe { out.write(result) };
    }
}

/// Reports the verdict of `stockade_breaker_call`'s call (0: success),
/// admitted on the closed path in `generation`, then writes its result.
///
/// Out of line and `extern "C"`, as [`acquire_general`].
///
/// # Safety
///
/// `clock` non-NULL and valid; `out_result` valid for writes or NULL.
#[inline(never)]
unsafe extern "C" fn report_call(
    b: &CircuitBreaker,
    generation: u32,
    result: c_int,
    clock: *const stockade_clock,
    out_result: *mut c_int,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let token = BreakerToken::from_parts(generation, None);
        let permit = BreakerPermit::from_token(b, token);
        if result == 0 {
            permit.success(&clock);
        } else {
            permit.failure(&clock);
        }
        // SAFETY: valid for writes or NULL (function contract).
        unsafe { write_result(out_result, result) };
        Ok(())
    })
}

/// `stockade_breaker_call` past its fast path: admission with clock
/// readings and transitions, or a rejection. Out of line and
/// `extern "C"`, as [`acquire_general`].
///
/// # Safety
///
/// As `stockade_breaker_call`, with `clock` checked.
#[inline(never)]
unsafe extern "C" fn call_general(
    b: &CircuitBreaker,
    clock: *const stockade_clock,
    call: unsafe extern "C" fn(user_data: *mut c_void) -> c_int,
    user_data: *mut c_void,
    out_result: *mut c_int,
    retry_after_ms: *mut u64,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        match b.try_acquire(&clock) {
            Ok(permit) => {
                // SAFETY: the caller promised `call` may be called with
                // `user_data`.
                let result = unsafe { call(user_data) };
                if result == 0 {
                    permit.success(&clock);
                } else {
                    permit.failure(&clock);
                }
                // SAFETY: valid for writes or NULL (function contract).
                unsafe { write_result(out_result, result) };
                Ok(())
            }
            Err(rejected) => {
                // SAFETY: valid or NULL (function contract).
                unsafe { write_retry_after(retry_after_ms, &rejected) };
                Err(rejection_status(&rejected))
            }
        }
    })
}

/// Reports the verdict of an admitted call: `outcome` is a
/// `stockade_outcome` (`SUCCESS`, `FAILURE`, `IGNORED`).
///
/// - Statuses: `OK` (counted); `TOKEN_ALREADY_USED` (this token was
///   reported already, or, for a half-open probe, a copy of it was:
///   nothing counted); `TOKEN_STALE` (the breaker changed state since the
///   call was admitted: nothing counted); `INVALID_ARGUMENT` (unknown
///   `outcome`: the token stays unused); `NULL_ARGUMENT`. Every report
///   that reaches the breaker marks the token used. (A *copy* of a token
///   reported to a closed breaker cannot be told from another call's
///   verdict, since the core's token carries only its generation; the
///   state stays consistent whatever is reported.)
/// - `transition` (optional): the transition this verdict performed (e.g.
///   closed to open), on `OK`.
/// - Thread safety: any thread; lock-free. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_report(
    breaker: *const stockade_breaker,
    token: *mut stockade_breaker_token,
    outcome: u8,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    // The fast path cannot panic; the general path runs inside the panic
    // boundary (see `no_unwind`).
    no_unwind(|| {
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        // SAFETY: function contract.
        let token = unsafe { crate::boundary::arg_mut(token) }?;
        // SAFETY: function contract.
        if unsafe { arg(clock) }?.now_ns.is_none() {
            return Err(stockade_status::NullArgument);
        }
        let outcome = outcome_from_u8(outcome).ok_or(stockade_status::InvalidArgument)?;
        // The mark is a store, and it is needed: on a closed breaker the
        // generation check cannot tell a second report of this call from
        // another call's report (a failure would count twice).
        if token.used != 0 {
            return Err(stockade_status::TokenAlreadyUsed);
        }
        token.used = 1;
        // The common case, a success that changes nothing, after one load
        // and without building the core's token.
        if outcome == Outcome::Success && b.success_is_noop(token.generation) {
            // SAFETY: valid or NULL (function contract).
            unsafe { write_transition(transition, None) };
            return Ok(stockade_status::Ok);
        }
        // SAFETY: `clock` checked above; `transition` valid or NULL.
        Ok(unsafe { report_general(b, *token, outcome, clock, transition) })
    })
}

/// `stockade_breaker_report` past its fast path: every state and outcome.
/// Out of line and `extern "C"`, as [`acquire_general`].
///
/// # Safety
///
/// `clock` non-NULL and valid; `transition` valid or NULL.
#[inline(never)]
unsafe extern "C" fn report_general(
    b: &CircuitBreaker,
    token: stockade_breaker_token,
    outcome: Outcome,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        match b.report(token.into(), outcome, &clock) {
            Ok(t) => {
                // SAFETY: valid or NULL (function contract).
                unsafe { write_transition(transition, t) };
                Ok(())
            }
            Err(TokenError::AlreadyReported) => Err(stockade_status::TokenAlreadyUsed),
            Err(_) => Err(stockade_status::TokenStale),
        }
    })
}

/// `*out_state` = the state (one atomic load; an open breaker whose
/// reset timeout has passed reads open until the next acquire).
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; `out_state` valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_get_state(
    breaker: *const stockade_breaker,
    out_state: *mut stockade_breaker_state,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        let out = Out::new(out_state)?;
        // SAFETY: valid for writes.
        unsafe { out.write(b.state().into()) };
        Ok(())
    })
}

/// `*out` = a snapshot of the breaker's state and counters.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`.
/// - Thread safety: any thread (fields are read one after another, not
///   atomically together). Blocks: no. Reads the clock once.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_get_metrics(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    out: *mut stockade_breaker_metrics,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let out = Out::new(out)?;
        // SAFETY: valid for writes.
        unsafe { out.write(b.metrics(&clock).into()) };
        Ok(())
    })
}

/// Which manual operation [`manual`] performs.
#[derive(Clone, Copy)]
enum Manual {
    Trip,
    Reset,
    ForceOpen,
    Disable,
}

/// # Safety
///
/// As the exported manual operations.
unsafe fn manual(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
    op: Manual,
) -> stockade_status {
    ffi_boundary!({
        // SAFETY: function contract.
        let b = unsafe { self::breaker(breaker) }?;
        // SAFETY: function contract.
        let clock = unsafe { CClock::from_ptr(clock) }?;
        let t = match op {
            Manual::Trip => b.trip(&clock),
            Manual::Reset => b.reset(&clock),
            Manual::ForceOpen => b.force_open(&clock),
            Manual::Disable => b.disable(&clock),
        };
        // SAFETY: valid or NULL.
        unsafe { write_transition(transition, Some(t)) };
        Ok(())
    })
}

/// Opens the breaker now (as if the failure threshold was reached); it
/// half-opens after `reset_timeout_ms` as usual. `transition` (optional)
/// receives the transition.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_trip(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    // SAFETY: forwarded contract.
    unsafe { manual(breaker, clock, transition, Manual::Trip) }
}

/// Closes the breaker now, clearing its counts (also ends forced open and
/// disabled). `transition` (optional) receives the transition.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_reset(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    // SAFETY: forwarded contract.
    unsafe { manual(breaker, clock, transition, Manual::Reset) }
}

/// Holds the breaker open until `stockade_breaker_reset`.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_force_open(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    // SAFETY: forwarded contract.
    unsafe { manual(breaker, clock, transition, Manual::ForceOpen) }
}

/// Admits every call and records nothing until `stockade_breaker_reset`.
///
/// - Statuses: `OK`; `NULL_ARGUMENT`. Thread safety: any thread. Blocks: no.
///
/// # Safety
///
/// `breaker` from `stockade_breaker_init`; other pointers valid or NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stockade_breaker_disable(
    breaker: *const stockade_breaker,
    clock: *const stockade_clock,
    transition: *mut stockade_breaker_transition,
) -> stockade_status {
    // SAFETY: forwarded contract.
    unsafe { manual(breaker, clock, transition, Manual::Disable) }
}

/// The name of a `stockade_breaker_state` (`"half_open"`), or `"unknown"`:
/// a static NUL-terminated string.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_breaker_state_str(state: u8) -> *const core::ffi::c_char {
    match state {
        0 => c"closed",
        1 => c"open",
        2 => c"half_open",
        3 => c"forced_open",
        4 => c"disabled",
        _ => c"unknown",
    }
    .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_core() {
        for s in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
            BreakerState::ForcedOpen,
            BreakerState::Disabled,
        ] {
            assert_eq!(stockade_breaker_state::from(s) as u8, s as u8);
            // SAFETY: a static C string.
            let name = unsafe { core::ffi::CStr::from_ptr(stockade_breaker_state_str(s as u8)) };
            assert_eq!(name.to_str().unwrap(), s.as_str());
        }
        for o in [Outcome::Success, Outcome::Failure, Outcome::Ignored] {
            assert_eq!(outcome_from_u8(o as u8), Some(o));
        }
        let c = stockade_breaker_config_default();
        assert_eq!(RawBreakerConfig::from(c), RawBreakerConfig::DEFAULT);
        let t = BreakerToken::from_parts(7, Some(Timestamp::from_nanos(9)));
        assert_eq!(BreakerToken::from(stockade_breaker_token::from(t)), t);
    }
}
