"""Motor's classes cover PyMongo's public API, with Motor 3.7.1's call style.

Two oracles, both read from the installed PyMongo, so a new PyMongo release that adds,
drops or changes a method fails here and says what to wrap:

* completeness: every public name of each PyMongo *sync* class exists on the Motor
  class, or is in :data:`EXCLUDED` with the reason;
* call style: whether a Motor method is awaited follows PyMongo's *asynchronous* API
  (``pymongo.asynchronous``: an ``async def`` does I/O), except where Motor 3.7.1's call
  style differs, listed in :data:`MOTOR_STYLE` with the reason.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from gridfs.asynchronous.grid_file import (
    AsyncGridFSBucket,
    AsyncGridIn,
    AsyncGridOut,
    AsyncGridOutCursor,
)
from gridfs.synchronous.grid_file import GridFSBucket, GridIn, GridOut, GridOutCursor
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.command_cursor import AsyncCommandCursor, AsyncRawBatchCommandCursor
from pymongo.asynchronous.cursor import AsyncCursor, AsyncRawBatchCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.asynchronous.encryption import AsyncClientEncryption
from pymongo.asynchronous.mongo_client import AsyncMongoClient
from pymongo.synchronous.change_stream import ChangeStream
from pymongo.synchronous.client_session import ClientSession
from pymongo.synchronous.collection import Collection
from pymongo.synchronous.command_cursor import CommandCursor, RawBatchCommandCursor
from pymongo.synchronous.cursor import Cursor, RawBatchCursor
from pymongo.synchronous.database import Database
from pymongo.synchronous.encryption import ClientEncryption
from pymongo.synchronous.mongo_client import MongoClient

import motor
from motor import motor_asyncio, motor_tornado
from test.framework import Framework
from test.oracle import motor_class

# Motor name (without the framework prefix) -> PyMongo sync class, PyMongo async class.
PAIRS: dict[str, tuple[type, type]] = {
    "Client": (MongoClient, AsyncMongoClient),
    "Database": (Database, AsyncDatabase),
    "Collection": (Collection, AsyncCollection),
    "Cursor": (Cursor, AsyncCursor),
    "RawBatchCursor": (RawBatchCursor, AsyncRawBatchCursor),
    "CommandCursor": (CommandCursor, AsyncCommandCursor),
    "LatentCommandCursor": (CommandCursor, AsyncCommandCursor),
    "RawBatchCommandCursor": (RawBatchCommandCursor, AsyncRawBatchCommandCursor),
    "ChangeStream": (ChangeStream, AsyncChangeStream),
    "ClientSession": (ClientSession, AsyncClientSession),
    "ClientEncryption": (ClientEncryption, AsyncClientEncryption),
    "GridFSBucket": (GridFSBucket, AsyncGridFSBucket),
    "GridIn": (GridIn, AsyncGridIn),
    "GridOut": (GridOut, AsyncGridOut),
    "GridOutCursor": (GridOutCursor, AsyncGridOutCursor),
}

_NEXT = (
    "PyMongo defines it only to raise TypeError ('not iterable'); Motor raises that "
    "from __iter__, and the attribute is the database/collection named 'next', as in "
    "Motor 3.7.1"
)

# (Motor name, attribute) -> why the Motor class does not have it.
EXCLUDED: dict[tuple[str, str], str] = {
    ("Client", "next"): _NEXT,
    ("Database", "next"): _NEXT,
    ("Collection", "next"): _NEXT,
}

_LATENT = "returns its cursor without I/O; the command runs on the first fetch (Motor 3.7.1)"
_KNOWN = (
    "a property, as in Motor 3.7.1: answers from the known topology, and raises "
    "WouldBlockError rather than running server selection on a running loop"
)

# (Motor name, attribute) -> (Motor's kind, why it differs from PyMongo's async API).
MOTOR_STYLE: dict[tuple[str, str], tuple[str, str]] = {
    ("Client", "address"): ("property", _KNOWN),
    ("Client", "arbiters"): ("property", _KNOWN),
    ("Client", "is_mongos"): ("property", _KNOWN),
    ("Client", "is_primary"): ("property", _KNOWN),
    ("Client", "primary"): ("property", _KNOWN),
    ("Client", "secondaries"): ("property", _KNOWN),
    ("Client", "watch"): ("latent", _LATENT),
    ("Client", "start_session"): (
        "await",
        "awaited in Motor 3.7.1 (await client.start_session()); the future is also an "
        "async context manager, for PyMongo's style",
    ),
    ("Database", "aggregate"): ("latent", _LATENT),
    ("Database", "watch"): ("latent", _LATENT),
    ("Collection", "aggregate"): ("latent", _LATENT),
    ("Collection", "aggregate_raw_batches"): ("latent", _LATENT),
    ("Collection", "list_indexes"): ("latent", _LATENT),
    ("Collection", "list_search_indexes"): ("latent", _LATENT),
    ("Collection", "watch"): ("latent", _LATENT),
    ("Cursor", "add_option"): ("sync", "chaining without I/O, as in Motor 3.7.1"),
    ("Cursor", "rewind"): (
        "sync",
        "chaining, as in Motor 3.7.1; an open server cursor is killed by PyMongo's "
        "background thread instead of on the loop",
    ),
    ("ClientSession", "start_transaction"): (
        "sync",
        "Motor 3.7.1: a plain call returning an async context manager (also awaitable)",
    ),
    ("ClientEncryption", "get_keys"): ("await", "awaited in Motor 3.7.1"),
}
MOTOR_STYLE[("GridOut", "seek")] = (
    "sync",
    "a plain call without I/O, as in Motor 3.7.1; a chunk cursor still open is killed in "
    "the background",
)
MOTOR_STYLE[("RawBatchCursor", "add_option")] = MOTOR_STYLE[("Cursor", "add_option")]
for _name in ("RawBatchCursor", "GridOutCursor"):
    MOTOR_STYLE[(_name, "rewind")] = MOTOR_STYLE[("Cursor", "rewind")]


def public_names(cls: type) -> list[str]:
    return sorted(name for name in dir(cls) if not name.startswith("_"))


def pymongo_kind(cls: type, name: str, sync_cls: type | None = None) -> str:
    """'await', 'sync' or 'property' for PyMongo's asynchronous class (for a name only
    the sync class has, such as a file's ``closed``, the sync class's)."""
    try:
        attr = inspect.getattr_static(cls, name)
    except AttributeError:
        if sync_cls is None:
            raise
        attr = inspect.getattr_static(sync_cls, name)
        if not isinstance(attr, property) and not callable(attr):
            return "property"
    if isinstance(attr, property):
        return "await" if inspect.iscoroutinefunction(attr.fget) else "property"
    if isinstance(attr, (staticmethod, classmethod)):
        attr = attr.__func__
    if inspect.iscoroutinefunction(attr):
        return "await"
    return "sync" if callable(attr) else "property"


def _returns_awaitable(function: Any) -> bool:
    annotation = str(inspect.signature(function).return_annotation)
    return annotation.startswith(("Future", "asyncio.Future", "Awaitable", "_SessionFuture"))


def motor_kind(cls: type, name: str) -> str:
    """'await', 'latent', 'sync' or 'property' for a Motor class."""
    attr = inspect.getattr_static(cls, name)
    if isinstance(attr, property):
        return "property"
    if not callable(attr):
        return "property"
    entry = getattr(attr, "_motor_entry", None)
    if entry is not None:
        return "await" if entry.returns in ("future", "coroutine") else "sync"
    if getattr(attr, "_motor_returns", None) in ("LatentCommandCursor", "ChangeStream"):
        return "latent"
    if inspect.iscoroutinefunction(attr) or _returns_awaitable(attr):
        return "await"
    return "sync"


FRAMEWORKS = {"AsyncIOMotor": motor_asyncio, "Motor": motor_tornado}


@pytest.mark.parametrize("prefix", list(FRAMEWORKS))
@pytest.mark.parametrize("name", list(PAIRS))
def test_every_pymongo_name_is_wrapped(prefix: str, name: str) -> None:
    motor_cls = getattr(FRAMEWORKS[prefix], prefix + name)
    sync_cls, _ = PAIRS[name]
    missing = [
        attr
        for attr in public_names(sync_cls)
        if not hasattr(motor_cls, attr) and (name, attr) not in EXCLUDED
    ]
    assert not missing, f"{motor_cls.__name__} lacks PyMongo's {missing}"
    stale = [attr for (cls_name, attr) in EXCLUDED if cls_name == name and hasattr(motor_cls, attr)]
    assert not stale, f"EXCLUDED lists names {motor_cls.__name__} has: {stale}"


@pytest.mark.parametrize("prefix", list(FRAMEWORKS))
@pytest.mark.parametrize("name", list(PAIRS))
def test_call_style_follows_pymongo_async_api(prefix: str, name: str) -> None:
    motor_cls = getattr(FRAMEWORKS[prefix], prefix + name)
    sync_cls, async_cls = PAIRS[name]
    wrong = []
    for attr in public_names(sync_cls):
        if (name, attr) in EXCLUDED:
            continue
        expected, _reason = MOTOR_STYLE.get(
            (name, attr), (pymongo_kind(async_cls, attr, sync_cls), "")
        )
        actual = motor_kind(motor_cls, attr)
        if actual != expected:
            wrong.append(f"{attr}: Motor {actual}, expected {expected}")
    assert not wrong, f"{motor_cls.__name__}: " + "; ".join(wrong)


def test_overrides_are_still_differences() -> None:
    """Every MOTOR_STYLE line is a real difference from PyMongo's async API."""
    for (name, attr), (kind, reason) in MOTOR_STYLE.items():
        _, async_cls = PAIRS[name]
        assert reason
        assert pymongo_kind(async_cls, attr) != kind or kind == "await", (name, attr)


