"""The seam between PyMongo 4.20 and the green core; the only module that patches PyMongo.

What it changes, and nothing else:

* :class:`GreenPool` (passed to ``MongoClient(_pool_class=...)``) replaces the pool's
  wait-queue conditions with :class:`~motor.green.sync.GreenCondition` and marks its
  ``connect()`` so new connections are made green.
* ``pymongo.synchronous.pool._configured_socket_interface`` (the function
  ``Pool.connect`` calls to open a socket) becomes a dispatcher: inside
  ``GreenPool.connect`` it opens a :class:`~motor.green.socket.GreenSocket` with green
  DNS, connect and TLS handshake; for every other pool it calls PyMongo's original.
* ``_ConnectionManager`` locks (held across I/O by pinned and exhaust cursors) become
  :class:`~motor.green.sync.GreenLock`; they behave as plain locks outside children.
* ``time.sleep`` in PyMongo's retry backoffs becomes :func:`motor.green.sync.sleep`,
  which only differs from :func:`time.sleep` inside a child greenlet.
* ``receive_message`` in ``pymongo.synchronous.pool`` (how a connection reads a reply)
  reads a green socket with one wait per chunk, instead of changing the socket's timeout
  before and after every chunk, and in a child reads the whole reply at once when it has
  arrived; same deadlines, checks and errors as PyMongo's
  ``network_layer.receive_message``, which still reads every other socket.
* ``GreenPool.connect`` gives each green connection a cancellation context (PyMongo's
  ``_CancellationContext``) that also wakes the read parked on its socket, so reads in
  children need none of PyMongo's 0.5 s cancellation slices; reads elsewhere keep them.
* ``os.getpid()`` in ``pymongo.synchronous.pool`` (its fork check, twice per operation)
  returns a cached process id, refreshed after ``fork()``, instead of making a system
  call.
* ``pymongo.synchronous.srv_resolver._resolve`` (dnspython's blocking SRV/TXT lookups
  for ``mongodb+srv://`` URIs) runs in the loop's default executor when called from a
  child, which parks meanwhile; so do client-side encryption's KMS requests and
  mongocryptd commands (``_EncryptionIO.kms_request`` and ``mark_command``), which use
  sockets of their own.
* ``ClientEncryption.encrypt``/``decrypt`` of a value of at least
  :data:`ENCRYPTION_OFF_LOOP_BYTES`, ``_Encrypter.decrypt`` of a reply that large and
  every ``_Encrypter.encrypt`` mark their child (:func:`_crypto_off_the_loop`), and
  pymongocrypt's ``MongoCryptContext.finish`` runs there in a crypto thread, waited for
  to its end (:func:`_green_finish`); ``ClientEncryption.close`` and ``_Encrypter.close``
  first wait for this process's crypto jobs (:func:`_green_encryption_close`).
* ``hashlib`` in ``pymongo.synchronous.auth`` is :data:`_GREEN_HASHLIB`, whose
  ``pbkdf2_hmac`` (SCRAM's salted password: 15,000 rounds of SHA-256 or 10,000 of SHA-1,
  5-7 ms of CPU in one C call, made whenever a client first authenticates and on every
  attempt with a wrong password) runs in the loop's default executor when called from a
  child, which parks meanwhile; ``hashlib`` releases the GIL while it derives the key.
* ``_OIDCAuthenticator._get_access_token`` in ``pymongo.synchronous.auth_oidc`` (MONGODB-OIDC:
  under the authenticator's lock, waits out the minimum time between two callback calls
  with ``time.sleep`` and calls the application's or PyMongo's token callback, which
  makes HTTP requests for the built-in Azure and GCP environments) runs in the loop's
  default executor when a child calls it without a cached token, as
  ``AsyncMongoClient`` runs the callback; with a token it returns it at once.
* ``_AUTH_MAP["MONGODB-AWS"]`` in ``pymongo.synchronous.auth`` is
  :func:`_green_authenticate_aws`: in a child, the first authentication imports
  ``pymongo_auth_aws`` (and boto3: hundreds of ms of Python) in the loop's default
  executor, and ``pymongo_auth_aws.auth.aws_temp_credentials`` (boto3's credential lookup,
  HTTP requests to AWS's metadata endpoints on EC2, ECS or Lambda) runs there too.
* ``pymongo.message._compress`` (wire compression of every message sent on a compressed
  connection) is :func:`_green_compress`: in a child, a message of at least
  :data:`COMPRESS_OFF_LOOP_BYTES` is compressed in the loop's default executor; and
  ``receive_message`` (above) decompresses a reply of at least
  :data:`DECOMPRESS_OFF_LOOP_BYTES` there.  zlib and zstd release the GIL meanwhile.

* A reply of more than :data:`SLICED_DECODE_BYTES` received by a child is a
  :class:`_SlicedOpMsg`, an ``_OpMsg`` whose ``unpack_response`` decodes a cursor's
  batch in slices, which lets the loop run between two slices (:meth:`Hub.pause
  <motor.green.hub.Hub.pause>`); PyMongo decodes the whole reply in one C call, which
  cannot be interrupted.  Smaller replies are PyMongo's own ``_OpMsg``.
* ``pymongo.message._op_msg_uncompressed`` (how a command and its documents are
  encoded) is :func:`motor.green.splice.green_op_msg`, which in a child sends the large
  string and binary values of inserted and updated documents as pieces of the message
  (a :class:`~motor.green.splice.SplicedMessage`) instead of copying them into one
  encoding; ``sendall`` in ``pymongo.synchronous.pool`` sends those pieces one by one
  on a green socket (and joins them for any other).
* ``pymongo.synchronous.collection._Bulk``, the bulk writer of ``insert_many`` and
  ``bulk_write``, is :class:`motor.green.bulk.GreenBulk`, which on green connections sizes
  each write command by what encoding the previous one cost (PyMongo's limit is the
  server's, 100,000 documents), so that encoding one message stays short.  Green
  connections' other batched writes carry at most
  :data:`~motor.green.bulk.GREEN_WRITE_BATCH` documents per command.
* ``Connection.command``, the cursors' ``_run_with_conn`` and the bulk writers'
  ``write_command`` are wrapped in :func:`motor.green.reauth.reauthenticating` instead of
  PyMongo's ``_handle_reauth``: the same retry after ``ReauthenticationRequired``, without
  the two imports PyMongo's wrapper makes on every call (about 1.2 µs per operation).

It also exports ``pymongo._csot.TIMEOUT`` (read, not changed) as :data:`TIMEOUT`: Motor
reads it on every call to keep operations under :func:`pymongo.timeout` out of its
admission queue.

:func:`check_pymongo_internals` verifies every internal name and behaviour this relies
on; :func:`install` refuses to patch (with a readable error) when one has changed.
"""

from __future__ import annotations

import codecs
import collections
import concurrent.futures
import contextvars
import errno
import functools
import hashlib
import importlib
import itertools
import math
import mmap
import operator
import os as _os
import re
import ssl
import struct
import sys
import threading
import time as _time
import types
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import bson
import pymongo
import pymongo._csot
import pymongo.client_session_shared
import pymongo.cursor_shared
import pymongo.message
import pymongo.network_layer
import pymongo.pool_options
import pymongo.pool_shared
import pymongo.ssl_support
import pymongo.synchronous.auth
import pymongo.synchronous.auth_oidc
import pymongo.synchronous.client_session
import pymongo.synchronous.command_cursor
import pymongo.synchronous.cursor
import pymongo.synchronous.cursor_base
import pymongo.synchronous.encryption
import pymongo.synchronous.mongo_client
import pymongo.synchronous.pool
import pymongo.synchronous.srv_resolver
import pymongo.synchronous.topology
from bson.codec_options import _raw_document_class
from pymongo.common import MAX_MESSAGE_SIZE
from pymongo.compression_support import decompress
from pymongo.errors import ConfigurationError, ProtocolError, _OperationCancelled
from pymongo.logger import _CONNECTION_LOGGER, _is_debug_enabled
from pymongo.message import _UNICODE_REPLACE_CODEC_OPTIONS, _UNPACK_REPLY, _OpMsg
from pymongo.monitoring import ConnectionClosedReason
from pymongo.network_layer import NetworkingInterface
from pymongo.socket_checker import _errno_from_exception

from motor.green import bulk as _bulk
from motor.green import find as _find
from motor.green import reauth as _reauth
from motor.green import splice as _splice
from motor.green.bulk import GREEN_WRITE_BATCH, SERVER_WRITE_BATCH
from motor.green.hub import Child, Hub, _getcurrent, _process, refuse_to_block
from motor.green.internals import changed_functions, code_names, own_code, pymongo_own
from motor.green.socket import (
    GreenSocket,
    _close_half_made_ssl_socket,
    _pause_if_spent,
    check_tls_context,
    connect_timeout,
    create_connection,
    tls_handshake,
    unusable_tls_context,
)
from motor.green.splice import SplicedMessage
from motor.green.sync import GreenCondition, GreenLock, sleep

__all__ = [
    "TIMEOUT",
    "GreenPool",
    "PyMongoInternalsChanged",
    "check_client_tls",
    "check_pool_express_internals",
    "check_pymongo_internals",
    "client_hooks",
    "close_client",
    "install",
    "session_ends_without_io",
]

TESTED_PYMONGO = (4, 20)

# Typed as Any: these modules' private names are what this seam is about.
_pymongo_pool: Any = pymongo.synchronous.pool
_pool_shared: Any = pymongo.pool_shared
_cursor_base: Any = pymongo.synchronous.cursor_base
_srv_resolver: Any = pymongo.synchronous.srv_resolver
_ssl_support: Any = pymongo.ssl_support
# The context variable holding pymongo.timeout()'s value: read directly on every Motor
# call, instead of through pymongo._csot.get_timeout().
TIMEOUT: Any = getattr(pymongo._csot, "TIMEOUT", None)
# Removed from the ssl module in Python 3.12; PyMongo's path below cannot reach it there.
_match_hostname: Any = getattr(ssl, "match_hostname", None)

# Set to True while a GreenPool opens a connection (per greenlet / thread context).
_green_connect: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "motor_green_connect", default=False
)
_original_socket_interface: Any = None


# ------------------------------------------------------------------ the pool's express path
#
# GreenPool._get_conn and GreenPool.checkin repeat what PyMongo's take and give back a
# connection do in the common case (an idle connection ready, nobody waiting, no events),
# without their condition variables, telemetry checks and error bookkeeping: about 8 µs
# of client CPU per operation.  They are taken only while the PyMongo functions they
# repeat or rely on are PyMongo 4.20's (their fingerprints below; a test reports a
# change) and while Pool._get_conn and Pool.checkin in place are PyMongo's own (so that a
# wrapper put there sees every call).
_Pool: Any = pymongo.synchronous.pool.Pool
_pymongo_get_conn = pymongo_own(_Pool._get_conn)
_pymongo_checkin = pymongo_own(_Pool.checkin)
_pymongo_checkout = pymongo_own(_Pool.checkout)
_ClientCheckout: Any = pymongo.synchronous.mongo_client._ClientCheckout
_POOL_READY = pymongo.pool_shared.PoolState.READY


def _pool_express_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour the pool's express path repeats or relies on."""
    base = pymongo.pool_shared._AgnosticBasePool
    connection = pymongo.synchronous.pool.Connection
    checkout = pymongo.synchronous.pool._PoolCheckout
    return {
        "Pool._get_conn": _Pool._get_conn,
        "Pool._perished": _Pool._perished,
        "Pool.checkin": _Pool.checkin,
        "Pool._checkin_apply": base._checkin_apply,
        "Pool._raise_if_not_ready": base._raise_if_not_ready,
        "Pool.stale_generation": base.stale_generation,
        "_PoolGeneration.stale": pymongo.pool_shared._PoolGeneration.stale,
        "Connection.idle_time_seconds": connection.idle_time_seconds,
        "Connection.update_last_checkin_time": connection.update_last_checkin_time,
        "Connection.update_is_writable": connection.update_is_writable,
        "_PoolCheckout.__enter__": checkout.__enter__,
        "_PoolCheckout.__exit__": checkout.__exit__,
        "_PoolCheckout.__init__": checkout.__init__,
        "Pool.checkout": _Pool.checkout,
        "_ClientCheckout.__init__": _ClientCheckout.__init__,
        "_ClientCheckout.__enter__": _ClientCheckout.__enter__,
        "_ClientCheckout.__exit__": _ClientCheckout.__exit__,
        "_ClientCheckout.for_existing_conn": _ClientCheckout.for_existing_conn,
        "_ClientCheckout.contribute_socket": _ClientCheckout.contribute_socket,
        "_ClientCheckout.handle": _ClientCheckout.handle,
    }


