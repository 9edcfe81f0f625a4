"""The public API as a program uses it, for the type checker: CI runs
``mypy --strict`` over this file and the package (ci/python.sh). It also
runs: ``python typed_usage.py CONNECTOR`` against an echo-server."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import switchboard_ipc
from switchboard_ipc import (
    AuthenticationError,
    Client,
    Connector,
    ConnectorError,
    DisconnectedError,
    Error,
    RemoteError,
    TimeoutError,
)
from switchboard_ipc import aio


def blocking(text: str) -> List[Any]:
    connector: Connector = Connector.load_state(text)
    same: str = connector.dump_state()
    assert Connector.load_state(same) == connector
    results: List[Any] = []
    with Client.connect(connector, client_id="typed", timeout=5.0) as client:
        results.append(client.request("echo", {"a": 1}, timeout=5.0))
        client.notify("echo", [1, 2])
        items: Iterator[Any] = client.stream("count", 3)
        results.extend(items)
        try:
            client.request("fail", "why")
        except RemoteError as error:
            code: int = error.code
            message: str = error.message
            data: Any = error.data
            results.append((code, message, data))
        except (AuthenticationError, TimeoutError, DisconnectedError, ConnectorError) as error:
            raise SystemExit(str(error))
    return results


async def asynchronous(text: str) -> Dict[str, Any]:
    def add(params: Dict[str, int]) -> int:
        return params["a"] + params["b"]

    async def ticks(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def who(_: Any) -> str:
        return aio.caller().client_id

    router = aio.Router().route("add", add).route("ticks", ticks).route("who", who)
    server: aio.Server = await aio.Server.bind(Connector.local(), router)
    served: Connector = server.connector
    client: aio.Client = await aio.Client.connect(served.dump_state(), client_id="me", router=aio.Router())
    total: Any = await client.request("add", {"a": 2, "b": 3})
    streamed: List[Any] = [x async for x in client.stream("ticks", 3)]
    me: Any = await client.request("who")
    await client.notify("add", {"a": 0, "b": 0})
    await client.close()
    await server.close()
    rust: aio.Client = await aio.Client.connect(text)
    echoed: Any = await rust.request("echo", "hi", timeout=5)
    await rust.close()
    async with aio.Server.bind(Connector.tcp("127.0.0.1", 0), router) as tcp_server:
        async with aio.Client.connect(tcp_server.connector) as tcp_client:
            total = await tcp_client.request("add", {"a": total, "b": 1})
    return {"total": total, "streamed": streamed, "me": me, "echoed": echoed}


def main(argv: List[str]) -> Optional[int]:
    try:
        print(blocking(argv[1]))
        print(asyncio.run(asynchronous(argv[1])))
    except Error as error:
        print(f"switchboard_ipc {switchboard_ipc.__version__}: {error}", file=sys.stderr)
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv))
