//! The server: binds a connector, accepts clients concurrently, serves each
//! with a router, and can call any connected client back.
//!
//! ```no_run
//! use switchboard::{Connector, Router, Server};
//!
//! # async fn demo() -> switchboard::Result<()> {
//! let router = Router::new().route("echo", |v: serde_json::Value| async move { Ok::<_, String>(v) });
//! let server = Server::bind(&Connector::local(), router).await?;
//! println!("{}", server.connector().dump_state()); // hand this to the clients
//! server.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connector::{BindGuard, Connector, Link, Listener};
use crate::error::{Error, Result};
use crate::peer::{Connection, Peer, Settings};
use crate::protocol::handshake::{self, HANDSHAKE_TIMEOUT};
use crate::router::Router;
use crate::transport::{FrameReader, FrameWriter};

type ErrorHook = Arc<dyn Fn(&Error) + Send + Sync>;

/// Configures a [`Server`] before binding.
pub struct ServerBuilder {
    router: Router,
    on_error: ErrorHook,
}

impl ServerBuilder {
    /// Called with every connection-level failure: a client refused at the
    /// handshake (wrong secret, wrong version), a client that sent garbage
    /// or an oversized frame. The server keeps serving everyone else either
    /// way. By default these are printed to stderr.
    pub fn on_error(mut self, hook: impl Fn(&Error) + Send + Sync + 'static) -> ServerBuilder {
        self.on_error = Arc::new(hook);
        self
    }

    /// Binds the connector's address and starts accepting clients.
    pub async fn bind(self, connector: &Connector) -> Result<Server> {
        let mut listener = Listener::bind(connector).await?;
        let cleanup = listener.take_cleanup();
        let shared = Arc::new(Shared {
            connector: listener.connector().clone(),
            router: Arc::new(self.router),
            on_error: self.on_error,
            clients: Mutex::default(),
            connections: Mutex::default(),
            next_connection: AtomicU64::new(0),
            next_pick: AtomicUsize::new(0),
            client_count: watch::Sender::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Server {
            shared,
            accept,
            _cleanup: cleanup,
        })
    }
}

struct Shared {
    connector: Connector,
    router: Arc<Router>,
    on_error: ErrorHook,
    /// The live connection of each client id.
    clients: Mutex<HashMap<String, (u64, Peer)>>,
    /// Every live connection, including ones still in the handshake.
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    next_connection: AtomicU64,
    next_pick: AtomicUsize,
    client_count: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running server. Dropping it stops accepting, closes every connection,
/// and removes the socket file and its private directory at once; the
/// listening handle itself closes when the runtime next runs. After
/// [`Server::shutdown`] returns, the address is free.
pub struct Server {
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
    _cleanup: Option<BindGuard>,
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
    pub async fn bind(connector: &Connector, router: Router) -> Result<Server> {
        Server::builder(router).bind(connector).await
    }

    /// A builder, for setting an error hook before binding.
    pub fn builder(router: Router) -> ServerBuilder {
        ServerBuilder {
            router,
            on_error: Arc::new(|e| eprintln!("switchboard server: {e}")),
        }
    }

    /// The connector clients use to reach this server, with the real TCP
    /// port when port 0 was bound. Hand `connector().dump_state()` to them.
    pub fn connector(&self) -> &Connector {
        &self.shared.connector
    }

    /// The ids of the connected clients, sorted.
    pub fn clients(&self) -> Vec<String> {
        let mut ids: Vec<_> = lock(&self.shared.clients).keys().cloned().collect();
        ids.sort();
        ids
    }

    /// The connection of the client with this id.
    pub fn client(&self, id: &str) -> Option<Peer> {
        lock(&self.shared.clients)
            .get(id)
            .map(|(_, peer)| peer.clone())
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
        let peer = {
            let clients = lock(&self.shared.clients);
            if clients.is_empty() {
                return Err(Error::NoClients);
            }
            let mut ids: Vec<_> = clients.keys().collect();
            ids.sort();
            let pick = self.shared.next_pick.fetch_add(1, Ordering::Relaxed) % ids.len();
            clients[ids[pick]].1.clone()
        };
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
        let peers: Vec<Peer> = lock(&self.shared.clients)
            .values()
            .map(|(_, peer)| peer.clone())
            .collect();
        let mut sent = 0;
        for peer in peers {
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
        self.accept.abort();
        lock(&self.shared.clients).clear();
        for (_, connection) in lock(&self.shared.connections).drain() {
            connection.close();
        }
    }
}

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok(link) => {
                tokio::spawn(serve(link, Arc::clone(&shared)));
            }
            Err(e) => {
                (shared.on_error)(&Error::Io(e));
                // Errors such as EMFILE persist for a while; do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(link: Link, shared: Arc<Shared>) {
    let connector = &shared.connector;
    let peer_pid = link.peer_pid;
    let mut reader = FrameReader::new(link.reader, connector.max_frame());
    let mut writer = FrameWriter::new(link.writer);
    let settled = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        handshake::server(&mut reader, &mut writer, connector),
    )
    .await
    {
        Ok(Ok(settled)) => settled,
        Ok(Err(e)) => return (shared.on_error)(&e),
        Err(_) => {
            return (shared.on_error)(&Error::Protocol(format!(
                "a client did not finish the handshake within {HANDSHAKE_TIMEOUT:?}"
            )));
        }
    };
    let client_id = settled.client_id.clone();
    let connection = Arc::new(Connection::start(
        reader,
        writer,
        Settings {
            client_id: settled.client_id,
            peer_pid,
            format: settled.format,
            max_frame: connector.max_frame(),
            default_timeout: None,
        },
        Arc::clone(&shared.router) as Arc<dyn crate::peer::Inbound>,
    ));
    let number = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    lock(&shared.connections).insert(number, Arc::clone(&connection));
    // A client that reconnects under the same id replaces its old connection.
    let replaced =
        lock(&shared.clients).insert(client_id.clone(), (number, connection.peer().clone()));
    if let Some((old, _)) = replaced {
        if let Some(old) = lock(&shared.connections).remove(&old) {
            old.close();
        }
    }
    shared
        .client_count
        .send_replace(lock(&shared.clients).len());

    connection.closed().await;

    {
        let mut clients = lock(&shared.clients);
        if clients.get(&client_id).is_some_and(|(n, _)| *n == number) {
            clients.remove(&client_id);
        }
        shared.client_count.send_replace(clients.len());
    }
    lock(&shared.connections).remove(&number);
    if let Some(e) = connection.take_error() {
        (shared.on_error)(&e);
    }
}
