//! The region file: its header, creation by `link(2)`, opening with every
//! check, and rebuilding a region left from an earlier boot.

use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use std::format;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::string::String;
use std::time::Instant;

use super::codec::{CONFIG_CAPACITY, Decoder, Encoder};
use super::sys::{self, FileInfo, Mapping};
use super::{Kind, Machine, Refusal, SharedError, SharedOptions};
use crate::sync::WORD_BITS;

/// "STOCKADE".
const MAGIC: [u8; 8] = *b"STOCKADE";
/// The file format; bumped on any change of the header or of a machine's
/// layout.
pub(super) const FORMAT_VERSION: u32 = 1;
/// The byte-order probe, stored natively.
const ENDIAN_PROBE: u32 = 0x0102_0304;
/// The clock the region's times are on.
const CLOCK_ID: u32 = libc::CLOCK_MONOTONIC as u32;
/// Bytes before the machine (header, lock bytes).
pub(super) const HEADER_SPACE: usize = 512;
/// The byte whose lock serialises rebuilding a stale region.
const REBUILD_LOCK_BYTE: u64 = 0;
/// Owner slot stride: two cache lines, so neighbours never share one
/// (nor an adjacent-line prefetch pair).
pub(super) const SLOT_STRIDE: usize = 128;

/// The fixed header at offset 0. Written once, before the file is
/// published; plain integers, so any bytes read as a value.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Header {
    magic: [u8; 8],
    format_version: u32,
    kind: u32,
    word_bits: u32,
    endian: u32,
    machine_size: u32,
    machine_align: u32,
    machine_offset: u32,
    owner_slots: u32,
    slots_offset: u32,
    clock_id: u32,
    total_size: u64,
    time_namespace: u64,
    creator_pid: u32,
    config_len: u32,
    boot_id: [u8; 16],
    config: [u8; CONFIG_CAPACITY],
}

const _: () = assert!(size_of::<Header>() <= HEADER_SPACE);

/// Where things are in a region of machine `M` with `slots` owner slots.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    pub(super) machine_offset: usize,
    pub(super) slots_offset: usize,
    pub(super) slots: u32,
    pub(super) total: usize,
}

impl Layout {
    fn of<M: Machine>(slots: u32) -> Layout {
        let machine_offset = HEADER_SPACE;
        let slots_offset = (machine_offset + size_of::<M>()).next_multiple_of(SLOT_STRIDE);
        Layout {
            machine_offset,
            slots_offset,
            slots,
            total: slots_offset + slots as usize * SLOT_STRIDE,
        }
    }
}

/// An open region: the mapping, the file, its path.
#[derive(Debug)]
pub(super) struct Region {
    map: Mapping,
    /// The open file description this process's locks belong to; replaced
    /// in a forked child (see `SharedBulkhead`).
    file: parking_lot::Mutex<OwnedFd>,
    path: PathBuf,
    layout: Layout,
}

impl Region {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn layout(&self) -> Layout {
        self.layout
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.map.base()
    }

    /// The region's file, for locks.
    pub(super) fn file(&self) -> parking_lot::MutexGuard<'_, OwnedFd> {
        self.file.lock()
    }

    pub(super) fn io(&self, action: &'static str, source: io::Error) -> SharedError {
        SharedError::Io {
            path: self.path.clone(),
            action,
            source,
        }
    }

    /// Opens the file again (a new open file description, so new locks)
    /// and maps it over the old mapping in place. For a forked child.
    pub(super) fn reopen(&self) -> Result<(), SharedError> {
        let fd = sys::open(&self.path, 0, 0).map_err(|e| self.io("reopen", e))?;
        let info = sys::fstat(&fd).map_err(|e| self.io("inspect", e))?;
        let old = sys::fstat(&self.file.lock()).map_err(|e| self.io("inspect", e))?;
        if (info.dev, info.ino) != (old.dev, old.ino) {
            // The name now leads to another region (unlinked and created
            // again): this object keeps its own, through the mapping it
            // has, and takes no new owner slot in a file it cannot reopen.
            return Err(SharedError::Io {
                path: self.path.clone(),
                action: "reopen",
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    "the region was unlinked and its name reused",
                ),
            });
        }
        self.map
            .remap_in_place(&fd)
            .map_err(|e| self.io("map", e))?;
        *self.file.lock() = fd;
        Ok(())
    }

    pub(super) fn unlink(&self) -> Result<(), SharedError> {
        // Only the file this region maps: a name already reused by a newer
        // region is left alone.
        let ours = sys::fstat(&self.file.lock()).map_err(|e| self.io("inspect", e))?;
        match sys::lstat(&self.path) {
            Ok(now) if (now.dev, now.ino) == (ours.dev, ours.ino) => {
                std::fs::remove_file(&self.path).or_else(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(self.io("remove", e))
                    }
                })
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io("inspect", e)),
        }
    }
}

