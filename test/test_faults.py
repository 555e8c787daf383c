"""The fault suite, part 1: servers that vanish, replies that stall or arrive half, full
pools, close() under load and interpreter shutdown.

Each scenario is one test body run under asyncio and Tornado (the ``fw`` fixture) against
the real test server, most of them through :class:`test.faultproxy.FaultProxy`.  The same
scenario also runs once with PyMongo's sync client in worker threads, and the test asserts
that Motor's outcome has the same exception class (or that both retried transparently).
Every scenario then checks that nothing leaked: no file descriptor (``open_fds`` before and
after, the proxy's own connections closed), no parked child greenlet, the pools' checkout
counters back to idle, and that the loop was not held ``MAX_STALL`` between two ticks of
the stall probe (``fw.probe.held``: by the driver's children in any gap, or by the loop's
thread in more than one).  Waits are bounded only so
that a hang fails; no test asserts how long something took.  The stall is measured with
the cyclic garbage collector off (see :func:`start_measuring`): its pauses are the
interpreter's, and what a collection costs after each scenario is reported instead.

FerretDB's SQLite backend loses concurrent updates (50 threads x 100 acknowledged ``$inc``
on one document ended at 224 with sync PyMongo alone), so "no acknowledged write lost" is
checked with inserts of distinct ``_id``s, never with counters.

``MOTOR_FAULT_REPORT=path`` appends one JSON line per scenario and framework (outcomes,
longest stall, leaks, data lost) to ``path``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import gc
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pymongo
import pytest
from pymongo import monitoring
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from test import server as test_server
from test.faultproxy import FaultProxy
from test.framework import (
    MAX_RUNS_PER_ITERATION,
    ClosedConnections,
    Framework,
    assert_no_stall,
    open_fds,
    parked_children,
    pool_counters,
)

MAX_STALL = 0.010
IDLE = {"requests": 0, "active_sockets": 0, "pending": 0, "operation_count": 0}
# Bounds for waits that must not hang the run (never expected to be reached).
BOUND = 30.0
# The size of each of the four documents of the large reply.  Receiving and decoding a
# reply costs the loop's thread about 1.5 ms per MB in one step (a fresh buffer, the copy
# and the decoding), so the reply is 2 MB.
BIG = 512 * 1024

_sync_outcomes: dict[str, Any] = {}


# --------------------------------------------------------------------------- helpers


def error_name(exc: BaseException | None) -> str:
    return "ok" if exc is None else type(exc).__name__


async def outcome(awaitable: Awaitable[Any]) -> PyMongoError | None:
    """The PyMongo exception ``awaitable`` raises, or None if it succeeds."""
    try:
        await awaitable
    except PyMongoError as exc:
        return exc
    return None


def sync_outcome_of(fn: Callable[[], Any]) -> PyMongoError | None:
    try:
        fn()
    except PyMongoError as exc:
        return exc
    return None


async def in_thread(fn: Callable[..., Any], *args: Any, executor: Any = None) -> Any:
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)


async def sync_once(key: str, fn: Callable[[], Any]) -> Any:
    """Run the sync-PyMongo side of scenario ``key`` once per session (in a worker thread)
    and remember its outcome: both frameworks compare against the same run."""
    if key not in _sync_outcomes:
        _sync_outcomes[key] = await in_thread(fn)
    return _sync_outcomes[key]


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def sync_wait_until(predicate: Callable[..., bool], what: str, timeout: float = BOUND) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def the_pool(client: Any) -> Any:
    delegate = client if isinstance(client, pymongo.MongoClient) else client.delegate
    servers = list(delegate._topology._servers.values())
    assert len(servers) == 1, servers
    return servers[0].pool


def describe_fds(fds: set[int]) -> dict[int, str]:
    found = {}
    for fd in fds:
        with contextlib.suppress(OSError):
            found[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return found


async def assert_no_leaks(fds_before: set[int], *proxies: FaultProxy) -> None:
    """Every client is closed by now: the proxies' connections close, and the process has
    no descriptor it did not have before."""
    for proxy in proxies:
        assert await in_thread(proxy.wait_idle, BOUND), proxy.connections
    deadline = time.monotonic() + BOUND
    while open_fds() - fds_before and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not (open_fds() - fds_before), describe_fds(open_fds() - fds_before)
    assert parked_children() == []


async def start_measuring(fw: Framework) -> None:
    """Start the scenario's stall measurement on a collected heap, with the cyclic
    garbage collector off until :func:`stop_measuring`.

    A collection pauses the whole process for as long as the objects it walks take
    (doc/green.rst, "Known limits"): here up to tens of ms for a full one, and 4-12 ms for
    the generation-1 collections that the tracebacks of a hundred failed operations
    trigger.  That is the interpreter's pause, not the driver holding the loop, and where
    it falls is chance; what it would cost is measured and reported separately.  What is
    alive now is frozen first, as the harness does at start-up and as doc/green.rst advises
    applications that care about latency.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    fw.probe.skip_gap()
    await fw.probe.settle()


def stop_measuring(fw: Framework) -> float:
    """The stall since :func:`start_measuring` (``fw.probe.held``); turn the collector
    back on and collect, recording what that cost (``fw.gc_cost``: ms, objects
    collected)."""
    busy = fw.probe.held
    gc.enable()
    started = time.thread_time()
    collected = gc.collect()
    fw.gc_cost = ((time.thread_time() - started) * 1000, collected)  # type: ignore[attr-defined]
    fw.probe.skip_gap()
    return busy


@pytest.fixture(autouse=True)
def _collector_back_on() -> Iterator[None]:
    yield
    gc.enable()


def report(fw: Framework, busy: float, scenario: str, **fields: Any) -> None:
    path = os.environ.get("MOTOR_FAULT_REPORT")
    if not path:
        return
    line = {
        "scenario": scenario,
        "fw": fw.name,
        "busy_ms": round(busy * 1000, 2),
        "gc_after": getattr(fw, "gc_cost", None),
    }
    line.update(fields)
    with open(path, "a") as out:
        out.write(json.dumps(line, default=str) + "\n")


class Commands(monitoring.CommandListener):
    """Records command events as (name, "started" | "succeeded" | "failed")."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append((event.command_name, "started"))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events.append((event.command_name, "succeeded"))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append((event.command_name, "failed"))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def launcher() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """One long-lived thread that launches, kills and restarts servers: a launched server
    gets SIGTERM when the thread that started it ends (PR_SET_PDEATHSIG)."""
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="launcher")
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def crash_server(
    launcher: concurrent.futures.ThreadPoolExecutor,
) -> Iterator[test_server.Server]:
    """A server of the module's own, to kill and restart."""
    server = launcher.submit(test_server.launch, "plain").result(120)
    yield server
    launcher.submit(test_server.stop, server).result(120)


