//! A hostile peer on the shared-memory path (PROTOCOL.md §9), written by
//! hand from the spec: pools that are not what they claim (without seals
//! or of another size on Linux; not a section, smaller than announced, a
//! handle that names nothing on Windows), truncation (Linux: a section
//! has no call that resizes it), offsets outside the pool, a slot named
//! twice, a region it never sent or that is not one, a release of what it
//! was never sent. Each closes that peer's connection (or refuses its
//! handshake) while a good client beside it is served as usual. How the
//! raw peer hands a pool over is the platform's (`shm_attacks/`).

#![cfg(any(target_os = "linux", windows))]

#[cfg(target_os = "linux")]
#[path = "shm_attacks/linux.rs"]
mod raw;
#[cfg(windows)]
#[path = "shm_attacks/windows.rs"]
mod raw;

use std::io::{Read, Write};

use raw::{Pool, Stream};
use serde_json::{Value, json};
use switchboard::{Bytes, Client, Config, Connector, HandlerError, Router, Server, SharedMemory};

/// Bodies the `hold` route keeps.
static HELD: std::sync::Mutex<Vec<Bytes>> = std::sync::Mutex::new(Vec::new());

fn router() -> Router {
    Router::new()
        .route("len", |body: Bytes| async move {
            Ok::<_, HandlerError>(body.len() as u64)
        })
        .route("hold", |body: Bytes| async move {
            HELD.lock().unwrap().push(body);
        })
}

async fn server() -> Server {
    Server::bind(&Connector::local().without_secret(), router())
        .await
        .unwrap()
}

/// A good client beside the attacks: still served.
async fn good_client_is_served(server: &Server) {
    let client = Client::connect(server.connector()).await.unwrap();
    assert!(client.peer().shares_memory());
    let len: u64 = client
        .request("len", &Bytes::from(vec![1u8; 1 << 20]))
        .await
        .unwrap();
    assert_eq!(len, 1 << 20);
}

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_le_bytes()[..], body].concat()
}

/// The next frame, or `None` when the server closed the connection.
fn receive(stream: &mut Stream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// A raw client after the handshake, with its pool and what else it
/// handed over (Linux: the channel).
struct Raw {
    stream: Stream,
    pool: Pool,
    _kept: raw::Kept,
}

/// Runs the handshake offering `pool` (announced as `announced` bytes).
/// `Ok` with the connection, or `Err` with the server's refusal.
fn handshake(connector: &Connector, pool: Pool, announced: usize) -> Result<Raw, Value> {
    let mut stream = raw::connect(connector);
    let hello = json!({
        "switchboard": 4, "client_id": "attacker", "formats": ["msgpack"],
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "window": {"messages": 16, "bytes": 1 << 20}, "shm": 1,
    });
    stream
        .write_all(&frame(hello.to_string().as_bytes()))
        .unwrap();
    let challenge: Value = serde_json::from_slice(&receive(&mut stream).unwrap()).unwrap();
    assert_eq!(challenge["shm"], 1, "{challenge}");
    let kept = raw::send_proof(&mut stream, &pool, announced);
    // The server's pool comes with it (Linux: attached, and a plain read
    // lets the kernel close it; Windows: a handle value, never taken).
    let welcome: Value = serde_json::from_slice(&receive(&mut stream).unwrap()).unwrap();
    if welcome.get("error").is_some() {
        return Err(welcome);
    }
    assert_eq!(welcome["welcome"], true, "{welcome}");
    Ok(Raw {
        stream,
        pool,
        _kept: kept,
    })
}

/// A `shared` request 1 to route `len` with its body at `offset`, `len`
/// long.
fn shared_request(offset: u64, len: u64) -> Vec<u8> {
    shared_call(1, "len", offset, len)
}

fn shared_call(id: u64, route: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut body = vec![11u8];
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&len.to_le_bytes());
    body.push(1);
    body.extend_from_slice(&id.to_le_bytes());
    body.extend_from_slice(&(route.len() as u16).to_le_bytes());
    body.extend_from_slice(route.as_bytes());
    frame(&body)
}

/// A MessagePack `bin` of `len` bytes, written at `offset` of the pool.
fn write_bin(pool: &Pool, offset: usize, len: usize) -> u64 {
    let mut bin = vec![0xc6];
    bin.extend_from_slice(&(len as u32).to_be_bytes());
    bin.resize(5 + len, 0x42);
    pool.write(offset, &bin);
    bin.len() as u64
}

impl Raw {
    /// Sends `bytes` and reads until the answer to request 1 (`Some`, its
    /// frame) or the end of the connection (`None`).
    fn exchange(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.stream.write_all(bytes).ok()?;
        loop {
            let frame = receive(&mut self.stream)?;
            let answers_1 = frame.get(1..9) == Some(&1u64.to_le_bytes()[..]);
            if matches!(frame.first(), Some(3 | 4)) && answers_1 {
                return Some(frame);
            }
        }
    }
}

#[tokio::test]
async fn an_honest_raw_peer_is_served_through_its_pool() {
    let server = server().await;
    let connector = server.connector().clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut raw = handshake(&connector, Pool::new(1 << 20), 1 << 20).unwrap();
        let len = write_bin(&raw.pool, 4096, 100_000);
        raw.exchange(&shared_request(4096, len))
    })
    .await
    .unwrap()
    .expect("answered");
    // A response (kind 3) to request 1 whose body is MessagePack 100000.
    assert_eq!(answer[0], 3, "{answer:?}");
    assert_eq!(&answer[9..], &[0xce, 0x00, 0x01, 0x86, 0xa0]);
    good_client_is_served(&server).await;
}

