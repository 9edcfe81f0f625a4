//! `switchboard echo-server --connector CONN` joins an existing broker
//! service as another instance with the same secret, so one connector's
//! clients are shared by both, against the real RabbitMQ on
//! 127.0.0.1:5672. Without a broker the test says so by name and passes
//! (fails with `SWITCHBOARD_REQUIRE_BROKER` set, like tests/support/broker.rs,
//! which this crate cannot include: it needs libtest-mimic).
#![cfg(all(feature = "amqp", not(windows)))]

use std::time::Duration;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

/// An echo-server process, killed when dropped (nothing of it stays on the
/// broker or in the temp directory).
struct EchoServer(Child);

impl EchoServer {
    /// Starts `switchboard echo-server ARGS` with `env` set, and returns it
    /// with the connector it printed.
    fn start(args: &[&str], env: Option<(&str, &str)>) -> (EchoServer, String) {
        let mut command = Command::new(CLI);
        command
            .arg("echo-server")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        if let Some((key, value)) = env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("sb1:"), "echo-server printed {line:?}");
        (EchoServer(child), line.trim().to_owned())
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_second_echo_server_given_the_connector_shares_the_service() {
    let test = "a_second_echo_server_given_the_connector_shares_the_service";
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(5),
    )
    .is_ok();
    if !up {
        let required = std::env::var("SWITCHBOARD_REQUIRE_BROKER")
            .is_ok_and(|value| !value.is_empty() && value != "0");
        assert!(!required, "{test}: no broker at 127.0.0.1:5672");
        eprintln!("SKIPPED {test}: no broker at 127.0.0.1:5672");
        return;
    }
    let url = "amqp://guest:guest@127.0.0.1:5672/%2f";
    let service = format!("cli-instances-{}", std::process::id());
    let (_first, connector) = EchoServer::start(&["--amqp", url, "--address", &service], None);
    // Joins through env:VAR, and prints the same connector.
    let (_second, joined) = EchoServer::start(
        &["--connector", "env:SB_TEST_CONNECTOR"],
        Some(("SB_TEST_CONNECTOR", &connector)),
    );
    assert_eq!(joined, connector);
    // A third with a fresh secret under the same name must not disturb them.
    let (_stranger, _) = EchoServer::start(&["--amqp", url, "--address", &service], None);
    for i in 0..12 {
        let output = Command::new(CLI)
            .args(["call", &connector, "echo", &i.to_string()])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "call {i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            i.to_string()
        );
    }
}
