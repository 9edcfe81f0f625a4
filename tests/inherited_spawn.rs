//! `spawn_with_channel` itself, between real processes: the `Command`'s
//! arguments, environment changes and directory reach the child (on
//! Windows through our own `CreateProcessW` and its quoting), the child it
//! returns can be waited for and killed (std's and tokio's `Command`), and
//! on Windows the child inherits no handle of its parent but the channel's
//! and its standard streams, even an inheritable one.
//!
//! Children are this test executable run again with `SB_TEST_CHILD` set,
//! which makes `child_process_entry` act as the child. Run on Windows
//! under Wine by ci/windows.sh.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard::{Client, CommandExt, Connector, Router, Server};
use tokio::sync::mpsc;

const CHILD_ROLE: &str = "SB_TEST_CHILD";
const LONG: Duration = Duration::from_secs(30);
const CHILD_ARGS: [&str; 4] = [
    "child_process_entry",
    "--exact",
    "--nocapture",
    "--test-threads=1",
];

/// This test binary again, as a child process in `role`.
fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(CHILD_ARGS)
        .env(CHILD_ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
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
    if role == "handle-check" {
        println!("{}", leaky_handle());
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let client = Client::connect(&Connector::from_env().unwrap())
            .await
            .unwrap();
        let report = json!({
            "argv": std::env::args().skip(1 + CHILD_ARGS.len()).collect::<Vec<_>>(),
            "set": std::env::var("SB_TEST_SET").ok(),
            "pkg_name_present": std::env::var_os("CARGO_PKG_NAME").is_some(),
            "cwd": std::env::current_dir()
                .ok()
                .and_then(|dir| Some(dir.file_name()?.to_string_lossy().into_owned())),
            "leaky_handle": leaky_handle(),
        });
        let reply: String = client.request("report", &report).await.unwrap();
        assert_eq!(reply, "thanks");
        match role.as_str() {
            "report" => client.close().await,
            // Until killed: the parent keeps its end open.
            "wait" => client.closed().await,
            other => panic!("unknown role {other}"),
        }
    });
}

/// What the handle `SB_TEST_LEAKY_HANDLE` is in this process: whether it
/// is open, and the path of the file it names (Windows; null elsewhere or
/// without the variable).
fn leaky_handle() -> Value {
    let Some(value) = std::env::var("SB_TEST_LEAKY_HANDLE")
        .ok()
        .and_then(|value| value.parse::<u64>().ok())
    else {
        return Value::Null;
    };
    handle_report(value)
}

#[cfg(windows)]
fn handle_report(value: u64) -> Value {
    use windows_sys::Win32::Foundation::{GetHandleInformation, HANDLE};
    use windows_sys::Win32::Storage::FileSystem::GetFinalPathNameByHandleW;
    let handle = value as usize as HANDLE;
    let mut flags = 0;
    // SAFETY: reads a handle's flags; a handle that is not open fails.
    let open = unsafe { GetHandleInformation(handle, &mut flags) } != 0;
    let mut path = vec![0u16; 1024];
    let len = if open {
        // SAFETY: a buffer of the length given; a handle that is no file fails.
        unsafe { GetFinalPathNameByHandleW(handle, path.as_mut_ptr(), 1024, 0) }
    } else {
        0
    };
    let path = String::from_utf16_lossy(&path[..(len as usize).min(path.len())]);
    json!({"open": open, "path": path})
}

#[cfg(not(windows))]
fn handle_report(_: u64) -> Value {
    Value::Null
}

/// The spawn takes the program, arguments (quoted by the MSVC runtime's
/// rules on Windows), environment changes and directory from the
/// `Command`, on Windows as elsewhere. (The arguments are extra filters to
/// the child's libtest, which match nothing with `--exact`.)
#[tokio::test]
async fn the_commands_arguments_environment_and_directory_reach_the_child() {
    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "",
        "a b",
        r#"say "hi""#,
        r"back\slash\",
        r#"in\"side"#,
        "tab\there",
        "\u{fc}n\u{ef}",
    ];
    let mut worker = child("report")
        .args(args)
        .env("SB_TEST_SET", "set \u{fc}")
        .env_remove("CARGO_PKG_NAME")
        .current_dir(dir.path())
        .connector_env(channel.connector())
        .spawn_with_channel(channel)
        .unwrap();
    let report = next_report(&mut reports).await;
    assert!(worker.wait().unwrap().success());
    assert_eq!(report["argv"], json!(args), "{report}");
    assert_eq!(report["set"], json!("set \u{fc}"), "{report}");
    assert_eq!(report["pkg_name_present"], json!(false), "{report}");
    let name = dir.path().file_name().unwrap().to_string_lossy();
    assert_eq!(report["cwd"], json!(name), "{report}");
}

