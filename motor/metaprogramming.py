"""How a line of the API manifest becomes a method.

A Motor class lists the PyMongo attributes it mirrors, one line each::

    class AgnosticCollection(AgnosticBase):
        __pymongo_class__ = Collection

        find_one = Async()                      # runs in a child greenlet -> future
        find = Delegate(wrap="Cursor")          # no I/O: called at once, result wrapped
        name = ReadOnly()                       # a property of the delegate
        sort = Chain()                          # cursor chaining: returns the Motor cursor

When the class is created, :meth:`AgnosticBase.__init_subclass__
<motor.core.AgnosticBase.__init_subclass__>` replaces each entry with a plain function
(or property) built once.  Building checks that PyMongo's class has the attribute (a
typo or an attribute a new PyMongo release dropped fails at import, not at call time),
and gives the method PyMongo's signature (:func:`inspect.signature`, ``help()``) and
docstring.

``wrap`` names a Motor class by its framework-neutral name ("Database", "Collection",
"Cursor", ...); the framework subclass of the object doing the call decides which
concrete class that is.  Arguments that are Motor objects (a session, a database, a
collection) are replaced by their PyMongo delegates before PyMongo sees them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable, Sized
from typing import TYPE_CHECKING, Any, TypeVar, cast

__all__ = [
    "Async",
    "Chain",
    "Delegate",
    "GenericDocuments",
    "ManifestEntry",
    "ReadOnly",
    "coroutine_like",
    "mirror",
    "motor_signature",
    "unwrap_args",
]

_F = TypeVar("_F", bound=Callable[..., Any])

if TYPE_CHECKING:
    from typing import Generic as GenericDocuments
else:

    class GenericDocuments:
        """``typing.Generic`` to type checkers; nothing at run time.

        The Motor classes generic in their document type (``AgnosticCollection[dict]``)
        subclass ``GenericDocuments[_DocumentType]``, which is ``object`` when the program
        runs: ``typing.Generic`` in their bases would refuse an application's
        ``class Repo(Generic[T], AsyncIOMotorCollection)`` (no consistent method
        resolution order), which Motor 3.7.1's classes, without it, accepted.
        Subscripting a Motor class returns the class (``AgnosticBase.__class_getitem__``).
        """

        def __class_getitem__(cls, item: Any) -> type:
            return object


class ManifestEntry:
    """One line of a class's API manifest.

    ``attr`` is the PyMongo attribute's name when it differs from the Motor name;
    ``doc`` replaces PyMongo's docstring.
    """

    #: What the built method returns, for the generated type stubs: "future" (an
    #: awaitable of PyMongo's result), "coroutine" (the method is a coroutine function
    #: of PyMongo's result), "same" (PyMongo's result), "self" (the Motor object, for
    #: chaining) or "property".
    returns = "same"

    def __init__(self, wrap: str | None = None, doc: str | None = None, attr: str = "") -> None:
        self.wrap = wrap
        self.doc = doc
        self.attr = attr
        self.name = ""

    def build(self, owner: type, name: str) -> Any:
        raise NotImplementedError

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        # Never called: the class replaces its entries when it is created.  Typed so
        # that a type checker treats a manifest line as the method it becomes (the
        # type stubs give the real signatures).
        raise AttributeError(self.name)

    def target(self, owner: type, name: str) -> Any:
        """PyMongo's attribute this entry mirrors; raises if PyMongo has no such name."""
        self.name = name
        attr = self.attr or name
        pymongo_cls = owner.__dict__.get("__pymongo_class__") or getattr(
            owner, "__pymongo_class__", None
        )
        if pymongo_cls is None:
            raise TypeError(f"{owner.__name__}.{name}: the class declares no __pymongo_class__")
        try:
            return inspect.getattr_static(pymongo_cls, attr)
        except AttributeError:
            raise TypeError(
                f"Motor's manifest line {owner.__name__}.{name} names "
                f"{pymongo_cls.__name__}.{attr}, which the installed PyMongo does not have"
            ) from None

    def _document(self, fn: Callable[..., Any], owner: type, name: str, what: str) -> None:
        target = self.target(owner, name)
        fn.__name__ = name
        fn.__module__ = owner.__module__
        function = target.fget if isinstance(target, property) else target
        if isinstance(function, (staticmethod, classmethod)):
            function = function.__func__
        # PyMongo's qualified name for a method made from PyMongo's, as Motor 3.7.1's
        # (functools.wraps) had: a coroutine never awaited is reported under it
        # ("coroutine 'Database.list_collections' was never awaited"), and warning
        # filters written for Motor 3.7.1 match.  The methods that make a cursor without
        # I/O (find, clone, ...) and those that bind PyMongo's parameters at the call
        # were Motor's own in Motor 3.7.1, and keep Motor's name.
        makes_cursor = (
            self.wrap is not None and self.wrap.endswith("Cursor") and not isinstance(self, Async)
        )
        own = isinstance(target, property) or makes_cursor or getattr(self, "bind_at_call", False)
        qualname = None if own else getattr(function, "__qualname__", None)
        fn.__qualname__ = qualname if isinstance(qualname, str) else f"{owner.__name__}.{name}"
        documented = callable(function)
        base_doc = self.doc or (inspect.getdoc(function) if documented else None) or ""
        fn.__doc__ = f"{what}\n\n{base_doc}" if what else base_doc
        if isinstance(target, property) and callable(function):
            signature = motor_signature(function)
            if signature is not None:
                fn.__annotations__ = {"return": signature.return_annotation}
        elif callable(function):
            signature = motor_signature(function, self.returns)
            if signature is not None:
                _set_signature(fn, signature)
        fn._motor_entry = self  # type: ignore[attr-defined]
        fn._motor_target = function  # type: ignore[attr-defined]


