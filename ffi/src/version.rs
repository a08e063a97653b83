//! The library's version, for checking that the header and the library
//! match.

use core::ffi::c_char;

/// Major version of the header (the library's is `stockade_version()`).
pub const STOCKADE_VERSION_MAJOR: u32 = 0;
/// Minor version of the header.
pub const STOCKADE_VERSION_MINOR: u32 = 1;
/// Patch version of the header.
pub const STOCKADE_VERSION_PATCH: u32 = 0;

const VERSION: &core::ffi::CStr =
    match core::ffi::CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes())
    {
        Ok(v) => v,
        Err(_) => panic!("version contains a NUL"),
    };

/// The library's version, `"MAJOR.MINOR.PATCH"`: a static NUL-terminated
/// string, not to be freed. Compare with `STOCKADE_VERSION_*` to check
/// that the header and the library match.
///
/// - Thread safety: any thread. Blocks: no. Never fails.
#[unsafe(no_mangle)]
pub extern "C" fn stockade_version() -> *const c_char {
    VERSION.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_macros_match_the_package_version() {
        let expected =
            format!("{STOCKADE_VERSION_MAJOR}.{STOCKADE_VERSION_MINOR}.{STOCKADE_VERSION_PATCH}");
        assert_eq!(VERSION.to_str().unwrap(), expected);
    }
}
