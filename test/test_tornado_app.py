"""Motor inside a real Tornado web application, served on loopback and fetched over HTTP.

Each route exists twice with the same behaviour: under ``/gen/`` written with
``@tornado.gen.coroutine`` handlers that ``yield`` Motor futures, and under ``/native/``
with ``async def`` handlers that ``await`` them.  The tests are parametrised over the two
styles and make the same assertions on both.

The tests run under both frameworks of the ``fw`` fixture: with ``fw.name == "tornado"``
the application's client is a ``MotorClient`` on the Tornado ``IOLoop``; with "asyncio" it
is an ``AsyncIOMotorClient`` serving the same Tornado application (Tornado runs on the
asyncio loop).  The HTTP client is Tornado's ``AsyncHTTPClient`` on the same loop.

The data routes (insert, find, aggregate, session, ``each``, ``fetch_next``) use the main
test server (``server`` fixture; FerretDB by default, so ``$group`` has one accumulator);
the change-stream route uses a MockupDB replica-set member (FerretDB has no change
streams) whose ``aggregate`` and ``getMore`` replies the test scripts while the request is
in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from bson import json_util
from pymongo import monitoring
from pymongo.errors import BulkWriteError, DuplicateKeyError
from tornado import gen
from tornado.httpclient import HTTPResponse

from test.framework import Framework, serve_on_loopback
from test.test_change_streams import (
    ReplicaSetMember,
    change,
    first_batch,
    next_batch,
    token,
)

MAX_BUSY = 0.010
STYLES = ["gen", "native"]

DOCS: list[dict[str, Any]] = [{"_id": i, "k": "a" if i % 2 else "b", "n": i} for i in range(1, 8)]
PIPELINE = [
    {"$match": {"n": {"$gte": 2}}},
    {"$group": {"_id": "$k", "total": {"$sum": "$n"}}},
    {"$sort": {"_id": 1}},
]
TOTALS = [{"_id": "a", "total": 3 + 5 + 7}, {"_id": "b", "total": 2 + 4 + 6}]
WATCH_PIPELINE = [{"$match": {"operationType": "insert"}}]


class Handler(tornado.web.RequestHandler):
    """Shared helpers; the data comes from the application's settings."""

    @property
    def db(self) -> Any:
        return self.settings["db"]

    def respond(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json_util.dumps(data))

    def body(self) -> Any:
        return json_util.loads(self.request.body)

    def respond_insert_error(self, exc: Exception) -> None:
        if isinstance(exc, DuplicateKeyError):
            self.respond({"error": "DuplicateKeyError", "code": exc.code}, 409)
        else:
            assert isinstance(exc, BulkWriteError)
            self.respond({"error": "BulkWriteError", "inserted": exc.details["nInserted"]}, 409)


def each_collector(
    future: asyncio.Future[list[Any]], stop_after: int | None
) -> tuple[list[Any], Callable[[Any, BaseException | None], Any]]:
    """A ``cursor.each`` callback that resolves ``future`` with the documents, stopping
    (by returning False) after ``stop_after`` documents."""
    docs: list[Any] = []

    def callback(doc: Any, error: BaseException | None) -> Any:
        if error is not None:
            future.set_exception(error)
        elif doc is None:
            future.set_result(docs)
        else:
            docs.append(doc)
            if len(docs) == stop_after:
                future.set_result(docs)
                return False
        return None

    return docs, callback


# ---------------------------------------------------------------- @gen.coroutine style


class GenDocs(Handler):
    @gen.coroutine
    def post(self) -> Any:
        body = self.body()
        try:
            if isinstance(body, list):
                result = yield self.db.docs.insert_many(body)
                ids = result.inserted_ids
            else:
                result = yield self.db.docs.insert_one(body)
                ids = [result.inserted_id]
        except (DuplicateKeyError, BulkWriteError) as exc:
            self.respond_insert_error(exc)
            return
        self.respond({"inserted": ids})

    @gen.coroutine
    def get(self) -> Any:
        query = {"n": {"$gte": int(self.get_argument("min"))}}
        listed = yield self.db.docs.find(query).sort("_id", 1).batch_size(2).to_list(None)
        cursor = self.db.docs.find(query).sort("_id", 1).batch_size(2)
        iterated = []
        while True:
            try:
                doc = yield cursor.next()
            except StopAsyncIteration:
                break
            iterated.append(doc)
        self.respond({"listed": listed, "iterated": iterated})


