//! Channels for children: a server makes a connected pair, serves one end
//! like any accepted connection, and hands the other to one child it
//! spawns (see `connector/inherited.rs`).

use std::sync::Arc;

use super::{Server, ServerBuilder, admission};
use crate::connector::{Address, ChildChannel, Connector, channel_pair};
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
            channel_pair(&self.shared.connector).map_err(|source| Error::Bind {
                address: "a new inherited channel".into(),
                source,
            })?;
        // Weak: a channel whose child never writes must not keep a dropped
        // server's state alive.
        let shared = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let link = match parent.first_bytes().await {
                Ok(link) => link,
                Err(e) => {
                    tracing::warn!("an inherited channel failed before its child spoke: {e}");
                    return;
                }
            };
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Some((number, connection, client_id)) =
                admission::admit_inherited(link, &shared).await
            {
                admission::serve(&shared, number, connection, client_id).await;
            }
        });
        Ok(channel)
    }
}

impl ServerBuilder {
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
        let template = settings.at(Address::Inherited { number: 0 });
        Ok(self.start(template, None, None))
    }
}
