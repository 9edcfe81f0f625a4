//! A Rust parent that spawns Python workers: the other half of a
//! half-Python program. The workers use the `switchboard_ipc` package
//! (python/ in this repository) and find the parent through the
//! `SWITCHBOARD_CONNECTOR` environment variable.
//!
//! The parent serves `progress` (notifications) and `double` (a request);
//! each worker serves `work`. The parent hands out work items as requests
//! to the workers; while a worker works on one, it sends numbered
//! progress notifications and calls `double` on the parent, so requests
//! travel both ways on one connection at the same time. The parent checks
//! every answer, that each item's notifications arrived in order, and that
//! every worker exits cleanly once the parent's server closes.
//!
//! Run it with `cargo run --example python_workers`. The Python interpreter
//! is `$SWITCHBOARD_PYTHON` (default `python3`); the package is found
//! installed, or in python/src of this checkout.

use std::collections::{BTreeMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{CommandExt, Connector, Context, HandlerError, Router, Server};

const WORKERS: usize = 3;
const ITEMS: u64 = 12;
/// Progress notifications per item: steps 0 to STEPS - 1.
const STEPS: u64 = 5;

#[derive(Serialize, Deserialize, Debug)]
struct Work {
    item: u64,
    n: u64,
}

#[derive(Deserialize, Debug)]
struct Done {
    item: u64,
    sum: u64,
    doubled: u64,
}

#[derive(Deserialize, Debug)]
struct Progress {
    item: u64,
    step: u64,
}

/// Progress seen so far, by (worker, item): the steps in arrival order.
type Seen = Arc<Mutex<BTreeMap<(String, u64), Vec<u64>>>>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match parent().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("python_workers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let router = Router::new()
        .route("progress", move |ctx: Context, p: Progress| {
            let record = Arc::clone(&record);
            async move {
                let key = (ctx.client_id().to_owned(), p.item);
                record.lock().unwrap().entry(key).or_default().push(p.step);
                Ok::<_, HandlerError>(())
            }
        })
        .route(
            "double",
            |n: u64| async move { Ok::<_, HandlerError>(n * 2) },
        );
    let server = Server::bind(&Connector::local(), router).await?;

    let python = std::env::var("SWITCHBOARD_PYTHON").unwrap_or_else(|_| "python3".into());
    let root = env!("CARGO_MANIFEST_DIR");
    let script = format!("{root}/python/examples/worker.py");
    // An installed package wins; else the one in this checkout.
    let path = match std::env::var("PYTHONPATH") {
        Ok(path) if !path.is_empty() => format!("{path}:{root}/python/src"),
        _ => format!("{root}/python/src"),
    };
    let mut children = Vec::new();
    for n in 0..WORKERS {
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(&script)
            .arg(format!("py-worker-{n}"))
            .env("PYTHONPATH", &path)
            .connector_env(server.connector())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        children.push(
            command
                .spawn()
                .map_err(|e| format!("starting {python}: {e}"))?,
        );
    }
    tokio::time::timeout(Duration::from_secs(30), server.wait_for_clients(WORKERS))
        .await
        .map_err(|_| "the Python workers did not all connect within 30 s")?;
    println!("parent: Python workers connected: {:?}", server.clients());

    let queue = Arc::new(Mutex::new((0..ITEMS).collect::<VecDeque<u64>>()));
    let server = Arc::new(server);
    let mut tasks = Vec::new();
    for id in server.clients() {
        let (queue, server) = (Arc::clone(&queue), Arc::clone(&server));
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let Some(item) = queue.lock().unwrap().pop_front() else {
                    break;
                };
                let work = Work {
                    item,
                    n: 100 + item,
                };
                let answer: Done = server.request(&id, "work", &work).await?;
                done.push((id.clone(), work, answer));
            }
            Ok::<_, switchboard::Error>(done)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await??);
    }
    for (id, work, answer) in &results {
        let sum = work.n * (work.n - 1) / 2;
        if answer.item != work.item || answer.sum != sum || answer.doubled != work.n * 2 {
            return Err(format!("{id} answered item {} wrongly: {answer:?}", work.item).into());
        }
    }

    // Notifications are handled in the order they were sent; give the last
    // ones a moment to be handled, then check every item's steps.
    let expected: Vec<u64> = (0..STEPS).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let complete = {
            let seen = seen.lock().unwrap();
            seen.len() == ITEMS as usize && seen.values().all(|steps| steps.len() == STEPS as usize)
        };
        if complete || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for ((id, item), steps) in seen.lock().unwrap().iter() {
        if *steps != expected {
            return Err(format!("{id}'s progress for item {item} arrived as {steps:?}").into());
        }
    }

    let server = Arc::into_inner(server).ok_or("server still shared")?;
    server.shutdown().await;
    for mut child in children {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        if !status.success() {
            return Err(format!("a Python worker exited with {status}").into());
        }
    }
    println!(
        "parent: {} of {ITEMS} items came back correct from {WORKERS} Python workers, progress in order",
        results.len()
    );
    if results.len() as u64 != ITEMS {
        return Err("some work items did not come back".into());
    }
    Ok(())
}
