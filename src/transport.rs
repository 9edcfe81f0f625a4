//! Length-prefixed frames over a connection's byte stream (a `Link`).
//!
//! A frame is a 4-byte little-endian length followed by that many bytes. The
//! reader checks the length against the connection's limit *before* reading
//! the body, so a hostile length never allocates. Batching many frames into
//! one write is the peer's job (its outbox).

use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

use crate::error::{Error, Result};
use crate::shm::Corrupted;

/// Bytes in a frame's length prefix.
pub const HEADER_LEN: usize = 4;

/// An outgoing frame, length prefix included, built in place and sealed
/// with [`seal`].
///
/// Its bytes are almost always one buffer. A large byte payload held as
/// [`Bytes`](crate::Bytes) rides along by reference instead of being copied
/// in, and the outbox writes the pieces with one vectored write.
#[derive(Debug, Default)]
pub struct OutFrame {
    head: Vec<u8>,
    /// What follows `head` on the wire, in order. Empty (and unallocated)
    /// unless a payload is shared.
    rest: Vec<Chunk>,
}

#[derive(Debug)]
enum Chunk {
    Shared(::bytes::Bytes),
    Owned(Vec<u8>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Shared(bytes) => bytes,
            Chunk::Owned(bytes) => bytes,
        }
    }
}

impl OutFrame {
    /// An empty frame with room for `capacity` bytes after the prefix.
    pub fn with_capacity(capacity: usize) -> OutFrame {
        OutFrame::reusing(Vec::with_capacity(HEADER_LEN + capacity))
    }

    /// An empty frame built in `buffer`'s memory (emptied first).
    pub fn reusing(mut buffer: Vec<u8>) -> OutFrame {
        buffer.clear();
        if buffer.capacity() == 0 {
            // Room for a typical small message, so encoding it never
            // reallocates.
            buffer.reserve(256);
        }
        buffer.extend_from_slice(&[0; HEADER_LEN]);
        OutFrame {
            head: buffer,
            rest: Vec::new(),
        }
    }

    /// Sealed frames already laid out back to back in one buffer.
    pub fn from_sealed(bytes: Vec<u8>) -> OutFrame {
        OutFrame {
            head: bytes,
            rest: Vec::new(),
        }
    }

    /// Bytes on the wire, prefix included.
    pub fn len(&self) -> usize {
        self.head.len() + self.rest.iter().map(|c| c.bytes().len()).sum::<usize>()
    }

    /// True when all bytes are in one buffer ([`OutFrame::first`]).
    pub fn is_contiguous(&self) -> bool {
        self.rest.is_empty()
    }

    /// The first buffer: the whole frame when [`is_contiguous`](Self::is_contiguous).
    pub fn first(&self) -> &[u8] {
        &self.head
    }

    /// Appends bytes.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.tail().extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.tail().push(byte);
    }

    /// Appends `bytes` by reference, without copying them.
    pub fn push_shared(&mut self, bytes: ::bytes::Bytes) {
        self.rest.push(Chunk::Shared(bytes));
    }

    #[inline]
    fn tail(&mut self) -> &mut Vec<u8> {
        if self.rest.is_empty() {
            return &mut self.head;
        }
        if matches!(self.rest.last(), Some(Chunk::Shared(_))) {
            self.rest.push(Chunk::Owned(Vec::new()));
        }
        match self.rest.last_mut() {
            Some(Chunk::Owned(tail)) => tail,
            _ => &mut self.head,
        }
    }

    /// The bytes from offset `skip` on, as slices for a vectored write.
    pub fn slices_from(&self, mut skip: usize) -> Vec<std::io::IoSlice<'_>> {
        let mut slices = Vec::with_capacity(1 + self.rest.len());
        for bytes in std::iter::once(&self.head[..]).chain(self.rest.iter().map(Chunk::bytes)) {
            if skip >= bytes.len() {
                skip -= bytes.len();
            } else {
                slices.push(std::io::IoSlice::new(&bytes[skip..]));
                skip = 0;
            }
        }
        slices
    }

    /// The first buffer's memory, for reuse.
    pub fn into_buffer(self) -> Vec<u8> {
        self.head
    }

    /// All bytes in one buffer (copying shared payloads in).
    pub fn into_vec(mut self) -> Vec<u8> {
        for chunk in std::mem::take(&mut self.rest) {
            self.head.extend_from_slice(chunk.bytes());
        }
        self.head
    }
}

