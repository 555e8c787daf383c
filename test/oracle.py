"""Sync PyMongo as the oracle for Motor's API tests: the twin databases and helpers.

A :class:`Twin` holds the same data in two databases, one used through Motor and one
through sync PyMongo in a worker thread; :meth:`Twin.same` runs one call on both and
compares the outcomes (the result, or the exception's class, message, code and details).
Used by :mod:`test.test_api_client` and :mod:`test.test_api_collection`.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import pymongo
from pymongo import monitoring, results
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.command_cursor import CommandCursor
from pymongo.synchronous.cursor import Cursor
from pymongo.synchronous.database import Database

import motor
import motor.motor_asyncio
import motor.motor_tornado
from test.framework import Framework

__all__ = [
    "MAX_BUSY",
    "MOTOR_CLASSES",
    "PACKAGE_EXPORTS",
    "CommandRecorder",
    "Twin",
    "assert_motor_class",
    "in_thread",
    "motor_class",
    "outcome",
    "plain",
    "uri_with_database",
]

MAX_BUSY = 0.010

_T = TypeVar("_T")

# The Motor classes every framework module has (Motor 3.7.1's names, prefix aside).
MOTOR_CLASSES = [
    "Client",
    "ClientSession",
    "Database",
    "Collection",
    "Cursor",
    "CommandCursor",
    "LatentCommandCursor",
    "RawBatchCursor",
    "RawBatchCommandCursor",
    "ChangeStream",
    "ClientEncryption",
]
# What ``import motor`` offers in Motor 3.7.1 (its motor_tornado.__all__, GridFS aside).
PACKAGE_EXPORTS = [
    "MotorClient",
    "MotorClientSession",
    "MotorDatabase",
    "MotorCollection",
    "MotorCursor",
    "MotorCommandCursor",
    "MotorChangeStream",
    "MotorClientEncryption",
]


# --------------------------------------------------------------------------- helpers


def motor_class(fw: Framework, agnostic_name: str) -> str:
    """The framework's class name: "Collection" -> "AsyncIOMotorCollection"/"MotorCollection"."""
    return ("AsyncIOMotor" if fw.name == "asyncio" else "Motor") + agnostic_name


def assert_motor_class(fw: Framework, obj: Any, agnostic_name: str) -> None:
    """``obj`` is an instance of the framework's Motor class ``agnostic_name``."""
    name = motor_class(fw, agnostic_name)
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    assert type(obj).__name__ == name, f"expected a {name}, got {obj!r}"
    assert type(obj) is getattr(module, name, None), (
        f"{type(obj)!r} is not {module.__name__}.{name}"
    )


