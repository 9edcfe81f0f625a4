"""A smoke test of the package that needs nothing but the standard library
(no pytest, no msgpack): cli/tests/python.rs runs it on machines where
pytest is not installed, so `cargo test` always exercises the package.

    SWITCHBOARD_BIN=path/to/switchboard python stdlib_smoke.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from switchboard_ipc import AuthenticationError, Client, Connector, RemoteError
from switchboard_ipc.aio import Router, Server


def rust_server_python_client(binary: str) -> None:
    server = subprocess.Popen([binary, "echo-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert server.stdout is not None and server.stdin is not None
    try:
        text = server.stdout.readline().decode().strip()
        with Client.connect(text) as client:
            assert client.request("echo", {"n": [1, 2]}) == {"n": [1, 2]}
            assert list(client.stream("count", 500)) == list(range(1, 501))
            client.notify("echo", 1)
            try:
                client.request("fail", "boom")
                raise AssertionError("no error")
            except RemoteError as error:
                assert (error.code, error.message) == (-32000, "boom")
        try:
            Client.connect(Connector.load_state(text).with_secret(b"z" * 32))
            raise AssertionError("a wrong secret was accepted")
        except AuthenticationError:
            pass
    finally:
        server.stdin.close()
        server.wait(10)


async def python_server_rust_client(binary: str) -> None:
    server = await Server.bind(Connector.local(), Router().route("echo", lambda p: p).route("twice", lambda n: 2 * n))
    try:
        text = server.connector.dump_state()

        def call(*args: str) -> "subprocess.CompletedProcess[str]":
            return subprocess.run([binary, "call", text, *args], capture_output=True, text=True, timeout=30)

        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(None, call, "twice", "21")
        assert done.returncode == 0 and json.loads(done.stdout) == 42, done.stderr
    finally:
        await server.close()


def main() -> None:
    binary = os.environ["SWITCHBOARD_BIN"]
    rust_server_python_client(binary)
    asyncio.run(python_server_rust_client(binary))
    print("stdlib smoke test passed")


if __name__ == "__main__":
    sys.exit(main())
