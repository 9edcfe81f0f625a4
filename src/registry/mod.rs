//! Services found by name: a per-user registry directory where a server
//! publishes its connector under a name ([`Server::bind_named`](crate::Server::bind_named)),
//! a [services file](Services) for a fixed project layout, and the
//! [`Lookup`] that a client connecting by name
//! ([`Client::connect_named`](crate::Client::connect_named)) resolves
//! through.
//!
//! The registry is a directory only its user can enter:
//! `$XDG_RUNTIME_DIR/switchboard` where that is set, else
//! `switchboard-<uid>` in the temp directory (its owner and mode checked
//! before every use), on Windows `%LOCALAPPDATA%\switchboard\registry`.
//! Each service is one file `<name>.json` (see [`Entry`]), written
//! atomically and removed when its server shuts down or is dropped. A
//! server that died without removing it leaves a stale entry: the next
//! server to claim the name probes it (is the process alive, does its
//! address accept a connection) and takes its place.
//!
//! ```no_run
//! use switchboard::registry::Registry;
//!
//! # async fn demo() -> switchboard::Result<()> {
//! for entry in Registry::user()?.list()? {
//!     let live = entry.probe().await;
//!     println!("{} pid {} {} {:?}", entry.name(), entry.pid(), entry.kind(), live);
//! }
//! # Ok(()) }
//! ```

#[cfg(unix)]
mod dir_unix;
#[cfg(windows)]
mod dir_windows;
mod entry;
mod lookup;
mod name;
mod probe;
mod publish;
mod services;

#[cfg(unix)]
use dir_unix as platform;
#[cfg(windows)]
use dir_windows as platform;

use std::io;
use std::path::{Path, PathBuf};

pub use entry::Entry;
pub use lookup::Lookup;
pub use name::MAX_NAME_LEN;
pub use probe::Liveness;
pub(crate) use publish::Registration;
pub use services::{SERVICES_ENV_VAR, Services};

use crate::error::{Error, Result};

/// A registry directory of named services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// This user's registry (see the [module documentation](self) for
    /// where), created if missing. Fails when the directory is not private
    /// to this user: owned by another user, open to others, or a symbolic
    /// link; the error names the path and the reason.
    pub fn user() -> Result<Registry> {
        Registry::at(platform::default_dir())
    }

    /// A registry in `dir` instead (tests, or a group of programs that
    /// keep their own), created with mode 0700 if missing and checked like
    /// [`Registry::user`].
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let registry = switchboard::registry::Registry::at(dir.path().join("names"))?;
    /// assert!(registry.list()?.is_empty());
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn at(dir: impl Into<PathBuf>) -> Result<Registry> {
        let dir = dir.into();
        platform::prepare(&dir)?;
        Ok(Registry { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The entry registered under `name`, if any (live or stale).
    pub fn get(&self, name: &str) -> Result<Option<Entry>> {
        check_name(name)?;
        self.read(&self.entry_path(name))
    }

    fn read(&self, path: &Path) -> Result<Option<Entry>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Registry {
                    path: path.to_owned(),
                    reason: "the entry could not be read".into(),
                    source: Some(e),
                });
            }
        };
        Entry::parse(&bytes, path)
            .map(Some)
            .map_err(|reason| Error::Registry {
                path: path.to_owned(),
                reason,
                source: None,
            })
    }

    /// Every entry, sorted by name (live and stale: [`Entry::probe`]
    /// tells them apart). Files that are not valid entries are skipped
    /// (and logged).
    pub fn list(&self) -> Result<Vec<Entry>> {
        let files = std::fs::read_dir(&self.dir).map_err(|e| Error::Registry {
            path: self.dir.clone(),
            reason: "the directory could not be read".into(),
            source: Some(e),
        })?;
        let mut entries = Vec::new();
        for file in files.flatten() {
            let path = file.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            if check_name(name).is_err() {
                continue;
            }
            match self.read(&path) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable registry entry"),
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }
}

/// Checks a service name, as the error the caller gets.
pub(crate) fn check_name(name: &str) -> Result<()> {
    name::check_name(name).map_err(|reason| Error::InvalidArgument {
        what: "service name",
        reason,
    })
}
