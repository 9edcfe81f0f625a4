//! Large bodies through shared memory (PROTOCOL.md §9), between real
//! processes with the default settings: both directions, streams,
//! notifications, a callback, a loan, 1 GiB, a peer that never releases,
//! and descriptors and mappings counted in /proc after drops, closes and
//! SIGKILL (Linux only: Windows has no /proc, and the handle count Wine
//! reports does not follow sections). Linux and Windows (elsewhere bodies
//! take the socket).

#![cfg(any(target_os = "linux", windows))]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use switchboard::{
    Bytes, Client, Config, Connector, Context, HandlerError, Router, Server, SharedMemory, Stream,
};

const ROLE: &str = "SB_SHM_TEST_CHILD";
const MARK: &str = "<<sb>>";

/// One test at a time: the leak test counts this process's descriptors,
/// and the others would move them (and 1 GiB is enough at once).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Bodies a handler keeps (the `hold` route): never released until
/// `let-go`.
static HELD: Mutex<Vec<Bytes>> = Mutex::new(Vec::new());

fn pattern(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<u8>>(),
    )
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(8)
        .map(|c| {
            c.iter()
                .fold(0u64, |a, b| a.wrapping_mul(257).wrapping_add(u64::from(*b)))
        })
        .fold(0u64, |a, c| a.rotate_left(5) ^ c)
}

/// What a connection and its shared memory hold in this process:
/// (socket and memory-file descriptors, shared-memory mappings).
#[cfg(target_os = "linux")]
fn counts() -> (usize, usize) {
    counts_at("/proc/self")
}

#[cfg(target_os = "linux")]
fn counts_of(pid: u32) -> (usize, usize) {
    counts_at(&format!("/proc/{pid}"))
}

#[cfg(target_os = "linux")]
fn counts_at(proc: &str) -> (usize, usize) {
    let fds = std::fs::read_dir(format!("{proc}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| {
            let target = target.to_string_lossy();
            target.starts_with("socket:") || target.starts_with("/memfd:")
        })
        .count();
    let maps = std::fs::read_to_string(format!("{proc}/maps")).unwrap();
    let shm = maps.lines().filter(|l| l.contains("memfd:sb-")).count();
    (fds, shm)
}

fn router() -> Router {
    Router::new()
        .route("len", |body: Bytes| async move {
            Ok::<_, HandlerError>(body.len() as u64)
        })
        .route("sum", |body: Bytes| async move {
            Ok::<_, HandlerError>(checksum(&body))
        })
        .route(
            "echo",
            |body: Bytes| async move { Ok::<_, HandlerError>(body) },
        )
        .route("hold", |body: Bytes| async move {
            HELD.lock().unwrap().push(body);
        })
        .route("let-go", |_: ()| async move {
            HELD.lock().unwrap().clear();
        })
        .route("make", |(len, seed): (usize, u8)| async move {
            Ok::<_, HandlerError>(pattern(len, seed))
        })
        .route("fill", |(len, byte): (usize, u8)| async move {
            Ok::<_, HandlerError>(Bytes::from(vec![byte; len]))
        })
        .route("chunks", |(count, len): (u8, usize)| async move {
            Stream::iter((0..count).map(move |seed| pattern(len, seed)))
        })
        .route("ask-back", |ctx: Context, len: usize| async move {
            // A callback carrying a large body the other way.
            let sum: u64 = ctx
                .request("sum", &pattern(len, 7))
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?;
            Ok::<_, HandlerError>(sum == checksum(&pattern(len, 7)))
        })
        .route("note", |body: Bytes| async move {
            HELD.lock().unwrap().push(body);
        })
        .route("noted", |_: ()| async move {
            let held = HELD.lock().unwrap();
            Ok::<_, HandlerError>(held.iter().map(|b| checksum(b)).collect::<Vec<u64>>())
        })
}

/// The child side: a server with the default settings, its connector on
/// stdout, until stdin closes.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match role.as_str() {
            "server" => {
                let server = Server::bind(&Connector::local(), router()).await.unwrap();
                println!("{MARK}{}", server.connector().dump_state());
                std::io::stdout().flush().unwrap();
                tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
                })
                .await
                .unwrap();
                server.shutdown().await;
            }
            "client" => {
                // Connects, takes a large body from the server, says so,
                // and waits to be killed holding it.
                let connector =
                    Connector::load_state(&std::env::var("SB_CONNECTOR").unwrap()).unwrap();
                let client = Client::connect(&connector).await.unwrap();
                let body: Bytes = client.request("make", &(4 << 20, 1u8)).await.unwrap();
                let len: u64 = client.request("len", &pattern(4 << 20, 2)).await.unwrap();
                println!("{MARK}holding {} {len}", body.len());
                std::io::stdout().flush().unwrap();
                std::future::pending::<()>().await;
            }
            other => panic!("unknown role {other}"),
        }
    });
    std::process::exit(0);
}

