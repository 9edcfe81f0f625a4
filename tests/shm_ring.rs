//! The shared-memory ring (`Connector::with_shm_ring`): the setting in the
//! connector string, every kind of message over the ring (both directions,
//! streams, cancellation, flow control, frames larger than the ring, the
//! blocking API, typed services), a parent handing the string to a child
//! process, and a connection that stops costing CPU once its traffic stops.
//! A peer that corrupts the ring is in `shm_ring_garbage.rs`.
//!
//! Whether a connection really runs over the ring is read from the
//! process's memory map: the ring is a memfd mapping named
//! `switchboard-ring`.

#![cfg(target_os = "linux")]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard::{
    Bytes, Client, CommandExt, Config, Connector, Error, HandlerError, Router, Server,
    SharedMemory, Stream,
};

const CHILD_ROLE: &str = "SB_TEST_RING_CHILD";

/// Rings mapped by process `pid` (both directions share one mapping).
fn rings_mapped(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|line| line.contains("memfd:switchboard-ring"))
        .count()
}

/// Waits until this process maps `expected` rings. Tests that count
/// mappings hold [`MAPS`], since they share the process.
async fn wait_for_rings(expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mapped = rings_mapped(std::process::id());
        if mapped == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{mapped} rings mapped, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

static MAPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ring_connector() -> Connector {
    Connector::local().with_shm_ring(true).unwrap()
}

fn router(notified: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "echo",
            |body: Bytes| async move { Ok::<_, HandlerError>(body) },
        )
        .route("count", |to: u32| async move { Stream::iter(1..=to) })
        .route("hang", |_: ()| async move {
            std::future::pending::<()>().await;
            Ok::<_, HandlerError>(())
        })
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
        .route("note", move |_: u32| {
            let notified = Arc::clone(&notified);
            async move {
                notified.fetch_add(1, Ordering::SeqCst);
                Ok::<_, HandlerError>(())
            }
        })
}

#[test]
fn the_setting_travels_in_the_connector_string_and_old_strings_still_load() {
    let plain = Connector::local();
    assert!(!plain.shm_ring());
    let ring = plain.clone().with_shm_ring(true).unwrap();
    let loaded = Connector::load_state(&ring.dump_state()).unwrap();
    assert!(loaded.shm_ring());
    assert_eq!(loaded, ring);
    // A string without the field (every string made before it existed).
    assert!(
        !Connector::load_state(&plain.dump_state())
            .unwrap()
            .shm_ring()
    );
    assert!(!ring.with_shm_ring(false).unwrap().shm_ring());

    let tcp = Connector::tcp("127.0.0.1", 4000).unwrap();
    let Err(Error::InvalidArgument { reason, .. }) = tcp.with_shm_ring(true) else {
        panic!("the ring needs a local connector");
    };
    assert!(reason.contains("not a local connector"), "{reason}");
}

