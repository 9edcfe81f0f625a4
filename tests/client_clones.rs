//! `Client` is a cheap clone of one connection, like the typed clients
//! and `blocking::Client`: a clone can go to a typed client and the
//! original still makes untyped calls; `close()` on any clone closes the
//! connection for all; dropping the last clone closes it too.

use std::time::Duration;

use switchboard::{Client, Connector, Error, Router, Server};

#[switchboard::service]
pub trait Kv {
    async fn get(&self, key: String) -> Option<String>;
}

struct Store;

impl Kv for Store {
    async fn get(&self, key: String) -> Option<String> {
        (key == "a").then(|| "1".to_owned())
    }
}

async fn server() -> Server {
    let router = Router::new()
        .route("add", |(a, b): (i64, i64)| async move { a + b })
        .service(KvServer::new(Store));
    Server::bind(&Connector::local(), router).await.unwrap()
}

/// Waits until the server has `count` clients: a close it is told of
/// takes milliseconds; only keepalive (20 s) notices a socket left open.
async fn until_clients(server: &Server, count: usize) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.clients().len() != count {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the server never had {count} clients: {:?}",
            server.clients()
        )
    });
}

#[tokio::test]
async fn clones_share_one_connection_and_a_typed_client_takes_a_clone() {
    let server = server().await;
    let client = Client::connect(server.connector()).await.unwrap();
    let kv = KvClient::new(client.clone());
    let copy = client.clone();
    assert_eq!(copy.id(), client.id());

    assert_eq!(kv.get("a".into()).await.unwrap(), Some("1".to_owned()));
    assert_eq!(client.request::<_, i64>("add", &(1, 2)).await.unwrap(), 3);
    assert_eq!(copy.request::<_, i64>("add", &(2, 2)).await.unwrap(), 4);
    // One connection: the server sees one client.
    assert_eq!(server.clients(), vec![client.id().to_owned()]);

    // Dropping clones leaves the connection to the others.
    drop(copy);
    drop(kv);
    assert_eq!(client.request::<_, i64>("add", &(3, 3)).await.unwrap(), 6);
    assert_eq!(server.clients().len(), 1);

    // Dropping the last one closes it.
    drop(client);
    until_clients(&server, 0).await;
}

#[tokio::test]
async fn close_on_one_clone_closes_the_connection_for_all() {
    let server = server().await;
    let client = Client::connect(server.connector()).await.unwrap();
    let kv = KvClient::new(client.clone());
    let other = client.clone();

    client.close().await;
    tokio::time::timeout(Duration::from_secs(30), other.closed())
        .await
        .expect("closed() returns on every clone");
    assert!(matches!(
        other.request::<_, i64>("add", &(1, 2)).await,
        Err(Error::Closed)
    ));
    assert!(matches!(kv.get("a".into()).await, Err(Error::Closed)));
    // `close` takes `&self`: the handle it was called on is still there,
    // and so are its clones, but the connection is gone for the server.
    assert!(client.peer().is_closed());
    until_clients(&server, 0).await;
    drop((client, kv, other));
}
