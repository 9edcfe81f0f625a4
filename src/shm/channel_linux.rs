//! How a body too large for the pool reaches the peer on Linux: in a region
//! of its own, whose descriptor goes first on the connection's channel (a
//! `SOCK_SEQPACKET` pair made in the handshake), one packet per region, and
//! which the `shared` frame then names by the offset 2^64 − 1 (PROTOCOL.md
//! §9). The receiver takes the next descriptor for each such frame.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::{Releases, SharedRegion, recv_with_fds, send_with_fds};

/// The `offset` of a `shared` message whose body is in a region of its own.
const OWN_REGION: u64 = u64::MAX;

/// One end of the connection's region channel, non-blocking.
#[derive(Debug)]
pub(crate) struct RegionChannel(OwnedFd);

impl RegionChannel {
    pub(crate) fn new(channel: OwnedFd) -> RegionChannel {
        RegionChannel(channel)
    }

    /// Passes `region` to the peer and returns the offset that names it, or
    /// `None` if the peer has not taken the regions sent before (the
    /// channel is full): it gets no more until it does.
    pub(crate) fn send(&self, region: SharedRegion) -> io::Result<Option<u64>> {
        match send_with_fds(self.0.as_fd(), b"r", &[region.fd()]) {
            // Unmapped here: the peer's mapping keeps the memory alive.
            Ok(_) => Ok(Some(OWN_REGION)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// True if a `shared` frame's `offset` names a region of its own.
    pub(crate) fn is_region(&self, offset: u64) -> bool {
        offset == OWN_REGION
    }

    /// The region of `len` bytes the peer sent before the frame naming it
    /// at `offset`, checked and mapped. Nothing goes back to the peer.
    pub(crate) fn receive(
        &self,
        offset: u64,
        len: u64,
        releases: &Releases,
    ) -> Result<SharedRegion, String> {
        let _ = (offset, releases);
        let missing =
            || "the peer named a shared-memory region of its own that it did not send".to_owned();
        let received = match recv_with_fds(self.0.as_fd(), &mut [0u8; 1], 1) {
            Ok(received) => received,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(missing()),
            Err(e) => return Err(format!("the region channel failed: {e}")),
        };
        let fd = received.fds.into_iter().next().ok_or_else(missing)?;
        let len = usize::try_from(len).map_err(|_| missing())?;
        SharedRegion::open(fd, len)
            .map_err(|e| format!("the peer's shared-memory region is unusable: {e}"))
    }

    /// A release of `offset` that is about a region of its own: none on
    /// Linux (regions are not released), so the pool judges it.
    pub(crate) fn released(&self, offset: u64) -> Option<Result<(), String>> {
        let _ = offset;
        None
    }
}
