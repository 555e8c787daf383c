"""``insert_one`` without a ``ClientSession`` or a retry loop for an attempt that succeeds.

PyMongo's ``Collection.insert_one(document)`` lends an implicit ``ClientSession``
(``MongoClient._tmp_session``), makes a ``_ClientConnectionRetryable`` that starts a
retryable write on it, selects a writable server, checks a connection out, and sends the
``insert`` command through ``Connection.command`` and ``run_command``, which apply the
session, ``$clusterTime``, the server API, the socket timeout and the write concern,
encode the message, check its size, and decode and check the reply.  Against a fast server
the session and the retry loop cost about a fifth of the operation's client CPU.

With no command listener, no debug logging of commands or server selection, no timeout
(timeoutMS or ``pymongo.timeout``), no bound session, no automatic encryption, a client
that is not load-balanced, an acknowledged write concern and no argument but the
document, :func:`insert_one` runs the first attempt with PyMongo's own pieces, in PyMongo's
order: server selection (``MongoClient._select_server`` with the writable-server selector,
or the server of an earlier selection while the topology is unchanged, see
:func:`motor.green.find.select_server`), the checkout and its error handling for server
discovery (``MongoClient._checkout``, or the green pool's ``lend`` and ``give_back``), the
server session (taken from the pool when the connection supports sessions, its
transaction number advanced when ``retryWrites`` is on, as ``_start_retryable_write`` and
``_materialize`` advance it), the command (``lsid``, and ``txnNumber`` when the server
supports retryable writes, as ``ClientSession._apply_to`` adds them), and what
``Connection.command``, ``run_command`` and ``_run_command`` do for it unmonitored.  Only
when that attempt raises a PyMongo error does a ``ClientSession`` exist: the error goes to
PyMongo's ``_ClientConnectionRetryable``, which labels it, decides whether to retry and
retries as for its own first attempt, on the same server session and with the same
transaction number.

Anything else, and any PyMongo function it stands in for that is not PyMongo's own (an
instrumentation's wrapper, a test's mock), takes PyMongo's ``Collection.insert_one``.
"""

from __future__ import annotations

import operator
import time
from typing import Any

import pymongo.client_session_shared
import pymongo.message
import pymongo.mongo_client_shared
import pymongo.server_description
import pymongo.synchronous.client_session
import pymongo.synchronous.collection
import pymongo.synchronous.command_runner
import pymongo.synchronous.mongo_client
import pymongo.synchronous.pool
import pymongo.synchronous.topology
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import _csot, common, helpers_shared
from pymongo.errors import ConnectionFailure, NotPrimaryError, OperationFailure, PyMongoError
from pymongo.logger import _COMMAND_LOGGER, _SERVER_SELECTION_LOGGER, _is_debug_enabled
from pymongo.mongo_client_shared import _add_retryable_write_error
from pymongo.read_preferences import ReadPreference
from pymongo.results import InsertOneResult
from pymongo.server_selectors import writable_server_selector
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.mongo_client import MongoClient, _ClientConnectionRetryable

from motor.green import find as _find
from motor.green import reauth as _reauth
from motor.green.internals import DELEGATING, changed_functions, pymongo_own

__all__ = ["check_express_internals", "insert_one"]

# PyMongo's own method, under any wrapper put on it before Motor was imported.
_pymongo_insert_one = pymongo_own(Collection.insert_one)
_PRIMARY = ReadPreference.PRIMARY


