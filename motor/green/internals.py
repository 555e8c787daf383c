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
import inspect
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
    import hashlib

    try:
        source = inspect.getsource(inspect.unwrap(function))
    except Exception:  # no source, unreadable source, a loop of wrappers: not taken
        return ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def changed_functions(functions: dict[str, Any], expected: dict[str, str], path: str) -> list[str]:
    """What changed of ``functions`` (named), against their ``expected`` fingerprints, said
    as a change that ``path`` (an express path) no longer matches (empty: none)."""
    return [
        f"pymongo's {name} changed: {path} no longer matches it"
        for name, function in functions.items()
        if fingerprint(function) != expected.get(name)
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
