"""Run each behaviour test once per framework, with a loop-stall probe around it.

A test is an ``async def`` taking the ``fw`` fixture::

    async def test_insert(fw, server):
        client = fw.client(server.uri)
        await client.db.coll.insert_one({})
        assert fw.probe.max_gap < 0.010

``fw`` is parametrised over "asyncio" and "tornado".  :func:`pytest_pyfunc_call` runs
the coroutine on a fresh event loop of that framework (``asyncio.new_event_loop`` or a
Tornado ``IOLoop``), with a :class:`LoopProbe` ticking every millisecond for the whole
test.  At teardown it closes the clients the test made, then checks that no child
greenlet is left parked; the terminal summary reports the longest stall seen per test.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gc
import inspect
import json
import os
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, cast

import greenlet
import pymongo
import pytest
from pymongo import monitoring

import motor.green.hub
from motor.green.hub import Child, Hub

__all__ = [
    "MAX_RUNS_PER_ITERATION",
    "Framework",
    "LoopProbe",
    "LoopStalled",
    "assert_no_stall",
    "fw",
    "lasting",
    "open_fds",
    "parked_children",
    "pauses",
    "pool_counters",
    "pytest_pyfunc_call",
    "pytest_terminal_summary",
    "short_drain",
    "timed_children",
]

TEST_TIMEOUT = float(os.environ.get("ASYNC_TEST_TIMEOUT", "60"))

# The longest stall per test (wall clock, loop-thread CPU, the driver's CPU, the second
# most loop-thread CPU), for the terminal summary.
_stalls: dict[str, tuple[float, float, float, float]] = {}
# The first run's figures of the tests run again after a LoopStalled failure.
_rerun_stalls: dict[str, tuple[float, float, float, float]] = {}
# The probe of the test running now.
_active_probe: LoopProbe | None = None


#: The most child runs (switches into a child greenlet) the hub may make in one loop
#: iteration, for tests that wake hundreds of operations at once.  Its work budget
#: (motor.green.hub.WORK_BUDGET, 0.35 ms) admits up to about 25 here; work that bypasses
#: the budget runs every waiting child in one iteration (100-200 in those tests).  Unlike
#: CPU time, the count does not grow when the machine is slow: fewer runs fit the budget.
MAX_RUNS_PER_ITERATION = 64


class LoopStalled(AssertionError):
    """A stall bound exceeded (:func:`assert_no_stall`, :meth:`LoopProbe.assert_below`).

    The session reruns a test that fails with it, once (pytest-rerunfailures, configured
    in ``pyproject.toml``), and the test fails if its second run exceeds a bound too.  A
    stall the driver causes happens on every run; the 2-core virtual machine's host, now
    and then, charges a thread 8-100 ms of CPU time for one gap in which it did ordinary
    work (a pure-Python loop of 1.3 ms measured up to 9.8 ms; doc/testing.rst), and that
    does not happen twice in a row in one test.
    """


#: With ``MOTOR_TEST_RERUN_ALL=1`` in the environment, every test's first stall check
#: fails, so that each test that checks a stall bound runs twice, as after a real
#: stall: a test whose second run meets the first run's data or state fails then.
FORCE_RERUN = os.environ.get("MOTOR_TEST_RERUN_ALL") == "1"
_forced: set[str] = set()


def assert_no_stall(value: float, bound: float, context: Any = None) -> None:
    """Raise :class:`LoopStalled` unless ``value`` (seconds) is under ``bound``."""
    if FORCE_RERUN:
        nodeid = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
        if nodeid not in _forced:
            _forced.add(nodeid)
            raise LoopStalled(f"loop stalled: forced (MOTOR_TEST_RERUN_ALL), bound {bound}")
    if not value < bound:
        detail = "" if context is None else f"; {context!r}"
        raise LoopStalled(f"loop stalled: {value * 1000:.2f} ms, bound {bound * 1000:g} ms{detail}")


class LoopProbe:
    """A task that sleeps 1 ms in a loop and records the longest gap between wake-ups.

    ``max_gap`` is the longest gap in wall-clock time.  ``max_busy`` is the most CPU time
    the loop's thread used within one gap: the work that kept the loop from ticking,
    which does not grow when other processes load the machine (but see
    :class:`LoopStalled` for virtual machines).  (Blocking waits use no
    CPU; Motor's green primitives refuse to block a running loop's thread, see
    :class:`motor.errors.WouldBlockError`, so they cannot hide there.)  ``max_gap`` also
    counts time the thread was not scheduled.  ``max_busy`` leaves out the garbage
    collector's pauses on the loop's thread: their length is the size of the whole
    process's heap (the test session's), set off by whoever allocates; ``max_gc`` is the
    longest of them.

    A gap's CPU time is the loop's whole iteration: the driver's work, and the
    application's too (the steps of every task the iteration woke).  The driver's own
    share is what its child greenlets ran, timed on each switch into one while the
    probe runs (the hub's work budget bounds it per iteration): ``max_driver`` is the
    most of it in one gap, ``max_slice`` the longest single run of a child.  Stall
    bounds hold those, and ``second_busy``, the second most CPU in one gap
    (:meth:`assert_below`, :attr:`held`): a driver that holds the loop does so in every
    gap it works in, while a gap that the virtual machine's host stretched once (an
    interrupt, a time slice charged to the thread) stands alone.  ``max_busy`` is
    reported.
    """

    def __init__(self) -> None:
        self.max_gap = 0.0
        self.max_busy = 0.0
        self.max_gc = 0.0
        self.ticks = 0
        # The second most CPU in one gap, and the driver's own share of the gaps.
        self.second_busy = 0.0
        self.max_driver = 0.0
        self.max_slice = 0.0
        self._driver_cpu = 0.0
        # Child runs per loop iteration (the hub's count of iterations): the most in one.
        self.max_runs = 0
        self._iteration = -1
        self._runs = 0
        self._task: asyncio.Task[None] | None = None
        self._last = 0.0
        self._last_cpu = 0.0
        # The loop thread's CPU time in the collector, in total, and where the current
        # collection started (None: none running on that thread).
        self._thread = 0
        self._gc_cpu = 0.0
        self._gc_started: float | None = None
        # The loop thread's CPU time in uncounted() blocks, in total.
        self._uncounted_cpu = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self._last_cpu = self._cpu()
        self._thread = threading.get_ident()
        self._task = asyncio.ensure_future(self._run())

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if threading.get_ident() != self._thread:
            return
        if phase == "start":
            self._gc_started = time.thread_time()
        elif self._gc_started is not None:
            pause = time.thread_time() - self._gc_started
            self._gc_started = None
            self._gc_cpu += pause
            if pause > self.max_gc:
                self.max_gc = pause

    async def _run(self) -> None:
        gc.callbacks.append(self._on_gc)
        try:
            while True:
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                cpu = self._cpu()
                gap = now - self._last
                busy = cpu - self._last_cpu
                self._last = now
                self._last_cpu = cpu
                self.ticks += 1
                if gap > self.max_gap:
                    self.max_gap = gap
                if busy > self.second_busy:
                    if busy > self.max_busy:
                        self.second_busy = self.max_busy
                        self.max_busy = busy
                    else:
                        self.second_busy = busy
                if self._driver_cpu > self.max_driver:
                    self.max_driver = self._driver_cpu
                self._driver_cpu = 0.0
        finally:
            gc.callbacks.remove(self._on_gc)

    @contextlib.contextmanager
    def uncounted(self) -> Iterator[None]:
        """Leave the loop thread's CPU time inside the block out of ``max_busy``.

        For a test's own bookkeeping between two ticks (a canceller walking thousands
        of tasks' frames to choose which to cancel, a launcher creating tasks): that
        is not the driver holding the loop.  Keep the driver's calls out of the block.
        """
        started = time.thread_time()
        collected = self._gc_cpu
        try:
            yield
        finally:
            # A collection inside the block is left out once, as the collector's.
            spent = time.thread_time() - started - (self._gc_cpu - collected)
            self._uncounted_cpu += spent

    @property
    def held(self) -> float:
        """What the stall bounds hold (seconds): the most the driver's children ran in one
        gap, or the second most CPU the loop's thread used in one gap, whichever is more
        (see :meth:`assert_below`)."""
        return max(self.max_driver, self.second_busy)

    def assert_below(self, bound: float) -> None:
        """Raise :class:`LoopStalled` unless the driver's children ran less than ``bound``
        (seconds) in every gap (``max_driver``), and the loop's thread was busy that long
        in one gap at most (``second_busy``).

        The first is what the driver's own work does to the loop.  The second catches a
        stall of any other code that recurs, the driver's wrappers outside its children
        included (each call's), and lets through one gap that stands alone: the test's
        own code once, or a gap that the virtual machine's host stretched (see
        :class:`LoopStalled`), which is what made a bound on ``max_busy`` fail when the
        machine was busy.  ``max_busy`` stays in the session's report.
        """
        context = (
            f"driver's children {self.max_driver * 1000:.2f} ms in one gap, longest run "
            f"{self.max_slice * 1000:.2f} ms; loop thread {self.max_busy * 1000:.2f} ms in "
            f"the busiest gap, {self.second_busy * 1000:.2f} ms in the second; longest gap "
            f"{self.max_gap * 1000:.2f} ms"
        )
        assert_no_stall(self.max_driver, bound, f"the driver's children: {context}")
        assert_no_stall(self.second_busy, bound, f"a recurring stall: {context}")

    def child_ran(self, cpu: float, iteration: int = -1) -> None:
        """Count ``cpu`` seconds of the loop thread's CPU that a child greenlet ran, in
        the loop iteration numbered ``iteration`` by its hub."""
        self._driver_cpu += cpu
        if cpu > self.max_slice:
            self.max_slice = cpu
        if iteration != self._iteration:
            self._iteration = iteration
            self._runs = 0
        self._runs += 1
        if self._runs > self.max_runs:
            self.max_runs = self._runs

    def _cpu(self) -> float:
        # The loop thread's CPU time, less the collector's and uncounted blocks'.
        return time.thread_time() - self._gc_cpu - self._uncounted_cpu

    def skip_gap(self) -> None:
        """Do not count the time since the last tick (test code blocked on purpose)."""
        self._last = time.perf_counter()
        self._last_cpu = self._cpu()
        self._driver_cpu = 0.0

    def reset(self) -> None:
        """Forget the gaps seen so far (measure only what follows)."""
        self.max_gap = 0.0
        self.max_busy = 0.0
        self.second_busy = 0.0
        self.max_gc = 0.0
        self.max_driver = 0.0
        self.max_slice = 0.0
        self.max_runs = 0
        self.skip_gap()

    async def settle(self) -> None:
        """Let the probe tick a few times, then reset it."""
        await asyncio.sleep(0.02)
        self.reset()

    async def stop(self) -> float:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return self.max_gap


@contextlib.contextmanager
def timed_children(probe: LoopProbe) -> Iterator[None]:
    """Charge each run of a child greenlet to ``probe`` (:meth:`LoopProbe.child_ran`).

    The hub enters a child only by ``switch`` or ``throw``, and a run ends when the
    child switches back: it waits, or its call is over.
    """
    plain_switch = greenlet.greenlet.switch
    plain_throw = greenlet.greenlet.throw

    def switch(self: Child, *args: Any, **kwargs: Any) -> Any:
        started = probe._cpu()
        try:
            return plain_switch(self, *args, **kwargs)
        finally:
            probe.child_ran(probe._cpu() - started, self.hub._clock.iteration)

    def throw(self: Child, *args: Any) -> Any:
        started = probe._cpu()
        try:
            return plain_throw(self, *args)
        finally:
            probe.child_ran(probe._cpu() - started, self.hub._clock.iteration)

    setattr(Child, "switch", switch)  # noqa: B010 (typed as greenlet's own method)
    setattr(Child, "throw", throw)  # noqa: B010
    try:
        yield
    finally:
        delattr(Child, "switch")
        delattr(Child, "throw")


class Loops:
    """Event loops of one framework, made, run and closed by the test itself."""

    def __init__(self, name: str) -> None:
        self.name = name

    def new(self) -> Any:
        """A new loop: an asyncio loop (uvloop's for "uvloop"), or a Tornado ``IOLoop``
        (not made current)."""
        if self.name == "asyncio":
            return asyncio.new_event_loop()
        if self.name == "uvloop":
            import uvloop

            return uvloop.new_event_loop()
        from tornado.ioloop import IOLoop

        return IOLoop(make_current=False)

    def asyncio_loop(self, loop: Any) -> asyncio.AbstractEventLoop:
        if self.name != "tornado":
            return loop  # type: ignore[no-any-return]
        return loop.asyncio_loop  # type: ignore[no-any-return]

    def run(self, loop: Any, fn: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``fn()`` on ``loop`` until it is done; return its result."""
        if self.name != "tornado":
            return loop.run_until_complete(fn())
        return loop.run_sync(fn)

    def close(self, loop: Any) -> None:
        if self.name != "tornado":
            loop.close()
        else:
            loop.close(all_fds=False)

    def client(self, *args: Any, **kwargs: Any) -> Any:
        """A client of this framework, unbound unless ``io_loop=`` is given."""
        if self.name != "tornado":
            from motor.motor_asyncio import AsyncIOMotorClient

            return AsyncIOMotorClient(*args, **kwargs)
        from motor.motor_tornado import MotorClient

        return MotorClient(*args, **kwargs)


def close_client(loops: Loops, client: Any, loop: Any = None) -> None:
    """Close ``client`` on ``loop``, else on a new loop of its own."""

    async def close() -> None:
        await client.close()

    if loop is not None:
        loops.run(loop, close)
        return
    loop = loops.new()
    try:
        loops.run(loop, close)
    finally:
        loops.close(loop)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with ``args`` in a fresh interpreter (this one's executable); assert
    that it exits with status 0 (its stderr is the message); return the process."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


def run_in_child(body: Callable[[], None], timeout: float = 60) -> None:
    """Run ``body()`` in a forked child process; raise AssertionError with the child's
    traceback if it raises, and kill it if it runs longer than ``timeout`` seconds."""
    import signal
    import traceback

    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe and the exit status
        os.close(read)
        code = 0
        try:
            signal.alarm(int(timeout))  # the default action ends the child
            body()
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    try:
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
    finally:
        os.close(read)
        _, status = os.waitpid(pid, 0)
    report = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, report or f"child exit status {status}"


class Framework:
    """What a test needs to know about the framework it runs under."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.probe = LoopProbe()
        self.clients: list[Any] = []
        if name == "asyncio":
            from motor.motor_asyncio import AsyncIOMotorClient

            self.Client: Any = AsyncIOMotorClient
        else:
            from motor.motor_tornado import MotorClient

            self.Client = MotorClient

    def client(self, *args: Any, **kwargs: Any) -> Any:
        """A client for this framework, closed at the end of the test."""
        if self.name == "tornado":
            from tornado.ioloop import IOLoop

            kwargs.setdefault("io_loop", IOLoop.current())
        client = self.Client(*args, **kwargs)
        self.clients.append(client)
        return client

    def run(self, coro_fn: Any, kwargs: dict[str, Any]) -> None:
        async def main() -> None:
            global _active_probe
            _active_probe = self.probe
            self.probe.start()
            try:
                with timed_children(self.probe):
                    await asyncio.wait_for(coro_fn(**kwargs), TEST_TIMEOUT)
            finally:
                for client in self.clients:
                    future = client.close()
                    if future is not None:
                        await future
                await self.probe.stop()
                _active_probe = None

        if self.name == "asyncio":
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(main())
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
        else:
            from tornado.ioloop import IOLoop

            io_loop = IOLoop(make_current=False)
            try:
                io_loop.run_sync(main)
            finally:
                io_loop.close(all_fds=False)


@pytest.fixture(params=["asyncio", "tornado"])
def fw(request: pytest.FixtureRequest) -> Iterator[Framework]:
    """The framework a test body runs under; see the module docstring."""
    framework = Framework(request.param)
    yield framework
    probe = framework.probe
    nodeid = request.node.nodeid
    if nodeid in _stalls:  # a rerun (see LoopStalled): the first run's figures stay reported
        _rerun_stalls[nodeid] = _stalls[nodeid]
    _stalls[nodeid] = (probe.max_gap, probe.max_busy, probe.max_driver, probe.second_busy)
    leftover = parked_children()
    assert not leftover, f"{len(leftover)} child greenlet(s) left parked: {leftover!r}"


@pytest.fixture
def short_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a loop waits at most 0.1 s (instead of ``UNAWAITED_TIMEOUT``'s 5 s) for the
    calls nobody awaits (``Hub.finish_unawaited``): for tests whose calls stay parked on
    purpose until the loop closes, on a server that never answers them."""
    monkeypatch.setattr(motor.green.hub, "UNAWAITED_TIMEOUT", 0.1)


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts ``Hub.pause`` calls: the turns a child gave the loop in the middle of
    its work (a large batch decoded or a large message sent in pieces)."""
    counter = [0]
    original = Hub.pause

    def pause(self: Hub) -> None:
        counter[0] += 1
        original(self)

    monkeypatch.setattr(Hub, "pause", pause)
    yield counter


@contextlib.asynccontextmanager
async def loop_turns() -> AsyncIterator[list[int]]:
    """Count the loop's turns while the block runs: ``[n]``, the times a task that only
    yields (``asyncio.sleep(0)``) ran."""
    turns = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0)
            turns[0] += 1

    ticker = asyncio.ensure_future(tick())
    try:
        yield turns
    finally:
        ticker.cancel()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests that take ``fw`` under that framework's loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    funcargs = pyfuncitem.funcargs
    if "fw" not in funcargs:
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: async tests must take the 'fw' fixture")
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    cast(Framework, funcargs["fw"]).run(pyfuncitem.obj, kwargs)
    return True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _stalls:
        return
    report = os.environ.get("MOTOR_STALLS_JSON")
    if report:
        # Every probed test's longest gap and most CPU in one gap (seconds), for finding
        # tests whose stall bounds have little margin.
        with open(report, "w") as file:
            json.dump(
                {
                    nodeid: {"gap": gap, "busy": busy, "driver": driver, "second": second}
                    for nodeid, (gap, busy, driver, second) in _stalls.items()
                },
                file,
                indent=1,
            )
    terminalreporter.write_sep(
        "-",
        "loop-stall probe: most loop-thread CPU between 1 ms ticks "
        "(the driver's children's share, the second busiest gap, the longest gap)",
    )
    worst = sorted(_stalls.items(), key=lambda item: item[1][1], reverse=True)[:5]
    for nodeid, (gap, busy, driver, second) in worst:
        terminalreporter.write_line(
            f"{busy * 1000:8.2f} ms busy {driver * 1000:8.2f} ms driver "
            f"{second * 1000:8.2f} ms second {gap * 1000:8.2f} ms gap  {nodeid}"
        )
    for nodeid, (_, busy, driver, second) in _rerun_stalls.items():
        again = _stalls[nodeid]
        terminalreporter.write_line(
            f"run again after a stall: {nodeid}: first run {busy * 1000:.2f} ms busy "
            f"({driver * 1000:.2f} ms driver, {second * 1000:.2f} ms second), second run "
            f"{again[1] * 1000:.2f} ms busy ({again[2] * 1000:.2f} ms driver, "
            f"{again[3] * 1000:.2f} ms second)"
        )
    longest = max(gap for gap, _, _, _ in _stalls.values())
    most_driver = max(driver for _, _, driver, _ in _stalls.values())
    terminalreporter.write_line(
        f"{len(_stalls)} framework tests probed; most CPU in one gap "
        f"{worst[0][1][1] * 1000:.2f} ms, of the driver's children "
        f"{most_driver * 1000:.2f} ms; longest gap {longest * 1000:.2f} ms"
    )


def parked_children() -> list[Child]:
    """Child greenlets running a call (started and not finished; idle ones excluded).

    Scanning the heap blocks the loop; the running probe does not count that gap.
    """
    gc.collect()
    # getattr: a child dropped by a thread that has exited may linger with its slots
    # cleared (greenlet cannot end it there); it runs nothing.
    found = [
        o
        for o in gc.get_objects()
        if type(o) is Child and o and getattr(o, "future", None) is not None
    ]
    if _active_probe is not None:
        _active_probe.skip_gap()
    return found


def open_fds() -> set[int]:
    """The file descriptors this process has open."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


async def fds_back_to(
    fds: set[int], exclude: Callable[[], Iterable[int]] = tuple
) -> dict[int, str]:
    """The descriptors beyond ``fds`` (and those ``exclude()`` names, an in-process test
    server's own sockets, say) still open after at most 5 s, with what each one is:
    none, normally."""

    def leaked() -> dict[int, str]:
        found = {}
        for fd in open_fds() - fds - set(exclude()):
            try:
                found[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass  # closed meanwhile
        return found

    deadline = time.monotonic() + 5
    while leaked() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return await lasting(leaked)


async def lasting(leaked: Callable[[], dict[int, str]]) -> dict[int, str]:
    """Of the descriptors ``leaked()`` names (with what each one is), those it still names,
    as the same file, a moment later.

    Another thread may hold a descriptor for a moment whenever it likes: a resolver's
    socket inside ``getaddrinfo``, which no Python object owns.  Opened between the last
    check of a wait and the listing, it is not left behind; a leak stays.
    """
    found = leaked()
    if not found:
        return found
    await asyncio.sleep(0.25)
    again = leaked()
    return {fd: what for fd, what in found.items() if again.get(fd) == what}


class ClosedConnections(monitoring.ConnectionPoolListener):
    """Counts the connections a client closed, by reason (``reasons["error"]``: those
    closed because an operation on them failed)."""

    def __init__(self) -> None:
        self.reasons: collections.Counter[str] = collections.Counter()
        # When set, what it returns is recorded in closed_at for each connection closed.
        self.on_close: Callable[[], Any] | None = None
        self.closed_at: list[Any] = []

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.reasons[event.reason] += 1
        if self.on_close is not None:
            self.closed_at.append(self.on_close())

    def _ignore(self, event: Any) -> None:
        pass

    pool_created = pool_ready = pool_cleared = pool_closed = _ignore
    connection_created = connection_ready = _ignore
    connection_check_out_started = connection_check_out_failed = _ignore
    connection_checked_out = connection_checked_in = _ignore


def pool_counters(client: Any) -> dict[str, int]:
    """Checkout counters of every application pool of a Motor or PyMongo client."""
    # Not getattr(client, "delegate"): on a PyMongo client that is a database.
    delegate = client if isinstance(client, pymongo.MongoClient) else client.delegate
    totals = {"requests": 0, "active_sockets": 0, "pending": 0, "operation_count": 0}
    topology = delegate._topology
    for server in topology._servers.values():
        pool = server.pool
        totals["requests"] += pool.requests
        totals["active_sockets"] += pool.active_sockets
        totals["pending"] += pool._pending
        totals["operation_count"] += pool.operation_count
    return totals


Fetch = Callable[..., Awaitable[Any]]


@contextlib.asynccontextmanager
async def serve_on_loopback(
    app: Any, dumps: Callable[[Any], str] = json.dumps
) -> AsyncIterator[Fetch]:
    """Serve the Tornado application ``app`` on a loopback port; yield
    ``fetch(path, method="GET", body=None)``, which sends ``body`` encoded by ``dumps``
    and returns the ``HTTPResponse`` whatever its status."""
    import tornado.httpserver
    import tornado.netutil
    from tornado.httpclient import AsyncHTTPClient

    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    http_server = tornado.httpserver.HTTPServer(app)
    http_server.add_sockets(sockets)
    port = sockets[0].getsockname()[1]
    http_client = AsyncHTTPClient(force_instance=True)

    async def fetch(path: str, method: str = "GET", body: Any = None) -> Any:
        return await http_client.fetch(
            f"http://127.0.0.1:{port}{path}",
            method=method,
            body=None if body is None else dumps(body),
            raise_error=False,
        )

    try:
        yield fetch
    finally:
        http_client.close()
        http_server.stop()
        await http_server.close_all_connections()


def instrumented(function: Callable[..., Any], kind: str, seen: list[str] | None = None) -> Any:
    """``function`` wrapped as instrumentations (elastic-apm, New Relic) wrap PyMongo's
    methods: a ``functools.wraps`` function (``kind`` "functools"), or a proxy object like
    wrapt's ("proxy": ``__wrapped__``, and a ``__get__`` that binds).  Each call appends
    the function's name to ``seen``, if given."""
    name = function.__name__

    def call(*args: Any, **kwargs: Any) -> Any:
        if seen is not None:
            seen.append(name)
        return function(*args, **kwargs)

    if kind == "functools":
        return functools.wraps(function)(call)

    class Proxy:
        __wrapped__ = function

        def __get__(self, instance: Any, owner: Any = None) -> Any:
            return self if instance is None else types.MethodType(self, instance)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return call(*args, **kwargs)

    return Proxy()