def insert_one(self: Any, document: Any, *args: Any, **kwargs: Any) -> InsertOneResult:
    """PyMongo's ``Collection.insert_one(document)`` on ``self``, a ``Collection``.

    Same parameters, command, result and exceptions as PyMongo's method, which it calls for
    anything but the document alone.  When the method in place is not PyMongo's own (an
    instrumentation's wrapper, a test's mock), it calls that method, which then sees the
    call.
    """
    if (
        type(self).insert_one is not _pymongo_insert_one or "insert_one" in self.__dict__
    ) and not DELEGATING.get():
        token = DELEGATING.set(True)
        try:
            return self.insert_one(document, *args, **kwargs)  # type: ignore[no-any-return]
        finally:
            DELEGATING.reset(token)
    client = self.database.client
    listeners = client._event_listeners
    if (
        args
        or kwargs
        or not _EXPRESS
        or client._encrypter is not None
        or client.options.load_balanced
        or client._timeout is not None
        or _csot.get_timeout() is not None
        or (listeners is not None and listeners.enabled_for_commands)
        or _is_debug_enabled(_COMMAND_LOGGER)
        or _is_debug_enabled(_SERVER_SELECTION_LOGGER)
        or not _pymongo_in_place(type(self), type(client))
    ):
        return _pymongo_insert_one(self, document, *args, **kwargs)  # type: ignore[no-any-return]
    # Collection.insert_one, in its order.
    common.validate_is_document_type("document", document)
    if not (isinstance(document, RawBSONDocument) or "_id" in document):
        document["_id"] = ObjectId()
    write_concern = self._write_concern_for(None)
    # (MongoClient._tmp_session, which raises if another client's session is bound.)
    if not write_concern.acknowledged or client._get_bound_session() is not None:
        # An unacknowledged write (no session, no retry) or a bound session: PyMongo's
        # path, which takes the document as it is now (checked, with its _id).
        return _pymongo_insert_one(self, document)  # type: ignore[no-any-return]
    _express(self, client, document, write_concern)
    inserted_id = None if isinstance(document, RawBSONDocument) else document.get("_id")
    return InsertOneResult(inserted_id, True)


def _command(
    conn: Any,
    dbname: str,
    command: dict[str, Any],
    server_session: Any,
    retryable: bool,
    write_concern: Any,
    codec_options: Any,
    client: Any,
    replies: list[Any],
) -> Any:
    """``Connection.command`` and ``run_command`` for an acknowledged write in an implicit
    session, unmonitored and unencrypted: the reply.  Each reply document processed is
    appended to ``replies`` (the implicit session PyMongo would have had processed it)."""
    # (Connection.command works on a copy of a dict: each attempt starts from the command
    # as Collection._insert_one made it.)
    command = dict(command)
    conn.add_server_api(command)
    if server_session is not None:
        # ClientSession._apply_to, for an implicit session with its server session.
        server_session.last_use = time.monotonic()
        command["lsid"] = server_session.session_id
        if retryable:
            command["txnNumber"] = server_session.transaction_id
    # (A resend after ReauthenticationRequired: the session has seen that reply.)
    conn.send_cluster_time(command, _SessionTimes(replies) if replies else None, client)
    try:
        conn.apply_timeout(command)
        _csot.apply_write_concern(command, write_concern)
        request_id, message, size, _ = pymongo.message._op_msg(
            0, command, dbname, _PRIMARY, codec_options, ctx=conn.compression_context
        )
        max_bson_size = conn.max_bson_size
        if max_bson_size is not None and size > max_bson_size + pymongo.message._COMMAND_OVERHEAD:
            pymongo.message._raise_document_too_large(
                "insert", size, max_bson_size + pymongo.message._COMMAND_OVERHEAD
            )
        try:
            # _run_command.  (It leaves the size of the document to the server, which
            # refuses one too large: no maximum document size here.)
            conn.send_message(message, 0)
            reply = conn.receive_message(request_id)
            conn.more_to_come = reply.more_to_come
            response_doc = reply.unpack_response(codec_options=codec_options, user_fields=None)[0]
            _find.process_reply(conn, response_doc, client, replies, None)
        except BaseException as exc:
            _find.describe_failure(exc)
            raise
    except (OperationFailure, NotPrimaryError):
        raise
    except BaseException as error:
        # Connection.command closes the connection on anything else, and raises it as a
        # connection failure if it is a socket error.
        conn._raise_connection_failure(error)
    return response_doc


_command = _reauth.reauthenticating(_command)


class _SessionTimes:
    """The ``$clusterTime`` an implicit session would hold after processing ``replies``
    (``ClientSession._advance_cluster_time``), where ``MongoClient._send_cluster_time``
    reads it."""

    __slots__ = ("_cluster_time",)

    def __init__(self, replies: list[Any]) -> None:
        self._cluster_time = None
        for reply in replies:
            _advance_cluster_time(self, reply.get("$clusterTime"))  # type: ignore[arg-type]

    @property
    def cluster_time(self) -> Any:
        return self._cluster_time


_advance_cluster_time = (
    pymongo.client_session_shared._AgnosticClientSessionBase._advance_cluster_time
)


