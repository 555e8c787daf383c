"""The green reply reader against PyMongo's own, on the same byte streams.

``motor.green.pool`` replaces ``receive_message`` in ``pymongo.synchronous.pool`` for
green sockets.  Each case here writes one byte stream (in chunks, with pauses) to two
socket pairs: one read by PyMongo's ``pymongo.network_layer.receive_message`` on a plain
blocking socket, one by Motor's reader on a green socket in a child greenlet.  Both must
return the same documents or raise the same error.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import struct
import threading
import time
import zlib
from types import SimpleNamespace
from typing import Any

import bson
import pymongo.network_layer
import pytest
from pymongo.network_layer import NetworkingInterface

from motor.green import pool as green_pool
from motor.green.hub import SCRATCH_SIZE, get_hub
from motor.green.socket import GreenSocket
from test.framework import Framework

REQUEST_ID = 7


def _op_msg(doc: dict[str, Any], response_to: int = REQUEST_ID) -> bytes:
    body = struct.pack("<iB", 0, 0) + bson.encode(doc)
    return struct.pack("<iiii", 16 + len(body), 0, response_to, 2013) + body


def _compressed(message: bytes) -> bytes:
    # OP_COMPRESSED around ``message``, zlib (compressor id 2).
    _, request_id, response_to, op_code = struct.unpack("<iiii", message[:16])
    packed = zlib.compress(message[16:])
    body = struct.pack("<iiB", op_code, len(message) - 16, 2) + packed
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, 2012) + body


class _Conn:
    """The parts of a PyMongo Connection that the reply readers use."""

    def __init__(self, interface: Any) -> None:
        self.conn = interface
        self.cancel_context = SimpleNamespace(cancelled=False)
        self.is_sdam = False
        self.last_timeout: float | None = None

    def set_conn_timeout(self, timeout: float | None) -> None:
        if timeout != self.last_timeout:
            self.last_timeout = timeout
            self.conn.get_conn.settimeout(timeout)


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        reply = call()
    except BaseException as exc:  # compared, not swallowed
        return type(exc).__name__, str(exc)
    return "reply", reply.unpack_response()


def _feed(sock: socket.socket, chunks: list[bytes | float], close: bool) -> threading.Thread:
    # Write the chunks (a float is a pause, in seconds), then maybe close.
    def run() -> None:
        for chunk in chunks:
            if isinstance(chunk, float):
                time.sleep(chunk)
            else:
                sock.sendall(chunk)
        if close:
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


DOC = {"ok": 1.0, "cursor": {"firstBatch": [{"x": i, "s": "y" * 100} for i in range(50)]}}
MESSAGE = _op_msg(DOC)
DOC2 = {"ok": 1.0, "n": 2}
# Larger than a hub's scratch buffer, which a child's first read of a reply fills.
BIG_DOC = {"ok": 1.0, "s": "z" * (3 * SCRATCH_SIZE)}

CASES: dict[str, tuple[list[bytes | float], bool, dict[str, Any]]] = {
    "one piece": ([MESSAGE], False, {}),
    "two replies in one piece": ([MESSAGE + _op_msg(DOC2)], False, {"reads": 2}),
    "two replies, the second split": (
        [MESSAGE + _op_msg(DOC2)[:10], 0.02, _op_msg(DOC2)[10:]],
        False,
        {"reads": 2},
    ),
    "larger than the scratch buffer": ([_op_msg(BIG_DOC)], False, {}),
    "compressed, one piece": ([_compressed(MESSAGE)], False, {}),
    "many pieces": (
        [MESSAGE[:5], 0.02, MESSAGE[5:16], 0.02, MESSAGE[16:100], 0.01, MESSAGE[100:]],
        False,
        {},
    ),
    "compressed": ([_compressed(MESSAGE)[:20], 0.01, _compressed(MESSAGE)[20:]], False, {}),
    "wrong response id": ([_op_msg(DOC, response_to=8)], False, {}),
    "length too short": ([struct.pack("<iiii", 16, 0, REQUEST_ID, 2013)], False, {}),
    "length too long": ([MESSAGE], False, {"max_message_size": 100}),
    "unknown opcode": ([struct.pack("<iiii", 20, 0, REQUEST_ID, 2222) + b"\0" * 4], False, {}),
    "closed mid-message": ([MESSAGE[:40]], True, {}),
    "closed before a reply": ([], True, {}),
    "timed out": ([MESSAGE[:40]], False, {"timeout": 0.05}),
}


def _outcomes(read: Any, reads: int) -> list[tuple[str, Any]]:
    outcomes = []
    for _ in range(reads):
        outcomes.append(_outcome(read))
        if outcomes[-1][0] != "reply":
            break
    return outcomes


EXPECTED_REPLIES: dict[str, list[list[Any]]] = {
    "one piece": [[DOC]],
    "many pieces": [[DOC]],
    "compressed": [[DOC]],
    "compressed, one piece": [[DOC]],
    "two replies in one piece": [[DOC], [DOC2]],
    "two replies, the second split": [[DOC], [DOC2]],
    "larger than the scratch buffer": [[BIG_DOC]],
}


@pytest.mark.parametrize("where", ["child", "thread"])
@pytest.mark.parametrize("case", list(CASES))
async def test_green_reader_matches_pymongo(fw: Framework, case: str, where: str) -> None:
    """In a child (which reads ahead into the hub's scratch buffer) and in a thread."""
    chunks, close, options = CASES[case]
    timeout = options.get("timeout", 5.0)
    max_size = options.get("max_message_size", 48_000_000)
    reads = options.get("reads", 1)
    green_pool.install()

    plain_a, plain_b = socket.socketpair()
    green_a, green_b = socket.socketpair()
    try:
        plain_a.settimeout(timeout)
        plain = _Conn(NetworkingInterface(plain_a))
        green = _Conn(green_pool.GreenInterface(GreenSocket(green_a, timeout)))
        feeders = [_feed(plain_b, chunks, close), _feed(green_b, chunks, close)]

        def pymongo_reads() -> list[tuple[str, Any]]:
            return _outcomes(
                lambda: pymongo.network_layer.receive_message(plain, REQUEST_ID, max_size),  # type: ignore[arg-type]
                reads,
            )

        def motor_reads() -> list[tuple[str, Any]]:
            return _outcomes(
                lambda: green_pool._green_receive_message(green, REQUEST_ID, max_size), reads
            )

        loop = asyncio.get_running_loop()
        expected = await loop.run_in_executor(None, pymongo_reads)
        if where == "child":
            got = await get_hub(loop).spawn(motor_reads)
        else:
            got = await loop.run_in_executor(None, motor_reads)
        for feeder in feeders:
            feeder.join()
    finally:
        for s in (plain_a, plain_b, green_a, green_b):
            s.close()
    assert got == expected
    if case in EXPECTED_REPLIES:
        assert expected == [("reply", docs) for docs in EXPECTED_REPLIES[case]]
    else:
        assert len(expected) == 1 and expected[0][0] != "reply"


async def test_green_reader_gives_up_on_a_cancelled_connection(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection cancelled while its reply is awaited (PyMongo's pool interrupting
    in-use connections) fails within one polling slice with PyMongo's
    _OperationCancelled, though its own timeout is far away."""
    monkeypatch.setattr(green_pool, "_POLL_TIMEOUT", 0.02)
    green_pool.install()
    a, b = socket.socketpair()
    try:
        conn = _Conn(green_pool.GreenInterface(GreenSocket(a, 30.0)))
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, setattr, conn.cancel_context, "cancelled", True)
        started = time.monotonic()
        outcome = await get_hub(loop).spawn(
            _outcome, lambda: green_pool._green_receive_message(conn, REQUEST_ID)
        )
        assert outcome == ("_OperationCancelled", "operation cancelled")
        assert time.monotonic() - started < 5
    finally:
        a.close()
        b.close()


def test_non_green_sockets_use_pymongo_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections of plain PyMongo clients (ordinary sockets) keep PyMongo's reader."""
    green_pool.install()
    calls = []
    original = green_pool._original_receive_message

    def spy(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(green_pool, "_original_receive_message", spy)
    a, b = socket.socketpair()
    try:
        a.settimeout(5)
        conn = _Conn(NetworkingInterface(a))
        b.sendall(MESSAGE)
        reply = green_pool._green_receive_message(conn, REQUEST_ID)
        assert reply.unpack_response() == [DOC]
        assert len(calls) == 1
    finally:
        a.close()
        b.close()


async def test_waking_cancellation_needs_no_polling_slice(
    fw: Framework, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Green connections' cancellation contexts wake the parked read (from any thread),
    and fail reads that start after the cancellation, with PyMongo's
    _OperationCancelled, although the polling slice is far longer."""
    green_pool.install()
    monkeypatch.setattr(green_pool, "_POLL_TIMEOUT", 30.0)
    loop = asyncio.get_running_loop()
    hub = get_hub(loop)
    for when in ("while parked", "before the read"):
        a, b = socket.socketpair()
        try:
            sock = GreenSocket(a, None)
            conn = _Conn(green_pool.GreenInterface(sock))
            conn.cancel_context = green_pool._WakingCancellation(sock)
            if when == "before the read":
                conn.cancel_context.cancel()
            started = time.monotonic()
            reading = hub.spawn(
                _outcome, functools.partial(green_pool._green_receive_message, conn, REQUEST_ID)
            )
            if when == "while parked":
                while sock._read_waiter is None or sock._read_waiter._child is None:
                    await asyncio.sleep(0.001)
                threading.Thread(target=conn.cancel_context.cancel).start()
            assert await reading == ("_OperationCancelled", "operation cancelled"), when
            assert time.monotonic() - started < 5
        finally:
            a.close()
            b.close()
