//! [`stockade_config_error`]: which option of a config is invalid, and why.

use core::ffi::c_char;
use core::fmt::{self, Write};

use stockade_core::{ConfigError, ConfigOption};

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
    /// The option's name as a config struct field (`"backoff_factor"`),
    /// NUL-terminated.
    pub option_name: [c_char; STOCKADE_CONFIG_OPTION_NAME_LEN],
    /// `invalid <option> = <value>: <rule>` in the option's units
    /// (`"invalid backoff_factor = 0.5: must be at least 1"`),
    /// NUL-terminated, truncated to fit.
    pub message: [c_char; STOCKADE_CONFIG_ERROR_MESSAGE_LEN],
}

/// Writes into a C char buffer, always leaving room for the NUL and
/// dropping what does not fit.
struct CBuf<'a> {
    buf: &'a mut [c_char],
    len: usize,
}

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
fn byte(c: c_char) -> u8 {
    u8::from_ne_bytes(c.to_ne_bytes())
}

/// `buf` := `args` as a NUL-terminated string, truncated to fit. Truncation
/// never splits a UTF-8 sequence.
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
        let mut out = stockade_config_error {
            option: err.option as u16,
            option_name: [0; STOCKADE_CONFIG_OPTION_NAME_LEN],
            message: [0; STOCKADE_CONFIG_ERROR_MESSAGE_LEN],
        };
        write_c(&mut out.option_name, format_args!("{}", err.option));
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
