"""Micro-benchmark: sequential ``find_one`` and ``insert_one`` latency, Motor vs PyMongo.

Three clients run the same sequential loop (one operation at a time, each awaited
before the next starts) in one process:

* PyMongo's synchronous ``MongoClient`` (the baseline),
* this checkout's ``AsyncIOMotorClient`` on an asyncio loop,
* this checkout's Tornado ``MotorClient`` on a Tornado ``IOLoop``.

against two servers:

* the *canned server* (``bench/cannedserver``, Go, built on first use): it answers
  every request with a reply encoded at startup, so nearly all the time measured is
  the client's own (Python) work plus loopback latency;
* *FerretDB* (or any real server): ``--ferretdb-uri``, ``MOTOR_BENCH_FERRETDB_URI``, or
  a server launched through ``test.server.launch()`` when the test launcher exists.

Every client is warmed up first.  Then, for each workload, the clients take turns:
each repetition runs ``--ops`` operations per client, with the order rotated every
repetition so that drift (CPU frequency, other load) is spread over all clients; a
``gc.collect()`` precedes each run.  Reported per client: the median over repetitions
of µs per operation (wall clock), the spread (min–max of the repetition values), the
process CPU time per operation, and the ratios to PyMongo.

Event-loop stalls are measured in one extra run per Motor client and workload, with a
task that sleeps 1 ms in a loop: the longest interval between its wake-ups is the
longest time the loop could not run other tasks (plus the 1 ms sleep and timer
granularity; the idle-loop value is printed for reference).  That run is not part of
the timings, so the ticker's own cost does not skew the ratios.

Usage::

    PYTHONPATH=. python bench/micro.py [--quick] [--ferretdb-uri URI] [--json out.json]
    PYTHONPATH=. python bench/micro.py --profile      # cProfile of Motor asyncio find_one
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Benchmark this checkout's Motor, whatever else may be installed.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import greenlet  # noqa: E402
import pymongo  # noqa: E402
import tornado  # noqa: E402
from servers import (  # noqa: E402
    BenchSetupError,
    CannedServer,
    ExternalServer,
    build_canned_server,
    ferretdb_server,
    git,
    go_version,
    server_cpus,
)
from tornado.ioloop import IOLoop  # noqa: E402

import motor  # noqa: E402
from motor.motor_asyncio import AsyncIOMotorClient  # noqa: E402
from motor.motor_tornado import MotorClient  # noqa: E402

WORKLOADS = ("find_one", "insert_one")
TICK = 0.001  # the stall ticker's sleep (seconds)
_perf_counter = time.perf_counter
_process_time = time.process_time

#: A timed run's result: (wall seconds, process CPU seconds).
Timing = tuple[float, float]


# --------------------------------------------------------------------------- workloads


def _small_document(i: int) -> dict[str, Any]:
    """About 100 bytes of BSON, like the canned server's ``small`` document."""
    return {"_id": i, "name": "canned", "n": i, "x": i / 2, "pad": "x" * 37}


def _sync_loop(workload: str, coll: Any, n: int) -> Timing:
    """Run ``n`` sequential operations on a PyMongo collection."""
    if workload == "find_one":
        find_one = coll.find_one
        wall, cpu = _perf_counter(), _process_time()
        for _ in range(n):
            find_one({})
    else:
        insert_one = coll.insert_one
        wall, cpu = _perf_counter(), _process_time()
        for i in range(n):
            insert_one({"i": i, "name": "bench"})
    return _perf_counter() - wall, _process_time() - cpu


async def _async_loop(workload: str, coll: Any, n: int) -> Timing:
    """Run ``n`` sequential operations on a Motor collection, awaiting each."""
    if workload == "find_one":
        find_one = coll.find_one
        wall, cpu = _perf_counter(), _process_time()
        for _ in range(n):
            await find_one({})
    else:
        insert_one = coll.insert_one
        wall, cpu = _perf_counter(), _process_time()
        for i in range(n):
            await insert_one({"i": i, "name": "bench"})
    return _perf_counter() - wall, _process_time() - cpu


