"""``wrap()``: Motor 3.7.1's way to turn a PyMongo object into the Motor one.

A client, database or collection wraps a PyMongo ``Database``, ``Collection``, cursor,
command cursor or ``ClientSession`` of its client; a GridFS bucket wraps a ``GridIn``,
``GridOut`` or ``GridOutCursor``.  The Motor object shares the wrapping object's client
(its loop and pools) and works as the one Motor's own methods return.  Anything else is
returned unchanged.  Change streams are in :mod:`test.test_change_streams` (FerretDB has
none).  PyMongo calls that do I/O (``list_collections``, ``start_session``,
``GridOut.open``) run through :func:`motor.run_green`, as an application would.
"""

from __future__ import annotations

import copy
import typing
from typing import Any, Generic, TypeVar

import gridfs
import pytest
from bson import decode_all
from bson.raw_bson import RawBSONDocument
from pymongo import WriteConcern

import motor
import motor.motor_asyncio
import motor.motor_tornado
from test.framework import Framework
from test.oracle import MAX_BUSY, Twin, assert_motor_class, motor_class

DOCS = [{"_id": i, "n": i} for i in range(1, 6)]


async def test_client_database_and_collection_wrap_pymongo_objects(
    fw: Framework, server: Any
) -> None:
    async with Twin(fw, server, "wrap") as tw:
        client, db, coll = tw.client, tw.db, tw.coll
        await tw.seed(DOCS)

        for owner in (client, db, coll):
            database = owner.wrap(db.delegate)
            assert_motor_class(fw, database, "Database")
            assert database == db and database.client is client
            collection = owner.wrap(coll.delegate)
            assert_motor_class(fw, collection, "Collection")
            assert collection == coll and collection.database == db
            assert collection.database.client is client
            assert await collection.find_one({"_id": 2}) == {"_id": 2, "n": 2}

            # A cursor's collection is the Motor one of its PyMongo collection, whoever
            # wraps it; it runs (its find) when awaited, on the loop.
            cursor = owner.wrap(coll.delegate.find({"n": {"$gt": 2}}, sort=[("_id", 1)]))
            assert_motor_class(fw, cursor, "Cursor")
            assert cursor.collection == coll
            assert_motor_class(fw, cursor.collection, "Collection")
            assert await cursor.to_list() == DOCS[2:]
            raw = owner.wrap(coll.delegate.find_raw_batches({}, sort=[("_id", 1)]))
            assert_motor_class(fw, raw, "RawBatchCursor")
            assert [d for batch in await raw.to_list() for d in decode_all(batch)] == DOCS

            # Objects PyMongo makes with I/O, made in a child as an application would.
            command_cursor = owner.wrap(await motor.run_green(db.delegate.list_collections))
            assert_motor_class(fw, command_cursor, "CommandCursor")
            assert [c["name"] for c in await command_cursor.to_list()] == ["c"]
            session = owner.wrap(await motor.run_green(client.delegate.start_session))
            assert_motor_class(fw, session, "ClientSession")
            assert session.client is client
            found = await coll.find_one({"_id": 1}, session=session)
            assert found == {"_id": 1, "n": 1}
            await session.end_session()
            assert session.has_ended

        # A cursor on another collection: its collection, not the wrapping one.
        other = coll.wrap(db.delegate.other.find())
        assert other.collection == db.other and other.collection != coll
        assert await other.to_list() == []

        # Anything else comes back as it is; wrapping does no I/O.
        for obj in (None, 1, "c", DOCS[0], RawBSONDocument(b"\x05\x00\x00\x00\x00")):
            for owner in (client, db, coll):
                assert owner.wrap(obj) is obj
    fw.probe.assert_below(MAX_BUSY)


