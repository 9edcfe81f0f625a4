//! Timeouts over real sockets: a request that runs out of time is cancelled
//! on the server and leaves the connection usable; default timeouts expire
//! on time, many at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard::{Client, Connector, Error, HandlerError, Router, Server};
use tokio::sync::mpsc;

mod support;

use support::conversation::test_router;

/// The test routes and `forever`, which never answers; the receiver hears
/// of every `forever` handler that was stopped.
fn with_forever() -> (Router, mpsc::UnboundedReceiver<()>) {
    let (tx, dropped) = mpsc::unbounded_channel::<()>();
    struct OnDrop(mpsc::UnboundedSender<()>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let router = test_router().route("forever", move |_: ()| {
        let guard = OnDrop(tx.clone());
        async move {
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<(), HandlerError>(())
        }
    });
    (router, dropped)
}

#[tokio::test]
async fn timeout_cancels_the_handler_and_keeps_the_connection() {
    let (router, mut dropped) = with_forever();
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let result = client
        .request_timeout::<_, ()>("forever", &(), Duration::from_millis(100))
        .await;
    assert!(
        matches!(result, Err(Error::Timeout(d)) if d == Duration::from_millis(100)),
        "{result:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), dropped.recv())
        .await
        .expect("the cancel reached the server and stopped the handler");
    assert_eq!(client.request::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_timeouts_expire_on_time_many_at_once_and_stop_their_handlers() {
    // Requests with the connection's default timeout are timed out by one
    // sweep per connection, not a timer each: they must still end on time,
    // not early, each one cancelled on the server, and a shorter or longer
    // timeout of a call's own must keep working next to them.
    let (router, mut dropped) = with_forever();
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let limit = Duration::from_millis(300);
    let mut config = switchboard::Config::default();
    config.request_timeout = Some(limit);
    let client = Client::builder(server.connector())
        .config(config)
        .connect()
        .await
        .unwrap();
    let client = Arc::new(client);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40u64 {
        let client = Arc::clone(&client);
        calls.spawn(async move {
            // Staggered, so deadlines are spread over the sweep's horizon.
            tokio::time::sleep(Duration::from_millis(5 * i)).await;
            let started = Instant::now();
            let outcome = client.request::<_, ()>("forever", &()).await;
            (started.elapsed(), outcome)
        });
    }
    // A call's own timeout, sooner than the next sweep and later than it.
    let own = |limit: u64| {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = client
                .request_timeout::<_, ()>("forever", &(), Duration::from_millis(limit))
                .await;
            (started.elapsed(), outcome)
        })
    };
    let (short, long) = (own(50), own(700));
    while let Some(call) = tokio::time::timeout(Duration::from_secs(10), calls.join_next())
        .await
        .expect("a timeout never fired")
    {
        let (took, outcome) = call.unwrap();
        assert!(
            matches!(outcome, Err(Error::Timeout(d)) if d == limit),
            "{outcome:?}"
        );
        assert!(took >= limit, "timed out early: after {took:?}");
        assert!(
            took < Duration::from_secs(3),
            "timed out late: after {took:?}"
        );
    }
    for (call, limit) in [(short, 50), (long, 700)] {
        let (took, outcome) = call.await.unwrap();
        let limit = Duration::from_millis(limit);
        assert!(
            matches!(outcome, Err(Error::Timeout(d)) if d == limit),
            "{outcome:?}"
        );
        assert!(
            took >= limit && took < limit + Duration::from_secs(3),
            "{took:?} for {limit:?}"
        );
    }
    // Every one of the 42 was cancelled on the server.
    for _ in 0..42 {
        tokio::time::timeout(Duration::from_secs(5), dropped.recv())
            .await
            .expect("a timed-out request's handler was not stopped");
    }
    assert_eq!(client.request::<_, i64>("add", &(1, 1)).await.unwrap(), 2);
}
