//! Exit codes: every failure carries the code the tool exits with, chosen
//! by whose fault it was.

use switchboard::Error;

/// The exit codes of `call`, and of the tool as a whole.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  the remote handler returned an error (its message goes to stderr)
  2  bad input: arguments, PARAMS that are not JSON, a malformed or missing connector
  3  could not connect or authenticate (or, for echo-server, could not listen)
  4  no response within --timeout"
    };
}
pub(crate) use exit_codes;

/// A failure with the exit code it maps to.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        let code = match &error {
            Error::NoSuchRoute { .. }
            | Error::BadRequest { .. }
            | Error::HandlerFailed { .. }
            | Error::ShuttingDown => 1,
            Error::InvalidConnector(_)
            | Error::InvalidArgument { .. }
            | Error::MissingConnector { .. }
            | Error::Encode(_)
            | Error::Unsupported(_)
            | Error::Registry { .. }
            | Error::ServicesFile { .. } => 2,
            Error::Timeout(_) => 4,
            _ => 3,
        };
        let message = match &error {
            // A remote error's message is the handler's own text.
            Error::HandlerFailed { message, .. } | Error::BadRequest { message } => message.clone(),
            other => other.to_string(),
        };
        Failure { code, message }
    }
}

pub(crate) fn usage(message: impl Into<String>) -> Failure {
    Failure {
        code: 2,
        message: message.into(),
    }
}
