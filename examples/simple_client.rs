//! The seed's communica `SimpleClient` example, in Rust: send one request,
//! print the response.
//!
//! Pass the connector string that `simple_server` printed as the argument
//! (or in `SWITCHBOARD_CONNECTOR`).

use switchboard::{Client, Connector};

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    let client = Client::connect(&Connector::from_args_or_env()?).await?;
    let response: String = client.request("hello", "hello").await?;
    println!("Server responded with {response:?}");
    // Fire and forget: no response is awaited.
    client.throw("hello", "a thrown message").await?;
    client.close().await;
    Ok(())
}
