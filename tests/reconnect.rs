//! Reconnecting clients, with the server a real process that is killed
//! and started again: identity kept, the client's own routes served
//! again, the name resolved again, and requests made while the link is
//! down waiting or failing per the policy.

mod support;

use std::time::Duration;

use switchboard::registry::{Lookup, Registry};
use switchboard::{Client, Error, HandlerError, LinkState, Reconnect, Router, WhileDown};
use tokio::sync::watch;

use support::NamedServer;

/// Not a test: the body of the child processes.
#[test]
fn child_process_entry() {
    support::child_entry();
}

fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path().join("registry")).unwrap();
    (dir, registry)
}

fn client(name: &str, registry: &Registry, policy: Reconnect) -> switchboard::ClientBuilder {
    Client::builder_named(name)
        .lookup(Lookup::default().registry(registry.clone()))
        .id("faithful")
        .router(Router::new().route("hello", |_: ()| async move {
            Ok::<_, HandlerError>("hello from the client".to_owned())
        }))
        .reconnect(
            policy
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(200)),
        )
        .connect_timeout(Duration::from_secs(10))
}

async fn wait_for(link: &mut watch::Receiver<LinkState>, want: impl Fn(&LinkState) -> bool) {
    link.wait_for(|state| want(state)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_rides_through_a_server_restart_as_the_same_client() {
    let (_dir, registry) = registry();
    let mut first = NamedServer::start(registry.dir(), "restartable");
    let client = client("restartable", &registry, Reconnect::default())
        .connect()
        .await
        .unwrap();
    let mut link = client.link_state();
    assert_eq!(*link.borrow(), LinkState::Up { connection: 0 });
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        first.pid
    );
    assert_eq!(
        client.request::<_, String>("whoami", &()).await.unwrap(),
        "faithful"
    );

    first.kill();
    wait_for(&mut link, |state| matches!(state, LinkState::Down { .. })).await;

    // Made while the link is down: waits for the new server (started
    // with a fresh connector, found again by name).
    let pending = tokio::spawn({
        let client = std::sync::Arc::new(client);
        let for_task = std::sync::Arc::clone(&client);
        async move {
            let pid = for_task.request::<_, u32>("pid", &()).await;
            (pid, client)
        }
    });
    let second = NamedServer::start(registry.dir(), "restartable");
    let (pid, client) = pending.await.unwrap();
    assert_eq!(pid.unwrap(), second.pid);
    assert_ne!(second.pid, first.pid);

    wait_for(&mut link, |state| *state == LinkState::Up { connection: 1 }).await;
    // The server knows it by the same id, and its routes are served again.
    assert_eq!(
        client.request::<_, String>("whoami", &()).await.unwrap(),
        "faithful"
    );
    assert_eq!(
        client
            .request::<_, String>("ask-client", &())
            .await
            .unwrap(),
        "hello from the client"
    );
    assert_eq!(client.id(), "faithful");
    assert_eq!(client.resumption().id(), "faithful");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_while_down_fail_fast_when_asked_to() {
    let (_dir, registry) = registry();
    let mut server = NamedServer::start(registry.dir(), "flaky");
    let client = client(
        "flaky",
        &registry,
        Reconnect::default().while_down(WhileDown::FailFast),
    )
    .connect()
    .await
    .unwrap();
    let mut link = client.link_state();
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        server.pid
    );
    server.kill();
    wait_for(&mut link, |state| matches!(state, LinkState::Down { .. })).await;
    let error = client.request::<_, u32>("pid", &()).await.unwrap_err();
    assert!(matches!(error, Error::Disconnected), "{error:?}");
    let error = client.throw("pid", &()).await.unwrap_err();
    assert!(matches!(error, Error::Disconnected), "{error:?}");

    let again = NamedServer::start(registry.dir(), "flaky");
    wait_for(&mut link, |state| matches!(state, LinkState::Up { .. })).await;
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        again.pid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_the_link_gives_up_at_its_timeout() {
    let (_dir, registry) = registry();
    let mut server = NamedServer::start(registry.dir(), "gone");
    let client = client("gone", &registry, Reconnect::default())
        .connect()
        .await
        .unwrap();
    let mut link = client.link_state();
    server.kill();
    wait_for(&mut link, |state| matches!(state, LinkState::Down { .. })).await;
    let error = client
        .request_timeout::<_, u32>("pid", &(), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error:?}");
    // Still trying: closing it ends that for good.
    assert!(matches!(*link.borrow(), LinkState::Down { .. }));
    client.close().await;
    wait_for(&mut link, |state| *state == LinkState::Closed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_gives_up_when_told_to() {
    let (_dir, registry) = registry();
    let mut server = NamedServer::start(registry.dir(), "brief");
    let client = client(
        "brief",
        &registry,
        Reconnect::default().give_up_after(Duration::from_millis(100)),
    )
    .connect()
    .await
    .unwrap();
    server.kill();
    // closed() returns once it gives up.
    client.closed().await;
    assert_eq!(*client.link_state().borrow(), LinkState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reconnect_the_link_closes_for_good() {
    let (_dir, registry) = registry();
    let mut server = NamedServer::start(registry.dir(), "once");
    let client = Client::builder_named("once")
        .lookup(Lookup::default().registry(registry.clone()))
        .connect()
        .await
        .unwrap();
    server.kill();
    client.closed().await;
    assert_eq!(*client.link_state().borrow(), LinkState::Closed);
    let error = client.request::<_, u32>("pid", &()).await.unwrap_err();
    assert!(matches!(error, Error::Disconnected), "{error:?}");
}

#[cfg(unix)]
#[test]
fn the_named_service_example_client_survives_a_restart_of_the_service() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};

    let runtime = tempfile::tempdir().unwrap();
    let start_service = || {
        let mut service = Command::new(support::example("named_service"))
            .arg("serve")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(service.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("serving as @clock"), "{line:?}");
        service
    };
    let mut first = start_service();
    let mut client = Command::new(support::example("named_service"))
        .args(["client", "40"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(client.stdout.take().unwrap());
    let mut seen = String::new();
    stdout.read_line(&mut seen).unwrap();
    assert!(seen.contains(&format!("from pid {}", first.id())), "{seen}");

    let registry = Registry::at(runtime.path().join("switchboard")).unwrap();
    let stale = registry.get("clock").unwrap().unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    if let switchboard::Address::Unix(path) = stale.connector().address() {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
    let mut second = start_service();
    stdout.read_to_string(&mut seen).unwrap();
    let status = client.wait().unwrap();
    let mut stderr = String::new();
    client
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{seen}\n{stderr}");
    assert!(seen.contains("tick 40 for "), "{seen}");
    assert!(
        seen.contains(&format!("from pid {}", second.id())),
        "{seen}"
    );
    assert!(
        stderr.contains("link down") && stderr.contains("link back"),
        "{stderr}"
    );
    // The same client id on both servers.
    let ids: std::collections::HashSet<&str> = seen
        .lines()
        .filter_map(|line| line.split(" for ").nth(1)?.split(" from").next())
        .collect();
    assert_eq!(ids.len(), 1, "{seen}");
    // SAFETY: kill(2) with the pid of a child this test spawned.
    unsafe { libc::kill(second.id() as libc::pid_t, libc::SIGINT) };
    assert!(second.wait().unwrap().success());
    assert!(
        registry.list().unwrap().is_empty(),
        "entry removed on Ctrl-C"
    );
}

/// A TCP proxy in front of a server. `cut` drops the client side of every
/// connection but keeps the server side open, so the server still holds
/// the client's id when the client comes back.
struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<u64>,
    kept: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let kept = std::sync::Arc::default();
        let proxy = Proxy { port, cut, kept };
        let cuts = proxy.cut.clone();
        let kept = std::sync::Arc::clone(&proxy.kept);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                    .await
                    .unwrap();
                let mut cut = cuts.subscribe();
                let kept = std::sync::Arc::clone(&kept);
                tokio::spawn(async move {
                    let (mut client_read, mut client_write) = client.into_split();
                    let (mut server_read, mut server_write) = server.into_split();
                    tokio::select! {
                        _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
                        _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
                        _ = cut.changed() => {
                            // The client's side goes; the server's stays open
                            // and silent, as after a network failure.
                            let server = server_read.reunite(server_write).unwrap();
                            kept.lock().unwrap().push(server);
                        }
                    }
                });
            }
        });
        proxy
    }

    fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_network_failure_the_client_takes_over_its_old_connection_on_the_same_server() {
    let connector = switchboard::Connector::tcp("127.0.0.1", 0).unwrap();
    let server = switchboard::Server::bind(&connector, support::router())
        .await
        .unwrap();
    let switchboard::Address::Tcp { port, .. } = server.connector().address() else {
        panic!("a TCP server has a TCP address");
    };
    let proxy = Proxy::start(*port).await;
    let through_proxy = switchboard::Connector::tcp("127.0.0.1", proxy.port)
        .unwrap()
        .with_secret(server.connector().secret().unwrap().clone());
    let client = Client::builder(&through_proxy)
        .id("faithful")
        .reconnect(Reconnect::default().initial_delay(Duration::from_millis(10)))
        .connect()
        .await
        .unwrap();
    let mut link = client.link_state();
    assert_eq!(
        client.request::<_, String>("whoami", &()).await.unwrap(),
        "faithful"
    );
    server.wait_for_clients(1).await;
    let old = server.client("faithful").unwrap();

    proxy.cut();
    wait_for(&mut link, |state| *state == LinkState::Up { connection: 1 }).await;
    // The server still had the old connection open: the resumption proof
    // let the client take its place instead of being refused.
    assert_eq!(
        client.request::<_, String>("whoami", &()).await.unwrap(),
        "faithful"
    );
    assert_eq!(server.clients(), ["faithful"]);
    old.closed().await;
    server.wait_for_clients(1).await;
    let new = server.client("faithful").unwrap();
    assert!(!new.is_closed());

    // Anyone else asking for the id without the proof is refused.
    let impostor = Client::builder(&through_proxy)
        .id("faithful")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(impostor, Error::Refused { .. }), "{impostor:?}");
    drop(proxy.kept.lock().unwrap().drain(..));
}
