//! A server instance: consumes the service queue (shared with every other
//! instance of the service that holds the same secret, so new clients are
//! spread over them; instances with another secret have another queue) and
//! answers each connect request with a link of its own. If the broker
//! connection is lost it reconnects, with backoff, on the next accept.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, Consumer};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::wire::{self, Accept, Connect, Direction, Refusal, Sealer, VERSION};
use super::{
    Parts, SETUP_TIMEOUT, expires, hold_presence, inbox_name, lapin_error, next, open_connection,
    open_inbox, presence_name, service_queue, watch_peer,
};
use crate::connector::{Address, AmqpUrl, Link, Secret, random_bytes};
use crate::error::{Error, Result};

/// Connect requests taken from the service queue ahead of answering.
const PREFETCH: u16 = 32;
/// Longest wait between attempts to reach a broker that went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// A bound server instance.
pub(crate) struct Listener {
    url: AmqpUrl,
    service: String,
    secret: Option<Secret>,
    state: Mutex<State>,
}

struct State {
    bound: Option<Bound>,
    retry_at: Instant,
    delay: Duration,
}

/// A live broker connection consuming the service queue.
struct Bound {
    connection: Arc<Connection>,
    _channel: Channel,
    requests: Consumer,
}

impl Listener {
    /// Connects to the broker and starts consuming the service queue.
    pub(crate) async fn bind(
        url: &AmqpUrl,
        service: &str,
        secret: Option<Secret>,
    ) -> Result<Listener> {
        let bound = Bound::open(url, service, secret.as_ref())
            .await
            .map_err(|source| Error::Bind {
                address: Address::Amqp {
                    url: url.clone(),
                    service: service.to_owned(),
                }
                .to_string(),
                source,
            })?;
        Ok(Listener {
            url: url.clone(),
            service: service.to_owned(),
            secret,
            state: Mutex::new(State {
                bound: Some(bound),
                retry_at: Instant::now(),
                delay: Duration::from_millis(100),
            }),
        })
    }

    /// The next client. A connect request that cannot be answered (the
    /// client went, a malformed request) is skipped; an error means the
    /// broker connection is lost (the next call reconnects).
    pub(crate) async fn accept(&self) -> io::Result<Link> {
        let mut state = self.state.lock().await;
        loop {
            if state.bound.is_none() {
                tokio::time::sleep_until(state.retry_at).await;
                match Bound::open(&self.url, &self.service, self.secret.as_ref()).await {
                    Ok(bound) => {
                        state.bound = Some(bound);
                        state.delay = Duration::from_millis(100);
                    }
                    Err(e) => {
                        state.retry_at = Instant::now() + state.delay;
                        state.delay = (state.delay * 2).min(MAX_RECONNECT_DELAY);
                        return Err(e);
                    }
                }
            }
            let Some(bound) = state.bound.as_mut() else {
                continue;
            };
            let request = match next(&mut bound.requests).await {
                Some(Ok(request)) => request,
                Some(Err(e)) => {
                    state.bound = None;
                    state.retry_at = Instant::now();
                    return Err(lapin_error(e, "the broker connection was lost"));
                }
                None => {
                    state.bound = None;
                    state.retry_at = Instant::now();
                    return Err(super::cancelled("the service queue"));
                }
            };
            let connection = Arc::clone(&bound.connection);
            let answered =
                tokio::time::timeout(SETUP_TIMEOUT, self.answer(connection, &request)).await;
            let _ = request.acker.ack(BasicAckOptions::default()).await;
            if let Ok(Ok(Some(link))) = answered {
                return Ok(link);
            }
            // Nothing to connect (refused, malformed, or the client went):
            // serve the next request.
        }
    }

