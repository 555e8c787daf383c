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

import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo.message
import pymongo.pool_shared
import pymongo.synchronous.collection
import pymongo.synchronous.command_runner
import pymongo.synchronous.cursor
import pymongo.synchronous.mongo_client
from pymongo import _csot, helpers_shared
from pymongo.cursor_shared import _CURSOR_DOC_FIELDS
from pymongo.errors import ConnectionFailure, PyMongoError
from pymongo.logger import _COMMAND_LOGGER, _SERVER_SELECTION_LOGGER, _is_debug_enabled
from pymongo.message import _CursorAddress, _gen_find_command, _Query
from pymongo.synchronous.cursor_base import _CursorBase
from pymongo.synchronous.mongo_client import (
    MongoClient,
    _ClientConnectionRetryable,
    _ClientReadCheckout,
)

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
    if "$explain" in spec:
        # A legacy $explain modifier: PyMongo's cursor sends an explain command and returns
        # its reply (an explain document, not a batch).
        return _pymongo_find_one(self, filter, *args, **kwargs)
    if projection is not None:
        projection = _fields_list_to_dict(projection, "projection")

    listeners = client._event_listeners
    if (
        _EXPRESS
        and client._timeout is None
        and _csot.get_timeout() is None
        and (listeners is None or not listeners.enabled_for_commands)
        and not _is_debug_enabled(_COMMAND_LOGGER)
        and not _is_debug_enabled(_SERVER_SELECTION_LOGGER)
        and _pymongo_in_place(type(client))
        and client._get_bound_session() is None
    ):
        return _express(self, client, database.name, spec, projection)

    # Cursor._refresh and Cursor._send_message, for a first batch of at most one document.
    session = client._ensure_session()
    try:
        explicit = session if session is not None and not session._implicit else None
        query = _query(self, client, spec, projection, self._read_preference_for(explicit), session)
        response = client._run_operation(query, _FindOne(self)._run_with_conn)
    except BaseException as exc:
        client._cleanup_cursor_lock(0, None, None, session)
        if isinstance(exc, StopIteration):
            # PyMongo's find_one iterates its cursor: a StopIteration raised under it
            # (by a document_class or a decoder) ends that loop, and it returns None.
            return None
        raise
    return _first_document(self, client, response.docs, response.address, session, None)


def _query(
    collection: Any, client: Any, spec: Any, projection: Any, read_preference: Any, session: Any
) -> _Query:
    """The cursor's ``_Query`` for ``find_one``."""
    return _Query(
        0,  # flags
        collection.database.name,
        collection.name,
        0,  # skip
        spec,
        projection,
        collection.codec_options,
        read_preference,
        -1,  # limit: one document, in a single batch
        0,  # batch size
        collection.read_concern,
        None,  # collation
        session,
        client,
        None,  # allow_disk_use
        False,  # exhaust
    )


def _first_document(
    collection: Any,
    client: Any,
    docs: Sequence[Any],
    address: Any,
    session: Any,
    server_session: Any,
) -> Any:
    """The document of a ``find`` reply's first batch, if any; closes what the cursor would
    close: a cursor the server left open, and the implicit session (``session``, or, when
    it is None, the server session ``server_session``, if any, that the command used)."""
    cursor_id = 0
    namespace = collection.full_name
    try:
        cursor = docs[0]["cursor"]
        cursor_id = cursor["id"]
        documents = cursor["firstBatch"]
        ns = cursor.get("ns")
        if ns:
            db_name, coll_name = ns.split(".", 1)
            namespace = f"{db_name}.{coll_name}"
    except BaseException:
        # A malformed reply: PyMongo's cursor raises the same, and kills the cursor id it
        # has read, if any, when it is collected.
        _close(client, cursor_id, address, namespace, session, server_session)
        raise
    # The cursor closes itself after its first batch: with limit -1 it is done.
    _close(client, cursor_id, address, namespace, session, server_session)
    return documents[0] if documents else None


def _close(
    client: Any, cursor_id: int, address: Any, namespace: str, session: Any, server_session: Any
) -> None:
    if session is None:
        if not cursor_id:
            # ClientSession._end_implicit_session, for a session never made.
            if server_session is not None:
                client._return_server_session(server_session)
            return
        session = _implicit_session(client, server_session)
    cursor_address = _CursorAddress(address, namespace) if cursor_id else None
    client._cleanup_cursor_lock(cursor_id, cursor_address, None, session)


