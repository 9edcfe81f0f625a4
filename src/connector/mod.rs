//! Connectors: values that know how to reach a server.
//!
//! A [`Connector`] holds an address (a Unix socket path, a Windows pipe name,
//! a TCP host and port, or a service on a RabbitMQ broker), the shared secret both sides authenticate with, and
//! the connection settings. It dumps to a short ASCII string
//! ([`Connector::dump_state`]) that a parent hands to its children, and binds
//! or connects a raw byte stream (a `Link`). It knows nothing of frames or
//! requests.

#[cfg(feature = "amqp")]
mod amqp;
mod amqp_url;
#[cfg(target_os = "linux")]
mod descriptors;
#[cfg(windows)]
mod descriptors_windows;
#[cfg(any(unix, windows))]
mod inherited;
#[cfg(unix)]
mod inherited_unix;
#[cfg(windows)]
mod inherited_windows;
mod link;
#[cfg(unix)]
mod local_unix;
#[cfg(windows)]
mod local_windows;
mod ring_setting;
mod secret;
#[cfg(unix)]
mod stale_dirs;
mod state;
pub(crate) mod state_error;
#[cfg(unix)]
mod unix_halves;

use std::fmt;
use std::path::{Path, PathBuf};

pub use amqp_url::{AmqpUrl, MAX_SERVICE_LEN};
#[cfg(any(unix, windows))]
pub use inherited::ChildChannel;
#[cfg(any(unix, windows))]
pub(crate) use inherited::{ParentEnd, pair as channel_pair, serve as serve_inherited};
pub(crate) use link::{BindGuard, Descriptors, Link, Listener, UnixSocket, connect};
pub(crate) use ring_setting::{
    RING_CAPACITY, SUPPORTED as RING_SUPPORTED, check_capacity as check_ring_capacity,
};
pub(crate) use secret::random_bytes;
pub use secret::{MAX_SECRET_LEN, MIN_SECRET_LEN, SECRET_LEN, Secret};
pub use state::STATE_PREFIX;
pub use state_error::{BodyError, ConnectorError, STATE_VERSION};
// The body format is the protocol's; a connector stores which one it asks for.
pub use crate::protocol::format::Format;

use crate::error::{Error, Result};

/// Default largest frame a connection accepts: 64 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 64 * 1024 * 1024;
/// Smallest frame limit a connector may be configured with.
pub const MIN_MAX_FRAME: u32 = 64 * 1024;

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// A Unix domain socket at this filesystem path (Unix only).
    Unix(PathBuf),
    /// A named pipe `\\.\pipe\NAME` (Windows only); holds `NAME`.
    Pipe(String),
    /// A TCP host (name or IP literal) and port. Port 0 asks the OS for a free
    /// port when binding; the bound server's connector carries the real one.
    Tcp {
        /// Host name or IP address literal (IPv6 without brackets).
        host: String,
        /// Port number.
        port: u16,
    },
    /// A service on a RabbitMQ broker (AMQP 0-9-1): every server bound to
    /// the same broker and service name shares the clients (see
    /// [`Connector::amqp`]). Binding and connecting need the `amqp` cargo
    /// feature; the address loads, dumps and displays without it.
    Amqp {
        /// The broker; its password is redacted when displayed.
        url: AmqpUrl,
        /// The service name (`[A-Za-z0-9._-]`, at most
        /// [`MAX_SERVICE_LEN`] characters).
        service: String,
    },
    /// One end of a connected pair that this process inherited from its
    /// parent (see [`ChildChannel`]): nothing in the filesystem or the
    /// pipe namespace names it, only this number. It is used once, in the
    /// process that inherited it.
    Inherited {
        /// The descriptor number (Unix) or handle value (Windows).
        number: u64,
        /// `false`: this process connects through the end
        /// (`Client::connect`), its parent serves the other
        /// ([`Server::child_channel`](crate::Server::child_channel)).
        /// `true`: this process serves on it (`Server::bind`), its parent
        /// is the client ([`Client::child_channel`](crate::Client::child_channel)).
        serve: bool,
    },
}

