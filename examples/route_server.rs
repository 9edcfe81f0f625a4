//! A server with several handlers, each found by its exact route name. It
//! prints its connector string, which `route_client` takes.
//!
//! Run `cargo run --example route_server`, then
//! `cargo run --example route_client -- <the printed connector string>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use switchboard::{Connector, Context, HandlerError, Router, Server};

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    // The library logs through `tracing`; this shows its warnings (or more,
    // with RUST_LOG=debug) on stderr.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let counter = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&counter);
    let router = Router::new()
        .route(
            "echo",
            |text: String| async move { Ok::<_, HandlerError>(text) },
        )
        .route("sum", |numbers: Vec<i64>| async move {
            numbers
                .iter()
                .try_fold(0i64, |acc, n| acc.checked_add(*n))
                .ok_or_else(|| HandlerError::invalid_params("the sum overflows"))
        })
        .route("count", move || {
            let count = Arc::clone(&count);
            async move { Ok::<_, HandlerError>(count.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .route("log", |ctx: Context, line: String| async move {
            println!("[{}] {line}", ctx.client_id());
            Ok::<_, HandlerError>(())
        });
    let server = Server::bind(&Connector::local(), router).await?;
    println!("{}", server.connector().dump_state());
    eprintln!("serving routes echo, sum, count, log; press Ctrl-C to stop");
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
