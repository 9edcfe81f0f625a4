//! Who runs the read loop: its own task, or a caller waiting for an answer.
//!
//! The read loop ([`super::reader`]) is one future, kept here rather than
//! owned by a task, so that whoever waits for what it reads can poll it. A
//! caller whose answer is on its way polls the loop itself while it waits:
//! it reads the answer on its own thread and goes on, with no hand-over
//! from a reader task. That hand-over costs more than the rest of a round
//! trip on a small VM: on a current-thread runtime a turn of the scheduler
//! (which asks the OS for events first), on a multi-thread one the wake-up
//! of another thread (BENCHMARKS.md, "The latency floor"). The loop's own
//! task polls it whenever no caller does, so requests, notifications and
//! answers nobody waits for in this way are read as before.
//!
//! Whatever the loop waits for (the socket, a yield, room for a
//! notification) wakes one waker of this module's, which passes the wake on
//! to the caller polling the loop, if there is one, and to the task. The
//! task polls the loop only if nobody has since the wake: a caller that is
//! being polled gets there first (on a current-thread runtime the
//! `block_on` future is polled before the tasks), one that is not (a
//! request future kept aside unpolled) cannot hold the loop up.
//!
//! A caller, too, polls the loop only if it was woken since its last poll:
//! many request futures of one task (a caller pipelining) poll it once
//! between them, not once each, which would spin its busy poll for each
//! (current-thread runtime) or ask the socket for each (multi-thread). The
//! exception is the one caller polling busily for its answer on a
//! multi-thread runtime (see [`super::busy_poll`]): there the loop does not
//! poll the socket itself, and the runtime learns of new bytes only when a
//! worker next looks, so that caller polls the loop every time, which asks
//! the socket.
//!
//! Only callers on the connection's own runtime poll the loop: what it
//! starts (handlers, in their tasks) belongs there. And not over the
//! shared-memory ring on a multi-thread runtime: the ring's reader yields
//! between its spins, and every yield under a caller would also wake the
//! task, on another thread (measured in noisy runs: 31 to 35 µs a round
//! trip with callers polling, 24 to 29 without).

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use tokio::runtime::{Handle, Id, RuntimeFlavor};

use super::{BoxFuture, lock};

/// The loop's task, as a poller (callers are numbered from 0).
const TASK: u64 = u64::MAX;

/// The read loop and who polls it.
pub(super) struct Reading {
    /// `None` before the loop starts and after it ended or was stopped.
    read_loop: Mutex<Option<BoxFuture<()>>>,
    /// The loop ended or was [stopped](Reading::stop); if it was being
    /// polled right then, its poller drops it afterwards.
    over: AtomicBool,
    /// The caller that polled the loop last left; a wake the loop deferred
    /// then may be lost (see [`Reading::leave`]).
    suspect: AtomicBool,
    /// Who polled the loop last: a caller's number, or [`TASK`].
    last_poller: AtomicU64,
    wakes: Arc<Wakes>,
    /// What the loop is polled with: a [`Wakes`].
    waker: Waker,
    /// The runtime the connection started on, and whether it is a
    /// current-thread one; `None` if callers do not poll the loop.
    runtime: Option<(Id, bool)>,
    next_caller: AtomicU64,
}

/// Where the loop's wakes go.
struct Wakes {
    /// The loop was woken and nobody has polled it since.
    owed: AtomicBool,
    to: Mutex<To>,
}

#[derive(Default)]
struct To {
    task: Option<Waker>,
    /// The caller polling the loop now, by its number.
    caller: Option<(u64, Waker)>,
}

impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.owed.store(true, Ordering::Release);
        let to = lock(&self.to);
        let caller = to.caller.as_ref().map(|(_, caller)| caller.clone());
        let task = to.task.clone();
        drop(to);
        // The caller first: on a multi-thread runtime it may be spinning
        // on another CPU, and the task's thread is the one waking both.
        for waker in caller.into_iter().chain(task) {
            waker.wake();
        }
    }
}

