"""The hub's hook into asyncio's selector event loop (``_LoopHook``, the lean epoll
``select``) and the readers it dispatches (``Hub.watch_readable``)."""

from __future__ import annotations

import asyncio
import logging
import select
import selectors
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from motor.green import hub as hub_module
from motor.green.hub import _epoll_select, get_hub
from motor.green.socket import GreenSocket
from test.framework import Framework


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(5)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def _ready(result: list[tuple[Any, int]]) -> set[tuple[int, int, Any]]:
    return {(key.fd, events, key.data) for key, events in result}


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux-only")
def test_lean_epoll_select_matches_the_standard_library(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Same (key, events) pairs as EpollSelector.select for readable, writable, both,
    hung-up and idle descriptors."""
    selector = selectors.EpollSelector()
    try:
        lean = _epoll_select(selector)
        assert lean is not None
        (a0, b0), (a1, b1), (a2, b2), (a3, _), (a4, _) = pairs
        both = selectors.EVENT_READ | selectors.EVENT_WRITE
        selector.register(a0, selectors.EVENT_READ, "readable")
        selector.register(a1, both, "both")
        selector.register(a2, selectors.EVENT_READ, "hung up")
        selector.register(a3, both, "writable")
        selector.register(a4, selectors.EVENT_READ, "idle")
        b0.sendall(b"x")
        b1.sendall(b"x")
        b2.close()
        expected = _ready(selector.select(0))
        assert {(data, events) for _, events, data in expected} == {
            ("readable", selectors.EVENT_READ),
            ("both", both),
            ("hung up", selectors.EVENT_READ),
            ("writable", selectors.EVENT_WRITE),
        }
        assert _ready(lean(0)) == expected
        assert _ready(lean(0.001)) == expected
        assert _ready(lean(None)) == expected
        for sock in (a0, a1, a2, a3):
            selector.unregister(sock)
        assert lean(0.001) == selector.select(0) == []
    finally:
        selector.close()
    assert _epoll_select(selectors.PollSelector()) is None


async def test_loop_hook_is_installed(fw: Framework) -> None:
    """Fails loudly when asyncio's internals change: the hub counts iterations and
    dispatches green readers through the loop's _process_events, and replaces an
    EpollSelector's select."""
    loop = asyncio.get_running_loop()
    hub = get_hub(loop)
    assert not hub._marks_iterations
    hook = loop._motor_hook  # type: ignore[attr-defined]
    assert loop._process_events == hook.process_events  # type: ignore[attr-defined]
    assert hub._clock is hook.clock
    if sys.platform.startswith("linux"):
        selector = loop._selector  # type: ignore[attr-defined]
        assert type(selector) is selectors.EpollSelector
        assert selector.select.__name__ == "epoll_select"


async def test_green_and_loop_readers_ready_together(
    fw: Framework, pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    """A green read and an ordinary loop reader ready in the same poll both run; so
    does a green read on a descriptor the loop also watches for writing."""
    loop = asyncio.get_running_loop()
    hub = get_hub(loop)
    (a0, b0), (a1, b1), (a2, b2), *_ = pairs
    green = GreenSocket(a0, timeout=5)
    other = GreenSocket(a2, timeout=5)
    seen = asyncio.Event()
    a1.setblocking(False)
    loop.add_reader(a1.fileno(), lambda: (a1.recv(1), seen.set()))  # type: ignore[func-returns-value]
    try:

        def read(sock: GreenSocket) -> bytes:
            buf = bytearray(1)
            sock.recv_into(buf)
            return bytes(buf)

        reading = hub.spawn(read, green)
        while green._read_waiter is None or green._read_waiter._child is None:
            await asyncio.sleep(0.001)
        b0.sendall(b"g")
        b1.sendall(b"o")
        assert await reading == b"g"
        await asyncio.wait_for(seen.wait(), 5)

        # A writer on a watched descriptor: the loop runs both.
        reading = hub.spawn(read, other)
        while other._read_waiter is None or other._read_waiter._child is None:
            await asyncio.sleep(0.001)
        wrote = asyncio.Event()

        def on_writable() -> None:
            loop.remove_writer(a2.fileno())
            wrote.set()

        loop.add_writer(a2.fileno(), on_writable)
        await asyncio.wait_for(wrote.wait(), 5)
        b2.sendall(b"w")
        assert await reading == b"w"
    finally:
        loop.remove_reader(a1.fileno())
        green.close()
        other.close()


async def test_green_reader_error_goes_to_the_exception_handler(
    fw: Framework, pairs: list[tuple[socket.socket, socket.socket]]
) -> None:
    loop = asyncio.get_running_loop()
    hub = get_hub(loop)
    (a, b), *_ = pairs
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    calls = 0

    def callback() -> None:
        nonlocal calls
        calls += 1
        loop.remove_reader(a.fileno())
        raise ValueError("boom")

    try:
        hub.watch_readable(a.fileno(), callback)
        b.sendall(b"x")
        for _ in range(500):
            if reported:
                break
            await asyncio.sleep(0.001)
        # The loop goes on serving other tasks: the probe's ticker ticks again.
        ticks = fw.probe.ticks
        for _ in range(500):
            if fw.probe.ticks > ticks:
                break
            await asyncio.sleep(0.001)
    finally:
        loop.set_exception_handler(None)
        loop.remove_reader(a.fileno())
    assert calls == 1
    assert isinstance(reported[0]["exception"], ValueError)
    assert isinstance(reported[0]["handle"], hub_module._GreenReader)
    assert fw.probe.ticks > ticks


async def test_debug_mode_times_the_steps_of_tasks_that_await_operations(
    fw: Framework, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio's debug mode times the loop's callbacks, a task's steps among them: the
    step that follows an operation's completion is one too, so that a slow one is
    reported as the task's (with every callback "slow" here, each step is logged)."""
    coll = fw.client(server.uri).motor_test.debug_mode
    await coll.insert_one({})
    loop = asyncio.get_running_loop()
    duration = loop.slow_callback_duration

    async def probe() -> None:
        for _ in range(5):
            await coll.find_one()

    loop.set_debug(True)
    loop.slow_callback_duration = 0.0
    try:
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            await asyncio.create_task(probe(), name="debug-probe")
    finally:
        loop.set_debug(False)
        loop.slow_callback_duration = duration
    steps = [
        record
        for record in caplog.records
        if record.getMessage().startswith("Executing <Task")
        and "debug-probe" in record.getMessage()
    ]
    # The first step, and one after each of the five replies.
    assert len(steps) >= 6, [record.getMessage() for record in caplog.records]
    await coll.drop()
