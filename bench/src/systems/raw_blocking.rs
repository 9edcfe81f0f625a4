//! `raw_blocking_uds`: `std::os::unix::net::UnixStream`, blocking threads
//! (one per connection on the server), the frames of [`super::raw`].

use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::raw::{self, BUFFER};
use crate::procs::{self, ChildProcess};

/// Server: listens on a fresh socket path, prints it, serves each
/// connection on its own thread.
pub fn serve() -> Result<()> {
    let path = procs::socket_path("raw-blocking");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).context("binding the Unix socket")?;
    let cleanup = path.clone();
    procs::exit_when_stdin_closes(move || {
        let _ = std::fs::remove_file(cleanup);
    });
    println!("{}", path.display());
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || raw::serve_blocking(stream));
    }
    Ok(())
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    path: PathBuf,
    stream: UnixStream,
    echo: Vec<u8>,
}

impl Client {
    /// Starts the server and connects.
    pub fn open() -> Result<Client> {
        let mut server = ChildProcess::spawn_self("raw_blocking_uds", &[])?;
        let path = PathBuf::from(server.next_line()?);
        let stream = UnixStream::connect(&path).context("connecting")?;
        Ok(Client {
            server,
            path,
            stream,
            echo: raw::echo_frame(),
        })
    }
}

/// One round trip: writes `frame` to `stream`, reads the answer through
/// `reader` (a buffered reader over the same stream).
fn ping(
    stream: &UnixStream,
    reader: &mut BufReader<&UnixStream>,
    frame: &[u8],
    body: &mut Vec<u8>,
) -> Result<()> {
    let mut writer = stream;
    writer.write_all(frame)?;
    if !raw::read_frame(reader, body)? {
        bail!("the server closed the connection");
    }
    Ok(())
}

/// A fresh connection with one echo answered.
fn connect_and_ping(path: &Path, frame: &[u8], body: &mut Vec<u8>) -> Result<UnixStream> {
    let stream = UnixStream::connect(path)?;
    ping(
        &stream,
        &mut BufReader::with_capacity(256, &stream),
        frame,
        body,
    )?;
    Ok(stream)
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        let mut body = Vec::with_capacity(64);
        let mut reader = BufReader::with_capacity(BUFFER, &self.stream);
        for _ in 0..count {
            let start = Instant::now();
            ping(&self.stream, &mut reader, &self.echo, &mut body)?;
            samples.push(start.elapsed());
        }
        raw::check_tail(&body)?;
        Ok(samples)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let start = Instant::now();
        raw::pipelined_blocking(&self.stream, count, depth)?;
        Ok(start.elapsed())
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let frame = raw::bulk_frame(payload);
        let mut samples = Vec::with_capacity(count);
        let mut body = Vec::new();
        let mut reader = BufReader::with_capacity(BUFFER, &self.stream);
        for _ in 0..count {
            let start = Instant::now();
            ping(&self.stream, &mut reader, &frame, &mut body)?;
            samples.push(start.elapsed());
            super::check_bulk(raw::bulk_answer(&body), payload.len())?;
        }
        Ok(samples)
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        let mut body = Vec::new();
        for _ in 0..count {
            let start = Instant::now();
            let stream = connect_and_ping(&self.path, &self.echo, &mut body)?;
            samples.push(start.elapsed());
            drop(stream);
        }
        Ok(samples)
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let mut body = Vec::new();
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            streams.push(connect_and_ping(&self.path, &self.echo, &mut body)?);
        }
        measure()
    }
}
