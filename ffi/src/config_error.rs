//! [`stockade_config_error`]: which option of a config is invalid, and why.

use core::ffi::c_char;
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
    /// `failure_threshold`, 24 `queue_timeout`, 43 `backoff_factor`);
    /// numbers are never reused.
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
    /// `TOO_LARGE`: the largest accepted value; `TOO_SMALL`: the smallest;
    /// `EXCEEDS`: the other option's value — for `COUNT` and
    /// `MILLISECONDS` as in `value`; else 0.
    pub limit: u64,
    /// The value given when `unit` is `FACTOR`; else 0.
    pub value_factor: f64,
    /// The limit (as `limit`) when `unit` is `FACTOR`; else 0.
    pub limit_factor: f64,
    /// The option's name as a config struct field (`"backoff_factor"`),
    /// NUL-terminated.
    pub option_name: [c_char; STOCKADE_CONFIG_OPTION_NAME_LEN],
    /// `invalid <option> = <value>: <rule>` in the option's units
    /// (`"invalid backoff_factor = 0.5: must be at least 1"`),
    /// NUL-terminated, truncated to fit. **Hosted builds only**: the
    /// `no_std` (firmware) library does not format messages and leaves it
    /// empty; build one from the fields above if needed.
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
    match problem {
        ZERO => c"must be greater than zero",
        TOO_LARGE => c"must be at most the limit",
        TOO_SMALL => c"must be at least the limit",
        EXCEEDS => c"must not exceed the other option",
        NOT_FINITE => c"must be a finite number",
        INVALID => c"is malformed",
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

impl stockade_config_error {
    /// The C form of `err`.
    pub fn from_core(err: &ConfigError) -> stockade_config_error {
        let (unit, value, value_factor) = value_parts(err.value);
        let none = (stockade_config_unit::None, 0, 0.0);
        let (problem, other_option, (_, limit, limit_factor)) = match err.problem {
            ConfigProblem::Zero => (stockade_config_problem::Zero, 0, none),
            ConfigProblem::TooLarge { max } => {
                (stockade_config_problem::TooLarge, 0, value_parts(max))
            }
            ConfigProblem::TooSmall { min } => {
                (stockade_config_problem::TooSmall, 0, value_parts(min))
            }
            ConfigProblem::Exceeds { other, limit } => (
                stockade_config_problem::Exceeds,
                other as u16,
                value_parts(limit),
            ),
            ConfigProblem::NotFinite => (stockade_config_problem::NotFinite, 0, none),
            ConfigProblem::Invalid => (stockade_config_problem::Invalid, 0, none),
            _ => (stockade_config_problem::Other, 0, none),
        };
        let mut out = stockade_config_error {
            option: err.option as u16,
            other_option,
            problem: problem as u8,
            unit: unit as u8,
            value,
            limit,
            value_factor,
            limit_factor,
            option_name: [0; STOCKADE_CONFIG_OPTION_NAME_LEN],
            message: [0; STOCKADE_CONFIG_ERROR_MESSAGE_LEN],
        };
        // The name without formatting (static bytes; every name fits).
        let name = err.option.as_c_str().to_bytes();
        for (slot, &b) in out.option_name.iter_mut().zip(name) {
            *slot = b as c_char;
        }
        if let Some(last) = out.option_name.last_mut() {
            *last = 0;
        }
        // The message only where formatting is paid for anyway.
        #[cfg(feature = "std")]
        write_c(&mut out.message, format_args!("{err}"));
        out
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
        unsafe { error.write(stockade_config_error::from_core(err)) };
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

/// The name of config option number `option` (`"queue_timeout"` for 24),
/// or `"unknown option"`: a static NUL-terminated string, not to be freed.
///
/// - Thread safety: safe from any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_config_option_str(option: u16) -> *const c_char {
    match ConfigOption::from_u16(option) {
        Some(o) => o.as_c_str().as_ptr(),
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
    fn option_names_come_from_the_core() {
        let mut seen = 0;
        for n in 0..=u16::from(u8::MAX) {
            if let Some(o) = ConfigOption::from_u16(n) {
                assert_eq!(o as u16, n);
                // SAFETY: a static C string.
                let name = unsafe { CStr::from_ptr(stockade_config_option_str(n)) };
                assert_eq!(name.to_str().unwrap(), o.as_str());
                seen += 1;
            }
        }
        assert_eq!(seen, 32);
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
