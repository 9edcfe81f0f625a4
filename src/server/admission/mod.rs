//! Letting clients in: the peer's user, the handshake, and who holds which
//! client id (the accept loop is `accept.rs`, the caps on unauthenticated
//! connections `shed.rs`).
//!
//! Accepting never stops. A connection must send its hello within
//! [`Limits::hello_timeout`] and finish the handshake within the config's
//! `handshake_timeout`; until it has proven the secret it may be shed to
//! make room (see `shed.rs`). A client past [`Limits::max_connections`], of
//! a user the server does not let in, or asking for a client id that a
//! live connection holds without proving it is that connection's client,
//! is told why in a handshake refusal. Refusals are logged at most once a
//! second (with a count of the rest), so a flood of bad clients cannot
//! flood the log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::{Shared, lock};
use crate::connector::{Link, UnixSocket, random_bytes};
use crate::error::{Error, Result};
use crate::peer::{Connection, Peer, Settings};
use crate::protocol::handshake::{Offer, Proven, ServerHello, TOKEN_LEN, refusal};
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

mod accept;
mod shed;
mod throttle;

pub(super) use accept::accept_loop;
pub(super) use shed::Unauthenticated;

/// How many clients a server takes, how many at once in the handshake
/// (overall and per peer), and how long a new one has to say hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub(super) max_connections: usize,
    pub(super) max_handshakes: usize,
    pub(super) max_handshakes_per_peer: usize,
    pub(super) hello_timeout: Duration,
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

/// Runs the handshake and registers the client; `None` if it was refused
/// (already reported).
/// A link that did not come through the accept loop (an inherited
/// channel, whose child the parent started): it is never in the
/// unauthenticated table, so never shed.
pub(super) async fn admit_inherited(
    link: Link,
    shared: &Arc<Shared>,
) -> Option<(u64, Arc<Connection>, String)> {
    let number = shared
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (connection, client_id) = admit(link, shared, number, false).await?;
    Some((number, connection, client_id))
}

/// `listed`: the connection is in the unauthenticated table (it came
/// through the accept loop), and may have been shed from it.
async fn admit(
    link: Link,
    shared: &Arc<Shared>,
    number: u64,
    listed: bool,
) -> Option<(Arc<Connection>, String)> {
    // However the handshake ends (refused, timed out, aborted when shed),
    // the connection leaves the unauthenticated table.
    let _pending = Pending { shared, number };
    let (peer_pid, peer_uid) = (link.peer_pid, link.peer_uid);
    // Off Unix the socket type is uninhabited, and so `Copy`.
    #[allow(clippy::clone_on_copy)]
    let socket = link.unix_socket.clone();
    let descriptors = link.descriptors;
    let reader = FrameReader::new(link.reader, shared.connector.max_frame());
    let writer = FrameWriter::new(link.writer);
    let limit = shared.config.handshake_timeout;
    let shm = Offer::new(descriptors.as_ref(), shared.config.shared_memory);
    let handshake = handshake(
        shared,
        reader,
        writer,
        (number, listed),
        peer_uid,
        (socket, shm),
    );
    let (mut proven, token, reader, writer) = match tokio::time::timeout(limit, handshake).await {
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
            shm: proven.take_shm(),
            ring: proven.ring.is_some(),
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
    Some((connection, proven.client_id))
}

/// Takes a connection out of the unauthenticated table when its handshake
/// ends, however it ends.
struct Pending<'a> {
    shared: &'a Shared,
    number: u64,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.shared.unauthenticated).leave(self.number);
    }
}

fn refused(shared: &Shared, error: &Error, peer_pid: Option<u32>, peer_uid: Option<u32>) {
    let log = lock(&shared.unauthenticated).log_refusal();
    if let Some(more) = log {
        tracing::warn!(
            ?peer_pid,
            ?peer_uid,
            "refused a client: {error} ({more} more refusals since the last message)"
        );
    }
    (shared.on_error)(error);
}

/// The server's half of the handshake with the server's own checks between
/// its steps. On success the client id is reserved for this connection.
async fn handshake(
    shared: &Shared,
    mut frames_in: FrameReader,
    mut frames_out: FrameWriter,
    (number, listed): (u64, bool),
    peer_uid: Option<u32>,
    (socket, shm): (Option<UnixSocket>, Option<Offer<'_>>),
) -> Result<(Proven, Arc<[u8]>, FrameReader, FrameWriter)> {
    let (reader, writer) = (&mut frames_in, &mut frames_out);
    // The hello is one small frame sent at once: a connection that has not
    // sent it by now is idle or an attack, and holds a descriptor.
    let hello_timeout = shared.limits.hello_timeout;
    let hello = tokio::time::timeout(hello_timeout, ServerHello::read(reader, writer))
        .await
        .map_err(|_| {
            Error::Protocol(format!(
                "a client sent no hello within {hello_timeout:?} of connecting"
            ))
        })??;
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
    let mut proven = hello
        .challenge(reader, writer, &shared.connector, shm)
        .await?;
    // Proven: from here on this connection is never shed. One that was shed
    // a moment ago is being aborted and must go no further.
    if listed && !lock(&shared.unauthenticated).leave(number) {
        return Err(Error::Protocol(
            "a client was shed to make room before it finished the handshake".into(),
        ));
    }
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
pub(super) async fn serve(
    shared: &Shared,
    number: u64,
    connection: Arc<Connection>,
    client_id: String,
) {
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
