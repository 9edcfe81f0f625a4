//! `raw_spin_shm`: the physical floor. Two processes map the same pages
//! and spin on a counter in a cache line of their own: the client writes a
//! 64-byte request into a slot and bumps its counter; the server, spinning
//! on that counter, copies the request into an answer slot and bumps its
//! own. No system call at all on the way: what is left is the cache-line
//! transfer between the cores (and the copies).
//!
//! Two rings of [`SLOTS`] 64-byte slots, one per direction. The client
//! never has more than [`SLOTS`] requests in flight and the server answers
//! in order, so a slot is reused only after its answer was read: no
//! consumer index is needed. The server spins only while requests come:
//! told to rest after each batch, it sleeps on a futex until the client's
//! next batch wakes it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{SMALL_TEXT, Unsupported};
use crate::procs::{self, ChildProcess};

const SLOTS: usize = 64;
const SLOT: usize = 64;
/// Counters, each on its own pair of cache lines (adjacent-line prefetch).
const REQUESTS_SENT: usize = 0;
const ANSWERS_SENT: usize = 128;
/// 1 while the client rests (between batches), else 0; a futex word.
const RESTING: usize = 256;
const REQUEST_RING: usize = 4096;
const ANSWER_RING: usize = REQUEST_RING + SLOTS * SLOT;
const SIZE: usize = ANSWER_RING + SLOTS * SLOT;
/// A few microseconds of pausing before a spinner starts yielding its CPU:
/// on an idle machine an answer comes long before; on a busy one the peer
/// may share this CPU, and spinning longer only delays it.
const SPINS_BEFORE_YIELD: u32 = 100;

/// The shared pages, mapped.
struct Shared {
    base: NonNull<u8>,
    _file: File,
}

impl Shared {
    fn map(file: File) -> Result<Shared> {
        // SAFETY: a fresh shared mapping of a file at least SIZE bytes long
        // (the server sized it before printing its path).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast()).context("mmap gave a null pointer")?;
        Ok(Shared { base, _file: file })
    }

    fn counter(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: the offsets are constants inside the mapping, 8-aligned
        // (the mapping is page-aligned).
        unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU64>() }
    }

    fn resting(&self) -> &AtomicU32 {
        // SAFETY: as for `counter`, 4-aligned.
        unsafe { &*self.base.as_ptr().add(RESTING).cast::<AtomicU32>() }
    }

    fn slot(&self, ring: usize, index: u64) -> *mut u8 {
        // SAFETY: index % SLOTS keeps the slot inside its ring, inside the mapping.
        unsafe {
            self.base
                .as_ptr()
                .add(ring + (index as usize % SLOTS) * SLOT)
        }
    }

    fn put(&self, ring: usize, index: u64, bytes: &[u8; SLOT]) {
        // SAFETY: a whole slot inside the mapping; the other side reads it
        // only after the counter's Release store publishes it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.slot(ring, index), SLOT) }
    }

    fn get(&self, ring: usize, index: u64, out: &mut [u8; SLOT]) {
        // SAFETY: as for `put`; read after the counter's Acquire load.
        unsafe { std::ptr::copy_nonoverlapping(self.slot(ring, index), out.as_mut_ptr(), SLOT) }
    }

    /// Spins until the counter at `offset` passes `index`.
    fn wait_past(&self, offset: usize, index: u64) {
        let mut spins = 0u32;
        while self.counter(offset).load(Ordering::Acquire) <= index {
            relax(&mut spins);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), SIZE) };
    }
}

fn shm_path() -> PathBuf {
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("sbbench-{}-spin", std::process::id()))
}

fn open(path: &Path, create: bool) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(create)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if create {
        file.set_len(SIZE as u64)?;
    }
    Ok(file)
}

/// Server: creates the shared pages, prints their path, answers requests
/// in order until the harness closes stdin.
pub fn serve() -> Result<()> {
    let path = shm_path();
    let _ = std::fs::remove_file(&path);
    let shared = Shared::map(open(&path, true)?)?;
    let cleanup = path.clone();
    procs::exit_when_stdin_closes(move || {
        let _ = std::fs::remove_file(cleanup);
    });
    // Resting until the first batch: the other systems' warm-ups come first.
    shared.resting().store(1, Ordering::Release);
    println!("{}", path.display());
    let mut slot = [0; SLOT];
    let mut next = 0u64;
    let mut spins = 0;
    loop {
        if shared.counter(REQUESTS_SENT).load(Ordering::Acquire) > next {
            shared.get(REQUEST_RING, next, &mut slot);
            shared.put(ANSWER_RING, next, &slot);
            next += 1;
            shared.counter(ANSWERS_SENT).store(next, Ordering::Release);
            spins = 0;
        } else if shared.resting().load(Ordering::Acquire) == 1 {
            futex_wait(shared.resting(), 1);
        } else {
            relax(&mut spins);
        }
    }
}

