//! `ipc_channel`: servo's ipc-channel. A connection is bootstrapped with an
//! `IpcOneShotServer`: the server process prints the one-shot server's name
//! (a fresh one after every accept, so each connection gets its own), the
//! client connects an `IpcSender<Request>` to it and sends
//! `Hello(IpcSender<Response>)`; the server answers `Welcome`, then serves
//! requests on a thread per connection. Messages are serde enums (postcard
//! inside ipc-channel); the bulk payload is a `serde_bytes::ByteBuf`, or
//! for `ipc_channel_shm` an `IpcSharedMemory` (a fresh shared region per
//! payload, made from the bytes inside the timed region: its API's way).

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender, IpcSharedMemory};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::{SMALL_TEXT, check_bulk, check_echo};
use crate::procs::{self, ChildProcess};

#[derive(Serialize, Deserialize)]
enum Request {
    Hello(IpcSender<Response>),
    Echo(String),
    Bulk(ByteBuf),
    BulkShm(IpcSharedMemory),
}

#[derive(Serialize, Deserialize)]
enum Response {
    Welcome,
    Echo(String),
    Bulk(u64),
}

/// Server: prints a one-shot server name, accepts one connection on it,
/// hands that to a thread, and repeats.
pub fn serve() -> Result<()> {
    procs::exit_when_stdin_closes(|| {});
    loop {
        let (server, name) = IpcOneShotServer::<Request>::new()?;
        println!("{name}");
        let (requests, first) = server.accept()?;
        thread::spawn(move || serve_connection(requests, first));
    }
}

fn serve_connection(requests: IpcReceiver<Request>, first: Request) -> Result<()> {
    let Request::Hello(reply) = first else {
        bail!("the first message was not Hello");
    };
    reply.send(Response::Welcome)?;
    while let Ok(request) = requests.recv() {
        match request {
            Request::Echo(text) => reply.send(Response::Echo(text))?,
            Request::Bulk(data) => reply.send(Response::Bulk(data.len() as u64))?,
            Request::BulkShm(data) => reply.send(Response::Bulk(data.len() as u64))?,
            Request::Hello(_) => bail!("Hello twice"),
        }
    }
    Ok(())
}

/// One client connection: requests go out on `tx`, answers come on `rx`.
struct Connection {
    tx: IpcSender<Request>,
    rx: IpcReceiver<Response>,
}

impl Connection {
    /// Connects to the one-shot server `name` and finishes the hello.
    fn open(name: String) -> Result<Connection> {
        let tx = IpcSender::connect(name)?;
        let (reply, rx) = ipc::channel()?;
        tx.send(Request::Hello(reply))?;
        match rx.recv()? {
            Response::Welcome => Ok(Connection { tx, rx }),
            _ => bail!("expected Welcome"),
        }
    }

    fn echo(&self) -> Result<()> {
        self.tx.send(Request::Echo(SMALL_TEXT.to_owned()))?;
        self.echo_answer()
    }

    fn echo_answer(&self) -> Result<()> {
        match self.rx.recv()? {
            Response::Echo(text) => check_echo(text.as_bytes()),
            _ => bail!("expected an echo answer"),
        }
    }
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    conn: Connection,
    /// Bulk payloads as `IpcSharedMemory`.
    shared: bool,
}

impl Client {
    /// Starts the server and connects; `shared`: bulk payloads go as
    /// `IpcSharedMemory`.
    pub fn open(shared: bool) -> Result<Client> {
        let mut server = ChildProcess::spawn_self("ipc_channel", &[])?;
        let conn = Connection::open(server.next_line()?)?;
        Ok(Client {
            server,
            conn,
            shared,
        })
    }
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            self.conn.echo()?;
            samples.push(start.elapsed());
        }
        Ok(samples)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let start = Instant::now();
        let (mut sent, mut done) = (0, 0);
        while done < count {
            while sent < count && sent - done < depth {
                self.conn.tx.send(Request::Echo(SMALL_TEXT.to_owned()))?;
                sent += 1;
            }
            self.conn.echo_answer()?;
            done += 1;
        }
        Ok(start.elapsed())
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            if self.shared {
                let start = Instant::now();
                let request = Request::BulkShm(IpcSharedMemory::from_bytes(payload));
                self.conn.tx.send(request)?;
                let answer = self.conn.rx.recv()?;
                samples.push(start.elapsed());
                match answer {
                    Response::Bulk(n) => check_bulk(n, payload.len())?,
                    _ => bail!("expected a bulk answer"),
                }
                continue;
            }
            // The API takes the buffer by value: copy it before the clock starts.
            let request = Request::Bulk(ByteBuf::from(payload.to_vec()));
            let start = Instant::now();
            self.conn.tx.send(request)?;
            let answer = self.conn.rx.recv()?;
            samples.push(start.elapsed());
            match answer {
                Response::Bulk(n) => check_bulk(n, payload.len())?,
                _ => bail!("expected a bulk answer"),
            }
        }
        Ok(samples)
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            // The server made this one-shot server right after the previous
            // accept; reading its name is not part of connecting.
            let name = self.server.next_line()?;
            let start = Instant::now();
            let conn = Connection::open(name)?;
            conn.echo()?;
            samples.push(start.elapsed());
        }
        Ok(samples)
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let conn = Connection::open(self.server.next_line()?)?;
            conn.echo()?;
            conns.push(conn);
        }
        measure()
    }
}
