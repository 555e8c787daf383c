"""Framework-neutral Motor classes: the API manifest over PyMongo's sync classes.

Each class mirrors one PyMongo class (``__pymongo_class__``) through manifest lines
(see :mod:`motor.metaprogramming`).  The concrete classes users import live in
:mod:`motor.motor_asyncio` and :mod:`motor.motor_tornado`; they differ only in their
``_framework``.  This module holds the client, database and collection;
:mod:`motor.cursors` the cursors and change streams, :mod:`motor.sessions` the session
and :mod:`motor.encryption` explicit encryption.

All I/O first checks the calling thread and loop (:meth:`Binding.hub_for_call`;
:meth:`Binding.call` makes the same check inline), then goes through the hub
(:mod:`motor.green.hub`) that runs PyMongo in a child greenlet.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import os
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextvars import ContextVar
from contextvars import copy_context as _copy_context
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, cast

import pymongo.synchronous.client_session
from bson.codec_options import TypeRegistry
from bson.typings import _DocumentType
from gridfs.synchronous.grid_file import GridOutCursor
from pymongo import MongoClient
from pymongo.driver_info import DriverInfo
from pymongo.operations import _Op
from pymongo.server_selectors import any_server_selector
from pymongo.synchronous.change_stream import ChangeStream
from pymongo.synchronous.client_session import ClientSession
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.command_cursor import CommandCursor, RawBatchCommandCursor
from pymongo.synchronous.cursor import Cursor, RawBatchCursor
from pymongo.synchronous.database import Database

from motor._version import __version__
from motor.errors import (
    ClientClosedError,
    ForkedClientError,
    MotorMisuseError,
    WrongLoopError,
    WrongThreadError,
)
from motor.green import bulk as _green_bulk
from motor.green import find as _green_find
from motor.green import insert as _green_insert
from motor.green.hub import Hub, OpFuture, _process, get_hub, thread_token
from motor.green.pool import (
    TIMEOUT,
    check_client_tls,
    client_hooks,
    close_client,
    finish_closing,
    wake_server_selections,
)
from motor.metaprogramming import (
    Async,
    Delegate,
    GenericDocuments,
    ManifestEntry,
    ReadOnly,
    coroutine_like,
    mirror,
    with_parameters_of,
)

if TYPE_CHECKING:
    from typing import Self

    from motor.sessions import AgnosticClientSession

__all__ = [
    "AgnosticBase",
    "AgnosticBaseCursor",
    "AgnosticBaseProperties",
    "AgnosticChangeStream",
    "AgnosticClient",
    "AgnosticClientEncryption",
    "AgnosticClientSession",
    "AgnosticCollection",
    "AgnosticCommandCursor",
    "AgnosticCursor",
    "AgnosticDatabase",
    "AgnosticLatentCommandCursor",
    "AgnosticRawBatchCommandCursor",
    "AgnosticRawBatchCursor",
    "Binding",
    "Framework",
    "current_loop",
]

_get_running_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio._get_running_loop

# The session bound with ClientSession.bind() in the caller's context, if any.
_BOUND_SESSION: ContextVar[Any] | None = getattr(
    pymongo.synchronous.client_session, "_SESSION", None
)


class Framework:
    """What differs between Tornado and asyncio; one instance per framework module."""

    #: "asyncio" or "Tornado".
    name: str = ""
    #: The platform reported to the server in the handshake's driver information, as
    #: Motor 3.7.1 reported it: "asyncio", or "Tornado" and its version.
    platform: str = ""

    def __init__(self) -> None:
        self.classes: dict[str, type[AgnosticBase]] = {}

    def loop_from_io_loop(self, io_loop: Any) -> asyncio.AbstractEventLoop:
        """The asyncio loop behind the framework's ``io_loop`` argument."""
        raise NotImplementedError

    def io_loop_for(self, loop: asyncio.AbstractEventLoop) -> Any:
        """The framework's loop object (``io_loop``) running on the asyncio ``loop``."""
        raise NotImplementedError


def current_loop(create: bool = False) -> asyncio.AbstractEventLoop | None:
    """The event loop running in this thread, else the thread's current loop.

    The current loop is the one :func:`asyncio.set_event_loop` set (Tornado's
    ``IOLoop.current()`` is backed by it); asyncio creates one for the main thread on
    first use.  With ``create``, a thread without one gets a new loop, made current,
    as :func:`asyncio.get_event_loop` did for Motor 3.7.1.  None if there is none.
    """
    loop = _get_running_loop()
    if loop is not None:
        return loop
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns when this creates the main thread's loop.
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None and create:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def _failed_on(loop: asyncio.AbstractEventLoop | None, exc: BaseException) -> asyncio.Future[Any]:
    """A future of ``loop`` that failed with ``exc``; ``exc`` itself where no loop runs.

    Misuse that the call itself reveals (the client was closed, or it is bound to a loop
    it cannot leave for the running one) fails its future, as Motor 3.7.1's did ("attached
    to a different loop" at the ``await``), so that ``asyncio.gather(...,
    return_exceptions=True)`` and ``create_task()`` see it where they see any other error
    of the operation.
    """
    if loop is None:
        raise exc
    future: asyncio.Future[Any] = loop.create_future()
    future.set_exception(exc)
    return future


def _database_of(collection: Any, parent: Any) -> Any:
    """The Motor database of PyMongo's ``collection``, wrapped by Motor's ``parent``: the
    parent's own (a database, or a collection's) if it is that database."""
    name = collection.database.name
    if isinstance(parent, AgnosticDatabase) and parent.delegate.name == name:
        return parent
    if isinstance(parent, AgnosticCollection) and parent.delegate.database.name == name:
        return parent._database
    return parent._client._wrap("Database", collection.database)