    /// Answers one connect request: a link, or a refusal sent back
    /// (`None`).
    async fn answer(
        &self,
        connection: Arc<Connection>,
        request: &Delivery,
    ) -> io::Result<Option<Link>> {
        let (Some(reply_to), Some(correlation)) = (
            request.properties.reply_to().clone(),
            request.properties.correlation_id().clone(),
        ) else {
            return Ok(None);
        };
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| lapin_error(e, "opening a channel"))?;
        let reply = |accept: Accept| {
            let channel = channel.clone();
            let reply_to = reply_to.clone();
            let correlation = correlation.clone();
            async move {
                let body = serde_json::to_vec(&accept).map_err(io::Error::other)?;
                channel
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default()
                            .with_correlation_id(correlation)
                            .with_content_type("application/json".into())
                            .with_type("switchboard.accept".into()),
                    )
                    .await
                    .map_err(|e| lapin_error(e, "answering the connect request"))?;
                Ok::<_, io::Error>(())
            }
        };
        let refuse = |code: &str, message: &str| Accept {
            v: VERSION,
            error: Some(Refusal {
                code: code.into(),
                message: message.into(),
            }),
            ..Accept::default()
        };

        let Ok(connect) = serde_json::from_slice::<Connect>(&request.data) else {
            reply(refuse("bad_hello", "the connect request is not valid")).await?;
            let _ = channel.close(200, "refused".into()).await;
            return Ok(None);
        };
        if connect.v != VERSION {
            reply(refuse(
                "version_mismatch",
                &format!("this server speaks version {VERSION} of the AMQP mapping"),
            ))
            .await?;
            let _ = channel.close(200, "refused".into()).await;
            return Ok(None);
        }
        let client_nonce = match (&self.secret, &connect.nonce) {
            (None, None) => None,
            (Some(_), Some(nonce)) => match wire::decode_nonce(nonce) {
                Some(nonce) => Some(nonce),
                None => {
                    reply(refuse("bad_hello", "the nonce is malformed")).await?;
                    let _ = channel.close(200, "refused".into()).await;
                    return Ok(None);
                }
            },
            (Some(_), None) => {
                reply(refuse(
                    "auth_failed",
                    "this server requires a secret and the client has none",
                ))
                .await?;
                let _ = channel.close(200, "refused".into()).await;
                return Ok(None);
            }
            (None, Some(_)) => {
                reply(refuse(
                    "auth_failed",
                    "this server has no secret and the client has one",
                ))
                .await?;
                let _ = channel.close(200, "refused".into()).await;
                return Ok(None);
            }
        };

        let inbox_queue = inbox_name(&self.service, 's');
        let inbox = open_inbox(&channel, &inbox_queue)
            .await
            .map_err(|e| lapin_error(e, "declaring the instance's inbox"))?;
        let presence_queue = presence_name(&inbox_queue);
        let (presence_consumer, token) = hold_presence(&channel, &presence_queue).await?;
        // A missing presence queue means the client is already gone.
        let peer_presence = watch_peer(&channel, &connect.presence).await?;

        let mut accept = Accept {
            v: VERSION,
            inbox: Some(inbox_queue.clone()),
            presence: Some(presence_queue.clone()),
            ..Accept::default()
        };
        let sealers = match (&self.secret, client_nonce) {
            (Some(secret), Some(client_nonce)) => {
                let server_nonce = random_bytes::<{ wire::NONCE_LEN }>();
                accept.nonce = Some(wire::encode_nonce(&server_nonce));
                accept.proof = Some(wire::encode_proof(wire::accept_proof(
                    secret,
                    &client_nonce,
                    &server_nonce,
                    &inbox_queue,
                    &presence_queue,
                )));
                Some((
                    Sealer::new(secret, &client_nonce, &server_nonce, Direction::ToClient),
                    Sealer::new(secret, &client_nonce, &server_nonce, Direction::ToServer),
                ))
            }
            _ => None,
        };
        reply(accept).await?;
        Ok(Some(
            Parts {
                channel,
                connection,
                owns_connection: false,
                inbox,
                presence: (presence_queue.into(), presence_consumer, token),
                peer_inbox: reply_to.to_string(),
                peer_presence,
                sealers,
            }
            .into_link(),
        ))
    }
}

impl Bound {
    async fn open(url: &AmqpUrl, service: &str, secret: Option<&Secret>) -> io::Result<Bound> {
        let connection = Arc::new(open_connection(url, "server", service).await?);
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| lapin_error(e, "opening a channel"))?;
        let queue: ShortString = service_queue(service, secret).into();
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), expires());
        channel
            .queue_declare(
                queue.clone(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|e| lapin_error(e, "declaring the service queue"))?;
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| lapin_error(e, "setting the prefetch"))?;
        let requests = channel
            .basic_consume(
                queue,
                ShortString::default(),
                lapin::options::BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| lapin_error(e, "consuming the service queue"))?;
        Ok(Bound {
            connection,
            _channel: channel,
            requests,
        })
    }
}
