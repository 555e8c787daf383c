"""``find_one`` without a cursor object (``motor.green.find``), against PyMongo's own.

The oracle is PyMongo's ``Collection.find_one`` run on the same Motor client (in a child
greenlet, with :func:`motor.run_green`): for every call both must send the same commands,
publish the same events, return the same values (types included) or raise the same
exceptions, and give the implicit session back.  MockupDB scripts what FerretDB cannot
answer (retries, a cursor left open, a reply without a cursor), against PyMongo's sync
client.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

import bson
import pymongo
import pytest
from bson import SON, ObjectId, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, ReadPreference, monitoring
from pymongo.errors import AutoReconnect, BulkWriteError
from pymongo.read_concern import ReadConcern
from pymongo.server_api import ServerApi
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.cursor import Cursor
from pymongo.synchronous.topology import Topology
from pymongo.topology_shared import _ErrorContext

import motor
from motor.green import bulk as green_bulk
from motor.green import find as green_find
from motor.green import insert as green_insert
from motor.green import internals as green_internals
from motor.green import pool as green_pool
from test.framework import Framework, instrumented, run_python
from test.oracle import CommandRecorder
from test.scripted import (
    MAX_BUSY,
    Commands,
    cursor_reply,
    exchange,
    fail,
    hang_up,
    in_thread,
    ok,
    replica_set_member,
    run_script,
    standing_replies,
    summary,
    sync_script,
)

DOCS = [{"_id": i, "n": i, "k": "ab"[i % 2], "query": i % 3} for i in range(6)]


class _Events(monitoring.CommandListener):
    """Every command event, as comparable tuples (session ids and cluster times left out)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    @staticmethod
    def _command(command: Any) -> dict[str, Any]:
        doc = dict(command)
        has_lsid = doc.pop("lsid", None) is not None
        doc.pop("$clusterTime", None)
        doc["has lsid"] = has_lsid
        return doc

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(
            ("started", event.command_name, event.database_name, self._command(event.command))
        )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        reply = dict(event.reply)
        reply.pop("$clusterTime", None)
        reply.pop("operationTime", None)
        self.events.append(("succeeded", event.command_name, reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append(("failed", event.command_name, dict(event.failure)))

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events


def _typed(value: Any) -> Any:
    """A value with the type of every document in it, for comparing results."""
    if isinstance(value, RawBSONDocument):
        return ("raw", value.raw)
    if isinstance(value, dict):
        return (type(value).__name__, [(k, _typed(v)) for k, v in value.items()])
    return value


async def _outcome(awaitable: Any) -> tuple[Any, ...]:
    try:
        return ("returned", _typed(await awaitable))
    except Exception as exc:
        return (
            "raised",
            type(exc),
            str(exc),
            getattr(exc, "code", None),
            getattr(exc, "details", None),
        )


class _CursorsMade:
    """Counts the PyMongo ``Cursor`` objects made while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Cursor.__init__

        def counting(cursor: Any, *args: Any, **kwargs: Any) -> None:
            self.count += 1
            original(cursor, *args, **kwargs)

        monkeypatch.setattr(Cursor, "__init__", counting)


def _pooled_sessions(client: Any) -> int:
    return len(client.delegate._topology._session_pool)


class _ExpressTaken:
    """Counts the ``find_one`` calls that took the express path while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = green_find._express

        def counting(*args: Any) -> Any:
            self.count += 1
            return original(*args)

        monkeypatch.setattr(green_find, "_express", counting)


class _Received:
    """The names of the commands a MockupDB server receives (handshakes, heartbeats and
    ``endSessions`` left out): what a client without command listeners sent.  Registered
    last, it sees every request first and leaves the answer to the others."""

    def __init__(self, server: Any) -> None:
        self.names: list[str] = []
        server.autoresponds(self._record)

    def _record(self, request: Any) -> bool:
        name = request.command_name or ""
        if name.lower() not in ("ismaster", "hello", "endsessions", ""):
            self.names.append(name)
        return False


@pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "express"])
async def test_find_one_sends_and_returns_what_pymongo_does(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """With a command listener, Motor's path without a cursor object; without one, the
    express path (the same commands, seen by the server; see the MockupDB tests)."""
    events = _Events()
    client = fw.client(server.uri, event_listeners=[events] if monitored else [])
    db = client[f"find_one_{fw.name}_{monitored}"]
    await client.drop_database(db.name)
    await db.c.insert_many([dict(d) for d in DOCS])
    await db["a.b"].insert_one({"_id": 1, "dotted": True})
    await db.c.find_one()  # a pooled session and connection for both sides
    events.take()
    cursors = _CursorsMade(monkeypatch)
    express = _ExpressTaken(monkeypatch)
    collections = {
        "plain": db.c,
        "SON": db.get_collection("c", codec_options=CodecOptions(document_class=SON)),
        "raw": db.get_collection("c", codec_options=CodecOptions(RawBSONDocument)),
        "secondaryPreferred": db.get_collection(
            "c", read_preference=ReadPreference.SECONDARY_PREFERRED
        ),
        "local read concern": db.get_collection("c", read_concern=ReadConcern("local")),
        "dotted name": db["a.b"],
        "missing": db.missing,
    }
    # (args, kwargs, whether the call takes the path without a cursor)
    calls: list[tuple[tuple[Any, ...], dict[str, Any], bool]] = [
        ((), {}, True),
        (({},), {}, True),
        ((None,), {}, True),
        (({"n": 3},), {}, True),
        ((), {"filter": {"n": 4}}, True),
        ((3,), {}, True),
        (("ab",), {}, True),
        ((ObjectId(),), {}, True),
        (({"n": 100},), {}, True),
        (({"query": 1},), {}, True),
        ((SON([("query", 2), ("n", 2)]),), {}, True),
        (({"n": 1, "query": 1},), {}, True),
        # Legacy query modifiers, which PyMongo turns into find's options.
        (({"$query": {"k": "a"}, "$orderby": {"n": -1}},), {}, True),
        ((RawBSONDocument(bson.encode({"n": 5})),), {}, True),
        (({"$bad": 1},), {}, True),
        # A legacy $explain modifier: PyMongo's cursor returns the explain command's reply.
        (({"$explain": True},), {}, False),
        (({"$query": {"n": 1}, "$explain": True},), {}, False),
        (({"n": 3}, {"_id": 0, "k": 1}), {}, True),
        (({"n": 3}, ["k"]), {}, True),
        (({"n": 3},), {"projection": {"n": 1}}, True),
        (({"n": 3}, 5), {}, True),
        (({"n": 3}, {"k": 1}, 1), {}, False),
        (({"k": "a"},), {"sort": [("n", ASCENDING)]}, False),
        (({},), {"projection": {"n": 1}, "skip": 2}, False),
        (({},), {"bogus_option": 1}, False),
    ]
    for label, coll in collections.items():
        for args, kwargs, fast in calls:
            case = f"{label}: find_one(*{args!r}, **{kwargs!r})"
            sessions = _pooled_sessions(client)
            made, expressed = cursors.count, express.count
            ours = await _outcome(coll.find_one(*args, **kwargs))
            our_events = events.take()
            assert cursors.count - made == (0 if fast else 1), case
            # (A projection of the wrong type is refused before any path is taken.)
            refused = ours[0] == "raised" and ours[1] is TypeError
            expected = 1 if fast and not monitored and not refused else 0
            assert express.count - expressed == expected, case
            assert _pooled_sessions(client) == sessions, case

            theirs = await _outcome(
                motor.run_green(Collection.find_one, coll.delegate, *args, **kwargs)
            )
            assert ours == theirs, case
            assert our_events == events.take(), case
            assert _pooled_sessions(client) == sessions, case


async def test_find_one_in_a_bound_session(fw: Framework, server: Any) -> None:
    recorder = CommandRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    coll = client[f"find_one_bound_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    async with await client.start_session() as session:
        async with session.bind(end_session=False):
            recorder.events.clear()
            ours = await coll.find_one({"_id": 1})
            theirs = await motor.run_green(Collection.find_one, coll.delegate, {"_id": 1})
        assert ours == theirs == {"_id": 1}
        lsids = [event.command.get("lsid") for event in recorder.events]
        assert lsids == [session.session_id, session.session_id]
    other = fw.client(server.uri)
    async with await other.start_session() as foreign:
        async with foreign.bind(end_session=False):
            ours_error = await _outcome(coll.find_one({"_id": 1}))
            theirs_error = await _outcome(
                motor.run_green(Collection.find_one, coll.delegate, {"_id": 1})
            )
    assert ours_error == theirs_error
    assert ours_error[0] == "raised"


class _StopsIteration(dict):  # type: ignore[type-arg]
    """A document class that ends the iteration decoding it (a user's bug)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise StopIteration("from the document class")


@pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "express"])
async def test_a_stop_iteration_while_decoding_ends_find_one_as_in_pymongo(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    # PyMongo's find_one is a for loop over its cursor: a StopIteration raised while
    # decoding the document ends that loop, and find_one returns None.
    client = fw.client(server.uri, event_listeners=[_Events()] if monitored else [])
    coll = client[f"find_one_stop_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    stopping = coll.with_options(codec_options=CodecOptions(document_class=_StopsIteration))
    await coll.find_one()  # a pooled session for both sides
    sessions = _pooled_sessions(client)
    express = _ExpressTaken(monkeypatch)
    for args in [(), ({"_id": 1},), ({"_id": 1}, {"_id": 1})]:
        ours = await _outcome(stopping.find_one(*args))
        theirs = await _outcome(motor.run_green(Collection.find_one, stopping.delegate, *args))
        assert ours == theirs == ("returned", None), args
        assert _pooled_sessions(client) == sessions, args
    assert express.count == (0 if monitored else 3)


@pytest.mark.parametrize("wrapper", ["functools", "proxy"])
async def test_an_instrumentations_wrapper_sees_find_one_and_insert_many(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, wrapper: str
) -> None:
    """APM libraries (elastic-apm, New Relic) wrap PyMongo's ``Collection`` methods:
    ``find_one`` and ``insert_many``, which Motor runs without them on PyMongo's own
    methods, call the wrapped method in place instead, with the same results."""
    seen: list[str] = []
    for name in ("find_one", "insert_many"):
        monkeypatch.setattr(
            Collection, name, instrumented(getattr(Collection, name), wrapper, seen)
        )
    coll = fw.client(server.uri)[f"find_one_wrapped_{fw.name}"].c
    await coll.drop()
    result = await coll.insert_many([{"_id": i} for i in range(3)])
    assert result.inserted_ids == [0, 1, 2]
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert await coll.find_one({"_id": 2}, {"_id": 1}) == {"_id": 2}
    assert await coll.find_one(9) is None
    with pytest.raises(BulkWriteError):
        await coll.insert_many([{"_id": 0}])
    assert seen == ["insert_many", "find_one", "find_one", "find_one", "insert_many"]
    await coll.drop()


async def test_a_wrapper_that_calls_motors_own_method_does_not_recurse(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A method in place on ``Collection`` that calls Motor's ``find_one`` or
    ``insert_many`` back (to use them from synchronous code, say) gets their own path
    there, not itself again, for ever."""
    seen: list[str] = []
    for name, green in (("find_one", green_find.find_one), ("insert_many", green_bulk.insert_many)):
        monkeypatch.setattr(Collection, name, instrumented(green, "functools", seen))
    coll = fw.client(server.uri)[f"find_one_reentry_{fw.name}"].c
    await coll.drop()
    assert (await coll.insert_many([{"_id": 1}])).inserted_ids == [1]
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert seen == ["insert_many", "find_one"]
    await coll.drop()


async def test_load_balanced_and_encrypted_clients_take_pymongo_s_path(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo.encryption_options import AutoEncryptionOpts

    cursors = _CursorsMade(monkeypatch)
    opts = AutoEncryptionOpts(
        {"local": {"key": b"\x01" * 96}},
        "keyvault.datakeys",
        bypass_auto_encryption=True,
    )
    client = fw.client(server.uri, auto_encryption_opts=opts)
    coll = client[f"find_one_encrypted_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1, "x": "plain"})
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "x": "plain"}
    assert cursors.count == 1
    # load_balanced=True: the check is on the client's options.
    plain = fw.client(server.uri)
    monkeypatch.setattr(type(plain.delegate.options), "load_balanced", property(lambda s: True))
    assert await plain[f"find_one_encrypted_{fw.name}"].c.find_one({"_id": 1}) is not None
    assert cursors.count == 2


# ------------------------------------------------------------------ MockupDB: the wire


def _find_one(client: Any) -> Any:
    return client.db.coll.find_one({"_id": 1})


def _member(kind: str) -> Any:
    """A MockupDB server factory: a replica set's primary (``replica_set_member``), a
    standalone server or a mongos."""
    if kind == "replica set member":
        return replica_set_member

    def make(mockup: Any) -> Any:
        server = mockup(auto_ismaster=None)
        hello: dict[str, Any] = {
            "ismaster": True,
            "isWritablePrimary": True,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "logicalSessionTimeoutMinutes": 30,
        }
        if kind == "mongos":
            hello["msg"] = "isdbgrid"
        server.autoresponds(standing_replies(hello))
        return server

    return make


def _comparable(command: Any) -> dict[str, Any]:
    doc = {k: v for k, v in command.items() if k != "lsid"}
    if "maxTimeMS" in doc:
        doc["maxTimeMS"] = "present"
    return doc


async def _like_sync(
    fw: Framework,
    mockup: Any,
    steps: list[Any],
    monitored: bool,
    monkeypatch: pytest.MonkeyPatch,
    find: Any = _find_one,
    member: Any = replica_set_member,
    calls: int = 1,
    counter: Any = None,
    **options: Any,
) -> tuple[list[Any], tuple[Any, ...], list[str]]:
    """find_one({"_id": 1}) with Motor and with sync PyMongo against ``steps``: the same
    requests, commands and outcome, and as many server sessions in the pool afterwards
    (PyMongo discards one that saw a connection error).  Motor's client has a command
    listener if ``monitored``, and takes the express path if not (counted by ``counter``,
    find_one's by default).  Returns Motor's."""
    commands, sync_commands = Commands(), Commands()

    server = member(mockup)
    received = _Received(server)
    client = fw.client(server.uri, event_listeners=[commands] if monitored else [], **options)
    express = (counter or _ExpressTaken)(monkeypatch)
    await fw.probe.settle()
    requests, outcome = await run_script(server, steps, find(client))
    fw.probe.assert_below(MAX_BUSY)
    assert express.count == (0 if monitored else calls)
    oracle = member(mockup)
    sync_pooled: list[int] = []

    def find_one_and_count(sync_client: Any) -> Any:
        # Counted once PyMongo's cursor is gone: a cursor that raised gives its session
        # back when the traceback that holds it is dropped.
        error = None
        try:
            result = find(sync_client)
        except Exception as exc:
            error = exc.with_traceback(None)
        sync_pooled.append(len(sync_client._topology._session_pool))
        if error is not None:
            raise error
        return result

    sync_requests, sync_outcome = await in_thread(
        sync_script,
        oracle,
        steps,
        find_one_and_count,
        event_listeners=[sync_commands],
        **options,
    )
    assert [_pooled_sessions(client)] == sync_pooled
    assert summary(outcome) == summary(sync_outcome)
    # The oracle's client has been closed (endSessions); Motor's is still open.
    names = [name for name in sync_commands.names if name != "endSessions"]
    assert received.names == names
    if monitored:
        assert commands.names == names
    assert len(requests) == len(sync_requests)
    for ours, theirs in zip(requests, sync_requests):
        # (A deadline's remaining time differs from run to run: only its presence counts.)
        assert _comparable(ours.doc) == _comparable(theirs.doc)
        assert list(ours.doc) == list(theirs.doc)  # (the fields' order too)
        assert "lsid" in ours.doc and "lsid" in theirs.doc
    return requests, summary(outcome), names


_MONITORED = pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "express"])


@_MONITORED
async def test_a_cursor_left_open_is_killed(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    steps = [("find", cursor_reply([{"_id": 1}], ns="db.coll", cursor_id=123))]
    _, outcome, names = await _like_sync(fw, mockup, steps, monitored, monkeypatch)
    assert outcome == ("returned", {"_id": 1})
    assert names == ["find", "killCursors"]


@pytest.mark.parametrize(
    "first",
    [
        "network error",
        "NotWritablePrimary",
        "ReauthenticationRequired",
        "BadValue",
        "no cursor in the reply",
        "an open cursor without a batch",
    ],
)
@_MONITORED
async def test_retries_and_errors_are_pymongo_s(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, first: str, monitored: bool
) -> None:
    answer = {
        "network error": hang_up,
        "NotWritablePrimary": fail(10107, "not primary"),
        "ReauthenticationRequired": fail(391, "reauthentication required"),
        "BadValue": fail(2, "bad value"),
        "no cursor in the reply": ok(),
        "an open cursor without a batch": ok(cursor={"id": 123, "ns": "db.coll"}),
    }[first]
    retried = first in ("network error", "NotWritablePrimary", "ReauthenticationRequired")
    steps = [("find", answer)]
    if retried:
        steps.append(("find", cursor_reply([{"_id": 1}])))
    requests, outcome, names = await _like_sync(fw, mockup, steps, monitored, monkeypatch)
    assert len(requests) == len(steps)
    if retried:
        assert outcome == ("returned", {"_id": 1})
        assert requests[0]["lsid"] == requests[1]["lsid"]
    else:
        assert outcome[0] == "raised"
    # The cursor id the reply gave is killed (PyMongo: when its cursor is collected).
    assert ("killCursors" in names) == (first == "an open cursor without a batch")


def _find_two(client: Any) -> Any:
    """Two find_one calls, with PyMongo's sync client or with Motor's."""
    coll = client.db.get_collection(
        "coll",
        read_preference=ReadPreference.SECONDARY_PREFERRED,
        read_concern=ReadConcern("majority"),
    )
    if isinstance(client, pymongo.MongoClient):
        return [coll.find_one({"_id": 1}), coll.find_one({"_id": 2}, ["x"])]

    async def both() -> list[Any]:
        return [await coll.find_one({"_id": 1}), await coll.find_one({"_id": 2}, ["x"])]

    return both()


@pytest.mark.parametrize("kind", ["replica set member", "standalone", "mongos"])
@_MONITORED
async def test_read_preference_concern_and_cluster_time_are_sent_as_pymongo_sends_them(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, kind: str, monitored: bool
) -> None:
    """The first reply's ``$clusterTime`` goes with the second command; the read
    preference is sent as PyMongo sends it to each kind of server (none to a standalone
    server), and the read concern."""
    cluster_time = {
        "clusterTime": Timestamp(1_700_000_000, 7),
        "signature": {"hash": b"\x01" * 20, "keyId": 1},
    }
    steps = [
        (
            "find",
            ok(
                cursor={"id": 0, "ns": "db.coll", "firstBatch": [{"_id": 1}]},
                **{"$clusterTime": cluster_time, "operationTime": cluster_time["clusterTime"]},
            ),
        ),
        ("find", cursor_reply([])),
    ]
    requests, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, _find_two, _member(kind), calls=2
    )
    assert outcome == ("returned", [{"_id": 1}, None])
    assert requests[1]["$clusterTime"] == cluster_time
    assert requests[1]["readConcern"] == {"level": "majority"}
    assert requests[1]["projection"] == {"x": 1}
    mode = requests[1].doc.get("$readPreference", {}).get("mode")
    assert mode == (None if kind == "standalone" else "secondaryPreferred")
    assert requests[0]["lsid"] == requests[1]["lsid"]


@_MONITORED
async def test_the_server_api_is_declared_as_pymongo_declares_it(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    steps = [("find", cursor_reply([{"_id": 1}]))]
    api = ServerApi("1", strict=True)
    requests, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, server_api=api
    )
    assert outcome == ("returned", {"_id": 1})
    assert requests[0]["apiVersion"] == "1"
    assert requests[0]["apiStrict"] is True


@_MONITORED
async def test_a_retry_through_a_mongos_avoids_the_mongos_that_failed(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """PyMongo's retry loop deprioritizes the mongos of the failed attempt."""
    chosen: list[Any] = []
    select = Topology._select_server

    def recording(topology: Any, selector: Any, operation: str, *args: Any, **kw: Any) -> Any:
        server = select(topology, selector, operation, *args, **kw)
        if operation == "find":
            deprioritized = args[2] if len(args) > 2 else kw.get("deprioritized_servers")
            chosen.append((deprioritized, server))
        return server

    # (Under MongoClient._select_server and Topology.select_server, which the express path
    # stands in for when it reuses a selection: the first selection is not reused.)
    monkeypatch.setattr(Topology, "_select_server", recording)
    steps = [("find", fail(6, "host unreachable")), ("find", cursor_reply([{"_id": 1}]))]
    _, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, member=_member("mongos")
    )
    assert outcome == ("returned", {"_id": 1})
    # Motor's two selections, then the oracle's (the only mongos again each time).
    assert [bool(deprioritized) for deprioritized, _ in chosen] == [False, True, False, True]
    assert chosen[1][0] == [chosen[0][1]]


def _under_a_timeout_then_not(client: Any) -> Any:
    """find_one under ``pymongo.timeout(0.5)``, then without a timeout on the same
    connection (a pool of one)."""
    if isinstance(client, pymongo.MongoClient):
        with pymongo.timeout(0.5):
            client.db.coll.find_one({"_id": 1})
        return client.db.coll.find_one({"_id": 2})

    async def both() -> Any:
        with pymongo.timeout(0.5):
            await client.db.coll.find_one({"_id": 1})
        return await client.db.coll.find_one({"_id": 2})

    return both()


def _slow(reply: Any, seconds: float) -> Any:
    def answer(request: Any) -> Any:
        time.sleep(seconds)
        return reply(request)

    return answer


@_MONITORED
async def test_a_timeout_left_on_the_connection_by_pymongo_timeout_is_reset(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """An operation under ``pymongo.timeout()`` sets its connection's socket timeout to
    what remains of its deadline; the next one without a deadline sets
    ``socketTimeoutMS`` again (none here), as PyMongo does: a reply after a second comes."""
    steps = [
        ("find", cursor_reply([{"_id": 1}])),
        ("find", _slow(cursor_reply([{"_id": 2}]), 1.0)),
    ]
    _, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, _under_a_timeout_then_not, maxPoolSize=1
    )
    assert outcome == ("returned", {"_id": 2})


class _Wrapped:
    """An instrumentation's wrapper on ``owner.name``, counting its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        self.calls = 0
        original = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)


@pytest.mark.parametrize(
    "condition",
    [
        "timeoutMS",
        "pymongo.timeout",
        "command logging",
        "server selection logging",
        "bound session",
        "wrapped _run_operation",
    ],
)
async def test_the_express_path_leaves_what_it_cannot_see_to_pymongo(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, condition: str
) -> None:
    """A timeout, debug logging, a bound session or a wrapper on what the express path
    stands in for: ``find_one`` takes PyMongo's way, with the same result."""
    options = {"timeoutMS": 60_000} if condition == "timeoutMS" else {}
    client = fw.client(server.uri, **options)
    coll = client[f"find_one_express_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    assert await coll.find_one({"_id": 1}) == {"_id": 1}  # connected
    express = _ExpressTaken(monkeypatch)
    # Another client, with none of those, takes it.
    plain = fw.client(server.uri)[coll.database.name].c
    assert await plain.find_one({"_id": 1}) == {"_id": 1}
    assert express.count == 1
    wrapped = None
    if condition.startswith("wrapped"):
        wrapped = _Wrapped(monkeypatch, pymongo.MongoClient, "_run_operation")
    logger = None
    if condition.endswith("logging"):
        name = "pymongo.command" if condition.startswith("command") else "pymongo.serverSelection"
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [logging.NullHandler()])
        monkeypatch.setattr(logger, "propagate", False)
        previous_level = logger.level
        logger.setLevel(logging.DEBUG)
    try:
        if condition == "pymongo.timeout":

            async def find() -> Any:
                with pymongo.timeout(60):
                    return await coll.find_one({"_id": 1})

            found = await find()
        elif condition == "bound session":
            async with await client.start_session() as session:
                async with session.bind(end_session=False):
                    found = await coll.find_one({"_id": 1})
        else:
            found = await coll.find_one({"_id": 1})
    finally:
        if logger is not None:
            logger.setLevel(previous_level)
    assert found == {"_id": 1}
    assert express.count == 1
    if wrapped is not None:
        assert wrapped.calls == 1
    await coll.drop()


_WRAPPABLE: list[tuple[str, str, bool]] = [
    # (module or class, attribute, whether the express path calls it)
    ("pymongo.synchronous.mongo_client.MongoClient", "_retry_internal", False),
    ("pymongo.synchronous.mongo_client._ClientConnectionRetryable", "run", False),
    ("pymongo.message._Query", "as_command", False),
    ("pymongo.synchronous.client_session.ClientSession", "_apply_to", False),
    ("pymongo.synchronous.command_runner", "_run_command", False),
    ("pymongo.synchronous.cursor_base", "run_cursor_command", False),
    ("pymongo.synchronous.cursor_base._CursorBase", "_run_with_conn", False),
    ("pymongo.synchronous.cursor.Cursor", "_unpack_response", False),
    ("pymongo.synchronous.mongo_client.MongoClient", "_cleanup_cursor_lock", False),
    ("pymongo.synchronous.mongo_client.MongoClient", "_conn_from_server", False),
    ("pymongo.synchronous.mongo_client._ClientReadCheckout", "__enter__", False),
    ("pymongo.synchronous.pool.Pool", "checkout", False),
    ("pymongo.synchronous.pool._PoolCheckout", "__exit__", False),
    ("pymongo.helpers_shared", "_check_command_response", True),
    ("pymongo.message", "_gen_find_command", True),
    ("pymongo.message", "_op_msg", True),
    ("pymongo.synchronous.mongo_client.MongoClient", "_select_server", False),
    ("pymongo.synchronous.topology.Topology", "select_server", False),
]


def _resolve(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            target = getattr(target, part)
        return target
    raise ImportError(dotted)


@pytest.mark.parametrize(
    ("owner", "name", "called"), _WRAPPABLE, ids=[name for _, name, _ in _WRAPPABLE]
)
async def test_a_wrapper_on_what_find_one_runs_sees_the_call(
    fw: Framework,
    server: Any,
    monkeypatch: pytest.MonkeyPatch,
    owner: str,
    name: str,
    called: bool,
) -> None:
    """A wrapper put (after Motor was imported) on a PyMongo function that ``find_one``
    runs sees the call: the express path looks up what it calls when it calls it, as
    PyMongo does, and is not taken when what it stands in for is wrapped."""
    coll = fw.client(server.uri)[f"find_one_wrapped_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    express = _ExpressTaken(monkeypatch)
    wrapped = _Wrapped(monkeypatch, _resolve(owner), name)
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert wrapped.calls >= 1
    assert express.count == (1 if called else 0)
    await coll.drop()


class _EqualToWhatItWraps:
    """A wrapper object that compares equal to the function it wraps (as wrapt's do)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return bool(other == self.wrapped)

    def __hash__(self) -> int:
        return hash(self.wrapped)


async def test_a_wrapper_equal_to_what_it_wraps_sees_the_call(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pymongo.synchronous.command_runner as command_runner

    coll = fw.client(server.uri)[f"find_one_equal_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    express = _ExpressTaken(monkeypatch)
    wrapper = _EqualToWhatItWraps(command_runner._run_command)
    monkeypatch.setattr(command_runner, "_run_command", wrapper)
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert (wrapper.calls, express.count) == (1, 0)
    await coll.drop()


_WRAPPED_BEFORE_IMPORT = """
import asyncio, functools, sys
import pymongo.message

seen = []
original = pymongo.message._Query.as_command


@functools.wraps(original)
def as_command(*args, **kwargs):
    seen.append("as_command")
    return original(*args, **kwargs)


pymongo.message._Query.as_command = as_command

from motor.motor_asyncio import AsyncIOMotorClient


async def main():
    client = AsyncIOMotorClient(sys.argv[1])
    await client.db.find_one_wrapped_early.insert_one({"_id": 1})
    found = await client.db.find_one_wrapped_early.find_one({"_id": 1})
    await client.db.find_one_wrapped_early.drop()
    print(found, bool(seen))


asyncio.run(main())
"""


def test_a_wrapper_put_before_motor_is_imported_sees_the_call(server: Any) -> None:
    """An agent that wraps PyMongo's functions when the process starts, before the
    application imports Motor: the express path is not taken, the wrapper sees the call."""
    output = run_python(_WRAPPED_BEFORE_IMPORT, server.uri).stdout
    assert output.strip() == "{'_id': 1} True"


@_MONITORED
async def test_a_retry_sends_the_cluster_time_of_the_failed_attempt_s_reply(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """The implicit session has seen the failed attempt's reply: where its ``$clusterTime``
    is as recent as the client's, the retry sends the session's (PyMongo prefers it)."""

    def cluster_time(key_id: int) -> dict[str, Any]:
        return {
            "clusterTime": Timestamp(1_700_000_000, 7),
            "signature": {"hash": b"\x01" * 20, "keyId": key_id},
        }

    steps = [
        (
            "find",
            ok(
                cursor={"id": 0, "ns": "db.coll", "firstBatch": []},
                **{"$clusterTime": cluster_time(2)},
            ),
        ),
        (
            "find",
            lambda request: request.command_err(
                10107, "not primary", **{"$clusterTime": cluster_time(1)}
            ),
        ),
        ("find", cursor_reply([{"_id": 2}])),
    ]
    requests, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, _find_two, _member("mongos"), calls=2
    )
    assert outcome == ("returned", [None, {"_id": 2}])
    assert requests[1]["$clusterTime"]["signature"]["keyId"] == 2
    assert requests[2]["$clusterTime"]["signature"]["keyId"] == 1


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for this error")


class _RaisesUnprintable(dict):  # type: ignore[type-arg]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _Unprintable


async def test_a_decoding_error_is_described_as_pymongo_describes_it(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyMongo's command runner turns every failure into a description (its text) for
    its monitoring, even unmonitored: an error whose ``str()`` raises gives way to that."""
    client = fw.client(server.uri)
    coll = client[f"find_one_unprintable_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 1})
    failing = coll.with_options(codec_options=CodecOptions(document_class=_RaisesUnprintable))

    async def outcome(awaitable: Any) -> tuple[Any, ...]:
        try:
            await awaitable
        except BaseException as exc:
            return (type(exc), type(exc.__context__))
        return ("returned",)

    express = _ExpressTaken(monkeypatch)
    ours = await outcome(failing.find_one({"_id": 1}))
    assert express.count == 1
    theirs = await outcome(motor.run_green(Collection.find_one, failing.delegate, {"_id": 1}))
    assert ours == theirs == (RuntimeError, _Unprintable)
    await coll.drop()


def _version(kind: str) -> Any:
    """The same function, ``f``, as written in four ways."""
    if kind == "one":

        def f(a: Any, b: Any) -> Any:
            """One."""
            a.check()
            return b.process(True)

    elif kind == "reordered":

        def f(a: Any, b: Any) -> Any:
            """One."""
            result = b.process(True)
            a.check()
            return result

    elif kind == "other value":

        def f(a: Any, b: Any) -> Any:
            """One."""
            a.check()
            return b.process(False)

    else:

        def f(a: Any, b: Any) -> Any:
            """Another text,
            over two lines."""
            a.check()  # a comment
            return b.process(True)

    return f


def test_the_fingerprint_sees_any_change_to_the_source() -> None:
    fingerprint = green_internals.fingerprint
    one = fingerprint(_version("one"))
    assert one == fingerprint(_version("one"))
    assert one != fingerprint(_version("reordered"))
    assert one != fingerprint(_version("other value"))
    assert one != fingerprint(_version("other docstring and a comment"))
    assert fingerprint(len) == ""  # no source: the express path is not taken


def _trailing_comment(a: Any) -> Any:
    """A function whose source ends with a comment in its body."""
    return a
    # (Part of the text inspect.getsource reads, past the last line of the code.)


class _Fingerprinted:
    """A class, checked as PyMongo's session classes are."""

    def first(self) -> int:
        return 1

    @property
    def last(self) -> int:
        return 2


def test_unchanged_is_the_fingerprint_s_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    unchanged, fingerprint = green_internals.unchanged, green_internals.fingerprint
    one, other = _version("one"), fingerprint(_version("other value"))
    expected = {f: fingerprint(f) for f in (one, _trailing_comment, _Fingerprinted)}
    assert not unchanged(len, fingerprint(len))  # no source: never unchanged
    assert not unchanged(_trailing_comment, None)

    # The lines a function's (or a class's methods') code spans are the text
    # inspect.getsource reads: it is not called.
    def getsource(obj: Any) -> str:
        raise AssertionError(f"inspect.getsource({obj!r}) called")

    with monkeypatch.context() as patched:
        patched.setattr(inspect, "getsource", getsource)
        assert unchanged(one, expected[one])
        assert unchanged(_Fingerprinted, expected[_Fingerprinted])
    # A comment past the code's last line: those lines are not the text, and the
    # fingerprint decides.
    assert green_internals._spanned_source(_trailing_comment) != inspect.getsource(
        _trailing_comment
    )
    for function, digest in expected.items():
        assert unchanged(function, digest)
        assert not unchanged(function, other)


def test_pymongo_s_source_is_checked_without_tokenizing(monkeypatch: pytest.MonkeyPatch) -> None:
    # For PyMongo 4.20 the lines each checked function's code spans are the text its
    # fingerprint digests: importing Motor does not tokenize PyMongo's modules (or
    # parse them, for a class) to find it, which took 0.1 s.
    def getsource(obj: Any) -> str:
        raise AssertionError(f"inspect.getsource({obj!r}) called")

    monkeypatch.setattr(inspect, "getsource", getsource)
    assert green_find.check_express_internals() == []
    assert green_find.check_selection_internals() == []
    assert green_insert.check_express_internals() == []
    assert green_pool.check_pool_express_internals() == []


def test_pymongo_internals_for_the_express_path() -> None:
    assert green_find.check_express_internals() == []
    assert green_find._EXPRESS


def test_internals_check_reports_a_changed_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymongo.message

    def _gen_find_command(coll: str, spec: Any, projection: Any) -> dict[str, Any]:
        return {"find": coll, "filter": spec, "hint": projection}

    monkeypatch.setattr(pymongo.message, "_gen_find_command", _gen_find_command)
    assert green_find.check_express_internals() == [
        "pymongo's _gen_find_command changed: find_one's express path no longer matches it"
    ]


def test_pymongo_internals_for_find_one() -> None:
    assert green_find.check_pymongo_internals() == []


def test_internals_check_reports_a_changed_query(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymongo.message

    class Changed:
        def __init__(self, flags: int, db: str, collation: Any, coll: str) -> None:
            pass

    monkeypatch.setattr(pymongo.message._Query, "__init__", Changed.__init__)
    assert green_find.check_pymongo_internals() == ["pymongo.message._Query's parameters changed"]


def _selections(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The operations PyMongo selects a server for, on ``client``'s topology (counted on
    the topology object: a wrapper on the class would turn the express paths off)."""
    topology = client.delegate._topology
    own = topology.select_server
    calls: list[str] = []

    def counting(selector: Any, operation: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(operation)
        return own(selector, operation, *args, **kwargs)

    monkeypatch.setattr(topology, "select_server", counting)
    return calls


async def test_a_selection_is_reused_while_the_topology_is_unchanged(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = fw.client(server.uri)
    coll = client[f"find_one_selection_{fw.name}"].c
    await coll.drop()
    selections = _selections(client, monkeypatch)
    await coll.insert_one({"_id": 1})
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert selections == ["insert", "find"]
    for n in range(2, 5):
        await coll.insert_one({"_id": n})
        assert await coll.find_one({"_id": n}) == {"_id": n}
    assert selections == ["insert", "find"]
    # The server marked unknown (as after a network error): a new topology description,
    # and PyMongo's selection, which waits for the server to be known again.
    topology = client.delegate._topology
    (address,) = topology._servers
    generation = topology._servers[address].pool.gen.get_overall()
    error = _ErrorContext(AutoReconnect("connection reset"), 21, generation, True, None)
    topology.handle_error(address, error)
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    await coll.insert_one({"_id": 5})
    assert selections == ["insert", "find", "find", "insert"]
    await coll.drop()


async def test_a_custom_server_selector_sees_every_selection(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    seen: list[int] = []

    def selector(servers: list[Any]) -> list[Any]:
        seen.append(len(servers))
        return servers

    client = fw.client(f"{server.uri}/?replicaSet=rs", server_selector=selector)
    coll = client.db.coll
    for _ in range(3):
        _, doc = await exchange(server, "find", coll.find_one({}), cursor_reply([{"_id": 1}]))
        assert doc == {"_id": 1}
    assert seen == [1, 1, 1]


def test_pymongo_internals_for_the_reuse_of_selections() -> None:
    assert green_find.check_selection_internals() == []
    assert green_find._REUSE_SELECTIONS
