//! The handshake: version check, client id, body format, budgets, and
//! mutual challenge-response authentication with the connector's secret.
//!
//! Four JSON frames (PROTOCOL.md §3 has the fields):
//! 1. client hello: version, client id, formats it can use, what it accepts
//!    in flight, client nonce;
//! 2. server challenge: version, chosen format, server nonce, and the
//!    server's proof over both nonces (or a refusal);
//! 3. client proof over both nonces, and the proof that it holds the
//!    resumption token of its id if it has one (or a refusal);
//! 4. server welcome: what the server accepts in flight and the client's
//!    resumption token (or a refusal).
//!
//! Each proof is HMAC-SHA256 keyed by the secret over a role label and both
//! nonces, so neither side can replay the other's proof, and the secret
//! itself never crosses the wire. The server's half is split in steps
//! ([`ServerHello`], [`Proven`]) so the server can refuse a client for its
//! own reasons (limits, peer uid, an id in use) between them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use serde::{Deserialize, Serialize};

use super::PROTOCOL_VERSION;
pub use super::client_id::check_client_id;
use super::format::Format;
use super::handshake_proof::{CLIENT_LABEL, RESUME_LABEL, SERVER_LABEL, keyed, mac};
use super::handshake_ring as ring_setup;
use super::handshake_shm::{self as shm_setup, ClientShm, Fields, PeerShm, SHM_VERSION};
pub use super::handshake_shm::{Offer, ShmLink};
use crate::config::Window;
use crate::connector::{Connector, random_bytes};
use crate::error::{Error, Result};
use crate::transport::{FrameReader, FrameWriter, OutFrame, seal};

/// Handshake frames are small; a larger one is an attack or a stranger.
const HANDSHAKE_MAX_FRAME: u32 = 16 * 1024;
const NONCE_LEN: usize = 32;
/// Bytes of a resumption token.
pub const TOKEN_LEN: usize = 32;

/// Refusal codes (PROTOCOL.md §3).
pub mod refusal {
    /// Wrong or missing secret.
    pub const AUTH_FAILED: &str = "auth_failed";
    /// The versions differ.
    pub const VERSION_MISMATCH: &str = "version_mismatch";
    /// A malformed hello, an invalid client id, no common format.
    pub const BAD_HELLO: &str = "bad_hello";
    /// The client's user may not connect to this server.
    pub const NOT_PERMITTED: &str = "not_permitted";
    /// The server has as many connections as it takes.
    pub const BUSY: &str = "busy";
    /// Another live connection holds this client id.
    pub const ID_IN_USE: &str = "id_in_use";
}
use refusal::{AUTH_FAILED, BAD_HELLO, VERSION_MISMATCH};

/// What the handshake settled, on the client's side.
#[derive(Debug)]
pub struct Settled {
    /// Shared memory, when both sides offered it (PROTOCOL.md §9).
    pub shm: Option<ShmLink>,
    /// The body format both sides use from now on.
    pub format: Format,
    /// What the server accepts in flight.
    pub peer_window: Window,
    /// The token that proves this client's id when it connects again.
    pub token: Vec<u8>,
    /// The capacity of each direction of the shared-memory ring, when the
    /// server agreed to it (PROTOCOL.md §10).
    pub ring: Option<u32>,
}

/// Everything but the version is optional when parsing, so that a client of
/// another version is told about the version, not about a missing field.
#[derive(Serialize, Deserialize)]
struct Hello {
    switchboard: u32,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    formats: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<Window>,
    /// Asks for the shared-memory ring, with this capacity per direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shm: Option<u32>,
}

#[derive(Serialize, Deserialize, Default)]
struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shm: Option<u32>,
    /// `pool`, `fds`, `handles` (steps 3 and 4), in this place.
    #[serde(flatten)]
    shm_fields: Fields,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    switchboard: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proof: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    welcome: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// In the welcome: the ring the client asked for is agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<Refusal>,
}

#[derive(Serialize, Deserialize)]
struct Refusal {
    code: String,
    message: String,
}

