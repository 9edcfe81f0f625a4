//! A client that calls each route `route_server` offers by name, and shows
//! the error an unknown route gives.
//!
//! Pass the connector string that `route_server` printed as the argument
//! (or in `SWITCHBOARD_CONNECTOR`).

use switchboard::{Client, Connector, Error};

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

    let echoed: String = client.request("echo", "hello").await?;
    println!("echo  -> {echoed:?}");
    let sum: i64 = client.request("sum", &[1, 2, 3, 4]).await?;
    println!("sum   -> {sum}");
    let count: u64 = client.request("count", &()).await?;
    println!("count -> {count}");
    client.throw("log", "route_client was here").await?;

    match client.request::<_, ()>("missing", &()).await {
        Err(Error::NoSuchRoute { route }) => println!("missing -> no such route {route:?}"),
        other => println!("missing -> unexpected {other:?}"),
    }
    client.close().await;
    Ok(())
}
