//! [`RedisError`] and [`StoreFailure`]: why Redis was not used, or could
//! not answer.

use core::fmt;
use core::time::Duration;
use std::string::String;

use crate::ConfigError;

/// Why one command to Redis did not give an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreFailure {
    /// No reply within `command_timeout` (or no connection within
    /// `connect_timeout`).
    Timeout,
    /// The connection was refused, reset or closed.
    Connection,
    /// The server answered with an error (out of memory, busy, read-only
    /// replica, a script error).
    Server,
    /// The reply did not have the shape the script returns.
    Protocol,
    /// Every connection this process may open was busy for
    /// `command_timeout`.
    PoolExhausted,
    /// The connection's guard breaker is open after repeated failures:
    /// nothing was sent.
    GuardOpen,
}

impl StoreFailure {
    /// A short name used in every language: `"timeout"`, `"connection"`,
    /// `"server"`, `"protocol"`, `"pool_exhausted"`, `"guard_open"`.
    pub const fn name(self) -> &'static str {
        match self {
            StoreFailure::Timeout => "timeout",
            StoreFailure::Connection => "connection",
            StoreFailure::Server => "server",
            StoreFailure::Protocol => "protocol",
            StoreFailure::PoolExhausted => "pool_exhausted",
            StoreFailure::GuardOpen => "guard_open",
        }
    }
}

impl fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreFailure::Timeout => "no reply in time",
            StoreFailure::Connection => "connection refused, reset or closed",
            StoreFailure::Server => "the server answered with an error",
            StoreFailure::Protocol => "unexpected reply",
            StoreFailure::PoolExhausted => "every connection was busy",
            StoreFailure::GuardOpen => "not tried: the connection's guard breaker is open",
        })
    }
}

/// Why a Redis-backed object could not be made, or a call could not be
/// decided.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RedisError {
    /// The pattern's config is invalid (the core's error, naming the
    /// option).
    InvalidConfig(ConfigError),
    /// A [`RedisOptions`](super::RedisOptions) value is out of range.
    InvalidOption {
        /// The option, as the Rust builder names it.
        option: &'static str,
        /// The value given.
        value: String,
        /// The rule it breaks.
        problem: &'static str,
    },
    /// The URL cannot be used (a password in it is not shown).
    InvalidUrl {
        /// The URL given, password replaced by `***`.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// The object's name cannot be part of a key.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The config stored in Redis for this object differs from the
    /// caller's (another deployment, or a changed config: delete the key
    /// or set `adopt_stored_config`).
    ConfigMismatch {
        /// The object's key.
        key: String,
        /// The stored config (canonical form).
        stored: String,
        /// The caller's config (canonical form).
        ours: String,
    },
    /// Redis could not answer and the object's fallback is
    /// [`Fallback::FailClosed`](super::Fallback::FailClosed): the call was
    /// refused.
    Unavailable {
        /// Why Redis did not answer.
        cause: StoreFailure,
        /// When to try again, if known (the guard breaker's reset).
        retry_after: Option<Duration>,
    },
}

impl RedisError {
    pub(crate) fn invalid_name(name: &str, reason: &'static str) -> RedisError {
        RedisError::InvalidName {
            name: name.into(),
            reason,
        }
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::InvalidConfig(e) => e.fmt(f),
            RedisError::InvalidOption {
                option,
                value,
                problem,
            } => write!(f, "invalid Redis option {option} = {value}: {problem}"),
            RedisError::InvalidUrl { url, reason } => {
                write!(f, "invalid Redis URL {url:?}: {reason}")
            }
            RedisError::InvalidName { name, reason } => {
                write!(f, "invalid name {name:?} for a Redis key: {reason}")
            }
            RedisError::ConfigMismatch { key, stored, ours } => write!(
                f,
                "Redis key {key} holds another config: stored {stored}, ours {ours} \
                 (delete the key, or adopt the stored config)"
            ),
            RedisError::Unavailable { cause, retry_after } => {
                write!(f, "Redis unavailable ({cause}); refused (fallback: closed)")?;
                if let Some(after) = retry_after {
                    write!(f, "; retry after {after:?}")?;
                }
                Ok(())
            }
        }
    }
}

impl core::error::Error for RedisError {}

impl From<ConfigError> for RedisError {
    fn from(e: ConfigError) -> Self {
        RedisError::InvalidConfig(e)
    }
}

/// `url` with any password replaced by `***`, for messages.
pub(crate) fn redact(url: &str) -> String {
    // scheme://[user][:password]@host...
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        if let Some(at) = rest.find('@') {
            let userinfo = &rest[..at];
            if let Some(colon) = userinfo.find(':') {
                return std::format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
    }
    url.into()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redact("redis://app:hunter2@host/1"),
            "redis://app:***@host/1"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
