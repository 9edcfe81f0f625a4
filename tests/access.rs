//! Who may connect: sockets are for their owner only, another user's
//! process is refused unless allowed, and a handler can learn who called.

#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};

use switchboard::{Client, Connector, Context, HandlerError, Router, Server};

mod support;

use support::children;
#[cfg(target_os = "linux")]
use support::children::CHILD_ROLE;
#[cfg(unix)]
use support::pressure::echo_router;

#[cfg(unix)]
#[tokio::test]
async fn sockets_are_for_their_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let server = Server::bind(&Connector::unix_socket(&path).unwrap(), echo_router())
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    drop(server);
    let server = Server::bind(&Connector::local(), echo_router())
        .await
        .unwrap();
    let switchboard::Address::Unix(path) = server.connector().address() else {
        unreachable!()
    };
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
}

/// Runs a copy of this test binary as user `nobody`, connecting to
/// `connector`; returns its exit code and output.
#[cfg(target_os = "linux")]
fn connect_as_nobody(binary: &std::path::Path, connector: &Connector) -> (i32, String) {
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(binary)
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, "connect-and-report")
        .env("SWITCHBOARD_CONNECTOR", connector.dump_state())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let said = stdout
        .lines()
        .filter_map(|line| line.split_once("SB:").map(|(_, said)| said))
        .collect::<Vec<_>>()
        .join("\n");
    (output.status.code().unwrap_or(-1), said)
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_process_is_refused_unless_allowed() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !setpriv {
        eprintln!(
            "SKIPPED another_users_process_is_refused_unless_allowed: needs root and \
             setpriv to run a client as another user (root: {root}, setpriv: {setpriv})"
        );
        return;
    }
    // Everything `nobody` needs: a copy of this binary it may run, and a
    // directory it may enter.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.path().join("pressure-child");
    std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("s");
    let connector = Connector::unix_socket(&path).unwrap();

    // The default: the socket is 0600, so the file system stops nobody...
    let server = Server::bind(&connector, echo_router()).await.unwrap();
    let as_nobody = |connector: &Connector| {
        let (binary, connector) = (binary.clone(), connector.clone());
        tokio::task::spawn_blocking(move || connect_as_nobody(&binary, &connector))
    };
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!(code, 5, "{output}");
    assert!(output.contains("Connect"), "{output}");
    // ...and where it does not (some systems ignore socket permissions),
    // the uid check does, with a refusal that says why.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!(code, 5, "{output}");
    assert!(
        output.contains("Refused") && output.contains("user 65534 may not connect"),
        "{output}"
    );
    drop(server);

    // Let in by name, it gets its answer.
    let server = Server::builder(echo_router())
        .access(switchboard::Access::Users(vec![65534]))
        .bind(&connector)
        .await
        .unwrap();
    let (code, output) = as_nobody(server.connector()).await.unwrap();
    assert_eq!((code, output.as_str()), (0, "answer 1"));
}

#[tokio::test]
async fn a_handler_can_learn_who_called() {
    let router = Router::new().route("who", |ctx: Context, _: ()| async move {
        Ok::<_, HandlerError>((ctx.peer().process_id(), ctx.peer().user_id()))
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let (pid, uid): (Option<u32>, Option<u32>) = client.request("who", &()).await.unwrap();
    if cfg!(unix) {
        assert_eq!(pid, Some(std::process::id()));
        assert!(uid.is_some());
    }
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    children::entry();
}
