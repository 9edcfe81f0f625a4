//! The connector's shared-memory ring setting: whether a connection made
//! with it carries its frames through a ring in memory both processes map
//! instead of through the socket (ARCHITECTURE.md, "The latency ring").
//!
//! It travels in the connector string (field `r`), so a child handed the
//! string asks for the ring too. Linux only: elsewhere the setting is
//! refused when it is made, and a string carrying it is refused when it is
//! used to connect or bind.

use super::{Address, Connector};
use crate::error::{Error, Result};

/// True where the ring exists: Linux (memfd, file seals, `SCM_RIGHTS`).
pub(crate) const SUPPORTED: bool = cfg!(target_os = "linux");

/// Bytes of each direction of a ring this build asks for: room for a
/// window of small messages, and a large frame streams through in pieces.
pub(crate) const RING_CAPACITY: u32 = 64 * 1024;
pub(crate) use crate::shm::check_ring_capacity as check_capacity;

impl Connector {
    /// The same connector with the shared-memory ring on or off: with it on,
    /// requests, answers, notifications and stream items travel through a
    /// ring in shared memory that both processes map, the fastest path
    /// between two processes on one machine (a round trip of a few
    /// microseconds or less, several times faster than the socket). The
    /// socket stays open beside it, for the handshake, for waking a side
    /// that sleeps, and to notice a peer that is gone.
    ///
    /// A side waiting on the ring spins for [`Config::ring_spin`] before it
    /// yields and then sleeps, so quick exchanges cost one CPU per waiting
    /// side while they last, and an idle connection costs nothing.
    /// Everything else is unchanged (the API, message kinds, flow control,
    /// the blocking API); a frame larger than the ring streams through it in
    /// pieces. A server agrees to the ring whenever a client asks for it;
    /// a client whose server does not offer it (another implementation)
    /// talks over the socket as usual.
    ///
    /// Only for a local connector (a Unix socket) and the inherited
    /// channels a server with it on makes for its children
    /// ([`Server::child_channel`](crate::Server::child_channel): the child
    /// asks for the ring too), and only on Linux: on
    /// other platforms (Windows included) turning it on is refused with
    /// [`Error::Unsupported`], and so is connecting or binding with a
    /// connector string that has it on.
    ///
    /// ```
    /// use switchboard::Connector;
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// # if cfg!(target_os = "linux") {
    /// let connector = Connector::local().with_shm_ring(true)?;
    /// assert!(connector.shm_ring());
    /// // The child that gets the string asks for the ring too.
    /// let in_the_child: Connector = connector.dump_state().parse()?;
    /// assert!(in_the_child.shm_ring());
    /// # }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// [`Config::ring_spin`]: crate::Config::ring_spin
    pub fn with_shm_ring(mut self, on: bool) -> Result<Connector> {
        if on {
            check(&self.address)?;
        }
        self.shm_ring = on;
        Ok(self)
    }

    /// True when connections made with this connector ask for the
    /// shared-memory ring ([`Connector::with_shm_ring`]).
    pub fn shm_ring(&self) -> bool {
        self.shm_ring
    }

    /// Refuses a connector whose ring setting this build cannot honour.
    pub(crate) fn check_shm_ring(&self) -> Result<()> {
        match self.shm_ring {
            true => check(&self.address),
            false => Ok(()),
        }
    }
}

fn check(address: &Address) -> Result<()> {
    if !SUPPORTED {
        return Err(Error::Unsupported(
            "the shared-memory ring (Connector::with_shm_ring, which exists only on Linux)".into(),
        ));
    }
    if !can_carry(address) {
        return Err(Error::InvalidArgument {
            what: "shared-memory ring",
            reason: format!("{address} is not a local connector; the ring needs a Unix socket"),
        });
    }
    Ok(())
}

/// Whether connections to `address` run over a Unix socket, beside which
/// the ring can live: a socket file, or an inherited channel (a
/// socketpair on Unix; on Windows [`SUPPORTED`] refuses the ring anyway).
pub(super) fn can_carry(address: &Address) -> bool {
    matches!(address, Address::Unix(_) | Address::Inherited { .. })
}
