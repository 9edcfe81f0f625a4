//! Message bodies: serde values to bytes and back, in the format the
//! handshake settled.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::connector::Format;
use crate::error::{Error, Result};

/// The formats this build can speak, in order of preference.
pub fn available() -> Vec<Format> {
    [Format::MsgPack, Format::Json]
        .into_iter()
        .filter(|f| f.is_available())
        .collect()
}

/// Appends `value` encoded in `format` to `out`.
pub fn encode_into<T: Serialize + ?Sized>(
    format: Format,
    out: &mut Vec<u8>,
    value: &T,
) -> Result<()> {
    match format {
        Format::Json => serde_json::to_writer(out, value).map_err(|e| Error::Encode(e.to_string())),
        #[cfg(feature = "msgpack")]
        Format::MsgPack => {
            rmp_serde::encode::write_named(out, value).map_err(|e| Error::Encode(e.to_string()))
        }
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!(
            "the {} format (feature not enabled)",
            other.name()
        ))),
    }
}

/// Decodes a body in `format` into `T`.
pub fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.to_string())),
        #[cfg(feature = "msgpack")]
        Format::MsgPack => rmp_serde::from_slice(bytes).map_err(|e| Error::Decode(e.to_string())),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!(
            "the {} format (feature not enabled)",
            other.name()
        ))),
    }
}
