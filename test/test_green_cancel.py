"""Cancelling an operation at each stage leaves nothing behind.

For each stage (waiting for a pooled connection, mid-send, mid-receive, during server
selection): the awaiting task is cancelled, then the test checks that no child greenlet
is parked, that the pool's checkout counters are back to idle, that a connection
interrupted mid-operation was closed (not returned half-used), and, once the client is
closed, that the process has no more file descriptors than before.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from mockupdb import OpMsg

from test.framework import (
    ClosedConnections,
    Framework,
    fds_back_to,
    open_fds,
    parked_children,
    pool_counters,
    run_python,
)
from test.wire import WireServer


async def cancel_after(fw: Framework, awaitable: Any, delay: float) -> None:
    """Start ``awaitable`` in a task, cancel it after ``delay`` and let cleanup run."""
    task = asyncio.ensure_future(awaitable)
    await asyncio.sleep(delay)
    assert not task.done(), "the operation finished before it could be cancelled"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)


async def assert_clean(client: Any, fds_before: set[int], server: Any = None) -> None:
    assert not parked_children()
    counters = pool_counters(client)
    assert counters["requests"] == 0, counters
    assert counters["active_sockets"] == 0, counters
    assert counters["pending"] == 0, counters
    await client.close()

    # The in-process test server's own sockets are not the client's.
    leaked = await fds_back_to(
        fds_before, lambda: {c.fileno() for c in getattr(server, "_conns", ())}
    )
    assert not leaked, leaked


def slow_find(mockup: Any, delay: float) -> Any:
    def reply_late(request: Any) -> bool:
        time.sleep(delay)
        return bool(request.reply({"cursor": {"id": 0, "firstBatch": [], "ns": "db.coll"}}))

    server = mockup()
    server.autoresponds(OpMsg("ping"))
    server.autoresponds(OpMsg("find", "coll"), reply_late)
    return server


@pytest.fixture
def stalled_server() -> Iterator[WireServer]:
    server = WireServer(stall_on="insert")
    yield server
    server.stop()


async def test_cancel_while_waiting_for_a_connection(fw: Framework, mockup: Any) -> None:
    server = slow_find(mockup, 0.5)
    fds = open_fds()
    client = fw.client(server.uri, maxPoolSize=1)
    coll = client.db.coll
    await coll.database.command("ping")
    holder = asyncio.ensure_future(coll.find_one())
    await asyncio.sleep(0.05)
    pool = next(iter(client.delegate._topology._servers.values())).pool
    await cancel_after(fw, coll.database.command("ping"), 0.1)
    assert pool.requests == 1  # only the holder
    assert await holder is None
    # The pool still works after the cancelled wait.
    assert (await coll.database.command("ping"))["ok"] == 1
    await assert_clean(client, fds)


async def test_cancel_mid_receive(fw: Framework, mockup: Any) -> None:
    server = slow_find(mockup, 3.0)
    listener = ClosedConnections()
    fds = open_fds()
    client = fw.client(server.uri, event_listeners=[listener])
    coll = client.db.coll
    await coll.database.command("ping")
    await cancel_after(fw, coll.find_one(), 0.2)
    assert "error" in listener.reasons, listener.reasons
    pool = next(iter(client.delegate._topology._servers.values())).pool
    assert all(not conn.closed for conn in pool.conns)
    assert (await coll.database.command("ping"))["ok"] == 1
    await assert_clean(client, fds)


_CYCLES_SCRIPT = """
import asyncio, gc, motor
from motor.green.sync import sleep as green_sleep

def parked(depth):
    # A stack of PyMongo-like frames, each keeping what unwinds through it.
    if depth:
        try:
            parked(depth - 1)
        except BaseException as error:
            kept = [error]
            raise error
    green_sleep(60)

async def main():
    gc.collect()
    gc.disable()
    tasks = [asyncio.ensure_future(motor.run_green(parked, 20)) for _ in range(50)]
    await asyncio.sleep(0.1)
    assert not any(task.done() for task in tasks)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    await asyncio.sleep(0.05)
    del tasks, results
    print(gc.collect())

