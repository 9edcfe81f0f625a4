//! One registered service: the file `<name>.json` in the registry
//! directory. A small JSON object, so other languages can read it too:
//!
//! ```json
//! {"version":1,"name":"calc","pid":4242,"kind":"unix","connector":"sb1:...","registered":1763800000}
//! ```
//!
//! `registered` is in seconds since the Unix epoch. The file holds the
//! connector's secret, so it is created with mode 0600 (on Windows it
//! inherits the directory's user-only access).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::connector::Connector;

/// The entry file format this build writes and reads.
pub(super) const ENTRY_VERSION: u32 = 1;

/// A service found in the registry: its name, its server's process and
/// how to reach it. `Debug` leaves the secret out.
#[derive(Clone, Debug)]
pub struct Entry {
    pub(super) name: String,
    pub(super) pid: u32,
    pub(super) connector: Connector,
    pub(super) registered: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    name: String,
    pid: u32,
    kind: String,
    connector: String,
    registered: u64,
}

impl Entry {
    /// The service name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id of the server that registered it.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How to reach the server (secret included).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// The connector's kind: `unix`, `pipe`, `tcp` or `amqp`.
    pub fn kind(&self) -> &'static str {
        self.connector.address().kind()
    }

    /// When the server registered it.
    pub fn registered(&self) -> SystemTime {
        self.registered
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        let seconds = self
            .registered
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let disk = OnDisk {
            version: ENTRY_VERSION,
            name: self.name.clone(),
            pid: self.pid,
            kind: self.kind().to_owned(),
            connector: self.connector.dump_state(),
            registered: seconds,
        };
        let mut bytes = serde_json::to_vec(&disk).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// Reads an entry file; `Err` says what is wrong with it (never the
    /// secret).
    pub(super) fn parse(bytes: &[u8], file: &Path) -> Result<Entry, String> {
        let disk: OnDisk = serde_json::from_slice(bytes)
            .map_err(|e| format!("{} is not a registry entry: {e}", file.display()))?;
        if disk.version != ENTRY_VERSION {
            return Err(format!(
                "{} has entry version {}; this build reads version {ENTRY_VERSION}",
                file.display(),
                disk.version
            ));
        }
        let connector = Connector::load_state(&disk.connector)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(Entry {
            name: disk.name,
            pid: disk.pid,
            connector,
            registered: UNIX_EPOCH + Duration::from_secs(disk.registered),
        })
    }
}
