//! `raw_poll_uds`: the Unix-socket floor. Both processes busy-poll a
//! `std::os::unix::net::UnixStream` with non-blocking reads (no wake-up of a
//! sleeping thread anywhere), the frames of [`super::raw`]. Nothing a
//! library on a socket can beat: what is left is the system calls.
//!
//! The server spins only while traffic flows: told to rest (an empty
//! frame, after each batch), or after [`IDLE_AFTER`] without a request, it
//! blocks in `poll(2)`, so it does not steal a core from the other
//! systems' batches.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Unsupported;
use super::raw::{self, BUFFER};
use crate::procs::{self, ChildProcess};

/// How long the server keeps spinning after the last request.
const IDLE_AFTER: Duration = Duration::from_millis(20);

/// Server: listens on a fresh socket path, prints it, serves each
/// connection on its own spinning thread.
pub fn serve() -> Result<()> {
    let path = procs::socket_path("raw-poll");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).context("binding the Unix socket")?;
    let cleanup = path.clone();
    procs::exit_when_stdin_closes(move || {
        let _ = std::fs::remove_file(cleanup);
    });
    println!("{}", path.display());
    for stream in listener.incoming() {
        let stream = stream?;
        thread::spawn(move || serve_polling(stream));
    }
    Ok(())
}

fn serve_polling(stream: UnixStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut reader = SpinReader::new(&stream);
    let mut out = Vec::with_capacity(BUFFER);
    loop {
        match reader.next_frame(Some(IDLE_AFTER))? {
            None => return Ok(()),
            Some([]) => {
                if !reader.has_frame() {
                    wait_readable(&stream)?;
                }
                continue;
            }
            Some(body) => raw::answer(body, &mut out),
        }
        // Answer a burst with one write: only when nothing else is buffered.
        if !reader.has_frame() {
            write_spinning(&stream, &out)?;
        } else {
            let mut more = out.clone();
            while reader.has_frame() {
                let Some(body) = reader.next_frame(None)? else {
                    return Ok(());
                };
                raw::answer(body, &mut out);
                more.extend_from_slice(&out);
            }
            write_spinning(&stream, &more)?;
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket, spinning while it is full.
fn write_spinning(mut stream: &UnixStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Frames out of a non-blocking socket, read by spinning on `read(2)`.
struct SpinReader<'a> {
    stream: &'a UnixStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<'a> SpinReader<'a> {
    fn new(stream: &'a UnixStream) -> Self {
        Self {
            stream,
            buf: vec![0; BUFFER],
            start: 0,
            end: 0,
        }
    }

    fn has_frame(&self) -> bool {
        raw::has_frame(&self.buf[self.start..self.end])
    }

    /// The next frame's body; `None` at end of stream. With `park_after`,
    /// blocks in `poll(2)` once nothing has come for that long.
    fn next_frame(&mut self, park_after: Option<Duration>) -> io::Result<Option<&[u8]>> {
        let mut last = Instant::now();
        let mut misses = 0;
        while !self.has_frame() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let mut stream = self.stream;
            match stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    self.end += n;
                    last = Instant::now();
                    misses = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => match park_after {
                    Some(idle) if last.elapsed() > idle => wait_readable(self.stream)?,
                    // A read(2) is about as long as the spin-shm floor's
                    // whole pause budget: yield after a few.
                    _ => {
                        misses += 1;
                        if misses > 20 {
                            std::thread::yield_now();
                        }
                    }
                },
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().unwrap());
        let body = self.start + 4..self.start + 4 + len as usize;
        self.start = body.end;
        Ok(Some(&self.buf[body]))
    }
}

/// Blocks until the socket is readable (or closed).
fn wait_readable(stream: &UnixStream) -> io::Result<()> {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    if unsafe { libc::poll(&mut fd, 1, -1) } < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    stream: UnixStream,
    echo: Vec<u8>,
}

impl Client {
    /// Starts the server and connects.
    pub fn open() -> Result<Client> {
        let mut server = ChildProcess::spawn_self("raw_poll_uds", &[])?;
        let path = server.next_line()?;
        let stream = UnixStream::connect(&path).context("connecting")?;
        stream.set_nonblocking(true)?;
        Ok(Client {
            server,
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
        let mut samples = Vec::with_capacity(count);
        let mut reader = SpinReader::new(&self.stream);
        let mut last = Vec::new();
        for _ in 0..count {
            let start = Instant::now();
            write_spinning(&self.stream, &self.echo)?;
            let Some(body) = reader.next_frame(None)? else {
                bail!("the server closed the connection");
            };
            samples.push(start.elapsed());
            last.clear();
            last.extend_from_slice(body);
        }
        raw::check_tail(&last)?;
        Ok(samples)
    }

    fn rest(&mut self) -> Result<()> {
        write_spinning(&self.stream, &0u32.to_le_bytes())?;
        Ok(())
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let start = Instant::now();
        let window = self.echo.repeat(depth);
        let mut reader = SpinReader::new(&self.stream);
        let (mut sent, mut done) = (0, 0);
        let mut last = Vec::new();
        while done < count {
            let refill = (depth - (sent - done)).min(count - sent);
            if refill > 0 {
                write_spinning(&self.stream, &window[..refill * self.echo.len()])?;
                sent += refill;
            }
            loop {
                let Some(body) = reader.next_frame(None)? else {
                    bail!("the server closed the connection");
                };
                last.clear();
                last.extend_from_slice(body);
                done += 1;
                if done == sent || !reader.has_frame() {
                    break;
                }
            }
        }
        raw::check_tail(&last)?;
        Ok(start.elapsed())
    }

    fn bulk(&mut self, _payload: &[u8], _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("a latency floor: rtt and pipelined only".into()).into())
    }

    fn connect(&mut self, _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("a latency floor: rtt and pipelined only".into()).into())
    }
}
