"""100 concurrent MongoEngine requests: run_green against a thread pool and Motor 3.7.1.

The same synchronous request function (MongoEngine: find an author, list five of their
books, dereference a book's author, count their books) serves 100 concurrent requests on an
asyncio loop:

=================  ====================================================================
``green``          ``await motor.run_green(request, i)``, MongoEngine connected with
                   ``mongo_client_class=motor.GreenMongoClient``
``green+detector`` the same with ``motor.detect_stalls(10)`` on
``threads T``      ``await loop.run_in_executor(pool, request, i)`` on a
                   ``ThreadPoolExecutor`` of T = 4, 32 and 100 threads, MongoEngine on a
                   plain ``pymongo.MongoClient`` (what applications do today)
``green raw``      the same four queries written with PyMongo, through ``run_green``
``motor raw``      the same four queries with this Motor's ``AsyncIOMotorClient``
``Motor 3.7.1``    the same four queries with Motor 3.7.1's ``AsyncIOMotorClient``, in
                   its own virtualenv (``~/.cache/motor-bench/venv-motor371``, made by
                   ``compare.py``'s code); Motor 3.7.1 cannot run MongoEngine at all
=================  ====================================================================

Each configuration runs in a fresh worker process per repetition (configurations in
rotating order): warm-up, then the timed run (requests per second, CPU per request for
the whole process, peak RSS), then, in the last repetition, one more run with a 1 ms
ticker task on the loop: the longest gap between its wake-ups and the most CPU the
loop's thread used within one gap (busy CPU: what held the loop, as opposed to the
thread waiting for the GIL or for a core).

``--detector`` measures instead what the stall detector costs per sequential
``await collection.find_one({})``: CPU µs and Python bytecodes per operation (as
``bench/hotpath.py --opcodes`` counts them) with the detector never turned on, on, and
turned off again.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python bench/green_sync.py --quick        # about 2 minutes
    .venv/bin/python bench/green_sync.py                # about 5 minutes
    .venv/bin/python bench/green_sync.py --detector     # the detector's cost only

FerretDB comes from ``--ferretdb-uri``, ``MOTOR_BENCH_FERRETDB_URI`` or the test suite's
launcher, as for ``compare.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motor.motor_asyncio import AsyncIOMotorCollection

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DB = "motor_bench_green"
AUTHORS = 10
BOOKS_PER_AUTHOR = 5
CONCURRENCY = 100
POOL_SIZE = 100
#: (key, label, kind, threads); kind selects the worker's code path.
CONFIGS = (
    ("green", "green (run_green)", "green", 0),
    ("green_detector", "green + detector on", "green_detector", 0),
    ("threads4", "thread pool, 4 threads", "threads", 4),
    ("threads32", "thread pool, 32 threads", "threads", 32),
    ("threads100", "thread pool, 100 threads", "threads", 100),
    ("green_raw", "green raw PyMongo", "green_raw", 0),
    ("motor_raw", "this Motor, raw queries", "motor_raw", 0),
    ("motor371_raw", "Motor 3.7.1, raw queries", "motor_raw", 0),
)
CONFIG_BY_KEY = {c[0]: c for c in CONFIGS}


# --------------------------------------------------------------------------- the request


def mongoengine_documents() -> tuple[Any, Any]:
    import mongoengine as me

    class Author(me.Document):  # type: ignore[misc]  # mongoengine has no type information
        name = me.StringField(required=True)
        meta = {"collection": "author", "auto_create_index": False}

    class Book(me.Document):  # type: ignore[misc]
        title = me.StringField(required=True)
        year = me.IntField()
        views = me.IntField(default=0)
        author = me.ReferenceField(Author)
        meta = {"collection": "book", "auto_create_index": False}

    return Author, Book


def make_request(Author: Any, Book: Any) -> Callable[[int], list[str]]:
    def request(i: int) -> list[str]:
        """One request: plain synchronous MongoEngine code (four commands)."""
        author = Author.objects.get(name=f"author{i % AUTHORS}")
        books = list(Book.objects(author=author).order_by("-year").limit(5))
        assert books[0].author.name == author.name  # dereferences the ReferenceField
        assert Book.objects(author=author).count() == BOOKS_PER_AUTHOR
        return [book.title for book in books]

    return request


def raw_request(db: Any) -> Callable[[int], list[str]]:
    def request(i: int) -> list[str]:
        """The same four commands, written with PyMongo."""
        author = db.author.find_one({"name": f"author{i % AUTHORS}"})
        books = list(db.book.find({"author": author["_id"]}).sort("year", -1).limit(5))
        assert db.author.find_one({"_id": books[0]["author"]})["name"] == author["name"]
        assert db.book.count_documents({"author": author["_id"]}) == BOOKS_PER_AUTHOR
        return [book["title"] for book in books]

    return request


def motor_request(db: Any) -> Callable[[int], Any]:
    async def request(i: int) -> list[str]:
        """The same four commands, written with Motor's API."""
        author = await db.author.find_one({"name": f"author{i % AUTHORS}"})
        cursor = db.book.find({"author": author["_id"]}).sort("year", -1).limit(5)
        books = await cursor.to_list(None)
        assert (await db.author.find_one({"_id": books[0]["author"]}))["name"] == author["name"]
        assert await db.book.count_documents({"author": author["_id"]}) == BOOKS_PER_AUTHOR
        return [book["title"] for book in books]

    return request


