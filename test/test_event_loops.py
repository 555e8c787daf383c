"""A client follows the application from one event loop to the next.

Test suites run a loop per test, scripts call ``asyncio.run`` more than once, and a
session-wide fixture runs on a loop of its own: one client serves them all.  It moves
to the loop of the calling thread once its loop is closed, or, on the thread that ran
that loop, while it is not running; PyMongo's pools carry over.  It never moves away
from an open loop to another thread, nor from the open loop ``io_loop=`` named.

Each test body runs under asyncio and under Tornado.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.message import _CursorAddress

import motor
import motor.green.pool
from motor.errors import WrongLoopError, WrongThreadError
from motor.green.hub import get_hub
from motor.motor_asyncio import AsyncIOMotorClient
from test.framework import Loops, close_client, parked_children, pool_counters, run_python
from test.wire import WireServer

FRAMEWORKS = ["asyncio", "tornado"]


class PoolEvents(monitoring.ConnectionPoolListener):
    """Connections created and closed, in order."""

    def __init__(self) -> None:
        self.created = 0
        self.closed = 0

    def connection_created(self, event: monitoring.ConnectionCreatedEvent) -> None:
        self.created += 1

    def connection_closed(self, event: monitoring.ConnectionClosedEvent) -> None:
        self.closed += 1

    def __getattr__(self, name: str) -> Any:
        # The other events of the listener's interface.
        if name.startswith(("pool_", "connection_")):
            return lambda event: None
        raise AttributeError(name)


def watched_by(client: Any) -> set[Any]:
    """The hubs whose loops watch the pooled connections' sockets (None: not watched)."""
    hubs = set()
    for server in client.delegate._topology._servers.values():
        for connection in server.pool.conns:
            hubs.add(connection.conn.conn._reader_hub)
    return hubs


