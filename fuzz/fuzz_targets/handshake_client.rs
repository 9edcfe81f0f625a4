//! The client's half of the handshake against a fuzzer playing the server.
//!
//! Input: one flags byte (see `Setup`), then the server's bytes: in framed
//! mode JSON frames separated by 0xff (the target adds the length prefixes
//! and fills in `$PROOF` with the correct server proof for the client's
//! nonce and the nonce in the same frame), in raw mode the byte stream as
//! it is.
//!
//! Must end in Ok or Err, never panic or hang; with a secret, Ok only if the
//! server sent the correct proof; Ok means the client sent its hello and
//! proof, and settled on a format it offered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{Setup, Side, run_handshake};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, peer)) = data.split_first() else {
        return;
    };
    let setup = Setup::from_flags(flags);
    let outcome = run_handshake(Side::Client, setup, peer);
    if let Ok(settled) = &outcome.result {
        assert!(
            !setup.secret || outcome.proved.secret,
            "the client accepted a server without a valid proof: {outcome:?}"
        );
        assert_eq!(settled.client_id, "fuzz-client");
        assert_eq!(
            outcome.sent.len(),
            2,
            "the client settled without sending exactly a hello and a proof: {outcome:?}"
        );
        let hello: serde_json::Value =
            serde_json::from_slice(&outcome.sent[0]).expect("the hello is JSON");
        let offered = hello["formats"].as_array().expect("formats");
        assert!(
            offered
                .iter()
                .any(|f| f.as_str() == Some(settled.format.name())),
            "the client settled on a format it did not offer: {outcome:?}"
        );
    }
});
