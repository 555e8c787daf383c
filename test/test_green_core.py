"""The green core keeps the loop running in every place PyMongo can block.

Each scenario runs under asyncio and Tornado with the loop-stall probe, asserts that the
loop's thread never worked longer than ``MAX_STALL`` between two ticks (the probe's
``max_busy``: waiting cannot hide there, since Motor's green primitives refuse to block
a running loop's thread), and checks that Motor raises the same PyMongo
exception class as PyMongo's sync client in the same situation (the sync client runs
in a worker thread, so it does not disturb the probe).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import greenlet
import pymongo
import pytest
from mockupdb import OpMsg
from pymongo.errors import (
    NetworkTimeout,
    PyMongoError,
    ServerSelectionTimeoutError,
    WaitQueueTimeoutError,
)

from motor.green.hub import get_hub
from test.framework import Framework, Loops, close_client, pool_counters
from test.wire import WireServer

MAX_STALL = 0.010


async def sync_error(fn: Callable[[pymongo.MongoClient[Any]], Any], *args: Any, **kw: Any) -> type:
    """The exception class PyMongo's sync client raises for ``fn(client)``."""

    def run() -> type:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(*args, **kw)
        try:
            fn(client)
        except PyMongoError as exc:
            return type(exc)
        finally:
            client.close()
        raise AssertionError("the sync client raised nothing")

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def motor_error(awaitable: Any) -> type:
    try:
        await awaitable
    except PyMongoError as exc:
        return type(exc)
    raise AssertionError("Motor raised nothing")


@pytest.fixture
def silent_listener() -> Iterator[Callable[[], tuple[str, int]]]:
    """Make loopback listeners whose accept queue is full: connects never complete."""
    sockets: list[socket.socket] = []

    def make() -> tuple[str, int]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        sockets.append(listener)
        address: tuple[str, int] = listener.getsockname()
        # Linux queues backlog + 1 connections; later SYNs are dropped unanswered.
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(address)
            sockets.append(filler)
        time.sleep(0.05)
        return address

    yield make
    for s in sockets:
        s.close()


def delayed_find(mockup: Any, delay: float) -> Any:
    """A MockupDB server whose find replies come ``delay`` seconds late."""

    def reply_late(request: Any) -> bool:
        time.sleep(delay)
        return bool(
            request.reply({"cursor": {"id": 0, "firstBatch": [{"_id": 1}], "ns": "db.coll"}})
        )

    server = mockup()
    server.autoresponds(OpMsg("ping"))
    server.autoresponds(OpMsg("find", "coll"), reply_late)
    return server


async def test_first_operation_connects_without_stall(fw: Framework, server: Any) -> None:
    await fw.probe.settle()
    client = fw.client(server.uri)
    coll = client.motor_test.first_op
    result = await coll.insert_one({"x": 1})
    assert (await coll.find_one({"_id": result.inserted_id}))["x"] == 1
    fw.probe.assert_below(MAX_STALL)
    await coll.drop()


async def test_200_concurrent_find_one_over_10_connections(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri, maxPoolSize=10)
    coll = client.motor_test.concurrent
    await coll.drop()
    await coll.insert_one({"_id": 1})
    await fw.probe.settle()
    docs = await asyncio.gather(*[coll.find_one({"_id": 1}) for _ in range(200)])
    assert docs == [{"_id": 1}] * 200
    fw.probe.assert_below(MAX_STALL)
    counters = pool_counters(client)
    assert counters["active_sockets"] == 0 and counters["requests"] == 0, counters
    assert len(client.delegate._topology._servers) == 1
    await coll.drop()


async def test_server_selection_against_closed_port(fw: Framework) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=500"
    await fw.probe.settle()
    error = await motor_error(fw.client(uri).db.coll.find_one())
    fw.probe.assert_below(MAX_STALL)
    assert error is ServerSelectionTimeoutError
    assert error is await sync_error(lambda c: c.db.coll.find_one(), uri)


