//! The blocking API (`switchboard::blocking`) over real sockets and real
//! processes: many threads on one client, callbacks served while the
//! program's threads are busy, every kind of failure, calls from inside an
//! async runtime, and `examples/blocking_client.rs` against the CLI's
//! `echo-server`.
//!
//! Nothing here uses an async runtime except where a test is about one.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchboard::blocking::{Client, Server};
use switchboard::{Address, Connector, Context, Error, HandlerError, Router, Stream};

const CHILD_ROLE: &str = "SB_BLOCKING_TEST_CHILD";

/// A connector for a socket in a directory the test owns, so nothing is
/// left behind even when a server process is killed.
fn connector_in(dir: &tempfile::TempDir) -> Connector {
    if cfg!(windows) {
        Connector::local()
    } else {
        Connector::unix_socket(dir.path().join("sb.sock")).unwrap()
    }
}

fn echo_router() -> Router {
    Router::new()
        .route(
            "echo",
            |text: String| async move { Ok::<_, HandlerError>(text) },
        )
        .route("add", |(a, b): (i64, i64)| async move {
            a.checked_add(b)
                .ok_or_else(|| HandlerError::invalid_params("overflow"))
        })
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
}

#[test]
#[cfg_attr(
    windows,
    ignore = "under Wine eight threads sharing one connection see it end mid-test now and \
              then (Disconnected: 1 run in 10 with the machine loaded, 2 in 2 in a CI run), \
              like plain_function_handlers_may_make_blocking_calls_themselves and the floods \
              ignored there; it passes on Linux every time; cause not found yet"
)]
fn many_threads_share_one_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&connector_in(&dir), echo_router()).unwrap();
    let client = Client::connect(server.connector()).unwrap();
    std::thread::scope(|scope| {
        for thread in 0..8_i64 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..200_i64 {
                    let sum: i64 = client.request("add", &(thread * 1_000, i)).unwrap();
                    assert_eq!(sum, thread * 1_000 + i);
                    let text = format!("thread {thread} call {i}");
                    let echoed: String = client.request("echo", &text).unwrap();
                    assert_eq!(echoed, text);
                }
            });
        }
    });
    // All of them went over the one connection.
    assert_eq!(server.clients(), [client.id()]);
    client.close();
    assert!(client.is_closed());
    assert!(matches!(
        client.request::<_, String>("echo", "late"),
        Err(Error::Closed)
    ));
}

#[test]
fn the_server_calls_the_client_back_while_its_thread_waits_and_while_it_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let server_router = Router::new().route("work", |ctx: Context, steps: u32| async move {
        // Calls the client back in the middle of the client's own request.
        let mut done = 0;
        for step in 1..=steps {
            done = ctx.request::<_, u32>("progress", &step).await?;
        }
        Ok::<_, HandlerError>(done)
    });
    let server = Server::bind(&connector_in(&dir), server_router).unwrap();
    let (seen, progress) = mpsc::channel();
    // Plain functions, run on the runtime's blocking pool.
    let client_router = Router::new()
        .route_blocking("progress", move |step: u32| {
            seen.send(step).map_err(|e| e.to_string())?;
            Ok::<_, HandlerError>(step * 10)
        })
        .route_blocking("count", |to: u32| Stream::iter(1..=to));
    let client = Client::builder(server.connector())
        .id("worker")
        .router(client_router)
        .connect()
        .unwrap();

    let done: u32 = client.request("work", &3_u32).unwrap();
    assert_eq!(done, 30);
    assert_eq!(progress.try_iter().collect::<Vec<_>>(), [1, 2, 3]);

    // No thread of the client's program is in a call now: the background
    // runtime still serves its routes.
    let answer: u32 = server.request("worker", "progress", &7_u32).unwrap();
    assert_eq!(answer, 70);
    assert_eq!(progress.recv().unwrap(), 7);
    server.throw("worker", "progress", &8_u32).unwrap();
    assert_eq!(progress.recv().unwrap(), 8);
    assert_eq!(server.broadcast("progress", &9_u32), 1);
    assert_eq!(progress.recv().unwrap(), 9);
    let any: u32 = server.request_any("progress", &1_u32).unwrap();
    assert_eq!(any, 10);
    let counted = server
        .request_stream::<_, u32>("worker", "count", &3_u32)
        .unwrap();
    assert_eq!(counted.map(Result::unwrap).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(matches!(
        server.request::<_, u32>("nobody", "progress", &1_u32),
        Err(Error::UnknownClient(id)) if id == "nobody"
    ));
}

