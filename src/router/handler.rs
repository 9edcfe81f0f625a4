//! Which functions are handlers.
//!
//! A handler is an async function (or a closure returning a future) whose
//! arguments are, in order: any of [`Context`] and [`State`](super::State)
//! (see [`FromContext`]), then at most one parameter type decoded from the
//! caller's parameters (anything `Deserialize`; use a tuple or a struct for
//! several values). Its output is anything [`IntoAnswer`] takes. A
//! blocking handler ([`Router::route_blocking`](super::Router::route_blocking))
//! has the same shapes as a plain `fn`.
//!
//! The traits carry marker types (`Args`, `Kind`, `Via`) only so that the
//! compiler can tell the shapes apart; they are always inferred.

use std::future::Future;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny};

use super::answer::IntoAnswer;
use super::context::{Context, FromContext};
use crate::peer::{Answer, BoxFuture, Call, Failure, Outcome, Responder};
use crate::protocol::code;

/// Markers telling apart how a handler's last argument is obtained.
#[doc(hidden)]
pub mod via {
    /// From the call ([`Context`](crate::Context), [`State`](crate::State)).
    pub struct Context;
    /// Decoded from the caller's parameters.
    pub struct Params;
}

/// A handler's last argument: its parameters, or one more [`FromContext`].
#[diagnostic::on_unimplemented(
    message = "a handler cannot take `{Self}` as its parameters",
    label = "not decodable from the caller's parameters",
    note = "the last argument of a handler is either `Context`/`State<S>`, or a type implementing `serde::Deserialize` (derive it, or use a tuple such as `(i64, i64)`)"
)]
pub trait FromCall<S, Via>: Sized + Send + 'static {
    #[doc(hidden)]
    fn from_call(call: Call, context: &Context, state: &S) -> Outcome<(Self, Responder)>;
}

impl<S, T: FromContext<S>> FromCall<S, via::Context> for T {
    fn from_call(call: Call, context: &Context, state: &S) -> Outcome<(T, Responder)> {
        let (IgnoredAny, responder) = call.open()?;
        Ok((T::from_context(context, state), responder))
    }
}

impl<S, T: DeserializeOwned + Send + 'static> FromCall<S, via::Params> for T {
    fn from_call(call: Call, _: &Context, _: &S) -> Outcome<(T, Responder)> {
        call.open()
    }
}

/// A function usable as a route handler: an async function (or a closure
/// returning a future) whose arguments are, in order, any of [`Context`]
/// and [`State`](crate::State), then at most one parameter type decoded
/// from the caller's parameters (anything `Deserialize`; a tuple or a
/// struct for several values). It returns anything [`IntoAnswer`] takes: a
/// serde value, `()`, a `Result`, or a [`Stream`](crate::Stream). `Args`
/// only tells the shapes apart and is inferred.
///
/// ```
/// use switchboard::{Context, HandlerError, Router, State};
///
/// async fn ping() {}
/// async fn double(n: i64) -> i64 { n * 2 }
/// async fn div((a, b): (i64, i64)) -> Result<i64, String> {
///     a.checked_div(b).ok_or_else(|| "division by zero".to_owned())
/// }
/// async fn whoami(ctx: Context) -> String { ctx.client_id().to_owned() }
/// async fn greet(State(greeting): State<&'static str>, name: String) -> String {
///     format!("{greeting}, {name}")
/// }
///
/// let router = Router::with_state("hello")
///     .route("ping", ping)
///     .route("double", double)
///     .route("div", div)
///     .route("whoami", whoami)
///     .route("greet", greet);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a switchboard handler",
    label = "not a handler",
    note = "a handler is an `async fn` (or a closure returning a future) taking, in order: any of `Context` and `State<S>`, then at most one parameter type implementing `serde::Deserialize`",
    note = "it returns a serde value, `()`, a `Result<T, E>` or a `switchboard::Stream<T>`, and its future must be `Send + 'static`",
    note = "for a plain (not async) `fn`, use `Router::route_blocking`"
)]
pub trait Handler<Args, S>: Send + Sync + 'static {
    #[doc(hidden)]
    fn call(&self, call: Call, context: Context, state: &S) -> BoxFuture<Outcome<Answer>>;
}

