//! The opt-in built-in call `switchboard.shutdown`: a parent asks a child
//! that serves to stop gracefully, instead of killing it.

use std::sync::Arc;

use serde::de::IgnoredAny;
use tokio::sync::watch;

use super::Service;
use crate::error::Result;
use crate::peer::Peer;
use crate::router::Router;

/// The route [`Shutdown`] answers.
const ROUTE: &str = "switchboard.shutdown";

/// A shutdown request that the other side can make: add it to the router
/// of the process that serves ([`Router::service`]), and wait on
/// [`Shutdown::requested`], typically with
/// [`Server::run_until`](crate::Server::run_until), which then stops
/// gracefully (running handlers finish, their answers go out). The caller
/// uses [`Shutdown::request`]; it returns once the call was accepted.
/// Servers without it answer that the route does not exist.
///
/// ```
/// use switchboard::{Client, Connector, Router, Server, Shutdown};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let shutdown = Shutdown::new();
/// let server = Server::bind(&Connector::local(), Router::new().service(shutdown.clone())).await?;
/// let client = Client::connect(server.connector()).await?;
/// let serving = tokio::spawn(server.run_until(async move { shutdown.requested().await }));
///
/// Shutdown::request(&client.peer()).await?;
/// serving.await.expect("the server stopped");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Shutdown {
    requested: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A shutdown that nobody has asked for yet.
    pub fn new() -> Shutdown {
        Shutdown {
            requested: Arc::new(watch::channel(false).0),
        }
    }

    /// Completes once the other side has asked (at once if it already has).
    pub async fn requested(&self) {
        let mut requested = self.requested.subscribe();
        // The sender lives in `self`, so waiting cannot fail.
        let _ = requested.wait_for(|requested| *requested).await;
    }

    /// Whether the other side has asked.
    pub fn is_requested(&self) -> bool {
        *self.requested.borrow()
    }

    /// Asks the process on the other side of `peer` to shut down, and waits
    /// for it to accept. Fails with [`Error::NoSuchRoute`](crate::Error::NoSuchRoute)
    /// if it does not offer [`Shutdown`].
    pub async fn request(peer: &Peer) -> Result<()> {
        peer.request(ROUTE, &()).await
    }
}

impl Service for Shutdown {
    fn register<S: Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.route(ROUTE, move |_: IgnoredAny| {
            self.requested.send_replace(true);
            async {}
        })
    }

    fn description(&self) -> serde_json::Value {
        serde_json::json!({
            "name": "switchboard",
            "methods": [{
                "name": "shutdown",
                "route": ROUTE,
                "kind": "request",
                "params": [],
                "returns": "()",
            }],
        })
    }
}
