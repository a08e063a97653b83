//! The canonical config bytes stored in a region's header: little-endian,
//! fixed field order, the same on every build of one format version.
// Off Linux no region is ever opened, so the pieces that work on one are
// unused there (the API still builds and answers `Unsupported`).
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused_imports, unused_mut))]

use core::time::Duration;

/// The most config bytes a header holds.
pub(super) const CONFIG_CAPACITY: usize = 192;

/// Writes config fields.
#[derive(Debug)]
pub struct Encoder {
    bytes: [u8; CONFIG_CAPACITY],
    len: usize,
}

impl Encoder {
    pub(super) fn new() -> Encoder {
        Encoder {
            bytes: [0; CONFIG_CAPACITY],
            len: 0,
        }
    }

    fn put(&mut self, b: &[u8]) {
        // Every machine's config is far below the capacity (at most 80
        // bytes); a longer one would be a bug in this module.
        let end = self.len + b.len();
        assert!(end <= CONFIG_CAPACITY, "config encoding exceeds the header");
        self.bytes[self.len..end].copy_from_slice(b);
        self.len = end;
    }

    /// A `u32`.
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }

    /// A `u64`.
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }

    /// A duration: seconds then nanoseconds.
    pub fn duration(&mut self, d: Duration) {
        self.u64(d.as_secs());
        self.u32(d.subsec_nanos());
    }

    /// An optional count: a flag then the value (0 when absent).
    pub fn option_u32(&mut self, v: Option<u32>) {
        self.u32(u32::from(v.is_some()));
        self.u32(v.unwrap_or(0));
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Reads config fields; every read is checked.
#[derive(Debug)]
pub struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    /// A `u32`.
    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    /// A `u64`.
    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A duration; `None` for nanoseconds out of range.
    pub fn duration(&mut self) -> Option<Duration> {
        let secs = self.u64()?;
        let nanos = self.u32()?;
        (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
    }

    /// A 0/1 flag.
    pub fn flag(&mut self) -> Option<bool> {
        match self.u32()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// An optional count.
    pub fn option_u32(&mut self) -> Option<Option<u32>> {
        let present = self.flag()?;
        let v = self.u32()?;
        Some(present.then_some(v))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
