//! Connector strings: round trips, the shape of the string, every kind of
//! malformed input, and that the secret never leaks into text.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use switchboard::{Address, Connector, ConnectorError, Error, Format, Secret};

fn encode_body(json: &str) -> String {
    format!("sb1:{}", URL_SAFE_NO_PAD.encode(json))
}

fn load_err(text: &str) -> ConnectorError {
    match Connector::load_state(text) {
        Err(Error::InvalidConnector(e)) => e,
        other => panic!("expected InvalidConnector for {text:?}, got {other:?}"),
    }
}

fn arb_address() -> impl Strategy<Value = Address> {
    prop_oneof![
        // Components never start with a dot: "/." and "/.." name no file.
        "/[a-zA-Z0-9 _~é-][a-zA-Z0-9 ._~é-]{0,59}(/[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,19}){0,3}"
            .prop_map(|p| Address::Unix(p.into())),
        "[a-zA-Z0-9 ._{}-]{1,80}".prop_map(Address::Pipe),
        ("[a-z0-9][a-z0-9.-]{0,40}", any::<u16>())
            .prop_map(|(host, port)| Address::Tcp { host, port }),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(|(segments, port)| Address::Tcp {
            host: std::net::Ipv6Addr::from(segments).to_string(),
            port,
        }),
    ]
}

fn build(address: &Address) -> Connector {
    match address {
        Address::Unix(path) => Connector::unix_socket(path).unwrap(),
        Address::Pipe(name) => Connector::named_pipe(name.clone()).unwrap(),
        Address::Tcp { host, port } => Connector::tcp(host.clone(), *port).unwrap(),
        other => panic!("unexpected address {other:?}"),
    }
}

proptest! {
    #[test]
    fn dump_load_round_trips(
        address in arb_address(),
        secret in proptest::option::of(proptest::collection::vec(any::<u8>(), 16..=64)),
        msgpack in any::<bool>(),
        max_frame in prop_oneof![Just(64 * 1024 * 1024u32), (64 * 1024u32)..=u32::MAX],
    ) {
        let mut connector = build(&address).with_max_frame(max_frame).unwrap();
        connector = match secret {
            Some(bytes) => connector.with_secret(Secret::from_bytes(bytes).unwrap()),
            None => connector.without_secret(),
        };
        if msgpack {
            connector = connector.with_format(Format::MsgPack);
        }
        let text = connector.dump_state();
        prop_assert!(text.starts_with("sb1:"));
        prop_assert!(
            text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b':'),
            "characters outside [A-Za-z0-9_:-] in {text}"
        );
        prop_assert!(text.len() <= 600, "{} bytes", text.len());
        let loaded = Connector::load_state(&text).unwrap();
        prop_assert_eq!(&loaded, &connector);
        prop_assert_eq!(loaded.dump_state(), text);
    }
}

#[test]
fn default_connectors_are_short_and_carry_a_256_bit_secret() {
    for connector in [Connector::local(), Connector::tcp("127.0.0.1", 0).unwrap()] {
        let text = connector.dump_state();
        assert!(text.len() < 200, "{text} is {} bytes", text.len());
        assert_eq!(connector.secret().unwrap().expose().len(), 32);
    }
    // Two fresh connectors never share an address or a secret.
    let (a, b) = (Connector::local(), Connector::local());
    assert_ne!(a.address(), b.address());
    assert_ne!(a.secret(), b.secret());
}

#[test]
fn surrounding_whitespace_is_ignored() {
    let connector = Connector::local();
    let text = format!("  {}\n", connector.dump_state());
    assert_eq!(Connector::load_state(&text).unwrap(), connector);
}

#[test]
fn empty_string() {
    assert_eq!(load_err(""), ConnectorError::Empty);
    assert_eq!(load_err(" \n"), ConnectorError::Empty);
}

/// What a decoder's own wording looks like: none of it may reach the user.
const DECODER_WORDS: [&str; 8] = [
    "invalid symbol",
    "invalid byte",
    "invalid last symbol",
    "encoded text cannot have",
    "expected value",
    "at line",
    "column",
    "eof while parsing",
];

/// The error speaks to the user: no decoder internals, no body text.
fn assert_user_facing(error: &ConnectorError, body: &str) {
    let text = error.to_string();
    let lower = text.to_lowercase();
    for words in DECODER_WORDS {
        assert!(!lower.contains(words), "{words:?} leaked into: {text}");
    }
    if body.len() > 12 {
        assert!(!text.contains(&body[8..]), "the string is echoed: {text}");
    }
    // And through switchboard::Error too.
    let outer = Error::InvalidConnector(error.clone()).to_string();
    assert!(outer.starts_with("invalid connector string: "), "{outer}");
}

