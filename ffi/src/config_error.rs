//! [`stockade_config_error`]: which option of a config is invalid, and why.

use core::ffi::{CStr, c_char};
#[cfg(feature = "std")]
use core::fmt::{self, Write};

use stockade_core::{ConfigError, ConfigOption, ConfigProblem, ConfigValue};

use crate::status::stockade_status;

/// Bytes of `stockade_config_error.message`, NUL included.
pub const STOCKADE_CONFIG_ERROR_MESSAGE_LEN: usize = 128;
/// Bytes of `stockade_config_error.option_name`, NUL included.
pub const STOCKADE_CONFIG_OPTION_NAME_LEN: usize = 32;

/// What is wrong with a config: the optional last out-parameter of every
/// function that validates one. Filled only when the function returns
/// `STOCKADE_STATUS_INVALID_CONFIG`; pass NULL when the status is enough.
///
/// Plain data, caller-owned (a local variable is fine).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct stockade_config_error {
    /// The option's stable number (the core's `ConfigOption`: e.g. 1
    /// `failure_threshold`, 24 `queue_timeout_ms`, 43 `backoff_factor`);
    /// numbers are never reused. `stockade_config_option_str` names it.
    pub option: u16,
    /// `EXCEEDS`: the number of the option whose value `limit` is; 0
    /// otherwise.
    pub other_option: u16,
    /// What is wrong: a `stockade_config_problem` number
    /// (`stockade_config_problem_str` gives the rule as a static string).
    pub problem: u8,
    /// The unit of `value` and `limit`: a `stockade_config_unit` number.
    pub unit: u8,
    /// The value given when `unit` is `COUNT` (the count) or
    /// `MILLISECONDS` (whole milliseconds, truncated); else 0.
    pub value: u64,
    /// `TOO_LARGE`: the largest accepted value; `TOO_SMALL`: the smallest
    /// (in `MILLISECONDS`, rounded up to a whole ms); `EXCEEDS`: the other
    /// option's value — for `COUNT` and `MILLISECONDS` as in `value`; else
    /// 0.
    pub limit: u64,
    /// The value given when `unit` is `FACTOR`; else 0.
    pub value_factor: f64,
    /// The limit (as `limit`) when `unit` is `FACTOR`; else 0.
    pub limit_factor: f64,
    /// The option's name as the C config struct field that holds it
    /// (`"backoff_factor"`, `"reset_timeout_ms"`: a duration's name ends in
    /// `_ms`), NUL-terminated; as `stockade_config_option_str(option)`.
    /// **Hosted builds only**: the `no_std` (firmware) library leaves it
    /// empty, so that a firmware does not link the table of names; call
    /// `stockade_config_option_str(option)` when the name is wanted.
    pub option_name: [c_char; STOCKADE_CONFIG_OPTION_NAME_LEN],
    /// `invalid <option_name> = <value>: <rule>` in the C field's units,
    /// NUL-terminated, truncated to fit: the value is the number the field
    /// held (whole milliseconds for a duration), a duration limit reads
    /// `<n> ms`, e.g. `"invalid backoff_factor = 0.5: must be at least
    /// 1"`, `"invalid reset_timeout_ms = 0: must be at least 1 ms"`,
    /// `"invalid initial_delay_ms = 40000: must not exceed max_delay_ms (=
    /// 30000)"`. (Rust and Python word the same error with their own names
    /// and units.) **Hosted builds only**: the `no_std` (firmware) library
    /// does not format messages and leaves it empty; build one from the
    /// fields above if needed.
    pub message: [c_char; STOCKADE_CONFIG_ERROR_MESSAGE_LEN],
}

