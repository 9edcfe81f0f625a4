//! The systems under test. Each has a server side (run in a child process
//! by `switchboard-bench serve SYSTEM`, or a Python script for communica)
//! and a client side, a [`Session`], that the scenarios drive from the
//! harness process.
//!
//! Every system serves the same two operations:
//! - *echo*: a 64-byte text request ([`SMALL_TEXT`]), answered with itself;
//! - *bulk*: a byte-buffer request ([`bulk_payload`]), answered with its
//!   length as a number, which the client checks.

mod communica;
mod iceoryx;
mod ipc;
mod memcpy;
mod python;
mod raw;
mod raw_amqp;
mod raw_blocking;
mod raw_poll;
mod raw_spin;
mod raw_tokio;
mod script_driver;
mod switchboard;
mod switchboard_blocking;
mod tarpc;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::ValueEnum;

pub use communica::{describe_python, prepare_venv};

/// Every system, in the order of the report's columns.
pub const SYSTEMS: [&str; 22] = [
    "raw_blocking_uds",
    "raw_tokio_local",
    "raw_poll_uds",
    "raw_spin_shm",
    "memcpy",
    "switchboard_local",
    "switchboard_local_loan",
    "switchboard_local_json",
    "switchboard_local_msgpack",
    "switchboard_shm",
    "iceoryx2_rr",
    "switchboard_tcp_json",
    "switchboard_blocking",
    "tarpc_uds",
    "ipc_channel",
    "ipc_channel_shm",
    "communica",
    "switchboard_python",
    "mp_connection",
    "raw_amqp",
    "switchboard_amqp",
    "communica_rmq",
];

/// The RabbitMQ broker of the `*_amqp` / `*_rmq` systems:
/// `SB_BENCH_AMQP_URL`, by default the local one.
pub fn amqp_url() -> String {
    std::env::var("SB_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The small request: 64 bytes of text.
pub const SMALL_TEXT: &str = "switchboard-bench small request: 64 bytes of text, echoed back.\n";

/// A deterministic, incompressible-looking byte buffer of `size` bytes
/// (xorshift), so no system gets an easy all-zero payload.
pub fn bulk_payload(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Which tokio runtime the tokio-based systems use, in both processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Flavor {
    /// `current_thread`: everything on the thread that calls `block_on`.
    Current,
    /// `multi_thread` with two workers (this machine's core count).
    Multi,
}

impl Flavor {
    /// The value as given on the command line.
    pub fn arg(self) -> &'static str {
        match self {
            Flavor::Current => "current",
            Flavor::Multi => "multi",
        }
    }

    /// The `serve` arguments that pass this flavor on to a server.
    pub fn serve_args(self) -> Vec<String> {
        vec!["--runtime".into(), self.arg().into()]
    }

    /// A runtime of this flavor with I/O and timers enabled.
    pub fn runtime(self) -> Result<tokio::runtime::Runtime> {
        let mut builder = match self {
            Flavor::Current => tokio::runtime::Builder::new_current_thread(),
            Flavor::Multi => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            }
        };
        Ok(builder.enable_all().build()?)
    }
}

/// Settings shared by every session.
#[derive(Clone, Debug)]
pub struct Options {
    /// Runtime flavor for the tokio-based systems.
    pub flavor: Flavor,
    /// Where communica's virtual environment lives (created on demand).
    pub venv: PathBuf,
}

/// The client side of one system, connected to its own server process.
///
/// Every method runs a whole batch inside the system's own execution model
/// (a blocking loop, or one `block_on` for the async systems) so the
/// harness adds nothing to the timed region.
/// Times `count` echo round trips, one at a time, and checks the last
/// answer.
pub async fn time_rtt<F, Fut>(count: usize, mut echo: F) -> Result<Vec<std::time::Duration>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    let mut samples = Vec::with_capacity(count);
    let mut answer = String::new();
    for _ in 0..count {
        let start = std::time::Instant::now();
        answer = echo().await?;
        samples.push(start.elapsed());
    }
    check_echo(answer.as_bytes())?;
    Ok(samples)
}

/// Times `count` echoes with `depth` in flight on one connection, checking
/// every answer.
pub async fn time_pipelined<F, Fut>(
    count: usize,
    depth: usize,
    mut echo: F,
) -> Result<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String>>,
{
    use futures::{StreamExt, TryStreamExt};
    let start = std::time::Instant::now();
    futures::stream::iter(0..count)
        .map(|_| echo())
        .buffer_unordered(depth)
        .try_for_each(|answer| async move { check_echo(answer.as_bytes()) })
        .await?;
    Ok(start.elapsed())
}

pub trait Session {
    /// Process id of the server, for reading its memory use.
    fn server_pid(&self) -> u32;

    /// `count` echo round trips, one at a time, each timed.
    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>>;

    /// Time to complete `count` echo requests on one connection, keeping
    /// `depth` in flight.
    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration>;

    /// `count` bulk round trips carrying `payload`, each timed from before
    /// serialization to the (small) response.
    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>>;

    /// `count` fresh connections, each timed from connect through the
    /// handshake to the response of a first echo request.
    fn connect(&mut self, count: usize) -> Result<Vec<Duration>>;

