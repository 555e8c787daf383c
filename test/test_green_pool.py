"""The green pool's express checkout and checkin (``GreenPool._get_conn`` and ``checkin``).

In the common case (an idle connection that needs no check, nobody waiting, no pool
events) they take and give back a connection without PyMongo's ``Pool._get_conn`` and
``Pool.checkin``; in every other case those run.  Each test makes one of the other cases
and checks that PyMongo's behaviour follows: a stale, idle or dead connection is closed
and not lent, a waiting checkout is woken, events are published, a closed pool keeps no
connection, a wrapper put on PyMongo's method sees every call.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import AutoReconnect
from pymongo.synchronous.pool import Pool

import motor
from motor.green import pool as green_pool
from test.framework import Framework, pool_counters
from test.scripted import cursor_reply, exchange, hang_up, ok, replica_set_member


def _pool(client: Any) -> Any:
    (server,) = client.delegate._topology._servers.values()
    return server.pool


def _idle(pool: Any) -> list[Any]:
    return list(pool.conns)


def _assert_nothing_lent(client: Any) -> None:
    pool = _pool(client)
    assert pool_counters(client) == {
        "requests": 0,
        "active_sockets": 0,
        "pending": 0,
        "operation_count": 0,
    }
    assert not pool.active_contexts
    assert not any(conn.active for conn in pool.conns)


async def _assert_replaced(client: Any, coll: Any, old: Any) -> None:
    """The next operation does not get ``old``, which PyMongo's checkout closes, and
    gives back a new connection."""
    await coll.find_one({})
    assert old.closed
    (new,) = _idle(_pool(client))
    assert new is not old and not new.closed
    _assert_nothing_lent(client)


@pytest.fixture
def slow_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts the calls of PyMongo's own ``Pool._get_conn`` and ``Pool.checkin``.

    The counting functions stand in for PyMongo's own in the express path's check too,
    so that the express path is still taken where it would be."""
    calls = {"_get_conn": 0, "checkin": 0}
    for name, own in (("_get_conn", Pool._get_conn), ("checkin", Pool.checkin)):

        @functools.wraps(own)
        def counting(*args: Any, _own: Any = own, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _own(*args, **kwargs)

        monkeypatch.setattr(Pool, name, counting)
        monkeypatch.setattr(green_pool, f"_pymongo_{name.lstrip('_')}", counting)
    yield calls


async def _warm(fw: Framework, server: Any, **options: Any) -> tuple[Any, Any]:
    client = fw.client(server.uri, **options)
    coll = client.motor_test.green_pool
    await coll.find_one({})
    return client, coll


async def test_an_idle_connection_is_lent_and_given_back_by_the_express_path(
    fw: Framework, server: Any, slow_path: dict[str, int]
) -> None:
    client, coll = await _warm(fw, server, maxPoolSize=5)
    pool = _pool(client)
    (conn,) = _idle(pool)
    slow_path.update(_get_conn=0, checkin=0)
    for _ in range(20):
        await coll.find_one({})
        assert _idle(pool) == [conn]
    assert slow_path == {"_get_conn": 0, "checkin": 0}
    _assert_nothing_lent(client)
    # Twenty at once, on a pool of five: waiters take PyMongo's path, and all are served.
    await asyncio.gather(*(coll.find_one({}) for _ in range(20)))
    assert slow_path["_get_conn"] > 0
    assert 1 <= len(_idle(pool)) <= 5
    _assert_nothing_lent(client)


async def test_a_waiting_checkout_is_woken_by_each_checkin(fw: Framework, server: Any) -> None:
    client, coll = await _warm(fw, server, maxPoolSize=1, waitQueueTimeoutMS=5000)
    docs = await asyncio.gather(*(coll.find_one({}, {"_id": 0}) for _ in range(30)))
    assert len(docs) == 30
    assert len(_idle(_pool(client))) == 1
    _assert_nothing_lent(client)


async def test_a_connection_of_a_stale_generation_is_closed_not_lent(
    fw: Framework, server: Any
) -> None:
    client, coll = await _warm(fw, server)
    pool = _pool(client)
    (old,) = _idle(pool)
    pool.gen.inc(None)  # as a pool clear does, without closing the idle connections
    await _assert_replaced(client, coll, old)

    def stale_while_lent() -> Any:
        with pool.checkout() as conn:
            pool.gen.inc(None)
        return conn

    lent = await motor.run_green(stale_while_lent)
    assert lent.closed and lent not in pool.conns
    _assert_nothing_lent(client)


async def test_a_connection_idle_longer_than_max_idle_time_is_closed_not_lent(
    fw: Framework, server: Any
) -> None:
    client, coll = await _warm(fw, server, maxIdleTimeMS=60000)
    pool = _pool(client)
    # Idle connections are checked after 120 s only: maxIdleTimeMS alone decides here.
    pool._check_interval_seconds = 120
    (old,) = _idle(pool)
    await coll.find_one({})
    assert _idle(pool) == [old]
    old.last_checkin_time -= 61
    await _assert_replaced(client, coll, old)


async def test_a_connection_idle_past_the_check_interval_is_checked_first(
    fw: Framework, server: Any
) -> None:
    client, coll = await _warm(fw, server)
    pool = _pool(client)
    assert pool._check_interval_seconds, "PyMongo checks idle connections after a while"
    (old,) = _idle(pool)
    checks: list[Any] = []

    def conn_closed() -> bool:
        checks.append(old)
        return True  # as if the server had hung up meanwhile

    old.conn_closed = conn_closed
    await coll.find_one({})
    assert checks == [] and _idle(pool) == [old]  # checked in a moment ago: not looked at
    old.last_checkin_time -= pool._check_interval_seconds + 1
    await _assert_replaced(client, coll, old)
    assert checks == [old]


async def test_a_pool_made_by_another_process_is_reset(fw: Framework, server: Any) -> None:
    client, coll = await _warm(fw, server)
    pool = _pool(client)
    (old,) = _idle(pool)
    pool.pid = -1  # as after fork(): the idle connections are the parent's
    await _assert_replaced(client, coll, old)

    def fork_while_lent() -> Any:
        with pool.checkout() as conn:
            pool.pid = -1
        return conn

    lent = await motor.run_green(fork_while_lent)
    # Dropped, and left open for the process that made it, as PyMongo does after fork().
    assert lent not in pool.conns and not lent.closed and pool.pid != -1
    lent.close_conn(None)
    _assert_nothing_lent(client)


async def test_a_connection_given_back_to_a_closed_pool_is_closed(
    fw: Framework, server: Any
) -> None:
    client, _ = await _warm(fw, server)
    pool = _pool(client)

    def close_while_lent() -> tuple[Any, bool]:
        with pool.checkout() as conn:
            pool.close()
            interrupted = conn.cancel_context.cancelled
        return conn, interrupted

    lent, interrupted = await motor.run_green(close_while_lent)
    # Interrupted while lent (its operation, if any, would end at once), then closed
    # when given back, not kept.
    assert interrupted
    assert lent.closed and lent not in pool.conns
    assert pool.requests == 0 and pool.active_sockets == 0 and pool.operation_count == 0


@pytest.mark.parametrize("operation", ["find", "insert"])
async def test_an_error_on_a_lent_connection_is_handled_as_pymongo_handles_it(
    fw: Framework, mockup: Any, operation: str
) -> None:
    server = replica_set_member(mockup)
    client = fw.client(server.uri, retryReads=False, retryWrites=False)
    coll = client.db.coll

    def run() -> Any:
        return coll.find_one({}) if operation == "find" else coll.insert_one({"x": 1})

    reply = cursor_reply([{"_id": 1}]) if operation == "find" else ok(n=1)
    await exchange(server, operation, run(), reply)
    pool = _pool(client)
    generation = pool.gen.get_overall()
    (conn,) = _idle(pool)
    with pytest.raises(AutoReconnect):
        await exchange(server, operation, run(), hang_up)
    # _ClientCheckout.handle: a network error marks the server unknown and clears its
    # pool (the next generation), while the connection is still lent; then it is closed.
    assert pool.gen.get_overall() == generation + 1
    assert conn.closed and not pool.conns
    _assert_nothing_lent(client)


class _PoolEvents(monitoring.ConnectionPoolListener):
    """Records the name of every pool event published."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def _record(self, event: Any) -> None:
        self.names.append(type(event).__name__)

    pool_created = pool_ready = pool_cleared = pool_closed = _record
    connection_created = connection_ready = connection_closed = _record
    connection_check_out_started = connection_check_out_failed = _record
    connection_checked_out = connection_checked_in = _record


async def test_pool_events_are_published_for_every_checkout_and_checkin(
    fw: Framework, server: Any
) -> None:
    events = _PoolEvents()
    client, coll = await _warm(fw, server, event_listeners=[events])
    del events.names[:]
    for _ in range(3):
        await coll.find_one({})
    assert (
        events.names
        == [
            "ConnectionCheckOutStartedEvent",
            "ConnectionCheckedOutEvent",
            "ConnectionCheckedInEvent",
        ]
        * 3
    )
    _assert_nothing_lent(client)


@pytest.mark.parametrize("name", ["_get_conn", "checkin"])
async def test_a_wrapper_on_pymongo_s_method_sees_every_call(
    fw: Framework, server: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, coll = await _warm(fw, server)
    calls: list[Any] = []
    own = getattr(Pool, name)

    @functools.wraps(own)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return own(*args, **kwargs)

    monkeypatch.setattr(Pool, name, wrapper)
    for _ in range(3):
        await coll.find_one({})
    assert calls == [_pool(client)] * 3
    _assert_nothing_lent(client)


def test_pymongo_internals_for_the_pool_s_express_path() -> None:
    assert green_pool.check_pool_express_internals() == []
    assert green_pool._POOL_EXPRESS


def test_the_pool_s_internals_check_reports_a_changed_function(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def _perished(self: Any, conn: Any) -> bool:
        return False

    monkeypatch.setattr(Pool, "_perished", _perished)
    assert green_pool.check_pool_express_internals() == [
        "pymongo's Pool._perished changed: the pool's express path no longer matches it"
    ]
