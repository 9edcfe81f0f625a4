//! The shared-memory ring's key in the handshake (PROTOCOL.md §10): the
//! client asks for a ring in its hello, the server agrees in its welcome.
//! The ring itself is set up after the welcome (`ring_switch`), after the
//! descriptors of shared memory (§9, steps 3 and 4) have been taken.

use crate::connector::{Connector, RING_CAPACITY, RING_SUPPORTED, check_ring_capacity};
use crate::error::{Error, Result};

/// What the client's hello asks for.
pub(super) fn asked(connector: &Connector) -> Option<u32> {
    connector.shm_ring().then_some(RING_CAPACITY)
}

/// What the server agrees to: a ring this build cannot make, or of a size
/// it does not take, is declined and the connection stays on the socket.
pub(super) fn granted(asked: Option<u32>) -> Option<u32> {
    asked
        .filter(|_| RING_SUPPORTED)
        .filter(|capacity| check_ring_capacity(*capacity).is_ok())
}

/// The client's check of the welcome: only the ring it asked for.
pub(super) fn agreed(connector: &Connector, welcome: Option<u32>) -> Result<Option<u32>> {
    match welcome {
        None => Ok(None),
        Some(capacity) if connector.shm_ring() && capacity == RING_CAPACITY => Ok(Some(capacity)),
        Some(capacity) => Err(Error::Protocol(format!(
            "the server agreed to a shared-memory ring of {capacity} bytes, which was not asked for"
        ))),
    }
}
