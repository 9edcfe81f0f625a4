//! The server: binds a connector, accepts clients concurrently, serves each
//! with a router, and can call any connected client back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
#[cfg(any(unix, windows))]
use crate::connector::Address;
use crate::connector::{BindGuard, Connector, Listener};
use crate::error::{Error, Result};
use crate::peer::{Connection, ErrorHook, Inbound, Peer};
use crate::registry::{self, Registration, Registry};
use crate::router::Router;

mod admission;
#[cfg(any(unix, windows))]
mod channel;

pub use admission::Access;
use admission::{Holders, Limits, Unauthenticated};

/// Called with a client's [`Peer`] when it connects or leaves.
type PeerHook = Arc<dyn Fn(&Peer) + Send + Sync>;

/// The default of [`ServerBuilder::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default of [`ServerBuilder::max_handshakes`]: how many connections
/// may be in the handshake at once before the oldest is shed.
///
/// Until 0.1 this was 64 and accepting paused at it, which let a few idle
/// connections lock every good client out; accepting no longer pauses.
pub const DEFAULT_MAX_HANDSHAKES: usize = 512;
/// The default of [`ServerBuilder::max_handshakes_per_peer`].
pub const DEFAULT_MAX_HANDSHAKES_PER_PEER: usize = 256;
/// The default of [`ServerBuilder::hello_timeout`].
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures a [`Server`] before binding.
#[must_use = "a builder does nothing until `bind` is called"]
pub struct ServerBuilder {
    router: Arc<dyn Inbound>,
    on_error: ErrorHook,
    on_connect: PeerHook,
    on_disconnect: PeerHook,
    config: Config,
    limits: Limits,
    access: Access,
    name: Option<(String, Option<Registry>)>,
}

impl ServerBuilder {
    /// Called with every connection-level failure: a client refused at the
    /// handshake (wrong secret, wrong version, limits, its user), a client
    /// that broke the protocol or fell silent, a failed notification
    /// handler. The server keeps serving everyone else either way. Every
    /// one of these is also logged through `tracing`; by default there is
    /// no hook.
    pub fn on_error(mut self, hook: impl Fn(&Error) + Send + Sync + 'static) -> ServerBuilder {
        self.on_error = Arc::new(hook);
        self
    }

    /// Called with each client once its handshake succeeded, before its
    /// first request is handled. The [`Peer`] can be kept to call the
    /// client later (from a task: the hook itself must not wait).
    ///
    /// ```
    /// # use switchboard::{Connector, Router, Server, Client};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    /// let left = events.clone();
    /// let server = Server::builder(Router::new())
    ///     .on_connect(move |peer| { let _ = events.send(format!("+{}", peer.client_id())); })
    ///     .on_disconnect(move |peer| { let _ = left.send(format!("-{}", peer.client_id())); })
    ///     .bind(&Connector::local())
    ///     .await?;
    /// let client = Client::builder(server.connector()).id("alice").connect().await?;
    /// assert_eq!(seen.recv().await.unwrap(), "+alice");
    /// client.close().await;
    /// assert_eq!(seen.recv().await.unwrap(), "-alice");
    /// # Ok(()) }
    /// ```
    pub fn on_connect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> ServerBuilder {
        self.on_connect = Arc::new(hook);
        self
    }

    /// Called with each client whose connection ended, whatever the reason
    /// (it left, it was replaced by a reconnect of the same id, it broke
    /// the protocol, the server shut down). Why it ended badly, if it did,
    /// also goes to [`ServerBuilder::on_error`].
    pub fn on_disconnect(mut self, hook: impl Fn(&Peer) + Send + Sync + 'static) -> ServerBuilder {
        self.on_disconnect = Arc::new(hook);
        self
    }

    /// Budgets and timers of every connection (see [`Config`] for the
    /// defaults).
    pub fn config(mut self, config: Config) -> ServerBuilder {
        self.config = config;
        self
    }

    /// How many clients may be connected at once; the next one is refused
    /// in the handshake with a message saying so. Default:
    /// [`DEFAULT_MAX_CONNECTIONS`].
    pub fn max_connections(mut self, max: usize) -> ServerBuilder {
        self.limits.max_connections = max;
        self
    }