async def _ticked(run: Callable[[], Awaitable[Timing]]) -> tuple[Timing, float]:
    """Await ``run()`` while a 1 ms ticker measures the longest gap between its ticks."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = _perf_counter()
        while running:
            await asyncio.sleep(TICK)
            now = _perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # let the ticker take its first timestamp
    try:
        timing = await run()
    finally:
        running = False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return timing, longest


def idle_tick_gap(seconds: float = 0.5) -> float:
    """The longest tick gap of the 1 ms ticker on an idle asyncio loop (seconds)."""

    async def idle() -> Timing:
        await asyncio.sleep(seconds)
        return 0.0, 0.0

    loop = asyncio.new_event_loop()
    try:
        _, gap = loop.run_until_complete(_ticked(idle))
    finally:
        loop.close()
    return gap


# --------------------------------------------------------------------------- clients


class BenchClient:
    """One client under test; ``run`` executes a timed sequential loop."""

    label = ""
    is_motor = False

    def __init__(self, uri: str, db: str, collections: dict[str, str]) -> None:
        self.uri = uri
        self.db = db
        self.collections = collections  # workload -> collection name

    def run(self, workload: str, n: int) -> Timing:
        raise NotImplementedError

    def run_ticked(self, workload: str, n: int) -> tuple[Timing, float]:
        """Like :meth:`run`, with the stall ticker on the client's loop (Motor only)."""
        raise NotImplementedError

    def check(self) -> None:
        """Fail loudly if the workloads do not do what they should on this server."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class PyMongoClient(BenchClient):
    """PyMongo's synchronous client: the baseline."""

    label = "PyMongo (sync)"

    def __init__(self, uri: str, db: str, collections: dict[str, str]) -> None:
        super().__init__(uri, db, collections)
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=10000
        )

    def _coll(self, workload: str) -> Any:
        return self.client[self.db][self.collections[workload]]

    def run(self, workload: str, n: int) -> Timing:
        return _sync_loop(workload, self._coll(workload), n)

    def check(self) -> None:
        _check(self._coll("find_one").find_one({}), self._coll("insert_one").insert_one({}))

    def close(self) -> None:
        self.client.close()


def _check(found: Any, inserted: Any) -> None:
    if not isinstance(found, dict):
        raise BenchSetupError(f"find_one({{}}) returned {found!r}, expected a document")
    if getattr(inserted, "inserted_id", None) is None:
        raise BenchSetupError(f"insert_one() returned {inserted!r}")


