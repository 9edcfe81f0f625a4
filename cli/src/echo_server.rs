//! `switchboard echo-server`: a server with a few test routes (echo,
//! sleep, fail, count) that prints its connector string and serves until
//! told to stop.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;
use switchboard::{Connector, HandlerError, Router, Server};

use crate::exit::{Failure, usage};
use crate::stop::{SHUTDOWN_GRACE, stop_requested};

pub(crate) const ECHO_SERVER_HELP: &str = "\
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

pub(crate) async fn echo_server(
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