@pytest.fixture
def proxy(server: Any) -> Iterator[FaultProxy]:
    """A fault proxy in front of the main test server."""
    with FaultProxy((server.host, server.port)) as fault_proxy:
        yield fault_proxy


@pytest.fixture(scope="module")
def big_docs(server: Any) -> str:
    """A collection of four 512 KiB documents: a find's first reply is about 2 MB."""
    with pymongo.MongoClient(server.uri) as client:  # type: pymongo.MongoClient[Any]
        coll = client.motor_test.faults_big
        coll.drop()
        coll.insert_many([{"_id": i, "s": chr(ord("a") + i) * BIG} for i in range(4)])
    return "faults_big"


@pytest.fixture(scope="module")
def scan_docs(server: Any) -> str:
    """A collection whose full scan takes the server longer than a few milliseconds."""
    with pymongo.MongoClient(server.uri) as client:  # type: pymongo.MongoClient[Any]
        coll = client.motor_test.faults_scan
        coll.drop()
        coll.insert_many([{"i": i, "s": "x" * 200} for i in range(20_000)])
    return "faults_scan"


def drop_collection(uri: str, name: str) -> None:
    with pymongo.MongoClient(uri) as client:  # type: pymongo.MongoClient[Any]
        client.motor_test.drop_collection(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- the proxy


def test_proxy_forwards_and_logs(server: Any) -> None:
    with FaultProxy((server.host, server.port)) as proxy:
        with pymongo.MongoClient(proxy.uri, directConnection=True) as client:  # type: pymongo.MongoClient[Any]
            assert client.admin.command("ping")["ok"] == 1
            client.motor_test.faults_proxy.find_one({"probe": 7})
        finds = proxy.commands("find")
        assert finds and finds[-1].doc["filter"] == {"probe": 7}
        assert proxy.commands("ping") and proxy.accepted >= 1
        assert proxy.wait_idle(10)


def test_proxy_delay_hold_and_cut(server: Any) -> None:
    with FaultProxy((server.host, server.port)) as proxy:
        with pymongo.MongoClient(proxy.uri, socketTimeoutMS=300, retryReads=False) as client:  # type: pymongo.MongoClient[Any]
            client.admin.command("ping")
            coll = client.motor_test.faults_proxy
            rule = proxy.delay(1.0, command="find")
            with pytest.raises(NetworkTimeout):
                coll.find_one()
            proxy.remove(rule)
            assert coll.find_one({"nothing": 1}) is None
            gate = proxy.hold(command="find", times=1)
            threading.Timer(0.1, gate.release).start()
            assert coll.find_one({"nothing": 1}) is None  # held, then let through
            proxy.cut(command="find", after_bytes=20)
            with pytest.raises(AutoReconnect):
                coll.find_one()
            assert coll.find_one({"nothing": 1}) is None  # the rule applied once
        assert proxy.wait_idle(10)


def test_proxy_blackhole_refuse_and_cut_all(server: Any) -> None:
    with FaultProxy((server.host, server.port)) as proxy:
        proxy.blackhole()
        conn = socket.create_connection(proxy.address, timeout=5)
        conn.sendall(b"\x10\x00\x00\x00" + b"\x00" * 12)
        conn.settimeout(0.2)
        with pytest.raises(socket.timeout):
            conn.recv(1)  # accepted and kept, never answered
        sync_wait_until(lambda: len(proxy.connections) == 1, "the blackholed connection")
        assert proxy.connections[0].blackholed
        proxy.cut_all()
        conn.settimeout(5)
        assert conn.recv(1) == b""
        conn.close()
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=5)
        proxy.accept()
        proxy.clear()
        with pymongo.MongoClient(proxy.uri, directConnection=True) as client:  # type: pymongo.MongoClient[Any]
            assert client.admin.command("ping")["ok"] == 1
        assert proxy.wait_idle(10)


# --------------------------------------------------------------------------- servers that vanish


async def test_server_absent_at_start(
    fw: Framework, launcher: concurrent.futures.ThreadPoolExecutor
) -> None:
    """No server at the address: ServerSelectionTimeoutError; once a server is started
    there, the same client succeeds."""
    fds = open_fds()
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 500, "heartbeatFrequencyMS": 500}
    started: list[test_server.Server] = []

    async def launch_on(port: int) -> None:
        started.append(await in_thread(lambda: test_server.launch(port=port), executor=launcher))

    try:
        port = free_port()
        client = fw.client(f"mongodb://127.0.0.1:{port}", **options)
        coll = client.motor_test.faults_absent
        await start_measuring(fw)
        before = await outcome(coll.find_one())
        await launch_on(port)
        after = await outcome(coll.insert_one({"x": 1}))
        while isinstance(after, ServerSelectionTimeoutError):  # the monitor not back yet
            after = await outcome(coll.insert_one({"x": 1}))
        assert (await coll.find_one({"x": 1}, {"_id": 0})) == {"x": 1}
        busy = stop_measuring(fw)
        assert pool_counters(client) == IDLE
        await client.close()

        def sync() -> tuple[str, str]:
            sync_port = free_port()
            with pymongo.MongoClient(f"mongodb://127.0.0.1:{sync_port}", **options) as c:  # type: pymongo.MongoClient[Any]
                first = sync_outcome_of(lambda: c.motor_test.faults_absent.find_one())
                started.append(launcher.submit(test_server.launch, port=sync_port).result(60))
                then = sync_outcome_of(lambda: c.motor_test.faults_absent.insert_one({"x": 1}))
                while isinstance(then, ServerSelectionTimeoutError):
                    then = sync_outcome_of(lambda: c.motor_test.faults_absent.insert_one({}))
                assert pool_counters(c) == IDLE
                return error_name(first), error_name(then)

        sync_result = await sync_once("absent", sync)
    finally:
        for srv in started:
            await in_thread(test_server.stop, srv, executor=launcher)
    assert (error_name(before), error_name(after)) == ("ServerSelectionTimeoutError", "ok")
    assert sync_result == (error_name(before), error_name(after)), sync_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds)
    report(
        fw,
        busy,
        "server absent at start",
        motor=[error_name(before), error_name(after)],
        sync=sync_result,
    )


