//! The AMQP connector against the real RabbitMQ broker on 127.0.0.1:5672
//! (guest/guest): conversations both ways, several server instances,
//! killed processes, a cut broker connection, wrong secrets, cleanup of
//! queues, large bodies, and the connector string.
//!
//! Every test uses its own service name, so they run in parallel; the one
//! that cuts broker connections cuts only those of its own service (the
//! broker is shared with everything else on the machine).
//!
//! Not built for Windows: the tests drive `rabbitmqctl`, which runs on the
//! broker's host (under Wine, the connector itself works).
#![cfg(all(feature = "amqp", not(windows)))]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::{
    Bytes, Client, CommandExt, Connector, Context, Error, Format, HandlerError, LinkState,
    Reconnect, Router, Secret, Server,
};
use tokio::sync::mpsc;

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const CHILD_ROLE: &str = "SB_AMQP_TEST_CHILD";

/// Checks that the broker answers.
fn require_broker() {
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5672".parse().unwrap(),
        Duration::from_secs(5),
    )
    .is_err()
    {
        panic!(
            "RabbitMQ does not answer on 127.0.0.1:5672: these tests need a real broker \
             (start one with `rabbitmq-server -detached`; CI starts it in .ci/run)"
        );
    }
}

/// A connector for a service name no other test uses (here or in another
/// run of this binary).
fn connector(test: &str) -> Connector {
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
    Connector::amqp(URL, format!("test-{test}-{tag}")).unwrap()
}

fn service_of(connector: &Connector) -> String {
    match connector.address() {
        switchboard::Address::Amqp { service, .. } => service.clone(),
        other => panic!("not an AMQP connector: {other}"),
    }
}