async def test_connect_never_answered(
    fw: Framework, silent_listener: Callable[[], tuple[str, int]]
) -> None:
    def uri() -> str:
        host, port = silent_listener()
        # loadBalanced: no monitor, so the operation itself opens the connection.
        return f"mongodb://{host}:{port}/?loadBalanced=true&connectTimeoutMS=500"

    motor_uri, sync_uri = uri(), uri()
    await fw.probe.settle()
    started = time.monotonic()
    error = await motor_error(fw.client(motor_uri).db.coll.find_one())
    assert time.monotonic() - started >= 0.4  # it did wait for the connect timeout
    fw.probe.assert_below(MAX_STALL)
    assert error is NetworkTimeout
    assert error is await sync_error(lambda c: c.db.coll.find_one(), sync_uri)


async def test_reply_later_than_socket_timeout(fw: Framework, mockup: Any) -> None:
    server = delayed_find(mockup, 2.0)
    uri = f"{server.uri}/?socketTimeoutMS=500"
    coll = fw.client(uri).db.coll
    await coll.database.command("ping")
    await fw.probe.settle()
    error = await motor_error(coll.find_one())
    fw.probe.assert_below(MAX_STALL)
    assert error is NetworkTimeout
    # A server of its own: the first one still sleeps on Motor's abandoned request.
    sync_uri = f"{delayed_find(mockup, 2.0).uri}/?socketTimeoutMS=500"
    assert error is await sync_error(lambda c: c.db.coll.find_one(), sync_uri)


async def test_reply_later_than_csot_timeout(fw: Framework, mockup: Any) -> None:
    server = delayed_find(mockup, 2.0)
    coll = fw.client(server.uri).db.coll
    await coll.database.command("ping")
    await fw.probe.settle()
    with pymongo.timeout(0.5):
        error = await motor_error(coll.find_one())
    fw.probe.assert_below(MAX_STALL)

    def sync_find(client: pymongo.MongoClient[Any]) -> None:
        client.admin.command("ping")
        with pymongo.timeout(0.5):
            client.db.coll.find_one()

    assert error is await sync_error(sync_find, delayed_find(mockup, 2.0).uri)
    assert issubclass(error, NetworkTimeout)


async def test_tls_handshake(fw: Framework, tls_server: Any) -> None:
    # Made before the probe starts: the constructor is PyMongo's, synchronous as
    # MongoClient's is, and builds the SSL context (reads the CA file; 4-5 ms of CPU the
    # first time in a process).  The probe measures the connection: connect, the TLS
    # handshake (each step of it a short C call between two waits) and the commands.
    client = fw.client(tls_server.uri, tls=True, tlsCAFile=tls_server.ca_file)
    await fw.probe.settle()
    assert (await client.admin.command("ping"))["ok"] == 1
    fw.probe.assert_below(MAX_STALL)
    conn = next(iter(client.delegate._topology._servers.values())).pool.conns[0]
    assert conn.conn.get_conn.sock.version().startswith("TLS")


async def test_tls_untrusted_certificate(fw: Framework, tls_server: Any) -> None:
    uri = f"{tls_server.uri}/?tls=true&serverSelectionTimeoutMS=500"
    # No tlsCAFile: the server's certificate is signed by a CA the client does not trust.
    # Made before the probe starts: PyMongo loads the system's CA store synchronously
    # when a TLS client is constructed (once per client, ~17 ms here).
    client = fw.client(uri)
    await fw.probe.settle()
    error = await motor_error(client.admin.command("ping"))
    fw.probe.assert_below(MAX_STALL)
    assert error is ServerSelectionTimeoutError
    assert error is await sync_error(lambda c: c.admin.command("ping"), uri)


