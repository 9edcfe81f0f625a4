//! Large bodies through shared memory on this connection (PROTOCOL.md §9),
//! when the handshake settled it (Linux, a Unix socket, both sides).
//!
//! Sending: a request, notification, response or item whose body is at
//! least the threshold is *diverted*: its body is copied into a free slot
//! of our pool (or, written there already, a loan is named in place) and
//! the socket carries a `shared` frame with the message's header and the
//! body's place. A body that finds no room takes the socket if it fits a
//! frame, else a region of its own (a sealed memfd passed over the
//! connection's descriptor channel); nothing waits for the peer to release
//! anything, so no pattern of traffic can deadlock on it.
//!
//! Receiving: a `shared` frame's body is lent from the peer's pool as the
//! message's body, so a decoded [`Bytes`](crate::Bytes) points into the
//! mapping; when its last reference drops, the offset goes back to the
//! peer in a `release` message, sent by the connection's release task
//! (a drop may happen anywhere, even under the outbox's lock).

#[cfg(target_os = "linux")]
pub(super) use linux::{LOAN_HEAD, Shm};

/// Nothing: no shared memory on this platform.
#[cfg(not(target_os = "linux"))]
pub(super) enum Shm {}

#[cfg(target_os = "linux")]
mod linux {
    use std::os::fd::{AsFd, OwnedFd};
    use std::sync::Arc;

    use crate::config::SharedMemory;
    use crate::error::{Error, Result};
    use crate::protocol::handshake::ShmLink;
    use crate::protocol::message::Message;
    use crate::protocol::shared_message;
    use crate::shm::{Lender, LoanSlot, Pool, Releases, SharedRegion, dedicated};
    use crate::shm::{recv_with_fds, send_with_fds};
    use crate::transport::{Frame, HEADER_LEN, OutFrame};

    /// Room a loan keeps before and after its bytes, for the parts of the
    /// message body around them (a MessagePack `bin` header, the fields
    /// before and after it), so the body is sent in place.
    pub(crate) const LOAN_HEAD: usize = 256;
    pub(crate) const LOAN_TAIL: usize = 256;

    /// One connection's shared memory, both directions.
    pub(crate) struct Shm {
        pool: Arc<Pool>,
        lender: Arc<Lender>,
        channel: OwnedFd,
        settings: SharedMemory,
        max_frame: u32,
    }

    impl Shm {
        /// The pools and channel the handshake settled.
        pub(crate) fn new(link: ShmLink, max_frame: u32) -> Shm {
            Shm {
                pool: Pool::new(link.ours),
                lender: Lender::new(link.theirs),
                channel: link.channel,
                settings: link.settings,
                max_frame,
            }
        }

        /// The largest message this side encodes: its body may be far
        /// larger than a frame.
        pub(crate) fn max_message(&self) -> u32 {
            u32::try_from(self.settings.max_payload.saturating_add(64 * 1024)).unwrap_or(u32::MAX)
        }

        /// Bytes of our pool in use (held by the peer, or lent out here).
        pub(crate) fn used(&self) -> usize {
            self.pool.used()
        }

        /// Where released offsets wait for the release task.
        pub(crate) fn releases(&self) -> &Releases {
            self.lender.releases()
        }

        /// The connection ended.
        pub(crate) fn close(&self) {
            self.lender.close();
        }

        /// A slot of `len` bytes to write a body into, if the pool has room.
        pub(crate) fn loan(&self, len: usize) -> Option<Arc<LoanSlot>> {
            self.pool.loan(LOAN_HEAD, len, LOAN_TAIL)
        }

        /// `frame` as it should leave: a `shared` frame if its body goes
        /// through shared memory, else itself. Fails only for a message
        /// too large for a frame that could not go through shared memory.
        pub(crate) fn divert(&self, frame: OutFrame) -> Result<OutFrame> {
            let total = frame.len() - HEADER_LEN;
            let Some(start) = shared_message::body_start(&frame.first()[HEADER_LEN..]) else {
                return Ok(frame);
            };
            let body_len = total - start;
            if body_len < self.settings.threshold.max(1) {
                return Ok(frame);
            }
            let header = &frame.first()[HEADER_LEN..HEADER_LEN + start];
            let slices = frame.slices_from(HEADER_LEN + start);
            let pieces: Vec<&[u8]> = slices.iter().map(|slice| &**slice).collect();
            let offset = self
                .in_place(&pieces, body_len)
                .or_else(|| self.pool.send_copy(&pieces, body_len));
            if let Some(offset) = offset {
                return Ok(shared_message::shared(offset, body_len as u64, header));
            }
            if total <= self.max_frame as usize {
                return Ok(frame);
            }
            if body_len as u64 > self.settings.max_payload {
                return Err(Error::FrameTooLarge {
                    size: total as u64,
                    max: self.max_frame,
                });
            }
            self.own_region(&pieces, body_len)?;
            Ok(shared_message::shared(
                shared_message::OWN_REGION,
                body_len as u64,
                header,
            ))
        }

