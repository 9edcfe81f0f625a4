//! The envelope: how requests, responses, notifications and cancellations
//! sit inside a frame. The byte layout is specified in PROTOCOL.md.

use serde::Serialize;

use super::body::Body;
use super::format::Format;
use super::serializer;
use crate::error::{Error, Result};
use crate::transport::{Frame, OutFrame, seal};

pub(super) const REQUEST: u8 = 1;
pub(super) const NOTIFICATION: u8 = 2;
pub(super) const RESPONSE: u8 = 3;
const ERROR: u8 = 4;
const CANCEL: u8 = 5;
const CREDIT: u8 = 6;
const PING: u8 = 7;
const PONG: u8 = 8;
pub(super) const ITEM: u8 = 9;
const END: u8 = 10;
pub(super) const SHARED: u8 = 11;
pub(super) const RELEASE: u8 = 12;

/// Bytes before the inner message of a `shared` message: kind, offset, length.
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
pub const SHARED_HEADER: usize = 17;
/// Most offsets one `release` message carries.
pub const MAX_RELEASES: usize = 4096;

/// Longest route name, in bytes.
pub const MAX_ROUTE_LEN: usize = 1024;
/// Error messages are cut to this many bytes so an error always fits a frame.
const MAX_ERROR_MESSAGE: usize = 16 * 1024;

/// A request or response id, unique among one side's requests in flight.
pub type RequestId = u64;

/// One decoded frame.
#[derive(Debug)]
pub enum Message {
    /// A call that wants a response with the same id.
    Request {
        /// Chosen by the requester.
        id: RequestId,
        /// The route ([`Body::route`]) and encoded parameters.
        body: Body,
    },
    /// A call that wants no response.
    Notification {
        /// The route ([`Body::route`]) and encoded parameters.
        body: Body,
    },
    /// A successful result.
    Response {
        /// The request's id.
        id: RequestId,
        /// The encoded result.
        body: Body,
    },
    /// A failed request.
    Error {
        /// The request's id.
        id: RequestId,
        /// See [`super::code`].
        code: i32,
        /// Human-readable explanation.
        message: String,
        /// The handler's error value, encoded like a body; `None` when it
        /// sent only a message.
        data: Option<Vec<u8>>,
    },
    /// One item of a streamed answer; more items, then an end or an error,
    /// follow with the same id.
    Item {
        /// The request's id.
        id: RequestId,
        /// The encoded item.
        body: Body,
    },
    /// A streamed answer ended after its last item.
    End {
        /// The request's id.
        id: RequestId,
    },
    /// The requester no longer wants the response (one still comes: an
    /// error with code `CANCELLED` unless the answer was already on its way).
    Cancel {
        /// The request's id.
        id: RequestId,
    },
    /// The receiver finished with this many notifications of this many
    /// bytes: the sender may send that much more.
    Credit {
        /// Messages returned.
        messages: u32,
        /// Bytes returned.
        bytes: u64,
    },
    /// Are you there? Answered with a pong.
    Ping,
    /// The answer to a ping.
    Pong,
    /// A request, notification, response or item whose body is in shared
    /// memory (PROTOCOL.md §9): resolve it, then [`Message::parse_shared`].
    Shared {
        /// Where in the sender's pool, or which region of its own
        /// (PROTOCOL.md §9: 2^64 − 1 on Linux, 2^63 + a handle value on
        /// Windows).
        offset: u64,
        /// The body's length.
        len: u64,
        /// The whole frame; the inner message starts at [`SHARED_HEADER`].
        frame: Frame,
    },
    /// The peer is done with these bodies we sent through shared memory.
    Release {
        /// Their offsets in our pool.
        offsets: Vec<u64>,
    },
}

impl Message {
    /// Decodes a frame body; anything malformed is a protocol violation.
    pub fn parse(frame: Frame) -> Result<Message> {
        Message::parse_at(frame, 0, None)
    }