#: The fingerprints of PyMongo 4.20's functions the pool's express path relies on.
_POOL_EXPRESS_FINGERPRINTS: dict[str, str] = {
    "Pool._get_conn": "4bfea28562d5afc2",
    "Pool._perished": "421c581d68be502c",
    "Pool.checkin": "e9ecd13e000e542e",
    "Pool._checkin_apply": "7fae1318d4973c25",
    "Pool._raise_if_not_ready": "a94708d97e246904",
    "Pool.stale_generation": "f818850d32b01894",
    "_PoolGeneration.stale": "2bcdf6b08e35b978",
    "Connection.idle_time_seconds": "0cdcf40b1a0e16f3",
    "Connection.update_last_checkin_time": "f43ff1fed0d6850d",
    "Connection.update_is_writable": "978b1604530a215e",
    "_PoolCheckout.__enter__": "0b9d22742cbf6bfc",
    "_PoolCheckout.__exit__": "c55e571ff3e0b6e5",
    "_PoolCheckout.__init__": "8404aee6abd0e36e",
    "Pool.checkout": "63cbc0f31fd364bb",
    "_ClientCheckout.__init__": "6a06f82993ddf34b",
    "_ClientCheckout.__enter__": "2feacfba013e0570",
    "_ClientCheckout.__exit__": "f1c9768c987127ac",
    "_ClientCheckout.for_existing_conn": "4f361dcf3234d0eb",
    "_ClientCheckout.contribute_socket": "909e48d990a6a56d",
    "_ClientCheckout.handle": "29a8ad8f8d7e2798",
}


def check_pool_express_internals() -> list[str]:
    """Which PyMongo functions the pool's express path relies on changed (empty: none)."""
    return changed_functions(
        _pool_express_functions(), _POOL_EXPRESS_FINGERPRINTS, "the pool's express path"
    )


#: Whether GreenPool may take and give back connections by its express path.
_POOL_EXPRESS: bool = not check_pool_express_internals()


class PyMongoInternalsChanged(ImportError):
    """The installed PyMongo no longer has the internals Motor's green core needs."""


class GreenPool(pymongo.synchronous.pool.Pool):
    """PyMongo's pool with green wait queues and green connections."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.size_cond = GreenCondition(self.lock)  # type: ignore[assignment]
        self._max_connecting_cond = GreenCondition(self.lock)  # type: ignore[assignment]
        lock: Any = self.lock
        self._raw_lock = lock._lock if type(lock) is GreenLock else lock

    def close(self) -> None:
        """Close the pool, and interrupt the operations still using its connections.

        PyMongo's ``Pool.close`` leaves them be: an operation waiting for a reply that
        never comes (a server gone silent, no ``socketTimeoutMS``) then waits for ever.
        Interrupting the connections wakes their reads at once (see
        :class:`_WakingCancellation`).  An interrupted operation raises PyMongo's
        ``_OperationCancelled`` (an ``AutoReconnect``); a retryable one is retried and
        ends with PyMongo's error for a closed client (``InvalidOperation``).
        """
        self._reset(close=True, interrupt_connections=True)

    def close_idle(self) -> None:
        """Close the pool's idle connections one at a time (runs on a child, before
        :meth:`close`), pausing whenever the loop iteration's work budget is spent.

        Closing one connection (its event, ``close()``, the loop forgetting the
        descriptor) costs the loop thread 30-80 us: ``close()`` closes a full pool in
        one stretch, 3-8 ms for a hundred connections, and holds the topology's lock
        meanwhile, where a child must not pause.  Here no lock is held across a pause.
        """
        while True:
            _pause_if_spent()
            with self.lock:
                if not self.conns:
                    return
                conn = self.conns.popleft()
            conn.close_conn(ConnectionClosedReason.POOL_CLOSED)

    def _get_conn(self, checkout_started_time: float, handler: Any = None) -> Any:
        """PyMongo's ``Pool._get_conn``, with an express path for the common case
        (:meth:`take_idle`); anything else is PyMongo's own method."""
        conn = self.take_idle()
        if conn is None:
            conn = super()._get_conn(checkout_started_time, handler)
        return conn

    def take_idle(self) -> Any:
        """An idle connection taken as ``Pool._get_conn`` takes it, or None.

        When the pool is ready, has a free slot (``maxPoolSize``) and an idle connection
        that ``Pool._perished`` would pass without looking at its socket (not idle past
        ``maxIdleTimeMS`` nor past the liveness check's interval, not of a stale
        generation), and the pool's lock is free, that connection is taken as PyMongo
        takes it (the same counters raised, the same state set) in one short critical
        section.  None in any other case, and while the express path is off.
        """
        conns = self.conns
        if conns and _POOL_EXPRESS and _Pool._get_conn is _pymongo_get_conn:
            lock = self._raw_lock
            if lock.acquire(False):
                try:
                    if (
                        conns
                        and self.state == _POOL_READY
                        and self.pid == _process[0]
                        and self.requests < self.max_pool_size
                    ):
                        conn = conns[0]
                        idle = _time.monotonic() - conn.last_checkin_time
                        max_idle = self.opts.max_idle_time_seconds
                        interval = self._check_interval_seconds
                        if (
                            (max_idle is None or idle <= max_idle)
                            and (interval is None or (interval != 0 and idle <= interval))
                            and not self.gen.stale(conn.generation, conn.service_id)
                        ):
                            conns.popleft()
                            self.operation_count += 1
                            self.requests += 1
                            self.active_sockets += 1
                            conn.active = True
                            self.active_contexts.add(conn.cancel_context)
                            return conn
                finally:
                    self.lock.release()
        return None

    def lend(self) -> Any:
        """An idle connection, taken as ``_ClientCheckout`` (for an operation without a
        session) and ``_PoolCheckout`` take one, when the pool publishes no event and
        :meth:`take_idle` has one; None otherwise (the operation then checks out through
        ``_ClientCheckout``).  :meth:`give_back` returns it."""
        telemetry = self._telemetry
        if (
            telemetry._should_publish
            or (telemetry._log and _is_debug_enabled(_CONNECTION_LOGGER))
            or _Pool.checkout is not _pymongo_checkout
        ):
            return None  # (_PoolCheckout publishes the checkout's events)
        return self.take_idle()

    def give_back(
        self, client: Any, server: Any, conn: Any, exc: BaseException | None = None
    ) -> None:
        """What leaving ``_ClientCheckout`` (without a session) and then ``_PoolCheckout``
        does with a connection of :meth:`lend` checked out for an operation on
        ``server`` that raised ``exc`` (None: that did not): the server discovery's
        handling of the error, with the connection's generation, wire version and
        service id, while the connection is still checked out; then the connection
        checked in (or kept by what pinned it)."""
        if exc is None and not (conn.pinned_txn or conn.pinned_cursor):
            if conn.active:
                self.checkin(conn)
            return
        try:
            if exc is not None:
                checkout = _ClientCheckout.for_existing_conn(client, server, None, conn)
                checkout.handle(type(exc), exc)
        finally:
            pool_checkout = _pymongo_pool._PoolCheckout(self)
            pool_checkout._conn = conn
            pool_checkout.__exit__(type(exc) if exc is not None else None, exc, None)

    def checkin(self, conn: Any) -> None:
        """PyMongo's ``Pool.checkin``, with an express path for the common case.

        A connection pinned to nothing and still open goes back to a pool that is open,
        publishes no events and has no waiter (nobody to notify), and that the process
        made (no fork since), in one short critical section: the counters lowered and
        the connection put back as ``_checkin_apply`` does.  Anything else, and a lock
        held elsewhere, is PyMongo's own method.
        """
        if (
            _POOL_EXPRESS
            and not conn.pinned_txn
            and not conn.pinned_cursor
            and not conn.closed
            and _Pool.checkin is _pymongo_checkin
            and self._raw_lock.acquire(False)
        ):
            try:
                telemetry = self._telemetry
                if (
                    not self.size_cond._waiters  # type: ignore[attr-defined]
                    and not self._max_connecting_cond._waiters  # type: ignore[attr-defined]
                    and not self.closed
                    and self.pid == _process[0]
                    and not telemetry._should_publish
                    and not (telemetry._log and _is_debug_enabled(_CONNECTION_LOGGER))
                    and not self.gen.stale(conn.generation, conn.service_id)
                ):
                    conn.active = False
                    self._pinned_sockets.discard(conn)
                    self.active_contexts.discard(conn.cancel_context)
                    self.requests -= 1
                    self.active_sockets -= 1
                    self.operation_count -= 1
                    conn.last_checkin_time = _time.monotonic()
                    conn.is_writable = bool(self.is_writable)
                    self.conns.appendleft(conn)
                    return
            finally:
                self.lock.release()
        super().checkin(conn)

    def connect(self, handler: Any = None) -> Any:
        token = _green_connect.set(True)
        try:
            conn = super().connect(handler)
        finally:
            _green_connect.reset(token)
        # PyMongo's bulk writer sizes its commands itself on green connections (see
        # motor.green.bulk); its other batched writers send GREEN_WRITE_BATCH at most.
        setattr(conn, SERVER_WRITE_BATCH, conn.max_write_batch_size)
        conn.max_write_batch_size = min(conn.max_write_batch_size, GREEN_WRITE_BATCH)
        sock = conn.conn.conn
        if type(sock) is GreenSocket:
            # A cancellation context that also wakes the socket's parked read, so
            # that reads in children need no polling slices (see _receive_into).
            waking = _WakingCancellation(sock)
            with self.lock:
                old = conn.cancel_context
                conn.cancel_context = waking
                if old in self.active_contexts:
                    self.active_contexts.discard(old)
                    self.active_contexts.add(waking)
                if old.cancelled:
                    waking.cancel()
        return conn


# What a checked-out connection counts for in its pool (PyMongo's checkin undoes it).
_HELD_CONNECTION = (
    getattr(_pool_shared, "_UNDO_OPERATION_COUNT", 0)
    | getattr(_pool_shared, "_UNDO_REQUESTS", 0)
    | getattr(_pool_shared, "_UNDO_SOCKETS", 0)
)


def reclaim_stranded(child: Child) -> Any:
    """Give back to the green pools what a stranded child holds, on loan.

    The child (see :meth:`Hub._strand <motor.green.hub.Hub._strand>`) parked on a thread
    that no longer runs its loop, and cannot be resumed from the thread that runs it now.
    Until its own thread ends it, it would keep its checked-out connections, its pool
    slots (``maxPoolSize``) and its connection-opening slots (``maxConnecting``): with
    two children stranded while they opened connections, no operation on the loop could
    open one again.  Its stack says what it holds: PyMongo's ``Pool._get_conn`` frame
    records the counters it raised (its ``applied`` flags), and each connection it
    checked out (``active``, not pinned to a cursor or transaction) is a local of one
    of its frames.  The counters are lowered and the connections closed (the pool's
    waiters are woken to look again), here, on the loop's thread.

    Returns what puts the counters back (or None when the child held nothing): the
    child's own cleanup lowers them again (``_get_conn``'s restore, ``checkin``) if its
    thread ever ends it, so :class:`~motor.green.hub.Waiter` repays the loan first.
    Opening sockets not yet made connections stay open until then.
    """
    loans: list[tuple[Any, int]] = []
    closing: list[Any] = []
    seen: set[int] = set()
    get_conn = own_code(_pymongo_pool.Pool._get_conn)
    frame = child.gr_frame
    while frame is not None:
        values = frame.f_locals
        if frame.f_code is get_conn:
            pool = values.get("self")
            applied = values.get("applied", 0)
            if isinstance(pool, GreenPool) and applied:
                loans.append((pool, applied))
        for value in values.values():
            if type(value) is not _pymongo_pool.Connection or id(value) in seen:
                continue
            seen.add(id(value))
            pool = value.pool_ref()
            if (
                value.active
                and isinstance(pool, GreenPool)
                and not (value.pinned_txn or value.pinned_cursor)
            ):
                loans.append((pool, _HELD_CONNECTION))
                closing.append(value)
        frame = frame.f_back
    if not loans:
        return None
    for conn in closing:
        pool = conn.pool_ref()
        with pool.size_cond:
            pool.active_contexts.discard(conn.cancel_context)
    for pool, applied in loans:
        with pool.size_cond:
            pool._restore_applied(applied)
            # Every waiter looks again: a notification may have gone to a child that was
            # stranded before it could take it.
            pool.size_cond.notify_all()
            pool._max_connecting_cond.notify_all()
    for conn in closing:
        conn.close_conn(ConnectionClosedReason.ERROR)

    def repay() -> None:
        for pool, applied in loans:
            with pool.size_cond:
                if applied & _pool_shared._UNDO_OPERATION_COUNT:
                    pool.operation_count += 1
                if applied & _pool_shared._UNDO_REQUESTS:
                    pool.requests += 1
                if applied & _pool_shared._UNDO_SOCKETS:
                    pool.active_sockets += 1
                if applied & _pool_shared._UNDO_PENDING:
                    pool._pending += 1

    return repay


class _WakingCancellation(getattr(_pool_shared, "_CancellationContext", object)):  # type: ignore[misc]
    """PyMongo's cancellation context of a connection, which also wakes the read
    parked on its green socket (a pool cleared with interruptInUseConnections, or the
    connection closed, from any thread)."""

    def __init__(self, sock: GreenSocket) -> None:
        super().__init__()
        self._sock = sock
        sock._wakes_reads = True

    def cancel(self) -> None:
        super().cancel()
        self._sock.cancel_reads()


class GreenInterface(NetworkingInterface):
    """PyMongo's socket interface over a :class:`GreenSocket`.

    PyMongo reaches the socket through ``get_conn`` on every send and timeout change; the
    base class's getter is a Python method, this one a C callable.  (Replies are read by
    :func:`_green_receive_message`, straight from the green socket.)
    """

    get_conn = property(operator.attrgetter("conn"))
    sock = get_conn

    def __init__(self, conn: GreenSocket) -> None:
        super().__init__(conn)  # type: ignore[arg-type]


