//! [`Stream`]: an answer that comes as a sequence of items, then an end.
//!
//! The same type on both sides. A handler builds one (from an iterator, an
//! async stream or a channel) and returns it; the caller of
//! [`Client::request_stream`](crate::Client::request_stream) gets one and
//! reads the items as they arrive. Items travel on the connection's credit
//! (PROTOCOL.md §5): the producer waits while the consumer is a window
//! behind, so a fast producer cannot fill a slow consumer's memory.
//! Dropping the caller's stream cancels the producer.

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::peer::{Incoming, Peer};
use crate::router::HandlerError;

type Produced<T> =
    Pin<Box<dyn futures_core::Stream<Item = std::result::Result<T, HandlerError>> + Send>>;

/// A sequence of items answering one request.
///
/// Serve one from a handler:
///
/// ```
/// use switchboard::{Router, Stream};
///
/// let router = Router::new().route("count", |to: u32| async move {
///     Stream::iter(1..=to)
/// });
/// ```
///
/// and read it on the other side:
///
/// ```
/// # use switchboard::{Client, Connector, Router, Server, Stream};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// # let router = Router::new().route("count", |to: u32| async move { Stream::iter(1..=to) });
/// # let server = Server::bind(&Connector::local(), router).await?;
/// let client = Client::connect(server.connector()).await?;
/// let mut numbers = client.request_stream::<_, u32>("count", &3).await?;
/// let mut seen = Vec::new();
/// while let Some(n) = numbers.next().await {
///     seen.push(n?);
/// }
/// assert_eq!(seen, [1, 2, 3]);
/// # Ok(()) }
/// ```
pub struct Stream<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Made here, to be sent (or read in-process).
    Local(Produced<T>),
    /// Arriving from the peer.
    Remote(Incoming<T>),
}

impl Peer {
    /// Sends a request whose answer is a stream of items (see
    /// [`Stream`]). The peer's credit for the request is
    /// waited for at most the default request timeout; the items then come
    /// as fast as the consumer takes them, with no overall time limit.
    /// Dropping the stream cancels the request on the other side.
    //
    // Defined here, not in the peer: the peer hands out its own incoming
    // items, and the API's `Stream` wraps them.
    pub async fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<Stream<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.request_incoming(route, params)
            .await
            .map(Stream::remote)
    }
}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Local(_) => f.write_str("Stream(local)"),
            Inner::Remote(incoming) => f.debug_tuple("Stream").field(incoming).finish(),
        }
    }
}

impl<T: Send + 'static> Stream<T> {
    /// The items of an iterator (produced as the consumer takes them, so
    /// an endless iterator is fine).
    pub fn iter<I>(items: I) -> Stream<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Stream::from_stream(Iter(Box::new(items.into_iter())))
    }

    /// The items of an async stream (any `futures::Stream`).
    pub fn from_stream<S>(items: S) -> Stream<T>
    where
        S: futures_core::Stream<Item = T> + Send + 'static,
    {
        Stream::try_from_stream(Infallible(Box::pin(items)))
    }

    /// The items of an async stream of results: the first error ends the
    /// stream, and the caller receives it after the items before it.
    pub fn try_from_stream<S, E>(items: S) -> Stream<T>
    where
        S: futures_core::Stream<Item = std::result::Result<T, E>> + Send + 'static,
        E: Into<HandlerError>,
    {
        Stream {
            inner: Inner::Local(Box::pin(Fallible(Box::pin(items)))),
        }
    }

    /// A stream fed through a channel, for producers that are a task or a
    /// thread of their own. The sender waits while `capacity` items are
    /// buffered here; the connection's credit then bounds what is in
    /// flight. [`Sender::send`] fails once the caller dropped the stream.
    ///
    /// ```
    /// use switchboard::{Router, Stream};
    ///
    /// let router = Router::new().route("ticks", |n: u32| async move {
    ///     let (sender, stream) = Stream::channel(8);
    ///     tokio::spawn(async move {
    ///         for i in 0..n {
    ///             if sender.send(i).await.is_err() {
    ///                 break; // the caller is gone
    ///             }
    ///         }
    ///     });
    ///     stream
    /// });
    /// ```
    pub fn channel(capacity: usize) -> (Sender<T>, Stream<T>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let stream = Stream {
            inner: Inner::Local(Box::pin(Channel(rx))),
        };
        (Sender { tx }, stream)
    }

    /// A stream with no items.
    pub fn empty() -> Stream<T> {
        Stream::iter(std::iter::empty())
    }
}

