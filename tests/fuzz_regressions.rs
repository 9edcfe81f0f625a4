//! What the fuzz targets in `fuzz/` found, kept as plain tests (through the
//! hidden `switchboard::fuzzing` entry points, hence the feature):
//!
//! ```text
//! cargo test --features fuzzing --test fuzz_regressions
//! ```
#![cfg(feature = "fuzzing")]

use switchboard::Format;
use switchboard::fuzzing::{decode_request, encode_request};

/// tokio's default worker thread stack, where the router decodes a
/// handler's parameters.
const WORKER_STACK: usize = 2 * 1024 * 1024;

/// A request to route "r" whose body is `body`.
fn request(body: &[u8]) -> Vec<u8> {
    let mut frame = vec![1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'r'];
    frame.extend_from_slice(body);
    frame
}

/// `depth` nested one-element arrays around a nil (MessagePack) or null.
fn nested(format: Format, depth: usize) -> Vec<u8> {
    match format {
        Format::MsgPack => [vec![0x91; depth], vec![0xc0]].concat(),
        _ => [vec![b'['; depth], b"null".to_vec(), vec![b']'; depth]].concat(),
    }
}

/// Decodes on a thread with a tokio worker's stack, as the router would.
fn on_worker_stack<R: Send + 'static>(run: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(WORKER_STACK)
        .spawn(run)
        .expect("a thread")
        .join()
        .expect("no panic")
}

// A MessagePack body of a thousand nested arrays overflowed a 2 MiB stack
// in a debug build (rmp-serde allowed 1024 levels; about 2 KiB of stack
// each), aborting the whole process: for a handler taking a
// `serde_json::Value`, and for any struct given an unknown field holding
// the nesting (serde skips it recursively). Found with the `body` target's
// debug build (AddressSanitizer: stack-overflow).
#[cfg(feature = "msgpack")]
#[test]
fn deeply_nested_msgpack_is_refused_not_a_stack_overflow() {
    let value = request(&[vec![0x81, 0xa1, b'k'], nested(Format::MsgPack, 1020)].concat());
    let result =
        on_worker_stack(move || decode_request::<serde_json::Value>(&value, Format::MsgPack));
    assert!(result.is_err(), "{result:?}");

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Params {
        a: u32,
    }
    // {"a": 1, "x": [[[...]]]}: the unknown field is skipped, recursively.
    let skipped = request(
        &[
            vec![0x82, 0xa1, b'a', 0x01, 0xa1, b'x'],
            nested(Format::MsgPack, 1020),
        ]
        .concat(),
    );
    let result = on_worker_stack(move || decode_request::<Params>(&skipped, Format::MsgPack));
    assert!(result.is_err(), "{result:?}");
}

// Both formats take the same nesting: 127 levels decode, 128 do not
// (serde_json's limit; MessagePack had allowed 1023).
#[cfg(feature = "msgpack")]
#[test]
fn both_formats_have_the_same_nesting_limit() {
    for format in [Format::Json, Format::MsgPack] {
        let ok = decode_request::<serde_json::Value>(&request(&nested(format, 127)), format);
        assert!(ok.is_ok(), "{format:?}: {ok:?}");
        let deep = decode_request::<serde_json::Value>(&request(&nested(format, 128)), format);
        assert!(deep.is_err(), "{format:?}: 128 levels decoded");
    }
    // What the encoder produces within the limit decodes again.
    let mut value = serde_json::Value::Null;
    for _ in 0..127 {
        value = serde_json::Value::Array(vec![value]);
    }
    for format in [Format::Json, Format::MsgPack] {
        let frame = encode_request(1, "r", format, &value).unwrap();
        let (_, decoded) = decode_request::<serde_json::Value>(&frame, format).unwrap();
        assert_eq!(decoded, value);
    }
}
