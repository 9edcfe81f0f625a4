"""The ``inherited`` connector kind (PROTOCOL.md §1): one end of a
``socketpair`` the parent left open across exec, named by its descriptor
number. It is taken over once: checked (open, inherited, a Unix stream
socket), marked close-on-exec, never reconnected. A channel whose string
says its holder serves on it (``"p": "serve"``: the parent is the client)
is refused untouched: this package has no server for inherited channels."""

from __future__ import annotations

import os
import socket
import stat
import threading
from typing import TYPE_CHECKING, Set

from .errors import ConnectorError

if TYPE_CHECKING:
    from .connector import Connector

_taken: Set[int] = set()
_lock = threading.Lock()


def take(connector: "Connector") -> socket.socket:
    if connector.extra.get("p") == "serve":
        raise ConnectorError(
            "this inherited channel is for this process to serve on: its parent is the "
            "client (Client::child_channel), so no client can connect with it; the Python "
            "package does not serve inherited channels: serve it from Rust with Server::bind")
    address = connector.address
    if not address.isdigit():
        raise ConnectorError(f"an inherited channel's address is a descriptor number, not {address[:16]!r}")
    fd = int(address)
    with _lock:
        if fd in _taken:
            raise ConnectorError(f"the inherited channel (descriptor {fd}) was already used: it connects once")
        if fd < 3:
            raise ConnectorError(f"descriptor {fd} is standard input, output or error, not an inherited channel")
        try:
            info = os.fstat(fd)
        except OSError:
            raise ConnectorError(
                f"descriptor {fd} is not open in this process: the connector names a channel "
                "this process did not inherit (was it handed to another process?)") from None
        if not stat.S_ISSOCK(info.st_mode):
            raise ConnectorError(f"descriptor {fd} is not a socket, so not an inherited channel")
        if not os.get_inheritable(fd):
            raise ConnectorError(f"descriptor {fd} was not inherited (it is close-on-exec): "
                                 "not the channel this connector names")
        sock = socket.socket(fileno=fd)
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            sock.detach()
            raise ConnectorError(f"descriptor {fd} is not a Unix stream socket, so not an inherited channel")
        os.set_inheritable(fd, False)
        _taken.add(fd)
        return sock