/// What is wrong with a config value (`stockade_config_error.problem`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_config_problem {
    /// The value must be greater than zero.
    Zero = 1,
    /// The value is above `limit`.
    TooLarge = 2,
    /// The value is below `limit`.
    TooSmall = 3,
    /// The value exceeds option `other_option`'s value `limit`.
    Exceeds = 4,
    /// The value is not a finite number.
    NotFinite = 5,
    /// The value is malformed.
    Invalid = 6,
    /// The option needs a part of the library this build was made
    /// without (the failure-rate window in a core-tier build without
    /// the `failure-rate` feature).
    Unsupported = 7,
    /// A problem this header does not know.
    Other = 255,
}

/// The unit of `stockade_config_error.value` and `.limit`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum stockade_config_unit {
    /// No single number (`value` and `limit` are 0).
    None = 0,
    /// A count (permits, attempts, calls, percent).
    Count = 1,
    /// A duration in whole milliseconds.
    Milliseconds = 2,
    /// A real-valued factor or ratio.
    Factor = 3,
}

/// One config option's two names: Rust's (the core's
/// [`ConfigOption::as_str`], what Rust and Python errors print) and C's (the
/// field of the C config struct, `_ms` for a duration in milliseconds).
struct OptionNames {
    option: ConfigOption,
    /// Read by the unit test that checks the table against the core.
    #[cfg_attr(not(test), allow(dead_code))]
    rust: &'static str,
    c: &'static CStr,
}

/// The table of every option's Rust and C names, in option-number order
/// (a unit test checks that it covers every option and that the Rust names
/// are the core's). Options no C config struct has (`retryable_errors`: a
/// C retry takes a classifier; `idle_timeout`: fixed in C) keep the Rust
/// spelling, with `_ms` for the duration.
const OPTION_NAMES: [OptionNames; 32] = {
    const fn n(option: ConfigOption, rust: &'static str, c: &'static CStr) -> OptionNames {
        OptionNames { option, rust, c }
    }
    use ConfigOption as O;
    [
        n(
            O::FailureThreshold,
            "failure_threshold",
            c"failure_threshold",
        ),
        n(O::ResetTimeout, "reset_timeout", c"reset_timeout_ms"),
        n(
            O::HalfOpenTimeout,
            "half_open_timeout",
            c"half_open_timeout_ms",
        ),
        n(
            O::MonitorInterval,
            "monitor_interval",
            c"monitor_interval_ms",
        ),
        n(
            O::HalfOpenMaxProbes,
            "half_open_max_probes",
            c"half_open_max_probes",
        ),
        n(
            O::HalfOpenSuccessesToClose,
            "half_open_successes_to_close",
            c"half_open_successes_to_close",
        ),
        n(
            O::FailureRateThreshold,
            "failure_rate_threshold",
            c"failure_rate_threshold",
        ),
        n(
            O::FailureRateWindowSize,
            "failure_rate_window_size",
            c"failure_rate_window_size",
        ),
        n(
            O::FailureRateMinimumCalls,
            "failure_rate_minimum_calls",
            c"failure_rate_minimum_calls",
        ),
        n(
            O::SlowCallThreshold,
            "slow_call_threshold",
            c"slow_call_threshold_ms",
        ),
        n(
            O::RequestsPerPeriod,
            "requests_per_period",
            c"requests_per_period",
        ),
        n(O::Period, "period", c"period_ms"),
        n(O::Burst, "burst", c"burst"),
        n(O::MaxQueueSize, "max_queue_size", c"max_queue_size"),
        n(O::QueueTimeout, "queue_timeout", c"queue_timeout_ms"),
        n(O::Mode, "mode", c"mode"),
        n(O::MaxConcurrent, "max_concurrent", c"max_concurrent"),
        n(O::MaxQueue, "max_queue", c"max_queue"),
        n(O::MaxAttempts, "max_attempts", c"max_attempts"),
        n(O::InitialDelay, "initial_delay", c"initial_delay_ms"),
        n(O::MaxDelay, "max_delay", c"max_delay_ms"),
        n(O::BackoffFactor, "backoff_factor", c"backoff_factor"),
        n(O::MaxElapsed, "max_elapsed", c"max_elapsed_ms"),
        n(O::RetryableErrors, "retryable_errors", c"retryable_errors"),
        n(O::Jitter, "jitter", c"jitter"),
        n(O::BudgetRatio, "ratio", c"ratio"),
        n(
            O::MinRetriesPerSecond,
            "min_retries_per_second",
            c"min_retries_per_second",
        ),
        n(O::MaxTokens, "max_tokens", c"max_tokens"),
        n(O::Timeout, "timeout", c"timeout_ms"),
        n(O::MaxWorkers, "max_workers", c"max_workers"),
        n(O::IdleTimeout, "idle_timeout", c"idle_timeout_ms"),
        n(O::DefaultTimeout, "default_timeout", c"default_timeout_ms"),
    ]
};

