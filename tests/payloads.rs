//! Bodies large and small over real sockets: large bodies and byte
//! payloads round-trip intact, shared and held, and hundreds in flight on
//! one connection each get their own answer.

use std::sync::Arc;

use switchboard::{Bytes, Client, Connector, Format, HandlerError, Router, Server};

mod support;

use support::conversation::test_router;

#[tokio::test]
async fn large_bodies_round_trip_intact_again_and_again() {
    // Large frames reuse their buffers on both sides; a stale byte would show.
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    for format in [Format::Json, Format::MsgPack] {
        let connector = server.connector().clone().with_format(format);
        let client = Client::connect(&connector).await.unwrap();
        for (size, fill) in [
            (300_000, 'a'),
            (100_000, 'b'),
            (500_000, 'c'),
            (70_000, 'd'),
        ] {
            let text: String = std::iter::repeat_n(fill, size).collect();
            let echoed: String = client.request("echo", &text).await.unwrap();
            assert_eq!(echoed.len(), size);
            assert!(
                echoed.chars().all(|c| c == fill),
                "{format:?}, {size} bytes of {fill}"
            );
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
struct Upload {
    name: String,
    data: Bytes,
}

#[tokio::test]
async fn byte_payloads_round_trip_and_stay_intact_when_held() {
    // Received `Bytes` may refer to the frame they came in; a handler that
    // keeps them must never see that memory reused for a later frame.
    let held = Arc::new(std::sync::Mutex::new(Vec::<Bytes>::new()));
    let keep = held.clone();
    let router = Router::new()
        .route(
            "echo",
            |data: Bytes| async move { Ok::<_, HandlerError>(data) },
        )
        .route("keep", move |upload: Upload| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push(upload.data.clone());
                Ok::<_, HandlerError>(upload)
            }
        });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    for format in [Format::Json, Format::MsgPack] {
        held.lock().unwrap().clear();
        let connector = server.connector().clone().with_format(format);
        let client = Client::connect(&connector).await.unwrap();
        let sizes: &[usize] = match format {
            Format::Json => &[0, 1, 70_000],
            _ => &[0, 1, 32 * 1024 - 1, 32 * 1024, 100_000, 3 << 20, 70_000],
        };
        for (i, &size) in sizes.iter().enumerate() {
            let fill = i as u8 + 1;
            let data = Bytes::from(vec![fill; size]);
            let echoed: Bytes = client.request("echo", &data).await.unwrap();
            assert_eq!(echoed, data, "{format:?}, {size} bytes");
            let upload = Upload {
                name: format!("upload {i}"),
                data,
            };
            let back: Upload = client.request("keep", &upload).await.unwrap();
            assert_eq!(back, upload, "{format:?}, {size} bytes");
        }
        let held = held.lock().unwrap();
        assert_eq!(held.len(), sizes.len());
        for (i, (data, &size)) in held.iter().zip(sizes).enumerate() {
            assert_eq!(data.len(), size);
            assert!(
                data.iter().all(|&b| b == i as u8 + 1),
                "{format:?}: the payload held from request {i} changed"
            );
        }
    }
}

#[tokio::test]
async fn one_shared_payload_in_many_concurrent_requests() {
    let router = Router::new().route("sum", |data: Bytes| async move {
        Ok::<_, HandlerError>(data.iter().map(|&b| u64::from(b)).sum::<u64>())
    });
    let server = Server::bind(&Connector::local().with_format(Format::MsgPack), router)
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let data = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let expected: u64 = data.iter().map(|&b| u64::from(b)).sum();
    // Queued together, the frames all refer to the one buffer.
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, data) = (client.clone(), data.clone());
            tokio::spawn(async move { client.request::<_, u64>("sum", &data).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), expected);
    }
}

#[tokio::test]
async fn hundreds_in_flight_on_one_connection_each_get_their_own_answer() {
    // Bursts on both sides leave in batches; every response must still find
    // its request.
    let server = Server::bind(&Connector::local(), test_router())
        .await
        .unwrap();
    let client = Arc::new(Client::connect(server.connector()).await.unwrap());
    let tasks: Vec<_> = (0..500i64)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { (i, client.request::<_, i64>("add", &(i, i)).await) })
        })
        .collect();
    for task in tasks {
        let (i, sum) = task.await.unwrap();
        assert_eq!(sum.unwrap(), 2 * i);
    }
}
