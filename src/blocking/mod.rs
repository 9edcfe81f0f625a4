//! The blocking API: [`Client`] and [`Server`] for programs with no async
//! runtime. The same connectors, routes, timeouts and errors as the async
//! API, and no tokio in the caller's code.
//!
//! ```
//! use switchboard::blocking::{Client, Server};
//! use switchboard::{Connector, Router};
//!
//! # fn main() -> switchboard::Result<()> {
//! let router = Router::new().route("add", |(a, b): (i64, i64)| async move { Ok::<_, String>(a + b) });
//! let server = Server::bind(&Connector::local(), router)?;
//!
//! // Usually in a child process, with `Connector::from_env()?`:
//! let client = Client::connect(server.connector())?;
//! let sum: i64 = client.request("add", &(1, 2))?;
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```
//!
//! How it runs: the first blocking call starts one small current-thread
//! tokio runtime for the whole process, shared by every blocking client
//! and server, with one background thread named `switchboard`. Each call
//! runs on the calling thread, which writes its request and waits for its
//! answer itself; while no call is being made, the background thread
//! serves the routes the other side calls, whatever the program's threads
//! are doing (see `runtime.rs`).
//!
//! # Not inside a running async runtime
//!
//! Like reqwest's blocking client, every blocking method (and
//! [`Items::next`]) panics when called on a thread that is running an
//! async runtime: in `#[tokio::main]`, inside `Runtime::block_on`, or in
//! an async task. Blocking there would stall the runtime's other tasks, and
//! in a program that is both the server (async) and a blocking client, the
//! server could never answer. The panic names the call and the way out:
//! - in async code, use the async API ([`crate::Client`],
//!   [`crate::Server`], the typed client instead of its blocking twin);
//! - or move the blocking call off the runtime's threads, with
//!   `tokio::task::spawn_blocking` or `std::thread::spawn`: from there (and
//!   under a runtime's `Handle::enter` guard) they work.
//!
//! ```
//! use switchboard::{Connector, Router};
//!
//! # fn main() -> switchboard::Result<()> {
//! let router = Router::new().route("add", |(a, b): (i64, i64)| async move { a + b });
//! let server = switchboard::blocking::Server::bind(&Connector::local(), router)?;
//! let connector = server.connector().clone();
//! let runtime = tokio::runtime::Runtime::new()?;
//! let sum = runtime.block_on(async move {
//!     // Not `switchboard::blocking::Client::connect(&connector)` here: it panics.
//!     tokio::task::spawn_blocking(move || {
//!         let client = switchboard::blocking::Client::connect(&connector)?;
//!         client.request::<_, i64>("add", &(1, 2))
//!     })
//!     .await
//!     .expect("the blocking task")
//! })?;
//! assert_eq!(sum, 3);
//! # Ok(()) }
//! ```

mod client;
mod runtime;
mod server;
mod stream;

#[cfg(any(unix, windows))]
pub use client::PendingClient;
pub use client::{Client, ClientBuilder};
#[doc(hidden)]
pub use runtime::block_on as __block_on;
pub use server::Server;
pub use stream::Items;
