//! Control frames owed to the peer (credit returned, ping, pong), kept as
//! counters and flags rather than queued.

use crate::protocol::message;
use crate::transport::OutFrame;

/// Control frames owed to the peer. They are counters and flags rather
/// than queued frames: however often they are asked for before the next
/// write, each costs at most one small frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// Notifications finished here, to be returned as credit.
    pub credit_messages: u32,
    /// Their bytes.
    pub credit_bytes: u64,
    /// A ping to send.
    pub ping: bool,
    /// A pong to send (the answer to the peer's ping).
    pub pong: bool,
}

impl Control {
    pub(super) fn is_empty(&self) -> bool {
        *self == Control::default()
    }

    pub(super) fn merge(&mut self, other: Control) {
        self.credit_messages = self.credit_messages.saturating_add(other.credit_messages);
        self.credit_bytes = self.credit_bytes.saturating_add(other.credit_bytes);
        self.ping |= other.ping;
        self.pong |= other.pong;
    }

    /// The owed frames, back to back in one buffer.
    pub(super) fn take_frame(&mut self) -> OutFrame {
        let owed = std::mem::take(self);
        let mut bytes = Vec::with_capacity(32);
        if owed.credit_messages > 0 || owed.credit_bytes > 0 {
            bytes.extend_from_slice(
                message::credit(owed.credit_messages, owed.credit_bytes).first(),
            );
        }
        if owed.ping {
            bytes.extend_from_slice(message::ping(false).first());
        }
        if owed.pong {
            bytes.extend_from_slice(message::ping(true).first());
        }
        OutFrame::from_sealed(bytes)
    }
}
