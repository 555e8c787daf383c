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

import operator
import time
import types
from collections.abc import Mapping, Sequence
from typing import Any

import pymongo.message
import pymongo.mongo_client_shared
import pymongo.pool_shared
import pymongo.server_selectors
import pymongo.synchronous.client_session
import pymongo.synchronous.collection
import pymongo.synchronous.command_runner
import pymongo.synchronous.cursor
import pymongo.synchronous.mongo_client
import pymongo.synchronous.pool
import pymongo.synchronous.topology
import pymongo.topology_description
from pymongo import _csot, helpers_shared
from pymongo.cursor_shared import _CURSOR_DOC_FIELDS
from pymongo.errors import ConnectionFailure, NotPrimaryError, OperationFailure, PyMongoError
from pymongo.logger import _COMMAND_LOGGER, _SERVER_SELECTION_LOGGER, _is_debug_enabled
from pymongo.message import _CursorAddress, _Query
from pymongo.read_preferences import ReadPreference
from pymongo.synchronous.cursor_base import _CursorBase
from pymongo.synchronous.mongo_client import (
    MongoClient,
    _ClientConnectionRetryable,
    _ClientReadCheckout,
)
from pymongo.topology_description import TOPOLOGY_TYPE

from motor.green import reauth as _reauth
from motor.green.internals import DELEGATING, changed_functions, layers, own_code, pymongo_own

__all__ = ["check_pymongo_internals", "describe_failure", "find_one", "process_reply"]

# PyMongo's own method, under any wrapper put on it before Motor was imported.
_pymongo_find_one = pymongo_own(pymongo.synchronous.collection.Collection.find_one)
_Cursor = pymongo.synchronous.cursor.Cursor
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
        # The cursor's method, as it is when called (it uses nothing of its cursor).
        docs: Sequence[Any] = _Cursor._unpack_response(
            self,  # type: ignore[arg-type]
            response,
            cursor_id,
            codec_options,
            user_fields,
            legacy_response,
        )
        return docs

    def _run_with_conn(self, conn: Any, operation: Any, read_preference: Any) -> Any:
        # The cursor's method, as it is when called: with the reauthentication wrapper
        # motor.green.reauth puts on it, or an instrumentation's.  It uses only
        # _collection and _unpack_response of its cursor.
        return _CursorBase._run_with_conn(self, conn, operation, read_preference)  # type: ignore[arg-type]


def find_one(self: Any, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
    """PyMongo's ``Collection.find_one(filter, projection)`` on ``self``, a ``Collection``.

    Same parameters, command, result and exceptions as PyMongo's method, which it calls for
    anything but a filter and a projection.  When the method in place is not PyMongo's own
    (an instrumentation's wrapper, such as elastic-apm's or New Relic's, or a test's mock),
    it calls that method, which then sees the call.
    """
    if (
        type(self).find_one is not _pymongo_find_one or "find_one" in self.__dict__
    ) and not DELEGATING.get():
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
# PyMongo's order: server selection (MongoClient._select_server, or the server of an
# earlier selection while the topology is unchanged: select_server), the checkout and its
# error handling for server discovery (_ClientReadCheckout, which also decides the
# $readPreference sent, or the green pool's lend and give_back), the find command
# (_gen_find_command, the server API fields, the session id as ClientSession._apply_to
# adds it for an implicit session, $clusterTime, the socket timeout as
# Connection.apply_timeout sets it with no deadline), the message (_op_msg), the reply's
# decoding, $clusterTime gossip and error check (_run_command's steps), and the retry
# after ReauthenticationRequired.  Only when it fails does a ClientSession exist: the
# attempt's error goes to PyMongo's _ClientConnectionRetryable, which decides, as for its
# own first attempt, whether to retry (on the same server session) and how.


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
        process_reply(conn, docs[0], client, replies, conn.opts)
    except BaseException as exc:
        describe_failure(exc)
        raise
    return docs


def process_reply(
    conn: Any, response_doc: Any, client: Any, replies: list[Any], pool_opts: Any
) -> None:
    """What ``_run_command`` does with a reply document, unmonitored, in an implicit
    session that has no ``ClientSession`` yet: ``$clusterTime`` gossip, the reply processed
    by the client (and appended to ``replies``, for the session made if a retry follows),
    and its errors raised."""
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
        pool_opts=pool_opts,
    )


