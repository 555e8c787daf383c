"""The longest loop stall while a client with a full pool closes.

A client with ``--connections`` idle pooled connections (checked out all at once, then
returned) is closed while a 1 ms ticker runs on the loop; the figure is the most CPU the
loop's thread used between two ticks (ms).  Two ways, alternating, ``--reps`` times each:

==================  =====================================================================
``Motor close()``   ``await client.close()``: the idle connections closed one at a time,
                    the loop running between two once the iteration's work budget is spent
``PyMongo close()`` PyMongo's ``MongoClient.close()`` run as one call in a child greenlet,
                    which closes every pooled connection in one stretch (Motor 3.7.1 runs
                    the same ``close()`` synchronously on the loop's thread)
==================  =====================================================================

Usage (from the repository root, with the project's virtualenv and a server)::

    .venv/bin/python bench/close_stall.py --uri mongodb://127.0.0.1:27017 --connections 400
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

from motor.green.hub import get_hub
from motor.motor_asyncio import AsyncIOMotorClient
from motor.sync_code import run_green


async def close_once(uri: str, connections: int, motor_close: bool) -> float:
    """Fill a client's pool, close it one way; the busiest gap's loop-thread CPU (ms)."""
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(uri, maxPoolSize=connections)
    await client.aconnect()
    (server,) = client.delegate._topology._servers.values()
    pool = server.pool

    def fill() -> None:
        with contextlib.ExitStack() as stack:
            for _ in range(connections):
                stack.enter_context(pool.checkout())

    await run_green(fill)
    assert len(pool.conns) == connections, len(pool.conns)
    busiest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal busiest
        last = time.thread_time()
        while running:
            await asyncio.sleep(0.001)
            now = time.thread_time()
            busiest = max(busiest, now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    busiest = 0.0
    if motor_close:
        await client.close()
    else:
        binding: Any = client._binding  # Motor's side, marked closed as close() does
        binding.close()
        await get_hub(asyncio.get_running_loop()).spawn(client.delegate.close)
    await asyncio.sleep(0.005)
    running = False
    await task
    return busiest * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uri", required=True)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"Motor close()": [], "PyMongo close()": []}
    for _ in range(args.reps):
        for name in results:
            results[name].append(
                await close_once(args.uri, args.connections, name == "Motor close()")
            )
    print(f"{args.connections} pooled connections; most loop-thread CPU between 1 ms ticks:")
    for name, figures in results.items():
        runs = ", ".join(f"{f:.2f}" for f in figures)
        print(f"  {name:16s} median {statistics.median(figures):6.2f} ms  ({runs})")


if __name__ == "__main__":
    asyncio.run(main())
