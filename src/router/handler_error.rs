//! [`HandlerError`]: what a handler returns when it fails on purpose, and
//! how error types reach the caller.

use std::fmt;

use serde::Serialize;

use crate::error::Error;
use crate::peer::Failure;
use crate::protocol::code;

/// An error a handler returns: a code (JSON-RPC style, see
/// [`code`](crate::code)), a message for the caller, and optionally a value
/// the caller can decode ([`ErrorData`](crate::ErrorData)).
///
/// Any `Display` type converts into one with code
/// [`HANDLER_FAILED`](crate::code::HANDLER_FAILED), so handlers can use `?`
/// on most errors after `.map_err(HandlerError::from)`.
///
/// ```
/// use switchboard::{HandlerError, Router};
///
/// async fn add((a, b): (i64, i64)) -> Result<i64, HandlerError> {
///     a.checked_add(b).ok_or_else(|| HandlerError::invalid_params("overflow"))
/// }
///
/// let router = Router::new().route("add", add);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerError {
    code: i32,
    message: String,
    data: Option<serde_json::Value>,
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
            data: None,
        }
    }

    /// Attaches a value the caller can decode from
    /// [`Error::HandlerFailed`]'s `data`. A value that cannot be
    /// represented (a map with non-string keys in JSON, say) is left out;
    /// the message still goes.
    pub fn data<T: Serialize + ?Sized>(mut self, data: &T) -> HandlerError {
        self.data = serde_json::to_value(data).ok();
        self
    }

    /// The error code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// A failure this side saw (reading a stream it passes on) becomes its
    /// own, keeping the peer's code and data where it had them.
    pub(crate) fn from_error(error: Error) -> HandlerError {
        match error {
            Error::HandlerFailed {
                code,
                message,
                data,
            } => HandlerError {
                code,
                message,
                data: data.and_then(|data| data.decode().ok()),
            },
            other => HandlerError::new(other.to_string()),
        }
    }

    /// What a caller in this process sees (reading a local stream).
    pub(crate) fn into_error(self) -> Error {
        let failure = Failure::from(self);
        crate::peer::failure_to_error(failure)
    }

    /// The error of a `Result` a handler returned as a serde value
    /// (`Err(e)` with `e: Serialize`): its text is the message, and the
    /// value itself travels as data.
    pub(crate) fn from_value(value: serde_json::Value) -> HandlerError {
        let message = match &value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        HandlerError {
            code: code::HANDLER_FAILED,
            message,
            data: Some(value),
        }
    }
}

// HandlerError deliberately does not implement Display, so this blanket
// conversion does not overlap with `From<T> for T`.
impl<E: fmt::Display> From<E> for HandlerError {
    fn from(error: E) -> HandlerError {
        HandlerError::new(error.to_string())
    }
}

impl From<HandlerError> for Failure {
    fn from(error: HandlerError) -> Failure {
        Failure {
            code: error.code,
            message: error.message,
            data: error.data,
        }
    }
}

/// An error type a handler's `Result` may carry, besides serde values
/// (which travel as data, see [`HandlerError::data`]): [`HandlerError`]
/// itself and every [`std::error::Error`], whose text becomes the message.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a handler's error",
    label = "this error type",
    note = "a handler's `Result<T, E>` needs `E` to be `HandlerError`, a `std::error::Error`, or a serde value (String, an enum deriving Serialize)",
    note = "for other error types (anyhow::Error, say), use `.map_err(HandlerError::from)` to keep their text"
)]
pub trait IntoFailure: Send + 'static {
    #[doc(hidden)]
    fn into_failure(self) -> Failure;
}

impl IntoFailure for HandlerError {
    fn into_failure(self) -> Failure {
        self.into()
    }
}

impl<E: std::error::Error + Send + 'static> IntoFailure for E {
    fn into_failure(self) -> Failure {
        Failure::new(code::HANDLER_FAILED, self.to_string())
    }
}