def _green_socket_interface(
    address: Any, options: Any, ssl_session_cache: list[Any] | None = None
) -> NetworkingInterface:
    """Open a configured connection like PyMongo's ``_configured_socket_interface``,
    but with a green socket, green DNS/connect and a green TLS handshake."""
    sock = create_connection(address, options)
    ssl_context = options._ssl_context
    if ssl_context is None:
        return GreenInterface(GreenSocket(sock, options.socket_timeout))

    host = address[0]
    session = ssl_session_cache[0] if ssl_session_cache is not None else None
    try:
        timeout = connect_timeout(options.connect_timeout)
        ssl_sock = tls_handshake(
            sock,
            ssl_context,
            host if _pool_shared._has_sni(True) else None,
            session,
            timeout,
        )
    except _pool_shared._CertificateError:
        sock.close()
        raise
    except (OSError, *_pool_shared.SSLErrors) as exc:
        sock.close()
        details = _pool_shared._get_timeout_details(options)
        _pool_shared._raise_connection_failure(
            address, exc, "SSL handshake failed: ", timeout_details=details
        )
    except BaseException:
        sock.close()
        raise
    if (
        ssl_context.verify_mode
        and not ssl_context.check_hostname
        and not options.tls_allow_invalid_hostnames
    ):
        try:
            _match_hostname(ssl_sock.getpeercert(), hostname=host)
        except _pool_shared._CertificateError:
            ssl_sock.close()
            raise
    if ssl_session_cache is not None:
        new_session = _pool_shared._get_ssl_session(ssl_sock)
        if new_session is not None:
            ssl_session_cache[0] = new_session
    return GreenInterface(GreenSocket(ssl_sock, options.socket_timeout))


def _socket_interface_dispatch(
    address: Any, options: Any, ssl_session_cache: list[Any] | None = None
) -> NetworkingInterface:
    if _green_connect.get():
        return _green_socket_interface(address, options, ssl_session_cache)
    try:
        return _original_socket_interface(address, options, ssl_session_cache)  # type: ignore[no-any-return]
    except BaseException as exc:
        # PyMongo's own path, in its threads (monitors): ssl.SSLSocket leaks there too.
        _close_half_made_ssl_socket(exc)
        raise


_socket_interface_dispatch.motor_green = True  # type: ignore[attr-defined]


_original_resolve: Any = None
_original_compress: Any = None

# Wire compression (compressors=zlib, zstd, snappy) of a message a child sends, or
# decompression of a reply it receives, is done in the loop's default executor from this
# many uncompressed bytes: one C call, which releases the GIL (zlib and zstd do; snappy
# holds it).  zlib measured here: 30 ms per MB to compress hard-to-compress data, 6 ms
# per MB to decompress.
COMPRESS_OFF_LOOP_BYTES = 32 * 1024
DECOMPRESS_OFF_LOOP_BYTES = 256 * 1024

# A cursor reply whose payload is larger than this (bytes) is decoded in slices in a
# child; slices of at most SLICE_BYTES or SLICE_DOCUMENTS, the loop running between two.
# Smaller replies are one decoding call: small documents of a few fields decode at
# 60-100 MB/s here (a datetime, a few integers and a short string: 1.3 us each), so a
# reply of 600 KB of them held the loop 8-10 ms in that call.
SLICED_DECODE_BYTES = 256 * 1024
# In a reply of at most this many bytes, the batch is sliced between its documents only:
# each document is decoded whole, as PyMongo decodes it.  Split field by field (larger
# replies: SPLIT_BYTES), a document of many small fields costs up to 8 times the CPU of
# one decoding call (30,000 integer fields, 350 KB: 36 against 4.2 ms).
WHOLE_DOCUMENTS_BYTES = 1024 * 1024
SLICE_BYTES = 256 * 1024
SLICE_DOCUMENTS = 1000
# Elements of an array of other values than documents and arrays per slice, at most.
SLICE_SCALARS = 16_000
# A document or array of at least this many bytes inside such a reply (one large
# document of the batch, an array or embedded document in it) is decoded in pieces of
# its own: its fields, or its elements, a slice at a time.
SPLIT_BYTES = SLICE_BYTES
# A large string of at most this many bytes whose first SLICE_BYTES decode to ASCII is
# decoded in one call, from its start: ASCII decodes at memory speed (4 MiB in about
# 0.3 ms here), while its slices and the copy that joins them cost as much again.  A
# string whose rest is not ASCII after all holds the loop for one call of this size
# (UTF-8 of two or three bytes a character: 1-2 MB per millisecond).  A longer one is
# copied slice by slice into a string made at its final length (see _ascii_in_place):
# joining the slices would be one copy of the whole string in one call (15 MB: 2.6-3.1 ms
# here, and 10 ms where its pages are fresh from the kernel).
WHOLE_ASCII_BYTES = 4 * 1024 * 1024
# A batch of more than HANDOVER_DOCUMENTS documents is handed from one container to the
# next (PyMongo's deque, the list of to_list) MOVE_DOCUMENTS at a time, the loop running
# between two pieces once the iteration's work budget is spent: each such pass touches
# every document (reference counts), 50-100 µs per 1,000 documents that are no longer in
# the processor's caches.  A smaller batch moves in one piece, as PyMongo moves it, and
# stays a plain list.
HANDOVER_DOCUMENTS = 20_000
MOVE_DOCUMENTS = 2_000
# A large reply is read this many bytes at a time at most.
RECEIVE_SLICE_BYTES = 512 * 1024
# Replies of at least this many bytes are received in a buffer reused from one reply
# to the next (see _receive_buffer); it is let go after this many replies in a row that
# needed a quarter of it or less.
REUSED_BUFFER_BYTES = 64 * 1024
REUSED_BUFFER_SHRINK = 32

# Client-side encryption's I/O callbacks that open sockets of their own (KMS servers,
# mongocryptd's plain client) and sleep between KMS retries.
_encryption_io: Any = pymongo.synchronous.encryption._EncryptionIO
_ENCRYPTION_IO_OFF_THE_LOOP = ("kms_request", "mark_command")
# Client-side encryption's CPU work, in one piece on the loop's thread otherwise
# (libmongocrypt, and cryptography's AES and HMAC over the whole value: about 10 ms per
# MB to encrypt, 3 ms to decrypt): explicit encrypt and decrypt of a value of at least
# this many bytes (a document or array, whatever its size), the automatic decryption of
# a reply that large, and every automatic encryption of a command (which sends it to
# mongocryptd from a worker thread anyway) run in a worker thread.  The thread releases
# the GIL in OpenSSL's calls.
ENCRYPTION_OFF_LOOP_BYTES = 64 * 1024
_client_encryption: Any = pymongo.synchronous.encryption.ClientEncryption
_encrypter: Any = pymongo.synchronous.encryption._Encrypter
# Authentication: SCRAM derives its salted password with hashlib.pbkdf2_hmac; MONGODB-OIDC
# gets its token from a callback.
_auth: Any = pymongo.synchronous.auth
_oidc_authenticator: Any = pymongo.synchronous.auth_oidc._OIDCAuthenticator
_original_receive_message: Any = None

# PyMongo's reply reading: header layout, reply parsers, cancellation slice.
_UNPACK_HEADER = struct.Struct("<iiii").unpack
_UNPACK_HEADER_FROM = struct.Struct("<iiii").unpack_from
# OP_MSG's parser (2013: the opcode of every reply to a modern request).
_UNPACK_OP_MSG: Any = _UNPACK_REPLY.get(2013)
_UNPACK_COMPRESSION_HEADER = struct.Struct("<iiB").unpack
_POLL_TIMEOUT: float = getattr(pymongo.network_layer, "_POLL_TIMEOUT", 0.5)
_DEADLINE: Any = getattr(pymongo._csot, "DEADLINE", None)


def _green_receive_message(
    conn: Any, request_id: int | None, max_message_size: int = MAX_MESSAGE_SIZE
) -> Any:
    """Read one reply from ``conn`` like ``pymongo.network_layer.receive_message``.

    In a child, the first read takes whatever has arrived, up to
    :data:`motor.green.hub.SCRATCH_SIZE` bytes (into the hub's scratch buffer): the
    whole reply, nearly always, in one system call where PyMongo makes two.  Bytes
    past the end of the reply (the next reply of an exhaust cursor) are kept for the
    next read.
    """
    sock = conn.conn.conn
    if type(sock) is not GreenSocket:
        return _original_receive_message(conn, request_id, max_message_size)
    if TIMEOUT.get(None):
        deadline = _DEADLINE.get()
    else:
        timeout = sock.gettimeout()
        deadline = _time.monotonic() + timeout if timeout else None
    current = _getcurrent()
    if type(current) is Child and sock._wakes_reads:
        # Cancellation wakes the read (_WakingCancellation): no polling slices.
        poll_slice = None
    else:
        poll_slice = _POLL_TIMEOUT
    # Bytes received and not consumed yet.
    got = sock._carry
    if got is not None:
        sock._carry = None
    elif type(current) is Child:
        scratch = current.hub._scratch
        received = _receive_into(conn, sock, scratch, deadline, 1, poll_slice)
        if received >= 16:
            length, _, response_to, op_code = _UNPACK_HEADER_FROM(scratch)
            if (
                16 < received == length
                and op_code == 2013
                and response_to == request_id
                and length <= max_message_size
            ):
                # The common case: exactly one whole OP_MSG reply, which passes
                # every check below.
                return _UNPACK_OP_MSG(memoryview(scratch[16:length].tobytes()))
        # Copied out at once: another child may read into the scratch buffer as soon
        # as this one waits.
        got = memoryview(scratch[:received].tobytes())
    else:
        got = _NOTHING
    header, got = _take(conn, sock, got, 16, deadline, poll_slice)
    length, _, response_to, op_code = _UNPACK_HEADER(header)
    if request_id is not None and request_id != response_to:
        raise ProtocolError(f"Got response id {response_to!r} but expected {request_id!r}")
    if length <= 16:
        raise ProtocolError(
            f"Message length ({length!r}) not longer than standard message header size (16)"
        )
    if length > max_message_size:
        raise ProtocolError(
            f"Message length ({length!r}) is larger than server max "
            f"message size ({max_message_size!r})"
        )
    if op_code == 2012:
        if length <= 25:
            raise ProtocolError(
                f"Message length ({length!r}) not longer than standard "
                f"OP_COMPRESSED message header size (25)"
            )
        compression_header, got = _take(conn, sock, got, 9, deadline, poll_slice)
        op_code, size, compressor_id = _UNPACK_COMPRESSION_HEADER(compression_header)
        if size <= 0 or size + 16 > max_message_size:
            raise ProtocolError(
                f"Uncompressed message size ({size!r}) is invalid or larger "
                f"than server max message size ({max_message_size!r})"
            )
        compressed, got = _take(conn, sock, got, length - 25, deadline, poll_slice)
        if size >= DECOMPRESS_OFF_LOOP_BYTES and type(current) is Child:
            data: Any = current.hub.run_in_thread(
                decompress, compressed, compressor_id, max_message_size - 16
            )
        else:
            data = decompress(compressed, compressor_id, max_message_size - 16)
    else:
        data, got = _take(conn, sock, got, length - 16, deadline, poll_slice)
    unpack_reply = _UNPACK_REPLY.get(op_code)
    if unpack_reply is None:
        raise ProtocolError(f"Got opcode {op_code!r} but expected {_UNPACK_REPLY.keys()!r}")
    if got:
        sock._carry = got
    if op_code == 2013 and len(data) > SLICED_DECODE_BYTES and type(current) is Child:
        return _SlicedOpMsg.unpack(data)
    return unpack_reply(data)


_NOTHING = memoryview(b"")


def _take(
    conn: Any,
    sock: GreenSocket,
    got: memoryview,
    size: int,
    deadline: float | None,
    poll_slice: float | None,
) -> tuple[memoryview, memoryview]:
    # The next ``size`` bytes, and what remains of ``got``: from ``got`` if it has
    # them, otherwise ``got`` and then exactly as many more bytes as needed.
    if len(got) >= size:
        return got[:size], got[size:]
    current = _getcurrent()
    if size >= REUSED_BUFFER_BYTES and type(current) is Child:
        view = _receive_buffer(current.hub, size)
    else:
        view = memoryview(bytearray(size))
    have = len(got)
    if have:
        view[:have] = got
    _receive_into(conn, sock, view[have:] if have else view, deadline, size - have, poll_slice)
    return view, _NOTHING


class _ReplyBuffer:
    """The buffer a hub's children receive large replies in, reused from one reply to
    the next (see :func:`_receive_buffer`)."""

    __slots__ = ("buffer", "oversized")

    def __init__(self) -> None:
        self.buffer: mmap.mmap | None = None
        # How many replies in a row used a quarter of the buffer or less.
        self.oversized = 0


_reply_buffers: weakref.WeakKeyDictionary[Any, _ReplyBuffer] = weakref.WeakKeyDictionary()