def pings_on_a_new_loop(loops: Loops, client: Any) -> list[Any]:
    """The ``ok`` of ten concurrent pings on a new loop (which a client that lost its
    admission turns would never run: they time out)."""
    loop = loops.new()

    async def pings() -> list[Any]:
        return await asyncio.wait_for(
            asyncio.gather(*[client.admin.command("ping") for _ in range(10)]), 20
        )

    try:
        return [reply["ok"] for reply in loops.run(loop, pings)]
    finally:
        loops.close(loop)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_follows_the_application_to_its_next_loop(server: Any, framework: str) -> None:
    loops = Loops(framework)
    events = PoolEvents()
    # One connection: the first loop opens it, the later ones must reuse it.
    client = loops.client(server.uri, maxPoolSize=1, event_listeners=[events])
    coll = client.motor_test.event_loops
    created_by_first_loop = 0
    try:
        for turn in range(3):
            loop = loops.new()

            async def work(turn: int = turn, loop: Any = loop) -> None:
                # Before any operation: the loop the next operation will run on.
                assert client.io_loop is loop
                if turn == 0:
                    await coll.delete_many({})
                await coll.insert_one({"turn": turn})
                found = await coll.find({}, {"_id": 0}).sort("turn", 1).to_list()
                assert found == [{"turn": t} for t in range(turn + 1)]
                counts = await asyncio.gather(*[coll.count_documents({}) for _ in range(10)])
                assert counts == [turn + 1] * 10
                # This loop watches the sockets of the pooled connections now.
                assert watched_by(client) <= {None, get_hub(loops.asyncio_loop(loop))}

            loops.run(loop, work)
            if turn == 0:
                created_by_first_loop = events.created
            loops.close(loop)
        # The pool carried over: no connection was closed or opened after the first loop.
        assert created_by_first_loop == 1
        assert (events.created, events.closed) == (1, 0)
    finally:
        close_client(loops, client)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_alternates_between_open_loops_of_one_thread(server: Any, framework: str) -> None:
    # A session-wide fixture on a loop of its own, and a loop per test.
    loops = Loops(framework)
    session_loop, test_loop = loops.new(), loops.new()
    client = loops.client(server.uri)
    coll = client.motor_test.event_loops_alternate
    try:

        async def start() -> Any:
            await coll.delete_many({})
            await coll.insert_many([{"n": n} for n in range(5)])
            cursor = coll.find({}, {"_id": 0}).sort("n", 1).batch_size(2)
            assert await cursor.next() == {"n": 0}
            return cursor

        cursor = loops.run(session_loop, start)
        assert client.io_loop is session_loop

        async def finish() -> list[Any]:
            # The cursor's getMore runs on this loop, which now watches the sockets.
            rest: list[Any] = await cursor.to_list()
            assert client.io_loop is test_loop
            assert watched_by(client) <= {None, get_hub(loops.asyncio_loop(test_loop))}
            return rest

        assert loops.run(test_loop, finish) == [{"n": n} for n in range(1, 5)]

        async def count() -> int:
            return await coll.count_documents({})  # type: ignore[no-any-return]

        assert loops.run(session_loop, count) == 5
        assert client.io_loop is session_loop
        assert watched_by(client) <= {None, get_hub(loops.asyncio_loop(session_loop))}

        close_client(loops, client, session_loop)
    finally:
        loops.close(session_loop)
        loops.close(test_loop)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_io_loop_pins_a_client_while_that_loop_is_open(server: Any, framework: str) -> None:
    loops = Loops(framework)
    pinned, other = loops.new(), loops.new()
    client = loops.client(server.uri, io_loop=pinned)

    async def ping() -> Any:
        return await client.admin.command("ping")

    try:
        assert loops.run(pinned, ping)["ok"] == 1
        with pytest.raises(WrongLoopError, match="bound to"):
            loops.run(other, ping)
        loops.close(pinned)
        # Its loop is gone: the client follows.
        assert loops.run(other, ping)["ok"] == 1
        assert client.io_loop is other

        close_client(loops, client, other)
    finally:
        if not loops.asyncio_loop(pinned).is_closed():
            loops.close(pinned)
        loops.close(other)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_the_client_cannot_move_to_fails_the_operation_not_the_call(
    server: Any, framework: str
) -> None:
    # Motor 3.7.1 failed such a call at its await ("attached to a different loop"), as a
    # closed client's call fails here: asyncio.gather(..., return_exceptions=True) and
    # the caller's try around the await see it, with the operation's other errors.
    loops = Loops(framework)
    pinned, other = loops.new(), loops.new()
    client = loops.client(server.uri, io_loop=pinned)
    coll = client.motor_test.event_loops_refused

    async def ping() -> Any:
        return await client.admin.command("ping")

    exhausted: list[Any] = []

    async def gathered() -> list[Any]:
        calls = [
            client.admin.command("ping"),
            coll.find_one({}),
            coll.insert_one({}),
            coll.find({}).to_list(),
            coll.aggregate([]).to_list(),
            # Futures known without I/O: a session, and a cursor already exhausted.
            client.start_session(),
            exhausted[0].to_list(),
        ]
        return await asyncio.gather(*calls, return_exceptions=True)

    async def start() -> Any:
        await coll.delete_many({})
        cursor = coll.find({})
        assert await cursor.to_list() == []
        exhausted.append(cursor)
        return await ping()

    try:
        assert loops.run(pinned, start)["ok"] == 1
        results = loops.run(other, gathered)
        assert [type(result) for result in results] == [WrongLoopError] * 7, results
        assert all("bound to" in str(result) for result in results)
        loops.close(pinned)
        # Its loop is gone: the client follows, and nothing was run on the refused loop.
        assert loops.run(other, ping)["ok"] == 1

        async def count() -> int:
            return await coll.count_documents({})  # type: ignore[no-any-return]

        assert loops.run(other, count) == 0
        close_client(loops, client, other)
    finally:
        if not loops.asyncio_loop(pinned).is_closed():
            loops.close(pinned)
        loops.close(other)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_another_thread_takes_a_client_only_once_its_loop_is_closed(
    server: Any, framework: str
) -> None:
    loops = Loops(framework)
    first = loops.new()
    client = loops.client(server.uri)

    async def ping() -> Any:
        return await client.admin.command("ping")

    def from_thread() -> Any:
        results: list[Any] = []

        def run() -> None:
            loop = loops.new()
            try:
                results.append(loops.run(loop, ping))
            except BaseException as exc:
                results.append(exc)
            finally:
                loops.close(loop)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
        return results[0]

    try:
        assert loops.run(first, ping)["ok"] == 1
        # The first loop is open, not running: its thread could run it again at any
        # time, so another thread may not take the client.
        error = from_thread()
        assert isinstance(error, WrongLoopError), error
        loops.close(first)
        assert from_thread()["ok"] == 1
    finally:
        if not loops.asyncio_loop(first).is_closed():
            loops.close(first)
        close_client(loops, client)


