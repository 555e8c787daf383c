"""Sessions and transactions, scripted through a MockupDB replica-set member.

FerretDB has no transactions (see doc/testing.rst), so every exchange here is scripted: the
Motor operation runs as a task on the loop while the test receives each request MockupDB
queued (in a worker thread, with a timeout, so a missing request fails fast instead of
hanging), checks it and answers it.  ``with_transaction`` scenarios are also played against
PyMongo's sync client (the behaviour oracle) with the same replies, and Motor must send the
same commands and end the same way.  The load-balanced and exhaust tests check that
operations bound to a pinned connection still run while other operations wait for that
connection (a deadlock fails within ``DEADLOCK_TIMEOUT``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pymongo
import pymongo.client_session_shared
import pytest
from bson import ObjectId
from mockupdb import OP_MSG_FLAGS, MockupDB, OpMsg, OpMsgReply
from pymongo import CursorType
from pymongo.errors import (
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

from motor.green import hub as hub_module
from test.framework import Framework
from test.scripted import (
    MAX_BUSY,
    OP_TIMEOUT,
    TRANSIENT,
    UNKNOWN_COMMIT,
    Commands,
    Outcome,
    Reply,
    Step,
    fail,
    let_run,
    ok,
    receive,
    replica_set_member,
    run_script,
    standing_replies,
    summary,
    sync_script,
)

DEADLOCK_TIMEOUT = 5.0

# The fields of a request that say how it belongs to a transaction.
TXN_FIELDS = ("startTransaction", "txnNumber", "autocommit", "writeConcern", "$db")


# --------------------------------------------------------------------------- MockupDB


def load_balancer(mockup: Callable[..., MockupDB]) -> MockupDB:
    """A MockupDB server that answers hello like a mongos behind a load balancer."""
    server = mockup(auto_ismaster=None)
    hello = {
        "ismaster": True,
        "isWritablePrimary": True,
        "msg": "isdbgrid",
        "serviceId": ObjectId(),
        "minWireVersion": 0,
        "maxWireVersion": 21,
        "logicalSessionTimeoutMinutes": 30,
    }
    server.autoresponds(standing_replies(hello))
    return server


def write_concern_timeout(errmsg: str = "waiting for replication timed out") -> Reply:
    error = {"code": 64, "codeName": "WriteConcernFailed", "errmsg": errmsg}
    return lambda request: request.ok(writeConcernError={**error, "errInfo": {"wtimeout": True}})


def find_reply(request: Any) -> object:
    """Answer a find_one with the document whose _id it asked for."""
    doc = {"_id": request["filter"]["_id"]}
    return request.ok(cursor={"id": 0, "ns": "db.coll", "firstBatch": [doc]})


# --------------------------------------------------------------------------- scripting


def trace(requests: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(r.command_name, {k: r[k] for k in TXN_FIELDS if k in r}) for r in requests]


def start(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    return asyncio.ensure_future(awaitable)


def cancel_all(futures: list[asyncio.Future[Any]]) -> None:
    for future in futures:
        if not future.done():
            future.cancel()


# --------------------------------------------------------------------------- sessions


async def test_transaction_context_commits_on_exit(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    session = await client.start_session()
    assert session.client is client
    assert not session.in_transaction
    await fw.probe.settle()
    seen: list[bool] = []

    async def transaction() -> None:
        async with session.start_transaction():
            seen.append(session.in_transaction)
            await coll.insert_one({"_id": 1}, session=session)

    op = start(transaction())
    insert = await receive(server, "insert", op)
    assert insert["lsid"] == session.session_id
    assert insert["txnNumber"] == 1
    assert insert["startTransaction"] is True
    assert insert["autocommit"] is False
    assert insert["$db"] == "db"
    assert insert["documents"] == [{"_id": 1}]
    insert.ok(n=1)
    commit = await receive(server, "commitTransaction", op)
    assert commit["commitTransaction"] == 1
    assert commit["$db"] == "admin"
    assert commit["lsid"] == session.session_id
    assert commit["txnNumber"] == 1
    assert commit["autocommit"] is False
    assert "startTransaction" not in commit
    commit.ok()
    assert await asyncio.wait_for(op, OP_TIMEOUT) is None
    assert seen == [True]
    assert not session.in_transaction
    assert not session.has_ended
    await session.end_session()
    assert session.has_ended
    fw.probe.assert_below(MAX_BUSY)


async def test_transaction_context_aborts_on_exception(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    session = await client.start_session()
    await fw.probe.settle()

    class Boom(Exception):
        pass

    boom = Boom("raised inside the transaction")

    async def transaction() -> None:
        async with session.start_transaction():
            await coll.insert_one({"_id": 1}, session=session)
            raise boom

    op = start(transaction())
    insert = await receive(server, "insert", op)
    assert insert["startTransaction"] is True
    insert.ok(n=1)
    abort = await receive(server, "abortTransaction", op)
    assert abort["$db"] == "admin"
    assert abort["lsid"] == session.session_id
    assert abort["txnNumber"] == 1
    assert abort["autocommit"] is False
    abort.ok()
    with pytest.raises(Boom) as info:
        await asyncio.wait_for(op, OP_TIMEOUT)
    assert info.value is boom
    assert not session.in_transaction
    await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_explicit_commit_and_abort(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    session = await client.start_session()
    await fw.probe.settle()

    session.start_transaction()  # a plain call: the transaction starts with it
    assert session.in_transaction
    op = start(coll.insert_one({"_id": 1}, session=session))
    insert = await receive(server, "insert", op)
    assert (insert["txnNumber"], insert["startTransaction"]) == (1, True)
    insert.ok(n=1)
    assert (await asyncio.wait_for(op, OP_TIMEOUT)).inserted_id == 1
    assert session.in_transaction
    op = start(session.commit_transaction())
    commit = await receive(server, "commitTransaction", op)
    assert (commit["txnNumber"], commit["autocommit"], commit["$db"]) == (1, False, "admin")
    commit.ok()
    assert await asyncio.wait_for(op, OP_TIMEOUT) is None
    assert not session.in_transaction

    session.start_transaction()
    op = start(coll.insert_one({"_id": 2}, session=session))
    insert = await receive(server, "insert", op)
    assert (insert["txnNumber"], insert["startTransaction"]) == (2, True)
    insert.ok(n=1)
    await asyncio.wait_for(op, OP_TIMEOUT)
    op = start(session.abort_transaction())
    abort = await receive(server, "abortTransaction", op)
    assert (abort["txnNumber"], abort["autocommit"], abort["$db"]) == (2, False, "admin")
    assert abort["lsid"] == session.session_id
    abort.ok()
    assert await asyncio.wait_for(op, OP_TIMEOUT) is None
    assert not session.in_transaction
    await session.end_session()
    assert session.has_ended
    fw.probe.assert_below(MAX_BUSY)


async def test_session_context_managers(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll

    async with await client.start_session() as session:
        assert session.client is client
        assert not session.has_ended
        op = start(coll.insert_one({"_id": 1}, session=session))
        insert = await receive(server, "insert", op)
        assert insert["lsid"] == session.session_id
        assert "startTransaction" not in insert  # a retryable write, not a transaction
        insert.ok(n=1)
        await asyncio.wait_for(op, OP_TIMEOUT)
    assert session.has_ended

    async with client.start_session() as other:  # Motor 3.7.1 also allows this form
        assert not other.has_ended
    assert other.has_ended

    plain = await client.start_session()
    with pytest.raises(AttributeError):
        with plain:
            pass
    assert not plain.has_ended
    await plain.end_session()
    assert plain.has_ended
    fw.probe.assert_below(MAX_BUSY)


async def test_bound_session_ends_on_exit(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Outside a transaction, ending only returns the server session to the pool: it
    # has ended when the block exits, as PyMongo's has.  In a transaction, ending
    # aborts it (I/O): the abort runs in a child that the exit does not wait for.
    # Without a work budget no child starts at once, so an ending done by a child
    # would not be over at the exit.
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    await fw.probe.settle()

    session = await client.start_session()
    with session.bind():
        op = start(coll.insert_one({"_id": 1}))  # the task inherits the binding
        insert = await receive(server, "insert", op)
        assert insert["lsid"] == session.session_id
        insert.ok(n=1)
        await asyncio.wait_for(op, OP_TIMEOUT)
    assert session.has_ended

    session = await client.start_session()
    session.start_transaction()
    with session.bind():
        op = start(coll.insert_one({"_id": 2}))
        insert = await receive(server, "insert", op)
        assert (insert["lsid"], insert["startTransaction"]) == (session.session_id, True)
        insert.ok(n=1)
        await asyncio.wait_for(op, OP_TIMEOUT)
    assert not session.has_ended  # its abort waits for a reply
    abort = await receive(server, "abortTransaction")
    # The first session's server session was pooled on exit: this one reuses it.
    assert (abort["lsid"], abort["txnNumber"]) == (session.session_id, insert["txnNumber"])
    assert insert["txnNumber"] == 2
    abort.ok()

    async def ended() -> None:
        while not session.has_ended:
            await asyncio.sleep(0.001)

    await asyncio.wait_for(ended(), OP_TIMEOUT)
    assert not session.in_transaction
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- with_transaction


async def with_transaction_like_sync(
    fw: Framework,
    mockup: Any,
    steps: list[Step],
    callback: Callable[[Any, Any], Awaitable[Any]],
    sync_callback: Callable[[Any, Any], Any],
) -> tuple[list[Any], Outcome, list[Any], Any]:
    """Run ``session.with_transaction`` with Motor and with sync PyMongo against servers
    answering ``steps``; both must send the same commands and end the same way.

    Returns Motor's requests, its outcome, the sessions the callback got, and the session.
    """
    server = replica_set_member(mockup)
    client = fw.client(server.uri)
    coll = client.db.coll
    session = await client.start_session()
    calls: list[Any] = []

    async def counted(s: Any) -> Any:
        calls.append(s)
        return await callback(s, coll)

    await fw.probe.settle()
    requests, outcome = await run_script(server, steps, session.with_transaction(counted))
    fw.probe.assert_below(MAX_BUSY)
    assert all(r["lsid"] == session.session_id for r in requests)
    assert all(s is session for s in calls), calls

    def sync_fn(sync_client: pymongo.MongoClient[Any]) -> Any:
        with sync_client.start_session() as s:
            return s.with_transaction(lambda s: sync_callback(s, sync_client.db.coll))

    oracle = replica_set_member(mockup)
    loop = asyncio.get_running_loop()
    sync_requests, sync_outcome = await loop.run_in_executor(
        None, sync_script, oracle, steps, sync_fn
    )
    assert trace(requests) == trace(sync_requests)
    assert summary(outcome) == summary(sync_outcome)
    await session.end_session()
    return requests, outcome, calls, session


async def insert_then_return(session: Any, coll: Any) -> str:
    await coll.insert_one({"x": 1}, session=session)
    return "callback's value"


def sync_insert_then_return(session: Any, coll: Any) -> str:
    coll.insert_one({"x": 1}, session=session)
    return "callback's value"


async def test_with_transaction_success(fw: Framework, mockup: Any) -> None:
    steps = [("insert", ok(n=1)), ("commitTransaction", ok())]
    requests, outcome, calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, insert_then_return, sync_insert_then_return
    )
    assert outcome == ("callback's value", None)
    assert len(calls) == 1
    assert trace(requests) == [
        ("insert", {"startTransaction": True, "txnNumber": 1, "autocommit": False, "$db": "db"}),
        ("commitTransaction", {"txnNumber": 1, "autocommit": False, "$db": "admin"}),
    ]


async def test_with_transaction_retries_transient_callback_error(
    fw: Framework, mockup: Any
) -> None:
    steps = [
        ("insert", fail(251, "NoSuchTransaction", TRANSIENT)),
        ("abortTransaction", ok()),
        ("insert", ok(n=1)),
        ("commitTransaction", ok()),
    ]
    requests, outcome, calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, insert_then_return, sync_insert_then_return
    )
    assert outcome == ("callback's value", None)
    assert len(calls) == 2
    assert [r["txnNumber"] for r in requests] == [1, 1, 2, 2]
    assert requests[2]["startTransaction"] is True  # a new transaction


async def test_with_transaction_retries_unknown_commit_result(fw: Framework, mockup: Any) -> None:
    steps = [
        ("insert", ok(n=1)),
        ("commitTransaction", fail(91, "ShutdownInProgress")),
        ("commitTransaction", write_concern_timeout()),
        ("commitTransaction", ok()),
    ]
    requests, outcome, calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, insert_then_return, sync_insert_then_return
    )
    assert outcome == ("callback's value", None)
    assert len(calls) == 1  # only the commit was retried
    commits = requests[1:]
    assert [r["txnNumber"] for r in commits] == [1, 1, 1]
    assert "writeConcern" not in commits[0]
    for retry in commits[1:]:
        assert retry["writeConcern"] == {"w": "majority", "wtimeout": 10000}


async def test_with_transaction_retries_transient_commit_error(fw: Framework, mockup: Any) -> None:
    steps = [
        ("insert", ok(n=1)),
        ("commitTransaction", fail(251, "NoSuchTransaction", TRANSIENT)),
        ("insert", ok(n=1)),
        ("commitTransaction", ok()),
    ]
    requests, outcome, calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, insert_then_return, sync_insert_then_return
    )
    assert outcome == ("callback's value", None)
    assert len(calls) == 2
    assert [r["txnNumber"] for r in requests] == [1, 1, 2, 2]
    assert requests[2]["startTransaction"] is True


async def test_with_transaction_max_time_expired_commit_not_retried(
    fw: Framework, mockup: Any
) -> None:
    steps = [("insert", ok(n=1)), ("commitTransaction", fail(50, "operation exceeded time limit"))]
    _, (_, error), calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, insert_then_return, sync_insert_then_return
    )
    # The operation ended right after the one commit: no retry was sent.
    assert isinstance(error, ExecutionTimeout), error
    assert error.code == 50
    assert error.has_error_label(UNKNOWN_COMMIT)
    assert len(calls) == 1


async def test_with_transaction_non_transient_error_aborts_and_reraises(
    fw: Framework, mockup: Any
) -> None:
    raised: list[BaseException] = []

    async def callback(session: Any, coll: Any) -> None:
        try:
            await coll.insert_one({"_id": 1}, session=session)
        except PyMongoError as exc:
            raised.append(exc)
            raise

    def sync_callback(session: Any, coll: Any) -> None:
        coll.insert_one({"_id": 1}, session=session)

    steps = [("insert", fail(11000, "E11000 duplicate key error")), ("abortTransaction", ok())]
    _, (_, error), calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, callback, sync_callback
    )
    assert isinstance(error, DuplicateKeyError)
    assert error is raised[0]  # re-raised unchanged
    assert len(calls) == 1


async def test_with_transaction_callback_exception_aborts_and_reraises(
    fw: Framework, mockup: Any
) -> None:
    boom = ValueError("not a PyMongo error")

    async def callback(session: Any, coll: Any) -> None:
        await coll.insert_one({"_id": 1}, session=session)
        raise boom

    def sync_callback(session: Any, coll: Any) -> None:
        coll.insert_one({"_id": 1}, session=session)
        raise ValueError("not a PyMongo error")

    steps = [("insert", ok(n=1)), ("abortTransaction", ok())]
    _, (_, error), calls, session = await with_transaction_like_sync(
        fw, mockup, steps, callback, sync_callback
    )
    assert error is boom
    assert len(calls) == 1
    assert not session.in_transaction


@pytest.mark.parametrize("ending", ["commit_transaction", "abort_transaction"])
async def test_with_transaction_callback_ends_transaction_itself(
    fw: Framework, mockup: Any, ending: str
) -> None:
    async def callback(session: Any, coll: Any) -> str:
        await coll.insert_one({"x": 1}, session=session)
        await getattr(session, ending)()
        return "ended by the callback"

    def sync_callback(session: Any, coll: Any) -> str:
        coll.insert_one({"x": 1}, session=session)
        getattr(session, ending)()
        return "ended by the callback"

    command = "commitTransaction" if ending == "commit_transaction" else "abortTransaction"
    steps = [("insert", ok(n=1)), (command, ok())]
    # No second commit: the operation must end right after the callback's own command.
    _, outcome, calls, _ = await with_transaction_like_sync(
        fw, mockup, steps, callback, sync_callback
    )
    assert outcome == ("ended by the callback", None)
    assert len(calls) == 1


async def test_with_transaction_time_limit_reraises_last_callback_error(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transient errors are retried while within the time limit; past it, the last one
    is re-raised as it is (Motor 3.7.1; PyMongo 4.20 would raise a converted timeout)."""
    shared = pymongo.client_session_shared
    monkeypatch.setattr(shared, "_WITH_TRANSACTION_RETRY_TIME_LIMIT", 120)
    server = replica_set_member(mockup)
    attempts: list[int] = []

    def insert_fails(request: Any) -> bool:
        attempts.append(request["txnNumber"])
        return bool(request.command_err(251, f"attempt {len(attempts)}", errorLabels=[TRANSIENT]))

    server.autoresponds(OpMsg("insert", "coll"), insert_fails)
    server.autoresponds(OpMsg("abortTransaction", 1))
    client = fw.client(server.uri)
    coll = client.db.coll
    session = await client.start_session()
    errors: list[OperationFailure] = []

    async def callback(s: Any) -> None:
        if len(errors) == 3:
            raise AssertionError("with_transaction retried after the time limit")
        try:
            await coll.insert_one({"x": 1}, session=s)
        except OperationFailure as exc:
            errors.append(exc)
            if len(errors) == 3:
                # The limit runs out now: _within_time_limit() reads it on every check.
                monkeypatch.setattr(shared, "_WITH_TRANSACTION_RETRY_TIME_LIMIT", 0)
            raise

    await fw.probe.settle()
    with pytest.raises(PyMongoError) as info:
        await asyncio.wait_for(session.with_transaction(callback), 3 * OP_TIMEOUT)
    fw.probe.assert_below(MAX_BUSY)
    assert len(errors) == 3
    assert info.value is errors[-1], info.value
    # info.value is errors[-1], an OperationFailure, which mypy deems never a NetworkTimeout.
    assert not isinstance(info.value, NetworkTimeout)  # type: ignore[unreachable]
    assert info.value.has_error_label(TRANSIENT)
    assert "attempt 3" in str(info.value)
    assert attempts == [1, 2, 3]  # a new transaction each time
    assert not session.in_transaction
    await session.end_session()


