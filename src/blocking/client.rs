//! The blocking client: [`crate::Client`] for programs without an async
//! runtime, cheap to clone and usable from many threads at once.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::runtime::{InRuntime, run};
use super::stream::Items;
#[cfg(any(unix, windows))]
use crate::client::PendingClient as AsyncPending;
use crate::client::{Client as AsyncClient, ClientBuilder as AsyncBuilder, Reconnect, Resumption};
use crate::config::Config;
#[cfg(any(unix, windows))]
use crate::connector::ChildChannel;
use crate::connector::Connector;
use crate::error::Result;
use crate::peer::Peer;
use crate::registry::Lookup;
use crate::router::Router;

/// A connection to a server, for code that does not use async. Every
/// method blocks the calling thread until it is done.
///
/// Clones share the connection; it closes when the last clone is dropped or
/// when any of them calls [`Client::close`]. Any number of threads may call
/// it at once: each call waits only for its own answer.
///
/// ```
/// use switchboard::blocking::{Client, Server};
/// use switchboard::{Connector, Router};
///
/// # fn main() -> switchboard::Result<()> {
/// let router = Router::new().route("add", |(a, b): (i64, i64)| async move { Ok::<_, String>(a + b) });
/// let server = Server::bind(&Connector::local(), router)?;
///
/// let client = Client::connect(server.connector())?;
/// let sum: i64 = client.request("add", &(1, 2))?;
/// assert_eq!(sum, 3);
///
/// // From several threads at once:
/// std::thread::scope(|s| {
///     for i in 0..4_i64 {
///         let client = client.clone();
///         s.spawn(move || assert_eq!(client.request::<_, i64>("add", &(i, 1)).unwrap(), i + 1));
///     }
/// });
/// client.close();
/// # Ok(()) }
/// ```
///
/// # Panics
/// Every blocking method panics when called inside a running async
/// runtime (`#[tokio::main]`, `Runtime::block_on`, a task), with a message
/// naming the method: blocking there would stall the tasks that thread
/// runs. Use [`crate::Client`] in async code, or call from
/// `tokio::task::spawn_blocking`, which is fine (see [the module](super)).
#[derive(Clone)]
pub struct Client {
    inner: Arc<InRuntime<AsyncClient>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Client")
            .field("client", &**self.inner)
            .finish()
    }
}

/// Configures a blocking [`Client`] before connecting: the same settings
/// as [`crate::ClientBuilder`].
///
/// ```no_run
/// use std::time::Duration;
/// use switchboard::blocking::Client;
/// use switchboard::{Connector, Router};
///
/// # fn main() -> switchboard::Result<()> {
/// // A route the server may call on this client, served while the
/// // program's own threads are busy or blocked.
/// let router = Router::new().route("progress", |percent: u8| async move {
///     eprintln!("{percent} %");
///     Ok::<_, String>(())
/// });
/// let client = Client::builder(&Connector::from_env()?)
///     .id("worker-1")
///     .router(router)
///     .request_timeout(Duration::from_secs(5))
///     .connect()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `connect` is called"]
pub struct ClientBuilder {
    inner: AsyncBuilder,
}

