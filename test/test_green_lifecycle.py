"""Event loops come and go: a hub dies with its loop, and leaves nothing behind.

Applications that run a loop per job (``asyncio.run`` in a loop, a test suite) must not
grow: greenlets are invisible to the garbage collector, so a hub's children must not
keep it (and its loop) alive once the loop is closed, and an operation still parked
when its loop closes must end, returning its connection.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
import weakref
from typing import Any

import pytest

from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient
from test.framework import parked_children, pool_counters
from test.wire import WireServer

CYCLES = 100


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
    for _ in range(20):  # warm-up: caches, PyMongo's first-use state
        cycle(server.uri, loops)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CYCLES):
            cycle(server.uri, loops)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    alive = [ref for ref in loops if ref() is not None]
    assert not alive, f"{len(alive)} of {len(loops)} closed loops are still alive"
    # Flat: a leaked loop costs hundreds of KB a cycle; what remains here is this
    # test's list of weak references and PyMongo's registries settling.
    assert grown < CYCLES * 2048, f"traced memory grew {grown} bytes over {CYCLES} cycles"


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
