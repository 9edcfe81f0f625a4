//! Byte payloads that cross a connection without being copied in user space.
//!
//! [`Bytes`] is an immutable, reference-counted byte buffer that serializes
//! as a byte string (MessagePack `bin`; an array of numbers in JSON, which
//! has no byte type). With MessagePack, a large one is not copied into the
//! outgoing frame: the frame refers to it and the outbox writes it straight
//! from the caller's memory. On the receiving side a large one is not copied
//! out of the frame either: it refers to the frame's memory.
//!
//! Serde gives a serializer no way to hand over ownership, so the two ends
//! meet through the thread doing the (synchronous) encoding: a `Bytes`
//! being serialized offers a clone of itself, and the frame's writer, asked
//! to write exactly those bytes, keeps the clone instead of copying. When
//! decoding, the shared frame is lent the same way. Nothing borrowed is
//! ever kept: a match is by address and length against memory this module
//! owns a counted reference to.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::ops::Deref;
use std::thread::LocalKey;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::transport::OutFrame;

/// Payloads at least this long travel by reference; shorter ones are
/// cheaper to copy than to track.
pub const SHARE_MIN: usize = 32 * 1024;

thread_local! {
    /// Sharing encoders in progress on this thread (they may nest). A
    /// counter, not the list below, is what every encoding touches: most
    /// bodies are small and never offer anything.
    static ENCODING: Cell<u32> = const { Cell::new(0) };
    /// Large payloads serialized so far by the encodings in progress on
    /// this thread; emptied when the outermost one ends.
    static OFFERED: RefCell<Vec<::bytes::Bytes>> = const { RefCell::new(Vec::new()) };
    /// Something was offered since `OFFERED` was last emptied.
    static OFFERED_ANY: Cell<bool> = const { Cell::new(false) };
    /// The frame being decoded on this thread, when it is shared.
    static RECEIVED: RefCell<Option<::bytes::Bytes>> = const { RefCell::new(None) };
}

/// An immutable byte buffer for message bodies, cheap to clone.
///
/// Use it where a body (or a field of one) is raw bytes: with MessagePack
/// a large `Bytes` goes from the sender's memory to the socket and from the
/// receiver's frame to the handler without being copied in between.
///
/// # Sending bytes fast
///
/// MessagePack is what two Rust processes settle with the default settings
/// (a connector whose [`Format`](crate::Format) was not chosen). Serde only
/// lets a format see bytes as bytes when the type says so:
///
/// - `Bytes` (this type): a MessagePack `bin`; from 32 KiB up, not copied
///   in user space on either side. The fast way.
/// - `Vec<u8>` marked `#[serde(with = "serde_bytes")]`, or
///   `serde_bytes::ByteBuf`: a `bin` too, copied once into the frame and
///   once out of it.
/// - A plain `Vec<u8>` (or `[u8; N]`): a *sequence* to serde, so an array
///   of integers, each encoded and decoded on its own: many times slower.
///
/// With JSON (a connector that insists on [`Format::Json`](crate::Format),
/// the CLI, a JSON-only client in another language) every one of them is
/// an array of numbers, about 3.5 bytes of text per byte and a hundred
/// times slower than the socket: keep JSON for small, readable messages.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::Bytes;
///
/// #[derive(Serialize, Deserialize)]
/// struct Frame {
///     width: u32,
///     height: u32,
///     pixels: Bytes, // travels as bytes, without copies
/// }
///
/// let frame = Frame { width: 2, height: 1, pixels: Bytes::from(vec![0u8; 8]) };
/// let pixels: Vec<u8> = frame.pixels.into(); // back to a Vec
/// assert_eq!(pixels.len(), 8);
/// ```
///
/// ```
/// use switchboard::Bytes;
///
/// let image = Bytes::from(vec![0u8; 1 << 20]);
/// let same = image.clone(); // no copy: both refer to one buffer
/// assert_eq!(same.len(), 1 << 20);
/// ```
///
/// A `Bytes` received zero-copy keeps the frame it arrived in alive until
/// it is dropped; `to_vec()` (a slice method, through `Deref`) copies it out.
/// Converts to and from [`bytes::Bytes`](::bytes::Bytes) without copying.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(::bytes::Bytes);

impl Bytes {
    /// An empty buffer.
    pub const fn new() -> Bytes {
        Bytes(::bytes::Bytes::new())
    }

    /// A buffer over static memory (no allocation).
    pub const fn from_static(bytes: &'static [u8]) -> Bytes {
        Bytes(::bytes::Bytes::from_static(bytes))
    }

