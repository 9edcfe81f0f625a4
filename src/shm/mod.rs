//! Shared memory between the two processes of a local connection.
//!
//! What a shared-memory path needs: a region both processes map
//! ([`SharedRegion`]: a sealed memfd on Linux, a pagefile-backed section on
//! Windows, so the peer can neither shrink it under our reads nor grow
//! it), and a way to hand it to the peer: on Linux its descriptor over the
//! connection's Unix socket ([`send_with_fds`], [`recv_with_fds`]:
//! `SCM_RIGHTS`), on Windows its handle, which the peer duplicates out of
//! this process ([`PeerProcess`]). On them, the payload pool's two
//! halves: [`Pool`], the slots this side sends large bodies from, and
//! [`Lender`], the peer's pool, whose bodies are lent out in place; and
//! [`RegionChannel`], how a body too large for the pool goes in a region
//! of its own. The latency ring (Linux) lives above, and decides what its
//! bytes mean.
//!
//! Linux and Windows only: on other platforms this module holds no
//! region, and the paths built on it are refused or not offered.
//!
//! Safety model: the region is memory another process writes at any time.
//! [`SharedRegion`] never forms a Rust reference (`&[u8]`) to it; bytes are
//! copied in and out through raw pointers after a bounds check, and words
//! that both sides update are reached only as atomics. What the bytes say
//! is the caller's to validate: they are input from the peer. The one
//! exception is deliberate: a received large body is lent to the handler
//! in place ([`Lender`]), because not copying it is the point; the peer
//! can then change what the handler reads (never where), which SECURITY.md
//! documents, and `SharedMemory::copy_received` turns off.

#[cfg(any(target_os = "linux", windows))]
mod bulk_copy;
#[cfg(target_os = "linux")]
mod channel_linux;
#[cfg(windows)]
mod channel_windows;
mod corrupted;
#[cfg(target_os = "linux")]
mod fd_passing;
#[cfg(target_os = "linux")]
mod idle;
#[cfg(target_os = "linux")]
mod leave_cpu;
#[cfg(any(target_os = "linux", windows))]
mod lent;
#[cfg(windows)]
mod peer_process;
#[cfg(any(target_os = "linux", windows))]
mod pool;
#[cfg(any(target_os = "linux", windows))]
mod region;
#[cfg(target_os = "linux")]
pub(crate) mod ring;
mod ring_capacity;
#[cfg(target_os = "linux")]
mod ring_link;
#[cfg(target_os = "linux")]
pub(crate) mod ring_setup;

#[cfg(target_os = "linux")]
pub(crate) use channel_linux::RegionChannel;
#[cfg(windows)]
pub(crate) use channel_windows::RegionChannel;
pub(crate) use corrupted::Corrupted;
#[cfg(target_os = "linux")]
pub(crate) use fd_passing::{recv_with_fds, send_with_fds};
#[cfg(any(target_os = "linux", windows))]
pub(crate) use lent::{Lender, Releases, dedicated};
#[cfg(windows)]
pub(crate) use peer_process::PeerProcess;
#[cfg(any(target_os = "linux", windows))]
pub(crate) use pool::{LoanSlot, Pool};
#[cfg(any(target_os = "linux", windows))]
pub(crate) use region::SharedRegion;
pub(crate) use ring_capacity::check_ring_capacity;
