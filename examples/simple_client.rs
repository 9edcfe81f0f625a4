//! The smallest client: connect with a connector string, send one request,
//! print the response.
//!
//! Pass the connector string that `simple_server` printed as the argument
//! (or in `SWITCHBOARD_CONNECTOR`).

use switchboard::{Client, Connector};

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
    let client = Client::connect(&Connector::from_args_or_env()?).await?;
    let response: String = client.request("hello", "hello").await?;
    println!("Server responded with {response:?}");
    // Fire and forget: no response is awaited.
    client.throw("hello", "a thrown message").await?;
    client.close().await;
    Ok(())
}