/// The option's C name: its config struct field (`"reset_timeout_ms"`).
pub(crate) fn c_name(option: ConfigOption) -> &'static CStr {
    OPTION_NAMES
        .iter()
        .find(|names| names.option == option)
        .map_or(c"unknown option", |names| names.c)
}

/// A value as C sets it: a count, whole milliseconds (`round_up`: the
/// smallest whole number of ms at least the value, for a lower limit), or
/// a factor. `ms` is set for a duration.
#[cfg(feature = "std")]
fn c_value(v: ConfigValue, round_up: bool) -> Option<(u128, Option<f64>, bool)> {
    match v {
        ConfigValue::Count(n) => Some((u128::from(n), None, false)),
        ConfigValue::Duration(d) => {
            let nanos = d.as_nanos();
            let ms = if round_up {
                nanos.div_ceil(1_000_000)
            } else {
                nanos / 1_000_000
            };
            Some((ms, None, true))
        }
        ConfigValue::Factor(x) => Some((0, Some(x), false)),
        _ => None,
    }
}

/// Writes a value as C sets it; `unit` appends `" ms"` to a duration.
#[cfg(feature = "std")]
fn write_c_value(f: &mut impl Write, v: ConfigValue, round_up: bool, unit: bool) -> fmt::Result {
    match c_value(v, round_up) {
        Some((_, Some(x), _)) => write!(f, "{x}"),
        Some((n, None, true)) if unit => write!(f, "{n} ms"),
        Some((n, None, _)) => write!(f, "{n}"),
        None => f.write_str("(given value)"),
    }
}

/// The message of `err` in C terms: `invalid <field> = <value>: <rule>`,
/// with the C field name and the value as C set it (milliseconds for a
/// duration, printed as the whole number the field held); limits of
/// durations read `<n> ms`.
#[cfg(feature = "std")]
fn write_c_message(f: &mut impl Write, err: &ConfigError) -> fmt::Result {
    let name = c_name(err.option).to_str().unwrap_or("");
    write!(f, "invalid {name}")?;
    if !matches!(err.value, ConfigValue::Other) {
        f.write_str(" = ")?;
        write_c_value(f, err.value, false, false)?;
    }
    f.write_str(": ")?;
    match err.problem {
        ConfigProblem::Zero => match err.value {
            ConfigValue::Duration(_) => f.write_str("must be at least 1 ms"),
            ConfigValue::Count(_) => f.write_str("must be at least 1"),
            _ => f.write_str("must be greater than zero"),
        },
        ConfigProblem::TooLarge { max } => {
            f.write_str("must be at most ")?;
            write_c_value(f, max, false, true)
        }
        ConfigProblem::TooSmall { min } => {
            f.write_str("must be at least ")?;
            write_c_value(f, min, true, true)
        }
        ConfigProblem::Exceeds { other, limit } => {
            let other = c_name(other).to_str().unwrap_or("");
            write!(f, "must not exceed {other} (= ")?;
            write_c_value(f, limit, false, false)?;
            f.write_str(")")
        }
        ConfigProblem::NotFinite => f.write_str("must be a finite number"),
        ConfigProblem::Invalid => f.write_str("is malformed"),
        ConfigProblem::Unsupported { feature } => {
            write!(f, "needs the `{feature}` feature, which this build lacks")
        }
        _ => f.write_str("is invalid"),
    }
}

