"""The asyncio side: :class:`Client`, :class:`Router`, :class:`Server`.

The same protocol as the blocking :class:`switchboard_ipc.Client`, with
coroutines, async iterators for streams, and routers on both ends: a
server serves a router to its clients, and a client may pass a router so
the server can call it back on the same connection.
"""

from ..connector import Connector
from ..errors import (
    AuthenticationError,
    ConnectorError,
    DisconnectedError,
    Error,
    RemoteError,
    TimeoutError,
)
from ._client import Client
from ._peer import Peer, Stream
from ._router import Router, caller
from ._server import Server

__all__ = [
    "AuthenticationError",
    "Client",
    "Connector",
    "ConnectorError",
    "DisconnectedError",
    "Error",
    "Peer",
    "RemoteError",
    "Router",
    "Server",
    "Stream",
    "TimeoutError",
    "caller",
]
