//! Inherited channels on the client's side: a parent that is the client
//! of a child it spawns makes the connected pair, hands one end to the
//! child, whose server serves it, and connects through the other (see
//! `connector/inherited.rs`; the child's side is `server/channel.rs`).

use std::time::Duration;

use super::dial::{Dialer, Target};
use super::{Client, ClientBuilder, checked_id};
use crate::connector::{ChildChannel, Connector, ParentEnd, channel_pair};
use crate::error::{Error, Result};

impl Client {
    /// A channel for one child that serves, with this process as its
    /// client: [`ClientBuilder::child_channel`] with the default settings
    /// (random id, no routes of its own). `settings` gives the secret,
    /// body format and frame limit; its address is not used.
    ///
    /// ```no_run
    /// use switchboard::{Client, CommandExt, Connector};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// let (channel, pending) = Client::child_channel(&Connector::local())?;
    /// let mut child = tokio::process::Command::new("worker")
    ///     .connector_env(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// // In the worker: Server::bind(&Connector::from_env()?, router).await?
    /// let client = pending.connect().await?;
    /// let sum: i64 = client.request("add", &(1, 2)).await?;
    /// # child.wait().await?;
    /// # Ok(()) }
    /// ```
    pub fn child_channel(settings: &Connector) -> Result<(ChildChannel, PendingClient)> {
        Client::builder(settings).child_channel()
    }
}

impl ClientBuilder {
    /// A channel for one child that serves, with this process as its
    /// client: a new connected pair (a Unix socketpair, a Windows pipe
    /// pair), whose one end the child inherits and serves with
    /// `Server::bind(&Connector::from_env()?, router)`, listening nowhere
    /// and touching no file, and whose other end this client connects
    /// through. Spawn the child with
    /// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)
    /// after putting [`ChildChannel::connector`] in its environment or
    /// arguments, then [`PendingClient::connect`].
    ///
    /// The builder's connector gives the secret, body format and frame
    /// limit (its address is not used); its id, router, config, format and
    /// timeouts apply as usual. The handshake and mutual authentication
    /// are those of every connection. The connection is made once: the
    /// client does not reconnect, whatever [`ClientBuilder::reconnect`]
    /// says, and the child's connector is refused if used again. Must be
    /// called within a tokio runtime on Windows (the parent's end is
    /// registered with it); connect on that same runtime.
    ///
    /// ```no_run
    /// use switchboard::{Client, CommandExt, Connector, Router};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> switchboard::Result<()> {
    /// // The child may call this parent back.
    /// let router = Router::new().route("progress", |percent: u8| async move { eprintln!("{percent} %") });
    /// let (channel, pending) = Client::builder(&Connector::local()).router(router).child_channel()?;
    /// let child = std::process::Command::new("worker")
    ///     .connector_arg(channel.connector())
    ///     .spawn_with_channel(channel)?;
    /// let client = pending.connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn child_channel(self) -> Result<(ChildChannel, PendingClient)> {
        let Target::Connector(settings) = &self.target else {
            return Err(Error::InvalidArgument {
                what: "client builder",
                reason: "a channel for a child takes its secret and settings from a \
                         connector: make the builder with Client::builder(&connector), \
                         not Client::builder_named"
                    .into(),
            });
        };
        let settings = match self.format {
            Some(format) => settings.clone().with_format(format),
            None => settings.clone(),
        };
        let (channel, end) = channel_pair(&settings, true).map_err(|source| Error::Bind {
            address: "a new inherited channel".into(),
            source,
        })?;
        let dialer = Dialer {
            id: checked_id(self.id)?,
            target: Target::Connector(channel.connector().clone()),
            router: self.router,
            config: self.config,
            format: self.format,
        };
        // The child has as long to start serving as a server that is not
        // up yet has to start listening, then the handshake's own time.
        let limit = self
            .connect_timeout
            .saturating_add(dialer.config.handshake_timeout);
        let pending = PendingClient {
            end,
            connector: channel.connector().clone(),
            dialer,
            token: self.token,
            limit,
        };
        Ok((channel, pending))
    }
}

/// The client of a child that will serve on a channel: what
/// [`Client::child_channel`] returns beside the [`ChildChannel`]. Spawn
/// the child first, then [`PendingClient::connect`].
pub struct PendingClient {
    end: ParentEnd,
    /// The channel's connector, with the settings of the handshake.
    connector: Connector,
    /// Never dials: an inherited channel connects once.
    dialer: Dialer,
    token: Option<Vec<u8>>,
    limit: Duration,
}

impl std::fmt::Debug for PendingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingClient")
            .field("id", &self.dialer.id)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl PendingClient {
    /// Connects to the child's server through this process's end of the
    /// channel: the client's half of the handshake, with the usual mutual
    /// authentication. The child has the builder's
    /// [`connect_timeout`](ClientBuilder::connect_timeout) (10 s by
    /// default) plus the handshake timeout to start serving and answer;
    /// if it exits first, or its end was never handed to a child, this
    /// fails. Afterwards the child's exit (even by SIGKILL) is seen as a
    /// disconnection, as with any server.
    ///
    /// ```no_run
    /// # async fn demo(pending: switchboard::PendingClient) -> switchboard::Result<()> {
    /// let client = pending.connect().await?;
    /// let answer: String = client.request("echo", "hi").await?;
    /// client.closed().await; // the child exited
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<Client> {
        let link = self.end.link().await.map_err(|source| Error::Connect {
            address: self.connector.address().to_string(),
            source,
        })?;
        let started = self
            .dialer
            .start(link, &self.connector, self.token.as_deref(), self.limit)
            .await;
        let (connection, resumption) = started.map_err(|e| match e {
            // The child's end closed (with our hello unread, if it never
            // read it): the child exited, or never served.
            Error::Disconnected | Error::Io(_) => Error::Connect {
                address: self.connector.address().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    format!(
                        "the child closed its end of the channel before serving it \
                         ({e}): did it exit, or not serve it with Server::bind?"
                    ),
                ),
            },
            other => other,
        })?;
        Ok(Client::start(self.dialer, connection, resumption, None))
    }
}
