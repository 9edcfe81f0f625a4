//! What breaks, and what is left after: killed server and client
//! processes, broker connections cut from the broker side, clients that
//! close (no queue stays behind).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::{Client, Error, LinkState, Reconnect, Router, Server};
use tokio::sync::mpsc;

use crate::common::*;

pub async fn a_killed_server_instance_fails_pending_requests_within_seconds() {
    let connector = connector("killed-server");
    let (process, _stdout) = child("server", &connector).await;
    let mut process = Killed(process);
    let client = Client::connect(&connector).await.unwrap();
    let instance: String = client.request("instance", &()).await.unwrap();
    assert_eq!(instance, "child");
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &120_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    process.0.kill().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending request failed well before its 120 s")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    eprintln!(
        "pending request failed {:?} after SIGKILL",
        killed_at.elapsed()
    );
    // Nothing of the dead instance stays on the broker.
    let service = service_of(&connector);
    wait_for_queues(&service, "the killed instance's queues", |q| q.is_empty()).await;
}

pub async fn a_killed_client_process_fails_the_servers_request_and_leaves_no_queue() {
    let connector = connector("killed-client");
    let service = service_of(&connector);
    let server = Server::bind(&connector, Router::new()).await.unwrap();
    let (process, _stdout) = child("client", &connector).await;
    let mut process = Killed(process);
    tokio::time::timeout(Duration::from_secs(30), server.wait_for_clients(1))
        .await
        .unwrap();
    // Service queue, and two inboxes and two presence queues.
    assert_eq!(queues_of(&service).len(), 5, "{:?}", queues_of(&service));
    let peer = server.client("doomed").unwrap();
    let pending = tokio::spawn(async move { peer.request::<_, ()>("hang", &()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.0.kill().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the server's request failed within seconds")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    // Only the service queue stays while the instance lives...
    // (named by the secret's fingerprint: PROTOCOL.md §7)
    let service_queue = format!("sb.{service}.k.");
    wait_for_queues(
        &service,
        "the dead client's link",
        |q| matches!(q, [only] if only.starts_with(&service_queue)),
    )
    .await;
    // ...and it goes with the instance.
    drop(server);
    wait_for_queues(&service, "the service queue", |q| q.is_empty()).await;
}

pub async fn clients_that_close_leave_nothing_behind() {
    let connector = connector("cleanup");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    for _ in 0..3 {
        let client = Client::connect(&connector).await.unwrap();
        let _: Value = client.request("echo", &1).await.unwrap();
        client.close().await;
    }
    let dropped = Client::connect(&connector).await.unwrap();
    drop(dropped);
    // (named by the secret's fingerprint: PROTOCOL.md §7)
    let service_queue = format!("sb.{service}.k.");
    wait_for_queues(
        &service,
        "closed clients' links",
        |q| matches!(q, [only] if only.starts_with(&service_queue)),
    )
    .await;
    server.shutdown().await;
    wait_for_queues(&service, "the service queue", |q| q.is_empty()).await;
}

/// Closes, from the broker side, the broker connections of `service` (its
/// server instances' and its clients') and no other; returns how many.
fn cut_connections_of(service: &str) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    // The connection name ("switchboard client <service>") ends the
    // property with a quote, so a longer service name does not match.
    let name_end = format!(" {service}\"}}");
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(&name_end))
        .filter_map(|line| line.split('\t').next())
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "switchboard test: cut"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(
            status.success(),
            "rabbitmqctl close_connection {pid} failed"
        );
    }
    pids.len()
}

pub async fn cutting_the_broker_connections_fails_pending_requests_and_clients_come_back() {
    let connector = connector("cut");
    let service = service_of(&connector);
    let (errors_tx, _errors) = mpsc::unbounded_channel();
    let server = Server::builder(router("a"))
        .on_error(move |e| {
            let _ = errors_tx.send(e.to_string());
        })
        .bind(&connector)
        .await
        .unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &120_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut_at = Instant::now();
    // The server instance's and the client's: this test's only.
    assert_eq!(cut_connections_of(&service), 2);
    let result = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the pending request failed well before its 120 s")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    eprintln!(
        "pending request failed {:?} after the cut",
        cut_at.elapsed()
    );
    // The server instance reconnects to the broker; new clients reach it.
    let again = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let answer: Value = again.request("echo", &"back").await.unwrap();
    assert_eq!(answer, json!("back"));
    again.close().await;
    server.shutdown().await;
}

pub async fn a_reconnecting_client_comes_back_after_its_broker_connection_is_cut() {
    let connector = connector("reconnect-cut");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::builder(&connector)
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(20)))
        .connect()
        .await
        .unwrap();
    let answer: Value = client.request("echo", &"before").await.unwrap();
    assert_eq!(answer, json!("before"));
    let mut state = client.link_state();
    assert_eq!(cut_connections_of(&service), 2);
    // Once the client knows its link is down, requests made meanwhile wait
    // for it to return (the server instance reconnects to the broker too),
    // within their timeout.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            state.changed().await.unwrap();
            if !matches!(*state.borrow(), LinkState::Up { connection: 0 }) {
                break;
            }
        }
    })
    .await
    .expect("the client never noticed the cut");
    let answer: Value = client
        .request_timeout("echo", &"after", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(answer, json!("after"));
    server.shutdown().await;
}