# --------------------------------------------------------------------------- the worker


def _status(*keys: str) -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in keys:
                out[key] = int(value.split()[0]) * 1024
    return out


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Ticker:
    """A task that sleeps 1 ms in a loop: the longest gap, and the loop thread's CPU in
    the busiest gap (as ``test.framework.LoopProbe``)."""

    def __init__(self) -> None:
        self.max_gap = self.max_busy = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while True:
            await asyncio.sleep(0.001)
            now, cpu = time.perf_counter(), time.thread_time()
            self.max_gap = max(self.max_gap, now - last)
            self.max_busy = max(self.max_busy, cpu - last_cpu)
            last, last_cpu = now, cpu

    def start(self) -> None:
        self.task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def drive(call: Callable[[int], Any], total: int, concurrency: int) -> None:
    """``concurrency`` tasks share ``total`` requests, each awaiting ``call(i)``."""
    counter = iter(range(total))

    async def client() -> None:
        for i in counter:
            await call(i)

    await asyncio.gather(*(client() for _ in range(concurrency)))


async def worker_main(args: argparse.Namespace) -> dict[str, Any]:
    _, _, kind, threads = CONFIG_BY_KEY[args.worker]
    options: dict[str, Any] = {"maxPoolSize": POOL_SIZE}
    closers: list[Callable[[], Any]] = []
    call: Callable[[int], Any]
    loop = asyncio.get_running_loop()
    if kind in ("green", "green_detector", "threads"):
        import mongoengine as me

        import motor

        if kind == "green_detector":
            motor.detect_stalls(10)
        Author, Book = mongoengine_documents()
        request = make_request(Author, Book)
        if kind == "threads":
            from concurrent.futures import ThreadPoolExecutor

            import pymongo

            me.connect(db=DB, host=args.uri, uuidRepresentation="standard", **options)
            pool = ThreadPoolExecutor(threads)

            def call(i: int) -> Any:
                return loop.run_in_executor(pool, request, i)

            closers.append(lambda: loop.run_in_executor(None, me.disconnect))
            closers.append(lambda: loop.run_in_executor(None, pool.shutdown))
            assert isinstance(me.get_connection(), pymongo.MongoClient)
        else:
            me.connect(
                db=DB,
                host=args.uri,
                mongo_client_class=motor.GreenMongoClient,
                uuidRepresentation="standard",
                **options,
            )

            def call(i: int) -> Any:
                return motor.run_green(request, i)

            closers.append(lambda: motor.run_green(me.disconnect))
    elif kind == "green_raw":
        import motor

        client = motor.GreenMongoClient(args.uri, **options)
        green_request = raw_request(client[DB])

        def call(i: int) -> Any:
            return motor.run_green(green_request, i)

        closers.append(lambda: motor.run_green(client.close))
    else:  # motor_raw: this Motor or Motor 3.7.1, whichever "motor" imports
        import motor
        from motor.motor_asyncio import AsyncIOMotorClient

        motor_client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(args.uri, **options)
        call = motor_request(motor_client[DB])

        async def close() -> None:
            result = motor_client.close()
            if result is not None:
                await result

        closers.append(close)

    warmup = max(CONCURRENCY, args.requests // 10)
    await drive(call, warmup, CONCURRENCY)
    gc.collect()
    rss_before = _status("VmRSS")["VmRSS"]
    _reset_peak()
    cpu = _cpu()
    started = time.perf_counter()
    await drive(call, args.requests, CONCURRENCY)
    wall = time.perf_counter() - started
    cpu = _cpu() - cpu
    peak = _status("VmHWM")["VmHWM"]
    result: dict[str, Any] = {
        "requests_per_s": args.requests / wall,
        "cpu_us_per_request": cpu / args.requests * 1e6,
        "rss_before_mb": rss_before / 1e6,
        "peak_rss_mb": peak / 1e6,
        "threads": threads,
        "motor": getattr(motor, "version", "?"),
    }
    if args.probe:
        gc.collect()
        ticker = Ticker()
        ticker.start()
        await drive(call, args.requests, CONCURRENCY)
        await ticker.stop()
        result["max_gap_ms"] = ticker.max_gap * 1000
        result["max_busy_ms"] = ticker.max_busy * 1000
    for closer in closers:
        await closer()
    return result


# --------------------------------------------------------------------------- the detector


def remove_detector_check() -> None:
    """Replace ``Hub.submit`` with a copy of its source without the detector's check
    (``if DETECTOR is not None: DETECTOR.note_call(...)``): the reference for what the
    check costs while the detector is off."""
    import inspect
    import textwrap

    from motor.green import hub

    source = textwrap.dedent(inspect.getsource(hub.Hub.submit))
    check = "    if DETECTOR is not None:\n        DETECTOR.note_call(future, fn)\n"
    if check not in source:
        raise RuntimeError("Hub.submit no longer has the expected detector check")
    namespace: dict[str, Any] = {}
    exec(source.replace(check, ""), vars(hub), namespace)
    hub.Hub.submit = namespace["submit"]  # type: ignore[method-assign]


def detector_main(args: argparse.Namespace) -> dict[str, Any]:
    """Sequential ``await collection.find_one({})`` with the detector in one state."""
    sys.path.insert(0, str(BENCH_DIR))
    from hotpath import OpcodeCounter

    import motor
    import motor.green.hub
    from motor.green.hub import get_hub
    from motor.motor_asyncio import AsyncIOMotorClient

    state = args.detector_worker
    if state == "without_check":
        remove_detector_check()
    if state in ("on", "off_again"):
        motor.detect_stalls(10)
    if state == "off_again":
        motor.stop_detecting_stalls()

    async def main() -> dict[str, Any]:
        coll: AsyncIOMotorCollection[Any] = AsyncIOMotorClient(args.uri)[DB].author
        await coll.find_one({})
        hub = get_hub(asyncio.get_running_loop())

        async def run(n: int) -> None:
            for _ in range(n):
                await coll.find_one({})

        await run(500)
        out: dict[str, Any] = {}
        cpu_runs = []
        for _ in range(args.detector_reps):
            gc.collect()
            cpu = time.process_time()
            await run(args.detector_ops)
            cpu_runs.append((time.process_time() - cpu) / args.detector_ops * 1e6)
        out["cpu_us"] = statistics.median(cpu_runs)
        out["cpu_runs"] = cpu_runs
        # Tracing is slow: keep the hub's per-iteration work budget from deferring starts.
        motor.green.hub.WORK_BUDGET = 10.0
        counts = []
        for n in (300, 900):
            counter = OpcodeCounter()
            counter.enable([sys._getframe()] + [c.gr_frame for c in hub._idle])
            await run(n)
            counts.append(counter.disable())
        short, long = counts
        per_op = {k: (long.get(k, 0) - short.get(k, 0)) / 600 for k in {*short, *long}}
        out["bytecodes"] = sum(per_op.values())
        out["detector_bytecodes"] = sum(v for k, v in per_op.items() if "detector" in k)
        return out

    return asyncio.run(main())


# --------------------------------------------------------------------------- orchestration


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed(uri: str) -> None:
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
    try:
        client.drop_database(DB)
        db = client[DB]
        authors = db.author.insert_many([{"name": f"author{i}"} for i in range(AUTHORS)])
        db.book.insert_many(
            [
                {"title": f"book {a}-{b}", "year": 1900 + b, "views": 0, "author": author_id}
                for a, author_id in enumerate(authors.inserted_ids)
                for b in range(BOOKS_PER_AUTHOR)
            ]
        )
        db.author.create_index("name")
        db.book.create_index("author")
    finally:
        client.close()


def drop(uri: str) -> None:
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
    with contextlib.closing(client):
        client.drop_database(DB)


def run_worker(python: str, argv: Sequence[str], dev: bool, timeout: float = 900) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MOTOR_DETECT_STALLS")}
    if dev:
        env["PYTHONPATH"] = str(REPO)  # this checkout's motor
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), *argv],
        capture_output=True,
        text=True,
        cwd=BENCH_DIR if dev else "/",
        env=env,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker {argv} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))
        )
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            )
        )
    return "\n".join(lines)


