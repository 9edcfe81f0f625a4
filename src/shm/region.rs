//! A region of shared memory: a sealed memfd mapped into this process.
//!
//! The creator makes it (`memfd_create`, size it, seal it against shrinking
//! and growing and against further seals) and maps it; the receiver of its
//! descriptor checks size and seals before mapping it, so a peer can never
//! truncate it under our reads (which would be a SIGBUS, not an error).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// The seals every region carries: it cannot change size, and no one can add
/// or remove a seal afterwards.
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// A shared memory region mapped read-write, unmapped on drop.
///
/// Every accessor is bounds-checked; none hands out a reference to bytes the
/// peer may be writing.
#[derive(Debug)]
pub(crate) struct SharedRegion {
    base: NonNull<u8>,
    len: usize,
    /// `None` once closed ([`SharedRegion::close_descriptor`]): the mapping
    /// outlives it.
    fd: Option<OwnedFd>,
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
    /// Makes a new region of `len` bytes, zeroed, sealed, mapped. `name` shows
    /// in `/proc/PID/fd` and `/proc/PID/maps` (as `memfd:NAME`), for debugging.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        check_len(len)?;
        let name = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region name has a NUL"))?;
        // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
        let raw = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "region too large"))?;
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, len)
    }

    /// Maps a region whose descriptor came from the peer, after checking that
    /// it is a regular file (a memfd) of exactly `expected_len` bytes that
    /// carries the seals [`create`](Self::create) puts on, so it can never
    /// shrink under us.
    pub(crate) fn open(fd: OwnedFd, expected_len: usize) -> io::Result<Self> {
        check_len(expected_len)?;
        // SAFETY: an all-zero `stat` is a valid value to be overwritten.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `stat` is a valid out-pointer; the descriptor is ours.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(invalid(
                "the shared region's descriptor is not a memory file",
            ));
        }
        if u64::try_from(stat.st_size).ok() != Some(expected_len as u64) {
            return Err(invalid(format!(
                "the shared region is {} bytes, expected {expected_len}",
                stat.st_size
            )));
        }
        // SAFETY: plain syscall on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 {
            return Err(io::Error::last_os_error());
        }
        if seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(invalid(
                "the shared region is not sealed against shrinking, growing and resealing",
            ));
        }
        Self::map(fd, expected_len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        // SAFETY: a fresh shared mapping of a descriptor we own, at an address
        // the kernel chooses; the file is at least `len` bytes (sized by us,
        // or checked by `open`) and sealed so it stays so.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        Ok(Self {
            base,
            len,
            fd: Some(fd),
        })
    }

    /// The region's size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The descriptor, to pass to the peer ([`send_with_fds`](super::send_with_fds)).
    ///
    /// # Panics
    ///
    /// After [`close_descriptor`](Self::close_descriptor): a region whose
    /// descriptor is passed on keeps it.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd
            .as_ref()
            .map(AsFd::as_fd)
            .expect("the region's descriptor was closed")
    }

    /// Closes the descriptor once it has been passed on: the mapping stays
    /// (and keeps the memory alive), and a connection that holds regions for
    /// a long time holds no descriptors for them.
    pub(crate) fn close_descriptor(&mut self) {
        self.fd = None;
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
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_ptr(), src.len()) };
        Ok(())
    }

    /// The 4-byte word at `offset`, shared with the peer, as an atomic.
    /// `None` if it is outside the region or not 4-aligned.
    pub(crate) fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let ptr = self.aligned::<AtomicU32>(offset)?;
        // SAFETY: in bounds and aligned (checked), valid for the life of
        // `&self`; any bit pattern is a valid u32, and atomics are the sound
        // way to share a word with another writer.
        Some(unsafe { ptr.as_ref() })
    }

    /// The 8-byte word at `offset`, shared with the peer, as an atomic.
    /// `None` if it is outside the region or not 8-aligned.
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
        // SAFETY: `base..base+len` is the mapping made in `map`, unmapped only
        // here; every reference handed out borrows `self`, so none outlives it.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
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
    fn a_region_is_sealed_against_resizing() {
        let region = SharedRegion::create("sb-test", 4096).unwrap();
        // SAFETY: plain syscalls on a descriptor the region owns.
        let (shrink, grow) = unsafe {
            (
                libc::ftruncate(region.fd().as_raw_fd(), 100),
                libc::ftruncate(region.fd().as_raw_fd(), 8192),
            )
        };
        assert_eq!((shrink, grow), (-1, -1));
        let seals = unsafe { libc::fcntl(region.fd().as_raw_fd(), libc::F_GET_SEALS) };
        assert_eq!(seals & REQUIRED_SEALS, REQUIRED_SEALS);
    }

    #[test]
    fn a_second_mapping_of_the_descriptor_sees_the_same_memory() {
        let region = SharedRegion::create("sb-test", 8192).unwrap();
        let other = SharedRegion::open(region.fd().try_clone_to_owned().unwrap(), 8192).unwrap();
        region.atomic_u64(64).unwrap().store(42, Ordering::Release);
        assert_eq!(other.atomic_u64(64).unwrap().load(Ordering::Acquire), 42);
        other.write(5000, b"back").unwrap();
        let mut out = [0; 4];
        region.read(5000, &mut out).unwrap();
        assert_eq!(&out, b"back");
    }

    #[test]
    fn opening_checks_the_size_and_the_seals() {
        let region = SharedRegion::create("sb-test", 8192).unwrap();
        let clone = || region.fd().try_clone_to_owned().unwrap();
        let error = SharedRegion::open(clone(), 4096).unwrap_err();
        assert!(error.to_string().contains("expected 4096"), "{error}");
        assert!(SharedRegion::open(clone(), 16384).is_err());

        // An unsealed memfd could be truncated under our reads: refused.
        let raw = unsafe { libc::memfd_create(c"sb-unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        let unsealed = unsafe { OwnedFd::from_raw_fd(raw) };
        assert_eq!(unsafe { libc::ftruncate(unsealed.as_raw_fd(), 4096) }, 0);
        let error = SharedRegion::open(unsealed, 4096).unwrap_err();
        assert!(error.to_string().contains("not sealed"), "{error}");

        // Not a memory file at all.
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(SharedRegion::open(OwnedFd::from(a), 4096).is_err());
    }
}