impl std::io::Write for OutFrame {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Room left after a received body, so the response built in its memory
/// (usually about as long, plus the length prefix) needs no reallocation.
const SMALL_SLACK: usize = 64;

/// Frames at least this large are worth keeping for reuse: a fresh large
/// buffer costs a page fault per 4 KiB touched, far more than the copy into
/// it, and the allocator tends to hand such memory back to the OS.
pub const RECYCLE_MIN: usize = 64 * 1024;

/// Small buffers are kept for reuse up to this capacity...
const SMALL_MAX: usize = 2048;
/// ...and this many of them per connection (64 KiB at most).
const SMALL_KEEP: usize = 32;
/// Room a fresh small buffer starts with, so encoding a typical small
/// message never reallocates.
const SMALL_START: usize = 256;

/// Frame memory kept for reuse by one connection, passed between the code
/// that frees frames and the code that needs the next one: one spare large
/// buffer, and a few small ones. Connections that never move a large frame
/// never hold one; idle connections hold as many small ones as they had
/// messages in flight at once.
///
/// Why small ones too: a frame is often freed on another thread than the
/// one that allocated it (a response read by the connection's reader on a
/// runtime worker, decoded by a caller on the main thread), which costs the
/// allocator a lock shared with the allocating thread; a reused buffer
/// costs an uncontended one.
#[derive(Clone, Default, Debug)]
pub struct Spare(Arc<SpareSlot>);

#[derive(Default, Debug)]
struct SpareSlot {
    /// A hint read without the lock, so the common empty case (connections
    /// of small messages) never locks.
    full: AtomicBool,
    buffer: Mutex<Option<Vec<u8>>>,
    small: Mutex<Vec<Vec<u8>>>,
}

impl Spare {
    fn slot(&self) -> MutexGuard<'_, Option<Vec<u8>>> {
        lock(&self.0.buffer)
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

    /// An empty small buffer with room for `capacity` bytes: a kept one if
    /// there is one, else a fresh one.
    pub fn take_small(&self, capacity: usize) -> Vec<u8> {
        let kept = lock(&self.0.small).pop();
        match kept {
            Some(mut buffer) => {
                buffer.clear();
                buffer.reserve(capacity);
                buffer
            }
            None => Vec::with_capacity(capacity.max(SMALL_START)),
        }
    }

