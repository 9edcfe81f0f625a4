//! Handing pools over on Linux: the client's proof carries, as
//! `SCM_RIGHTS` descriptors, its pool (a sealed memfd) and one end of a
//! socket pair that later carries regions of their own; the server's
//! welcome carries the server's pool. What came is checked (a sealed memory
//! file of the announced size, a packet socket) before it is used.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use super::{Fields, Offer, ShmLink, names};
use crate::config::SharedMemory;
use crate::connector::Descriptors;
use crate::shm::{RegionChannel, SharedRegion};
use crate::transport::FrameWriter;

/// The names of the descriptors the client's proof carries, in order.
const CLIENT_FDS: [&str; 2] = ["pool", "channel"];
/// The names of the descriptors the server's welcome carries.
const SERVER_FDS: [&str; 1] = ["pool"];

/// The client's half, from step 3 to the welcome: its pool and channel.
pub(in crate::protocol) struct ClientShm<'a> {
    offer: Offer<'a>,
    pool: SharedRegion,
    channel: OwnedFd,
    peer_end: OwnedFd,
}

impl<'a> ClientShm<'a> {
    /// Makes the client's pool and the channel pair.
    pub(in crate::protocol) fn new(offer: Offer<'a>) -> std::io::Result<ClientShm<'a>> {
        let pool = SharedRegion::create("sb-pool", offer.settings.pool_bytes)?;
        let (channel, peer_end) = channel_pair()?;
        Ok(ClientShm {
            offer,
            pool,
            channel,
            peer_end,
        })
    }

    /// The pool's size and the descriptors' names, for the proof.
    pub(in crate::protocol) fn fields(&self) -> Fields {
        Fields {
            pool: Some(self.pool.len() as u64),
            fds: Some(names(&CLIENT_FDS)),
            handles: None,
        }
    }

    /// Sends the proof's `frame` with the pool and the channel's other end
    /// attached (beside `writer`, straight on the socket), and expects the
    /// server's pool with the welcome.
    pub(in crate::protocol) async fn send(
        &self,
        writer: &mut FrameWriter,
        frame: &[u8],
    ) -> crate::error::Result<()> {
        let _ = writer;
        let fds = [self.pool.fd(), self.peer_end.as_fd()];
        self.offer.descriptors.send(frame, &fds).await?;
        self.offer.descriptors.expect();
        Ok(())
    }

    /// With the welcome read: the server's pool, checked and mapped.
    /// A welcome with neither pool nor descriptors declines shared memory
    /// (the server could not take ours, or make its own): `None`, and this
    /// side's pool and channel are dropped.
    pub(in crate::protocol) fn finish(self, fields: &Fields) -> Result<Option<ShmLink>, String> {
        let fds = self.offer.descriptors.take();
        if fields.declined() {
            tracing::debug!("the server declined shared memory for this connection");
            return Ok(None);
        }
        let (theirs, _) = accept_peer(fds, fields, &SERVER_FDS)?;
        Ok(Some(ShmLink {
            ours: self.pool,
            theirs,
            channel: RegionChannel::new(self.channel),
            settings: self.offer.settings,
        }))
    }
}

/// What the client passed with its proof, kept by the server until its
/// welcome.
pub(in crate::protocol) struct PeerShm {
    theirs: SharedRegion,
    channel: OwnedFd,
    descriptors: Descriptors,
    settings: SharedMemory,
}

/// Server, before sending the challenge: the client's answer will bring
/// descriptors.
pub(in crate::protocol) fn expect(shm: Option<Offer<'_>>) {
    if let Some(offer) = shm {
        offer.descriptors.expect();
    }
}

/// Server, with the proof read (always called, to stop expecting): the
/// client's pool and channel, checked, if both offered shared memory.
pub(in crate::protocol) fn received(
    shm: Option<Offer<'_>>,
    fields: &Fields,
) -> Result<Option<PeerShm>, String> {
    let Some(offer) = shm else {
        return Ok(None);
    };
    let fds = offer.descriptors.take();
    // A proof without shared-memory fields, or whose descriptors did not
    // all arrive (the kernel drops them when this process is out of
    // descriptors), declines shared memory for this connection: a server
    // short of descriptors still serves the client, over the socket.
    // Descriptors that are present but wrong still refuse it.
    if fields.declined() || fds.len() < CLIENT_FDS.len() {
        tracing::debug!(
            came = fds.len(),
            "shared memory declined: the client's descriptors did not arrive"
        );
        return Ok(None);
    }
    let (theirs, channel) = accept_peer(fds, fields, &CLIENT_FDS)?;
    let channel = channel.ok_or("shared memory: no channel")?;
    Ok(Some(PeerShm {
        theirs,
        channel,
        descriptors: offer.descriptors.clone(),
        settings: offer.settings,
    }))
}

impl PeerShm {
    /// Server, step 4: makes the server's pool; `frame` gets the welcome's
    /// shared-memory fields and returns the sealed frame, which goes with
    /// the pool attached (beside `writer`, straight on the socket).
    /// A pool that cannot be made (out of descriptors or memory) declines
    /// shared memory: `None`, nothing sent, and the caller sends the
    /// welcome without a pool.
    pub(in crate::protocol) async fn welcome(
        self,
        writer: &mut FrameWriter,
        frame: impl FnOnce(Fields) -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<Option<ShmLink>> {
        let _ = writer;
        let ours = match SharedRegion::create("sb-pool", self.settings.pool_bytes) {
            Ok(ours) => ours,
            Err(e) => {
                tracing::debug!("shared memory declined: no pool: {e}");
                return Ok(None);
            }
        };
        let bytes = frame(Fields {
            pool: Some(ours.len() as u64),
            fds: Some(names(&SERVER_FDS)),
            handles: None,
        })?;
        self.descriptors.send(&bytes, &[ours.fd()]).await?;
        Ok(Some(ShmLink {
            ours,
            theirs: self.theirs,
            channel: RegionChannel::new(self.channel),
            settings: self.settings,
        }))
    }
}

/// A connected pair of packet sockets, close-on-exec, ours non-blocking.
fn channel_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if made != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socketpair made two fresh descriptors that nothing else owns.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    set_nonblocking(&ours)?;
    Ok((ours, theirs))
}

fn set_nonblocking(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: plain fcntl calls on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Checks the descriptors the peer sent as its frame's `fields` and
/// `expected` say they must be, and maps its pool. Returns the peer's pool
/// and, if one came, the channel (made non-blocking). The error says what
/// was wrong, for the refusal.
fn accept_peer(
    fds: Vec<OwnedFd>,
    fields: &Fields,
    expected: &[&str],
) -> Result<(SharedRegion, Option<OwnedFd>), String> {
    fields.check_names(expected)?;
    if fds.len() != expected.len() {
        return Err(format!(
            "shared memory: expected {} descriptors with the frame, {} came",
            expected.len(),
            fds.len()
        ));
    }
    let size = fields.pool_size()?;
    let mut fds = fds.into_iter();
    let pool_fd = fds.next().ok_or("shared memory: no pool descriptor")?;
    let theirs = SharedRegion::open(pool_fd, size)
        .map_err(|e| format!("shared memory: the peer's pool is unusable: {e}"))?;
    let channel = match fds.next() {
        Some(channel) => {
            check_packet_socket(&channel)?;
            set_nonblocking(&channel).map_err(|e| format!("shared memory: the channel: {e}"))?;
            Some(channel)
        }
        None => None,
    };
    Ok((theirs, channel))
}

fn check_packet_socket(fd: &OwnedFd) -> Result<(), String> {
    let mut kind: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `kind` and `len` are valid out-pointers of the right size.
    let got = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut kind as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if got != 0 || kind != libc::SOCK_SEQPACKET {
        return Err("shared memory: the channel descriptor is not a packet socket".into());
    }
    Ok(())
}
