//! Length-prefixed frames over a [`Link`](crate::connector::Link).
//!
//! A frame is a 4-byte little-endian length followed by that many bytes. The
//! reader checks the length against the connection's limit *before* reading
//! the body, so a hostile length never allocates. Batching many frames into
//! one write is the peer's job (its outbox).

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::error::{Error, Result};

/// Bytes in a frame's length prefix.
pub const HEADER_LEN: usize = 4;

/// A buffer for building one outgoing frame: the length prefix is reserved
/// and filled in by [`seal`].
pub fn frame_buffer(capacity: usize) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(HEADER_LEN + capacity);
    buffer.extend_from_slice(&[0; HEADER_LEN]);
    buffer
}

/// Like [`frame_buffer`], building in `buffer` (emptied first) to reuse its
/// memory.
pub fn frame_buffer_in(mut buffer: Vec<u8>) -> Vec<u8> {
    buffer.clear();
    // Room for a typical small message, so encoding it never reallocates.
    buffer.reserve(256);
    buffer.extend_from_slice(&[0; HEADER_LEN]);
    buffer
}

/// Frames at least this large are worth keeping for reuse: a fresh large
/// buffer costs a page fault per 4 KiB touched, far more than the copy into
/// it, and the allocator tends to hand such memory back to the OS.
pub const RECYCLE_MIN: usize = 64 * 1024;

/// One spare large buffer, passed between the code that frees frames and
/// the code that needs the next one. Connections that never move a large
/// frame never hold one.
#[derive(Clone, Default, Debug)]
pub struct Spare(Arc<SpareSlot>);

#[derive(Default, Debug)]
struct SpareSlot {
    /// A hint read without the lock, so the common empty case (connections
    /// of small messages) never locks.
    full: AtomicBool,
    buffer: Mutex<Option<Vec<u8>>>,
}

impl Spare {
    fn slot(&self) -> MutexGuard<'_, Option<Vec<u8>>> {
        self.0
            .buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The spare buffer, emptied, if there is one with at least `capacity`
    /// bytes of room.
    pub fn take(&self, capacity: usize) -> Option<Vec<u8>> {
        if !self.0.full.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = self.slot();
        if slot.as_ref()?.capacity() < capacity {
            return None;
        }
        let mut buffer = slot.take()?;
        self.0.full.store(false, Ordering::Relaxed);
        buffer.clear();
        Some(buffer)
    }