class Workload:
    """Bookkeeping of the kill -9 scenario's workers (thread-safe: sync uses threads)."""

    WORKERS = 100

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.lock = threading.Lock()
        self.phase = "before"
        self.stop = False
        self.in_flight = 0
        self.successes = 0
        self.acked: list[str] = []
        self.acked_before_kill = 0
        self.in_flight_at_kill = 0
        self.errors: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.failed_in_outage: set[int] = set()  # workers
        self.ok_after_restart = 0  # operations

    def begin(self) -> str:
        with self.lock:
            self.in_flight += 1
            return self.phase

    def end(self, worker: int, phase: str, inserted: str | None, exc: BaseException | None) -> None:
        with self.lock:
            self.in_flight -= 1
            if exc is None:
                self.successes += 1
                if inserted is not None:
                    self.acked.append(inserted)
                if phase == "after":
                    self.ok_after_restart += 1
            else:
                self.errors[phase][type(exc).__name__] += 1
                if phase == "outage":
                    self.failed_in_outage.add(worker)

    def killing(self) -> None:
        with self.lock:
            self.phase = "outage"
            self.acked_before_kill = len(self.acked)
            self.in_flight_at_kill = self.in_flight

    # The phases' ends.  Inserts of 100 concurrent writers can take FerretDB/SQLite two
    # seconds (its write lock), so the run goes on until enough operations, not every
    # worker, succeeded after the restart.
    def warmed_up(self) -> bool:
        return self.successes >= 300

    def outage_seen(self) -> bool:
        """Every worker failed an operation it started while the server was down."""
        return len(self.failed_in_outage) == self.WORKERS

    def recovered(self) -> bool:
        return self.ok_after_restart >= 200

    def op(self, worker: int, n: int) -> tuple[str, Any]:
        """Odd steps insert a new _id; even steps read the worker's last acknowledged one."""
        if n % 2:
            return "insert", f"{self.tag}-{worker}-{n}"
        return "read", f"{self.tag}-{worker}-{n - 1}"

    def summary(self) -> dict[str, Any]:
        return {
            "in_flight_at_kill": self.in_flight_at_kill,
            "acked_before_kill": self.acked_before_kill,
            "acked": len(self.acked),
            "errors": {phase: dict(counter) for phase, counter in self.errors.items()},
        }


