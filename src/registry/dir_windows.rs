//! The registry directory on Windows: `switchboard\registry` under the
//! user's local application data (`%LOCALAPPDATA%`), which Windows already
//! restricts to the user, administrators and the system.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// This user's registry directory (not yet created).
pub(super) fn default_dir() -> PathBuf {
    let base = std::env::var_os("LOCALAPPDATA")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .unwrap_or_else(std::env::temp_dir);
    base.join("switchboard").join("registry")
}

/// Creates `dir` if it is missing and checks that it is a directory.
pub(super) fn prepare(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Registry {
        path: dir.to_owned(),
        reason: "the directory could not be created".into(),
        source: Some(e),
    })?;
    let metadata = std::fs::symlink_metadata(dir).map_err(|e| Error::Registry {
        path: dir.to_owned(),
        reason: "the directory could not be examined".into(),
        source: Some(e),
    })?;
    if !metadata.is_dir() || metadata.file_type().is_symlink() {
        return Err(Error::Registry {
            path: dir.to_owned(),
            reason: "it is not a plain directory (remove it)".into(),
            source: None,
        });
    }
    Ok(())
}

/// Writes `contents` to a new file `path` (inheriting the directory's
/// user-only access).
pub(super) fn create_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Windows gives no cheap check without a handle; the connection probe
/// decides.
pub(super) fn process_alive(_pid: u32) -> bool {
    true
}
