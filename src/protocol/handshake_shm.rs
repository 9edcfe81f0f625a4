//! The shared-memory part of the handshake (PROTOCOL.md §9).
//!
//! Both sides offer it (`"shm": 1` in the hello, the same in the
//! challenge); then the client's proof hands over its pool, and the
//! server's welcome the server's. How a pool is handed over is the
//! platform's ([`linux`]: descriptors with the frame; [`windows`]: handle
//! values in it, which the peer duplicates out of the sender's process);
//! what the frames say, and the checks on it, are here. Each side checks
//! what it received before using it: it comes from the peer. A side that
//! did not offer, or a connection that cannot pass a pool, never sees any
//! of it.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(windows)]
mod windows;

use serde::{Deserialize, Serialize};

use crate::config::SharedMemory;
use crate::connector::Descriptors;

#[cfg(target_os = "linux")]
pub(super) use linux::{ClientShm, PeerShm, expect, received};
#[cfg(windows)]
pub(super) use windows::{ClientShm, PeerShm, expect, received};

/// The version of the shared-memory scheme, the value of `shm`.
pub(super) const SHM_VERSION: u32 = 1;
/// Largest pool a peer may announce: it is mapped (address space only),
/// so the bound is generous, but not unbounded.
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
const MAX_PEER_POOL: u64 = 64 << 30;

/// The shared-memory fields of the proof (step 3) and the welcome (step
/// 4): absent when that side declines.
#[derive(Serialize, Deserialize, Default, Debug)]
pub(super) struct Fields {
    /// The sender's pool's size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pool: Option<u64>,
    /// The names of what is handed over, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) fds: Option<Vec<String>>,
    /// Windows: the handle values, in the sender's process, of what `fds`
    /// names (Linux passes descriptors beside the frame instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) handles: Option<Vec<u64>>,
}

impl Fields {
    /// True if the sender handed nothing over: it declines.
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    fn declined(&self) -> bool {
        self.fds.is_none() && self.pool.is_none()
    }

    /// Checks that the frame names `expected`, in order.
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    fn check_names(&self, expected: &[&str]) -> Result<(), String> {
        let names = self.fds.as_deref().unwrap_or_default();
        if names.len() != expected.len() || names.iter().zip(expected).any(|(n, e)| n != e) {
            return Err(format!(
                "shared memory: expected descriptors {expected:?}, the frame names {names:?}"
            ));
        }
        Ok(())
    }

    /// The announced pool size, if it is acceptable.
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    fn pool_size(&self) -> Result<usize, String> {
        self.pool
            .filter(|size| (1..=MAX_PEER_POOL).contains(size))
            .and_then(|size| usize::try_from(size).ok())
            .ok_or_else(|| {
                format!(
                    "shared memory: the pool size {:?} is missing or out of range",
                    self.pool
                )
            })
    }
}

#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// What this side can do: hand a pool over on this link, with these
/// settings.
#[derive(Clone, Copy)]
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
pub struct Offer<'a> {
    /// The link's descriptor passing (Windows: the peer's process id).
    pub descriptors: &'a Descriptors,
    /// This side's settings.
    pub settings: SharedMemory,
}

impl<'a> Offer<'a> {
    /// The offer a link can make under `settings`: `None` where the link
    /// cannot hand a pool over (not a Unix socket on Linux, not a named
    /// pipe whose peer is known on Windows, another platform) or with
    /// shared memory turned off.
    pub fn new(
        descriptors: Option<&'a Descriptors>,
        settings: Option<SharedMemory>,
    ) -> Option<Offer<'a>> {
        if !cfg!(any(target_os = "linux", windows)) {
            return None;
        }
        Some(Offer {
            descriptors: descriptors?,
            settings: settings.filter(|s| s.pool_bytes > 0)?,
        })
    }
}

/// What a connection that settled shared memory holds after the
/// handshake; the peer layer builds its pools from it.
#[cfg(any(target_os = "linux", windows))]
#[derive(Debug)]
pub struct ShmLink {
    /// The pool this side sends from (made here, handed to the peer).
    pub ours: crate::shm::SharedRegion,
    /// The peer's pool, mapped.
    pub theirs: crate::shm::SharedRegion,
    /// How regions of their own cross.
    pub channel: crate::shm::RegionChannel,
    /// This side's settings.
    pub settings: SharedMemory,
}

/// Nothing: no shared memory on this platform.
#[cfg(not(any(target_os = "linux", windows)))]
#[derive(Debug)]
pub enum ShmLink {}

#[cfg(not(any(target_os = "linux", windows)))]
pub(super) use elsewhere::{ClientShm, PeerShm, expect, received};

/// No shared memory on this platform: nothing can be made of these.
#[cfg(not(any(target_os = "linux", windows)))]
mod elsewhere {
    use super::{Fields, Offer, ShmLink};
    use crate::transport::FrameWriter;

    pub(in crate::protocol) enum ClientShm<'a> {
        #[doc(hidden)]
        _Never(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
    }

    impl<'a> ClientShm<'a> {
        pub(in crate::protocol) fn new(offer: Offer<'a>) -> std::io::Result<ClientShm<'a>> {
            let _ = offer;
            Err(std::io::ErrorKind::Unsupported.into())
        }
        pub(in crate::protocol) fn fields(&self) -> Fields {
            match self {
                ClientShm::_Never(never, _) => match *never {},
            }
        }
        pub(in crate::protocol) async fn send(
            &self,
            _: &mut FrameWriter,
            _: &[u8],
        ) -> crate::error::Result<()> {
            match self {
                ClientShm::_Never(never, _) => match *never {},
            }
        }
        pub(in crate::protocol) fn finish(self, _: &Fields) -> Result<Option<ShmLink>, String> {
            match self {
                ClientShm::_Never(never, _) => match never {},
            }
        }
    }

    pub(in crate::protocol) enum PeerShm {}

    impl PeerShm {
        pub(in crate::protocol) async fn welcome(
            self,
            _: &mut FrameWriter,
            _: impl FnOnce(Fields) -> crate::error::Result<Vec<u8>>,
        ) -> crate::error::Result<Option<ShmLink>> {
            match self {}
        }
    }

    pub(in crate::protocol) fn expect(shm: Option<Offer<'_>>) {
        let _ = shm;
    }

    pub(in crate::protocol) fn received(
        shm: Option<Offer<'_>>,
        fields: &Fields,
    ) -> Result<Option<PeerShm>, String> {
        let _ = (shm, fields);
        Ok(None)
    }
}