impl ClientBuilder {
    /// See [`crate::ClientBuilder::id`].
    pub fn id(self, id: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.id(id),
        }
    }

    /// See [`crate::ClientBuilder::resume`].
    pub fn resume(self, resumption: &Resumption) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.resume(resumption),
        }
    }

    /// Routes the server may call on this client. They are served by the
    /// background runtime, whatever the program's threads are doing.
    pub fn router<S: Send + Sync + 'static>(self, router: Router<S>) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.router(router),
        }
    }

    /// See [`crate::ClientBuilder::connect_timeout`].
    pub fn connect_timeout(self, timeout: Duration) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.connect_timeout(timeout),
        }
    }

    /// See [`crate::ClientBuilder::request_timeout`].
    pub fn request_timeout(self, timeout: Duration) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.request_timeout(timeout),
        }
    }

    /// See [`crate::ClientBuilder::reconnect`]: the client reconnects in
    /// the background, and calls made while it is down wait or fail as the
    /// policy says.
    pub fn reconnect(self, policy: Reconnect) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.reconnect(policy),
        }
    }

    /// See [`crate::ClientBuilder::lookup`].
    pub fn lookup(self, lookup: Lookup) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.lookup(lookup),
        }
    }

    /// See [`crate::ClientBuilder::config`].
    pub fn config(self, config: Config) -> ClientBuilder {
        ClientBuilder {
            inner: self.inner.config(config),
        }
    }

    /// A channel for one child that serves, with this process as its
    /// client, like [`crate::ClientBuilder::child_channel`]; connect with
    /// [`PendingClient::connect`] once the child is spawned.
    ///
    /// ```no_run
    /// use switchboard::blocking::Client;
    /// use switchboard::{CommandExt, Connector};
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// let (channel, pending) = Client::builder(&Connector::local()).id("parent").child_channel()?;
    /// let mut child = std::process::Command::new("worker")
    ///     .connector_env(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// let client = pending.connect()?;
    /// let sum: i64 = client.request("add", &(1, 2))?;
    /// # child.wait()?;
    /// # Ok(()) }
    /// ```
    #[cfg(any(unix, windows))]
    #[track_caller]
    pub fn child_channel(self) -> Result<(ChildChannel, PendingClient)> {
        let inner = self.inner;
        // Made inside the shared runtime: on Windows the parent's end is
        // registered with the runtime that makes it, and used there.
        let (channel, pending) = run("blocking::ClientBuilder::child_channel", async move {
            inner.child_channel()
        })?;
        Ok((channel, PendingClient { inner: pending }))
    }

    /// Connects, authenticates, and starts serving the client's routes;
    /// blocks until connected or failed.
    #[track_caller]
    pub fn connect(self) -> Result<Client> {
        self.connect_as("blocking::ClientBuilder::connect")
    }

    /// [`ClientBuilder::connect`], for the method `call` (named if it is
    /// made inside a runtime).
    #[track_caller]
    fn connect_as(self, call: &str) -> Result<Client> {
        let client = run(call, self.inner.connect())?;
        Ok(Client {
            inner: Arc::new(InRuntime::new(client)),
        })
    }
}

impl Client {
    /// Connects with the default settings: random id, no routes of its own,
    /// 10 s to find the server.
    #[track_caller]
    pub fn connect(connector: &Connector) -> Result<Client> {
        Client::builder(connector).connect_as("blocking::Client::connect")
    }

    /// A channel for one child that serves, with this process as its
    /// client: [`ClientBuilder::child_channel`] with the default settings.
    ///
    /// ```no_run
    /// use switchboard::blocking::Client;
    /// use switchboard::{CommandExt, Connector};
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// let (channel, pending) = Client::child_channel(&Connector::local())?;
    /// let child = std::process::Command::new("worker")
    ///     .connector_env(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// let client = pending.connect()?;
    /// # Ok(()) }
    /// ```
    #[cfg(any(unix, windows))]
    #[track_caller]
    pub fn child_channel(settings: &Connector) -> Result<(ChildChannel, PendingClient)> {
        Client::builder(settings).child_channel()
    }

    /// A builder for id, routes, timeouts and reconnecting.
    pub fn builder(connector: &Connector) -> ClientBuilder {
        ClientBuilder {
            inner: AsyncClient::builder(connector),
        }
    }

    /// Connects to the service registered or listed under `name`, like
    /// [`crate::Client::connect_named`].
    #[track_caller]
    pub fn connect_named(name: &str) -> Result<Client> {
        Client::builder_named(name).connect_as("blocking::Client::connect_named")
    }

    /// A builder for a client that connects by name, like
    /// [`crate::Client::builder_named`].
    pub fn builder_named(name: &str) -> ClientBuilder {
        ClientBuilder {
            inner: AsyncClient::builder_named(name),
        }
    }

    /// This client's id, as the server knows it.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// What proves this client's id when it connects again
    /// ([`ClientBuilder::resume`]).
    pub fn resumption(&self) -> Resumption {
        self.inner.resumption()
    }

