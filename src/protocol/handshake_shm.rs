//! The shared-memory part of the handshake (PROTOCOL.md §9).
//!
//! Both sides offer it (`"shm": 1` in the hello, the same in the
//! challenge); then the client's proof carries, as `SCM_RIGHTS`
//! descriptors, its pool (a sealed memfd) and one end of a socket pair
//! that later carries regions of their own, and the server's welcome
//! carries the server's pool. Each side checks what it received (a sealed
//! memory file of the announced size, a packet socket) before using it:
//! those descriptors come from the peer. A side that did not offer, or a
//! connection that cannot carry descriptors, never sees any of it.

#[cfg(target_os = "linux")]
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use crate::config::SharedMemory;
use crate::connector::Descriptors;

/// The version of the shared-memory scheme, the value of `shm`.
pub(super) const SHM_VERSION: u32 = 1;
/// The names of the descriptors the client's proof carries, in order.
#[cfg(target_os = "linux")]
const CLIENT_FDS: [&str; 2] = ["pool", "channel"];
/// The names of the descriptors the server's welcome carries.
#[cfg(target_os = "linux")]
const SERVER_FDS: [&str; 1] = ["pool"];
/// Largest pool a peer may announce: it is mapped (address space only),
/// so the bound is generous, but not unbounded.
#[cfg(target_os = "linux")]
const MAX_PEER_POOL: u64 = 64 << 30;

/// What this side can do: pass descriptors over this link, with these
/// settings.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub struct Offer<'a> {
    /// The link's descriptor passing.
    pub descriptors: &'a Descriptors,
    /// This side's settings.
    pub settings: SharedMemory,
}

impl<'a> Offer<'a> {
    /// The offer a link can make under `settings`: `None` without
    /// descriptor passing (not a Unix socket, not Linux) or with shared
    /// memory turned off.
    pub fn new(
        descriptors: Option<&'a Descriptors>,
        settings: Option<SharedMemory>,
    ) -> Option<Offer<'a>> {
        if !cfg!(target_os = "linux") {
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
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct ShmLink {
    /// The pool this side sends from (made here, passed to the peer).
    pub ours: crate::shm::SharedRegion,
    /// The peer's pool, mapped.
    pub theirs: crate::shm::SharedRegion,
    /// A packet socket to the peer that carries regions of their own.
    pub channel: OwnedFd,
    /// This side's settings.
    pub settings: SharedMemory,
}

/// Nothing: no shared memory on this platform.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub enum ShmLink {}

/// The client's half, from step 3 to the welcome: its pool and channel.
#[cfg(target_os = "linux")]
pub(super) struct ClientShm<'a> {
    offer: Offer<'a>,
    pool: crate::shm::SharedRegion,
    channel: OwnedFd,
    peer_end: OwnedFd,
}

/// Nothing: no shared memory on this platform.
#[cfg(not(target_os = "linux"))]
pub(super) enum ClientShm<'a> {
    #[doc(hidden)]
    _Never(std::convert::Infallible, std::marker::PhantomData<&'a ()>),
}

#[cfg(target_os = "linux")]
impl<'a> ClientShm<'a> {
    /// Makes the client's pool and the channel pair.
    pub(super) fn new(offer: Offer<'a>) -> std::io::Result<ClientShm<'a>> {
        let pool = crate::shm::SharedRegion::create("sb-pool", offer.settings.pool_bytes)?;
        let (channel, peer_end) = channel_pair()?;
        Ok(ClientShm {
            offer,
            pool,
            channel,
            peer_end,
        })
    }

    /// The pool's size and the descriptors' names, for the proof.
    pub(super) fn fields(&self) -> (u64, Vec<String>) {
        (self.pool.len() as u64, names(&CLIENT_FDS))
    }

    /// Sends the proof's `frame` with the pool and the channel's other end
    /// attached, and expects the server's pool with the welcome.
    pub(super) async fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        let fds = [self.pool.fd(), self.peer_end.as_fd()];
        self.offer.descriptors.send(frame, &fds).await?;
        self.offer.descriptors.expect();
        Ok(())
    }