fn router(instance: &str) -> Router {
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
fn queues_of(service: &str) -> Vec<String> {
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
async fn wait_for_queues(service: &str, what: &str, check: impl Fn(&[String]) -> bool) {
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
async fn child(role: &str, connector: &Connector) -> (Child, BufReader<ChildStdout>) {
    let (role, connector) = (role.to_owned(), connector.clone());
    tokio::task::spawn_blocking(move || start_child(&role, &connector))
        .await
        .unwrap()
}

fn start_child(role: &str, connector: &Connector) -> (Child, BufReader<ChildStdout>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .connector_env(connector)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut process = command.spawn().unwrap();
    let mut stdout = BufReader::new(process.stdout.take().unwrap());
    // The harness prints its own lines first.
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

/// Not a test: the body of the child processes. Returns at once unless
/// `SB_AMQP_TEST_CHILD` is set.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connector = Connector::from_env().unwrap();
        match role.as_str() {
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

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ----- the tests -----

#[tokio::test]
async fn requests_notifications_and_callbacks_both_ways() {
    require_broker();
    for format in [Format::Json, Format::MsgPack] {
        let connector = connector("both-ways").with_format(format);
        let (tx, mut told) = mpsc::unbounded_channel();
        let server_tx = tx.clone();
        let server = Server::bind(
            &connector,
            router("a").route("told", move |v: Value| {
                let tx = server_tx.clone();
                async move {
                    let _ = tx.send(v);
                    Ok::<_, HandlerError>(())
                }
            }),
        )
        .await
        .unwrap();
        let client_routes = Router::new()
            .route(
                "double",
                |n: i64| async move { Ok::<_, HandlerError>(n * 2) },
            )
            .route("told", move |v: Value| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(v);
                    Ok::<_, HandlerError>(())
                }
            });
        let client = Client::builder(server.connector())
            .id("worker-1")
            .router(client_routes)
            .connect()
            .await
            .unwrap();
        assert_eq!(client.peer().format(), format);
        assert_eq!(client.peer().process_id(), None);

        // Client to server, many in flight.
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let peer = client.peer().clone();
                tokio::spawn(
                    async move { peer.request::<_, Value>("echo", &json!({"i": i})).await },
                )
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.unwrap().unwrap(), json!({"i": i}));
        }
        // The server calls the client back inside a handler.
        let n: i64 = client.request("ask_back", &20).await.unwrap();
        assert_eq!(n, 41);
        // Server to client, by id.
        server.wait_for_clients(1).await;
        assert_eq!(server.clients(), vec!["worker-1".to_string()]);
        let doubled: i64 = server.request("worker-1", "double", &7).await.unwrap();
        assert_eq!(doubled, 14);
        server
            .throw("worker-1", "told", &json!({"from": "server-direct"}))
            .await
            .unwrap();
        client
            .throw("told", &json!({"from": "client"}))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let note = tokio::time::timeout(Duration::from_secs(10), told.recv())
                .await
                .expect("notifications arrive")
                .unwrap();
            seen.push(note["from"].as_str().unwrap().to_owned());
        }
        seen.sort();
        assert_eq!(seen, ["client", "server", "server-direct"]);
        // Errors still say whose fault it was.
        assert!(matches!(
            client.request::<_, Value>("nope", &()).await,
            Err(Error::NoSuchRoute { .. })
        ));
        // A timeout cancels the request; the connection stays usable.
        assert!(matches!(
            client
                .request_timeout::<_, u64>("sleep", &5_000u64, Duration::from_millis(200))
                .await,
            Err(Error::Timeout(_))
        ));
        let again: Value = client.request("echo", &"still here").await.unwrap();
        assert_eq!(again, json!("still here"));
        client.close().await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn two_instances_share_the_clients_and_each_client_stays_with_one() {
    require_broker();
    let connector = connector("two-instances");
    let a = Server::bind(&connector, router("a")).await.unwrap();
    let b = Server::bind(&connector, router("b")).await.unwrap();
    let mut clients = Vec::new();
    for n in 0..8 {
        clients.push(
            Client::builder(&connector)
                .id(format!("c{n}"))
                .connect()
                .await
                .unwrap(),
        );
    }
    let mut per_instance = std::collections::BTreeMap::new();
    for client in &clients {
        let first: String = client.request("instance", &()).await.unwrap();
        for _ in 0..5 {
            let again: String = client.request("instance", &()).await.unwrap();
            assert_eq!(again, first, "a client's calls stay on one instance");
        }
        *per_instance.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        per_instance.len(),
        2,
        "both instances got clients: {per_instance:?}"
    );
    assert_eq!(a.clients().len() + b.clients().len(), 8);
    assert_eq!(a.clients().len(), per_instance["a"]);
    // When one instance goes, new clients reach the other.
    drop(clients);
    a.shutdown().await;
    for _ in 0..3 {
        let client = Client::connect(&connector).await.unwrap();
        let instance: String = client.request("instance", &()).await.unwrap();
        assert_eq!(instance, "b");
    }
}

#[tokio::test]
async fn a_killed_server_instance_fails_pending_requests_within_seconds() {
    require_broker();
    let connector = connector("killed-server");
    let (process, _stdout) = child("server", &connector).await;
    let mut process = Killed(process);
    let client = Client::connect(&connector).await.unwrap();
    let instance: String = client.request("instance", &()).await.unwrap();
    assert_eq!(instance, "child");
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &120_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    process.0.kill().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending request failed well before its 120 s")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    eprintln!(
        "pending request failed {:?} after SIGKILL",
        killed_at.elapsed()
    );
    // Nothing of the dead instance stays on the broker.
    let service = service_of(&connector);
    wait_for_queues(&service, "the killed instance's queues", |q| q.is_empty()).await;
}

#[tokio::test]
async fn a_killed_client_process_fails_the_servers_request_and_leaves_no_queue() {
    require_broker();
    let connector = connector("killed-client");
    let service = service_of(&connector);
    let server = Server::bind(&connector, Router::new()).await.unwrap();
    let (process, _stdout) = child("client", &connector).await;
    let mut process = Killed(process);
    tokio::time::timeout(Duration::from_secs(30), server.wait_for_clients(1))
        .await
        .unwrap();
    // Service queue, and two inboxes and two presence queues.
    assert_eq!(queues_of(&service).len(), 5, "{:?}", queues_of(&service));
    let peer = server.client("doomed").unwrap();
    let pending = tokio::spawn(async move { peer.request::<_, ()>("hang", &()).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    process.0.kill().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the server's request failed within seconds")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    // Only the service queue stays while the instance lives...
    // (named by the secret's fingerprint: PROTOCOL.md §7)
    let service_queue = format!("sb.{service}.k.");
    wait_for_queues(
        &service,
        "the dead client's link",
        |q| matches!(q, [only] if only.starts_with(&service_queue)),
    )
    .await;
    // ...and it goes with the instance.
    drop(server);
    wait_for_queues(&service, "the service queue", |q| q.is_empty()).await;
}

#[tokio::test]
async fn clients_that_close_leave_nothing_behind() {
    require_broker();
    let connector = connector("cleanup");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    for _ in 0..3 {
        let client = Client::connect(&connector).await.unwrap();
        let _: Value = client.request("echo", &1).await.unwrap();
        client.close().await;
    }
    let dropped = Client::connect(&connector).await.unwrap();
    drop(dropped);
    // (named by the secret's fingerprint: PROTOCOL.md §7)
    let service_queue = format!("sb.{service}.k.");
    wait_for_queues(
        &service,
        "closed clients' links",
        |q| matches!(q, [only] if only.starts_with(&service_queue)),
    )
    .await;
    server.shutdown().await;
    wait_for_queues(&service, "the service queue", |q| q.is_empty()).await;
}

/// Closes, from the broker side, the broker connections of `service` (its
/// server instances' and its clients') and no other; returns how many.
fn cut_connections_of(service: &str) -> usize {
    let output = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl list_connections failed"
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    // The connection name ("switchboard client <service>") ends the
    // property with a quote, so a longer service name does not match.
    let name_end = format!(" {service}\"}}");
    let pids: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains(&name_end))
        .filter_map(|line| line.split('\t').next())
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args(["-q", "close_connection", pid, "switchboard test: cut"])
            .status()
            .expect("rabbitmqctl runs");
        assert!(
            status.success(),
            "rabbitmqctl close_connection {pid} failed"
        );
    }
    pids.len()
}

#[tokio::test]
async fn cutting_the_broker_connections_fails_pending_requests_and_clients_come_back() {
    require_broker();
    let connector = connector("cut");
    let service = service_of(&connector);
    let (errors_tx, _errors) = mpsc::unbounded_channel();
    let server = Server::builder(router("a"))
        .on_error(move |e| {
            let _ = errors_tx.send(e.to_string());
        })
        .bind(&connector)
        .await
        .unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &120_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut_at = Instant::now();
    // The server instance's and the client's: this test's only.
    assert_eq!(cut_connections_of(&service), 2);
    let result = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the pending request failed well before its 120 s")
        .unwrap();
    assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    eprintln!(
        "pending request failed {:?} after the cut",
        cut_at.elapsed()
    );
    // The server instance reconnects to the broker; new clients reach it.
    let again = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let answer: Value = again.request("echo", &"back").await.unwrap();
    assert_eq!(answer, json!("back"));
    again.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_refused() {
    require_broker();
    let connector = connector("wrong-secret");
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let wrong = connector.clone().with_secret(Secret::generate());
    let started = Instant::now();
    let result = Client::builder(&wrong)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    // No instance holds that secret, so none is reached (PROTOCOL.md §7,
    // "Instances"): told so, not an authentication failure.
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if source.to_string().contains("holds this connector's secret")),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "gave up at the connect timeout"
    );
    // No secret at all finds no instance either.
    let none = connector.clone().without_secret();
    let result = Client::builder(&none)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if source.to_string().contains("without a secret")),
        "{result:?}"
    );
    // And the right one still works.
    let client = Client::connect(&connector).await.unwrap();
    let _: Value = client.request("echo", &1).await.unwrap();
    client.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn connecting_waits_for_a_server_until_the_connect_timeout() {
    require_broker();
    let connector = connector("no-server");
    let started = Instant::now();
    let result = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await;
    // "Not found" from the last attempt, or the deadline cut an attempt.
    assert!(
        matches!(&result, Err(Error::Connect { source, .. })
            if matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::TimedOut)),
        "{result:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "it retried"
    );
    // A server that starts while the client is trying is found.
    let late = connector.clone();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Server::bind(&late, router("late")).await.unwrap()
    });
    let client = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(30))
        .connect()
        .await
        .unwrap();
    let instance: String = client.request("instance", &()).await.unwrap();
    assert_eq!(instance, "late");
    client.close().await;
    server.await.unwrap().shutdown().await;
}

