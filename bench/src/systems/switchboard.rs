//! `switchboard_local` (the default settings: `Connector::local()`, no
//! format chosen), `switchboard_local_json`, `switchboard_local_msgpack`,
//! `switchboard_shm` (the local connector with the shared-memory ring),
//! `switchboard_tcp_json`, `switchboard_amqp` (through the RabbitMQ broker
//! of [`super::amqp_url`]): the library under test, through its public API
//! only. The server serves `echo` (`String -> String`) and `bulk`
//! (`switchboard::Bytes -> u64`, so MessagePack carries the payload as
//! `bin`, by reference on both sides; JSON has no byte type and writes an
//! array of numbers).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use switchboard::{
    Address, Bytes, Client as SbClient, Connector, Format, HandlerError, Router, Server,
};
use tokio::runtime::Runtime;

use super::{Flavor, SMALL_TEXT, check_bulk, check_echo};
use crate::procs::{self, ChildProcess};

/// Which connector and body format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `Connector::local()` as it comes: no format chosen (the handshake
    /// settles MessagePack), every other setting at its default.
    Local,
    /// As `Local`, the bulk payload written straight into shared memory
    /// (`Peer::loan`), outside the timed region as the others' payloads
    /// are made outside it.
    LocalLoan,
    /// `Connector::local()`, JSON bodies.
    LocalJson,
    /// `Connector::local().with_format(Format::MsgPack)`, shared memory off
    /// (`Config::shared_memory = None`): MessagePack over the socket, the
    /// default settings before shared memory.
    LocalMsgPack,
    /// `Connector::local().with_shm_ring(true)`, JSON bodies.
    LocalShm,
    /// `Connector::tcp("127.0.0.1", 0)`, JSON bodies.
    TcpJson,
    /// `Connector::amqp(url, "sbbench-<pid>")`, JSON bodies.
    AmqpJson,
}

impl Variant {
    fn system(self) -> &'static str {
        match self {
            Variant::Local => "switchboard_local",
            Variant::LocalLoan => "switchboard_local_loan",
            Variant::LocalJson => "switchboard_local_json",
            Variant::LocalMsgPack => "switchboard_local_msgpack",
            Variant::LocalShm => "switchboard_shm",
            Variant::TcpJson => "switchboard_tcp_json",
            Variant::AmqpJson => "switchboard_amqp",
        }
    }

    /// The format the client insists on (`None`: not chosen).
    fn format(self) -> Option<Format> {
        match self {
            Variant::Local | Variant::LocalLoan => None,
            Variant::LocalMsgPack => Some(Format::MsgPack),
            Variant::LocalJson | Variant::LocalShm | Variant::TcpJson | Variant::AmqpJson => {
                Some(Format::Json)
            }
        }
    }
}

fn router() -> Router {
    Router::new()
        .route(
            "echo",
            |text: String| async move { Ok::<_, HandlerError>(text) },
        )
        .route("bulk", |data: Bytes| async move {
            Ok::<_, HandlerError>(data.len() as u64)
        })
}

/// The default budgets, without keepalive: the harness drives a client's
/// current-thread runtime only while that system is being measured, so
/// between its batches nobody answers the server's pings, and the server
/// would rightly drop it as dead.
fn config() -> switchboard::Config {
    let mut config = switchboard::Config::default();
    config.keepalive = None;
    config
}

/// The client's config for `variant`.
fn client_config(variant: Variant) -> switchboard::Config {
    let mut config = config();
    if variant == Variant::LocalMsgPack {
        config.shared_memory = None;
    }
    config
}

