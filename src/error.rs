//! The crate's one error type.
//!
//! Variants are grouped by whose fault the failure was, so a caller can decide
//! what to do without parsing messages: fix its own input, retry the
//! connection, or report what the peer said.
//!
//! Every layer returns it, so it sits below them all; it names only two
//! leaves above it, whose errors it wraps: the connector string's
//! (`connector/state_error.rs`) and the body codec's (`protocol/format.rs`).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::connector::state_error::ConnectorError;
use crate::protocol::format::{self, CodecError, Format};

/// What the serializer (serde_json or rmp-serde) said about a body it could
/// not encode or decode.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Shorthand for `Result<T, switchboard::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in switchboard.
///
/// Match on the variant to decide what to do; each says whose fault it was.
///
/// ```
/// use std::time::Duration;
/// use switchboard::{Client, Connector, Error};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Nobody serves this connector: connecting retries, then says how long it waited.
/// let nobody = Connector::local();
/// let error = Client::builder(&nobody)
///     .connect_timeout(Duration::from_millis(50))
///     .connect()
///     .await
///     .unwrap_err();
/// assert!(matches!(error, Error::Connect { .. }));
/// assert!(error.is_connection_error()); // worth retrying later
/// assert!(error.to_string().contains("kept trying"));
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- The caller's input -----
    /// A connector string could not be loaded; the inner error says which part
    /// is wrong.
    #[error("invalid connector string: {0}")]
    InvalidConnector(#[from] ConnectorError),

    /// The child looked for its connector where the parent should have put
    /// it, and found none.
    #[error(
        "no connector in {looked_in}: the parent process must pass one \
         (see switchboard::CommandExt)"
    )]
    MissingConnector {
        /// Where it looked.
        looked_in: &'static str,
    },

    /// An argument given to a switchboard function is not acceptable.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },

    /// A value could not be serialized before sending.
    #[error("could not encode the message body: {0}")]
    Encode(#[source] BodyError),

    /// A message body from the peer does not fit the type the caller asked for.
    #[error("could not decode the message body as the expected type: {0}")]
    Decode(#[source] BodyError),

    /// The connector's kind cannot be used on this platform (a named pipe on
    /// Unix, a Unix socket path on Windows).
    #[error("{0} is not supported on this platform")]
    Unsupported(String),

    /// A services file could not be read or says something unusable; the
    /// reason names the service and the setting. The file's author must fix
    /// it.
    #[error("services file {}: {reason}", path.display())]
    ServicesFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        reason: String,
        /// The reader's or parser's own error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    // ----- The machine: binding and connecting -----
    /// Another live server already listens at this address.
    #[error("{address} is already in use by another server")]
    AddrInUse {
        /// The address as displayed by the connector.
        address: String,
    },

    /// No service is registered under this name: it is not running (yet),
    /// or it runs as another user or with another registry.
    #[error("no service named {name:?}: looked in {looked_in}")]
    NameNotFound {
        /// The name asked for.
        name: String,
        /// Where it looked (services file, registry directory).
        looked_in: String,
    },

    /// Another live server holds this name in the registry.
    #[error(
        "the name {name:?} is taken by a live server (pid {pid}, {kind} connector); \
         stop it or choose another name"
    )]
    NameInUse {
        /// The name.
        name: String,
        /// The process id of the server that holds it.
        pid: u32,
        /// Its connector's kind (`unix`, `pipe`, `tcp`, `amqp`).
        kind: String,
    },

    /// The registry of named services cannot be used: its directory is
    /// not private to this user (another user created it, or it is open to
    /// others), or it could not be created, read or written. Nothing was
    /// read from or written to it.
    #[error("service registry {}: {reason}", path.display())]
    Registry {
        /// The directory or file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// The operating system's error, when there is one.
        #[source]
        source: Option<io::Error>,
    },

    /// The server could not listen at its address.
    #[error("could not listen at {address}: {source}")]
    Bind {
        /// The address as displayed by the connector.
        address: String,
        /// The operating system's error.
        source: io::Error,
    },

    /// The client could not reach the server before its connect deadline.
    #[error("could not connect to {address}: {source}")]
    Connect {
        /// The address as displayed by the connector.
        address: String,
        /// The last operating-system error seen while retrying.
        source: io::Error,
    },

    /// The connection failed while reading or writing.
    #[error("i/o error on the connection: {0}")]
    Io(#[from] io::Error),

    // ----- The peer: handshake and wire -----
    /// Mutual authentication failed; the message says which side refused and why.
    #[error("authentication failed: {0}")]
    AuthFailed(String),

    /// The peer speaks a protocol version this build does not.
    #[error("protocol version mismatch: this side speaks version {ours}, the peer {theirs}")]
    VersionMismatch {
        /// Our protocol version.
        ours: u32,
        /// The peer's protocol version.
        theirs: u32,
    },

    /// The server turned this client away for its own reasons: its user may
    /// not connect, the server is at its connection limit, or another live
    /// connection holds the client id asked for.
    #[error("the server refused the connection: {reason}")]
    Refused {
        /// The server's explanation.
        reason: String,
    },

    /// The peer sent nothing, not even an answer to a ping, for this long;
    /// the connection was dropped (see [`Config::keepalive`](crate::Config::keepalive)).
    #[error("the peer did not answer for {silent_for:?} and was dropped")]
    Unresponsive {
        /// How long it had been silent.
        silent_for: Duration,
    },

    /// The peer sent something that does not follow PROTOCOL.md.
    #[error("protocol violation: {0}")]
    Protocol(String),

    /// A frame is larger than the connection's limit. Raised before sending an
    /// oversized message, and when the peer announces one (that connection is
    /// then closed without allocating the claimed size).
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced or attempted frame size.
        size: u64,
        /// The configured maximum.
        max: u32,
    },

    /// The peer went away; every request still waiting on it fails with this.
    #[error("the peer disconnected")]
    Disconnected,

    /// No response arrived within the request's timeout. The request was
    /// cancelled; the connection stays usable.
    #[error("no response within {0:?}")]
    Timeout(Duration),

    // ----- The peer's handler, reported back in an error response -----
    /// The peer has no handler for this route.
    #[error("the peer has no route named {route:?}")]
    NoSuchRoute {
        /// The route that was asked for.
        route: String,
    },

    /// The peer could not decode the request body into what its handler takes.
    #[error("the peer rejected the request data: {message}")]
    BadRequest {
        /// The peer's explanation.
        message: String,
    },

    /// The peer's handler returned an error or panicked.
    #[error("the handler failed: {message}")]
    HandlerFailed {
        /// The error code (see PROTOCOL.md; JSON-RPC 2.0 codes).
        code: i32,
        /// The handler's message.
        message: String,
        /// The handler's error as a value, when it returned a serializable
        /// one (`Err(MyError::..)`): decode it with [`ErrorData::decode`].
        data: Option<ErrorData>,
    },

    /// A notification's handler failed or panicked, or the notification
    /// named no route. Nothing is sent back for a notification, so this only
    /// reaches the receiving side's error hook and log.
    #[error("a notification was not handled: {message}")]
    NotificationFailed {
        /// The error code (see PROTOCOL.md).
        code: i32,
        /// What went wrong, naming the route.
        message: String,
    },

    /// The peer is shutting down and took no new requests.
    #[error("the peer is shutting down")]
    ShuttingDown,

    // ----- Local state -----
    /// This side's client or server was closed.
    #[error("the connection was closed by this side")]
    Closed,

    /// `Server::request` named a client that is not connected.
    #[error("no client with id {0:?} is connected")]
    UnknownClient(String),

    /// `Server::request_any` was called with no client connected.
    #[error("no client is connected")]
    NoClients,
}

