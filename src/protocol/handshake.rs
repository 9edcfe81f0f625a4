//! The handshake: version check, client id, body format, and mutual
//! challenge-response authentication with the connector's secret.
//!
//! Four JSON frames (PROTOCOL.md has the fields):
//! 1. client hello: version, client id, formats it can use, client nonce;
//! 2. server challenge: version, chosen format, server nonce, and the
//!    server's proof over both nonces (or an error);
//! 3. client proof over both nonces (or an error if the server's was wrong);
//! 4. server welcome (or an error).
//!
//! Each proof is HMAC-SHA256 keyed by the secret over a role label and both
//! nonces, so neither side can replay the other's proof, and the secret
//! itself never crosses the wire.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{PROTOCOL_VERSION, serializer};
use crate::connector::{Connector, Format, Secret, random_bytes};
use crate::error::{Error, Result};
use crate::transport::{FrameReader, FrameWriter, OutFrame, seal};

/// Handshake frames are small; a larger one is an attack or a stranger.
const HANDSHAKE_MAX_FRAME: u32 = 16 * 1024;
/// A peer that has not finished the handshake by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const NONCE_LEN: usize = 32;
const SERVER_LABEL: &[u8] = b"switchboard server proof\0";
const CLIENT_LABEL: &[u8] = b"switchboard client proof\0";

/// What the handshake settled.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The body format both sides use from now on.
    pub format: Format,
    /// The client's id.
    pub client_id: String,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    switchboard: u32,
    client_id: String,
    formats: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    switchboard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proof: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    welcome: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Refusal>,
}

#[derive(Serialize, Deserialize)]
struct Refusal {
    code: String,
    message: String,
}

const AUTH_FAILED: &str = "auth_failed";
const VERSION_MISMATCH: &str = "version_mismatch";
const BAD_HELLO: &str = "bad_hello";

/// Runs the client's half. `Err` says why the connection is unusable.
pub async fn client(
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    connector: &Connector,
    client_id: &str,
) -> Result<Settled> {
    reader.set_max(HANDSHAKE_MAX_FRAME);
    let secret = connector.secret();
    let client_nonce = random_bytes::<NONCE_LEN>();
    let mut formats = vec![connector.format()];
    formats.extend(
        serializer::available()
            .into_iter()
            .filter(|f| *f != connector.format()),
    );
    let hello = Hello {
        switchboard: PROTOCOL_VERSION,
        client_id: client_id.to_owned(),
        formats: formats.iter().map(|f| f.name().to_owned()).collect(),
        nonce: secret.map(|_| URL_SAFE_NO_PAD.encode(client_nonce)),
    };
    send(writer, &hello).await?;

    let challenge: Reply = receive(reader).await?;
    refused(&challenge)?;
    let theirs = challenge.switchboard.unwrap_or(0);
    if theirs != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    let format_name = challenge.format.as_deref().unwrap_or("");
    let format = Format::from_name(format_name)
        .filter(|f| formats.contains(f))
        .ok_or_else(|| {
            Error::Protocol(format!(
                "the server chose format {format_name:?}, which was not offered"
            ))
        })?;

    let mut proof_reply = Reply::default();
    if let Some(secret) = secret {
        let server_nonce = decode_field(challenge.nonce.as_deref(), "nonce")?;
        let server_proof = decode_field(challenge.proof.as_deref(), "proof")?;
        let mut mac = keyed(secret, SERVER_LABEL);
        mac.update(&client_nonce);
        mac.update(&server_nonce);
        if mac.verify_slice(&server_proof).is_err() {
            let told = "the client's secret differs from the server's";
            let _ = send(writer, &refusal(AUTH_FAILED, told)).await;
            return Err(Error::AuthFailed(
                "the server's proof does not match this connector's secret: \
                 the server holds a different secret"
                    .into(),
            ));
        }
        let mut mac = keyed(secret, CLIENT_LABEL);
        mac.update(&server_nonce);
        mac.update(&client_nonce);
        proof_reply.proof = Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    } else if challenge.proof.is_some() {
        return Err(Error::AuthFailed(
            "the server requires a secret, but this connector has none".into(),
        ));
    }
    send(writer, &proof_reply).await?;

    let welcome: Reply = receive(reader).await?;
    refused(&welcome)?;
    if welcome.welcome != Some(true) {
        return Err(Error::Protocol(
            "the server did not confirm the handshake".into(),
        ));
    }
    reader.set_max(connector.max_frame());
    Ok(Settled {
        format,
        client_id: client_id.to_owned(),
    })
}

