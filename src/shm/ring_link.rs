//! The ring as a connection's byte stream: the two halves the transport
//! reads frames from and writes frames to, one [`super::ring`] per
//! direction, with the Unix socket the connection was made on kept beside
//! them as the doorbell.
//!
//! Everything above sees a byte stream, as over the socket: frames, their
//! length limit, flow control and every kind of message work unchanged, and
//! a frame larger than the ring simply streams through it in pieces.
//!
//! The socket carries no data any more, only wake-ups: a reader that has
//! spun and yielded in vain ([`super::idle`]) sets its `parked` word and
//! waits for the socket to become readable; a writer that publishes bytes
//! and finds that word set sends one byte. Waiting on the socket (rather
//! than a futex) keeps the wait inside the runtime's event loop, like any
//! other read, and makes a dead peer visible the way it always is: the
//! socket reads end of file. A writer that finds the ring full (a large
//! frame, or a peer that reads slowly) spins and yields the same way, then
//! sleeps on a timer with a growing interval, looking at the socket for a
//! dead peer each time.

use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::idle::{Idle, Step};
use super::ring::{CpuWords, RingReader, RingWriter};
use crate::unix_socket::{Registration, UnixSocket};

/// The connection's socket.
pub(crate) type Socket = Arc<UnixSocket>;

/// A full writer's first and longest sleep between looks.
const FIRST_NAP: Duration = Duration::from_micros(50);
const LONGEST_NAP: Duration = Duration::from_millis(1);

/// The receiving half: bytes out of the peer's ring.
pub(crate) struct RingRead {
    ring: RingReader,
    socket: Socket,
    /// The socket in the event loop, from the first time the reader parks.
    doorbell: Option<Registration>,
    idle: Idle,
    parked: bool,
    /// The socket read end of file: the peer is gone.
    eof: bool,
}

impl RingRead {
    /// `cpus`: where both readers say they wait ([`super::idle`]).
    pub(crate) fn new(
        ring: RingReader,
        socket: Socket,
        spin: Duration,
        cpus: Arc<CpuWords>,
    ) -> RingRead {
        RingRead {
            ring,
            socket,
            doorbell: None,
            idle: Idle::new(spin, Some(cpus)),
            parked: false,
            eof: false,
        }
    }

    /// Waits for the doorbell (or the end of the socket) and clears it.
    fn poll_doorbell(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let doorbell = match &mut self.doorbell {
            Some(doorbell) => doorbell,
            none => none.insert(self.socket.register()?),
        };
        loop {
            let mut guard = ready!(doorbell.poll_read_ready(cx))?;
            match drain(self.socket.get_ref())? {
                Drained::Eof => {
                    self.eof = true;
                    return Poll::Ready(Ok(()));
                }
                Drained::Empty { rang } => {
                    guard.clear_ready();
                    if rang {
                        return Poll::Ready(Ok(()));
                    }
                }
            }
        }
    }
}

enum Drained {
    Eof,
    Empty { rang: bool },
}

/// Reads every wake-up byte waiting on the socket.
fn drain(socket: &UnixStream) -> io::Result<Drained> {
    let mut bytes = [0u8; 64];
    let mut rang = false;
    loop {
        match io::Read::read(&mut &*socket, &mut bytes) {
            Ok(0) => return Ok(Drained::Eof),
            Ok(_) => rang = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::Empty { rang }),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Spins until `until`, or until `ready` says there is something to do.
fn spin_until(until: Instant, mut ready: impl FnMut() -> io::Result<bool>) -> io::Result<()> {
    while !ready()? && Instant::now() < until {
        for _ in 0..16 {
            std::hint::spin_loop();
        }
    }
    Ok(())
}

/// Ends a spin slice that found nothing: lets the OS run a thread waiting
/// for this CPU (the peer, when both share one: spinning then only delays
/// it) and the runtime run the thread's other tasks, then looks again.
fn between_slices<T>(idle: &mut Idle, cx: &mut Context<'_>) -> Poll<T> {
    idle.yield_thread();
    cx.waker().wake_by_ref();
    Poll::Pending
}

impl AsyncRead for RingRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            // SAFETY: `read` writes only initialized bytes into the slice
            // and says how many; exactly those are marked initialized.
            let read = this.ring.read(unsafe { buf.unfilled_mut() })?;
            if read > 0 {
                unsafe { buf.assume_init(read) };
                buf.advance(read);
                if std::mem::take(&mut this.parked) {
                    this.ring.unpark();
                }
                this.idle.reset();
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.idle.next() {
                Step::Spin(until) => {
                    let ring = &mut this.ring;
                    spin_until(until, || Ok(ring.available()? > 0))?;
                    if this.ring.available()? == 0 {
                        return between_slices(&mut this.idle, cx);
                    }
                }
                Step::Yield => return between_slices(&mut this.idle, cx),
                Step::Park if !this.parked => {
                    // Look once more after announcing it (see `ring`).
                    this.ring.park();
                    this.parked = true;
                }
                Step::Park => {
                    ready!(this.poll_doorbell(cx))?;
                    // The writer cleared the flag when it rang: parking
                    // again must set it again.
                    this.parked = false;
                    this.ring.unpark();
                }
            }
        }
    }
}