#[test]
#[cfg_attr(
    windows,
    ignore = "under Wine a connection used from several threads at once ended mid-test \
              (Disconnected; 1 run in 1), like the floods ignored there; cause not found yet"
)]
fn plain_function_handlers_may_make_blocking_calls_themselves() {
    fn word_count(text: String) -> usize {
        text.split_whitespace().count()
    }
    let dir = tempfile::tempdir().unwrap();
    let backend = Server::bind(&connector_in(&dir), echo_router()).unwrap();
    let backend_client = Client::connect(backend.connector()).unwrap();
    // A plain function that calls another server with the blocking client:
    // it runs on the blocking pool, where blocking is allowed.
    let router = Router::new()
        .route_blocking("words", word_count)
        .route_blocking("relay", move |text: String| {
            backend_client.request::<_, String>("echo", &text)
        });
    let dir2 = tempfile::tempdir().unwrap();
    let front = Server::bind(&connector_in(&dir2), router).unwrap();
    let client = Client::connect(front.connector()).unwrap();
    let words: usize = client.request("words", "one two three").unwrap();
    assert_eq!(words, 3);
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let client = client.clone();
            scope.spawn(move || {
                for i in 0..25 {
                    let text = format!("relayed {thread}/{i}");
                    assert_eq!(client.request::<_, String>("relay", &text).unwrap(), text);
                }
            });
        }
    });
}

#[test]
fn streams_are_iterators_and_dropping_one_stops_its_producer() {
    let dir = tempfile::tempdir().unwrap();
    let (stopped, producer_stopped) = mpsc::channel();
    let router = Router::new()
        .route("count", |to: u32| async move { Stream::iter(1..=to) })
        .route("failing", |(): ()| async move {
            let (sender, stream) = Stream::channel(4);
            tokio::spawn(async move {
                for i in 1..=2_u32 {
                    sender.send(i).await?;
                }
                sender.fail("broken after two").await
            });
            stream
        })
        .route("endless", move |(): ()| {
            let stopped = stopped.clone();
            async move {
                let (sender, stream) = Stream::channel(4);
                tokio::spawn(async move {
                    let mut sent = 0_u64;
                    while sender.send(sent).await.is_ok() {
                        sent += 1;
                    }
                    let _ = stopped.send(sent);
                });
                stream
            }
        });
    let server = Server::bind(&connector_in(&dir), router).unwrap();
    let client = Client::connect(server.connector()).unwrap();

    let numbers: Vec<u32> = client
        .request_stream("count", &5_u32)
        .unwrap()
        .collect::<switchboard::Result<_>>()
        .unwrap();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);

    let mut failing = client.request_stream::<_, u32>("failing", &()).unwrap();
    assert_eq!(failing.next().unwrap().unwrap(), 1);
    assert_eq!(failing.next().unwrap().unwrap(), 2);
    let error = failing.next().unwrap();
    assert!(
        matches!(&error, Err(Error::HandlerFailed { message, .. }) if message.contains("broken after two")),
        "{error:?}"
    );
    assert!(failing.next().is_none());

    // An endless stream, of which the caller reads three items.
    let first: Vec<u64> = client
        .request_stream("endless", &())
        .unwrap()
        .take(3)
        .collect::<switchboard::Result<_>>()
        .unwrap();
    assert_eq!(first, [0, 1, 2]);
    // The iterator is dropped: the producer is told and stops, having sent
    // no more than the connection's window allowed.
    let sent = producer_stopped.recv().unwrap();
    assert!(sent >= 3, "{sent}");
    let echo_after: Vec<u32> = client
        .request_stream("count", &2_u32)
        .unwrap()
        .collect::<switchboard::Result<_>>()
        .unwrap();
    assert_eq!(echo_after, [1, 2]);
}

