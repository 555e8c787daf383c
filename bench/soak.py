"""Soak: a mixed workload on one Motor client for a long time, with a server crash in the middle.

One client (``AsyncIOMotorClient``, or Tornado's ``MotorClient`` with ``--framework
tornado``) serves ``--concurrency`` workers (50) that each run one operation after another,
chosen at random with fixed weights:

=====================  ======  ============================================================
operation              weight  what it does (each worker has a database of its own)
=====================  ======  ============================================================
``find_one``               24  one of the worker's last 100 documents, by ``_id``
``find_to_list``           10  ``find`` of recent documents, ``sort``, ``limit(20)``,
                               ``to_list()``
``find_iter``               6  ``async for`` over ``find(batch_size=5).limit(20)``: a first
                               batch and three ``getMore``
``insert_one``             16  a new document of 100-1000 bytes
``insert_many``             5  five new documents
``update_one``             14  ``$inc`` on one of the last 100 documents
``delete_many``             4  every document older than the last 100 (the rolling set)
``aggregate``               6  ``$match`` on recent ``_id`` then ``$group`` with ``$sum``
``gridfs_upload``           6  ``upload_from_stream`` of 1-48 KiB (16 KiB chunks); a worker
                               keeping 6 files deletes its oldest instead (``gridfs_delete``)
``gridfs_download``         8  ``open_download_stream`` then ``read()`` of one of its files
=====================  ======  ============================================================

Every result is checked (the ``_id`` asked for, sort order, limits, a downloaded file's
SHA-1): a wrong one counts as a ``WrongResult`` error.  A share of the operations
(``--cancel-share``, 5 %) runs in a task cancelled after a random delay between 0 and twice
that operation's recent mean latency, so cancellations land at every point: before the
operation starts, waiting for a connection, mid-send, mid-reply, between the batches of a
cursor, inside a GridFS upload.  A worker that gets an error sleeps 50 ms and goes on.

The run lasts ``--ops`` operations (1,000,000) or ``--seconds``.  With ``--restart-at F``
the server is killed with SIGKILL when a fraction F of the run is done, stays down for
``--outage`` seconds (5) and is started again on the same port and data directory
(``test.server.kill`` / ``test.server.restart``); an acknowledged write made just before the
kill must be there afterwards.  Errors are counted by class and by phase: *before* the
kill, *outage* (operations that overlap the time from the kill to the first success of an
operation started after the restart), *after*.

Every ``--interval`` seconds (10) one line: elapsed time, operations done, ops/s over the
interval, RSS, open file descriptors, the pool's connections (open / checked out), child
greenlets parked in an operation, operations queued (Motor's admission queue and the hub's
start queue), cancellations, errors by class.  At the end a summary, and with ``--json``
every sample and figure.

Exit status 1 (a FAIL line says why) if: RSS at the end exceeds RSS at the end of warm-up
(the first 10 % of the run, at least 30 s) by more than ``--rss-limit`` (10 %); after the
workers stopped the pools are not idle (connections checked out, checkouts or connections
being made pending) or an operation is still queued; after ``client.close()`` a child
greenlet is still parked, or the process has more file descriptors than before the client
was made (beyond ``--fd-tolerance``, 2) or a thread more; an error happened outside the
outage, or a result was wrong; an operation never ended; the server did not come back, or
the write made before the kill is gone.  Exit status 2: the run could not start.

Usage (from the repository root, with the project's virtualenv)::

    .venv/bin/python bench/soak.py --restart-at 0.5 --json soak.json    # the full soak
    .venv/bin/python bench/soak.py --seconds 100 --restart-at 0.5       # what CI runs
    .venv/bin/python bench/soak.py --framework tornado --seconds 60

Without ``--uri`` the server is launched with ``test.server.launch()`` (FerretDB with its
SQLite backend, or ``mongod`` if it is on ``PATH``; see ``doc/testing.rst``) and stopped at
the end; ``MOTOR_TEST_URI`` is not used, since the soak kills its server.  With ``--uri``
the soak runs against that server (its databases ``motor_soak_*`` are dropped first and
last) and cannot restart it.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import concurrent.futures
import gc
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Soak this checkout's Motor, and its test package rather than the standard library's.
if sys.path[0] != str(REPO):
    sys.path.insert(0, str(REPO))

import pymongo  # noqa: E402
from pymongo import monitoring  # noqa: E402
from pymongo.errors import OperationFailure  # noqa: E402

from motor.green.hub import Hub  # noqa: E402
from test import server as test_server  # noqa: E402
from test.framework import open_fds, parked_children, pool_counters  # noqa: E402

DB_PREFIX = "motor_soak_"
CONTROL_DB = f"{DB_PREFIX}control"
KEEP = 100  # documents each worker keeps (delete_many trims the rest)
MAX_FILES = 6  # GridFS files each worker keeps
CHUNK_SIZE = 16 * 1024
ERROR_BACKOFF = 0.05
#: Operation kinds and their weights.
WEIGHTS = {
    "find_one": 24,
    "find_to_list": 10,
    "find_iter": 6,
    "insert_one": 16,
    "insert_many": 5,
    "update_one": 14,
    "delete_many": 4,
    "aggregate": 6,
    "gridfs_upload": 6,
    "gridfs_download": 8,
}
KINDS = [*WEIGHTS, "gridfs_delete"]
#: Error classes a server is known to raise without any fault of the client's, per flavor.
#: FerretDB 1.24 drops a cursor when the connection that opened it closes, and a cancelled
#: operation's connection is closed (never returned to the pool half-read); a getMore of
#: another worker's cursor opened on that connection then fails.  The soak only tolerates
#: these if the client never sent a killCursors for that cursor (see CursorWatch).
TOLERATED = {"ferretdb": {"CursorNotFound(43)"}}


class WrongResult(Exception):
    """An operation returned something other than what the workload wrote."""


# --------------------------------------------------------------------------- measurements


def rss_bytes() -> int:
    """This process's resident set size (``VmRSS``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def pool_sizes(client: Any) -> dict[str, int]:
    """Connections of the client's application pools: open (idle and checked out) and in use."""
    idle = busy = pending = 0
    for server in client.delegate._topology._servers.values():
        pool = server.pool
        idle += len(pool.conns)
        busy += pool.active_sockets
        pending += pool._pending
    # active_sockets counts checkouts that have no connection yet (being made, or waiting
    # for a maxConnecting slot); _pending the ones being made.
    return {"open": idle + busy - pending, "in_use": busy - pending, "idle": idle}