class GenTotals(Handler):
    @gen.coroutine
    def get(self) -> Any:
        listed = yield self.db.docs.aggregate(PIPELINE).to_list(None)
        cursor = self.db.docs.aggregate(PIPELINE)
        iterated = []
        while True:
            try:
                doc = yield cursor.next()
            except StopAsyncIteration:
                break
            iterated.append(doc)
        self.respond({"listed": listed, "iterated": iterated})


class GenSession(Handler):
    @gen.coroutine
    def post(self) -> Any:
        coll = self.db.sessioned
        session = yield self.db.client.start_session()
        try:
            yield coll.insert_one({"_id": 1, "n": 1}, session=session)
            doc = yield coll.find_one({"_id": 1}, session=session)
            aggregated = yield coll.aggregate([{"$match": {"_id": 1}}], session=session).to_list(
                None
            )
            lsid = session.session_id["id"].hex()
            ended_inside = session.has_ended
        finally:
            yield session.end_session()
        self.respond(
            {
                "doc": doc,
                "aggregated": aggregated,
                "lsid": lsid,
                "ended_inside": ended_inside,
                "ended": session.has_ended,
            }
        )


class GenEach(Handler):
    @gen.coroutine
    def get(self) -> Any:
        stop_after = self.get_argument("stop_after", None)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        docs, callback = each_collector(future, None if stop_after is None else int(stop_after))
        cursor = self.db.docs.find().sort("_id", 1).batch_size(2)
        returned = cursor.each(callback)
        result = yield future
        # A round trip later: a stopped iteration delivered nothing more.
        yield self.db.docs.find_one()
        self.respond({"returned": returned, "docs": result, "calls": len(docs)})


class GenFetchNext(Handler):
    """Motor 1.x/2.x style: ``while (yield cursor.fetch_next): cursor.next_object()``."""

    @gen.coroutine
    def get(self) -> Any:
        cursor = self.db.docs.find().sort("_id", 1).batch_size(2)
        docs = []
        while (yield cursor.fetch_next):
            docs.append(cursor.next_object())
        self.respond({"docs": docs})


class GenWatch(Handler):
    @gen.coroutine
    def get(self) -> Any:
        stream = self.settings["watch_coll"].watch(WATCH_PIPELINE)
        try:
            event = yield stream.next()
            then = yield stream.try_next()
            resume_token = stream.resume_token
        finally:
            yield stream.close()
        self.respond({"change": event, "then": then, "token": resume_token, "alive": stream.alive})


# ---------------------------------------------------------------- async def style


class NativeDocs(Handler):
    async def post(self) -> None:
        body = self.body()
        try:
            if isinstance(body, list):
                ids = (await self.db.docs.insert_many(body)).inserted_ids
            else:
                ids = [(await self.db.docs.insert_one(body)).inserted_id]
        except (DuplicateKeyError, BulkWriteError) as exc:
            self.respond_insert_error(exc)
            return
        self.respond({"inserted": ids})

    async def get(self) -> None:
        query = {"n": {"$gte": int(self.get_argument("min"))}}
        listed = await self.db.docs.find(query).sort("_id", 1).batch_size(2).to_list(None)
        iterated = [doc async for doc in self.db.docs.find(query).sort("_id", 1).batch_size(2)]
        self.respond({"listed": listed, "iterated": iterated})


class NativeTotals(Handler):
    async def get(self) -> None:
        cursor = self.db.docs.aggregate(PIPELINE)  # latent: nothing sent yet
        listed = await cursor.to_list(None)
        iterated = [doc async for doc in self.db.docs.aggregate(PIPELINE)]
        self.respond({"listed": listed, "iterated": iterated})


