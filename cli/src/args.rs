//! The command line: the subcommands, their arguments and the help texts
//! shared between them (each subcommand's own help lives in its file).

use clap::{Parser, Subcommand};

use crate::connect::ConnectArgs;
use crate::exit::exit_codes;
use crate::{call, completions, describe, echo_server, inspect, names, ping, serve};

/// The connector argument's long help, shared by every subcommand that takes one.
const CONNECTOR_HELP: &str = "\
Where the server is, in one of four forms:
  sb1:...   the connector string itself, as echo-server or Connector::dump_state printed it
  -         read it from the first line of standard input
  env:VAR   read it from the environment variable VAR (e.g. env:SWITCHBOARD_CONNECTOR)
  @NAME     the service registered as NAME (see `switchboard ls`), or listed as NAME in
            the services file that SWITCHBOARD_SERVICES names (that file is consulted first)
All but the first keep the secret out of argv, where `ps` shows it to every user of the machine.";

const TOP_HELP: &str = concat!(
    "\
Examples:
  switchboard echo-server > connector.txt &
  switchboard call - echo '{\"a\": 1}' < connector.txt
  SWITCHBOARD_CONNECTOR=$(head -1 connector.txt) switchboard call env:SWITCHBOARD_CONNECTOR echo '\"hi\"'
  switchboard inspect - < connector.txt
  switchboard echo-server --name echo &
  switchboard ls
  switchboard call @echo echo '\"hi\"'
  switchboard ping @echo --count 3
  switchboard serve tools.toml &
  switchboard describe @tools
  switchboard completions bash > ~/.local/share/bash-completion/completions/switchboard

",
    exit_codes!()
);

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Call, notify, inspect and serve switchboard endpoints",
    after_help = TOP_HELP
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Serve the routes echo, sleep and fail; print the connector string first.
    ///
    /// The connector string is the first line of standard output.
    #[command(after_help = echo_server::ECHO_SERVER_HELP)]
    EchoServer {
        /// Listen on TCP HOST:PORT instead of a private local socket (port 0
        /// picks a free one).
        #[arg(long, value_name = "HOST:PORT", conflicts_with_all = ["amqp", "connector"])]
        tcp: Option<String>,
        /// Serve this connector (sb1:..., - for the first line of standard
        /// input, or env:VAR) instead of a fresh one: given the connector of
        /// a broker service, this joins it as another instance with the same
        /// secret, sharing its clients.
        #[arg(long, value_name = "CONN", conflicts_with = "amqp")]
        connector: Option<String>,
        /// Serve through the RabbitMQ broker at this URL
        /// (amqp://user:password@host:port/vhost); needs --address. The
        /// binary must be built with the `amqp` feature.
        #[arg(long, value_name = "URL", requires = "address")]
        amqp: Option<String>,
        /// The service name on the broker (with --amqp).
        #[arg(long, value_name = "NAME", requires = "amqp")]
        address: Option<String>,
        /// Register in this user's service registry under NAME, so that
        /// `@NAME` finds it (the connector string is still printed).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Send a request and print the response as one line of JSON.
    #[command(after_help = call::CALL_HELP)]
    Call {
        #[command(flatten)]
        target: Target,
        /// Parameters as JSON (default: null).
        params: Option<String>,
        /// Give up waiting for the response after this many milliseconds
        /// (exit code 4).
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Send a notification: no response, no error from the handler.
    #[command(after_help = call::THROW_HELP)]
    Throw {
        #[command(flatten)]
        target: Target,
        /// Parameters as JSON (default: null).
        params: Option<String>,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show what a connector holds (kind, address, serializer, version);
    /// never the secret.
    #[command(after_help = inspect::INSPECT_HELP)]
    Inspect {
        /// The connector: sb1:..., - (first line of stdin), env:VAR or @NAME.
        #[arg(value_name = "CONNECTOR", long_help = CONNECTOR_HELP)]
        connector: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the services registered by this user, and whether they answer.
    #[command(after_help = names::LS_HELP)]
    Ls {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure round trips to a server, one line each, and a summary.
    #[command(after_help = ping::PING_HELP)]
    Ping {
        /// The connector: sb1:..., -, env:VAR or @NAME.
        #[arg(value_name = "CONNECTOR", long_help = CONNECTOR_HELP)]
        connector: String,
        #[command(flatten)]
        options: ping::Options,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show the services and methods a server offers (its switchboard.describe route).
    #[command(after_help = describe::DESCRIBE_HELP)]
    Describe {
        /// The connector: sb1:..., -, env:VAR or @NAME.
        #[arg(value_name = "CONNECTOR", long_help = CONNECTOR_HELP)]
        connector: String,
        /// Print the description as the server sent it (JSON).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Serve routes that run commands, registered under a name from CONFIG.
    #[command(after_help = serve::SERVE_HELP)]
    Serve {
        /// The configuration file (TOML).
        #[arg(value_name = "CONFIG.toml")]
        config: std::path::PathBuf,
        /// Serve this connector (sb1:..., - for the first line of standard
        /// input, or env:VAR) instead of the configuration's: given the
        /// connector of a broker service, this joins it as another instance
        /// with the same secret.
        #[arg(long, value_name = "CONN")]
        connector: Option<String>,
    },
    /// Print a shell completion script to standard output.
    #[command(after_help = completions::COMPLETIONS_HELP)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The server and route a request or notification goes to.
#[derive(clap::Args)]
pub(crate) struct Target {
    /// The connector: sb1:..., - (first line of stdin), env:VAR or @NAME.
    #[arg(value_name = "CONNECTOR", long_help = CONNECTOR_HELP)]
    pub(crate) connector: String,
    /// The route to call.
    pub(crate) route: String,
}