/// Runs the server's half. `Err` says why this client was refused; the
/// client has been told the same reason where the protocol allows.
pub async fn server(
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    connector: &Connector,
) -> Result<Settled> {
    reader.set_max(HANDSHAKE_MAX_FRAME);
    let hello: Hello = match receive(reader).await {
        Ok(hello) => hello,
        Err(e @ Error::Protocol(_)) => {
            let _ = send(writer, &refusal(BAD_HELLO, &e.to_string())).await;
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if hello.switchboard != PROTOCOL_VERSION {
        let message = format!(
            "the server speaks protocol version {PROTOCOL_VERSION}, the client {}",
            hello.switchboard
        );
        let mut reply = refusal(VERSION_MISMATCH, &message);
        reply.switchboard = Some(PROTOCOL_VERSION);
        let _ = send(writer, &reply).await;
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.switchboard,
        });
    }
    if let Err(reason) = check_client_id(&hello.client_id) {
        let _ = send(writer, &refusal(BAD_HELLO, &reason)).await;
        return Err(Error::Protocol(reason));
    }
    let Some(format) = hello
        .formats
        .iter()
        .filter_map(|name| Format::from_name(name))
        .find(|f| f.is_available())
    else {
        let message = format!(
            "no common body format: the client offered {:?}",
            hello.formats
        );
        let _ = send(writer, &refusal(BAD_HELLO, &message)).await;
        return Err(Error::Protocol(message));
    };

    let secret = connector.secret();
    let server_nonce = random_bytes::<NONCE_LEN>();
    let mut challenge = Reply {
        switchboard: Some(PROTOCOL_VERSION),
        format: Some(format.name().to_owned()),
        ..Reply::default()
    };
    let client_nonce = match (secret, hello.nonce.as_deref()) {
        (Some(secret), Some(nonce)) => {
            let client_nonce = decode_field(Some(nonce), "nonce")?;
            let mut mac = keyed(secret, SERVER_LABEL);
            mac.update(&client_nonce);
            mac.update(&server_nonce);
            challenge.nonce = Some(URL_SAFE_NO_PAD.encode(server_nonce));
            challenge.proof = Some(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
            Some(client_nonce)
        }
        (Some(_), None) => {
            let message = "the server requires a secret, but the client's connector has none";
            let _ = send(writer, &refusal(AUTH_FAILED, message)).await;
            return Err(Error::AuthFailed(message.into()));
        }
        (None, Some(_)) => {
            let message = "the client's connector has a secret, but the server's has none";
            let _ = send(writer, &refusal(AUTH_FAILED, message)).await;
            return Err(Error::AuthFailed(message.into()));
        }
        (None, None) => None,
    };
    send(writer, &challenge).await?;

    let answer: Reply = receive(reader).await?;
    if let Some(refusal) = answer.error {
        return Err(refusal_error(&refusal, None));
    }
    if let (Some(secret), Some(client_nonce)) = (secret, client_nonce) {
        let proof = decode_field(answer.proof.as_deref(), "proof")?;
        let mut mac = keyed(secret, CLIENT_LABEL);
        mac.update(&server_nonce);
        mac.update(&client_nonce);
        if mac.verify_slice(&proof).is_err() {
            let message = "the client's proof is wrong: its connector holds a different secret";
            let _ = send(writer, &refusal(AUTH_FAILED, message)).await;
            return Err(Error::AuthFailed(message.into()));
        }
    }
    let welcome = Reply {
        welcome: Some(true),
        ..Reply::default()
    };
    send(writer, &welcome).await?;
    reader.set_max(connector.max_frame());
    Ok(Settled {
        format,
        client_id: hello.client_id,
    })
}

/// Client ids are chosen by clients; keep them printable and short.
pub fn check_client_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err(format!(
            "client id must be 1 to 128 bytes, got {}",
            id.len()
        ));
    }
    if id.chars().any(char::is_control) {
        return Err("client id contains control characters".into());
    }
    Ok(())
}

fn keyed(secret: &Secret, label: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key length");
    mac.update(label);
    mac
}

fn refusal(code: &str, message: &str) -> Reply {
    Reply {
        error: Some(Refusal {
            code: code.to_owned(),
            message: message.to_owned(),
        }),
        ..Reply::default()
    }
}

fn refused(reply: &Reply) -> Result<()> {
    match &reply.error {
        Some(refusal) => Err(refusal_error(refusal, reply.switchboard)),
        None => Ok(()),
    }
}

fn refusal_error(refusal: &Refusal, theirs: Option<u32>) -> Error {
    match refusal.code.as_str() {
        AUTH_FAILED => Error::AuthFailed(format!("the peer refused: {}", refusal.message)),
        VERSION_MISMATCH => Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: theirs.unwrap_or(0),
        },
        _ => Error::Protocol(format!(
            "the peer refused the handshake: {}",
            refusal.message
        )),
    }
}

fn decode_field(value: Option<&str>, field: &str) -> Result<Vec<u8>> {
    let value =
        value.ok_or_else(|| Error::Protocol(format!("handshake field {field:?} is missing")))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| Error::Protocol(format!("handshake field {field:?} is not base64url")))?;
    if field == "nonce" && bytes.len() < 16 {
        return Err(Error::Protocol(
            "handshake nonce is shorter than 16 bytes".into(),
        ));
    }
    Ok(bytes)
}

async fn send<T: Serialize>(writer: &mut FrameWriter, message: &T) -> Result<()> {
    let mut buf = OutFrame::with_capacity(256);
    serde_json::to_writer(&mut buf, message).map_err(|e| Error::Encode(e.to_string()))?;
    writer
        .send(&seal(buf, HANDSHAKE_MAX_FRAME)?.into_vec())
        .await
}

async fn receive<T: for<'de> Deserialize<'de>>(reader: &mut FrameReader) -> Result<T> {
    let frame = reader.read().await?.ok_or(Error::Disconnected)?;
    serde_json::from_slice(&frame)
        .map_err(|e| Error::Protocol(format!("malformed handshake message: {e}")))
}
