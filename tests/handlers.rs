//! Handlers of every shape, over a real socket: plain values, `()`,
//! `Result`s with text and typed errors, state, context, blocking handlers
//! that do not stall the others, the built-in describe route, and a
//! duplicate route that names the line that added it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard::{
    Client, Connector, Context, DESCRIBE_ROUTE, Error, HandlerError, Router, Server, State,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i64,
    y: i64,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum DivError {
    ByZero,
    Overflow { a: i64 },
}

async fn nothing() {}
async fn origin() -> Point {
    Point { x: 0, y: 0 }
}
async fn mirror(p: Point) -> Point {
    Point { x: -p.x, y: -p.y }
}
async fn whoami(ctx: Context) -> String {
    ctx.client_id().to_owned()
}
async fn div((a, b): (i64, i64)) -> Result<i64, DivError> {
    if b == 0 {
        return Err(DivError::ByZero);
    }
    a.checked_div(b).ok_or(DivError::Overflow { a })
}
async fn text_error(fail: bool) -> Result<&'static str, String> {
    if fail {
        Err("it failed".into())
    } else {
        Ok("fine")
    }
}
async fn io_error() -> Result<u8, std::io::Error> {
    Err(std::io::Error::other("disk on fire"))
}
async fn counted(State(hits): State<Arc<AtomicU64>>, ctx: Context, by: u64) -> (String, u64) {
    let total = hits.fetch_add(by, Ordering::SeqCst) + by;
    (ctx.route().to_owned(), total)
}
fn slow_sum(numbers: Vec<u64>) -> u64 {
    // Blocks its thread, as CPU-bound or blocking-I/O work does.
    std::thread::sleep(Duration::from_millis(300));
    numbers.iter().sum()
}

async fn serve() -> (Server, Client, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let router = Router::with_state(Arc::clone(&hits))
        .route("nothing", nothing)
        .route("origin", origin)
        .route("mirror", mirror)
        .route("whoami", whoami)
        .route("div", div)
        .route("text_error", text_error)
        .route("io_error", io_error)
        .route("counted", counted)
        .route_blocking("slow_sum", slow_sum)
        .route_blocking("blocking_ctx", |ctx: Context, n: u32| {
            format!("{} {n}", ctx.client_id())
        })
        .route("quick", |n: u32| async move { n + 1 });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::builder(server.connector())
        .id("handlers-test")
        .connect()
        .await
        .unwrap();
    (server, client, hits)
}

#[tokio::test]
async fn every_shape_answers() {
    let (_server, client, hits) = serve().await;
    client.call("nothing", &()).await.unwrap();
    let unit: () = client.request("nothing", &()).await.unwrap();
    assert_eq!(unit, ());
    let origin: Point = client.request("origin", &()).await.unwrap();
    assert_eq!(origin, Point { x: 0, y: 0 });
    let mirrored: Point = client
        .request("mirror", &Point { x: 1, y: -2 })
        .await
        .unwrap();
    assert_eq!(mirrored, Point { x: -1, y: 2 });
    let me: String = client.request("whoami", &()).await.unwrap();
    assert_eq!(me, "handlers-test");
    let (route, total): (String, u64) = client.request("counted", &5).await.unwrap();
    assert_eq!((route.as_str(), total), ("counted", 5));
    let (_, total): (String, u64) = client.request("counted", &2).await.unwrap();
    assert_eq!(total, 7);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        7,
        "handlers share the router's state"
    );
    let text: String = client.request("blocking_ctx", &9).await.unwrap();
    assert_eq!(text, "handlers-test 9");
}

