//! Inherited channels between real processes: a child spawned with one
//! end of a socketpair connects through it (async, blocking), sees no
//! other descriptor of its parent, connects from a mount namespace with an
//! empty /tmp, connects once, does not reconnect, and notices a parent
//! killed with SIGKILL, which leaves nothing on disk.
//!
//! Children are this test executable run again with `SB_TEST_CHILD` set,
//! which makes `child_process_entry` act as the child. The tests run on
//! Windows too (a pipe pair instead of a socketpair), except those that
//! read /proc or need `unshare`. What the spawn itself does (the
//! `Command`'s settings, wait and kill, no other handle on Windows) is
//! tested in tests/inherited_spawn.rs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{
    Address, ChildChannel, Client, CommandExt, Connector, LinkState, Reconnect, Router, Server,
};
use tokio::sync::mpsc;

mod support;

use support::descriptors::own_descriptors;

const CHILD_ROLE: &str = "SB_TEST_CHILD";
const LONG: Duration = Duration::from_secs(30);

/// This test binary again, as a child process in `role`.
fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(child_args())
        .env(CHILD_ROLE, role)
        .stdin(Stdio::null());
    command
}

fn child_args() -> [&'static str; 4] {
    [
        "child_process_entry",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// A server that listens nowhere, whose "report" route hands each child's
/// report to the test.
async fn reporting_server() -> (Server, mpsc::UnboundedReceiver<Value>) {
    let (reports, received) = mpsc::unbounded_channel();
    let router = Router::new().route("report", move |report: Value| {
        let reports = reports.clone();
        async move {
            let _ = reports.send(report);
            "thanks"
        }
    });
    let server = Server::builder(router)
        .channels_only(&Connector::local())
        .await
        .unwrap();
    (server, received)
}

async fn next_report(received: &mut mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(LONG, received.recv())
        .await
        .expect("the child reported within 30 s")
        .expect("the server is alive")
}

/// Not a test: the body of the child processes. Without `SB_TEST_CHILD`
/// it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    if role == "blocking" {
        let connector = Connector::from_env().unwrap();
        let client = switchboard::blocking::Client::connect(&connector).unwrap();
        let reply: String = client
            .request(
                "report",
                &json!({"role": "blocking", "pid": std::process::id()}),
            )
            .unwrap();
        assert_eq!(reply, "thanks");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        match role.as_str() {
            "report" => report().await,
            "wait-for-parent" => wait_for_parent().await,
            "no-reconnect" => no_reconnect().await,
            "parent" => parent().await,
            other => panic!("unknown role {other}"),
        }
    });
}

/// Connects, reports what it sees, then tries the connector again.
async fn report() {
    // Taken before the runtime's descriptors are the only ones left: what
    // this process was started with.
    let connector = Connector::from_env().unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let second = match Client::connect(&connector).await {
        Ok(_) => "connected twice".to_owned(),
        Err(e) => e.to_string(),
    };
    let tmp_entries = std::fs::read_dir("/tmp").map(|dir| dir.count()).ok();
    let parent_socket = std::env::var("SB_TEST_PARENT_SOCKET").ok();
    let report = json!({
        "role": "report",
        "fds": own_descriptors(),
        "second": second,
        "tmp_entries": tmp_entries,
        "parent_socket_visible": parent_socket.map(|path| std::path::Path::new(&path).exists()),
        "shares_memory": client.peer().shares_memory(),
    });
    let reply: String = client.request("report", &report).await.unwrap();
    assert_eq!(reply, "thanks");
    client.close().await;
}

/// Connects, says so on stdout, and waits for the link to drop.
async fn wait_for_parent() {
    let connector = Connector::from_env().unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let _: String = client
        .request("report", &json!({"role": "waiting"}))
        .await
        .unwrap();
    println!("connected");
    if tokio::time::timeout(LONG, client.closed()).await.is_ok() {
        println!("disconnected");
    } else {
        println!("still connected after 30 s");
    }
}

/// Connects with reconnect on, and reports how the link state goes when
/// the parent closes it.
async fn no_reconnect() {
    let connector = Connector::from_env().unwrap();
    let client = Client::builder(&connector)
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(1)))
        .connect()
        .await
        .unwrap();
    let mut states = client.link_state();
    let _: String = client
        .request("report", &json!({"role": "no-reconnect"}))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let ended = tokio::time::timeout(LONG, async {
        loop {
            if states.changed().await.is_err() {
                return;
            }
            let state = *states.borrow();
            seen.push(format!("{state:?}"));
            if state == LinkState::Closed {
                return;
            }
        }
    })
    .await;
    // A file, not stdout: on Windows the child's standard streams are the
    // parent's whatever the `Command` says.
    let line = format!("states: {seen:?} ended: {}", ended.is_ok());
    std::fs::write(std::env::var("SB_TEST_OUTPUT").unwrap(), line).unwrap();
}