/// Server: binds the variant's connector and prints its string.
pub fn serve(variant: Variant, flavor: Flavor) -> Result<()> {
    flavor.runtime()?.block_on(async {
        let connector = match variant {
            Variant::TcpJson => Connector::tcp("127.0.0.1", 0)?,
            Variant::AmqpJson => {
                Connector::amqp(super::amqp_url(), format!("sbbench-{}", std::process::id()))?
            }
            Variant::Local | Variant::LocalLoan | Variant::LocalJson | Variant::LocalMsgPack => {
                Connector::local()
            }
            Variant::LocalShm => Connector::local().with_shm_ring(true)?,
        };
        let server = Server::builder(router())
            .config(config())
            .bind(&connector)
            .await?;
        let socket = match server.connector().address() {
            Address::Unix(path) => Some(path.clone()),
            _ => None,
        };
        procs::exit_when_stdin_closes(move || {
            // The process exits without dropping the server: remove its
            // socket and private directory here.
            if let Some(path) = socket {
                let _ = std::fs::remove_file(&path);
                if let Some(dir) = path.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        });
        println!("{}", server.connector().dump_state());
        std::future::pending::<()>().await;
        drop(server);
        Ok(())
    })
}

/// Client session.
pub struct Client {
    variant: Variant,
    server: ChildProcess,
    runtime: Runtime,
    connector: Connector,
    client: SbClient,
}

impl Client {
    /// Starts the server and connects.
    pub fn open(variant: Variant, flavor: Flavor) -> Result<Client> {
        let mut server = ChildProcess::spawn_self(variant.system(), &flavor.serve_args())?;
        let mut connector = Connector::load_state(&server.next_line()?)?;
        if let Some(format) = variant.format() {
            connector = connector.with_format(format);
        }
        let runtime = flavor.runtime()?;
        let client = runtime.block_on(
            SbClient::builder(&connector)
                .config(client_config(variant))
                .connect(),
        )?;
        let sharing = client.peer().shares_memory();
        if variant == Variant::LocalMsgPack && sharing
            || cfg!(target_os = "linux") && variant == Variant::LocalLoan && !sharing
        {
            bail!("shared memory is {sharing} on this connection, not as {variant:?} wants it");
        }
        let expected = variant.format().unwrap_or(Format::MsgPack);
        if client.peer().format() != expected {
            bail!("the handshake settled {:?}", client.peer().format());
        }
        Ok(Client {
            variant,
            server,
            runtime,
            connector,
            client,
        })
    }
}

async fn echo(client: &SbClient) -> Result<String> {
    Ok(client.request("echo", SMALL_TEXT).await?)
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let client = &self.client;
        self.runtime
            .block_on(super::time_rtt(count, || echo(client)))
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let client = &self.client;
        self.runtime
            .block_on(super::time_pipelined(count, depth, || echo(client)))
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let client = &self.client;
        if self.variant == Variant::LocalLoan {
            return self.runtime.block_on(async {
                let mut samples = Vec::with_capacity(count);
                for _ in 0..count {
                    // Written where it will be read: the producer's work,
                    // not the transfer's.
                    let mut loan = client.peer().loan(payload.len());
                    if !loan.in_shared_memory() {
                        bail!("the loan is not in shared memory");
                    }
                    loan.copy_from_slice(payload);
                    let loan = loan.freeze();
                    let start = Instant::now();
                    let answer: u64 = client.request("bulk", &loan).await?;
                    samples.push(start.elapsed());
                    check_bulk(answer, payload.len())?;
                }
                Ok(samples)
            });
        }
        // Held as `Bytes`, the way a caller that sends it often would.
        let payload = Bytes::copy_from_slice(payload);
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let start = Instant::now();
                let answer: u64 = client.request("bulk", &payload).await?;
                samples.push(start.elapsed());
                check_bulk(answer, payload.len())?;
            }
            Ok(samples)
        })
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let connector = &self.connector;
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let start = Instant::now();
                let client = SbClient::builder(connector)
                    .config(config())
                    .connect()
                    .await?;
                let answer = echo(&client).await?;
                samples.push(start.elapsed());
                check_echo(answer.as_bytes())?;
                client.close().await;
            }
            Ok(samples)
        })
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        if self.variant == Variant::AmqpJson {
            return Err(super::Unsupported(
                "each AMQP client has its own broker connection (and lapin I/O thread)".into(),
            )
            .into());
        }
        let connector = &self.connector;
        self.runtime.block_on(async {
            let mut clients = Vec::with_capacity(count);
            for _ in 0..count {
                clients.push(
                    SbClient::builder(connector)
                        .config(config())
                        .connect()
                        .await?,
                );
            }
            let result = measure();
            for client in clients {
                client.close().await;
            }
            result
        })
    }
}