def in_thread(body: Callable[[], Any], foreign: bool = False) -> Any:
    """Run ``body()`` in a new thread; its result, or the exception it raised.

    ``foreign``: a thread that :mod:`threading` did not start (as C code starts them),
    which it knows by a ``_DummyThread`` that the next such thread may get too.
    """
    results: list[Any] = []
    done = threading.Event()

    def run() -> None:
        try:
            results.append(body())
        except BaseException as exc:
            results.append(exc)
        finally:
            done.set()

    if foreign:
        _thread.start_new_thread(run, ())
        assert done.wait(30)
        time.sleep(0.05)  # let the thread exit, so the next one may get its ident
    else:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)
    return results[0]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_calls_before_the_loop_runs_come_from_its_thread(server: Any, framework: str) -> None:
    """Where no loop runs, a call is queued for the client's loop, to start when that
    loop runs, from the thread that ran the loop last, from one whose current loop it
    is, or from any thread before the loop has run; any other thread gets
    WrongThreadError, instead of a call that would start whenever the loop's thread
    runs it again."""
    loops = Loops(framework)
    first = loops.new()
    aloop = loops.asyncio_loop(first)
    client = loops.client(server.uri, io_loop=first)

    async def ping() -> Any:
        return await client.admin.command("ping")

    def queued_ping() -> Any:
        return aloop.run_until_complete(client.admin.command("ping"))

    def handed_over() -> Any:
        asyncio.set_event_loop(aloop)
        try:
            return queued_ping()
        finally:
            asyncio.set_event_loop(None)

    try:
        # Not run yet: a worker thread may queue and run (io_loop= named the loop).
        assert in_thread(queued_ping)["ok"] == 1
        assert loops.run(first, ping)["ok"] == 1  # this thread ran it last
        assert queued_ping()["ok"] == 1
        error = in_thread(lambda: client.admin.command("ping"))
        assert isinstance(error, WrongThreadError), error
        assert "another thread ran it last" in str(error)
        # A thread that makes the loop its current loop may: it is handed over.
        assert in_thread(handed_over)["ok"] == 1
        # Now this thread is the other one.
        with pytest.raises(WrongThreadError, match="another thread ran it last"):
            client.admin.command("ping")
        assert loops.run(first, ping)["ok"] == 1
    finally:
        close_client(loops, client, first)
        loops.close(first)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_served_by_another_thread_keeps_its_client(server: Any, framework: str) -> None:
    """Set up on one thread, then served by ``run_forever()`` in another (and back):
    greenlets never change threads, so the hub makes new children on the new thread."""
    loops = Loops(framework)
    loop = loops.new()
    aloop = loops.asyncio_loop(loop)
    client = loops.client(server.uri)

    async def ping() -> Any:
        return await client.admin.command("ping")

    try:
        for _ in range(3):  # idle children, parked on this thread
            assert loops.run(loop, ping)["ok"] == 1
        thread = threading.Thread(target=aloop.run_forever)
        thread.start()
        try:
            for _ in range(3):
                assert asyncio.run_coroutine_threadsafe(ping(), aloop).result(30)["ok"] == 1
        finally:
            aloop.call_soon_threadsafe(aloop.stop)
            thread.join(30)
        assert loops.run(loop, ping)["ok"] == 1  # back on this thread
    finally:
        close_client(loops, client, loop)
        loops.close(loop)


@dataclass
class Stalling:
    """A client with one connection, to a server that never answers a find."""

    loops: Loops
    wire: WireServer
    client: Any
    loop: Any
    aloop: asyncio.AbstractEventLoop

    async def ping(self) -> Any:
        return await self.client.admin.command("ping")

    async def stalled_find(self) -> Any:
        """Start a find that takes the connection and stalls; its future."""
        future = self.client.db.coll.find_one({})
        await asyncio.get_running_loop().run_in_executor(None, self.wire.stalled.wait, 10)
        return future

    def strand(self, futures: list[Any]) -> list[Any]:
        """Run the loop in another thread, where ``futures`` (operations in flight on
        this one) must fail with WrongThreadError; the replies of three pings started
        there first (on a loop without Motor's hook, uvloop's, the first start there
        tells the hub that the loop changed threads: this thread's idle children are
        dropped so that none tells it earlier)."""
        get_hub(self.aloop)._idle.clear()

        def there() -> Any:
            async def run() -> Any:
                pings = asyncio.gather(self.ping(), self.ping(), self.ping())
                outcomes = await asyncio.gather(
                    *(asyncio.wait_for(future, 20) for future in futures),
                    return_exceptions=True,
                )
                assert [type(outcome) for outcome in outcomes] == [WrongThreadError] * len(
                    futures
                ), outcomes
                return await asyncio.wait_for(pings, 20)

            return self.aloop.run_until_complete(run())

        replies = in_thread(there)
        assert not isinstance(replies, BaseException), replies
        return [reply["ok"] for reply in replies]

    def assert_back_and_even(self) -> None:
        """Back on this thread: the stranded greenlets end, the pool serves, and its
        counters are even."""
        assert self.loops.run(self.loop, self.ping)["ok"] == 1
        assert parked_children() == []
        assert pool_counters(self.client) == dict.fromkeys(pool_counters(self.client), 0)


@contextlib.contextmanager
def stalling(
    framework: str, stall_on: str = "find", stalls: int | None = None, **options: Any
) -> Iterator[Stalling]:
    """A :class:`Stalling` whose server stops reading at ``stall_on`` (on the first
    ``stalls`` connections), its client ``maxPoolSize=1`` unless ``options`` say."""
    loops = Loops(framework)
    wire = WireServer(stall_on=stall_on, stalls=stalls)
    client = loops.client(wire.uri, **{"maxPoolSize": 1, **options})
    loop = loops.new()
    try:
        yield Stalling(loops, wire, client, loop, loops.asyncio_loop(loop))
    finally:
        close_client(loops, client, loop)
        loops.close(loop)
        wire.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_operation_in_flight_when_its_loop_changes_threads_fails(framework: str) -> None:
    """An operation in flight when its loop stops, and then runs in another thread,
    cannot continue there (a greenlet never changes threads): it fails with
    WrongThreadError at the new thread's first iteration, even with no reply or timer
    to come, and gives back its admission turn and its connection (closed), the
    pool's only one: the new thread's operations run.  Back on the first thread, its
    greenlet ends, and the pool's counters stay right."""
    with stalling(framework) as st:
        client, loop = st.client, st.loop
        assert st.loops.run(loop, st.ping)["ok"] == 1  # idle children of this thread
        stalled = st.loops.run(loop, st.stalled_find)
        assert st.wire.stalled.is_set() and not stalled.done()
        assert pool_counters(client)["active_sockets"] == 1
        outcomes: list[BaseException] = []

        def serve() -> Any:
            async def wait() -> Any:
                try:
                    await asyncio.wait_for(stalled, 20)
                except BaseException as exc:
                    outcomes.append(exc)
                assert pool_counters(client)["active_sockets"] == 0
                return await asyncio.wait_for(st.ping(), 20)

            return st.aloop.run_until_complete(wait())

        reply = in_thread(serve)
        assert len(outcomes) == 1 and isinstance(outcomes[0], WrongThreadError), outcomes
        assert "another thread ran its event loop" in str(outcomes[0])
        assert not isinstance(reply, BaseException) and reply["ok"] == 1, reply
        assert client._binding._active == 0
        # Back on this thread: the stranded greenlet ends.
        assert st.loops.run(loop, st.ping)["ok"] == 1
        assert parked_children() == []
        assert pool_counters(client) == dict.fromkeys(pool_counters(client), 0)


