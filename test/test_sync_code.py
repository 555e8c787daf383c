"""Synchronous PyMongo code and MongoEngine run on the event loop with ``motor.run_green``.

Every ``async`` test runs under both frameworks (``fw``).  The data-access code below is
plain synchronous PyMongo or MongoEngine code over a :class:`motor.GreenMongoClient`; the
tests run it through :func:`motor.run_green` and :func:`motor.green_coroutine` against the
main test server, with the loop-stall probe under 10 ms, and check the rest of the
contract against :class:`HoldingServer`, a scripted wire server:

* two slow queries overlap: the server holds its replies until both queries have arrived,
  so the test can only pass if both were in flight at once (a serial, blocking run would
  wait at the first query until the server's patience ran out and then fail);
* the same function still works, blocking, outside the loop (a worker thread, a script
  with no loop), and raises ``WouldBlockError`` when called straight from a coroutine;
* cancellation, contextvars (``pymongo.timeout()`` included) and exceptions;
* the stall detector (``motor.detect_stalls`` and ``MOTOR_DETECT_STALLS``), including a
  function that never waits and the listener gone once the detector is off;
* the limits: other blocking calls in the function (``time.sleep``) still block the loop;
* two more synchronous libraries that take a ``MongoClient``: PyMongo's ``gridfs`` and
  cachelib's ``MongoDbCache``;
* MongoEngine's thread-local state is shared by concurrent green calls (another limit);
* the example application of ``doc/sync.rst`` (``doc/examples/mongoengine_app.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import gridfs
import mongoengine as me
import pymongo
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from bson import Int64, ObjectId
from cachelib import MongoDbCache
from mongoengine.context_managers import no_dereference, no_dereferencing_active_for_class
from pymongo import monitoring
from pymongo.errors import DuplicateKeyError, NetworkTimeout
from tornado.httpclient import HTTPResponse

import motor
from motor.detector import _BlockingCommands, threshold_from_environment
from motor.errors import WouldBlockError
from motor.green.hub import Cancelled, get_hub
from test.framework import Framework, parked_children, serve_on_loopback
from test.wire import HELLO, WireServer, op_msg_reply, read_message

REPO = Path(__file__).resolve().parent.parent
MAX_BUSY = 0.010

_spec = importlib.util.spec_from_file_location(
    "mongoengine_app", REPO / "doc" / "examples" / "mongoengine_app.py"
)
assert _spec is not None and _spec.loader is not None
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)


def db_name() -> str:
    return f"motor_test_sync_{uuid.uuid4().hex[:8]}"


# -------------------------------------------------------------- synchronous data access


def item_report(client: pymongo.MongoClient[Any], name: str) -> dict[str, Any]:
    """A plain PyMongo data-access function: it knows nothing of loops or greenlets."""
    items = client[name].items
    items.insert_many([{"_id": i, "kind": "ab"[i % 2], "n": i} for i in range(1, 11)])
    items.insert_one({"_id": 11, "kind": "c", "n": 11})
    items.update_many({"kind": "b"}, {"$inc": {"n": 100}})
    items.delete_one({"_id": 11})
    deleted = items.delete_many({"n": {"$lt": 3}}).deleted_count
    # A cursor that needs getMore: batches of two.
    ids = [
        doc["_id"] for doc in items.find({"kind": "a"}, {"_id": 1}).sort("_id", -1).batch_size(2)
    ]
    totals = list(
        items.aggregate(
            [{"$group": {"_id": "$kind", "total": {"$sum": "$n"}}}, {"$sort": {"_id": 1}}]
        )
    )
    return {"deleted": deleted, "ids": ids, "totals": totals, "count": items.count_documents({})}


EXPECTED_REPORT = {
    "deleted": 1,
    "ids": [10, 8, 6, 4],
    "totals": [{"_id": "a", "total": 28}, {"_id": "b", "total": 525}],
    "count": 9,
}

report_green = motor.green_coroutine(item_report)


def lookup(client: pymongo.MongoClient[Any], collection: str) -> Any:
    """A slow query, on :class:`HoldingServer`."""
    return client.db[collection].find_one({})


class Writer(me.Document):  # type: ignore[misc]  # mongoengine has no type information
    name = me.StringField(required=True, unique=True)
    born = me.IntField()


class Article(me.Document):  # type: ignore[misc]
    title = me.StringField(required=True, max_length=100)
    words = me.IntField(default=0)
    tags = me.ListField(me.StringField())
    writer = me.ReferenceField(Writer)


def mongoengine_work() -> dict[str, Any]:
    """Documents, querysets, save, update, references and delete: synchronous MongoEngine."""
    ada = Writer(name="Ada", born=1815).save()
    alan = Writer(name="Alan", born=1912).save()
    for i in range(6):
        Article(
            title=f"a{i}",
            words=100 * i,
            tags=["odd" if i % 2 else "even"],
            writer=[ada, alan][i // 4],
        ).save()
    top = [a.title for a in Article.objects(words__gte=100).order_by("-words").limit(3)]
    odd = sorted(a.title for a in Article.objects(tags="odd").only("title"))
    by_ada = Article.objects(writer=ada).count()
    written_by = Article.objects.get(title="a5").writer.name  # dereferences the reference
    bumped = Article.objects(writer=alan).update(inc__words=1)
    Article.objects(title="a0").update_one(set__title="intro")
    a4 = Article.objects.get(title="a4")
    a4.words = 7
    a4.save()
    Article.objects.get(title="intro").delete()
    deleted = Article.objects(words__lt=150).delete()
    remaining = [(a.title, a.words, a.writer.name) for a in Article.objects.order_by("title")]
    return {
        "top": top,
        "odd": odd,
        "by_ada": by_ada,
        "written_by": written_by,
        "bumped": bumped,
        "deleted": deleted,
        "remaining": remaining,
    }


EXPECTED_MONGOENGINE = {
    "top": ["a5", "a4", "a3"],
    "odd": ["a1", "a3", "a5"],
    "by_ada": 4,
    "written_by": "Alan",
    "bumped": 2,
    "deleted": 2,
    "remaining": [("a2", 200, "Ada"), ("a3", 300, "Ada"), ("a5", 501, "Alan")],
}


# -------------------------------------------------------------- a scripted server


class HoldingServer(WireServer):
    """A wire server that holds replies: hello (as a load balancer), ``find`` from
    ``docs`` (collection name -> documents), ``{ok: 1}`` for anything else.

    A ``find`` on a collection in ``hold`` is answered only once ``parties`` such finds
    have arrived (a :class:`threading.Barrier`, each find waiting on its connection's
    thread); if the others do not arrive within ``patience`` seconds, each waiting find is
    answered with an error saying that the queries did not overlap.  A ``find`` on a
    collection in ``never`` is never answered.  ``arrived`` lists the collections of the
    finds received, in order.
    """

    def __init__(
        self,
        docs: dict[str, list[dict[str, Any]]],
        hold: tuple[str, ...] = (),
        never: tuple[str, ...] = ("never",),
        parties: int = 2,
        patience: float = 10.0,
    ) -> None:
        self.docs = docs
        self.hold = set(hold)
        self.never = set(never)
        self.barrier = threading.Barrier(parties, timeout=patience)
        self.arrived: list[str] = []
        super().__init__()

    def _serve(self, conn: Any) -> None:
        try:
            while True:
                request_id, opcode, cmd = read_message(conn)
                name = next(iter(cmd))
                if name.lower() in ("hello", "ismaster"):
                    doc: dict[str, Any] = dict(HELLO, serviceId=ObjectId(), connectionId=1)
                elif name == "find":
                    collection = cmd["find"]
                    self.arrived.append(collection)
                    if collection in self.never:
                        continue
                    doc = self._find(cmd["$db"], collection)
                else:
                    doc = {"ok": 1.0}
                conn.sendall(op_msg_reply(request_id, doc, opcode))
        except (ConnectionError, OSError, ValueError):
            pass

    def _find(self, db: str, collection: str) -> dict[str, Any]:
        if collection in self.hold:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                return {"ok": 0.0, "code": 2, "errmsg": "the held queries did not overlap"}
        batch = self.docs.get(collection, [])
        return {
            "cursor": {"id": Int64(0), "ns": f"{db}.{collection}", "firstBatch": batch},
            "ok": 1,
        }


@pytest.fixture
def holding() -> Iterator[Callable[..., HoldingServer]]:
    """Factory for :class:`HoldingServer`, stopped when the test ends."""
    servers: list[HoldingServer] = []

    def make(*args: Any, **kwargs: Any) -> HoldingServer:
        servers.append(HoldingServer(*args, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.barrier.abort()
        server.stop()


@pytest.fixture
def engine() -> Iterator[None]:
    """MongoEngine connections made by the test are closed at the end (blocking, off the
    loop, if the test did not close them itself)."""
    yield
    me.disconnect_all()


@contextlib.asynccontextmanager
async def green_client(uri: str, **kwargs: Any) -> AsyncIterator[motor.GreenMongoClient]:
    client = motor.GreenMongoClient(uri, **kwargs)
    try:
        yield client
    finally:
        await motor.run_green(client.close)


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.002)


def connect_engine(name: str, uri: str) -> None:
    """Connect MongoEngine's default alias to database ``name`` with a GreenMongoClient."""
    me.connect(
        db=name, host=uri, mongo_client_class=motor.GreenMongoClient, uuidRepresentation="standard"
    )


