"""A Python worker for a Rust parent (examples/python_workers.rs).

The parent puts its connector in SWITCHBOARD_CONNECTOR and calls this
worker's ``work`` route; while working, the worker sends numbered
``progress`` notifications and calls the parent's ``double`` route on the
same connection. It exits when the parent closes the connection.

    python worker.py WORKER_ID
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict

from switchboard_ipc import Connector
from switchboard_ipc.aio import Client, Router, caller

STEPS = 5


async def work(job: Dict[str, Any]) -> Dict[str, Any]:
    parent = caller()
    for step in range(STEPS):
        await parent.notify("progress", {"item": job["item"], "step": step})
    doubled = await parent.request("double", job["n"])
    return {"item": job["item"], "sum": sum(range(job["n"])), "doubled": doubled}


async def main(worker_id: str) -> None:
    router = Router().route("work", work)
    client = await Client.connect(Connector.from_env(), client_id=worker_id, router=router)
    await client.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "py-worker"))
