//! The child process `spawn_with_channel` returns on Windows, where it
//! spawns through its own `CreateProcessW` and std's `Child` cannot be
//! made from a process handle: [`ChannelChild`] for std's `Command`,
//! [`AsyncChannelChild`] (an async `wait`) for tokio's.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsHandle, AsRawHandle, BorrowedHandle, OwnedHandle, RawHandle};
use std::os::windows::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::sync::oneshot;
use windows_sys::Win32::Foundation::{HANDLE, INVALID_HANDLE_VALUE, WAIT_OBJECT_0, WAIT_TIMEOUT};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, INFINITE, RegisterWaitForSingleObject, TerminateProcess, UnregisterWaitEx,
    WT_EXECUTEINWAITTHREAD, WT_EXECUTEONLYONCE, WaitForSingleObject,
};

/// A child spawned with
/// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)
/// from a `std::process::Command` on Windows: its process handle, with
/// what std's `Child` offers for it (no standard stream pipes: the child
/// writes to this process's streams).
///
/// ```no_run
/// use switchboard::{CommandExt, Connector, Router, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind(&Connector::local(), Router::new()).await?;
/// let channel = server.child_channel()?;
/// let mut child = std::process::Command::new("worker.exe")
///     .connector_env(channel.connector())
///     .spawn_with_channel(channel)?;
/// println!("worker {} started", child.id());
/// let status = tokio::task::spawn_blocking(move || child.wait()).await??;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ChannelChild {
    process: OwnedHandle,
    id: u32,
}

impl ChannelChild {
    pub(super) fn new(process: OwnedHandle, id: u32) -> ChannelChild {
        ChannelChild { process, id }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits for the child to exit, and returns its exit status.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        // SAFETY: waits on a process handle this value owns.
        match unsafe { WaitForSingleObject(self.raw(), INFINITE) } {
            WAIT_OBJECT_0 => self.exit_status(),
            _ => Err(failed("waiting for the child")),
        }
    }

    /// The child's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        // SAFETY: as in `wait`, with no wait.
        match unsafe { WaitForSingleObject(self.raw(), 0) } {
            WAIT_OBJECT_0 => self.exit_status().map(Some),
            WAIT_TIMEOUT => Ok(None),
            _ => Err(failed("checking whether the child exited")),
        }
    }

    /// Ends the child (`TerminateProcess`, exit code 1). A child that has
    /// already exited is no error, as with std's `Child::kill`.
    pub fn kill(&mut self) -> io::Result<()> {
        // SAFETY: a process handle this value owns.
        if unsafe { TerminateProcess(self.raw(), 1) } != 0 {
            return Ok(());
        }
        let error = failed("killing the child");
        match self.try_wait() {
            Ok(Some(_)) => Ok(()),
            _ => Err(error),
        }
    }

    fn raw(&self) -> HANDLE {
        self.process.as_raw_handle() as HANDLE
    }

    fn exit_status(&self) -> io::Result<ExitStatus> {
        let mut code = 0;
        // SAFETY: reads the exit code of a process handle this value owns.
        if unsafe { GetExitCodeProcess(self.raw(), &mut code) } == 0 {
            return Err(failed("reading the child's exit code"));
        }
        Ok(ExitStatus::from_raw(code))
    }
}

impl AsRawHandle for ChannelChild {
    fn as_raw_handle(&self) -> RawHandle {
        self.process.as_raw_handle()
    }
}

impl AsHandle for ChannelChild {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.process.as_handle()
    }
}

/// A child spawned with
/// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)
/// from a `tokio::process::Command` on Windows: as [`ChannelChild`], with
/// an async [`wait`](AsyncChannelChild::wait) and
/// [`kill`](AsyncChannelChild::kill) like tokio's `Child`, and the
/// command's `kill_on_drop` honoured.
///
/// ```no_run
/// use switchboard::{CommandExt, Connector, Router, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = Server::bind(&Connector::local(), Router::new()).await?;
/// let channel = server.child_channel()?;
/// let mut child = tokio::process::Command::new("worker.exe")
///     .connector_env(channel.connector())
///     .kill_on_drop(true)
///     .spawn_with_channel(channel)?;
/// let status = child.wait().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncChannelChild {
    child: ChannelChild,
    kill_on_drop: bool,
    exited: bool,
}

