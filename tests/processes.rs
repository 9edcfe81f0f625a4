//! Parent and child as real, separate processes: the connector handed over
//! in argv and in the environment, peers killed in the middle of a request,
//! the examples, and a Python client. (The `switchboard` binary's contract
//! is tested in `cli/tests/cli.rs`.)
//!
//! Children are the examples, Python, or this test executable run again
//! with `SB_TEST_CHILD` set, which makes `child_process_entry` act as the
//! child instead of a test.
//!
//! A server killed with SIGKILL cannot remove its socket directory, so the
//! tests that kill one put its socket in a directory they own (or remove
//! the directory after the kill): `cargo test` leaves nothing in the temp
//! directory.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard::{
    Address, Client, CommandExt, Connector, Context, Error, HandlerError, Router, Server,
};

const CHILD_ROLE: &str = "SB_TEST_CHILD";

/// Runs this test binary again as a child process in `role`.
fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .stdin(Stdio::null());
    command
}

/// Not a test: the body of the child processes the tests below spawn. Run
/// without `SB_TEST_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match role.as_str() {
            "hello-from-args" | "hello-from-env" => {
                let connector = if role == "hello-from-args" {
                    Connector::from_args().unwrap()
                } else {
                    Connector::from_env().unwrap()
                };
                let client = Client::builder(&connector)
                    .id(role.clone())
                    .connect()
                    .await
                    .unwrap();
                let reply: String = client.request("hello", &std::process::id()).await.unwrap();
                println!("child got: {reply}");
                client.close().await;
            }
            "missing-connector" => match Connector::from_env() {
                Err(e @ Error::MissingConnector { .. }) => {
                    eprintln!("{e}");
                    std::process::exit(7);
                }
                other => panic!("{other:?}"),
            },
            "hang-when-asked" => {
                let router = Router::new().route("hang", |_: ()| async move {
                    std::future::pending::<()>().await;
                    Ok::<(), HandlerError>(())
                });
                let connector = Connector::from_env().unwrap();
                let client = Client::builder(&connector)
                    .id("hanger")
                    .router(router)
                    .connect()
                    .await
                    .unwrap();
                client.closed().await;
            }
            "serve-sleep" => {
                let router = Router::new().route("sleep", |ms: u64| async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok::<_, HandlerError>(ms)
                });
                let server = Server::bind(&Connector::from_env().unwrap(), router)
                    .await
                    .unwrap();
                println!("serve-sleep: ready");
                server.run_until(std::future::pending()).await;
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

#[tokio::test]
async fn children_receive_the_connector_in_argv_and_in_the_environment() {
    let router = Router::new().route("hello", |ctx: Context, pid: u32| async move {
        // The OS's word on who connected matches what the child says.
        assert_eq!(ctx.peer().process_id(), Some(pid));
        Ok::<_, HandlerError>(format!("{} (pid {pid})", ctx.client_id()))
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();

    let mut by_arg = child("hello-from-args");
    by_arg
        .connector_arg(server.connector())
        .env_remove(switchboard::ENV_VAR);
    let mut by_env = child("hello-from-env");
    by_env.connector_env(server.connector());
    let outputs =
        tokio::task::spawn_blocking(move || [by_arg.output().unwrap(), by_env.output().unwrap()])
            .await
            .unwrap();
    for (output, role) in outputs.iter().zip(["hello-from-args", "hello-from-env"]) {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("child got: {role} (pid ")),
            "{role}: {stdout}"
        );
    }
}

#[test]
fn a_child_without_a_connector_gets_a_clear_error() {
    let output = child("missing-connector")
        .env_remove(switchboard::ENV_VAR)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SWITCHBOARD_CONNECTOR"), "{stderr}");
}

/// A connector for a server this test will SIGKILL: on Unix its socket is
/// in `dir`, which the test owns and removes, as the server cannot.
fn connector_in(dir: &tempfile::TempDir) -> Connector {
    if cfg!(unix) {
        Connector::unix_socket(dir.path().join("s")).unwrap()
    } else {
        Connector::local()
    }
}

#[tokio::test]
async fn killing_the_server_process_fails_pending_requests_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let connector = connector_in(&dir);
    let mut server = child("serve-sleep")
        .connector_env(&connector)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let ready = tokio::task::spawn_blocking(move || {
        // The harness prints its own text first (without a line break
        // before the test body's output); wait for the child's.
        let mut line = String::new();
        while stdout.read_line(&mut line).unwrap() > 0 {
            if line.contains("serve-sleep: ready") {
                return true;
            }
            line.clear();
        }
        false
    });
    assert!(ready.await.unwrap(), "the server child did not start");
    let client = Client::connect(&connector).await.unwrap();
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &60_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill().unwrap();
    let _ = server.wait();
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the pending request failed instead of hanging")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
}

