//! Requests, notifications and failures over real sockets, with server and
//! clients in this process (child processes are in `processes.rs`): every
//! connector kind, errors that say whose fault, panics, many clients,
//! answers out of order, both directions, and secrets. The rest of the
//! conversation is in `timeouts.rs`, `raw_protocol.rs`, `lifecycle.rs` and
//! `payloads.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::code;
use switchboard::{
    Client, Connector, Context, Error, Format, HandlerError, Router, Secret, Server,
};
use tokio::sync::mpsc;

mod support;

use support::conversation::{next_error, server_with_errors, test_router};

#[tokio::test]
async fn request_response_and_throw_over_every_connector_kind() {
    let connectors = [
        Connector::local(),
        Connector::local().with_format(Format::MsgPack),
        Connector::tcp("127.0.0.1", 0).unwrap(),
    ];
    for connector in connectors {
        let (tx, mut thrown) = mpsc::unbounded_channel();
        let router = test_router().route("note", move |v: Value| {
            let tx = tx.clone();
            async move {
                tx.send(v).unwrap();
                Ok::<_, HandlerError>(())
            }
        });
        let server = Server::bind(&connector, router).await.unwrap();
        if let switchboard::Address::Tcp { port, .. } = server.connector().address() {
            assert_ne!(*port, 0, "the bound connector carries the real port");
        }
        let client = Client::connect(server.connector()).await.unwrap();
        // Not chosen: the fastest both sides have.
        let expected = connector.format().unwrap_or(Format::MsgPack);
        assert_eq!(client.peer().format(), expected);
        // The OS names the process at the other end of a local connection.
        let expected_pid = connector.address().is_local().then(std::process::id);
        assert_eq!(client.peer().process_id(), expected_pid);
        let echoed: Value = client
            .request("echo", &json!({"k": [1, "two", null]}))
            .await
            .unwrap();
        assert_eq!(echoed, json!({"k": [1, "two", null]}));
        let sum: i64 = client.request("add", &(40, 2)).await.unwrap();
        assert_eq!(sum, 42);
        client
            .throw("note", &json!("fire and forget"))
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), thrown.recv())
            .await
            .unwrap();
        assert_eq!(got, Some(json!("fire and forget")));
    }
}

