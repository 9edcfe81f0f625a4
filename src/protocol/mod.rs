//! The wire protocol above frames: the handshake, the message envelope, the
//! body serializers and the error codes. PROTOCOL.md is the normative text;
//! this module is its implementation.

mod body;
mod client_id;
pub mod format;
pub mod handshake;
mod handshake_proof;
mod handshake_ring;
mod handshake_shm;
pub mod message;
mod payload;
pub mod serializer;
pub mod shared_message;

pub use body::Body;
pub use format::Format;
pub use message::{Message, RequestId};
pub use payload::Bytes;

/// The protocol version this build speaks, exchanged in the handshake.
pub const PROTOCOL_VERSION: u32 = 4;

/// Error codes carried by error responses, after JSON-RPC 2.0.
pub mod code {
    /// The request body could not be parsed at all.
    pub const PARSE_ERROR: i32 = -32700;
    /// The message is not a valid request.
    pub const INVALID_REQUEST: i32 = -32600;
    /// No handler for the route.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The body does not decode into what the handler takes.
    pub const INVALID_PARAMS: i32 = -32602;
    /// The handler panicked, or its result could not be sent.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The handler returned an error (the default for handler errors).
    pub const HANDLER_FAILED: i32 = -32000;
    /// The responder is shutting down and takes no new requests.
    pub const SHUTTING_DOWN: i32 = -32001;
    /// The request was cancelled by its requester.
    pub const CANCELLED: i32 = -32800;
}