impl Reading {
    /// Waiting for its loop, on the connection's runtime; `callers` says
    /// whether callers waiting for answers may poll it.
    pub(super) fn new(callers: bool) -> Reading {
        // Owed from the start: the task's first poll starts the loop.
        let wakes = Arc::new(Wakes {
            owed: AtomicBool::new(true),
            to: Mutex::default(),
        });
        Reading {
            read_loop: Mutex::new(None),
            over: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            last_poller: AtomicU64::new(TASK),
            waker: Waker::from(Arc::clone(&wakes)),
            wakes,
            runtime: Handle::try_current()
                .ok()
                .filter(|_| callers)
                .map(|handle| {
                    let flavor = handle.runtime_flavor();
                    (handle.id(), flavor == RuntimeFlavor::CurrentThread)
                }),
            next_caller: AtomicU64::new(0),
        }
    }

    /// Hands over the loop.
    pub(super) fn start(&self, read_loop: BoxFuture<()>) {
        *lock(&self.read_loop) = Some(read_loop);
    }

    /// The loop's task: polls it when woken and nobody else has since,
    /// until it ends.
    pub(super) fn poll_task(&self, cx: &mut Context<'_>) -> Poll<()> {
        {
            let mut to = lock(&self.wakes.to);
            if !to
                .task
                .as_ref()
                .is_some_and(|task| task.will_wake(cx.waker()))
            {
                to.task = Some(cx.waker().clone());
            }
        }
        let due = self.wakes.owed.load(Ordering::Acquire)
            || self.suspect.load(Ordering::Acquire)
            || self.over.load(Ordering::Acquire);
        if !due {
            return Poll::Pending;
        }
        self.poll_loop(TASK)
    }

    /// A number for a caller about to wait, if it may poll the loop (it
    /// runs on the connection's runtime).
    pub(super) fn caller(&self) -> Option<Caller> {
        let here = Handle::try_current().ok()?.id();
        let (runtime, current_thread) = self.runtime?;
        (runtime == here).then(|| Caller {
            id: self.next_caller.fetch_add(1, Ordering::Relaxed),
            current_thread,
            polled: false,
            busy: false,
        })
    }

