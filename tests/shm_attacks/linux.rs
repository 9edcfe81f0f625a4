//! The raw peer's Linux half: a Unix socket, memfd pools passed with
//! `SCM_RIGHTS` beside the proof, and the pools that lie about themselves.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::json;
use switchboard::{Address, Connector};

use super::{Attack, frame};

pub type Stream = UnixStream;
/// The channel's other end, kept open for the connection's life.
pub type Kept = OwnedFd;

/// A memfd pool.
pub struct Pool(OwnedFd);

const SEALS: libc::c_int = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

impl Pool {
    /// An honest pool: sealed as the protocol says.
    pub fn new(len: usize) -> Pool {
        Pool::sealed(len, SEALS)
    }

    fn sealed(len: usize, seals: libc::c_int) -> Pool {
        // SAFETY: plain syscalls; the descriptor is owned right away.
        unsafe {
            let fd = libc::memfd_create(
                c"sb-attack".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            );
            assert!(fd >= 0);
            let fd = OwnedFd::from_raw_fd(fd);
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t), 0);
            if seals != 0 {
                assert_eq!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals), 0);
            }
            Pool(fd)
        }
    }

    pub fn write(&self, offset: usize, bytes: &[u8]) {
        // SAFETY: pwrite of a live buffer to a descriptor we own.
        let written = unsafe {
            libc::pwrite(
                self.0.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                offset as libc::off_t,
            )
        };
        assert_eq!(written, bytes.len() as isize);
    }

    /// `ftruncate` to `len`: what it returned.
    pub fn truncate(&self, len: usize) -> libc::c_int {
        // SAFETY: a plain syscall on our own descriptor.
        unsafe { libc::ftruncate(self.0.as_raw_fd(), len as libc::off_t) }
    }
}

/// Pools that are not what the protocol asks, the size announced for
/// each, and what the refusal says.
pub fn lying_pools() -> Vec<(Pool, usize, &'static str)> {
    vec![
        (Pool::sealed(1 << 20, 0), 1 << 20, "not sealed"),
        (
            Pool::sealed(1 << 20, libc::F_SEAL_GROW),
            1 << 20,
            "not sealed",
        ),
        (Pool::new(1 << 20), 2 << 20, "bytes, expected"),
    ]
}

/// Lies about regions of their own beyond the common ones: none here (a
/// region it never sent is common).
pub fn lying_regions() -> Vec<(&'static str, Attack)> {
    Vec::new()
}

pub fn connect(connector: &Connector) -> Stream {
    let Address::Unix(path) = connector.address() else {
        panic!("not a Unix socket");
    };
    let stream = UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
}

/// Sends the proof with `pool` and a channel attached.
pub fn send_proof(stream: &mut Stream, pool: &Pool, announced: usize) -> Kept {
    let (channel, theirs) = packet_pair();
    let proof = json!({"pool": announced, "fds": ["pool", "channel"]});
    send_with_fds(
        stream,
        &frame(proof.to_string().as_bytes()),
        &[pool.0.as_raw_fd(), theirs.as_raw_fd()],
    );
    channel
}

fn packet_pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    unsafe {
        assert_eq!(
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr()
            ),
            0
        );
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }
}

/// Sends `bytes` with `fds` attached.
fn send_with_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) {
    let mut control = vec![0u64; 8];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr points at live buffers; CMSG macros stay within them.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE((fds.len() * 4) as u32) as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(header),
            fds.len() * 4,
        );
        assert_eq!(
            libc::sendmsg(stream.as_raw_fd(), &msg, 0),
            bytes.len() as isize
        );
    }
}