/// A child process in `role`, and the first line it marked.
fn spawn(role: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let said = loop {
        let line = lines.next().expect("the child said nothing").unwrap();
        if let Some((_, rest)) = line.split_once(MARK) {
            break rest.to_owned();
        }
    };
    (child, said)
}

struct ServerProcess {
    child: Child,
    connector: Connector,
}

impl ServerProcess {
    fn start() -> ServerProcess {
        let (child, line) = spawn("server", &[]);
        ServerProcess {
            child,
            connector: Connector::load_state(&line).unwrap(),
        }
    }

    #[cfg(target_os = "linux")]
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let switchboard::Address::Unix(path) = self.connector.address()
            && let Some(dir) = path.parent()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Waits (generously: the machine is shared) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(20), "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn large_bodies_go_both_ways_in_every_kind_of_message() {
    let _serial = SERIAL.lock().await;
    let server = ServerProcess::start();
    let client = Client::builder(&server.connector)
        .router(Router::new().route("sum", |body: Bytes| async move {
            Ok::<_, HandlerError>(checksum(&body))
        }))
        .connect()
        .await
        .unwrap();
    assert!(
        client.peer().shares_memory(),
        "the default local connector shares memory"
    );
    // Requests of every size around the threshold and the frame limit.
    for len in [1, 64 * 1024 - 1, 64 * 1024, 1 << 20, 16 << 20] {
        let body = pattern(len, 3);
        let sum: u64 = client.request("sum", &body).await.unwrap();
        assert_eq!(sum, checksum(&body), "{len}");
    }
    // Answers.
    let echoed: Bytes = client.request("echo", &pattern(3 << 20, 4)).await.unwrap();
    assert_eq!(echoed, pattern(3 << 20, 4));
    let made: Bytes = client.request("make", &(5 << 20, 9u8)).await.unwrap();
    assert_eq!(made, pattern(5 << 20, 9));
    // A callback from the server with a large body.
    let ok: bool = client.request("ask-back", &(2usize << 20)).await.unwrap();
    assert!(ok);
    // A stream of large items.
    let mut items = client
        .request_stream::<_, Bytes>("chunks", &(4u8, 1usize << 20))
        .await
        .unwrap();
    let mut seed = 0;
    while let Some(item) = items.next().await {
        assert_eq!(item.unwrap(), pattern(1 << 20, seed));
        seed += 1;
    }
    assert_eq!(seed, 4);
    // Notifications, in order.
    client.call("let-go", &()).await.unwrap();
    for seed in 0..3 {
        client.throw("note", &pattern(1 << 20, seed)).await.unwrap();
    }
    let noted: Vec<u64> = client.request("noted", &()).await.unwrap();
    let expected: Vec<u64> = (0..3).map(|s| checksum(&pattern(1 << 20, s))).collect();
    assert_eq!(noted, expected);
    client.call("let-go", &()).await.unwrap();
}

#[tokio::test]
async fn a_loan_is_written_in_place_and_arrives_whole() {
    let _serial = SERIAL.lock().await;
    let server = ServerProcess::start();
    let client = Client::connect(&server.connector).await.unwrap();
    let mut loan = client.peer().loan(8 << 20);
    assert!(loan.in_shared_memory());
    loan.copy_from_slice(&pattern(8 << 20, 5));
    let frozen = loan.freeze();
    let sum: u64 = client.request("sum", &frozen).await.unwrap();
    assert_eq!(sum, checksum(&pattern(8 << 20, 5)));
    // Sent again (copied this time), and inside a larger body.
    let sum: u64 = client.request("sum", &frozen).await.unwrap();
    assert_eq!(sum, checksum(&pattern(8 << 20, 5)));
    let len: u64 = client.request("len", &frozen).await.unwrap();
    assert_eq!(len, 8 << 20);
}