async def test_kill_9_with_100_operations_in_flight_and_restart(
    fw: Framework,
    crash_server: test_server.Server,
    launcher: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """SIGKILL the server under 100 concurrent inserts and reads, restart it on the same
    port and data: errors during the outage are PyMongo's, the same client then succeeds,
    and every acknowledged insert is there after the restart."""
    fds = open_fds()
    options: dict[str, Any] = {"serverSelectionTimeoutMS": 1000, "heartbeatFrequencyMS": 500}
    client = fw.client(crash_server.uri, **options)
    coll = client.motor_test.faults_crash
    # The _ids are new on every run (a rerun after a stall meets this run's documents).
    tag = f"motor-{fw.name}-{os.urandom(4).hex()}"
    await coll.insert_one({"_id": f"{tag}-seed"})
    work = Workload(tag)

    async def worker(w: int) -> None:
        n = 0
        while not work.stop:
            n += 1
            kind, _id = work.op(w, n)
            phase = work.begin()
            try:
                if kind == "insert":
                    await coll.insert_one({"_id": _id, "w": w})
                else:
                    await coll.find_one({"_id": _id})
            except PyMongoError as exc:
                work.end(w, phase, None, exc)
                await asyncio.sleep(0.02)
            else:
                work.end(w, phase, _id if kind == "insert" else None, None)

    await start_measuring(fw)
    workers = [asyncio.ensure_future(worker(w)) for w in range(Workload.WORKERS)]
    try:
        await wait_until(work.warmed_up, "the workload to run")
        work.killing()
        await in_thread(test_server.kill, crash_server, executor=launcher)
        await wait_until(work.outage_seen, "every worker to fail")
        await in_thread(test_server.restart, crash_server, executor=launcher)
        work.phase = "after"
        await wait_until(work.recovered, "operations to succeed")
    finally:
        work.stop = True
        await asyncio.gather(*workers)
    busy = stop_measuring(fw)
    present = await coll.count_documents({"_id": {"$in": work.acked}})
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> dict[str, Any]:
        sync_work = Workload(f"sync-{os.urandom(4).hex()}")
        with pymongo.MongoClient(crash_server.uri, **options) as c:  # type: pymongo.MongoClient[Any]
            sync_coll = c.motor_test.faults_crash

            def sync_worker(w: int) -> None:
                n = 0
                while not sync_work.stop:
                    n += 1
                    kind, _id = sync_work.op(w, n)
                    phase = sync_work.begin()
                    try:
                        if kind == "insert":
                            sync_coll.insert_one({"_id": _id, "w": w})
                        else:
                            sync_coll.find_one({"_id": _id})
                    except PyMongoError as exc:
                        sync_work.end(w, phase, None, exc)
                        time.sleep(0.02)
                    else:
                        sync_work.end(w, phase, _id if kind == "insert" else None, None)

            with concurrent.futures.ThreadPoolExecutor(Workload.WORKERS) as pool:
                futures = [pool.submit(sync_worker, w) for w in range(Workload.WORKERS)]
                try:
                    sync_wait_until(sync_work.warmed_up, "the sync workload")
                    sync_work.killing()
                    launcher.submit(test_server.kill, crash_server).result(60)
                    sync_wait_until(sync_work.outage_seen, "every sync worker to fail")
                    launcher.submit(test_server.restart, crash_server).result(60)
                    sync_work.phase = "after"
                    sync_wait_until(sync_work.recovered, "sync operations to succeed")
                finally:
                    sync_work.stop = True
                    for future in futures:
                        future.result(BOUND)
            result = sync_work.summary()
            result["present"] = sync_coll.count_documents({"_id": {"$in": sync_work.acked}})
            result["idle"] = pool_counters(c) == IDLE
        return result

    sync_result = await sync_once("kill", sync)
    motor_result = work.summary()
    assert present == len(work.acked), f"{len(work.acked) - present} acknowledged inserts lost"
    assert sync_result["present"] == sync_result["acked"], sync_result
    assert sync_result["idle"]
    # Errors only while the server was down, of the same classes as sync PyMongo's: the
    # operations in flight lose their connection (AutoReconnect; a read retried once may
    # then fail server selection), the ones started during the outage fail server
    # selection (or, before the client saw the server go, connecting: AutoReconnect).
    assert "after" not in motor_result["errors"], motor_result
    assert "after" not in sync_result["errors"], sync_result
    motor_classes = {name for c in motor_result["errors"].values() for name in c}
    sync_classes = {name for c in sync_result["errors"].values() for name in c}
    expected = {"AutoReconnect", "ServerSelectionTimeoutError"}
    assert motor_classes == sync_classes == expected, (motor_result, sync_result)
    assert "ServerSelectionTimeoutError" in motor_result["errors"]["outage"], motor_result
    assert work.in_flight_at_kill >= Workload.WORKERS // 2, motor_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds)
    report(fw, busy, "kill -9 and restart", motor=motor_result, sync=sync_result, lost=0)


# --------------------------------------------------------------------------- replies that stall


async def find_count(proxy: FaultProxy) -> int:
    return len(proxy.commands("find"))


async def test_reply_later_than_socket_timeout(fw: Framework, proxy: FaultProxy) -> None:
    fds = open_fds()
    options: dict[str, Any] = {"socketTimeoutMS": 300}
    client = fw.client(proxy.uri, **options)
    coll = client.motor_test.faults_delay
    await client.admin.command("ping")
    await start_measuring(fw)
    sent = await find_count(proxy)
    rule = proxy.delay(1.5, command="find")
    error = await outcome(coll.find_one())
    tries = await find_count(proxy) - sent
    proxy.remove(rule)
    assert await coll.find_one({"nothing": 1}) is None  # the next operation is fine
    busy = stop_measuring(fw)
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> tuple[str, int]:
        with pymongo.MongoClient(proxy.uri, **options) as c:  # type: pymongo.MongoClient[Any]
            c.admin.command("ping")
            sent = len(proxy.commands("find"))
            rule = proxy.delay(1.5, command="find")
            exc = sync_outcome_of(lambda: c.motor_test.faults_delay.find_one())
            tries = len(proxy.commands("find")) - sent
            proxy.remove(rule)
            assert c.motor_test.faults_delay.find_one({"nothing": 1}) is None
            assert pool_counters(c) == IDLE
            return error_name(exc), tries

    sync_result = await sync_once("socket timeout", sync)
    assert isinstance(error, NetworkTimeout), error
    assert (error_name(error), tries) == sync_result, sync_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(
        fw,
        busy,
        "reply later than socketTimeoutMS",
        motor=[error_name(error), tries],
        sync=sync_result,
    )


async def test_reply_later_than_csot_timeout(fw: Framework, proxy: FaultProxy) -> None:
    fds = open_fds()
    client = fw.client(proxy.uri)
    coll = client.motor_test.faults_delay
    await client.admin.command("ping")
    await start_measuring(fw)
    sent = await find_count(proxy)
    rule = proxy.delay(1.5, command="find")
    with pymongo.timeout(0.3):
        error = await outcome(coll.find_one())
    tries = await find_count(proxy) - sent
    proxy.remove(rule)
    assert await coll.find_one({"nothing": 1}) is None
    busy = stop_measuring(fw)
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> tuple[str, bool, int]:
        with pymongo.MongoClient(proxy.uri) as c:  # type: pymongo.MongoClient[Any]
            c.admin.command("ping")
            sent = len(proxy.commands("find"))
            rule = proxy.delay(1.5, command="find")
            with pymongo.timeout(0.3):
                exc = sync_outcome_of(lambda: c.motor_test.faults_delay.find_one())
            tries = len(proxy.commands("find")) - sent
            proxy.remove(rule)
            assert c.motor_test.faults_delay.find_one({"nothing": 1}) is None
            assert pool_counters(c) == IDLE
            assert exc is not None
            return error_name(exc), exc.timeout, tries

    sync_result = await sync_once("csot", sync)
    assert error is not None and error.timeout, error
    assert (error_name(error), error.timeout, tries) == sync_result, sync_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(
        fw, busy, "reply later than pymongo.timeout()", motor=error_name(error), sync=sync_result
    )


async def test_server_work_longer_than_max_time_ms(
    fw: Framework, server: Any, scan_docs: str
) -> None:
    """FerretDB enforces maxTimeMS: a scan longer than it fails on the server."""
    fds = open_fds()
    slow = {"s": {"$regex": "^y"}}  # no document matches: a full scan
    client = fw.client(server.uri)
    coll = client.motor_test[scan_docs]
    await client.admin.command("ping")
    await start_measuring(fw)
    error = await outcome(coll.find(slow).max_time_ms(5).to_list(None))
    assert await coll.find_one({"i": 3}, {"_id": 0, "i": 1}) == {"i": 3}
    busy = stop_measuring(fw)
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> str:
        with pymongo.MongoClient(server.uri) as c:  # type: pymongo.MongoClient[Any]
            exc = sync_outcome_of(lambda: list(c.motor_test[scan_docs].find(slow).max_time_ms(5)))
            assert pool_counters(c) == IDLE
            return error_name(exc)

    sync_result = await sync_once("maxTimeMS", sync)
    assert isinstance(error, ExecutionTimeout), error
    assert error_name(error) == sync_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds)
    report(fw, busy, "server work longer than maxTimeMS", motor=error_name(error), sync=sync_result)


