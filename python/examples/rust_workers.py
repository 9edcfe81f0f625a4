"""A Python parent that spawns Rust workers.

The parent serves ``progress`` (notifications) on a private local
connector and starts the Rust ``parent_child`` example in its worker mode,
with the connector in each worker's environment (SWITCHBOARD_CONNECTOR).
It then hands out work items as requests to the workers (``work``: count
the primes below a number); each worker notifies its progress (0, 50, 100)
while it works. The parent checks every result and the order of the
progress notifications, closes its server, and the workers exit.

    python rust_workers.py PATH/TO/parent_child

(``cargo build --example parent_child`` builds it, in target/debug/examples.)
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Dict, List, Tuple

from switchboard_ipc import ENV_VAR, Connector
from switchboard_ipc.aio import Router, Server, caller

WORKERS = 3
ITEMS = 12


def count_primes(below: int) -> int:
    return sum(1 for n in range(2, below) if all(n % d for d in range(2, int(n**0.5) + 1)))


async def main(worker_exe: str) -> int:
    progress: Dict[Tuple[str, int], List[int]] = {}

    def on_progress(p: Dict[str, Any]) -> None:
        progress.setdefault((caller().client_id, p["item"]), []).append(p["percent"])

    server = await Server.bind(Connector.local(), Router().route("progress", on_progress))
    env = dict(os.environ, **{ENV_VAR: server.connector.dump_state()})
    workers = [
        await asyncio.create_subprocess_exec(worker_exe, "worker", f"rust-worker-{n}", env=env,
                                             stdin=asyncio.subprocess.DEVNULL)
        for n in range(WORKERS)
    ]
    await asyncio.wait_for(server.wait_for_clients(WORKERS), 30)
    print(f"parent: Rust workers connected: {server.clients}")

    queue = list(range(ITEMS))
    results: List[Tuple[str, int, int]] = []

    async def feed(worker_id: str) -> None:
        while queue:
            item = queue.pop(0)
            below = 20_000 + item * 1_000
            primes = await server.request(worker_id, "work", {"item": item, "below": below})
            results.append((worker_id, item, primes))

    await asyncio.gather(*(feed(worker_id) for worker_id in server.clients))
    for worker_id, item, primes in results:
        expected = count_primes(20_000 + item * 1_000)
        if primes != expected:
            print(f"{worker_id} counted {primes} primes for item {item}, not {expected}")
            return 1
    for _ in range(500):  # the last notifications may still be on their way
        if len(progress) == ITEMS and all(len(p) == 3 for p in progress.values()):
            break
        await asyncio.sleep(0.01)
    for (worker_id, item), steps in sorted(progress.items()):
        if steps != [0, 50, 100]:
            print(f"{worker_id}'s progress for item {item} arrived as {steps}")
            return 1
    await server.close()
    codes = [await asyncio.wait_for(worker.wait(), 10) for worker in workers]
    if any(codes) or len(results) != ITEMS:
        print(f"workers exited with {codes}; {len(results)} of {ITEMS} items came back")
        return 1
    print(f"parent: {ITEMS} items came back correct from {WORKERS} Rust workers, progress in order")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(sys.argv[1])))
