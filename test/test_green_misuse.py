"""Misuse gets a clear Motor error; context and nesting carry into child greenlets."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
import warnings
from typing import Any

import pymongo
import pytest
from pymongo import monitoring
from pymongo.errors import InvalidOperation

from motor.errors import (
    ClientClosedError,
    ForkedClientError,
    WouldBlockError,
    WrongThreadError,
)
from test.framework import Framework, Loops, close_client, run_in_child

request_tag: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="")


async def test_call_from_a_thread_without_the_loop(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    await client.admin.command("ping")
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            client.admin.command("ping")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError), errors
    assert "thread running the client's event loop" in str(errors[0])


def test_call_before_the_loop_runs(server: Any) -> None:
    """On the loop's thread before the loop runs, a call returns a future on the
    thread's current loop, and the operation runs when the loop does (Motor 3.7.1)."""
    from motor.motor_asyncio import AsyncIOMotorClient

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(server.uri)
        future = client.admin.command("ping")
        assert isinstance(future, asyncio.Future) and not future.done()
        assert client.io_loop is loop
        assert loop.run_until_complete(future)["ok"] == 1
        loop.run_until_complete(client.close())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_call_from_a_thread_without_a_loop(server: Any) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(server.uri)
    errors: list[BaseException] = []

    def from_thread() -> None:
        try:
            client.admin.command("ping")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=from_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], WrongThreadError), errors
    assert "no event loop runs in this thread" in str(errors[0])
    client.close()  # no loop: closes synchronously
    with pytest.raises(ClientClosedError):
        client.admin.command("ping")


def test_io_loop_argument_is_checked() -> None:
    from motor.motor_asyncio import AsyncIOMotorClient
    from motor.motor_tornado import MotorClient

    with pytest.raises(TypeError, match="asyncio event loop"):
        AsyncIOMotorClient(io_loop=object())
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="IOLoop"):
            MotorClient(io_loop=loop)
    finally:
        loop.close()


