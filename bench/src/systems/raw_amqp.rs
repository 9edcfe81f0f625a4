//! `raw_amqp`: the floor for anything over a RabbitMQ broker. lapin alone:
//! the client publishes the request to the server's queue with
//! `reply_to = amq.rabbitmq.reply-to` (direct reply-to) and a correlation
//! id; the server consumes (no acks) and publishes the same body back to
//! the reply address. Nothing else: no framing, no authentication, no
//! liveness watching.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use super::{Flavor, SMALL_TEXT, Unsupported, amqp_url};
use crate::procs::{self, ChildProcess};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

async fn open() -> Result<(Connection, Channel)> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .context("connecting to the broker")?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// Server: declares `sbbench-raw-<pid>` (exclusive), prints its name,
/// echoes every message to its `reply_to`.
pub fn serve(flavor: Flavor) -> Result<()> {
    procs::exit_when_stdin_closes(|| {});
    flavor.runtime()?.block_on(async {
        let (_connection, channel) = open().await?;
        let queue = format!("sbbench-raw-{}", std::process::id());
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::exclusive().auto_delete(),
                FieldTable::default(),
            )
            .await?;
        let mut requests = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::default(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        println!("{queue}");
        while let Some(request) = requests.next().await {
            let request = request?;
            let Some(reply_to) = request.properties.reply_to().clone() else {
                continue;
            };
            let mut properties = BasicProperties::default();
            if let Some(id) = request.properties.correlation_id().clone() {
                properties = properties.with_correlation_id(id);
            }
            channel
                .basic_publish(
                    "".into(),
                    reply_to,
                    BasicPublishOptions::default(),
                    &request.data,
                    properties,
                )
                .await?;
        }
        Ok(())
    })
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// Client session: one channel, a direct reply-to consumer feeding the
/// waiting requests by correlation id.
pub struct Client {
    server: ChildProcess,
    runtime: Runtime,
    _connection: Connection,
    channel: Channel,
    queue: ShortString,
    waiters: Waiters,
    next: AtomicU64,
}

impl Client {
    /// Starts the server and connects.
    pub fn open(flavor: Flavor) -> Result<Client> {
        let mut server = ChildProcess::spawn_self("raw_amqp", &flavor.serve_args())?;
        let queue: ShortString = server.next_line()?.trim().to_owned().into();
        let runtime = flavor.runtime()?;
        let waiters: Waiters = Arc::default();
        let (connection, channel) = runtime.block_on(async {
            let (connection, channel) = open().await?;
            let mut replies = channel
                .basic_consume(
                    REPLY_TO.into(),
                    ShortString::default(),
                    BasicConsumeOptions {
                        no_ack: true,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            let waiters = Arc::clone(&waiters);
            tokio::spawn(async move {
                while let Some(Ok(reply)) = replies.next().await {
                    let id = reply
                        .properties
                        .correlation_id()
                        .as_ref()
                        .and_then(|id| id.as_str().parse::<u64>().ok());
                    let waiter = id.and_then(|id| {
                        waiters
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id)
                    });
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(reply.data);
                    }
                }
            });
            Ok::<_, anyhow::Error>((connection, channel))
        })?;
        Ok(Client {
            server,
            runtime,
            _connection: connection,
            channel,
            queue,
            waiters,
            next: AtomicU64::new(0),
        })
    }
}

/// One request: publish, wait for the reply with our correlation id.
async fn echo(
    channel: &Channel,
    queue: &ShortString,
    waiters: &Waiters,
    next: &AtomicU64,
) -> Result<String> {
    let id = next.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = oneshot::channel();
    waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, tx);
    channel
        .basic_publish(
            "".into(),
            queue.clone(),
            BasicPublishOptions::default(),
            SMALL_TEXT.as_bytes(),
            BasicProperties::default()
                .with_reply_to(REPLY_TO.into())
                .with_correlation_id(id.to_string().into()),
        )
        .await?;
    let reply = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .map_err(|_| anyhow!("no reply within 30 s"))??;
    String::from_utf8(reply).map_err(|_| anyhow!("the reply is not text"))
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let (channel, queue, waiters, next) =
            (&self.channel, &self.queue, &self.waiters, &self.next);
        self.runtime.block_on(super::time_rtt(count, || {
            echo(channel, queue, waiters, next)
        }))
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let (channel, queue, waiters, next) =
            (&self.channel, &self.queue, &self.waiters, &self.next);
        let took = self
            .runtime
            .block_on(super::time_pipelined(count, depth, || {
                echo(channel, queue, waiters, next)
            }))?;
        Ok(took)
    }

    fn bulk(&mut self, _payload: &[u8], _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("raw_amqp is the latency floor only".into()).into())
    }

    fn connect(&mut self, _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("raw_amqp is the latency floor only".into()).into())
    }
}