/// Runs the client's half. `window` is what this client accepts in flight;
/// `token` proves its id if it held it before. `Err` says why the
/// connection is unusable.
pub async fn client(
    reader: &mut FrameReader,
    writer: &mut FrameWriter,
    connector: &Connector,
    client_id: &str,
    window: Window,
    token: Option<&[u8]>,
    shm: Option<Offer<'_>>,
) -> Result<Settled> {
    reader.set_max(HANDSHAKE_MAX_FRAME);
    let secret = connector.secret();
    let client_nonce = random_bytes::<NONCE_LEN>();
    let formats = connector.offered_formats();
    let hello = Hello {
        switchboard: PROTOCOL_VERSION,
        client_id: client_id.to_owned(),
        formats: formats.iter().map(|f| f.name().to_owned()).collect(),
        nonce: Some(URL_SAFE_NO_PAD.encode(client_nonce)),
        window: Some(window),
        ring: ring_setup::asked(connector),
        shm: shm.map(|_| SHM_VERSION),
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
    let server_nonce = decode_field(challenge.nonce.as_deref(), "nonce")?;

    let mut answer = Reply::default();
    match (secret, challenge.proof.as_deref()) {
        (Some(secret), Some(proof)) => {
            let server_proof = decode_field(Some(proof), "proof")?;
            if keyed(secret.expose(), SERVER_LABEL, &client_nonce, &server_nonce)
                .verify_slice(&server_proof)
                .is_err()
            {
                let told = "the client's secret differs from the server's";
                let _ = send(writer, &refusal_reply(AUTH_FAILED, told)).await;
                return Err(Error::AuthFailed(
                    "the server's proof does not match this connector's secret: \
                     the server holds a different secret"
                        .into(),
                ));
            }
            answer.proof = Some(mac(
                secret.expose(),
                CLIENT_LABEL,
                &server_nonce,
                &client_nonce,
            ));
        }
        (Some(_), None) => {
            let told = "the client's connector has a secret, but the server's has none";
            let _ = send(writer, &refusal_reply(AUTH_FAILED, told)).await;
            return Err(Error::AuthFailed(
                "the server proved no secret, but this connector has one: \
                 it may not be the server this connector was made for"
                    .into(),
            ));
        }
        (None, Some(_)) => {
            let told = "the server requires a secret, but the client's connector has none";
            let _ = send(writer, &refusal_reply(AUTH_FAILED, told)).await;
            return Err(Error::AuthFailed(
                "the server requires a secret, but this connector has none".into(),
            ));
        }
        (None, None) => {}
    }
    answer.resume = token.map(|token| mac(token, RESUME_LABEL, &server_nonce, &client_nonce));
    // A client that cannot make its pool (out of descriptors or memory)
    // sends its proof without one: the server then declines shared memory.
    let shm = shm
        .filter(|_| challenge.shm == Some(SHM_VERSION))
        .and_then(|offer| {
            ClientShm::new(offer)
                .inspect_err(|e| tracing::debug!("shared memory declined: no pool: {e}"))
                .ok()
        });
    let shm = match shm {
        Some(shm) => {
            answer.shm_fields = shm.fields();
            shm.send(writer, sealed(&answer)?.first()).await?;
            Some(shm)
        }
        None => {
            send(writer, &answer).await?;
            None
        }
    };

    let welcome: Reply = receive(reader).await?;
    refused(&welcome)?;
    let (Some(true), Some(peer_window)) = (welcome.welcome, welcome.window) else {
        return Err(Error::Protocol(
            "the server did not confirm the handshake".into(),
        ));
    };
    let token = decode_field(welcome.token.as_deref(), "token")?;
    let ring = ring_setup::agreed(connector, welcome.ring)?;
    // The step-4 descriptors are taken here, before the ring (if agreed)
    // is offered after the welcome: the reads stop expecting descriptors.
    let shm = match shm {
        Some(shm) => shm.finish(&welcome.shm_fields).map_err(Error::Protocol)?,
        None => None,
    };
    reader.set_max(connector.max_frame());
    Ok(Settled {
        shm,
        format,
        peer_window,
        token,
        ring,
    })
}

/// The server's half after the client's hello was read and found well
/// formed: the server may still refuse (limits, the peer's user) before
/// any secret is used.
pub struct ServerHello {
    client_id: String,
    window: Window,
    format: Format,
    client_nonce: Vec<u8>,
    ring: Option<u32>,
    shm_offered: bool,
}

impl ServerHello {
    /// Reads and checks the hello (version, client id, formats); a bad one
    /// is refused here and ends in `Err`.
    pub async fn read(reader: &mut FrameReader, writer: &mut FrameWriter) -> Result<ServerHello> {
        reader.set_max(HANDSHAKE_MAX_FRAME);
        let hello: Hello = match receive(reader).await {
            Ok(hello) => hello,
            Err(e @ Error::Protocol(_)) => {
                let _ = send(writer, &refusal_reply(BAD_HELLO, &e.to_string())).await;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if hello.switchboard != PROTOCOL_VERSION {
            let message = format!(
                "the server speaks protocol version {PROTOCOL_VERSION}, the client {}: \
                 both sides need the same version; upgrade the older one",
                hello.switchboard
            );
            let mut reply = refusal_reply(VERSION_MISMATCH, &message);
            reply.switchboard = Some(PROTOCOL_VERSION);
            let _ = send(writer, &reply).await;
            return Err(Error::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: hello.switchboard,
            });
        }
        let checked = check_client_id(&hello.client_id).and_then(|()| {
            let nonce = decode_field(hello.nonce.as_deref(), "nonce").map_err(|e| e.to_string())?;
            let window = hello
                .window
                .ok_or_else(|| "handshake field \"window\" is missing".to_owned())?;
            Ok((nonce, window))
        });
        let (client_nonce, window) = match checked {
            Ok(checked) => checked,
            Err(reason) => {
                let _ = send(writer, &refusal_reply(BAD_HELLO, &reason)).await;
                return Err(Error::Protocol(reason));
            }
        };
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
            let _ = send(writer, &refusal_reply(BAD_HELLO, &message)).await;
            return Err(Error::Protocol(message));
        };
        Ok(ServerHello {
            client_id: hello.client_id,
            window,
            format,
            client_nonce,
            ring: ring_setup::granted(hello.ring),
            shm_offered: hello.shm == Some(SHM_VERSION),
        })
    }

    /// Tells the client why it is refused, and returns the same as an error.
    pub async fn refuse(self, writer: &mut FrameWriter, code: &str, message: &str) -> Error {
        let _ = send(writer, &refusal_reply(code, message)).await;
        Error::Refused {
            reason: message.to_owned(),
        }
    }

    /// Steps 2 and 3: proves the server holds the secret and checks the
    /// client's proof (and, when both offered shared memory, takes the
    /// client's pool and channel).
    pub async fn challenge(
        self,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
        connector: &Connector,
        shm: Option<Offer<'_>>,
    ) -> Result<Proven> {
        let shm = shm.filter(|_| self.shm_offered);
        let secret = connector.secret();
        let server_nonce = random_bytes::<NONCE_LEN>().to_vec();
        let client_nonce = &self.client_nonce;
        let mut challenge = Reply {
            switchboard: Some(PROTOCOL_VERSION),
            format: Some(self.format.name().to_owned()),
            nonce: Some(URL_SAFE_NO_PAD.encode(&server_nonce)),
            shm: shm.map(|_| SHM_VERSION),
            ..Reply::default()
        };
        if let Some(secret) = secret {
            challenge.proof = Some(mac(
                secret.expose(),
                SERVER_LABEL,
                client_nonce,
                &server_nonce,
            ));
        }
        // Before the client can answer: its answer brings descriptors.
        shm_setup::expect(shm);
        send(writer, &challenge).await?;

        let answer = receive::<Reply>(reader).await;
        let received = match &answer {
            Ok(answer) => shm_setup::received(shm, &answer.shm_fields),
            // Taken all the same: the reads stop expecting descriptors.
            Err(_) => shm_setup::received(shm, &Fields::default()),
        };
        let answer = answer?;
        if let Some(refusal) = answer.error {
            return Err(refusal_error(&refusal, None));
        }
        match (secret, answer.proof.as_deref()) {
            (Some(secret), Some(proof)) => {
                let proof = decode_field(Some(proof), "proof")?;
                if keyed(secret.expose(), CLIENT_LABEL, &server_nonce, client_nonce)
                    .verify_slice(&proof)
                    .is_err()
                {
                    let message =
                        "the client's proof is wrong: its connector holds a different secret";
                    let _ = send(writer, &refusal_reply(AUTH_FAILED, message)).await;
                    return Err(Error::AuthFailed(message.into()));
                }
            }
            (Some(_), None) => {
                let message = "the server requires a secret, but the client's connector has none";
                let _ = send(writer, &refusal_reply(AUTH_FAILED, message)).await;
                return Err(Error::AuthFailed(message.into()));
            }
            (None, Some(_)) => {
                let message = "the client's connector has a secret, but the server's has none";
                let _ = send(writer, &refusal_reply(AUTH_FAILED, message)).await;
                return Err(Error::AuthFailed(message.into()));
            }
            (None, None) => {}
        }
        let resume = match answer.resume.as_deref() {
            Some(resume) => Some(decode_field(Some(resume), "resume")?),
            None => None,
        };
        // Acted on only now: a client that did not prove the secret is
        // told about that, not about its descriptors.
        let peer_shm = match received {
            Ok(peer_shm) => peer_shm,
            Err(message) => {
                let _ = send(writer, &refusal_reply(BAD_HELLO, &message)).await;
                return Err(Error::Protocol(message));
            }
        };
        Ok(Proven {
            client_id: self.client_id,
            format: self.format,
            peer_window: self.window,
            client_nonce: self.client_nonce,
            server_nonce,
            resume,
            ring: self.ring,
            peer_shm,
            shm: None,
        })
    }
}

/// A client that proved it holds the secret; the server still decides
/// whether it may have its id.
pub struct Proven {
    /// The id the client asks for.
    pub client_id: String,
    /// The settled body format.
    pub format: Format,
    /// What the client accepts in flight.
    pub peer_window: Window,
    /// The shared-memory ring the client asked for, if the server can give
    /// it; the server may decline by clearing this before the welcome.
    pub ring: Option<u32>,
    client_nonce: Vec<u8>,
    server_nonce: Vec<u8>,
    resume: Option<Vec<u8>>,
    /// What the client passed for shared memory, until the welcome.
    peer_shm: Option<PeerShm>,
    /// Shared memory settled by the welcome.
    shm: Option<ShmLink>,
}

impl Proven {
    /// Shared memory, if the welcome settled it (once).
    pub fn take_shm(&mut self) -> Option<ShmLink> {
        self.shm.take()
    }

    /// True if the client proved it holds `token` (the one issued to the
    /// last connection with its id).
    pub fn holds(&self, token: &[u8]) -> bool {
        self.resume.as_deref().is_some_and(|proof| {
            keyed(token, RESUME_LABEL, &self.server_nonce, &self.client_nonce)
                .verify_slice(proof)
                .is_ok()
        })
    }

    /// Step 4: welcomes the client with what the server accepts in flight
    /// and the token that will prove its id next time (and the server's
    /// pool, when both offered shared memory: then [`Proven::take_shm`]).
    pub async fn welcome(
        &mut self,
        reader: &mut FrameReader,
        writer: &mut FrameWriter,
        connector: &Connector,
        window: Window,
        token: &[u8],
    ) -> Result<()> {
        let mut welcome = Reply {
            welcome: Some(true),
            window: Some(window),
            token: Some(URL_SAFE_NO_PAD.encode(token)),
            ring: self.ring,
            ..Reply::default()
        };
        // Declined (no pool could be made here), the closure is not called
        // and the welcome goes without a pool.
        self.shm = match self.peer_shm.take() {
            Some(peer) => {
                peer.welcome(writer, |fields| {
                    welcome.shm_fields = fields;
                    Ok(sealed(&welcome)?.into_vec())
                })
                .await?
            }
            None => None,
        };
        if self.shm.is_none() {
            send(writer, &welcome).await?;
        }
        reader.set_max(connector.max_frame());
        Ok(())
    }

    /// Tells the client why it is refused, and returns the same as an error.
    pub async fn refuse(self, writer: &mut FrameWriter, code: &str, message: &str) -> Error {
        let _ = send(writer, &refusal_reply(code, message)).await;
        Error::Refused {
            reason: message.to_owned(),
        }
    }
}

fn refusal_reply(code: &str, message: &str) -> Reply {
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
        refusal::NOT_PERMITTED | refusal::BUSY | refusal::ID_IN_USE => Error::Refused {
            reason: refusal.message.clone(),
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
    if matches!(field, "nonce" | "token") && bytes.len() < 16 {
        return Err(Error::Protocol(
            "handshake nonce is shorter than 16 bytes".into(),
        ));
    }
    Ok(bytes)
}

async fn send<T: Serialize>(writer: &mut FrameWriter, message: &T) -> Result<()> {
    writer.send(&sealed(message)?.into_vec()).await
}

fn sealed<T: Serialize>(message: &T) -> Result<OutFrame> {
    let mut buf = OutFrame::with_capacity(256);
    serde_json::to_writer(&mut buf, message).map_err(|e| Error::Encode(e.into()))?;
    seal(buf, HANDSHAKE_MAX_FRAME)
}

async fn receive<T: for<'de> Deserialize<'de>>(reader: &mut FrameReader) -> Result<T> {
    let frame = reader.read().await?.ok_or(Error::Disconnected)?;
    serde_json::from_slice(&frame)
        .map_err(|e| Error::Protocol(format!("malformed handshake message: {e}")))
}