async def in_thread(fn: Callable[..., _T]) -> _T:
    """Run blocking ``fn`` (sync PyMongo) in a worker thread, off the loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


def _is_motor(value: Any) -> bool:
    return type(value).__module__.startswith("motor.") and hasattr(value, "delegate")


def _is_motor_cursor(value: Any) -> bool:
    # Not hasattr(value, "to_list"): on a Motor collection that is a sub-collection.
    return _is_motor(value) and "Cursor" in type(value).__name__


def plain(value: Any) -> Any:
    """A comparable form of what a PyMongo or Motor method returned.

    Mappings keep their type and key order; Motor objects compare as their delegates;
    databases and collections as their names; write results as all their fields.
    """
    if _is_motor(value):
        value = value.delegate
    if isinstance(value, Mapping):
        return (type(value).__name__, [(k, plain(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value) if type(value) in (list, tuple) else value
    if isinstance(value, (set, frozenset)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, Database):
        return ("Database", value.name, plain(value.codec_options))
    if isinstance(value, Collection):
        return ("Collection", value.full_name)
    if isinstance(value, results.InsertOneResult):
        return ("InsertOneResult", value.acknowledged, value.inserted_id)
    if isinstance(value, results.InsertManyResult):
        return ("InsertManyResult", value.acknowledged, value.inserted_ids)
    if isinstance(value, results.UpdateResult):
        return (
            "UpdateResult",
            plain(value.raw_result),
            value.matched_count,
            value.modified_count,
            value.upserted_id,
        )
    if isinstance(value, results.DeleteResult):
        return ("DeleteResult", plain(value.raw_result), value.deleted_count)
    if isinstance(value, results.BulkWriteResult):
        return ("BulkWriteResult", plain(value.bulk_api_result), plain(value.upserted_ids))
    return value


def outcome(fn: Callable[[], Any]) -> tuple[Any, ...]:
    """("returned", plain value) or ("raised", class, message, code, details) of ``fn()``."""
    try:
        value = fn()
    except Exception as exc:
        return _raised(exc)
    return ("returned", plain(value))


def _raised(exc: BaseException) -> tuple[Any, ...]:
    details = getattr(exc, "details", None)
    return ("raised", type(exc), str(exc), getattr(exc, "code", None), plain(details))


def _renamed(value: Any, old: str, new: str) -> Any:
    """``value`` with the name ``old`` replaced by ``new`` in every string."""
    if isinstance(value, str):
        return value.replace(old, new)
    if type(value) in (list, tuple):
        return type(value)(_renamed(v, old, new) for v in value)
    return value


def _depth(tb: TracebackType | None) -> int:
    depth = 0
    while tb is not None:
        depth += 1
        tb = tb.tb_next
    return depth


def uri_with_database(uri: str, name: str) -> str:
    """``uri`` with ``name`` as its default database (options kept)."""
    base, _, query = uri.partition("?")
    scheme, _, rest = base.partition("://")
    hosts = rest.split("/", 1)[0]
    return f"{scheme}://{hosts}/{name}" + (f"?{query}" if query else "")


class CommandRecorder(monitoring.CommandListener):
    """Records the commands a client starts, in order."""

    def __init__(self) -> None:
        self.events: list[monitoring.CommandStartedEvent] = []

    def names(self) -> list[str]:
        return [event.command_name for event in self.events]

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.events.append(event)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


class Twin:
    """A Motor database and, for the oracle, a sync PyMongo database with the same data.

    ``async with Twin(fw, server, "tag") as tw``: ``tw.client``/``tw.db``/``tw.coll`` are the
    Motor objects (database ``tw.name``, collection "c"); ``tw.sync_client``/``tw.sync_db``/
    ``tw.sync_coll`` the PyMongo ones on database ``tw.sync_name``.  :meth:`same` runs one
    call on both and asserts the outcomes are equal (the sync database's name is replaced by
    the Motor one in messages first).  Both databases are dropped at exit.
    """

    def __init__(self, fw: Framework, server: Any, tag: str, **client_kwargs: Any) -> None:
        self.fw = fw
        self.server = server
        base = f"api_{tag[:24]}_{uuid.uuid4().hex[:8]}_"
        self.name = base + "m"
        self.sync_name = base + "s"
        self.client = fw.client(server.uri, **client_kwargs)
        self.db = self.client[self.name]
        self.coll = self.db.c
        self.sync_client: pymongo.MongoClient[Any] | None = None
        self._sync_session: Any = None

    async def __aenter__(self) -> Twin:
        self.sync_client = await in_thread(lambda: pymongo.MongoClient(self.server.uri))
        return self

    async def __aexit__(self, *exc: object) -> None:
        sync_client = self.sync_client
        assert sync_client is not None

        def cleanup() -> None:
            try:
                if self._sync_session is not None:
                    self._sync_session.end_session()
                sync_client.drop_database(self.name)
                sync_client.drop_database(self.sync_name)
            finally:
                sync_client.close()

        await in_thread(cleanup)

    @property
    def sync_db(self) -> Any:
        assert self.sync_client is not None
        return self.sync_client[self.sync_name]

    @property
    def sync_coll(self) -> Any:
        return self.sync_db.c

    async def seed(self, docs: list[dict[str, Any]], name: str = "c") -> None:
        """Insert ``docs`` into collection ``name`` of both databases (with sync PyMongo)."""

        def insert() -> None:
            assert self.sync_client is not None
            for db_name in (self.name, self.sync_name):
                self.sync_client[db_name][name].insert_many([dict(d) for d in docs])

        await in_thread(insert)

    async def sync(self, fn: Callable[..., Any]) -> Any:
        """``fn(sync_client)`` in a worker thread."""
        return await in_thread(lambda: fn(self.sync_client))

    async def same(
        self,
        fn: Callable[..., Any],
        *,
        on: str = "coll",
        session: Any = None,
        call: str = "await",
        expect_class: str | None = None,
        fix: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run ``fn(target)`` on Motor and on sync PyMongo; assert equal outcomes.

        ``on``: "coll", "db" or "client".  With ``session`` (a Motor or PyMongo session),
        ``fn(target, session)`` instead, and the oracle gets a sync session of its own.
        ``call``: "await" (Motor returns an awaitable), "cursor" (Motor returns a cursor
        without I/O) or "plain" (no I/O).  Cursors are read to the end with ``to_list``
        (``list`` for PyMongo).  ``expect_class``: the agnostic Motor class of the
        (awaited) return value.  ``fix`` adjusts both values before comparing.
        Returns Motor's value (cursors: the list read), or the exception it raised.
        """
        motor_target, sync_target = {
            "coll": (self.coll, self.sync_coll),
            "db": (self.db, self.sync_db),
            "client": (self.client, self.sync_client),
        }[on]

        def run_sync() -> tuple[Any, ...]:
            args: tuple[Any, ...] = ()
            if session is not None:
                if self._sync_session is None:
                    assert self.sync_client is not None
                    self._sync_session = self.sync_client.start_session()
                args = (self._sync_session,)

            def call_sync() -> Any:
                value = fn(sync_target, *args)
                if isinstance(value, (Cursor, CommandCursor)):
                    value = list(value)
                return fix(value) if fix is not None else value

            return outcome(call_sync)

        expected = _renamed(await in_thread(run_sync), self.sync_name, self.name)

        args = () if session is None else (session,)
        try:
            returned = fn(motor_target, *args)
            if call == "await":
                assert inspect.isawaitable(returned), f"{returned!r} should be awaitable"
                value = await returned
            else:
                assert not inspect.isawaitable(returned), f"{returned!r} should not be awaited"
                value = returned
            if expect_class is not None:
                assert_motor_class(self.fw, value, expect_class)
            if _is_motor_cursor(value):
                value = await value.to_list()
            if fix is not None:
                value = fix(value)
        except AssertionError:
            raise
        except Exception as exc:
            got = _raised(exc)
            assert got == expected, f"Motor raised {exc!r}; sync PyMongo: {expected}"
            return exc
        got = ("returned", plain(value))
        assert got == expected, f"Motor: {got}; sync PyMongo: {expected}"
        return value

    async def motor_session(self) -> Any:
        """A Motor session of ``self.client`` (ended by the test)."""
        session = await self.client.start_session()
        assert_motor_class(self.fw, session, "ClientSession")
        return session


# --------------------------------------------------------------------------- the package