impl Error {
    /// True when the failure came from the transport or the peer's presence
    /// (not from what was asked), so reconnecting and retrying may succeed.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. }
                | Error::NameNotFound { .. }
                | Error::Io(_)
                | Error::Disconnected
                | Error::Closed
                | Error::Unresponsive { .. }
        )
    }
}

/// A body the format's codec could not decode, in the crate's terms.
impl From<CodecError> for Error {
    fn from(error: CodecError) -> Error {
        match error {
            CodecError::Decode(e) => Error::Decode(e),
            CodecError::Unsupported(what) => Error::Unsupported(what),
        }
    }
}

/// A handler's error value, as it came over the wire: decode it into the
/// type the handler returned.
///
/// ```
/// # async fn demo(client: switchboard::Client) -> switchboard::Result<()> {
/// #[derive(serde::Deserialize, Debug)]
/// enum DivError { ByZero }
///
/// match client.request::<_, i64>("div", &(1, 0)).await {
///     Err(switchboard::Error::HandlerFailed { data: Some(data), .. }) => {
///         let error: DivError = data.decode()?;
///         println!("{error:?}");
///     }
///     other => println!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorData {
    format: Format,
    bytes: Vec<u8>,
}

impl ErrorData {
    pub(crate) fn new(format: Format, bytes: Vec<u8>) -> ErrorData {
        ErrorData { format, bytes }
    }

    /// Decodes the value. Fails with [`Error::Decode`] when it is not a `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        format::decode(self.format, &self.bytes).map_err(Error::from)
    }
}

impl std::fmt::Debug for ErrorData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.decode::<serde_json::Value>() {
            Ok(value) => write!(f, "ErrorData({value})"),
            Err(_) => write!(f, "ErrorData({} bytes)", self.bytes.len()),
        }
    }
}