@pytest.mark.parametrize("framework", [*FRAMEWORKS, "uvloop"])
def test_operations_stranded_while_connecting_give_back_their_slots(framework: str) -> None:
    """Two operations opening connections (PyMongo's maxConnecting is 2), whose
    handshakes get no reply, and three waiting for them, are stranded when the loop
    moves to another thread: the slots for opening connections go back to the pool,
    and the new thread's operations open connections of their own.  Back on the first
    thread, the stranded greenlets end and the counters stay right."""
    with stalling(framework, stall_on="hello", stalls=2, maxPoolSize=100) as st:

        async def start() -> list[Any]:
            futures = [st.client.admin.command("ping") for _ in range(5)]
            await asyncio.get_running_loop().run_in_executor(None, st.wire.stalled.wait, 10)
            await asyncio.sleep(0.05)
            return futures

        futures = st.loops.run(st.loop, start)
        assert not any(future.done() for future in futures)
        assert pool_counters(st.client)["pending"] == 2
        assert st.strand(futures) == [1, 1, 1]
        st.assert_back_and_even()


@pytest.mark.parametrize("foreign", [False, True], ids=["threading", "foreign"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_moved_from_an_exited_thread_strands_its_operations(
    framework: str, foreign: bool
) -> None:
    """A worker thread starts two operations, one holding the only connection, one
    waiting for it (no reply, no timer to come), and exits; the next worker (often
    given the same thread ident) runs the loop: both fail at once, and give back their
    admission turns."""
    with stalling(framework) as st:

        def first() -> list[Any]:
            async def start() -> list[Any]:
                await st.ping()
                stalled = await st.stalled_find()
                waiting = st.client.db.coll.find_one({})
                await asyncio.sleep(0.05)
                return [stalled, waiting]

            return st.aloop.run_until_complete(start())

        def second(futures: list[Any]) -> list[Any]:
            async def outcomes() -> list[Any]:
                return await asyncio.gather(
                    *(asyncio.wait_for(future, 20) for future in futures),
                    return_exceptions=True,
                )

            return st.aloop.run_until_complete(outcomes())

        futures = in_thread(first, foreign)
        assert not any(future.done() for future in futures)
        results = in_thread(lambda: second(futures), foreign)
        assert [type(result) for result in results] == [WrongThreadError] * 2, results
        assert st.client._binding._active == 0


@pytest.mark.parametrize("framework", [*FRAMEWORKS, "uvloop"])
def test_an_operation_stranded_while_sending_leaves_no_watch_behind(framework: str) -> None:
    """A write stranded while its send waits for the socket to drain (the server reads
    nothing): the loop stops watching that socket before its connection is closed, so
    that the next connection, which often gets the same descriptor number, is watched
    as its own (on asyncio, a watch left behind hid it from the loop; uvloop aborted)."""
    with stalling(framework, stall_on="insert") as st:

        async def start() -> Any:
            await st.ping()
            future = st.client.db.coll.insert_one({"x": b"\0" * (12 * 1024 * 1024)})
            await asyncio.get_running_loop().run_in_executor(None, st.wire.stalled.wait, 10)
            await asyncio.sleep(0.2)  # the send fills the socket's buffers and waits
            return future

        stalled = st.loops.run(st.loop, start)
        assert not stalled.done()
        assert st.strand([stalled]) == [1, 1, 1]
        st.assert_back_and_even()


@pytest.mark.parametrize("framework", [*FRAMEWORKS, "uvloop"])
def test_a_stranded_connection_goes_to_the_new_threads_waiters(framework: str) -> None:
    """Operations of the new thread queued for the pool's only connection, while it is
    held by an operation that was stranded meanwhile, get a connection: the stranded
    one's goes back to the pool (closed) and wakes them.  Back on the first thread,
    the pool still serves."""
    with stalling(framework) as st:
        client = st.client

        async def start() -> Any:
            await st.ping()
            stalled = await st.stalled_find()
            # No idle child of this thread for the other thread's first start to find
            # (which tells the hub of the move on loops without Motor's hook: uvloop).
            get_hub(st.aloop)._idle.clear()
            return stalled

        def other_thread(stalled: Any) -> Any:
            async def wait_there() -> Any:
                waiting = [client.admin.command("ping") for _ in range(2)]
                with pytest.raises(WrongThreadError):
                    await stalled
                return await asyncio.wait_for(asyncio.gather(*waiting), 20)

            return st.aloop.run_until_complete(wait_there())

        stalled = st.loops.run(st.loop, start)
        replies = in_thread(lambda: other_thread(stalled))
        assert not isinstance(replies, BaseException), replies
        assert [reply["ok"] for reply in replies] == [1, 1]
        assert st.loops.run(st.loop, st.ping)["ok"] == 1
        assert pool_counters(client) == dict.fromkeys(pool_counters(client), 0)


@contextlib.contextmanager
def served_by_a_thread(
    loops: Loops,
    loop: Any,
    ping: Callable[[], Any],
    after_stop: Callable[[], Any] | None = None,
) -> Iterator[None]:
    """Run ``loop`` in a thread of its own for the block, its client bound there by
    ``ping()``; then stop it, run ``after_stop()`` on it, and close it."""
    started = threading.Event()
    stop = threading.Event()

    def serve() -> None:
        async def bind_and_serve() -> None:
            await ping()
            started.set()
            while not stop.is_set():
                await asyncio.sleep(0.01)
            if after_stop is not None:
                await after_stop()

        loops.run(loop, bind_and_serve)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert started.wait(30)
        yield
    finally:
        stop.set()
        thread.join(30)
        loops.close(loop)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_running_in_another_thread_keeps_its_client(server: Any, framework: str) -> None:
    loops = Loops(framework)
    running = loops.new()
    client = loops.client(server.uri)

    async def ping() -> Any:
        return await client.admin.command("ping")

    other = loops.new()
    with served_by_a_thread(loops, running, ping):
        with pytest.raises(WrongLoopError, match="open in another thread"):
            loops.run(other, ping)
    try:
        # Its loop is closed: the client follows.
        assert loops.run(other, ping)["ok"] == 1

        close_client(loops, client, other)
    finally:
        loops.close(other)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_close_from_another_thread_s_loop_closes_on_the_client_s(
    server: Any, framework: str
) -> None:
    """``close()`` called on a loop of another thread while the client's loop runs in its
    own closes the client there, as Motor 3.7.1's synchronous ``close()`` did, and its
    awaitable completes on the calling loop."""
    loops = Loops(framework)
    running = loops.new()
    client = loops.client(server.uri)
    after_close: list[BaseException] = []

    async def ping() -> Any:
        return await client.admin.command("ping")

    async def ping_after_close() -> None:
        try:
            await ping()
        except BaseException as exc:
            after_close.append(exc)

    async def close() -> None:
        await asyncio.wait_for(client.close(), 20)

    other = loops.new()
    try:
        with served_by_a_thread(loops, running, ping, ping_after_close):
            loops.run(other, close)
            assert client.delegate._closed
    finally:
        loops.close(other)
    assert [type(exc).__name__ for exc in after_close] == ["ClientClosedError"]


@pytest.mark.usefixtures("short_drain")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_client_stays_on_an_open_loop_with_operations_in_flight(framework: str) -> None:
    # Moving would leave the find parked on the first loop, holding the only
    # connection, until that loop runs again: the second loop's operations would wait
    # for it on this very thread.
    loops = Loops(framework)
    wire = WireServer(stall_on="find")
    client = loops.client(wire.uri, maxPoolSize=1)
    first, second = loops.new(), loops.new()

    async def ping() -> Any:
        return await client.admin.command("ping")

    try:

        async def start() -> Any:
            future = client.db.coll.find_one({})
            await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)
            return future

        future = loops.run(first, start)
        assert wire.stalled.is_set() and not future.done()
        with pytest.raises(WrongLoopError, match="operations in flight"):
            loops.run(second, ping)
        loops.close(first)
        assert future.cancelled()
        assert loops.run(second, ping)["ok"] == 1
    finally:
        if not loops.asyncio_loop(first).is_closed():
            loops.close(first)
        loops.close(second)
        close_client(loops, client)
        wire.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_call_before_the_next_loop_runs_follows_the_application(
    server: Any, framework: str
) -> None:
    # Module-level setup before the loop starts, with the loop of an earlier run
    # closed: the call runs on the thread's current loop when it runs.  (In a thread
    # of its own, whose current loop the test may set.)
    loops = Loops(framework)
    client = loops.client(server.uri)

    async def ping() -> Any:
        return await client.admin.command("ping")

    def body() -> None:
        first = loops.new()
        assert loops.run(first, ping)["ok"] == 1
        loops.close(first)
        second = loops.new()
        asyncio.set_event_loop(loops.asyncio_loop(second))
        try:
            future = client.admin.command("ping")  # no loop runs
            assert future.get_loop() is loops.asyncio_loop(second)
            assert client.io_loop is second

            async def wait() -> Any:
                return await future

            assert loops.run(second, wait)["ok"] == 1

            close_client(loops, client, second)
        finally:
            asyncio.set_event_loop(None)
            loops.close(second)

    errors: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


@pytest.mark.usefixtures("short_drain")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_operations_cut_off_by_a_closing_loop_give_back_their_turns(framework: str) -> None:
    # One connection, so all but two operations wait for their turn in the client's
    # admission queue; the find that got the connection stalls at the server.
    loops = Loops(framework)
    wire = WireServer(stall_on="find")
    client = loops.client(wire.uri, maxPoolSize=1)
    binding = client._binding
    first = loops.new()
    try:

        async def start() -> list[Any]:
            futures = [client.db.coll.find_one({}) for _ in range(20)]
            await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)
            return futures

        futures = loops.run(first, start)
        assert wire.stalled.is_set()
        assert binding._waiting
        loops.close(first)
        # The two admitted (one on the connection, one waiting for it) are cancelled;
        # the queued ones never start.
        assert [future.cancelled() for future in futures[:2]] == [True, True]
        assert parked_children() == []
        assert binding._active == 0 and not binding._waiting
        assert pool_counters(client)["active_sockets"] == 0
        assert pings_on_a_new_loop(loops, client) == [1] * 10
        assert binding._active == 0
    finally:
        if not loops.asyncio_loop(first).is_closed():
            loops.close(first)
        close_client(loops, client)
        wire.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_calls_for_a_loop_that_closed_before_running_give_back_their_turns(
    framework: str,
) -> None:
    loops = Loops(framework)
    wire = WireServer()
    first = loops.new()
    client = loops.client(wire.uri, maxPoolSize=1, io_loop=first)
    binding = client._binding
    try:
        # Calls made before the loop runs: queued on its hub, to start when it runs.
        futures = [client.admin.command("ping") for _ in range(6)]
        assert binding._active > 0
        # Nobody awaits them: closing the loop runs it until they are done, as Motor
        # 3.7.1 ran them in its thread pool (Hub.finish_unawaited).
        loops.close(first)
        assert [future.result()["ok"] for future in futures] == [1] * 6
        assert binding._active == 0 and not binding._waiting
        assert pings_on_a_new_loop(loops, client) == [1] * 10
    finally:
        if not loops.asyncio_loop(first).is_closed():
            loops.close(first)
        close_client(loops, client)
        wire.stop()


