//! Routing requests and notifications to handlers by exact name.
//!
//! Handlers are plain async functions over serde types (see [`Handler`]
//! for every shape they may take):
//!
//! ```
//! use switchboard::{Context, HandlerError, Router};
//!
//! async fn add((a, b): (i64, i64)) -> Result<i64, HandlerError> {
//!     a.checked_add(b).ok_or_else(|| HandlerError::invalid_params("overflow"))
//! }
//!
//! async fn whoami(ctx: Context) -> String {
//!     ctx.client_id().to_owned()
//! }
//!
//! let router = Router::new().route("add", add).route("whoami", whoami);
//! ```
//!
//! The router maps names to handlers and nothing else: decoding the
//! parameters and encoding the answer belong to the peer
//! ([`Call`](crate::peer::Call), [`Responder`](crate::peer::Responder)).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::peer::{Answer, BoxFuture, Call, Failure, Inbound, Order, Outcome};
use crate::protocol::code;
use crate::protocol::message::MAX_ROUTE_LEN;

mod answer;
mod context;
mod handler;
mod handler_error;

pub use answer::IntoAnswer;
pub use context::{Context, FromContext, State};
pub use handler::{BlockingHandler, FromCall, Handler};
pub use handler_error::{HandlerError, IntoFailure};

/// The built-in route that lists the services a router serves
/// (`{"services": [...]}`, see PROTOCOL.md), unless a handler of its own
/// takes the name.
pub const DESCRIBE_ROUTE: &str = "switchboard.describe";

/// The built-in route that answers `null` at once (unless a handler of
/// its own takes the name): `switchboard ping` measures round trips with
/// it.
pub const PING_ROUTE: &str = "switchboard.ping";

/// A handler with its types erased.
type Erased<S> = Arc<dyn Fn(Call, Context, &S) -> BoxFuture<Outcome<Answer>> + Send + Sync>;

/// Handlers by exact route name, plus an optional fallback for every other
/// name, and the state handlers may ask for ([`State`]). Requests and
/// notifications share the table: a notification runs the same handler and
/// drops its result.
///
/// ```
/// use switchboard::{Router, State};
///
/// #[derive(Clone)]
/// struct Config { greeting: String }
///
/// async fn greet(State(config): State<Config>, name: String) -> String {
///     format!("{}, {name}!", config.greeting)
/// }
///
/// let router = Router::with_state(Config { greeting: "Hello".into() })
///     .route("greet", greet)
///     .route_blocking("checksum", |data: Vec<u8>| data.iter().map(|&b| u64::from(b)).sum::<u64>());
/// assert_eq!(router.route_names(), ["checksum", "greet"]);
/// ```
#[must_use = "a router does nothing until a server or client serves it"]
pub struct Router<S = ()> {
    state: S,
    // Arc keys: a request's Context shares the name instead of copying it.
    routes: Routes<S>,
    fallback: Option<Erased<S>>,
    services: Vec<serde_json::Value>,
}

/// The routes by name. Hashed with FNV-1a rather than the default SipHash,
/// which costs more than the rest of a lookup for a short name: the table
/// is the server's own and no peer can add to it, so a name chosen to
/// collide can only make one lookup walk a table of a few entries.
type Routes<S> = HashMap<Arc<str>, (Erased<S>, Order), BuildHasherDefault<RouteHasher>>;

/// FNV-1a (64 bits).
struct RouteHasher(u64);

impl Default for RouteHasher {
    fn default() -> RouteHasher {
        RouteHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for RouteHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<S: Clone> Clone for Router<S> {
    fn clone(&self) -> Router<S> {
        Router {
            state: self.state.clone(),
            routes: self.routes.clone(),
            fallback: self.fallback.clone(),
            services: self.services.clone(),
        }
    }
}

impl Default for Router {
    fn default() -> Router {
        Router::new()
    }
}

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.route_names())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}

impl Router {
    /// A router with no routes and no state: every request gets "no such
    /// route".
    pub fn new() -> Router {
        Router::with_state(())
    }

    /// A router where one handler answers every route: the simplest server.
    #[track_caller]
    pub fn single<H: Handler<Args, ()>, Args>(handler: H) -> Router {
        Router::new().fallback(handler)
    }
}

impl<S> Router<S> {
    /// The names with a handler of their own, sorted.
    pub fn route_names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.routes.keys().map(|name| name.to_string()).collect();
        names.sort();
        names
    }

    /// The handler for `route`, the route's name to put in its Context,
    /// and how its notifications are ordered.
    fn find(&self, route: &str) -> Option<(Arc<str>, &Erased<S>, Order)> {
        match self.routes.get_key_value(route) {
            Some((name, (handler, order))) => Some((Arc::clone(name), handler, *order)),
            None => self
                .fallback
                .as_ref()
                .map(|handler| (route.into(), handler, Order::InOrder)),
        }
    }
}

