//! A single-producer, single-consumer byte ring in a [`SharedRegion`]: one
//! direction of a connection's byte stream, written by one process and read
//! by the other.
//!
//! Layout: the region starts with a header page (a magic word, the
//! capacity, then for each direction a control block whose words sit on
//! cache lines of their own: the two positions, the reader's `parked` flag
//! and the CPU it last waited on), followed by the two rings' data, each
//! `capacity` bytes (a power of two). A ring is a pair of positions that
//! only grow: `write` (bytes ever written, stored by the writer) and `read`
//! (bytes ever consumed, stored by the reader). The bytes between them are
//! at `position % capacity`.
//!
//! Everything in the region is input from the peer. Each side keeps its own
//! position in its own memory and never reads it back from the region; the
//! peer's position is loaded once per operation and checked (it may only
//! grow, and never by more than the capacity allows) before any byte is
//! copied, and a bad one is reported as [`Corrupt`]. Copies go through the
//! region's bounds-checked accessors, so no value the peer writes can make
//! this side touch memory outside the region.
//!
//! Waking a parked reader: the reader sets its `parked` word, then looks at
//! the ring once more; the writer publishes its position, then looks at
//! `parked`. Both with sequentially consistent ordering, so at least one of
//! them sees the other: either the reader finds the bytes, or the writer
//! finds the flag and rings the doorbell (a byte on the socket, see
//! `ring_link`).

use std::io;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use super::{Corrupted, SharedRegion};

/// Identifies a ring region (and its layout version) in its first word.
const MAGIC: u64 = u64::from_le_bytes(*b"SBRING01");
/// The header page: magic, capacity, and the two control blocks.
pub(crate) const HEADER_LEN: usize = 4096;
const MAGIC_AT: usize = 0;
const CAPACITY_AT: usize = 8;
/// Where direction `d`'s control block starts, and its words within it,
/// each on its own pair of cache lines (adjacent-line prefetch).
const CONTROL_AT: [usize; 2] = [1024, 2048];
const WRITE_AT: usize = 0;
const READ_AT: usize = 128;
const PARKED_AT: usize = 256;
/// The CPU the reader of this direction last waited on, plus one (zero:
/// not known). Advisory: read only to compare with our own CPU.
const CPU_AT: usize = 384;

/// One direction of the connection: client to server, or server to client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToServer = 0,
    ToClient = 1,
}

impl Direction {
    /// The other direction of the same connection.
    pub(crate) fn opposite(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }
}

/// The peer wrote something into the ring that no correct peer writes.
#[derive(Debug)]
pub(crate) struct Corrupt(pub(crate) String);

impl From<Corrupt> for io::Error {
    fn from(corrupt: Corrupt) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Corrupted(format!(
                "the peer corrupted the shared-memory ring: {}",
                corrupt.0
            )),
        )
    }
}

/// The size of a region holding both directions of `capacity` bytes.
pub(crate) fn region_len(capacity: u32) -> usize {
    HEADER_LEN + 2 * capacity as usize
}

/// Checks a capacity asked for by the peer (or by us).
use super::check_ring_capacity as check_capacity;

/// Writes the header of a fresh (zeroed) region.
pub(crate) fn initialize(region: &SharedRegion, capacity: u32) -> io::Result<()> {
    check_capacity(capacity).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    region.write(CAPACITY_AT, &capacity.to_le_bytes())?;
    region.write(MAGIC_AT, &MAGIC.to_le_bytes())?;
    Ok(())
}

/// Checks the header of a region the peer made.
pub(crate) fn check_header(region: &SharedRegion, capacity: u32) -> Result<(), Corrupt> {
    let mut magic = [0; 8];
    let mut theirs = [0; 4];
    region
        .read(MAGIC_AT, &mut magic)
        .and_then(|()| region.read(CAPACITY_AT, &mut theirs))
        .map_err(|e| Corrupt(e.to_string()))?;
    if u64::from_le_bytes(magic) != MAGIC {
        return Err(Corrupt(
            "the region does not start with the ring's magic word".into(),
        ));
    }
    if u32::from_le_bytes(theirs) != capacity {
        return Err(Corrupt(format!(
            "the region's header says capacity {}, the handshake {capacity}",
            u32::from_le_bytes(theirs)
        )));
    }
    Ok(())
}

/// The two readers' CPU words: ours, which we publish while we wait, and
/// the peer reader's, which tells whether the peer waits on our CPU (see
/// `idle`). A peer can write anything there; the worst it gets is that we
/// move to another CPU now and then, or never.
#[derive(Debug)]
pub(crate) struct CpuWords {
    region: Arc<SharedRegion>,
    ours: usize,
    theirs: usize,
    /// This side moves when it shares a CPU with the peer (the client;
    /// if both did, they would move together).
    leaves: bool,
}

