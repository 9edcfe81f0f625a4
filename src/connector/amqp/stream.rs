//! The byte stream of one AMQP link: the writing half publishes each write
//! as one message to the peer's inbox; the reading half consumes its own
//! inbox and watches the peer's presence queue.
//!
//! A write returns as soon as lapin has queued the message (its frames go
//! out in order from lapin's I/O thread); up to [`MAX_IN_FLIGHT`] bytes may
//! wait there before writes wait for the oldest to reach the socket. No
//! publisher confirms: one AMQP channel keeps the order, and a lost broker
//! connection ends the link anyway.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_core::Stream;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Connection, Consumer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::wire::{Sealer, TAG_LEN};
use super::{PEER_GONE_GRACE, PRESENCE_RENEWAL, lapin_error};

/// Largest stream message: one write publishes at most this many bytes.
/// Far below RabbitMQ's message size limit (128 MiB by default).
pub(super) const CHUNK: usize = 1024 * 1024;
/// Bytes published but not yet written to the broker socket before
/// writers wait.
const MAX_IN_FLIGHT: usize = 8 * 1024 * 1024;
/// How long a renewal waits for its new presence token.
const RENEWAL_WAIT: Duration = Duration::from_secs(30);

type Publish = Pin<Box<dyn Future<Output = lapin::Result<()>> + Send>>;

/// What both halves share; dropping the last half closes the link's AMQP
/// channel (and, for a client, its connection), which cancels its
/// consumers, deletes its auto-delete queues and requeues its presence
/// token so the peer learns at once.
pub(super) struct Shared {
    pub channel: Channel,
    /// The broker connection: a client's own, or the server listener's
    /// (kept alive while its links drain after the listener is gone).
    pub connection: Arc<Connection>,
    /// Close the connection (a client), not just the channel (a server).
    pub owns_connection: bool,
    pub keeper: tokio::task::JoinHandle<()>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.keeper.abort();
        let channel = self.channel.clone();
        let connection = Arc::clone(&self.connection);
        let owns_connection = self.owns_connection;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if owns_connection {
                    let _ = connection.close(200, "link closed".into()).await;
                } else {
                    let _ = channel.close(200, "link closed".into()).await;
                }
            });
        }
        // Without a runtime, lapin closes both when their last handle drops.
    }
}

/// Holds this side's presence token (unacknowledged, so the broker
/// requeues it to the peer's standby consumer the moment this side's
/// channel or connection goes), renewing it every [`PRESENCE_RENEWAL`] so
/// no delivery stays unacknowledged long enough for the broker's
/// `consumer_timeout` to close the channel.
///
/// The link's channel sets no prefetch limit, so the new token arrives
/// while the old one is still held; the old one is acknowledged only
/// then, so this side never holds no token. If a renewal fails the link
/// is no longer watched reliably: its channel is closed, which ends the
/// link on both sides (the peer gets the token) rather than leaving it to
/// the broker's `consumer_timeout` half an hour later.
pub(super) async fn keep_presence(
    channel: Channel,
    queue: ShortString,
    mut consumer: Consumer,
    mut held: Delivery,
) {
    loop {
        tokio::time::sleep(PRESENCE_RENEWAL).await;
        match renew(&channel, &queue, &mut consumer).await {
            Ok(token) => {
                let _ = held.acker.ack(BasicAckOptions::default()).await;
                held = token;
            }
            Err(e) => {
                tracing::warn!(queue = %queue, "closing the AMQP link: {e}");
                let _ = channel
                    .close(200, "the presence token could not be renewed".into())
                    .await;
                return;
            }
        }
    }
}

/// Publishes a new presence token and takes it from the queue.
async fn renew(
    channel: &Channel,
    queue: &ShortString,
    consumer: &mut Consumer,
) -> io::Result<Delivery> {
    channel
        .basic_publish(
            "".into(),
            queue.clone(),
            BasicPublishOptions::default(),
            &[],
            BasicProperties::default(),
        )
        .await
        .map_err(|e| lapin_error(e, "publishing a new presence token"))?;
    let next = std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx));
    match tokio::time::timeout(RENEWAL_WAIT, next).await {
        Ok(Some(Ok(token))) => Ok(token),
        Ok(Some(Err(e))) => Err(lapin_error(e, "taking the new presence token")),
        Ok(None) => Err(super::cancelled("this side's presence queue")),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the new presence token did not arrive within {RENEWAL_WAIT:?}"),
        )),
    }
}

/// The writing half.
pub(super) struct Writer {
    pub _shared: Arc<Shared>,
    pub channel: Channel,
    pub peer_inbox: ShortString,
    pub sealer: Option<Sealer>,
    pub in_flight: VecDeque<(usize, Publish)>,
    pub in_flight_bytes: usize,
    pub ended: bool,
}

impl Writer {
    pub(super) fn new(shared: Arc<Shared>, peer_inbox: String, sealer: Option<Sealer>) -> Writer {
        Writer {
            channel: shared.channel.clone(),
            _shared: shared,
            peer_inbox: peer_inbox.into(),
            sealer,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            ended: false,
        }
    }