def checked_out(client: pymongo.MongoClient[Any]) -> int:
    """Connections checked out of, or being made by, the client's pools."""
    pools = [server.pool for server in client._topology._servers.values()]
    return sum(pool.active_sockets + pool.requests for pool in pools)


def next_line() -> int:
    """The number of the line after the caller's."""
    return sys._getframe(1).f_lineno + 1


# -------------------------------------------------------------- data access on the loop


async def test_data_access_function(fw: Framework, server: Any) -> None:
    async with green_client(server.uri) as client:
        names = [db_name() for _ in range(3)]
        try:
            await fw.probe.settle()
            assert await motor.run_green(item_report, client, names[0]) == EXPECTED_REPORT
            assert await report_green(client, names[1]) == EXPECTED_REPORT
            fw.probe.assert_below(MAX_BUSY)
            # The same function and client in a worker thread: it blocks there, as PyMongo.
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, item_report, client, names[2]) == (
                EXPECTED_REPORT
            )
        finally:
            for name in names:
                await motor.run_green(client.drop_database, name)


def test_outside_any_loop(server: Any) -> None:
    """In a script with no event loop, the same code works with a GreenMongoClient."""
    script = """
        import asyncio, json, sys
        import mongoengine as me
        import motor
        from test.test_sync_code import connect_engine, example, item_report

        assert asyncio._get_running_loop() is None
        uri, name = sys.argv[1:]
        client = motor.GreenMongoClient(uri)
        report = item_report(client, name)
        connect_engine(name + "_me", uri)
        example.add_book("Le Guin", "The Lathe of Heaven", 1971)
        example.add_book("Le Guin", "The Dispossessed", 1974)
        books = [(b["title"], b["author"]) for b in example.books_by("Le Guin")]
        client.drop_database(name)
        client.drop_database(name + "_me")
        client.close()
        me.disconnect()
        print(json.dumps({"report": report, "books": books}))
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), server.uri, db_name()],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["report"] == EXPECTED_REPORT
    assert result["books"] == [["The Dispossessed", "Le Guin"], ["The Lathe of Heaven", "Le Guin"]]


async def test_mongoengine(fw: Framework, server: Any, engine: None) -> None:
    name = db_name()
    connect_engine(name, server.uri)
    try:
        await fw.probe.settle()
        assert await motor.run_green(mongoengine_work) == EXPECTED_MONGOENGINE
        fw.probe.assert_below(MAX_BUSY)
        # MongoEngine's own exceptions reach the caller.
        with pytest.raises(me.NotUniqueError):
            await motor.run_green(Writer(name="Ada").save)
        with pytest.raises(Article.DoesNotExist):
            await motor.run_green(lambda: Article.objects.get(title="missing"))
        assert isinstance(me.get_connection(), motor.GreenMongoClient)
    finally:
        await motor.run_green(me.get_connection().drop_database, name)
        await motor.run_green(me.disconnect)


# -------------------------------------------------------------- concurrency


async def test_slow_queries_overlap(fw: Framework, holding: Callable[..., HoldingServer]) -> None:
    """Both queries must be in flight at once for either to be answered."""
    server = holding({"slow": [{"_id": 1}]}, hold=("slow",))
    async with green_client(server.uri) as client:
        await fw.probe.settle()
        first = motor.run_green(lookup, client, "slow")
        second = motor.green_coroutine(lookup)(client, "slow")
        # gather() returns a list; typeshed says a tuple for a fixed number of arguments.
        results = cast(list[Any], await asyncio.wait_for(asyncio.gather(first, second), 20))
        assert results == [{"_id": 1}, {"_id": 1}]
        assert server.arrived.count("slow") == 2
        fw.probe.assert_below(MAX_BUSY)


async def test_mongoengine_queries_overlap(
    fw: Framework, holding: Callable[..., HoldingServer], engine: None
) -> None:
    writer = {"_id": ObjectId(), "name": "Ada", "born": 1815}
    article = {"_id": ObjectId(), "title": "notes", "words": 3, "tags": [], "writer": writer["_id"]}
    server = holding({"writer": [writer], "article": [article]}, hold=("article",))
    connect_engine("held", server.uri)

    def first_title_and_writer() -> tuple[str, str]:
        found = Article.objects(words__gte=1).order_by("-words").first()
        return found.title, found.writer.name

    try:
        # gather() returns a list; typeshed says a tuple for a fixed number of arguments.
        results = cast(
            list[tuple[str, str]],
            await asyncio.wait_for(
                asyncio.gather(
                    motor.run_green(first_title_and_writer), motor.run_green(first_title_and_writer)
                ),
                20,
            ),
        )
        assert results == [("notes", "Ada"), ("notes", "Ada")]
        assert server.arrived.count("article") == 2
        fw.probe.assert_below(MAX_BUSY)
    finally:
        await motor.run_green(me.disconnect)


# -------------------------------------------------------------- misuse, cancellation


async def test_straight_from_a_coroutine_would_block(
    fw: Framework, holding: Callable[..., HoldingServer], engine: None
) -> None:
    # Finds on "never" and "article" are never answered: a straight call cannot find its
    # reply already there, and has to wait, on the loop.
    server = holding({"fast": [{"_id": 1}]}, never=("never", "article"))
    async with green_client(server.uri) as client:
        assert await motor.run_green(lookup, client, "fast") == {"_id": 1}
        with pytest.raises(WouldBlockError) as caught:
            lookup(client, "never")
        assert isinstance(caught.value, pymongo.errors.InvalidOperation)
        connect_engine("held", server.uri)
        with pytest.raises(WouldBlockError):
            Article.objects(title="x").first()
        # Nothing was left half-read: the client goes on working.
        assert await motor.run_green(lookup, client, "fast") == {"_id": 1}
        assert checked_out(client) == 0
        await motor.run_green(me.disconnect)


async def test_cancellation_reaches_the_function_at_its_next_wait(
    fw: Framework, holding: Callable[..., HoldingServer]
) -> None:
    server = holding({"fast": [{"_id": 1}]})
    steps: list[str] = []
    tasks: list[asyncio.Task[Any]] = []

    def fn(client: pymongo.MongoClient[Any]) -> Any:
        lookup(client, "fast")  # parks once: the task now awaits the function
        tasks[0].cancel()
        steps.append("cancel requested")
        sum(range(10_000))  # no wait: the function runs on
        steps.append("ran on")
        try:
            return lookup(client, "never")  # the next wait
        except BaseException as exc:
            steps.append(type(exc).__name__)
            raise

    async with green_client(server.uri) as client:

        async def caller() -> Any:
            return await motor.run_green(fn, client)

        tasks.append(asyncio.ensure_future(caller()))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(tasks[0], 20)
        await asyncio.sleep(0.02)
        assert steps == ["cancel requested", "ran on", Cancelled.__name__]
        assert server.arrived == ["fast", "never"]
        assert not parked_children()
        assert checked_out(client) == 0
        assert await motor.run_green(lookup, client, "fast") == {"_id": 1}


VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="unset")


async def test_contextvars_reach_the_function(
    fw: Framework, holding: Callable[..., HoldingServer]
) -> None:
    server = holding({})

    def read_and_set() -> str:
        seen = VAR.get()
        VAR.set("set inside")
        return seen

    VAR.set("caller's")
    assert await motor.run_green(read_and_set) == "caller's"
    assert VAR.get() == "caller's"  # the function ran in a copy of the context
    # pymongo.timeout() is a contextvar too: its deadline applies inside the function.
    async with green_client(server.uri) as client:
        with pymongo.timeout(0.2):
            with pytest.raises(NetworkTimeout) as caught:
                await asyncio.wait_for(motor.run_green(lookup, client, "never"), 20)
        assert caught.value.timeout


async def test_exceptions_propagate_unchanged(fw: Framework, server: Any) -> None:
    problem = ValueError("from the function")

    def fails() -> None:
        raise problem

    with pytest.raises(ValueError) as caught:
        await motor.run_green(fails)
    assert caught.value is problem
    assert "fails" in [entry.name for entry in caught.traceback]

    # next() on an empty cursor raises StopIteration, which a future cannot carry: the
    # caller gets a RuntimeError caused by it, as from a coroutine (PEP 479), whether
    # the function raises it before its first wait or after one.
    def first_of(client: pymongo.MongoClient[Any], name: str, wait: bool) -> Any:
        if wait:
            client.admin.command("ping")
        return next(client[name].items.find({"missing": True}))

    async with green_client(server.uri) as client:
        for wait in (False, True):
            with pytest.raises(RuntimeError, match="StopIteration") as stopped:
                await motor.run_green(first_of, client, db_name(), wait)
            assert type(stopped.value.__cause__) is StopIteration
        # The loop's next call is unaffected.
        assert (await motor.run_green(client.admin.command, "ping"))["ok"] == 1
        assert get_hub(asyncio.get_running_loop())._done is None

    def insert_twice(client: pymongo.MongoClient[Any], name: str) -> None:
        client[name].items.insert_one({"_id": 1})
        client[name].items.insert_one({"_id": 1})

    name = db_name()
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    loop = asyncio.get_running_loop()
    async with green_client(server.uri) as client:
        try:
            with pytest.raises(DuplicateKeyError) as green_error:
                await motor.run_green(insert_twice, client, name)
            await motor.run_green(client.drop_database, name)
            with pytest.raises(DuplicateKeyError) as sync_error:
                await loop.run_in_executor(None, insert_twice, sync, name)
            assert type(green_error.value) is type(sync_error.value)
            assert green_error.value.code == sync_error.value.code == 11000
        finally:
            await motor.run_green(client.drop_database, name)
            await loop.run_in_executor(None, sync.close)


# -------------------------------------------------------------- the stall detector


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def detector_off() -> Iterator[None]:
    """Turn the detector off after the test, and take its command listeners out of
    PyMongo's global listeners (``stop_detecting_stalls`` leaves them there), so that
    clients of later tests do not publish command events for nothing."""
    yield
    motor.stop_detecting_stalls()
    listeners = monitoring._LISTENERS.command_listeners
    listeners[:] = [x for x in listeners if not isinstance(x, _BlockingCommands)]


@pytest.fixture
def stall_log(detector_off: None) -> Iterator[tuple[logging.Logger, Records]]:
    log = logging.getLogger(f"test.sync_code.stalls.{uuid.uuid4().hex}")
    log.propagate = False
    records = Records()
    log.addHandler(records)
    yield log, records


def hog(seconds: float) -> None:
    """Busy CPU on the calling thread, without any wait."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def hog_then_ping(client: pymongo.MongoClient[Any]) -> Any:
    hog(0.1)
    return client.admin.command("ping")