#[tokio::test]
async fn pools_that_are_not_what_they_claim_are_refused() {
    let server = server().await;
    for (pool, announced, why) in raw::lying_pools() {
        let connector = server.connector().clone();
        let refusal = tokio::task::spawn_blocking(move || handshake(&connector, pool, announced))
            .await
            .unwrap()
            .err()
            .expect("refused");
        assert_eq!(refusal["error"]["code"], "bad_hello", "{refusal}");
        let message = refusal["error"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message}");
        good_client_is_served(&server).await;
    }
}

/// Linux: a memfd could be truncated, and the seals are what stop it. A
/// Windows section has no call that resizes it, so there is nothing to try.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_sealed_pool_cannot_be_truncated_under_the_reader() {
    let server = server().await;
    let connector = server.connector().clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut raw = handshake(&connector, Pool::new(1 << 20), 1 << 20).unwrap();
        let len = write_bin(&raw.pool, 0, 500_000);
        let (shrink, grow) = (raw.pool.truncate(0), raw.pool.truncate(2 << 20));
        assert_eq!((shrink, grow), (-1, -1), "the seals refuse both");
        raw.exchange(&shared_request(0, len))
    })
    .await
    .unwrap();
    assert_eq!(answer.expect("answered")[0], 3);
    good_client_is_served(&server).await;
}

/// What a hostile peer sends, given its connection.
type Attack = Box<dyn Fn(&Raw) -> Vec<u8> + Send>;

#[tokio::test]
async fn lies_about_shared_memory_close_that_connection_only() {
    let server = server().await;
    let pool_len = 1u64 << 20;
    let mut attacks: Vec<(&str, Attack)> = vec![
        (
            "past the end",
            Box::new(move |_| shared_request(pool_len - 10, 11)),
        ),
        (
            "offset overflows",
            Box::new(|_| shared_request(u64::MAX - 5, 10)),
        ),
        (
            "a length over the limit",
            Box::new(|_| shared_request(0, 3 << 30)),
        ),
        (
            "a region it never sent",
            Box::new(|_| shared_request(u64::MAX, 4096)),
        ),
        (
            "a slot named while still held",
            Box::new(|raw: &Raw| {
                let len = write_bin(&raw.pool, 0, 70_000);
                // The `hold` handler keeps the first: the second names a slot
                // the server still holds.
                [shared_call(2, "hold", 0, len), shared_request(0, len)].concat()
            }),
        ),
        (
            "a release of what it was never sent",
            Box::new(|_| {
                let mut body = vec![12u8];
                body.extend_from_slice(&1u32.to_le_bytes());
                body.extend_from_slice(&4096u64.to_le_bytes());
                [frame(&body), shared_request(u64::MAX, 1)].concat()
            }),
        ),
        (
            "an error message through shared memory",
            Box::new(|raw: &Raw| {
                let len = write_bin(&raw.pool, 0, 70_000);
                let mut bytes = shared_request(0, len);
                bytes[4 + 17] = 4;
                bytes
            }),
        ),
    ];
    attacks.extend(raw::lying_regions());
    for (what, attack) in attacks {
        let connector = server.connector().clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut raw =
                handshake(&connector, Pool::new(pool_len as usize), pool_len as usize).unwrap();
            let bytes = attack(&raw);
            // Closed: no answer, the stream ends.
            raw.exchange(&bytes).is_none()
        })
        .await
        .unwrap();
        assert!(closed, "{what}: the connection was not closed");
        good_client_is_served(&server).await;
    }
}

/// Bodies the `keep` route of [`keeping_server`] keeps, by server.
static KEPT: std::sync::Mutex<Vec<(bool, Bytes)>> = std::sync::Mutex::new(Vec::new());

/// A server whose `keep` route holds on to each body it gets, with
/// `copy_received` as given.
async fn keeping_server(copy_received: bool) -> Server {
    let router = router().route("keep", move |body: Bytes| async move {
        KEPT.lock().unwrap().push((copy_received, body));
    });
    let mut shm = SharedMemory::default();
    shm.copy_received = copy_received;
    let mut config = Config::default();
    config.shared_memory = Some(shm);
    Server::builder(router)
        .config(config)
        .bind(&Connector::local().without_secret())
        .await
        .unwrap()
}

/// What a handler holds after the sender rewrote the body's bytes in its
/// pool: the rewritten bytes when it reads in place (the default, which
/// SECURITY.md documents), the bytes as sent with `copy_received`.
#[tokio::test]
async fn a_body_rewritten_after_sending_reaches_a_handler_only_without_copy_received() {
    for copy_received in [false, true] {
        let server = keeping_server(copy_received).await;
        let connector = server.connector().clone();
        const LEN: usize = 100_000;
        tokio::task::spawn_blocking(move || {
            let mut raw = handshake(&connector, Pool::new(1 << 20), 1 << 20).unwrap();
            let len = write_bin(&raw.pool, 4096, LEN);
            let answer = raw.exchange(&shared_call(1, "keep", 4096, len)).unwrap();
            assert_eq!(answer[0], 3, "{answer:?}");
            // The handler has answered and still holds the body: rewrite it.
            raw.pool.write(4096 + 5, &[0x43u8; LEN]);
            // Keep the connection open while the body is looked at.
            raw
        })
        .await
        .map(|raw| {
            let kept = KEPT.lock().unwrap();
            let (_, body) = kept
                .iter()
                .rev()
                .find(|(copied, _)| *copied == copy_received)
                .expect("the handler kept the body");
            assert_eq!(body.len(), LEN);
            let expected = if copy_received { 0x42 } else { 0x43 };
            assert!(
                body.iter().all(|b| *b == expected),
                "copy_received = {copy_received}: the handler saw {:#x}, expected {expected:#x}",
                body[0]
            );
            drop(raw);
        })
        .unwrap();
        good_client_is_served(&server).await;
    }
}
