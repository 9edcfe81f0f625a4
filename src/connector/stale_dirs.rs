//! Reaping the private socket directories (`$TMPDIR/sb-XXXXXXXXXXXX/s`) of
//! servers that died without removing them (SIGKILL, a crash): each
//! process that makes such a directory first removes this user's dead ones.
//!
//! Removal is careful, since the temp directory is shared with everyone:
//! only entries named like ours (`sb-` and 12 of `[a-z0-9]`), seen with
//! `lstat` (a symlink is never followed), directories owned by this user
//! with mode 0700 or 0711 (what `local_unix.rs` makes), holding nothing but
//! a socket named `s`, untouched for [`MIN_AGE`] (a server that is starting
//! has just made its directory and socket), and whose socket refuses a
//! connection (`ECONNREFUSED`: nothing listens; a live server, or one that
//! cannot be told, is left alone). The socket and then the directory are
//! unlinked one by one, so anything that appears in the meantime makes the
//! removal fail instead of deleting it.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, SystemTime};

/// A directory younger than this may belong to a server that is starting.
const MIN_AGE: Duration = Duration::from_secs(5);
/// The prefix of the directories `Connector::local` names.
const PREFIX: &str = "sb-";
/// How many random characters follow it.
const RANDOM_LEN: usize = 12;

/// Reaps this user's dead socket directories in the temp directory, once
/// per process (the first time a private directory is made).
pub(super) fn reap_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let reaped = reap(&std::env::temp_dir());
        if reaped > 0 {
            tracing::debug!("removed {reaped} socket directories left by dead servers");
        }
    });
}

/// Reaps the dead socket directories in `temp`; returns how many went.
fn reap(temp: &Path) -> usize {
    let Ok(entries) = fs::read_dir(temp) else {
        return 0;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let mut reaped = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|name| ours(name)) else {
            continue;
        };
        let dir = temp.join(name);
        if is_dead(&dir, uid).unwrap_or(false)
            && fs::remove_file(dir.join("s")).is_ok()
            && fs::remove_dir(&dir).is_ok()
        {
            reaped += 1;
        }
    }
    reaped
}

fn ours(name: &str) -> bool {
    name.strip_prefix(PREFIX).is_some_and(|random| {
        random.len() == RANDOM_LEN
            && random
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// Whether `dir` is a dead server's private directory (see the module doc).
fn is_dead(dir: &Path, uid: u32) -> io::Result<bool> {
    let meta = fs::symlink_metadata(dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if !meta.file_type().is_dir() || meta.uid() != uid || !matches!(mode, 0o700 | 0o711) {
        return Ok(false);
    }
    if young(&meta) {
        return Ok(false);
    }
    let mut names = fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.file_name()));
    let only_s = matches!(names.next(), Some(Ok(name)) if name == "s") && names.next().is_none();
    if !only_s {
        return Ok(false);
    }
    let socket = dir.join("s");
    let meta = fs::symlink_metadata(&socket)?;
    if !meta.file_type().is_socket() || meta.uid() != uid || young(&meta) {
        return Ok(false);
    }
    Ok(match std::os::unix::net::UnixStream::connect(&socket) {
        Ok(_) => false,
        Err(e) => e.kind() == io::ErrorKind::ConnectionRefused,
    })
}

fn young(meta: &Metadata) -> bool {
    let changed =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(meta.ctime()).unwrap_or(0));
    let modified = meta.modified().unwrap_or(SystemTime::now());
    let latest = changed.max(modified);
    SystemTime::now()
        .duration_since(latest)
        .map_or(true, |age| age < MIN_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_are_considered() {
        assert!(ours("sb-abcdefghij01"));
        for other in [
            "sb-abcdefghij0",
            "sb-ABCDEFGHIJ01",
            "sb-abcdefghij012",
            "xb-abcdefghij01",
            "sb-../../etc01",
        ] {
            assert!(!ours(other), "{other}");
        }
    }
}
