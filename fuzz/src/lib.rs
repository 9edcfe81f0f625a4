//! Helpers shared by the fuzz targets: a reader that hands out its bytes in
//! fuzz-chosen pieces, and a scripted handshake peer over an in-memory
//! duplex on a paused current-thread runtime.
//!
//! The library is reached only through `switchboard::fuzzing`; what this
//! crate knows of the wire it knows from PROTOCOL.md.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use switchboard::fuzzing::Settled;
use switchboard::{Connector, Format, Secret};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream, ReadBuf};

/// A stream that returns `data` in pieces whose sizes cycle through `sizes`;
/// a size of 0 means "not ready yet" once (the next poll gets at least a
/// byte). No sizes: everything in one piece.
pub struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<u8>,
    turn: usize,
    pended: bool,
}

impl Chunked {
    /// A stream of `data`, cut into pieces of `sizes` bytes in turn.
    pub fn new(data: Vec<u8>, sizes: Vec<u8>) -> Chunked {
        Chunked {
            data,
            pos: 0,
            sizes,
            turn: 0,
            pended: false,
        }
    }
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let left = this.data.len() - this.pos;
        if left == 0 {
            return Poll::Ready(Ok(()));
        }
        let size = match this.sizes.get(this.turn % this.sizes.len().max(1)) {
            None => left,
            Some(&size) => usize::from(size),
        };
        this.turn += 1;
        if size == 0 && !this.pended {
            this.pended = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.pended = false;
        let n = size.max(1).min(left).min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The secret the fuzzed connectors hold (the fuzzer's peer knows it too,
/// but uses it only where a frame asks for it with [`PROOF_TOKEN`]).
pub const SECRET: [u8; 32] = [0x5b; 32];

/// In a peer frame, replaced by the correct proof before sending, so inputs
/// can get past authentication. Only these inputs may end in `Ok` when the
/// connector has a secret.
pub const PROOF_TOKEN: &[u8] = b"$PROOF";

/// Separates peer frames in framed mode (never in UTF-8 JSON).
pub const FRAME_SEPARATOR: u8 = 0xff;

/// In a client frame (step 3), replaced by the proof that the client holds
/// [`HELD_TOKEN`]. Only these inputs may resume an id.
pub const RESUME_TOKEN: &[u8] = b"$RESUME";

/// The resumption token the server under test holds for the client's id
/// (as if an earlier connection had it); the client under test presents it
/// when the flags ask.
pub const HELD_TOKEN: [u8; 32] = [0x3c; 32];

const SERVER_LABEL: &[u8] = b"switchboard server proof\0";
const CLIENT_LABEL: &[u8] = b"switchboard client proof\0";
const RESUME_LABEL: &[u8] = b"switchboard resume\0";

/// Which proofs the peer filled in correctly.
#[derive(Debug, Default, Clone, Copy)]
pub struct Proved {
    /// `$PROOF`: the secret's.
    pub secret: bool,
    /// `$RESUME`: the held token's.
    pub token: bool,
}

/// How an input's first byte sets up a handshake run.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The connector under test holds [`SECRET`].
    pub secret: bool,
    /// It prefers MessagePack.
    pub msgpack: bool,
    /// The peer's bytes go out as they are; otherwise they are split at
    /// [`FRAME_SEPARATOR`] and each piece gets a length prefix.
    pub raw: bool,
    /// The client under test presents [`HELD_TOKEN`] to resume its id.
    pub resume: bool,
}

impl Setup {
    /// Reads the flags byte.
    pub fn from_flags(flags: u8) -> Setup {
        Setup {
            secret: flags & 1 != 0,
            msgpack: flags & 2 != 0,
            raw: flags & 4 != 0,
            resume: flags & 8 != 0,
        }
    }

    /// The connector the side under test uses.
    pub fn connector(self) -> Connector {
        let mut connector = Connector::tcp("127.0.0.1", 1)
            .expect("a valid TCP connector")
            .without_secret();
        if self.secret {
            connector = connector.with_secret(Secret::from_bytes(SECRET).expect("32 bytes"));
        }
        if self.msgpack {
            connector = connector.with_format(Format::MsgPack);
        }
        connector
    }
}

/// Which half of the handshake is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The fuzzer plays the client.
    Server,
    /// The fuzzer plays the server.
    Client,
}

/// How a handshake run ended.
#[derive(Debug)]
pub struct Outcome {
    /// What the side under test returned.
    pub result: switchboard::Result<Settled>,
    /// The frames the side under test wrote (bodies), as far as they were
    /// whole.
    pub sent: Vec<Vec<u8>>,
    /// The proofs the peer filled in ([`PROOF_TOKEN`], [`RESUME_TOKEN`])
    /// with the values correct for this run's nonces.
    pub proved: Proved,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        // Time moves only when every task waits: a deadline firing means a
        // real hang, found at once and the same way every run.
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
}

/// Nothing in a handshake waits on the clock; a run still going after this
/// (virtual) time is stuck.
const DEADLINE: Duration = Duration::from_secs(60);

/// How long the peer waits for the other side's first frame.
const PEER_PATIENCE: Duration = Duration::from_secs(1);

/// Runs one half of the handshake against a peer that sends `peer` and then
/// closes its sending side.
pub fn run_handshake(side: Side, setup: Setup, peer: &[u8]) -> Outcome {
    let connector = setup.connector();
    let frames: Vec<Vec<u8>> = if setup.raw {
        vec![peer.to_vec()]
    } else {
        peer.split(|b| *b == FRAME_SEPARATOR)
            .map(|body| body.to_vec())
            .collect()
    };
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let under_test = async {
                match side {
                    Side::Server => {
                        switchboard::fuzzing::handshake_server(ours, &connector, &HELD_TOKEN).await
                    }
                    Side::Client => {
                        let token = setup.resume.then_some(&HELD_TOKEN[..]);
                        switchboard::fuzzing::handshake_client(
                            ours,
                            &connector,
                            "fuzz-client",
                            token,
                        )
                        .await
                    }
                }
            };
            let peer = play_peer(side, setup.raw, frames, theirs);
            let run = async { tokio::join!(under_test, peer) };
            let (result, (sent, proved)) = tokio::time::timeout(DEADLINE, run)
                .await
                .unwrap_or_else(|_| panic!("the {side:?} half of the handshake hung"));
            Outcome {
                result,
                sent,
                proved,
            }
        })
    })
}

