"""Event loops come and go: a hub dies with its loop, and leaves nothing behind.

Applications that run a loop per job (``asyncio.run`` in a loop, a test suite) must not
grow: greenlets are invisible to the garbage collector, so a hub's children must not
keep it (and its loop) alive once the loop is closed, and an operation still parked
when its loop closes must end, returning its connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import socket
import threading
import time
import tracemalloc
import warnings
import weakref
from typing import Any

import pytest
from pymongo import monitoring

from motor.green import hub as hub_module
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient
from motor.sync_code import run_green
from test.framework import (
    ClosedConnections,
    fds_back_to,
    loop_turns,
    open_fds,
    parked_children,
    pool_counters,
    run_python,
)
from test.wire import WireServer

# Cycles measured (two halves); a leaked loop would grow each half by megabytes.
CYCLES = 60


def _asyncio_cycle(uri: str, loops: list[weakref.ref[Any]]) -> None:
    async def main() -> None:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(uri)
        coll = client.motor_test.lifecycle
        await coll.insert_one({"x": 1})
        assert await coll.find_one({"x": 1}, {"_id": 0}) == {"x": 1}
        await asyncio.gather(*[coll.count_documents({}) for _ in range(20)])
        await client.close()
        loops.append(weakref.ref(asyncio.get_running_loop()))

    asyncio.run(main())


def _tornado_cycle(uri: str, loops: list[weakref.ref[Any]]) -> None:
    from tornado.ioloop import IOLoop

    io_loop = IOLoop(make_current=False)

    async def main() -> None:
        client: MotorClient[Any] = MotorClient(uri, io_loop=io_loop)
        coll = client.motor_test.lifecycle
        await coll.insert_one({"x": 2})
        await asyncio.gather(*[coll.count_documents({}) for _ in range(20)])
        await client.close()

    io_loop.run_sync(main)
    loops.append(weakref.ref(io_loop.asyncio_loop))  # type: ignore[attr-defined]
    io_loop.close(all_fds=False)


@pytest.mark.parametrize("cycle", [_asyncio_cycle, _tornado_cycle], ids=["asyncio", "tornado"])
def test_closed_loops_are_freed(server: Any, cycle: Any) -> None:
    loops: list[weakref.ref[Any]] = []
    for _ in range(10):  # warm-up: caches, PyMongo's first-use state
        cycle(server.uri, loops)
    gc.collect()
    tracemalloc.start()
    grown: list[int] = []
    try:
        # Two halves: a leak grows both alike, while a registry's hash table doubling
        # (PyMongo keeps weak sets of its locks, executors and monitors, which grow
        # in steps of tens of KB) lands in one of them.
        for _ in range(2):
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(CYCLES // 2):
                cycle(server.uri, loops)
            gc.collect()
            grown.append(tracemalloc.get_traced_memory()[0] - before)
    finally:
        tracemalloc.stop()
    alive = [ref for ref in loops if ref() is not None]
    assert not alive, f"{len(alive)} of {len(loops)} closed loops are still alive"
    # Flat: a leaked loop costs hundreds of KB a cycle; what remains here is this
    # test's list of weak references and PyMongo's registries settling.
    assert min(grown) < CYCLES // 2 * 2048, (
        f"traced memory grew {grown} bytes over two runs of {CYCLES // 2} cycles"
    )


@pytest.mark.usefixtures("short_drain")
def test_closing_a_loop_ends_its_parked_operations() -> None:
    wire = WireServer(stall_on="find")
    loop = asyncio.new_event_loop()
    try:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(wire.uri, io_loop=loop)

        async def start() -> asyncio.Future[Any]:
            future = client.db.coll.find_one({})
            await loop.run_in_executor(None, wire.stalled.wait, 10)
            return future

        future = loop.run_until_complete(start())
        assert not future.done()
        assert len(parked_children()) == 1
        loop.close()
        assert future.cancelled()
        assert parked_children() == []
        # PyMongo's cleanup ran as the operation unwound: its connection is not
        # checked out any more.
        assert pool_counters(client)["active_sockets"] == 0
        client.close()
    finally:
        if not loop.is_closed():
            loop.close()
        wire.stop()


def test_a_notification_after_the_loop_closed_spares_pymongo_s_threads() -> None:
    errors: list[BaseException] = []
    hook = threading.excepthook

    def record(args: Any) -> None:
        errors.append(args.exc_value)

    threading.excepthook = record
    loop = asyncio.new_event_loop()
    try:
        # Nothing listens on port 1: the operation waits in server selection, on the
        # topology's condition, which PyMongo's monitor thread notifies after each
        # check of the server.
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(
            "mongodb://127.0.0.1:1", io_loop=loop, serverSelectionTimeoutMS=30_000
        )

        async def start() -> asyncio.Future[Any]:
            future = client.db.coll.find_one({})
            await asyncio.sleep(0.1)
            return future

        future = loop.run_until_complete(start())
        assert not future.done()
        loop.close()
        assert future.cancelled()
        topology = client.delegate._topology
        checked = threading.Event()

        # Another round of checks, each notifying the condition.
        for _ in range(3):
            topology.request_check_all(wait_time=1)
        checked.set()
        assert errors == [], errors
        monitors = [s._monitor._executor._thread for s in topology._servers.values()]
        assert all(thread is not None and thread.is_alive() for thread in monitors)
        client.close()
    finally:
        threading.excepthook = hook
        if not loop.is_closed():
            loop.close()


async def test_close_ends_operations_waiting_for_a_silent_server(fw: Any) -> None:
    """PyMongo's close() leaves an operation waiting for a reply that never comes (no
    socketTimeoutMS) waiting for ever; Motor's ends it with PyMongo's error for a
    closed client."""
    from pymongo.errors import InvalidOperation

    wire = WireServer(stall_on="find")
    try:
        client = fw.client(wire.uri)
        operations = [client.db.coll.find_one({}) for _ in range(3)]
        await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)
        assert not any(op.done() for op in operations)
        await client.close()
        # Bounded only so that a regression fails instead of hanging the run.
        results = await asyncio.wait_for(asyncio.gather(*operations, return_exceptions=True), 30)
        assert all(isinstance(r, InvalidOperation) for r in results), results
        assert "after close" in str(results[0])
        assert parked_children() == []
    finally:
        wire.stop()


def _frames(child: Any) -> list[str]:
    names = []
    frame = child.gr_frame
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


async def test_close_wakes_calls_waiting_for_a_server(fw: Any, monkeypatch: Any) -> None:
    """A call waiting in server selection when its client closes raises PyMongo's error
    for a closed client at once.  PyMongo's ``Topology.close()`` does not wake it: it
    would wait for its next wake-up (``MIN_HEARTBEAT_INTERVAL``, an hour here), and a
    loop closing after ``close()`` waits for the calls nobody awaited."""
    from pymongo import common
    from pymongo.errors import InvalidOperation

    monkeypatch.setattr(common, "MIN_HEARTBEAT_INTERVAL", 3600.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections complete; nothing is ever answered
    try:
        port = listener.getsockname()[1]
        client = fw.client(
            f"mongodb://127.0.0.1:{port}",
            serverSelectionTimeoutMS=600_000,
            heartbeatFrequencyMS=3_600_000,
        )
        operation = client.db.coll.insert_one({})
        await _parked_in_server_selection()
        await client.close()
        # Bounded only so that a regression fails instead of hanging the run.
        results = await asyncio.wait_for(asyncio.gather(operation, return_exceptions=True), 30)
        assert isinstance(results[0], InvalidOperation), results
        assert "after close" in str(results[0])
        assert parked_children() == []
    finally:
        listener.close()


async def _parked_in_server_selection() -> None:
    for _ in range(1000):
        if any("_select_servers_loop" in _frames(c) for c in parked_children()):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no call waited in server selection")


@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
def test_a_close_where_no_loop_runs_wakes_calls_waiting_for_a_server(
    framework: str, monkeypatch: Any
) -> None:
    """``close()`` called where no loop runs (between two ``run_until_complete``) closes
    synchronously, and wakes the calls waiting for a server as the asynchronous close
    does: they raise PyMongo's error for a closed client when the loop runs again."""
    from pymongo import common
    from pymongo.errors import InvalidOperation
    from tornado.ioloop import IOLoop

    monkeypatch.setattr(common, "MIN_HEARTBEAT_INTERVAL", 3600.0)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # connections complete; nothing is ever answered
    uri = f"mongodb://127.0.0.1:{listener.getsockname()[1]}"
    options: dict[str, Any] = {
        "serverSelectionTimeoutMS": 600_000,
        "heartbeatFrequencyMS": 3_600_000,
    }
    io_loop = IOLoop(make_current=False) if framework == "tornado" else None
    loop = asyncio.new_event_loop() if io_loop is None else io_loop.asyncio_loop  # type: ignore[attr-defined]

    def run(coroutine: Any) -> Any:
        if io_loop is None:
            return loop.run_until_complete(coroutine)
        return io_loop.run_sync(lambda: coroutine)

    async def start() -> tuple[Any, Any]:
        if io_loop is None:
            client: Any = AsyncIOMotorClient(uri, **options)
        else:
            client = MotorClient(uri, io_loop=io_loop, **options)
        operation = client.db.coll.insert_one({})
        await _parked_in_server_selection()
        return client, operation

    async def outcome(operation: Any) -> Any:
        # Bounded only so that a regression fails instead of hanging the run.
        return (await asyncio.wait_for(asyncio.gather(operation, return_exceptions=True), 30))[0]

    try:
        client, operation = run(start())
        client.close()  # no loop runs: closes synchronously
        result = run(outcome(operation))
        assert isinstance(result, InvalidOperation), result
        assert "after close" in str(result)
    finally:
        listener.close()
        if io_loop is not None:
            io_loop.close(all_fds=False)
        else:
            loop.close()


