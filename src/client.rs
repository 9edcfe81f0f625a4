//! The client: connects to a server (by connector or by name, retrying
//! while it is not up yet), authenticates, and sends requests and
//! notifications; optionally reconnects when the link drops (`reconnect`).
//! A client can also serve routes of its own that the server calls back.

#[cfg(any(unix, windows))]
mod channel;
mod dial;
mod reconnect;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::Config;
use crate::connector::{Connector, Format, random_bytes};
use crate::error::{Error, Result};
use crate::peer::{Connection, Inbound, Peer};
use crate::protocol::handshake;
use crate::registry::Lookup;
use crate::router::Router;
use crate::stream::Stream;

#[cfg(any(unix, windows))]
pub use channel::PendingClient;
pub(crate) use dial::probe_handshake;
use dial::{Dialer, Target};
use reconnect::Shared;
pub use reconnect::{LinkState, Reconnect, WhileDown};

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
    target: Target,
    id: Option<String>,
    token: Option<Vec<u8>>,
    router: Arc<dyn Inbound>,
    connect_timeout: Duration,
    config: Config,
    reconnect: Option<Reconnect>,
    format: Option<Format>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("target", &self.target)
            .field("id", &self.id)
            .field("connect_timeout", &self.connect_timeout)
            .field("config", &self.config)
            .field("reconnect", &self.reconnect)
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
    /// (children often start before their parent listens; a service
    /// connected by name may not be registered yet). Default 10 s.
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

    /// Insists on this body format, whatever the connector (or the named
    /// service's entry) says: the `switchboard` CLI asks for
    /// [`Format::Json`] this way. By default the connector decides, and a
    /// connector whose format was not chosen gets the fastest both sides
    /// have (see [`Format`]).
    ///
    /// ```no_run
    /// use switchboard::{Client, Connector, Format};
    ///
    /// # async fn demo(connector: Connector) -> switchboard::Result<()> {
    /// let client = Client::builder(&connector).format(Format::Json).connect().await?;
    /// assert_eq!(client.peer().format(), Format::Json);
    /// # Ok(())
    /// # }
    /// ```
    pub fn format(mut self, format: Format) -> ClientBuilder {
        self.format = Some(format);
        self
    }

    /// Budgets and timers of the connection (see [`Config`] for the
    /// defaults).
    pub fn config(mut self, config: Config) -> ClientBuilder {
        self.config = config;
        self
    }

    /// Reconnects automatically when the connection drops, as the same
    /// client (same id, the server's resumption proof), serving the same
    /// router again; a client made by [`Client::builder_named`] looks the
    /// name up again for every attempt. Off by default. Watch
    /// [`Client::link_state`] to learn when the link drops and returns.
    /// Ignored for an inherited channel's connector
    /// ([`ChildChannel`](crate::ChildChannel)), which connects once.
    ///
    /// ```no_run
    /// use switchboard::{Client, Reconnect};
    ///
    /// # async fn demo() -> switchboard::Result<()> {
    /// let client = Client::builder_named("life-gen")
    ///     .reconnect(Reconnect::default())
    ///     .connect()
    ///     .await?;
    /// // Survives a restart of the service: waits for it to come back.
    /// let _: serde_json::Value = client.request("status", &()).await?;
    /// # Ok(()) }
    /// ```
    pub fn reconnect(mut self, policy: Reconnect) -> ClientBuilder {
        self.reconnect = Some(policy);
        self
    }

    /// Where a name given to [`Client::builder_named`] is looked up
    /// (default: [`Lookup::default`], the `SWITCHBOARD_SERVICES` file then
    /// this user's registry). Ignored for a client made with a connector.
    pub fn lookup(mut self, lookup: Lookup) -> ClientBuilder {
        if let Target::Name {
            lookup: current, ..
        } = &mut self.target
        {
            *current = lookup;
        }
        self
    }

    /// Connects, authenticates, and starts serving the client's routes.
    pub async fn connect(self) -> Result<Client> {
        let dialer = Dialer {
            id: checked_id(self.id)?,
            target: self.target,
            router: self.router,
            config: self.config,
            format: self.format,
        };
        let deadline = Instant::now() + self.connect_timeout;
        let (connection, resumption) = dialer
            .dial_until(self.token.as_deref(), deadline, self.connect_timeout)
            .await?;
        Ok(Client::start(
            dialer,
            connection,
            resumption,
            self.reconnect,
        ))
    }
}

/// The id asked for, checked, or a random one.
fn checked_id(id: Option<String>) -> Result<String> {
    let Some(id) = id else {
        return Ok(random_id());
    };
    handshake::check_client_id(&id).map_err(|reason| Error::InvalidArgument {
        what: "client id",
        reason,
    })?;
    Ok(id)
}

fn random_id() -> String {
    format!("client-{}", dial::hex(&random_bytes::<8>()))
}

