//! Letting clients in: the accept loop and its limits, the peer's user, the
//! handshake, and who holds which client id.
//!
//! Accepting stops while [`Limits::max_handshakes`] clients are in the
//! handshake (the rest wait in the OS's backlog), and every handshake has a
//! deadline. A client past [`Limits::max_connections`], of a user the
//! server does not let in, or asking for a client id that a live connection
//! holds without proving it is that connection's client, is told why in a
//! handshake refusal and logged. Accept errors (such as running out of file
//! descriptors) back off instead of spinning, and are logged once per
//! spell, not once per attempt.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::{Shared, lock};
use crate::connector::{Link, Listener, UnixSocket, random_bytes};
use crate::error::{Error, Result};
use crate::peer::{Connection, Peer, Settings};
use crate::protocol::handshake::{Proven, ServerHello, TOKEN_LEN, refusal};
use crate::ring_switch::{self, Side};
use crate::transport::{FrameReader, FrameWriter};

/// Who may connect to a server over a Unix socket, by the peer process's
/// user id as the operating system reports it.
///
/// Over TCP nobody's user is known and only the secret counts; on Windows
/// the pipe admits the current user only, whatever this says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Access {
    /// Only the user the server runs as (the default).
    #[default]
    SameUser,
    /// The server's own user and these. The socket file is made
    /// connectable by everyone (0666), so that the check is the server's.
    Users(Vec<u32>),
    /// Any user who can reach the socket; the secret still applies.
    Anyone,
}

impl Access {
    fn allows(&self, uid: Option<u32>, own: Option<u32>) -> bool {
        let Some(uid) = uid else {
            // Nothing to check: TCP (the secret decides) or pipes (the DACL does).
            return true;
        };
        match self {
            Access::Anyone => true,
            Access::SameUser => Some(uid) == own,
            Access::Users(uids) => Some(uid) == own || uids.contains(&uid),
        }
    }

    pub(super) fn open_to_others(&self) -> bool {
        !matches!(self, Access::SameUser)
    }
}

/// How many clients a server takes, and how many at once in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) max_connections: usize,
    pub(super) max_handshakes: usize,
}

/// The client id's holder, with the token that proves it.
pub(super) struct Holder {
    pub(super) number: u64,
    /// `None` while its handshake is finishing.
    pub(super) peer: Option<Peer>,
    pub(super) token: Arc<[u8]>,
}

pub(super) type Holders = HashMap<String, Holder>;

#[cfg(unix)]
fn own_uid() -> Option<u32> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    Some(unsafe { libc::geteuid() })
}

#[cfg(not(unix))]
fn own_uid() -> Option<u32> {
    None
}

pub(super) async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let handshakes = Arc::new(Semaphore::new(shared.limits.max_handshakes.max(1)));
    let mut backoff = Duration::ZERO;
    loop {
        let Ok(slot) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok(link) => {
                if !backoff.is_zero() {
                    tracing::info!("accepting connections again");
                    backoff = Duration::ZERO;
                }
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let admitted = admit(link, &shared).await;
                    drop(slot);
                    if let Some((number, connection, client_id)) = admitted {
                        serve(&shared, number, connection, client_id).await;
                    }
                });
            }
            Err(e) => {
                // Errors such as EMFILE last a while: back off, and say so
                // once per spell rather than once per attempt.
                if backoff.is_zero() {
                    tracing::error!("accepting a connection failed, backing off: {e}");
                    (shared.on_error)(&Error::Io(e));
                    backoff = Duration::from_millis(10);
                } else {
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// Runs the handshake and registers the client; `None` if it was refused
/// (already reported).
async fn admit(link: Link, shared: &Arc<Shared>) -> Option<(u64, Arc<Connection>, String)> {
    let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (peer_pid, peer_uid) = (link.peer_pid, link.peer_uid);
    let socket = link.unix_socket.clone();
    let reader = FrameReader::new(link.reader, shared.connector.max_frame());
    let writer = FrameWriter::new(link.writer);
    let limit = shared.config.handshake_timeout;
    let handshake = handshake(shared, reader, writer, number, peer_uid, socket);
    let (proven, token, reader, writer) = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(admitted)) => admitted,
        Ok(Err(e)) => {
            refused(shared, &e, peer_pid, peer_uid);
            return None;
        }
        Err(_) => {
            let e = Error::Protocol(format!(
                "a client did not finish the handshake within {limit:?}"
            ));
            refused(shared, &e, peer_pid, peer_uid);
            return None;
        }
    };
    let connection = Arc::new(Connection::start(
        reader,
        writer,
        Settings {
            transport: shared.connector.address().kind(),
            client_id: proven.client_id.clone(),
            peer_pid,
            peer_uid,
            format: proven.format,
            max_frame: shared.connector.max_frame(),
            config: shared.config.clone(),
            peer_window: proven.peer_window,
            report: Some(Arc::clone(&shared.on_error)),
        },
        Arc::clone(&shared.router),
    ));
    lock(&shared.connections).insert(number, Arc::clone(&connection));
    let replaced = {
        let mut holders = lock(&shared.holders);
        let replaced = holders.insert(
            proven.client_id.clone(),
            Holder {
                number,
                peer: Some(connection.peer().clone()),
                token,
            },
        );
        publish_count(shared, &holders);
        replaced
    };
    // A client that proved it held its id replaces its old connection.
    if let Some(old) = replaced.filter(|old| old.number != number)
        && let Some(old) = lock(&shared.connections).remove(&old.number)
    {
        old.close();
    }
    tracing::debug!(client_id = %proven.client_id, ?peer_pid, ?peer_uid, "client connected");
    (shared.on_connect)(connection.peer());
    Some((number, connection, proven.client_id))
}