class NativeSession(Handler):
    async def post(self) -> None:
        coll = self.db.sessioned
        async with await self.db.client.start_session() as session:
            await coll.insert_one({"_id": 1, "n": 1}, session=session)
            doc = await coll.find_one({"_id": 1}, session=session)
            aggregated = await coll.aggregate([{"$match": {"_id": 1}}], session=session).to_list(
                None
            )
            lsid = session.session_id["id"].hex()
            ended_inside = session.has_ended
        self.respond(
            {
                "doc": doc,
                "aggregated": aggregated,
                "lsid": lsid,
                "ended_inside": ended_inside,
                "ended": session.has_ended,
            }
        )


class NativeEach(Handler):
    async def get(self) -> None:
        stop_after = self.get_argument("stop_after", None)
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        docs, callback = each_collector(future, None if stop_after is None else int(stop_after))
        cursor = self.db.docs.find().sort("_id", 1).batch_size(2)
        returned = cursor.each(callback)
        result = await future
        await self.db.docs.find_one()
        self.respond({"returned": returned, "docs": result, "calls": len(docs)})


class NativeWatch(Handler):
    async def get(self) -> None:
        stream = self.settings["watch_coll"].watch(WATCH_PIPELINE)
        try:
            event = await stream.next()
            then = await stream.try_next()
            resume_token = stream.resume_token
        finally:
            await stream.close()
        self.respond({"change": event, "then": then, "token": resume_token, "alive": stream.alive})


ROUTES: list[tuple[str, type[tornado.web.RequestHandler]]] = [
    (r"/gen/docs", GenDocs),
    (r"/gen/totals", GenTotals),
    (r"/gen/session", GenSession),
    (r"/gen/each", GenEach),
    (r"/gen/fetch_next", GenFetchNext),
    (r"/gen/watch", GenWatch),
    (r"/native/docs", NativeDocs),
    (r"/native/totals", NativeTotals),
    (r"/native/session", NativeSession),
    (r"/native/each", NativeEach),
    (r"/native/watch", NativeWatch),
]

Fetch = Callable[..., Awaitable[HTTPResponse]]


def serving(**settings: Any) -> contextlib.AbstractAsyncContextManager[Fetch]:
    """Serve the application on a loopback port; yield ``fetch(path, method, body)``."""
    return serve_on_loopback(tornado.web.Application(ROUTES, **settings), json_util.dumps)


def json_of(response: HTTPResponse, status: int = 200) -> Any:
    assert response.code == status, (response.code, response.body)
    return json_util.loads(response.body)


def db_name() -> str:
    return f"motor_test_tornado_{uuid.uuid4().hex[:8]}"


