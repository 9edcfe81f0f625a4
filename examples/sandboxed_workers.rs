//! A parent spawns four sandboxed workers, each reaching it through a
//! channel it inherits, not through any file.
//!
//! The parent's server listens nowhere (`channels_only`): it makes one
//! channel per worker (`Server::child_channel`) and spawns the worker
//! with it (`spawn_with_channel`), so each worker inherits exactly one
//! descriptor and finds the connector in `SWITCHBOARD_CONNECTOR` as usual.
//! Where `unshare` can make a mount namespace (Linux, as root), each
//! worker runs in its own with an empty, private /tmp: it cannot see the
//! parent's files (a socket file in /tmp included), and connects all the
//! same. Elsewhere the workers run
//! unconfined and the example says so; a real program would use what the
//! platform offers (bubblewrap or a landlock/seccomp policy on Linux,
//! `sandbox-exec` on macOS, an AppContainer on Windows): the channel needs
//! no filesystem access in any of them.
//!
//! The parent hands out work items to the workers, checks every result,
//! and exits 0 only when all came back. Killed with SIGKILL, it leaves
//! nothing behind (there is no socket file), and the workers see the link
//! drop and exit.
//!
//! Run it with `cargo run --example sandboxed_workers` (as root to see the
//! namespaces).

use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use switchboard::{Client, CommandExt, Connector, Router, Server};

const WORKERS: usize = 4;
const ITEMS: u64 = 24;

/// What a worker can see of the filesystem, as it tells the parent.
#[derive(Serialize, Deserialize, Debug)]
struct Sandbox {
    worker: String,
    /// Entries in the worker's /tmp.
    tmp_entries: usize,
    /// The worker's mount namespace (Linux), to compare with the parent's.
    mount_namespace: Option<String>,
}

fn mount_namespace() -> Option<String> {
    let link = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    Some(link.to_string_lossy().into_owned())
}

fn count_primes(below: u64) -> u64 {
    (2..below)
        .filter(|n| (2..).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .count() as u64
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let result = match std::env::args().nth(1).as_deref() {
        Some("worker") => worker().await,
        _ => parent().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandboxed_workers: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `unshare` with a private mount namespace, if it works here.
fn sandbox_available() -> Result<(), String> {
    match Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(_) => Err("unshare cannot make a mount namespace here (run as root)".into()),
        Err(_) => Err("unshare is not installed (util-linux)".into()),
    }
}

async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let (reports, mut received) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().route("sandbox", move |sandbox: Sandbox| {
        let reports = reports.clone();
        async move {
            let _ = reports.send(sandbox);
        }
    });
    let server = Server::builder(router)
        .channels_only(&Connector::local())
        .await?;
    let sandboxed = sandbox_available();
    match &sandboxed {
        Ok(()) => println!("workers run in their own mount namespace with an empty /tmp"),
        Err(why) => println!("workers run unconfined: {why}"),
    }
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for n in 0..WORKERS {
        let channel = server.child_channel()?;
        let mut command = if sandboxed.is_ok() {
            let mut command = Command::new("unshare");
            command
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount -t tmpfs none /tmp && exec "$0" "$@""#)
                .arg(&exe);
            command
        } else {
            Command::new(&exe)
        };
        command
            .args(["worker", &format!("worker-{n}")])
            .stdin(Stdio::null())
            .connector_env(channel.connector());
        children.push(command.spawn_with_channel(channel)?);
    }
    server.wait_for_clients(WORKERS).await;
    let mut isolated = 0;
    for _ in 0..WORKERS {
        let sandbox = received.recv().await.ok_or("the server stopped")?;
        let own = sandbox.mount_namespace.is_some() && sandbox.mount_namespace != mount_namespace();
        println!(
            "  {}: {}, /tmp has {} entries",
            sandbox.worker,
            if own {
                "its own mount namespace"
            } else {
                "the parent's mount namespace"
            },
            sandbox.tmp_entries,
        );
        isolated += usize::from(own);
    }
    let mut correct = 0;
    for item in 0..ITEMS {
        let below = 1_000 + item * 250;
        let primes: u64 = server.request_any("count_primes", &below).await?;
        correct += u64::from(primes == count_primes(below));
    }
    println!("{correct} of {ITEMS} items came back correct");
    println!("{isolated} of {WORKERS} workers had a mount namespace of their own");
    server.shutdown().await;
    for mut child in children {
        child.wait()?;
    }
    if correct != ITEMS || (sandboxed.is_ok() && isolated != WORKERS) {
        return Err("some work or some sandbox failed".into());
    }
    Ok(())
}

async fn worker() -> Result<(), Box<dyn std::error::Error>> {
    let id = std::env::args().nth(2).unwrap_or_else(|| "worker".into());
    let connector = Connector::from_env()?;
    let router = Router::new().route("count_primes", |below: u64| async move {
        tokio::task::spawn_blocking(move || count_primes(below))
            .await
            .unwrap_or(0)
    });
    let client = Client::builder(&connector)
        .id(id.clone())
        .router(router)
        .connect()
        .await?;
    let sandbox = Sandbox {
        worker: id,
        tmp_entries: std::fs::read_dir("/tmp").map(Iterator::count).unwrap_or(0),
        mount_namespace: mount_namespace(),
    };
    client.throw("sandbox", &sandbox).await?;
    // Serve the parent until it closes the channel (or dies).
    client.closed().await;
    Ok(())
}