#[tokio::test(flavor = "current_thread")]
async fn every_kind_of_message_travels_over_the_ring() {
    let _maps = MAPS.lock().await;
    let notified = Arc::new(AtomicUsize::new(0));
    let mut config = Config::default();
    config.max_in_flight = 4;
    // Shared memory for bodies from 2 MiB: below that, large frames take
    // the ring; above, the pool carries the body and the ring its frame.
    let mut shm = SharedMemory::default();
    shm.threshold = 2 * 1024 * 1024;
    config.shared_memory = Some(shm);
    let server = Server::builder(router(Arc::clone(&notified)))
        .config(config.clone())
        .bind(&ring_connector())
        .await
        .unwrap();
    let callbacks = Router::new().route(
        "double",
        |n: u64| async move { Ok::<_, HandlerError>(n * 2) },
    );
    let client = Client::builder(server.connector())
        .id("ringer")
        .router(callbacks)
        .config(config)
        .connect()
        .await
        .unwrap();
    // One mapping per side.
    wait_for_rings(2).await;

    // Requests and answers.
    let answer: Bytes = client
        .request("echo", &Bytes::from(vec![7u8; 100]))
        .await
        .unwrap();
    assert_eq!(answer[..], vec![7u8; 100][..]);
    // A frame larger than the 64 KiB ring streams through it.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let answer: Bytes = client
        .request("echo", &Bytes::from(big.clone()))
        .await
        .unwrap();
    assert_eq!(answer[..], big[..]);
    // Both at once: a body over the threshold goes through the pool, its
    // frame through the ring.
    assert!(client.peer().shares_memory());
    let huge: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let answer: Bytes = client
        .request("echo", &Bytes::from(huge.clone()))
        .await
        .unwrap();
    assert_eq!(answer[..], huge[..]);
    drop(answer);
    // Notifications.
    for i in 0..10u32 {
        client.throw("note", &i).await.unwrap();
    }
    // A stream of answers.
    let mut items: Stream<u32> = client.request_stream("count", &1000u32).await.unwrap();
    let mut got = Vec::new();
    while let Some(item) = items.next().await {
        got.push(item.unwrap());
    }
    assert_eq!(got, (1..=1000).collect::<Vec<_>>());
    // Cancellation: a request that times out is cancelled; the connection
    // goes on.
    let outcome = client
        .request_timeout::<_, ()>("hang", &(), Duration::from_millis(50))
        .await;
    assert!(matches!(outcome, Err(Error::Timeout(_))), "{outcome:?}");
    // Flow control: 50 at once through a window of 4.
    let client = Arc::new(client);
    let mut calls = tokio::task::JoinSet::new();
    for ms in 0..50u64 {
        let client = Arc::clone(&client);
        calls.spawn(async move { client.request::<_, u64>("sleep", &(ms % 3)).await });
    }
    let answers = calls.join_all().await;
    assert_eq!(answers.len(), 50);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let client = Arc::into_inner(client).unwrap();
    // The other direction: the server calls the client.
    let doubled: u64 = server.request("ringer", "double", &21u64).await.unwrap();
    assert_eq!(doubled, 42);

    let deadline = Instant::now() + Duration::from_secs(10);
    while notified.load(Ordering::SeqCst) < 10 {
        assert!(Instant::now() < deadline, "notifications lost");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.close().await;
    drop(server);
    // Both sides unmapped their rings when the connection ended.
    wait_for_rings(0).await;
}

#[switchboard::service]
pub trait Adder {
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Sum;

impl Adder for Sum {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_services_work_over_the_ring_on_a_multi_thread_runtime() {
    let _maps = MAPS.lock().await;
    let router = Router::new().service(AdderServer::new(Sum));
    let server = Server::bind(&ring_connector(), router).await.unwrap();
    let adder = AdderClient::connect(server.connector()).await.unwrap();
    for i in 0..1000 {
        assert_eq!(adder.add(i, 1).await.unwrap(), i + 1);
    }
    wait_for_rings(2).await;
}

#[test]
fn the_blocking_api_works_over_the_ring() {
    let _maps = MAPS.blocking_lock();
    let server =
        switchboard::blocking::Server::bind(&ring_connector(), router(Default::default())).unwrap();
    let client = switchboard::blocking::Client::connect(server.connector()).unwrap();
    for i in 0..200u8 {
        let answer: Bytes = client.request("echo", &Bytes::from(vec![i; 64])).unwrap();
        assert_eq!(answer[..], vec![i; 64][..]);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while rings_mapped(std::process::id()) != 2 {
        assert!(Instant::now() < deadline, "not over the ring");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop((client, server));
}

/// Runs this test binary again as a child process in `role`.
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

/// Kills and reaps a child however the test ends.
struct Reaper(Child);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line the child prints after `SB:`; the rest of its output is
/// drained in the background.
fn first_line(child: &mut Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            return String::new();
        }
        if let Some((_, found)) = line.trim().split_once("SB:") {
            let found = found.to_owned();
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return found;
        }
    }
}

/// Not a test: the body of the child processes the tests below spawn.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    if let Some(flavor) = role.strip_prefix("quick-then-idle-") {
        quick_then_idle(flavor);
        return;
    }
    assert_eq!(role, "ring-client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connector = Connector::from_env().unwrap();
        assert!(
            connector.shm_ring(),
            "the child got the setting with the string"
        );
        let client = Client::connect(&connector).await.unwrap();
        for i in 0..1000u32 {
            let answer: Bytes = client
                .request("echo", &Bytes::from(i.to_le_bytes().to_vec()))
                .await
                .unwrap();
            assert_eq!(answer[..], i.to_le_bytes()[..]);
        }
        println!("SB:{}", rings_mapped(std::process::id()));
        // Stay connected until the parent has looked.
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        client.close().await;
    });
}

