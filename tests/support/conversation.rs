//! Shared by the conversation tests (`conversation.rs`, `timeouts.rs`,
//! `raw_protocol.rs`, `lifecycle.rs`, `payloads.rs`): the routes they call
//! and a server that reports its connection-level errors.

use std::time::Duration;

use serde_json::Value;
use switchboard::{Connector, Context, HandlerError, Router, Server};
use tokio::sync::mpsc;

pub fn test_router() -> Router {
    Router::new()
        .route("echo", |v: Value| async move { Ok::<_, HandlerError>(v) })
        .route("add", |(a, b): (i64, i64)| async move {
            Ok::<_, HandlerError>(a + b)
        })
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
        .route("fail", |message: String| async move {
            Err::<(), _>(HandlerError::new(message))
        })
        .route("panic", |_: ()| async move {
            if true {
                panic!("deliberate panic in a handler");
            }
            Ok::<(), HandlerError>(())
        })
        .route("whoami", |ctx: Context, _: ()| async move {
            Ok::<_, HandlerError>(ctx.client_id().to_owned())
        })
}

/// A server whose connection-level errors arrive on a channel.
pub async fn server_with_errors(
    connector: &Connector,
) -> (Server, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = Server::builder(test_router())
        .on_error(move |e| {
            let _ = tx.send(format!("{e:?} / {e}"));
        })
        .bind(connector)
        .await
        .unwrap();
    (server, rx)
}

pub async fn next_error(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the server reported no error within 5 s")
        .expect("error channel closed")
}