    /// Caller `id` polls the loop while it waits, if the loop was woken
    /// since its last poll and nobody else is polling it right now; the
    /// loop's wakes go to this caller until it [leaves](Reading::leave).
    pub(super) fn poll_caller(&self, caller: &Caller, cx: &mut Context<'_>) {
        let id = caller.id;
        {
            let mut to = lock(&self.wakes.to);
            match &mut to.caller {
                Some((current, waker)) if *current == id => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                }
                other => *other = Some((id, cx.waker().clone())),
            }
        }
        // Only if woken since its last poll (or its last poller left):
        // otherwise it waits for something that will wake it (and this
        // caller, registered above), and many callers polled in turn (a
        // pipelining caller's futures) poll it once between them, not once
        // each. A caller polling busily for its answer (multi-thread
        // runtime) polls every time: the loop does not poll the socket
        // there, and the runtime learns of new bytes only when a worker
        // next looks. (Every caller polling every time took a pipelining
        // caller's rate from 0.45 to 0.31 × raw_tokio_local.)
        let due = caller.busy
            || self.wakes.owed.load(Ordering::Acquire)
            || self.suspect.load(Ordering::Acquire);
        if due {
            let _ = self.poll_loop(id);
        }
    }

    /// `caller` has what it waited for: the loop's wakes no longer go to
    /// it.
    fn leave(&self, caller: &Caller) {
        let mut to = lock(&self.wakes.to);
        if to
            .caller
            .as_ref()
            .is_some_and(|(current, _)| *current == caller.id)
        {
            to.caller = None;
        }
        drop(to);
        // On a current-thread runtime a wake the loop deferred (a yield)
        // while the `block_on` future polled it is lost if that `block_on`
        // returns now (tokio drops its deferred wakes with it): the next
        // to poll does, the task if nobody else. Only the loop's last
        // poller marks it, so the futures of a caller pipelining do not
        // each make the next one spin the loop's busy poll.
        let last = self.last_poller.load(Ordering::Acquire) == caller.id;
        if caller.polled && caller.current_thread && last {
            self.suspect.store(true, Ordering::Release);
            self.wake_task();
        }
    }

    /// Drops the loop, and with it the link's receiving half. Called from
    /// anywhere, the loop's own handlers included: if the loop is being
    /// polled right now, its poller drops it when done.
    pub(super) fn stop(&self) {
        self.over.store(true, Ordering::Release);
        let taken = match self.read_loop.try_lock() {
            Ok(mut read_loop) => read_loop.take(),
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner().take(),
            Err(TryLockError::WouldBlock) => None,
        };
        drop(taken);
        self.wake_task();
    }

    fn wake_task(&self) {
        let task = lock(&self.wakes.to).task.clone();
        if let Some(task) = task {
            task.wake();
        }
    }

    /// Polls the loop once if nobody else is; ready once it has ended.
    fn poll_loop(&self, poller: u64) -> Poll<()> {
        let mut read_loop = match self.read_loop.try_lock() {
            Ok(read_loop) => read_loop,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Whoever holds it sees what there is to see.
            Err(TryLockError::WouldBlock) => return Poll::Pending,
        };
        if self.over.load(Ordering::Acquire) {
            *read_loop = None;
        }
        let Some(future) = read_loop.as_mut() else {
            return Poll::Ready(());
        };
        self.wakes.owed.store(false, Ordering::Release);
        self.suspect.store(false, Ordering::Release);
        self.last_poller.store(poller, Ordering::Release);
        let mut cx = Context::from_waker(&self.waker);
        // A bug in the loop must not unwind into a caller that merely
        // waited for an answer; the loop ends, and its task ends the
        // connection.
        let polled = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
            .unwrap_or_else(|_| {
                tracing::error!("the read loop panicked; the connection ends");
                Poll::Ready(())
            });
        if polled.is_ready() || self.over.load(Ordering::Acquire) {
            *read_loop = None;
            drop(read_loop);
            self.over.store(true, Ordering::Release);
            // Its task ends too.
            self.wake_task();
            return Poll::Ready(());
        }
        drop(read_loop);
        // Woken while being polled here: whoever was woken may have found
        // the loop taken and gone back to waiting. The task makes sure.
        if self.wakes.owed.load(Ordering::Acquire) {
            self.wake_task();
        }
        Poll::Pending
    }
}

/// A caller's wait for its answer, polling the read loop meanwhile (see
/// the module doc).
pub(super) struct Driving<'a, F> {
    reading: &'a Reading,
    caller: Option<Caller>,
    answer: F,
}

/// A caller allowed to poll the loop.
pub(super) struct Caller {
    id: u64,
    current_thread: bool,
    /// It has polled the loop.
    polled: bool,
    /// It polls busily for its answer (see [`Driving::polling_busily`]).
    busy: bool,
}

impl<'a, F> Driving<'a, F> {
    pub(super) fn new(reading: &'a Reading, answer: F) -> Driving<'a, F> {
        Driving {
            caller: reading.caller(),
            reading,
            answer,
        }
    }

    /// While `busy`, every poll of this wait polls the loop, not only
    /// those after a wake: for the one caller per connection that polls
    /// busily for its answer on a multi-thread runtime.
    pub(super) fn polling_busily(&mut self, busy: bool) {
        if let Some(caller) = &mut self.caller {
            caller.busy = busy;
        }
    }
}

impl<F: Future + Unpin> Future for Driving<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        if let Poll::Ready(answer) = Pin::new(&mut this.answer).poll(cx) {
            return Poll::Ready(answer);
        }
        let Some(caller) = &mut this.caller else {
            return Poll::Pending;
        };
        // A handler's first poll runs inside the loop: a request it makes
        // there must not poll the loop (or be woken by its own waker).
        if cx.waker().will_wake(&this.reading.waker) {
            return Poll::Pending;
        }
        caller.polled = true;
        this.reading.poll_caller(caller, cx);
        Pin::new(&mut this.answer).poll(cx)
    }
}

impl<F> Drop for Driving<'_, F> {
    fn drop(&mut self) {
        if let Some(caller) = &self.caller {
            self.reading.leave(caller);
        }
    }
}
