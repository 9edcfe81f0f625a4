"""The blocking client: one connection, safe to share between threads.

No thread reads the socket on its own while calls are waiting: the first
waiting thread reads (the *leader*), hands every other thread its answer,
and when its own answer arrives passes the reading on to another waiting
thread. A round trip therefore costs no thread switch. A small keepalive
thread reads whatever arrived while nobody waits (pings, the peer's
notifications and requests) and pings a server that has heard nothing
from this client for a while (PROTOCOL.md §5).
"""

from __future__ import annotations

import itertools
import os
import secrets
import select
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Set, Tuple, Union

from . import _socket, _wire
from ._wire import Budget, Message
from .connector import Connector
from .errors import DisconnectedError, Error, ProtocolError, RefusedError, RemoteError, TimeoutError

DEFAULT_CONNECT_TIMEOUT = 10.0
_RECV_SIZE = 256 * 1024


# Non-blocking recv for the busy poll; 0 where the platform has none.
_DONTWAIT: int = getattr(socket, "MSG_DONTWAIT", 0)
DEFAULT_BUSY_POLL = 50e-6


class _BusyPoll:
    """Whether a wait polls the socket first, and how its polls have fared:
    after a few in a row that found nothing, polling stops paying off (a
    slow server, an idle connection) and is tried again only now and then.
    Used by the thread reading the socket, one at a time."""

    GIVE_UP_AFTER = 4
    RETRY_EVERY = 16

    def __init__(self, window: Optional[float]) -> None:
        self.window = window if window else None
        self.misses = 0
        self.skipped = 0

    def window_now(self) -> Optional[float]:
        if self.window is None:
            return None
        if self.given_up:
            self.skipped += 1
            if self.skipped % self.RETRY_EVERY:
                return None
        return self.window

    def hit(self) -> None:
        self.misses = self.skipped = 0

    def missed(self) -> None:
        self.misses += 1

    @property
    def given_up(self) -> bool:
        return self.misses >= self.GIVE_UP_AFTER


def retry_version(refusal: RefusedError, tried: int, connector: Connector) -> int:
    """The version to try next after a refusal, or the refusal raised: a
    server of another version this package also speaks is asked again."""
    if (refusal.code == "version_mismatch" and refusal.version in _wire.VERSIONS
            and refusal.version != tried and connector.kind != "inherited"):
        return int(refusal.version or 0)
    raise refusal


def default_client_id() -> str:
    return f"python-{os.getpid()}-{secrets.token_hex(4)}"


