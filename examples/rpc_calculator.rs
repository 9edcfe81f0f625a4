//! A typed service with `#[switchboard::service]`: a parent serves
//! `Calculator` and a child process calls every method through the
//! generated `CalculatorClient`.
//!
//! - `cargo run --example rpc_calculator`: the parent serves, spawns this
//!   program again as its child, which calls every method and checks the
//!   answers, then as a second child that makes the same calls through the
//!   blocking client (`CalculatorBlockingClient`, no async runtime); exits
//!   0 when all were right.
//! - `cargo run --example rpc_calculator -- serve`: prints its connector as
//!   the first line on stdout and serves until stdin closes (if stdin is a
//!   pipe), it is killed, or a client calls `switchboard.shutdown`. Try
//!   `switchboard call <connector> Calculator.add '{"a":1,"b":2}'`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{CommandExt, Connector, Context, Router, Server, Shutdown, Stream};

/// Why a division has no answer.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum DivError {
    /// The divisor was zero.
    DivideByZero,
    /// `i64::MIN / -1`.
    Overflow,
}

/// Integer arithmetic, served to other processes.
#[switchboard::service]
pub trait Calculator {
    /// `a + b`, saturating.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// `a / b`, or why not.
    async fn div(&self, a: i64, b: i64) -> Result<i64, DivError>;
    /// A line for the server's log; the caller does not wait for it.
    #[notification]
    async fn log(&self, line: String);
    /// The caller's client id, as the server knows it (a method that takes
    /// the call's `Context`).
    async fn whoami(&self, ctx: Context) -> String;
    /// How many lines were logged so far.
    async fn logged(&self) -> usize;
    /// 1, 2, ... `to`, as a stream of answers.
    async fn count(&self, to: u32) -> Stream<u32>;
}

#[derive(Default)]
struct Calc {
    logged: AtomicUsize,
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.saturating_add(b)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, DivError> {
        match b {
            0 => Err(DivError::DivideByZero),
            _ => a.checked_div(b).ok_or(DivError::Overflow),
        }
    }

    async fn log(&self, line: String) {
        eprintln!("log: {line}");
        self.logged.fetch_add(1, Ordering::SeqCst);
    }

    async fn whoami(&self, ctx: Context) -> String {
        ctx.client_id().to_owned()
    }

    async fn logged(&self) -> usize {
        self.logged.load(Ordering::SeqCst)
    }

    async fn count(&self, to: u32) -> Stream<u32> {
        Stream::iter(1..=to)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The library logs through `tracing`; this shows its warnings (or more,
    // with RUST_LOG=debug) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = || tokio::runtime::Runtime::new();
    match std::env::args().nth(1).as_deref() {
        None => runtime()?.block_on(parent()),
        Some("child") => runtime()?.block_on(child()),
        // A plain program: no async runtime of its own.
        Some("blocking-child") => blocking_child(),
        Some("serve") => runtime()?.block_on(serve()),
        Some(other) => {
            Err(format!("unknown mode {other:?}: expected no argument or `serve`").into())
        }
    }
}

/// Serves `Calculator`, runs the children (one async, one blocking), and
/// reports how it went.
async fn parent() -> Result<(), Box<dyn std::error::Error>> {
    let calc = Arc::new(Calc::default());
    let router = Router::new().service(CalculatorServer::from_arc(Arc::clone(&calc)));
    let server = Server::bind(&Connector::local(), router).await?;
    for mode in ["child", "blocking-child"] {
        let mut child = tokio::process::Command::new(std::env::current_exe()?);
        child.arg(mode).connector_env(server.connector());
        let status = child.status().await?;
        if !status.success() {
            server.shutdown().await;
            return Err(format!("the {mode} failed: {status}").into());
        }
    }
    server.shutdown().await;
    println!(
        "the children called every method; {} line(s) logged",
        calc.logged.load(Ordering::SeqCst)
    );
    Ok(())
}

/// Calls every method and checks the answers.
async fn child() -> Result<(), Box<dyn std::error::Error>> {
    let calc = CalculatorClient::connect(&Connector::from_env()?).await?;
    assert_eq!(calc.add(1, 2).await?, 3);
    assert_eq!(calc.div(7, 2).await?, Ok(3));
    assert_eq!(calc.div(1, 0).await?, Err(DivError::DivideByZero));
    assert_eq!(calc.div(i64::MIN, -1).await?, Err(DivError::Overflow));
    let logged = calc.logged().await?;
    calc.log("hello from the child".to_owned()).await?;
    // A clone with a deadline of its own.
    let quick = calc.with_timeout(Duration::from_secs(5));
    assert_eq!(quick.whoami().await?, calc.peer().client_id());
    let mut count = calc.count(3).await?;
    let mut items = Vec::new();
    while let Some(item) = count.next().await {
        items.push(item?);
    }
    assert_eq!(items, [1, 2, 3]);
    // Notifications are not answered, so ask until the line has arrived.
    while calc.logged().await? == logged {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("child: add, div, log, whoami, logged and count all answered as expected");
    Ok(())
}

/// The same calls from a plain program, through the blocking client: no
/// async runtime, no `.await`.
fn blocking_child() -> Result<(), Box<dyn std::error::Error>> {
    let calc = CalculatorBlockingClient::connect(&Connector::from_env()?)?;
    assert_eq!(calc.add(1, 2)?, 3);
    assert_eq!(calc.div(1, 0)?, Err(DivError::DivideByZero));
    let logged = calc.logged()?;
    calc.log("hello from the blocking child".to_owned())?;
    assert_eq!(calc.whoami()?, calc.peer().client_id());
    // A stream is an iterator.
    let items = calc.count(3)?.collect::<switchboard::Result<Vec<_>>>()?;
    assert_eq!(items, [1, 2, 3]);
    while calc.logged()? == logged {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("blocking child: the same calls, answered the same");
    Ok(())
}

/// Serves until stdin closes (when it is a pipe: a parent holding its other
/// end), the process is killed, or a client asks it to shut down.
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::new();
    let router = Router::new()
        .service(CalculatorServer::new(Calc::default()))
        .service(shutdown.clone());
    let server = Server::bind(&Connector::local(), router).await?;
    println!("{}", server.connector().dump_state());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    if stdin::is_pipe() {
        std::thread::spawn(move || {
            // Read to the end: EOF (or an error) means the parent is gone.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            let _ = closed_tx.send(());
        });
    }
    server
        .run_until(async move {
            tokio::select! {
                Ok(()) = closed_rx => {}
                () = shutdown.requested() => {}
            }
        })
        .await;
    Ok(())
}

/// Whether stdin is a pipe whose end means the parent is gone (rather
/// than, say, `/dev/null`, which ends at once).
mod stdin {
    #[cfg(unix)]
    pub fn is_pipe() -> bool {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileTypeExt;
        let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
            return false;
        };
        std::fs::File::from(fd).metadata().is_ok_and(|metadata| {
            metadata.file_type().is_fifo() || metadata.file_type().is_socket()
        })
    }

    #[cfg(windows)]
    pub fn is_pipe() -> bool {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_PIPE, GetFileType};
        let handle = std::io::stdin().as_raw_handle();
        // SAFETY: GetFileType only inspects the handle; an invalid or null
        // one gives FILE_TYPE_UNKNOWN.
        !handle.is_null() && unsafe { GetFileType(handle) == FILE_TYPE_PIPE }
    }

    #[cfg(not(any(unix, windows)))]
    pub fn is_pipe() -> bool {
        false
    }
}