/// A connection to a server. Cloning it is cheap and gives another handle
/// to the same connection (for another task, or for a typed client:
/// `CalculatorClient::new(client.clone())`); the connection closes when
/// [`Client::close`] is called on any clone, or when the last one drops.
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
#[derive(Clone)]
pub struct Client {
    inner: Arc<Handle>,
}

/// What the clones of one [`Client`] share: one connection, its
/// reconnecting supervisor and its settings. Dropped with the last clone.
struct Handle {
    id: String,
    shared: Arc<Shared>,
    supervisor: AbortHandle,
    /// `None` when reconnect is off.
    while_down: Option<WhileDown>,
    request_timeout: Option<Duration>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.inner.id)
            .field("link", &*self.inner.shared.state.borrow())
            .field("peer", &self.inner.shared.peer())
            .finish()
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.peer().fmt(f)
    }
}

impl Client {
    /// The client over its first connection, supervised (and reconnected,
    /// with `reconnect`).
    fn start(
        dialer: Dialer,
        connection: Connection,
        resumption: Resumption,
        reconnect: Option<Reconnect>,
    ) -> Client {
        let (id, request_timeout) = (dialer.id.clone(), dialer.config.request_timeout);
        let shared = Arc::new(Shared::new(connection, resumption));
        // An inherited channel connects once: its end is gone with the link.
        let reconnect = reconnect.filter(|_| !dialer.connects_once());
        let while_down = reconnect.as_ref().map(Reconnect::policy);
        let supervisor = tokio::spawn(reconnect::supervise(Arc::clone(&shared), dialer, reconnect))
            .abort_handle();
        Client {
            inner: Arc::new(Handle {
                id,
                shared,
                supervisor,
                while_down,
                request_timeout,
            }),
        }
    }

    /// Connects with the default settings: random id, no routes of its own,
    /// 10 s to find the server.
    pub async fn connect(connector: &Connector) -> Result<Client> {
        Client::builder(connector).connect().await
    }

    /// A builder for id, routes, timeouts and reconnecting.
    pub fn builder(connector: &Connector) -> ClientBuilder {
        ClientBuilder::to(Target::Connector(connector.clone()))
    }