impl<T> Stream<T> {
    pub(crate) fn remote(incoming: Incoming<T>) -> Stream<T> {
        Stream {
            inner: Inner::Remote(incoming),
        }
    }

    /// What a handler produces, as the router sends it: items, or the
    /// error that ends the stream.
    pub(crate) fn poll_produce(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<T, HandlerError>>>
    where
        T: DeserializeOwned,
    {
        match &mut self.inner {
            Inner::Local(items) => items.as_mut().poll_next(cx),
            // A handler passing on a stream it is reading: the peer's
            // errors become this handler's.
            Inner::Remote(incoming) => incoming
                .poll_next(cx)
                .map(|item| item.map(|item| item.map_err(HandlerError::from_error))),
        }
    }
}

impl<T: DeserializeOwned> Stream<T> {
    /// The next item; `None` after the last. An error (the handler's, or
    /// the connection's) is the stream's last item.
    pub async fn next(&mut self) -> Option<Result<T>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Reads every item into a vector, stopping at the first error.
    pub async fn collect(mut self) -> Result<Vec<T>> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item?);
        }
        Ok(items)
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        match &mut self.inner {
            Inner::Local(items) => items
                .as_mut()
                .poll_next(cx)
                .map(|item| item.map(|item| item.map_err(HandlerError::into_error))),
            Inner::Remote(incoming) => incoming.poll_next(cx),
        }
    }
}

impl<T: DeserializeOwned> futures_core::Stream for Stream<T> {
    type Item = Result<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Neither variant is self-referential: both are Unpin.
        self.get_mut().poll_item(cx)
    }
}

/// The sending half of [`Stream::channel`].
#[derive(Debug, Clone)]
pub struct Sender<T> {
    tx: tokio::sync::mpsc::Sender<std::result::Result<T, HandlerError>>,
}

/// The stream's consumer is gone: stop producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the stream's consumer is gone")]
pub struct StreamClosed;

impl<T> Sender<T> {
    /// Sends one item, waiting while the stream is full.
    pub async fn send(&self, item: T) -> std::result::Result<(), StreamClosed> {
        self.tx.send(Ok(item)).await.map_err(|_| StreamClosed)
    }

    /// Ends the stream with an error, which the caller receives after the
    /// items sent before it.
    pub async fn fail(
        self,
        error: impl Into<HandlerError>,
    ) -> std::result::Result<(), StreamClosed> {
        self.tx
            .send(Err(error.into()))
            .await
            .map_err(|_| StreamClosed)
    }

    /// Waits until the consumer is gone (the caller dropped the stream or
    /// the connection ended).
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

struct Iter<I>(Box<I>);

impl<I: Iterator> futures_core::Stream for Iter<I> {
    type Item = I::Item;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

// The wrappers box what they wrap, so that they are Unpin whatever the
// user's stream is, and no pin projection is needed.
struct Infallible<S>(Pin<Box<S>>);

impl<S: futures_core::Stream> futures_core::Stream for Infallible<S> {
    type Item = std::result::Result<S::Item, HandlerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx).map(|item| item.map(Ok))
    }
}

struct Fallible<S>(Pin<Box<S>>);

impl<S, T, E> futures_core::Stream for Fallible<S>
where
    S: futures_core::Stream<Item = std::result::Result<T, E>>,
    E: Into<HandlerError>,
{
    type Item = std::result::Result<T, HandlerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|item| item.map_err(Into::into)))
    }
}

struct Channel<T>(tokio::sync::mpsc::Receiver<std::result::Result<T, HandlerError>>);

impl<T> futures_core::Stream for Channel<T> {
    type Item = std::result::Result<T, HandlerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}
