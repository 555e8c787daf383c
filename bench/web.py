"""End-to-end web benchmark: one Tornado app on four MongoDB drivers, loaded with ``wrk``.

What a web application feels: ``bench/web_app.py`` (a minimal Tornado application with
``GET /find_one``, ``GET /list`` and ``POST /write``) runs as a process of its own per
peer, and Debian's ``wrk`` loads it over 50 keep-alive connections.  The peers:

====================  ================================================================
``this Motor``        this checkout's ``motor.motor_tornado.MotorClient`` (greenlets),
                      in the project's virtualenv
``Motor 3.7.1``       Motor 3.7.1's ``MotorClient`` (a thread pool), from the virtualenv
                      ``bench/compare.py`` creates (``~/.cache/motor-bench/``); run with
                      that virtualenv's Python, nothing of this checkout on ``sys.path``
``AsyncMongoClient``  PyMongo's native asyncio client, in the project's virtualenv
``mongojet``          mongojet 0.5.8 (an asyncio client with a Rust core), from the
                      virtualenv ``bench/compare.py`` creates (``~/.cache/motor-bench/``
                      ``venv-mongojet``, with this PyMongo and this Tornado)
====================  ================================================================

Every client has ``maxPoolSize=100`` (``--pool-size``; in the URI; mongojet's Rust driver
would default to 10).  Each handler runs against two servers: the canned-reply Go server
(``bench/cannedserver``, started with ``-docs 100 -docsize 100`` so that ``/list`` gets
100 documents; it ignores filters, so ``/find_one`` always gets the same document, and
answers ``insert`` at once: every handler is served) and FerretDB (``--ferretdb-uri``,
``MOTOR_BENCH_FERRETDB_URI``, or launched with ``test.server``; database
``motor_bench_web``, seeded with 100 documents of 100 bytes for ``/find_one``, 100 for
``/list``; the ``insert`` collection is emptied before each repetition; dropped at the end).

Method.  Every repetition starts a fresh app process per peer (all four, then waits for
each one's ``READY`` line), and runs every handler on every peer, the peer order rotated
each repetition, so drift of the machine is shared.  A run is a warm-up ``wrk`` (not
counted), then the measured one::

    wrk -t2 -c50 -d10s --latency --timeout 5s -s SCRIPT http://127.0.0.1:PORT/find_one

``SCRIPT`` is a Lua file written by this script: it makes ``/write`` a POST with a small
JSON body and its ``done()`` prints the exact counts and latency percentiles (µs) as one
JSON line; the human-readable output (Requests/sec, the ``--latency`` distribution) is
parsed too and kept in the JSON report.  Client CPU per request is the app process's
user + system time (``/proc/PID/stat``, all threads, so Motor 3.7.1's thread pool and
mongojet's Rust runtime count) over the measured run, divided by the requests completed.
The tables show per peer the median over repetitions of requests/s (and its min-max),
p50, p99 and CPU µs/request, and the ratios of this driver to each peer.

Default durations: ``/find_one``, which the targets are about, 10 s after a 2 s warm-up;
``/list`` and ``/write`` 4 s after 1 s, 3 repetitions: about 9-10 minutes for both servers
(12 s for all three handlers would be over 14 minutes).  ``--quick``: one repetition of
3 s / 2 s runs after 1 s warm-ups (about 2 minutes).

Only two cores.  ``wrk``, the server and the app compete for the machine's two CPUs;
``wrk`` and the canned server need far less CPU per request than the app, FerretDB far
more (it is the bottleneck of ``/list`` and ``/write`` and close to it for
``/find_one``).  So the absolute figures are low and move with whatever else runs;
compare the ratios between peers, measured in the same minutes.  Each table's footer
gives wrk's and the server's CPU per request and how much CPU other processes used during
the runs (``/proc/stat`` minus the app, wrk and, when this script started it, the
server).

``--pin`` confines the app to the first CPU and ``wrk``, the server (when this script
started it) and this script to the second, so the app never waits behind ``wrk`` but never
gets a second core either.  Not pinning is the default: on a core shared with other
processes' runnable threads the kernel gives each thread a fair share, so an app with more
threads (Motor 3.7.1's pool, mongojet's Rust runtime) gets more of the core than a
single-threaded one (this Motor, AsyncMongoClient), and a pinned run on a machine that is
not idle measures that rather than the driver.  Unpinned, the same effect remains, weaker,
on a loaded machine: an app whose one thread waits for a CPU stalls all its requests,
which shows in p99.  Run it on an otherwise idle machine.

Targets (``/find_one``, per server): this driver's requests/s at least 1.5× Motor 3.7.1's,
1.2× AsyncMongoClient's and 1.1× mongojet's, and its p99 no worse than the best of theirs.

Usage (from the repository root, with the project's virtualenv; installs ``wrk`` with
``apt-get`` if it is missing, which needs root)::

    .venv/bin/python bench/web.py                       # both servers, about 10 minutes
    .venv/bin/python bench/web.py --quick               # about 2 minutes
    .venv/bin/python bench/web.py --json web.json --ferretdb-uri mongodb://127.0.0.1:27017
    .venv/bin/python bench/web.py --profile --profile-peers this,pymongo_async

``--profile`` runs each chosen peer's app under ``cProfile`` for one ``/find_one`` run on
the canned server and prints the top functions instead of benchmarking.

``--timings`` also tells where a request waits: each app times every request inside the
process (the handler's whole run, from Tornado's ``prepare`` to ``on_finish``, and the
driver call it awaited) and hands over their percentiles at ``GET /_timings``, which this
script reads before and after each measured run.  A table per handler and server then
puts them beside ``wrk``'s latencies.  The two ``perf_counter`` readings and list appends per
request cost every peer alike.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
APP = BENCH_DIR / "web_app.py"
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import pymongo  # noqa: E402
from compare import (  # noqa: E402
    Check,
    _cpu_model,
    _median,
    _progress,
    _rotated,
    _select,
    ensure_mongojet_venv,
    ensure_motor371_venv,
    format_checks,
    machine_busy_seconds,
)
from servers import (  # noqa: E402
    FERRETDB_URI_ENV,
    BenchSetupError,
    CannedServer,
    build_canned_server,
    git,
    go_version,
)
from web_app import KEY_FORMAT  # noqa: E402

#: The database the apps use on FerretDB; dropped at the end.
WEB_DB = "motor_bench_web"
#: How many documents ``/find_one`` picks from (seeded on FerretDB): few, because FerretDB
#: 1.24 with SQLite has no index on ``_id`` and scans the collection for each lookup.
IDS = 100
DOC_SIZE = 100
LIST_DOCS = 100
#: ``maxPoolSize`` of every client (``--pool-size``): the driver's default.
POOL_SIZE = 100
#: The body ``POST /write`` sends.
WRITE_BODY = '{"name": "web", "n": 1, "tags": ["a", "b"]}'
#: A wrk request slower than this counts as a timeout error.
WRK_TIMEOUT = "5s"
#: Seconds an app may take to print its READY line.
READY_TIMEOUT = 60.0
#: Targets: this driver's /find_one requests/s over each peer's, at least.
RPS_TARGETS = {"motor371": 1.5, "pymongo_async": 1.2, "mongojet": 1.1}


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Peer:
    """A driver under test and the virtualenv its app runs in."""

    key: str
    label: str
    driver: str  # web_app.DRIVERS
    env: str  # "dev" (the project's virtualenv), "motor371" or "mongojet"
    #: Import motor from this checkout (web_app.py --repo).
    this_checkout: bool = False


PEERS = (
    Peer("this", "this Motor", "motor", "dev", this_checkout=True),
    Peer("motor371", "Motor 3.7.1", "motor", "motor371"),
    Peer("pymongo_async", "AsyncMongoClient", "pymongo", "dev"),
    Peer("mongojet", "mongojet", "mongojet", "mongojet"),
)
PEER_BY_KEY = {p.key: p for p in PEERS}


@dataclass(frozen=True)
class Handler:
    """One HTTP endpoint of the app."""

    key: str
    label: str
    path: str
    method: str = "GET"
    #: Run unless ``--handlers`` says otherwise.
    default: bool = True


HANDLERS = (
    Handler("find_one", "GET /find_one", "/find_one"),
    Handler("list", "GET /list", "/list"),
    Handler("write", "POST /write", "/write", "POST"),
    # No database: Tornado's own cost per request, for reading the others (--handlers).
    Handler("static", "GET /static", "/static", default=False),
)
HANDLER_BY_KEY = {h.key: h for h in HANDLERS}


@dataclass
class Plan:
    """Repetitions, durations (whole seconds: wrk's ``-d``) and load."""

    name: str
    reps: int
    duration: dict[str, int]  # handler key -> measured seconds
    warmup: dict[str, int]  # handler key -> warm-up seconds
    connections: int = 50
    threads: int = 2

    def seconds(self, targets: int, peers: int, handlers: Sequence[Handler]) -> float:
        """The planned time of the runs alone (wrk's time; not starts, seeding)."""
        per_rep = sum(self.duration[h.key] + self.warmup[h.key] for h in handlers)
        return float(targets * self.reps * peers * per_rep)


def default_plan(quick: bool) -> Plan:
    """The default plan, or the ``--quick`` one."""
    if quick:
        return Plan(
            "quick",
            reps=1,
            duration={"find_one": 3, "list": 2, "write": 2, "static": 2},
            warmup={"find_one": 1, "list": 1, "write": 1, "static": 1},
        )
    return Plan(
        "full",
        reps=3,
        duration={"find_one": 10, "list": 4, "write": 4, "static": 4},
        warmup={"find_one": 2, "list": 1, "write": 1, "static": 1},
    )


# --------------------------------------------------------------------------- processes

_CHILDREN: list[subprocess.Popen[Any]] = []


def _preexec(cpus: frozenset[int] | None) -> Callable[[], None]:
    """A ``preexec_fn``: die with this process (Linux), and run on ``cpus`` if given."""

    def run() -> None:
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if cpus:
            os.sched_setaffinity(0, cpus)

    return run


def _spawn(
    args: Sequence[str], cpus: frozenset[int] | None, **kwargs: Any
) -> subprocess.Popen[Any]:
    proc: subprocess.Popen[Any] = subprocess.Popen(args, preexec_fn=_preexec(cpus), **kwargs)
    _CHILDREN.append(proc)
    return proc


def _reap(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; forget the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    with contextlib.suppress(ValueError):
        _CHILDREN.remove(proc)


def kill_children() -> None:
    """End every process this script started that is still running (apps, wrk)."""
    for proc in list(_CHILDREN):
        _reap(proc, timeout=5.0)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, all its threads (``/proc/PID/stat``)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (``VmRSS``)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1000
    return None


def pin_process(pid: int, cpus: frozenset[int]) -> None:
    """Confine every thread of a running process to ``cpus``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(tid), cpus)


# --------------------------------------------------------------------------- environments


def ensure_wrk() -> str:
    """The ``wrk`` binary; installed with ``apt-get`` (Debian's package) if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchSetupError("wrk is not installed and installing it needs root (apt-get)")
    _progress("installing wrk: apt-get update && apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        result = subprocess.run(step, capture_output=True, text=True, timeout=600, env=env)
        if result.returncode != 0:
            raise BenchSetupError(f"{' '.join(step)} failed:\n{result.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchSetupError("apt-get installed wrk but it is not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    """The first line of ``wrk -v``."""
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=30)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


# --------------------------------------------------------------------------- servers


def _nothing() -> None:
    """Nothing to stop."""


@dataclass
class Target:
    """A MongoDB server the apps talk to."""

    name: str  # "canned" or "ferretdb"
    description: str
    uri: str
    db: str
    #: The server's process when this script started it (for its CPU time), else None.
    pid: int | None = None
    note: str = ""
    reset: Callable[[], None] = field(default=_nothing, repr=False)

    @property
    def app_uri(self) -> str:
        """``uri`` with the pool size every client gets."""
        return with_options(self.uri, maxPoolSize=str(POOL_SIZE))


def with_options(uri: str, **options: str) -> str:
    """Add query options to a MongoDB URI (``/?`` is added when it has no path)."""
    parts = urllib.parse.urlsplit(uri)
    query = urllib.parse.parse_qsl(parts.query)
    query += [(k, v) for k, v in options.items() if k not in dict(query)]
    path = parts.path or "/"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), parts.fragment)
    )


@contextlib.contextmanager
def canned_target(gomaxprocs: int, cpus: frozenset[int] | None) -> Iterator[Target]:
    """The canned Go server for the ``with`` block: 100 documents of 100 bytes per find."""
    binary = build_canned_server()
    args = ("-docs", str(LIST_DOCS), "-docsize", str(DOC_SIZE))
    with CannedServer(binary, gomaxprocs=gomaxprocs, args=args, cpus=cpus) as server:
        where = f"pinned to CPU {','.join(map(str, sorted(cpus)))}" if cpus else "not pinned"
        yield Target(
            name="canned",
            description=f"Go canned server ({binary.name}, GOMAXPROCS={gomaxprocs}, {where}, "
            f"{' '.join(args)}; collection small: 1 document, list: {LIST_DOCS})",
            uri=server.uri,
            db="bench",
            pid=server.pid,
        )


def _doc(i: int) -> dict[str, Any]:
    """A document of ``DOC_SIZE`` bytes of BSON shaped like the canned server's."""
    import bson

    doc: dict[str, Any] = {
        "_id": KEY_FORMAT.format(i),
        "name": "web",
        "n": bson.Int64(i),
        "x": i / 2,
        "pad": "",
    }
    doc["pad"] = "x" * (DOC_SIZE - len(bson.encode(doc)))
    return doc


def _sync_client(uri: str) -> pymongo.MongoClient[dict[str, Any]]:
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000)