def in_flight(client: Any) -> tuple[int, int]:
    """(child greenlets parked in an operation, operations queued before starting)."""
    binding = client._binding
    hub: Hub | None = binding.hub
    if hub is None:
        return 0, len(binding._waiting)
    parked = sum(1 for child in list(hub._children) if child.future is not None)
    return parked, len(binding._waiting) + len(hub._queue)


def thread_names() -> list[str]:
    return sorted(thread.name for thread in threading.enumerate())


def error_class(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, OperationFailure) and exc.code is not None:
        name += f"({exc.code})"
    return name


class CursorWatch(monitoring.CommandListener):
    """Tells a cursor the client killed from one the server dropped by itself.

    Counts ``getMore`` failures with ``CursorNotFound`` whose cursor this client had sent a
    ``killCursors`` for (a client bug: a cursor killed under a live operation) and those it
    had not (the server dropped it).  Bounded memory: the last 1,000 of each.
    """

    LIMIT = 1_000

    def __init__(self) -> None:
        self.killed: dict[int, None] = {}
        self.get_more: dict[int, int] = {}
        self.not_found_killed_by_client = 0
        self.not_found_dropped_by_server = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "killCursors":
            for cursor_id in event.command.get("cursors", ()):
                self.killed[int(cursor_id)] = None
            while len(self.killed) > self.LIMIT:
                del self.killed[next(iter(self.killed))]
        elif event.command_name == "getMore":
            self.get_more[event.request_id] = int(event.command["getMore"])
            # Operations interrupted by cancellation publish no outcome: forget the oldest.
            while len(self.get_more) > self.LIMIT:
                del self.get_more[next(iter(self.get_more))]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "getMore":
            self.get_more.pop(event.request_id, None)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        if event.command_name != "getMore":
            return
        cursor_id = self.get_more.pop(event.request_id, None)
        failure = event.failure
        if cursor_id is not None and isinstance(failure, dict) and failure.get("code") == 43:
            if cursor_id in self.killed:
                self.not_found_killed_by_client += 1
            else:
                self.not_found_dropped_by_server += 1


class SampleLog:
    """The interval samples: every field goes to a temporary file (read back for ``--json``),
    the few the summary needs to arrays; so the soak's own memory does not grow with the
    length of the run and show up as the client's RSS growth."""

    FIELDS = ("elapsed_s", "progress", "ops", "ops_per_s", "rss_bytes", "fds")
    INTEGERS = frozenset(("ops", "rss_bytes", "fds"))

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.columns = {name: array.array("d") for name in self.FIELDS}
        self.last: dict[str, Any] | None = None

    def append(self, sample: dict[str, Any]) -> None:
        self.file.write(json.dumps(sample) + "\n")
        for name, column in self.columns.items():
            column.append(float(sample[name]))
        self.last = sample

    def compact(self) -> list[dict[str, Any]]:
        """Every sample, with :data:`FIELDS` only."""
        return [
            {name: int(v) if name in self.INTEGERS else v for name, v in zip(self.FIELDS, row)}
            for row in zip(*self.columns.values())
        ]

    def read_all(self) -> list[dict[str, Any]]:
        self.file.flush()
        self.file.seek(0)
        samples = [json.loads(line) for line in self.file]
        self.file.seek(0, os.SEEK_END)
        return samples

    def close(self) -> None:
        self.file.close()