class _MotorClient(BenchClient):
    """A Motor client bound to its own event loop, driven by :meth:`_run_coroutine`."""

    is_motor = True
    client: Any

    def _run_coroutine(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        raise NotImplementedError

    def _coll(self, workload: str) -> Any:
        return self.client[self.db][self.collections[workload]]

    def run(self, workload: str, n: int) -> Timing:
        coll = self._coll(workload)
        timing: Timing = self._run_coroutine(lambda: _async_loop(workload, coll, n))
        return timing

    def run_ticked(self, workload: str, n: int) -> tuple[Timing, float]:
        coll = self._coll(workload)
        result: tuple[Timing, float] = self._run_coroutine(
            lambda: _ticked(lambda: _async_loop(workload, coll, n))
        )
        return result

    def check(self) -> None:
        async def both() -> tuple[Any, Any]:
            found = await self._coll("find_one").find_one({})
            inserted = await self._coll("insert_one").insert_one({})
            return found, inserted

        _check(*self._run_coroutine(both))

    def _close_client(self) -> None:
        async def close() -> None:
            future = self.client.close()
            if future is not None:
                await future

        self._run_coroutine(close)


class AsyncIOClient(_MotorClient):
    """``AsyncIOMotorClient`` on a private asyncio loop."""

    label = "Motor asyncio"

    def __init__(self, uri: str, db: str, collections: dict[str, str]) -> None:
        super().__init__(uri, db, collections)
        self.loop = asyncio.new_event_loop()
        self.client = AsyncIOMotorClient(uri, io_loop=self.loop, serverSelectionTimeoutMS=10000)

    def _run_coroutine(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        return self.loop.run_until_complete(factory())

    def close(self) -> None:
        try:
            self._close_client()
        finally:
            self.loop.close()


class TornadoClient(_MotorClient):
    """Tornado ``MotorClient`` on a private ``IOLoop``, driven with ``run_sync``."""

    label = "Motor Tornado"

    def __init__(self, uri: str, db: str, collections: dict[str, str]) -> None:
        super().__init__(uri, db, collections)
        self.io_loop = IOLoop(make_current=False)
        self.client = MotorClient(uri, io_loop=self.io_loop, serverSelectionTimeoutMS=10000)

    def _run_coroutine(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        return self.io_loop.run_sync(factory)

    def close(self) -> None:
        try:
            self._close_client()
        finally:
            self.io_loop.close(all_fds=False)


CLIENT_CLASSES: tuple[type[BenchClient], ...] = (PyMongoClient, AsyncIOClient, TornadoClient)


# --------------------------------------------------------------------------- measuring


@dataclass
class Series:
    """One client's timings for one workload on one server."""

    target: str
    workload: str
    client: str
    ops: int
    wall_us: list[float] = field(default_factory=list)  # µs/op, one per repetition
    cpu_us: list[float] = field(default_factory=list)
    longest_tick_gap_ms: float | None = None  # Motor only, from the ticker run
    ticked_run_us: float | None = None  # µs/op of that run, for reference
    wall_ratio: float | None = None  # median wall µs/op / PyMongo's
    cpu_ratio: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.wall_us)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_us)

    def summary(self) -> dict[str, Any]:
        """Everything, plus the derived statistics, for the JSON report."""
        data = asdict(self)
        data.update(
            median_us=self.median,
            min_us=min(self.wall_us),
            max_us=max(self.wall_us),
            cpu_median_us=self.cpu_median,
        )
        return data


@dataclass
class Config:
    reps: int
    ops: int
    warmup: int
    workloads: tuple[str, ...] = WORKLOADS


@dataclass
class Target:
    """A server to measure against and the names the workloads use there."""

    name: str
    description: str
    uri: str
    db: str
    collections: dict[str, str]
    server_user_us_per_request: float | None = None  # canned server's own CPU time
    server_sys_us_per_request: float | None = None  # kernel time: loopback TCP, wake-ups
    note: str = ""


def measure_target(target: Target, config: Config, progress: bool = True) -> list[Series]:
    """Warm up, then run the interleaved repetitions and the ticker runs on one server."""
    clients = [cls(target.uri, target.db, target.collections) for cls in CLIENT_CLASSES]
    series: list[Series] = []
    try:
        for client in clients:
            client.check()
        for workload in config.workloads:
            for client in clients:
                client.run(workload, config.warmup)
            by_client = {
                c.label: Series(target.name, workload, c.label, config.ops) for c in clients
            }
            for rep in range(config.reps):
                shift = rep % len(clients)
                for client in clients[shift:] + clients[:shift]:
                    gc.collect()
                    wall, cpu = client.run(workload, config.ops)
                    s = by_client[client.label]
                    s.wall_us.append(wall / config.ops * 1e6)
                    s.cpu_us.append(cpu / config.ops * 1e6)
                if progress:
                    done = ", ".join(f"{s.wall_us[-1]:.1f}" for s in by_client.values())
                    print(
                        f"  {workload} rep {rep + 1}/{config.reps}: {done} µs/op",
                        file=sys.stderr,
                        flush=True,
                    )
            for client in clients:
                if client.is_motor:
                    gc.collect()
                    (wall, _), gap = client.run_ticked(workload, config.ops)
                    s = by_client[client.label]
                    s.longest_tick_gap_ms = gap * 1e3
                    s.ticked_run_us = wall / config.ops * 1e6
            baseline = by_client[PyMongoClient.label]
            for s in by_client.values():
                s.wall_ratio = s.median / baseline.median
                s.cpu_ratio = s.cpu_median / baseline.cpu_median
            series.extend(by_client.values())
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                client.close()
    return series


def requests_sent(config: Config) -> int:
    """Operations :func:`measure_target` sends per server (excluding handshakes)."""
    per_workload = len(CLIENT_CLASSES) * (config.warmup + config.reps * config.ops)
    per_workload += (len(CLIENT_CLASSES) - 1) * config.ops  # ticker runs
    return len(CLIENT_CLASSES) * 2 + len(config.workloads) * per_workload


# --------------------------------------------------------------------------- servers


def run_canned(config: Config, gomaxprocs: int) -> tuple[Target, list[Series]]:
    """Measure against the canned server."""
    binary = build_canned_server()
    cpus = server_cpus()
    with CannedServer(binary, gomaxprocs=gomaxprocs, cpus=cpus) as server:
        target = Target(
            name="canned",
            description=(
                f"Go canned server at 127.0.0.1:{server.port} (GOMAXPROCS={gomaxprocs}, "
                f"CPUs {sorted(cpus) if cpus else 'any'}, binary {binary})"
            ),
            uri=server.uri,
            db="bench",
            collections={"find_one": "small", "insert_one": "micro_insert"},
        )
        print(f"\n== {target.description}", flush=True)
        before = server.cpu_times()
        series = measure_target(target, config)
        after = server.cpu_times()
    if before is not None and after is not None:
        requests = requests_sent(config)
        target.server_user_us_per_request = (after[0] - before[0]) / requests * 1e6
        target.server_sys_us_per_request = (after[1] - before[1]) / requests * 1e6
    target.note = server.summary
    return target, series


FERRET_DB = "motor_bench"
FERRET_COLLECTIONS = {"find_one": "micro_find", "insert_one": "micro_insert"}


def run_ferretdb(server: ExternalServer, config: Config) -> tuple[Target, list[Series]]:
    """Measure against FerretDB (or any real server), seeding and dropping collections."""
    target = Target(
        name="ferretdb",
        description=server.description,
        uri=server.uri,
        db=FERRET_DB,
        collections=dict(FERRET_COLLECTIONS),
    )
    print(f"\n== {target.description}", flush=True)
    setup: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        server.uri, serverSelectionTimeoutMS=10000
    )
    try:
        db = setup[FERRET_DB]
        for name in FERRET_COLLECTIONS.values():
            db.drop_collection(name)
        db[FERRET_COLLECTIONS["find_one"]].insert_one(_small_document(0))
        info = setup.server_info()
        target.note = f"server reports version {info.get('version')}"
        series = measure_target(target, config)
    finally:
        with contextlib.suppress(Exception):
            for name in FERRET_COLLECTIONS.values():
                setup[FERRET_DB].drop_collection(name)
        setup.close()
    return target, series


