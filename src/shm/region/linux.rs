//! The Linux half of [`SharedRegion`]: a memfd sealed against shrinking,
//! growing and further seals, passed to the peer as a descriptor.
//!
//! The creator makes it (`memfd_create`, size it, seal it) and maps it; the
//! receiver of its descriptor checks size and seals before mapping it, so a
//! peer can never truncate it under our reads (which would be a SIGBUS).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use super::{SharedRegion, check_len, invalid};

/// What keeps a region reachable until it is passed on: its descriptor.
pub(crate) type Handle = OwnedFd;

/// The seals every region carries: it cannot change size, and no one can add
/// or remove a seal afterwards.
const REQUIRED_SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

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
            handle: Some(fd),
        })
    }

    /// The descriptor, to pass to the peer ([`send_with_fds`](crate::shm::send_with_fds)).
    ///
    /// # Panics
    ///
    /// After [`close_descriptor`](Self::close_descriptor): a region whose
    /// descriptor is passed on keeps it.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.handle
            .as_ref()
            .map(AsFd::as_fd)
            .expect("the region's descriptor was closed")
    }

    /// # Safety
    ///
    /// `base..base + len` is a mapping made by `map`, not used afterwards.
    pub(super) unsafe fn unmap(base: NonNull<u8>, len: usize) {
        // SAFETY: the caller's promise.
        unsafe { libc::munmap(base.as_ptr().cast(), len) };
    }

    /// A second mapping of the same memory, as the peer would make.
    #[cfg(test)]
    pub(crate) fn reopen(&self) -> SharedRegion {
        SharedRegion::open(self.fd().try_clone_to_owned().unwrap(), self.len).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
