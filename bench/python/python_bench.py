"""The Python systems of switchboard-bench (driven by bench/src/systems/python.rs):
the switchboard_ipc package (python/ in this repository) against the Rust
switchboard server, and multiprocessing.connection between two Python
processes, the standard library's own IPC.

    python python_bench.py serve-mp
        A multiprocessing.connection Listener on a Unix socket, with an
        authkey (its HMAC challenge, as switchboard authenticates), a thread
        per connection; answers a text with itself and bytes with their
        length. Prints {"address": PATH, "authkey": HEX}; serves until stdin
        closes.

    python python_bench.py client-mp ADDRESS AUTHKEY
    python python_bench.py client-sb CONNECTOR
        The client drivers. Print {"ready": true}, then answer commands read
        from stdin, one JSON line each (as communica_bench.py):
          rtt COUNT              -> {"ns": [each round trip]}
          pipelined COUNT DEPTH  -> {"ns": [all COUNT, DEPTH in flight]}
          bulk SIZE COUNT        -> {"ns": [each round trip]}
          connect COUNT          -> {"ns": [connect + first answer, each]}

switchboard_ipc: round trips on the blocking Client, pipelined requests on
the asyncio Client (DEPTH coroutines on one connection), bulk on the
blocking Client. multiprocessing.connection has no request ids: a
connection's answers come in order, so pipelining keeps DEPTH messages sent
ahead of the answers read. All timing is time.perf_counter_ns, here.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client as MpClient
from multiprocessing.connection import Connection, Listener
from typing import Any, Callable, Dict, List

SMALL_TEXT = "switchboard-bench small request: 64 bytes of text, echoed back.\n"


def answer(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    return data


# ----- multiprocessing.connection -----


def serve_mp() -> None:
    authkey = os.urandom(32)
    address = os.path.join(tempfile.mkdtemp(prefix="sbbench-mp-"), "s")
    listener = Listener(address, "AF_UNIX", authkey=authkey)

    def serve_one(conn: Connection) -> None:
        # Anything that goes wrong ends this connection, so its client sees
        # the end at once instead of waiting for an answer that never comes.
        try:
            while True:
                conn.send(answer(conn.recv()))
        except Exception:
            conn.close()

    def accept() -> None:
        while True:
            try:
                conn = listener.accept()
            except Exception:
                continue
            threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    print(json.dumps({"address": address, "authkey": authkey.hex()}), flush=True)
    sys.stdin.read()
    listener.close()  # removes the socket
    os.rmdir(os.path.dirname(address))


class MpDriver:
    def __init__(self, address: str, authkey: str) -> None:
        self.address = address
        self.authkey = bytes.fromhex(authkey)
        self.conn = MpClient(address, "AF_UNIX", authkey=self.authkey)

    def rtt(self, count: int) -> Dict[str, Any]:
        conn, ns = self.conn, []
        got = None
        for _ in range(count):
            start = time.perf_counter_ns()
            conn.send(SMALL_TEXT)
            got = conn.recv()
            ns.append(time.perf_counter_ns() - start)
        if count and got != SMALL_TEXT:
            raise ValueError("wrong echo answer")
        return {"ns": ns}

    def pipelined(self, count: int, depth: int) -> Dict[str, Any]:
        conn = self.conn
        start = time.perf_counter_ns()
        sent = 0
        for _ in range(min(depth, count)):
            conn.send(SMALL_TEXT)
            sent += 1
        for _ in range(count):
            if conn.recv() != SMALL_TEXT:
                raise ValueError("wrong echo answer")
            if sent < count:
                conn.send(SMALL_TEXT)
                sent += 1
        return {"ns": [time.perf_counter_ns() - start]}

    def bulk(self, size: int, count: int) -> Dict[str, Any]:
        payload, ns = os.urandom(size), []
        for _ in range(count):
            start = time.perf_counter_ns()
            # send, not send_bytes: the server's recv unpickles what comes
            # (send_bytes would hand it raw bytes to unpickle).
            self.conn.send(payload)
            got = self.conn.recv()
            ns.append(time.perf_counter_ns() - start)
            if got != size:
                raise ValueError(f"the server counted {got} bytes of {size}")
        return {"ns": ns}

    def connect(self, count: int) -> Dict[str, Any]:
        ns = []
        for _ in range(count):
            start = time.perf_counter_ns()
            conn = MpClient(self.address, "AF_UNIX", authkey=self.authkey)
            conn.send(SMALL_TEXT)
            got = conn.recv()
            ns.append(time.perf_counter_ns() - start)
            conn.close()
            if got != SMALL_TEXT:
                raise ValueError("wrong echo answer")
        return {"ns": ns}


# ----- switchboard_ipc -----


class SbDriver:
    def __init__(self, connector: str) -> None:
        from switchboard_ipc import Client

        self.text = connector
        self.client = Client.connect(connector)
        self.loop = asyncio.new_event_loop()
        self.aclient = self.loop.run_until_complete(self._aconnect())

    async def _aconnect(self) -> Any:
        from switchboard_ipc import aio

        return await aio.Client.connect(self.text)

    def close(self) -> None:
        async def aclose() -> None:
            await self.aclient.close()

        self.client.close()
        self.loop.run_until_complete(aclose())
        self.loop.close()

    def rtt(self, count: int) -> Dict[str, Any]:
        request, ns = self.client.request, []
        got = None
        for _ in range(count):
            start = time.perf_counter_ns()
            got = request("echo", SMALL_TEXT)
            ns.append(time.perf_counter_ns() - start)
        if count and got != SMALL_TEXT:
            raise ValueError("wrong echo answer")
        return {"ns": ns}

    def pipelined(self, count: int, depth: int) -> Dict[str, Any]:
        request = self.aclient.request

        async def worker(n: int) -> None:
            for _ in range(n):
                if await request("echo", SMALL_TEXT) != SMALL_TEXT:
                    raise ValueError("wrong echo answer")

        async def run() -> int:
            per, extra = divmod(count, depth)
            start = time.perf_counter_ns()
            await asyncio.gather(*(worker(per + (i < extra)) for i in range(depth)))
            return time.perf_counter_ns() - start

        return {"ns": [self.loop.run_until_complete(run())]}

    def bulk(self, size: int, count: int) -> Dict[str, Any]:
        payload, ns = os.urandom(size), []
        for _ in range(count):
            start = time.perf_counter_ns()
            got = self.client.request("bulk", payload)
            ns.append(time.perf_counter_ns() - start)
            if got != size:
                raise ValueError(f"the server counted {got} bytes of {size}")
        return {"ns": ns}

    def connect(self, count: int) -> Dict[str, Any]:
        from switchboard_ipc import Client

        ns = []
        for _ in range(count):
            start = time.perf_counter_ns()
            client = Client.connect(self.text)
            got = client.request("echo", SMALL_TEXT)
            ns.append(time.perf_counter_ns() - start)
            client.close()
            if got != SMALL_TEXT:
                raise ValueError("wrong echo answer")
        return {"ns": ns}


def run(driver: Any) -> None:
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        method: Callable[..., Dict[str, Any]] = getattr(driver, command, None)  # type: ignore[assignment]
        try:
            if method is None:
                raise ValueError(f"{command} is not measured for this system")
            reply = method(*map(int, args))
        except Exception as error:  # reported to the harness, which goes on
            reply = {"error": f"{command}: {error!r}"}
        print(json.dumps(reply), flush=True)
    close = getattr(driver, "close", None)
    if close is not None:
        close()


def main(argv: List[str]) -> None:
    if argv[1:2] == ["serve-mp"]:
        serve_mp()
    elif argv[1:2] == ["client-mp"] and len(argv) == 4:
        run(MpDriver(argv[2], argv[3]))
    elif argv[1:2] == ["client-sb"] and len(argv) == 3:
        run(SbDriver(argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
