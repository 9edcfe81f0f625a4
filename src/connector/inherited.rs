//! Inherited channels: a connected pair whose one end a child process
//! inherits, so that the child reaches its parent with nothing named in
//! the filesystem or the pipe namespace (Chromium's Mojo `PlatformChannel`,
//! Python's inherited pipes).
//!
//! The parent makes the pair ([`pair`]): it serves one end like any
//! accepted connection and spawns the child with the other
//! ([`ChildChannel`], [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)),
//! the only descriptor or handle the child inherits. The connector string
//! names that end by its number; the child's [`connect`] takes it over,
//! once, after checking that it really is an inherited end of such a pair
//! (the per-platform checks live in `inherited_unix.rs` and
//! `inherited_windows.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard};

#[cfg(unix)]
use super::inherited_unix as platform;
#[cfg(windows)]
use super::inherited_windows as platform;
use super::link::Link;
use super::{Address, Connector};

/// The child's end of a new connected pair, and the connector that names
/// it: what a parent hands to one child it spawns.
///
/// Made by [`Server::child_channel`](crate::Server::child_channel), whose
/// server serves the other end like any client's connection (handshake,
/// secret, admission, client id). Spawn the child with
/// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel),
/// after putting [`ChildChannel::connector`] in its environment or
/// arguments: the child inherits this end and no other descriptor (on
/// Unix; its standard streams stay as the `Command` sets them) or handle
/// (on Windows, where it also inherits this process's standard streams:
/// see the spawn's documentation for what else differs there), and its
/// `Client::connect(&Connector::from_env()?)` connects through it.
/// Nothing touches the filesystem.
///
/// ```no_run
/// use switchboard::{CommandExt, Connector, Router, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> switchboard::Result<()> {
/// let server = Server::bind(&Connector::local(), Router::new()).await?;
/// let channel = server.child_channel()?;
/// let child = std::process::Command::new("worker")
///     .connector_env(channel.connector())
///     .spawn_with_channel(channel)?;
/// # Ok(()) }
/// ```
///
/// The connector connects once, in the child that inherited the end: used
/// anywhere else (another process, a second time, after the end was
/// closed) it fails with an error saying so. Dropping a `ChildChannel`
/// that was never spawned closes the end, and the server forgets it.
pub struct ChildChannel {
    connector: Connector,
    end: ChildEnd,
}

impl ChildChannel {
    /// The connector naming this end, with the server's secret and
    /// settings: hand it to the child with
    /// [`CommandExt::connector_env`](crate::CommandExt::connector_env) or
    /// [`CommandExt::connector_arg`](crate::CommandExt::connector_arg).
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Makes the end inheritable by the next child spawned (with the
    /// returned guard's hook, on Unix), until the guard drops; then this
    /// process's copy closes.
    pub(crate) fn inheritance(self) -> io::Result<Inheritance> {
        Ok(Inheritance {
            platform: platform::Inheritance::new(&self.end.handle)?,
            _end: self.end,
        })
    }
}

/// See [`ChildChannel::inheritance`]. The fields drop in order: disarmed,
/// then closed.
pub(crate) struct Inheritance {
    platform: platform::Inheritance,
    _end: ChildEnd,
}

impl Inheritance {
    /// The `pre_exec` hook that lets the end, and no other descriptor,
    /// through `exec`.
    #[cfg(unix)]
    pub(crate) fn hook(&self) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
        self.platform.hook()
    }

    /// The end's handle, for the spawn's handle list.
    #[cfg(windows)]
    pub(crate) fn handle(&self) -> windows_sys::Win32::Foundation::HANDLE {
        self.platform.handle()
    }
}

impl fmt::Debug for ChildChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildChannel")
            .field("connector", &self.connector)
            .finish()
    }
}

/// The end a child will inherit, while this process holds it. Its number
/// is registered so that this process never takes it over as if it had
/// inherited it itself.
struct ChildEnd {
    handle: platform::Handle,
    number: u64,
}

impl Drop for ChildEnd {
    fn drop(&mut self) {
        lock(&HELD).remove(&self.number);
    }
}

/// The parent's end of a pair, not yet a [`Link`].
pub(crate) struct ParentEnd(platform::ParentEnd);

impl ParentEnd {
    /// Waits until the child writes its first bytes (or hangs up), then
    /// the link. The wait has no deadline: a child may take long to start,
    /// nobody but that child can write here, and its exit ends the wait.
    pub(crate) async fn first_bytes(self) -> io::Result<Link> {
        self.0.first_bytes().await
    }
}

/// Numbers of the ends this process took over as inherited: each
/// connects once, whatever the number names later.
static TAKEN: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());
/// Numbers of the ends this process holds for its children.
static HELD: Mutex<BTreeSet<u64>> = Mutex::new(BTreeSet::new());

fn lock(set: &Mutex<BTreeSet<u64>>) -> MutexGuard<'_, BTreeSet<u64>> {
    set.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A new connected pair: the child's end, named by a connector with
/// `template`'s secret and settings, and the parent's end.
pub(crate) fn pair(template: &Connector) -> io::Result<(ChildChannel, ParentEnd)> {
    let (child, parent) = platform::pair()?;
    let number = platform::number(&child);
    lock(&HELD).insert(number);
    let channel = ChildChannel {
        connector: template.at(Address::Inherited { number }),
        end: ChildEnd {
            handle: child,
            number,
        },
    };
    Ok((channel, ParentEnd(parent)))
}

/// Takes over the inherited end `number` (once per process) as a link.
pub(crate) fn connect(number: u64) -> io::Result<Link> {
    let mut taken = lock(&TAKEN);
    if taken.contains(&number) {
        return Err(io::Error::other(format!(
            "the inherited channel {} was already used: an inherited channel \
             connects once (it cannot reconnect; the parent must spawn the child \
             with a new one)",
            platform::describe(number)
        )));
    }
    if lock(&HELD).contains(&number) {
        return Err(io::Error::other(format!(
            "{} is this process's own copy of an end it holds for a child, \
             not one it inherited: only the child it is spawned with can connect \
             through it",
            platform::describe(number)
        )));
    }
    let link = platform::take(number)?;
    taken.insert(number);
    Ok(link)
}
