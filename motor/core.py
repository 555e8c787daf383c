"""Framework-neutral Motor classes: the API manifest over PyMongo's sync classes.

Each class mirrors one PyMongo class (``__pymongo_class__``) through manifest lines
(see :mod:`motor.metaprogramming`).  The concrete classes users import live in
:mod:`motor.motor_asyncio` and :mod:`motor.motor_tornado`; they differ only in their
``_framework``.  All I/O first checks the calling thread and loop
(:meth:`Binding.hub_for_call`; :meth:`Binding.call` makes the same check inline), then
goes through the hub (:mod:`motor.green.hub`) that runs PyMongo in a child greenlet.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections import deque
from collections.abc import Callable
from contextvars import copy_context as _copy_context
from typing import Any, ClassVar

from pymongo import MongoClient
from pymongo.driver_info import DriverInfo
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.command_cursor import CommandCursor
from pymongo.synchronous.cursor import Cursor
from pymongo.synchronous.database import Database

from motor._version import __version__
from motor.errors import ClientClosedError, ForkedClientError, WrongLoopError, WrongThreadError
from motor.green.hub import Hub, OpFuture, get_hub
from motor.green.pool import TIMEOUT, client_hooks
from motor.metaprogramming import Async, Chain, Delegate, ManifestEntry, ReadOnly

__all__ = [
    "AgnosticBase",
    "AgnosticClient",
    "AgnosticCollection",
    "AgnosticCommandCursor",
    "AgnosticCursor",
    "AgnosticDatabase",
    "Binding",
    "Framework",
]

_get_running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop


class Framework:
    """What differs between Tornado and asyncio; one instance per framework module."""

    #: "asyncio" or "Tornado", reported to the server in the handshake.
    name: str = ""

    def __init__(self) -> None:
        self.classes: dict[str, type[AgnosticBase]] = {}

    def loop_from_io_loop(self, io_loop: Any) -> asyncio.AbstractEventLoop:
        """The asyncio loop behind the framework's ``io_loop`` argument."""
        raise NotImplementedError


class Binding:
    """The event loop a client (and everything made from it) is bound to.

    Bound at construction with ``io_loop=``, otherwise to the loop running the first
    operation.  Databases, collections and cursors share their client's binding.
    """

    __slots__ = (
        "__weakref__",
        "_active",
        "_usable_loop",
        "_waiting",
        "admission",
        "closed",
        "forked",
        "hub",
        "loop",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, admission: Admission | None = None
    ) -> None:
        self.loop = loop
        self.hub: Hub | None = None if loop is None else get_hub(loop)
        # The loop calls may come from: None until bound, and once closed or forked.
        self._usable_loop = loop
        self.closed = False
        self.forked = False
        self.admission = admission
        # Operations admitted and not finished; operations waiting for admission.
        self._active = 0
        self._waiting: deque[tuple[Any, ...]] = deque()
        _bindings.add(self)

    def spawn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn`` for this client in a child greenlet; return its future."""
        return self.call(fn, args, kwargs)

    def call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` for this client in a child greenlet; return its
        future.

        Operations beyond what the client's connection pools can serve at once wait in
        a queue as plain tuples (see :class:`Admission`) instead of as parked
        greenlets in PyMongo's pool wait queue: same order, far less memory.
        """
        # hub_for_call(), without a call: this runs for every operation.
        loop = _get_running_loop()
        if loop is not None and loop is self._usable_loop:
            hub: Hub = self.hub  # type: ignore[assignment]
        else:
            hub = self._check(loop)
        future = OpFuture(loop=hub.loop)
        context = _copy_context()
        admission = self.admission
        if admission is None or TIMEOUT.get() is not None:
            hub.submit(future, context, fn, args, kwargs)
        elif self._waiting or (
            self._active >= admission.limit and self._active >= admission.refresh_limit()
        ):
            self._waiting.append((fn, args, kwargs, future, context))
        else:
            self._active += 1
            hub.submit(future, context, fn, args, kwargs, self._admit_next)
        return future

    def _admit_next(self) -> None:
        # Runs on a child that finished an admitted operation (or on the loop, for
        # one cancelled while queued in the hub): hand its slot over.
        waiting = self._waiting
        while waiting:
            fn, args, kwargs, future, context = waiting.popleft()
            if not future.done():  # not cancelled while waiting
                assert self.hub is not None
                self.hub.submit(future, context, fn, args, kwargs, self._admit_next)
                return
        self._active -= 1

    def hub_for_call(self) -> Hub:
        """The hub to run an operation on; raises if called from the wrong place."""
        loop = _get_running_loop()
        if loop is not None and loop is self._usable_loop:
            return self.hub  # type: ignore[return-value]
        return self._check(loop)

    def close(self) -> None:
        self.closed = True
        self._usable_loop = None

    def mark_forked(self) -> None:
        self.forked = True
        self._usable_loop = None

    def _check(self, loop: asyncio.AbstractEventLoop | None) -> Hub:
        if self.forked:
            raise ForkedClientError(
                "This Motor client was created before fork(); create a new client in "
                "the child process"
            )
        if self.closed:
            raise ClientClosedError("Cannot use a Motor client after close()")
        if loop is None:
            raise WrongThreadError(
                "Motor methods must be called from the thread running the client's event "
                "loop, inside a coroutine or callback of that loop"
            )
        if self.loop is None:
            self.loop = self._usable_loop = loop
            self.hub = get_hub(loop)
            return self.hub
        raise WrongLoopError(
            f"This Motor client is bound to {self.loop!r} but was used from {loop!r}; "
            "create one client per event loop"
        )