async def test_closed_client(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.closed
    await coll.find_one()
    await client.close()
    # The call returns a future that fails, as Motor 3.7.1's did (with PyMongo's
    # InvalidOperation): gather() and create_task() see the error with the others.
    finding = coll.find_one()
    with pytest.raises(ClientClosedError) as info:
        await finding
    # Also PyMongo's own class for using a closed client.
    assert isinstance(info.value, InvalidOperation)
    outcomes = await asyncio.gather(
        coll.insert_one({}), client.admin.command("ping"), return_exceptions=True
    )
    assert [type(outcome) for outcome in outcomes] == [ClientClosedError] * 2
    # Fetches fail their futures too; what needs no I/O still answers, as in Motor
    # 3.7.1 and PyMongo: closing a cursor, starting a session.
    with pytest.raises(ClientClosedError):
        await coll.find().to_list(0)
    with pytest.warns(DeprecationWarning):
        fetching = coll.find().fetch_next
    with pytest.raises(ClientClosedError):
        await fetching
    assert await coll.find().close() is None
    session = await client.start_session()
    assert session.client is client
    await session.end_session()  # outside a transaction: no I/O
    assert session.has_ended
    async with await client.start_session() as session:
        pass
    assert session.has_ended
    await client.close()  # closing twice is harmless


async def test_sessions_end_after_close(fw: Framework, server: Any) -> None:
    """A session outside a transaction, or in one that has sent nothing, ends after the
    client's close() (no I/O there), as in Motor 3.7.1 and PyMongo."""
    client = fw.client(server.uri)
    await client.admin.command("ping")
    plain = await client.start_session()
    starting = await client.start_session()
    starting.start_transaction()
    await client.close()
    for session in (plain, starting):
        await session.end_session()
        assert session.has_ended
    async with await client.start_session() as session:
        session.start_transaction()
    assert session.has_ended
    # A transaction that sent nothing ends by its block after close(), without hiding
    # the block's exception (PyMongo only changes its state).
    for failing in (False, True):
        async with await client.start_session() as session:
            with pytest.raises(KeyError) if failing else contextlib.nullcontext():
                async with session.start_transaction():
                    if failing:
                        raise KeyError("the block's")
            assert not session.in_transaction
    # Ended explicitly, too: PyMongo commits or aborts such a transaction without I/O,
    # and answers misuse with its own errors, as Motor 3.7.1 did.
    for end, other in (("commit", "abort"), ("abort", "commit")):
        async with await client.start_session() as session:
            with pytest.raises(InvalidOperation, match="No transaction started"):
                await getattr(session, f"{end}_transaction")()
            session.start_transaction()
            assert await getattr(session, f"{end}_transaction")() is None
            assert not session.in_transaction
            with pytest.raises(InvalidOperation, match=f"Cannot call {other}Transaction after"):
                await getattr(session, f"{other}_transaction")()


async def test_async_with_closes(fw: Framework, server: Any) -> None:
    async with fw.client(server.uri) as client:
        assert (await client.admin.command("ping"))["ok"] == 1
    with pytest.raises(ClientClosedError):
        await client.admin.command("ping")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
async def test_used_after_fork(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    await client.admin.command("ping")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # the child: report the outcome through the exit status
        code = 3
        try:
            client.admin.command("ping")
        except ForkedClientError:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    fw.probe.skip_gap()  # fork() and waitpid() block the loop here, in the test itself
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's client is unaffected.
    assert (await client.admin.command("ping"))["ok"] == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
@pytest.mark.parametrize("before_fork", ["created", "used on a closed loop"])
def test_a_client_whose_loop_is_not_open_at_fork_works_in_the_child(
    server: Any, framework: str, before_fork: str
) -> None:
    # Module-level setup of a pre-forking server (gunicorn --preload, Celery's prefork
    # pool): the client is made in the parent, perhaps used there in an asyncio.run()
    # (indexes, say), and used in each worker.
    loops = Loops(framework)
    client = loops.client(server.uri)

    async def ping() -> Any:
        return await client.admin.command("ping")

    if before_fork != "created":
        setup = loops.new()
        try:
            assert loops.run(setup, ping)["ok"] == 1
        finally:
            loops.close(setup)

    def child() -> None:
        loop = loops.new()
        try:
            with warnings.catch_warnings():
                # PyMongo's own, for a client it connected before fork().
                warnings.filterwarnings("ignore", "MongoClient opened before fork")
                assert loops.run(loop, ping)["ok"] == 1
            close_client(loops, client, loop)
        finally:
            loops.close(loop)

    run_in_child(child)
    # The parent's client is unaffected.
    loop = loops.new()
    try:
        assert loops.run(loop, ping)["ok"] == 1
        close_client(loops, client, loop)
    finally:
        loops.close(loop)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
def test_a_client_bound_to_a_loop_open_at_fork_moves_to_the_child_s_own_loop(
    server: Any, framework: str
) -> None:
    # A worker forked while the parent's loop is open (multiprocessing from a running
    # application), running a loop of its own with the parent's client, as Motor
    # 3.7.1's threads ran its operations there.  The parent's loop, and the
    # connections the child inherited, stay the parent's.
    loops = Loops(framework)
    client = loops.client(server.uri)
    coll = client.motor_test[f"forked_open_loop_{framework}"]
    parent = loops.new()

    async def setup() -> int:
        await coll.drop()
        await coll.insert_one({"_id": "parent"})
        return await coll.count_documents({})  # type: ignore[no-any-return]

    async def ids() -> list[Any]:
        return [doc["_id"] async for doc in coll.find().sort("_id")]

    async def work() -> list[Any]:
        await coll.insert_one({"_id": "child"})
        return await ids()

    def child() -> None:
        loop = loops.new()
        try:
            with warnings.catch_warnings():
                # PyMongo's own, for a client it connected before fork().
                warnings.filterwarnings("ignore", "MongoClient opened before fork")
                assert loops.run(loop, work) == ["child", "parent"]
            close_client(loops, client, loop)
        finally:
            loops.close(loop)

    async def parent_again() -> list[Any]:
        for _ in range(20):  # on the connections the parent pooled before fork()
            assert (await coll.find_one({"_id": "parent"})) == {"_id": "parent"}
        return await ids()

    try:
        assert loops.run(parent, setup) == 1
        run_in_child(child)
        assert loops.run(parent, parent_again) == ["child", "parent"]
        close_client(loops, client, parent)
    finally:
        loops.close(parent)


class ProcessCommands(monitoring.CommandListener):
    """Records the process each command starts in."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen.append((os.getpid(), event.command_name))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
def test_the_parent_s_parked_calls_stay_parked_in_the_child(server: Any, framework: str) -> None:
    # A child that runs the parent's loop (fork() inside a coroutine, then an exit that
    # unwinds through asyncio.run(), which cancels the parent's tasks and closes its
    # loop) must not resume the operations parked there: the parent's sockets are the
    # child's too, so a parked read would take the parent's reply, and PyMongo's cleanup
    # of a call would send commands (killCursors) from the child.
    loops = Loops(framework)
    commands = ProcessCommands()
    client = loops.client(server.uri, event_listeners=[commands])
    news = client.motor_test[f"fork_parked_{framework}"]
    parent = loops.new()
    parked: list[Any] = []

    async def setup() -> None:
        await news.drop()
        await news.database.create_collection(news.name, capped=True, size=4096)
        await news.insert_many([{"n": 1}, {"n": 2}])
        cursor = news.find(cursor_type=pymongo.CursorType.TAILABLE_AWAIT)
        cursor.batch_size(1).max_await_time_ms(10_000)
        assert [(await cursor.next())["n"], (await cursor.next())["n"]] == [1, 2]
        waiting = asyncio.ensure_future(cursor.next())  # a getMore the server holds
        await asyncio.sleep(0.2)
        assert not waiting.done()
        parked.extend([cursor, waiting])

    def child() -> None:
        # The reply to the parent's getMore arrives on the socket the child shares.
        other: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri)
        try:
            other[news.database.name][news.name].insert_one({"n": 3})
        finally:
            other.close()
        loop = loops.asyncio_loop(parent)
        loop.run_until_complete(asyncio.sleep(0.5))
        assert not parked[1].done(), parked[1]
        loops.close(parent)  # as asyncio.run() closes it
        in_child = [name for pid, name in commands.seen if pid == os.getpid()]
        assert in_child == [], in_child

    async def parent_again() -> list[Any]:
        cursor, waiting = parked
        third = await asyncio.wait_for(waiting, 10)  # the reply the child left alone
        await news.insert_one({"n": 4})
        return [third["n"], (await cursor.next())["n"]]

    try:
        loops.run(parent, setup)
        run_in_child(child)
        assert loops.run(parent, parent_again) == [3, 4]
        close_client(loops, client, parent)
    finally:
        loops.close(parent)


class TagRecorder(monitoring.CommandListener):
    """Records the context variable's value where each command starts."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        self.timeouts: dict[str, float | None] = {}
        self.nested: list[Any] = []
        self.nested_call: Any = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.tags[event.command_name] = request_tag.get()
        self.timeouts[event.command_name] = pymongo._csot.get_timeout()
        if event.command_name == "find" and self.nested_call is not None:
            # A Motor call made from inside a child greenlet.
            self.nested.append(self.nested_call())

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_context_reaches_the_operation(fw: Framework, server: Any) -> None:
    recorder = TagRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    coll = client.motor_test.context
    request_tag.set("request-1")
    await coll.find_one()
    assert recorder.tags["find"] == "request-1"
    # The child's context is a copy: changes inside do not leak out, and vice versa.
    request_tag.set("request-2")
    await coll.insert_one({})
    assert recorder.tags["insert"] == "request-2"
    assert recorder.timeouts["insert"] is None
    with pymongo.timeout(5):
        await coll.count_documents({})
    assert recorder.timeouts["aggregate"] == 5
    await coll.drop()


async def test_motor_call_from_inside_a_child(fw: Framework, server: Any) -> None:
    recorder = TagRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    coll = client.motor_test.nested
    await coll.drop()
    recorder.nested_call = lambda: coll.insert_one({"nested": True})
    assert await coll.find_one({"nested": True}) is None
    recorder.nested_call = None
    assert len(recorder.nested) == 1
    result = await recorder.nested[0]
    assert result.acknowledged
    assert (await coll.find_one({"nested": True}))["_id"] == result.inserted_id
    await coll.drop()


def test_tornado_gen_coroutine(server: Any) -> None:
    from tornado import gen
    from tornado.ioloop import IOLoop

    from motor.motor_tornado import MotorClient

    @gen.coroutine
    def legacy_handler() -> Any:
        client: MotorClient[Any] = MotorClient(server.uri, io_loop=IOLoop.current())
        coll = client.motor_test.gen_coroutine
        yield coll.drop()
        result = yield coll.insert_one({"x": 1})
        doc = yield coll.find_one({"_id": result.inserted_id})
        yield coll.drop()
        yield client.close()
        return doc["x"]

    io_loop = IOLoop(make_current=False)
    try:
        assert io_loop.run_sync(legacy_handler) == 1
    finally:
        io_loop.close()


async def test_sync_call_on_the_delegate_is_refused(fw: Framework, server: Any) -> None:
    """PyMongo's sync method called straight on the delegate, on the loop's thread,
    would block the loop: the green primitives refuse to wait there."""
    client = fw.client(server.uri)
    await fw.probe.settle()
    with pytest.raises(WouldBlockError, match="block the running event loop"):
        client.delegate.admin.command("ping")
    # The client is unharmed: its own (awaited) methods work.
    assert (await client.admin.command("ping"))["ok"] == 1
    fw.probe.assert_below(0.010)


async def test_server_properties_refuse_to_select_on_the_loop(fw: Framework, server: Any) -> None:
    # Nothing listens on port 1: the server never becomes known.
    unknown = fw.client("mongodb://127.0.0.1:1", serverSelectionTimeoutMS=100)
    await fw.probe.settle()
    for name in ("address", "is_primary", "is_mongos"):
        with pytest.raises(WouldBlockError, match=name):
            getattr(unknown, name)
    fw.probe.assert_below(0.010)
    client = fw.client(server.uri)
    await client.aconnect()
    assert client.address == (server.host, server.port)
    assert client.is_primary is True
    assert client.is_mongos is False
