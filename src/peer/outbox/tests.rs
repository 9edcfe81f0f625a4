//! Unit tests of the outbox against in-memory pipes.

use super::flush::BATCH;
use super::*;
use crate::transport::seal;
use std::task::Context;

use tokio::io::AsyncReadExt;

fn admitted() -> Arc<Admitted> {
    Arc::new(Admitted::new(crate::config::Window {
        messages: 10,
        bytes: 1000,
    }))
}

fn frame(byte: u8, len: usize) -> OutFrame {
    let mut frame = OutFrame::with_capacity(len);
    frame.extend_from_slice(&vec![byte; len]);
    seal(frame, u32::MAX).unwrap()
}

/// Reads `count` frames off the other end of the pipe.
async fn read_frames(pipe: &mut tokio::io::DuplexStream, count: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for _ in 0..count {
        let mut header = [0u8; 4];
        pipe.read_exact(&mut header).await.unwrap();
        let mut body = vec![0; u32::from_le_bytes(header) as usize];
        pipe.read_exact(&mut body).await.unwrap();
        frames.push(body);
    }
    frames
}

#[tokio::test]
async fn a_push_never_waits_even_when_nobody_reads() {
    // A pipe that holds 1 KiB: after that, writes would block.
    let (near, _far) = tokio::io::duplex(1024);
    let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
    for i in 0..1000u32 {
        let _ = outbox.push(frame(i as u8, 100), When::Now).unwrap();
    }
    // Everything the socket did not take is queued, none of it lost.
    assert!(outbox.queued_bytes() >= 1000 * 104 - 1024);
}

#[tokio::test]
async fn frames_arrive_whole_and_in_order_through_a_small_pipe() {
    let (near, mut far) = tokio::io::duplex(300);
    let outbox = std::sync::Arc::new(Outbox::new(Box::new(near), Spare::default(), admitted()));
    let writer = {
        let outbox = std::sync::Arc::clone(&outbox);
        tokio::spawn(async move { outbox.run_writer().await })
    };
    for i in 0..200u32 {
        // Sizes around the pipe's, so frames are split across writes.
        let _ = outbox
            .push(frame(i as u8, (i as usize * 37) % 900), When::Later)
            .unwrap();
    }
    outbox.flush();
    let frames = read_frames(&mut far, 200).await;
    for (i, body) in frames.iter().enumerate() {
        assert_eq!(body.len(), (i * 37) % 900);
        assert!(body.iter().all(|b| *b == i as u8));
    }
    outbox.close();
    writer.await.unwrap().unwrap();
    assert_eq!(outbox.queued_bytes(), 0);
}

#[tokio::test]
async fn control_frames_are_counters_not_a_queue() {
    let (near, mut far) = tokio::io::duplex(64);
    let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
    // Fill the pipe so nothing more can be written for now.
    let _ = outbox.push(frame(1, 60), When::Now).unwrap();
    for _ in 0..10_000 {
        outbox.signal(
            Control {
                credit_messages: 1,
                credit_bytes: 10,
                pong: true,
                ..Control::default()
            },
            When::Now,
        );
    }
    // Ten thousand signals cost one small frame's worth of state.
    assert!(outbox.queued_bytes() < 64, "{}", outbox.queued_bytes());
    let outbox = std::sync::Arc::new(outbox);
    let writer = {
        let outbox = std::sync::Arc::clone(&outbox);
        tokio::spawn(async move { outbox.run_writer().await })
    };
    assert_eq!(read_frames(&mut far, 1).await, vec![vec![1; 60]]);
    // At most one control frame was made while the pipe was full; the
    // rest of the signals were summed into the next.
    let (mut messages, mut bytes, mut pongs, mut frames) = (0u64, 0u64, 0, 0);
    while messages < 10_000 {
        let body = read_frames(&mut far, 1).await.remove(0);
        frames += 1;
        match body[0] {
            6 => {
                messages += u64::from(u32::from_le_bytes(body[1..5].try_into().unwrap()));
                bytes += u64::from_le_bytes(body[5..13].try_into().unwrap());
            }
            8 => pongs += 1,
            other => panic!("unexpected frame kind {other}"),
        }
    }
    assert_eq!((messages, bytes), (10_000, 100_000));
    assert!(frames <= 4 && pongs <= 2, "{frames} frames, {pongs} pongs");
    outbox.close();
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn after_close_pushes_fail_and_queued_frames_still_go_out() {
    let (near, mut far) = tokio::io::duplex(16);
    let outbox = std::sync::Arc::new(Outbox::new(Box::new(near), Spare::default(), admitted()));
    let _ = outbox.push(frame(7, 100), When::Now).unwrap();
    outbox.close();
    assert!(matches!(
        outbox.push(frame(8, 1), When::Now),
        Err(Closed::Locally)
    ));
    let writer = {
        let outbox = std::sync::Arc::clone(&outbox);
        tokio::spawn(async move { outbox.run_writer().await })
    };
    assert_eq!(read_frames(&mut far, 1).await, vec![vec![7; 100]]);
    writer.await.unwrap().unwrap();
    let mut rest = Vec::new();
    far.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty(), "the stream was shut down after the frame");
}

