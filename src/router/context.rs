//! What a handler can ask for besides its parameters: the [`Context`] of
//! its call and the router's [`State`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::peer::Peer;
use crate::stream::Stream;

/// What a handler knows about its call: which client, which route, and a
/// handle to send requests back over the same connection.
///
/// ```
/// use switchboard::{Context, Router};
///
/// async fn whoami(ctx: Context) -> String {
///     ctx.client_id().to_owned()
/// }
///
/// async fn progress(ctx: Context, steps: u32) -> Result<(), switchboard::Error> {
///     for step in 1..=steps {
///         ctx.throw("progress", &step).await?; // a notification back to the caller
///     }
///     Ok(())
/// }
///
/// let router = Router::new().route("whoami", whoami).route("work", progress);
/// ```
#[derive(Clone, Debug)]
pub struct Context {
    pub(super) peer: Peer,
    pub(super) route: Arc<str>,
}

impl Context {
    /// The id of the client end of the connection this call came over.
    pub fn client_id(&self) -> &str {
        self.peer.client_id()
    }

    /// The route this call was addressed to (useful in a fallback handler).
    pub fn route(&self) -> &str {
        &self.route
    }

    /// The other side of the connection (its process and user id, where
    /// the OS tells).
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Sends a request back to the caller and waits for its response.
    pub async fn request<T, R>(&self, route: &str, params: &T) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.peer.request(route, params).await
    }

    /// Like [`Context::request`], waiting at most `timeout`.
    pub async fn request_timeout<T, R>(
        &self,
        route: &str,
        params: &T,
        timeout: Duration,
    ) -> Result<R>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.peer.request_timeout(route, params, timeout).await
    }

    /// Sends a request back to the caller, ignoring the value it answers
    /// with ([`Peer::call`]).
    pub async fn call<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.peer.call(route, params).await
    }

    /// Sends a request back to the caller, answered by a stream
    /// ([`Peer::request_stream`]).
    pub async fn request_stream<T, R>(&self, route: &str, params: &T) -> Result<Stream<R>>
    where
        T: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        self.peer.request_stream(route, params).await
    }

    /// Sends a notification back to the caller.
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.peer.throw(route, params).await
    }

    /// Waits until the caller's connection has ended: a long handler can
    /// stop early when nobody will receive its answer.
    pub async fn closed(&self) {
        self.peer.closed().await;
    }
}

/// The router's state, handed to every handler that asks for it (a clone
/// of what [`Router::with_state`](crate::Router::with_state) was given; put
/// what must be shared behind an `Arc`).
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use switchboard::{Router, State};
///
/// async fn bump(State(hits): State<Arc<AtomicU64>>) -> u64 {
///     hits.fetch_add(1, Ordering::Relaxed) + 1
/// }
///
/// let router = Router::with_state(Arc::new(AtomicU64::new(0))).route("bump", bump);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

/// An argument a handler takes from its call rather than from the
/// caller's parameters: [`Context`] or [`State`]. These come first; the
/// parameters, if any, come last.
#[diagnostic::on_unimplemented(
    message = "a handler cannot take `{Self}` before its last argument",
    label = "only `Context` and `State<S>` may come before the parameters",
    note = "a handler takes `Context` and/or `State<S>` first, then at most one parameter type (use a tuple or a struct for several values)"
)]
pub trait FromContext<S>: Sized + Send + 'static {
    #[doc(hidden)]
    fn from_context(context: &Context, state: &S) -> Self;
}

impl<S> FromContext<S> for Context {
    fn from_context(context: &Context, _: &S) -> Context {
        context.clone()
    }
}

impl<S: Clone + Send + 'static> FromContext<S> for State<S> {
    fn from_context(_: &Context, state: &S) -> State<S> {
        State(state.clone())
    }
}
