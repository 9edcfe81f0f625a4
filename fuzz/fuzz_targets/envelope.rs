//! The envelope parser against arbitrary frame bodies.
//!
//! Must never panic (a request's or notification's route is read through
//! `Body::route`, which panics on a route that is not UTF-8), and must
//! accept exactly what PROTOCOL.md §4 describes, with the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::fuzzing::{Envelope, parse_envelope};

/// PROTOCOL.md §4, read plainly: `None` where it says protocol violation.
fn model(frame: &[u8]) -> Option<Envelope> {
    fn u64_at(bytes: &[u8]) -> Option<(u64, &[u8])> {
        let (id, rest) = bytes.split_first_chunk::<8>()?;
        Some((u64::from_le_bytes(*id), rest))
    }
    fn route_at(bytes: &[u8]) -> Option<(String, &[u8])> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let route = std::str::from_utf8(rest.get(..len)?).ok()?;
        Some((route.to_owned(), &rest[len..]))
    }
    let (&kind, rest) = frame.split_first()?;
    Some(match kind {
        1 => {
            let (id, rest) = u64_at(rest)?;
            let (route, body) = route_at(rest)?;
            Envelope::Request {
                id,
                route,
                body: body.to_vec(),
            }
        }
        2 => {
            let (route, body) = route_at(rest)?;
            Envelope::Notification {
                route,
                body: body.to_vec(),
            }
        }
        3 => {
            let (id, body) = u64_at(rest)?;
            Envelope::Response {
                id,
                body: body.to_vec(),
            }
        }
        4 => {
            let (id, rest) = u64_at(rest)?;
            let (code, rest) = rest.split_first_chunk::<4>()?;
            let (len, rest) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_le_bytes(*len));
            if rest.len() < len {
                return None;
            }
            let (message, data) = rest.split_at(len);
            Envelope::Error {
                id,
                code: i32::from_le_bytes(*code),
                message: String::from_utf8_lossy(message).into_owned(),
                data: (!data.is_empty()).then(|| data.to_vec()),
            }
        }
        5 => Envelope::Cancel {
            id: u64_at(rest)?.0,
        },
        6 => {
            let (messages, rest) = rest.split_first_chunk::<4>()?;
            let (bytes, _) = u64_at(rest)?;
            Envelope::Credit {
                messages: u32::from_le_bytes(*messages),
                bytes,
            }
        }
        7 => Envelope::Ping,
        8 => Envelope::Pong,
        9 => {
            let (id, body) = u64_at(rest)?;
            Envelope::Item {
                id,
                body: body.to_vec(),
            }
        }
        10 => Envelope::End {
            id: u64_at(rest)?.0,
        },
        // §9: the inner message is resolved later, against shared memory.
        11 => {
            let (offset, rest) = u64_at(rest)?;
            let (len, _) = u64_at(rest)?;
            Envelope::Shared { offset, len }
        }
        12 => {
            let (count, mut rest) = rest.split_first_chunk::<4>()?;
            let count = u32::from_le_bytes(*count) as usize;
            if count > 4096 {
                return None;
            }
            let mut offsets = Vec::with_capacity(count);
            for _ in 0..count {
                let (offset, more) = u64_at(rest)?;
                offsets.push(offset);
                rest = more;
            }
            Envelope::Release { offsets }
        }
        _ => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_envelope(data).ok();
    assert_eq!(parsed, model(data), "the parser and PROTOCOL.md disagree");
});