def _express(collection: Any, client: Any, document: Any, write_concern: Any) -> None:
    """``insert_one``'s first attempt without a ``ClientSession``; on a PyMongo error, the
    rest of the operation in PyMongo's retry loop (:func:`_after_first_attempt`)."""
    command = {"insert": collection.name, "ordered": True, "documents": [document]}
    retry_writes = client.options.retry_writes
    server = None
    server_session = None
    # (None: no connection was checked out; then whether _write's session, server and
    # connection support retryable writes.)
    sessions_supported: bool | None = None
    replies: list[Any] = []
    try:
        server = _find.select_server(client, writable_server_selector, "insert")
        # PyMongo's checkout (_ClientCheckout), or the pool's express one when it has
        # an idle connection and no event to publish.
        pool = server.pool
        lend = getattr(pool, "lend", None)
        conn = lend() if lend is not None else None
        checkout = None
        if conn is None:
            checkout = client._checkout(server, None)
            conn = checkout.__enter__()
        try:
            supports_sessions = conn.supports_sessions
            sessions_supported = bool(
                server.description.retryable_writes_supported and supports_sessions
            )
            if supports_sessions:
                # ClientSession._materialize, after _start_retryable_write.
                server_session = client._topology.get_server_session(
                    conn.logical_session_timeout_minutes
                )
                if retry_writes:
                    server_session.inc_transaction_id()
            result = _command(
                conn,
                collection.database.name,
                command,
                server_session,
                bool(retry_writes and sessions_supported),
                write_concern,
                collection._write_response_codec_options,
                client,
                replies,
            )
            pymongo.synchronous.collection._check_write_command_response(result)  # type: ignore[attr-defined]
        except BaseException as exc:
            _find.give_back(client, server, conn, checkout, exc)
            raise
        _find.give_back(client, server, conn, checkout)
    except PyMongoError as exc:
        # (_ClientCheckout.handle marks the session's server session dirty.)
        if server_session is not None and isinstance(exc, ConnectionFailure):
            server_session.mark_dirty()
        error = exc
    except BaseException:
        if server_session is not None:
            client._return_server_session(server_session)
        raise
    else:
        if server_session is not None:
            client._return_server_session(server_session)
        return
    # Outside the except clause, as PyMongo's retry loop runs its next attempt.
    _after_first_attempt(
        collection,
        client,
        command,
        write_concern,
        server,
        server_session,
        sessions_supported,
        replies,
        error,
    )


class _AfterExpress(_ClientConnectionRetryable):  # type: ignore[type-arg]
    """PyMongo's retry loop, whose first attempt raises what :func:`_express`'s raised,
    as ``_ClientConnectionRetryable._write`` would raise it."""

    __slots__ = ("_first",)
    _first: tuple[BaseException, Any, bool | None] | None

    def _write(self) -> Any:
        first = self._first
        if first is None:
            return super()._write()
        self._first = None
        error, self._server, sessions_supported = first
        del first
        try:
            if sessions_supported is False and not self._always_retryable:
                self._check_last_error()
                self._retryable = False
            raise error
        except PyMongoError as exc:
            del error
            if not self._retryable:
                raise
            _add_retryable_write_error(exc)
            raise


def _after_first_attempt(
    collection: Any,
    client: Any,
    command: dict[str, Any],
    write_concern: Any,
    server: Any,
    server_session: Any,
    sessions_supported: bool | None,
    replies: list[Any],
    error: BaseException,
) -> None:
    """``MongoClient._retryable_write`` after a first attempt that raised ``error``, with
    the implicit session that attempt would have had: holding its server session, having
    processed its replies (their ``$clusterTime`` goes with a retry)."""
    try:
        session = _find._implicit_session(client, server_session)
    except BaseException:
        if server_session is not None:
            client._return_server_session(server_session)
        raise
    try:
        for reply in replies:
            session._process_response(reply)
        retryable_option = bool(client.options.retry_writes and not session.in_transaction)
        if server_session is not None and retryable_option:
            # The retry loop starts the retryable write again when it starts: the attempts
            # share the first attempt's transaction number, as in PyMongo.
            server_session._transaction_id -= 1
        dbname = collection.database.name
        codec_options = collection._write_response_codec_options

        def insert_command(session: Any, conn: Any, retryable_write: bool) -> None:
            # Collection._insert_one's function, on the same command document.
            result = conn.command(
                dbname,
                command,
                write_concern=write_concern,
                codec_options=codec_options,
                session=session,
                client=client,
                retryable_write=retryable_write,
            )
            pymongo.synchronous.collection._check_write_command_response(result)  # type: ignore[attr-defined]

        retryable = _AfterExpress(
            mongo_client=client,
            func=insert_command,
            bulk=None,
            operation="insert",
            is_read=False,
            session=session,
            read_pref=None,
            address=None,
            retryable=retryable_option,
            operation_id=None,
            is_run_command=False,
            is_aggregate_write=False,
            conn_mgr=None,
        )
        retryable._first = (error, server, sessions_supported)
        del error
        retryable.run()
    except Exception as exc:
        # MongoClient._tmp_session.
        if isinstance(exc, ConnectionFailure):
            session._server_session.mark_dirty()
        session.end_session()
        raise
    finally:
        if not session._attached_to_cursor:
            session.end_session()


