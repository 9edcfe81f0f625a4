"""The asyncio client: a :class:`Peer` that connected (and may serve a
router of its own, for the server to call back)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Optional, Union

from .. import _wire
from ..client import default_client_id, retry_version
from ..connector import Connector
from ..errors import RefusedError, TimeoutError
from ._connect import client_handshake, connect_deadline, open_streams
from ._peer import Peer
from ._opening import Opening
from ._router import Router


class Client(Peer):
    """An asyncio connection to a switchboard server.

    >>> client = await Client.connect(os.environ["SWITCHBOARD_CONNECTOR"])  # doctest: +SKIP
    >>> await client.request("echo", [1, 2])  # doctest: +SKIP

    ``request``, ``notify`` are coroutines, ``stream`` an async iterator,
    ``close()`` closes at once (and may be awaited); ``async with`` works.
    """

    @classmethod
    def connect(cls, connector: Union[Connector, str], client_id: Optional[str] = None,
                timeout: Optional[float] = None, router: Optional[Router] = None) -> "Opening[Client]":
        """Connects and runs the handshake: ``await Client.connect(...)``, or
        ``async with Client.connect(...) as client:``. ``connector`` is a
        :class:`Connector`, an ``sb1:`` string or ``@NAME``. ``timeout``
        (seconds, default 10) bounds reaching the server (retried while
        nobody listens yet) and the handshake. With a ``router``, the server
        may call this client's routes on the same connection."""
        return Opening(cls._connect(connector, client_id, timeout, router))

    @classmethod
    async def _connect(cls, connector: Union[Connector, str], client_id: Optional[str],
                       timeout: Optional[float], router: Optional[Router]) -> "Client":
        if isinstance(connector, str):
            connector = Connector.load_state(connector)
        client_id = client_id or default_client_id()
        deadline = connect_deadline(timeout)
        window = (_wire.DEFAULT_WINDOW_MESSAGES, _wire.DEFAULT_WINDOW_BYTES)
        version = _wire.PROTOCOL_VERSION
        while True:
            reader, writer = await open_streams(connector, deadline)
            try:
                remaining = max(deadline - time.monotonic(), 0.001)
                settled, peer_window = await asyncio.wait_for(
                    client_handshake((reader, writer), connector, client_id, window, version), remaining)
                break
            except asyncio.TimeoutError:
                writer.close()
                raise TimeoutError("the handshake did not finish in time") from None
            except RefusedError as refusal:
                writer.close()
                version = retry_version(refusal, version, connector)
            except BaseException:
                writer.close()
                raise
        client = cls(reader, writer, _wire.CODECS[settled], peer_window, window, router,
                     connector.max_frame, client_id)
        client.connector = connector
        client.start()
        return client

    connector: Connector

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["Any", "Client"]