class CommandRecorder(monitoring.CommandListener):
    """Records the started commands: (name, target, command document)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append((event.command_name, event.command.get(event.command_name), event))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("style", STYLES)
async def test_insert_find_and_aggregate_routes(fw: Framework, server: Any, style: str) -> None:
    client = fw.client(server.uri)
    db = client[db_name()]
    async with serving(db=db) as fetch:
        await fw.probe.settle()
        inserted = json_of(await fetch(f"/{style}/docs", "POST", DOCS))
        assert inserted == {"inserted": [doc["_id"] for doc in DOCS]}
        # PyMongo's exceptions reach the handler through yield/await.
        duplicate = json_of(await fetch(f"/{style}/docs", "POST", {"_id": 3}), 409)
        assert duplicate == {"error": "DuplicateKeyError", "code": 11000}
        bulk = json_of(await fetch(f"/{style}/docs", "POST", [{"_id": 8}, {"_id": 1}]), 409)
        assert bulk == {"error": "BulkWriteError", "inserted": 1}

        found = json_of(await fetch(f"/{style}/docs?min=3"))
        expected = [doc for doc in DOCS if doc["n"] >= 3]
        assert found == {"listed": expected, "iterated": expected}

        totals = json_of(await fetch(f"/{style}/totals"))
        assert totals == {"listed": TOTALS, "iterated": TOTALS}

        assert await db.docs.count_documents({}) == len(DOCS) + 1  # and _id 8
    await client.drop_database(db)
    fw.probe.assert_below(MAX_BUSY)


@pytest.mark.parametrize("style", STYLES)
async def test_session_route(fw: Framework, server: Any, style: str) -> None:
    recorder = CommandRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    db = client[db_name()]
    async with serving(db=db) as fetch:
        await fw.probe.settle()
        result = json_of(await fetch(f"/{style}/session", "POST", {}))
    assert result["doc"] == {"_id": 1, "n": 1}
    assert result["aggregated"] == [{"_id": 1, "n": 1}]
    assert result["ended_inside"] is False
    assert result["ended"] is True
    # Each operation given session= ran in that session (the Motor session was unwrapped).
    in_session = [
        (name, event.command["lsid"]["id"].hex())
        for name, target, event in recorder.events
        if target == "sessioned"
    ]
    assert in_session == [
        ("insert", result["lsid"]),
        ("find", result["lsid"]),
        ("aggregate", result["lsid"]),
    ]
    await client.drop_database(db)
    fw.probe.assert_below(MAX_BUSY)


@pytest.mark.parametrize("style", STYLES)
async def test_each_route(fw: Framework, server: Any, style: str) -> None:
    client = fw.client(server.uri)
    db = client[db_name()]
    await db.docs.insert_many(DOCS)
    async with serving(db=db) as fetch:
        await fw.probe.settle()
        everything = json_of(await fetch(f"/{style}/each"))
        # each() returns None at once; one callback per document, then (None, None).
        assert everything == {"returned": None, "docs": DOCS, "calls": len(DOCS)}
        # Returning exactly False stops the iteration (the next document, already
        # buffered in the same batch, is never delivered).
        stopped = json_of(await fetch(f"/{style}/each?stop_after=3"))
        assert stopped == {"returned": None, "docs": DOCS[:3], "calls": 3}
    await client.drop_database(db)
    fw.probe.assert_below(MAX_BUSY)


async def test_deprecated_fetch_next_route(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    db = client[db_name()]
    await db.docs.insert_many(DOCS)
    async with serving(db=db) as fetch:
        await fw.probe.settle()
        with pytest.warns(DeprecationWarning) as record:
            result = json_of(await fetch("/gen/fetch_next"))
    assert result == {"docs": DOCS}
    messages = [str(warning.message) for warning in record]
    # One warning per use: fetch_next once per document and once more at the end.
    assert sum("fetch_next" in message for message in messages) == len(DOCS) + 1
    assert sum("next_object" in message for message in messages) == len(DOCS)
    await client.drop_database(db)
    fw.probe.assert_below(MAX_BUSY)


@pytest.mark.parametrize("style", STYLES)
async def test_change_stream_route(fw: Framework, mockup: Any, style: str) -> None:
    member = ReplicaSetMember(mockup)
    client = fw.client(member.uri)
    await client.admin.command("ping")
    async with serving(watch_coll=client.db.coll) as fetch:
        await fw.probe.settle()
        request = asyncio.ensure_future(fetch(f"/{style}/watch"))
        aggregate = await member.receive("aggregate", "coll")
        assert aggregate["pipeline"] == [{"$changeStream": {}}, *WATCH_PIPELINE]
        aggregate.reply(first_batch(42, [], "p0"))
        # stream.next(): the empty first batch is followed by a getMore.
        (await member.receive("getMore", 42)).reply(next_batch(42, [change("c1")], "p1"))
        # stream.try_next(): one getMore, empty: None.
        (await member.receive("getMore", 42)).reply(next_batch(42, [], "p2"))
        result = json_of(await request)
    assert result == {"change": change("c1"), "then": None, "token": token("p2"), "alive": False}
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42]]
    assert len(member.sent("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)
