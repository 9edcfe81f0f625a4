//! The two message kinds of shared memory (PROTOCOL.md §9): `shared` (a
//! message whose body is in the sender's pool, or a region of its own)
//! and `release` (bodies the receiver is done with). Parsing them is the
//! envelope's ([`super::message`]); building them, and finding where an
//! outgoing message's body starts, is here.

// Shared memory is Linux and Windows only: elsewhere nothing builds these
// messages.
#![cfg_attr(
    not(any(target_os = "linux", windows)),
    allow(dead_code, unused_imports)
)]

use super::message::{ITEM, NOTIFICATION, RELEASE, REQUEST, RESPONSE, SHARED};
pub use super::message::{MAX_RELEASES, SHARED_HEADER};
use crate::transport::{OutFrame, seal};

/// Where the body of the message in `frame` (without the length prefix)
/// starts, for the kinds that may travel through shared memory; `None`
/// for the others.
pub fn body_start(frame: &[u8]) -> Option<usize> {
    let route = |at: usize| -> Option<usize> {
        let len = u16::from_le_bytes(frame.get(at..at + 2)?.try_into().ok()?);
        Some(at + 2 + usize::from(len))
    };
    let start = match *frame.first()? {
        REQUEST => route(9)?,
        NOTIFICATION => route(1)?,
        RESPONSE | ITEM => 9,
        _ => return None,
    };
    (start <= frame.len()).then_some(start)
}

/// A sealed `shared` frame: the message whose header is `header` (the
/// message up to its body), with its `len`-byte body at `offset`.
pub fn shared(offset: u64, len: u64, header: &[u8]) -> OutFrame {
    let mut buf = OutFrame::with_capacity(SHARED_HEADER + header.len());
    buf.push(SHARED);
    buf.extend_from_slice(&offset.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(header);
    seal(buf, u32::MAX).expect("a shared frame is small")
}

/// A sealed `release` frame for `offsets` (at most [`MAX_RELEASES`]).
pub fn release(offsets: &[u64]) -> OutFrame {
    let mut buf = OutFrame::with_capacity(5 + 8 * offsets.len());
    buf.push(RELEASE);
    buf.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for offset in offsets {
        buf.extend_from_slice(&offset.to_le_bytes());
    }
    seal(buf, u32::MAX).expect("a release frame is small")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Format;
    use crate::protocol::message::{self, Message};
    use crate::transport::{Frame, HEADER_LEN};

    #[test]
    fn a_shared_message_carries_its_header_and_takes_its_body_apart() {
        let frame =
            message::request(Vec::new(), 7, "route", Format::Json, &[1, 2], u32::MAX).unwrap();
        let bytes = frame.into_vec();
        let start = body_start(&bytes[HEADER_LEN..]).unwrap();
        assert_eq!(&bytes[HEADER_LEN + start..], b"[1,2]");
        let shared = shared(4096, 5, &bytes[HEADER_LEN..HEADER_LEN + start]).into_vec();
        let Message::Shared { offset, len, frame } =
            Message::parse(shared[HEADER_LEN..].to_vec().into()).unwrap()
        else {
            panic!("not shared");
        };
        assert_eq!((offset, len), (4096, 5));
        let body = Frame::from(::bytes::Bytes::from_static(b"[1,2]"));
        match Message::parse_shared(frame, body).unwrap() {
            Message::Request { id, body } => {
                assert_eq!(
                    (id, body.route(), body.bytes()),
                    (7, "route", &b"[1,2]"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        let released = release(&[1, 2, 3]).into_vec();
        assert!(matches!(
            Message::parse(released[HEADER_LEN..].to_vec().into()).unwrap(),
            Message::Release { offsets } if offsets == [1, 2, 3]
        ));
    }

    #[test]
    fn only_bodies_travel_apart() {
        let error = message::error(1, 2, "no", b"", u32::MAX).into_vec();
        assert_eq!(body_start(&error[HEADER_LEN..]), None);
        let mut inner = error[HEADER_LEN..].to_vec();
        inner.truncate(9);
        let shared = shared(0, 1, &inner).into_vec();
        let Message::Shared { frame, .. } =
            Message::parse(shared[HEADER_LEN..].to_vec().into()).unwrap()
        else {
            panic!("not shared");
        };
        assert!(Message::parse_shared(frame, Frame::from(vec![0u8])).is_err());
    }
}
