//! Request bodies decoded the way the router decodes them for a handler,
//! on a thread with the stack of a tokio worker (2 MiB).
//!
//! Input: one flags byte (bit 0: MessagePack, else JSON; bits 1-2: the
//! handler's parameter type; bit 3: 32 KiB of padding after the body, so
//! large byte strings take the by-reference path), then the body. Must
//! never panic or overflow the stack; what decodes, encodes and decodes
//! again to an equal value.
#![no_main]

use std::fmt::Debug;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard::fuzzing::{decode_request, encode_request};
use switchboard::{Bytes, Format};

/// tokio's default worker thread stack.
const WORKER_STACK: usize = 2 * 1024 * 1024;
/// Where a received byte string starts being shared instead of copied.
const SHARE_MIN: usize = 32 * 1024;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Params {
    id: u64,
    name: String,
    data: Bytes,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    next: Option<Box<Params>>,
    kind: Kind,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Kind {
    Plain,
    Sized(u32),
    Signed { value: i8 },
}

fn has_float(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) => n.is_f64(),
        serde_json::Value::Array(items) => items.iter().any(has_float),
        serde_json::Value::Object(fields) => fields.values().any(has_float),
        _ => false,
    }
}

fn check<T>(frame: &[u8], format: Format, comparable: impl Fn(&T) -> bool)
where
    T: DeserializeOwned + Serialize + Debug + PartialEq,
{
    let Ok((route, value)) = decode_request::<T>(frame, format) else {
        return;
    };
    assert_eq!(route, "r");
    let again = encode_request(7, "r", format, &value)
        .unwrap_or_else(|e| panic!("{value:?} decoded but does not encode: {e}"));
    let (_, decoded) = decode_request::<T>(&again, format)
        .unwrap_or_else(|e| panic!("{value:?} encoded but does not decode: {e}"));
    if comparable(&value) {
        assert_eq!(decoded, value, "the round trip changed the value");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let format = match flags & 1 {
        0 => Format::Json,
        _ => Format::MsgPack,
    };
    // A request with id 7 to route "r" (PROTOCOL.md §4), then the body.
    let mut frame = vec![1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 0, b'r'];
    frame.extend_from_slice(body);
    if flags & 8 != 0 {
        let filler = if format == Format::Json { b' ' } else { 0 };
        frame.resize(frame.len() + SHARE_MIN, filler);
    }
    let kind = (flags >> 1) & 3;
    on_worker(move || match kind {
        // Float text may not survive JSON exactly (serde_json without
        // float_roundtrip); not switchboard's to fix.
        0 => check::<serde_json::Value>(&frame, format, |v| {
            format == Format::MsgPack || !has_float(v)
        }),
        1 => check::<Params>(&frame, format, |_| true),
        2 => check::<(u32, Bytes, String)>(&frame, format, |_| true),
        _ => check::<Vec<Bytes>>(&frame, format, |_| true),
    });
});

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a long-lived thread with a tokio worker's stack and waits
/// for it. A panic there aborts the process (libfuzzer-sys's panic hook),
/// which libFuzzer reports like one on its own thread.
fn on_worker(job: impl FnOnce() + Send + 'static) {
    static WORKER: OnceLock<Mutex<(Sender<Job>, Receiver<()>)>> = OnceLock::new();
    let worker = WORKER.get_or_init(|| {
        let (jobs, next) = channel::<Job>();
        let (done, finished) = channel();
        std::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || {
                for job in next {
                    job();
                    let _ = done.send(());
                }
            })
            .expect("a thread");
        Mutex::new((jobs, finished))
    });
    let worker = worker.lock().expect("one input at a time");
    worker.0.send(Box::new(job)).expect("the worker runs");
    worker.1.recv().expect("the worker finished the job");
}