    /// Forgets publishes that reached the socket; fails with the first
    /// error. `Pending` means the oldest is still queued.
    fn reap(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((len, publish)) = self.in_flight.front_mut() {
            let outcome = ready!(publish.as_mut().poll(cx));
            self.in_flight_bytes -= *len;
            self.in_flight.pop_front();
            outcome.map_err(|e| lapin_error(e, "publishing to the peer's inbox"))?;
        }
        Poll::Ready(Ok(()))
    }

    /// Publishes `body` (the payload; the tag is added here) and returns
    /// once lapin has queued it.
    fn publish(&mut self, cx: &mut Context<'_>, mut body: Vec<u8>) -> io::Result<()> {
        if let Some(sealer) = &mut self.sealer {
            sealer.seal(&mut body);
        }
        let len = body.len();
        let channel = self.channel.clone();
        let key = self.peer_inbox.clone();
        let mut publish: Publish = Box::pin(async move {
            channel
                .basic_publish(
                    "".into(),
                    key,
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                )
                .await
                .map(drop)
        });
        // The first poll hands the frames to lapin's queue (in order);
        // later polls only learn that they reached the socket.
        match publish.as_mut().poll(cx) {
            Poll::Ready(outcome) => {
                outcome.map_err(|e| lapin_error(e, "publishing to the peer's inbox"))
            }
            Poll::Pending => {
                self.in_flight_bytes += len;
                self.in_flight.push_back((len, publish));
                Ok(())
            }
        }
    }

    fn ready_for_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.ended {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the link was shut down",
            )));
        }
        match self.reap(cx) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
            // The oldest publish is registered with `cx`.
            Poll::Pending if self.in_flight_bytes >= MAX_IN_FLIGHT => return Poll::Pending,
            Poll::Pending => {}
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.ready_for_more(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = buf.len().min(CHUNK);
        let mut body = Vec::with_capacity(n + TAG_LEN);
        body.extend_from_slice(&buf[..n]);
        self.publish(cx, body)?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.ready_for_more(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let n = total.min(CHUNK);
        if n == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut body = Vec::with_capacity(n + TAG_LEN);
        for buf in bufs {
            let take = (n - body.len()).min(buf.len());
            body.extend_from_slice(&buf[..take]);
            if body.len() == n {
                break;
            }
        }
        self.publish(cx, body)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.reap(cx)
    }

    /// Publishes the end-of-stream message (an empty payload) once, after
    /// everything before it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.ended {
            self.publish(cx, Vec::with_capacity(TAG_LEN))?;
            self.ended = true;
        }
        self.reap(cx)
    }
}

/// The reading half.
pub(super) struct Reader {
    pub _shared: Arc<Shared>,
    /// This side's inbox.
    pub inbox: Consumer,
    /// A standby consumer on the peer's presence queue: any delivery means
    /// the peer's channel or connection is gone.
    pub peer_presence: Consumer,
    pub opener: Option<Sealer>,
    pub current: Vec<u8>,
    pub pos: usize,
    pub eof: bool,
    /// Armed when the peer's presence token arrives: messages it published
    /// before it went may still be on their way from another queue.
    pub peer_gone: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Reader {
    pub(super) fn new(
        shared: Arc<Shared>,
        inbox: Consumer,
        peer_presence: Consumer,
        opener: Option<Sealer>,
    ) -> Reader {
        Reader {
            _shared: shared,
            inbox,
            peer_presence,
            opener,
            current: Vec::new(),
            pos: 0,
            eof: false,
            peer_gone: None,
        }
    }

    /// Takes one delivery from the inbox. `Ready(Ok(()))`: bytes are in
    /// `current` (or `eof` is set).
    fn poll_inbox(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.inbox).poll_next(cx)) {
            Some(Ok(delivery)) => {
                let mut data = delivery.data;
                if let Some(opener) = &mut self.opener {
                    opener.open(&mut data)?;
                }
                if data.is_empty() {
                    self.eof = true;
                } else {
                    self.current = data;
                    self.pos = 0;
                }
                Poll::Ready(Ok(()))
            }
            Some(Err(e)) => Poll::Ready(Err(lapin_error(e, "reading this side's inbox"))),
            None => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the broker cancelled the inbox consumer (the queue was deleted)",
            ))),
        }
    }

    fn poll_peer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peer_gone.is_none() {
            match Pin::new(&mut self.peer_presence).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(lapin_error(e, "watching the peer")));
                }
                // The token, or the queue deleted: the peer is gone.
                Poll::Ready(Some(Ok(_)) | None) => {
                    self.peer_gone = Some(Box::pin(tokio::time::sleep(PEER_GONE_GRACE)));
                }
            }
        }
        if let Some(grace) = &mut self.peer_gone {
            ready!(grace.as_mut().poll(cx));
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the peer's broker connection or channel closed",
        )))
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.pos < this.current.len() {
                let n = buf.remaining().min(this.current.len() - this.pos);
                buf.put_slice(&this.current[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.current.len() {
                    this.current = Vec::new();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.poll_inbox(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
            return match this.poll_peer(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Pending,
            };
        }
    }
}
