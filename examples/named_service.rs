//! A service found by name, and a client that survives its restart.
//!
//! In one terminal, the service (registered as `clock` in this user's
//! registry; Ctrl-C stops it and removes the entry):
//!
//! ```text
//! cargo run --example named_service -- serve
//! ```
//!
//! In another, an unrelated client that knows only the name:
//!
//! ```text
//! cargo run --example named_service -- client 100
//! ```
//!
//! Stop the service and start it again while the client runs: the client
//! reports the link going down, waits (its calls wait for the link, up to
//! their timeout), finds the new service by name (a fresh connector and
//! secret) and carries on as the same client. `switchboard ls` shows the
//! service meanwhile.

use std::time::Duration;

use switchboard::{Client, Connector, Context, HandlerError, LinkState, Reconnect, Router, Server};

const NAME: &str = "clock";

#[tokio::main]
async fn main() -> switchboard::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve().await,
        Some("client") => {
            let calls = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(20);
            client(calls).await
        }
        _ => {
            eprintln!("usage: named_service serve | named_service client [CALLS]");
            std::process::exit(2);
        }
    }
}

async fn serve() -> switchboard::Result<()> {
    let router = Router::new().route("tick", |ctx: Context, n: u64| async move {
        Ok::<_, HandlerError>(format!(
            "tick {n} for {} from pid {}",
            ctx.client_id(),
            std::process::id()
        ))
    });
    let server = Server::bind_named(NAME, &Connector::local(), router).await?;
    println!("serving as @{NAME} (pid {})", std::process::id());
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}

async fn client(calls: u64) -> switchboard::Result<()> {
    let client = Client::builder_named(NAME)
        .reconnect(Reconnect::default().max_delay(Duration::from_secs(1)))
        .connect()
        .await?;
    let mut link = client.link_state();
    tokio::spawn(async move {
        while link.changed().await.is_ok() {
            let state = *link.borrow();
            match state {
                LinkState::Down { attempts: 0 } => eprintln!("link down: reconnecting"),
                LinkState::Up { connection } => eprintln!("link back (connection {connection})"),
                _ => {}
            }
        }
    });
    for n in 1..=calls {
        let answer: String = client.request("tick", &n).await?;
        println!("{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.close().await;
    Ok(())
}