fn refused(shared: &Shared, error: &Error, peer_pid: Option<u32>, peer_uid: Option<u32>) {
    tracing::warn!(?peer_pid, ?peer_uid, "refused a client: {error}");
    (shared.on_error)(error);
}

/// The server's half of the handshake with the server's own checks between
/// its steps. On success the client id is reserved for this connection.
async fn handshake(
    shared: &Shared,
    mut frames_in: FrameReader,
    mut frames_out: FrameWriter,
    number: u64,
    peer_uid: Option<u32>,
    socket: Option<UnixSocket>,
) -> Result<(Proven, Arc<[u8]>, FrameReader, FrameWriter)> {
    let (reader, writer) = (&mut frames_in, &mut frames_out);
    let hello = ServerHello::read(reader, writer).await?;
    if !shared.access.allows(peer_uid, own_uid()) {
        let uid = peer_uid.unwrap_or_default();
        let message = format!("user {uid} may not connect to this server");
        return Err(hello.refuse(writer, refusal::NOT_PERMITTED, &message).await);
    }
    let live = lock(&shared.connections).len();
    if live >= shared.limits.max_connections {
        let message = format!(
            "the server has its maximum of {} connections",
            shared.limits.max_connections
        );
        return Err(hello.refuse(writer, refusal::BUSY, &message).await);
    }
    let mut proven = hello.challenge(reader, writer, &shared.connector).await?;
    if socket.is_none() {
        proven.ring = None;
    }
    let token = {
        let mut holders = lock(&shared.holders);
        match holders.get(&proven.client_id) {
            Some(holder) if !proven.holds(&holder.token) => None,
            Some(holder) => Some(Arc::clone(&holder.token)),
            None => {
                // Reserved now, so a second client asking for the same id
                // during this handshake is refused (and freed by the guard
                // below if the handshake goes no further).
                let token: Arc<[u8]> = random_bytes::<TOKEN_LEN>().to_vec().into();
                holders.insert(
                    proven.client_id.clone(),
                    Holder {
                        number,
                        peer: None,
                        token: Arc::clone(&token),
                    },
                );
                Some(token)
            }
        }
    };
    // Only an entry with this connection's number is ever freed, so a
    // resumed holder's entry survives a failed resumption.
    let mut reservation = Reservation {
        shared,
        client_id: proven.client_id.clone(),
        number,
        armed: true,
    };
    let Some(token) = token else {
        let message = format!(
            "client id {:?} is in use by a live connection, and this client did not \
             prove it is the one that holds it",
            proven.client_id
        );
        return Err(proven.refuse(writer, refusal::ID_IN_USE, &message).await);
    };
    let window = shared.config.window();
    proven
        .welcome(reader, writer, &shared.connector, window, &token)
        .await?;
    let spin = shared.config.ring_spin;
    let (reader, writer) = ring_switch::switch(
        Side::Server,
        proven.ring,
        socket,
        frames_in,
        frames_out,
        spin,
    )
    .await?;
    reservation.armed = false;
    Ok((proven, token, reader, writer))
}

/// Frees a client id reserved by a handshake that did not finish (failed,
/// or dropped at its deadline).
struct Reservation<'a> {
    shared: &'a Shared,
    client_id: String,
    number: u64,
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut holders = lock(&self.shared.holders);
            if holders
                .get(&self.client_id)
                .is_some_and(|h| h.number == self.number)
            {
                holders.remove(&self.client_id);
            }
        }
    }
}

/// Tells `wait_for_clients` how many clients are connected (reservations
/// of handshakes in progress do not count).
fn publish_count(shared: &Shared, holders: &Holders) {
    let connected = holders.values().filter(|h| h.peer.is_some()).count();
    shared.client_count.send_replace(connected);
}

/// Serves one connection until it ends, then forgets it.
async fn serve(shared: &Shared, number: u64, connection: Arc<Connection>, client_id: String) {
    connection.closed().await;
    {
        let mut holders = lock(&shared.holders);
        if holders.get(&client_id).is_some_and(|h| h.number == number) {
            holders.remove(&client_id);
        }
        publish_count(shared, &holders);
    }
    lock(&shared.connections).remove(&number);
    (shared.on_disconnect)(connection.peer());
    match connection.take_error() {
        Some(e) => {
            tracing::warn!(client_id = %client_id, "connection ended: {e}");
            (shared.on_error)(&e);
        }
        None => tracing::debug!(client_id = %client_id, "client left"),
    }
}
