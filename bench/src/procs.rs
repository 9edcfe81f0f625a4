//! Processes: spawning a server child (this binary re-executed as
//! `switchboard-bench serve SYSTEM ...`, or a Python script), reading what it
//! prints, stopping it, and the per-process knobs the harness needs
//! (open-file limit, resident memory).
//!
//! Every server child prints its address on stdout (one line, or a line per
//! connection for ipc-channel) and exits when its stdin closes, so a harness
//! that dies never leaves servers behind.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// How long a server may take to print a line before it counts as hung.
// communica over a broker takes 4 ms or more a round trip on a loaded
// machine: a full run's 10,000-round-trip warm-up is one command of a
// minute or more.
const LINE_TIMEOUT: Duration = Duration::from_secs(300);

/// A child process the harness talks to by lines: a server, or communica's
/// client driver.
pub struct ChildProcess {
    child: Child,
    /// Held open until drop: the child exits when it closes.
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    label: String,
}

impl ChildProcess {
    /// Re-executes this binary as `serve SYSTEM ARGS...`.
    pub fn spawn_self(system: &str, args: &[String]) -> Result<ChildProcess> {
        let exe = std::env::current_exe().context("locating the harness binary")?;
        let mut command = Command::new(exe);
        command.arg("serve").arg(system).args(args);
        ChildProcess::spawn(command, system)
    }

    /// Starts `command` with piped stdin and stdout (stderr passes through).
    pub fn spawn(mut command: Command, label: &str) -> Result<ChildProcess> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {label} process"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(ChildProcess {
            child,
            stdin,
            lines,
            label: label.to_owned(),
        })
    }

    /// The next line the server printed (its address, usually).
    pub fn next_line(&mut self) -> Result<String> {
        match self.lines.recv_timeout(LINE_TIMEOUT) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!(
                    "the {} process printed nothing for {LINE_TIMEOUT:?}",
                    self.label
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.try_wait().ok().flatten();
                Err(anyhow!(
                    "the {} process closed its stdout (exit status: {})",
                    self.label,
                    status.map_or("still running".into(), |s| s.to_string())
                ))
            }
        }
    }

    /// Writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().expect("stdin is open until drop");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("writing to the {} process", self.label))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// In a server child: run `cleanup` (remove socket files) and exit the
/// process when stdin reaches end of file (the harness closed it or died).
pub fn exit_when_stdin_closes(cleanup: impl FnOnce() + Send + 'static) {
    thread::spawn(move || {
        let mut sink = String::new();
        let mut stdin = std::io::stdin().lock();
        while matches!(stdin.read_line(&mut sink), Ok(n) if n > 0) {
            sink.clear();
        }
        cleanup();
        std::process::exit(0);
    });
}

/// Raises the soft open-file limit to the hard limit: 1,000 idle
/// connections need more than the usual default of 1,024 descriptors once
/// the runtime's own are counted.
pub fn raise_nofile_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Resident set size of a process in KiB (`VmRSS` in /proc/PID/status).
pub fn vm_rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

/// A fresh socket path in the temp directory for a server of this process.
pub fn socket_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sbbench-{}-{tag}.sock", std::process::id()))
}
