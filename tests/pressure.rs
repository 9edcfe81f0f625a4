//! Under pressure: floods in both directions, budgets that hold against
//! peers that never read or ignore their credit, notifications in order,
//! silent peers, limits, and who may connect. Real sockets throughout, and
//! real processes where memory or signals are measured.
//!
//! Children are this test executable run again with `SB_PRESSURE_CHILD`
//! set, which makes `child_process_entry` act as the child.

use std::io::Read;
#[cfg(target_os = "linux")]
use std::io::Write;
#[cfg(unix)]
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchboard::{
    Bytes, Client, Config, Connector, Context, Error, Format, HandlerError, Router, Server,
};

const CHILD_ROLE: &str = "SB_PRESSURE_CHILD";

fn echo_router() -> Router {
    Router::new()
        .route(
            "echo",
            |body: Bytes| async move { Ok::<_, HandlerError>(body) },
        )
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
}

/// A payload that says which request it belongs to, so a misrouted answer
/// shows.
fn tagged(tag: u64, len: usize) -> Bytes {
    let mut bytes = vec![(tag % 251) as u8; len.max(8)];
    bytes[..8].copy_from_slice(&tag.to_le_bytes());
    Bytes::from(bytes)
}

fn tag_of(bytes: &Bytes) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[cfg(unix)]
fn quick_keepalive(interval: Duration) -> Config {
    let mut config = Config::default();
    config.keepalive = Some(interval);
    config
}

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
#[cfg_attr(
    windows,
    ignore = "under Wine the connection once ended mid-flood (1 run in 2); cause not found yet"
)]
async fn a_hundred_thousand_notifications_arrive_in_order() {
    const COUNT: u64 = 100_000;
    let seen = Arc::new(Mutex::new(Vec::with_capacity(COUNT as usize)));
    let record = Arc::clone(&seen);
    let router = Router::new().route("progress", move |n: u64| {
        let record = Arc::clone(&record);
        async move {
            // Now and then a handler waits, which moves the rest behind it
            // to the worker: order must hold across that too.
            if n.is_multiple_of(997) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            record.lock().unwrap().push(n);
            Ok::<_, HandlerError>(())
        }
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    for n in 0..COUNT {
        client.throw("progress", &n).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < COUNT as usize {
        assert!(Instant::now() < deadline, "not all notifications arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = seen.lock().unwrap();
    let out_of_order = seen.windows(2).filter(|w| w[0] + 1 != w[1]).count();
    assert_eq!(out_of_order, 0, "{out_of_order} handled out of order");
    assert_eq!(seen.len() as u64, COUNT);
}

#[tokio::test]
async fn failed_notifications_are_reported_not_lost() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().route("strict", |n: u64| async move {
        if n > 10 {
            return Err(HandlerError::new(format!("{n} is too large")));
        }
        Ok(())
    });
    let server = Server::builder(router)
        .on_error(move |e| {
            let _ = tx.send(format!("{e}"));
        })
        .bind(&Connector::local())
        .await
        .unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    client.throw("nowhere", &1).await.unwrap();
    client.throw("strict", &99).await.unwrap();
    client.throw("strict", &"not a number").await.unwrap();
    let mut reports = Vec::new();
    for _ in 0..3 {
        let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a failed notification was not reported")
            .unwrap();
        reports.push(report);
    }
    assert!(
        reports[0].contains("no route named \"nowhere\""),
        "{reports:?}"
    );
    assert!(
        reports[1].contains("\"strict\"") && reports[1].contains("99 is too large"),
        "{reports:?}"
    );
    assert!(reports[2].contains("\"strict\""), "{reports:?}");
}

#[tokio::test]
async fn notification_handlers_stop_when_their_connection_ends() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicBool::new(false));
    let (count, flag) = (Arc::clone(&started), Arc::clone(&stopped));
    let router = Router::new().route("forever", move |_: ()| {
        let (count, flag) = (Arc::clone(&count), Flag(Arc::clone(&flag)));
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        }
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    // The first runs (forever); the second queues behind it.
    client.throw("forever", &()).await.unwrap();
    client.throw("forever", &()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while started.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(client);
    while !stopped.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the handler outlived its connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the queued one never ran"
    );
}

/// Quick exchanges make both sides poll for the next message before they
/// sleep (`Config::busy_poll`); once the traffic stops, that must stop too.
/// The exchanges run in a child process (server and client in it, on a
/// runtime of `flavor`), so its CPU time is theirs alone.
#[cfg(target_os = "linux")]
fn idle_after_quick_exchanges_costs_no_cpu(flavor: &str) {
    let mut child = Reaper(child(&format!("quick-then-idle-{flavor}")).spawn().unwrap());
    assert_eq!(first_line(&mut child.0), "ready");
    let before = cpu_time(child.0.id());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time(child.0.id()) - before;
    // Polling that did not stop would use most of the half second.
    assert!(
        used < Duration::from_millis(60),
        "{used:?} of CPU while idle for 500 ms"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn busy_polling_stops_when_the_traffic_does_current_thread() {
    idle_after_quick_exchanges_costs_no_cpu("current");
}

#[cfg(target_os = "linux")]
#[test]
fn busy_polling_stops_when_the_traffic_does_multi_thread() {
    idle_after_quick_exchanges_costs_no_cpu("multi");
}

#[tokio::test]
async fn busy_polling_can_be_turned_off() {
    let mut config = Config::default();
    config.busy_poll = None;
    let server = Server::builder(echo_router())
        .config(config.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    let client = Client::builder(server.connector())
        .config(config)
        .connect()
        .await
        .unwrap();
    for i in 0..100u64 {
        let answer: Bytes = client.request("echo", &tagged(i, 16)).await.unwrap();
        assert_eq!(tag_of(&answer), i);
    }
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

#[tokio::test]
async fn the_connection_limit_refuses_the_next_client_and_says_why() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(echo_router())
        .max_connections(2)
        .on_error(move |e| {
            let _ = tx.send(format!("{e}"));
        })
        .bind(&Connector::local())
        .await
        .unwrap();
    let first = Client::connect(server.connector()).await.unwrap();
    let _second = Client::connect(server.connector()).await.unwrap();
    match Client::connect(server.connector()).await {
        Err(Error::Refused { reason }) => {
            assert!(reason.contains("maximum of 2 connections"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let reported = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reported.contains("maximum of 2"), "{reported}");
    // A place frees up when a client leaves.
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect(server.connector()).await {
            Ok(_) => break,
            Err(Error::Refused { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(300);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(echo_router())
        .config(config)
        .on_error(move |e| {
            let _ = tx.send(format!("{e}"));
        })
        .bind(&Connector::local())
        .await
        .unwrap();
    let connector = server.connector().clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = raw_connect(&connector);
        let mut byte = [0u8; 1];
        // Say nothing; the server hangs up.
        matches!(stream.read(&mut byte), Ok(0) | Err(_))
    })
    .await
    .unwrap();
    assert!(closed);
    let reported = rx.recv().await.unwrap();
    assert!(
        reported.contains("did not finish the handshake"),
        "{reported}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sockets_are_for_their_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let server = Server::bind(&Connector::unix_socket(&path).unwrap(), echo_router())
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    drop(server);
    let server = Server::bind(&Connector::local(), echo_router())
        .await
        .unwrap();
    let switchboard::Address::Unix(path) = server.connector().address() else {
        unreachable!()
    };
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

/// A blocking socket to the server, for speaking the protocol by hand.
#[cfg(unix)]
fn raw_connect(connector: &Connector) -> std::os::unix::net::UnixStream {
    let switchboard::Address::Unix(path) = connector.address() else {
        panic!("expected a unix connector")
    };
    let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

// ----- Child processes -----

/// Runs this test binary again as a child process in `role`.
#[cfg(unix)]
fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

/// Kills the child when dropped, so a failing test leaves no process.
#[cfg(unix)]
struct Reaper(Child);

#[cfg(unix)]
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line the child prints after `SB:` (its connector, or
/// "ready"); the rest of its output is drained in the background so it
/// never blocks or breaks on a full pipe.
#[cfg(unix)]
fn first_line(child: &mut Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            return String::new();
        }
        // libtest may have begun the line ("test child_process_entry ... ").
        if let Some((_, found)) = line.trim().split_once("SB:") {
            let found = found.to_owned();
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return found;
        }
    }
}

#[cfg(unix)]
fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Stops the child and waits until it really is stopped (a signal is
/// delivered asynchronously; until then it may still answer).
#[cfg(unix)]
fn stop(child: &Child) {
    signal(child, "-STOP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = Command::new("ps")
            .args(["-o", "stat=", "-p", &child.id().to_string()])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&state.stdout)
            .trim()
            .starts_with('T')
        {
            return;
        }
        assert!(Instant::now() < deadline, "the child did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Not a test: the body of the child processes the tests below spawn. Run
/// without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    if let Some(flavor) = role.strip_prefix("quick-then-idle-") {
        quick_then_idle(flavor);
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match role.as_str() {
            // A server printing its connector, serving until stdin closes.
            "echo-server" | "tcp-server" | "few-files-server" => {
                #[cfg(target_os = "linux")]
                if role == "few-files-server" {
                    // Room for the runtime and a handful of connections.
                    let limit = libc::rlimit {
                        rlim_cur: 48,
                        rlim_max: 48,
                    };
                    // SAFETY: a plain system call with a valid pointer.
                    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
                }
                let connector = if role == "tcp-server" {
                    Connector::tcp("127.0.0.1", 0).unwrap()
                } else {
                    Connector::local()
                        .without_secret()
                        .with_format(Format::MsgPack)
                };
                let server = Server::bind(&connector, echo_router()).await.unwrap();
                println!("SB:{}", server.connector().dump_state());
                tokio::task::spawn_blocking(|| {
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                })
                .await
                .unwrap();
            }
            // A client whose routes the server calls, until it is killed.
            "callee" => {
                let connector = Connector::from_env().unwrap();
                let _client = Client::builder(&connector)
                    .id("callee")
                    .router(echo_router())
                    .connect()
                    .await
                    .unwrap();
                println!("SB:ready");
                std::future::pending::<()>().await;
            }
            // Connects and says how it went: exit 0 with the answer, or 5
            // with the error.
            "connect-and-report" => {
                let connector = Connector::from_env().unwrap();
                let outcome = async {
                    let client = Client::builder(&connector)
                        .connect_timeout(Duration::from_secs(2))
                        .connect()
                        .await?;
                    client.request::<_, u64>("sleep", &1u64).await
                }
                .await;
                match outcome {
                    Ok(answer) => println!("SB:answer {answer}"),
                    Err(e) => {
                        println!("SB:error {e:?}");
                        std::process::exit(5);
                    }
                }
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

/// The child of the busy-polling tests: a server and a client on one
/// runtime of `flavor` ("current" or "multi") exchange 2,000 quick
/// messages, then idle until stdin closes.
fn quick_then_idle(flavor: &str) {
    let runtime = match flavor {
        "current" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .unwrap();
    runtime.block_on(async {
        let server = Server::bind(&Connector::local(), echo_router())
            .await
            .unwrap();
        let client = Client::connect(server.connector()).await.unwrap();
        for i in 0..2_000u64 {
            let answer: Bytes = client.request("echo", &tagged(i, 16)).await.unwrap();
            assert_eq!(tag_of(&answer), i);
        }
        println!("SB:ready");
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
    });
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
        "switchboard": 3,
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

/// CPU time (user + system) the process has used so far.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let mut server = child("few-files-server").spawn().unwrap();
    let connector = Connector::load_state(&first_line(&mut server)).unwrap();
    let server = Reaper(server);
    let pid = server.0.id();
    // Far more connections than the server has descriptors for: the OS
    // completes them (backlog), the server cannot accept them.
    let hogs: Vec<_> = (0..80)
        .filter_map(|_| {
            let switchboard::Address::Unix(path) = connector.address() else {
                unreachable!()
            };
            std::os::unix::net::UnixStream::connect(path).ok()
        })
        .collect();
    assert!(hogs.len() > 48, "only {} connected", hogs.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    // Spinning on accept would take most of a core.
    assert!(spent < Duration::from_millis(500), "spent {spent:?} in 2 s");
    drop(hogs);
    // Once descriptors are free again, clients get in.
    let client = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let answer: Bytes = client.request("echo", &tagged(3, 10)).await.unwrap();
    assert_eq!(tag_of(&answer), 3);
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tcp_client_is_noticed_and_its_pending_calls_fail() {
    let interval = Duration::from_millis(200);
    let server = Server::builder(Router::new())
        .config(quick_keepalive(interval))
        .bind(&Connector::tcp("127.0.0.1", 0).unwrap())
        .await
        .unwrap();
    let mut callee = child("callee")
        .env("SWITCHBOARD_CONNECTOR", server.connector().dump_state())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut callee), "ready");
    let callee = Reaper(callee);
    server.wait_for_clients(1).await;
    let alive: Bytes = server
        .request("callee", "echo", &tagged(1, 10))
        .await
        .unwrap();
    assert_eq!(tag_of(&alive), 1);

    // Stopped, it keeps its socket open and says nothing: only keepalive
    // can tell.
    stop(&callee.0);
    let started = Instant::now();
    let outcome = server
        .request::<_, Bytes>("callee", "echo", &tagged(2, 10))
        .await;
    assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed only after {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.clients().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the server still lists the client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tcp_server_is_noticed_and_pending_requests_fail() {
    let mut server = child("tcp-server").spawn().unwrap();
    let connector = Connector::load_state(&first_line(&mut server)).unwrap();
    let server = Reaper(server);
    let client = Client::builder(&connector)
        .config(quick_keepalive(Duration::from_millis(200)))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.request::<_, u64>("sleep", &1u64).await.unwrap(), 1);
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &60_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&server.0);
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending request hung")
        .unwrap();
    assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Runs a copy of this test binary as user `nobody`, connecting to
/// `connector`; returns its exit code and output.
#[cfg(target_os = "linux")]
fn connect_as_nobody(binary: &std::path::Path, connector: &Connector) -> (i32, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary)
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, "connect-and-report")
        .env("SWITCHBOARD_CONNECTOR", connector.dump_state())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = stdout
        .lines()
        .filter_map(|line| line.split_once("SB:").map(|(_, said)| said))
        .collect::<Vec<_>>()
        .join("\n");
    (output.status.code().unwrap_or(-1), said)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_process_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        eprintln!(
            "SKIPPED another_users_process_is_refused_unless_allowed: needs root and \
             setpriv to run a client as another user (root: {root}, setpriv: {setpriv})"
        );
        return;
    }
    // Everything `nobody` needs: a copy of this binary it may run, and a
    // directory it may enter.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("pressure-child");
    std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("s");
    let connector = Connector::unix_socket(&path).unwrap();

    // The default: the socket is 0600, so the file system stops nobody...
    let server = Server::bind(&connector, echo_router()).await.unwrap();
    let as_nobody = |connector: &Connector| {
        let (binary, connector) = (binary.clone(), connector.clone());
        tokio::task::spawn_blocking(move || connect_as_nobody(&binary, &connector))
    };
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!(code, 5, "{output}");
    assert!(output.contains("Connect"), "{output}");
    // ...and where it does not (some systems ignore socket permissions),
    // the uid check does, with a refusal that says why.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!(code, 5, "{output}");
    assert!(
        output.contains("Refused") && output.contains("user 65534 may not connect"),
        "{output}"
    );
    drop(server);

    // Let in by name, it gets its answer.
    let server = Server::builder(echo_router())
        .access(switchboard::Access::Users(vec![65534]))
        .bind(&connector)
        .await
        .unwrap();
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!((code, output.as_str()), (0, "answer 1"));
}

#[tokio::test]
async fn a_handler_can_learn_who_called() {
    let router = Router::new().route("who", |ctx: Context, _: ()| async move {
        Ok::<_, HandlerError>((ctx.peer().process_id(), ctx.peer().user_id()))
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let (pid, uid): (Option<u32>, Option<u32>) = client.request("who", &()).await.unwrap();
    if cfg!(unix) {
        assert_eq!(pid, Some(std::process::id()));
        assert!(uid.is_some());
    }
}
