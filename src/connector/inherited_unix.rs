//! Inherited channels on Unix: the two ends of a
//! `socketpair(AF_UNIX, SOCK_STREAM)`, close-on-exec from birth; the
//! spawn hook that lets exactly one of them through `exec`; and the
//! checks a child makes before it takes a descriptor over by its number
//! (to connect through it or to serve on it).
//!
//! Both ends are ordinary connected Unix stream sockets, so a link over
//! one is the same as a link over an accepted socket
//! (`Link::unix_stream`): whatever works over a socket file (descriptor
//! passing included) works here.

use std::io;
use std::mem::{MaybeUninit, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::link::Link;

/// The child's end while the parent holds it.
pub(crate) type Handle = OwnedFd;

/// The parent's end, before the child has written anything.
pub(super) struct ParentEnd(OwnedFd);

/// A new pair: (the child's end, the parent's end). Neither is inherited
/// by any child until a spawn hook says so.
pub(super) fn pair() -> io::Result<(OwnedFd, ParentEnd)> {
    // std makes both ends close-on-exec (atomically where the OS can).
    let (child, parent) = UnixStream::pair()?;
    Ok((above_stdio(child.into())?, ParentEnd(parent.into())))
}

/// A descriptor numbered 3 or more: a process started with a standard
/// stream closed gets low numbers back, and a child's standard streams
/// would be put on top of them.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: duplicating an open descriptor we own; the copy is owned by
    // the OwnedFd made from it, the original closes when `fd` drops.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `copy` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

pub(super) fn number(fd: &OwnedFd) -> u64 {
    u64::from(fd.as_raw_fd().unsigned_abs())
}

pub(super) fn describe(number: u64) -> String {
    format!("descriptor {number}")
}

impl ParentEnd {
    pub(super) async fn first_bytes(self) -> io::Result<Link> {
        ParentEnd(readable(self.0).await?).link().await
    }

    pub(super) async fn link(self) -> io::Result<Link> {
        // The peer of a socketpair end is, as the OS reports it, the
        // process that made the pair: this one. The child it was handed
        // to counts as this process's own user, whatever user it runs as.
        // SAFETY: geteuid has no preconditions and cannot fail.
        let own = unsafe { libc::geteuid() };
        Link::unix_stream(self.0, None, Some(own))
    }
}

/// An inherited end taken over to serve on, before the parent has written
/// anything.
pub(super) struct ServedEnd(OwnedFd);

impl ServedEnd {
    pub(super) async fn first_bytes(self) -> io::Result<Link> {
        Link::unix_stream(readable(self.0).await?, None, None)
    }
}

/// Waits until `fd` is readable: the other side wrote, or hung up.
// `with_interest` is deprecated for types that do not own their
// descriptor; an OwnedFd does (as in `unix_halves`).
#[allow(deprecated)]
async fn readable(fd: OwnedFd) -> io::Result<OwnedFd> {
    let waiting = AsyncFd::with_interest(fd, Interest::READABLE)?;
    drop(waiting.readable().await?);
    Ok(waiting.into_inner())
}

/// Lets the child's end through one `exec`, and nothing else, while it
/// lives; disarmed when dropped.
pub(crate) struct Inheritance {
    /// The end's number while armed, -1 once disarmed. Read in the forked
    /// child, which sees the value at the moment of the fork.
    armed: Arc<AtomicI32>,
}

impl Inheritance {
    /// Arms a hook for `end`, which the caller keeps open for as long as
    /// this lives.
    pub(super) fn new(end: &OwnedFd) -> io::Result<Inheritance> {
        Ok(Inheritance {
            armed: Arc::new(AtomicI32::new(end.as_raw_fd())),
        })
    }

    /// The `pre_exec` hook: in the forked child, marks every descriptor
    /// from 3 up close-on-exec except the end, and clears close-on-exec on
    /// the end. A hook of a command spawned again later, with this end
    /// long closed, does nothing.
    ///
    /// It runs between `fork` and `exec`, so it only makes system calls:
    /// no allocation, no locks.
    pub(crate) fn hook(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        let armed = Arc::clone(&self.armed);
        move || {
            let fd = armed.load(Ordering::Relaxed);
            if fd < 0 {
                return Ok(());
            }
            others_close_on_exec(fd);
            // SAFETY: flag calls on a descriptor number; no memory involved.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        }
    }
}

impl Drop for Inheritance {
    fn drop(&mut self) {
        self.armed.store(-1, Ordering::Relaxed);
    }
}

/// Marks every descriptor from 3 up except `keep` close-on-exec, as
/// Python's `close_fds` and Chromium's launcher do: descriptors that some
/// library opened without close-on-exec must not reach the child either.
fn others_close_on_exec(keep: RawFd) {
    let keep = keep.unsigned_abs();
    if close_range_cloexec(3, keep - 1) && close_range_cloexec(keep + 1, u32::MAX) {
        return;
    }
    // No close_range (an old kernel, macOS): every number up to the limit.
    let mut limit = MaybeUninit::<libc::rlimit>::uninit();
    // SAFETY: getrlimit writes the struct it is given.
    let high = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, limit.as_mut_ptr()) } == 0 {
        // SAFETY: initialized by the successful call.
        let current = unsafe { limit.assume_init() }.rlim_cur;
        i32::try_from(current).unwrap_or(i32::MAX).min(1 << 20)
    } else {
        1 << 16
    };
    for fd in 3..high {
        if fd.unsigned_abs() == keep {
            continue;
        }
        // SAFETY: flag calls on a descriptor number; a closed one fails.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// `close_range(first, last, CLOSE_RANGE_CLOEXEC)`; true when it worked
/// (or the range is empty).
fn close_range_cloexec(first: u32, last: u32) -> bool {
    if first > last {
        return true;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: a system call on descriptor numbers; no memory involved.
    // Called directly: the libc wrapper needs glibc 2.34.
    let result = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            last,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    #[cfg(target_os = "freebsd")]
    // SAFETY: as above.
    let result =
        unsafe { libc::close_range(first, last, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let result = -1;
    result == 0
}

/// Takes over the inherited descriptor `number` as a link to connect
/// through (see [`adopt`]).
pub(super) fn take(number: u64) -> io::Result<Link> {
    Link::unix_stream(adopt(number)?, None, None)
}

/// Takes over the inherited descriptor `number` to serve on (see
/// [`adopt`]).
pub(super) fn serve(number: u64) -> io::Result<ServedEnd> {
    adopt(number).map(ServedEnd)
}

/// Takes over the inherited descriptor `number`, after making sure it is
/// what the connector says: open, inherited (not close-on-exec, so no code
/// of this process opened it), and a connected, unnamed Unix stream socket
/// (a socketpair end).
fn adopt(number: u64) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(number)
        .ok()
        .filter(|fd| *fd > 2)
        .ok_or_else(|| {
            refused(
                number,
                "cannot be an inherited channel: channels are inherited as descriptor 3 or above",
            )
        })?;
    // SAFETY: reads a descriptor's flags; a closed number fails.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(refused(
            number,
            "is not open in this process: an inherited channel's connector works only \
             in the child spawned with it (was it handed to another process, or the \
             descriptor closed?)",
        ));
    }
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(refused(
            number,
            "was not inherited: it is close-on-exec, so this process opened it itself \
             (the connector belongs to the child spawned with the channel)",
        ));
    }
    check_socketpair_end(fd).map_err(|what| refused(number, &what))?;
    // SAFETY: the descriptor is open and was inherited through exec, so no
    // code of this process owns it; TAKEN makes sure it is taken once.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // This process's own children must not inherit it in turn.
    // SAFETY: sets a flag on the descriptor we now own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    Ok(socket)
}