def _proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all processes have used since boot (every CPU), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by this process, by the server (across restarts) and by everything else."""

    def __init__(self) -> None:
        self.server_done = 0.0  # CPU of server processes that are gone
        self.server_pid: int | None = None
        self.server_last = 0.0

    def server_seconds(self, pid: int | None) -> float:
        if pid != self.server_pid:
            self.server_done += self.server_last
            self.server_pid, self.server_last = pid, 0.0
        if pid is not None:
            now = _proc_cpu_seconds(pid)
            if now is not None:
                self.server_last = now
        return self.server_done + self.server_last

    def read(self, server_pid: int | None) -> dict[str, float]:
        times = os.times()
        return {
            "self": times.user + times.system,
            "server": self.server_seconds(server_pid),
            "machine": _machine_busy_seconds(),
        }


def cpu_shares(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """CPUs used (1.0 = one CPU busy) between two readings: the soak, its server, others."""
    if wall <= 0:
        return {"self": 0.0, "server": 0.0, "others": 0.0}
    own = after["self"] - before["self"]
    server = after["server"] - before["server"]
    others = after["machine"] - before["machine"] - own - server
    return {
        "self": round(own / wall, 3),
        "server": round(server / wall, 3),
        "others": round(max(0.0, others) / wall, 3),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def motor_tree_digest() -> str:
    """A digest of the ``.py`` files under ``motor/`` (as ``bench/compare.py`` computes it)."""
    digest = hashlib.sha256()
    root_dir = str(REPO / "motor")
    for root, dirs, files in sorted(os.walk(root_dir)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    relative = os.path.relpath(full, root_dir).encode()
                    digest.update(relative + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:16]


def environment() -> dict[str, Any]:
    import greenlet
    import tornado

    import motor

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "pymongo": pymongo.__version__,
        "greenlet": greenlet.__version__,
        "tornado": tornado.version,
        "motor_path": str(Path(motor.__file__).parent),
        "git_head": _git("rev-parse", "HEAD"),
        "git_status_motor": _git("status", "--porcelain", "motor"),
        # The soak runs the code imported at its start; files may change during a long run.
        "motor_tree_digest_start": motor_tree_digest(),
        "load_average_start": os.getloadavg(),
    }


# --------------------------------------------------------------------------- the workload


def doc_id(number: int) -> str:
    """The ``_id`` of a worker's document ``number``: zero-padded decimal strings sort as
    the numbers do, and FerretDB finds a string ``_id`` by its primary key where an
    integer one costs a collection scan (14 ms against 1 ms for ``find_one``)."""
    return f"{number:012d}" if number >= 0 else "-"  # "-" sorts before every id


class Worker:
    """One worker's state: its database, its rolling set of documents, its files."""

    def __init__(self, soak: Soak, index: int) -> None:
        self.soak = soak
        self.index = index
        self.db = soak.client[f"{DB_PREFIX}{index}"]
        self.coll = self.db.docs
        self.bucket = soak.bucket_class(self.db, chunk_size_bytes=CHUNK_SIZE)
        self.next_id = 0
        self.files: collections.deque[tuple[Any, str]] = collections.deque()
        self.ops: dict[str, Callable[[], Awaitable[None]]] = {
            "find_one": self.find_one,
            "find_to_list": self.find_to_list,
            "find_iter": self.find_iter,
            "insert_one": self.insert_one,
            "insert_many": self.insert_many,
            "update_one": self.update_one,
            "delete_many": self.delete_many,
            "aggregate": self.aggregate,
            "gridfs_upload": self.gridfs_upload,
            "gridfs_download": self.gridfs_download,
        }

    def recent_id(self) -> str:
        return doc_id(random.randrange(max(0, self.next_id - KEEP), max(1, self.next_id)))

    def new_doc(self) -> dict[str, Any]:
        doc = {
            "_id": doc_id(self.next_id),
            "w": self.index,
            "v": 0,
            "pad": "x" * random.randint(60, 960),
        }
        self.next_id += 1
        return doc

    async def find_one(self) -> None:
        wanted = self.recent_id()
        doc = await self.coll.find_one({"_id": wanted})
        if doc is not None and (doc["_id"] != wanted or doc["w"] != self.index):
            raise WrongResult(f"find_one({wanted}) returned _id {doc['_id']} of {doc['w']}")

    async def find_to_list(self) -> None:
        low = doc_id(self.next_id - 50)
        docs = await self.coll.find({"_id": {"$gte": low}}).sort("_id", -1).limit(20).to_list()
        ids = [doc["_id"] for doc in docs]
        if len(ids) > 20 or ids != sorted(ids, reverse=True) or any(i < low for i in ids):
            raise WrongResult(f"find to_list >= {low}: {ids}")

    async def find_iter(self) -> None:
        low = doc_id(self.next_id - 50)
        ids = []
        async for doc in (
            self.coll.find({"_id": {"$gte": low}}, batch_size=5).sort("_id", 1).limit(20)
        ):
            ids.append(doc["_id"])
        if len(ids) > 20 or ids != sorted(ids) or any(i < low for i in ids):
            raise WrongResult(f"find async for >= {low}: {ids}")

    async def insert_one(self) -> None:
        doc = self.new_doc()
        result = await self.coll.insert_one(doc)
        if result.inserted_id != doc["_id"]:
            raise WrongResult(f"insert_one inserted {result.inserted_id}, not {doc['_id']}")

    async def insert_many(self) -> None:
        docs = [self.new_doc() for _ in range(5)]
        result = await self.coll.insert_many(docs)
        if result.inserted_ids != [doc["_id"] for doc in docs]:
            raise WrongResult(f"insert_many inserted {result.inserted_ids}")

    async def update_one(self) -> None:
        result = await self.coll.update_one({"_id": self.recent_id()}, {"$inc": {"v": 1}})
        if result.matched_count not in (0, 1):
            raise WrongResult(f"update_one matched {result.matched_count}")

    async def delete_many(self) -> None:
        result = await self.coll.delete_many({"_id": {"$lt": doc_id(self.next_id - KEEP)}})
        if result.deleted_count < 0:
            raise WrongResult(f"delete_many deleted {result.deleted_count}")

    async def aggregate(self) -> None:
        low = doc_id(self.next_id - 50)
        pipeline = [
            {"$match": {"_id": {"$gte": low}}},
            {"$group": {"_id": None, "n": {"$sum": 1}, "v": {"$sum": "$v"}}},
        ]
        result = await self.coll.aggregate(pipeline).to_list()
        if len(result) > 1 or (result and not 0 < result[0]["n"] <= 50):
            raise WrongResult(f"aggregate >= {low}: {result}")

    async def gridfs_upload(self) -> None:
        if len(self.files) >= MAX_FILES:
            file_id, _ = self.files.popleft()
            self.soak.current_kind[self.index] = "gridfs_delete"
            await self.bucket.delete(file_id)
            return
        data = random.randbytes(random.randint(1024, 48 * 1024))
        file_id = await self.bucket.upload_from_stream(f"w{self.index}", data)
        self.files.append((file_id, hashlib.sha1(data).hexdigest()))

    async def gridfs_download(self) -> None:
        if not self.files:
            return await self.gridfs_upload()
        file_id, digest = random.choice(self.files)
        grid_out = await self.bucket.open_download_stream(file_id)
        data = await grid_out.read()
        if hashlib.sha1(data).hexdigest() != digest:
            raise WrongResult(f"GridFS file {file_id}: {len(data)} bytes, not the ones written")


# --------------------------------------------------------------------------- the soak