#[test]
fn wrong_prefix() {
    for text in ["hello", "xb1:eyJ9", "tcp://localhost:80", "SB1:abc"] {
        let error = load_err(text);
        assert!(
            matches!(error, ConnectorError::WrongPrefix { found_at: None, .. }),
            "{text}: {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("does not start with \"sb1:\""),
            "{message}"
        );
        assert!(message.contains("letters, digits"), "{message}");
        assert_user_facing(&error, text);
    }
}

#[test]
fn something_pasted_in_front_of_the_string() {
    let text = Connector::local().dump_state();
    let pasted = format!("SWITCHBOARD_CONNECTOR={text}");
    let error = load_err(&pasted);
    assert!(
        matches!(
            error,
            ConnectorError::WrongPrefix {
                found_at: Some(22),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("pass only the part from \"sb1:\" on"),
        "{error}"
    );
    assert_user_facing(&error, &text);
}

#[test]
fn unknown_version() {
    let error = load_err("sb2:eyJrIjoidW5peCJ9");
    assert_eq!(error, ConnectorError::UnknownVersion("2".into()));
    assert!(error.to_string().contains("version 1"), "{error}");
    assert!(matches!(
        load_err("sbx:abc"),
        ConnectorError::UnknownVersion(_)
    ));
}

#[test]
fn a_truncated_string_says_it_looks_truncated() {
    let text = Connector::tcp("example.com", 4000).unwrap().dump_state();
    // Cut anywhere after the prefix, the string says the same thing.
    for len in 4..text.len() {
        let cut = &text[..len];
        let error = load_err(cut);
        assert!(
            matches!(error, ConnectorError::Truncated(_)),
            "cut to {len}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("looks truncated"), "{message}");
        assert!(message.contains("cut short while copying"), "{message}");
        assert_user_facing(&error, &text);
        // The decoder's word is kept as the source, out of the message.
        let source = std::error::Error::source(&error).expect("a source");
        assert!(!source.to_string().is_empty());
    }
}

#[test]
fn a_quoted_string_says_to_drop_the_quotes() {
    let text = Connector::local().dump_state();
    for (quoted, quote) in [
        (format!("\"{text}\""), '"'),
        (format!("'{text}'"), '\''),
        (format!("\"{text}"), '"'),
        (format!("{text}'"), '\''),
        (format!("\u{201C}{text}\u{201D}"), '\u{201C}'),
        (format!("  '{text}'\n"), '\''),
    ] {
        let error = load_err(&quoted);
        assert_eq!(error, ConnectorError::Quoted(quote), "{quoted}");
        assert!(error.to_string().contains("drop the quotes"), "{error}");
        assert_user_facing(&error, &text);
    }
}

#[test]
fn whitespace_inside_says_so() {
    let text = Connector::local().dump_state();
    let (head, tail) = text.split_at(30);
    for (broken, found, name) in [
        (format!("{head}\n{tail}"), '\n', "a line break"),
        (format!("{head}\r\n{tail}"), '\r', "a line break"),
        (format!("{head} {tail}"), ' ', "a space"),
        (format!("{head}\t{tail}"), '\t', "a tab"),
    ] {
        let error = load_err(&broken);
        assert_eq!(error, ConnectorError::Whitespace { at: 31, found });
        let message = error.to_string();
        assert!(message.contains(name), "{message}");
        assert!(message.contains("character 31"), "{message}");
        assert!(message.contains("no whitespace"), "{message}");
        assert_user_facing(&error, &text);
    }
}

#[test]
fn bad_base64() {
    for (text, shown) in [
        ("sb1:abc$", "'$'"),
        ("sb1:@@@@", "'@'"),
        ("sb1:ab+c", "'+'"),
        ("sb1:abcd==", "'='"),
        ("sb1:abé", "non-ASCII"),
    ] {
        let error = load_err(text);
        assert!(
            matches!(error, ConnectorError::BadBase64(_)),
            "{text}: {error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(shown), "{text}: {message}");
        assert!(message.contains("never"), "{text}: {message}");
        assert_user_facing(&error, text);
        assert!(std::error::Error::source(&error).is_some());
    }
    assert!(load_err("sb1:ab+c").to_string().contains("standard base64"));
    assert!(load_err("sb1:abcd==").to_string().contains("padding"));
}

#[test]
fn body_not_a_json_object() {
    for body in ["not json", "[1,2]", "{}}", "\"text\""] {
        let error = load_err(&encode_body(body));
        assert!(
            matches!(error, ConnectorError::BadBody(_)),
            "{body}: {error:?}"
        );
        assert!(
            error.to_string().contains("does not hold a connector"),
            "{error}"
        );
        assert_user_facing(&error, &encode_body(body));
    }
    // Where serde_json had something to say, it is the source.
    let error = load_err(&encode_body("not json"));
    assert!(std::error::Error::source(&error).is_some());
}

#[test]
fn missing_fields() {
    let error = load_err(&encode_body(r#"{"a":"/tmp/x"}"#));
    assert_eq!(error, ConnectorError::MissingField("k"));
    assert!(error.to_string().contains("no kind"), "{error}");
    assert_eq!(
        load_err(&encode_body(r#"{"k":"unix"}"#)),
        ConnectorError::MissingField("a")
    );
}

#[test]
fn invalid_fields() {
    let cases = [
        (r#"{"k":"tcp","a":"localhost"}"#, "a"),
        (r#"{"k":"tcp","a":"localhost:99999"}"#, "a"),
        (r#"{"k":"tcp","a":"bad host:80"}"#, "a"),
        (r#"{"k":"unix","a":""}"#, "a"),
        (r#"{"k":"pipe","a":"a\\b"}"#, "a"),
        (r#"{"k":"unix","a":7}"#, "a"),
        (r#"{"k":"unix","a":"/x","s":"c2hvcnQ"}"#, "s"),
        (r#"{"k":"unix","a":"/x","s":"!!!"}"#, "s"),
        (r#"{"k":"unix","a":"/x","s":5}"#, "s"),
        (r#"{"k":"unix","a":"/x","f":"yaml"}"#, "f"),
        (r#"{"k":"unix","a":"/x","m":10}"#, "m"),
        (r#"{"k":"unix","a":"/x","m":-1}"#, "m"),
    ];
    for (json, field) in cases {
        match load_err(&encode_body(json)) {
            ConnectorError::InvalidField { field: f, reason } => {
                assert_eq!(f, field, "{json}: {reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{json}: expected InvalidField({field}), got {other:?}"),
        }
    }
}

#[test]
fn unknown_kind() {
    let error = load_err(&encode_body(r#"{"k":"carrier-pigeon","a":"x"}"#));
    assert_eq!(error, ConnectorError::UnknownKind("carrier-pigeon".into()));
    assert!(error.to_string().contains("unix, pipe, tcp"));
}

#[test]
fn absurdly_long_strings_are_refused_before_decoding() {
    let text = format!("sb1:{}", "A".repeat(100_000));
    assert!(matches!(load_err(&text), ConnectorError::TooLong(_)));
}

#[test]
fn debug_and_display_never_show_the_secret() {
    let secret = vec![0xAB; 32];
    let connector = Connector::tcp("localhost", 1234)
        .unwrap()
        .with_secret(Secret::from_bytes(secret.clone()).unwrap());
    let encoded = URL_SAFE_NO_PAD.encode(&secret);
    for text in [
        format!("{connector:?}"),
        format!("{connector:#?}"),
        connector.to_string(),
        format!("{:?}", connector.secret().unwrap()),
    ] {
        assert!(!text.contains(&encoded), "{text}");
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("171"), "{text}");
    }
    assert!(format!("{connector:?}").contains("<redacted>"));
    assert!(connector.to_string().contains("<redacted>"));
}

#[test]
fn an_invalid_secret_is_not_echoed_in_the_error() {
    let error = Connector::load_state(&encode_body(
        r#"{"k":"unix","a":"/x","s":"c2VjcmV0LXZhbHVl"}"#,
    ))
    .unwrap_err()
    .to_string();
    assert!(!error.contains("c2VjcmV0LXZhbHVl"), "{error}");
    assert!(error.contains("\"s\""), "{error}");
}

#[test]
fn constructors_refuse_bad_input() {
    assert!(matches!(
        Connector::tcp("", 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Connector::tcp("a b", 1),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Connector::named_pipe(r"a\b"),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Connector::unix_socket("/"),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Connector::local().with_max_frame(100),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(Secret::from_bytes(vec![1; 15]).is_err());
    assert!(Secret::from_bytes(vec![1; 65]).is_err());
}

#[test]
fn from_str_is_load_state() {
    let connector = Connector::local();
    let parsed: Connector = connector.dump_state().parse().unwrap();
    assert_eq!(parsed, connector);
}
