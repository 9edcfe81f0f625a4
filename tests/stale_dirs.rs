//! A server killed with SIGKILL leaves its private socket directory behind;
//! the next switchboard process that makes one removes it, and nothing
//! else: not a live server's, not another user's (not testable without a
//! second user), not one that is not a plain 0700 directory of ours.
//!
//! One test per process: the reaping runs once per process, at its first
//! private directory. The temp directory is a private one (TMPDIR), so
//! other test runs on the machine neither disturb nor are disturbed.

#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard::{Address, Client, Connector, Router, Server};

const CHILD_ROLE: &str = "SB_STALE_DIRS_CHILD";

/// Not a test: a server that prints its connector and serves until killed.
#[test]
fn child_process_entry() {
    if std::env::var_os(CHILD_ROLE).is_none() {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let router = Router::new().route("echo", |v: serde_json::Value| async move { v });
        let server = Server::bind(&Connector::local(), router).await.unwrap();
        println!("<<sb>>{}", server.connector().dump_state());
        std::future::pending::<()>().await;
    });
}

/// Starts a server process with `TMPDIR=temp`: its connector and socket
/// directory.
fn server_process(temp: &Path) -> (std::process::Child, Connector, PathBuf) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, "1")
        .env("TMPDIR", temp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("<<sb>>") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the server exited");
    }
    let connector = Connector::load_state(line.split_once("<<sb>>").unwrap().1.trim()).unwrap();
    let Address::Unix(path) = connector.address() else {
        panic!("not a Unix socket")
    };
    let dir = path.parent().unwrap().to_owned();
    (child, connector, dir)
}

#[tokio::test]
async fn a_killed_servers_socket_directory_is_reaped_by_the_next_server() {
    let temp = tempfile::tempdir().unwrap();
    // SAFETY: this binary's only test, before it starts any thread of its own.
    unsafe { std::env::set_var("TMPDIR", temp.path()) };
    let (mut dead, _, dead_dir) = server_process(temp.path());
    let (mut live, live_connector, live_dir) = server_process(temp.path());
    dead.kill().unwrap();
    dead.wait().unwrap();
    assert!(dead_dir.join("s").exists(), "SIGKILL left nothing to reap");
    // Look-alikes that must survive: a symlink to the dead directory, a
    // directory with something else in it, one with another mode.
    let symlink = temp.path().join("sb-symlink0000a");
    std::os::unix::fs::symlink(&dead_dir, &symlink).unwrap();
    let crowded = temp.path().join("sb-crowded0000a");
    std::fs::create_dir(&crowded).unwrap();
    std::fs::set_permissions(&crowded, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(crowded.join("s"), b"not a socket").unwrap();
    std::fs::write(crowded.join("other"), b"").unwrap();
    let open = temp.path().join("sb-open00000000");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Old enough not to be a server that is just starting.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let server = Server::bind(&Connector::local(), Router::new())
        .await
        .unwrap();
    assert!(
        !dead_dir.exists(),
        "the dead server's directory is still there"
    );
    for survivor in [&live_dir, &symlink, &crowded, &open] {
        assert!(
            std::fs::symlink_metadata(survivor).is_ok(),
            "{} was removed",
            survivor.display()
        );
    }
    // The live server still serves.
    let client = Client::connect(&live_connector).await.unwrap();
    let answer: u32 = client.request("echo", &7).await.unwrap();
    assert_eq!(answer, 7);
    client.close().await;
    live.kill().unwrap();
    live.wait().unwrap();
    drop(server);
}
