//! The runtime behind the blocking API: one multi-thread tokio runtime per
//! process, started the first time a blocking call needs it and shared by
//! every blocking client and server.
//!
//! A blocking call runs its future on the calling thread
//! (`Runtime::block_on`), so a request is encoded and written by the caller
//! itself; the runtime's worker threads read the sockets, run handlers and
//! keepalive, and wake the caller when its answer arrives. Because those
//! workers run whether or not anybody is blocked, callbacks from the other
//! side are served while the program's threads do something else.

use std::future::Future;
use std::io;
use std::sync::OnceLock;

use tokio::runtime::{EnterGuard, Runtime};

use crate::error::{Error, Result};

/// Worker threads of the shared runtime. Two: enough that a slow async
/// handler does not stall every connection's reads, few enough to cost
/// nothing when idle. Plain-function handlers run on tokio's blocking pool,
/// which grows on demand, so they do not take a worker.
const WORKERS: usize = 2;

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The shared runtime, started on first use.
fn runtime() -> Result<&'static Runtime> {
    let started = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .thread_name("switchboard")
            .enable_all()
            .build()
            // Kept as text: the error is reported to every later caller too.
            .map_err(|e| e.to_string())
    });
    started.as_ref().map_err(|message| {
        Error::Io(io::Error::other(format!(
            "could not start switchboard's background runtime: {message}"
        )))
    })
}

/// Runs `future` to completion on the calling thread, inside the shared
/// runtime. Errors of the runtime itself come back as [`Error::Io`].
///
/// # Panics
/// When called from inside an async runtime's task (tokio's own panic:
/// "Cannot start a runtime from within a runtime").
#[track_caller]
pub(super) fn run<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    runtime()?.block_on(future)
}

/// Runs `future` to completion on the shared runtime and returns its
/// output: what the blocking API does for each call, for code generated
/// outside this crate (the typed blocking clients of
/// `#[switchboard::service]`). Not a stable API.
///
/// # Panics
/// When called from inside an async runtime's task, and when the runtime
/// cannot be started (the operating system refused threads or an event
/// queue).
#[doc(hidden)]
#[track_caller]
pub fn block_on<F: Future>(future: F) -> F::Output {
    match runtime() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => panic!("{e}"),
    }
}

/// Makes the shared runtime current until the guard drops, for dropping
/// things that spawn or deregister on the way out. `None` if the runtime
/// never started (then nothing of it needs dropping).
fn enter() -> Option<EnterGuard<'static>> {
    RUNTIME.get()?.as_ref().ok().map(Runtime::enter)
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

impl<T> Drop for InRuntime<T> {
    fn drop(&mut self) {
        let _entered = enter();
        drop(self.0.take());
    }
}
