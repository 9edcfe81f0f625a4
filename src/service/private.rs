//! What the code written by `#[switchboard::service]` calls. Not public
//! API: it changes with the macro, which names it only as
//! `::switchboard::__private`.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use serde;
pub use serde_json;

use crate::blocking;
use crate::client::Client;
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::peer::Peer;
use crate::protocol::code;
use crate::stream::Stream;

/// The generated clients' connection: a client (whose calls follow its
/// reconnects, and which stays open while a clone of this lives) or a bare
/// peer, and the timeout for its requests.
#[derive(Clone)]
pub struct Caller {
    target: Target,
    timeout: Option<Duration>,
}

#[derive(Clone)]
enum Target {
    Client(Client),
    Peer(Peer),
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("Caller");
        match &self.target {
            Target::Client(client) => out.field("client", client),
            Target::Peer(peer) => out.field("peer", peer),
        };
        out.field("timeout", &self.timeout).finish()
    }
}

impl Caller {
    /// Calls through `client`, keeping it open.
    pub fn from_client(client: Client) -> Caller {
        Caller {
            target: Target::Client(client),
            timeout: None,
        }
    }

    /// Calls over a connection someone else keeps open.
    pub fn from_peer(peer: Peer) -> Caller {
        Caller {
            target: Target::Peer(peer),
            timeout: None,
        }
    }

    /// Connects with the default settings.
    pub async fn connect(connector: &Connector) -> Result<Caller> {
        Client::connect(connector).await.map(Caller::from_client)
    }

    /// A clone whose requests wait at most `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> Caller {
        Caller {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The current connection.
    pub fn peer(&self) -> Peer {
        match &self.target {
            Target::Client(client) => client.peer(),
            Target::Peer(peer) => peer.clone(),
        }
    }

    /// A request to a method returning a plain value.
    pub async fn request<P, R>(&self, route: &str, params: &P) -> Result<R>
    where
        P: Serialize,
        R: DeserializeOwned,
    {
        match (&self.target, self.timeout) {
            (Target::Client(client), Some(timeout)) => {
                client.request_timeout(route, params, timeout).await
            }
            (Target::Client(client), None) => client.request(route, params).await,
            (Target::Peer(peer), Some(timeout)) => {
                peer.request_timeout(route, params, timeout).await
            }
            (Target::Peer(peer), None) => peer.request(route, params).await,
        }
    }

    /// A request to a method returning `Result<T, E>`: the handler's `E`
    /// comes back typed, every other failure as the outer error.
    pub async fn request_fallible<P, T, E>(
        &self,
        route: &str,
        params: &P,
    ) -> Result<std::result::Result<T, E>>
    where
        P: Serialize,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match self.request(route, params).await {
            Ok(value) => Ok(Ok(value)),
            Err(error) => typed_error_of(error).map(Err),
        }
    }

    /// A request to a method answering a stream. (The timeout does not
    /// apply: a stream has no overall time limit.)
    pub async fn request_stream<P, T>(&self, route: &str, params: &P) -> Result<Stream<T>>
    where
        P: Serialize,
        T: DeserializeOwned,
    {
        match &self.target {
            Target::Client(client) => client.request_stream(route, params).await,
            Target::Peer(peer) => peer.request_stream(route, params).await,
        }
    }

    /// A notification.
    pub async fn notify<P: Serialize>(&self, route: &str, params: &P) -> Result<()> {
        match &self.target {
            Target::Client(client) => client.throw(route, params).await,
            Target::Peer(peer) => peer.throw(route, params).await,
        }
    }
}

/// The generated blocking clients' connection: a blocking client and the
/// timeout for its requests.
#[derive(Clone, Debug)]
pub struct BlockingCaller {
    client: blocking::Client,
    timeout: Option<Duration>,
}

impl BlockingCaller {
    /// Calls through `client`.
    pub fn new(client: blocking::Client) -> BlockingCaller {
        BlockingCaller {
            client,
            timeout: None,
        }
    }

    /// Connects with the default settings.
    #[track_caller]
    pub fn connect(connector: &Connector) -> Result<BlockingCaller> {
        blocking::Client::connect(connector).map(BlockingCaller::new)
    }

    /// A clone whose requests wait at most `timeout`.
    pub fn with_timeout(&self, timeout: Duration) -> BlockingCaller {
        BlockingCaller {
            timeout: Some(timeout),
            ..self.clone()
        }
    }

    /// The current connection.
    pub fn peer(&self) -> Peer {
        self.client.as_async().peer()
    }

    /// A request to a method returning a plain value.
    #[track_caller]
    pub fn request<P, R>(&self, route: &str, params: &P) -> Result<R>
    where
        P: Serialize,
        R: DeserializeOwned,
    {
        match self.timeout {
            Some(timeout) => self.client.request_timeout(route, params, timeout),
            None => self.client.request(route, params),
        }
    }

    /// A request to a method returning `Result<T, E>`.
    #[track_caller]
    pub fn request_fallible<P, T, E>(
        &self,
        route: &str,
        params: &P,
    ) -> Result<std::result::Result<T, E>>
    where
        P: Serialize,
        T: DeserializeOwned,
        E: DeserializeOwned,
    {
        match self.request(route, params) {
            Ok(value) => Ok(Ok(value)),
            Err(error) => typed_error_of(error).map(Err),
        }
    }

    /// A request to a method answering a stream, read as an iterator.
    #[track_caller]
    pub fn request_stream<P, T>(&self, route: &str, params: &P) -> Result<blocking::Items<T>>
    where
        P: Serialize,
        T: DeserializeOwned,
    {
        self.client.request_stream(route, params)
    }

    /// A notification.
    #[track_caller]
    pub fn notify<P: Serialize>(&self, route: &str, params: &P) -> Result<()> {
        self.client.throw(route, params)
    }
}

/// The typed error inside a failed call (the data of the handler's
/// `Err(e)`, PROTOCOL.md), or the failure itself when it is not one (the
/// connection, a panic, an unknown route, data of another type...).
fn typed_error_of<E: DeserializeOwned>(error: Error) -> Result<E> {
    if let Error::HandlerFailed {
        code: code::HANDLER_FAILED,
        data: Some(data),
        ..
    } = &error
        && let Ok(typed) = data.decode()
    {
        return Ok(typed);
    }
    Err(error)
}

/// A type that can be a service method's argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an argument of a switchboard service method",
    label = "arguments travel in the request, so this type must implement \
             `serde::Serialize` and `serde::Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait Argument {}

impl<T: Serialize + DeserializeOwned> Argument for T {}

/// A type that can be a service method's answer.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the answer of a switchboard service method",
    label = "answers travel in the response, so this type must implement \
             `serde::Serialize` and `serde::Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait Answer {}

impl<T: Serialize + DeserializeOwned> Answer for T {}

/// A type that can be a service method's error (`Result<T, E>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error of a switchboard service method",
    label = "errors travel typed in the response, so this type must implement \
             `serde::Serialize` and `serde::Deserialize`",
    note = "derive them: `#[derive(serde::Serialize, serde::Deserialize)]`"
)]
pub trait MethodError {}

impl<T: Serialize + DeserializeOwned> MethodError for T {}

/// Fails to compile, at the argument, unless `T` can be one.
pub fn assert_argument<T: Argument>() {}

/// Fails to compile, at the return type, unless `T` can be an answer.
pub fn assert_answer<T: Answer>() {}

/// Fails to compile, at the error type, unless `T` can be an error.
pub fn assert_error<T: MethodError>() {}