def _implicit_session(client: Any, server_session: Any) -> Any:
    """The implicit ``ClientSession`` PyMongo would have lent the operation
    (``MongoClient._ensure_session``), holding ``server_session`` if one was taken."""
    session = client._start_session(True, causal_consistency=False)
    if server_session is not None:
        session._server_session = server_session
    return session


# ------------------------------------------------------------------ the express path
#
# With no command listener, no debug logging of commands or server selection, no timeout
# (timeoutMS or pymongo.timeout) and no bound session, a find_one's first attempt needs
# none of the machinery around PyMongo's wire exchange: no ClientSession object (an
# implicit session only lends its server session's id), no retry loop (nothing to retry
# yet), no command monitoring.  _express runs that attempt with PyMongo's own pieces, in
# PyMongo's order: server selection (MongoClient._select_server), the checkout and its
# error handling for server discovery (_ClientReadCheckout, which also decides the
# $readPreference sent), the find command (_gen_find_command, the server API fields, the
# session id as ClientSession._apply_to adds it for an implicit session, $clusterTime, the
# socket timeout as Connection.apply_timeout sets it with no deadline), the
# message (_op_msg), the reply's decoding, $clusterTime gossip and error check
# (_run_command's steps), and the retry after ReauthenticationRequired.  Only when it
# fails does a ClientSession exist: the attempt's error goes to PyMongo's
# _ClientConnectionRetryable, which decides, as for its own first attempt, whether to
# retry (on the same server session) and how.


def _exchange(
    conn: Any, command: Any, dbname: str, read_preference: Any, codec_options: Any, client: Any
) -> list[Any]:
    """``Cursor._run_with_conn`` and ``run_cursor_command`` for a find with no monitoring,
    logging or encryption: the reply's documents."""
    request_id, message, max_doc_size, _ = pymongo.message._op_msg(
        0, command, dbname, read_preference, codec_options, ctx=conn.compression_context
    )
    conn.send_message(message, max_doc_size)
    reply = conn.receive_message(request_id)
    docs: list[Any] = reply.unpack_response(None, codec_options, _CURSOR_DOC_FIELDS, False)
    response_doc = docs[0]
    if not conn.ready:
        cluster_time = response_doc.get("$clusterTime")
        if cluster_time:
            conn._cluster_time = cluster_time
    client._process_response(response_doc, None)
    _check_command_response(
        response_doc,
        conn.max_wire_version,
        None,
        parse_write_concern_error=False,
        pool_opts=conn.opts,
    )
    return docs


_exchange = _reauth.reauthenticating(_exchange)


def _express(collection: Any, client: Any, dbname: str, spec: Any, projection: Any) -> Any:
    """``find_one``'s first attempt without a ``ClientSession``; on a PyMongo error, the
    rest of the operation in PyMongo's retry loop (:func:`_after_first_attempt`)."""
    read_preference = collection._read_preference
    server = None
    server_session = None
    try:
        server = client._select_server(read_preference, None, "find")
        with _ClientReadCheckout(client, server, None, read_preference) as (conn, conn_pref):
            command = _gen_find_command(
                collection.name, spec, projection, 0, -1, 0, 0, collection.read_concern
            )
            conn.add_server_api(command)
            if conn.supports_sessions:
                server_session = client._topology.get_server_session(
                    conn.logical_session_timeout_minutes
                )
                server_session.last_use = time.monotonic()
                command["lsid"] = server_session.session_id
            client._send_cluster_time(command, None)
            # (No timeout applies: this sets the connection's socketTimeoutMS again, which
            # an earlier operation under pymongo.timeout() may have changed.)
            conn.apply_timeout(command)
            docs = _exchange(conn, command, dbname, conn_pref, collection.codec_options, client)
            address = conn.address
    except PyMongoError as exc:
        # (_ClientCheckout.handle marks the session's server session dirty.)
        if server_session is not None and isinstance(exc, ConnectionFailure):
            server_session.mark_dirty()
        error = exc
    except BaseException as exc:
        if server_session is not None:
            client._return_server_session(server_session)
        if isinstance(exc, StopIteration):
            return None
        raise
    else:
        return _first_document(collection, client, docs, address, None, server_session)
    # Outside the except clause, as PyMongo's retry loop runs its next attempt.
    return _after_first_attempt(
        collection, client, spec, projection, read_preference, server, server_session, error
    )