def seed_ferretdb(uri: str) -> str:
    """Create the app's collections on a real server; return its version."""
    with contextlib.closing(_sync_client(uri)) as client:
        client.drop_database(WEB_DB)
        db = client[WEB_DB]
        db.small.insert_many([_doc(i) for i in range(IDS)])
        db.list.insert_many([_doc(i) for i in range(LIST_DOCS)])
        db.create_collection("insert")
        return str(client.server_info().get("version"))


def reset_inserts(uri: str) -> None:
    """Empty the collection ``POST /write`` fills (before each repetition)."""
    with contextlib.closing(_sync_client(uri)) as client:
        client[WEB_DB].drop_collection("insert")
        client[WEB_DB].create_collection("insert")


@contextlib.contextmanager
def ferretdb_target(uri: str | None, cpus: frozenset[int] | None) -> Iterator[Target | None]:
    """Find or launch FerretDB, seed it for the ``with`` block, drop the data after.

    ``--ferretdb-uri``, else ``MOTOR_BENCH_FERRETDB_URI``, else a server launched with
    the test suite's ``test.server.launch()`` (whose process is pinned to ``cpus``, and
    whose CPU time is measured).
    """
    uri = uri or os.environ.get(FERRETDB_URI_ENV, "").strip() or None
    stop: Callable[[], None] = _nothing
    pid = None
    if uri:
        description = f"FerretDB at {uri} (given; not pinned, its CPU not measured)"
    else:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))  # the repository's test package, not Python's
        try:
            from test import server as test_server
        except ImportError as exc:
            _progress(f"FerretDB skipped: no --ferretdb-uri and no test.server ({exc})")
            yield None
            return
        _progress("starting FerretDB with test.server.launch() (may build it once)")
        try:
            launched = test_server.launch(
                "plain", progress=lambda m: _progress(f"  [test.server] {m}")
            )
        except Exception as exc:
            _progress(f"FerretDB skipped: test.server.launch() failed: {exc}")
            yield None
            return
        uri, pid = launched.uri, launched.pid
        description = launched.describe()
        stop = functools.partial(test_server.stop, launched)
        if cpus and pid:
            pin_process(pid, cpus)
            description += f", pinned to CPU {','.join(map(str, sorted(cpus)))}"
    try:
        _progress(f"seeding FerretDB ({description})")
        version = seed_ferretdb(uri)
        target = Target(
            name="ferretdb",
            description=f"{description}; reports version {version}; collection small: "
            f"{IDS} documents of {DOC_SIZE} bytes, list: {LIST_DOCS}",
            uri=uri,
            db=WEB_DB,
            pid=pid,
            reset=functools.partial(reset_inserts, uri),
        )
        try:
            yield target
        finally:
            with contextlib.suppress(Exception):
                with contextlib.closing(_sync_client(uri)) as client:
                    client.drop_database(WEB_DB)
    finally:
        stop()


