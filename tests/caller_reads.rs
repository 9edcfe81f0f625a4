//! A caller waiting for its answer runs the connection's read loop itself
//! (`peer/reading.rs`). These check what must not change with that: a
//! request future that was polled and then set aside unpolled holds
//! nothing up (the other side's calls, other callers' answers), and many
//! callers on one connection all get their answers, on both runtimes.

use std::sync::Arc;
use std::time::Duration;

use switchboard::{Client, Context, HandlerError, Router, Server};

fn echo_router() -> Router {
    Router::new().route(
        "echo",
        |text: String| async move { Ok::<_, HandlerError>(text) },
    )
}

/// A server with `router`, and a client `id` connected to it that answers
/// `double`, the route the server calls back.
async fn server_and_client(router: Router, id: &str) -> (Server, Client) {
    let server = Server::bind(&switchboard::Connector::local(), router)
        .await
        .unwrap();
    let client_router =
        Router::new().route(
            "double",
            |n: i64| async move { Ok::<_, HandlerError>(n * 2) },
        );
    let client = Client::builder(server.connector())
        .id(id)
        .router(client_router)
        .connect()
        .await
        .unwrap();
    server.wait_for_clients(1).await;
    (server, client)
}

/// Well above anything these exchanges need, well below the request
/// timeout: a stalled read loop fails here rather than hanging.
const BOUND: Duration = Duration::from_secs(10);

async fn a_request_set_aside_holds_nothing_up() {
    let router = echo_router().route("slow", |ms: u64| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, HandlerError>(ms)
    });
    let (server, client) = server_and_client(router, "set-aside").await;

    // Polled (it runs the read loop while it waits), then left unpolled.
    let mut aside = Box::pin(client.request::<_, u64>("slow", &300_u64));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), &mut aside)
            .await
            .is_err(),
        "the slow request answered early"
    );

    // The server's calls to the client are still read and answered...
    for n in 0..20_i64 {
        let doubled =
            tokio::time::timeout(BOUND, server.request::<_, i64>("set-aside", "double", &n))
                .await
                .expect("the client's read loop stalled behind a request set aside")
                .unwrap();
        assert_eq!(doubled, n * 2);
    }
    // ...and so are the answers to the client's other requests.
    for i in 0..20_u32 {
        let echoed: String = tokio::time::timeout(BOUND, client.request("echo", &format!("m{i}")))
            .await
            .expect("another request's answer stalled behind a request set aside")
            .unwrap();
        assert_eq!(echoed, format!("m{i}"));
    }
    // The one set aside still gets its answer once polled again.
    let slow = tokio::time::timeout(BOUND, aside).await.unwrap().unwrap();
    assert_eq!(slow, 300);
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_set_aside_holds_nothing_up_current_thread() {
    a_request_set_aside_holds_nothing_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_set_aside_holds_nothing_up_multi_thread() {
    a_request_set_aside_holds_nothing_up().await;
}

/// Many callers at once on one connection, each running the read loop
/// while it waits, and the server calling back in the middle: every
/// answer reaches its own caller.
async fn many_callers_each_get_their_own_answer() {
    let router = echo_router().route("ask_back", |ctx: Context, n: i64| async move {
        let doubled: i64 = ctx.request("double", &n).await?;
        Ok::<_, HandlerError>(doubled + 1)
    });
    let (_server, client) = server_and_client(router, "many").await;
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..16_i64 {
        let client = client.clone();
        callers.spawn(async move {
            for i in 0..100_i64 {
                let n = caller * 1_000 + i;
                let answer: i64 = match i % 2 {
                    0 => client.request("ask_back", &n).await.unwrap(),
                    _ => {
                        let echoed: String = client.request("echo", &n.to_string()).await.unwrap();
                        echoed.parse::<i64>().unwrap() * 2 + 1
                    }
                };
                assert_eq!(answer, n * 2 + 1);
            }
        });
    }
    // Also from the test's own future, which is what `block_on` polls.
    for i in 0..100_i64 {
        let answer: i64 = client.request("ask_back", &i).await.unwrap();
        assert_eq!(answer, i * 2 + 1);
    }
    tokio::time::timeout(BOUND * 3, async {
        while let Some(done) = callers.join_next().await {
            done.unwrap();
        }
    })
    .await
    .expect("callers stalled");
}

#[tokio::test(flavor = "current_thread")]
async fn many_callers_each_get_their_own_answer_current_thread() {
    many_callers_each_get_their_own_answer().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_callers_each_get_their_own_answer_multi_thread() {
    many_callers_each_get_their_own_answer().await;
}

/// The runtime's own `block_on` future is a caller too: after a request
/// made there returns, the read loop goes on (here: the server's calls to
/// the client are answered while the test's future sleeps, not polling).
#[test]
fn after_a_block_on_call_returns_the_loop_goes_on() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, client) = runtime.block_on(server_and_client(echo_router(), "block-on"));
    let server = Arc::new(server);
    for round in 0..50_i64 {
        // A request from `block_on`'s future, which then returns.
        let echoed: String = runtime
            .block_on(client.request("echo", &round.to_string()))
            .unwrap();
        assert_eq!(echoed, round.to_string());
        // The server calls the client from a task of its own; the next
        // `block_on` only sleeps, so the client's loop task must answer.
        let asked = {
            let server = Arc::clone(&server);
            runtime
                .spawn(async move { server.request::<_, i64>("block-on", "double", &round).await })
        };
        let doubled = runtime
            .block_on(async { tokio::time::timeout(BOUND, asked).await })
            .expect("the client's read loop stalled after block_on returned")
            .unwrap()
            .unwrap();
        assert_eq!(doubled, round * 2);
    }
}