impl CpuWords {
    /// The words of a side that reads `incoming`; `leaves` as on the field.
    pub(crate) fn new(
        region: Arc<SharedRegion>,
        incoming: Direction,
        leaves: bool,
    ) -> io::Result<CpuWords> {
        let words = CpuWords {
            ours: CONTROL_AT[incoming as usize] + CPU_AT,
            theirs: CONTROL_AT[incoming.opposite() as usize] + CPU_AT,
            region,
            leaves,
        };
        for at in [words.ours, words.theirs] {
            words.region.atomic_u32(at).ok_or_else(bad_layout)?;
        }
        Ok(words)
    }

    fn word(&self, at: usize) -> &AtomicU32 {
        self.region
            .atomic_u32(at)
            .expect("checked in CpuWords::new")
    }

    /// Says that this side waits on `cpu`.
    pub(crate) fn publish(&self, cpu: u32) {
        self.word(self.ours)
            .store(cpu.saturating_add(1), Ordering::Relaxed);
    }

    /// True if this side is the one that moves and the peer's reader said
    /// it waits on `cpu`.
    pub(crate) fn peer_waits_on(&self, cpu: u32) -> bool {
        self.leaves && self.word(self.theirs).load(Ordering::Relaxed) == cpu.saturating_add(1)
    }
}

/// What both ends of one direction share: where its words and bytes are.
struct Ring {
    region: Arc<SharedRegion>,
    control: usize,
    data: usize,
    capacity: u64,
}

impl Ring {
    fn new(region: Arc<SharedRegion>, capacity: u32, direction: Direction) -> io::Result<Ring> {
        check_capacity(capacity).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if region.len() != region_len(capacity) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the region's size does not match the ring capacity",
            ));
        }
        let ring = Ring {
            control: CONTROL_AT[direction as usize],
            data: HEADER_LEN + direction as usize * capacity as usize,
            capacity: u64::from(capacity),
            region,
        };
        // Resolve every word once, so the accessors below cannot fail.
        for at in [WRITE_AT, READ_AT] {
            ring.region
                .atomic_u64(ring.control + at)
                .ok_or_else(bad_layout)?;
        }
        ring.region
            .atomic_u32(ring.control + PARKED_AT)
            .ok_or_else(bad_layout)?;
        Ok(ring)
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        self.region
            .atomic_u64(self.control + at)
            .expect("checked in Ring::new")
    }

    fn parked(&self) -> &AtomicU32 {
        self.region
            .atomic_u32(self.control + PARKED_AT)
            .expect("checked in Ring::new")
    }

    /// `(offset, len)` of the up to two pieces of the ring that hold `len`
    /// bytes from `position` on.
    fn pieces(&self, position: u64, len: usize) -> [(usize, usize); 2] {
        let start = (position % self.capacity) as usize;
        let first = len.min(self.capacity as usize - start);
        [(self.data + start, first), (self.data, len - first)]
    }
}

fn bad_layout() -> io::Error {
    io::Error::other("ring control words outside the region")
}

/// The writing end of one direction.
pub(crate) struct RingWriter {
    ring: Ring,
    /// Bytes written so far: ours, kept here, never read back.
    written: u64,
    /// The reader's position as last seen (it only grows).
    read_seen: u64,
}

impl RingWriter {
    pub(crate) fn new(
        region: Arc<SharedRegion>,
        capacity: u32,
        direction: Direction,
    ) -> io::Result<Self> {
        Ok(RingWriter {
            ring: Ring::new(region, capacity, direction)?,
            written: 0,
            read_seen: 0,
        })
    }

    /// Bytes that can be written now, after checking the reader's position.
    fn free(&mut self) -> Result<usize, Corrupt> {
        let read = self.ring.word(READ_AT).load(Ordering::Acquire);
        if read < self.read_seen || read > self.written {
            return Err(Corrupt(format!(
                "the reader's position {read} is outside {}..={}",
                self.read_seen, self.written
            )));
        }
        self.read_seen = read;
        Ok((self.ring.capacity - (self.written - read)) as usize)
    }