/// What [`open`] returns.
pub(super) struct Opened<M: Machine> {
    pub(super) region: Region,
    pub(super) machine: NonNull<M>,
    pub(super) config: M::Config,
    pub(super) created: bool,
}

fn encode<M: Machine>(config: &M::Config, slots: u32) -> Encoder {
    let mut e = Encoder::new();
    M::encode(config, &mut e);
    e.u32(slots);
    e
}

fn decode<M: Machine>(bytes: &[u8]) -> Option<(M::Config, u32)> {
    let mut d = Decoder::new(bytes);
    let config = M::decode(&mut d)?;
    let slots = d.u32()?;
    d.is_empty().then_some((config, slots))
}

fn header_for<M: Machine>(layout: &Layout, config: &Encoder) -> Header {
    let bytes = config.bytes();
    let mut stored = [0u8; CONFIG_CAPACITY];
    stored[..bytes.len()].copy_from_slice(bytes);
    Header {
        magic: MAGIC,
        format_version: FORMAT_VERSION,
        kind: M::KIND as u32,
        word_bits: WORD_BITS,
        endian: ENDIAN_PROBE,
        machine_size: size_of::<M>() as u32,
        machine_align: align_of::<M>() as u32,
        machine_offset: layout.machine_offset as u32,
        owner_slots: layout.slots,
        slots_offset: layout.slots_offset as u32,
        clock_id: CLOCK_ID,
        total_size: layout.total as u64,
        time_namespace: sys::time_namespace(),
        creator_pid: sys::pid(),
        config_len: bytes.len() as u32,
        boot_id: sys::boot_id(),
        config: stored,
    }
}

/// A counter that makes temporary names unique within the process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{}.{n}.tmp", sys::pid()));
    path.with_file_name(name)
}