def _spread(values: Sequence[float]) -> str:
    median = statistics.median(values)
    if len(values) < 2 or not median:
        return ""
    return f" ±{(max(values) - min(values)) / 2 / median * 100:.0f}%"


def main_bench(args: argparse.Namespace, uri: str, description: str) -> int:
    keys = args.configs.split(",") if args.configs else [c[0] for c in CONFIGS]
    pythons = {}
    versions: dict[str, Any] = {}
    from compare import machine_busy_seconds, own_cpu_seconds

    if any(k.startswith("motor371") for k in keys):
        from compare import ensure_motor371_venv

        pythons["motor371"], versions = ensure_motor371_venv()
    reps = args.reps or (2 if args.quick else 5)
    requests = args.requests or (300 if args.quick else 1000)
    _progress(f"seeding {DB} ({AUTHORS} authors, {AUTHORS * BOOKS_PER_AUTHOR} books)")
    seed(uri)
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    started = time.monotonic()
    busy, own = machine_busy_seconds(), sum(own_cpu_seconds().values())
    try:
        for rep in range(reps):
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            for key in order:
                motor371 = key.startswith("motor371")
                python = pythons["motor371"] if motor371 else sys.executable
                argv = ["--worker", key, "--uri", uri, "--requests", str(requests)]
                if rep == reps - 1:
                    argv.append("--probe")
                _progress(f"rep {rep + 1}/{reps}: {key}")
                runs[key].append(run_worker(python, argv, dev=not motor371))
    finally:
        drop(uri)
    elapsed = time.monotonic() - started
    minutes = elapsed / 60
    busy_end = machine_busy_seconds()
    assert busy is not None and busy_end is not None, "no /proc/stat"
    others = busy_end - busy - (sum(own_cpu_seconds().values()) - own)
    import platform

    import mongoengine
    import pymongo

    print(
        f"{description}; CPython {platform.python_version()}, PyMongo {pymongo.version}, "
        f"MongoEngine {mongoengine.__version__}"
        + (f", Motor 3.7.1 venv {versions.get('motor')}" if versions else "")
    )
    print(
        f"{os.cpu_count()} CPUs, {reps} repetitions × {requests} requests (each 4 commands), "
        f"{CONCURRENCY} concurrent, maxPoolSize={POOL_SIZE}; {minutes:.1f} min; other "
        f"processes used {others / elapsed:.2f} CPUs on average meanwhile"
    )
    rows = []
    for key in keys:
        label = CONFIG_BY_KEY[key][1]
        r = runs[key]
        rps = [x["requests_per_s"] for x in r]
        cpu = [x["cpu_us_per_request"] for x in r]
        peak = [x["peak_rss_mb"] for x in r]
        probe = r[-1]
        rows.append(
            [
                label,
                f"{statistics.median(rps):,.0f}{_spread(rps)}",
                f"{statistics.median(cpu):,.0f}{_spread(cpu)}",
                f"{statistics.median(peak):.1f}",
                f"{probe['max_busy_ms']:.1f}",
                f"{probe['max_gap_ms']:.1f}",
            ]
        )
    print()
    print(
        _table(
            [
                "configuration",
                "requests/s",
                "CPU µs/request",
                "peak RSS MB",
                "loop busy ms",
                "loop gap ms",
            ],
            rows,
        )
    )
    print(
        "\nrequests/s and CPU (whole process, all threads): median over repetitions (± half "
        "the spread); peak RSS: VmHWM during the timed run; loop busy: the most CPU the loop's "
        "thread used between two 1 ms ticks; loop gap: the longest interval between ticks "
        "(includes the 1 ms sleep)."
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "description": description}, indent=1))
    return 0


