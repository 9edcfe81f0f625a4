"""switchboard_ipc: the switchboard IPC protocol in pure Python.

A Python process and a Rust process (built on the ``switchboard`` crate)
hand each other one connector string and talk: requests, notifications and
streams, both ways, with mutual authentication. The blocking
:class:`Client` lives here; the asyncio side (client, router, server) in
:mod:`switchboard_ipc.aio`.
"""

from ._wire import PROTOCOL_VERSION
from .client import Client
from .connector import ENV_VAR, Connector
from .errors import (
    AuthenticationError,
    AuthFailed,
    Disconnected,
    InvalidConnector,
    Timeout,
    ConnectorError,
    DisconnectedError,
    Error,
    ProtocolError,
    RefusedError,
    RemoteError,
    TimeoutError,
    UnsupportedConnectorError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthFailed",
    "AuthenticationError",
    "Disconnected",
    "InvalidConnector",
    "Timeout",
    "Client",
    "Connector",
    "ConnectorError",
    "DisconnectedError",
    "ENV_VAR",
    "Error",
    "PROTOCOL_VERSION",
    "ProtocolError",
    "RefusedError",
    "RemoteError",
    "TimeoutError",
    "UnsupportedConnectorError",
]
