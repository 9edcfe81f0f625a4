"""The `inherited` connector kind: a child reaches its parent's server
through one end of a socketpair it inherited, no socket file involved; the
channel connects once and is refused clearly elsewhere."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from switchboard_ipc import Client, Connector, ConnectorError
from switchboard_ipc.aio import Router, Server

CHILD = """
import sys
from switchboard_ipc import Client, Connector, ConnectorError
connector = Connector.from_env()
with Client.connect(connector) as client:
    print(client.request("echo", "through the inherited channel"))
try:
    Client.connect(connector)
except ConnectorError as error:
    print("again:", error)
"""


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix only")
def test_a_child_connects_through_an_inherited_socketpair() -> None:
    async def main() -> str:
        server = await Server.bind(Connector.local(), Router().route("echo", lambda p: p))
        parent_end, child_end = socket.socketpair()
        await server.serve_socket(parent_end)
        connector = server.child_connector(child_end)
        assert connector.kind == "inherited" and Connector.load_state(connector.dump_state()) == connector
        env = dict(os.environ, SWITCHBOARD_CONNECTOR=connector.dump_state(),
                   PYTHONPATH=os.pathsep.join(sys.path))
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, env=env,
                                                     pass_fds=[child_end.fileno()],
                                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        child_end.close()
        out, err = await asyncio.wait_for(child.communicate(), 60)
        await server.close()
        assert child.returncode == 0, err.decode()
        return out.decode()

    out = asyncio.run(main())
    assert "through the inherited channel" in out
    assert "again: the inherited channel (descriptor" in out and "connects once" in out


def test_an_inherited_connector_this_process_does_not_hold_is_refused() -> None:
    secret = os.urandom(32)
    with pytest.raises(ConnectorError, match="not open in this process"):
        Client.connect(Connector("inherited", "987", secret))
    with open(os.devnull) as file:
        os.set_inheritable(file.fileno(), True)
        with pytest.raises(ConnectorError, match="not a socket"):
            Client.connect(Connector("inherited", str(file.fileno()), secret))
    with pytest.raises(ConnectorError, match="descriptor number"):
        Client.connect(Connector("inherited", "x1", secret))


def test_an_inherited_channel_to_serve_on_is_refused_before_its_end_is_touched() -> None:
    left, right = socket.socketpair()
    os.set_inheritable(left.fileno(), True)
    to_serve = Connector("inherited", str(left.fileno()), os.urandom(32), extra={"p": "serve"})
    with pytest.raises(ConnectorError, match="to serve on: its parent is the client"):
        Client.connect(to_serve)
    # Untouched: still open, still inheritable, still connected.
    assert os.get_inheritable(left.fileno())
    right.sendall(b"x")
    assert left.recv(1) == b"x"
    left.close()
    right.close()
