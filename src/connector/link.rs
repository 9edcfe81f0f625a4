//! Binding and connecting: turns a connector into a raw duplex byte stream.
//!
//! A [`Link`] is the two halves of one connection as boxed tokio reader and
//! writer, whatever carried it (Unix socket, named pipe, TCP). Everything above
//! this module sees only those halves.

use std::io;
use std::net::IpAddr;
#[cfg(unix)]
use std::os::fd::OwnedFd;
use std::sync::Arc;

use interprocess::local_socket::tokio::Stream as LocalStream;
use interprocess::local_socket::traits::StreamCommon;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::{Address, Connector};
use crate::error::{Error, Result};

/// One connection's byte stream, split into halves that can live in
/// different tasks.
pub struct Link {
    /// The receiving half.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// The sending half.
    pub writer: Box<dyn AsyncWrite + Send + Unpin>,
    /// The process at the other end, where the OS tells (Unix sockets via
    /// peer credentials, named pipes); `None` over TCP.
    pub peer_pid: Option<u32>,
    /// The user of the process at the other end (Unix sockets only).
    pub peer_uid: Option<u32>,
    /// The Unix socket under the halves, for what travels beside the byte
    /// stream (descriptors, the shared-memory ring's doorbell); `None` for
    /// other transports.
    pub unix_socket: Option<UnixSocket>,
    /// Handing shared memory over the link: descriptors over Unix sockets
    /// on Linux, the peer's process id over named pipes on Windows.
    pub descriptors: Option<Descriptors>,
    /// The address at the other end (TCP only).
    pub peer_ip: Option<IpAddr>,
}

/// A connected Unix socket, shared by the parts of the connection.
#[cfg(unix)]
pub type UnixSocket = Arc<crate::unix_socket::UnixSocket>;
/// No Unix sockets here.
#[cfg(not(unix))]
pub type UnixSocket = std::convert::Infallible;
/// Passes descriptors over a link ([`Link::descriptors`]); nothing can be
/// made of it where the platform has no such thing.
#[cfg(target_os = "linux")]
pub use super::descriptors::Descriptors;
/// What a link offers for handing shared memory over ([`Link::descriptors`]).
#[cfg(windows)]
pub use super::descriptors_windows::Descriptors;
/// Passes descriptors over a link ([`Link::descriptors`]); nothing can be
/// made of it where the platform has no such thing.
#[cfg(not(any(target_os = "linux", windows)))]
#[derive(Debug, Clone)]
pub enum Descriptors {}

impl Link {
    fn tcp(stream: TcpStream) -> Link {
        // Requests are small and latency-bound; never wait for Nagle.
        let _ = stream.set_nodelay(true);
        let peer_ip = stream.peer_addr().ok().map(|address| address.ip());
        let (reader, writer) = stream.into_split();
        Link {
            reader: Box::new(reader),
            writer: Box::new(writer),
            peer_pid: None,
            peer_uid: None,
            unix_socket: None,
            descriptors: None,
            peer_ip,
        }
    }

    /// Both halves share the stream, since `&Stream` reads and writes
    /// (interprocess's recommended replacement for splitting).
    // The pid is an i32 on Unix and already a u32 on Windows.
    #[allow(clippy::useless_conversion)]
    pub(super) fn local(stream: LocalStream) -> io::Result<Link> {
        let creds = stream.peer_creds().ok();
        let peer_pid = creds
            .as_ref()
            .and_then(|creds| creds.pid())
            .and_then(|pid| u32::try_from(pid).ok());
        #[cfg(unix)]
        let peer_uid = creds.as_ref().and_then(|creds| creds.euid());
        #[cfg(not(unix))]
        let peer_uid = None;
        #[cfg(unix)]
        {
            let LocalStream::UdSocket(socket) = stream;
            Link::unix_stream(OwnedFd::try_from(socket)?, peer_pid, peer_uid)
        }
        #[cfg(not(unix))]
        {
            let stream = Arc::new(stream);
            Ok(Link {
                reader: Box::new(Shared(Arc::clone(&stream))),
                writer: Box::new(Shared(stream)),
                peer_pid,
                peer_uid,
                peer_ip: None,
                unix_socket: None,
                descriptors: peer_pid.map(Descriptors::new),
            })
        }
    }

    /// A connected Unix stream socket, however it was made: accepted,
    /// connected by path, or one end of a socketpair (an inherited
    /// channel). Everything that works over one works over the others.
    #[cfg(unix)]
    pub(super) fn unix_stream(
        socket: OwnedFd,
        peer_pid: Option<u32>,
        peer_uid: Option<u32>,
    ) -> io::Result<Link> {
        let (reader, writer, descriptors) = super::unix_halves::split(socket)?;
        let unix_socket = Some(reader.socket());
        #[cfg(target_os = "linux")]
        let descriptors = Some(descriptors);
        #[cfg(not(target_os = "linux"))]
        let descriptors: Option<Descriptors> = {
            let () = descriptors;
            None
        };
        Ok(Link {
            reader: Box::new(reader),
            writer: Box::new(writer),
            peer_pid,
            peer_uid,
            unix_socket,
            descriptors,
            peer_ip: None,
        })
    }
}

/// Both halves of a named pipe, sharing it (Unix sockets use `unix_halves`
/// instead).
#[cfg(not(unix))]
mod shared {
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    pub(super) struct Shared<S>(pub(super) Arc<S>);