    /// Decodes the inner message of a `shared` frame, with `body` (from
    /// shared memory) as its body. Only requests, notifications, responses
    /// and items travel this way; the inner message's own body is empty.
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    pub fn parse_shared(frame: Frame, body: Frame) -> Result<Message> {
        match frame.get(SHARED_HEADER) {
            Some(&(REQUEST | NOTIFICATION | RESPONSE | ITEM)) => {}
            _ => {
                return Err(Error::Protocol(
                    "a shared message must hold a request, notification, response or item".into(),
                ));
            }
        }
        Message::parse_at(frame, SHARED_HEADER, Some(body))
    }

    fn parse_at(frame: Frame, start: usize, apart: Option<Frame>) -> Result<Message> {
        let mut cursor = Cursor {
            frame: &frame,
            pos: start,
        };
        let kind = cursor.u8()?;
        let message = match kind {
            REQUEST => {
                let id = cursor.u64()?;
                let route = cursor.route()?;
                let start = cursor.pos;
                Message::Request {
                    id,
                    body: body(frame, route, start, apart)?,
                }
            }
            NOTIFICATION => {
                let route = cursor.route()?;
                let start = cursor.pos;
                Message::Notification {
                    body: body(frame, route, start, apart)?,
                }
            }
            RESPONSE => {
                let id = cursor.u64()?;
                let start = cursor.pos;
                Message::Response {
                    id,
                    body: body(frame, 0..0, start, apart)?,
                }
            }
            ERROR => {
                let id = cursor.u64()?;
                let code = cursor.i32()?;
                let len = usize::from(cursor.u16()?);
                let message = String::from_utf8_lossy(cursor.take(len)?).into_owned();
                let data = cursor.rest();
                let data = (!data.is_empty()).then(|| data.to_vec());
                Message::Error {
                    id,
                    code,
                    message,
                    data,
                }
            }
            ITEM => {
                let id = cursor.u64()?;
                let start = cursor.pos;
                Message::Item {
                    id,
                    body: body(frame, 0..0, start, apart)?,
                }
            }
            END => Message::End { id: cursor.u64()? },
            CANCEL => Message::Cancel { id: cursor.u64()? },
            CREDIT => Message::Credit {
                messages: cursor.u32()?,
                bytes: cursor.u64()?,
            },
            PING => Message::Ping,
            PONG => Message::Pong,
            SHARED => Message::Shared {
                offset: cursor.u64()?,
                len: cursor.u64()?,
                frame,
            },
            RELEASE => {
                let count = cursor.u32()? as usize;
                if count > MAX_RELEASES {
                    return Err(Error::Protocol(format!(
                        "a release message names {count} offsets, more than {MAX_RELEASES}"
                    )));
                }
                let offsets = (0..count)
                    .map(|_| cursor.u64())
                    .collect::<Result<Vec<u64>>>()?;
                Message::Release { offsets }
            }
            other => {
                return Err(Error::Protocol(format!("unknown message kind {other}")));
            }
        };
        Ok(message)
    }
}

/// A body inside `frame` from `start`, or apart from it; a message whose
/// body is apart has nothing after its header.
fn body(
    frame: Frame,
    route: std::ops::Range<usize>,
    start: usize,
    apart: Option<Frame>,
) -> Result<Body> {
    if apart.is_some() && start != frame.len() {
        return Err(Error::Protocol(
            "a shared message carries body bytes in its frame too".into(),
        ));
    }
    Ok(Body {
        frame,
        route,
        start,
        apart,
    })
}

