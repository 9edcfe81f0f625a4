//! # switchboard
//!
//! Inter-process communication where a parent starts a server, hands its
//! children one short string, and they talk: requests and responses,
//! notifications, in both directions, over a Unix socket, a Windows named
//! pipe, or TCP, with mutual authentication by a secret the string carries.
//!
//! ```
//! use switchboard::{Client, Connector, Router, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! // Parent: serve, on a private Unix socket (a named pipe on Windows).
//! let router = Router::new().route("add", |(a, b): (i64, i64)| async move { a + b });
//! let server = Server::bind(&Connector::local(), router).await?;
//! let handoff: String = server.connector().dump_state(); // into a child's env or argv
//!
//! // Child: load the string and call.
//! let client = Client::connect(&Connector::load_state(&handoff)?).await?;
//! let sum: i64 = client.request("add", &(1, 2)).await?;
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```
//!
//! In a real program the child is another process: the parent passes the
//! string with [`CommandExt::connector_env`] (or `connector_arg`) and the
//! child reads it with [`Connector::from_env`]. `examples/parent_child.rs`
//! does exactly that.
//!
//! The layers, lowest first (see ARCHITECTURE.md): [`connector`] (addresses,
//! the string form, bind and connect), the transport (frames), the protocol
//! (handshake and envelope, specified in PROTOCOL.md), the peer (one live
//! connection with its flow control, behind [`Peer`]; budgets in
//! [`Config`]), and the API: [`Server`], [`Client`], [`Router`] with its
//! handlers, and [`Stream`] for answers that come as many items.

#![warn(missing_docs)]
// On docs.rs (`--cfg docsrs`, nightly rustdoc): items compiled only with a
// feature carry an "Available on crate feature ... only" mark. No public
// item needs `amqp` to compile: `Connector::amqp` parses and prints broker
// connectors everywhere (so a parent or the CLI can pass them on), and
// binding or connecting one says when the feature is missing.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod blocking;
mod client;
mod config;
pub mod connector;
mod cpu_yield;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handoff;
mod peer;
mod polled_busily;
mod protocol;
pub mod registry;
mod ring_switch;
mod router;
mod server;
mod service;
mod shm;
mod stream;
mod transport;
#[cfg(unix)]
mod unix_socket;

#[cfg(any(unix, windows))]
pub use client::PendingClient;
pub use client::{
    Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT, LinkState, Reconnect, Resumption, WhileDown,
};
pub use config::{Config, SharedMemory};
#[cfg(any(unix, windows))]
pub use connector::ChildChannel;
pub use connector::{Address, Connector, ConnectorError, Secret};
pub use error::{Error, ErrorData, Result};
#[cfg(windows)]
pub use handoff::{AsyncChannelChild, ChannelChild};
pub use handoff::{CommandExt, ENV_VAR};
pub use peer::{Loan, Peer};
pub use protocol::{Bytes, Format, code};
pub use router::{
    BlockingHandler, Context, DESCRIBE_ROUTE, FromCall, FromContext, Handler, HandlerError,
    IntoAnswer, IntoFailure, PING_ROUTE, Router, State,
};
pub use server::{
    Access, DEFAULT_HELLO_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HANDSHAKES,
    DEFAULT_MAX_HANDSHAKES_PER_PEER, Server, ServerBuilder,
};
pub use service::{Service, Shutdown};
#[doc = include_str!("service/macro.md")]
pub use switchboard_macros::service;

// What the code `#[switchboard::service]` writes calls. Not public API.
#[doc(hidden)]
pub use service::private as __private;
pub use stream::{Sender, Stream, StreamClosed};

// The README's examples are compiled as doctests so they cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
