//! `tarpc_uds`: tarpc's `serde_transport` over `tokio::net::UnixStream`,
//! length-delimited frames (limit raised to 64 MiB for the bulk payload) and
//! the bincode codec; one `BaseChannel` per connection, each request
//! executed on a spawned task (tarpc's usual server loop).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use futures::{Future, StreamExt};
use serde_bytes::ByteBuf;
use tarpc::context::{self, Context};
use tarpc::serde_transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::length_delimited::LengthDelimitedCodec;
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;

use super::{Flavor, SMALL_TEXT, check_bulk, check_echo};
use crate::procs::{self, ChildProcess};

/// Largest frame either side accepts (tokio-util's default is 8 MiB).
const MAX_FRAME: usize = 64 * 1024 * 1024;

#[tarpc::service]
trait Bench {
    /// Answers with the same text.
    async fn echo(text: String) -> String;
    /// Answers with the payload's length.
    async fn bulk(data: ByteBuf) -> u64;
}

#[derive(Clone)]
struct BenchServer;

impl Bench for BenchServer {
    async fn echo(self, _: Context, text: String) -> String {
        text
    }

    async fn bulk(self, _: Context, data: ByteBuf) -> u64 {
        data.len() as u64
    }
}

fn codec() -> tarpc::tokio_util::codec::length_delimited::Builder {
    let mut builder = LengthDelimitedCodec::builder();
    builder.max_frame_length(MAX_FRAME);
    builder
}

async fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(future);
}

/// Server: listens on a fresh socket path, prints it, serves each
/// connection with its own channel.
pub fn serve(flavor: Flavor) -> Result<()> {
    let path = procs::socket_path("tarpc");
    let _ = std::fs::remove_file(&path);
    let cleanup = path.clone();
    procs::exit_when_stdin_closes(move || {
        let _ = std::fs::remove_file(cleanup);
    });
    flavor.runtime()?.block_on(async {
        let listener = UnixListener::bind(&path)?;
        println!("{}", path.display());
        loop {
            let (stream, _) = listener.accept().await?;
            let transport = serde_transport::new(codec().new_framed(stream), Bincode::default());
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(channel.execute(BenchServer.serve()).for_each(spawn));
        }
    })
}

async fn connect(path: &Path) -> Result<BenchClient> {
    let stream = UnixStream::connect(path).await?;
    let transport = serde_transport::new(codec().new_framed(stream), Bincode::default());
    Ok(BenchClient::new(Default::default(), transport).spawn())
}

async fn echo(client: &BenchClient) -> Result<String> {
    Ok(client
        .echo(context::current(), SMALL_TEXT.to_owned())
        .await?)
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    runtime: Runtime,
    path: PathBuf,
    client: BenchClient,
}

impl Client {
    /// Starts the server and connects.
    pub fn open(flavor: Flavor) -> Result<Client> {
        let mut server = ChildProcess::spawn_self("tarpc_uds", &flavor.serve_args())?;
        let path = PathBuf::from(server.next_line()?);
        let runtime = flavor.runtime()?;
        let client = runtime.block_on(connect(&path)).context("connecting")?;
        Ok(Client {
            server,
            runtime,
            path,
            client,
        })
    }
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
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                // The API takes the buffer by value: copy it before the clock starts.
                let data = ByteBuf::from(payload.to_vec());
                let start = Instant::now();
                let answer = client.bulk(context::current(), data).await?;
                samples.push(start.elapsed());
                check_bulk(answer, payload.len())?;
            }
            Ok(samples)
        })
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let path = &self.path;
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let start = Instant::now();
                let client = connect(path).await?;
                let answer = echo(&client).await?;
                samples.push(start.elapsed());
                check_echo(answer.as_bytes())?;
            }
            Ok(samples)
        })
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let path = &self.path;
        self.runtime.block_on(async {
            let mut clients = Vec::with_capacity(count);
            for _ in 0..count {
                let client = connect(path).await?;
                echo(&client).await?;
                clients.push(client);
            }
            measure()
        })
    }
}
