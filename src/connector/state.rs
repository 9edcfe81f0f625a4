//! The connector's string form: `sb1:` followed by base64url (no padding) of a
//! compact JSON object.
//!
//! Base64url keeps the string to `[A-Za-z0-9_-]` after the prefix, so it
//! survives argv and environment variables on every OS without quoting. The
//! JSON inside keeps the format extensible and the errors precise. Field names
//! are single letters to keep the string short:
//!
//! | key | meaning | required |
//! |-----|---------|----------|
//! | `k` | kind: `unix`, `pipe`, `tcp`, `amqp` or `inherited` | yes |
//! | `a` | address: socket path, pipe name, `host:port` (`[v6]:port`), the AMQP service name, or the inherited descriptor's (handle's) number in decimal | yes |
//! | `u` | `amqp` only: the broker URL, password included | for `amqp` |
//! | `s` | secret, base64url, 16 to 64 bytes | no (absent: no authentication) |
//! | `f` | body format: `json` or `msgpack` | no (absent: not chosen, the handshake settles the fastest common one) |
//! | `m` | frame size limit in bytes | no (default 64 MiB) |
//! | `r` | `true`: frames through the shared-memory ring (`unix` and, on Unix, `inherited` only) | no (default off) |
//! | `p` | `inherited` only: the part the process holding the end plays, `connect` or `serve` | no (default `connect`) |

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::amqp_url::{AmqpUrl, check_service};
use super::state_error::{BodyError, ConnectorError, MAX_STATE_LEN, STATE_VERSION};
use super::{Address, Connector, DEFAULT_MAX_FRAME, Format, MIN_MAX_FRAME, Secret};
use crate::error::{Error, Result};

/// The fixed start of every dumped connector string, before the version.
pub const STATE_PREFIX: &str = "sb";

/// Quote characters a string picks up on its way through a shell, a config
/// file or a word processor.
const QUOTES: [char; 7] = [
    '"', '\'', '`', '\u{201C}', '\u{201D}', '\u{2018}', '\u{2019}',
];

impl Connector {
    /// The connector as a short ASCII string, `sb1:` and base64url: **the
    /// form to hand to another process** (argv, an environment variable, a
    /// file, a pipe). [`Connector::load_state`] (or `str::parse`) reads it
    /// back to an equal connector.
    ///
    /// The string has no whitespace and nothing a shell or `cmd.exe` would
    /// interpret. It contains the secret: pass it to the processes that
    /// should connect, and to no one else. To show a connector to a person or
    /// a log, use its `Display` (`{}`) instead, which leaves the secret out
    /// and cannot be loaded back.
    ///
    /// ```
    /// use switchboard::Connector;
    ///
    /// let connector = Connector::local();
    /// let handed_over = connector.dump_state();
    /// let in_the_child: Connector = handed_over.parse().unwrap();
    /// assert_eq!(in_the_child, connector);
    /// ```
    pub fn dump_state(&self) -> String {
        let mut body = Map::new();
        body.insert("k".into(), self.address.kind().into());
        let address = match &self.address {
            Address::Unix(path) => path.to_string_lossy().into_owned(),
            Address::Pipe(name) => name.clone(),
            Address::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Address::Tcp { host, port } => format!("{host}:{port}"),
            Address::Amqp { url, service } => {
                body.insert("u".into(), url.expose().into());
                service.clone()
            }
            Address::Inherited { number, serve } => {
                // Absent means connect: such strings read as they always did.
                if *serve {
                    body.insert("p".into(), "serve".into());
                }
                number.to_string()
            }
        };
        body.insert("a".into(), address.into());
        if let Some(secret) = &self.secret {
            body.insert("s".into(), URL_SAFE_NO_PAD.encode(secret.expose()).into());
        }
        if let Some(format) = self.format {
            body.insert("f".into(), format.name().into());
        }
        if self.max_frame != DEFAULT_MAX_FRAME {
            body.insert("m".into(), self.max_frame.into());
        }
        if self.shm_ring {
            body.insert("r".into(), true.into());
        }
        let json = Value::Object(body).to_string();
        format!(
            "{STATE_PREFIX}{STATE_VERSION}:{}",
            URL_SAFE_NO_PAD.encode(json)
        )
    }