    /// A buffer holding a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Bytes {
        Bytes(::bytes::Bytes::copy_from_slice(bytes))
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads can be megabytes: show the size and a short prefix.
        const SHOWN: usize = 32;
        let shown = self.0.slice(..self.0.len().min(SHOWN));
        let more = if self.0.len() > SHOWN { "..." } else { "" };
        write!(f, "Bytes({} bytes: {shown:?}{more})", self.0.len())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Bytes {
        Bytes(bytes.into())
    }
}

impl From<::bytes::Bytes> for Bytes {
    fn from(bytes: ::bytes::Bytes) -> Bytes {
        Bytes(bytes)
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }
}

impl From<String> for Bytes {
    fn from(text: String) -> Bytes {
        Bytes(text.into())
    }
}

impl From<Bytes> for ::bytes::Bytes {
    fn from(bytes: Bytes) -> ::bytes::Bytes {
        bytes.0
    }
}

impl From<Bytes> for Vec<u8> {
    fn from(bytes: Bytes) -> Vec<u8> {
        bytes.0.into()
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0.len() >= SHARE_MIN && ENCODING.get() > 0 {
            OFFERED.with_borrow_mut(|offered| offered.push(self.0.clone()));
            OFFERED_ANY.set(true);
        }
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(
            received(bytes).unwrap_or_else(|| ::bytes::Bytes::copy_from_slice(bytes)),
        ))
    }

    fn visit_byte_buf<E: de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(bytes))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Bytes, E> {
        self.visit_bytes(text.as_bytes())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        // JSON has no byte strings: they arrive as arrays of numbers.
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Bytes::from(bytes))
    }
}

/// `bytes` as a reference into the frame being decoded, if they lie inside
/// it and are worth sharing.
fn received(bytes: &[u8]) -> Option<::bytes::Bytes> {
    if bytes.len() < SHARE_MIN {
        return None;
    }
    RECEIVED.with(|frame| {
        let frame = frame.borrow();
        let frame = frame.as_ref()?;
        let start = frame.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        let inside = at >= start && at + bytes.len() <= start + frame.len();
        inside.then(|| frame.slice_ref(bytes))
    })
}

/// Runs `decode` over `frame` with the frame lent to any [`Bytes`] decoded
/// from it.
pub(crate) fn decode_shared<T>(frame: ::bytes::Bytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    lend(&RECEIVED, frame.clone(), || decode(&frame))
}

/// Runs `encode` with a writer appending to `out` that takes large
/// [`Bytes`] by reference instead of copying them.
pub(crate) fn encode_shared<T>(
    out: &mut OutFrame,
    encode: impl FnOnce(&mut SharingWriter<'_>) -> T,
) -> T {
    /// Ends the encoding, also if a `Serialize` implementation panics;
    /// the outermost one drops what was offered and not taken.
    struct Encoding;
    impl Drop for Encoding {
        fn drop(&mut self) {
            let depth = ENCODING.get() - 1;
            ENCODING.set(depth);
            if depth == 0 && OFFERED_ANY.replace(false) {
                OFFERED.with_borrow_mut(Vec::clear);
            }
        }
    }
    ENCODING.set(ENCODING.get() + 1);
    let _encoding = Encoding;
    encode(&mut SharingWriter { out })
}

/// Runs `run` with `slot` holding `value`, then puts back what it held
/// before, also if a `Deserialize` implementation panics (and when
/// decodings nest).
fn lend<V: 'static, R>(
    slot: &'static LocalKey<RefCell<Option<V>>>,
    value: V,
    run: impl FnOnce() -> R,
) -> R {
    struct Restore<V: 'static> {
        slot: &'static LocalKey<RefCell<Option<V>>>,
        previous: Option<V>,
    }
    impl<V: 'static> Drop for Restore<V> {
        fn drop(&mut self) {
            let previous = self.previous.take();
            self.slot.with(|slot| *slot.borrow_mut() = previous);
        }
    }
    let previous = slot.with(|slot| slot.replace(Some(value)));
    let _restore = Restore { slot, previous };
    run()
}

/// See [`encode_shared`].
pub(crate) struct SharingWriter<'a> {
    out: &'a mut OutFrame,
}