async def test_connection_cut_half_way_through_a_large_reply(
    fw: Framework, proxy: FaultProxy, big_docs: str
) -> None:
    """A 2 MB reply cut after 1 MB: without retryable reads, AutoReconnect, no document
    returned, the command reported failed, the connection closed with reason "error";
    with them (the default), the read is retried once, transparently, in both drivers.
    The next operation on the client gets every byte."""
    fds = open_fds()
    full = [{"_id": i, "s": chr(ord("a") + i) * BIG} for i in range(4)]

    async def motor_run(retry: bool) -> tuple[str, int, list[tuple[str, str]], int, float]:
        closed, commands = ClosedConnections(), Commands()
        client = fw.client(proxy.uri, retryReads=retry, event_listeners=[closed, commands])
        coll = client.motor_test[big_docs]
        await client.admin.command("ping")
        await start_measuring(fw)
        sent = await find_count(proxy)
        proxy.cut(command="find", after_bytes=2 * BIG)
        docs: list[Any] = []

        async def read() -> None:
            docs.extend(await coll.find().to_list(None))

        error = await outcome(read())
        tries = await find_count(proxy) - sent
        events = [e for e in commands.events if e[0] == "find"]
        if error is not None:
            assert docs == []
        else:
            assert docs == full
        assert await coll.find().to_list(None) == full  # the next operation is fine
        busy = stop_measuring(fw)
        assert pool_counters(client) == IDLE
        await client.close()
        return error_name(error), tries, events, closed.reasons["error"], busy

    *no_retry, busy_no_retry = await motor_run(False)
    *with_retry, busy_with_retry = await motor_run(True)
    busy = max(busy_no_retry, busy_with_retry)

    def sync_run(retry: bool) -> list[Any]:
        closed, commands = ClosedConnections(), Commands()
        with pymongo.MongoClient(
            proxy.uri, retryReads=retry, event_listeners=[closed, commands]
        ) as c:  # type: pymongo.MongoClient[Any]
            c.admin.command("ping")
            sent = len(proxy.commands("find"))
            proxy.cut(command="find", after_bytes=2 * BIG)
            docs: list[Any] = []
            exc = sync_outcome_of(lambda: docs.extend(c.motor_test[big_docs].find()))
            tries = len(proxy.commands("find")) - sent
            events = [e for e in commands.events if e[0] == "find"]
            assert docs == ([] if exc is not None else full)
            assert list(c.motor_test[big_docs].find()) == full
            assert pool_counters(c) == IDLE
            return [error_name(exc), tries, events, closed.reasons["error"]]

    sync_no_retry, sync_with_retry = await sync_once(
        "cut", lambda: (sync_run(False), sync_run(True))
    )
    started, failed, succeeded = ("find", "started"), ("find", "failed"), ("find", "succeeded")
    assert no_retry == ["AutoReconnect", 1, [started, failed], 1], no_retry
    assert with_retry == ["ok", 2, [started, failed, started, succeeded], 1], with_retry
    assert sync_no_retry == no_retry and sync_with_retry == with_retry, (
        sync_no_retry,
        sync_with_retry,
    )
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(
        fw,
        busy,
        "connection cut half-way through a 2 MB reply",
        motor=[no_retry[:2], with_retry[:2]],
        sync=[sync_no_retry[:2], sync_with_retry[:2]],
    )


async def test_blackholed_connect(fw: Framework, proxy: FaultProxy) -> None:
    """TCP connects, the handshake is never answered: the monitor gives up after
    connectTimeoutMS and the operation fails server selection; with loadBalanced (no
    monitor) the operation's own handshake times out (socketTimeoutMS)."""
    fds = open_fds()
    proxy.blackhole()
    plain: dict[str, Any] = {"connectTimeoutMS": 300, "serverSelectionTimeoutMS": 800}
    balanced: dict[str, Any] = {
        "loadBalanced": True,
        "connectTimeoutMS": 300,
        "socketTimeoutMS": 500,
    }
    await start_measuring(fw)
    errors = []
    for options in (plain, balanced):
        client = fw.client(proxy.uri, **options)
        errors.append(await outcome(client.motor_test.faults_hole.find_one()))
        assert pool_counters(client) == IDLE
        await client.close()
    busy = stop_measuring(fw)

    def sync() -> list[str]:
        names = []
        for options in (plain, balanced):
            with pymongo.MongoClient(proxy.uri, **options) as c:  # type: pymongo.MongoClient[Any]
                names.append(error_name(sync_outcome_of(lambda: c.motor_test.x.find_one())))
                assert pool_counters(c) == IDLE
        return names

    sync_result = await sync_once("blackholed connect", sync)
    assert [error_name(e) for e in errors] == ["ServerSelectionTimeoutError", "NetworkTimeout"]
    assert [error_name(e) for e in errors] == sync_result, sync_result
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(fw, busy, "blackholed connect", motor=[error_name(e) for e in errors], sync=sync_result)


# --------------------------------------------------------------------------- full pools


async def test_pool_exhausted_against_wait_queue_timeout(fw: Framework, proxy: FaultProxy) -> None:
    """Both connections of maxPoolSize=2 are held by finds whose replies the proxy holds
    back: 100 more operations fail with WaitQueueTimeoutError; the holders then finish."""
    fds = open_fds()
    options: dict[str, Any] = {"maxPoolSize": 2, "waitQueueTimeoutMS": 300}
    client = fw.client(proxy.uri, **options)
    coll = client.motor_test.faults_pool
    await client.admin.command("ping")
    await start_measuring(fw)
    sent = await find_count(proxy)
    gate = proxy.hold(command="find")
    holders = [asyncio.ensure_future(coll.find_one({"holder": i})) for i in range(2)]
    await wait_until(lambda: len(proxy.commands("find")) - sent == 2, "two held finds")
    waiters = await asyncio.gather(*[outcome(coll.count_documents({})) for _ in range(100)])
    gate.release()
    assert await asyncio.gather(*holders) == [None, None]
    busy = stop_measuring(fw)
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> collections.Counter[str]:
        with pymongo.MongoClient(proxy.uri, **options) as c:  # type: pymongo.MongoClient[Any]
            c.admin.command("ping")
            sent = len(proxy.commands("find"))
            gate = proxy.hold(command="find")
            sync_coll = c.motor_test.faults_pool
            with concurrent.futures.ThreadPoolExecutor(102) as pool:
                held = [pool.submit(sync_coll.find_one, {"holder": i}) for i in range(2)]
                sync_wait_until(lambda: len(proxy.commands("find")) - sent == 2, "held finds")
                errors = [
                    pool.submit(sync_outcome_of, lambda: sync_coll.count_documents({}))
                    for _ in range(100)
                ]
                names = collections.Counter(error_name(f.result(BOUND)) for f in errors)
                gate.release()
                assert [f.result(BOUND) for f in held] == [None, None]
            assert pool_counters(c) == IDLE
        return names

    sync_result = await sync_once("pool exhausted", sync)
    motor_result = collections.Counter(error_name(e) for e in waiters)
    assert motor_result == {"WaitQueueTimeoutError": 100}, motor_result
    assert sync_result == motor_result, sync_result
    assert all(isinstance(e, WaitQueueTimeoutError) for e in waiters)
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(fw, busy, "pool exhausted vs waitQueueTimeoutMS", motor=motor_result, sync=sync_result)


WAITERS = 1000


