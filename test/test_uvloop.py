"""Motor on uvloop, whose poll runs I/O callbacks inside libuv's ``uv__io_poll``.

libuv keeps a pointer to the events being dispatched, in that function's C stack frame,
and ``uv_poll_start`` / ``uv_poll_stop`` (every ``add_reader``, ``add_writer``,
``remove_reader``) read it.  A child greenlet resumed from such a callback runs on the
same C stack, over that frame, and its next ``add_writer`` or ``close()`` read the child's
data as libuv's: a segmentation fault under load (uvicorn cancelling requests).  On such
loops the hub runs children only from the loop's ready callbacks (``call_soon``): these
tests run operations of both frameworks on a uvloop loop whose I/O callbacks mark when
they run, and check from inside the children (command listeners run there) that none runs
inside one.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import uvloop
from pymongo import monitoring

from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient


class _MarkingLoop(uvloop.Loop):
    """uvloop's loop, marking while it runs a reader or writer callback (in its poll)."""

    in_poll = False
    polled = 0

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        super().add_reader(fd, self._marked, callback, *args)

    def add_writer(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        super().add_writer(fd, self._marked, callback, *args)

    def _marked(self, callback: Any, *args: Any) -> None:
        type(self).polled += 1
        type(self).in_poll = True
        try:
            callback(*args)
        finally:
            type(self).in_poll = False


class _Recorder(monitoring.CommandListener):
    """Whether each command event, published on the operation's child, ran inside a
    poll callback."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_poll))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_poll))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_poll))


async def _work(client: Any, name: str) -> None:
    coll = client[name].c
    await coll.insert_many([{"_id": i, "n": i} for i in range(500)])
    found = await asyncio.gather(*(coll.find_one({"_id": i}) for i in range(0, 500, 5)))
    assert found == [{"_id": i, "n": i} for i in range(0, 500, 5)]
    docs = await coll.find({}, batch_size=50).sort("_id").to_list()
    assert [d["_id"] for d in docs] == list(range(500))
    # Operations cancelled while their replies are awaited: their connections are
    # closed (remove_reader) by the children.
    for _ in range(5):
        pending = [asyncio.ensure_future(coll.find({}, batch_size=10).to_list()) for _ in range(8)]
        await asyncio.sleep(0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    assert await coll.count_documents({}) == 500


def test_children_never_run_inside_uvloop_s_poll(server: Any) -> None:
    recorder = _Recorder()
    name = f"motor_test_uvloop_{uuid.uuid4().hex[:8]}"
    loop = _MarkingLoop()
    _MarkingLoop.polled = 0

    async def main() -> None:
        clients: list[Any] = [
            AsyncIOMotorClient(server.uri, event_listeners=[recorder], maxPoolSize=4),
            MotorClient(server.uri, event_listeners=[recorder], maxPoolSize=4),
        ]
        try:
            for index, client in enumerate(clients):
                await _work(client, f"{name}_{index}")
        finally:
            for index, client in enumerate(clients):
                await client.drop_database(f"{name}_{index}")
                await client.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    names = {command for command, _ in recorder.events}
    assert {"insert", "find", "getMore", "count", "aggregate"} & names >= {"insert", "find"}
    assert _MarkingLoop.polled > 100, _MarkingLoop.polled  # replies came through the poll
    inside = [command for command, in_poll in recorder.events if in_poll]
    assert inside == [], f"{len(inside)} of {len(recorder.events)} events in a poll callback"


def test_uvloop_loop_has_no_selector_hook() -> None:
    """The hub treats uvloop as a loop with a native poll (the check above relies on it)."""
    from motor.green.hub import get_hub

    async def main() -> Any:
        return get_hub(asyncio.get_running_loop())

    loop = uvloop.new_event_loop()
    try:
        hub = loop.run_until_complete(main())
        assert hub._native_poll and hub._selector is None
    finally:
        loop.close()
