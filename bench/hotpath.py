"""Where this Motor's CPU per sequential operation goes, layer by layer.

A diagnostic for work on the green core, not a benchmark of record (that is
``compare.py``).  Against the canned server (busy-polling, on a CPU of its own), each
layer runs the same PyMongo operation 20,000 times in a fresh process and reports the
CPU time per operation:

``sync``       PyMongo's ``MongoClient`` (Motor not imported)
``outside``    the delegate PyMongo collection of a Motor client, called outside any
               greenlet (after its loop ran: green primitives refuse to block a running
               loop): green sockets and Motor's PyMongo patches, but no greenlets
``in_child``   the same calls, all in one child greenlet (a park and a resume each)
``hub_spawn``  one child per operation through ``Hub.spawn``, awaited by a task
``motor``      ``await collection.find_one()`` (or ``insert_one``)
``wire``       one child per operation, as ``hub_spawn``, running only the command's wire
               exchange: pool checkout, ``OP_MSG`` encoding, send, receive, decoding.  No
               session, server selection, retry, monitoring or logging: the green core's
               own cost, below which no PyMongo-based operation goes

With ``--opcodes`` it also counts the Python bytecodes each layer executes per operation,
per function (deterministic, unlike time; from two run lengths, so warm-up and setup
cancel out), and prints the functions where ``motor`` differs from ``sync``.

    .venv/bin/python bench/hotpath.py [--op insert_one] [--ops N] [--opcodes [--top N]]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymongo.synchronous.collection import Collection

    from motor.motor_asyncio import AsyncIOMotorCollection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import CannedServer, build_canned_server

LAYERS = ("sync", "outside", "in_child", "hub_spawn", "motor", "wire")


def _short(filename: str) -> str:
    # pymongo/pool.py, asyncio/events.py (standard library), motor/core.py
    if "site-packages/" in filename:
        return filename.split("site-packages/")[-1]
    if "/lib/python3" in filename:
        return filename.split("/lib/python3")[-1].split("/", 1)[-1]
    return os.path.relpath(filename)


class OpcodeCounter:
    """Counts the bytecodes executed per (file, function) while enabled."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            code = frame.f_code
            self.counts[f"{_short(code.co_filename)}:{code.co_name}"] += 1
        return self._local

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        return self._local

    def enable(self, frames: list[Any]) -> None:
        """Trace new frames, and the given ones (frames already running) too."""
        self.counts.clear()
        for frame in frames:
            while frame is not None:
                frame.f_trace = self._local
                frame.f_trace_opcodes = True
                frame = frame.f_back
        sys.settrace(self._global)

    def disable(self) -> dict[str, int]:
        sys.settrace(None)
        return dict(self.counts)


