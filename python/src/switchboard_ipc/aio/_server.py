"""The asyncio server: binds a connector, runs the server's half of the
handshake for each client (ids, resumption, refusals), and serves a
:class:`Router` on every connection."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import stat
from typing import Any, Dict, List, Optional, Set, Union

from .. import _handshake, _wire
from ..connector import Connector
from ..errors import ConnectorError, DisconnectedError, Error, RefusedError
from ._connect import read_frame
from ._peer import Peer
from ..registry import Registration, publish
from ._opening import Opening
from ._router import Router

HANDSHAKE_TIMEOUT = 5.0


class _Connection(Peer):
    server: "Server"

    def _on_closed(self) -> None:
        self.server._forget(self)


class Server:
    """Serves a :class:`Router` on a connector, to Rust and Python clients.

    >>> server = await Server.bind(Connector.local(), router)  # doctest: +SKIP
    >>> print(server.connector.dump_state())  # hand this to the clients  # doctest: +SKIP
    """

    def __init__(self, connector: Connector, router: Router) -> None:
        self.connector = connector
        self.router = router
        self._server: Optional[asyncio.AbstractServer] = None
        self._peers: Dict[str, _Connection] = {}
        self._tokens: Dict[str, bytes] = {}
        self._joined = asyncio.Event()
        self._handshakes: Set["asyncio.Task[None]"] = set()
        self._made_dir: Optional[str] = None
        self._closing: Optional["asyncio.Future[None]"] = None
        self._registration: Optional[Registration] = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    def bind(cls, connector: Union[Connector, str], router: Router,
             name: Optional[str] = None) -> "Opening[Server]":
        """Listens on ``connector`` (a :class:`Connector` or its string) and
        serves ``router``: ``await Server.bind(...)``, or ``async with
        Server.bind(...) as server:``. A Unix socket's missing directory is
        created with mode 0700 and removed on close; TCP port 0 picks a free
        port, and :attr:`connector` then holds the real one. With a
        ``name``, the server registers in this user's registry, where
        ``@NAME`` finds it (from Rust, the CLI or Python), until it closes."""
        return Opening(cls._bind(connector, router, name))

    @classmethod
    async def _bind(cls, connector: Union[Connector, str], router: Router, name: Optional[str]) -> "Server":
        if isinstance(connector, str):
            connector = Connector.load_state(connector)
        connector.check_usable()
        # This side offers no shared memory or other optional extras: the
        # connector it hands out says only what it serves.
        connector = Connector(connector.kind, connector.address, connector.secret,
                              connector.format, connector.max_frame)
        server = cls(connector, router)
        await server._listen()
        if name is not None:
            try:
                server._registration = publish(name, server.connector)
            except BaseException:
                await server.close()
                raise
        return server

    async def _listen(self) -> None:
        connector = self.connector
        if connector.kind == "unix":
            path = connector.address
            directory = os.path.dirname(path)
            if directory and not os.path.exists(directory):
                os.mkdir(directory, 0o700)
                self._made_dir = directory
            elif os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
                probe = socket.socket(socket.AF_UNIX)
                try:
                    probe.connect(path)
                    probe.close()
                    raise ConnectorError(f"{path} is in use by a live server")
                except OSError:
                    probe.close()
                    os.unlink(path)  # left over from a crashed server
            self._server = await asyncio.start_unix_server(self._accept, path)
            os.chmod(path, 0o600)
        else:
            host, port = connector.host_port()
            self._server = await asyncio.start_server(self._accept, host, port)
            if port == 0:
                bound = self._server.sockets[0].getsockname()[1]
                address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
                self.connector = connector.with_address(address)

    # ----- the API -----

    async def serve_socket(self, sock: socket.socket) -> None:
        """Serves one already connected socket like an accepted connection:
        the parent's end of a ``socketpair`` whose other end a child
        inherits (connector kind ``inherited``, see :meth:`child_connector`)."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        task = asyncio.ensure_future(self._accept(reader, writer))
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    def child_connector(self, child_end: socket.socket) -> Connector:
        """The connector a child uses to reach this server through the
        inherited ``child_end`` (keep its descriptor open in the child:
        ``subprocess.Popen(..., pass_fds=[child_end.fileno()])``)."""
        return Connector("inherited", str(child_end.fileno()), self.connector.secret)

    @property
    def clients(self) -> List[str]:
        """The ids of the connected clients."""
        return sorted(self._peers)

    def client(self, client_id: str) -> Peer:
        """The connection of a client, to call it back."""
        try:
            return self._peers[client_id]
        except KeyError:
            raise DisconnectedError(f"no client {client_id!r} is connected") from None

    async def request(self, client_id: str, route: str, params: Any = None, timeout: Optional[float] = None) -> Any:
        """Calls a route the client ``client_id`` serves (its router)."""
        return await self.client(client_id).request(route, params, timeout)

    async def notify(self, client_id: str, route: str, params: Any = None) -> None:
        await self.client(client_id).notify(route, params)

    async def wait_for_clients(self, count: int) -> None:
        """Returns once at least ``count`` clients are connected."""
        while len(self._peers) < count:
            self._joined.clear()
            await self._joined.wait()

    def close(self, grace: float = 5.0) -> "asyncio.Future[None]":
        """Stops listening at once; answers new requests -32001, lets
        running handlers finish (up to ``grace`` seconds), then closes every
        connection and removes the socket. Returns an awaitable for the end
        of all that (awaiting it is optional)."""
        if self._closing is None:
            if self._server is not None:
                self._server.close()
            self._cleanup()
            self._closing = asyncio.ensure_future(self._shutdown(grace), loop=self._loop)
        return self._closing

    async def _shutdown(self, grace: float) -> None:
        for task in list(self._handshakes):
            task.cancel()
        peers = list(self._peers.values())
        if peers:
            await asyncio.gather(*(peer.shutdown(grace) for peer in peers), return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), grace)
            except asyncio.TimeoutError:
                pass

    def _cleanup(self) -> None:
        if self._registration is not None:
            self._registration.remove()
        if self.connector.kind == "unix":
            try:
                os.unlink(self.connector.address)
            except OSError:
                pass
            if self._made_dir:
                shutil.rmtree(self._made_dir, ignore_errors=True)

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- accepting -----

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handshakes.add(task)
        try:
            await asyncio.wait_for(self._handshake(reader, writer), HANDSHAKE_TIMEOUT)
        except (Error, OSError, asyncio.TimeoutError, asyncio.CancelledError):
            writer.close()
        finally:
            if task is not None:
                self._handshakes.discard(task)

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing is not None:
            raise DisconnectedError("the server is closing")
        try:
            hello = _handshake.read_hello(await read_frame(reader, _wire.HANDSHAKE_MAX_FRAME))
            side = _handshake.ServerSide(self.connector.secret, hello)
            writer.write(side.challenge())
            resume = side.check(await read_frame(reader, _wire.HANDSHAKE_MAX_FRAME))
        except _handshake.Abort as abort:
            writer.write(abort.frame)
            await writer.drain()
            raise abort.error from None
        client_id = hello.client_id
        held = self._tokens.get(client_id)
        proven = held is not None and side.holds(resume, held)
        old = self._peers.get(client_id)
        if old is not None and not old.closed:
            if not proven:
                writer.write(_handshake.refusal("id_in_use", f"another connection holds the client id {client_id!r}"))
                await writer.drain()
                raise RefusedError("id_in_use", client_id)
            old.close()  # the holder came back: it replaces its old connection
        token = held if proven and held is not None else secrets.token_bytes(32)
        self._tokens[client_id] = token
        window = (_wire.DEFAULT_WINDOW_MESSAGES, _wire.DEFAULT_WINDOW_BYTES)
        writer.write(side.welcome(window, token))
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _Connection(reader, writer, _wire.CODECS[hello.format], hello.window, window,
                           self.router, self.connector.max_frame, client_id)
        peer.server = self
        self._peers[client_id] = peer
        peer.start()
        self._joined.set()

    def _forget(self, peer: _Connection) -> None:
        if self._peers.get(peer.client_id) is peer:
            del self._peers[peer.client_id]
