//! Inherited channels: a connected pair whose one end a child process
//! inherits, so that the child reaches its parent with nothing named in
//! the filesystem or the pipe namespace (Chromium's Mojo `PlatformChannel`,
//! Python's inherited pipes).
//!
//! The parent makes the pair ([`pair`]) and spawns the child with one end
//! ([`ChildChannel`], [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel)),
//! the only descriptor or handle the child inherits. Either side may serve:
//! the parent's server serves its end like any accepted connection and the
//! child's [`connect`] takes the other over, or the parent is the client
//! and the child's server takes its end over with [`serve`]. The connector
//! string names the child's end by its number and says which part the
//! child plays; the child takes the end over once, after checking that it
//! really is an inherited end of such a pair (the per-platform checks live
//! in `inherited_unix.rs` and `inherited_windows.rs`).

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
/// secret, admission, client id), or by
/// [`Client::child_channel`](crate::Client::child_channel), whose client
/// connects through the other end to the child's server. Spawn the child with
/// [`CommandExt::spawn_with_channel`](crate::CommandExt::spawn_with_channel),
/// after putting [`ChildChannel::connector`] in its environment or
/// arguments: the child inherits this end and no other descriptor (on
/// Unix; its standard streams stay as the `Command` sets them) or handle
/// (on Windows, where it also inherits this process's standard streams:
/// see the spawn's documentation for what else differs there), and its
/// `Client::connect(&Connector::from_env()?)` connects through it (or, for
/// a channel made by a client, its `Server::bind(&Connector::from_env()?,
/// router)` serves on it). Nothing touches the filesystem.
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
/// The connector is used once, in the child that inherited the end: used
/// anywhere else (another process, a second time, after the end was
/// closed, or by the wrong side: a client for a channel the child must
/// serve, or the other way round) it fails with an error saying so.
/// Dropping a `ChildChannel` that was never spawned closes the end, and
/// the parent's server forgets it (its client fails to connect).
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

    /// Records the process the end went to (Windows: the parent's end
    /// needs it for shared memory, and its pipe cannot tell).
    #[cfg(windows)]
    pub(crate) fn spawned(&self, pid: u32) {
        self.platform.spawned(pid)
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
    /// the link: for a parent that serves. The wait has no deadline: a
    /// child may take long to start, nobody but that child can write here,
    /// and its exit ends the wait.
    pub(crate) async fn first_bytes(self) -> io::Result<Link> {
        self.0.first_bytes().await
    }

    /// The link at once: for a parent that is the client, which speaks
    /// first.
    pub(crate) async fn link(self) -> io::Result<Link> {
        self.0.link().await
    }
}

/// An inherited end this process took over to serve on, not yet a
/// [`Link`].
pub(crate) struct ServedEnd(platform::ServedEnd);

impl ServedEnd {
    /// Waits until the parent writes its first bytes (its hello), or hangs
    /// up, then the link. No deadline, as in [`ParentEnd::first_bytes`]:
    /// only the parent can write here, and its exit ends the wait.
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
/// `template`'s secret and settings (and saying whether the child serves
/// on it), and the parent's end.
pub(crate) fn pair(
    template: &Connector,
    child_serves: bool,
) -> io::Result<(ChildChannel, ParentEnd)> {
    let (child, parent) = platform::pair()?;
    let number = platform::number(&child);
    lock(&HELD).insert(number);
    let channel = ChildChannel {
        connector: template.at(Address::Inherited {
            number,
            serve: child_serves,
        }),
        end: ChildEnd {
            handle: child,
            number,
        },
    };
    Ok((channel, ParentEnd(parent)))
}

/// Takes over the inherited end `number` (once per process) as a link,
/// to connect through.
pub(crate) fn connect(number: u64) -> io::Result<Link> {
    take_once(number, "connects", platform::take)
}

/// Takes over the inherited end `number` (once per process), to serve on.
pub(crate) fn serve(number: u64) -> io::Result<ServedEnd> {
    take_once(number, "is served", platform::serve).map(ServedEnd)
}

/// Checks that `number` was neither taken over before nor is one of this
/// process's own ends for a child, then takes it over with `take`.
fn take_once<T>(number: u64, used: &str, take: impl FnOnce(u64) -> io::Result<T>) -> io::Result<T> {
    let mut taken = lock(&TAKEN);
    if taken.contains(&number) {
        return Err(io::Error::other(format!(
            "the inherited channel {} was already used: an inherited channel \
             {used} once (it cannot reconnect; the parent must spawn the child \
             with a new one)",
            platform::describe(number)
        )));
    }
    if lock(&HELD).contains(&number) {
        return Err(io::Error::other(format!(
            "{} is this process's own copy of an end it holds for a child, \
             not one it inherited: only the child it is spawned with can use it",
            platform::describe(number)
        )));
    }
    let end = take(number)?;
    taken.insert(number);
    Ok(end)
}