#[tokio::test]
async fn large_bodies_are_split_and_reassembled() {
    require_broker();
    let connector = connector("large").with_format(Format::MsgPack);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let body: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let body = Bytes::from(body);
    let size: u64 = client.request("size", &body).await.unwrap();
    assert_eq!(size, body.len() as u64);
    let back: Bytes = client.request("bounce", &body).await.unwrap();
    assert!(back == body, "8 MiB came back intact");
    // JSON too (an array of numbers, much larger on the wire).
    let json_connector = connector.clone().with_format(Format::Json);
    let json_client = Client::connect(&json_connector).await.unwrap();
    let small = Bytes::from(vec![7u8; 1024 * 1024]);
    let size: u64 = json_client.request("size", &small).await.unwrap();
    assert_eq!(size, small.len() as u64);
    client.close().await;
    json_client.close().await;
    server.shutdown().await;
}

#[test]
fn the_connector_string_round_trips_and_hides_the_password() {
    let password = "pw-Zq8-never-shown";
    let connector = Connector::amqp(
        format!("amqp://app:{password}@127.0.0.1:5672/%2f"),
        "jobs.v1",
    )
    .unwrap()
    .with_secret(Secret::from_bytes(b"secret-bytes-NEVER-SHOWN".to_vec()).unwrap());
    let dumped = connector.dump_state();
    assert!(dumped.starts_with("sb1:"));
    assert!(
        dumped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_:-".contains(&b)),
        "{dumped}"
    );
    let loaded = Connector::load_state(&dumped).unwrap();
    assert_eq!(loaded, connector);
    assert_eq!(loaded.address().kind(), "amqp");
    assert!(!loaded.address().is_local());
    let secret = "NEVER-SHOWN";
    for shown in [
        format!("{connector}"),
        format!("{connector:?}"),
        format!("{}", connector.address()),
        format!("{:?}", connector.address()),
    ] {
        assert!(!shown.contains(password), "{shown}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
    // Bad input is refused without echoing the password.
    for (url, service) in [
        (format!("http://app:{password}@h"), "ok"),
        (format!("amqp://app:{password}@h"), "bad name"),
        (format!("amqps://app:{password}@h"), "ok"),
    ] {
        let error = Connector::amqp(&url, service).unwrap_err();
        assert!(!error.to_string().contains(password), "{error}");
        assert!(!format!("{error:?}").contains(password), "{error:?}");
    }
}

#[tokio::test]
async fn connect_errors_do_not_show_the_password() {
    let password = "pw-Kk3-never-shown";
    // Nothing listens on port 1.
    let connector = Connector::amqp(format!("amqp://app:{password}@127.0.0.1:1/%2f"), "x").unwrap();
    let error = Client::builder(&connector)
        .connect_timeout(Duration::from_millis(300))
        .connect()
        .await
        .unwrap_err();
    assert!(!error.to_string().contains(password), "{error}");
    assert!(!format!("{error:?}").contains(password), "{error:?}");
    let bind = Server::bind(&connector, Router::new()).await.unwrap_err();
    assert!(!bind.to_string().contains(password), "{bind}");
    assert!(!format!("{bind:?}").contains(password), "{bind:?}");
}

#[tokio::test]
async fn many_clients_in_flight_on_one_instance() {
    require_broker();
    let connector = connector("many");
    let server = Arc::new(Server::bind(&connector, router("a")).await.unwrap());
    let mut tasks = Vec::new();
    for n in 0..6 {
        let connector = connector.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::builder(&connector)
                .id(format!("m{n}"))
                .connect()
                .await
                .unwrap();
            for i in 0..30 {
                let v: Value = client.request("echo", &json!([n, i])).await.unwrap();
                assert_eq!(v, json!([n, i]));
            }
            client.close().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    drop(server);
}

#[test]
fn the_parent_child_demo_runs_over_the_broker() {
    require_broker();
    // target/<profile>/deps/amqp-<hash> -> target/<profile>/examples/parent_child
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("parent_child{}", std::env::consts::EXE_SUFFIX));
    assert!(
        example.exists(),
        "{} not built: run `cargo test --features amqp` (which builds the examples)",
        example.display()
    );
    let output = Command::new(example)
        .args(["--amqp", URL])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("serving at amqp:parent-child-"), "{stdout}");
    assert!(
        stdout.contains("24 of 24 items came back correct"),
        "{stdout}"
    );
    assert!(stdout.contains("2 via argv, 2 via environment"), "{stdout}");
}

#[tokio::test]
async fn bytes_injected_by_someone_with_broker_access_end_the_connection() {
    require_broker();
    let connector = connector("inject");
    let service = service_of(&connector);
    let (errors_tx, mut errors) = mpsc::unbounded_channel();
    let server = Server::builder(router("a"))
        .on_error(move |e| {
            let _ = errors_tx.send(format!("{e:?}"));
        })
        .bind(&connector)
        .await
        .unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let _: Value = client.request("echo", &1).await.unwrap();
    let server_inbox = queues_of(&service)
        .into_iter()
        .find(|q| q.contains(".s.") && !q.ends_with(".alive"))
        .expect("the instance's inbox for this client");
    // A well-formed frame (a notification) with a forged tag, published
    // by another broker user straight into the instance's inbox.
    let intruder = lapin::Connection::connect(URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = intruder.create_channel().await.unwrap();
    let mut forged = vec![8, 0, 0, 0, 2, 4, 0, b'e', b'c', b'h', b'o', b'1'];
    forged.extend_from_slice(&[0u8; 32]);
    channel
        .basic_publish(
            "".into(),
            server_inbox.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &forged,
            lapin::BasicProperties::default(),
        )
        .await
        .unwrap();
    let reported = tokio::time::timeout(Duration::from_secs(10), errors.recv())
        .await
        .expect("the server reports the forged message")
        .unwrap();
    assert!(reported.contains("integrity"), "{reported}");
    tokio::time::timeout(Duration::from_secs(10), client.closed())
        .await
        .expect("the client's connection ends too");
    assert!(matches!(
        client.request::<_, Value>("echo", &2).await,
        Err(Error::Disconnected | Error::Closed)
    ));
    let _ = intruder.close(200, "done".into()).await;
    server.shutdown().await;
}

/// A client attempt that finds no server keeps its broker connection for
/// the next attempt. lapin sends a connection's heartbeats from a task on
/// the runtime that opened it, so an attempt on another runtime must not
/// take it: once that runtime ends, the broker drops the connection for
/// missed heartbeats and with it a healthy link (this is what dropped
/// connections "at the 60 s renewal" when the tests ran together: each
/// `#[tokio::test]` has its own runtime, and RabbitMQ's default heartbeat
/// is 60 s).
#[tokio::test]
async fn a_connection_outlives_the_runtime_of_an_earlier_attempt() {
    require_broker();
    let service = service_of(&connector("other-runtime"));
    // A 2 s heartbeat: the broker drops a silent connection within seconds.
    let connector = Connector::amqp(format!("{URL}?heartbeat=2"), service).unwrap();
    let early = connector.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(
            Client::builder(&early)
                .connect_timeout(Duration::from_secs(1))
                .connect(),
        );
        assert!(
            matches!(&result, Err(Error::Connect { .. })),
            "no server yet: {result:?}"
        );
    })
    .join()
    .unwrap();
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    // Several heartbeat timeouts, longer than the links' keepalive interval.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let answer: Value = client.request("echo", &"still here").await.unwrap();
    assert_eq!(answer, json!("still here"));
    client.close().await;
    server.shutdown().await;
}

