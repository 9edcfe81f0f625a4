//! The child processes of the pressure tests: each test binary runs itself
//! again with `SB_PRESSURE_CHILD` set to a role, and its
//! `child_process_entry` calls [`entry`] to act it out.

use std::io::Read;
#[cfg(unix)]
use std::io::{BufRead, BufReader};
#[cfg(unix)]
use std::process::{Child, Command, Stdio};
use std::time::Duration;
#[cfg(unix)]
use std::time::Instant;

use switchboard::{Bytes, Client, Connector, Format, Server};

use super::pressure::{echo_router, tag_of, tagged};

pub const CHILD_ROLE: &str = "SB_PRESSURE_CHILD";

// ----- Child processes -----

/// Runs this test binary again as a child process in `role`.
#[cfg(unix)]
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
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
}

/// Kills the child when dropped, so a failing test leaves no process.
#[cfg(unix)]
pub struct Reaper(pub Child);

#[cfg(unix)]
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.0.id().to_string()])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line the child prints after `SB:` (its connector, or
/// "ready"); the rest of its output is drained in the background so it
/// never blocks or breaks on a full pipe.
#[cfg(unix)]
pub fn first_line(child: &mut Child) -> String {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            return String::new();
        }
        // libtest may have begun the line ("test child_process_entry ... ").
        if let Some((_, found)) = line.trim().split_once("SB:") {
            let found = found.to_owned();
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            return found;
        }
    }
}

#[cfg(unix)]
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Stops the child and waits until it really is stopped (a signal is
/// delivered asynchronously; until then it may still answer).
#[cfg(unix)]
pub fn stop(child: &Child) {
    signal(child, "-STOP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let state = Command::new("ps")
            .args(["-o", "stat=", "-p", &child.id().to_string()])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&state.stdout)
            .trim()
            .starts_with('T')
        {
            return;
        }
        assert!(Instant::now() < deadline, "the child did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The body of each pressure test binary's `child_process_entry`: acts as
/// the child in the role `SB_PRESSURE_CHILD` names, or returns at once.
pub fn entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    if let Some(flavor) = role.strip_prefix("quick-then-idle-") {
        quick_then_idle(flavor);
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        match role.as_str() {
            // A server printing its connector, serving until stdin closes.
            "echo-server" | "tcp-server" | "few-files-server" => {
                #[cfg(target_os = "linux")]
                if role == "few-files-server" {
                    // Room for the runtime and a handful of connections.
                    let limit = libc::rlimit {
                        rlim_cur: 48,
                        rlim_max: 48,
                    };
                    // SAFETY: a plain system call with a valid pointer.
                    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
                }
                let connector = if role == "tcp-server" {
                    Connector::tcp("127.0.0.1", 0).unwrap()
                } else {
                    Connector::local()
                        .without_secret()
                        .with_format(Format::MsgPack)
                };
                let server = Server::bind(&connector, echo_router()).await.unwrap();
                println!("SB:{}", server.connector().dump_state());
                tokio::task::spawn_blocking(|| {
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                })
                .await
                .unwrap();
            }
            // A client whose routes the server calls, until it is killed.
            "callee" => {
                let connector = Connector::from_env().unwrap();
                let _client = Client::builder(&connector)
                    .id("callee")
                    .router(echo_router())
                    .connect()
                    .await
                    .unwrap();
                println!("SB:ready");
                std::future::pending::<()>().await;
            }
            // Connects and says how it went: exit 0 with the answer, or 5
            // with the error.
            "connect-and-report" => {
                let connector = Connector::from_env().unwrap();
                let outcome = async {
                    let client = Client::builder(&connector)
                        .connect_timeout(Duration::from_secs(2))
                        .connect()
                        .await?;
                    client.request::<_, u64>("sleep", &1u64).await
                }
                .await;
                match outcome {
                    Ok(answer) => println!("SB:answer {answer}"),
                    Err(e) => {
                        println!("SB:error {e:?}");
                        std::process::exit(5);
                    }
                }
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

/// The child of the busy-polling tests: a server and a client on one
/// runtime of `flavor` ("current" or "multi") exchange 2,000 quick
/// messages, then idle until stdin closes.
pub fn quick_then_idle(flavor: &str) {
    let runtime = match flavor {
        "current" => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build()
    .unwrap();
    runtime.block_on(async {
        let server = Server::bind(&Connector::local(), echo_router())
            .await
            .unwrap();
        let client = Client::connect(server.connector()).await.unwrap();
        for i in 0..2_000u64 {
            let answer: Bytes = client.request("echo", &tagged(i, 16)).await.unwrap();
            assert_eq!(tag_of(&answer), i);
        }
        println!("SB:ready");
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
    });
}

/// CPU time (user + system) the process has used so far.
#[cfg(target_os = "linux")]
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}