# What the express path stands in for: (owner, attribute).  When any of them is not
# PyMongo's own function (an instrumentation's wrapper, a test's mock), the express path is
# not taken, and what was put there sees the call.  (What the express path calls, it
# looks up when it calls it, as PyMongo does: a wrapper there sees the call too.)
_STOOD_IN: tuple[tuple[Any, str], ...] = (
    (Collection, "_insert_one"),
    (MongoClient, "_retryable_write"),
    (MongoClient, "_retry_with_session"),
    (MongoClient, "_retry_internal"),
    (MongoClient, "_tmp_session"),
    (MongoClient, "_ensure_session"),
    (MongoClient, "_start_session"),
    (MongoClient, "_checkout"),  # (called when the pool lends no idle connection)
    *_find.SELECTION_AND_CHECKOUT_STOOD_IN,
    (_ClientConnectionRetryable, "__init__"),
    (_ClientConnectionRetryable, "run"),
    (_ClientConnectionRetryable, "_write"),
    (_ClientConnectionRetryable, "_get_server"),
    (pymongo.synchronous.pool.Connection, "command"),
    (pymongo.synchronous.pool.Connection, "validate_session"),
    (pymongo.synchronous.pool, "run_command"),  # where Connection.command finds it
    (pymongo.synchronous.command_runner, "_run_command"),
    (pymongo.synchronous.client_session.ClientSession, "__init__"),
    (pymongo.synchronous.client_session.ClientSession, "_apply_to"),
    (pymongo.synchronous.client_session.ClientSession, "_check_ended"),
    (pymongo.synchronous.client_session.ClientSession, "_materialize"),
    (pymongo.synchronous.client_session.ClientSession, "_start_retryable_write"),
    (pymongo.synchronous.client_session.ClientSession, "_process_response"),
    (pymongo.synchronous.client_session.ClientSession, "end_session"),
    (pymongo.synchronous.client_session.ClientSession, "_end_session"),
    (pymongo.synchronous.pool, "_validate_session_write_concern"),
    (pymongo.mongo_client_shared, "_generate_op_id_or_none"),
)
_STOOD_IN_OWNERS = tuple(owner for owner, _ in _STOOD_IN)
_STOOD_IN_NAMES = tuple(name for _, name in _STOOD_IN)

# The functions expected there: PyMongo's own (under any wrapper in place already when
# Motor is imported), and for Connection.command Motor's reauthenticating one, which
# Motor's patches put in place when the first client is made.
_STOOD_IN_EXPECTED = tuple(
    _reauth.command
    if (owner, name) == (pymongo.synchronous.pool.Connection, "command")
    else _find._as_pymongo_defines_it(getattr(owner, name))
    for owner, name in _STOOD_IN
)


def _pymongo_in_place(collection_class: type, client_class: type) -> bool:
    """Whether what the express path stands in for is PyMongo's own (and
    ``Connection.command`` Motor's reauthenticating one), with no wrapper on it."""
    # (By identity: an instrumentation's wrapper object may compare equal to what it wraps.)
    return (
        collection_class is Collection
        and client_class is MongoClient
        and all(
            map(operator.is_, map(getattr, _STOOD_IN_OWNERS, _STOOD_IN_NAMES), _STOOD_IN_EXPECTED)
        )
    )


