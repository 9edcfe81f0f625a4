//! Inherited channels the other way round, between real processes: the
//! parent is the client (`Client::child_channel`) and the child serves on
//! the end it inherited (`Server::bind(&Connector::from_env()?, ..)`).
//! Requests go both ways (typed and plain, async and blocking); the child
//! takes the end over once and refuses the wrong calls; a child killed
//! with SIGKILL is a disconnection to its parent; a parent that goes away
//! ends the child's server.
//!
//! Children are this test executable run again with `SB_TEST_CHILD` set,
//! which makes `child_process_entry` act as the child. Everything here
//! runs on Windows too (a pipe pair whose client end the serving child
//! holds).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use switchboard::{ChildChannel, Client, CommandExt, Connector, Context, Error, Router, Server};
use tempfile::NamedTempFile;

const CHILD_ROLE: &str = "SB_TEST_CHILD";
const OUTPUT: &str = "SB_TEST_OUTPUT";
const LONG: Duration = Duration::from_secs(30);

#[switchboard::service]
trait Adder {
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Asks the caller (the parent) who it is, through the same channel.
    async fn ask_parent(&self, ctx: Context) -> String;
}

struct Adding;

impl Adder for Adding {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn ask_parent(&self, ctx: Context) -> String {
        match ctx.peer().request::<_, String>("name", &()).await {
            Ok(name) => format!("the parent is {name}"),
            Err(e) => format!("the parent did not answer: {e}"),
        }
    }
}

/// This test binary again, as a child process in `role`, writing what it
/// has to say to `output` (a file, not stdout: on Windows the child's
/// standard streams are the parent's whatever the `Command` says).
fn child(role: &str, output: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(OUTPUT, output)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// In a child: one line to the parent's output file.
fn say(line: &str) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(std::env::var(OUTPUT).unwrap())
        .unwrap();
    writeln!(file, "{line}").unwrap();
}

/// Not a test: the body of the child processes. Without `SB_TEST_CHILD`
/// it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    if role == "quit" {
        return;
    }
    let connector = Connector::from_args_or_env().unwrap();
    if role == "blocking" {
        let router = Router::new().service(AdderServer::new(Adding));
        let server = switchboard::blocking::Server::bind(&connector, router).unwrap();
        server.closed();
        say("served until the parent hung up");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        // Before the server has the end: a client refuses the connector,
        // saying what to call instead.
        match Client::connect(&connector).await {
            Ok(_) => say("as a client: connected"),
            Err(e) => say(&format!("as a client: {e}")),
        }
        let router = Router::new().service(AdderServer::new(Adding));
        let server = Server::bind(&connector, router).await.unwrap();
        // After: a second server refuses it.
        match Server::bind(&connector, Router::new()).await {
            Ok(_) => say("a second server: bound"),
            Err(e) => say(&format!("a second server: {e}")),
        }
        let server = std::sync::Arc::new(server);
        // The server may call its one client, the parent, too.
        let calling = std::sync::Arc::clone(&server);
        tokio::spawn(async move {
            calling.wait_for_clients(1).await;
            let id = calling.clients().remove(0);
            match calling.request::<_, String>(&id, "name", &()).await {
                Ok(name) => say(&format!("the server called its client {id}: {name}")),
                Err(e) => say(&format!("the server could not call its client {id}: {e}")),
            }
        });
        if tokio::time::timeout(LONG, server.closed()).await.is_ok() {
            say("served until the parent hung up");
        } else {
            say("still serving after 30 s");
        }
    });
}

type Child = <Command as CommandExt>::Child;

/// A child in `role` with `channel`, and the file it writes to.
fn spawn_serving(role: &str, channel: ChildChannel) -> (Child, NamedTempFile) {
    let output = NamedTempFile::new().unwrap();
    let child = child(role, output.path())
        .connector_env(channel.connector())
        .spawn_with_channel(channel)
        .unwrap();
    (child, output)
}

fn parent_router() -> Router<()> {
    Router::new().route("name", || async { "the test".to_owned() })
}

/// Whether the child exited successfully, and what it wrote.
async fn output((mut child, output): (Child, NamedTempFile)) -> (bool, String) {
    let status = tokio::time::timeout(LONG, tokio::task::spawn_blocking(move || child.wait()))
        .await
        .expect("the child exited within 30 s")
        .unwrap()
        .unwrap();
    (
        status.success(),
        std::fs::read_to_string(output.path()).unwrap(),
    )
}

