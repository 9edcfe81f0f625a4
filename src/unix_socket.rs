//! A connected Unix socket shared by the parts of one connection (the byte
//! stream's two halves, the descriptor channel, the shared-memory ring's
//! doorbell), in the runtime's event loop only while one of them may wait
//! on it.
//!
//! Why not always: while a socket is in an epoll set, every message that
//! lands on it runs epoll's wake-up callback inside the sender's `send`,
//! and every read runs it again on the sender's socket for the room it
//! frees, whether or not anybody sleeps in `epoll_wait`. A reader polling
//! the socket busily ([`polled_busily`]) does not need the event loop, and
//! on the latency path those callbacks cost about as much as the rest of
//! the kernel's part of a round trip (BENCHMARKS.md, "Where the socket
//! path's remaining time goes"). So whoever may wait holds a
//! [`Registration`], and the socket leaves the event loop when the last
//! one is dropped.
//!
//! [`polled_busily`]: crate::polled_busily

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A connected, non-blocking Unix stream socket and its registration with
/// the runtime, if anybody holds one.
pub(crate) struct UnixSocket {
    stream: UnixStream,
    /// The registration the holders share; creating and dropping one
    /// happen under this lock, so the descriptor is never added to the
    /// event loop twice.
    registered: Mutex<Weak<AsyncFd<Descriptor>>>,
}

impl std::fmt::Debug for UnixSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnixSocket")
            .field("fd", &self.stream.as_raw_fd())
            .finish_non_exhaustive()
    }
}

/// The socket's descriptor as the event loop sees it: registered and
/// deregistered, never closed (the [`UnixSocket`] owns it and outlives
/// every registration, which holds it).
pub(crate) struct Descriptor(RawFd);

impl AsRawFd for Descriptor {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl UnixSocket {
    /// Makes `stream` non-blocking and shares it; nothing is registered
    /// until somebody asks to wait.
    pub(crate) fn new(stream: UnixStream) -> io::Result<Arc<UnixSocket>> {
        stream.set_nonblocking(true)?;
        Ok(Arc::new(UnixSocket {
            stream,
            registered: Mutex::new(Weak::new()),
        }))
    }

    /// The socket, for reads and writes that do not wait.
    pub(crate) fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// The socket in the current runtime's event loop for readability, for
    /// as long as the returned value (or another holder's) lives.
    pub(crate) fn register(self: &Arc<UnixSocket>) -> io::Result<Registration> {
        // tokio panics without a runtime; a read polled from outside one
        // fails instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "a Unix socket of switchboard was read outside a tokio runtime",
            ));
        }
        let mut registered = self.lock();
        let fd = match registered.upgrade() {
            Some(fd) => fd,
            None => {
                let fd = Arc::new(register(Descriptor(self.stream.as_raw_fd()))?);
                *registered = Arc::downgrade(&fd);
                fd
            }
        };
        Ok(Registration {
            fd: std::mem::ManuallyDrop::new(fd),
            socket: Arc::clone(self),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Weak<AsyncFd<Descriptor>>> {
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// Deprecated in recent tokio for types that do not own their descriptor
// (one could be closed while registered); a Registration keeps the socket
// that owns it alive, and the replacement does not exist in the oldest
// tokio this crate accepts.
#[allow(deprecated)]
fn register(fd: Descriptor) -> io::Result<AsyncFd<Descriptor>> {
    AsyncFd::with_interest(fd, Interest::READABLE)
}

/// A hold on the socket's place in the event loop (see the module doc):
/// what waiting for readability goes through.
pub(crate) struct Registration {
    fd: std::mem::ManuallyDrop<Arc<AsyncFd<Descriptor>>>,
    socket: Arc<UnixSocket>,
}

impl std::ops::Deref for Registration {
    type Target = AsyncFd<Descriptor>;

    fn deref(&self) -> &AsyncFd<Descriptor> {
        &self.fd
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Under the lock: the last holder's drop takes the descriptor out
        // of the event loop before anybody can add it again.
        let _registered = self.socket.lock();
        // SAFETY: dropped once, here; the field is not used afterwards.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn holders_share_one_registration_and_the_last_one_out_removes_it() {
        let (a, b) = UnixStream::pair().unwrap();
        let a = UnixSocket::new(a).unwrap();
        let first = a.register().unwrap();
        let second = a.register().unwrap();
        assert!(Arc::ptr_eq(&first.fd, &second.fd));
        drop(first);
        drop(second);
        assert!(a.lock().upgrade().is_none(), "out of the event loop");
        // In again (adding it twice would fail with EEXIST), and it works.
        let again = a.register().unwrap();
        io::Write::write_all(&mut &b, b"x").unwrap();
        let mut ready = again.readable().await.unwrap();
        let mut byte = [0u8; 1];
        let read = ready.try_io(|_| io::Read::read(&mut a.get_ref(), &mut byte));
        assert!(matches!(read, Ok(Ok(1))));
    }
}
