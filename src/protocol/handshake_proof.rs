//! The handshake's proofs (PROTOCOL.md §3): HMAC-SHA256 keyed by the
//! secret (or a resumption token) over a role label and both nonces, so
//! neither side can replay the other's proof.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub(super) const SERVER_LABEL: &[u8] = b"switchboard server proof\0";
pub(super) const CLIENT_LABEL: &[u8] = b"switchboard client proof\0";
pub(super) const RESUME_LABEL: &[u8] = b"switchboard resume\0";

/// The MAC over `label`, `first` and `second`, to finish or to verify.
pub(super) fn keyed(key: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(label);
    mac.update(first);
    mac.update(second);
    mac
}

/// The proof as it travels: the MAC in base64url.
pub(super) fn mac(key: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(keyed(key, label, first, second).finalize().into_bytes())
}
