"""Python clients (blocking and asyncio) against the Rust server
(`switchboard echo-server`: echo, sleep, fail, count)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest
from conftest import RustServer

from switchboard_ipc import (
    AuthenticationError,
    Client,
    Connector,
    DisconnectedError,
    RefusedError,
    RemoteError,
    TimeoutError,
    _handshake,
    _wire,
)
from switchboard_ipc import aio


def test_requests_errors_and_notifications(rust_server: RustServer) -> None:
    with Client.connect(rust_server.connector, client_id="py-basic") as client:
        assert client.client_id == "py-basic"
        value = {"text": "héllo", "n": [1, 2.5, None, True], "nested": {"a": {}}}
        assert client.request("echo", value) == value
        assert client.request("echo") is None
        with pytest.raises(RemoteError) as caught:
            client.request("fail", "it broke")
        assert (caught.value.code, caught.value.message) == (-32000, "it broke")
        with pytest.raises(RemoteError) as caught:
            client.request("no.such.route", 1)
        assert caught.value.code == RemoteError.NO_ROUTE
        with pytest.raises(RemoteError) as caught:
            client.request("sleep", "not a number")
        assert caught.value.code == RemoteError.INVALID_PARAMS
        for n in range(100):
            client.notify("echo", n)  # nothing comes back
        assert client.request("echo", "after the notifications") == "after the notifications"
    with pytest.raises(DisconnectedError):
        client.request("echo", 1)


def test_a_blocking_call_polls_for_its_answer_only_while_it_pays(rust_server: RustServer) -> None:
    # A window of 20 ms, so that quick answers always come within it, even
    # from the debug-built server on a loaded machine.
    with Client.connect(rust_server.connector, busy_poll=0.02) as client:
        for n in range(50):
            assert client.request("echo", n) == n
        assert client._poll.misses == 0, "quick answers were found by polling"
        for _ in range(4):  # answers later than the window: polling stops
            assert client.request("sleep", 40) == 40
        assert client._poll.given_up
        for n in range(40):  # tried again now and then, and found paying
            assert client.request("echo", n) == n
        assert not client._poll.given_up
    with Client.connect(rust_server.connector, busy_poll=None) as client:
        assert client.request("echo", 1) == 1
        assert client._poll.window_now() is None


def test_over_tcp(rust_tcp_server: RustServer) -> None:
    assert Connector.load_state(rust_tcp_server.connector).kind == "tcp"
    with Client.connect(rust_tcp_server.connector) as client:
        assert client.request("echo", "tcp") == "tcp"
        assert list(client.stream("count", 3)) == [1, 2, 3]


def test_streams_longer_than_the_window(rust_server: RustServer) -> None:
    with Client.connect(rust_server.connector) as client:
        # 256 items fill the window this client announced: the rest flow
        # only because taking an item returns its credit.
        assert list(client.stream("count", 2000)) == list(range(1, 2001))
        # Leaving a stream early cancels it; the connection stays usable.
        for item in client.stream("count", 100_000):
            if item == 10:
                break
        assert list(client.stream("count", 0)) == []
        assert client.request("echo", "still here") == "still here"


def test_a_timeout_cancels_and_frees_the_credit(rust_server: RustServer) -> None:
    with Client.connect(rust_server.connector) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.request("sleep", 5000, timeout=0.2)
        assert time.monotonic() - started < 3
        # The cancelled request's answer returns its credit: all 300 fit.
        for n in range(300):
            with pytest.raises(TimeoutError):
                client.request("sleep", 2000, timeout=0.001)
        assert client.request("echo", 1, timeout=30) == 1


def test_a_thousand_requests_in_flight_from_many_threads(rust_server: RustServer) -> None:
    with Client.connect(rust_server.connector) as client:
        results: List[Any] = [None] * 1000
        errors: List[BaseException] = []
        start = threading.Barrier(1000)

        def call(n: int) -> None:
            try:
                start.wait(60)
                results[n] = client.request("echo", {"n": n, "pad": "x" * (n % 50)})
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(1000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "some requests never finished"
        assert errors == []
        assert [r["n"] for r in results] == list(range(1000))


def test_a_thousand_async_requests_in_flight(rust_server: RustServer) -> None:
    async def main() -> None:
        async with await aio.Client.connect(rust_server.connector) as client:
            answers = await asyncio.gather(*(client.request("echo", n) for n in range(1000)))
            assert answers == list(range(1000))
            slow = [client.request("sleep", 300) for _ in range(300)]  # over the window of 256
            assert await asyncio.gather(*slow) == [300] * 300

    asyncio.run(main())


def test_async_streams_and_errors(rust_server: RustServer) -> None:
    async def main() -> None:
        client = await aio.Client.connect(rust_server.connector)
        assert [x async for x in client.stream("count", 1000)] == list(range(1, 1001))
        stream = client.stream("count", 1_000_000)
        async for item in stream:
            if item == 5:
                break
        await stream.aclose()
        assert await client.stream("count", 3).collect() == [1, 2, 3]
        with pytest.raises(RemoteError) as caught:
            await client.request("fail", {"why": 1})
        assert caught.value.code == -32000
        with pytest.raises(TimeoutError):
            await client.request("sleep", 5000, timeout=0.1)
        await client.notify("echo", "n")
        assert await client.request("echo", [1]) == [1]
        await client.close()
        with pytest.raises(DisconnectedError):
            await client.request("echo", 1)

    asyncio.run(main())


def test_a_wrong_secret_is_an_authentication_error(rust_server: RustServer) -> None:
    right = Connector.load_state(rust_server.connector)
    wrong = right.with_secret(b"w" * 32)
    with pytest.raises(AuthenticationError, match="different secret"):
        Client.connect(wrong)
    with pytest.raises(AuthenticationError):
        Client.connect(right.with_secret(None))
    with pytest.raises(AuthenticationError):
        asyncio.run(aio.Client.connect(wrong))
    with Client.connect(right) as client:  # the server is unharmed
        assert client.request("echo", "ok") == "ok"


def test_a_server_killed_mid_request_fails_every_pending_call(switchboard_bin: Path) -> None:
    server = RustServer(switchboard_bin, [])
    client = Client.connect(server.connector)
    errors: List[BaseException] = []

    def call() -> None:
        try:
            client.request("sleep", 60_000)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=call) for _ in range(20)]
    for thread in threads:
        thread.start()

    async def async_side() -> BaseException:
        peer = await aio.Client.connect(server.connector)
        pending = asyncio.ensure_future(peer.request("sleep", 60_000))
        items = []
        try:
            async for item in peer.stream("count", 10**9):
                items.append(item)
                if len(items) == 3:
                    server.kill()
        except DisconnectedError as error:
            assert len(items) >= 3
            with pytest.raises(DisconnectedError):
                await pending
            return error
        raise AssertionError("the stream ended without an error")

    time.sleep(0.5)
    started = time.monotonic()
    assert isinstance(asyncio.run(asyncio.wait_for(async_side(), 30)), DisconnectedError)
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads), "a pending call hangs"
    assert len(errors) == 20 and all(isinstance(e, DisconnectedError) for e in errors), errors
    assert time.monotonic() - started < 30
    with pytest.raises(DisconnectedError):
        client.request("echo", 1)


def test_resumption_and_id_in_use(rust_server: RustServer) -> None:
    first = Client.connect(rust_server.connector, client_id="py-resume")
    assert first.request("echo", 1) == 1
    key = (Connector.load_state(rust_server.connector).dump_state(), "py-resume")
    token = _handshake.token_for(key)
    assert token is not None
    # Another process (no token) asking for the same live id is refused...
    _handshake._tokens.pop(key)
    with pytest.raises(RefusedError) as caught:
        Client.connect(rust_server.connector, client_id="py-resume")
    assert caught.value.code == "id_in_use"
    # ...but the holder of the token takes its id over (a reconnect).
    _handshake.remember_token(key, token)
    second = Client.connect(rust_server.connector, client_id="py-resume")
    assert second.request("echo", 2) == 2
    assert _handshake.token_for(key) == token, "a resumed client keeps its token"
    with pytest.raises(DisconnectedError):
        for _ in range(100):
            first.request("echo", 3, timeout=5)
            time.sleep(0.05)
    second.close()


def test_a_peer_preferring_a_format_we_lack_settles_on_json(rust_server: RustServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    connector = Connector.load_state(rust_server.connector).with_format("msgpack")
    if "msgpack" in _wire.CODECS:
        with Client.connect(connector) as client:
            assert client.format == "msgpack"
            assert client.request("echo", {"b": [1, "x"]}) == {"b": [1, "x"]}
            assert list(client.stream("count", 3)) == [1, 2, 3]
    monkeypatch.delitem(_wire.CODECS, "msgpack", raising=False)
    with Client.connect(connector) as client:
        assert client.format == "json"
        assert client.request("echo", {"b": [1, "x"]}) == {"b": [1, "x"]}


@pytest.mark.skipif("not config.getoption('--keepalive')", reason="idles 25 s: run with --keepalive")
def test_an_idle_client_survives_the_servers_keepalive(rust_server: RustServer) -> None:
    with Client.connect(rust_server.connector) as client:
        time.sleep(25)  # the Rust server drops peers silent for 2 x 10 s
        assert client.request("echo", "awake") == "awake"
