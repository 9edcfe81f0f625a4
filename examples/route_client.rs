//! The seed's communica `RouteClient` example, in Rust: calls each route of
//! `route_server` and shows what an unknown route gives.
//!
//! Pass the connector string that `route_server` printed as the argument
//! (or in `SWITCHBOARD_CONNECTOR`).

use switchboard::{Client, Connector, Error};

#[tokio::main]
async fn main() -> switchboard::Result<()> {
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