/// A parent of its own (for the SIGKILL test): serves a grandchild
/// through a channel, says when it is connected, and waits to be killed.
async fn parent() {
    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let mut grandchild = child("wait-for-parent");
    grandchild
        .connector_env(channel.connector())
        .stdout(Stdio::inherit());
    let mut grandchild = grandchild.spawn_with_channel(channel).unwrap();
    next_report(&mut reports).await;
    println!("ready {}", grandchild.id());
    // Killed meanwhile: the grandchild outlives this process.
    let _ = tokio::task::spawn_blocking(move || grandchild.wait()).await;
}

fn spawn_reporting(role: &str, channel: ChildChannel) -> <Command as CommandExt>::Child {
    child(role)
        .connector_env(channel.connector())
        .stdout(Stdio::null())
        .spawn_with_channel(channel)
        .unwrap()
}

#[tokio::test]
async fn a_child_connects_through_its_inherited_end_once() {
    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let Address::Inherited { number, .. } = *channel.connector().address() else {
        panic!("{:?}", channel.connector());
    };
    let mut worker = spawn_reporting("report", channel);
    let report = next_report(&mut reports).await;
    assert!(worker.wait().unwrap().success());
    // The second connect with the same connector is refused, clearly.
    let second = report["second"].as_str().unwrap();
    let what = if cfg!(windows) {
        format!("handle {number:#x}")
    } else {
        format!("descriptor {number}")
    };
    assert!(
        second.contains(&format!("inherited channel {what} was already used")),
        "{second}"
    );
    // Shared memory is set up over an inherited channel as over a socket
    // file or a named pipe, where the platform has it.
    assert_eq!(
        report["shares_memory"],
        json!(cfg!(any(target_os = "linux", windows))),
        "{report}"
    );
    if cfg!(target_os = "linux") {
        // The channel's descriptor is among the child's, and is a socket.
        let fds = report["fds"].as_array().unwrap();
        assert!(
            fds.iter()
                .any(|fd| fd[0] == json!(number) && fd[1].as_str().unwrap().starts_with("socket:")),
            "{fds:?}"
        );
    }
}

#[test]
fn a_blocking_child_connects_through_its_inherited_end() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (server, mut reports) = reporting_server().await;
        let mut worker = spawn_reporting("blocking", server.child_channel().unwrap());
        let report = next_report(&mut reports).await;
        assert_eq!(report["role"], "blocking");
        assert_eq!(report["pid"], json!(worker.id()));
        assert!(worker.wait().unwrap().success());
    });
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_child_inherits_no_other_descriptor() {
    use std::os::fd::AsRawFd;
    // A descriptor some library opened without close-on-exec: a plain
    // spawn would hand it to every child.
    let leaky = tempfile::NamedTempFile::new().unwrap();
    let fd = leaky.as_file().as_raw_fd();
    // SAFETY: clears a flag on a descriptor this test owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let leaky_path = leaky.path().to_string_lossy().into_owned();

    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let Address::Inherited { number, .. } = *channel.connector().address() else {
        unreachable!()
    };
    // What this process holds as the child is spawned, the channel's end
    // among it.
    let ours: Vec<String> = list_descriptors("/proc/self/fd");
    let end = std::fs::read_link(format!("/proc/self/fd/{number}"))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut worker = spawn_reporting("report", channel);
    let report = next_report(&mut reports).await;
    assert!(worker.wait().unwrap().success());
    let fds: Vec<(i64, String)> = serde_json::from_value(report["fds"].clone()).unwrap();
    assert!(
        !fds.iter().any(|(_, target)| *target == leaky_path),
        "the child inherited {leaky_path}: {fds:?}"
    );
    // Of everything this process held, the child has the channel's end
    // only, under its number; the rest it opened itself (its runtime's
    // epoll and eventfd, which look alike everywhere, and the directory
    // it listed).
    let shared: Vec<_> = fds
        .iter()
        .filter(|(_, target)| {
            ours.contains(target)
                && !target.starts_with("/proc/")
                && !target.starts_with("anon_inode:")
        })
        .collect();
    assert_eq!(shared, [&(i64::try_from(number).unwrap(), end)], "{fds:?}");
    // And this process still holds its own.
    assert!(std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok());
}

