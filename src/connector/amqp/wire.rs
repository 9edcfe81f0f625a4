//! What the AMQP connector puts in messages: the connect request and its
//! answer (JSON bodies), the proof a server gives, the link key, and the
//! MAC sealed onto every stream message. PROTOCOL.md, "AMQP", is the
//! normative text.

use std::io;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::connector::Secret;
use crate::error::Error;

/// Version of the AMQP mapping, the `v` of the connect messages.
pub(super) const VERSION: u32 = 1;
/// Length of the MAC at the end of every stream message (with a secret).
pub(super) const TAG_LEN: usize = 32;
/// Length of the nonces exchanged in the connect messages.
pub(super) const NONCE_LEN: usize = 32;

const ACCEPT_LABEL: &[u8] = b"switchboard amqp accept\0";
const QUEUE_LABEL: &[u8] = b"switchboard amqp service queue";
const KEY_LABEL: &[u8] = b"switchboard amqp link\0";

/// Which way a stream message travels; part of its MAC, so a message
/// cannot be reflected back to its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// Client to server: 1.
    ToServer = 1,
    /// Server to client: 2.
    ToClient = 2,
}

/// The client's connect request, published to the service queue.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Connect {
    pub v: u32,
    /// The client's presence queue (its inbox is the message's `reply_to`).
    pub presence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// The server instance's answer, published to the client's inbox.
#[derive(Serialize, Deserialize, Debug, Default)]
pub(super) struct Accept {
    pub v: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Refusal>,
}

/// Why a server instance refused a connect request.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Refusal {
    pub code: String,
    pub message: String,
}

pub(super) fn encode_nonce(nonce: &[u8; NONCE_LEN]) -> String {
    URL_SAFE_NO_PAD.encode(nonce)
}

pub(super) fn decode_nonce(text: &str) -> Option<[u8; NONCE_LEN]> {
    URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()
}

/// What names a secret's service queue: the first 8 bytes of
/// HMAC-SHA256(key = secret, `"switchboard amqp service queue"`), in hex.
/// It tells instances with the same secret apart from others without
/// revealing the secret (the proofs on the wire already show HMACs of it).
pub(super) fn fingerprint(secret: &Secret) -> String {
    let mut mac = keyed(secret.expose());
    mac.update(QUEUE_LABEL);
    let digest = mac.finalize().into_bytes();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The server's proof that it holds the secret, bound to both nonces and
/// to the queues it names.
pub(super) fn accept_proof(
    secret: &Secret,
    client_nonce: &[u8],
    server_nonce: &[u8],
    inbox: &str,
    presence: &str,
) -> Hmac<Sha256> {
    let mut mac = keyed(secret.expose());
    mac.update(ACCEPT_LABEL);
    mac.update(client_nonce);
    mac.update(server_nonce);
    mac.update(inbox.as_bytes());
    mac.update(b"\0");
    mac.update(presence.as_bytes());
    mac
}

pub(super) fn encode_proof(mac: Hmac<Sha256>) -> String {
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Checks an accept's proof; the error is an authentication failure.
pub(super) fn check_proof(mac: Hmac<Sha256>, proof: &str) -> Result<(), io::Error> {
    let bytes = URL_SAFE_NO_PAD.decode(proof).unwrap_or_default();
    mac.verify_slice(&bytes).map_err(|_| {
        auth_failed("the server's proof is wrong: it does not hold this connector's secret")
    })
}

/// An authentication failure as an I/O error (the link layer speaks
/// `io::Error`), carrying [`Error::AuthFailed`] inside.
pub(super) fn auth_failed(message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        Error::AuthFailed(message.to_owned()),
    )
}

/// Seals and opens stream messages: a MAC over direction, sequence number
/// and payload, under a key derived from the secret and both nonces.
pub(super) struct Sealer {
    key: Hmac<Sha256>,
    direction: Direction,
    next: u64,
}

impl Sealer {
    /// The sealer for one direction of the link keyed by the secret and the
    /// two nonces.
    pub(super) fn new(
        secret: &Secret,
        client_nonce: &[u8],
        server_nonce: &[u8],
        direction: Direction,
    ) -> Sealer {
        let mut mac = keyed(secret.expose());
        mac.update(KEY_LABEL);
        mac.update(client_nonce);
        mac.update(server_nonce);
        Sealer {
            key: keyed(&mac.finalize().into_bytes()),
            direction,
            next: 0,
        }
    }

    fn mac(&mut self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(&[self.direction as u8]);
        mac.update(&self.next.to_le_bytes());
        mac.update(payload);
        self.next += 1;
        mac
    }

    /// Appends the tag for `message[..]` (the payload) to `message`.
    pub(super) fn seal(&mut self, message: &mut Vec<u8>) {
        let tag = self.mac(message).finalize().into_bytes();
        message.extend_from_slice(&tag);
    }

    /// Checks and strips the tag at the end of `message`.
    pub(super) fn open(&mut self, message: &mut Vec<u8>) -> Result<(), io::Error> {
        let Some(split) = message.len().checked_sub(TAG_LEN) else {
            return Err(bad_tag());
        };
        let mac = self.mac(&message[..split]);
        mac.verify_slice(&message[split..]).map_err(|_| bad_tag())?;
        message.truncate(split);
        Ok(())
    }
}

fn bad_tag() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        Error::AuthFailed(
            "a message on the broker failed its integrity check (injected, replayed, \
             reordered, or sent with another secret)"
                .into(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_messages_open_in_order_only() {
        let secret = Secret::generate();
        let (nc, ns) = ([1u8; 32], [2u8; 32]);
        let mut tx = Sealer::new(&secret, &nc, &ns, Direction::ToServer);
        let mut rx = Sealer::new(&secret, &nc, &ns, Direction::ToServer);
        let mut first = b"hello".to_vec();
        let mut second = b"world".to_vec();
        tx.seal(&mut first);
        tx.seal(&mut second);
        let replay = first.clone();
        rx.open(&mut first).unwrap();
        assert_eq!(first, b"hello");
        // A replay of the first message where the second belongs fails.
        assert!(rx.clone_for_test().open(&mut replay.clone()).is_err());
        rx.open(&mut second).unwrap();
        assert_eq!(second, b"world");
    }

    #[test]
    fn other_direction_key_or_tampering_fails() {
        let secret = Secret::generate();
        let (nc, ns) = ([1u8; 32], [2u8; 32]);
        let mut tx = Sealer::new(&secret, &nc, &ns, Direction::ToServer);
        let mut message = b"payload".to_vec();
        tx.seal(&mut message);
        let mut reflected = Sealer::new(&secret, &nc, &ns, Direction::ToClient);
        assert!(reflected.open(&mut message.clone()).is_err());
        let mut other = Sealer::new(&Secret::generate(), &nc, &ns, Direction::ToServer);
        assert!(other.open(&mut message.clone()).is_err());
        let mut tampered = message.clone();
        tampered[0] ^= 1;
        let mut rx = Sealer::new(&secret, &nc, &ns, Direction::ToServer);
        assert!(rx.open(&mut tampered).is_err());
        assert!(rx.open(&mut vec![0; 3]).is_err());
    }

    impl Sealer {
        fn clone_for_test(&self) -> Sealer {
            Sealer {
                key: self.key.clone(),
                direction: self.direction,
                next: self.next,
            }
        }
    }
}
