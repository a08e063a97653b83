//! Duration conversions at the boundary: C speaks whole milliseconds.

use core::time::Duration;

/// Whole milliseconds of `d`, truncated, saturating at `u64::MAX`.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
