//! Descriptors across a Unix socket link, at the moments the protocol
//! above says they may come (Linux).
//!
//! A descriptor passed with `SCM_RIGHTS` rides on the bytes it was sent
//! with, and a plain `read` of those bytes makes the kernel close it. So
//! the link's reader reads with `recvmsg` only while someone
//! [expects](Descriptors::expect) descriptors (the handshake, in lockstep
//! with the peer, so no other bytes are in flight), keeps what comes, and
//! otherwise reads plainly: descriptors a peer sends at any other moment
//! are closed by the kernel, and cost the latency path nothing.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::shm::{recv_with_fds, send_with_fds};
use crate::unix_socket::UnixSocket;

/// Most descriptors one read may bring while they are expected; a peer
/// sending more fails the read (and they are closed).
const MAX_PER_READ: usize = 4;
/// Most descriptors kept until taken, whatever the peer sends.
const MAX_KEPT: usize = 8;

/// Sending and receiving descriptors on one link (see the module docs).
#[derive(Clone)]
pub struct Descriptors {
    socket: Arc<UnixSocket>,
    inbox: Arc<Inbox>,
}

impl std::fmt::Debug for Descriptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Descriptors").finish_non_exhaustive()
    }
}

/// What the reader shares with [`Descriptors`].
#[derive(Default)]
pub(super) struct Inbox {
    expected: AtomicBool,
    received: Mutex<Vec<OwnedFd>>,
}

impl Inbox {
    /// True while reads should take descriptors.
    pub(super) fn expecting(&self) -> bool {
        self.expected.load(Ordering::Acquire)
    }

    /// One read while descriptors are expected: into `buf`, keeping what
    /// came with the bytes. Returns the bytes read.
    pub(super) fn receive(&self, socket: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
        let received = recv_with_fds(socket, buf, MAX_PER_READ)?;
        if received.truncated {
            // The handshake sees them missing and goes on without shared
            // memory.
            tracing::debug!("descriptors from the peer dropped: this process is out of them");
        }
        if !received.fds.is_empty() {
            let mut kept = self.received.lock().unwrap_or_else(PoisonError::into_inner);
            if kept.len() + received.fds.len() > MAX_KEPT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the peer sent more descriptors than the protocol allows",
                ));
            }
            kept.extend(received.fds);
        }
        Ok(received.bytes)
    }
}

impl Descriptors {
    pub(super) fn new(socket: Arc<UnixSocket>, inbox: Arc<Inbox>) -> Descriptors {
        Descriptors { socket, inbox }
    }

    /// From now on, reads keep the descriptors that come with the bytes,
    /// until [`Descriptors::take`]. Call it before the read of the frame
    /// they are expected with begins.
    pub fn expect(&self) {
        self.inbox.expected.store(true, Ordering::Release);
    }

    /// Stops expecting descriptors and returns those that came, in order.
    pub fn take(&self) -> Vec<OwnedFd> {
        self.inbox.expected.store(false, Ordering::Release);
        std::mem::take(
            &mut *self
                .inbox
                .received
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Writes `bytes` (a whole frame) with `fds` attached to the first of
    /// them. For moments when nothing else writes on the link (the
    /// handshake).
    pub async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let mut sent = 0;
        while sent < bytes.len() {
            // The socket is registered for readability only (see
            // `unix_halves`); a handshake frame almost always fits the empty
            // send buffer at once, so a full one is simply tried again.
            let attached = if sent == 0 { fds } else { &[] };
            match send_with_fds(self.socket.get_ref().as_fd(), &bytes[sent..], attached) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
