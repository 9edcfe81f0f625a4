//! Several server instances bound to one broker service, against the real
//! RabbitMQ on 127.0.0.1:5672 (guest/guest): what PROTOCOL.md §7
//! ("Instances") promises for one instance, several with one secret, and
//! several with different secrets.
//!
//! Without a broker each test says so on stderr, by name, and passes; with
//! `SWITCHBOARD_REQUIRE_BROKER` set (CI) it fails instead
//! (tests/support/broker.rs).
#![cfg(all(feature = "amqp", not(windows)))]

#[allow(dead_code)]
#[path = "support/broker.rs"]
mod broker;

use std::collections::HashSet;
use std::time::Duration;

use switchboard::{Client, Connector, Error, Router, Server};

fn url() -> String {
    broker::url()
}

/// Whether the broker answers; announces the skip when it does not.
fn broker(test: &str) -> bool {
    broker::answers_or_skip(test)
}

/// A service name no other test or run uses.
fn service(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("test-{test}-{}-{nanos:x}", std::process::id())
}

/// An instance whose `who` route answers with its own label.
async fn instance(connector: &Connector, label: &'static str) -> Server {
    let router = Router::new().route("who", move |(): ()| async move { label });
    Server::bind(connector, router).await.unwrap()
}

/// Connects afresh `count` times and asks who answered; panics on any
/// failure (an authentication failure above all).
async fn who_answers(connector: &Connector, count: usize) -> Vec<String> {
    let mut answers = Vec::new();
    for i in 0..count {
        let client = Client::builder(connector)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
        let who: String = client
            .request("who", &())
            .await
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        answers.push(who);
        client.close().await;
    }
    answers
}

#[tokio::test]
async fn one_instance_serves_its_clients_and_a_stranger_is_told_no_instance_holds_its_secret() {
    if !broker("one_instance") {
        return;
    }
    let connector = Connector::amqp(url(), service("one")).unwrap();
    let server = instance(&connector, "a").await;
    assert!(
        who_answers(server.connector(), 5)
            .await
            .iter()
            .all(|who| who == "a")
    );
    // Same service, another secret: no instance holds it.
    let stranger = Connector::amqp(url(), amqp_service(&connector)).unwrap();
    // Every attempt hears from the broker that no instance consumes the
    // stranger's queue, and the client keeps asking until its deadline; the
    // error must name that answer even when the deadline cuts an attempt
    // in flight (a CI run once got a bare "connect timed out"). 10 s lets
    // a broker on a loaded machine answer at least once.
    let error = Client::builder(&stranger)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(!matches!(error, Error::AuthFailed(_)), "{error:?}");
    assert!(
        message.contains("holds this connector's secret"),
        "{message}"
    );
    drop(server);
}

fn amqp_service(connector: &Connector) -> String {
    match connector.address() {
        switchboard::Address::Amqp { service, .. } => service.clone(),
        other => panic!("not a broker connector: {other}"),
    }
}

#[tokio::test]
async fn instances_sharing_a_secret_share_the_clients() {
    if !broker("instances_sharing_a_secret") {
        return;
    }
    let connector = Connector::amqp(url(), service("shared")).unwrap();
    let first = instance(&connector, "first").await;
    // The second joins with the first's connector: the same secret.
    let second = instance(first.connector(), "second").await;
    let answers = who_answers(&connector, 20).await;
    let seen: HashSet<_> = answers.iter().map(String::as_str).collect();
    assert_eq!(
        seen,
        HashSet::from(["first", "second"]),
        "20 clients should reach both instances: {answers:?}"
    );
    drop((first, second));
}

#[tokio::test]
async fn instances_with_different_secrets_never_see_each_others_clients() {
    if !broker("instances_with_different_secrets") {
        return;
    }
    let name = service("split");
    // Two `Connector::amqp` calls: two fresh secrets, one service name.
    let (one, other) = (
        Connector::amqp(url(), &name).unwrap(),
        Connector::amqp(url(), &name).unwrap(),
    );
    let (first, second) = (
        instance(&one, "first").await,
        instance(&other, "second").await,
    );
    // Interleaved, so a mix-up would show: every call reaches its own
    // instance, none fails authentication.
    for _ in 0..10 {
        assert_eq!(who_answers(&one, 1).await, ["first"]);
        assert_eq!(who_answers(&other, 1).await, ["second"]);
    }
    drop((first, second));
}