async def test_pool_exhausted(fw: Framework, mockup: Any) -> None:
    server = delayed_find(mockup, 1.0)
    uri = f"{server.uri}/?maxPoolSize=1&waitQueueTimeoutMS=200"
    coll = fw.client(uri).db.coll
    await coll.database.command("ping")
    await fw.probe.settle()
    holder = asyncio.ensure_future(coll.find_one())
    await asyncio.sleep(0.05)
    error = await motor_error(coll.database.command("ping"))
    fw.probe.assert_below(MAX_STALL)
    assert error is WaitQueueTimeoutError
    assert (await holder) == {"_id": 1}

    def exhaust(client: pymongo.MongoClient[Any]) -> None:
        client.admin.command("ping")
        thread = threading.Thread(target=client.db.coll.find_one)
        thread.start()
        time.sleep(0.05)
        try:
            client.admin.command("ping")
        finally:
            thread.join()

    sync_server = delayed_find(mockup, 1.0)
    sync_uri = f"{sync_server.uri}/?maxPoolSize=1&waitQueueTimeoutMS=200"
    assert error is await sync_error(exhaust, sync_uri)


async def test_host_names_are_resolved_apart_from_the_application_s_threads(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name is looked up in Motor's resolver threads, not the loop's default executor
    (where the application's run_in_executor and to_thread work may hold every thread),
    and connectTimeoutMS does not limit the lookup, as in PyMongo: a lookup longer than
    it still connects."""
    from concurrent.futures import ThreadPoolExecutor

    port = int(server.uri.rsplit(":", 1)[1].split("/")[0])
    real_getaddrinfo = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "db.motor.test":  # a name whose lookup takes 0.3 s
            looked_up.append(threading.current_thread().name)
            time.sleep(0.3)
            host = "127.0.0.1"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    loop = asyncio.get_running_loop()
    application = ThreadPoolExecutor(1)
    loop.set_default_executor(application)
    release = threading.Event()
    busy = loop.run_in_executor(None, release.wait, 30)  # the application's thread
    client = fw.client(f"mongodb://db.motor.test:{port}/?connectTimeoutMS=100")
    try:
        assert (await asyncio.wait_for(client.admin.command("ping"), 20))["ok"] == 1
        assert not busy.done()
        # The monitor's lookups run in its thread (PyMongo's own path), the pool's in
        # the resolver's.
        assert any(name.startswith("motor-resolver") for name in looked_up), looked_up
    finally:
        release.set()
        await busy
        application.shutdown()


async def test_close_does_not_stall(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.close_stall
    await coll.insert_many([{"i": i} for i in range(10)])
    cursor = coll.find().batch_size(2)
    assert (await cursor.next())["i"] == 0  # a live server-side cursor
    await fw.probe.settle()
    await client.close()
    fw.probe.assert_below(MAX_STALL)


async def test_sockets_shared_with_pymongo_threads(fw: Framework, server: Any) -> None:
    # minPoolSize: PyMongo's maintenance thread opens these connections, in a thread.
    client = fw.client(server.uri, minPoolSize=3)
    coll = client.motor_test.shared_sockets
    await coll.drop()
    pool = next(iter(client.delegate._topology._servers.values())).pool
    deadline = time.monotonic() + 10
    while len(pool.conns) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    made_by_thread = {conn.id for conn in pool.conns}
    assert len(made_by_thread) == 3
    await asyncio.gather(*[coll.insert_one({"i": i}) for i in range(3)])
    assert made_by_thread <= {conn.id for conn in pool.conns}
    # An abandoned cursor is killed by PyMongo's kill-cursors thread through the pool.
    await coll.insert_many([{"j": j} for j in range(10)])
    cursor = coll.find({"j": {"$exists": True}}).batch_size(2)
    assert (await cursor.next())["j"] == 0
    cursor_id = cursor.cursor_id
    assert cursor_id
    del cursor
    gc.collect()
    fw.probe.skip_gap()  # the test's own full collection
    queue = client.delegate._kill_cursors_queue
    while queue and time.monotonic() < deadline + 10:
        await asyncio.sleep(0.05)
    assert not queue
    assert await coll.count_documents({}) == 13
    await coll.drop()


async def test_interrupted_connection_fails_at_once(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pool cleared with interruptInUseConnections (from PyMongo's monitor thread)
    fails the operation waiting for its reply at once, like PyMongo's sync client:
    the cancellation wakes the parked read, which needs no polling slice for it (the
    slice is made longer than the server's delay here)."""
    from motor.green import pool as green_pool

    server = delayed_find(mockup, 3.0)
    coll = fw.client(server.uri).db.coll
    await coll.database.command("ping")
    monkeypatch.setattr(green_pool, "_POLL_TIMEOUT", 30.0)
    topology = coll.database.client.delegate._topology
    pool = next(iter(topology._servers.values())).pool
    await fw.probe.settle()
    finding = asyncio.ensure_future(motor_error(coll.find_one()))
    while not pool.active_contexts or not any(
        getattr(c, "_sock", None) is not None and c._sock._read_waiter is not None
        for c in pool.active_contexts
    ):
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    threading.Thread(target=pool.reset, kwargs={"interrupt_connections": True}).start()
    error = await finding
    assert time.monotonic() - started < 2.0  # before the server's reply (3 s)
    fw.probe.assert_below(MAX_STALL)

    def sync_interrupted(client: pymongo.MongoClient[Any]) -> None:
        client.admin.command("ping")
        sync_pool = next(iter(client._topology._servers.values())).pool
        resetter = threading.Timer(0.3, sync_pool.reset, kwargs={"interrupt_connections": True})
        resetter.start()
        try:
            client.db.coll.find_one()
        finally:
            resetter.join()

    assert error is await sync_error(sync_interrupted, delayed_find(mockup, 3.0).uri)


async def test_calls_from_a_greenlet_that_is_not_the_loops(fw: Framework, server: Any) -> None:
    """A task run in a greenlet of its own (greenback's portals, SQLAlchemy's
    ``greenlet_spawn``) makes Motor calls there and parks that greenlet while it awaits
    them.  The calls' children must park into the greenlet that runs the loop: a child
    that took the calling greenlet as its parent switched back into it from a loop
    callback (``TypeError`` in greenback, wrong results here)."""
    coll = fw.client(server.uri, maxPoolSize=2).db.green_portal
    await coll.drop()
    await coll.insert_many([{"_id": i} for i in range(10)])
    loop_greenlet = greenlet.getcurrent()

    def portal() -> list[Any]:
        # Calls made here, then awaited by the loop's greenlet as greenback's await_ does.
        found = loop_greenlet.switch([coll.find_one({"_id": i}) for i in range(10)])
        counted = loop_greenlet.switch(coll.count_documents({}))
        return [found, counted]

    await fw.probe.settle()
    running = greenlet.greenlet(portal)
    awaitable = running.switch()
    for _ in range(2):
        result = await (asyncio.gather(*awaitable) if isinstance(awaitable, list) else awaitable)
        awaitable = running.switch(result)
    assert running.dead
    assert awaitable == [[{"_id": i} for i in range(10)], 10]
    # The loop and the client go on as before.
    assert await asyncio.gather(*[coll.find_one({"_id": i}) for i in range(10)]) == [
        {"_id": i} for i in range(10)
    ]
    fw.probe.assert_below(MAX_STALL)


@pytest.mark.parametrize("framework", ["asyncio", "uvloop"])
def test_a_loop_run_in_a_greenlet_closes_its_calls(framework: str) -> None:
    """A loop run by a greenlet other than the thread's own (uvloop's iterations are not
    seen by the hub: it does not know that greenlet runs them): closing it from there
    cancels the calls parked on it, as from the thread's own greenlet."""
    loops = Loops(framework)
    wire = WireServer(stall_on="insert")
    state: dict[str, Any] = {}

    def body() -> None:
        loop = loops.new()
        client = loops.client(wire.uri, io_loop=loop)

        async def start() -> None:
            await client.admin.command("ping")
            # A task left pending: closing the loop does not run it again.
            state["task"] = asyncio.ensure_future(asyncio.Event().wait())
            state["insert"] = client.motor_test.in_a_greenlet.insert_one({})  # never answered
            await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)

        loops.run(loop, start)
        hub = get_hub(loop)
        loops.close(loop)
        state["busy"] = [child for child in hub._children if child.future is not None]
        close_client(loops, client)

    try:
        greenlet.greenlet(body).switch()
        assert state["insert"].cancelled()
        assert state["busy"] == []
    finally:
        wire.stop()
