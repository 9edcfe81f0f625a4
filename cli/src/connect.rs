//! Connecting to the server a CONNECTOR argument points at, with failures
//! that say how long was tried and what to do next.

use std::time::Duration;

use switchboard::{Client, ClientBuilder, Error, Format};

use crate::endpoint::Endpoint;
use crate::exit::Failure;

#[derive(clap::Args, Clone, Copy)]
pub(crate) struct ConnectArgs {
    /// How long to keep trying to reach the server, in milliseconds (exit
    /// code 3 when it is not reached in time).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    pub(crate) connect_timeout: u64,
}

impl ConnectArgs {
    pub(crate) fn builder(&self, endpoint: &Endpoint) -> ClientBuilder {
        let builder = match endpoint {
            Endpoint::Connector(connector) => Client::builder(connector),
            Endpoint::Name(name) => Client::builder_named(name),
        };
        // JSON, whatever the connector prefers: the CLI reads and prints
        // JSON, and a byte string would come back as an array either way.
        builder
            .connect_timeout(Duration::from_millis(self.connect_timeout))
            .format(Format::Json)
    }

    pub(crate) async fn connect(&self, endpoint: &Endpoint) -> Result<Client, Failure> {
        self.connect_with(self.builder(endpoint)).await
    }

    pub(crate) async fn connect_with(&self, builder: ClientBuilder) -> Result<Client, Failure> {
        let waited = Duration::from_millis(self.connect_timeout);
        builder.connect().await.map_err(|error| match error {
            Error::Connect {
                address, source, ..
            } => Failure {
                code: 3,
                message: format!(
                    "could not connect to {address}: nothing answered in {} of trying \
                         ({source}); is the server running? --connect-timeout MS waits longer",
                    human(waited)
                ),
            },
            Error::NameNotFound { name, looked_in } => Failure {
                code: 3,
                message: format!(
                    "no service named {name:?} appeared in {} of waiting (looked in \
                         {looked_in}); is it running? `switchboard ls` lists the registered ones",
                    human(waited)
                ),
            },
            other => other.into(),
        })
    }
}

/// `200 ms`, `2 s`, `2.5 s`.
pub(crate) fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}