# --------------------------------------------------------------------------- reporting


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def format_table(series: Sequence[Series]) -> str:
    """A readable table of one server's series."""
    header = (
        "workload",
        "client",
        "µs/op",
        "spread (min–max)",
        "CPU µs/op",
        "wall ×PyMongo",
        "CPU ×PyMongo",
        "longest loop gap",
    )
    rows = [header]
    for s in series:
        rows.append(
            (
                s.workload,
                s.client,
                f"{s.median:.1f}",
                f"{min(s.wall_us):.1f}–{max(s.wall_us):.1f}",
                f"{s.cpu_median:.1f}",
                _fmt(s.wall_ratio, ".2f"),
                _fmt(s.cpu_ratio, ".2f"),
                _fmt(s.longest_tick_gap_ms, ".2f", " ms"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the numbers depend on, for the report."""
    status = git("status", "--porcelain", "--", "motor")
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "pymongo": pymongo.version,
        "pymongo_c_extensions": pymongo.has_c(),
        "motor": getattr(motor, "version", None) or getattr(motor, "__version__", None),
        "motor_path": str(Path(motor.__file__).parent),
        "motor_commit": git("rev-parse", "--short", "HEAD"),
        "motor_dirty": bool(status) if status is not None else None,
        "greenlet": greenlet.__version__,
        "tornado": tornado.version,
        "go": go_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --------------------------------------------------------------------------- profiling


#: What counts as Motor's own machinery in profiles: its package, greenlet, the loop.
MOTOR_CODE = r"motor/|greenlet|asyncio/(base_events|events|selector_events|futures)|selectors"


def _stats_table(text: str) -> str:
    """The table part of ``pstats`` output, with site-packages paths shortened."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    table = "\n".join(line for line in lines[start:] if line.strip())
    for prefix in sorted({p for p in sys.path if p}, key=len, reverse=True):
        table = table.replace(prefix.rstrip("/") + "/", "")
    return table


def profile(seconds: float, gomaxprocs: int, top: int) -> None:
    """Profile Motor asyncio ``find_one`` and ``insert_one`` against the canned server."""
    with CannedServer(build_canned_server(), gomaxprocs=gomaxprocs, cpus=server_cpus()) as server:
        collections = {"find_one": "small", "insert_one": "micro_insert"}
        for cls in (PyMongoClient, AsyncIOClient):
            client = cls(server.uri, "bench", collections)
            try:
                client.check()
                for workload in WORKLOADS:
                    client.run(workload, 500)
                    wall, _ = client.run(workload, 2000)
                    n = max(1000, int(seconds / (wall / 2000)))
                    profiler = cProfile.Profile()
                    profiler.enable()
                    client.run(workload, n)
                    profiler.disable()
                    views: list[tuple[str, str | None]] = [("tottime", None)]
                    if client.is_motor:
                        views += [("tottime", MOTOR_CODE), ("cumulative", MOTOR_CODE)]
                    for key, pattern in views:
                        out = io.StringIO()
                        stats = pstats.Stats(profiler, stream=out)
                        restrictions: list[Any] = [top] if pattern is None else [pattern, top]
                        stats.sort_stats(key).print_stats(*restrictions)
                        what = "all code" if pattern is None else f"entries matching {pattern!r}"
                        print(f"\n== {client.label} {workload}: {n} ops; {what}, by {key}")
                        print(_stats_table(out.getvalue()))
            finally:
                client.close()


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/micro.py",
        description="Sequential find_one/insert_one latency: Motor (asyncio, Tornado) vs "
        "PyMongo, against the canned Go server and FerretDB.",
    )
    parser.add_argument("--quick", action="store_true", help="3 repetitions × 300 ops")
    parser.add_argument("--reps", type=int, help="repetitions per client (default 7)")
    parser.add_argument("--ops", type=int, help="operations per repetition (default 2000)")
    parser.add_argument("--warmup", type=int, help="warm-up operations per client (default 300)")
    parser.add_argument(
        "--workload", action="append", choices=WORKLOADS, help="only this workload (repeatable)"
    )
    parser.add_argument("--ferretdb-uri", help="a running FerretDB (or MongoDB) to measure")
    parser.add_argument("--no-canned", action="store_true", help="skip the canned server")
    parser.add_argument("--no-ferretdb", action="store_true", help="skip FerretDB")
    parser.add_argument(
        "--gomaxprocs", type=int, default=1, help="GOMAXPROCS of the canned server (default 1)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write all results as JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of benchmarking, cProfile PyMongo and Motor asyncio on the canned server",
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=3.0, help="profiled time per workload"
    )
    parser.add_argument("--profile-top", type=int, default=30, help="entries to print")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    if args.profile:
        profile(args.profile_seconds, args.gomaxprocs, args.profile_top)
        return 0
    config = Config(
        reps=args.reps or (3 if args.quick else 7),
        ops=args.ops or (300 if args.quick else 2000),
        warmup=args.warmup if args.warmup is not None else (50 if args.quick else 300),
        workloads=tuple(args.workload or WORKLOADS),
    )
    env = environment()
    print(
        f"Motor {env['motor']} ({env['motor_path']}, commit {env['motor_commit']}"
        f"{', modified' if env['motor_dirty'] else ''}), PyMongo {env['pymongo']}"
        f" (C extensions: {env['pymongo_c_extensions']}), greenlet {env['greenlet']}, "
        f"Tornado {env['tornado']}, {env['python']}"
    )
    print(f"{env['platform']}, {env['cpus']} CPUs, load average {env['loadavg']}")
    print(
        f"{config.reps} repetitions × {config.ops} ops per client and workload, "
        f"{config.warmup} warm-up ops; clients interleaved, order rotated each repetition"
    )
    idle_gap = idle_tick_gap()
    print(f"1 ms ticker on an idle loop: longest gap {idle_gap * 1e3:.2f} ms")

    targets: list[Target] = []
    results: list[Series] = []
    notes: list[str] = []
    if not args.no_canned:
        try:
            target, series = run_canned(config, args.gomaxprocs)
            targets.append(target)
            results.extend(series)
        except BenchSetupError as exc:
            notes.append(f"canned server: {exc}")
            print(f"canned server skipped: {exc}", file=sys.stderr)
    if args.no_ferretdb:
        notes.append("FerretDB: skipped (--no-ferretdb)")
    else:
        server, note = ferretdb_server(args.ferretdb_uri)
        notes.append(f"FerretDB: {note}")
        if server is None:
            print(f"\nFerretDB {note}", flush=True)
        else:
            try:
                target, series = run_ferretdb(server, config)
                targets.append(target)
                results.extend(series)
            finally:
                server.stop()

    print("\n" + "=" * 100)
    for target in targets:
        print(f"\n{target.name}: {target.description}")
        if target.server_user_us_per_request is not None:
            print(
                f"server CPU per request: {target.server_user_us_per_request:.1f} µs user + "
                f"{target.server_sys_us_per_request:.1f} µs system (kernel: loopback TCP, "
                "epoll, wake-ups)"
            )
        if target.note:
            print(target.note)
        print()
        print(format_table([s for s in results if s.target == target.name]))
    print(
        "\nµs/op: median over repetitions of wall time per operation; spread: min–max of the "
        "repetition values;\nCPU µs/op: this process's CPU time per operation (median); "
        "longest loop gap: longest interval between\nwake-ups of a 1 ms ticker task during "
        f"one extra run (idle loop: {idle_gap * 1e3:.2f} ms)."
    )
    for note in notes:
        print(note)
    env["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if args.json:
        report = {
            "environment": env,
            "config": asdict(config),
            "idle_tick_gap_ms": idle_gap * 1e3,
            "targets": [asdict(t) for t in targets],
            "results": [s.summary() for s in results],
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
