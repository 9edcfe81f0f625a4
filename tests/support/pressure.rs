//! Shared by the pressure tests (`pressure.rs`, `notifications.rs`,
//! `busy_poll.rs`, `limits.rs`, `silent_peers.rs`, `access.rs`): the echo
//! routes, payloads tagged with their request, and a raw socket.

use std::time::Duration;

use switchboard::{Bytes, HandlerError, Router};
#[cfg(unix)]
use switchboard::{Config, Connector};

pub fn echo_router() -> Router {
    Router::new()
        .route(
            "echo",
            |body: Bytes| async move { Ok::<_, HandlerError>(body) },
        )
        .route("sleep", |ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, HandlerError>(ms)
        })
}

/// A payload that says which request it belongs to, so a misrouted answer
/// shows.
pub fn tagged(tag: u64, len: usize) -> Bytes {
    let mut bytes = vec![(tag % 251) as u8; len.max(8)];
    bytes[..8].copy_from_slice(&tag.to_le_bytes());
    Bytes::from(bytes)
}

pub fn tag_of(bytes: &Bytes) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[cfg(unix)]
pub fn quick_keepalive(interval: Duration) -> Config {
    let mut config = Config::default();
    config.keepalive = Some(interval);
    config
}

/// A blocking socket to the server, for speaking the protocol by hand.
#[cfg(unix)]
pub fn raw_connect(connector: &Connector) -> std::os::unix::net::UnixStream {
    let switchboard::Address::Unix(path) = connector.address() else {
        panic!("expected a unix connector")
    };
    let stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}
