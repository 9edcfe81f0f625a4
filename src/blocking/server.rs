//! The blocking server: [`crate::Server`] for programs without an async
//! runtime. It serves from the shared background runtime; the program's
//! threads are free.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::runtime::{InRuntime, run};
use super::stream::Items;
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::router::Router;
use crate::server::{Server as AsyncServer, ServerBuilder};

/// A running server, for code that does not use async. It accepts and
/// serves clients in the background from the moment [`Server::bind`]
/// returns; its methods block the calling thread until they are done.
///
/// Dropping it stops accepting, closes every connection and removes the
/// socket; [`Server::shutdown`] does the same gracefully.
///
/// ```
/// use switchboard::blocking::{Client, Server};
/// use switchboard::{Connector, Router};
///
/// # fn main() -> switchboard::Result<()> {
/// let router = Router::new().route("echo", |text: String| async move { Ok::<_, String>(text) });
/// let server = Server::bind(&Connector::local(), router)?;
/// // Hand `server.connector().dump_state()` to the clients, e.g. with
/// // `switchboard::CommandExt::connector_env` on a child's `Command`.
/// let client = Client::connect(server.connector())?;
/// let answer: String = client.request("echo", "hi")?;
/// assert_eq!(answer, "hi");
/// server.wait_for_clients(1);
/// assert_eq!(server.clients(), [client.id()]);
/// server.shutdown();
/// # Ok(()) }
/// ```
///
/// # Panics
/// Every blocking method panics when called from inside an async runtime's
/// task, like [`Client`](super::Client)'s.
pub struct Server {
    inner: InRuntime<AsyncServer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Server")
            .field("server", &*self.inner)
            .finish()
    }
}

impl Server {
    /// Binds `connector` and serves `router` to every client.
    #[track_caller]
    pub fn bind<S: Send + Sync + 'static>(
        connector: &Connector,
        router: Router<S>,
    ) -> Result<Server> {
        Server::bind_with(connector, AsyncServer::builder(router))
    }

    /// Binds `connector`, serves `router`, and publishes the server under
    /// `name` in this user's registry, like
    /// [`crate::Server::bind_named`].
    #[track_caller]
    pub fn bind_named<S: Send + Sync + 'static>(
        name: &str,
        connector: &Connector,
        router: Router<S>,
    ) -> Result<Server> {
        let server = run(
            "blocking::Server::bind_named",
            AsyncServer::bind_named(name, connector, router),
        )?;
        Ok(Server {
            inner: InRuntime::new(server),
        })
    }

    /// Binds with the limits, budgets, access and error hook of a
    /// [`ServerBuilder`].
    ///
    /// ```no_run
    /// use switchboard::{Connector, Router};
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// let builder = switchboard::Server::builder(Router::new()).max_connections(8);
    /// let server = switchboard::blocking::Server::bind_with(&Connector::local(), builder)?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn bind_with(connector: &Connector, builder: ServerBuilder) -> Result<Server> {
        let server = run("blocking::Server::bind", builder.bind(connector))?;
        Ok(Server {
            inner: InRuntime::new(server),
        })
    }

    /// The connector clients use to reach this server (with the real TCP
    /// port when port 0 was bound).
    pub fn connector(&self) -> &Connector {
        self.inner.connector()
    }

    /// The ids of the connected clients, sorted.
    pub fn clients(&self) -> Vec<String> {
        self.inner.clients()
    }

    /// Blocks until at least `count` clients are connected.
    #[track_caller]
    pub fn wait_for_clients(&self, count: usize) {
        let waiting = async {
            self.inner.wait_for_clients(count).await;
            Ok(())
        };
        let _ = run("blocking::Server::wait_for_clients", waiting);
    }

    /// Sends a request to the client with this id and waits for its
    /// response.
    #[track_caller]
    pub fn request<T, R>(&self, client_id: &str, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        run(
            "blocking::Server::request",
            self.inner.request(client_id, route, params),
        )
    }

    /// Like [`Server::request`], waiting at most `timeout`.
    #[track_caller]
    pub fn request_timeout<T, R>(
        &self,
        client_id: &str,
        route: &str,
        params: &T,
        timeout: Duration,
    ) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let peer = self
            .inner
            .client(client_id)
            .ok_or_else(|| Error::UnknownClient(client_id.to_owned()))?;
        run(
            "blocking::Server::request_timeout",
            peer.request_timeout(route, params, timeout),
        )
    }

    /// Sends a request to the client with this id that it answers with a
    /// stream; see [`Client::request_stream`](super::Client::request_stream).
    #[track_caller]
    pub fn request_stream<T, R>(&self, client_id: &str, route: &str, params: &T) -> Result<Items<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let peer = self
            .inner
            .client(client_id)
            .ok_or_else(|| Error::UnknownClient(client_id.to_owned()))?;
        run(
            "blocking::Server::request_stream",
            peer.request_stream(route, params),
        )
        .map(Items::new)
    }

    /// Sends a request to any one connected client (taking turns).
    #[track_caller]
    pub fn request_any<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        run(
            "blocking::Server::request_any",
            self.inner.request_any(route, params),
        )
    }

    /// Sends a notification to the client with this id.
    #[track_caller]
    pub fn throw<T: Serialize + ?Sized>(
        &self,
        client_id: &str,
        route: &str,
        params: &T,
    ) -> Result<()> {
        run(
            "blocking::Server::throw",
            self.inner.throw(client_id, route, params),
        )
    }

    /// Sends a notification to every connected client; returns how many it
    /// was queued for.
    #[track_caller]
    pub fn broadcast<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> usize {
        let sending = async { Ok(self.inner.broadcast(route, params).await) };
        run("blocking::Server::broadcast", sending).unwrap_or(0)
    }

    /// Blocks until this server has nothing more to serve, like
    /// [`crate::Server::closed`]: a server on an inherited channel it
    /// serves returns once that one connection has ended; any other server
    /// never does.
    ///
    /// ```no_run
    /// use switchboard::blocking::Server;
    /// use switchboard::{Connector, Router};
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// // In a child spawned by a parent that is the client:
    /// let router = Router::new().route("add", |(a, b): (i64, i64)| async move { a + b });
    /// let server = Server::bind(&Connector::from_env()?, router)?;
    /// server.closed(); // the parent hung up
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn closed(&self) {
        let waiting = async {
            self.inner.closed().await;
            Ok(())
        };
        let _ = run("blocking::Server::closed", waiting);
    }

    /// Graceful shutdown (see [`crate::Server::shutdown`]); when it returns,
    /// the address is free.
    #[track_caller]
    pub fn shutdown(self) {
        self.shutdown_timeout(Duration::MAX);
    }

    /// Like [`Server::shutdown`], but closes connections whose handlers are
    /// still running after `grace`.
    #[track_caller]
    pub fn shutdown_timeout(self, grace: Duration) {
        let server = self.inner.into_inner();
        let stopping = async {
            server.shutdown_timeout(grace).await;
            Ok(())
        };
        let _ = run("blocking::Server::shutdown", stopping);
    }
}