def _receive_buffer(hub: Any, size: int) -> memoryview:
    """A view of the last ``size`` bytes of a buffer, to receive a reply in.

    Runs on a child.  Each hub keeps the buffer of its last large reply and hands it
    out again once no view of it is alive (the reply it held is decoded and dropped):
    a fresh buffer per reply costs the allocator a block of that size each time
    (above glibc's mmap threshold, fresh pages from the kernel, a page fault every
    4 KiB, unless the heap happens to keep them) and zero-filling it.  The reply is
    put at the end of the buffer because PyMongo hands its payload over as
    ``reply[5:]`` (see :func:`_buffer_of`).  A buffer in use by another reply is left
    alone, and one much larger than the replies that follow is let go after
    :data:`REUSED_BUFFER_SHRINK` of them.
    """
    holder = _reply_buffers.get(hub)
    if holder is None:
        holder = _reply_buffers[hub] = _ReplyBuffer()
    buffer = holder.buffer
    if buffer is None:
        replace = True
    else:
        replace = _unused(buffer)
        if replace and len(buffer) >= size:
            holder.oversized = holder.oversized + 1 if size * 4 <= len(buffer) else 0
            if holder.oversized <= REUSED_BUFFER_SHRINK:
                return memoryview(buffer)[len(buffer) - size :]
    # None yet, too small, too large for a while, or in use: a new one (which replaces
    # the hub's buffer unless that one is in use).
    buffer = _new_buffer(size)
    if replace:
        holder.buffer = buffer
        holder.oversized = 0
    return memoryview(buffer)


def _new_buffer(size: int) -> mmap.mmap:
    # Anonymous memory, which the kernel maps page by page as the reads that fill it
    # first touch it (the loop running between two reads), where bytearray(size) would
    # zero-fill all of it (and take its page faults) in one call.
    return mmap.mmap(-1, size)


def _unused(buffer: mmap.mmap) -> bool:
    # No view of ``buffer`` is alive: CPython refuses to resize a memory map while one
    # is (resized to its own size, it neither moves nor changes).
    try:
        buffer.resize(len(buffer))
    except BufferError:
        return False
    return True


def _receive_into(
    conn: Any,
    sock: GreenSocket,
    view: memoryview,
    deadline: float | None,
    at_least: int,
    poll_slice: float | None,
) -> int:
    # Read into ``view`` until at least ``at_least`` bytes have arrived; how many did.
    # Waits in slices of at most ``poll_slice`` (PyMongo's _POLL_TIMEOUT, or None when
    # cancellation wakes the read) so that a cancelled connection (pool cleared with
    # interruptInUseConnections) gives up within one slice; when the deadline has
    # passed, one last attempt that does not wait.  SDAM (monitoring) connections wait
    # past their deadline.
    received = 0
    while received < at_least:
        if deadline is None:
            wait = poll_slice
        else:
            wait = min(deadline - _time.monotonic(), _POLL_TIMEOUT)
        try:
            # At most RECEIVE_SLICE_BYTES a read: the kernel copies as much as its socket
            # buffer holds (several megabytes on loopback) in one call otherwise.  (A
            # small reply's first read, every operation's, takes the view as it is.)
            if received or len(view) > RECEIVE_SLICE_BYTES:
                chunk = sock.recv_within(view[received : received + RECEIVE_SLICE_BYTES], wait)
            else:
                chunk = sock.recv_within(view, wait)
        except TimeoutError:
            if conn.cancel_context.cancelled:
                raise _OperationCancelled("operation cancelled") from None
            if wait is not None and (
                wait <= 0
                or (not conn.is_sdam and deadline is not None and deadline < _time.monotonic())
            ):
                raise
            continue
        except OSError as exc:
            if conn.cancel_context.cancelled:
                raise _OperationCancelled("operation cancelled") from None
            if _errno_from_exception(exc) == errno.EINTR:
                continue
            raise
        if chunk == 0:
            raise OSError("connection closed")
        received += chunk
        if received < at_least:
            # A large reply arriving as fast as it is read: the loop runs between two
            # reads once this iteration's work budget is spent.
            _pause_if_spent()
    return received


class _SlicedOpMsg(_OpMsg):
    """An OP_MSG reply of more than :data:`SLICED_DECODE_BYTES` received by a child,
    whose ``unpack_response`` decodes a cursor batch in slices.

    Only large replies are made of this class (in :func:`_green_receive_message`), so
    that decoding the others costs nothing more than PyMongo's own ``_OpMsg``.
    """

    __slots__ = ()

    def unpack_response(
        self,
        cursor_id: int | None = None,
        codec_options: Any = _UNICODE_REPLACE_CODEC_OPTIONS,
        user_fields: Any = None,
        legacy_response: bool = False,
    ) -> Any:
        """What ``_OpMsg.unpack_response`` returns (``decode_all`` of the payload, with
        the codec options' document class everywhere); only where the work happens
        differs."""
        current = _getcurrent()
        if (
            type(current) is not Child
            or codec_options.type_registry._decoder_map
            or _raw_document_class(codec_options.document_class)
        ):
            return _OpMsg.unpack_response(
                self, cursor_id, codec_options, user_fields, legacy_response
            )
        try:
            return [_decode_in_slices(self.payload_document, codec_options, current.hub)]
        except _UnknownBSON:  # a type this walker cannot step over: PyMongo's way
            return _OpMsg.unpack_response(
                self, cursor_id, codec_options, user_fields, legacy_response
            )


def _decode_in_slices(payload: Any, codec_options: Any, hub: Any) -> Any:
    # Runs on a child: the reply's fields are decoded one by one, and the documents of
    # its cursor batch a slice at a time, with the loop running between two slices.
    # The BSON is walked in place: no large value is copied or inflated.  Decoding starts
    # on a loop iteration of its own when reading the reply spent this one's budget.
    if not hub._child_window_open():
        hub.pause()
    view, base = _buffer_of(payload)
    size = _UNPACK_INT32_FROM(view, base)[0]
    split = SPLIT_BYTES if size > WHOLE_DOCUMENTS_BYTES else size + 1
    document = codec_options.document_class()
    for kind, key, start, value, end in _user_elements(view, base):
        if key == "cursor" and kind == _BSON_DOCUMENT:
            cursor = codec_options.document_class()
            for c_kind, c_key, c_start, c_value, c_end in _user_elements(view, value):
                if c_key in ("firstBatch", "nextBatch") and c_kind == _BSON_ARRAY:
                    cursor[c_key] = _decode_values(view, c_value, codec_options, hub, split=split)
                else:
                    cursor[c_key] = _decode_element(view, c_start, c_end, c_key, codec_options)
            document[key] = cursor
        else:
            document[key] = _decode_element(view, start, end, key, codec_options)
    return document


def _buffer_of(payload: Any) -> tuple[memoryview, int]:
    """A writable view of the whole buffer that holds ``payload``, and where in it the
    payload starts.  A reply's payload is the end of the buffer (a bytearray, or the
    memory map of :func:`_receive_buffer`) the reader received it in (see
    ``_OpMsg.unpack`` and :func:`_take`); anything else is copied into a bytearray of
    its own."""
    obj: Any = getattr(payload, "obj", None)
    if isinstance(payload, memoryview) and type(obj) in _WRITABLE_BUFFERS:
        base = len(obj) - len(payload)
        head, tail = payload[:16].tobytes(), payload[-1:].tobytes()
        if base >= 0 and obj[base : base + 16] == head and obj[-1:] == tail:
            return memoryview(obj), base
    return memoryview(bytearray(payload)), 0


_WRITABLE_BUFFERS = (bytearray, mmap.mmap)


_BSON_DOCUMENT = 0x03
_BSON_ARRAY = 0x04
_UNPACK_INT32_FROM = struct.Struct("<i").unpack_from
# Sizes of fixed-size BSON values, by type.
_FIXED_SIZES = {
    0x01: 8,  # double
    0x06: 0,  # undefined
    0x07: 12,  # ObjectId
    0x08: 1,  # bool
    0x09: 8,  # datetime
    0x0A: 0,  # null
    0x10: 4,  # int32
    0x11: 8,  # timestamp
    0x12: 8,  # int64
    0x13: 16,  # decimal128
    0x7F: 0,  # max key
    0xFF: 0,  # min key
}
# Types whose value is an int32 length followed by that many bytes (string, JavaScript
# code, symbol: the length counts the bytes after it) ...
_LENGTH_AFTER = frozenset({0x02, 0x0D, 0x0E})
# ... or whose int32 length counts itself (documents, arrays, code with scope).
_LENGTH_INCLUDED = frozenset({0x03, 0x04, 0x0F})


class _UnknownBSON(Exception):
    """An element this walker does not know how to step over, or a batch it cannot
    decode the way PyMongo would (PyMongo then decodes the whole reply)."""


def _nul(data: Any, at: int) -> int:
    # Where the first NUL byte from ``at`` is (a key's end).
    found: int = data.find(b"\0", at)
    if found < 0:
        raise _UnknownBSON(0)
    return found


def _elements(view: memoryview, start: int) -> Any:
    """(type, key, element start, value start, element end) of each element of the
    BSON document at ``start`` in ``view`` (a view of a whole bytes, bytearray or
    memory map); an element's bytes are its type, key and value."""
    data: bytes = view.obj  # type: ignore[assignment]
    end = start + _UNPACK_INT32_FROM(data, start)[0] - 1  # the trailing NUL
    if not start + 4 <= end < len(data) or data[end] != 0:
        raise _UnknownBSON(_BSON_DOCUMENT)  # PyMongo's to report ("bad eoo", ...)
    position = start + 4
    while position < end:
        element = position
        kind = data[position]
        key_end = _nul(data, position + 1)
        key = data[position + 1 : key_end].decode()
        value = key_end + 1
        position = _element_end(data, kind, value)
        if position < value or position > end:
            raise _UnknownBSON(kind)  # a length that points outside the document
        yield kind, key, element, value, position


def _element_end(data: Any, kind: int, value: int) -> int:
    # Where the element whose value starts at ``value`` ends.
    if kind in _LENGTH_INCLUDED:
        return value + int(_UNPACK_INT32_FROM(data, value)[0])
    if kind in _LENGTH_AFTER:
        return value + 4 + int(_UNPACK_INT32_FROM(data, value)[0])
    if kind == 0x05:  # binary: length, subtype, bytes
        return value + 5 + int(_UNPACK_INT32_FROM(data, value)[0])
    if kind == 0x0B:  # regular expression: pattern and options, two C strings
        return _nul(data, _nul(data, value) + 1) + 1
    if kind == 0x0C:  # DBPointer: a string and an ObjectId
        return value + 16 + int(_UNPACK_INT32_FROM(data, value)[0])
    size = _FIXED_SIZES.get(kind)
    if size is None:
        raise _UnknownBSON(kind)
    return value + size


def _decode_element(view: memoryview, start: int, end: int, key: str, codec_options: Any) -> Any:
    # Decode one element as a one-element document (a copy of the element only).
    size = end - start + 5
    return bson.decode(
        b"".join((size.to_bytes(4, "little"), view[start:end], b"\0")), codec_options
    )[key]


def _decode_values(
    view: memoryview,
    start: int,
    codec_options: Any,
    hub: Any,
    batch: bool = True,
    split: int | None = None,
) -> list[Any]:
    # Runs on a child: the elements of the BSON array at ``start`` (a cursor batch, or,
    # with ``batch`` false, an array in a document), in slices of about SLICE_BYTES and
    # at most about SLICE_DOCUMENTS elements, the loop running between two slices once
    # the iteration's work budget is spent (_pause_if_spent_on).  The first slice is a
    # quarter of SLICE_BYTES: the size of the elements is not known yet.  A document or
    # array element of ``split`` bytes or more (default SPLIT_BYTES) is decoded in pieces
    # of its own (_decode_large).
    #
    # Where a slice ends is guessed, not found by stepping over every element in Python
    # (which costs as much as decoding a few hundred bytes of BSON): the first byte
    # past the slice's target size that looks like the start of an element (the type
    # of the array's first element, a decimal key above the elements decoded so far,
    # for a document or array a length that fits in the array) is taken as its end,
    # and PyMongo's decoder checks it: it accepts a slice only if its elements end
    # exactly there.  A guess it refuses (a byte inside an element that looked like
    # one) costs one decode attempt; that slice is then stepped over element by
    # element, and so is the rest of the array after a second refusal.
    data: Any = view.obj
    end = start + _UNPACK_INT32_FROM(data, start)[0] - 1  # the array's trailing NUL
    # _decode_in_place needs 10 bytes before the first element and 2 from the end.
    if not 6 <= start < end < len(data) - 1 or data[end] != 0:
        raise _UnknownBSON(_BSON_ARRAY)
    # A batch that grows past HANDOVER_DOCUMENTS is gathered from then on in the _Batch it
    # is handed over as: a copy at the end would be one more pass over all its documents
    # (and another to free the first list).
    values: list[Any] = []
    position = start + 4
    kind = data[position] if position < end else _BSON_DOCUMENT
    count = SLICE_DOCUMENTS if kind in _CONTAINERS else SLICE_SCALARS
    target = SLICE_BYTES // 4
    refused = 0
    strict = _strict(codec_options)
    if split is None:
        split = SPLIT_BYTES
    while position < end:
        if data[position] in _CONTAINERS:
            value = _nul(data, position + 1) + 1
            last = value + _UNPACK_INT32_FROM(data, value)[0]
            if last - value >= split:
                if not value < last <= end:
                    raise _UnknownBSON(data[position])  # a length outside the array
                values.append(_decode_large(view, position, value, last, codec_options, hub))
                position = last
                continue
        elif data[position] == _BSON_STRING and strict:
            value = _nul(data, position + 1) + 1
            last = value + 4 + _UNPACK_INT32_FROM(data, value)[0]
            if last - value >= SPLIT_BYTES:
                if not value < last <= end:
                    raise _UnknownBSON(_BSON_STRING)  # a length outside the array
                values.append(_decode_string(view, value, last, hub))
                position = last
                continue
        last = end
        if position + target < end:
            if refused < 2:
                # An element of the type of this slice's first: in an array of mixed
                # types, more likely near it than one of the array's first element's.
                last = _guess_element(data, position + target, end, len(values), data[position])
            else:
                last = -1
            if last < 0:
                last = _step_over(data, position, end, target)
        try:
            decoded = _decode_in_place(view, position, last, codec_options)
        except Exception:
            if last == end or refused >= 2:
                raise  # the array itself: PyMongo's error
            refused += 1
            last = _step_over(data, position, end, target)
            decoded = _decode_in_place(view, position, last, codec_options)
        values.extend(decoded)
        if batch and len(values) > HANDOVER_DOCUMENTS and type(values) is list:
            values = _Batch(values)
        position = last
        # The next slice (SLICE_BYTES, or SLICE_DOCUMENTS of the array's elements, or
        # SLICE_SCALARS of other values), or, after the last one, the work on the
        # array, on a later loop iteration.
        average = (position - start - 4) // max(len(values), 1) + 1
        target = min(SLICE_BYTES, count * average)
        _pause_if_spent_on(hub)
    return values


