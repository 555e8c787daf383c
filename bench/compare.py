"""Side-by-side benchmark: this Motor against Motor 3.7.1, PyMongo and mongojet, in one run.

Seven clients are measured the same way, each in a worker process of its own
(``bench/compare_worker.py``):

=====================  ===============================================================
``this asyncio``       this checkout's ``AsyncIOMotorClient`` (the project's virtualenv)
``this Tornado``       this checkout's Tornado ``MotorClient``
``Motor 3.7.1 aio``    ``AsyncIOMotorClient`` of Motor 3.7.1 (thread pool), from a
                       virtualenv this script creates (``~/.cache/motor-bench/``)
``Motor 3.7.1 Tor``    Tornado ``MotorClient`` of Motor 3.7.1
``PyMongo async``      PyMongo's ``AsyncMongoClient``
``mongojet``           mongojet 0.5 (asyncio API over the Rust driver, which runs on
                       threads of its own), from a virtualenv this script creates
``PyMongo sync``       PyMongo's ``MongoClient``; threads for concurrency
=====================  ===============================================================

Workloads: sequential ``find_one`` and ``insert_one`` latency; ``find_one`` throughput
with 1, 10, 100 and 1000 concurrent tasks; 10,000 pending operations with
``maxPoolSize=100`` (throughput and extra RSS per pending operation); reading large
documents with ``find({}).to_list()`` (1000 × 16 KiB and 10 × 4 MiB per query).  For
each: client CPU time per operation, and the longest event-loop stall (1 ms ticker).

Big data, on FerretDB only and for the asyncio clients (this asyncio, Motor 3.7.1 aio,
PyMongo async, mongojet, and a ``--baseline`` commit's asyncio): ``insert_one`` of one
15 MB document, ``find_one`` of it, ``find_one`` of a 15 MB document of Chinese text,
``find().to_list()`` of 200,000 small documents (default batches, and
``batch_size(200000)``), ``insert_many`` of 100,000 small documents, ``insert_many`` of
ten 4 MB documents.  One operation per run, the ticker
always on: the run's longest loop gap, that gap net of the selector's late wake-ups (the
worker times the loop's ``select()`` calls), the loop thread's CPU time per gap, the
garbage collector's pauses, and the end-to-end time.  Each runs with the garbage collector on (as
applications run) and, in the full mode, off (``--big-gc on,frozen,off`` chooses), to
tell the driver's stalls from the interpreter's collections.

Servers: the canned-reply Go server (``bench/cannedserver``) and FerretDB
(``--ferretdb-uri``, ``MOTOR_BENCH_FERRETDB_URI``, or launched with ``test.server``).
With ``--compressors zlib`` every client asks for wire compression, and FerretDB (which has
none) is reached through the test suite's fault proxy speaking zlib to the clients
(``test/faultproxy.py``, in a thread of this process): the big-data workloads then measure
the stalls of compressing and decompressing large messages.  mongojet takes no
``compressors`` option and is left out then.

Repetitions are interleaved: every repetition runs every workload on every client,
rotating the client order, so drift of the machine is shared.  Before the first, the
first client runs each of those workloads once, uncounted, so that the server's own
warming up does not fall on whichever client comes first.  The report is a table
per metric (rows: workload × server; columns: clients), ratios to PyMongo sync, to
Motor 3.7.1, to mongojet and to a ``--baseline`` commit, and PASS/FAIL lines for the
project's performance targets.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python bench/compare.py --quick                 # about 10 minutes
    .venv/bin/python bench/compare.py --json compare.json     # about an hour
    .venv/bin/python bench/compare.py --profile               # cProfile of this asyncio
    .venv/bin/python bench/compare.py --no-canned --compressors zlib \
        --workloads big_insert_one,big_find_one                # compressed big documents

See ``bench/README.rst`` and ``doc/performance.rst`` for the method.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORKER = BENCH_DIR / "compare_worker.py"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import pymongo  # noqa: E402
from servers import (  # noqa: E402
    BenchSetupError,
    CannedServer,
    ExternalServer,
    build_canned_server,
    cache_dir,
    ferretdb_server,
    git,
    go_version,
    server_cpus,
)

#: Motor 3.7.1's virtualenv, created on first use and reused afterwards.
MOTOR371_VENV = cache_dir() / "venv-motor371"
MOTOR371_VERSION = "3.7.1"
#: mongojet's virtualenv (the latest 0.5.x when it was added), the same way.
MONGOJET_VENV = cache_dir() / "venv-mongojet"
MONGOJET_VERSION = "0.5.8"
#: Every client's options: PyMongo's default pool size, stated explicitly.
CLIENT_OPTIONS = {"maxPoolSize": 100, "serverSelectionTimeoutMS": 10000}
#: Threads the synchronous client may use for concurrency (C above it is capped).
MAX_THREADS = 1000
#: Concurrency of the pending-operations workload.
PENDING = 10_000
#: Round trips of each run of the machine's floor (measure_floor): one at a time, about
#: as long as a C=100 stall-probe run of this driver.
FLOOR_OPS = 4000
#: The workers' allocator settings unless ``--default-malloc``: glibc keeps blocks up to
#: 32 MiB on its heap and returns freed memory to the kernel only above 256 MiB, so that
#: large reads do not pay for fresh pages.  With glibc's adaptive defaults, whether a
#: 16 MB read reuses the heap or faults in ~7,500 fresh pages depends on the process's
#: allocation history (which block happens to sit at the top of the heap when the reply
#: is freed), and that flips between runs and between clients.
TUNED_MALLOC = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(256 * 1024 * 1024),
}
#: The database the workloads use on FerretDB; dropped at the end.
FERRET_DB = "motor_bench_compare"
KB = 1000  # targets and tables use SI kilobytes and megabytes
MB = 1000 * 1000
#: The big-data workloads (FerretDB only): one document of this many bytes ...
BIG_DOC_BYTES = 15 * MB
#: ... a collection of this many small documents read with to_list() ...
MANY_DOCS = 200_000
#: ... and this many small documents written with one insert_many() ...
INSERT_MANY_DOCS = 100_000
#: ... and this many documents of this many bytes, written with one insert_many().
LARGE_DOCS = 10
LARGE_DOC_BYTES = 4 * MB
#: ... and one document holding an array of this many integers, read with find_one() ...
ARRAY_VALUES = 250_000
#: ... and one written with insert_one().
INSERT_ARRAY_VALUES = 1_000_000
#: The clients the big-data workloads measure (by worker kind): their subject is the
#: event loop, so asyncio clients only (this Motor and a --baseline on asyncio).
BIG_KINDS = ("motor_asyncio", "pymongo_async", "mongojet")
#: The garbage-collector modes a big-data workload can run in (compare_worker.gc_mode).
GC_MODES = ("on", "frozen", "off")
#: Targets of the big-data workloads: the longest stall of to_list and insert_many, and
#: how much slower than the --baseline commit the end-to-end time may be (run-to-run
#: noise of one operation on FerretDB).
BIG_STALL_BOUND_MS = 10.0
BASELINE_TOLERANCE = 1.05


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Client:
    """A client under test: which worker kind, in which virtualenv."""

    key: str
    label: str
    kind: str  # compare_worker.CLIENT_KINDS
    env: str  # "dev" (this project's virtualenv), "motor371" or "mongojet"
    is_async: bool = True
    #: A checkout of this project to import motor from instead of this one (--baseline).
    repo: str | None = None


CLIENTS = (
    Client("this_asyncio", "this asyncio", "motor_asyncio", "dev"),
    Client("this_tornado", "this Tornado", "motor_tornado", "dev"),
    Client("motor371_asyncio", "Motor 3.7.1 aio", "motor_asyncio", "motor371"),
    Client("motor371_tornado", "Motor 3.7.1 Tor", "motor_tornado", "motor371"),
    Client("pymongo_async", "PyMongo async", "pymongo_async", "dev"),
    Client("mongojet", "mongojet", "mongojet", "mongojet"),
    Client("pymongo_sync", "PyMongo sync", "pymongo_sync", "dev", is_async=False),
)
CLIENT_BY_KEY = {c.key: c for c in CLIENTS}


@dataclass(frozen=True)
class Workload:
    """One workload; ``kind`` is what the worker runs, ``unit`` the headline metric."""

    key: str
    label: str
    kind: str  # sequential | concurrent | pending | to_list | big
    collection: str  # a key of LOGICAL
    #: "µs/op" or "ms" (one big-data operation, end to end): lower is better;
    #: "ops/s" or "MB/s": higher is better.
    unit: str
    op: str = "find_one"
    concurrency: int = 1
    requests_per_op: int = 1  # wire requests per operation (for the server's CPU)
    #: The worker kinds that run it (None: all) and the servers it runs on (None: all).
    kinds: tuple[str, ...] | None = None
    servers: tuple[str, ...] | None = None
    #: Big data: documents read or written, cursor batch size, garbage-collector mode.
    docs: int = 0
    batch_size: int | None = None
    gc: str = "on"
    doc_bytes: int = 0

    @property
    def higher_is_better(self) -> bool:
        return self.unit not in ("µs/op", "ms")

    def runs_on(self, client: Client) -> bool:
        return self.kinds is None or client.kind in self.kinds

    def with_gc(self, mode: str) -> Workload:
        """This big-data workload with the garbage collector ``on``, ``frozen`` or ``off``."""
        if mode == "on":
            return self
        return replace(self, key=f"{self.key}_gc{mode}", label=f"{self.label}, GC {mode}", gc=mode)


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def big_workloads(
    doc_bytes: int = BIG_DOC_BYTES, many: int = MANY_DOCS, inserted: int = INSERT_MANY_DOCS
) -> tuple[Workload, ...]:
    """The big-data workloads: one operation per run, always with the stall ticker, on
    FerretDB only (the canned server cannot store or filter documents)."""
    size = f"{doc_bytes / MB:g}MB"
    common: dict[str, Any] = {"kinds": BIG_KINDS, "servers": ("ferretdb",), "unit": "ms"}
    return (
        Workload(
            "big_insert_one",
            f"insert_one {size} doc",
            "big",
            "bigins",
            op="insert_big",
            doc_bytes=doc_bytes,
            **common,
        ),
        Workload(
            "big_insert_one_nested",
            f"insert_one {size}, embedded",
            "big",
            "bigins",
            op="insert_big_nested",
            doc_bytes=doc_bytes,
            **common,
        ),
        Workload(
            "big_insert_array",
            f"insert_one {_count(INSERT_ARRAY_VALUES)}-int array",
            "big",
            "bigins",
            op="insert_array",
            docs=INSERT_ARRAY_VALUES,
            **common,
        ),
        Workload(
            "big_find_one",
            f"find_one {size} doc",
            "big",
            "bigdoc",
            op="find_big",
            doc_bytes=doc_bytes,
            **common,
        ),
        Workload(
            "big_find_text",
            f"find_one {size} text",
            "big",
            "bigtext",
            op="find_text",
            doc_bytes=doc_bytes,
            **common,
        ),
        Workload(
            "big_find_array",
            f"find_one {_count(ARRAY_VALUES)}-int array",
            "big",
            "bigarray",
            op="find_array",
            docs=ARRAY_VALUES,
            **common,
        ),
        Workload(
            "many_to_list",
            f"to_list {_count(many)} docs",
            "big",
            "many",
            op="to_list",
            docs=many,
            **common,
        ),
        Workload(
            "many_to_list_1b",
            f"to_list {_count(many)}, 1 batch",
            "big",
            "many",
            op="to_list",
            docs=many,
            batch_size=many,
            **common,
        ),
        Workload(
            "big_insert_many",
            f"insert_many {_count(inserted)} docs",
            "big",
            "manyins",
            op="insert_many",
            docs=inserted,
            **common,
        ),
        Workload(
            "big_insert_many_large",
            f"insert_many {LARGE_DOCS}×{LARGE_DOC_BYTES / MB:g}MB docs",
            "big",
            "manyins",
            op="insert_many_large",
            docs=LARGE_DOCS,
            doc_bytes=LARGE_DOC_BYTES,
            **common,
        ),
    )


WORKLOADS = (
    Workload("seq_find_one", "find_one sequential", "sequential", "small", "µs/op"),
    Workload(
        "seq_insert_one", "insert_one sequential", "sequential", "insert", "µs/op", "insert_one"
    ),
    Workload("c1", "find_one C=1", "concurrent", "small", "ops/s", concurrency=1),
    Workload("c10", "find_one C=10", "concurrent", "small", "ops/s", concurrency=10),
    Workload("c100", "find_one C=100", "concurrent", "small", "ops/s", concurrency=100),
    Workload("c1000", "find_one C=1000", "concurrent", "small", "ops/s", concurrency=1000),
    Workload("pending", "find_one 10k pending", "pending", "small", "ops/s", concurrency=PENDING),
    Workload("docs16k", "to_list 1000×16KiB", "to_list", "docs16k", "MB/s", requests_per_op=2),
    Workload("docs4m", "to_list 10×4MiB", "to_list", "docs4m", "MB/s", requests_per_op=4),
    *big_workloads(),
)
WORKLOAD_BY_KEY = {w.key: w for w in WORKLOADS}
#: The big-data workloads whose stall must stay under BIG_STALL_BOUND_MS, and those whose
#: stall must not exceed the best peer's (one document: encoded or decoded in one piece).
BIG_BOUNDED = (
    "big_insert_array",
    "big_find_array",
    "many_to_list",
    "many_to_list_1b",
    "big_insert_many",
    "big_insert_many_large",
)
BIG_VS_PEERS = ("big_insert_one", "big_insert_one_nested", "big_find_one", "big_find_text")


@dataclass
class Mode:
    """How much to run: operation counts per repetition and repetition counts."""

    name: str
    reps: int
    pending_reps: int  # fresh-process pending runs per client
    stall_reps: int  # extra runs with the stall ticker per async client and workload
    pending_stall_reps: int
    ops: dict[str, int]  # workload key -> operations (queries for to_list) per run
    pending_per_task: int  # operations each pending task makes
    big_reps: int = 3  # runs of each big-data workload per client and GC mode
    big_gc: tuple[str, ...] = ("on", "off")  # GC modes of the big-data workloads


FULL = Mode(
    "full",
    reps=5,
    pending_reps=3,
    stall_reps=5,
    pending_stall_reps=1,
    ops={
        "seq_find_one": 10000,
        "seq_insert_one": 10000,
        "c1": 2000,
        "c10": 4000,
        "c100": 8000,
        "c1000": 10000,
        "docs16k": 10,
        "docs4m": 5,
    },
    pending_per_task=2,
)
QUICK = Mode(
    "quick",
    reps=2,
    pending_reps=1,
    stall_reps=1,
    pending_stall_reps=0,
    ops={
        "seq_find_one": 300,
        "seq_insert_one": 300,
        "c1": 300,
        "c10": 500,
        "c100": 1000,
        "c1000": 2000,
        "docs16k": 3,
        "docs4m": 2,
    },
    pending_per_task=1,
    big_reps=1,
    big_gc=("on",),
)


#: Workloads whose client runs one operation at a time.
ONE_AT_A_TIME = ("sequential", "to_list")


@dataclass
class Target:
    """A server and how to scale the plan for it."""

    name: str  # "canned" or "ferretdb"
    description: str
    uri: str
    db: str
    collections: dict[str, str]  # logical name -> collection name
    #: Operation counts are multiplied by this (FerretDB is slower than the canned server).
    scale: float = 1.0
    #: Queries per to_list run on this server (it may be far slower than the canned one).
    to_list_ops: dict[str, int] = field(default_factory=dict)
    run_pending: bool = True
    server: CannedServer | None = field(default=None, repr=False)
    note: str = ""
    #: The canned server's CPU per request over the whole session (user, system).
    server_user_us_per_request: float | None = None
    server_sys_us_per_request: float | None = None
    #: CPUs for clients running one operation at a time (the CPUs the server is not on).
    client_cpus: list[int] | None = None
    #: FerretDB launched here: the server, and its CPU and the clients' CPUs during the
    #: big-data workloads (see ``pin_for_big``).
    ferretdb: ExternalServer | None = field(default=None, repr=False)
    big_server_cpus: list[int] | None = None
    big_client_cpus: list[int] | None = None
    #: Switch the canned server to busy-poll mode for one-at-a-time workloads.
    busy_poll: bool = False
    #: Every client's options on this server.
    options: dict[str, Any] = field(default_factory=lambda: dict(CLIENT_OPTIONS))
    _admin: Any = field(default=None, repr=False)
    _busy: bool = field(default=False, repr=False)

    def prepare(self, workload: Workload) -> None:
        """Put the server in the mode ``workload`` is measured in (before its runs).

        With ``busy_poll``, the canned server polls the connection of a client that works
        one operation at a time (see ``cannedserver``'s ``cannedBusyPoll``): its reply
        then leaves as soon as the request arrives, instead of after this server process
        wakes up, a delay that depends on how long it was idle and so on each client's
        rhythm.
        """
        busy = self.busy_poll and workload.kind in ONE_AT_A_TIME
        if busy == self._busy:
            return
        self._admin_client().admin.command("cannedBusyPoll", busy)
        self._busy = busy

    def _admin_client(self) -> Any:
        if self._admin is None:
            self._admin = pymongo.MongoClient(self.uri)
        return self._admin

    def runs(self, workload: Workload) -> bool:
        """Whether ``workload`` runs on this server."""
        return workload.servers is None or self.name in workload.servers

    def reset(self, workload: Workload) -> None:
        """Before each run of a big-data write: an empty collection (not timed).

        Dropped and created again, so that the write neither finds the documents of the
        run before nor pays for creating the collection.
        """
        if workload.kind != "big" or workload.op not in (
            "insert_big",
            "insert_big_nested",
            "insert_array",
            "insert_many",
            "insert_many_large",
        ):
            return
        db = self._admin_client()[self.db]
        name = self.collections[workload.collection]
        db.drop_collection(name)
        db.create_collection(name)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    @contextlib.contextmanager
    def pin_for_big(self) -> Iterator[None]:
        """For the ``with`` block (the big-data workloads), confine the FerretDB this
        script launched to a CPU of its own; each run's client is kept off it.

        One big operation costs FerretDB far more CPU than the client (0.1-0.3 s for the
        15 MB ``insert_one``): left to the scheduler, its threads take both CPUs of a
        2-CPU machine in bursts, and the client's loop thread, runnable, waits for one. The
        stall figures then measured the scheduler (gaps of 3-4 ms in which the loop thread
        ran for 0.0-0.2 ms, in every client), not what the driver does on its thread.
        """
        server, cpus = self.ferretdb, self.big_server_cpus
        if server is None or cpus is None:
            yield
            return
        server.pin(set(cpus))
        try:
            yield
        finally:
            server.pin(os.sched_getaffinity(0))

    def spec(self, workload: Workload, mode: Mode) -> dict[str, Any]:
        """The worker's run request for ``workload`` on this server."""
        spec: dict[str, Any] = {
            "workload": workload.kind,
            "collection": self.collections[workload.collection],
            "op": workload.op,
            "concurrency": workload.concurrency,
            "max_threads": MAX_THREADS,
        }
        if workload.kind == "big":
            # One operation per run, no warm-up (each costs seconds on FerretDB), the
            # ticker always on: its figures are the stall and the end-to-end time.
            spec.update(
                ops=1,
                warmup=0,
                ticker=True,
                gc=workload.gc,
                doc_bytes=workload.doc_bytes,
                docs=workload.docs,
                batch_size=workload.batch_size,
            )
            if self.big_client_cpus:
                spec["cpus"] = self.big_client_cpus
            return spec
        if workload.kind == "pending":
            spec.update(ops_per_task=mode.pending_per_task, warmup=1000, memory=True)
        elif workload.kind == "to_list":
            # Two warm-up queries: glibc's malloc adapts its mmap and trim thresholds to
            # the first large buffers it frees; later queries show the steady state.
            spec.update(ops=self.to_list_ops.get(workload.key, mode.ops[workload.key]), warmup=2)
        else:
            ops = max(workload.concurrency * 2, int(mode.ops[workload.key] * self.scale))
            spec.update(ops=ops, warmup=max(ops // 10, min(workload.concurrency, 100)))
        if self.client_cpus and workload.kind in ONE_AT_A_TIME:
            # One operation at a time: keep the client off the server's CPU, so every
            # round trip crosses cores (see servers.server_cpus).
            spec["cpus"] = self.client_cpus
        return spec


# --------------------------------------------------------------------------- workers


class WorkerError(RuntimeError):
    """A worker failed; the message has its traceback or stderr."""


class Worker:
    """A ``compare_worker.py`` process holding one client; one request at a time."""

    def __init__(
        self,
        client: Client,
        python: str,
        target: Target,
        env: dict[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        self.client = client
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        environ.update(env or {}, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(
            [python, str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=BENCH_DIR,
            env=environ,
            text=True,
        )
        self._setup = {
            # kind: a worker with no client ("bare") or no driver ("raw") instead.
            "client": kind or client.kind,
            "uri": target.uri,
            "db": target.db,
            # Only this project's clients import motor from the checkout.
            "repo": client.repo or (str(REPO) if client.env == "dev" else None),
            "options": target.options,
            "small": target.collections["small"],
            "insert": target.collections["insert"],
        }
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 120.0) -> dict[str, Any]:
        """Send the setup; return the worker's environment info."""
        self._send(self._setup)
        self.info = self._receive(timeout)["info"]
        return self.info

    def run(self, spec: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
        """Run one workload; return the worker's measurements."""
        self._send(spec)
        result: dict[str, Any] = self._receive(timeout)["result"]
        return result

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except OSError as exc:
            raise WorkerError(f"{self.client.label}: worker gone ({exc}){self._tail()}") from exc

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            state = "timed out" if not ready else f"exited ({self.proc.poll()})"
            raise WorkerError(f"{self.client.label}: worker {state}{self._tail()}")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise WorkerError(f"{self.client.label}: {message['error']}")
        return message

    def _tail(self, lines: int = 30) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").splitlines()[-lines:]
        return ("\n  stderr:\n  " + "\n  ".join(text)) if text else ""

    def close(self) -> None:
        """Ask the worker to quit (it closes its client), then reap it."""
        with contextlib.suppress(OSError, ValueError):
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


#: What a benchmark virtualenv has, as JSON: Motor 3.7.1's, and mongojet's.
_MOTOR371_PROBE = (
    "import json, sys, motor, pymongo, tornado; print(json.dumps({'motor': motor.version, "
    "'pymongo': pymongo.version, 'tornado': tornado.version, 'python': sys.version, "
    "'path': motor.__file__}))"
)
_MONGOJET_PROBE = (
    "import json, sys, importlib.metadata as m, mongojet, pymongo, tornado; print(json.dumps("
    "{'mongojet': m.version('mongojet'), 'pymongo': pymongo.version, 'tornado': "
    "tornado.version, 'python': sys.version, 'path': mongojet.__file__}))"
)


def _venv_versions(python: Path, probe: str = _MOTOR371_PROBE) -> dict[str, str] | None:
    try:
        out = subprocess.run(
            [str(python), "-c", probe], capture_output=True, text=True, timeout=60, cwd="/"
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def _ensure_venv(
    venv: Path, wanted: dict[str, str], packages: Sequence[str], probe: str
) -> tuple[str, dict[str, str]]:
    """Create (or reuse) ``venv`` from the running interpreter with ``packages``.

    It is reused while ``probe`` finds the ``wanted`` versions there; otherwise it is made
    again (``python -m venv --clear`` and ``pip install``).
    """
    python = _venv_python(venv)
    if python.exists():
        found = _venv_versions(python, probe)
        if found is not None and all(found.get(k) == v for k, v in wanted.items()):
            return str(python), found
    _progress(f"creating {venv} with {' '.join(packages)} (once)")
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *packages,
        ],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise BenchSetupError(
                f"{' '.join(step)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
    found = _venv_versions(python, probe)
    if found is None or any(found.get(k) != v for k, v in wanted.items()):
        raise BenchSetupError(f"{venv}: expected {wanted}, found {found}")
    return str(python), found


def ensure_motor371_venv(venv: Path = MOTOR371_VENV) -> tuple[str, dict[str, str]]:
    """Create (or reuse) a virtualenv with Motor 3.7.1, this PyMongo and this Tornado.

    Motor 3.7.1 is also imported as ``motor``, so it cannot live in the project's
    virtualenv.  It is made from the running interpreter, with PyMongo and Tornado pinned
    to its versions, so that only Motor differs.
    """
    import tornado

    wanted = {
        "motor": MOTOR371_VERSION,
        "pymongo": pymongo.version,
        "tornado": tornado.version,
        # The same interpreter build: two builds of one Python version can differ by
        # 10 % in speed (an optimized distribution build against a plain one).
        "python": sys.version,
    }
    packages = [f"{name}=={wanted[name]}" for name in ("motor", "pymongo", "tornado")]
    return _ensure_venv(venv, wanted, packages, _MOTOR371_PROBE)


def ensure_mongojet_venv(venv: Path = MONGOJET_VENV) -> tuple[str, dict[str, str]]:
    """Create (or reuse) a virtualenv with mongojet, this PyMongo and this Tornado.

    mongojet depends on PyMongo only for ``bson``, which encodes and decodes its
    documents in Python; pinning it to this PyMongo makes that work the same code as
    the other clients'.  Tornado, pinned the same way, is for ``bench/web.py``'s app,
    which runs in this virtualenv too.  It is a virtualenv of its own so that nothing
    mongojet brings can change what the project's clients import.
    """
    import tornado

    wanted = {
        "mongojet": MONGOJET_VERSION,
        "pymongo": pymongo.version,
        "tornado": tornado.version,
        "python": sys.version,
    }
    packages = [f"{name}=={wanted[name]}" for name in ("mongojet", "pymongo", "tornado")]
    return _ensure_venv(venv, wanted, packages, _MONGOJET_PROBE)


# --------------------------------------------------------------------------- measuring


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _rotated(items: Sequence[Any], shift: int) -> list[Any]:
    shift %= max(len(items), 1)
    return [*items[shift:], *items[:shift]]


def metric(workload: Workload, run: dict[str, Any]) -> float:
    """A run's headline number: µs/op, ops/s or MB/s."""
    if workload.unit == "µs/op":
        return float(run["wall_s"] / run["ops"] * 1e6)
    if workload.unit == "ms":
        return float(run["wall_s"] / run["ops"] * 1e3)
    if workload.unit == "MB/s":
        return float(run["bytes_per_query"] * run["ops"] / run["wall_s"] / MB)
    return float(run["ops"] / run["wall_s"])


class Session:
    """Runs the plan on one server and keeps every run's raw numbers."""

    def __init__(
        self,
        target: Target,
        mode: Mode,
        clients: Sequence[Client],
        workloads: Sequence[Workload],
        pythons: dict[str, str],
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.mode = mode
        self.clients = list(clients)
        self.workloads = list(workloads)
        self.pythons = pythons
        # runs[workload][client] -> list of run dicts (timed, no ticker)
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            w.key: {c.key: [] for c in clients} for w in workloads
        }
        self.stall_runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            w.key: {c.key: [] for c in clients if c.is_async} for w in workloads
        }
        self.worker_info: dict[str, dict[str, Any]] = {}
        #: Digests of motor/ as this project's workers imported it (one unless it changed).
        self.motor_digests: set[str] = set()
        self.worker_env = worker_env or {}

    def _worker(self, client: Client) -> Worker:
        worker = Worker(client, self.pythons[client.env], self.target, env=self.worker_env)
        info = worker.start()
        self.worker_info.setdefault(client.key, info)
        self._note_digest(client, info)
        return worker

    def _note_digest(self, client: Client, info: dict[str, Any]) -> None:
        if client.env == "dev" and client.repo is None and info.get("motor_digest"):
            self.motor_digests.add(info["motor_digest"])

    def _server_cpu(self) -> float | None:
        server = self.target.server
        return None if server is None or server.pid is None else process_cpu_seconds(server.pid)

    def _run(
        self, worker: Worker, workload: Workload, spec: dict[str, Any], rep: int, stall: bool
    ) -> dict[str, Any]:
        machine0, own0, before = machine_busy_seconds(), own_cpu_seconds(), self._server_cpu()
        start = time.perf_counter()
        run = worker.run(spec)
        request_s = time.perf_counter() - start
        machine1, own1, after = machine_busy_seconds(), own_cpu_seconds(), self._server_cpu()
        run["request_s"] = request_s  # the whole request: warm-up and timed operations
        if machine0 is not None and machine1 is not None:
            # /proc/stat and /proc/PID/stat count 10 ms ticks: meaningful over many runs.
            run["machine_busy_s"] = machine1 - machine0
            delta = {pid: own1[pid] - own0[pid] for pid in own1.keys() & own0.keys()}
            measured = delta.get(worker.proc.pid, 0.0)
            server = self.target.server
            if server is not None and server.pid is not None:
                measured += delta.get(server.pid, 0.0)
            # This script, the idle workers and a FerretDB it launched.
            run["bench_other_cpu_s"] = max(0.0, sum(delta.values()) - measured)
            # Processes that are not this benchmark's.
            run["others_cpu_s"] = max(0.0, run["machine_busy_s"] - sum(delta.values()))
        if before is not None and after is not None:
            cpu = after - before
            run["server_cpu_s"] = cpu
            run["server_cpu_us_per_request"] = cpu / (run["ops"] * workload.requests_per_op) * 1e6
        run["rep"] = rep
        run["stall_probe"] = stall
        run["value"] = metric(workload, run)
        return run

    def _pending(self, client: Client, spec: dict[str, Any], rep: int, stall: bool) -> Any:
        worker = self._worker(client)
        try:
            return self._run(worker, WORKLOAD_BY_KEY["pending"], spec, rep, stall)
        finally:
            worker.close()

    def _warm_server(self, workloads: Sequence[Workload], workers: dict[str, Worker]) -> None:
        """One uncounted run of each workload before the first repetition.

        The first run of a workload against a fresh server pays for the server's own
        warming up (the canned server's runtime growing its heap for 16 MiB replies, say):
        counted, it would always fall on the first client of the rotation.  The run is
        made by that client, on its own worker, and dropped.
        """
        if not workloads or not self.clients:
            return
        _progress(f"[{self.target.name}] warming the server up (not counted)")
        first = workers[self.clients[0].key]
        for workload in workloads:
            spec = self.target.spec(workload, self.mode)
            self.target.prepare(workload)
            self._run(first, workload, spec, -1, False)

    def measure(self) -> None:
        """Interleaved repetitions (after a pass that warms the server up), then the
        stall-probe runs."""
        mode, target = self.mode, self.target
        pending = [w for w in self.workloads if w.kind == "pending" and target.run_pending]
        big = [w for w in self.workloads if w.kind == "big" and target.runs(w)]
        others = [w for w in self.workloads if w.kind not in ("pending", "big")]
        workers: dict[str, Worker] = {}
        # Long-lived workers: every client for the ordinary workloads, else only those
        # that some big-data workload measures.
        resident = [c for c in self.clients if others or any(w.runs_on(c) for w in big)]
        try:
            for client in resident:
                workers[client.key] = Worker(
                    client, self.pythons[client.env], self.target, env=self.worker_env
                )
            for client in resident:
                self.worker_info[client.key] = workers[client.key].start()
                self._note_digest(client, self.worker_info[client.key])
            self._warm_server(others, workers)
            for rep in range(mode.reps):
                _progress(f"[{target.name}] repetition {rep + 1}/{mode.reps}, load {_load()}")
                for workload in others:
                    spec = target.spec(workload, mode)
                    target.prepare(workload)
                    for client in _rotated(self.clients, rep):
                        run = self._run(workers[client.key], workload, spec, rep, False)
                        self.runs[workload.key][client.key].append(run)
                    self._report(workload, rep)
                for workload in pending if rep < mode.pending_reps else ():
                    spec = target.spec(workload, mode)
                    target.prepare(workload)
                    for client in _rotated(self.clients, rep):
                        run = self._pending(client, spec, rep, False)
                        self.runs[workload.key][client.key].append(run)
                    self._report(workload, rep)
            async_clients = [c for c in self.clients if c.is_async]
            for rep in range(mode.stall_reps):
                _progress(f"[{target.name}] stall probe {rep + 1}/{mode.stall_reps}")
                for workload in others:
                    spec = dict(target.spec(workload, mode), ticker=True)
                    target.prepare(workload)
                    for client in _rotated(async_clients, rep):
                        run = self._run(workers[client.key], workload, spec, rep, True)
                        self.stall_runs[workload.key][client.key].append(run)
            for rep in range(mode.pending_stall_reps):
                for workload in pending:
                    _progress(f"[{target.name}] stall probe, {workload.label}")
                    spec = dict(target.spec(workload, mode), ticker=True, memory=False)
                    target.prepare(workload)
                    for client in _rotated(async_clients, rep):
                        run = self._pending(client, spec, rep, True)
                        self.stall_runs[workload.key][client.key].append(run)
            with target.pin_for_big():
                self._measure_big(big, workers)
        finally:
            for worker in workers.values():
                worker.close()
            target.close()

    def _measure_big(self, big: Sequence[Workload], workers: dict[str, Worker]) -> None:
        """The big-data workloads: one operation per run, the ticker on, interleaved.

        Each run is both a timed run (its end-to-end time) and a stall probe.  Writes
        go to a collection emptied before every run.
        """
        mode, target = self.mode, self.target
        for rep in range(mode.big_reps if big else 0):
            _progress(f"[{target.name}] big data {rep + 1}/{mode.big_reps}, load {_load()}")
            for workload in big:
                spec = target.spec(workload, mode)
                target.prepare(workload)
                for client in _rotated([c for c in self.clients if workload.runs_on(c)], rep):
                    target.reset(workload)
                    run = self._run(workers[client.key], workload, spec, rep, True)
                    self.runs[workload.key][client.key].append(run)
                    self.stall_runs[workload.key][client.key].append(run)
                self._report(workload, rep)

    def _report(self, workload: Workload, rep: int) -> None:
        values = []
        for client in self.clients:
            runs = [r for r in self.runs[workload.key][client.key] if r["rep"] == rep]
            if runs:
                values.append(f"{client.label} {_fmt_value(runs[-1]['value'], workload.unit)}")
        _progress(f"  {workload.label} ({workload.unit}): " + ", ".join(values))


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by all threads of a process (Linux).

    Sums the run time the scheduler keeps per thread in ``/proc/PID/task/*/schedstat``
    (nanoseconds), which unlike ``/proc/PID/stat`` (10 ms ticks) is precise enough for
    a run of a fraction of a second.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that just exited
    return total / 1e9


def machine_busy_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: all but idle and iowait.
    busy = sum(fields[:8]) - fields[3] - fields[4]
    return busy / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (scans /proc: no CONFIG_PROC_CHILDREN needed)."""
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry))
    return pids


def own_cpu_seconds() -> dict[int, float]:
    """CPU seconds of this process and its children (workers, servers), by pid.

    From ``/proc/PID/stat`` (user + system, including threads that have exited).
    """
    ticks = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    for pid in [os.getpid(), *_children(os.getpid())]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return cpu


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def measure_bare(
    mode: Mode, python: str, target: Target, env: dict[str, str]
) -> list[dict[str, Any]]:
    """RSS of the harness alone: ``PENDING`` asyncio tasks awaiting a sleep, no client."""
    runs = []
    spec = {
        "workload": "pending",
        "collection": "small",
        "concurrency": PENDING,
        "ops_per_task": 1,
        "warmup": 0,
        "memory": True,
    }
    for _ in range(max(1, mode.pending_reps)):
        worker = Worker(CLIENTS[0], python, target, env=env, kind="bare")
        try:
            worker.start()
            runs.append(worker.run(spec))
        finally:
            worker.close()
    return runs


def measure_floor(
    mode: Mode, python: str, target: Target, env: dict[str, str]
) -> list[dict[str, Any]]:
    """The machine's floor under the stall figures: the C=100 probe's ticker around a
    loop with no driver, one raw connection making sequential ``find`` round trips
    (``compare_worker.RawRunner``), as many runs as the stall probe makes, in a worker
    like the clients' (same process kind, CPUs and ticker)."""
    runs = []
    # The C=100 probe's conditions: the server in its mode for concurrent clients, the
    # worker not confined to a CPU.
    spec = dict(target.spec(WORKLOAD_BY_KEY["seq_find_one"], mode), ticker=True)
    spec.update(ops=FLOOR_OPS, warmup=FLOOR_OPS // 10)
    spec.pop("cpus", None)
    target.prepare(WORKLOAD_BY_KEY["c100"])
    worker = Worker(CLIENTS[0], python, target, env=env, kind="raw")
    try:
        worker.start()
        for _ in range(mode.stall_reps):
            runs.append(worker.run(spec))
    finally:
        worker.close()
    return runs


def format_floor(runs: Sequence[dict[str, Any]]) -> str:
    """The report's lines on :func:`measure_floor`'s runs."""
    stalls = [max(0.0, r["longest_tick_gap_ms"] - 1.0) for r in runs]
    worst = max(runs, key=lambda r: r["longest_tick_gap_ms"])
    switches = _switches(
        {"longest_tick_gap_switches_worst": worst["longest_tick_gap_switches"]}, True
    )
    return (
        f"The machine's floor (canned server, same run): a loop with no driver, one "
        f"connection, {FLOOR_OPS:,} sequential find round trips per run, the C=100 "
        f"probe's ticker: longest stall per run (the loop thread's CPU in it) "
        + ", ".join(f"{s:.2f} ({r['longest_tick_gap_cpu_ms']:.2f})" for s, r in zip(stalls, runs))
        + f" ms; the worst {max(stalls):.2f} ms (the loop thread ran "
        f"{worst['longest_tick_gap_cpu_ms']:.2f} ms of its {worst['longest_tick_gap_ms']:.2f}"
        f" ms gap{switches}). An iteration of that loop handles one "
        f"small reply: a gap longer than that is the machine's."
    )


# --------------------------------------------------------------------------- servers


def _doc(i: int, size: int) -> dict[str, Any]:
    """A document shaped like the canned server's, padded to ``size`` bytes of BSON."""
    import bson

    doc: dict[str, Any] = {"_id": i, "name": "canned", "n": bson.Int64(i), "x": i / 2, "pad": ""}
    doc["pad"] = "x" * (size - len(bson.encode(doc)))
    return doc


def seed_ferretdb(uri: str, big: Sequence[Workload] = ()) -> str:
    """Create the workloads' collections on a real server; return its version.

    With ``big`` workloads, also their collections: ``bigdoc`` (one document of their
    ``doc_bytes``), ``bigarray`` (one document with an array of ``ARRAY_VALUES``
    integers), ``many`` (their ``docs`` small documents), and the empty ``bigins`` and
    ``manyins`` that their writes go to.
    """
    from compare_worker import array_doc, big_doc, small_doc

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=10000
    )
    try:
        client.drop_database(FERRET_DB)
        db = client[FERRET_DB]
        db.small.insert_one(_doc(0, 100))
        db.docs16k.insert_many([_doc(i, 16 * 1024) for i in range(1000)])
        for i in range(10):  # one at a time: 40 MiB in one batch is a lot for FerretDB
            db.docs4m.insert_one(_doc(i, 4 * 1024 * 1024))
        db.create_collection("insert")
        if big:
            doc_bytes = max(w.doc_bytes for w in big)
            many = max((w.docs for w in big if w.collection == "many"), default=0)
            db.bigdoc.insert_one(big_doc(doc_bytes))
            if any(w.collection == "bigtext" for w in big):
                db.bigtext.insert_one(big_doc(doc_bytes, text=True))
            values = max((w.docs for w in big if w.collection == "bigarray"), default=0)
            if values:
                db.bigarray.insert_one(array_doc(values))
            for start in range(0, many, 20_000):
                stop = min(start + 20_000, many)
                db.many.insert_many([small_doc(i) for i in range(start, stop)])
            db.create_collection("bigins")
            db.create_collection("manyins")
        version = str(client.server_info().get("version"))
    finally:
        client.close()
    return version


def drop_ferretdb(uri: str) -> None:
    """Drop the benchmark database."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=10000
    )
    with contextlib.closing(client):
        client.drop_database(FERRET_DB)


LOGICAL = (
    "small",
    "insert",
    "docs16k",
    "docs4m",
    "bigdoc",
    "bigtext",
    "bigarray",
    "bigins",
    "many",
    "manyins",
)


@contextlib.contextmanager
def canned_target(gomaxprocs: int, pin: bool = True, busy_poll: bool = True) -> Iterator[Target]:
    """Run the canned server for the ``with`` block (on a CPU of its own with ``pin``;
    busy-polling in one-at-a-time workloads with ``busy_poll``, if it has that CPU)."""
    binary = build_canned_server()
    cpus = server_cpus() if pin else None
    busy_poll = busy_poll and cpus is not None
    where = f"pinned to CPU {','.join(map(str, sorted(cpus)))}" if cpus else "not pinned"
    if busy_poll:
        where += ", busy-polling in one-at-a-time workloads"
    with CannedServer(binary, gomaxprocs=gomaxprocs, cpus=cpus) as server:
        client_cpus = sorted(os.sched_getaffinity(0) - cpus) if cpus else None
        target = Target(
            name="canned",
            description=f"Go canned server (GOMAXPROCS={gomaxprocs}, {where}, {binary.name})",
            uri=server.uri,
            db="bench",
            collections={name: name for name in LOGICAL},
            server=server,
            client_cpus=client_cpus,
            busy_poll=busy_poll,
        )
        start = server.cpu_times()
        try:
            yield target
        finally:
            end = server.cpu_times()
            target.server = None
    target.note = server.summary
    match = re.search(r"(\d+) requests", server.summary)
    if match and start is not None and end is not None:
        requests = int(match.group(1))
        target.server_user_us_per_request = (end[0] - start[0]) / requests * 1e6
        target.server_sys_us_per_request = (end[1] - start[1]) / requests * 1e6


@contextlib.contextmanager
def ferretdb_target(
    uri: str | None,
    mode: Mode,
    big: Sequence[Workload] = (),
    compressors: str | None = None,
    pin: bool = True,
) -> Iterator[Target | None]:
    """Find or launch FerretDB, seed it for the ``with`` block, drop the data after.

    With ``big`` workloads, their collections are seeded too.  With ``compressors``, the
    clients reach it through a proxy that speaks wire compression to them (see the module
    docstring).  With ``pin``, a FerretDB launched here runs on a CPU of its own during
    the big-data workloads (``Target.pin_for_big``).
    """
    server, note = ferretdb_server(uri)
    if server is None:
        _progress(f"FerretDB {note}")
        yield None
        return
    proxy: Any = None
    try:
        _progress(f"seeding FerretDB ({server.description}){' with big data' if big else ''}")
        version = seed_ferretdb(server.uri, big)
        quick = mode.name == "quick"
        description = f"{server.description}; reports version {version}"
        target_uri = server.uri
        options: dict[str, Any] = dict(CLIENT_OPTIONS)
        if compressors:
            if str(REPO) not in sys.path:
                sys.path.insert(0, str(REPO))
            from pymongo.uri_parser import parse_uri

            from test.faultproxy import FaultProxy

            address = parse_uri(server.uri)["nodelist"][0]
            proxy = FaultProxy(address, compression=True).start()
            target_uri = proxy.uri
            options["compressors"] = compressors
            description += f"; through a proxy compressing with {compressors}"
        target = Target(
            name="ferretdb",
            description=description,
            uri=target_uri,
            options=options,
            db=FERRET_DB,
            collections={name: name for name in LOGICAL},
            scale=0.5,
            to_list_ops={"docs16k": 1 if quick else 3, "docs4m": 1 if quick else 2},
            run_pending=not quick,
            note=note,
        )
        cpus = server_cpus() if pin and server.pid is not None else None
        if cpus and big:
            target.ferretdb = server
            target.big_server_cpus = sorted(cpus)
            target.big_client_cpus = sorted(os.sched_getaffinity(0) - cpus)
            target.description += (
                f"; pinned to CPU {','.join(map(str, sorted(cpus)))} during the big-data"
                " workloads, their clients kept off it"
            )
        elif big:
            target.description += "; not pinned during the big-data workloads"
        try:
            yield target
        finally:
            target.ferretdb = None  # the report is made of the target's fields
            with contextlib.suppress(Exception):
                drop_ferretdb(server.uri)
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


# --------------------------------------------------------------------------- summaries


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(session: Session) -> dict[str, dict[str, dict[str, Any]]]:
    """Per workload and client: medians and spreads of every figure."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for workload in session.workloads:
        out[workload.key] = {}
        for client in session.clients:
            runs = session.runs[workload.key][client.key]
            stall_runs = session.stall_runs[workload.key].get(client.key, [])
            values = [r["value"] for r in runs]
            cpu = [(r["cpu_user_s"] + r["cpu_sys_s"]) / r["ops"] * 1e6 for r in runs]
            gaps = [r["longest_tick_gap_ms"] for r in stall_runs]
            entry: dict[str, Any] = {
                "value": _median(values),
                "min": min(values) if values else None,
                "max": max(values) if values else None,
                "cpu_us_per_op": _median(cpu),
                "minor_faults_per_op": _median(
                    [r["minor_faults"] / r["ops"] for r in runs if "minor_faults" in r]
                ),
                "longest_tick_gap_ms": _median(gaps),
                "longest_tick_gap_ms_max": max(gaps) if gaps else None,
                # The loop thread's CPU time within each probe's longest gap (median).
                "longest_tick_gap_cpu_ms": _median(
                    [
                        r["longest_tick_gap_cpu_ms"]
                        for r in stall_runs
                        if "longest_tick_gap_cpu_ms" in r
                    ]
                ),
                "stall_probe_value": _median([r["value"] for r in stall_runs]),
            }
            if stall_runs and all("longest_tick_gap_cpu_ms" in r for r in stall_runs):
                # The loop thread's CPU time within the worst run's longest gap: what is
                # left of the gap was time the thread did not run.
                worst_run = max(stall_runs, key=lambda r: r["longest_tick_gap_ms"])
                entry["longest_tick_gap_cpu_ms_worst"] = worst_run["longest_tick_gap_cpu_ms"]
                # And its context switches: (voluntary, involuntary).
                entry["longest_tick_gap_switches_worst"] = worst_run.get(
                    "longest_tick_gap_switches"
                )
            if stall_runs and all(r.get("first_tick_gap_ms") is not None for r in stall_runs):
                # The first gap of each probe run (as its tasks all start) and the
                # longest of the others: the worst of the runs.
                entry["first_tick_gap_ms_max"] = max(r["first_tick_gap_ms"] for r in stall_runs)
                entry["longest_later_tick_gap_ms_max"] = max(
                    r["longest_later_tick_gap_ms"] for r in stall_runs
                )
            if workload.kind == "big" and stall_runs:
                entry.update(
                    # The most the loop thread used within any gap of any run (work
                    # holding the loop).
                    busiest_tick_cpu_ms_max=max(r["busiest_tick_cpu_ms"] for r in stall_runs),
                    # The longest gap net of the selector's late wake-ups (see the
                    # worker's SelectorClock); None from a worker that predates it.
                    longest_net_tick_gap_ms=_median(
                        [
                            r["longest_net_tick_gap_ms"]
                            for r in stall_runs
                            if r.get("longest_net_tick_gap_ms") is not None
                        ]
                    ),
                    longest_net_tick_gap_ms_max=max(
                        (
                            r["longest_net_tick_gap_ms"]
                            for r in stall_runs
                            if r.get("longest_net_tick_gap_ms") is not None
                        ),
                        default=None,
                    ),
                    longest_tick_gap_late_ms_worst=max(
                        stall_runs, key=lambda r: r["longest_tick_gap_ms"]
                    ).get("longest_tick_gap_late_ms"),
                    busiest_tick_cpu_ms=_median([r["busiest_tick_cpu_ms"] for r in stall_runs]),
                    tick_gaps_over_10ms=_median([r["tick_gaps_over_10ms"] for r in stall_runs]),
                    gc_longest_ms_max=max(r["gc_longest_ms"] for r in stall_runs),
                    gc_gen2_collections=_median([r["gc_collections"][2] for r in stall_runs]),
                    runs=len(stall_runs),
                )
            # /proc counts CPU time in 10 ms ticks: sum over the runs before dividing.
            served = [r for r in runs if "server_cpu_s" in r]
            if served:
                cpu_s = sum(r["server_cpu_s"] for r in served)
                requests = sum(r["ops"] for r in served) * workload.requests_per_op
                entry["server_cpu_us_per_request"] = cpu_s / requests * 1e6
                entry["server_busy"] = cpu_s / sum(r["wall_s"] for r in served)
            else:
                entry["server_cpu_us_per_request"] = entry["server_busy"] = None
            if workload.kind == "pending" and runs:
                extra = [(r["hwm_after"] - r["rss_before"]) / r["max_pending"] for r in runs]
                entry["extra_rss_bytes_per_pending_op"] = _median(extra)
                entry["max_pending"] = max(r["max_pending"] for r in runs)
            out[workload.key][client.key] = entry
    return out


# --------------------------------------------------------------------------- reporting


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "µs/op":
        return f"{value:.1f}"
    if unit == "ms":
        return f"{value:,.1f}" if value < 1000 else f"{value:,.0f}"
    if unit == "MB/s":
        return f"{value:.0f}"
    return f"{value:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _row_label(workload: Workload, target: str, with_unit: bool = True) -> str:
    if not with_unit:
        return f"{workload.label} | {target}"
    arrow = "↑" if workload.higher_is_better else "↓"
    return f"{workload.label} | {target} ({workload.unit} {arrow})"


Summaries = dict[str, dict[str, dict[str, dict[str, Any]]]]  # target -> workload -> client


def format_report(
    summaries: Summaries,
    targets: Sequence[str],
    clients: Sequence[Client],
    workloads: Sequence[Workload],
) -> str:
    """Every table of the report, as text."""
    header = ["workload | server", *(c.label for c in clients)]
    rows_of: list[tuple[Workload, str, dict[str, dict[str, Any]]]] = [
        (w, t, summaries[t][w.key])
        for t in targets
        for w in workloads
        if any(summaries[t][w.key][c.key]["value"] is not None for c in clients)
    ]
    parts = []

    rows = []
    for w, t, s in rows_of:
        cells = [_row_label(w, t)]
        for c in clients:
            e = s[c.key]
            if e["value"] is None:
                cells.append("-")
                continue
            spread = (e["max"] - e["min"]) / 2 / e["value"] * 100 if e["value"] else 0.0
            cells.append(f"{_fmt_value(e['value'], w.unit)} ±{spread:.0f}%")
        rows.append(cells)
    parts.append("Median over repetitions (± half the min–max spread)\n" + _table(header, rows))

    labels = {c.key: c.label for c in clients}
    refs = ("pymongo_sync", "motor371_asyncio", "motor371_tornado", "mongojet", "base_asyncio")
    for ref_key in refs:
        if ref_key not in labels:
            continue
        for figure, what in (("value", "same unit"), ("cpu_us_per_op", "client CPU per op")):
            if figure == "cpu_us_per_op" and ref_key != "mongojet":
                continue
            rows = []
            for w, t, s in rows_of:
                ref = s[ref_key][figure]
                if ref is None:
                    continue
                cells = [_row_label(w, t) if figure == "value" else _row_label(w, t, False)]
                for c in clients:
                    v = s[c.key][figure]
                    cells.append("-" if v is None or not ref else f"{v / ref:.2f}")
                rows.append(cells)
            title = f"Ratio to {labels[ref_key]} (client ÷ reference, {what})"
            if rows:
                parts.append(title + "\n" + _table(header, rows))

    rows = []
    for w, t, s in rows_of:
        unit = {"to_list": "µs/query", "big": "ms/op"}.get(w.kind, "µs/op")
        cells = [f"{_row_label(w, t, False)} ({unit})"]
        for c in clients:
            cpu = s[c.key]["cpu_us_per_op"]
            if w.kind == "big":
                cells.append(_fmt_value(None if cpu is None else cpu / 1e3, "ms"))
            else:
                cells.append(_fmt_value(cpu, "µs/op"))
        rows.append(cells)
    parts.append(
        "Client CPU time per operation (user + system, whole process)\n" + _table(header, rows)
    )

    rows = []
    for w, t, s in rows_of:
        if w.kind != "to_list":
            continue
        cells = [f"{_row_label(w, t, False)}"]
        for c in clients:
            faults = s[c.key]["minor_faults_per_op"]
            cells.append("-" if faults is None else f"{faults:,.0f}")
        rows.append(cells)
    if rows:
        parts.append(
            "Minor page faults per query (fresh pages from the kernel: malloc growing or "
            "trimming its heap, mmap)\n" + _table(header, rows)
        )

    async_clients = [c for c in clients if c.is_async]
    rows = []
    for w, t, s in rows_of:
        if w.kind == "big":
            continue  # their own tables below
        cells = [_row_label(w, t, False)]
        for c in async_clients:
            e = s[c.key]
            med, top = e["longest_tick_gap_ms"], e["longest_tick_gap_ms_max"]
            cells.append("-" if med is None else f"{med:.1f} (max {top:.1f})")
        rows.append(cells)
    parts.append(
        "Longest event-loop gap, ms: median of the stall-probe runs (max); includes the "
        "1 ms sleep\n" + _table(["workload | server", *(c.label for c in async_clients)], rows)
    )

    parts += _big_tables(rows_of, clients)

    rows = []
    for w, t, s in rows_of:
        if w.kind != "pending":
            continue
        cells = [f"{w.label} | {t}"]
        for c in clients:
            extra = s[c.key].get("extra_rss_bytes_per_pending_op")
            cells.append("-" if extra is None else f"{extra / KB:.2f}")
        rows.append(cells)
    if rows:
        parts.append(
            "Extra RSS per pending operation, KB (peak VmHWM − VmRSS before) ÷ pending ops\n"
            + _table(header, rows)
        )

    rows = []
    for w, t, s in rows_of:
        per_request = [s[c.key]["server_cpu_us_per_request"] for c in clients]
        busy = [s[c.key]["server_busy"] for c in clients]
        if all(v is None for v in per_request):
            continue
        cells = [f"{w.label} | {t}"]
        for v, b in zip(per_request, busy):
            cells.append("-" if v is None else f"{v:.1f} µs {b * 100:.0f}%")
        rows.append(cells)
    if rows:
        parts.append(
            "Canned server CPU per request (user + system) and its busy share of one core "
            "during the run (about 100 % where it busy-polls)\n" + _table(header, rows)
        )
    return "\n\n".join(parts)


def _big_tables(
    rows_of: Sequence[tuple[Workload, str, dict[str, dict[str, Any]]]], clients: Sequence[Client]
) -> list[str]:
    """The big-data workloads' tables: stall, loop-thread CPU, end-to-end time, GC."""
    big_rows = [(w, t, s) for w, t, s in rows_of if w.kind == "big"]
    if not big_rows:
        return []
    columns = [c for c in clients if any(w.runs_on(c) for w, _t, _s in big_rows)]
    header = ["workload | server", *(c.label for c in columns)]
    runs = max(s[c.key].get("runs") or 0 for _w, _t, s in big_rows for c in columns)

    def table(title: str, cell: Any) -> str:
        rows = []
        for w, t, s in big_rows:
            cells = [_row_label(w, t, False)]
            for c in columns:
                e = s[c.key]
                cells.append("-" if e["longest_tick_gap_ms"] is None else cell(e))
            rows.append(cells)
        return title + "\n" + _table(header, rows)

    tick = 1.0  # ms: the ticker's sleep, part of every gap

    def stall(e: dict[str, Any]) -> str:
        med = max(0.0, e["longest_tick_gap_ms"] - tick)
        worst = max(0.0, e["longest_tick_gap_ms_max"] - tick)
        return f"{med:.1f} / {worst:.1f} ({e['longest_tick_gap_cpu_ms_worst']:.1f}{_switches(e)})"

    def net(e: dict[str, Any]) -> str:
        if e.get("longest_net_tick_gap_ms") is None:
            return "-"
        med = max(0.0, e["longest_net_tick_gap_ms"] - tick)
        worst = max(0.0, e["longest_net_tick_gap_ms_max"] - tick)
        late = e.get("longest_tick_gap_late_ms_worst")
        return f"{med:.1f} / {worst:.1f}" + ("" if late is None else f" ({late:.1f})")

    def busiest(e: dict[str, Any]) -> str:
        return f"{e['busiest_tick_cpu_ms']:.1f} / {e['busiest_tick_cpu_ms_max']:.1f}"

    def wall(e: dict[str, Any]) -> str:
        return f"{_fmt_value(e['value'], 'ms')} / {_fmt_value(e['max'], 'ms')}"

    def collector(e: dict[str, Any]) -> str:
        return f"{e['gc_longest_ms_max']:.1f} ({e['gc_gen2_collections']:.0f})"

    return [
        table(
            f"Big data: longest event-loop stall of the run (longest ticker gap minus its 1 ms "
            f"sleep), ms: median / worst of {runs} run(s) (the loop thread's CPU time within "
            "the worst run's longest gap; s/p: the loop thread's sleeps and preemptions in "
            "that gap, where a gap of little CPU and one sleep is a wake-up the machine "
            "delayed)",
            stall,
        ),
        table(
            "Big data: the longest stall net of the selector's late wake-ups (time the "
            "loop slept past its timeout, in gaps in which the process's other threads did "
            "not run), ms: median / worst of the runs (the late time within the worst "
            "run's longest wall-clock gap)",
            net,
        ),
        table(
            "Big data: the loop thread's busiest gap (the most CPU time it used between two "
            "ticks), ms: median / max of the runs (a report: a virtual machine's thread CPU "
            "clock can charge the host's time to the thread)",
            busiest,
        ),
        table("Big data: end-to-end time of the operation, ms: median / worst", wall),
        table(
            "Big data: the garbage collector's longest pause in any run, ms (generation-2 "
            "collections per run, median)",
            collector,
        ),
    ]


def _switches(e: dict[str, Any], long: bool = False) -> str:
    """The loop thread's context switches in the worst run's longest gap, if recorded:
    `` s1 p0`` (sleeps, preemptions), or in words with ``long``."""
    switches = e.get("longest_tick_gap_switches_worst")
    if not switches:
        return ""
    slept, preempted = switches
    if long:
        return f", {slept} sleep(s) and {preempted} preemption(s) of it"
    return f" s{slept} p{preempted}"


@dataclass
class Check:
    """One performance target's outcome."""

    name: str
    passed: bool | None  # None: not measured
    detail: str


def check_targets(summary: dict[str, dict[str, dict[str, Any]]] | None) -> list[Check]:
    """The project's targets, from the canned server's medians."""
    checks: list[Check] = []
    if summary is None:
        return [Check("all targets", None, "the canned server was not measured")]

    def value(workload: str, client: str, key: str = "value") -> float | None:
        entry = summary.get(workload, {}).get(client)
        return None if entry is None else entry.get(key)

    def ratio_check(
        name: str, workload: str, client: str, ref: str, bound: float, at_most: bool
    ) -> None:
        v, r = value(workload, client), value(workload, ref)
        if v is None or r is None or not r:
            checks.append(Check(name, None, "not measured"))
            return
        ratio = v / r
        ok = ratio <= bound if at_most else ratio >= bound
        sign = "≤" if at_most else "≥"
        unit = WORKLOAD_BY_KEY[workload].unit
        detail = (
            f"{ratio:.3f}× {sign} {bound}× ({_fmt_value(v, unit)} vs {_fmt_value(r, unit)} {unit})"
        )
        checks.append(Check(name, ok, detail))

    this = [("this_asyncio", "this asyncio"), ("this_tornado", "this Tornado")]
    for key, label in this:
        for w in ("seq_find_one", "seq_insert_one"):
            ratio_check(
                f"{label}: {WORKLOAD_BY_KEY[w].label} ≤ 1.05× PyMongo sync",
                w,
                key,
                "pymongo_sync",
                1.05,
                True,
            )
    for key, label in this:
        ratio_check(
            f"{label}: find_one C=100 ≥ 1.3× PyMongo async",
            "c100",
            key,
            "pymongo_async",
            1.3,
            False,
        )
    for key, label, ref in (
        ("this_asyncio", "this asyncio", "motor371_asyncio"),
        ("this_tornado", "this Tornado", "motor371_tornado"),
    ):
        ratio_check(
            f"{label}: find_one C=100 ≥ 2.0× {CLIENT_BY_KEY[ref].label}",
            "c100",
            key,
            ref,
            2.0,
            False,
        )
    for w in ("c10", "c100"):
        name = (
            f"this asyncio: {WORKLOAD_BY_KEY[w].label} ≥ 1.1× mongojet, with less client CPU per op"
        )
        v, r = value(w, "this_asyncio"), value(w, "mongojet")
        cpu, cpu_ref = (
            value(w, "this_asyncio", "cpu_us_per_op"),
            value(w, "mongojet", "cpu_us_per_op"),
        )
        if v is None or not r or cpu is None or cpu_ref is None:
            checks.append(Check(name, None, "not measured"))
            continue
        checks.append(
            Check(
                name,
                v >= 1.1 * r and cpu < cpu_ref,
                f"{v / r:.3f}× ({v:,.0f} vs {r:,.0f} ops/s); CPU {cpu / cpu_ref:.3f}× "
                f"({cpu:.1f} vs {cpu_ref:.1f} µs/op)",
            )
        )
    for key, label in this:
        extra = value("pending", key, "extra_rss_bytes_per_pending_op")
        if extra is None:
            checks.append(
                Check(f"{label}: 10k pending ≤ 5 KB extra RSS per op", None, "not measured")
            )
        else:
            checks.append(
                Check(
                    f"{label}: 10k pending ≤ 5 KB extra RSS per op",
                    extra <= 5 * KB,
                    f"{extra / KB:.2f} KB per pending op",
                )
            )
        pending, c100 = value("pending", key), value("c100", key)
        name = f"{label}: 10k pending ≥ 0.9× own C=100 throughput"
        if pending is None or c100 is None:
            checks.append(Check(name, None, "not measured"))
        else:
            checks.append(
                Check(
                    name,
                    pending >= 0.9 * c100,
                    f"{pending / c100:.3f}× ({pending:,.0f} vs {c100:,.0f} ops/s)",
                )
            )
    for key, label in this:
        for w in ("docs16k", "docs4m"):
            ratio_check(
                f"{label}: {WORKLOAD_BY_KEY[w].label} ≥ 0.95× PyMongo sync",
                w,
                key,
                "pymongo_sync",
                0.95,
                False,
            )
    for key, label in this:
        gap = value("c100", key, "longest_tick_gap_ms")
        name = f"{label}: longest loop stall at C=100 ≤ 2 ms"
        if gap is None:
            checks.append(Check(name, None, "not measured"))
        else:
            # The ticker sleeps 1 ms between wake-ups.  The bound holds for the worst of
            # the probe runs, not their median.
            stall = max(0.0, gap - 1.0)
            top = value("c100", key, "longest_tick_gap_ms_max") or gap
            worst = max(0.0, top - 1.0)
            on_cpu = value("c100", key, "longest_tick_gap_cpu_ms")
            cpu_text = "" if on_cpu is None else f"; the loop thread ran {on_cpu:.2f} ms of it"
            worst_cpu = value("c100", key, "longest_tick_gap_cpu_ms_worst")
            worst_text = (
                ""
                if worst_cpu is None
                else f" (the loop thread ran {worst_cpu:.2f} ms of its {top:.2f} ms gap"
                f"{_switches(summary['c100'][key], long=True)})"
            )
            first = value("c100", key, "first_tick_gap_ms_max")
            later = value("c100", key, "longest_later_tick_gap_ms_max")
            split_text = (
                ""
                if first is None or later is None
                else f"; of the runs' gaps, the first (as the 100 tasks start) at most "
                f"{max(0.0, first - 1.0):.2f} ms, the others at most "
                f"{max(0.0, later - 1.0):.2f} ms"
            )
            checks.append(
                Check(
                    name + " (worst probe run)",
                    worst <= 2.0,
                    f"worst probe run {worst:.2f} ms{worst_text}; median {stall:.2f} ms "
                    f"(longest gap {gap:.2f} ms minus the 1 ms tick{cpu_text}){split_text}",
                )
            )
    return checks


def check_big(
    summary: dict[str, dict[str, dict[str, Any]]] | None,
    workloads: Sequence[Workload],
    clients: Sequence[Client],
) -> list[Check]:
    """The big-data targets, from FerretDB's runs (stalls: median of the runs, worst
    shown).

    For every GC mode measured: this asyncio's stall at most ``BIG_STALL_BOUND_MS`` for
    ``BIG_BOUNDED``, at most the best peer's for ``BIG_VS_PEERS``, and its end-to-end time
    (best run) at most ``BASELINE_TOLERANCE`` × the ``--baseline`` commit's.
    """
    big = [w for w in workloads if w.kind == "big"]
    if not big:
        return []
    if summary is None:
        return [Check("big-data targets", None, "FerretDB was not measured")]
    keys = {c.key for c in clients}
    peers = [k for k in ("motor371_asyncio", "pymongo_async", "mongojet") if k in keys]
    tick = 1.0  # ms: the ticker's sleep, part of every gap
    checks: list[Check] = []

    def entry(w: Workload, client: str) -> dict[str, Any] | None:
        e = summary.get(w.key, {}).get(client)
        return None if e is None or e["longest_tick_gap_ms"] is None else e

    def stall(e: dict[str, Any]) -> float:
        return max(0.0, float(e["longest_tick_gap_ms"]) - tick)

    def worst(e: dict[str, Any]) -> str:
        return (
            f"worst of {e['runs']} {max(0.0, e['longest_tick_gap_ms_max'] - tick):.1f} ms, "
            f"loop thread's CPU in it {e['longest_tick_gap_cpu_ms_worst']:.1f} ms"
            f"{_switches(e, long=True)}; "
            f"longest GC pause {e['gc_longest_ms_max']:.1f} ms"
        )

    for w in big:
        plain = w.key.split("_gc")[0]  # the workload's key without its GC mode
        this = entry(w, "this_asyncio")
        if plain in BIG_BOUNDED:
            name = (
                f"this asyncio: {w.label}: stall ≤ {BIG_STALL_BOUND_MS:g} ms, net of the "
                "selector's late wake-ups"
            )
            if this is None or this.get("longest_net_tick_gap_ms") is None:
                checks.append(Check(name, None, "not measured"))
            else:
                net = max(0.0, float(this["longest_net_tick_gap_ms"]) - tick)
                net_worst = max(0.0, float(this["longest_net_tick_gap_ms_max"]) - tick)
                late = this.get("longest_tick_gap_late_ms_worst")
                late_text = "" if late is None else f", {late:.1f} ms of it the selector's late"
                checks.append(
                    Check(
                        name,
                        net <= BIG_STALL_BOUND_MS,
                        f"median {net:.1f} ms, worst {net_worst:.1f}; wall clock: median "
                        f"{stall(this):.1f} ms ({worst(this)}{late_text})",
                    )
                )
        if plain in BIG_VS_PEERS:
            name = f"this asyncio: {w.label}: stall ≤ the best peer's"
            measured = {k: entry(w, k) for k in peers}
            found = {k: e for k, e in measured.items() if e is not None}
            if this is None or not found:
                checks.append(Check(name, None, "not measured"))
            else:
                best = min(found, key=lambda k: stall(found[k]))
                others = ", ".join(
                    f"{CLIENT_BY_KEY[k].label} {stall(e):.1f}" for k, e in found.items()
                )
                checks.append(
                    Check(
                        name,
                        stall(this) <= stall(found[best]),
                        f"median {stall(this):.1f} ms vs {others} ms ({worst(this)})",
                    )
                )
    baseline = next((c for c in clients if c.key == "base_asyncio"), None)
    for w in big:
        this = summary.get(w.key, {}).get("this_asyncio")
        name = f"this asyncio: {w.label}: end-to-end ≤ {BASELINE_TOLERANCE}× the baseline's"
        if baseline is None:
            checks.append(Check(name, None, "no --baseline commit measured"))
            continue
        base = summary.get(w.key, {}).get("base_asyncio")
        if this is None or base is None or this["min"] is None or not base["min"]:
            checks.append(Check(name, None, "not measured"))
            continue
        # The best run of each: one big operation's time on FerretDB is mostly the
        # server's own work, which varies from run to run far more than the client's
        # (a 15 MB insert: 0.13-0.30 s of server CPU, 10 ms of the client's), and only
        # adds; the best run is the one it disturbed least.  Medians are shown too.
        ratio = this["min"] / base["min"]
        checks.append(
            Check(
                name,
                ratio <= BASELINE_TOLERANCE,
                f"{ratio:.3f}× (best {_fmt_value(this['min'], 'ms')} vs "
                f"{_fmt_value(base['min'], 'ms')} ms for {baseline.label}; medians "
                f"{_fmt_value(this['value'], 'ms')} vs {_fmt_value(base['value'], 'ms')}, "
                f"client CPU {this['cpu_us_per_op'] / 1e3:.1f} vs "
                f"{base['cpu_us_per_op'] / 1e3:.1f} ms)",
            )
        )
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        verdict = "N/A " if c.passed is None else ("PASS" if c.passed else "FAIL")
        lines.append(f"{verdict}  {c.name}: {c.detail}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- environment


def motor_tree_digest() -> str:
    """A digest of the files under ``motor/``: shows whether they changed during the run."""
    from compare_worker import package_digest

    return package_digest(str(REPO / "motor"))


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def environment() -> dict[str, Any]:
    """What the numbers depend on, for the JSON report."""
    import greenlet
    import tornado

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "pymongo": pymongo.version,
        "pymongo_c_extensions": pymongo.has_c(),
        "greenlet": greenlet.__version__,
        "tornado": tornado.version,
        "go": go_version(),
        "git_head": git("rev-parse", "HEAD"),
        "git_status_motor": git("status", "--short", "--", "motor"),
        "motor_tree_digest_start": motor_tree_digest(),
    }


# --------------------------------------------------------------------------- main


def baseline_clients(rev: str) -> list[Client]:
    """This project's two clients as of commit ``rev``, from a git worktree of it.

    Measured in the same run as the working tree, interleaved, so a change's effect is
    not lost in the drift between runs.
    """
    commit = git("rev-parse", "--short", rev)
    if commit is None:
        raise SystemExit(f"--baseline: {rev!r} is not a commit of this repository")
    path = cache_dir() / f"baseline-{commit}"
    if not (path / "motor").is_dir():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(path), commit],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return [
        Client(
            f"base_{c.kind.split('_')[1]}",
            f"{commit} {c.label.split()[1]}",
            c.kind,
            "dev",
            repo=str(path),
        )
        for c in CLIENTS[:2]
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/compare.py",
        description="Side-by-side benchmark: this Motor (asyncio, Tornado), Motor 3.7.1 "
        "(asyncio, Tornado), PyMongo AsyncMongoClient and MongoClient, and mongojet, against "
        "the canned Go server and FerretDB.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few repetitions and small counts (~10 minutes)"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 5, quick 2)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also measure this project's clients as of commit REV (a git worktree), "
        "interleaved with the others",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every raw number as JSON")
    parser.add_argument("--ferretdb-uri", help="a running FerretDB (or MongoDB) to measure")
    parser.add_argument("--no-canned", action="store_true", help="skip the canned server")
    parser.add_argument("--no-ferretdb", action="store_true", help="skip FerretDB")
    parser.add_argument(
        "--compressors",
        choices=["zlib"],
        help="every client asks for this wire compression; FerretDB, which has none, is "
        "reached through a proxy that speaks it to the clients (mongojet is left out)",
    )
    parser.add_argument(
        "--clients",
        help="comma-separated subset of: " + ", ".join(c.key for c in CLIENTS),
    )
    parser.add_argument(
        "--workloads",
        help="comma-separated subset of: " + ", ".join(w.key for w in WORKLOADS),
    )
    parser.add_argument(
        "--big-reps",
        type=int,
        help="runs of each big-data workload per client and GC mode (default 3, quick 1)",
    )
    for flag, default, what in (
        ("--big-doc-bytes", BIG_DOC_BYTES, "size of the big document, bytes"),
        ("--many-docs", MANY_DOCS, "small documents read by the to_list workloads"),
        ("--insert-many-docs", INSERT_MANY_DOCS, "small documents written by insert_many"),
    ):
        parser.add_argument(flag, type=int, help=f"big data: {what} (default {default:,})")
    parser.add_argument(
        "--big-gc",
        help="comma-separated garbage-collector modes of the big-data workloads, of: "
        f"{', '.join(GC_MODES)} (default on,off; quick: on)",
    )
    parser.add_argument(
        "--gomaxprocs", type=int, default=1, help="GOMAXPROCS of the canned server (default 1)"
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="leave the canned server wherever the scheduler puts it (default: confined to "
        "the last CPU, so that every round trip crosses cores), and a FerretDB launched "
        "here too during the big-data workloads (default: on the last CPU, their clients "
        "on the others)",
    )
    parser.add_argument(
        "--no-busy-poll",
        action="store_true",
        help="leave the canned server blocking in one-at-a-time workloads (default: it "
        "busy-polls the active connection there, when it has a CPU of its own)",
    )
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="run the workers with glibc's default malloc thresholds (default: "
        "MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=256 MiB, so that large reads "
        "measure the drivers rather than the allocator's history)",
    )
    parser.add_argument(
        "--motor371-venv",
        type=Path,
        default=MOTOR371_VENV,
        help=f"virtualenv for Motor 3.7.1, created if missing (default {MOTOR371_VENV})",
    )
    parser.add_argument(
        "--mongojet-venv",
        type=Path,
        default=MONGOJET_VENV,
        help=f"virtualenv for mongojet, created if missing (default {MONGOJET_VENV})",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead of benchmarking, cProfile a client's worker on the canned server "
        "(find_one C=100 and 10k pending) and print the top entries",
    )
    parser.add_argument(
        "--profile-client", default="this_asyncio", help="client to profile (default this_asyncio)"
    )
    parser.add_argument("--profile-top", type=int, default=35, help="entries per profile view")
    return parser.parse_args(argv)


def _select(names: str | None, known: dict[str, Any], what: str) -> list[Any]:
    if not names:
        return list(known.values())
    chosen = []
    for name in names.split(","):
        if name.strip() not in known:
            raise SystemExit(f"unknown {what} {name!r}; choose from {', '.join(known)}")
        chosen.append(known[name.strip()])
    return chosen


def profile(args: argparse.Namespace, pythons: dict[str, str]) -> int:
    """cProfile one client's worker at C=100 and with 10,000 pending operations."""
    client = CLIENT_BY_KEY[args.profile_client]
    with canned_target(args.gomaxprocs, not args.no_pin, not args.no_busy_poll) as target:
        for key in ("c100", "pending"):
            workload = WORKLOAD_BY_KEY[key]
            spec = dict(target.spec(workload, FULL), profile=True, profile_top=args.profile_top)
            if key == "c100":
                spec["ops"] = 20000
            worker = Worker(client, pythons[client.env], target)
            try:
                worker.start()
                run = worker.run(spec)
            finally:
                worker.close()
            value = _fmt_value(metric(workload, run), workload.unit)
            print(f"\n== {client.label}, {workload.label}: {value} {workload.unit} under cProfile")
            print(run["profile"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    mode = QUICK if args.quick else FULL
    if args.reps:
        mode.reps = args.reps
    if args.big_reps is not None:
        mode.big_reps = args.big_reps
    if args.big_gc:
        mode.big_gc = tuple(m.strip() for m in args.big_gc.split(","))
        unknown = [m for m in mode.big_gc if m not in GC_MODES]
        if unknown:
            raise SystemExit(f"unknown --big-gc mode {unknown[0]!r}; choose from {GC_MODES}")
    clients = _select(args.clients, CLIENT_BY_KEY, "client")
    if args.baseline:
        clients += baseline_clients(args.baseline)
    compressed_note = ""
    if args.compressors:
        clients = [c for c in clients if c.kind != "mongojet"]
        compressed_note = (
            f"--compressors {args.compressors}: every client compresses, FerretDB is reached "
            "through a compressing proxy; mongojet (no compressors option) is left out"
        )
    known = dict(WORKLOAD_BY_KEY)
    if args.big_doc_bytes or args.many_docs or args.insert_many_docs:
        sized = big_workloads(
            args.big_doc_bytes or BIG_DOC_BYTES,
            args.many_docs or MANY_DOCS,
            args.insert_many_docs or INSERT_MANY_DOCS,
        )
        known.update((w.key, w) for w in sized)
    workloads = [
        variant
        for w in _select(args.workloads, known, "workload")
        for variant in ([w.with_gc(m) for m in mode.big_gc] if w.kind == "big" else [w])
    ]
    started = time.monotonic()
    env = environment()
    pythons = {"dev": sys.executable}
    worker_env = {} if args.default_malloc else dict(TUNED_MALLOC)
    env["worker_env"] = worker_env
    notes: list[str] = [compressed_note] if compressed_note else []
    envs = {c.env for c in clients}
    if args.profile:
        envs = {CLIENT_BY_KEY[args.profile_client].env}
    if "motor371" in envs:
        pythons["motor371"], env["motor371_venv"] = ensure_motor371_venv(args.motor371_venv)
    if "mongojet" in envs:
        pythons["mongojet"], env["mongojet_venv"] = ensure_mongojet_venv(args.mongojet_venv)
    if args.profile:
        return profile(args, pythons)

    print(
        f"commit {env['git_head']}, motor/ {'modified' if env['git_status_motor'] else 'clean'}"
        f"; PyMongo {env['pymongo']}, Tornado {env['tornado']}, greenlet {env['greenlet']}, "
        f"{env['python']}"
    )
    print(f"{env['cpu_model']}, {env['cpus']} CPUs, load average {_load()}")
    if worker_env:
        print("workers run with " + " ".join(f"{k}={v}" for k, v in worker_env.items()))
    print(
        f"mode {mode.name}: {mode.reps} repetitions ({mode.pending_reps} for 10k pending), "
        f"{mode.stall_reps} stall-probe runs; clients interleaved, order rotated each repetition"
    )
    big = [w for w in workloads if w.kind == "big"]
    if big and not args.no_ferretdb:
        print(
            f"big data (FerretDB): {mode.big_reps} run(s) per client, workload and GC mode "
            f"({', '.join(mode.big_gc)}); "
            + ", ".join(sorted({w.label.split(", GC")[0] for w in big}, key=str))
        )
    if "mongojet_venv" in env:
        print(
            f"mongojet {env['mongojet_venv']['mongojet']} (PyMongo "
            f"{env['mongojet_venv']['pymongo']} for bson) from {args.mongojet_venv}"
        )

    summaries: Summaries = {}
    sessions: dict[str, Session] = {}
    targets: dict[str, Target] = {}
    bare_runs: list[dict[str, Any]] = []
    floor_runs: list[dict[str, Any]] = []

    def run_target(target: Target) -> None:
        _progress(f"== {target.name}: {target.description}")
        session = Session(target, mode, clients, workloads, pythons, worker_env)
        session.measure()
        sessions[target.name] = session
        targets[target.name] = target
        summaries[target.name] = summarize(session)

    if not args.no_canned:
        try:
            with canned_target(args.gomaxprocs, not args.no_pin, not args.no_busy_poll) as target:
                if any(w.kind == "pending" for w in workloads):
                    bare_runs = measure_bare(mode, pythons["dev"], target, worker_env)
                run_target(target)
                if any(w.key == "c100" for w in workloads) and mode.stall_reps:
                    _progress("[canned] the machine's floor: no driver, one connection")
                    floor_runs = measure_floor(mode, pythons["dev"], target, worker_env)
        except BenchSetupError as exc:
            notes.append(f"canned server skipped: {exc}")
            _progress(f"canned server skipped: {exc}")
    if args.no_ferretdb:
        notes.append("FerretDB skipped (--no-ferretdb)")
    else:
        with ferretdb_target(
            args.ferretdb_uri, mode, big, args.compressors, not args.no_pin
        ) as ferretdb:
            if ferretdb is None:
                notes.append("FerretDB skipped: no server (see --ferretdb-uri)")
            else:
                run_target(ferretdb)
                if not ferretdb.run_pending:
                    notes.append("FerretDB: the 10k pending workload is skipped in --quick mode")

    env["loadavg_end"] = list(os.getloadavg())
    env["git_status_motor_end"] = git("status", "--short", "--", "motor")
    env["motor_tree_digest_end"] = motor_tree_digest()
    env["duration_s"] = time.monotonic() - started
    env["workers"] = {name: s.worker_info for name, s in sessions.items()}
    env["motor_digests_imported"] = {
        name: sorted(session.motor_digests) for name, session in sessions.items()
    }
    if len({d for s in sessions.values() for d in s.motor_digests}) > 1:
        notes.append(
            "WARNING: this project's workers imported different versions of motor/ "
            f"({env['motor_digests_imported']}): the code changed during the run"
        )
    elif env["motor_tree_digest_end"] != env["motor_tree_digest_start"]:
        notes.append("WARNING: files under motor/ changed during the run; results may mix versions")

    others: dict[str, tuple[float, float]] = {}
    for name, session in sessions.items():
        runs = [
            r
            for by_client in session.runs.values()
            for client_runs in by_client.values()
            for r in client_runs
            if "others_cpu_s" in r
        ]
        if runs:
            wall = sum(r["request_s"] for r in runs)
            share = sum(r["others_cpu_s"] for r in runs) / wall
            bench = sum(r["bench_other_cpu_s"] for r in runs) / wall
            others[name] = (share, bench)
            if share > 0.1:
                notes.append(
                    f"WARNING: other processes used {share:.2f} CPU on average during the "
                    f"{name} runs: the machine was not idle; repeat the run"
                )
    env["others_cpu_share"] = {k: v[0] for k, v in others.items()}
    env["bench_other_cpu_share"] = {k: v[1] for k, v in others.items()}
    names = list(summaries)
    print()
    for target in targets.values():
        line = f"{target.name}: {target.description}"
        if target.server_user_us_per_request is not None:
            line += (
                f"\n  server CPU per request over the session: "
                f"{target.server_user_us_per_request:.1f} µs user + "
                f"{target.server_sys_us_per_request:.1f} µs system (kernel: loopback TCP, "
                f"epoll, wake-ups); {target.note}"
            )
        print(line)
    print()
    print(format_report(summaries, names, clients, workloads))
    if bare_runs:
        bare = statistics.median((r["hwm_after"] - r["rss_before"]) / PENDING for r in bare_runs)
        print(
            f"\nHarness alone ({PENDING:,} asyncio tasks awaiting a sleep, no client): "
            f"{bare / KB:.2f} KB per task, included in the figures above."
        )
    else:
        bare = None
    if floor_runs:
        print("\n" + format_floor(floor_runs))
    print(
        f"\nPyMongo sync uses one thread per concurrent task, capped at {MAX_THREADS} threads; "
        f"10k pending: {PENDING:,} tasks queued on a ThreadPoolExecutor of {MAX_THREADS} "
        f"threads.\nMotor 3.7.1 runs at its defaults (a pool of 5 × CPUs threads). Every "
        f"client: maxPoolSize=100 (mongojet: in the URI). mongojet's client CPU includes its "
        f"Rust runtime's threads. Run time {env['duration_s'] / 60:.1f} min; load average "
        f"at the end {_load()}."
    )
    for name, (share, bench) in others.items():
        ours = "this script and its idle workers"
        if name == "ferretdb":
            ours = "this script, its idle workers and FerretDB"
        print(
            f"{name}, average CPU during the runs: other processes {share:.2f} CPU; "
            f"{ours} {bench:.2f} CPU."
        )
    checks = check_targets(summaries.get("canned"))
    print("\nTargets (canned server, same run):")
    print(format_checks(checks))
    big_checks = check_big(summaries.get("ferretdb"), workloads, clients)
    if big_checks:
        print(
            "\nTargets (big data on FerretDB, same run; stall = longest gap minus the 1 ms tick):"
        )
        print(format_checks(big_checks))
        checks += big_checks
    for note in notes:
        print(note)

    if args.json:
        report = {
            "environment": env,
            "mode": asdict(mode),
            "clients": [asdict(c) for c in clients],
            "workloads": [asdict(w) for w in workloads],
            "client_options": CLIENT_OPTIONS,
            "max_threads": MAX_THREADS,
            "targets": {
                name: {
                    k: v for k, v in asdict(t).items() if k != "server" and not k.startswith("_")
                }
                for name, t in targets.items()
            },
            "summary": summaries,
            "runs": {name: s.runs for name, s in sessions.items()},
            "stall_runs": {name: s.stall_runs for name, s in sessions.items()},
            "harness_pending_runs": bare_runs,
            "machine_floor_runs": floor_runs,
            "harness_bytes_per_pending_task": bare,
            "checks": [asdict(c) for c in checks],
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if summaries else 1


if __name__ == "__main__":
    sys.exit(main())
