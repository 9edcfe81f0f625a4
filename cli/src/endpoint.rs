//! Reading a CONNECTOR argument: a connector string, `-` (standard input),
//! `env:VAR`, or `@NAME` looked up in the registry when connecting.

use std::io::BufRead;

use switchboard::{Connector, Error};

use crate::exit::{Failure, usage};

/// Where a CONNECTOR argument points: a connector, or a name looked up when
/// connecting (and again on every reconnect).
pub(crate) enum Endpoint {
    Connector(Connector),
    Name(String),
}

impl Endpoint {
    /// How to show it in a line of output: `@NAME`, or the address.
    pub(crate) fn label(&self) -> String {
        match self {
            Endpoint::Connector(connector) => connector.address().to_string(),
            Endpoint::Name(name) => format!("@{name}"),
        }
    }
}

/// Reads a CONNECTOR argument: `@NAME`, or a connector (see
/// `read_connector`).
pub(crate) fn read_endpoint(argument: &str) -> Result<Endpoint, Failure> {
    match argument.strip_prefix('@') {
        Some("") => Err(usage(
            "CONNECTOR \"@\" names no service: write @NAME (see `switchboard ls`)",
        )),
        Some(name) => Ok(Endpoint::Name(name.to_owned())),
        None => read_connector(argument).map(Endpoint::Connector),
    }
}

/// Resolves a CONNECTOR argument: the string itself, `-` (the first line of
/// standard input) or `env:VAR`.
pub(crate) fn read_connector(argument: &str) -> Result<Connector, Failure> {
    let (text, from) = if argument == "-" {
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => {
                return Err(usage(
                    "CONNECTOR is \"-\" but standard input is empty: pipe the connector \
                     string in, e.g. `switchboard call - echo < connector.txt`",
                ));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(usage(format!(
                    "CONNECTOR is \"-\" but standard input could not be read: {e}"
                )));
            }
        }
        if line.trim().is_empty() {
            return Err(usage(
                "CONNECTOR is \"-\" but the first line of standard input is empty",
            ));
        }
        (line, " (from standard input)".to_owned())
    } else if let Some(name) = argument.strip_prefix("env:") {
        if name.is_empty() {
            return Err(usage(
                "CONNECTOR \"env:\" names no variable: write env:VAR, \
                 e.g. env:SWITCHBOARD_CONNECTOR",
            ));
        }
        match std::env::var(name) {
            Ok(value) if value.trim().is_empty() => {
                return Err(usage(format!("the environment variable {name} is empty")));
            }
            Ok(value) => (value, format!(" (from the environment variable {name})")),
            Err(std::env::VarError::NotPresent) => {
                return Err(usage(format!(
                    "the environment variable {name} is not set (CONNECTOR was env:{name})"
                )));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(usage(format!(
                    "the environment variable {name} is not valid text, so it holds no connector"
                )));
            }
        }
    } else {
        (argument.to_owned(), String::new())
    };
    Connector::load_state(&text).map_err(|error| match error {
        Error::InvalidConnector(reason) => {
            usage(format!("invalid connector string{from}: {reason}"))
        }
        other => Failure::from(other),
    })
}