class _AfterExpress(_ClientConnectionRetryable):  # type: ignore[type-arg]
    """PyMongo's retry loop, whose first attempt raises what :func:`_express`'s raised."""

    __slots__ = ("_first",)
    _first: tuple[BaseException, Any] | None

    def _read(self) -> Any:
        first = self._first
        if first is None:
            return super()._read()
        self._first = None
        error, self._server = first
        raise error


def _after_first_attempt(
    collection: Any,
    client: Any,
    spec: Any,
    projection: Any,
    read_preference: Any,
    server: Any,
    server_session: Any,
    error: BaseException,
) -> Any:
    """``MongoClient._retryable_read`` after a first attempt that raised ``error``, with
    the implicit session that attempt would have had."""
    session = _implicit_session(client, server_session)
    try:
        query = _query(collection, client, spec, projection, read_preference, session)
        run_with_conn = _FindOne(collection)._run_with_conn

        def attempt(_session: Any, _server: Any, conn: Any, read_pref: Any) -> Any:
            # MongoClient._run_operation's function.
            query.reset()
            return run_with_conn(conn, query, read_pref)

        retryable = _AfterExpress(
            mongo_client=client,
            func=attempt,
            bulk=None,
            operation=query.name,
            is_read=True,
            session=session,
            read_pref=read_preference,
            address=None,
            retryable=bool(client.options.retry_reads and not session.in_transaction),
            operation_id=None,
            is_run_command=False,
            is_aggregate_write=False,
            conn_mgr=None,
        )
        retryable._first = (error, server)
        del error
        response = retryable.run()
    except BaseException as exc:
        client._cleanup_cursor_lock(0, None, None, session)
        if isinstance(exc, StopIteration):
            return None
        raise
    return _first_document(collection, client, response.docs, response.address, session, None)


_check_command_response = helpers_shared._check_command_response
_run_operation = pymongo_own(MongoClient._run_operation)
_retryable_read = pymongo_own(MongoClient._retryable_read)
_run_cursor_command = pymongo.synchronous.command_runner.run_cursor_command


def _pymongo_in_place(client_class: type) -> bool:
    """Whether the functions the express path stands in for are PyMongo's (or Motor's
    reauthenticating ``_run_with_conn``), not an instrumentation's wrappers."""
    return (
        client_class._run_operation is _run_operation  # type: ignore[attr-defined]
        and client_class._retryable_read is _retryable_read  # type: ignore[attr-defined]
        and _CursorBase._run_with_conn is _reauth.run_with_conn
        and pymongo.synchronous.command_runner.run_cursor_command is _run_cursor_command
    )


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