@pytest.mark.usefixtures("short_drain")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_close_not_awaited_finishes_when_its_loop_closes(framework: str) -> None:
    # Motor 3.7.1 code calls client.close() without await, often last before the loop
    # closes (asyncio.run(), Tornado's AsyncTestCase).  Here the server never answers
    # the close's endSessions, so the closing is still waiting when the loop closes.
    loops = Loops(framework)
    wire = WireServer(stall_on="endSessions")
    client = loops.client(wire.uri)
    loop = loops.new()
    try:

        async def ping_then_close() -> None:
            await client.admin.command("ping")  # a server session for close() to end
            client.close()
            await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)

        loops.run(loop, ping_then_close)
        assert wire.stalled.is_set()
        assert not client.delegate._closed
        loops.close(loop)
        # What was left of the closing ran as the loop closed: PyMongo's client is
        # closed (its monitors stopped, its pools closed), no call is left parked.
        assert client.delegate._closed
        assert not client.delegate._topology._opened
        assert parked_children() == []
    finally:
        if not loops.asyncio_loop(loop).is_closed():
            loops.close(loop)
        wire.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_close_not_awaited_finishes_at_exit_when_its_loop_stays_open(framework: str) -> None:
    # IOLoop.current().run_sync(main) and loop.run_until_complete(main()) leave the
    # loop open: the closing that main() started ends at interpreter exit.
    wire = WireServer(stall_on="endSessions")
    code = f"""
import atexit, sys, warnings
warnings.simplefilter("error", ResourceWarning)
state = {{}}
# Registered first, so it runs after Motor's exit handler.
atexit.register(lambda: print("closed:", state["client"].delegate._closed))
from test.framework import Loops
loops = Loops({framework!r})
state["client"] = client = loops.client({wire.uri!r})
async def main():
    await client.admin.command("ping")
    client.close()  # the server never answers its endSessions
loop = loops.new()
loops.run(loop, main)
print("stopped:", client.delegate._closed)
"""
    try:
        result = run_python(code)
    finally:
        wire.stop()
    assert wire.stalled.is_set()
    assert result.stdout.split() == ["stopped:", "False", "closed:", "True"], result.stderr
    assert "Unclosed" not in result.stderr