    /// How many connections may be in the handshake (connected, not yet
    /// proven to hold the secret) at once. The server never stops
    /// accepting: a new connection past this many sheds the oldest one in
    /// the handshake, so idle connections cannot keep a good client, which
    /// is through the handshake in a few round trips, waiting. Clients that
    /// finished the handshake are never shed, and neither is a connection
    /// younger than 250 ms (so a burst of good clients may exceed the cap
    /// for a moment; running out of file descriptors sheds the oldest at
    /// any age). Default:
    /// [`DEFAULT_MAX_HANDSHAKES`].
    ///
    /// ```
    /// # use switchboard::{Router, Server};
    /// let builder = Server::builder(Router::new()).max_handshakes(1024).max_handshakes_per_peer(64);
    /// ```
    pub fn max_handshakes(mut self, max: usize) -> ServerBuilder {
        self.limits.max_handshakes = max;
        self
    }

    /// How many connections from one peer may be in the handshake at once:
    /// the peer is the user at the other end of a Unix socket, or the IP
    /// address of a TCP client (named pipes and the broker tell neither;
    /// only [`ServerBuilder::max_handshakes`] applies to them). Past it, a
    /// new connection sheds that peer's oldest one in the handshake, so a
    /// single peer cannot shed everyone else's. Default:
    /// [`DEFAULT_MAX_HANDSHAKES_PER_PEER`].
    pub fn max_handshakes_per_peer(mut self, max: usize) -> ServerBuilder {
        self.limits.max_handshakes_per_peer = max;
        self
    }

    /// How long a new connection may take to send its hello (the
    /// handshake's first frame, which a client sends as soon as it is
    /// connected); then it is closed. The rest of the handshake has
    /// [`Config::handshake_timeout`]. Default: [`DEFAULT_HELLO_TIMEOUT`]
    /// (1 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use switchboard::{Router, Server};
    /// // A client across a slow network link:
    /// let builder = Server::builder(Router::new()).hello_timeout(Duration::from_secs(3));
    /// ```
    pub fn hello_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.limits.hello_timeout = timeout;
        self
    }

    /// Which users may connect over a Unix socket. Default:
    /// [`Access::SameUser`].
    pub fn access(mut self, access: Access) -> ServerBuilder {
        self.access = access;
        self
    }

    /// Publishes the server under `name` in this user's registry once it
    /// is bound (see [`Server::bind_named`]).
    pub fn name(mut self, name: impl Into<String>) -> ServerBuilder {
        let registry = self.name.take().and_then(|(_, registry)| registry);
        self.name = Some((name.into(), registry));
        self
    }

    /// Publishes the name given to [`ServerBuilder::name`] in `registry`
    /// instead of this user's.
    pub fn registry(mut self, registry: Registry) -> ServerBuilder {
        let name = self.name.take().map(|(name, _)| name).unwrap_or_default();
        self.name = Some((name, Some(registry)));
        self
    }

    /// Binds the connector's address and starts accepting clients (and,
    /// with [`ServerBuilder::name`], publishes it under that name). A
    /// connector for an inherited channel that this process serves on is
    /// taken over instead: see [`Server::closed`].
    pub async fn bind(self, connector: &Connector) -> Result<Server> {
        #[cfg(any(unix, windows))]
        if let Address::Inherited {
            number,
            serve: true,
        } = *connector.address()
        {
            return self.serve_inherited(connector, number);
        }
        let registry = match &self.name {
            Some((name, _)) if name.is_empty() => {
                return Err(Error::InvalidArgument {
                    what: "service name",
                    reason: "ServerBuilder::registry was given, but no name to publish \
                             (ServerBuilder::name)"
                        .into(),
                });
            }
            Some((name, registry)) => {
                registry::check_name(name)?;
                // Checked before binding: a registry that cannot be used
                // fails the bind without touching the address.
                Some(match registry {
                    Some(registry) => registry.clone(),
                    None => Registry::user()?,
                })
            }
            None => None,
        };
        let mut listener = Listener::bind(connector, self.access.open_to_others()).await?;
        let cleanup = listener.take_cleanup();
        let name = self.name.clone();
        let mut server = self.start(listener.connector().clone(), Some(listener), cleanup);
        if let (Some(registry), Some((name, _))) = (registry, &name) {
            // On failure the server is dropped, and its address freed.
            server.registration = Some(registry.publish(name, server.connector()).await?);
        }
        Ok(server)
    }

    /// The server, accepting on `listener` if there is one.
    fn start(
        self,
        connector: Connector,
        listener: Option<Listener>,
        cleanup: Option<BindGuard>,
    ) -> Server {
        let shared = Arc::new(Shared {
            connector,
            router: self.router,
            on_error: self.on_error,
            on_connect: self.on_connect,
            on_disconnect: self.on_disconnect,
            config: self.config,
            limits: self.limits,
            access: self.access,
            holders: Mutex::default(),
            unauthenticated: Mutex::default(),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(0),
            next_pick: AtomicUsize::new(0),
            client_count: watch::Sender::new(0),
            done: watch::Sender::new(false),
        });
        let accept = match listener {
            Some(listener) => tokio::spawn(admission::accept_loop(listener, Arc::clone(&shared))),
            None => tokio::spawn(async {}),
        };
        Server {
            shared,
            accept,
            _cleanup: cleanup,
            registration: None,
        }
    }
}