    /// Keeps `buffer` for reuse: a large one if the slot is free, a small
    /// one if fewer than a few are kept.
    pub fn put(&self, buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        if capacity >= RECYCLE_MIN {
            let mut slot = self.slot();
            if slot.is_none() {
                *slot = Some(buffer);
                self.0.full.store(true, Ordering::Relaxed);
            }
        } else if (SMALL_START..=SMALL_MAX).contains(&capacity) {
            let mut small = lock(&self.0.small);
            if small.len() < SMALL_KEEP {
                small.push(buffer);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Buffers only; a panic elsewhere leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A received frame's bytes (without the length prefix). Its memory goes
/// back to its reader's [`Spare`] when the last reference to it is dropped.
#[derive(Debug)]
pub struct Frame(Memory);

#[derive(Debug)]
enum Memory {
    Owned(Recyclable),
    /// Shared with values decoded from it (see [`Frame::share`]).
    Shared(::bytes::Bytes),
}

/// Frame memory that returns to a [`Spare`] when dropped.
#[derive(Debug)]
struct Recyclable {
    bytes: Vec<u8>,
    spare: Option<Spare>,
}

impl AsRef<[u8]> for Recyclable {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Recyclable {
    fn drop(&mut self) {
        if let Some(spare) = &self.spare {
            spare.put(std::mem::take(&mut self.bytes));
        }
    }
}

impl Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Memory::Owned(owned) => &owned.bytes,
            Memory::Shared(shared) => shared,
        }
    }
}

impl Frame {
    /// The memory, for building another frame in, unless it is large (a
    /// large one goes back to its reader's spare when dropped instead) or
    /// shared.
    pub fn into_small_buffer(mut self) -> Option<Vec<u8>> {
        match &mut self.0 {
            Memory::Owned(owned) if owned.bytes.capacity() < RECYCLE_MIN => {
                Some(std::mem::take(&mut owned.bytes))
            }
            _ => None,
        }
    }

    /// The frame as reference-counted memory, so values decoded from it can
    /// keep parts of it without copying. No copy is made here either.
    pub fn share(&mut self) -> ::bytes::Bytes {
        if let Memory::Owned(owned) = &mut self.0 {
            let owned = Recyclable {
                bytes: std::mem::take(&mut owned.bytes),
                spare: owned.spare.take(),
            };
            self.0 = Memory::Shared(::bytes::Bytes::from_owner(owned));
        }
        match &self.0 {
            Memory::Shared(shared) => shared.clone(),
            Memory::Owned(_) => unreachable!("converted above"),
        }
    }
}

impl From<::bytes::Bytes> for Frame {
    /// A frame over memory someone else owns (a body lent from shared
    /// memory), shared from the start.
    fn from(bytes: ::bytes::Bytes) -> Frame {
        Frame(Memory::Shared(bytes))
    }
}

impl From<Vec<u8>> for Frame {
    fn from(bytes: Vec<u8>) -> Frame {
        Frame(Memory::Owned(Recyclable { bytes, spare: None }))
    }
}

/// Fills in the length prefix of a frame, refusing one larger than `max`
/// bytes.
pub fn seal(mut frame: OutFrame, max: u32) -> Result<OutFrame> {
    let len = frame.len() - HEADER_LEN;
    match u32::try_from(len) {
        Ok(len32) if len32 <= max => {
            frame.head[..HEADER_LEN].copy_from_slice(&len32.to_le_bytes());
            Ok(frame)
        }
        _ => Err(Error::FrameTooLarge {
            size: len as u64,
            max,
        }),
    }
}

/// Reads frames from the receiving half of a link.
pub struct FrameReader {
    inner: BufReader<Activity>,
    max: u32,
    spare: Spare,
}

/// The link's receiving half, raising a flag whenever bytes arrive (see
/// [`FrameReader::watch_activity`]).
struct Activity {
    inner: Box<dyn AsyncRead + Send + Unpin>,
    flag: Option<Arc<AtomicBool>>,
}

impl AsyncRead for Activity {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && let Some(flag) = &self.flag
        {
            flag.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl FrameReader {
    /// Reads from `inner`, accepting frames up to `max` bytes.
    pub fn new(inner: Box<dyn AsyncRead + Send + Unpin>, max: u32) -> FrameReader {
        FrameReader {
            // Enough for a burst of small frames per read; large bodies bypass
            // it. Small, because every idle connection holds one.
            inner: BufReader::with_capacity(8 * 1024, Activity { inner, flag: None }),
            max,
            spare: Spare::default(),
        }
    }

    /// Takes frame memory from, and returns it to, `spare` (the
    /// connection's, shared with its outbox) instead of a spare of its own.
    pub fn share_spare(&mut self, spare: Spare) {
        self.spare = spare;
    }

    /// Changes the frame size limit (the handshake runs with a small one).
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }

    /// The frame size limit.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Raises `flag` whenever bytes arrive, even in the middle of a frame:
    /// how a keepalive tells a peer that is slowly sending a huge frame from
    /// one that is gone.
    pub fn watch_activity(&mut self, flag: Arc<AtomicBool>) {
        self.inner.get_mut().flag = Some(flag);
    }

    /// True when a read would have to ask the OS for more bytes.
    pub fn is_drained(&self) -> bool {
        self.inner.buffer().is_empty()
    }

    /// The next frame's body, or `None` when the peer closed the connection
    /// cleanly between frames.
    pub async fn read(&mut self) -> Result<Option<Frame>> {
        // A clean close shows up as EOF before the first header byte.
        if self.inner.fill_buf().await.map_err(read_error)?.is_empty() {
            return Ok(None);
        }
        let buffered = self.inner.buffer();
        if buffered.len() >= HEADER_LEN {
            let len = self.check_len(&buffered[..HEADER_LEN])?;
            if let Some(body) = buffered[HEADER_LEN..].get(..len) {
                // The whole frame is already here, as it usually is for a
                // small one: one copy, no more reads.
                let mut bytes = self.spare.take_small(len + SMALL_SLACK);
                bytes.extend_from_slice(body);
                Pin::new(&mut self.inner).consume(HEADER_LEN + len);
                return Ok(Some(self.frame(bytes)));
            }
        }
        let mut header = [0u8; HEADER_LEN];
        self.inner
            .read_exact(&mut header)
            .await
            .map_err(read_error)?;
        let len = self.check_len(&header)?;
        let mut body = match len >= RECYCLE_MIN {
            true => self
                .spare
                .take(len)
                .unwrap_or_else(|| Vec::with_capacity(len + SMALL_SLACK)),
            false => self.spare.take_small(len + SMALL_SLACK),
        };
        let read = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut body)
            .await
            .map_err(read_error)?;
        if read < len {
            return Err(Error::Disconnected);
        }
        Ok(Some(self.frame(body)))
    }

    /// A received frame in `bytes`, whose memory returns to this reader's
    /// spare when the frame is dropped.
    fn frame(&self, bytes: Vec<u8>) -> Frame {
        Frame(Memory::Owned(Recyclable {
            bytes,
            spare: Some(self.spare.clone()),
        }))
    }

    /// The body length from a header, checked against the limit before
    /// anything is allocated for it.
    fn check_len(&self, header: &[u8]) -> Result<usize> {
        let len = u32::from_le_bytes(header.try_into().expect("a whole header"));
        if len > self.max {
            return Err(Error::FrameTooLarge {
                size: u64::from(len),
                max: self.max,
            });
        }
        Ok(len as usize)
    }
}

/// An end of stream inside a frame is a disconnect; bytes a link found
/// malformed below the frames (a corrupted shared-memory ring) are the
/// peer's protocol error.
fn read_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Disconnected,
        std::io::ErrorKind::InvalidData if e.get_ref().is_some_and(|e| e.is::<Corrupted>()) => {
            Error::Protocol(e.to_string())
        }
        _ => Error::Io(e),
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
mod tests;
