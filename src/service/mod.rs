//! Typed services: what `#[switchboard::service]` builds on. The
//! [`Service`] trait (implemented by the generated `<Trait>Server`),
//! [`Router::service`] to serve one, the opt-in [`Shutdown`] call, and the
//! runtime the generated code calls (`__private`).

pub mod private;
mod shutdown;

pub use shutdown::Shutdown;

use crate::router::Router;

/// A set of routes that belong together and can describe themselves:
/// what `#[switchboard::service]` generates as `<Trait>Server<T>` for
/// any implementation `T` of the trait. Add one to a router with
/// [`Router::service`].
///
/// ```
/// use switchboard::{Router, Service};
///
/// #[switchboard::service]
/// pub trait Greeter {
///     async fn greet(&self, name: String) -> String;
/// }
///
/// struct English;
///
/// impl Greeter for English {
///     async fn greet(&self, name: String) -> String {
///         format!("Hello, {name}!")
///     }
/// }
///
/// let server = GreeterServer::new(English);
/// assert_eq!(server.description()["methods"][0]["route"], "Greeter.greet");
/// let router = Router::new().service(server);
/// assert_eq!(router.route_names(), ["Greeter.greet"]);
/// ```
pub trait Service {
    /// Adds the service's routes to `router`.
    fn register<S: Send + Sync + 'static>(self, router: Router<S>) -> Router<S>;

    /// What the service offers, as the built-in route
    /// [`DESCRIBE_ROUTE`](crate::DESCRIBE_ROUTE) lists it:
    /// `{"name": "Calculator", "methods": [{"name": "add", "route":
    /// "Calculator.add", "kind": "request", "params": [{"name": "a",
    /// "type": "i64"}, ...], "returns": "i64"}, ...]}`, where `kind` is
    /// `request`, `notification` or `stream` (whose `returns` is the item
    /// type), and types are as written in the trait.
    fn description(&self) -> serde_json::Value;
}

impl<S: Send + Sync + 'static> Router<S> {
    /// Adds a [`Service`]'s routes (each method of a
    /// `#[switchboard::service]` trait becomes a route `Trait.method`), and
    /// its description to what [`DESCRIBE_ROUTE`](crate::DESCRIBE_ROUTE)
    /// answers.
    ///
    /// # Panics
    /// If one of its routes is already on this router (the same service
    /// added twice).
    #[track_caller]
    pub fn service(self, service: impl Service) -> Router<S> {
        let description = service.description();
        service.register(self).__describe(description)
    }
}
