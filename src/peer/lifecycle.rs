//! One connection's life in one place: open, draining, then closed by this
//! side or disconnected by the other, and why it ended.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::lock;
use crate::error::Error;

const OPEN: u8 = 0;
const DRAINING: u8 = 1;
const CLOSED: u8 = 2;
const DISCONNECTED: u8 = 3;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// This side closed it.
    Closed,
    /// The other side went away, broke the protocol, or fell silent.
    Disconnected,
}

impl End {
    /// What a request that can no longer be answered fails with.
    pub(super) fn error(self) -> Error {
        match self {
            End::Closed => Error::Closed,
            End::Disconnected => Error::Disconnected,
        }
    }
}

pub(super) struct Lifecycle {
    phase: AtomicU8,
    ended: watch::Sender<bool>,
    flushed: watch::Sender<bool>,
    why: Mutex<Option<Error>>,
}

impl Lifecycle {
    pub(super) fn new() -> Lifecycle {
        Lifecycle {
            phase: AtomicU8::new(OPEN),
            ended: watch::Sender::new(false),
            flushed: watch::Sender::new(false),
            why: Mutex::default(),
        }
    }

    /// `None` while the connection is open (draining included).
    pub(super) fn end(&self) -> Option<End> {
        match self.phase.load(Ordering::SeqCst) {
            CLOSED => Some(End::Closed),
            DISCONNECTED => Some(End::Disconnected),
            _ => None,
        }
    }

    pub(super) fn is_draining(&self) -> bool {
        self.phase.load(Ordering::SeqCst) == DRAINING
    }

    pub(super) fn start_draining(&self) {
        let _ = self
            .phase
            .compare_exchange(OPEN, DRAINING, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Moves to the end state; true for the one call that did it.
    pub(super) fn finish(&self, end: End) -> bool {
        let to = match end {
            End::Closed => CLOSED,
            End::Disconnected => DISCONNECTED,
        };
        let mut phase = self.phase.load(Ordering::SeqCst);
        while phase == OPEN || phase == DRAINING {
            match self
                .phase
                .compare_exchange(phase, to, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return true,
                Err(now) => phase = now,
            }
        }
        false
    }

    /// Tells those waiting for the end; after [`Lifecycle::finish`].
    pub(super) fn announce_end(&self) {
        self.ended.send_replace(true);
    }

    /// The first error that ended the connection is the one kept.
    pub(super) fn record(&self, error: Error) {
        lock(&self.why).get_or_insert(error);
    }

    pub(super) fn take_error(&self) -> Option<Error> {
        lock(&self.why).take()
    }

    pub(super) async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    pub(super) fn mark_flushed(&self) {
        self.flushed.send_replace(true);
    }

    pub(super) async fn flushed(&self, limit: Duration) {
        let mut flushed = self.flushed.subscribe();
        let _ = tokio::time::timeout(limit, flushed.wait_for(|done| *done)).await;
    }
}