#[test]
fn timeouts_cancel_and_leave_the_connection_usable() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&connector_in(&dir), echo_router()).unwrap();
    let client = Client::connect(server.connector()).unwrap();
    let outcome = client.request_timeout::<_, u64>("sleep", &60_000_u64, Duration::from_millis(50));
    assert!(
        matches!(outcome, Err(Error::Timeout(limit)) if limit == Duration::from_millis(50)),
        "{outcome:?}"
    );
    let echoed: String = client.request("echo", "still here").unwrap();
    assert_eq!(echoed, "still here");

    // The default timeout set on the builder applies to plain requests.
    let short = Client::builder(server.connector())
        .request_timeout(Duration::from_millis(50))
        .connect()
        .unwrap();
    assert!(matches!(
        short.request::<_, u64>("sleep", &60_000_u64),
        Err(Error::Timeout(_))
    ));
}

#[test]
fn errors_say_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&connector_in(&dir), echo_router()).unwrap();
    let client = Client::connect(server.connector()).unwrap();
    let missing = client.request::<_, String>("missing", &());
    assert!(
        matches!(&missing, Err(Error::NoSuchRoute { route }) if route == "missing"),
        "{missing:?}"
    );
    let overflow = client.request::<_, i64>("add", &(i64::MAX, 1));
    assert!(
        matches!(&overflow, Err(Error::BadRequest { message }) if message.contains("overflow")),
        "{overflow:?}"
    );
    let wrong_type = client.request::<_, i64>("add", "not a pair");
    assert!(matches!(wrong_type, Err(Error::BadRequest { .. })));
    // A notification to a missing route is not an error for the sender.
    client.throw("missing", &()).unwrap();

    // Nobody listening: a connect error naming the address, after the
    // connect timeout.
    let empty = tempfile::tempdir().unwrap();
    let nowhere = connector_in(&empty);
    let refused = Client::builder(&nowhere)
        .connect_timeout(Duration::from_millis(20))
        .connect();
    assert!(
        matches!(
            &refused,
            Err(Error::Connect { .. }) | Err(Error::AddrInUse { .. })
        ),
        "{refused:?}"
    );

    // Binding an address that is taken.
    let taken = Server::bind(server.connector(), Router::new());
    assert!(matches!(taken, Err(Error::AddrInUse { .. })), "{taken:?}");

    // The wrong secret.
    let wrong = Connector::load_state(&server.connector().dump_state())
        .unwrap()
        .without_secret();
    assert!(matches!(Client::connect(&wrong), Err(Error::AuthFailed(_))));
}

/// Not a test: the body of the child processes the tests below spawn. Run
/// without `SB_BLOCKING_TEST_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else {
        return;
    };
    match role.as_str() {
        // A blocking server in its own process: prints its connector, and
        // "sleeping" when a `hang` request arrives (which never answers).
        "server" => {
            let dir = tempfile::tempdir().unwrap();
            let router = echo_router().route("hang", |(): ()| async move {
                println!("sleeping");
                std::future::pending::<()>().await;
                Ok::<_, HandlerError>(())
            });
            let server = Server::bind(&connector_in(&dir), router).unwrap();
            println!("{}", server.connector().dump_state());
            // Serves until killed.
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown child role {other:?}"),
    }
}

fn child(role: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "child_process_entry",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    command
}