asyncio.run(main())
"""


def test_cancelled_calls_leave_no_garbage_cycles() -> None:
    """The frames a cancellation unwinds do not stay in reference cycles for the garbage
    collector to find.  PyMongo keeps the exception in a local on its way out
    (``except BaseException as error: ... raise error``): each cancelled call would leave
    its stack in a frame -> exception -> traceback -> frame cycle (50 calls of 20 frames:
    about 4,500 objects), and a burst of cancellations a long collection later.

    Run in a fresh interpreter: under pytest the same calls leave no cycle to find."""
    result = run_python(_CYCLES_SCRIPT)
    collected = int(result.stdout.split()[-1])
    assert collected < 100, collected


async def test_cancel_mid_send(fw: Framework, stalled_server: WireServer) -> None:
    listener = ClosedConnections()
    fds = open_fds()
    client = fw.client(stalled_server.uri, event_listeners=[listener])
    # 15 MB: more than the loopback socket buffers hold, and the server reads nothing.
    with fw.probe.uncounted():  # the test's 15 MB, not the driver's work
        doc = {"_id": 1, "blob": b"x" * (15 * 1024 * 1024)}
    await cancel_after(fw, client.db.coll.insert_one(doc), 0.3)
    assert stalled_server.stalled.is_set()
    assert "error" in listener.reasons, listener.reasons
    await assert_clean(client, fds, stalled_server)


async def test_cancel_during_server_selection(fw: Framework) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    fds = open_fds()
    client = fw.client(f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=5000")
    await cancel_after(fw, client.db.coll.find_one(), 0.2)
    assert not client.delegate._topology._condition._waiters
    await assert_clean(client, fds)


async def test_cancel_before_start_never_runs(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.cancel_queued
    await coll.drop()
    # Queue far more starts than one loop iteration allows, cancel them all at once.
    futures = [coll.insert_one({}) for _ in range(300)]
    for future in futures:
        future.cancel()
    await asyncio.sleep(0.2)
    inserted = await coll.count_documents({})
    assert inserted < 300
    assert not parked_children()
    # Admission slots of calls cancelled before they started were handed back.
    assert client._binding._active == 0 and not client._binding._waiting
    await coll.drop()


async def test_operations_beyond_the_pool_wait_without_a_greenlet(
    fw: Framework, mockup: Any
) -> None:
    server = slow_find(mockup, 0.1)
    client = fw.client(server.uri, maxPoolSize=2)
    coll = client.db.coll
    await coll.database.command("ping")
    limit = client._binding.admission.limit
    assert limit == 4  # maxPoolSize x (1 known server + 1)
    futures = [coll.find_one() for _ in range(20)]
    await asyncio.sleep(0.05)
    assert len(parked_children()) <= limit
    assert len(client._binding._waiting) == 20 - limit
    futures[-1].cancel()  # cancelled while waiting for admission: never runs
    assert await asyncio.gather(*futures[:-1]) == [None] * 19
    assert not client._binding._waiting and client._binding._active == 0
    assert pool_counters(client)["requests"] == 0


async def test_timeouts_bypass_admission(fw: Framework, mockup: Any) -> None:
    server = slow_find(mockup, 0.1)
    assert fw.client(server.uri, waitQueueTimeoutMS=100)._binding.admission is None
    assert fw.client(server.uri, timeoutMS=1000)._binding.admission is None
    client = fw.client(server.uri, maxPoolSize=1)
    coll = client.db.coll
    await coll.database.command("ping")
    queued = [coll.find_one() for _ in range(4)]  # two run, two wait for admission
    with pymongo.timeout(0.05):
        # Not queued behind them: PyMongo's own pool wait applies the deadline.
        with pytest.raises(pymongo.errors.PyMongoError) as info:
            await coll.find_one()
    assert info.value.timeout
    assert await asyncio.gather(*queued) == [None] * 4
