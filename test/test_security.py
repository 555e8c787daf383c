"""Security: TLS verification, SCRAM credentials that never leak, and bad input.

Every case runs on Motor (under asyncio and Tornado, through ``fw``) and, in a worker
thread, on PyMongo's sync client, and the two outcomes are compared: the same exception
class (and, where nothing varies between runs, the same message) and the same traffic.
Traffic is watched twice: with a :class:`pymongo.monitoring.CommandListener` (the commands
PyMongo announced) and at a :class:`WireTap`, a loopback TCP proxy between each client and
the server that keeps every byte the client sent, so that "nothing reached the server" is
checked on the wire itself (MongoDB messages, or TLS records), and the password is
searched for there too.

TLS: a refusal of the server's certificate in the plain cases is made by PyMongo's monitor
thread, with PyMongo's own socket code: server selection fails before Motor opens a
connection.  The man-in-the-middle cases let the monitor through to the real server and
send the application's connections to an impostor, so that the refusal is the one of
Motor's green TLS handshake.

What the existing suites cover is extended, not repeated: the TLS handshake by IP and the
error class without a trusted CA (:mod:`test.test_green_core`; here also the message, the
wire, the impostor CA), sync PyMongo against the TLS and auth servers
(:mod:`test.test_harness`), bad collection names ``$x``, ``""`` and ``a..b``
(:mod:`test.test_api_collection`), ``io_loop=object()`` and an asyncio loop given to
``MotorClient`` (:mod:`test.test_green_misuse`).

Set ``MOTOR_SECURITY_MATRIX=path`` to have the outcome of every case appended to ``path``
(one JSON object a line): the case, Motor's outcome, sync PyMongo's, the traffic, and the
loop thread's longest CPU burst during the call.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import re
import socket
import ssl
import struct
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import bson
import pymongo
import pytest
from bson.errors import InvalidDocument
from pymongo.auth_oidc import OIDCCallback, OIDCCallbackContext, OIDCCallbackResult
from pymongo.errors import (
    AutoReconnect,
    ConfigurationError,
    DocumentTooLarge,
    InvalidName,
    InvalidOperation,
    InvalidURI,
    OperationFailure,
    ServerSelectionTimeoutError,
)
from pymongo.synchronous.command_cursor import CommandCursor
from pymongo.synchronous.cursor import Cursor

from test import server as test_server
from test.framework import Framework, assert_no_stall
from test.oracle import CommandRecorder, in_thread

MAX_STALL = 0.010
# Long enough for a TLS handshake on a loaded machine, short enough for refusals to end soon.
SELECTION_MS = 1000
# The handshake and the monitor's heartbeats: not what a case is about.
HANDSHAKE = {"hello", "ismaster", "isMaster"}
# TLS record content types (RFC 8446, 5.1).
TLS_CHANGE_CIPHER_SPEC, TLS_ALERT, TLS_HANDSHAKE, TLS_APPLICATION_DATA = 20, 21, 22, 23


class WireTap:
    """A loopback TCP proxy to ``upstream`` that keeps every byte each client sent.

    Listens on ``listen_host`` (any loopback address: 127.0.0.2 reaches a server bound
    to 127.0.0.1 this way, under another name).  ``connections`` counts accepted
    connections; :meth:`commands` parses what clients sent as MongoDB messages;
    :meth:`tls_records` as TLS records.
    """

    def __init__(self, upstream: tuple[str, int], listen_host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        # Where to send the n-th connection (from 0), if not to ``upstream``.
        self.route: Callable[[int], tuple[str, int]] | None = None
        self._listener = socket.socket()
        self._listener.bind((listen_host, 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.host, self.port = self._listener.getsockname()
        self._lock = threading.Lock()
        self._sent: list[bytearray] = []
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._sent)

    def sent(self) -> list[bytes]:
        """What each connection's client sent so far, in accept order."""
        with self._lock:
            return [bytes(b) for b in self._sent]

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = self.upstream if self.route is None else self.route(len(self._sent))
                server = socket.create_connection(upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            record = bytearray()
            with self._lock:
                self._sent.append(record)
                self._sockets += [client, server]
            for src, dst, keep in ((client, server, record), (server, client, None)):
                thread = threading.Thread(target=self._pump, args=(src, dst, keep), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, keep: bytearray | None) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                if keep is not None:
                    with self._lock:
                        keep += data
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def commands(self) -> collections.Counter[str]:
        """The MongoDB commands clients sent, by name (hello and isMaster included)."""
        names: collections.Counter[str] = collections.Counter()
        for data in self.sent():
            names.update(_command_names(data))
        return names

    def tls_records(self) -> list[list[tuple[int, int]]]:
        """Per connection, the (content type, length) of each TLS record the client sent."""
        result = []
        for data in self.sent():
            records = []
            offset = 0
            while offset + 5 <= len(data):
                kind, _version, length = struct.unpack_from(">BHH", data, offset)
                records.append((kind, length))
                offset += 5 + length
            result.append(records)
        return result

    def stop(self) -> None:
        self._stopped = True
        self._accepter.join()
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(5)
        for s in sockets:
            s.close()


_OP_MSG = 2013
_OP_QUERY = 2004


def _command_names(data: bytes) -> list[str]:
    """The command name of each complete OP_MSG / OP_QUERY message in ``data``."""
    names = []
    offset = 0
    while offset + 16 <= len(data):
        length, _request_id, _response_to, opcode = struct.unpack_from("<iiii", data, offset)
        if offset + length > len(data):
            break  # the rest is still in flight
        body = offset + 16
        if opcode == _OP_MSG:
            doc = body + 4 + 1  # flagBits, section kind 0, then the command document
        elif opcode == _OP_QUERY:
            doc = data.index(b"\0", body + 4) + 1 + 8  # flags, collection, skip, limit
        else:
            names.append(f"opcode {opcode}")
            offset += length
            continue
        key = doc + 4 + 1  # document length, element type
        names.append(data[key : data.index(b"\0", key)].decode())
        offset += length
    return names


# --------------------------------------------------------------------------- helpers

_MATRIX = os.environ.get("MOTOR_SECURITY_MATRIX")


def record(case: str, fw: Framework, motor: str, sync: str, wire: str, busy: float) -> None:
    """Append one line to the ``MOTOR_SECURITY_MATRIX`` file, if asked for."""
    if not _MATRIX:
        return
    line = {
        "case": case,
        "framework": fw.name,
        "motor": motor,
        "sync": sync,
        "wire": wire,
        "busy_ms": round(busy * 1000, 2),
    }
    with open(_MATRIX, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")


def via(server: test_server.Server, tap: WireTap) -> str:
    """``server.uri`` (credentials and options kept) with the tap in place of the server."""
    return server.uri.replace(f"{server.host}:{server.port}", tap.address, 1)


def pooled_socket(client: Any) -> Any:
    """The socket (an ``ssl.SSLSocket`` with TLS) of a pooled connection of a Motor or
    PyMongo client."""
    delegate = client if isinstance(client, pymongo.MongoClient) else client.delegate
    pool = next(iter(delegate._topology._servers.values())).pool
    sock = pool.conns[0].conn.get_conn
    return getattr(sock, "sock", sock)  # Motor's GreenSocket wraps the real socket


@dataclasses.dataclass
class Observed:
    """What one client did in one case."""

    error: type[BaseException] | None
    message: str
    # Motor: where the exception came ("call", "await", or "to_list" for a latent cursor).
    raised_at: str
    # Commands that reached the server (handshakes and heartbeats aside), by name.
    wire: dict[str, int]
    # Commands PyMongo announced to the CommandListener.
    started: list[str]
    # Connections opened (at the tap) during the case: PyMongo closes the connection
    # when encoding fails inside ``Connection.command`` (InvalidDocument, for one), and
    # the follow-up then opens a new one.
    connections: int
    # The loop thread's longest CPU burst during the call (Motor only).
    busy: float = 0.0

    def comparable(self) -> tuple[Any, ...]:
        return (self.error, self.message, self.wire, self.started, self.connections)

    def outcome(self) -> str:
        if self.error is None:
            return "returns"
        where = f" at {self.raised_at}" if self.raised_at else ""
        return f"{self.error.__name__}{where}"


def describe_wire(observed: Observed) -> str:
    """The case's own commands on the wire (the follow-up insert taken out)."""
    extra = collections.Counter(observed.wire) - collections.Counter({"insert": 1})
    text = ", ".join(f"{name} x{n}" for name, n in sorted(extra.items())) or "nothing"
    announced = list(observed.started)
    announced.remove("insert")
    if announced:
        # PyMongo announces a command before it checks its size: a CommandStartedEvent
        # (and a CommandFailedEvent) for a command that never left.
        text += f"; listener saw {', '.join(announced)} started"
    if observed.connections:
        text += f"; {observed.connections} new connection(s)"
    return text


def _normalized(exc: BaseException) -> str:
    """The message, with what differs between runs (generated ObjectIds, object addresses)
    masked."""
    message = re.sub(r"ObjectId\('[0-9a-f]{24}'\)", "ObjectId(...)", str(exc))
    return re.sub(r" at 0x[0-9a-f]+", " at 0x...", message)


def _is_motor_cursor(value: Any) -> bool:
    return type(value).__module__.startswith("motor.") and "Cursor" in type(value).__name__


def _is_motor_change_stream(value: Any) -> bool:
    return type(value).__module__.startswith("motor.") and "ChangeStream" in type(value).__name__


class WiredPair:
    """A Motor client and a sync PyMongo client on the same collection, each behind its
    own :class:`WireTap` and with its own :class:`CommandRecorder`.

    :meth:`run` runs one case on both, then a normal insert on both (the client must still
    work), and asserts the two outcomes equal: exception class and message, the commands
    on the wire and announced, the connections opened.
    """

    def __init__(self, fw: Framework, server: Any, tag: str) -> None:
        self.fw = fw
        self.server = server
        self.db_name = f"motor_sec_{tag}_{uuid.uuid4().hex[:6]}"
        self.motor_tap = WireTap((server.host, server.port))
        self.sync_tap = WireTap((server.host, server.port))
        self.motor_recorder = CommandRecorder()
        self.sync_recorder = CommandRecorder()
        # directConnection: nothing may reach the server around the tap.
        self.client = fw.client(
            via(server, self.motor_tap),
            directConnection=True,
            event_listeners=[self.motor_recorder],
        )
        self.coll = self.client[self.db_name].c
        self.sync_client: pymongo.MongoClient[Any] | None = None
        self.cases = 0

    async def __aenter__(self) -> WiredPair:
        def connect() -> pymongo.MongoClient[Any]:
            client: pymongo.MongoClient[Any] = pymongo.MongoClient(
                via(self.server, self.sync_tap),
                directConnection=True,
                event_listeners=[self.sync_recorder],
            )
            client.admin.command("ping")
            return client

        self.sync_client = await in_thread(connect)
        await self.client.admin.command("ping")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        sync_client = self.sync_client
        assert sync_client is not None

        def cleanup() -> None:
            try:
                sync_client.drop_database(self.db_name)
            finally:
                sync_client.close()

        try:
            await in_thread(cleanup)
        finally:
            self.motor_tap.stop()
            self.sync_tap.stop()

    @staticmethod
    def _snapshot(tap: WireTap, recorder: CommandRecorder) -> tuple[Any, int, int]:
        return tap.commands(), len(recorder.events), tap.connections

    @staticmethod
    def _delta(
        before: tuple[Any, int, int], tap: WireTap, recorder: CommandRecorder
    ) -> tuple[dict[str, int], list[str], int]:
        wire = tap.commands() - before[0]
        for name in HANDSHAKE:
            del wire[name]
        started = [e.command_name for e in recorder.events[before[1] :]]
        return dict(sorted(wire.items())), started, tap.connections - before[2]

    async def _motor(self, label: str, fn: Callable[[Any, Any], Any]) -> Observed:
        before = self._snapshot(self.motor_tap, self.motor_recorder)
        error: type[BaseException] | None = None
        message = raised_at = ""
        await self.fw.probe.settle()
        try:
            raised_at = "call"
            value = fn(self.client, self.coll)
            if inspect.isawaitable(value):
                raised_at = "await"
                await value
            elif _is_motor_cursor(value):
                raised_at = "to_list"
                await value.to_list()
            elif _is_motor_change_stream(value):
                raised_at = "first try_next"
                await value.try_next()
            raised_at = ""
        except Exception as exc:
            error, message = type(exc), _normalized(exc)
        await asyncio.sleep(0.005)  # the probe records a gap at its next tick
        busy = self.fw.probe.held
        try:
            await self.coll.insert_one({"case": label, "by": "motor"})
        except Exception as exc:
            raise AssertionError(f"{label}: the Motor client no longer works: {exc!r}") from exc
        wire, started, connections = self._delta(before, self.motor_tap, self.motor_recorder)
        return Observed(error, message, raised_at, wire, started, connections, busy)

    def _sync(self, label: str, fn: Callable[[Any, Any], Any]) -> Observed:
        client = self.sync_client
        assert client is not None
        coll = client[self.db_name].c
        before = self._snapshot(self.sync_tap, self.sync_recorder)
        error: type[BaseException] | None = None
        message = ""
        try:
            value = fn(client, coll)
            if isinstance(value, (Cursor, CommandCursor)):
                list(value)
        except Exception as exc:
            error, message = type(exc), _normalized(exc)
        try:
            coll.insert_one({"case": label, "by": "sync"})
        except Exception as exc:
            raise AssertionError(f"{label}: the sync client no longer works: {exc!r}") from exc
        wire, started, connections = self._delta(before, self.sync_tap, self.sync_recorder)
        return Observed(error, message, "", wire, started, connections)

    async def run(
        self,
        label: str,
        fn: Callable[[Any, Any], Any],
        expect: type[BaseException] | None,
        sent: bool,
        must_fail: bool = True,
    ) -> Observed:
        """Run ``fn(client, collection)`` on both clients and compare.

        ``expect``: the exception class (None: whatever the server says, as long as sync
        PyMongo gets the same).  ``sent``: whether the failing command reaches the server.
        ``must_fail=False``: the call may also succeed, as long as it does for both.
        """
        motor = await self._motor(label, fn)
        sync = await in_thread(lambda: self._sync(label, fn))
        self.cases += 1
        wire = describe_wire(motor)
        record(label, self.fw, motor.outcome(), sync.outcome(), wire, motor.busy)
        assert motor.comparable() == sync.comparable(), (
            f"{label}: Motor {motor.comparable()} != sync PyMongo {sync.comparable()}"
        )
        if expect is not None:
            assert motor.error is expect, f"{label}: {motor.error!r} is not {expect!r}"
        elif must_fail:
            assert motor.error is not None, f"{label}: no error"
        # The follow-up insert is on the wire in every case; anything else is the case's.
        extra = collections.Counter(motor.wire) - collections.Counter({"insert": 1})
        assert bool(extra) is sent, f"{label}: on the wire: {motor.wire}"
        return motor


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def impostor(tmp_path_factory: pytest.TempPathFactory) -> test_server.TLSFiles:
    """A second throwaway PKI made like the test server's: a CA with the same name
    ("Motor test CA") but another key, and a client certificate it signed."""
    return test_server.make_certificates(tmp_path_factory.mktemp("impostor-pki"))


@dataclasses.dataclass
class Attempt:
    """A client's ``ping`` through a tap: the error, what it sent, what it negotiated."""

    error: BaseException | None
    # Per connection, the (content type, length) of each TLS record the client sent.
    records: list[list[tuple[int, int]]]
    started: list[str]
    tls: dict[str, Any] | None = None
    busy: float = 0.0

    def outcome(self) -> str:
        return "connects" if self.error is None else type(self.error).__name__

    def reason(self) -> str:
        """The TLS reason in the error message: "[SSL: ...] ..." up to the source line."""
        found = re.search(r"\[SSL: [A-Z0-9_]+\][^(]*", str(self.error))
        return found.group(0).strip() if found else ""


def _tls_info(client: Any) -> dict[str, Any]:
    sock = pooled_socket(client)
    assert isinstance(sock, ssl.SSLSocket), sock
    cert = sock.getpeercert()  # {} when the certificate was not verified
    return {
        "version": sock.version(),
        "verify_mode": sock.context.verify_mode,
        "check_hostname": sock.context.check_hostname,
        "subjectAltName": cert.get("subjectAltName") if cert else None,
    }


async def motor_ping(fw: Framework, server: Any, host: str, listen: str, **options: Any) -> Attempt:
    """Motor's ``ping`` to ``server`` by the name ``host``, through a tap on ``listen``."""
    tap = WireTap((server.host, server.port), listen)
    recorder = CommandRecorder()
    try:
        # Made before the probe is reset: PyMongo loads CA files and the system's store
        # synchronously when a TLS client is constructed.
        client = fw.client(
            f"mongodb://{host}:{tap.port}/",
            serverSelectionTimeoutMS=SELECTION_MS,
            event_listeners=[recorder],
            **options,
        )
        await fw.probe.settle()
        error: BaseException | None = None
        try:
            await client.admin.command("ping")
        except Exception as exc:
            error = exc
        await asyncio.sleep(0.005)  # the probe records a gap at its next tick
        busy = fw.probe.held
        info = _tls_info(client) if error is None else None
        await client.close()
    finally:
        tap.stop()
    started = [e.command_name for e in recorder.events]
    return Attempt(error, tap.tls_records(), started, info, busy)


def sync_ping(server: Any, host: str, listen: str, **options: Any) -> Attempt:
    """:func:`motor_ping` with sync PyMongo (call it in a worker thread)."""
    tap = WireTap((server.host, server.port), listen)
    recorder = CommandRecorder()
    try:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(
            f"mongodb://{host}:{tap.port}/",
            serverSelectionTimeoutMS=SELECTION_MS,
            event_listeners=[recorder],
            **options,
        )
        error: BaseException | None = None
        try:
            client.admin.command("ping")
        except Exception as exc:
            error = exc
        info = _tls_info(client) if error is None else None
        client.close()
    finally:
        tap.stop()
    started = [e.command_name for e in recorder.events]
    return Attempt(error, tap.tls_records(), started, info)


async def both_ping(
    fw: Framework, case: str, server: Any, host: str, listen: str = "127.0.0.1", **options: Any
) -> tuple[Attempt, Attempt]:
    # At the same time: a refusal takes the whole server selection timeout.
    motor, sync = await asyncio.gather(
        motor_ping(fw, server, host, listen, **options),
        in_thread(lambda: sync_ping(server, host, listen, **options)),
    )
    wire = "; ".join(sorted(" ".join(map(str, shape)) for shape in shapes(motor.records)))
    record(case, fw, motor.outcome(), sync.outcome(), f"TLS records {wire}", motor.busy)
    assert motor.outcome() == sync.outcome(), (case, motor.error, sync.error)
    return motor, sync


def _types(conn: list[tuple[int, int]]) -> list[int]:
    return [kind for kind, _ in conn]


def shapes(records: list[list[tuple[int, int]]]) -> set[tuple[int, ...]]:
    """The record types of each connection, without those that are a strict prefix of
    another's: a connection the client or the tap closed mid-handshake (the monitor's,
    when server selection ended) says nothing of its own."""
    found = {tuple(_types(conn)) for conn in records}
    return {s for s in found if not any(len(t) > len(s) and t[: len(s)] == s for t in found)}


def handshake_only(conn: list[tuple[int, int]]) -> bool:
    """The client sent its ClientHello and at most an alert: no application data.

    An alert is 2 bytes in clear (type 21) or, encrypted in TLS 1.3, at most 24 bytes
    in an application-data record; MongoDB's smallest message (the handshake ``hello``)
    is hundreds of bytes.
    """
    if not conn:
        return True  # closed before the ClientHello (the client gave up on the server)
    if conn[0][0] != TLS_HANDSHAKE:
        return False
    rest = [r for r in conn[1:] if r[0] != TLS_CHANGE_CIPHER_SPEC]
    return len(rest) <= 1 and all(
        kind == TLS_ALERT or (kind == TLS_APPLICATION_DATA and length <= 24)
        for kind, length in rest
    )


def assert_refused_before_sending(motor: Attempt, sync: Attempt, reason: str) -> None:
    """Both refused the server during the handshake, with the same TLS reason."""
    for who, attempt in (("Motor", motor), ("sync PyMongo", sync)):
        assert isinstance(attempt.error, ServerSelectionTimeoutError), (who, attempt.error)
        assert "CERTIFICATE_VERIFY_FAILED" in str(attempt.error), (who, attempt.error)
        assert reason in attempt.reason(), (who, attempt.reason())
        assert any(attempt.records), f"{who}: nothing reached the server"
        assert all(handshake_only(conn) for conn in attempt.records), (who, attempt.records)
        assert attempt.started == [], (who, attempt.started)
    assert motor.reason() == sync.reason()
    assert shapes(motor.records) == shapes(sync.records), (motor.records, sync.records)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_tls_verifies_certificate_and_hostname_by_default(
    fw: Framework, tls_server: Any, host: str
) -> None:
    motor, sync = await both_ping(
        fw, f"TLS, test CA, by {host}", tls_server, host, tls=True, tlsCAFile=tls_server.ca_file
    )
    assert motor.error is None and sync.error is None
    assert motor.tls == sync.tls
    assert motor.tls is not None
    assert motor.tls["verify_mode"] == ssl.CERT_REQUIRED
    assert motor.tls["check_hostname"] is True
    assert ("DNS", "localhost") in motor.tls["subjectAltName"]
    assert ("IP Address", "127.0.0.1") in motor.tls["subjectAltName"]
    assert_no_stall(motor.busy, MAX_STALL)


@pytest.mark.parametrize("store", ["impostor CA file", "system store"])
async def test_tls_unknown_ca_is_refused(
    fw: Framework, tls_server: Any, impostor: test_server.TLSFiles, store: str
) -> None:
    """An impostor CA (same name, other key), or the system's CAs: refused in the handshake,
    with nothing but the ClientHello and an alert on the wire."""
    options: dict[str, Any] = {"tls": True}
    if store == "impostor CA file":
        options["tlsCAFile"] = impostor.ca_file
    motor, sync = await both_ping(fw, f"TLS, {store}", tls_server, "127.0.0.1", **options)
    assert_refused_before_sending(motor, sync, "certificate verify failed")
    assert_no_stall(motor.busy, MAX_STALL)


# Names the server certificate (SAN: DNS localhost, IP 127.0.0.1) does not carry, that
# still reach this machine without /etc/hosts: 127.0.0.2 is loopback on Linux (all of
# 127/8), where a tap listens and forwards to the server (bound to 127.0.0.1 only);
# "127.1" is the classic inet_aton shorthand that getaddrinfo resolves to 127.0.0.1, but
# for TLS it is a DNS name, not an IP address.
WRONG_NAMES = [
    ("127.0.0.2", "127.0.0.2", "IP address mismatch"),
    ("127.1", "127.0.0.1", "Hostname mismatch"),
]


@pytest.mark.parametrize(("host", "listen", "reason"), WRONG_NAMES)
async def test_tls_wrong_hostname_is_refused(
    fw: Framework, tls_server: Any, host: str, listen: str, reason: str
) -> None:
    ca = tls_server.ca_file
    motor, sync = await both_ping(
        fw, f"TLS, wrong name {host}", tls_server, host, listen, tls=True, tlsCAFile=ca
    )
    assert_refused_before_sending(motor, sync, reason)
    # The same name with tlsAllowInvalidHostnames: the certificate is still verified.
    motor, sync = await both_ping(
        fw,
        f"TLS, wrong name {host}, tlsAllowInvalidHostnames",
        tls_server,
        host,
        listen,
        tls=True,
        tlsCAFile=ca,
        tlsAllowInvalidHostnames=True,
    )
    assert motor.error is None and sync.error is None
    assert motor.tls == sync.tls
    assert motor.tls is not None
    assert motor.tls["verify_mode"] == ssl.CERT_REQUIRED
    assert motor.tls["check_hostname"] is False


INSECURE = [
    (
        "tlsAllowInvalidCertificates, impostor CA",
        "127.0.0.1",
        {"tlsAllowInvalidCertificates": True},
    ),
    ("tlsInsecure, impostor CA", "127.0.0.1", {"tlsInsecure": True}),
    ("tlsInsecure, impostor CA, wrong name", "127.0.0.2", {"tlsInsecure": True}),
    (
        "tlsAllowInvalidCertificates, no CA, wrong name",
        "127.0.0.2",
        {"tlsAllowInvalidCertificates": True, "tlsCAFile": None},
    ),
]


@pytest.mark.parametrize(("case", "host", "options"), INSECURE, ids=[c[0] for c in INSECURE])
async def test_tls_invalid_certificates_allowed_on_request(
    fw: Framework,
    tls_server: Any,
    impostor: test_server.TLSFiles,
    case: str,
    host: str,
    options: dict[str, Any],
) -> None:
    options = {"tls": True, "tlsCAFile": impostor.ca_file, **options}
    if options["tlsCAFile"] is None:
        del options["tlsCAFile"]
    motor, sync = await both_ping(fw, f"TLS, {case}", tls_server, host, host, **options)
    assert motor.error is None and sync.error is None, (motor.error, sync.error)
    assert motor.tls == sync.tls
    assert motor.tls is not None
    assert motor.tls["verify_mode"] == ssl.CERT_NONE
    assert motor.tls["check_hostname"] is False


@pytest.mark.parametrize("certificate", ["trusted", "none", "impostor"])
async def test_mutual_tls(
    fw: Framework, mtls_server: Any, impostor: test_server.TLSFiles, certificate: str
) -> None:
    """With TLS 1.3 the server judges the client's certificate after the client's last
    handshake message, so a refused client may have sent its handshake ``hello`` (no
    credentials in it) when the refusal arrives: sync PyMongo does the same."""
    options: dict[str, Any] = {"tls": True, "tlsCAFile": mtls_server.ca_file}
    if certificate == "trusted":
        options["tlsCertificateKeyFile"] = mtls_server.client_cert_file
    elif certificate == "impostor":
        options["tlsCertificateKeyFile"] = impostor.client_pem
    motor, sync = await both_ping(
        fw, f"mutual TLS, client certificate: {certificate}", mtls_server, "localhost", **options
    )
    if certificate == "trusted":
        assert motor.error is None and sync.error is None
        assert motor.tls == sync.tls
        return
    for who, attempt in (("Motor", motor), ("sync PyMongo", sync)):
        assert isinstance(attempt.error, ServerSelectionTimeoutError), (who, attempt.error)
        assert attempt.started == [], (who, attempt.started)
        # At most the client's handshake flight (ClientHello, change cipher spec,
        # certificate, certificate verify, finished) and the handshake hello, which
        # leaves or not depending on how soon the server's alert closes the connection
        # (for both clients alike): no operation was sent, no server was selected.
        for conn in attempt.records:
            assert len(conn) <= 6 and sum(length for _, length in conn) < 2048, (who, conn)
    # The client reads the server's alert, or finds the connection the server closed
    # after it: timing decides which, for sync PyMongo as for Motor.
    for who, attempt in (("Motor", motor), ("sync PyMongo", sync)):
        alert = attempt.reason()
        closed = "connection closed" in str(attempt.error)
        assert alert.startswith("[SSL: TLSV1") or closed, (who, attempt.error)
    if motor.reason() and sync.reason():
        assert motor.reason() == sync.reason()


# The refusals above happen in PyMongo's monitor thread, which opens its connection with
# PyMongo's own code, before Motor's green connection is ever tried: server selection
# fails first.  The cases below let the monitor reach the real server (the tap's first
# connection) and send every later connection, the application's, to a man in the middle
# holding another certificate: now the refusal is Motor's green TLS handshake's.


def make_pki(directory: Path, names: list[str]) -> tuple[str, str]:
    """A throwaway CA and a server certificate it signed for ``names`` (DNS names or IP
    addresses): (the CA's PEM file, the server's certificate-and-key PEM file)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Motor MITM CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    server_pem = directory / "server.pem"
    server_pem.write_bytes(
        cert.public_bytes(pem)
        + key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(ca_file), str(server_pem)


class Impostor:
    """A TLS server with another certificate: it completes handshakes, keeps what it is
    sent, and hangs up after the first bytes (it speaks no MongoDB)."""

    def __init__(self, server_pem: str) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(server_pem)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.address = self._listener.getsockname()
        self.handshakes: list[str] = []  # "ok", or the server's error
        self.received = b""
        self.served = threading.Event()  # set once a connection has been dealt with
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(5)
            try:
                with self._context.wrap_socket(raw, server_side=True) as conn:
                    self.handshakes.append("ok")
                    self.received += conn.recv(1 << 16)
            except (OSError, ssl.SSLError) as exc:
                self.handshakes.append(str(exc))
            finally:
                raw.close()
                self.served.set()

    def stop(self) -> None:
        self._stopped = True
        self._thread.join()
        self._listener.close()


@pytest.fixture(scope="module")
def mitm_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[str, str]]]:
    root = tmp_path_factory.mktemp("mitm-pki")
    yield {
        "right names": make_pki(root / "right", ["localhost", "127.0.0.1"]),
        "wrong name": make_pki(root / "wrong", ["impostor.invalid"]),
    }


async def mitm_ping(
    fw: Framework | None, server: Any, impostor: Impostor, ca_file: str
) -> tuple[BaseException | None, list[str], bytes]:
    """``ping`` (Motor's with ``fw``, else sync PyMongo's) through a tap whose first
    connection, the monitor's, reaches ``server`` and every later one ``impostor``."""
    tap = WireTap((server.host, server.port))
    tap.route = lambda n: (server.host, server.port) if n == 0 else impostor.address
    options: dict[str, Any] = {
        "tls": True,
        "tlsCAFile": ca_file,
        "serverSelectionTimeoutMS": SELECTION_MS,
    }
    error: BaseException | None = None
    try:
        if fw is not None:
            client = fw.client(f"mongodb://{tap.address}/", **options)
            try:
                await client.admin.command("ping")
            except Exception as exc:
                error = exc
            await client.close()
        else:

            def ping() -> BaseException | None:
                with pymongo.MongoClient(f"mongodb://{tap.address}/", **options) as client:  # type: pymongo.MongoClient[Any]
                    try:
                        client.admin.command("ping")
                    except Exception as exc:
                        return exc
                return None

            error = await in_thread(ping)
        # The client gives up as soon as its own side of the handshake fails; the
        # impostor's thread records its side when it gets to it (later, on a busy
        # machine).  A connection that never came leaves the lists empty.
        await in_thread(functools.partial(impostor.served.wait, 10))
    finally:
        tap.stop()
    return error, list(impostor.handshakes), impostor.received


MITM = [
    # (case, which impostor certificate, does the client trust the impostor's CA)
    ("unknown CA", "impostor", False),
    ("trusted CA, wrong name", "wrong name", True),
    ("trusted CA, right names (control)", "right names", True),
]


@pytest.mark.parametrize(("case", "certificate", "trusted"), MITM, ids=[m[0] for m in MITM])
async def test_tls_man_in_the_middle_after_the_monitor(
    fw: Framework,
    tls_server: Any,
    impostor: test_server.TLSFiles,
    mitm_pki: dict[str, tuple[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    certificate: str,
    trusted: bool,
) -> None:
    """Motor's own TLS handshake (on the application's connection) verifies the
    certificate and the name: it refuses an impostor before sending a byte, with sync
    PyMongo's error.  The control case, an impostor the client must trust, shows that the
    application's connection does reach the impostor."""
    if certificate == "impostor":
        impostor_ca, impostor_pem = impostor.ca_file, impostor.server_pem
    else:
        impostor_ca, impostor_pem = mitm_pki[certificate]
    ca_file = tls_server.ca_file
    if trusted:  # the test CA (for the real server) and the impostor's
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(Path(ca_file).read_bytes() + Path(impostor_ca).read_bytes())
        ca_file = str(bundle)
    # Spy on Motor's green handshake: the refusal must be its own.
    from motor.green import pool as green_pool

    handshake_calls: list[str | None] = []
    # pool.py imports tls_handshake without re-exporting it; the spy replaces that name.
    green_handshake = green_pool.tls_handshake  # type: ignore[attr-defined]

    def spy(sock: Any, context: Any, server_hostname: str | None, *args: Any) -> Any:
        handshake_calls.append(server_hostname)
        return green_handshake(sock, context, server_hostname, *args)

    monkeypatch.setattr(green_pool, "tls_handshake", spy)
    outcomes = {}
    for who in ("Motor", "sync PyMongo"):
        mitm = Impostor(impostor_pem)
        try:
            outcomes[who] = await mitm_ping(
                fw if who == "Motor" else None, tls_server, mitm, ca_file
            )
        finally:
            mitm.stop()
    (error, handshakes, received), (sync_error, sync_handshakes, sync_received) = outcomes.values()
    record(
        f"TLS man in the middle after the monitor, {case}",
        fw,
        type(error).__name__,
        type(sync_error).__name__,
        f"impostor received {len(received)} bytes (sync: {len(sync_received)})",
        0.0,
    )
    assert isinstance(error, AutoReconnect), error
    assert type(error) is type(sync_error), (error, sync_error)
    assert handshake_calls and handshake_calls[0] == "127.0.0.1", handshake_calls
    assert handshakes and sync_handshakes, "the application's connection never came"
    if certificate == "right names":
        assert handshakes[0] == sync_handshakes[0] == "ok"
        assert received and sync_received  # the handshake hello went to the impostor
        return
    assert "CERTIFICATE_VERIFY_FAILED" in str(error), error
    reason = re.search(r"certificate verify failed: [^(]*", str(error))
    sync_reason = re.search(r"certificate verify failed: [^(]*", str(sync_error))
    assert reason and sync_reason and reason.group(0) == sync_reason.group(0)
    assert "ok" not in handshakes + sync_handshakes, (handshakes, sync_handshakes)
    assert received == sync_received == b""


# --------------------------------------------------------------------------- SCRAM


class LogCapture(logging.Handler):
    """Every record, formatted as a handler would write it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def debug_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[LogCapture]:
    """All logging captured at DEBUG, PyMongo's included, with whole documents.

    PyMongo 4.20 logs through the ``pymongo.*`` loggers once they are enabled for DEBUG
    (``pymongo.command``, ``.connection``, ``.serverSelection``, ``.topology``,
    ``.client``), and truncates documents to ``MONGOB_LOG_MAX_DOCUMENT_LENGTH``
    characters (its spelling; the logging specification says ``MONGODB_...``): raised
    here so that nothing is cut off.
    """
    for name in ("MONGOB_LOG_MAX_DOCUMENT_LENGTH", "MONGODB_LOG_MAX_DOCUMENT_LENGTH"):
        monkeypatch.setenv(name, "1000000")
    handler = LogCapture()
    root, pymongo_logger = logging.getLogger(), logging.getLogger("pymongo")
    levels = root.level, pymongo_logger.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    pymongo_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        pymongo_logger.setLevel(levels[1])


def leaks(secret: str, texts: dict[str, str]) -> list[str]:
    """Where ``secret`` appears in ``texts``, as typed or escaped for a URI or a repr."""
    forms = {
        secret,
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret, safe=""),
        repr(secret)[1:-1],
    }
    return [where for where, text in texts.items() if any(form in text for form in forms)]


def wire_text(tap: WireTap) -> str:
    return b"".join(tap.sent()).decode("latin-1")


def client_texts(client: Any, delegate: Any, recorder: CommandRecorder) -> dict[str, str]:
    """What a user might print or log about a client and its commands."""
    return {
        "repr(client)": repr(client),
        "str(client)": str(client),
        "repr(client.delegate)": repr(delegate),
        "repr(database)": repr(client.motor_sec),
        "repr(collection)": repr(client.motor_sec.c),
        "repr(client.options)": repr(delegate.options),
        "command events": repr([(e.command_name, e.command) for e in recorder.events]),
    }


def error_texts(exc: BaseException, formatted: str) -> dict[str, str]:
    return {
        "str(exc)": str(exc),
        "repr(exc)": repr(exc),
        "exc.details": repr(getattr(exc, "details", None)),
        "exc.args": repr(exc.args),
        "traceback.format_exc()": formatted,
        "chained traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


MECHANISMS = ["negotiated", "SCRAM-SHA-256", "SCRAM-SHA-1"]


def _mechanism(mechanism: str) -> dict[str, Any]:
    # Negotiated: PyMongo asks with saslSupportedMechs and authenticates speculatively in
    # the handshake hello.
    return {} if mechanism == "negotiated" else {"authMechanism": mechanism}


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_scram_right_password(
    fw: Framework, auth_server: Any, debug_logs: LogCapture, mechanism: str
) -> None:
    """The credentials in the URI: the client works, and the password is nowhere."""
    password = auth_server.password
    expected_user = [{"user": auth_server.username, "db": "admin"}]
    tap = WireTap((auth_server.host, auth_server.port))
    sync_tap = WireTap((auth_server.host, auth_server.port))
    recorder, sync_recorder = CommandRecorder(), CommandRecorder()
    try:
        client = fw.client(
            via(auth_server, tap), event_listeners=[recorder], **_mechanism(mechanism)
        )
        coll = client.motor_sec.c
        await coll.insert_one({"_id": f"motor {mechanism}"})
        assert await coll.find_one({"_id": f"motor {mechanism}"})
        status = await client.admin.command("connectionStatus")
        assert status["authInfo"]["authenticatedUsers"] == expected_user
        texts = client_texts(client, client.delegate, recorder)

        def sync_side() -> tuple[dict[str, Any], dict[str, str]]:
            with pymongo.MongoClient(
                via(auth_server, sync_tap), event_listeners=[sync_recorder], **_mechanism(mechanism)
            ) as sync_client:  # type: pymongo.MongoClient[Any]
                sync_client.motor_sec.c.insert_one({"_id": f"sync {mechanism}"})
                status = sync_client.admin.command("connectionStatus")
                found = client_texts(sync_client, sync_client, sync_recorder)
                sync_client.motor_sec.c.delete_one({"_id": f"sync {mechanism}"})
                return status, found

        sync_status, sync_texts = await in_thread(sync_side)
        assert sync_status["authInfo"] == status["authInfo"]
        await coll.delete_one({"_id": f"motor {mechanism}"})
        await client.close()
    finally:
        tap.stop()
        sync_tap.stop()
    # The same authentication conversation (saslStart/saslContinue, or speculative in the
    # handshake), before the first insert.
    motor_auth = recorder.names()[: recorder.names().index("insert")]
    assert motor_auth == sync_recorder.names()[: sync_recorder.names().index("insert")]
    assert leaks(password, texts) == [], texts
    assert leaks(password, sync_texts) == [], sync_texts
    assert (
        leaks(password, {"Motor's wire": wire_text(tap), "sync's wire": wire_text(sync_tap)}) == []
    )
    logs = "\n".join(debug_logs.lines)
    assert "pymongo.command" in logs and "connectionStatus" in logs  # DEBUG logging was on
    assert leaks(password, {"logs": logs}) == []
    record(
        f"SCRAM {mechanism}, right password",
        fw,
        "works",
        "works",
        "no password on the wire",
        fw.probe.held,
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_scram_derives_the_salted_password_off_the_loop_s_thread(
    fw: Framework, auth_server: Any, monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    """SCRAM's salted password (PBKDF2: 15,000 rounds of SHA-256 or 10,000 of SHA-1, 5-7 ms
    of CPU in one C call) is derived in a worker thread while the operation's child waits:
    once per client and credentials (PyMongo caches it as soon as it is derived, before the
    server accepts or refuses it); sync PyMongo derives it on the thread that
    authenticates."""
    derived_on: list[int] = []
    real = hashlib.pbkdf2_hmac

    def watched(*args: Any, **kwargs: Any) -> bytes:
        derived_on.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", watched)
    loop_thread = threading.get_ident()
    client = fw.client(auth_server.uri, **_mechanism(mechanism))
    await client.motor_sec.c.find_one()
    await asyncio.gather(*(client.motor_sec.c.find_one() for _ in range(4)))  # more connections
    assert len(derived_on) == 1 and loop_thread not in derived_on, (derived_on, loop_thread)

    wrong = fw.client(
        auth_server.uri.replace(f":{auth_server.password}@", ":wrong-password@", 1),
        **_mechanism(mechanism),
    )
    for _ in range(2):
        with pytest.raises(OperationFailure):
            await wrong.motor_sec.c.find_one()
    assert len(derived_on) == 2 and loop_thread not in derived_on, (derived_on, loop_thread)

    def sync_find() -> int:
        with pymongo.MongoClient(auth_server.uri, **_mechanism(mechanism)) as sync_client:  # type: pymongo.MongoClient[Any]
            sync_client.motor_sec.c.find_one()
        return threading.get_ident()

    assert await in_thread(sync_find) == derived_on[-1]
    assert len(derived_on) == 3
    assert_no_stall(fw.probe.max_driver, MAX_STALL)


class TokenCallback(OIDCCallback):
    """A MONGODB-OIDC token callback that blocks for a while, as an HTTP request for a token
    does, and records the threads it ran on."""

    def __init__(self) -> None:
        self.threads: list[int] = []

    def fetch(self, context: OIDCCallbackContext) -> OIDCCallbackResult:
        self.threads.append(threading.get_ident())
        time.sleep(0.05)
        return OIDCCallbackResult(access_token=f"token-{len(self.threads)}")


def oidc_server(mockup: Callable[..., Any]) -> tuple[Any, list[tuple[str, Any]]]:
    """A MockupDB server that accepts any MONGODB-OIDC token, and the commands it got
    (name, and the decoded payload of a saslStart) other than handshakes."""
    server = mockup()
    commands: list[tuple[str, Any]] = []

    def respond(request: Any) -> bool:
        name = request.command_name
        if name == "saslStart":
            commands.append((name, bson.decode(request.doc["payload"])))
            return bool(request.ok(done=True, conversationId=1, payload=b""))
        if name == "find":
            commands.append((name, None))
            cursor = {"id": 0, "ns": "db.coll", "firstBatch": [{"_id": 1}]}
            return bool(request.ok(cursor=cursor))
        return False

    server.autoresponds(respond)
    return server, commands


async def test_oidc_token_callback_runs_off_the_loop_s_thread(
    fw: Framework, mockup: Callable[..., Any]
) -> None:
    """MONGODB-OIDC: the token callback (an HTTP request for the built-in Azure and GCP
    environments, and usually for an application's own) runs in a worker thread while the
    operations wait, as ``AsyncMongoClient`` runs it, and so does PyMongo's wait between
    two callback calls.  Operations starting together on new connections get one call;
    the conversation is sync PyMongo's."""
    server, commands = oidc_server(mockup)
    callback = TokenCallback()
    options: dict[str, Any] = {
        "authMechanism": "MONGODB-OIDC",
        "authMechanismProperties": {"OIDC_CALLBACK": callback},
    }
    client = fw.client(server.uri, **options)
    docs = await asyncio.gather(*(client.db.coll.find_one() for _ in range(4)))
    assert docs == [{"_id": 1}] * 4
    assert len(callback.threads) == 1, callback.threads
    assert threading.get_ident() not in callback.threads

    sync_server, sync_commands = oidc_server(mockup)
    sync_callback = TokenCallback()

    def sync_side() -> list[Any]:
        sync_options = {**options, "authMechanismProperties": {"OIDC_CALLBACK": sync_callback}}
        with pymongo.MongoClient(sync_server.uri, **sync_options) as sync_client:  # type: pymongo.MongoClient[Any]
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                return list(pool.map(lambda _: sync_client.db.coll.find_one(), range(4)))

    assert await in_thread(sync_side) == docs
    assert len(sync_callback.threads) == 1
    # Each new connection authenticated with the one token (how many connections the
    # four operations opened depends on timing, for both drivers).
    expected = [("saslStart", {"jwt": "token-1"}), ("find", None)]
    for recorded in (commands, sync_commands):
        assert expected[0] in recorded and all(entry in expected for entry in recorded)
        assert recorded.count(expected[1]) == 4, recorded
    assert_no_stall(fw.probe.max_driver, MAX_STALL)


FAKE_AWS_INIT = """
import threading

from pymongo_auth_aws.auth import AwsCredential, AwsSaslContext, PyMongoAuthAwsError

__version__ = "0+test"
IMPORTED_ON = threading.get_ident()
"""

FAKE_AWS_AUTH = """
# What PyMongo uses of pymongo-auth-aws; aws_temp_credentials stands for boto3's lookup.
import threading
import time

# boto3's import takes a while, during which other connections authenticate and find the
# module in sys.modules, half made.
time.sleep(0.1)

FETCHED_ON = []


class PyMongoAuthAwsError(Exception):
    pass


class AwsCredential:
    def __init__(self, username, password, token, expiration=None):
        self.username, self.password, self.token = username, password, token


def set_use_cached_credentials(value):
    pass


def set_cached_credentials(value):
    pass


def aws_temp_credentials():
    FETCHED_ON.append(threading.get_ident())
    time.sleep(0.05)  # an HTTP request to the instance metadata endpoint
    return AwsCredential("AKIDEXAMPLE", "secret", None)


class AwsSaslContext:
    def __init__(self, credentials):
        self._credentials = credentials
        self._steps = 0

    def step(self, server_payload):
        if self._credentials.username is None:
            self._credentials = aws_temp_credentials()
        self._steps += 1
        return self.binary_type()(self.bson_encode({"step": self._steps}))
"""


def aws_server(mockup: Callable[..., Any]) -> tuple[Any, list[str]]:
    """A MockupDB server that completes any MONGODB-AWS conversation in two steps, and the
    names of the commands it got other than handshakes."""
    server = mockup()
    commands: list[str] = []

    def respond(request: Any) -> bool:
        name = request.command_name
        if name in ("saslStart", "saslContinue", "find"):
            commands.append(name)
        if name == "saslStart":
            return bool(request.ok(conversationId=1, done=False, payload=b"server first"))
        if name == "saslContinue":
            return bool(request.ok(conversationId=1, done=True, payload=b""))
        if name == "find":
            cursor = {"id": 0, "ns": "db.coll", "firstBatch": [{"_id": 1}]}
            return bool(request.ok(cursor=cursor))
        return False

    server.autoresponds(respond)
    return server, commands


async def test_aws_library_import_and_credential_lookup_run_off_the_loop_s_thread(
    fw: Framework, mockup: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MONGODB-AWS: the first authentication imports pymongo-auth-aws (and boto3, hundreds
    of ms of Python) in a worker thread, and boto3's credential lookup (HTTP requests to
    AWS's metadata endpoints) runs there too, while the operation waits.  Checked with a
    stand-in for pymongo-auth-aws of the shape PyMongo uses; the conversation is sync
    PyMongo's."""
    package = tmp_path / "pymongo_auth_aws"
    package.mkdir()
    (package / "__init__.py").write_text(FAKE_AWS_INIT)
    (package / "auth.py").write_text(FAKE_AWS_AUTH)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("pymongo_auth_aws", "pymongo_auth_aws.auth"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        server, commands = aws_server(mockup)
        client = fw.client(server.uri, authMechanism="MONGODB-AWS")
        docs = await asyncio.gather(*(client.db.coll.find_one() for _ in range(3)))
        assert docs == [{"_id": 1}] * 3
        fake = sys.modules["pymongo_auth_aws"]
        fetched_on = sys.modules["pymongo_auth_aws.auth"].FETCHED_ON
        loop_thread = threading.get_ident()
        assert fake.IMPORTED_ON != loop_thread
        assert fetched_on and loop_thread not in fetched_on, fetched_on

        sync_server, sync_commands = aws_server(mockup)

        def sync_side() -> tuple[Any, int]:
            with pymongo.MongoClient(sync_server.uri, authMechanism="MONGODB-AWS") as sync:  # type: pymongo.MongoClient[Any]
                return sync.db.coll.find_one(), threading.get_ident()

        sync_doc, sync_thread = await in_thread(sync_side)
        assert sync_doc == docs[0]
        assert fetched_on[-1] == sync_thread  # sync PyMongo: on its calling thread
        # Each connection: saslStart, saslContinue; then the finds.
        for recorded, finds in ((commands, 3), (sync_commands, 1)):
            connections = recorded.count("saslStart")
            assert connections >= 1 and recorded.count("saslContinue") == connections
            assert recorded.count("find") == finds, recorded
        assert_no_stall(fw.probe.max_driver, MAX_STALL)
    finally:
        for name in ("pymongo_auth_aws", "pymongo_auth_aws.auth"):
            sys.modules.pop(name, None)


async def motor_wrong_password(
    fw: Framework, uri: str, options: dict[str, Any], tap: WireTap, recorder: CommandRecorder
) -> tuple[OperationFailure, dict[str, str], float]:
    """Motor's ``find_one`` with wrong credentials: the error, what might show the
    password, and the loop thread's longest CPU burst during the call."""
    client = fw.client(uri.format(address=tap.address), event_listeners=[recorder], **options)
    await fw.probe.settle()
    try:
        await client.motor_sec.c.find_one()
    except OperationFailure as exc:
        texts = error_texts(exc, traceback.format_exc())
        error = exc
    else:
        raise AssertionError("Motor authenticated with a wrong password")
    await asyncio.sleep(0.005)  # the probe records a gap at its next tick
    busy = fw.probe.held
    texts.update(client_texts(client, client.delegate, recorder))
    await client.close()
    return error, texts, busy


def sync_wrong_password(
    uri: str, options: dict[str, Any], tap: WireTap, recorder: CommandRecorder
) -> tuple[OperationFailure, dict[str, str]]:
    """:func:`motor_wrong_password` with sync PyMongo (in a worker thread)."""
    with pymongo.MongoClient(
        uri.format(address=tap.address), event_listeners=[recorder], **options
    ) as client:
        try:
            client.motor_sec.c.find_one()
        except OperationFailure as exc:
            texts = error_texts(exc, traceback.format_exc())
            texts.update(client_texts(client, client, recorder))
            return exc, texts
    raise AssertionError("PyMongo authenticated with a wrong password")


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_scram_wrong_password_fails_and_never_leaks(
    fw: Framework, auth_server: Any, debug_logs: LogCapture, mechanism: str
) -> None:
    """A wrong password, in the URI and as keyword arguments: ``OperationFailure`` code 18
    as in sync PyMongo, and the password in no message, repr, traceback, log or packet."""
    # Distinctive, and in need of escaping in a URI.
    password = f"Wrong-{uuid.uuid4().hex}-p@ss:w/rd%"
    user = auth_server.username
    base = "mongodb://{address}/?authSource=admin"
    forms: dict[str, tuple[str, dict[str, Any]]] = {
        "in the URI": (
            f"mongodb://{urllib.parse.quote_plus(user)}:{urllib.parse.quote_plus(password)}@"
            "{address}/?authSource=admin",
            {},
        ),
        "as keywords": (base, {"username": user, "password": password, "authSource": "admin"}),
    }
    for form, (uri, options) in forms.items():
        options = {**options, **_mechanism(mechanism)}
        tap = WireTap((auth_server.host, auth_server.port))
        sync_tap = WireTap((auth_server.host, auth_server.port))
        recorder, sync_recorder = CommandRecorder(), CommandRecorder()
        try:
            error, texts, busy = await motor_wrong_password(fw, uri, options, tap, recorder)
            sync_error, sync_texts = await in_thread(
                functools.partial(sync_wrong_password, uri, options, sync_tap, sync_recorder)
            )
        finally:
            tap.stop()
            sync_tap.stop()
        case = f"SCRAM {mechanism}, wrong password {form}"
        assert type(error) is type(sync_error) is OperationFailure, case
        assert error.code == sync_error.code == 18, case
        assert str(error) == str(sync_error), case
        assert error.details == sync_error.details, case
        assert recorder.names() == sync_recorder.names(), case
        assert leaks(password, texts) == [], (case, texts)
        assert leaks(password, sync_texts) == [], (case, sync_texts)
        wires = {"Motor's wire": wire_text(tap), "sync's wire": wire_text(sync_tap)}
        assert leaks(password, wires) == [], case
        # SCRAM's salted password is derived off the loop's thread (see
        # test_scram_derives_the_salted_password_off_the_loop_s_thread).
        record(case, fw, "OperationFailure 18", "OperationFailure 18", "no password", busy)
    logs = "\n".join(debug_logs.lines)
    assert "pymongo.connection" in logs  # DEBUG logging was on
    assert leaks(password, {"logs": logs}) == []


# --------------------------------------------------------------------------- bad input

# Whatever sync PyMongo gets from the server (the class depends on the server).
AS_SYNC = None

Case = tuple[str, Callable[[Any, Any], Any], Any, bool]


async def run_cases(fw: Framework, server: Any, tag: str, cases: list[Case]) -> list[Observed]:
    """Each case on Motor and sync PyMongo through :class:`WiredPair`; see :meth:`run`."""
    async with WiredPair(fw, server, tag) as pair:
        results = [await pair.run(label, fn, expect, sent) for label, fn, expect, sent in cases]
        # The follow-up inserts all landed: every case left a working client behind.
        assert await pair.coll.count_documents({"by": "motor"}) == len(cases)
    return results


NON_MAPPINGS: list[Case] = [
    ("insert_one('abc')", lambda c, coll: coll.insert_one("abc"), TypeError, False),
    ("insert_one([('a', 1)])", lambda c, coll: coll.insert_one([("a", 1)]), TypeError, False),
    ("insert_one(5)", lambda c, coll: coll.insert_one(5), TypeError, False),
    ("insert_many([1, 2])", lambda c, coll: coll.insert_many([1, 2]), TypeError, False),
    ("insert_many([{}, 'x'])", lambda c, coll: coll.insert_many([{}, "x"]), TypeError, False),
    ("insert_many('abc')", lambda c, coll: coll.insert_many("abc"), TypeError, False),
    ("insert_many({'a': 1})", lambda c, coll: coll.insert_many({"a": 1}), TypeError, False),
    ("insert_many([])", lambda c, coll: coll.insert_many([]), TypeError, False),
    ("replace_one({}, [1])", lambda c, coll: coll.replace_one({}, [1]), TypeError, False),
    ("update_one({}, 'x')", lambda c, coll: coll.update_one({}, "x"), TypeError, False),
    ("find([1])", lambda c, coll: coll.find([1]), TypeError, False),
    ("delete_one(5)", lambda c, coll: coll.delete_one(5), TypeError, False),
    ("command(5)", lambda c, coll: c.admin.command(5), TypeError, False),
    # A list is a pipeline update for PyMongo, so it goes to the server.
    ("update_one({}, [1])", lambda c, coll: coll.update_one({}, [1]), AS_SYNC, True),
]


async def test_non_mapping_documents(fw: Framework, server: Any) -> None:
    await run_cases(fw, server, "nonmap", NON_MAPPINGS)


def _insert_many_then_nul(c: Any, coll: Any) -> Any:
    return coll.insert_many([{"_id": "before the bad one"}, {"bad\0key": 1}])


KEYS: list[Case] = [
    # PyMongo 4 leaves $-prefixed keys to the server (FerretDB refuses them: code 2).
    ("insert_one({'$bad': 1})", lambda c, coll: coll.insert_one({"$bad": 1}), AS_SYNC, True),
    (
        "insert_one({'a': {'$bad': 1}})",
        lambda c, coll: coll.insert_one({"a": {"$bad": 1}}),
        AS_SYNC,
        True,
    ),
    ("insert_many([{'$bad': 1}])", lambda c, coll: coll.insert_many([{"$bad": 1}]), AS_SYNC, True),
    # ... but replacements and updates are checked before sending.
    (
        "replace_one({}, {'$set': ...})",
        lambda c, coll: coll.replace_one({}, {"$set": {"a": 1}}),
        ValueError,
        False,
    ),
    ("update_one({}, {'a': 1})", lambda c, coll: coll.update_one({}, {"a": 1}), ValueError, False),
    (
        "find_one_and_update({}, {'a': 1})",
        lambda c, coll: coll.find_one_and_update({}, {"a": 1}),
        ValueError,
        False,
    ),
    # NUL bytes: BSON cannot carry them in keys or regex patterns.
    (
        "insert_one({'a\\0b': 1})",
        lambda c, coll: coll.insert_one({"a\0b": 1}),
        InvalidDocument,
        False,
    ),
    (
        "insert_one({'a': {'b\\0': 1}})",
        lambda c, coll: coll.insert_one({"a": {"b\0": 1}}),
        InvalidDocument,
        False,
    ),
    # The first document is encoded, the second fails: the batch is never sent.
    ("insert_many([ok, {'bad\\0key': 1}])", _insert_many_then_nul, InvalidDocument, False),
    ("find_one({'a\\0': 1})", lambda c, coll: coll.find_one({"a\0": 1}), InvalidDocument, False),
    (
        "find_one(regex with NUL)",
        lambda c, coll: coll.find_one({"a": re.compile("a\0b")}),
        InvalidDocument,
        False,
    ),
    (
        "update_one({}, {'$set': {'a\\0': 1}})",
        lambda c, coll: coll.update_one({}, {"$set": {"a\0": 1}}),
        InvalidDocument,
        False,
    ),
    # PyMongo does not check a new collection name for NUL: the server refuses it.
    ("rename('a\\0')", lambda c, coll: coll.rename("a\0"), AS_SYNC, True),
]


async def test_dollar_and_nul_keys(fw: Framework, server: Any) -> None:
    await run_cases(fw, server, "keys", KEYS)


def _circular() -> dict[str, Any]:
    doc: dict[str, Any] = {}
    doc["self"] = doc
    return doc


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


UNENCODABLE: list[Case] = [
    ("insert_one({1: 2})", lambda c, coll: coll.insert_one({1: 2}), InvalidDocument, False),
    ("insert_one({'a': {1}})", lambda c, coll: coll.insert_one({"a": {1}}), InvalidDocument, False),
    (
        "insert_one({'a': object()})",
        lambda c, coll: coll.insert_one({"a": object()}),
        InvalidDocument,
        False,
    ),
    (
        "insert_one({'a': 2**64})",
        lambda c, coll: coll.insert_one({"a": 2**64}),
        OverflowError,
        False,
    ),
    # The encoder recurses in C: in Motor's child greenlet as in sync PyMongo's thread.
    # (Deeper than Python 3.13's C recursion limit, 10,000 levels; 3.11 and 3.12 stop at
    # the interpreter's recursion limit.)
    ("insert_one(circular)", lambda c, coll: coll.insert_one(_circular()), RecursionError, False),
    (
        "insert_one(nested 20000 deep)",
        lambda c, coll: coll.insert_one(_nested(20000)),
        RecursionError,
        False,
    ),
]


async def test_unencodable_documents(fw: Framework, server: Any) -> None:
    await run_cases(fw, server, "unencodable", UNENCODABLE)


async def test_session_of_another_client(fw: Framework, server: Any) -> None:
    """A session started by another client (a Motor one, its PyMongo delegate, a sync
    PyMongo one), or an ended session: InvalidOperation, nothing sent."""
    other = fw.client(server.uri)
    motor_session = await other.start_session()
    ended = await other.start_session()
    await ended.end_session()
    sync_other: pymongo.MongoClient[Any] = await in_thread(lambda: pymongo.MongoClient(server.uri))
    sync_session = sync_other.start_session()
    sync_ended = sync_other.start_session()
    sync_ended.end_session()

    def pick(c: Any, motor_one: Any, sync_one: Any) -> Any:
        return sync_one if isinstance(c, pymongo.MongoClient) else motor_one

    cases: list[Case] = [
        (
            "find_one(session=another client's)",
            lambda c, coll: coll.find_one({}, session=pick(c, motor_session, sync_session)),
            InvalidOperation,
            False,
        ),
        (
            "insert_one(session=another client's PyMongo session)",
            lambda c, coll: coll.insert_one(
                {}, session=pick(c, sync_session, motor_session.delegate)
            ),
            InvalidOperation,
            False,
        ),
        (
            "find_one(session=an ended one of another client)",
            lambda c, coll: coll.find_one({}, session=pick(c, ended, sync_ended)),
            InvalidOperation,
            False,
        ),
    ]
    try:
        await run_cases(fw, server, "sessions", cases)
    finally:
        await motor_session.end_session()
        sync_session.end_session()
        await in_thread(sync_other.close)


@pytest.fixture(scope="module")
def big_string() -> str:
    """17 MiB: over the 16 MiB BSON limit (and its 16 KiB allowance for command overhead)."""
    return "x" * (17 * 1024 * 1024)


async def test_oversized_documents(fw: Framework, server: Any, big_string: str) -> None:
    """PyMongo refuses a document over the server's maxBsonObjectSize after encoding it, on
    the caller's thread: on the loop here.  ``insert_many`` leaves the check to the server
    (with acknowledged writes, PyMongo sends whatever fits in a message: 48 MB); FerretDB
    1.24 stores the 17 MiB document, mongod refuses it; either way as sync PyMongo."""
    big = {"x": big_string}
    cases: list[Case] = [
        ("insert_one(17 MiB)", lambda c, coll: coll.insert_one(dict(big)), DocumentTooLarge, False),
        ("find_one(17 MiB filter)", lambda c, coll: coll.find_one(big), DocumentTooLarge, False),
        (
            "replace_one({}, 17 MiB)",
            lambda c, coll: coll.replace_one({"_id": 0}, big),
            DocumentTooLarge,
            False,
        ),
        (
            "update_one({}, {'$set': 17 MiB})",
            lambda c, coll: coll.update_one({"_id": 0}, {"$set": big}),
            DocumentTooLarge,
            False,
        ),
    ]
    async with WiredPair(fw, server, "big") as pair:
        for label, fn, expect, sent in cases:
            motor = await pair.run(label, fn, expect, sent)
            # The cost of refusing: encoding 17 MiB on the loop thread.  Inherent to PyMongo's
            # order (encode, then compare with maxBsonObjectSize), so reported, not bounded.
            print(f"{fw.name}: {label}: loop thread busy {motor.busy * 1000:.1f} ms")
        # Sent whole (one insert of 17 MiB), and stored or refused as sync PyMongo's.
        label = "insert_many([17 MiB])"
        motor = await pair.run(
            label, lambda c, coll: coll.insert_many([dict(big)]), AS_SYNC, True, must_fail=False
        )
        assert motor.wire == {"insert": 2}, motor.wire  # the 17 MiB one and the follow-up


WRONG_TYPES: list[Case] = [
    ("find(skip='1')", lambda c, coll: coll.find(skip="1"), TypeError, False),
    ("find(limit=1.5)", lambda c, coll: coll.find(limit=1.5), TypeError, False),
    ("find().batch_size('x')", lambda c, coll: coll.find().batch_size("x"), TypeError, False),
    ("find().sort(5)", lambda c, coll: coll.find().sort(5), TypeError, False),
    ("aggregate('x')", lambda c, coll: coll.aggregate("x"), TypeError, False),
    ("distinct(5)", lambda c, coll: coll.distinct(5), TypeError, False),
    ("create_index(5)", lambda c, coll: coll.create_index(5), TypeError, False),
    ("watch('x')", lambda c, coll: coll.watch("x"), TypeError, False),
    ("drop_database(5)", lambda c, coll: c.drop_database(5), TypeError, False),
    ("drop_collection(5)", lambda c, coll: coll.database.drop_collection(5), TypeError, False),
    ("client[5]", lambda c, coll: c[5], TypeError, False),
    ("database[5]", lambda c, coll: coll.database[5], TypeError, False),
    (
        "with_options(read_preference='bad')",
        lambda c, coll: coll.with_options(read_preference="bad"),
        TypeError,
        False,
    ),
    # Not checked by PyMongo: the server refuses them.
    ("count_documents('x')", lambda c, coll: coll.count_documents("x"), AS_SYNC, True),
    (
        "find_one(max_time_ms='x')",
        lambda c, coll: coll.find_one({}, max_time_ms="x"),
        AS_SYNC,
        True,
    ),
]


async def test_wrong_argument_types(fw: Framework, server: Any) -> None:
    """The TypeErrors of sync PyMongo, nothing sent.  Motor raises a method's TypeError
    when the method is awaited (a latent cursor's, such as ``aggregate``'s, when it is
    read; a change stream's at its first fetch), sync PyMongo at the call: the matrix
    shows which."""
    await run_cases(fw, server, "types", WRONG_TYPES)


INVALID_NAMES: list[Case] = [
    ("client['a b']", lambda c, coll: c["a b"], InvalidName, False),
    ("client['']", lambda c, coll: c[""], InvalidName, False),
    ("client['a.b']", lambda c, coll: c["a.b"], InvalidName, False),
    ("client['a\\0']", lambda c, coll: c["a\0"], InvalidName, False),
    ("client['$x']", lambda c, coll: c["$x"], InvalidName, False),
    ("client['a/b']", lambda c, coll: c["a/b"], InvalidName, False),
    ("get_database('a b')", lambda c, coll: c.get_database("a b"), InvalidName, False),
    ("drop_database('a b')", lambda c, coll: c.drop_database("a b"), InvalidName, False),
    ("database['x.']", lambda c, coll: coll.database["x."], InvalidName, False),
    ("database['.x']", lambda c, coll: coll.database[".x"], InvalidName, False),
    ("database['a\\0b']", lambda c, coll: coll.database["a\0b"], InvalidName, False),
    # PyMongo first asks whether the collection exists (listCollections), then refuses.
    (
        "create_collection('$x')",
        lambda c, coll: coll.database.create_collection("$x"),
        InvalidName,
        True,
    ),
    ("rename('$x')", lambda c, coll: coll.rename("$x"), InvalidName, False),
    ("rename('x.')", lambda c, coll: coll.rename("x."), InvalidName, False),
]


async def test_invalid_names(fw: Framework, server: Any) -> None:
    await run_cases(fw, server, "names", INVALID_NAMES)


# A distinctive password, for the URI cases: no error message may echo it.
URI_PASSWORD = f"UriSecret{uuid.uuid4().hex}"

# (case, URI with {tap} for the tap's address, keyword arguments, expected class)
BAD_CLIENTS: list[tuple[str, str, dict[str, Any], type[BaseException]]] = [
    ("empty URI", "", {}, ConfigurationError),
    ("http:// scheme", "http://{tap}", {}, InvalidURI),
    ("no host", "mongodb://", {}, InvalidURI),
    ("port out of range", "mongodb://u:{pw}@127.0.0.1:99999", {}, ValueError),
    ("unescaped @ in credentials", "mongodb://u:a@b{pw}@{tap}", {}, InvalidURI),
    ("mongodb+srv with two hosts", "mongodb+srv://a.example,b.example/", {}, InvalidURI),
    ("mongodb+srv with a port", "mongodb+srv://a.example:27017/", {}, InvalidURI),
    (
        "tlsInsecure with tlsAllowInvalidCertificates in the URI",
        "mongodb://{tap}/?tlsInsecure=true&tlsAllowInvalidCertificates=false",
        {},
        InvalidURI,
    ),
    (
        "directConnection with two hosts",
        "mongodb://{tap},127.0.0.1:1/?directConnection=true",
        {},
        ConfigurationError,
    ),
    (
        "loadBalanced with replicaSet",
        "mongodb://{tap}/?loadBalanced=true&replicaSet=rs",
        {},
        ConfigurationError,
    ),
    (
        "MONGODB-X509 with a password",
        "mongodb://u:{pw}@{tap}/?authMechanism=MONGODB-X509&tls=true",
        {},
        ConfigurationError,
    ),
    ("maxPoolSize=-1", "mongodb://{tap}", {"maxPoolSize": -1}, ValueError),
    (
        "serverSelectionTimeoutMS='x'",
        "mongodb://{tap}",
        {"serverSelectionTimeoutMS": "x"},
        ValueError,
    ),
    ("tls='maybe'", "mongodb://{tap}", {"tls": "maybe"}, ValueError),
    (
        "tlsInsecure with tlsAllowInvalidCertificates as keywords",
        "mongodb://{tap}",
        {"tls": True, "tlsInsecure": True, "tlsAllowInvalidCertificates": False},
        InvalidURI,
    ),
    (
        "tlsCAFile that does not exist",
        "mongodb://{tap}",
        {"tls": True, "tlsCAFile": "/nonexistent/ca.pem"},
        FileNotFoundError,
    ),
    (
        "authMechanism='BOGUS'",
        "mongodb://{tap}",
        {"authMechanism": "BOGUS", "username": "u", "password": "{pw}"},
        ValueError,
    ),
    ("password=5", "mongodb://{tap}", {"username": "u", "password": 5}, TypeError),
    ("journal='x'", "mongodb://{tap}", {"journal": "x"}, ValueError),
    ("socketTimeoutMS=-1", "mongodb://{tap}", {"socketTimeoutMS": -1}, ValueError),
    ("port='x'", "{tap_host}", {"port": "x"}, TypeError),
    ("document_class=5", "mongodb://{tap}", {"document_class": 5}, TypeError),
]


def _fill(value: Any, tap: WireTap) -> Any:
    if isinstance(value, str):
        return value.format(tap=tap.address, tap_host=tap.host, pw=URI_PASSWORD)
    return value


def _construct(make: Callable[..., Any], uri: str, kwargs: dict[str, Any], tap: WireTap) -> Any:
    """``make(uri, **kwargs)``: the exception (or the client), and the threads it left."""
    threads = threading.active_count()
    try:
        client = make(_fill(uri, tap), **{k: _fill(v, tap) for k, v in kwargs.items()})
    except Exception as exc:
        return exc, threading.active_count() - threads
    return client, threading.active_count() - threads


async def test_invalid_uris_and_options(fw: Framework) -> None:
    """Refused at construction with sync PyMongo's exception and message, before any
    connection (nothing reaches a tap named in the URI, no monitor thread starts), and
    without echoing a password."""
    for case, uri, kwargs, expected in BAD_CLIENTS:
        motor_tap = WireTap(("127.0.0.1", 9))  # nothing behind: nothing may connect
        sync_tap = WireTap(("127.0.0.1", 9))
        try:
            motor, motor_threads = _construct(fw.client, uri, kwargs, motor_tap)
            sync, sync_threads = await in_thread(
                functools.partial(_construct, pymongo.MongoClient, uri, kwargs, sync_tap)
            )
            await asyncio.sleep(0.1)  # a monitor would have connected by now
            assert motor_tap.connections == sync_tap.connections == 0, case
        finally:
            motor_tap.stop()
            sync_tap.stop()
        record(case, fw, type(motor).__name__, type(sync).__name__, "no connection", 0.0)
        assert type(motor) is type(sync) is expected, (case, motor, sync)
        assert _normalized(motor) == _normalized(sync), case
        assert motor_threads == sync_threads == 0, (case, motor_threads, sync_threads)
        texts = {"str": str(motor), "repr": repr(motor), "args": repr(motor.args)}
        texts["traceback"] = "".join(traceback.format_exception(type(motor), motor, None))
        assert leaks(URI_PASSWORD, texts) == [], (case, texts)


async def test_bad_io_loop(fw: Framework, server: Any) -> None:
    """A wrong ``io_loop`` is refused with TypeError before PyMongo's client exists: no
    connection, no thread.  (``object()``, and an asyncio loop for ``MotorClient``, are
    in test_green_misuse; these are the other wrong kinds.)"""
    from tornado.ioloop import IOLoop

    running = asyncio.get_running_loop()
    other_io_loop = IOLoop(make_current=False)  # a Tornado IOLoop on another asyncio loop
    try:
        if fw.name == "asyncio":
            wrong = {
                "a Tornado IOLoop": IOLoop.current(),
                "a Tornado IOLoop of another loop": other_io_loop,
                "the loop class": type(running),
                "the string 'asyncio'": "asyncio",
                "a coroutine function": asyncio.sleep,
            }
        else:
            wrong = {
                "the running asyncio loop": running,
                "the IOLoop class": IOLoop,
                "the string 'tornado'": "tornado",
                "a coroutine function": asyncio.sleep,
            }
        for case, io_loop in wrong.items():
            tap = WireTap((server.host, server.port))
            try:
                threads = threading.active_count()
                with pytest.raises(TypeError, match="io_loop"):
                    fw.Client(via(server, tap), io_loop=io_loop)
                assert threading.active_count() == threads, case
                await asyncio.sleep(0.05)
                assert tap.connections == 0, case
                # The same arguments with the right loop: a working client.
                client = fw.client(via(server, tap))
                await client.admin.command("ping")
                await client.close()
            finally:
                tap.stop()
            record(f"io_loop={case}", fw, "TypeError", "(no io_loop)", "no connection", 0.0)
    finally:
        other_io_loop.close()


async def _create_and_drop_user(
    fw: Framework, auth_server: Any, create: Callable[[Any, str, str], Any]
) -> str:
    """Run ``create(client, name, password)`` with the stall detector reporting every
    slice (threshold 0), drop the user; returns the password."""
    from motor.detector import detect_stalls, stop_detecting_stalls

    name, password = f"u{uuid.uuid4().hex[:8]}", f"NewUserPw-{uuid.uuid4().hex}"
    client = fw.client(auth_server.uri)
    await client.admin.command("ping")
    detect_stalls(threshold_ms=0)
    try:
        await create(client, name, password)
    finally:
        stop_detecting_stalls()
        await client.admin.command("dropUser", name)
    return password


async def test_stall_detector_names_operations_without_their_arguments(
    fw: Framework, auth_server: Any, debug_logs: LogCapture
) -> None:
    """With ``motor.detect_stalls()`` on, a Motor operation is reported by name only."""

    def create(client: Any, name: str, password: str) -> Any:
        return client.admin.command("createUser", name, pwd=password, roles=[])

    password = await _create_and_drop_user(fw, auth_server, create)
    logs = "\n".join(debug_logs.lines)
    assert "motor.stalls WARNING Database.command held the event loop" in logs
    assert leaks(password, {"logs": logs}) == []


async def test_stall_detector_never_logs_what_run_green_is_given(
    fw: Framework, auth_server: Any, debug_logs: LogCapture
) -> None:
    """``run_green(functools.partial(...))``, the idiom of ``loop.run_in_executor``: the
    detector's warning must name the function, not print the partial's arguments (a
    password here; a 17 MiB document would make a 17 MiB log line)."""
    import motor

    def create(client: Any, name: str, password: str) -> Any:
        admin = client.delegate.admin
        call = functools.partial(admin.command, "createUser", name, pwd=password, roles=[])
        return motor.run_green(call)

    password = await _create_and_drop_user(fw, auth_server, create)
    logs = "\n".join(debug_logs.lines)
    assert "held the event loop" in logs
    assert leaks(password, {"logs": logs}) == [], [
        line for line in debug_logs.lines if password in line
    ]