/// `Display` of [`write_c_message`].
#[cfg(feature = "std")]
pub(crate) struct CMessage<'a>(pub(crate) &'a ConfigError);

#[cfg(feature = "std")]
impl fmt::Display for CMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_c_message(f, self.0)
    }
}

/// A core value as (unit, integer, factor), without float arithmetic
/// (firmware would link soft-float routines for it).
fn value_parts(v: ConfigValue) -> (stockade_config_unit, u64, f64) {
    match v {
        ConfigValue::Count(n) => (stockade_config_unit::Count, n, 0.0),
        ConfigValue::Duration(d) => (
            stockade_config_unit::Milliseconds,
            crate::time::millis(d),
            0.0,
        ),
        ConfigValue::Factor(x) => (stockade_config_unit::Factor, 0, x),
        _ => (stockade_config_unit::None, 0, 0.0),
    }
}

/// As [`value_parts`], a duration rounded up to a whole millisecond (a
/// lower limit: the smallest value C can set that is accepted).
fn value_parts_up(v: ConfigValue) -> (stockade_config_unit, u64, f64) {
    match v {
        ConfigValue::Duration(d) => {
            let whole = crate::time::millis(d);
            let up = if d.subsec_nanos() % 1_000_000 != 0 {
                whole.saturating_add(1)
            } else {
                whole
            };
            (stockade_config_unit::Milliseconds, up, 0.0)
        }
        v => value_parts(v),
    }
}

/// The rule broken by problem number `problem` as a static NUL-terminated
/// string (`"must be greater than zero"`, `"must be at most the limit"`,
/// ...), or `"unknown problem"`; not to be freed. Available in every build
/// (firmware too): with `stockade_config_option_str` it names an error
/// without formatting.
///
/// - Thread safety: safe from any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_config_problem_str(problem: u8) -> *const c_char {
    const ZERO: u8 = stockade_config_problem::Zero as u8;
    const TOO_LARGE: u8 = stockade_config_problem::TooLarge as u8;
    const TOO_SMALL: u8 = stockade_config_problem::TooSmall as u8;
    const EXCEEDS: u8 = stockade_config_problem::Exceeds as u8;
    const NOT_FINITE: u8 = stockade_config_problem::NotFinite as u8;
    const INVALID: u8 = stockade_config_problem::Invalid as u8;
    const UNSUPPORTED: u8 = stockade_config_problem::Unsupported as u8;
    match problem {
        ZERO => c"must be greater than zero",
        TOO_LARGE => c"must be at most the limit",
        TOO_SMALL => c"must be at least the limit",
        EXCEEDS => c"must not exceed the other option",
        NOT_FINITE => c"must be a finite number",
        INVALID => c"is malformed",
        UNSUPPORTED => c"needs a feature this build lacks",
        _ => c"unknown problem",
    }
    .as_ptr()
}

/// Writes into a C char buffer, always leaving room for the NUL and
/// dropping what does not fit.
#[cfg(feature = "std")]
struct CBuf<'a> {
    buf: &'a mut [c_char],
    len: usize,
}

#[cfg(feature = "std")]
impl Write for CBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len + 1 >= self.buf.len() {
                break;
            }
            self.buf[self.len] = b as c_char;
            self.len += 1;
        }
        Ok(())
    }
}

/// The byte of a C char (`c_char` is signed on some targets).
#[cfg(feature = "std")]
fn byte(c: c_char) -> u8 {
    u8::from_ne_bytes(c.to_ne_bytes())
}

