//! `Connector::load_state` against arbitrary strings.
//!
//! An input that starts with `{` is taken as the JSON body and sent as
//! `sb1:` and its base64url, so mutations reach the field checks; any other
//! input is the string as it is.
//!
//! Never panics; what loads dumps to a string that loads to an equal
//! connector (and dumping that gives the same string); the secret (the `s`
//! field) never shows in an error's message or in a loaded connector's
//! `Display`/`Debug`.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use switchboard::Connector;

/// The `s` field's text, if the string carries one worth looking for: long
/// enough not to occur by chance in a message, without spaces (so it is not
/// a piece of a message's own wording), and not inside another field or key
/// that a message may quote.
fn secret_text(text: &str) -> Option<String> {
    let body = text.trim().split_once(':')?.1;
    let json = URL_SAFE_NO_PAD.decode(body).ok()?;
    let serde_json::Value::Object(fields) = serde_json::from_slice(&json).ok()? else {
        return None;
    };
    let secret = fields.get("s")?.as_str()?.to_owned();
    if secret.len() < 12 || secret.contains(' ') {
        return None;
    }
    let elsewhere = fields.iter().any(|(key, value)| {
        key.contains(&secret) || (key != "s" && value.to_string().contains(&secret))
    }) || text.contains(&secret);
    (!elsewhere).then_some(secret)
}

fuzz_target!(|data: &[u8]| {
    let text = match data.first() {
        Some(b'{') => format!("sb1:{}", URL_SAFE_NO_PAD.encode(data)),
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    let secret = secret_text(&text);
    match Connector::load_state(&text) {
        Ok(connector) => {
            let dumped = connector.dump_state();
            let again = Connector::load_state(&dumped)
                .unwrap_or_else(|e| panic!("{dumped:?} from {connector:?} does not load: {e}"));
            assert_eq!(
                again, connector,
                "the round trip through {dumped:?} changed it"
            );
            assert_eq!(again.dump_state(), dumped, "dumping is not stable");
            if let Some(secret) = &secret {
                for shown in [format!("{connector}"), format!("{connector:?}")] {
                    assert!(
                        !shown.contains(secret.as_str()),
                        "{shown:?} shows the secret"
                    );
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            if let Some(secret) = &secret {
                assert!(
                    !message.contains(secret.as_str()),
                    "the error {message:?} shows the secret {secret:?}"
                );
            }
        }
    }
});