# The types of the elements decoded in pieces when large: documents and arrays.
_CONTAINERS = frozenset((_BSON_DOCUMENT, _BSON_ARRAY))


class _WholeDocument(Exception):
    """A document to decode in one piece: one that PyMongo's decoder may turn into a
    DBRef (it has a ``$ref`` field), which the decoder of its pieces would not."""


def _decode_large(
    view: memoryview, first: int, value: int, last: int, codec_options: Any, hub: Any
) -> Any:
    # Runs on a child: the large document or array element between ``first`` and
    # ``last`` (its value from ``value``), decoded in pieces, as PyMongo decodes it.
    data: Any = view.obj
    if data[first] == _BSON_ARRAY:
        return _decode_values(view, value, codec_options, hub, batch=False)
    try:
        return _decode_fields(view, value, codec_options, hub)
    except _WholeDocument:
        return _decode_in_place(view, first, last, codec_options)[0]


def _strict(codec_options: Any) -> bool:
    # Whether strings are decoded with the "strict" error handler (the default): only
    # then does _decode_string decode them, any other handler's results are PyMongo's.
    return bool(codec_options.unicode_decode_error_handler == "strict")


def _decode_string(view: memoryview, value: int, last: int, hub: Any) -> str:
    # Runs on a child: the BSON string whose value (int32 length, UTF-8 bytes, a NUL)
    # lies between ``value`` and ``last``, decoded SLICE_BYTES at a time, the loop
    # running between two slices once the iteration's work budget is spent; the slices
    # are joined at the end (one copy, a fraction of decoding: UTF-8 other than ASCII
    # decodes at 1-2 MB per millisecond here).  A string of at most WHOLE_ASCII_BYTES
    # whose first slice is ASCII is decoded again in one call instead.  Bytes that are
    # not UTF-8, or a length that does not fit, are PyMongo's to report: it decodes the
    # whole reply again.
    data: Any = view.obj
    stop = value + 4 + _UNPACK_INT32_FROM(data, value)[0] - 1  # the trailing NUL
    if stop + 1 != last or stop < value + 4 or data[stop] != 0:
        raise _UnknownBSON(_BSON_STRING)
    parts: list[str] = []
    position = value + 4
    first = True
    try:
        while True:
            end = min(position + SLICE_BYTES, stop)
            # A character cut at the slice's end is decoded with the next slice.
            text, used = _utf_8_decode(view[position:end], "strict", end == stop)
            if first and end < stop and text.isascii():
                _pause_if_spent_on(hub)
                if stop - position <= WHOLE_ASCII_BYTES:
                    text = _utf_8_decode(view[position:stop], "strict", True)[0]
                    _pause_if_spent_on(hub)
                    return text
                copied = _ascii_copied(view, position, stop, text, hub)
                if copied is not None:
                    return copied
                # Not ASCII after all (or no way to copy in place): joined slices.
            first = False
            parts.append(text)
            position += used
            if position >= stop:
                break
            _pause_if_spent_on(hub)
    except UnicodeDecodeError:
        raise _UnknownBSON(_BSON_STRING) from None
    text = "".join(parts)
    # What follows (the next string of one slice, say) on a later iteration once the
    # budget is spent, as after every slice.
    _pause_if_spent_on(hub)
    return text


_BSON_STRING = 0x02
_utf_8_decode = codecs.utf_8_decode


def _ascii_copied(view: memoryview, start: int, stop: int, first: str, hub: Any) -> str | None:
    # Runs on a child: the string of the ASCII bytes between ``start`` and ``stop``, whose
    # first slice decoded to ``first``, copied slice by slice into a string made at its
    # full length (the loop running between two slices once the work budget is spent).
    # None if a slice is not ASCII (the caller decodes the string the other way), or
    # where strings cannot be made this way (_ascii_in_place).
    tools = _ascii_in_place()
    if tools is None:
        return None
    new, copy, offset = tools
    built = new(stop - start, _ASCII_MAX)
    address = id(built) + offset
    text = first
    position = start
    while True:
        # An ASCII slice's characters are its bytes, one for one.
        copy(address + position - start, id(text) + offset, len(text))
        position += len(text)
        if position >= stop:
            break
        _pause_if_spent_on(hub)
        end = min(position + SLICE_BYTES, stop)
        text = _utf_8_decode(view[position:end], "strict", end == stop)[0]
        if not text.isascii():
            return None
    _pause_if_spent_on(hub)
    return built


_ASCII_MAX = 127
# PyUnicode_New, memmove, and where an ASCII string's characters start in it.
_InPlace = tuple[Callable[[int, int], str], Callable[[int, int, int], Any], int]
# Those, once looked up (None where they cannot be had: see _ascii_in_place).
_in_place: _InPlace | None = None
_in_place_checked = False


def _ascii_in_place() -> _InPlace | None:
    """CPython's ``PyUnicode_New`` and C's ``memmove`` (both called with the GIL held), and
    the offset of an ASCII string's characters from its address; None where they are not
    what :func:`_ascii_copied` relies on.

    ``PyUnicode_New(length, 127)`` makes a compact ASCII string whose characters are not
    written yet (CPython's own C code fills such strings, before anyone else sees them);
    its characters follow the object's header, whose size is that of the empty string
    less its terminating NUL.  Checked once, on a string made so: a build of Python
    without ``ctypes``, another layout or another interpreter gets None, and large strings
    are decoded as slices joined at the end.
    """
    global _in_place, _in_place_checked
    if not _in_place_checked:
        _in_place_checked = True
        if sys.implementation.name == "cpython":
            try:
                import ctypes

                # Functions of its own (ctypes.pythonapi's are shared, and other code may
                # give them other argument types).
                api = ctypes.PyDLL(None, handle=ctypes.pythonapi._handle)
                new = api.PyUnicode_New
                new.argtypes = (ctypes.c_ssize_t, ctypes.c_uint32)
                new.restype = ctypes.py_object
                copy = api.memmove
                copy.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
                copy.restype = ctypes.c_void_p
                offset = sys.getsizeof("") - 1
                sample = "".join(("motor ", "in place"))
                probe = new(len(sample), _ASCII_MAX)
                copy(id(probe) + offset, id(sample) + offset, len(sample))
                if (
                    type(probe) is str
                    and probe == sample
                    and probe.isascii()
                    and hash(probe) == hash(sample)
                    and sys.getsizeof(probe) == sys.getsizeof(sample)
                ):
                    _in_place = (new, copy, offset)
            except (ImportError, AttributeError, OSError, TypeError):
                pass
    return _in_place


# Looked up now: importing ctypes (about 4 ms) on the first large string would hold the
# loop for that long.
_ascii_in_place()


def _user_elements(view: memoryview, start: int) -> Any:
    # _elements of a document whose keys PyMongo decodes with the codec options' error
    # handler (the reply, its cursor, the application's documents): a key that is not
    # UTF-8 is PyMongo's to decode or to refuse.
    try:
        yield from _elements(view, start)
    except UnicodeDecodeError:
        raise _UnknownBSON(_BSON_DOCUMENT) from None


def _decode_fields(view: memoryview, start: int, codec_options: Any, hub: Any) -> Any:
    # Runs on a child: the BSON document at ``start``, whose fields are decoded a run of
    # about SLICE_BYTES or SLICE_DOCUMENTS fields at a time (the loop running between
    # two), and its documents and arrays of SPLIT_BYTES or more in pieces of their own.
    # Its fields are stepped over in Python, one by one: a document of very many small
    # fields takes longer to decode than in one call, but holds the loop no longer than
    # any other.
    document = codec_options.document_class()
    run = -1  # where the run of fields not decoded yet starts
    run_end = -1
    fields = 0
    for kind, key, first, value, last in _user_elements(view, start):
        if key == "$ref":
            raise _WholeDocument
        if last - value >= SPLIT_BYTES and (
            kind in _CONTAINERS or (kind == _BSON_STRING and _strict(codec_options))
        ):
            if run >= 0:
                document.update(_decode_in_place(view, run, run_end, codec_options, _BSON_DOCUMENT))
                run = -1
                _pause_if_spent_on(hub)
            if kind == _BSON_STRING:
                document[key] = _decode_string(view, value, last, hub)
            else:
                document[key] = _decode_large(view, first, value, last, codec_options, hub)
            continue
        if run < 0:
            run = first
            fields = 0
        run_end = last
        fields += 1
        if run_end - run >= SLICE_BYTES or fields >= SLICE_DOCUMENTS:
            document.update(_decode_in_place(view, run, run_end, codec_options, _BSON_DOCUMENT))
            run = -1
            _pause_if_spent_on(hub)
    if run >= 0:
        document.update(_decode_in_place(view, run, run_end, codec_options, _BSON_DOCUMENT))
        _pause_if_spent_on(hub)
    return document


def _pause_if_spent_on(hub: Any) -> None:
    # Runs on a child, after a slice of decoding: the next slice (or the work after the
    # last one) on a later loop iteration once this one's work budget is spent.  Several
    # slices fit in a budget: a pause costs a loop iteration, which a to_list of 1,000
    # documents of 16 KiB paid 70 times per query when every slice paused.
    if not hub._child_window_open():
        hub.pause()


class _Batch(list):  # type: ignore[type-arg]
    """The documents of a cursor batch of more than :data:`HANDOVER_DOCUMENTS` decoded in
    slices: a list, which, iterated in a child, hands its documents over
    :data:`MOVE_DOCUMENTS` at a time, the loop running between two pieces once the work
    budget is spent.  PyMongo's cursors iterate it once, into the deque they keep a batch
    in; iterated anywhere else, it is a plain list."""

    __slots__ = ()

    def __iter__(self) -> Any:
        if len(self) <= HANDOVER_DOCUMENTS or type(_getcurrent()) is not Child:
            return list.__iter__(self)
        return itertools.chain.from_iterable(self._pieces())

    def _pieces(self) -> Any:
        # Before each piece, the first included (it follows the batch's decoding and
        # PyMongo's handling of the reply), the loop runs if the budget is spent.
        for start in range(0, len(self), MOVE_DOCUMENTS):
            current = _getcurrent()
            if type(current) is Child:
                try:
                    _pause_if_spent_on(current.hub)
                except BaseException:  # Cancelled, or an interrupt
                    _kill_unborn_cursor(self)
                    raise
            yield self[start : start + MOVE_DOCUMENTS]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # Pickled, copied and deep-copied as the plain list it is.
        return list, (list(list.__iter__(self)),)


# The constructor of PyMongo's command cursors (aggregate, list_collections, ...).
_COMMAND_CURSOR_INIT = own_code(pymongo.cursor_shared._AgnosticCommandCursorBase.__init__)


def _kill_unborn_cursor(batch: _Batch) -> None:
    # Runs on a child stopped (by a cancellation, an interrupt) while it hands ``batch``
    # over.  Where a command cursor's constructor is handing its first batch into its
    # deque, the cursor has the reply's cursor id but is not yet one that closes itself
    # (it sets _killed after the deque), and the exception leaves nothing that could:
    # the server's cursor would stay open until the server times it out.  It goes to
    # the client's queue of cursors to kill, as PyMongo's collected cursors do.  (The
    # command's implicit session ends as the exception leaves MongoClient._tmp_session;
    # a find cursor's fetch closes its cursor itself: motor.cursors._close_cancelled.)
    frame: Any = sys._getframe(1)
    for _ in range(8):  # its generators (this _pieces, a wrapper's) in between
        if frame is None:
            return
        if frame.f_code is _COMMAND_CURSOR_INIT:
            break
        frame = frame.f_back
    else:
        return
    local: Any = frame.f_locals
    cursor, info, collection = local.get("self"), local.get("cursor_info"), local.get("collection")
    if (
        not isinstance(info, Mapping)
        or info.get("firstBatch") is not batch
        or "_killed" in getattr(cursor, "__dict__", ("_killed",))
    ):
        return
    cursor_id, address = info.get("id"), local.get("address")
    if cursor_id and address is not None:
        # (The kill goes out on a connection of the pool, as a collected cursor's: behind
        # a load balancer, the cursor was not pinned to its connection yet.)
        client = collection.database.client
        ns = info.get("ns") or collection.full_name
        client._close_cursor_soon(cursor_id, pymongo.message._CursorAddress(address, ns))


# An array element's start, as _guess_element looks for it: its type and a decimal key.
_ELEMENT_STARTS: dict[int, Any] = {}