    /// Reads a string made by [`Connector::dump_state`]. `str::parse` does the
    /// same (`Connector` implements `FromStr`).
    ///
    /// Surrounding whitespace (a trailing newline from a file or a pipe) is
    /// ignored. Anything else wrong gives [`Error::InvalidConnector`] with a
    /// [`ConnectorError`] that says what to fix: the string looks truncated,
    /// is wrapped in quotes, has a line break inside, does not start with
    /// `sb1:`, or holds a missing or invalid field. The message never
    /// repeats the secret.
    ///
    /// ```
    /// use switchboard::{Connector, ConnectorError, Error};
    ///
    /// let text = Connector::local().dump_state();
    /// let quoted = format!("'{text}'");
    /// let Err(Error::InvalidConnector(error)) = Connector::load_state(&quoted) else {
    ///     panic!("quotes are refused");
    /// };
    /// assert_eq!(error, ConnectorError::Quoted('\''));
    /// assert!(error.to_string().contains("drop the quotes"));
    /// ```
    pub fn load_state(text: &str) -> Result<Connector> {
        parse(text.trim()).map_err(Error::InvalidConnector)
    }
}

fn parse(text: &str) -> Result<Connector, ConnectorError> {
    if text.is_empty() {
        return Err(ConnectorError::Empty);
    }
    if text.len() > MAX_STATE_LEN {
        return Err(ConnectorError::TooLong(text.len()));
    }
    if let Some(quote) = text
        .chars()
        .next()
        .filter(|c| QUOTES.contains(c))
        .or_else(|| text.chars().next_back().filter(|c| QUOTES.contains(c)))
    {
        return Err(ConnectorError::Quoted(quote));
    }
    if let Some((index, found)) = text.chars().enumerate().find(|(_, c)| c.is_whitespace()) {
        return Err(ConnectorError::Whitespace {
            at: index + 1,
            found,
        });
    }
    let (head, body) = match text.split_once(':') {
        Some((head, body)) if head.starts_with(STATE_PREFIX) => (head, body),
        _ => {
            let prefix = format!("{STATE_PREFIX}{STATE_VERSION}:");
            return Err(ConnectorError::WrongPrefix {
                start: text.chars().take(8).collect(),
                found_at: text.find(&prefix).map(|at| text[..at].chars().count()),
            });
        }
    };
    let version = &head[STATE_PREFIX.len()..];
    if version != STATE_VERSION.to_string() {
        return Err(ConnectorError::UnknownVersion(
            version.chars().take(16).collect(),
        ));
    }
    let json = URL_SAFE_NO_PAD.decode(body).map_err(|error| match error {
        // A length no encoder produces, or a last character with bits left
        // over: the end is missing.
        base64::DecodeError::InvalidLength(_) | base64::DecodeError::InvalidLastSymbol(..) => {
            ConnectorError::Truncated(BodyError::new(error))
        }
        other => ConnectorError::BadBase64(other),
    })?;
    let fields = match serde_json::from_slice(&json) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => return Err(ConnectorError::BadBody(None)),
        Err(error) if error.is_eof() => {
            return Err(ConnectorError::Truncated(BodyError::new(error)));
        }
        Err(error) => return Err(ConnectorError::BadBody(Some(BodyError::new(error)))),
    };

    let kind = string_field(&fields, "k")?;
    let address_text = string_field(&fields, "a")?;
    let address = match kind {
        "unix" => {
            if address_text.is_empty() {
                return Err(invalid("a", "the socket path is empty"));
            }
            Address::Unix(address_text.into())
        }
        "pipe" => {
            check_pipe_name(address_text).map_err(|reason| invalid("a", reason))?;
            Address::Pipe(address_text.to_owned())
        }
        "tcp" => parse_host_port(address_text)?,
        "amqp" => {
            check_service(address_text).map_err(|reason| invalid("a", reason))?;
            // The reason never quotes the URL: it holds the broker password.
            let url = AmqpUrl::parse(string_field(&fields, "u")?)
                .map_err(|reason| invalid("u", reason))?;
            Address::Amqp {
                url,
                service: address_text.to_owned(),
            }
        }
        "inherited" => parse_inherited(address_text, fields.get("p"))?,
        other => {
            return Err(ConnectorError::UnknownKind(
                other.chars().take(32).collect(),
            ));
        }
    };

    if !matches!(address, Address::Inherited { .. }) && fields.contains_key("p") {
        return Err(invalid(
            "p",
            "only an inherited channel's connector says which part its holder plays",
        ));
    }

    let secret = match fields.get("s") {
        None => None,
        Some(Value::String(encoded)) => {
            // The value is secret: errors describe it without echoing it.
            let bytes = URL_SAFE_NO_PAD
                .decode(encoded)
                .map_err(|_| invalid("s", "the secret is not valid base64url"))?;
            Some(Secret::from_bytes(bytes).map_err(|reason| invalid("s", reason))?)
        }
        Some(_) => return Err(invalid("s", "expected a string")),
    };

    let format = match fields.get("f") {
        None => None,
        Some(Value::String(name)) => Some(Format::from_name(name).ok_or_else(|| {
            invalid(
                "f",
                format!("unknown format {name:?} (known: json, msgpack)"),
            )
        })?),
        Some(_) => return Err(invalid("f", "expected a string")),
    };

    let max_frame = match fields.get("m") {
        None => DEFAULT_MAX_FRAME,
        Some(value) => value
            .as_u64()
            .and_then(|m| u32::try_from(m).ok())
            .filter(|m| *m >= MIN_MAX_FRAME)
            .ok_or_else(|| {
                invalid(
                    "m",
                    format!(
                        "expected a whole number from {MIN_MAX_FRAME} to {}",
                        u32::MAX
                    ),
                )
            })?,
    };

    let shm_ring = match fields.get("r") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) if super::ring_setting::can_carry(&address) => true,
        Some(Value::Bool(true)) => {
            return Err(invalid(
                "r",
                "only a local (unix) connector or an inherited channel can use the ring",
            ));
        }
        Some(_) => return Err(invalid("r", "expected true or false")),
    };

    Ok(Connector {
        address,
        secret,
        format,
        max_frame,
        shm_ring,
    })
}