#[tokio::test]
async fn errors_say_whose_fault() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Client::connect(server.connector()).await.unwrap();

    match client.request::<_, Value>("nope", &()).await {
        Err(Error::NoSuchRoute { route }) => assert_eq!(route, "nope"),
        other => panic!("{other:?}"),
    }
    match client.request::<_, Value>("add", &"not a pair").await {
        Err(Error::BadRequest { message }) => assert!(message.contains("add"), "{message}"),
        other => panic!("{other:?}"),
    }
    match client.request::<_, Value>("fail", &"disk on fire").await {
        Err(Error::HandlerFailed {
            code: c, message, ..
        }) => {
            assert_eq!(c, code::HANDLER_FAILED);
            assert_eq!(message, "disk on fire");
        }
        other => panic!("{other:?}"),
    }
    // The response decodes into the wrong type: the caller's own fault.
    assert!(matches!(
        client.request::<_, Vec<String>>("add", &(1, 2)).await,
        Err(Error::Decode(_))
    ));
    // The connection is still fine after all of that.
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn handler_panic_becomes_an_error_response_and_the_server_keeps_serving() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    match client.request::<_, ()>("panic", &()).await {
        Err(Error::HandlerFailed {
            code: c, message, ..
        }) => {
            assert_eq!(c, code::INTERNAL_ERROR);
            assert!(message.contains("deliberate panic"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
    let other = Client::connect(server.connector()).await.unwrap();
    assert_eq!(other.request::<_, i64>("add", &(3, 3)).await.unwrap(), 6);
}

#[tokio::test]
async fn many_clients_at_once() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let connector = server.connector().clone();
    let mut tasks = Vec::new();
    for n in 0..24i64 {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(&connector)
                .id(format!("c{n}"))
                .connect()
                .await?;
            for i in 0..25i64 {
                let sum: i64 = client.request("add", &(n, i)).await?;
                assert_eq!(sum, n + i);
            }
            let me: String = client.request("whoami", &()).await?;
            assert_eq!(me, format!("c{n}"));
            Ok::<_, Error>(client)
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.unwrap().unwrap());
    }
    assert_eq!(server.clients().len(), 24);
    drop(clients);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !server.clients().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("disconnected clients leave the server's list");
}

#[tokio::test]
async fn concurrent_requests_on_one_connection_are_answered_out_of_order() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let (tx, mut finished) = mpsc::unbounded_channel();
    let sleeps = [600u64, 500, 400, 300, 200, 100];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ms in sleeps {
        let (client, tx) = (Arc::clone(&client), tx.clone());
        tasks.push(tokio::spawn(async move {
            let answer: u64 = client.request("sleep", &ms).await.unwrap();
            assert_eq!(answer, ms);
            tx.send(ms).unwrap();
        }));
        // Send in a known order: longest first.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop(tx);
    let mut order = Vec::new();
    while let Some(ms) = finished.recv().await {
        order.push(ms);
    }
    assert_eq!(
        order,
        vec![100, 200, 300, 400, 500, 600],
        "responses arrive as handlers finish"
    );
    // Run one after another they would take 2.1 s; together about 0.6 s.
    assert!(
        started.elapsed() < Duration::from_millis(1800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn both_directions_server_calls_clients() {
    let (tx, mut notes) = mpsc::unbounded_channel();
    let client_router = |name: &'static str, tx: mpsc::UnboundedSender<String>| {
        Router::new()
            .route(
                "double",
                |n: i64| async move { Ok::<_, HandlerError>(n * 2) },
            )
            .route("name", move || async move { Ok::<_, HandlerError>(name) })
            .route("note", move |text: String| {
                let tx = tx.clone();
                async move {
                    tx.send(format!("{name}: {text}")).unwrap();
                    Ok::<_, HandlerError>(())
                }
            })
    };
    // The server's handler calls the client back while answering it.
    let router = Router::new().route("ask_me_back", |ctx: Context, n: i64| async move {
        let doubled: i64 = ctx.request("double", &n).await?;
        Ok::<_, HandlerError>(doubled + 1)
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let a = Client::builder(server.connector())
        .id("a")
        .router(client_router("a", tx.clone()))
        .connect()
        .await
        .unwrap();
    let b = Client::builder(server.connector())
        .id("b")
        .router(client_router("b", tx))
        .connect()
        .await
        .unwrap();
    server.wait_for_clients(2).await;

    assert_eq!(
        server.request::<_, i64>("a", "double", &21).await.unwrap(),
        42
    );
    assert_eq!(
        server.request::<_, String>("b", "name", &()).await.unwrap(),
        "b"
    );
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..4 {
        answered.insert(server.request_any::<_, String>("name", &()).await.unwrap());
    }
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        ["a", "b"],
        "request_any takes turns"
    );
    assert_eq!(a.request::<_, i64>("ask_me_back", &5).await.unwrap(), 11);

    server.throw("a", "note", "just for a").await.unwrap();
    assert_eq!(server.broadcast("note", "for everyone").await, 2);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), notes.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(got, ["a: for everyone", "a: just for a", "b: for everyone"]);

    assert!(matches!(
        server.request::<_, i64>("zed", "double", &1).await,
        Err(Error::UnknownClient(_))
    ));
    drop((a, b));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !server.clients().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        server.request_any::<_, i64>("double", &1).await,
        Err(Error::NoClients)
    ));
}

#[tokio::test]
async fn wrong_secret_is_refused_on_both_sides() {
    let connector = Connector::local();
    let (server, mut errors) = server_with_errors(&connector).await;
    let impostor = server.connector().clone().with_secret(Secret::generate());
    match Client::connect(&impostor).await {
        Err(Error::AuthFailed(message)) => {
            assert!(message.contains("different secret"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let reported = next_error(&mut errors).await;
    assert!(reported.starts_with("AuthFailed"), "{reported}");
    assert!(reported.contains("secret"), "{reported}");

    // A client without any secret is refused too, with its own reason.
    let anonymous = server.connector().clone().without_secret();
    match Client::connect(&anonymous).await {
        Err(Error::AuthFailed(message)) => {
            assert!(message.contains("requires a secret"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(next_error(&mut errors).await.contains("has none"));

    // The rightful client still gets in.
    let client = Client::connect(server.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn a_client_with_a_secret_refuses_a_server_without_one() {
    let server = Server::bind(&Connector::local().without_secret(), test_router())
        .await
        .unwrap();
    let with_secret = server.connector().clone().with_secret(Secret::generate());
    assert!(matches!(
        Client::connect(&with_secret).await,
        Err(Error::AuthFailed(_))
    ));
    let open = Client::connect(server.connector()).await.unwrap();
    assert_eq!(open.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
}
