"""Change streams (``watch()`` on a client, database or collection) through MockupDB.

FerretDB has no ``$changeStream`` (doc/testing.rst), so every exchange here is scripted
on a MockupDB server that answers ``hello`` like a replica-set primary (``setName``,
``hosts``, ``isWritablePrimary``, ``maxWireVersion`` 21, ``logicalSessionTimeoutMinutes``).
The scripts were checked against PyMongo 4.20's sync client first (the behaviour oracle):
which command is sent, on which namespace, with which ``$changeStream`` options, what the
resume token is after each step, when ``killCursors`` goes out and which errors resume.

Standing answers (``ping``, ``endSessions``, by default ``killCursors``) are automatic;
``aggregate`` and ``getMore`` are received one at a time in a worker thread
(:meth:`ReplicaSetMember.receive`) while the Motor call waits on the loop.  Every command
the server gets is recorded in :attr:`ReplicaSetMember.commands`, so a test can assert
what was *not* sent (no ``aggregate`` before the first fetch, no resume after a fatal
error).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest
from bson import Timestamp
from mockupdb import MockupDB, OpMsg, Request
from pymongo.errors import OperationFailure

import motor
from test.framework import Framework, parked_children

SET_NAME = "rs0"
MAX_BUSY = 0.010


def _hello(request: Request) -> bool:
    """Answer ``hello``/``isMaster`` as the primary of a one-member replica set."""
    address = request.server.address_string
    return bool(
        request.reply(
            ismaster=True,
            isWritablePrimary=True,
            secondary=False,
            setName=SET_NAME,
            hosts=[address],
            primary=address,
            me=address,
            minWireVersion=0,
            maxWireVersion=21,
            logicalSessionTimeoutMinutes=30,
            maxBsonObjectSize=16 * 1024 * 1024,
            maxMessageSizeBytes=48_000_000,
            maxWriteBatchSize=100_000,
        )
    )


class ReplicaSetMember:
    """A MockupDB primary of replica set ``rs0`` that records every command it gets."""

    def __init__(self, mockup: Callable[..., MockupDB], auto_kill_cursors: bool = True) -> None:
        self.server = mockup(auto_ismaster=_hello)
        self.auto_kill_cursors = auto_kill_cursors
        # (database, command document) of every command but the handshake, in order.
        self.commands: list[tuple[str, dict[str, Any]]] = []
        self.server.autoresponds(self._standing)

    @property
    def uri(self) -> str:
        return f"{self.server.uri}/?replicaSet={SET_NAME}"

    def _standing(self, request: Request) -> bool:
        # Runs on the MockupDB connection thread for every request, first.
        doc = request.doc
        name = next(iter(doc), "").lower()
        if name in ("ismaster", "hello"):
            return False
        self.commands.append((request.namespace, dict(doc)))
        if name in ("ping", "endsessions") or (name == "killcursors" and self.auto_kill_cursors):
            return bool(request.ok())
        return False

    def sent(self, name: str) -> list[dict[str, Any]]:
        """The command documents named ``name`` received so far."""
        return [doc for _, doc in self.commands if next(iter(doc)) == name]

    def names(self) -> list[str]:
        """The names of the commands received so far, in order."""
        return [next(iter(doc)) for _, doc in self.commands]

    async def receive(self, name: str, value: Any) -> Request:
        """Wait (in a worker thread) for the next scripted request, ``{name: value}``."""
        receives = functools.partial(self.server.receives, OpMsg(name, value), timeout=10)
        return await asyncio.get_running_loop().run_in_executor(None, receives)


def token(name: str) -> dict[str, str]:
    """A resume token (real ones are ``{"_data": "<hex>"}`` too)."""
    return {"_data": name}


def change(name: str) -> dict[str, Any]:
    """A change event whose ``_id`` (its resume token) is ``token(name)``."""
    return {
        "_id": token(name),
        "operationType": "insert",
        "ns": {"db": "db", "coll": "coll"},
        "documentKey": {"_id": name},
        "fullDocument": {"_id": name},
    }


def first_batch(
    cursor_id: int, docs: list[Any], post_batch: str, ns: str = "db.coll"
) -> dict[str, Any]:
    return {
        "cursor": {
            "id": cursor_id,
            "ns": ns,
            "firstBatch": docs,
            "postBatchResumeToken": token(post_batch),
        }
    }


def next_batch(
    cursor_id: int, docs: list[Any], post_batch: str, ns: str = "db.coll"
) -> dict[str, Any]:
    return {
        "cursor": {
            "id": cursor_id,
            "ns": ns,
            "nextBatch": docs,
            "postBatchResumeToken": token(post_batch),
        }
    }


def change_stream_class(fw: Framework) -> type[Any]:
    if fw.name == "asyncio":
        from motor.motor_asyncio import AsyncIOMotorChangeStream

        return AsyncIOMotorChangeStream
    from motor.motor_tornado import MotorChangeStream

    return MotorChangeStream


async def connected_client(fw: Framework, member: ReplicaSetMember) -> Any:
    client = fw.client(member.uri)
    assert (await client.admin.command("ping"))["ok"] == 1
    await fw.probe.settle()
    return client


# What each watch() target sends: (database, aggregate value, $changeStream options,
# cursor namespace in the reply, killCursors value).
TARGETS = {
    "client": (
        "admin",
        1,
        {"allChangesForCluster": True},
        "admin.$cmd.aggregate",
        "$cmd.aggregate",
    ),
    "database": ("db", 1, {}, "db.$cmd.aggregate", "$cmd.aggregate"),
    "collection": ("db", "coll", {}, "db.coll", "coll"),
}


@pytest.mark.parametrize("target", list(TARGETS))
async def test_watch_is_lazy_and_aggregates_on_first_fetch(
    fw: Framework, mockup: Any, target: str
) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    database, aggregate, options, ns, kill_target = TARGETS[target]
    watched = {"client": client, "database": client.db, "collection": client.db.coll}[target]

    stream = watched.watch()
    # Not awaited: watch() hands back the change stream itself, and sends nothing.
    assert isinstance(stream, change_stream_class(fw))
    assert not inspect.isawaitable(stream)
    assert stream.alive
    await client.admin.command("ping")  # a round trip after watch(): still no aggregate
    assert member.sent("aggregate") == []

    fetch = asyncio.ensure_future(stream.try_next())
    request = await member.receive("aggregate", aggregate)
    assert request.namespace == database
    assert request["pipeline"] == [{"$changeStream": options}]
    assert request["cursor"] == {}
    assert "lsid" in request
    request.reply(first_batch(42, [change("a")], "pa", ns=ns))
    assert await fetch == change("a")
    # The last change of a batch: the token is the batch's postBatchResumeToken.
    assert stream.resume_token == token("pa")
    assert stream.alive

    await stream.close()
    assert not stream.alive
    kills = [(db, doc) for db, doc in member.commands if "killCursors" in doc]
    assert len(kills) == 1
    assert kills[0][0] == database
    assert kills[0][1]["killCursors"] == kill_target
    assert kills[0][1]["cursors"] == [42]
    assert len(member.sent("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)


OPTIONS: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"full_document": "updateLookup"}, {"fullDocument": "updateLookup"}),
    (
        {"full_document_before_change": "whenAvailable"},
        {"fullDocumentBeforeChange": "whenAvailable"},
    ),
    ({"resume_after": token("r")}, {"resumeAfter": token("r")}),
    ({"start_after": token("s")}, {"startAfter": token("s")}),
    (
        {"start_at_operation_time": Timestamp(1_700_000_000, 7)},
        {"startAtOperationTime": Timestamp(1_700_000_000, 7)},
    ),
    ({"show_expanded_events": True}, {"showExpandedEvents": True}),
    (
        {"full_document": "required", "resume_after": token("r")},
        {"fullDocument": "required", "resumeAfter": token("r")},
    ),
]


async def test_watch_options_make_the_change_stream_stage(fw: Framework, mockup: Any) -> None:
    # One server and client for all the option sets (a MockupDB server takes a second to
    # stop); each set gets a stream of its own.
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    match = {"$match": {"operationType": {"$in": ["insert", "update"]}}}
    for cursor_id, (kwargs, stage) in enumerate(OPTIONS, start=100):
        stream = client.db.coll.watch([match], **kwargs)
        assert len(member.sent("aggregate")) == cursor_id - 100, kwargs

        fetch = asyncio.ensure_future(stream.next())
        request = await member.receive("aggregate", "coll")
        # $changeStream first, the caller's pipeline appended after it.
        assert request["pipeline"] == [{"$changeStream": stage}, match], kwargs
        assert request["cursor"] == {}
        request.reply(first_batch(cursor_id, [change("a")], "pa"))
        assert await fetch == change("a")
        await stream.close()
        assert member.sent("killCursors")[-1]["cursors"] == [cursor_id]
    assert len(member.sent("killCursors")) == len(OPTIONS)
    fw.probe.assert_below(MAX_BUSY)


async def test_batch_size_max_await_time_and_comment(fw: Framework, mockup: Any) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch(batch_size=5, max_await_time_ms=250, comment="c1")

    fetch = asyncio.ensure_future(stream.try_next())
    request = await member.receive("aggregate", "coll")
    assert request["cursor"] == {"batchSize": 5}
    assert request["comment"] == "c1"
    # maxAwaitTimeMS is for the getMores, never on the aggregate itself.
    assert "maxAwaitTimeMS" not in request and "maxTimeMS" not in request
    request.reply(first_batch(42, [], "p0"))
    # An empty first batch: the same try_next() runs one getMore.
    get_more = await member.receive("getMore", 42)
    assert get_more["collection"] == "coll"
    assert get_more["batchSize"] == 5
    assert get_more["maxTimeMS"] == 250
    assert get_more["comment"] == "c1"
    get_more.reply(next_batch(42, [], "p1"))
    assert await fetch is None
    assert stream.resume_token == token("p1")
    await stream.close()
    fw.probe.assert_below(MAX_BUSY)


async def test_next_try_next_async_for_and_resume_token(fw: Framework, mockup: Any) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).reply(
        first_batch(42, [change("c1"), change("c2")], "p2")
    )
    assert await fetch == change("c1")
    # More changes left in the batch: the token is the change's own _id.
    assert stream.resume_token == token("c1")
    # Served from the batch: no getMore.
    assert await stream.next() == change("c2")
    assert stream.resume_token == token("p2")
    assert member.sent("getMore") == []

    # try_next(): one getMore; an empty batch gives None and the new postBatchResumeToken.
    fetch = asyncio.ensure_future(stream.try_next())
    (await member.receive("getMore", 42)).reply(next_batch(42, [], "p3"))
    assert await fetch is None
    assert stream.resume_token == token("p3")
    assert stream.alive

    async def first_of_async_for() -> Any:
        async for event in stream:
            return event
        raise AssertionError("async for ended")

    fetch = asyncio.ensure_future(first_of_async_for())
    (await member.receive("getMore", 42)).reply(next_batch(42, [change("c3")], "p4"))
    assert await fetch == change("c3")
    assert stream.resume_token == token("p4")

    # next() waits through empty batches until a change comes.
    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("getMore", 42)).reply(next_batch(42, [], "p5"))
    (await member.receive("getMore", 42)).reply(next_batch(42, [change("c4"), change("c5")], "p6"))
    assert await fetch == change("c4")
    assert stream.resume_token == token("c4")
    assert await stream.next() == change("c5")
    assert stream.resume_token == token("p6")
    assert len(member.sent("getMore")) == 4
    assert len(member.sent("aggregate")) == 1
    assert stream.alive

    await stream.close()
    assert not stream.alive
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42]]
    # A closed stream (its last batch consumed; PyMongo would still hand out changes left
    # in the batch): next() stops, try_next() has nothing, async for ends at once.
    with pytest.raises(StopAsyncIteration):
        await stream.next()
    assert await stream.try_next() is None
    assert [event async for event in stream] == []
    assert len(member.sent("getMore")) == 4
    assert len(member.sent("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)


async def test_async_with_aggregates_on_entry_and_closes_on_exit(
    fw: Framework, mockup: Any
) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)

    async def use() -> tuple[Any, Any, Any]:
        async with client.db.coll.watch() as stream:
            # The aggregate ran on entry: its postBatchResumeToken is known already.
            on_entry = stream.resume_token
            event = await stream.next()
        return stream, on_entry, event

    task = asyncio.ensure_future(use())
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [], "p0"))
    (await member.receive("getMore", 42)).reply(next_batch(42, [change("c1")], "p1"))
    stream, on_entry, event = await task
    assert on_entry == token("p0")
    assert event == change("c1")
    assert not stream.alive
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42]]

    # Leaving the block by an exception closes the stream too.
    async def fail_inside() -> Any:
        async with client.db.coll.watch() as stream:
            await stream.next()
            raise KeyError("boom")

    task = asyncio.ensure_future(fail_inside())
    (await member.receive("aggregate", "coll")).reply(first_batch(43, [change("c2")], "p2"))
    with pytest.raises(KeyError):
        await task
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42], [43]]
    fw.probe.assert_below(MAX_BUSY)


async def test_plain_with_raises_runtime_error(fw: Framework, mockup: Any) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()
    with pytest.raises(RuntimeError):
        with stream:
            pass
    await client.admin.command("ping")
    assert member.sent("aggregate") == []
    assert member.sent("killCursors") == []


async def test_resume_after_network_error(fw: Framework, mockup: Any) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch([{"$match": {"operationType": "insert"}}])

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [change("c1")], "p1"))
    assert await fetch == change("c1")
    assert stream.resume_token == token("p1")

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("getMore", 42)).hangup()
    # The driver runs the aggregate again, resuming after the last token it saw.
    request = await member.receive("aggregate", "coll")
    assert request["pipeline"] == [
        {"$changeStream": {"resumeAfter": token("p1")}},
        {"$match": {"operationType": "insert"}},
    ]
    request.reply(first_batch(43, [change("c2")], "p2"))
    assert await fetch == change("c2")
    assert stream.resume_token == token("p2")
    assert stream.alive
    # The connection died with cursor 42: no killCursors for it.
    assert member.sent("killCursors") == []

    await stream.close()
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[43]]
    fw.probe.assert_below(MAX_BUSY)


# PyMongo's rules (change_stream_shared._resumable): a network error (NotPrimaryError,
# from a "node is recovering" code like 91, counts as one) or CursorNotFound (43)
# resumes; any other OperationFailure only with the ResumableChangeStreamError label.
# After an OperationFailure the old cursor is killed before the new aggregate.
RESUMABLE = [
    pytest.param(91, [], False, id="91-ShutdownInProgress"),
    pytest.param(6, ["ResumableChangeStreamError"], True, id="6-HostUnreachable-labelled"),
    pytest.param(43, [], False, id="43-CursorNotFound"),
]


@pytest.mark.parametrize(("code", "labels", "kills_old_cursor"), RESUMABLE)
async def test_resume_after_resumable_server_error(
    fw: Framework, mockup: Any, code: int, labels: list[str], kills_old_cursor: bool
) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [change("c1")], "p1"))
    assert await fetch == change("c1")

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("getMore", 42)).command_err(
        code=code, errmsg="scripted error", errorLabels=labels
    )
    request = await member.receive("aggregate", "coll")
    assert request["pipeline"] == [{"$changeStream": {"resumeAfter": token("p1")}}]
    request.reply(first_batch(43, [change("c2")], "p2"))
    assert await fetch == change("c2")
    assert stream.resume_token == token("p2")
    expected = ["aggregate", "getMore", "killCursors", "aggregate"]
    if not kills_old_cursor:
        expected.remove("killCursors")
    assert [name for name in member.names() if name != "ping"] == expected
    if kills_old_cursor:
        assert member.sent("killCursors")[0]["cursors"] == [42]

    await stream.close()
    assert member.sent("killCursors")[-1]["cursors"] == [43]
    fw.probe.assert_below(MAX_BUSY)


NON_RESUMABLE = [
    pytest.param(6, [], id="6-HostUnreachable-unlabelled"),
    pytest.param(2, [], id="2-BadValue"),
    pytest.param(280, ["NonResumableChangeStreamError"], id="280-ChangeStreamFatalError"),
]


@pytest.mark.parametrize(("code", "labels"), NON_RESUMABLE)
async def test_non_resumable_error_reaches_the_caller(
    fw: Framework, mockup: Any, code: int, labels: list[str]
) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [change("c1")], "p1"))
    assert await fetch == change("c1")

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("getMore", 42)).command_err(
        code=code, errmsg="scripted error", errorLabels=labels
    )
    with pytest.raises(OperationFailure) as info:
        await fetch
    assert type(info.value) is OperationFailure
    assert info.value.code == code
    # A fatal error closes the stream: the cursor is killed, nothing is resumed.
    assert not stream.alive
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42]]
    assert len(member.sent("aggregate")) == 1
    with pytest.raises(StopAsyncIteration):
        await stream.next()
    fw.probe.assert_below(MAX_BUSY)


async def test_aggregate_error_surfaces_on_first_fetch(fw: Framework, mockup: Any) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()  # no error yet: nothing was sent

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).command_err(
        code=40573, errmsg="The $changeStream stage is only supported on replica sets"
    )
    with pytest.raises(OperationFailure) as info:
        await fetch
    assert info.value.code == 40573
    assert len(member.sent("aggregate")) == 1  # not retried: 40573 is not retryable
    fw.probe.assert_below(MAX_BUSY)


async def test_cancelled_next_leaves_no_parked_greenlet(fw: Framework, mockup: Any) -> None:
    # killCursors is scripted here: after the cancellation the driver may send it at
    # once, from stream.close(), or from PyMongo's periodic kill-cursors task.
    member = ReplicaSetMember(mockup, auto_kill_cursors=False)
    client = await connected_client(fw, member)
    stream = client.db.coll.watch()

    fetch = asyncio.ensure_future(stream.next())
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [], "p0"))
    await member.receive("getMore", 42)  # never answered: next() waits in the getMore
    assert not fetch.done()
    fetch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fetch

    closing = asyncio.ensure_future(stream.close())
    kill = await member.receive("killCursors", "coll")
    assert kill["cursors"] == [42]  # the server cursor is not leaked
    kill.ok()
    await closing
    assert not stream.alive
    # A later round trip: the cancelled call's greenlet has finished by now.
    assert (await client.admin.command("ping"))["ok"] == 1
    assert not parked_children()
    # Cancelling is not an error to resume from.
    assert len(member.sent("aggregate")) == 1
    assert len(member.sent("getMore")) == 1
    fw.probe.assert_below(MAX_BUSY)


@pytest.mark.parametrize("owner", ["client", "database", "collection"])
async def test_wrap_of_a_pymongo_change_stream(fw: Framework, mockup: Any, owner: str) -> None:
    member = ReplicaSetMember(mockup)
    client = await connected_client(fw, member)
    coll = client.db.coll
    # PyMongo's watch() runs its aggregate at once: in a child, as an application would.
    opening = motor.run_green(coll.delegate.watch)
    (await member.receive("aggregate", "coll")).reply(first_batch(42, [change("c1")], "p1"))
    pymongo_stream = await opening

    stream = {"client": client, "database": client.db, "collection": coll}[owner].wrap(
        pymongo_stream
    )
    assert type(stream) is change_stream_class(fw)
    assert stream.delegate is pymongo_stream
    assert stream.alive
    assert await stream.next() == change("c1")
    assert stream.resume_token == token("p1")
    fetch = asyncio.ensure_future(stream.try_next())
    (await member.receive("getMore", 42)).reply(next_batch(42, [change("c2")], "p2"))
    assert await fetch == change("c2")

    await stream.close()
    assert not stream.alive
    assert [doc["cursors"] for doc in member.sent("killCursors")] == [[42]]
    with pytest.raises(StopAsyncIteration):
        await stream.next()
    assert len(member.sent("aggregate")) == 1
    fw.probe.assert_below(MAX_BUSY)