def run_layer(layer: str, uri: str, op: str, n: int, counter: OpcodeCounter | None) -> Any:
    """Run ``n`` operations in ``layer``; CPU µs per operation, or opcode counts."""
    doc = {"i": 1}

    def call(coll: Any, i: int) -> Any:
        if op == "find_one":
            return coll.find_one(doc)
        return coll.insert_one({"i": i, "name": "bench"})

    if layer == "sync":
        import pymongo

        coll: Collection[Any] = pymongo.MongoClient(uri).db.coll
        for i in range(n // 10):
            call(coll, i)
        if counter is not None:
            counter.enable([sys._getframe()])
        cpu = time.process_time()
        for i in range(n):
            call(coll, i)
        cpu = time.process_time() - cpu
        return counter.disable() if counter is not None else cpu / n * 1e6

    import motor.green.hub
    from motor.green.hub import get_hub
    from motor.motor_asyncio import AsyncIOMotorClient

    if layer == "outside":
        # Motor's green primitives refuse to block a running loop's thread, so the
        # delegate is called after its loop has run: its green sockets then wait in
        # poll(), as they do in PyMongo's own threads.
        async def connect() -> Any:
            mcoll: AsyncIOMotorCollection[Any] = AsyncIOMotorClient(uri).db.coll
            await mcoll.find_one({})
            return mcoll.delegate

        coll = asyncio.run(connect())
        for i in range(n // 10):
            call(coll, i)
        if counter is not None:
            counter.enable([sys._getframe()])
        cpu = time.process_time()
        for i in range(n):
            call(coll, i)
        cpu = time.process_time() - cpu
        return counter.disable() if counter is not None else cpu / n * 1e6

    if counter is not None:
        # Tracing slows everything down by far more than the hub's work budget per loop
        # iteration: without this, every start would wait for the next iteration.
        motor.green.hub.WORK_BUDGET = 10.0

    async def main() -> Any:
        mcoll: AsyncIOMotorCollection[Any] = AsyncIOMotorClient(uri).db.coll
        await mcoll.find_one({})
        coll = mcoll.delegate
        hub = get_hub(asyncio.get_running_loop())

        def in_one_child(count: int) -> None:
            for i in range(count):
                call(coll, i)

        def wire(i: int) -> Any:
            # The find or insert command, as PyMongo sends it, with nothing around it.
            if op == "find_one":
                command: dict[str, Any] = {"find": "coll", "filter": doc, "limit": 1}
                command["singleBatch"] = True
            else:
                command = {"insert": "coll", "documents": [{"i": i, "name": "bench"}]}
            with pool.checkout() as conn:
                request_id, message, *_ = _op_msg(0, command, "db", None, codec_options)
                conn.send_message(message, 0)
                return conn.receive_message(request_id).unpack_response()[0]

        if layer == "wire":
            from bson.codec_options import DEFAULT_CODEC_OPTIONS as codec_options
            from pymongo.message import _op_msg
            from pymongo.read_preferences import ReadPreference

            topology = mcoll.delegate.database.client._topology
            pool = topology.select_server(ReadPreference.PRIMARY, "find").pool

        async def body(count: int) -> None:
            if layer == "in_child":
                await hub.spawn(in_one_child, count)
            elif layer == "hub_spawn":
                for i in range(count):
                    await hub.spawn(call, coll, i)
            elif layer == "wire":
                for i in range(count):
                    await hub.spawn(wire, i)
            else:
                method = getattr(mcoll, op)
                for i in range(count):
                    await (method(doc) if op == "find_one" else method({"i": i, "name": "b"}))

        await body(n // 10)
        if counter is not None:
            # Children parked in the hub's idle list resume frames started earlier.
            counter.enable([sys._getframe()] + [c.gr_frame for c in hub._idle])
        cpu = time.process_time()
        await body(n)
        cpu = time.process_time() - cpu
        return counter.disable() if counter is not None else cpu / n * 1e6

    return asyncio.run(main())


def child_main(args: argparse.Namespace) -> None:
    # In a fresh process: one layer; prints JSON.
    if args.opcodes:
        short = run_layer(args.layer, args.uri, args.op, args.ops, OpcodeCounter())
        long = run_layer(args.layer, args.uri, args.op, 3 * args.ops, OpcodeCounter())
        per_op = {k: (long.get(k, 0) - short.get(k, 0)) / (2 * args.ops) for k in {*short, *long}}
        print(json.dumps({k: v for k, v in per_op.items() if abs(v) >= 0.05}))
    else:
        print(json.dumps(run_layer(args.layer, args.uri, args.op, args.ops, None)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=("find_one", "insert_one"), default="find_one")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--opcodes", action="store_true", help="count bytecodes per operation")
    parser.add_argument(
        "--top", type=int, default=0, help="with --opcodes: also list motor's N costliest functions"
    )
    parser.add_argument("--layer", help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layer:
        child_main(args)
        return

    cpus = sorted(os.sched_getaffinity(0))
    server_cpu = frozenset(cpus[-1:]) if len(cpus) > 1 else None
    with CannedServer(
        build_canned_server(), gomaxprocs=1, cpus=server_cpu, args=("-busy-poll",)
    ) as server:
        results: dict[str, Any] = {}
        for layer in LAYERS:
            command = [sys.executable, __file__, "--layer", layer, "--uri", server.uri]
            command += ["--op", args.op, "--ops", str(300 if args.opcodes else args.ops)]
            command += ["--opcodes"] if args.opcodes else []

            def confine() -> None:
                if server_cpu is not None:
                    os.sched_setaffinity(0, set(cpus) - server_cpu)

            out = subprocess.run(
                command, capture_output=True, text=True, check=True, preexec_fn=confine
            )
            results[layer] = json.loads(out.stdout)

    if not args.opcodes:
        print(f"{args.op}, CPU µs per operation ({args.ops:,} operations per layer):")
        previous = None
        for layer in LAYERS:
            value = results[layer]
            # (wire is no layer on top of motor: no step)
            step = "" if previous is None or layer == "wire" else f"  {value - previous:+5.1f}"
            print(f"  {layer:10s} {value:6.1f}{step}")
            previous = value
        return
    print(f"{args.op}, Python bytecodes per operation:")
    for layer in LAYERS:
        print(f"  {layer:10s} {sum(results[layer].values()):7.0f}")
    sync, motor = results["sync"], results["motor"]
    rows = sorted(
        ((motor.get(k, 0) - sync.get(k, 0), k) for k in {*sync, *motor}),
        key=lambda row: -abs(row[0]),
    )
    print("motor − sync, per function (|difference| ≥ 5):")
    for diff, name in rows:
        if abs(diff) >= 5:
            print(f"  {diff:+7.1f}  {name}")
    if args.top:
        print(f"motor, the {args.top} functions that execute the most bytecodes per operation:")
        for name, count in sorted(motor.items(), key=lambda item: -item[1])[: args.top]:
            print(f"  {count:7.1f}  {name}")


if __name__ == "__main__":
    main()
