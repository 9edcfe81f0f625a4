//! Silent peers: a TCP client or server that stops (SIGSTOP) without
//! closing is noticed by the keepalive, and its pending calls fail.

#![cfg(unix)]

use std::time::{Duration, Instant};

use switchboard::{Bytes, Client, Connector, Error, Router, Server};

mod support;

use support::children::{self, Reaper, child, first_line, stop};
use support::pressure::{quick_keepalive, tag_of, tagged};

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tcp_client_is_noticed_and_its_pending_calls_fail() {
    let interval = Duration::from_millis(200);
    let server = Server::builder(Router::new())
        .config(quick_keepalive(interval))
        .bind(&Connector::tcp("127.0.0.1", 0).unwrap())
        .await
        .unwrap();
    let mut callee = child("callee")
        .env("SWITCHBOARD_CONNECTOR", server.connector().dump_state())
        .spawn()
        .unwrap();
    assert_eq!(first_line(&mut callee), "ready");
    let callee = Reaper(callee);
    server.wait_for_clients(1).await;
    let alive: Bytes = server
        .request("callee", "echo", &tagged(1, 10))
        .await
        .unwrap();
    assert_eq!(tag_of(&alive), 1);

    // Stopped, it keeps its socket open and says nothing: only keepalive
    // can tell.
    stop(&callee.0);
    let started = Instant::now();
    let outcome = server
        .request::<_, Bytes>("callee", "echo", &tagged(2, 10))
        .await;
    assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "noticed only after {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.clients().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the server still lists the client"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_tcp_server_is_noticed_and_pending_requests_fail() {
    let mut server = child("tcp-server").spawn().unwrap();
    let connector = Connector::load_state(&first_line(&mut server)).unwrap();
    let server = Reaper(server);
    let client = Client::builder(&connector)
        .config(quick_keepalive(Duration::from_millis(200)))
        .connect()
        .await
        .unwrap();
    assert_eq!(client.request::<_, u64>("sleep", &1u64).await.unwrap(), 1);
    let pending = {
        let peer = client.peer().clone();
        tokio::spawn(async move { peer.request::<_, u64>("sleep", &60_000u64).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(&server.0);
    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending request hung")
        .unwrap();
    assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    children::entry();
}
