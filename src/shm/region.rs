//! A region of shared memory mapped into this process, whatever made it:
//! a sealed memfd on Linux ([`linux`]), a pagefile-backed section on
//! Windows ([`windows`]). Both are fixed in size once made, so a peer can
//! never shrink one under our reads (which would be a fault, not an
//! error); the platform halves make, check and map them, and this file
//! holds what is the same everywhere: bounds-checked access that never
//! forms a reference to bytes the peer may be writing.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(windows)]
mod windows;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

#[cfg(target_os = "linux")]
pub(crate) use linux::Handle;
#[cfg(windows)]
pub(crate) use windows::Handle;

/// A shared memory region mapped read-write, unmapped on drop.
///
/// Every accessor is bounds-checked; none hands out a reference to bytes the
/// peer may be writing.
#[derive(Debug)]
pub(crate) struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
    /// The descriptor or section handle; `None` once closed
    /// ([`SharedRegion::close_descriptor`]) or taken: the mapping outlives it.
    handle: Option<Handle>,
}

// SAFETY: the mapping is plain memory valid until drop; every access goes
// through atomics or raw-pointer copies that tolerate concurrent writers
// (another process writes it anyway), so sharing the handle between threads
// adds nothing a second process does not already do.
unsafe impl Send for SharedRegion {}
// SAFETY: as for Send: `&SharedRegion` only reads `base`/`len` and performs
// the same raw or atomic accesses.
unsafe impl Sync for SharedRegion {}

impl SharedRegion {
    /// The region's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Closes the descriptor once it has been passed on: the mapping stays
    /// (and keeps the memory alive), and a connection that holds regions for
    /// a long time holds no descriptors for them.
    pub(crate) fn close_descriptor(&mut self) {
        self.handle = None;
    }

    /// The start of `offset..offset + len`, or `None` if it is not inside the
    /// region. For code that copies many pieces and checks each range once.
    pub(crate) fn range(&self, offset: usize, len: usize) -> Option<NonNull<u8>> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: `offset <= end <= self.len`: inside (or one past) the mapping.
        Some(unsafe { self.base.add(offset) })
    }

    /// Copies `dst.len()` bytes out of the region from `offset`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> io::Result<()> {
        let src = self.range(offset, dst.len()).ok_or_else(out_of_bounds)?;
        // SAFETY: `src..src+len` is inside the mapping (checked above) and
        // cannot overlap `dst`, which is ordinary Rust memory. The peer may
        // write the same bytes meanwhile: the copy then holds some mix of old
        // and new bytes, which the caller treats as untrusted input anyway.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> io::Result<()> {
        let dst = self.range(offset, src.len()).ok_or_else(out_of_bounds)?;
        // SAFETY: `dst..dst+len` is inside the mapping, which is writable and
        // cannot overlap `src` (ordinary Rust memory).
        unsafe { super::bulk_copy::copy(dst.as_ptr(), src) };
        Ok(())
    }

    /// The 4-byte word at `offset`, shared with the peer, as an atomic.
    /// `None` if it is outside the region or not 4-aligned.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let ptr = self.aligned::<AtomicU32>(offset)?;
        // SAFETY: in bounds and aligned (checked), valid for the life of
        // `&self`; any bit pattern is a valid u32, and atomics are the sound
        // way to share a word with another writer.
        Some(unsafe { ptr.as_ref() })
    }

    /// The 8-byte word at `offset`, shared with the peer, as an atomic.
    /// `None` if it is outside the region or not 8-aligned.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let ptr = self.aligned::<AtomicU64>(offset)?;
        // SAFETY: as for `atomic_u32`.
        Some(unsafe { ptr.as_ref() })
    }

    fn aligned<T>(&self, offset: usize) -> Option<NonNull<T>> {
        let ptr = self.range(offset, size_of::<T>())?.cast::<T>();
        ptr.as_ptr().is_aligned().then_some(ptr)
    }
}

impl Drop for SharedRegion {
    fn drop(&mut self) {
        // SAFETY: `base..base+len` is the mapping the platform half made,
        // unmapped only here; every reference handed out borrows `self`, so
        // none outlives it.
        unsafe { Self::unmap(self.base, self.len) };
    }
}

fn check_len(len: usize) -> io::Result<()> {
    if len == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a shared region cannot be empty",
        ));
    }
    Ok(())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn out_of_bounds() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "range outside the shared region",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_region_is_zeroed_and_reads_back_what_was_written() {
        let region = SharedRegion::create("sb-test", 4096).unwrap();
        let mut out = [0xffu8; 8];
        region.read(100, &mut out).unwrap();
        assert_eq!(out, [0; 8]);
        region.write(100, b"switchbd").unwrap();
        region.read(100, &mut out).unwrap();
        assert_eq!(&out, b"switchbd");
        region.write(4088, b"lastword").unwrap();
    }

    #[test]
    fn accesses_outside_the_region_are_refused() {
        let region = SharedRegion::create("sb-test", 4096).unwrap();
        assert!(region.write(4089, b"lastword").is_err());
        assert!(region.read(usize::MAX, &mut [0; 2]).is_err());
        assert!(region.range(4096, 1).is_none());
        assert!(region.range(4096, 0).is_some());
        assert!(region.atomic_u32(4094).is_none());
        assert!(region.atomic_u32(2).is_none(), "misaligned");
        assert!(region.atomic_u64(4088).is_some());
        assert!(region.atomic_u64(4092).is_none());
        assert!(SharedRegion::create("sb-test", 0).is_err());
    }

    #[test]
    fn a_second_mapping_of_the_region_sees_the_same_memory() {
        let region = SharedRegion::create("sb-test", 8192).unwrap();
        let other = region.reopen();
        region.atomic_u64(64).unwrap().store(42, Ordering::Release);
        assert_eq!(other.atomic_u64(64).unwrap().load(Ordering::Acquire), 42);
        other.write(5000, b"back").unwrap();
        let mut out = [0; 4];
        region.read(5000, &mut out).unwrap();
        assert_eq!(&out, b"back");
    }
}
