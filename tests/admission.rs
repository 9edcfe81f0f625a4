//! Idle and half-open connections cannot lock good clients out: a server in
//! its own process, flooded with a thousand connections that sit before or
//! inside the handshake (and, in another test, out of file descriptors),
//! still lets a good client connect and get its answer at once.
//!
//! The server is this test executable run again (`server_process`); the flood comes from threads of the
//! test process over raw sockets; the good client is a real `Client`. The
//! figures (p50, p99, worst) are printed to stderr for the record; the
//! assertions are generous bounds, since the machine is shared.

#![cfg(unix)]

mod server_process;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server_process::ServerProcess;
use switchboard::{Address, Client, Connector};

/// Not a test: the server process (see `server_process`).
#[test]
fn child_process_entry() {
    server_process::child_main();
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

fn raw_connect(address: &Address) -> std::io::Result<Box<dyn Conn>> {
    Ok(match address {
        Address::Unix(path) => Box::new(UnixStream::connect(path)?),
        Address::Tcp { host, port } => Box::new(TcpStream::connect((host.as_str(), *port))?),
        other => panic!("no raw connection to {other}"),
    })
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A hello the server accepts (it then sends its challenge and waits). The
/// protocol version is the one the server names when refusing version 0.
fn valid_hello(address: &Address) -> Vec<u8> {
    let hello = |version: u64, id: &str| {
        frame(
            json!({
                "switchboard": version, "client_id": id, "formats": ["json"],
                "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                "window": {"messages": 1, "bytes": 1},
            })
            .to_string()
            .as_bytes(),
        )
    };
    let mut probe = raw_connect(address).unwrap();
    probe.write_all(&hello(0, "probe")).unwrap();
    let mut length = [0; 4];
    probe.read_exact(&mut length).unwrap();
    let mut body = vec![0; u32::from_le_bytes(length) as usize];
    probe.read_exact(&mut body).unwrap();
    let refusal: Value = serde_json::from_slice(&body).unwrap();
    let version = refusal["switchboard"]
        .as_u64()
        .expect("the refusal names the version");
    hello(version, "idle")
}

/// Connections that sit idle: a third never send a byte, a third send half
/// a hello, a third a whole hello and never answer the challenge. The
/// flood holds `held` of them and, until stopped, opens another every 2 ms
/// (dropping its oldest), so the server's shedding is under steady pressure.
struct Flood {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Flood {
    fn start(address: &Address, held: usize) -> Flood {
        let hello = valid_hello(address);
        let (stop, opened) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let (ready, started) = std::sync::mpsc::channel();
        let address = address.clone();
        let thread = {
            let (stop, opened) = (Arc::clone(&stop), Arc::clone(&opened));
            std::thread::spawn(move || {
                let mut open = VecDeque::new();
                let idle = |n: usize| -> Option<Box<dyn Conn>> {
                    let mut conn = raw_connect(&address).ok()?;
                    let _ = match n % 3 {
                        0 => Ok(()),
                        1 => conn.write_all(&hello[..hello.len() / 2]),
                        _ => conn.write_all(&hello),
                    };
                    opened.fetch_add(1, Ordering::Relaxed);
                    Some(conn)
                };
                for n in 0..held {
                    open.extend(idle(n));
                }
                let _ = ready.send(());
                let mut n = held;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(2));
                    open.extend(idle(n));
                    n += 1;
                    if open.len() > held {
                        open.pop_front();
                    }
                }
            })
        };
        started.recv().unwrap();
        Flood {
            stop,
            opened,
            thread: Some(thread),
        }
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// `count` good clients one after another, each connecting afresh and
/// making one call: how long each took, connecting included. Panics with
/// the first failure.
async fn good_calls(connector: &Connector, count: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let start = Instant::now();
        let client = Client::connect(connector)
            .await
            .unwrap_or_else(|e| panic!("good client {i} could not connect: {e}"));
        let answer: usize = client
            .request("echo", &i)
            .await
            .unwrap_or_else(|e| panic!("good client {i} got no answer: {e}"));
        assert_eq!(answer, i);
        times.push(start.elapsed());
        client.close().await;
    }
    times.sort();
    times
}

fn p99(times: &[Duration]) -> Duration {
    times[(times.len() * 99).div_ceil(100).saturating_sub(1)]
}

fn report(label: &str, baseline: &[Duration], attacked: &[Duration]) {
    eprintln!(
        "admission figures, {label}: good client connect + call, p50 {:?} p99 {:?} worst {:?} \
         (no attack, same run: p50 {:?} p99 {:?})",
        attacked[attacked.len() / 2],
        p99(attacked),
        attacked[attacked.len() - 1],
        baseline[baseline.len() / 2],
        p99(baseline),
    );
}

/// The bar is 100 ms at p99; this bound is for a loaded 2-core
/// machine shared with builds, and still far below the 5 s handshake
/// timeout that a locked-out client used to hit.
const GENEROUS: Duration = Duration::from_secs(1);

async fn good_clients_get_through_a_flood_of_idle_connections(role: &str) {
    let server = ServerProcess::start(role, None);
    let connector = server.connector.clone();
    let baseline = good_calls(&connector, 30).await;
    // A client connected before the flood is never shed.
    let veteran = Client::connect(&connector).await.unwrap();
    let flood = Flood::start(connector.address(), 1000);
    let attacked = good_calls(&connector, 100).await;
    let answer: String = veteran.request("echo", &"still here").await.unwrap();
    assert_eq!(answer, "still here");
    let opened = flood.opened();
    drop(flood);
    report(
        &format!("{role}, {opened} idle connections"),
        &baseline,
        &attacked,
    );
    assert!(p99(&attacked) < GENEROUS, "p99 {:?}", p99(&attacked));
    veteran.close().await;
    let log = server.stop();
    // The limits bit (the caps or the hello timeout, whichever came first
    // for each), said so, and said so a few times, not once per connection.
    let lines = log.lines().filter(|line| line.contains("WARN")).count();
    assert!(
        log.contains("shed") || log.contains("sent no hello"),
        "nothing logged about idle connections: {log}"
    );
    assert!(
        lines < 200,
        "{lines} warnings for {opened} connections:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_unix_connections_do_not_lock_good_clients_out() {
    good_clients_get_through_a_flood_of_idle_connections("unix").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_tcp_connections_do_not_lock_good_clients_out() {
    good_clients_get_through_a_flood_of_idle_connections("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_out_of_file_descriptors_still_serves_good_clients() {
    for role in ["unix", "tcp"] {
        // 96 descriptors: fewer than the flood holds, so accept fails with
        // EMFILE the whole time and the server must free one itself.
        let server = ServerProcess::start(role, Some(96));
        let connector = server.connector.clone();
        let baseline = good_calls(&connector, 20).await;
        let flood = Flood::start(connector.address(), 300);
        let attacked = good_calls(&connector, 50).await;
        let opened = flood.opened();
        drop(flood);
        report(
            &format!("{role}, 96 descriptors, {opened} idle connections"),
            &baseline,
            &attacked,
        );
        assert!(p99(&attacked) < GENEROUS, "p99 {:?}", p99(&attacked));
        let log = server.stop();
        assert!(log.contains("out of file descriptors"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_no_hello_is_closed_within_the_hello_timeout() {
    let server = ServerProcess::start("unix", None);
    let start = Instant::now();
    let mut silent = raw_connect(server.connector.address()).unwrap();
    let mut byte = [0; 1];
    // Closed without a word (a read of 0 bytes), after about a second.
    assert_eq!(silent.read(&mut byte).unwrap_or(0), 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "closed after {waited:?}, not by the hello timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_good_clients_from_one_user_all_get_in() {
    // More at once than one peer may have in the handshake: none may be
    // shed, since each says hello at once and is through in a few trips.
    let server = ServerProcess::start("unix", None);
    let tasks: Vec<_> = (0..300usize)
        .map(|i| {
            let connector = server.connector.clone();
            tokio::spawn(async move {
                let client = Client::connect(&connector).await?;
                let answer: usize = client.request("echo", &i).await?;
                client.close().await;
                Ok::<usize, switchboard::Error>(answer)
            })
        })
        .collect();
    let mut failed = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(answer) => assert_eq!(answer, i),
            Err(e) => failed.push(format!("{i}: {e}")),
        }
    }
    let log = server.stop();
    assert!(
        failed.is_empty(),
        "{} failed: {failed:?}\nserver log:\n{log}",
        failed.len()
    );
}
