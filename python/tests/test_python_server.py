"""Rust clients (the CLI, the Rust examples) against the Python server,
and a Python server calling its clients back on the same connection."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List

import pytest
from conftest import REPO, run_cli

from switchboard_ipc import AuthenticationError, Connector, RemoteError, _wire
from switchboard_ipc.aio import Client, Router, Server, caller


def make_router(log: List[Any]) -> Router:
    async def slow(ms: int) -> int:
        await asyncio.sleep(ms / 1000)
        return ms

    def count(n: int) -> Iterator[int]:
        yield from range(1, n + 1)

    async def acount(n: int) -> AsyncIterator[int]:
        for i in range(1, n + 1):
            yield i

    def fail(p: Any) -> None:
        raise RemoteError(-32010, "refused on purpose", {"Overflow": {"a": p}})

    def crash(p: Any) -> None:
        raise ValueError("a bug")

    async def ask_back(p: Any) -> Any:
        # A request the server makes to the client that called it, while
        # the client's own request is still in flight.
        return await caller().request("client.echo", {"from": "server", "p": p})

    return (Router().route("echo", lambda p: p).route("slow", slow).route("count", count)
            .route("acount", acount).route("fail", fail).route("crash", crash)
            .route("note", log.append).route("ask_back", ask_back)
            .route("format", lambda p: caller().format))


async def with_server(connector: Connector, body: Callable[[Server], Any], log: "List[Any] | None" = None) -> Any:
    server = await Server.bind(connector, make_router(log if log is not None else []))
    try:
        return await body(server)
    finally:
        await server.close()


async def cli(binary: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    return await asyncio.get_running_loop().run_in_executor(None, lambda: run_cli(binary, *args))


@pytest.mark.parametrize("connector", [Connector.local, lambda: Connector.tcp("127.0.0.1", 0)], ids=["unix", "tcp"])
def test_the_rust_cli_calls_a_python_server(switchboard_bin: Path, connector: Callable[[], Connector]) -> None:
    log: List[Any] = []

    async def body(server: Server) -> None:
        text = server.connector.dump_state()
        if server.connector.kind == "tcp":
            assert not server.connector.address.endswith(":0"), "the bound port is in the connector"
        echoed = await cli(switchboard_bin, "call", text, "echo", '{"from": "rust", "n": [1, 2]}')
        assert echoed.returncode == 0, echoed.stderr
        assert json.loads(echoed.stdout) == {"from": "rust", "n": [1, 2]}
        slow = await cli(switchboard_bin, "call", text, "slow", "20")
        assert (slow.returncode, slow.stdout.strip()) == (0, "20")
        for route in ("count", "acount"):
            streamed = await cli(switchboard_bin, "call", text, route, "4")
            assert streamed.returncode == 0, streamed.stderr
            assert [json.loads(line) for line in streamed.stdout.split()] == [1, 2, 3, 4]
        failed = await cli(switchboard_bin, "call", text, "fail", "5")
        assert failed.returncode != 0 and "refused on purpose" in failed.stderr
        crashed = await cli(switchboard_bin, "call", text, "crash")
        assert crashed.returncode != 0 and "a bug" in crashed.stderr
        missing = await cli(switchboard_bin, "call", text, "nope")
        assert missing.returncode != 0 and "nope" in missing.stderr
        noted = await cli(switchboard_bin, "throw", text, "note", '"hello"')
        assert noted.returncode == 0, noted.stderr
        for _ in range(200):
            if log:
                break
            await asyncio.sleep(0.01)
        assert log == ["hello"]
        timed_out = await cli(switchboard_bin, "call", "--timeout", "100", text, "slow", "5000")
        assert timed_out.returncode == 4, timed_out.stderr

    asyncio.run(with_server(connector(), body, log))
    if connector is Connector.local:
        pass


def test_the_socket_and_its_directory_go_when_the_server_closes() -> None:
    connector = Connector.local()

    async def body(server: Server) -> None:
        assert oct(os.stat(os.path.dirname(connector.address)).st_mode & 0o777) == "0o700"
        assert oct(os.stat(connector.address).st_mode & 0o777) == "0o600"

    asyncio.run(with_server(connector, body))
    assert not os.path.exists(os.path.dirname(connector.address))


def test_a_rust_client_with_the_wrong_secret_is_refused(switchboard_bin: Path) -> None:
    async def body(server: Server) -> None:
        wrong = server.connector.with_secret(b"x" * 32).dump_state()
        refused = await cli(switchboard_bin, "call", wrong, "echo", "1")
        assert refused.returncode != 0 and "secret" in refused.stderr, refused.stderr
        none = await cli(switchboard_bin, "call", server.connector.with_secret(None).dump_state(), "echo", "1")
        assert none.returncode != 0 and "secret" in none.stderr
        with pytest.raises(AuthenticationError):
            await Client.connect(server.connector.with_secret(b"y" * 32))
        right = await cli(switchboard_bin, "call", server.connector.dump_state(), "echo", "1")
        assert right.returncode == 0, right.stderr

    asyncio.run(with_server(Connector.local(), body))


def test_both_directions_on_one_connection() -> None:
    async def body(server: Server) -> None:
        seen: List[Any] = []
        router = Router().route("client.echo", lambda p: p).route("client.note", seen.append)
        client = await Client.connect(server.connector, client_id="py-both", router=router)
        # The client calls the server, which calls the client back meanwhile.
        assert await client.request("ask_back", 7) == {"from": "server", "p": 7}
        answers = await asyncio.gather(*(client.request("ask_back", n) for n in range(300)))
        assert [a["p"] for a in answers] == list(range(300))
        # The server calls and notifies the client by its id; notifications
        # arrive in the order sent.
        assert server.clients == ["py-both"]
        assert await server.request("py-both", "client.echo", "direct") == "direct"
        for n in range(500):
            await server.notify("py-both", "client.note", n)
        assert await server.request("py-both", "client.echo", "flush") == "flush"
        for _ in range(200):
            if len(seen) == 500:
                break
            await asyncio.sleep(0.01)
        assert seen == list(range(500))
        await client.close()

    asyncio.run(with_server(Connector.local(), body))


def test_python_notifications_reach_a_python_server_in_order() -> None:
    log: List[Any] = []

    async def body(server: Server) -> None:
        client = await Client.connect(server.connector)
        for n in range(2000):  # more than the window: credit must come back
            await client.notify("note", n)
        assert await client.request("echo", "done") == "done"
        for _ in range(300):
            if len(log) == 2000:
                break
            await asyncio.sleep(0.01)
        assert log == list(range(2000))
        await client.close()

    asyncio.run(with_server(Connector.local(), body, log))


def test_what_was_sent_before_a_close_still_arrives() -> None:
    # Frames wait for the loop's next turn to leave together; closing
    # before that turn must not drop them.
    log: List[Any] = []

    async def body(server: Server) -> None:
        client = await Client.connect(server.connector)
        for n in range(100):
            await client.notify("note", n)
        await client.close()
        for _ in range(300):
            if len(log) == 100:
                break
            await asyncio.sleep(0.01)
        assert log == list(range(100))

    asyncio.run(with_server(Connector.local(), body, log))


def test_requests_made_in_one_turn_leave_together() -> None:
    # The first frame of a turn of the loop leaves at once (a lone request
    # waits for nothing); the rest of the turn's frames in one write after.
    async def body(server: Server) -> None:
        client = await Client.connect(server.connector)
        transport = client._writer.transport
        writes: List[int] = []  # frames in each write to the transport
        write, writelines = transport.write, transport.writelines
        inside: List[bool] = []  # writelines may write through write

        def counting_write(data: Any) -> None:
            if not inside:
                writes.append(1)
            write(data)

        def counting_writelines(lines: Any) -> None:
            writes.append(len(lines))
            inside.append(True)
            try:
                writelines(lines)
            finally:
                inside.pop()

        transport.write, transport.writelines = counting_write, counting_writelines  # type: ignore[method-assign]
        answers = await asyncio.gather(*(client.request("echo", n) for n in range(64)))
        assert answers == list(range(64))
        assert writes == [1, 63], writes
        await client.close()

    asyncio.run(with_server(Connector.local(), body))


@pytest.mark.parametrize("have_msgpack", [True, False])
def test_format_negotiation_with_a_rust_client(switchboard_bin: Path, have_msgpack: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    if have_msgpack and "msgpack" not in _wire.CODECS:
        pytest.skip("the msgpack extra is not installed")
    if not have_msgpack:
        monkeypatch.delitem(_wire.CODECS, "msgpack", raising=False)

    async def body(server: Server) -> None:
        called = await cli(switchboard_bin, "call", server.connector.dump_state(), "format")
        assert called.returncode == 0, called.stderr
        # The CLI asks for JSON whatever the connector prefers (it prints
        # what it receives), so the Python server settles JSON either way.
        assert json.loads(called.stdout) == "json"
        echoed = await cli(switchboard_bin, "call", server.connector.dump_state(), "echo", '{"k": [1, "v"]}')
        assert json.loads(echoed.stdout) == {"k": [1, "v"]}

    # A connector that prefers MessagePack: the Rust client offers it first.
    asyncio.run(with_server(Connector.local().with_format("msgpack"), body))


def test_rust_workers_under_a_python_parent(example: Callable[[str], Path]) -> None:
    worker = example("parent_child")
    script = REPO / "python" / "examples" / "rust_workers.py"
    done = subprocess.run([sys.executable, str(script), str(worker)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 items came back correct from 3 Rust workers, progress in order" in done.stdout


def test_python_workers_under_a_rust_parent(example: Callable[[str], Path]) -> None:
    parent = example("python_workers")
    env = dict(os.environ, SWITCHBOARD_PYTHON=sys.executable)
    done = subprocess.run([str(parent)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "12 of 12 items came back correct from 3 Python workers, progress in order" in done.stdout


def test_a_server_closing_gracefully_lets_running_calls_finish() -> None:
    async def main() -> None:
        server = await Server.bind(Connector.local(), make_router([]))
        client = await Client.connect(server.connector)
        running = asyncio.ensure_future(client.request("slow", 300))
        await asyncio.sleep(0.1)
        closing = server.close()
        assert await running == 300
        await closing
        assert client.closed or await asyncio.wait_for(client.wait_closed(), 5) is None

    asyncio.run(main())


def test_async_with_opens_and_closes() -> None:
    async def main() -> None:
        async with Server.bind(Connector.tcp("127.0.0.1", 0), make_router([])) as server:
            async with Client.connect(server.connector.dump_state()) as client:
                assert await client.request("echo", "with") == "with"
            assert client.closed
        with pytest.raises(OSError):
            await asyncio.open_connection(*server.connector.host_port())

    asyncio.run(main())


def test_server_info() -> None:
    async def body(server: Server) -> Dict[str, Any]:
        client = await Client.connect(server.connector, client_id="info")
        await server.wait_for_clients(1)
        info = {"clients": server.clients}
        await client.close()
        return info

    assert asyncio.run(with_server(Connector.local(), body)) == {"clients": ["info"]}


def test_a_named_python_server_is_found_by_the_rust_cli(switchboard_bin: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))

    async def main() -> None:
        server = await Server.bind(Connector.local(), make_router([]), name="py-named")
        try:
            called = await asyncio.get_running_loop().run_in_executor(
                None, lambda: run_cli(switchboard_bin, "call", "@py-named", "echo", '"by name"', env=dict(os.environ)))
            assert called.returncode == 0, called.stderr
            assert json.loads(called.stdout) == "by name"
            listed = await asyncio.get_running_loop().run_in_executor(
                None, lambda: run_cli(switchboard_bin, "ls", "--json", env=dict(os.environ)))
            assert listed.returncode == 0, listed.stderr
            assert "py-named" in listed.stdout
            with pytest.raises(Exception, match="taken by a live server"):
                await Server.bind(Connector.local(), make_router([]), name="py-named")
        finally:
            await server.close()
        assert not (runtime / "switchboard" / "py-named.json").exists()

    asyncio.run(main())


def test_the_python_server_speaks_versions_3_and_4_and_refuses_others() -> None:
    from switchboard_ipc import _handshake as handshake

    async def hello(server: Server, version: int) -> Dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(server.connector.address)
        side = handshake.ClientSide(server.connector.secret, f"v{version}", ["json"], (16, 1 << 20), None, version)
        writer.write(side.hello())
        length = int.from_bytes(await reader.readexactly(4), "little")
        reply: Dict[str, Any] = json.loads(await reader.readexactly(length))
        writer.close()
        return reply

    async def body(server: Server) -> None:
        for version in (3, 4):
            reply = await hello(server, version)
            assert reply["switchboard"] == version and "error" not in reply, reply
        refused = await hello(server, 5)
        assert refused["error"]["code"] == "version_mismatch" and refused["switchboard"] == _wire.PROTOCOL_VERSION

    asyncio.run(with_server(Connector.local(), body))