def _fingerprint(function: Any) -> str:
    """A digest of what ``function``'s code refers to: its parameters, and the names and
    constants (strings and numbers, docstrings left out) used by it and the functions and
    comprehensions defined in it, as sets: the same on every Python version this package
    supports."""
    import hashlib

    code = own_code(function)
    if code is None:
        return ""
    names: set[str] = set()
    constants: set[str] = set()
    pending = [code]
    while pending:
        c = pending.pop()
        names.update(c.co_names)
        values = list(c.co_consts)
        while values:
            const = values.pop()
            if isinstance(const, types.CodeType):
                pending.append(const)
            elif isinstance(const, tuple):
                # (Annotations of nested functions are a tuple on some versions.)
                values.extend(const)
            elif isinstance(const, str) and "\n" in const:
                pass  # a docstring: each version dedents them its own way
            elif isinstance(const, (str, int, float)) and not isinstance(const, bool):
                constants.add(repr(const))
    params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    text = "\n".join([" ".join(params), " ".join(sorted(names)), " ".join(sorted(constants))])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _express_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour the express path repeats or relies on."""
    from pymongo import client_session_shared
    from pymongo.synchronous import command_runner, topology

    return {
        "MongoClient._run_operation": MongoClient._run_operation,
        "MongoClient._retryable_read": MongoClient._retryable_read,
        "MongoClient._retry_internal": MongoClient._retry_internal,
        "MongoClient._select_server": MongoClient._select_server,
        "MongoClient._conn_from_server": MongoClient._conn_from_server,
        "MongoClient._ensure_session": MongoClient._ensure_session,
        "MongoClient._start_session": MongoClient._start_session,
        "MongoClient._send_cluster_time": MongoClient._send_cluster_time,
        "MongoClient._process_response": MongoClient._process_response,
        "MongoClient._return_server_session": MongoClient._return_server_session,
        "_ClientCheckout.handle": pymongo.synchronous.mongo_client._ClientCheckout.handle,
        "_ClientReadCheckout.__init__": _ClientReadCheckout.__init__,
        "_ClientReadCheckout.__enter__": _ClientReadCheckout.__enter__,
        "_ClientConnectionRetryable.run": _ClientConnectionRetryable.run,
        "_ClientConnectionRetryable._read": _ClientConnectionRetryable._read,
        "_ClientConnectionRetryable.__init__": _ClientConnectionRetryable.__init__,
        "_Query.as_command": _Query.as_command,
        "_Query.get_message": _Query.get_message,
        "_Query.use_command": _Query.use_command,
        "_gen_find_command": _gen_find_command,
        "_op_msg": pymongo.message._op_msg,
        "_CursorBase._run_with_conn": _reauth.run_with_conn,
        "_operation_to_command": pymongo.synchronous.cursor_base._operation_to_command,
        "run_cursor_command": command_runner.run_cursor_command,
        "_run_command": command_runner._run_command,
        "ClientSession._apply_to": client_session_shared._AgnosticClientSessionBase._apply_to,
        "ClientSession._materialize": (
            client_session_shared._AgnosticClientSessionBase._materialize
        ),
        "ClientSession._end_implicit_session": (
            client_session_shared._AgnosticClientSessionBase._end_implicit_session
        ),
        "Topology.get_server_session": topology.Topology.get_server_session,
        "Connection.apply_timeout": pymongo.pool_shared._AgnosticBaseConnection.apply_timeout,
        "Connection.add_server_api": pymongo.pool_shared._AgnosticBaseConnection.add_server_api,
    }


#: The fingerprints of PyMongo 4.20's functions the express path relies on.
_EXPRESS_FINGERPRINTS: dict[str, str] = {
    "MongoClient._run_operation": "d5c00618f196354e",
    "MongoClient._retryable_read": "82564afbb6bc8afa",
    "MongoClient._retry_internal": "ce781b41b47cb141",
    "MongoClient._select_server": "86ff8ccdf682ef04",
    "MongoClient._conn_from_server": "fdf44b86a1b989fc",
    "MongoClient._ensure_session": "f925c08e8267e186",
    "MongoClient._start_session": "6f08fc2d69e584a1",
    "MongoClient._send_cluster_time": "58624f94a9edd012",
    "MongoClient._process_response": "2567c0f2b8b0dff7",
    "MongoClient._return_server_session": "9d58329e23221e10",
    "_ClientCheckout.handle": "a44ddd378eda6803",
    "_ClientReadCheckout.__init__": "96e30f97722734e1",
    "_ClientReadCheckout.__enter__": "021f354072286edd",
    "_ClientConnectionRetryable.run": "522c153aa2ce2d86",
    "_ClientConnectionRetryable._read": "46ee9c8935a6d53e",
    "_ClientConnectionRetryable.__init__": "52fd18cbfa33a181",
    "_Query.as_command": "7e38c1e9054a8d55",
    "_Query.get_message": "472ae540140905f5",
    "_Query.use_command": "f6589ea591cc6a94",
    "_gen_find_command": "a7e76c1a6a2a705d",
    "_op_msg": "2acc6bbc5da134f5",
    "_CursorBase._run_with_conn": "2a8639ffaad846a6",
    "_operation_to_command": "55b80c77f6867870",
    "run_cursor_command": "d3b07ca944542b0e",
    "_run_command": "e83af37a1892df37",
    "ClientSession._apply_to": "afa7142fc6efb72a",
    "ClientSession._materialize": "42eecd7fa90c5f5a",
    "ClientSession._end_implicit_session": "3783fff69b020705",
    "Topology.get_server_session": "47cceea80b83d99a",
    "Connection.apply_timeout": "7d3b4732533566d9",
    "Connection.add_server_api": "5fa9d85e023aa8e0",
}


def check_express_internals() -> list[str]:
    """Which PyMongo functions the express path relies on changed (empty: none)."""
    return [
        f"pymongo's {name} changed: find_one's express path no longer matches it"
        for name, function in _express_functions().items()
        if _fingerprint(function) != _EXPRESS_FINGERPRINTS.get(name)
    ]


#: Whether ``find_one`` may take the express path: PyMongo's functions it relies on are
#: those of PyMongo 4.20, and the cursor's ``_run_with_conn`` is Motor's reauthenticating
#: one (the tests report a change).
_EXPRESS: bool = bool(
    getattr(_reauth.run_with_conn, "motor_green", False)
    and not check_pymongo_internals()
    and not check_express_internals()
)
