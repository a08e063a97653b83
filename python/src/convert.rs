//! Python values to the core's option types: durations in seconds (`float`
//! or `int`) or `datetime.timedelta`, counts as non-negative `int`s.
//!
//! Out-of-range values the core cannot even represent (negative, NaN, too
//! large for its integer) raise `stockade.ConfigError` (a `ValueError`)
//! here, worded like the core's own messages; everything else is checked
//! by the core's config validation.

use core::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDelta, PyDeltaAccess, PyFloat, PyInt};

use crate::errors::option_error;

/// `repr(value)` for an error message; an `int` too long to print (past
/// `sys.set_int_max_str_digits`) as its size.
fn shown(value: &Bound<'_, PyAny>) -> String {
    match value.repr() {
        Ok(r) => r.to_string(),
        Err(_) => match value.call_method0("bit_length") {
            Ok(bits) => format!("<an int of {bits} bits>"),
            Err(_) => format!("<a {}>", value.get_type()),
        },
    }
}

/// Seconds (`float`/`int`) or a `timedelta` as a `Duration`; `inf` is
/// "forever" (`Duration::MAX`).
pub(crate) fn duration(value: &Bound<'_, PyAny>, option: &str) -> PyResult<Duration> {
    let py = value.py();
    let secs: f64 = if let Ok(delta) = value.cast::<PyDelta>() {
        let days = delta.get_days() as f64;
        let seconds = delta.get_seconds() as f64;
        let micros = delta.get_microseconds();
        if days < 0.0 {
            return Err(option_error(
                py,
                option,
                format!("invalid {option} = {}: must not be negative", shown(value)),
            ));
        }
        // Whole seconds and microseconds separately: no rounding.
        let whole = days * 86_400.0 + seconds;
        return Ok(Duration::from_secs(whole as u64) + Duration::from_micros(micros as u64));
    } else if value.is_instance_of::<PyBool>() {
        return Err(option_error(
            py,
            option,
            format!(
                "invalid {option} = {}: must be a number of seconds or a timedelta",
                shown(value)
            ),
        ));
    } else if value.is_instance_of::<PyInt>() {
        // An int beyond a float's range would raise OverflowError.
        match value.extract::<f64>() {
            Ok(secs) => secs,
            Err(_) if value.lt(0)? => {
                return Err(option_error(
                    py,
                    option,
                    format!("invalid {option} = {}: must not be negative", shown(value)),
                ));
            }
            Err(_) => {
                return Err(option_error(
                    py,
                    option,
                    format!(
                        "invalid {option} = {}: too large for a number of seconds \
                         (float('inf') means no limit)",
                        shown(value)
                    ),
                ));
            }
        }
    } else if value.is_instance_of::<PyFloat>() {
        value.extract()?
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{option} must be a number of seconds or a datetime.timedelta, not {}",
            value.get_type().name()?
        )));
    };
    if secs.is_nan() {
        return Err(option_error(
            py,
            option,
            format!("invalid {option} = nan: must be a number of seconds"),
        ));
    }
    if secs < 0.0 {
        return Err(option_error(
            py,
            option,
            format!("invalid {option} = {}: must not be negative", shown(value)),
        ));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

/// As [`duration`], `None` for `None`.
pub(crate) fn opt_duration(
    value: Option<&Bound<'_, PyAny>>,
    option: &str,
) -> PyResult<Option<Duration>> {
    match value {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => duration(v, option).map(Some),
    }
}

/// A non-negative `int` that fits the core's `u32`.
pub(crate) fn count_u32(value: &Bound<'_, PyAny>, option: &str) -> PyResult<u32> {
    let n = count_u64(value, option)?;
    u32::try_from(n).map_err(|_| {
        option_error(
            value.py(),
            option,
            format!("invalid {option} = {n}: must be at most {}", u32::MAX),
        )
    })
}

/// A non-negative `int` that fits a `u64`.
pub(crate) fn count_u64(value: &Bound<'_, PyAny>, option: &str) -> PyResult<u64> {
    let py = value.py();
    if value.is_instance_of::<PyBool>() || !value.is_instance_of::<PyInt>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{option} must be an int, not {}",
            value.get_type().name()?
        )));
    }
    if let Ok(n) = value.extract::<u64>() {
        return Ok(n);
    }
    let negative = value.lt(0)?;
    let rule = if negative {
        "must not be negative".to_owned()
    } else {
        format!("must be at most {}", u64::MAX)
    };
    Err(option_error(
        py,
        option,
        format!("invalid {option} = {}: {rule}", shown(value)),
    ))
}

/// A non-negative `int` that fits a `usize`.
pub(crate) fn count_usize(value: &Bound<'_, PyAny>, option: &str) -> PyResult<usize> {
    let n = count_u64(value, option)?;
    usize::try_from(n).map_err(|_| {
        option_error(
            value.py(),
            option,
            format!("invalid {option} = {n}: must be at most {}", usize::MAX),
        )
    })
}

/// The argument `n` of `try_acquire(n)`, `acquire(n)`, `delay(n)` (for
/// `#[pyo3(from_py_with)]`).
pub(crate) fn arg_n(value: &Bound<'_, PyAny>) -> PyResult<u32> {
    count_u32(value, "n")
}

/// The option `max_workers` (for `#[pyo3(from_py_with)]`).
pub(crate) fn arg_max_workers(value: &Bound<'_, PyAny>) -> PyResult<usize> {
    count_usize(value, "max_workers")
}

/// The option `seed`, `None` for none (for `#[pyo3(from_py_with)]`).
pub(crate) fn arg_seed(value: &Bound<'_, PyAny>) -> PyResult<Option<u64>> {
    if value.is_none() {
        Ok(None)
    } else {
        count_u64(value, "seed").map(Some)
    }
}

/// A finite `float` (or `int`).
pub(crate) fn factor(value: &Bound<'_, PyAny>, option: &str) -> PyResult<f64> {
    if value.is_instance_of::<PyBool>()
        || !(value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>())
    {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{option} must be a number, not {}",
            value.get_type().name()?
        )));
    }
    match value.extract::<f64>() {
        Ok(f) => Ok(f),
        // An int beyond a float's range.
        Err(_) => Err(option_error(
            value.py(),
            option,
            format!("invalid {option} = {}: too large", shown(value)),
        )),
    }
}

/// The items of an iterable option, or a `TypeError` naming it.
pub(crate) fn items<'py>(
    value: &Bound<'py, PyAny>,
    option: &str,
    expected: &str,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    match value.try_iter() {
        Ok(iter) => iter.collect(),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{option} must be {expected}, not {}",
            value.get_type().name()?
        ))),
    }
}

/// A `str` option, or a `TypeError` naming it.
pub(crate) fn text<'a, 'py>(value: &'a Bound<'py, PyAny>, option: &str) -> PyResult<&'a str>
where
    'py: 'a,
{
    match value.cast::<pyo3::types::PyString>() {
        Ok(s) => s.to_str(),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{option} must be a str, not {}",
            value.get_type().name()?
        ))),
    }
}
