//! `switchboard_blocking`: `switchboard::blocking::{Client, Server}` on
//! `Connector::local()`, JSON bodies, the same `echo` and `bulk` routes as
//! [`super::switchboard`]. No runtime in the harness's code: the library's
//! own background runtime does the I/O in both processes, and the caller's
//! thread blocks in each call, as in `raw_blocking_uds`.

use std::time::{Duration, Instant};

use anyhow::Result;
use switchboard::blocking::{Client as SbClient, Server};
use switchboard::{Address, Bytes, Connector, HandlerError, Router};

use super::{SMALL_TEXT, check_bulk, check_echo};
use crate::procs::{self, ChildProcess};

const SYSTEM: &str = "switchboard_blocking";

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

/// Server: binds a local connector, prints its string, serves until the
/// harness closes stdin.
pub fn serve() -> Result<()> {
    let server = Server::bind(&Connector::local(), router())?;
    let socket = match server.connector().address() {
        Address::Unix(path) => Some(path.clone()),
        _ => None,
    };
    procs::exit_when_stdin_closes(move || {
        // The process exits without dropping the server: remove its socket
        // and private directory here.
        if let Some(path) = socket {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    });
    println!("{}", server.connector().dump_state());
    loop {
        std::thread::park();
    }
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    connector: Connector,
    client: SbClient,
}

impl Client {
    /// Starts the server and connects.
    pub fn open() -> Result<Client> {
        let mut server = ChildProcess::spawn_self(SYSTEM, &[])?;
        let connector = Connector::load_state(&server.next_line()?)?;
        let client = SbClient::connect(&connector)?;
        Ok(Client {
            server,
            connector,
            client,
        })
    }
}

fn echo(client: &SbClient) -> Result<String> {
    Ok(client.request("echo", SMALL_TEXT)?)
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        let mut answer = String::new();
        for _ in 0..count {
            let start = Instant::now();
            answer = echo(&self.client)?;
            samples.push(start.elapsed());
        }
        check_echo(answer.as_bytes())?;
        Ok(samples)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        // A blocking program keeps `depth` requests in flight with `depth`
        // threads sharing the client.
        let start = Instant::now();
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..depth)
                .map(|worker| {
                    let client = &self.client;
                    let share = count / depth + usize::from(worker < count % depth);
                    scope.spawn(move || -> Result<()> {
                        for _ in 0..share {
                            check_echo(echo(client)?.as_bytes())?;
                        }
                        Ok(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| anyhow::bail!("a worker panicked"))
            })
        })?;
        Ok(start.elapsed())
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let payload = Bytes::copy_from_slice(payload);
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            let answer: u64 = self.client.request("bulk", &payload)?;
            samples.push(start.elapsed());
            check_bulk(answer, payload.len())?;
        }
        Ok(samples)
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            let client = SbClient::connect(&self.connector)?;
            let answer = echo(&client)?;
            samples.push(start.elapsed());
            check_echo(answer.as_bytes())?;
            client.close();
        }
        Ok(samples)
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let clients = (0..count)
            .map(|_| SbClient::connect(&self.connector))
            .collect::<switchboard::Result<Vec<_>>>()?;
        let result = measure();
        for client in clients {
            client.close();
        }
        result
    }
}