struct Shared {
    connector: Connector,
    router: Arc<dyn Inbound>,
    on_error: ErrorHook,
    on_connect: PeerHook,
    on_disconnect: PeerHook,
    config: Config,
    limits: Limits,
    access: Access,
    /// Who holds each client id: its live connection, or a handshake that
    /// reserved it.
    holders: Mutex<Holders>,
    /// Connections that have not proven the secret yet, to shed if need be.
    unauthenticated: Mutex<Unauthenticated>,
    /// Every live connection, by a number of its own.
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_connection: AtomicU64,
    next_pick: AtomicUsize,
    client_count: watch::Sender<usize>,
    /// Set once a server on an inherited channel it serves has served its
    /// one connection (see [`Server::closed`]).
    done: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running server.
///
/// ```
/// use switchboard::{Client, Connector, Router, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let router = Router::new().route("echo", |v: serde_json::Value| async move { v });
/// let server = Server::bind(&Connector::local(), router).await?;
/// println!("{}", server.connector().dump_state()); // hand this to the clients
/// # let client = Client::connect(server.connector()).await?;
/// # let _: serde_json::Value = client.request("echo", &1).await?;
/// // The connected clients, by id (`server.request(id, ..)` calls one back):
/// let ids = server.clients();
/// # assert_eq!(ids.len(), 1);
/// server.shutdown().await; // or: server.run_until(ctrl_c).await
/// # Ok(()) }
/// ```
///
/// Dropping it stops accepting, closes every connection,
/// and removes the socket file and its private directory at once; the
/// listening handle itself closes when the runtime next runs. After
/// [`Server::shutdown`] returns, the address is free.
pub struct Server {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    _cleanup: Option<BindGuard>,
    /// Removes the registry entry when dropped.
    registration: Option<Registration>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("connector", &self.shared.connector)
            .field("clients", &self.clients().len())
            .finish()
    }
}

