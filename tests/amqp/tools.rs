//! The other ways in, over the broker: the parent/child example, the CLI,
//! typed services, the blocking client.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use switchboard::{Client, Connector, Router, Server};

use crate::broker;
use crate::common::*;

pub fn the_parent_child_demo_runs_over_the_broker() {
    // target/<profile>/deps/amqp-<hash> -> target/<profile>/examples/parent_child
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("parent_child{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.exists(),
        "{} not built: run `cargo test --features amqp` (which builds the examples)",
        example.display()
    );
    let output = Command::new(example)
        .args(["--amqp", &broker::url()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("serving at amqp:parent-child-"), "{stdout}");
    assert!(
        stdout.contains("24 of 24 items came back correct"),
        "{stdout}"
    );
    assert!(stdout.contains("2 via argv, 2 via environment"), "{stdout}");
}

/// The `switchboard` binary of the CLI package (`cli/`), built by
/// `cargo test` at the workspace root: target/<profile>/switchboard.
fn cli() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} not built: run `cargo test --all-features` at the workspace root",
        binary.display()
    );
    binary
}

pub async fn the_cli_serves_and_calls_over_the_broker() {
    let service = format!("test-cli-{}", std::process::id());
    let mut server = Killed(
        Command::new(cli())
            .args([
                "echo-server",
                "--amqp",
                &broker::url(),
                "--address",
                &service,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let connector = line.trim().to_owned();
    assert!(connector.starts_with("sb1:"), "{line:?}");
    let loaded = Connector::load_state(&connector).unwrap();
    assert_eq!(service_of(&loaded), service);
    let call = |args: &[&str]| {
        let output = Command::new(cli()).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let (code, out, err) = call(&["call", &connector, "echo", r#"{"a": 1}"#]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, r#"{"a":1}"#);
    let (code, _, err) = call(&["call", &connector, "fail", r#""no""#]);
    assert_eq!(code, Some(1));
    assert!(err.ends_with("no"), "{err}");
    let (code, _, _) = call(&["call", &connector, "sleep", "5000", "--timeout", "200"]);
    assert_eq!(code, Some(4));
    let (code, _, err) = call(&["throw", &connector, "echo", "1"]);
    assert_eq!(code, Some(0), "{err}");
}

pub fn cli_inspect_redacts_the_broker_password() {
    let password = "pw-Inspect-never-shown";
    let connector = Connector::amqp(
        format!("amqp://app:{password}@broker.example:5672/%2f"),
        "jobs",
    )
    .unwrap();
    for json in [false, true] {
        let mut command = Command::new(cli());
        command.args(["inspect", &connector.dump_state()]);
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains(password), "{text}");
        assert!(text.contains("amqp"), "{text}");
        assert!(
            text.contains("jobs at amqp://app:<redacted>@broker.example:5672/%2f"),
            "{text}"
        );
    }
}

#[switchboard::service]
pub trait Adder {
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn count(&self, to: u32) -> switchboard::Stream<u32>;
}

struct AdderImpl;

impl Adder for AdderImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn count(&self, to: u32) -> switchboard::Stream<u32> {
        switchboard::Stream::iter(1..=to)
    }
}

pub async fn typed_services_work_over_the_broker() {
    let connector = connector("typed");
    let server = Server::bind(
        &connector,
        Router::new().service(AdderServer::new(AdderImpl)),
    )
    .await
    .unwrap();
    let adder = AdderClient::new(Client::connect(&connector).await.unwrap());
    assert_eq!(adder.add(40, 2).await.unwrap(), 42);
    let counted = adder.count(4).await.unwrap().collect().await.unwrap();
    assert_eq!(counted, [1, 2, 3, 4]);
    server.shutdown().await;
}

pub fn the_blocking_client_works_over_the_broker() {
    let connector = connector("blocking");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(Server::bind(&connector, router("a")))
        .unwrap();
    // A plain thread with no runtime of its own, as in a program without
    // async.
    let answer = std::thread::spawn(move || {
        let client = switchboard::blocking::Client::connect(&connector).unwrap();
        client
            .request::<_, Value>("echo", &json!({"n": 1}))
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(answer, json!({"n": 1}));
    runtime.block_on(server.shutdown());
}