def describe_failure(exc: BaseException) -> None:
    """``_run_command`` describes every failure for its monitoring, even unmonitored: an
    exception whose ``str()`` raises gives way to that error there."""
    if not isinstance(exc, (NotPrimaryError, OperationFailure)):
        # (As _run_command finds it: in its module, which imported it by name.)
        pymongo.synchronous.command_runner._convert_exception(exc)  # type: ignore[attr-defined]


_exchange = _reauth.reauthenticating(_exchange)


def _express(collection: Any, client: Any, dbname: str, spec: Any, projection: Any) -> Any:
    """``find_one``'s first attempt without a ``ClientSession``; on a PyMongo error, the
    rest of the operation in PyMongo's retry loop (:func:`_after_first_attempt`)."""
    read_preference = collection._read_preference
    server = None
    server_session = None
    replies: list[Any] = []
    try:
        server = select_server(client, read_preference, "find")
        # PyMongo's checkout (_ClientReadCheckout), or the pool's express one when it
        # has an idle connection and no event to publish.
        pool = server.pool
        lend = getattr(pool, "lend", None)
        conn = lend() if lend is not None else None
        checkout = None
        if conn is None:
            checkout = client._conn_from_server(read_preference, server, None)
            conn, conn_pref = checkout.__enter__()
        else:
            conn_pref = _read_preference_sent(client, conn, read_preference)
        try:
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
        except BaseException as exc:
            give_back(client, server, conn, checkout, exc)
            raise
        give_back(client, server, conn, checkout)
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


def select_server(client: Any, selector: Any, operation: str) -> Any:
    """``client._select_server(selector, None, operation)`` for an express path's first
    attempt (no session, no address, no timeout, no logging of server selection).

    PyMongo's selection takes the topology's lock and applies ``selector`` to the
    topology's description, an immutable object that every change of the topology
    replaces.  When that selection had a single candidate (and no custom
    ``server_selector`` takes part), its server is kept with the description it came
    from, and given again, without selecting, for as long as the topology's description
    is that same object.
    """
    topology = client._topology
    # (None until the first operation of a client given an SRV URI resolves it.)
    selections: dict[int, Any] | None = (
        topology.__dict__.get(_SELECTIONS) if topology is not None else None
    )
    if selections is not None:
        last = selections.get(id(selector))
        if last is not None and last[1] is topology._description and last[0] is selector:
            return last[2]
    server = client._select_server(selector, None, operation)
    topology = client._topology
    custom = topology._settings.server_selector
    if _REUSE_SELECTIONS and client._opened and (custom is None or custom is _any_server):
        description = topology._description
        try:
            description.check_compatible()
            candidates = description.apply_selector(selector, None, custom_selector=custom)
        except PyMongoError:
            return server
        if len(candidates) == 1 and topology._servers.get(candidates[0].address) is server:
            if selections is None or len(selections) >= 8:
                selections = topology.__dict__[_SELECTIONS] = {}
            selections[id(selector)] = (selector, description, server)
    return server


# PyMongo's default for the server_selector option: all servers, in their order.
_any_server = pymongo.server_selectors.any_server_selector

# The attribute of a Topology holding select_server's selections (a dict: the id of a
# selector -> (selector, description, server)).
_SELECTIONS = "_motor_selections"


def give_back(
    client: Any, server: Any, conn: Any, checkout: Any, exc: BaseException | None = None
) -> None:
    """Give back ``conn``, checked out from ``server`` by an express path through
    PyMongo's ``checkout`` context manager or, when it is None, lent by the pool, after
    the attempt raised ``exc`` (None: it did not), as leaving that context manager would."""
    if checkout is not None:
        checkout.__exit__(type(exc) if exc is not None else None, exc, None)
    else:
        server.pool.give_back(client, server, conn, exc)


def _read_preference_sent(client: Any, conn: Any, read_preference: Any) -> Any:
    """The read preference ``_ClientReadCheckout`` decides for an operation without a
    session: none sent to a standalone server, primaryPreferred always sent to a replica
    set member connected to directly."""
    if client._topology.description.topology_type == TOPOLOGY_TYPE.Single:
        if conn.is_repl:
            return ReadPreference.PRIMARY_PREFERRED
        if conn.is_standalone:
            return ReadPreference.PRIMARY
    return read_preference


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


# What select_server and the pool's lend and give_back stand in for, in the express paths
# of find_one and of insert_one alike: a wrapper on any of them turns both paths off.
SELECTION_AND_CHECKOUT_STOOD_IN: tuple[tuple[Any, str], ...] = (
    (MongoClient, "_select_server"),  # (called when no earlier selection is reused)
    (pymongo.synchronous.topology.Topology, "select_server"),
    (pymongo.synchronous.mongo_client._ClientCheckout, "__enter__"),
    (pymongo.synchronous.mongo_client._ClientCheckout, "__exit__"),
    (pymongo.synchronous.pool.Pool, "checkout"),
    (pymongo.synchronous.pool._PoolCheckout, "__enter__"),
    (pymongo.synchronous.pool._PoolCheckout, "__exit__"),
)

