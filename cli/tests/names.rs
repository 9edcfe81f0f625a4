//! The `switchboard` binary and named services, black-box: `echo-server
//! --name`, `ls`, `@NAME` wherever a connector goes, `ping` (also across a
//! server restart), `serve` and `describe`. Every test has a registry of
//! its own (XDG_RUNTIME_DIR, or on Windows LOCALAPPDATA, pointed at a temp
//! directory).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

/// The kind of `Connector::local()` here.
const LOCAL_KIND: &str = if cfg!(windows) { "pipe" } else { "unix" };

/// A private XDG_RUNTIME_DIR: the registry lives in it.
fn runtime_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    dir
}

fn command(runtime: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(CLI);
    command
        .args(args)
        .env("XDG_RUNTIME_DIR", runtime)
        // Where the registry is on Windows.
        .env("LOCALAPPDATA", runtime)
        .env_remove("SWITCHBOARD_SERVICES")
        .stdin(Stdio::null());
    command
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn cli(runtime: &Path, args: &[&str]) -> Output {
    let output = command(runtime, args).output().unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A long-running `switchboard` (echo-server, serve), its stdin a pipe
/// held here: dropping it closes the pipe, and it stops and cleans up.
struct Daemon {
    process: Child,
    stdout: BufReader<ChildStdout>,
    first_line: String,
}

impl Daemon {
    fn start(runtime: &Path, args: &[&str]) -> Daemon {
        let mut process = command(runtime, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut first_line = String::new();
        stdout.read_line(&mut first_line).unwrap();
        assert!(
            !first_line.is_empty(),
            "{args:?} exited before its first line"
        );
        Daemon {
            process,
            stdout,
            first_line: first_line.trim().to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// SIGKILL: it leaves its registry entry and socket behind.
    fn kill(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Ok(connector) = switchboard::Connector::load_state(&self.first_line)
            && let switchboard::Address::Unix(path) = connector.address()
        {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
        drop(self.process.stdin.take());
    }

    fn stop(mut self) -> i32 {
        drop(self.process.stdin.take());
        self.process.wait().unwrap().code().unwrap_or(-1)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.process.stdin.take().is_some() {
            let _ = self.process.wait();
        }
        let _ = &self.stdout;
    }
}

fn ls_json(runtime: &Path) -> Vec<Value> {
    let out = cli(runtime, &["ls", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_named_echo_server_is_listed_and_reached_by_name() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let server = Daemon::start(rt, &["echo-server", "--name", "echo"]);
    assert!(
        server.first_line.starts_with("sb1:"),
        "{}",
        server.first_line
    );

    let listed = ls_json(rt);
    assert_eq!(
        listed,
        [json!({"name": "echo", "status": "answering", "pid": server.pid(), "kind": LOCAL_KIND})]
    );
    let table = cli(rt, &["ls"]);
    assert_eq!(table.code, 0);
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("echo"))
        .unwrap();
    assert!(
        row.contains("answering") && row.contains(&server.pid().to_string()),
        "{row}"
    );

    let out = cli(rt, &["call", "@echo", "echo", r#"{"a":1}"#]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#"{"a":1}"#),
        "{}",
        out.stderr
    );
    let out = cli(rt, &["throw", "@echo", "echo", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(rt, &["inspect", "@echo", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let inspected: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(inspected["kind"], LOCAL_KIND);
    assert_eq!(inspected["secret"], "<redacted>");

    // A second live server under the name: refused, naming the first.
    let out = cli(rt, &["echo-server", "--name", "echo"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("pid {}", server.pid())),
        "{}",
        out.stderr
    );

    assert_eq!(server.stop(), 0);
    assert!(ls_json(rt).is_empty(), "the entry is removed on exit");
    let out = cli(rt, &["ls"]);
    assert!(
        out.stderr.contains("no services are registered"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_killed_server_shows_as_stale_and_its_name_can_be_taken_again() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let first = Daemon::start(rt, &["echo-server", "--name", "phoenix"]);
    let first_pid = first.pid();
    first.kill();
    let listed = ls_json(rt);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "stale");
    assert_eq!(listed[0]["pid"], first_pid);

    let second = Daemon::start(rt, &["echo-server", "--name", "phoenix"]);
    let listed = ls_json(rt);
    assert_eq!(listed[0]["status"], "answering");
    assert_eq!(listed[0]["pid"], second.pid());
    assert_eq!(cli(rt, &["call", "@phoenix", "echo"]).code, 0);
}

#[test]
fn bad_names_and_missing_services() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let out = cli(rt, &["call", "@", "echo"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = cli(rt, &["call", "@../etc", "echo"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("path separator"), "{}", out.stderr);
    let out = cli(rt, &["echo-server", "--name", "a/b"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = cli(rt, &["call", "@nobody", "echo", "--connect-timeout", "100"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("\"nobody\"") && out.stderr.contains("switchboard ls"),
        "{}",
        out.stderr
    );
    let out = cli(rt, &["ping", "@nobody", "--connect-timeout", "100"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[cfg(unix)]
#[test]
fn a_registry_open_to_other_users_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let runtime = runtime_dir();
    let rt = runtime.path();
    let registry = rt.join("switchboard");
    std::fs::create_dir(&registry).unwrap();
    std::fs::set_permissions(&registry, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = cli(rt, &["ls"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(&registry.display().to_string()) && out.stderr.contains("777"),
        "{}",
        out.stderr
    );
}

#[test]
fn ping_prints_a_line_per_round_trip_and_a_summary() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let _server = Daemon::start(rt, &["echo-server", "--name", "pinged"]);
    let out = cli(rt, &["ping", "@pinged", "--count", "3", "--interval", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", out.stdout);
    for (i, line) in lines[..3].iter().enumerate() {
        assert!(line.starts_with("answer from @pinged: seq="), "{line}");
        assert!(
            line.contains(&format!("seq={}", i + 1)) && line.ends_with(" ms"),
            "{line}"
        );
    }
    assert_eq!(lines[3], "--- @pinged: 3 sent, 3 answered, 0 lost");
    assert!(
        lines[4].starts_with("round trip min/avg/max = "),
        "{}",
        lines[4]
    );
}

/// Runs `ping` in the background and returns once it has printed `lines`
/// lines.
fn ping_in_background(
    rt: &Path,
    args: &[&str],
    lines: usize,
) -> (Child, BufReader<ChildStdout>, String) {
    let mut ping = command(rt, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(ping.stdout.take().unwrap());
    let mut seen = String::new();
    for _ in 0..lines {
        stdout.read_line(&mut seen).unwrap();
    }
    (ping, stdout, seen)
}

#[test]
fn ping_with_reconnect_rides_through_a_restart_and_finds_the_new_server() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let first = Daemon::start(rt, &["echo-server", "--name", "restarting"]);
    let args = [
        "ping",
        "@restarting",
        "--count",
        "40",
        "--interval",
        "20",
        "--timeout",
        "10000",
        "--reconnect",
    ];
    let (mut ping, mut stdout, mut seen) = ping_in_background(rt, &args, 2);
    first.kill();
    let _second = Daemon::start(rt, &["echo-server", "--name", "restarting"]);
    std::io::Read::read_to_string(&mut stdout, &mut seen).unwrap();
    let status = ping.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen}");
    assert!(seen.contains("--- @restarting: 40 sent"), "{seen}");
    let last = seen.lines().rev().nth(2).unwrap();
    assert!(
        last.starts_with("answer from @restarting: seq=40 "),
        "{seen}"
    );
}

#[test]
fn ping_without_reconnect_fails_once_the_server_is_gone() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let server = Daemon::start(rt, &["echo-server", "--name", "fragile"]);
    let args = ["ping", "@fragile", "--count", "20", "--interval", "20"];
    let (mut ping, mut stdout, mut seen) = ping_in_background(rt, &args, 2);
    server.kill();
    std::io::Read::read_to_string(&mut stdout, &mut seen).unwrap();
    let status = ping.wait().unwrap();
    assert_eq!(status.code(), Some(3), "{seen}");
    assert!(seen.contains("no answer from @fragile"), "{seen}");
}

#[cfg(unix)]
const DESCRIPTION: &str = r#"{"services":[{"name":"Calculator","methods":[
  {"name":"add","route":"Calculator.add","kind":"request","params":[{"name":"a","type":"i64"},{"name":"b","type":"i64"}],"returns":"i64"},
  {"name":"log","route":"Calculator.log","kind":"notification","params":[{"name":"line","type":"String"}],"returns":"()"},
  {"name":"count","route":"Calculator.count","kind":"stream","params":[{"name":"to","type":"u32"}],"returns":"u32"}]}]}"#;

#[cfg(unix)]
fn write_tools(dir: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("describe.json"), DESCRIPTION).unwrap();
    use std::io::Write;
    let config = dir.join("tools.toml");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        r#"name = "tools"

[routes.upper]
command = ["tr", "a-z", "A-Z"]

[routes.params]
command = ["cat"]

[routes.literal]
command = ["printf", "%s", "$HOME; echo injected"]

[routes.route-name]
command = ["sh", "-c", "printf %s \"$SWITCHBOARD_ROUTE\""]

[routes.fail]
command = ["sh", "-c", "echo 'the disk is full' >&2; exit 3"]

[routes.missing]
command = ["/nonexistent/program"]

[routes."switchboard.describe"]
command = ["cat", "describe.json"]
"#
    )
    .unwrap();
    config
}

#[cfg(unix)]
#[test]
fn serve_turns_commands_into_routes_of_a_named_service() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let config = write_tools(rt);
    let server = Daemon::start(rt, &["serve", config.to_str().unwrap()]);
    assert_eq!(server.first_line, "@tools");
    assert_eq!(ls_json(rt)[0]["name"], "tools");

    // The command sees the JSON text "hello" (quotes included) and prints
    // "HELLO", which is JSON again.
    let out = cli(rt, &["call", "@tools", "upper", r#""hello""#]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#""HELLO""#),
        "{}",
        out.stderr
    );
    // The params arrive on stdin as JSON; JSON output is the answer as is.
    let out = cli(rt, &["call", "@tools", "params", r#"{"a":[1,2]}"#]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#"{"a":[1,2]}"#),
        "{}",
        out.stderr
    );
    // argv goes to the program untouched: no shell expands or splits it.
    // Its output is not JSON, so it comes back as a string.
    let out = cli(rt, &["call", "@tools", "literal"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#""$HOME; echo injected""#)
    );
    let out = cli(rt, &["call", "@tools", "route-name"]);
    assert_eq!(out.stdout.trim(), r#""route-name""#);
    // A non-zero exit is an error with its stderr as the message.
    let out = cli(rt, &["call", "@tools", "fail"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("the disk is full"), "{}", out.stderr);
    let out = cli(rt, &["call", "@tools", "missing"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("/nonexistent/program"),
        "{}",
        out.stderr
    );

    let out = cli(rt, &["describe", "@tools"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "Calculator\n  Calculator.add(a: i64, b: i64) -> i64\n  \
         Calculator.log(line: String)  (notification)\n  \
         Calculator.count(to: u32) -> stream of u32\n"
    );
    let out = cli(rt, &["describe", "@tools", "--json"]);
    let sent: Value = serde_json::from_str(DESCRIPTION).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&out.stdout).unwrap(), sent);

    assert_eq!(server.stop(), 0);
    assert!(ls_json(rt).is_empty());
}

#[test]
fn describe_without_services_and_bad_serve_configs() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let _server = Daemon::start(rt, &["echo-server", "--name", "plain"]);
    // Every router answers the built-in route; this one has no services.
    let out = cli(rt, &["describe", "@plain"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("describes no services"),
        "{}",
        out.stderr
    );
    let out = cli(rt, &["describe", "@plain", "--json"]);
    assert_eq!(out.stdout.trim(), r#"{"services":[]}"#);

    let config = rt.join("bad.toml");
    for (text, expected) in [
        ("name = \"x\"\n", "no [routes.NAME]"),
        (
            "name = \"x\"\n[routes.a]\ncommand = []\n",
            "command is empty",
        ),
        ("[routes.a]\ncommand = [\"true\"]\n", "name"),
        ("name = \"x\"\n[routes.a]\ncomand = [\"true\"]\n", "comand"),
        (
            "name = \"a/b\"\n[routes.a]\ncommand = [\"true\"]\n",
            "path separator",
        ),
        (
            "name = \"x\"\n[[routes]]\nname = \"a\"\ncommand = [\"true\"]\n\
             [[routes]]\nname = \"a\"\ncommand = [\"false\"]\n",
            "defined twice",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = cli(rt, &["serve", config.to_str().unwrap()]);
        assert_eq!(out.code, 2, "{text:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{text:?}: {}", out.stderr);
    }
    let out = cli(rt, &["serve", "/nonexistent/tools.toml"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

#[cfg(unix)]
#[test]
fn at_name_finds_a_services_file_entry_before_the_registry() {
    use base64::Engine;
    let runtime = runtime_dir();
    let rt = runtime.path();
    let listed = Daemon::start(rt, &["echo-server"]);
    let registered = Daemon::start(rt, &["echo-server", "--name", "fixed"]);
    // The services file describes the first server as "fixed".
    let connector = switchboard::Connector::load_state(&listed.first_line).unwrap();
    let switchboard::Address::Unix(socket) = connector.address() else {
        panic!("a local connector on Unix is a socket");
    };
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(connector.secret().unwrap().expose());
    std::fs::write(rt.join("fixed.secret"), secret).unwrap();
    let services = rt.join("services.toml");
    std::fs::write(
        &services,
        format!(
            "[services.fixed]\nsocket = {:?}\nsecret_file = \"fixed.secret\"\n",
            socket.display().to_string()
        ),
    )
    .unwrap();

    let with_file = |args: &[&str]| {
        let output = command(rt, args)
            .env("SWITCHBOARD_SERVICES", &services)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = with_file(&["inspect", "@fixed", "--json"]);
    assert_eq!(code, Some(0), "{stderr}");
    let inspected: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(inspected["address"], socket.display().to_string());
    let (code, stdout, stderr) = with_file(&["call", "@fixed", "echo", "[1]"]);
    assert_eq!((code, stdout.trim()), (Some(0), "[1]"), "{stderr}");

    // Without the file, the registry's "fixed" is found.
    let out = cli(rt, &["inspect", "@fixed", "--json"]);
    let inspected: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_ne!(inspected["address"], socket.display().to_string());
    drop(registered);

    // A broken services file is bad input, and says where.
    std::fs::write(&services, "[services.fixed]\nsocket = 1\n").unwrap();
    let (code, _, stderr) = with_file(&["call", "@fixed", "echo"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&services.display().to_string()) && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn serve_takes_its_routes_as_a_list_too() {
    let runtime = runtime_dir();
    let rt = runtime.path();
    let config = rt.join("list.toml");
    std::fs::write(
        &config,
        "name = \"listed\"\n\n[[routes]]\nname = \"hello\"\ncommand = [\"echo\", \"hello\"]\n",
    )
    .unwrap();
    let server = Daemon::start(rt, &["serve", config.to_str().unwrap()]);
    assert_eq!(server.first_line, "@listed");
    let out = cli(rt, &["call", "@listed", "hello"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, r#""hello""#),
        "{}",
        out.stderr
    );
    assert_eq!(server.stop(), 0);
}
