"""API that FerretDB cannot exercise, scripted through a MockupDB replica-set member.

Retryable writes, the client-level ``bulkWrite`` command (MongoDB 8.0, maxWireVersion 25),
search indexes, database-level aggregation, ``cursor_command`` and the client's topology
properties.  The Motor operation runs as a task on the loop while the test receives each
request MockupDB queued (in a worker thread, with a timeout, so a missing request fails fast
instead of hanging), checks it and answers it.  Where an outcome depends on PyMongo's rules
(retries, exception classes) the same replies are also played to PyMongo's sync client, the
behaviour oracle, and Motor must end the same way.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pymongo
import pytest
from mockupdb import MockupDB
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    InvalidOperation,
    NotPrimaryError,
    PyMongoError,
)
from pymongo.operations import DeleteOne, InsertOne, SearchIndexModel, UpdateOne
from pymongo.results import ClientBulkWriteResult

import motor.errors
from test.framework import Framework
from test.scripted import (
    MAX_BUSY,
    OP_TIMEOUT,
    Commands,
    Outcome,
    Reply,
    Step,
    cursor_reply,
    exchange,
    fail,
    hang_up,
    in_thread,
    let_run,
    next_tick,
    ok,
    receive,
    replica_set_member,
    run_script,
    standing_replies,
    summary,
    sync_script,
)

RETRYABLE = "RetryableWriteError"


PREFIX = {"asyncio": "AsyncIOMotor", "tornado": "Motor"}


# --------------------------------------------------------------------------- MockupDB


def mongos(mockup: Callable[..., MockupDB], hello_gate: threading.Event | None = None) -> MockupDB:
    """A MockupDB server that answers hello like a mongos."""
    server = mockup(auto_ismaster=None)
    hello = {
        "ismaster": True,
        "isWritablePrimary": True,
        "msg": "isdbgrid",
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "logicalSessionTimeoutMinutes": 30,
    }
    server.autoresponds(standing_replies(hello, hello_gate))
    return server


# --------------------------------------------------------------------------- scripting


# --------------------------------------------------------------------------- retryable writes


async def insert_like_sync(
    fw: Framework, mockup: Any, steps: list[Step], **client_options: Any
) -> tuple[list[Any], Outcome]:
    """``insert_one({"_id": 1})`` with Motor and with sync PyMongo against servers answering
    ``steps``: both must send the same requests and end the same way."""
    server = replica_set_member(mockup)
    client = fw.client(server.uri, **client_options)
    coll = client.db.coll

    async def insert() -> Any:
        return (await coll.insert_one({"_id": 1})).inserted_id

    await fw.probe.settle()
    requests, outcome = await run_script(server, steps, insert())
    fw.probe.assert_below(MAX_BUSY)
    oracle = replica_set_member(mockup)
    sync_requests, sync_outcome = await in_thread(
        sync_script,
        oracle,
        steps,
        lambda c: c.db.coll.insert_one({"_id": 1}).inserted_id,
        **client_options,
    )
    assert summary(outcome) == summary(sync_outcome)
    assert [("txnNumber" in r, r["documents"]) for r in requests] == [
        ("txnNumber" in r, r["documents"]) for r in sync_requests
    ]
    return requests, outcome


@pytest.mark.parametrize("failure", ["ShutdownInProgress", "network error", "reauthentication"])
async def test_retryable_write_retried_once(fw: Framework, mockup: Any, failure: str) -> None:
    first = {
        "ShutdownInProgress": fail(91, "ShutdownInProgress", RETRYABLE),
        "network error": hang_up,
        # ReauthenticationRequired: the connection authenticates again and sends it again.
        "reauthentication": fail(391, "ReauthenticationRequired"),
    }[failure]
    steps = [("insert", first), ("insert", ok(n=1))]
    requests, outcome = await insert_like_sync(fw, mockup, steps)
    assert outcome == (1, None)
    attempt, retry = requests
    assert attempt["txnNumber"] == retry["txnNumber"] == 1  # the same write, retried
    assert attempt["lsid"] == retry["lsid"]
    assert attempt["documents"] == retry["documents"] == [{"_id": 1}]


@pytest.mark.parametrize("operation", ["find_one", "insert_one"])
async def test_reauthentication_required_authenticates_the_connection_again(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    # Error 391: the connection that got it is authenticated again (reauthenticate=True,
    # outside the operation's id) and the command is sent once more.
    from pymongo._op_id import OP_ID
    from pymongo.synchronous.pool import Connection

    reauthenticated: list[tuple[Any, Any]] = []
    authenticate = Connection.authenticate

    def spy(self: Any, reauthenticate: bool = False) -> None:
        if reauthenticate:
            reauthenticated.append((self, OP_ID.get()))
        authenticate(self, reauthenticate)

    monkeypatch.setattr(Connection, "authenticate", spy)
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    if operation == "find_one":
        name, answer, op = "find", cursor_reply([{"_id": 1}]), coll.find_one({"_id": 1})
    else:
        name, answer, op = "insert", ok(n=1), coll.insert_one({"_id": 1})
    await fw.probe.settle()
    requests, (result, error) = await run_script(
        server, [(name, fail(391, "ReauthenticationRequired")), (name, answer)], op
    )
    fw.probe.assert_below(MAX_BUSY)
    assert error is None and result is not None
    assert requests[0].doc == requests[1].doc
    pool = next(iter(client.delegate._topology._servers.values())).pool
    assert [(conn, op_id) for conn, op_id in reauthenticated] == [(pool.conns[0], None)]
    assert len(pool.conns) == 1


@pytest.mark.parametrize("reply", ["command error", "write error"])
async def test_non_retryable_error_raised(fw: Framework, mockup: Any, reply: str) -> None:
    if reply == "command error":
        duplicate = fail(11000, "E11000 duplicate key error")
    else:
        write_error = {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key error"}
        duplicate = ok(n=0, writeErrors=[write_error])
    # One exchange: a retry would find no reply, and the operation would not end.
    _, (_, error) = await insert_like_sync(fw, mockup, [("insert", duplicate)])
    assert isinstance(error, DuplicateKeyError)
    assert error.code == 11000


@pytest.mark.parametrize("failure", ["ShutdownInProgress", "network error"])
async def test_retry_writes_false_raises_at_once(fw: Framework, mockup: Any, failure: str) -> None:
    first = fail(91, "ShutdownInProgress", RETRYABLE) if failure != "network error" else hang_up
    requests, (_, error) = await insert_like_sync(
        fw, mockup, [("insert", first)], retryWrites=False
    )
    assert "txnNumber" not in requests[0]
    expected = NotPrimaryError if failure != "network error" else AutoReconnect
    assert type(error) is expected, error


# --------------------------------------------------------------------------- client bulkWrite

MODELS = [
    InsertOne(namespace="db.coll", document={"_id": 1}),
    UpdateOne(namespace="db.coll", filter={"_id": 1}, update={"$set": {"x": 1}}),
    DeleteOne(namespace="db.other", filter={"_id": 2}),
]


def bulk_write_reply(verbose: bool) -> Reply:
    results = [
        {"ok": 1, "idx": 0, "n": 1},
        {"ok": 1, "idx": 1, "n": 1, "nModified": 1},
        {"ok": 1, "idx": 2, "n": 1},
    ]
    return ok(
        nErrors=0,
        nInserted=1,
        nMatched=1,
        nModified=1,
        nUpserted=0,
        nDeleted=1,
        cursor={"id": 0, "ns": "admin.$cmd.bulkWrite", "firstBatch": results if verbose else []},
    )


@pytest.mark.parametrize("verbose", [False, True])
async def test_client_bulk_write(fw: Framework, mockup: Any, verbose: bool) -> None:
    server = replica_set_member(mockup, max_wire_version=25)
    client = fw.client(server.uri)
    await fw.probe.settle()
    steps = [("bulkWrite", bulk_write_reply(verbose))]
    requests, (result, error) = await run_script(
        server, steps, client.bulk_write(MODELS, verbose_results=verbose)
    )
    assert error is None, error
    fw.probe.assert_below(MAX_BUSY)
    (request,) = requests
    assert request["bulkWrite"] == 1
    assert request["$db"] == "admin"
    assert request["errorsOnly"] is (not verbose)
    assert request["ordered"] is True
    assert request["txnNumber"] == 1  # a retryable write
    assert request["ops"] == [
        {"insert": 0, "document": {"_id": 1}},
        {"update": 0, "filter": {"_id": 1}, "updateMods": {"$set": {"x": 1}}, "multi": False},
        {"delete": 1, "filter": {"_id": 2}, "multi": False},
    ]
    assert request["nsInfo"] == [{"ns": "db.coll"}, {"ns": "db.other"}]
    assert isinstance(result, ClientBulkWriteResult)
    assert result.acknowledged
    assert (result.inserted_count, result.matched_count, result.modified_count) == (1, 1, 1)
    assert (result.deleted_count, result.upserted_count) == (1, 0)
    assert result.has_verbose_results is verbose

    oracle = replica_set_member(mockup, max_wire_version=25)
    _, (sync_result, _) = await in_thread(
        sync_script, oracle, steps, lambda c: c.bulk_write(MODELS, verbose_results=verbose)
    )
    # The per-operation results have no __eq__: compare their representations.
    assert repr(result.bulk_api_result) == repr(sync_result.bulk_api_result)
    if verbose:
        assert result.insert_results[0].inserted_id == 1
        assert result.update_results[1].modified_count == 1
        assert result.delete_results[2].deleted_count == 1


async def test_client_bulk_write_needs_server_8(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup, max_wire_version=21)
    commands = Commands()
    client = fw.client(server.uri, event_listeners=[commands])
    await fw.probe.settle()
    with pytest.raises(PyMongoError) as info:
        await asyncio.wait_for(client.bulk_write(MODELS), OP_TIMEOUT)
    fw.probe.assert_below(MAX_BUSY)
    assert type(info.value) is InvalidOperation, info.value
    assert "8.0" in str(info.value)
    assert commands.names == []

    oracle = replica_set_member(mockup, max_wire_version=21)
    _, (_, sync_error) = await in_thread(sync_script, oracle, [], lambda c: c.bulk_write(MODELS))
    assert type(sync_error) is type(info.value)
    assert str(sync_error) == str(info.value)


# --------------------------------------------------------------------------- search indexes


async def test_search_index_commands(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    await fw.probe.settle()

    model = {"definition": {"mappings": {"dynamic": True}}, "name": "idx1"}
    created = ok(indexesCreated=[{"id": "1", "name": "idx1"}])
    request, name = await exchange(
        server, "createSearchIndexes", coll.create_search_index(model), created
    )
    assert request["createSearchIndexes"] == "coll" and request["$db"] == "db"
    assert request["indexes"] == [{"name": "idx1", "definition": {"mappings": {"dynamic": True}}}]
    assert name == "idx1"

    models = [
        SearchIndexModel({"mappings": {"dynamic": True}}, name="a"),
        SearchIndexModel({"mappings": {"dynamic": False}}, name="b", type="search"),
    ]
    created = ok(indexesCreated=[{"id": "2", "name": "a"}, {"id": "3", "name": "b"}])
    request, names = await exchange(
        server, "createSearchIndexes", coll.create_search_indexes(models), created
    )
    assert request["indexes"] == [
        {"name": "a", "definition": {"mappings": {"dynamic": True}}},
        {"name": "b", "definition": {"mappings": {"dynamic": False}}, "type": "search"},
    ]
    assert names == ["a", "b"]

    request, result = await exchange(server, "dropSearchIndex", coll.drop_search_index("a"), ok())
    assert (request["dropSearchIndex"], request["name"], request["$db"]) == ("coll", "a", "db")
    assert result is None

    definition = {"mappings": {"dynamic": True}}
    request, result = await exchange(
        server, "updateSearchIndex", coll.update_search_index("b", definition), ok()
    )
    assert (request["updateSearchIndex"], request["name"]) == ("coll", "b")
    assert request["definition"] == definition
    assert result is None
    fw.probe.assert_below(MAX_BUSY)


async def test_list_search_indexes_is_latent(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    commands = Commands()
    client = fw.client(server.uri, event_listeners=[commands])
    coll = client.db.coll
    await client.admin.command("ping")  # connected: an eager command would be sent at once
    await fw.probe.settle()

    cursor = coll.list_search_indexes()
    assert type(cursor).__name__ == f"{PREFIX[fw.name]}LatentCommandCursor"
    await let_run()
    assert commands.names == ["ping"]
    index = {"id": "3", "name": "b", "status": "READY"}
    request, docs = await exchange(server, "aggregate", cursor.to_list(), cursor_reply([index]))
    assert request["aggregate"] == "coll" and request["$db"] == "db"
    assert request["pipeline"] == [{"$listSearchIndexes": {}}]
    assert docs == [index]

    cursor = coll.list_search_indexes("b", batchSize=1)
    await let_run()
    assert commands.names == ["ping", "aggregate"]

    async def iterate() -> list[Any]:
        return [doc async for doc in cursor]

    op = asyncio.ensure_future(iterate())
    request = await receive(server, "aggregate", op)
    assert request["pipeline"] == [{"$listSearchIndexes": {"name": "b"}}]
    assert request["cursor"] == {"batchSize": 1}
    cursor_reply([index], cursor_id=9)(request)
    get_more = await receive(server, "getMore", op)
    assert (get_more["getMore"], get_more["collection"]) == (9, "coll")
    get_more.ok(cursor={"id": 0, "ns": "db.coll", "nextBatch": [{**index, "name": "c"}]})
    assert await asyncio.wait_for(op, OP_TIMEOUT) == [index, {**index, "name": "c"}]
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- aggregate, cursors


async def test_database_aggregate_is_latent(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    commands = Commands()
    client = fw.client(server.uri, event_listeners=[commands])
    await client.admin.command("ping")
    await fw.probe.settle()

    pipeline = [{"$documents": [{"x": 1}, {"x": 2}]}]
    cursor = client.db.aggregate(pipeline)
    assert type(cursor).__name__ == f"{PREFIX[fw.name]}LatentCommandCursor"
    await let_run()
    assert commands.names == ["ping"]
    reply = cursor_reply([{"x": 1}, {"x": 2}], ns="db.$cmd.aggregate")
    request, docs = await exchange(server, "aggregate", cursor.to_list(), reply)
    assert request["aggregate"] == 1 and request["$db"] == "db"
    assert request["pipeline"] == pipeline
    assert docs == [{"x": 1}, {"x": 2}]

    cursor = client.admin.aggregate([{"$currentOp": {}}])
    await let_run()
    assert commands.names == ["ping", "aggregate"]
    reply = cursor_reply([{"opid": 7}], ns="admin.$cmd.aggregate")
    request, docs = await exchange(server, "aggregate", cursor.to_list(), reply)
    assert request["aggregate"] == 1 and request["$db"] == "admin"
    assert request["pipeline"] == [{"$currentOp": {}}]
    assert docs == [{"opid": 7}]
    fw.probe.assert_below(MAX_BUSY)


async def test_cursor_command(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    db = client.db
    await fw.probe.settle()

    reply = cursor_reply([{"_id": 1}], cursor_id=42)
    request, cursor = await exchange(
        server, "find", db.cursor_command("find", "coll", batchSize=1), reply
    )
    assert (request["find"], request["batchSize"], request["$db"]) == ("coll", 1, "db")
    assert type(cursor).__name__ == f"{PREFIX[fw.name]}CommandCursor"
    assert cursor.cursor_id == 42
    nxt = ok(cursor={"id": 0, "ns": "db.coll", "nextBatch": [{"_id": 2}]})
    request, docs = await exchange(server, "getMore", cursor.to_list(), nxt)
    assert (request["getMore"], request["collection"], request["$db"]) == (42, "coll", "db")
    assert docs == [{"_id": 1}, {"_id": 2}]
    assert not cursor.alive
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- topology properties

# Answering these needs server selection: on a running loop, before the client knows its
# server, Motor refuses (PyMongo's sync client would block until the server is found).
SELECTING = ("address", "is_primary", "is_mongos")
# These read the topology as known now: PyMongo's sync client answers them at once even on
# a fresh client (primary None, no secondaries or arbiters), so Motor must as well.
NON_SELECTING = ("primary", "secondaries", "arbiters")
PROPERTIES = SELECTING + NON_SELECTING


def sync_properties(uri: str, connect: bool) -> dict[str, Any]:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri, connect=False)
    try:
        if connect:
            client.admin.command("ping")
            return {name: getattr(client, name) for name in PROPERTIES}
        return {name: getattr(client, name) for name in NON_SELECTING}
    finally:
        client.close()


@pytest.fixture(params=["replica set", "mongos"])
def deployment(request: pytest.FixtureRequest, mockup: Any) -> Callable[..., MockupDB]:
    """Makes servers of one kind: ``deployment(hello_gate=None)``."""
    make = replica_set_member if request.param == "replica set" else mongos
    return lambda hello_gate=None: make(mockup, hello_gate=hello_gate)


async def test_topology_properties_on_a_fresh_client(fw: Framework, deployment: Any) -> None:
    # Hello answers wait for the gate: nothing can be learnt about the server meanwhile
    # (without it, a loaded machine may let a monitor finish discovery first).
    gate = threading.Event()
    server = deployment(hello_gate=gate)
    try:
        clients = {name: fw.client(server.uri) for name in PROPERTIES}
        await fw.probe.settle()
        for name in SELECTING:
            with pytest.raises(motor.errors.WouldBlockError) as info:
                getattr(clients[name], name)
            assert isinstance(info.value, InvalidOperation)
        fresh = {name: getattr(clients[name], name) for name in NON_SELECTING}
        await next_tick(fw)
        fw.probe.assert_below(MAX_BUSY)
        assert fresh == await in_thread(sync_properties, server.uri, connect=False)
        assert fresh == {"primary": None, "secondaries": set(), "arbiters": set()}
    finally:
        gate.set()


@pytest.mark.parametrize("connect", ["aconnect", "operation"])
async def test_topology_properties_once_connected(
    fw: Framework, deployment: Any, connect: str
) -> None:
    server = deployment()
    client = fw.client(server.uri)
    if connect == "aconnect":
        await client.aconnect()
    else:
        await client.admin.command("ping")
    await fw.probe.settle()
    answers = {name: getattr(client, name) for name in PROPERTIES}
    await next_tick(fw)
    fw.probe.assert_below(MAX_BUSY)
    assert answers == await in_thread(sync_properties, server.uri, connect=True)
    assert answers["address"] == (server.host, server.port)
