//! The lowest-latency path: a parent turns the shared-memory ring on and
//! hands the connector string to a child, which times small round trips
//! over it and over the default local socket.
//!
//! `Connector::with_shm_ring(true)` is all it takes: the setting travels in
//! the string, so the child asks for the ring when it connects, and every
//! message (requests, answers, notifications, streams) then goes through a
//! ring in memory both processes map, with the socket kept beside it for
//! wake-ups and to notice a peer that is gone. Both sides spin for
//! `Config::ring_spin` (1 ms) while they wait, so a quick exchange keeps a
//! CPU per side busy while it lasts; an idle connection costs nothing.
//!
//! Run it with `cargo run --release --example low_latency`. It prints the
//! median and 99th percentile of each path. Linux only: elsewhere turning
//! the ring on is refused with `Error::Unsupported`, which it reports.

use std::time::{Duration, Instant};

use switchboard::{Client, CommandExt, Connector, HandlerError, Router, Server};

const ROUND_TRIPS: usize = 20_000;

/// A current-thread runtime: the ring pays most where the caller's thread
/// reads its own answer (BENCHMARKS.md, "The latency floor").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        return child().await;
    }
    let ring = match Connector::local().with_shm_ring(true) {
        Ok(ring) => ring,
        Err(e) => {
            eprintln!("no shared-memory ring here: {e}");
            return Ok(());
        }
    };
    for (path, connector) in [("ring", ring), ("socket", Connector::local())] {
        let router = Router::new().route("echo", |n: u64| async move { Ok::<_, HandlerError>(n) });
        let server = Server::bind(&connector, router).await?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?);
        child
            .arg("child")
            .arg(path)
            .connector_env(server.connector());
        let status = child.status().await?;
        server.shutdown().await;
        if !status.success() {
            return Err(format!("the child timing the {path} failed: {status}").into());
        }
    }
    Ok(())
}

/// Times [`ROUND_TRIPS`] requests of a `u64` on the connector it was handed.
async fn child() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(2).unwrap_or_default();
    let connector = Connector::from_env()?;
    let client = Client::connect(&connector).await?;
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for n in 0..ROUND_TRIPS as u64 {
        let start = Instant::now();
        let echoed: u64 = client.request("echo", &n).await?;
        times.push(start.elapsed());
        if echoed != n {
            return Err(format!("sent {n}, got {echoed} back").into());
        }
    }
    client.close().await;
    times.sort();
    let at = |fraction: f64| times[((times.len() - 1) as f64 * fraction) as usize];
    println!(
        "{path:>6}: median {}, p99 {} ({ROUND_TRIPS} round trips, ring {})",
        micros(at(0.5)),
        micros(at(0.99)),
        if connector.shm_ring() { "on" } else { "off" },
    );
    Ok(())
}

fn micros(time: Duration) -> String {
    format!("{:.1} µs", time.as_secs_f64() * 1e6)
}
