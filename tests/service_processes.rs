//! Typed services across real processes: the `rpc_calculator` example, the
//! CLI and Python calling it, and a parent asking its serving child to shut
//! down.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use switchboard::{Address, Connector, Shutdown};

mod support;

use support::calculator::CalculatorClient;

#[test]
fn the_rpc_calculator_example_calls_every_method_in_a_child() {
    let stdout = support::run_to_success(&mut Command::new(support::example("rpc_calculator")));
    assert!(
        stdout.contains("child: add, div, log, whoami, logged and count all answered as expected"),
        "{stdout}"
    );
    assert!(
        stdout.contains("blocking child: the same calls, answered the same"),
        "{stdout}"
    );
    assert!(stdout.contains("2 line(s) logged"), "{stdout}");
}

/// `rpc_calculator serve`, with its connector.
struct Serving {
    child: Child,
    connector: String,
}

impl Serving {
    fn start() -> Serving {
        Serving::start_with(Stdio::piped())
    }

    fn start_with(stdin: Stdio) -> Serving {
        let mut child = Command::new(support::example("rpc_calculator"))
            .arg("serve")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Serving {
            child,
            connector: line.trim().to_owned(),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(connector) = Connector::load_state(&self.connector)
            && let Address::Unix(path) = connector.address()
        {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}

#[test]
fn the_cli_calls_a_typed_service() {
    let serving = Serving::start();
    let cli = |args: &[&str]| {
        Command::new(support::built(&["switchboard"]))
            .arg("call")
            .arg(&serving.connector)
            .args(args)
            .output()
            .unwrap()
    };
    let add = cli(&["Calculator.add", r#"{"a":1,"b":2}"#]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&add.stdout).trim(), "3");

    let div = cli(&["Calculator.div", r#"{"a":1,"b":0}"#]);
    assert!(!div.status.success());
    assert!(String::from_utf8_lossy(&div.stderr).contains("DivideByZero"));

    // A stream method prints one JSON line per item.
    let count = cli(&["Calculator.count", r#"{"to":3}"#]);
    assert!(
        count.status.success(),
        "{}",
        String::from_utf8_lossy(&count.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&count.stdout), "1\n2\n3\n");

    // And the service describes itself to tools that were not built with it.
    let described = cli(&["switchboard.describe"]);
    let described: Value = serde_json::from_slice(&described.stdout).unwrap();
    let methods = &described["services"][0]["methods"];
    assert_eq!(described["services"][0]["name"], "Calculator");
    assert!(
        methods
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["route"] == "Calculator.count" && m["kind"] == "stream"),
        "{described}"
    );
}

#[cfg_attr(windows, ignore = "needs a Windows python3; under Wine there is none")]
#[test]
fn python_calls_a_typed_service() {
    let serving = Serving::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python_client.py");
    let output = Command::new("python3")
        .args([
            script,
            &serving.connector,
            "Calculator.add",
            r#"{"a": 40, "b": 2}"#,
        ])
        .output()
        .expect("python3 is on every machine this project runs on");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer, json!(42));
}

#[tokio::test]
async fn a_parent_asks_its_serving_child_to_shut_down() {
    let mut serving = Serving::start();
    let connector = Connector::load_state(&serving.connector).unwrap();
    let calc = CalculatorClient::connect(&connector).await.unwrap();
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    Shutdown::request(&calc.peer()).await.unwrap();
    // The child's stdin is still open: it exits because it was asked.
    let status = tokio::task::spawn_blocking(move || {
        let status = serving.child.wait().unwrap();
        (status, serving)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_serving_child_whose_stdin_is_not_a_pipe_keeps_serving() {
    // /dev/null ends at once: that must not stop the service.
    let mut serving = Serving::start_with(Stdio::null());
    let connector = Connector::load_state(&serving.connector).unwrap();
    let calc = CalculatorClient::connect(&connector).await.unwrap();
    for n in 0..20 {
        assert_eq!(calc.add(n, 1).await.unwrap(), n + 1);
    }
    Shutdown::request(&calc.peer()).await.unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = serving.child.wait().unwrap();
        (status, serving)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_serving_child_stops_when_its_stdin_closes() {
    let mut serving = Serving::start();
    drop(serving.child.stdin.take());
    let status = tokio::task::spawn_blocking(move || {
        let status = serving.child.wait().unwrap();
        (status, serving)
    })
    .await
    .unwrap()
    .0;
    assert!(status.success(), "{status}");
}
