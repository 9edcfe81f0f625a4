//! How broker connections are made and kept: waiting for a server until
//! the connect timeout, surviving the runtime of an earlier attempt and the
//! presence token renewal.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::{Client, Connector, Error, Server};

use crate::broker;
use crate::common::*;

pub async fn connecting_waits_for_a_server_until_the_connect_timeout() {
    let connector = connector("no-server");
    let started = Instant::now();
    let result = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    // "Not found" from the last attempt, or the deadline cut an attempt.
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::TimedOut)),
        "{result:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it retried"
    );
    // A server that starts while the client is trying is found.
    let late = connector.clone();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Server::bind(&late, router("late")).await.unwrap()
    });
    let client = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let instance: String = client.request("instance", &()).await.unwrap();
    assert_eq!(instance, "late");
    client.close().await;
    server.await.unwrap().shutdown().await;
}

/// A client attempt that finds no server keeps its broker connection for
/// the next attempt. lapin sends a connection's heartbeats from a task on
/// the runtime that opened it, so an attempt on another runtime must not
/// take it: once that runtime ends, the broker drops the connection for
/// missed heartbeats and with it a healthy link (this is what dropped
/// connections "at the 60 s renewal" when the tests ran together: each
/// `#[tokio::test]` has its own runtime, and RabbitMQ's default heartbeat
/// is 60 s).
pub async fn a_connection_outlives_the_runtime_of_an_earlier_attempt() {
    let service = service_of(&connector("other-runtime"));
    // A 2 s heartbeat: the broker drops a silent connection within seconds.
    let connector = Connector::amqp(format!("{}?heartbeat=2", broker::url()), service).unwrap();
    let early = connector.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(
            Client::builder(&early)
                .connect_timeout(Duration::from_secs(1))
                .connect(),
        );
        assert!(
            matches!(&result, Err(Error::Connect { .. })),
            "no server yet: {result:?}"
        );
    })
    .join()
    .unwrap();
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    // Several heartbeat timeouts, longer than the links' keepalive interval.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let answer: Value = client.request("echo", &"still here").await.unwrap();
    assert_eq!(answer, json!("still here"));
    client.close().await;
    server.shutdown().await;
}

/// Each side renews its presence token every 60 s (so the broker's
/// consumer_timeout never closes its channel); a renewal must not look like
/// the peer going away.
pub async fn connections_outlive_the_presence_token_renewal() {
    let connector = connector("renewal");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    tokio::time::sleep(Duration::from_secs(70)).await;
    let answer: Value = client.request("echo", &"after renewal").await.unwrap();
    assert_eq!(answer, json!("after renewal"));
    // Each presence queue holds exactly its one token, unacknowledged.
    let output = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    let presence: Vec<&str> = listing
        .lines()
        .filter(|line| line.starts_with(&format!("sb.{service}")) && line.contains(".alive"))
        .collect();
    assert_eq!(presence.len(), 2, "{listing}");
    for line in presence {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1..], ["0", "1"], "{line}");
    }
    client.close().await;
    server.shutdown().await;
}