    /// Copies as much of `bytes` as fits and publishes it; 0 when full.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<usize, Corrupt> {
        let mut free = (self.ring.capacity - (self.written - self.read_seen)) as usize;
        if free < bytes.len() {
            free = self.free()?;
        }
        let len = bytes.len().min(free);
        if len == 0 {
            return Ok(0);
        }
        let mut from = 0;
        for (offset, piece) in self.ring.pieces(self.written, len) {
            self.ring
                .region
                .write(offset, &bytes[from..from + piece])
                .map_err(|e| Corrupt(e.to_string()))?;
            from += piece;
        }
        self.written += len as u64;
        self.ring
            .word(WRITE_AT)
            .store(self.written, Ordering::Release);
        Ok(len)
    }

    /// True if the reader parked and has not been woken since: the caller
    /// rings the doorbell. Clears the flag, so one park costs one wake-up.
    pub(crate) fn take_parked_reader(&self) -> bool {
        // Orders our position's store before the flag's load (see the
        // module doc): the reader does the mirror image.
        fence(Ordering::SeqCst);
        let parked = self.ring.parked();
        parked.load(Ordering::Relaxed) != 0 && parked.swap(0, Ordering::AcqRel) != 0
    }

    /// True when no byte fits until the reader consumes some.
    pub(crate) fn is_full(&mut self) -> Result<bool, Corrupt> {
        Ok(self.free()? == 0)
    }

    /// True when everything written was consumed.
    #[cfg(test)]
    pub(crate) fn is_empty(&mut self) -> Result<bool, Corrupt> {
        Ok(self.free()? == self.ring.capacity as usize)
    }
}

/// The reading end of one direction.
pub(crate) struct RingReader {
    ring: Ring,
    /// Bytes consumed so far: ours, never read back.
    consumed: u64,
    /// The writer's position as last seen (it only grows).
    written_seen: u64,
}

impl RingReader {
    pub(crate) fn new(
        region: Arc<SharedRegion>,
        capacity: u32,
        direction: Direction,
    ) -> io::Result<Self> {
        Ok(RingReader {
            ring: Ring::new(region, capacity, direction)?,
            consumed: 0,
            written_seen: 0,
        })
    }

    /// Bytes ready to read, after checking the writer's position.
    pub(crate) fn available(&mut self) -> Result<usize, Corrupt> {
        if self.written_seen > self.consumed {
            return Ok((self.written_seen - self.consumed) as usize);
        }
        let written = self.ring.word(WRITE_AT).load(Ordering::Acquire);
        if written < self.written_seen || written - self.consumed > self.ring.capacity {
            return Err(Corrupt(format!(
                "the writer's position {written} is outside {}..={}",
                self.written_seen,
                self.consumed + self.ring.capacity
            )));
        }
        self.written_seen = written;
        Ok((written - self.consumed) as usize)
    }

