//! The runtime behind the blocking API: one current-thread tokio runtime
//! per process, started the first time a blocking call needs it and shared
//! by every blocking client and server, with one background thread.
//!
//! Who drives it (runs its tasks and waits for its sockets) changes hands:
//!
//! - A blocking call runs `Runtime::block_on` on the calling thread. If
//!   nobody drives the runtime, the caller does: it writes its request,
//!   waits in the event loop itself, reads its answer and returns, with no
//!   other thread woken, much as a plain blocking socket would. Callers that
//!   find it driven run their own future on their own thread and are woken
//!   by the driver when their answer is in.
//! - While no call has been made for [`GRACE`], the background thread
//!   drives it, so the other side's requests (callbacks), pings and
//!   accepted clients are served whatever the program's threads are
//!   doing. A call that arrives then asks it to hand over, and it does.
//!
//! Plain-function handlers run on the runtime's blocking thread pool.

use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tokio::runtime::{EnterGuard, Runtime};
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// How long the runtime must have been without a blocking call before the
/// background thread takes over driving it. Back-to-back calls never wait
/// for it; callbacks to a program that just made a call are served at most
/// this late.
const GRACE: Duration = Duration::from_millis(2);

struct Shared {
    runtime: Runtime,
    calls: Mutex<Calls>,
    /// Signalled when the last running call ends, if the background
    /// thread waits for that.
    idle: Condvar,
    /// Tells the background thread to stop driving.
    hand_over: Notify,
}

#[derive(Default)]
struct Calls {
    /// Blocking calls in progress.
    running: usize,
    /// Blocking calls started, ever: tells the background thread whether
    /// its grace period was really quiet.
    started: u64,
    /// True while the background thread drives the runtime.
    background: bool,
    /// True while the background thread waits for `running` to reach 0
    /// (the only wait of its that needs a signal: waking it after every
    /// call would cost each call a thread wake-up).
    awaiting_idle: bool,
}

static SHARED: OnceLock<std::result::Result<Arc<Shared>, String>> = OnceLock::new();

fn lock(calls: &Mutex<Calls>) -> MutexGuard<'_, Calls> {
    // Only counters are kept under it; they stay consistent on a panic.
    calls
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The shared runtime, started on first use.
fn shared() -> Result<&'static Arc<Shared>> {
    let started = SHARED.get_or_init(|| start().map_err(|e| e.to_string()));
    started.as_ref().map_err(|message| {
        Error::Io(io::Error::other(format!(
            "could not start switchboard's background runtime: {message}"
        )))
    })
}

fn start() -> io::Result<Arc<Shared>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .thread_name("switchboard-blocking")
        .enable_all()
        .build()?;
    let shared = Arc::new(Shared {
        runtime,
        calls: Mutex::default(),
        idle: Condvar::new(),
        hand_over: Notify::new(),
    });
    let background = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("switchboard".into())
        .spawn(move || background.drive_while_idle())?;
    Ok(shared)
}

impl Shared {
    /// The background thread: drives the runtime whenever no blocking call
    /// has been made for [`GRACE`], until one is.
    fn drive_while_idle(&self) {
        loop {
            {
                let mut calls = lock(&self.calls);
                loop {
                    if calls.running > 0 {
                        calls.awaiting_idle = true;
                        calls = self.idle.wait(calls).unwrap_or_else(|p| p.into_inner());
                        calls.awaiting_idle = false;
                        continue;
                    }
                    let seen = calls.started;
                    calls = self
                        .idle
                        .wait_timeout(calls, GRACE)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if calls.running == 0 && calls.started == seen {
                        break;
                    }
                }
                calls.background = true;
            }
            self.runtime.block_on(self.hand_over.notified());
            lock(&self.calls).background = false;
        }
    }

    #[track_caller]
    fn block_on<F: Future>(&self, call: &str, future: F) -> F::Output {
        if inside_running_runtime() {
            panic!("{}", inside_runtime(call));
        }
        {
            let mut calls = lock(&self.calls);
            calls.running += 1;
            calls.started += 1;
            if calls.background {
                // Stored as a permit if the background thread is not
                // waiting yet: it then hands over as soon as it starts.
                self.hand_over.notify_one();
            }
        }
        // Ends the call even if the future panics.
        struct Ending<'a>(&'a Shared);
        impl Drop for Ending<'_> {
            fn drop(&mut self) {
                let mut calls = lock(&self.0.calls);
                calls.running -= 1;
                if calls.running == 0 && calls.awaiting_idle {
                    self.0.idle.notify_one();
                }
            }
        }
        let _ending = Ending(self);
        // Should `inside_running_runtime` miss a case, tokio refuses before
        // it polls anything, and its panic is turned into the same one
        // (after tokio's own message, which the panic hook has printed).
        match panic::catch_unwind(AssertUnwindSafe(|| self.runtime.block_on(future))) {
            Ok(output) => output,
            Err(payload) if is_nested_runtime(&*payload) => panic!("{}", inside_runtime(call)),
            Err(payload) => panic::resume_unwind(payload),
        }
    }
}