async def test_a_bucket_wraps_pymongo_gridfs_objects(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "wrap_gridfs") as tw:
        db = tw.db
        module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
        bucket = getattr(module, motor_class(fw, "GridFSBucket"))(db, chunk_size_bytes=4)
        sync_bucket = gridfs.GridFSBucket(db.delegate, chunk_size_bytes=4)

        # A PyMongo GridIn (no I/O until written to): written and closed through Motor.
        pymongo_grid_in = sync_bucket.open_upload_stream("f")
        grid_in = bucket.wrap(pymongo_grid_in)
        assert_motor_class(fw, grid_in, "GridIn")
        # Sending its chunks in batches, as the GridIns Motor makes do.
        assert grid_in.delegate is pymongo_grid_in
        assert type(pymongo_grid_in) is type(bucket.open_upload_stream("g").delegate)
        await grid_in.write(b"hello, wrap")
        await grid_in.close()
        file_id = grid_in._id

        # A PyMongo GridOut (opened with I/O, in a child): read through Motor.
        grid_out = bucket.wrap(await motor.run_green(sync_bucket.open_download_stream, file_id))
        assert_motor_class(fw, grid_out, "GridOut")
        assert grid_out.filename == "f" and grid_out.length == 11
        assert await grid_out.read() == b"hello, wrap"

        # A PyMongo GridOutCursor: yields Motor GridOuts.
        cursor = bucket.wrap(sync_bucket.find({"filename": "f"}))
        assert_motor_class(fw, cursor, "GridOutCursor")
        files = await cursor.to_list()
        assert len(files) == 1
        assert_motor_class(fw, files[0], "GridOut")
        assert await files[0].read() == b"hello, wrap"

        # Anything else comes back as it is (Motor 3.7.1 returned None); GridFS objects
        # are a bucket's to wrap.
        assert bucket.wrap(db.delegate) is db.delegate
        assert bucket.wrap(None) is None
        files_cursor = sync_bucket.find()
        for owner in (tw.client, db, tw.coll):
            assert owner.wrap(files_cursor) is files_cursor
    fw.probe.assert_below(MAX_BUSY)


