//! The raw peer's Windows half: a named pipe opened as a file, pools made
//! as sections and named by handle value in the proof (the server, in
//! this same process, duplicates them out of it), and the pools and
//! regions that lie about themselves.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};

use serde_json::json;
use switchboard::{Address, Connector};
use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MapViewOfFile, PAGE_READWRITE,
};
use windows_sys::Win32::System::Threading::CreateEventW;

use super::{Attack, frame, shared_request};

pub type Stream = File;
/// Nothing else is handed over on Windows.
pub struct Kept;

/// What `offset` carries for a region of its own: this bit and the
/// handle value.
const REGION_BIT: u64 = 1 << 63;

/// A pool as the proof names it: a handle value, and (for a section) the
/// handle and a view to write through.
pub struct Pool {
    value: u64,
    _handle: Option<OwnedHandle>,
    view: usize,
}

impl Pool {
    /// An honest pool: a section of `len` bytes.
    pub fn new(len: usize) -> Pool {
        // SAFETY: a pagefile-backed section; the handle is owned at once
        // and the view (never unmapped: the test process ends) is `len`
        // bytes.
        unsafe {
            let raw = CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                len as u32,
                std::ptr::null(),
            );
            assert!(!raw.is_null());
            let view = MapViewOfFile(raw, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, len);
            assert!(!view.Value.is_null());
            Pool {
                value: raw as usize as u64,
                _handle: Some(OwnedHandle::from_raw_handle(raw)),
                view: view.Value as usize,
            }
        }
    }

    /// A handle that is not a section: an event.
    fn not_a_section() -> Pool {
        // SAFETY: a plain call; the handle is owned at once.
        let handle = unsafe {
            OwnedHandle::from_raw_handle(CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()))
        };
        Pool {
            value: handle.as_raw_handle() as usize as u64,
            _handle: Some(handle),
            view: 0,
        }
    }

    /// A value that names no handle in this process.
    fn nothing() -> Pool {
        Pool {
            value: 0x00ff_fffc,
            _handle: None,
            view: 0,
        }
    }

    pub fn write(&self, offset: usize, bytes: &[u8]) {
        assert_ne!(self.view, 0, "a section");
        // SAFETY: the view is as large as the section, and the callers
        // write inside it.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (self.view as *mut u8).add(offset),
                bytes.len(),
            )
        };
    }
}

/// Pools that are not what the protocol asks, the size announced for
/// each, and what the refusal says.
pub fn lying_pools() -> Vec<(Pool, usize, &'static str)> {
    vec![
        (
            Pool::new(1 << 20),
            2 << 20,
            "not a section of at least 2097152",
        ),
        (Pool::not_a_section(), 1 << 20, "not a section"),
        (Pool::nothing(), 1 << 20, "unusable"),
    ]
}

/// Regions of their own that are not what the `shared` frame says. The
/// handles stay open (leaked) so that the values name them when the
/// server looks.
pub fn lying_regions() -> Vec<(&'static str, Attack)> {
    vec![
        (
            "a region that is not a section",
            Box::new(|_| {
                let event = Pool::not_a_section();
                let value = event.value;
                std::mem::forget(event);
                shared_request(REGION_BIT | value, 4096)
            }),
        ),
        (
            "a region smaller than named",
            Box::new(|_| {
                let small = Pool::new(4096);
                let value = small.value;
                std::mem::forget(small);
                shared_request(REGION_BIT | value, 1 << 20)
            }),
        ),
        (
            "a region handle that names nothing",
            Box::new(|_| shared_request(REGION_BIT | 0x00ff_fffc, 4096)),
        ),
    ]
}

pub fn connect(connector: &Connector) -> Stream {
    let Address::Pipe(name) = connector.address() else {
        panic!("not a named pipe");
    };
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!(r"\\.\pipe\{name}"))
        .unwrap()
}

/// Sends the proof naming `pool` by its handle value.
pub fn send_proof(stream: &mut Stream, pool: &Pool, announced: usize) -> Kept {
    let proof = json!({"pool": announced, "fds": ["pool"], "handles": [pool.value]});
    stream
        .write_all(&frame(proof.to_string().as_bytes()))
        .unwrap();
    Kept
}