/// `buf` := `args` as a NUL-terminated string, truncated to fit. Truncation
/// never splits a UTF-8 sequence.
#[cfg(feature = "std")]
pub(crate) fn write_c(buf: &mut [c_char], args: fmt::Arguments<'_>) {
    let mut w = CBuf { buf, len: 0 };
    let _ = w.write_fmt(args);
    let mut len = w.len;
    // Back off to a character boundary: drop continuation bytes (10xxxxxx)
    // and the lead byte of a sequence that was cut.
    if len + 1 >= w.buf.len() && len > 0 {
        let mut start = len;
        while start > 0 && byte(w.buf[start - 1]) & 0xC0 == 0x80 {
            start -= 1;
        }
        if start > 0 {
            let lead = byte(w.buf[start - 1]);
            let need = if lead >= 0xF0 {
                4
            } else if lead >= 0xE0 {
                3
            } else if lead >= 0xC0 {
                2
            } else {
                1
            };
            if need > 1 && len - (start - 1) < need {
                len = start - 1;
            }
        }
    }
    if let Some(nul) = w.buf.get_mut(len) {
        *nul = 0;
    }
}

/// The numeric fields of `err`'s C form: (option, other_option, problem,
/// unit, value, limit, value_factor, limit_factor). No float arithmetic
/// (firmware would link soft-float routines for it) and no table lookups.
fn numbers(err: &ConfigError) -> (u16, u16, u8, u8, u64, u64, f64, f64) {
    let (unit, value, value_factor) = value_parts(err.value);
    let none = (stockade_config_unit::None, 0, 0.0);
    let (problem, other_option, (_, limit, limit_factor)) = match err.problem {
        ConfigProblem::Zero => (stockade_config_problem::Zero, 0, none),
        ConfigProblem::TooLarge { max } => (stockade_config_problem::TooLarge, 0, value_parts(max)),
        ConfigProblem::TooSmall { min } => {
            (stockade_config_problem::TooSmall, 0, value_parts_up(min))
        }
        ConfigProblem::Exceeds { other, limit } => (
            stockade_config_problem::Exceeds,
            other as u16,
            value_parts(limit),
        ),
        ConfigProblem::NotFinite => (stockade_config_problem::NotFinite, 0, none),
        ConfigProblem::Invalid => (stockade_config_problem::Invalid, 0, none),
        ConfigProblem::Unsupported { .. } => (stockade_config_problem::Unsupported, 0, none),
        _ => (stockade_config_problem::Other, 0, none),
    };
    (
        err.option as u16,
        other_option,
        problem as u8,
        unit as u8,
        value,
        limit,
        value_factor,
        limit_factor,
    )
}

impl stockade_config_error {
    /// The C form of `err`: the numbers, the option's C name and (hosted
    /// builds) the message.
    #[cfg(feature = "std")]
    pub fn from_core(err: &ConfigError) -> stockade_config_error {
        let (option, other_option, problem, unit, value, limit, value_factor, limit_factor) =
            numbers(err);
        let mut out = stockade_config_error {
            option,
            other_option,
            problem,
            unit,
            value,
            limit,
            value_factor,
            limit_factor,
            option_name: [0; STOCKADE_CONFIG_OPTION_NAME_LEN],
            message: [0; STOCKADE_CONFIG_ERROR_MESSAGE_LEN],
        };
        // The C name without formatting (static bytes; every name fits).
        let name = c_name(err.option).to_bytes();
        for (slot, &b) in out.option_name.iter_mut().zip(name) {
            *slot = b as c_char;
        }
        if let Some(last) = out.option_name.last_mut() {
            *last = 0;
        }
        write_c(&mut out.message, format_args!("{}", CMessage(err)));
        out
    }
}

