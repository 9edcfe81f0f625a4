//! The `switchboard` binary's contract, black-box: exit codes, the three
//! forms of the connector argument, help and completions, and when
//! `echo-server` stops (and that it cleans up when it does).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::{Address, Connector, Secret};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

/// `switchboard echo-server`, with its connector string read from stdout.
///
/// Dropping it stops the server the polite way (closing its stdin pipe, so
/// it removes its socket directory itself), and only kills it if that fails;
/// a killed server's directory is removed here, so tests leave nothing in
/// the temp directory.
struct EchoServer {
    process: Child,
    connector: String,
}

impl EchoServer {
    /// Starts it with its stdin a pipe this side holds.
    fn start(args: &[&str]) -> EchoServer {
        EchoServer::start_with(args, Stdio::piped())
    }

    fn start_with(args: &[&str], stdin: Stdio) -> EchoServer {
        let mut process = Command::new(CLI)
            .arg("echo-server")
            .args(args)
            .stdin(stdin)
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

    /// The private directory holding the server's socket (Unix only).
    fn socket_dir(&self) -> Option<std::path::PathBuf> {
        match Connector::load_state(&self.connector).unwrap().address() {
            Address::Unix(path) => Some(path.parent().unwrap().to_owned()),
            _ => None,
        }
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[cfg(unix)]
    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.process.id()).unwrap();
        // SAFETY: kill(2) with a pid this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // With its stdin pipe closed it stops by itself; without one, only a
        // signal would stop it, so it is killed at once.
        let polite = self.process.stdin.take().is_some();
        if !polite || self.wait_exit(Duration::from_secs(5)).is_none() {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
        if let Some(dir) = self.socket_dir() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut command: Command) -> Output {
    let output = command.output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn cli(args: &[&str]) -> Output {
    let mut command = Command::new(CLI);
    command.args(args).stdin(Stdio::null());
    run(command)
}

/// Runs the CLI with `input` as its standard input.
fn cli_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(CLI)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn call_throw_and_exit_codes() {
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

    // 1: the remote handler failed; its message is on stderr.
    let out = cli(&["call", c, "fail", r#""the disk is full""#]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("the disk is full"), "{}", out.stderr);
    let out = cli(&["call", c, "no-such-route"]);
    assert_eq!(out.code, 1, "{}", out.stderr);

    // 4: no response in time.
    let out = cli(&["call", c, "sleep", "2000", "--timeout", "100"]);
    assert_eq!(out.code, 4, "{}", out.stderr);

    let out = cli(&["call", c, "sleep", "10", "--timeout", "5000"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "10"));

    // A streamed answer: one JSON line per item.
    let out = cli(&["call", c, "count", "3"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "1\n2\n3\n"),
        "{}",
        out.stderr
    );
    let out = cli(&["call", c, "count", "0"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "an empty stream");

    // 2: bad input of every kind.
    for malformed in ["nonsense", "sb1:@@@", "sb9:abc", "\"sb1:abc\""] {
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
    assert!(
        out.stderr.contains("PARAMS is not valid JSON"),
        "{}",
        out.stderr
    );
    let out = cli(&["call"]);
    assert_eq!(out.code, 2, "missing arguments");
    let out = cli(&["call", c, "echo", "--timeout", "soon"]);
    assert_eq!(out.code, 2, "a timeout that is not a number");
    let out = cli(&["frobnicate"]);
    assert_eq!(out.code, 2, "an unknown subcommand");

    // 3: the server refuses us.
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
    let out = cli(&["throw", &impostor, "echo"]);
    assert_eq!(out.code, 3, "{}", out.stderr);

    let out = cli(&["throw", c, "echo", "[1]"]);
    assert_eq!((out.code, out.stdout.as_str()), (0, ""));
    let out = cli(&["throw", c, "echo", "[1"]);
    assert_eq!(out.code, 2, "{}", out.stderr);

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
    assert_eq!(shown["serializer"], "auto");
    let secret = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        Connector::load_state(c).unwrap().secret().unwrap().expose(),
    );
    let text = cli(&["inspect", c]);
    assert!(!text.stdout.contains(&secret) && !out.stdout.contains(&secret));
    assert!(text.stdout.contains("<redacted>"));
    let out = cli(&["inspect", "sb1:"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[test]
fn the_connector_can_come_from_stdin_or_the_environment() {
    let server = EchoServer::start(&[]);
    let c = server.connector.as_str();

    // `-`: the first line of standard input (a CRLF or more lines are fine).
    for input in [format!("{c}\n"), format!("{c}\r\nignored\n"), c.to_owned()] {
        let out = cli_stdin(&["call", "-", "echo", r#""from stdin""#], &input);
        assert_eq!(
            (out.code, out.stdout.trim()),
            (0, r#""from stdin""#),
            "{input:?}: {}",
            out.stderr
        );
    }
    let out = cli_stdin(&["inspect", "-", "--json"], &format!("{c}\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli_stdin(&["throw", "-", "echo"], &format!("{c}\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);

    // env:VAR
    let mut command = Command::new(CLI);
    command
        .args(["call", "env:SB_TEST_CONNECTOR", "echo", "[2]"])
        .env("SB_TEST_CONNECTOR", c)
        .stdin(Stdio::null());
    let out = run(command);
    assert_eq!((out.code, out.stdout.trim()), (0, "[2]"), "{}", out.stderr);
    let mut command = Command::new(CLI);
    command
        .args(["inspect", "env:SWITCHBOARD_CONNECTOR"])
        .env("SWITCHBOARD_CONNECTOR", c)
        .stdin(Stdio::null());
    assert_eq!(run(command).code, 0);

    // Clear errors, exit code 2.
    let out = cli_stdin(&["call", "-", "echo"], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("standard input is empty"),
        "{}",
        out.stderr
    );
    let out = cli(&["call", "-", "echo"]);
    assert_eq!(out.code, 2, "stdin is /dev/null: {}", out.stderr);
    let out = cli_stdin(&["call", "-", "echo"], "\n");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("first line"), "{}", out.stderr);
    let out = cli_stdin(&["call", "-", "echo"], "garbage\n");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("invalid connector string (from standard input)"),
        "{}",
        out.stderr
    );

    let mut command = Command::new(CLI);
    command
        .args(["call", "env:SB_TEST_SURELY_UNSET", "echo"])
        .env_remove("SB_TEST_SURELY_UNSET")
        .stdin(Stdio::null());
    let out = run(command);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("environment variable SB_TEST_SURELY_UNSET is not set"),
        "{}",
        out.stderr
    );
    let mut command = Command::new(CLI);
    command
        .args(["call", "env:SB_TEST_EMPTY", "echo"])
        .env("SB_TEST_EMPTY", "")
        .stdin(Stdio::null());
    let out = run(command);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("SB_TEST_EMPTY is empty"),
        "{}",
        out.stderr
    );
    let out = cli(&["call", "env:", "echo"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("env:VAR"), "{}", out.stderr);
    let mut command = Command::new(CLI);
    command
        .args(["call", "env:SB_TEST_BAD", "echo"])
        .env("SB_TEST_BAD", "sb1:@@@")
        .stdin(Stdio::null());
    let out = run(command);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("SB_TEST_BAD"), "{}", out.stderr);
}

#[test]
fn connecting_to_nobody_exits_3_quickly_and_says_how_long_it_waited() {
    let nobody = Connector::local().dump_state();
    let started = Instant::now();
    let out = cli(&["call", &nobody, "echo"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("could not connect"), "{}", out.stderr);
    assert!(out.stderr.contains("in 2 s"), "{}", out.stderr);
    assert!(out.stderr.contains("--connect-timeout"), "{}", out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the default connect timeout is short: {:?}",
        started.elapsed()
    );

    let out = cli(&["throw", &nobody, "echo", "--connect-timeout", "300"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("in 300 ms"), "{}", out.stderr);
}

#[test]
fn echo_server_over_tcp() {
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
    assert_eq!(cli(&["echo-server", "--tcp", "nonsense"]).code, 2);
}

#[test]
fn echo_server_stops_when_its_stdin_pipe_closes() {
    let mut server = EchoServer::start(&[]);
    let dir = server.socket_dir();
    drop(server.process.stdin.take());
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("echo-server still running 10 s after its stdin pipe closed");
    assert!(status.success(), "{status}");
    if let Some(dir) = dir {
        assert!(!dir.exists(), "socket directory removed on exit");
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

#[test]
fn echo_server_with_stdin_not_a_pipe_keeps_serving() {
    // As with `switchboard echo-server > file &`: stdin is /dev/null.
    let mut server = EchoServer::start_with(&[], Stdio::null());
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.process.try_wait().unwrap().is_none(),
        "echo-server exited although its stdin is not a pipe"
    );
    let out = cli(&["call", &server.connector, "echo", "1"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "1"), "{}", out.stderr);

    #[cfg(unix)]
    {
        let dir = server.socket_dir().unwrap();
        assert!(dir.exists());
        server.signal(libc::SIGTERM);
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("echo-server still running 10 s after SIGTERM");
        assert_eq!(status.code(), Some(0), "{status}");
        assert!(!dir.exists(), "socket directory removed on SIGTERM");
    }
}

#[cfg(unix)]
#[test]
fn echo_server_cleans_up_on_sigint_and_sighup() {
    for signal in [libc::SIGINT, libc::SIGHUP] {
        let mut server = EchoServer::start(&[]);
        let dir = server.socket_dir().unwrap();
        // A request in flight does not hold the exit up for long.
        let sleeper = Command::new(CLI)
            .args(["call", &server.connector, "sleep", "60000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(10))
            .expect("echo-server still running 10 s after the signal");
        assert_eq!(status.code(), Some(0), "signal {signal}: {status}");
        assert!(!dir.exists(), "signal {signal}: socket directory removed");
        let out = sleeper.wait_with_output().unwrap();
        assert_ne!(out.status.code(), Some(0), "the pending call failed");
    }
}

#[test]
fn every_help_shows_examples_and_exit_codes() {
    for command in [
        &[][..],
        &["echo-server"][..],
        &["call"][..],
        &["throw"][..],
        &["inspect"][..],
        &["completions"][..],
        &["ls"][..],
        &["ping"][..],
        &["describe"][..],
        &["serve"][..],
    ] {
        for flag in ["--help", "-h"] {
            let args: Vec<&str> = command.iter().copied().chain([flag]).collect();
            let out = cli(&args);
            assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
            assert!(out.stdout.contains("Examples:"), "{args:?}: {}", out.stdout);
            assert!(
                out.stdout.contains("Exit codes:") && out.stdout.contains("  0  "),
                "{args:?}: {}",
                out.stdout
            );
        }
    }
    let call = cli(&["call", "--help"]).stdout;
    for code in ["  1  ", "  2  ", "  3  ", "  4  "] {
        assert!(call.contains(code), "{call}");
    }
    for form in ["env:VAR", "env:SWITCHBOARD_CONNECTOR", "standard input"] {
        assert!(call.contains(form), "{call}");
    }
    let server = cli(&["echo-server", "--help"]).stdout;
    assert!(
        server.contains("SIGTERM") && server.contains("pipe"),
        "{server}"
    );
    let out = cli(&["--version"]);
    assert_eq!(out.code, 0);
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = cli(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        assert!(
            out.stdout.contains("echo-server") && out.stdout.contains("connect-timeout"),
            "{shell}: {}",
            out.stdout
        );
    }
    let out = cli(&["completions", "tcsh"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}
