//! The client: connects to a server (retrying while it is not up yet),
//! authenticates, and sends requests and notifications. A client can also
//! serve routes of its own that the server calls back.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::Config;
use crate::connector::{self, Connector, Link, random_bytes};
use crate::error::{Error, Result};
use crate::peer::{Connection, Inbound, Peer, Settings};
use crate::protocol::handshake;
use crate::router::Router;
use crate::transport::{FrameReader, FrameWriter};

/// How long [`Client::connect`] keeps retrying a server that is not up yet.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Proof that a client held its id: hand it to [`ClientBuilder::resume`]
/// to connect again as the same client, replacing the old connection if
/// the server still thinks it is alive. Get it from
/// [`Client::resumption`]; it is a secret of that client (Debug redacts it).
#[derive(Clone)]
pub struct Resumption {
    id: String,
    token: Vec<u8>,
}

impl std::fmt::Debug for Resumption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumption")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Resumption {
    /// The client id it proves.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Configures a [`Client`] before connecting.
#[must_use = "a builder does nothing until `connect` is called"]
pub struct ClientBuilder {
    connector: Connector,
    id: Option<String>,
    token: Option<Vec<u8>>,
    router: Arc<dyn Inbound>,
    connect_timeout: Duration,
    config: Config,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("connector", &self.connector)
            .field("id", &self.id)
            .field("connect_timeout", &self.connect_timeout)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The id the server knows this client by (default: random). While a
    /// connection with this id is alive, the server refuses another client
    /// asking for it ([`Error::Refused`]) unless that client proves it is
    /// the same one ([`ClientBuilder::resume`]).
    pub fn id(mut self, id: impl Into<String>) -> ClientBuilder {
        self.id = Some(id.into());
        self.token = None;
        self
    }

    /// Connects as the client that `resumption` came from: same id, and
    /// the proof that lets it take over its old connection.
    pub fn resume(mut self, resumption: &Resumption) -> ClientBuilder {
        self.id = Some(resumption.id.clone());
        self.token = Some(resumption.token.clone());
        self
    }

    /// Routes the server may call on this client.
    pub fn router<S: Send + Sync + 'static>(mut self, router: Router<S>) -> ClientBuilder {
        self.router = Arc::new(router);
        self
    }

    /// How long to keep retrying while the server is not listening yet
    /// (children often start before their parent listens). Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.connect_timeout = timeout;
        self
    }

    /// Timeout for every request that does not give one (default 30 s;
    /// see [`Config::request_timeout`]).
    pub fn request_timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.config.request_timeout = Some(timeout);
        self
    }

    /// Budgets and timers of the connection (see [`Config`] for the
    /// defaults).
    pub fn config(mut self, config: Config) -> ClientBuilder {
        self.config = config;
        self
    }

    /// Connects, authenticates, and starts serving the client's routes.
    pub async fn connect(self) -> Result<Client> {
        let id = match self.id {
            Some(id) => {
                handshake::check_client_id(&id).map_err(|reason| Error::InvalidArgument {
                    what: "client id",
                    reason,
                })?;
                id
            }
            None => random_id(),
        };
        let deadline = Instant::now() + self.connect_timeout;
        let link = connect_with_retry(&self.connector, deadline, self.connect_timeout).await?;
        let (peer_pid, peer_uid) = (link.peer_pid, link.peer_uid);
        let mut reader = FrameReader::new(link.reader, self.connector.max_frame());
        let mut writer = FrameWriter::new(link.writer);
        let limit = self.config.handshake_timeout;
        let handshake = handshake::client(
            &mut reader,
            &mut writer,
            &self.connector,
            &id,
            self.config.window(),
            self.token.as_deref(),
        );
        let settled = tokio::time::timeout(limit, handshake).await.map_err(|_| {
            Error::Protocol(format!(
                "the server did not finish the handshake within {limit:?}"
            ))
        })??;
        let connection = Connection::start(
            reader,
            writer,
            Settings {
                transport: self.connector.address().kind(),
                client_id: id.clone(),
                peer_pid,
                peer_uid,
                format: settled.format,
                max_frame: self.connector.max_frame(),
                config: self.config,
                peer_window: settled.peer_window,
                report: None,
            },
            self.router,
        );
        Ok(Client {
            connection,
            resumption: Resumption {
                id,
                token: settled.token,
            },
        })
    }
}

fn random_id() -> String {
    let bytes = random_bytes::<8>();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("client-{hex}")
}

