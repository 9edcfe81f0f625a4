//! The settings of one connection (budgets, keepalive, timeouts), shared by
//! servers and clients, with documented defaults.

use std::time::Duration;

/// Budgets and timers of a connection. Every field has a default that suits
/// a program talking to its own children; change the ones you need:
///
/// ```
/// use std::time::Duration;
/// use switchboard::Config;
///
/// let mut config = Config::default();
/// config.request_timeout = Some(Duration::from_secs(5));
/// config.keepalive = Some(Duration::from_secs(1));
/// assert_eq!(config.max_in_flight, 256);
/// ```
///
/// The budgets are what this side *accepts*: they are announced to the other
/// side in the handshake, and it never sends more (a peer that does is cut
/// off). What this side sends is bounded by the other side's announcement
/// and by the same numbers here, whichever is smaller. PROTOCOL.md §5 has
/// the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Requests and notifications from the other side that may be waiting or
    /// running here at once, answers not yet sent included. A sender with
    /// this many in flight waits for one to finish. Default: 256.
    pub max_in_flight: u32,
    /// Bytes of those (their frames' length). A message larger than this
    /// counts as exactly this much, so it travels alone. Default: 16 MiB.
    pub window_bytes: u32,
    /// How long a connection may be silent before this side sends a ping.
    /// A peer that stays silent for another interval after the ping is
    /// dropped, and its pending requests fail with
    /// [`Error::Disconnected`](crate::Error::Disconnected). `None` (or zero):
    /// never. Default: 10 s.
    ///
    /// Pings are answered by the connection's reader task, so a process
    /// whose runtime does not run between its own calls (a current-thread
    /// runtime entered only with `block_on` now and then) cannot answer and
    /// will be dropped by a peer with keepalive on: run the runtime on a
    /// thread of its own, or turn keepalive off on both sides.
    pub keepalive: Option<Duration>,
    /// How long a request waits for its answer when the call gives no
    /// timeout of its own (waiting for send credit included). `None`: no
    /// limit. Default: 30 s.
    pub request_timeout: Option<Duration>,
    /// How long the handshake may take before the connection is dropped.
    /// Default: 5 s.
    pub handshake_timeout: Duration,
    /// How long a waiting side keeps polling before it lets its thread
    /// sleep, when an answer or the next message is likely to come within
    /// microseconds. `None` (or zero): never. Default: 50 µs.
    ///
    /// Waking a sleeping thread costs more than a whole round trip on many
    /// machines (10 to 20 µs on a virtual machine whose idle CPUs halt), so
    /// a short poll first makes quick exchanges several times faster. A
    /// poll of a socket is a `read` that does not wait; polls come in
    /// slices of 5 to 10 µs, between which the poller yields to the OS and
    /// to the runtime, so every other task still runs. Who polls: on a
    /// current-thread runtime (and in the [`blocking`](crate::blocking)
    /// API) the connection's read loop, run by a caller waiting for its
    /// answer or by the loop's own task; on a multi-thread runtime a
    /// caller outside the runtime's workers (the `block_on` of
    /// `#[tokio::main]`), one per connection at a time, which runs the
    /// read loop as it polls and so reads its answer on its own thread.
    /// It adapts: a connection whose polls keep
    /// coming up empty (a slow or idle peer) stops polling and only tries
    /// again now and then, so idle connections cost nothing and slow ones
    /// next to nothing. Turn it off where CPU time matters more than
    /// latency (battery-powered machines, many busy processes per core).
    pub busy_poll: Option<Duration>,
    /// How long a side waiting on the shared-memory ring
    /// ([`Connector::with_shm_ring`]) spins, looking at the ring without a
    /// system call, before it yields its thread a few times and then sleeps
    /// until the other side rings. Zero: yield and sleep at once.
    /// Default: 1 ms.
    ///
    /// The spin is what makes the ring fast: an answer that comes within
    /// the budget is seen within nanoseconds, with no wake-up. While
    /// messages keep coming within it, each waiting side keeps a CPU busy;
    /// once they stop, it sleeps after this long and costs nothing. Only
    /// connections over the ring use it (see also
    /// [`busy_poll`](Self::busy_poll), its counterpart on the socket).
    ///
    /// Why as long as 1 ms: on a virtual machine whose host is busy, the
    /// host now and then takes a vCPU away for a few hundred microseconds.
    /// A side that spins for less falls asleep while its peer is away, its
    /// idle vCPU is handed to another guest, and getting it back costs
    /// hundreds of microseconds more, long enough for the peer to fall
    /// asleep in turn. With 50 µs that chain of sleeps put the ring's p99 at 215 to
    /// 665 µs (a hundred times its median and more) in runs where the host
    /// took 27 % of the time or more; with 1 ms it stayed near 1.5 times
    /// the median through the same (BENCHMARKS.md, "A spin budget longer
    /// than the host's time slice").
    ///
    /// The price is CPU after the last message: each side spins up to the
    /// budget before it sleeps, so a peer that sends every few hundred
    /// microseconds keeps both sides' CPUs busy. Lower it where that
    /// matters more than the tail.
    ///
    /// Two spinning processes on one CPU only delay each other, and some
    /// kernels put them there: so a waiting client whose thread finds the
    /// server's waiting thread on its own CPU moves to another CPU it may
    /// run on (its affinity is narrowed for an instant, then restored as it
    /// was), at most once per millisecond; a thread bound to one CPU stays.
    ///
    /// [`Connector::with_shm_ring`]: crate::Connector::with_shm_ring
    pub ring_spin: Duration,
    /// Large bodies through shared memory on local connections, where the
    /// platform allows it (Linux: Unix sockets, including those of an
    /// inherited channel, with sealed memfds; Windows: named pipes, with
    /// sections whose handles the peer duplicates, which needs
    /// `PROCESS_DUP_HANDLE` on the peer's process, so a peer of another
    /// user, integrity level or sandbox gets the pipe; an inherited pipe
    /// pair too); `None`: always the socket. Used only when both sides
    /// allow it. Default: on, with [`SharedMemory::default`].
    ///
    /// Elsewhere (macOS, FreeBSD, TCP, a broker) every body takes the
    /// socket as before, bound by the frame limit.
    pub shared_memory: Option<SharedMemory>,
}

