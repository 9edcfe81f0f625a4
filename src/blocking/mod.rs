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
//! How it runs: the first blocking call starts one small multi-thread tokio
//! runtime for the whole process (two worker threads named `switchboard`),
//! shared by every blocking client and server. Each call runs on the
//! calling thread, which writes its request itself and then sleeps until
//! the runtime's workers have read the answer; the workers also serve the
//! routes the other side calls, whatever the program's threads are doing.
//!
//! Blocking methods panic when called from inside an async runtime's task
//! (tokio's "Cannot start a runtime from within a runtime"), rather than
//! stall the tasks of that thread; use the async [`crate::Client`] there.
//! From `tokio::task::spawn_blocking` they work.

mod client;
mod runtime;
mod server;
mod stream;

pub use client::{Client, ClientBuilder};
#[doc(hidden)]
pub use runtime::block_on as __block_on;
pub use server::Server;
pub use stream::Items;
