//! `switchboard serve` against hostile parameters (issue 19, part 4): shell
//! metacharacters reach the command as data and nothing else, and huge
//! parameters are refused (past the frame limit) or carried (below it)
//! with the serve process's memory a small multiple of their size, the
//! figure printed for SECURITY.md. The server is given its connector with
//! `--connector`, so the test talks to it with the library's client.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard::{Client, Config, Connector, Error};

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

/// `switchboard serve` on a fresh local connector, in a directory of its
/// own with `cat` as the route `echo`; stopped (stdin closed) when dropped.
struct Serve {
    process: Child,
    connector: Connector,
    dir: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        Serve::with_config("name = \"attacked\"\n[routes.echo]\ncommand = [\"cat\"]\n")
    }

    fn with_config(text: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tools.toml");
        std::fs::write(&config, text).unwrap();
        let runtime = dir.path().join("run");
        std::fs::create_dir(&runtime).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let connector = Connector::local();
        let mut process = Command::new(CLI)
            .args([
                "serve",
                config.to_str().unwrap(),
                "--connector",
                "env:SB_TEST_CONNECTOR",
            ])
            .env("SB_TEST_CONNECTOR", connector.dump_state())
            .env("XDG_RUNTIME_DIR", &runtime)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(process.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "@attacked");
        Serve {
            process,
            connector,
            dir,
        }
    }

    /// The most memory the process has used (VmHWM), in KiB.
    fn peak_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        drop(self.process.stdin.take());
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn shell_metacharacters_in_parameters_are_data() {
    let serve = Serve::start();
    let client = Client::connect(&serve.connector).await.unwrap();
    let hostile = "$(touch pwned1); `touch pwned2`; touch pwned3 | touch pwned4 && \
                   touch pwned5 > pwned6 * ? ~ ' \" \\ \n $HOME ${IFS} %s %n";
    let answer: String = client.request("echo", &hostile).await.unwrap();
    assert_eq!(answer, hostile);
    let left: Vec<_> = std::fs::read_dir(serve.dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with("pwned"))
        .collect();
    assert!(left.is_empty(), "a metacharacter ran something: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_parameters_are_refused_or_carried_with_bounded_memory() {
    let serve = Serve::start();
    // Over the socket, where the frame limit applies: through shared memory
    // (on by default on Linux) a large body is not bound by it.
    let mut socket_only = Config::default();
    socket_only.shared_memory = None;
    let client = Client::builder(&serve.connector)
        .config(socket_only)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let before = serve.peak_kib();
    // 32 MiB: under the 64 MiB frame limit, carried through `cat` and back.
    let big = "x".repeat(32 << 20);
    let answer: String = client.request("echo", &big).await.unwrap();
    assert_eq!(answer.len(), big.len());
    let peak = serve.peak_kib();
    // 100 MiB, past the frame limit: refused by the client before it is
    // sent (a frame that large would be refused by the server before it is
    // read: tests/attacks.rs, a_frame_claiming_gigabytes_...).
    let huge = "y".repeat(100 << 20);
    let error = client
        .request::<_, String>("echo", &huge)
        .await
        .unwrap_err();
    drop(huge);
    assert!(
        !matches!(error, Error::Disconnected),
        "the connection should survive a refused send: {error:?}"
    );
    let answer: String = client.request("echo", &"still here").await.unwrap();
    assert_eq!(answer, "still here");
    eprintln!(
        "serve figures: a 32 MiB parameter through `cat`: serve's peak memory {before} -> \
         {peak} KiB ({:.1} x the parameter); a 100 MiB parameter: {error}",
        (peak.saturating_sub(before)) as f64 / f64::from(32 << 10)
    );
    assert!(peak < before + 16 * (32 << 10), "peak {peak} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_runs_at_most_max_running_commands_at_once() {
    // Each command counts the commands running beside it (a directory
    // each, in the config's directory) and answers with that count.
    let serve = Serve::with_config(
        "name = \"attacked\"\nmax_running = 3\n[routes.count]\ncommand = [\"sh\", \"-c\", \
         \"mkdir running.$$; ls -d running.* | wc -l; sleep 0.2; rmdir running.$$\"]\n",
    );
    let client = std::sync::Arc::new(Client::connect(&serve.connector).await.unwrap());
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let client = std::sync::Arc::clone(&client);
            tokio::spawn(async move { client.request::<_, u64>("count", &()).await })
        })
        .collect();
    let mut most = 0;
    for call in calls {
        most = most.max(call.await.unwrap().unwrap());
    }
    eprintln!(
        "serve figures: 40 requests at once, max_running = 3: at most {most} commands ran together"
    );
    assert!((1..=3).contains(&most), "{most} commands ran at once");
}