# --------------------------------------------------------------------------- the apps


class AppError(RuntimeError):
    """An app process failed to start or died; the message has its stderr."""


class App:
    """One ``web_app.py`` process for a peer and a server."""

    def __init__(
        self,
        peer: Peer,
        python: str,
        target: Target,
        cpus: frozenset[int] | None,
        profile: str | None = None,
        timings: bool = False,
    ) -> None:
        self.peer = peer
        self.python = python
        self.target = target
        self.cpus = cpus
        self.profile = profile
        self.timings = timings
        self.info: dict[str, Any] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] = tempfile.TemporaryFile()

    @property
    def pid(self) -> int:
        """The app's process id."""
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        """The app's base URL."""
        return f"http://127.0.0.1:{self.info['port']}"

    def start(self) -> None:
        """Start the process (returns at once; see :meth:`wait_ready`)."""
        cmd = [
            self.python,
            str(APP),
            "--driver",
            self.peer.driver,
            "--uri",
            self.target.app_uri,
            "--db",
            self.target.db,
            "--ids",
            str(IDS),
        ]
        if self.peer.this_checkout:
            cmd += ["--repo", str(REPO)]
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.timings:
            cmd.append("--timings")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.proc = _spawn(
            cmd,
            self.cpus,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd="/",  # nothing of this checkout on sys.path unless --repo
            env=env,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Wait for the ``READY`` line; check that the right driver was imported."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
            line = self.proc.stdout.readline() if ready else b""
            if line.startswith(b"READY "):
                self.info = json.loads(line[6:])
                break
            if not line or left <= 0:
                state = "timed out" if left <= 0 else f"exited ({self.proc.poll()})"
                raise AppError(f"{self.peer.label} app {state}{self.tail()}")
        path = str(self.info.get("path"))
        in_repo = path.startswith(str(REPO / "motor"))
        if self.peer.this_checkout and not in_repo:
            raise AppError(f"{self.peer.label}: imported motor from {path}, not this checkout")
        if self.peer.env == "motor371" and (in_repo or self.info.get("version") != "3.7.1"):
            raise AppError(f"{self.peer.label}: imported {self.info.get('version')} from {path}")
        return self.info

    def take_timings(self) -> dict[str, Any]:
        """The app's in-app timings since the last call (``GET /_timings``, app started
        with ``timings``): percentiles in µs of its handlers' runs and driver calls."""
        try:
            with urllib.request.urlopen(self.url + "/_timings", timeout=10) as response:
                timings: dict[str, Any] = json.loads(response.read())
        except OSError as exc:
            raise AppError(f"{self.peer.label}: GET /_timings failed: {exc}{self.tail()}") from exc
        return timings

    def tail(self, lines: int = 30) -> str:
        """The end of the app's stderr."""
        self._stderr.seek(0)
        text = self._stderr.read().decode(errors="replace").splitlines()[-lines:]
        return ("\n  stderr:\n  " + "\n  ".join(text)) if text else ""

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM (the app closes its client and, with ``--profile``, dumps stats)."""
        if self.proc is not None:
            _reap(self.proc)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        self._stderr.close()


# --------------------------------------------------------------------------- wrk


_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WEBBENCH {\"requests\": %d, \"duration_us\": %d, \"bytes\": %d, " ..
    "\"errors\": {\"connect\": %d, \"read\": %d, \"write\": %d, \"status\": %d, " ..
    "\"timeout\": %d}, \"latency_us\": {\"mean\": %.1f, \"stdev\": %.1f, \"max\": %d, " ..
    "\"p50\": %d, \"p75\": %d, \"p90\": %d, \"p99\": %d, \"p99.9\": %d}}\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def write_lua_scripts(directory: Path) -> dict[str, Path]:
    """One wrk script per handler: the method and body, and a ``done()`` printing JSON."""
    scripts = {}
    for handler in HANDLERS:
        lines = ["-- written by bench/web.py", f'wrk.method = "{handler.method}"']
        if handler.method == "POST":
            lines += [
                f"wrk.body = '{WRITE_BODY}'",
                'wrk.headers["Content-Type"] = "application/json"',
            ]
        path = directory / f"{handler.key}.lua"
        path.write_text("\n".join(lines) + "\n" + _LUA_DONE, encoding="utf-8")
        scripts[handler.key] = path
    return scripts


_UNIT_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk(text: str) -> dict[str, Any]:
    """Numbers from wrk's output: the ``done()`` JSON line and the human-readable text."""
    out: dict[str, Any] = {}
    match = re.search(r"^WEBBENCH (\{.*\})\s*$", text, re.M)
    if match:
        out["done"] = json.loads(match.group(1))
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if match:
        out["text_rps"] = float(match.group(1))
    latency = {
        f"p{pct}": float(value) * _UNIT_US[unit]
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    }
    if latency:
        out["text_latency_us"] = latency
    match = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if match:
        out["text_requests"] = int(match.group(1))
        out["text_duration_s"] = float(match.group(2)) * _UNIT_US[match.group(3)] / 1e6
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["text_non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if match:
        out["text_socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, match.groups()), strict=True)
        )
    return out


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    seconds: int,
    plan: Plan,
    cpus: frozenset[int] | None,
) -> dict[str, Any]:
    """Run wrk once; its numbers, its output and its own CPU time (``wait4``)."""
    cmd = [
        wrk,
        f"-t{plan.threads}",
        f"-c{plan.connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(script),
        url,
    ]
    proc = _spawn(
        cmd, cpus, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + seconds + 60
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchSetupError(f"wrk did not finish: {' '.join(cmd)}")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 65536) if ready else b""
            if not chunk:
                break
            chunks.append(chunk)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        proc.stdout.close()
        _reap(proc)
    text = b"".join(chunks).decode(errors="replace")
    if proc.returncode != 0:
        raise BenchSetupError(f"wrk exited with {proc.returncode}: {text[-2000:]}")
    parsed = parse_wrk(text)
    done = parsed.get("done")
    if done is not None:
        requests = int(done["requests"])
        duration_s = done["duration_us"] / 1e6
        latency = {k: float(v) for k, v in done["latency_us"].items()}
        errors = dict(done["errors"])
    elif "text_requests" in parsed:  # no done() line: fall back on the text
        requests = parsed["text_requests"]
        duration_s = parsed["text_duration_s"]
        latency = parsed.get("text_latency_us", {})
        errors = {"status": parsed["text_non_2xx"], **parsed.get("text_socket_errors", {})}
    else:
        raise BenchSetupError(f"cannot parse wrk's output:\n{text[-2000:]}")
    if requests == 0:
        latency = {}  # wrk prints zeros: no request completed
    return {
        "command": " ".join(cmd),
        "requests": requests,
        "duration_s": duration_s,
        "rps": requests / duration_s if duration_s else 0.0,
        "latency_us": latency,
        "errors": errors,
        "error_count": sum(errors.values()),
        "wrk_cpu_s": usage.ru_utime + usage.ru_stime,
        "parsed": parsed,
        "output": text,
    }


# --------------------------------------------------------------------------- measuring


@dataclass
class Cpus:
    """Where each process runs: the app's CPUs and the others' (wrk, server, this)."""

    app: frozenset[int] | None = None
    rest: frozenset[int] | None = None

    def describe(self) -> str:
        """One line for the report."""
        if self.app is None or self.rest is None:
            return "not pinned"
        return (
            f"app on CPU {','.join(map(str, sorted(self.app)))}; wrk, the server and this "
            f"script on CPU {','.join(map(str, sorted(self.rest)))}"
        )


def choose_cpus(pin: bool) -> Cpus:
    """``--pin``: the first CPU for the app, the second for everything else."""
    if not pin:
        return Cpus()
    mine = sorted(os.sched_getaffinity(0))
    if len(mine) < 2:
        raise SystemExit("--pin needs at least two CPUs")
    return Cpus(frozenset(mine[:1]), frozenset(mine[1:2]))


def measure_run(
    app: App,
    handler: Handler,
    seconds: int,
    plan: Plan,
    wrk: str,
    script: Path,
    target: Target,
    cpus: Cpus,
) -> dict[str, Any]:
    """One measured wrk run against ``app``, with the CPU time of everything involved."""
    app_cpu = process_cpu_seconds(app.pid)
    server_cpu = process_cpu_seconds(target.pid) if target.pid else None
    busy = machine_busy_seconds()
    started = time.monotonic()
    run = run_wrk(wrk, app.url + handler.path, script, seconds, plan, cpus.rest)
    wall = time.monotonic() - started
    app_cpu_end = process_cpu_seconds(app.pid)
    server_cpu_end = process_cpu_seconds(target.pid) if target.pid else None
    busy_end = machine_busy_seconds()
    if app_cpu is None or app_cpu_end is None or not app.alive():
        raise AppError(f"{app.peer.label} app died during the run{app.tail()}")
    run["wall_s"] = wall
    run["app_cpu_s"] = app_cpu_end - app_cpu
    requests = run["requests"]

    def per_request(seconds: float) -> float | None:
        return seconds / requests * 1e6 if requests else None

    run["cpu_us_per_request"] = per_request(run["app_cpu_s"])
    run["wrk_cpu_us_per_request"] = per_request(run["wrk_cpu_s"])
    run["app_rss_mb"] = process_rss_mb(app.pid)
    accounted = run["app_cpu_s"] + run["wrk_cpu_s"]
    if server_cpu is not None and server_cpu_end is not None:
        run["server_cpu_s"] = server_cpu_end - server_cpu
        run["server_cpu_us_per_request"] = per_request(run["server_cpu_s"])
        accounted += run["server_cpu_s"]
    if busy is not None and busy_end is not None:
        run["machine_busy_s"] = busy_end - busy
        # Everything else: other processes on the machine (and the server, if not ours).
        run["others_cpu_share"] = max(0.0, run["machine_busy_s"] - accounted) / wall
    run["loadavg"] = list(os.getloadavg())
    return run


class Session:
    """Every repetition of every handler on every peer against one server."""

    def __init__(
        self,
        target: Target,
        plan: Plan,
        peers: Sequence[Peer],
        handlers: Sequence[Handler],
        pythons: dict[str, str],
        wrk: str,
        scripts: dict[str, Path],
        cpus: Cpus,
        timings: bool = False,
    ) -> None:
        self.target = target
        self.timings = timings
        self.plan = plan
        self.peers = list(peers)
        self.handlers = list(handlers)
        self.pythons = pythons
        self.wrk = wrk
        self.scripts = scripts
        self.cpus = cpus
        #: handler -> peer -> measured runs
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            h.key: {p.key: [] for p in peers} for h in handlers
        }
        self.warmups: list[dict[str, Any]] = []
        self.apps: list[dict[str, Any]] = []
        self.failures: list[str] = []

    def measure(self) -> None:
        """All repetitions; the peer order rotates each one."""
        for rep in range(self.plan.reps):
            self.target.reset()
            order = _rotated(self.peers, rep)
            apps = self._start_apps(order, rep)
            try:
                for handler in self.handlers:
                    for peer in order:
                        app = apps.get(peer.key)
                        if app is not None:
                            self._run(app, handler, rep)
            finally:
                for app in apps.values():
                    app.stop()

    def _start_apps(self, order: Sequence[Peer], rep: int) -> dict[str, App]:
        apps = {
            p.key: App(p, self.pythons[p.env], self.target, self.cpus.app, timings=self.timings)
            for p in order
        }
        for app in apps.values():
            app.start()
        ready: dict[str, App] = {}
        for key, app in apps.items():
            try:
                info = app.wait_ready()
            except AppError as exc:
                self._fail(f"rep {rep + 1}: {exc}")
                app.stop()
                continue
            self.apps.append({"rep": rep, "peer": key, **info})
            ready[key] = app
        return ready

    def _fail(self, message: str) -> None:
        self.failures.append(f"{self.target.name} {message}")
        _progress(f"  FAILED: {message}")

    def _run(self, app: App, handler: Handler, rep: int) -> None:
        plan, script = self.plan, self.scripts[handler.key]
        try:
            if plan.warmup[handler.key] > 0:
                warm = run_wrk(
                    self.wrk,
                    app.url + handler.path,
                    script,
                    plan.warmup[handler.key],
                    plan,
                    self.cpus.rest,
                )
                warm.pop("output", None)
                self.warmups.append(
                    {"rep": rep, "handler": handler.key, "peer": app.peer.key, **warm}
                )
            if self.timings:
                app.take_timings()  # (the warm-up's: dropped)
            run = measure_run(
                app,
                handler,
                plan.duration[handler.key],
                plan,
                self.wrk,
                script,
                self.target,
                self.cpus,
            )
            if self.timings:
                run["in_app"] = app.take_timings()
        except (AppError, BenchSetupError) as exc:
            self._fail(f"rep {rep + 1} {handler.key} {app.peer.label}: {exc}")
            return
        run["rep"] = rep
        self.runs[handler.key][app.peer.key].append(run)
        lat = run["latency_us"]
        errors = f"  {run['error_count']} ERRORS" if run["error_count"] else ""
        p50, p99 = lat.get("p50"), lat.get("p99")
        _progress(
            f"  [{self.target.name} rep {rep + 1}/{plan.reps}] {handler.label:<14} "
            f"{app.peer.label:<17} {run['rps']:>8,.0f} req/s  "
            f"p50 {_fmt(p50 and p50 / 1e3, 2):>6} ms  p99 {_fmt(p99 and p99 / 1e3, 2):>6} ms  "
            f"CPU {_fmt(run['cpu_us_per_request']):>6} µs/req  "
            f"others {_fmt(run.get('others_cpu_share'), 2)} CPU{errors}"
        )
        in_app = run.get("in_app")
        if in_app:
            handler_t, driver_t = in_app["handler"], in_app["driver"]
            _progress(
                f"      in the app: handler p50 {_fmt(_ms(handler_t.get('p50')), 2)} "
                f"p99 {_fmt(_ms(handler_t.get('p99')), 2)} ms, driver call p50 "
                f"{_fmt(_ms(driver_t.get('p50')), 2)} p99 {_fmt(_ms(driver_t.get('p99')), 2)} ms"
            )


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1e3


