"""Cursors and change streams, framework-neutral (see :mod:`motor.core`).

A Motor cursor wraps a PyMongo cursor, whose documents are buffered in its ``_data``
deque.  Taking a buffered document needs no I/O and happens on the loop; fetching a
batch (the first query, a ``getMore``) runs PyMongo's cursor in a child greenlet.

``aggregate()``, ``list_indexes()`` and friends, like ``watch()``, return their cursor
without I/O, as Motor 3.7.1 does: PyMongo's methods run the command at once, so the
Motor cursor is *latent* until its first fetch, which runs PyMongo's method in a child
and continues with the cursor it returns.

A cursor pinned to its connection (exhaust cursors; any cursor in load-balanced mode)
fetches outside the client's admission queue (:class:`motor.core.Admission`): the
operations admitted before it may be waiting for that very connection.
"""

from __future__ import annotations

import asyncio
import copy
import warnings
from collections import deque
from collections.abc import Callable
from itertools import islice, repeat
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, cast

from bson.typings import _DocumentType
from pymongo.cursor_shared import _QUERY_OPTIONS
from pymongo.errors import InvalidOperation
from pymongo.synchronous.change_stream import ChangeStream
from pymongo.synchronous.command_cursor import CommandCursor, RawBatchCommandCursor
from pymongo.synchronous.cursor import Cursor, RawBatchCursor

from motor.core import AgnosticBase, bind_arguments
from motor.green import pool as _green_pool
from motor.green.hub import Cancelled, current_child
from motor.metaprogramming import Async, Chain, Delegate, GenericDocuments, ReadOnly, unwrap_args

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Self

__all__ = [
    "AgnosticBaseCursor",
    "AgnosticChangeStream",
    "AgnosticCommandCursor",
    "AgnosticCursor",
    "AgnosticLatentCommandCursor",
    "AgnosticRawBatchCommandCursor",
    "AgnosticRawBatchCursor",
]

# What a fetch returns at the end of the cursor (StopIteration cannot cross a future).
_STOP = object()
_TAILABLE = _QUERY_OPTIONS["tailable_cursor"]
_NO_DATA: deque[Any] = deque()


def _next_or_stop(cursor: AgnosticBaseCursor[Any]) -> Any:
    # Runs on a child greenlet.
    delegate = cursor._started_delegate()
    if delegate is None:
        return _STOP
    try:
        return delegate.next()
    except StopIteration:
        return _STOP
    except Cancelled:
        _close_cancelled(delegate)
        raise


def _close_cancelled(delegate: Any) -> None:
    # Runs on a child stopped by a cancellation.  Where the child waited for the network,
    # PyMongo has closed the cursor already; a child stopped between two pieces of a large
    # batch's hand-over (_Batch, _move_documents) was outside PyMongo's cleanup, and the
    # cursor, which already has the batch's cursor id and position, would go on past the
    # documents the cancelled call dropped.  Closed instead, as PyMongo closes a cursor
    # whose fetch was interrupted (idempotent where it did).
    delegate.close()


def _to_list(
    cursor: AgnosticBaseCursor[Any],
    length: int | None,
    to_list: Callable[[Any, int | None], list[Any]] | None = None,
) -> list[Any]:
    # Runs on a child greenlet: PyMongo's to_list (the cursor class's, or ``to_list``),
    # whose _next_batch hands a large batch over to the list in pieces.
    delegate = cursor._started_delegate()
    if delegate is None:
        return []
    if to_list is None:
        to_list = type(delegate).to_list
    child = current_child()
    if child is None:
        result: list[Any] = to_list(delegate, length)
        return result
    hub = child.hub
    fetch = delegate._next_batch

    def next_batch(result: list[Any], total: int | None = None) -> bool:
        # With a total of 0, PyMongo's _next_batch (of either cursor class) fetches a
        # batch unless one is buffered, and says whether documents are buffered.
        try:
            if not fetch(result, 0):
                return False
            _move_documents(delegate._data, result, total, hub)
        except Cancelled:
            # What this to_list gathered (earlier batches, pieces of this one) goes back
            # to the front of the cursor's buffer, which _close_cancelled keeps: the next
            # fetch starts with it rather than past it.
            delegate._data.extendleft(reversed(result))
            result.clear()
            raise
        return True

    if "_next_batch" in vars(delegate):  # another to_list of this cursor is running
        result = to_list(delegate, length)
        return result
    delegate._next_batch = next_batch
    try:
        result = to_list(delegate, length)
    except Cancelled:
        _close_cancelled(delegate)
        raise
    finally:
        del delegate._next_batch
    return result


