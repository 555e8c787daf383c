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
code 391 with no connection among the arguments, is raised unchanged.
:func:`check_pymongo_internals` fails if PyMongo's wrapper changes.
"""

from __future__ import annotations

import functools
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

__all__ = ["check_pymongo_internals", "install", "reauthenticating", "run_with_conn"]

F = TypeVar("F", bound=Callable[..., Any])

_REAUTHENTICATION_REQUIRED = helpers_shared._REAUTHENTICATION_REQUIRED_CODE

#: (class, method name) of every function PyMongo 4.20 wraps in ``_handle_reauth``.
WRAPPED: tuple[tuple[type, str], ...] = (
    (pymongo.synchronous.pool.Connection, "command"),
    (pymongo.synchronous.cursor_base._CursorBase, "_run_with_conn"),
    (pymongo.synchronous.bulk._Bulk, "write_command"),
    (pymongo.synchronous.client_bulk._ClientBulk, "write_command"),
)

#: The names PyMongo 4.20's wrapper uses; another set means the wrapper changed.
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

_pymongo_wrapper_code = pymongo.synchronous.helpers._handle_reauth(lambda: None).__code__


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


def _unwrapped(cls: type, name: str) -> Any:
    """PyMongo's function under its wrapper (ours or PyMongo's), or None."""
    return getattr(vars(cls).get(name), "__wrapped__", None)


#: ``Cursor._run_with_conn`` with :func:`reauthenticating`, for :mod:`motor.green.find`.
run_with_conn: Any = reauthenticating(
    _unwrapped(pymongo.synchronous.cursor_base._CursorBase, "_run_with_conn")
)


def check_pymongo_internals() -> list[str]:
    """What changed in PyMongo's reauthentication wrapper (empty: nothing)."""
    problems = []
    if _REAUTHENTICATION_REQUIRED != 391:
        problems.append("ReauthenticationRequired is no longer error 391")
    if set(_pymongo_wrapper_code.co_names) != _PYMONGO_WRAPPER_NAMES:
        problems.append("pymongo.synchronous.helpers._handle_reauth changed")
    for cls, name in WRAPPED:
        method = vars(cls).get(name)
        if getattr(method, "motor_green", False):
            continue
        if getattr(method, "__code__", None) is not _pymongo_wrapper_code or not callable(
            getattr(method, "__wrapped__", None)
        ):
            problems.append(f"{cls.__name__}.{name} is no longer wrapped in _handle_reauth")
    return problems


def install() -> None:
    """Replace PyMongo's wrapper on :data:`WRAPPED` with :func:`reauthenticating`
    (idempotent; :func:`check_pymongo_internals` must be empty)."""
    for cls, name in WRAPPED:
        method = vars(cls)[name]
        if getattr(method, "motor_green", False):
            continue
        if cls is pymongo.synchronous.cursor_base._CursorBase:
            setattr(cls, name, run_with_conn)
        else:
            setattr(cls, name, reauthenticating(method.__wrapped__))
