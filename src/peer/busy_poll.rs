//! Busy-polling: keeping a thread awake for a moment before it sleeps.
//!
//! A thread that sleeps in the kernel until a message arrives pays for
//! being woken: on a virtual machine whose idle CPUs halt, about 10 to
//! 20 µs each time, more than the rest of a round trip (BENCHMARKS.md,
//! "Busy-polling, and senders that flush their own bursts"). Where the
//! next message is likely to come within microseconds (an answer to a
//! quick request, the next request of a caller in a loop), it is cheaper
//! to keep polling for a short while and to sleep only if nothing came.
//!
//! A poll of a socket asks the socket itself (a `read` that does not
//! wait), not the runtime's record of readiness, which is only as fresh as
//! its last look at the OS's event queue; that look (`epoll_wait`) costs
//! more than the `read` and slows the sender's write too (BENCHMARKS.md,
//! "The latency floor"). Polls come in slices ([`READ_SLICE`],
//! [`ANSWER_SLICE`]) without leaving; between slices the poller lets the
//! OS run any other thread waiting for this CPU and the runtime run the
//! thread's other tasks, so it only ever uses time nobody else wants. A
//! `sched_yield` that took long ran such a thread, perhaps the peer: then
//! the poller looks once per slice until its CPU is its own again.
//!
//! It adapts per connection: after a few polls in a row that came up empty,
//! it stops and tries again only now and then, so an idle connection or a
//! slow peer costs next to nothing. The window is [`Config::busy_poll`];
//! `None` turns it off.
//!
//! Who polls depends on the runtime. On a current-thread runtime the read
//! loop polls the socket, whether its task or a caller waiting for an
//! answer runs it (see [`super::reading`]). On a multi-thread runtime the
//! read loop does not poll: its task has a worker thread of its own, and
//! polling there (yielding makes tokio's worker wake another to look for
//! work, each time) costs more than it saves. Instead a caller outside the
//! runtime's workers (the `block_on` of `#[tokio::main]`) polls for its
//! answer, running the read loop as it does, so it reads the answer on its
//! own thread; one caller per connection at a time. Callers in worker
//! tasks do not poll.
//!
//! [`Config::busy_poll`]: crate::Config::busy_poll

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::cpu_yield;

/// Empty polls in a row after which polling stops paying off.
const GIVE_UP_AFTER: u32 = 4;
/// Once given up, every this many waits tries polling again.
const RETRY_EVERY: u32 = 16;
/// The longest the read loop polls its socket without letting the runtime
/// run anything else on its thread. Each turn between slices costs a
/// `sched_yield` and an `epoll_wait`: where system calls are dear (0.5 to
/// 0.8 µs each on the AMD hosts these benchmarks also run on) slices of
/// 5 µs made the round trip 1.2 to 1.4 times slower than slices of 10 to
/// 50 µs (BENCHMARKS.md, "Fewer turns between slices"); 10 µs keeps the
/// delay to the thread's other tasks short.
pub(super) const READ_SLICE: Duration = Duration::from_micros(10);
/// The same for a caller polling for its answer (multi-thread runtimes).
/// Its slices are shorter because it polls inside the caller's task: the
/// other futures of that task (the rest of the requests a
/// `buffer_unordered` keeps in flight) wait for the slice to end, and
/// 10 µs there cut the pipelined rate by about a third.
pub(super) const ANSWER_SLICE: Duration = Duration::from_micros(5);

/// One waiter's busy-polling policy and its recent luck.
#[derive(Debug)]
pub(super) struct BusyPoll {
    window: Option<Duration>,
    slice: Duration,
    /// Empty polls in a row.
    misses: AtomicU32,
    /// Waits since polling was given up.
    skipped: AtomicU32,
    /// Somebody polls now: one poller is enough to keep a thread awake.
    polling: AtomicBool,
    /// The last turn between slices ran another thread on this CPU (its
    /// `sched_yield` took long), perhaps the peer's: polls then come one
    /// per slice, since a long slice only keeps that thread waiting.
    crowded: AtomicBool,
}

