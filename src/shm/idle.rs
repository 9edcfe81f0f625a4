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
//!
//! When a `sched_yield` takes long, another thread ran on this CPU in the
//! meantime, and the likeliest one is the peer, waiting on the same CPU as
//! we do. This project's kernel puts the two processes of a connection on
//! one CPU now and then (after both slept, as between bursts; its
//! `sched_vcpu_pack` prefers fewer busy vCPUs), and then takes 10 to 100 ms
//! to part them, because both look cache-hot to its balancer. Meanwhile a
//! message is read only when its reader's turn comes: a round trip took 8
//! to 15 µs instead of 2 to 3, and whole bursts ran so, which was the
//! ring's p99. Two answers, both driven by how long the last yield took:
//!
//! - a waiter whose last yield ran another thread yields at once instead
//!   of spinning, since spinning only delays the thread that would answer;
//! - after [`CROWDED_YIELDS_TO_LEAVE`] such yields in a row, if the peer's
//!   reader says it waits on this very CPU (each reader publishes its CPU
//!   at every yield, in the ring's header), the client's waiter moves
//!   itself to another CPU ([`super::leave_cpu`]) and publishes where it
//!   went. Without that check a waiter preempted by a third process moved
//!   onto the peer's CPU; and only the client moves, since two that moved
//!   at once would land together again. At most once per [`LEAVE_EVERY`];
//!   if it has to move again as soon as that allows (something follows it,
//!   or every CPU is busy), the interval doubles, up to
//!   [`LEAVE_AT_MOST_EVERY`], so it never keeps migrating.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::leave_cpu::{current_cpu, leave_this_cpu};
use super::ring::CpuWords;
use crate::cpu_yield::{CROWDED_YIELD, yield_cpu};

/// The longest stretch spun without returning to the runtime. A turn
/// between slices costs a `sched_yield`; at 2 µs those turns came often
/// enough to be the ring's p99 where system calls are dear (3.5 to 4 ×
/// its median on an AMD host, 2 to 2.6 × with 10 or 20 µs: BENCHMARKS.md,
/// "Fewer turns between slices").
pub(crate) const SPIN_SLICE: Duration = Duration::from_micros(10);
/// Looks after `sched_yield` once the spin budget is spent.
const YIELDS: u32 = 8;
/// Yields in a row that ran another thread before the waiter moves: one
/// long yield may be an interrupt.
const CROWDED_YIELDS_TO_LEAVE: u32 = 3;
/// The least time between two moves to another CPU.
const LEAVE_EVERY: Duration = Duration::from_millis(1);
/// The most [`LEAVE_EVERY`] grows to while moves do not help.
const LEAVE_AT_MOST_EVERY: Duration = Duration::from_millis(100);

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
    /// Yields in a row that ran another thread; past zero, the waiter
    /// yields instead of spinning.
    crowded: u32,
    /// Where both readers wait; `None` in tests.
    cpus: Option<Arc<CpuWords>>,
    last_leave: Option<Instant>,
    leave_every: Duration,
}

impl Idle {
    /// A waiter that spins for `spin`, and publishes its CPU in `cpus`.
    pub(crate) fn new(spin: Duration, cpus: Option<Arc<CpuWords>>) -> Idle {
        Idle {
            spin,
            since: None,
            yields: 0,
            crowded: 0,
            cpus,
            last_leave: None,
            leave_every: LEAVE_EVERY,
        }
    }

    /// The waiter found what it waited for: start from spinning next time.
    pub(crate) fn reset(&mut self) {
        self.since = None;
        self.yields = 0;
    }

    /// Gives the CPU to any other thread waiting for it (`sched_yield`),
    /// notes whether one ran, publishes where this waiter is, and leaves
    /// this CPU if it keeps sharing it with the peer.
    pub(crate) fn yield_thread(&mut self) {
        let took = yield_cpu();
        let now = Instant::now();
        let with_peer = match (&self.cpus, current_cpu()) {
            (Some(cpus), Some(cpu)) => {
                cpus.publish(cpu);
                cpus.peer_waits_on(cpu)
            }
            _ => false,
        };
        if !self.yielded(now, took, with_peer) {
            return;
        }
        if let Err(e) = leave_this_cpu() {
            tracing::debug!(error = %e, "could not move the ring's waiter to another CPU");
        }
        // Said at once, so that the peer, which runs next on the CPU we
        // left, does not find our old word there and move too.
        if let (Some(cpus), Some(cpu)) = (&self.cpus, current_cpu()) {
            cpus.publish(cpu);
        }
    }