/// A plain function usable as a route handler on tokio's blocking pool
/// ([`Router::route_blocking`](super::Router::route_blocking)): the same
/// shapes as [`Handler`], without `async`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a blocking switchboard handler",
    label = "not a blocking handler",
    note = "a blocking handler is a plain `fn` (or closure) taking, in order: any of `Context` and `State<S>`, then at most one parameter type implementing `serde::Deserialize`, and returning a serde value, `()` or a `Result<T, E>`",
    note = "for an `async fn`, use `Router::route`"
)]
pub trait BlockingHandler<Args, S>: Send + Sync + 'static {
    #[doc(hidden)]
    fn call(self: Arc<Self>, call: Call, context: Context, state: &S)
    -> BoxFuture<Outcome<Answer>>;
}

fn refused(failure: Failure) -> BoxFuture<Outcome<Answer>> {
    Box::pin(std::future::ready(Err(failure)))
}

/// Runs a blocking handler's body on the blocking pool; a panic there is
/// the handler's failure, as in an async handler.
async fn on_blocking_pool<R, K>(
    body: impl FnOnce() -> R + Send + 'static,
    responder: Responder,
) -> Outcome<Answer>
where
    R: IntoAnswer<K>,
{
    match tokio::task::spawn_blocking(body).await {
        Ok(output) => output.into_answer(responder).await,
        Err(e) => Err(Failure::new(
            code::INTERNAL_ERROR,
            format!("handler panicked: {e}"),
        )),
    }
}

impl<F, Fut, S, K> Handler<(K,), S> for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: IntoAnswer<K>,
{
    fn call(&self, call: Call, _: Context, _: &S) -> BoxFuture<Outcome<Answer>> {
        let responder = match call.open::<IgnoredAny>() {
            Ok((_, responder)) => responder,
            Err(failure) => return refused(failure),
        };
        let work = self();
        Box::pin(async move { work.await.into_answer(responder).await })
    }
}

impl<F, R, S, K> BlockingHandler<(K,), S> for F
where
    F: Fn() -> R + Send + Sync + 'static,
    R: IntoAnswer<K>,
    K: 'static,
{
    fn call(self: Arc<Self>, call: Call, _: Context, _: &S) -> BoxFuture<Outcome<Answer>> {
        let responder = match call.open::<IgnoredAny>() {
            Ok((_, responder)) => responder,
            Err(failure) => return refused(failure),
        };
        Box::pin(on_blocking_pool(move || self(), responder))
    }
}

macro_rules! shapes {
    ($($first:ident),*) => {
        impl<F, Fut, S, K, Via, $($first,)* Last> Handler<(K, Via, $($first,)* Last), S> for F
        where
            F: Fn($($first,)* Last) -> Fut + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: IntoAnswer<K>,
            $($first: FromContext<S>,)*
            Last: FromCall<S, Via>,
        {
            #[allow(non_snake_case)]
            fn call(&self, call: Call, context: Context, state: &S) -> BoxFuture<Outcome<Answer>> {
                $(let $first = $first::from_context(&context, state);)*
                let (last, responder) = match Last::from_call(call, &context, state) {
                    Ok(opened) => opened,
                    Err(failure) => return refused(failure),
                };
                let work = self($($first,)* last);
                Box::pin(async move { work.await.into_answer(responder).await })
            }
        }

        impl<F, R, S, K, Via, $($first,)* Last> BlockingHandler<(K, Via, $($first,)* Last), S> for F
        where
            F: Fn($($first,)* Last) -> R + Send + Sync + 'static,
            R: IntoAnswer<K>,
            K: 'static,
            $($first: FromContext<S>,)*
            Last: FromCall<S, Via>,
        {
            #[allow(non_snake_case)]
            fn call(self: Arc<Self>, call: Call, context: Context, state: &S) -> BoxFuture<Outcome<Answer>> {
                $(let $first = $first::from_context(&context, state);)*
                let (last, responder) = match Last::from_call(call, &context, state) {
                    Ok(opened) => opened,
                    Err(failure) => return refused(failure),
                };
                Box::pin(on_blocking_pool(move || self($($first,)* last), responder))
            }
        }
    };
}

shapes!();
shapes!(A);
shapes!(A, B);