def hog_only() -> None:
    hog(0.1)


async def test_detector_reports_blocking_command(
    fw: Framework, server: Any, stall_log: tuple[logging.Logger, Records]
) -> None:
    log, records = stall_log
    here = sys._getframe().f_code
    loop = asyncio.get_running_loop()
    before: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    before.admin.command("ping")  # blocks the loop; the detector is off
    motor.detect_stalls(10, log=log)
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    line = next_line()
    sync.admin.command("ping")
    sync.test.items.find_one({})
    fw.probe.skip_gap()
    motor.stop_detecting_stalls()
    sync.admin.command("ping")  # off again: not reported
    fw.probe.skip_gap()
    assert len(records.messages) == 2, records.messages
    ping, find = records.messages
    assert "blocking PyMongo command 'ping'" in ping
    assert f"called at {here.co_filename}:{line} in {here.co_name}" in ping
    assert "blocking PyMongo command 'find'" in find
    assert f"{here.co_filename}:{line + 1} in" in find
    for client in (before, sync):
        await loop.run_in_executor(None, client.close)


async def test_detector_reports_a_function_holding_the_loop(
    fw: Framework, server: Any, stall_log: tuple[logging.Logger, Records]
) -> None:
    log, records = stall_log
    here = sys._getframe().f_code
    async with green_client(server.uri) as client:
        await motor.run_green(hog_then_ping, client)  # off: not reported
        motor.detect_stalls(40, log=log)
        line = next_line()
        await motor.run_green(hog_then_ping, client)
        await motor.run_green(lookup, client, "items")  # quick: not reported
        motor.stop_detecting_stalls()
        await motor.run_green(hog_then_ping, client)
    assert len(records.messages) == 1, records.messages
    message = records.messages[0]
    assert message.startswith("hog_then_ping held the event loop for "), message
    assert f"called at {here.co_filename}:{line} in {here.co_name}" in message
    held = float(message.split(" for ")[1].split(" ms")[0])
    assert held >= 100


