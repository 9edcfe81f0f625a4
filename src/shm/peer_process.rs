//! The peer's process, opened for duplicating handles out of it (Windows):
//! how this side takes a section the peer made. The peer names a handle by
//! its value in its own process; this side duplicates it into its own
//! (`DuplicateHandle` with the peer as the source), so whatever value the
//! peer sends, it can only ever hand over one of its own objects, never
//! make this side use or close one of this side's handles.
//!
//! Opening needs `PROCESS_DUP_HANDLE` on the peer, which Windows grants
//! for a process of the same user at the same or a lower integrity level
//! and not in a sandbox; where it is refused, shared memory is declined
//! and the connection uses the pipe.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use windows_sys::Win32::Foundation::{DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE};

/// A handle to the peer's process with `PROCESS_DUP_HANDLE`.
#[derive(Debug)]
pub(crate) struct PeerProcess(OwnedHandle);

impl PeerProcess {
    /// Opens process `pid` (the peer, as the pipe reports it).
    pub(crate) fn open(pid: u32) -> io::Result<PeerProcess> {
        // SAFETY: a plain call; a null result is an error, anything else a
        // fresh handle we own.
        let raw = unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) };
        if raw.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        Ok(PeerProcess(unsafe { OwnedHandle::from_raw_handle(raw) }))
    }

    /// Duplicates the peer's handle `value` into this process. Handle
    /// values fit 32 bits (Windows keeps them so for 32-bit processes); 0
    /// and larger values are refused, which also keeps out the
    /// pseudo-handles (−1, −2, ...).
    pub(crate) fn take(&self, value: u64) -> io::Result<OwnedHandle> {
        if value == 0 || value > u64::from(u32::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{value:#x} is not a handle value"),
            ));
        }
        let mut ours: HANDLE = std::ptr::null_mut();
        // SAFETY: the source is the peer's process (opened with
        // PROCESS_DUP_HANDLE), the target this one; `ours` is a valid
        // out-pointer. The value is only interpreted in the peer's handle
        // table.
        let done = unsafe {
            DuplicateHandle(
                self.0.as_raw_handle(),
                value as usize as HANDLE,
                GetCurrentProcess(),
                &mut ours,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if done == 0 || ours.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: DuplicateHandle made a fresh handle in this process.
        Ok(unsafe { OwnedHandle::from_raw_handle(ours) })
    }
}

/// The value of `handle` in this process, as the peer is told it.
pub(crate) fn value_of(handle: &OwnedHandle) -> u64 {
    handle.as_raw_handle() as usize as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::SharedRegion;

    #[test]
    fn a_section_is_taken_by_its_value_in_the_source_process() {
        let mut region = SharedRegion::create("sb-test", 4096).unwrap();
        region.write(10, b"seen").unwrap();
        let handle = region.take_handle();
        let this = PeerProcess::open(std::process::id()).unwrap();
        let taken = this.take(value_of(&handle)).unwrap();
        let other = SharedRegion::open(taken, 4096).unwrap();
        let mut out = [0; 4];
        other.read(10, &mut out).unwrap();
        assert_eq!(&out, b"seen");
        for bad in [0, u64::MAX, 1 << 40] {
            assert!(this.take(bad).is_err(), "{bad:#x}");
        }
    }
}
