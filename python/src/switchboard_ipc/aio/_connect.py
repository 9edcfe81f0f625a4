"""Opening a connection on asyncio and running either half of the
handshake over it (PROTOCOL.md §3)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from typing import Optional, Tuple

from .. import _handshake, _inherited, _wire
from ..connector import Connector
from ..errors import DisconnectedError, Error, TimeoutError

_NOT_YET = (errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN)

Streams = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_streams(connector: Connector, deadline: float) -> Streams:
    connector.check_usable()
    if connector.kind == "inherited":
        sock = _inherited.take(connector)
        sock.setblocking(False)
        return await asyncio.open_unix_connection(sock=sock)
    delay = 0.005
    while True:
        try:
            remaining = max(deadline - time.monotonic(), 0.001)
            if connector.kind == "unix":
                return await asyncio.wait_for(asyncio.open_unix_connection(connector.address), remaining)
            host, port = connector.host_port()
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), remaining)
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return reader, writer
        except asyncio.TimeoutError:
            raise TimeoutError(f"could not reach {connector} in time") from None
        except OSError as error:
            if error.errno not in _NOT_YET or time.monotonic() + delay > deadline:
                raise DisconnectedError(f"could not connect to {connector}: {os.strerror(error.errno or 0)}") from error
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)


async def read_frame(reader: asyncio.StreamReader, limit: int) -> bytes:
    try:
        head = await reader.readexactly(4)
        length = int.from_bytes(head, "little")
        if length > limit:
            raise DisconnectedError(f"the peer sent a {length}-byte frame during the handshake (limit {limit})")
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise DisconnectedError("the peer closed the connection during the handshake") from None


async def client_handshake(streams: Streams, connector: Connector, client_id: str,
                           window: Tuple[int, int], version: int) -> Tuple[str, Tuple[int, int]]:
    reader, writer = streams
    key = (connector.dump_state(), client_id)
    side = _handshake.ClientSide(connector.secret, client_id, _wire.offered_formats(connector.format),
                                 window, _handshake.token_for(key), version)
    try:
        writer.write(side.hello())
        try:
            settled, proof = side.answer(await read_frame(reader, _wire.HANDSHAKE_MAX_FRAME))
        except _handshake.Abort as abort:
            writer.write(abort.frame)
            raise abort.error from None
        writer.write(proof)
        peer_window, token = side.welcome(await read_frame(reader, _wire.HANDSHAKE_MAX_FRAME))
    except OSError as error:
        if isinstance(error, Error):
            raise
        raise DisconnectedError(f"the connection failed during the handshake: {error}") from error
    _handshake.remember_token(key, token)
    return settled, peer_window


def connect_deadline(timeout: Optional[float]) -> float:
    return time.monotonic() + (10.0 if timeout is None else timeout)
