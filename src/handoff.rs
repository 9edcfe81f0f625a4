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

#[cfg(windows)]
mod channel_child;
#[cfg(windows)]
mod spawn_windows;

#[cfg(windows)]
pub use channel_child::{AsyncChannelChild, ChannelChild};

use crate::connector::{ChildChannel, Connector, STATE_PREFIX};
use crate::error::{Error, Result};

/// The environment variable [`CommandExt::connector_env`] sets and
/// [`Connector::from_env`] reads.
pub const ENV_VAR: &str = "SWITCHBOARD_CONNECTOR";

/// Puts a connector into a child's command line or environment, and
/// spawns a child with an inherited channel. Implemented for
/// `std::process::Command` and `tokio::process::Command`.
pub trait CommandExt {
    /// What [`spawn_with_channel`](CommandExt::spawn_with_channel)
    /// returns: on Unix `std::process::Child` or `tokio::process::Child`;
    /// on Windows `switchboard::ChannelChild` or
    /// `switchboard::AsyncChannelChild` (Windows-only types), since it
    /// spawns through its own `CreateProcessW` there and std's `Child`
    /// cannot be made from a process handle.
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
    /// later (for a later spawn) after it. Everything else about the
    /// `Command` applies as with its own `spawn`.
    ///
    /// On Windows the child is created by `CreateProcessW` with a
    /// `PROC_THREAD_ATTRIBUTE_HANDLE_LIST` (std's `Command` cannot pass
    /// one on stable Rust): it inherits the channel's end and copies of
    /// this process's standard input, output and error, and no other
    /// handle, whether inheritable or not. From the `Command` it uses what
    /// std lets it read back:
    ///
    /// - the program: a path (with a directory or drive) as it is, a bare
    ///   name looked up in the directories of `PATH` (the one the command
    ///   sets for the child, else this process's); `.exe` is added to a
    ///   name without an extension. Batch files (`.bat`, `.cmd`) are
    ///   refused with an error.
    /// - the arguments, quoted by the Microsoft C runtime's rules as std
    ///   quotes them (`argv[0]` is the program as given);
    /// - the environment: this process's, with the command's `env` and
    ///   `env_remove` changes (names compared without case);
    /// - the current directory.
    ///
    /// What std gives no way to read back is not applied, and cannot be
    /// detected: `stdin`/`stdout`/`stderr` (the child's streams are
    /// always this process's; to capture its output, have it send it over
    /// the channel), `env_clear` (use `env_remove`), `creation_flags`,
    /// `show_window` and `raw_arg` (such an argument is quoted like any
    /// other). tokio's `kill_on_drop` is honoured.
    ///
    /// The end is inheritable only for the `CreateProcessW` call, and the
    /// list keeps it from any other child spawned that way; but a process
    /// another thread spawns without a list in that instant (std's
    /// `Command::spawn` does) inherits every inheritable handle, this one
    /// included. It would still need the connector's secret to be served.
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child>;
}

impl CommandExt for std::process::Command {
    #[cfg(unix)]
    type Child = std::process::Child;
    #[cfg(windows)]
    type Child = ChannelChild;

    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
    }

    #[cfg(unix)]
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        let inheritance = channel.inheritance()?;
        // SAFETY: the hook only makes system calls (see `Inheritance::hook`),
        // which is what may run between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(self, inheritance.hook());
        }
        let child = self.spawn();
        drop(inheritance);
        child
    }

    #[cfg(windows)]
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        spawn_windows::spawn(self, channel)
    }
}

impl CommandExt for tokio::process::Command {
    #[cfg(unix)]
    type Child = tokio::process::Child;
    #[cfg(windows)]
    type Child = AsyncChannelChild;

    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
    }

    #[cfg(unix)]
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        let inheritance = channel.inheritance()?;
        // SAFETY: as for std's Command.
        unsafe {
            self.pre_exec(inheritance.hook());
        }
        let child = self.spawn();
        drop(inheritance);
        child
    }

    #[cfg(windows)]
    fn spawn_with_channel(&mut self, channel: ChildChannel) -> io::Result<Self::Child> {
        let child = spawn_windows::spawn(self.as_std(), channel)?;
        Ok(AsyncChannelChild::new(child, self.get_kill_on_drop()))
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