/// Whether this thread is polling inside a running tokio runtime: in a
/// `block_on` or a task, where `Runtime::block_on` would panic with
/// tokio's generic message. tokio has no question for it (being inside a
/// runtime's context is not enough: `spawn_blocking`, `block_in_place` and
/// a `Handle::enter` guard are fine), but it gives each of those polls a
/// budget of 128 operations, and everything else an unlimited one. So: 129
/// operations tell them apart, and are only spent when the answer is yes.
fn inside_running_runtime() -> bool {
    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    (0..=128).any(|_| {
        std::pin::pin!(tokio::task::consume_budget())
            .poll(&mut cx)
            .is_pending()
    })
}

/// Whether a panic is tokio's refusal to block inside a running runtime.
fn is_nested_runtime(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    message
        .is_some_and(|message| message.starts_with("Cannot start a runtime from within a runtime"))
}

/// What a blocking call made inside a running async runtime panics with:
/// which call, why, and the two ways out.
fn inside_runtime(call: &str) -> String {
    format!(
        "switchboard::blocking: `{call}` was called inside a running async runtime \
         (in `#[tokio::main]`, `Runtime::block_on` or an async task), where blocking the \
         thread would stall the runtime's other tasks. In async code use the async API \
         (`switchboard::Client`, `switchboard::Server`, or the typed client rather than its \
         blocking twin); or move the blocking call off the runtime's threads with \
         `tokio::task::spawn_blocking(move || ...)` or `std::thread::spawn`"
    )
}

/// Runs `future`, the body of the blocking method `call` (named in the
/// panic below), to completion on the calling thread, inside the shared
/// runtime. Errors of the runtime itself come back as [`Error::Io`].
///
/// # Panics
/// When called inside a running async runtime, with a message that names
/// `call` and says what to do instead.
#[track_caller]
pub(super) fn run<T>(call: &str, future: impl Future<Output = Result<T>>) -> Result<T> {
    shared()?.block_on(call, future)
}

/// Runs `future` to completion on the shared runtime and returns its
/// output: what the blocking API does for each call, for code generated
/// outside this crate (the typed blocking clients of
/// `#[switchboard::service]`). Not a stable API.
///
/// # Panics
/// When called inside a running async runtime (naming `call`), and when
/// the runtime cannot be started (the operating system refused a thread
/// or an event queue).
#[doc(hidden)]
#[track_caller]
pub fn block_on<F: Future>(call: &str, future: F) -> F::Output {
    match shared() {
        Ok(shared) => shared.block_on(call, future),
        Err(e) => panic!("{e}"),
    }
}

/// Makes the shared runtime current until the guard drops, for dropping
/// things that spawn or deregister on the way out. `None` if the runtime
/// never started (then nothing of it needs dropping).
fn enter() -> Option<EnterGuard<'static>> {
    SHARED
        .get()?
        .as_ref()
        .ok()
        .map(|shared| shared.runtime.enter())
}

/// An async value that must be dropped with the shared runtime current: a
/// connection dropped there gets its few seconds to flush what it queued,
/// the way it does when dropped inside any runtime.
pub(super) struct InRuntime<T>(Option<T>);

impl<T> InRuntime<T> {
    pub(super) fn new(value: T) -> InRuntime<T> {
        InRuntime(Some(value))
    }

    /// The value, to be consumed by an async method.
    pub(super) fn into_inner(mut self) -> T {
        match self.0.take() {
            Some(value) => value,
            None => unreachable!("InRuntime is only emptied by into_inner or drop"),
        }
    }
}

impl<T> std::ops::Deref for InRuntime<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Some(value) => value,
            None => unreachable!("InRuntime is only emptied by into_inner or drop"),
        }
    }
}

impl<T> std::ops::DerefMut for InRuntime<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.0 {
            Some(value) => value,
            None => unreachable!("InRuntime is only emptied by into_inner or drop"),
        }
    }
}

impl<T> Drop for InRuntime<T> {
    fn drop(&mut self) {
        let _entered = enter();
        drop(self.0.take());
    }
}
