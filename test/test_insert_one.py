"""``insert_one``'s express path (``motor.green.insert``), against PyMongo's own.

The oracle is PyMongo's ``Collection.insert_one`` run on the same Motor client (in a child
greenlet, with :func:`motor.run_green`): both must send the same commands, publish the same
events, return the same values or raise the same exceptions, and give the implicit
session back.  MockupDB scripts what FerretDB cannot answer (a replica set's retryable
writes, retries, write concern errors), against PyMongo's sync client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import bson
import pymongo
import pytest
from bson import SON, ObjectId, Timestamp
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from mockupdb import OpMsg
from pymongo.errors import DuplicateKeyError
from pymongo.server_api import ServerApi
from pymongo.synchronous.collection import Collection
from pymongo.write_concern import WriteConcern

import motor
from motor.green import insert as green_insert
from test.framework import ClosedConnections, Framework, instrumented, parked_children
from test.scripted import fail, hang_up, ok, replica_set_member
from test.test_find_one import (
    _Events,
    _like_sync,
    _member,
    _outcome,
    _pooled_sessions,
    _resolve,
    _Wrapped,
)
from test.test_green_cancel import cancel_after


class _ExpressTaken:
    """Counts the ``insert_one`` calls that took the express path while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = green_insert._express

        def counting(*args: Any) -> Any:
            self.count += 1
            return original(*args)

        monkeypatch.setattr(green_insert, "_express", counting)


def _pooled_connections(client: Any) -> int:
    """The idle connections in the client's pools (PyMongo closes a connection that
    raised anything but a command error)."""
    return sum(len(server.pool.conns) for server in client.delegate._topology._servers.values())


def _result(result: Any) -> tuple[Any, bool]:
    return (result.inserted_id, result.acknowledged)


@pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "express"])
async def test_insert_one_sends_and_returns_what_pymongo_does(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """With a command listener, PyMongo's path; without one, the express path: the same
    commands, results, exceptions and pooled sessions."""
    events = _Events()
    client = fw.client(server.uri, event_listeners=[events] if monitored else [])
    db = client[f"insert_one_{fw.name}_{monitored}"]
    await client.drop_database(db.name)
    await db.c.insert_one({"_id": "first"})  # a pooled session and connection
    await db["a.b"].insert_one({"_id": "first"})
    events.take()
    express = _ExpressTaken(monkeypatch)
    collections = {
        "plain": db.c,
        "SON": db.get_collection("c", codec_options=CodecOptions(document_class=SON)),
        "raw": db.get_collection("c", codec_options=CodecOptions(RawBSONDocument)),
        "w=1": db.get_collection("c", write_concern=WriteConcern(w=1)),
        "dotted name": db["a.b"],
    }
    # (document, args, kwargs, whether the call takes the express path)
    calls: list[tuple[Any, tuple[Any, ...], dict[str, Any], bool]] = [
        ({"_id": 1, "x": "a"}, (), {}, True),
        ({"_id": "first"}, (), {}, True),  # a duplicate key
        (SON([("x", 1), ("_id", 2)]), (), {}, True),
        (RawBSONDocument(bson.encode({"_id": 3, "raw": True})), (), {}, True),
        ({"_id": 4, "$bad": 1}, (), {}, True),
        ({"_id": 5, 6: "a key that is not a string"}, (), {}, True),
        ({"_id": 7, "big": "x" * (16 * 1024 * 1024)}, (), {}, True),
        ([("_id", 8)], (), {}, True),  # not a document
        ({"_id": 9}, (True,), {}, False),
        ({"_id": 10}, (), {"bypass_document_validation": False}, False),
        ({"_id": 11}, (), {"comment": "a comment"}, False),
        ({"_id": 12}, (), {"session": None}, False),
    ]
    for label, coll in collections.items():
        for document, args, kwargs, fast in calls:
            if "big" in document and label != "plain":
                continue  # (16 MB, slow to store: once is enough)
            case = f"{label}: insert_one({document!r:.60}, *{args!r}, **{kwargs!r})"
            sessions = _pooled_sessions(client)
            expressed = express.count
            connections = _pooled_connections(client)
            ours = await _outcome(_awaited_result(coll.insert_one(document, *args, **kwargs)))
            our_events = events.take()
            our_connections = _pooled_connections(client) - connections
            refused = ours[0] == "raised" and ours[1] is TypeError
            expected = 1 if fast and not monitored and not refused else 0
            assert express.count - expressed == expected, case
            assert _pooled_sessions(client) == sessions, case
            our_count = await coll.count_documents({})
            await coll.delete_many({"_id": {"$ne": "first"}})
            events.take()

            connections = _pooled_connections(client)
            theirs = await _outcome(
                _awaited_result(
                    motor.run_green(Collection.insert_one, coll.delegate, document, *args, **kwargs)
                )
            )
            their_events = events.take()
            assert _pooled_connections(client) - connections == our_connections, case
            assert ours == theirs, case
            assert our_events == their_events, case
            assert _pooled_sessions(client) == sessions, case
            assert await coll.count_documents({}) == our_count, case
            await coll.delete_many({"_id": {"$ne": "first"}})
            events.take()


async def _awaited_result(awaitable: Any) -> Any:
    return _result(await awaitable)


async def test_a_document_without_an_id_gets_one(fw: Framework, server: Any) -> None:
    coll = fw.client(server.uri)[f"insert_one_id_{fw.name}"].c
    await coll.drop()
    document: dict[str, Any] = {"x": 1}
    result = await coll.insert_one(document)
    assert isinstance(result.inserted_id, ObjectId)
    assert document["_id"] == result.inserted_id
    assert await coll.find_one() == {"_id": result.inserted_id, "x": 1}
    raw = RawBSONDocument(bson.encode({"y": 2}))
    assert (await coll.insert_one(raw)).inserted_id is None
    assert await coll.count_documents({"y": 2}) == 1
    await coll.drop()


async def test_an_unacknowledged_insert_takes_pymongo_s_path(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``w=0``: no session and no retry, PyMongo's own path.  (FerretDB answers the
    unacknowledged message, which leaves the connection out of step: the client is not
    used again.)"""
    name = f"insert_one_unacknowledged_{fw.name}"
    coll = fw.client(server.uri)[name].get_collection("c", write_concern=WriteConcern(w=0))
    await fw.client(server.uri)[name].c.drop()
    express = _ExpressTaken(monkeypatch)
    inner = _Wrapped(monkeypatch, Collection, "_insert_one")
    document: dict[str, Any] = {"x": 1}
    result = await coll.insert_one(document)
    assert (result.acknowledged, express.count, inner.calls) == (False, 0, 1)
    assert result.inserted_id == document["_id"]
    other = fw.client(server.uri)[name].c
    for _ in range(500):
        if await other.count_documents({}):
            break
        await asyncio.sleep(0.01)
    assert await other.find_one() == document
    await other.drop()


@pytest.mark.parametrize(
    "condition",
    [
        "timeoutMS",
        "pymongo.timeout",
        "command logging",
        "server selection logging",
        "bound session",
        "wrapped _retryable_write",
    ],
)
async def test_the_express_path_leaves_what_it_cannot_see_to_pymongo(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, condition: str
) -> None:
    """A timeout, debug logging, a bound session or a wrapper on what the express path
    stands in for: ``insert_one`` takes PyMongo's way, with the same result."""
    options = {"timeoutMS": 60_000} if condition == "timeoutMS" else {}
    client = fw.client(server.uri, **options)
    coll = client[f"insert_one_express_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 0})  # connected
    express = _ExpressTaken(monkeypatch)
    # Another client, with none of those, takes it.
    plain = fw.client(server.uri)[coll.database.name].c
    assert _result(await plain.insert_one({"_id": 1})) == (1, True)
    assert express.count == 1
    wrapped = None
    if condition.startswith("wrapped"):
        wrapped = _Wrapped(monkeypatch, pymongo.MongoClient, "_retryable_write")
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

            async def insert() -> Any:
                with pymongo.timeout(60):
                    return await coll.insert_one({"_id": 2})

            result = await insert()
        elif condition == "bound session":
            async with await client.start_session() as session:
                async with session.bind(end_session=False):
                    result = await coll.insert_one({"_id": 2})
        else:
            result = await coll.insert_one({"_id": 2})
    finally:
        if logger is not None:
            logger.setLevel(previous_level)
    assert _result(result) == (2, True)
    assert express.count == 1
    if wrapped is not None:
        assert wrapped.calls == 1
    assert await coll.count_documents({}) == 3
    await coll.drop()


_WRAPPABLE: list[tuple[str, str, bool]] = [
    # (module or class, attribute, whether the express path calls it)
    ("pymongo.synchronous.collection.Collection", "_insert_one", False),
    ("pymongo.synchronous.mongo_client.MongoClient", "_retry_internal", False),
    ("pymongo.synchronous.mongo_client.MongoClient", "_tmp_session", False),
    ("pymongo.synchronous.mongo_client._ClientConnectionRetryable", "run", False),
    ("pymongo.synchronous.mongo_client._ClientConnectionRetryable", "_write", False),
    ("pymongo.synchronous.client_session.ClientSession", "_apply_to", False),
    ("pymongo.synchronous.pool.Connection", "command", False),
    ("pymongo.synchronous.pool", "run_command", False),
    ("pymongo.synchronous.command_runner", "_run_command", False),
    ("pymongo.helpers_shared", "_check_command_response", True),
    ("pymongo.synchronous.collection", "_check_write_command_response", True),
    ("pymongo.message", "_op_msg", True),
    ("pymongo.synchronous.mongo_client.MongoClient", "_select_server", False),
    ("pymongo.synchronous.topology.Topology", "select_server", False),
    ("pymongo.synchronous.mongo_client.MongoClient", "_checkout", False),
    ("pymongo.synchronous.mongo_client._ClientCheckout", "__exit__", False),
    ("pymongo.synchronous.pool._PoolCheckout", "__enter__", False),
    ("pymongo.synchronous.collection.Collection", "_write_concern_for", True),
]


@pytest.mark.parametrize(
    ("owner", "name", "called"), _WRAPPABLE, ids=[name for _, name, _ in _WRAPPABLE]
)
async def test_a_wrapper_on_what_insert_one_runs_sees_the_call(
    fw: Framework,
    server: Any,
    monkeypatch: pytest.MonkeyPatch,
    owner: str,
    name: str,
    called: bool,
) -> None:
    """A wrapper put (after Motor was imported) on a PyMongo function that ``insert_one``
    runs sees the call: the express path looks up what it calls when it calls it, as
    PyMongo does, and is not taken when what it stands in for is wrapped."""
    coll = fw.client(server.uri)[f"insert_one_wrapped_{fw.name}"].c
    await coll.drop()
    await coll.insert_one({"_id": 0})
    express = _ExpressTaken(monkeypatch)
    wrapped = _Wrapped(monkeypatch, _resolve(owner), name)
    assert _result(await coll.insert_one({"_id": 1})) == (1, True)
    assert wrapped.calls >= 1
    assert express.count == (1 if called else 0)
    assert await coll.count_documents({}) == 2
    await coll.drop()


@pytest.mark.parametrize("wrapper", ["functools", "proxy"])
async def test_an_instrumentations_wrapper_sees_insert_one(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, wrapper: str
) -> None:
    """APM libraries wrap PyMongo's ``Collection.insert_one``: Motor calls the method in
    place, and a wrapper that calls Motor's own back does not recurse."""
    seen: list[str] = []
    monkeypatch.setattr(
        Collection, "insert_one", instrumented(Collection.insert_one, wrapper, seen)
    )
    express = _ExpressTaken(monkeypatch)
    coll = fw.client(server.uri)[f"insert_one_instrumented_{fw.name}"].c
    await coll.drop()
    assert _result(await coll.insert_one({"_id": 1})) == (1, True)
    with pytest.raises(DuplicateKeyError):
        await coll.insert_one({"_id": 1})
    assert seen == ["insert_one", "insert_one"]
    assert express.count == 0
    monkeypatch.setattr(
        Collection, "insert_one", instrumented(green_insert.insert_one, wrapper, seen)
    )
    assert _result(await coll.insert_one({"_id": 2})) == (2, True)
    assert seen == ["insert_one", "insert_one", "insert_one"]
    assert express.count == 1
    await coll.drop()


async def test_a_session_bound_by_another_client_is_refused_as_pymongo_refuses_it(
    fw: Framework, server: Any
) -> None:
    """PyMongo checks the document and gives it an ``_id`` before it finds the bound
    session of another client, which it refuses."""
    coll = fw.client(server.uri)[f"insert_one_foreign_{fw.name}"].c
    other = fw.client(server.uri)
    async with await other.start_session() as foreign:
        async with foreign.bind(end_session=False):
            for document in ({"x": 1}, [("x", 1)]):
                ours_document = dict(document) if isinstance(document, dict) else document
                ours = await _outcome(_awaited_result(coll.insert_one(ours_document)))
                theirs_document = dict(document) if isinstance(document, dict) else document
                theirs = await _outcome(
                    _awaited_result(
                        motor.run_green(Collection.insert_one, coll.delegate, theirs_document)
                    )
                )
                assert ours == theirs
                assert ours[0] == "raised"
                assert ("_id" in ours_document) == ("_id" in theirs_document)
    assert await coll.count_documents({}) == 0


async def test_a_method_put_on_the_collection_object_sees_the_call(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mock put on the PyMongo collection object itself (not its class) gets
    ``insert_one`` and ``find_one``, as it did when Motor called the method by name."""
    coll = fw.client(server.uri)[f"insert_one_instance_{fw.name}"].c
    await coll.drop()
    express = _ExpressTaken(monkeypatch)
    seen: list[str] = []
    for name in ("insert_one", "find_one"):
        original = getattr(coll.delegate, name)

        def patched(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            seen.append(_name)
            return _original(*args, **kw)

        setattr(coll.delegate, name, patched)
    assert _result(await coll.insert_one({"_id": 1})) == (1, True)
    assert await coll.find_one({"_id": 1}) == {"_id": 1}
    assert (seen, express.count) == (["insert_one", "find_one"], 0)
    await coll.drop()


async def test_load_balanced_and_encrypted_clients_take_pymongo_s_path(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymongo.encryption_options import AutoEncryptionOpts

    express = _ExpressTaken(monkeypatch)
    inner = _Wrapped(monkeypatch, Collection, "_insert_one")
    opts = AutoEncryptionOpts(
        {"local": {"key": b"\x01" * 96}}, "keyvault.datakeys", bypass_auto_encryption=True
    )
    name = f"insert_one_encrypted_{fw.name}"
    coll = fw.client(server.uri, auto_encryption_opts=opts)[name].c
    await coll.drop()
    assert _result(await coll.insert_one({"_id": 1})) == (1, True)
    assert (express.count, inner.calls) == (0, 1)
    # load_balanced=True: the check is on the client's options.
    plain = fw.client(server.uri)
    monkeypatch.setattr(type(plain.delegate.options), "load_balanced", property(lambda s: True))
    assert _result(await plain[name].c.insert_one({"_id": 2})) == (2, True)
    assert (express.count, inner.calls) == (0, 2)
    await coll.drop()


# ------------------------------------------------------------------ MockupDB: the wire


def _inserts(count: int = 1, **collection_options: Any) -> Any:
    """``count`` insert_one calls, with PyMongo's sync client or with Motor's: their
    (inserted_id, acknowledged)."""

    def run(client: Any) -> Any:
        coll = client.db.get_collection("coll", **collection_options)
        if isinstance(client, pymongo.MongoClient):
            return [_result(coll.insert_one({"_id": i, "x": "a"})) for i in range(count)]

        async def motor_inserts() -> list[Any]:
            return [_result(await coll.insert_one({"_id": i, "x": "a"})) for i in range(count)]

        return motor_inserts()

    return run


_MONITORED = pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "express"])
_KINDS = pytest.mark.parametrize("kind", ["replica set member", "standalone", "mongos"])


@_KINDS
@_MONITORED
async def test_the_command_is_pymongo_s(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, kind: str, monitored: bool
) -> None:
    """Two inserts: the same commands (a transaction number, advancing, where the server
    supports retryable writes; the write concern and the server API as declared)."""
    steps = [("insert", ok(n=1)), ("insert", ok(n=1))]
    requests, outcome, names = await _like_sync(
        fw,
        mockup,
        steps,
        monitored,
        monkeypatch,
        _inserts(2, write_concern=WriteConcern(w="majority", wtimeout=500)),
        _member(kind),
        calls=2,
        counter=_ExpressTaken,
        server_api=ServerApi("1"),
    )
    assert outcome == ("returned", [(0, True), (1, True)])
    assert names == ["insert", "insert"]
    assert requests[0]["writeConcern"] == {"w": "majority", "wtimeout": 500}
    assert requests[0]["apiVersion"] == "1"
    assert requests[0]["documents"] == [{"_id": 0, "x": "a"}]
    if kind == "standalone":
        assert "txnNumber" not in requests[0].doc
    else:
        assert [r["txnNumber"] for r in requests] == [1, 2]
    assert requests[0]["lsid"] == requests[1]["lsid"]


_FIRST_ANSWERS = {
    "network error": hang_up,
    "NotWritablePrimary": fail(10107, "not primary"),
    "ReauthenticationRequired": fail(391, "reauthentication required"),
    "BadValue": fail(2, "bad value"),
    "labelled NotWritablePrimary": fail(10107, "not primary", "RetryableWriteError"),
    "duplicate key": ok(n=0, writeErrors=[{"index": 0, "code": 11000, "errmsg": "dup"}]),
    "retryable write concern error": ok(
        n=1,
        writeConcernError={"code": 91, "errmsg": "shutting down"},
        errorLabels=["RetryableWriteError"],
    ),
    "write concern error": ok(n=1, writeConcernError={"code": 64, "errmsg": "timed out"}),
    "Transaction numbers": fail(20, "Transaction numbers are only allowed on a replica set"),
}


@pytest.mark.parametrize("first", list(_FIRST_ANSWERS))
@pytest.mark.parametrize("kind", ["replica set member", "standalone"])
async def test_retries_and_errors_are_pymongo_s(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, first: str, kind: str
) -> None:
    """A first attempt that fails: the same labels, retries (with the same session and
    transaction number) and errors as PyMongo's, and the server session kept or dropped
    as PyMongo keeps or drops it.  (Servers of wire version 9 and later label what may be
    retried; the driver labels network errors.)"""
    retryable_errors = (
        "network error",
        "labelled NotWritablePrimary",
        "retryable write concern error",
    )
    retried = first == "ReauthenticationRequired" or (
        kind != "standalone" and first in retryable_errors
    )
    steps = [("insert", _FIRST_ANSWERS[first])]
    if retried:
        # The retry, then another insert on the same pooled server session.
        steps += [("insert", ok(n=1)), ("insert", ok(n=1))]
    requests, outcome, _ = await _like_sync(
        fw,
        mockup,
        steps,
        False,
        monkeypatch,
        _inserts(2 if retried else 1),
        _member(kind),
        calls=2 if retried else 1,
        counter=_ExpressTaken,
    )
    assert len(requests) == len(steps)
    if retried:
        assert outcome == ("returned", [(0, True), (1, True)])
        assert requests[0]["lsid"] == requests[1]["lsid"]
        # A server session that saw a connection error is not used again.
        dirty = first in ("network error", "labelled NotWritablePrimary")
        assert (requests[1]["lsid"] == requests[2]["lsid"]) == (not dirty)
        numbers = [request.doc.get("txnNumber") for request in requests]
        if kind == "standalone":
            assert numbers == [None] * 3
        else:
            assert numbers == [1, 1, 1 if dirty else 2]
    else:
        assert outcome[0] == "raised"


@_MONITORED
async def test_retry_writes_off_and_a_failed_retry_are_pymongo_s(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    # retryWrites=false: no transaction number, no retry.
    requests, outcome, _ = await _like_sync(
        fw,
        mockup,
        [("insert", hang_up)],
        monitored,
        monkeypatch,
        _inserts(),
        counter=_ExpressTaken,
        retryWrites=False,
    )
    assert outcome[0] == "raised"
    assert "txnNumber" not in requests[0].doc
    # A retry that performed no write: PyMongo raises the first attempt's error.
    steps = [
        ("insert", fail(10107, "not primary", "RetryableWriteError")),
        ("insert", fail(91, "shutting down", "RetryableWriteError", "NoWritesPerformed")),
    ]
    _, outcome, _ = await _like_sync(
        fw, mockup, steps, monitored, monkeypatch, _inserts(), counter=_ExpressTaken
    )
    assert outcome == ("raised", pymongo.errors.NotPrimaryError, None, ("RetryableWriteError",))


def _cluster_time(key_id: int) -> dict[str, Any]:
    return {
        "clusterTime": Timestamp(1_700_000_000, 7),
        "signature": {"hash": b"\x01" * 20, "keyId": key_id},
    }


@pytest.mark.parametrize(
    ("code", "labels"),
    [(10107, ["RetryableWriteError"]), (391, [])],
    ids=["a retry", "a resend after ReauthenticationRequired"],
)
@_MONITORED
async def test_the_cluster_time_of_the_failed_attempt_s_reply_goes_with_the_next(
    fw: Framework,
    mockup: Any,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    labels: list[str],
    monitored: bool,
) -> None:
    """The implicit session has seen the failed attempt's reply: where its ``$clusterTime``
    is as recent as the client's, the retry (or the resend after reauthentication) sends
    the session's (PyMongo prefers it)."""
    steps = [
        ("insert", ok(n=1, **{"$clusterTime": _cluster_time(2)})),
        (
            "insert",
            lambda request: request.command_err(
                code, "failed", errorLabels=labels, **{"$clusterTime": _cluster_time(1)}
            ),
        ),
        ("insert", ok(n=1)),
    ]
    requests, outcome, _ = await _like_sync(
        fw,
        mockup,
        steps,
        monitored,
        monkeypatch,
        _inserts(2),
        _member("mongos"),
        calls=2,
        counter=_ExpressTaken,
    )
    assert outcome == ("returned", [(0, True), (1, True)])
    assert requests[1]["$clusterTime"]["signature"]["keyId"] == 2
    assert requests[2]["$clusterTime"]["signature"]["keyId"] == 1


@_MONITORED
async def test_a_cancelled_insert_closes_its_connection_and_gives_its_session_back(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, monitored: bool
) -> None:
    """An insert cancelled while it waits for its reply: as on PyMongo's way, the
    connection is closed (the reply may still come), the server session goes back to the
    pool clean, and the next insert on it has the next transaction number."""
    requests: list[Any] = []

    def reply_late(request: Any) -> bool:
        requests.append(request)
        if len(requests) == 1:
            time.sleep(1.0)
        return bool(request.ok(n=1))

    server = replica_set_member(mockup)
    server.autoresponds(OpMsg("insert", "coll"), reply_late)
    closed = ClosedConnections()
    listeners: list[Any] = [closed, _Events()] if monitored else [closed]
    client = fw.client(server.uri, event_listeners=listeners)
    await client.db.command("ping")
    express = _ExpressTaken(monkeypatch)
    await cancel_after(fw, client.db.coll.insert_one({"_id": 1}), 0.2)
    assert closed.reasons["error"] == 1, closed.reasons
    assert _pooled_sessions(client) == 1
    assert _result(await client.db.coll.insert_one({"_id": 2})) == (2, True)
    assert requests[0]["lsid"] == requests[1]["lsid"]
    assert [request["txnNumber"] for request in requests] == [1, 2]
    assert express.count == (0 if monitored else 2)
    assert not parked_children()


def test_the_replica_set_member_is_the_default_member() -> None:
    # (The MockupDB tests above that give no member run against a replica set's primary.)
    import inspect

    assert inspect.signature(_like_sync).parameters["member"].default is replica_set_member


def test_pymongo_internals_for_the_express_path() -> None:
    assert green_insert.check_express_internals() == []
    assert green_insert._EXPRESS


def test_internals_check_reports_a_changed_function(monkeypatch: pytest.MonkeyPatch) -> None:
    import pymongo.message

    def _raise_document_too_large(operation: str, doc_size: int, max_size: int) -> None:
        raise ValueError(operation)

    monkeypatch.setattr(pymongo.message, "_raise_document_too_large", _raise_document_too_large)
    assert green_insert.check_express_internals() == [
        "pymongo's _raise_document_too_large changed: insert_one's express path no longer "
        "matches it"
    ]
