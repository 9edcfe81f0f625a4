//! Under pressure: floods in both directions, budgets that hold against
//! peers that never read or ignore their credit, and callbacks to a client
//! that never answers. Real sockets throughout, and real processes where
//! memory is measured. The rest of the pressure tests are in
//! `notifications.rs`, `busy_poll.rs`, `limits.rs`, `silent_peers.rs` and
//! `access.rs`; their children are `support/children.rs`.

#[cfg(target_os = "linux")]
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use switchboard::{Bytes, Client, Config, Connector, Error, Format, HandlerError, Router, Server};

mod support;

use support::children;
#[cfg(target_os = "linux")]
use support::children::{Reaper, child, first_line};
#[cfg(target_os = "linux")]
use support::pressure::raw_connect;
use support::pressure::{echo_router, tag_of, tagged};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_flooding_each_other_both_finish() {
    // Far past every budget in both directions, large and small bodies,
    // every handler answering without waiting: the old outbox deadlocked
    // here with 0 of 5,000 answered.
    // Under Wine pipes are slow; the window is still passed many times over.
    const EACH_WAY: u64 = if cfg!(windows) { 1_500 } else { 5_000 };
    // Waiting for credit is the point here: no per-request deadline, the
    // whole flood has one.
    let mut config = Config::default();
    config.request_timeout = None;
    let connector = Connector::local().with_format(Format::MsgPack);
    let server = Server::builder(echo_router())
        .config(config.clone())
        .on_error(|e| eprintln!("SERVER ERROR {e}"))
        .bind(&connector)
        .await
        .unwrap();
    let client = Client::builder(server.connector())
        .id("flooder")
        .config(config)
        .router(echo_router())
        .connect()
        .await
        .unwrap();
    server.wait_for_clients(1).await;
    let toward_client = server.client("flooder").unwrap();
    let toward_server = client.peer().clone();

    let flood = |peer: switchboard::Peer, side: u64| {
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..EACH_WAY {
                let peer = peer.clone();
                let tag = side * 1_000_000 + i;
                let len = if i % 2 == 0 { 64 * 1024 } else { 16 };
                tasks.spawn(async move {
                    let answer: Bytes = peer.request("echo", &tagged(tag, len)).await.unwrap();
                    assert_eq!((tag_of(&answer), answer.len()), (tag, len.max(8)));
                });
            }
            let mut done = 0;
            while let Some(finished) = tasks.join_next().await {
                finished.unwrap();
                done += 1;
            }
            done
        })
    };
    let both = async {
        let a = flood(toward_server, 1);
        let b = flood(toward_client, 2);
        (a.await.unwrap(), b.await.unwrap())
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(300), both)
        .await
        .expect("the flood stalled: a deadlock");
    assert_eq!((a, b), (EACH_WAY, EACH_WAY));
}

#[tokio::test]
async fn a_callback_to_a_client_that_never_answers_times_out() {
    let mut config = Config::default();
    config.request_timeout = Some(Duration::from_millis(300));
    let server = Server::builder(Router::new())
        .config(config)
        .bind(&Connector::local())
        .await
        .unwrap();
    let mute = Router::new().route("hang", |_: ()| async move {
        std::future::pending::<()>().await;
        Ok::<_, HandlerError>(())
    });
    let _client = Client::builder(server.connector())
        .id("mute")
        .router(mute)
        .connect()
        .await
        .unwrap();
    server.wait_for_clients(1).await;
    let started = Instant::now();
    let outcome = server.request::<_, ()>("mute", "hang", &()).await;
    assert!(
        matches!(outcome, Err(Error::Timeout(limit)) if limit == Duration::from_millis(300)),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[cfg(target_os = "linux")]
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// Speaks the handshake by hand (no secret, MessagePack), returning what the
/// server accepts in flight: (messages, bytes).
#[cfg(target_os = "linux")]
fn raw_handshake(stream: &mut std::os::unix::net::UnixStream, id: &str) -> (u64, u64) {
    let hello = serde_json::json!({
        "switchboard": 4,
        "client_id": id,
        "formats": ["msgpack"],
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "window": {"messages": 16, "bytes": 1048576},
    });
    send_frame(stream, hello.to_string().as_bytes()).unwrap();
    let challenge = receive_frame(stream);
    assert!(!String::from_utf8_lossy(&challenge).contains("error"));
    send_frame(stream, b"{}").unwrap();
    let welcome: serde_json::Value = serde_json::from_slice(&receive_frame(stream)).unwrap();
    (
        welcome["window"]["messages"].as_u64().unwrap(),
        welcome["window"]["bytes"].as_u64().unwrap(),
    )
}

#[cfg(target_os = "linux")]
fn send_frame(stream: &mut impl Write, body: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(body.len() as u32).to_le_bytes())?;
    stream.write_all(body)
}

#[cfg(target_os = "linux")]
fn receive_frame(stream: &mut impl Read) -> Vec<u8> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    body
}