# --------------------------------------------------------------------------- summaries


def summarize(session: Session) -> dict[str, dict[str, dict[str, Any]]]:
    """Per handler and peer: medians over repetitions (and the spread of requests/s)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for handler in session.handlers:
        out[handler.key] = {}
        for peer in session.peers:
            runs = session.runs[handler.key][peer.key]
            rps = [r["rps"] for r in runs]

            def values(key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
                return [r[key] for r in runs if r.get(key) is not None]

            def latency_ms(pct: str, runs: list[dict[str, Any]] = runs) -> list[float]:
                return [r["latency_us"][pct] / 1e3 for r in runs if pct in r["latency_us"]]

            def in_app_ms(what: str, pct: str, runs: list[dict[str, Any]] = runs) -> list[float]:
                return [
                    r["in_app"][what][pct] / 1e3
                    for r in runs
                    if pct in r.get("in_app", {}).get(what, {})
                ]

            out[handler.key][peer.key] = {
                "reps": len(runs),
                "rps": _median(rps),
                "rps_min": min(rps) if rps else None,
                "rps_max": max(rps) if rps else None,
                # A run that completed no request has no latencies and no CPU per request.
                "p50_ms": _median(latency_ms("p50")),
                "p99_ms": _median(latency_ms("p99")),
                "cpu_us_per_request": _median(values("cpu_us_per_request")),
                "wrk_cpu_us_per_request": _median(values("wrk_cpu_us_per_request")),
                "server_cpu_us_per_request": _median(values("server_cpu_us_per_request")),
                "others_cpu_share": _median(values("others_cpu_share")),
                "app_rss_mb": _median(values("app_rss_mb")),
                "errors": sum(r["error_count"] for r in runs),
                "requests": sum(r["requests"] for r in runs),
            }
            if any("in_app" in r for r in runs):
                out[handler.key][peer.key]["in_app_ms"] = {
                    f"{what}_{pct}": _median(in_app_ms(what, pct))
                    for what in ("handler", "driver")
                    for pct in ("p50", "p99")
                }
    return out


Summary = dict[str, dict[str, dict[str, Any]]]


def _fmt(value: float | None, digits: int = 1, comma: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if comma else f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}×"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(
    target: Target, handler: Handler, summary: Summary, peers: Sequence[Peer], plan: Plan
) -> str:
    """One handler × server: a row per peer, with this driver's ratios to it."""
    entries = summary[handler.key]
    this = entries.get("this")
    title = (
        f"{target.name} · {handler.label} · wrk -t{plan.threads} -c{plan.connections} "
        f"-d{plan.duration[handler.key]}s (after {plan.warmup[handler.key]} s warm-up), "
        f"median of {plan.reps}, maxPoolSize={POOL_SIZE}"
    )
    header = [
        "peer",
        "req/s",
        "min-max",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "this÷ req/s",
        "this÷ p99",
        "this÷ CPU",
        "errors",
    ]
    rows = []
    for peer in peers:
        e = entries[peer.key]
        spread = (
            f"{_fmt(e['rps_min'], 0, True)}-{_fmt(e['rps_max'], 0, True)}" if e["reps"] else "-"
        )
        is_this = peer.key == "this" or this is None
        rows.append(
            [
                peer.label,
                _fmt(e["rps"], 0, True),
                spread,
                _fmt(e["p50_ms"], 2),
                _fmt(e["p99_ms"], 2),
                _fmt(e["cpu_us_per_request"], 1),
                "" if is_this else _ratio(this["rps"] if this else None, e["rps"]),
                "" if is_this else _ratio(this["p99_ms"] if this else None, e["p99_ms"]),
                ""
                if is_this
                else _ratio(this["cpu_us_per_request"] if this else None, e["cpu_us_per_request"]),
                str(e["errors"]),
            ]
        )
    wrk_cpu = _median(
        [e["wrk_cpu_us_per_request"] for e in entries.values() if e["wrk_cpu_us_per_request"]]
    )
    server_cpu = _median(
        [e["server_cpu_us_per_request"] for e in entries.values() if e["server_cpu_us_per_request"]]
    )
    others = _median(
        [e["others_cpu_share"] for e in entries.values() if e["others_cpu_share"] is not None]
    )
    foot = f"per request (median over peers): wrk {_fmt(wrk_cpu)} µs CPU"
    if server_cpu is not None:
        foot += f", server {_fmt(server_cpu)} µs CPU"
    foot += f"; other processes on the machine: {_fmt(others, 2)} CPU during the runs"
    return f"{title}\n{_table(header, rows)}\n{foot}"


