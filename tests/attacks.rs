//! The attacker's tour of an authenticated connection (issue 19, part 4):
//! a peer that holds the secret and then misbehaves at the frame level,
//! against a server in its own process, with a good client calling beside
//! it the whole time. Each test bounds the harm (time to drop the attacker,
//! the server's memory) and checks that the good client was served;
//! the figures go to stderr for SECURITY.md.
//!
//! The attacker does the handshake with the library's own client half (the
//! `fuzzing` feature's entry point), then writes raw frames on the socket.

#![cfg(all(unix, feature = "fuzzing"))]

mod server_process;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use server_process::ServerProcess;
use switchboard::{Address, Client, Connector, Format};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::task::JoinHandle;

/// Not a test: the server process (see `server_process`).
#[test]
fn child_process_entry() {
    server_process::child_main();
}

/// A socket shared with the handshake, so it can be had back afterwards.
struct Shared(Arc<UnixStream>);

impl AsyncRead for Shared {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.0.poll_read_ready(cx))?;
            match self.0.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for Shared {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.0.poll_write_ready(cx))?;
            match self.0.try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A connection that has proven the secret, as a raw socket.
async fn authenticated(connector: &Connector, id: &str) -> (UnixStream, Format) {
    let Address::Unix(path) = connector.address() else {
        panic!("not a Unix socket")
    };
    let stream = Arc::new(UnixStream::connect(path).await.unwrap());
    let settled =
        switchboard::fuzzing::handshake_client(Shared(Arc::clone(&stream)), connector, id, None)
            .await
            .unwrap();
    let stream =
        Arc::try_unwrap(stream).unwrap_or_else(|_| panic!("the handshake kept the socket"));
    (stream, settled.format)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn request(id: u64, route: &str, format: Format, params: &impl serde::Serialize) -> Vec<u8> {
    frame(&switchboard::fuzzing::encode_request(id, route, format, params).unwrap())
}

/// Reads until the server closes the connection; how long that took.
/// Pings go unanswered (the attacker is silent).
async fn until_closed(stream: &mut UnixStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut sink = vec![0; 64 * 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close the connection within {limit:?}"));
    start.elapsed()
}

/// A good client beside the attack: a fresh connection and one call every
/// 20 ms until stopped.
struct Beside {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    task: JoinHandle<Vec<Duration>>,
}

/// The fewest good calls made beside an attack, however quickly it ends.
const MIN_CALLS: usize = 10;

impl Beside {
    fn start(connector: &Connector) -> Beside {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let task = {
            let (stop, done, connector) = (Arc::clone(&stop), Arc::clone(&done), connector.clone());
            tokio::spawn(async move {
                let mut times = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let client = Client::connect(&connector)
                        .await
                        .expect("good client: connect");
                    let n: u32 = client.request("echo", &7).await.expect("good client: call");
                    assert_eq!(n, 7);
                    times.push(start.elapsed());
                    done.fetch_add(1, Ordering::Relaxed);
                    client.close().await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                times
            })
        };
        Beside { stop, done, task }
    }

    /// Stops it; asserts every call succeeded quickly; the worst time.
    async fn finish(self) -> (usize, Duration) {
        while self.done.load(Ordering::Relaxed) < MIN_CALLS && !self.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        let mut times = self.task.await.unwrap();
        times.sort();
        let worst = times.last().copied().unwrap_or_default();
        assert!(!times.is_empty());
        assert!(worst < Duration::from_secs(2), "a good call took {worst:?}");
        (times.len(), worst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_frame_then_silence_is_dropped_by_keepalive() {
    let server = ServerProcess::start("unix", None);
    let beside = Beside::start(&server.connector);
    let (mut attacker, _) = authenticated(&server.connector, "half-frame").await;
    let mut half = 1000u32.to_le_bytes().to_vec();
    half.extend_from_slice(&[1; 10]);
    attacker.write_all(&half).await.unwrap();
    // Keepalive is 1 s in the server: pinged, silent, dropped.
    let dropped = until_closed(&mut attacker, Duration::from_secs(10)).await;
    let (calls, worst) = beside.finish().await;
    eprintln!(
        "attack figures, half a frame: dropped after {dropped:?}; good client {calls} calls, worst {worst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_never_read_costs_a_window_not_the_stream() {
    let server = ServerProcess::start("unix", None);
    let before = server.rss_kib();
    let beside = Beside::start(&server.connector);
    let (mut attacker, format) = authenticated(&server.connector, "never-reads").await;
    // Ten million items asked for, none read.
    attacker
        .write_all(&request(1, "count", format, &10_000_000u64))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = server.rss_kib();
    let dropped = until_closed(&mut attacker, Duration::from_secs(10)).await;
    let (calls, worst) = beside.finish().await;
    eprintln!(
        "attack figures, unread stream: server RSS {before} KiB before, {during} KiB during; \
         attacker dropped {dropped:?} after; good client {calls} calls, worst {worst:?}"
    );
    assert!(
        during < before + 64 * 1024,
        "RSS grew from {before} to {during} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_never_owed_closes_that_connection_only() {
    let server = ServerProcess::start("unix", None);
    let beside = Beside::start(&server.connector);
    let (mut attacker, _) = authenticated(&server.connector, "credit").await;
    let mut credit = vec![6];
    credit.extend_from_slice(&1000u32.to_le_bytes());
    credit.extend_from_slice(&(1u64 << 40).to_le_bytes());
    attacker.write_all(&frame(&credit)).await.unwrap();
    let dropped = until_closed(&mut attacker, Duration::from_secs(5)).await;
    let (calls, worst) = beside.finish().await;
    eprintln!(
        "attack figures, unowed credit: closed after {dropped:?}; good client {calls} calls, worst {worst:?}"
    );
    let log = server.stop();
    assert!(
        log.contains("credit"),
        "the violation was not logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_cancels_for_unknown_ids_answer_nothing() {
    let server = ServerProcess::start("unix", None);
    let before = server.rss_kib();
    let beside = Beside::start(&server.connector);
    let (mut attacker, format) = authenticated(&server.connector, "cancels").await;
    let mut burst = Vec::new();
    for id in 0..100_000u64 {
        let mut cancel = vec![5];
        cancel.extend_from_slice(&(id + 1_000_000).to_le_bytes());
        burst.extend_from_slice(&frame(&cancel));
    }
    burst.extend_from_slice(&request(1, "echo", format, &"after"));
    let start = Instant::now();
    attacker.write_all(&burst).await.unwrap();
    // The first answer is the echo's: no cancel produced anything. Pings
    // (kind 7) are answered so keepalive does not drop the attacker.
    let answered = loop {
        let mut length = [0; 4];
        attacker.read_exact(&mut length).await.unwrap();
        let mut body = vec![0; u32::from_le_bytes(length) as usize];
        attacker.read_exact(&mut body).await.unwrap();
        match body[0] {
            7 => attacker.write_all(&frame(&[8])).await.unwrap(),
            kind => {
                assert_eq!(kind, 3, "the server answered a cancel: {body:?}");
                assert_eq!(u64::from_le_bytes(body[1..9].try_into().unwrap()), 1);
                break start.elapsed();
            }
        }
    };
    let after = server.rss_kib();
    let (calls, worst) = beside.finish().await;
    eprintln!(
        "attack figures, 100,000 unknown cancels: all read and the next request answered in \
         {answered:?}; RSS {before} -> {after} KiB; good client {calls} calls, worst {worst:?}"
    );
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_claiming_gigabytes_is_refused_before_it_is_read() {
    let server = ServerProcess::start("unix", None);
    let before = server.rss_kib();
    let beside = Beside::start(&server.connector);
    let (mut attacker, _) = authenticated(&server.connector, "huge").await;
    let mut header = (4u32 << 30).wrapping_sub(16).to_le_bytes().to_vec();
    header.extend_from_slice(&[1; 1024]);
    let _ = attacker.write_all(&header).await;
    let dropped = until_closed(&mut attacker, Duration::from_secs(5)).await;
    let after = server.rss_kib();
    let (calls, worst) = beside.finish().await;
    eprintln!(
        "attack figures, a 4 GiB frame header: closed after {dropped:?}; RSS {before} -> {after} KiB; \
         good client {calls} calls, worst {worst:?}"
    );
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
}
