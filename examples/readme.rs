//! The README's example, word for word (a test checks they stay the same):
//! a parent serves two routes and runs itself again as a child, which
//! calls them. It runs on a single-threaded runtime on purpose: nothing in
//! it may block the runtime while the child talks to the parent.

use switchboard::{Client, CommandExt, Connector, Context, HandlerError, Router, Server};

async fn add((a, b): (i64, i64)) -> Result<i64, HandlerError> {
    a.checked_add(b)
        .ok_or_else(|| HandlerError::invalid_params("overflow"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("child") {
        // The child: read the connector the parent passed, connect, call.
        let client = Client::connect(&Connector::from_env()?).await?;
        let sum: i64 = client.request("add", &(1, 2)).await?;
        client.throw("log", &format!("1 + 2 = {sum}")).await?;
        client.close().await;
        return Ok(());
    }

    // The parent: serve two routes on a private local socket...
    let router =
        Router::new()
            .route("add", add)
            .route("log", |ctx: Context, line: String| async move {
                println!("[{}] {line}", ctx.client_id());
            });
    let server = Server::bind(&Connector::local(), router).await?;

    // ...and hand the connector to a child in its environment. The child
    // is awaited, not waited for: the server runs on this same runtime.
    let mut child = tokio::process::Command::new(std::env::current_exe()?);
    child.arg("child").connector_env(server.connector());
    let status = child.status().await?;
    server.shutdown().await;
    std::process::exit(status.code().unwrap_or(1));
}
