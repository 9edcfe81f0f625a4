//! A switchboard server in a process of its own, for the tests that attack
//! it from outside (tests/admission.rs, tests/attacks.rs): this test
//! executable run again with `SB_SERVER_CHILD` set, serving `echo`, `count`
//! (a stream of N numbers) and `sleep`, with keepalive every second (so a
//! silent peer is dropped within seconds), logging warnings to a file the
//! test reads after stopping it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use switchboard::{Address, Config, Connector, Router, Server};

pub const CHILD_ROLE: &str = "SB_SERVER_CHILD";
pub const MARK: &str = "<<sb>>";

/// The body of `child_process_entry` in the test files that use this: the
/// server process. Without `SB_SERVER_CHILD` it returns at once.
pub fn child_main() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter("switchboard=warn")
        .init();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connector = match role.as_str() {
            "tcp" => Connector::tcp("127.0.0.1", 0).unwrap(),
            _ => Connector::local(),
        };
        let router = Router::new()
            .route("echo", |v: Value| async move { v })
            .route("count", |to: u64| async move {
                switchboard::Stream::iter(1..=to)
            })
            .route("sleep", |ms: u64| async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ms
            });
        let mut config = Config::default();
        config.keepalive = Some(Duration::from_secs(1));
        let server = Server::builder(router)
            .config(config)
            .bind(&connector)
            .await
            .unwrap();
        println!("{MARK}{}", server.connector().dump_state());
        // Serves until the test closes our stdin.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
        server.shutdown_timeout(Duration::from_secs(1)).await;
    });
}

/// The server process; stopped politely (it removes its socket) when dropped.
pub struct ServerProcess {
    pub process: Child,
    pub connector: Connector,
    log: tempfile::NamedTempFile,
}

impl ServerProcess {
    /// Starts one: `role` is `unix` or `tcp`; `max_files` its RLIMIT_NOFILE.
    pub fn start(role: &str, max_files: Option<u64>) -> ServerProcess {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "child_process_entry",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.reopen().unwrap()));
        if let Some(max) = max_files {
            // SAFETY: setrlimit is async-signal-safe, and nothing else runs
            // between fork and exec here.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: max as libc::rlim_t,
                        rlim_max: max as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut process = command.spawn().unwrap();
        let mut stdout = BufReader::new(process.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains(MARK) {
            line.clear();
            assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the server exited");
        }
        let state = line.split_once(MARK).unwrap().1.trim().to_owned();
        // Whatever else it prints must not fail for want of a reader.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let connector = Connector::load_state(&state).unwrap();
        ServerProcess {
            process,
            connector,
            log,
        }
    }

    /// What the server logged, once it has stopped.
    pub fn stop(mut self) -> String {
        self.shut_down();
        std::fs::read_to_string(self.log.path()).unwrap()
    }

    /// Its resident memory in KiB (Linux), 0 where unknown.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn shut_down(&mut self) {
        drop(self.process.stdin.take());
        for _ in 0..250 {
            if matches!(self.process.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
        if let Address::Unix(path) = self.connector.address() {
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.shut_down();
    }
}
