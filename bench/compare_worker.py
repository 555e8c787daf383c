"""Worker process for ``bench/compare.py``: measures one client, one workload at a time.

``compare.py`` starts this script with the Python of the environment the client lives
in (the project's virtualenv, or a virtualenv with Motor 3.7.1) and talks to it over
pipes, one JSON document per line:

1. the first line on stdin is the *setup*::

       {"client": "motor_asyncio", "uri": "mongodb://127.0.0.1:.../", "db": "bench",
        "repo": "/path/to/checkout" or null, "options": {"maxPoolSize": 100}}

   ``client`` is one of :data:`CLIENT_KINDS`.  ``repo`` is put first on ``sys.path``
   (so ``import motor`` finds that checkout); leave it null for an installed Motor.
   The worker creates the client, checks that ``find_one`` finds a document and
   ``insert_one`` returns an id, and answers with its environment (versions, paths)
   and the longest gap of a 1 ms ticker on its idle event loop.

2. every further line is a *run*::

       {"workload": "concurrent", "collection": "small", "ops": 5000,
        "concurrency": 100, "warmup": 500, "ticker": true, "memory": false}

   and the worker answers with the measurements (see :func:`measure`).  Workloads:

   ``sequential``  ``ops`` calls of ``find_one({})`` (or, with ``"op": "insert_one"``,
                   ``insert_one({...})``), each awaited before the next;
   ``concurrent``  ``ops`` calls of ``find_one({})`` shared by ``concurrency`` tasks
                   (threads for the synchronous client, at most ``max_threads``);
   ``pending``     ``concurrency`` tasks started at once, each making ``ops_per_task``
                   calls, so that ``concurrency`` operations are pending together;
                   with ``"memory": true`` the resident-set growth is measured;
   ``to_list``     ``ops`` sequential ``find({}).to_list()`` of a whole collection;
   ``big``         one operation on big data (``"op"``: ``insert_big``, ``insert_one``
                   of one document of ``doc_bytes`` bytes; ``insert_big_nested``, the
                   same with its string in an embedded document; ``find_big``, ``find_one({})``
                   of such a document; ``find_text``, ``find_one({})`` of one whose
                   string is Chinese text (``big_doc(..., text=True)``);
                   ``find_array``, ``find_one({})`` of a document
                   holding an array of ``docs`` integers (:func:`array_doc`);
                   ``to_list``, ``find({}).to_list()`` of a whole collection, with
                   ``batch_size`` if given; ``insert_many``, of ``docs``
                   documents shaped like :func:`small_doc`), always with the ticker.
                   The data to write is built before the clock starts; ``"gc"`` is
                   ``"on"`` (as applications run), ``"frozen"`` (``gc.freeze()`` after
                   the ``gc.collect()`` that precedes the operation) or ``"off"``
                   (``gc.disable()`` for the operation).  The result is kept alive until
                   the ticker has seen the loop again, then freed outside the clock.

   A run may carry ``"cpus": [0, ...]``: every thread of the worker is confined to those
   CPUs for the run (warm-up included) and released afterwards.

3. ``{"quit": true}`` or the end of stdin ends the worker, closing the client.

Protocol answers go to the original stdout; everything else the process prints is sent
to stderr, so a stray warning cannot corrupt the protocol.  Errors are answered as
``{"error": "<traceback>"}``.

The script imports nothing from the rest of ``bench/``, so it runs in any virtualenv
that has PyMongo (and Motor and Tornado for the Motor clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import hashlib
import io
import itertools
import json
import os
import platform
import pstats
import resource
import struct
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: The clients this worker can drive.
CLIENT_KINDS = (
    "motor_asyncio",
    "motor_tornado",
    "pymongo_async",
    "pymongo_sync",
    "mongojet",
    "bare",
    "raw",
)
#: The event-loop stall ticker's sleep (seconds).
TICK = 0.001
#: Set by a runner whose library cannot survive the interpreter's finalization.
EXIT_WITHOUT_FINALIZING = False

_perf_counter = time.perf_counter
_thread_time = time.thread_time
_process_time = time.process_time
_getrusage = resource.getrusage
_RUSAGE_SELF = resource.RUSAGE_SELF


# --------------------------------------------------------------------------- documents

#: The string in every small document (``small_doc``): 47 characters; a document is 76 bytes.
SMALL_DOC_TEXT = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijk"


def small_doc(i: int) -> dict[str, Any]:
    """The small documents of the big-data workloads: ``{_id: i, x: i, s: "abc..."}``."""
    return {"_id": i, "x": i, "s": SMALL_DOC_TEXT}


def big_doc(size: int, _id: int = 0, nested: bool = False, text: bool = False) -> dict[str, Any]:
    """One document of exactly ``size`` bytes of BSON: a name and a padding string (with
    ``nested``, the string in an embedded document: ``{"meta": {"kind": ..., "pad": ...}}``;
    with ``text``, the string is Chinese text, three bytes of UTF-8 a character, ended by
    up to two ASCII letters)."""
    import bson

    doc: dict[str, Any] = {"_id": _id, "name": "big"}
    holder = doc
    if nested:
        holder = doc["meta"] = {"kind": "blob"}
    holder["pad"] = ""
    pad = size - len(bson.encode(doc))
    holder["pad"] = "中" * (pad // 3) + "x" * (pad % 3) if text else "x" * pad
    return doc


def array_doc(values: int) -> dict[str, Any]:
    """One document holding an array of ``values`` integers: ``{_id: 1, name, a: [0, 1, …]}``."""
    return {"_id": 1, "name": "big", "a": list(range(values))}


# --------------------------------------------------------------------------- measuring


def proc_status() -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of this process in bytes, from /proc (Linux)."""
    values: dict[str, int] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def package_digest(path: str) -> str:
    """A digest of a package's ``.py`` files: which code this worker imported."""
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                with open(full, "rb") as f:
                    digest.update(os.path.relpath(full, path).encode() + b"\0" + f.read() + b"\0")
    return digest.hexdigest()[:16]


