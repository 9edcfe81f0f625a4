//! Inherited channels on Windows: the two ends of a named pipe with a
//! random name, one instance only, connected at once (as Mojo's
//! `PlatformChannel` does), so the name is never reachable afterwards; the
//! child's end made inheritable only for the spawn; and the checks a child
//! makes before it takes a handle over by its value (to connect through it
//! or to serve on it: which end of the pipe one holds has nothing to do
//! with which side of the protocol one plays).
//!
//! The spawn (`handoff/spawn_windows.rs`) names the end in a
//! `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`, so the child inherits it and no
//! other handle. A listed handle must be inheritable, and while it is, a
//! process another thread spawns without a list (std's `Command` does)
//! inherits it too: hence inheritable only around the one call.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::sync::{Arc, OnceLock};

use tokio::net::windows::named_pipe::{NamedPipeClient, NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{
    GENERIC_READ, GENERIC_WRITE, GetHandleInformation, HANDLE, HANDLE_FLAG_INHERIT,
    INVALID_HANDLE_VALUE, SetHandleInformation,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_FLAG_OVERLAPPED, FILE_TYPE_PIPE, GetFileType, OPEN_EXISTING,
};
use windows_sys::Win32::System::Pipes::{
    GetNamedPipeInfo, GetNamedPipeServerProcessId, PIPE_SERVER_END,
};

use super::descriptors_windows::Descriptors;
use super::link::Link;
use super::secret::random_name;

/// The child's end while the parent holds it, and where the spawn leaves
/// the child's process id for the parent's end.
pub(crate) struct Handle {
    handle: OwnedHandle,
    spawned: Spawned,
}

/// The process id of the child spawned with an end, once it is: the
/// parent's end cannot ask its pipe (it opened the child's end itself, so
/// the pipe names the parent as its client), and shared memory needs the
/// peer's process to take its handles from (`shm::peer_process`).
type Spawned = Arc<OnceLock<u32>>;

/// The parent's end, before the child has written anything.
pub(super) struct ParentEnd(NamedPipeServer, Spawned);

/// A new pair: (the child's end, the parent's end). Needs a tokio
/// runtime (the parent's end is registered with it).
pub(super) fn pair() -> io::Result<(Handle, ParentEnd)> {
    let name = format!(r"\\.\pipe\switchboard-channel-{}", random_name(24));
    let server = ServerOptions::new()
        .first_pipe_instance(true)
        .max_instances(1)
        .reject_remote_clients(true)
        .create(&name)?;
    let wide: Vec<u16> = name.encode_utf16().chain([0]).collect();
    // SAFETY: a NUL-terminated name; no security attributes (the handle is
    // not inheritable until a spawn makes it so); the result is checked.
    let client = unsafe {
        CreateFileW(
            wide.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED,
            std::ptr::null_mut(),
        )
    };
    if client == INVALID_HANDLE_VALUE {
        // Someone else took the one instance first: fail rather than
        // serve them.
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new handle nobody else owns.
    let client = unsafe { OwnedHandle::from_raw_handle(client as RawHandle) };
    let spawned = Spawned::default();
    let child = Handle {
        handle: client,
        spawned: Arc::clone(&spawned),
    };
    Ok((child, ParentEnd(server, spawned)))
}

pub(super) fn number(end: &Handle) -> u64 {
    end.handle.as_raw_handle() as usize as u64
}

pub(super) fn describe(number: u64) -> String {
    format!("handle {number:#x}")
}

impl ParentEnd {
    pub(super) async fn first_bytes(self) -> io::Result<Link> {
        // Already connected (the client end was opened at once): returns
        // immediately.
        self.0.connect().await?;
        self.0.readable().await?;
        Ok(halves(self.0, self.1.get().copied()))
    }

    pub(super) async fn link(self) -> io::Result<Link> {
        self.0.connect().await?;
        Ok(halves(self.0, self.1.get().copied()))
    }
}

/// An inherited end taken over to serve on, before the parent has written
/// anything.
pub(super) struct ServedEnd(NamedPipeClient);

impl ServedEnd {
    pub(super) async fn first_bytes(self) -> io::Result<Link> {
        self.0.readable().await?;
        let parent = server_pid(&self.0);
        Ok(halves(self.0, parent))
    }
}

/// The process that made the pipe's server end: for an inherited end, the
/// parent.
fn server_pid(pipe: &NamedPipeClient) -> Option<u32> {
    let mut pid = 0;
    // SAFETY: a query on an open pipe handle into a local.
    let found = unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) };
    (found != 0 && pid != 0).then_some(pid)
}

