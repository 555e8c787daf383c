"""Client sessions and transactions, framework-neutral (see :mod:`motor.core`).

A Motor session wraps PyMongo's :class:`~pymongo.client_session.ClientSession`.
Starting a transaction makes no I/O (PyMongo sends ``startTransaction`` with the first
operation), so :meth:`AgnosticClientSession.start_transaction` is a plain call; commit,
abort and ending the session run in child greenlets.

:meth:`AgnosticClientSession.with_transaction` cannot run PyMongo's own
``with_transaction``: its callback is the user's coroutine function, which runs on the
loop, not in a child.  It applies the same rules (PyMongo 4.20's
``ClientSession.with_transaction``), waiting between attempts with ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

from pymongo import client_session_shared as _shared
from pymongo.errors import PyMongoError
from pymongo.synchronous.client_session import ClientSession

from motor.core import AgnosticBase, AgnosticClient
from motor.green.pool import session_ends_without_io
from motor.metaprogramming import Delegate, ReadOnly, mirror

if TYPE_CHECKING:
    from typing import Self

__all__ = ["AgnosticClientSession"]

_T = TypeVar("_T")


class _TransactionContext:
    """What :meth:`AgnosticClientSession.start_transaction` returns: an async context
    manager that commits the transaction on a normal exit and aborts it on an
    exception.  Also awaitable (to itself), for ``async with await
    session.start_transaction():`` as PyMongo's asynchronous API writes it."""

    __slots__ = ("_session",)

    def __init__(self, session: AgnosticClientSession) -> None:
        self._session = session

    def __await__(self) -> Generator[Any, None, _TransactionContext]:
        # A generator that returns at once: awaiting gives this context.
        yield from ()
        return self

    async def __aenter__(self) -> _TransactionContext:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        session = self._session
        if session.in_transaction:
            # After the client's close(), a transaction that has sent nothing ends
            # without I/O, so an exception of the block goes on unhidden.
            if exc_val is None:
                await session.commit_transaction()
            else:
                await session.abort_transaction()


#: The transaction states in which PyMongo's ``commit_transaction()`` and
#: ``abort_transaction()`` send a command; in the others they only change the state or
#: raise ``InvalidOperation``.
_COMMIT_SENDS = frozenset({_shared._TxnState.IN_PROGRESS, _shared._TxnState.COMMITTED})
_ABORT_SENDS = frozenset({_shared._TxnState.IN_PROGRESS})


def _ends_without_io(session: ClientSession) -> bool:
    """Would PyMongo's ``session.end_session()`` do no I/O?  Outside a transaction (see
    :func:`~motor.green.pool.session_ends_without_io`), or in one that has sent nothing
    yet: its abort only changes the transaction's state."""
    return session_ends_without_io(session) or _sent_nothing(session)


def _sent_nothing(session: ClientSession) -> bool:
    """Is ``session`` in a transaction that has sent nothing yet?  Committing or aborting
    it then only changes its state."""
    transaction = session._transaction
    return transaction.state is _shared._TxnState.STARTING and transaction.conn_mgr is None


class _BoundSession:
    """What :meth:`AgnosticClientSession.bind` returns: while entered, operations in
    this context (and tasks it starts) use the session implicitly."""

    __slots__ = ("_context", "_end_session", "_session")

    def __init__(self, session: AgnosticClientSession, end_session: bool) -> None:
        self._session = session
        self._end_session = end_session
        # PyMongo's own bound context, without its ending (that needs I/O).
        self._context = session.delegate.bind(end_session=False)

    def _enter(self) -> AgnosticClientSession:
        self._context.__enter__()
        return self._session

    async def __aenter__(self) -> AgnosticClientSession:
        return self._enter()

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self._context.__exit__(exc_type, exc_val, exc_tb)
        if self._end_session:
            await self._session.end_session()

    def __enter__(self) -> AgnosticClientSession:
        return self._enter()

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self._context.__exit__(exc_type, exc_val, exc_tb)
        if self._end_session:
            session = self._session
            if session_ends_without_io(session.delegate):
                # Returning the server session to the client's pool: no I/O, so the
                # session has ended when the block exits, as PyMongo's has.
                session.delegate.end_session()
            else:
                # Aborting a transaction or releasing a pinned connection is I/O: it
                # runs in a child, not awaited.
                session.end_session()


