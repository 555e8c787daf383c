"""A TCP fault proxy for tests: loopback traffic forwarded to a real server, with faults on
command.

The proxy runs an asyncio event loop in a daemon thread of its own (so its work never shows
in the test loop's stall probe) and forwards whole MongoDB wire messages, which lets it tie
each reply to the request it answers (``responseTo``)::

    with FaultProxy(("127.0.0.1", server.port)) as proxy:
        client = MongoClient(proxy.uri)
        proxy.delay(2.0, command="find")          # replies to find come 2 s late
        gate = proxy.hold(command="find")         # ... or only once gate.release() is called
        proxy.cut(command="find", after_bytes=1_000_000)  # cut the next find's reply half-way
        proxy.cut_all()                           # close every connection now
        proxy.blackhole()                         # accept and keep connections, forward nothing
        proxy.refuse()                            # stop listening (connections are refused)
        proxy.accept()                            # listen again, on the same port
        proxy.clear()                             # no more faults (an open gate is released)

With ``FaultProxy(upstream, compression=True)`` the proxy also speaks wire compression (zlib)
to its clients, for servers that do not (FerretDB): it adds ``compression: ["zlib"]`` to the
handshake reply of a client that offers zlib, decompresses the client's ``OP_COMPRESSED``
requests before forwarding them, and compresses the replies to those requests, as a server
does.  :attr:`FaultProxy.compressed` counts both directions' compressed messages and their
uncompressed bytes.

Every method may be called from any thread.  A fault rule matches requests by command name
(``command=``, case-insensitive; ``None`` matches any), by proxy connection (``conn=``, an id
from :attr:`FaultProxy.connections`) and by a predicate on the :class:`Request`
(``match=``).  ``times=`` limits how many requests a rule applies to.  Delays apply to the
server's replies (client -> server traffic is never delayed): a delayed reply also holds back
the replies after it on the same connection, which MongoDB's one-request-at-a-time
connections never have anyway.

:attr:`FaultProxy.requests` logs every request forwarded (or blackholed), in the order the
proxy read them, with its command name and (decoded on demand) command document;
:attr:`FaultProxy.replies` logs every whole reply forwarded, in order, with its request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import socket
import struct
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from zlib import compress as _zlib_compress
from zlib import decompress as _zlib_decompress

import bson

__all__ = ["Compressed", "Conn", "FaultProxy", "Gate", "Reply", "Request", "Rule"]

_OP_MSG = 2013
_OP_QUERY = 2004
_OP_REPLY = 1
_OP_COMPRESSED = 2012
# OP_COMPRESSED after its header: original opcode, uncompressed size, compressor id.
_COMPRESSION = struct.Struct("<iiB")
_ZLIB = 2
_HEADER = struct.Struct("<iiii")
_MAX_MESSAGE = 64 * 1024 * 1024

_T = TypeVar("_T")


@dataclasses.dataclass
class Request:
    """A request the proxy read from a client."""

    conn: int  # proxy connection id
    request_id: int
    opcode: int
    command: str  # the command's name, lower case ("" when unknown)
    body: bytes = dataclasses.field(repr=False)  # the message after its header

    @property
    def doc(self) -> dict[str, Any]:
        """The command document (OP_MSG section 0, or OP_QUERY's query)."""
        if self.opcode == _OP_MSG:
            length = struct.unpack_from("<i", self.body, 5)[0]
            return bson.decode(self.body[5 : 5 + length])
        if self.opcode == _OP_QUERY:
            start = self.body.index(b"\0", 4) + 1 + 8
            length = struct.unpack_from("<i", self.body, start)[0]
            return bson.decode(self.body[start : start + length])
        return {}


def _command_name(opcode: int, body: bytes) -> str:
    try:
        if opcode == _OP_MSG and len(body) > 10 and body[4] == 0:
            # flagBits (4), section kind 0 (1), document length (4), element type (1), key.
            return body[10 : body.index(b"\0", 10)].decode().lower()
        if opcode == _OP_QUERY:
            start = body.index(b"\0", 4) + 1 + 8 + 5
            return body[start : body.index(b"\0", start)].decode().lower()
    except (ValueError, UnicodeDecodeError):
        pass
    return ""


@dataclasses.dataclass
class Reply:
    """A whole reply the proxy forwarded to a client."""

    conn: int
    response_to: int
    request: Request | None  # the request it answers (None for a server's moreToCome)


class Gate:
    """Holds back the replies of a :meth:`FaultProxy.hold` rule until :meth:`release`."""

    def __init__(self, proxy: FaultProxy) -> None:
        self._proxy = proxy
        self._event = asyncio.Event()  # lives on the proxy's loop
        self.released = False

    def release(self) -> None:
        """Let the held replies (and any later ones) through."""
        self.released = True
        self._proxy._call(self._event.set)

    async def _wait(self) -> None:
        await self._event.wait()


@dataclasses.dataclass
class Rule:
    """A fault applied to the replies of matching requests."""

    action: str  # "delay", "hold" or "cut"
    command: str | None = None
    conn: int | None = None
    match: Callable[[Request], bool] | None = None
    times: int | None = None  # None: every matching request
    seconds: float = 0.0  # delay
    gate: Gate | None = None  # hold
    after_bytes: int = 0  # cut: forward this many bytes of the reply first
    hits: int = 0  # requests matched so far

    def _matches(self, request: Request) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.command is not None and request.command != self.command.lower():
            return False
        if self.conn is not None and request.conn != self.conn:
            return False
        return self.match is None or bool(self.match(request))


@dataclasses.dataclass
class Conn:
    """A client connection the proxy accepted."""

    id: int
    client_port: int  # the client's local port: match it with the client socket's getsockname()
    blackholed: bool = False  # accepted while the proxy blackholed: never forwarded
    requests: int = 0
    reply_bytes: int = 0  # bytes forwarded server -> client
    closed: bool = False
    _tasks: list[asyncio.Task[None]] = dataclasses.field(default_factory=list, repr=False)
    _writers: list[asyncio.StreamWriter] = dataclasses.field(default_factory=list, repr=False)
    _pending: dict[int, tuple[Request, list[Rule]]] = dataclasses.field(
        default_factory=dict, repr=False
    )
    # Requests that came compressed: their replies go back compressed.
    _compressed: set[int] = dataclasses.field(default_factory=set, repr=False)


@dataclasses.dataclass
class Compressed:
    """What a compressing proxy (de)compressed: messages, and their uncompressed bytes."""

    requests: int = 0
    request_bytes: int = 0
    replies: int = 0
    reply_bytes: int = 0
    largest_request: int = 0
    largest_reply: int = 0


class FaultProxy:
    """Forward ``127.0.0.1:port`` to ``upstream``; inject faults on command."""

    def __init__(
        self,
        upstream: tuple[str, int],
        host: str = "127.0.0.1",
        port: int = 0,
        compression: bool = False,
    ) -> None:
        self.upstream = upstream
        self.compression = compression
        self.compressed = Compressed()
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        self.replies: list[Reply] = []
        self.accepted = 0  # connections accepted so far
        self._conns: dict[int, Conn] = {}
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._blackhole = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> FaultProxy:
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            # Stopped: close what is left, then the loop.
            loop.run_until_complete(self._close_everything())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="faultproxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        self._run(self._listen())
        return self

    def stop(self) -> None:
        """Close every connection and the listener; end the proxy's thread."""
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}"

    # ------------------------------------------------------------------ commands

    def delay(
        self,
        seconds: float,
        command: str | None = None,
        conn: int | None = None,
        match: Callable[[Request], bool] | None = None,
        times: int | None = None,
    ) -> Rule:
        """Deliver the replies to matching requests ``seconds`` late."""
        return self._add(Rule("delay", command, conn, match, times, seconds=seconds))

    def hold(
        self,
        command: str | None = None,
        conn: int | None = None,
        match: Callable[[Request], bool] | None = None,
        times: int | None = None,
    ) -> Gate:
        """Hold back the replies to matching requests until the returned gate is released."""
        gate = self._run(self._make_gate())
        self._add(Rule("hold", command, conn, match, times, gate=gate))
        return gate

    def cut(
        self,
        command: str | None = None,
        after_bytes: int = 0,
        conn: int | None = None,
        match: Callable[[Request], bool] | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Cut the connection of a matching request when its reply comes: forward the
        reply's first ``after_bytes`` bytes, then close both sides."""
        return self._add(Rule("cut", command, conn, match, times, after_bytes=after_bytes))

    def remove(self, rule: Rule) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule (releasing held replies) and stop blackholing."""
        with self._lock:
            rules, self._rules = self._rules, []
            self._blackhole = False
        for rule in rules:
            if rule.gate is not None:
                rule.gate.release()

    def blackhole(self, on: bool = True) -> None:
        """Forward nothing, either way, on every connection, existing or new; new
        connections are accepted and kept open (never connected upstream)."""
        with self._lock:
            self._blackhole = on

    def cut_all(self) -> None:
        """Close every connection now (both sides)."""
        self._run(self._cut_all())

    def refuse(self) -> None:
        """Stop listening: new connections are refused.  Open connections go on."""
        self._run(self._unlisten())

    def accept(self) -> None:
        """Listen again, on the same port."""
        self._run(self._listen())

    @property
    def connections(self) -> list[Conn]:
        """The connections open now."""
        return [c for c in list(self._conns.values()) if not c.closed]

    def conn_for(self, client_port: int) -> Conn | None:
        """The open connection whose client side is ``127.0.0.1:client_port``."""
        return next((c for c in self.connections if c.client_port == client_port), None)

    def commands(self, name: str) -> list[Request]:
        """The logged requests of command ``name``."""
        return [r for r in list(self.requests) if r.command == name.lower()]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no connection is open; False if some still are after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.connections:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # ------------------------------------------------------------------ internals

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _call(self, fn: Callable[[], Any]) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(fn)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None, "the proxy is not running"
        if threading.current_thread() is self._thread:
            raise RuntimeError("FaultProxy commands cannot be called from the proxy's loop")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _make_gate(self) -> Gate:
        return Gate(self)

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _unlisten(self) -> None:
        # Closes the listening socket at once.  Not Server.wait_closed(): from Python
        # 3.12.1 it also waits for the connections accepted to close, which go on.
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _cut_all(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)

    async def _close_everything(self) -> None:
        await self._unlisten()
        conns = list(self._conns.values())
        for conn in conns:
            self._close(conn)
        tasks = [t for c in conns for t in c._tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _close(self, conn: Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        for writer in conn._writers:
            writer.close()
        # Closing the transports ends the tasks' reads (end of file); a reply task may be
        # sleeping on a delay or a gate instead.
        current = asyncio.current_task()
        for task in conn._tasks[1:]:
            if task is not current:
                task.cancel()
        self._conns.pop(conn.id, None)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        conn = Conn(next(self._ids), writer.get_extra_info("peername")[1])
        conn._writers.append(writer)
        conn._tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        self._conns[conn.id] = conn
        self.accepted += 1
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._blackhole:
                conn.blackholed = True
                while await reader.read(65536):  # kept open, never answered
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                return  # the server is gone: the client sees its connection closed
            conn._writers.append(up_writer)
            if conn.closed:
                return
            replies = asyncio.ensure_future(self._replies(conn, up_reader, writer))
            conn._tasks.append(replies)
            await self._requests(conn, reader, up_writer)
        except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.CancelledError):
            # Cancelled only when the proxy stops; asyncio's start_server logs a
            # cancelled connection task as an error.
            pass
        finally:
            self._close(conn)

    def _compressing(
        self, conn: Conn, request: Request, header: bytes, body: bytes
    ) -> tuple[bytes, bytes]:
        # A reply as a zlib-speaking server sends it: the handshake reply announces zlib
        # to a client that offers it, and a compressed request's reply is compressed.
        _, request_id, response_to, opcode = _HEADER.unpack(header)
        if request.command in ("hello", "ismaster") and "zlib" in request.doc.get(
            "compression", []
        ):
            body = _with_zlib(opcode, body)
        if response_to in conn._compressed:
            conn._compressed.discard(response_to)
            packed = _zlib_compress(body)
            self.compressed.replies += 1
            self.compressed.reply_bytes += len(body)
            self.compressed.largest_reply = max(self.compressed.largest_reply, len(body))
            body = _COMPRESSION.pack(opcode, len(body), _ZLIB) + packed
            opcode = _OP_COMPRESSED
        return _HEADER.pack(16 + len(body), request_id, response_to, opcode), body

    async def _read_message(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        header = await reader.readexactly(16)
        length = _HEADER.unpack(header)[0]
        if not 16 <= length <= _MAX_MESSAGE:
            raise ValueError(f"bad message length {length}")
        return header, await reader.readexactly(length - 16)

    async def _requests(
        self, conn: Conn, reader: asyncio.StreamReader, up: asyncio.StreamWriter
    ) -> None:
        while True:
            header, body = await self._read_message(reader)
            _, request_id, response_to, opcode = _HEADER.unpack(header)
            if opcode == _OP_COMPRESSED and self.compression:
                opcode, size, compressor = _COMPRESSION.unpack_from(body)
                if compressor != _ZLIB:
                    raise ValueError(f"compressor {compressor} is not zlib")
                body = _zlib_decompress(body[_COMPRESSION.size :])
                if len(body) != size:
                    raise ValueError(f"decompressed {len(body)} bytes, announced {size}")
                header = _HEADER.pack(16 + size, request_id, response_to, opcode)
                conn._compressed.add(request_id)
                self.compressed.requests += 1
                self.compressed.request_bytes += size
                self.compressed.largest_request = max(self.compressed.largest_request, size)
            request = Request(conn.id, request_id, opcode, _command_name(opcode, body), body)
            self.requests.append(request)
            conn.requests += 1
            with self._lock:
                blackhole = self._blackhole
                rules = [r for r in self._rules if r._matches(request)]
                for rule in rules:
                    rule.hits += 1
            if blackhole:
                continue
            conn._pending[request_id] = (request, rules)
            up.write(header + body)
            await up.drain()

    async def _replies(
        self, conn: Conn, up: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                header, body = await self._read_message(up)
                response_to = _HEADER.unpack(header)[2]
                request, rules = conn._pending.pop(response_to, (None, []))
                cut: Rule | None = None
                for rule in rules:
                    if rule.action == "delay":
                        await asyncio.sleep(rule.seconds)
                    elif rule.action == "hold" and rule.gate is not None:
                        await rule.gate._wait()
                    elif rule.action == "cut":
                        cut = rule
                if self._blackhole:
                    continue
                if self.compression and request is not None:
                    header, body = self._compressing(conn, request, header, body)
                data = header + body
                if cut is not None:
                    data = data[: cut.after_bytes]
                if cut is None:  # logged first: the client may act on it at once
                    self.replies.append(Reply(conn.id, response_to, request))
                writer.write(data)
                conn.reply_bytes += len(data)
                await writer.drain()
                if cut is not None:
                    self._close(conn)
                    return
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._close(conn)


def _with_zlib(opcode: int, body: bytes) -> bytes:
    """A handshake reply (OP_REPLY or OP_MSG) with ``compression: ["zlib"]`` added."""
    if opcode == _OP_REPLY:
        # responseFlags, cursorID, startingFrom, numberReturned, then the document.
        start = 20
    elif opcode == _OP_MSG:
        start = 5  # flagBits, section kind 0
    else:
        return body
    length = struct.unpack_from("<i", body, start)[0]
    doc = bson.decode(body[start : start + length])
    doc["compression"] = ["zlib"]
    return body[:start] + bson.encode(doc) + body[start + length :]
