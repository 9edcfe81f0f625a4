//! Liveness: a connection that has been silent for a whole interval sends a
//! ping; one still silent an interval after that is dropped. That catches
//! a peer that vanished without closing (a TCP peer whose machine is gone,
//! a stopped process), which no read or write would ever report.
//!
//! "Silent" means no bytes arrived at all: the reader marks every read, so a
//! peer busy sending one huge frame is alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::Peer;
use super::lifecycle::End;
use super::outbox::{Control, When};
use crate::error::Error;

/// Runs until the connection ends.
pub(super) async fn watch(peer: Peer, activity: Arc<AtomicBool>, interval: Duration) {
    let shared = &peer.shared;
    let mut pinged = false;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if shared.lifecycle.end().is_some() {
            return;
        }
        if activity.swap(false, Ordering::Relaxed) {
            pinged = false;
            continue;
        }
        if pinged {
            tracing::debug!(
                silent_for = ?interval * 2,
                "dropping a peer that did not answer a ping"
            );
            shared.end_with(
                End::Disconnected,
                Some(Error::Unresponsive {
                    silent_for: interval * 2,
                }),
            );
            return;
        }
        let ping = Control {
            ping: true,
            ..Control::default()
        };
        shared.outbox.signal(ping, When::Now);
        pinged = true;
    }
}
