"""Where ``compare.py``'s "10k pending" throughput goes, against its own C=100.

A diagnostic, not a benchmark of record (that is ``compare.py``).  In one process, with
this Motor's client (asyncio or Tornado) against the canned server on a CPU of its own,
three ways to run ``find_one`` are alternated, each repetition running all three:

``c100``         100 tasks share 8,000 calls, each awaited before the task's next
``tasks``        10,000 tasks started at once, two calls each (``compare.py``'s workload):
                 10,000 operations pending on a pool of 100 connections
``futures``      100 tasks, each gathering 100 calls at once, twice: the same 10,000
                 pending operations and 20,000 calls, without 10,000 tasks

``tasks`` pays, besides the driver's admission queue, for creating 10,000 asyncio tasks
and for the garbage collector's passes over them (the generation-2 collection that
10,000 tasks' objects set off walks every object of the process); ``futures`` pays for
the admission queue alone.  Each figure comes with the CPU time per operation and the
collector's passes and time during the run (the collector stays on, as applications run
it).

    .venv/bin/python bench/pending.py [--framework tornado] [--reps 8]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import canned_server, server_cpus

C100_OPS = 8000
PENDING = 10_000
GROUPS = 100


class _Collections:
    """The garbage collector's passes by generation, and their time, since ``reset``."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.passes = [0, 0, 0]
        self.seconds = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.passes[info["generation"]] += 1


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=("asyncio", "tornado"), default="asyncio")
    parser.add_argument("--reps", type=int, default=8)
    args = parser.parse_args()
    with canned_server(cpus=server_cpus()) as server:
        run: Callable[[Callable[[], Awaitable[Any]]], Any]
        if args.framework == "tornado":
            from tornado.ioloop import IOLoop

            from motor.motor_tornado import MotorClient

            io_loop = IOLoop(make_current=False)
            run = io_loop.run_sync
            client_class: Any = MotorClient
        else:
            from motor.motor_asyncio import AsyncIOMotorClient

            loop = asyncio.new_event_loop()

            def run(factory: Callable[[], Awaitable[Any]]) -> Any:
                return loop.run_until_complete(factory())

            client_class = AsyncIOMotorClient

        async def connect() -> Any:
            return client_class(server.uri, maxPoolSize=100)

        client = run(connect)
        collection = client.bench.small

        async def c100() -> int:
            remaining = C100_OPS

            async def task() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await collection.find_one({})

            await asyncio.gather(*(task() for _ in range(100)))
            return C100_OPS

        async def tasks() -> int:
            async def task() -> None:
                for _ in range(2):
                    await collection.find_one({})

            await asyncio.gather(*(task() for _ in range(PENDING)))
            return 2 * PENDING

        async def futures() -> int:
            async def task() -> None:
                for _ in range(2):
                    await asyncio.gather(*[collection.find_one({}) for _ in range(GROUPS)])

            await asyncio.gather(*(task() for _ in range(PENDING // GROUPS)))
            return 2 * PENDING

        ways: dict[str, Callable[[], Awaitable[int]]] = {
            "c100": c100,
            "tasks": tasks,
            "futures": futures,
        }
        for way in ways.values():  # warm-up
            run(way)
        collections = _Collections()
        results: dict[str, list[tuple[float, float, list[int], float]]] = {w: [] for w in ways}
        for _ in range(args.reps):
            for name, way in ways.items():
                gc.collect()
                collections.reset()
                cpu0, wall0 = _cpu(), time.perf_counter()
                ops = run(way)
                wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
                results[name].append(
                    (ops / wall, cpu / ops * 1e6, collections.passes[:], collections.seconds)
                )
        client.close()

    print(f"{args.framework}, {args.reps} repetitions, medians:")
    for name, rows in results.items():
        rate = statistics.median(r[0] for r in rows)
        cpu = statistics.median(r[1] for r in rows)
        passes = [statistics.median(r[2][g] for r in rows) for g in range(3)]
        collected = statistics.median(r[3] for r in rows) * 1e3
        print(
            f"  {name:8s} {rate:8,.0f} ops/s  {cpu:6.1f} µs CPU/op  collector passes "
            f"{passes[0]:g}/{passes[1]:g}/{passes[2]:g} (gen 0/1/2), {collected:.1f} ms"
        )
    for name in ("tasks", "futures"):
        ratios = [p[0] / c[0] for c, p in zip(results["c100"], results[name], strict=True)]
        print(
            f"  {name} / c100, median of the repetitions' ratios: {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
