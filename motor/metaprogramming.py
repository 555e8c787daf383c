"""How a line of the API manifest in :mod:`motor.core` becomes a method.

A Motor class lists the PyMongo attributes it mirrors, one line each::

    class AgnosticCollection(AgnosticBase):
        __pymongo_class__ = Collection

        find_one = Async()                      # runs in a child greenlet -> future
        find = Delegate(wrap="Cursor")          # no I/O: called at once, result wrapped
        name = ReadOnly()                       # a property of the delegate
        sort = Chain()                          # cursor chaining: returns the Motor cursor

When the class is created, :meth:`AgnosticBase.__init_subclass__` replaces each entry
with a plain function (or property) built once.  ``wrap`` names a Motor class by its
framework-neutral name ("Database", "Collection", "Cursor", ...); the framework
subclass of the object doing the call decides which concrete class that is.
Arguments that are Motor objects (a session, say) are unwrapped to their PyMongo
delegates before PyMongo sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Async", "Chain", "Delegate", "ManifestEntry", "ReadOnly", "unwrap_args"]


class ManifestEntry:
    """One line of a class's API manifest."""

    def __init__(self, wrap: str | None = None, doc: str | None = None) -> None:
        self.wrap = wrap
        self.doc = doc
        self.name = ""

    def build(self, owner: type, name: str) -> Any:
        raise NotImplementedError

    def _document(self, fn: Callable[..., Any], owner: type, name: str, what: str) -> None:
        fn.__name__ = name
        fn.__qualname__ = f"{owner.__name__}.{name}"
        pymongo_cls = getattr(owner, "__pymongo_class__", None)
        target = getattr(pymongo_cls, name, None) if pymongo_cls is not None else None
        base_doc = self.doc or (target.__doc__ if target is not None else None) or ""
        fn.__doc__ = f"{what}\n\n{base_doc}" if what else base_doc


def _unwrap(value: Any) -> Any:
    delegate = getattr(value, "_motor_delegate", None)
    return value if delegate is None else delegate


def _plain(values: Iterable[Any]) -> bool:
    """No Motor object among ``values`` (checked by type for the common argument types)."""
    for value in values:
        if type(value) not in _PLAIN_TYPES and getattr(value, "_motor_delegate", None) is not None:
            return False
    return True


# Argument types that are never Motor objects.
_PLAIN_TYPES = frozenset({dict, list, tuple, str, int, float, bool, type(None), bytes})
# Are all these types plain?  (Of ``map(type, values)``: runs in C, no Python frame.)
_all_plain = _PLAIN_TYPES.issuperset


def unwrap_args(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Replace Motor objects among the arguments by their PyMongo delegates.

    Returns the same tuple and dict when there are none (the common case).
    """
    if not _plain(args):
        args = tuple(_unwrap(a) for a in args)
    if kwargs and not _plain(kwargs.values()):
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
    return args, kwargs


class Async(ManifestEntry):
    """A PyMongo method that does network I/O: returns a future of its result."""

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap

        if wrap is None:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if (args and not _all_plain(map(type, args))) or (
                    kwargs and not _all_plain(map(type, kwargs.values()))
                ):
                    args, kwargs = unwrap_args(args, kwargs)
                return self._binding.call(getattr(self.delegate, name), args, kwargs)

        else:

            def call_and_wrap(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                # Runs on a child greenlet.
                return obj._wrap(wrap, getattr(obj.delegate, name)(*args, **kwargs))

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                args, kwargs = unwrap_args(args, kwargs)
                return self._binding.spawn(call_and_wrap, self, args, kwargs)

        self._document(
            method,
            owner,
            name,
            "Asynchronous: returns an awaitable future (yieldable in Tornado coroutines).",
        )
        return method


class Delegate(ManifestEntry):
    """A PyMongo method without I/O: called at once; its result is wrapped if asked."""

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = unwrap_args(args, kwargs)
            result = getattr(self.delegate, name)(*args, **kwargs)
            return result if wrap is None else self._wrap(wrap, result)

        self._document(method, owner, name, "")
        return method


class Chain(ManifestEntry):
    """A cursor method that modifies the cursor and returns it: returns the Motor cursor."""

    def build(self, owner: type, name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = unwrap_args(args, kwargs)
            getattr(self.delegate, name)(*args, **kwargs)
            return self

        self._document(method, owner, name, "Returns this cursor, for chaining.")
        return method


class ReadOnly(ManifestEntry):
    """A property of the delegate, read-only; its value is wrapped if asked."""

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap

        def fget(self: Any) -> Any:
            value = getattr(self.delegate, name)
            return value if wrap is None else self._wrap(wrap, value)

        self._document(fget, owner, name, "")
        return property(fget, doc=fget.__doc__)