/// Writes `err`'s C form into `*out`. Hosted builds write
/// [`stockade_config_error::from_core`]; the `no_std` build writes the
/// numbers field by field and leaves `option_name` and `message` empty
/// (their first byte NUL): no name table, no 160-byte clear, no copy of the
/// struct, so a firmware that passes NULL pays a few dozen bytes for it.
///
/// # Safety
///
/// `out` valid for writes.
unsafe fn write_error(out: *mut stockade_config_error, err: &ConfigError) {
    #[cfg(feature = "std")]
    // SAFETY: valid for writes (caller's contract).
    unsafe {
        out.write(stockade_config_error::from_core(err));
    }
    #[cfg(not(feature = "std"))]
    {
        use core::ptr::addr_of_mut;
        let (option, other_option, problem, unit, value, limit, value_factor, limit_factor) =
            numbers(err);
        // SAFETY: each field of a struct valid for writes (caller's
        // contract); raw writes, no reference to uninitialised memory.
        unsafe {
            addr_of_mut!((*out).option).write(option);
            addr_of_mut!((*out).other_option).write(other_option);
            addr_of_mut!((*out).problem).write(problem);
            addr_of_mut!((*out).unit).write(unit);
            addr_of_mut!((*out).value).write(value);
            addr_of_mut!((*out).limit).write(limit);
            addr_of_mut!((*out).value_factor).write(value_factor);
            addr_of_mut!((*out).limit_factor).write(limit_factor);
            addr_of_mut!((*out).option_name).cast::<c_char>().write(0);
            addr_of_mut!((*out).message).cast::<c_char>().write(0);
        }
    }
}

/// Fills the optional out-parameter `error` from `err` and returns
/// `STOCKADE_STATUS_INVALID_CONFIG`.
///
/// # Safety
///
/// A non-NULL `error` must be valid for a write.
pub(crate) unsafe fn report(
    error: *mut stockade_config_error,
    err: &ConfigError,
) -> stockade_status {
    if !error.is_null() {
        // SAFETY: non-NULL, valid for writes per the caller's contract.
        unsafe { write_error(error, err) };
    }
    stockade_status::InvalidConfig
}

/// Converts a core config result, reporting an error through `error`.
///
/// # Safety
///
/// As [`report`].
pub(crate) unsafe fn check<T>(
    result: Result<T, ConfigError>,
    error: *mut stockade_config_error,
) -> Result<T, stockade_status> {
    // SAFETY: forwarded contract.
    result.map_err(|e| unsafe { report(error, &e) })
}