impl Address {
    /// The kind name used in dumped state and by `switchboard inspect`.
    pub fn kind(&self) -> &'static str {
        match self {
            Address::Unix(_) => "unix",
            Address::Pipe(_) => "pipe",
            Address::Tcp { .. } => "tcp",
            Address::Amqp { .. } => "amqp",
            Address::Inherited { .. } => "inherited",
        }
    }

    /// True for the same-machine kinds (Unix socket, named pipe).
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Address::Unix(_) | Address::Pipe(_) | Address::Inherited { .. }
        )
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Pipe(name) => write!(f, r"pipe:\\.\pipe\{name}"),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp:{host}:{port}"),
            Address::Amqp { url, service } => write!(f, "amqp:{service} at {url}"),
            Address::Inherited { number, serve } => {
                #[cfg(windows)]
                write!(f, "inherited:handle {number:#x}")?;
                #[cfg(not(windows))]
                write!(f, "inherited:descriptor {number}")?;
                match serve {
                    true => f.write_str(" (to serve)"),
                    false => Ok(()),
                }
            }
        }
    }
}

/// How to reach a server: address, secret and settings.
///
/// Two text forms, for two readers:
///
/// - [`Connector::dump_state`] is for **programs**: the `sb1:...` string, with
///   the secret, that a parent hands to a child (in argv, an environment
///   variable, a file). [`Connector::load_state`] and `FromStr` read it back.
///   Use it, or [`CommandExt`](crate::CommandExt), for the hand-off.
/// - `Display` (`{}`) and `Debug` are for **people and logs**: the address
///   and whether there is a secret, never the secret itself. They cannot be
///   loaded back.
///
/// ```
/// use switchboard::Connector;
///
/// let connector = Connector::local();
/// let text = connector.dump_state();
/// assert!(text.starts_with("sb1:"));
/// assert_eq!(Connector::load_state(&text).unwrap(), connector);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Connector {
    address: Address,
    secret: Option<Secret>,
    /// `None`: not chosen, the handshake settles the fastest common one.
    format: Option<Format>,
    max_frame: u32,
    /// Frames through a ring in shared memory (see `ring_setting.rs`).
    shm_ring: bool,
}

impl Connector {
    /// A private same-machine connector with a fresh secret.
    ///
    /// On Unix: a socket named `s` inside a new directory `sb-<random>` under
    /// the temp directory; the server creates that directory with mode 0700
    /// when it binds and removes it when dropped. On Windows: a pipe named
    /// `switchboard-<random>`. Nothing touches the filesystem until a server
    /// binds.
    pub fn local() -> Connector {
        #[cfg(windows)]
        let address = Address::Pipe(format!("switchboard-{}", secret::random_name(24)));
        #[cfg(not(windows))]
        let address = Address::Unix(
            std::env::temp_dir()
                .join(format!("sb-{}", secret::random_name(12)))
                .join("s"),
        );
        Connector::with_address(address)
    }

    /// A Unix domain socket at `path`, with a fresh secret. If the path's
    /// directory does not exist, the server creates it (mode 0700) and removes
    /// it again when dropped.
    pub fn unix_socket(path: impl AsRef<Path>) -> Result<Connector> {
        let path = path.as_ref();
        if path.to_str().is_none() {
            return Err(Error::InvalidArgument {
                what: "socket path",
                reason: format!("{} is not valid UTF-8", path.display()),
            });
        }
        if path.file_name().is_none() {
            return Err(Error::InvalidArgument {
                what: "socket path",
                reason: format!("{} does not name a file", path.display()),
            });
        }
        Ok(Connector::with_address(Address::Unix(path.to_path_buf())))
    }

    /// A Windows named pipe `\\.\pipe\NAME`, with a fresh secret.
    pub fn named_pipe(name: impl Into<String>) -> Result<Connector> {
        let name = name.into();
        state::check_pipe_name(&name).map_err(|reason| Error::InvalidArgument {
            what: "pipe name",
            reason,
        })?;
        Ok(Connector::with_address(Address::Pipe(name)))
    }

    /// A TCP connector with a fresh secret. Port 0 picks a free port at bind
    /// time. TCP connectors always authenticate: the peer may be on another
    /// machine.
    pub fn tcp(host: impl Into<String>, port: u16) -> Result<Connector> {
        let host = host.into();
        state::check_host(&host).map_err(|reason| Error::InvalidArgument {
            what: "TCP host",
            reason,
        })?;
        Ok(Connector::with_address(Address::Tcp { host, port }))
    }

