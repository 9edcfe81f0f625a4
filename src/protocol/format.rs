//! Body formats: which ones exist, their names, and decoding a body.
//!
//! The format is the protocol's; a connector only stores which one it asks
//! for, and an error value received from a peer keeps the one it came in.
//! This module imports nothing else of the crate, so both can name it
//! without depending on the rest of the protocol; its errors are its own,
//! and the crate's `Error` wraps them.

use serde::de::DeserializeOwned;

/// A body format: how request parameters, answers and notifications are
/// encoded on the wire.
///
/// A connector whose format was not chosen (`Connector::format` is `None`,
/// the default) lets the handshake settle the fastest format both sides
/// have: MessagePack when both were built with the `msgpack` feature (on by
/// default), else JSON. Choose one with `Connector::with_format` only to
/// insist on it (the `switchboard` CLI insists on JSON, and other-language
/// clients usually speak only JSON).
///
/// # Byte payloads
///
/// JSON has no byte type: a `Vec<u8>` or `switchboard::Bytes` travels as
/// an array of numbers, about 3.5 bytes of text per byte and a hundred times
/// slower than a socket can carry. MessagePack carries them as they are,
/// and a large `Bytes` is neither copied into the frame nor out of it (and,
/// on a local connection on Linux, crosses through shared memory). So, to
/// move bytes fast, leave the format unchosen (or choose MessagePack) and
/// type the payload as `switchboard::Bytes`, or mark a `Vec<u8>` field
/// `#[serde(with = "serde_bytes")]` (a plain `Vec<u8>` is a sequence to
/// serde, an array even in MessagePack).
///
/// ```
/// use switchboard::{Connector, Format};
///
/// // No format chosen: MessagePack if the server has it, else JSON.
/// assert_eq!(Connector::local().format(), None);
/// // Insisting on JSON (readable, what every client speaks).
/// let json = Connector::local().with_format(Format::Json);
/// assert_eq!(json.format(), Some(Format::Json));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// JSON via serde_json: readable, and what other languages speak first.
    #[default]
    Json,
    /// MessagePack via rmp-serde: compact, and byte strings pass untouched.
    MsgPack,
}

impl Format {
    /// The name used on the wire and in dumped state.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::MsgPack => "msgpack",
        }
    }

    /// The format with this wire name, if any.
    pub fn from_name(name: &str) -> Option<Format> {
        match name {
            "json" => Some(Format::Json),
            "msgpack" => Some(Format::MsgPack),
            _ => None,
        }
    }

    /// True when this build can encode and decode the format.
    pub fn is_available(self) -> bool {
        match self {
            Format::Json => true,
            Format::MsgPack => cfg!(feature = "msgpack"),
        }
    }
}

/// Why a body could not be decoded: the codec's own error, or a format this
/// build was compiled without.
#[derive(Debug)]
pub enum CodecError {
    /// What serde_json or rmp-serde said.
    Decode(Box<dyn std::error::Error + Send + Sync>),
    /// The format's feature is not enabled; says which.
    Unsupported(String),
}

/// Decodes a body in `format` into `T`.
pub fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T, CodecError> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| CodecError::Decode(e.into())),
        #[cfg(feature = "msgpack")]
        Format::MsgPack => {
            let mut decoder = rmp_serde::Deserializer::from_read_ref(bytes);
            decoder.set_max_depth(MAX_DEPTH);
            T::deserialize(&mut decoder).map_err(|e| CodecError::Decode(e.into()))
        }
        #[allow(unreachable_patterns)]
        other => Err(CodecError::Unsupported(format!(
            "the {} format (feature not enabled)",
            other.name()
        ))),
    }
}

/// Deepest nesting of arrays and maps a MessagePack body may have: the
/// same as serde_json's limit for JSON. rmp-serde's own default (1024) lets
/// a body of a thousand bytes overflow a 2 MiB tokio worker stack in a
/// debug build, aborting the process, wherever a handler's parameters
/// recurse (`serde_json::Value`) or skip an unknown field.
#[cfg(feature = "msgpack")]
const MAX_DEPTH: usize = 128;