def motor_signature(
    function: Callable[..., Any], returns: str = "same"
) -> inspect.Signature | None:
    """PyMongo's signature of ``function``, as the Motor method built from it has it.

    Annotations stay PyMongo's strings; an asynchronous method's return annotation
    becomes ``Future[...]`` of PyMongo's.
    """
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    ret = signature.return_annotation
    if returns == "future":
        inner = "Any" if ret is inspect.Signature.empty else ret
        if not isinstance(inner, str):
            inner = getattr(inner, "__name__", repr(inner))
        ret = f"Future[{inner}]"
    elif returns == "self":
        ret = "Self"
    return signature.replace(return_annotation=ret)


def mirror(
    pymongo_function: Callable[..., Any], returns: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a hand-written Motor method that mirrors ``pymongo_function``.

    The method gets PyMongo's signature, with the return annotation naming the Motor
    class it returns (``returns``, a framework-neutral name such as "ChangeStream"),
    and its docstring followed by PyMongo's.
    """

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        signature = motor_signature(pymongo_function)
        if signature is not None:
            _set_signature(method, signature.replace(return_annotation=returns))
        own = inspect.cleandoc(method.__doc__ or "")
        theirs = inspect.getdoc(pymongo_function) or ""
        method.__doc__ = f"{own}\n\n{theirs}" if own and theirs else own or theirs
        method._motor_target = pymongo_function  # type: ignore[attr-defined]
        method._motor_returns = returns  # type: ignore[attr-defined]
        return method

    return decorate


def coroutine_like(fn: _F) -> _F:
    """Mark ``fn``, which returns an object that speaks the coroutine protocol (``send``,
    ``throw``, ``close``, ``__await__``), as a coroutine function for introspection:
    :func:`inspect.iscoroutinefunction` (Python 3.12+), :func:`asyncio.iscoroutinefunction`
    and so :func:`unittest.mock.create_autospec`, which then mocks it with an
    ``AsyncMock`` as it did the ``async def`` of Motor 3.7.1."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12+
        return cast(_F, mark(fn))
    # Python 3.11 and earlier: asyncio.iscoroutinefunction's own marker.
    fn._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]
    return fn


def _set_signature(fn: Callable[..., Any], signature: inspect.Signature) -> None:
    """Give ``fn`` this signature, for :func:`inspect.signature` and for tools (such as
    Sphinx) that read ``__annotations__``."""
    fn.__signature__ = signature  # type: ignore[attr-defined]
    annotations = {
        name: parameter.annotation
        for name, parameter in signature.parameters.items()
        if parameter.annotation is not inspect.Parameter.empty
    }
    if signature.return_annotation is not inspect.Signature.empty:
        annotations["return"] = signature.return_annotation
    fn.__annotations__ = annotations


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


#: A bulk call (``insert_many``, ``bulk_write``) of more items than this, or of an
#: iterable without a length, runs in a worker thread (see :class:`Async`).
BULK_IN_THREAD = 1000