def _express_functions() -> dict[str, Any]:
    """The PyMongo functions whose behaviour the express path repeats, calls or relies on
    (its conditions included)."""
    from pymongo import client_session_shared, pool_shared
    from pymongo.synchronous import topology

    session_base = client_session_shared._AgnosticClientSessionBase
    connection = pool_shared._AgnosticBaseConnection
    retryable_base = pymongo.mongo_client_shared._AgnosticClientConnectionRetryableBase
    checkout = pymongo.synchronous.mongo_client._ClientCheckout
    functions: dict[str, Any] = {
        f"{getattr(owner, '__name__', owner)}.{name}": function
        for (owner, name), function in zip(_STOOD_IN, _STOOD_IN_EXPECTED)
    }
    functions.update(
        {
            "Collection.insert_one": _pymongo_insert_one,
            "Collection._write_concern_for": Collection._write_concern_for,
            "Connection.command (PyMongo's)": _reauth._pymongo_command,
            "Connection.send_message": pymongo.synchronous.pool.Connection.send_message,
            "Connection._raise_connection_failure": (
                pymongo.synchronous.pool.Connection._raise_connection_failure
            ),
            "Connection.apply_timeout": connection.apply_timeout,
            "Connection.add_server_api": connection.add_server_api,
            "Connection.send_cluster_time": connection.send_cluster_time,
            "MongoClient._send_cluster_time": MongoClient._send_cluster_time,
            "_ClientCheckout.__init__": checkout.__init__,
            "ClientSession._advance_cluster_time (shared)": session_base._advance_cluster_time,
            "MongoClient._process_response": MongoClient._process_response,
            "MongoClient._return_server_session": MongoClient._return_server_session,
            "MongoClient._get_bound_session": MongoClient._get_bound_session,
            "_ClientCheckout.handle": checkout.handle,
            "_ClientConnectionRetryable base __init__": retryable_base.__init__,
            "_ClientConnectionRetryable._check_last_error": retryable_base._check_last_error,
            "_ClientConnectionRetryable._is_session_state_retryable": (
                retryable_base._is_session_state_retryable
            ),
            "_add_retryable_write_error": _add_retryable_write_error,
            "_check_write_command_response": helpers_shared._check_write_command_response,
            "_op_msg": pymongo.message._op_msg,
            "_raise_document_too_large": pymongo.message._raise_document_too_large,
            "_convert_exception": pymongo.message._convert_exception,
            "_csot.apply_write_concern": _csot.apply_write_concern,
            "ClientSession._apply_to (shared)": session_base._apply_to,
            "ClientSession._materialize (shared)": session_base._materialize,
            "ClientSession._start_retryable_write (shared)": session_base._start_retryable_write,
            "ClientSession._process_response (shared)": session_base._process_response,
            "ClientSession._end_implicit_session (shared)": session_base._end_implicit_session,
            "_ServerSession": client_session_shared._ServerSession,
            "_EmptyServerSession": client_session_shared._EmptyServerSession,
            "Topology.get_server_session": topology.Topology.get_server_session,
            "_ServerSessionPool.get_server_session": (
                client_session_shared._ServerSessionPool.get_server_session
            ),
            "_ServerSessionPool.return_server_session": (
                client_session_shared._ServerSessionPool.return_server_session
            ),
            "ServerDescription.retryable_writes_supported": (
                pymongo.server_description.ServerDescription.retryable_writes_supported.fget  # type: ignore[attr-defined]
            ),
        }
    )
    return functions