    /// Sends a request and waits for the response (at most the connection's
    /// request timeout, 30 s unless configured).
    #[track_caller]
    pub fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        run(
            "blocking::Client::request",
            self.inner.request(route, params),
        )
    }

    /// Sends a request and waits at most `timeout`; on timeout the request
    /// is cancelled on the server and the connection stays usable.
    #[track_caller]
    pub fn request_timeout<T, R>(&self, route: &str, params: &T, timeout: Duration) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        run(
            "blocking::Client::request_timeout",
            self.inner.request_timeout(route, params, timeout),
        )
    }

    /// Sends a request answered by a stream of items, and returns them as
    /// an iterator: each `next` blocks until the next item arrives, and
    /// `None` follows the last. Dropping the iterator early cancels the
    /// stream on the server.
    ///
    /// ```
    /// use switchboard::blocking::{Client, Server};
    /// use switchboard::{Connector, Router, Stream};
    ///
    /// # fn main() -> switchboard::Result<()> {
    /// let router = Router::new().route("count", |to: u32| async move { Stream::iter(1..=to) });
    /// let server = Server::bind(&Connector::local(), router)?;
    /// let client = Client::connect(server.connector())?;
    /// let numbers = client.request_stream::<_, u32>("count", &3)?;
    /// assert_eq!(numbers.collect::<switchboard::Result<Vec<_>>>()?, [1, 2, 3]);
    ///
    /// // Taking only what is needed: the rest is never produced.
    /// let first: Vec<u32> = client
    ///     .request_stream("count", &u32::MAX)?
    ///     .take(2)
    ///     .collect::<switchboard::Result<_>>()?;
    /// assert_eq!(first, [1, 2]);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<Items<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        run(
            "blocking::Client::request_stream",
            self.inner.request_stream(route, params),
        )
        .map(Items::new)
    }

    /// Sends a notification (fire and forget); returns once it is queued,
    /// waiting only while the server has no room for it.
    #[track_caller]
    pub fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        run("blocking::Client::throw", self.inner.throw(route, params))
    }

    /// The handle of the current connection (see [`crate::Client::peer`]).
    pub fn peer(&self) -> Peer {
        self.inner.peer()
    }

    /// True once the current connection has ended, from either side (with
    /// [`ClientBuilder::reconnect`], a new one may follow).
    pub fn is_closed(&self) -> bool {
        self.inner.peer().is_closed()
    }

    /// Closes the connection for every clone, after writing what is queued
    /// (waiting up to five seconds for that). Later calls fail with
    /// [`Error::Closed`](crate::Error::Closed).
    #[track_caller]
    pub fn close(&self) {
        let closing = async {
            self.inner.close().await;
            Ok(())
        };
        // Only a runtime that failed to start gives an error, and then
        // there is no connection to close.
        let _ = run("blocking::Client::close", closing);
    }

    /// The async client underneath. Its futures may be run with
    /// `switchboard::blocking::__block_on` (what the typed blocking clients
    /// of `#[switchboard::service]` do) or awaited on any runtime.
    #[doc(hidden)]
    pub fn as_async(&self) -> &AsyncClient {
        &self.inner
    }
}

/// The blocking client of a child that will serve on a channel: what
/// [`Client::child_channel`] returns beside the [`ChildChannel`] (see
/// [`crate::PendingClient`]).
#[cfg(any(unix, windows))]
#[derive(Debug)]
pub struct PendingClient {
    inner: AsyncPending,
}

#[cfg(any(unix, windows))]
impl PendingClient {
    /// Connects to the child's server, like
    /// [`crate::PendingClient::connect`]; blocks until connected or
    /// failed.
    ///
    /// ```no_run
    /// # fn demo(pending: switchboard::blocking::PendingClient) -> switchboard::Result<()> {
    /// let client = pending.connect()?;
    /// let answer: String = client.request("echo", "hi")?;
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn connect(self) -> Result<Client> {
        let client = run("blocking::PendingClient::connect", self.inner.connect())?;
        Ok(Client {
            inner: Arc::new(InRuntime::new(client)),
        })
    }
}
