"""Unit tests of the green primitives on loopback sockets, and of the PyMongo seam."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import errno
import functools
import importlib
import math
import os
import pkgutil
import socket
import ssl
import threading
import time
import types
import warnings
from collections.abc import Iterator
from typing import Any

import pymongo.message
import pymongo.network_layer
import pymongo.pool_shared
import pymongo.synchronous
import pymongo.synchronous.auth
import pymongo.synchronous.auth_oidc
import pymongo.synchronous.command_cursor
import pymongo.synchronous.cursor_base
import pymongo.synchronous.pool
import pytest
from pymongo.errors import AutoReconnect, ConfigurationError, OperationFailure
from pymongo.message import _BulkWriteContext
from pymongo.synchronous.helpers import _handle_reauth

from motor.errors import WouldBlockError
from motor.green import hub as hub_module
from motor.green import pool as green_pool
from motor.green import reauth as green_reauth
from motor.green import socket as green_socket
from motor.green import splice as green_splice
from motor.green.hub import Waiter, get_hub
from motor.green.socket import GreenSocket, tls_handshake
from motor.green.sync import GreenCondition, GreenLock
from test.framework import Framework, Loops, instrumented
from test.wire import WireServer


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def _read_in_a_thread(sock: socket.socket, size: int) -> tuple[threading.Thread, bytearray]:
    """A started thread that reads ``size`` bytes from ``sock`` into the bytearray."""
    received = bytearray()

    def read() -> None:
        while len(received) < size:
            received.extend(sock.recv(1 << 20))

    reader = threading.Thread(target=read)
    reader.start()
    return reader, received


def hub() -> Any:
    return get_hub(asyncio.get_running_loop())


async def test_green_recv_parks_and_times_out(
    fw: Framework, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = socket_pair
    green = GreenSocket(a, timeout=0.2)
    buf = bytearray(5)
    await fw.probe.settle()
    ticks = fw.probe.ticks
    with pytest.raises(TimeoutError, match="timed out"):
        await hub().spawn(green.recv_into, buf)
    asyncio.get_running_loop().call_later(0.05, b.sendall, b"hello")
    assert await hub().spawn(green.recv_into, buf) == 5
    assert bytes(buf) == b"hello"
    fw.probe.assert_below(0.010)
    # The loop kept ticking while the child waited 0.25 s: about 200 ticks of 1 ms (fewer
    # on a busy machine); a wait that blocked the loop would allow two or three.
    assert fw.probe.ticks - ticks > 20, fw.probe.ticks - ticks


async def test_read_after_a_send_waits_for_readiness_first(
    fw: Framework, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Right after a send, a read in a child parks before trying the socket (the reply
    cannot be there yet); later reads try first."""
    a, b = socket_pair
    attempts: list[int] = []

    class Counting(socket.socket):
        def recv_into(self, *args: Any) -> int:
            attempts.append(1)
            return super().recv_into(*args)

    green = GreenSocket(Counting(fileno=os.dup(a.fileno())), timeout=5)

    def exchange() -> tuple[bytes, bytes]:
        green.sendall(b"ping")
        first, second = bytearray(2), bytearray(2)
        green.recv_into(first)
        green.recv_into(second)
        return bytes(first), bytes(second)

    try:
        future = hub().spawn(exchange)
        await asyncio.sleep(0.01)
        assert b.recv(4) == b"ping"
        assert attempts == []  # parked without a failed recv
        b.sendall(b"pong")
        assert await future == (b"po", b"ng")
        assert attempts == [1, 1]
    finally:
        green.close()