class AgnosticClientSession(AgnosticBase):
    """A session for ordering sequential operations and for transactions.

    Get one with ``await client.start_session()``; end it with ``async with``::

        async with await client.start_session() as session:
            async with session.start_transaction():
                await collection.insert_one(doc, session=session)
    """

    __pymongo_class__ = ClientSession
    _agnostic_name = "ClientSession"

    def __init__(self, delegate: ClientSession, motor_client: AgnosticClient[Any]) -> None:
        """Motor 3.7.1's constructor: PyMongo's session ``delegate`` of
        ``motor_client``'s PyMongo client.  ``await client.start_session()`` is the usual
        way to get one."""
        if not isinstance(delegate, ClientSession):
            raise TypeError(
                f"First argument to {type(self).__name__} must be a PyMongo ClientSession, "
                f"not {delegate!r}"
            )
        expected = self._motor_class("Client")
        if not isinstance(motor_client, expected) or delegate.client is not motor_client.delegate:
            raise TypeError(
                f"Second argument to {type(self).__name__} must be the {expected.__name__} "
                f"whose PyMongo client started the session, not {motor_client!r}"
            )
        self.delegate = delegate
        self._binding = motor_client._binding
        self._client = motor_client
        self._init_from_parent(motor_client)

    cluster_time = ReadOnly()
    has_ended = ReadOnly()
    in_transaction = ReadOnly()
    options = ReadOnly()
    operation_time = ReadOnly()
    session_id = ReadOnly()
    advance_cluster_time = Delegate()
    advance_operation_time = Delegate()

    # A transaction may hold a connection (load-balanced mode) until it ends, and the
    # operations admitted before these may be waiting for it: never queued.
    @mirror(ClientSession.commit_transaction, returns="Future[None]")
    def commit_transaction(self) -> asyncio.Future[None]:
        """Commit the transaction. Asynchronous: returns an awaitable future.  After the
        client's ``close()``, what PyMongo answers without I/O is still answered, as in
        Motor 3.7.1: a transaction that has sent nothing commits, and misuse (no
        transaction, an aborted one) raises PyMongo's ``InvalidOperation``."""
        return self._end_transaction(self.delegate.commit_transaction, _COMMIT_SENDS)

    @mirror(ClientSession.abort_transaction, returns="Future[None]")
    def abort_transaction(self) -> asyncio.Future[None]:
        """Abort the transaction. Asynchronous: returns an awaitable future.  After the
        client's ``close()``, what PyMongo answers without I/O is still answered, as in
        Motor 3.7.1: a transaction that has sent nothing aborts, and misuse (no
        transaction, an aborted or committed one) raises PyMongo's
        ``InvalidOperation``."""
        return self._end_transaction(self.delegate.abort_transaction, _ABORT_SENDS)

    def _end_transaction(
        self, end: Callable[[], None], sends: frozenset[int]
    ) -> asyncio.Future[None]:
        binding = self._binding
        delegate = self.delegate
        if binding.closed and (delegate.has_ended or delegate._transaction.state not in sends):
            # PyMongo changes the transaction's state or raises, without I/O.
            try:
                end()
            except PyMongoError as exc:
                return binding.failed(exc)
            return binding.completed(None)
        return binding.call_unqueued(end, (), {})

    @mirror(ClientSession.end_session, returns="Future[None]")
    def end_session(self) -> asyncio.Future[None]:
        """End the session (abort its transaction if one is in progress). Asynchronous:
        returns an awaitable future.  After the client's ``close()`` a session outside a
        transaction, or in one that has sent nothing, still ends, as in Motor 3.7.1 and
        PyMongo (it needs no I/O)."""
        binding = self._binding
        if binding.closed and _ends_without_io(self.delegate):
            self.delegate.end_session()
            return binding.completed(None)
        return binding.call_unqueued(self.delegate.end_session, (), {})

    @property
    def client(self) -> AgnosticClient[Any]:
        """The Motor client this session was created from."""
        return cast("AgnosticClient[Any]", self._client)

    def start_transaction(
        self,
        read_concern: Any = None,
        write_concern: Any = None,
        read_preference: Any = None,
        max_commit_time_ms: int | None = None,
    ) -> _TransactionContext:
        """Start a multi-statement transaction; takes the arguments of
        :class:`~pymongo.client_session.TransactionOptions`.  No I/O: the first
        operation with ``session=`` this session starts it on the server.

        Returns an async context manager that commits on a normal exit and aborts on
        an exception::

            async with session.start_transaction():
                await collection.insert_one(doc, session=session)
        """
        self.delegate.start_transaction(
            read_concern=read_concern,
            write_concern=write_concern,
            read_preference=read_preference,
            max_commit_time_ms=max_commit_time_ms,
        )
        return _TransactionContext(self)

    async def with_transaction(
        self,
        coro: Callable[[AgnosticClientSession], Awaitable[_T]],
        read_concern: Any = None,
        write_concern: Any = None,
        read_preference: Any = None,
        max_commit_time_ms: int | None = None,
    ) -> _T:
        """Run ``await coro(session)`` in a transaction and commit it, with retries.

        The rules are PyMongo 4.20's ``ClientSession.with_transaction``: when ``coro``
        or the commit raises an error labelled ``TransientTransactionError``, the
        transaction is aborted and the whole of it retried; when the commit raises one
        labelled ``UnknownTransactionCommitResult`` (and not ``MaxTimeMSExpired``), the
        commit is retried.  Retries of the whole transaction wait a jittered backoff
        (``asyncio.sleep``: the loop keeps running).  Retrying stops 120 seconds after
        the first attempt (or when :func:`pymongo.timeout`'s deadline passes); then,
        as Motor 3.7.1 documents, the last error is raised as it is (PyMongo 4.20
        would raise a timeout error made from it).

        ``coro`` may be awaited several times: keep its side effects inside the
        transaction.  If it ends the transaction itself (commit or abort), no commit
        follows.  Returns what the last call of ``coro`` returned.
        """
        start_time = time.monotonic()
        retry = 0
        last_error: BaseException | None = None
        while True:
            if retry:
                backoff = random.random() * min(
                    _shared._BACKOFF_INITIAL * (1.5**retry), _shared._BACKOFF_MAX
                )
                if not _shared._within_time_limit(start_time, backoff):
                    assert last_error is not None
                    raise last_error
                await asyncio.sleep(backoff)
            retry += 1
            self.start_transaction(read_concern, write_concern, read_preference, max_commit_time_ms)
            try:
                result = await coro(self)
            except BaseException as exc:
                last_error = exc
                if self.in_transaction:
                    await self.abort_transaction()
                if (
                    isinstance(exc, PyMongoError)
                    and exc.has_error_label("TransientTransactionError")
                    and _shared._within_time_limit(start_time)
                ):
                    continue
                raise
            if not self.in_transaction:
                # The callback ended the transaction itself.
                return result
            while True:
                try:
                    await self.commit_transaction()
                except PyMongoError as exc:
                    last_error = exc
                    if (
                        exc.has_error_label("UnknownTransactionCommitResult")
                        and not _shared._max_time_expired_error(exc)
                        and _shared._within_time_limit(start_time)
                    ):
                        continue  # retry the commit
                    if exc.has_error_label(
                        "TransientTransactionError"
                    ) and _shared._within_time_limit(start_time):
                        break  # retry the whole transaction
                    raise
                return result

    def bind(self, end_session: bool = True) -> _BoundSession:
        """Make this session the implicit session of operations in a context.

        ::

            async with session.bind():
                await collection.insert_one(doc)   # session=session implicitly

        With ``end_session`` (the default) the session ends when the context exits.
        A plain ``with`` block cannot wait: outside a transaction the session has
        ended when the block exits (as PyMongo's does); in a transaction the abort
        that ending needs runs in the background, and ``has_ended`` turns true when
        it is over.
        Tasks created inside the context inherit the binding, as with any
        :mod:`contextvars` value.
        """
        return _BoundSession(self, end_session)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.end_session()

    def __enter__(self) -> NoReturn:
        raise AttributeError(
            "Use Motor sessions like 'async with await client.start_session()', not 'with'"
        )

    def __exit__(self, *exc: object) -> None:
        pass
