//! [`SharedOptions`]: where a region lives and how it is opened.

use core::time::Duration;
use std::borrow::ToOwned;
use std::format;
use std::path::{Path, PathBuf};
use std::string::{String, ToString};

use super::{Kind, SharedError};

/// How a shared object is found and opened. The defaults: `/dev/shm`,
/// mode `0600`, the caller's config must equal the stored one, room for
/// 256 processes in a bulkhead, at most 1 s to open.
///
/// # Examples
///
/// ```
/// use stockade::shared::SharedOptions;
///
/// let options = SharedOptions::new()
///     .directory("/run/myapp")
///     .group_access(true)
///     .adopt_stored_config(true);
/// assert_eq!(options.max_processes_value(), 256);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedOptions {
    directory: Option<PathBuf>,
    group_access: bool,
    adopt_stored_config: bool,
    max_processes: u32,
    open_timeout: Duration,
}

impl Default for SharedOptions {
    fn default() -> Self {
        SharedOptions::new()
    }
}

impl SharedOptions {
    /// The most owner slots a bulkhead may have.
    pub const MAX_PROCESSES: u32 = 4096;

    /// The defaults.
    pub const fn new() -> SharedOptions {
        SharedOptions {
            directory: None,
            group_access: false,
            adopt_stored_config: false,
            max_processes: 256,
            open_timeout: Duration::from_secs(1),
        }
    }

    /// The directory for the region files (default `/dev/shm`, or the
    /// system's temporary directory where there is no `/dev/shm`). It must
    /// exist; give one only your service's user can write (systemd's
    /// `RuntimeDirectory=`), since in a directory anyone can write, such as
    /// `/dev/shm`, another user can take a name first (the open is then
    /// refused, never misled).
    #[must_use]
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.directory = Some(dir.into());
        self
    }

    /// Let the processes of the caller's group open the region too: the
    /// file is created with mode `0660`, its name carries the group id
    /// instead of the user id (`stockade-g<gid>-...`), and a file owned by
    /// any member of the group is accepted.
    #[must_use]
    pub const fn group_access(mut self, yes: bool) -> Self {
        self.group_access = yes;
        self
    }

    /// When the stored config differs from the caller's, use the stored
    /// one instead of failing with [`SharedError::ConfigMismatch`]
    /// ([`Shared::config`](super::Shared::config) tells which is in force).
    #[must_use]
    pub const fn adopt_stored_config(mut self, yes: bool) -> Self {
        self.adopt_stored_config = yes;
        self
    }

    /// A bulkhead's owner slots: how many processes may have it open at
    /// once (default 256, at most [`MAX_PROCESSES`](Self::MAX_PROCESSES)).
    /// Part of the stored config.
    #[must_use]
    pub const fn max_processes(mut self, n: u32) -> Self {
        self.max_processes = n;
        self
    }

    /// How long an open may wait for another process that is rebuilding a
    /// region left from an earlier boot (default 1 s).
    #[must_use]
    pub const fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// The directory in use: the one given, or the default.
    pub fn directory_path(&self) -> PathBuf {
        match &self.directory {
            Some(d) => d.clone(),
            None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            None => std::env::temp_dir(),
        }
    }

    /// Whether group access is on.
    pub const fn group_access_value(&self) -> bool {
        self.group_access
    }

    /// Whether a stored config is adopted.
    pub const fn adopt_stored_config_value(&self) -> bool {
        self.adopt_stored_config
    }

    /// A bulkhead's owner slots.
    pub const fn max_processes_value(&self) -> u32 {
        self.max_processes
    }

    /// The open timeout.
    pub const fn open_timeout_value(&self) -> Duration {
        self.open_timeout
    }

    /// The file of shared object `name` of `kind`.
    ///
    /// # Errors
    ///
    /// [`SharedError::InvalidName`] for an empty name or one whose file
    /// name would exceed 255 bytes.
    pub fn path_for(&self, kind: Kind, name: &str) -> Result<PathBuf, SharedError> {
        let mut file = String::from("stockade-");
        if self.group_access {
            file.push('g');
            file.push_str(&current_gid().to_string());
        } else {
            file.push_str(&current_uid().to_string());
        }
        file.push('-');
        file.push_str(kind.as_str());
        file.push('-');
        if name.is_empty() {
            return Err(SharedError::InvalidName {
                name: name.to_owned(),
                reason: "a shared object needs a non-empty name",
            });
        }
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                file.push(char::from(b));
            } else {
                file.push_str(&format!("%{b:02X}"));
            }
        }
        // Room for the temporary name's suffix (".<pid>.<n>.tmp").
        if file.len() > 200 {
            return Err(SharedError::InvalidName {
                name: name.to_owned(),
                reason: "too long: the file name would exceed 200 bytes",
            });
        }
        Ok(self.directory_path().join(file))
    }
}

#[cfg(target_os = "linux")]
fn current_uid() -> u32 {
    super::sys::euid()
}

#[cfg(target_os = "linux")]
fn current_gid() -> u32 {
    super::sys::egid()
}

#[cfg(not(target_os = "linux"))]
fn current_uid() -> u32 {
    0
}

#[cfg(not(target_os = "linux"))]
fn current_gid() -> u32 {
    0
}
