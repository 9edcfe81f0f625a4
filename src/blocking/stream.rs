//! [`Items`]: a [`Stream`](crate::Stream) answer read as an iterator, for
//! the blocking API.

use serde::de::DeserializeOwned;

use super::runtime::{InRuntime, block_on};
use crate::error::Result;
use crate::stream::Stream;

/// The items of a streamed answer, from
/// [`blocking::Client::request_stream`](super::Client::request_stream):
/// each `next` blocks until the next item arrives (or the stream ends or
/// fails). Items arrive on the connection's credit, so a server cannot run
/// further ahead of a slow reader than the connection's window. Dropping
/// it before the end cancels the stream on the server.
///
/// An error item (the handler failed, the connection ended) is the last.
pub struct Items<T> {
    stream: InRuntime<Stream<T>>,
}

impl<T> Items<T> {
    pub(super) fn new(stream: Stream<T>) -> Items<T> {
        Items {
            stream: InRuntime::new(stream),
        }
    }
}

impl<T> std::fmt::Debug for Items<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Items").field(&*self.stream).finish()
    }
}

impl<T: DeserializeOwned> Iterator for Items<T> {
    type Item = Result<T>;

    /// # Panics
    /// When called from inside an async runtime's task, like every
    /// blocking call.
    #[track_caller]
    fn next(&mut self) -> Option<Result<T>> {
        block_on("blocking::Items::next", self.stream.next())
    }
}
