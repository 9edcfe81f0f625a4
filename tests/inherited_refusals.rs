//! An inherited channel's connector used where it does not belong: every
//! misuse is refused with an error saying what is wrong, and nothing is
//! taken over by mistake. (The working paths, between real processes, are
//! in `tests/inherited.rs`.)
#![cfg(unix)]

use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use base64::Engine;
use switchboard::{Client, Connector, ConnectorError, Error, Router, Server};

/// A connector naming inherited descriptor `number`, as a parent's
/// `dump_state` would write it.
fn inherited(number: &str) -> switchboard::Result<Connector> {
    with_fields(&format!(r#""k":"inherited","a":"{number}""#))
}

/// A connector with these JSON fields and a secret.
fn with_fields(fields: &str) -> switchboard::Result<Connector> {
    let body = format!(r#"{{{fields},"s":"{}"}}"#, "A".repeat(43));
    let text = format!(
        "sb1:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body)
    );
    Connector::load_state(&text)
}

/// Why a client refuses `number` as its inherited channel, and a server
/// refuses it as one to serve on (the same reason).
async fn refusal(number: RawFd) -> String {
    let connector = inherited(&number.to_string()).unwrap();
    let error = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect_err("refused");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    let to_serve = with_fields(&format!(r#""k":"inherited","a":"{number}","p":"serve""#)).unwrap();
    let served = Server::bind(&to_serve, Router::new())
        .await
        .expect_err("refused");
    assert!(matches!(served, Error::Bind { .. }), "{served:?}");
    let (client, server) = (error.to_string(), served.to_string());
    let reason = |message: &str| {
        message
            .split(" inherited channel: ")
            .nth(1)
            .map(str::to_owned)
    };
    assert_eq!(reason(&client), reason(&server), "{client} / {server}");
    client
}

/// Makes `fd` look inherited: not close-on-exec.
fn as_if_inherited(fd: RawFd) {
    // SAFETY: clears a flag on a descriptor the test owns.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
}

#[tokio::test]
async fn a_descriptor_that_is_not_open_is_refused() {
    let message = refusal(900_000).await;
    assert!(
        message.contains("descriptor 900000 is not open in this process"),
        "{message}"
    );
}

#[tokio::test]
async fn standard_streams_are_never_channels() {
    for fd in 0..3 {
        let message = refusal(fd).await;
        assert!(message.contains("descriptor 3 or above"), "{message}");
    }
}

#[tokio::test]
async fn a_descriptor_this_process_opened_is_not_taken_over() {
    let file = tempfile::tempfile().unwrap();
    let message = refusal(file.as_raw_fd()).await;
    assert!(message.contains("was not inherited"), "{message}");
    // Still ours, still open.
    assert!(file.metadata().is_ok());
}

#[tokio::test]
async fn what_is_not_a_socketpair_end_is_refused_by_what_it_is() {
    let file = tempfile::tempfile().unwrap();
    as_if_inherited(file.as_raw_fd());
    let message = refusal(file.as_raw_fd()).await;
    assert!(message.contains("is not a socket but a file"), "{message}");

    let mut pipe = [0; 2];
    // SAFETY: pipe writes two descriptors, closed below.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    as_if_inherited(pipe[0]);
    let message = refusal(pipe[0]).await;
    assert!(message.contains("is not a socket but a pipe"), "{message}");
    // SAFETY: closing the pipe made above.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }

    let (datagram, _other) = std::os::unix::net::UnixDatagram::pair().unwrap();
    as_if_inherited(datagram.as_raw_fd());
    let message = refusal(datagram.as_raw_fd()).await;
    assert!(message.contains("not a stream socket"), "{message}");

    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let connected = std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    as_if_inherited(connected.as_raw_fd());
    let message = refusal(connected.as_raw_fd()).await;
    assert!(message.contains("not a Unix socket"), "{message}");

    // The server side of a connection to a socket file is named by it.
    let dir = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
    let _client = std::os::unix::net::UnixStream::connect(dir.path().join("s")).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    for named in [accepted.as_raw_fd(), listener.as_raw_fd()] {
        as_if_inherited(named);
        let message = refusal(named).await;
        assert!(message.contains("named (bound) Unix socket"), "{message}");
    }

    // SAFETY: a fresh socket, owned by the OwnedFd.
    let unconnected = unsafe {
        use std::os::fd::FromRawFd;
        std::os::fd::OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0))
    };
    as_if_inherited(unconnected.as_raw_fd());
    let message = refusal(unconnected.as_raw_fd()).await;
    assert!(message.contains("not connected"), "{message}");
}

#[tokio::test]
async fn the_parent_cannot_connect_with_its_childs_end() {
    let server = Server::builder(Router::new())
        .channels_only(&Connector::local())
        .await
        .unwrap();
    let channel = server.child_channel().unwrap();
    let error = Client::connect(channel.connector()).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("own copy of an end it holds for a child"),
        "{error}"
    );
    // A channels-only server's own connector reaches nothing.
    let error = Client::connect(server.connector()).await.unwrap_err();
    assert!(
        error.to_string().contains("descriptor 3 or above"),
        "{error}"
    );
}

#[tokio::test]
async fn a_server_cannot_bind_an_inherited_channels_connector() {
    let connector = inherited("7").unwrap();
    let error = Server::bind(&connector, Router::new()).await.unwrap_err();
    assert!(matches!(error, Error::InvalidArgument { .. }), "{error:?}");
    assert!(
        error.to_string().contains("a server cannot bind it"),
        "{error}"
    );
}

#[test]
fn the_connector_string_round_trips_and_bad_numbers_are_refused() {
    let connector = inherited("7").unwrap();
    assert_eq!(connector.address().kind(), "inherited");
    assert_eq!(
        connector.to_string(),
        "inherited:descriptor 7 (secret <redacted>)"
    );
    assert_eq!(
        Connector::load_state(&connector.dump_state()).unwrap(),
        connector
    );
    // The part the holder plays: absent or `connect` for a client,
    // `serve` for a server; nothing else, and on no other kind.
    let serving = with_fields(r#""k":"inherited","a":"7","p":"serve""#).unwrap();
    assert_eq!(
        serving.address(),
        &switchboard::Address::Inherited {
            number: 7,
            serve: true
        }
    );
    assert_eq!(
        serving.to_string(),
        "inherited:descriptor 7 (to serve) (secret <redacted>)"
    );
    assert_eq!(
        Connector::load_state(&serving.dump_state()).unwrap(),
        serving
    );
    let connecting = with_fields(r#""k":"inherited","a":"7","p":"connect""#).unwrap();
    assert_eq!(connecting, connector);
    // A client's channel is written as before the part existed.
    assert!(!body_of(&connector).contains(r#""p""#));
    assert!(body_of(&serving).contains(r#""p":"serve""#));
    for (fields, why) in [
        (
            r#""k":"inherited","a":"7","p":"both""#,
            r#"expected "connect" or "serve""#,
        ),
        (
            r#""k":"inherited","a":"7","p":true"#,
            r#"expected "connect" or "serve""#,
        ),
        (
            r#""k":"unix","a":"/tmp/s","p":"serve""#,
            "only an inherited channel",
        ),
    ] {
        match with_fields(fields) {
            Err(Error::InvalidConnector(ConnectorError::InvalidField { field: "p", reason })) => {
                assert!(reason.contains(why), "{fields}: {reason}");
            }
            other => panic!("{fields}: {other:?}"),
        }
    }
    for bad in ["", "-3", "+3", "x", "3 ", "99999999999999999999999"] {
        match inherited(bad) {
            Err(Error::InvalidConnector(ConnectorError::InvalidField { field: "a", reason })) => {
                assert!(
                    reason.contains("not a descriptor or handle number"),
                    "{reason}"
                );
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

/// The JSON inside a connector's string.
fn body_of(connector: &Connector) -> String {
    let text = connector.dump_state();
    let encoded = text.strip_prefix("sb1:").unwrap();
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .unwrap();
    String::from_utf8(json).unwrap()
}
