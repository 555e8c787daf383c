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
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo.message
import pymongo.mongo_client_shared
import pymongo.pool_shared
import pymongo.synchronous.client_session
import pymongo.synchronous.collection
import pymongo.synchronous.command_runner
import pymongo.synchronous.cursor
import pymongo.synchronous.mongo_client
import pymongo.synchronous.pool
from pymongo import _csot, helpers_shared
from pymongo.cursor_shared import _CURSOR_DOC_FIELDS
from pymongo.errors import ConnectionFailure, NotPrimaryError, OperationFailure, PyMongoError
from pymongo.logger import _COMMAND_LOGGER, _SERVER_SELECTION_LOGGER, _is_debug_enabled
from pymongo.message import _CursorAddress, _Query
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
    conn: Any,
    command: Any,
    dbname: str,
    read_preference: Any,
    codec_options: Any,
    client: Any,
    replies: list[Any],
) -> list[Any]:
    """``Cursor._run_with_conn`` and ``run_cursor_command`` for a find with no monitoring,
    logging or encryption: the reply's documents.  Each reply document processed is
    appended to ``replies`` (the implicit session PyMongo would have had processed it)."""
    request_id, message, max_doc_size, _ = pymongo.message._op_msg(
        0, command, dbname, read_preference, codec_options, ctx=conn.compression_context
    )
    try:
        conn.send_message(message, max_doc_size)
        reply = conn.receive_message(request_id)
        docs: list[Any] = reply.unpack_response(None, codec_options, _CURSOR_DOC_FIELDS, False)
        response_doc = docs[0]
        if not conn.ready:
            cluster_time = response_doc.get("$clusterTime")
            if cluster_time:
                conn._cluster_time = cluster_time
        client._process_response(response_doc, None)
        replies.append(response_doc)
        helpers_shared._check_command_response(
            response_doc,
            conn.max_wire_version,
            None,
            parse_write_concern_error=False,
            pool_opts=conn.opts,
        )
    except BaseException as exc:
        # _run_command describes every failure for its monitoring, even unmonitored: an
        # exception whose str() raises gives way to that error there.
        if not isinstance(exc, (NotPrimaryError, OperationFailure)):
            # (As _run_command finds it: in its module, which imported it by name.)
            pymongo.synchronous.command_runner._convert_exception(exc)  # type: ignore[attr-defined]
        raise
    return docs


_exchange = _reauth.reauthenticating(_exchange)


def _express(collection: Any, client: Any, dbname: str, spec: Any, projection: Any) -> Any:
    """``find_one``'s first attempt without a ``ClientSession``; on a PyMongo error, the
    rest of the operation in PyMongo's retry loop (:func:`_after_first_attempt`)."""
    read_preference = collection._read_preference
    server = None
    server_session = None
    replies: list[Any] = []
    try:
        server = client._select_server(read_preference, None, "find")
        with client._conn_from_server(read_preference, server, None) as (conn, conn_pref):
            command = pymongo.message._gen_find_command(
                collection.name, spec, projection, 0, -1, 0, 0, collection.read_concern
            )
            conn.add_server_api(command)
            if conn.supports_sessions:
                server_session = client._topology.get_server_session(
                    conn.logical_session_timeout_minutes
                )
                server_session.last_use = time.monotonic()
                command["lsid"] = server_session.session_id
            conn.send_cluster_time(command, None, client)
            # (No timeout applies: this sets the connection's socketTimeoutMS again, which
            # an earlier operation under pymongo.timeout() may have changed.)
            conn.apply_timeout(command)
            docs = _exchange(
                conn, command, dbname, conn_pref, collection.codec_options, client, replies
            )
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
        collection,
        client,
        spec,
        projection,
        read_preference,
        server,
        server_session,
        replies,
        error,
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
    replies: list[Any],
    error: BaseException,
) -> Any:
    """``MongoClient._retryable_read`` after a first attempt that raised ``error``, with
    the implicit session that attempt would have had: holding its server session, having
    processed its replies (their ``$clusterTime`` goes with a retry)."""
    session = _implicit_session(client, server_session)
    try:
        for reply in replies:
            session._process_response(reply)
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


