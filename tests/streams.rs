//! Streamed answers over real sockets: items in order then an end, errors
//! mid-stream, a slow consumer that holds its producer back (bounded
//! memory), a consumer that leaves half-way (the producer stops), and
//! streams in the other direction.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard::{
    Bytes, Client, Config, Connector, Context, Error, Format, HandlerError, Router, Server, Stream,
};

/// Counts the items a producer has made, so tests can see how far ahead of
/// its consumer it ran.
#[derive(Clone, Default)]
struct Produced(Arc<AtomicU64>);

impl Produced {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn router(produced: Produced) -> Router {
    Router::new()
        .route("count", |to: u32| async move { Stream::iter(1..=to) })
        .route("endless", move |size: usize| {
            let produced = produced.clone();
            async move {
                Stream::iter((0u64..).map(move |i| {
                    produced.0.fetch_add(1, Ordering::SeqCst);
                    let mut bytes = vec![0u8; size.max(8)];
                    bytes[..8].copy_from_slice(&i.to_le_bytes());
                    Bytes::from(bytes)
                }))
            }
        })
        .route("fails_at", |at: u32| async move {
            let items = futures_iter((1..=at).map(move |i| {
                if i == at {
                    Err(HandlerError::with_code(7, format!("failed at {i}")))
                } else {
                    Ok(i)
                }
            }));
            Stream::try_from_stream(items)
        })
        .route("refuses", |_: ()| async move {
            Err::<Stream<u32>, _>(HandlerError::invalid_params("no stream for you"))
        })
        .route("plain", |n: u32| async move { n * 2 })
}

/// An iterator as an async stream, without a futures dependency.
fn futures_iter<I: Iterator + Unpin>(items: I) -> impl futures_core::Stream<Item = I::Item> {
    struct It<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for It<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    It(items)
}

async fn serve(produced: Produced, format: Format) -> (Server, Client) {
    let connector = Connector::local().with_format(format);
    let server = Server::bind(&connector, router(produced)).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    (server, client)
}

#[tokio::test]
async fn items_arrive_in_order_then_the_end_in_both_formats() {
    for format in [Format::Json, Format::MsgPack] {
        let (_server, client) = serve(Produced::default(), format).await;
        let mut stream = client
            .request_stream::<_, u32>("count", &1000)
            .await
            .unwrap();
        let mut expected = 1;
        while let Some(item) = stream.next().await {
            assert_eq!(item.unwrap(), expected);
            expected += 1;
        }
        assert_eq!(expected, 1001, "{format:?}");
        assert!(stream.next().await.is_none(), "nothing after the end");
        let empty = client.request_stream::<_, u32>("count", &0).await.unwrap();
        assert_eq!(empty.collect().await.unwrap(), Vec::<u32>::new());
    }
}

#[tokio::test]
async fn an_error_ends_the_stream_after_the_items_before_it() {
    let (_server, client) = serve(Produced::default(), Format::Json).await;
    let mut stream = client
        .request_stream::<_, u32>("fails_at", &4)
        .await
        .unwrap();
    for expected in 1..4 {
        assert_eq!(stream.next().await.unwrap().unwrap(), expected);
    }
    match stream.next().await {
        Some(Err(Error::HandlerFailed {
            code: 7, message, ..
        })) => {
            assert_eq!(message, "failed at 4");
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
    assert!(stream.next().await.is_none());

    // A handler that refuses before streaming anything.
    let mut refused = client
        .request_stream::<_, u32>("refuses", &())
        .await
        .unwrap();
    assert!(matches!(
        refused.next().await,
        Some(Err(Error::BadRequest { .. }))
    ));
    assert!(refused.next().await.is_none());
}

#[tokio::test]
async fn plain_and_streamed_calls_meet_each_other_sensibly() {
    let (_server, client) = serve(Produced::default(), Format::MsgPack).await;
    // A plain answer read as a stream is a stream of one.
    let one = client.request_stream::<_, u32>("plain", &21).await.unwrap();
    assert_eq!(one.collect().await.unwrap(), [42]);
    // A stream asked for with `request` is a clear error, and the
    // connection goes on.
    match client.request::<_, u32>("count", &3).await {
        Err(Error::Unsupported(message)) => assert!(message.contains("request_stream")),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert_eq!(client.request::<_, u32>("plain", &1).await.unwrap(), 2);
    let again = client.request_stream::<_, u32>("count", &3).await.unwrap();
    assert_eq!(again.collect().await.unwrap(), [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_holds_its_producer_back() {
    // The client admits 16 messages of 1 MiB in all: the producer of
    // 64 KiB items may run at most that far ahead of what is read.
    let mut config = Config::default();
    config.max_in_flight = 16;
    config.window_bytes = 1 << 20;
    let produced = Produced::default();
    let server = Server::bind(&Connector::local(), router(produced.clone()))
        .await
        .unwrap();
    let client = Client::builder(server.connector())
        .config(config)
        .connect()
        .await
        .unwrap();
    let mut stream = client
        .request_stream::<_, Bytes>("endless", &(64 * 1024))
        .await
        .unwrap();
    let mut read = 0u64;
    let mut furthest_ahead = 0;
    while read < 300 {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(u64::from_le_bytes(item[..8].try_into().unwrap()), read);
        read += 1;
        if read.is_multiple_of(20) {
            // Give the producer every chance to run ahead.
            tokio::time::sleep(Duration::from_millis(20)).await;
            furthest_ahead = furthest_ahead.max(produced.get() - read);
        }
    }
    // The window (16), plus the item being encoded and the one the pump
    // holds while it waits for credit.
    assert!(
        furthest_ahead <= 18,
        "the producer ran {furthest_ahead} items ahead of a window of 16"
    );
    assert!(
        furthest_ahead >= 8,
        "the window was not used: {furthest_ahead}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    windows,
    ignore = "under Wine the connection ended after the drop (1 run in 1), as in the \
              100k-notification flood; cause not found yet"
)]
async fn dropping_the_stream_stops_the_producer_and_frees_its_credit() {
    let produced = Produced::default();
    let (_server, client) = serve(produced.clone(), Format::MsgPack).await;
    let mut stream = client
        .request_stream::<_, Bytes>("endless", &1024)
        .await
        .unwrap();
    for _ in 0..10 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    // The cancel reaches the producer: it stops making items.
    let mut last = produced.get();
    let mut stable_for = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = produced.get();
        if now == last {
            stable_for += 1;
            if stable_for == 20 {
                break;
            }
        } else {
            stable_for = 0;
            last = now;
        }
    }
    assert_eq!(stable_for, 20, "the producer kept going after the drop");
    assert!(
        last < 10 + 300,
        "the producer ran far past the window: {last}"
    );
    // Every item it sent was returned: the whole window is free for the
    // next streams, and the connection answers.
    for _ in 0..3 {
        let items = client
            .request_stream::<_, u32>("count", &2000)
            .await
            .unwrap();
        assert_eq!(items.collect().await.unwrap().len(), 2000);
    }
}

#[tokio::test]
async fn a_channel_producer_learns_that_its_consumer_left() {
    let (left_tx, mut left_rx) = tokio::sync::mpsc::unbounded_channel();
    let router = Router::new().route("ticks", move || {
        let left_tx = left_tx.clone();
        async move {
            let (sender, stream) = Stream::channel(4);
            tokio::spawn(async move {
                let mut sent = 0u64;
                while sender.send(sent).await.is_ok() {
                    sent += 1;
                }
                let _ = left_tx.send(sent);
            });
            stream
        }
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let mut ticks = client.request_stream::<_, u64>("ticks", &()).await.unwrap();
    for expected in 0..5 {
        assert_eq!(ticks.next().await.unwrap().unwrap(), expected);
    }
    drop(ticks);
    let sent = tokio::time::timeout(Duration::from_secs(10), left_rx.recv())
        .await
        .expect("the producer never noticed")
        .unwrap();
    assert!(sent >= 5);
}

#[tokio::test]
async fn a_server_reads_a_stream_from_its_client() {
    let client_router = Router::new().route("lines", |n: u32| async move {
        Stream::iter((0..n).map(|i| format!("line {i}")))
    });
    let server_router = Router::new().route("gather", |ctx: Context, n: u32| async move {
        let lines: Vec<String> = ctx.request_stream("lines", &n).await?.collect().await?;
        Ok::<_, Error>(lines.join("|"))
    });
    let server = Server::bind(&Connector::local(), server_router)
        .await
        .unwrap();
    let client = Client::builder(server.connector())
        .router(client_router)
        .connect()
        .await
        .unwrap();
    let joined: String = client.request("gather", &3).await.unwrap();
    assert_eq!(joined, "line 0|line 1|line 2");
}

#[tokio::test]
async fn a_stream_ends_with_disconnected_when_the_server_goes() {
    let (server, client) = serve(Produced::default(), Format::Json).await;
    let mut stream = client
        .request_stream::<_, Bytes>("endless", &16)
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    drop(server);
    let mut last = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream hung after its server left")
    {
        if let Err(e) = item {
            last = Some(e);
        }
    }
    assert!(
        matches!(last, Some(ref e) if e.is_connection_error()),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_graceful_shutdown_ends_an_endless_stream() {
    let (server, client) = serve(Produced::default(), Format::MsgPack).await;
    let mut stream = client
        .request_stream::<_, Bytes>("endless", &8)
        .await
        .unwrap();
    stream.next().await.unwrap().unwrap();
    let reader = tokio::spawn(async move {
        let mut last = None;
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                last = Some(e);
            }
        }
        last
    });
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown waited for an endless stream");
    let last = reader.await.unwrap();
    assert!(
        matches!(last, Some(Error::ShuttingDown) | Some(Error::Disconnected)),
        "{last:?}"
    );
}
