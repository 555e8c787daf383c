"""Scripting MockupDB servers for Motor's tests: one exchange at a time, with an oracle.

A Motor operation runs as a task on the loop while the test takes each request MockupDB
queued (in a worker thread, with a timeout, so a missing request fails fast instead of
hanging), checks it and answers it.  :func:`sync_script` plays the same replies to PyMongo's
sync client, the behaviour oracle, so a test can require Motor to end the same way
(:func:`summary`).  Used by :mod:`test.test_transactions` and :mod:`test.test_mockup_api`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pymongo
from mockupdb import MockupDB
from pymongo import monitoring
from pymongo.errors import PyMongoError

from test.framework import Framework

# How long to wait for a request the script expects, and for an operation to end after
# its last reply.
RECEIVE_TIMEOUT = 10.0


OP_TIMEOUT = 10.0


MAX_BUSY = 0.010


TRANSIENT = "TransientTransactionError"


UNKNOWN_COMMIT = "UnknownTransactionCommitResult"


LABELS = (TRANSIENT, UNKNOWN_COMMIT, "RetryableWriteError")


Reply = Callable[[Any], object]


Step = tuple[str, Reply]


Outcome = tuple[Any, BaseException | None]  # (returned value, raised exception)


def standing_replies(
    hello: dict[str, Any], hello_gate: threading.Event | None = None
) -> Callable[[Any], bool]:
    """Answer the handshake, heartbeats and housekeeping; leave everything else queued.

    With ``hello_gate``, hello answers wait until the gate is set: until then no client
    can learn anything about the server.
    """

    def respond(request: Any) -> bool:
        name = (request.command_name or "").lower()
        if name in ("ismaster", "hello"):
            if hello_gate is not None:
                hello_gate.wait(RECEIVE_TIMEOUT)
            return bool(request.ok(hello))
        if name in ("endsessions", "ping", "killcursors"):
            return bool(request.ok())
        return False

    return respond


def replica_set_member(
    mockup: Callable[..., MockupDB],
    max_wire_version: int = 21,
    hello_gate: threading.Event | None = None,
) -> MockupDB:
    """A MockupDB server that is the primary of the one-member replica set "rs"."""
    server = mockup(auto_ismaster=None)
    hello = {
        "ismaster": True,
        "isWritablePrimary": True,
        "setName": "rs",
        "hosts": [server.address_string],
        "minWireVersion": 0,
        "maxWireVersion": max_wire_version,
        "logicalSessionTimeoutMinutes": 30,
    }
    server.autoresponds(standing_replies(hello, hello_gate))
    return server


def ok(**fields: Any) -> Reply:
    return lambda request: request.ok(**fields)


def fail(code: int, errmsg: str, *labels: str) -> Reply:
    if labels:
        return lambda request: request.command_err(code, errmsg, errorLabels=list(labels))
    return lambda request: request.command_err(code, errmsg)


def hang_up(request: Any) -> object:
    return request.hangup()


def cursor_reply(docs: list[Any], ns: str = "db.coll", cursor_id: int = 0) -> Reply:
    return ok(cursor={"id": cursor_id, "ns": ns, "firstBatch": docs})


async def receive(
    server: MockupDB,
    name: str,
    op: asyncio.Future[Any] | None = None,
    timeout: float = RECEIVE_TIMEOUT,
    waiting_for: str = "",
) -> Any:
    """The next request ``server`` queues, which must be the command ``name``.

    Waited for in a worker thread for at most ``timeout``. If ``op`` (the operation that
    should send it) ends first, fail at once with what it returned or raised.
    """
    loop = asyncio.get_running_loop()
    waiting = loop.run_in_executor(None, functools.partial(server.receives, timeout=timeout))
    if op is not None:
        await asyncio.wait({waiting, op}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            waiting.cancel()
            raise AssertionError(f"the operation ended ({describe(op)}) before sending {name}")
    try:
        request = await waiting
    except AssertionError as exc:
        if waiting_for:
            raise AssertionError(f"{waiting_for}: {exc}") from None
        raise
    assert request is not None, "MockupDB was stopped"
    assert request.command_name == name, f"expected {name}, got {request!r}"
    return request


async def exchange(server: MockupDB, name: str, awaitable: Awaitable[Any], reply: Reply) -> Any:
    """Start a Motor operation, answer the one request it sends, return (request, result)."""
    op = asyncio.ensure_future(awaitable)
    try:
        request = await receive(server, name, op)
        reply(request)
        return request, await asyncio.wait_for(op, OP_TIMEOUT)
    finally:
        if not op.done():
            op.cancel()


def describe(op: asyncio.Future[Any]) -> str:
    if op.cancelled():
        return "cancelled"
    error = op.exception()
    return f"raised {error!r}" if error is not None else f"returned {op.result()!r}"


def play(server: MockupDB, steps: list[Step], requests: list[Any]) -> None:
    """Receive and answer ``steps`` in order (in a worker thread); collect the requests."""
    for name, reply in steps:
        request = server.receives(timeout=RECEIVE_TIMEOUT)
        if request is None:
            raise AssertionError("MockupDB was stopped")
        if request.command_name != name:
            raise AssertionError(
                f"exchange {len(requests) + 1}: expected {name}, got {request!r} "
                f"(after {[r.command_name for r in requests]})"
            )
        requests.append(request)
        reply(request)


async def run_script(
    server: MockupDB, steps: list[Step], awaitable: Awaitable[Any]
) -> tuple[list[Any], Outcome]:
    """Run a Motor operation while ``server`` answers ``steps``; the requests and outcome.

    Fails if the operation sends something else, ends before the last step, or does not
    end after it.
    """
    loop = asyncio.get_running_loop()
    op = asyncio.ensure_future(awaitable)
    requests: list[Any] = []
    played = loop.run_in_executor(None, play, server, steps, requests)
    try:
        await asyncio.wait({op, played}, return_when=asyncio.FIRST_COMPLETED)
        if not played.done():
            try:
                await asyncio.wait_for(asyncio.shield(played), 2.0)
            except TimeoutError:
                raise AssertionError(
                    f"the operation ended ({describe(op)}) after {len(requests)} of "
                    f"{len(steps)} scripted exchanges: {[r.command_name for r in requests]}"
                ) from None
        played.result()
        await asyncio.wait({op}, timeout=OP_TIMEOUT)
        assert op.done(), f"the operation did not end after the last of {len(steps)} replies"
    finally:
        if not played.done():
            played.cancel()
        if not op.done():
            op.cancel()
    error = op.exception()
    return requests, (None if error is not None else op.result(), error)


def sync_script(
    server: MockupDB,
    steps: list[Step],
    fn: Callable[[pymongo.MongoClient[Any]], Any],
    **client_options: Any,
) -> tuple[list[Any], Outcome]:
    """The oracle: ``fn(client)`` with PyMongo's sync client while ``server`` answers."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri, **client_options)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        future = pool.submit(fn, client)
        requests: list[Any] = []
        play(server, steps, requests)
        try:
            return requests, (future.result(timeout=OP_TIMEOUT), None)
        except Exception as exc:
            return requests, (None, exc)
    finally:
        pool.shutdown(wait=False)
        client.close()


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))


def summary(outcome: Outcome) -> tuple[Any, ...]:
    value, error = outcome
    if error is None:
        return ("returned", value)
    labels = tuple(
        label
        for label in LABELS
        if isinstance(error, PyMongoError) and error.has_error_label(label)
    )
    return ("raised", type(error), getattr(error, "code", None), labels)


class Commands(monitoring.CommandListener):
    """Names of the commands a client started (handshakes and heartbeats are not)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def let_run(iterations: int = 5) -> None:
    """Give the loop a few iterations (for an operation wrongly started in the background)."""
    for _ in range(iterations):
        await asyncio.sleep(0)


async def next_tick(fw: Framework) -> None:
    """Wait until the loop-stall probe has ticked, so it has measured what ran before."""
    ticks = fw.probe.ticks
    while fw.probe.ticks == ticks:
        await asyncio.sleep(0.001)
