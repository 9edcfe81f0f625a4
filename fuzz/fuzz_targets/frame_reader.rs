//! The frame reader against arbitrary bytes arriving in arbitrary pieces.
//!
//! Input: the limit (u16 LE), a count n and n piece sizes (0: "not ready"
//! once), then the stream. The reader must return exactly the frames a
//! plain reading of PROTOCOL.md §2 finds, end the way it says (clean end,
//! frame too large, cut short), never return a frame over the limit, and
//! never allocate much more than the limit, whatever length a header
//! claims.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use switchboard::Error;
use switchboard_fuzz::Chunked;

/// Records the largest single allocation while armed.
struct Tracking;

static ARMED: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

/// The reader's own buffer; a frame may take its length plus a little room
/// for the response built in it.
const READ_BUFFER: usize = 8 * 1024;
const SLACK: usize = 64;

#[derive(Debug, PartialEq)]
enum End {
    Clean,
    TooLarge(u64),
    CutShort,
}

/// PROTOCOL.md §2, read plainly.
fn model(mut stream: &[u8], max: u32) -> (Vec<&[u8]>, End) {
    let mut frames = Vec::new();
    loop {
        if stream.is_empty() {
            return (frames, End::Clean);
        }
        let Some((header, rest)) = stream.split_first_chunk::<4>() else {
            return (frames, End::CutShort);
        };
        let len = u32::from_le_bytes(*header);
        if len > max {
            return (frames, End::TooLarge(u64::from(len)));
        }
        let Some(body) = rest.get(..len as usize) else {
            return (frames, End::CutShort);
        };
        frames.push(body);
        stream = &rest[len as usize..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((max, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = u32::from(u16::from_le_bytes(*max));
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let (want_frames, want_end) = model(stream, max);

    let reader = Chunked::new(stream.to_vec(), sizes.to_vec());
    let mut got_frames: Vec<Vec<u8>> = Vec::with_capacity(want_frames.len());
    let mut over_limit = None;

    LARGEST.store(0, Ordering::Relaxed);
    ARMED.store(true, Ordering::Relaxed);
    let result = RUNTIME.with(|runtime| {
        runtime.block_on(switchboard::fuzzing::read_frames(reader, max, |frame| {
            if frame.len() > max as usize {
                over_limit.get_or_insert(frame.len());
            }
            if got_frames.len() < got_frames.capacity() {
                got_frames.push(frame.to_vec());
            }
        }))
    });
    ARMED.store(false, Ordering::Relaxed);
    let largest = LARGEST.load(Ordering::Relaxed);

    assert_eq!(over_limit, None, "a frame over the limit of {max} bytes");
    let bound = READ_BUFFER.max(max as usize + SLACK);
    assert!(
        largest <= bound,
        "allocated {largest} bytes at once with a limit of {max} (bound {bound})"
    );
    let got_end = match result {
        Ok(()) => End::Clean,
        Err(Error::FrameTooLarge { size, max: limit }) => {
            assert_eq!(limit, max);
            End::TooLarge(size)
        }
        Err(Error::Disconnected) => End::CutShort,
        Err(other) => panic!("unexpected error {other:?}"),
    };
    assert_eq!(got_end, want_end, "the stream ended differently");
    assert_eq!(got_frames, want_frames, "different frames");
});
