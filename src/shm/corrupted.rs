//! What a link's reader fails with when the peer broke what lies beneath
//! the byte stream: defined here, below the connector, because the ring
//! that detects it lives here and the transport above recognizes it.

/// What a link's reader fails with (inside an `io::Error` of kind
/// `InvalidData`) when the peer broke what lies beneath the byte stream (a
/// corrupted shared-memory ring): the peer's protocol error, not an I/O
/// failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Corrupted(pub String);