def main_detector(args: argparse.Namespace, uri: str, description: str) -> int:
    seed(uri)
    states = (
        ("without_check", "reference: Hub.submit without the check"),
        ("never_on", "detector never turned on"),
        ("on", "detector on (detect_stalls(10))"),
        ("off_again", "turned on, then off (client made after)"),
    )
    results: dict[str, list[dict[str, Any]]] = {key: [] for key, _ in states}
    try:
        for rep in range(args.reps or 3):
            for key, _ in states[rep % len(states) :] + states[: rep % len(states)]:
                _progress(f"detector rep {rep + 1}: {key}")
                results[key].append(
                    run_worker(
                        sys.executable,
                        ["--detector-worker", key, "--uri", uri, "--detector-ops", "3000"],
                        dev=True,
                    )
                )
    finally:
        drop(uri)
    print(f"{description}; sequential await find_one({{}}), this Motor (asyncio)")
    rows = []
    for key, label in states:
        cpu = [x["cpu_us"] for x in results[key]]
        rows.append(
            [
                label,
                f"{statistics.median(cpu):.1f}{_spread(cpu)}",
                f"{statistics.median(x['bytecodes'] for x in results[key]):.0f}",
                f"{statistics.median(x['detector_bytecodes'] for x in results[key]):.0f}",
            ]
        )
    print(_table(["state", "CPU µs/op", "bytecodes/op", "of which motor/detector.py"], rows))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repetitions × 300 requests")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--requests", type=int, help="requests per timed run")
    parser.add_argument("--configs", help=f"comma-separated: {','.join(CONFIG_BY_KEY)}")
    parser.add_argument("--detector", action="store_true", help="measure the stall detector")
    parser.add_argument("--ferretdb-uri")
    parser.add_argument("--json", help="write every run's numbers here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--detector-worker", help=argparse.SUPPRESS)
    parser.add_argument("--detector-ops", type=int, default=3000, help=argparse.SUPPRESS)
    parser.add_argument("--detector-reps", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--uri", help=argparse.SUPPRESS)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker_main(args))))
        return 0
    if args.detector_worker:
        print(json.dumps(detector_main(args)))
        return 0
    sys.path.insert(0, str(BENCH_DIR))
    from servers import ferretdb_server

    server, note = ferretdb_server(args.ferretdb_uri)
    if server is None:
        _progress(f"no server: {note}")
        return 1
    try:
        if args.detector:
            return main_detector(args, server.uri, server.description)
        return main_bench(args, server.uri, server.description)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