/// Builds a complete region file at a temporary name: header, a fresh
/// machine, zeroed owner slots. Returns the temporary path and its file.
fn build<M: Machine>(
    path: &Path,
    header: &Header,
    machine: M,
    layout: &Layout,
    group_access: bool,
) -> Result<(PathBuf, OwnedFd, Mapping), SharedError> {
    let tmp = temp_path(path);
    let io = |action, source| SharedError::Io {
        path: tmp.clone(),
        action,
        source,
    };
    let mode: libc::mode_t = if group_access { 0o660 } else { 0o600 };
    let fd = sys::open(&tmp, libc::O_CREAT | libc::O_EXCL, mode).map_err(|e| io("create", e))?;
    let built = (|| {
        sys::set_mode(&fd, mode).map_err(|e| io("set the mode of", e))?;
        sys::set_len(&fd, layout.total as u64).map_err(|e| io("size", e))?;
        let map = Mapping::new(&fd, layout.total).map_err(|e| io("map", e))?;
        let base = map.base().as_ptr();
        // SAFETY: the mapping is `layout.total` bytes, fresh and private
        // to this process until it is linked into place; the header fits
        // in `HEADER_SPACE` and the machine at `machine_offset` (a
        // multiple of 128, above its alignment, checked by `open`) within
        // the region. Nothing else reads these bytes yet.
        unsafe {
            core::ptr::write(base.cast::<Header>(), *header);
            core::ptr::write(base.add(layout.machine_offset).cast::<M>(), machine);
        }
        Ok(map)
    })();
    match built {
        Ok(map) => Ok((tmp, fd, map)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Checks an opened file's kind, owner and size.
fn check_file(
    path: &Path,
    info: &FileInfo,
    group_access: bool,
    need: u64,
) -> Result<(), SharedError> {
    let refused = |reason| SharedError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    if !info.is_regular() {
        return Err(refused(Refusal::NotRegularFile));
    }
    if !group_access && info.uid != sys::euid() {
        return Err(refused(Refusal::WrongOwner {
            found: info.uid,
            expected: sys::euid(),
        }));
    }
    if info.size < need {
        return Err(refused(Refusal::TooShort {
            len: info.size,
            expected: need,
        }));
    }
    Ok(())
}

/// Opens (or creates) the region of `M` named `name`.
pub(super) fn open<M: Machine>(
    name: &str,
    config: M::Config,
    options: &SharedOptions,
    slots: u32,
) -> Result<Opened<M>, SharedError> {
    const _: () = assert!(HEADER_SPACE % 64 == 0);
    assert!(
        align_of::<M>() <= 64,
        "machines are at most 64-byte aligned"
    );
    let built = M::build(&config)?;
    let path = options.path_for(M::KIND, name)?;
    let layout = Layout::of::<M>(slots);
    let ours = encode::<M>(&config, slots);
    let header = header_for::<M>(&layout, &ours);
    let group_access = options.group_access_value();
    let deadline = Instant::now() + options.open_timeout_value();
    let io = |action, source| SharedError::Io {
        path: path.clone(),
        action,
        source,
    };
    let mut fresh = Some(built);
    loop {
        match sys::open(&path, 0, 0) {
            Ok(fd) => {
                let info = sys::fstat(&fd).map_err(|e| io("inspect", e))?;
                check_file(&path, &info, group_access, HEADER_SPACE as u64)?;
                let len = usize::try_from(info.size).map_err(|_| {
                    io(
                        "map",
                        io::Error::new(io::ErrorKind::InvalidData, "file too large"),
                    )
                })?;
                let map = Mapping::new(&fd, len).map_err(|e| io("map", e))?;
                // SAFETY: the mapping holds at least `HEADER_SPACE` bytes
                // (checked above), and `Header` is plain integers, so any
                // bytes are a value; volatile because other processes
                // could (only if misbehaving) write it.
                let stored =
                    unsafe { core::ptr::read_volatile(map.base().as_ptr().cast::<Header>()) };
                // Only a region of this format may be rebuilt: anything
                // else is refused as it is.
                check_identity(&path, &stored, &header)?;
                if stored.boot_id != header.boot_id
                    && stored.boot_id != [0; 16]
                    && header.boot_id != [0; 16]
                {
                    rebuild::<M>(&path, &fd, &info, &header, &layout, options, deadline)?;
                    continue;
                }
                check_header::<M>(&path, &stored, &header, info.size)?;
                let (stored_config, stored_slots) =
                    decode::<M>(&stored.config[..stored.config_len as usize]).ok_or_else(|| {
                        SharedError::Incompatible {
                            path: path.clone(),
                            field: "config encoding",
                            stored: u64::from(stored.config_len),
                            ours: ours.bytes().len() as u64,
                        }
                    })?;
                let mut in_force = config;
                if (stored_config, stored_slots) != (config, slots) {
                    if !options.adopt_stored_config_value() {
                        return Err(SharedError::ConfigMismatch {
                            path,
                            stored: describe::<M>(&stored_config, stored_slots),
                            ours: describe::<M>(&config, slots),
                        });
                    }
                    in_force = stored_config;
                }
                let layout = Layout::of::<M>(stored_slots);
                // SAFETY: `check_header` verified the machine's offset,
                // size and alignment against this build's, and that the
                // file holds the whole region; the machine was written
                // before the file was published.
                let machine = unsafe {
                    NonNull::new_unchecked(
                        map.base().as_ptr().add(layout.machine_offset).cast::<M>(),
                    )
                };
                // The stored machine must be the one its config builds:
                // catches a file whose bytes were changed after creation.
                let expected = M::build(&in_force)?;
                // SAFETY: as above; `settings` reads plain fields only.
                if unsafe { machine.as_ref() }.settings() != expected.settings() {
                    return Err(SharedError::Incompatible {
                        path,
                        field: "machine settings (the file was changed after creation)",
                        stored: 0,
                        ours: 0,
                    });
                }
                return Ok(Opened {
                    region: Region {
                        map,
                        file: parking_lot::Mutex::new(fd),
                        path,
                        layout,
                    },
                    machine,
                    config: in_force,
                    created: false,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(SharedError::Refused {
                    path,
                    reason: Refusal::Symlink,
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => {
                return Err(SharedError::Refused {
                    path,
                    reason: Refusal::NotRegularFile,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let machine = match fresh.take() {
                    Some(m) => m,
                    None => M::build(&config)?,
                };
                let (tmp, fd, map) = build::<M>(&path, &header, machine, &layout, group_access)?;
                let linked = sys::link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        // SAFETY: this build wrote the machine at this
                        // offset of this mapping.
                        let machine = unsafe {
                            NonNull::new_unchecked(
                                map.base().as_ptr().add(layout.machine_offset).cast::<M>(),
                            )
                        };
                        return Ok(Opened {
                            region: Region {
                                map,
                                file: parking_lot::Mutex::new(fd),
                                path,
                                layout,
                            },
                            machine,
                            config,
                            created: true,
                        });
                    }
                    // Another process published first: open its file.
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(io("link", e)),
                }
            }
            Err(e) => return Err(io("open", e)),
        }
        if Instant::now() > deadline {
            return Err(SharedError::Busy { path });
        }
    }
}

fn describe<M: Machine>(config: &M::Config, slots: u32) -> String {
    if M::KIND == Kind::Bulkhead {
        format!("{config:?} with max_processes {slots}")
    } else {
        format!("{config:?}")
    }
}

/// `Incompatible` naming `field` and both values, when they differ.
fn same(path: &Path, field: &'static str, stored: u64, ours: u64) -> Result<(), SharedError> {
    if stored == ours {
        Ok(())
    } else {
        Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            field,
            stored,
            ours,
        })
    }
}

/// The fields that make the file a region of this format at all.
fn check_identity(path: &Path, stored: &Header, ours: &Header) -> Result<(), SharedError> {
    same(
        path,
        "magic",
        u64::from_le_bytes(stored.magic),
        u64::from_le_bytes(ours.magic),
    )?;
    same(
        path,
        "format version",
        stored.format_version.into(),
        ours.format_version.into(),
    )?;
    same(path, "byte order", stored.endian.into(), ours.endian.into())
}

fn check_header<M: Machine>(
    path: &Path,
    stored: &Header,
    ours: &Header,
    file_len: u64,
) -> Result<(), SharedError> {
    check_identity(path, stored, ours)?;
    let fields: [(&'static str, u32, u32); 6] = [
        ("kind", stored.kind, ours.kind),
        ("state word bits", stored.word_bits, ours.word_bits),
        ("machine size", stored.machine_size, ours.machine_size),
        (
            "machine alignment",
            stored.machine_align,
            ours.machine_align,
        ),
        ("machine offset", stored.machine_offset, ours.machine_offset),
        ("clock id", stored.clock_id, ours.clock_id),
    ];
    for (field, s, o) in fields {
        same(path, field, s.into(), o.into())?;
    }
    if stored.config_len as usize > CONFIG_CAPACITY {
        return Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            field: "config length",
            stored: stored.config_len.into(),
            ours: CONFIG_CAPACITY as u64,
        });
    }
    if stored.time_namespace != ours.time_namespace
        && stored.time_namespace != 0
        && ours.time_namespace != 0
    {
        return Err(SharedError::OtherTimeNamespace {
            path: path.to_path_buf(),
            stored: stored.time_namespace,
            ours: ours.time_namespace,
        });
    }
    // The slots' position follows from the machine's size; their number
    // is the stored one (part of the config).
    let layout = Layout::of::<M>(stored.owner_slots);
    same(
        path,
        "owner slots offset",
        stored.slots_offset.into(),
        layout.slots_offset as u64,
    )?;
    if stored.owner_slots > SharedOptions::MAX_PROCESSES {
        return Err(SharedError::Incompatible {
            path: path.to_path_buf(),
            field: "owner slots",
            stored: stored.owner_slots.into(),
            ours: SharedOptions::MAX_PROCESSES.into(),
        });
    }
    if stored.total_size != layout.total as u64 || file_len < stored.total_size {
        return Err(SharedError::Refused {
            path: path.to_path_buf(),
            reason: Refusal::TooShort {
                len: file_len,
                expected: layout.total as u64,
            },
        });
    }
    Ok(())
}

/// Replaces a region left from an earlier boot with a fresh one, under a
/// lock on its byte 0 so that one process does it.
fn rebuild<M: Machine>(
    path: &Path,
    stale: &OwnedFd,
    stale_info: &FileInfo,
    header: &Header,
    layout: &Layout,
    options: &SharedOptions,
    deadline: Instant,
) -> Result<(), SharedError> {
    let io = |action, source| SharedError::Io {
        path: path.to_path_buf(),
        action,
        source,
    };
    loop {
        if sys::try_lock_byte(stale, REBUILD_LOCK_BYTE).map_err(|e| io("lock", e))? {
            break;
        }
        if Instant::now() > deadline {
            return Err(SharedError::Busy {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(core::time::Duration::from_millis(1));
    }
    // Still the stale file under the name? (Another process may have
    // rebuilt it while we waited.)
    let current = sys::lstat(path);
    let result = match current {
        Ok(now) if (now.dev, now.ino) == (stale_info.dev, stale_info.ino) => {
            let machine = M::build(
                &decode::<M>(&header.config[..header.config_len as usize])
                    .map(|(c, _)| c)
                    .ok_or_else(|| io("encode", io::Error::other("config does not round-trip")))?,
            )?;
            let (tmp, _fd, _map) =
                build::<M>(path, header, machine, layout, options.group_access_value())?;
            sys::rename(&tmp, path).map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io("replace", e)
            })
        }
        _ => Ok(()),
    };
    let _ = sys::unlock_byte(stale, REBUILD_LOCK_BYTE);
    result
}

/// The `T` at `offset` of the region.
///
/// # Safety
///
/// `offset` is aligned for `T` and `size_of::<T>()` bytes from it are
/// within the mapping; the caller dereferences the pointer only while the
/// mapping lives, and only as a `T` reached through atomics.
pub(super) unsafe fn at<T>(base: NonNull<u8>, offset: usize) -> NonNull<T> {
    // SAFETY: in bounds of the mapping (the caller's guarantee).
    unsafe { NonNull::new_unchecked(base.as_ptr().add(offset).cast::<T>()) }
}