impl BusyPoll {
    /// Polls for up to `window` in all, in slices of `slice`.
    pub(super) fn new(window: Option<Duration>, slice: Duration) -> BusyPoll {
        BusyPoll {
            window: window.filter(|window| !window.is_zero()),
            slice,
            misses: AtomicU32::new(0),
            skipped: AtomicU32::new(0),
            polling: AtomicBool::new(false),
            crowded: AtomicBool::new(false),
        }
    }

    /// Polls `future` busily, yielding to the runtime between polls, for up
    /// to the window when that has been paying off. Returns its output if
    /// it finished meanwhile; otherwise the caller waits for it as usual.
    pub(super) async fn poll<F: Future>(&self, future: Pin<&mut F>) -> Option<F::Output> {
        self.poll_until(future, || false).await
    }

    /// Like [`BusyPoll::poll`], but stops (a success) as soon as `progress`
    /// says that what the poller waits for is on its way: for a caller
    /// among many waiting on one connection, any answer arriving means the
    /// thread has work again. Only one caller polls at a time.
    pub(super) async fn poll_until<F: Future>(
        &self,
        mut future: Pin<&mut F>,
        progress: impl Fn() -> bool,
    ) -> Option<F::Output> {
        let window = self.window.filter(|_| self.worth_trying())?;
        if self.polling.swap(true, Ordering::Acquire) {
            return None;
        }
        let _polling = Polling(&self.polling);
        let start = Instant::now();
        let end = start + window;
        let mut polls = 0_u32;
        loop {
            let slice = match self.crowded.load(Ordering::Relaxed) {
                true => Duration::ZERO,
                false => self.slice,
            };
            let slice_end = (Instant::now() + slice).min(end);
            loop {
                if let Poll::Ready(output) = poll_once(future.as_mut()).await {
                    // Ready at the first look is no sign either way.
                    if polls > 0 {
                        self.misses.store(0, Ordering::Relaxed);
                    }
                    return Some(output);
                }
                if polls > 0 && progress() {
                    self.misses.store(0, Ordering::Relaxed);
                    return None;
                }
                polls += 1;
                if Instant::now() >= slice_end {
                    break;
                }
                std::hint::spin_loop();
            }
            if Instant::now() >= end {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            // Between slices: let another thread that waits for this CPU
            // have it (returns at once when none does), and the runtime
            // run the thread's other tasks.
            let crowded = cpu_yield::yield_cpu() >= cpu_yield::CROWDED_YIELD;
            self.crowded.store(crowded, Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    }

    fn worth_trying(&self) -> bool {
        if self.misses.load(Ordering::Relaxed) < GIVE_UP_AFTER {
            return true;
        }
        let skipped = self.skipped.fetch_add(1, Ordering::Relaxed);
        if skipped % RETRY_EVERY == RETRY_EVERY - 1 {
            // One more chance: a success resets the count.
            self.misses.store(GIVE_UP_AFTER - 1, Ordering::Relaxed);
            return true;
        }
        false
    }
}

/// Clears the "somebody polls" flag when polling ends, however it ends.
struct Polling<'a>(&'a AtomicBool);

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// True on a current-thread runtime, where whoever waits for a message
/// shares the thread with the task that reads it.
pub(super) fn on_current_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|handle| handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// True where a caller waiting for an answer should poll for it: on a
/// multi-thread runtime, outside its workers' tasks (see the module doc).
pub(super) fn caller_should_poll() -> bool {
    tokio::task::try_id().is_none()
        && tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread
        })
}