impl Server {
    /// Binds `connector` and serves `router` to every client.
    pub async fn bind<S: Send + Sync + 'static>(
        connector: &Connector,
        router: Router<S>,
    ) -> Result<Server> {
        Server::builder(router).bind(connector).await
    }

    /// Binds `connector`, serves `router`, and publishes the server under
    /// `name` in this user's registry, so clients find it with
    /// [`Client::connect_named`](crate::Client::connect_named) and
    /// `switchboard ls` lists it. The entry is removed when the server
    /// shuts down or is dropped; one left by a server that died is
    /// replaced. Fails with [`Error::NameInUse`] (naming its pid) when a
    /// live server holds the name, and with [`Error::Registry`] when the
    /// registry directory is not private to this user.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// use switchboard::registry::{Lookup, Registry};
    /// use switchboard::{Client, Connector, Router, Server};
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let registry = Registry::at(dir.path().join("registry"))?;
    /// let router = Router::new().route("add", |(a, b): (i64, i64)| async move { Ok::<_, String>(a + b) });
    /// // Server::bind_named("calc", &Connector::local(), router) publishes in the
    /// // user's registry; here, in a registry of its own:
    /// let server = Server::builder(router).name("calc").registry(registry.clone())
    ///     .bind(&Connector::local()).await?;
    /// let client = Client::builder_named("calc").lookup(Lookup::default().registry(registry))
    ///     .connect().await?;
    /// assert_eq!(client.request::<_, i64>("add", &(1, 2)).await?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn bind_named<S: Send + Sync + 'static>(
        name: &str,
        connector: &Connector,
        router: Router<S>,
    ) -> Result<Server> {
        Server::builder(router).name(name).bind(connector).await
    }

    /// The name the server is published under, if any.
    pub fn name(&self) -> Option<&str> {
        self.registration.as_ref().map(Registration::name)
    }

    /// A builder, for limits, budgets, access and an error hook.
    pub fn builder<S: Send + Sync + 'static>(router: Router<S>) -> ServerBuilder {
        ServerBuilder {
            router: Arc::new(router),
            on_error: Arc::new(|_| {}),
            on_connect: Arc::new(|_| {}),
            on_disconnect: Arc::new(|_| {}),
            config: Config::default(),
            limits: Limits {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                max_handshakes: DEFAULT_MAX_HANDSHAKES,
                max_handshakes_per_peer: DEFAULT_MAX_HANDSHAKES_PER_PEER,
                hello_timeout: DEFAULT_HELLO_TIMEOUT,
            },
            access: Access::default(),
            name: None,
        }
    }

    /// The connector clients use to reach this server, with the real TCP
    /// port when port 0 was bound. Hand `connector().dump_state()` to them.
    pub fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    /// The ids of the connected clients, sorted.
    pub fn clients(&self) -> Vec<String> {
        self.peers().into_iter().map(|(id, _)| id).collect()
    }

    /// The connection of the client with this id.
    pub fn client(&self, id: &str) -> Option<Peer> {
        lock(&self.shared.holders)
            .get(id)
            .and_then(|holder| holder.peer.clone())
    }

    fn peers(&self) -> Vec<(String, Peer)> {
        let mut peers: Vec<_> = lock(&self.shared.holders)
            .iter()
            .filter_map(|(id, holder)| Some((id.clone(), holder.peer.clone()?)))
            .collect();
        peers.sort_by(|a, b| a.0.cmp(&b.0));
        peers
    }

    /// Waits until at least `count` clients are connected.
    pub async fn wait_for_clients(&self, count: usize) {
        let mut watcher = self.shared.client_count.subscribe();
        let _ = watcher.wait_for(|connected| *connected >= count).await;
    }

    /// Sends a request to the client with this id and waits for its response.
    pub async fn request<T, R>(&self, client_id: &str, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let peer = self
            .client(client_id)
            .ok_or_else(|| Error::UnknownClient(client_id.to_owned()))?;
        peer.request(route, params).await
    }

    /// Sends a request to any one connected client (taking turns) and waits
    /// for its response.
    pub async fn request_any<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let mut peers = self.peers();
        if peers.is_empty() {
            return Err(Error::NoClients);
        }
        let pick = self.shared.next_pick.fetch_add(1, Ordering::Relaxed) % peers.len();
        let (_, peer) = peers.swap_remove(pick);
        peer.request(route, params).await
    }

    /// Sends a notification to the client with this id.
    pub async fn throw<T: Serialize + ?Sized>(
        &self,
        client_id: &str,
        route: &str,
        params: &T,
    ) -> Result<()> {
        let peer = self
            .client(client_id)
            .ok_or_else(|| Error::UnknownClient(client_id.to_owned()))?;
        peer.throw(route, params).await
    }

    /// Sends a notification to every connected client; returns how many it
    /// was queued for.
    pub async fn broadcast<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> usize {
        let mut sent = 0;
        for (_, peer) in self.peers() {
            if peer.throw(route, params).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Graceful shutdown: stops accepting, answers new requests with
    /// [`Error::ShuttingDown`], lets running handlers finish and their
    /// responses go out, then closes every connection and removes the
    /// socket.
    pub async fn shutdown(self) {
        self.shutdown_timeout(Duration::MAX).await;
    }

    /// Like [`Server::shutdown`], but closes connections whose handlers are
    /// still running after `grace`.
    pub async fn shutdown_timeout(mut self, grace: Duration) {
        // Unpublished first: nobody should look up a server that is leaving.
        self.registration = None;
        self.accept.abort();
        // Waiting for the aborted task drops the listener: no new client can
        // reach this server once shutdown returns.
        let _ = (&mut self.accept).await;
        let connections: Vec<_> = lock(&self.shared.connections).values().cloned().collect();
        let drains = connections.iter().map(|connection| {
            let connection = Arc::clone(connection);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(grace, connection.drain()).await;
                connection.close();
                // Give the client a moment to read the last responses and
                // hang up before the connection is dropped.
                let _ = tokio::time::timeout(Duration::from_secs(1), connection.closed()).await;
            })
        });
        for drain in drains.collect::<Vec<_>>() {
            let _ = drain.await;
        }
        // Dropping `self` aborts the connections' tasks and removes the socket.
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.registration = None;
        self.accept.abort();
        lock(&self.shared.holders).clear();
        for (_, connection) in lock(&self.shared.connections).drain() {
            connection.close();
        }
    }
}
