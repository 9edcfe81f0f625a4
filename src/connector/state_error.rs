//! What can be wrong with a connector string, in words for the person who
//! copied it.
//!
//! Defined beside the parser (`state.rs`) but in a file of its own that
//! imports nothing else of the crate: the crate's `Error` wraps
//! [`ConnectorError`], and the connector, which returns that `Error`, must
//! not be needed to name it. The limits the messages quote live here too.

use std::fmt;
use std::sync::Arc;

/// The connector string version this build writes and reads.
pub const STATE_VERSION: u32 = 1;

/// Longest connector string accepted by
/// [`Connector::load_state`](crate::Connector::load_state); real ones
/// are a few hundred bytes at most.
pub(crate) const MAX_STATE_LEN: usize = 4096;

/// What is wrong with a connector string.
///
/// The messages speak to the person who copied the string: they say what to
/// fix (copy all of it, drop the quotes, join the lines) and never repeat
/// more of the string than its first few characters, so the secret inside
/// is never echoed. Where a decoder (base64, JSON) found the problem, its
/// own error is kept as the [`source`](std::error::Error::source), out of
/// the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The string is empty.
    #[error("the string is empty")]
    Empty,
    /// The string is longer than any connector could be.
    #[error("the string is {0} bytes long; connector strings are at most {MAX_STATE_LEN}")]
    TooLong(usize),
    /// The string starts or ends with a quote (`"`, `'`, a backtick or a
    /// typographic quote) that a shell, a config file or a document left in.
    #[error(
        "the string is wrapped in quotes ({0}): drop the quotes; a connector \
         string has no characters a shell needs quoted"
    )]
    Quoted(char),
    /// The string has whitespace inside (a line break from a wrapped
    /// terminal or email, a space from pasting it in pieces).
    #[error(
        "the string contains {} at character {at}: connector strings contain \
         no whitespace (was it wrapped onto several lines?); join the pieces",
        whitespace_name(*.found)
    )]
    Whitespace {
        /// Where, counting characters from 1 (after surrounding whitespace
        /// is trimmed).
        at: usize,
        /// The whitespace character.
        found: char,
    },
    /// The string does not start with `sb<version>:`.
    #[error("{}", wrong_prefix(.start, *.found_at))]
    WrongPrefix {
        /// The string's first few characters.
        start: String,
        /// Where `sb1:` appears later in the string, counting characters
        /// from 0 (a label or `VAR=` pasted in front of it).
        found_at: Option<usize>,
    },
    /// The version after `sb` is not one this build reads.
    #[error(
        "unknown connector version {0:?}; this build reads version {STATE_VERSION} \
         (was the string made by another switchboard version?)"
    )]
    UnknownVersion(String),
    /// The string ends before the connector does: it was cut short, most
    /// likely while copying it.
    #[error(
        "the string looks truncated (cut short while copying?): it ends before the \
         connector does; copy all of it, to the last character"
    )]
    Truncated(#[source] BodyError),
    /// The part after the prefix has a character base64url never uses.
    #[error("{}", bad_base64(.0))]
    BadBase64(#[source] base64::DecodeError),
    /// The part after the prefix decodes, but not to a connector: the string
    /// was damaged, or not made by [`Connector::dump_state`](crate::Connector::dump_state).
    #[error(
        "the string does not hold a connector: it has the \"sb1:\" prefix, but what \
         follows is not what Connector::dump_state writes (damaged while copying?)"
    )]
    BadBody(#[source] Option<BodyError>),
    /// A required field is absent.
    #[error(
        "the connector has no {name} (field {key:?}): the string was edited or not \
         made by Connector::dump_state",
        name = field_name(.0),
        key = .0
    )]
    MissingField(&'static str),
    /// A field is present but its value is unusable.
    #[error("the connector's {} (field {field:?}) is invalid: {reason}", field_name(.field))]
    InvalidField {
        /// The field's key.
        field: &'static str,
        /// What is wrong with it (never the secret's value).
        reason: String,
    },
    /// The kind field names no connector kind this build knows.
    #[error("unknown connector kind {0:?} (known: unix, pipe, tcp, amqp, inherited)")]
    UnknownKind(String),
}

/// What a decoder said about a connector string's body: the
/// [`source`](std::error::Error::source) of [`ConnectorError::Truncated`] and
/// [`ConnectorError::BadBody`].
///
/// Its `Display` is the decoder's own wording (base64 or JSON), useful in a
/// bug report, not to the user, which is why [`ConnectorError`]'s messages
/// leave it out. It never contains the secret: the decoders name positions
/// and expected tokens, not the input.
#[derive(Clone)]
pub struct BodyError(Arc<dyn std::error::Error + Send + Sync>);

impl BodyError {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> BodyError {
        BodyError(Arc::new(error))
    }
}

impl fmt::Debug for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Two are equal when the decoders said the same thing.
impl PartialEq for BodyError {
    fn eq(&self, other: &BodyError) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for BodyError {}

fn whitespace_name(c: char) -> &'static str {
    match c {
        '\n' | '\r' => "a line break",
        ' ' => "a space",
        '\t' => "a tab",
        _ => "whitespace",
    }
}

fn wrong_prefix(start: &str, found_at: Option<usize>) -> String {
    match found_at {
        Some(at) => format!(
            "it does not start with \"sb1:\", but \"sb1:\" comes after {at} other \
             characters ({start:?}...): pass only the part from \"sb1:\" on"
        ),
        None => format!(
            "it does not start with \"sb1:\" (it starts with {start:?}); a connector \
             string is \"sb1:\" followed by letters, digits, '-' and '_', as \
             Connector::dump_state or `switchboard echo-server` prints it"
        ),
    }
}

fn bad_base64(error: &base64::DecodeError) -> String {
    let base64::DecodeError::InvalidByte(offset, byte) = *error else {
        return "the part after \"sb1:\" is damaged: it is not what \
                Connector::dump_state writes"
            .into();
    };
    let shown = if byte.is_ascii_graphic() {
        format!("{:?}", char::from(byte))
    } else {
        "a non-ASCII character".into()
    };
    let hint = match byte {
        b'+' | b'/' => " (standard base64? connector strings use '-' and '_' instead)",
        b'=' => " (base64 padding? connector strings have none: drop the '=')",
        _ => "",
    };
    format!(
        "character {} after \"sb1:\" is {shown}, which connector strings never \
         contain: only letters, digits, '-' and '_' follow the prefix{hint}",
        offset + 1
    )
}

fn field_name(key: &str) -> &'static str {
    match key {
        "k" => "kind",
        "a" => "address",
        "s" => "secret",
        "f" => "body format",
        "m" => "frame size limit",
        "r" => "shared-memory ring setting",
        _ => "setting",
    }
}