struct Cursor<'a> {
    frame: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.frame.len());
        let Some(end) = end else {
            return Err(Error::Protocol(format!(
                "message truncated: needed {n} more bytes at offset {} of {}",
                self.pos,
                self.frame.len()
            )));
        };
        let bytes = &self.frame[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    fn u16(&mut self) -> Result<u16> {
        let bytes = self.take(2)?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    fn i32(&mut self) -> Result<i32> {
        let bytes = self.take(4)?;
        Ok(i32::from_le_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    /// The route's position in the frame, checked to be UTF-8.
    fn route(&mut self) -> Result<std::ops::Range<usize>> {
        let len = usize::from(self.u16()?);
        let start = self.pos;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map_err(|_| Error::Protocol("route name is not valid UTF-8".into()))?;
        Ok(start..self.pos)
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.frame[self.pos..];
        self.pos = self.frame.len();
        rest
    }
}

/// Checks a route name before it is sent.
pub fn check_route(route: &str) -> Result<()> {
    if route.len() > MAX_ROUTE_LEN {
        return Err(Error::InvalidArgument {
            what: "route",
            reason: format!(
                "{} bytes long; routes are at most {MAX_ROUTE_LEN}",
                route.len()
            ),
        });
    }
    Ok(())
}

fn with_route(buffer: Vec<u8>, kind: u8, id: Option<RequestId>, route: &str) -> Result<OutFrame> {
    check_route(route)?;
    let mut buf = OutFrame::reusing(buffer);
    buf.push(kind);
    if let Some(id) = id {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    buf.extend_from_slice(&(route.len() as u16).to_le_bytes());
    buf.extend_from_slice(route.as_bytes());
    Ok(buf)
}

/// A sealed request frame, built in `buffer` (pass `Vec::new()` or a spare
/// buffer to reuse its memory).
pub fn request<T: Serialize + ?Sized>(
    buffer: Vec<u8>,
    id: RequestId,
    route: &str,
    format: Format,
    params: &T,
    max: u32,
) -> Result<OutFrame> {
    let mut buf = with_route(buffer, REQUEST, Some(id), route)?;
    serializer::encode_into(format, &mut buf, params)?;
    seal(buf, max)
}

/// A sealed notification frame, built in `buffer`.
pub fn notification<T: Serialize + ?Sized>(
    buffer: Vec<u8>,
    route: &str,
    format: Format,
    params: &T,
    max: u32,
) -> Result<OutFrame> {
    let mut buf = with_route(buffer, NOTIFICATION, None, route)?;
    serializer::encode_into(format, &mut buf, params)?;
    seal(buf, max)
}

/// A sealed success response frame, built in `buffer`.
pub fn response<T: Serialize + ?Sized>(
    buffer: Vec<u8>,
    id: RequestId,
    format: Format,
    result: &T,
    max: u32,
) -> Result<OutFrame> {
    let mut buf = OutFrame::reusing(buffer);
    buf.push(RESPONSE);
    buf.extend_from_slice(&id.to_le_bytes());
    serializer::encode_into(format, &mut buf, result)?;
    seal(buf, max)
}

/// A sealed error response frame; long messages are cut so it always fits.
/// `data` is the handler's error value, already encoded in the connection's
/// format (an empty slice for none); it is dropped if it would not fit in
/// `max`, since the message alone still says what went wrong.
pub fn error(id: RequestId, code: i32, message: &str, data: &[u8], max: u32) -> OutFrame {
    let mut cut = message.len().min(MAX_ERROR_MESSAGE);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let fits = 16 + cut + data.len() <= max as usize;
    let data = if fits { data } else { &[][..] };
    let mut buf = OutFrame::with_capacity(16 + cut + data.len());
    buf.push(ERROR);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&code.to_le_bytes());
    buf.extend_from_slice(&(cut as u16).to_le_bytes());
    buf.extend_from_slice(&message.as_bytes()[..cut]);
    buf.extend_from_slice(data);
    seal(buf, u32::MAX).expect("an error frame fits u32::MAX")
}

/// A sealed stream item frame, built in `buffer`.
pub fn item<T: Serialize + ?Sized>(
    buffer: Vec<u8>,
    id: RequestId,
    format: Format,
    value: &T,
    max: u32,
) -> Result<OutFrame> {
    let mut buf = OutFrame::reusing(buffer);
    buf.push(ITEM);
    buf.extend_from_slice(&id.to_le_bytes());
    serializer::encode_into(format, &mut buf, value)?;
    seal(buf, max)
}

/// A sealed end-of-stream frame.
pub fn end(id: RequestId) -> OutFrame {
    let mut buf = OutFrame::with_capacity(9);
    buf.push(END);
    buf.extend_from_slice(&id.to_le_bytes());
    seal(buf, u32::MAX).expect("an end frame is small")
}

/// A sealed cancel frame.
pub fn cancel(id: RequestId) -> OutFrame {
    let mut buf = OutFrame::with_capacity(9);
    buf.push(CANCEL);
    buf.extend_from_slice(&id.to_le_bytes());
    seal(buf, u32::MAX).expect("a cancel frame is small")
}

/// A sealed credit frame.
pub fn credit(messages: u32, bytes: u64) -> OutFrame {
    let mut buf = OutFrame::with_capacity(13);
    buf.push(CREDIT);
    buf.extend_from_slice(&messages.to_le_bytes());
    buf.extend_from_slice(&bytes.to_le_bytes());
    seal(buf, u32::MAX).expect("a credit frame is small")
}

/// A sealed ping (or, with `pong`, the answer to one).
pub fn ping(pong: bool) -> OutFrame {
    let mut buf = OutFrame::with_capacity(1);
    buf.push(if pong { PONG } else { PING });
    seal(buf, u32::MAX).expect("a ping frame is small")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::code;
    use proptest::prelude::*;

    fn body_of(frame: OutFrame) -> Frame {
        frame.into_vec()[crate::transport::HEADER_LEN..]
            .to_vec()
            .into()
    }

    #[test]
    fn every_message_kind_round_trips() {
        let frame = request(Vec::new(), 9, "route", Format::Json, &[1, 2], u32::MAX).unwrap();
        match Message::parse(body_of(frame)).unwrap() {
            Message::Request { id, body } => {
                assert_eq!(
                    (id, body.route(), body.bytes()),
                    (9, "route", &b"[1,2]"[..])
                );
            }
            other => panic!("{other:?}"),
        }
        let frame = error(4, code::INVALID_PARAMS, "bad", b"", u32::MAX);
        match Message::parse(body_of(frame)).unwrap() {
            Message::Error {
                id,
                code,
                message,
                data,
            } => {
                assert_eq!(
                    (id, code, message.as_str(), data),
                    (4, code::INVALID_PARAMS, "bad", None)
                );
            }
            other => panic!("{other:?}"),
        }
        let frame = error(5, 7, "typed", b"{\"n\":1}", u32::MAX);
        match Message::parse(body_of(frame)).unwrap() {
            Message::Error { message, data, .. } => {
                assert_eq!(
                    (message.as_str(), data),
                    ("typed", Some(b"{\"n\":1}".to_vec()))
                );
            }
            other => panic!("{other:?}"),
        }
        let frame = item(Vec::new(), 6, Format::Json, &3, u32::MAX).unwrap();
        match Message::parse(body_of(frame)).unwrap() {
            Message::Item { id, body } => assert_eq!((id, body.bytes()), (6, &b"3"[..])),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Message::parse(body_of(end(8))).unwrap(),
            Message::End { id: 8 }
        ));
        assert!(matches!(
            Message::parse(body_of(cancel(3))).unwrap(),
            Message::Cancel { id: 3 }
        ));
        assert!(matches!(
            Message::parse(body_of(credit(3, 1 << 40))).unwrap(),
            Message::Credit {
                messages: 3,
                bytes: 0x100_0000_0000
            }
        ));
        assert!(matches!(
            Message::parse(body_of(ping(false))).unwrap(),
            Message::Ping
        ));
        assert!(matches!(
            Message::parse(body_of(ping(true))).unwrap(),
            Message::Pong
        ));
        let frame = notification(Vec::new(), "n", Format::Json, &"x", u32::MAX).unwrap();
        assert!(matches!(
            Message::parse(body_of(frame)).unwrap(),
            Message::Notification { .. }
        ));
    }

    #[test]
    fn long_error_messages_are_cut_on_a_character_boundary() {
        let message = "é".repeat(MAX_ERROR_MESSAGE);
        match Message::parse(body_of(error(1, 0, &message, b"", u32::MAX))).unwrap() {
            Message::Error { message: cut, .. } => {
                assert!(cut.len() <= MAX_ERROR_MESSAGE && !cut.is_empty());
                assert!(cut.chars().all(|c| c == 'é'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_routes_are_refused_before_sending() {
        let route = "r".repeat(MAX_ROUTE_LEN + 1);
        assert!(request(Vec::new(), 1, &route, Format::Json, &(), u32::MAX).is_err());
    }

    proptest! {
        // Whatever a peer sends, parsing returns a message or an error and
        // never panics.
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Message::parse(bytes.into());
        }
    }
}
