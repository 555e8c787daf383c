"""Ctrl-C, and a signal handler's ``sys.exit()``, stop the loop when they land in a call.

The default SIGINT handler raises ``KeyboardInterrupt`` in whatever Python code runs
when the signal arrives; a handler such as ``signal.signal(SIGTERM, lambda *_:
sys.exit(0))`` raises ``SystemExit`` the same way.  Under load most of the loop
thread's time is spent in Motor's child greenlets, so that is where they land.  Kept in
the call's future, as before, the exception was lost when nobody awaited the future (a
write fired and forgotten): ``run_forever()`` went on and the application ignored Ctrl-C;
and each task that awaited the future raised it once more.  Motor 3.7.1's worker threads
never got signals.

Here a function run with :func:`motor.run_green` raises the exception after a green
wait, so it is raised in a child resumed by a loop callback, where a signal would land.
It must come out of ``run_forever()`` (``IOLoop.start()``) once; the call's future is
cancelled; run again, the loop serves further calls, and a task that awaited the future
ends cancelled instead of raising the exception a second time.  Each test body runs
under asyncio, under Tornado and on uvloop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import motor
from motor.green.hub import Cancelled, Waiter, get_hub
from test.framework import Loops, close_client

# uvloop too: there children are started from its ready callbacks (see Hub._native_poll).
FRAMEWORKS = ["asyncio", "tornado", "uvloop"]

# Seconds after which the loop is stopped if the exception never came out of it.
GUARD = 5.0


def run_forever(loops: Loops, loop: Any) -> None:
    """Run ``loop`` until something stops it (the guard, at the latest)."""
    asyncio_loop = loops.asyncio_loop(loop)
    guard = asyncio_loop.call_later(GUARD, asyncio_loop.stop)
    try:
        if loops.name == "tornado":
            loop.start()
        else:
            asyncio_loop.run_forever()
    finally:
        guard.cancel()


def settle(loops: Loops, loop: Any) -> None:
    """Run the callbacks ``loop`` has ready, a few iterations' worth, after an exception
    came out of a run: the stops that run scheduled when its coroutine finished
    (asyncio's, and Tornado's ``run_sync``'s) must not stop the next run."""
    asyncio_loop = loops.asyncio_loop(loop)
    for _ in range(3):
        asyncio_loop.call_soon(asyncio_loop.stop)
        asyncio_loop.run_forever()


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("awaited", [False, True], ids=["unawaited", "awaited"])
def test_an_interrupt_in_a_call_stops_the_loop_once(
    server: Any, framework: str, interrupt: type[BaseException], awaited: bool
) -> None:
    loops = Loops(framework)
    loop = loops.new()
    client = loops.client(server.uri)
    green = motor.GreenMongoClient(server.uri)
    collection = green.motor_test.interrupts
    state: dict[str, Any] = {}

    def interrupted() -> None:
        collection.find_one({})  # parks the child until the reply arrives
        raise interrupt("raised as a signal handler would")

    async def start() -> None:
        state["future"] = future = motor.run_green(interrupted)

        async def awaiting() -> None:
            await future

        if awaited:
            state["task"] = asyncio.ensure_future(awaiting())

    async def afterwards() -> list[Any]:
        outcomes: list[Any] = []
        if awaited:
            outcomes = list(await asyncio.gather(state["task"], return_exceptions=True))
        # The loop serves Motor's calls and green calls as before.
        await client.motor_test.interrupts.insert_one({"after": True})
        assert await motor.run_green(collection.count_documents, {"after": True}) >= 1
        return outcomes

    try:
        loops.run(loop, start)
        with pytest.raises(interrupt, match="as a signal handler would"):
            run_forever(loops, loop)
        assert state["future"].cancelled()
        outcomes = loops.run(loop, afterwards)
        if awaited:
            # Cancelled with the call: not the interrupt a second time.
            assert [type(outcome) for outcome in outcomes] == [asyncio.CancelledError]
    finally:

        async def drop() -> None:
            await motor.run_green(collection.drop)

        loops.run(loop, drop)
        close_client(loops, client, loop)
        green.close()
        loops.close(loop)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_interrupt_leaves_the_work_around_it_done(server: Any, framework: str) -> None:
    """The interrupted child is resumed by the hub while it starts another call (its
    resume queued, which a start runs first): the start, and the call's admission turn,
    must not be lost to the exception.  Raised out of the hub's code, it left the insert
    neither started nor queued, its future pending and its turn taken for ever."""
    loops = Loops(framework)
    loop = loops.new()
    client = loops.client(server.uri, maxPoolSize=1)
    collection = client.motor_test.interrupts_around
    state: dict[str, Any] = {}

    def interrupted() -> None:
        get_hub(asyncio.get_running_loop()).pause()  # resumed from the hub's queue
        raise KeyboardInterrupt("raised as a signal handler would")

    async def start() -> None:
        await collection.delete_many({})
        state["interrupted"] = motor.run_green(interrupted)
        state["insert"] = collection.insert_one({"kept": True})

    async def afterwards() -> tuple[Any, int]:
        inserted = await asyncio.wait_for(state["insert"], 10)
        return inserted.acknowledged, await collection.count_documents({"kept": True})

    try:
        with pytest.raises(KeyboardInterrupt):
            # Raised from a callback of the loop: the start of the insert, which runs the
            # queued resume first, usually before run_until_complete returns; on a busy
            # machine the start can wait for a later iteration (the hub's work budget was
            # spent), so the loop runs on until the interrupt comes out.
            loops.run(loop, start)
            run_forever(loops, loop)
        settle(loops, loop)
        assert state["interrupted"].cancelled()
        assert loops.run(loop, afterwards) == (True, 1)
        assert client._binding._active == 0
        assert not client._binding._waiting
    finally:
        close_client(loops, client, loop)
        loops.close(loop)


@pytest.mark.usefixtures("short_drain")
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_interrupt_as_the_loop_closes_ends_every_call(framework: str) -> None:
    """Closing the loop cancels the calls parked on it; one whose cleanup raises
    ``KeyboardInterrupt`` must not leave the others parked: ``close()`` ends them all,
    then raises it."""
    loops = Loops(framework)
    loop = loops.new()
    cleaned: list[str] = []
    futures: dict[str, Any] = {}

    def parked(name: str) -> None:
        try:
            Waiter(get_hub(asyncio.get_running_loop())).get()  # never resumed
        except Cancelled:
            if name.startswith("interrupted"):
                raise KeyboardInterrupt("raised as a signal handler would") from None
            cleaned.append(name)
            raise

    # Half of them interrupted: the order the hub ends them in is its own.
    names = [f"{kind} {i}" for i in range(4) for kind in ("interrupted", "parked")]

    async def start() -> None:
        for name in names:
            futures[name] = motor.run_green(parked, name)

    loops.run(loop, start)
    hub = get_hub(loops.asyncio_loop(loop))
    with pytest.raises(KeyboardInterrupt):
        loops.close(loop)
    assert sorted(cleaned) == [name for name in names if name.startswith("parked")]
    assert all(future.cancelled() for future in futures.values())
    assert not [child for child in hub._children if child.future is not None]