    /// With the welcome read: the server's pool, checked and mapped.
    pub(super) fn finish(
        self,
        names: Option<&[String]>,
        pool: Option<u64>,
    ) -> Result<ShmLink, String> {
        let fds = self.offer.descriptors.take();
        let (theirs, _) = accept_peer(fds, names, &SERVER_FDS, pool)?;
        Ok(ShmLink {
            ours: self.pool,
            theirs,
            channel: self.channel,
            settings: self.offer.settings,
        })
    }
}

#[cfg(not(target_os = "linux"))]
impl<'a> ClientShm<'a> {
    pub(super) fn new(offer: Offer<'a>) -> std::io::Result<ClientShm<'a>> {
        let _ = offer;
        Err(std::io::ErrorKind::Unsupported.into())
    }
    pub(super) fn fields(&self) -> (u64, Vec<String>) {
        match self {
            ClientShm::_Never(never, _) => match *never {},
        }
    }
    pub(super) async fn send(&self, _: &[u8]) -> std::io::Result<()> {
        match self {
            ClientShm::_Never(never, _) => match *never {},
        }
    }
    pub(super) fn finish(self, _: Option<&[String]>, _: Option<u64>) -> Result<ShmLink, String> {
        match self {
            ClientShm::_Never(never, _) => match never {},
        }
    }
}

/// What the client passed with its proof, kept by the server until its
/// welcome.
#[cfg(target_os = "linux")]
pub(super) struct PeerShm {
    theirs: crate::shm::SharedRegion,
    channel: OwnedFd,
    descriptors: Descriptors,
    settings: SharedMemory,
}

/// Nothing: no shared memory on this platform.
#[cfg(not(target_os = "linux"))]
pub(super) enum PeerShm {}

/// Server, before sending the challenge: the client's answer will bring
/// descriptors.
pub(super) fn expect(shm: Option<Offer<'_>>) {
    #[cfg(target_os = "linux")]
    if let Some(offer) = shm {
        offer.descriptors.expect();
    }
    #[cfg(not(target_os = "linux"))]
    let _ = shm;
}

/// Server, with the proof read (always called, to stop expecting): the
/// client's pool and channel, checked, if both offered shared memory.
pub(super) fn received(
    shm: Option<Offer<'_>>,
    names: Option<&[String]>,
    pool: Option<u64>,
) -> Result<Option<PeerShm>, String> {
    #[cfg(target_os = "linux")]
    if let Some(offer) = shm {
        let fds = offer.descriptors.take();
        let (theirs, channel) = accept_peer(fds, names, &CLIENT_FDS, pool)?;
        let channel = channel.ok_or("shared memory: no channel")?;
        return Ok(Some(PeerShm {
            theirs,
            channel,
            descriptors: offer.descriptors.clone(),
            settings: offer.settings,
        }));
    }
    let _ = (shm, names, pool);
    Ok(None)
}

impl PeerShm {
    /// Server, step 4: makes the server's pool; `send` gets the pool's
    /// size and names for the welcome and returns the sealed frame, which
    /// goes with the pool attached.
    pub(super) async fn welcome(
        self,
        frame: impl FnOnce(u64, Vec<String>) -> crate::error::Result<Vec<u8>>,
    ) -> crate::error::Result<ShmLink> {
        #[cfg(target_os = "linux")]
        {
            let ours = crate::shm::SharedRegion::create("sb-pool", self.settings.pool_bytes)?;
            let bytes = frame(ours.len() as u64, names(&SERVER_FDS))?;
            self.descriptors.send(&bytes, &[ours.fd()]).await?;
            Ok(ShmLink {
                ours,
                theirs: self.theirs,
                channel: self.channel,
                settings: self.settings,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = frame;
            match self {}
        }
    }
}

#[cfg(target_os = "linux")]
fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// A connected pair of packet sockets, close-on-exec, ours non-blocking.
#[cfg(target_os = "linux")]
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

#[cfg(target_os = "linux")]
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

/// Checks the descriptors the peer sent, named `names` in its frame, as
/// `expected` says they must be, and maps its pool of `pool` bytes.
/// Returns the peer's pool and, if one came, the channel (made
/// non-blocking). The error says what was wrong, for the refusal.
#[cfg(target_os = "linux")]
fn accept_peer(
    fds: Vec<OwnedFd>,
    names: Option<&[String]>,
    expected: &[&str],
    pool: Option<u64>,
) -> Result<(crate::shm::SharedRegion, Option<OwnedFd>), String> {
    let names = names.unwrap_or_default();
    if names.len() != expected.len() || names.iter().zip(expected).any(|(n, e)| n != e) {
        return Err(format!(
            "shared memory: expected descriptors {expected:?}, the frame names {names:?}"
        ));
    }
    if fds.len() != expected.len() {
        return Err(format!(
            "shared memory: expected {} descriptors with the frame, {} came",
            expected.len(),
            fds.len()
        ));
    }
    let size = pool
        .filter(|size| (1..=MAX_PEER_POOL).contains(size))
        .ok_or_else(|| {
            format!("shared memory: the pool size {pool:?} is missing or out of range")
        })?;
    let mut fds = fds.into_iter();
    let pool_fd = fds.next().ok_or("shared memory: no pool descriptor")?;
    let theirs = crate::shm::SharedRegion::open(pool_fd, size as usize)
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

#[cfg(target_os = "linux")]
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