#[tokio::test]
async fn an_answer_keeps_its_request_counted_until_it_is_written() {
    let (near, mut far) = tokio::io::duplex(64);
    let admitted = admitted();
    let outbox = Outbox::new(Box::new(near), Spare::default(), Arc::clone(&admitted));
    let costs: Vec<_> = (0..3).map(|_| admitted.admit(100).unwrap()).collect();
    // The pipe takes the first answer whole; the second is the one being
    // written; the third waits in the queue, still counted.
    for cost in costs {
        let _ = outbox.push_answer(frame(1, 60), cost, When::Now).unwrap();
    }
    assert_eq!(
        admitted.in_flight(),
        (1, 100),
        "queued answers stay counted"
    );
    let outbox = Arc::new(outbox);
    let writer = {
        let outbox = Arc::clone(&outbox);
        tokio::spawn(async move { outbox.run_writer().await })
    };
    read_frames(&mut far, 3).await;
    outbox.close();
    writer.await.unwrap().unwrap();
    assert_eq!(admitted.in_flight(), (0, 0));
}

#[tokio::test]
async fn a_broken_stream_fails_later_pushes() {
    let (near, far) = tokio::io::duplex(16);
    drop(far);
    let outbox = Outbox::new(Box::new(near), Spare::default(), admitted());
    let first = outbox.push(frame(1, 8), When::Now);
    assert!(matches!(first, Err(Closed::Broken)), "{first:?}");
    assert!(matches!(
        outbox.push(frame(1, 8), When::Now),
        Err(Closed::Broken)
    ));
}

/// A pipe end that counts the writes made to it.
struct Counting {
    inner: tokio::io::DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn counting(
    capacity: usize,
) -> (
    Outbox,
    tokio::io::DuplexStream,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let (near, far) = tokio::io::duplex(capacity);
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sink = Counting {
        inner: near,
        writes: Arc::clone(&writes),
    };
    (
        Outbox::new(Box::new(sink), Spare::default(), admitted()),
        far,
        writes,
    )
}

#[tokio::test]
async fn a_burst_leaves_with_one_write_when_its_first_sender_flushes() {
    let (outbox, mut far, writes) = counting(64 * 1024);
    let writes_now = || writes.load(std::sync::atomic::Ordering::Relaxed);
    // The first frame of a burst makes its sender owe the flush; the
    // others ride along.
    assert_eq!(outbox.push(frame(0, 10), When::Later).unwrap(), Owed::Flush);
    for i in 1..20u8 {
        assert_eq!(
            outbox.push(frame(i, 10), When::Later).unwrap(),
            Owed::Nothing
        );
    }
    assert_eq!(writes_now(), 0, "nothing written before the flush");
    outbox.flush();
    assert_eq!(writes_now(), 1, "the burst in one write");
    let frames = read_frames(&mut far, 20).await;
    assert!(
        frames
            .iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 10])
    );
    // A frame sent now takes the queue ahead of it along.
    let _ = outbox.push(frame(1, 10), When::Later).unwrap();
    let _ = outbox.push(frame(2, 10), When::Now).unwrap();
    assert_eq!(writes_now(), 2);
    assert_eq!(
        read_frames(&mut far, 2).await,
        vec![vec![1; 10], vec![2; 10]]
    );
}

#[tokio::test]
async fn control_owed_for_later_leaves_with_the_flush() {
    let (outbox, mut far, writes) = counting(1024);
    let pong = Control {
        pong: true,
        ..Control::default()
    };
    outbox.signal(pong, When::Later);
    assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Nothing but control is owed: the flush still writes it.
    outbox.flush();
    assert_eq!(read_frames(&mut far, 1).await, vec![vec![8]]);
}

#[tokio::test]
async fn a_long_burst_leaves_in_batches_without_waiting_for_the_flush() {
    let (outbox, mut far, writes) = counting(64 * 1024);
    for i in 0..(BATCH * 2 + 5) {
        let _ = outbox.push(frame(i as u8, 10), When::Later).unwrap();
    }
    assert_eq!(writes.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert_eq!(
        outbox.queued_bytes(),
        5 * 14,
        "the tail waits for the flush"
    );
    outbox.flush();
    assert_eq!(
        read_frames(&mut far, BATCH * 2 + 5).await.len(),
        BATCH * 2 + 5
    );
}

#[tokio::test]
async fn a_full_socket_is_left_to_the_writer_task() {
    // Room for about one frame: the first write fills it.
    let (outbox, mut far, writes) = counting(120);
    let outbox = Arc::new(outbox);
    let writer = {
        let outbox = Arc::clone(&outbox);
        tokio::spawn(async move { outbox.run_writer().await })
    };
    tokio::task::yield_now().await;
    for i in 0..10u8 {
        let _ = outbox.push(frame(i, 100), When::Now).unwrap();
    }
    // Senders stopped trying once the socket was full: a handful of
    // writes, not one per frame per attempt.
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(before <= 3, "{before} writes");
    // The writer task finishes the job as the reader makes room.
    let frames = read_frames(&mut far, 10).await;
    assert!(
        frames
            .iter()
            .enumerate()
            .all(|(i, f)| f == &vec![i as u8; 100])
    );
    outbox.close();
    writer.await.unwrap().unwrap();
}