def _in_a_thread(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    # Runs on a child greenlet: run the call in the loop's default executor, with this
    # child's context, and park until it is done.
    from motor.green.hub import current_child

    child = current_child()
    assert child is not None
    return child.hub.run_in_thread(fn, *args, **kwargs)


class Async(ManifestEntry):
    """A PyMongo method that does network I/O: returns a future of its result.

    With ``unqueued=True`` the call never waits in the client's admission queue (for
    operations that may need a connection their object already holds, such as
    committing a transaction pinned to a connection).

    With ``bulk`` (the name of the first parameter, a sequence of documents or
    requests), a call of more than :data:`BULK_IN_THREAD` items, or of an iterable
    whose length is unknown, runs in a worker thread instead of a child greenlet:
    PyMongo prepares every item (``_id``, validation) in one Python loop before it
    sends anything, which would hold the event loop for as long; in a thread, the
    interpreter's switch interval lets the loop run meanwhile.  Such a call is not
    interrupted by cancellation (the thread finishes it).

    ``call``, a function taking the PyMongo object first, runs instead of PyMongo's method
    (which it must mirror: same parameters, results, errors); not with ``wrap`` or
    ``unqueued``.

    With ``coroutine=True`` the method is a coroutine function, as Motor 3.7.1's was for
    a few methods (``list_collections``, ``create_collection``, ...): the call starts
    when the coroutine first runs, and ``asyncio.create_task()`` takes it.  The others
    return a future, as Motor 3.7.1's did (``asyncio.wait()`` takes those).  With
    ``bind_at_call=True`` too, the coroutine function has PyMongo's parameters, so wrong
    arguments raise at the call, as Motor 3.7.1's hand-written ``cursor_command`` did.
    """

    returns = "future"

    def __init__(
        self,
        wrap: str | None = None,
        doc: str | None = None,
        attr: str = "",
        unqueued: bool = False,
        bulk: str = "",
        call: Callable[..., Any] | None = None,
        coroutine: bool = False,
        bind_at_call: bool = False,
    ) -> None:
        super().__init__(wrap, doc, attr)
        self.unqueued = unqueued
        self.bulk = bulk
        self.coroutine = coroutine
        self.bind_at_call = bind_at_call
        if coroutine:
            self.returns = "coroutine"
        if call is not None and (wrap is not None or unqueued):
            raise ValueError("Async(call=...) does not wrap results and is always queued")
        self.call = call

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap
        attr = self.attr or name
        bulk = self.bulk
        call = self.call

        if bulk:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                args, kwargs = unwrap_args(args, kwargs)
                items = args[0] if args else kwargs.get(bulk)
                if call is None:
                    fn = getattr(self.delegate, attr)
                else:
                    fn = functools.partial(call, self.delegate)
                if not isinstance(items, Sized) or len(items) > BULK_IN_THREAD:
                    return self._binding.call(_in_a_thread, (fn, args, kwargs), {})
                return self._binding.call(fn, args, kwargs)

        elif self.unqueued:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                args, kwargs = unwrap_args(args, kwargs)
                return self._binding.call_unqueued(getattr(self.delegate, attr), args, kwargs)

        elif call is not None:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if (args and not _all_plain(map(type, args))) or (
                    kwargs and not _all_plain(map(type, kwargs.values()))
                ):
                    args, kwargs = unwrap_args(args, kwargs)
                return self._binding.call(call, (self.delegate, *args), kwargs)

        elif wrap is None:

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                if (args and not _all_plain(map(type, args))) or (
                    kwargs and not _all_plain(map(type, kwargs.values()))
                ):
                    args, kwargs = unwrap_args(args, kwargs)
                return self._binding.call(getattr(self.delegate, attr), args, kwargs)

        else:

            def call_and_wrap(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                # Runs on a child greenlet.
                return obj._wrap(wrap, getattr(obj.delegate, attr)(*args, **kwargs))

            def method(self: Any, *args: Any, **kwargs: Any) -> Any:
                args, kwargs = unwrap_args(args, kwargs)
                return self._binding.call(call_and_wrap, (self, args, kwargs), {})

        built: Callable[..., Any] = method
        what = "Asynchronous: returns an awaitable future (yieldable in Tornado coroutines)."
        if self.coroutine and self.bind_at_call:
            # PyMongo's parameters: wrong arguments raise at the call, not at the await.
            function = self.target(owner, name)
            built = with_parameters_of(function, method)
            what = "Asynchronous: a coroutine function (yieldable in Tornado coroutines)."
        elif self.coroutine:
            returning_a_future = method

            async def coroutine(self: Any, *args: Any, **kwargs: Any) -> Any:
                return await returning_a_future(self, *args, **kwargs)

            built = coroutine
            what = "Asynchronous: a coroutine function (yieldable in Tornado coroutines)."
        self._document(built, owner, name, what)
        return built


def with_parameters_of(
    function: Callable[..., Any], call: Callable[..., Any] | None = None
) -> Callable[..., Any]:
    """A function with the parameters and defaults of ``function`` (unwrapped), so that a
    call with wrong arguments raises Python's own ``TypeError`` before anything runs.

    Without ``call``, it does nothing and is named as ``function``.  With ``call``, it is
    an ``async def`` returning ``await call(...)`` of the arguments (the defaults given
    explicitly), as Motor 3.7.1's hand-written coroutine methods were.
    """
    unwrapped: Any = inspect.unwrap(function)
    code = unwrapped.__code__
    names = list(code.co_varnames)
    positional = code.co_posonlyargcount
    count = code.co_argcount
    keyword_only = code.co_kwonlyargcount
    params = names[:positional] + (["/"] if positional else []) + names[positional:count]
    forward = names[:count]
    rest = count + keyword_only
    if code.co_flags & inspect.CO_VARARGS:
        params.append("*" + names[rest])
        forward.append("*" + names[rest])
        rest += 1
    elif keyword_only:
        params.append("*")
    params += names[count : count + keyword_only]
    forward += [f"{name}={name}" for name in names[count : count + keyword_only]]
    if code.co_flags & inspect.CO_VARKEYWORDS:
        params.append("**" + names[rest])
        forward.append("**" + names[rest])
    if call is None:
        source = f"def function({', '.join(params)}):\n    pass\n"
    else:
        source = (
            f"async def function({', '.join(params)}):\n"
            f"    return await __motor_call__({', '.join(forward)})\n"
        )
    namespace: dict[str, Any] = {"__motor_call__": call}
    exec(source, namespace)
    built: Any = namespace["function"]
    built.__defaults__ = unwrapped.__defaults__
    built.__kwdefaults__ = unwrapped.__kwdefaults__
    built.__name__ = unwrapped.__name__
    built.__qualname__ = unwrapped.__qualname__
    return built  # type: ignore[no-any-return]


class Delegate(ManifestEntry):
    """A PyMongo method without I/O: called at once; its result is wrapped if asked."""

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap
        attr = self.attr or name

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = unwrap_args(args, kwargs)
            result = getattr(self.delegate, attr)(*args, **kwargs)
            return result if wrap is None else self._wrap(wrap, result)

        self._document(method, owner, name, "")
        return method


class Chain(ManifestEntry):
    """A cursor method that modifies the cursor and returns it: returns the Motor cursor."""

    returns = "self"

    def build(self, owner: type, name: str) -> Any:
        attr = self.attr or name

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = unwrap_args(args, kwargs)
            getattr(self.delegate, attr)(*args, **kwargs)
            return self

        self._document(method, owner, name, "Returns this cursor, for chaining.")
        return method


class ReadOnly(ManifestEntry):
    """A property of the delegate, read-only; its value is wrapped if asked.

    With ``may_wait=True`` the property may need PyMongo to wait for the server
    (server selection): on a running loop's thread, where that would block the loop,
    reading it raises :class:`~motor.errors.WouldBlockError` unless the answer is
    already known.
    """

    returns = "property"

    def __init__(
        self,
        wrap: str | None = None,
        doc: str | None = None,
        attr: str = "",
        may_wait: bool = False,
    ) -> None:
        super().__init__(wrap, doc, attr)
        self.may_wait = may_wait

    def build(self, owner: type, name: str) -> Any:
        wrap = self.wrap
        attr = self.attr or name

        if self.may_wait:
            from motor.errors import WouldBlockError

            def fget(self: Any) -> Any:
                try:
                    value = getattr(self.delegate, attr)
                except WouldBlockError as exc:
                    raise WouldBlockError(
                        f"{type(self).__name__}.{name} is not known yet, and finding it "
                        "needs server selection, which would block the running event loop. "
                        "Await an operation first, for example `await client.aconnect()`."
                    ) from exc
                return value if wrap is None else self._wrap(wrap, value)

        else:

            def fget(self: Any) -> Any:
                value = getattr(self.delegate, attr)
                return value if wrap is None else self._wrap(wrap, value)

        note = (
            "Refuses to run server selection on a running event loop: raises "
            ":class:`~motor.errors.WouldBlockError` until the client knows the server "
            "(``await client.aconnect()``)."
            if self.may_wait
            else ""
        )
        self._document(fget, owner, name, note)
        prop = property(fget, doc=fget.__doc__)
        return prop