    impl<S> AsyncRead for Shared<S>
    where
        for<'a> &'a S: AsyncRead,
    {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut &*self.0).poll_read(cx, buf)
        }
    }

    impl<S> AsyncWrite for Shared<S>
    where
        for<'a> &'a S: AsyncWrite,
    {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut &*self.0).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut &*self.0).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut &*self.0).poll_shutdown(cx)
        }
    }
}
#[cfg(not(unix))]
use shared::Shared;

#[cfg(unix)]
use super::local_unix as local;
#[cfg(windows)]
use super::local_windows as local;

/// A bound server endpoint.
pub struct Listener {
    inner: ListenerKind,
    connector: Connector,
    cleanup: Option<BindGuard>,
}

/// Removes what binding created (socket file, private directory) when
/// dropped. See [`Listener::take_cleanup`].
pub struct BindGuard {
    #[cfg(any(unix, windows))]
    _local: local::Cleanup,
}

enum ListenerKind {
    #[cfg(any(unix, windows))]
    Local(local::LocalListener),
    Tcp(TcpListener),
    #[cfg(feature = "amqp")]
    Amqp(Box<super::amqp::Listener>),
}

impl Listener {
    /// Starts listening at the connector's address. A Unix socket is made
    /// reachable by its owner only (0600), or by every user when
    /// `open_to_others` (the server then checks each peer's uid itself).
    pub async fn bind(connector: &Connector, open_to_others: bool) -> Result<Listener> {
        connector.check_shm_ring()?;
        let display = connector.address().to_string();
        let mut cleanup = None;
        let (inner, address) = match connector.address() {
            Address::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port))
                    .await
                    .map_err(|source| bind_error(display, source))?;
                let port = listener.local_addr()?.port();
                let address = Address::Tcp {
                    host: host.clone(),
                    port,
                };
                (ListenerKind::Tcp(listener), address)
            }
            #[cfg(feature = "amqp")]
            Address::Amqp { url, service } => {
                let listener =
                    super::amqp::Listener::bind(url, service, connector.secret().cloned()).await?;
                (
                    ListenerKind::Amqp(Box::new(listener)),
                    connector.address().clone(),
                )
            }
            #[cfg(not(feature = "amqp"))]
            Address::Amqp { .. } => return Err(Error::Unsupported(without_amqp(connector))),
            // A channel the child serves on is taken over by the server
            // (`server/channel.rs`), never bound.
            Address::Inherited { .. } => {
                return Err(Error::InvalidArgument {
                    what: "connector",
                    reason: format!(
                        "{display} is an inherited channel's connector for a client: the \
                         child that inherited it connects with it (Client::connect); a \
                         server cannot bind it. For a child that serves, the parent makes \
                         the channel with Client::child_channel"
                    ),
                });
            }
            #[cfg(any(unix, windows))]
            address => {
                let (listener, local) =
                    local::LocalListener::bind(address, &display, open_to_others)?;
                cleanup = Some(BindGuard { _local: local });
                (ListenerKind::Local(listener), address.clone())
            }
            #[cfg(not(any(unix, windows)))]
            address => return Err(Error::Unsupported(format!("{address}"))),
        };
        Ok(Listener {
            inner,
            connector: connector.at(address),
            cleanup,
        })
    }

    /// The guard that removes the socket file and private directory. Until
    /// taken, the listener holds it and cleans up when dropped.
    pub fn take_cleanup(&mut self) -> Option<BindGuard> {
        self.cleanup.take()
    }

    /// The connector clients use to reach this listener (with the real port
    /// when port 0 was asked for).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Waits for the next client.
    pub async fn accept(&self) -> io::Result<Link> {
        match &self.inner {
            #[cfg(any(unix, windows))]
            ListenerKind::Local(listener) => listener.accept().await,
            ListenerKind::Tcp(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok(Link::tcp(stream))
            }
            #[cfg(feature = "amqp")]
            ListenerKind::Amqp(listener) => listener.accept().await,
        }
    }
}

fn bind_error(address: String, source: io::Error) -> Error {
    if source.kind() == io::ErrorKind::AddrInUse {
        Error::AddrInUse { address }
    } else {
        Error::Bind { address, source }
    }
}

#[cfg(not(feature = "amqp"))]
fn without_amqp(connector: &Connector) -> String {
    format!(
        "{} (this build of switchboard has no `amqp` feature)",
        connector.address()
    )
}

/// One connection attempt, no retries.
pub async fn connect(connector: &Connector) -> io::Result<Link> {
    match connector.address() {
        Address::Tcp { host, port } => {
            Ok(Link::tcp(TcpStream::connect((host.as_str(), *port)).await?))
        }
        #[cfg(feature = "amqp")]
        Address::Amqp { .. } => super::amqp::connect(connector).await,
        #[cfg(not(feature = "amqp"))]
        Address::Amqp { .. } => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            without_amqp(connector),
        )),
        #[cfg(any(unix, windows))]
        Address::Inherited { number, .. } => super::inherited::connect(*number),
        #[cfg(any(unix, windows))]
        address => local::connect(address).await,
        #[cfg(not(any(unix, windows)))]
        address => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{address} is not supported on this platform"),
        )),
    }
}
