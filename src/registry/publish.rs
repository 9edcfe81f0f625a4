//! Claiming a name: the entry is written to a private temporary file and
//! then hard-linked to `<name>.json`, which fails if the name is taken, so
//! readers never see half an entry and two servers never both win. A taken
//! name whose server is gone is replaced; a live one is refused.

use std::io;
use std::path::PathBuf;
use std::time::SystemTime;

use super::{Entry, Liveness, Registry, check_name, platform};
use crate::connector::{Connector, random_bytes};
use crate::error::{Error, Result};

/// A published entry; dropping it removes the entry (unless another
/// server has replaced it meanwhile). No `Debug`: `ours` holds the secret.
pub(crate) struct Registration {
    name: String,
    path: PathBuf,
    ours: Vec<u8>,
}

impl Registration {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only our own entry: after a stale-looking pause another server
        // may hold the name now.
        if std::fs::read(&self.path).is_ok_and(|bytes| bytes == self.ours) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Registry {
    /// Publishes `connector` under `name` for this process. Fails with
    /// [`Error::NameInUse`] when a live server holds the name.
    pub(crate) async fn publish(&self, name: &str, connector: &Connector) -> Result<Registration> {
        check_name(name)?;
        // Checked again: the directory may have been tampered with since
        // this Registry was made.
        platform::prepare(&self.dir)?;
        let entry = Entry {
            name: name.to_owned(),
            pid: std::process::id(),
            connector: connector.clone(),
            registered: SystemTime::now(),
        };
        let bytes = entry.to_bytes();
        let path = self.entry_path(name);
        let hex: String = random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let temp = self.dir.join(format!(".{name}.{hex}.tmp"));
        let io_error = |what: &str, source: io::Error| Error::Registry {
            path: path.clone(),
            reason: format!("the entry could not be {what}"),
            source: Some(source),
        };
        platform::create_private(&temp, &bytes).map_err(|e| io_error("written", e))?;
        let result = self.claim(name, &temp, &path).await;
        let _ = std::fs::remove_file(&temp);
        result.map_err(|e| match e {
            Claim::Io(source) => io_error("published", source),
            Claim::Failed(error) => error,
        })?;
        tracing::debug!(name, path = %path.display(), "registered");
        Ok(Registration {
            name: name.to_owned(),
            path,
            ours: bytes,
        })
    }

    async fn claim(&self, name: &str, temp: &PathBuf, path: &PathBuf) -> Result<(), Claim> {
        // A few rounds: a stale entry removed here may be claimed by
        // another starting server before this one links.
        for _ in 0..5 {
            match std::fs::hard_link(temp, path) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Claim::Io(e)),
            }
            let existing = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Claim::Io(e)),
            };
            match Entry::parse(&existing, path) {
                Ok(entry) => {
                    if entry.probe().await == Liveness::Answering {
                        return Err(Claim::Failed(Error::NameInUse {
                            name: name.to_owned(),
                            pid: entry.pid,
                            kind: entry.kind().to_owned(),
                        }));
                    }
                    tracing::info!(
                        name,
                        stale_pid = entry.pid,
                        "replacing the stale entry of a server that is gone"
                    );
                }
                // Entries appear whole (linked), so this one was not
                // written by switchboard, or by an incompatible version.
                Err(reason) => tracing::warn!(name, %reason, "replacing an unreadable entry"),
            }
            // Only what was probed: a server that claimed the name since
            // keeps it.
            if std::fs::read(path).is_ok_and(|now| now == existing) {
                let _ = std::fs::remove_file(path);
            }
        }
        Err(Claim::Failed(Error::Registry {
            path: path.clone(),
            reason: "the name kept changing hands while this server tried to claim it".into(),
            source: None,
        }))
    }
}

enum Claim {
    Io(io::Error),
    Failed(Error),
}