#[tokio::test(flavor = "current_thread")]
async fn a_parent_turns_the_ring_on_and_its_child_uses_it() {
    let _maps = MAPS.lock().await;
    let server = Server::bind(&ring_connector(), router(Default::default()))
        .await
        .unwrap();
    let mut command = child("ring-client");
    command.connector_env(server.connector());
    let mut child = Reaper(command.spawn().unwrap());
    let line = tokio::task::spawn_blocking(move || {
        let line = first_line(&mut child.0);
        (line, child)
    });
    let (line, child) = line.await.unwrap();
    assert_eq!(line, "1", "the child maps one ring");
    // And so does the parent.
    wait_for_rings(1).await;
    drop(child);
}

/// The example users are pointed to: it turns the ring on in the parent,
/// and its child, given the string, times round trips over it and over the
/// default socket. (How fast is for the benchmarks; here, that it works.)
#[test]
fn the_low_latency_example_times_both_paths() {
    let stdout = support::run_to_success(&mut Command::new(support::example("low_latency")));
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("ring: median "), "{stdout}");
    assert!(lines[0].ends_with("round trips, ring on)"), "{stdout}");
    assert!(lines[1].starts_with("socket: median "), "{stdout}");
    assert!(lines[1].ends_with("round trips, ring off)"), "{stdout}");
}

/// The ring works over an inherited channel as over a socket file: a
/// server with the ring on makes a channel, and the child given it asks for
/// the ring with the rest of the string.
#[tokio::test(flavor = "current_thread")]
async fn a_child_on_an_inherited_channel_uses_the_ring_too() {
    let _maps = MAPS.lock().await;
    let server = Server::bind(&ring_connector(), router(Default::default()))
        .await
        .unwrap();
    let channel = server.child_channel().unwrap();
    assert!(channel.connector().shm_ring());
    let mut command = child("ring-client");
    command.connector_env(channel.connector());
    let mut child = Reaper(command.spawn_with_channel(channel).unwrap());
    let line = tokio::task::spawn_blocking(move || {
        let line = first_line(&mut child.0);
        (line, child)
    });
    let (line, child) = line.await.unwrap();
    assert_eq!(line, "1", "the child maps one ring");
    wait_for_rings(1).await;
    drop(child);
}

/// The child of the idle test: quick exchanges over the ring between a
/// server and a client of its own, on a runtime of `flavor`, then idle.
fn quick_then_idle(flavor: &str) {
    let runtime = match flavor {
        "current" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .unwrap();
    runtime.block_on(async {
        let server = Server::bind(&ring_connector(), router(Default::default()))
            .await
            .unwrap();
        let client = Client::connect(server.connector()).await.unwrap();
        for i in 0..2000u32 {
            let answer: Bytes = client
                .request("echo", &Bytes::from(vec![i as u8; 64]))
                .await
                .unwrap();
            assert_eq!(answer.len(), 64);
        }
        assert_eq!(rings_mapped(std::process::id()), 2);
        println!("SB:ready");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop((client, server));
    });
}

fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
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

/// Spinning that did not stop when the traffic did would use most of the
/// half second.
fn an_idle_ring_costs_no_cpu(flavor: &str) {
    let mut child = Reaper(child(&format!("quick-then-idle-{flavor}")).spawn().unwrap());
    assert_eq!(first_line(&mut child.0), "ready");
    let before = cpu_time(child.0.id());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time(child.0.id()) - before;
    assert!(
        used < Duration::from_millis(60),
        "{used:?} of CPU while idle for 500 ms"
    );
}

#[test]
fn the_ring_stops_spinning_when_the_traffic_does_current_thread() {
    an_idle_ring_costs_no_cpu("current");
}

#[test]
fn the_ring_stops_spinning_when_the_traffic_does_multi_thread() {
    an_idle_ring_costs_no_cpu("multi");
}