    /// Connects to the service registered or listed under `name` (see
    /// [`Lookup`] for where it looks, and in what order), with the default
    /// settings. Waits up to 10 s for the name to appear and its server to
    /// answer; fails with [`Error::NameNotFound`] if it never appears.
    ///
    /// ```no_run
    /// # async fn demo() -> switchboard::Result<()> {
    /// let client = switchboard::Client::connect_named("life-gen").await?;
    /// let generation: u64 = client.request("generation", &()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_named(name: &str) -> Result<Client> {
        Client::builder_named(name).connect().await
    }

    /// A builder for a client that connects by name (and, with
    /// [`ClientBuilder::reconnect`], looks the name up again for every
    /// reconnect).
    pub fn builder_named(name: &str) -> ClientBuilder {
        ClientBuilder::to(Target::Name {
            name: name.to_owned(),
            lookup: Lookup::default(),
        })
    }

    /// This client's id, as the server knows it (the same across
    /// reconnects).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// What proves this client's id when it connects again
    /// ([`ClientBuilder::resume`]); it changes when a reconnect reaches a
    /// restarted server.
    pub fn resumption(&self) -> Resumption {
        self.inner.shared.resumption()
    }

    /// The handle of the current connection (a clone: keep it to send from
    /// several tasks). After a reconnect it is a new connection's handle;
    /// one taken before keeps failing with [`Error::Disconnected`], so take
    /// it again, or call the client's own methods, which always use the
    /// current connection.
    pub fn peer(&self) -> Peer {
        self.inner.shared.peer()
    }

    /// The link's state now and its changes: when it drops, every attempt
    /// to come back, and when it returns.
    ///
    /// ```no_run
    /// use switchboard::LinkState;
    ///
    /// # async fn demo(client: switchboard::Client) {
    /// let mut link = client.link_state();
    /// while link.changed().await.is_ok() {
    ///     match *link.borrow() {
    ///         LinkState::Down { attempts } => eprintln!("server gone ({attempts} attempts)"),
    ///         LinkState::Up { connection } => eprintln!("back (connection {connection})"),
    ///         _ => break,
    ///     }
    /// }
    /// # }
    /// ```
    pub fn link_state(&self) -> watch::Receiver<LinkState> {
        self.inner.shared.state.subscribe()
    }

    /// The current connection's peer, per the reconnect policy when the
    /// link is down: the (failing) old one without reconnect or with
    /// [`WhileDown::FailFast`], else the next one, waiting at most `limit`.
    /// Returns the peer and how long it had to wait for it, if it did.
    async fn current(&self, limit: Option<Duration>) -> Result<(Peer, Option<Duration>)> {
        let peer = self.inner.shared.peer();
        if !peer.is_closed() {
            return Ok((peer, None));
        }
        match self.inner.while_down {
            None => return Ok((peer, None)),
            Some(WhileDown::FailFast) => return Err(Error::Disconnected),
            Some(WhileDown::Wait) => {}
        }
        let started = Instant::now();
        let mut state = self.inner.shared.state.subscribe();
        let wait = async {
            loop {
                let now = *state.borrow_and_update();
                let peer = self.inner.shared.peer();
                match now {
                    LinkState::Closed => return peer,
                    LinkState::Up { .. } if !peer.is_closed() => return peer,
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return peer;
                }
            }
        };
        let peer = match limit {
            Some(limit) => tokio::time::timeout(limit, wait)
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => wait.await,
        };
        Ok((peer, Some(started.elapsed())))
    }

    /// Sends a request and waits for the response.
    pub async fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        match self.current(self.inner.request_timeout).await? {
            (peer, None) => peer.request(route, params).await,
            // The wait counts against the request's timeout.
            (peer, Some(waited)) => match self.inner.request_timeout {
                Some(limit) => {
                    let left = limit.saturating_sub(waited);
                    let result = peer.request_timeout(route, params, left).await;
                    result.map_err(|e| match e {
                        Error::Timeout(_) => Error::Timeout(limit),
                        other => other,
                    })
                }
                None => peer.request(route, params).await,
            },
        }
    }

    /// Sends a request and waits at most `timeout`; on timeout the request
    /// is cancelled and the connection stays usable. Time spent waiting for
    /// a reconnect counts.
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
        match self.current(Some(timeout)).await? {
            (peer, None) => peer.request_timeout(route, params, timeout).await,
            (peer, Some(waited)) => {
                let left = timeout.saturating_sub(waited);
                let result = peer.request_timeout(route, params, left).await;
                // The caller's timeout is what ran out, not what was left.
                result.map_err(|e| match e {
                    Error::Timeout(_) => Error::Timeout(timeout),
                    other => other,
                })
            }
        }
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
        let (peer, _) = self.current(self.inner.request_timeout).await?;
        peer.call(route, params).await
    }

    /// Sends a request answered by a stream of items (see [`Stream`]):
    /// read them with [`Stream::next`]; dropping the stream cancels the
    /// request on the server. A stream in progress when the link drops
    /// ends with an error; it is not resumed by a reconnect.
    ///
    /// [`Stream`]: crate::Stream
    /// [`Stream::next`]: crate::Stream::next
    pub async fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<Stream<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let (peer, _) = self.current(self.inner.request_timeout).await?;
        peer.request_stream(route, params).await
    }

    /// Sends a notification (fire and forget).
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        let (peer, _) = self.current(self.inner.request_timeout).await?;
        peer.throw(route, params).await
    }

    /// Waits until the client is closed for good: by [`Client::close`],
    /// by the server going away (without reconnect), or when reconnecting
    /// gives up.
    pub async fn closed(&self) {
        let mut state = self.inner.shared.state.subscribe();
        let _ = state.wait_for(|state| *state == LinkState::Closed).await;
    }

    /// Closes the connection after writing what is queued (waiting up to
    /// five seconds for that), and stops reconnecting: for every clone of
    /// this client, as they share the connection. Later calls on any of
    /// them fail with [`Error::Closed`], and [`Client::closed`] returns.
    /// Without `close`, the connection closes when the last clone drops.
    ///
    /// ```
    /// # use switchboard::{Client, Connector, Error, Router, Server};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// # let server = Server::bind(&Connector::local(), Router::new().route("ping", |_: ()| async {})).await?;
    /// let client = Client::connect(server.connector()).await?;
    /// let other = client.clone();
    /// client.close().await;
    /// assert!(matches!(other.request::<_, ()>("ping", &()).await, Err(Error::Closed)));
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        self.inner.shared.closing.send_replace(true);
        self.inner
            .shared
            .connection()
            .close_and_flush(Duration::from_secs(5))
            .await;
        // What dropping the last clone does, now: the other clones must
        // not keep the socket (and the server's slot) open.
        self.inner.shared.connection().shut_down();
        self.inner.end();
    }
}

impl Handle {
    /// Closes the connection at once and for good (no reconnecting).
    fn end(&self) {
        self.shared.closing.send_replace(true);
        self.shared.connection().close();
        self.supervisor.abort();
        self.shared.state.send_replace(LinkState::Closed);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.end();
    }
}

impl ClientBuilder {
    fn to(target: Target) -> ClientBuilder {
        ClientBuilder {
            target,
            id: None,
            token: None,
            router: Arc::new(Router::new()),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            config: Config::default(),
            reconnect: None,
            format: None,
        }
    }
}
