"""``find_one`` without a cursor object: PyMongo's query, retries, events and cleanup.

PyMongo's ``Collection.find_one(filter)`` makes a ``Cursor`` (about 30 attributes, option
validation, a deque), sets ``limit(-1)``, iterates it once and lets it be collected; the
cursor's machinery costs about a sixth of the client CPU of a small ``find_one`` against
a fast server (16 µs of 101 µs per operation at 100 concurrent operations, measured with
``bench/compare.py``'s canned server).

:func:`find_one` sends the same ``find`` command through the same PyMongo functions the
cursor uses (``MongoClient._run_operation`` with the cursor's ``_run_with_conn``, so
server selection, retryable reads, sessions, ``$clusterTime``, read preference, read
concern, command monitoring and logging, and error handling are PyMongo's), and then
closes what the cursor would close, as the cursor would: the implicit session goes back to
the pool, and a cursor the server left open (it should not, for ``singleBatch``) is killed.

It takes ``filter`` and ``projection`` only.  Any other argument, a load-balanced client and
a client with automatic encryption take PyMongo's own ``Collection.find_one``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pymongo.synchronous.collection
import pymongo.synchronous.cursor
import pymongo.synchronous.mongo_client
from pymongo import helpers_shared
from pymongo.message import _CursorAddress, _Query
from pymongo.synchronous.cursor_base import _CursorBase

from motor.green import reauth as _reauth
from motor.green.internals import DELEGATING, own_code, pymongo_own

__all__ = ["check_pymongo_internals", "find_one"]

# PyMongo's own method, under any wrapper put on it before Motor was imported.
_pymongo_find_one = pymongo_own(pymongo.synchronous.collection.Collection.find_one)
_fields_list_to_dict = helpers_shared._fields_list_to_dict


class _FindOne:
    """What ``Cursor._run_with_conn`` needs of its cursor: the collection and the decoder."""

    __slots__ = ("_collection",)

    def __init__(self, collection: Any) -> None:
        self._collection = collection

    def _unpack_response(
        self,
        response: Any,
        cursor_id: int | None,
        codec_options: Any,
        user_fields: Mapping[str, Any] | None = None,
        legacy_response: bool = False,
    ) -> Sequence[Any]:
        # Cursor._unpack_response, for a find reply.
        docs: Sequence[Any] = response.unpack_response(
            cursor_id, codec_options, user_fields, legacy_response
        )
        return docs

    # The cursor's own method, with the reauthentication wrapper motor.green.reauth puts
    # on it; it uses only _collection and _unpack_response of its cursor.
    _run_with_conn = _reauth.run_with_conn


def find_one(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
    """PyMongo's ``Collection.find_one(filter, projection)`` on ``self``, a ``Collection``.

    Same parameters, command, result and exceptions as PyMongo's method, which it calls for
    anything but a filter and a projection.  When the method in place is not PyMongo's own
    (an instrumentation's wrapper, such as elastic-apm's or New Relic's, or a test's mock),
    it calls that method, which then sees the call.
    """
    if type(self).find_one is not _pymongo_find_one and not DELEGATING.get():
        token = DELEGATING.set(True)
        try:
            return self.find_one(filter, *args, **kwargs)
        finally:
            DELEGATING.reset(token)
    projection = None
    if args or kwargs:
        if len(args) > 1 or (kwargs and (args or kwargs.keys() != {"projection"})):
            return _pymongo_find_one(self, filter, *args, **kwargs)
        projection = args[0] if args else kwargs["projection"]
    database = self.database
    client = database.client
    if client._encrypter is not None or client.options.load_balanced:
        return _pymongo_find_one(self, filter, *args, **kwargs)

    # Collection.find_one, then Cursor.__init__ and Cursor._query_spec.
    if filter is None:
        spec: Mapping[str, Any] = {}
    elif isinstance(filter, Mapping):
        spec = filter or {}
        if "query" in spec and (len(spec) == 1 or next(iter(spec)) == "query"):
            spec = {"$query": spec}
    else:
        spec = {"_id": filter}
    if projection is not None:
        projection = _fields_list_to_dict(projection, "projection")

    # Cursor._refresh and Cursor._send_message, for a first batch of at most one document.
    session = client._ensure_session()
    try:
        explicit = session if session is not None and not session._implicit else None
        query = _Query(
            0,  # flags
            database.name,
            self.name,
            0,  # skip
            spec,
            projection,
            self.codec_options,
            self._read_preference_for(explicit),
            -1,  # limit: one document, in a single batch
            0,  # batch size
            self.read_concern,
            None,  # collation
            session,
            client,
            None,  # allow_disk_use
            False,  # exhaust
        )
        response = client._run_operation(query, _FindOne(self)._run_with_conn)
    except BaseException as exc:
        client._cleanup_cursor_lock(0, None, None, session)
        if isinstance(exc, StopIteration):
            # PyMongo's find_one iterates its cursor: a StopIteration raised under it
            # (by a document_class or a decoder) ends that loop, and it returns None.
            return None
        raise
    cursor_id = 0
    namespace = self.full_name
    try:
        cursor = response.docs[0]["cursor"]
        cursor_id = cursor["id"]
        documents = cursor["firstBatch"]
        ns = cursor.get("ns")
        if ns:
            db_name, coll_name = ns.split(".", 1)
            namespace = f"{db_name}.{coll_name}"
    except BaseException:
        # A malformed reply: PyMongo's cursor raises the same, and kills the cursor id it
        # has read, if any, when it is collected.
        address = _CursorAddress(response.address, namespace) if cursor_id else None
        client._cleanup_cursor_lock(cursor_id, address, None, session)
        raise
    # The cursor closes itself after its first batch: with limit -1 it is done.
    address = _CursorAddress(response.address, namespace) if cursor_id else None
    client._cleanup_cursor_lock(cursor_id, address, None, session)
    return documents[0] if documents else None


def check_pymongo_internals() -> list[str]:
    """What changed in PyMongo's find path that :func:`find_one` relies on (empty: nothing)."""
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    def names(fn: Any) -> set[str]:
        code = own_code(fn)
        return set(code.co_names) if code is not None else set()

    def params(fn: Any, count: int) -> tuple[str, ...]:
        code = own_code(fn)
        return tuple(code.co_varnames[:count]) if code is not None else ()

    def constants(fn: Any) -> set[str]:
        code = own_code(fn)
        return {c for c in code.co_consts if isinstance(c, str)} if code is not None else set()

    cursor_cls = pymongo.synchronous.cursor.Cursor
    client_cls = pymongo.synchronous.mongo_client.MongoClient
    need(
        {"find", "limit"} <= names(_pymongo_find_one),
        "Collection.find_one no longer iterates find(...).limit(-1)",
    )
    need(
        params(_Query.__init__, 17)
        == (
            "self",
            "flags",
            "db",
            "coll",
            "ntoskip",
            "spec",
            "fields",
            "codec_options",
            "read_preference",
            "limit",
            "batch_size",
            "read_concern",
            "collation",
            "session",
            "client",
            "allow_disk_use",
            "exhaust",
        ),
        "pymongo.message._Query's parameters changed",
    )
    need(
        {"_ensure_session", "_query_class", "_query_spec", "_send_message"}
        <= names(cursor_cls._refresh),
        "Cursor._refresh no longer sends a _query_class made with _ensure_session's session",
    )
    need(
        {"_run_operation", "_run_with_conn", "firstBatch", "ns", "close"}
        <= names(cursor_cls._send_message) | constants(cursor_cls._send_message),
        "Cursor._send_message no longer runs _run_with_conn through _run_operation",
    )
    need(
        params(_CursorBase._run_with_conn, 4) == ("self", "conn", "operation", "read_preference")
        and {"_collection", "_unpack_response"} <= names(_CursorBase._run_with_conn),
        "Cursor._run_with_conn(conn, operation, read_preference) changed",
    )
    need(
        params(client_cls._run_operation, 4) == ("self", "operation", "run_with_conn", "address"),
        "MongoClient._run_operation(operation, run_with_conn, address) changed",
    )
    need(
        params(client_cls._cleanup_cursor_lock, 5)
        == ("self", "cursor_id", "address", "conn_mgr", "session"),
        "MongoClient._cleanup_cursor_lock(cursor_id, address, conn_mgr, session) changed",
    )
    need(
        {"_prepare_to_die", "_cleanup_cursor_lock", "_session"} <= names(_CursorBase._die_lock),
        "Cursor.close no longer cleans up with _cleanup_cursor_lock",
    )
    need(
        {"_limit", "_check_okay_to_chain"} <= names(cursor_cls.limit),
        "Cursor.limit changed",
    )
    return problems