def format_in_app_table(
    target: Target, handler: Handler, summary: Summary, peers: Sequence[Peer]
) -> str | None:
    """With ``--timings``: per peer, where a request spent its time inside the app."""
    entries = summary[handler.key]
    if not any("in_app_ms" in entries[p.key] for p in peers):
        return None
    header = [
        "peer",
        "wrk p50",
        "wrk p99",
        "handler p50",
        "handler p99",
        "driver p50",
        "driver p99",
    ]
    rows = []
    for peer in peers:
        e = entries[peer.key]
        in_app = e.get("in_app_ms", {})
        rows.append(
            [
                peer.label,
                _fmt(e["p50_ms"], 2),
                _fmt(e["p99_ms"], 2),
                _fmt(in_app.get("handler_p50"), 2),
                _fmt(in_app.get("handler_p99"), 2),
                _fmt(in_app.get("driver_p50"), 2),
                _fmt(in_app.get("driver_p99"), 2),
            ]
        )
    return (
        f"{target.name} · {handler.label} · in the app (--timings), ms, median of the "
        f"repetitions: the whole request as wrk saw it, the handler's run (Tornado's prepare "
        f"to on_finish) and the driver call it awaited\n{_table(header, rows)}"
    )


def check_targets(target: str, summary: Summary) -> list[Check]:
    """``/find_one`` on ``target``: this driver's requests/s and p99 against each peer."""
    entries = summary.get("find_one", {})
    this = entries.get("this")
    checks: list[Check] = []
    if not this or this["rps"] is None:
        return [Check(f"{target} find_one", None, "this driver was not measured")]
    for key, bound in RPS_TARGETS.items():
        peer = entries.get(key)
        label = PEER_BY_KEY[key].label
        name = f"{target} find_one req/s ≥ {bound}× {label}"
        if not peer or not peer["rps"]:
            checks.append(Check(name, None, "not measured"))
            continue
        ratio = this["rps"] / peer["rps"]
        checks.append(
            Check(
                name,
                ratio >= bound,
                f"{ratio:.2f}× ({this['rps']:,.0f} vs {peer['rps']:,.0f} req/s)",
            )
        )
    others = [
        (PEER_BY_KEY[k].label, e["p99_ms"])
        for k, e in entries.items()
        if k != "this" and e["p99_ms"] is not None
    ]
    if others and this["p99_ms"] is not None:
        best_label, best = min(others, key=lambda x: x[1])
        checks.append(
            Check(
                f"{target} find_one p99 ≤ best peer's",
                this["p99_ms"] <= best,
                f"{this['p99_ms']:.2f} ms vs {best_label} {best:.2f} ms",
            )
        )
    return checks