async def test_a_client_dropped_without_close_is_freed_at_once(fw: Any, server: Any) -> None:
    """A client the application drops without close(), after operations and with its
    databases and collections, is freed as soon as the last reference goes, as in Motor
    3.7.1: no reference cycle keeps it, its PyMongo client and its pool for the garbage
    collector, and PyMongo's "Unclosed MongoClient" warning comes then."""
    client = fw.Client(server.uri)
    collection = client.motor_test.dropped
    await collection.find_one({})
    motor_client, pymongo_client = weakref.ref(client), weakref.ref(client.delegate)
    gc.disable()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            del client, collection
        assert motor_client() is None
        assert pymongo_client() is None
    finally:
        gc.enable()
    assert [str(w.message).split("\n")[0] for w in caught] == ["Unclosed MongoClient opened at:"]


# Connections in the pool when the client is closed.
POOLED = 30


class _Sequence(monitoring.CommandListener, monitoring.ConnectionPoolListener):
    """What a client did, in order: commands started, connections created and closed,
    pools closed."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(f"command {event.command_name}")

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.events.append("connection created")

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.events.append(f"connection closed: {event.reason}")

    def pool_closed(self, event: monitoring.PoolClosedEvent) -> None:
        self.events.append("pool closed")

    def _ignore(self, event: Any) -> None:
        pass

    succeeded = failed = _ignore
    pool_created = pool_ready = pool_cleared = connection_ready = _ignore
    connection_check_out_started = connection_check_out_failed = _ignore
    connection_checked_out = connection_checked_in = _ignore


async def _client_with_full_pool(fw: Any, uri: str, *listeners: Any) -> Any:
    """A client whose pool holds POOLED idle connections, and a server session to end."""
    client = fw.client(uri, maxPoolSize=POOLED, event_listeners=list(listeners))
    async with await client.start_session() as session:
        await client.motor_test.lifecycle.find_one({}, session=session)
    (server,) = client.delegate._topology._servers.values()
    pool = server.pool

    def fill() -> None:
        with contextlib.ExitStack() as stack:
            for _ in range(POOLED):
                stack.enter_context(pool.checkout())

    await run_green(fill)
    assert len(pool.conns) == POOLED
    return client


async def test_closing_a_full_pool_lets_the_loop_in_between_connections(
    fw: Any, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing the client closes its pooled connections one after another; with the loop
    iteration's work budget spent, the loop runs between two of them."""
    fds = open_fds()
    closed = ClosedConnections()
    sequence = _Sequence()
    client = await _client_with_full_pool(fw, server.uri, closed, sequence)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    pauses[0] = 0
    mark = len(sequence.events)
    async with loop_turns() as turns:
        # The loop turn in which each connection was closed.
        closed.on_close = lambda: turns[0]
        await client.close()
    assert closed.reasons["poolClosed"] == POOLED, closed.reasons
    # One connection per turn, once the counting ticker runs (its first count spans
    # the turns in which it starts).
    per_turn = collections.Counter(closed.closed_at)
    first = per_turn.pop(0, 0)
    assert first <= 4 and max(per_turn.values()) == 1, (first, per_turn)
    assert pauses[0] >= POOLED - 4, pauses[0]
    # What MongoClient.close() does, in its order: the server sessions are ended on a
    # pooled connection, then the connections closed, then the pool.
    assert sequence.events[mark:] == [
        "command endSessions",
        *["connection closed: poolClosed"] * POOLED,
        "pool closed",
    ], sequence.events[mark:]
    assert not await fds_back_to(fds)


