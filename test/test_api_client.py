"""The client and database API against the test server, with sync PyMongo as the oracle.

Every awaited method is called twice with the same arguments: on a Motor object and, in a
worker thread, on the matching sync PyMongo object of a *twin* database that holds the same
data (see :class:`Twin`).  What comes back must be equal: the same result, or the same
exception class with the same message, code and details.  The tests also check what Motor
adds: the call style (awaited or not), the Motor classes of returned objects, Motor objects
accepted as arguments, and the loop rules (which loop, which thread, closed clients).

:mod:`test.test_api_collection` covers the collection API with the same helpers.  What
FerretDB cannot do (transactions, change streams, search indexes, client ``bulk_write``) is
tested with MockupDB elsewhere.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import re
import socket
import sys
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

import pymongo
import pytest
import tornado
from bson import SON, DBRef
from bson.codec_options import CodecOptions
from pymongo import ReadPreference, results
from pymongo.driver_info import DriverInfo
from pymongo.errors import ConfigurationError, InvalidOperation, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

import motor
import motor.motor_asyncio
import motor.motor_tornado
from motor.errors import ClientClosedError, WrongThreadError
from test.framework import Framework
from test.oracle import (
    MAX_BUSY,
    MOTOR_CLASSES,
    PACKAGE_EXPORTS,
    CommandRecorder,
    Twin,
    _depth,
    _renamed,
    assert_motor_class,
    in_thread,
    motor_class,
    plain,
    uri_with_database,
)


def test_package_exports_the_tornado_classes() -> None:
    for agnostic_name in MOTOR_CLASSES:
        for module, prefix in (
            (motor.motor_tornado, "Motor"),
            (motor.motor_asyncio, "AsyncIOMotor"),
        ):
            name = prefix + agnostic_name
            cls = getattr(module, name, None)
            assert cls is not None, f"{module.__name__}.{name} is missing"
            assert cls.__name__ == name
    # Motor 3.7.1 re-exports motor_tornado.__all__ from the package.
    for name in PACKAGE_EXPORTS:
        assert name in motor.motor_tornado.__all__, name
        assert getattr(motor, name, None) is getattr(motor.motor_tornado, name), f"motor.{name}"


def test_version() -> None:
    assert isinstance(motor.version, str)
    assert motor.get_version_string() == motor.version
    match = re.match(r"(\d+)\.(\d+)\.(\d+)(.*)$", motor.version)
    assert match, motor.version
    assert isinstance(motor.version_tuple, tuple)
    assert motor.version_tuple[:3] == tuple(int(part) for part in match.groups()[:3])
    # Motor 3.7.1 keeps a suffix ("3.7.1.dev0") as a fourth element.
    rest = [str(part).lstrip(".") for part in motor.version_tuple[3:]]
    assert rest == ([match[4].lstrip(".")] if match[4] else [])
    # Motor 3.7.1's motor._version has the same names (pyodmongo reads
    # motor._version.version).
    version_module = importlib.import_module("motor._version")
    assert version_module.version == motor.version == motor.__version__
    assert version_module.version_tuple == motor.version_tuple
    assert version_module.get_version_string() == motor.version
    assert version_module.get_version_tuple("3.7.1") == (3, 7, 1)
    assert version_module.get_version_tuple("3.7.1.dev0") == (3, 7, 1, ".dev0")
    assert version_module.get_version_tuple("4.1") == (4, 1)
    with pytest.raises(ValueError, match="Could not parse version"):
        version_module.get_version_tuple("x")


# --------------------------------------------------------------------------- loops and threads


async def test_io_loop(fw: Framework, server: Any) -> None:
    from tornado.ioloop import IOLoop

    running = asyncio.get_running_loop()
    bound = fw.client(server.uri)  # fw.client binds Tornado clients to IOLoop.current()
    unbound = fw.Client(server.uri)
    fw.clients.append(unbound)
    if fw.name == "asyncio":
        explicit = fw.client(server.uri, io_loop=running)
        expected: Any = running
        for client in (bound, unbound, explicit):
            assert client.io_loop is expected
            assert client.get_io_loop() is expected
    else:
        expected = IOLoop.current()
        # asyncio_loop is an attribute of the asyncio-based IOLoop subclasses only.
        assert isinstance(expected, IOLoop) and expected.asyncio_loop is running  # type: ignore[attr-defined]
        for client in (bound, unbound):
            assert isinstance(client.io_loop, IOLoop)
            assert client.io_loop is expected
            assert client.get_io_loop() is expected
    # Still the same after an operation bound the unbound client.
    assert (await unbound.admin.command("ping"))["ok"] == 1
    assert unbound.io_loop is expected


def test_calls_before_the_asyncio_loop_runs(server: Any) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    name = f"api_before_asyncio_{uuid.uuid4().hex[:8]}"
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    clients: list[Any] = []
    try:
        bound: AsyncIOMotorClient[Any] = AsyncIOMotorClient(server.uri, io_loop=loop)
        unbound: AsyncIOMotorClient[Any] = AsyncIOMotorClient(server.uri)
        clients += [bound, unbound]
        # Module-level style: no loop runs yet, the calls still return futures.
        futures = [
            bound[name].coll.insert_one({"_id": 1}),
            unbound[name].coll.insert_one({"_id": 2}),
        ]
        for future in futures:
            assert inspect.isawaitable(future) and not future.done()
        inserted = [loop.run_until_complete(future) for future in futures]
        assert [type(r) for r in inserted] == [results.InsertOneResult] * 2
        assert [r.inserted_id for r in inserted] == [1, 2]
        assert bound.io_loop is loop and unbound.io_loop is loop
        docs = loop.run_until_complete(unbound[name].coll.find().sort("_id").to_list())
        assert docs == [{"_id": 1}, {"_id": 2}]
        loop.run_until_complete(bound.drop_database(name))
    finally:
        for client in clients:
            client.close()  # no running loop: closes synchronously
        asyncio.set_event_loop(None)
        loop.close()
        with pymongo.MongoClient(server.uri) as sync_client:  # type: pymongo.MongoClient[Any]
            sync_client.drop_database(name)


def test_calls_before_the_tornado_loop_runs(server: Any) -> None:
    from tornado.ioloop import IOLoop

    from motor.motor_tornado import MotorClient

    name = f"api_before_tornado_{uuid.uuid4().hex[:8]}"
    io_loop = IOLoop()  # becomes the current IOLoop, as in a Tornado app's main module
    clients: list[Any] = []
    try:
        unbound: MotorClient[Any] = MotorClient(server.uri)  # "module level"
        bound: MotorClient[Any] = MotorClient(server.uri, io_loop=io_loop)
        clients += [unbound, bound]
        futures = [
            unbound[name].coll.insert_one({"_id": 1}),
            bound[name].coll.insert_one({"_id": 2}),
        ]
        for future in futures:
            assert inspect.isawaitable(future) and not future.done()

        async def main() -> Any:
            inserted = [await future for future in futures]
            docs = await bound[name].coll.find().sort("_id").to_list()
            await unbound.drop_database(name)
            return inserted, docs

        inserted, docs = IOLoop.current().run_sync(main)
        assert [type(r) for r in inserted] == [results.InsertOneResult] * 2
        assert [r.inserted_id for r in inserted] == [1, 2]
        assert docs == [{"_id": 1}, {"_id": 2}]
        assert unbound.io_loop is io_loop and bound.io_loop is io_loop
    finally:
        for client in clients:
            client.close()
        io_loop.close(all_fds=False)
        asyncio.set_event_loop(None)
        with pymongo.MongoClient(server.uri) as sync_client:  # type: pymongo.MongoClient[Any]
            sync_client.drop_database(name)


async def test_call_from_another_thread(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.api_thread
    await coll.find_one()

    def from_thread() -> BaseException | None:
        try:
            coll.find_one()
        except BaseException as exc:
            return exc
        return None

    error = await in_thread(from_thread)
    assert isinstance(error, WrongThreadError), error
    fw.probe.assert_below(MAX_BUSY)


async def test_calls_after_close(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    coll = client.motor_test.api_closed
    await coll.find_one()
    await client.close()
    with pytest.raises(ClientClosedError) as info:
        await coll.find_one()
    assert isinstance(info.value, InvalidOperation)  # also PyMongo's class for this
    with pytest.raises(ClientClosedError):
        await client.list_database_names()
    # close() takes effect at once, before its future is awaited (or if it never is).
    other = fw.client(server.uri)
    await other.admin.command("ping")
    closing = other.close()
    with pytest.raises(ClientClosedError):
        await other.admin.command("ping")
    assert inspect.isawaitable(closing)
    await closing  # let the background close finish before the test ends


async def test_async_with_client(fw: Framework, server: Any) -> None:
    async with fw.client(server.uri) as client:
        assert_motor_class(fw, client, "Client")
        assert (await client.admin.command("ping"))["ok"] == 1
    with pytest.raises(ClientClosedError):
        await client.admin.command("ping")


# --------------------------------------------------------------------------- attribute access


async def test_unknown_method_calls_raise_type_error(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    db = client.motor_test
    coll = db.api_unknown
    for obj in (client, db, coll):
        with pytest.raises(TypeError, match="no such method exists") as info:
            obj.foo()
        assert "foo" in str(info.value)
        # Raised at once, not after recursing through __getattr__/__call__.
        assert _depth(info.value.__traceback__) <= 5, _depth(info.value.__traceback__)
    # Not a RecursionError with a deeper chain either.
    with pytest.raises(TypeError, match="no such method exists"):
        db.foo.bar.baz()


async def test_private_names_raise_attribute_error(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    db = client.motor_test
    coll = db.api_private
    for obj in (client, db, coll):
        with pytest.raises(AttributeError):
            obj._private  # noqa: B018
        assert not hasattr(obj, "_private")
    # PyMongo's messages, with the Motor class's name: "use client[...]", "use database[...]".
    plain: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri, connect=False)
    try:
        for ours, theirs in ((client, plain), (db, plain.motor_test)):
            with pytest.raises(AttributeError) as info:
                ours._private  # noqa: B018
            with pytest.raises(AttributeError) as expected:
                theirs._private  # noqa: B018
            name = type(theirs).__name__
            assert str(info.value) == str(expected.value).replace(name, type(ours).__name__, 1)
    finally:
        plain.close()
    # Item access is for any name.
    assert db["_private"].name == "_private"


# --------------------------------------------------------------------------- the client


async def test_topology_properties_after_an_operation(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "topology") as tw:
        client = tw.client
        await client.admin.command("ping")
        await tw.sync(lambda c: c.admin.command("ping"))
        await fw.probe.settle()
        names = ["address", "is_primary", "is_mongos", "primary", "secondaries", "arbiters"]
        names += ["nodes", "HOST", "PORT"]
        got = {name: getattr(client, name) for name in names}
        expected = await tw.sync(lambda c: {name: getattr(c, name) for name in names})
        assert got == expected
        assert got["address"] == (server.host, server.port) or server.kind == "uri"
        description = client.topology_description
        sync_description = await tw.sync(lambda c: c.topology_description)
        assert type(description) is type(sync_description)
        assert description.topology_type == sync_description.topology_type
        assert set(description.server_descriptions()) == set(sync_description.server_descriptions())
        await asyncio.sleep(0.005)  # let the probe tick
    fw.probe.assert_below(MAX_BUSY)


async def test_topology_properties_would_block_before_any_operation(fw: Framework) -> None:
    from motor.errors import WouldBlockError

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there: the server stays unknown
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"
    client = fw.client(uri)
    await fw.probe.settle()
    for name in ("address", "is_primary", "is_mongos"):
        with pytest.raises(WouldBlockError):
            getattr(client, name)
    assert issubclass(WouldBlockError, InvalidOperation)

    # What needs no server selection answers at once, as in sync PyMongo.
    def sync_answers() -> dict[str, Any]:
        with pymongo.MongoClient(uri, connect=False) as sync_client:  # type: pymongo.MongoClient[Any]
            return {n: getattr(sync_client, n) for n in ("primary", "secondaries", "arbiters")}

    expected = await in_thread(sync_answers)
    assert {n: getattr(client, n) for n in expected} == expected
    fw.probe.assert_below(MAX_BUSY)


async def test_aconnect(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "aconnect") as tw:
        names = ["address", "is_primary", "is_mongos", "primary", "nodes"]
        expected = await tw.sync(
            lambda c: (c.admin.command("ping"), {n: getattr(c, n) for n in names})[1]
        )
        client = tw.client
        connecting = client.aconnect()
        assert inspect.isawaitable(connecting)
        assert await connecting is None
        # Connected: as WouldBlockError advises, the properties answer at once now (read
        # right away, before anything else gives the monitor time).
        assert {n: getattr(client, n) for n in names} == expected
        assert await client.aconnect() is None  # again: harmless
    fw.probe.assert_below(MAX_BUSY)


async def test_client_option_properties(fw: Framework, server: Any) -> None:
    kwargs: dict[str, Any] = {
        "w": "majority",
        "readPreference": "secondaryPreferred",
        "readConcernLevel": "local",
        "tz_aware": True,
        "maxPoolSize": 7,
        "appname": "api-test",
    }
    client = fw.client(server.uri, **kwargs)

    def sync_properties() -> dict[str, Any]:
        with pymongo.MongoClient(server.uri, connect=False, **kwargs) as c:  # type: pymongo.MongoClient[Any]
            return {
                "codec_options": c.codec_options,
                "read_preference": c.read_preference,
                "read_concern": c.read_concern,
                "write_concern": c.write_concern,
                "max_pool_size": c.options.pool_options.max_pool_size,
                "appname": c.options.pool_options.metadata["application"],
                "HOST": c.HOST,
                "PORT": c.PORT,
            }

    expected = await in_thread(sync_properties)
    assert client.codec_options == expected["codec_options"]
    assert client.read_preference == expected["read_preference"]
    assert client.read_concern == expected["read_concern"]
    assert client.write_concern == expected["write_concern"]
    assert client.write_concern == WriteConcern(w="majority")
    assert client.read_concern == ReadConcern("local")
    assert client.options.pool_options.max_pool_size == expected["max_pool_size"] == 7
    assert client.options.pool_options.metadata["application"] == expected["appname"]
    assert (client.HOST, client.PORT) == (expected["HOST"], expected["PORT"])


async def test_append_metadata(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    metadata = client.options.pool_options.metadata
    before = dict(metadata["driver"])
    # The handshake names Motor, its version and the framework (after PyMongo's own).
    assert before["name"].split("|")[-1] == "Motor", before
    assert before["version"].split("|")[-1] == motor.version, before
    assert fw.name.lower() in metadata["platform"].lower(), metadata["platform"]
    if fw.name == "tornado":  # with its version, as Motor 3.7.1 reported it
        assert metadata["platform"].endswith(f"|Tornado {tornado.version}"), metadata
    extra = DriverInfo("MyApp", "1.2", "MyPlatform")
    assert client.append_metadata(extra) is None  # no I/O: a plain call

    after = client.options.pool_options.metadata["driver"]

    def expected_driver() -> dict[str, Any]:
        # Sync PyMongo started with Motor's driver info, then given the same extra info.
        with pymongo.MongoClient(
            server.uri, connect=False, driver=DriverInfo("Motor", motor.version)
        ) as sync_client:  # type: pymongo.MongoClient[Any]
            sync_client.append_metadata(extra)
            return dict(sync_client.options.pool_options.metadata["driver"])

    assert after == await in_thread(expected_driver)
    assert "MyApp" in after["name"] and "1.2" in after["version"]
    assert (await client.admin.command("ping"))["ok"] == 1


async def test_driver_info_goes_into_every_handshake(fw: Framework, mockup: Any) -> None:
    # MotorClient(driver=...): the application's DriverInfo follows Motor's in the
    # handshake of every connection, the monitors' too (MongoClient(driver=...) does so
    # for every connection of PyMongo's).
    server = mockup()
    handshakes: list[dict[str, Any]] = []

    def record(request: Any) -> bool:
        if "client" in request.doc:
            handshakes.append(dict(request.doc["client"]))
        return False  # answered by the next responder

    server.autoresponds("ping")
    server.autoresponds(record)
    client = fw.client(server.uri, driver=DriverInfo("Foo", "1.1.1", "FooPlat"))
    assert (await client.admin.command("ping"))["ok"] == 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    # The monitor's connection and the application's.
    while len(handshakes) < 2 and loop.time() < deadline:
        await asyncio.sleep(0.02)
    assert len(handshakes) >= 2, handshakes
    for handshake in handshakes:
        assert handshake["driver"]["name"].endswith("|Motor|Foo"), handshake
        assert handshake["driver"]["version"].endswith(f"|{motor.version}|1.1.1"), handshake
        assert handshake["platform"].endswith("|FooPlat"), handshake
        assert fw.name.lower() in handshake["platform"].lower(), handshake
    with pytest.raises(TypeError, match="DriverInfo"):
        fw.client(server.uri, driver=("Foo", "1.1.1"))
    fw.probe.assert_below(MAX_BUSY)


def _stable_build_info(info: dict[str, Any]) -> dict[str, Any]:
    """buildInfo with FerretDB's "ferretdbFeatures" lists sorted: their order varies."""
    features = info.get("ferretdbFeatures")
    if isinstance(features, dict):
        sorted_features = {k: sorted(v) if isinstance(v, list) else v for k, v in features.items()}
        info = {**info, "ferretdbFeatures": sorted_features}
    return info