def test_package_exports_the_tornado_classes() -> None:
    for export in motor_tornado.__all__:
        assert getattr(motor, export) is getattr(motor_tornado, export)
    assert set(motor_tornado.__all__) <= set(motor.__all__)
    assert motor.version == motor.get_version_string() == motor.__version__
    assert motor.version_tuple[:2] == tuple(int(p) for p in motor.__version__.split(".")[:2])


def test_both_frameworks_have_the_same_classes() -> None:
    asyncio_names = {n.removeprefix("AsyncIOMotor") for n in motor_asyncio.__all__}
    tornado_names = {n.removeprefix("Motor") for n in motor_tornado.__all__}
    assert asyncio_names == tornado_names == set(PAIRS)


def test_signatures_are_pymongo_s() -> None:
    coll = motor_asyncio.AsyncIOMotorCollection
    find_one = inspect.signature(coll.find_one)
    assert list(find_one.parameters)[:2] == ["self", "filter"]
    assert str(find_one.return_annotation) == "Future[_DocumentType | None]"
    insert_many = inspect.signature(coll.insert_many)
    assert "ordered" in insert_many.parameters and "session" in insert_many.parameters
    watch = inspect.signature(coll.watch)
    assert "full_document" in watch.parameters
    assert watch.return_annotation == "ChangeStream"
    assert "Insert an iterable of documents" in (coll.insert_many.__doc__ or "")


