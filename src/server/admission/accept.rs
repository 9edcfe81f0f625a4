//! The accept loop. It never pauses for clients in the handshake (see
//! `shed.rs` for how their number is kept down), and when the process is
//! out of file descriptors it frees one rather than waiting: it sheds the
//! oldest unauthenticated connection, or, with none to shed, closes a
//! descriptor it keeps in reserve to accept the waiting connection and
//! close it at once (the nginx/libuv "spare descriptor" technique), so a
//! full descriptor table neither spins the loop nor leaves clients hanging
//! in the backlog.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::shed::{Caps, PeerKey};
#[cfg(unix)]
use super::throttle::Throttle;
use super::{Shared, admit, lock, serve};
use crate::connector::{Link, Listener};
use crate::error::Error;

/// How long to wait for a shed connection's task to close its descriptor.
const SHED_WAIT: Duration = Duration::from_millis(100);

pub(in crate::server) async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let mut spare = Spare::reserve();
    let mut backoff = Duration::ZERO;
    loop {
        match listener.accept().await {
            Ok(link) => {
                if !backoff.is_zero() {
                    tracing::info!("accepting connections again");
                    backoff = Duration::ZERO;
                }
                start(link, &shared);
            }
            Err(e) if out_of_descriptors(&e) => {
                let shed = lock(&shared.unauthenticated).shed_for_descriptor();
                if let Some(task) = shed {
                    task.abort();
                    // Awaiting an aborted task returns once its future, and
                    // with it the connection's descriptor, is dropped.
                    let _ = tokio::time::timeout(SHED_WAIT, task).await;
                    continue;
                }
                if spare.refuse_one(&listener).await {
                    continue;
                }
                backoff = back_off(&shared, e, backoff).await;
            }
            Err(e) if transient(&e) => {}
            Err(e) => backoff = back_off(&shared, e, backoff).await,
        }
    }
}

/// Errors such as ENOMEM last a while: back off, and say so once per
/// spell rather than once per attempt.
async fn back_off(shared: &Shared, e: io::Error, backoff: Duration) -> Duration {
    let backoff = if backoff.is_zero() {
        tracing::error!("accepting a connection failed, backing off: {e}");
        (shared.on_error)(&Error::Io(e));
        Duration::from_millis(10)
    } else {
        (backoff * 2).min(Duration::from_secs(1))
    };
    tokio::time::sleep(backoff).await;
    backoff
}

/// Starts the handshake of a new connection, shedding an older
/// unauthenticated one if a cap says so.
fn start(link: Link, shared: &Arc<Shared>) {
    let number = shared
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let peer = match (link.peer_uid, link.peer_ip) {
        (Some(uid), _) => PeerKey::Uid(uid),
        (None, Some(ip)) => PeerKey::Ip(ip),
        (None, None) => PeerKey::Unknown,
    };
    let caps = Caps {
        total: shared.limits.max_handshakes,
        per_peer: shared.limits.max_handshakes_per_peer,
    };
    let shed = {
        let mut table = lock(&shared.unauthenticated);
        let shed = table.make_room(peer, caps);
        // Spawned under the lock, so the task cannot leave the table
        // before it is in it.
        let task_shared = Arc::clone(shared);
        let task = tokio::spawn(async move {
            let admitted = admit(link, &task_shared, number, true).await;
            if let Some((connection, client_id)) = admitted {
                serve(&task_shared, number, connection, client_id).await;
            }
        });
        table.insert(number, peer, task);
        shed
    };
    if let Some(task) = shed {
        task.abort();
    }
}

#[cfg(unix)]
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
fn out_of_descriptors(_: &io::Error) -> bool {
    false
}

/// A connection that went away before it was accepted: nothing to wait for.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// A descriptor held in reserve, given up for a moment to accept (and
/// close) a connection when the process has no other to spare.
struct Spare {
    #[cfg(unix)]
    file: Option<std::fs::File>,
    #[cfg(unix)]
    log: Throttle,
}

impl Spare {
    fn reserve() -> Spare {
        Spare {
            #[cfg(unix)]
            file: std::fs::File::open("/dev/null").ok(),
            #[cfg(unix)]
            log: Throttle::default(),
        }
    }

    /// Accepts the next connection with the spare descriptor and closes
    /// it, so its client learns at once that it was not served; `false`
    /// if there is no spare to use.
    #[cfg(unix)]
    async fn refuse_one(&mut self, listener: &Listener) -> bool {
        if self.file.take().is_none() {
            self.file = std::fs::File::open("/dev/null").ok();
            return false;
        }
        let accepted = tokio::time::timeout(SHED_WAIT, listener.accept()).await;
        let refused = matches!(accepted, Ok(Ok(_)));
        drop(accepted);
        self.file = std::fs::File::open("/dev/null").ok();
        if let Some(more) = self.log.admit().filter(|_| refused) {
            tracing::warn!(
                "out of file descriptors with no connection in the handshake to shed: \
                 closed a new connection at once ({more} more such since the last message)"
            );
        }
        refused
    }

    #[cfg(not(unix))]
    async fn refuse_one(&mut self, _: &Listener) -> bool {
        false
    }
}
