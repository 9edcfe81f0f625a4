"""What ``Client.connect`` and ``Server.bind`` return: a coroutine (``x =
await Client.connect(...)``, ``asyncio.run(...)``, ``ensure_future``) that
is also an async context manager (``async with Client.connect(...) as x:``),
which closes on the way out."""

from __future__ import annotations

from typing import Any, Awaitable, Coroutine, Generator, Optional, Protocol, TypeVar


class _Closable(Protocol):
    def close(self) -> Awaitable[None]: ...


T = TypeVar("T", bound=_Closable)


class Opening(Coroutine[Any, Any, T]):
    """A connection or server being opened."""

    def __init__(self, opening: Coroutine[Any, Any, T]) -> None:
        self._opening = opening
        self._opened: Optional[T] = None

    def __await__(self) -> Generator[Any, None, T]:
        return self._opening.__await__()

    def send(self, value: Any) -> Any:
        return self._opening.send(value)

    def throw(self, *args: Any) -> Any:
        return self._opening.throw(*args)

    def close(self) -> None:
        self._opening.close()

    async def __aenter__(self) -> T:
        self._opened = await self._opening
        return self._opened

    async def __aexit__(self, *exc: object) -> None:
        if self._opened is not None:
            await self._opened.close()