    /// A service named `service` on the RabbitMQ broker at `url`
    /// (`amqp://user:password@host:port/vhost`, the vhost percent-encoded:
    /// `%2f` is `/`), with a fresh secret.
    ///
    /// Clients and servers meet through the broker instead of a socket:
    /// every server bound to the same broker and service shares the new
    /// clients (competing consumers); a connected client stays with its
    /// server until the connection ends. The mutual authentication and a
    /// MAC on every message use the connector's secret, which the broker
    /// never sees. The broker password is redacted by `Display` and
    /// `Debug`, but is part of [`Connector::dump_state`], like the secret.
    /// See PROTOCOL.md, "AMQP", for the queues and messages.
    ///
    /// Binding and connecting need the `amqp` cargo feature.
    ///
    /// ```
    /// use switchboard::Connector;
    ///
    /// let connector = Connector::amqp("amqp://guest:guest@127.0.0.1:5672/%2f", "jobs")?;
    /// assert_eq!(connector.to_string(), "amqp:jobs at amqp://guest:<redacted>@127.0.0.1:5672/%2f (secret <redacted>)");
    /// let copy = switchboard::Connector::load_state(&connector.dump_state())?;
    /// assert_eq!(copy, connector);
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn amqp(url: impl AsRef<str>, service: impl Into<String>) -> Result<Connector> {
        let url = AmqpUrl::parse(url.as_ref()).map_err(|reason| Error::InvalidArgument {
            what: "broker URL",
            reason,
        })?;
        let service = service.into();
        amqp_url::check_service(&service).map_err(|reason| Error::InvalidArgument {
            what: "AMQP service name",
            reason,
        })?;
        Ok(Connector::with_address(Address::Amqp { url, service }))
    }

    fn with_address(address: Address) -> Connector {
        Connector {
            address,
            secret: Some(Secret::generate()),
            format: None,
            max_frame: DEFAULT_MAX_FRAME,
            shm_ring: false,
        }
    }

    /// The same connector without a secret: anyone who can reach the address
    /// may connect. Both sides must agree; a server with a secret refuses a
    /// client without one and vice versa.
    pub fn without_secret(mut self) -> Connector {
        self.secret = None;
        self
    }

    /// The same connector with this secret instead.
    pub fn with_secret(mut self, secret: Secret) -> Connector {
        self.secret = Some(secret);
        self
    }

    /// The same connector insisting on this body format: a client offers
    /// it first in the handshake (and the others after it, in case the
    /// server lacks it). Without this, a client offers the fastest first
    /// (see [`Format`]).
    pub fn with_format(mut self, format: Format) -> Connector {
        self.format = Some(format);
        self
    }

    /// The same connector with another frame size limit (at least
    /// [`MIN_MAX_FRAME`] bytes).
    pub fn with_max_frame(mut self, max_frame: u32) -> Result<Connector> {
        if max_frame < MIN_MAX_FRAME {
            return Err(Error::InvalidArgument {
                what: "frame size limit",
                reason: format!("{max_frame} is below the minimum of {MIN_MAX_FRAME} bytes"),
            });
        }
        self.max_frame = max_frame;
        Ok(self)
    }

    /// Where the server listens.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The shared secret, if the connector has one.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// The body format this connector insists on, or `None` when it was not
    /// chosen (the handshake then settles MessagePack if both sides have it,
    /// else JSON; see [`Format`]).
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The formats a client with this connector offers, most preferred
    /// first: the chosen one first, else the fastest this build has.
    pub(crate) fn offered_formats(&self) -> Vec<Format> {
        let fastest_first = [Format::MsgPack, Format::Json]
            .into_iter()
            .filter(|f| f.is_available());
        match self.format {
            Some(chosen) => std::iter::once(chosen)
                .chain(fastest_first.filter(|f| *f != chosen))
                .collect(),
            None => fastest_first.collect(),
        }
    }

    /// The largest frame, in bytes, either side accepts.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }

    /// The same connector at another address (a server fills in the real TCP
    /// port after binding port 0).
    pub(crate) fn at(&self, address: Address) -> Connector {
        Connector {
            address,
            ..self.clone()
        }
    }
}

/// For people and logs: the address and `(secret <redacted>)`, e.g.
/// `tcp:127.0.0.1:4000 (secret <redacted>)`. Not for the hand-off: it leaves
/// the secret out and cannot be parsed back; use [`Connector::dump_state`].
impl fmt::Display for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.address)?;
        if self.secret.is_some() {
            f.write_str(" (secret <redacted>)")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("address", &self.address)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("format", &self.format)
            .field("max_frame", &self.max_frame)
            .field("shm_ring", &self.shm_ring)
            .finish()
    }
}

/// Parses the string [`Connector::dump_state`] made (the same as
/// [`Connector::load_state`]), so `text.parse::<Connector>()` works and a
/// connector can be a command-line argument type. It does not parse the
/// redacted `Display` form.
impl std::str::FromStr for Connector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Connector> {
        Connector::load_state(s)
    }
}
