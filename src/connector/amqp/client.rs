//! The client side: open a broker connection, declare an inbox and a
//! presence queue, ask the service queue for an instance, and connect to
//! the one that answers.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use tokio::time::Instant;

use super::wire::{self, Accept, Connect, Direction, Sealer, VERSION};
use super::{
    ACCEPT_WAIT, Parts, SETUP_TIMEOUT, hold_presence, inbox_name, lapin_error, next,
    open_connection, open_inbox, presence_name, service_queue, timed_out, watch_peer,
};
use crate::connector::{Address, AmqpUrl, Connector, Link, random_bytes};

/// How long a broker connection from an attempt that found no instance
/// waits for the next attempt to reuse it.
const IDLE_KEEP: Duration = Duration::from_secs(2);

/// The broker connection of the last attempt that found no instance:
/// `Client::connect` retries every few milliseconds while no server is up,
/// and each retry then costs a passive declare instead of a new connection.
static IDLE: Mutex<Option<Idle>> = Mutex::new(None);

struct Idle {
    url: AmqpUrl,
    /// The runtime that opened the connection. lapin runs a connection's
    /// heartbeat and its channel bookkeeping as tasks on that runtime, so
    /// the connection stops working when the runtime ends (at once, or a
    /// heartbeat timeout later when the broker drops it): only an attempt
    /// on the same runtime may reuse it.
    runtime: tokio::runtime::Id,
    connection: Arc<Connection>,
    since: Instant,
}

fn take_idle(url: &AmqpUrl) -> Option<Arc<Connection>> {
    let runtime = tokio::runtime::Handle::current().id();
    let mut idle = IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // Whatever is there goes: reused now, or stale.
    idle.take()
        .filter(|idle| {
            idle.url == *url
                && idle.runtime == runtime
                && idle.since.elapsed() < IDLE_KEEP
                && idle.connection.status().connected()
        })
        .map(|idle| idle.connection)
}

fn put_idle(url: &AmqpUrl, connection: Arc<Connection>) {
    let kept = Arc::clone(&connection);
    *IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Idle {
        url: url.clone(),
        runtime: tokio::runtime::Handle::current().id(),
        connection,
        since: Instant::now(),
    });
    // Closed if no attempt takes it soon.
    tokio::spawn(async move {
        tokio::time::sleep(IDLE_KEEP).await;
        let mut idle = IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle
            .as_ref()
            .is_some_and(|idle| Arc::ptr_eq(&idle.connection, &kept))
        {
            *idle = None;
        }
    });
}

/// One connection attempt. "No instance serves the service" is
/// `NotFound`, the broker unreachable `ConnectionRefused` (both retried by
/// `Client::connect` until its deadline); a server that fails to prove the
/// secret is `PermissionDenied`, carrying the `Error::AuthFailed` that
/// `Client::connect` returns.
pub(crate) async fn connect(connector: &Connector) -> io::Result<Link> {
    let Address::Amqp { url, service } = connector.address() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not an AMQP connector",
        ));
    };
    // Only instances holding this connector's secret consume this queue.
    let queue = service_queue(service, connector.secret());
    // A kept connection may have been closed by the broker: then a fresh
    // one.
    let kept = take_idle(url);
    let kept_count = match &kept {
        Some(connection) => instance_count(connection, &queue).await.ok(),
        None => None,
    };
    let (connection, count) = match (kept, kept_count) {
        (Some(connection), Some(count)) => (connection, Ok(count)),
        _ => {
            let connection = Arc::new(open_connection(url, "client", service).await?);
            let count = instance_count(&connection, &queue).await;
            (connection, count)
        }
    };
    match count {
        Ok(0) => {
            put_idle(url, connection);
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                match connector.secret() {
                    Some(_) => format!(
                        "no server instance of {service:?} on the broker holds this \
                         connector's secret (instances with another secret, if any, serve \
                         other clients)"
                    ),
                    None => format!(
                        "no server instance of {service:?} on the broker takes connectors \
                         without a secret"
                    ),
                },
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(e),
    }
    let attempt = tokio::time::timeout(
        SETUP_TIMEOUT + ACCEPT_WAIT,
        handshake(connector, service, Arc::clone(&connection)),
    )
    .await
    .unwrap_or_else(|_| Err(timed_out("setting up the link on the broker took too long")));
    if attempt.is_err() {
        let _ = connection.close(200, "connect failed".into()).await;
    }
    attempt
}