#[tokio::test]
async fn a_child_serves_its_parent_through_its_inherited_end() {
    let (channel, pending) = Client::builder(&Connector::local())
        .id("the-parent")
        .router(parent_router())
        .child_channel()
        .unwrap();
    let serve = channel.connector().clone();
    assert!(
        matches!(
            serve.address(),
            switchboard::Address::Inherited { serve: true, .. }
        ),
        "{serve:?}"
    );
    let worker = spawn_serving("serve", channel);
    let client = pending.connect().await.unwrap();
    assert_eq!(client.id(), "the-parent");

    // Typed and plain requests, parent to child.
    let adder = AdderClient::new(client.clone());
    assert_eq!(adder.add(2, 40).await.unwrap(), 42);
    let sum: i64 = client
        .request("Adder.add", &json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // Child to parent, inside a request and on its own.
    assert_eq!(adder.ask_parent().await.unwrap(), "the parent is the test");

    // The parent hangs up: the child's server is done, and it exits.
    client.close().await;
    let (success, stdout) = output(worker).await;
    assert!(success, "{stdout}");
    // The child's connector, used as a client's, was refused, saying what
    // to call instead; and it served once.
    assert!(
        stdout.contains("as a client: invalid connector: ")
            && stdout.contains("for this process to serve on")
            && stdout.contains("Server::bind(&connector, router)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("a second server: ") && stdout.contains("was already used"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the server called its client the-parent: the test"),
        "{stdout}"
    );
    assert!(
        stdout.contains("served until the parent hung up"),
        "{stdout}"
    );
}

#[test]
fn a_blocking_parent_calls_a_blocking_child() {
    let (channel, pending) =
        switchboard::blocking::Client::child_channel(&Connector::local()).unwrap();
    let output = NamedTempFile::new().unwrap();
    let mut worker = child("blocking", output.path())
        .connector_arg(channel.connector())
        .spawn_with_channel(channel)
        .unwrap();
    let client = pending.connect().unwrap();
    let sum: i64 = client
        .request("Adder.add", &json!({"a": 20, "b": 22}))
        .unwrap();
    assert_eq!(sum, 42);
    let adder = AdderBlockingClient::new(client.clone());
    assert_eq!(adder.add(1, 1).unwrap(), 2);
    client.close();
    let status = worker.wait().unwrap();
    let said = std::fs::read_to_string(output.path()).unwrap();
    assert!(status.success(), "{said}");
    assert!(said.contains("served until the parent hung up"), "{said}");
}

#[tokio::test]
async fn a_child_killed_with_sigkill_is_a_disconnection_to_its_parent() {
    let (channel, pending) = Client::builder(&Connector::local())
        .router(parent_router())
        .child_channel()
        .unwrap();
    let (mut worker, _output) = spawn_serving("serve", channel);
    let client = pending.connect().await.unwrap();
    let sum: i64 = client
        .request("Adder.add", &json!({"a": 1, "b": 1}))
        .await
        .unwrap();
    assert_eq!(sum, 2);
    worker.kill().unwrap();
    worker.wait().unwrap();
    tokio::time::timeout(LONG, client.closed())
        .await
        .expect("the parent noticed within 30 s");
    let error = client
        .request::<_, i64>("Adder.add", &json!({"a": 1, "b": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::Disconnected | Error::Closed),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_parent_that_never_connects_ends_its_childs_server() {
    let (channel, pending) = Client::child_channel(&Connector::local()).unwrap();
    let worker = spawn_serving("serve", channel);
    // The parent's end closes without a word: the child's server sees its
    // one connection end before it began.
    drop(pending);
    let (success, stdout) = output(worker).await;
    assert!(success, "{stdout}");
    assert!(
        stdout.contains("served until the parent hung up"),
        "{stdout}"
    );
    assert!(!stdout.contains("called its client"), "{stdout}");
}

#[tokio::test]
async fn a_child_that_exits_before_serving_fails_the_parents_connect() {
    let (channel, pending) = Client::child_channel(&Connector::local()).unwrap();
    // A child that inherits the end and never serves on it.
    let (mut quitter, _output) = spawn_serving("quit", channel);
    let error = tokio::time::timeout(LONG, pending.connect())
        .await
        .expect("the connect failed within 30 s, not at its deadline")
        .unwrap_err();
    quitter.wait().unwrap();
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("the child closed its end of the channel before serving it"),
        "{error}"
    );
}

#[tokio::test]
async fn the_parent_can_neither_serve_nor_connect_with_its_childs_end() {
    let (channel, _pending) = Client::child_channel(&Connector::local()).unwrap();
    // A client is told to serve it instead.
    let error = Client::connect(channel.connector()).await.unwrap_err();
    assert!(matches!(error, Error::InvalidArgument { .. }), "{error:?}");
    assert!(error.to_string().contains("Server::bind"), "{error}");
    // The parent's own server may not take its child's end.
    let error = Server::bind(channel.connector(), Router::new())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("own copy of an end it holds for a child"),
        "{error}"
    );
    // A channel for a child that connects cannot be served: the message
    // says which call makes one that can.
    let server = Server::builder(Router::new())
        .channels_only(&Connector::local())
        .await
        .unwrap();
    let connecting = server.child_channel().unwrap();
    let error = Server::bind(connecting.connector(), Router::new())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument { .. }), "{error:?}");
    assert!(
        error.to_string().contains("Client::child_channel"),
        "{error}"
    );
}
