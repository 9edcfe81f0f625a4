//! Handing a connector from a parent process to its children: through an
//! environment variable or a command-line argument.
//!
//! ```no_run
//! use switchboard::{CommandExt, Connector};
//!
//! let connector = Connector::local();
//! // Parent: pass it in the environment (or with `connector_arg`).
//! let mut child = std::process::Command::new("worker");
//! child.connector_env(&connector);
//! // Child: read it back.
//! let connector = Connector::from_env()?;
//! # Ok::<(), switchboard::Error>(())
//! ```

use std::io;

use crate::connector::{ChildChannel, Connector, STATE_PREFIX};
use crate::error::{Error, Result};

/// The environment variable [`CommandExt::connector_env`] sets and
/// [`Connector::from_env`] reads.
pub const ENV_VAR: &str = "SWITCHBOARD_CONNECTOR";

/// Puts a connector into a child's command line or environment, and
/// spawns a child with an inherited channel. Implemented for
/// `std::process::Command` and `tokio::process::Command`.
pub trait CommandExt {
    /// What spawning returns: `std::process::Child` or
    /// `tokio::process::Child`.
    type Child;

    /// Sets [`ENV_VAR`] to the connector's dumped state.
    fn connector_env(&mut self, connector: &Connector) -> &mut Self;
    /// Appends the connector's dumped state as one argument.
    fn connector_arg(&mut self, connector: &Connector) -> &mut Self;

    /// Spawns the child with `channel`'s end as the one descriptor (Unix)
    /// or handle (Windows) it inherits, then closes this process's copy
    /// of that end. Put [`ChildChannel::connector`] in the child's
    /// environment or arguments first; the child connects with it as with
    /// any connector.
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
    /// // In the worker: Client::connect(&Connector::from_env()?).await?
    /// # child.wait().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// On Unix the child's descriptors from 3 up are all made
    /// close-on-exec except the channel's (as Python's `close_fds` does),
    /// so descriptors that a library opened without close-on-exec do not
    /// reach it either; its standard streams are untouched. A `pre_exec`
    /// hook of your own added before this call runs first, and one added
    /// later (for a later spawn) after it. On Windows the handle is made
    /// inheritable for the duration of the spawn only; see
    /// [`ChildChannel`] for what that means there.
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child>;
}

impl CommandExt for std::process::Command {
    type Child = std::process::Child;

    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
    }

    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        let inheritance = channel.inheritance()?;
        #[cfg(unix)]
        // SAFETY: the hook only makes system calls (see `Inheritance::hook`),
        // which is what may run between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(self, inheritance.hook());
        }
        let child = self.spawn();
        drop(inheritance);
        child
    }
}

impl CommandExt for tokio::process::Command {
    type Child = tokio::process::Child;

    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
    }

    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        let inheritance = channel.inheritance()?;
        #[cfg(unix)]
        // SAFETY: as for std's Command.
        unsafe {
            self.pre_exec(inheritance.hook());
        }
        let child = self.spawn();
        drop(inheritance);
        child
    }
}

impl Connector {
    /// Reads the connector a parent put in [`ENV_VAR`].
    pub fn from_env() -> Result<Connector> {
        match std::env::var(ENV_VAR) {
            Ok(text) => Connector::load_state(&text),
            Err(std::env::VarError::NotPresent) => Err(Error::MissingConnector {
                looked_in: "the environment variable SWITCHBOARD_CONNECTOR",
            }),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::InvalidArgument {
                what: "environment variable SWITCHBOARD_CONNECTOR",
                reason: "it is not valid Unicode".into(),
            }),
        }
    }

    /// Reads the first command-line argument that looks like a connector
    /// (`sb<digits>:...`), so it can sit among the child's other arguments.
    pub fn from_args() -> Result<Connector> {
        std::env::args()
            .skip(1)
            .find(|arg| looks_like_connector(arg))
            .map(|arg| Connector::load_state(&arg))
            .unwrap_or(Err(Error::MissingConnector {
                looked_in: "the command-line arguments",
            }))
    }

    /// [`Connector::from_args`], else [`Connector::from_env`].
    pub fn from_args_or_env() -> Result<Connector> {
        match Connector::from_args() {
            Err(Error::MissingConnector { .. }) => {
                Connector::from_env().map_err(|e| match e {
                    Error::MissingConnector { .. } => Error::MissingConnector {
                        looked_in: "the command-line arguments or the environment variable SWITCHBOARD_CONNECTOR",
                    },
                    other => other,
                })
            }
            other => other,
        }
    }
}

fn looks_like_connector(arg: &str) -> bool {
    arg.strip_prefix(STATE_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(version, _)| {
            !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit())
        })
}
