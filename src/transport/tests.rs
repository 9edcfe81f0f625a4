//! The transport's frame buffers: recycling, sharing, chunks.

use super::*;

#[test]
fn large_frames_return_to_their_spare_and_small_ones_do_not() {
    let spare = Spare::default();
    drop(recyclable(vec![1; 100], &spare));
    assert!(spare.take(0).is_none(), "small buffers are not kept");
    drop(recyclable(vec![1; RECYCLE_MIN], &spare));
    assert!(
        spare.take(RECYCLE_MIN + 1).is_none(),
        "too small for the request"
    );
    let reused = spare.take(RECYCLE_MIN).expect("kept");
    assert!(reused.is_empty() && reused.capacity() >= RECYCLE_MIN);
    assert!(spare.take(0).is_none(), "taken once");
}

fn recyclable(bytes: Vec<u8>, spare: &Spare) -> Frame {
    Frame(Memory::Owned(Recyclable {
        bytes,
        spare: Some(spare.clone()),
    }))
}

#[test]
fn a_shared_frame_is_recycled_when_its_last_reference_goes() {
    let spare = Spare::default();
    let mut frame = recyclable(vec![7; RECYCLE_MIN], &spare);
    let shared = frame.share();
    let part = shared.slice(10..20);
    drop((frame, shared));
    assert!(spare.take(0).is_none(), "a part is still alive");
    assert_eq!(&part[..], &[7; 10]);
    drop(part);
    assert!(spare.take(RECYCLE_MIN).is_some());
}

#[test]
fn a_reused_buffer_starts_a_frame_from_scratch() {
    let frame = OutFrame::reusing(vec![9; 1000]);
    assert_eq!(frame.into_vec(), [0; HEADER_LEN]);
}

#[test]
fn shared_chunks_keep_their_place_in_the_frame() {
    let mut frame = OutFrame::with_capacity(0);
    frame.push(1);
    frame.push_shared(::bytes::Bytes::from_static(b"shared"));
    frame.extend_from_slice(b"after");
    let frame = seal(frame, 100).unwrap();
    assert_eq!(frame.len(), HEADER_LEN + 12);
    let from_7: Vec<u8> = frame
        .slices_from(7)
        .iter()
        .flat_map(|s| s.to_vec())
        .collect();
    assert_eq!(from_7, b"aredafter");
    assert_eq!(
        frame.into_vec(),
        [&12u32.to_le_bytes()[..], &[1], b"shared", b"after"].concat()
    );
}
