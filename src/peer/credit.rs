//! Flow control: what this side may still send, and what it has admitted.
//!
//! Each side announces in the handshake how many requests and notifications
//! it accepts in flight, and how many bytes of them (its [`Window`]). A
//! sender takes credit before a request or notification leaves and gets it
//! back when the message is done with: a request's with its answer (every
//! request gets exactly one), a notification's with a credit frame once its
//! handler finished. So the receiver never holds more than it announced,
//! and a sender that outruns a slow receiver waits instead of queueing
//! without end. The receiver checks the same arithmetic ([`Admitted`]); a
//! peer that sends beyond its credit breaks the protocol and is cut off.
//!
//! Only requesters and notifiers wait for credit, never the reader, so the
//! two directions of a connection cannot wait on each other.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use tokio::sync::Semaphore;

use crate::config::Window;

/// Credit a message costs: one message, and its bytes up to the whole
/// window (a message larger than the window travels alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cost(pub(super) u32);

impl Cost {
    pub(super) fn of(len: usize, window: Window) -> Cost {
        Cost(u32::try_from(len).unwrap_or(u32::MAX).min(window.bytes))
    }
}

/// The credit error: the connection closed while waiting.
#[derive(Debug)]
pub(super) struct Closed;

/// What this side may still send to the peer.
pub(super) struct SendCredit {
    window: Window,
    messages: Semaphore,
    bytes: Semaphore,
}

impl SendCredit {
    pub(super) fn new(window: Window) -> SendCredit {
        SendCredit {
            window,
            messages: Semaphore::new(window.messages as usize),
            bytes: Semaphore::new(window.bytes as usize),
        }
    }

    pub(super) fn cost(&self, frame_len: usize) -> Cost {
        Cost::of(frame_len, self.window)
    }

    /// Waits until the peer has room for a message of this cost, and takes
    /// it. Waiters are served in order, so a large message is not starved
    /// by small ones. Cancel-safe: nothing is taken unless it returns `Ok`.
    pub(super) async fn acquire(&self, cost: Cost) -> Result<(), Closed> {
        let message = self.messages.acquire().await.map_err(|_| Closed)?;
        let bytes = self.bytes.acquire_many(cost.0).await.map_err(|_| Closed)?;
        message.forget();
        bytes.forget();
        Ok(())
    }

    /// Takes credit if it is there right now (and nobody waits ahead):
    /// the common case, which needs no timer.
    pub(super) fn try_acquire(&self, cost: Cost) -> bool {
        let Ok(message) = self.messages.try_acquire() else {
            return false;
        };
        let Ok(bytes) = self.bytes.try_acquire_many(cost.0) else {
            return false;
        };
        message.forget();
        bytes.forget();
        true
    }

    /// Gives credit back. Called by the reader only, so the check cannot
    /// race another release. Returning more than was taken is the peer's
    /// protocol violation (it would let this side overrun it).
    pub(super) fn release(&self, messages: u32, bytes: u64) -> Result<(), String> {
        let free_messages = self.messages.available_permits() as u64;
        let free_bytes = self.bytes.available_permits() as u64;
        if free_messages + u64::from(messages) > u64::from(self.window.messages)
            || free_bytes + bytes > u64::from(self.window.bytes)
        {
            return Err(format!(
                "the peer returned credit for {messages} messages and {bytes} bytes, \
                 more than this side had in flight"
            ));
        }
        self.messages.add_permits(messages as usize);
        self.bytes.add_permits(bytes as usize);
        Ok(())
    }

    /// Fails every waiter and every later acquire.
    pub(super) fn close(&self) {
        self.messages.close();
        self.bytes.close();
    }
}

/// What the peer has in flight here, against what this side announced.
pub(super) struct Admitted {
    window: Window,
    messages: AtomicU32,
    bytes: AtomicU64,
}