/// The link over one end of the pair; with the peer's process id where it
/// is known, so that shared memory can be set up over it as over any pipe.
fn halves<S>(pipe: S, peer_pid: Option<u32>) -> Link
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (reader, writer) = tokio::io::split(pipe);
    Link {
        reader: Box::new(reader),
        writer: Box::new(writer),
        peer_pid,
        peer_uid: None,
        peer_ip: None,
        unix_socket: None,
        descriptors: peer_pid.map(Descriptors::new),
    }
}

/// Makes the child's end inheritable while it lives.
pub(crate) struct Inheritance(HANDLE, Spawned);

// SAFETY: a handle value, used only for flag calls while its owner lives.
unsafe impl Send for Inheritance {}
// SAFETY: as above.
unsafe impl Sync for Inheritance {}

impl Inheritance {
    pub(super) fn handle(&self) -> HANDLE {
        self.0
    }

    /// Tells the parent's end which process got the child's.
    pub(super) fn spawned(&self, pid: u32) {
        let _ = self.1.set(pid);
    }

    pub(super) fn new(end: &Handle) -> io::Result<Inheritance> {
        let handle = end.handle.as_raw_handle() as HANDLE;
        // SAFETY: a flag call on a handle the caller keeps open.
        if unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inheritance(handle, Arc::clone(&end.spawned)))
    }
}

impl Drop for Inheritance {
    fn drop(&mut self) {
        // SAFETY: as in `new`; the end outlives this guard.
        unsafe { SetHandleInformation(self.0, HANDLE_FLAG_INHERIT, 0) };
    }
}

/// Takes over the inherited handle `number` as a link to connect through
/// (see [`adopt`]).
pub(super) fn take(number: u64) -> io::Result<Link> {
    let pipe = adopt(number)?;
    let parent = server_pid(&pipe);
    Ok(halves(pipe, parent))
}

/// Takes over the inherited handle `number` to serve on (see [`adopt`]).
pub(super) fn serve(number: u64) -> io::Result<ServedEnd> {
    adopt(number).map(ServedEnd)
}

/// Takes over the inherited handle `number`, after making sure it is what
/// the connector says: open, inheritable (as inherited handles are, and
/// handles this process opens are not), and the client end of a pipe.
fn adopt(number: u64) -> io::Result<NamedPipeClient> {
    let handle = usize::try_from(number)
        .ok()
        .filter(|value| *value != 0)
        .ok_or_else(|| refused(number, "cannot be a handle"))? as HANDLE;
    let mut flags = 0;
    // SAFETY: reads a handle's flags; an invalid one fails.
    if unsafe { GetHandleInformation(handle, &mut flags) } == 0 {
        return Err(refused(
            number,
            "is not open in this process: an inherited channel's connector works only \
             in the child spawned with it (was it handed to another process, or the \
             handle closed?)",
        ));
    }
    if flags & HANDLE_FLAG_INHERIT == 0 {
        return Err(refused(
            number,
            "was not inherited: it is not inheritable, so this process opened it itself \
             (the connector belongs to the child spawned with the channel)",
        ));
    }
    // SAFETY: queries on an open handle.
    if unsafe { GetFileType(handle) } != FILE_TYPE_PIPE {
        return Err(refused(number, "is not a pipe"));
    }
    let mut mode = 0;
    // SAFETY: as above; the null out-pointers are optional.
    let info = unsafe {
        GetNamedPipeInfo(
            handle,
            &mut mode,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    };
    if info == 0 || mode & PIPE_SERVER_END != 0 {
        return Err(refused(number, "is not the client end of a pipe pair"));
    }
    // This process's own children must not inherit it in turn.
    // SAFETY: a flag call on the open handle we are taking.
    unsafe { SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0) };
    // SAFETY: an open, inherited pipe handle opened for overlapped I/O by
    // the parent; TAKEN makes sure it is taken once.
    unsafe { NamedPipeClient::from_raw_handle(handle as RawHandle) }
}

fn refused(number: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("inherited channel: handle {number:#x} {what}"),
    )
}
