"""Fixtures that run the real Rust side: the ``switchboard`` CLI and the
repository's examples, already built (these tests build nothing).

Where they are found:
  SWITCHBOARD_BIN        the CLI (default: <target>/debug/switchboard)
  SWITCHBOARD_EXAMPLES   the examples' directory (default: <target>/debug/examples)
where <target> is $CARGO_TARGET_DIR, else the repository's target/.
Build them with ``cargo build --all-features -p switchboard-ipc-cli`` and
``cargo build --all-features --examples``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[2]
EXE = ".exe" if sys.platform == "win32" else ""


def _target() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug"


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.fail(f"{what} not found at {path}: build it first (see python/tests/conftest.py), "
                    "or point SWITCHBOARD_BIN / SWITCHBOARD_EXAMPLES at it", pytrace=False)
    return path


@pytest.fixture(scope="session")
def switchboard_bin() -> Path:
    configured = os.environ.get("SWITCHBOARD_BIN")
    return _need(Path(configured) if configured else _target() / f"switchboard{EXE}", "the switchboard CLI")


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    configured = os.environ.get("SWITCHBOARD_EXAMPLES")
    return Path(configured) if configured else _target() / "examples"


@pytest.fixture()
def example(examples_dir: Path):  # type: ignore[no-untyped-def]
    def find(name: str) -> Path:
        return _need(examples_dir / f"{name}{EXE}", f"the Rust example {name}")

    return find


class RustServer:
    """A running ``switchboard echo-server`` (routes echo, sleep, fail,
    count); it stops when its stdin closes."""

    def __init__(self, binary: Path, args: List[str], env: "dict[str, str] | None" = None) -> None:
        self.process = subprocess.Popen([str(binary), "echo-server", *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env=env)
        assert self.process.stdout is not None
        self.connector = self.process.stdout.readline().decode().strip()
        assert self.connector.startswith(("sb1:", "@")), f"echo-server printed {self.connector!r}"

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture()
def rust_server(switchboard_bin: Path) -> Iterator[RustServer]:
    server = RustServer(switchboard_bin, [])
    yield server
    server.stop()


@pytest.fixture()
def rust_tcp_server(switchboard_bin: Path) -> Iterator[RustServer]:
    server = RustServer(switchboard_bin, ["--tcp", "127.0.0.1:0"])
    yield server
    server.stop()


def run_cli(binary: Path, *args: str, env: "dict[str, str] | None" = None,
            timeout: float = 30) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=timeout, env=env)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--keepalive", action="store_true", help="also run the 25 s idle keepalive test")