def _move_documents(data: deque[Any], result: list[Any], total: int | None, hub: Any) -> None:
    """Move ``total`` documents (all when None) from the left of ``data`` to ``result``:
    more than :data:`~motor.green.pool.HANDOVER_DOCUMENTS` of them
    :data:`~motor.green.pool.MOVE_DOCUMENTS` at a time, the loop running between two
    pieces once the iteration's work budget is spent, fewer in one piece.  Runs on a
    child."""
    count = len(data) if total is None else min(len(data), total)
    most = count if count <= _green_pool.HANDOVER_DOCUMENTS else _green_pool.MOVE_DOCUMENTS
    while True:
        step = min(count, most)
        if step == len(data):
            result.extend(data)
            data.clear()
        else:
            result.extend(islice(data, step))
            pop = data.popleft
            for _ in repeat(None, step):
                pop()
        count -= step
        if not count:
            return
        _green_pool._pause_if_spent_on(hub)
        # Another task's next() may have taken documents from the buffer during the
        # pause (one cursor read by two tasks at once): each goes to one of them.
        count = min(count, len(data))
        if not count:
            return


def _refresh(cursor: AgnosticBaseCursor[Any]) -> int:
    # Runs on a child greenlet: fetch a batch unless documents are buffered; how many
    # are buffered now.
    delegate = cursor._started_delegate()
    if delegate is None:
        return 0
    try:
        count: int = delegate._refresh()
    except Cancelled:
        _close_cancelled(delegate)
        raise
    return count


def _try_next(cursor: AgnosticBaseCursor[Any]) -> Any:
    # Runs on a child greenlet.
    delegate = cursor._started_delegate()
    if delegate is None:
        return None
    try:
        return delegate.try_next()
    except Cancelled:
        _close_cancelled(delegate)
        raise


def _close(cursor: AgnosticBaseCursor[Any]) -> None:
    # Runs on a child greenlet.
    delegate = cursor.delegate
    if delegate is not None:
        delegate.close()


def _pinned(delegate: Any) -> bool:
    """Is this PyMongo cursor (or change stream) pinned to a connection?"""
    delegate = getattr(delegate, "_cursor", delegate)
    return getattr(delegate, "_sock_mgr", None) is not None


