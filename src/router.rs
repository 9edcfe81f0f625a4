//! Routing requests and notifications to handlers by exact name.
//!
//! Handlers are plain async functions over serde types, in one of three
//! shapes: `async fn() -> Result<R, E>`, `async fn(T) -> Result<R, E>`, or
//! `async fn(Context, T) -> Result<R, E>` when the handler needs to know who
//! called or to call them back. `E` is anything displayable (its text
//! becomes the error message) or a [`HandlerError`] with a chosen code.
//!
//! ```
//! use switchboard::{Context, HandlerError, Router};
//!
//! async fn add((a, b): (i64, i64)) -> Result<i64, HandlerError> {
//!     a.checked_add(b).ok_or_else(|| HandlerError::invalid_params("overflow"))
//! }
//!
//! async fn whoami(ctx: Context, _: ()) -> Result<String, String> {
//!     Ok(ctx.client_id().to_owned())
//! }
//!
//! let router = Router::new().route("add", add).route("whoami", whoami);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::peer::{BoxFuture, Failure, Inbound, Order, Outcome, Peer};
use crate::protocol::message::{self, MAX_ROUTE_LEN};
use crate::protocol::{Body, RequestId, code, serializer};
use crate::transport::OutFrame;

/// An error a handler returns: a code (JSON-RPC style, see
/// [`protocol::code`](crate::protocol::code)) and a message for the caller.
///
/// Any `Display` type converts into one with code
/// [`HANDLER_FAILED`](crate::protocol::code::HANDLER_FAILED), so handlers can
/// use `?` on most errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    code: i32,
    message: String,
}

impl HandlerError {
    /// A handler failure with the default code.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError::with_code(code::HANDLER_FAILED, message)
    }

    /// The caller's parameters were unacceptable; the caller sees
    /// [`Error::BadRequest`](crate::Error::BadRequest).
    pub fn invalid_params(message: impl Into<String>) -> HandlerError {
        HandlerError::with_code(code::INVALID_PARAMS, message)
    }

    /// A failure with an application-defined code.
    pub fn with_code(code: i32, message: impl Into<String>) -> HandlerError {
        HandlerError {
            code,
            message: message.into(),
        }
    }

    /// The error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

// HandlerError deliberately does not implement Display, so this blanket
// conversion does not overlap with `From<T> for T`.
impl<E: fmt::Display> From<E> for HandlerError {
    fn from(error: E) -> HandlerError {
        HandlerError::new(error.to_string())
    }
}

/// What a handler knows about its call: which client, which route, and a
/// handle to send requests back over the same connection.
#[derive(Clone, Debug)]
pub struct Context {
    peer: Peer,
    route: Arc<str>,
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

    /// The other side of the connection.
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

    /// Sends a notification back to the caller.
    pub async fn throw<T: Serialize + ?Sized>(&self, route: &str, params: &T) -> Result<()> {
        self.peer.throw(route, params).await
    }
}

/// A handler with its types erased. For a request (`Some(id)`) it answers
/// `Some(frame)`; for a notification, `None`.
type Erased = Arc<
    dyn Fn(Context, Body, Option<RequestId>) -> BoxFuture<Outcome<Option<OutFrame>>> + Send + Sync,
>;

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Failure {
        Failure::new(error.code, error.message)
    }
}

/// A function usable as a route handler. Implemented for async functions
/// and closures of three shapes: `async fn() -> Result<R, E>`,
/// `async fn(T) -> Result<R, E>` and `async fn(Context, T) -> Result<R, E>`,
/// where `T` is deserialized from the request, `R` serialized into the
/// response, and `E` converts into a [`HandlerError`]. `Args` only tells
/// the shapes apart.
pub trait Handler<Args>: Send + Sync + 'static {
    #[doc(hidden)]
    fn into_erased(self) -> Erased;
}

/// Decodes the parameters, runs the handler, and encodes its result as a
/// response frame (requests) or drops it (notifications). A notification's
/// failure names its route, since nobody waits for it to say which.
async fn run<T, R, E, Fut>(
    ctx: Context,
    mut body: Body,
    id: Option<RequestId>,
    call: impl FnOnce(Context, T) -> Fut,
) -> Outcome<Option<OutFrame>>
where
    T: DeserializeOwned,
    R: Serialize,
    E: Into<HandlerError>,
    Fut: Future<Output = std::result::Result<R, E>>,
{
    let format = ctx.peer.format();
    let route = Arc::clone(&ctx.route);
    let params: T = serializer::decode_body(format, &mut body)
        .map_err(|e| Failure::new(code::INVALID_PARAMS, format!("route {route:?}: {e}")))?;
    // The request's own memory carries the response (a large one goes back
    // to the reader for the next large frame instead).
    let buffer = body
        .into_small_buffer()
        .unwrap_or_else(|| ctx.peer.buffer());
    let max_frame = ctx.peer.max_frame();
    let outcome = call(ctx, params).await.map_err(Into::into);
    let Some(id) = id else {
        return outcome.map(|_| None).map_err(|e: HandlerError| {
            Failure::new(e.code, format!("route {route:?}: {}", e.message))
        });
    };
    let value = outcome?;
    match message::response(buffer, id, format, &value, max_frame) {
        Ok(frame) => Ok(Some(frame)),
        Err(e) => Err(Failure::new(
            code::INTERNAL_ERROR,
            format!("could not send the result: {e}"),
        )),
    }
}

