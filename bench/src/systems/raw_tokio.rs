//! `raw_tokio_local`: an interprocess tokio local socket stream (a Unix
//! socket here), the frames of [`super::raw`], one task per connection on
//! the server. The same transport switchboard's `Connector::local()` uses,
//! with nothing on top: the baseline for switchboard's latency targets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use interprocess::local_socket::tokio::{Stream, prelude::*};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::runtime::Runtime;

use super::Flavor;
use super::raw::{self, BUFFER};
use crate::procs::{self, ChildProcess};

/// Server: listens on a fresh socket path, prints it, serves each
/// connection on its own task.
pub fn serve(flavor: Flavor) -> Result<()> {
    let path = procs::socket_path("raw-tokio");
    let _ = std::fs::remove_file(&path);
    let cleanup = path.clone();
    procs::exit_when_stdin_closes(move || {
        let _ = std::fs::remove_file(cleanup);
    });
    flavor.runtime()?.block_on(async {
        let name = path.as_path().to_fs_name::<GenericFilePath>()?;
        let listener = ListenerOptions::new().name(name).create_tokio()?;
        println!("{}", path.display());
        loop {
            let stream = listener.accept().await?;
            tokio::spawn(async move { raw::serve_async(&stream, &stream).await });
        }
    })
}

async fn connect(path: &Path) -> Result<Stream> {
    let name = path.to_fs_name::<GenericFilePath>()?;
    Ok(Stream::connect(name).await?)
}

/// One round trip: writes `frame`, reads the answer through `reader`.
async fn ping(
    stream: &Stream,
    reader: &mut BufReader<&Stream>,
    frame: &[u8],
    body: &mut Vec<u8>,
) -> Result<()> {
    let mut writer = stream;
    writer.write_all(frame).await?;
    if !raw::read_frame_async(reader, body).await? {
        bail!("the server closed the connection");
    }
    Ok(())
}

/// A fresh connection with one echo answered.
async fn connect_and_ping(path: &Path, frame: &[u8], body: &mut Vec<u8>) -> Result<Stream> {
    let stream = connect(path).await?;
    ping(
        &stream,
        &mut BufReader::with_capacity(256, &stream),
        frame,
        body,
    )
    .await?;
    Ok(stream)
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    runtime: Runtime,
    path: PathBuf,
    stream: Stream,
    echo: Vec<u8>,
}

impl Client {
    /// Starts the server and connects.
    pub fn open(flavor: Flavor) -> Result<Client> {
        let mut server = ChildProcess::spawn_self("raw_tokio_local", &flavor.serve_args())?;
        let path = PathBuf::from(server.next_line()?);
        let runtime = flavor.runtime()?;
        let stream = runtime.block_on(connect(&path)).context("connecting")?;
        Ok(Client {
            server,
            runtime,
            path,
            stream,
            echo: raw::echo_frame(),
        })
    }
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let (stream, echo) = (&self.stream, &self.echo);
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            let mut body = Vec::with_capacity(64);
            let mut reader = BufReader::with_capacity(BUFFER, stream);
            for _ in 0..count {
                let start = Instant::now();
                ping(stream, &mut reader, echo, &mut body).await?;
                samples.push(start.elapsed());
            }
            raw::check_tail(&body)?;
            Ok(samples)
        })
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let stream = &self.stream;
        self.runtime.block_on(async {
            let start = Instant::now();
            raw::pipelined_async(stream, stream, count, depth).await?;
            Ok(start.elapsed())
        })
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let frame = raw::bulk_frame(payload);
        let stream = &self.stream;
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            let mut body = Vec::new();
            let mut reader = BufReader::with_capacity(BUFFER, stream);
            for _ in 0..count {
                let start = Instant::now();
                ping(stream, &mut reader, &frame, &mut body).await?;
                samples.push(start.elapsed());
                super::check_bulk(raw::bulk_answer(&body), payload.len())?;
            }
            Ok(samples)
        })
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let (path, echo) = (&self.path, &self.echo);
        self.runtime.block_on(async {
            let mut samples = Vec::with_capacity(count);
            let mut body = Vec::new();
            for _ in 0..count {
                let start = Instant::now();
                let stream = connect_and_ping(path, echo, &mut body).await?;
                samples.push(start.elapsed());
                drop(stream);
            }
            Ok(samples)
        })
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let (path, echo) = (&self.path, &self.echo);
        self.runtime.block_on(async {
            let mut body = Vec::new();
            let mut streams = Vec::with_capacity(count);
            for _ in 0..count {
                streams.push(connect_and_ping(path, echo, &mut body).await?);
            }
            measure()
        })
    }
}