async def test_a_large_send_leaves_the_loop_between_sends(
    fw: Framework, socket_pair: tuple[socket.socket, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A message larger than the socket's buffer, read as fast as it is sent: with no
    # work budget the child gives the loop its turn after every partial send.
    a, b = socket_pair
    message = b"m" * (8 * 1024 * 1024)
    reader, received = _read_in_a_thread(b, len(message))
    green = GreenSocket(a, timeout=10)
    pauses = [0]
    original_pause = hub_module.Hub.pause

    def pause(self: Any) -> None:
        pauses[0] += 1
        original_pause(self)

    monkeypatch.setattr(hub_module.Hub, "pause", pause)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    try:
        await hub().spawn(green.sendall, message)
    finally:
        reader.join(10)
    assert received == message
    assert pauses[0] >= 1


def test_green_socket_blocks_normally_in_threads(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = socket_pair
    green = GreenSocket(a, timeout=0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        green.recv_into(bytearray(1))
    assert time.monotonic() - started >= 0.09
    timer = threading.Timer(0.05, b.sendall, (b"x" * 3,))
    timer.start()
    buf = bytearray(3)
    assert green.recv_into(buf) == 3
    timer.join()
    # A send larger than the socket buffers completes once the peer reads.
    payload = b"y" * (8 * 1024 * 1024)
    reader, received = _read_in_a_thread(b, len(payload))
    green.settimeout(5)
    green.sendall(payload)
    reader.join()
    assert received == payload


@pytest.fixture(params=["polls", "markers"])
def iteration_counting(request: pytest.FixtureRequest) -> str:
    """How the hub counts loop iterations: by the selector's polls, or (on loops
    without a selector) by marker callbacks.  See :func:`fresh_hub`."""
    return str(request.param)


@contextlib.contextmanager
def fresh_hub(iteration_counting: str) -> Iterator[Any]:
    """Run the block under a new hub for the running loop that counts iterations
    the given way."""
    from motor.green import hub as hub_module

    loop = asyncio.get_running_loop()
    original = getattr(loop, "_motor_hub", None)
    fresh = hub_module.Hub.__new__(hub_module.Hub)
    if iteration_counting == "markers":
        fresh._hook_loop = hub_module._LoopClock  # type: ignore[method-assign]
    fresh.__init__(loop)  # type: ignore[misc]
    assert fresh._marks_iterations is (iteration_counting == "markers")
    loop._motor_hub = fresh  # type: ignore[attr-defined]
    try:
        yield fresh
    finally:
        loop._motor_hub = original  # type: ignore[attr-defined]


async def test_burst_of_replies_resumes_over_several_iterations(
    fw: Framework, monkeypatch: pytest.MonkeyPatch, iteration_counting: str
) -> None:
    """Resumes share the hub's work budget: a burst of readable sockets is resumed over
    several loop iterations, each socket stays registered meanwhile, and a socket that
    turns readable with nobody reading is still unregistered (no busy loop)."""
    from motor.green import hub as hub_module

    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # one piece of work per window
    with fresh_hub(iteration_counting):
        await _burst_of_replies()


async def _burst_of_replies() -> None:
    iteration = _iteration_counter()
    pairs = [socket.socketpair() for _ in range(30)]
    try:
        greens = [GreenSocket(a, timeout=5) for a, _ in pairs]

        def read(green: GreenSocket) -> tuple[bytes, int]:
            buf = bytearray(4)
            n = green.recv_into(buf)
            return bytes(buf[:n]), iteration[0]

        for round_ in (b"one!", b"two!"):
            futures = [hub().spawn(read, green) for green in greens]
            while any(g._read_waiter is None or g._read_waiter._child is None for g in greens):
                await asyncio.sleep(0.001)
            for _, b in pairs:
                b.sendall(round_)
            results = await asyncio.gather(*futures)
            assert [data for data, _ in results] == [round_] * len(pairs)
            resumed_at = [at for _, at in results]
            # At most the queue's first entry plus one window opened by a callback.
            assert _resumed_per_iteration(resumed_at) <= 2, resumed_at
            assert all(g._reader_hub is hub() for g in greens)
            assert not hub()._resumes and not any(g._read_queued for g in greens)

        # Readable with nobody reading: unregistered after at most one ignored report.
        for _, b in pairs:
            b.sendall(b"idle")
        for _ in range(20):
            if all(g._reader_hub is None for g in greens):
                break
            await asyncio.sleep(0.001)
        assert all(g._reader_hub is None for g in greens)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def _iteration_counter() -> list[int]:
    """``[n]``: the loop iterations run since the call (a callback that reschedules itself)."""
    loop = asyncio.get_running_loop()
    counter = [0]

    def count() -> None:
        counter[0] += 1
        loop.call_soon(count)

    loop.call_soon(count)
    return counter


def _resumed_per_iteration(results: list[int]) -> int:
    """The most children resumed in one loop iteration, by the iteration each noted."""
    return max(collections.Counter(results).values())


async def test_sockets_turning_writable_together_resume_over_several_iterations(
    fw: Framework, monkeypatch: pytest.MonkeyPatch, iteration_counting: str
) -> None:
    """Children parked in ``wait_fd`` for writability are resumed within the work budget:
    a burst of sockets whose buffers drain at once is resumed over several iterations."""
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # one piece of work per window
    with fresh_hub(iteration_counting) as fresh:
        iteration = _iteration_counter()
        pairs = [socket.socketpair() for _ in range(30)]
        try:
            for a, _ in pairs:
                a.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    while True:
                        a.send(b"x" * 65536)

            def wait_writable(sock: socket.socket) -> int:
                assert fresh.wait_fd(sock.fileno(), True, 10)
                return iteration[0]

            futures = [fresh.spawn(wait_writable, a) for a, _ in pairs]
            await asyncio.sleep(0.01)
            assert not any(future.done() for future in futures)
            for _, b in pairs:  # every buffer drains in the same iteration
                b.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    while b.recv(1 << 20):
                        pass
            results = await asyncio.wait_for(asyncio.gather(*futures), 10)
            # At most the queue's first entry plus one window opened by a callback.
            assert _resumed_per_iteration(results) <= 2, results
            assert len(set(results)) >= len(pairs) // 2, results
        finally:
            for a, b in pairs:
                a.close()
                b.close()


async def test_waits_expiring_together_resume_over_several_iterations(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timed waits that expire in the same sweep are resumed within the work budget."""
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    iteration = _iteration_counter()
    deadline = time.monotonic() + 0.05

    def sleep_until_the_deadline() -> int:
        hub().sleep(deadline - time.monotonic())
        return iteration[0]

    futures = [hub().spawn(sleep_until_the_deadline) for _ in range(30)]
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert _resumed_per_iteration(results) <= 2, results
    assert len(set(results)) >= 15, results


async def test_one_operation_per_iteration_is_never_queued(
    fw: Framework, iteration_counting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work budget is per loop iteration: operations that each wait for a reply run
    without queueing, however long the sequence lasts."""
    from motor.green import hub as hub_module

    # The window is measured in the loop thread's CPU time, so that time this process
    # spends descheduled (a loaded machine) does not close it: what is checked is the
    # hub's logic, one window per iteration.  10 ms is longer than one operation's CPU
    # (a collection included) and a fifth of the sequence's duration.
    monkeypatch.setattr(hub_module, "_perf_counter", time.thread_time)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.01)
    with fresh_hub(iteration_counting) as target:
        await _one_per_iteration(target)


async def _one_per_iteration(target: Any) -> None:
    a, b = socket.socketpair()
    queued = []
    original_defer, original_resume_later = target._defer, target.resume_later
    # Each call is recorded, then made: the tuple runs both in one lambda.
    target._defer = lambda *args: (queued.append(args), original_defer(*args))  # type: ignore[func-returns-value]
    target.resume_later = lambda *args: (queued.append(args), original_resume_later(*args))  # type: ignore[func-returns-value]
    # A start queued for a later iteration would leave nothing to read: fail, not hang.
    b.settimeout(5)
    try:
        green = GreenSocket(a, timeout=5)

        def request() -> bytes:
            green.sendall(b"?")
            buf = bytearray(1)
            green.recv_into(buf)
            return bytes(buf)

        started = time.monotonic()
        count = 0
        # Far longer than the work budget, at least 500 operations.
        while count < 500 or time.monotonic() - started < 0.05:
            future = target.spawn(request)
            assert b.recv(1) == b"?"
            b.send(b"!")
            assert await future == b"!"
            count += 1
        assert queued == []
    finally:
        a.close()
        b.close()


async def test_the_budget_counts_the_children_s_time_not_the_application_s(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Application callbacks that make an iteration long do not spend the work budget:
    an operation started after them in the same iteration starts at once."""
    # Thread CPU time, as in test_one_operation_per_iteration_is_never_queued: the
    # machine's load cannot close the budget; 10 ms is more than one child's CPU time,
    # a collection included.
    monkeypatch.setattr(hub_module, "_perf_counter", time.thread_time)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.01)
    target = hub()
    loop = asyncio.get_running_loop()
    queued: list[Any] = []
    original_defer = target._defer
    monkeypatch.setattr(
        target,
        "_defer",
        lambda entry: (queued.append(entry), original_defer(entry)),  # type: ignore[func-returns-value]
    )
    started: list[int] = []
    iteration = _iteration_counter()

    def application_work_then_a_start() -> None:
        # One loop callback: a child's work, then application work worth three budgets,
        # then a start.  All in one iteration.
        first = target.spawn(started.append, iteration[0])
        busy_until = time.thread_time() + 3 * hub_module.WORK_BUDGET
        while time.thread_time() < busy_until:
            pass
        second = target.spawn(started.append, iteration[0])
        done.set_result((first, second))

    done: asyncio.Future[Any] = loop.create_future()
    loop.call_soon(application_work_then_a_start)
    first, second = await done
    await asyncio.gather(first, second)
    assert queued == []
    assert started[0] == started[1]


async def test_queued_work_runs_on_after_an_entry_that_raised(fw: Framework) -> None:
    """An entry of the hub's queue that raises is reported as a loop callback's error,
    and the entries queued after it still run."""
    target = hub()
    loop = asyncio.get_running_loop()
    errors: list[Any] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context.get("exception")))
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("entry failed")

    try:
        target._defer((fail,))
        target._defer((ran.append, "next"))
        for _ in range(3):  # the drain's iteration, and the one it was rescheduled for
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert ran == ["next"]
    assert [type(e) for e in errors] == [RuntimeError]
    assert not target._queue and not target._draining


async def test_queued_starts_run_before_a_later_start(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts queued because an iteration's budget was spent run, oldest first, as soon
    as a later iteration starts another operation: before it, and without waiting for
    the hub's drain callback."""
    target = hub()
    order: list[str] = []
    # One start per iteration: the first sees nothing spent, the next ones the first.
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 1e-12)
    monkeypatch.setattr(target, "_drain_soon", lambda: None)  # no drain callback
    # Without the probe's timer, which a slow iteration would see come due, and stop
    # the queued starts short of the budget.
    async with _no_other_timers(fw):
        await asyncio.sleep(0)  # an iteration in which the hub has run nothing yet
        futures = [target.spawn(order.append, name) for name in ("a", "b", "c")]
        assert order == ["a"] and len(target._queue) == 2  # b and c wait
        monkeypatch.setattr(hub_module, "WORK_BUDGET", 10.0)
        await asyncio.sleep(0)  # a later iteration
        assert order == ["a"]
        futures.append(target.spawn(order.append, "d"))
        assert order == ["a", "b", "c", "d"] and not target._queue
        await asyncio.gather(*futures)


async def test_replies_reported_together_resume_before_the_starts_they_lead_to(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When one poll reports several replies, every reply is resumed before any of the
    operations their tasks start next: those wait in the queue, and start in the same
    iteration."""
    # What is checked is the order within the poll's iteration, not the budget: a long
    # enough one that no collection or descheduling inside a child can spend it, and
    # no probe timer to come due in it.
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 10.0)
    pairs = [socket.socketpair() for _ in range(5)]
    events: list[tuple[str, int]] = []
    clock = hub()._clock  # the loop's iterations, as the hub counts them
    try:
        greens = [GreenSocket(a, timeout=5) for a, _ in pairs]

        def read(green: GreenSocket) -> bytes:
            buf = bytearray(1)
            n = green.recv_into(buf)
            return bytes(buf[:n])

        def record_start(n: int) -> int:
            events.append(("start", n))
            return int(clock.iteration)

        async def one(n: int) -> tuple[int, int]:
            assert await hub().spawn(read, greens[n]) == b"!"
            events.append(("resumed", n))
            resumed_at = clock.iteration
            return resumed_at, await hub().spawn(record_start, n)

        async with _no_other_timers(fw):
            tasks = [asyncio.ensure_future(one(n)) for n in range(len(pairs))]
            while any(g._read_waiter is None or g._read_waiter._child is None for g in greens):
                await asyncio.sleep(0.001)
            for _, b in pairs:  # all readable before the loop polls again
                b.sendall(b"!")
            results = await asyncio.gather(*tasks)
        kinds = [kind for kind, _ in events]
        assert kinds == ["resumed"] * len(pairs) + ["start"] * len(pairs), events
        assert len({at for pair in results for at in pair}) == 1, results
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def _spin(seconds: float) -> None:
    """Busy the thread for ``seconds`` of wall-clock time."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _record_and_spin(record: list[int], clock: Any) -> None:
    """A piece of work: note the loop iteration it ran in, then 1 ms of busy time."""
    record.append(clock.iteration)
    _spin(0.001)


@contextlib.asynccontextmanager
async def _no_other_timers(fw: Framework) -> Any:
    """Stop the loop-stall probe (a 1 ms timer: due at the start of nearly every loop
    iteration) for the block: the test's timer is the loop's only one."""
    await fw.probe.stop()
    try:
        yield
    finally:
        fw.probe.start()


# The three tests below: a budget of 8 ms and pieces of work of 1 ms, so that a window
# holds 8 pieces, and a timer due in 3 ms (or due at once).  A busier machine only ends
# windows sooner (the pieces are wall-clock time), so each bound holds under load.


async def test_children_stop_when_the_loop_s_next_timer_comes_due(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children stop running in an iteration when the loop's next timer comes due,
    though budget is left: its callback (an ``asyncio.sleep`` ending) is not kept
    waiting for the budget's worth of queued work."""
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.008)
    clock = hub()._clock
    loop = asyncio.get_running_loop()
    async with _no_other_timers(fw):
        loop.call_later(0.003, lambda: None)
        await asyncio.sleep(0)  # an iteration whose start saw the timer pending
        assert clock.deadline < math.inf
        iteration = clock.iteration
        started: list[int] = []
        futures = [hub().spawn(_record_and_spin, started, clock) for _ in range(30)]
        await asyncio.gather(*futures)
    # About 3 (the one running when the timer comes due finishes); without the
    # deadline, 8.
    assert 1 <= started.count(iteration) <= 4, started


async def test_an_iteration_starting_with_a_timer_due_has_a_smaller_budget(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a loop iteration that starts with a timer due, and in the next one, children
    get a quarter of the work budget: the timer's callback runs after the iteration's
    I/O callbacks, and what it schedules (an ``asyncio.sleep``'s task wake-up) after the
    next iteration's."""
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.008)
    clock = hub()._clock
    loop = asyncio.get_running_loop()
    async with _no_other_timers(fw):
        fired: list[int] = []
        loop.call_later(0, lambda: fired.append(clock.iteration))
        await asyncio.sleep(0)  # an iteration that starts with the timer due
        iteration = clock.iteration
        started: list[int] = []
        futures = [hub().spawn(_record_and_spin, started, clock) for _ in range(30)]
        await asyncio.gather(*futures)
    assert fired == [iteration]
    # 2 ms of budget: about 2, or 3 with the one running when it is spent; with the
    # whole budget, 8.  The next iteration: the drain's first entry, then 2 ms.
    assert 1 <= started.count(iteration) <= 4, started
    assert 1 <= started.count(iteration + 1) <= 4, started


async def test_a_child_s_long_work_pauses_when_the_loop_s_next_timer_comes_due(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child doing long work in pieces (checking the budget between them, as sliced
    decoding does) pauses when the loop's next timer comes due, though budget is left."""
    from motor.green.socket import _pause_if_spent

    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.008)
    clock = hub()._clock
    loop = asyncio.get_running_loop()
    pieces: list[int] = []

    def long_work() -> None:
        for _ in range(30):
            _spin(0.001)
            pieces.append(clock.iteration)
            _pause_if_spent()

    async with _no_other_timers(fw):
        loop.call_later(0.003, lambda: None)
        await asyncio.sleep(0)
        iteration = clock.iteration
        await hub().spawn(long_work)
    # About 3; without the deadline, 8.
    assert 1 <= pieces.count(iteration) <= 4, pieces


def _parked_call(result: Any = "result") -> tuple[Waiter, Any]:
    """Start a child that parks on a waiter and then returns (or raises) ``result``."""
    waiter = Waiter(hub())

    def park() -> Any:
        waiter.get()
        if isinstance(result, BaseException):
            raise result
        return result

    return waiter, hub().spawn(park)


async def test_done_callbacks_run_when_the_child_finishes(fw: Framework) -> None:
    """A resumed child's future runs its done callbacks (the awaiting task's wake-up)
    as soon as the child finishes, in the resuming callback, instead of one loop
    iteration later; each in its own context, each once."""
    loop = asyncio.get_running_loop()
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    order: list[Any] = []

    waiter, future = _parked_call()
    var.set("registered")
    future.add_done_callback(lambda f: order.append(("callback", f.result(), var.get())))
    var.set("later")

    async def awaiter() -> None:
        order.append(("task", await future))

    task = loop.create_task(awaiter())
    await asyncio.sleep(0)  # the task now waits on the future

    def resume() -> None:
        waiter.switch(None)
        order.append("after resume")

    loop.call_soon(resume)
    await task
    assert order == [("callback", "result", "registered"), ("task", "result"), "after resume"]


async def test_done_callback_errors_are_reported(fw: Framework) -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        waiter, future = _parked_call(KeyError("op failed"))
        later: list[str] = []

        def broken(_: Any) -> None:
            raise ValueError("callback failed")

        future.add_done_callback(broken)
        future.add_done_callback(lambda f: later.append(type(f.exception()).__name__))
        loop.call_soon(waiter.switch, None)
        with pytest.raises(KeyError, match="op failed"):
            await future
        assert later == ["KeyError"]  # the callback after the broken one still ran
        assert len(reported) == 1
        assert isinstance(reported[0]["exception"], ValueError)
        assert reported[0]["future"] is future
    finally:
        loop.set_exception_handler(previous)


@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
@pytest.mark.parametrize("leaving", [KeyboardInterrupt, SystemExit])
def test_a_done_callback_that_leaves_the_loop_leaves_the_others_to_run(
    framework: str, leaving: type[BaseException]
) -> None:
    """A done callback that raises ``KeyboardInterrupt`` or ``SystemExit`` leaves the
    loop, as from any loop callback; the callbacks after it (the awaiting task's
    wake-up) still run once the loop runs again, as asyncio runs each on its own."""
    loops = Loops(framework)
    loop = loops.new()
    state: dict[str, Any] = {}

    def leave(_: Any) -> None:
        raise leaving("from a done callback")

    async def awaiter(future: Any) -> Any:
        return await future

    async def first() -> None:
        state["first"] = asyncio.current_task()
        waiter, future = _parked_call()
        future.add_done_callback(leave)
        state["awaiter"] = asyncio.ensure_future(awaiter(future))
        await asyncio.sleep(0)  # the awaiting task's wake-up is the second callback
        asyncio.get_running_loop().call_soon(waiter.switch, None)
        await asyncio.sleep(30)  # left by the callback's exception

    async def second() -> Any:
        state["first"].cancel()
        # Not wait_for(): cancelling a task whose wake-up was lost would hang too.
        await asyncio.wait([state["awaiter"]], timeout=10)
        assert state["awaiter"].done(), "the task awaiting the operation was never woken"
        return state["awaiter"].result()

    try:
        with pytest.raises(leaving, match="from a done callback"):
            loops.run(loop, first)
        assert loops.run(loop, second) == "result"
    finally:
        loops.close(loop)


async def test_done_callbacks_resumed_from_a_task_are_scheduled(fw: Framework) -> None:
    """A child resumed from inside a task's step cannot step the task awaiting its
    future there (asyncio runs one task at a time): the wake-up is scheduled."""
    loop = asyncio.get_running_loop()
    waiter, future = _parked_call()

    async def awaiter() -> Any:
        return await future

    awaiting = loop.create_task(awaiter())
    await asyncio.sleep(0)
    waiter.switch(None)  # from this test's own task
    assert not awaiting.done()
    assert await awaiting == "result"


async def test_condition_notified_from_a_thread(fw: Framework) -> None:
    cond = GreenCondition(threading.Lock())

    def wait() -> bool:
        with cond:
            return cond.wait(5)

    future = hub().spawn(wait)
    await asyncio.sleep(0.05)
    assert not future.done()

    def notify() -> None:
        with cond:
            cond.notify_all()

    threading.Thread(target=notify).start()
    assert await future is True


async def test_condition_wait_times_out(fw: Framework) -> None:
    cond = GreenCondition(threading.Lock())

    def wait() -> bool:
        with cond:
            return cond.wait(0.05)

    assert await hub().spawn(wait) is False
    assert not cond._waiters


async def test_condition_notify_wakes_children_and_threads(fw: Framework) -> None:
    cond = GreenCondition(threading.Lock())
    thread_result: list[bool] = []

    def thread_wait() -> None:
        with cond:
            thread_result.append(cond.wait(5))

    thread = threading.Thread(target=thread_wait)
    thread.start()

    def child_wait() -> bool:
        with cond:
            return cond.wait(5)

    futures = [hub().spawn(child_wait) for _ in range(3)]
    while len(cond._waiters) < 4:
        await asyncio.sleep(0.01)
    with cond:
        cond.notify_all()
    for future in futures:
        assert await future is True
    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert thread_result == [True]


async def test_lock_held_across_a_wait(fw: Framework) -> None:
    lock = GreenLock()
    order: list[str] = []

    def holder() -> None:
        with lock:
            order.append("holder in")
            hub().sleep(0.1)  # parks with the lock held
            order.append("holder out")

    def contender() -> None:
        with lock:
            order.append("contender in")

    await fw.probe.settle()
    first = hub().spawn(holder)
    second = hub().spawn(contender)
    await asyncio.gather(first, second)
    assert order == ["holder in", "holder out", "contender in"]
    fw.probe.assert_below(0.010)
    assert not lock.locked()


async def test_unix_domain_socket(fw: Framework) -> None:
    server = WireServer(unix=True)
    try:
        client = fw.client(server.uri)
        assert (await client.admin.command("ping"))["ok"] == 1
        conn = next(iter(client.delegate._topology._servers.values())).pool.conns[0]
        assert conn.conn.get_conn.sock.family == socket.AF_UNIX
    finally:
        server.stop()


async def test_a_connect_completed_within_the_call_does_not_park(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A non-blocking connect to a listener on this host reports EINPROGRESS, but the
    # handshake is done: the child goes on without waiting for the loop.  A connect
    # still in progress parks (the writability wait); a refused one raises its error.
    listener = socket.create_server(("127.0.0.1", 0))
    refused = socket.create_server(("127.0.0.1", 0))
    refused_address = refused.getsockname()
    refused.close()
    parked: list[bool] = []
    real_wait = green_socket.wait_fd

    def wait_fd(fd: int, write: bool, timeout: float | None) -> bool:
        parked.append(write)
        return real_wait(fd, write, timeout)

    monkeypatch.setattr(green_socket, "wait_fd", wait_fd)

    def connect(address: Any) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            green_socket._connect(sock, address, 1.0)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        sock = await hub().spawn(connect, listener.getsockname())
        accepted, _ = listener.accept()
        sock.sendall(b"x")
        assert accepted.recv(1) == b"x"
        accepted.close()
        sock.close()
        assert parked == []
        with pytest.raises(OSError) as raised:
            await hub().spawn(connect, refused_address)
        assert raised.value.errno == errno.ECONNREFUSED
        assert parked == []
        monkeypatch.setattr(green_socket, "_ready_now", lambda fd, write: False)
        sock = await hub().spawn(connect, listener.getsockname())
        sock.close()
        assert parked == [True]
    finally:
        listener.close()


def test_pyopenssl_context_is_refused(socket_pair: tuple[socket.socket, socket.socket]) -> None:
    class NotStdlibContext:
        pass

    with pytest.raises(ConfigurationError, match="uninstall pyOpenSSL"):
        tls_handshake(socket_pair[0], NotStdlibContext(), "localhost", None, 1.0)


class _PyOpenSSLContext:
    """What PyMongo's get_ssl_context returns when pyOpenSSL is installed, as Motor
    sees it: not an :class:`ssl.SSLContext`."""

    check_hostname = True
    verify_mode = ssl.CERT_REQUIRED


async def test_a_client_whose_tls_needs_pyopenssl_is_refused_when_made(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pyOpenSSL installed, making a TLS client raises ConfigurationError at once
    (not a ServerSelectionTimeoutError at its first operation), for Motor's clients and
    GreenMongoClient, and leaves no monitor running; clients without TLS are made."""
    import pymongo.client_options

    from motor import GreenMongoClient

    monkeypatch.setattr(
        pymongo.client_options, "get_ssl_context", lambda *args: _PyOpenSSLContext()
    )
    threads = set(threading.enumerate())
    uri = "mongodb://127.0.0.1:1/?tls=true"
    for make in (fw.Client, GreenMongoClient):
        for connect in (False, True):
            with pytest.raises(ConfigurationError, match="uninstall pyOpenSSL"):
                make(uri, connect=connect)
    # The monitors that connect=True started end (close() asks them to, not waiting).
    deadline = time.monotonic() + 10
    while not set(threading.enumerate()) <= threads and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert set(threading.enumerate()) <= threads
    client = fw.client("mongodb://127.0.0.1:1", connect=False)
    assert client.delegate._options.pool_options._ssl_context is None
    # A mongodb+srv:// URI, whose TLS PyMongo turns on when it resolves the name (at
    # the first operation), unless the URI or the keywords say tls (or ssl).
    import pymongo.ssl_support

    monkeypatch.setattr(pymongo.ssl_support, "HAVE_PYSSL", True)
    monkeypatch.setattr(
        pymongo.ssl_support,
        "_pyssl",
        types.SimpleNamespace(SSLContext=_PyOpenSSLContext),
        raising=False,
    )
    for make in (fw.Client, GreenMongoClient):
        with pytest.raises(ConfigurationError, match="uninstall pyOpenSSL"):
            make("mongodb+srv://cluster.example.com/", connect=False)
    for uri, kwargs in [
        ("mongodb+srv://cluster.example.com/?tls=false", {}),
        ("mongodb+srv://cluster.example.com/", {"ssl": False}),
    ]:
        client = fw.client(uri, connect=False, **kwargs)
        assert client.delegate._options.pool_options._ssl_context is None


def test_tls_handshake_timeout_closes_the_socket() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    raw = socket.create_connection(listener.getsockname())
    peer, _ = listener.accept()  # accepts, but never answers the ClientHello
    context = ssl.create_default_context()
    try:
        with pytest.raises(TimeoutError):
            tls_handshake(raw, context, "localhost", None, 0.1)
        assert raw.fileno() == -1
    finally:
        raw.close()
        peer.close()
        listener.close()


def test_pymongo_internals_have_the_expected_shape() -> None:
    assert green_pool.check_pymongo_internals() == []


@pytest.mark.parametrize("kind", ["functools", "proxy"])
def test_internals_check_sees_through_applications_wrappers(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Applications and instrumentations (elastic-apm, New Relic) wrap PyMongo's methods,
    with ``functools.wraps`` or with wrapt's proxy objects: with every method of every
    class of PyMongo's synchronous API and message modules wrapped, the check finds
    nothing changed (Motor 3.7.1 ran with such wrappers)."""

    modules = [
        importlib.import_module(f"pymongo.synchronous.{info.name}")
        for info in pkgutil.iter_modules(pymongo.synchronous.__path__)
    ]
    modules += [pymongo.message, pymongo.pool_shared, pymongo.network_layer]
    count = 0
    for module in modules:
        for owner in list(vars(module).values()):
            if not (isinstance(owner, type) and owner.__module__ == module.__name__):
                continue
            for name, function in list(vars(owner).items()):
                if isinstance(function, types.FunctionType) and (
                    name == "__init__" or not name.startswith("__")
                ):
                    monkeypatch.setattr(owner, name, instrumented(function, kind))
                    count += 1
    assert count > 400
    assert green_pool.check_pymongo_internals() == []


def test_internals_check_reports_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(pymongo.synchronous.pool, "_configured_socket_interface")
    monkeypatch.setattr(pymongo, "version_tuple", (5, 0, 0))
    monkeypatch.setattr(green_pool, "TIMEOUT", contextvars.ContextVar("other"))

    def receive_data(conn: Any, length: int, deadline: float | None) -> Any:
        return conn.conn.recv_into(bytearray(length))  # no cancellation any more

    monkeypatch.setattr(pymongo.network_layer, "receive_data", receive_data)
    monkeypatch.setattr(pymongo.synchronous.auth, "hashlib", types.SimpleNamespace())
    monkeypatch.setitem(
        pymongo.synchronous.auth._AUTH_MAP,
        "MONGODB-AWS",
        lambda credentials, conn: None,
    )
    monkeypatch.setattr(pymongo.message, "_batched_op_msg_compressed", lambda *args: None)
    monkeypatch.setattr(green_splice, "_original_compressed", lambda *args: None)
    monkeypatch.setattr(
        pymongo.synchronous.auth_oidc._OIDCAuthenticator, "_get_access_token", lambda self: None
    )

    def command_cursor_init(self: Any, collection: Any, info: Any, address: Any) -> None:
        self._killed = False  # a constructor that no longer reads its first batch

    monkeypatch.setattr(
        pymongo.synchronous.command_cursor.CommandCursor, "__init__", command_cursor_init
    )
    problems = green_pool.check_pymongo_internals()
    assert any("_configured_socket_interface is missing" in p for p in problems), problems
    assert any("tested with 4.20.x" in p for p in problems), problems
    assert any("_csot.TIMEOUT" in p for p in problems), problems
    assert any("network_layer.receive_data changed" in p for p in problems), problems
    assert any("hashlib.pbkdf2_hmac" in p for p in problems), problems
    assert any("MONGODB-AWS" in p for p in problems), problems
    assert any("_compress(operation, data, ctx)" in p for p in problems), problems
    assert any("_op_msg_compressed's message changed" in p for p in problems), problems
    assert any("_get_access_token" in p for p in problems), problems
    assert any("CommandCursor's constructor changed" in p for p in problems), problems


def test_seam_is_installed() -> None:
    green_pool.install()
    seam = pymongo.synchronous.pool._configured_socket_interface  # type: ignore[attr-defined]
    assert getattr(seam, "motor_green", False)
    # A plain PyMongo client in the same process still gets ordinary sockets.
    server = WireServer()
    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
        assert client.admin.command("ping")["ok"] == 1
        conn = next(iter(client._topology._servers.values())).pool.conns[0]
        assert type(conn.conn.get_conn) is socket.socket
        client.close()
    finally:
        server.stop()


def test_pool_fork_check_reads_a_cached_pid() -> None:
    """The pool's fork check gets the process id without a system call, and the cached
    id is the child's own after fork()."""
    green_pool.install()
    pool_os = pymongo.synchronous.pool.os  # type: ignore[attr-defined]
    assert pool_os is not os
    assert pool_os.getpid() == os.getpid()
    assert pool_os.path is os.path
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        pid = os.fork()
    if pid == 0:  # the child: report what the pool would see, and leave at once
        try:
            os.write(write, f"{pool_os.getpid()} {os.getpid()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        seen, actual = os.read(read, 100).decode().split()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert seen == actual == str(pid)
    assert pool_os.getpid() == os.getpid()


async def test_blocking_helpers_run_in_a_thread(fw: Framework) -> None:
    """SRV lookups, KMS requests and mongocryptd commands block in PyMongo's own
    sockets or dnspython: called from a child, they run in a worker thread."""
    import pymongo.synchronous.encryption as encryption
    import pymongo.synchronous.srv_resolver as srv_resolver

    green_pool.install()
    for installed in (
        srv_resolver._resolve,
        encryption._EncryptionIO.kms_request,
        encryption._EncryptionIO.mark_command,
    ):
        assert getattr(installed, "motor_green", False), installed
        # __wrapped__, set by functools.wraps, is not part of the functions' types.
        assert not getattr(installed.__wrapped__, "motor_green", False)  # type: ignore[union-attr]

    calls: list[str] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")

    def slow_io(*args: Any, **kwargs: Any) -> str:
        calls.append(threading.current_thread().name)
        time.sleep(0.2)  # a blocking lookup or request
        return f"answer {marker.get()}"

    wrapped = green_pool._off_the_loop(slow_io, "a test wait")
    marker.set("from the caller")
    await fw.probe.settle()
    assert await hub().spawn(wrapped, "_mongodb._tcp.example", "SRV") == "answer from the caller"
    assert calls and calls[0] != threading.current_thread().name
    fw.probe.assert_below(0.010)
    # On the loop's thread outside a child it would block the loop: refused.
    with pytest.raises(WouldBlockError, match="a test wait"):
        wrapped()


async def test_a_lock_wake_up_survives_a_cancelled_waiter(fw: Framework) -> None:
    """release() wakes the first waiter; if that waiter is cancelled before it runs, the
    wake-up passes to the next one instead of being lost with the lock free."""
    lock = GreenLock()
    the_hub = hub()
    assert lock.acquire()  # held by this task (not a child: no waiting needed)
    got: list[str] = []

    def contender(name: str) -> None:
        with lock:
            got.append(name)

    first = the_hub.spawn(contender, "first")
    second = the_hub.spawn(contender, "second")
    while len(lock._waiters) < 2:
        await asyncio.sleep(0.001)
    child = first._motor_child
    lock.release()  # wakes "first": its resume waits in the hub's queue
    first.cancel()
    the_hub.cancel_child(child, first)  # ... and the cancellation lands before it
    await asyncio.wait_for(second, 5)
    assert got == ["second"]
    assert first.cancelled()
    assert not lock.locked()


def test_loop_timers_count_only_on_asyncio_s_own_clock() -> None:
    """Loop timers shorten the hub's window only on a loop whose timers are due on the
    hub's clock: one with a time() of its own (a test's virtual clock, say) keeps the
    budget alone, with no deadline and no timer seen as due."""

    class FrozenClockLoop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 1.0  # every timer's deadline is far below perf_counter()'s

    for loop, timed in ((asyncio.SelectorEventLoop(), True), (FrozenClockLoop(), False)):
        try:

            async def look(loop: asyncio.AbstractEventLoop = loop) -> tuple[float, float]:
                clock = get_hub(loop)._clock
                loop.call_later(3600, lambda: None)
                await asyncio.sleep(0)  # an iteration whose start saw the timer
                return clock.deadline, clock.spent

            deadline, spent = loop.run_until_complete(look())
            assert loop._motor_hook._timed is timed  # type: ignore[attr-defined]
            assert (deadline < math.inf) is timed
            assert spent == 0.0  # not due: a whole budget
        finally:
            loop.close()


def test_a_socket_closed_from_a_thread_while_its_loop_is_stopped(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = socket_pair
    green = GreenSocket(a)
    loop = asyncio.new_event_loop()
    try:

        async def read_once() -> int:
            reading = get_hub(loop).spawn(green.recv_into, bytearray(1))
            await asyncio.sleep(0.01)  # parked: the loop watches the descriptor
            b.sendall(b"x")
            return await reading

        assert loop.run_until_complete(read_once()) == 1
        fd = a.fileno()
        assert green._reader_hub is not None  # the loop watches the descriptor
        closer = threading.Thread(target=green.close)
        closer.start()
        closer.join()
        # Closed now (the loop is not running, so nothing else would close it), and
        # the loop no longer watches the descriptor.
        assert a.fileno() == -1
        assert fd not in loop._selector.get_map()  # type: ignore[attr-defined]
    finally:
        loop.close()


class _WantsReadOnFirstSend:
    """A socket whose first sends need to read first, as TLS sometimes does."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends = 0

    def send(self, data: Any) -> int:
        # (GreenSocket.sendall tries once before its waiting loop.)
        self.sends += 1
        if self.sends <= 2:
            raise ssl.SSLWantReadError("the TLS layer needs to read first")
        return self._sock.send(data)

    def pending(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def test_a_send_that_waits_to_read_keeps_the_read_registration(
    fw: Framework, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    a, b = socket_pair
    fake = _WantsReadOnFirstSend(a)
    green = GreenSocket(fake, timeout=None)  # type: ignore[arg-type]
    buf = bytearray(1)
    reading = hub().spawn(green.recv_into, buf)
    await asyncio.sleep(0.01)  # parked: the loop watches the descriptor
    b.sendall(b"1")
    assert await reading == 1
    assert green._reader_hub is not None
    sending = hub().spawn(green.sendall, b"data")
    await asyncio.sleep(0.01)
    assert not sending.done()  # waiting for readability
    b.sendall(b"2")
    await asyncio.wait_for(sending, 5)
    assert b.recv(4) == b"data"
    # The next read still has its registration: it sees the byte waiting for it.
    assert await asyncio.wait_for(hub().spawn(green.recv_into, buf), 5) == 1
    assert bytes(buf) == b"2"


async def test_cancel_reads_between_the_check_and_the_registration(
    fw: Framework, socket_pair: tuple[socket.socket, socket.socket], monkeypatch: Any
) -> None:
    """cancel_reads() from another thread, landing after a read checked the flag but
    before it registered with the loop, still stops that read."""
    a, _b = socket_pair
    green = GreenSocket(a, timeout=None)
    the_hub = hub()
    watch = the_hub.watch_readable

    def watch_after_a_cancel(fd: int, callback: Any) -> None:
        canceller = threading.Thread(target=green.cancel_reads)
        canceller.start()
        canceller.join()
        watch(fd, callback)

    monkeypatch.setattr(the_hub, "watch_readable", watch_after_a_cancel)
    with pytest.raises(TimeoutError, match="timed out"):
        await asyncio.wait_for(the_hub.spawn(green.recv_into, bytearray(1)), 5)


def _reset_connection() -> tuple[socket.socket, ssl.SSLContext]:
    """A client socket whose peer has reset the connection (the RST has arrived), and a
    TLS context that would accept any server."""
    import struct

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    accepted.close()  # an RST
    listener.close()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + 5
    while True:
        try:
            client.getpeername()  # still connected: the RST has not arrived yet
        except OSError:
            break
        assert time.monotonic() < deadline, "the reset never arrived"
        time.sleep(0.01)
    return client, context


def _half_made_ssl_sockets(error: BaseException) -> list[ssl.SSLSocket]:
    """The SSL sockets in the frames of ``error``'s traceback and of its causes'."""
    found = []
    current: BaseException | None = error
    while current is not None:
        tb = current.__traceback__
        while tb is not None:
            candidate = tb.tb_frame.f_locals.get("self")
            if isinstance(candidate, ssl.SSLSocket):
                found.append(candidate)
            tb = tb.tb_next
        current = current.__cause__
    return found


def test_a_connection_reset_before_the_handshake_leaves_no_socket_open() -> None:
    # ssl.SSLSocket._create takes the descriptor over, then finds the connection reset
    # (recv(1) raises): the half-made SSL socket must not stay open until collected.
    client, context = _reset_connection()
    with pytest.raises(ConnectionResetError) as raised:
        tls_handshake(client, context, None, None, 1.0)
    half_made = _half_made_ssl_sockets(raised.value)
    assert half_made, "the failure did not come from ssl.SSLSocket._create"
    assert [s.fileno() for s in half_made] == [-1] * len(half_made)


def test_a_reset_before_a_threaded_handshake_leaves_no_socket_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The same in PyMongo's own path (its monitor threads), where PyMongo re-raises the
    # OSError as AutoReconnect("SSL handshake failed: ..."): the half-made socket is in
    # the cause's traceback.  Left open, it is reported (ResourceWarning) whenever the
    # monitor drops the error, in whichever test runs then.
    client, context = _reset_connection()
    address = ("127.0.0.1", 1)

    def pymongo_path(address: Any, options: Any, ssl_session_cache: Any = None) -> Any:
        # PyMongo's _configured_socket_interface, from its wrap_socket on.
        try:
            return context.wrap_socket(client)
        except OSError as exc:
            pymongo.pool_shared._raise_connection_failure(address, exc, "SSL handshake failed: ")

    monkeypatch.setattr(green_pool, "_original_socket_interface", pymongo_path)
    with pytest.raises(AutoReconnect, match="SSL handshake failed") as raised:
        green_pool._socket_interface_dispatch(address, None)
    half_made = _half_made_ssl_sockets(raised.value)
    assert half_made, "the failure did not come from ssl.SSLSocket._create"
    assert [s.fileno() for s in half_made] == [-1] * len(half_made)


def _reauth_scenarios() -> list[tuple[str, Any]]:
    """(name, function of two connections giving the arguments, the keyword arguments and
    what the wrapped function does call by call: an exception to raise or a value to
    return)."""

    def bwc(conn: Any) -> Any:
        context = _BulkWriteContext.__new__(_BulkWriteContext)
        context.conn = conn
        return context

    def reauth() -> OperationFailure:
        return OperationFailure("reauthenticate", 391)

    def other() -> OperationFailure:
        return OperationFailure("bad value", 2)

    return [
        ("returns", lambda a, b: ((a,), {}, ["value"])),
        ("391 on a connection", lambda a, b: (("self", a), {}, [reauth(), "retried"])),
        ("391 on a bulk context", lambda a, b: (("self", bwc(a)), {"x": 1}, [reauth(), "ok"])),
        ("391, two connections", lambda a, b: ((b, a), {}, [reauth(), "retried"])),
        ("391, context first", lambda a, b: ((bwc(b), a), {}, [reauth(), "retried"])),
        ("391, empty context first", lambda a, b: ((bwc(None), b), {}, [reauth(), "never"])),
        ("391 twice", lambda a, b: ((a,), {}, [reauth(), reauth()])),
        ("391, then another error", lambda a, b: ((a,), {}, [reauth(), other()])),
        ("391 without a connection", lambda a, b: (("self", 1), {}, [reauth(), "never"])),
        ("391, no_reauth", lambda a, b: ((a,), {"no_reauth": True}, [reauth(), "never"])),
        ("391, no_reauth=False", lambda a, b: ((a,), {"no_reauth": False}, [reauth(), "ok"])),
        ("another code", lambda a, b: ((a,), {}, [other(), "never"])),
        ("another exception", lambda a, b: ((a,), {}, [KeyError("k"), "never"])),
    ]


@pytest.mark.parametrize("scenario", [name for name, _ in _reauth_scenarios()])
def test_reauthentication_retry_is_pymongo_s(
    monkeypatch: pytest.MonkeyPatch, scenario: str
) -> None:
    # motor.green.reauth's wrapper against PyMongo's _handle_reauth, the oracle: the same
    # calls, the same connection authenticated again outside the operation's id, the same
    # result or exception.
    from pymongo._op_id import OP_ID

    def run(wrap: Any) -> tuple[Any, ...]:
        connection_class = pymongo.synchronous.pool.Connection
        conns = [connection_class.__new__(connection_class) for _ in range(2)]
        make = dict(_reauth_scenarios())[scenario]
        args, kwargs, script = make(*conns)
        steps = iter(script)
        calls: list[Any] = []
        reauthenticated: list[Any] = []

        def authenticate(self: Any, reauthenticate: bool = False) -> None:
            reauthenticated.append((conns.index(self), reauthenticate, OP_ID.get()))

        monkeypatch.setattr(connection_class, "authenticate", authenticate)

        def func(*a: Any, **k: Any) -> Any:
            calls.append((a == args, k, OP_ID.get()))
            step = next(steps)
            if isinstance(step, BaseException):
                raise step
            return step

        token = OP_ID.set(42)
        try:
            outcome: Any = ("returned", wrap(func)(*args, **dict(kwargs)))
        except BaseException as exc:
            raised = [s for s in script if isinstance(s, BaseException)]
            outcome = (
                "raised",
                [exc is s for s in raised],
                [exc.__context__ is s for s in raised],
            )
        finally:
            OP_ID.reset(token)
        return outcome, calls, reauthenticated

    assert run(green_reauth.reauthenticating) == run(_handle_reauth)


def test_reauthentication_wrappers_are_installed() -> None:
    reauth = green_reauth
    green_pool.install()
    assert reauth.check_pymongo_internals() == []
    for cls, name in reauth.WRAPPED:
        method = vars(cls)[name]
        assert getattr(method, "motor_green", False), (cls, name)
        assert method.__wrapped__.__qualname__ == f"{cls.__name__}.{name}"
    # The same wrapper is PyMongo's cursors' and find_one's.
    assert vars(pymongo.synchronous.cursor_base._CursorBase)["_run_with_conn"] is (
        reauth.run_with_conn
    )


def test_reauthentication_shortcut_leaves_other_wrappers_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only PyMongo's own wrapper is replaced: one wrapped again (functools.wraps) or a proxy
    # that forwards __code__ and __wrapped__ stays, with PyMongo's wrapper inside it.
    def method(self: Any) -> str:
        return "sent"

    pymongo_wrapper = _handle_reauth(method)

    @functools.wraps(pymongo_wrapper)
    def instrumented(*args: Any, **kwargs: Any) -> Any:
        return pymongo_wrapper(*args, **kwargs)

    class Proxy:
        def __init__(self, wrapped: Any) -> None:
            self.__wrapped__ = wrapped
            self.__code__ = wrapped.__code__

        def __call__(self, *args: Any) -> Any:
            return self.__wrapped__(*args)

    proxy = Proxy(pymongo_wrapper)
    classes = [
        type(f"C{i}", (), {"m": m}) for i, m in enumerate([pymongo_wrapper, instrumented, proxy])
    ]
    monkeypatch.setattr(green_reauth, "WRAPPED", tuple((cls, "m") for cls in classes))
    green_reauth.install()
    replaced, kept, kept_proxy = (vars(cls)["m"] for cls in classes)
    assert getattr(replaced, "motor_green", False) and replaced.__wrapped__ is method
    assert kept is instrumented
    assert kept_proxy is proxy
    # PyMongo's wrapper changed: nothing is replaced.
    classes[0].m = pymongo_wrapper  # type: ignore[attr-defined]
    monkeypatch.setattr(green_reauth, "_PYMONGO_WRAPPER_NAMES", frozenset({"pop"}))
    green_reauth.install()
    assert vars(classes[0])["m"] is pymongo_wrapper


def test_reauthentication_check_reports_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    reauth = green_reauth
    monkeypatch.setattr(reauth, "_PYMONGO_WRAPPER_CONSTANTS", frozenset({None}))
    monkeypatch.setattr(pymongo.synchronous.pool.Connection, "command", lambda self: None)
    assert reauth.check_pymongo_internals() == [
        "pymongo.synchronous.helpers._handle_reauth changed",
        "Connection.command is no longer wrapped in _handle_reauth",
    ]
    monkeypatch.setattr(reauth, "_REAUTHENTICATION_REQUIRED", 18)
    assert reauth.check_pymongo_internals()[0] == (
        "ReauthenticationRequired is no longer error 391"
    )
