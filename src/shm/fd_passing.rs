//! Handing descriptors to the peer over a Unix stream socket (`SCM_RIGHTS`).
//!
//! Descriptors ride with at least one byte of data; the receiver must read
//! that byte with [`recv_with_fds`] (a plain `read` would make the kernel
//! drop them), so the protocol above decides when a descriptor can come.
//! The receiver says how many it expects: any more are closed at once and the
//! receive fails, so a peer cannot fill our descriptor table.
//! Received descriptors are close-on-exec (`MSG_CMSG_CLOEXEC`), so no child
//! started meanwhile inherits them.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// What [`recv_with_fds`] got: how many bytes landed in the buffer, and the
/// descriptors that came with them (closed when dropped).
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) bytes: usize,
    pub(crate) fds: Vec<OwnedFd>,
    /// Descriptors came but this process could not take them all (out of
    /// descriptors); `fds` is then empty.
    pub(crate) truncated: bool,
}

/// Sends `data` (at least one byte) with `fds` attached. Returns how many
/// bytes were sent; the descriptors went with the first of them. A
/// non-blocking socket that is full gives `WouldBlock` and sends nothing.
pub(crate) fn send_with_fds(
    socket: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptors must travel with at least one byte",
        ));
    }
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let payload = size_of_val(raw.as_slice());
    let mut control = ControlBuffer::for_fds(raw.len());
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr();
        msg.msg_controllen = control.len() as _;
        // SAFETY: the control buffer is aligned for cmsghdr and CMSG_SPACE of
        // `payload` bytes long, so the first header and its data fit in it.
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            std::ptr::copy_nonoverlapping(
                raw.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(header),
                payload,
            );
        }
    }
    // SAFETY: `msg` points at `iov` (over `data`) and `control`, all alive
    // for the call; MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// Receives into `buf`, accepting at most `max_fds` descriptors. More than
/// that closes every descriptor received and fails with `InvalidData`.
/// Descriptors the kernel could not install (this process is out of them)
/// are reported as `truncated`, with none kept: the bytes are still good. Zero bytes with no
/// descriptors is the peer's end of stream, as for `read`.
pub(crate) fn recv_with_fds(
    socket: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
) -> io::Result<Received> {
    // Room for one more than allowed, so a peer sending too many is seen
    // (or truncated, which the kernel flags) rather than silently accepted.
    let mut control = ControlBuffer::for_fds(max_fds + 1);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr();
    msg.msg_controllen = control.len() as _;
    // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both alive and
    // writable for the call.
    let got = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    let fds = take_fds(&msg);
    if fds.len() > max_fds {
        drop(fds);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the peer sent more descriptors than the {max_fds} expected"),
        ));
    }
    // The buffer has room for one more than allowed, so a truncation with
    // no more than `max_fds` installed is not the peer's excess: the kernel
    // could not install them (this process is out of descriptors). The
    // bytes are good; the descriptors that did arrive are dropped, and the
    // caller learns that some are missing.
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    Ok(Received {
        bytes: got as usize,
        fds: if truncated { Vec::new() } else { fds },
        truncated,
    })
}

/// Every descriptor in the `SCM_RIGHTS` messages of `msg`, owned (so closed
/// if the caller drops them). Other control messages are ignored.
fn take_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg: its control pointer and length
    // describe the headers the kernel wrote, which the CMSG_* macros walk
    // within `msg_controllen`.
    unsafe {
        let mut header = libc::CMSG_FIRSTHDR(msg);
        while !header.is_null() {
            if (*header).cmsg_level == libc::SOL_SOCKET && (*header).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(header);
                let bytes = ((*header).cmsg_len as usize)
                    .saturating_sub(data.offset_from(header.cast::<u8>()) as usize);
                for i in 0..bytes / size_of::<RawFd>() {
                    let raw = data
                        .add(i * size_of::<RawFd>())
                        .cast::<RawFd>()
                        .read_unaligned();
                    // SAFETY: the kernel installed this descriptor for us just
                    // now; nothing else owns it.
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            header = libc::CMSG_NXTHDR(msg, header);
        }
    }
    fds
}

/// A control-message buffer aligned for `cmsghdr`.
struct ControlBuffer(Vec<u64>);

impl ControlBuffer {
    fn for_fds(count: usize) -> Self {
        // SAFETY: CMSG_SPACE is pure arithmetic.
        let bytes = unsafe { libc::CMSG_SPACE((count * size_of::<RawFd>()) as u32) } as usize;
        Self(vec![0; bytes.div_ceil(size_of::<u64>())])
    }

    fn as_mut_ptr(&mut self) -> *mut libc::c_void {
        self.0.as_mut_ptr().cast()
    }

    fn len(&self) -> usize {
        size_of_val(self.0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_descriptor_crosses_the_socket_with_its_byte() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut pipe_read, pipe_write) = std::io::pipe().unwrap();
        assert_eq!(
            send_with_fds(a.as_fd(), b"x", &[pipe_write.as_fd()]).unwrap(),
            1
        );
        drop(pipe_write);
        let mut buf = [0; 8];
        let received = recv_with_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!((received.bytes, &buf[..1]), (1, &b"x"[..]));
        assert_eq!(received.fds.len(), 1);
        let flags = unsafe { libc::fcntl(received.fds[0].as_raw_fd(), libc::F_GETFD) };
        assert!(
            flags & libc::FD_CLOEXEC != 0,
            "received descriptors are close-on-exec"
        );
        // The received descriptor is the pipe's write end.
        let mut write_end = std::fs::File::from(received.fds.into_iter().next().unwrap());
        write_end.write_all(b"hi").unwrap();
        drop(write_end);
        let mut out = String::new();
        pipe_read.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hi");
    }

    #[test]
    fn plain_bytes_arrive_without_descriptors() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(b"abc").unwrap();
        let mut buf = [0; 8];
        let received = recv_with_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!((received.bytes, received.fds.len()), (3, 0));
        drop(a);
        let end = recv_with_fds(b.as_fd(), &mut buf, 1).unwrap();
        assert_eq!((end.bytes, end.fds.len()), (0, 0));
    }

    #[test]
    fn extra_descriptors_are_refused_and_closed() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut read1, write1) = std::io::pipe().unwrap();
        let (mut read2, write2) = std::io::pipe().unwrap();
        send_with_fds(a.as_fd(), b"x", &[write1.as_fd(), write2.as_fd()]).unwrap();
        drop((write1, write2));
        let error = recv_with_fds(b.as_fd(), &mut [0; 8], 1).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        // Both write ends were closed by the refusal: the readers see EOF
        // instead of blocking forever.
        assert_eq!(read1.read(&mut [0; 4]).unwrap(), 0);
        assert_eq!(read2.read(&mut [0; 4]).unwrap(), 0);
    }

    #[test]
    fn no_descriptor_is_accepted_when_none_is_expected() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut read, write) = std::io::pipe().unwrap();
        send_with_fds(a.as_fd(), b"x", &[write.as_fd()]).unwrap();
        drop(write);
        assert!(recv_with_fds(b.as_fd(), &mut [0; 8], 0).is_err());
        assert_eq!(read.read(&mut [0; 4]).unwrap(), 0);
    }

    #[test]
    fn sending_needs_a_byte() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(send_with_fds(a.as_fd(), b"", &[]).is_err());
    }
}
