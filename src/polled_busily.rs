//! A hint from a busy poller to the reader it polls: "I will poll you
//! again in a moment, and once more the ordinary way before I sleep".
//!
//! A read polled under the hint may answer "nothing yet" without asking to
//! be woken, and so without the runtime's event loop: the Unix socket
//! reader then takes its socket out of the event loop while it is polled
//! busily, which spares every message epoll's wake-up callbacks (see
//! [`crate::unix_socket`]). The hint holds only during a poll made inside
//! [`Busily`], on that thread.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static HINTED: Cell<bool> = const { Cell::new(false) };
}

/// True while a [`Busily`] on this thread polls what it wraps.
// Only a Unix socket's reader leaves the event loop; named pipes and TCP
// streams read the same way under the hint as without it.
#[cfg_attr(not(unix), allow(dead_code))]
pub(crate) fn polled_busily() -> bool {
    HINTED.with(Cell::get)
}

/// Polls the future it wraps under the hint. Whoever polls a `Busily`
/// promises to poll it again soon, and to poll the future itself (not
/// through a `Busily`) before it waits to be woken.
pub(crate) struct Busily<F>(pub(crate) F);

impl<F: Future + Unpin> Future for Busily<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = HINTED.with(|hinted| hinted.replace(true));
        // Restored even if the poll unwinds: a hint left behind would let
        // a later, ordinary read wait without being woken.
        let _restore = Restore(before);
        Pin::new(&mut self.0).poll(cx)
    }
}

struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        HINTED.with(|hinted| hinted.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_holds_inside_the_poll_only() {
        let mut seen = None;
        let probe = std::future::poll_fn(|_| {
            seen = Some(polled_busily());
            Poll::Ready(())
        });
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut busily = Busily(Box::pin(probe));
        assert!(Pin::new(&mut busily).poll(&mut cx).is_ready());
        assert_eq!(seen, Some(true));
        assert!(!polled_busily());
    }
}
