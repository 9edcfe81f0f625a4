//! The RabbitMQ (AMQP 0-9-1) connector: a [`Link`](super::Link) whose
//! bytes travel as messages between two queues on a broker, so everything
//! above (frames, the handshake, requests, flow control) works unchanged.
//!
//! - `server.rs`: a server instance consumes the service queue shared by
//!   every instance of the service and answers connect requests;
//! - `client.rs`: a client finds an instance and connects;
//! - `stream.rs`: the two halves of a connected link;
//! - `wire.rs`: message bodies, proofs and the per-message MAC.
//!
//! PROTOCOL.md, "AMQP", describes queues and messages normatively.

mod client;
mod server;
mod stream;
mod wire;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::protocol::AMQPErrorKind;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};

pub(crate) use client::connect;
pub(crate) use server::Listener;

use super::{AmqpUrl, Secret, random_bytes};
use crate::connector::Link;
use stream::{Reader, Shared, Writer};
use wire::Sealer;

/// How often a side renews the presence token it holds (see
/// `stream::keep_presence`): far below RabbitMQ's default 30-minute
/// `consumer_timeout`.
const PRESENCE_RENEWAL: Duration = Duration::from_secs(60);
/// After the peer's presence token arrives, how long the reader still
/// takes messages the peer published before it went.
const PEER_GONE_GRACE: Duration = Duration::from_millis(300);
/// How long a client waits for an instance to answer its connect request;
/// also the request's message TTL, so an unanswered one does not linger.
const ACCEPT_WAIT: Duration = Duration::from_secs(5);
/// Unused service and presence queues expire after this long (a backstop
/// for queues whose declarer died before consuming them).
const QUEUE_EXPIRES: Duration = Duration::from_secs(60);
/// Bound on each step of setting a link up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The queue every instance of `service` holding `secret` consumes. It is
/// named by the secret's fingerprint (never the secret), so instances with
/// another secret consume another queue and their clients never meet.
fn service_queue(service: &str, secret: Option<&Secret>) -> String {
    match secret {
        Some(secret) => format!("sb.{service}.k.{}", wire::fingerprint(secret)),
        None => format!("sb.{service}"),
    }
}

/// A fresh inbox name; `role` is `c` (client) or `s` (server instance).
fn inbox_name(service: &str, role: char) -> String {
    let bytes = random_bytes::<8>();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sb.{service}.{role}.{hex}")
}

/// The presence queue beside an inbox.
fn presence_name(inbox: &str) -> String {
    format!("{inbox}.alive")
}

fn expires() -> AMQPValue {
    AMQPValue::LongInt(QUEUE_EXPIRES.as_millis() as i32)
}

/// Connection properties: a name that shows in `rabbitmqctl
/// list_connections`.
fn properties(role: &str, service: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(format!("switchboard {role} {service}").into())
}

/// Opens a broker connection. The URL is parsed here so that no error
/// message ever quotes it (it holds the password).
async fn open_connection(url: &AmqpUrl, role: &str, service: &str) -> io::Result<Connection> {
    let uri = url.expose().parse::<lapin::uri::AMQPUri>().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the broker URL {url} could not be parsed"),
        )
    })?;
    Connection::connect_uri(uri, properties(role, service))
        .await
        .map_err(|e| lapin_error(e, "connecting to the broker"))
}