async fn handshake(
    connector: &Connector,
    service: &str,
    connection: Arc<Connection>,
) -> io::Result<Link> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_error(e, "opening a channel"))?;
    let inbox_queue = inbox_name(service, 'c');
    let mut inbox = open_inbox(&channel, &inbox_queue)
        .await
        .map_err(|e| lapin_error(e, "declaring the client's inbox"))?;
    let presence_queue = presence_name(&inbox_queue);
    let (presence_consumer, token) = hold_presence(&channel, &presence_queue).await?;

    let secret = connector.secret();
    let client_nonce = secret.map(|_| random_bytes::<{ wire::NONCE_LEN }>());
    let request = Connect {
        v: VERSION,
        presence: presence_queue.clone(),
        nonce: client_nonce.as_ref().map(wire::encode_nonce),
    };
    let body = serde_json::to_vec(&request).map_err(io::Error::other)?;
    let correlation = {
        let bytes = random_bytes::<8>();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let correlation: ShortString = correlation.into();
    channel
        .basic_publish(
            "".into(),
            service_queue(service, secret).into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default()
                .with_reply_to(inbox_queue.as_str().into())
                .with_correlation_id(correlation.clone())
                .with_content_type("application/json".into())
                .with_type("switchboard.connect".into())
                .with_expiration(ACCEPT_WAIT.as_millis().to_string().into()),
        )
        .await
        .map_err(|e| lapin_error(e, "publishing the connect request"))?;

    // The answer is the first message in the inbox with our correlation id.
    let deadline = Instant::now() + ACCEPT_WAIT;
    let accept: Accept = loop {
        let delivery = tokio::time::timeout_at(deadline, next(&mut inbox))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "no instance of {service:?} answered the connect request within {ACCEPT_WAIT:?}"
                    ),
                )
            })?
            .ok_or_else(|| super::cancelled("the client's inbox"))?
            .map_err(|e| lapin_error(e, "waiting for the server's answer"))?;
        if delivery.properties.correlation_id().as_ref() != Some(&correlation) {
            continue;
        }
        match serde_json::from_slice(&delivery.data) {
            Ok(accept) => break accept,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server's answer to the connect request is not valid JSON",
                ));
            }
        }
    };
    let (peer_inbox, peer_presence, sealers) = check_accept(connector, accept, client_nonce)?;

    let peer_watch = watch_peer(&channel, &peer_presence).await.map_err(|e| {
        // The instance went between answering and now: try again.
        io::Error::new(io::ErrorKind::ConnectionRefused, e)
    })?;
    Ok(Parts {
        channel,
        connection,
        owns_connection: true,
        inbox,
        presence: (presence_queue.into(), presence_consumer, token),
        peer_inbox,
        peer_presence: peer_watch,
        sealers,
    }
    .into_link())
}

/// The service queue's consumer count (0 if it does not exist). A passive
/// declare of a missing queue closes its channel, so it gets its own.
async fn instance_count(connection: &Connection, queue: &str) -> io::Result<u32> {
    let probe: Channel = connection
        .create_channel()
        .await
        .map_err(|e| lapin_error(e, "opening a channel"))?;
    let declared = probe
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        )
        .await;
    match declared {
        Ok(queue) => {
            let _ = probe.close(200, "probe done".into()).await;
            Ok(queue.consumer_count())
        }
        Err(e) => {
            let e = lapin_error(e, "looking for the service queue");
            if e.kind() == io::ErrorKind::NotFound {
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}

type Sealers = Option<(Sealer, Sealer)>;

/// Checks a server's answer: a refusal, the version, and (with a secret)
/// its proof. Returns the server's inbox, presence queue and the sealers.
fn check_accept(
    connector: &Connector,
    accept: Accept,
    client_nonce: Option<[u8; wire::NONCE_LEN]>,
) -> io::Result<(String, String, Sealers)> {
    if let Some(refusal) = accept.error {
        let message = format!("the server refused: {}", refusal.message);
        return Err(if refusal.code == "auth_failed" {
            wire::auth_failed(&message)
        } else {
            io::Error::new(io::ErrorKind::ConnectionRefused, message)
        });
    }
    if accept.v != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the server speaks version {} of the AMQP mapping, this side {VERSION}",
                accept.v
            ),
        ));
    }
    let (Some(inbox), Some(presence)) = (accept.inbox, accept.presence) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the server's answer names no inbox or presence queue",
        ));
    };
    let sealers = match (connector.secret(), client_nonce, accept.nonce, accept.proof) {
        (None, _, None, None) => None,
        (None, ..) => {
            return Err(wire::auth_failed(
                "the server has a secret and this connector none",
            ));
        }
        (Some(secret), Some(client_nonce), Some(server_nonce), Some(proof)) => {
            let server_nonce = wire::decode_nonce(&server_nonce)
                .ok_or_else(|| wire::auth_failed("the server's nonce is malformed"))?;
            wire::check_proof(
                wire::accept_proof(secret, &client_nonce, &server_nonce, &inbox, &presence),
                &proof,
            )?;
            Some((
                Sealer::new(secret, &client_nonce, &server_nonce, Direction::ToServer),
                Sealer::new(secret, &client_nonce, &server_nonce, Direction::ToClient),
            ))
        }
        (Some(_), ..) => {
            return Err(wire::auth_failed(
                "the server sent no proof: it has no secret",
            ));
        }
    };
    Ok((inbox, presence, sealers))
}