# What the express path stands in for: (owner, attribute).  When any of them is not
# PyMongo's own function (an instrumentation's wrapper, put there before or after Motor was
# imported, a test's mock), the express path is not taken, and what was put there sees the
# call.  (What the express path calls, it looks up when it calls it, as PyMongo does: a
# wrapper there sees the call too.)
_STOOD_IN: tuple[tuple[Any, str], ...] = (
    (MongoClient, "_run_operation"),
    (MongoClient, "_retryable_read"),
    (MongoClient, "_retry_internal"),
    (MongoClient, "_tmp_session"),
    (MongoClient, "_ensure_session"),
    (MongoClient, "_start_session"),
    (MongoClient, "_should_pin_cursor"),
    (MongoClient, "_cleanup_cursor_lock"),
    (MongoClient, "_conn_from_server"),  # (called when the pool lends no idle connection)
    (_ClientReadCheckout, "__enter__"),
    *SELECTION_AND_CHECKOUT_STOOD_IN,
    (_ClientConnectionRetryable, "__init__"),
    (_ClientConnectionRetryable, "run"),
    (_ClientConnectionRetryable, "_read"),
    (_ClientConnectionRetryable, "_get_server"),
    (_ClientConnectionRetryable, "_run_read_func"),
    (_CursorBase, "_run_with_conn"),
    (pymongo.synchronous.cursor.Cursor, "_unpack_response"),
    (pymongo.synchronous.cursor_base, "_operation_to_command"),
    (pymongo.synchronous.cursor_base, "_split_message"),
    (pymongo.mongo_client_shared, "_generate_op_id_or_none"),
    (_Query, "__init__"),
    (_Query, "use_command"),
    (_Query, "as_command"),
    (_Query, "get_message"),
    (_Query, "update_command"),
    (_Query, "reset"),
    (pymongo.synchronous.client_session.ClientSession, "__init__"),
    (pymongo.synchronous.client_session.ClientSession, "_apply_to"),
    (pymongo.synchronous.client_session.ClientSession, "_check_ended"),
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


# The functions expected there: PyMongo's own (under any wrapper in place already when
# Motor is imported), and for the cursor's _run_with_conn Motor's reauthenticating one,
# which Motor's patches put in place when the first client is made.
def _as_pymongo_defines_it(function: Any) -> Any:
    """The outermost layer of ``function`` that PyMongo's source defines: a function of
    PyMongo's modules, or the ``contextlib.contextmanager`` made of one (as
    ``MongoClient._tmp_session`` is), whatever wraps it."""
    for layer in layers(function):
        if type(layer) is types.FunctionType:
            module = layer.__globals__.get("__name__")
            if module == "contextlib":
                inner = getattr(layer, "__wrapped__", None)
                if pymongo_own(inner) is inner and type(inner) is types.FunctionType:
                    return layer
            elif pymongo_own(layer) is layer:
                return layer
    return function


_STOOD_IN_EXPECTED = tuple(
    _reauth.run_with_conn
    if (owner, name) == (_CursorBase, "_run_with_conn")
    else _as_pymongo_defines_it(getattr(owner, name))
    for owner, name in _STOOD_IN
)


def _pymongo_in_place(client_class: type) -> bool:
    """Whether what the express path stands in for is PyMongo's own (and the cursor's
    ``_run_with_conn`` Motor's reauthenticating one), with no wrapper on it."""
    # (By identity: an instrumentation's wrapper object may compare equal to what it wraps.)
    return client_class is MongoClient and all(
        map(operator.is_, map(getattr, _STOOD_IN_OWNERS, _STOOD_IN_NAMES), _STOOD_IN_EXPECTED)
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


def _express_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour the express path repeats, calls or relies on
    (its conditions included)."""
    from pymongo import _csot, _telemetry, client_session_shared
    from pymongo.synchronous import command_runner, topology

    session_base = client_session_shared._AgnosticClientSessionBase
    connection = pymongo.pool_shared._AgnosticBaseConnection
    functions: dict[str, Any] = {
        f"{getattr(owner, '__name__', owner)}.{name}": function
        for (owner, name), function in zip(_STOOD_IN, _STOOD_IN_EXPECTED)
    }
    functions.update(
        {
            "MongoClient._send_cluster_time": MongoClient._send_cluster_time,
            "MongoClient._process_response": MongoClient._process_response,
            "MongoClient._return_server_session": MongoClient._return_server_session,
            "MongoClient._get_bound_session": MongoClient._get_bound_session,
            "_ClientCheckout.__init__": pymongo.synchronous.mongo_client._ClientCheckout.__init__,
            "_ClientCheckout.handle": pymongo.synchronous.mongo_client._ClientCheckout.handle,
            "_ClientReadCheckout.__init__": _ClientReadCheckout.__init__,
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
    "Topology.select_server": "8749cbd68be1dffe",
    "MongoClient._run_operation": "ae9a085a6d54e63e",
    "MongoClient._retryable_read": "d591312de0d02104",
    "MongoClient._retry_internal": "beb0c8279db4bd87",
    "MongoClient._tmp_session": "f09f7ea988afd488",
    "MongoClient._ensure_session": "b47fac6de02c4772",
    "MongoClient._start_session": "b540a752f5866376",
    "MongoClient._should_pin_cursor": "93f71c87dc7c90d5",
    "MongoClient._cleanup_cursor_lock": "a14a4d661c62f2b2",
    "_ClientConnectionRetryable.__init__": "d56c9cd9383e1024",
    "_ClientConnectionRetryable.run": "01e1a02bccfc60bc",
    "_ClientConnectionRetryable._read": "342b6d052ab06c78",
    "_ClientConnectionRetryable._get_server": "36d51bd13372e679",
    "_ClientConnectionRetryable._run_read_func": "ca6d111aac370b2a",
    "_CursorBase._run_with_conn": "d938378d576775c7",
    "Cursor._unpack_response": "fcc0df04bcf99565",
    "pymongo.synchronous.cursor_base._operation_to_command": "2bad1f18436e9c3b",
    "pymongo.synchronous.cursor_base._split_message": "0a640b454d14e59f",
    "pymongo.mongo_client_shared._generate_op_id_or_none": "11dbae377f50b6c5",
    "_Query.__init__": "4a4c06cd3e3b5229",
    "_Query.use_command": "8f89d085ef474a2a",
    "_Query.as_command": "8dc4e6b9cc6506ea",
    "_Query.get_message": "0a98c6a82f053b60",
    "_Query.update_command": "1e8f17c51f9814a8",
    "_Query.reset": "bb8a859f13cd4662",
    "ClientSession.__init__": "61717be123249888",
    "ClientSession._apply_to": "ff3d2e0b47b2e08f",
    "ClientSession._check_ended": "03c33c7de72e9556",
    "ClientSession._materialize": "e6e33639212fd0d6",
    "ClientSession._update_read_concern": "e877c059d578dc68",
    "ClientSession._process_response": "1091bc13eef9ee8b",
    "ClientSession._end_implicit_session": "22c7a8e0fffe4bfa",
    "Connection.validate_session": "cc582745b23b86fe",
    "pymongo.synchronous.cursor_base.run_cursor_command": "ae371c052e35bc61",
    "pymongo.synchronous.command_runner._run_command": "5a71cf0a935ab7df",
    "Pool.checkout": "63cbc0f31fd364bb",
    "_PoolCheckout.__enter__": "0b9d22742cbf6bfc",
    "_PoolCheckout.__exit__": "c55e571ff3e0b6e5",
    "MongoClient._select_server": "4ca12f8e3ce7e127",
    "MongoClient._conn_from_server": "ce5a12fe09d94fcd",
    "MongoClient._send_cluster_time": "b4aa74ab35f394d7",
    "MongoClient._process_response": "163cec3e124a6626",
    "MongoClient._return_server_session": "8e150314e6bb76e5",
    "MongoClient._get_bound_session": "c5d7bf8607d0a97e",
    "_ClientCheckout.__init__": "6a06f82993ddf34b",
    "_ClientCheckout.handle": "29a8ad8f8d7e2798",
    "_ClientCheckout.__enter__": "2feacfba013e0570",
    "_ClientCheckout.__exit__": "f1c9768c987127ac",
    "_ClientReadCheckout.__init__": "71e82054c9a3220c",
    "_ClientReadCheckout.__enter__": "5803b7d913814e80",
    "_ClientConnectionRetryable base __init__": "d56c9cd9383e1024",
    "_ClientConnectionRetryable._check_last_error": "65bf087a1eb91622",
    "_CursorBase._run_with_conn (PyMongo's)": "d938378d576775c7",
    "Cursor._send_message": "715e983fdcc315a8",
    "Cursor._refresh": "1160ccaeac4f96c1",
    "_gen_find_command": "537550974e2c3348",
    "_op_msg": "d08fc7efc710bce2",
    "_convert_exception": "d1d0a49946f17b0a",
    "ClientSession._apply_to (shared)": "ff3d2e0b47b2e08f",
    "ClientSession._materialize (shared)": "e6e33639212fd0d6",
    "ClientSession._process_response (shared)": "1091bc13eef9ee8b",
    "ClientSession._end_implicit_session (shared)": "22c7a8e0fffe4bfa",
    "ClientSession._update_read_concern (shared)": "e877c059d578dc68",
    "Topology.get_server_session": "fe85069409b4fc59",
    "_ServerSessionPool.get_server_session": "11a4f4429cf0cc7a",
    "_ServerSessionPool.return_server_session": "e0280ad2ded42b16",
    "Connection.apply_timeout": "24dcab71af3b36f8",
    "Connection.add_server_api": "3a0c335b2a37fbb4",
    "Connection.send_cluster_time": "5cf40e036fb69110",
    "run_cursor_command (PyMongo's)": "ae371c052e35bc61",
    "_generate_op_id_or_none": "11dbae377f50b6c5",
    "_csot.apply": "2b02a10622f71dd1",
}


def check_express_internals() -> list[str]:
    """Which PyMongo functions the express path relies on changed (empty: none)."""
    return changed_functions(_express_functions(), _EXPRESS_FINGERPRINTS, "find_one's express path")


def _selection_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour :func:`select_server` relies on."""
    topology = pymongo.synchronous.topology.Topology
    description = pymongo.topology_description.TopologyDescription
    return {
        "MongoClient._select_server": MongoClient._select_server,
        "MongoClient._get_topology": MongoClient._get_topology,
        "Topology.select_server": topology.select_server,
        "Topology._select_server": topology._select_server,
        "Topology.select_servers": topology.select_servers,
        "Topology._select_servers_loop": topology._select_servers_loop,
        "Topology.get_server_by_address": topology.get_server_by_address,
        # (Where the topology replaces its description.)
        "Topology._process_change": topology._process_change,
        "Topology._process_srv_update": topology._process_srv_update,
        "Topology.close": topology.close,
        "TopologyDescription.apply_selector": description.apply_selector,
        "TopologyDescription.check_compatible": description.check_compatible,
        "any_server_selector": pymongo.server_selectors.any_server_selector,
        "TopologyDescription.known_servers": description.known_servers.fget,  # type: ignore[attr-defined]
    }


#: The fingerprints of PyMongo 4.20's functions :func:`select_server` relies on.
_SELECTION_FINGERPRINTS: dict[str, str] = {
    "MongoClient._select_server": "4ca12f8e3ce7e127",
    "MongoClient._get_topology": "6cd15c597d26b5c9",
    "Topology.select_server": "8749cbd68be1dffe",
    "Topology._select_server": "c0e2a91197cadc8c",
    "Topology.select_servers": "c127fb2f85b08969",
    "Topology._select_servers_loop": "a7a963bb82231b5d",
    "Topology.get_server_by_address": "0da2b9c465800ec0",
    "Topology._process_change": "ddd316e42eafe688",
    "Topology._process_srv_update": "59f02960c8418709",
    "Topology.close": "285adf830cc42a59",
    "TopologyDescription.apply_selector": "efcc85a253101351",
    "TopologyDescription.check_compatible": "b6f66b35b4d92cc0",
    "TopologyDescription.known_servers": "88f9f07f842255cd",
    "any_server_selector": "0f004ba1684af1a9",
}


def check_selection_internals() -> list[str]:
    """Which PyMongo functions :func:`select_server` relies on changed (empty: none)."""
    return changed_functions(
        _selection_functions(), _SELECTION_FINGERPRINTS, "the reuse of server selections"
    )


#: Whether :func:`select_server` may keep selections.
_REUSE_SELECTIONS: bool = not check_selection_internals()


#: Whether ``find_one`` may take the express path: PyMongo's functions it relies on are
#: those of PyMongo 4.20, and the cursor's ``_run_with_conn`` is Motor's reauthenticating
#: one (the tests report a change).
_EXPRESS: bool = bool(
    getattr(_reauth.run_with_conn, "motor_green", False)
    and not check_pymongo_internals()
    and not check_express_internals()
)
