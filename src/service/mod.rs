//! Typed services: what `#[switchboard::service]` builds on. The
//! [`Service`] trait (implemented by the generated `<Trait>Server`),
//! [`Router::service`] to serve one, the opt-in [`Shutdown`] call, and the
//! runtime the generated code calls (`__private`).

pub mod private;
mod shutdown;

pub use shutdown::Shutdown;

use crate::Router;

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
    fn register(self, router: Router) -> Router;

    /// What the service offers, as `switchboard.describe` lists it:
    /// `{"name": "Calculator", "methods": [{"name": "add", "route":
    /// "Calculator.add", "kind": "request", "params": [{"name": "a",
    /// "type": "i64"}, ...], "returns": "i64"}, ...]}`, where `kind` is
    /// `request` or `notification` and types are as written in the trait.
    fn description(&self) -> serde_json::Value;
}

impl Router {
    /// Adds a [`Service`]'s routes: each method of a
    /// `#[switchboard::service]` trait becomes a route `Trait.method`.
    ///
    /// # Panics
    /// If one of its routes is already on this router (the same service
    /// added twice).
    pub fn service(self, service: impl Service) -> Router {
        service.register(self)
    }
}
