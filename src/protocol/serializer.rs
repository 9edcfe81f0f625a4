//! Message bodies: serde values to bytes and back, in the format the
//! handshake settled.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::body::Body;
use super::format::{self, Format};
use super::payload;
use crate::error::{Error, Result};
use crate::transport::OutFrame;

/// Appends `value` encoded in `format` to `out`. Large
/// [`Bytes`](crate::Bytes) inside it are taken by reference where the format
/// carries bytes as they are (MessagePack).
pub fn encode_into<T: Serialize + ?Sized>(
    format: Format,
    out: &mut OutFrame,
    value: &T,
) -> Result<()> {
    match format {
        Format::Json => serde_json::to_writer(out, value).map_err(|e| Error::Encode(e.into())),
        #[cfg(feature = "msgpack")]
        Format::MsgPack => payload::encode_shared(out, |out| {
            rmp_serde::encode::write_named(out, value).map_err(|e| Error::Encode(e.into()))
        }),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!(
            "the {} format (feature not enabled)",
            other.name()
        ))),
    }
}

/// `value` encoded in `format`, on its own (not inside a frame).
pub fn encode<T: Serialize + ?Sized>(format: Format, value: &T) -> Result<Vec<u8>> {
    match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| Error::Encode(e.into())),
        #[cfg(feature = "msgpack")]
        Format::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| Error::Encode(e.into())),
        #[allow(unreachable_patterns)]
        other => Err(Error::Unsupported(format!(
            "the {} format (feature not enabled)",
            other.name()
        ))),
    }
}

/// Decodes a received body into `T`. Where the format carries bytes as they
/// are (MessagePack) and the frame is large, [`Bytes`](crate::Bytes) inside
/// it refer to the frame's memory instead of copying out of it.
pub fn decode_body<T: DeserializeOwned>(format: Format, body: &mut Body) -> Result<T> {
    if format == Format::Json || body.bytes().len() < payload::SHARE_MIN {
        return decode(format, body.bytes());
    }
    let (frame, start) = body.share();
    payload::decode_shared(frame, |frame| decode(format, &frame[start..]))
}

/// Decodes a body in `format` into `T`.
pub fn decode<T: DeserializeOwned>(format: Format, bytes: &[u8]) -> Result<T> {
    format::decode(format, bytes).map_err(Error::from)
}