def sleep_then_ping(client: pymongo.MongoClient[Any]) -> Any:
    time.sleep(0.1)  # blocking I/O of another library: not green
    return client.admin.command("ping")


async def test_other_blocking_calls_still_block(
    fw: Framework, server: Any, stall_log: tuple[logging.Logger, Records]
) -> None:
    """Only the green client's waits yield: ``time.sleep`` in the function blocks the
    loop (the probe sees the gap), and the detector names the function."""
    log, records = stall_log
    async with green_client(server.uri) as client:
        await motor.run_green(client.admin.command, "ping")
        fw.probe.reset()
        motor.detect_stalls(40, log=log)
        await motor.run_green(sleep_then_ping, client)
        motor.stop_detecting_stalls()
        await asyncio.sleep(0.01)  # let the probe tick after the gap
        assert fw.probe.max_gap >= 0.1
        fw.probe.assert_below(MAX_BUSY)  # sleeping: no CPU, but the loop was held
    assert len(records.messages) == 1, records.messages
    assert records.messages[0].startswith("sleep_then_ping held the event loop for ")


async def test_detector_names_a_function_that_never_waits(
    fw: Framework, stall_log: tuple[logging.Logger, Records]
) -> None:
    log, records = stall_log
    here = sys._getframe().f_code
    motor.detect_stalls(40, log=log)
    line = next_line()
    await motor.run_green(hog_only)
    motor.stop_detecting_stalls()
    assert len(records.messages) == 1, records.messages
    assert records.messages[0].startswith("hog_only held the event loop"), records.messages
    assert f"{here.co_filename}:{line} in {here.co_name}" in records.messages[0]


