//! The body format with the default settings: a connector whose format
//! was not chosen settles MessagePack between two Rust processes (so byte
//! payloads travel as bytes), while a side that insists on JSON, the CLI's
//! way, or a JSON-only client written from PROTOCOL.md gets JSON; and a
//! peer of protocol version 3 is refused with both versions named.

#![cfg(unix)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use serde_json::{Value, json};
use switchboard::{Address, Bytes, Client, Connector, Format, Router, Server};

fn router() -> Router {
    Router::new()
        .route("len", |payload: Bytes| async move {
            Ok::<_, switchboard::HandlerError>(payload.len())
        })
        .route("echo", |value: Value| async move {
            Ok::<_, switchboard::HandlerError>(value)
        })
}

#[tokio::test]
async fn no_format_chosen_settles_messagepack_and_bytes_travel_as_bytes() {
    let connector = Connector::local();
    assert_eq!(connector.format(), None);
    assert!(
        Connector::load_state(&connector.dump_state())
            .unwrap()
            .format()
            .is_none(),
        "not chosen survives the string"
    );
    let server = Server::bind(&connector, router()).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    assert_eq!(client.peer().format(), Format::MsgPack);
    for size in [0usize, 1, 64 * 1024, 1 << 20] {
        let payload = Bytes::from(vec![0xa5u8; size]);
        let len: usize = client.request("len", &payload).await.unwrap();
        assert_eq!(len, size);
    }
    let echoed: Value = client
        .request("echo", &json!({"a": [1, "b"]}))
        .await
        .unwrap();
    assert_eq!(echoed, json!({"a": [1, "b"]}));
}

#[tokio::test]
async fn insisting_on_json_gets_json_from_either_side() {
    let server = Server::bind(&Connector::local(), router()).await.unwrap();
    // In the connector (as a child handed such a string would).
    let json_connector = server.connector().clone().with_format(Format::Json);
    let text = json_connector.dump_state();
    assert_eq!(
        Connector::load_state(&text).unwrap().format(),
        Some(Format::Json)
    );
    let client = Client::connect(&json_connector).await.unwrap();
    assert_eq!(client.peer().format(), Format::Json);
    let len: usize = client
        .request("len", &Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(len, 1000);
    // In the builder, whatever the connector says (what the CLI does).
    let msgpack_connector = server.connector().clone().with_format(Format::MsgPack);
    let client = Client::builder(&msgpack_connector)
        .format(Format::Json)
        .connect()
        .await
        .unwrap();
    assert_eq!(client.peer().format(), Format::Json);
}

fn send_frame(stream: &mut UnixStream, body: &[u8]) {
    stream
        .write_all(&(body.len() as u32).to_le_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
}

fn receive_frame(stream: &mut UnixStream) -> Value {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).unwrap();
    let mut body = vec![0; u32::from_le_bytes(header) as usize];
    stream.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn hello(version: u32, formats: &[&str]) -> Value {
    json!({
        "switchboard": version,
        "client_id": "raw",
        "formats": formats,
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "window": {"messages": 16, "bytes": 1048576},
    })
}

/// The first handshake reply a raw client gets for `hello`.
async fn challenge_for(server: &Server, hello: Value) -> Value {
    let Address::Unix(path) = server.connector().address().clone() else {
        panic!("a local connector is a Unix socket here");
    };
    tokio::task::spawn_blocking(move || {
        let mut stream = UnixStream::connect(path).unwrap();
        send_frame(&mut stream, hello.to_string().as_bytes());
        receive_frame(&mut stream)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_json_only_client_gets_json_and_no_shared_memory() {
    let server = Server::bind(&Connector::local().without_secret(), router())
        .await
        .unwrap();
    let challenge = challenge_for(&server, hello(4, &["json"])).await;
    assert_eq!(challenge["switchboard"], 4, "{challenge}");
    assert_eq!(challenge["format"], "json", "{challenge}");
    assert!(challenge.get("shm").is_none(), "{challenge}");
    // A client that lists MessagePack first gets it: the client decides.
    let challenge = challenge_for(&server, hello(4, &["msgpack", "json"])).await;
    assert_eq!(challenge["format"], "msgpack", "{challenge}");
}

#[tokio::test]
async fn a_version_3_peer_is_refused_with_both_versions_named() {
    let server = Server::bind(&Connector::local().without_secret(), router())
        .await
        .unwrap();
    let refusal = challenge_for(&server, hello(3, &["json"])).await;
    assert_eq!(refusal["error"]["code"], "version_mismatch", "{refusal}");
    assert_eq!(refusal["switchboard"], 4, "{refusal}");
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("version 4") && message.contains("the client 3"),
        "{message}"
    );
}
