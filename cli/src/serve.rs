//! `switchboard serve CONFIG.toml`: a server whose routes run commands,
//! registered under a name, so a script becomes a service.
//!
//! A command is an argv list, run directly (never through a shell), in
//! the config file's directory. The request's params arrive as one line of
//! JSON on its standard input; its standard output is the answer (as JSON
//! if it parses, else as a string); a non-zero exit is an error whose
//! message is its standard error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use switchboard::{Connector, Context, HandlerError, Router, Server};
use tokio::io::AsyncWriteExt;

use crate::exit::{Failure, usage};
use crate::stop::SHUTDOWN_GRACE;

pub(crate) const SERVE_HELP: &str = "\
CONFIG.toml names the service and its routes:

  name = \"tools\"                 # registered as @tools (required)
  tcp = \"127.0.0.1:0\"            # optional: listen on TCP instead of a private local socket
  max_running = 16               # optional: commands running at once, all routes (default 16);
                                 # further requests wait their turn

  [routes.upper]
  command = [\"tr\", \"a-z\", \"A-Z\"]
  [routes.disk-usage]            # or [[routes]] entries, each with a name = \"...\"
  command = [\"du\", \"-s\", \"/var/log\"]
  timeout_ms = 5000              # optional: killed after this long (default 30000)

What a command receives, and how it answers:
  - argv is exactly the list in `command`, run directly: no shell, so nothing in
    the request can add arguments, expand wildcards or run other commands.
    The request never reaches argv at all.
  - standard input: the request's params as one line of JSON (then end of file).
  - environment: this server's, plus SWITCHBOARD_ROUTE (the route name) and
    SWITCHBOARD_CLIENT_ID (the caller's client id).
  - working directory: the directory of CONFIG.toml.
  - answer: its standard output, as JSON if it parses, else as a string (one
    trailing newline removed). Exit status 0 is success; any other status, a
    signal or --timeout is an error whose message is its standard error.
Treat the params like any untrusted input: a command that passes them on to a
shell (sh -c, eval) undoes the protection above.

It stops like echo-server: on SIGTERM, SIGINT or SIGHUP, or when its stdin pipe
ends; then it removes its registry entry. The first line of standard output is
@NAME once it is registered.

Examples:
  switchboard serve tools.toml &
  switchboard call @tools upper '\"hello\"'          prints \"HELLO\"
  switchboard describe @tools

Exit codes:
  0  stopped by a signal or the end of its stdin pipe
  2  bad input: CONFIG.toml missing or invalid (the message says where)
  3  could not listen, or the name is taken by a live server";

/// The default time a command may run.
const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The default of `max_running`: commands running at once, all routes
/// together. Each is a process: without a cap, whoever holds the connector
/// could start hundreds (256 requests in flight per connection).
const DEFAULT_MAX_RUNNING: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    name: String,
    tcp: Option<String>,
    max_running: Option<usize>,
    /// `[routes.NAME]` tables, or `[[routes]]` entries with a `name`.
    #[serde(default)]
    routes: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamedRoute {
    name: String,
    command: Vec<String>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    command: Vec<String>,
    timeout_ms: Option<u64>,
}

/// One route's command, ready to run.
struct Command {
    route: String,
    argv: Vec<String>,
    dir: PathBuf,
    timeout: Duration,
}

/// Serves the routes of the configuration at `path`, on `given` if the
/// command line named a connector.
pub(crate) async fn serve(path: &Path, given: Option<Connector>) -> Result<(), Failure> {
    let (config, routes, dir) = load(path)?;
    let connector = match (&config.tcp, given) {
        (_, Some(given)) => given,
        (None, None) => Connector::local(),
        (Some(spec), None) => {
            let (host, port) = spec.rsplit_once(':').ok_or_else(|| {
                usage(format!(
                    "{}: tcp = {spec:?} is not HOST:PORT",
                    path.display()
                ))
            })?;
            let port = port.parse().map_err(|_| {
                usage(format!(
                    "{}: tcp = {spec:?}: {port:?} is not a port",
                    path.display()
                ))
            })?;
            Connector::tcp(host.trim_start_matches('[').trim_end_matches(']'), port)?
        }
    };
    let running = Arc::new(tokio::sync::Semaphore::new(
        config.max_running.unwrap_or(DEFAULT_MAX_RUNNING).max(1),
    ));
    let mut router = Router::new();
    for (route, spec) in routes {
        let command = Arc::new(Command {
            route: route.clone(),
            argv: spec.command,
            dir: dir.clone(),
            timeout: Duration::from_millis(spec.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        });
        let running = Arc::clone(&running);
        router = router.route_concurrent(&route, move |ctx: Context, params: Value| {
            let (command, running) = (Arc::clone(&command), Arc::clone(&running));
            async move {
                // Waits its turn; a request cancelled meanwhile starts nothing.
                let _turn = running
                    .acquire()
                    .await
                    .map_err(|_| HandlerError::new("the server is stopping"))?;
                command.run(ctx.client_id(), &params).await
            }
        });
    }
    let stop = crate::stop::stop_requested();
    let server = Server::builder(router)
        .name(config.name.clone())
        .bind(&connector)
        .await?;
    println!("@{}", config.name);
    stop.await;
    server.shutdown_timeout(SHUTDOWN_GRACE).await;
    Ok(())
}

type Routes = BTreeMap<String, RouteConfig>;

fn load(path: &Path) -> Result<(Config, Routes, PathBuf), Failure> {
    let bad = |reason: String| usage(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    let mut config: Config = toml::from_str(&text)
        .map_err(|e| bad(format!("not valid: {}", e.to_string().trim_end())))?;
    let routes = routes(config.routes.take()).map_err(bad)?;
    if routes.is_empty() {
        return Err(bad(
            "no [routes.NAME] with a command: nothing to serve".into()
        ));
    }
    for (route, spec) in &routes {
        if route.is_empty() || route.len() > 1024 {
            return Err(bad(format!(
                "route name {route:?} must be 1 to 1024 bytes long"
            )));
        }
        if spec
            .command
            .first()
            .is_none_or(|program| program.is_empty())
        {
            return Err(bad(format!(
                "[routes.{route}] command is empty: give the program and its arguments, \
                 e.g. command = [\"wc\", \"-c\"]"
            )));
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((config, routes, dir))
}

/// The routes in either form: `[routes.NAME]` tables or `[[routes]]`
/// entries with a `name`.
fn routes(value: Option<toml::Value>) -> Result<Routes, String> {
    let invalid = |e: toml::de::Error| format!("[routes]: {}", e.message().trim_end());
    match value {
        None => Ok(Routes::new()),
        Some(table @ toml::Value::Table(_)) => table.try_into().map_err(invalid),
        Some(toml::Value::Array(entries)) => {
            let mut routes = Routes::new();
            for entry in entries {
                let entry: NamedRoute = entry.try_into().map_err(invalid)?;
                let spec = RouteConfig {
                    command: entry.command,
                    timeout_ms: entry.timeout_ms,
                };
                if routes.insert(entry.name.clone(), spec).is_some() {
                    return Err(format!("route {:?} is defined twice", entry.name));
                }
            }
            Ok(routes)
        }
        Some(_) => {
            Err("routes must be [routes.NAME] tables or [[routes]] entries with a name".into())
        }
    }
}

impl Command {
    async fn run(&self, client_id: &str, params: &Value) -> Result<Value, HandlerError> {
        let program = &self.argv[0];
        let mut child = tokio::process::Command::new(program)
            .args(&self.argv[1..])
            .current_dir(&self.dir)
            .env("SWITCHBOARD_ROUTE", &self.route)
            .env("SWITCHBOARD_CLIENT_ID", client_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A cancelled request or a timeout must not leave it running.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| HandlerError::new(format!("could not start {program:?}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            let mut line = params.to_string();
            line.push('\n');
            // Written alongside the reading of its output: a command that
            // writes before it reads would otherwise wait on a full pipe
            // forever. One that never reads closes the pipe; its business.
            tokio::spawn(async move {
                let _ = stdin.write_all(line.as_bytes()).await;
            });
        }
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                HandlerError::new(format!(
                    "{program:?} did not finish within {} and was killed",
                    crate::connect::human(self.timeout)
                ))
            })?
            .map_err(|e| HandlerError::new(format!("{program:?} could not be waited for: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stderr = stderr.trim();
            let status = output.status;
            return Err(HandlerError::new(if stderr.is_empty() {
                format!("{program:?} failed ({status})")
            } else {
                stderr.to_owned()
            }));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let text = stdout
            .strip_suffix('\n')
            .map(|text| text.strip_suffix('\r').unwrap_or(text))
            .unwrap_or(&stdout);
        Ok(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    }
}