def _element_start(kind: int) -> Any:
    pattern = _ELEMENT_STARTS.get(kind)
    if pattern is None:
        pattern = re.compile(re.escape(bytes((kind,))) + rb"(0|[1-9][0-9]{0,9})\x00")
        _ELEMENT_STARTS[kind] = pattern
    return pattern


def _guess_element(data: Any, at: int, end: int, decoded: int, kind: int = 0x03) -> int:
    # Where the first element of type ``kind`` that starts between ``at`` and
    # ``at + SLICE_BYTES`` (and before ``end``, the array's end) seems to start: keyed
    # by a number above ``decoded`` (the elements before ``at`` include those decoded
    # already), and for a document or array, with a length that fits in the array and
    # a last byte that is a NUL; or -1.
    # The regular expression's search steps over the bytes that cannot start such an
    # element in C: a type byte alone is common inside values (0x01 in one integer of
    # 256), and looking at each one in Python cost up to 20 ms per guess.
    search = _element_start(kind).search
    unpack = _UNPACK_INT32_FROM
    sized = kind in _CONTAINERS
    stop = min(end, at + SLICE_BYTES)
    # A key may end past ``stop``: the type byte, ten digits and the NUL.
    within = min(end, stop + 12)
    key = search(data, at, within)
    while key is not None:
        position = key.start()
        if position >= stop:
            break
        if int(key.group(1)) > decoded:
            if not sized:
                return int(position)
            value = key.end()
            size = unpack(data, value)[0] if value + 4 <= end else 0
            if 5 <= size <= end - value and data[value + size - 1] == 0:
                return int(position)
        key = search(data, position + 1, within)
    return -1


def _step_over(data: Any, position: int, end: int, target: int) -> int:
    # The end of the elements from ``position`` (at most SLICE_DOCUMENTS of them) that
    # reach ``target`` bytes, or of the array (at ``end``), stepping over each one; or
    # the start of a document or array of SPLIT_BYTES or more after the first one.
    limit = position + target
    unpack = _UNPACK_INT32_FROM
    first = position
    for _ in range(SLICE_DOCUMENTS):
        value = _nul(data, position + 1) + 1
        if data[position] in _CONTAINERS:
            size = unpack(data, value)[0]
            if size >= SPLIT_BYTES and position > first:
                break  # decoded in pieces of its own (_decode_large)
            next_position = value + size
        else:
            next_position = _element_end(data, data[position], value)
            if (
                data[position] == _BSON_STRING
                and next_position - value >= SPLIT_BYTES
                and position > first
            ):
                break  # decoded a slice at a time (_decode_string), if strict
        # (null, undefined, MinKey and MaxKey have no value bytes)
        if not value <= next_position <= end:
            raise _UnknownBSON(data[position])  # a length outside the array
        position = next_position
        if position >= limit or position >= end:
            break
    return position


def _decode_in_place(
    view: memoryview, first: int, last: int, codec_options: Any, kind: int = _BSON_ARRAY
) -> Any:
    """The array elements between ``first`` and ``last`` in ``view`` (a view of a whole
    bytearray or memory map), decoded where they lie, as PyMongo decodes an array (or,
    with ``kind`` 3, the document fields there, as an embedded document).

    The 10 bytes before ``first`` become the header of a document with one array, keyed
    "", whose elements are these (document length, type 4, the empty key, array
    length), and the 2 bytes from ``last`` the ends of the array and the document; the
    bytes overwritten (the array's own header, or the end of elements decoded already;
    the next element's type and key, or the array's end and what follows it) are
    restored once the slice is decoded.  The caller makes sure they are in the buffer.
    """
    data: Any = view.obj
    head = first - 10
    saved_head = data[head:first]
    saved_tail = data[last : last + 2]
    _PACK_HEADER_INTO(data, head, last + 2 - head, kind, 0, last + 1 - (first - 4))
    data[last : last + 2] = b"\0\0"
    try:
        return bson.decode(view[head : last + 2], codec_options)[""]
    finally:
        data[head:first] = saved_head
        data[last : last + 2] = saved_tail


# A document holding one array keyed "": document length, type, key, array length.
_PACK_HEADER_INTO = struct.Struct("<iBBi").pack_into


def _off_the_loop(function: Any, refuse: str = "") -> Any:
    """Wrap a blocking PyMongo function: called from a child, it runs in the loop's
    default executor (a worker thread, with the caller's context) while the child
    parks; called anywhere else, it runs as it is (refused on a running loop's thread
    when ``refuse`` names the wait)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current = _getcurrent()
        if isinstance(current, Child):
            return current.hub.run_in_thread(function, *args, **kwargs)
        if refuse:
            refuse_to_block(refuse)
        return function(*args, **kwargs)

    wrapper.motor_green = True  # type: ignore[attr-defined]
    return wrapper


def _crypto_off_the_loop(size: Callable[..., float], function: Any) -> Any:
    """Wrap a PyMongo function that encrypts or decrypts: called from a child with
    arguments whose ``size`` is at least :data:`ENCRYPTION_OFF_LOOP_BYTES`, it runs in
    the child as usual, and libmongocrypt's last step (``MongoCryptContext.finish``,
    where the value is encrypted or decrypted) runs in a worker thread while the child
    parks (see :func:`_green_finish`).  Its I/O (key vault lookups, KMS, mongocryptd)
    stays where it was: a worker thread waiting for a connection of a pool whose
    connections are held by children waiting for worker threads would never end."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if (
            type(_getcurrent()) is Child
            and not _crypto_off_loop.get()
            and size(*args, **kwargs) >= ENCRYPTION_OFF_LOOP_BYTES
        ):
            token = _crypto_off_loop.set(True)
            try:
                return function(*args, **kwargs)
            finally:
                _crypto_off_loop.reset(token)
        return function(*args, **kwargs)

    wrapper.motor_green = True  # type: ignore[attr-defined]
    return wrapper


def _value_size(value: Any) -> float:
    # The bytes an explicitly encrypted or decrypted value stands for: its length for a
    # string or binary (a Binary is bytes), unknown (so, large) for a document or array.
    if isinstance(value, (str, bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, (Mapping, list, tuple)):
        return math.inf
    return 0


def _explicit_value_size(_self: Any, value: Any = None, *args: Any, **kwargs: Any) -> float:
    # ClientEncryption.encrypt(value, algorithm, ...) and decrypt(value).
    return _value_size(value)


def _reply_size(_self: Any, response: Any, *args: Any, **kwargs: Any) -> float:
    # _Encrypter.decrypt(response): the reply's BSON.
    return len(response)


def _any_size(*args: Any, **kwargs: Any) -> float:
    return math.inf


# Patched methods (install): the class, the name, the size of a call's arguments.
_ENCRYPTION_CPU_OFF_THE_LOOP: tuple[tuple[Any, str, Callable[..., float]], ...] = (
    (_client_encryption, "encrypt", _explicit_value_size),
    (_client_encryption, "decrypt", _explicit_value_size),
    (_encrypter, "decrypt", _reply_size),
    (_encrypter, "encrypt", _any_size),
)

# Set in a child for a call whose libmongocrypt work runs in a worker thread.
_crypto_off_loop: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "motor_crypto_off_loop", default=False
)
#: Threads that run libmongocrypt's ``finish`` for the loop (CPU only: they never wait
#: for a pool).
CRYPTO_THREADS = 2
# (process id, executor, the jobs submitted and not done): one per process, as
# motor.green.socket's resolver (a process made by fork() has none of its parent's
# threads, and none of its jobs).
_crypto: tuple[int, concurrent.futures.ThreadPoolExecutor, set[Any]] | None = None
_crypto_lock = threading.Lock()


def _new_crypto_lock() -> None:
    # In a process made by fork(): another thread may have held the lock at fork().
    global _crypto_lock
    _crypto_lock = threading.Lock()


if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_new_crypto_lock)


def _crypto_state() -> tuple[int, concurrent.futures.ThreadPoolExecutor, set[Any]]:
    global _crypto
    pid = _os.getpid()
    state = _crypto
    if state is None or state[0] != pid:
        with _crypto_lock:
            state = _crypto
            if state is None or state[0] != pid:
                executor = concurrent.futures.ThreadPoolExecutor(
                    CRYPTO_THREADS, thread_name_prefix="motor-crypto"
                )
                state = _crypto = (pid, executor, set())
    return state


def _crypto_jobs() -> list[Any]:
    """This process's crypto jobs not done (queued or running)."""
    state = _crypto
    if state is None or state[0] != _os.getpid():
        return []
    return list(state[2])


def _crypto_job(future: concurrent.futures.Future[Any], finish: Any, ctx: Any) -> None:
    # Runs in a crypto thread; never runs ``finish`` for a future cancelled first.
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = finish(ctx)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _green_finish(original: Any) -> Any:
    """pymongocrypt's ``MongoCryptContext.finish`` (where libmongocrypt encrypts or
    decrypts, calling cryptography's AES and HMAC): in a child marked by
    :func:`_crypto_off_the_loop`, it runs in a crypto thread, to its end even if the
    call is cancelled meanwhile (the call's cleanup frees the context the thread uses);
    closing libmongocrypt waits for such jobs (:func:`_green_encryption_close`)."""

    @functools.wraps(original)
    def finish(self: Any) -> Any:
        current = _getcurrent()
        if type(current) is Child and _crypto_off_loop.get():
            _, executor, jobs = _crypto_state()
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.add_done_callback(jobs.discard)
            try:
                jobs.add(future)
                executor.submit(contextvars.copy_context().run, _crypto_job, future, original, self)
            except BaseException:
                # Perhaps submitted (an interrupt in submit()): it never runs unless it
                # runs already; then it is waited for, before the context is freed.
                if not future.cancel():
                    concurrent.futures.wait([future])
                raise
            return current.hub.wait_job_to_end(future)
        return original(self)

    finish.motor_green = True  # type: ignore[attr-defined]
    return finish


def _green_encryption_close(original: Any) -> Any:
    """PyMongo's ``ClientEncryption.close`` and ``_Encrypter.close`` (which free
    libmongocrypt): first wait until this process's crypto jobs not done, which may use
    it, are done; in a child parked, elsewhere blocking (a ``close()`` where no loop
    runs).  libmongocrypt's finalizer needs no wait: while a call runs on a
    ``MongoCrypt``, the call's frames keep it alive."""

    @functools.wraps(original)
    def close(self: Any) -> Any:
        jobs = _crypto_jobs()
        if jobs:
            current = _getcurrent()
            if type(current) is Child:
                for job in jobs:
                    current.hub.wait_job_to_end(job)
            elif not threading.current_thread().name.startswith("motor-crypto"):
                concurrent.futures.wait(jobs)
        return original(self)

    close.motor_green = True  # type: ignore[attr-defined]
    return close


def _green_compress(operation: int, data: bytes, ctx: Any) -> tuple[int, bytes]:
    """``pymongo.message._compress`` (how PyMongo compresses every message it sends on a
    compressed connection): in a child, a message of at least
    :data:`COMPRESS_OFF_LOOP_BYTES` is compressed in a worker thread."""
    if len(data) >= COMPRESS_OFF_LOOP_BYTES:
        current = _getcurrent()
        if type(current) is Child:
            result: tuple[int, bytes] = current.hub.run_in_thread(
                _original_compress, operation, data, ctx
            )
            return result
    return _original_compress(operation, data, ctx)  # type: ignore[no-any-return]


def _green_get_access_token(original: Any) -> Any:
    """MONGODB-OIDC's ``_get_access_token``: with a cached token, PyMongo's method, which
    returns it; otherwise PyMongo's method off the loop's thread (:func:`_off_the_loop`),
    where its lock, its ``time.sleep`` and the token callback may block."""
    off_the_loop = _off_the_loop(original)

    @functools.wraps(original)
    def get_access_token(self: Any) -> Any:
        if self.access_token:
            return original(self)
        return off_the_loop(self)

    get_access_token.motor_green = True  # type: ignore[attr-defined]
    return get_access_token


def _green_authenticate_aws(original: Any) -> Any:
    """PyMongo's MONGODB-AWS authentication, with its library's import and credential
    lookup off the loop's thread when a child authenticates (see the module docstring)."""

    @functools.wraps(original)
    def authenticate_aws(credentials: Any, conn: Any) -> None:
        current = _getcurrent()
        if type(current) is Child:
            module = sys.modules.get(_AWS_MODULE)
            fetch = getattr(module, "aws_temp_credentials", None)
            if fetch is None:
                # Not imported, or being imported by another child's worker thread (the
                # module is in sys.modules half made): importing, or waiting for that
                # import to finish, happens off the loop's thread.
                try:
                    current.hub.run_in_thread(importlib.import_module, _AWS_MODULE)
                except ImportError:
                    pass  # PyMongo raises its ConfigurationError, naming the extra
                module = sys.modules.get(_AWS_MODULE)
                fetch = getattr(module, "aws_temp_credentials", None)
            if fetch is not None and not getattr(fetch, "motor_green", False):
                module.aws_temp_credentials = _off_the_loop(fetch)  # type: ignore[union-attr]
        original(credentials, conn)

    authenticate_aws.motor_green = True  # type: ignore[attr-defined]
    return authenticate_aws


# The module of pymongo-auth-aws (PyMongo's "aws" extra) that looks credentials up.
_AWS_MODULE = "pymongo_auth_aws.auth"


def _pbkdf2_hmac(*args: Any, **kwargs: Any) -> bytes:
    # Looked up on every call, so that a test may watch hashlib's function.
    return hashlib.pbkdf2_hmac(*args, **kwargs)


