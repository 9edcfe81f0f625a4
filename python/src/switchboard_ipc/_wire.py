"""The bytes on the wire, without any I/O: frames (PROTOCOL.md §2), the
messages inside them (§4), body formats, and the flow-control arithmetic
(§5). The blocking client and the asyncio side both build on this."""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

from .errors import ProtocolError

# Version 4 only added what this package never offers (shared memory) and
# a format preference it follows anyway: a peer offering no `shm` speaks
# exactly version 3 with the number 4 (PROTOCOL.md). So this package speaks
# both, 4 first; a client refused by a version 3 server tries again with 3.
PROTOCOL_VERSION = 4
VERSIONS = (4, 3)

REQUEST, NOTIFICATION, RESPONSE, ERROR, CANCEL, CREDIT, PING, PONG, ITEM, END = range(1, 11)
MAX_ROUTE_LEN = 1024
MAX_ERROR_MESSAGE = 16 * 1024
HANDSHAKE_MAX_FRAME = 16 * 1024

# What this side accepts in flight from its peer (the handshake's window).
DEFAULT_WINDOW_MESSAGES = 256
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024
KEEPALIVE = 10.0

_LEN = struct.Struct("<I")
# The length that starts every frame, for the readers cutting frames out.
FRAME_LENGTH = _LEN
_REQ_HEAD = struct.Struct("<IBQH")
_NOTE_HEAD = struct.Struct("<IBH")
_ID_HEAD = struct.Struct("<IBQ")
_ERR_HEAD = struct.Struct("<IBQiH")
_CREDIT = struct.Struct("<IBIQ")
_U64 = struct.Struct("<Q")
# The request id after a response's kind byte, for the readers' fast path.
REQUEST_ID = _U64
_ERR_FIELDS = struct.Struct("<QiH")
_CREDIT_FIELDS = struct.Struct("<IQ")

PING_FRAME = _LEN.pack(1) + bytes([PING])
PONG_FRAME = _LEN.pack(1) + bytes([PONG])


# ----- body formats -----


class Codec(NamedTuple):
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _json_decode(body: bytes) -> Any:
    return json.loads(body) if body else None


CODECS = {"json": Codec("json", _json_encode, _json_decode)}
try:
    import msgpack  # type: ignore[import-untyped,unused-ignore]

    def _msgpack_decode(body: bytes) -> Any:
        return msgpack.unpackb(body, raw=False, strict_map_key=False) if body else None

    CODECS["msgpack"] = Codec(
        "msgpack", lambda value: msgpack.packb(value, use_bin_type=True), _msgpack_decode
    )
except ImportError:  # the msgpack extra is not installed: JSON only
    pass


def offered_formats(preferred: Optional[str]) -> List[str]:
    """The formats to offer in a hello, most preferred first: the
    connector's choice when this side has it, then the rest this side has,
    MessagePack before JSON (a connector that chose no format prefers the
    compact one). A peer that prefers a format we lack settles on one we
    have: the server picks the first of this list it supports."""
    have = [f for f in ("msgpack", "json") if f in CODECS]
    return ([preferred] if preferred in CODECS else []) + [f for f in have if f != preferred]


# ----- frames and messages -----


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def request(request_id: int, route: bytes, body: bytes) -> bytes:
    return _REQ_HEAD.pack(11 + len(route) + len(body), REQUEST, request_id, len(route)) + route + body


def notification(route: bytes, body: bytes) -> bytes:
    return _NOTE_HEAD.pack(3 + len(route) + len(body), NOTIFICATION, len(route)) + route + body


def response(request_id: int, body: bytes) -> bytes:
    return _ID_HEAD.pack(9 + len(body), RESPONSE, request_id) + body


def item(request_id: int, body: bytes) -> bytes:
    return _ID_HEAD.pack(9 + len(body), ITEM, request_id) + body


def end(request_id: int) -> bytes:
    return _ID_HEAD.pack(9, END, request_id)


def cancel(request_id: int) -> bytes:
    return _ID_HEAD.pack(9, CANCEL, request_id)


def credit(messages: int, nbytes: int) -> bytes:
    return _CREDIT.pack(13, CREDIT, messages, nbytes)