class FindOrder(monitoring.CommandListener):
    """The ``i`` of each find with ``{"i": ...}`` in its filter, in the order the driver
    finished reading their replies."""

    def __init__(self) -> None:
        self._started: dict[int, int] = {}
        self.order: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and "i" in event.command.get("filter", {}):
            self._started[event.request_id] = event.command["filter"]["i"]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        i = self._started.pop(event.request_id, None)
        if i is not None:
            self.order.append(i)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def fifo_orders(
    proxy: FaultProxy, since_request: int, since_reply: int
) -> tuple[list[int], list[int]]:
    """The ``i`` of each find with ``{"i": ...}`` in its filter that the server received
    after request ``since_request``, in order; and of its replies after ``since_reply``."""

    def i_of(request: Any) -> int | None:
        if request is None or request.command != "find":
            return None
        value = request.doc.get("filter", {}).get("i")
        return value if isinstance(value, int) else None

    sent = [i_of(r) for r in list(proxy.requests)[since_request:]]
    answered = [i_of(r.request) for r in list(proxy.replies)[since_reply:]]
    return [i for i in sent if i is not None], [i for i in answered if i is not None]


def per_connection_in_order(proxy: FaultProxy, since_reply: int) -> bool:
    """On each connection, the finds' replies came in increasing ``i``."""
    by_conn: dict[int, list[int]] = collections.defaultdict(list)
    for reply in list(proxy.replies)[since_reply:]:
        request = reply.request
        if request is not None and request.command == "find":
            i = request.doc.get("filter", {}).get("i")
            if isinstance(i, int):
                by_conn[reply.conn].append(i)
    return len(by_conn) == 2 and all(order == sorted(order) for order in by_conn.values())


def most_displaced(order: list[int]) -> int:
    return max(abs(position - i) for position, i in enumerate(order))


async def test_1000_waiters_served_in_order(fw: Framework, proxy: FaultProxy) -> None:
    """1,000 operations queue on a full maxPoolSize=2 pool; as the two connections come
    back, they are served first come, first served: the server receives their finds in
    the order they were called, and answers them in that order give or take the other
    connection.  Motor keeps all but a few of them in its admission queue
    (``motor.core.Admission``); PyMongo's threads all wait in the pool's queue."""
    fds = open_fds()
    listener = FindOrder()
    client = fw.client(proxy.uri, maxPoolSize=2, event_listeners=[listener])
    coll = client.motor_test.faults_fifo
    await client.admin.command("ping")
    pool = the_pool(client)
    await start_measuring(fw)
    since = len(proxy.requests), len(proxy.replies)
    gate = proxy.hold(command="find", match=lambda r: "hold" in r.doc.get("filter", {}))
    holders = [asyncio.ensure_future(coll.find_one({"hold": i})) for i in range(2)]
    await wait_until(lambda: pool.requests == 2, "two checked-out connections")
    waiters = []
    for i in range(WAITERS):
        waiters.append(coll.find_one({"i": i}))
        if i % 50 == 49:
            await asyncio.sleep(0)  # a burst of calls is the caller's own work: yield
    # Queued in the pool, or (beyond what the pool can serve) in Motor's admission queue.
    queued: Callable[[], int] = lambda: len(pool.size_cond._waiters) + len(client._binding._waiting)  # noqa: E731
    await wait_until(lambda: queued() == WAITERS, "every waiter queued")
    gate.release()
    assert await asyncio.gather(*holders) == [None, None]
    assert await asyncio.gather(*waiters) == [None] * WAITERS
    # A thousand operations end over a few hundred loop iterations, each waking the
    # tasks and callbacks of its replies: the driver's share of a gap, and every gap
    # but the busiest, are asserted on (see LoopProbe; the busiest is reported).
    second, driver, runs = fw.probe.second_busy, fw.probe.max_driver, fw.probe.max_runs
    busy = stop_measuring(fw)
    # Decoding thousands of logged requests is the test's work, not the driver's.
    sent, answered = await in_thread(fifo_orders, proxy, *since)
    each_in_order = await in_thread(per_connection_in_order, proxy, since[1])
    assert pool_counters(client) == IDLE
    await client.close()

    def sync() -> tuple[list[int], list[int], list[int], bool]:
        # PyMongo's threads wait in a threading.Condition, whose notify() wakes the
        # longest waiter; woken threads then race for its lock, so neighbours may swap
        # (measured: no thread more than 2 places off).  Only "every waiter served" is
        # asserted for it; how far off is reported.
        sync_listener = FindOrder()
        with pymongo.MongoClient(proxy.uri, maxPoolSize=2, event_listeners=[sync_listener]) as c:  # type: pymongo.MongoClient[Any]
            c.admin.command("ping")
            sync_pool = the_pool(c)
            sync_coll = c.motor_test.faults_fifo
            since = len(proxy.requests), len(proxy.replies)
            gate = proxy.hold(command="find", match=lambda r: "hold" in r.doc.get("filter", {}))
            threads = [
                threading.Thread(target=sync_coll.find_one, args=({"hold": i},)) for i in range(2)
            ]
            for thread in threads:
                thread.start()
            sync_wait_until(lambda: sync_pool.requests == 2, "two checked-out connections")
            for i in range(WAITERS):  # one at a time, so that the queue's order is known
                thread = threading.Thread(target=sync_coll.find_one, args=({"i": i},))
                thread.start()
                threads.append(thread)
                sync_wait_until(
                    lambda i=i: len(sync_pool.size_cond._waiters) == i + 1, "the thread to queue"
                )
            gate.release()
            for thread in threads:
                thread.join(BOUND)
            assert pool_counters(c) == IDLE
            sent, answered = fifo_orders(proxy, *since)
            return sent, answered, sync_listener.order, per_connection_in_order(proxy, since[1])

    sync_sent, sync_answered, sync_done, sync_each_in_order = await sync_once("fifo", sync)
    expected = list(range(WAITERS))
    # Served in the order they were called: the server received their finds in order,
    # and each connection's replies came in that order (across the two connections the
    # server's own latency decides which answer comes first).
    assert sent == expected, sent
    assert each_in_order
    for order in (answered, listener.order, sync_sent, sync_answered, sync_done):
        assert sorted(order) == expected
    assert runs <= MAX_RUNS_PER_ITERATION, runs
    assert_no_stall(second, MAX_STALL, busy)
    assert_no_stall(driver, MAX_STALL, busy)
    await assert_no_leaks(fds, proxy)
    displaced = {
        "each connection in order": each_in_order,
        "sent": most_displaced(sent),
        "answered": most_displaced(answered),
        "driver read": most_displaced(listener.order),
    }
    sync_displaced = {
        "each connection in order": sync_each_in_order,
        "sent": most_displaced(sync_sent),
        "answered": most_displaced(sync_answered),
        "driver read": most_displaced(sync_done),
    }
    report(fw, busy, "1000 waiters on maxPoolSize=2", motor=displaced, sync=sync_displaced)