class Binding:
    """The event loop a client (and everything made from it) is bound to.

    Bound at construction with ``io_loop=``, otherwise to the loop running the first
    operation (or, for a call made while no loop runs, the thread's current loop).
    Databases, collections and cursors share their client's binding.

    The binding follows the application to another loop (:meth:`_refusal`): once its
    loop is closed, or, on the thread that bound it, while that loop is not running and
    has nothing in flight (a loop per test, a session-wide fixture on a loop of its
    own).  PyMongo's pools, monitors and sessions belong to no loop, so they carry over.
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
        "pinned",
        "thread",
    )
    loop: asyncio.AbstractEventLoop | None
    hub: Hub | None
    pinned: bool
    thread: int
    closed: bool
    forked: bool
    admission: Admission | None

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, admission: Admission | None = None
    ) -> None:
        self.loop = loop
        # Bound by io_loop=: stays on that loop while it is open.
        self.pinned = loop is not None
        # The thread that bound the binding (or moved it) to its loop.
        self.thread = threading.get_ident()
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
        greenlets in PyMongo's pool wait queue: same order, far less memory.  Called
        on the loop's thread while the loop is not running, the call is queued for
        when it runs.
        """
        # hub_for_call(), without a call: this runs for every operation.
        loop = _get_running_loop()
        if loop is not None and loop is self._usable_loop:
            hub: Hub = self.hub  # type: ignore[assignment]
        else:
            try:
                hub = self._check(loop)
            except (ClientClosedError, WrongLoopError) as exc:
                return _failed_on(loop, exc)
            if loop is None:
                return self._call_later(hub, fn, args, kwargs)
        future = OpFuture(loop=hub.loop)
        context = _copy_context()
        admission = self.admission
        if admission is None or TIMEOUT.get() is not None:
            hub.submit(future, context, fn, args, kwargs)
        elif self._waiting or (
            self._active >= admission.limit and self._active >= admission.refresh_limit()
        ):
            if _in_transaction(kwargs):
                # May need the connection its transaction holds: never behind others.
                hub.submit(future, context, fn, args, kwargs)
            else:
                self._waiting.append((fn, args, kwargs, future, context))
        else:
            self._active += 1
            hub.submit(future, context, fn, args, kwargs, self._admit_next)
        return future

    def call_unqueued(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        """Like :meth:`call`, but never waits in the admission queue.

        For operations that continue something holding a connection (the ``getMore``
        of a cursor pinned to its connection): the admitted operations may be the ones
        waiting for that connection.
        """
        loop = _get_running_loop()
        if loop is not None and loop is self._usable_loop:
            hub: Hub = self.hub  # type: ignore[assignment]
        else:
            try:
                hub = self._check(loop)
            except (ClientClosedError, WrongLoopError) as exc:
                return _failed_on(loop, exc)
        future = OpFuture(loop=hub.loop)
        context = _copy_context()
        if loop is None:
            hub.submit_later(future, context, fn, args, kwargs)
        else:
            hub.submit(future, context, fn, args, kwargs)
        return future

    def _call_later(
        self, hub: Hub, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> asyncio.Future[Any]:
        # Runs on the loop's thread while the loop is not running: the call starts on
        # one of the loop's first iterations, through the admission queue as usual.
        future = OpFuture(loop=hub.loop)
        context = _copy_context()
        admission = self.admission
        if admission is None or TIMEOUT.get() is not None:
            hub.submit_later(future, context, fn, args, kwargs)
        elif self._waiting or self._active >= admission.limit:
            self._waiting.append((fn, args, kwargs, future, context))
        else:
            self._active += 1
            hub.submit_later(future, context, fn, args, kwargs, self._admit_next)
        return future

    def _admit_next(self) -> None:
        # Runs on a child that finished an admitted operation (or on the loop, for
        # one cancelled while queued in the hub): hand its slot over.
        waiting = self._waiting
        while waiting:
            fn, args, kwargs, future, context = waiting.popleft()
            if future.done():  # cancelled while waiting
                continue
            # The hub of the loop the call was made on: the binding may have moved
            # since.  A call whose loop is gone never starts (its future stays pending,
            # like every future of a closed loop).
            loop = future.get_loop()
            hub = self.hub if loop is self.loop else get_hub(loop)
            if hub is None or hub._closed or loop.is_closed() or hub.pid != _process[0]:
                continue
            # Started by the hub, on its loop: this may run on a child of another
            # hub (a finished operation), or as another loop closes.
            hub.submit_later(future, context, fn, args, kwargs, self._admit_next)
            return
        self._active -= 1

    def hub_for_call(self) -> Hub:
        """The hub to run an operation on; raises if called from the wrong place."""
        loop = _get_running_loop()
        if loop is not None and loop is self._usable_loop:
            return self.hub  # type: ignore[return-value]
        return self._check(loop)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to ``loop`` (an unbound binding only)."""
        with _binding_lock:
            if self.loop is None:
                self.loop = loop
                self.hub = get_hub(loop)
                self.thread = threading.get_ident()
                if not (self.closed or self.forked):
                    self._usable_loop = loop

    def close(self) -> None:
        self.closed = True
        self._usable_loop = None

    def result_loop(self) -> asyncio.AbstractEventLoop:
        """The loop of a future whose value is known without I/O: the client's, as for
        a call; once the client is closed, the running loop's (what a closed client's
        objects know, they still answer, as in Motor 3.7.1)."""
        if self.closed:
            loop = _get_running_loop()
            if loop is not None:
                return loop
        return self.hub_for_call().loop

    def completed(self, value: Any) -> asyncio.Future[Any]:
        """A future of :meth:`result_loop` whose result is ``value`` already."""
        try:
            loop = self.result_loop()
        except WrongLoopError as exc:
            return _failed_on(_get_running_loop(), exc)
        future: asyncio.Future[Any] = loop.create_future()
        future.set_result(value)
        return future

    def failed(self, exc: BaseException) -> asyncio.Future[Any]:
        """A future of :meth:`result_loop` that failed with ``exc`` already."""
        try:
            loop = self.result_loop()
        except WrongLoopError as wrong:
            return _failed_on(_get_running_loop(), wrong)
        return _failed_on(loop, exc)

    def mark_forked(self) -> None:
        self.forked = True
        self._usable_loop = None

    def _check(self, loop: asyncio.AbstractEventLoop | None) -> Hub:
        # The calls' slow path: the binding's loop is not the running one.  Under a
        # lock, so that two threads starting loops at once cannot both take a client
        # whose loop was closed.
        with _binding_lock:
            if self.forked and (loop is None or loop is self.loop):
                raise ForkedClientError(
                    "This Motor client was bound to an event loop of the parent process "
                    "before fork(); in the child process, use it on an event loop of the "
                    "child's own (or create a new client)"
                )
            if self.closed:
                raise ClientClosedError("Cannot use a Motor client after close()")
            if self.forked and loop is not None:
                return self._leave_the_parent(loop)
            if loop is None:
                return self._check_not_running()
            if self.loop is None or self.loop is loop:
                self.bind(loop)
                return self.hub  # type: ignore[return-value]
            refusal = self._refusal()
            if refusal:
                raise WrongLoopError(
                    f"This Motor client is bound to {self.loop!r} but was used from "
                    f'{loop!r}; it cannot move: {refusal} (see the "Event loops" '
                    "section of Motor's documentation)"
                )
            return self._move(loop)

    def _refusal(self) -> str:
        """Why the binding may not leave its loop for the calling thread's ("" if it
        may): it moves once its loop is closed.  It moves from an open loop only on the
        thread that bound it (asyncio runs one loop per thread at a time), while that
        loop is not running and has nothing in flight, and unless ``io_loop=`` named
        it.  Operations parked on that loop could hold what the new loop's operations
        wait for (the client's admission turns, connections), and would only resume
        when it runs again: a deadlock on this thread."""
        old = self.loop
        hub = self.hub
        assert old is not None and hub is not None
        if old.is_closed():
            return ""
        if self.pinned:
            return "io_loop= named that loop, which is open"
        if self.thread != threading.get_ident():
            return "that loop is open in another thread"
        if old.is_running():
            # A loop run inside it (nest_asyncio lets run_until_complete() nest).
            return "that loop is running on this thread too, under this one"
        if self._active or self._waiting or not hub.idle():
            return "that loop is open and has operations in flight"
        return ""

    def _leave_the_parent(self, loop: asyncio.AbstractEventLoop) -> Hub:
        # In a child process after fork(), on a loop of its own: the parent's loop, its
        # hub and the operations parked there stay behind, untouched (that loop's poller
        # is shared with the parent) and never resumed here.  PyMongo gives the client a
        # new topology and pool in the child; it warns "MongoClient opened before fork".
        self.forked = False
        self._active = 0
        self._waiting.clear()
        return self._move(loop)

    def _move(self, loop: asyncio.AbstractEventLoop) -> Hub:
        self.loop = loop
        self.hub = hub = get_hub(loop)
        self.thread = threading.get_ident()
        self._usable_loop = loop
        self.pinned = False
        return hub

    def _may_queue(self, loop: asyncio.AbstractEventLoop) -> bool:
        """May the calling thread queue a call for ``loop``, the binding's loop, while
        it is not running?  Yes if the loop has not run yet, if this thread ran it
        last, or if it is this thread's current loop (handed over to run here); on a
        loop without the hub's hook, always."""
        hub = self.hub
        assert hub is not None
        if hub._marks_iterations:
            # A loop without the hub's hook (uvloop, say): which thread ran it last is
            # not known; any thread may.
            return True
        clock = hub._clock
        if clock.iteration == 0 or clock.thread is thread_token():
            return True
        # The thread's current loop, without making one (as get_event_loop() would
        # on the main thread).
        local = getattr(asyncio.get_event_loop_policy(), "_local", None)
        return getattr(local, "_loop", None) is loop

    def _check_not_running(self) -> Hub:
        # Called where no event loop runs: allowed on the thread of the client's loop
        # while that loop is not running yet (the call runs when it does).
        target = self.loop
        if target is not None and target.is_closed():
            # Follow the application to the thread's current loop, if it has another.
            current = current_loop()
            if current is not None and not current.is_closed() and not current.is_running():
                self._move(current)
                target = current
        if target is None:
            target = current_loop()
            if target is None:
                raise WrongThreadError(
                    "Motor methods must be called from the thread running the client's "
                    "event loop; no event loop runs in this thread, and none is set for it"
                )
        if target.is_closed():
            raise WrongLoopError(f"The event loop of this Motor client, {target!r}, is closed")
        if target.is_running():
            raise WrongThreadError(
                "Motor methods must be called from the thread running the client's event "
                "loop, inside a coroutine or callback of that loop; this thread is another "
                "one (asyncio.run_coroutine_threadsafe gets a coroutine there)"
            )
        if target is self.loop and not self._may_queue(target):
            # Queued here, the call would start whenever that thread runs its loop, and
            # would race with it over the loop's queues.
            raise WrongThreadError(
                "Motor methods must be called from the thread of the client's event loop; "
                f"{target!r} is not running, and another thread ran it last (that thread, "
                "or one whose current loop it is, may call before it runs again)"
            )
        self.bind(target)
        return self.hub  # type: ignore[return-value]


# Serializes the bindings' slow path (binding, moving): never taken by a call on the
# binding's own loop.
_binding_lock = threading.RLock()


def _in_transaction(kwargs: dict[str, Any]) -> bool:
    """Does the operation run in a transaction (whose session may hold a connection)?

    The session is the ``session`` argument, else the one bound to the caller's context.
    """
    session = kwargs.get("session") if kwargs else None
    if session is None and _BOUND_SESSION is not None:
        session = _BOUND_SESSION.get()
    if session is None:
        return False
    return bool(getattr(session, "in_transaction", False))


class Admission:
    """How many operations of one client may run at once.

    As many as its pools have connections (``maxPoolSize`` per known server), plus a
    margin for operations that need no new connection.  Clients with
    ``waitQueueTimeoutMS`` or ``timeoutMS``, and operations under
    :func:`pymongo.timeout`, are never queued here, so their deadlines cover every
    wait exactly as PyMongo defines them.  Operations in a transaction, and the
    ``getMore`` of a cursor pinned to a connection, are never queued either: they may
    hold the connection that the admitted ones wait for.
    """

    __slots__ = ("_client", "_max_pool_size", "limit")
    limit: int

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
        # None until the first operation for a mongodb+srv:// client: PyMongo resolves
        # the seed list and creates the topology then.
        topology = self._client._topology
        known = 0 if topology is None else len(topology.description.server_descriptions())
        servers = max(1, known)
        self.limit = self._max_pool_size * (servers + 1)
        return self.limit


_bindings: weakref.WeakSet[Binding] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A client bound to an open loop before fork() cannot use that loop in the child:
    # the loop's selector (an epoll instance the parent shares), its hub and the
    # operations parked there belong to the parent.  It moves to a loop of the child's
    # own (Binding._leave_the_parent).  A client never bound, or bound to
    # a loop closed before fork() (module-level setup of a pre-forking server, perhaps
    # with an asyncio.run() of its own, then a first use in each worker), has no open
    # loop state to lose: it binds (or moves) to the child's loop, and PyMongo gives it
    # a new topology in the child.
    global _binding_lock
    _binding_lock = threading.RLock()  # another thread may have held it at fork()
    for binding in list(_bindings):
        if binding.loop is not None and not binding.loop.is_closed():
            binding.mark_forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AgnosticBase:
    """Base of every Motor class: ``delegate`` is the PyMongo object.

    The classes are generic at run time as PyMongo's are (``AsyncIOMotorCollection[MyDoc]``
    is the class itself); the type stubs give them their parameters.
    """

    __pymongo_class__: ClassVar[type | None] = None
    #: The same, under Motor 3.7.1's name.
    __delegate_class__: ClassVar[type | None] = None
    #: Motor 3.7.1's framework-neutral name of the class ("MotorCollection", ...).
    __motor_class_name__: ClassVar[str] = ""
    #: Framework-neutral name used by ``wrap=`` ("Client", "Database", ...).
    _agnostic_name: ClassVar[str] = ""
    _framework: ClassVar[Framework | None] = None

    delegate: Any
    _binding: Binding
    _client: Any

    def __init__(self, delegate: Any) -> None:
        """Wrap ``delegate``, the PyMongo object, as Motor 3.7.1's base class did.

        Applications' subclasses that make the PyMongo object themselves call this
        (``super(AgnosticBaseProperties, self).__init__(delegate)``, as Quart-Motor's
        database and collection do), then set the client (a database's ``_client``) or
        the database (a collection's ``database``); the object's client and binding come
        from those.
        """
        self.delegate = delegate

    def _link(self, name: str) -> Any:
        # ``_client`` and ``_binding`` of an object made through __init__(delegate) alone
        # (see there): from its database or its client.  Called by the subclasses'
        # __getattr__, so only when the attribute is missing.
        own = self.__dict__
        database = own.get("_database")
        client = own.get("_client")
        if client is None and database is not None:
            client = database._client
        if name == "_client" and client is not None:
            return client
        if name == "_binding" and client is not None and client is not self:
            return client._binding
        raise AttributeError(
            f"{type(self).__name__} object has no attribute {name!r}: a subclass that "
            "calls AgnosticBase.__init__(delegate) sets its client or database after it"
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Motor 3.7.1's names for the wrapped class and the Motor class, which code that
        # inspects Motor's classes reads.  A subclass may name its own client class
        # (a MongoClient subclass), which AgnosticClient makes, as Motor 3.7.1 did.
        if "__pymongo_class__" in vars(cls) and "__delegate_class__" not in vars(cls):
            cls.__delegate_class__ = cls.__pymongo_class__
        if cls._agnostic_name:
            cls.__motor_class_name__ = f"Motor{cls._agnostic_name}"
        for name, value in list(vars(cls).items()):
            if isinstance(value, ManifestEntry):
                setattr(cls, name, value.build(cls, name))
        framework = cls.__dict__.get("_framework")
        if framework is not None:
            framework.classes[cls._agnostic_name] = cls

    def __class_getitem__(cls, item: Any) -> Any:
        return cls

    @property
    def _motor_delegate(self) -> Any:
        return self.delegate

    def _wrap(self, agnostic_name: str, obj: Any) -> Any:
        """Wrap a PyMongo object in this framework's Motor class ``agnostic_name``."""
        if obj is None:
            return None
        assert self._framework is not None
        cls = self._framework.classes[agnostic_name]
        own = type(self)
        if own is not cls and issubclass(own, cls):
            # An application's subclass wraps its own kind in itself (with_options(),
            # clone(), wrap()), as Motor 3.7.1's self.__class__ did.
            return own._remake(obj, self)
        return cls._from_delegate(obj, self)

    def _wrap_pymongo(self, obj: Any) -> Any:
        """``wrap()`` of a client, database or collection (see :meth:`AgnosticClient.wrap`)."""
        if isinstance(obj, Cursor) and not isinstance(obj, GridOutCursor):
            # A cursor's parent is the Motor collection of its PyMongo collection.
            parent: AgnosticBase = self
            if not (isinstance(self, AgnosticCollection) and self.delegate == obj.collection):
                parent = self._client._wrap("Collection", obj.collection)
            name = "RawBatchCursor" if isinstance(obj, RawBatchCursor) else "Cursor"
            return parent._wrap(name, obj)
        return self._wrap_first(obj, _WRAPPED)

    def _wrap_first(self, obj: Any, kinds: tuple[tuple[type, str], ...]) -> Any:
        """``obj`` wrapped in the Motor class of the first of ``kinds`` (PyMongo class,
        Motor class name) it is an instance of; else ``obj`` itself."""
        for pymongo_class, name in kinds:
            if isinstance(obj, pymongo_class):
                return self._wrap(name, obj)
        return obj

    def _motor_class(self, agnostic_name: str) -> Any:
        """This framework's Motor class ``agnostic_name``."""
        assert self._framework is not None
        return self._framework.classes[agnostic_name]

    @classmethod
    def _from_delegate(cls, delegate: Any, parent: AgnosticBase) -> Any:
        obj = cls.__new__(cls)
        obj.delegate = delegate
        obj._binding = parent._binding
        obj._client = parent._client
        obj._init_from_parent(parent)
        return obj

    @classmethod
    def _remake(cls, delegate: Any, parent: AgnosticBase) -> Any:
        """``delegate`` in ``cls``, an application's subclass of the class of ``parent``
        (see :meth:`_wrap`); classes with a constructor call it, as Motor 3.7.1 did."""
        return cls._from_delegate(delegate, parent)

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        """Hook: set references to the parent Motor object."""

    def get_io_loop(self) -> Any:
        """The framework's event loop this object's client is bound to (see
        :attr:`AgnosticClient.io_loop`)."""
        return self._client.io_loop

    def __eq__(self, other: object) -> bool:
        if isinstance(other, self.__class__):
            return bool(self.delegate == other.delegate)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.delegate)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.delegate!r})"