/// Each side renews its presence token every 60 s (so the broker's
/// consumer_timeout never closes its channel); a renewal must not look like
/// the peer going away.
#[tokio::test]
async fn connections_outlive_the_presence_token_renewal() {
    require_broker();
    let connector = connector("renewal");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    tokio::time::sleep(Duration::from_secs(70)).await;
    let answer: Value = client.request("echo", &"after renewal").await.unwrap();
    assert_eq!(answer, json!("after renewal"));
    // Each presence queue holds exactly its one token, unacknowledged.
    let output = Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&output.stdout);
    let presence: Vec<&str> = listing
        .lines()
        .filter(|line| line.starts_with(&format!("sb.{service}")) && line.contains(".alive"))
        .collect();
    assert_eq!(presence.len(), 2, "{listing}");
    for line in presence {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1..], ["0", "1"], "{line}");
    }
    client.close().await;
    server.shutdown().await;
}

/// The `switchboard` binary of the CLI package (`cli/`), built by
/// `cargo test` at the workspace root: target/<profile>/switchboard.
fn cli() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(format!("switchboard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} not built: run `cargo test --all-features` at the workspace root",
        binary.display()
    );
    binary
}

#[tokio::test]
async fn the_cli_serves_and_calls_over_the_broker() {
    require_broker();
    let service = format!("test-cli-{}", std::process::id());
    let mut server = Killed(
        Command::new(cli())
            .args(["echo-server", "--amqp", URL, "--address", &service])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = server.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let connector = line.trim().to_owned();
    assert!(connector.starts_with("sb1:"), "{line:?}");
    let loaded = Connector::load_state(&connector).unwrap();
    assert_eq!(service_of(&loaded), service);
    let call = |args: &[&str]| {
        let output = Command::new(cli()).args(args).output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let (code, out, err) = call(&["call", &connector, "echo", r#"{"a": 1}"#]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, r#"{"a":1}"#);
    let (code, _, err) = call(&["call", &connector, "fail", r#""no""#]);
    assert_eq!(code, Some(1));
    assert!(err.ends_with("no"), "{err}");
    let (code, _, _) = call(&["call", &connector, "sleep", "5000", "--timeout", "200"]);
    assert_eq!(code, Some(4));
    let (code, _, err) = call(&["throw", &connector, "echo", "1"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn cli_inspect_redacts_the_broker_password() {
    let password = "pw-Inspect-never-shown";
    let connector = Connector::amqp(
        format!("amqp://app:{password}@broker.example:5672/%2f"),
        "jobs",
    )
    .unwrap();
    for json in [false, true] {
        let mut command = Command::new(cli());
        command.args(["inspect", &connector.dump_state()]);
        if json {
            command.arg("--json");
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains(password), "{text}");
        assert!(text.contains("amqp"), "{text}");
        assert!(
            text.contains("jobs at amqp://app:<redacted>@broker.example:5672/%2f"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_reconnecting_client_moves_to_a_live_instance_when_its_own_dies() {
    require_broker();
    let connector = connector("reconnect-instances");
    // The first instance is a process we can kill; the second lives here.
    let (process, _stdout) = child("server", &connector).await;
    let mut process = Killed(process);
    let client = Client::builder(&connector)
        .id("mover")
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(20)))
        .connect()
        .await
        .unwrap();
    let first: String = client.request("instance", &()).await.unwrap();
    assert_eq!(first, "child");
    let survivor = Server::bind(&connector, router("survivor")).await.unwrap();
    let mut state = client.link_state();
    process.0.kill().unwrap();
    // The dead instance is noticed (its presence token comes back), the
    // link goes down and comes back up, on the instance that is left.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            state.changed().await.unwrap();
            if matches!(*state.borrow(), LinkState::Up { connection: 1.. }) {
                break;
            }
        }
    })
    .await
    .expect("the client never reconnected");
    let now: String = client.request("instance", &()).await.unwrap();
    assert_eq!(now, "survivor");
    assert_eq!(client.id(), "mover", "the client kept its id");
    assert_eq!(survivor.clients(), ["mover"]);
}

#[tokio::test]
async fn a_reconnecting_client_comes_back_after_its_broker_connection_is_cut() {
    require_broker();
    let connector = connector("reconnect-cut");
    let service = service_of(&connector);
    let server = Server::bind(&connector, router("a")).await.unwrap();
    let client = Client::builder(&connector)
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(20)))
        .connect()
        .await
        .unwrap();
    let answer: Value = client.request("echo", &"before").await.unwrap();
    assert_eq!(answer, json!("before"));
    let mut state = client.link_state();
    assert_eq!(cut_connections_of(&service), 2);
    // Once the client knows its link is down, requests made meanwhile wait
    // for it to return (the server instance reconnects to the broker too),
    // within their timeout.
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            state.changed().await.unwrap();
            if !matches!(*state.borrow(), LinkState::Up { connection: 0 }) {
                break;
            }
        }
    })
    .await
    .expect("the client never noticed the cut");
    let answer: Value = client
        .request_timeout("echo", &"after", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(answer, json!("after"));
    server.shutdown().await;
}

#[tokio::test]
async fn streams_flow_over_the_broker_and_stop_when_dropped() {
    require_broker();
    let connector = connector("streams");
    let router = Router::new()
        .route("count", |to: u32| async move {
            switchboard::Stream::iter(1..=to)
        })
        .route("endless", |_: ()| async move {
            switchboard::Stream::iter(0u64..)
        });
    let server = Server::bind(&connector, router).await.unwrap();
    let client = Client::connect(&connector).await.unwrap();
    let items = client
        .request_stream::<_, u32>("count", &500)
        .await
        .unwrap();
    assert_eq!(
        items.collect().await.unwrap(),
        (1..=500).collect::<Vec<_>>()
    );
    // An endless stream dropped after a few items: the producer is
    // cancelled and the connection carries on.
    let mut endless = client
        .request_stream::<_, u64>("endless", &())
        .await
        .unwrap();
    for expected in 0..10 {
        assert_eq!(endless.next().await.unwrap().unwrap(), expected);
    }
    drop(endless);
    let again = client.request_stream::<_, u32>("count", &3).await.unwrap();
    assert_eq!(again.collect().await.unwrap(), [1, 2, 3]);
    client.close().await;
    server.shutdown().await;
}

#[switchboard::service]
pub trait Adder {
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn count(&self, to: u32) -> switchboard::Stream<u32>;
}

struct AdderImpl;

impl Adder for AdderImpl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn count(&self, to: u32) -> switchboard::Stream<u32> {
        switchboard::Stream::iter(1..=to)
    }
}

#[tokio::test]
async fn typed_services_work_over_the_broker() {
    require_broker();
    let connector = connector("typed");
    let server = Server::bind(
        &connector,
        Router::new().service(AdderServer::new(AdderImpl)),
    )
    .await
    .unwrap();
    let adder = AdderClient::new(Client::connect(&connector).await.unwrap());
    assert_eq!(adder.add(40, 2).await.unwrap(), 42);
    let counted = adder.count(4).await.unwrap().collect().await.unwrap();
    assert_eq!(counted, [1, 2, 3, 4]);
    server.shutdown().await;
}

#[test]
fn the_blocking_client_works_over_the_broker() {
    require_broker();
    let connector = connector("blocking");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = runtime
        .block_on(Server::bind(&connector, router("a")))
        .unwrap();
    // A plain thread with no runtime of its own, as in a program without
    // async.
    let answer = std::thread::spawn(move || {
        let client = switchboard::blocking::Client::connect(&connector).unwrap();
        client
            .request::<_, Value>("echo", &json!({"n": 1}))
            .unwrap()
    })
    .join()
    .unwrap();
    assert_eq!(answer, json!({"n": 1}));
    runtime.block_on(server.shutdown());
}
