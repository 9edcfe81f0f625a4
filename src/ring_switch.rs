//! Moving an authenticated connection onto the shared-memory ring, when its
//! handshake agreed to one (PROTOCOL.md §10): the client makes the ring and
//! sends it over the socket, the server takes it; both then read and write
//! frames through it. Used by the client's dial and the server's admission,
//! between the handshake and the start of the connection.

use std::time::Duration;

use crate::connector::UnixSocket;
use crate::error::{Error, Result};
use crate::transport::{FrameReader, FrameWriter};

/// Which end of the connection this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// The connection's frame reader and writer over the ring when `ring`
/// (its agreed capacity) says so, else the ones given.
pub(crate) async fn switch(
    side: Side,
    ring: Option<u32>,
    socket: Option<UnixSocket>,
    reader: FrameReader,
    writer: FrameWriter,
    spin: Duration,
) -> Result<(FrameReader, FrameWriter)> {
    let Some(capacity) = ring else {
        return Ok((reader, writer));
    };
    if !reader.is_drained() {
        return Err(Error::Protocol(
            "the peer sent frames after agreeing to the shared-memory ring and before it".into(),
        ));
    }
    let max = reader.max();
    let (read, write) = halves(side, capacity, socket, spin).await?;
    Ok((FrameReader::new(read, max), FrameWriter::new(write)))
}

#[cfg(target_os = "linux")]
async fn halves(
    side: Side,
    capacity: u32,
    socket: Option<UnixSocket>,
    spin: Duration,
) -> Result<crate::shm::ring_setup::Halves> {
    use crate::shm::ring_setup;
    let socket = socket.ok_or_else(|| {
        Error::Protocol("a shared-memory ring was agreed on a connection without a socket".into())
    })?;
    let halves = match side {
        Side::Client => ring_setup::offer(socket, capacity, spin),
        Side::Server => ring_setup::accept(socket, capacity, spin).await,
    };
    halves.map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
            Error::Protocol(format!("setting up the shared-memory ring: {e}"))
        }
        _ => Error::Io(e),
    })
}

// Elsewhere no side asks for or agrees to a ring (see
// `connector::ring_setting`), so this is never reached.
#[cfg(not(target_os = "linux"))]
async fn halves(
    _: Side,
    _: u32,
    _: Option<UnixSocket>,
    _: Duration,
) -> Result<(
    Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
)> {
    Err(Error::Unsupported("the shared-memory ring".into()))
}
