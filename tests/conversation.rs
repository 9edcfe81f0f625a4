//! Requests, notifications and failures over real sockets, with server and
//! clients in this process (child processes are in `processes.rs`).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::code;
use switchboard::{
    Bytes, Client, Connector, Context, Error, Format, HandlerError, Router, Secret, Server,
};
use tokio::sync::mpsc;

/// The protocol version PROTOCOL.md describes.
const VERSION: u32 = 4;

fn test_router() -> Router {
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
async fn server_with_errors(connector: &Connector) -> (Server, mpsc::UnboundedReceiver<String>) {
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

async fn next_error(errors: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), errors.recv())
        .await
        .expect("the server reported no error within 5 s")
        .expect("error channel closed")
}

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

/// The test routes and `forever`, which never answers; the receiver hears
/// of every `forever` handler that was stopped.
fn with_forever() -> (Router, mpsc::UnboundedReceiver<()>) {
    let (tx, dropped) = mpsc::unbounded_channel::<()>();
    struct OnDrop(mpsc::UnboundedSender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let router = test_router().route("forever", move |_: ()| {
        let guard = OnDrop(tx.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<(), HandlerError>(())
        }
    });
    (router, dropped)
}

#[tokio::test]
async fn timeout_cancels_the_handler_and_keeps_the_connection() {
    let (router, mut dropped) = with_forever();
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let result = client
        .request_timeout::<_, ()>("forever", &(), Duration::from_millis(100))
        .await;
    assert!(
        matches!(result, Err(Error::Timeout(d)) if d == Duration::from_millis(100)),
        "{result:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), dropped.recv())
        .await
        .expect("the cancel reached the server and stopped the handler");
    assert_eq!(client.request::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_timeouts_expire_on_time_many_at_once_and_stop_their_handlers() {
    // Requests with the connection's default timeout are timed out by one
    // sweep per connection, not a timer each: they must still end on time,
    // not early, each one cancelled on the server, and a shorter or longer
    // timeout of a call's own must keep working next to them.
    let (router, mut dropped) = with_forever();
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let limit = Duration::from_millis(300);
    let mut config = switchboard::Config::default();
    config.request_timeout = Some(limit);
    let client = Client::builder(server.connector())
        .config(config)
        .connect()
        .await
        .unwrap();
    let client = Arc::new(client);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let client = Arc::clone(&client);
        calls.spawn(async move {
            // Staggered, so deadlines are spread over the sweep's horizon.
            tokio::time::sleep(Duration::from_millis(5 * i)).await;
            let started = Instant::now();
            let outcome = client.request::<_, ()>("forever", &()).await;
            (started.elapsed(), outcome)
        });
    }
    // A call's own timeout, sooner than the next sweep and later than it.
    let own = |limit: u64| {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = client
                .request_timeout::<_, ()>("forever", &(), Duration::from_millis(limit))
                .await;
            (started.elapsed(), outcome)
        })
    };
    let (short, long) = (own(50), own(700));
    while let Some(call) = tokio::time::timeout(Duration::from_secs(10), calls.join_next())
        .await
        .expect("a timeout never fired")
    {
        let (took, outcome) = call.unwrap();
        assert!(
            matches!(outcome, Err(Error::Timeout(d)) if d == limit),
            "{outcome:?}"
        );
        assert!(took >= limit, "timed out early: after {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "timed out late: after {took:?}"
        );
    }
    for (call, limit) in [(short, 50), (long, 700)] {
        let (took, outcome) = call.await.unwrap();
        let limit = Duration::from_millis(limit);
        assert!(
            matches!(outcome, Err(Error::Timeout(d)) if d == limit),
            "{outcome:?}"
        );
        assert!(
            took >= limit && took < limit + Duration::from_secs(3),
            "{took:?} for {limit:?}"
        );
    }
    // Every one of the 42 was cancelled on the server.
    for _ in 0..42 {
        tokio::time::timeout(Duration::from_secs(5), dropped.recv())
            .await
            .expect("a timed-out request's handler was not stopped");
    }
    assert_eq!(client.request::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
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

/// A hand-written client speaking PROTOCOL.md directly, for sending what a
/// well-behaved client never would. Uses a connector without a secret.
struct Raw(RawStream);

#[cfg(unix)]
type RawStream = std::os::unix::net::UnixStream;
// A named pipe opened as a file is a byte stream like a socket.
#[cfg(windows)]
type RawStream = std::fs::File;

impl Raw {
    #[cfg(unix)]
    fn connect(connector: &Connector) -> Raw {
        let switchboard::Address::Unix(path) = connector.address() else {
            panic!("expected a unix connector")
        };
        let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw(stream)
    }

    #[cfg(windows)]
    fn connect(connector: &Connector) -> Raw {
        let switchboard::Address::Pipe(name) = connector.address() else {
            panic!("expected a pipe connector")
        };
        let path = format!(r"\\.\pipe\{name}");
        // The server opens its next pipe instance right after accepting one;
        // until then the pipe is busy.
        for _ in 0..200 {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            {
                Ok(file) => return Raw(file),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        panic!("could not open {path}");
    }

    fn send(&mut self, body: &[u8]) {
        self.0
            .write_all(&(body.len() as u32).to_le_bytes())
            .unwrap();
        self.0.write_all(body).unwrap();
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.0.read_exact(&mut header).ok()?;
        let mut body = vec![0; u32::from_le_bytes(header) as usize];
        self.0.read_exact(&mut body).ok()?;
        Some(body)
    }

    fn handshake(connector: &Connector, version: u32) -> (Raw, Value) {
        let mut raw = Raw::connect(connector);
        let hello = json!({
            "switchboard": version,
            "client_id": "raw",
            "formats": ["json"],
            "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "window": {"messages": 16, "bytes": 1048576},
        });
        raw.send(hello.to_string().as_bytes());
        let challenge: Value = serde_json::from_slice(&raw.receive().unwrap()).unwrap();
        if challenge.get("error").is_none() {
            raw.send(b"{}");
            let welcome: Value = serde_json::from_slice(&raw.receive().unwrap()).unwrap();
            assert_eq!(welcome["welcome"], json!(true), "{welcome}");
        }
        (raw, challenge)
    }

    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.0.read(&mut byte), Ok(0) | Err(_))
    }
}

/// Runs blocking raw-protocol work against `server` off the async runtime.
async fn raw_session<T: Send + 'static>(
    server: &Server,
    work: impl FnOnce(Connector) -> T + Send + 'static,
) -> T {
    let connector = server.connector().clone();
    tokio::task::spawn_blocking(move || work(connector))
        .await
        .unwrap()
}

#[tokio::test]
async fn version_mismatch_is_refused_and_named() {
    let (server, mut errors) = server_with_errors(&Connector::local().without_secret()).await;
    let (_raw, reply) = raw_session(&server, move |connector| Raw::handshake(&connector, 99)).await;
    assert_eq!(reply["error"]["code"], "version_mismatch", "{reply}");
    assert_eq!(reply["switchboard"], VERSION);
    let reported = next_error(&mut errors).await;
    assert!(
        reported.contains(&format!(
            "VersionMismatch {{ ours: {VERSION}, theirs: 99 }}"
        )),
        "{reported}"
    );
}

#[tokio::test]
async fn a_raw_client_following_protocol_md_gets_answers() {
    let server = Server::bind(&Connector::local().without_secret(), test_router())
        .await
        .unwrap();
    let answer = raw_session(&server, move |connector| {
        let (mut raw, challenge) = Raw::handshake(&connector, VERSION);
        assert_eq!(challenge["format"], "json");
        // request: kind 1, id 7, route "add", body [2,3]
        let mut frame = vec![1u8];
        frame.extend_from_slice(&7u64.to_le_bytes());
        frame.extend_from_slice(&3u16.to_le_bytes());
        frame.extend_from_slice(b"add");
        frame.extend_from_slice(b"[2,3]");
        raw.send(&frame);
        raw.receive().unwrap()
    })
    .await;
    assert_eq!(answer[0], 3, "a response");
    assert_eq!(u64::from_le_bytes(answer[1..9].try_into().unwrap()), 7);
    assert_eq!(&answer[9..], b"5");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let (server, mut errors) = server_with_errors(&Connector::local().without_secret()).await;
    let good = Client::connect(server.connector()).await.unwrap();

    // Garbage instead of a handshake.
    let closed = raw_session(&server, move |connector| {
        let mut raw = Raw::connect(&connector);
        raw.send(b"\xff\xfe not json at all");
        raw.receive();
        raw.closed_by_server()
    })
    .await;
    assert!(closed);
    assert!(
        next_error(&mut errors)
            .await
            .contains("malformed handshake")
    );

    // A valid handshake, then a frame of an unknown kind.
    let closed = raw_session(&server, move |connector| {
        let (mut raw, _) = Raw::handshake(&connector, VERSION);
        raw.send(b"\x63garbage");
        raw.closed_by_server()
    })
    .await;
    assert!(closed);
    assert!(
        next_error(&mut errors)
            .await
            .contains("unknown message kind 99")
    );

    // A truncated request.
    raw_session(&server, move |connector| {
        let (mut raw, _) = Raw::handshake(&connector, VERSION);
        raw.send(&[1, 0, 0]);
        assert!(raw.closed_by_server());
    })
    .await;
    assert!(next_error(&mut errors).await.contains("truncated"));

    assert_eq!(good.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn oversized_frames_are_refused_without_taking_the_server_down() {
    let connector = Connector::local()
        .without_secret()
        .with_max_frame(64 * 1024)
        .unwrap();
    let (server, mut errors) = server_with_errors(&connector).await;
    let client = Client::connect(server.connector()).await.unwrap();
    let big = "x".repeat(100 * 1024);

    // Our own side refuses to send it, and says why.
    match client.request::<_, Value>("echo", &big).await {
        Err(Error::FrameTooLarge { size, max }) => {
            assert!(size > 100 * 1024);
            assert_eq!(max, 64 * 1024);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    // A peer with a larger limit sends it anyway: the server closes that
    // connection, the requester fails at once instead of hanging.
    let lax = server
        .connector()
        .clone()
        .with_max_frame(1024 * 1024)
        .unwrap();
    let lax_client = Client::connect(&lax).await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        lax_client.request::<_, Value>("echo", &big),
    )
    .await
    .expect("the request fails instead of hanging");
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    let reported = next_error(&mut errors).await;
    assert!(reported.contains("FrameTooLarge"), "{reported}");
    assert!(reported.contains("max: 65536"), "{reported}");

    // A claimed length of 4 GiB before the handshake is refused on sight.
    raw_session(&server, move |connector| {
        let mut raw = Raw::connect(&connector);
        raw.0.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(raw.closed_by_server());
    })
    .await;
    assert!(next_error(&mut errors).await.contains("FrameTooLarge"));

    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
}

#[tokio::test]
async fn peer_death_fails_pending_requests_at_once() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.request::<_, u64>("sleep", &60_000u64).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    drop(server);
    for task in pending {
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("no hang")
            .unwrap();
        assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        client.request::<_, i64>("add", &(1, 2)).await,
        Err(Error::Disconnected)
    ));
}

#[tokio::test]
async fn graceful_shutdown_lets_running_requests_finish() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let dir = match server.connector().address() {
        switchboard::Address::Unix(path) => Some(path.parent().unwrap().to_path_buf()),
        _ => None,
    };
    let connector = server.connector().clone();
    let client = Arc::new(Client::connect(&connector).await.unwrap());
    let running = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.request::<_, u64>("sleep", &400u64).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // New work during the drain is turned away, not lost silently.
    let late = client.request::<_, i64>("add", &(1, 2)).await;
    assert!(
        matches!(late, Err(Error::ShuttingDown | Error::Disconnected)),
        "{late:?}"
    );
    assert_eq!(
        running.await.unwrap().unwrap(),
        400,
        "the in-flight request completed"
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    if let Some(dir) = dir {
        assert!(!dir.exists(), "the private directory is removed");
    }
    let refused = Client::builder(&connector)
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(matches!(refused, Err(Error::Connect { .. })), "{refused:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn private_directory_is_0700_and_removed_when_the_server_is_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let switchboard::Address::Unix(path) = server.connector().address().clone() else {
        panic!()
    };
    let dir = path.parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());
    assert!(!dir.exists());
}

#[cfg(unix)]
#[tokio::test]
async fn stale_socket_files_are_reclaimed_and_live_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A crashed server leaves its socket file behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let connector = Connector::unix_socket(&path).unwrap();
    let server = Server::bind(&connector, test_router()).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    match Server::bind(&connector, test_router()).await {
        Err(Error::AddrInUse { address }) => assert!(address.contains("app.sock"), "{address}"),
        other => panic!("{other:?}"),
    }
    // The refused second server must not have removed the first one's socket.
    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
    let another = Client::connect(&connector).await.unwrap();
    assert_eq!(another.request::<_, i64>("add", &(3, 3)).await.unwrap(), 6);
}

#[cfg(unix)]
#[tokio::test]
async fn socket_paths_over_the_platform_limit_get_a_clear_error() {
    let long = format!("/tmp/{}/s.sock", "d".repeat(120));
    match Server::bind(&Connector::unix_socket(long).unwrap(), test_router()).await {
        Err(Error::InvalidArgument { what, reason }) => {
            assert_eq!(what, "socket path");
            assert!(reason.contains("at most"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn clients_wait_for_a_server_that_starts_late() {
    let connector = Connector::local();
    let early = {
        let connector = connector.clone();
        tokio::spawn(async move { Client::connect(&connector).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = Server::bind(&connector, test_router()).await.unwrap();
    let client = early.await.unwrap().unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    let nobody = Connector::local();
    let result = Client::builder(&nobody)
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    match result {
        Err(Error::Connect { address, .. }) => assert_eq!(address, nobody.address().to_string()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reconnecting_client_keeps_its_identity() {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let router = Router::new().route("hello", move |ctx: Context, _: ()| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(ctx.client_id().to_owned())
        }
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let first = Client::builder(server.connector())
        .id("worker-7")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        first.request::<_, String>("hello", &()).await.unwrap(),
        "worker-7"
    );
    // Another client asking for the live id is refused...
    match Client::builder(server.connector())
        .id("worker-7")
        .connect()
        .await
    {
        Err(Error::Refused { reason }) => assert!(reason.contains("in use"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // ...but the same client, proving it held the id, replaces its old
    // connection.
    let second = Client::builder(server.connector())
        .resume(&first.resumption())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        second.request::<_, String>("hello", &()).await.unwrap(),
        "worker-7"
    );
    assert_eq!(server.clients(), ["worker-7"]);
    tokio::time::timeout(Duration::from_secs(5), first.closed())
        .await
        .expect("the old connection is closed");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_second_server_on_a_taken_address_gets_addr_in_use() {
    let first = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    match Server::bind(first.connector(), test_router()).await {
        Err(Error::AddrInUse { address }) => {
            assert_eq!(address, first.connector().address().to_string())
        }
        other => panic!("{other:?}"),
    }
    let client = Client::connect(first.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
    // Once the first server has shut down, the address is free again.
    let address = first.connector().clone();
    drop(client);
    first.shutdown().await;
    let second = Server::bind(&address, test_router()).await.unwrap();
    let client = Client::connect(second.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
}

#[tokio::test]
async fn large_bodies_round_trip_intact_again_and_again() {
    // Large frames reuse their buffers on both sides; a stale byte would show.
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    for format in [Format::Json, Format::MsgPack] {
        let connector = server.connector().clone().with_format(format);
        let client = Client::connect(&connector).await.unwrap();
        for (size, fill) in [
            (300_000, 'a'),
            (100_000, 'b'),
            (500_000, 'c'),
            (70_000, 'd'),
        ] {
            let text: String = std::iter::repeat_n(fill, size).collect();
            let echoed: String = client.request("echo", &text).await.unwrap();
            assert_eq!(echoed.len(), size);
            assert!(
                echoed.chars().all(|c| c == fill),
                "{format:?}, {size} bytes of {fill}"
            );
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Upload {
    name: String,
    data: Bytes,
}

#[tokio::test]
async fn byte_payloads_round_trip_and_stay_intact_when_held() {
    // Received `Bytes` may refer to the frame they came in; a handler that
    // keeps them must never see that memory reused for a later frame.
    let held = Arc::new(std::sync::Mutex::new(Vec::<Bytes>::new()));
    let keep = held.clone();
    let router = Router::new()
        .route(
            "echo",
            |data: Bytes| async move { Ok::<_, HandlerError>(data) },
        )
        .route("keep", move |upload: Upload| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(upload.data.clone());
                Ok::<_, HandlerError>(upload)
            }
        });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    for format in [Format::Json, Format::MsgPack] {
        held.lock().unwrap().clear();
        let connector = server.connector().clone().with_format(format);
        let client = Client::connect(&connector).await.unwrap();
        let sizes: &[usize] = match format {
            Format::Json => &[0, 1, 70_000],
            _ => &[0, 1, 32 * 1024 - 1, 32 * 1024, 100_000, 3 << 20, 70_000],
        };
        for (i, &size) in sizes.iter().enumerate() {
            let fill = i as u8 + 1;
            let data = Bytes::from(vec![fill; size]);
            let echoed: Bytes = client.request("echo", &data).await.unwrap();
            assert_eq!(echoed, data, "{format:?}, {size} bytes");
            let upload = Upload {
                name: format!("upload {i}"),
                data,
            };
            let back: Upload = client.request("keep", &upload).await.unwrap();
            assert_eq!(back, upload, "{format:?}, {size} bytes");
        }
        let held = held.lock().unwrap();
        assert_eq!(held.len(), sizes.len());
        for (i, (data, &size)) in held.iter().zip(sizes).enumerate() {
            assert_eq!(data.len(), size);
            assert!(
                data.iter().all(|&b| b == i as u8 + 1),
                "{format:?}: the payload held from request {i} changed"
            );
        }
    }
}

#[tokio::test]
async fn one_shared_payload_in_many_concurrent_requests() {
    let router = Router::new().route("sum", |data: Bytes| async move {
        Ok::<_, HandlerError>(data.iter().map(|&b| u64::from(b)).sum::<u64>())
    });
    let server = Server::bind(&Connector::local().with_format(Format::MsgPack), router)
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let data = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    // Queued together, the frames all refer to the one buffer.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, data) = (client.clone(), data.clone());
            tokio::spawn(async move { client.request::<_, u64>("sum", &data).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), expected);
    }
}

#[tokio::test]
async fn hundreds_in_flight_on_one_connection_each_get_their_own_answer() {
    // Bursts on both sides leave in batches; every response must still find
    // its request.
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let tasks: Vec<_> = (0..500i64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.request::<_, i64>("add", &(i, i)).await) })
        })
        .collect();
    for task in tasks {
        let (i, sum) = task.await.unwrap();
        assert_eq!(sum.unwrap(), 2 * i);
    }
}
