//! The load mix: many client processes, each sending requests of random
//! sizes (0 B to 1 MiB) while the server calls every one of them back, every
//! answer checked against its request. Nothing may be lost, duplicated or
//! delivered to the wrong caller.
//!
//! `SB_LOAD_CLIENTS` and `SB_LOAD_REQUESTS` change the size of the run
//! (64 × 2,000 by default). `ci/soak.sh` runs the same mix for a given time
//! with clients killed and the server restarted at random.
//!
//! Children are this test executable run again with `SB_LOAD_CHILD` set.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::{Bytes, Client, Connector, Format, HandlerError, Router, Server};

const CHILD_ROLE: &str = "SB_LOAD_CHILD";
/// Requests each client keeps in flight.
const DEPTH: usize = 8;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: reproducible sizes without a dependency.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Mostly small, some medium, a few up to 1 MiB (and some empty).
    fn size(&mut self) -> usize {
        let roll = self.next() % 100;
        let span = match roll {
            0..5 => return 0,
            5..60 => 1024,
            60..90 => 64 * 1024,
            _ => 1024 * 1024,
        };
        (self.next() % span) as usize
    }
}

/// A payload that names its request: the tag in the first 8 bytes (when it
/// is long enough), and every other byte derived from it.
fn payload(tag: u64, len: usize) -> Bytes {
    let mut bytes = vec![(tag % 251) as u8; len];
    if len >= 8 {
        bytes[..8].copy_from_slice(&tag.to_le_bytes());
    }
    Bytes::from(bytes)
}

/// Why `answer` is not the echo of request `tag` of `len` bytes, if it is not.
fn mismatch(tag: u64, len: usize, answer: &Bytes) -> Option<String> {
    if answer.len() != len {
        return Some(format!(
            "request {tag}: {len} bytes sent, {} came back",
            answer.len()
        ));
    }
    if len >= 8 && answer[..8] != tag.to_le_bytes() {
        let got = u64::from_le_bytes(answer[..8].try_into().unwrap());
        return Some(format!("request {tag} got the answer to {got}"));
    }
    let fill = (tag % 251) as u8;
    let probes = [8, len / 2, len.saturating_sub(1)];
    if probes
        .iter()
        .any(|&at| at < len && at >= 8 && answer[at] != fill)
    {
        return Some(format!("request {tag}: the answer's bytes are corrupt"));
    }
    None
}

fn echo_router() -> Router {
    Router::new().route(
        "echo",
        |body: Bytes| async move { Ok::<_, HandlerError>(body) },
    )
}