#: The fingerprints of PyMongo 4.20's functions the express path relies on.
_EXPRESS_FINGERPRINTS: dict[str, str] = {
    "Topology.select_server": "8749cbd68be1dffe",
    "Pool.checkout": "63cbc0f31fd364bb",
    "_PoolCheckout.__enter__": "0b9d22742cbf6bfc",
    "_PoolCheckout.__exit__": "c55e571ff3e0b6e5",
    "Collection._insert_one": "1265dfbdd75f4242",
    "MongoClient._retryable_write": "45195f385e893603",
    "MongoClient._retry_with_session": "d556be8ca6d07e8e",
    "MongoClient._retry_internal": "beb0c8279db4bd87",
    "MongoClient._tmp_session": "f09f7ea988afd488",
    "MongoClient._ensure_session": "b47fac6de02c4772",
    "MongoClient._start_session": "b540a752f5866376",
    "_ClientConnectionRetryable.__init__": "d56c9cd9383e1024",
    "_ClientConnectionRetryable.run": "01e1a02bccfc60bc",
    "_ClientConnectionRetryable._write": "6c76ad339ac5ebc9",
    "_ClientConnectionRetryable._get_server": "36d51bd13372e679",
    "Connection.command": "8eda40bbd2470c95",
    "Connection.validate_session": "cc582745b23b86fe",
    "pymongo.synchronous.pool.run_command": "553bbf2d12ff3926",
    "pymongo.synchronous.command_runner._run_command": "5a71cf0a935ab7df",
    "ClientSession.__init__": "61717be123249888",
    "ClientSession._apply_to": "ff3d2e0b47b2e08f",
    "ClientSession._check_ended": "03c33c7de72e9556",
    "ClientSession._materialize": "e6e33639212fd0d6",
    "ClientSession._start_retryable_write": "2c0159f7e8561839",
    "ClientSession._process_response": "1091bc13eef9ee8b",
    "ClientSession.end_session": "c2b5bd7dd1b52078",
    "ClientSession._end_session": "dd2824f1fb33cba6",
    "pymongo.synchronous.pool._validate_session_write_concern": "1234636a02961bae",
    "pymongo.mongo_client_shared._generate_op_id_or_none": "11dbae377f50b6c5",
    "Collection.insert_one": "caac21e7930be9c7",
    "Collection._write_concern_for": "2df29d239f92c1fe",
    "Connection.command (PyMongo's)": "8eda40bbd2470c95",
    "Connection.send_message": "f9c3f2dd12dc2793",
    "Connection._raise_connection_failure": "485333cd4722cd6f",
    "Connection.apply_timeout": "24dcab71af3b36f8",
    "Connection.add_server_api": "3a0c335b2a37fbb4",
    "Connection.send_cluster_time": "5cf40e036fb69110",
    "MongoClient._select_server": "4ca12f8e3ce7e127",
    "MongoClient._checkout": "a597542e4544d543",
    "MongoClient._send_cluster_time": "b4aa74ab35f394d7",
    "_ClientCheckout.__init__": "6a06f82993ddf34b",
    "ClientSession._advance_cluster_time (shared)": "96ffd23c15140a3b",
    "MongoClient._process_response": "163cec3e124a6626",
    "MongoClient._return_server_session": "8e150314e6bb76e5",
    "MongoClient._get_bound_session": "c5d7bf8607d0a97e",
    "_ClientCheckout.handle": "29a8ad8f8d7e2798",
    "_ClientCheckout.__enter__": "2feacfba013e0570",
    "_ClientCheckout.__exit__": "f1c9768c987127ac",
    "_ClientConnectionRetryable base __init__": "d56c9cd9383e1024",
    "_ClientConnectionRetryable._check_last_error": "65bf087a1eb91622",
    "_ClientConnectionRetryable._is_session_state_retryable": "32d7cfc110ab514a",
    "_add_retryable_write_error": "8bc146fa4f43ca83",
    "_check_write_command_response": "f4a5a0fa5e845e28",
    "_op_msg": "d08fc7efc710bce2",
    "_raise_document_too_large": "e93be6a087b8962f",
    "_convert_exception": "d1d0a49946f17b0a",
    "_csot.apply_write_concern": "ef6ccd00d6391c93",
    "ClientSession._apply_to (shared)": "ff3d2e0b47b2e08f",
    "ClientSession._materialize (shared)": "e6e33639212fd0d6",
    "ClientSession._start_retryable_write (shared)": "2c0159f7e8561839",
    "ClientSession._process_response (shared)": "1091bc13eef9ee8b",
    "ClientSession._end_implicit_session (shared)": "22c7a8e0fffe4bfa",
    "_ServerSession": "6d27d3239173e2c3",
    "_EmptyServerSession": "1d764698f42feb6a",
    "Topology.get_server_session": "fe85069409b4fc59",
    "_ServerSessionPool.get_server_session": "11a4f4429cf0cc7a",
    "_ServerSessionPool.return_server_session": "e0280ad2ded42b16",
    "ServerDescription.retryable_writes_supported": "0ab5aa70bde7a7c8",
}


def check_express_internals() -> list[str]:
    """Which PyMongo functions the express path relies on changed (empty: none)."""
    problems = changed_functions(
        _express_functions(), _EXPRESS_FINGERPRINTS, "insert_one's express path"
    )
    # Connection.command copies a plain dict, and run_command compresses an insert.
    if issubclass(dict, tuple(pymongo.synchronous.pool.ORDERED_TYPES)):  # type: ignore[attr-defined]
        problems.append("pymongo's ORDERED_TYPES changed: Connection.command copies no dict")
    if "insert" in pymongo.synchronous.command_runner._NO_COMPRESSION:  # type: ignore[attr-defined]
        problems.append("pymongo's _NO_COMPRESSION changed: an insert is not compressed")
    return problems


#: Whether ``insert_one`` may take the express path: PyMongo's functions it relies on are
#: those of PyMongo 4.20, and ``Connection.command`` has Motor's reauthentication wrapper
#: (the tests report a change).
_EXPRESS: bool = bool(
    getattr(_reauth.command, "motor_green", False) and not check_express_internals()
)