/// Declares a side's exclusive inbox and starts consuming it (no
/// acknowledgements: the stream is the only reader).
async fn open_inbox(channel: &Channel, name: &str) -> lapin::Result<Consumer> {
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_consume(
            name.into(),
            ShortString::default(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Declares this side's presence queue, becomes its active consumer, and
/// takes the token it publishes there (held unacknowledged).
async fn hold_presence(channel: &Channel, name: &str) -> io::Result<(Consumer, Delivery)> {
    let mut arguments = FieldTable::default();
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    arguments.insert("x-expires".into(), expires());
    let setup = async {
        channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        let consumer = channel
            .basic_consume(
                name.into(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .basic_publish(
                "".into(),
                name.into(),
                BasicPublishOptions::default(),
                &[],
                BasicProperties::default(),
            )
            .await?;
        Ok::<_, lapin::Error>(consumer)
    };
    let mut consumer = setup
        .await
        .map_err(|e| lapin_error(e, "declaring the presence queue"))?;
    let token = tokio::time::timeout(SETUP_TIMEOUT, next(&mut consumer))
        .await
        .map_err(|_| timed_out("the presence token did not arrive"))?
        .ok_or_else(|| cancelled("the presence queue"))?
        .map_err(|e| lapin_error(e, "taking the presence token"))?;
    Ok((consumer, token))
}

/// Consumes the peer's presence queue as a standby consumer: it receives
/// the peer's token only when the peer's channel or connection goes.
async fn watch_peer(channel: &Channel, name: &str) -> io::Result<Consumer> {
    channel
        .basic_consume(
            name.into(),
            ShortString::default(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| lapin_error(e, "watching the peer's presence queue"))
}

async fn next(consumer: &mut Consumer) -> Option<lapin::Result<Delivery>> {
    std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)).await
}

/// Everything a connected link is made of.
struct Parts {
    channel: Channel,
    connection: Arc<Connection>,
    /// A client owns its connection and closes it with the link.
    owns_connection: bool,
    inbox: Consumer,
    presence: (ShortString, Consumer, Delivery),
    peer_inbox: String,
    peer_presence: Consumer,
    /// (seals what this side sends, opens what it receives)
    sealers: Option<(Sealer, Sealer)>,
}

impl Parts {
    fn into_link(self) -> Link {
        let (presence_queue, presence_consumer, token) = self.presence;
        let keeper = tokio::spawn(stream::keep_presence(
            self.channel.clone(),
            presence_queue,
            presence_consumer,
            token,
        ));
        let shared = Arc::new(Shared {
            channel: self.channel,
            connection: self.connection,
            owns_connection: self.owns_connection,
            keeper,
        });
        let (seal, open) = match self.sealers {
            Some((seal, open)) => (Some(seal), Some(open)),
            None => (None, None),
        };
        Link {
            reader: Box::new(Reader::new(
                Arc::clone(&shared),
                self.inbox,
                self.peer_presence,
                open,
            )),
            writer: Box::new(Writer::new(shared, self.peer_inbox, seal)),
            peer_pid: None,
            peer_uid: None,
            unix_socket: None,
            descriptors: None,
            peer_ip: None,
        }
    }
}

/// A lapin error as an I/O error whose kind tells the retry logic what
/// happened: the broker unreachable, a queue missing, access refused, or
/// the connection lost.
fn lapin_error(error: lapin::Error, context: &str) -> io::Error {
    let kind = match error.kind() {
        ErrorKind::IOError(e) | ErrorKind::RuntimeShutdownError(e) => e.kind(),
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(soft) => match soft {
                lapin::protocol::AMQPSoftError::NOTFOUND => io::ErrorKind::NotFound,
                lapin::protocol::AMQPSoftError::ACCESSREFUSED => io::ErrorKind::PermissionDenied,
                _ => io::ErrorKind::ConnectionAborted,
            },
            AMQPErrorKind::Hard(lapin::protocol::AMQPHardError::CONNECTIONFORCED) => {
                io::ErrorKind::ConnectionReset
            }
            AMQPErrorKind::Hard(_) => io::ErrorKind::ConnectionAborted,
        },
        ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidChannel(_)
        | ErrorKind::MissingHeartbeatError => io::ErrorKind::ConnectionAborted,
        ErrorKind::AuthProviderError(_) => io::ErrorKind::PermissionDenied,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, format!("{context}: {error}"))
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

fn cancelled(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        format!("the broker cancelled the consumer of {what}"),
    )
}
