//! The Windows half of [`SharedRegion`]: an unnamed, pagefile-backed
//! section (`CreateFileMappingW` on `INVALID_HANDLE_VALUE`), mapped with
//! `MapViewOfFile`.
//!
//! Such a section has its size fixed when it is made: no process holding
//! a handle to it can shrink or grow it, which is what the seals give a
//! memfd on Linux, so a peer cannot make our reads fault. The peer gets it
//! by duplicating our handle into its own process ([`PeerProcess`](crate::shm::PeerProcess)),
//! and checks what it got by mapping it: a handle that is not a section,
//! or a section smaller than announced, cannot be mapped at that size.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr::NonNull;

use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEM_MAPPED, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, PAGE_READWRITE, UnmapViewOfFile, VirtualQuery,
};

use super::{SharedRegion, check_len, invalid};

/// What keeps a region reachable until the peer has taken it: the
/// section's handle.
pub(crate) type Handle = OwnedHandle;

impl SharedRegion {
    /// Makes a new region of `len` bytes, zeroed, mapped. Sections are
    /// unnamed: only a process that is handed the handle reaches it, so
    /// `name` (which Linux shows in `/proc`) is not used.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        let _ = name;
        check_len(len)?;
        let size = len as u64;
        // SAFETY: no file (pagefile-backed), default security, no name;
        // the size is split into the two halves the call takes.
        let raw = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                (size >> 32) as u32,
                size as u32,
                std::ptr::null(),
            )
        };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh section handle that nothing else owns.
        let handle = unsafe { OwnedHandle::from_raw_handle(raw) };
        Self::map(handle, len)
    }

    /// Maps a region whose handle came from the peer (already duplicated
    /// into this process), after checking that it is a section of at least
    /// `expected_len` bytes: mapping `expected_len` bytes of anything else
    /// fails, and the view is checked to be a mapped view that long.
    pub(crate) fn open(handle: OwnedHandle, expected_len: usize) -> io::Result<Self> {
        check_len(expected_len)?;
        let region = Self::map(handle, expected_len).map_err(|e| {
            invalid(format!(
                "the shared region is not a section of at least {expected_len} bytes ({e})"
            ))
        })?;
        // SAFETY: an all-zero MEMORY_BASIC_INFORMATION is a valid value to
        // be overwritten.
        let mut info: MEMORY_BASIC_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer of the size passed; the
        // address is the start of the view just made.
        let got = unsafe {
            VirtualQuery(
                region.base.as_ptr().cast(),
                &mut info,
                size_of::<MEMORY_BASIC_INFORMATION>(),
            )
        };
        if got == 0 || info.Type != MEM_MAPPED || info.RegionSize < expected_len {
            return Err(invalid(format!(
                "the shared region's view is not {expected_len} bytes of a section"
            )));
        }
        Ok(region)
    }

    fn map(handle: OwnedHandle, len: usize) -> io::Result<Self> {
        // SAFETY: maps `len` bytes from the start of the section; the call
        // fails if the handle is not a section or the section is smaller.
        let view = unsafe {
            MapViewOfFile(
                handle.as_raw_handle(),
                FILE_MAP_READ | FILE_MAP_WRITE,
                0,
                0,
                len,
            )
        };
        let base = NonNull::new(view.Value.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            base,
            len,
            handle: Some(handle),
        })
    }

    /// Takes the section's handle out (the mapping stays): its owner keeps
    /// it open until the peer has duplicated it.
    ///
    /// # Panics
    ///
    /// After [`close_descriptor`](Self::close_descriptor) or a first take.
    pub(crate) fn take_handle(&mut self) -> OwnedHandle {
        self.handle.take().expect("the region's handle was closed")
    }

    /// The section handle's value in this process, for the peer to
    /// duplicate.
    ///
    /// # Panics
    ///
    /// After [`close_descriptor`](Self::close_descriptor) or
    /// [`take_handle`](Self::take_handle).
    pub(crate) fn handle_value(&self) -> u64 {
        let handle = self
            .handle
            .as_ref()
            .expect("the region's handle was closed");
        crate::shm::peer_process::value_of(handle)
    }

    /// # Safety
    ///
    /// `base` is the start of a view made by `map`, not used afterwards.
    pub(super) unsafe fn unmap(base: NonNull<u8>, len: usize) {
        let _ = len;
        // SAFETY: the caller's promise.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: base.as_ptr().cast(),
            })
        };
    }

    /// A second mapping of the same memory, as the peer would make.
    #[cfg(test)]
    pub(crate) fn reopen(&self) -> SharedRegion {
        let handle = self.handle.as_ref().unwrap().try_clone().unwrap();
        SharedRegion::open(handle, self.len).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_checks_that_it_is_a_section_at_least_that_large() {
        let region = SharedRegion::create("sb-test", 8192).unwrap();
        let clone = || region.handle.as_ref().unwrap().try_clone().unwrap();
        assert!(SharedRegion::open(clone(), 4096).is_ok(), "a smaller view");
        let error = SharedRegion::open(clone(), 8192 * 4).unwrap_err();
        assert!(error.to_string().contains("at least 32768"), "{error}");
        // Not a section at all: an event.
        let event = unsafe {
            windows_sys::Win32::System::Threading::CreateEventW(
                std::ptr::null(),
                1,
                0,
                std::ptr::null(),
            )
        };
        assert!(!event.is_null());
        let event = unsafe { OwnedHandle::from_raw_handle(event) };
        assert!(SharedRegion::open(event, 4096).is_err());
    }
}
