//! Gathering: the small frames at the front of the queue are merged into
//! one buffer, so a burst leaves with one write.

use super::queue::{Queued, State};
use crate::transport::OutFrame;

/// Frames smaller than this are gathered into one buffer before writing;
/// larger ones are written from their own memory.
const GATHER_LIMIT: usize = 64 * 1024;

impl State {
    /// Merges the small frames at the front of the queue into one buffer,
    /// so they leave in one write.
    pub(super) fn gather(&mut self) {
        let mut take = 0;
        let mut total = 0;
        for Queued { frame, .. } in &self.queue {
            let len = frame.len();
            if !frame.is_contiguous() || len >= GATHER_LIMIT || total + len > GATHER_LIMIT {
                break;
            }
            take += 1;
            total += len;
        }
        if take < 2 {
            return;
        }
        let (mut answers, mut answered_bytes) = (0, 0);
        let mut bytes = Vec::with_capacity(total);
        for queued in self.queue.drain(..take) {
            bytes.extend_from_slice(queued.frame.first());
            answers += queued.answers;
            answered_bytes += queued.answered_bytes;
            self.spare.put(queued.frame.into_buffer());
        }
        self.queue.push_front(Queued {
            frame: OutFrame::from_sealed(bytes),
            answers,
            answered_bytes,
        });
    }
}
