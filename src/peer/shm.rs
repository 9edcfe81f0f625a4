//! Large bodies through shared memory on this connection (PROTOCOL.md §9),
//! when the handshake settled it (a Unix socket on Linux, a named pipe on
//! Windows, both sides).
//!
//! Sending: a request, notification, response or item whose body is at
//! least the threshold is *diverted*: its body is copied into a free slot
//! of our pool (or, written there already, a loan is named in place) and
//! the socket carries a `shared` frame with the message's header and the
//! body's place. A body that finds no room takes the socket if it fits a
//! frame, else a region of its own (handed over as the platform does it:
//! `shm::RegionChannel`); nothing waits for the peer to release
//! anything, so no pattern of traffic can deadlock on it.
//!
//! Receiving: a `shared` frame's body is lent from the peer's pool as the
//! message's body, so a decoded [`Bytes`](crate::Bytes) points into the
//! mapping; when its last reference drops, the offset goes back to the
//! peer in a `release` message, sent by the connection's release task
//! (a drop may happen anywhere, even under the outbox's lock).

#[cfg(any(target_os = "linux", windows))]
pub(super) use shared::{LOAN_HEAD, Shm};

/// Nothing: no shared memory on this platform.
#[cfg(not(any(target_os = "linux", windows)))]
pub(super) enum Shm {}

#[cfg(any(target_os = "linux", windows))]
mod shared {
    use std::sync::Arc;

    use crate::config::SharedMemory;
    use crate::error::{Error, Result};
    use crate::protocol::handshake::ShmLink;
    use crate::protocol::message::Message;
    use crate::protocol::shared_message;
    use crate::shm::{Lender, LoanSlot, Pool, RegionChannel, Releases, SharedRegion, dedicated};
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
        channel: RegionChannel,
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
            let offset = self.own_region(&pieces, body_len)?;
            Ok(shared_message::shared(offset, body_len as u64, header))
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

        /// Sends `pieces` in a region of their own: made, filled, handed
        /// to the peer before the frame that names it, and unmapped here.
        /// Returns the offset that names it.
        fn own_region(&self, pieces: &[&[u8]], len: usize) -> Result<u64> {
            let region = SharedRegion::create("sb-payload", len)?;
            let mut at = 0;
            for piece in pieces {
                region.write(at, piece)?;
                at += piece.len();
            }
            // `None`: the peer has not taken the regions sent before, and
            // gets no more until it does.
            self.channel.send(region)?.ok_or(Error::FrameTooLarge {
                size: len as u64,
                max: self.max_frame,
            })
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
            let body = if self.channel.is_region(offset) {
                let region = self
                    .channel
                    .receive(offset, len, self.lender.releases())
                    .map_err(Error::Protocol)?;
                dedicated(region, copy)
            } else {
                self.lender
                    .lend(offset, len, copy)
                    .map_err(Error::Protocol)?
            };
            Message::parse_shared(frame, Frame::from(body))
        }

        /// The peer is done with these bodies of ours.
        pub(crate) fn release(&self, offsets: &[u64]) -> Result<()> {
            offsets
                .iter()
                .try_for_each(|offset| {
                    let released = self.channel.released(*offset);
                    released.unwrap_or_else(|| self.pool.release(*offset))
                })
                .map_err(Error::Protocol)
        }
    }
}
