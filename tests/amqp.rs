#![cfg(feature = "amqp")]
//! smoke
use serde_json::{Value, json};
use std::time::Duration;
use switchboard::{Client, Connector, HandlerError, Router, Server};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[tokio::test]
async fn smoke() {
    let connector = Connector::amqp(URL, "smoke-test").unwrap();
    let router = Router::new().route("echo", |v: Value| async move { Ok::<_, HandlerError>(v) });
    let server = Server::builder(router)
        .on_error(|e| eprintln!("server error: {e}"))
        .bind(&connector)
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let client = Client::connect(server.connector()).await.unwrap();
    eprintln!("connected in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    for i in 0..100 {
        let v: Value = client.request("echo", &json!({"i": i})).await.unwrap();
        assert_eq!(v, json!({"i": i}));
    }
    eprintln!("100 rtt in {:?}", t.elapsed());
    client.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.shutdown().await;
}