async def test_an_application_s_subclasses_keep_their_class(fw: Framework, server: Any) -> None:
    """``with_options()`` and ``wrap()`` of a database or collection of an application's
    subclass make that class, through its constructor, as Motor 3.7.1's
    ``self.__class__(...)`` did; a database's collections and a collection's
    sub-collections are the framework's class, as there."""
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    database_class = getattr(module, motor_class(fw, "Database"))
    collection_class = getattr(module, motor_class(fw, "Collection"))
    made: list[str] = []

    class MyDatabase(database_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append("database")

    class MyCollection(collection_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append("collection")

        async def count_all(self) -> int:
            return int(await self.count_documents({}))

    async with Twin(fw, server, "subclass") as tw:
        await tw.seed(DOCS)
        db = MyDatabase(tw.client, tw.name)
        coll = MyCollection(db, "c")
        assert made == ["database", "collection"]

        acknowledged = coll.with_options(write_concern=WriteConcern(w=1))
        assert type(acknowledged) is MyCollection
        assert acknowledged.write_concern == WriteConcern(w=1)
        assert acknowledged.database is db
        assert await acknowledged.count_all() == len(DOCS)
        assert type(coll.wrap(coll.delegate)) is MyCollection
        assert made == ["database", "collection", "collection", "collection"]

        primary = db.with_options(write_concern=WriteConcern(w=1))
        assert type(primary) is MyDatabase
        assert primary.write_concern == WriteConcern(w=1)
        assert type(db.wrap(db.delegate)) is MyDatabase
        assert made[-2:] == ["database", "database"]

        assert type(db.c) is collection_class
        assert type(coll.sub) is collection_class
        assert type(coll.wrap(coll.delegate.database)) is database_class
    fw.probe.assert_below(MAX_BUSY)


async def test_motor_3_7_1_s_cursor_constructors(fw: Framework, server: Any) -> None:
    """``MotorCursor(pymongo_cursor, motor_collection)`` and the command cursor's, as in
    Motor 3.7.1: the same cursor ``wrap()`` makes."""
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    cursor_class = getattr(module, motor_class(fw, "Cursor"))
    command_cursor_class = getattr(module, motor_class(fw, "CommandCursor"))
    async with Twin(fw, server, "constructors") as tw:
        await tw.seed(DOCS)
        cursor = cursor_class(tw.coll.delegate.find(sort=[("_id", 1)]), tw.coll)
        assert cursor.collection is tw.coll
        assert await cursor.to_list() == DOCS
        command_cursor = command_cursor_class(
            await motor.run_green(tw.db.delegate.list_collections), tw.db
        )
        assert [c["name"] for c in await command_cursor.to_list()] == ["c"]
        with pytest.raises(TypeError, match="Motor collection"):
            cursor_class(tw.coll.delegate.find(), tw.coll.delegate)

        # An application's subclass: clone() and copy() go through its constructor.
        class MyCursor(cursor_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any) -> None:
                super().__init__(*args)
                self.tag = "mine"

        mine = MyCursor(tw.coll.delegate.find(sort=[("_id", 1)]), tw.coll)
        for again in (mine.clone(), copy.copy(mine)):
            assert type(again) is MyCursor and again.tag == "mine"
            assert again.collection is tw.coll
            assert await again.to_list() == DOCS
    fw.probe.assert_below(MAX_BUSY)


async def test_motor_3_7_1_s_subclass_and_constructor_forms(fw: Framework, server: Any) -> None:
    """What applications' subclasses of Motor 3.7.1's classes did still works: a generic
    base listed first, a collection constructor's seven arguments passed on positionally,
    attributes that were plain in Motor 3.7.1 assigned, a session constructed from
    PyMongo's."""
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    client_class = getattr(module, motor_class(fw, "Client"))
    collection_class = getattr(module, motor_class(fw, "Collection"))
    session_class = getattr(module, motor_class(fw, "ClientSession"))
    T = TypeVar("T")

    class Repo(Generic[T], collection_class):  # type: ignore[misc, valid-type]
        def __init__(
            self,
            database: Any,
            name: str,
            codec_options: Any = None,
            read_preference: Any = None,
            write_concern: Any = None,
            read_concern: Any = None,
            _delegate: Any = None,
        ) -> None:
            options = (codec_options, read_preference, write_concern, read_concern)
            super().__init__(database, name, *options, _delegate)
            self.database = database

    class Client(Generic[T], client_class):  # type: ignore[misc, valid-type]
        pass

    assert collection_class[dict] is collection_class  # subscripted: the class itself
    assert typing.get_origin(Repo[int]) is Repo  # Generic's, first in the bases
    async with Twin(fw, server, "forms") as tw:
        await tw.seed(DOCS)
        client: Any = Client(server.uri)
        try:
            db = client[tw.name]
            repo: Any = Repo(db, "c")
            assert repo.database is db
            assert await repo.find_one({"_id": 1}) == DOCS[0]
            acknowledged = repo.with_options(write_concern=WriteConcern(w=1))
            assert type(acknowledged) is Repo
            assert acknowledged.write_concern == WriteConcern(w=1)
            assert await acknowledged.count_documents({}) == len(DOCS)
        finally:
            await client.close()

        cursor = tw.coll.find()
        sub = tw.coll.sub
        cursor.collection = sub
        assert cursor.collection is sub
        cursor.started = True
        assert cursor.started
        cursor.closed = True
        assert cursor.closed
        # A latent cursor's command runs on the collection that made it, as in Motor
        # 3.7.1, where it ran at once.
        latent = tw.coll.aggregate([{"$match": {"_id": 1}}])
        latent.collection = sub
        assert latent.collection is sub
        assert await latent.to_list() == [DOCS[0]]

        pymongo_session = await motor.run_green(tw.client.delegate.start_session)
        session = session_class(pymongo_session, tw.client)
        assert session.delegate is pymongo_session and session.client is tw.client
        assert await tw.coll.find_one({"_id": 2}, session=session) == DOCS[1]
        await session.end_session()
        with pytest.raises(TypeError, match="First argument"):
            session_class(tw.client, pymongo_session)
        with pytest.raises(TypeError, match="Second argument"):
            session_class(pymongo_session, tw.db)
    fw.probe.assert_below(MAX_BUSY)


async def test_subclasses_that_call_the_base_constructor_with_a_delegate(
    fw: Framework, server: Any
) -> None:
    """Quart-Motor's database and collection make the PyMongo object themselves and call
    Motor 3.7.1's ``AgnosticBase.__init__(delegate)``, then set the client (database) or
    the database (collection)."""
    from pymongo.synchronous.collection import Collection
    from pymongo.synchronous.database import Database

    from motor.core import AgnosticBaseProperties

    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    client_class = getattr(module, motor_class(fw, "Client"))
    database_class = getattr(module, motor_class(fw, "Database"))
    collection_class = getattr(module, motor_class(fw, "Collection"))

    class Client(client_class):  # type: ignore[misc, valid-type]
        def __getitem__(self, name: str) -> Any:
            return Db(self, name)

    class Db(database_class):  # type: ignore[misc, valid-type]
        def __init__(self, client: Any, name: str, **kwargs: Any) -> None:
            self._client = client
            delegate = kwargs.get("_delegate") or Database(client.delegate, name, **kwargs)
            super(AgnosticBaseProperties, self).__init__(delegate)  # type: ignore[misc]

        def __getitem__(self, name: str) -> Any:
            return Coll(self, name)

    class Coll(collection_class):  # type: ignore[misc, valid-type]
        def __init__(self, database: Any, name: str, _delegate: Any = None) -> None:
            delegate = _delegate if _delegate is not None else Collection(database.delegate, name)
            super(AgnosticBaseProperties, self).__init__(delegate)  # type: ignore[misc]
            self.database = database

    async with Twin(fw, server, "base_init") as tw:
        await tw.seed(DOCS)
        client: Any = Client(server.uri)
        try:
            db = client[tw.name]
            coll = db["c"]
            assert type(db) is Db and type(coll) is Coll
            assert db.client is client and coll.database is db
            assert (await db.command("ping"))["ok"] == 1
            assert await coll.find_one({"_id": 1}) == DOCS[0]
            assert await coll.find({}, sort=[("_id", 1)]).to_list() == DOCS
            await coll.insert_one({"_id": 6, "n": 6})
            assert await coll.count_documents({}) == len(DOCS) + 1
            # An object whose client or database was never set says what is missing.
            orphan = Coll.__new__(Coll)
            super(AgnosticBaseProperties, orphan).__init__(coll.delegate)  # type: ignore[misc]
            with pytest.raises(AttributeError, match="sets its client or database"):
                orphan.find_one()
        finally:
            await client.close()
    fw.probe.assert_below(MAX_BUSY)


async def test_latent_cursors_are_equal_to_themselves_only(fw: Framework, server: Any) -> None:
    """Cursors that run their command on the first fetch (``aggregate()``,
    ``list_indexes()``) and change streams are equal to themselves only, and their hash
    does not change when the first fetch starts them, as with Motor 3.7.1's placeholder."""
    async with Twin(fw, server, "latent") as tw:
        await tw.seed(DOCS)
        first, second = tw.coll.aggregate([]), tw.coll.aggregate([])
        indexes = tw.coll.list_indexes()
        assert first != second and first != indexes and first == first
        cursors = [first, second]
        cursors.remove(second)
        assert cursors[0] is first
        streams = {tw.coll.watch(), tw.coll.watch()}
        assert len(streams) == 2
        by_cursor = {first: "first", second: "second"}
        before = hash(first)
        assert len(await first.to_list()) == len(DOCS)
        assert hash(first) == before and by_cursor[first] == "first"
        assert first != second and first == first
        await second.close()
    fw.probe.assert_below(MAX_BUSY)