# --------------------------------------------------------------------------- close under load


CLOSE_HELD = 150  # connections waiting for a reply at close(); twice as many wait for one


def close_load_op(coll: Any, i: int) -> Any:
    """The i-th operation of the close scenario: reads, writes and counts."""
    if i % 3 == 0:
        return coll.find_one({"n": i})
    if i % 3 == 1:
        return coll.insert_one({"n": i})
    return coll.count_documents({"n": i})


async def test_close_with_hundreds_of_operations_in_flight(
    fw: Framework, proxy: FaultProxy
) -> None:
    """450 operations in flight through a proxy that forwards nothing: 150 wait for
    replies on the pool's 150 connections (no socketTimeoutMS), 300 wait for a
    connection.  close() ends every one of them with PyMongo's InvalidOperation
    ('Cannot use MongoClient after close').  Sync PyMongo's close() ends those waiting
    for a connection the same way, but leaves the ones waiting for a reply waiting (until
    the connection dies; they then raise the same error), as issue 13 noted; Motor
    interrupts them, without holding the loop while they all unwind."""
    fds = open_fds()
    options: dict[str, Any] = {"maxPoolSize": CLOSE_HELD}
    total = 3 * CLOSE_HELD
    client = fw.client(proxy.uri, **options)
    coll = client.motor_test.faults_close
    await client.admin.command("ping")
    pool = the_pool(client)
    finds = len(proxy.commands("find"))
    gate = proxy.hold(command="find")
    await start_measuring(fw)
    operations = [close_load_op(coll, i) for i in range(0, total, 3)]  # the finds
    await wait_until(
        lambda: pool.requests == CLOSE_HELD and len(proxy.commands("find")) - finds >= CLOSE_HELD,
        "the finds sent",
    )
    proxy.blackhole()
    gate.release()  # their replies now go nowhere
    operations += [close_load_op(coll, i) for i in range(total) if i % 3]
    queued: Callable[[], int] = lambda: len(pool.size_cond._waiters) + len(client._binding._waiting)  # noqa: E731
    await wait_until(lambda: queued() == 2 * CLOSE_HELD, "the others waiting for a connection")
    assert not any(op.done() for op in operations)
    await asyncio.wait_for(client.close(), BOUND)
    results = await asyncio.wait_for(asyncio.gather(*operations, return_exceptions=True), BOUND)
    busy = stop_measuring(fw)
    motor_result = collections.Counter(error_name(r) for r in results)
    assert all(isinstance(r, InvalidOperation) for r in results), motor_result
    assert all("after close" in str(r) for r in results), {str(r) for r in results}
    assert pool_counters(client) == IDLE

    def sync() -> dict[str, Any]:
        results: dict[int, str] = {}
        proxy.clear()  # before the client's monitor connects
        c: pymongo.MongoClient[Any] = pymongo.MongoClient(proxy.uri, **options)
        sync_coll = c.motor_test.faults_close
        sync_pool = the_pool(c)
        c.admin.command("ping")
        gate = proxy.hold(command="find")

        def op(i: int) -> None:
            exc = sync_outcome_of(lambda: close_load_op(sync_coll, i))
            msg = "" if exc is None or "after close" not in str(exc) else " after close"
            results[i] = error_name(exc) + msg

        threads = [threading.Thread(target=op, args=(i,)) for i in range(0, total, 3)]
        for thread in threads:
            thread.start()
        sync_wait_until(lambda: sync_pool.requests == CLOSE_HELD, "every connection in use")
        proxy.blackhole()
        gate.release()
        waiting = [threading.Thread(target=op, args=(i,)) for i in range(total) if i % 3]
        for thread in waiting:
            thread.start()
        sync_wait_until(
            lambda: len(sync_pool.size_cond._waiters) == 2 * CLOSE_HELD, "the waiters queued"
        )
        c.close()
        for thread in waiting:
            thread.join(BOUND)
        ended_at_close = len(results)
        time.sleep(1.0)  # the ones still waiting for a reply after that: hanging
        hanging = total - len(results)
        proxy.cut_all()  # end them
        for thread in threads:
            thread.join(BOUND)
        assert pool_counters(c) == IDLE
        return {
            "ended at close": ended_at_close,
            "hanging until the connection died": hanging,
            "outcomes": dict(collections.Counter(results.values())),
        }

    sync_result = await sync_once("close", sync)
    # The same class for every operation that ends; Motor ends them all at close().
    assert set(sync_result["outcomes"]) == {"InvalidOperation after close"}, sync_result
    assert_no_stall(
        busy,
        MAX_STALL,
        "the loop's thread worked that long in one go: every interrupted read resumed in "
        "one loop iteration (GreenSocket.cancel_reads bypasses the hub's work budget)",
    )
    await assert_no_leaks(fds, proxy)
    report(fw, busy, "close() with 450 operations in flight", motor=motor_result, sync=sync_result)


async def test_close_interrupts_a_write_waiting_for_its_reply(
    fw: Framework, proxy: FaultProxy, server: Any
) -> None:
    """A write sent before close() and still waiting for its reply is interrupted.  Where
    the server takes retryable writes it is retried and ends with PyMongo's
    InvalidOperation for a closed client; elsewhere (a standalone server) with PyMongo's
    error for an interrupted operation, an AutoReconnect: the server may have applied
    it, and here it has."""
    fds = open_fds()
    client = fw.client(proxy.uri, maxPoolSize=1)
    coll = client.motor_test.faults_close_write
    await coll.delete_many({})
    (description,) = client.delegate.topology_description.server_descriptions().values()
    gate = proxy.hold(command="insert")
    inserts = len(proxy.commands("insert"))
    await start_measuring(fw)
    inserting = coll.insert_one({"_id": "in flight"})
    await wait_until(lambda: len(proxy.commands("insert")) > inserts, "the insert sent")
    await client.close()
    (outcome,) = await asyncio.wait_for(asyncio.gather(inserting, return_exceptions=True), BOUND)
    busy = stop_measuring(fw)
    gate.release()
    if description.retryable_writes_supported:
        assert isinstance(outcome, InvalidOperation), repr(outcome)
        assert "after close" in str(outcome)
    else:
        assert isinstance(outcome, AutoReconnect), repr(outcome)
        assert not isinstance(outcome, InvalidOperation)
        assert "operation cancelled" in str(outcome)
    assert pool_counters(client) == IDLE
    # The server applied it (its reply was held, not its request).
    checking = fw.client(server.uri)
    checker = checking.motor_test.faults_close_write
    found: list[Any] = []

    async def applied() -> bool:
        found[:] = await checker.find().to_list()
        return bool(found)

    deadline = time.monotonic() + BOUND
    while not await applied() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert found == [{"_id": "in flight"}]
    await checking.close()
    assert_no_stall(busy, MAX_STALL)
    await assert_no_leaks(fds, proxy)
    report(fw, busy, "close() with a write in flight", motor=error_name(outcome))