#[test]
fn a_killed_server_fails_waiting_calls_with_disconnected() {
    let mut server = child("server").spawn().unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    // The test harness prints its own words first: find the connector.
    let mut line = String::new();
    let connector = loop {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the server exited");
        if let Some(word) = line.split_whitespace().find(|w| w.starts_with("sb1:")) {
            break Connector::load_state(word).unwrap();
        }
    };
    // A request timeout far longer than the test: only the disconnection
    // can end the call.
    let client = Client::builder(&connector)
        .request_timeout(Duration::from_secs(3_600))
        .connect()
        .unwrap();
    let waiting = {
        let client = client.clone();
        std::thread::spawn(move || client.request::<_, ()>("hang", &()))
    };
    line.clear();
    while !line.contains("sleeping") {
        line.clear();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the server exited");
    }
    server.kill().unwrap();
    server.wait().unwrap();
    let outcome = waiting.join().unwrap();
    assert!(matches!(outcome, Err(Error::Disconnected)), "{outcome:?}");
    assert!(client.is_closed());
    assert!(matches!(
        client.request::<_, String>("echo", "anyone?"),
        Err(Error::Disconnected)
    ));
    // Killed, the server could not remove its private socket directory.
    if let Address::Unix(path) = connector.address() {
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn inside_an_async_runtime_blocking_calls_panic_instead_of_deadlocking() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&connector_in(&dir), echo_router()).unwrap();
    let client = Client::connect(server.connector()).unwrap();

    // In a task of the caller's own runtime: a panic that says why.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let in_task = client.clone();
    let outcome = runtime.block_on(async move {
        tokio::spawn(async move { in_task.request::<_, String>("echo", "from a task") }).await
    });
    let panic = outcome.expect_err("a blocking call inside a task must panic");
    assert!(panic.is_panic());
    let message = panic_message(panic.into_panic());
    assert!(
        message.contains("`blocking::Client::request` was called inside a running async runtime"),
        "{message}"
    );

    // From the runtime's blocking pool it is allowed, and works.
    let pooled = client.clone();
    let echoed = runtime
        .block_on(async move {
            tokio::task::spawn_blocking(move || {
                pooled.request::<_, String>("echo", "from spawn_blocking")
            })
            .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(echoed, "from spawn_blocking");

    // An async handler served by the blocking API's own runtime that makes
    // a blocking call: the handler panics, the caller gets an error answer,
    // and everything keeps working.
    let inner = Client::connect(server.connector()).unwrap();
    let router = Router::new().route("nested", move |(): ()| {
        let inner = inner.clone();
        async move { inner.request::<_, String>("echo", "nested") }
    });
    let dir2 = tempfile::tempdir().unwrap();
    let nesting = Server::bind(&connector_in(&dir2), router).unwrap();
    let caller = Client::connect(nesting.connector()).unwrap();
    let outcome = caller.request::<_, String>("nested", &());
    assert!(
        matches!(&outcome, Err(Error::HandlerFailed { message, .. })
            if message.contains("was called inside a running async runtime")),
        "{outcome:?}"
    );
    let echoed: String = client.request("echo", "after").unwrap();
    assert_eq!(echoed, "after");
}

#[test]
fn a_graceful_shutdown_lets_running_handlers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (started, running) = mpsc::channel();
    let router = Router::new().route("slow", move |ms: u64| {
        let started = started.clone();
        async move {
            started.send(()).map_err(|e| e.to_string())?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        }
    });
    let server = Server::bind(&connector_in(&dir), router).unwrap();
    let client = Client::connect(server.connector()).unwrap();
    let waiting = {
        let client = client.clone();
        std::thread::spawn(move || client.request::<_, u64>("slow", &200_u64))
    };
    running.recv().unwrap();
    let connector = server.connector().clone();
    server.shutdown();
    // The handler was running: it finished and its answer went out.
    assert_eq!(waiting.join().unwrap().unwrap(), 200);
    // The address is free again.
    let again = Server::bind(&connector, Router::new()).unwrap();
    drop(again);
}

#[test]
fn the_blocking_client_example_calls_the_cli_echo_server() {
    let example = support::example("blocking_client");
    let cli = support::built(&["switchboard"]);
    // Its stdin a pipe we hold: it stops (and removes its socket) when
    // this side closes it.
    let mut server = Command::new(&cli)
        .arg("echo-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let output = Command::new(&example)
        .arg(line.trim())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    drop(server.stdin.take());
    let _ = server.wait();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "hello");

    // Its source uses no tokio.
    let source = include_str!("../examples/blocking_client.rs");
    assert!(!source.contains("tokio"), "{source}");

    // A bad connector is a clear error and a failure exit.
    let bad = Command::new(&example)
        .arg("sb1:nonsense")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid connector string"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