async def test_a_close_cancelled_between_connections_still_closes_them_all(
    fw: Any, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling ``close()`` (a timeout around it) cancels what the caller awaits at
    once; the closing goes on: every connection is closed and the client with them, as
    Motor 3.7.1's synchronous ``close()`` always finished."""
    fds = open_fds()
    closed = ClosedConnections()
    client = await _client_with_full_pool(fw, server.uri, closed)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    closing = client.close()
    deadline = time.monotonic() + 10
    while closed.reasons["poolClosed"] < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0)
    assert 2 <= closed.reasons["poolClosed"] < POOLED, closed.reasons
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert not await fds_back_to(fds)
    assert closed.reasons["poolClosed"] == POOLED, closed.reasons
    assert client.delegate._closed
    assert parked_children() == []


_UNCLOSED_AT_EXIT = """
import asyncio, sys
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient

Client = AsyncIOMotorClient if sys.argv[1] == "asyncio" else MotorClient
client = Client("mongodb://127.0.0.1:1", serverSelectionTimeoutMS=100)
# A call made where no loop runs: queued on the thread's current loop, which never runs
# and is never closed (asyncio.run() refuses the future it returns).
try:
    asyncio.run(client.admin.command("ping"))
except ValueError:
    print("refused")
"""


@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
def test_a_loop_left_open_at_interpreter_exit_closes_quietly(framework: str) -> None:
    # The loop is collected at interpreter exit, and its close() runs the hub's close
    # while greenlet is being finalized.
    result = run_python(_UNCLOSED_AT_EXIT, framework)
    assert result.stdout.strip() == "refused"
    assert "Exception ignored" not in result.stderr, result.stderr
