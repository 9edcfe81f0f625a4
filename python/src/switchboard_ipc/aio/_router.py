"""Routes to handler functions, for a server and for a client that the
server may call back."""

from __future__ import annotations

import contextvars
import inspect
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Optional, Union

if TYPE_CHECKING:
    from ._peer import Peer

Handler = Callable[[Any], Union[Any, Awaitable[Any]]]

_caller: contextvars.ContextVar[Optional["Peer"]] = contextvars.ContextVar("switchboard_caller", default=None)


def caller() -> "Peer":
    """Inside a handler: the connection the request or notification came
    on, to call the peer back (``await caller().request(...)``) or to read
    its ``client_id``."""
    peer = _caller.get()
    if peer is None:
        raise RuntimeError("caller() is only available inside a handler")
    return peer


class Router:
    """Maps route names to functions of one parameter (the decoded params),
    plain or ``async``. A function's return value is the answer; one that
    returns a generator or async generator answers with a stream of its
    items; one that raises answers with an error (:class:`RemoteError`
    keeps its code, message and data; any other exception is code -32000
    with the exception's text).

    >>> router = Router().route("add", lambda p: p["a"] + p["b"])

    Plain functions run on the event loop: keep them short, or make them
    ``async`` and ``await asyncio.to_thread(...)`` the slow part.
    """

    def __init__(self) -> None:
        self._routes: Dict[str, Handler] = {}

    def route(self, name: str, fn: Handler) -> "Router":
        """Adds (or replaces) the route ``name``; returns the router, so
        calls chain."""
        if not callable(fn):
            raise TypeError(f"the handler of route {name!r} is not callable")
        self._routes[name] = fn
        return self

    def handler(self, name: str) -> Optional[Handler]:
        return self._routes.get(name)

    @property
    def routes(self) -> "list[str]":
        return sorted(self._routes)

    @staticmethod
    def is_async(fn: Handler) -> bool:
        return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))