/// Sleeps while `word` holds `expected` (or until a spurious wake-up).
#[cfg(target_os = "linux")]
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a live, aligned word of a shared mapping; no
    // timeout. Not FUTEX_PRIVATE: the waker is another process.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// Wakes every thread sleeping on `word`.
#[cfg(target_os = "linux")]
fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a live, aligned word of a shared mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Elsewhere, no futex: a nap, looked at again every millisecond.
#[cfg(not(target_os = "linux"))]
fn futex_wait(word: &AtomicU32, expected: u32) {
    if word.load(Ordering::Acquire) == expected {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(not(target_os = "linux"))]
fn futex_wake(_: &AtomicU32) {}

/// One turn of a spin-wait: a pause, and after [`SPINS_BEFORE_YIELD`] of
/// them a `sched_yield` each time, so that on a loaded machine a spinner
/// sharing a CPU with its peer hands it over instead of burning its slice.
pub(super) fn relax(spins: &mut u32) {
    *spins += 1;
    if *spins < SPINS_BEFORE_YIELD {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// Client session.
pub struct Client {
    server: ChildProcess,
    shared: Shared,
    /// Requests sent so far (the server has answered all of them between
    /// batches).
    sent: u64,
    request: [u8; SLOT],
}

impl Client {
    /// Starts the server and maps its pages.
    pub fn open() -> Result<Client> {
        let mut server = ChildProcess::spawn_self("raw_spin_shm", &[])?;
        let path = PathBuf::from(server.next_line()?);
        let shared = Shared::map(open(&path, false)?)?;
        let request = SMALL_TEXT
            .as_bytes()
            .try_into()
            .context("64-byte request")?;
        Ok(Client {
            server,
            shared,
            sent: 0,
            request,
        })
    }

    /// Wakes the server if it rests, before a batch is timed.
    fn resume(&self) {
        if self.shared.resting().swap(0, Ordering::AcqRel) == 1 {
            futex_wake(self.shared.resting());
        }
    }

    fn send(&mut self) {
        self.shared.put(REQUEST_RING, self.sent, &self.request);
        self.sent += 1;
        self.shared
            .counter(REQUESTS_SENT)
            .store(self.sent, Ordering::Release);
    }

    fn check(&self, answer: &[u8; SLOT]) -> Result<()> {
        if answer != &self.request {
            bail!("wrong echo answer");
        }
        Ok(())
    }
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rest(&mut self) -> Result<()> {
        self.shared.resting().store(1, Ordering::Release);
        Ok(())
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.resume();
        let mut samples = Vec::with_capacity(count);
        let mut answer = [0; SLOT];
        for _ in 0..count {
            let start = Instant::now();
            let index = self.sent;
            self.send();
            self.shared.wait_past(ANSWERS_SENT, index);
            self.shared.get(ANSWER_RING, index, &mut answer);
            samples.push(start.elapsed());
        }
        self.check(&answer)?;
        Ok(samples)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        self.resume();
        let depth = depth.min(SLOTS) as u64;
        let start = Instant::now();
        let first = self.sent;
        let end = first + count as u64;
        let mut answer = [0; SLOT];
        let mut done = first;
        while done < end {
            while self.sent < end && self.sent - done < depth {
                self.send();
            }
            self.shared.wait_past(ANSWERS_SENT, done);
            let answered = self
                .shared
                .counter(ANSWERS_SENT)
                .load(Ordering::Acquire)
                .min(end);
            while done < answered {
                self.shared.get(ANSWER_RING, done, &mut answer);
                self.check(&answer)?;
                done += 1;
            }
        }
        Ok(start.elapsed())
    }

    fn bulk(&mut self, _payload: &[u8], _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("a latency floor: rtt and pipelined only".into()).into())
    }

    fn connect(&mut self, _count: usize) -> Result<Vec<Duration>> {
        Err(Unsupported("a latency floor: rtt and pipelined only".into()).into())
    }
}