impl<S: Send + Sync + 'static> Router<S> {
    /// A router whose handlers may take `State<S>`: each call gets a clone
    /// of `state` (share what must be shared through an `Arc`).
    pub fn with_state(state: S) -> Router<S> {
        Router {
            state,
            routes: Routes::default(),
            fallback: None,
            services: Vec::new(),
        }
    }

    /// Adds a handler for `name`.
    ///
    /// Notifications to a route are handled one after another, in the
    /// order they were sent (see [`Router::route_concurrent`]); requests
    /// are handled concurrently.
    ///
    /// # Panics
    /// If `name` is already routed or longer than 1024 bytes: both are
    /// mistakes in the program, found the first time it runs (the panic
    /// names the line that added the route).
    #[track_caller]
    pub fn route<H: Handler<Args, S>, Args>(self, name: &str, handler: H) -> Router<S> {
        self.insert(name, erase(handler), Order::InOrder)
    }

    /// Like [`Router::route`], but notifications to this route are handled
    /// as soon as they arrive, alongside each other and without an order:
    /// for handlers that wait and whose notifications are independent.
    #[track_caller]
    pub fn route_concurrent<H: Handler<Args, S>, Args>(self, name: &str, handler: H) -> Router<S> {
        self.insert(name, erase(handler), Order::Concurrent)
    }

    /// Adds a plain, blocking function as the handler for `name`: it runs
    /// on tokio's blocking thread pool, so it may compute or do blocking
    /// I/O without stalling other requests. Same shapes as [`Handler`],
    /// without `async`. A cancelled request stops waiting for it, but the
    /// function itself runs to its end.
    ///
    /// ```
    /// use switchboard::Router;
    ///
    /// fn word_count(text: String) -> usize {
    ///     text.split_whitespace().count()
    /// }
    ///
    /// let router = Router::new().route_blocking("words", word_count);
    /// ```
    #[track_caller]
    pub fn route_blocking<H: BlockingHandler<Args, S>, Args>(
        self,
        name: &str,
        handler: H,
    ) -> Router<S> {
        let handler = Arc::new(handler);
        let erased: Erased<S> =
            Arc::new(move |call, context, state| Arc::clone(&handler).call(call, context, state));
        self.insert(name, erased, Order::InOrder)
    }

    #[track_caller]
    fn insert(mut self, name: &str, handler: Erased<S>, order: Order) -> Router<S> {
        assert!(
            name.len() <= MAX_ROUTE_LEN,
            "route name {name:?} is longer than {MAX_ROUTE_LEN} bytes"
        );
        let previous = self.routes.insert(name.into(), (handler, order));
        assert!(previous.is_none(), "route {name:?} is registered twice");
        self
    }

    /// Sets the handler for every route without one of its own.
    pub fn fallback<H: Handler<Args, S>, Args>(mut self, handler: H) -> Router<S> {
        self.fallback = Some(erase(handler));
        self
    }

    /// Records one typed service's description for the built-in
    /// [`DESCRIBE_ROUTE`]. Called by the code `#[switchboard::service]`
    /// generates.
    #[doc(hidden)]
    pub fn __describe(mut self, service: serde_json::Value) -> Router<S> {
        self.services.push(service);
        self
    }

    /// Runs the call's handler, or answers the built-in route, or says
    /// there is no such route.
    fn dispatch(&self, call: Call) -> (BoxFuture<Outcome<Answer>>, Order, Arc<str>) {
        let Some((route, handler, order)) = self.find(call.route()) else {
            let route: Arc<str> = call.route().into();
            let answer = match &*route {
                DESCRIBE_ROUTE => self.describe(call),
                PING_ROUTE => call
                    .open()
                    .and_then(|(serde::de::IgnoredAny, responder)| responder.value(&())),
                _ => Err(no_such_route(&route)),
            };
            return (Box::pin(std::future::ready(answer)), Order::InOrder, route);
        };
        let context = Context {
            peer: call.peer().clone(),
            route: Arc::clone(&route),
        };
        (handler(call, context, &self.state), order, route)
    }

    fn describe(&self, call: Call) -> Outcome<Answer> {
        let (serde::de::IgnoredAny, responder) = call.open()?;
        responder.value(&serde_json::json!({ "services": self.services }))
    }
}

fn erase<S, H: Handler<Args, S>, Args>(handler: H) -> Erased<S> {
    Arc::new(move |call, context, state| handler.call(call, context, state))
}

fn no_such_route(route: &str) -> Failure {
    Failure::new(code::METHOD_NOT_FOUND, format!("no route named {route:?}"))
}

impl<S: Send + Sync + 'static> Inbound for Router<S> {
    fn request(&self, call: Call) -> BoxFuture<Outcome<Answer>> {
        self.dispatch(call).0
    }

    fn notification(&self, call: Call) -> (BoxFuture<Outcome<()>>, Order) {
        let (work, order, route) = self.dispatch(call);
        let work = async move {
            work.await.map(|_| ()).map_err(|failure| {
                // Nobody waits for a notification to say which route it
                // was for; a failure to decode its parameters says already.
                let named = format!("route {route:?}: ");
                if failure.message.starts_with(&named) {
                    return failure;
                }
                Failure {
                    message: format!("{named}{}", failure.message),
                    ..failure
                }
            })
        };
        (Box::pin(work), order)
    }
}
