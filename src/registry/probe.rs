//! Is a registered server still there? Its process must be alive and its
//! address must accept a connection; a server killed without cleaning up
//! fails one or the other.

use std::time::Duration;

use super::{Entry, platform};
use crate::connector::{self, Address};

/// How long a probe waits for the address to accept.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether a registered server is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Liveness {
    /// Its process is alive and its address accepts connections.
    Answering,
    /// Its process is gone, or nothing accepts at its address: the entry
    /// was left behind by a server that died without removing it.
    Stale,
}

impl Liveness {
    /// `answering` or `stale`.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Answering => "answering",
            Liveness::Stale => "stale",
        }
    }
}

impl Entry {
    /// Checks whether the server behind this entry is there: its process
    /// is alive and its address accepts a connection. The connection then
    /// goes through the handshake and is closed, so the server sees an
    /// ordinary short-lived client, not a failure.
    pub async fn probe(&self) -> Liveness {
        if !platform::process_alive(self.pid) {
            return Liveness::Stale;
        }
        // A broker accepts whether or not the server is up; the pid is
        // the only sign there.
        if matches!(self.connector.address(), Address::Amqp { .. }) {
            return Liveness::Answering;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, connector::connect(&self.connector)).await {
            Ok(Ok(link)) => {
                crate::client::probe_handshake(link, &self.connector).await;
                Liveness::Answering
            }
            Ok(Err(e)) => {
                tracing::debug!(name = %self.name, error = %e, "registry probe: nothing accepts");
                Liveness::Stale
            }
            // Accepting is the kernel's job; a listener that cannot even
            // do that within the limit is not serving anyone.
            Err(_) => Liveness::Stale,
        }
    }
}
