//! How a side waiting on the ring spends its time: spin, then yield, then
//! park (Aeron's idle strategies, in the order its `BackoffIdleStrategy`
//! uses them).
//!
//! - Spin: look at the ring again and again for up to the spin budget
//!   (`Config::ring_spin`). An answer that comes within microseconds is
//!   caught without a system call or a wake-up, which is the whole point of
//!   the ring. The spinning happens in slices of [`SPIN_SLICE`]; between
//!   them the waiter returns to the runtime, so other tasks on the thread
//!   still run, and calls `sched_yield`, so a peer that shares this CPU
//!   (two cores and a busy machine) gets to answer instead of waiting for
//!   the spin to end.
//! - Yield: a few more looks, each after `sched_yield` and a turn of the
//!   runtime, so a thread that needs this CPU gets it.
//! - Park: sleep until the doorbell rings (see `ring_link`). An idle
//!   connection ends here after about the spin budget, and then costs no
//!   CPU at all.

use std::time::{Duration, Instant};

/// The longest stretch spun without returning to the runtime.
pub(crate) const SPIN_SLICE: Duration = Duration::from_micros(2);
/// Looks after `sched_yield` once the spin budget is spent.
const YIELDS: u32 = 8;

/// What to do after finding the ring empty.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Spin until this instant (at most a slice), looking all the while.
    Spin(Instant),
    /// `sched_yield`, let the runtime run others, look again.
    Yield,
    /// Sleep until woken.
    Park,
}

/// One waiter's progress through the steps since it last found bytes.
#[derive(Debug)]
pub(crate) struct Idle {
    spin: Duration,
    since: Option<Instant>,
    yields: u32,
}

impl Idle {
    pub(crate) fn new(spin: Duration) -> Idle {
        Idle {
            spin,
            since: None,
            yields: 0,
        }
    }

    /// The waiter found what it waited for: start from spinning next time.
    pub(crate) fn reset(&mut self) {
        self.since = None;
        self.yields = 0;
    }

    /// The next step after another empty look.
    pub(crate) fn next(&mut self) -> Step {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let spin_end = since + self.spin;
        if now < spin_end {
            return Step::Spin(spin_end.min(now + SPIN_SLICE));
        }
        if self.yields < YIELDS {
            self.yields += 1;
            return Step::Yield;
        }
        Step::Park
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_then_yield_then_park_then_start_over() {
        let mut idle = Idle::new(Duration::from_micros(200));
        let Step::Spin(until) = idle.next() else {
            panic!("spins first")
        };
        assert!(until <= Instant::now() + SPIN_SLICE);
        std::thread::sleep(Duration::from_millis(1));
        for _ in 0..YIELDS {
            assert_eq!(idle.next(), Step::Yield);
        }
        assert_eq!(idle.next(), Step::Park);
        assert_eq!(idle.next(), Step::Park);
        idle.reset();
        assert!(matches!(idle.next(), Step::Spin(_)));
    }

    #[test]
    fn no_spin_budget_goes_straight_to_yielding() {
        let mut idle = Idle::new(Duration::ZERO);
        assert_eq!(idle.next(), Step::Yield);
    }
}