/// Polls `future` once, registering the current task's waker.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits `busy` out on something that takes 20 ms; returns how often
    /// it was polled: plain waiting twice (once, then when woken), busy
    /// polling at least twice more. Long enough that a thread descheduled
    /// for a while on a loaded machine does not see it finish while it
    /// polls (which would count as an answer caught).
    async fn polls_of_a_slow_wait(busy: &BusyPoll) -> u32 {
        let mut polls = 0;
        let mut slow = std::pin::pin!(tokio::time::sleep(Duration::from_millis(20)));
        let counted = poll_fn(|cx| {
            polls += 1;
            slow.as_mut().poll(cx)
        });
        let mut counted = std::pin::pin!(counted);
        if busy.poll(counted.as_mut()).await.is_none() {
            counted.await;
        }
        polls
    }

    #[tokio::test(flavor = "current_thread")]
    async fn polling_that_keeps_coming_up_empty_stops_and_retries_now_and_then() {
        let busy = BusyPoll::new(Some(Duration::from_micros(300)), READ_SLICE);
        let mut busy_waits = Vec::new();
        for wait in 0..(GIVE_UP_AFTER + 2 * RETRY_EVERY) {
            if polls_of_a_slow_wait(&busy).await > 2 {
                busy_waits.push(wait);
            }
        }
        // The first few, then one every RETRY_EVERY waits.
        let first: Vec<u32> = (0..GIVE_UP_AFTER).collect();
        let retries = [
            GIVE_UP_AFTER + RETRY_EVERY - 1,
            GIVE_UP_AFTER + 2 * RETRY_EVERY - 1,
        ];
        assert_eq!(busy_waits, [&first[..], &retries[..]].concat());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_caught_while_polling_keeps_polling_on() {
        let busy = BusyPoll::new(Some(Duration::from_millis(50)), READ_SLICE);
        busy.misses.store(GIVE_UP_AFTER - 1, Ordering::Relaxed);
        // Ready after a few yields: caught by polling.
        let mut left = 3;
        let soon = poll_fn(|cx| {
            if left == 0 {
                return Poll::Ready(());
            }
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(busy.poll(std::pin::pin!(soon)).await.is_some());
        assert_eq!(busy.misses.load(Ordering::Relaxed), 0);
    }

    /// What a task running beside the poller had counted at each of the
    /// first three polls of a wait (the third finishes it).
    async fn sibling_turns_seen_by_each_poll(busy: &BusyPoll) -> Vec<u32> {
        let turns = std::sync::Arc::new(AtomicU32::new(0));
        let counting = std::sync::Arc::clone(&turns);
        let sibling = tokio::spawn(async move {
            loop {
                counting.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let mut seen = Vec::new();
        let third = poll_fn(|_| {
            seen.push(turns.load(Ordering::Relaxed));
            match seen.len() {
                3 => Poll::Ready(()),
                _ => Poll::Pending,
            }
        });
        assert!(busy.poll(std::pin::pin!(third)).await.is_some());
        sibling.abort();
        seen
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_crowded_poller_lets_the_runtime_run_after_each_look() {
        // Slices far longer than the test, so that only crowding ends one.
        let busy = BusyPoll::new(Some(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(sibling_turns_seen_by_each_poll(&busy).await, [0, 0, 0]);

        // As after a `sched_yield` that ran another thread: the slice is
        // one look, then the sibling runs. (Whether the next slice is long
        // again depends on how long this test's own yield takes.)
        busy.crowded.store(true, Ordering::Relaxed);
        let seen = sibling_turns_seen_by_each_poll(&busy).await;
        assert_eq!(seen[0], 0, "{seen:?}");
        assert!(
            seen[1] > 0,
            "the sibling ran between the first two looks: {seen:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn off_means_plain_waiting() {
        let busy = BusyPoll::new(None, READ_SLICE);
        let ready = std::future::ready(7);
        assert_eq!(
            busy.poll(std::pin::pin!(ready)).await,
            None,
            "not polled at all"
        );
        assert!(
            BusyPoll::new(Some(Duration::ZERO), READ_SLICE)
                .window
                .is_none()
        );
    }
}