/// An `echo` request of `len` bytes (a MessagePack bin 32).
#[cfg(target_os = "linux")]
fn echo_request(id: u64, len: usize) -> Vec<u8> {
    let mut frame = vec![1u8];
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(&4u16.to_le_bytes());
    frame.extend_from_slice(b"echo");
    frame.push(0xc6);
    frame.extend_from_slice(&(len as u32).to_be_bytes());
    frame.resize(frame.len() + len, 0x5a);
    frame
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_read_cannot_grow_the_server_and_others_are_served() {
    const MIB: usize = 1024 * 1024;
    let mut server = child("echo-server").spawn().unwrap();
    let connector = Connector::load_state(&first_line(&mut server)).unwrap();
    let server = Reaper(server);
    let pid = server.0.id();
    let before = peak_rss_mib(pid);

    // One flooder ignores its credit: 1 MiB echoes as fast as the socket
    // takes them, never reading. It is cut off once past its window.
    let flood_connector = connector.clone();
    let ignoring = tokio::task::spawn_blocking(move || {
        let mut stream = raw_connect(&flood_connector);
        raw_handshake(&mut stream, "ignores-credit");
        let mut sent = 0;
        for id in 1..=200u64 {
            if send_frame(&mut stream, &echo_request(id, MIB)).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    // Another respects its credit but never reads an answer: it can send a
    // window's worth, and then it waits forever.
    let credit_connector = connector.clone();
    let respecting = tokio::task::spawn_blocking(move || {
        let mut stream = raw_connect(&credit_connector);
        let (messages, bytes) = raw_handshake(&mut stream, "never-reads");
        let (mut count, mut in_flight) = (0, 0);
        loop {
            let frame = echo_request(count + 1, MIB);
            if count + 1 > messages || in_flight + frame.len() as u64 > bytes {
                break;
            }
            send_frame(&mut stream, &frame).unwrap();
            count += 1;
            in_flight += frame.len() as u64;
        }
        std::thread::sleep(Duration::from_secs(2));
        drop(stream);
        count
    });

    // Meanwhile an ordinary client is served.
    let client = Client::connect(&connector).await.unwrap();
    for i in 0..50u64 {
        let answer: Bytes = client
            .request("echo", &tagged(i, 100 * 1024))
            .await
            .unwrap();
        assert_eq!(tag_of(&answer), i);
    }
    let sent_ignoring = ignoring.await.unwrap();
    assert!(
        sent_ignoring < 200,
        "the flooder was never cut off ({sent_ignoring} sent)"
    );
    let sent_respecting = respecting.await.unwrap();
    assert!(sent_respecting >= 10, "{sent_respecting}");

    let grown = peak_rss_mib(pid) - before;
    // The default window is 16 MiB per connection; the unbounded server
    // grew by more than a GiB here.
    assert!(grown < 96.0, "the server grew by {grown:.0} MiB");
    let answer: Bytes = client.request("echo", &tagged(7, 10)).await.unwrap();
    assert_eq!(tag_of(&answer), 7, "still serving");
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    children::entry();
}