fn string_field<'a>(
    fields: &'a Map<String, Value>,
    key: &'static str,
) -> Result<&'a str, ConnectorError> {
    match fields.get(key) {
        None => Err(ConnectorError::MissingField(key)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(key, "expected a string")),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConnectorError {
    ConnectorError::InvalidField {
        field,
        reason: reason.into(),
    }
}

fn parse_host_port(text: &str) -> Result<Address, ConnectorError> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| invalid("a", format!("{text:?} is not host:port")))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    check_host(host).map_err(|reason| invalid("a", reason))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| invalid("a", format!("{port:?} is not a port number")))?;
    Ok(Address::Tcp {
        host: host.to_owned(),
        port,
    })
}

/// An inherited channel's number: decimal digits only (no sign, no
/// spaces), as `dump_state` writes it; and its holder's part.
fn parse_inherited(text: &str, part: Option<&Value>) -> Result<Address, ConnectorError> {
    let serve = match part {
        None => false,
        Some(Value::String(part)) if part == "connect" => false,
        Some(Value::String(part)) if part == "serve" => true,
        Some(_) => return Err(invalid("p", "expected \"connect\" or \"serve\"")),
    };
    let number = Some(text)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| {
            invalid(
                "a",
                format!(
                    "{:?} is not a descriptor or handle number",
                    text.chars().take(24).collect::<String>()
                ),
            )
        })?;
    Ok(Address::Inherited { number, serve })
}

/// A TCP host must be a plausible name or IP literal.
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.len() > 253 {
        return Err("the host is longer than 253 characters".into());
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '%')))
    {
        return Err(format!("the host {host:?} contains {c:?}"));
    }
    Ok(())
}

/// A pipe name is the part after `\\.\pipe\`: printable, no backslash.
pub(crate) fn check_pipe_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the pipe name is empty".into());
    }
    if name.len() > 200 {
        return Err("the pipe name is longer than 200 characters".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("the pipe name contains {c:?}"));
    }
    Ok(())
}