    /// Keeps `buffer` for reuse if it is large and the slot is free.
    pub fn put(&self, buffer: Vec<u8>) {
        if buffer.capacity() >= RECYCLE_MIN {
            let mut slot = self.slot();
            if slot.is_none() {
                *slot = Some(buffer);
                self.0.full.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// A received frame's bytes (without the length prefix). A large one goes
/// back to its reader's [`Spare`] when dropped.
#[derive(Debug)]
pub struct Frame {
    bytes: Vec<u8>,
    spare: Option<Spare>,
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Frame {
    /// The memory, for building another frame in, unless it is large: a
    /// large one goes back to its reader's spare when dropped instead.
    pub fn into_small_buffer(mut self) -> Option<Vec<u8>> {
        (self.bytes.capacity() < RECYCLE_MIN).then(|| std::mem::take(&mut self.bytes))
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame { bytes, spare: None }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        if let Some(spare) = &self.spare {
            spare.put(std::mem::take(&mut self.bytes));
        }
    }
}

/// Fills in the length prefix of a buffer from [`frame_buffer`], refusing a
/// frame larger than `max` bytes.
pub fn seal(mut buf: Vec<u8>, max: u32) -> Result<Vec<u8>> {
    let len = buf.len() - HEADER_LEN;
    match u32::try_from(len) {
        Ok(len32) if len32 <= max => {
            buf[..HEADER_LEN].copy_from_slice(&len32.to_le_bytes());
            Ok(buf)
        }
        _ => Err(Error::FrameTooLarge {
            size: len as u64,
            max,
        }),
    }
}

/// Reads frames from the receiving half of a link.
pub struct FrameReader {
    inner: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    max: u32,
    spare: Spare,
}

impl FrameReader {
    /// Reads from `inner`, accepting frames up to `max` bytes.
    pub fn new(inner: Box<dyn AsyncRead + Send + Unpin>, max: u32) -> FrameReader {
        FrameReader {
            // Enough for a burst of small frames per read; large bodies bypass
            // it. Small, because every idle connection holds one.
            inner: BufReader::with_capacity(8 * 1024, inner),
            max,
            spare: Spare::default(),
        }
    }

    /// Changes the frame size limit (the handshake runs with a small one).
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// True when a read would have to ask the OS for more bytes.
    pub fn is_drained(&self) -> bool {
        self.inner.buffer().is_empty()
    }

    /// The next frame's body, or `None` when the peer closed the connection
    /// cleanly between frames.
    pub async fn read(&mut self) -> Result<Option<Frame>> {
        let mut header = [0u8; HEADER_LEN];
        // A clean close shows up as EOF before the first header byte.
        let first = self.inner.read(&mut header[..1]).await?;
        if first == 0 {
            return Ok(None);
        }
        self.inner
            .read_exact(&mut header[1..])
            .await
            .map_err(eof_is_disconnect)?;
        let len = u32::from_le_bytes(header);
        if len > self.max {
            return Err(Error::FrameTooLarge {
                size: u64::from(len),
                max: self.max,
            });
        }
        let len = len as usize;
        let recycle = len >= RECYCLE_MIN;
        let mut body = match recycle {
            true => self.spare.take(len),
            false => None,
        }
        .unwrap_or_else(|| Vec::with_capacity(len));
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut body)
            .await?;
        if read < len {
            return Err(Error::Disconnected);
        }
        Ok(Some(Frame {
            bytes: body,
            spare: recycle.then(|| self.spare.clone()),
        }))
    }
}

fn eof_is_disconnect(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        Error::Disconnected
    } else {
        Error::Io(e)
    }
}

/// Writes frames to the sending half of a link, one at a time: enough for
/// the handshake. After it, the peer's outbox takes the stream over
/// ([`FrameWriter::into_inner`]) and does the batching.
pub struct FrameWriter {
    inner: Box<dyn AsyncWrite + Send + Unpin>,
}

impl FrameWriter {
    /// Writes to `inner`.
    pub fn new(inner: Box<dyn AsyncWrite + Send + Unpin>) -> FrameWriter {
        FrameWriter { inner }
    }

    /// Writes one sealed frame (from [`seal`]).
    pub async fn send(&mut self, frame: &[u8]) -> Result<()> {
        self.inner.write_all(frame).await?;
        self.inner.flush().await?;
        Ok(())
    }

    /// The stream, for writing frames some other way after the handshake.
    pub fn into_inner(self) -> Box<dyn AsyncWrite + Send + Unpin> {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_frames_return_to_their_spare_and_small_ones_do_not() {
        let spare = Spare::default();
        drop(Frame {
            bytes: vec![1; 100],
            spare: Some(spare.clone()),
        });
        assert!(spare.take(0).is_none(), "small buffers are not kept");
        drop(Frame {
            bytes: vec![1; RECYCLE_MIN],
            spare: Some(spare.clone()),
        });
        assert!(
            spare.take(RECYCLE_MIN + 1).is_none(),
            "too small for the request"
        );
        let reused = spare.take(RECYCLE_MIN).expect("kept");
        assert!(reused.is_empty() && reused.capacity() >= RECYCLE_MIN);
        assert!(spare.take(0).is_none(), "taken once");
    }

    #[test]
    fn a_reused_buffer_starts_a_frame_from_scratch() {
        let buffer = frame_buffer_in(vec![9; 1000]);
        assert_eq!(buffer, [0; HEADER_LEN]);
    }
}
