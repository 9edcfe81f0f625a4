//! The `switchboard` command-line tool: call, notify, inspect and serve
//! switchboard endpoints from a shell.
//!
//! A thin binary over the library's public API: nothing here reaches into
//! switchboard's internals. Exit codes: 0 success, 1 the remote handler
//! returned an error, 2 bad input (arguments, parameters, a malformed or
//! missing connector), 3 could not connect or authenticate, 4 timeout.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};
use switchboard::registry::Lookup;
use switchboard::{Address, Client, ClientBuilder, Connector, Error, HandlerError, Router, Server};

mod describe;
mod names;
mod ping;
mod serve;

/// How long `echo-server` and `serve` let running handlers finish once
/// told to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The exit codes of `call`, and of the tool as a whole.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  the remote handler returned an error (its message goes to stderr)
  2  bad input: arguments, PARAMS that are not JSON, a malformed or missing connector
  3  could not connect or authenticate (or, for echo-server, could not listen)
  4  no response within --timeout"
    };
}

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

const ECHO_SERVER_HELP: &str = "\
When it stops:
  - on SIGTERM, SIGINT (Ctrl-C) or SIGHUP (on Windows: Ctrl-C);
  - when standard input reaches its end, but only if standard input is a pipe
    (or a socket): a parent that holds the pipe's other end stops the server by
    closing it, or by dying. A terminal, /dev/null or a file as standard input
    is not watched, so `switchboard echo-server > file &` keeps serving.
Either way it lets running requests finish (at most 2 s), removes its socket,
the socket's private directory and its registry entry (with --name), and exits 0.

Routes:
  echo   answers with its parameters
  sleep  waits the given number of milliseconds, answers with it
  fail   fails with its parameters (a string) as the error message
  count  answers with a stream: the numbers 1 to its parameter, one item each

Examples:
  switchboard echo-server > connector.txt &
  switchboard echo-server --name echo &          # then: switchboard call @echo echo 1
  switchboard echo-server --tcp 127.0.0.1:0 > connector.txt &
  coproc SERVER { switchboard echo-server; }    # bash: stops when the shell closes the pipe
  switchboard echo-server --amqp amqp://guest:guest@127.0.0.1:5672/%2f --address jobs > jobs.txt &
  SB_JOBS=$(head -1 jobs.txt) switchboard echo-server --connector env:SB_JOBS &
                                                # a second instance of jobs, same secret:
                                                # the broker spreads jobs.txt's clients over both

Exit codes:
  0  stopped by a signal or the end of its stdin pipe
  2  bad input: --tcp is not HOST:PORT, --name is not a valid name, the registry is not private
  3  could not listen (address in use, no permission), or --name is taken by a live server";