#[test]
fn wait_and_kill_work_on_a_child_spawned_with_a_channel() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (server, mut reports) = reporting_server().await;
        let channel = server.child_channel().unwrap();
        let mut worker = child("wait")
            .connector_env(channel.connector())
            .spawn_with_channel(channel)
            .unwrap();
        next_report(&mut reports).await;
        // Connected, and waiting for a parent that keeps its end open.
        assert!(worker.try_wait().unwrap().is_none());
        worker.kill().unwrap();
        let status = worker.wait().unwrap();
        assert!(!status.success(), "{status:?}");
        assert_eq!(worker.try_wait().unwrap(), Some(status));
    });
}

#[tokio::test]
async fn a_tokio_command_spawns_with_a_channel_and_waits_without_blocking() {
    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let mut worker = tokio::process::Command::from(child("report"))
        .connector_env(channel.connector())
        .spawn_with_channel(channel)
        .unwrap();
    assert!(worker.id().is_some());
    next_report(&mut reports).await;
    let status = tokio::time::timeout(LONG, worker.wait()).await.unwrap();
    assert!(status.unwrap().success());
    assert_eq!(worker.id(), None);

    let channel = server.child_channel().unwrap();
    let mut waiting = tokio::process::Command::from(child("wait"))
        .connector_env(channel.connector())
        .spawn_with_channel(channel)
        .unwrap();
    next_report(&mut reports).await;
    assert!(waiting.try_wait().unwrap().is_none());
    tokio::time::timeout(LONG, waiting.kill())
        .await
        .unwrap()
        .unwrap();
    let status = waiting.try_wait().unwrap().expect("killed and waited for");
    assert!(!status.success(), "{status:?}");
}

/// On Windows the child inherits its channel and its standard streams
/// through `PROC_THREAD_ATTRIBUTE_HANDLE_LIST`, and no other handle, even
/// an inheritable one. A child spawned with std's plain `spawn` shows that
/// the check sees a handle that is inherited. (Wine 8 honours the list;
/// were it to ignore it, this test would fail, not pass unnoticed.)
#[cfg(windows)]
#[tokio::test]
async fn the_child_inherits_no_other_handle() {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Foundation::{HANDLE_FLAG_INHERIT, SetHandleInformation};

    // A handle some library made inheritable: a plain spawn hands it to
    // every child.
    let leaky = tempfile::NamedTempFile::new().unwrap();
    let raw = leaky.as_file().as_raw_handle();
    // SAFETY: sets a flag on a handle this test owns.
    let set = unsafe { SetHandleInformation(raw as _, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT) };
    assert_ne!(set, 0);
    let value = (raw as usize).to_string();
    let name = leaky.path().file_name().unwrap().to_string_lossy();
    let names_the_file = |report: &Value| {
        report["open"] == json!(true) && report["path"].as_str().unwrap_or("").contains(&*name)
    };

    let control = child("handle-check")
        .env("SB_TEST_LEAKY_HANDLE", &value)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    // Its report follows libtest's "test child_process_entry ... ".
    let stdout = String::from_utf8_lossy(&control.stdout);
    let seen: Value = stdout
        .lines()
        .find_map(|line| serde_json::from_str(&line[line.find('{')?..]).ok())
        .unwrap_or_else(|| panic!("no report from the control child: {stdout}"));
    assert!(
        names_the_file(&seen),
        "a plain spawn should pass the inheritable handle {value}, or the check is blind: {seen}"
    );

    let (server, mut reports) = reporting_server().await;
    let channel = server.child_channel().unwrap();
    let mut worker = child("report")
        .connector_env(channel.connector())
        .env("SB_TEST_LEAKY_HANDLE", &value)
        .spawn_with_channel(channel)
        .unwrap();
    let report = next_report(&mut reports).await;
    assert!(worker.wait().unwrap().success());
    let seen = &report["leaky_handle"];
    assert!(
        !names_the_file(seen),
        "the child spawned with a channel inherited handle {value} ({name}): {seen}"
    );
}
