//! Unix domain sockets through interprocess: binding with a private
//! directory, stale-socket recovery, and clear errors for the path limit.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tempfile::TempDir;

use super::Address;
use super::link::Link;
use crate::error::{Error, Result};

/// `sun_path` holds 108 bytes on Linux, 104 on macOS and the BSDs, both with
/// the terminating NUL.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MAX_PATH: usize = 107;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const MAX_PATH: usize = 103;

pub(crate) struct LocalListener {
    listener: Listener,
}

/// Removes what binding created: the socket file, then the private
/// directory if binding made one. Kept apart from the listener so a server
/// can clean up the moment it is dropped, not when its accept task ends.
pub(crate) struct Cleanup {
    path: PathBuf,
    _dir: Option<TempDir>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl LocalListener {
    pub(crate) fn bind(
        address: &Address,
        display: &str,
        open_to_others: bool,
    ) -> Result<(LocalListener, Cleanup)> {
        let Address::Unix(path) = address else {
            return Err(Error::Unsupported(format!(
                "{display} (named pipes exist only on Windows)"
            )));
        };
        let len = path.as_os_str().len();
        if len > MAX_PATH {
            return Err(Error::InvalidArgument {
                what: "socket path",
                reason: format!(
                    "{} is {len} bytes long; this platform allows at most {MAX_PATH}",
                    path.display()
                ),
            });
        }
        let bind_error = |source| Error::Bind {
            address: display.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => {
                // Making one: first clear away those of servers that died.
                super::stale_dirs::reap_once();
                Some(private_dir(parent, open_to_others).map_err(bind_error)?)
            }
            _ => None,
        };
        let listener = match listen(path) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                // A socket file that nobody accepts on is left over from a
                // crashed server (interprocess issue #40): take its place.
                match std::os::unix::net::UnixStream::connect(path) {
                    Ok(_) => {
                        return Err(Error::AddrInUse {
                            address: display.to_owned(),
                        });
                    }
                    Err(_) => {
                        std::fs::remove_file(path).map_err(|source| Error::Bind {
                            address: display.to_owned(),
                            source,
                        })?;
                        listen(path)
                    }
                }
            }
            other => other,
        }
        .map_err(|source| Error::Bind {
            address: display.to_owned(),
            source,
        })?;
        let cleanup = Cleanup {
            path: path.clone(),
            _dir: dir,
        };
        // Whatever the umask gave the socket, only its owner may connect
        // (unless the server lets others in, and checks their uid itself).
        // Between bind and here the directory (0700 when private) or the
        // uid check covers the gap.
        let mode = if open_to_others { 0o666 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(bind_error)?;
        Ok((LocalListener { listener }, cleanup))
    }

    pub(crate) async fn accept(&self) -> io::Result<Link> {
        Link::local(self.listener.accept().await?)
    }
}

fn listen(path: &Path) -> io::Result<Listener> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    // Cleanup owns unlinking; interprocess must not unlink a path that a
    // later server may already have taken over.
    ListenerOptions::new()
        .name(name)
        .reclaim_name(false)
        .create_tokio()
}

/// Creates exactly `dir` with mode 0700 (0711 when other users may reach
/// the socket in it, by its name only), to be removed when dropped.
fn private_dir(dir: &Path, open_to_others: bool) -> io::Result<TempDir> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} cannot be created as a directory", dir.display()),
        ));
    };
    tempfile::Builder::new()
        .prefix(name)
        .rand_bytes(0)
        .permissions(std::fs::Permissions::from_mode(if open_to_others {
            0o711
        } else {
            0o700
        }))
        .tempdir_in(parent)
}

pub(crate) async fn connect(address: &Address) -> io::Result<Link> {
    let Address::Unix(path) = address else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{address}: named pipes exist only on Windows"),
        ));
    };
    let name = path.as_path().to_fs_name::<GenericFilePath>()?;
    Link::local(Stream::connect(name).await?)
}
