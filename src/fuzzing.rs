//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz) and for the
//! regression tests of what they found (`tests/fuzz_regressions.rs`).
//!
//! Compiled only with the `fuzzing` feature and hidden from the docs: this is
//! not public API and changes whenever the internals do. It exists so the
//! transport and protocol layers can stay private to the crate while the
//! fuzzers still reach them: each function is a thin wrapper over one
//! internal entry point, taking and returning plain types. When an internal
//! signature changes (new handshake fields, new message kinds), this file is
//! the one to adjust; the targets keep compiling.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Config;
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::protocol::format::Format;
use crate::protocol::handshake::{self, ServerHello, TOKEN_LEN};
use crate::protocol::{Message, message, serializer};
use crate::transport::{FrameReader, FrameWriter};

/// Reads frames from `stream` with the transport's `FrameReader`, accepting
/// bodies of up to `max` bytes, handing each body to `each`, until the
/// stream ends cleanly between frames (`Ok`) or the reader fails.
pub async fn read_frames<R>(stream: R, max: u32, mut each: impl FnMut(&[u8])) -> Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let mut reader = FrameReader::new(Box::new(stream), max);
    while let Some(frame) = reader.read().await? {
        each(&frame);
    }
    Ok(())
}

/// A parsed envelope (the protocol's `Message`), copied out into plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// Kind 1.
    Request {
        /// The requester's id.
        id: u64,
        /// The route, as the protocol's `Body::route` returns it.
        route: String,
        /// The encoded parameters.
        body: Vec<u8>,
    },
    /// Kind 2.
    Notification {
        /// The route.
        route: String,
        /// The encoded parameters.
        body: Vec<u8>,
    },
    /// Kind 3.
    Response {
        /// The request's id.
        id: u64,
        /// The encoded result.
        body: Vec<u8>,
    },
    /// Kind 4.
    Error {
        /// The request's id.
        id: u64,
        /// The error code.
        code: i32,
        /// The message.
        message: String,
        /// The encoded error value, if any.
        data: Option<Vec<u8>>,
    },
    /// Kind 9.
    Item {
        /// The request's id.
        id: u64,
        /// The encoded item.
        body: Vec<u8>,
    },
    /// Kind 10.
    End {
        /// The request's id.
        id: u64,
    },
    /// Kind 5.
    Cancel {
        /// The request's id.
        id: u64,
    },
    /// Kind 6.
    Credit {
        /// Messages returned.
        messages: u32,
        /// Bytes returned.
        bytes: u64,
    },
    /// Kind 7.
    Ping,
    /// Kind 8.
    Pong,
    /// Kind 11: a message whose body is in shared memory.
    Shared {
        /// Where in the sender's pool.
        offset: u64,
        /// The body's length.
        len: u64,
    },
    /// Kind 12.
    Release {
        /// Offsets released.
        offsets: Vec<u64>,
    },
}

/// Parses one frame body as a message (`Message::parse`). The route of a
/// request or notification is read through `Body::route`, which panics if
/// the parser let a route through that is not UTF-8.
pub fn parse_envelope(frame: &[u8]) -> Result<Envelope> {
    Ok(match Message::parse(frame.to_vec().into())? {
        Message::Request { id, body } => Envelope::Request {
            id,
            route: body.route().to_owned(),
            body: body.bytes().to_vec(),
        },
        Message::Notification { body } => Envelope::Notification {
            route: body.route().to_owned(),
            body: body.bytes().to_vec(),
        },
        Message::Response { id, body } => Envelope::Response {
            id,
            body: body.bytes().to_vec(),
        },
        Message::Error {
            id,
            code,
            message,
            data,
        } => Envelope::Error {
            id,
            code,
            message,
            data,
        },
        Message::Item { id, body } => Envelope::Item {
            id,
            body: body.bytes().to_vec(),
        },
        Message::End { id } => Envelope::End { id },
        Message::Cancel { id } => Envelope::Cancel { id },
        Message::Credit { messages, bytes } => Envelope::Credit { messages, bytes },
        Message::Ping => Envelope::Ping,
        Message::Pong => Envelope::Pong,
        Message::Shared { offset, len, .. } => Envelope::Shared { offset, len },
        Message::Release { offsets } => Envelope::Release { offsets },
    })
}

/// Parses a frame body as a request and decodes its parameters as `T` in
/// `format`, the way the router does for a handler taking `T` (large
/// MessagePack byte strings by reference into the frame). Returns the
/// route and the parameters.
pub fn decode_request<T: DeserializeOwned>(frame: &[u8], format: Format) -> Result<(String, T)> {
    match Message::parse(frame.to_vec().into())? {
        Message::Request { mut body, .. } => {
            let params = serializer::decode_body(format, &mut body)?;
            Ok((body.route().to_owned(), params))
        }
        _ => Err(Error::Protocol("not a request".into())),
    }
}

/// A request frame body (without the length prefix) carrying `params`
/// encoded in `format`, as `Peer::request` sends it.
pub fn encode_request<T: Serialize + ?Sized>(
    id: u64,
    route: &str,
    format: Format,
    params: &T,
) -> Result<Vec<u8>> {
    let frame = message::request(Vec::new(), id, route, format, params, u32::MAX)?;
    let mut bytes = frame.into_vec();
    bytes.drain(..crate::transport::HEADER_LEN);
    Ok(bytes)
}

/// What a successful handshake settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The body format both sides use from now on.
    pub format: Format,
    /// The client's id.
    pub client_id: String,
    /// Server: the client proved it holds the token passed in.
    pub resumed: bool,
    /// Client: the resumption token the server gave.
    pub token: Vec<u8>,
}

/// The resumption token the server issues in [`handshake_server`].
pub const ISSUED_TOKEN: [u8; TOKEN_LEN] = [0x7e; TOKEN_LEN];

/// Runs the server's half of the handshake over `stream` (e.g. one end of
/// `tokio::io::duplex`), with `connector`'s secret and settings and the
/// default budgets: hello, challenge, welcome, as the server admits a
/// client with no limits in the way. `held` is the token of whoever held
/// the id before; [`Settled::resumed`] says whether the client proved it
/// holds it.
pub async fn handshake_server<S>(stream: S, connector: &Connector, held: &[u8]) -> Result<Settled>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(Box::new(read), connector.max_frame());
    let mut writer = FrameWriter::new(Box::new(write));
    let hello = ServerHello::read(&mut reader, &mut writer).await?;
    let mut proven = hello
        .challenge(&mut reader, &mut writer, connector, None)
        .await?;
    let resumed = proven.holds(held);
    let window = Config::default().window();
    proven
        .welcome(&mut reader, &mut writer, connector, window, &ISSUED_TOKEN)
        .await?;
    Ok(Settled {
        format: proven.format,
        client_id: proven.client_id.clone(),
        resumed,
        token: ISSUED_TOKEN.to_vec(),
    })
}

/// Runs the client's half of the handshake over `stream`, asking to be
/// known as `client_id`, proving it holds `token` if given, with the
/// default budgets.
pub async fn handshake_client<S>(
    stream: S,
    connector: &Connector,
    client_id: &str,
    token: Option<&[u8]>,
) -> Result<Settled>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut reader = FrameReader::new(Box::new(read), connector.max_frame());
    let mut writer = FrameWriter::new(Box::new(write));
    let window = Config::default().window();
    let settled = handshake::client(
        &mut reader,
        &mut writer,
        connector,
        client_id,
        window,
        token,
        None,
    )
    .await?;
    Ok(Settled {
        format: settled.format,
        client_id: client_id.to_owned(),
        resumed: false,
        token: settled.token,
    })
}