def test_detector_off_again_leaves_no_listener(detector_off: None) -> None:
    motor.detect_stalls(10)
    motor.stop_detecting_stalls()
    client = motor.GreenMongoClient("mongodb://127.0.0.1:1", connect=False)
    try:
        assert client._event_listeners is not None
        assert not client._event_listeners.enabled_for_commands
    finally:
        client.close()


def test_detector_environment_variable(server: Any, tmp_path: Path) -> None:
    script = tmp_path / "stalls.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            import pymongo
            import motor
            from test.test_sync_code import hog_then_ping

            async def main(uri):
                green = motor.GreenMongoClient(uri)
                sync = pymongo.MongoClient(uri)
                sync.admin.command("ping")  # line 10
                await motor.run_green(hog_then_ping, green)  # line 11
                await motor.run_green(green.close)
                await asyncio.get_running_loop().run_in_executor(None, sync.close)

            asyncio.run(main(sys.argv[1]))
            """
        )
    )
    results = {}
    for setting in ("40", None):
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("MOTOR_DETECT_STALLS", None)
        if setting is not None:
            env["MOTOR_DETECT_STALLS"] = setting
        out = subprocess.run(
            [sys.executable, str(script), server.uri],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        results[setting] = out.stderr
    assert results[None] == ""
    reported = results["40"].splitlines()
    assert len(reported) == 2, reported
    assert "blocking PyMongo command 'ping'" in reported[0]
    assert f"called at {script}:10 in main" in reported[0]
    assert reported[1].startswith("hog_then_ping held the event loop for ")
    assert f"called at {script}:11 in main" in reported[1]


@pytest.mark.parametrize("setting", ["true", "-5", "nan", "inf", "20ms"])
def test_detector_environment_variable_refuses_what_is_not_a_threshold(
    setting: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MOTOR_DETECT_STALLS": setting}
    out = subprocess.run(
        [sys.executable, "-c", "import motor"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert (
        "ValueError: MOTOR_DETECT_STALLS must be a threshold in milliseconds, a number such "
        f"as 20, not {setting!r}"
    ) in out.stderr, out.stderr


def test_detector_threshold_from_environment() -> None:
    assert threshold_from_environment("20") == 20.0
    assert threshold_from_environment(" 2.5 ") == 2.5
    assert threshold_from_environment("0") == 0.0


# -------------------------------------------------------------- other sync libraries


async def test_gridfs_and_cachelib(fw: Framework, server: Any) -> None:
    name = db_name()
    data = os.urandom(700_000)

    def gridfs_work(client: pymongo.MongoClient[Any]) -> dict[str, Any]:
        fs = gridfs.GridFS(client[name])
        file_id = fs.put(data, filename="blob.bin", metadata={"kind": "test"})
        read = fs.get(file_id).read()
        listed = [(f.filename, f.length) for f in fs.find({"metadata.kind": "test"})]
        latest = fs.get_last_version("blob.bin")._id
        fs.delete(file_id)
        return {"same": read == data, "listed": listed, "latest": latest == file_id,
                "exists": fs.exists(file_id)}  # fmt: skip

    def cache_work(client: pymongo.MongoClient[Any]) -> dict[str, Any]:
        cache = MongoDbCache(client=client, db=name, collection="cache", default_timeout=60)
        cache.set("user:1", {"name": "Ada"})
        cache.set_many({"a": 1, "b": 2})
        added_twice = cache.add("a", 3)
        values = [cache.get("user:1"), cache.get_many("a", "b"), cache.has("b")]
        cache.delete("b")
        return {"values": values, "added_twice": added_twice, "after": cache.get("b")}

    async with green_client(server.uri) as client:
        try:
            await fw.probe.settle()
            assert await motor.run_green(gridfs_work, client) == {
                "same": True,
                "listed": [("blob.bin", len(data))],
                "latest": True,
                "exists": False,
            }
            assert await motor.run_green(cache_work, client) == {
                "values": [{"name": "Ada"}, [1, 2], True],
                "added_twice": False,
                "after": None,
            }
            fw.probe.assert_below(MAX_BUSY)
        finally:
            await motor.run_green(client.drop_database, name)


# -------------------------------------------------------------- limits


async def test_thread_locals_are_shared_by_concurrent_calls(
    fw: Framework, holding: Callable[..., HoldingServer], engine: None
) -> None:
    """MongoEngine keeps ``no_dereference()`` state in a ``threading.local``: a green call
    sees another call's block while that call waits inside it.  The server holds both
    queries until both have arrived, so ``meanwhile`` runs while ``inside`` is parked in
    its block."""
    writer = {"_id": ObjectId(), "name": "w"}
    article = {"_id": ObjectId(), "title": "t", "words": 0, "tags": [], "writer": writer["_id"]}
    server = holding({"writer": [writer], "article": [article]}, hold=("article",))
    connect_engine("held", server.uri)

    def inside() -> Any:
        with no_dereference(Article):
            return Article.objects.first().writer  # parked in the block

    def meanwhile() -> bool:
        active: bool = no_dereferencing_active_for_class(Article)
        Article.objects.first()
        return active

    try:
        assert no_dereferencing_active_for_class(Article) is False
        reference, seen = await asyncio.wait_for(
            asyncio.gather(motor.run_green(inside), motor.run_green(meanwhile)), 20
        )
        assert not isinstance(reference, Writer)  # inside the block: not dereferenced
        assert seen is True  # ... and the other call saw the block too
    finally:
        await motor.run_green(me.disconnect)


# -------------------------------------------------------------- the example application

Fetch = Callable[..., Awaitable[HTTPResponse]]


def serving(app: tornado.web.Application) -> contextlib.AbstractAsyncContextManager[Fetch]:
    return serve_on_loopback(app)


def body_of(response: HTTPResponse, code: int = 200) -> Any:
    assert response.code == code, (response.code, response.body)
    return json.loads(response.body) if response.body else None


async def test_example_app(fw: Framework, server: Any, engine: None) -> None:
    name = db_name()
    connect_engine(name, server.uri)
    try:
        async with serving(example.make_app()) as fetch:
            await fw.probe.settle()
            books = "/authors/Le%20Guin/books"
            lathe = body_of(await fetch(books, "POST", {"title": "Lathe", "year": 1971}), 201)
            body_of(await fetch(books, "POST", {"title": "Dispossessed", "year": 1974}), 201)
            body_of(
                await fetch("/authors/Herbert/books", "POST", {"title": "Dune", "year": 1965}), 201
            )
            listed = body_of(await fetch(books))["books"]
            assert [(b["title"], b["author"]) for b in listed] == [
                ("Dispossessed", "Le Guin"),
                ("Lathe", "Le Guin"),
            ]
            assert [b["title"] for b in body_of(await fetch(f"{books}?limit=1"))["books"]] == [
                "Dispossessed"
            ]
            assert (await fetch("/authors/Nobody/books")).code == 404
            patched = await fetch(f"/books/{lathe['id']}", "PATCH", {"year": 1972})
            assert body_of(patched) == {"updated": 1}
            assert (await fetch(f"/books/{lathe['id']}", "DELETE")).code == 204
            assert (await fetch(f"/books/{lathe['id']}", "DELETE")).code == 404
            many = await asyncio.gather(*(fetch(books) for _ in range(20)))
            assert {len(body_of(r)["books"]) for r in many} == {1}
            fw.probe.assert_below(MAX_BUSY)
    finally:
        await motor.run_green(me.get_connection().drop_database, name)
        await motor.run_green(me.disconnect)


async def test_example_app_serves_requests_meanwhile(
    fw: Framework, holding: Callable[..., HoldingServer], engine: None
) -> None:
    """Two requests whose book queries are held until both are in flight."""
    author = {"_id": ObjectId(), "name": "Le Guin"}
    book = {"_id": ObjectId(), "title": "Lathe", "year": 1971, "author": author["_id"]}
    server = holding({"author": [author], "book": [book]}, hold=("book",))
    connect_engine("library", server.uri)
    try:
        async with serving(example.make_app()) as fetch:
            path = "/authors/Le%20Guin/books"
            responses = await asyncio.wait_for(asyncio.gather(fetch(path), fetch(path)), 20)
            for response in responses:
                assert [b["title"] for b in body_of(response)["books"]] == ["Lathe"]
        assert server.arrived.count("book") == 2
        fw.probe.assert_below(MAX_BUSY)
    finally:
        await motor.run_green(me.disconnect)