        /// A body that is `[head][a loan's bytes][tail]`, with room in the
        /// loan around its bytes: the head and tail are written there and
        /// the loan is named in place, no copy of its bytes.
        fn in_place(&self, pieces: &[&[u8]], len: usize) -> Option<u64> {
            let (at, loaned) = pieces
                .iter()
                .enumerate()
                .find_map(|(i, piece)| Some((i, self.pool.contains(piece)?)))?;
            let head: usize = pieces[..at].iter().map(|p| p.len()).sum();
            let tail: usize = pieces[at + 1..].iter().map(|p| p.len()).sum();
            if head > LOAN_HEAD || tail > LOAN_TAIL {
                return None;
            }
            let loan = self.pool.loan_at(loaned)?;
            let start = loaned.checked_sub(head)?;
            if start < loan.offset() {
                return None;
            }
            let mut at_offset = start;
            for (i, piece) in pieces.iter().enumerate() {
                if i != at {
                    self.pool.write(at_offset, piece).ok()?;
                }
                at_offset += piece.len();
            }
            self.pool.send_loan(&loan, start, len)
        }

        /// Sends `pieces` in a region of their own: made, filled, its
        /// descriptor passed over the channel before the frame that names
        /// it, and unmapped here (the peer's mapping keeps it alive).
        fn own_region(&self, pieces: &[&[u8]], len: usize) -> Result<()> {
            let region = SharedRegion::create("sb-payload", len)?;
            let mut at = 0;
            for piece in pieces {
                region.write(at, piece)?;
                at += piece.len();
            }
            match send_with_fds(self.channel.as_fd(), b"r", &[region.fd()]) {
                Ok(_) => Ok(()),
                // The peer has not taken the regions sent before: it gets
                // no more until it does.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(Error::FrameTooLarge {
                    size: len as u64,
                    max: self.max_frame,
                }),
                Err(e) => Err(e.into()),
            }
        }

        /// The message a `shared` frame holds, its body lent from shared
        /// memory.
        pub(crate) fn resolve(&self, offset: u64, len: u64, frame: Frame) -> Result<Message> {
            if len > self.settings.max_payload {
                return Err(Error::Protocol(format!(
                    "the peer sent a {len}-byte body through shared memory; this side \
                     accepts at most {} (SharedMemory::max_payload)",
                    self.settings.max_payload
                )));
            }
            let copy = self.settings.copy_received;
            let body = if offset == shared_message::OWN_REGION {
                dedicated(self.own_region_received(len)?, copy)
            } else {
                self.lender
                    .lend(offset, len, copy)
                    .map_err(Error::Protocol)?
            };
            Message::parse_shared(frame, Frame::from(body))
        }

        fn own_region_received(&self, len: u64) -> Result<SharedRegion> {
            let missing = || {
                Error::Protocol(
                    "the peer named a shared-memory region of its own that it did not send".into(),
                )
            };
            let received = match recv_with_fds(self.channel.as_fd(), &mut [0u8; 1], 1) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Err(missing()),
                Err(e) => return Err(Error::Protocol(format!("the region channel failed: {e}"))),
            };
            let fd = received.fds.into_iter().next().ok_or_else(missing)?;
            let len = usize::try_from(len).map_err(|_| missing())?;
            SharedRegion::open(fd, len).map_err(|e| {
                Error::Protocol(format!("the peer's shared-memory region is unusable: {e}"))
            })
        }

        /// The peer is done with these bodies of ours.
        pub(crate) fn release(&self, offsets: &[u64]) -> Result<()> {
            offsets
                .iter()
                .try_for_each(|offset| self.pool.release(*offset))
                .map_err(Error::Protocol)
        }
    }
}
