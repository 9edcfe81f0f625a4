"""One connection after the handshake, on asyncio: both sides of it (our
requests and the peer's), the same for a client and for each connection a
server accepted. PROTOCOL.md §4 and §5."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections import deque
from typing import Any, AsyncIterator, Deque, Dict, Generator, Optional, Set, Tuple

from .. import _wire
from .._wire import REQUEST_ID, Budget, Message
from ..errors import DisconnectedError, Error, ProtocolError, RemoteError, TimeoutError
from ._router import Router, _caller

_RECV_SIZE = 256 * 1024
# Frames gathered past this many bytes go to the transport before the turn
# ends, and a sender waits for the transport to drain past _DRAIN_AT.
_GATHER_LIMIT = 64 * 1024
_DRAIN_AT = 1 << 20


class _Pending:
    __slots__ = ("future", "cost", "stream", "abandoned")

    def __init__(self, future: "Optional[asyncio.Future[Any]]", cost: int, stream: "Optional[Stream]") -> None:
        self.future = future
        self.cost = cost
        self.stream = stream
        self.abandoned = False


class Peer:
    """A live connection: call the other side with :meth:`request`,
    :meth:`notify` and :meth:`stream`; the :class:`Router` given when it
    was made answers what the other side sends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, codec: _wire.Codec,
                 peer_window: Tuple[int, int], window: Tuple[int, int], router: Optional[Router],
                 max_frame: int, client_id: str) -> None:
        self.client_id = client_id
        self.format = codec.name
        self._reader = reader
        self._writer = writer
        self._encode = codec.encode
        self._decode = codec.decode
        self._router = router
        self._limit = max_frame
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Pending] = {}
        self._out = Budget(*peer_window)
        self._room = asyncio.Event()
        self._window = window
        self._in_messages = 0
        self._in_bytes = 0
        self._handlers: Dict[int, "asyncio.Task[None]"] = {}
        self._notes: Deque[Tuple[str, bytes, int]] = deque()
        self._notes_ready = asyncio.Event()
        self._closed: Optional[BaseException] = None
        self._closed_event = asyncio.Event()
        self._shutting_down = False
        self._last_heard = time.monotonic()
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._loop = asyncio.get_running_loop()
        # Frames written in this turn of the loop after its first, sent
        # together when it ends (_gather, _flush).
        self._gathered: "list[bytes]" = []
        self._gathered_bytes = 0
        self._turn = False  # a frame was sent in this turn; a flush is due
        # The transport's unsent bytes as of our last write to it: at least
        # what it holds now, as it only drains between our writes.
        self._backlog = 0

    def start(self) -> None:
        for coroutine in (self._read_loop(), self._notes_loop(), self._keepalive_loop()):
            task = asyncio.ensure_future(coroutine)
            self._tasks.add(task)

    # ----- calling the other side -----

    async def request(self, route: str, params: Any = None, timeout: Optional[float] = None) -> Any:
        """Sends a request and returns the answer; raises
        :class:`RemoteError`, :class:`TimeoutError` (the request is
        cancelled) or :class:`DisconnectedError`."""
        request_id = next(self._ids)
        data = _wire.request(request_id, _wire.encode_route(route), self._encode(params))
        cost = self._out.cost(len(data) - 4)
        if not self._take_room(cost):
            await self._reserve(cost)
        future: asyncio.Future[Any] = self._loop.create_future()
        pending = _Pending(future, cost, None)
        self._pending[request_id] = pending
        self._write(data)
        try:
            if timeout is None:
                return await future
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._abandon(request_id, pending)
            raise TimeoutError(f"no answer to {route!r} within {timeout} s (the request was cancelled)") from None
        except asyncio.CancelledError:
            self._abandon(request_id, pending)
            raise

    async def notify(self, route: str, params: Any = None) -> None:
        """Sends a notification (nothing comes back); waits only while the
        other side has as many in flight as it accepts."""
        data = _wire.notification(_wire.encode_route(route), self._encode(params))
        cost = self._out.cost(len(data) - 4)
        if not self._take_room(cost):
            await self._reserve(cost)
        self._write(data)

    def stream(self, route: str, params: Any = None) -> "Stream":
        """A request answered by a stream: ``async for item in
        peer.stream(route, params)``. Closing it early (``aclose()``)
        cancels the stream."""
        return Stream(self, route, params)

    @property
    def closed(self) -> bool:
        return self._closed is not None

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def close(self) -> "asyncio.Future[None]":
        """Closes the connection now; calls still waiting fail with
        :class:`DisconnectedError`. Returns an awaitable that completes
        once the connection's tasks have stopped (awaiting it is optional)."""
        self._fail(DisconnectedError("the connection was closed"))
        return asyncio.ensure_future(self.wait_closed(), loop=self._loop)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Graceful close: new requests are answered -32001, running
        handlers get ``grace`` seconds to answer, then the connection closes."""
        self._shutting_down = True
        running = [task for task in self._handlers.values() if not task.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        self._flush()
        try:
            await asyncio.wait_for(self._writer.drain(), grace)
        except (Exception, asyncio.TimeoutError):
            pass
        self._fail(DisconnectedError("the connection was closed"))

    # ----- internals: sending -----

    def _write(self, data: bytes) -> None:
        if self._closed is not None:
            raise DisconnectedError(f"the connection is closed: {self._closed}")
        self._gather(data)

    def _write_quietly(self, data: bytes) -> None:
        if self._closed is None:
            self._gather(data)

    def _gather(self, data: bytes) -> None:
        """Sends a frame: the first of a turn of the loop at once (a lone
        request waits for nothing), the ones after it together when the
        turn ends (:meth:`_flush`), so that what many coroutines write in
        one turn (requests of a pipelining caller, a burst of answers read
        together) leaves in one system call instead of one each. It also
        keeps the loop from sleeping right after a lone request: the turn
        that flushes looks at the socket once more without waiting, and a
        quick answer is often there by then (a sleeping CPU takes tens of
        microseconds to wake on a VM)."""
        if not self._turn:
            self._turn = True
            self._loop.call_soon(self._flush)
            self._writer.write(data)
            self._backlog = self._writer.transport.get_write_buffer_size()
            return
        gathered = self._gathered
        gathered.append(data)
        self._gathered_bytes += len(data)
        if self._gathered_bytes >= _GATHER_LIMIT:
            self._flush()

    def _flush(self) -> None:
        """Ends a turn: what it gathered goes to the transport."""
        self._turn = False
        gathered = self._gathered
        if not gathered:
            return
        self._gathered = []
        self._gathered_bytes = 0
        if len(gathered) == 1:
            self._writer.write(gathered[0])
        else:
            self._writer.writelines(gathered)
        self._backlog = self._writer.transport.get_write_buffer_size()

    def _take_room(self, cost: int) -> bool:
        """Takes the credit for a message if it is there and nothing needs
        waiting for (the common case, without a coroutine); False leaves the
        waiting to :meth:`_reserve`."""
        out = self._out
        if self._closed is None and out.fits(cost) and self._gathered_bytes + self._backlog <= _DRAIN_AT:
            out.take(cost)
            return True
        return False

    async def _reserve(self, cost: int) -> None:
        out = self._out
        while self._closed is None and not out.fits(cost):
            self._room.clear()
            await self._room.wait()
        if self._closed is not None:
            raise DisconnectedError(f"the connection is closed: {self._closed}")
        out.take(cost)
        if self._gathered_bytes + self._writer.transport.get_write_buffer_size() > _DRAIN_AT:
            self._flush()
            await self._writer.drain()

    def _abandon(self, request_id: int, pending: _Pending) -> None:
        if self._pending.get(request_id) is pending and not pending.abandoned:
            pending.abandoned = True
            self._write_quietly(_wire.cancel(request_id))

    def _give_credit(self, cost: int) -> None:
        self._in_messages -= 1
        self._in_bytes -= cost
        self._write_quietly(_wire.credit(1, cost))

    # ----- internals: receiving -----

    async def _read_loop(self) -> None:
        buf = bytearray()
        reader = self._reader
        try:
            while self._closed is None:
                data = await reader.read(_RECV_SIZE)
                if not data:
                    raise DisconnectedError("the peer closed the connection")
                self._last_heard = time.monotonic()
                if buf:
                    buf += data
                    del buf[: self._dispatch_frames(buf)]
                else:
                    # Whole frames, the usual case, are cut straight out of
                    # what was read; only a partial one is kept aside.
                    buf += memoryview(data)[self._dispatch_frames(data) :]
        except (Error, OSError) as error:
            self._fail(error)
        except asyncio.CancelledError:
            pass
        except Exception as error:  # a body the format cannot decode
            self._fail(ProtocolError(f"a message from the peer could not be decoded: {error!r}"))

    def _dispatch_frames(self, chunk: "bytes | bytearray") -> int:
        """Dispatches the whole frames at the start of ``chunk``; returns
        how many bytes they took."""
        pos, size = 0, len(chunk)
        unpack, limit = _wire.FRAME_LENGTH.unpack_from, self._limit
        while size - pos >= 4:
            (length,) = unpack(chunk, pos)
            if length > limit:
                raise ProtocolError(f"the peer sent a {length}-byte frame; the limit is {limit}")
            if size - pos - 4 < length:
                break
            cut = chunk[pos + 4 : pos + 4 + length]
            payload = bytes(cut) if isinstance(cut, bytearray) else cut
            if length >= 9 and payload[0] == _wire.RESPONSE:
                # The most common message, without building a Message.
                self._settle(_wire.RESPONSE, REQUEST_ID.unpack_from(payload, 1)[0], payload[9:])
            else:
                self._dispatch(_wire.parse(payload), length)
            pos += 4 + length
        return pos

    def _take_incoming(self, length: int) -> int:
        cost = min(length, self._window[1])
        self._in_messages += 1
        self._in_bytes += cost
        if self._in_messages > self._window[0] or self._in_bytes > self._window[1]:
            raise ProtocolError("the peer sent more than the window this side announced")
        return cost

    def _dispatch(self, message: Message, length: int) -> None:
        kind = message.kind
        if kind in (_wire.RESPONSE, _wire.ERROR, _wire.END):
            self._settle(kind, message.id, message.body, message.code, message.message)
        elif kind == _wire.ITEM:
            cost = self._take_incoming(length)
            pending = self._pending.get(message.id)
            if pending is not None and pending.stream is not None and not pending.abandoned:
                pending.stream._push((self._decode(message.body), cost))
                return
            self._give_credit(cost)
            if pending is not None and not pending.abandoned and pending.future is not None:
                # An item answering a plain request: cancel it (PROTOCOL.md §4).
                self._abandon(message.id, pending)
                if not pending.future.done():
                    pending.future.set_exception(ProtocolError(f"the peer answered request {message.id} with a stream"))
        elif kind == _wire.REQUEST:
            cost = self._take_incoming(length)
            if message.id in self._handlers:
                raise ProtocolError(f"the peer reused request id {message.id} while it was in flight")
            if self._shutting_down:
                self._in_messages -= 1
                self._in_bytes -= cost
                self._write_quietly(_wire.error(message.id, RemoteError.SHUTTING_DOWN, "the server is shutting down"))
                return
            task = asyncio.ensure_future(self._answer(message.id, message.route, message.body, cost))
            self._handlers[message.id] = task
        elif kind == _wire.NOTIFICATION:
            cost = self._take_incoming(length)
            self._notes.append((message.route, message.body, cost))
            self._notes_ready.set()
        elif kind == _wire.CANCEL:
            running = self._handlers.get(message.id)
            if running is not None:
                running.cancel()
        elif kind == _wire.CREDIT:
            self._out.give(message.id, message.code)
            self._room.set()
        elif kind == _wire.PING:
            self._write_quietly(_wire.PONG_FRAME)

    def _settle(self, kind: int, request_id: int, body: bytes, code: int = 0, text: str = "") -> None:
        """A request of ours ended: its response, error or end of stream."""
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return
        self._out.give(1, pending.cost)
        self._room.set()
        if pending.abandoned:
            return
        outcome: Any
        try:
            if kind == _wire.RESPONSE:
                outcome = self._decode(body)
            elif kind == _wire.ERROR:
                outcome = RemoteError(code, text, self._decode(body) if body else None)
            else:
                outcome = _END
        except ValueError as error:
            outcome = ProtocolError(f"an answer's body could not be decoded: {error}")
        if pending.stream is not None:
            if kind == _wire.RESPONSE:
                pending.stream._push((outcome, 0))
                outcome = _END
            pending.stream._push((outcome, 0))
        elif pending.future is not None and not pending.future.done():
            if isinstance(outcome, BaseException):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(None if outcome is _END else outcome)

    # ----- internals: answering the other side -----

    async def _answer(self, request_id: int, route: str, body: bytes, cost: int) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._in_messages -= 1
                self._in_bytes -= cost

        try:
            result = await self._call(route, body)
            if inspect.isgenerator(result) or inspect.isasyncgen(result) or hasattr(result, "__anext__"):
                await self._send_stream(request_id, result)
                release()
                self._write_quietly(_wire.end(request_id))
            else:
                try:
                    answer = _wire.response(request_id, self._encode(result))
                except (TypeError, ValueError, OverflowError) as error:
                    answer = _wire.error(request_id, RemoteError.INTERNAL, f"the result could not be encoded: {error}")
                release()
                self._write_quietly(answer)
        except asyncio.CancelledError:
            release()
            self._write_quietly(_wire.error(request_id, RemoteError.CANCELLED, "the request was cancelled"))
        except Exception as error:
            release()
            self._write_quietly(self._error_answer(request_id, error))
        finally:
            self._handlers.pop(request_id, None)

    def _error_answer(self, request_id: int, error: BaseException) -> bytes:
        if isinstance(error, RemoteError):
            data = None
            if error.data is not None:
                try:
                    data = self._encode(error.data)
                except (TypeError, ValueError):
                    data = None
            return _wire.error(request_id, error.code, error.message, data)
        return _wire.error(request_id, RemoteError.HANDLER, str(error) or type(error).__name__)

    async def _call(self, route: str, body: bytes) -> Any:
        fn = self._router.handler(route) if self._router is not None else None
        if fn is None:
            raise RemoteError(RemoteError.NO_ROUTE, f"no route named {route!r}")
        try:
            params = self._decode(body)
        except ValueError as error:
            raise RemoteError(-32700, f"the body could not be parsed: {error}") from None
        token = _caller.set(self)
        try:
            result = fn(params)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            _caller.reset(token)

    async def _send_stream(self, request_id: int, items: Any) -> None:
        token = _caller.set(self)
        try:
            if inspect.isgenerator(items):
                for value in items:
                    await self._send_item(request_id, value)
            else:
                async for value in items:
                    await self._send_item(request_id, value)
        finally:
            _caller.reset(token)

    async def _send_item(self, request_id: int, value: Any) -> None:
        data = _wire.item(request_id, self._encode(value))
        cost = self._out.cost(len(data) - 4)
        if not self._take_room(cost):
            await self._reserve(cost)
        self._write(data)

    async def _notes_loop(self) -> None:
        """Runs notification handlers one at a time, in arrival order."""
        try:
            while True:
                while not self._notes:
                    self._notes_ready.clear()
                    await self._notes_ready.wait()
                route, body, cost = self._notes.popleft()
                try:
                    await self._call(route, body)
                except Exception:
                    pass  # a notification gets nothing back, not even an error
                self._give_credit(cost)
        except asyncio.CancelledError:
            pass

    async def _keepalive_loop(self) -> None:
        """Pings after an interval of silence; gives up on a peer that then
        stays silent for another interval. The second interval counts from
        the ping, not from the last bytes heard: a loop that did not run for
        a while (a program that drives it only now and then) has not heard
        anything either, and must ask before it condemns."""
        interval = _wire.KEEPALIVE
        pinged: Optional[float] = None
        try:
            while self._closed is None:
                await asyncio.sleep(interval / 4)
                now = time.monotonic()
                if pinged is not None and self._last_heard >= pinged:
                    pinged = None
                if pinged is None:
                    if now - self._last_heard >= interval:
                        self._write_quietly(_wire.PING_FRAME)
                        pinged = now
                elif now - pinged >= interval:
                    self._fail(DisconnectedError("the peer stopped answering (keepalive)"))
        except asyncio.CancelledError:
            pass

    def _fail(self, error: BaseException) -> None:
        if self._closed is not None:
            return
        self._closed = error
        failure = error if isinstance(error, DisconnectedError) else DisconnectedError(f"the connection was lost: {error}")
        pending = list(self._pending.values())
        self._pending.clear()
        for entry in pending:
            if entry.abandoned:
                continue
            if entry.stream is not None:
                entry.stream._push((failure, 0))
            elif entry.future is not None and not entry.future.done():
                entry.future.set_exception(failure)
        self._room.set()
        try:
            # What was written before the close still leaves (as the
            # transport's own buffer does when it closes).
            self._flush()
            self._writer.close()
        except Exception:
            pass
        current = asyncio.current_task(self._loop)
        for task in list(self._tasks) + list(self._handlers.values()):
            if task is not current:
                task.cancel()
        self._closed_event.set()
        self._on_closed()

    def _on_closed(self) -> None:
        """Hook for the server's bookkeeping."""