fn refused(number: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("inherited channel: descriptor {number} {what}"),
    )
}

/// What is wrong with `fd` as a socketpair end, if anything.
fn check_socketpair_end(fd: RawFd) -> Result<(), String> {
    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes the struct it is given.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return Err(format!(
            "cannot be examined: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: initialized by the successful call.
    let mode = unsafe { stat.assume_init() }.st_mode & libc::S_IFMT;
    if mode != libc::S_IFSOCK {
        let what = match mode {
            libc::S_IFREG => "a file",
            libc::S_IFDIR => "a directory",
            libc::S_IFIFO => "a pipe",
            libc::S_IFCHR => "a terminal or character device",
            _ => "something else",
        };
        return Err(format!("is not a socket but {what}"));
    }
    let mut kind: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `kind`.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    if got != 0 || kind != libc::SOCK_STREAM {
        return Err("is a socket, but not a stream socket".into());
    }
    let mut address = MaybeUninit::<libc::sockaddr_un>::zeroed();
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes of address.
    if unsafe { libc::getsockname(fd, address.as_mut_ptr().cast(), &mut len) } != 0 {
        return Err(format!(
            "cannot be examined: {}",
            io::Error::last_os_error()
        ));
    }
    // SAFETY: zeroed, then partly written: every byte is initialized.
    let address = unsafe { address.assume_init() };
    if i32::from(address.sun_family) != libc::AF_UNIX {
        return Err("is a network socket, not a Unix socket".into());
    }
    let family_len = size_of::<libc::sa_family_t>() as libc::socklen_t;
    // Linux reports an unnamed socket by the family alone (a leading zero
    // with more bytes is an abstract name); elsewhere the path is empty.
    let named = if cfg!(any(target_os = "linux", target_os = "android")) {
        len > family_len
    } else {
        address.sun_path[0] != 0
    };
    if named {
        return Err("is a named (bound) Unix socket, not one end of a socketpair".into());
    }
    let mut peer = MaybeUninit::<libc::sockaddr_un>::zeroed();
    let mut len = size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: getpeername writes at most `len` bytes of address.
    if unsafe { libc::getpeername(fd, peer.as_mut_ptr().cast(), &mut len) } != 0 {
        return Err("is a Unix socket, but not connected to anything".into());
    }
    Ok(())
}