#[tokio::test]
async fn killing_a_client_process_fails_the_servers_request_to_it() {
    let server = Server::bind(&Connector::local(), Router::new())
        .await
        .unwrap();
    // Its harness output must not mix into ours.
    let mut hanger = child("hang-when-asked")
        .connector_env(server.connector())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), server.wait_for_clients(1))
        .await
        .unwrap();
    let peer = server.client("hanger").unwrap();
    let pending = tokio::spawn(async move { peer.request::<_, ()>("hang", &()).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    hanger.kill().unwrap();
    let _ = hanger.wait();
    let result = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("no hang")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    // The server is still fine for the next client.
    let late = Client::connect(server.connector()).await.unwrap();
    assert!(matches!(
        late.request::<_, ()>("x", &()).await,
        Err(Error::NoSuchRoute { .. })
    ));
}

#[test]
fn the_parent_child_demo_hands_out_all_work() {
    let stdout = support::run_to_success(&mut Command::new(support::example("parent_child")));
    assert!(
        stdout.contains("24 of 24 items came back correct"),
        "{stdout}"
    );
    assert!(stdout.contains("2 via argv, 2 via environment"), "{stdout}");
    for worker in 0..4 {
        assert!(stdout.contains(&format!("worker-{worker}: ")), "{stdout}");
    }
}

#[test]
fn the_route_examples_talk_to_each_other() {
    let mut server = Command::new(support::example("route_server"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let client = Command::new(support::example("route_client"))
        .arg(line.trim())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    // Killed, the server could not remove its private socket directory.
    if let Address::Unix(path) = Connector::load_state(&line).unwrap().address() {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
    let text = String::from_utf8_lossy(&client.stdout);
    assert!(
        client.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(text.contains("sum   -> 10"), "{text}");
    assert!(
        text.contains("missing -> no such route \"missing\""),
        "{text}"
    );
}

// The Windows build runs under Wine in CI, where no Windows Python exists to
// run the script (see ci/windows.sh).
#[cfg_attr(windows, ignore = "needs a Windows python3; under Wine there is none")]
#[tokio::test]
async fn a_python_client_written_from_protocol_md_interoperates() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python_client.py");
    for connector in [Connector::local(), Connector::tcp("127.0.0.1", 0).unwrap()] {
        let router = Router::new()
            .route("echo", |params: Value| async move {
                Ok::<_, HandlerError>(params)
            })
            .route("fail", |message: String| async move {
                Err::<(), _>(HandlerError::new(message))
            });
        let server = Server::bind(&connector, router).await.unwrap();
        let text = server.connector().dump_state();
        let run = move |route: &'static str, params: &'static str| {
            let text = text.clone();
            tokio::task::spawn_blocking(move || {
                Command::new("python3")
                    .args([script, &text, route, params])
                    .output()
                    .expect("python3 is on every machine this project runs on")
            })
        };
        let ok = run("echo", r#"{"from": "python", "n": [1, 2]}"#)
            .await
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let echoed: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(echoed, serde_json::json!({"from": "python", "n": [1, 2]}));
        let failed = run("fail", r#""py boom""#).await.unwrap();
        assert_eq!(failed.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&failed.stderr).contains("-32000: py boom"));
        server.shutdown().await;
    }
}

#[test]
fn the_readme_example_runs_on_a_single_threaded_runtime() {
    // The README's block is examples/readme.rs without its doc comment, so
    // running the example runs what the README shows.
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example_source = std::fs::read_to_string(format!("{root}/examples/readme.rs")).unwrap();
    let code = &example_source[example_source.find("use switchboard::").unwrap()..];
    assert!(
        readme.contains(code),
        "README.md's example and examples/readme.rs differ"
    );
    assert!(code.contains("flavor = \"current_thread\""));
    let stdout = support::run_to_success(&mut Command::new(support::example("readme")));
    assert!(stdout.contains("] 1 + 2 = 3"), "{stdout}");
}

#[test]
fn a_file_bigger_than_a_frame_travels_as_a_stream() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("data");
    // 3 MiB and a bit: many chunks, the last one short.
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let stdout = support::run_to_success(Command::new(support::example("stream_file")).arg(&file));
    assert!(
        stdout.contains(&format!("{} bytes of", data.len())) && stdout.contains("intact"),
        "{stdout}"
    );

    // A file that is not there: the handler's error reaches the child.
    let output = Command::new(support::example("stream_file"))
        .arg(dir.path().join("missing"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
}
