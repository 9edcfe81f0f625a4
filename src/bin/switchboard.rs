//! The `switchboard` command-line tool: a thin layer over the public API.
//!
//! Exit codes: 0 success, 1 the remote handler returned an error, 2 bad
//! arguments or a malformed connector, 3 connection/handshake/auth failure,
//! 4 timeout.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use switchboard::{Address, Client, Connector, Error, HandlerError, Router, Server};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Call, serve and inspect switchboard endpoints"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the routes echo, sleep and fail; print the connector string first.
    ///
    /// Serves until killed or until standard input closes.
    EchoServer {
        /// Listen on TCP HOST:PORT instead of a private local socket.
        #[arg(long, value_name = "HOST:PORT", conflicts_with = "amqp")]
        tcp: Option<String>,
        /// Serve through the RabbitMQ broker at this URL
        /// (amqp://user:password@host:port/vhost); needs --address.
        #[arg(long, value_name = "URL", requires = "address")]
        amqp: Option<String>,
        /// The service name on the broker (with --amqp).
        #[arg(long, value_name = "NAME", requires = "amqp")]
        address: Option<String>,
    },
    /// Send a request and print the response as JSON.
    Call {
        /// The connector string (sb1:...).
        connector: String,
        /// The route to call.
        route: String,
        /// Parameters as JSON (default: null).
        params: Option<String>,
        /// Give up after this many milliseconds (exit code 4).
        #[arg(long, value_name = "MS")]
        timeout: Option<u64>,
        /// How long to keep trying to reach the server (exit code 3).
        #[arg(long, value_name = "MS", default_value_t = 3000)]
        connect_timeout: u64,
    },
    /// Send a notification (no response).
    Throw {
        /// The connector string (sb1:...).
        connector: String,
        /// The route to notify.
        route: String,
        /// Parameters as JSON (default: null).
        params: Option<String>,
        /// How long to keep trying to reach the server (exit code 3).
        #[arg(long, value_name = "MS", default_value_t = 3000)]
        connect_timeout: u64,
    },
    /// Show what a connector string holds; the secret is never shown.
    Inspect {
        /// The connector string (sb1:...).
        connector: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// A failure with the exit code it maps to.
struct Failure {
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
            | Error::Unsupported(_) => 2,
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

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
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
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::EchoServer { tcp, amqp, address } => echo_server(tcp, amqp.zip(address)).await,
        Command::Call {
            connector,
            route,
            params,
            timeout,
            connect_timeout,
        } => {
            let connector = Connector::load_state(&connector)?;
            let params = parse_params(params)?;
            let client = connect(&connector, connect_timeout).await?;
            let response: Value = match timeout {
                Some(ms) => {
                    client
                        .request_timeout(&route, &params, Duration::from_millis(ms))
                        .await?
                }
                None => client.request(&route, &params).await?,
            };
            println!("{response}");
            client.close().await;
            Ok(())
        }
        Command::Throw {
            connector,
            route,
            params,
            connect_timeout,
        } => {
            let connector = Connector::load_state(&connector)?;
            let params = parse_params(params)?;
            let client = connect(&connector, connect_timeout).await?;
            client.throw(&route, &params).await?;
            client.close().await;
            Ok(())
        }
        Command::Inspect { connector, json } => {
            let connector = Connector::load_state(&connector)?;
            inspect(&connector, json);
            Ok(())
        }
    }
}

async fn connect(connector: &Connector, timeout_ms: u64) -> Result<Client, Failure> {
    Ok(Client::builder(connector)
        .connect_timeout(Duration::from_millis(timeout_ms))
        .connect()
        .await?)
}

fn parse_params(params: Option<String>) -> Result<Value, Failure> {
    match params {
        None => Ok(Value::Null),
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| usage(format!("PARAMS_JSON is not valid JSON: {e}"))),
    }
}

async fn echo_server(tcp: Option<String>, amqp: Option<(String, String)>) -> Result<(), Failure> {
    let connector = match tcp {
        None => match amqp {
            Some((url, service)) => Connector::amqp(url, service)?,
            None => Connector::local(),
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
        });
    let server = Server::bind(&connector, router).await?;
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", server.connector().dump_state());
        let _ = stdout.flush();
    }
    server.run_until(stdin_closed()).await;
    Ok(())
}

/// Completes when standard input reaches end of file (the parent is gone
/// or closed the pipe).
async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

fn inspect(connector: &Connector, as_json: bool) {
    let (kind, address) = match connector.address() {
        Address::Unix(path) => ("unix", path.display().to_string()),
        Address::Pipe(name) => ("pipe", format!(r"\\.\pipe\{name}")),
        Address::Tcp { host, port } if host.contains(':') => ("tcp", format!("[{host}]:{port}")),
        Address::Tcp { host, port } => ("tcp", format!("{host}:{port}")),
        // The URL shows with its password redacted.
        Address::Amqp { url, service } => ("amqp", format!("{service} at {url}")),
        other => ("other", other.to_string()),
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