#[tokio::test]
async fn errors_keep_their_text_and_typed_errors_their_value() {
    let (_server, client, _) = serve().await;
    let answer: i64 = client.request("div", &(7, 2)).await.unwrap();
    assert_eq!(answer, 3);
    match client.request::<_, i64>("div", &(1, 0)).await {
        Err(Error::HandlerFailed {
            data: Some(data), ..
        }) => {
            assert_eq!(data.decode::<DivError>().unwrap(), DivError::ByZero);
        }
        other => panic!("expected a typed error, got {other:?}"),
    }
    match client.request::<_, i64>("div", &(i64::MIN, -1)).await {
        Err(Error::HandlerFailed {
            data: Some(data),
            message,
            ..
        }) => {
            assert_eq!(
                data.decode::<DivError>().unwrap(),
                DivError::Overflow { a: i64::MIN }
            );
            assert!(message.contains("Overflow"), "{message}");
        }
        other => panic!("expected a typed error, got {other:?}"),
    }
    let fine: String = client.request("text_error", &false).await.unwrap();
    assert_eq!(fine, "fine");
    match client.request::<_, String>("text_error", &true).await {
        Err(Error::HandlerFailed { message, .. }) => assert_eq!(message, "it failed"),
        other => panic!("{other:?}"),
    }
    match client.request::<_, u8>("io_error", &()).await {
        Err(Error::HandlerFailed { message, data, .. }) => {
            assert_eq!(message, "disk on fire");
            assert!(data.is_none());
        }
        other => panic!("{other:?}"),
    }
    // Parameters that do not fit the handler: the caller's mistake.
    assert!(matches!(
        client.request::<_, Point>("mirror", &"not a point").await,
        Err(Error::BadRequest { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_handlers_do_not_stall_the_others() {
    let (_server, client, _) = serve().await;
    let client = Arc::new(client);
    // Four slow blocking calls at once, on a runtime of two workers...
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let client = Arc::clone(&client);
            tokio::spawn(async move {
                client
                    .request::<_, u64>("slow_sum", &vec![i, 1, 2])
                    .await
                    .unwrap()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...while they run, quick requests are answered: none of them waits
    // for a blocking call to finish.
    for n in 0..20u32 {
        let quick: u32 = client.request("quick", &n).await.unwrap();
        assert_eq!(quick, n + 1);
        assert!(
            slow.iter().any(|task| !task.is_finished()),
            "a quick request waited for every slow one"
        );
    }
    for (i, task) in slow.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), i as u64 + 3);
    }
}

#[tokio::test]
async fn the_describe_route_lists_registered_services() {
    let router = Router::new()
        .route("x", nothing)
        .__describe(serde_json::json!({"name": "Calculator", "methods": []}));
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let described: serde_json::Value = client.request(DESCRIBE_ROUTE, &()).await.unwrap();
    assert_eq!(
        described,
        serde_json::json!({"services": [{"name": "Calculator", "methods": []}]})
    );
    // A server with no typed services still answers, with none.
    let (_server, plain, _) = serve().await;
    let described: serde_json::Value = plain.request(DESCRIBE_ROUTE, &()).await.unwrap();
    assert_eq!(described, serde_json::json!({"services": []}));
}

#[test]
fn a_duplicate_route_panics_at_the_line_that_added_it() {
    let location = Arc::new(std::sync::Mutex::new(None));
    let seen = Arc::clone(&location);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        *seen.lock().unwrap() = info.location().map(|l| (l.file().to_owned(), l.line()));
    }));
    let mut expected = 0;
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let router = Router::new().route("twice", nothing);
        expected = line!() + 1;
        let _ = router.route("twice", nothing);
    }));
    std::panic::set_hook(previous);
    assert!(panicked.is_err(), "a duplicate route must panic");
    let (file, line) = location.lock().unwrap().clone().unwrap();
    assert!(file.ends_with("handlers.rs"), "the panic points at {file}");
    assert_eq!(line, expected);
}

#[tokio::test]
async fn handlers_are_plain_functions_with_helpful_errors_when_misused() {
    // Misuse is a compile error; tests/ui_handlers holds those (trybuild).
    // Here: HandlerError's typed data survives a round trip.
    let router = Router::new().route("custom", || async {
        Err::<(), _>(HandlerError::with_code(42, "custom").data(&Point { x: 1, y: 2 }))
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    match client.call("custom", &()).await {
        Err(Error::HandlerFailed {
            code: 42,
            message,
            data: Some(data),
        }) => {
            assert_eq!(message, "custom");
            assert_eq!(data.decode::<Point>().unwrap(), Point { x: 1, y: 2 });
        }
        other => panic!("{other:?}"),
    }
}
