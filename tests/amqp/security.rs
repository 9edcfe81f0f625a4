//! What someone with the wrong secret or with broker access can do, and
//! that the broker password never shows.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::{Client, Connector, Error, Router, Secret, Server};
use tokio::sync::mpsc;

use crate::broker;
use crate::common::*;

pub async fn a_wrong_secret_is_refused() {
    let connector = connector("wrong-secret");
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let wrong = connector.clone().with_secret(Secret::generate());
    let started = Instant::now();
    let result = Client::builder(&wrong)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    // No instance holds that secret, so none is reached (PROTOCOL.md §7,
    // "Instances"): told so, not an authentication failure.
    // (On a loaded machine the 2 s may run out on the way to the broker
    // instead; never is it an authentication failure.)
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if source.to_string().contains("holds this connector's secret")
                || source.kind() == std::io::ErrorKind::TimedOut),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "gave up at the connect timeout"
    );
    // No secret at all finds no instance either.
    let none = connector.clone().without_secret();
    let result = Client::builder(&none)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if source.to_string().contains("without a secret")
                || source.kind() == std::io::ErrorKind::TimedOut),
        "{result:?}"
    );
    // And the right one still works.
    let client = Client::connect(&connector).await.unwrap();
    let _: Value = client.request("echo", &1).await.unwrap();
    client.close().await;
    server.shutdown().await;
}

pub fn the_connector_string_round_trips_and_hides_the_password() {
    let password = "pw-Zq8-never-shown";
    let connector = Connector::amqp(
        format!("amqp://app:{password}@127.0.0.1:5672/%2f"),
        "jobs.v1",
    )
    .unwrap()
    .with_secret(Secret::from_bytes(b"secret-bytes-NEVER-SHOWN".to_vec()).unwrap());
    let dumped = connector.dump_state();
    assert!(dumped.starts_with("sb1:"));
    assert!(
        dumped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b)),
        "{dumped}"
    );
    let loaded = Connector::load_state(&dumped).unwrap();
    assert_eq!(loaded, connector);
    assert_eq!(loaded.address().kind(), "amqp");
    assert!(!loaded.address().is_local());
    let secret = "NEVER-SHOWN";
    for shown in [
        format!("{connector}"),
        format!("{connector:?}"),
        format!("{}", connector.address()),
        format!("{:?}", connector.address()),
    ] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    // Bad input is refused without echoing the password.
    for (url, service) in [
        (format!("http://app:{password}@h"), "ok"),
        (format!("amqp://app:{password}@h"), "bad name"),
        (format!("amqps://app:{password}@h"), "ok"),
    ] {
        let error = Connector::amqp(&url, service).unwrap_err();
        assert!(!error.to_string().contains(password), "{error}");
        assert!(!format!("{error:?}").contains(password), "{error:?}");
    }
}

pub async fn connect_errors_do_not_show_the_password() {
    let password = "pw-Kk3-never-shown";
    // Nothing listens on port 1.
    let connector = Connector::amqp(format!("amqp://app:{password}@127.0.0.1:1/%2f"), "x").unwrap();
    let error = Client::builder(&connector)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(!error.to_string().contains(password), "{error}");
    assert!(!format!("{error:?}").contains(password), "{error:?}");
    let bind = Server::bind(&connector, Router::new()).await.unwrap_err();
    assert!(!bind.to_string().contains(password), "{bind}");
    assert!(!format!("{bind:?}").contains(password), "{bind:?}");
}

pub async fn bytes_injected_by_someone_with_broker_access_end_the_connection() {
    let connector = connector("inject");
    let service = service_of(&connector);
    let (errors_tx, mut errors) = mpsc::unbounded_channel();
    let server = Server::builder(router("a"))
        .on_error(move |e| {
            let _ = errors_tx.send(format!("{e:?}"));
        })
        .bind(&connector)
        .await
        .unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let _: Value = client.request("echo", &1).await.unwrap();
    let server_inbox = queues_of(&service)
        .into_iter()
        .find(|q| q.contains(".s.") && !q.ends_with(".alive"))
        .expect("the instance's inbox for this client");
    // A well-formed frame (a notification) with a forged tag, published
    // by another broker user straight into the instance's inbox.
    let intruder =
        lapin::Connection::connect(&broker::url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = intruder.create_channel().await.unwrap();
    let mut forged = vec![8, 0, 0, 0, 2, 4, 0, b'e', b'c', b'h', b'o', b'1'];
    forged.extend_from_slice(&[0u8; 32]);
    channel
        .basic_publish(
            "".into(),
            server_inbox.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &forged,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    let reported = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .expect("the server reports the forged message")
        .unwrap();
    assert!(reported.contains("integrity"), "{reported}");
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the client's connection ends too");
    assert!(matches!(
        client.request::<_, Value>("echo", &2).await,
        Err(Error::Disconnected | Error::Closed)
    ));
    let _ = intruder.close(200, "done".into()).await;
    server.shutdown().await;
}
