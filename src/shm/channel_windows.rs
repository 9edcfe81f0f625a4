//! How a body too large for the pool reaches the peer on Windows: in a
//! region of its own, a section whose handle value (in this process) the
//! `shared` frame names as its offset, 2^63 + the value (PROTOCOL.md §9).
//! The peer duplicates the handle out of this process, and then releases
//! that offset; only then does this side close its handle, so the value
//! cannot name anything else meanwhile. At most [`MAX_UNTAKEN`] regions
//! wait for the peer: beyond that, it gets no more until it takes them
//! (as a full channel does on Linux).
//!
//! This side's pool handle is kept here too, for the life of the
//! connection: the peer duplicates it when it reads the handshake frame
//! that names it, and nothing tells this side when that was.

use std::collections::HashMap;
use std::io;
use std::os::windows::io::OwnedHandle;
use std::sync::{Mutex, PoisonError};

use super::peer_process::value_of;
use super::{PeerProcess, Releases, SharedRegion};

/// The bit of a `shared` offset that says "a region of its own".
const REGION_BIT: u64 = 1 << 63;
/// Most regions sent and not yet taken by the peer.
const MAX_UNTAKEN: usize = 16;

/// The peer's process and the handles it has yet to take.
#[derive(Debug)]
pub(crate) struct RegionChannel {
    peer: PeerProcess,
    _pool: OwnedHandle,
    /// Regions sent and not yet released, by the offset that named them.
    untaken: Mutex<HashMap<u64, OwnedHandle>>,
}

impl RegionChannel {
    /// `pool` is this side's pool's section handle, kept until the end.
    pub(crate) fn new(peer: PeerProcess, pool: OwnedHandle) -> RegionChannel {
        RegionChannel {
            peer,
            _pool: pool,
            untaken: Mutex::default(),
        }
    }

    /// Hands `region` to the peer and returns the offset that names it, or
    /// `None` if the peer has too many regions it has not taken yet.
    pub(crate) fn send(&self, mut region: SharedRegion) -> io::Result<Option<u64>> {
        // Unmapped here when `region` drops: the handle keeps the memory
        // until the peer has mapped it.
        let handle = region.take_handle();
        let mut untaken = self.untaken.lock().unwrap_or_else(PoisonError::into_inner);
        if untaken.len() >= MAX_UNTAKEN {
            return Ok(None);
        }
        let offset = REGION_BIT | value_of(&handle);
        untaken.insert(offset, handle);
        Ok(Some(offset))
    }

    /// True if a `shared` frame's `offset` names a region of its own.
    pub(crate) fn is_region(&self, offset: u64) -> bool {
        offset & REGION_BIT != 0
    }

    /// The region of `len` bytes named at `offset`: duplicated out of the
    /// peer, checked and mapped; its release is queued, so the peer closes
    /// its handle.
    pub(crate) fn receive(
        &self,
        offset: u64,
        len: u64,
        releases: &Releases,
    ) -> Result<SharedRegion, String> {
        let unusable = |e: io::Error| format!("the peer's shared-memory region is unusable: {e}");
        let len =
            usize::try_from(len).map_err(|_| format!("the peer named a region of {len} bytes"))?;
        let handle = self.peer.take(offset & !REGION_BIT).map_err(unusable)?;
        let region = SharedRegion::open(handle, len).map_err(unusable)?;
        releases.push(offset);
        Ok(region)
    }

    /// A release of `offset` that is about a region of its own: the peer
    /// took it, so its handle here closes. `None` for a pool offset.
    pub(crate) fn released(&self, offset: u64) -> Option<Result<(), String>> {
        if !self.is_region(offset) {
            return None;
        }
        let taken = self
            .untaken
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&offset);
        Some(taken.map(drop).ok_or_else(|| {
            format!("the peer released a region of its own at {offset:#x}, which it was not sent")
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> RegionChannel {
        let mut pool = SharedRegion::create("sb-test", 4096).unwrap();
        let this = PeerProcess::open(std::process::id()).unwrap();
        RegionChannel::new(this, pool.take_handle())
    }

    #[tokio::test]
    async fn a_region_is_taken_released_once_and_bounded_while_untaken() {
        // This process plays both sides: it takes what it sent.
        let channel = channel();
        let region = SharedRegion::create("sb-test", 8192).unwrap();
        region.write(8000, b"far").unwrap();
        let offset = channel.send(region).unwrap().unwrap();
        assert!(channel.is_region(offset) && !channel.is_region(4096));
        let releases = Releases::default();
        let taken = channel.receive(offset, 8192, &releases).unwrap();
        let mut out = [0; 3];
        taken.read(8000, &mut out).unwrap();
        assert_eq!(&out, b"far");
        assert_eq!(releases.next().await, vec![offset], "taken: released");
        assert!(channel.released(offset).unwrap().is_ok());
        assert!(channel.released(offset).unwrap().is_err(), "released twice");
        assert!(channel.released(4096).is_none(), "a pool offset");
        for _ in 0..MAX_UNTAKEN {
            let region = SharedRegion::create("sb-test", 4096).unwrap();
            assert!(channel.send(region).unwrap().is_some());
        }
        let region = SharedRegion::create("sb-test", 4096).unwrap();
        assert_eq!(channel.send(region).unwrap(), None, "too many untaken");
    }
}