#[cfg(target_os = "linux")]
fn list_descriptors(dir: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .map(|target| target.to_string_lossy().into_owned())
        .collect()
}

/// `unshare`, where it can make a mount namespace here (root, and the
/// command present); otherwise why not.
fn unshare_available() -> Result<(), String> {
    match Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "unshare -m failed here (not root?): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("unshare is not installed ({e})")),
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_child_in_its_own_mount_namespace_with_an_empty_tmp_connects() {
    if let Err(why) = unshare_available() {
        println!("SKIPPED a_child_in_its_own_mount_namespace_with_an_empty_tmp_connects: {why}");
        return;
    }
    let (reports, mut received) = mpsc::unbounded_channel();
    let router = Router::new().route("report", move |report: Value| {
        let reports = reports.clone();
        async move {
            let _ = reports.send(report);
            "thanks"
        }
    });
    // This parent also listens on a socket file in /tmp, which the child
    // cannot see.
    let socket_dir = tempfile::tempdir_in("/tmp").unwrap();
    let connector = Connector::unix_socket(socket_dir.path().join("s")).unwrap();
    let server = Server::bind(&connector, router).await.unwrap();
    let channel = server.child_channel().unwrap();
    let mut worker = Command::new("unshare");
    worker
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs none /tmp && exec "$0" "$@""#)
        .arg(std::env::current_exe().unwrap())
        .args(child_args())
        .env(CHILD_ROLE, "report")
        .env("SB_TEST_PARENT_SOCKET", socket_dir.path().join("s"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .connector_env(channel.connector());
    let mut worker = worker.spawn_with_channel(channel).unwrap();
    let report = next_report(&mut received).await;
    assert!(worker.wait().unwrap().success());
    assert_eq!(report["tmp_entries"], json!(0), "{report}");
    assert_eq!(report["parent_socket_visible"], json!(false), "{report}");
    assert!(socket_dir.path().join("s").exists());
}

#[tokio::test]
async fn a_child_does_not_reconnect_a_closed_channel() {
    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let output = tempfile::NamedTempFile::new().unwrap();
    let mut worker = child("no-reconnect")
        .connector_env(channel.connector())
        .env("SB_TEST_OUTPUT", output.path())
        .stdout(Stdio::null())
        .spawn_with_channel(channel)
        .unwrap();
    next_report(&mut reports).await;
    // The parent closes its end (the whole server, here).
    drop(server);
    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    let stdout = std::fs::read_to_string(output.path()).unwrap();
    assert!(status.success(), "{stdout}");
    // Straight to Closed: no Down state, no reconnect attempts.
    assert!(
        stdout.contains(r#"states: ["Closed"] ended: true"#),
        "{stdout}"
    );
}

#[test]
fn a_parent_killed_with_sigkill_leaves_nothing_and_its_child_notices() {
    let tmp = tempfile::tempdir().unwrap();
    let mut parent = child("parent")
        .env("TMPDIR", tmp.path())
        .env("TMP", tmp.path())
        .env("TEMP", tmp.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines from the parent and the grandchild, which share the pipe (and
    // print after libtest's own "test child_process_entry ... ").
    let (sender, lines) = std::sync::mpsc::channel();
    let stdout = BufReader::new(parent.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    let next = || lines.recv_timeout(LONG).expect("a line within 30 s");
    let (mut ready, mut connected) = (false, false);
    while !ready || !connected {
        let line = next();
        ready |= line.contains("ready ");
        connected |= line.ends_with("connected") && !line.ends_with("disconnected");
    }
    parent.kill().unwrap();
    parent.wait().unwrap();
    // The grandchild sees the link drop.
    loop {
        let line = next();
        assert!(!line.contains("still connected"), "{line}");
        if line.ends_with("disconnected") {
            break;
        }
    }
    // Nothing was created on disk: the temp directory the parent was
    // given is empty.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn the_sandboxed_workers_example_hands_out_all_work() {
    let stdout = support::run_to_success(&mut Command::new(support::example("sandboxed_workers")));
    assert!(
        stdout.contains("24 of 24 items came back correct"),
        "{stdout}"
    );
    match unshare_available() {
        Ok(()) => {
            assert!(
                stdout.contains("4 of 4 workers had a mount namespace of their own"),
                "{stdout}"
            );
            assert_eq!(stdout.matches("/tmp has 0 entries").count(), 4, "{stdout}");
        }
        Err(why) => println!("the workers ran unconfined ({why}): {stdout}"),
    }
}
