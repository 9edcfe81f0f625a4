//! A peer that breaks the shared-memory ring: positions out of range or
//! going backwards, a frame length past the limit, garbage where a message
//! should be, a message torn off by a peer that dies. Each closes that
//! connection (with a protocol error where the peer broke the rules), and
//! the server, its memory and its other clients are unharmed: a good client
//! beside the attack keeps being served.
//!
//! The vandal is this test itself: it speaks the handshake by hand (over a
//! real Unix socket, with a connector without a secret), makes the ring the
//! way PROTOCOL.md §10 says, and then writes into it what it likes.

#![cfg(target_os = "linux")]

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::{Address, Bytes, Client, Connector, Error, HandlerError, Router, Server};

const CAPACITY: usize = 64 * 1024;
const REGION: usize = 4096 + 2 * CAPACITY;
/// The client-to-server direction's words, and its data (PROTOCOL.md §10).
const WRITE_POSITION: usize = 1024;
const DATA: usize = 4096;

fn frame(value: &Value) -> Vec<u8> {
    let body = value.to_string().into_bytes();
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn read_frame(socket: &mut UnixStream) -> Value {
    let mut len = [0; 4];
    socket.read_exact(&mut len).unwrap();
    let mut body = vec![0; u32::from_le_bytes(len) as usize];
    socket.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// A raw client that completed the handshake and set the ring up.
struct Vandal {
    socket: UnixStream,
    base: *mut u8,
}

impl Vandal {
    fn connect(server: &Server) -> Vandal {
        let Address::Unix(path) = server.connector().address() else {
            panic!("a local connector");
        };
        // The server's protocol version, from its refusal of version 0.
        let mut probe = UnixStream::connect(path).unwrap();
        probe.write_all(&frame(&json!({"switchboard": 0}))).unwrap();
        let version = read_frame(&mut probe)["switchboard"].as_u64().unwrap();

        let mut socket = UnixStream::connect(path).unwrap();
        let hello = json!({
            "switchboard": version,
            "client_id": format!("vandal-{}", rand_suffix()),
            "formats": ["json"],
            "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "window": {"messages": 16, "bytes": 1 << 20},
            "ring": CAPACITY,
        });
        socket.write_all(&frame(&hello)).unwrap();
        let challenge = read_frame(&mut socket);
        assert!(challenge.get("error").is_none(), "{challenge}");
        socket.write_all(&frame(&json!({}))).unwrap();
        let welcome = read_frame(&mut socket);
        assert_eq!(welcome["ring"], json!(CAPACITY), "{welcome}");

        let (fd, base) = make_region();
        send_fd(&socket, b'R', &fd);
        Vandal { socket, base }
    }

    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: `at` is one of the ring's 8-aligned words inside the mapping.
        unsafe { &*self.base.add(at).cast() }
    }

    /// Writes `bytes` at ring position `at` (no wrap needed in these tests).
    fn put(&self, at: usize, bytes: &[u8]) {
        // SAFETY: inside the mapping's client-to-server data.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(DATA + at), bytes.len())
        };
    }

    fn publish(&self, position: u64) {
        self.word(WRITE_POSITION)
            .store(position, std::sync::atomic::Ordering::SeqCst);
        // Ring the doorbell whatever the server's reader is doing.
        let _ = (&self.socket).write(&[1]);
    }

    /// True once the server closed the connection (within 10 s).
    fn closed_by_server(&mut self) -> bool {
        self.socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut byte = [0; 64];
        loop {
            match self.socket.read(&mut byte) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

// SAFETY: the mapping is plain shared memory, touched only through raw
// copies and atomics; moving the handle to another thread changes nothing.
unsafe impl Send for Vandal {}

impl Drop for Vandal {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `make_region`.
        unsafe { libc::munmap(self.base.cast(), REGION) };
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A sealed memfd with the ring's header, mapped.
fn make_region() -> (OwnedFd, *mut u8) {
    // SAFETY: plain syscalls; every result is checked.
    unsafe {
        let raw = libc::memfd_create(
            c"vandal".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        assert!(raw >= 0);
        let fd = OwnedFd::from_raw_fd(raw);
        assert_eq!(libc::ftruncate(raw, REGION as libc::off_t), 0);
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, seals), 0);
        let base = libc::mmap(
            std::ptr::null_mut(),
            REGION,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            raw,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        let base = base.cast::<u8>();
        std::ptr::copy_nonoverlapping(b"SBRING01".as_ptr(), base, 8);
        std::ptr::copy_nonoverlapping((CAPACITY as u32).to_le_bytes().as_ptr(), base.add(8), 4);
        (fd, base)
    }
}

fn send_fd(socket: &UnixStream, byte: u8, fd: &OwnedFd) {
    // SAFETY: a msghdr over live locals, with one SCM_RIGHTS descriptor.
    unsafe {
        let mut control = [0u64; 4];
        let mut iov = libc::iovec {
            iov_base: (&raw const byte).cast_mut().cast(),
            iov_len: 1,
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(4) as _;
        libc::CMSG_DATA(header)
            .cast::<i32>()
            .write_unaligned(fd.as_raw_fd());
        assert_eq!(libc::sendmsg(socket.as_raw_fd(), &msg, 0), 1);
    }
}

/// A server without a secret (so the vandal needs no HMAC) recording its
/// connection errors, and a good client of its own over the ring.
async fn server_and_good_client() -> (Server, Client, Arc<Mutex<Vec<String>>>) {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&errors);
    let router = Router::new().route(
        "echo",
        |body: Bytes| async move { Ok::<_, HandlerError>(body) },
    );
    let connector = Connector::local()
        .without_secret()
        .with_shm_ring(true)
        .unwrap();
    let server = Server::builder(router)
        .on_error(move |e: &Error| {
            let kind = if matches!(e, Error::Protocol(_)) {
                "protocol"
            } else {
                "other"
            };
            seen.lock().unwrap().push(format!("{kind}: {e}"));
        })
        .bind(&connector)
        .await
        .unwrap();
    let good = Client::connect(server.connector()).await.unwrap();
    (server, good, errors)
}

/// The good client is still served, over its own ring.
async fn still_served(good: &Client) {
    for i in 0..100u8 {
        let answer: Bytes = good
            .request("echo", &Bytes::from(vec![i; 32]))
            .await
            .unwrap();
        assert_eq!(answer[..], [i; 32][..]);
    }
}

async fn expect_error(errors: &Mutex<Vec<String>>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = errors.lock().unwrap().clone();
        if seen.iter().any(|e| e.contains(wanted)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no error with {wanted:?} among {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `vandalize` on a fresh vandal in a blocking thread and checks the
/// server closed its connection.
async fn attack(server: &Server, vandalize: impl FnOnce(&mut Vandal) + Send + 'static) {
    let mut vandal = tokio::task::block_in_place(|| Vandal::connect(server));
    let closed = tokio::task::spawn_blocking(move || {
        vandalize(&mut vandal);
        vandal.closed_by_server()
    });
    assert!(
        closed.await.unwrap(),
        "the server kept the vandal's connection open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_position_past_the_ring_is_a_protocol_error() {
    let (server, good, errors) = server_and_good_client().await;
    attack(&server, |vandal| vandal.publish(CAPACITY as u64 + 100)).await;
    expect_error(&errors, "protocol: ").await;
    expect_error(&errors, "corrupted the shared-memory ring").await;
    still_served(&good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_position_going_back_is_a_protocol_error() {
    let (server, good, errors) = server_and_good_client().await;
    attack(&server, |vandal| {
        // A ping (kind 7), read by the server; then the position goes back.
        vandal.put(0, &[1, 0, 0, 0, 7]);
        vandal.publish(5);
        std::thread::sleep(Duration::from_millis(50));
        vandal.publish(2);
        vandal.publish(u64::MAX);
    })
    .await;
    expect_error(&errors, "corrupted the shared-memory ring").await;
    still_served(&good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_length_past_the_frame_limit_closes_the_connection() {
    let (server, good, errors) = server_and_good_client().await;
    attack(&server, |vandal| {
        vandal.put(0, &u32::MAX.to_le_bytes());
        vandal.publish(4);
    })
    .await;
    expect_error(&errors, "frame").await;
    still_served(&good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_where_a_message_should_be_is_a_protocol_error() {
    let (server, good, errors) = server_and_good_client().await;
    attack(&server, |vandal| {
        let mut garbage = 200u32.to_le_bytes().to_vec();
        garbage.extend((0..200u32).map(|i| (i * 37 % 256) as u8));
        vandal.put(0, &garbage);
        vandal.publish(garbage.len() as u64);
    })
    .await;
    expect_error(&errors, "protocol: ").await;
    still_served(&good).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dies_mid_message_is_noticed() {
    let (server, good, _errors) = server_and_good_client().await;
    let vandal = tokio::task::block_in_place(|| Vandal::connect(&server));
    server.wait_for_clients(2).await;
    // Half a frame, then the vandal is gone.
    vandal.put(0, &100u32.to_le_bytes());
    vandal.put(4, &[b'{'; 10]);
    vandal.publish(14);
    std::thread::sleep(Duration::from_millis(20));
    let _ = vandal.socket.shutdown(std::net::Shutdown::Both);
    drop(vandal);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.clients().len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the dead vandal is still counted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    still_served(&good).await;
}