#: What ``wrap()`` turns into Motor objects, besides cursors: PyMongo class,
#: framework-neutral Motor class name (subclasses first).
_WRAPPED: tuple[tuple[type, str], ...] = (
    (Database, "Database"),
    (Collection, "Collection"),
    (RawBatchCommandCursor, "RawBatchCommandCursor"),
    (CommandCursor, "CommandCursor"),
    (ChangeStream, "ChangeStream"),
    (ClientSession, "ClientSession"),
)

_WRAP_DOC = """The Motor object, of this {owner}'s framework and client, for ``obj``, a
        PyMongo object of this client: a ``Database``, ``Collection``, cursor, command
        cursor, change stream or ``ClientSession`` ({example}).  Anything else is
        returned unchanged.  Makes no I/O.

        As in Motor 3.7.1.  A cursor's ``collection`` is the Motor collection of its
        PyMongo collection.  PyMongo calls that do I/O (``list_collections()``,
        ``watch()``, ``start_session()``) run in :func:`~motor.sync_code.run_green`.
        """


def _check_first_argument(obj: AgnosticBase, argument: object, kind: str) -> None:
    """TypeError unless ``argument`` is an instance of ``obj``'s framework's Motor class
    ``kind`` (an asyncio collection needs an asyncio database), as in Motor 3.7.1."""
    expected = obj._motor_class(kind)
    if not isinstance(argument, expected):
        raise TypeError(
            f"First argument to {type(obj).__name__} must be {expected.__name__}, not {argument!r}"
        )