const CALL_HELP: &str = concat!(
    "\
Examples:
  switchboard call sb1:eyJr... echo '{\"a\": 1}'      prints {\"a\":1}
  switchboard call @life-gen add '[1, 2]' 
  switchboard call - sleep 5000 --timeout 100 < connector.txt
  switchboard call env:SWITCHBOARD_CONNECTOR fail '\"disk full\"'
  switchboard call @calc Calculator.count '{\"to\": 3}'     prints 1, 2 and 3, one per line

The answer is printed as one line of JSON. A route that answers with a
stream prints one line per item as it arrives; an error after some items
exits with its code after printing them. --timeout then bounds the wait
for each item.

",
    exit_codes!()
);

const THROW_HELP: &str = "\
Examples:
  switchboard throw sb1:eyJr... echo '\"hi\"'
  switchboard throw env:SWITCHBOARD_CONNECTOR log '{\"line\": \"started\"}'

Exit codes:
  0  the notification was sent (nothing comes back, not even an error)
  1  (not used: a notification has no answer)
  2  bad input: arguments, PARAMS that are not JSON, a malformed or missing connector
  3  could not connect or authenticate
  4  (not used: a notification has no timeout)";

const INSPECT_HELP: &str = "\
Examples:
  switchboard inspect sb1:eyJr...
  switchboard inspect @echo
  switchboard inspect - --json < connector.txt

Exit codes:
  0  success
  2  bad input: a malformed or missing connector
  3  @NAME: no service registered or listed under that name
  (1 and 4 are not used: inspect never connects)";

const COMPLETIONS_HELP: &str = "\
Examples:
  switchboard completions bash > ~/.local/share/bash-completion/completions/switchboard
  switchboard completions zsh > ~/.zfunc/_switchboard
  switchboard completions fish > ~/.config/fish/completions/switchboard.fish
  switchboard completions powershell >> $PROFILE

Exit codes:
  0  success
  2  bad input: an unknown shell";

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Call, notify, inspect and serve switchboard endpoints",
    after_help = TOP_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the routes echo, sleep and fail; print the connector string first.
    ///
    /// The connector string is the first line of standard output.
    #[command(after_help = ECHO_SERVER_HELP)]
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
    #[command(after_help = CALL_HELP)]
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
    #[command(after_help = THROW_HELP)]
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
    #[command(after_help = INSPECT_HELP)]
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
    #[command(after_help = COMPLETIONS_HELP)]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// The server and route a request or notification goes to.
#[derive(clap::Args)]
struct Target {
    /// The connector: sb1:..., - (first line of stdin), env:VAR or @NAME.
    #[arg(value_name = "CONNECTOR", long_help = CONNECTOR_HELP)]
    connector: String,
    /// The route to call.
    route: String,
}

#[derive(clap::Args, Clone, Copy)]
struct ConnectArgs {
    /// How long to keep trying to reach the server, in milliseconds (exit
    /// code 3 when it is not reached in time).
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    connect_timeout: u64,
}

/// A failure with the exit code it maps to.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let code = match &error {
            Error::NoSuchRoute { .. }
            | Error::BadRequest { .. }
            | Error::HandlerFailed { .. }
            | Error::ShuttingDown => 1,
            Error::InvalidConnector(_)
            | Error::InvalidArgument { .. }
            | Error::MissingConnector { .. }
            | Error::Encode(_)
            | Error::Unsupported(_)
            | Error::Registry { .. }
            | Error::ServicesFile { .. } => 2,
            Error::Timeout(_) => 4,
            _ => 3,
        };
        let message = match &error {
            // A remote error's message is the handler's own text.
            Error::HandlerFailed { message, .. } | Error::BadRequest { message } => message.clone(),
            other => other.to_string(),
        };
        Failure { code, message }
    }
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The library logs through `tracing` and prints nothing itself: what a
    // server refused, and why, shows here (RUST_LOG=debug for more).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "switchboard",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("switchboard: cannot start the runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let result = runtime.block_on(run(cli.command));
    // A handler still running after a timeout must not hold the exit up.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("switchboard: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::EchoServer {
            tcp,
            connector,
            amqp,
            address,
            name,
        } => {
            let connector = connector.as_deref().map(read_connector).transpose()?;
            echo_server(tcp, connector, amqp.zip(address), name).await
        }
        Command::Ls { json } => names::ls(json).await,
        Command::Ping {
            connector,
            options,
            connect,
        } => ping::ping(&read_endpoint(&connector)?, &options, connect).await,
        Command::Describe {
            connector,
            json,
            connect,
        } => describe::describe(&read_endpoint(&connector)?, json, connect).await,
        Command::Serve { config, connector } => {
            let connector = connector.as_deref().map(read_connector).transpose()?;
            serve::serve(&config, connector).await
        }
        Command::Call {
            target,
            params,
            timeout,
            connect,
        } => {
            let endpoint = read_endpoint(&target.connector)?;
            let params = parse_params(params)?;
            let client = connect.connect(&endpoint).await?;
            // Read as a stream: a plain answer is a stream of one, so one
            // way prints both, each item as soon as it arrives.
            let limit = timeout.map(Duration::from_millis);
            let mut items = client
                .request_stream::<_, Value>(&target.route, &params)
                .await?;
            loop {
                let next = match limit {
                    Some(limit) => tokio::time::timeout(limit, items.next())
                        .await
                        .map_err(|_| Error::Timeout(limit))?,
                    None => items.next().await,
                };
                let Some(item) = next else { break };
                println!("{}", item?);
            }
            client.close().await;
            Ok(())
        }
        Command::Throw {
            target,
            params,
            connect,
        } => {
            let endpoint = read_endpoint(&target.connector)?;
            let params = parse_params(params)?;
            let client = connect.connect(&endpoint).await?;
            client.throw(&target.route, &params).await?;
            client.close().await;
            Ok(())
        }
        Command::Inspect { connector, json } => {
            let connector = match read_endpoint(&connector)? {
                Endpoint::Connector(connector) => connector,
                Endpoint::Name(name) => Lookup::default().resolve(&name)?,
            };
            inspect(&connector, json);
            Ok(())
        }
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
    }
}

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
fn read_endpoint(argument: &str) -> Result<Endpoint, Failure> {
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
fn read_connector(argument: &str) -> Result<Connector, Failure> {
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

impl ConnectArgs {
    pub(crate) fn builder(&self, endpoint: &Endpoint) -> ClientBuilder {
        let builder = match endpoint {
            Endpoint::Connector(connector) => Client::builder(connector),
            Endpoint::Name(name) => Client::builder_named(name),
        };
        builder.connect_timeout(Duration::from_millis(self.connect_timeout))
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
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

pub(crate) fn parse_params(params: Option<String>) -> Result<Value, Failure> {
    match params {
        None => Ok(Value::Null),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| usage(format!("PARAMS is not valid JSON: {e}")))
        }
    }
}

async fn echo_server(
    tcp: Option<String>,
    given: Option<Connector>,
    amqp: Option<(String, String)>,
    name: Option<String>,
) -> Result<(), Failure> {
    let connector = match tcp {
        None => match (given, amqp) {
            (Some(given), _) => given,
            (None, Some((url, service))) => Connector::amqp(url, service)?,
            (None, None) => Connector::local(),
        },
        Some(spec) => {
            let (host, port) = spec
                .rsplit_once(':')
                .ok_or_else(|| usage(format!("--tcp expects HOST:PORT, got {spec:?}")))?;
            let port = port
                .parse()
                .map_err(|_| usage(format!("--tcp: {port:?} is not a port number")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Connector::tcp(host, port)?
        }
    };
    let router = Router::new()
        .route("echo", |params: Value| async move {
            Ok::<_, HandlerError>(params)
        })
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
        .route("fail", |params: Value| async move {
            let message = match params {
                Value::String(text) => text,
                other => other.to_string(),
            };
            Err::<Value, _>(HandlerError::new(message))
        })
        .route("count", |to: u64| async move {
            switchboard::Stream::iter(1..=to)
        });
    // Listen for signals before the connector is printed: whoever reads it
    // may signal at once.
    let stop = stop_requested();
    let builder = match name {
        Some(name) => Server::builder(router).name(name),
        None => Server::builder(router),
    };
    let server = builder.bind(&connector).await?;
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", server.connector().dump_state());
        let _ = stdout.flush();
    }
    stop.await;
    // Dropping the server (inside shutdown) removes the socket and its directory.
    server.shutdown_timeout(SHUTDOWN_GRACE).await;
    Ok(())
}

/// Completes when echo-server should stop: a termination signal, or the end
/// of standard input when standard input is a pipe (see `ECHO_SERVER_HELP`).
///
/// On Unix the signal handlers are installed when this is called, not when
/// the future is first polled, so a signal sent as soon as the connector is
/// printed is not lost.
pub(crate) fn stop_requested() -> impl Future<Output = ()> {
    let signals = signals();
    let stdin = stdin_is_pipe().then(stdin_closed);
    async move {
        match stdin {
            Some(stdin) => tokio::select! {
                () = signals => {}
                () = stdin => {}
            },
            None => signals.await,
        }
    }
}

#[cfg(unix)]
pub(crate) fn signals() -> impl Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    // A signal that cannot be watched (never on Linux) simply never fires.
    async fn received(signal: std::io::Result<Signal>) {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    let terminate = received(signal(SignalKind::terminate()));
    let interrupt = received(signal(SignalKind::interrupt()));
    let hangup = received(signal(SignalKind::hangup()));
    async move {
        tokio::select! {
            () = terminate => {}
            () = interrupt => {}
            () = hangup => {}
        }
    }
}

#[cfg(windows)]
pub(crate) async fn signals() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn signals() -> impl Future<Output = ()> {
    std::future::pending()
}

/// True when standard input is a pipe (or a socket): then its end means the
/// parent closed it or died, and echo-server stops.
#[cfg(unix)]
fn stdin_is_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(metadata) => {
            let kind = metadata.file_type();
            kind.is_fifo() || kind.is_socket()
        }
        Err(_) => false,
    }
}

/// True when standard input is a pipe: then its end means the parent closed
/// it or died, and echo-server stops.
#[cfg(windows)]
fn stdin_is_pipe() -> bool {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_PIPE, GetFileType};
    let handle = std::io::stdin().as_raw_handle();
    if handle.is_null() {
        return false;
    }
    // SAFETY: GetFileType only inspects the handle; an invalid one yields
    // FILE_TYPE_UNKNOWN.
    unsafe { GetFileType(handle) == FILE_TYPE_PIPE }
}

