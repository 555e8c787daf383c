"""Motor's cursors: find cursors, command cursors, latent command cursors, raw batches.

Every test runs under asyncio and Tornado against the test server. Behaviour (results and
exception classes) is PyMongo 4.20's sync behaviour; where FerretDB's answer matters the
same scenario runs with a sync ``pymongo.MongoClient`` in a worker thread and Motor must give
the same outcome. The call style (what is awaited, what is plain) is Motor 3.7.1's.
A :class:`Recorder` (a PyMongo command listener) shows which commands reach the server, on
which thread, and with which fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import bson
import pymongo
import pytest
from pymongo import CursorType, monitoring
from pymongo.command_cursor import CommandCursor
from pymongo.cursor import Cursor
from pymongo.errors import InvalidOperation, OperationFailure, PyMongoError

import motor.motor_asyncio
import motor.motor_tornado
from test.framework import Framework

MAX_BUSY = 0.010
# Upper bound for waiting on something that happens in the background (no wall-clock assert:
# only a guard against hanging).
WAIT = 10.0


@dataclass
class Event:
    kind: str  # "started", "succeeded" or "failed"
    name: str
    doc: dict[str, Any]
    thread: int


class Recorder(monitoring.CommandListener):
    """Every command event, with a copy of the command and the thread it happened on."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(
            Event("started", event.command_name, dict(event.command), threading.get_ident())
        )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events.append(
            Event("succeeded", event.command_name, dict(event.reply), threading.get_ident())
        )

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append(Event("failed", event.command_name, {}, threading.get_ident()))

    def started_commands(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        return [e.doc for e in self.events[since:] if e.kind == "started" and e.name == name]

    def kills(self, since: int = 0) -> list[Event]:
        return [e for e in self.events[since:] if e.kind == "started" and e.name == "killCursors"]

    def kill_of(self, cursor_id: int) -> Event | None:
        for event in self.kills():
            if cursor_id in event.doc["cursors"]:
                return event
        return None


@contextlib.asynccontextmanager
async def scratch_db(client: Any) -> AsyncIterator[Any]:
    """A database with a unique name, dropped at the end."""
    name = f"motor_test_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)


def motor_name(fw: Framework, name: str) -> str:
    return ("AsyncIOMotor" if fw.name == "asyncio" else "Motor") + name


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` every 50 ms until it returns something true; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def outcome_of(fn: Callable[[], Any]) -> tuple[Any, ...]:
    try:
        return ("ok", fn())
    except PyMongoError as exc:
        return ("error", type(exc), getattr(exc, "code", None))


async def sync_outcome(uri: str, dbname: str, fn: Callable[[Any], Any]) -> tuple[Any, ...]:
    """What PyMongo's sync client gives for ``fn(database)`` (run in a worker thread)."""

    def run() -> tuple[Any, ...]:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
        try:
            return outcome_of(lambda: fn(client[dbname]))
        finally:
            client.close()

    return await asyncio.get_running_loop().run_in_executor(None, run)


async def motor_outcome(awaitable: Any) -> tuple[Any, ...]:
    try:
        return ("ok", await awaitable)
    except PyMongoError as exc:
        return ("error", type(exc), getattr(exc, "code", None))


def ids(docs: list[Any]) -> list[Any]:
    return [doc["_id"] for doc in docs]


async def seed(coll: Any, n: int) -> None:
    await coll.insert_many([{"_id": i, "x": i} for i in range(n)])


# --------------------------------------------------------------------------------- to_list


async def test_to_list_lengths_find_cursor(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 4)
        # Motor 3.7.1's documented example: to_list(2) repeatedly over 4 documents.
        cursor = db.c.find().sort("_id", 1)
        assert ids(await cursor.to_list(2)) == [0, 1]
        assert ids(await cursor.to_list(length=2)) == [2, 3]
        assert await cursor.to_list(2) == []
        # On an exhausted cursor, any length gives [].
        assert await cursor.to_list() == []
        assert await cursor.to_list(None) == []

        assert ids(await db.c.find().sort("_id", 1).to_list()) == [0, 1, 2, 3]
        assert ids(await db.c.find().sort("_id", 1).to_list(None)) == [0, 1, 2, 3]
        assert ids(await db.c.find().sort("_id", 1).to_list(100)) == [0, 1, 2, 3]

        # to_list(0) gives [] and consumes nothing; as in Motor 3.7.1, it runs the query
        # (a batch fetched if none is buffered), whose errors it raises.
        cursor = db.c.find().sort("_id", 1)
        assert await cursor.to_list(0) == []
        assert cursor.started and cursor.cursor_id is not None
        with pytest.raises(InvalidOperation):
            cursor.sort("_id", -1)
        assert ids(await cursor.to_list()) == [0, 1, 2, 3]
        with pytest.raises(OperationFailure):
            await db.c.find({"$bad": 1}).to_list(0)
        with pytest.raises(OperationFailure):
            await db.c.aggregate([{"$bad": 1}]).to_list(0)

        # The rest of a batch stays for the next call, across getMores too.
        cursor = db.c.find().sort("_id", 1).batch_size(3)
        assert ids(await cursor.to_list(2)) == [0, 1]
        assert ids(await cursor.to_list(2)) == [2, 3]
        assert await cursor.to_list(2) == []
        assert not cursor.alive
    fw.probe.assert_below(MAX_BUSY)


async def test_to_list_lengths_command_cursors(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 4)
        # A latent command cursor (aggregate) and a command cursor (cursor_command).
        latent = db.c.aggregate([{"$sort": {"_id": 1}}], batchSize=3)
        command = await db.cursor_command("find", "c", sort={"_id": 1}, batchSize=3)
        for cursor in (latent, command):
            assert ids(await cursor.to_list(2)) == [0, 1]
            assert ids(await cursor.to_list(2)) == [2, 3]
            assert await cursor.to_list(2) == []
            assert await cursor.to_list() == []

        cursor = db.c.aggregate([{"$sort": {"_id": 1}}])
        assert await cursor.to_list(0) == []
        assert ids(await cursor.to_list()) == [0, 1, 2, 3]
        cursor = await db.cursor_command("find", "c", sort={"_id": 1})
        assert ids(await cursor.to_list(None)) == [0, 1, 2, 3]
    fw.probe.assert_below(MAX_BUSY)


async def test_to_list_argument_errors(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 3)
        cursors = [
            db.c.find(),
            db.c.aggregate([]),
            await db.cursor_command("find", "c", batchSize=1),
        ]
        for cursor in cursors:
            with pytest.raises(ValueError):
                await cursor.to_list(-1)
            for bad in ("2", 2.5):
                with pytest.raises(TypeError):
                    await cursor.to_list(bad)
            # The cursor is still usable.
            assert sorted(ids(await cursor.to_list())) == [0, 1, 2]


async def test_to_list_on_tailable_cursor_is_invalid(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        capped = await db.create_collection("capped", capped=True, size=100_000)
        await capped.insert_many([{"_id": i} for i in range(3)])
        for cursor_type in (CursorType.TAILABLE, CursorType.TAILABLE_AWAIT):
            with pytest.raises(InvalidOperation):
                await capped.find(cursor_type=cursor_type).to_list()
            with pytest.raises(InvalidOperation):
                await capped.find(cursor_type=cursor_type).to_list(2)
        # The tailable flag set through add_option counts too.
        with pytest.raises(InvalidOperation):
            await capped.find().add_option(2).to_list()


async def test_to_list_of_2000_documents_does_not_hold_the_loop(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await db.c.insert_many([{"_id": i, "s": "x" * 50} for i in range(2000)])
        await fw.probe.settle()
        docs = await db.c.find().sort("_id", 1).to_list()
        assert ids(docs) == list(range(2000))
        fw.probe.assert_below(MAX_BUSY)


# ------------------------------------------------------------------------------- iteration


async def test_async_for_and_next(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 5)
        # async for, across several batches.
        cursor = db.c.find().sort("_id", 1).batch_size(2)
        assert [doc["_id"] async for doc in cursor] == [0, 1, 2, 3, 4]
        assert not cursor.alive

        # next() until StopAsyncIteration, and again after the end.
        cursor = db.c.find({"_id": {"$lt": 3}}).sort("_id", 1).batch_size(2)
        assert await cursor.next() == {"_id": 0, "x": 0}
        assert await cursor.next() == {"_id": 1, "x": 1}
        assert await cursor.next() == {"_id": 2, "x": 2}
        with pytest.raises(StopAsyncIteration):
            await cursor.next()
        with pytest.raises(StopAsyncIteration):
            await cursor.next()

        # The same on a latent command cursor and a command cursor.
        latent = db.c.aggregate([{"$sort": {"_id": 1}}], batchSize=2)
        assert [doc["_id"] async for doc in latent] == [0, 1, 2, 3, 4]
        command = await db.cursor_command("find", "c", sort={"_id": 1}, batchSize=2)
        got = []
        while True:
            try:
                got.append((await command.next())["_id"])
            except StopAsyncIteration:
                break
        assert got == [0, 1, 2, 3, 4]
        assert not command.alive

        # An empty result.
        assert [doc async for doc in db.c.find({"_id": -1})] == []
        with pytest.raises(StopAsyncIteration):
            await db.c.find({"_id": -1}).next()
    fw.probe.assert_below(MAX_BUSY)


# Motor 3.7.1's warnings, word for word: warning filters match on them.
FETCH_NEXT_WARNING = (
    "The fetch_next property is deprecated and may be removed in a future major release. "
    "Use `async for` to iterate over Cursor objects instead."
)
NEXT_OBJECT_WARNING = (
    "The next_object method is deprecated and may be removed in a future major release.  "
    "Use `async for` to iterate over Cursor objects instead."
)


async def test_fetch_next_and_next_object_are_deprecated(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 5)
        cursor = db.c.find().sort("_id", 1).batch_size(2)
        docs = []
        while True:
            with pytest.warns(DeprecationWarning, match="fetch_next"):
                more = cursor.fetch_next
            if not await more:
                break
            with pytest.warns(DeprecationWarning, match="next_object"):
                docs.append(cursor.next_object())
        assert ids(docs) == [0, 1, 2, 3, 4]
        # Nothing left: fetch_next resolves False again, next_object() gives None.
        with pytest.warns(DeprecationWarning, match=f"^{re.escape(FETCH_NEXT_WARNING)}$"):
            more = cursor.fetch_next
        assert await more is False
        with pytest.warns(DeprecationWarning, match=f"^{re.escape(NEXT_OBJECT_WARNING)}$"):
            assert cursor.next_object() is None

        # The classic loop, on a latent command cursor; one warning per access and call.
        cursor = db.c.aggregate([{"$sort": {"_id": 1}}], batchSize=2)
        docs = []
        with pytest.warns(DeprecationWarning) as record:
            while await cursor.fetch_next:
                doc = cursor.next_object()
                docs.append(doc)
        assert ids(docs) == [0, 1, 2, 3, 4]
        assert all(issubclass(w.category, DeprecationWarning) for w in record)
        assert len(record) == 2 * 5 + 1
    fw.probe.assert_below(MAX_BUSY)


async def test_each(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    loop = asyncio.get_running_loop()
    async with scratch_db(client) as db:
        await seed(db.c, 5)

        # Every document, then (None, None).
        calls: list[tuple[Any, Any]] = []
        done = loop.create_future()

        def callback(doc: Any, error: Any) -> None:
            calls.append((doc, error))
            if doc is None and not done.done():
                done.set_result(None)

        assert db.c.find().sort("_id", 1).batch_size(2).each(callback) is None
        await asyncio.wait_for(done, WAIT)
        assert calls == [({"_id": i, "x": i}, None) for i in range(5)] + [(None, None)]

        # Returning exactly False stops the iteration; the cursor keeps the rest.
        stopped: list[Any] = []

        def stop_at_second(doc: Any, error: Any) -> Any:
            stopped.append((doc, error))
            return False if len(stopped) == 2 else None

        cursor = db.c.find().sort("_id", 1).batch_size(2)
        cursor.each(stop_at_second)
        await wait_until(lambda: len(stopped) >= 2, "two callbacks")
        rest = await cursor.to_list()
        assert ids(rest) == [2, 3, 4]
        await asyncio.sleep(0)
        assert stopped == [({"_id": 0, "x": 0}, None), ({"_id": 1, "x": 1}, None)]

        # An error reaches the callback as (None, exc), and nothing follows it.
        errors: list[tuple[Any, Any]] = []
        failed = loop.create_future()

        def on_error(doc: Any, error: Any) -> None:
            errors.append((doc, error))
            if not failed.done():
                failed.set_result(None)

        db.c.find({"$foo": 1}).each(on_error)
        await asyncio.wait_for(failed, WAIT)
        expected = await sync_outcome(server.uri, db.name, lambda d: list(d.c.find({"$foo": 1})))
        assert expected[0] == "error"
        await db.command("ping")  # a round trip, time for a wrong extra callback
        assert len(errors) == 1, errors
        doc, error = errors[0]
        assert doc is None
        assert type(error) is expected[1]
        assert error.code == expected[2]
    fw.probe.assert_below(MAX_BUSY)


# ------------------------------------------------------------------------------- chaining


async def test_chaining_methods_return_the_cursor_and_apply(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.find({}, {"x": 1})
        assert cursor.sort("x", -1) is cursor
        assert cursor.skip(2) is cursor
        assert cursor.limit(3) is cursor
        assert cursor.batch_size(2) is cursor
        assert cursor.hint([("_id", 1)]) is cursor
        assert cursor.comment("motor chaining") is cursor
        assert cursor.max_time_ms(5000) is cursor
        assert cursor.allow_disk_use(True) is cursor
        assert cursor.max_await_time_ms(100) is cursor  # only for tailable await cursors
        assert cursor.add_option(2) is cursor
        assert cursor.remove_option(2) is cursor
        mark = len(recorder.events)
        assert ids(await cursor.to_list()) == [7, 6, 5]
        (find,) = recorder.started_commands("find", mark)
        assert find["sort"] == {"x": -1}
        assert find["skip"] == 2
        assert find["limit"] == 3
        assert find["batchSize"] == 2
        assert find["hint"] == {"_id": 1}
        assert find["comment"] == "motor chaining"
        assert find["maxTimeMS"] == 5000
        assert find["allowDiskUse"] is True
        assert "tailable" not in find
        assert "maxAwaitTimeMS" not in find
        assert recorder.started_commands("getMore", mark)  # batch size 2 < limit 3

        # add_option(2) alone makes a tailable find, which PyMongo sends as "tailable".
        tailable = db.c.find().add_option(2)
        mark = len(recorder.events)
        got = await motor_outcome(tailable.next())
        assert recorder.started_commands("find", mark)[0]["tailable"] is True
        expected = await sync_outcome(
            server.uri, db.name, lambda d: d.c.find().add_option(2).next()
        )
        assert got == expected
    fw.probe.assert_below(MAX_BUSY)


async def test_min_max_with_hint(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.find().sort("_id", 1)
        assert cursor.hint([("_id", 1)]) is cursor
        assert cursor.min([("_id", 2)]) is cursor
        assert cursor.max([("_id", 5)]) is cursor
        mark = len(recorder.events)
        got = await motor_outcome(cursor.to_list())
        (find,) = recorder.started_commands("find", mark)
        assert find["min"] == {"_id": 2}
        assert find["max"] == {"_id": 5}
        assert find["hint"] == {"_id": 1}

        def sync(d: Any) -> Any:
            return (
                d.c.find()
                .sort("_id", 1)
                .hint([("_id", 1)])
                .min([("_id", 2)])
                .max([("_id", 5)])
                .to_list()
            )

        assert got == await sync_outcome(server.uri, db.name, sync)

        # min/max without hint: PyMongo refuses before sending anything.
        mark = len(recorder.events)
        with pytest.raises(InvalidOperation):
            await db.c.find().min([("_id", 2)]).to_list()
        assert recorder.started_commands("find", mark) == []


async def test_where_collation_max_scan_behave_like_pymongo(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 10)

        cursor = db.c.find().sort("_id", 1)
        assert cursor.where("this.x > 6") is cursor
        got = await motor_outcome(cursor.to_list())
        expected = await sync_outcome(
            server.uri, db.name, lambda d: d.c.find().sort("_id", 1).where("this.x > 6").to_list()
        )
        # FerretDB drops the connection on the Code value (AutoReconnect); mongod runs it.
        assert got == expected
        # The client recovers from whatever happened to that connection.
        assert await db.c.find_one({"_id": 1}) == {"_id": 1, "x": 1}

        cursor = db.c.find()
        assert cursor.collation({"locale": "en"}) is cursor
        got = await motor_outcome(cursor.to_list())
        expected = await sync_outcome(
            server.uri, db.name, lambda d: d.c.find().collation({"locale": "en"}).to_list()
        )
        assert got == expected

        cursor = db.c.find()
        assert cursor.max_scan(3) is cursor
        got = await motor_outcome(cursor.to_list())
        expected = await sync_outcome(
            server.uri, db.name, lambda d: d.c.find().max_scan(3).to_list()
        )
        assert got == expected


async def test_explain_and_distinct(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        plan = await db.c.find({"x": 1}).explain()
        assert isinstance(plan, dict)
        assert "queryPlanner" in plan
        assert sorted(await db.c.find({"x": {"$gt": 5}}).distinct("x")) == [6, 7, 8, 9]
    fw.probe.assert_below(MAX_BUSY)


# ------------------------------------------------------------------ properties and lifetime


async def test_cursor_properties(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        coll = db.c
        cursor = coll.find().sort("_id", 1).batch_size(2)
        assert type(cursor).__name__ == motor_name(fw, "Cursor")
        assert isinstance(cursor.delegate, Cursor)
        assert cursor.collection is coll
        assert cursor.alive  # not started yet
        assert cursor.cursor_id is None
        assert cursor.address is None
        assert cursor.retrieved == 0
        assert cursor.session is None

        await cursor.next()
        assert cursor.alive
        assert isinstance(cursor.cursor_id, int)
        # mypy keeps cursor.cursor_id narrowed to None across the await above.
        assert cursor.cursor_id != 0  # type: ignore[unreachable]
        assert cursor.address == (server.host, server.port)
        assert cursor.retrieved == 2

        assert len(await cursor.to_list()) == 9
        assert cursor.retrieved == 10
        assert not cursor.alive

        command = await db.list_collections()
        assert type(command).__name__ == motor_name(fw, "CommandCursor")
        assert isinstance(command.delegate, CommandCursor)
        assert command.alive
        assert command.address == (server.host, server.port)
        assert [c["name"] async for c in command] == ["c"]
        assert not command.alive
    fw.probe.assert_below(MAX_BUSY)  # type: ignore[unreachable]


async def test_close_kills_the_server_cursor(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        # Drain the first batch: PyMongo still hands out buffered documents after close().
        cursor = db.c.find().batch_size(2)
        await cursor.next()
        await cursor.next()
        cursor_id = cursor.cursor_id
        assert cursor_id
        await cursor.close()
        kill = recorder.kill_of(cursor_id)
        assert kill is not None
        assert kill.doc["killCursors"] == "c"
        assert not cursor.alive
        with pytest.raises(StopAsyncIteration):
            await cursor.next()
        assert await cursor.to_list() == []
        await cursor.close()  # closing twice is harmless

        # The same for a command cursor.
        command = await db.cursor_command("find", "c", batchSize=2)
        await command.next()
        await command.next()
        command_id = command.cursor_id
        assert command_id
        await command.close()
        assert recorder.kill_of(command_id) is not None
        assert not command.alive
    fw.probe.assert_below(MAX_BUSY)


async def test_async_with_closes_the_cursor(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.find().batch_size(2)
        async with cursor as entered:
            assert entered is cursor
            assert (await cursor.next())["_id"] == 0
            assert (await cursor.next())["_id"] == 1
            cursor_id = cursor.cursor_id
            assert cursor_id
        assert recorder.kill_of(cursor_id) is not None
        assert not cursor.alive

        latent = db.c.aggregate([], batchSize=2)
        async with latent:
            await latent.next()
            await latent.next()
            latent_id = latent.cursor_id
            assert latent_id
        assert recorder.kill_of(latent_id) is not None
        assert not latent.alive
    fw.probe.assert_below(MAX_BUSY)


async def test_clone_is_independent(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        coll = db.c
        cursor = coll.find().sort("_id", 1).limit(5).batch_size(2)
        assert (await cursor.next())["_id"] == 0
        clone = cursor.clone()
        assert clone is not cursor
        assert type(clone) is type(cursor)
        # Regression: the clone's collection used to be the cursor.
        assert type(clone.collection) is type(coll)
        assert clone.collection == coll
        assert clone.collection.full_name == coll.full_name
        # Unevaluated, with the same options; changing it leaves the original alone.
        assert clone.retrieved == 0
        assert clone.limit(2) is clone
        assert ids(await clone.to_list()) == [0, 1]
        assert ids(await cursor.to_list()) == [1, 2, 3, 4]
        # A clone of an exhausted cursor starts over.
        assert ids(await cursor.clone().to_list()) == [0, 1, 2, 3, 4]
    fw.probe.assert_below(MAX_BUSY)


async def test_rewind_does_no_io_and_reruns_the_query(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    loop_thread = threading.get_ident()
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.find().sort("_id", 1).batch_size(2)
        assert ids([await cursor.next(), await cursor.next()]) == [0, 1]
        old_id = cursor.cursor_id
        assert old_id

        mark = len(recorder.events)
        result = cursor.rewind()
        during = recorder.events[mark:]
        assert result is cursor
        assert not inspect.isawaitable(result)
        # Nothing was sent from the loop's thread while rewind() ran.
        assert [e for e in during if e.thread == loop_thread] == []
        assert cursor.retrieved == 0
        assert cursor.alive

        mark = len(recorder.events)
        assert ids(await cursor.to_list()) == list(range(10))
        assert len(recorder.started_commands("find", mark)) == 1
        # The old server cursor is killed in the background.
        kill = await wait_until(lambda: recorder.kill_of(old_id), f"killCursors {old_id}")
        assert kill.doc["killCursors"] == "c"

        # rewind() of a cursor that never started does nothing.
        fresh = db.c.find({"_id": 3})
        mark = len(recorder.events)
        assert fresh.rewind() is fresh
        assert [e for e in recorder.events[mark:] if e.thread == loop_thread] == []
        assert ids(await fresh.to_list()) == [3]
    fw.probe.assert_below(MAX_BUSY)


async def test_abandoned_cursor_is_killed_in_the_background(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    loop_thread = threading.get_ident()
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.find().batch_size(2)
        await cursor.next()
        cursor_id = cursor.cursor_id
        assert cursor_id
        await fw.probe.settle()

        mark = len(recorder.events)
        del cursor
        gc.collect()
        # The test's own full collection of the heap is not the driver's work.
        fw.probe.skip_gap()
        # No command from the loop's thread while the cursor was collected.
        assert [e for e in recorder.events[mark:] if e.thread == loop_thread] == []

        kill = await wait_until(lambda: recorder.kill_of(cursor_id), f"killCursors {cursor_id}")
        assert kill.thread != loop_thread
        assert kill.doc["killCursors"] == "c"
        fw.probe.assert_below(MAX_BUSY)


# ------------------------------------------------------------------------------- tailable


# FerretDB 1.24 sometimes hands out a document again after an await-data getMore timed out:
# the timeout can interrupt its cursor reset (re-run the query, skip to the last record id)
# half way, and the next getMore resumes from there. Seen with sync PyMongo too (about one
# run in 50); MongoDB never does it. Tailable tests therefore skip documents already seen.


async def next_tailed(cursor: Any, seen: set[Any]) -> Any:
    """The next new document of a tailable cursor, through empty await-data getMores."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while True:
        try:
            doc = await cursor.next()
        except StopAsyncIteration:
            assert cursor.alive
            if loop.time() > deadline:
                raise AssertionError("the tailable cursor got no document") from None
            continue
        if doc["_id"] not in seen:
            seen.add(doc["_id"])
            return doc


async def test_tailable_await_cursor(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        capped = await db.create_collection("capped", capped=True, size=100_000)
        await capped.insert_many([{"_id": i} for i in range(5)])
        # FerretDB closes a tailable cursor whose first batch drains the collection: keep the
        # batch size below the collection's size.
        cursor = capped.find(cursor_type=CursorType.TAILABLE_AWAIT, batch_size=2)
        assert cursor.max_await_time_ms(300) is cursor
        # No getMore has timed out yet: exactly the documents there are.
        assert [(await cursor.next())["_id"] for _ in range(5)] == [0, 1, 2, 3, 4]
        assert cursor.alive
        assert cursor.cursor_id
        seen = {0, 1, 2, 3, 4}

        # A document inserted while no getMore runs.
        await capped.insert_one({"_id": 5})
        assert await next_tailed(cursor, seen) == {"_id": 5}

        # A document inserted while an await-data getMore waits: the loop stays free.
        mark = len(recorder.events)
        task = asyncio.ensure_future(next_tailed(cursor, seen))
        await wait_until(lambda: recorder.started_commands("getMore", mark), "a getMore")
        await capped.insert_one({"_id": 6})
        assert await asyncio.wait_for(task, WAIT) == {"_id": 6}
        assert cursor.alive

        get_mores = recorder.started_commands("getMore")
        assert get_mores
        assert all(g["maxTimeMS"] == 300 for g in get_mores)
        (find,) = recorder.started_commands("find")
        assert find["tailable"] is True
        assert find["awaitData"] is True

        cursor_id = cursor.cursor_id
        await cursor.close()
        assert recorder.kill_of(cursor_id) is not None
        assert not cursor.alive
    fw.probe.assert_below(MAX_BUSY)


async def test_try_next_on_tailable_command_cursor(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        capped = await db.create_collection("capped", capped=True, size=100_000)
        await capped.insert_many([{"_id": i} for i in range(5)])
        cursor = await db.cursor_command(
            "find", "capped", tailable=True, awaitData=True, batchSize=2, max_await_time_ms=100
        )
        # Until the first None no getMore has timed out: exactly the documents there are.
        got = []
        while (doc := await cursor.try_next()) is not None:
            got.append(doc["_id"])
        assert got == [0, 1, 2, 3, 4]
        # That None meant "nothing now": the cursor stays open and sees a new document.
        assert cursor.alive
        assert cursor.cursor_id
        await capped.insert_one({"_id": 5})
        doc = None
        for _ in range(50):
            doc = await cursor.try_next()
            if doc is not None and doc["_id"] not in got:  # see next_tailed
                break
        assert doc == {"_id": 5}
        assert cursor.alive
        await cursor.close()
    fw.probe.assert_below(MAX_BUSY)


async def test_try_next_on_non_tailable_command_cursors(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 5)
        # Every document, then None with the cursor dead: on a command cursor and on a latent
        # one (try_next is its first fetch).
        cursors = [
            await db.cursor_command("find", "c", sort={"_id": 1}, batchSize=2),
            db.c.aggregate([{"$sort": {"_id": 1}}], batchSize=2),
        ]
        for cursor in cursors:
            got = []
            while (doc := await cursor.try_next()) is not None:
                got.append(doc["_id"])
            assert got == [0, 1, 2, 3, 4]
            assert not cursor.alive
            assert await cursor.try_next() is None
    fw.probe.assert_below(MAX_BUSY)


# ----------------------------------------------------------------- latent command cursors


async def test_aggregate_is_sent_on_first_fetch(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.aggregate([{"$sort": {"_id": 1}}])
        assert type(cursor).__name__ == motor_name(fw, "LatentCommandCursor")
        assert not inspect.isawaitable(cursor)
        await db.command("ping")  # a round trip, time for anything sent too early
        assert recorder.started_commands("aggregate") == []
        assert cursor.alive
        assert ids(await cursor.to_list()) == list(range(10))
        assert len(recorder.started_commands("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)


async def test_aggregate_errors_surface_on_first_fetch(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 3)
        pipeline: list[dict[str, Any]] = [{"$foo": {}}]
        expected = await sync_outcome(server.uri, db.name, lambda d: d.c.aggregate(pipeline))
        assert expected[0] == "error"
        assert expected[1] is OperationFailure

        async def first_doc(cursor: Any) -> Any:
            async for doc in cursor:
                return doc

        fetches: list[Callable[[Any], Any]] = [
            lambda c: c.next(),
            lambda c: c.to_list(),
            lambda c: c.to_list(1),
            first_doc,
            lambda c: c.try_next(),
        ]
        for fetch in fetches:
            cursor = db.c.aggregate(pipeline)  # no exception yet
            assert await motor_outcome(fetch(cursor)) == expected
    fw.probe.assert_below(MAX_BUSY)


async def test_a_cursor_closed_after_its_client_is_over(fw: Framework, server: Any) -> None:
    """A cursor closed after its client's ``close()`` is over, as in Motor 3.7.1 and
    PyMongo: not alive, ``next()`` raises ``StopAsyncIteration`` and ``to_list()`` returns
    ``[]`` (no ``ClientClosedError``: there is nothing to fetch)."""
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 4)
        cursor = db.c.find().sort("_id", 1).batch_size(2)
        assert ids([await cursor.next(), await cursor.next()]) == [0, 1]
        other = fw.client(server.uri)
        other_cursor = other[db.name].c.find().sort("_id", 1).batch_size(2)
        assert (await other_cursor.next())["_id"] == 0
        await other_cursor.next()
        await other.close()
        assert other_cursor.alive
        await other_cursor.close()
        assert not other_cursor.alive
        with pytest.raises(StopAsyncIteration):
            await other_cursor.next()
        assert await other_cursor.to_list() == []
        await cursor.close()
    fw.probe.assert_below(MAX_BUSY)


async def test_a_pinned_cursor_closed_after_its_client_closes_its_connection(
    fw: Framework, mockup: Any
) -> None:
    """A cursor pinned to its connection (load-balanced mode), closed after its client,
    is killed on that connection, which then closes, as PyMongo's close() does: in a
    child (from the loop's thread the killCursors failed with WouldBlockError; skipped,
    the connection was left open, its socket unclosed)."""
    hello = {
        "ismaster": True,
        "isWritablePrimary": True,
        "msg": "isdbgrid",
        "serviceId": bson.ObjectId(),
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "logicalSessionTimeoutMinutes": 30,
    }

    def respond(request: Any) -> bool:
        name = (request.command_name or "").lower()
        if name in ("ismaster", "hello"):
            return bool(request.ok(hello))
        if name == "find":
            return bool(request.ok(cursor={"id": 123, "ns": "db.coll", "firstBatch": [{"_id": 1}]}))
        if name in ("killcursors", "endsessions", "ping"):
            return bool(request.ok(cursorsKilled=[123]))
        return False

    failures: list[Any] = []

    class Failures(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            pass

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            failures.append(event.failure.get("errtype"))

    server = mockup(auto_ismaster=None)
    server.autoresponds(respond)
    recorder = Recorder()
    client = fw.client(server.uri + "/?loadBalanced=true", event_listeners=[recorder, Failures()])
    cursor = client.db.coll.find(batch_size=1)
    assert (await cursor.next())["_id"] == 1
    await client.close()
    events = len(recorder.events)
    await cursor.close()
    assert (cursor.closed, cursor.alive) == (True, False)
    # The client's close() interrupted the pinned connection: the killCursors fails at
    # once ("operation cancelled") and the connection closes (with the server cursor).
    assert [e.name for e in recorder.events[events:]] == ["killCursors", "killCursors"]
    assert recorder.events[events].kind == "started"
    assert "WouldBlockError" not in failures


async def test_a_closed_gridfs_cursor_fetches_nothing(fw: Framework, server: Any) -> None:
    """A GridFS bucket's ``find()`` cursor closed before it fetched is not started by a
    fetch, which returns nothing (as the other cursors, and Motor 3.7.1's)."""
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
        bucket = getattr(module, motor_name(fw, "GridFSBucket"))(db)
        await bucket.upload_from_stream("f", b"data")
        cursor = bucket.find()
        await cursor.close()
        with pytest.raises(StopAsyncIteration):
            await cursor.next()
        assert [f async for f in cursor] == []
        assert (cursor.started, cursor.closed, cursor.alive) == (False, True, False)
        assert len(await bucket.find().to_list()) == 1
    fw.probe.assert_below(MAX_BUSY)


async def test_a_failed_latent_command_runs_once(fw: Framework, server: Any) -> None:
    """The command of a latent cursor whose first fetch raised its error is not run
    again by later fetches (a pipeline with ``$out`` or ``$merge``, say): the cursor is
    over, as in Motor 3.7.1 (where ``to_list(0)`` gave ``[]`` and ``next()`` raised
    ``StopAsyncIteration`` after it), and no longer ``alive``."""
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 3)
        pipelines: list[list[dict[str, Any]]] = [
            [{"$foo": {}}],
            [{"$match": {"a": {"$bogus": 1}}}],
        ]
        for pipeline in pipelines:
            before = len(recorder.started_commands("aggregate"))
            cursor = db.c.aggregate(pipeline)
            with pytest.raises(OperationFailure):
                await cursor.next()
            assert not cursor.alive
            assert await cursor.to_list(0) == []
            assert await cursor.to_list() == []
            assert [doc async for doc in cursor] == []
            with pytest.raises(StopAsyncIteration):
                await cursor.next()
            assert await cursor.try_next() is None
            assert len(recorder.started_commands("aggregate")) == before + 1
    fw.probe.assert_below(MAX_BUSY)


async def test_latent_batch_size_applies(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        cursor = db.c.aggregate([{"$sort": {"_id": 1}}])
        assert cursor.batch_size(3) is cursor
        assert ids(await cursor.to_list()) == list(range(10))
        (aggregate,) = recorder.started_commands("aggregate")
        assert aggregate["cursor"] == {"batchSize": 3}
        get_mores = recorder.started_commands("getMore")
        assert len(get_mores) >= 3
        assert all(g["batchSize"] == 3 for g in get_mores)
    fw.probe.assert_below(MAX_BUSY)


async def test_list_indexes_is_latent(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 3)
        await db.c.create_index("x")
        cursor = db.c.list_indexes()
        assert type(cursor).__name__ == motor_name(fw, "LatentCommandCursor")
        await db.command("ping")
        assert recorder.started_commands("listIndexes") == []
        names = sorted([index["name"] async for index in cursor])
        assert names == ["_id_", "x_1"]
        assert len(recorder.started_commands("listIndexes")) == 1
    fw.probe.assert_below(MAX_BUSY)


async def test_raw_batch_cursors(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        await seed(db.c, 10)
        expected = [{"_id": i, "x": i} for i in range(10)]

        raw = db.c.find_raw_batches({}, sort=[("_id", 1)], batch_size=4)
        assert type(raw).__name__ == motor_name(fw, "RawBatchCursor")
        batches = [batch async for batch in raw]
        assert all(isinstance(batch, bytes) for batch in batches)
        assert [len(bson.decode_all(batch)) for batch in batches] == [4, 4, 2]
        assert [doc for batch in batches for doc in bson.decode_all(batch)] == expected

        batches = await db.c.find_raw_batches({}, sort=[("_id", 1)]).to_list()
        assert [doc for batch in batches for doc in bson.decode_all(batch)] == expected

        raw_agg = db.c.aggregate_raw_batches([{"$sort": {"_id": 1}}], batchSize=4)
        assert type(raw_agg).__name__ == motor_name(fw, "LatentCommandCursor")
        await db.command("ping")
        assert recorder.started_commands("aggregate") == []
        batches = [batch async for batch in raw_agg]
        assert all(isinstance(batch, bytes) for batch in batches)
        assert [doc for batch in batches for doc in bson.decode_all(batch)] == expected
        assert len(recorder.started_commands("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)


async def test_started_and_closed(fw: Framework, server: Any) -> None:
    # Motor 3.7.1's cursor attributes: started (a fetch was asked for; rewind() clears it)
    # and closed (close() was called).
    client = fw.client(server.uri)
    async with scratch_db(client) as db:
        await seed(db.c, 4)
        cursor = db.c.find().sort("_id", 1).batch_size(2)
        assert (cursor.started, cursor.closed) == (False, False)
        fetching = cursor.next()
        assert (cursor.started, cursor.closed) == (False, False)  # a coroutine, not awaited
        assert (await fetching)["_id"] == 0
        assert (cursor.started, cursor.closed) == (True, False)
        await cursor.close()
        assert (cursor.started, cursor.closed) == (True, True)
        cursor.rewind()
        assert (cursor.started, cursor.closed) == (False, False)
        assert ids(await cursor.to_list()) == [0, 1, 2, 3]
        assert cursor.started and not cursor.alive and not cursor.closed

        # Closing a cursor that never fetched does not start it, nor does a fetch from
        # it afterwards (Motor 3.7.1's next() checked alive first).
        for fetch in ("next", "async for", "to_list"):
            for unstarted in (db.c.find(), db.c.aggregate([])):
                await unstarted.close()
                assert (unstarted.started, unstarted.closed) == (False, True)
                if fetch == "next":
                    with pytest.raises(StopAsyncIteration):
                        await unstarted.next()
                elif fetch == "async for":
                    assert [doc async for doc in unstarted] == []
                else:
                    assert await unstarted.to_list() == []
                assert (unstarted.started, unstarted.closed, unstarted.alive) == (
                    False,
                    True,
                    False,
                ), fetch

        # Latent command cursors start on their first fetch.
        for command_cursor in (db.c.aggregate([]), db.c.list_indexes()):
            assert (command_cursor.started, command_cursor.closed) == (False, False)
            assert await command_cursor.to_list()
            assert (command_cursor.started, command_cursor.closed) == (True, False)
            await command_cursor.close()
            assert command_cursor.closed
    fw.probe.assert_below(MAX_BUSY)