/// Errors that mean "not up yet" or "busy right now", worth another try
/// before the deadline.
fn retryable(error: &io::Error) -> bool {
    // Every instance of the pipe is taken for the moment: ERROR_PIPE_BUSY,
    // which interprocess reports as TimedOut when told not to wait.
    const ERROR_PIPE_BUSY: i32 = 231;
    let busy_pipe = cfg!(windows)
        && (error.raw_os_error() == Some(ERROR_PIPE_BUSY)
            || error.kind() == io::ErrorKind::TimedOut);
    busy_pipe
        || matches!(
            error.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
        )
}

async fn connect_with_retry(
    connector: &Connector,
    deadline: Instant,
    waited: Duration,
) -> Result<Link> {
    let mut delay = Duration::from_millis(2);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt = tokio::time::timeout(
            remaining.max(Duration::from_millis(1)),
            connector::connect(connector),
        )
        .await;
        let error = match attempt {
            Ok(Ok(link)) => return Ok(link),
            Ok(Err(e)) => e,
            Err(_) => io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
        };
        if !retryable(&error) || Instant::now() + delay >= deadline {
            let source = if retryable(&error) {
                io::Error::new(
                    error.kind(),
                    format!("{error} (kept trying for {waited:?}: no server answered)"),
                )
            } else {
                error
            };
            return Err(Error::Connect {
                address: connector.address().to_string(),
                source,
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

/// A connection to a server. Dropping it closes the connection.
///
/// ```
/// use switchboard::{Client, Connector, Router, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// # let router = Router::new()
/// #     .route("add", |(a, b): (i64, i64)| async move { a + b })
/// #     .route("log", |_: String| async {});
/// # let server = Server::bind(&Connector::local(), router).await?;
/// # let connector = server.connector().clone();
/// // In a child process: `Connector::from_env()?` instead.
/// let client = Client::connect(&connector).await?;
/// let sum: i64 = client.request("add", &(1, 2)).await?;
/// assert_eq!(sum, 3);
/// client.throw("log", "done").await?; // a notification: no answer
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    resumption: Resumption,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.peer().fmt(f)
    }
}

impl Client {
    /// Connects with the default settings: random id, no routes of its own,
    /// 10 s to find the server.
    pub async fn connect(connector: &Connector) -> Result<Client> {
        Client::builder(connector).connect().await
    }

    /// A builder for id, routes and timeouts.
    pub fn builder(connector: &Connector) -> ClientBuilder {
        ClientBuilder {
            connector: connector.clone(),
            id: None,
            token: None,
            router: Arc::new(Router::new()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            config: Config::default(),
        }
    }

    /// This client's id, as the server knows it.
    pub fn id(&self) -> &str {
        self.connection.peer().client_id()
    }

    /// What proves this client's id when it connects again
    /// ([`ClientBuilder::resume`]).
    pub fn resumption(&self) -> &Resumption {
        &self.resumption
    }

    /// The connection's handle (clone it to send from several tasks).
    pub fn peer(&self) -> &Peer {
        self.connection.peer()
    }

    /// Sends a request and waits for the response.
    pub async fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.connection.peer().request(route, params).await
    }

    /// Sends a request and waits at most `timeout`; on timeout the request
    /// is cancelled and the connection stays usable.
    pub async fn request_timeout<T, R>(
        &self,
        route: &str,
        params: &T,
        timeout: Duration,
    ) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.connection
            .peer()
            .request_timeout(route, params, timeout)
            .await
    }

    /// Sends a request and waits for it to complete, ignoring the value it
    /// answers with (a `()` handler's, say): no result type to name.
    ///
    /// ```
    /// # use switchboard::{Client, Connector, Router, Server};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let router = Router::new().route("reset", || async {});
    /// let server = Server::bind(&Connector::local(), router).await?;
    /// let client = Client::connect(server.connector()).await?;
    /// client.call("reset", &()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn call<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.connection.peer().call(route, params).await
    }

    /// Sends a request answered by a stream of items (see [`Stream`]):
    /// read them with [`Stream::next`]; dropping the stream cancels the
    /// request on the server.
    ///
    /// [`Stream`]: crate::Stream
    /// [`Stream::next`]: crate::Stream::next
    pub async fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<crate::Stream<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.connection.peer().request_stream(route, params).await
    }

    /// Sends a notification (fire and forget).
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.connection.peer().throw(route, params).await
    }

    /// Waits until the server goes away or the connection is closed.
    pub async fn closed(&self) {
        self.connection.closed().await;
    }

    /// Closes the connection after writing what is queued (waiting up to
    /// five seconds for that).
    pub async fn close(self) {
        self.connection
            .close_and_flush(Duration::from_secs(5))
            .await;
    }
}