@pytest.mark.usefixtures("short_drain")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_what_is_left_of_a_close_waits_a_bounded_time(monkeypatch: Any, framework: str) -> None:
    # What is left runs as the loop closes and blocks loop.close(): a server that
    # stopped answering must not hang it.  Here the closing is parked on its endSessions
    # with a cursor still to kill, and the server answers neither.  The loop runs and
    # closes on a thread of its own, so that a hang shows as that thread still alive.
    monkeypatch.setattr(motor.green.pool, "FINISH_CLOSE_TIMEOUT", 0.2)
    loops = Loops(framework)
    wire = WireServer(stall_on=("endSessions", "killCursors"))
    client = loops.client(wire.uri)
    seen: dict[str, Any] = {}

    def application() -> None:
        loop = loops.new()

        async def ping_then_close() -> None:
            await client.admin.command("ping")  # a server session to end
            host, port = wire.host.split(":")
            client.delegate._close_cursor_soon(42, _CursorAddress((host, int(port)), "db.c"))
            client.close()
            await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)

        loops.run(loop, ping_then_close)
        seen["queued"] = len(client.delegate._kill_cursors_queue)
        loops.close(loop)
        seen["closed"] = client.delegate._closed

    thread = threading.Thread(target=application, daemon=True)
    try:
        thread.start()
        thread.join(30)  # a liveness bound, far above the 0.2 s the waits may take
        assert not thread.is_alive(), "loop.close() hangs on a server that does not answer"
        assert seen == {"queued": 1, "closed": True}
        assert not client.delegate._kill_cursors_queue
    finally:
        wire.stop()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_closing_a_running_loop_leaves_its_calls_alone(server: Any, framework: str) -> None:
    # asyncio refuses to close a running loop: the calls in flight go on.
    loops = Loops(framework)
    client = loops.client(server.uri)
    loop = loops.new()
    try:

        async def close_while_running() -> Any:
            pinging = client.admin.command("ping")
            with pytest.raises(RuntimeError, match="running"):
                asyncio.get_running_loop().close()
            return (await pinging)["ok"], (await client.admin.command("ping"))["ok"]

        assert loops.run(loop, close_while_running) == (1, 1)
        close_client(loops, client, loop)
    finally:
        loops.close(loop)