    /// Records a yield that ended at `now`, after which the peer was (by
    /// its word) `with_peer` on this CPU; true if the waiter should move
    /// to another CPU now.
    fn yielded(&mut self, now: Instant, took: Duration, with_peer: bool) -> bool {
        if took < CROWDED_YIELD {
            self.crowded = 0;
            return false;
        }
        self.crowded += 1;
        if !with_peer || self.crowded < CROWDED_YIELDS_TO_LEAVE {
            return false;
        }
        if let Some(last) = self.last_leave {
            if now < last + self.leave_every {
                return false;
            }
            self.leave_every = if now < last + 2 * self.leave_every {
                (self.leave_every * 2).min(LEAVE_AT_MOST_EVERY)
            } else {
                LEAVE_EVERY
            };
        }
        self.last_leave = Some(now);
        self.crowded = 0;
        true
    }

    /// The next step after another empty look.
    pub(crate) fn next(&mut self) -> Step {
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let spin_end = since + self.spin;
        if now < spin_end {
            if self.crowded > 0 {
                return Step::Yield;
            }
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
        let mut idle = Idle::new(Duration::from_micros(200), None);
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

    const QUICK: Duration = Duration::from_nanos(300);

    #[test]
    fn a_yield_that_ran_another_thread_yields_instead_of_spinning_until_one_does_not() {
        let mut idle = Idle::new(Duration::from_secs(1), None);
        let now = Instant::now();
        assert!(!idle.yielded(now, QUICK, true));
        assert!(
            matches!(idle.next(), Step::Spin(_)),
            "a quick yield: spin on"
        );
        assert!(!idle.yielded(now, CROWDED_YIELD, true));
        assert_eq!(idle.next(), Step::Yield);
        idle.reset();
        assert_eq!(
            idle.next(),
            Step::Yield,
            "still crowded for the next message"
        );
        assert!(!idle.yielded(now, QUICK, true));
        assert!(matches!(idle.next(), Step::Spin(_)), "alone again");
    }

    #[test]
    fn a_waiter_that_keeps_sharing_its_cpu_leaves_it_less_often_while_that_does_not_help() {
        let mut idle = Idle::new(Duration::from_secs(1), None);
        let start = Instant::now();
        let crowded_run = |idle: &mut Idle, at: Instant| {
            (0..CROWDED_YIELDS_TO_LEAVE)
                .map(|_| idle.yielded(at, CROWDED_YIELD, true))
                .collect::<Vec<_>>()
        };
        let mut leave_now = vec![false; CROWDED_YIELDS_TO_LEAVE as usize];
        *leave_now.last_mut().unwrap() = true;
        assert_eq!(
            crowded_run(&mut idle, start),
            leave_now,
            "leaves on the third"
        );
        assert!(
            !idle.yielded(start, QUICK, true),
            "a quick yield starts the count over"
        );
        let soon = start + LEAVE_EVERY / 2;
        assert!(
            !crowded_run(&mut idle, soon).contains(&true),
            "not again so soon"
        );
        // Crowded again as soon as allowed: the move did not help.
        let mut at = start + LEAVE_EVERY;
        assert!(crowded_run(&mut idle, at).contains(&true));
        assert_eq!(idle.leave_every, 2 * LEAVE_EVERY);
        for _ in 0..20 {
            at += idle.leave_every;
            assert!(crowded_run(&mut idle, at).contains(&true));
        }
        assert_eq!(idle.leave_every, LEAVE_AT_MOST_EVERY, "bounded");
        // Crowded only long after: the moves help again, back to the start.
        at += 10 * LEAVE_AT_MOST_EVERY;
        assert!(crowded_run(&mut idle, at).contains(&true));
        assert_eq!(idle.leave_every, LEAVE_EVERY);
        at += 10 * LEAVE_AT_MOST_EVERY;
        for _ in 0..2 * CROWDED_YIELDS_TO_LEAVE {
            assert!(
                !idle.yielded(at, CROWDED_YIELD, false),
                "crowded by someone else: the peer is not here, stay"
            );
        }
        assert_eq!(idle.next(), Step::Yield, "but yield at once");
    }

    #[test]
    fn crowded_or_not_an_idle_waiter_parks_after_the_spin_budget() {
        let mut idle = Idle::new(Duration::from_micros(100), None);
        idle.yielded(Instant::now(), CROWDED_YIELD, false);
        assert_eq!(idle.next(), Step::Yield);
        std::thread::sleep(Duration::from_millis(1));
        for _ in 0..YIELDS {
            assert_eq!(idle.next(), Step::Yield);
        }
        assert_eq!(idle.next(), Step::Park);
    }

    #[test]
    fn no_spin_budget_goes_straight_to_yielding() {
        let mut idle = Idle::new(Duration::ZERO, None);
        assert_eq!(idle.next(), Step::Yield);
    }
}
