//! Setting the ring up on a connection whose handshake agreed to it
//! (PROTOCOL.md §9): the client makes the region and sends its descriptor
//! over the socket with one byte; the server checks the region (size,
//! seals, header) before it maps it. From then on frames travel through
//! the ring ([`super::ring_link`]).

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use super::ring::{self, CpuWords, Direction, RingReader, RingWriter};
use super::ring_link::{RingRead, RingWrite, Socket};
use super::{SharedRegion, recv_with_fds, send_with_fds};

/// The byte the region's descriptor travels with.
const OFFER: u8 = b'R';

/// A connection's two halves over the ring.
pub(crate) type Halves = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

/// The client's side: makes a region for two rings of `capacity` bytes,
/// hands it to the server, and returns the halves over it.
pub(crate) fn offer(socket: Socket, capacity: u32, spin: Duration) -> io::Result<Halves> {
    let region = SharedRegion::create("switchboard-ring", ring::region_len(capacity))?;
    ring::initialize(&region, capacity)?;
    // One byte on a socket nothing else was written to since the handshake:
    // there is room for it.
    send_with_fds(socket.get_ref().as_fd(), &[OFFER], &[region.fd()])?;
    halves(region, socket, capacity, spin, Direction::ToServer)
}

/// The server's side: receives the client's region, checks it, and returns
/// the halves over it.
pub(crate) async fn accept(socket: Socket, capacity: u32, spin: Duration) -> io::Result<Halves> {
    let mut byte = [0u8; 1];
    let registration = socket.register()?;
    let received = loop {
        let mut ready = registration.readable().await?;
        match ready.try_io(|_| recv_with_fds(socket.get_ref().as_fd(), &mut byte, 1)) {
            Ok(received) => break received?,
            Err(_would_block) => continue,
        }
    };
    drop(registration);
    if received.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the client closed the connection before sending its ring",
        ));
    }
    let Some(fd) = received.fds.into_iter().next().filter(|_| byte[0] == OFFER) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the client sent no ring after agreeing to one",
        ));
    };
    let region = SharedRegion::open(fd, ring::region_len(capacity))?;
    ring::check_header(&region, capacity)?;
    halves(region, socket, capacity, spin, Direction::ToClient)
}

fn halves(
    region: SharedRegion,
    socket: Socket,
    capacity: u32,
    spin: Duration,
    outgoing: Direction,
) -> io::Result<Halves> {
    let client = outgoing == Direction::ToServer;
    let incoming = outgoing.opposite();
    let region = Arc::new(region);
    let cpus = Arc::new(CpuWords::new(Arc::clone(&region), incoming, client)?);
    let reader = RingReader::new(Arc::clone(&region), capacity, incoming)?;
    let writer = RingWriter::new(region, capacity, outgoing)?;
    Ok((
        Box::new(RingRead::new(
            reader,
            Arc::clone(&socket),
            spin,
            Arc::clone(&cpus),
        )),
        Box::new(RingWrite::new(writer, socket, spin, cpus)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn socket(stream: UnixStream) -> Socket {
        crate::unix_socket::UnixSocket::new(stream).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_cross_both_ways_and_a_closed_peer_reads_as_the_end() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (socket(a), socket(b));
        let (mut client_read, mut client_write) =
            offer(a, 4096, Duration::from_micros(20)).unwrap();
        let (mut server_read, mut server_write) =
            accept(b, 4096, Duration::from_micros(20)).await.unwrap();
        // Larger than the ring: streams through in pieces.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sent = big.clone();
        let writing = tokio::spawn(async move {
            client_write.write_all(&sent).await.unwrap();
            client_write
        });
        let mut got = vec![0; big.len()];
        server_read.read_exact(&mut got).await.unwrap();
        assert_eq!(got, big);
        let client_write = writing.await.unwrap();

        // The reader parks after its spin budget; the doorbell wakes it.
        tokio::time::sleep(Duration::from_millis(20)).await;
        server_write.write_all(b"late answer").await.unwrap();
        let mut answer = [0; 11];
        client_read.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"late answer");

        drop((client_write, client_read));
        let mut rest = Vec::new();
        assert_eq!(server_read.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_server_refuses_an_offer_without_a_region() {
        let (a, b) = UnixStream::pair().unwrap();
        let b = socket(b);
        std::io::Write::write_all(&mut &a, b"R").unwrap();
        let Err(error) = accept(b, 4096, Duration::ZERO).await else {
            panic!("a byte without a descriptor is no ring");
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_server_refuses_a_region_of_the_wrong_size() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (socket(a), socket(b));
        let _client = offer(a, 8192, Duration::ZERO).unwrap();
        assert!(accept(b, 4096, Duration::ZERO).await.is_err());
    }
}
