//! Conversations over the broker: requests, notifications and callbacks
//! both ways, bodies larger than one broker message, streams.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Bytes, Client, Error, Format, HandlerError, Router, Server};
use tokio::sync::mpsc;

use crate::common::*;

pub async fn requests_notifications_and_callbacks_both_ways() {
    for format in [Format::Json, Format::MsgPack] {
        let connector = connector("both-ways").with_format(format);
        let (tx, mut told) = mpsc::unbounded_channel();
        let server_tx = tx.clone();
        let server = Server::bind(
            &connector,
            router("a").route("told", move |v: Value| {
                let tx = server_tx.clone();
                async move {
                    let _ = tx.send(v);
                    Ok::<_, HandlerError>(())
                }
            }),
        )
        .await
        .unwrap();
        let client_routes = Router::new()
            .route(
                "double",
                |n: i64| async move { Ok::<_, HandlerError>(n * 2) },
            )
            .route("told", move |v: Value| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(v);
                    Ok::<_, HandlerError>(())
                }
            });
        let client = Client::builder(server.connector())
            .id("worker-1")
            .router(client_routes)
            .connect()
            .await
            .unwrap();
        assert_eq!(client.peer().format(), format);
        assert_eq!(client.peer().process_id(), None);

        // Client to server, many in flight.
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let peer = client.peer().clone();
                tokio::spawn(
                    async move { peer.request::<_, Value>("echo", &json!({"i": i})).await },
                )
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), json!({"i": i}));
        }
        // The server calls the client back inside a handler.
        let n: i64 = client.request("ask_back", &20).await.unwrap();
        assert_eq!(n, 41);
        // Server to client, by id.
        server.wait_for_clients(1).await;
        assert_eq!(server.clients(), vec!["worker-1".to_string()]);
        let doubled: i64 = server.request("worker-1", "double", &7).await.unwrap();
        assert_eq!(doubled, 14);
        server
            .throw("worker-1", "told", &json!({"from": "server-direct"}))
            .await
            .unwrap();
        client
            .throw("told", &json!({"from": "client"}))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let note = tokio::time::timeout(Duration::from_secs(10), told.recv())
                .await
                .expect("notifications arrive")
                .unwrap();
            seen.push(note["from"].as_str().unwrap().to_owned());
        }
        seen.sort();
        assert_eq!(seen, ["client", "server", "server-direct"]);
        // Errors still say whose fault it was.
        assert!(matches!(
            client.request::<_, Value>("nope", &()).await,
            Err(Error::NoSuchRoute { .. })
        ));
        // A timeout cancels the request; the connection stays usable.
        assert!(matches!(
            client
                .request_timeout::<_, u64>("sleep", &5_000u64, Duration::from_millis(200))
                .await,
            Err(Error::Timeout(_))
        ));
        let again: Value = client.request("echo", &"still here").await.unwrap();
        assert_eq!(again, json!("still here"));
        client.close().await;
        server.shutdown().await;
    }
}

pub async fn large_bodies_are_split_and_reassembled() {
    let connector = connector("large").with_format(Format::MsgPack);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let body = Bytes::from(body);
    let size: u64 = client.request("size", &body).await.unwrap();
    assert_eq!(size, body.len() as u64);
    let back: Bytes = client.request("bounce", &body).await.unwrap();
    assert!(back == body, "8 MiB came back intact");
    // JSON too (an array of numbers, much larger on the wire).
    let json_connector = connector.clone().with_format(Format::Json);
    let json_client = Client::connect(&json_connector).await.unwrap();
    let small = Bytes::from(vec![7u8; 1024 * 1024]);
    let size: u64 = json_client.request("size", &small).await.unwrap();
    assert_eq!(size, small.len() as u64);
    client.close().await;
    json_client.close().await;
    server.shutdown().await;
}

pub async fn streams_flow_over_the_broker_and_stop_when_dropped() {
    let connector = connector("streams");
    let router = Router::new()
        .route("count", |to: u32| async move {
            switchboard::Stream::iter(1..=to)
        })
        .route("endless", |_: ()| async move {
            switchboard::Stream::iter(0u64..)
        });
    let server = Server::bind(&connector, router).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let items = client
        .request_stream::<_, u32>("count", &500)
        .await
        .unwrap();
    assert_eq!(
        items.collect().await.unwrap(),
        (1..=500).collect::<Vec<_>>()
    );
    // An endless stream dropped after a few items: the producer is
    // cancelled and the connection carries on.
    let mut endless = client
        .request_stream::<_, u64>("endless", &())
        .await
        .unwrap();
    for expected in 0..10 {
        assert_eq!(endless.next().await.unwrap().unwrap(), expected);
    }
    drop(endless);
    let again = client.request_stream::<_, u32>("count", &3).await.unwrap();
    assert_eq!(again.collect().await.unwrap(), [1, 2, 3]);
    client.close().await;
    server.shutdown().await;
}
