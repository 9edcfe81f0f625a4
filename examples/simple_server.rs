//! The seed's communica `SimpleServer` example, in Rust: one handler answers
//! every request.
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