impl Admitted {
    pub(super) fn new(window: Window) -> Admitted {
        Admitted {
            window,
            messages: AtomicU32::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Counts an arriving request or notification, or says how the peer
    /// overran its credit. Called by the reader only; releases may run
    /// concurrently but only lower the counts.
    pub(super) fn admit(&self, frame_len: usize) -> Result<Cost, String> {
        let cost = Cost::of(frame_len, self.window);
        let messages = self.messages.load(Ordering::Acquire);
        let bytes = self.bytes.load(Ordering::Acquire);
        if messages >= self.window.messages {
            return Err(format!(
                "the peer sent more than the {} requests and notifications in flight \
                 this side accepts",
                self.window.messages
            ));
        }
        if bytes + u64::from(cost.0) > u64::from(self.window.bytes) {
            return Err(format!(
                "the peer sent more than the {} bytes in flight this side accepts",
                self.window.bytes
            ));
        }
        self.messages.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(u64::from(cost.0), Ordering::AcqRel);
        Ok(cost)
    }

    /// Admitted messages are done with: notifications whose handlers
    /// finished, answers that were written. Must happen before the peer can
    /// learn of it (before the credit frame is queued, or as the answer
    /// leaves), so this side's count is never above the peer's.
    pub(super) fn release(&self, messages: u32, bytes: u64) {
        self.messages.fetch_sub(messages, Ordering::AcqRel);
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    #[cfg(test)]
    pub(super) fn in_flight(&self) -> (u32, u64) {
        (
            self.messages.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const WINDOW: Window = Window {
        messages: 2,
        bytes: 100,
    };

    #[tokio::test]
    async fn a_sender_waits_for_credit_and_goes_on_when_it_returns() {
        let credit = SendCredit::new(WINDOW);
        credit.acquire(credit.cost(40)).await.unwrap();
        credit.acquire(credit.cost(40)).await.unwrap();
        // Two messages in flight: the third waits, whatever its size.
        let third = tokio::time::timeout(Duration::from_millis(50), credit.acquire(Cost(1)));
        assert!(third.await.is_err(), "no message credit left");
        assert!(!credit.try_acquire(Cost(1)), "none left");
        credit.release(1, 40).unwrap();
        assert!(credit.try_acquire(Cost(1)));
    }

    #[tokio::test]
    async fn bytes_are_credit_too_and_a_large_message_travels_alone() {
        let credit = SendCredit::new(WINDOW);
        let big = credit.cost(1_000_000);
        assert_eq!(big, Cost(100), "counted as the whole window");
        credit.acquire(Cost(30)).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), credit.acquire(big));
        assert!(waiting.await.is_err(), "needs the whole window");
        credit.release(1, 30).unwrap();
        credit.acquire(big).await.unwrap();
    }

    #[tokio::test]
    async fn closing_fails_waiters() {
        let credit = std::sync::Arc::new(SendCredit::new(WINDOW));
        credit.acquire(Cost(100)).await.unwrap();
        let waiter = {
            let credit = std::sync::Arc::clone(&credit);
            tokio::spawn(async move { credit.acquire(Cost(1)).await })
        };
        tokio::task::yield_now().await;
        credit.close();
        assert!(waiter.await.unwrap().is_err());
    }

    #[test]
    fn returning_more_than_was_taken_is_refused() {
        let credit = SendCredit::new(WINDOW);
        assert!(credit.release(1, 0).is_err());
        assert!(credit.release(0, 1).is_err());
    }

    #[test]
    fn the_receiver_counts_what_it_admits_and_refuses_overruns() {
        let admitted = Admitted::new(WINDOW);
        let first = admitted.admit(60).unwrap();
        assert!(admitted.admit(60).is_err(), "60 + 60 bytes > 100");
        let second = admitted.admit(40).unwrap();
        assert_eq!(admitted.in_flight(), (2, 100));
        assert!(admitted.admit(0).is_err(), "two messages at most");
        admitted.release(1, u64::from(first.0));
        admitted.release(1, u64::from(second.0));
        assert_eq!(admitted.in_flight(), (0, 0));
        // Alone, a message larger than the window is admitted as the window.
        assert_eq!(admitted.admit(5_000).unwrap(), Cost(100));
    }
}
