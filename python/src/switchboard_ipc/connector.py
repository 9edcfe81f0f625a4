"""Connectors: where a server is and what secret proves it, as the short
``sb1:`` string one process hands another (PROTOCOL.md §1).

The string is ``sb1:`` then base64url (no padding) of a compact JSON object
with single-letter keys. Keys this package does not know are kept (and
written back by :meth:`Connector.dump_state`) but otherwise ignored, so a
string made by a newer Rust build still loads.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import tempfile
from typing import Any, Dict, Optional, Tuple

from .errors import ConnectorError, UnsupportedConnectorError

ENV_VAR = "SWITCHBOARD_CONNECTOR"
PREFIX = "sb"
VERSION = 1
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
MIN_MAX_FRAME = 64 * 1024
MIN_SECRET, MAX_SECRET = 16, 64
MAX_STATE_LEN = 4096
KINDS = ("unix", "pipe", "tcp", "amqp", "inherited")
USABLE_KINDS = ("unix", "tcp", "inherited") if hasattr(__import__("socket"), "AF_UNIX") else ("tcp",)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64encode(data: bytes) -> str:
    """base64url without padding (RFC 4648 §5)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text: str) -> bytes:
    """The inverse of :func:`b64encode`; raises ``ValueError``."""
    if not _B64_ALPHABET.issuperset(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Connector:
    """Where a server listens and the secret both sides hold.

    Make one with :meth:`local` or :meth:`tcp` (a server binds it), or read
    one with :meth:`load_state` / :meth:`from_env` (a client connects to
    it). ``str()`` and ``repr()`` leave the secret out; only
    :meth:`dump_state` contains it.
    """

    __slots__ = ("kind", "address", "secret", "format", "max_frame", "_extra")

    def __init__(
        self,
        kind: str,
        address: str,
        secret: Optional[bytes] = None,
        format: Optional[str] = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        extra: Optional[Dict[str, Any]] = None,
    ) -> None:
        if secret is not None and not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise ConnectorError(f"a secret is {MIN_SECRET} to {MAX_SECRET} bytes, got {len(secret)}")
        if not MIN_MAX_FRAME <= max_frame <= 0xFFFFFFFF:
            raise ConnectorError(f"the frame size limit must be {MIN_MAX_FRAME} to {0xFFFFFFFF}")
        self.kind = kind
        self.address = address
        self.secret = secret
        self.format = format
        self.max_frame = max_frame
        self._extra: Dict[str, Any] = dict(extra or {})

    # ----- making connectors -----

    @classmethod
    def local(cls) -> "Connector":
        """A private same-machine connector with a fresh secret: a Unix
        socket ``s`` in a new directory ``sb-<random>`` under the temp
        directory, which the server creates with mode 0700 when it binds
        (as Rust's ``Connector::local``). Where Unix sockets are missing
        (Windows) it is TCP on 127.0.0.1 with a fresh port and secret."""
        if "unix" not in USABLE_KINDS:
            return cls.tcp("127.0.0.1", 0)
        name = "sb-" + secrets.token_hex(6)
        return cls("unix", os.path.join(tempfile.gettempdir(), name, "s"), secrets.token_bytes(32))

    @classmethod
    def unix_socket(cls, path: str) -> "Connector":
        """A Unix socket at ``path``, with a fresh secret."""
        if not path or path.endswith("/"):
            raise ConnectorError(f"{path!r} does not name a socket file")
        return cls("unix", path, secrets.token_bytes(32))

    @classmethod
    def tcp(cls, host: str, port: int) -> "Connector":
        """TCP ``host:port`` (port 0: a free one when bound), with a fresh
        secret: TCP connectors always authenticate."""
        _check_host(host)
        if not 0 <= port <= 65535:
            raise ConnectorError(f"{port} is not a port number")
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return cls("tcp", address, secrets.token_bytes(32))

    @classmethod
    def from_env(cls, var: str = ENV_VAR) -> "Connector":
        """The connector a parent put in the environment variable
        ``SWITCHBOARD_CONNECTOR`` (or ``var``)."""
        text = os.environ.get(var)
        if text is None:
            raise ConnectorError(f"the environment variable {var} is not set: no connector was handed to this process")
        return cls.load_state(text)

    @classmethod
    def load_state(cls, text: str) -> "Connector":
        """Reads a string made by ``dump_state`` (either language's), or
        resolves ``@NAME`` through the services file named by
        ``SWITCHBOARD_SERVICES`` and then this user's registry.

        Raises :class:`ConnectorError` saying what is wrong (truncated,
        quoted, wrapped, wrong prefix, a bad field), never echoing the
        secret."""
        text = text.strip()
        if text.startswith("@"):
            from .registry import resolve

            return resolve(text[1:])
        return _parse(text)

    def with_secret(self, secret: Optional[bytes]) -> "Connector":
        """A copy with this secret (``None``: no authentication)."""
        return Connector(self.kind, self.address, secret, self.format, self.max_frame, self._extra)

    def with_format(self, format: Optional[str]) -> "Connector":
        """A copy preferring this body format (``json`` or ``msgpack``;
        ``None``: no preference, MessagePack when both sides have it)."""
        return Connector(self.kind, self.address, self.secret, format, self.max_frame, self._extra)

    def with_address(self, address: str) -> "Connector":
        """A copy at another address of the same kind (a bound port)."""
        return Connector(self.kind, address, self.secret, self.format, self.max_frame)

    # ----- reading connectors -----

    def dump_state(self) -> str:
        """The ``sb1:...`` string to hand to another process (argv, the
        environment, a file). It holds the secret."""
        body: Dict[str, Any] = dict(self._extra)
        body["k"] = self.kind
        body["a"] = self.address
        if self.secret is not None:
            body["s"] = b64encode(self.secret)
        if self.format is not None:
            body["f"] = self.format
        if self.max_frame != DEFAULT_MAX_FRAME:
            body["m"] = self.max_frame
        text = json.dumps(body, separators=(",", ":"))
        return f"{PREFIX}{VERSION}:{b64encode(text.encode())}"

    @property
    def extra(self) -> Dict[str, Any]:
        """Fields of the string this package does not use (kept as read)."""
        return dict(self._extra)

    def host_port(self) -> Tuple[str, int]:
        """A ``tcp`` connector's host and port."""
        return _split_host_port(self.address)

    def check_usable(self) -> None:
        """Raises :class:`UnsupportedConnectorError` unless this package can
        connect to (or bind) this connector here."""
        if self.kind in USABLE_KINDS:
            return
        why = {
            "amqp": "AMQP (RabbitMQ) connectors are served by the Rust crate only",
            "pipe": "Windows named pipes are not supported by the Python package",
            "unix": "this platform has no Unix domain sockets",
            "inherited": "inherited Windows pipe handles are not supported by the Python package",
        }.get(self.kind, f"connector kind {self.kind!r} is not one this package knows")
        raise UnsupportedConnectorError(
            f"{why}; the Python package connects to {', '.join(USABLE_KINDS)} connectors "
            "(serve this one from Rust on a local or tcp connector, or upgrade the package)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Connector):
            return NotImplemented
        return self.dump_state() == other.dump_state()

    def __hash__(self) -> int:
        return hash(self.dump_state())

    def __str__(self) -> str:
        secret = "secret <redacted>" if self.secret is not None else "no secret"
        return f"{self.kind}:{self.address} ({secret})"

    def __repr__(self) -> str:
        return f"<Connector {self}>"


def _check_host(host: str) -> None:
    if not host:
        raise ConnectorError("the TCP host is empty")
    if len(host) > 253:
        raise ConnectorError("the TCP host is longer than 253 characters")
    for c in host:
        if not (c.isascii() and (c.isalnum() or c in ".-_:%")):
            raise ConnectorError(f"the TCP host {host!r} contains {c!r}")


def _split_host_port(text: str) -> Tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ConnectorError(f"the connector's address (field \"a\") is invalid: {text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    _check_host(host)
    if not port.isdigit() or int(port) > 65535:
        raise ConnectorError(f"the connector's address (field \"a\") is invalid: {port!r} is not a port number")
    return host, int(port)


def _invalid(key: str, reason: str) -> ConnectorError:
    names = {"k": "kind", "a": "address", "s": "secret", "f": "body format", "m": "frame size limit"}
    return ConnectorError(f"the connector's {names.get(key, 'setting')} (field {key!r}) is invalid: {reason}")


def _parse(text: str) -> Connector:
    if not text:
        raise ConnectorError("the connector string is empty")
    if len(text) > MAX_STATE_LEN:
        raise ConnectorError(f"the string is {len(text)} bytes long; connector strings are at most {MAX_STATE_LEN}")
    if text[0] in _QUOTES or text[-1] in _QUOTES:
        quote = text[0] if text[0] in _QUOTES else text[-1]
        raise ConnectorError(f"the string is wrapped in quotes ({quote}): drop the quotes")
    for at, c in enumerate(text, 1):
        if c.isspace():
            raise ConnectorError(
                f"the string contains whitespace at character {at}: connector strings contain "
                "no whitespace (was it wrapped onto several lines?); join the pieces"
            )
    head, sep, body = text.partition(":")
    if not sep or not head.startswith(PREFIX):
        found = text.find(f"{PREFIX}{VERSION}:")
        if found > 0:
            raise ConnectorError(
                f'it does not start with "sb1:", but "sb1:" comes after {found} other characters: '
                'pass only the part from "sb1:" on'
            )
        raise ConnectorError(
            f'it does not start with "sb1:" (it starts with {text[:8]!r}); a connector string is '
            '"sb1:" followed by letters, digits, \'-\' and \'_\''
        )
    if head[len(PREFIX):] != str(VERSION):
        raise ConnectorError(f"unknown connector version {head[len(PREFIX):][:16]!r}; this package reads version {VERSION}")
    bad = next((i for i, c in enumerate(body) if c not in _B64_ALPHABET), None)
    if bad is not None:
        raise ConnectorError(
            f'character {bad + 1} after "sb1:" is {body[bad]!r}, which connector strings never '
            "contain: only letters, digits, '-' and '_' follow the prefix"
        )
    try:
        raw = b64decode(body)
    except (ValueError, binascii.Error):
        raise ConnectorError(_TRUNCATED) from None
    try:
        fields = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConnectorError(_NOT_A_CONNECTOR) from None
    except json.JSONDecodeError as error:
        if error.pos >= len(error.doc.rstrip()) or error.msg.startswith("Unterminated string"):
            raise ConnectorError(_TRUNCATED) from None
        raise ConnectorError(_NOT_A_CONNECTOR) from None
    if not isinstance(fields, dict):
        raise ConnectorError(_NOT_A_CONNECTOR)
    return _from_fields(fields)


_TRUNCATED = (
    "the string looks truncated (cut short while copying?): it ends before the "
    "connector does; copy all of it, to the last character"
)
_NOT_A_CONNECTOR = (
    'the string does not hold a connector: it has the "sb1:" prefix, but what follows '
    "is not what dump_state writes (damaged while copying?)"
)


def _from_fields(fields: Dict[str, Any]) -> Connector:
    for key, name in (("k", "kind"), ("a", "address")):
        if key not in fields:
            raise ConnectorError(f"the connector has no {name} (field {key!r}): the string was edited or not made by dump_state")
        if not isinstance(fields[key], str):
            raise _invalid(key, "expected a string")
    kind: str = fields["k"]
    address: str = fields["a"]
    if kind == "unix" and not address:
        raise _invalid("a", "the socket path is empty")
    if kind == "tcp":
        _split_host_port(address)
    if kind == "amqp" and not isinstance(fields.get("u"), str):
        raise ConnectorError("the connector has no broker URL (field 'u')")
    secret: Optional[bytes] = None
    if "s" in fields:
        if not isinstance(fields["s"], str):
            raise _invalid("s", "expected a string")
        try:
            secret = b64decode(fields["s"])
        except (ValueError, binascii.Error):
            raise _invalid("s", "the secret is not valid base64url") from None
        if not MIN_SECRET <= len(secret) <= MAX_SECRET:
            raise _invalid("s", f"a secret is {MIN_SECRET} to {MAX_SECRET} bytes, this one {len(secret)}")
    format = fields.get("f")
    if format is not None and not isinstance(format, str):
        raise _invalid("f", "expected a string")
    max_frame = fields.get("m", DEFAULT_MAX_FRAME)
    if isinstance(max_frame, bool) or not isinstance(max_frame, int) or not MIN_MAX_FRAME <= max_frame <= 0xFFFFFFFF:
        raise _invalid("m", f"expected a whole number from {MIN_MAX_FRAME} to {0xFFFFFFFF}")
    extra = {k: v for k, v in fields.items() if k not in ("k", "a", "s", "f", "m")}
    return Connector(kind, address, secret, format, max_frame, extra)
