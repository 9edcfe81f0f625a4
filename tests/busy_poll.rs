//! Busy polling: quick exchanges make both sides poll before they sleep,
//! and once the traffic stops, so does the polling (measured as the CPU
//! time of a child process).

#[cfg(target_os = "linux")]
use std::time::Duration;

use switchboard::{Bytes, Client, Config, Connector, Server};

mod support;

use support::children;
#[cfg(target_os = "linux")]
use support::children::{Reaper, child, cpu_time, first_line};
use support::pressure::{echo_router, tag_of, tagged};

/// Quick exchanges make both sides poll for the next message before they
/// sleep (`Config::busy_poll`); once the traffic stops, that must stop too.
/// The exchanges run in a child process (server and client in it, on a
/// runtime of `flavor`), so its CPU time is theirs alone.
#[cfg(target_os = "linux")]
fn idle_after_quick_exchanges_costs_no_cpu(flavor: &str) {
    let mut child = Reaper(child(&format!("quick-then-idle-{flavor}")).spawn().unwrap());
    assert_eq!(first_line(&mut child.0), "ready");
    let before = cpu_time(child.0.id());
    std::thread::sleep(Duration::from_millis(500));
    let used = cpu_time(child.0.id()) - before;
    // Polling that did not stop would use most of the half second.
    assert!(
        used < Duration::from_millis(60),
        "{used:?} of CPU while idle for 500 ms"
    );
}

#[cfg(target_os = "linux")]
#[test]
fn busy_polling_stops_when_the_traffic_does_current_thread() {
    idle_after_quick_exchanges_costs_no_cpu("current");
}

#[cfg(target_os = "linux")]
#[test]
fn busy_polling_stops_when_the_traffic_does_multi_thread() {
    idle_after_quick_exchanges_costs_no_cpu("multi");
}

#[tokio::test]
async fn busy_polling_can_be_turned_off() {
    let mut config = Config::default();
    config.busy_poll = None;
    let server = Server::builder(echo_router())
        .config(config.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    let client = Client::builder(server.connector())
        .config(config)
        .connect()
        .await
        .unwrap();
    for i in 0..100u64 {
        let answer: Bytes = client.request("echo", &tagged(i, 16)).await.unwrap();
        assert_eq!(tag_of(&answer), i);
    }
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    children::entry();
}
