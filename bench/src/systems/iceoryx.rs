//! `iceoryx2_rr`: iceoryx2's request-response, the zero-copy shared-memory
//! middleware (<https://github.com/eclipse-iceoryx/iceoryx2>), as a peer of
//! the ring. The server process creates a request-response service of
//! 64-byte arrays and answers each request with a copy of its payload; the
//! client sends with `send_copy` and polls its pending response, as
//! iceoryx2's own request-response benchmark does. Both sides spin while
//! traffic flows (yielding after about a hundred pauses, as
//! `raw_spin_shm`); told to rest after a batch, the server blocks on an
//! iceoryx2 event until the client's next batch notifies it. Latency
//! scenarios only.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use iceoryx2::port::client::Client as IxClient;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::{event, request_response};

use super::raw_spin::relax;
use super::{SMALL_TEXT, Unsupported};
use crate::procs::{self, ChildProcess};

type Payload = [u8; 64];

/// A request whose first byte is this (never the echo's, which is text)
/// tells the server to rest; it gets no answer.
const REST: u8 = 0xff;

/// Requests one client may have in flight: the harness's pipelining depth.
const IN_FLIGHT: usize = crate::scenarios::DEPTH;

fn service_name(base: &str) -> Result<ServiceName> {
    ServiceName::new(base).with_context(|| format!("iceoryx2 service name {base:?}"))
}

type EchoService = request_response::PortFactory<ipc::Service, Payload, (), Payload, ()>;
type WakeService = event::PortFactory<ipc::Service>;

/// Who makes the services: the server creates them, the client opens them.
enum Side {
    Create,
    Open,
}

/// The echo service and the event that wakes a resting server, under
/// `base`; one definition for both sides, whose settings must agree.
fn services(
    node: &Node<ipc::Service>,
    base: &str,
    side: Side,
) -> Result<(EchoService, WakeService)> {
    let echo = node
        .service_builder(&service_name(&format!("{base}/echo"))?)
        .request_response::<Payload, Payload>()
        .max_active_requests_per_client(IN_FLIGHT)
        .max_loaned_requests(IN_FLIGHT);
    let wake = node
        .service_builder(&service_name(&format!("{base}/wake"))?)
        .event();
    Ok(match side {
        Side::Create => (echo.create()?, wake.create()?),
        Side::Open => (echo.open()?, wake.open()?),
    })
}

/// Server: creates the services, prints their base name, answers requests
/// until the harness closes stdin.
pub fn serve() -> Result<()> {
    let base = format!("sbbench/{}", std::process::id());
    let node = NodeBuilder::new().create::<ipc::Service>()?;
    let (echo, wake) = services(&node, &base, Side::Create)?;
    let server = echo.server_builder().create()?;
    let listener = wake.listener_builder().create()?;
    procs::exit_when_stdin_closes(|| {});
    println!("{base}");
    // Resting until the first batch: the other systems' warm-ups come first.
    listener.blocking_wait_one()?;
    let mut spins = 0;
    loop {
        let Some(request) = server.receive()? else {
            relax(&mut spins);
            continue;
        };
        spins = 0;
        if request.payload()[0] == REST {
            drop(request);
            // Wakes at the client's next notify, or at once if it already
            // came (an event is kept until it is waited for).
            listener.blocking_wait_one()?;
        } else {
            request.send_copy(*request.payload())?;
        }
    }
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    // Fields drop in order: the ports before the node that made them.
    client: IxClient<ipc::Service, Payload, (), Payload, ()>,
    notifier: Notifier<ipc::Service>,
    _node: Node<ipc::Service>,
    request: Payload,
    resting: bool,
}

impl Client {
    /// Starts the server and opens its services.
    pub fn open() -> Result<Client> {
        let mut server = ChildProcess::spawn_self("iceoryx2_rr", &[])?;
        let base = server.next_line()?;
        let node = NodeBuilder::new().create::<ipc::Service>()?;
        let (echo, wake) = services(&node, &base, Side::Open)?;
        let client = echo.client_builder().create()?;
        let notifier = wake.notifier_builder().create()?;
        let request = SMALL_TEXT
            .as_bytes()
            .try_into()
            .context("64-byte request")?;
        Ok(Client {
            server,
            client,
            notifier,
            _node: node,
            request,
            resting: true,
        })
    }

    /// Wakes the server if it rests, before a batch is timed.
    fn resume(&mut self) -> Result<()> {
        if std::mem::take(&mut self.resting) {
            self.notifier.notify()?;
        }
        Ok(())
    }

    fn check(&self, answer: &Payload) -> Result<()> {
        if answer != &self.request {
            bail!("wrong echo answer");
        }
        Ok(())
    }
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rest(&mut self) -> Result<()> {
        let mut rest = [0; 64];
        rest[0] = REST;
        drop(self.client.send_copy(rest)?);
        self.resting = true;
        Ok(())
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.resume()?;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            let pending = self.client.send_copy(self.request)?;
            let mut spins = 0;
            let answer = loop {
                if let Some(answer) = pending.receive()? {
                    break *answer.payload();
                }
                relax(&mut spins);
            };
            samples.push(start.elapsed());
            self.check(&answer)?;
        }
        Ok(samples)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        self.resume()?;
        let depth = depth.clamp(1, IN_FLIGHT);
        let start = Instant::now();
        let mut in_flight = std::collections::VecDeque::with_capacity(depth);
        let (mut sent, mut done) = (0, 0);
        while done < count {
            while sent < count && in_flight.len() < depth {
                in_flight.push_back(self.client.send_copy(self.request)?);
                sent += 1;
            }
            // Answers come in order: wait for the oldest.
            let Some(oldest) = in_flight.pop_front() else {
                break;
            };
            let mut spins = 0;
            let answer = loop {
                if let Some(answer) = oldest.receive()? {
                    break *answer.payload();
                }
                relax(&mut spins);
            };
            self.check(&answer)?;
            done += 1;
        }
        Ok(start.elapsed())
    }

    fn bulk(&mut self, _payload: &[u8], _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("latency scenarios only (fixed 64-byte payloads)".into()).into())
    }

    fn connect(&mut self, _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("latency scenarios only".into()).into())
    }
}