/// How large bodies travel through shared memory on a local connection
/// (see [`Config::shared_memory`], and PROTOCOL.md §9 for the wire).
///
/// Each side maps, once per connection, a pool of [`pool_bytes`] it sends
/// from, and the peer's pool, which it reads from. A body of at least
/// [`threshold`] bytes is copied into a free slot of this side's pool and
/// only its place crosses the socket; the receiving handler gets
/// [`Bytes`](crate::Bytes) that point into the mapping (no copy), and the
/// slot is released when the last of them drops. A body too large for the
/// pool (up to [`max_payload`]) gets a region of its own, which is how a
/// body larger than the socket's frame limit gets through.
///
/// [`pool_bytes`]: SharedMemory::pool_bytes
/// [`threshold`]: SharedMemory::threshold
/// [`max_payload`]: SharedMemory::max_payload
///
/// ```
/// use switchboard::{Config, SharedMemory};
///
/// let mut config = Config::default();
/// let mut shm = SharedMemory::default();
/// shm.copy_received = true; // never read memory the sender can still change
/// config.shared_memory = Some(shm);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedMemory {
    /// Bodies at least this long go through shared memory; shorter ones
    /// are cheaper through the socket. Default: 64 KiB (BENCHMARKS.md,
    /// "Big payloads", has the measurement).
    pub threshold: usize,
    /// The pool this side sends from, mapped once per connection: the
    /// **budget** of what the peer may hold of ours at once (bodies it has
    /// not released, because its handlers still hold their `Bytes`). A body
    /// that finds no room waits for nothing: it takes the socket if it fits
    /// a frame, else a region of its own. So a peer that never releases
    /// costs this side at most this much memory, and never blocks it.
    /// Default: 64 MiB (pages are allocated as bodies first touch them).
    pub pool_bytes: usize,
    /// The largest body sent or accepted through shared memory; a peer that
    /// announces a larger one is cut off. Default: 2 GiB.
    pub max_payload: u64,
    /// Copy each received body out of shared memory before decoding it, so
    /// a peer that rewrites a body after sending it cannot change what this
    /// side reads (SECURITY.md, "Shared memory"). Costs the copy (about
    /// what the socket costs). Default: false: handlers read in place.
    pub copy_received: bool,
}

impl Default for SharedMemory {
    fn default() -> SharedMemory {
        SharedMemory {
            threshold: 64 * 1024,
            pool_bytes: 64 * 1024 * 1024,
            max_payload: 2 * 1024 * 1024 * 1024,
            copy_received: false,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_in_flight: 256,
            window_bytes: 16 * 1024 * 1024,
            keepalive: Some(Duration::from_secs(10)),
            request_timeout: Some(Duration::from_secs(30)),
            handshake_timeout: Duration::from_secs(5),
            busy_poll: Some(Duration::from_micros(50)),
            ring_spin: Duration::from_millis(1),
            shared_memory: Some(SharedMemory::default()),
        }
    }
}

impl Config {
    /// The budgets with zero raised to one, so a careless setting cannot
    /// make a connection that can never send anything.
    pub(crate) fn window(&self) -> Window {
        Window {
            messages: self.max_in_flight.max(1),
            bytes: self.window_bytes.max(1),
        }
    }
}

/// How much one side accepts in flight, as announced in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Window {
    pub(crate) messages: u32,
    pub(crate) bytes: u32,
}

impl Window {
    /// The smaller of two windows in each dimension.
    pub(crate) fn min(self, other: Window) -> Window {
        Window {
            messages: self.messages.min(other.messages).max(1),
            bytes: self.bytes.min(other.bytes).max(1),
        }
    }
}
