"""The package's exceptions: one base class, and one class per party at fault.

Each class also derives from the built-in exception a Python programmer
would catch for the same situation (``TimeoutError``, ``ConnectionError``,
``ValueError``), so generic handlers keep working.
"""

from __future__ import annotations

import builtins
from typing import Any, Optional


class Error(Exception):
    """The base of every exception this package raises."""


class ConnectorError(Error, ValueError):
    """A connector string (or ``@NAME``) is malformed, or names nothing.

    The message says what to fix; it never repeats the secret.
    """


class UnsupportedConnectorError(Error):
    """A well-formed connector of a kind this package cannot use here
    (``amqp``, a Windows named pipe on Unix, an inherited channel)."""


class AuthenticationError(Error):
    """The peer does not hold this connector's secret (or holds one where
    this side has none, or the reverse)."""


class RefusedError(Error):
    """The server refused the connection for a reason other than the
    secret: ``busy``, ``id_in_use``, ``not_permitted``, ``version_mismatch``
    or ``bad_hello``. :attr:`code` is the refusal code of PROTOCOL.md §3."""

    def __init__(self, code: str, message: str, version: Optional[int] = None) -> None:
        super().__init__(f"the server refused the connection ({code}): {message}")
        self.code = code
        self.message = message
        #: With ``version_mismatch``: the version the server speaks.
        self.version = version


class ProtocolError(Error):
    """The peer broke the wire protocol; the connection was closed."""


class TimeoutError(Error, builtins.TimeoutError):  # noqa: A001 - the name users expect
    """No answer (or no connection) within the time allowed."""


class DisconnectedError(Error, ConnectionError):
    """The connection is closed or was lost: every call still waiting on it
    fails with this, and so does every later call."""


class RemoteError(Error):
    """The peer answered with an error (PROTOCOL.md §4).

    :attr:`code` follows JSON-RPC (``-32601`` no such route, ``-32602``
    invalid params, ``-32000`` the handler's own error, ...), :attr:`message`
    says what went wrong, :attr:`data` is the handler's error value when it
    sent one (``None`` otherwise).
    """

    NO_ROUTE = -32601
    INVALID_PARAMS = -32602
    INTERNAL = -32603
    HANDLER = -32000
    SHUTTING_DOWN = -32001
    CANCELLED = -32800

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


# The Rust crate's names for the same failures (switchboard::Error's
# variants), so code reads alike in both languages.
AuthFailed = AuthenticationError
Disconnected = DisconnectedError
Timeout = TimeoutError
InvalidConnector = ConnectorError