    /// Copies up to `out.len()` ready bytes into `out` and frees their room;
    /// returns how many (0: none ready). `out` may be uninitialized: on
    /// return, its first that many bytes are.
    pub(crate) fn read(&mut self, out: &mut [MaybeUninit<u8>]) -> Result<usize, Corrupt> {
        let len = out.len().min(self.available()?);
        if len == 0 {
            return Ok(0);
        }
        let mut to = 0;
        for (offset, piece) in self.ring.pieces(self.consumed, len) {
            let src = self
                .ring
                .region
                .range(offset, piece)
                .ok_or_else(|| Corrupt("a piece outside the region".into()))?;
            // SAFETY: `src..src+piece` is inside the mapping (checked by
            // `range`) and `out[to..to+piece]` inside `out`; they cannot
            // overlap (one is shared memory, the other ours). The writer
            // published these bytes before the position we loaded with
            // Acquire, and will not touch them until we publish ours.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), out[to..].as_mut_ptr().cast(), piece);
            }
            to += piece;
        }
        self.consumed += len as u64;
        self.ring
            .word(READ_AT)
            .store(self.consumed, Ordering::Release);
        Ok(len)
    }

    /// Announces that this reader is about to sleep until the doorbell
    /// rings. The caller must look at [`available`](Self::available) once
    /// more afterwards, and [`unpark`](Self::unpark) if it finds bytes.
    pub(crate) fn park(&self) {
        self.ring.parked().store(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Takes back [`park`](Self::park).
    pub(crate) fn unpark(&self) {
        self.ring.parked().store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u32 = 4096;

    fn pair() -> (Arc<SharedRegion>, RingWriter, RingReader) {
        let region = Arc::new(SharedRegion::create("sb-ring-test", region_len(CAP)).unwrap());
        initialize(&region, CAP).unwrap();
        let writer = RingWriter::new(Arc::clone(&region), CAP, Direction::ToServer).unwrap();
        let reader = RingReader::new(Arc::clone(&region), CAP, Direction::ToServer).unwrap();
        (region, writer, reader)
    }

    #[test]
    fn each_side_sees_where_the_other_reader_waits_and_only_the_client_acts_on_it() {
        let (region, _, _) = pair();
        let client = CpuWords::new(Arc::clone(&region), Direction::ToClient, true).unwrap();
        let server = CpuWords::new(Arc::clone(&region), Direction::ToServer, false).unwrap();
        assert!(!client.peer_waits_on(0), "zero: not known, not CPU 0");
        server.publish(3);
        assert!(client.peer_waits_on(3));
        assert!(!client.peer_waits_on(1));
        client.publish(3);
        assert!(!server.peer_waits_on(3), "the server never moves");
        server.publish(u32::MAX);
        assert!(
            client.peer_waits_on(u32::MAX),
            "saturates, does not wrap to unknown"
        );
        // What a peer may scribble there only changes the answer.
        region
            .atomic_u32(CONTROL_AT[0] + CPU_AT)
            .unwrap()
            .store(77, Ordering::Relaxed);
        assert!(client.peer_waits_on(76));
    }

    fn read_all(reader: &mut RingReader, len: usize) -> Vec<u8> {
        let mut out = vec![MaybeUninit::new(0); len];
        let got = reader.read(&mut out).unwrap();
        out[..got]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect()
    }

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() {
        let (_region, mut writer, mut reader) = pair();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        for round in 0..50u32 {
            let chunk: Vec<u8> = (0..1000 + round).map(|i| (i * 7 + round) as u8).collect();
            assert_eq!(writer.write(&chunk).unwrap(), chunk.len());
            expected.extend_from_slice(&chunk);
            got.extend(read_all(&mut reader, 700));
            got.extend(read_all(&mut reader, 10_000));
        }
        assert_eq!(got, expected);
        assert!(writer.is_empty().unwrap());
    }

    #[test]
    fn a_full_ring_takes_nothing_until_read() {
        let (_region, mut writer, mut reader) = pair();
        assert_eq!(writer.write(&[1; 5000]).unwrap(), CAP as usize);
        assert_eq!(writer.write(&[2; 10]).unwrap(), 0);
        assert_eq!(read_all(&mut reader, 100).len(), 100);
        assert_eq!(writer.write(&[2; 1000]).unwrap(), 100);
    }

    #[test]
    fn the_directions_are_separate() {
        let (region, mut writer, _reader) = pair();
        let mut other = RingReader::new(Arc::clone(&region), CAP, Direction::ToClient).unwrap();
        writer.write(b"hello").unwrap();
        assert_eq!(other.available().unwrap(), 0);
    }

    #[test]
    fn a_writer_position_past_the_capacity_is_corruption() {
        let (region, _writer, mut reader) = pair();
        let write = region.atomic_u64(CONTROL_AT[0] + WRITE_AT).unwrap();
        write.store(u64::from(CAP) + 1, Ordering::Release);
        let error = io::Error::from(reader.available().unwrap_err());
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("corrupted"), "{error}");
    }

    #[test]
    fn a_writer_position_going_back_is_corruption() {
        let (region, mut writer, mut reader) = pair();
        writer.write(&[1; 100]).unwrap();
        assert_eq!(read_all(&mut reader, 50).len(), 50);
        let write = region.atomic_u64(CONTROL_AT[0] + WRITE_AT).unwrap();
        write.store(20, Ordering::Release);
        // Still 50 known-good bytes; then the position is checked.
        assert_eq!(read_all(&mut reader, 50).len(), 50);
        assert!(reader.available().is_err());
        write.store(u64::MAX, Ordering::Release);
        assert!(reader.available().is_err());
    }

    #[test]
    fn a_reader_position_out_of_range_is_corruption() {
        let (region, mut writer, _reader) = pair();
        writer.write(&[1; 100]).unwrap();
        let read = region.atomic_u64(CONTROL_AT[0] + READ_AT).unwrap();
        read.store(101, Ordering::Release);
        assert!(writer.write(&[1; CAP as usize]).is_err());
        read.store(u64::MAX, Ordering::Release);
        assert!(writer.is_empty().is_err());
    }

    #[test]
    fn a_parked_reader_is_seen_once() {
        let (_region, writer, reader) = pair();
        assert!(!writer.take_parked_reader());
        reader.park();
        assert!(writer.take_parked_reader());
        assert!(!writer.take_parked_reader());
        reader.park();
        reader.unpark();
        assert!(!writer.take_parked_reader());
    }

    #[test]
    fn headers_and_capacities_are_checked() {
        let (region, _writer, _reader) = pair();
        assert!(check_header(&region, CAP).is_ok());
        assert!(check_header(&region, CAP * 2).is_err());
        region.write(MAGIC_AT, b"garbage!").unwrap();
        assert!(check_header(&region, CAP).is_err());
        for bad in [0, 1000, 4095, 2048, 32 * 1024 * 1024] {
            assert!(check_capacity(bad).is_err(), "{bad}");
        }
        assert!(RingReader::new(region, CAP * 2, Direction::ToServer).is_err());
    }
}
