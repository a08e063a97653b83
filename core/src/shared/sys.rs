//! The few Linux system calls the shared regions need, each wrapped once
//! with its error handling: opening without following links, the file's
//! identity, mapping, open-file-description locks, the boot id, the time
//! namespace and the host-wide monotonic clock.
//!
//! Every `unsafe` block of the shared-memory layer that calls the kernel
//! is here.

use core::ptr::NonNull;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::vec::Vec;

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | extra, mode)`.
pub(super) fn open(path: &Path, extra: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; the
    // flags and mode are plain integers.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | extra,
            libc::c_uint::from(mode),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The identity and shape of an open file.
#[derive(Clone, Copy, Debug)]
pub(super) struct FileInfo {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) uid: u32,
    pub(super) mode: u32,
    pub(super) size: u64,
}

impl FileInfo {
    pub(super) fn is_regular(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
}

fn info(st: &libc::stat) -> FileInfo {
    FileInfo {
        dev: st.st_dev,
        ino: st.st_ino,
        uid: st.st_uid,
        mode: st.st_mode,
        size: st.st_size as u64,
    }
}

/// `fstat(fd)`.
pub(super) fn fstat(fd: &OwnedFd) -> io::Result<FileInfo> {
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is writable storage for one `stat`; the descriptor is
    // open (owned by `fd`).
    let r = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(info(&st))
}

/// `lstat(path)`: the entry itself, not what a link points to.
pub(super) fn lstat(path: &Path) -> io::Result<FileInfo> {
    let c = cpath(path)?;
    let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `c` is a valid path string and `st` writable storage.
    let r = unsafe { libc::lstat(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `lstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(info(&st))
}

/// `ftruncate(fd, len)`.
pub(super) fn set_len(fd: &OwnedFd, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
    // SAFETY: plain system call on an open descriptor.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fchmod(fd, mode)`: the creation mode without the umask's say.
pub(super) fn set_mode(fd: &OwnedFd, mode: libc::mode_t) -> io::Result<()> {
    // SAFETY: plain system call on an open descriptor.
    if unsafe { libc::fchmod(fd.as_raw_fd(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `link(from, to)`: fails with `EEXIST` if `to` exists.
pub(super) fn link(from: &Path, to: &Path) -> io::Result<()> {
    let (a, b) = (cpath(from)?, cpath(to)?);
    // SAFETY: two valid path strings that outlive the call.
    if unsafe { libc::link(a.as_ptr(), b.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `rename(from, to)`: atomically replaces `to`.
pub(super) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

/// A shared, read-write mapping of a whole file. Unmapped on drop.
#[derive(Debug)]
pub(super) struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; every access to it goes through
// atomics or through values written before the region was published.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)`.
    pub(super) fn new(fd: &OwnedFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping at an address the kernel chooses; it
        // aliases no Rust object.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { base, len })
    }

    /// Maps `fd` again at the same address (`MAP_FIXED`), replacing the
    /// old mapping of the same file in one step: pointers into the region
    /// stay valid, and the old mapping's reference to its open file
    /// description (with its locks) is gone.
    pub(super) fn remap_in_place(&self, fd: &OwnedFd) -> io::Result<()> {
        // SAFETY: `self.base .. + len` is this object's own mapping; the
        // new one maps the same file with the same size and protection,
        // so every pointer into it still points at the same bytes.
        let p = unsafe {
            libc::mmap(
                self.base.as_ptr().cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.base
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `mmap` with this address and
        // length, and nothing borrows it past its owner's life.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// An open-file-description write lock on byte `offset`, without waiting.
/// `Ok(true)`: taken (or already held through this description);
/// `Ok(false)`: another open file description holds it.
pub(super) fn try_lock_byte(fd: &OwnedFd, offset: u64) -> io::Result<bool> {
    lock_op(fd, offset, libc::F_WRLCK as libc::c_short)
}

/// Releases an open-file-description lock on byte `offset`.
pub(super) fn unlock_byte(fd: &OwnedFd, offset: u64) -> io::Result<()> {
    lock_op(fd, offset, libc::F_UNLCK as libc::c_short).map(|_| ())
}

fn lock_op(fd: &OwnedFd, offset: u64, kind: libc::c_short) -> io::Result<bool> {
    let start = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "lock offset too large"))?;
    // SAFETY: `flock` is plain data; all-zero is a valid value (and
    // `l_pid` must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { core::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    // SAFETY: `fl` is a valid `flock` that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// The effective user id.
pub(super) fn euid() -> u32 {
    // SAFETY: `geteuid` cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// The process id.
pub(super) fn pid() -> u32 {
    std::process::id()
}

/// The kernel's boot id (`/proc/sys/kernel/random/boot_id`, a UUID), as
/// 16 bytes; all zero where it cannot be read.
pub(super) fn boot_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        if hex.len() == 32 {
            for (i, pair) in hex.chunks(2).enumerate() {
                let s = core::str::from_utf8(pair).unwrap_or("00");
                id[i] = u8::from_str_radix(s, 16).unwrap_or(0);
            }
        }
    }
    id
}

/// The inode of this process's time namespace (`/proc/self/ns/time`), or
/// 0 where the kernel has none (before Linux 5.6).
pub(super) fn time_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/time").map_or(0, |m| m.ino())
}

/// `clock_gettime(CLOCK_MONOTONIC)` in nanoseconds: the time since boot
/// (less suspend), the same for every process in one time namespace.
#[inline]
pub(super) fn monotonic_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC exists on every Linux
    // kernel, so the call cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
}

/// Registers `child` to run in the child after every `fork`, once per
/// process.
pub(super) fn at_fork_child(child: unsafe extern "C" fn()) -> io::Result<()> {
    // SAFETY: `child` is a valid function for the life of the process;
    // no prepare or parent handler.
    let r = unsafe { libc::pthread_atfork(None, None, Some(child)) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// The effective group id.
pub(super) fn egid() -> u32 {
    // SAFETY: `getegid` cannot fail and has no preconditions.
    unsafe { libc::getegid() }
}