class _GreenHashlib(types.ModuleType):
    """``hashlib`` as ``pymongo.synchronous.auth`` sees it: ``pbkdf2_hmac`` leaves the
    loop's thread when a child calls it (:func:`_off_the_loop`); every other name is
    hashlib's own."""

    pbkdf2_hmac = staticmethod(_off_the_loop(_pbkdf2_hmac))

    def __getattr__(self, name: str) -> Any:
        return getattr(hashlib, name)


_GREEN_HASHLIB = _GreenHashlib("hashlib")


def _green_sendall(sock: Any, buf: Any) -> None:
    """``sendall`` in ``pymongo.synchronous.pool`` (how a connection sends a message):
    a green socket sends a :class:`~motor.green.splice.SplicedMessage` piece by piece;
    any other socket gets it joined."""
    if type(buf) is SplicedMessage:
        if type(sock) is GreenSocket:
            sock.send_pieces(buf.chunks())
            return
        buf = bytes(buf)
    sock.sendall(buf)


def close_client(client: Any) -> None:
    """``client.close()`` for a child, whose pooled connections are closed in pieces.

    ``MongoClient.close`` ends the client's server sessions, kills its cursors, and then
    closes the topology, whose pools close their connections in one stretch under the
    topology's lock.  Here the first two steps run first, as in ``close()`` (PyMongo's own
    methods, in the same order: they use pooled connections), then each green pool's idle
    connections are closed (:meth:`GreenPool.close_idle`), and then ``close()`` does the
    rest, with no session, cursor or idle connection left.  The events are ``close()``'s,
    in its order.
    """
    topology = getattr(client, "_topology", None)
    if topology is not None and not client._closed:
        session_ids = topology.pop_all_sessions()
        if session_ids:
            client._end_sessions(session_ids)
        client._kill_cursors_executor.close()
        client._process_kill_cursors()
        for server in list(topology._servers.values()):
            pool = server.pool
            if isinstance(pool, GreenPool):
                pool.close_idle()
    client.close()
    if topology is not None:
        wake_server_selections(topology)


def wake_server_selections(topology: Any) -> None:
    """Wake the server selections waiting on a topology that was just closed.

    ``Topology.close()`` does not notify its condition, so a selection waiting for a
    server (a call made before the client connected, say) would see the closed topology
    only at its next wake-up, up to ``MIN_HEARTBEAT_INTERVAL`` (0.5 s) later, and then
    raise ``InvalidOperation`` ("Cannot use MongoClient after close").  Woken now, it
    raises the same at once, and a loop that waits for such calls to finish as it closes
    does not wait for nothing.
    """
    condition = getattr(topology, "_condition", None)
    if condition is None:
        return
    with topology._lock:
        condition.notify_all()


#: How long what is left of a ``close()`` cut off by its loop's closing may wait for
#: the server (seconds): it blocks ``loop.close()``, so a server that stopped answering
#: must not hang it.
FINISH_CLOSE_TIMEOUT = 5.0


def finish_closing(client: Any) -> None:
    """What is left of :func:`close_client` once the loop that ran it has stopped for
    good: PyMongo's ``client.close()``, outside any child, so its I/O blocks (the
    ``killCursors`` of cursors not killed yet; an ``endSessions`` the server had not
    answered is not sent again: those sessions expire on the server).  Its waits for
    the server are bounded by ``pymongo.timeout(FINISH_CLOSE_TIMEOUT)``; PyMongo's
    ``close()`` ignores their failures and closes the client regardless.
    """
    with pymongo.timeout(FINISH_CLOSE_TIMEOUT):
        client.close()


def _green_create_lock() -> GreenLock:
    return GreenLock()


def _module_copy(module: types.ModuleType, **replaced: Any) -> types.ModuleType:
    """A module whose namespace is a copy of ``module``'s, with some names replaced.

    Installed as a PyMongo module's global (``time``, ``os``), it changes only the
    replaced functions there, and the others still cost a plain attribute lookup.
    """
    copy = types.ModuleType(module.__name__, module.__doc__)
    copy.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
    copy.__dict__.update(replaced)
    return copy


# The time module with a green sleep (for PyMongo's retry backoffs).
_green_time = _module_copy(_time, sleep=sleep)

# The os module with a getpid() that reads the hub's cached process id (a C callable,
# no system call; refreshed in the child after fork()): for the pool's fork check,
# which runs on every checkout and checkin.
_green_os = _module_copy(_os, getpid=functools.partial(operator.getitem, _process, 0))

# Modules whose ``time.sleep`` is a retry backoff on an operation's path.
_SLEEPING_MODULES = (
    pymongo.synchronous.mongo_client,
    pymongo.synchronous.client_session,
)


def _next_batch_moves_nothing(cls: type) -> bool:
    # _next_batch(result, 0) of a cursor class, on a stand-in with two documents
    # buffered and one with none: True, nothing moved; then a fetch, and False.
    class Buffered:
        _empty = False
        _killed = False

        def __init__(self, documents: list[Any]) -> None:
            self._data: Any = collections.deque(documents)
            self.fetches = 0

        def _refresh(self) -> int:
            self.fetches += 1
            return 0

    next_batch = getattr(cls, "_next_batch", None)
    if next_batch is None:
        return False
    result: list[Any] = []
    full, empty = Buffered([1, 2]), Buffered([])
    try:
        found = next_batch(full, result, 0)
        missing = next_batch(empty, result, 0)
    except Exception:
        return False
    return (
        found is True
        and missing is False
        and result == []
        and list(full._data) == [1, 2]
        and full.fetches == 0
        and empty.fetches == 1
    )