# Motor 3.7.1's framework-neutral classes, by the module it exported them from (its
# motor.core held the cursors, the session and explicit encryption too; libraries import
# them from there, for instance ``from motor.core import AgnosticCommandCursor``), with
# the base each one has there.
MOTOR_371_AGNOSTIC: dict[str, dict[str, str | None]] = {
    "motor.core": {
        "AgnosticBase": None,
        "AgnosticBaseProperties": "AgnosticBase",
        "AgnosticClient": "AgnosticBaseProperties",
        "AgnosticDatabase": "AgnosticBaseProperties",
        "AgnosticCollection": "AgnosticBaseProperties",
        "AgnosticClientSession": "AgnosticBase",
        "AgnosticBaseCursor": "AgnosticBase",
        "AgnosticCursor": "AgnosticBaseCursor",
        "AgnosticRawBatchCursor": "AgnosticCursor",
        "AgnosticCommandCursor": "AgnosticBaseCursor",
        "AgnosticRawBatchCommandCursor": "AgnosticCommandCursor",
        "AgnosticLatentCommandCursor": "AgnosticCommandCursor",
        "AgnosticChangeStream": "AgnosticBase",
        "AgnosticClientEncryption": "AgnosticBase",
    },
    "motor.motor_gridfs": {
        "AgnosticGridFSBucket": None,
        "AgnosticGridIn": None,
        "AgnosticGridOut": None,
        "AgnosticGridOutCursor": "AgnosticCursor",
    },
}


def test_motor_3_7_1_s_agnostic_classes_are_where_it_had_them() -> None:
    import importlib

    from motor import core, motor_gridfs

    for module_name, classes in MOTOR_371_AGNOSTIC.items():
        module = importlib.import_module(module_name)
        for name, base in classes.items():
            cls = getattr(module, name)
            assert name in getattr(module, "__all__", ()), (module_name, name)
            if base is not None:
                assert issubclass(cls, getattr(core, base)), (name, base)
    # Each framework class derives from the class of the same name in motor.core.
    for prefix, module in (("AsyncIOMotor", motor_asyncio), ("Motor", motor_tornado)):
        for export in module.__all__:
            agnostic = "Agnostic" + export.removeprefix(prefix)
            owner = core if hasattr(core, agnostic) else motor_gridfs
            assert issubclass(getattr(module, export), getattr(owner, agnostic)), export
    assert motor_gridfs.DEFAULT_CHUNK_SIZE == 255 * 1024