impl<F, Fut, R, E> Handler<()> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    R: Serialize + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    fn into_erased(self) -> Erased {
        let f = Arc::new(self);
        Arc::new(move |ctx, body, id| {
            let f = Arc::clone(&f);
            Box::pin(run(ctx, body, id, move |_, _: serde::de::IgnoredAny| f()))
        })
    }
}

impl<F, Fut, T, R, E> Handler<(T,)> for F
where
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    fn into_erased(self) -> Erased {
        let f = Arc::new(self);
        Arc::new(move |ctx, body, id| {
            let f = Arc::clone(&f);
            Box::pin(run(ctx, body, id, move |_, params| f(params)))
        })
    }
}

impl<F, Fut, T, R, E> Handler<(Context, T)> for F
where
    F: Fn(Context, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<R, E>> + Send + 'static,
    T: DeserializeOwned + Send + 'static,
    R: Serialize + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    fn into_erased(self) -> Erased {
        let f = Arc::new(self);
        Arc::new(move |ctx, body, id| {
            let f = Arc::clone(&f);
            Box::pin(run(ctx, body, id, move |ctx, params| f(ctx, params)))
        })
    }
}

/// Handlers by exact route name, plus an optional fallback for every other
/// name. Requests and notifications share the table: a notification runs the
/// same handler and drops its result.
#[derive(Clone, Default)]
pub struct Router {
    // Arc keys: a request's Context shares the name instead of copying it.
    routes: HashMap<Arc<str>, (Erased, Order)>,
    fallback: Option<Erased>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.routes.keys().collect();
        names.sort();
        f.debug_struct("Router")
            .field("routes", &names)
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// A router with no routes: every request gets "no such route".
    pub fn new() -> Router {
        Router::default()
    }

    /// A router where one handler answers every route: the simplest server.
    pub fn single<H: Handler<Args>, Args>(handler: H) -> Router {
        Router::new().fallback(handler)
    }

    /// Adds a handler for `name`.
    ///
    /// # Panics
    /// If `name` is already routed or longer than 1024 bytes: both are
    /// mistakes in the program, found the first time it runs.
    ///
    /// Notifications to a route are handled one after another, in the
    /// order they were sent (see [`Router::route_concurrent`]).
    pub fn route<H: Handler<Args>, Args>(self, name: &str, handler: H) -> Router {
        self.insert(name, handler.into_erased(), Order::InOrder)
    }

    /// Like [`Router::route`], but notifications to this route are handled
    /// as soon as they arrive, alongside each other and without an order:
    /// for handlers that wait and whose notifications are independent.
    /// (Requests are always handled concurrently.)
    pub fn route_concurrent<H: Handler<Args>, Args>(self, name: &str, handler: H) -> Router {
        self.insert(name, handler.into_erased(), Order::Concurrent)
    }

    fn insert(mut self, name: &str, handler: Erased, order: Order) -> Router {
        assert!(
            name.len() <= MAX_ROUTE_LEN,
            "route name {name:?} is longer than {MAX_ROUTE_LEN} bytes"
        );
        let previous = self.routes.insert(name.into(), (handler, order));
        assert!(previous.is_none(), "route {name:?} is registered twice");
        self
    }

    /// Sets the handler for every route without one of its own.
    pub fn fallback<H: Handler<Args>, Args>(mut self, handler: H) -> Router {
        self.fallback = Some(handler.into_erased());
        self
    }

    /// The names with a handler of their own, sorted.
    pub fn route_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.routes.keys().map(|name| name.to_string()).collect();
        names.sort();
        names
    }

    /// The handler for `route`, the route's name to put in its Context,
    /// and how its notifications are ordered.
    fn find(&self, route: &str) -> Option<(Arc<str>, &Erased, Order)> {
        match self.routes.get_key_value(route) {
            Some((name, (handler, order))) => Some((Arc::clone(name), handler, *order)),
            None => self
                .fallback
                .as_ref()
                .map(|handler| (route.into(), handler, Order::InOrder)),
        }
    }
}

fn no_such_route(route: &str) -> Failure {
    Failure::new(code::METHOD_NOT_FOUND, format!("no route named {route:?}"))
}

impl Inbound for Router {
    fn request(
        &self,
        peer: Peer,
        id: RequestId,
        body: Body,
    ) -> BoxFuture<Outcome<Option<OutFrame>>> {
        let Some((route, handler, _)) = self.find(body.route()) else {
            return Box::pin(std::future::ready(Err(no_such_route(body.route()))));
        };
        handler(Context { peer, route }, body, Some(id))
    }

    fn notification(&self, peer: Peer, body: Body) -> (BoxFuture<Outcome<()>>, Order) {
        let Some((route, handler, order)) = self.find(body.route()) else {
            let failure = no_such_route(body.route());
            return (Box::pin(std::future::ready(Err(failure))), Order::InOrder);
        };
        let work = handler(Context { peer, route }, body, None);
        (Box::pin(async move { work.await.map(|_| ()) }), order)
    }
}
