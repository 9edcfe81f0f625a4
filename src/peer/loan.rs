//! Writing a body straight into shared memory: a [`Loan`] is a buffer in
//! this side's payload pool (when the connection has one), filled by the
//! application and frozen into [`Bytes`]; sent in a request, notification,
//! answer or stream item, it crosses to the peer without a single copy.

use std::ops::{Deref, DerefMut};

use crate::protocol::Bytes;

/// A writable buffer for a byte payload, in shared memory where the
/// connection has it (see [`Peer::loan`](super::Peer::loan)).
///
/// Fill it, [`freeze`](Loan::freeze) it into [`Bytes`], and send those as
/// (part of) a body with the default settings (MessagePack): the peer's
/// handler reads them where this side wrote them. Where the connection has
/// no shared memory (another platform, TCP, a pool with no room left) the
/// loan is ordinary memory, and the same code still works, with the usual
/// copies. Its initial contents are unspecified (memory is reused), never
/// another process's.
///
/// ```no_run
/// use switchboard::{Bytes, Client, Connector};
///
/// # async fn demo(connector: Connector) -> switchboard::Result<()> {
/// let client = Client::connect(&connector).await?;
/// let mut frame = client.peer().loan(1920 * 1080 * 4);
/// frame.fill(0x80); // render straight into shared memory
/// let frame: Bytes = frame.freeze();
/// let _: u64 = client.request("show", &frame).await?;
/// # Ok(())
/// # }
/// ```
pub struct Loan {
    inner: Inner,
}

enum Inner {
    #[cfg(any(target_os = "linux", windows))]
    Shared {
        slot: std::sync::Arc<crate::shm::LoanSlot>,
        len: usize,
    },
    Plain(Vec<u8>),
}

impl std::fmt::Debug for Loan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loan")
            .field("len", &self.len())
            .field("in_shared_memory", &self.in_shared_memory())
            .finish()
    }
}

impl Loan {
    #[cfg(any(target_os = "linux", windows))]
    pub(super) fn shared(slot: std::sync::Arc<crate::shm::LoanSlot>, len: usize) -> Loan {
        Loan {
            inner: Inner::Shared { slot, len },
        }
    }

    pub(super) fn plain(len: usize) -> Loan {
        Loan {
            inner: Inner::Plain(vec![0; len]),
        }
    }

    /// True if the buffer is in the connection's shared memory (so sending
    /// it copies nothing).
    pub fn in_shared_memory(&self) -> bool {
        match &self.inner {
            #[cfg(any(target_os = "linux", windows))]
            Inner::Shared { .. } => true,
            Inner::Plain(_) => false,
        }
    }

    /// The filled buffer as [`Bytes`], to send. Sent once, it crosses
    /// without a copy; sending the same `Bytes` again copies it (the bytes
    /// around it in the body are rewritten for each send).
    pub fn freeze(self) -> Bytes {
        match self.inner {
            #[cfg(any(target_os = "linux", windows))]
            Inner::Shared { slot, len } => {
                Bytes::from(::bytes::Bytes::from_owner(Frozen { slot, len }))
            }
            Inner::Plain(bytes) => Bytes::from(bytes),
        }
    }
}

impl Deref for Loan {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            #[cfg(any(target_os = "linux", windows))]
            // SAFETY: the slot has room for `LOAN_HEAD + len` bytes (taken so
            // from the pool) and stays mapped while `slot` lives; nothing
            // else writes it before the loan is frozen and sent.
            Inner::Shared { slot, len } => unsafe {
                std::slice::from_raw_parts(slot.as_ptr().add(super::shm::LOAN_HEAD), *len)
            },
            Inner::Plain(bytes) => bytes,
        }
    }
}

impl DerefMut for Loan {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.inner {
            #[cfg(any(target_os = "linux", windows))]
            // SAFETY: as for `deref`; `&mut self` makes this the only view.
            Inner::Shared { slot, len } => unsafe {
                std::slice::from_raw_parts_mut(slot.as_ptr().add(super::shm::LOAN_HEAD), *len)
            },
            Inner::Plain(bytes) => bytes,
        }
    }
}

/// A frozen loan's bytes.
#[cfg(any(target_os = "linux", windows))]
struct Frozen {
    slot: std::sync::Arc<crate::shm::LoanSlot>,
    len: usize,
}

#[cfg(any(target_os = "linux", windows))]
impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: as for `Loan::deref`; frozen, the bytes are only read.
        unsafe {
            std::slice::from_raw_parts(self.slot.as_ptr().add(super::shm::LOAN_HEAD), self.len)
        }
    }
}