class Admission:
    """How many operations of one client may run at once.

    As many as its pools have connections (``maxPoolSize`` per known server), plus a
    margin for operations that need no new connection.  Clients with
    ``waitQueueTimeoutMS`` or ``timeoutMS``, and operations under
    :func:`pymongo.timeout`, are never queued here, so their deadlines cover every
    wait exactly as PyMongo defines them.
    """

    __slots__ = ("_client", "_max_pool_size", "limit")

    def __init__(self, client: MongoClient[Any], max_pool_size: int) -> None:
        self._client = client
        self._max_pool_size = max_pool_size
        self.limit = 0
        self.refresh_limit()

    @classmethod
    def for_client(cls, client: MongoClient[Any]) -> Admission | None:
        options = client.options
        pool_options = options.pool_options
        if (
            not pool_options.max_pool_size
            or pool_options.wait_queue_timeout is not None
            or options.timeout is not None
        ):
            return None
        return cls(client, int(pool_options.max_pool_size))

    def refresh_limit(self) -> int:
        """Recompute the limit from the servers known now."""
        topology = self._client._topology
        servers = max(1, len(topology.description.server_descriptions()))
        self.limit = self._max_pool_size * (servers + 1)
        return self.limit


_bindings: weakref.WeakSet[Binding] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for binding in list(_bindings):
        binding.mark_forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AgnosticBase:
    """Base of every Motor class: ``delegate`` is the PyMongo object."""

    __pymongo_class__: ClassVar[type | None] = None
    #: Framework-neutral name used by ``wrap=`` ("Client", "Database", ...).
    _agnostic_name: ClassVar[str] = ""
    _framework: ClassVar[Framework | None] = None

    delegate: Any
    _binding: Binding

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in list(vars(cls).items()):
            if isinstance(value, ManifestEntry):
                setattr(cls, name, value.build(cls, name))
        framework = cls.__dict__.get("_framework")
        if framework is not None:
            framework.classes[cls._agnostic_name] = cls

    @property
    def _motor_delegate(self) -> Any:
        return self.delegate

    def _wrap(self, agnostic_name: str, obj: Any) -> Any:
        """Wrap a PyMongo object in this framework's Motor class ``agnostic_name``."""
        if obj is None:
            return None
        assert self._framework is not None
        cls = self._framework.classes[agnostic_name]
        return cls._from_delegate(obj, self)

    @classmethod
    def _from_delegate(cls, delegate: Any, parent: AgnosticBase) -> Any:
        obj = cls.__new__(cls)
        obj.delegate = delegate
        obj._binding = parent._binding
        obj._init_from_parent(parent)
        return obj

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        """Hook: set references to the parent Motor object."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return bool(self.delegate == other.delegate)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.delegate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.delegate!r})"


def _unknown_name(obj: object, name: str) -> AttributeError:
    return AttributeError(
        f"{type(obj).__name__} has no attribute {name!r}. To access the {name} "
        f"collection/database, use obj[{name!r}]."
    )


class AgnosticClient(AgnosticBase):
    """A client for one MongoDB deployment, bound to one event loop.

    Takes :class:`~pymongo.mongo_client.MongoClient`'s arguments, plus ``io_loop``
    (the framework's loop; by default the loop running the first operation).  The
    connection is opened on first use (``connect=False`` is the default).
    """

    __pymongo_class__ = MongoClient
    _agnostic_name = "Client"

    address = ReadOnly()
    primary = ReadOnly()
    secondaries = ReadOnly()
    arbiters = ReadOnly()
    is_primary = ReadOnly()
    is_mongos = ReadOnly()
    nodes = ReadOnly()
    topology_description = ReadOnly()
    options = ReadOnly()
    codec_options = ReadOnly()
    read_preference = ReadOnly()
    read_concern = ReadOnly()
    write_concern = ReadOnly()
    HOST = ReadOnly()
    PORT = ReadOnly()

    get_database = Delegate(wrap="Database")
    get_default_database = Delegate(wrap="Database")
    list_database_names = Async()
    list_databases = Async(wrap="CommandCursor")
    server_info = Async()
    append_metadata = Delegate()

    def __init__(self, *args: Any, io_loop: Any = None, **kwargs: Any) -> None:
        framework = self._framework
        if framework is None:
            raise TypeError(
                f"{type(self).__name__} is framework-neutral; use MotorClient or AsyncIOMotorClient"
            )
        loop = None if io_loop is None else framework.loop_from_io_loop(io_loop)
        kwargs.setdefault("connect", False)
        user_driver = kwargs.pop("driver", None)
        kwargs.update(client_hooks())
        self.delegate = MongoClient(
            *args, driver=DriverInfo("Motor", __version__, framework.name), **kwargs
        )
        if user_driver is not None:
            self.delegate.append_metadata(user_driver)
        self._binding = Binding(loop, Admission.for_client(self.delegate))

    @property
    def io_loop(self) -> asyncio.AbstractEventLoop | None:
        """The asyncio event loop this client is bound to (None until first use)."""
        return self._binding.loop

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise _unknown_name(self, name)
        return self[name]

    def __getitem__(self, name: str) -> Any:
        return self._wrap("Database", self.delegate[name])

    def drop_database(self, name_or_database: Any, *args: Any, **kwargs: Any) -> Any:
        """Drop a database (a name, or a Motor/PyMongo database). Asynchronous."""
        target = getattr(name_or_database, "_motor_delegate", name_or_database)
        return self._binding.spawn(self.delegate.drop_database, target, *args, **kwargs)

    def close(self) -> asyncio.Future[None] | None:
        """Close the client: end its server sessions, kill its cursors, close sockets.

        On the client's loop this starts closing at once and returns a future that
        completes when the client is closed; awaiting it is optional.  Called from a
        thread where no event loop runs (after the loop stopped, say), it closes
        synchronously and returns None.  Every later operation raises
        :class:`~motor.errors.ClientClosedError`.
        """
        binding = self._binding
        if binding.closed:
            return None
        loop = _get_running_loop()
        if loop is None:
            binding.close()
            self.delegate.close()
            return None
        hub = binding.hub_for_call()
        binding.close()
        return hub.spawn(self.delegate.close)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        future = self.close()
        if future is not None:
            await future


class AgnosticDatabase(AgnosticBase):
    """A MongoDB database: ``client[name]`` or ``client.name``."""

    __pymongo_class__ = Database
    _agnostic_name = "Database"

    name = ReadOnly()
    codec_options = ReadOnly()
    read_preference = ReadOnly()
    read_concern = ReadOnly()
    write_concern = ReadOnly()

    command = Async()
    list_collection_names = Async()
    list_collections = Async(wrap="CommandCursor")
    create_collection = Async(wrap="Collection")
    drop_collection = Async()
    validate_collection = Async()
    get_collection = Delegate(wrap="Collection")
    with_options = Delegate(wrap="Database")

    def __init__(self, client: AgnosticClient, name: str, **kwargs: Any) -> None:
        self.delegate = Database(client.delegate, name, **kwargs)
        self._binding = client._binding
        self._client = client

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        self._client = parent if isinstance(parent, AgnosticClient) else parent.client  # type: ignore[attr-defined]

    @property
    def client(self) -> Any:
        """The Motor client this database belongs to."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise _unknown_name(self, name)
        return self[name]

    def __getitem__(self, name: str) -> Any:
        return self._wrap("Collection", self.delegate[name])


class AgnosticCollection(AgnosticBase):
    """A MongoDB collection: ``db[name]`` or ``db.name``."""

    __pymongo_class__ = Collection
    _agnostic_name = "Collection"

    name = ReadOnly()
    full_name = ReadOnly()
    codec_options = ReadOnly()
    read_preference = ReadOnly()
    read_concern = ReadOnly()
    write_concern = ReadOnly()

    insert_one = Async()
    insert_many = Async()
    find_one = Async()
    find_one_and_delete = Async()
    find_one_and_replace = Async()
    find_one_and_update = Async()
    update_one = Async()
    update_many = Async()
    replace_one = Async()
    delete_one = Async()
    delete_many = Async()
    bulk_write = Async()
    count_documents = Async()
    estimated_document_count = Async()
    distinct = Async()
    create_index = Async()
    create_indexes = Async()
    drop_index = Async()
    drop_indexes = Async()
    index_information = Async()
    drop = Async()
    rename = Async()
    options = Async()
    find = Delegate(wrap="Cursor")
    with_options = Delegate(wrap="Collection")

    def __init__(self, database: AgnosticDatabase, name: str, *args: Any, **kwargs: Any) -> None:
        self.delegate = Collection(database.delegate, name, *args, **kwargs)
        self._binding = database._binding
        self._database = database

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        if isinstance(parent, AgnosticDatabase):
            self._database = parent
        else:
            self._database = parent._wrap("Database", self.delegate.database)

    @property
    def database(self) -> Any:
        """The Motor database this collection belongs to."""
        return self._database

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise _unknown_name(self, name)
        return self[name]

    def __getitem__(self, name: str) -> Any:
        return self._wrap("Collection", self.delegate[name])


_STOP = object()


def _next_or_stop(cursor: Any) -> Any:
    # Runs on a child greenlet.
    try:
        return cursor.next()
    except StopIteration:
        return _STOP


class _AgnosticCursorBase(AgnosticBase):
    """What find() cursors and command cursors share: iteration and ``to_list``."""

    alive = ReadOnly()
    cursor_id = ReadOnly()
    address = ReadOnly()
    session = ReadOnly()

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        self._parent = parent

    def _fetch(self) -> asyncio.Future[Any]:
        return self._binding.spawn(_next_or_stop, self.delegate)

    async def next(self) -> Any:
        """Advance the cursor; raise :class:`StopAsyncIteration` at the end."""
        data = self.delegate._data
        if data:
            return data.popleft()
        doc = await self._fetch()
        if doc is _STOP:
            raise StopAsyncIteration
        return doc

    __anext__ = next

    def __aiter__(self) -> Any:
        return self

    def to_list(self, length: int | None = None) -> asyncio.Future[list[Any]]:
        """Fetch up to ``length`` documents (all when None) into a list. Asynchronous."""
        if length is not None and (not isinstance(length, int) or length < 0):
            raise ValueError("length must be a non-negative integer or None")
        if length == 0:
            hub = self._binding.hub_for_call()
            future: asyncio.Future[list[Any]] = hub.loop.create_future()
            future.set_result([])
            return future
        return self._binding.spawn(self.delegate.to_list, length)

    def close(self) -> asyncio.Future[None]:
        """Close the cursor and kill it on the server. Asynchronous."""
        return self._binding.spawn(self.delegate.close)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AgnosticCursor(_AgnosticCursorBase):
    """A cursor over ``find()`` results; created without I/O, fetched on demand."""

    __pymongo_class__ = Cursor
    _agnostic_name = "Cursor"

    sort = Chain()
    skip = Chain()
    limit = Chain()
    batch_size = Chain()
    hint = Chain()
    where = Chain()
    max_time_ms = Chain()
    max_await_time_ms = Chain()
    comment = Chain()
    collation = Chain()
    min = Chain()
    max = Chain()
    allow_disk_use = Chain()
    add_option = Chain()
    remove_option = Chain()
    rewind = Chain()
    explain = Async()
    distinct = Async()
    clone = Delegate(wrap="Cursor")

    @property
    def collection(self) -> Any:
        """The Motor collection this cursor reads."""
        return self._parent


class AgnosticCommandCursor(_AgnosticCursorBase):
    """A cursor over a command's results (``list_databases``, ``aggregate``, ...)."""

    __pymongo_class__ = CommandCursor
    _agnostic_name = "CommandCursor"

    batch_size = Chain()