async def test_with_transaction_time_limit_reraises_last_commit_error(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = pymongo.client_session_shared
    monkeypatch.setattr(shared, "_WITH_TRANSACTION_RETRY_TIME_LIMIT", 120)
    server = replica_set_member(mockup)
    commits: list[Any] = []

    def commit_times_out(request: Any) -> bool:
        commits.append(request)
        if len(commits) == 2:
            # The limit runs out before this reply arrives (undone by monkeypatch).
            shared._WITH_TRANSACTION_RETRY_TIME_LIMIT = 0
        if len(commits) > 2:
            return bool(request.command_err(8000, "commit retried after the time limit"))
        return bool(write_concern_timeout(f"commit {len(commits)} timed out")(request))

    server.autoresponds(OpMsg("insert", "coll"), ok(n=1))
    server.autoresponds(OpMsg("commitTransaction", 1), commit_times_out)
    client = fw.client(server.uri)
    session = await client.start_session()
    calls: list[Any] = []

    async def callback(s: Any) -> str:
        calls.append(s)
        return await insert_then_return(s, client.db.coll)

    await fw.probe.settle()
    with pytest.raises(PyMongoError) as info:
        await asyncio.wait_for(session.with_transaction(callback), 3 * OP_TIMEOUT)
    fw.probe.assert_below(MAX_BUSY)
    assert isinstance(info.value, WTimeoutError), info.value
    assert "commit 2 timed out" in str(info.value)  # the last error, unconverted
    assert info.value.has_error_label(UNKNOWN_COMMIT)
    assert len(commits) == 2
    assert len(calls) == 1
    await session.end_session()


async def test_with_transaction_backoff_lets_the_loop_run(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PyMongo 4.20 waits a jittered, growing backoff before each transaction retry;
    Motor's wait is an asyncio sleep, so the loop ticks all along."""
    monkeypatch.setattr(random, "random", lambda: 1.0)  # the longest backoff each time
    server = replica_set_member(mockup)
    commands = Commands()
    client = fw.client(server.uri, event_listeners=[commands])
    session = await client.start_session()
    retries = 10
    ticks_at_call: list[int] = []

    async def callback(s: Any) -> str:
        ticks_at_call.append(fw.probe.ticks)
        if len(ticks_at_call) <= retries:
            raise OperationFailure(
                "transient",
                251,
                {"ok": 0, "code": 251, "errmsg": "transient", "errorLabels": [TRANSIENT]},
            )
        return "done"

    await fw.probe.settle()
    ticks = fw.probe.ticks
    result = await asyncio.wait_for(session.with_transaction(callback), 3 * OP_TIMEOUT)
    assert result == "done"
    assert len(ticks_at_call) == retries + 1
    # Nothing was sent: the aborts and the final commit had no operation to end.
    assert commands.names == []
    # About 0.85 s of backoff (5 ms * 1.5**n for n = 1..10): hundreds of 1 ms ticks when
    # the waits are asyncio sleeps (fewer on a loaded machine), a handful if they blocked.
    assert fw.probe.ticks - ticks >= 50, (fw.probe.ticks - ticks, ticks_at_call)
    fw.probe.assert_below(MAX_BUSY)
    await session.end_session()


# --------------------------------------------------------------------------- pinning


@pytest.mark.parametrize("ending", ["commit", "abort"])
async def test_load_balanced_transaction_pins_the_only_connection(
    fw: Framework, mockup: Any, ending: str
) -> None:
    """The second insert, the commit (or abort) and the session's end must all get
    through while operations started meanwhile wait for the transaction's connection."""
    server = load_balancer(mockup)
    client = fw.client(f"{server.uri}/?loadBalanced=true&maxPoolSize=1")
    coll = client.db.coll
    session = await client.start_session()
    first_done = asyncio.Event()
    carry_on = asyncio.Event()

    class Abort(Exception):
        pass

    async def transaction() -> None:
        async with session.start_transaction():
            await coll.insert_one({"_id": 1}, session=session)
            first_done.set()
            await carry_on.wait()
            await coll.insert_one({"_id": 2}, session=session)
            if ending == "abort":
                raise Abort

    await fw.probe.settle()
    txn = start(transaction())
    finds: list[asyncio.Future[Any]] = []
    blocked = "find_one calls waited for the transaction's pinned connection"
    try:
        first = await receive(server, "insert", txn)
        assert (first["startTransaction"], first["txnNumber"]) == (True, 1)
        first.ok(n=1)
        await asyncio.wait_for(first_done.wait(), DEADLOCK_TIMEOUT)
        # The connection is pinned to the transaction: these wait for it.
        finds = [start(coll.find_one({"_id": i})) for i in range(5)]
        await let_run()
        carry_on.set()
        second = await receive(
            server,
            "insert",
            txn,
            timeout=DEADLOCK_TIMEOUT,
            waiting_for=f"deadlock: the transaction's second insert was not sent while {blocked}",
        )
        assert second["txnNumber"] == 1 and "startTransaction" not in second
        assert second["documents"] == [{"_id": 2}]
        second.ok(n=1)
        command = "commitTransaction" if ending == "commit" else "abortTransaction"
        finish = await receive(
            server,
            command,
            txn,
            timeout=DEADLOCK_TIMEOUT,
            waiting_for=f"deadlock: {command} was not sent while {blocked}",
        )
        assert finish["txnNumber"] == 1
        finish.ok()
        if ending == "commit":
            assert await asyncio.wait_for(txn, DEADLOCK_TIMEOUT) is None
        else:
            with pytest.raises(Abort):
                await asyncio.wait_for(txn, DEADLOCK_TIMEOUT)
        assert not session.in_transaction
        # PyMongo unpins an aborted transaction's connection at once, a committed one's
        # when the session ends (so that a commit can be retried on it).
        try:
            await asyncio.wait_for(session.end_session(), DEADLOCK_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"deadlock: end_session() did not end while {blocked}") from None
        assert session.has_ended
        waiting = asyncio.ensure_future(asyncio.gather(*finds))
        for _ in finds:
            find_reply(await receive(server, "find", waiting, timeout=DEADLOCK_TIMEOUT))
        assert await asyncio.wait_for(waiting, DEADLOCK_TIMEOUT) == [{"_id": i} for i in range(5)]
    finally:
        cancel_all([txn, *finds])
    fw.probe.assert_below(MAX_BUSY)


async def test_load_balanced_cursor_pins_the_only_connection(fw: Framework, mockup: Any) -> None:
    server = load_balancer(mockup)
    client = fw.client(f"{server.uri}/?loadBalanced=true&maxPoolSize=1")
    coll = client.db.coll
    cursor = coll.find({}, batch_size=2)
    await fw.probe.settle()
    fetch = start(cursor.next())
    finds: list[asyncio.Future[Any]] = []
    rest: asyncio.Future[Any] | None = None
    try:
        find = await receive(server, "find", fetch)
        assert find["batchSize"] == 2
        find.ok(cursor={"id": 5, "ns": "db.coll", "firstBatch": [{"_id": 0}, {"_id": 1}]})
        assert await asyncio.wait_for(fetch, OP_TIMEOUT) == {"_id": 0}
        # The open cursor holds the only connection: these wait for it.
        finds = [start(coll.find_one({"_id": i})) for i in range(5)]
        await let_run()
        rest = start(cursor.to_list())
        get_more = await receive(
            server,
            "getMore",
            rest,
            timeout=DEADLOCK_TIMEOUT,
            waiting_for="deadlock: the cursor's getMore was not sent while find_one calls "
            "waited for its pinned connection",
        )
        assert get_more["getMore"] == 5 and get_more["collection"] == "coll"
        get_more.ok(cursor={"id": 0, "ns": "db.coll", "nextBatch": [{"_id": 2}]})
        assert await asyncio.wait_for(rest, DEADLOCK_TIMEOUT) == [{"_id": 1}, {"_id": 2}]
        waiting = asyncio.ensure_future(asyncio.gather(*finds))
        for _ in finds:
            find_reply(await receive(server, "find", waiting, timeout=DEADLOCK_TIMEOUT))
        assert await asyncio.wait_for(waiting, DEADLOCK_TIMEOUT) == [{"_id": i} for i in range(5)]
    finally:
        cancel_all([fetch, *finds, *([rest] if rest is not None else [])])
    fw.probe.assert_below(MAX_BUSY)


async def test_exhaust_cursor_holding_the_only_connection(fw: Framework, mockup: Any) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri, maxPoolSize=1)
    coll = client.db.coll
    cursor = coll.find(cursor_type=CursorType.EXHAUST, batch_size=2)
    await fw.probe.settle()
    fetch = start(cursor.next())
    finds: list[asyncio.Future[Any]] = []
    rest: asyncio.Future[Any] | None = None
    try:
        find = await receive(server, "find", fetch)
        find.ok(cursor={"id": 77, "ns": "db.coll", "firstBatch": [{"_id": 0}, {"_id": 1}]})
        assert await asyncio.wait_for(fetch, OP_TIMEOUT) == {"_id": 0}
        # The exhaust cursor keeps its connection checked out: these wait for it.
        finds = [start(coll.find_one({"_id": i})) for i in (10, 11)]
        await let_run()
        rest = start(cursor.to_list())
        get_more = await receive(
            server,
            "getMore",
            rest,
            timeout=DEADLOCK_TIMEOUT,
            waiting_for="deadlock: the exhaust cursor's getMore was not sent while two "
            "find_one calls waited for its connection",
        )
        assert get_more.flags & OP_MSG_FLAGS["exhaustAllowed"]
        assert get_more["getMore"] == 77
        # The server streams the rest: more to come, then the last batch.
        get_more.reply(
            OpMsgReply(
                cursor={"id": 77, "ns": "db.coll", "nextBatch": [{"_id": 2}, {"_id": 3}]},
                flags=OP_MSG_FLAGS["moreToCome"],
            )
        )
        get_more.reply(OpMsgReply(cursor={"id": 0, "ns": "db.coll", "nextBatch": [{"_id": 4}]}))
        docs = await asyncio.wait_for(rest, DEADLOCK_TIMEOUT)
        assert docs == [{"_id": i} for i in range(1, 5)]
        waiting = asyncio.ensure_future(asyncio.gather(*finds))
        for _ in finds:
            find_reply(await receive(server, "find", waiting, timeout=DEADLOCK_TIMEOUT))
        assert await asyncio.wait_for(waiting, DEADLOCK_TIMEOUT) == [{"_id": 10}, {"_id": 11}]
    finally:
        cancel_all([fetch, *finds, *([rest] if rest is not None else [])])
    fw.probe.assert_below(MAX_BUSY)
