//! Handing pools over on Windows: each side makes its pool as a section,
//! and its frame (the client's proof, the server's welcome) carries the
//! section's handle value in its own process (`"handles"`). The receiver
//! opens the sender's process (whose id the named pipe reports) for
//! duplicating handles, duplicates the handle into itself, and checks by
//! mapping it that it is a section of at least the announced size. Each
//! side keeps its own pool's handle open for the connection's life (the
//! peer duplicates it when it reads the frame, at a moment this side does
//! not learn). A side that cannot open the peer's process declines, as a
//! side that cannot make its pool does.

use super::{Fields, Offer, ShmLink, names};
use crate::config::SharedMemory;
use crate::shm::{PeerProcess, RegionChannel, SharedRegion};
use crate::transport::FrameWriter;

/// What each side's frame hands over, in order.
const POOL: [&str; 1] = ["pool"];

/// The client's half, from step 3 to the welcome: its pool, and the
/// server's process to take the server's pool from.
pub(in crate::protocol) struct ClientShm<'a> {
    offer: Offer<'a>,
    pool: SharedRegion,
    peer: PeerProcess,
}

impl<'a> ClientShm<'a> {
    /// Opens the server's process and makes the client's pool.
    pub(in crate::protocol) fn new(offer: Offer<'a>) -> std::io::Result<ClientShm<'a>> {
        let peer = PeerProcess::open(offer.descriptors.peer_pid())?;
        let pool = SharedRegion::create("sb-pool", offer.settings.pool_bytes)?;
        Ok(ClientShm { offer, pool, peer })
    }

    /// The pool's size, name and handle value, for the proof.
    pub(in crate::protocol) fn fields(&self) -> Fields {
        Fields {
            pool: Some(self.pool.len() as u64),
            fds: Some(names(&POOL)),
            handles: Some(vec![self.pool.handle_value()]),
        }
    }

    /// Sends the proof's `frame`: the handle value is in it.
    pub(in crate::protocol) async fn send(
        &self,
        writer: &mut FrameWriter,
        frame: &[u8],
    ) -> crate::error::Result<()> {
        writer.send(frame).await
    }

    /// With the welcome read: the server's pool, taken, checked and mapped.
    /// A welcome without pool and names declines shared memory: `None`,
    /// and this side's pool is dropped.
    pub(in crate::protocol) fn finish(
        mut self,
        fields: &Fields,
    ) -> Result<Option<ShmLink>, String> {
        if fields.declined() {
            tracing::debug!("the server declined shared memory for this connection");
            return Ok(None);
        }
        let theirs = accept_peer(&self.peer, fields)?;
        let kept = self.pool.take_handle();
        Ok(Some(ShmLink {
            ours: self.pool,
            theirs,
            channel: RegionChannel::new(self.peer, kept),
            settings: self.offer.settings,
        }))
    }
}

/// What the client handed over with its proof, kept by the server until
/// its welcome.
pub(in crate::protocol) struct PeerShm {
    theirs: SharedRegion,
    peer: PeerProcess,
    settings: SharedMemory,
}

/// Server, before sending the challenge: nothing travels beside the frames
/// on Windows.
pub(in crate::protocol) fn expect(shm: Option<Offer<'_>>) {
    let _ = shm;
}

/// Server, with the proof read: the client's pool, taken and checked, if
/// both offered shared memory. A proof without the fields, or a client
/// whose process this server cannot open for duplicating handles,
/// declines shared memory for this connection; fields that are present
/// but wrong refuse it.
pub(in crate::protocol) fn received(
    shm: Option<Offer<'_>>,
    fields: &Fields,
) -> Result<Option<PeerShm>, String> {
    let Some(offer) = shm else {
        return Ok(None);
    };
    if fields.declined() {
        return Ok(None);
    }
    let peer = match PeerProcess::open(offer.descriptors.peer_pid()) {
        Ok(peer) => peer,
        Err(e) => {
            tracing::debug!("shared memory declined: the client's process: {e}");
            return Ok(None);
        }
    };
    let theirs = accept_peer(&peer, fields)?;
    Ok(Some(PeerShm {
        theirs,
        peer,
        settings: offer.settings,
    }))
}

impl PeerShm {
    /// Server, step 4: makes the server's pool; `frame` gets the welcome's
    /// shared-memory fields and returns the sealed frame, sent on
    /// `writer`. A pool that cannot be made declines shared memory:
    /// `None`, nothing sent, and the caller sends the welcome without one.
    pub(in crate::protocol) async fn welcome(
        self,
        writer: &mut FrameWriter,
        frame: impl FnOnce(Fields) -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<Option<ShmLink>> {
        let mut ours = match SharedRegion::create("sb-pool", self.settings.pool_bytes) {
            Ok(ours) => ours,
            Err(e) => {
                tracing::debug!("shared memory declined: no pool: {e}");
                return Ok(None);
            }
        };
        let bytes = frame(Fields {
            pool: Some(ours.len() as u64),
            fds: Some(names(&POOL)),
            handles: Some(vec![ours.handle_value()]),
        })?;
        writer.send(&bytes).await?;
        let kept = ours.take_handle();
        Ok(Some(ShmLink {
            ours,
            theirs: self.theirs,
            channel: RegionChannel::new(self.peer, kept),
            settings: self.settings,
        }))
    }
}

/// Takes the pool the peer's frame names out of the peer's process and
/// maps it, after checking the fields. The error says what was wrong, for
/// the refusal.
fn accept_peer(peer: &PeerProcess, fields: &Fields) -> Result<SharedRegion, String> {
    fields.check_names(&POOL)?;
    let handles = fields.handles.as_deref().unwrap_or_default();
    let [value] = handles else {
        return Err(format!(
            "shared memory: expected 1 handle value in the frame, {} came",
            handles.len()
        ));
    };
    let size = fields.pool_size()?;
    let unusable = |e: std::io::Error| format!("shared memory: the peer's pool is unusable: {e}");
    let handle = peer.take(*value).map_err(unusable)?;
    SharedRegion::open(handle, size).map_err(unusable)
}
