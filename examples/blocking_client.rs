//! A program with no async runtime calling a switchboard service: connect
//! with the connector string given as the argument, call `echo` with
//! `"hello"`, print the answer.
//!
//! ```sh
//! switchboard echo-server > connector.txt &
//! cargo run --example blocking_client -- "$(head -1 connector.txt)"
//! ```
//!
//! (Without an argument it reads `SWITCHBOARD_CONNECTOR`, as a child
//! started with `CommandExt::connector_env` would.)

use std::process::ExitCode;

use switchboard::Connector;
use switchboard::blocking::Client;

fn main() -> ExitCode {
    match run() {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("blocking_client: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> switchboard::Result<String> {
    let client = Client::connect(&Connector::from_args_or_env()?)?;
    let answer: String = client.request("echo", "hello")?;
    client.close();
    Ok(answer)
}