def check_pymongo_internals() -> list[str]:
    """Return what changed in PyMongo's internals that the green core relies on.

    An empty list means the installed PyMongo has the expected shape.
    """
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    version = tuple(int(p) for p in pymongo.version_tuple[:2])
    need(
        version == TESTED_PYMONGO,
        f"PyMongo {pymongo.version} is installed; Motor's green core is tested with "
        f"{TESTED_PYMONGO[0]}.{TESTED_PYMONGO[1]}.x",
    )
    pool_cls = _pymongo_pool.Pool
    need(callable(getattr(pool_cls, "connect", None)), "Pool.connect() is missing")
    connect_names = own_code(getattr(pool_cls, "connect", None))
    need(
        connect_names is not None and "_configured_socket_interface" in connect_names.co_names,
        "Pool.connect() no longer calls the module-level _configured_socket_interface",
    )
    need(
        hasattr(_pymongo_pool, "_configured_socket_interface"),
        "pymongo.synchronous.pool._configured_socket_interface is missing",
    )
    client_close = code_names(pymongo.synchronous.mongo_client.MongoClient.close)
    for name in ("pop_all_sessions", "_end_sessions", "_kill_cursors_executor"):
        need(name in client_close, f"MongoClient.close() no longer uses {name}")
    need(
        "_process_kill_cursors" in client_close and "_closed" in client_close,
        "MongoClient.close() no longer calls _process_kill_cursors or sets _closed",
    )
    init_names = code_names(pool_cls.__init__)
    for name in ("size_cond", "_max_connecting_cond", "lock"):
        need(name in init_names, f"Pool.__init__ no longer sets self.{name}")
    client_init = own_code(pymongo.synchronous.mongo_client.MongoClient.__init__)
    for kwarg in ("_pool_class", "_condition_class"):
        need(
            kwarg in getattr(client_init, "co_consts", ()),
            f"MongoClient no longer accepts {kwarg}=",
        )
    for name in (
        "_set_keepalive_times",
        "_raise_connection_failure",
        "_get_timeout_details",
        "_get_ssl_session",
        "_has_sni",
        "_CertificateError",
        "SSLErrors",
    ):
        need(hasattr(_pool_shared, name), f"pymongo.pool_shared.{name} is missing")
    need(
        hasattr(NetworkingInterface, "get_conn"),
        "pymongo.network_layer.NetworkingInterface.get_conn is missing",
    )
    command_cursor_init = _COMMAND_CURSOR_INIT
    need(
        command_cursor_init is not None
        and own_code(pymongo.synchronous.command_cursor.CommandCursor.__init__)
        is command_cursor_init
        and command_cursor_init.co_varnames[:4] == ("self", "collection", "cursor_info", "address")
        and {"deque", "_killed", "full_name"} <= set(command_cursor_init.co_names),
        "CommandCursor's constructor changed: _kill_unborn_cursor reads its arguments",
    )
    manager = _cursor_base._ConnectionManager
    need(
        hasattr(_cursor_base, "_create_lock") and "_create_lock" in code_names(manager.__init__),
        "_ConnectionManager no longer takes its lock from cursor_base._create_lock",
    )
    for module in _SLEEPING_MODULES:
        need(
            getattr(module, "time", None) in (_time, _green_time),
            f"{module.__name__} no longer imports the time module as 'time'",
        )
    need(
        getattr(_pymongo_pool, "receive_message", None)
        in (pymongo.network_layer.receive_message, _green_receive_message)
        and "receive_message" in code_names(_pymongo_pool.Connection.receive_message),
        "Connection.receive_message no longer calls pymongo.synchronous.pool.receive_message",
    )
    # Motor's reader follows PyMongo's: the same header and reply parsing, the same
    # cancellation (cancel_context) and SDAM rules.  A change there needs a look here.
    reader = pymongo.network_layer
    for function, names in (
        (reader.receive_message, {"receive_data", "_UNPACK_REPLY", "decompress"}),
        (reader.receive_data, {"cancel_context", "cancelled", "is_sdam", "recv_into"}),
    ):
        code = own_code(function)
        need(
            code is not None and names <= set(code.co_names),
            f"pymongo.network_layer.{function.__name__} changed: "
            "Motor's reply reader (motor.green.pool._green_receive_message) mirrors it",
        )
    need(
        _UNPACK_OP_MSG is not None and list(_UNPACK_REPLY) == [2013],
        "pymongo.message._UNPACK_REPLY no longer parses exactly OP_MSG (2013) replies",
    )
    need(
        isinstance(_DEADLINE, contextvars.ContextVar)
        and getattr(pymongo.network_layer, "_POLL_TIMEOUT", None) == _POLL_TIMEOUT,
        "pymongo._csot.DEADLINE or pymongo.network_layer._POLL_TIMEOUT changed",
    )
    # Cancelling a connection (_CancellationContext.cancel) also wakes its green
    # socket's parked read: the pool must cancel through the connection's context.
    context_cls = getattr(_pool_shared, "_CancellationContext", None)
    cancels = False
    if context_cls is not None:
        context = context_cls()
        context.cancel()
        cancels = context.cancelled is True and issubclass(_WakingCancellation, context_cls)
    need(cancels, "pymongo.pool_shared._CancellationContext changed")
    need(
        connect_names is not None
        and {"cancel_context", "active_contexts"} <= set(connect_names.co_names)
        and {"cancel", "active_contexts"} <= code_names(pool_cls._reset),
        "Pool no longer cancels connections through conn.cancel_context and Pool.active_contexts",
    )
    monitor_pool = getattr(pymongo.synchronous.topology.Topology, "_create_pool_for_monitor", None)
    monitor_code = own_code(monitor_pool)
    monitor_names: set[str] = set()
    if monitor_code is not None:
        monitor_names.update(monitor_code.co_names)
        for const in monitor_code.co_consts:  # keyword names of calls
            if isinstance(const, tuple):
                monitor_names.update(c for c in const if isinstance(c, str))
    need(
        callable(getattr(pymongo.pool_options.PoolOptions, "_update_metadata", None))
        and {"PoolOptions", "driver", "pool_class", "is_sdam"} <= monitor_names,
        "PyMongo's monitor pools no longer take is_sdam=True and PoolOptions(driver=...), "
        "or PoolOptions._update_metadata is gone (MotorClient(driver=...))",
    )
    reset_code = own_code(pool_cls._reset)
    need(
        {"close", "interrupt_connections"} <= set(getattr(reset_code, "co_varnames", ())),
        "Pool._reset no longer takes close= and interrupt_connections= (GreenPool.close)",
    )
    need(
        getattr(_pymongo_pool, "os", None) in (_os, _green_os),
        "pymongo.synchronous.pool no longer imports the os module as 'os'",
    )
    timeout_ok = isinstance(TIMEOUT, contextvars.ContextVar)
    if timeout_ok:
        with pymongo.timeout(12.5):
            timeout_ok = TIMEOUT.get(None) == 12.5 == pymongo._csot.get_timeout()
    need(timeout_ok, "pymongo._csot.TIMEOUT no longer holds pymongo.timeout()'s value")
    # Sliced decoding of large cursor batches overrides _OpMsg.unpack_response, which
    # decodes self.payload_document with bson._decode_all_selective, in a subclass made
    # by _OpMsg.unpack.
    sample = _SlicedOpMsg.unpack(struct.pack("<IB", 0, 0) + bson.encode({"ok": 1}))
    need(
        type(sample) is _SlicedOpMsg,
        "pymongo.message._OpMsg.unpack no longer makes an instance of the class it is called on",
    )
    unpack = _OpMsg.unpack_response
    unpack_code = own_code(unpack)
    need(
        unpack_code is not None
        and unpack_code.co_varnames[:5]
        == ("self", "cursor_id", "codec_options", "user_fields", "legacy_response")
        and {"payload_document", "_decode_all_selective"} <= set(unpack_code.co_names)
        and "payload_document" in getattr(own_code(_OpMsg.__init__), "co_varnames", ()),
        "pymongo.message._OpMsg.unpack_response changed (motor.green.pool decodes large "
        "batches in slices in its place)",
    )
    batch_size_property = vars(pymongo.message._BulkWriteContextBase)["max_write_batch_size"]
    need(
        "max_write_batch_size" in code_names(_pymongo_pool.Connection._hello)
        and "max_write_batch_size" in code_names(batch_size_property.fget),
        "Connection.max_write_batch_size no longer limits a bulk write's batches",
    )
    problems.extend(_bulk.check_pymongo_internals())
    problems.extend(_find.check_pymongo_internals())
    problems.extend(_splice.check_pymongo_internals())
    need(
        callable(getattr(_srv_resolver, "_resolve", None)),
        "pymongo.synchronous.srv_resolver._resolve is missing",
    )
    for name in _ENCRYPTION_IO_OFF_THE_LOOP:
        need(
            callable(getattr(_encryption_io, name, None)),
            f"pymongo.synchronous.encryption._EncryptionIO.{name} is missing",
        )
    for cls, name, _ in _ENCRYPTION_CPU_OFF_THE_LOOP:
        need(
            callable(getattr(cls, name, None)),
            f"pymongo.synchronous.encryption.{cls.__name__}.{name} is missing",
        )
    mongocrypt = sys.modules.get("pymongocrypt.mongocrypt")
    if mongocrypt is not None:
        need(
            callable(getattr(getattr(mongocrypt, "MongoCryptContext", None), "finish", None)),
            "pymongocrypt.mongocrypt.MongoCryptContext.finish is missing",
        )
    # (PyMongo's _op_msg_compressed: the splicer's replaces it, see motor.green.splice.)
    compressing = [_splice._original_compressed] + [
        getattr(pymongo.message, name, None)
        for name in ("_batched_op_msg_compressed", "_client_batched_op_msg_compressed")
    ]
    compress = getattr(pymongo.message, "_compress", None)
    if compress is _green_compress:
        compress = _original_compress
    need(
        compress is not None
        and "compress" in code_names(compress)
        and all(step is not None and "_compress" in code_names(step) for step in compressing),
        "pymongo.message no longer compresses messages with _compress(operation, data, ctx)",
    )
    get_token = getattr(_oidc_authenticator, "_get_access_token", None)
    need(
        get_token is not None and {"fetch", "lock", "access_token"} <= code_names(get_token),
        "pymongo.synchronous.auth_oidc._OIDCAuthenticator._get_access_token no longer calls "
        "the token callback under its lock",
    )
    aws = getattr(_auth, "_AUTH_MAP", {}).get("MONGODB-AWS")
    need(
        aws is not None
        and "_AUTH_MAP" in code_names(_auth.authenticate)
        and {"pymongo_auth_aws", "step"} <= code_names(aws),
        "pymongo.synchronous.auth no longer authenticates MONGODB-AWS with pymongo_auth_aws "
        "through _AUTH_MAP",
    )
    scram = getattr(_auth, "_authenticate_scram", None)
    need(
        getattr(_auth, "hashlib", None) in (hashlib, _GREEN_HASHLIB)
        and scram is not None
        and {"hashlib", "pbkdf2_hmac"} <= code_names(scram),
        "pymongo.synchronous.auth._authenticate_scram no longer derives the salted password "
        "with hashlib.pbkdf2_hmac",
    )
    for cls in (
        pymongo.synchronous.cursor.Cursor,
        pymongo.synchronous.command_cursor.CommandCursor,
    ):
        need(callable(getattr(cls, "_refresh", None)), f"{cls.__name__}._refresh is missing")
        # motor.cursors: the buffered documents, the pinned connection, killing
        # without I/O (rewind, PyMongo's __del__).
        refresh_names = own_code(getattr(cls, "_refresh", None))
        need(
            refresh_names is not None and "_data" in refresh_names.co_names,
            f"{cls.__name__} no longer buffers its documents in _data",
        )
        need(
            callable(getattr(cls, "_die_no_lock", None)),
            f"{cls.__name__}._die_no_lock is missing",
        )
        # motor.cursors._to_list: to_list takes its batches with _next_batch, which with
        # a total of 0 fetches a batch if none is buffered and moves nothing.
        to_list = getattr(cls, "to_list", None)
        to_list_code = own_code(to_list)
        need(
            to_list_code is not None and "_next_batch" in to_list_code.co_names,
            f"{cls.__name__}.to_list no longer takes its batches with _next_batch",
        )
        need(_next_batch_moves_nothing(cls), f"{cls.__name__}._next_batch(result, 0) changed")
    need(
        {"_query_flags", "_sock_mgr"} <= code_names(pymongo.cursor_shared._AgnosticCursor.__init__),
        "Cursor no longer keeps _query_flags and _sock_mgr",
    )
    need(
        "_sock_mgr" in code_names(pymongo.synchronous.command_cursor.CommandCursor.__init__),
        "CommandCursor no longer keeps _sock_mgr",
    )
    # motor.sessions: with_transaction applies PyMongo's retry rules with its helpers.
    shared = pymongo.client_session_shared
    for name in (
        "_BACKOFF_INITIAL",
        "_BACKOFF_MAX",
        "_within_time_limit",
        "_max_time_expired_error",
        "_WITH_TRANSACTION_RETRY_TIME_LIMIT",
    ):
        need(hasattr(shared, name), f"pymongo.client_session_shared.{name} is missing")
    # reclaim_stranded: what a checkout raised (_get_conn's "applied" flags) and how the
    # pool lowers it again.
    undo = ("_UNDO_OPERATION_COUNT", "_UNDO_REQUESTS", "_UNDO_SOCKETS", "_UNDO_PENDING")
    need(
        [getattr(_pool_shared, name, None) for name in undo] == [1, 2, 4, 8],
        "pymongo.pool_shared's checkout flags (_UNDO_*) changed",
    )
    get_conn = own_code(_pymongo_pool.Pool._get_conn)
    need(
        get_conn is not None
        and "applied" in get_conn.co_varnames
        and {"_restore_counters", "_pending", "requests", "active_sockets"}
        <= set(get_conn.co_names),
        "Pool._get_conn no longer records its counters in 'applied'",
    )
    need(
        {"operation_count", "requests", "active_sockets", "_pending"}
        <= code_names(_pymongo_pool.Pool._restore_applied),
        "Pool._restore_applied changed",
    )

    need(
        isinstance(
            getattr(pymongo.synchronous.client_session, "_SESSION", None), contextvars.ContextVar
        ),
        "pymongo.synchronous.client_session._SESSION is missing",
    )
    # motor.sessions: a bound session ends on the loop thread when that needs no I/O
    # (session_ends_without_io).  Each function on the way from end_session() to the
    # session pool, with every name its code may use: anything new may be I/O.
    session_cls = pymongo.synchronous.client_session.ClientSession
    ending_path: tuple[tuple[str, Any, set[str]], ...] = (
        (
            "ClientSession._end_session",
            session_cls._end_session,
            {
                "_server_session",
                "in_transaction",
                "abort_transaction",
                "_unpin",
                "_client",
                "_return_server_session",
            },
        ),
        ("ClientSession._unpin", session_cls._unpin, {"_transaction", "unpin"}),
        (
            "_Transaction.unpin",
            pymongo.synchronous.client_session._Transaction.unpin,
            {"pinned_address", "conn_mgr", "close"},
        ),
        (
            "MongoClient._return_server_session",
            pymongo.synchronous.mongo_client.MongoClient._return_server_session,
            {"isinstance", "_EmptyServerSession", "_topology", "return_server_session"},
        ),
        (
            "Topology.return_server_session",
            pymongo.synchronous.topology.Topology.return_server_session,
            {"_session_pool", "return_server_session"},
        ),
        (
            "_ServerSessionPool.return_server_session",
            shared._ServerSessionPool.return_server_session,
            {"generation", "dirty", "appendleft"},
        ),
    )
    for where, step, allowed in ending_path:
        code = own_code(step)
        need(
            code is not None and set(code.co_names) <= allowed,
            f"{where} changed (ending a session may do I/O)",
        )
    return problems


def session_ends_without_io(session: Any) -> bool:
    """Would PyMongo's ``session.end_session()`` do no I/O?  True outside a transaction
    with no connection pinned: ending then only returns the server session to the
    client's pool (no lock, no socket), so it may run on the loop thread."""
    return not session.in_transaction and session._transaction.conn_mgr is None


_installed = False


def install() -> None:
    """Apply the patches described in the module docstring (idempotent)."""
    global _installed, _original_socket_interface, _original_resolve, _original_receive_message
    global _original_compress
    if _installed:
        return
    problems = check_pymongo_internals()
    if problems:
        raise PyMongoInternalsChanged("Motor cannot run on this PyMongo: " + "; ".join(problems))
    current = _pymongo_pool._configured_socket_interface
    if not getattr(current, "motor_green", False):
        _original_socket_interface = current
        _pymongo_pool._configured_socket_interface = _socket_interface_dispatch
    _cursor_base._create_lock = _green_create_lock
    if not getattr(_srv_resolver._resolve, "motor_green", False):
        _original_resolve = _srv_resolver._resolve
        _srv_resolver._resolve = _off_the_loop(_original_resolve, "a DNS SRV/TXT lookup")
    for name in _ENCRYPTION_IO_OFF_THE_LOOP:
        method = getattr(_encryption_io, name)
        if not getattr(method, "motor_green", False):
            setattr(_encryption_io, name, _off_the_loop(method))
    for cls, name, size in _ENCRYPTION_CPU_OFF_THE_LOOP:
        method = getattr(cls, name)
        if not getattr(method, "motor_green", False):
            setattr(cls, name, _crypto_off_the_loop(size, method))
    mongocrypt = sys.modules.get("pymongocrypt.mongocrypt")  # PyMongo's encryption imports it
    if mongocrypt is not None:
        context_class = mongocrypt.MongoCryptContext
        if not getattr(context_class.finish, "motor_green", False):
            context_class.finish = _green_finish(context_class.finish)
        for cls in (_client_encryption, _encrypter):
            if not getattr(cls.close, "motor_green", False):
                cls.close = _green_encryption_close(cls.close)
    _auth.hashlib = _GREEN_HASHLIB
    current = _oidc_authenticator._get_access_token
    if not getattr(current, "motor_green", False):
        _oidc_authenticator._get_access_token = _green_get_access_token(current)
    current = _auth._AUTH_MAP["MONGODB-AWS"]
    if not getattr(current, "motor_green", False):
        _auth._AUTH_MAP["MONGODB-AWS"] = _green_authenticate_aws(current)
    current = pymongo.message._compress
    if current is not _green_compress:
        _original_compress = current
        pymongo.message._compress = _green_compress
    for module in _SLEEPING_MODULES:
        module.time = _green_time  # type: ignore[attr-defined]
    _pymongo_pool.os = _green_os
    Hub.reclaim_stranded = reclaim_stranded
    _bulk.install()
    _reauth.install()
    _splice.install(pymongo.message)
    if _pymongo_pool.sendall is not _green_sendall:
        _pymongo_pool.sendall = _green_sendall
    current = _pymongo_pool.receive_message
    if current is not _green_receive_message:
        _original_receive_message = current
        _pymongo_pool.receive_message = _green_receive_message
    _installed = True


def client_hooks(driver: Any = None) -> dict[str, Any]:
    """The private ``MongoClient`` keyword arguments that make a client green.

    ``driver``, the application's ``DriverInfo`` (``MotorClient(driver=...)``), goes
    into the handshake of the client's monitoring connections too: the client is made
    with Motor's own ``DriverInfo`` and appends the application's (``append_metadata``),
    which PyMongo's monitors, made from the first alone, would not send.
    """
    install()
    pool_class = GreenPool if driver is None else _pool_class_appending(driver)
    return {"_pool_class": pool_class, "_condition_class": GreenCondition}


def check_client_tls(client: Any) -> None:
    """Refuse a client made with ``client_hooks`` whose TLS would need pyOpenSSL.

    Raises :class:`~pymongo.errors.ConfigurationError` when the client is made, like
    PyMongo's own TLS option errors, instead of at its first connection, where PyMongo's
    server selection would turn the error into a ``ServerSelectionTimeoutError`` after
    ``serverSelectionTimeoutMS``.  The client is closed first (``connect=True`` has
    started its monitors).
    """
    options = client._options
    try:
        check_tls_context(options.pool_options._ssl_context)
        if (
            client._resolve_srv_info.get("is_srv")
            and "tls" not in options._options
            and _ssl_support.HAVE_PYSSL
        ):
            # A mongodb+srv:// URI turns TLS on when PyMongo resolves it (at the first
            # operation, with connect=False) unless tls (or ssl) is given, with a
            # context of pyOpenSSL's (or, should PyMongo's module move, at the handshake).
            pyssl = getattr(_ssl_support, "_pyssl", None)
            if pyssl is not None:
                raise unusable_tls_context(pyssl.SSLContext)
    except ConfigurationError:
        client.close()
        raise


def _pool_class_appending(driver: Any) -> type[GreenPool]:
    class AppendingPool(GreenPool):
        def __init__(self, address: Any, options: Any, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("is_sdam"):
                # A monitor's own options (Topology._create_pool_for_monitor).
                options._update_metadata(driver)
            super().__init__(address, options, *args, **kwargs)

    AppendingPool.__name__ = AppendingPool.__qualname__ = GreenPool.__name__
    return AppendingPool