# What the express path stands in for: (owner, attribute).  When any of them is not the
# function it was when Motor was imported (an instrumentation's wrapper, a test's mock), the
# express path is not taken, and what was put there sees the call.  (What the express path
# calls, it looks up when it calls it, as PyMongo does: a wrapper there sees the call too.)
_STOOD_IN: tuple[tuple[Any, str], ...] = (
    (MongoClient, "_run_operation"),
    (MongoClient, "_retryable_read"),
    (MongoClient, "_retry_internal"),
    (MongoClient, "_tmp_session"),
    (MongoClient, "_ensure_session"),
    (MongoClient, "_start_session"),
    (MongoClient, "_should_pin_cursor"),
    (_ClientConnectionRetryable, "__init__"),
    (_ClientConnectionRetryable, "run"),
    (_ClientConnectionRetryable, "_read"),
    (_ClientConnectionRetryable, "_get_server"),
    (_ClientConnectionRetryable, "_run_read_func"),
    (_CursorBase, "_run_with_conn"),
    (pymongo.synchronous.cursor_base, "_operation_to_command"),
    (_Query, "__init__"),
    (_Query, "use_command"),
    (_Query, "as_command"),
    (_Query, "get_message"),
    (pymongo.synchronous.client_session.ClientSession, "__init__"),
    (pymongo.synchronous.client_session.ClientSession, "_apply_to"),
    (pymongo.synchronous.client_session.ClientSession, "_materialize"),
    (pymongo.synchronous.client_session.ClientSession, "_update_read_concern"),
    (pymongo.synchronous.client_session.ClientSession, "_process_response"),
    (pymongo.synchronous.client_session.ClientSession, "_end_implicit_session"),
    (pymongo.synchronous.pool.Connection, "validate_session"),
    (pymongo.synchronous.cursor_base, "run_cursor_command"),  # where the cursor finds it
    (pymongo.synchronous.command_runner, "_run_command"),
)
_STOOD_IN_OWNERS = tuple(owner for owner, _ in _STOOD_IN)
_STOOD_IN_NAMES = tuple(name for _, name in _STOOD_IN)
# (The cursor's _run_with_conn is Motor's reauthenticating one once Motor's patches are in.)
_STOOD_IN_AT_IMPORT = tuple(
    _reauth.run_with_conn if (owner, name) == (_CursorBase, "_run_with_conn") else function
    for (owner, name), function in zip(_STOOD_IN, map(getattr, _STOOD_IN_OWNERS, _STOOD_IN_NAMES))
)


def _pymongo_in_place(client_class: type) -> bool:
    """Whether what the express path stands in for is as it was when Motor was imported
    (PyMongo's functions, and Motor's reauthenticating ``_run_with_conn``)."""
    return (
        client_class is MongoClient
        and tuple(map(getattr, _STOOD_IN_OWNERS, _STOOD_IN_NAMES)) == _STOOD_IN_AT_IMPORT
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
    """A digest of ``function``'s source (under its wrappers), docstrings left out, as
    :func:`ast.unparse` writes it: the same on every Python version this package supports,
    and different when anything in the code changes, its order included.  Empty when the
    source cannot be read (the express path is then not taken)."""
    import ast
    import hashlib
    import inspect
    import textwrap

    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(function)))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.unparse(tree).encode()).hexdigest()[:16]


