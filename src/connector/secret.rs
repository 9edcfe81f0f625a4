//! The shared secret carried by a connector, and the OS randomness behind it.
//!
//! The secret never appears in `Debug` output or error messages; it leaves the
//! process only inside a dumped connector string.

use std::fmt;

/// Length of a freshly generated secret: 256 bits from the OS RNG.
pub const SECRET_LEN: usize = 32;
/// Shortest secret accepted from outside (128 bits).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest secret accepted from outside.
pub const MAX_SECRET_LEN: usize = 64;

/// Fills an array with bytes from the operating system's RNG.
///
/// Without a working OS RNG no secret or nonce can be trusted, so this panics
/// rather than returning predictable bytes.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random number generator failed");
    buf
}

/// Random lowercase alphanumeric text, for socket directory and pipe names.
pub(crate) fn random_name(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = random_bytes::<64>();
    bytes
        .iter()
        .take(len)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// A connector's shared secret. `Debug` prints `<redacted>`.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A new random secret of [`SECRET_LEN`] bytes.
    pub fn generate() -> Secret {
        Secret(random_bytes::<SECRET_LEN>().to_vec())
    }

    /// Wraps caller-provided bytes; they must be 16 to 64 bytes long.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Secret, String> {
        let bytes = bytes.into();
        if !(MIN_SECRET_LEN..=MAX_SECRET_LEN).contains(&bytes.len()) {
            return Err(format!(
                "a secret must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes long, got {}",
                bytes.len()
            ));
        }
        Ok(Secret(bytes))
    }

    /// The raw secret, for computing authentication proofs.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for Secret {
    // Constant-time in the content so equality checks leak nothing useful.
    fn eq(&self, other: &Secret) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
