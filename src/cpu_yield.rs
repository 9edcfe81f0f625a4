//! Giving the CPU to any other thread waiting for it, and telling whether
//! one took it: how a busy poller (`peer::busy_poll`) or a waiter spinning
//! on the shared-memory ring (`shm::idle`) finds out that it shares its
//! CPU, where spinning only delays the thread it waits for.

use std::time::{Duration, Instant};

/// A `sched_yield` that takes this long ran another thread: on this
/// project's machines an uncontended one takes 0.6 to 1.3 µs on average
/// (99.7 % under 2 µs on one host), and one that runs another thread's
/// turn 4 µs or more.
pub(crate) const CROWDED_YIELD: Duration = Duration::from_micros(3);

/// `sched_yield`; returns how long it took.
pub(crate) fn yield_cpu() -> Duration {
    let start = Instant::now();
    std::thread::yield_now();
    start.elapsed()
}
