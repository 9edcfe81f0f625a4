//! The smallest server: one handler answers every request, whatever its
//! route. It prints its connector string for `simple_client`.
//!
//! Run `cargo run --example simple_server`, then in another terminal
//! `cargo run --example simple_client -- <the printed connector string>`.

use switchboard::{Connector, HandlerError, Router, Server};

async fn handler(data: String) -> Result<String, HandlerError> {
    println!("Received {data:?} from client");
    Ok(format!("Thanks for your {data:?}!"))
}

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
    let server = Server::bind(&Connector::local(), Router::single(handler)).await?;
    println!("{}", server.connector().dump_state());
    eprintln!("serving; press Ctrl-C to stop");
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
