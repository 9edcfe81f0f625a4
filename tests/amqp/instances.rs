//! Several server instances bound to one service: how clients spread over
//! them, many clients on one, a reconnecting client moving between them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Client, LinkState, Reconnect, Server};

use crate::common::*;

pub async fn two_instances_share_the_clients_and_each_client_stays_with_one() {
    let connector = connector("two-instances");
    let a = Server::bind(&connector, router("a")).await.unwrap();
    let b = Server::bind(&connector, router("b")).await.unwrap();
    let mut clients = Vec::new();
    for n in 0..8 {
        clients.push(
            Client::builder(&connector)
                .id(format!("c{n}"))
                .connect()
                .await
                .unwrap(),
        );
    }
    let mut per_instance = std::collections::BTreeMap::new();
    for client in &clients {
        let first: String = client.request("instance", &()).await.unwrap();
        for _ in 0..5 {
            let again: String = client.request("instance", &()).await.unwrap();
            assert_eq!(again, first, "a client's calls stay on one instance");
        }
        *per_instance.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        per_instance.len(),
        2,
        "both instances got clients: {per_instance:?}"
    );
    assert_eq!(a.clients().len() + b.clients().len(), 8);
    assert_eq!(a.clients().len(), per_instance["a"]);
    // When one instance goes, new clients reach the other.
    drop(clients);
    a.shutdown().await;
    for _ in 0..3 {
        let client = Client::connect(&connector).await.unwrap();
        let instance: String = client.request("instance", &()).await.unwrap();
        assert_eq!(instance, "b");
    }
}

pub async fn many_clients_in_flight_on_one_instance() {
    let connector = connector("many");
    let server = Arc::new(Server::bind(&connector, router("a")).await.unwrap());
    let mut tasks = Vec::new();
    for n in 0..6 {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(&connector)
                .id(format!("m{n}"))
                .connect()
                .await
                .unwrap();
            for i in 0..30 {
                let v: Value = client.request("echo", &json!([n, i])).await.unwrap();
                assert_eq!(v, json!([n, i]));
            }
            client.close().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop(server);
}

pub async fn a_reconnecting_client_moves_to_a_live_instance_when_its_own_dies() {
    let connector = connector("reconnect-instances");
    // The first instance is a process we can kill; the second lives here.
    let (process, _stdout) = child("server", &connector).await;
    let mut process = Killed(process);
    let client = Client::builder(&connector)
        .id("mover")
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(20)))
        .connect()
        .await
        .unwrap();
    let first: String = client.request("instance", &()).await.unwrap();
    assert_eq!(first, "child");
    let survivor = Server::bind(&connector, router("survivor")).await.unwrap();
    let mut state = client.link_state();
    process.0.kill().unwrap();
    // The dead instance is noticed (its presence token comes back), the
    // link goes down and comes back up, on the instance that is left.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            state.changed().await.unwrap();
            if matches!(*state.borrow(), LinkState::Up { connection: 1.. }) {
                break;
            }
        }
    })
    .await
    .expect("the client never reconnected");
    let now: String = client.request("instance", &()).await.unwrap();
    assert_eq!(now, "survivor");
    assert_eq!(client.id(), "mover", "the client kept its id");
    assert_eq!(survivor.clients(), ["mover"]);
}