/// The C name of config option number `option`: the config struct field
/// (`"queue_timeout_ms"` for 24, `"backoff_factor"` for 43), or
/// `"unknown option"`; a static NUL-terminated string, not to be freed.
/// Durations carry their unit, `_ms` (Rust and Python name the same option
/// `queue_timeout`).
///
/// - Thread safety: safe from any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_config_option_str(option: u16) -> *const c_char {
    match ConfigOption::from_u16(option) {
        Some(o) => c_name(o).as_ptr(),
        None => c"unknown option".as_ptr(),
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn text(buf: &[c_char]) -> &str {
        // SAFETY: every buffer written by `write_c` is NUL-terminated.
        unsafe { CStr::from_ptr(buf.as_ptr()) }.to_str().unwrap()
    }

    #[test]
    fn the_table_names_every_option_in_rust_and_c() {
        let mut seen = 0;
        for n in 0..=u16::from(u8::MAX) {
            if let Some(o) = ConfigOption::from_u16(n) {
                assert_eq!(o as u16, n);
                let names = OPTION_NAMES.iter().find(|e| e.option == o).unwrap();
                assert_eq!(names.rust, o.as_str(), "Rust name of option {n}");
                // A duration's C name ends in _ms, and nothing else's does.
                let duration = matches!(
                    o,
                    ConfigOption::ResetTimeout
                        | ConfigOption::HalfOpenTimeout
                        | ConfigOption::MonitorInterval
                        | ConfigOption::SlowCallThreshold
                        | ConfigOption::Period
                        | ConfigOption::QueueTimeout
                        | ConfigOption::InitialDelay
                        | ConfigOption::MaxDelay
                        | ConfigOption::MaxElapsed
                        | ConfigOption::Timeout
                        | ConfigOption::IdleTimeout
                        | ConfigOption::DefaultTimeout
                );
                let c = names.c.to_str().unwrap();
                if duration {
                    assert_eq!(c, format!("{}_ms", names.rust));
                } else {
                    assert_eq!(c, names.rust);
                }
                assert!(names.c.to_bytes_with_nul().len() <= STOCKADE_CONFIG_OPTION_NAME_LEN);
                // SAFETY: a static C string.
                let name = unsafe { CStr::from_ptr(stockade_config_option_str(n)) };
                assert_eq!(name, names.c);
                seen += 1;
            }
        }
        assert_eq!(seen, 32);
        assert_eq!(OPTION_NAMES.len(), 32);
        // SAFETY: a static C string.
        let unknown = unsafe { CStr::from_ptr(stockade_config_option_str(0)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown option");
    }

    #[test]
    fn names_option_and_message() {
        let err = stockade_core::backoff::Backoff::new(
            stockade_core::backoff::BackoffConfig::DEFAULT.with_backoff_factor(0.5),
        )
        .unwrap_err();
        let c = stockade_config_error::from_core(&err);
        assert_eq!(c.option, 43);
        assert_eq!(text(&c.option_name), "backoff_factor");
        assert_eq!(
            text(&c.message),
            "invalid backoff_factor = 0.5: must be at least 1"
        );
    }

    fn c_message(err: &ConfigError) -> String {
        let c = stockade_config_error::from_core(err);
        text(&c.message).to_owned()
    }

    #[test]
    fn messages_speak_c_while_rust_keeps_its_wording() {
        use core::time::Duration;
        let zero = ConfigError::zero(
            ConfigOption::ResetTimeout,
            ConfigValue::Duration(Duration::ZERO),
        );
        assert_eq!(
            c_message(&zero),
            "invalid reset_timeout_ms = 0: must be at least 1 ms"
        );
        assert_eq!(
            zero.to_string(),
            "invalid reset_timeout = 0ns: must be greater than zero"
        );
        let exceeds = ConfigError::new(
            ConfigOption::InitialDelay,
            ConfigValue::Duration(Duration::from_secs(40)),
            ConfigProblem::Exceeds {
                other: ConfigOption::MaxDelay,
                limit: ConfigValue::Duration(Duration::from_secs(30)),
            },
        );
        assert_eq!(
            c_message(&exceeds),
            "invalid initial_delay_ms = 40000: must not exceed max_delay_ms (= 30000)"
        );
        let huge = ConfigError::duration_above(
            ConfigOption::ResetTimeout,
            Duration::from_millis(u64::MAX),
            Duration::from_nanos(u64::MAX),
        );
        assert_eq!(
            c_message(&huge),
            "invalid reset_timeout_ms = 18446744073709551615: must be at most 18446744073709 ms"
        );
        let small = ConfigError::new(
            ConfigOption::Period,
            ConfigValue::Duration(Duration::ZERO),
            ConfigProblem::TooSmall {
                min: ConfigValue::Duration(Duration::from_micros(1500)),
            },
        );
        assert_eq!(
            c_message(&small),
            "invalid period_ms = 0: must be at least 2 ms"
        );
        assert_eq!(stockade_config_error::from_core(&small).limit, 2);
        let count = ConfigError::zero(ConfigOption::FailureThreshold, ConfigValue::Count(0));
        assert_eq!(
            c_message(&count),
            "invalid failure_threshold = 0: must be at least 1"
        );
    }

    #[test]
    fn truncation_keeps_whole_characters_and_the_nul() {
        let mut buf = [1 as c_char; 6];
        write_c(&mut buf, format_args!("abcdefgh"));
        assert_eq!(text(&buf), "abcde");
        // "abcµ" is a, b, c, 0xC2 0xB5: a 6-byte buffer holds 5 bytes, so
        // the two-byte µ fits; with 5 bytes it must be dropped whole.
        let mut buf = [1 as c_char; 6];
        write_c(&mut buf, format_args!("abcµs"));
        assert_eq!(text(&buf), "abcµ");
        let mut buf = [1 as c_char; 5];
        write_c(&mut buf, format_args!("abcµs"));
        assert_eq!(text(&buf), "abc");
    }
}