# --------------------------------------------------------------------------- environment


def _uptime() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def environment(wrk: str) -> dict[str, Any]:
    """What the numbers depend on, for the report."""
    import tornado

    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "uptime_start": _uptime(),
        "loadavg_start": list(os.getloadavg()),
        "pymongo": pymongo.version,
        "tornado": tornado.version,
        "wrk": wrk_version(wrk),
        "go": go_version(),
        "git_head": git("rev-parse", "HEAD"),
        "git_status_motor": git("status", "--short", "--", "motor"),
    }


# --------------------------------------------------------------------------- profile


def profile(
    args: argparse.Namespace, pythons: dict[str, str], peers: Sequence[Peer], wrk: str
) -> int:
    """Each peer's app under cProfile for one ``/find_one`` run on the canned server."""
    import pstats

    plan = default_plan(quick=True)
    cpus = choose_cpus(args.pin)
    handler = HANDLER_BY_KEY["find_one"]
    with (
        tempfile.TemporaryDirectory(prefix="motor-web-") as tmp,
        canned_target(args.gomaxprocs, cpus.rest) as target,
    ):
        scripts = write_lua_scripts(Path(tmp))
        for peer in peers:
            stats_path = str(Path(tmp) / f"{peer.key}.pstats")
            app = App(peer, pythons[peer.env], target, cpus.app, profile=stats_path)
            app.start()
            try:
                app.wait_ready()
                run = measure_run(
                    app, handler, args.profile_seconds, plan, wrk, scripts["find_one"], target, cpus
                )
            finally:
                app.stop()
            print(
                f"\n==== {peer.label}: {run['rps']:,.0f} req/s, "
                f"{run['cpu_us_per_request']:.1f} µs CPU/request under cProfile "
                f"({run['requests']:,} requests; main thread only)"
            )
            stats = pstats.Stats(stats_path)
            stats.strip_dirs().sort_stats("tottime").print_stats(args.profile_top)
            stats.sort_stats("cumulative").print_stats(args.profile_top)
    return 0


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="bench/web.py",
        description="End-to-end web benchmark: a Tornado app on this Motor, Motor 3.7.1, "
        "AsyncMongoClient and mongojet, loaded with wrk, against the canned server and "
        "FerretDB.",
    )
    parser.add_argument("--quick", action="store_true", help="1 repetition, 3 s/2 s runs")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--duration", type=int, help="measured seconds of /find_one (10)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds of /find_one (2)")
    parser.add_argument(
        "--other-duration", type=int, help="measured seconds of the other handlers (4)"
    )
    parser.add_argument(
        "--other-warmup", type=int, help="warm-up seconds of the other handlers (1)"
    )
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (50)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (2)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=POOL_SIZE,
        help=f"maxPoolSize of every client ({POOL_SIZE})",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="app on the first CPU; wrk, the server and this script on the second",
    )
    parser.add_argument("--peers", help=f"comma-separated, of {', '.join(PEER_BY_KEY)}")
    parser.add_argument(
        "--handlers",
        help=f"comma-separated, of {', '.join(HANDLER_BY_KEY)} (default: all but static)",
    )
    parser.add_argument(
        "--servers", default="canned,ferretdb", help="comma-separated: canned, ferretdb"
    )
    parser.add_argument(
        "--ferretdb-uri", help=f"a running FerretDB (else ${FERRETDB_URI_ENV}, else launched)"
    )
    parser.add_argument(
        "--gomaxprocs", type=int, default=1, help="GOMAXPROCS of the canned server (1)"
    )
    parser.add_argument("--json", help="write every raw number here")
    parser.add_argument(
        "--timings",
        action="store_true",
        help="also time each request inside the apps: handler and driver call percentiles",
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile each peer's app instead (canned server)"
    )
    parser.add_argument("--profile-peers", default="this", help="peers to profile (this)")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--profile-top", type=int, default=25)
    args = parser.parse_args(argv)
    if args.pool_size < 1:
        parser.error("--pool-size must be at least 1")
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not set(servers) <= {"canned", "ferretdb"}:
        parser.error("--servers takes canned and/or ferretdb")
    args.server_list = servers
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """The default or quick plan with the command line's overrides."""
    plan = default_plan(args.quick)
    if args.reps:
        plan.reps = args.reps
    if args.duration:
        plan.duration["find_one"] = args.duration
    if args.warmup is not None:
        plan.warmup["find_one"] = args.warmup
    for key in ("list", "write", "static"):
        if args.other_duration:
            plan.duration[key] = args.other_duration
        if args.other_warmup is not None:
            plan.warmup[key] = args.other_warmup
    plan.connections, plan.threads = args.connections, args.threads
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and the targets' PASS/FAIL lines."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(args)
    except KeyboardInterrupt as exc:
        _progress(f"interrupted ({exc or 'SIGINT'}); stopping the apps and servers")
        return 130
    finally:
        kill_children()


