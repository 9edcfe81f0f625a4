//! A log line per spell, not per event: whoever can open connections can
//! make the server refuse thousands a second, and the log must not become
//! the attacker's amplifier.

use std::time::{Duration, Instant};

/// How often a throttled kind of event is logged at most.
const INTERVAL: Duration = Duration::from_secs(1);

/// Lets one event through per [`INTERVAL`] and counts the rest.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(n)` when this event should be logged, `n` being how many were
    /// swallowed since the last one that was; `None` when it should not.
    pub(super) fn admit(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_gets_through_and_the_rest_are_counted() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), None);
        assert_eq!(throttle.admit(), None);
        throttle.last = Some(Instant::now() - INTERVAL);
        assert_eq!(throttle.admit(), Some(2));
    }
}
