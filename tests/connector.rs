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

#[test]
fn wrong_prefix() {
    for text in ["hello", "xb1:eyJ9", "tcp://localhost:80", "SB1:abc"] {
        let error = load_err(text);
        assert!(
            matches!(error, ConnectorError::WrongPrefix(_)),
            "{text}: {error:?}"
        );
        assert!(error.to_string().contains("sb1:"), "{error}");
    }
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
fn bad_base64() {
    for text in ["sb1:not base64!", "sb1:abc$", "sb1:a"] {
        assert!(
            matches!(load_err(text), ConnectorError::BadBase64(_)),
            "{text}"
        );
    }
}

#[test]
fn body_not_a_json_object() {
    assert!(matches!(
        load_err(&encode_body("not json")),
        ConnectorError::BadBody(_)
    ));
    assert!(matches!(
        load_err(&encode_body("[1,2]")),
        ConnectorError::BadBody(_)
    ));
}

#[test]
fn missing_fields() {
    assert_eq!(
        load_err(&encode_body(r#"{"a":"/tmp/x"}"#)),
        ConnectorError::MissingField("k")
    );
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
