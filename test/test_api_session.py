"""Motor's client sessions against the test server.

FerretDB accepts ``lsid`` on every command but has no transactions; transactions and
``with_transaction`` are tested with MockupDB elsewhere. Here: creating and ending sessions,
``async with``, which session id reaches the server (a PyMongo command listener reads the
``lsid`` of each command), the plain properties and methods, ``bind()``, and misuse, with
PyMongo 4.20's sync behaviour as the oracle and Motor 3.7.1's call style.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import Timestamp
from bson.binary import UUID_SUBTYPE, Binary
from pymongo import monitoring
from pymongo.client_session import ClientSession
from pymongo.client_session_shared import SessionOptions
from pymongo.errors import InvalidOperation

from motor.green import pool as green_pool
from test.framework import Framework

MAX_BUSY = 0.010


class LsidRecorder(monitoring.CommandListener):
    """The name and ``lsid`` (None when absent) of every command started."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, Any, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self.commands.append(
                (event.command_name, event.command.get("lsid"), dict(event.command))
            )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def since(self, mark: int) -> list[tuple[str, Any, dict[str, Any]]]:
        return [c for c in self.commands[mark:] if c[0] != "endSessions"]


@contextlib.asynccontextmanager
async def scratch_db(client: Any) -> AsyncIterator[Any]:
    """A database with a unique name, dropped at the end."""
    name = f"motor_test_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)


def session_class_name(fw: Framework) -> str:
    return "AsyncIOMotorClientSession" if fw.name == "asyncio" else "MotorClientSession"