def _main(args: argparse.Namespace) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    started = time.monotonic()
    plan = make_plan(args)
    global POOL_SIZE
    POOL_SIZE = args.pool_size
    peers = _select(args.profile_peers if args.profile else args.peers, PEER_BY_KEY, "peer")
    handlers = _select(args.handlers, HANDLER_BY_KEY, "handler")
    if not args.handlers:
        handlers = [h for h in handlers if h.default]
    wrk = ensure_wrk()
    pythons = {"dev": sys.executable}
    versions: dict[str, Any] = {}
    if any(p.env == "motor371" for p in peers):
        pythons["motor371"], versions["motor371"] = ensure_motor371_venv()
    if any(p.env == "mongojet" for p in peers):
        pythons["mongojet"], versions["mongojet"] = ensure_mongojet_venv()
    if args.profile:
        return profile(args, pythons, peers, wrk)

    cpus = choose_cpus(args.pin)
    if cpus.rest:
        os.sched_setaffinity(0, cpus.rest)  # this script stays off the app's CPU
    env = environment(wrk)
    env["venvs"] = versions
    planned = plan.seconds(len(args.server_list), len(peers), handlers)
    print(
        f"commit {env['git_head']}, motor/ {'modified' if env['git_status_motor'] else 'clean'}"
        f"; PyMongo {env['pymongo']}, Tornado {env['tornado']}, {env['python']}; {env['wrk']}"
    )
    print(f"{env['cpu_model']}, {env['cpus']} CPUs; {env['uptime_start']}")
    print(
        f"plan {plan.name}: {plan.reps} repetitions, peers rotated each; {cpus.describe()}; "
        f"about {planned / 60:.1f} min of wrk runs"
    )
    notes: list[str] = []
    sessions: dict[str, Session] = {}
    summaries: dict[str, Summary] = {}
    with tempfile.TemporaryDirectory(prefix="motor-web-") as tmp:
        scripts = write_lua_scripts(Path(tmp))

        def run_target(target: Target) -> None:
            _progress(f"== {target.name}: {target.description}")
            session = Session(
                target, plan, peers, handlers, pythons, wrk, scripts, cpus, args.timings
            )
            sessions[target.name] = session
            session.measure()
            summaries[target.name] = summarize(session)

        for server in args.server_list:
            if server == "canned":
                try:
                    with canned_target(args.gomaxprocs, cpus.rest) as target:
                        run_target(target)
                except BenchSetupError as exc:
                    notes.append(f"canned server skipped: {exc}")
            else:
                with ferretdb_target(args.ferretdb_uri, cpus.rest) as ferret:
                    if ferret is None:
                        notes.append("FerretDB skipped: no server (see --ferretdb-uri)")
                    else:
                        run_target(ferret)

    env["uptime_end"] = _uptime()
    env["loadavg_end"] = list(os.getloadavg())
    env["duration_s"] = time.monotonic() - started
    print()
    checks: list[Check] = []
    for name, session in sessions.items():
        print(f"{name}: {session.target.description}")
        for failure in session.failures:
            notes.append(f"FAILED: {failure}")
    for name, session in sessions.items():
        if name not in summaries:
            continue
        for handler in handlers:
            print()
            print(format_table(session.target, handler, summaries[name], peers, plan))
            in_app = format_in_app_table(session.target, handler, summaries[name], peers)
            if in_app:
                print()
                print(in_app)
        checks += check_targets(name, summaries[name])
    print(
        "\nthis÷: this driver's figure over the peer's (req/s: above 1 is better for this "
        "driver; p99 and CPU: below 1 is better).  CPU µs/req: the app process, all threads."
    )
    print(
        f"Run time {env['duration_s'] / 60:.1f} min; at the start: {env['uptime_start']}; "
        f"at the end: {env['uptime_end']}"
    )
    print("\nTargets (GET /find_one, same run):")
    print(format_checks(checks) if checks else "N/A  nothing measured")
    for note in notes:
        print(note)
    if args.json:
        report = {
            "environment": env,
            "plan": asdict(plan),
            "cpus": {"app": sorted(cpus.app or []), "rest": sorted(cpus.rest or [])},
            "peers": [asdict(p) for p in peers],
            "handlers": [asdict(h) for h in handlers],
            "pool_size": POOL_SIZE,
            "targets": {
                name: {k: v for k, v in asdict(s.target).items() if k != "reset"}
                for name, s in sessions.items()
            },
            "apps": {name: s.apps for name, s in sessions.items()},
            "summary": summaries,
            "runs": {name: s.runs for name, s in sessions.items()},
            "warmup_runs": {name: s.warmups for name, s in sessions.items()},
            "checks": [asdict(c) for c in checks],
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0 if summaries else 1


if __name__ == "__main__":
    sys.exit(main())
