"""Diagnostic: how sequential latency on this machine depends on the rhythm of requests.

Runs sequential ``insert_one`` (or ``find_one``) with PyMongo's synchronous client and this
checkout's ``AsyncIOMotorClient`` against the canned server (pinned to a CPU of its own, the
client to the others, as ``compare.py`` does), adding a busy-wait of S µs before every
request (in a command listener's ``started`` event, so both clients pay the same), for
several values of S.  Each row gives µs per operation minus S for both clients, and their
ratio.

On hardware where a round trip costs the same whatever the spacing of requests, every row
shows the same latencies.  On a virtual machine whose idle CPUs halt (and are woken by the
host), the round trip depends on how long each side was idle, so a client that spends a
few µs more per operation can come out faster or slower; the spread of the ratio across
rows is how far timing alone moves a sequential comparison here.

Usage::

    .venv/bin/python bench/rhythm.py [--op insert_one|find_one] [--ops N] [--reps N]
        [--spins 0,2,4,...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pymongo  # noqa: E402
from pymongo import monitoring  # noqa: E402
from servers import canned_server, server_cpus  # noqa: E402

from motor.motor_asyncio import AsyncIOMotorClient  # noqa: E402

_perf_counter = time.perf_counter


class Spin(monitoring.CommandListener):
    """Busy-waits ``seconds`` when a command starts, just before it is sent."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.seconds:
            end = _perf_counter() + self.seconds
            while _perf_counter() < end:
                pass

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _argument(op: str) -> Callable[[int], dict[str, Any]]:
    """The operation's argument for its ``i``-th call (as ``compare.py`` uses them)."""
    if op == "insert_one":
        return lambda i: {"i": i, "name": "bench"}
    return lambda i: {"i": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=("insert_one", "find_one"), default="insert_one")
    parser.add_argument("--ops", type=int, default=3000, help="operations per run")
    parser.add_argument("--reps", type=int, default=5, help="runs per client and spin")
    parser.add_argument("--spins", default="0,2,4,6,8,10,12,15,20", help="µs, comma-separated")
    parser.add_argument("--server-args", default="", help="extra canned server flags")
    args = parser.parse_args()
    spins = [float(s) for s in args.spins.split(",")]
    make_arg = _argument(args.op)
    cpus = server_cpus()
    listener = Spin()
    with canned_server(cpus=cpus, args=tuple(args.server_args.split())) as server:
        if cpus is not None:
            os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - set(cpus))
        sync_client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            server.uri, event_listeners=[listener]
        )
        sync_op = getattr(sync_client.bench.coll, args.op)

        async def run() -> dict[tuple[str, float], list[float]]:
            client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
                server.uri, event_listeners=[listener]
            )
            motor_op = getattr(client.bench.coll, args.op)
            n = args.ops

            async def motor_run() -> None:
                for i in range(n):
                    await motor_op(make_arg(i))

            async def sync_run() -> None:
                for i in range(n):
                    sync_op(make_arg(i))

            for i in range(300):  # warm up both
                await motor_op(make_arg(i))
                sync_op(make_arg(i))
            results: dict[tuple[str, float], list[float]] = {}
            for rep in range(args.reps):
                for spin in spins:
                    listener.seconds = spin / 1e6
                    clients = [("sync", sync_run), ("motor", motor_run)]
                    for name, body in clients if rep % 2 == 0 else clients[::-1]:
                        started = _perf_counter()
                        await body()
                        per_op = (_perf_counter() - started) / n * 1e6
                        results.setdefault((name, spin), []).append(per_op - spin)
            client.close()
            return results

        results = asyncio.run(run())
        sync_client.close()

    print(f"sequential {args.op}, µs per operation minus the spin (median of {args.reps})")
    print(f"{'spin µs':>8}  {'PyMongo sync':>12}  {'this Motor':>10}  {'ratio':>6}")
    ratios = []
    for spin in spins:
        sync_us = statistics.median(results[("sync", spin)])
        motor_us = statistics.median(results[("motor", spin)])
        ratios.append(motor_us / sync_us)
        print(f"{spin:8g}  {sync_us:12.1f}  {motor_us:10.1f}  {ratios[-1]:6.3f}")
    print(f"ratio range {min(ratios):.3f} to {max(ratios):.3f}")


if __name__ == "__main__":
    main()