impl io::Write for SharingWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let shared = (bytes.len() >= SHARE_MIN)
            .then(|| {
                OFFERED.with_borrow_mut(|offered| {
                    let index = offered.iter().position(|candidate| {
                        candidate.as_ptr() == bytes.as_ptr() && candidate.len() == bytes.len()
                    })?;
                    Some(offered.swap_remove(index))
                })
            })
            .flatten();
        match shared {
            Some(shared) => self.out.push_shared(shared),
            None => self.out.extend_from_slice(bytes),
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Format;
    use crate::protocol::{Message, message, serializer};
    use crate::transport::HEADER_LEN;

    /// Sends `value` as a request through the encoder, the wire bytes and
    /// the decoder, returning the sealed frame's shape and what decoded.
    fn round_trip<T>(format: Format, value: &T) -> (bool, T, std::ops::Range<usize>)
    where
        T: Serialize + serde::de::DeserializeOwned,
    {
        let frame = message::request(Vec::new(), 1, "r", format, value, u32::MAX).unwrap();
        let contiguous = frame.is_contiguous();
        let wire = frame.into_vec();
        let Message::Request { mut body, .. } =
            Message::parse(wire[HEADER_LEN..].to_vec().into()).unwrap()
        else {
            panic!("not a request");
        };
        let decoded = serializer::decode_body(format, &mut body).unwrap();
        let memory = body.bytes().as_ptr_range();
        (
            contiguous,
            decoded,
            memory.start as usize..memory.end as usize,
        )
    }

    fn inside(bytes: &Bytes, memory: &std::ops::Range<usize>) -> bool {
        memory.contains(&(bytes.as_ptr() as usize))
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn large_bytes_travel_by_reference_both_ways() {
        let payload = Bytes::from(vec![5u8; SHARE_MIN]);
        let frame =
            message::request(Vec::new(), 1, "r", Format::MsgPack, &payload, u32::MAX).unwrap();
        assert!(
            frame
                .slices_from(0)
                .iter()
                .any(|slice| slice.as_ptr() == payload.as_ptr()),
            "the frame refers to the caller's memory"
        );
        let value = (7u32, payload.clone(), "after".to_owned());
        let (contiguous, decoded, memory) = round_trip(Format::MsgPack, &value);
        assert!(!contiguous);
        assert_eq!(decoded, value);
        assert!(inside(&decoded.1, &memory), "decoded in place");
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn what_was_offered_and_not_taken_is_let_go_when_the_encoding_ends() {
        // Offered inside the sharing encoder, but written by a nested JSON
        // encoder, which copies: the clone offered must not outlive the
        // encoding.
        struct Nested(Bytes);
        impl Serialize for Nested {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(&text)
            }
        }
        let payload = Bytes::from(vec![7u8; SHARE_MIN]);
        let frame = message::request(
            Vec::new(),
            1,
            "r",
            Format::MsgPack,
            &(Nested(payload.clone()), payload.clone()),
            u32::MAX,
        )
        .unwrap();
        assert!(
            !frame.is_contiguous(),
            "the outer payload still by reference"
        );
        assert_eq!(ENCODING.get(), 0);
        assert!(OFFERED.with_borrow(Vec::is_empty));
        drop(frame);
        let only = payload.0;
        assert!(
            only.try_into_mut().is_ok(),
            "no clone of the payload is kept"
        );
    }

    #[cfg(feature = "msgpack")]
    #[test]
    fn small_bytes_are_copied() {
        let value = (
            Bytes::from(vec![1u8; SHARE_MIN - 1]),
            Bytes::from_static(b"x"),
        );
        let (contiguous, decoded, memory) = round_trip(Format::MsgPack, &value);
        assert!(contiguous);
        assert_eq!(decoded, value);
        assert!(!inside(&decoded.0, &memory) && !inside(&decoded.1, &memory));
    }

    #[test]
    fn json_carries_bytes_as_numbers() {
        let value = Bytes::from(vec![200u8; SHARE_MIN + 1]);
        let (contiguous, decoded, _) = round_trip(Format::Json, &value);
        assert!(contiguous);
        assert_eq!(decoded, value);
        let text = serde_json::to_string(&Bytes::from_static(b"\x01\xff")).unwrap();
        assert_eq!(text, "[1,255]");
    }

    #[test]
    fn bytes_made_elsewhere_are_never_taken_by_reference() {
        // Without a sharing encoder in progress nothing is offered, and a
        // plain frame writer always copies.
        let payload = Bytes::from(vec![3u8; SHARE_MIN]);
        let mut frame = OutFrame::with_capacity(0);
        let bytes = serde_json::to_vec(&payload).unwrap();
        std::io::Write::write_all(&mut frame, &bytes).unwrap();
        assert!(frame.is_contiguous());
        assert_eq!(ENCODING.get(), 0);
        assert!(OFFERED.with_borrow(Vec::is_empty));
    }

    #[test]
    fn debug_shows_size_and_a_prefix_only() {
        let text = format!("{:?}", Bytes::from(vec![b'a'; 1000]));
        assert!(text.starts_with("Bytes(1000 bytes: b\"aaaa"), "{text}");
        assert!(text.len() < 100, "{text}");
    }
}
