//! Configuration errors: small `Copy` values that name the offending option.

use core::fmt;

/// An invalid configuration value: which option, and what is wrong with it.
///
/// Option names are the Rust field names (`failure_threshold`); the spec's
/// camelCase name is given in each field's documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// The option, e.g. `"period"`.
    pub option: &'static str,
    /// What is wrong with its value.
    pub problem: ConfigProblem,
}

/// What is wrong with a configuration value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigProblem {
    /// The value must be greater than zero.
    Zero,
    /// The value exceeds the largest the state layout can represent.
    TooLarge {
        /// The largest accepted value, in the option's own unit
        /// (a count, or nanoseconds for durations).
        max: u64,
    },
    /// The value is below the smallest accepted value.
    TooSmall {
        /// The smallest accepted value, in the option's own unit
        /// (a count, nanoseconds for durations, or thousandths for factors).
        min: u64,
    },
    /// The value must not be less than another option's value.
    LessThan {
        /// The other option.
        other: &'static str,
    },
    /// The value is not a finite number.
    NotFinite,
}

impl ConfigError {
    /// An error for `option` with `problem`.
    pub const fn new(option: &'static str, problem: ConfigProblem) -> ConfigError {
        ConfigError { option, problem }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: ", self.option)?;
        match self.problem {
            ConfigProblem::Zero => f.write_str("must be greater than zero"),
            ConfigProblem::TooLarge { max } => write!(f, "must be at most {max}"),
            ConfigProblem::TooSmall { min } => write!(f, "must be at least {min}"),
            ConfigProblem::LessThan { other } => write!(f, "must not be less than `{other}`"),
            ConfigProblem::NotFinite => f.write_str("must be a finite number"),
        }
    }
}

impl core::error::Error for ConfigError {}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_names_the_option() {
        let e = ConfigError::new("period", ConfigProblem::Zero);
        assert_eq!(e.to_string(), "invalid `period`: must be greater than zero");
        let e = ConfigError::new(
            "max_delay",
            ConfigProblem::LessThan {
                other: "initial_delay",
            },
        );
        assert_eq!(
            e.to_string(),
            "invalid `max_delay`: must not be less than `initial_delay`"
        );
    }
}