_END = object()


class Stream:
    """The items of a streamed answer, as an async iterator. The request
    leaves when iteration starts (or when the stream is awaited)."""

    def __init__(self, peer: Peer, route: str, params: Any) -> None:
        self._peer = peer
        self._route = route
        self._params = params
        self._id: Optional[int] = None
        self._pending: Optional[_Pending] = None
        self._queue: Deque[Tuple[Any, int]] = deque()
        self._ready = asyncio.Event()
        self._finished = False

    def _push(self, entry: Tuple[Any, int]) -> None:
        self._queue.append(entry)
        self._ready.set()

    async def _start(self) -> None:
        if self._id is not None:
            return
        peer = self._peer
        self._id = request_id = next(peer._ids)
        data = _wire.request(request_id, _wire.encode_route(self._route), peer._encode(self._params))
        cost = peer._out.cost(len(data) - 4)
        await peer._reserve(cost)
        self._pending = _Pending(None, cost, self)
        peer._pending[request_id] = self._pending
        peer._write(data)

    def __await__(self) -> Generator[Any, None, "Stream"]:
        yield from self._start().__await__()
        return self

    def __aiter__(self) -> "Stream":
        return self

    async def __anext__(self) -> Any:
        if self._finished:
            raise StopAsyncIteration
        await self._start()
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        value, cost = self._queue.popleft()
        if cost:
            self._peer._give_credit(cost)
        if value is _END:
            self._finished = True
            raise StopAsyncIteration
        if isinstance(value, BaseException):
            self._finished = True
            raise value
        return value

    async def aclose(self) -> None:
        """Stops the stream: cancels the request, returns the credit of
        items not taken."""
        if self._finished:
            return
        self._finished = True
        peer = self._peer
        while self._queue:
            _, cost = self._queue.popleft()
            if cost:
                peer._give_credit(cost)
        if self._id is not None and self._pending is not None:
            peer._abandon(self._id, self._pending)

    def __del__(self) -> None:
        if not self._finished and self._id is not None and self._pending is not None:
            try:
                self._peer._abandon(self._id, self._pending)
            except Exception:
                pass

    async def collect(self) -> "list[Any]":
        """All the items, as a list."""
        return [value async for value in self]


__all__ = ["AsyncIterator", "Peer", "Stream"]