impl AsyncChannelChild {
    pub(super) fn new(child: ChannelChild, kill_on_drop: bool) -> AsyncChannelChild {
        AsyncChannelChild {
            child,
            kill_on_drop,
            exited: false,
        }
    }

    /// The child's process id; `None` once its exit was seen, as with
    /// tokio's `Child::id`.
    pub fn id(&self) -> Option<u32> {
        (!self.exited).then_some(self.child.id)
    }

    /// Waits, without blocking a thread, for the child to exit.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let (sender, exited) = oneshot::channel();
        let registration = Registration::new(self.child.raw(), sender)?;
        // The sender is only dropped unsent with the registration.
        let _ = exited.await;
        drop(registration);
        let status = self.child.wait()?;
        self.exited = true;
        Ok(status)
    }

    /// The child's exit status if it has exited, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        let status = self.child.try_wait()?;
        self.exited |= status.is_some();
        Ok(status)
    }

    /// Ends the child without waiting for it.
    pub fn start_kill(&mut self) -> io::Result<()> {
        self.child.kill()
    }

    /// Ends the child and waits for it to exit.
    pub async fn kill(&mut self) -> io::Result<()> {
        self.start_kill()?;
        self.wait().await.map(drop)
    }
}

impl AsRawHandle for AsyncChannelChild {
    fn as_raw_handle(&self) -> RawHandle {
        self.child.as_raw_handle()
    }
}

impl AsHandle for AsyncChannelChild {
    fn as_handle(&self) -> BorrowedHandle<'_> {
        self.child.as_handle()
    }
}

impl Drop for AsyncChannelChild {
    fn drop(&mut self) {
        if self.kill_on_drop && !self.exited {
            let _ = self.child.kill();
        }
    }
}

/// A thread-pool wait on a process handle (`RegisterWaitForSingleObject`,
/// as tokio's own `Child` uses) that sends once the process has exited.
struct Registration {
    wait: HANDLE,
    sender: *mut Option<oneshot::Sender<()>>,
}

// SAFETY: the sender is touched by the callback until `UnregisterWaitEx`
// returns, and by `drop` only after.
unsafe impl Send for Registration {}
// SAFETY: no method reads through `&Registration`.
unsafe impl Sync for Registration {}

impl Registration {
    fn new(process: HANDLE, sender: oneshot::Sender<()>) -> io::Result<Registration> {
        let sender = Box::into_raw(Box::new(Some(sender)));
        let mut wait = std::ptr::null_mut();
        // SAFETY: a process handle the caller keeps open while this lives;
        // the context stays valid until `drop` unregisters.
        let registered = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                process,
                Some(exited),
                sender.cast::<c_void>(),
                INFINITE,
                WT_EXECUTEINWAITTHREAD | WT_EXECUTEONLYONCE,
            )
        };
        if registered == 0 {
            let error = failed("waiting for the child");
            // SAFETY: never registered: nobody else has the pointer.
            drop(unsafe { Box::from_raw(sender) });
            return Err(error);
        }
        Ok(Registration { wait, sender })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // INVALID_HANDLE_VALUE: returns once a callback that is running
        // has returned, so the context is ours alone after.
        // SAFETY: a wait `new` registered, unregistered once.
        unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
        // SAFETY: the box `new` made; the callback can no longer run.
        drop(unsafe { Box::from_raw(self.sender) });
    }
}

unsafe extern "system" fn exited(context: *mut c_void, _timed_out: bool) {
    // SAFETY: the context `Registration::new` passed, alive until its drop
    // (which waits for this callback).
    let sender = unsafe { &mut *context.cast::<Option<oneshot::Sender<()>>>() };
    if let Some(sender) = sender.take() {
        let _ = sender.send(());
    }
}

fn failed(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}