class Soak:
    def __init__(self, args: argparse.Namespace, server: test_server.Server | None) -> None:
        self.args = args
        self.server = server
        self.uri = args.uri or (server.uri if server else "")
        self.rng_seed = args.seed
        self.total_ops: int | None = None if args.seconds else args.ops
        self.tickets = 0  # operations started
        self.done = 0
        self.ok = 0
        self.cancel_requested = 0
        self.cancelled = 0
        self.by_kind: dict[str, collections.Counter[str]] = {
            k: collections.Counter() for k in KINDS
        }
        self.latency: dict[str, float] = dict.fromkeys(KINDS, 0.005)
        self.errors: dict[str, collections.Counter[str]] = {
            "before": collections.Counter(),
            "outage": collections.Counter(),
            "after": collections.Counter(),
        }
        self.error_samples: dict[str, str] = {}
        self.current_kind: dict[int, str] = {}
        self.samples = SampleLog()
        self.cursor_watch = CursorWatch()
        self.cpu = CpuMeter()
        self.cpu_first: dict[str, float] = {}
        self.cpu_last: tuple[float, dict[str, float], int] = (0.0, {}, 0)
        self.flavor = server.flavor if server is not None else ""
        self.rss_peak = 0
        self.peaks = {"fds": 0, "conns_open": 0, "conns_in_use": 0, "parked": 0, "queued": 0}
        self.restart: dict[str, Any] = {}
        self.kill_at: float | None = None
        self.restarted_at: float | None = None
        self.recovered_at: float | None = None
        self.last_completion = 0.0
        self.stopping = False
        self.start = 0.0
        self.warmup_end: float | None = None
        self.warmup_rss: int | None = None
        self.checks: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}
        self.server_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="soak-server"
        )
        # Start the thread now: it must exist before the baseline of threads is taken, and
        # a server it restarts dies with it (PR_SET_PDEATHSIG), so it lives until the end.
        self.server_thread.submit(lambda: None).result()

    # ----------------------------------------------------------------- progress

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def progress(self) -> float:
        if self.total_ops is not None:
            return self.done / self.total_ops
        seconds: float = self.args.seconds
        return self.elapsed() / seconds

    def take_ticket(self) -> bool:
        if self.stopping:
            return False
        if self.total_ops is not None:
            if self.tickets >= self.total_ops:
                return False
        elif self.elapsed() >= self.args.seconds:
            return False
        self.tickets += 1
        return True

    # ----------------------------------------------------------------- workers

    async def run_worker(self, worker: Worker) -> None:
        loop = asyncio.get_running_loop()
        kinds = list(WEIGHTS)
        weights = list(WEIGHTS.values())
        cancel_share = self.args.cancel_share
        while self.take_ticket():
            kind = random.choices(kinds, weights)[0]
            self.current_kind[worker.index] = kind
            started = time.monotonic()
            outcome = "ok"
            error: BaseException | None = None
            if random.random() < cancel_share:
                self.cancel_requested += 1
                task = asyncio.ensure_future(worker.ops[kind]())
                delay = random.uniform(0, 2 * self.latency[kind])
                handle = loop.call_later(delay, task.cancel)
                try:
                    await task
                except asyncio.CancelledError:
                    if not task.cancelled():  # this worker was cancelled (a hung run)
                        raise
                    outcome = "cancelled"
                except Exception as exc:
                    error = exc
                finally:
                    handle.cancel()
            else:
                try:
                    await worker.ops[kind]()
                except Exception as exc:
                    error = exc
            kind = self.current_kind[worker.index]
            ended = time.monotonic()
            self.done += 1
            self.last_completion = ended
            if error is not None:
                outcome = "error"
                self.record_error(error, started, ended)
            elif outcome == "cancelled":
                self.cancelled += 1
            else:
                self.ok += 1
                self.latency[kind] = 0.95 * self.latency[kind] + 0.05 * (ended - started)
                if self.restarted_at is not None and self.recovered_at is None:
                    if started >= self.restarted_at:
                        self.recovered_at = ended
            self.by_kind[kind][outcome] += 1
            if error is not None:
                del error
                await asyncio.sleep(ERROR_BACKOFF)

    def record_error(self, exc: BaseException, started: float, ended: float) -> None:
        name = error_class(exc)
        if self.kill_at is None or ended < self.kill_at:
            phase = "before"
        elif self.recovered_at is None or started < self.recovered_at:
            phase = "outage"
        else:
            phase = "after"
        self.errors[phase][name] += 1
        if name not in self.error_samples:
            self.error_samples[name] = f"{phase} at {ended - self.start:.1f} s: {exc}"[:500]

    # ----------------------------------------------------------------- the server

    async def crash_and_restart(self) -> None:
        """Kill the server with SIGKILL at ``--restart-at``, then start it again."""
        fraction = self.args.restart_at
        while self.progress() < fraction:
            if self.stopping:
                return
            await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        control = self.client[CONTROL_DB].markers
        marker = {"_id": f"before-kill-{os.getpid()}", "done": self.done}
        try:
            await control.insert_one(marker)
            self.restart["marker_written"] = True
        except Exception as exc:
            self.restart["marker_written"] = False
            self.restart["marker_error"] = repr(exc)
        assert self.server is not None
        old_pid = self.server.pid
        parked = in_flight(self.client)[0]
        # From here on, failures are the outage's.
        self.kill_at = time.monotonic()
        await loop.run_in_executor(self.server_thread, test_server.kill, self.server)
        self.restart.update(
            kill_at_s=self.kill_at - self.start,
            progress=self.progress(),
            old_pid=old_pid,
            parked_at_kill=parked,
        )
        print(
            f"  -- {self.kill_at - self.start:7.1f}s server pid {old_pid} killed (SIGKILL) "
            f"with {parked} operations in flight",
            flush=True,
        )
        await asyncio.sleep(self.args.outage)
        try:
            await loop.run_in_executor(self.server_thread, test_server.restart, self.server)
        except Exception as exc:
            self.restart["restart_error"] = repr(exc)
            print(f"  -- restart failed: {exc}", flush=True)
            return
        self.restarted_at = time.monotonic()
        self.restart.update(
            restarted_at_s=self.restarted_at - self.start,
            new_pid=self.server.pid,
            server_startup_s=self.server.startup_seconds,
        )
        print(
            f"  -- {self.restarted_at - self.start:7.1f}s server restarted, pid "
            f"{self.server.pid}, same port {self.server.port} and data",
            flush=True,
        )
        deadline = time.monotonic() + 60
        while self.recovered_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.recovered_at is None:
            self.restart["recovered"] = False
            return
        self.restart.update(
            recovered=True,
            recovered_at_s=self.recovered_at - self.start,
            recovery_after_restart_s=self.recovered_at - self.restarted_at,
            outage_s=self.recovered_at - self.kill_at,
        )
        print(
            f"  -- {self.recovered_at - self.start:7.1f}s first success after the restart "
            f"({self.recovered_at - self.kill_at:.1f} s after the kill)",
            flush=True,
        )
        if self.restart.get("marker_written"):
            for _ in range(100):
                try:
                    found = await control.find_one({"_id": marker["_id"]})
                except Exception:
                    await asyncio.sleep(0.1)
                    continue
                self.restart["marker_found"] = found is not None
                break

    # ----------------------------------------------------------------- reporting

    def sample(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = self.elapsed()
        sizes = pool_sizes(self.client)
        parked, queued = in_flight(self.client)
        rss = rss_bytes()
        fds = len(open_fds())
        interval_ops = self.done - (previous["ops"] if previous else 0)
        interval_s = now - (previous["elapsed_s"] if previous else 0.0)
        errors = collections.Counter[str]()
        for counter in self.errors.values():
            errors.update(counter)
        cpu = self.cpu.read(self.server.pid if self.server else None)
        last_time, last_cpu, last_ops = self.cpu_last
        wall = time.monotonic() - last_time
        shares = cpu_shares(last_cpu, cpu, wall)
        ops = self.done - last_ops
        server_us = (cpu["server"] - last_cpu["server"]) / ops * 1e6 if ops else None
        self.cpu_last = (time.monotonic(), cpu, self.done)
        return {
            "elapsed_s": round(now, 3),
            "ops": self.done,
            "ok": self.ok,
            "ops_per_s": round(interval_ops / interval_s, 1) if interval_s > 0 else 0.0,
            "progress": round(self.progress(), 4),
            "rss_bytes": rss,
            "fds": fds,
            "conns_open": sizes["open"],
            "conns_in_use": sizes["in_use"],
            "parked": parked,
            "queued": queued,
            "cancelled": self.cancelled,
            "errors": dict(errors),
            "server_rss_bytes": self.server_rss(),
            # CPUs used over the interval (1.0 = one CPU): the soak, the server, the rest.
            "cpu": shares,
            "server_cpu_us_per_op": round(server_us, 1) if server_us is not None else None,
            # Recent mean latency of successful operations, per kind (ms).
            "latency_ms": {k: round(v * 1000, 2) for k, v in self.latency.items()},
        }

    def server_rss(self) -> int | None:
        if self.server is None or self.server.pid is None:
            return None
        try:
            with open(f"/proc/{self.server.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return None

    def print_header(self) -> None:
        print(
            f"{'elapsed':>8} {'ops':>10} {'ops/s':>7} {'RSS MB':>7} {'fds':>4} "
            f"{'conns open/used':>15} {'parked':>6} {'queued':>6} {'cancel':>7}  errors",
            flush=True,
        )

    def print_sample(self, s: dict[str, Any]) -> None:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items())) or "-"
        conns = f"{s['conns_open']}/{s['conns_in_use']}"
        print(
            f"{s['elapsed_s']:7.1f}s {s['ops']:>10,} {s['ops_per_s']:>7,.0f} "
            f"{s['rss_bytes'] / 1e6:>7.1f} {s['fds']:>4} {conns:>15} {s['parked']:>6} "
            f"{s['queued']:>6} {s['cancelled']:>7,}  {errors}",
            flush=True,
        )

    async def report(self) -> None:
        """Sample every second (peaks); print and keep a sample every ``--interval``."""
        previous: dict[str, Any] | None = None
        next_report = self.args.interval
        warmup_s = max(self.args.warmup_min_seconds, 0.0)
        while True:
            await asyncio.sleep(1.0)
            rss = rss_bytes()
            self.rss_peak = max(self.rss_peak, rss)
            sizes = pool_sizes(self.client)
            parked, queued = in_flight(self.client)
            for key, value in (
                ("fds", len(open_fds())),
                ("conns_open", sizes["open"]),
                ("conns_in_use", sizes["in_use"]),
                ("parked", parked),
                ("queued", queued),
            ):
                self.peaks[key] = max(self.peaks[key], value)
            now = self.elapsed()
            if (
                self.warmup_end is None
                and now >= warmup_s
                and self.progress() >= self.args.warmup_fraction
            ):
                self.warmup_end = now
                self.warmup_rss = rss
                print(
                    f"  -- {now:7.1f}s warm-up over: RSS {rss / 1e6:.1f} MB is the baseline",
                    flush=True,
                )
            if now >= next_report:
                next_report += self.args.interval
                sample = self.sample(previous)
                self.samples.append(sample)
                self.print_sample(sample)
                previous = sample
            self.watchdog(now)

    def watchdog(self, now: float) -> None:
        quiet = time.monotonic() - max(self.last_completion, self.start)
        allowed = self.args.stall_timeout
        if self.kill_at is not None and self.recovered_at is None:
            allowed += self.args.outage + 60
        if quiet > allowed and not self.stopping:
            print(
                f"  -- {now:7.1f}s no operation ended for {quiet:.0f} s: stopping",
                flush=True,
            )
            self.result["stalled_at_s"] = now
            self.stopping = True

    # ----------------------------------------------------------------- the run

    async def run(self) -> None:
        args = self.args
        if args.framework == "tornado":
            from tornado.ioloop import IOLoop

            from motor.motor_tornado import MotorClient, MotorGridFSBucket

            client_class: Any = MotorClient
            self.bucket_class: Any = MotorGridFSBucket
            extra: dict[str, Any] = {"io_loop": IOLoop.current()}
        else:
            from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorGridFSBucket

            client_class = AsyncIOMotorClient
            self.bucket_class = AsyncIOMotorGridFSBucket
            extra = {}
        # The launcher's own PyMongo client (test.server pings the server) is closed, but
        # its threads may still be on their way out: not part of the baseline.
        deadline = time.monotonic() + 5
        while any(n.startswith("pymongo") for n in thread_names()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        gc.collect()
        fds_start = open_fds()
        threads_start = thread_names()
        self.result["fds_start"] = len(fds_start)
        self.result["threads_start"] = threads_start
        self.result["rss_start_bytes"] = rss_bytes()
        options: dict[str, Any] = {
            "serverSelectionTimeoutMS": args.server_selection_timeout_ms,
            "maxPoolSize": args.max_pool_size,
        }
        if self.server is not None:
            options.update(self.server.client_options)
        self.client = client_class(
            self.uri, **options, **extra, event_listeners=[self.cursor_watch]
        )
        self.result["client_options"] = {k: str(v) for k, v in options.items()}
        info = await self.client.admin.command("buildInfo")
        self.flavor = "ferretdb" if "ferretdbVersion" in info else "mongodb"
        if args.uri:
            await self.drop_databases()
        workers = [Worker(self, i) for i in range(args.concurrency)]
        random.seed(self.rng_seed)
        self.start = time.monotonic()
        self.last_completion = self.start
        self.cpu_first = self.cpu.read(self.server.pid if self.server else None)
        self.cpu_last = (self.start, self.cpu_first, 0)
        self.print_header()
        reporter = asyncio.ensure_future(self.report())
        restarter = (
            asyncio.ensure_future(self.crash_and_restart()) if args.restart_at is not None else None
        )
        tasks = [asyncio.ensure_future(self.run_worker(w)) for w in workers]
        try:
            await self.wait_workers(tasks)
        finally:
            self.stopping = True
            end = self.elapsed()
            final = self.sample(self.samples.last)
            self.rss_peak = max(self.rss_peak, final["rss_bytes"])
            self.result["final_sample"] = final
            self.result["duration_s"] = end
            self.result["cpu"] = cpu_shares(
                self.cpu_first, self.cpu.read(self.server.pid if self.server else None), end
            )
            print(f"  -- {end:7.1f}s workers stopped", flush=True)
            self.print_sample(final)
            if restarter is not None:
                if not restarter.done():
                    restarter.cancel()
                await asyncio.gather(restarter, return_exceptions=True)
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        await self.check_idle()
        if args.uri:
            await self.drop_databases()
        close_started = time.monotonic()
        await self.client.close()
        self.result["close_s"] = time.monotonic() - close_started
        await self.check_released(fds_start, threads_start)

    async def wait_workers(self, tasks: Sequence[asyncio.Future[None]]) -> None:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, timeout=1.0)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    # A bug in the soak itself: stop the others, then report it.
                    self.stopping = True
                    await asyncio.wait(pending, timeout=30.0)
                    for other in pending:
                        other.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    raise task.exception()  # type: ignore[misc]
            if self.stopping and pending:
                # Stalled (watchdog): give the operations 30 s, then cancel them.
                done, pending = await asyncio.wait(pending, timeout=30.0)
                self.result["hung_workers"] = len(pending)
                self.result["hung_operations"] = sorted(
                    self.current_kind[tasks.index(t)] for t in pending
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return

    async def drop_databases(self) -> None:
        names = await self.client.list_database_names()
        for name in names:
            if name.startswith(DB_PREFIX):
                await self.client.drop_database(name)

    async def check_idle(self) -> None:
        """After the workers stopped: the pools go idle and nothing stays queued."""
        deadline = time.monotonic() + 10
        while True:
            counters = pool_counters(self.client)
            parked, queued = in_flight(self.client)
            binding = self.client._binding
            busy = dict(counters, parked=parked, queued=queued, admitted=binding._active)
            busy = {k: v for k, v in busy.items() if v}
            if not busy or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.result["pool_counters_end"] = counters
        self.result["pool_sizes_end"] = pool_sizes(self.client)
        self.add_check(
            "pools idle after the workload (no checkout, no connection being made, nothing "
            "parked or queued)",
            not busy,
            f"{counters}, parked {parked}, queued {queued}, admitted {binding._active}",
        )

    async def check_released(self, fds_start: set[int], threads_start: list[str]) -> None:
        """After ``close()``: no parked greenlet, fds and threads back to their start."""
        deadline = time.monotonic() + 10
        tolerance = self.args.fd_tolerance
        while True:
            parked = parked_children()
            fds = open_fds()
            threads = thread_names()
            extra_threads = list(collections.Counter(threads) - collections.Counter(threads_start))
            extra_fds = len(fds) - len(fds_start)
            ok = not parked and extra_fds <= tolerance and not extra_threads
            if ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        self.result["fds_end"] = len(fds)
        self.result["threads_end"] = threads
        self.add_check(
            "no child greenlet parked after close()", not parked, f"{len(parked)} parked"
        )
        new = sorted(fds - fds_start)
        described = [f"{fd}->{_fd_target(fd)}" for fd in new[:10]]
        self.add_check(
            f"file descriptors back to the start count after close() (tolerance {tolerance})",
            extra_fds <= tolerance,
            f"{len(fds_start)} before the client, {len(fds)} after close(); new: "
            f"{', '.join(described) or 'none'}",
        )
        self.add_check(
            "no thread left after close()",
            not extra_threads,
            f"extra threads: {extra_threads or 'none'}",
        )

    def add_check(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})

    # ----------------------------------------------------------------- summary

    def summarize(self) -> dict[str, Any]:
        args = self.args
        samples = self.samples.compact()
        final = self.result.get("final_sample")
        summary: dict[str, Any] = {
            "ops": self.done,
            "ok": self.ok,
            "cancel_requested": self.cancel_requested,
            "cancelled": self.cancelled,
            "duration_s": round(self.result.get("duration_s", 0.0), 1),
            "mean_ops_per_s": round(self.done / self.result["duration_s"], 1)
            if self.result.get("duration_s")
            else 0.0,
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
            "errors": {phase: dict(c) for phase, c in self.errors.items()},
            "error_samples": self.error_samples,
            "peaks": dict(self.peaks, rss_bytes=self.rss_peak),
            "warmup_end_s": self.warmup_end,
            "warmup_rss_bytes": self.warmup_rss,
            "restart": self.restart,
            "server_flavor": self.flavor,
            "cpu": self.result.get("cpu"),
        }
        # Figures at the start, middle and end: interval samples outside the outage.
        outage = None
        if self.kill_at is not None:
            end = self.recovered_at or (self.start + self.result.get("duration_s", 0.0))
            outage = (self.kill_at - self.start, end - self.start)
        clean = [
            s
            for i, s in enumerate(samples)
            if outage is None
            or not (
                s["elapsed_s"] >= outage[0]
                and (samples[i - 1]["elapsed_s"] if i else 0.0) <= outage[1]
            )
        ]
        if clean:
            middle = min(clean, key=lambda s: abs(s["progress"] - 0.5))
            points = {"start": clean[0], "middle": middle, "end": clean[-1]}
            summary["points"] = {
                name: {
                    "elapsed_s": s["elapsed_s"],
                    "ops": s["ops"],
                    "ops_per_s": s["ops_per_s"],
                    "rss_bytes": s["rss_bytes"],
                    "fds": s["fds"],
                }
                for name, s in points.items()
            }
        if outage is not None:
            in_outage = [
                s
                for s in self.samples.read_all()
                if outage[0] <= s["elapsed_s"] <= outage[1] + args.interval
            ]
            summary["outage_window_s"] = [round(outage[0], 1), round(outage[1], 1)]
            summary["outage_samples"] = in_outage
        # RSS growth after warm-up: the last reading against the warm-up baseline.
        rss_end = final["rss_bytes"] if final else None
        summary["rss_end_bytes"] = rss_end
        if self.warmup_rss and rss_end:
            growth = rss_end / self.warmup_rss - 1
            after = [s["rss_bytes"] for s in samples if s["elapsed_s"] >= (self.warmup_end or 0)]
            peak_growth = max([*after, rss_end]) / self.warmup_rss - 1
            summary["rss_growth_after_warmup"] = round(growth, 4)
            summary["rss_peak_growth_after_warmup"] = round(peak_growth, 4)
            self.add_check(
                f"RSS growth after warm-up within {args.rss_limit:.0%}",
                growth <= args.rss_limit,
                f"{self.warmup_rss / 1e6:.1f} MB at {self.warmup_end:.0f} s -> "
                f"{rss_end / 1e6:.1f} MB at the end ({growth:+.1%}; peak {peak_growth:+.1%})",
            )
        else:
            self.add_check(
                "RSS growth after warm-up measured",
                False,
                "the run ended before its warm-up did; run longer",
            )
        watch = self.cursor_watch
        summary["cursor_not_found"] = {
            "dropped_by_server": watch.not_found_dropped_by_server,
            "killed_by_client": watch.not_found_killed_by_client,
        }
        tolerated = TOLERATED.get(self.flavor, set())
        outside = collections.Counter[str]()
        for phase in ("before", "after"):
            outside.update(self.errors[phase])
        unexpected = {k: v for k, v in outside.items() if k not in tolerated}
        known = {k: v for k, v in outside.items() if k in tolerated}
        summary["tolerated_errors_outside_outage"] = known
        wrong = sum(c.get("WrongResult", 0) for c in self.errors.values())
        self.add_check(
            "no error outside the outage"
            + (
                f" (tolerated on {self.flavor}: {', '.join(sorted(tolerated))})"
                if tolerated
                else ""
            ),
            not unexpected,
            f"before the kill {dict(self.errors['before']) or 'none'}, after recovery "
            f"{dict(self.errors['after']) or 'none'}",
        )
        self.add_check(
            "no CursorNotFound on a cursor the client had killed itself",
            not watch.not_found_killed_by_client,
            f"{watch.not_found_killed_by_client} killed by the client, "
            f"{watch.not_found_dropped_by_server} dropped by the server",
        )
        self.add_check("no wrong result", not wrong, f"{wrong} wrong results")
        hung = self.result.get("hung_workers", 0)
        self.add_check(
            "every operation ended",
            not hung and "stalled_at_s" not in self.result,
            f"{hung} operations did not end: {self.result.get('hung_operations', [])}"
            if hung or "stalled_at_s" in self.result
            else "yes",
        )
        if args.restart_at is not None:
            self.add_check(
                "the server came back and the client recovered",
                bool(self.restart.get("recovered")),
                f"{self.restart.get('outage_s', float('nan')):.1f} s from the kill to the first "
                "success"
                + (f"; {self.restart['restart_error']}" if "restart_error" in self.restart else ""),
            )
            self.add_check(
                "the write acknowledged before the kill is there after the restart",
                bool(self.restart.get("marker_found")),
                f"written {self.restart.get('marker_written')}, found "
                f"{self.restart.get('marker_found')}",
            )
        summary["checks"] = self.checks
        summary["passed"] = all(c["ok"] for c in self.checks)
        return summary