/// Not a test: the body of the client processes. Run without
/// `SB_LOAD_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    assert_eq!(role, "client");
    let index: u64 = setting("SB_LOAD_INDEX", 0);
    let requests = setting("SB_LOAD_REQUESTS", 2_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime.block_on(async move {
        let connector = Connector::from_env().map_err(|e| e.to_string())?;
        let client = Client::builder(&connector)
            .id(format!("load-{index}"))
            .router(echo_router())
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ (index + 1));
        let mut tasks = tokio::task::JoinSet::new();
        let mut checked = 0u64;
        for n in 0..requests {
            if tasks.len() >= DEPTH {
                checked += tasks.join_next().await.unwrap().unwrap()?;
            }
            let (tag, len) = (index << 32 | n, random.size());
            let peer = client.peer().clone();
            tasks.spawn(async move {
                let answer: Bytes = peer
                    .request("echo", &payload(tag, len))
                    .await
                    .map_err(|e| format!("request {tag}: {e}"))?;
                match mismatch(tag, len, &answer) {
                    Some(wrong) => Err(wrong),
                    None => Ok::<u64, String>(1),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            checked += done.unwrap()?;
        }
        client.close().await;
        Ok::<u64, String>(checked)
    });
    match outcome {
        Ok(checked) => println!("SB:ok {checked}"),
        Err(wrong) => {
            println!("SB:fail {wrong}");
            std::process::exit(1);
        }
    }
}

fn spawn_client(connector: &Connector, index: u64, requests: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, "client")
        .env("SB_LOAD_INDEX", index.to_string())
        .env("SB_LOAD_REQUESTS", requests.to_string())
        .env("SWITCHBOARD_CONNECTOR", connector.dump_state())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What a client process said about itself (after libtest's own words).
fn verdict(child: Child) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = stdout
        .lines()
        .filter_map(|line| line.split_once("SB:").map(|(_, said)| said.to_owned()))
        .next();
    said.unwrap_or_else(|| format!("no verdict, exit {:?}: {stdout}", output.status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_random_sizes_both_directions_nothing_lost_or_misrouted() {
    // Under Wine every process is slow to start: a smaller mix there.
    let (clients, requests) = if cfg!(windows) { (8, 200) } else { (64, 2_000) };
    let clients = setting("SB_LOAD_CLIENTS", clients);
    let requests = setting("SB_LOAD_REQUESTS", requests);
    let connector = Connector::local().with_format(Format::MsgPack);
    let server = Arc::new(Server::bind(&connector, echo_router()).await.unwrap());
    let started = Instant::now();
    let children: Vec<Child> = (0..clients)
        .map(|index| spawn_client(server.connector(), index, requests))
        .collect();

    // While they work, the server calls each of them back, checking every
    // answer the same way.
    let callbacks = Arc::new(AtomicU64::new(0));
    let calling = {
        let (server, callbacks) = (Arc::clone(&server), Arc::clone(&callbacks));
        tokio::spawn(async move {
            let mut random = Random(42);
            let mut tag = 1u64 << 62;
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut wrong = Vec::new();
            while Instant::now() < deadline {
                let ids = server.clients();
                if ids.is_empty() && callbacks.load(Ordering::SeqCst) > 0 {
                    break;
                }
                let mut round = tokio::task::JoinSet::new();
                for id in ids {
                    let (server, len) = (Arc::clone(&server), random.size() / 4);
                    tag += 1;
                    round.spawn(async move {
                        match server
                            .request::<_, Bytes>(&id, "echo", &payload(tag, len))
                            .await
                        {
                            Ok(answer) => mismatch(tag, len, &answer).map(Err).unwrap_or(Ok(true)),
                            // A client that finished and left is fine.
                            Err(e) if e.is_connection_error() => Ok(false),
                            Err(switchboard::Error::UnknownClient(_)) => Ok(false),
                            Err(e) => Err(format!("callback to {id}: {e}")),
                        }
                    });
                }
                while let Some(done) = round.join_next().await {
                    match done.unwrap() {
                        Ok(true) => {
                            callbacks.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(false) => {}
                        Err(e) => wrong.push(e),
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            wrong
        })
    };

    let verdicts =
        tokio::task::spawn_blocking(move || children.into_iter().map(verdict).collect::<Vec<_>>())
            .await
            .unwrap();
    let wrong_callbacks = calling.await.unwrap();
    let failures: Vec<_> = verdicts.iter().filter(|v| !v.starts_with("ok ")).collect();
    assert!(
        failures.is_empty(),
        "{} clients failed: {failures:?}",
        failures.len()
    );
    let answered: u64 = verdicts
        .iter()
        .map(|v| v[3..].trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(answered, clients * requests, "answers lost");
    assert!(wrong_callbacks.is_empty(), "{wrong_callbacks:?}");
    let callbacks = callbacks.load(Ordering::SeqCst);
    assert!(callbacks > 0, "the server never reached a client");
    eprintln!(
        "load: {clients} processes x {requests} requests checked, {callbacks} callbacks checked, \
         in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `ci/soak.sh`: the same mix for `SB_SOAK_SECONDS`, with client processes
/// killed and the server restarted at random; totals at the end. Clients
/// that were killed or lost their server may fail; what they report must
/// still never be a wrong answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long-running; run by ci/soak.sh"]
async fn soak() {
    let seconds = setting("SB_SOAK_SECONDS", 60);
    let clients = setting("SB_LOAD_CLIENTS", 16);
    // Half the clients finish within a round, half are cut off by the
    // restart.
    let (short, long) = (setting("SB_LOAD_REQUESTS", 300), 20_000);
    let dir = tempfile::tempdir().unwrap();
    let connector = Connector::unix_socket(dir.path().join("soak"))
        .unwrap()
        .with_format(Format::MsgPack);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut random = Random(7);
    let (mut finished, mut killed, mut lost, mut restarts, mut wrong) = (0, 0, 0, 0, Vec::new());
    let mut next_index = 0u64;
    while Instant::now() < end {
        let server = Server::bind(&connector, echo_router()).await.unwrap();
        let mut running: Vec<Child> = (0..clients)
            .map(|_| {
                next_index += 1;
                let requests = if next_index.is_multiple_of(2) {
                    short
                } else {
                    long
                };
                spawn_client(server.connector(), next_index, requests)
            })
            .collect();
        // Let them work, kill one now and then, then restart the server
        // under them.
        let round_end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < round_end {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if random.next().is_multiple_of(4) && !running.is_empty() {
                let victim = (random.next() as usize) % running.len();
                let _ = running[victim].kill();
                let _ = running.remove(victim).wait();
                killed += 1;
            }
        }
        drop(server);
        restarts += 1;
        let verdicts = tokio::task::spawn_blocking(move || {
            running.into_iter().map(verdict).collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for verdict in verdicts {
            if verdict.starts_with("ok ") {
                finished += 1;
            } else if verdict.contains("disconnected")
                || verdict.contains("closed")
                || verdict.contains("connect")
            {
                lost += 1;
            } else {
                wrong.push(verdict);
            }
        }
    }
    println!(
        "soak: {seconds} s, {restarts} server restarts, {finished} clients finished, \
         {killed} killed, {lost} lost their server mid-run, {} wrong answers",
        wrong.len()
    );
    assert!(wrong.is_empty(), "{wrong:?}");
    assert!(finished > 0);
}

#[test]
fn the_size_mix_spans_zero_to_a_mebibyte() {
    let mut random = Random(1);
    let sizes: Vec<usize> = (0..10_000).map(|_| random.size()).collect();
    assert!(sizes.contains(&0));
    assert!(sizes.iter().any(|s| *s > 512 * 1024));
    assert!(sizes.iter().all(|s| *s < 1024 * 1024));
}
