"""PyMongo's own functions, under the wrappers applications put on them.

Instrumentations (elastic-apm, New Relic) and applications' own decorators wrap PyMongo's
methods, with :func:`functools.wraps` or with wrapt's proxies; both lead to what they wrap
through ``__wrapped__``.  PyMongo wraps some of its own functions the same way
(``_csot.apply``, ``_handle_reauth``).  The checks of PyMongo's internals read the code
under every wrapper (:func:`own_code`); the green replacements of PyMongo's methods tell
whether the method in place is still PyMongo's own (:func:`pymongo_own`), and call the
method in place when it is not, so that the wrapper sees the call.
"""

from __future__ import annotations

import contextvars
import hashlib
import inspect
import linecache
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DELEGATING",
    "changed_functions",
    "code_names",
    "fingerprint",
    "layers",
    "own_code",
    "pymongo_own",
    "unchanged",
]

#: True while a green replacement of a PyMongo method calls the method in place (see
#: :func:`pymongo_own`): a wrapper that calls the green replacement in turn then gets
#: its fast path, not the wrapper again, for ever.
DELEGATING: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "motor_green_delegating", default=False
)


def own_code(function: Any) -> types.CodeType | None:
    """The code of the function under every wrapper of ``function`` (None if it has none,
    or for None)."""
    if function is None:
        return None
    code = getattr(inspect.unwrap(function), "__code__", None)
    return code if isinstance(code, types.CodeType) else None


def code_names(function: Any) -> set[str]:
    """The names the code under every wrapper of ``function`` uses (empty: no code)."""
    code = own_code(function)
    return set(code.co_names) if code is not None else set()


def fingerprint(function: Any) -> str:
    """A digest of the source of ``function`` (under its wrappers): any change to its text
    changes it, and it is the same on every Python version.  Empty when the source cannot
    be read (an express path relying on ``function`` is then not taken)."""
    try:
        source = inspect.getsource(inspect.unwrap(function))
    except Exception:  # no source, unreadable source, a loop of wrappers: not taken
        return ""
    return _digest(source)


def _digest(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _spanned_source(function: Any) -> str | None:
    """The lines of source that the code of ``function`` (a plain function) spans: from
    its first line (its first decorator's) to the last line any position of its code, or
    of the code nested in it, reaches.  For most functions that is the text
    :func:`inspect.getsource` returns, found without tokenizing the source; None when
    there is no code or no source to read."""
    code = getattr(function, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    lines = linecache.getlines(code.co_filename, getattr(function, "__globals__", None))
    last = _last_line(code)
    if not lines or last < code.co_firstlineno:
        return None
    return "".join(lines[code.co_firstlineno - 1 : last])


def _spanned_class_source(cls: type) -> str | None:
    """The lines of source from the ``class`` statement of ``cls`` to the last line its
    methods' code spans: for most classes the text :func:`inspect.getsource` returns,
    found without parsing the module; None when there is no such text to read."""
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str):
        return None
    lines = linecache.getlines(filename, vars(module))
    first = getattr(cls, "__firstlineno__", None)  # Python 3.13
    if not isinstance(first, int):
        statement = re.compile(rf"\s*class\s+{re.escape(cls.__name__)}\b")
        starts = [n for n, line in enumerate(lines, 1) if statement.match(line)]
        if len(starts) != 1:
            return None
        first = starts[0]
    prefix = cls.__qualname__ + "."
    last = 0
    for member in vars(cls).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        elif isinstance(member, property):
            member = member.fget
        code = getattr(member, "__code__", None)
        if isinstance(code, types.CodeType) and member.__qualname__.startswith(prefix):
            last = max(last, _last_line(code))
    if last < first:
        return None
    return "".join(lines[first - 1 : last])


def _last_line(code: types.CodeType) -> int:
    last = max((end for _, end, _, _ in code.co_positions() if end is not None), default=0)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            last = max(last, _last_line(const))
    return last


def unchanged(function: Any, expected: str | None) -> bool:
    """Whether the :func:`fingerprint` of ``function`` is ``expected``.

    The check runs as Motor is imported, for every PyMongo function (or class) an
    express path relies on.  The lines the function's code spans are digested first:
    when their digest is the expected one, they are the text :func:`inspect.getsource`
    returns (whose digest ``expected`` is), and the source is not tokenized (or, for a
    class, its module parsed) to find that text.  Otherwise the fingerprint decides.
    """
    if not expected:
        return False
    try:
        own = inspect.unwrap(function)
        if isinstance(own, type):
            spanned = _spanned_class_source(own)
        else:
            spanned = _spanned_source(own)
    except Exception:  # a loop of wrappers: the fingerprint says so
        spanned = None
    if spanned is not None and _digest(spanned) == expected:
        return True
    return fingerprint(function) == expected


def changed_functions(functions: dict[str, Any], expected: dict[str, str], path: str) -> list[str]:
    """What changed of ``functions`` (named), against their ``expected`` fingerprints, said
    as a change that ``path`` (an express path) no longer matches (empty: none)."""
    return [
        f"pymongo's {name} changed: {path} no longer matches it"
        for name, function in functions.items()
        if not unchanged(function, expected.get(name))
    ]


def layers(function: Any) -> Iterator[Any]:
    """``function``, then what it wraps, and so on (``__wrapped__``)."""
    seen: set[int] = set()
    while function is not None and id(function) not in seen:
        seen.add(id(function))
        yield function
        function = getattr(function, "__wrapped__", None)


def pymongo_own(function: Any) -> Any:
    """The outermost layer of ``function`` that PyMongo made: a plain function defined in
    one of PyMongo's modules (``function`` itself if there is none)."""
    for layer in layers(function):
        # The module whose globals the function has: functools.wraps copies __module__.
        if type(layer) is types.FunctionType and _in_pymongo(layer.__globals__.get("__name__")):
            return layer
    return function


def _in_pymongo(module: object) -> bool:
    return isinstance(module, str) and (module == "pymongo" or module.startswith("pymongo."))
