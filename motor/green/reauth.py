"""PyMongo's retry after ``ReauthenticationRequired``, without its imports per call.

PyMongo wraps the functions that send a command, ``Connection.command``, the cursors'
``_run_with_conn`` and the bulk writers' ``write_command``, in
``pymongo.synchronous.helpers._handle_reauth``: when the server answers error 391
(``ReauthenticationRequired``, sent when an OIDC token has expired), the wrapper
authenticates the connection again and sends the command once more.  The wrapper imports
two names each time it runs.  The modules are loaded by then, but on CPython 3.11 such an
import still costs about 0.6 µs: the import machinery asks the module for ``__path__``, and
a module that lacks an attribute formats an ``AttributeError`` twice before the lookup
gives up.  Every operation runs one wrapped function, so every ``find_one`` and
``insert_one`` paid about 1.2 µs for the two imports, 1.5 % of the client CPU of a small
``find_one`` at 100 concurrent operations.

:func:`install` puts :func:`reauthenticating` in place of PyMongo's wrapper on the same
functions (``__wrapped__``).  It behaves as PyMongo's: a ``no_reauth=True`` keyword
argument is taken out and turns the retry off; on ``OperationFailure`` with code 391 the
first argument that is a ``Connection``, or a ``_BulkWriteContext``'s connection, is
authenticated again (``Connection.authenticate(reauthenticate=True)``, outside the
operation's id, as PyMongo does) and the call is made once more; any other exception, or
code 391 with no connection among the arguments, is raised unchanged.  (The client-level
``bulk_write``'s ``write_command`` gets a context of another class, so neither wrapper
retries it; both only take ``no_reauth`` out.)  The functions are PyMongo's classes', so a
plain ``pymongo.MongoClient`` in the same process uses this wrapper too.

It is only a shortcut: a function that is not PyMongo's wrapper when :func:`install` runs
(wrapped again by an instrumentation library, say) is left as it is, and so is every
function when :func:`check_pymongo_internals` finds that PyMongo's wrapper changed, which
the tests report.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, TypeVar

import pymongo.synchronous.bulk
import pymongo.synchronous.client_bulk
import pymongo.synchronous.cursor_base
import pymongo.synchronous.helpers
import pymongo.synchronous.pool
from pymongo import helpers_shared
from pymongo._op_id import _OpIdContext
from pymongo.errors import OperationFailure
from pymongo.message import _BulkWriteContext
from pymongo.synchronous.pool import Connection

from motor.green.internals import layers

__all__ = ["check_pymongo_internals", "command", "install", "reauthenticating", "run_with_conn"]

F = TypeVar("F", bound=Callable[..., Any])

_REAUTHENTICATION_REQUIRED = helpers_shared._REAUTHENTICATION_REQUIRED_CODE

#: (class, method name) of every function PyMongo 4.20 wraps in ``_handle_reauth``.
WRAPPED: tuple[tuple[type, str], ...] = (
    (pymongo.synchronous.pool.Connection, "command"),
    (pymongo.synchronous.cursor_base._CursorBase, "_run_with_conn"),
    (pymongo.synchronous.bulk._Bulk, "write_command"),
    (pymongo.synchronous.client_bulk._ClientBulk, "write_command"),
)

#: The names and constants PyMongo 4.20's wrapper uses; others mean the wrapper changed.
_PYMONGO_WRAPPER_NAMES = frozenset(
    {
        "pop",
        "pymongo.message",
        "_BulkWriteContext",
        "pymongo.synchronous.pool",
        "Connection",
        "OperationFailure",
        "code",
        "_REAUTHENTICATION_REQUIRED_CODE",
        "isinstance",
        "conn",
        "_op_id",
        "_OpIdContext",
        "authenticate",
    }
)
_PYMONGO_WRAPPER_CONSTANTS = frozenset(
    {
        None,
        "no_reauth",
        False,  # and 0, which equals False
        True,
        ("_BulkWriteContext",),
        ("Connection",),
        ("reauthenticate",),
    }
)

_pymongo_wrapper_code = pymongo.synchronous.helpers._handle_reauth(lambda: None).__code__


def _wrapper_unchanged() -> bool:
    """Whether PyMongo's wrapper is the one of PyMongo 4.20: the same names and constants,
    and error 391."""
    code = _pymongo_wrapper_code
    return (
        set(code.co_names) == _PYMONGO_WRAPPER_NAMES
        and set(code.co_consts) == _PYMONGO_WRAPPER_CONSTANTS
        and _REAUTHENTICATION_REQUIRED == 391
    )


def _is_pymongo_wrapper(method: Any) -> bool:
    """Whether ``method`` is PyMongo's ``_handle_reauth`` wrapper itself."""
    return (
        type(method) is types.FunctionType
        and method.__code__ is _pymongo_wrapper_code
        and callable(getattr(method, "__wrapped__", None))
    )


