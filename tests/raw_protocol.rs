//! A hand-written client speaking PROTOCOL.md directly: what a well-behaved
//! client never sends (wrong versions, garbage, oversized frames) is
//! refused, and only that connection suffers.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Client, Config, Connector, Error, Server};

/// The protocol version PROTOCOL.md describes.
const VERSION: u32 = 4;

mod support;

use support::conversation::{next_error, server_with_errors, test_router};

/// A hand-written client speaking PROTOCOL.md directly, for sending what a
/// well-behaved client never would. Uses a connector without a secret.
struct Raw(RawStream);

#[cfg(unix)]
type RawStream = std::os::unix::net::UnixStream;
// A named pipe opened as a file is a byte stream like a socket.
#[cfg(windows)]
type RawStream = std::fs::File;

impl Raw {
    #[cfg(unix)]
    fn connect(connector: &Connector) -> Raw {
        let switchboard::Address::Unix(path) = connector.address() else {
            panic!("expected a unix connector")
        };
        let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Raw(stream)
    }

    #[cfg(windows)]
    fn connect(connector: &Connector) -> Raw {
        let switchboard::Address::Pipe(name) = connector.address() else {
            panic!("expected a pipe connector")
        };
        let path = format!(r"\\.\pipe\{name}");
        // The server opens its next pipe instance right after accepting one;
        // until then the pipe is busy.
        for _ in 0..200 {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            {
                Ok(file) => return Raw(file),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        panic!("could not open {path}");
    }

    fn send(&mut self, body: &[u8]) {
        self.0
            .write_all(&(body.len() as u32).to_le_bytes())
            .unwrap();
        self.0.write_all(body).unwrap();
    }

    fn receive(&mut self) -> Option<Vec<u8>> {
        let mut header = [0u8; 4];
        self.0.read_exact(&mut header).ok()?;
        let mut body = vec![0; u32::from_le_bytes(header) as usize];
        self.0.read_exact(&mut body).ok()?;
        Some(body)
    }

    fn handshake(connector: &Connector, version: u32) -> (Raw, Value) {
        let mut raw = Raw::connect(connector);
        let hello = json!({
            "switchboard": version,
            "client_id": "raw",
            "formats": ["json"],
            "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "window": {"messages": 16, "bytes": 1048576},
        });
        raw.send(hello.to_string().as_bytes());
        let challenge: Value = serde_json::from_slice(&raw.receive().unwrap()).unwrap();
        if challenge.get("error").is_none() {
            raw.send(b"{}");
            let welcome: Value = serde_json::from_slice(&raw.receive().unwrap()).unwrap();
            assert_eq!(welcome["welcome"], json!(true), "{welcome}");
        }
        (raw, challenge)
    }

    fn closed_by_server(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.0.read(&mut byte), Ok(0) | Err(_))
    }
}

/// Runs blocking raw-protocol work against `server` off the async runtime.
async fn raw_session<T: Send + 'static>(
    server: &Server,
    work: impl FnOnce(Connector) -> T + Send + 'static,
) -> T {
    let connector = server.connector().clone();
    tokio::task::spawn_blocking(move || work(connector))
        .await
        .unwrap()
}

#[tokio::test]
async fn version_mismatch_is_refused_and_named() {
    let (server, mut errors) = server_with_errors(&Connector::local().without_secret()).await;
    let (_raw, reply) = raw_session(&server, move |connector| Raw::handshake(&connector, 99)).await;
    assert_eq!(reply["error"]["code"], "version_mismatch", "{reply}");
    assert_eq!(reply["switchboard"], VERSION);
    let reported = next_error(&mut errors).await;
    assert!(
        reported.contains(&format!(
            "VersionMismatch {{ ours: {VERSION}, theirs: 99 }}"
        )),
        "{reported}"
    );
}

