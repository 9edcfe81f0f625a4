"""Opening the byte stream a connector names (blocking sockets), and the
handshake over it. The asyncio side has its own in ``aio``."""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Tuple

from . import _handshake, _inherited, _wire
from .connector import Connector
from .errors import DisconnectedError, Error, TimeoutError

# Errors that mean "no server there yet": connecting retries until the
# deadline, so a child may start before its parent's server listens.
_NOT_YET = (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN)


def open_socket(connector: Connector, deadline: float) -> socket.socket:
    connector.check_usable()
    if connector.kind == "inherited":
        return _inherited.take(connector)
    delay = 0.005
    while True:
        try:
            if connector.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    sock.connect(connector.address)
                except BaseException:
                    sock.close()
                    raise
            else:
                host, port = connector.host_port()
                sock = socket.create_connection((host, port), timeout=max(deadline - time.monotonic(), 0.001))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except socket.timeout:
            raise TimeoutError(f"could not reach {connector} in time") from None
        except OSError as error:
            if error.errno not in _NOT_YET or time.monotonic() + delay > deadline:
                raise DisconnectedError(f"could not connect to {connector}: {os.strerror(error.errno or 0)}") from error
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def recv_frame(sock: socket.socket, limit: int) -> bytes:
    head = _recv_exact(sock, 4)
    length = int.from_bytes(head, "little")
    if length > limit:
        raise DisconnectedError(f"the peer sent a {length}-byte frame during the handshake (limit {limit})")
    return _recv_exact(sock, length)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except socket.timeout:
            raise TimeoutError("the handshake did not finish in time") from None
        if not chunk:
            raise DisconnectedError("the server closed the connection during the handshake")
        data += chunk
    return bytes(data)


def handshake(sock: socket.socket, connector: Connector, client_id: str,
              window: Tuple[int, int], deadline: float, version: int) -> Tuple[str, Tuple[int, int]]:
    """Runs the client's half on a blocking socket; returns the settled
    format and the server's window."""
    key = (connector.dump_state(), client_id)
    side = _handshake.ClientSide(connector.secret, client_id, _wire.offered_formats(connector.format),
                                 window, _handshake.token_for(key), version)
    sock.settimeout(max(deadline - time.monotonic(), 0.001))
    try:
        sock.sendall(side.hello())
        try:
            settled, proof = side.answer(recv_frame(sock, _wire.HANDSHAKE_MAX_FRAME))
        except _handshake.Abort as abort:
            try:
                sock.sendall(abort.frame)
            except OSError:
                pass
            raise abort.error from None
        sock.sendall(proof)
        peer_window, token = side.welcome(recv_frame(sock, _wire.HANDSHAKE_MAX_FRAME))
    except socket.timeout:
        raise TimeoutError("the handshake did not finish in time") from None
    except (ConnectionError, OSError) as error:
        if isinstance(error, Error):
            raise
        raise DisconnectedError(f"the connection failed during the handshake: {error}") from error
    _handshake.remember_token(key, token)
    return settled, peer_window
