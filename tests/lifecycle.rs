//! The life of servers and connections: a dead peer fails pending requests
//! at once, a graceful shutdown lets running requests finish, sockets and
//! their private directories come and go with their servers, clients wait
//! for a late server and keep their identity across reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard::{Client, Connector, Context, Error, HandlerError, Router, Server};

mod support;

use support::conversation::test_router;

#[tokio::test]
async fn peer_death_fails_pending_requests_at_once() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let pending: Vec<_> = (0..5)
        .map(|_| {
            let client = Arc::clone(&client);
            tokio::spawn(async move { client.request::<_, u64>("sleep", &60_000u64).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    drop(server);
    for task in pending {
        let result = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("no hang")
            .unwrap();
        assert!(matches!(result, Err(Error::Disconnected)), "{result:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        client.request::<_, i64>("add", &(1, 2)).await,
        Err(Error::Disconnected)
    ));
}

#[tokio::test]
async fn graceful_shutdown_lets_running_requests_finish() {
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let dir = match server.connector().address() {
        switchboard::Address::Unix(path) => Some(path.parent().unwrap().to_path_buf()),
        _ => None,
    };
    let connector = server.connector().clone();
    let client = Arc::new(Client::connect(&connector).await.unwrap());
    let running = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { client.request::<_, u64>("sleep", &400u64).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(server.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    // New work during the drain is turned away, not lost silently.
    let late = client.request::<_, i64>("add", &(1, 2)).await;
    assert!(
        matches!(late, Err(Error::ShuttingDown | Error::Disconnected)),
        "{late:?}"
    );
    assert_eq!(
        running.await.unwrap().unwrap(),
        400,
        "the in-flight request completed"
    );
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .unwrap()
        .unwrap();
    if let Some(dir) = dir {
        assert!(!dir.exists(), "the private directory is removed");
    }
    let refused = Client::builder(&connector)
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    assert!(matches!(refused, Err(Error::Connect { .. })), "{refused:?}");
}

#[cfg(unix)]
#[tokio::test]
async fn private_directory_is_0700_and_removed_when_the_server_is_dropped() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let switchboard::Address::Unix(path) = server.connector().address().clone() else {
        panic!()
    };
    let dir = path.parent().unwrap().to_path_buf();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(path.exists());
    drop(server);
    assert!(!path.exists());
    assert!(!dir.exists());
}

#[cfg(unix)]
#[tokio::test]
async fn stale_socket_files_are_reclaimed_and_live_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    // A crashed server leaves its socket file behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let connector = Connector::unix_socket(&path).unwrap();
    let server = Server::bind(&connector, test_router()).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    match Server::bind(&connector, test_router()).await {
        Err(Error::AddrInUse { address }) => assert!(address.contains("app.sock"), "{address}"),
        other => panic!("{other:?}"),
    }
    // The refused second server must not have removed the first one's socket.
    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
    let another = Client::connect(&connector).await.unwrap();
    assert_eq!(another.request::<_, i64>("add", &(3, 3)).await.unwrap(), 6);
}

#[cfg(unix)]
#[tokio::test]
async fn socket_paths_over_the_platform_limit_get_a_clear_error() {
    let long = format!("/tmp/{}/s.sock", "d".repeat(120));
    match Server::bind(&Connector::unix_socket(long).unwrap(), test_router()).await {
        Err(Error::InvalidArgument { what, reason }) => {
            assert_eq!(what, "socket path");
            assert!(reason.contains("at most"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn clients_wait_for_a_server_that_starts_late() {
    let connector = Connector::local();
    let early = {
        let connector = connector.clone();
        tokio::spawn(async move { Client::connect(&connector).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _server = Server::bind(&connector, test_router()).await.unwrap();
    let client = early.await.unwrap().unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);

    let nobody = Connector::local();
    let result = Client::builder(&nobody)
        .connect_timeout(Duration::from_millis(200))
        .connect()
        .await;
    match result {
        Err(Error::Connect { address, .. }) => assert_eq!(address, nobody.address().to_string()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reconnecting_client_keeps_its_identity() {
    let seen = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&seen);
    let router = Router::new().route("hello", move |ctx: Context, _: ()| {
        let count = Arc::clone(&count);
        async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok::<_, HandlerError>(ctx.client_id().to_owned())
        }
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let first = Client::builder(server.connector())
        .id("worker-7")
        .connect()
        .await
        .unwrap();
    assert_eq!(
        first.request::<_, String>("hello", &()).await.unwrap(),
        "worker-7"
    );
    // Another client asking for the live id is refused...
    match Client::builder(server.connector())
        .id("worker-7")
        .connect()
        .await
    {
        Err(Error::Refused { reason }) => assert!(reason.contains("in use"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // ...but the same client, proving it held the id, replaces its old
    // connection.
    let second = Client::builder(server.connector())
        .resume(&first.resumption())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        second.request::<_, String>("hello", &()).await.unwrap(),
        "worker-7"
    );
    assert_eq!(server.clients(), ["worker-7"]);
    tokio::time::timeout(Duration::from_secs(5), first.closed())
        .await
        .expect("the old connection is closed");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_second_server_on_a_taken_address_gets_addr_in_use() {
    let first = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    match Server::bind(first.connector(), test_router()).await {
        Err(Error::AddrInUse { address }) => {
            assert_eq!(address, first.connector().address().to_string())
        }
        other => panic!("{other:?}"),
    }
    let client = Client::connect(first.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
    // Once the first server has shut down, the address is free again.
    let address = first.connector().clone();
    drop(client);
    first.shutdown().await;
    let second = Server::bind(&address, test_router()).await.unwrap();
    let client = Client::connect(second.connector()).await.unwrap();
    assert_eq!(client.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
}
