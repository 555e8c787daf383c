"""Motor on uvloop, whose poll runs I/O callbacks inside libuv's ``uv__io_poll``.

libuv keeps a pointer to the events being dispatched, in that function's C stack frame,
and ``uv_poll_start`` / ``uv_poll_stop`` (every ``add_reader``, ``add_writer``,
``remove_reader``) read it.  A child greenlet resumed from such a callback runs on the
same C stack, over that frame, and its next ``add_writer`` or ``close()`` read the child's
data as libuv's: a segmentation fault under load (uvicorn cancelling requests).  On such
loops the hub runs children only from the loop's ready callbacks (``call_soon``), never
from its reader, writer or timer callbacks: these tests run operations of both frameworks
on a uvloop loop that marks while it runs one of those, started from the loop's callbacks
too (an application's protocol calling Motor), and check every switch into a child and
every command event.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import greenlet
import pytest
import uvloop
from pymongo import monitoring
from pymongo.errors import ServerSelectionTimeoutError

from motor.green.hub import Child, get_hub
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient


class _MarkingLoop(uvloop.Loop):
    """uvloop's loop, marking while it runs a reader, writer or timer callback."""

    in_native = False
    native_calls = 0

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        super().add_reader(fd, self._marked, callback, *args)

    def add_writer(self, fd: Any, callback: Any, *args: Any) -> None:  # type: ignore[override]
        super().add_writer(fd, self._marked, callback, *args)

    def call_later(self, delay: Any, callback: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().call_later(delay, self._marked, callback, *args, **kwargs)

    def call_at(self, when: Any, callback: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().call_at(when, self._marked, callback, *args, **kwargs)

    @classmethod
    def _marked(cls, callback: Any, *args: Any) -> None:
        cls.native_calls += 1
        outer, cls.in_native = cls.in_native, True
        try:
            callback(*args)
        finally:
            cls.in_native = outer


class _Switches:
    """Every switch into a child: how many, and how many inside a marked callback."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.inside: list[str] = []
        switch, throw = greenlet.greenlet.switch, greenlet.greenlet.throw

        def checked_switch(child: Any, *args: Any, **kwargs: Any) -> Any:
            self._note("switch")
            return switch(child, *args, **kwargs)

        def checked_throw(child: Any, *args: Any, **kwargs: Any) -> Any:
            self._note("throw")
            return throw(child, *args, **kwargs)

        monkeypatch.setattr(Child, "switch", checked_switch)
        monkeypatch.setattr(Child, "throw", checked_throw)

    def _note(self, how: str) -> None:
        self.count += 1
        if _MarkingLoop.in_native:
            self.inside.append(how)


class _Recorder(monitoring.CommandListener):
    """Whether each command event, published on the operation's child, ran inside a
    marked callback."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_native))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_native))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append((event.command_name, _MarkingLoop.in_native))


async def _work(client: Any, name: str) -> None:
    loop = asyncio.get_running_loop()
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
    # Operations called from the loop's reader and timer callbacks (an application's
    # protocol, a call_later), on new connections too.
    reader, writer = socket.socketpair()
    called: list[Any] = []

    def on_readable() -> None:
        reader.recv(1)
        called.append(coll.find_one({"_id": 7}))

    loop.add_reader(reader.fileno(), on_readable)
    try:
        for _ in range(10):
            writer.send(b"x")
            loop.call_later(0, lambda: called.append(coll.find_one({"_id": 8})))
            await asyncio.sleep(0.01)
    finally:
        loop.remove_reader(reader.fileno())
        reader.close()
        writer.close()
    assert [await f for f in called] == [{"_id": 7, "n": 7}, {"_id": 8, "n": 8}] * 10
    assert await coll.count_documents({}) == 500


async def _selection_timeouts(framework: str) -> None:
    # Timed waits that expire (the hub's timer resumes them): no server at the address.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=100&connectTimeoutMS=100"
    client: Any = AsyncIOMotorClient(uri) if framework == "asyncio" else MotorClient(uri)
    try:
        for _ in range(3):
            with pytest.raises(ServerSelectionTimeoutError):
                await client.test.c.find_one()
    finally:
        await client.close()


def test_children_never_run_inside_uvloop_s_callbacks(
    server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder()
    switches = _Switches(monkeypatch)
    name = f"motor_test_uvloop_{uuid.uuid4().hex[:8]}"
    loop = _MarkingLoop()
    _MarkingLoop.native_calls = 0

    async def main() -> None:
        clients: list[Any] = [
            AsyncIOMotorClient(server.uri, event_listeners=[recorder], maxPoolSize=4),
            MotorClient(server.uri, event_listeners=[recorder], maxPoolSize=4),
        ]
        try:
            for index, client in enumerate(clients):
                await _work(client, f"{name}_{index}")
            for framework in ("asyncio", "tornado"):
                await _selection_timeouts(framework)
        finally:
            for index, client in enumerate(clients):
                try:
                    await client.drop_database(f"{name}_{index}")
                finally:
                    await client.close()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    names = {command for command, _ in recorder.events}
    assert {"insert", "find", "count", "aggregate"} & names >= {"insert", "find"}
    # Replies and expired waits came through the marked callbacks.
    assert _MarkingLoop.native_calls > 100, _MarkingLoop.native_calls
    assert switches.count > 100, switches.count
    assert switches.inside == [], f"{len(switches.inside)} of {switches.count} switches"
    inside = [command for command, in_native in recorder.events if in_native]
    assert inside == [], f"{len(inside)} of {len(recorder.events)} events in a marked callback"


def test_uvloop_loop_has_a_native_poll() -> None:
    """The hub treats uvloop as a loop with a native poll (the check above relies on it)."""

    async def main() -> Any:
        return get_hub(asyncio.get_running_loop())

    loop = uvloop.new_event_loop()
    try:
        hub = loop.run_until_complete(main())
        assert hub._native_poll and hub._selector is None
    finally:
        loop.close()
