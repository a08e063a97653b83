//! [`SharedError`]: why a shared object could not be opened.

use core::fmt;
use std::io;
use std::path::PathBuf;
use std::string::String;

use crate::ConfigError;

/// Why a file at a region's path was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The path is a symbolic link (never followed).
    Symlink,
    /// The path is not a regular file.
    NotRegularFile,
    /// The file belongs to another user (or, with group access, to another
    /// group).
    WrongOwner {
        /// The file's owner (uid, or gid with group access).
        found: u32,
        /// The caller's.
        expected: u32,
    },
    /// The file is shorter than its header says (or than a header).
    TooShort {
        /// Its length.
        len: u64,
        /// The length it must have.
        expected: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink => f.write_str("it is a symbolic link"),
            Refusal::NotRegularFile => f.write_str("it is not a regular file"),
            Refusal::WrongOwner { found, expected } => {
                write!(f, "it belongs to id {found}, not {expected}")
            }
            Refusal::TooShort { len, expected } => {
                write!(f, "it has {len} bytes, its header needs {expected}")
            }
        }
    }
}

/// Why a shared object could not be opened. Each variant names the path
/// and, for a mismatch, both sides.
#[derive(Debug)]
#[non_exhaustive]
pub enum SharedError {
    /// Shared regions are not available on this platform.
    Unsupported(&'static str),
    /// The name cannot be a file name.
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The config is invalid (the core's error, naming the option).
    InvalidConfig(ConfigError),
    /// A [`SharedOptions`](super::SharedOptions) value is out of range.
    InvalidOption {
        /// The option (`max_processes`).
        option: &'static str,
        /// The value given.
        value: u64,
        /// The range it must be in.
        problem: &'static str,
    },
    /// A system call on the region failed.
    Io {
        /// The region's file.
        path: PathBuf,
        /// What was being done ("open", "map", ...).
        action: &'static str,
        /// The system's error.
        source: io::Error,
    },
    /// The file at the path was not used.
    Refused {
        /// The region's file.
        path: PathBuf,
        /// Why.
        reason: Refusal,
    },
    /// The file was written by an incompatible build or layout.
    Incompatible {
        /// The region's file.
        path: PathBuf,
        /// The header field that differs.
        field: &'static str,
        /// The file's value.
        stored: u64,
        /// This build's value.
        ours: u64,
    },
    /// The stored config differs from the caller's.
    ConfigMismatch {
        /// The region's file.
        path: PathBuf,
        /// The stored config (`Debug` form).
        stored: String,
        /// The caller's config (`Debug` form).
        ours: String,
    },
    /// The region was created in another time namespace, whose
    /// `CLOCK_MONOTONIC` is not this process's.
    OtherTimeNamespace {
        /// The region's file.
        path: PathBuf,
        /// The creator's time namespace (inode).
        stored: u64,
        /// This process's.
        ours: u64,
    },
    /// Every owner slot of a bulkhead is held by a live process.
    NoOwnerSlot {
        /// The region's file.
        path: PathBuf,
        /// Its number of slots.
        max_processes: u32,
    },
    /// Another process kept the region locked (rebuilding it) for longer
    /// than the open timeout.
    Busy {
        /// The region's file.
        path: PathBuf,
    },
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharedError::Unsupported(why) => {
                write!(f, "shared memory is not supported here: {why}")
            }
            SharedError::InvalidName { name, reason } => {
                write!(f, "invalid shared object name {name:?}: {reason}")
            }
            SharedError::InvalidConfig(e) => e.fmt(f),
            SharedError::InvalidOption {
                option,
                value,
                problem,
            } => write!(f, "invalid {option} = {value}: {problem}"),
            SharedError::Io {
                path,
                action,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            SharedError::Refused { path, reason } => {
                write!(f, "refusing {}: {reason}", path.display())
            }
            SharedError::Incompatible {
                path,
                field,
                stored,
                ours,
            } => write!(
                f,
                "{} was written by an incompatible build: {field} is {stored} there, {ours} here",
                path.display()
            ),
            SharedError::ConfigMismatch { path, stored, ours } => write!(
                f,
                "{} holds another config: stored {stored}, given {ours} \
                 (use the same config, or adopt the stored one)",
                path.display()
            ),
            SharedError::OtherTimeNamespace { path, stored, ours } => write!(
                f,
                "{} was created in another time namespace ({stored}, this process is in {ours}): \
                 its clock readings are not comparable",
                path.display()
            ),
            SharedError::NoOwnerSlot {
                path,
                max_processes,
            } => write!(
                f,
                "{}: all {max_processes} owner slots are held by live processes \
                 (raise max_processes)",
                path.display()
            ),
            SharedError::Busy { path } => write!(
                f,
                "{} stayed locked by another process past the open timeout",
                path.display()
            ),
        }
    }
}

impl core::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            SharedError::Io { source, .. } => Some(source),
            SharedError::InvalidConfig(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for SharedError {
    fn from(e: ConfigError) -> Self {
        SharedError::InvalidConfig(e)
    }
}
