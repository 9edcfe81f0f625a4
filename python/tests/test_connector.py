"""Connector strings: both languages read each other's, unknown optional
fields are ignored, malformed strings get clear errors, `@NAME` resolves
through the same registry and services file as the Rust side."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import RustServer, run_cli

import switchboard_ipc as sb
from switchboard_ipc import Client, Connector, ConnectorError, UnsupportedConnectorError
from switchboard_ipc.aio import Router, Server


def encode(fields: "dict[str, object]") -> str:
    raw = json.dumps(fields, separators=(",", ":")).encode()
    return "sb1:" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_rust_string_loads_and_dumps_back_identically(rust_server: RustServer) -> None:
    connector = Connector.load_state(rust_server.connector + "\n")
    assert connector.kind == "unix"
    assert connector.secret is not None and len(connector.secret) >= 16
    assert Connector.load_state(connector.dump_state()) == connector
    assert "redacted" in str(connector) and base64.urlsafe_b64encode(connector.secret).decode()[:10] not in repr(connector)


def test_the_rust_cli_reads_a_python_string(switchboard_bin: Path) -> None:
    connector = Connector.tcp("127.0.0.1", 4567)
    shown = run_cli(switchboard_bin, "describe", "--help")
    assert shown.returncode == 0
    for text in (connector.dump_state(), Connector.local().dump_state()):
        # A connector nobody serves: the CLI reads it, then fails to reach it
        # (exit 3), rather than refusing the string (exit 2).
        called = run_cli(switchboard_bin, "call", "--connect-timeout", "100", text, "echo")
        assert called.returncode == 3, called.stderr
        secret = base64.urlsafe_b64encode(Connector.load_state(text).secret or b"").decode().rstrip("=")
        assert secret not in called.stderr


def test_local_is_private_and_fresh() -> None:
    a, b = Connector.local(), Connector.local()
    assert a.kind == "unix" and a != b and a.secret != b.secret
    assert not os.path.exists(os.path.dirname(a.address)), "nothing touches the disk before binding"


def test_unknown_optional_fields_are_ignored_and_kept(rust_server: RustServer) -> None:
    fields = json.loads(base64.urlsafe_b64decode(rust_server.connector[4:] + "=="))
    fields["r"] = {"ring": "/dev/shm/x", "slots": 64}  # a field from a newer build
    fields["zz"] = 1
    text = encode(fields)
    connector = Connector.load_state(text)
    assert connector.extra == {"r": {"ring": "/dev/shm/x", "slots": 64}, "zz": 1}
    assert Connector.load_state(connector.dump_state()) == connector
    with Client.connect(text) as client:
        assert client.request("echo", "still works") == "still works"


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "empty"),
        ("'sb1:eyJrIjoidW5peCJ9'", "quotes"),
        ("sb1:eyJrIjoidW5p\neCJ9", "whitespace"),
        ("SWITCHBOARD_CONNECTOR=sb1:eyJrIjoidW5peCJ9", "comes after"),
        ("http://example.com", 'does not start with "sb1:"'),
        ("sb9:eyJrIjoidW5peCJ9", "unknown connector version"),
        ("sb1:eyJrIjoidW5peCJ9+", "never contain"),
        ("sb1:eyJrIjoidW5peCIsImEiOiIvdG1w", "truncated"),
        ("sb1:bm90IGpzb24", "does not hold a connector"),
        (encode({"a": "/tmp/x"}), "no kind"),
        (encode({"k": "tcp", "a": "localhost"}), "not host:port"),
        (encode({"k": "unix", "a": "/tmp/x", "s": "c2hvcnQ"}), "secret"),
        (encode({"k": "unix", "a": "/tmp/x", "m": 12}), "frame size limit"),
    ],
)
def test_malformed_connectors_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConnectorError, match=says):
        Connector.load_state(text)
    with pytest.raises(sb.Error):
        Client.connect(text, timeout=1)


def test_the_error_never_echoes_the_secret() -> None:
    text = Connector.local().dump_state()
    with pytest.raises(ConnectorError) as caught:
        Connector.load_state(text[:-3])
    assert text[10:] not in str(caught.value)


@pytest.mark.parametrize(
    "fields, says",
    [
        ({"k": "amqp", "a": "jobs", "u": "amqp://guest:guest@127.0.0.1:5672/%2f"}, "AMQP"),
        ({"k": "pipe", "a": "switchboard-x"}, "named pipes"),
        ({"k": "fd", "a": "3"}, "'fd' is not one this package knows"),
    ],
)
def test_kinds_this_package_cannot_use_are_refused_clearly(fields: "dict[str, object]", says: str) -> None:
    connector = Connector.load_state(encode(fields))  # well-formed: it loads
    assert connector.kind == fields["k"]
    with pytest.raises(UnsupportedConnectorError, match=says):
        Client.connect(connector, timeout=1)


def test_at_name_resolves_through_the_rust_registry(switchboard_bin: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    server = RustServer(switchboard_bin, ["--name", "py-echo"], env=dict(os.environ))
    try:
        assert Connector.load_state("@py-echo").kind == "unix"
        with Client.connect("@py-echo") as client:
            assert client.request("echo", [1, "two"]) == [1, "two"]
        with pytest.raises(ConnectorError, match="no service named 'nobody'"):
            Connector.load_state("@nobody")
    finally:
        server.stop()


def test_at_name_reads_the_services_file(switchboard_bin: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    (tmp_path / "calc.secret").write_text(secret + "\n")
    services = tmp_path / "services.toml"
    services.write_text(
        "# the project's fixed layout\n[services.calc]\n"
        'socket = "calc.sock"\nsecret_file = "calc.secret"\n\n'
        '[services.other]\ntcp = "127.0.0.1:1"\nsecret_env = "NOT_SET_ANYWHERE"\n'
    )
    monkeypatch.setenv("SWITCHBOARD_SERVICES", str(services))
    connector = Connector.load_state("@calc")
    assert connector.address == str(tmp_path / "calc.sock")
    assert connector.secret == base64.urlsafe_b64decode(secret + "=")
    # A Python server binds it, and the Rust CLI reaches it by the same name.
    async def serve_and_call() -> "subprocess.CompletedProcess[str]":
        server = await Server.bind(connector, Router().route("echo", lambda p: p))
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: run_cli(switchboard_bin, "call", "@calc", "echo", '"by name"', env=dict(os.environ)))
        finally:
            await server.close()

    called = asyncio.run(serve_and_call())
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == "by name"
    with pytest.raises(ConnectorError, match="NOT_SET_ANYWHERE"):
        Connector.load_state("@other")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = Connector.tcp("::1", 9)
    monkeypatch.setenv("SWITCHBOARD_CONNECTOR", connector.dump_state())
    assert Connector.from_env() == connector
    assert connector.host_port() == ("::1", 9)
    monkeypatch.delenv("SWITCHBOARD_CONNECTOR")
    with pytest.raises(ConnectorError, match="SWITCHBOARD_CONNECTOR is not set"):
        Connector.from_env()
