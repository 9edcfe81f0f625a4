"""The four handshake frames of PROTOCOL.md §3, without I/O: what each side
sends, and the checks on what it receives. Each proof is HMAC-SHA256 keyed
by the secret over a role label and both nonces, so the secret never
crosses the wire and neither proof can be replayed as the other."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from . import _wire
from .connector import b64decode, b64encode
from .errors import AuthenticationError, ProtocolError, RefusedError

SERVER_LABEL = b"switchboard server proof\0"
CLIENT_LABEL = b"switchboard client proof\0"
RESUME_LABEL = b"switchboard resume\0"
NONCE_LEN = 32

# Resumption tokens this process holds, by (connector, client id): a client
# that connects again under the same id proves it is the same holder, and
# replaces a connection the server still thinks alive (PROTOCOL.md §3).
_tokens: Dict[Tuple[str, str], bytes] = {}
_tokens_lock = threading.Lock()


def remember_token(key: Tuple[str, str], token: bytes) -> None:
    with _tokens_lock:
        _tokens[key] = token


def token_for(key: Tuple[str, str]) -> Optional[bytes]:
    with _tokens_lock:
        return _tokens.get(key)


def mac(key: bytes, label: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(key, label + first + second, hashlib.sha256).digest()


def encode(value: Dict[str, Any]) -> bytes:
    return _wire.frame(json.dumps(value, separators=(",", ":")).encode())


def decode(payload: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError:
        raise ProtocolError("a malformed handshake message") from None
    if not isinstance(value, dict):
        raise ProtocolError("a malformed handshake message")
    return value


def refusal(code: str, message: str) -> bytes:
    return encode({"error": {"code": code, "message": message}})


def refusal_error(reply: Dict[str, Any]) -> Exception:
    error = reply.get("error")
    code = str(error.get("code", "")) if isinstance(error, dict) else ""
    message = str(error.get("message", "")) if isinstance(error, dict) else ""
    if code == "auth_failed":
        return AuthenticationError(f"the server refused the secret: {message}")
    version = reply.get("switchboard")
    if code == "version_mismatch":
        message += f" (this package speaks versions {' and '.join(map(str, _wire.VERSIONS))})"
    return RefusedError(code or "unknown", message, version if isinstance(version, int) else None)


def field_bytes(reply: Dict[str, Any], field: str) -> bytes:
    value = reply.get(field)
    try:
        if not isinstance(value, str):
            raise ValueError
        data = b64decode(value)
    except ValueError:
        raise ProtocolError(f"handshake field {field!r} is missing or not base64url") from None
    if field in ("nonce", "token") and len(data) < 16:
        raise ProtocolError(f"handshake field {field!r} is shorter than 16 bytes")
    return data


class Abort(Exception):
    """A handshake step failed: send ``frame`` (a refusal), then raise
    ``error``."""

    def __init__(self, frame: bytes, error: Exception) -> None:
        super().__init__(str(error))
        self.frame = frame
        self.error = error


# ----- the client's half -----


class ClientSide:
    """The client's half, one step per received frame."""

    def __init__(self, secret: Optional[bytes], client_id: str, formats: List[str],
                 window: Tuple[int, int], token: Optional[bytes],
                 version: int = _wire.PROTOCOL_VERSION) -> None:
        self.version = version
        self.secret = secret
        self.client_id = client_id
        self.formats = formats
        self.window = window
        self.token = token
        self.nonce = os.urandom(NONCE_LEN)

    def hello(self) -> bytes:
        return encode({
            "switchboard": self.version,
            "client_id": self.client_id,
            "formats": self.formats,
            "nonce": b64encode(self.nonce),
            "window": {"messages": self.window[0], "bytes": self.window[1]},
        })

    def answer(self, payload: bytes) -> Tuple[str, bytes]:
        """Checks the challenge; returns the settled format and the proof
        frame to send. Raises Abort (with a refusal to send) or an error."""
        challenge = decode(payload)
        if "error" in challenge:
            raise refusal_error(challenge)
        if challenge.get("switchboard") != self.version:
            raise RefusedError("version_mismatch", f"the server speaks protocol version {challenge.get('switchboard')}, "
                               f"this client asked for {self.version}")
        settled = challenge.get("format")
        if settled not in self.formats:
            raise ProtocolError(f"the server chose format {settled!r}, which was not offered")
        server_nonce = field_bytes(challenge, "nonce")
        answer: Dict[str, Any] = {}
        proof = challenge.get("proof")
        if self.secret is not None and proof is not None:
            expected = mac(self.secret, SERVER_LABEL, self.nonce, server_nonce)
            if not hmac.compare_digest(expected, field_bytes(challenge, "proof")):
                raise Abort(refusal("auth_failed", "the client's secret differs from the server's"),
                            AuthenticationError("the server's proof does not match this connector's secret: "
                                                "the server holds a different secret"))
            answer["proof"] = b64encode(mac(self.secret, CLIENT_LABEL, server_nonce, self.nonce))
        elif self.secret is not None:
            raise Abort(refusal("auth_failed", "the client's connector has a secret, but the server's has none"),
                        AuthenticationError("the server proved no secret, but this connector has one"))
        elif proof is not None:
            raise Abort(refusal("auth_failed", "the server requires a secret, but the client's connector has none"),
                        AuthenticationError("the server requires a secret, but this connector has none"))
        if self.token is not None:
            answer["resume"] = b64encode(mac(self.token, RESUME_LABEL, server_nonce, self.nonce))
        return str(settled), encode(answer)

    @staticmethod
    def welcome(payload: bytes) -> Tuple[Tuple[int, int], bytes]:
        """Checks the welcome; returns the server's window and the token."""
        welcome = decode(payload)
        if "error" in welcome:
            raise refusal_error(welcome)
        if welcome.get("welcome") is not True:
            raise ProtocolError("the server did not confirm the handshake")
        return _wire.window_of(welcome.get("window")), field_bytes(welcome, "token")