/// Sends the frames (reading what the other side sent first where a proof
/// needs its nonce), closes the sending side, and collects everything the
/// other side wrote until it closes.
async fn play_peer(
    side: Side,
    raw: bool,
    frames: Vec<Vec<u8>>,
    stream: DuplexStream,
) -> (Vec<Vec<u8>>, Proved) {
    let (mut read, mut write) = tokio::io::split(stream);
    let mut received: Vec<u8> = Vec::new();
    let mut sent_hello: Option<Vec<u8>> = None;
    let mut proved = Proved::default();
    for mut frame in frames {
        // Raw mode writes the input as it is: no frames to fill in.
        let wanted =
            !raw && (find(&frame, PROOF_TOKEN).is_some() || find(&frame, RESUME_TOKEN).is_some());
        if wanted {
            // The proofs need the nonce of the other side's first frame
            // (server: the challenge; client: the hello).
            let theirs = loop {
                if let Some(first) = split_frames(&received).into_iter().next() {
                    break Some(first);
                }
                // A side waiting for more of our bytes before it answers
                // (a token in the hello itself) would wait for us forever:
                // give up on the proof after a (virtual) second instead.
                let mut chunk = [0u8; 4096];
                match tokio::time::timeout(PEER_PATIENCE, read.read(&mut chunk)).await {
                    Ok(Ok(0) | Err(_)) | Err(_) => break None,
                    Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
                }
            };
            // (client nonce, server nonce)
            let nonces = theirs.and_then(|theirs| match side {
                // We are the client: our hello's nonce, their challenge's.
                Side::Server => Some((nonce(sent_hello.as_deref()?)?, nonce(&theirs)?)),
                // We are the server: their hello's nonce, ours in this frame.
                Side::Client => Some((nonce(&theirs)?, nonce(&frame)?)),
            });
            if let Some((client_nonce, server_nonce)) = nonces {
                let proof = match side {
                    Side::Server => mac(&SECRET, CLIENT_LABEL, &server_nonce, &client_nonce),
                    Side::Client => mac(&SECRET, SERVER_LABEL, &client_nonce, &server_nonce),
                };
                proved.secret |= replace(&mut frame, PROOF_TOKEN, &proof);
                if side == Side::Server {
                    let resume = mac(&HELD_TOKEN, RESUME_LABEL, &server_nonce, &client_nonce);
                    proved.token |= replace(&mut frame, RESUME_TOKEN, &resume);
                }
            }
        }
        if sent_hello.is_none() {
            sent_hello = Some(frame.clone());
        }
        let bytes = match raw {
            true => frame,
            false => [&(frame.len() as u32).to_le_bytes()[..], &frame].concat(),
        };
        if write.write_all(&bytes).await.is_err() {
            break;
        }
    }
    let _ = write.shutdown().await;
    let _ = read.read_to_end(&mut received).await;
    (split_frames(&received), proved)
}

/// Replaces the first `token` in `frame` with `value`; true if there was one.
fn replace(frame: &mut Vec<u8>, token: &[u8], value: &str) -> bool {
    let Some(at) = find(frame, token) else {
        return false;
    };
    frame.splice(at..at + token.len(), value.bytes());
    true
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The whole frames at the start of `bytes`.
pub fn split_frames(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some((header, rest)) = bytes.split_first_chunk::<4>() {
        let len = u32::from_le_bytes(*header) as usize;
        let Some(body) = rest.get(..len) else { break };
        frames.push(body.to_vec());
        bytes = &rest[len..];
    }
    frames
}

/// The decoded `nonce` of a handshake frame.
fn nonce(frame: &[u8]) -> Option<Vec<u8>> {
    let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
    URL_SAFE_NO_PAD.decode(value.get("nonce")?.as_str()?).ok()
}

/// A proof as PROTOCOL.md defines it, base64url.
fn mac(key: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(label);
    mac.update(first);
    mac.update(second);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}
