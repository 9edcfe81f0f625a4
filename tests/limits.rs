//! Limits that hold: the connection limit refuses the next client and says
//! why, a client that never finishes the handshake is dropped, and a server
//! out of file descriptors backs off and recovers.

#[cfg(unix)]
use std::io::Read;
use std::time::{Duration, Instant};

#[cfg(target_os = "linux")]
use switchboard::Bytes;
#[cfg(unix)]
use switchboard::Config;
use switchboard::{Client, Connector, Error, Server};

mod support;

use support::children;
#[cfg(target_os = "linux")]
use support::children::{Reaper, child, cpu_time, first_line};
use support::pressure::echo_router;
#[cfg(unix)]
use support::pressure::raw_connect;
#[cfg(target_os = "linux")]
use support::pressure::{tag_of, tagged};

#[tokio::test]
async fn the_connection_limit_refuses_the_next_client_and_says_why() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(echo_router())
        .max_connections(2)
        .on_error(move |e| {
            let _ = tx.send(format!("{e}"));
        })
        .bind(&Connector::local())
        .await
        .unwrap();
    let first = Client::connect(server.connector()).await.unwrap();
    let _second = Client::connect(server.connector()).await.unwrap();
    match Client::connect(server.connector()).await {
        Err(Error::Refused { reason }) => {
            assert!(reason.contains("maximum of 2 connections"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let reported = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(reported.contains("maximum of 2"), "{reported}");
    // A place frees up when a client leaves.
    first.close().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Client::connect(server.connector()).await {
            Ok(_) => break,
            Err(Error::Refused { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_client_that_never_finishes_the_handshake_is_dropped() {
    let mut config = Config::default();
    config.handshake_timeout = Duration::from_millis(300);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = Server::builder(echo_router())
        .config(config)
        .on_error(move |e| {
            let _ = tx.send(format!("{e}"));
        })
        .bind(&Connector::local())
        .await
        .unwrap();
    let connector = server.connector().clone();
    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = raw_connect(&connector);
        let mut byte = [0u8; 1];
        // Say nothing; the server hangs up.
        matches!(stream.read(&mut byte), Ok(0) | Err(_))
    })
    .await
    .unwrap();
    assert!(closed);
    let reported = rx.recv().await.unwrap();
    assert!(
        reported.contains("did not finish the handshake"),
        "{reported}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_backs_off_and_recovers() {
    let mut server = child("few-files-server").spawn().unwrap();
    let connector = Connector::load_state(&first_line(&mut server)).unwrap();
    let server = Reaper(server);
    let pid = server.0.id();
    // Far more connections than the server has descriptors for: the OS
    // completes them (backlog), the server cannot accept them.
    let hogs: Vec<_> = (0..80)
        .filter_map(|_| {
            let switchboard::Address::Unix(path) = connector.address() else {
                unreachable!()
            };
            std::os::unix::net::UnixStream::connect(path).ok()
        })
        .collect();
    assert!(hogs.len() > 48, "only {} connected", hogs.len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let spent = cpu_time(pid) - before;
    // Spinning on accept would take most of a core.
    assert!(spent < Duration::from_millis(500), "spent {spent:?} in 2 s");
    drop(hogs);
    // Once descriptors are free again, clients get in.
    let client = Client::builder(&connector)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap();
    let answer: Bytes = client.request("echo", &tagged(3, 10)).await.unwrap();
    assert_eq!(tag_of(&answer), 3);
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    children::entry();
}
