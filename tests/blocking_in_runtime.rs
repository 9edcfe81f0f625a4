//! The blocking API called where it must not be, inside a running async
//! runtime: it panics with a message that names the call and the way out
//! (not tokio's generic "Cannot start a runtime from within a runtime"),
//! and it works from the two places that message sends you to.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Command;

use switchboard::blocking::{Client, Server};
use switchboard::{Connector, Router};

fn server() -> Server {
    let router = Router::new().route("add", |(a, b): (i64, i64)| async move { a + b });
    Server::bind(&Connector::local(), router).unwrap()
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("the call should have panicked");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_names_call_and_fix(message: &str, call: &str) {
    assert!(
        message.contains(&format!(
            "`{call}` was called inside a running async runtime"
        )),
        "{message}"
    );
    assert!(message.contains("switchboard::Client"), "{message}");
    assert!(message.contains("tokio::task::spawn_blocking"), "{message}");
    assert!(!message.contains("Cannot start a runtime"), "{message}");
}

#[test]
fn a_blocking_call_in_a_block_on_names_the_call_and_the_fix() {
    let server = server();
    let connector = server.connector().clone();
    let client = Client::connect(&connector).unwrap();
    // What `#[tokio::main]` does with `main`'s body.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let message = panic_of(|| {
        runtime.block_on(async {
            let _ = client.request::<_, i64>("add", &(1, 2));
        })
    });
    assert_names_call_and_fix(&message, "blocking::Client::request");
    let message = panic_of(|| {
        runtime.block_on(async {
            let _ = Client::connect(&connector);
        })
    });
    assert_names_call_and_fix(&message, "blocking::Client::connect");
    let message = panic_of(|| {
        runtime.block_on(async {
            let _ = Server::bind(&Connector::local(), Router::new());
        })
    });
    assert_names_call_and_fix(&message, "blocking::Server::bind");
    // Where the first check cannot see it (tokio's budget turned off),
    // tokio's own refusal is turned into the same message.
    let message = panic_of(|| {
        runtime.block_on(tokio::task::unconstrained(async {
            let _ = client.request::<_, i64>("add", &(1, 2));
        }))
    });
    assert_names_call_and_fix(&message, "blocking::Client::request");

    // Nothing was left half done: the same client still works outside.
    assert_eq!(client.request::<_, i64>("add", &(2, 3)).unwrap(), 5);
}

#[test]
fn a_blocking_call_in_a_task_names_the_call_and_the_fix() {
    let server = server();
    let client = Client::connect(server.connector()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(async move { tokio::spawn(async move { client.throw("add", &(1, 2)) }).await });
    let panic = outcome
        .expect_err("the task should have panicked")
        .into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_names_call_and_fix(&message, "blocking::Client::throw");
}

#[test]
fn blocking_calls_work_from_spawn_blocking_and_under_an_entered_handle() {
    let server = server();
    let connector = server.connector().clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sum = runtime
        .block_on(async move {
            tokio::task::spawn_blocking(move || {
                let client = Client::connect(&connector)?;
                client.request::<_, i64>("add", &(1, 2))
            })
            .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(sum, 3);

    // A runtime made current (to spawn on it) but not running here.
    let _entered = runtime.enter();
    let client = Client::connect(server.connector()).unwrap();
    assert_eq!(client.request::<_, i64>("add", &(3, 4)).unwrap(), 7);
}

/// Set in the child process of the test below.
const CHILD: &str = "SB_TEST_BLOCKING_IN_MAIN";

/// What a newcomer's one-binary program sees on stderr: the
/// `#[tokio::main]` body makes a blocking call. One panic, at the
/// caller's line, naming the call; not tokio's.
#[test]
fn a_program_that_blocks_in_tokio_main_is_told_why_at_its_own_line() {
    if std::env::var_os(CHILD).is_some() {
        tokio_main();
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_program_that_blocks_in_tokio_main_is_told_why_at_its_own_line",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("panicked at tests/blocking_in_runtime.rs:"),
        "{stderr}"
    );
    assert_names_call_and_fix(&stderr, "blocking::Client::request");
    assert_eq!(stderr.matches("panicked at").count(), 1, "{stderr}");
}

#[tokio::main(flavor = "current_thread")]
async fn tokio_main() {
    let server = switchboard::Server::bind(
        &Connector::local(),
        Router::new().route("add", |(a, b): (i64, i64)| async move { a + b }),
    )
    .await
    .unwrap();
    let connector = server.connector().clone();
    // Connecting off the runtime's thread works; calling from here does not.
    let client = tokio::task::spawn_blocking(move || Client::connect(&connector).unwrap())
        .await
        .unwrap();
    let _ = client.request::<_, i64>("add", &(1, 2));
}
