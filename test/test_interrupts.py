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
