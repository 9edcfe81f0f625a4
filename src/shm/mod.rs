//! Shared memory between the two processes of a local connection.
//!
//! Two things a shared-memory path needs and nothing else: a region both
//! processes map ([`SharedRegion`]: a sealed memfd, so the peer can neither
//! shrink it under our reads nor grow it), and a way to hand its descriptor
//! to the peer over the connection's Unix socket ([`send_with_fds`],
//! [`recv_with_fds`]: `SCM_RIGHTS`). What is built on them (the latency ring,
//! the payload pool) lives above, and decides what the bytes mean.
//!
//! Linux only for now (`memfd_create`, file seals, `MSG_CMSG_CLOEXEC`): on
//! other platforms this module is empty and the paths built on it are
//! refused or not offered.
//!
//! Safety model: the region is memory another process writes at any time.
//! Nothing here ever forms a Rust reference (`&[u8]`) to it; bytes are copied
//! in and out through raw pointers after a bounds check, and words that both
//! sides update are reached only as atomics. What the bytes say is the
//! caller's to validate: they are input from the peer.

#[cfg(target_os = "linux")]
mod fd_passing;
#[cfg(target_os = "linux")]
mod idle;
#[cfg(target_os = "linux")]
mod region;
#[cfg(target_os = "linux")]
pub(crate) mod ring;
#[cfg(target_os = "linux")]
mod ring_link;
#[cfg(target_os = "linux")]
pub(crate) mod ring_setup;

#[cfg(target_os = "linux")]
pub(crate) use fd_passing::{recv_with_fds, send_with_fds};
#[cfg(target_os = "linux")]
pub(crate) use region::SharedRegion;