/// The sending half: bytes into our ring, and the doorbell when the peer's
/// reader sleeps.
pub(crate) struct RingWrite {
    ring: RingWriter,
    socket: Socket,
    idle: Idle,
    nap: Option<Pin<Box<Sleep>>>,
    next_nap: Duration,
}

impl RingWrite {
    /// `cpus`: as for [`RingRead::new`].
    pub(crate) fn new(
        ring: RingWriter,
        socket: Socket,
        spin: Duration,
        cpus: Arc<CpuWords>,
    ) -> RingWrite {
        RingWrite {
            ring,
            socket,
            idle: Idle::new(spin, Some(cpus)),
            nap: None,
            next_nap: FIRST_NAP,
        }
    }

    /// Wakes the peer's reader if it parked: one byte on the socket. A full
    /// socket means wake-ups are already waiting there; a closed one, a
    /// peer that is gone (our reader will see it).
    fn ring_doorbell(&self) -> io::Result<()> {
        if !self.ring.take_parked_reader() {
            return Ok(());
        }
        let byte = 1u8;
        // SAFETY: sends one byte from a live local; MSG_NOSIGNAL turns a
        // closed peer into EPIPE instead of SIGPIPE.
        let sent = unsafe {
            libc::send(
                self.socket.get_ref().as_raw_fd(),
                (&raw const byte).cast(),
                1,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset => {}
                _ => return Err(e),
            }
        }
        Ok(())
    }

    /// Fails if the peer closed the socket: a full ring would never drain.
    fn check_peer(&self) -> io::Result<()> {
        let mut byte = 0u8;
        // SAFETY: peeks at most one byte into a live local.
        let peeked = unsafe {
            libc::recv(
                self.socket.get_ref().as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if peeked == 0 {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the peer closed the connection",
            ));
        }
        Ok(())
    }

    /// Writes with `write` (which returns 0 while the ring is full), waiting
    /// for room the idle way.
    fn poll_room(
        &mut self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(&mut RingWriter) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            let written = write(&mut self.ring)?;
            if written > 0 {
                self.ring_doorbell()?;
                self.idle.reset();
                self.nap = None;
                self.next_nap = FIRST_NAP;
                return Poll::Ready(Ok(written));
            }
            if let Some(nap) = &mut self.nap {
                ready!(nap.as_mut().poll(cx));
                self.nap = None;
                continue;
            }
            match self.idle.next() {
                Step::Spin(until) => {
                    let ring = &mut self.ring;
                    spin_until(until, || Ok(!ring.is_full()?))?;
                    if self.ring.is_full()? {
                        return between_slices(&mut self.idle, cx);
                    }
                }
                Step::Yield => return between_slices(&mut self.idle, cx),
                Step::Park => {
                    self.check_peer()?;
                    self.nap = Some(Box::pin(tokio::time::sleep(self.next_nap)));
                    self.next_nap = (self.next_nap * 2).min(LONGEST_NAP);
                }
            }
        }
    }
}

use std::future::Future as _;

impl AsyncWrite for RingWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        if bytes.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_room(cx, |ring| Ok(ring.write(bytes)?))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if slices.iter().all(|s| s.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_room(cx, |ring| {
            let mut total = 0;
            for slice in slices {
                let written = ring.write(slice)?;
                total += written;
                if written < slice.len() {
                    break;
                }
            }
            Ok(total)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    // Every write is published as it is made.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    // The socket closes, and the peer sees it, when both halves are dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
