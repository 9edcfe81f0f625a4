//! A Unix socket's two halves, registered with the event loop for what
//! each needs: the reader for readability only, and not while it is
//! polled busily (see [`crate::unix_socket`]); the writer for writability
//! only while a write is blocked.
//!
//! Why: a socket registered for both (as tokio's own streams are) gets an
//! `EPOLLOUT` edge every time the peer reads, since that frees room in
//! this side's send buffer. In request/response traffic that wakes each
//! process once more per message for nothing, which on a small VM cost
//! about as much as the round trip itself (BENCHMARKS.md, "The blocking
//! API").

use std::io::{self, Write};
#[cfg(target_os = "linux")]
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

use crate::polled_busily::polled_busily;
use crate::unix_socket::{Registration, UnixSocket};

/// The receiving half: the socket, its registration for readability while
/// the reader may wait, and where descriptors go while the protocol
/// expects some (Linux).
pub(super) struct Reader {
    socket: Arc<UnixSocket>,
    registration: Option<Registration>,
    inbox: Inbox,
}

/// The sending half: writes go straight to the socket; only a write that
/// would block registers (a second descriptor of the same socket) for
/// writability, until a write goes through without waiting.
pub(super) struct Writer {
    socket: Arc<UnixSocket>,
    blocked: Option<AsyncFd<UnixStream>>,
    /// The current write had to wait for writability.
    waited: bool,
}

/// The descriptor side channel of a link (Linux), `()` elsewhere.
#[cfg(target_os = "linux")]
pub(super) type Descriptors = super::descriptors::Descriptors;
#[cfg(not(target_os = "linux"))]
pub(super) type Descriptors = ();

/// Splits a connected, non-blocking socket into its halves, and the handle
/// that passes descriptors over it.
pub(super) fn split(fd: OwnedFd) -> io::Result<(Reader, Writer, Descriptors)> {
    let socket = UnixSocket::new(UnixStream::from(fd))?;
    #[cfg(target_os = "linux")]
    let inbox = Arc::new(super::descriptors::Inbox::default());
    #[cfg(target_os = "linux")]
    let descriptors = super::descriptors::Descriptors::new(Arc::clone(&socket), Arc::clone(&inbox));
    #[cfg(not(target_os = "linux"))]
    let (inbox, descriptors) = ((), ());
    Ok((
        Reader {
            socket: Arc::clone(&socket),
            registration: None,
            inbox,
        },
        Writer {
            socket,
            blocked: None,
            waited: false,
        },
        descriptors,
    ))
}

impl Reader {
    /// The socket itself, for what travels beside the byte stream.
    pub(super) fn socket(&self) -> Arc<UnixSocket> {
        Arc::clone(&self.socket)
    }
}

/// Registers a second descriptor of a blocked writer's socket with the
/// current runtime for writability.
// Deprecated in recent tokio for types that do not own their descriptor
// (one could be closed while registered); a UnixStream owns it, and the
// replacement does not exist in the oldest tokio this crate accepts.
#[allow(deprecated)]
fn register_writable(socket: UnixStream) -> io::Result<AsyncFd<UnixStream>> {
    AsyncFd::with_interest(socket, Interest::WRITABLE)
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if polled_busily() {
            // Polled again in a moment, and the ordinary way before the
            // poller sleeps: no waker needed, and no event loop.
            this.registration = None;
            return poll_read_now(&this.socket, &this.inbox, buf);
        }
        let registration = match &mut this.registration {
            Some(registration) => registration,
            none => none.insert(this.socket.register()?),
        };
        // Whether this call already asked the socket (and found nothing).
        let mut asked = false;
        loop {
            let mut ready = match registration.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                // Not known to be readable, but the runtime learns of new
                // bytes only on its next turn: a reader polling busily
                // (`peer::busy_poll`) asks the socket itself, which is how
                // it sees a message the moment it lands. The waker is
                // registered first, so nothing arriving after this read
                // goes unnoticed.
                Poll::Pending if asked => return Poll::Pending,
                Poll::Pending => return poll_read_now(&this.socket, &this.inbox, buf),
            };
            match ready.try_io(|_| read_now(&this.socket, &this.inbox, buf)) {
                Ok(result) => return Poll::Ready(result),
                // Not readable after all: readiness was cleared, wait again.
                Err(_would_block) => {
                    asked = true;
                    continue;
                }
            }
        }
    }
}

/// Where descriptors go while expected (Linux); nothing elsewhere.
#[cfg(target_os = "linux")]
type Inbox = Arc<super::descriptors::Inbox>;
#[cfg(not(target_os = "linux"))]
type Inbox = ();

/// [`read_now`], with nothing to read yet as `Pending`: the caller either
/// polls again soon or has registered to be woken.
fn poll_read_now(
    socket: &UnixSocket,
    inbox: &Inbox,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    match read_now(socket, inbox, buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        read => Poll::Ready(read),
    }
}

/// One read that does not wait, whatever the runtime believes about
/// readiness: descriptors too while the protocol expects some.
fn read_now(socket: &UnixSocket, inbox: &Inbox, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    if inbox.expecting() {
        let read = inbox.receive(socket.get_ref().as_fd(), buf.initialize_unfilled())?;
        buf.advance(read);
        return Ok(());
    }
    #[cfg(not(target_os = "linux"))]
    let () = *inbox;
    read_into(socket.get_ref(), buf)
}

/// Reads from `socket` into the unfilled part of `buf` without zeroing it
/// first: callers such as `AsyncReadExt::take` hand over a fresh, unknown-
/// initialized buffer on every call, and zeroing a large frame's remaining
/// megabytes before every read made large transfers ten times slower.
fn read_into(socket: &UnixStream, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    // SAFETY: `read(2)` only writes into the memory it is given and says
    // how much; nothing uninitialized is read, and exactly the `read`
    // bytes it filled are marked initialized and filled.
    unsafe {
        let unfilled = buf.unfilled_mut();
        let read = libc::read(
            socket.as_raw_fd(),
            unfilled.as_mut_ptr().cast::<libc::c_void>(),
            unfilled.len(),
        );
        let read = usize::try_from(read).map_err(|_| io::Error::last_os_error())?;
        buf.assume_init(read);
        buf.advance(read);
    }
    Ok(())
}

impl Writer {
    fn poll_io<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut io: impl FnMut(&UnixStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            if let Some(blocked) = &self.blocked {
                let mut ready = ready!(blocked.poll_write_ready(cx))?;
                match ready.try_io(|socket| io(socket.get_ref())) {
                    Ok(result) => {
                        // A write that went through without waiting ends
                        // the burst: stop watching writability. One that
                        // had to wait keeps the registration for the next,
                        // which a large transfer is about to make.
                        if !std::mem::take(&mut self.waited) {
                            self.blocked = None;
                        }
                        return Poll::Ready(result);
                    }
                    Err(_would_block) => {
                        self.waited = true;
                        continue;
                    }
                }
            }
            match io(self.socket.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let second = self.socket.get_ref().try_clone()?;
                    self.blocked = Some(register_writable(second)?);
                    self.waited = true;
                }
                result => return Poll::Ready(result),
            }
        }
    }
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_io(cx, |mut socket| socket.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_io(cx, |mut socket| socket.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    // Like the interprocess stream this replaces: the socket closes when
    // both halves are dropped.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