# ----- the server's half -----


class Hello(NamedTuple):
    version: int
    client_id: str
    format: str
    nonce: bytes
    window: Tuple[int, int]


def read_hello(payload: bytes) -> Hello:
    """Checks a client hello; raises Abort with the refusal to send."""
    try:
        hello = decode(payload)
    except ProtocolError as error:
        raise Abort(refusal("bad_hello", str(error)), error) from None
    version = hello.get("switchboard")
    if version not in _wire.VERSIONS or isinstance(version, bool):
        message = f"the server speaks protocol version {_wire.PROTOCOL_VERSION}, the client {version}"
        frame = encode({"switchboard": _wire.PROTOCOL_VERSION,
                        "error": {"code": "version_mismatch", "message": message}})
        raise Abort(frame, RefusedError("version_mismatch", message))
    client_id = hello.get("client_id")
    try:
        if not isinstance(client_id, str) or not 1 <= len(client_id.encode()) <= 128:
            raise ProtocolError("client id must be 1 to 128 bytes")
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in client_id):
            raise ProtocolError("client id contains control characters")
        nonce = field_bytes(hello, "nonce")
        window = _wire.window_of(hello.get("window"))
    except ProtocolError as error:
        raise Abort(refusal("bad_hello", str(error)), error) from None
    formats = hello.get("formats")
    chosen = next((f for f in formats if f in _wire.CODECS), None) if isinstance(formats, list) else None
    if chosen is None:
        message = f"no common body format: the client offered {formats!r}"
        raise Abort(refusal("bad_hello", message), ProtocolError(message))
    return Hello(int(version), client_id, chosen, nonce, window)


class ServerSide:
    """The server's half after the hello: challenge, then check the proof."""

    def __init__(self, secret: Optional[bytes], hello: Hello) -> None:
        self.secret = secret
        self.hello = hello
        self.nonce = os.urandom(NONCE_LEN)

    def challenge(self) -> bytes:
        reply: Dict[str, Any] = {"switchboard": self.hello.version, "format": self.hello.format,
                                 "nonce": b64encode(self.nonce)}
        if self.secret is not None:
            reply["proof"] = b64encode(mac(self.secret, SERVER_LABEL, self.hello.nonce, self.nonce))
        return encode(reply)

    def check(self, payload: bytes) -> Optional[bytes]:
        """Checks the client's proof; returns its resume proof, if any."""
        answer = decode(payload)
        if "error" in answer:
            raise refusal_error(answer)
        proof = answer.get("proof")
        if self.secret is not None and proof is not None:
            expected = mac(self.secret, CLIENT_LABEL, self.nonce, self.hello.nonce)
            if not hmac.compare_digest(expected, field_bytes(answer, "proof")):
                message = "the client's proof is wrong: its connector holds a different secret"
                raise Abort(refusal("auth_failed", message), AuthenticationError(message))
        elif self.secret is not None:
            message = "the server requires a secret, but the client's connector has none"
            raise Abort(refusal("auth_failed", message), AuthenticationError(message))
        elif proof is not None:
            message = "the client's connector has a secret, but the server's has none"
            raise Abort(refusal("auth_failed", message), AuthenticationError(message))
        return field_bytes(answer, "resume") if "resume" in answer else None

    def holds(self, resume: Optional[bytes], token: bytes) -> bool:
        if resume is None:
            return False
        return hmac.compare_digest(mac(token, RESUME_LABEL, self.nonce, self.hello.nonce), resume)

    @staticmethod
    def welcome(window: Tuple[int, int], token: bytes) -> bytes:
        return encode({"welcome": True, "window": {"messages": window[0], "bytes": window[1]},
                       "token": b64encode(token)})