#[tokio::test]
async fn a_gibibyte_goes_through_with_the_default_settings() {
    let _serial = SERIAL.lock().await;
    let server = ServerProcess::start();
    let client = Client::connect(&server.connector).await.unwrap();
    let body = Bytes::from(vec![0x5au8; 1 << 30]);
    let len: u64 = client
        .request("len", &body)
        .await
        .expect("1 GiB with the default settings");
    assert_eq!(len, 1 << 30);
    drop(body);
    // And back: the answer is larger than any frame too.
    let back: Bytes = client
        .request("fill", &(1usize << 30, 0xa5u8))
        .await
        .unwrap();
    assert_eq!(back.len(), 1 << 30);
    assert!(back.iter().step_by(4096).all(|b| *b == 0xa5));
}

#[tokio::test]
async fn a_peer_that_never_releases_costs_its_budget_and_never_blocks() {
    let _serial = SERIAL.lock().await;
    let server = ServerProcess::start();
    let mut config = Config::default();
    let mut shm = SharedMemory::default();
    shm.pool_bytes = 4 << 20;
    config.shared_memory = Some(shm);
    let client = Client::builder(&server.connector)
        .config(config)
        .connect()
        .await
        .unwrap();
    assert!(client.peer().shares_memory());
    // The server keeps every body: after a few, our pool is full, and the
    // rest take the socket. Meanwhile it sends us large bodies back, which
    // we hold too: both directions full at once.
    let mut kept = Vec::new();
    for seed in 0..12u8 {
        client.call("hold", &pattern(1 << 20, seed)).await.unwrap();
        kept.push(
            client
                .request::<_, Bytes>("make", &(1usize << 20, seed))
                .await
                .unwrap(),
        );
        let used = client.peer().shared_memory_used().unwrap();
        assert!(used <= 4 << 20, "the budget holds: {used}");
    }
    assert!(
        client.peer().shared_memory_used().unwrap() >= 3 << 20,
        "the pool filled"
    );
    for (seed, body) in kept.iter().enumerate() {
        assert_eq!(*body, pattern(1 << 20, seed as u8));
    }
    // Released, the pool is ours again.
    client.call("let-go", &()).await.unwrap();
    let peer = client.peer();
    eventually("the server released everything", || {
        peer.shared_memory_used() == Some(0)
    })
    .await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn nothing_is_left_after_drops_closes_and_sigkill() {
    let _serial = SERIAL.lock().await;
    let server = ServerProcess::start();
    let server_pid = server.pid();
    // Warm up anything lazily opened in both processes (runtime, epoll).
    let client = Client::connect(&server.connector).await.unwrap();
    let _: u64 = client
        .request("len", &Bytes::from_static(b"x"))
        .await
        .unwrap();
    client.close().await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ours = counts();
    let theirs = counts_of(server_pid);

    // Bodies both ways, some held across the connection's end.
    let client = Client::connect(&server.connector).await.unwrap();
    let held: Bytes = client.request("make", &(4usize << 20, 3u8)).await.unwrap();
    client.call("hold", &pattern(4 << 20, 1)).await.unwrap();
    let _: u64 = client.request("len", &pattern(100 << 20, 1)).await.unwrap();
    assert!(counts().1 > ours.1, "mapped while connected");
    client.call("let-go", &()).await.unwrap();
    client.close().await;
    // The pools go with the last handle of the connection.
    drop(client);
    // The body we hold keeps the server's pool mapped here, nothing more.
    assert_eq!(held, pattern(4 << 20, 3));
    drop(held);
    eventually("our descriptors and mappings are back", || counts() == ours).await;
    eventually("the server's are back", || counts_of(server_pid) == theirs).await;

    // A client killed with SIGKILL while holding bodies: the server lets
    // go of everything of that connection.
    let connector = server.connector.dump_state();
    let (mut killed, said) = spawn("client", &[("SB_CONNECTOR", &connector)]);
    assert!(said.starts_with("holding"), "{said}");
    assert!(counts_of(server_pid).1 > theirs.1);
    killed.kill().unwrap();
    killed.wait().unwrap();
    eventually("the server's are back after SIGKILL", || {
        counts_of(server_pid) == theirs
    })
    .await;

    // The server killed while we hold one of its bodies: the body stays
    // readable, and everything goes when we drop it.
    let client = Client::connect(&server.connector).await.unwrap();
    let body: Bytes = client.request("make", &(2usize << 20, 8u8)).await.unwrap();
    drop(server);
    client.peer().closed().await;
    assert_eq!(body, pattern(2 << 20, 8));
    drop((body, client));
    eventually("ours are back after the server's SIGKILL", || {
        counts() == ours
    })
    .await;
}