@pytest.mark.parametrize("prefix", list(FRAMEWORKS))
@pytest.mark.parametrize("name", list(PAIRS))
def test_motor_3_7_1_s_class_attributes(prefix: str, name: str) -> None:
    # The wrapped class and the framework-neutral name, as Motor 3.7.1's classes had them.
    motor_cls = getattr(FRAMEWORKS[prefix], prefix + name)
    assert motor_cls.__delegate_class__ is PAIRS[name][0]
    assert motor_cls.__delegate_class__ is motor_cls.__pymongo_class__
    assert motor_cls.__motor_class_name__ == "Motor" + name


@pytest.mark.parametrize("prefix", list(FRAMEWORKS))
def test_a_client_subclass_names_its_pymongo_client_class(prefix: str) -> None:
    # Motor 3.7.1 made the client's delegate with __delegate_class__.
    class AuditedMongoClient(MongoClient):  # type: ignore[type-arg]
        pass

    class AuditedClient(getattr(FRAMEWORKS[prefix], prefix + "Client")):  # type: ignore[misc]
        __delegate_class__ = AuditedMongoClient

    class SubAuditedClient(AuditedClient):
        pass

    for cls in (AuditedClient, SubAuditedClient):
        client = cls("mongodb://127.0.0.1:1", connect=False)
        try:
            assert type(client.delegate) is AuditedMongoClient
            assert cls.__motor_class_name__ == "MotorClient"
        finally:
            client.delegate.close()

    class Misnamed(getattr(FRAMEWORKS[prefix], prefix + "Client")):  # type: ignore[misc]
        __delegate_class__ = dict

    with pytest.raises(TypeError, match="__delegate_class__ must be MongoClient"):
        Misnamed("mongodb://127.0.0.1:1", connect=False)


_MODULES = [
    "motor.core",
    "motor.cursors",
    "motor.sessions",
    "motor.encryption",
    "motor.motor_gridfs",
    "motor.motor_asyncio",
    "motor.motor_tornado",
    "motor.web",
    "motor.aiohttp",
    "motor.sync_code",
]
_NEED_TORNADO = {"motor.motor_tornado", "motor.web"}


@pytest.mark.parametrize(
    ("module", "tornado"),
    [pytest.param(m, True, id=m) for m in _MODULES]
    + [
        pytest.param(m, False, id=f"{m}-without-tornado")
        for m in _MODULES
        if m not in _NEED_TORNADO
    ],
)
def test_any_module_can_be_imported_first(module: str, tornado: bool) -> None:
    # motor.core and the cursor, session and encryption modules import each other; a
    # fresh interpreter must import any of them first, also where Tornado is missing
    # (motor/__init__.py then imports no framework module).
    import subprocess
    import sys

    hide = "" if tornado else "import sys; sys.modules['tornado'] = None; "
    code = f"{hide}import {module}; import motor.core as c; c.AgnosticCursor"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


async def test_coroutines_never_awaited_are_named_as_in_motor_3_7_1(
    fw: Framework, server: Any
) -> None:
    """A coroutine method called and never awaited is reported ("coroutine '...' was never
    awaited") under PyMongo's name, as Motor 3.7.1's methods (``functools.wraps``) were,
    so warning filters written for Motor 3.7.1 match; Motor 3.7.1's own methods keep
    Motor's name."""
    module = motor_asyncio if fw.name == "asyncio" else motor_tornado
    client = fw.client(server.uri)
    db = client.motor_test
    bucket = getattr(module, motor_class(fw, "GridFSBucket"))(db)
    coroutines = {
        "Database.list_collections": db.list_collections(),
        "Database.create_collection": db.create_collection("never_created"),
        "MongoClient.list_databases": client.list_databases(),
        "GridFSBucket.open_download_stream": bucket.open_download_stream(1),
        "GridFSBucket.open_download_stream_by_name": bucket.open_download_stream_by_name("f"),
        "AgnosticDatabase.cursor_command": db.cursor_command("ping"),
    }
    try:
        assert {c.__qualname__: name for name, c in coroutines.items()} == {
            name: name for name in coroutines
        }
        assert all(inspect.iscoroutine(c) for c in coroutines.values())
    finally:
        for coroutine in coroutines.values():
            coroutine.close()  # never started: no warning