#[tokio::test]
async fn a_raw_client_following_protocol_md_gets_answers() {
    let server = Server::bind(&Connector::local().without_secret(), test_router())
        .await
        .unwrap();
    let answer = raw_session(&server, move |connector| {
        let (mut raw, challenge) = Raw::handshake(&connector, VERSION);
        assert_eq!(challenge["format"], "json");
        // request: kind 1, id 7, route "add", body [2,3]
        let mut frame = vec![1u8];
        frame.extend_from_slice(&7u64.to_le_bytes());
        frame.extend_from_slice(&3u16.to_le_bytes());
        frame.extend_from_slice(b"add");
        frame.extend_from_slice(b"[2,3]");
        raw.send(&frame);
        raw.receive().unwrap()
    })
    .await;
    assert_eq!(answer[0], 3, "a response");
    assert_eq!(u64::from_le_bytes(answer[1..9].try_into().unwrap()), 7);
    assert_eq!(&answer[9..], b"5");
}

#[tokio::test]
async fn garbage_closes_only_that_connection() {
    let (server, mut errors) = server_with_errors(&Connector::local().without_secret()).await;
    let good = Client::connect(server.connector()).await.unwrap();

    // Garbage instead of a handshake.
    let closed = raw_session(&server, move |connector| {
        let mut raw = Raw::connect(&connector);
        raw.send(b"\xff\xfe not json at all");
        raw.receive();
        raw.closed_by_server()
    })
    .await;
    assert!(closed);
    assert!(
        next_error(&mut errors)
            .await
            .contains("malformed handshake")
    );

    // A valid handshake, then a frame of an unknown kind.
    let closed = raw_session(&server, move |connector| {
        let (mut raw, _) = Raw::handshake(&connector, VERSION);
        raw.send(b"\x63garbage");
        raw.closed_by_server()
    })
    .await;
    assert!(closed);
    assert!(
        next_error(&mut errors)
            .await
            .contains("unknown message kind 99")
    );

    // A truncated request.
    raw_session(&server, move |connector| {
        let (mut raw, _) = Raw::handshake(&connector, VERSION);
        raw.send(&[1, 0, 0]);
        assert!(raw.closed_by_server());
    })
    .await;
    assert!(next_error(&mut errors).await.contains("truncated"));

    assert_eq!(good.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
}

#[tokio::test]
async fn oversized_frames_are_refused_without_taking_the_server_down() {
    let connector = Connector::local()
        .without_secret()
        .with_max_frame(64 * 1024)
        .unwrap();
    let (server, mut errors) = server_with_errors(&connector).await;
    // Over the socket: through shared memory (on by default on Linux) a
    // large body is not bound by the frame limit at all (tests/shm.rs).
    let mut socket_only = Config::default();
    socket_only.shared_memory = None;
    let client = Client::builder(server.connector())
        .config(socket_only.clone())
        .connect()
        .await
        .unwrap();
    let big = "x".repeat(100 * 1024);

    // Our own side refuses to send it, and says why.
    match client.request::<_, Value>("echo", &big).await {
        Err(Error::FrameTooLarge { size, max }) => {
            assert!(size > 100 * 1024);
            assert_eq!(max, 64 * 1024);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    // A peer with a larger limit sends it anyway: the server closes that
    // connection, the requester fails at once instead of hanging.
    let lax = server
        .connector()
        .clone()
        .with_max_frame(1024 * 1024)
        .unwrap();
    let lax_client = Client::builder(&lax)
        .config(socket_only)
        .connect()
        .await
        .unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        lax_client.request::<_, Value>("echo", &big),
    )
    .await
    .expect("the request fails instead of hanging");
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    let reported = next_error(&mut errors).await;
    assert!(reported.contains("FrameTooLarge"), "{reported}");
    assert!(reported.contains("max: 65536"), "{reported}");

    // A claimed length of 4 GiB before the handshake is refused on sight.
    raw_session(&server, move |connector| {
        let mut raw = Raw::connect(&connector);
        raw.0.write_all(&u32::MAX.to_le_bytes()).unwrap();
        assert!(raw.closed_by_server());
    })
    .await;
    assert!(next_error(&mut errors).await.contains("FrameTooLarge"));

    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
}
