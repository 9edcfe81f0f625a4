//! Windows named pipes through interprocess.
//!
//! Three things interprocess leaves to us:
//! - access: the pipe gets a protected DACL granting the current user alone
//!   (a default pipe DACL also admits Everyone for reading, and
//!   administrators);
//! - exclusive names: a second server on a taken name must fail. Windows
//!   enforces this with `FILE_FLAG_FIRST_PIPE_INSTANCE` (which interprocess
//!   sets), but a named mutex claims the name as well, so the check holds
//!   wherever that flag is not honoured (Wine);
//! - busy pipes: when every instance is taken, interprocess's default connect
//!   waits in a blocking thread with no deadline. We connect without waiting
//!   and retry `ERROR_PIPE_BUSY` in the client's own deadline-bound loop.

use std::io;
use std::time::Duration;

use interprocess::ConnectWaitMode;
use interprocess::local_socket::tokio::{Listener, prelude::*};
use interprocess::local_socket::{ConnectOptions, GenericNamespaced, ListenerOptions, ToNsName};
use interprocess::os::windows::local_socket::ListenerOptionsExt;
use interprocess::os::windows::security_descriptor::SecurityDescriptor;
use widestring::{U16CStr, U16CString};
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_ALREADY_EXISTS, GetLastError, HANDLE, LocalFree,
};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{GetTokenInformation, TOKEN_QUERY, TOKEN_USER, TokenUser};
use windows_sys::Win32::System::Threading::{CreateMutexW, GetCurrentProcess, OpenProcessToken};

use super::Address;
use super::link::Link;
use crate::error::{Error, Result};

pub(crate) struct LocalListener {
    listener: Listener,
    // Released with the listener, not before: the name stays taken exactly
    // as long as pipe instances can still accept.
    _claim: NameClaim,
}

/// A pipe vanishes with its last handle; nothing to remove.
pub(crate) struct Cleanup;

impl LocalListener {
    // Pipes are always restricted to the current user (see the DACL below);
    // other users are not let in on Windows.
    pub(crate) fn bind(
        address: &Address,
        display: &str,
        _open_to_others: bool,
    ) -> Result<(LocalListener, Cleanup)> {
        let Address::Pipe(name) = address else {
            return Err(Error::Unsupported(format!(
                "{display} (Unix sockets are not used on Windows; use a pipe connector)"
            )));
        };
        let bind_error = |source: io::Error| Error::Bind {
            address: display.to_owned(),
            source,
        };
        let claim = NameClaim::try_claim(name)
            .map_err(bind_error)?
            .ok_or_else(|| Error::AddrInUse {
                address: display.to_owned(),
            })?;
        let descriptor = current_user_only().map_err(bind_error)?;
        let listener = ListenerOptions::new()
            .name(name.as_str().to_ns_name::<GenericNamespaced>()?)
            .security_descriptor(descriptor)
            .create_tokio()
            .map_err(|source| match source.kind() {
                // FILE_FLAG_FIRST_PIPE_INSTANCE refuses a taken name with
                // ERROR_ACCESS_DENIED.
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Error::AddrInUse {
                    address: display.to_owned(),
                },
                _ => bind_error(source),
            })?;
        let listener = LocalListener {
            listener,
            _claim: claim,
        };
        Ok((listener, Cleanup))
    }

    pub(crate) async fn accept(&self) -> io::Result<Link> {
        Link::local(self.listener.accept().await?)
    }
}

pub(crate) async fn connect(address: &Address) -> io::Result<Link> {
    let Address::Pipe(name) = address else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{address}: Unix sockets are not used on Windows"),
        ));
    };
    let stream = ConnectOptions::new()
        .name(name.as_str().to_ns_name::<GenericNamespaced>()?)
        .wait_mode(ConnectWaitMode::Timeout(Duration::ZERO))
        .connect_tokio()
        .await?;
    Link::local(stream)
}

/// A protected DACL (no inherited entries) that allows the current user
/// everything and no one else anything.
fn current_user_only() -> io::Result<SecurityDescriptor> {
    let sddl = format!("D:P(A;;GA;;;{})", current_user_sid()?);
    let sddl = U16CString::from_str(&sddl).map_err(io::Error::other)?;
    SecurityDescriptor::deserialize(&sddl)
}

/// The current process user's SID in string form (`S-1-5-21-...`).
fn current_user_sid() -> io::Result<String> {
    // SAFETY: plain Win32 calls with locally owned out-pointers; the token
    // handle and the string from ConvertSidToStringSidW are released on
    // every path, and the TOKEN_USER buffer is 8-byte aligned and as large
    // as GetTokenInformation asked for.
    unsafe {
        let mut token: HANDLE = std::ptr::null_mut();
        if OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut len = 0u32;
        GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len);
        let mut buffer = vec![0u64; (len as usize).div_ceil(8)];
        let ok = GetTokenInformation(token, TokenUser, buffer.as_mut_ptr().cast(), len, &mut len);
        let error = io::Error::last_os_error();
        CloseHandle(token);
        if ok == 0 {
            return Err(error);
        }
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        let mut text: *mut u16 = std::ptr::null_mut();
        if ConvertSidToStringSidW(user.User.Sid, &mut text) == 0 {
            return Err(io::Error::last_os_error());
        }
        let sid = U16CStr::from_ptr_str(text).to_string_lossy();
        LocalFree(text.cast());
        Ok(sid)
    }
}

/// An exclusive, process-lifetime claim on a pipe name: a named mutex in the
/// session namespace, released when dropped or when the process dies.
struct NameClaim(HANDLE);

// SAFETY: a mutex handle is a kernel object reference usable from any thread.
unsafe impl Send for NameClaim {}
unsafe impl Sync for NameClaim {}

impl NameClaim {
    /// `Ok(None)` when another live server holds the name.
    fn try_claim(pipe_name: &str) -> io::Result<Option<NameClaim>> {
        let name = U16CString::from_str(format!(r"Local\switchboard-pipe-{pipe_name}"))
            .map_err(io::Error::other)?;
        // SAFETY: `name` is a valid NUL-terminated wide string that outlives
        // the call; the returned handle is owned by NameClaim or closed here.
        unsafe {
            let handle = CreateMutexW(std::ptr::null(), 0, name.as_ptr());
            if handle.is_null() {
                return Err(io::Error::last_os_error());
            }
            if GetLastError() == ERROR_ALREADY_EXISTS {
                CloseHandle(handle);
                return Ok(None);
            }
            Ok(Some(NameClaim(handle)))
        }
    }
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateMutexW and is closed only here.
        unsafe {
            CloseHandle(self.0);
        }
    }
}