def error(request_id: int, code: int, message: str, data: Optional[bytes] = None) -> bytes:
    text = message.encode()
    if len(text) > MAX_ERROR_MESSAGE:
        text = text[: MAX_ERROR_MESSAGE - 3].decode(errors="ignore").encode() + b"..."
    rest = data or b""
    return _ERR_HEAD.pack(15 + len(text) + len(rest), ERROR, request_id, code, len(text)) + text + rest


class Message(NamedTuple):
    """One decoded message. Fields a kind does not have are 0 / empty."""

    kind: int
    id: int = 0
    route: str = ""
    body: bytes = b""
    code: int = 0
    message: str = ""


def parse(payload: bytes) -> Message:
    """Decodes one message (the frame's payload). Raises ProtocolError for
    an unknown kind, a truncated message or a route that is not UTF-8."""
    try:
        kind = payload[0]
        if kind in (RESPONSE, ITEM):
            return Message(kind, _U64.unpack_from(payload, 1)[0], "", payload[9:])
        if kind == REQUEST:
            request_id, length = struct.unpack_from("<QH", payload, 1)
            if len(payload) < 11 + length:
                raise ProtocolError("a truncated request")
            return Message(kind, request_id, payload[11 : 11 + length].decode(), payload[11 + length :])
        if kind == NOTIFICATION:
            (length,) = struct.unpack_from("<H", payload, 1)
            if len(payload) < 3 + length:
                raise ProtocolError("a truncated notification")
            return Message(kind, 0, payload[3 : 3 + length].decode(), payload[3 + length :])
        if kind == ERROR:
            request_id, code, length = _ERR_FIELDS.unpack_from(payload, 1)
            if len(payload) < 15 + length:
                raise ProtocolError("a truncated error")
            text = payload[15 : 15 + length].decode(errors="replace")
            return Message(kind, request_id, "", payload[15 + length :], code, text)
        if kind in (END, CANCEL):
            return Message(kind, _U64.unpack_from(payload, 1)[0])
        if kind == CREDIT:
            messages, nbytes = _CREDIT_FIELDS.unpack_from(payload, 1)
            return Message(kind, messages, "", b"", nbytes)
        if kind in (PING, PONG):
            return Message(kind)
    except (struct.error, IndexError):
        raise ProtocolError("a truncated message") from None
    except UnicodeDecodeError:
        raise ProtocolError("a route that is not UTF-8") from None
    raise ProtocolError(f"unknown message kind {kind}")


def encode_route(route: str) -> bytes:
    data = route.encode()
    if len(data) > MAX_ROUTE_LEN:
        raise ValueError(f"the route is {len(data)} bytes long; routes are at most {MAX_ROUTE_LEN}")
    return data


# ----- flow control (§5) -----


class Budget:
    """What one side has in flight towards its peer, against the window
    the peer announced. Not thread-safe: callers hold their own lock."""

    __slots__ = ("messages", "nbytes", "max_messages", "max_bytes")

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.messages = 0
        self.nbytes = 0
        self.max_messages = max(1, max_messages)
        self.max_bytes = max(1, max_bytes)

    def cost(self, size: int) -> int:
        """A message's bytes against the window: its frame length, and no
        more than the whole window (so a huge one travels alone)."""
        return size if size < self.max_bytes else self.max_bytes

    def fits(self, cost: int) -> bool:
        return self.messages < self.max_messages and self.nbytes + cost <= self.max_bytes

    def take(self, cost: int) -> None:
        self.messages += 1
        self.nbytes += cost

    def give(self, messages: int, nbytes: int) -> None:
        if messages > self.messages or nbytes > self.nbytes:
            raise ProtocolError("the peer returned more credit than was in flight")
        self.messages -= messages
        self.nbytes -= nbytes


def window_of(value: Any) -> Tuple[int, int]:
    """A handshake ``window`` object as (messages, bytes)."""
    if not isinstance(value, dict):
        raise ProtocolError("the handshake has no window")
    messages, nbytes = value.get("messages"), value.get("bytes")
    if not isinstance(messages, int) or not isinstance(nbytes, int) or messages < 1 or nbytes < 1:
        raise ProtocolError("the handshake's window is malformed")
    return messages, nbytes
