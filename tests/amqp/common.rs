//! What the broker tests share: unique service names, the routers their
//! servers serve, the broker's view of queues, and child processes (this
//! test binary run again).

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::{Bytes, Client, CommandExt, Connector, Context, HandlerError, Router, Server};

use crate::broker;

pub const CHILD_ROLE: &str = "SB_AMQP_TEST_CHILD";

/// A connector for a service name no other test uses (here or in another
/// run of this binary).
pub fn connector(test: &str) -> Connector {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let tag = format!(
        "{}-{}-{nanos:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    Connector::amqp(broker::url(), format!("test-{test}-{tag}")).unwrap()
}

pub fn service_of(connector: &Connector) -> String {
    match connector.address() {
        switchboard::Address::Amqp { service, .. } => service.clone(),
        other => panic!("not an AMQP connector: {other}"),
    }
}

pub fn router(instance: &str) -> Router {
    let instance = instance.to_owned();
    Router::new()
        .route("echo", |v: Value| async move { Ok::<_, HandlerError>(v) })
        .route("instance", move |_: ()| {
            let instance = instance.clone();
            async move { Ok::<_, HandlerError>(instance) }
        })
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
        .route("size", |data: Bytes| async move {
            Ok::<_, HandlerError>(data.len() as u64)
        })
        .route("bounce", |data: Bytes| async move {
            Ok::<_, HandlerError>(data)
        })
        // Calls the client back while handling the request.
        .route("ask_back", |ctx: Context, n: i64| async move {
            let doubled: i64 = ctx.request("double", &n).await?;
            ctx.throw("told", &json!({"from": "server", "n": doubled}))
                .await?;
            Ok::<_, HandlerError>(doubled + 1)
        })
}

/// The queues on the broker whose names start with `sb.<service>`.
pub fn queues_of(service: &str) -> Vec<String> {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(output.status.success(), "rabbitmqctl list_queues failed");
    let prefix = format!("sb.{service}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Waits (generously) until `check` holds for the service's queues.
pub async fn wait_for_queues(service: &str, what: &str, check: impl Fn(&[String]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let queues = queues_of(service);
        if check(&queues) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still on the broker after 30 s: {queues:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ----- child processes (this test binary run again) -----

/// Starts a child in `role` and waits (off the runtime, whose tasks must
/// go on serving) until it says it is ready.
pub async fn child(role: &str, connector: &Connector) -> (Child, BufReader<ChildStdout>) {
    let (role, connector) = (role.to_owned(), connector.clone());
    tokio::task::spawn_blocking(move || start_child(&role, &connector))
        .await
        .unwrap()
}

pub fn start_child(role: &str, connector: &Connector) -> (Child, BufReader<ChildStdout>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(CHILD_ROLE, role)
        .connector_env(connector)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut process = command.spawn().unwrap();
    let mut stdout = BufReader::new(process.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the {role} child ended before it was ready"
        );
        if line.trim() == "child-ready" {
            break;
        }
    }
    (process, stdout)
}

/// The body of the child processes: what this binary does instead of
/// running tests when [`CHILD_ROLE`] is set.
pub fn child_main(role: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connector = Connector::from_env().unwrap();
        match role {
            "server" => {
                let _server = Server::bind(&connector, router("child")).await.unwrap();
                println!("\nchild-ready");
                std::future::pending::<()>().await;
            }
            "client" => {
                let hang = Router::new().route("hang", |_: ()| async move {
                    std::future::pending::<()>().await;
                    Ok::<(), HandlerError>(())
                });
                let client = Client::builder(&connector)
                    .id("doomed")
                    .router(hang)
                    .connect()
                    .await
                    .unwrap();
                println!("\nchild-ready");
                client.closed().await;
            }
            other => panic!("unknown child role {other}"),
        }
    });
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ----- the tests -----
