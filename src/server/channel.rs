//! Inherited channels on the server's side: a server makes a connected
//! pair, serves one end like any accepted connection, and hands the other
//! to one child it spawns; or, in a child whose parent is the client, a
//! server takes over the one end it inherited and serves that (see
//! `connector/inherited.rs`).

use std::sync::{Arc, Weak};

use super::{Server, ServerBuilder, Shared, admission};
use crate::connector::{Address, ChildChannel, Connector, Link, channel_pair, serve_inherited};
use crate::error::{Error, Result};

impl Server {
    /// A channel for one child: a new connected pair, whose one end this
    /// server serves like any client's connection (the same handshake,
    /// secret, admission and client ids), and whose other end the child
    /// inherits. Spawn the child with
    /// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)
    /// after putting [`ChildChannel::connector`] in its environment or
    /// arguments; its `Client::connect(&Connector::from_env()?)` works as
    /// with any connector, with no socket file, no directory and no pipe
    /// name: a child in another mount namespace, a sandbox without
    /// filesystem access, or under another user reaches this server all
    /// the same.
    ///
    /// ```no_run
    /// use switchboard::{CommandExt, Connector, Router, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let server = Server::bind(&Connector::local(), Router::new()).await?;
    /// let channel = server.child_channel()?;
    /// let mut child = tokio::process::Command::new("worker")
    ///     .connector_env(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// server.wait_for_clients(1).await;
    /// # child.wait().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// The server waits for the child's first bytes as long as it takes
    /// (a child's exit ends the wait), then gives it the usual handshake
    /// timeout. The channel's connector has this server's secret and
    /// settings; it connects once, and a client using it does not
    /// reconnect. Must be called within a tokio runtime.
    pub fn child_channel(&self) -> Result<ChildChannel> {
        let (channel, parent) =
            channel_pair(&self.shared.connector, false).map_err(|source| Error::Bind {
                address: "a new inherited channel".into(),
                source,
            })?;
        // Weak: a channel whose child never writes must not keep a dropped
        // server's state alive.
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let link = parent.first_bytes().await;
            serve_one(link, "its child", shared).await;
        });
        Ok(channel)
    }

    /// Waits until this server has nothing more to serve. That happens to
    /// one kind of server only: one bound to an inherited channel that
    /// this process serves on (its parent, the client, made it with
    /// [`Client::child_channel`](crate::Client::child_channel)). Such a
    /// server listens nowhere and touches no file; it serves that one
    /// connection, and `closed` returns once the connection has ended (the
    /// parent closed it, exited or was killed) or failed its handshake
    /// (reported to [`ServerBuilder::on_error`]). The server is still
    /// there afterwards, with no client: drop it, or shut it down. Any
    /// other server keeps accepting until it is shut down or dropped, so
    /// for it `closed` never returns.
    ///
    /// ```no_run
    /// use switchboard::{Connector, Router, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// // In a child spawned by a parent that is the client:
    /// let router = Router::new().route("add", |(a, b): (i64, i64)| async move { a + b });
    /// let server = Server::bind(&Connector::from_env()?, router).await?;
    /// server.closed().await; // the parent hung up
    /// # Ok(()) }
    /// ```
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }
}

/// Serves one channel's connection, once `link` is ready, through the
/// same admission as any accepted one.
async fn serve_one(link: std::io::Result<Link>, peer: &str, shared: Weak<Shared>) {
    let link = match link {
        Ok(link) => link,
        Err(e) => {
            tracing::warn!("an inherited channel failed before {peer} spoke: {e}");
            return;
        }
    };
    let Some(shared) = shared.upgrade() else {
        return;
    };
    if let Some((number, connection, client_id)) = admission::admit_inherited(link, &shared).await {
        admission::serve(&shared, number, connection, client_id).await;
    }
}

impl ServerBuilder {
    /// The server of a child whose parent is the client: it takes over the
    /// inherited end `number` (the checks of the connect side: a wrong
    /// number, a closed end, not a socket, already used, not inherited)
    /// and serves it, listening nowhere.
    pub(super) fn serve_inherited(self, connector: &Connector, number: u64) -> Result<Server> {
        if self.name.is_some() {
            return Err(Error::InvalidArgument {
                what: "service name",
                reason: "a server on an inherited channel cannot be published under a \
                         name: nothing could connect to it by that name"
                    .into(),
            });
        }
        let end = serve_inherited(number).map_err(|source| Error::Bind {
            address: connector.address().to_string(),
            source,
        })?;
        let server = self.start(connector.clone(), None, None);
        // Weak: a parent that never speaks must not keep a dropped server's
        // state alive.
        let shared = Arc::downgrade(&server.shared);
        tokio::spawn(async move {
            serve_one(end.first_bytes().await, "the parent", Weak::clone(&shared)).await;
            if let Some(shared) = shared.upgrade() {
                shared.done.send_replace(true);
            }
        });
        Ok(server)
    }

    /// Starts the server without listening anywhere: it serves only the
    /// channels it makes with [`Server::child_channel`], so it creates no
    /// socket file, directory or pipe name, and a parent killed with
    /// SIGKILL leaves nothing behind.
    ///
    /// `settings` gives the secret, body format and frame limit of those
    /// channels; its address is not used. The server's
    /// [`Server::connector`] is then only the template of its channels'
    /// connectors: it reaches nothing itself (connecting with it fails,
    /// saying that it names no inherited descriptor). Cannot be combined
    /// with [`ServerBuilder::name`].
    ///
    /// ```no_run
    /// use switchboard::{CommandExt, Connector, Router, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let server = Server::builder(Router::new()).channels_only(&Connector::local()).await?;
    /// let channel = server.child_channel()?;
    /// let child = std::process::Command::new("worker")
    ///     .connector_env(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// # Ok(()) }
    /// ```
    pub async fn channels_only(self, settings: &Connector) -> Result<Server> {
        if self.name.is_some() {
            return Err(Error::InvalidArgument {
                what: "service name",
                reason: "a server that serves only inherited channels cannot be published \
                         under a name: nothing could connect to it by that name"
                    .into(),
            });
        }
        // Descriptor 0 is never a channel: connecting with it is refused.
        let template = settings.at(Address::Inherited {
            number: 0,
            serve: false,
        });
        Ok(self.start(template, None, None))
    }
}