def _fd_target(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


def print_summary(soak: Soak, summary: dict[str, Any]) -> None:
    mb = 1e6
    print()
    print(
        f"Summary: {summary['ops']:,} operations in {summary['duration_s']:.0f} s "
        f"({summary['mean_ops_per_s']:,.0f} ops/s), {summary['ok']:,} succeeded, "
        f"{summary['cancelled']:,} cancelled (of {summary['cancel_requested']:,} cancel "
        f"requests), {sum(sum(c.values()) for c in soak.errors.values()):,} errors"
    )
    points = summary.get("points", {})
    if points:
        print(f"  {'':8} {'elapsed':>8} {'ops/s':>7} {'RSS MB':>7} {'fds':>4}")
        for name, p in points.items():
            print(
                f"  {name:8} {p['elapsed_s']:7.0f}s {p['ops_per_s']:>7,.0f} "
                f"{p['rss_bytes'] / mb:>7.1f} {p['fds']:>4}"
            )
    if summary.get("warmup_rss_bytes"):
        print(
            f"  RSS: {soak.result['rss_start_bytes'] / mb:.1f} MB before the client, "
            f"{summary['warmup_rss_bytes'] / mb:.1f} MB after warm-up "
            f"({summary['warmup_end_s']:.0f} s), {summary['rss_end_bytes'] / mb:.1f} MB at the "
            "end, peak "
            f"{summary['peaks']['rss_bytes'] / mb:.1f} MB"
        )
    peaks = summary["peaks"]
    print(
        f"  peaks: {peaks['fds']} fds, {peaks['conns_open']} connections open, "
        f"{peaks['conns_in_use']} in use, {peaks['parked']} greenlets parked, "
        f"{peaks['queued']} queued"
    )
    cpu = summary.get("cpu")
    if cpu:
        print(
            f"  CPU (mean number of CPUs busy): the soak {cpu['self']:.2f}, its server "
            f"{cpu['server']:.2f}, other processes {cpu['others']:.2f}"
            + (
                "  <- a busy machine: ops/s is not the driver's alone"
                if cpu["others"] > 0.1
                else ""
            )
        )
    restart = summary["restart"]
    if restart:
        print(
            f"  restart: killed at {restart.get('kill_at_s', 0):.1f} s "
            f"(progress {restart.get('progress', 0):.0%}), restarted at "
            f"{restart.get('restarted_at_s', float('nan')):.1f} s, first success at "
            f"{restart.get('recovered_at_s', float('nan')):.1f} s"
        )
    for phase, counter in summary["errors"].items():
        if counter:
            listed = ", ".join(f"{k} {v:,}" for k, v in sorted(counter.items()))
            print(f"  errors {phase}: {listed}")
    if summary["tolerated_errors_outside_outage"]:
        found = summary["cursor_not_found"]
        print(
            f"  tolerated outside the outage ({summary['server_flavor']}): "
            f"{summary['tolerated_errors_outside_outage']}; getMore CursorNotFound on cursors "
            f"the server dropped {found['dropped_by_server']}, the client killed "
            f"{found['killed_by_client']}"
        )
    for name, text in sorted(summary["error_samples"].items()):
        print(f"    {name}: {text[:200]}")
    print("  by operation (ok / cancelled / error):")
    for kind, counts in summary["by_kind"].items():
        print(
            f"    {kind:16} {counts.get('ok', 0):>9,} {counts.get('cancelled', 0):>7,} "
            f"{counts.get('error', 0):>6,}"
        )
    print()
    for check in summary["checks"]:
        print(f"{'PASS' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Soak Motor: a mixed workload for a long time, optionally with a server "
        "crash (SIGKILL) and restart in the middle; fails on leaks and RSS growth."
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--ops", type=int, default=1_000_000, help="operations (1,000,000)")
    length.add_argument("--seconds", type=float, help="run this long instead of --ops")
    parser.add_argument("--framework", choices=("asyncio", "tornado"), default="asyncio")
    parser.add_argument("--concurrency", type=int, default=50, help="workers (50)")
    parser.add_argument("--uri", help="run against this server (no --restart-at)")
    parser.add_argument(
        "--restart-at",
        type=float,
        metavar="FRACTION",
        help="kill (SIGKILL) and restart the server when this fraction of the run is done",
    )
    parser.add_argument("--outage", type=float, default=5.0, help="seconds down (5)")
    parser.add_argument(
        "--cancel-share", type=float, default=0.05, help="share of operations cancelled (0.05)"
    )
    parser.add_argument("--interval", type=float, default=10.0, help="report interval (10 s)")
    parser.add_argument("--warmup-fraction", type=float, default=0.10)
    parser.add_argument("--warmup-min-seconds", type=float, default=30.0)
    parser.add_argument("--rss-limit", type=float, default=0.10, help="RSS growth limit (0.10)")
    parser.add_argument("--fd-tolerance", type=int, default=2)
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    parser.add_argument("--server-selection-timeout-ms", type=int, default=3000)
    parser.add_argument("--max-pool-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="PATH", help="write every sample and figure as JSON")
    args = parser.parse_args(argv)
    if args.restart_at is not None:
        if args.uri:
            parser.error("--restart-at needs a server launched by the soak (no --uri)")
        if not 0 < args.restart_at < 1:
            parser.error("--restart-at is a fraction of the run, between 0 and 1")
    return args


def run(args: argparse.Namespace, server: test_server.Server | None) -> Soak:
    soak = Soak(args, server)
    if args.framework == "tornado":
        from tornado.ioloop import IOLoop

        io_loop = IOLoop(make_current=False)
        try:
            io_loop.run_sync(soak.run)
        finally:
            io_loop.close(all_fds=False)
    else:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(soak.run())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    return soak


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment()
    server: test_server.Server | None = None
    if not args.uri:
        try:
            server = test_server.launch("plain")
        except (test_server.ServerUnavailable, test_server.ServerStartError) as exc:
            print(f"soak: no server: {exc}", file=sys.stderr)
            return 2
    description = server.describe() if server else args.uri
    length = f"{args.seconds:g} s" if args.seconds else f"{args.ops:,} operations"
    print(
        f"Soak: {args.framework}, {args.concurrency} workers, {length}, "
        f"{args.cancel_share:.0%} cancelled"
        + (
            f", server killed at {args.restart_at:.0%} and down {args.outage:g} s"
            if args.restart_at is not None
            else ""
        )
    )
    print(f"  server: {description}")
    print(
        f"  {env['cpu_model']}, {env['cpus']} CPUs; Python {env['python']}, PyMongo "
        f"{env['pymongo']}, greenlet {env['greenlet']}, Tornado {env['tornado']}",
        flush=True,
    )
    soak: Soak | None = None
    try:
        soak = run(args, server)
    finally:
        if server is not None:
            if soak is not None:
                soak.server_thread.submit(test_server.stop, server).result()
            else:
                test_server.stop(server)
    soak.server_thread.shutdown()
    summary = soak.summarize()
    print_summary(soak, summary)
    env["load_average_end"] = os.getloadavg()
    env["motor_tree_digest_end"] = motor_tree_digest()
    if env["motor_tree_digest_end"] != env["motor_tree_digest_start"]:
        print(
            "note: files under motor/ changed during the run; the soak ran the code it "
            f"imported at its start (digest {env['motor_tree_digest_start']})"
        )
    if args.json:
        report = {
            "environment": env,
            "server": description,
            "config": vars(args),
            "weights": WEIGHTS,
            "summary": summary,
            "result": soak.result,
            "samples": soak.samples.read_all(),
        }
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    soak.samples.close()
    print("soak: PASSED" if summary["passed"] else "soak: FAILED", flush=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
