"""A minimal in-process MongoDB wire server for protocol edge cases.

It answers ``hello`` (as a load balancer, so clients open no monitor connections) and
any other command with ``{ok: 1}``, except the command named ``stall_on``: on that one
it stops reading the connection after the first bytes, so a large client send blocks.
It listens on TCP loopback or on a Unix domain socket.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
from typing import Any

import bson
from bson import ObjectId

__all__ = ["WireServer", "op_msg_reply", "read_message"]

_OP_MSG = 2013
_OP_QUERY = 2004
_OP_REPLY = 1


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("peer closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def peek_command_name(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read the start of a request: (bytes read, OP_MSG command name or b"")."""
    header = _recv_exactly(sock, 16)
    length, _, _, opcode = struct.unpack("<iiii", header)
    head = _recv_exactly(sock, min(length - 16, 64))
    name = b""
    if opcode == _OP_MSG and len(head) > 10:
        # flagBits (4), section kind (1), document length (4), element type (1), key.
        name = head[10 : head.index(b"\0", 10)]
    return header + head, name


def read_message(sock: socket.socket, start: bytes = b"") -> tuple[int, int, dict[str, Any]]:
    """Read one request (after ``start``, its first bytes if already read); return
    (request id, opcode, command document)."""
    header = start[:16] if start else _recv_exactly(sock, 16)
    length, request_id, _, opcode = struct.unpack("<iiii", header)
    body = start[16:] + _recv_exactly(sock, length - len(start or header))
    if opcode == _OP_MSG:
        # flagBits, then section kind 0 and its document.
        doc_len = struct.unpack("<i", body[5:9])[0]
        return request_id, opcode, bson.decode(body[5 : 5 + doc_len])
    if opcode == _OP_QUERY:
        # flags, cstring collection name, skip, limit, query document.
        name_end = body.index(b"\0", 4)
        doc_start = name_end + 1 + 8
        doc_len = struct.unpack("<i", body[doc_start : doc_start + 4])[0]
        return request_id, opcode, bson.decode(body[doc_start : doc_start + doc_len])
    raise ValueError(f"unexpected opcode {opcode}")


def op_msg_reply(response_to: int, doc: dict[str, Any], opcode: int = _OP_MSG) -> bytes:
    """Encode a reply to a request of ``opcode``."""
    payload = bson.encode(doc)
    if opcode == _OP_QUERY:
        body = struct.pack("<iqii", 0, 0, 0, 1) + payload
        return struct.pack("<iiii", 16 + len(body), 0, response_to, _OP_REPLY) + body
    body = struct.pack("<iB", 0, 0) + payload
    return struct.pack("<iiii", 16 + len(body), 0, response_to, _OP_MSG) + body


HELLO = {
    "ok": 1.0,
    "isWritablePrimary": True,
    "ismaster": True,
    "helloOk": True,
    "msg": "isdbgrid",
    "maxWireVersion": 21,
    "minWireVersion": 0,
    "maxBsonObjectSize": 16 * 1024 * 1024,
    "maxMessageSizeBytes": 48_000_000,
    "maxWriteBatchSize": 100_000,
    "logicalSessionTimeoutMinutes": 30,
}


class WireServer:
    """Serve hello and ``{ok: 1}``; stop reading at a ``stall_on`` command (a name or a
    tuple of names), on the first ``stalls`` connections that send one (all by default)."""

    def __init__(
        self,
        unix: bool = False,
        stall_on: str | tuple[str, ...] | None = None,
        stalls: int | None = None,
    ) -> None:
        names = (stall_on,) if isinstance(stall_on, str) else stall_on or ()
        self.stall_on = frozenset(name.encode() for name in names)
        self.stalled = threading.Event()
        # Connections stalled so far, and how many may be.
        self.stalls = 0
        self._max_stalls = stalls
        self._stall_lock = threading.Lock()
        self._tmpdir: str | None = None
        if unix:
            self._tmpdir = tempfile.mkdtemp(prefix="motor-wire-")
            self.path = os.path.join(self._tmpdir, "mongodb.sock")
            self._listener = socket.socket(socket.AF_UNIX)
            self._listener.bind(self.path)
            self.host = self.path
        else:
            self._listener = socket.socket()
            self._listener.bind(("127.0.0.1", 0))
            self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._listener.listen(16)
        self._conns: list[socket.socket] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def uri(self) -> str:
        from urllib.parse import quote_plus

        host = quote_plus(self.host) if self._tmpdir else self.host
        return f"mongodb://{host}/?loadBalanced=true"

    def _accept_loop(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        replies = 0
        try:
            while True:
                start, name = peek_command_name(conn)
                if name and name in self.stall_on and self._stall():
                    return  # the socket stays open, unread
                request_id, opcode, cmd = read_message(conn, start)
                command = next(iter(cmd)).lower()
                if command in ("hello", "ismaster"):
                    doc = dict(HELLO, serviceId=ObjectId(), connectionId=replies + 1)
                else:
                    doc = {"ok": 1.0}
                conn.sendall(op_msg_reply(request_id, doc, opcode))
                replies += 1
        except (ConnectionError, OSError, ValueError):
            pass

    def _stall(self) -> bool:
        with self._stall_lock:
            if self._max_stalls is not None and self.stalls >= self._max_stalls:
                return False
            self.stalls += 1
            if self._max_stalls is None or self.stalls == self._max_stalls:
                self.stalled.set()
            return True

    def stop(self) -> None:
        self._stopped = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        if self._tmpdir:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.rmdir(self._tmpdir)
