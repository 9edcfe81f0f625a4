//! Parent and child as real, separate processes: the connector handed over
//! in argv and in the environment, the CLI's contract, peers killed in the
//! middle of a request, and the main demo.
//!
//! Children are either the `switchboard` binary or this test executable run
//! again with `SB_TEST_CHILD` set, which makes `child_process_entry` act as
//! the child instead of a test.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::{
    Client, CommandExt, Connector, Context, Error, HandlerError, Router, Secret, Server,
};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");
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
            other => panic!("unknown child role {other}"),
        }
    });
}

/// `switchboard echo-server`, with its connector string read from stdout.
struct EchoServer {
    process: Child,
    connector: String,
}

impl EchoServer {
    fn start(args: &[&str]) -> EchoServer {
        let mut process = Command::new(CLI)
            .arg("echo-server")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(process.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("sb1:"), "first line of stdout: {line:?}");
        EchoServer {
            process,
            connector: line.trim().to_owned(),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(args: &[&str]) -> Output {
    let output = Command::new(CLI)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn cli_call_throw_and_exit_codes() {
    let server = EchoServer::start(&[]);
    let c = server.connector.as_str();

    let out = cli(&["call", c, "echo", r#"{"a":[1,2,3]}"#]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&out.stdout).unwrap(),
        serde_json::json!({"a": [1, 2, 3]})
    );

    let out = cli(&["call", c, "echo"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "null"),
        "params default to null"
    );

    let out = cli(&["call", c, "fail", r#""the disk is full""#]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("the disk is full"), "{}", out.stderr);

    let out = cli(&["call", c, "sleep", "2000", "--timeout", "100"]);
    assert_eq!(out.code, 4, "{}", out.stderr);

    let out = cli(&["call", c, "sleep", "10", "--timeout", "5000"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "10"));

    for malformed in ["nonsense", "sb1:@@@", "sb9:abc"] {
        let out = cli(&["call", malformed, "echo"]);
        assert_eq!(out.code, 2, "{malformed}: {}", out.stderr);
        assert!(
            out.stderr.contains("invalid connector string"),
            "{}",
            out.stderr
        );
    }
    let out = cli(&["call", c, "echo", "{not json"]);
    assert_eq!(out.code, 2);
    let out = cli(&["call"]);
    assert_eq!(out.code, 2, "missing arguments");

    let impostor = Connector::load_state(c)
        .unwrap()
        .with_secret(Secret::generate())
        .dump_state();
    let out = cli(&["call", &impostor, "echo"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("authentication failed"),
        "{}",
        out.stderr
    );

    let out = cli(&["throw", c, "echo", "[1]"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));

    let out = cli(&["inspect", c, "--json"]);
    assert_eq!(out.code, 0);
    let shown: Value = serde_json::from_str(&out.stdout).unwrap();
    let address = shown["address"].as_str().unwrap();
    if cfg!(windows) {
        assert_eq!(shown["kind"], "pipe");
        assert!(address.starts_with(r"\\.\pipe\switchboard-"), "{address}");
    } else {
        assert_eq!(shown["kind"], "unix");
        assert!(address.ends_with("/s"), "{address}");
    }
    assert_eq!(shown["secret"], "<redacted>");
    assert_eq!(shown["serializer"], "json");
    let secret = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Connector::load_state(c).unwrap().secret().unwrap().expose(),
    );
    let text = cli(&["inspect", c]);
    assert!(!text.stdout.contains(&secret) && !out.stdout.contains(&secret));
    assert!(text.stdout.contains("<redacted>"));
}

#[test]
fn cli_connection_failure_exits_3() {
    let nobody = Connector::local().dump_state();
    let started = Instant::now();
    let out = cli(&["call", &nobody, "echo"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("could not connect"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn cli_echo_server_over_tcp() {
    let server = EchoServer::start(&["--tcp", "127.0.0.1:0"]);
    let shown: Value =
        serde_json::from_str(&cli(&["inspect", &server.connector, "--json"]).stdout).unwrap();
    assert_eq!(shown["kind"], "tcp");
    let address = shown["address"].as_str().unwrap();
    assert!(
        address.starts_with("127.0.0.1:") && !address.ends_with(":0"),
        "{address}"
    );
    let out = cli(&["call", &server.connector, "echo", r#""over tcp""#]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#""over tcp""#),
        "{}",
        out.stderr
    );
}

#[test]
fn echo_server_exits_cleanly_when_stdin_closes() {
    let mut server = EchoServer::start(&[]);
    let connector = Connector::load_state(&server.connector).unwrap();
    drop(server.process.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.process.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "echo-server still running 10 s after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    if let switchboard::Address::Unix(path) = connector.address() {
        assert!(
            !path.parent().unwrap().exists(),
            "socket directory removed on exit"
        );
    }
    let out = cli(&[
        "call",
        &server.connector,
        "echo",
        "--connect-timeout",
        "200",
    ]);
    assert_eq!(out.code, 3, "nobody listens any more: {}", out.stderr);
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

#[tokio::test]
async fn killing_the_server_process_fails_pending_requests_at_once() {
    let mut server = EchoServer::start(&[]);
    let connector = Connector::load_state(&server.connector).unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &60_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.process.kill().unwrap();
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

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/processes-<hash> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} not built: run the tests with `cargo test`",
        path.display()
    );
    path
}

#[test]
fn the_parent_child_demo_hands_out_all_work() {
    let output = Command::new(example("parent_child"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    let mut server = Command::new(example("route_server"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let client = Command::new(example("route_client"))
        .arg(line.trim())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
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
#[test]
fn a_python_client_written_from_protocol_md_interoperates() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python_client.py");
    for args in [&[][..], &["--tcp", "127.0.0.1:0"][..]] {
        let server = EchoServer::start(args);
        let run = |route: &str, params: &str| {
            Command::new("python3")
                .args([script, &server.connector, route, params])
                .output()
                .expect("python3 is on every machine this project runs on")
        };
        let ok = run("echo", r#"{"from": "python", "n": [1, 2]}"#);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let echoed: Value = serde_json::from_slice(&ok.stdout).unwrap();
        assert_eq!(echoed, serde_json::json!({"from": "python", "n": [1, 2]}));
        let failed = run("fail", r#""py boom""#);
        assert_eq!(failed.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&failed.stderr).contains("-32000: py boom"));
    }
}