#[cfg(not(any(unix, windows)))]
fn stdin_is_pipe() -> bool {
    false
}

/// Completes when standard input reaches end of file (the parent is gone
/// or closed the pipe). Reads on a plain thread: a read blocked on stdin
/// must not keep the runtime from shutting down.
fn stdin_closed() -> impl Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}

fn inspect(connector: &Connector, as_json: bool) {
    let (kind, address) = match connector.address() {
        Address::Unix(path) => ("unix", path.display().to_string()),
        Address::Pipe(name) => ("pipe", format!(r"\\.\pipe\{name}")),
        Address::Tcp { host, port } if host.contains(':') => ("tcp", format!("[{host}]:{port}")),
        Address::Tcp { host, port } => ("tcp", format!("{host}:{port}")),
        // The URL shows with its password redacted.
        Address::Amqp { url, service } => ("amqp", format!("{service} at {url}")),
        other => (other.kind(), other.to_string()),
    };
    let secret = connector.secret().map(|_| "<redacted>");
    if as_json {
        let object = json!({
            "kind": kind,
            "address": address,
            "secret": secret,
            "serializer": connector.format().name(),
            "max_frame": connector.max_frame(),
            "version": switchboard::connector::STATE_VERSION,
        });
        println!("{object}");
    } else {
        println!("kind:       {kind}");
        println!("address:    {address}");
        println!(
            "secret:     {}",
            secret.unwrap_or("none (no authentication)")
        );
        println!("serializer: {}", connector.format().name());
        println!("max frame:  {} bytes", connector.max_frame());
        println!("version:    {}", switchboard::connector::STATE_VERSION);
    }
}