class AgnosticBaseCursor(AgnosticBase, GenericDocuments[_DocumentType]):
    """What every Motor cursor shares: iteration, ``to_list``, ``each``, closing.

    The base of :class:`AgnosticCursor` and :class:`AgnosticCommandCursor`, as in Motor 3.x
    (``motor.core.AgnosticBaseCursor``).
    """

    # Both PyMongo cursor classes have these properties; their docstrings are Cursor's.
    __pymongo_class__: ClassVar[type | None] = Cursor

    _parent: Any

    alive = ReadOnly()
    cursor_id = ReadOnly()
    address = ReadOnly()
    session = ReadOnly()

    # Set by close(); each() stops when its callback closed the cursor.
    _closed = False
    # Set by the first fetch; cleared by rewind().
    _started = False
    # Runs to_list on a child (a GridFS cursor converts what PyMongo returns).
    _to_list_child = staticmethod(_to_list)

    def __init__(self, cursor: Any, collection: Any) -> None:
        """Motor 3.7.1's constructor: PyMongo's ``cursor`` of ``collection``, a Motor
        collection (a database or client for a command cursor).  The methods that
        return cursors (``find()``, ...) and ``collection.wrap(cursor)`` are the usual
        ways to get one."""
        if not isinstance(collection, AgnosticBase):
            raise TypeError(
                f"Second argument to {type(self).__name__} must be a Motor collection, "
                f"not {collection!r}"
            )
        self.delegate = cursor
        self._binding = collection._binding
        self._client = collection._client
        self._init_from_parent(collection)

    @classmethod
    def _remake(cls, delegate: Any, parent: AgnosticBase) -> Any:
        # An application's subclass: through its constructor, as Motor 3.7.1's clone()
        # (a latent cursor's constructor runs a command instead: none of that here).
        if issubclass(cls, AgnosticLatentCommandCursor):
            return cls._from_delegate(delegate, parent)
        collection = parent._parent if isinstance(parent, AgnosticBaseCursor) else parent
        return cls(delegate, collection)

    def _document(self, document: Any) -> Any:
        """What the cursor yields for a document of its buffer (the document)."""
        return document

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        # A clone's parent is the cursor it was cloned from: keep its collection.
        self._parent = parent._parent if isinstance(parent, AgnosticBaseCursor) else parent

    @property
    def collection(self) -> Any:
        """The Motor object that made this cursor: the collection for ``find()`` and
        ``aggregate()``, the database or client for their command cursors."""
        return self._parent

    if not TYPE_CHECKING:  # assignable, as Motor 3.7.1's attribute (the stubs too)

        @collection.setter
        def collection(self, value: Any) -> None:
            self._parent = value

    def _started_delegate(self) -> Any:
        """The PyMongo cursor, or None if there is none (runs on a child)."""
        return self.delegate

    def _buffer(self) -> deque[Any]:
        delegate = self.delegate
        return _NO_DATA if delegate is None else delegate._data

    @property
    def started(self) -> bool:
        """Has the cursor fetched, or begun to fetch, its first batch?  False again after
        ``rewind()``.  (Motor 3.7.1's attribute.)"""
        return self._started

    if not TYPE_CHECKING:  # assignable, as Motor 3.7.1's attribute (the stubs too)

        @started.setter
        def started(self, value: bool) -> None:
            self._started = value

    @property
    def closed(self) -> bool:
        """Has ``close()`` been called?  (Motor 3.7.1's attribute; ``alive`` says whether
        the cursor may return more documents.)"""
        return self._closed

    if not TYPE_CHECKING:  # assignable, as Motor 3.7.1's attribute (the stubs too)

        @closed.setter
        def closed(self, value: bool) -> None:
            self._closed = value

    def _fetch(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(self, *args)``, a fetch, in a child (see :meth:`_run`)."""
        self._started = True
        return self._run(fn, *args)

    def _run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(self, *args)`` in a child; pinned cursors skip the admission queue."""
        if _pinned(self.delegate):
            return self._binding.call_unqueued(fn, (self, *args), {})
        return self._binding.call(fn, (self, *args), {})

    def _completed(self, value: Any) -> asyncio.Future[Any]:
        return self._binding.completed(value)

    def _tailable(self) -> bool:
        return False

    async def next(self) -> _DocumentType:
        """Advance the cursor. Asynchronous; raises :class:`StopAsyncIteration` at the
        end (for ``async for``)."""
        delegate = self.delegate
        if delegate is not None:
            data = delegate._data
            if data:
                return cast("_DocumentType", data.popleft())
        if not self.alive:
            # Closed or exhausted: nothing to fetch, and not started by this (as in
            # Motor 3.7.1 and PyMongo, whose next() does no I/O then).
            raise StopAsyncIteration
        doc = await self._fetch(_next_or_stop)
        if doc is _STOP:
            raise StopAsyncIteration
        return cast("_DocumentType", doc)

    __anext__ = next

    def __aiter__(self) -> Self:
        return self

    def to_list(self, length: int | None = None) -> asyncio.Future[list[_DocumentType]]:
        """Fetch the documents into a list. Asynchronous.

        ``length`` is the most documents to return (all when None); documents beyond
        it stay in the cursor for the next call.  ``to_list(0)`` returns ``[]`` after
        fetching a batch if none is buffered (the query, on a cursor not yet started),
        as in Motor 3.7.1, whose errors it raises.  As in Motor 3.7.1, a tailable cursor
        refuses (it has no end to wait for).
        """
        if length is not None:
            if not isinstance(length, int):
                raise TypeError(f"length must be an int, not {length!r}")
            if length < 0:
                raise ValueError("length must be non-negative")
        if self._tailable():
            raise InvalidOperation("Can't call to_list on tailable cursor")
        if not self.alive:
            return self._completed([])
        if length == 0:
            if self._buffer():
                return self._completed([])
            fetched = self._fetch(_refresh)
            return _chain(fetched, _no_documents, fetched.get_loop())
        return self._fetch(self._to_list_child, length)

    @property
    def fetch_next(self) -> asyncio.Future[bool]:
        """**Deprecated**: use ``async for``. An awaitable that fetches the next batch
        if none is buffered, and resolves to True if a document is available for
        :meth:`next_object`, False at the end::

            while (yield cursor.fetch_next):
                doc = cursor.next_object()
        """
        warnings.warn(
            "The fetch_next property is deprecated and may be removed in a future major "
            "release. Use `async for` to iterate over Cursor objects instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        if self._buffer():
            return self._completed(True)
        if not self.alive:
            return self._completed(False)
        future: asyncio.Future[Any] = self._fetch(_refresh)
        return _chain(future, bool, future.get_loop())

    def next_object(self) -> _DocumentType | None:
        """**Deprecated**: use ``async for``. The next document of the batch
        :attr:`fetch_next` fetched, or None."""
        warnings.warn(
            # Motor 3.7.1's text, two spaces included (filters match on it).
            "The next_object method is deprecated and may be removed in a future major "
            "release.  Use `async for` to iterate over Cursor objects instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        data = self._buffer()
        return self._document(data.popleft()) if data else None

    def each(self, callback: Callable[[_DocumentType | None, BaseException | None], Any]) -> None:
        """Call ``callback(document, None)`` for every document, then
        ``callback(None, None)``; on an error, ``callback(None, error)``.

        Returns at once; the callbacks run on the loop.  A callback that returns
        exactly False stops the iteration (the cursor stays open).
        """
        if not callable(callback):
            raise TypeError("callback must be a callable")
        loop = self._binding.result_loop()
        self._each_step(callback, loop, None)

    def _each_step(
        self,
        callback: Callable[[Any, BaseException | None], Any],
        loop: asyncio.AbstractEventLoop,
        fetched: asyncio.Future[Any] | None,
    ) -> None:
        # Runs on the loop: each() itself, then the done callback of every fetch.
        if fetched is not None:
            try:
                fetched.result()
            except Exception as error:
                callback(None, error)
                return
        data = self._buffer()
        while data:
            if callback(self._document(data.popleft()), None) is False or self._closed:
                return
        if self.alive:
            self._fetch(_refresh).add_done_callback(
                lambda future: self._each_step(callback, loop, future)
            )
        else:
            loop.call_soon(callback, None, None)

    async def close(self) -> None:
        """Close the cursor and kill it on the server. Asynchronous (a coroutine
        function, as in Motor 3.7.1).  After the client's ``close()``, as with PyMongo,
        there is nothing left to do."""
        self._closed = True
        if self.delegate is None:
            return
        if self._binding.closed:
            # PyMongo's close() after the client's makes no I/O (the server cursor was
            # killed with the client, or is left to it): the cursor is over, as in
            # Motor 3.7.1 and PyMongo.  A cursor pinned to a connection (load-balanced
            # mode) is killed on that connection, which then closes: in a child, on the
            # client's loop.
            if not _pinned(self.delegate):
                self.delegate.close()
                return
            hub = self._binding.hub
            if hub is not None and not hub._closed and hub.loop is asyncio.get_running_loop():
                await hub.spawn(_close, self)
            return
        await self._run(_close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _no_documents(_: Any) -> list[Any]:
    return []


def _chain(
    source: asyncio.Future[Any], convert: Callable[[Any], Any], loop: asyncio.AbstractEventLoop
) -> asyncio.Future[Any]:
    """A future of ``convert(source.result())`` (cancelling it cancels ``source``)."""
    target: asyncio.Future[Any] = loop.create_future()

    def copy_result(_: asyncio.Future[Any]) -> None:
        if target.done():
            return
        if source.cancelled():
            target.cancel()
        elif source.exception() is not None:
            target.set_exception(source.exception())  # type: ignore[arg-type]
        else:
            target.set_result(convert(source.result()))

    def cancel_source(_: asyncio.Future[Any]) -> None:
        if target.cancelled():
            source.cancel()

    source.add_done_callback(copy_result)
    target.add_done_callback(cancel_source)
    return target


class AgnosticCursor(AgnosticBaseCursor[_DocumentType]):
    """A cursor over ``find()`` results; created without I/O, fetched on demand."""

    __pymongo_class__: ClassVar[type | None] = Cursor
    _agnostic_name = "Cursor"

    retrieved = ReadOnly()
    sort = Chain()
    skip = Chain()
    limit = Chain()
    batch_size = Chain()
    hint = Chain()
    where = Chain()
    max_time_ms = Chain()
    max_await_time_ms = Chain()
    max_scan = Chain()
    comment = Chain()
    collation = Chain()
    min = Chain()
    max = Chain()
    allow_disk_use = Chain()
    add_option = Chain()
    remove_option = Chain()
    explain = Async()
    distinct = Async()
    clone = Delegate(wrap="Cursor")

    def _tailable(self) -> bool:
        return bool(self.delegate._query_flags & _TAILABLE)

    def rewind(self) -> Self:
        """Rewind this cursor to its unevaluated state; returns it, for chaining.

        No I/O: an open server cursor is handed to PyMongo's background thread, which
        kills it, instead of being killed on the loop's thread.
        """
        cursor = self.delegate
        cursor._die_no_lock()
        # Handed over with the server cursor: PyMongo's rewind must not close it again.
        cursor._sock_mgr = None
        cursor.rewind()
        self._closed = False
        self._started = False
        return self

    def __copy__(self) -> Self:
        return cast("Self", self.clone())

    def __deepcopy__(self, memo: Any) -> Self:
        return cast("Self", self._wrap(self._agnostic_name, copy.deepcopy(self.delegate, memo)))


class AgnosticRawBatchCursor(AgnosticCursor[_DocumentType]):
    """A ``find_raw_batches()`` cursor: each document is a raw BSON batch (``bytes``)."""

    __pymongo_class__ = RawBatchCursor
    _agnostic_name = "RawBatchCursor"

    clone = Delegate(wrap="RawBatchCursor")


class AgnosticCommandCursor(AgnosticBaseCursor[_DocumentType]):
    """A cursor over a command's results (``list_databases``, ``aggregate``, ...)."""

    __pymongo_class__: ClassVar[type | None] = CommandCursor
    _agnostic_name = "CommandCursor"

    batch_size = Chain()

    async def try_next(self) -> _DocumentType | None:
        """The next document if one is available without waiting for more than one
        ``getMore``, else None. Asynchronous."""
        data = self._buffer()
        if data:
            return cast("_DocumentType", data.popleft())
        return cast("_DocumentType | None", await self._fetch(_try_next))


class AgnosticRawBatchCommandCursor(AgnosticCommandCursor[_DocumentType]):
    """A command cursor whose documents are raw BSON batches (``bytes``)."""

    __pymongo_class__ = RawBatchCommandCursor
    _agnostic_name = "RawBatchCommandCursor"


class AgnosticLatentCommandCursor(AgnosticCommandCursor[_DocumentType]):
    """A command cursor returned without I/O (``aggregate()``, ``list_indexes()``, ...).

    Its ``delegate`` is None until the first fetch runs PyMongo's method (the command)
    in a child; that method's errors are raised by that fetch.
    """

    _agnostic_name = "LatentCommandCursor"

    # Equal to itself only, and hashed by identity: its delegate, which the other Motor
    # objects compare and hash, is None until the first fetch (as Motor 3.7.1's
    # placeholder made each latent cursor unequal to the others).
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __init__(
        self, parent: AgnosticBase, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        start = getattr(type(parent.delegate), method)
        bind_arguments(start, args, kwargs)  # wrong arguments: a TypeError now
        self.delegate = None
        self._binding = parent._binding
        self._client = parent._client
        self._parent = parent
        # What runs the command: the parent when the cursor was made, whatever
        # ``collection`` is set to later (as in Motor 3.7.1, where it ran at once).
        self._target = parent
        self._method = method
        self._args = args
        self._kwargs = dict(kwargs)
        self._batch_size: int | None = None
        self._starting: asyncio.Future[None] | None = None
        # The command failed when the first fetch ran it: the cursor is over (its error
        # was raised by that fetch), and the command does not run again.
        self._failed = False

    def batch_size(self, batch_size: int) -> Self:
        """Limit the number of documents per batch; returns this cursor."""
        if not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an integer, not {type(batch_size)}")
        if batch_size < 0:
            raise ValueError("batch_size must be >= 0")
        if self.delegate is not None:
            self.delegate.batch_size(batch_size)
        else:
            self._batch_size = batch_size
        return self

    def _started_delegate(self) -> Any:
        # Runs on a child: start the command, once.
        delegate = self.delegate
        if delegate is not None or self._closed or self._failed:
            return delegate
        child = current_child()
        assert child is not None
        starting = self._starting
        if starting is not None:
            # Another operation on this cursor is starting it.
            child.hub.wait_future(starting)
            return self.delegate
        starting = self._starting = child.hub.loop.create_future()
        try:
            try:
                delegate = self._start()
            except Exception:
                # Raised by this fetch; later fetches find the cursor over, as in Motor
                # 3.7.1, which ran the command once: they do not run it again (a
                # pipeline with $out or $merge, say).  A cancelled fetch (Cancelled, a
                # BaseException) leaves the command to the next one.
                self._failed = True
                raise
            self.delegate = delegate
        finally:
            self._starting = None
            starting.set_result(None)
        return delegate

    def _start(self) -> Any:
        # Runs on a child.
        args, kwargs = unwrap_args(self._args, self._kwargs)
        batch_size = self._batch_size
        if batch_size is not None and self._method in ("aggregate", "aggregate_raw_batches"):
            kwargs = {**kwargs, "batchSize": batch_size}
        delegate = getattr(self._target.delegate, self._method)(*args, **kwargs)
        if batch_size is not None:
            delegate.batch_size(batch_size)
        return delegate

    @property
    def alive(self) -> bool:
        """Might the cursor return more documents?  True until started and exhausted,
        closed, or its command failed."""
        if self.delegate is None:
            return not (self._closed or self._failed)
        return bool(self.delegate.alive)

    @property
    def cursor_id(self) -> int | None:
        """The server's cursor id; None before the first fetch."""
        return None if self.delegate is None else self.delegate.cursor_id

    @property
    def address(self) -> Any:
        """The server the cursor runs on; None before the first fetch."""
        return None if self.delegate is None else self.delegate.address

    @property
    def session(self) -> Any:
        """The cursor's explicit PyMongo session, if any; None before the first fetch."""
        return None if self.delegate is None else self.delegate.session


class AgnosticChangeStream(AgnosticBase, GenericDocuments[_DocumentType]):
    """A change stream (``watch()``): returned without I/O; the ``aggregate`` with
    ``$changeStream`` runs on the first fetch (or on entering ``async with``).

    Resumes after network and resumable server errors exactly as PyMongo does.
    """

    __pymongo_class__ = ChangeStream
    _agnostic_name = "ChangeStream"

    # Equal to itself only, hashed by identity (see AgnosticLatentCommandCursor).
    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __init__(self, target: AgnosticBase, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        bound = bind_arguments(type(target.delegate).watch, args, kwargs)
        arguments = dict(bound.arguments)
        arguments.pop(next(iter(arguments)))  # PyMongo's "self"
        self.delegate = None
        self._binding = target._binding
        self._client = target._client
        self._target = target
        self._watch_kwargs = arguments
        self._closed = False

    def _started(self) -> Any:
        # Runs on a child: run the aggregate, once.
        delegate = self.delegate
        if delegate is None and not self._closed:
            _, kwargs = unwrap_args((), self._watch_kwargs)
            delegate = self.delegate = self._target.delegate.watch(**kwargs)
        return delegate

    def _fetch(self, fn: Callable[..., Any]) -> asyncio.Future[Any]:
        if _pinned(self.delegate):
            return self._binding.call_unqueued(fn, (self,), {})
        return self._binding.call(fn, (self,), {})

    @property
    def alive(self) -> bool:
        """Does this change stream have the potential to return more data?"""
        if self.delegate is None:
            return not self._closed
        return bool(self.delegate.alive)

    @property
    def resume_token(self) -> Mapping[str, Any] | None:
        """The cached resume token that will be used to resume after the most recently
        returned change (before the first fetch: ``start_after`` or ``resume_after``)."""
        if self.delegate is None:
            token = self._watch_kwargs.get("start_after") or self._watch_kwargs.get("resume_after")
            return cast("Mapping[str, Any] | None", copy.deepcopy(token))
        return cast("Mapping[str, Any] | None", self.delegate.resume_token)

    async def next(self) -> _DocumentType:
        """The next change document; waits for one. Asynchronous; raises
        :class:`StopAsyncIteration` once the stream is closed or invalidated."""
        change = await self._fetch(_stream_next)
        if change is _STOP:
            raise StopAsyncIteration
        return cast("_DocumentType", change)

    __anext__ = next

    def __aiter__(self) -> Self:
        return self

    async def try_next(self) -> _DocumentType | None:
        """The next change document if one arrives within one ``getMore``, else None.
        Asynchronous."""
        return cast("_DocumentType | None", await self._fetch(_stream_try_next))

    async def close(self) -> None:
        """Close the change stream (kill its server cursor). Asynchronous (a coroutine
        function, as in Motor 3.7.1)."""
        self._closed = True
        if self.delegate is None or self._binding.closed:
            return
        await self._fetch(_stream_close)

    async def __aenter__(self) -> Self:
        await self._fetch(_stream_start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> NoReturn:
        raise RuntimeError('Use a change stream in "async with", not "with"')

    def __exit__(self, *exc: object) -> None:
        pass


def _stream_start(stream: AgnosticChangeStream[Any]) -> None:
    # Runs on a child greenlet.
    stream._started()


def _stream_next(stream: AgnosticChangeStream[Any]) -> Any:
    # Runs on a child greenlet: PyMongo's next() waits (getMore after getMore).
    delegate = stream._started()
    if delegate is None:
        return _STOP
    try:
        return delegate.next()
    except StopIteration:
        return _STOP


def _stream_try_next(stream: AgnosticChangeStream[Any]) -> Any:
    # Runs on a child greenlet.
    delegate = stream._started()
    return None if delegate is None else delegate.try_next()


def _stream_close(stream: AgnosticChangeStream[Any]) -> None:
    # Runs on a child greenlet.
    if stream.delegate is not None:
        stream.delegate.close()
