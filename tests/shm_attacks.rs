//! A hostile peer on the shared-memory path (PROTOCOL.md §9), written by
//! hand from the spec: pools without seals or of another size than
//! announced, truncation, offsets outside the pool, a slot named twice,
//! a region it never sent, a release of what it was never sent. Each
//! closes that peer's connection (or refuses its handshake) while a good
//! client beside it is served as usual.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{
    Address, Bytes, Client, Config, Connector, HandlerError, Router, Server, SharedMemory,
};

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

fn memfd(len: usize, seals: libc::c_int) -> OwnedFd {
    // SAFETY: plain syscalls; the descriptor is owned right away.
    unsafe {
        let fd = libc::memfd_create(
            c"sb-attack".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        assert!(fd >= 0);
        let fd = OwnedFd::from_raw_fd(fd);
        assert_eq!(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t), 0);
        if seals != 0 {
            assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals), 0);
        }
        fd
    }
}

const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

fn packet_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    unsafe {
        assert_eq!(
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr()
            ),
            0
        );
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    [&(body.len() as u32).to_le_bytes()[..], body].concat()
}

/// Sends `bytes` with `fds` attached.
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) {
    let mut control = vec![0u64; 8];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr points at live buffers; CMSG macros stay within them.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE((fds.len() * 4) as u32) as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(header),
            fds.len() * 4,
        );
        assert_eq!(
            libc::sendmsg(stream.as_raw_fd(), &msg, 0),
            bytes.len() as isize
        );
    }
}

/// The next frame, or `None` when the server closed the connection.
fn receive(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).ok()?;
    let mut body = vec![0; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(body)
}

/// A raw client after the handshake, with its pool and channel.
struct Raw {
    stream: UnixStream,
    pool: OwnedFd,
    channel: OwnedFd,
}

/// Runs the handshake offering `pool` (announced as `announced` bytes).
/// `Ok` with the connection, or `Err` with the server's refusal.
fn handshake(connector: &Connector, pool: OwnedFd, announced: usize) -> Result<Raw, Value> {
    let Address::Unix(path) = connector.address() else {
        panic!("not a Unix socket");
    };
    let mut stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
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
    let (channel, theirs) = packet_pair();
    let proof = json!({"pool": announced, "fds": ["pool", "channel"]});
    send_with_fds(
        &stream,
        &frame(proof.to_string().as_bytes()),
        &[pool.as_raw_fd(), theirs.as_raw_fd()],
    );
    drop(theirs);
    // The server's pool comes attached; a plain read lets the kernel close it.
    let welcome: Value = serde_json::from_slice(&receive(&mut stream).unwrap()).unwrap();
    if welcome.get("error").is_some() {
        return Err(welcome);
    }
    assert_eq!(welcome["welcome"], true, "{welcome}");
    Ok(Raw {
        stream,
        pool,
        channel,
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
fn write_bin(pool: &OwnedFd, offset: usize, len: usize) -> u64 {
    let mut bin = vec![0xc6];
    bin.extend_from_slice(&(len as u32).to_be_bytes());
    bin.resize(5 + len, 0x42);
    // SAFETY: pwrite of a live buffer to a descriptor we own.
    let written = unsafe {
        libc::pwrite(
            pool.as_raw_fd(),
            bin.as_ptr().cast(),
            bin.len(),
            offset as libc::off_t,
        )
    };
    assert_eq!(written, bin.len() as isize);
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
        let mut raw = handshake(&connector, memfd(1 << 20, SEALS), 1 << 20).unwrap();
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
async fn pools_without_seals_or_of_another_size_are_refused() {
    let server = server().await;
    for (pool, announced, why) in [
        (memfd(1 << 20, 0), 1 << 20, "not sealed"),
        (memfd(1 << 20, libc::F_SEAL_GROW), 1 << 20, "not sealed"),
        (memfd(1 << 20, SEALS), 2 << 20, "bytes, expected"),
    ] {
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

#[tokio::test]
async fn a_sealed_pool_cannot_be_truncated_under_the_reader() {
    let server = server().await;
    let connector = server.connector().clone();
    let answer = tokio::task::spawn_blocking(move || {
        let mut raw = handshake(&connector, memfd(1 << 20, SEALS), 1 << 20).unwrap();
        let len = write_bin(&raw.pool, 0, 500_000);
        // SAFETY: plain syscalls on our own descriptor.
        let (shrink, grow) = unsafe {
            (
                libc::ftruncate(raw.pool.as_raw_fd(), 0),
                libc::ftruncate(raw.pool.as_raw_fd(), 2 << 20),
            )
        };
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
    let attacks: Vec<(&str, Attack)> = vec![
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
    for (what, attack) in attacks {
        let connector = server.connector().clone();
        let closed = tokio::task::spawn_blocking(move || {
            let mut raw = handshake(
                &connector,
                memfd(pool_len as usize, SEALS),
                pool_len as usize,
            )
            .unwrap();
            let bytes = attack(&raw);
            // Closed: no answer, the stream ends.
            let _ = &raw.channel;
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
            let mut raw = handshake(&connector, memfd(1 << 20, SEALS), 1 << 20).unwrap();
            let len = write_bin(&raw.pool, 4096, LEN);
            let answer = raw.exchange(&shared_call(1, "keep", 4096, len)).unwrap();
            assert_eq!(answer[0], 3, "{answer:?}");
            // The handler has answered and still holds the body: rewrite it.
            let rewritten = vec![0x43u8; LEN];
            // SAFETY: pwrite of a live buffer to a descriptor we own.
            let written = unsafe {
                libc::pwrite(
                    raw.pool.as_raw_fd(),
                    rewritten.as_ptr().cast(),
                    LEN,
                    4096 + 5,
                )
            };
            assert_eq!(written, LEN as isize);
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