def _express_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour the express path repeats, calls or relies on
    (its conditions included)."""
    from pymongo import _csot, _telemetry, client_session_shared
    from pymongo.synchronous import command_runner, topology

    session_base = client_session_shared._AgnosticClientSessionBase
    connection = pymongo.pool_shared._AgnosticBaseConnection
    functions: dict[str, Any] = {
        f"{getattr(owner, '__name__', owner)}.{name}": function
        for (owner, name), function in zip(_STOOD_IN, _STOOD_IN_AT_IMPORT)
    }
    functions.update(
        {
            "MongoClient._select_server": MongoClient._select_server,
            "MongoClient._conn_from_server": MongoClient._conn_from_server,
            "MongoClient._send_cluster_time": MongoClient._send_cluster_time,
            "MongoClient._process_response": MongoClient._process_response,
            "MongoClient._return_server_session": MongoClient._return_server_session,
            "MongoClient._get_bound_session": MongoClient._get_bound_session,
            "_ClientCheckout.__init__": pymongo.synchronous.mongo_client._ClientCheckout.__init__,
            "_ClientCheckout.handle": pymongo.synchronous.mongo_client._ClientCheckout.handle,
            "_ClientCheckout.__enter__": (
                pymongo.synchronous.mongo_client._ClientCheckout.__enter__
            ),
            "_ClientCheckout.__exit__": pymongo.synchronous.mongo_client._ClientCheckout.__exit__,
            "_ClientReadCheckout.__init__": _ClientReadCheckout.__init__,
            "_ClientReadCheckout.__enter__": _ClientReadCheckout.__enter__,
            "_ClientConnectionRetryable base __init__": (
                pymongo.mongo_client_shared._AgnosticClientConnectionRetryableBase.__init__
            ),
            "_ClientConnectionRetryable._check_last_error": (
                pymongo.mongo_client_shared._AgnosticClientConnectionRetryableBase._check_last_error
            ),
            "_CursorBase._run_with_conn (PyMongo's)": _reauth.run_with_conn,
            "Cursor._unpack_response": pymongo.synchronous.cursor.Cursor._unpack_response,
            "Cursor._send_message": pymongo.synchronous.cursor.Cursor._send_message,
            "Cursor._refresh": pymongo.synchronous.cursor.Cursor._refresh,
            "_gen_find_command": pymongo.message._gen_find_command,
            "_op_msg": pymongo.message._op_msg,
            "_convert_exception": pymongo.message._convert_exception,
            "ClientSession._apply_to (shared)": session_base._apply_to,
            "ClientSession._materialize (shared)": session_base._materialize,
            "ClientSession._process_response (shared)": session_base._process_response,
            "ClientSession._end_implicit_session (shared)": session_base._end_implicit_session,
            "ClientSession._update_read_concern (shared)": session_base._update_read_concern,
            "Topology.get_server_session": topology.Topology.get_server_session,
            "_ServerSessionPool.get_server_session": (
                client_session_shared._ServerSessionPool.get_server_session
            ),
            "_ServerSessionPool.return_server_session": (
                client_session_shared._ServerSessionPool.return_server_session
            ),
            "Connection.apply_timeout": connection.apply_timeout,
            "Connection.add_server_api": connection.add_server_api,
            "Connection.send_cluster_time": connection.send_cluster_time,
            "run_cursor_command (PyMongo's)": command_runner.run_cursor_command,
            "_generate_op_id_or_none": _telemetry._generate_op_id_or_none,
            "_csot.apply": _csot.apply,
        }
    )
    return functions


#: The fingerprints of PyMongo 4.20's functions the express path relies on.
_EXPRESS_FINGERPRINTS: dict[str, str] = {
    "MongoClient._run_operation": "8420f23e13799be0",
    "MongoClient._retryable_read": "4779bad0a8966269",
    "MongoClient._retry_internal": "07162131c20396f5",
    "MongoClient._tmp_session": "4fc23bf3ab5bdde1",
    "MongoClient._ensure_session": "e57c7228b1711d17",
    "MongoClient._start_session": "0ddf7c986a57eb62",
    "MongoClient._should_pin_cursor": "7c29f28d776bd7a8",
    "_ClientConnectionRetryable.__init__": "d7df61e52552d408",
    "_ClientConnectionRetryable.run": "c373fb3f495f2219",
    "_ClientConnectionRetryable._read": "57239114d57b808c",
    "_ClientConnectionRetryable._get_server": "6fc5482f7e9d769e",
    "_ClientConnectionRetryable._run_read_func": "fc71e7180b8f2e65",
    "_CursorBase._run_with_conn": "a4e7f9fc6217f32a",
    "pymongo.synchronous.cursor_base._operation_to_command": "32266b7f3dfff9bb",
    "_Query.__init__": "9a42170ea2428ede",
    "_Query.use_command": "05c8fdda1622f511",
    "_Query.as_command": "0c5158cb08b1135f",
    "_Query.get_message": "8a10d428c313bbc7",
    "ClientSession.__init__": "c4014cfd726c522d",
    "ClientSession._apply_to": "19f45e3b4679fd43",
    "ClientSession._materialize": "9d1c96c4ae7d6784",
    "ClientSession._update_read_concern": "e17b4a98921049bc",
    "ClientSession._process_response": "3a559a9d95dfe8dd",
    "ClientSession._end_implicit_session": "5546a4608e7fb181",
    "Connection.validate_session": "99e3bcae8a50dc35",
    "pymongo.synchronous.cursor_base.run_cursor_command": "3083504cbd1fc589",
    "pymongo.synchronous.command_runner._run_command": "dac5d10e12b146e1",
    "MongoClient._select_server": "457a09891663e52f",
    "MongoClient._conn_from_server": "22e95f69d6b4f02a",
    "MongoClient._send_cluster_time": "8d8317bd152dbfc6",
    "MongoClient._process_response": "bc7fb99da10b4ba3",
    "MongoClient._return_server_session": "1fdd8f002ae12b94",
    "MongoClient._get_bound_session": "16d54220083fb53b",
    "_ClientCheckout.__init__": "08e313a6c574dc5c",
    "_ClientCheckout.handle": "503f22b3ffc4985b",
    "_ClientCheckout.__enter__": "afd78351588a3450",
    "_ClientCheckout.__exit__": "c07f54abb7f3dab4",
    "_ClientReadCheckout.__init__": "2e34396c712b84e6",
    "_ClientReadCheckout.__enter__": "d9b68a8f57a0c233",
    "_ClientConnectionRetryable base __init__": "d7df61e52552d408",
    "_ClientConnectionRetryable._check_last_error": "a64d2f003de320ca",
    "_CursorBase._run_with_conn (PyMongo's)": "a4e7f9fc6217f32a",
    "Cursor._unpack_response": "bac1586b3c54699c",
    "Cursor._send_message": "3663eb661e26d953",
    "Cursor._refresh": "f7fe8facf3611a33",
    "_gen_find_command": "c80bf2bca1fede6b",
    "_op_msg": "a06c509f797642a3",
    "_convert_exception": "ea6a440e9a9301c2",
    "ClientSession._apply_to (shared)": "19f45e3b4679fd43",
    "ClientSession._materialize (shared)": "9d1c96c4ae7d6784",
    "ClientSession._process_response (shared)": "3a559a9d95dfe8dd",
    "ClientSession._end_implicit_session (shared)": "5546a4608e7fb181",
    "ClientSession._update_read_concern (shared)": "e17b4a98921049bc",
    "Topology.get_server_session": "c78f3b47c2b84d58",
    "_ServerSessionPool.get_server_session": "cc94a46f15f98d88",
    "_ServerSessionPool.return_server_session": "0b80980e6ff48a2c",
    "Connection.apply_timeout": "183892da79292e6e",
    "Connection.add_server_api": "1d3446e3f8c45ad0",
    "Connection.send_cluster_time": "94e48bef3ee60165",
    "run_cursor_command (PyMongo's)": "3083504cbd1fc589",
    "_generate_op_id_or_none": "2382098bfd38aae0",
    "_csot.apply": "e00654fd4b56f6a9",
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