def test_motor_3_code_that_rebinds_get_io_loop_runs(server: Any) -> None:
    # A workaround applications and libraries (limits' MongoDB storage) applied to
    # Motor 3.x to use one client from successive loops: harmless here.
    client: AsyncIOMotorClient[Any] = AsyncIOMotorClient(server.uri)
    client.get_io_loop = asyncio.get_running_loop  # type: ignore[method-assign]
    coll = client.motor_test.event_loops_get_io_loop

    async def turn(n: int) -> int:
        if n == 0:
            await coll.delete_many({})
        await coll.insert_one({"n": n})
        return await coll.count_documents({})

    async def close() -> None:
        await client.close()

    try:
        assert [asyncio.run(turn(n)) for n in range(3)] == [1, 2, 3]
    finally:
        asyncio.run(close())


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_operations_complete_under_nest_asyncio(server: Any, framework: str) -> None:
    """``nest_asyncio.apply()`` before Motor is imported (a notebook's first cell) makes
    asyncio's futures and tasks its pure-Python ones, whose callbacks list is the
    future's own: operations complete, nested ``run_until_complete()`` included.  The
    client does not move to another loop run inside its own, and says so."""
    code = f"""
import asyncio, nest_asyncio
nest_asyncio.apply()
from test.framework import Loops
loops = Loops({framework!r})
client = loops.client({server.uri!r}, serverSelectionTimeoutMS=10000)
coll = client.motor_test.nest_asyncio
async def main():
    await coll.delete_many({{}})
    await asyncio.wait_for(coll.insert_one({{"_id": 1}}), 20)
    nested = asyncio.get_running_loop().run_until_complete(coll.count_documents({{}}))
    found = await asyncio.wait_for(coll.find_one(), 20)
    async def count():
        return await coll.count_documents({{}})
    # Another loop, run inside the client's own: the client does not move.
    other = asyncio.new_event_loop()
    try:
        other.run_until_complete(count())
    except Exception as exc:
        print(type(exc).__name__, str(exc).split("; ")[1])
    other.close()
    await coll.drop()
    return nested, found
loop = loops.new()
print(loops.run(loop, main))
loops.run(loop, client.close)
"""
    result = run_python(code)
    lines = result.stdout.split("\n")
    assert lines[0] == (
        "WrongLoopError it cannot move: that loop is running on this thread too, under this "
        'one (see the "Event loops" section of Motor\'s documentation)'
    ), result.stderr
    assert lines[1] == "(1, {'_id': 1})", result.stderr


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_writes_nobody_awaits_are_made_before_the_loop_closes(server: Any, framework: str) -> None:
    """Writes fired and forgotten last thing before the loop closes (the first one
    before the client has even connected, then a hundred more) are all made, as Motor
    3.7.1 made them in its thread pool.  Cancelled with the loop, those not yet sent
    were lost: 0 of 1 and 3 of 100 were made.  The server's name, not its address: the
    first write looks it up (in the default executor)."""
    loops = Loops(framework)
    client = loops.client(by_name(server.uri))
    coll = client.motor_test.unawaited_writes
    results: dict[str, Any] = {}
    try:
        for turn in ("cold", "warm"):
            loop = loops.new()

            async def fire_and_forget(turn: str = turn) -> None:
                if turn == "cold":
                    await motor.run_green(_drop_with_green_client, server.uri)
                    results[turn] = [coll.insert_one({"turn": turn, "i": 0})]
                else:
                    await coll.find_one({})  # connected
                    results[turn] = [coll.insert_one({"turn": turn, "i": i}) for i in range(100)]

            loops.run(loop, fire_and_forget)
            loops.close(loop)
            assert all(future.done() and future.result().acknowledged for future in results[turn])
        loop = loops.new()

        async def count() -> list[int]:
            return [await coll.count_documents({"turn": turn}) for turn in ("cold", "warm")]

        assert loops.run(loop, count) == [1, 100]
        loops.close(loop)
    finally:
        close_client(loops, client)


