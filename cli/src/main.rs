//! The `switchboard` command-line tool: call, notify, inspect and serve
//! switchboard endpoints from a shell.
//!
//! A thin binary over the library's public API: nothing here reaches into
//! switchboard's internals. Exit codes: 0 success, 1 the remote handler
//! returned an error, 2 bad input (arguments, parameters, a malformed or
//! missing connector), 3 could not connect or authenticate, 4 timeout.

use std::process::ExitCode;

use clap::Parser;

mod args;
mod call;
mod colour;
mod completions;
mod connect;
mod describe;
mod echo_server;
mod endpoint;
mod exit;
mod inspect;
mod names;
mod ping;
mod serve;
mod stop;

use args::{Cli, Command};
use endpoint::{read_connector, read_endpoint};
use exit::Failure;

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
        .with_ansi(colour::on_stderr())
        .init();
    if let Command::Completions { shell } = cli.command {
        completions::print(shell);
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
            echo_server::echo_server(tcp, connector, amqp.zip(address), name).await
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
        } => call::call(target, params, timeout, connect).await,
        Command::Throw {
            target,
            params,
            connect,
        } => call::throw(target, params, connect).await,
        Command::Inspect { connector, json } => inspect::inspect(&connector, json),
        Command::Completions { .. } => unreachable!("handled before the runtime starts"),
    }
}
