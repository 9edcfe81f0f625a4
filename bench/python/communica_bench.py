"""communica's side of switchboard-bench (driven by bench/src/systems/communica.rs).

    python communica_bench.py serve [--rmq URL]
        Starts two communica SimpleServers on LocalConnectors (Unix sockets),
        or with --rmq on RmqConnectors through the RabbitMQ broker at URL:
        one with communica's default JsonSerializer, for the small requests,
        and one with MsgpackSerializer, for the bulk payload (bytes, which
        msgpack carries as bin). Both answer a text with itself and bytes
        with their length. Prints {"json": NAME, "msgpack": NAME} and serves
        until stdin closes.

    python communica_bench.py client JSON_NAME MSGPACK_NAME [--rmq URL]
        Connects a SimpleClient to each server (over the broker with --rmq), prints {"ready": true}, then
        runs commands read from stdin, one per line, answering each with one
        JSON line ({"error": "..."} on failure):
          rtt COUNT              -> {"ns": [nanoseconds of each round trip]}
          pipelined COUNT DEPTH  -> {"ns": [nanoseconds for all COUNT]}
          bulk SIZE COUNT        -> {"ns": [nanoseconds of each round trip]}
          connect COUNT          -> {"ns": [connect + first answer, each]}
          idle COUNT             -> {"ok": true} once COUNT more clients are
                                    connected; they stay open until the next
                                    command
          release                -> {"ok": true}, closing the idle clients

All timing happens here, with time.perf_counter_ns, on asyncio's default
event loop.
"""

import asyncio
import json
import logging
import os
import sys
import time

from communica import LocalConnector, RmqConnector, SimpleClient, SimpleServer
from communica.serializers import JsonSerializer
from communica.serializers.msgpack import MsgpackSerializer

SMALL_TEXT = "switchboard-bench small request: 64 bytes of text, echoed back.\n"
CONNECT_TIMEOUT = 10
# The broker URL with --rmq; None for local sockets.
RMQ_URL = None
_clients = 0


def connector(name, client=False):
    """A LocalConnector, or an RmqConnector (clients need a unique id)."""
    global _clients
    if RMQ_URL is None:
        return LocalConnector(name)
    if client:
        _clients += 1
        return RmqConnector(RMQ_URL, name, client_id=f"c{os.getpid()}-{_clients}")
    return RmqConnector(RMQ_URL, name)


def handler(data):
    """Echo a text; count bytes."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return len(data)
    return data


async def serve():
    pid = os.getpid()
    names = {"json": f"sbbench-{pid}-json", "msgpack": f"sbbench-{pid}-msgpack"}
    servers = [
        SimpleServer(connector(names["json"]), handler, JsonSerializer()),
        SimpleServer(connector(names["msgpack"]), handler, MsgpackSerializer()),
    ]
    for server in servers:
        await server.init()
    print(json.dumps(names), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for server in servers:
        await server.close()
        if RMQ_URL is not None:  # its durable connect queue, as for clients
            await server.connector.cleanup()
    for name in names.values() if RMQ_URL is None else ():
        try:
            os.unlink(LocalConnector(name).repr_address())
        except OSError:
            pass


async def connect(name, serializer=None):
    client = SimpleClient(connector(name, client=True), serializer=serializer)
    return await client.init(timeout=CONNECT_TIMEOUT)


async def close(client):
    """Closes a client and, over the broker, deletes its queues: communica
    leaves a client's two durable queues behind, and hundreds of them piling
    up across runs keep the broker waking during every later measurement."""
    await client.close()
    if RMQ_URL is not None:
        await client.connector.cleanup()


class Driver:
    def __init__(self, json_name, msgpack_name):
        self.json_name = json_name
        self.msgpack_name = msgpack_name
        self.held = []

    async def open(self):
        self.small = await connect(self.json_name)
        self.big = await connect(self.msgpack_name, MsgpackSerializer())

    async def rtt(self, count):
        request, ns = self.small.request, []
        answer = None
        for _ in range(count):
            start = time.perf_counter_ns()
            answer = await request(SMALL_TEXT)
            ns.append(time.perf_counter_ns() - start)
        if count and answer != SMALL_TEXT:
            raise ValueError(f"wrong echo answer {answer!r}")
        return {"ns": ns}

    async def pipelined(self, count, depth):
        request = self.small.request

        async def worker(n):
            for _ in range(n):
                if await request(SMALL_TEXT) != SMALL_TEXT:
                    raise ValueError("wrong echo answer")

        per, extra = divmod(count, depth)
        start = time.perf_counter_ns()
        await asyncio.gather(*(worker(per + (i < extra)) for i in range(depth)))
        return {"ns": [time.perf_counter_ns() - start]}

    async def bulk(self, size, count):
        payload, ns = os.urandom(size), []
        for _ in range(count):
            start = time.perf_counter_ns()
            answer = await self.big.request(payload)
            ns.append(time.perf_counter_ns() - start)
            if answer != size:
                raise ValueError(f"the server counted {answer} bytes of {size}")
        return {"ns": ns}

    async def connect(self, count):
        ns = []
        for _ in range(count):
            start = time.perf_counter_ns()
            client = await connect(self.json_name)
            answer = await client.request(SMALL_TEXT)
            ns.append(time.perf_counter_ns() - start)
            await close(client)
            if answer != SMALL_TEXT:
                raise ValueError("wrong echo answer")
        return {"ns": ns}

    async def idle(self, count):
        for _ in range(count):
            client = await connect(self.json_name)
            await client.request(SMALL_TEXT)
            self.held.append(client)
        return {"ok": True}

    async def release(self):
        for client in self.held:
            await close(client)
        self.held.clear()
        return {"ok": True}

    async def run(self):
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command, *args = line.split()
            try:
                if command != "idle":
                    await self.release()
                reply = await getattr(self, command)(*map(int, args))
            except Exception as error:  # reported to the harness, which goes on
                reply = {"error": f"{command}: {error!r}"}
            print(json.dumps(reply), flush=True)
        await self.release()


async def client(json_name, msgpack_name):
    driver = Driver(json_name, msgpack_name)
    await driver.open()
    print(json.dumps({"ready": True}), flush=True)
    await driver.run()
    await close(driver.small)
    await close(driver.big)


def main():
    global RMQ_URL
    # Connection teardown is logged at WARNING; it is expected here.
    logging.getLogger("communica").setLevel(logging.ERROR)
    if "--rmq" in sys.argv:
        at = sys.argv.index("--rmq")
        RMQ_URL = sys.argv[at + 1]
        del sys.argv[at : at + 2]
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve())
    elif sys.argv[1:2] == ["client"] and len(sys.argv) == 4:
        asyncio.run(client(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