class GCWatch:
    """Records the garbage collector's pauses (``gc.callbacks``) since the last reset."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def reset(self) -> None:
        self.longest = 0.0
        self.collections = [0, 0, 0]

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = _perf_counter()
            return
        self.longest = max(self.longest, _perf_counter() - self._started)
        self.collections[info["generation"]] += 1


GC_WATCH = GCWatch()


_RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)


def _thread_switches() -> tuple[int, int]:
    """The calling thread's (voluntary, involuntary) context switches so far; zeros
    where ``RUSAGE_THREAD`` is missing (it is Linux's)."""
    if _RUSAGE_THREAD is None:
        return (0, 0)
    usage = resource.getrusage(_RUSAGE_THREAD)
    return (usage.ru_nvcsw, usage.ru_nivcsw)


#: CPU time of the process's other threads within one ticker gap below which that gap's
#: late selector time is excused (Ticker): they did not run, so none held the GIL.
OTHERS_IDLE = 0.0002


class SelectorClock:
    """Times the event loop's selector: how long its ``select()`` calls slept past the
    timeout they were given, in total.

    A ``select(timeout)`` that returns late is the loop asleep, ready to run, that the
    machine woke late (a virtual CPU the host did not run, a busy CPU): time no client
    spent.  Only the Python call is timed, so a wait for the GIL after the system call
    returns counts too; :class:`Ticker` therefore excuses late time only in gaps in which
    the process's other threads did not run.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.late = 0.0
        self._own: Any = None
        self._selector: Any = getattr(loop, "_selector", None)
        if self._selector is None:  # not a selector loop: nothing is excused
            return
        original = self._selector.select
        # An instance's own ``select`` (someone else's wrapper) to put back on close.
        self._own = vars(self._selector).get("select")

        def select(timeout: float | None = None) -> Any:
            start = _perf_counter()
            try:
                return original(timeout)
            finally:
                if timeout is not None:
                    over = _perf_counter() - start - max(timeout, 0.0)
                    if over > 0.0:
                        self.late += over

        self._selector.select = select

    def close(self) -> None:
        """Give the selector its own ``select`` back."""
        if self._selector is not None:
            if self._own is not None:
                self._selector.select = self._own
            else:
                with contextlib.suppress(AttributeError):
                    del self._selector.select
            self._selector = None


class Ticker:
    """A task that sleeps 1 ms in a loop and records the longest gap between wake-ups.

    A gap longer than the sleep is time the event loop spent on other work (or
    blocked) without returning to its selector: the loop's longest stall.
    """

    def __init__(self) -> None:
        self.longest = 0.0
        # The loop thread's CPU time within the longest gap: well below the gap, the
        # process was descheduled rather than busy.
        self.longest_cpu = 0.0
        # The most CPU time the loop thread used within any one gap (not necessarily the
        # longest): the longest the loop was held by work on its own thread.
        self.busiest_cpu = 0.0
        # The loop thread's context switches within the longest gap (getrusage's
        # RUSAGE_THREAD): voluntary ones are sleeps (in the selector, or for the GIL),
        # involuntary ones are preemptions by another task on its CPU.  A gap with little
        # CPU, one voluntary switch and none involuntary is the selector's sleep ending
        # late: a wake-up the machine delayed, not work that held the loop.
        self.longest_switches = (0, 0)
        # The time the selector slept past its timeout within the longest gap, and the
        # longest gap net of that late time (see SelectorClock), the part of a gap that
        # was the process's own: its loop thread's work, preemptions, and waits for the
        # GIL.  Late time is excused only in a gap in which the process's other threads
        # used (next to) no CPU: a thread holding the GIL can also sleep in the kernel
        # while it does, so their CPU time does not bound the wait.
        self.longest_late = 0.0
        self.longest_net = 0.0
        # Gaps longer than 10 ms beyond the sleep.
        self.over_10ms = 0
        # The first gap (it holds whatever the measured body does before its first wait:
        # a concurrent workload's tasks all starting), and the longest of the others.
        self.first = 0.0
        self.longest_later = 0.0
        self.ticks = 0
        self._task: asyncio.Future[None] | None = None
        self._clock: SelectorClock | None = None

    async def _run(self, clock: SelectorClock) -> None:
        last = _perf_counter()
        last_cpu = _thread_time()
        last_process = _process_time()
        last_late = clock.late
        last_switches = _thread_switches()
        while True:
            await asyncio.sleep(TICK)
            now = _perf_counter()
            cpu = _thread_time()
            process = _process_time()
            late = clock.late
            switches = _thread_switches()
            others = (process - last_process) - (cpu - last_cpu)
            excused = late - last_late if others < OTHERS_IDLE else 0.0
            if now - last - excused > self.longest_net:
                self.longest_net = now - last - excused
            if now - last > self.longest:
                self.longest = now - last
                self.longest_cpu = cpu - last_cpu
                self.longest_late = late - last_late
                self.longest_switches = (
                    switches[0] - last_switches[0],
                    switches[1] - last_switches[1],
                )
            if cpu - last_cpu > self.busiest_cpu:
                self.busiest_cpu = cpu - last_cpu
            if now - last > TICK + 0.010:
                self.over_10ms += 1
            if self.ticks == 0:
                self.first = now - last
            elif now - last > self.longest_later:
                self.longest_later = now - last
            self.ticks += 1
            last = now
            last_cpu = cpu
            last_process = process
            last_late = late
            last_switches = switches

    async def start(self) -> None:
        """Start ticking on the running loop."""
        self._clock = SelectorClock(asyncio.get_running_loop())
        self._task = asyncio.ensure_future(self._run(self._clock))
        await asyncio.sleep(0)  # let the ticker take its first timestamp

    async def settle(self, ticks: int = 2) -> None:
        """Wait until the ticker has woken ``ticks`` more times.

        A stall at the very end of an operation (decoding its reply, say) is a gap the
        ticker only records when it wakes after it: stopping it as soon as the operation
        returns would lose that gap.
        """
        target = self.ticks + ticks
        while self.ticks < target and self._task is not None and not self._task.done():
            await asyncio.sleep(TICK)

    async def stop(self) -> None:
        """Stop ticking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._clock is not None:
            self._clock.close()
            self._clock = None


# --------------------------------------------------------------------------- runners


def _field(result: Any, name: str) -> Any:
    """A field of a write result: an attribute (PyMongo, Motor) or a key (mongojet)."""
    if isinstance(result, dict):
        return result.get(name)
    return getattr(result, name, None)


def _expect_ids(count: int) -> Callable[[Any], int]:
    """A check that a write result reports ``count`` inserted ids."""

    def check(result: Any) -> int:
        if count == 1:
            found = 0 if _field(result, "inserted_id") is None else 1
        else:
            ids = _field(result, "inserted_ids")
            found = 0 if ids is None else len(ids)
        if found != count:
            raise RuntimeError(f"expected {count} inserted ids, the result was {result!r}")
        return count

    return check


@contextlib.contextmanager
def gc_mode(mode: str) -> Any:
    """The garbage collector for a ``with`` block: ``on``, ``frozen`` or ``off``."""
    if mode == "on":
        yield
    elif mode == "frozen":
        gc.freeze()  # everything alive now is out of the collector's sight
        try:
            yield
        finally:
            gc.unfreeze()
    elif mode == "off":
        gc.disable()
        try:
            yield
        finally:
            gc.enable()
    else:
        raise ValueError(f"unknown gc mode {mode!r}")


class Runner:
    """One client in this process; subclasses drive it on an event loop or in threads."""

    is_async = True

    def __init__(self, setup: dict[str, Any]) -> None:
        self.uri: str = setup["uri"]
        self.db: str = setup["db"]
        self.options: dict[str, Any] = dict(setup.get("options") or {})
        self.client: Any = None
        self._bytes: dict[str, tuple[int, int]] = {}  # collection -> BSON bytes of one to_list()

    # Hooks for the subclasses.

    def start(self) -> None:
        """Create the client."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the client (and its loop)."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Versions and paths of the client's libraries."""
        import pymongo

        return {
            "pymongo": pymongo.version,
            "pymongo_path": os.path.dirname(pymongo.__file__),
            "pymongo_c_extensions": pymongo.has_c(),
        }

    def coll(self, name: str) -> Any:
        return self.client[self.db][name]

    def find_to_list(self, coll: Any, batch_size: int | None = None) -> Any:
        """``coll.find({})``'s documents as a list (awaitable for async clients)."""
        cursor = coll.find({})
        if batch_size:
            cursor = cursor.batch_size(batch_size)
        return cursor.to_list()

    def op(self, workload: dict[str, Any]) -> Callable[[int], Any]:
        """The operation a workload repeats: ``op(i)`` (a coroutine for async clients)."""
        coll = self.coll(workload["collection"])
        if workload["workload"] == "to_list":
            find_to_list = self.find_to_list
            return lambda i: find_to_list(coll)
        if workload.get("op", "find_one") == "insert_one":
            insert_one = coll.insert_one
            return lambda i: insert_one({"i": i, "name": "bench"})
        find_one = coll.find_one
        return lambda i: find_one({})

    def check(self, small: str, insert: str) -> None:
        """Fail loudly unless ``find_one`` finds a document and ``insert_one`` works."""
        found = self.call(self.coll(small).find_one, {})
        inserted = self.call(self.coll(insert).insert_one, {"check": True})
        if not isinstance(found, dict):
            raise RuntimeError(f"find_one({{}}) on {small!r} returned {found!r}")
        if _field(inserted, "inserted_id") is None:
            raise RuntimeError(f"insert_one() returned {inserted!r}")

    def big_op(self, workload: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[Any], int]]:
        """A ``big`` workload's operation (its data built now), and a function that
        checks the operation's result and returns how many documents it moved."""
        coll = self.coll(workload["collection"])
        what = workload["op"]
        if what in ("insert_big", "insert_big_nested"):
            doc = big_doc(workload["doc_bytes"], _id=1, nested=what == "insert_big_nested")
            return lambda: coll.insert_one(doc), _expect_ids(1)
        if what == "insert_array":
            array = {"_id": 1, "a": list(range(workload["docs"]))}
            return lambda: coll.insert_one(array), _expect_ids(1)
        if what in ("find_big", "find_text"):
            size = workload["doc_bytes"]

            def found(doc: Any) -> int:
                import bson

                if not isinstance(doc, dict) or len(bson.encode(doc)) != size:
                    raise RuntimeError(f"find_one() found no document of {size} bytes")
                return 1

            return lambda: coll.find_one({}), found
        if what == "find_array":
            values = workload["docs"]

            def found_array(doc: Any) -> int:
                if not isinstance(doc, dict) or doc.get("a") != list(range(values)):
                    raise RuntimeError(f"find_one() found no array of {values} integers")
                return 1

            return lambda: coll.find_one({}), found_array
        if what == "insert_many":
            docs = [small_doc(i) for i in range(workload["docs"])]
            return lambda: coll.insert_many(docs), _expect_ids(len(docs))
        if what == "insert_many_large":
            docs = [big_doc(workload["doc_bytes"], _id=i) for i in range(workload["docs"])]
            return lambda: coll.insert_many(docs), _expect_ids(len(docs))
        if what == "to_list":
            batch_size = workload.get("batch_size")
            expected = workload["docs"]

            def listed(docs: Any) -> int:
                if len(docs) != expected:
                    raise RuntimeError(f"to_list() returned {len(docs)} of {expected} documents")
                return int(expected)

            return lambda: self.find_to_list(coll, batch_size), listed
        raise ValueError(f"unknown big-data operation {what!r}")

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Run one client call to completion."""
        raise NotImplementedError

    def collection_bytes(self, name: str) -> tuple[int, int]:
        """(documents, BSON bytes) of a whole collection, fetched once and remembered."""
        if name not in self._bytes:
            import bson

            docs = self.call(lambda: self.find_to_list(self.coll(name)))
            self._bytes[name] = (len(docs), sum(len(bson.encode(d)) for d in docs))
        return self._bytes[name]

    def execute(self, workload: dict[str, Any], timed: bool) -> dict[str, Any]:
        """Run a workload; return the measurements (or nothing useful if not ``timed``)."""
        raise NotImplementedError


class AsyncRunner(Runner):
    """An asyncio-based client: Motor (asyncio or Tornado) or PyMongo's AsyncMongoClient."""

    def __init__(self, setup: dict[str, Any]) -> None:
        super().__init__(setup)
        self.kind: str = setup["client"]
        if self.kind == "motor_tornado":
            from tornado.ioloop import IOLoop

            io_loop = IOLoop(make_current=False)
            self.io_loop: Any = io_loop
            self.loop: asyncio.AbstractEventLoop = io_loop.asyncio_loop  # type: ignore[attr-defined]
            self._run: Callable[[Callable[[], Awaitable[Any]]], Any] = lambda factory: (
                io_loop.run_sync(factory)
            )
        else:
            self.loop = asyncio.new_event_loop()
            self._run = lambda factory: self.loop.run_until_complete(factory())

    def run(self, factory: Callable[[], Awaitable[Any]]) -> Any:
        """Run the coroutine ``factory()`` on the client's loop until it completes."""
        return self._run(factory)

    def start(self) -> None:
        # Every client is created on its loop, as an application would create it.
        async def create() -> Any:
            if self.kind == "motor_asyncio":
                from motor.motor_asyncio import AsyncIOMotorClient

                return AsyncIOMotorClient(self.uri, **self.options)
            if self.kind == "motor_tornado":
                from motor.motor_tornado import MotorClient

                return MotorClient(self.uri, **self.options)
            from pymongo import AsyncMongoClient

            return AsyncMongoClient(self.uri, **self.options)

        self.client = self.run(create)

    def close(self) -> None:
        async def close() -> None:
            result = self.client.close()
            if result is not None and hasattr(result, "__await__"):
                await result

        try:
            if self.client is not None:
                self.run(close)
        finally:
            if self.kind == "motor_tornado":
                self.io_loop.close(all_fds=False)
            else:
                self.loop.close()

    def info(self) -> dict[str, Any]:
        data = super().info()
        if self.kind.startswith("motor"):
            import motor

            data["motor"] = getattr(motor, "version", None) or getattr(motor, "__version__", "")
            data["motor_path"] = os.path.dirname(motor.__file__)
            data["motor_digest"] = package_digest(data["motor_path"])
        if self.kind == "motor_tornado":
            import tornado

            data["tornado"] = tornado.version
        with contextlib.suppress(ImportError):
            import greenlet

            data["greenlet"] = greenlet.__version__
        data["idle_tick_gap_ms"] = self.idle_tick_gap() * 1e3
        return data

    def idle_tick_gap(self, seconds: float = 0.3) -> float:
        """The ticker's longest gap on this idle loop: the floor of the stall figures."""

        async def idle() -> float:
            ticker = Ticker()
            await ticker.start()
            await asyncio.sleep(seconds)
            await ticker.stop()
            return ticker.longest

        gap: float = self.run(idle)
        return gap

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        async def once() -> Any:
            return await method(*args)

        return self.run(once)

    def execute(self, workload: dict[str, Any], timed: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.run(lambda: self._execute(workload, timed))
        return result

    async def _execute(self, workload: dict[str, Any], timed: bool) -> dict[str, Any]:
        kind = workload["workload"]
        if kind == "big":
            return await self._execute_big(workload)
        op = self.op(workload)
        ticker = Ticker() if timed and workload.get("ticker") else None
        memory = timed and workload.get("memory")
        pending = 0
        max_pending = 0

        if kind in ("sequential", "to_list"):
            n = workload["ops"]

            async def body() -> None:
                for i in range(n):
                    await op(i)

        elif kind == "concurrent":
            remaining = workload["ops"]

            async def one_task() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    await op(remaining)

            async def body() -> None:
                await asyncio.gather(*(one_task() for _ in range(workload["concurrency"])))

        elif kind == "pending":
            per_task = workload["ops_per_task"]

            async def one_task() -> None:
                nonlocal pending, max_pending
                for i in range(per_task):
                    pending += 1
                    if pending > max_pending:
                        max_pending = pending
                    await op(i)
                    pending -= 1

            async def body() -> None:
                await asyncio.gather(*(one_task() for _ in range(workload["concurrency"])))

        else:
            raise ValueError(f"unknown workload {kind!r}")

        if not timed:
            await body()
            return {}
        gc.collect()
        GC_WATCH.reset()
        rss_before = proc_status() if memory else {}
        hwm_reset = reset_peak_rss() if memory else False
        if ticker is not None:
            await ticker.start()
        usage0 = _getrusage(_RUSAGE_SELF)
        wall0 = _perf_counter()
        await body()
        wall = _perf_counter() - wall0
        usage1 = _getrusage(_RUSAGE_SELF)
        peak = proc_status() if memory else {}
        if ticker is not None:
            await ticker.stop()
        return _result(wall, usage0, usage1, ticker, rss_before, peak, hwm_reset, max_pending)

    async def _execute_big(self, workload: dict[str, Any]) -> dict[str, Any]:
        """One operation on big data, with the ticker; its data built before the clock."""
        op, check = self.big_op(workload)
        ticker = Ticker()
        gc.collect()
        GC_WATCH.reset()
        with gc_mode(workload.get("gc", "on")):
            await ticker.start()
            usage0 = _getrusage(_RUSAGE_SELF)
            wall0 = _perf_counter()
            result = await op()
            wall = _perf_counter() - wall0
            usage1 = _getrusage(_RUSAGE_SELF)
            # The result stays alive until the ticker has seen the loop again: freeing
            # it (hundreds of thousands of objects) is the caller's work, not the
            # driver's, and the gap of a stall at the very end must not be lost.
            await ticker.settle()
            await ticker.stop()
            # Read before the collector is enabled again: with ``off``, the first
            # allocation after ``gc.enable()`` pays for every object the operation left
            # alive, a pause after the operation that is not the operation's.
            out = _result(wall, usage0, usage1, ticker, {}, {}, False, 0)
        out["documents"] = check(result)
        del result, op
        gc.collect()
        return out


class SyncRunner(Runner):
    """PyMongo's synchronous MongoClient; concurrency comes from threads."""

    is_async = False

    def start(self) -> None:
        from pymongo import MongoClient

        self.client = MongoClient(self.uri, **self.options)

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def call(self, method: Callable[..., Any], *args: Any) -> Any:
        return method(*args)

    def execute(self, workload: dict[str, Any], timed: bool) -> dict[str, Any]:
        kind = workload["workload"]
        if kind == "big":
            raise ValueError("the big-data workloads measure event-loop stalls: async only")
        op = self.op(workload)
        memory = timed and workload.get("memory")
        max_threads = int(workload.get("max_threads") or 1000)
        threads_used = 1
        go = threading.Event()
        threads: list[threading.Thread] = []

        if kind in ("sequential", "to_list"):
            n = workload["ops"]

            def body() -> None:
                for i in range(n):
                    op(i)

        elif kind == "concurrent":
            total = workload["ops"]
            counter = itertools.count()  # next() is atomic under the GIL

            def one_thread() -> None:
                go.wait()
                for i in counter:
                    if i >= total:
                        return
                    op(i)

            threads_used = min(workload["concurrency"], max_threads)
            # Threads are started (and parked on an event) before the clock starts.
            threads = [threading.Thread(target=one_thread) for _ in range(threads_used)]
            for thread in threads:
                thread.start()

            def body() -> None:
                go.set()
                for thread in threads:
                    thread.join()

        elif kind == "pending":
            per_task = workload["ops_per_task"]
            threads_used = min(workload["concurrency"], max_threads)

            def one_task() -> None:
                for i in range(per_task):
                    op(i)

            def body() -> None:
                # All tasks are queued at once; at most ``threads_used`` run.
                with ThreadPoolExecutor(max_workers=threads_used) as executor:
                    futures = [executor.submit(one_task) for _ in range(workload["concurrency"])]
                    for future in futures:
                        future.result()

        else:
            raise ValueError(f"unknown workload {kind!r}")

        if not timed:
            body()
            return {}
        gc.collect()
        GC_WATCH.reset()
        rss_before = proc_status() if memory else {}
        hwm_reset = reset_peak_rss() if memory else False
        usage0 = _getrusage(_RUSAGE_SELF)
        wall0 = _perf_counter()
        body()
        wall = _perf_counter() - wall0
        usage1 = _getrusage(_RUSAGE_SELF)
        peak = proc_status() if memory else {}
        result = _result(wall, usage0, usage1, None, rss_before, peak, hwm_reset, 0)
        result["threads"] = threads_used
        if kind == "pending":
            result["max_pending"] = workload["concurrency"] * per_task
        return result


class MongojetRunner(AsyncRunner):
    """mongojet: an asyncio client whose core (the Rust driver) runs on threads of its own.

    Its API follows Motor's where it can, with these differences: the client is made by
    ``await create_client(uri)`` (options go in the URI), ``find()`` is a coroutine that
    returns the cursor, its options are keyword arguments (``batch_size=``), and write
    results are dicts.
    """

    def start(self) -> None:
        import mongojet

        uri = _uri_with_options(self.uri, self.options)
        self.client = self.run(lambda: mongojet.create_client(uri))

    def coll(self, name: str) -> Any:
        return self.client.get_database(self.db).get_collection(name)

    def close(self) -> None:
        super().close()
        # mongojet 0.5's runtime threads outlive the client and abort the interpreter's
        # finalization ("PyGILState_Release: thread state ... must be current"): once
        # the client is closed, the worker leaves without finalizing.
        global EXIT_WITHOUT_FINALIZING
        EXIT_WITHOUT_FINALIZING = True

    async def find_to_list(self, coll: Any, batch_size: int | None = None) -> Any:
        options = {"batch_size": batch_size} if batch_size else {}
        cursor = await coll.find({}, **options)
        return await cursor.to_list()

    def info(self) -> dict[str, Any]:
        from importlib import metadata

        data = super().info()
        data["mongojet"] = metadata.version("mongojet")
        import mongojet

        data["mongojet_path"] = os.path.dirname(mongojet.__file__)
        return data


def _uri_with_options(uri: str, options: dict[str, Any]) -> str:
    """``uri`` with ``options`` added to its query string (mongojet takes no keywords)."""
    from urllib.parse import urlencode, urlsplit, urlunsplit

    parts = urlsplit(uri)
    given = {p.split("=", 1)[0].lower() for p in parts.query.split("&") if p}
    extra = {k: v for k, v in options.items() if k.lower() not in given}
    query = "&".join(q for q in (parts.query, urlencode(extra)) if q)
    path = parts.path or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


class BareRunner(AsyncRunner):
    """No client at all: ``pending`` measures what the harness's own tasks cost.

    Instead of an operation each task awaits one shared future, resolved 50 ms after
    the first task started, so the RSS growth is that of ``concurrency`` asyncio tasks,
    their coroutines and the ``gather``.
    """

    def start(self) -> None:
        self.client = None

    def info(self) -> dict[str, Any]:
        return {"idle_tick_gap_ms": self.idle_tick_gap() * 1e3}

    def check(self, small: str, insert: str) -> None:
        pass

    def op(self, workload: dict[str, Any]) -> Callable[[int], Any]:
        shared: list[asyncio.Future[None]] = []

        def wait(i: int) -> asyncio.Future[None]:
            if not shared:
                loop = asyncio.get_running_loop()
                shared.append(loop.create_future())
                loop.call_later(0.05, shared[0].set_result, None)
            return shared[0]

        return wait


def find_message(collection: str, db: str) -> bytes:
    """An OP_MSG ``find`` of one document of ``db.collection``, as a driver sends it."""
    import bson

    command = {"find": collection, "filter": {}, "limit": 1, "singleBatch": True, "$db": db}
    body = struct.pack("<I", 0) + b"\x00" + bson.encode(command)
    return struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body


class RawConnection(asyncio.Protocol):
    """A connection with no driver: sends a prebuilt request, decodes the reply."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[Any] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        import bson

        self.buffer += data
        while len(self.buffer) >= 4:
            length = int.from_bytes(self.buffer[:4], "little")
            if len(self.buffer) < length:
                return
            reply = bytes(self.buffer[:length])
            del self.buffer[:length]
            # Header (16 bytes), flag bits (4), section kind (1), then the document.
            document = bson.decode(reply[21:])
            waiter, self.waiter = self.waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(document)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or ConnectionError("connection closed"))

    async def round_trip(self, message: bytes) -> Any:
        """Send ``message``; the decoded reply (which must say ``ok: 1``)."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(message)
        reply = await self.waiter
        if reply.get("ok") != 1:
            raise RuntimeError(f"the server answered {reply!r}")
        return reply


class RawRunner(AsyncRunner):
    """No driver: one asyncio connection sending a prebuilt ``find`` at a time.

    The ``sequential`` workload with the ticker then measures the machine's floor under
    the stall figures: a loop iteration handles at most one small reply and one send,
    so a long gap is the machine's (a system call or a vCPU held up), not a driver's.
    """

    def start(self) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(self.uri)
        host, port = parts.hostname or "localhost", parts.port or 27017

        async def connect() -> RawConnection:
            _, protocol = await asyncio.get_running_loop().create_connection(
                RawConnection, host, port
            )
            return protocol

        self.connection: RawConnection = self.run(connect)
        self.client = None

    def close(self) -> None:
        try:
            if self.connection.transport is not None:
                self.connection.transport.close()
                self.run(lambda: asyncio.sleep(0))
        finally:
            self.loop.close()

    def info(self) -> dict[str, Any]:
        return {"idle_tick_gap_ms": self.idle_tick_gap() * 1e3}

    def check(self, small: str, insert: str) -> None:
        message = find_message(small, self.db)
        self.run(lambda: self.connection.round_trip(message))

    def op(self, workload: dict[str, Any]) -> Callable[[int], Any]:
        if workload["workload"] != "sequential" or workload.get("op", "find_one") != "find_one":
            raise ValueError("the raw connection only makes sequential find_one calls")
        message = find_message(workload["collection"], self.db)
        round_trip = self.connection.round_trip
        return lambda i: round_trip(message)


def _result(
    wall: float,
    usage0: Any,
    usage1: Any,
    ticker: Ticker | None,
    rss_before: dict[str, int],
    peak: dict[str, int],
    hwm_reset: bool,
    max_pending: int,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "wall_s": wall,
        # getrusage: this process, all threads, with µs resolution (os.times has 10 ms).
        "cpu_user_s": usage1.ru_utime - usage0.ru_utime,
        "cpu_sys_s": usage1.ru_stime - usage0.ru_stime,
        "voluntary_switches": usage1.ru_nvcsw - usage0.ru_nvcsw,
        "involuntary_switches": usage1.ru_nivcsw - usage0.ru_nivcsw,
        "minor_faults": usage1.ru_minflt - usage0.ru_minflt,
        "longest_tick_gap_ms": None if ticker is None else ticker.longest * 1e3,
        "longest_tick_gap_cpu_ms": None if ticker is None else ticker.longest_cpu * 1e3,
        "longest_tick_gap_switches": None if ticker is None else list(ticker.longest_switches),
        "longest_tick_gap_late_ms": None if ticker is None else ticker.longest_late * 1e3,
        "longest_net_tick_gap_ms": None if ticker is None else ticker.longest_net * 1e3,
        "busiest_tick_cpu_ms": None if ticker is None else ticker.busiest_cpu * 1e3,
        "tick_gaps_over_10ms": None if ticker is None else ticker.over_10ms,
        "first_tick_gap_ms": None if ticker is None else ticker.first * 1e3,
        "longest_later_tick_gap_ms": None if ticker is None else ticker.longest_later * 1e3,
        "ticks": None if ticker is None else ticker.ticks,
        # The garbage collector during the run: its longest pause and collections per
        # generation (a long loop gap that matches a generation-2 pause is the GC's).
        "gc_longest_ms": GC_WATCH.longest * 1e3,
        "gc_collections": list(GC_WATCH.collections),
    }
    if rss_before:
        result.update(
            rss_before=rss_before.get("VmRSS"),
            hwm_before=rss_before.get("VmHWM"),
            rss_after=peak.get("VmRSS"),
            hwm_after=peak.get("VmHWM"),
            hwm_reset=hwm_reset,
            max_pending=max_pending,
        )
    return result


RUNNERS: dict[str, type[Runner]] = {
    "motor_asyncio": AsyncRunner,
    "motor_tornado": AsyncRunner,
    "pymongo_async": AsyncRunner,
    "pymongo_sync": SyncRunner,
    "mongojet": MongojetRunner,
    "bare": BareRunner,
    "raw": RawRunner,
}


# --------------------------------------------------------------------------- protocol


def measure(runner: Runner, workload: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then run one timed workload; add the counts the caller needs.

    With ``"profile": true`` the timed run is made under cProfile and the top entries
    (by internal and by cumulative time) come back as text in ``"profile"``.
    """
    cpus = workload.get("cpus")
    if cpus:
        with pinned(set(cpus)):
            return _measure(runner, workload)
    return _measure(runner, workload)


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Any:
    """Confine every thread of this process to ``cpus`` for the ``with`` block."""

    def set_all(mask: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), mask)

    before = os.sched_getaffinity(0)
    set_all(cpus)
    try:
        yield
    finally:
        set_all(before)


def _measure(runner: Runner, workload: dict[str, Any]) -> dict[str, Any]:
    if workload["workload"] == "to_list":
        docs, size = runner.collection_bytes(workload["collection"])
    else:
        docs, size = 0, 0
    warmup = dict(workload, ops=workload.get("warmup", 0))
    if warmup["workload"] == "pending":
        warmup.update(workload="concurrent", concurrency=100, ops=workload.get("warmup", 0))
    if warmup["ops"]:
        runner.execute(warmup, timed=False)
    profiler = cProfile.Profile() if workload.get("profile") else None
    if profiler is not None:
        profiler.enable()
    result = runner.execute(workload, timed=True)
    if profiler is not None:
        profiler.disable()
        result["profile"] = _profile_text(profiler, int(workload.get("profile_top", 30)))
    if workload["workload"] == "pending":
        result["ops"] = workload["concurrency"] * workload["ops_per_task"]
    else:
        result["ops"] = workload["ops"]
    if workload["workload"] == "to_list":
        result["docs_per_query"] = docs
        result["bytes_per_query"] = size
    result["loadavg"] = list(os.getloadavg())
    return result


#: Profile entries that are the async machinery rather than PyMongo's own work.
MACHINERY = r"motor/|greenlet|asyncio/|selectors|tornado/|concurrent/|threading"


#: Groups for the profile's summary: (name, substring of the entry's file or name).
PROFILE_GROUPS = (
    ("socket system calls", "of '_socket.socket' objects"),
    ("greenlet switches", "greenlet"),
    ("motor/", "/motor/"),
    ("pymongo/ and bson/", "/pymongo/"),
    ("pymongo/ and bson/", "/bson/"),
    ("pymongo/ and bson/", "pymongo._cmessage"),
    ("pymongo/ and bson/", "bson._cbson"),
    ("asyncio and selectors", "/asyncio/"),
    ("asyncio and selectors", "selectors.py"),
    ("asyncio and selectors", "select.epoll"),
    ("tornado/", "/tornado/"),
    ("threads and executors", "/concurrent/"),
    ("threads and executors", "threading.py"),
    ("the benchmark worker", "compare_worker.py"),
)


def _profile_shares(profiler: cProfile.Profile) -> str:
    """Internal time summed by group (motor, pymongo, asyncio, ...), as text."""
    stats: Any = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        where = f"{filename} {name}"
        group = next((g for g, pattern in PROFILE_GROUPS if pattern in where), "other")
        totals[group] = totals.get(group, 0.0) + tottime
    whole = sum(totals.values()) or 1.0
    lines = [f"--- internal time by group (profiled total {whole:.3f} s)"]
    for group, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        lines.append(f"  {group:<24} {seconds:8.3f} s  {seconds / whole:6.1%}")
    return "\n".join(lines) + "\n\n"


def _profile_text(profiler: cProfile.Profile, top: int) -> str:
    """Top entries by internal time: all code, then only the async machinery.

    Cumulative times are left out: greenlet switches make cProfile charge a suspended
    call with the time other greenlets ran, so they are meaningless here.
    """
    out = io.StringIO()
    out.write(_profile_shares(profiler))
    for title, restrictions in (
        ("all code", [top]),
        (f"entries matching {MACHINERY!r}", [MACHINERY, top]),
    ):
        out.write(f"--- by internal time, {title}\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(*restrictions)
    text = out.getvalue()
    for prefix in sorted({p for p in sys.path if p}, key=len, reverse=True):
        text = text.replace(prefix.rstrip("/") + "/", "")
    return text


def serve(lines: Any, reply: Callable[[dict[str, Any]], None]) -> None:
    """Answer the setup line, then each run line, until ``quit`` or end of input."""
    setup = json.loads(next(lines))
    if setup.get("repo"):
        sys.path.insert(0, setup["repo"])
    kind = setup["client"]
    if kind not in RUNNERS:
        raise ValueError(f"unknown client {kind!r}; expected one of {CLIENT_KINDS}")
    runner = RUNNERS[kind](setup)
    try:
        runner.start()
        runner.check(setup.get("small", "small"), setup.get("insert", "insert"))
        info = runner.info()
        info.update(
            client=kind,
            pid=os.getpid(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            executable=sys.executable,
        )
        reply({"ok": True, "info": info})
        for line in lines:
            request = json.loads(line)
            if request.get("quit"):
                break
            try:
                reply({"ok": True, "result": measure(runner, request)})
            except Exception:
                reply({"error": traceback.format_exc()})
    finally:
        runner.close()


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to stderr
    sys.stdout = sys.stderr

    def reply(message: dict[str, Any]) -> None:
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    lines = iter(sys.stdin.readline, "")
    status = 0
    try:
        serve(lines, reply)
    except StopIteration:
        pass
    except Exception:
        reply({"error": traceback.format_exc()})
        status = 1
    if EXIT_WITHOUT_FINALIZING:
        proto.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