def _connection_in(args: tuple[Any, ...]) -> Any:
    """The connection to authenticate again: the first ``Connection`` argument or the
    connection of the first ``_BulkWriteContext`` argument, whichever comes first."""
    for arg in args:
        if isinstance(arg, Connection):
            return arg
        if isinstance(arg, _BulkWriteContext):
            return arg.conn
    return None


def reauthenticating(func: F) -> F:
    """``func``, retried once on a connection authenticated again when the server answers
    ``ReauthenticationRequired`` (see the module docstring)."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        no_reauth = kwargs.pop("no_reauth", False)
        try:
            return func(*args, **kwargs)
        except OperationFailure as exc:
            if no_reauth or exc.code != _REAUTHENTICATION_REQUIRED:
                raise
            conn = _connection_in(args)
            if not conn:
                raise
            with _OpIdContext(None):
                conn.authenticate(reauthenticate=True)
            return func(*args, **kwargs)

    call.motor_green = True  # type: ignore[attr-defined]
    return call  # type: ignore[return-value]


_pymongo_run_with_conn = vars(pymongo.synchronous.cursor_base._CursorBase)["_run_with_conn"]

#: ``Cursor._run_with_conn`` with :func:`reauthenticating` (PyMongo's own, if it is not
#: PyMongo's wrapper), for :mod:`motor.green.find`.
run_with_conn: Any = (
    reauthenticating(_pymongo_run_with_conn.__wrapped__)
    if _wrapper_unchanged() and _is_pymongo_wrapper(_pymongo_run_with_conn)
    else _pymongo_run_with_conn
)


_pymongo_command = vars(pymongo.synchronous.pool.Connection)["command"]

#: ``Connection.command`` with :func:`reauthenticating` (PyMongo's own, if it is not
#: PyMongo's wrapper), for :mod:`motor.green.insert`.
command: Any = (
    reauthenticating(_pymongo_command.__wrapped__)
    if _wrapper_unchanged() and _is_pymongo_wrapper(_pymongo_command)
    else _pymongo_command
)


def check_pymongo_internals() -> list[str]:
    """What changed in PyMongo's reauthentication wrapper (empty: nothing)."""
    problems = []
    if _REAUTHENTICATION_REQUIRED != 391:
        problems.append("ReauthenticationRequired is no longer error 391")
    elif not _wrapper_unchanged():
        problems.append("pymongo.synchronous.helpers._handle_reauth changed")
    for cls, name in WRAPPED:
        # Under any wrapper an application or instrumentation put on it (install() then
        # leaves it be).
        if not any(
            getattr(layer, "motor_green", False) or _is_pymongo_wrapper(layer)
            for layer in layers(vars(cls).get(name))
        ):
            problems.append(f"{cls.__name__}.{name} is no longer wrapped in _handle_reauth")
    return problems


def install() -> None:
    """Replace PyMongo's wrapper on :data:`WRAPPED` with :func:`reauthenticating`
    (idempotent); nothing if :func:`check_pymongo_internals` finds a change, and no
    function that is not PyMongo's wrapper."""
    if not _wrapper_unchanged():
        return
    for cls, name in WRAPPED:
        method: Any = vars(cls).get(name)
        if not _is_pymongo_wrapper(method):
            continue
        if method is _pymongo_run_with_conn:
            setattr(cls, name, run_with_conn)
        elif method is _pymongo_command:
            setattr(cls, name, command)
        else:
            setattr(cls, name, reauthenticating(method.__wrapped__))