class _Waiter:
    """An auto-reset event for one thread: ``wake`` lets the next ``sleep``
    return (once). Spurious wakes are harmless: every wait is a loop."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()

    def wake(self) -> None:
        try:
            self.lock.release()
        except RuntimeError:  # already awake
            pass

    def sleep(self, timeout: Optional[float]) -> None:
        if timeout is None:
            self.lock.acquire()
        elif timeout > 0:
            self.lock.acquire(timeout=timeout)


class _Call:
    __slots__ = ("waiter", "done", "value", "error", "cost", "items", "abandoned", "wants_stream")

    def __init__(self, waiter: _Waiter, cost: int, wants_stream: bool) -> None:
        self.waiter = waiter
        self.done = False
        self.value: Any = None
        self.error: Optional[BaseException] = None
        self.cost = cost
        self.items: Optional[Deque[Tuple[Any, int]]] = deque() if wants_stream else None
        self.abandoned = False
        self.wants_stream = wants_stream


class Client:
    """A blocking connection to a switchboard server (Rust or Python).

    >>> with Client.connect(os.environ["SWITCHBOARD_CONNECTOR"]) as client:  # doctest: +SKIP
    ...     client.request("echo", {"n": 1})
    {'n': 1}

    Every method may be called from several threads at once.
    """

    def __init__(self, sock: socket.socket, connector: Connector, client_id: str, codec: _wire.Codec,
                 peer_window: Tuple[int, int], window: Tuple[int, int],
                 busy_poll: Optional[float] = DEFAULT_BUSY_POLL) -> None:
        self._sock = sock
        self.connector = connector
        self.client_id = client_id
        self.format = codec.name
        self._encode = codec.encode
        self._decode = codec.decode
        self._limit = connector.max_frame
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Call] = {}
        self._out = Budget(*peer_window)
        self._window = window
        self._in_messages = 0
        self._in_bytes = 0
        self._write_lock = threading.Lock()
        self._state = threading.Lock()  # pending, budgets, leader and waiters
        self._leader = False
        self._followers: List[_Waiter] = []
        self._credit_waiters: Set[_Waiter] = set()
        self._closed: Optional[BaseException] = None
        self._buf = bytearray()
        self._poll = _BusyPoll(busy_poll if _DONTWAIT else None)
        self._local = threading.local()
        self._last_sent = self._last_heard = time.monotonic()
        self._stop = threading.Event()
        self._keepalive = threading.Thread(target=self._keepalive_loop, name="switchboard-keepalive", daemon=True)
        sock.settimeout(None)
        self._keepalive.start()

    @classmethod
    def connect(cls, connector: Union[Connector, str], client_id: Optional[str] = None,
                timeout: Optional[float] = None, busy_poll: Optional[float] = DEFAULT_BUSY_POLL) -> "Client":
        """Connects and runs the handshake. ``connector`` is a
        :class:`Connector`, an ``sb1:`` string or ``@NAME``. ``timeout``
        (seconds, default 10) bounds reaching the server, which is retried
        while nobody listens yet, and the handshake.

        ``busy_poll`` (seconds, default 50 µs; ``None`` or 0 turns it off):
        how long a call waiting for its answer keeps asking the socket
        before its thread sleeps. On a virtual machine a sleeping thread
        takes tens of microseconds to wake, more than a quick answer takes
        to come, so a quick call is several times faster; a connection
        whose answers keep coming later than that stops polling by itself
        (and tries again now and then), as the Rust client does
        (``Config::busy_poll``). Where the platform has no non-blocking
        ``recv`` flag (Windows), it is off."""
        if isinstance(connector, str):
            connector = Connector.load_state(connector)
        client_id = client_id or default_client_id()
        deadline = time.monotonic() + (DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout)
        window = (_wire.DEFAULT_WINDOW_MESSAGES, _wire.DEFAULT_WINDOW_BYTES)
        version = _wire.PROTOCOL_VERSION
        while True:
            sock = _socket.open_socket(connector, deadline)
            try:
                settled, peer_window = _socket.handshake(sock, connector, client_id, window, deadline, version)
                return cls(sock, connector, client_id, _wire.CODECS[settled], peer_window, window, busy_poll)
            except RefusedError as refusal:
                sock.close()
                version = retry_version(refusal, version, connector)
            except BaseException:
                sock.close()
                raise

    # ----- the API -----

    def request(self, route: str, params: Any = None, timeout: Optional[float] = None) -> Any:
        """Sends a request and returns the answer. Raises
        :class:`RemoteError` for an error answer, :class:`TimeoutError`
        after ``timeout`` seconds (the request is cancelled), and
        :class:`DisconnectedError` if the connection ends first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        call = self._start(route, params, deadline, False)
        self._wait(call, lambda: call.done, deadline, call)
        if call.error is not None:
            raise call.error
        return call.value

    def notify(self, route: str, params: Any = None) -> None:
        """Sends a notification: nothing comes back, not even an error.
        Waits only when the server has as many in flight as it accepts."""
        data = _wire.notification(_wire.encode_route(route), self._encode(params))
        cost = self._out.cost(len(data) - 4)
        self._reserve(cost, None)
        self._send(data)

    def stream(self, route: str, params: Any = None, timeout: Optional[float] = None) -> Iterator[Any]:
        """Sends a request answered by a stream and yields its items as
        they come (``timeout`` bounds the wait for each one). Leaving the
        loop early cancels the stream."""
        deadline = None if timeout is None else time.monotonic() + timeout
        call = self._start(route, params, deadline, True)
        items = call.items
        assert items is not None
        finished = False
        try:
            while True:
                if not items and not call.done:
                    wait_until = None if timeout is None else time.monotonic() + timeout
                    self._wait(call, lambda: bool(items) or call.done, wait_until, call)
                if items:
                    value, cost = items.popleft()
                    if cost:
                        self._return_credit(cost)
                    yield value
                    continue
                finished = True
                if call.error is not None:
                    raise call.error
                return
        finally:
            if not finished:
                self._abandon(call)

    def close(self) -> None:
        """Closes the connection; calls still waiting fail with
        :class:`DisconnectedError`."""
        self._fail(DisconnectedError("the client was closed"))

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stop.set()
            self._sock.close()
        except Exception:
            pass

    # ----- sending -----

    def _send(self, data: bytes) -> None:
        with self._write_lock:
            if self._closed is not None:
                raise DisconnectedError(f"the connection is closed: {self._closed}")
            try:
                self._sock.sendall(data)
            except OSError as error:
                failure = DisconnectedError(f"the connection was lost: {error}")
                self._fail(failure)
                raise failure from error
            self._last_sent = time.monotonic()

    def _reserve(self, cost: int, deadline: Optional[float]) -> None:
        """Waits until the server's window has room, then takes it."""
        out = self._out
        with self._state:
            if self._closed is None and out.fits(cost):
                out.take(cost)
                return
        waiter = self._waiter()

        def room() -> bool:
            return self._closed is not None or out.fits(cost)

        with self._state:
            self._credit_waiters.add(waiter)
        try:
            while True:
                self._wait(None, room, deadline, None, waiter)
                with self._state:
                    if self._closed is not None:
                        raise DisconnectedError(f"the connection is closed: {self._closed}")
                    if out.fits(cost):
                        out.take(cost)
                        return
        finally:
            with self._state:
                self._credit_waiters.discard(waiter)

    def _start(self, route: str, params: Any, deadline: Optional[float], stream: bool) -> _Call:
        route_bytes = _wire.encode_route(route)
        body = self._encode(params)
        request_id = next(self._ids)
        data = _wire.request(request_id, route_bytes, body)
        cost = self._out.cost(len(data) - 4)
        self._reserve(cost, deadline)
        call = _Call(self._waiter(), cost, stream)
        with self._state:
            self._pending[request_id] = call
        try:
            self._send(data)
        except Error:
            with self._state:
                self._pending.pop(request_id, None)
            raise
        return call

    def _abandon(self, call: _Call) -> None:
        """The caller gave up: cancel, and let the answer (when it comes)
        return the credit (PROTOCOL.md §4, cancel)."""
        with self._state:
            request_id = next((i for i, c in self._pending.items() if c is call), None)
            if request_id is None:
                return
            call.abandoned = True
            stale = list(call.items or ())
            if call.items is not None:
                call.items.clear()
        for _, cost in stale:
            if cost:
                self._return_credit(cost)
        try:
            self._send(_wire.cancel(request_id))
        except Error:
            pass

    def _return_credit(self, cost: int) -> None:
        with self._state:
            self._in_messages -= 1
            self._in_bytes -= cost
        try:
            self._send(_wire.credit(1, cost))
        except Error:
            pass

    def _waiter(self) -> _Waiter:
        waiter: Optional[_Waiter] = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = self._local.waiter = _Waiter()
        return waiter

    # ----- waiting and reading -----

    def _wait(self, call: Optional[_Call], ready: Callable[[], bool], deadline: Optional[float],
              owner: Optional[_Call], waiter: Optional[_Waiter] = None) -> None:
        """Returns when ``ready()``; reads the socket meanwhile if nobody
        else does. On timeout, abandons ``owner`` and raises."""
        waiter = waiter or (call.waiter if call is not None else self._waiter())
        while True:
            with self._state:
                if ready():
                    return
                if self._closed is not None and call is not None and not call.done:
                    call.done, call.error = True, DisconnectedError(f"the connection is closed: {self._closed}")
                    return
                lead = not self._leader
                if lead:
                    self._leader = True
                else:
                    self._followers.append(waiter)
            if lead:
                try:
                    self._read_until(ready, deadline)
                finally:
                    with self._state:
                        self._leader = False
                        if self._followers:
                            self._followers.pop(0).wake()
            else:
                waiter.sleep(None if deadline is None else deadline - time.monotonic())
                with self._state:
                    if waiter in self._followers:
                        self._followers.remove(waiter)
            if deadline is not None and time.monotonic() >= deadline:
                with self._state:
                    if ready():
                        return
                if owner is not None:
                    self._abandon(owner)
                raise TimeoutError("no answer in time (the request was cancelled)")

    def _read_until(self, ready: Callable[[], bool], deadline: Optional[float]) -> None:
        sock = self._sock
        while True:
            with self._state:
                if ready() or self._closed is not None:
                    return
            if self._poll_once():
                continue
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    readable, _, _ = select.select([sock], [], [], remaining)
                except (OSError, ValueError):
                    readable = [sock]
                if not readable:
                    return
            self._read_once()

    def _poll_once(self) -> bool:
        """Asks the socket without waiting until bytes come or the busy-poll
        window ends; True if it read (or the connection ended)."""
        window = self._poll.window_now()
        if window is None:
            return False
        recv, end = self._sock.recv, time.monotonic() + window
        while True:
            try:
                data = recv(_RECV_SIZE, _DONTWAIT)
            except BlockingIOError:
                if time.monotonic() < end:
                    continue
                self._poll.missed()
                return False
            except OSError as error:
                self._lost(error)
                return True
            self._poll.hit()
            self._take(data)
            return True

    def _read_once(self) -> None:
        try:
            data = self._sock.recv(_RECV_SIZE)
        except OSError as error:
            self._lost(error)
            return
        self._take(data)

    def _lost(self, error: OSError) -> None:
        if self._closed is None:
            self._fail(DisconnectedError(f"the connection was lost: {error}"))

    def _take(self, data: bytes) -> None:
        """What one read brought: frames dispatched, the rest kept."""
        if not data:
            self._fail(DisconnectedError("the server closed the connection"))
            return
        self._last_heard = time.monotonic()
        buf = self._buf
        buf += data
        pos, size = 0, len(buf)
        replies: List[bytes] = []
        try:
            while size - pos >= 4:
                length = int.from_bytes(buf[pos : pos + 4], "little")
                if length > self._limit:
                    raise ProtocolError(f"the server sent a {length}-byte frame; the limit is {self._limit}")
                if size - pos - 4 < length:
                    break
                self._dispatch(_wire.parse(bytes(buf[pos + 4 : pos + 4 + length])), length, replies)
                pos += 4 + length
        except ProtocolError as error:
            self._fail(error)
            return
        except Exception as error:  # a body the format cannot decode
            self._fail(ProtocolError(f"a message from the server could not be decoded: {error!r}"))
            return
        del buf[:pos]
        if replies:
            try:
                self._send(b"".join(replies))
            except Error:
                pass

    def _dispatch(self, message: Message, length: int, replies: List[bytes]) -> None:
        kind = message.kind
        if kind in (_wire.RESPONSE, _wire.ERROR, _wire.END):
            with self._state:
                call = self._pending.pop(message.id, None)
                if call is None:
                    return
                self._out.give(1, call.cost)
                for waiter in self._credit_waiters:
                    waiter.wake()
            if call.abandoned:
                return
            try:
                if kind == _wire.RESPONSE:
                    value = self._decode(message.body)
                    if call.items is not None:
                        call.items.append((value, 0))
                    else:
                        call.value = value
                elif kind == _wire.ERROR:
                    data = self._decode(message.body) if message.body else None
                    call.error = RemoteError(message.code, message.message, data)
            except ValueError as error:
                call.error = ProtocolError(f"an answer's body could not be decoded: {error}")
            call.done = True
            call.waiter.wake()
        elif kind == _wire.ITEM:
            cost = self._take_incoming(length)
            with self._state:
                call = self._pending.get(message.id)
                wanted = call is not None and not call.abandoned and call.items is not None
                if wanted and call is not None and call.items is not None:
                    call.items.append((self._decode(message.body), cost))
            if wanted and call is not None:
                call.waiter.wake()
                return
            self._in_messages -= 1
            self._in_bytes -= cost
            replies.append(_wire.credit(1, cost))
            if call is not None and not call.abandoned:
                # An item for a plain request: cancel it (PROTOCOL.md §4).
                call.abandoned = True
                call.done, call.error = True, ProtocolError(f"the server answered {message.id} with a stream")
                replies.append(_wire.cancel(message.id))
                call.waiter.wake()
        elif kind == _wire.CREDIT:
            with self._state:
                self._out.give(message.id, message.code)
                for waiter in self._credit_waiters:
                    waiter.wake()
        elif kind == _wire.PING:
            replies.append(_wire.PONG_FRAME)
        elif kind == _wire.REQUEST:
            self._take_incoming(length)
            self._in_messages -= 1
            self._in_bytes -= min(length, self._window[1])
            replies.append(_wire.error(message.id, RemoteError.NO_ROUTE,
                                       f"no handler for route {message.route!r}: a blocking client serves no routes"))
        elif kind == _wire.NOTIFICATION:
            cost = self._take_incoming(length)
            self._in_messages -= 1
            self._in_bytes -= cost
            replies.append(_wire.credit(1, cost))
        # PONG is a sign of life, CANCEL is for routes this client lacks.

    def _take_incoming(self, length: int) -> int:
        cost = min(length, self._window[1])
        with self._state:
            self._in_messages += 1
            self._in_bytes += cost
            if self._in_messages > self._window[0] or self._in_bytes > self._window[1]:
                raise ProtocolError("the server sent more than this client's window allows")
        return cost

    def _fail(self, error: BaseException) -> None:
        with self._state:
            if self._closed is not None:
                return
            self._closed = error
            calls = list(self._pending.values())
            self._pending.clear()
            waiters = list(self._followers) + list(self._credit_waiters)
        self._stop.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        failure = error if isinstance(error, DisconnectedError) else DisconnectedError(str(error))
        for call in calls:
            if not call.done:
                call.done, call.error = True, failure
            call.waiter.wake()
        for waiter in waiters:
            waiter.wake()

    def _keepalive_loop(self) -> None:
        interval = _wire.KEEPALIVE / 2
        while not self._stop.wait(min(interval, 1.0)):
            with self._state:
                idle = not self._leader
                if idle:
                    self._leader = True
            if idle:
                try:
                    while self._closed is None:
                        readable, _, _ = select.select([self._sock], [], [], 0)
                        if not readable:
                            break
                        self._read_once()
                except (OSError, ValueError):
                    pass
                finally:
                    with self._state:
                        self._leader = False
                        if self._followers:
                            self._followers.pop(0).wake()
            now = time.monotonic()
            if self._closed is None and now - self._last_sent >= interval:
                try:
                    self._send(_wire.PING_FRAME)
                except Error:
                    return
            if self._closed is None and now - self._last_heard > 3 * _wire.KEEPALIVE and self._pending \
                    and now - self._last_sent < interval:
                # Pinged within the last interval, and still nothing heard
                # for three: the server is gone (or wedged).
                self._fail(DisconnectedError("the server stopped answering (keepalive)"))
