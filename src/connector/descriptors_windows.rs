//! What a named-pipe link offers for handing shared memory over (Windows):
//! the peer's process id, as the pipe reports it
//! (`GetNamedPipeClientProcessId` / `GetNamedPipeServerProcessId`). Handles
//! do not travel beside the bytes as descriptors do on Linux: the handshake
//! names them by value and the receiver duplicates them out of this
//! process (PROTOCOL.md §9).

/// The peer's process on one link ([`Link::descriptors`](super::Link::descriptors)).
#[derive(Debug, Clone)]
pub struct Descriptors {
    peer_pid: u32,
}

impl Descriptors {
    pub(super) fn new(peer_pid: u32) -> Descriptors {
        Descriptors { peer_pid }
    }

    /// The process at the other end of the pipe.
    pub fn peer_pid(&self) -> u32 {
        self.peer_pid
    }
}