def _unknown_name(obj: object, name: str, what: str) -> AttributeError:
    # PyMongo's message: "use client[...]" for a database, "use database[...]" for a
    # collection.
    owner = "client" if what == "database" else "database"
    return AttributeError(
        f"{type(obj).__name__} has no attribute {name!r}. To access the {name} "
        f"{what}, use {owner}[{name!r}]."
    )


def _not_iterable(obj: object) -> TypeError:
    return TypeError(f"'{type(obj).__name__}' object is not iterable")


class _Completed:
    """An awaitable that is already done (``None``); also yieldable in Tornado."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        yield from ()

    def __repr__(self) -> str:
        return "<completed>"


_COMPLETED = _Completed()


class AgnosticBaseProperties(AgnosticBase, GenericDocuments[_DocumentType]):
    """The base of :class:`AgnosticClient`, :class:`AgnosticDatabase` and
    :class:`AgnosticCollection`: the objects with ``codec_options``, ``read_preference``,
    ``read_concern`` and ``write_concern``, as in Motor 3.x (for ``isinstance`` checks).
    Generic in the document type, as in Motor 3.7.1's stubs (``AgnosticBaseProperties[Any]``).
    """


class AgnosticClient(AgnosticBaseProperties[_DocumentType]):
    """A client for one MongoDB deployment, bound to one event loop.

    Takes :class:`~pymongo.mongo_client.MongoClient`'s arguments, plus ``io_loop``
    (the framework's loop; by default the loop running the first operation).  The
    connection is opened on first use (``connect=False`` is the default).
    """

    __pymongo_class__ = MongoClient
    _agnostic_name = "Client"

    # May run server selection: refused on a running loop until the server is known.
    address = ReadOnly(may_wait=True)
    primary = ReadOnly(may_wait=True)
    secondaries = ReadOnly(may_wait=True)
    arbiters = ReadOnly(may_wait=True)
    is_primary = ReadOnly(may_wait=True)
    is_mongos = ReadOnly(may_wait=True)
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
    append_metadata = Delegate()
    eq_props = Delegate()
    list_database_names = Async()
    list_databases = Async(wrap="CommandCursor", coroutine=True)
    server_info = Async()
    drop_database = Async()
    bulk_write = Async(bulk="models")

    def __init__(
        self,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        document_class: type[_DocumentType] | None = None,
        tz_aware: bool | None = None,
        connect: bool | None = None,
        type_registry: TypeRegistry | None = None,
        *,
        io_loop: Any = None,
        **kwargs: Any,
    ) -> None:
        """PyMongo's ``MongoClient`` arguments, and ``io_loop``: the framework's loop to
        bind to (by default the one running at the first operation).  Unlike PyMongo's,
        the client does not connect until its first operation (or ``aconnect()``) unless
        ``connect=True``; with ``document_class=...`` type checkers infer the client's
        document type, as with PyMongo's."""
        framework = self._framework
        if framework is None:
            raise TypeError(
                f"{type(self).__name__} is framework-neutral; use MotorClient or AsyncIOMotorClient"
            )
        loop = None if io_loop is None else framework.loop_from_io_loop(io_loop)
        self._io_loop = io_loop
        # The asyncio loop _io_loop stands for (the binding may move to another).
        self._io_loop_of = loop
        user_driver = kwargs.pop("driver", None)
        if user_driver is not None and not isinstance(user_driver, DriverInfo):
            raise TypeError(
                f"Incorrect type for `driver` {type(user_driver)}; expected value of type "
                "pymongo.driver_info.DriverInfo"
            )
        kwargs.update(client_hooks(user_driver))
        delegate_class = type(self).__delegate_class__
        if not (isinstance(delegate_class, type) and issubclass(delegate_class, MongoClient)):
            raise TypeError(
                f"{type(self).__name__}.__delegate_class__ must be MongoClient or a "
                f"subclass of it, not {delegate_class!r}"
            )
        self.delegate = delegate_class(
            host,
            port,
            document_class,
            tz_aware,
            False if connect is None else connect,
            type_registry,
            driver=DriverInfo("Motor", __version__, framework.platform),
            **kwargs,
        )
        check_client_tls(self.delegate)
        if user_driver is not None:
            self.delegate.append_metadata(user_driver)
        self._binding = Binding(loop, Admission.for_client(self.delegate))

    @property
    def _client(self) -> AgnosticClient[_DocumentType]:
        # The client an object belongs to (AgnosticBase._client): itself, and not as an
        # attribute, which would be a reference cycle: a client dropped without close()
        # is freed at once (PyMongo's "Unclosed MongoClient" warning then, not at some
        # later garbage collection), as in Motor 3.7.1.
        return self

    def aconnect(self) -> asyncio.Future[None]:
        """Connect now instead of on the first operation. Asynchronous.

        Opens the client's monitoring (as PyMongo's ``AsyncMongoClient.aconnect``) and
        waits until a server is known; the properties that need the server
        (:attr:`address`, :attr:`is_primary`, ...) then answer at once.  Raises
        :class:`~pymongo.errors.ServerSelectionTimeoutError` if none is found in time.
        """
        return self._binding.call(_connect, (self.delegate,), {})

    @property
    def io_loop(self) -> Any:
        """The event loop this client is bound to: a Tornado ``IOLoop`` for
        ``MotorClient``, an asyncio loop for ``AsyncIOMotorClient``.

        An unbound client (no ``io_loop=`` and no operation yet) binds to the loop
        running now, else to the thread's current loop, as Motor 3.7.1 did.  A client
        that moved to another loop (see :ref:`event-loops`) reports that one.
        """
        binding = self._binding
        if binding.loop is None:
            loop = current_loop(create=True)
            assert loop is not None
            binding.bind(loop)
        elif binding.loop is not _get_running_loop() or binding.loop.is_closed():
            # Called from another loop: move to it now if the next operation would.
            with contextlib.suppress(MotorMisuseError):
                binding.hub_for_call()
        io_loop = self._io_loop
        if io_loop is None or self._io_loop_of is not binding.loop:
            assert self._framework is not None and binding.loop is not None
            io_loop = self._io_loop = self._framework.io_loop_for(binding.loop)
            self._io_loop_of = binding.loop
        return io_loop

    def wrap(self, obj: Any) -> Any:
        return self._wrap_pymongo(obj)

    wrap.__doc__ = _WRAP_DOC.format(
        owner="client", example="``client.wrap(client.delegate.db)`` is ``client.db``"
    )

    def __getattr__(self, name: str) -> AgnosticDatabase[_DocumentType]:
        if name.startswith("_"):
            raise _unknown_name(self, name, "database")
        return self[name]

    def __getitem__(self, name: str) -> AgnosticDatabase[_DocumentType]:
        return cast("AgnosticDatabase[_DocumentType]", self._wrap("Database", self.delegate[name]))

    def __iter__(self) -> NoReturn:
        raise _not_iterable(self)

    @coroutine_like
    def start_session(
        self,
        causal_consistency: bool | None = None,
        default_transaction_options: Any = None,
        snapshot: bool | None = False,
    ) -> _SessionFuture:
        """Start a logical session. Asynchronous: returns an awaitable future of the
        Motor session, which is also an async context manager::

            async with await client.start_session() as session:
                ...
            async with client.start_session() as session:   # the same
                ...

        Takes the arguments of :meth:`pymongo.mongo_client.MongoClient.start_session`.
        """
        try:
            loop = self._binding.result_loop()
        except WrongLoopError as exc:
            running = _get_running_loop()
            if running is None:
                raise
            future: _SessionFuture = _SessionFuture(loop=running)
            future.set_exception(exc)
            return future
        future = _SessionFuture(loop=loop)
        try:
            # PyMongo makes the session without I/O: the server session is taken from
            # the pool on the first operation.
            session = self.delegate.start_session(
                causal_consistency=causal_consistency,
                default_transaction_options=default_transaction_options,
                snapshot=snapshot,
            )
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(self._wrap("ClientSession", session))
        return future

    @mirror(MongoClient.watch, returns="ChangeStream")
    def watch(self, *args: Any, **kwargs: Any) -> Any:
        """Watch changes on this cluster. Returns a change stream without I/O; the
        ``aggregate`` runs on the first fetch (``async for``, :meth:`next`, ...)."""
        return self._motor_class("ChangeStream")(self, args, kwargs)

    def close(self) -> Awaitable[None]:
        """Close the client: end its server sessions, kill its cursors, close sockets.

        Returns an awaitable; awaiting it is optional (Motor 3.7.1 code calls
        ``client.close()`` without ``await``).  On the client's loop closing starts at
        once and the awaitable completes when the client is closed; cancelling it
        does not stop the closing.  If the loop is closed first (``close()`` last in
        the coroutine given to ``asyncio.run()``), what is left of the closing runs
        then, blocking, as Motor 3.7.1's synchronous ``close()`` did (waiting at most
        5 seconds for the server); for a loop that is stopped but never closed
        (``IOLoop.run_sync()``), at interpreter exit.  Called where no event loop
        runs (after the loop stopped, say) it closes synchronously.  Called on a loop of
        another thread while the client's loop runs in its own, it closes the client
        on the client's loop, and the awaitable completes on the calling loop.  Every
        later operation raises :class:`~motor.errors.ClientClosedError`.
        """
        binding = self._binding
        if binding.closed:
            return _COMPLETED
        loop = _get_running_loop()
        if loop is None:
            binding.close()
            self.delegate.close()
            wake_server_selections(self.delegate._topology)
            return _COMPLETED
        owner = binding.hub
        if (
            loop is not binding.loop
            and owner is not None
            and owner.loop.is_running()
            and not owner.owns_loop_thread()
        ):
            # From a loop of another thread while the client's loop runs in its own:
            # close there, and complete the awaitable on the calling loop.
            binding.close()
            done: concurrent.futures.Future[None] = concurrent.futures.Future()
            try:
                owner.loop.call_soon_threadsafe(self._close_on, owner, done)
            except RuntimeError:  # closed meanwhile: what is left runs as it closed
                return _COMPLETED
            return asyncio.wrap_future(done, loop=loop)
        hub = binding.hub_for_call()
        binding.close()
        return asyncio.shield(self._close_on(hub))

    def _close_on(
        self, hub: Hub, done: concurrent.futures.Future[None] | None = None
    ) -> asyncio.Future[None]:
        # On the loop's thread: close the delegate in a child of ``hub``.
        delegate = self.delegate
        closing = hub.spawn(close_client, delegate)
        # Motor 3.7.1's close() was synchronous, so applications do not await it: if
        # the loop closes (or the interpreter exits) first, what is left of the
        # closing runs then, blocking, instead of leaving the client open.
        hub.finish_on_close(closing, functools.partial(finish_closing, delegate))
        if done is not None:

            def report(future: asyncio.Future[None]) -> None:
                if future.cancelled() or future.exception() is None:
                    done.set_result(None)
                else:
                    done.set_exception(future.exception())

            closing.add_done_callback(report)
        # Shielded by the caller: cancelling the awaitable (a timeout around it) leaves
        # the closing to finish, as Motor 3.7.1's synchronous close() always did;
        # interrupted, it would leave sockets open and sessions not ended.
        return closing

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _connect(client: MongoClient[Any]) -> None:
    # Runs on a child greenlet.
    client._connect()
    client._topology.select_server(any_server_selector, _Op.TEST)


class _SessionFuture(asyncio.Future["AgnosticClientSession"]):
    """The future of a session (``start_session()``), also an async context manager.

    Done when returned (PyMongo makes a session without I/O), and a coroutine to
    ``asyncio.create_task()``, as Motor 3.7.1's ``start_session()`` returned one.
    """

    def send(self, value: Any) -> Any:
        raise StopIteration(self.result())

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._retrieved()
        raise typ if val is None else val

    def close(self) -> None:
        self._retrieved()

    def _retrieved(self) -> None:
        # A task cancelled before its first step leaves a failed start_session() unseen,
        # as a coroutine closed before it ran: no "exception was never retrieved".
        if self.done() and not self.cancelled():
            self.exception()

    async def __aenter__(self) -> AgnosticClientSession:
        session = await self
        return await session.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.result().__aexit__(*exc)


class AgnosticDatabase(AgnosticBaseProperties[_DocumentType]):
    """A MongoDB database: ``client[name]`` or ``client.name``."""

    __pymongo_class__ = Database
    _agnostic_name = "Database"

    name = ReadOnly()
    codec_options = ReadOnly()
    read_preference = ReadOnly()
    read_concern = ReadOnly()
    write_concern = ReadOnly()

    command = Async()
    cursor_command = Async(wrap="CommandCursor", coroutine=True, bind_at_call=True)
    list_collection_names = Async()
    list_collections = Async(wrap="CommandCursor", coroutine=True)
    create_collection = Async(wrap="Collection", coroutine=True)
    drop_collection = Async()
    validate_collection = Async()
    dereference = Async()
    get_collection = Delegate(wrap="Collection")
    with_options = Delegate(wrap="Database")

    def __init__(
        self,
        client: AgnosticClient[_DocumentType],
        name: str,
        *,
        _delegate: Any = None,
        **kwargs: Any,
    ) -> None:
        # _delegate: the PyMongo database to wrap, as in Motor 3.7.1 (see _remake).
        self.delegate = (
            _delegate if _delegate is not None else Database(client.delegate, name, **kwargs)
        )
        self._binding = client._binding
        self._client = client

    @classmethod
    def _remake(cls, delegate: Any, parent: AgnosticBase) -> Any:
        return cls(parent._client, delegate.name, _delegate=delegate)

    @property
    def client(self) -> AgnosticClient[_DocumentType]:
        """The Motor client this database belongs to."""
        return cast("AgnosticClient[_DocumentType]", self._client)

    def wrap(self, obj: Any) -> Any:
        return self._wrap_pymongo(obj)

    wrap.__doc__ = _WRAP_DOC.format(
        owner="database", example="``db.wrap(db.delegate.coll)`` is ``db.coll``"
    )

    def __getattr__(self, name: str) -> AgnosticCollection[_DocumentType]:
        if name.startswith("_"):
            if name in ("_client", "_binding"):
                return self._link(name)  # type: ignore[no-any-return]
            raise _unknown_name(self, name, "collection")
        return self[name]

    def __getitem__(self, name: str) -> AgnosticCollection[_DocumentType]:
        return cast(
            "AgnosticCollection[_DocumentType]", self._wrap("Collection", self.delegate[name])
        )

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(
            f"'{type(self).__name__}' object is not callable. If you meant to call the "
            f"'{self.delegate.name}' method on a '{type(self._client).__name__}' object "
            "it is failing because no such method exists."
        )

    def __iter__(self) -> NoReturn:
        raise _not_iterable(self)

    def __bool__(self) -> NoReturn:
        raise NotImplementedError(
            f"{type(self).__name__} objects do not implement truth value testing or "
            "bool(). Please compare with None instead: database is not None"
        )

    @mirror(Database.aggregate, returns="LatentCommandCursor")
    def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a database-level aggregation (``aggregate: 1``). Returns a command cursor
        without I/O; the command runs on the first fetch.

        Takes the arguments of :meth:`pymongo.database.Database.aggregate`.
        """
        return self._motor_class("LatentCommandCursor")(
            self, "aggregate", (pipeline, *args), kwargs
        )

    @mirror(Database.watch, returns="ChangeStream")
    def watch(self, *args: Any, **kwargs: Any) -> Any:
        """Watch changes on this database. Returns a change stream without I/O; the
        ``aggregate`` runs on the first fetch."""
        return self._motor_class("ChangeStream")(self, args, kwargs)


class AgnosticCollection(AgnosticBaseProperties[_DocumentType]):
    """A MongoDB collection: ``db[name]`` or ``db.name``."""

    __pymongo_class__ = Collection
    _agnostic_name = "Collection"

    name = ReadOnly()
    full_name = ReadOnly()
    codec_options = ReadOnly()
    read_preference = ReadOnly()
    read_concern = ReadOnly()
    write_concern = ReadOnly()

    insert_one = Async(call=_green_insert.insert_one)
    insert_many = Async(bulk="documents", call=_green_bulk.insert_many)
    find_one = Async(call=_green_find.find_one)
    find_one_and_delete = Async()
    find_one_and_replace = Async()
    find_one_and_update = Async()
    update_one = Async()
    update_many = Async()
    replace_one = Async()
    delete_one = Async()
    delete_many = Async()
    bulk_write = Async(bulk="requests")
    count_documents = Async()
    estimated_document_count = Async()
    distinct = Async()
    create_index = Async()
    create_indexes = Async()
    drop_index = Async()
    drop_indexes = Async()
    index_information = Async()
    create_search_index = Async()
    create_search_indexes = Async()
    drop_search_index = Async()
    update_search_index = Async()
    drop = Async()
    rename = Async()
    options = Async()
    find = Delegate(wrap="Cursor")
    find_raw_batches = Delegate(wrap="RawBatchCursor")
    with_options = Delegate(wrap="Collection")

    def __init__(
        self,
        database: AgnosticDatabase[_DocumentType],
        name: str,
        codec_options: Any = None,
        read_preference: Any = None,
        write_concern: Any = None,
        read_concern: Any = None,
        _delegate: Any = None,
        **kwargs: Any,
    ) -> None:
        """A collection of ``database`` (a Motor database), as Motor 3.7.1 makes it.

        ``database[name]``, ``database.get_collection(name, ...)`` and
        ``database.create_collection(name, ...)`` are the usual ways.  The options are
        PyMongo's; PyMongo's ``create`` and collection options (``capped=True``, ...) are
        refused with :class:`TypeError`, as in Motor 3.7.1: they create the collection,
        which is I/O (``await database.create_collection(name, ...)`` does it).
        """
        _check_first_argument(self, database, "Database")
        if kwargs:
            raise TypeError(
                f"{type(self).__name__}() got unexpected keyword arguments "
                f"{', '.join(sorted(kwargs))}: to create a collection with options, "
                "await database.create_collection(name, ...)"
            )
        # _delegate: the PyMongo collection to wrap, as in Motor 3.7.1 (see _remake).
        self.delegate = (
            _delegate
            if _delegate is not None
            else Collection(
                database.delegate,
                name,
                codec_options=codec_options,
                read_preference=read_preference,
                write_concern=write_concern,
                read_concern=read_concern,
            )
        )
        self._binding = database._binding
        self._client = database._client
        self._database = database

    @classmethod
    def _remake(cls, delegate: Any, parent: AgnosticBase) -> Any:
        return cls(_database_of(delegate, parent), delegate.name, _delegate=delegate)

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        self._database = _database_of(self.delegate, parent)

    @property
    def database(self) -> AgnosticDatabase[_DocumentType]:
        """The Motor database this collection belongs to."""
        return self._database

    if not TYPE_CHECKING:  # assignable, as Motor 3.7.1's attribute (the stubs too)

        @database.setter
        def database(self, database: AgnosticDatabase[_DocumentType]) -> None:
            self._database = database

    def wrap(self, obj: Any) -> Any:
        return self._wrap_pymongo(obj)

    wrap.__doc__ = _WRAP_DOC.format(
        owner="collection",
        example="``collection.wrap(collection.delegate.find())`` is a Motor cursor",
    )

    def __getattr__(self, name: str) -> AgnosticCollection[_DocumentType]:
        if name.startswith("_"):
            if name in ("_client", "_binding"):
                return self._link(name)  # type: ignore[no-any-return]
            full_name = f"{self.delegate.name}.{name}"
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r}. To access the "
                f"{full_name} collection, use database[{full_name!r}]."
            )
        return self[name]

    def __getitem__(self, name: str) -> AgnosticCollection[_DocumentType]:
        # The framework's class even in a subclass of the application's, as in Motor 3.7.1.
        return cast(
            "AgnosticCollection[_DocumentType]",
            self._motor_class("Collection")._from_delegate(self.delegate[name], self),
        )

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        full_name = self.delegate.name
        if "." not in full_name:
            method, owner = full_name, type(self._database).__name__
        else:
            method, owner = full_name.rsplit(".", 1)[1], type(self).__name__
        raise TypeError(
            f"'{type(self).__name__}' object is not callable. If you meant to call the "
            f"'{method}' method on a '{owner}' object it is failing because no such "
            "method exists."
        )

    def __iter__(self) -> NoReturn:
        raise _not_iterable(self)

    def __bool__(self) -> NoReturn:
        raise NotImplementedError(
            f"{type(self).__name__} objects do not implement truth value testing or "
            "bool(). Please compare with None instead: collection is not None"
        )

    @mirror(Collection.aggregate, returns="LatentCommandCursor")
    def aggregate(self, pipeline: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an aggregation pipeline. Returns a command cursor without I/O; the
        ``aggregate`` command runs on the first fetch (``to_list``, ``async for``, ...),
        and its errors are raised there."""
        return self._motor_class("LatentCommandCursor")(
            self, "aggregate", (pipeline, *args), kwargs
        )

    @mirror(Collection.aggregate_raw_batches, returns="LatentCommandCursor")
    def aggregate_raw_batches(self, pipeline: Any, *args: Any, **kwargs: Any) -> Any:
        """Like :meth:`aggregate`, but the cursor yields raw BSON batches (``bytes``)."""
        return self._motor_class("LatentCommandCursor")(
            self, "aggregate_raw_batches", (pipeline, *args), kwargs
        )

    @mirror(Collection.list_indexes, returns="LatentCommandCursor")
    def list_indexes(self, *args: Any, **kwargs: Any) -> Any:
        """A cursor over the index documents of this collection; returned without I/O,
        the ``listIndexes`` command runs on the first fetch."""
        return self._motor_class("LatentCommandCursor")(self, "list_indexes", args, kwargs)

    @mirror(Collection.list_search_indexes, returns="LatentCommandCursor")
    def list_search_indexes(self, *args: Any, **kwargs: Any) -> Any:
        """A cursor over the Atlas Search indexes of this collection; returned without
        I/O, the ``$listSearchIndexes`` aggregation runs on the first fetch."""
        return self._motor_class("LatentCommandCursor")(self, "list_search_indexes", args, kwargs)

    @mirror(Collection.watch, returns="ChangeStream")
    def watch(self, *args: Any, **kwargs: Any) -> Any:
        """Watch changes on this collection. Returns a change stream without I/O; the
        ``aggregate`` runs on the first fetch (``async for``, :meth:`next`,
        ``async with``)."""
        return self._motor_class("ChangeStream")(self, args, kwargs)


def bind_arguments(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> inspect.BoundArguments:
    """Check ``args`` and ``kwargs`` against PyMongo's ``function`` (a method, unbound)
    as PyMongo would on the call (a TypeError now rather than on the first fetch)."""
    signature = _signatures.get(function)
    if signature is None:
        signature = _signatures[function] = inspect.signature(function)
    try:
        return signature.bind(None, *args, **kwargs)
    except TypeError as exc:
        message = f"{function.__qualname__}() {exc}"
    # Python's own message for the call ("Collection.list_indexes() takes from 1 to 3
    # positional arguments but 4 were given"), from a function with the same parameters
    # and an empty body.
    try:
        _parameters_of(function)(None, *args, **kwargs)
    except TypeError as exc:
        message = str(exc)
    except Exception:  # not a plain function: Signature.bind's message stays
        pass
    raise TypeError(message)


_signatures: dict[Callable[..., Any], inspect.Signature] = {}


@functools.cache
def _parameters_of(function: Callable[..., Any]) -> Callable[..., None]:
    """A function that does nothing, with ``function``'s parameters, defaults and name
    (``function`` unwrapped: a PyMongo method)."""
    return with_parameters_of(function)


# Motor 3.x's motor.core also held the cursor, session and encryption classes, and code
# imports them from here (``from motor.core import AgnosticCommandCursor``).  Their
# modules import this one, which motor/__init__.py imports first; so they are imported at
# the end, once every name they take from here is defined.
from motor.cursors import (  # noqa: E402
    AgnosticBaseCursor,
    AgnosticChangeStream,
    AgnosticCommandCursor,
    AgnosticCursor,
    AgnosticLatentCommandCursor,
    AgnosticRawBatchCommandCursor,
    AgnosticRawBatchCursor,
)
from motor.encryption import AgnosticClientEncryption  # noqa: E402
from motor.sessions import AgnosticClientSession  # noqa: E402
