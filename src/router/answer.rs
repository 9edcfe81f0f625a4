//! What a handler may return, and how each kind becomes an answer.
//!
//! - any serde value (`i64`, a struct, `()`): the response;
//! - `Result<T, E>`: `Ok` is the response, `Err` the error. When `E` is a
//!   serde value (a `String`, an error enum deriving `Serialize`) its text
//!   is the message and the value travels as the error's data, for a typed
//!   caller to decode; otherwise `E` is a [`HandlerError`] or a
//!   `std::error::Error` (see [`IntoFailure`]);
//! - [`Stream<T>`](crate::Stream) or `Result<Stream<T>, E>`: items, then an
//!   end.
//!
//! A `Result` whose two sides are serde values is a serde value itself, so
//! one path takes it: its top level is recognised while it is serialized
//! (the [`Probe`] below) rather than by a second, overlapping trait impl,
//! which the compiler could not choose between.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde::ser::{self, Impossible};

use super::handler_error::{HandlerError, IntoFailure};
use crate::peer::{Answer, Outcome, Responder};
use crate::stream::Stream;

/// Markers telling the kinds of answer apart (see [`IntoAnswer`]).
#[doc(hidden)]
pub mod kind {
    /// A serde value (a `Result` of serde values included).
    pub struct Value;
    /// A `Result` whose error is not a serde value.
    pub struct Fallible;
    /// A stream.
    pub struct Streamed;
    /// A `Result` of a stream.
    pub struct FallibleStream;
}

/// A handler's return value. `Kind` only tells the implementations apart;
/// it is inferred.
#[diagnostic::on_unimplemented(
    message = "a handler cannot return `{Self}`",
    label = "the handler's output",
    note = "a handler returns a serde value (anything `Serialize`, `()` included), a `Result<T, E>`, a `switchboard::Stream<T>` or a `Result<Stream<T>, E>`",
    note = "in a `Result<T, E>`, `E` is `HandlerError`, a `std::error::Error`, or a serde value; for anyhow::Error use `.map_err(HandlerError::from)`"
)]
pub trait IntoAnswer<Kind>: Send + 'static {
    #[doc(hidden)]
    fn into_answer(self, responder: Responder) -> impl Future<Output = Outcome<Answer>> + Send;
}

impl<T: Serialize + Send + 'static> IntoAnswer<kind::Value> for T {
    fn into_answer(self, responder: Responder) -> impl Future<Output = Outcome<Answer>> + Send {
        std::future::ready(value(&self, responder))
    }
}

impl<T, E> IntoAnswer<kind::Fallible> for Result<T, E>
where
    T: Serialize + Send + 'static,
    E: IntoFailure,
{
    fn into_answer(self, responder: Responder) -> impl Future<Output = Outcome<Answer>> + Send {
        std::future::ready(match self {
            Ok(value) => responder.value(&value),
            Err(error) => Err(error.into_failure()),
        })
    }
}

impl<T> IntoAnswer<kind::Streamed> for Stream<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    fn into_answer(self, responder: Responder) -> impl Future<Output = Outcome<Answer>> + Send {
        pump(self, responder)
    }
}

impl<T, E> IntoAnswer<kind::FallibleStream> for Result<Stream<T>, E>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    E: Into<HandlerError> + Send + 'static,
{
    async fn into_answer(self, responder: Responder) -> Outcome<Answer> {
        match self {
            Ok(stream) => pump(stream, responder).await,
            Err(error) => Err(error.into().into()),
        }
    }
}

/// Sends a stream's items as the requester takes them, then its end. A
/// notification's stream is not read at all: nobody would receive it.
async fn pump<T>(mut stream: Stream<T>, mut responder: Responder) -> Outcome<Answer>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    if responder.is_notification() {
        return Ok(responder.end());
    }
    while let Some(item) = std::future::poll_fn(|cx| stream.poll_produce(cx)).await {
        responder.item(&item?).await?;
    }
    Ok(responder.end())
}

/// A serde value as the answer; a top-level `Result` is taken apart.
fn value<T: Serialize>(value: &T, responder: Responder) -> Outcome<Answer> {
    let mut slot = Some(responder);
    match value.serialize(Probe { slot: &mut slot }) {
        Ok(answer) => answer,
        Err(NotResult) => match slot {
            Some(responder) => responder.value(value),
            // A Serialize impl that threw away the probe's answer.
            None => Err(crate::peer::Failure::new(
                crate::protocol::code::INTERNAL_ERROR,
                "the result's Serialize implementation failed",
            )),
        },
    }
}

/// A serializer that only recognises `Ok(..)`/`Err(..)` of a `Result` at the
/// top level and answers with it; anything else stops it at its first call.
struct Probe<'a> {
    slot: &'a mut Option<Responder>,
}

#[derive(Debug)]
struct NotResult;

impl std::fmt::Display for NotResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a Result")
    }
}

impl std::error::Error for NotResult {}

impl ser::Error for NotResult {
    fn custom<M: std::fmt::Display>(_: M) -> NotResult {
        NotResult
    }
}

type Never = Impossible<Outcome<Answer>, NotResult>;

macro_rules! not_result {
    ($($method:ident($($arg:ty),*);)*) => {
        $(fn $method(self, $(_: $arg),*) -> Result<Outcome<Answer>, NotResult> {
            Err(NotResult)
        })*
    };
}

impl ser::Serializer for Probe<'_> {
    type Ok = Outcome<Answer>;
    type Error = NotResult;
    type SerializeSeq = Never;
    type SerializeTuple = Never;
    type SerializeTupleStruct = Never;
    type SerializeTupleVariant = Never;
    type SerializeMap = Never;
    type SerializeStruct = Never;
    type SerializeStructVariant = Never;

    not_result! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_i128(i128);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_u128(u128);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<V: Serialize + ?Sized>(self, _: &V) -> Result<Self::Ok, NotResult> {
        Err(NotResult)
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &V,
    ) -> Result<Self::Ok, NotResult> {
        Err(NotResult)
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        self,
        name: &'static str,
        _: u32,
        variant: &'static str,
        value: &V,
    ) -> Result<Self::Ok, NotResult> {
        if name != "Result" || !matches!(variant, "Ok" | "Err") {
            return Err(NotResult);
        }
        let responder = self.slot.take().ok_or(NotResult)?;
        if variant == "Ok" {
            return Ok(responder.value(value));
        }
        let error = match serde_json::to_value(value) {
            Ok(data) => HandlerError::from_value(data),
            Err(e) => HandlerError::new(format!(
                "the handler failed (its error value could not be encoded: {e})"
            )),
        };
        Ok(Err(error.into()))
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_tuple(self, _: usize) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Never, NotResult> {
        Err(NotResult)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Never, NotResult> {
        Err(NotResult)
    }
}
