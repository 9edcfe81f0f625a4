//! The registry directory on Unix: `$XDG_RUNTIME_DIR/switchboard`, else
//! `switchboard-<uid>` in the temp directory. The temp directory is shared
//! by every user, so whoever creates that name first owns it: before use,
//! the directory's owner and mode are checked, and one that another user
//! created or that others may enter is refused.

use std::fs::DirBuilder;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// This user's registry directory (not yet created or checked).
pub(super) fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) if Path::new(&runtime).is_absolute() => {
            Path::new(&runtime).join("switchboard")
        }
        _ => std::env::temp_dir().join(format!("switchboard-{}", own_uid())),
    }
}

fn own_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates `dir` (mode 0700) if it is missing, then checks that it is a
/// real directory owned by this user that no one else may enter.
pub(super) fn prepare(dir: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => {
            return Err(Error::Registry {
                path: dir.to_owned(),
                reason: "the directory could not be created".into(),
                source: Some(e),
            });
        }
    }
    check(dir)
}

fn check(dir: &Path) -> Result<()> {
    let refuse = |reason: String| Error::Registry {
        path: dir.to_owned(),
        reason,
        source: None,
    };
    // Not following a symbolic link: one planted by another user would
    // point this user's registry wherever they like.
    let metadata = std::fs::symlink_metadata(dir).map_err(|e| Error::Registry {
        path: dir.to_owned(),
        reason: "the directory could not be examined".into(),
        source: Some(e),
    })?;
    if metadata.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link, not a directory; refusing to follow it (remove it)".into(),
        ));
    }
    if !metadata.is_dir() {
        return Err(refuse("it is not a directory (remove it)".into()));
    }
    let me = own_uid();
    if metadata.uid() != me {
        return Err(refuse(format!(
            "it belongs to user {}, not to this user ({me}): another user created it, \
             so it cannot be trusted with this user's secrets; remove it, or set \
             XDG_RUNTIME_DIR to a private directory",
            metadata.uid()
        )));
    }
    let mode = metadata.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "its mode is {mode:03o}: other users may enter it, and it holds secrets; \
             make it private (chmod 700 {})",
            dir.display()
        )));
    }
    Ok(())
}

/// Writes `contents` to a new file `path` that only this user may read.
pub(super) fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// True unless the process is certainly gone. A pid reused by another
/// process reads as alive; the connection probe catches that case.
pub(super) fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } == 0 {
        return true;
    }
    io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