async def test_start_session_gives_a_motor_session(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    s = await client.start_session()
    assert type(s).__name__ == session_class_name(fw)
    assert isinstance(s.delegate, ClientSession)
    assert s.client is client
    assert not s.has_ended
    assert not s.in_transaction
    session_id = s.session_id
    assert isinstance(session_id["id"], Binary)
    assert session_id["id"].subtype == UUID_SUBTYPE
    assert session_id == s.delegate.session_id
    result = s.end_session()
    assert inspect.isawaitable(result)
    await result
    assert s.has_ended
    # Two sessions have different ids.
    a = await client.start_session()
    b = await client.start_session()
    assert a.session_id != b.session_id
    await a.end_session()
    await b.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_async_with_ends_the_session(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    async with await client.start_session() as s:
        assert type(s).__name__ == session_class_name(fw)
        assert not s.has_ended
        await client.motor_test.sessions.find_one({}, session=s)
    assert s.has_ended

    # Without the await, start_session()'s result works in "async with" too.
    async with client.start_session() as s2:
        assert type(s2).__name__ == session_class_name(fw)
        assert s2.client is client
        assert not s2.has_ended
    assert s2.has_ended

    # An exception inside ends the session as well, and propagates.
    with pytest.raises(ZeroDivisionError):
        async with await client.start_session() as s3:
            1 / 0  # noqa: B018
    assert s3.has_ended
    fw.probe.assert_below(MAX_BUSY)


async def test_plain_with_is_refused(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    s = await client.start_session()
    with pytest.raises(AttributeError):
        with s:
            pass
    # Refusing did not end it.
    assert not s.has_ended
    await s.end_session()


async def test_operations_carry_the_session_id(fw: Framework, server: Any) -> None:
    recorder = LsidRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        coll = db.c
        s = await client.start_session()
        lsid = s.session_id

        mark = len(recorder.commands)
        await coll.insert_one({"_id": 1}, session=s)
        await coll.insert_many([{"_id": i} for i in range(2, 10)], session=s.delegate)
        assert await coll.find_one({"_id": 1}, session=s) == {"_id": 1}
        assert await coll.count_documents({}, session=s.delegate) == 9
        await coll.update_one({"_id": 1}, {"$set": {"a": 1}}, session=s)
        # A cursor's find and getMores.
        cursor = coll.find({}, session=s).sort("_id", 1).batch_size(2)
        assert len(await cursor.to_list()) == 9
        assert len([d async for d in coll.aggregate([], session=s.delegate, batchSize=2)]) == 9
        await db.command("ping", session=s)
        sent = recorder.since(mark)
        names = [name for name, _, _ in sent]
        for name in ("insert", "find", "aggregate", "update", "getMore", "ping"):
            assert name in names
        assert [(name, sent_lsid) for name, sent_lsid, _ in sent] == [
            (name, lsid) for name in names
        ]

        # Without a session PyMongo uses an implicit one: another id.
        mark = len(recorder.commands)
        await coll.find_one({})
        (implicit,) = recorder.since(mark)
        assert implicit[1] is not None
        assert implicit[1] != lsid

        # The cursor reports the session it runs in (Motor's or PyMongo's object).
        cursor = coll.find({}, session=s)
        assert getattr(cursor.session, "delegate", cursor.session) is s.delegate
        await s.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_session_properties_and_plain_methods(fw: Framework, server: Any) -> None:
    recorder = LsidRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    async with scratch_db(client) as db:
        s = await client.start_session()
        assert isinstance(s.options, SessionOptions)
        assert s.options.causal_consistency is True  # PyMongo's default
        await db.c.insert_one({"_id": 1}, session=s)
        # FerretDB sends no $clusterTime/operationTime: both stay None, like PyMongo's.
        assert s.cluster_time == s.delegate.cluster_time
        assert s.operation_time == s.delegate.operation_time

        cluster_time = {
            "clusterTime": Timestamp(1, 1),
            "signature": {"hash": b"\x00" * 20, "keyId": 0},
        }
        result = s.advance_cluster_time(cluster_time)
        assert result is None  # a plain call, not a future
        assert s.cluster_time == cluster_time
        result = s.advance_operation_time(Timestamp(5, 1))
        assert result is None
        assert s.operation_time == Timestamp(5, 1)

        # Causal consistency: the next read waits for the operation time; the cluster time is
        # gossiped.
        mark = len(recorder.commands)
        assert await db.c.find_one({}, session=s) == {"_id": 1}
        ((_, _, find),) = recorder.since(mark)
        assert find["readConcern"] == {"afterClusterTime": Timestamp(5, 1)}
        assert find["$clusterTime"]["clusterTime"] == Timestamp(1, 1)
        await s.end_session()

        # Without causal consistency, no afterClusterTime.
        async with await client.start_session(causal_consistency=False) as s2:
            assert s2.options.causal_consistency is False
            s2.advance_operation_time(Timestamp(5, 1))
            mark = len(recorder.commands)
            assert await db.c.find_one({}, session=s2) == {"_id": 1}
            ((_, lsid, find),) = recorder.since(mark)
            assert lsid == s2.session_id
            assert "readConcern" not in find
    fw.probe.assert_below(MAX_BUSY)


async def test_bind(fw: Framework, server: Any) -> None:
    recorder = LsidRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    other = fw.client(server.uri)
    async with scratch_db(client) as db:
        await db.c.insert_one({"_id": 1})
        s = await client.start_session()
        lsid = s.session_id
        mark = len(recorder.commands)
        with s.bind():
            assert await db.c.find_one() == {"_id": 1}
            await db.c.insert_one({"_id": 2})
        sent = recorder.since(mark)
        assert [name for name, _, _ in sent] == ["find", "insert"]
        assert all(sent_lsid == lsid for _, sent_lsid, _ in sent)
        # PyMongo's bind() ends the session on exit by default.
        assert s.has_ended
        # Outside the block the ended session is not used (it would raise).
        assert await db.c.find_one({"_id": 2}) == {"_id": 2}

        s2 = await client.start_session()
        lsid2 = s2.session_id
        with s2.bind(end_session=False):
            mark = len(recorder.commands)
            assert await db.c.count_documents({}) == 2
            assert [sent_lsid for _, sent_lsid, _ in recorder.since(mark)] == [lsid2]
            # Another client may not run inside the block.
            with pytest.raises(InvalidOperation):
                await other.motor_test.c.find_one()
        assert not s2.has_ended
        await s2.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_ended_session_is_refused(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.sessions
    s = await client.start_session()
    await s.end_session()
    assert s.has_ended
    for session in (s, s.delegate):
        with pytest.raises(InvalidOperation, match="ended session") as info:
            await coll.find_one({}, session=session)
        assert type(info.value) is InvalidOperation
    with pytest.raises(InvalidOperation, match="ended session"):
        await coll.insert_one({}, session=s)
    with pytest.raises(InvalidOperation, match="ended session"):
        s.session_id  # noqa: B018
    # Ending again is harmless.
    await s.end_session()


async def test_session_of_another_client_is_refused(fw: Framework, server: Any) -> None:
    recorder = LsidRecorder()
    client = fw.client(server.uri, event_listeners=[recorder])
    other = fw.client(server.uri)
    s = await other.start_session()
    mark = len(recorder.commands)
    for session in (s, s.delegate):
        with pytest.raises(InvalidOperation, match="MongoClient that started it") as info:
            await client.motor_test.sessions.find_one({}, session=session)
        assert type(info.value) is InvalidOperation
    assert recorder.since(mark) == []
    assert not s.has_ended
    await s.end_session()


def test_pymongo_internals_for_ending_a_bound_session() -> None:
    assert green_pool.check_pymongo_internals() == []


def test_internals_check_reports_io_in_session_ending(monkeypatch: pytest.MonkeyPatch) -> None:
    from pymongo.synchronous.client_session import _Transaction

    def unpin(self: Any) -> None:
        self.conn_mgr.close()
        self.send_something_first()

    monkeypatch.setattr(_Transaction, "unpin", unpin)
    assert green_pool.check_pymongo_internals() == [
        "_Transaction.unpin changed (ending a session may do I/O)"
    ]
