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

use crate::connector::{Connector, STATE_PREFIX};
use crate::error::{Error, Result};

/// The environment variable [`CommandExt::connector_env`] sets and
/// [`Connector::from_env`] reads.
pub const ENV_VAR: &str = "SWITCHBOARD_CONNECTOR";

/// Puts a connector into a child's command line or environment. Implemented
/// for `std::process::Command` and `tokio::process::Command`.
pub trait CommandExt {
    /// Sets [`ENV_VAR`] to the connector's dumped state.
    fn connector_env(&mut self, connector: &Connector) -> &mut Self;
    /// Appends the connector's dumped state as one argument.
    fn connector_arg(&mut self, connector: &Connector) -> &mut Self;
}

impl CommandExt for std::process::Command {
    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
    }
}

impl CommandExt for tokio::process::Command {
    fn connector_env(&mut self, connector: &Connector) -> &mut Self {
        self.env(ENV_VAR, connector.dump_state())
    }

    fn connector_arg(&mut self, connector: &Connector) -> &mut Self {
        self.arg(connector.dump_state())
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
