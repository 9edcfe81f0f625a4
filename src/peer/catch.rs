//! Handler panics become values: a panicking handler answers with an
//! error instead of taking its connection (or the reader) down.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::BoxFuture;

/// Turns a panic inside a handler future into an error value.
pub(super) struct CatchUnwind<T>(pub(super) BoxFuture<T>);

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(panic) => Poll::Ready(Err(panic_message(&panic))),
        }
    }
}

impl<T> CatchUnwind<T> {
    /// Polls once with the current task's waker: most handlers finish
    /// without waiting, so they run right here with no task spawned. One
    /// that waits is moved to a task, whose first poll re-registers its own
    /// waker.
    pub(super) async fn poll_once(&mut self) -> Poll<Result<T, String>> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *self).poll(cx))).await
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
