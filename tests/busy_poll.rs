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
#[cfg(target_os = "linux")]
use support::descriptors::own_descriptors;
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

/// While a connection's read loop polls its socket busily, the socket is
/// out of the runtime's epoll set (every message to a socket in one runs
/// epoll's wake-up callbacks, which cost the latency path); once the
/// traffic stops, it is back in, so the loop can sleep and still be woken.
/// The client runs in a child process of its own (the server in another),
/// which reads its epoll sets from `/proc/self/fdinfo`.
#[cfg(target_os = "linux")]
#[test]
fn the_socket_leaves_the_event_loop_while_polled_and_returns_when_idle() {
    let mut server = Reaper(child("echo-server").spawn().unwrap());
    let connector = first_line(&mut server.0);
    let mut client = Reaper(
        child("epoll-watcher")
            .env(switchboard::ENV_VAR, &connector)
            .spawn()
            .unwrap(),
    );
    let report = first_line(&mut client.0);
    let numbers: Vec<u32> = report
        .split_whitespace()
        .filter_map(|word| word.split_once('=')?.1.parse().ok())
        .collect();
    eprintln!("child: {report}");
    let [out, of, registered_when_idle, answered] = numbers[..] else {
        panic!("unexpected report from the child: {report:?}");
    };
    // Right after an answer the loop has just polled busily; a busy poll
    // that gave up in between (a slow CI machine) leaves it registered.
    assert!(
        out * 2 > of,
        "the socket was out of the event loop after only {out} of {of} answers"
    );
    assert_eq!(
        registered_when_idle, 1,
        "an idle connection's socket must be in the event loop, or nothing wakes its reader"
    );
    assert_eq!(answered, 1, "a request after the idle time went unanswered");
}

/// The child of the test above: connects to the server the environment
/// names, on a current-thread runtime, and reports whether its socket was
/// in an epoll set after each of 300 answers, and after 300 ms of quiet.
#[cfg(target_os = "linux")]
fn epoll_watcher() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let before = sockets();
        let mut config = Config::default();
        // Generous, so that a slow machine's answers still come within it.
        config.busy_poll = Some(Duration::from_millis(20));
        let client = Client::builder(&Connector::from_env().unwrap())
            .config(config)
            .connect()
            .await
            .unwrap();
        // New since the connect, and connected to another process (the
        // runtime makes a socket pair of its own for signals).
        let ours: Vec<i32> = sockets()
            .difference(&before)
            .copied()
            .filter(|&fd| peer_pid(fd) != std::process::id())
            .collect();
        let [socket] = ours[..] else {
            panic!("expected one new socket connected to the server, found {ours:?}");
        };
        let of = 300;
        let mut out = 0;
        for i in 0..of {
            let answer: Bytes = client.request("echo", &tagged(i, 16)).await.unwrap();
            assert_eq!(tag_of(&answer), i);
            if !epoll_targets().contains(&socket) {
                out += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let registered = epoll_targets().contains(&socket);
        let answered = client
            .request::<_, Bytes>("echo", &tagged(7, 16))
            .await
            .is_ok_and(|answer| tag_of(&answer) == 7);
        println!(
            "SB:out={out} of={of} registered_when_idle={} answered={}",
            u32::from(registered),
            u32::from(answered)
        );
    });
}

/// This process's descriptors that are sockets.
#[cfg(target_os = "linux")]
fn sockets() -> std::collections::BTreeSet<i32> {
    descriptors_linking_to("socket:")
}

/// The process at the other end of the socket `fd`.
#[cfg(target_os = "linux")]
fn peer_pid(fd: i32) -> u32 {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: reads the peer's credentials into a live local of the size given.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut credentials).cast(),
            &mut len,
        )
    };
    assert_eq!(got, 0, "SO_PEERCRED of descriptor {fd}");
    credentials.pid as u32
}

/// The descriptors in any of this process's epoll sets.
#[cfg(target_os = "linux")]
fn epoll_targets() -> std::collections::BTreeSet<i32> {
    let mut targets = std::collections::BTreeSet::new();
    for epoll in descriptors_linking_to("anon_inode:[eventpoll]") {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{epoll}")).unwrap();
        // "tfd:        9 events:       19 data: ..."
        for line in info.lines().filter_map(|line| line.strip_prefix("tfd:")) {
            if let Some(fd) = line.split_whitespace().next() {
                targets.insert(fd.parse().unwrap());
            }
        }
    }
    targets
}

#[cfg(target_os = "linux")]
fn descriptors_linking_to(prefix: &str) -> std::collections::BTreeSet<i32> {
    own_descriptors()
        .into_iter()
        .filter(|(_, target)| target.starts_with(prefix))
        .map(|(fd, _)| fd)
        .collect()
}

/// Not a test: the body of the child processes the tests here spawn (see
/// `support::children`). Run without `SB_PRESSURE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    #[cfg(target_os = "linux")]
    if std::env::var(children::CHILD_ROLE).as_deref() == Ok("epoll-watcher") {
        epoll_watcher();
        return;
    }
    children::entry();
}