# --------------------------------------------------------------------------- interpreter shutdown

SHUTDOWN_SCRIPT = """
import asyncio
import sys

framework, mode, uri, held_uri = sys.argv[1:5]
run = f"{framework}-{mode}"  # scripts run side by side: each reads its own documents


async def main(make):
    client = make(uri)
    held = make(held_uri)  # through the fault proxy, which holds back every find's reply
    coll = client.motor_test.faults_shutdown
    await coll.insert_many([{"i": i, "run": run} for i in range(100)])
    cursors = []
    for _ in range(5):
        cursor = coll.find({"run": run}).batch_size(2)
        await cursor.next()  # a live cursor on the server
        cursors.append(cursor)
    pending = [coll.insert_one({"j": j}) for j in range(50)]
    pending += [coll.find_one({"i": i}) for i in range(50)]
    pending += [held.motor_test.faults_shutdown.find_one() for _ in range(20)]
    held_coll = held.motor_test.faults_shutdown
    pending += [asyncio.ensure_future(held_coll.find_one()) for _ in range(20)]
    pending += [asyncio.ensure_future(cursor.to_list(None)) for cursor in cursors[:2]]
    await asyncio.sleep(0.3)
    print("in flight:", sum(not f.done() for f in pending), flush=True)
    if mode == "exit":
        sys.exit(0)


if framework == "asyncio":
    from motor.motor_asyncio import AsyncIOMotorClient

    if mode == "unclosed":  # older code: the loop is never closed
        asyncio.new_event_loop().run_until_complete(main(AsyncIOMotorClient))
    else:
        asyncio.run(main(AsyncIOMotorClient))
elif framework == "tornado":
    from tornado.ioloop import IOLoop

    from motor.motor_tornado import MotorClient

    io_loop = IOLoop(make_current=False)
    io_loop.run_sync(lambda: main(MotorClient))
    if mode != "unclosed":
        io_loop.close()
else:  # sync PyMongo: daemon threads in flight, open cursors
    import threading

    from pymongo import MongoClient

    client, held = MongoClient(uri), MongoClient(held_uri)
    coll = client.motor_test.faults_shutdown
    coll.insert_many([{"i": i, "run": run} for i in range(100)])
    cursors = [coll.find({"run": run}).batch_size(2) for _ in range(5)]
    for cursor in cursors:
        next(cursor)
    work = [lambda j=j: coll.insert_one({"j": j}) for j in range(50)]
    work += [lambda i=i: coll.find_one({"i": i}) for i in range(50)]
    work += [held.motor_test.faults_shutdown.find_one for _ in range(40)]
    work += [cursor.to_list for cursor in cursors[:2]]
    threads = [threading.Thread(target=fn, daemon=True) for fn in work]
    for thread in threads:
        thread.start()
    threading.Event().wait(0.3)
    print("in flight:", sum(thread.is_alive() for thread in threads), flush=True)
    if mode == "exit":
        sys.exit(0)
print("main returned", flush=True)
"""


# Return from main (closing the loop); sys.exit() inside the coroutine; return from main
# without ever closing the loop.
SHUTDOWN_MODES = ("return", "exit", "unclosed")


def run_shutdown_script(framework: str, mode: str, uri: str, held_uri: str) -> dict[str, Any]:
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-c", SHUTDOWN_SCRIPT, framework, mode, uri, held_uri],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        return {"status": "hung", "stdout": exc.stdout, "stderr": exc.stderr}
    in_flight = [line for line in done.stdout.splitlines() if line.startswith("in flight:")]
    return {
        "status": done.returncode,
        "in flight": int(in_flight[0].split(":")[1]) if in_flight else None,
        "returned": "main returned" in done.stdout,
        "stderr": done.stderr,
    }


def clean_exit(result: dict[str, Any]) -> bool:
    stderr = result["stderr"] or ""
    return (
        result["status"] == 0
        and "Traceback" not in stderr
        and "Exception ignored" not in stderr
        and not stderr.strip()
    )


async def test_interpreter_shutdown_with_operations_in_flight(
    fw: Framework, server: Any, proxy: FaultProxy
) -> None:
    """A script starts operations (some parked for ever on held replies) and opens
    cursors, then returns from main, or calls sys.exit() inside its coroutine, or
    returns without ever closing its loop: the interpreter exits with status 0, at once,
    and prints nothing to stderr (no traceback, no 'Exception ignored' from a
    finalizer)."""
    gate = proxy.hold(command="find")
    await start_measuring(fw)
    try:
        results = await asyncio.gather(
            *[
                in_thread(run_shutdown_script, fw.name, mode, server.uri, proxy.uri)
                for mode in SHUTDOWN_MODES
            ]
        )
        busy = stop_measuring(fw)
        sync_results = await sync_once(
            "shutdown",
            lambda: [
                run_shutdown_script("sync", mode, server.uri, proxy.uri) for mode in SHUTDOWN_MODES
            ],
        )
    finally:
        gate.release()
        await in_thread(drop_collection, server.uri, "faults_shutdown")
    for result in results + sync_results:
        assert result["in flight"], result  # the script did leave operations in flight
    assert [r["returned"] for r in results] == [True, False, True], results
    assert all(clean_exit(r) for r in results), results
    assert [clean_exit(r) for r in sync_results] == [clean_exit(r) for r in results], sync_results
    assert_no_stall(busy, MAX_STALL)
    assert await in_thread(proxy.wait_idle, BOUND), proxy.connections
    report(
        fw,
        busy,
        "interpreter shutdown with operations in flight",
        motor=[(r["status"], r["in flight"], r["stderr"]) for r in results],
        sync=[(r["status"], r["in flight"], r["stderr"]) for r in sync_results],
    )