    /// Called after every batch and warm-up: a server that busy-polls
    /// while traffic flows stops now rather than a timer later, so that it
    /// takes no CPU from the next system's batch (with two cores, a floor
    /// still spinning into `switchboard_shm`'s batch made that batch's
    /// tail).
    fn rest(&mut self) -> Result<()> {
        Ok(())
    }

    /// Opens `count` connections (each with its handshake finished), calls
    /// `measure` while they are all open and idle, then closes them.
    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let _ = (count, measure);
        Err(Unsupported("not implemented for this system".into()).into())
    }
}

/// A scenario a system cannot run, with the reason; reported as "absent".
#[derive(Debug)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Starts `system`'s server process and connects a session to it.
pub fn open(system: &str, options: &Options) -> Result<Box<dyn Session>> {
    Ok(match system {
        "raw_blocking_uds" => Box::new(raw_blocking::Client::open()?),
        "raw_tokio_local" => Box::new(raw_tokio::Client::open(options.flavor)?),
        "memcpy" => Box::new(memcpy::Copy),
        "switchboard_local" => Box::new(switchboard::Client::open(
            switchboard::Variant::Local,
            options.flavor,
        )?),
        "switchboard_local_loan" => Box::new(switchboard::Client::open(
            switchboard::Variant::LocalLoan,
            options.flavor,
        )?),
        "raw_poll_uds" => Box::new(raw_poll::Client::open()?),
        "raw_spin_shm" => Box::new(raw_spin::Client::open()?),
        "iceoryx2_rr" => Box::new(iceoryx::Client::open()?),
        "switchboard_local_json" => Box::new(switchboard::Client::open(
            switchboard::Variant::LocalJson,
            options.flavor,
        )?),
        "switchboard_local_msgpack" => Box::new(switchboard::Client::open(
            switchboard::Variant::LocalMsgPack,
            options.flavor,
        )?),
        "switchboard_shm" => Box::new(switchboard::Client::open(
            switchboard::Variant::LocalShm,
            options.flavor,
        )?),
        "switchboard_tcp_json" => Box::new(switchboard::Client::open(
            switchboard::Variant::TcpJson,
            options.flavor,
        )?),
        "switchboard_blocking" => Box::new(switchboard_blocking::Client::open()?),
        "tarpc_uds" => Box::new(tarpc::Client::open(options.flavor)?),
        "ipc_channel" => Box::new(ipc::Client::open(false)?),
        "ipc_channel_shm" => Box::new(ipc::Client::open(true)?),
        "communica" => Box::new(communica::Client::open(&options.venv, None)?),
        "switchboard_python" => Box::new(python::Client::open(
            python::Variant::Package,
            &options.venv,
            options.flavor,
        )?),
        "mp_connection" => Box::new(python::Client::open(
            python::Variant::MpConnection,
            &options.venv,
            options.flavor,
        )?),
        "communica_rmq" => Box::new(communica::Client::open(&options.venv, Some(&amqp_url()))?),
        "raw_amqp" => Box::new(raw_amqp::Client::open(options.flavor)?),
        "switchboard_amqp" => Box::new(switchboard::Client::open(
            switchboard::Variant::AmqpJson,
            options.flavor,
        )?),
        other => bail!("unknown system {other:?}"),
    })
}

/// The server side of `system`, run in the child process; returns when the
/// server fails (it normally runs until the harness closes its stdin).
pub fn serve(system: &str, flavor: Flavor) -> Result<()> {
    crate::procs::raise_nofile_limit();
    match system {
        "raw_blocking_uds" => raw_blocking::serve(),
        "raw_tokio_local" => raw_tokio::serve(flavor),
        "switchboard_local"
        | "switchboard_local_loan"
        | "switchboard_local_json"
        | "switchboard_local_msgpack" => switchboard::serve(switchboard::Variant::Local, flavor),
        "raw_poll_uds" => raw_poll::serve(),
        "raw_spin_shm" => raw_spin::serve(),
        "iceoryx2_rr" => iceoryx::serve(),
        "switchboard_shm" => switchboard::serve(switchboard::Variant::LocalShm, flavor),
        "switchboard_tcp_json" => switchboard::serve(switchboard::Variant::TcpJson, flavor),
        "switchboard_blocking" => switchboard_blocking::serve(),
        "tarpc_uds" => tarpc::serve(flavor),
        "raw_amqp" => raw_amqp::serve(flavor),
        "switchboard_amqp" => switchboard::serve(switchboard::Variant::AmqpJson, flavor),
        "ipc_channel" => ipc::serve(),
        other => bail!("no Rust server for system {other:?}"),
    }
}

/// Checks an echo answer.
fn check_echo(answer: &[u8]) -> Result<()> {
    if answer != SMALL_TEXT.as_bytes() {
        bail!("wrong echo answer ({} bytes)", answer.len());
    }
    Ok(())
}

/// Checks a bulk answer.
fn check_bulk(answer: u64, sent: usize) -> Result<()> {
    if answer != sent as u64 {
        bail!("the server counted {answer} bytes of {sent}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_request_is_64_bytes() {
        assert_eq!(SMALL_TEXT.len(), 64);
    }

    #[test]
    fn payload_is_deterministic_and_varied() {
        let a = bulk_payload(4096);
        assert_eq!(a, bulk_payload(4096));
        let distinct: std::collections::BTreeSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200);
    }
}
