//! The server's half of the handshake against a fuzzer playing the client.
//!
//! Input: one flags byte (see `Setup`), then the client's bytes: in framed
//! mode JSON frames separated by 0xff (the target adds the length
//! prefixes, and fills in `$PROOF` with the correct client proof and
//! `$RESUME` with the proof of the token the server holds for the id), in
//! raw mode the byte stream as it is.
//!
//! Must end in Ok or Err, never panic or hang; with a secret, Ok only if the
//! client sent the correct proof; a resumed id only with the correct token
//! proof; Ok means a welcome was sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_fuzz::{Setup, Side, run_handshake};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, peer)) = data.split_first() else {
        return;
    };
    let setup = Setup::from_flags(flags);
    let outcome = run_handshake(Side::Server, setup, peer);
    if let Ok(settled) = &outcome.result {
        assert!(
            !setup.secret || outcome.proved.secret,
            "the server accepted a client without a valid proof: {outcome:?}"
        );
        assert!(
            !settled.resumed || outcome.proved.token,
            "the server let a client resume an id without proving its token: {outcome:?}"
        );
        assert!(
            !settled.client_id.is_empty() && settled.client_id.len() <= 128,
            "an invalid client id was accepted: {settled:?}"
        );
        let welcome: Option<serde_json::Value> = outcome
            .sent
            .last()
            .and_then(|frame| serde_json::from_slice(frame).ok());
        assert_eq!(
            welcome.as_ref().and_then(|w| w.get("welcome")),
            Some(&serde_json::Value::Bool(true)),
            "the server settled without sending a welcome: {outcome:?}"
        );
    }
});
