//! The connections that have not proven the secret yet, and which of them
//! to drop when there are too many.
//!
//! Accepting never stops for them (a paused accept loop leaves good clients
//! in the kernel's backlog behind idle ones). Instead their number is
//! capped per peer (the uid of a Unix socket's peer, the address of a TCP
//! peer) and overall, and a new connection past a cap sheds the *oldest*
//! unauthenticated connection of that peer, or of everyone. A good client
//! sends its hello at once and is through the handshake in a few round
//! trips, so it is almost always the newest: to shed it an attacker must
//! open a cap's worth of connections during those round trips. An
//! authenticated client has left this table and is never shed.
//!
//! A connection younger than [`GRACE`] is not shed for a cap: a burst of
//! good clients from one user (a parent starting a few hundred workers at
//! once) may outnumber the cap for a moment, and its oldest members are the
//! ones about to finish. The caps are soft by that much (the connections an
//! attacker can open within [`GRACE`]); the hard bound is the descriptor
//! table, and running out of descriptors sheds the oldest at any age
//! (`accept.rs`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::throttle::Throttle;

/// Who a connection comes from, as far as the transport tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PeerKey {
    /// A Unix socket's peer user.
    Uid(u32),
    /// A TCP peer's address (the port is the attacker's to choose).
    Ip(IpAddr),
    /// Nothing known (named pipes, the broker): only the overall cap.
    Unknown,
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerKey::Uid(uid) => write!(f, "uid {uid}"),
            PeerKey::Ip(ip) => write!(f, "address {ip}"),
            PeerKey::Unknown => f.write_str("an unidentified peer"),
        }
    }
}

/// How old a connection in the handshake must be before a cap may shed it.
pub(super) const GRACE: Duration = Duration::from_millis(250);

/// The caps, from the server's builder.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    pub(super) total: usize,
    pub(super) per_peer: usize,
}

struct Entry {
    peer: PeerKey,
    since: Instant,
    task: JoinHandle<()>,
}

/// Unauthenticated connections by age (their connection numbers increase),
/// each with the task running its handshake.
#[derive(Default)]
pub(in crate::server) struct Unauthenticated {
    entries: BTreeMap<u64, Entry>,
    per_peer_log: Throttle,
    total_log: Throttle,
    descriptors_log: Throttle,
    refusals_log: Throttle,
}

impl Unauthenticated {
    /// Sheds what must go for a new connection from `peer` to fit under
    /// `caps`, and returns its handshake task for the caller to abort
    /// (which closes it) once the table is unlocked.
    #[must_use = "the shed connection's task must be aborted"]
    pub(super) fn make_room(&mut self, peer: PeerKey, caps: Caps) -> Option<JoinHandle<()>> {
        let per_peer = caps.per_peer.max(1);
        if peer != PeerKey::Unknown {
            let mine = self.entries.values().filter(|e| e.peer == peer).count();
            if mine >= per_peer {
                let oldest = self
                    .entries
                    .iter()
                    .find(|(_, e)| e.peer == peer)
                    .filter(|(_, e)| e.since.elapsed() >= GRACE)
                    .map(|(number, _)| *number);
                let shed = self.entries.remove(&oldest?)?;
                if let Some(more) = self.per_peer_log.admit() {
                    tracing::warn!(
                        "{peer} has {mine} connections in the handshake, the most one peer \
                         may have (max_handshakes_per_peer): shed its oldest \
                         ({more} more such since the last message)"
                    );
                }
                return Some(shed.task);
            }
        }
        let total = caps.total.max(1);
        let oldest = self.entries.first_key_value()?.1;
        if self.entries.len() < total || oldest.since.elapsed() < GRACE {
            return None;
        }
        if let Some(more) = self.total_log.admit() {
            tracing::warn!(
                "{} connections are in the handshake, the most the server takes \
                 (max_handshakes): shed the oldest ({more} more such since the last message)",
                self.entries.len()
            );
        }
        self.entries.pop_first().map(|(_, e)| e.task)
    }

    /// Records a connection whose handshake `task` runs.
    pub(super) fn insert(&mut self, number: u64, peer: PeerKey, task: JoinHandle<()>) {
        let since = Instant::now();
        self.entries.insert(number, Entry { peer, since, task });
    }

    /// The connection is through the handshake or gone: `false` if it had
    /// been shed already (its task is being aborted and must not go on).
    pub(super) fn leave(&mut self, number: u64) -> bool {
        self.entries.remove(&number).is_some()
    }

    /// Out of file descriptors: sheds the oldest unauthenticated connection
    /// and returns its task, which ends (closing the descriptor) soon after
    /// the caller aborts it. `None` when there is none to shed.
    #[must_use = "the shed connection's task must be aborted"]
    pub(super) fn shed_for_descriptor(&mut self) -> Option<JoinHandle<()>> {
        let (_, Entry { peer, task, .. }) = self.entries.pop_first()?;
        if let Some(more) = self.descriptors_log.admit() {
            tracing::warn!(
                "out of file descriptors: shed the oldest connection in the handshake \
                 (from {peer}) to accept the next ({more} more such since the last message)"
            );
        }
        Some(task)
    }

    /// Whether a refused handshake should be logged: `Some(n)` with how
    /// many refusals went unlogged since the last one that was.
    pub(super) fn log_refusal(&mut self) -> Option<u64> {
        self.refusals_log.admit()
    }
}