async def test_server_info(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "server_info") as tw:
        info = await tw.same(lambda c: c.server_info(), on="client", fix=_stable_build_info)
        assert isinstance(info, dict) and "version" in info
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(
                lambda c, s: c.server_info(session=s),
                on="client",
                session=s,
                fix=_stable_build_info,
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_list_databases(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "list_databases") as tw:
        await tw.seed([{"_id": 1}])
        client = tw.client
        cursor = await client.list_databases()
        assert_motor_class(fw, cursor, "CommandCursor")
        docs = await cursor.to_list()
        sync_docs = await tw.sync(lambda c: list(c.list_databases()))
        assert [d["name"] for d in docs] == [d["name"] for d in sync_docs]
        assert tw.name in [d["name"] for d in docs]
        sync_keys = {d["name"]: sorted(d) for d in sync_docs}
        assert {d["name"]: sorted(d) for d in docs} == sync_keys
        # Keyword arguments reach the command.
        only = {"name": tw.name}
        cursor = await client.list_databases(filter=only, nameOnly=True)
        assert await cursor.to_list() == [{"name": tw.name}]
        session = await tw.motor_session()
        for s in (session, session.delegate):
            cursor = await client.list_databases(session=s, filter=only)
            assert [d["name"] for d in await cursor.to_list()] == [tw.name]
        # list_database_names
        names = await client.list_database_names()
        assert names == await tw.sync(lambda c: c.list_database_names())
        assert tw.name in names
        for s in (session, session.delegate):
            assert await client.list_database_names(session=s) == names
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_drop_database(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "drop_database") as tw:
        client = tw.client
        session = await tw.motor_session()
        # By name, by Motor database, by PyMongo database, with either kind of session.
        targets: list[Any] = [
            lambda db: db.name,
            lambda db: db,
            lambda db: db.delegate,
        ]
        for i, target in enumerate(targets):
            for s in (None, session, session.delegate):
                db = client[f"{tw.name}{i}"]
                await db.c.insert_one({"_id": 1})
                assert db.name in await client.list_database_names()
                kwargs = {} if s is None else {"session": s}
                assert await client.drop_database(target(db), **kwargs) is None
                assert db.name not in await client.list_database_names()
        await session.end_session()
        # Bad arguments fail as in sync PyMongo.
        await tw.same(lambda c: c.drop_database(5), on="client")
        await tw.same(lambda c: c.drop_database("bad name"), on="client")
    fw.probe.assert_below(MAX_BUSY)


async def test_get_database(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "get_database") as tw:
        client = tw.client
        for db in (client[tw.name], getattr(client, tw.name), client.get_database(tw.name)):
            assert_motor_class(fw, db, "Database")
            assert db.name == tw.name
            assert db.client is client
            assert db == tw.db
        db = client.get_database(
            tw.name,
            read_preference=ReadPreference.SECONDARY,
            write_concern=WriteConcern(w=1),
            codec_options=CodecOptions(tz_aware=True),
        )
        assert_motor_class(fw, db, "Database")
        assert db.read_preference == ReadPreference.SECONDARY
        assert db.write_concern == WriteConcern(w=1)
        assert db.codec_options.tz_aware is True
        await tw.same(lambda c: c.get_database("bad.name"), on="client", call="plain")
        await tw.same(lambda c: c["bad name"], on="client", call="plain")
        error = await tw.same(lambda c: c.get_default_database(), on="client", call="plain")
        assert isinstance(error, ConfigurationError)
        db = client.get_default_database("fallback")
        assert_motor_class(fw, db, "Database")
        assert db.name == "fallback" and db.client is client
        # A URI naming a default database.
        with_default = fw.client(uri_with_database(server.uri, tw.name))
        db = with_default.get_default_database()
        assert_motor_class(fw, db, "Database")
        assert db.name == tw.name and db.client is with_default
        assert with_default.get_default_database("other").name == tw.name
        db = with_default.get_default_database(read_preference=ReadPreference.NEAREST)
        assert db.read_preference == ReadPreference.NEAREST
        await db.c.insert_one({"_id": 1})
        assert await tw.coll.find_one() == {"_id": 1}
    fw.probe.assert_below(MAX_BUSY)


async def test_start_session(fw: Framework, server: Any) -> None:
    client = fw.client(server.uri)
    session = await client.start_session()
    assert_motor_class(fw, session, "ClientSession")
    assert session.client is client
    assert not session.has_ended
    async with session as s:
        assert s is session
        await client.motor_test.api_session.find_one({}, session=s)
    assert session.has_ended
    async with await client.start_session(causal_consistency=False) as other:
        assert other.options.causal_consistency is False
    assert other.has_ended
    async with client.start_session() as third:
        assert_motor_class(fw, third, "ClientSession")
    assert third.has_ended
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- databases


async def test_database_properties(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "db_properties") as tw:
        db = tw.db
        assert db.name == tw.name
        assert db.client is tw.client
        for attr in ("codec_options", "read_preference", "read_concern", "write_concern"):
            assert getattr(db, attr) == getattr(tw.sync_db, attr), attr
        for coll in (db.c, db["c"], db.get_collection("c")):
            assert_motor_class(fw, coll, "Collection")
            assert coll.full_name == f"{tw.name}.c"
            assert coll.database == db
        coll = db.get_collection("c", read_preference=ReadPreference.SECONDARY_PREFERRED)
        assert coll.read_preference == ReadPreference.SECONDARY_PREFERRED
        other = db.with_options(
            read_preference=ReadPreference.NEAREST, write_concern=WriteConcern(w=1, j=True)
        )
        assert_motor_class(fw, other, "Database")
        assert other.name == db.name and other.client is tw.client
        assert other.read_preference == ReadPreference.NEAREST
        assert other.write_concern == WriteConcern(w=1, j=True)
        assert db.read_preference == ReadPreference.PRIMARY  # unchanged
        for bad in ("$x", "", "a..b", "a$b"):
            await tw.same(lambda d, bad=bad: d[bad], on="db", call="plain")
            await tw.same(lambda d, bad=bad: d.get_collection(bad), on="db", call="plain")
        await tw.same(lambda d: d.get_collection(5), on="db", call="plain")


def _without_uuids(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """listCollections documents without the collection UUIDs (they differ per database)."""
    fixed = []
    for doc in docs:
        doc = dict(doc)
        if isinstance(doc.get("info"), dict):
            doc["info"] = {k: v for k, v in doc["info"].items() if k != "uuid"}
        fixed.append(doc)
    return fixed


async def test_create_collection(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "create_collection") as tw:
        coll = await tw.same(
            lambda d: d.create_collection("plain"), on="db", expect_class="Collection"
        )
        assert coll.full_name == f"{tw.name}.plain"
        assert coll.database == tw.db and coll.database.client is tw.client
        await coll.insert_one({"_id": 1})
        assert await tw.db.plain.find_one() == {"_id": 1}
        capped = await tw.same(
            lambda d: d.create_collection("capped", capped=True, size=4096, max=5),
            on="db",
            expect_class="Collection",
        )
        await tw.same(lambda d: d.capped.options(), on="db")
        assert (await capped.options())["capped"] is True
        # An existing collection: CollectionInvalid, as in sync PyMongo.
        error = await tw.same(lambda d: d.create_collection("plain"), on="db")
        assert isinstance(error, pymongo.errors.CollectionInvalid)
        await tw.same(lambda d: d.create_collection("$bad"), on="db")
        await tw.same(lambda d: d.create_collection(5), on="db")
        # Options and sessions.
        session = await tw.motor_session()
        for i, s in enumerate((session, session.delegate)):
            await tw.same(
                lambda d, s, i=i: d.create_collection(
                    f"with_session{i}", session=s, write_concern=WriteConcern(w=1)
                ),
                on="db",
                session=s,
                expect_class="Collection",
            )
        await session.end_session()
        await tw.same(lambda d: d.list_collection_names(), on="db", fix=sorted)
    fw.probe.assert_below(MAX_BUSY)


async def test_list_collections(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "list_collections") as tw:
        for name in ("a", "b", "fs.files"):
            await tw.seed([{"_id": 1}], name=name)

        def by_name(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return sorted(_without_uuids(docs), key=lambda doc: doc["name"])

        await tw.same(
            lambda d: d.list_collections(), on="db", expect_class="CommandCursor", fix=by_name
        )
        await tw.same(
            lambda d: d.list_collections(filter={"name": "a"}),
            on="db",
            expect_class="CommandCursor",
            fix=_without_uuids,
        )
        await tw.same(
            lambda d: d.list_collections(filter={"name": {"$in": ["a", "fs.files"]}}),
            on="db",
            fix=by_name,
        )
        await tw.same(
            lambda d: d.list_collections(nameOnly=True, batchSize=1), on="db", fix=by_name
        )
        await tw.same(lambda d: d.list_collection_names(), on="db", fix=sorted)
        names = await tw.same(lambda d: d.list_collection_names(filter={"name": "b"}), on="db")
        assert names == ["b"]
        await tw.same(lambda d: d.list_collection_names(filter=5), on="db")
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(
                lambda d, s: d.list_collections(session=s), on="db", session=s, fix=by_name
            )
            await tw.same(
                lambda d, s: d.list_collection_names(session=s, filter={"name": "a"}),
                on="db",
                session=s,
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_drop_collection(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "drop_collection") as tw:
        session = await tw.motor_session()
        # By name, by Motor collection, by PyMongo collection; with either kind of session.
        targets: list[Callable[[Any, str], Any]] = [
            lambda d, name: name,
            lambda d, name: d[name],
            lambda d, name: d[name].delegate,
        ]
        for i, target in enumerate(targets):
            for j, s in enumerate((None, session, session.delegate)):
                name = f"c{i}{j}"
                await tw.seed([{"_id": 1}], name=name)
                assert name in await tw.db.list_collection_names()
                kwargs = {} if s is None else {"session": s}
                result = await tw.db.drop_collection(target(tw.db, name), **kwargs)
                expected = await tw.sync(lambda c, name=name: c[tw.sync_name].drop_collection(name))
                assert plain(result) == _renamed(plain(expected), tw.sync_name, tw.name)
                assert name not in await tw.db.list_collection_names()
        await session.end_session()
        await tw.same(lambda d: d.drop_collection("never_existed"), on="db")
        await tw.same(lambda d: d.drop_collection(5), on="db")
        await tw.same(lambda d: d.drop_collection("$bad"), on="db")
    fw.probe.assert_below(MAX_BUSY)


async def test_validate_collection(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "validate_collection") as tw:
        await tw.seed([{"_id": i} for i in range(3)])
        result = await tw.same(lambda d: d.validate_collection("c"), on="db")
        assert result["valid"] is True
        await tw.same(lambda d: d.validate_collection("c", full=True), on="db")
        await tw.same(lambda d: d.validate_collection("c", scandata=True, background=None), on="db")
        # A Motor collection is unwrapped; a PyMongo one is taken as is.
        got = await tw.db.validate_collection(tw.coll)
        expected = await tw.sync(lambda c: c[tw.sync_name].validate_collection(c[tw.sync_name].c))
        assert plain(got) == _renamed(plain(expected), tw.sync_name, tw.name)
        got = await tw.db.validate_collection(tw.coll.delegate)
        assert plain(got) == _renamed(plain(expected), tw.sync_name, tw.name)
        error = await tw.same(lambda d: d.validate_collection("missing"), on="db")
        assert isinstance(error, OperationFailure)
        await tw.same(lambda d: d.validate_collection(5), on="db")
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(lambda d, s: d.validate_collection("c", session=s), on="db", session=s)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_command(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "command") as tw:
        await tw.seed([{"_id": i, "k": "ab"[i % 2]} for i in range(5)])
        assert (await tw.same(lambda d: d.command("ping"), on="db"))["ok"] == 1
        result = await tw.same(lambda d: d.command(SON([("count", "c"), ("query", {})])), on="db")
        assert result["n"] == 5
        await tw.same(lambda d: d.command("count", "c", query={"k": "a"}), on="db")
        await tw.same(lambda d: d.command({"distinct": "c", "key": "k"}), on="db")
        await tw.same(
            lambda d: d.command("ping", read_preference=ReadPreference.SECONDARY_PREFERRED),
            on="db",
        )
        result = await tw.same(
            lambda d: d.command("count", "c", codec_options=CodecOptions(document_class=SON)),
            on="db",
        )
        assert isinstance(result, SON)
        await tw.same(lambda d: d.command("count", "c", comment="api test"), on="db")
        error = await tw.same(lambda d: d.command("nosuchcommand"), on="db")
        assert isinstance(error, OperationFailure)
        await tw.same(lambda d: d.command("count", "c", query="not a document"), on="db")
        await tw.same(lambda d: d.command(5), on="db")
        # The admin database, as apps use it.
        assert (await tw.client.admin.command("ping"))["ok"] == 1
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(lambda d, s: d.command("count", "c", session=s), on="db", session=s)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_cursor_command(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "cursor_command") as tw:
        await tw.seed([{"_id": i, "k": "ab"[i % 2]} for i in range(7)])
        docs = await tw.same(
            lambda d: d.cursor_command("find", "c", sort={"_id": 1}, batchSize=2),
            on="db",
            expect_class="CommandCursor",
        )
        assert [doc["_id"] for doc in docs] == list(range(7))
        await tw.same(
            lambda d: d.cursor_command(
                SON([("aggregate", "c"), ("pipeline", [{"$match": {"k": "a"}}]), ("cursor", {})])
            ),
            on="db",
            expect_class="CommandCursor",
        )
        await tw.same(
            lambda d: d.cursor_command("listCollections", nameOnly=True),
            on="db",
            expect_class="CommandCursor",
        )
        await tw.same(lambda d: d.cursor_command("ping"), on="db")  # no cursor in the reply
        await tw.same(lambda d: d.cursor_command("nosuchcommand"), on="db")
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(
                lambda d, s: d.cursor_command("find", "c", session=s, batchSize=3),
                on="db",
                session=s,
                expect_class="CommandCursor",
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_dereference(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "dereference") as tw:
        await tw.seed([{"_id": 1, "x": 1, "y": 2}, {"_id": 2, "x": 2}])
        doc = await tw.same(lambda d: d.dereference(DBRef("c", 1)), on="db")
        assert doc == {"_id": 1, "x": 1, "y": 2}
        await tw.same(lambda d: d.dereference(DBRef("c", 2, d.name)), on="db")
        await tw.same(lambda d: d.dereference(DBRef("c", 1), projection={"x": 1}), on="db")
        assert await tw.same(lambda d: d.dereference(DBRef("c", 3)), on="db") is None
        await tw.same(lambda d: d.dereference(DBRef("missing", 1)), on="db")
        error = await tw.same(lambda d: d.dereference(DBRef("c", 1, "other_db")), on="db")
        assert isinstance(error, ValueError)
        error = await tw.same(lambda d: d.dereference({"$ref": "c", "$id": 1}), on="db")
        assert isinstance(error, TypeError)
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(lambda d, s: d.dereference(DBRef("c", 2), session=s), on="db", session=s)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_database_aggregate_is_latent(fw: Framework, server: Any) -> None:
    recorder = CommandRecorder()
    async with Twin(fw, server, "db_aggregate", event_listeners=[recorder]) as tw:
        pipeline = [{"$documents": [{"x": 1}, {"x": 2}, {"x": 3}]}, {"$match": {"x": {"$gte": 2}}}]
        # On MongoDB the documents; FerretDB refuses database-level aggregate (code 9).
        await tw.same(
            lambda d: d.aggregate(pipeline),
            on="db",
            call="cursor",
            expect_class="LatentCommandCursor",
        )
        await tw.same(lambda d: d.aggregate(pipeline, batchSize=1), on="db", call="cursor")
        # No I/O until the first fetch: errors surface there.
        recorder.events.clear()
        cursor = tw.db.aggregate([{"$noSuchStage": {}}])
        assert_motor_class(fw, cursor, "LatentCommandCursor")
        await tw.db.command("ping")  # a round trip: an eager aggregate would have started
        assert recorder.names() == ["ping"]
        with pytest.raises(OperationFailure) as info:
            await cursor.to_list()
        assert "aggregate" in recorder.names()

        def sync_code() -> Any:
            try:
                list(tw.sync_db.aggregate([{"$noSuchStage": {}}]))
            except OperationFailure as exc:
                return exc.code
            return None

        assert info.value.code == await in_thread(sync_code)
        session = await tw.motor_session()
        for s in (session, session.delegate):
            await tw.same(
                lambda d, s: d.aggregate(pipeline, session=s), on="db", session=s, call="cursor"
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


#: The methods that Motor 3.7.1 made coroutine functions (its others returned futures).
#: ``start_session`` returns a session future that speaks the coroutine protocol and is
#: marked as a coroutine function.
COROUTINE_FUNCTIONS = {
    "Client": ["list_databases", "start_session"],
    "Database": ["create_collection", "cursor_command", "list_collections"],
    "Cursor": ["close", "next"],
    "CommandCursor": ["close", "next", "try_next"],
    "LatentCommandCursor": ["close", "next", "try_next"],
    "ChangeStream": ["close", "next", "try_next"],
    "GridFSBucket": ["open_download_stream", "open_download_stream_by_name"],
    "GridOut": ["stream_to_handler"],
    "ClientSession": ["with_transaction"],
    "ClientEncryption": ["create_encrypted_collection", "get_keys"],
}


async def test_motor_3_7_1_s_coroutine_functions_and_futures(fw: Framework, server: Any) -> None:
    """Where Motor 3.7.1 had a coroutine function, so does Motor, and nowhere else: what
    it returns goes to ``asyncio.create_task()`` (a future does not), and futures go to
    ``asyncio.wait()`` (a coroutine does not).  ``start_session()`` returns a session
    future that ``create_task()`` takes too, as Motor 3.7.1's coroutine."""
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    # What unittest.mock asks (asyncio's test on Python 3.11, inspect's on 3.12+).
    is_coroutine_function = (
        inspect.iscoroutinefunction if sys.version_info >= (3, 12) else asyncio.iscoroutinefunction
    )
    for agnostic_name, names in COROUTINE_FUNCTIONS.items():
        cls = getattr(module, motor_class(fw, agnostic_name))
        coroutine_functions = {
            name
            for name in dir(cls)
            if not name.startswith("_") and is_coroutine_function(getattr(cls, name))
        }
        assert coroutine_functions == set(names), agnostic_name
    # So a test double made with create_autospec() awaits them, as with Motor 3.7.1.
    double = mock.create_autospec(getattr(module, motor_class(fw, "Client")), instance=True)
    assert isinstance(await double.start_session(), mock.AsyncMock)
    assert isinstance(await double.list_databases(), mock.AsyncMock)

    client = fw.client(server.uri)
    db = client[f"motor_test_coroutines_{uuid.uuid4().hex[:8]}"]
    try:
        created = await asyncio.create_task(db.create_collection("made"))
        assert_motor_class(fw, created, "Collection")
        listed = await asyncio.create_task(db.list_collections())
        assert [c["name"] for c in await listed.to_list()] == ["made"]
        databases = await asyncio.create_task(client.list_databases())
        assert db.name in [d["name"] for d in await databases.to_list()]
        session = await asyncio.create_task(client.start_session())
        assert_motor_class(fw, session, "ClientSession")
        await session.end_session()
        # A failed start_session() reaches its task; a task cancelled before its first
        # step leaves no "exception was never retrieved", as a coroutine closed unrun.
        with pytest.raises(ConfigurationError):
            await asyncio.create_task(client.start_session(causal_consistency=True, snapshot=True))
        reported: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, context: reported.append(context))
        try:
            unstarted = asyncio.create_task(
                client.start_session(causal_consistency=True, snapshot=True)
            )
            unstarted.cancel()
            with pytest.raises(asyncio.CancelledError):
                await unstarted
            del unstarted
            gc.collect()
        finally:
            loop.set_exception_handler(previous)
        assert reported == []
        cursor = created.find()
        await asyncio.create_task(cursor.close())
        assert cursor.closed
        # Motor 3.7.1's hand-written coroutine functions had PyMongo's parameters: wrong
        # arguments raise at the call, with Python's message.
        with pytest.raises(TypeError) as raised:
            db.cursor_command()
        assert str(raised.value) == (
            "AgnosticDatabase.cursor_command() missing 1 required positional argument: 'command'"
        )
        with pytest.raises(TypeError, match="takes from 2 to 8 positional arguments but 10"):
            db.cursor_command(*range(9))
        listed = await asyncio.create_task(db.cursor_command("listCollections"))
        assert [c["name"] for c in await listed.to_list()] == ["made"]
        done, _ = await asyncio.wait([created.find_one(), created.count_documents({})])
        assert sorted(str(f.result()) for f in done) == ["0", "None"]
    finally:
        await client.drop_database(db)
    fw.probe.assert_below(MAX_BUSY)
