//! Helpers shared between test files. This module itself is shared by
//! tests/names.rs and tests/reconnect.rs: a named server run as a separate
//! process (this test executable run again with `SB_TEST_CHILD` set), so it
//! can be killed with SIGKILL and restarted. The submodules serve the other
//! test files, each named for the tests it serves.

#![allow(dead_code)]

/// The gate for tests that need RabbitMQ: skipped and announced without it.
pub mod broker;
pub mod calculator;
pub mod children;
pub mod conversation;
pub mod descriptors;
pub mod pressure;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use switchboard::registry::Registry;
use switchboard::{Connector, Context, HandlerError, Router, Server};

pub const CHILD_ROLE: &str = "SB_TEST_CHILD";
pub const REGISTRY: &str = "SB_TEST_REGISTRY";
pub const NAME: &str = "SB_TEST_NAME";
/// Starts what a child says (libtest prints its own words around it).
pub const MARK: &str = "<<sb>>";

/// A binary `cargo test` at the workspace root builds before it runs the
/// tests, by its path under target/<profile>/ (this test is
/// target/<profile>/deps/<test>-<hash>): `["examples", name]` for an
/// example, `["switchboard"]` for the CLI. (Running cargo from a test would
/// not work under Wine, nor while the outer cargo holds the build
/// directory.)
pub fn built(path: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let mut found = exe.parent().unwrap().parent().unwrap().to_path_buf();
    found.extend(path);
    found.set_extension(std::env::consts::EXE_EXTENSION);
    assert!(
        found.exists(),
        "{} not built: run the tests with `cargo test` at the workspace root",
        found.display()
    );
    found
}

/// An example's executable (see [`built`]).
pub fn example(name: &str) -> PathBuf {
    built(&["examples", name])
}

/// Runs `command` with stdin closed and returns its stdout, failing the
/// test, with both of its outputs, unless it exits successfully.
pub fn run_to_success(command: &mut Command) -> String {
    let output = command.stdin(Stdio::null()).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What a child said after [`MARK`] on its stdout.
pub fn said(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    match text.split_once(MARK) {
        Some((_, rest)) => rest.lines().next().unwrap_or_default().to_owned(),
        None => panic!("the child said nothing marked: {text:?}"),
    }
}

/// This test executable run again as a child in `role`.
pub fn child(role: &str) -> Command {
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

/// A named server in its own process; killed when dropped.
pub struct NamedServer {
    pub process: Child,
    pub pid: u32,
    /// Where its socket is: removed here after a kill.
    socket_dir: Option<PathBuf>,
}

impl NamedServer {
    /// Starts a server named `name` in `registry` and waits until it is
    /// registered (it prints its pid then).
    pub fn start(registry: &Path, name: &str) -> NamedServer {
        let mut process = child("named-server")
            .env(REGISTRY, registry)
            .env(NAME, name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        while !line.contains(MARK) {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the child exited");
        }
        let said = said(line.as_bytes());
        let (pid, dir) = said
            .strip_prefix("registered ")
            .and_then(|rest| rest.split_once(' '))
            .unwrap_or_else(|| panic!("the child said {line:?}"));
        NamedServer {
            process,
            pid: pid.parse().unwrap(),
            socket_dir: Some(dir).filter(|dir| !dir.is_empty()).map(PathBuf::from),
        }
    }

    /// SIGKILL: no chance to remove its registry entry or socket.
    pub fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
        if let Some(dir) = self.socket_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// Closes its stdin: it shuts down the polite way.
    pub fn stop(&mut self) {
        drop(self.process.stdin.take());
        self.process.wait().unwrap();
    }
}

impl Drop for NamedServer {
    fn drop(&mut self) {
        // Politely (it cleans up after itself), then by force.
        drop(self.process.stdin.take());
        for _ in 0..250 {
            if matches!(self.process.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill();
    }
}

/// The routes of the child server: `pid`, `whoami` (the caller's client
/// id), `ask-client` (calls the client's own route `hello` and returns
/// its answer).
pub fn router() -> Router {
    Router::new()
        .route("pid", |_: ()| async move {
            Ok::<_, HandlerError>(std::process::id())
        })
        .route("whoami", |ctx: Context, _: ()| async move {
            Ok::<_, HandlerError>(ctx.client_id().to_owned())
        })
        .route("ask-client", |ctx: Context, _: ()| async move {
            ctx.request::<_, String>("hello", &())
                .await
                .map_err(|e| HandlerError::new(e.to_string()))
        })
}

/// The child side: runs the role named in `SB_TEST_CHILD`, if any.
pub fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match role.as_str() {
            "named-server" => {
                let registry = Registry::at(std::env::var(REGISTRY).unwrap()).unwrap();
                let name = std::env::var(NAME).unwrap();
                let server = Server::builder(router())
                    .name(name)
                    .registry(registry)
                    .bind(&Connector::local())
                    .await
                    .unwrap();
                let dir = match server.connector().address() {
                    switchboard::Address::Unix(path) => {
                        path.parent().unwrap().display().to_string()
                    }
                    _ => String::new(),
                };
                println!("{MARK}registered {} {dir}", std::process::id());
                // Until the parent closes stdin (or kills it).
                tokio::task::spawn_blocking(|| {
                    let mut sink = String::new();
                    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
                })
                .await
                .unwrap();
                server.shutdown().await;
            }
            "user-registry" => {
                // Where Registry::user() is, with the environment the
                // parent set.
                match Registry::user() {
                    Ok(registry) => println!("{MARK}{}", registry.dir().display()),
                    Err(e) => println!("{MARK}error: {e}"),
                }
            }
            "services-from-env" => {
                // A registry of its own, removed after: the suite leaves
                // nothing in the temp directory.
                let unused = std::env::temp_dir()
                    .join(format!("sb-test-unused-registry-{}", std::process::id()));
                let connector = switchboard::registry::Lookup::default()
                    .registry(Registry::at(&unused).unwrap())
                    .resolve("life-gen");
                let _ = std::fs::remove_dir_all(&unused);
                println!("{MARK}{}", connector.unwrap());
            }
            other => panic!("unknown child role {other}"),
        }
    });
    std::process::exit(0);
}
