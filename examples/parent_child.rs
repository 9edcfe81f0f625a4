//! The main demo: a parent hands work to four child processes.
//!
//! The parent starts a server on a private local connector and spawns four
//! copies of its own executable as workers: two get the connector string as
//! an argument, two in the `SWITCHBOARD_CONNECTOR` environment variable. It
//! then hands out work items as requests to the workers; each worker sends
//! progress notifications back while it works and answers with its result.
//! The parent checks every result and exits 0 only when all came back.
//!
//! Run it with `cargo run --example parent_child`. With
//! `-- --amqp amqp://guest:guest@127.0.0.1:5672/%2f` (and `--features
//! amqp`) the same hand-off goes through a RabbitMQ broker instead of a
//! local socket: the children get an AMQP connector string.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use switchboard::{Client, CommandExt, Connector, Context, HandlerError, Router, Server};

const WORKERS: usize = 4;
const ITEMS: u64 = 24;

#[derive(Serialize, Deserialize, Debug)]
struct Work {
    item: u64,
    /// Count the primes below this number.
    below: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Progress {
    item: u64,
    percent: u8,
}

fn count_primes(below: u64) -> u64 {
    (2..below)
        .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .count() as u64
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // The library logs through `tracing`; this shows its warnings (or more,
    // with RUST_LOG=debug) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match std::env::args().nth(1).as_deref() {
        Some("worker") => worker().await,
        _ => parent().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parent_child: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let progress_seen = Arc::new(Mutex::new(0u64));
    let seen = Arc::clone(&progress_seen);
    let router = Router::new().route("progress", move |ctx: Context, p: Progress| {
        let seen = Arc::clone(&seen);
        async move {
            *seen.lock().unwrap() += 1;
            if p.percent == 100 {
                println!("  {} finished item {}", ctx.client_id(), p.item);
            }
            Ok::<_, HandlerError>(())
        }
    });
    let connector = match amqp_url() {
        // A fresh service name: another run cannot share it.
        Some(url) => Connector::amqp(url, format!("parent-child-{}", std::process::id()))?,
        None => Connector::local(),
    };
    let server = Server::bind(&connector, router).await?;
    println!("parent: serving at {}", server.connector());

    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for n in 0..WORKERS {
        let mut command = tokio::process::Command::new(&exe);
        command.arg("worker").arg(format!("worker-{n}"));
        if n % 2 == 0 {
            command.connector_arg(server.connector());
        } else {
            command.connector_env(server.connector());
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        children.push(command.spawn()?);
    }
    println!("parent: spawned {WORKERS} workers (2 via argv, 2 via environment)");

    tokio::time::timeout(Duration::from_secs(20), server.wait_for_clients(WORKERS))
        .await
        .map_err(|_| "the workers did not all connect within 20 s")?;
    println!("parent: workers connected: {:?}", server.clients());

    // Each worker pulls items from one queue, so faster workers take more.
    let queue = Arc::new(Mutex::new((0..ITEMS).collect::<VecDeque<u64>>()));
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for id in server.clients() {
        let (queue, server) = (Arc::clone(&queue), Arc::clone(&server));
        tasks.push(tokio::spawn(async move {
            let mut results = Vec::new();
            loop {
                let Some(item) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let work = Work {
                    item,
                    below: 20_000 + item * 1_000,
                };
                let primes: u64 = server.request(&id, "work", &work).await?;
                results.push((id.clone(), item, work.below, primes));
            }
            Ok::<_, switchboard::Error>(results)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await??);
    }

    let mut per_worker = std::collections::BTreeMap::new();
    for (id, item, below, primes) in &results {
        assert_eq!(
            *primes,
            count_primes(*below),
            "item {item} came back wrong from {id}"
        );
        *per_worker.entry(id.clone()).or_insert(0) += 1;
    }
    let progress = *progress_seen.lock().unwrap();

    // Closing the server tells the workers to exit.
    let server = Arc::into_inner(server).ok_or("server still shared")?;
    server.shutdown().await;
    for mut child in children {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        if !status.success() {
            return Err(format!("a worker exited with {status}").into());
        }
    }

    println!("summary:");
    for (id, count) in &per_worker {
        println!("  {id}: {count} items");
    }
    println!(
        "  {} of {ITEMS} items came back correct, {progress} progress notifications, {:?}",
        results.len(),
        started.elapsed()
    );
    if results.len() as u64 != ITEMS {
        return Err("some work items did not come back".into());
    }
    Ok(())
}

/// The broker URL after `--amqp`, if given.
fn amqp_url() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == "--amqp")
        .and_then(|at| args.get(at + 1).cloned())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let id = std::env::args().nth(2).ok_or("worker needs an id")?;
    // The connector arrives either as an argument or in the environment.
    let connector = Connector::from_args_or_env()?;
    let router = Router::new().route("work", |ctx: Context, work: Work| async move {
        for percent in [0, 50] {
            ctx.throw(
                "progress",
                &Progress {
                    item: work.item,
                    percent,
                },
            )
            .await?;
        }
        let primes = tokio::task::spawn_blocking(move || count_primes(work.below)).await?;
        ctx.throw(
            "progress",
            &Progress {
                item: work.item,
                percent: 100,
            },
        )
        .await?;
        Ok::<_, HandlerError>(primes)
    });
    let client = Client::builder(&connector)
        .id(id)
        .router(router)
        .connect()
        .await?;
    client.closed().await;
    Ok(())
}