def _drop_with_green_client(uri: str) -> None:
    green = motor.GreenMongoClient(uri)
    try:
        green.motor_test.unawaited_writes.drop()
    finally:
        green.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_with_tasks_pending_is_not_run_again_as_it_closes(framework: str) -> None:
    """Only Motor's calls may run as the loop closes: with a task of the application
    still pending, the loop is not run again (the task would run too), and a call
    nobody awaits is cancelled as before."""
    loops = Loops(framework)
    wire = WireServer(stall_on="insert")
    client = loops.client(wire.uri)
    loop = loops.new()
    steps: list[int] = []
    state: dict[str, Any] = {}

    async def ticking() -> None:
        while True:
            steps.append(1)
            await asyncio.sleep(0.001)

    async def start() -> None:
        await client.admin.command("ping")
        state["task"] = asyncio.ensure_future(ticking())
        state["insert"] = client.motor_test.stalled.insert_one({})  # never answered
        await asyncio.get_running_loop().run_in_executor(None, wire.stalled.wait, 10)

    try:
        loops.run(loop, start)
        assert wire.stalled.is_set()
        ticks = len(steps)
        loops.close(loop)
        assert len(steps) == ticks
        assert state["insert"].cancelled()
    finally:
        close_client(loops, client)
        wire.stop()


def by_name(uri: str) -> str:
    """``uri`` with the server's address 127.0.0.1 replaced by the name localhost."""
    assert "127.0.0.1" in uri
    return uri.replace("127.0.0.1", "localhost")


def test_writes_nobody_awaits_at_the_end_of_asyncio_run_are_made(server: Any) -> None:
    """``asyncio.run()`` cancels every task, shuts down the default executor and then
    closes the loop: the writes nobody awaits finish before the executor goes (in
    ``shutdown_asyncgens()``), since looking up the server's name needs it.  At
    ``loop.close()``, the lookups failed ("Executor shutdown has been called"), and a
    lookup run as a task was cancelled with the application's tasks."""
    uri = by_name(server.uri)
    name = "motor_test"
    futures: list[Any] = []

    clients: list[Any] = []

    async def fire_and_forget() -> None:
        client: Any = AsyncIOMotorClient(uri)  # not connected yet: the first write connects
        clients.append(client)
        futures.extend(client[name].unawaited_run.insert_one({"i": i}) for i in range(20))

    async def close() -> None:
        await clients[0].close()

    sync: Any = None
    try:
        asyncio.run(fire_and_forget())
        asyncio.run(close())
        assert [future.result().acknowledged for future in futures] == [True] * 20
        import pymongo

        sync = pymongo.MongoClient(server.uri)
        assert sync[name].unawaited_run.count_documents({}) == 20
    finally:
        if sync is not None:
            sync[name].unawaited_run.drop()
            sync.close()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_closed_from_a_coroutine_of_another_loop(server: Any, framework: str) -> None:
    """Closing a loop from a coroutine that runs on another loop of the thread: the
    loop cannot run again then, so what nobody awaits is cancelled, and ``close()``
    raises nothing ("Cannot run the event loop while another loop is running")."""
    loops = Loops(framework)
    first = loops.new()
    client = loops.client(server.uri, io_loop=first)
    state: dict[str, Any] = {}

    async def fire_and_forget() -> None:
        await client.admin.command("ping")
        state["write"] = client.motor_test.closed_elsewhere.insert_one({})

    async def close_first() -> None:
        loops.close(first)

    try:
        loops.run(first, fire_and_forget)
        asyncio.run(close_first())
        assert loops.asyncio_loop(first).is_closed()
        assert state["write"].done()
    finally:
        close_client(loops, client)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_loop_closed_on_the_thread_it_moved_to(server: Any, framework: str) -> None:
    """A loop set up on the main thread, then run and closed on another: the children
    left on the main thread (their slots cleared by greenlet) must not break the close."""
    loops = Loops(framework)
    loop = loops.new()
    client = loops.client(server.uri, io_loop=loop)
    errors: list[BaseException] = []

    async def ping() -> None:
        await client.admin.command("ping")

    def serve() -> None:
        try:
            loops.run(loop, ping)  # the loop moves to this thread
            close_client(loops, client, loop)
            loops.close(loop)
        except BaseException as exc:
            errors.append(exc)

    loops.run(loop, ping)  # a child of the main thread, idle
    moved = threading.Thread(target=serve)
    moved.start()
    moved.join()
    assert errors == []
    assert loops.asyncio_loop(loop).is_closed()
    hub = get_hub(loops.asyncio_loop(loop))
    assert not [child for child in hub._children if getattr(child, "future", None) is not None]
