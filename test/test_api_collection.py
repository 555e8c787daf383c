"""The collection API against the test server, with sync PyMongo as the oracle.

Same method as :mod:`test.test_api_client`: each call runs on a Motor collection and, in a
worker thread, on a sync PyMongo collection of a twin database with the same data; the
outcomes (result, or exception class, message, code and details) must be equal.  Each
method is also called with ``session=`` a Motor session and its PyMongo delegate.
Documents always carry an explicit ``_id`` so both databases hold the same values.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import bson
import pytest
from bson.codec_options import CodecOptions
from bson.son import SON
from pymongo import (
    ASCENDING,
    DESCENDING,
    DeleteMany,
    DeleteOne,
    IndexModel,
    InsertOne,
    ReadPreference,
    ReplaceOne,
    ReturnDocument,
    UpdateMany,
    UpdateOne,
)
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    InvalidName,
    InvalidOperation,
    OperationFailure,
    WriteError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from test.framework import Framework, Loops
from test.oracle import CommandRecorder, Twin, assert_motor_class

MAX_BUSY = 0.010

# "a": odd n (1, 3, 5, 7); "b": even n (2, 4, 6).
DOCS = [{"_id": i, "n": i, "k": "a" if i % 2 else "b"} for i in range(1, 8)]


def _sessions(session: Any) -> tuple[Any, Any]:
    """The Motor session and its PyMongo delegate: every method accepts both."""
    return (session, session.delegate)


# --------------------------------------------------------------------------- names


async def test_dotted_collection_names(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "dotted") as tw:
        client, db = tw.client, tw.db
        cases = [
            (db.fs.files, "fs.files"),
            (db["fs"]["files"], "fs.files"),
            (db["fs.files"], "fs.files"),
            (db["a"]["b"], "a.b"),
            (db.a.b, "a.b"),
            (db.a.b.c, "a.b.c"),
            (db["a"].b["c"], "a.b.c"),
            (db.get_collection("a").b.c, "a.b.c"),
        ]
        for i, (coll, name) in enumerate(cases):
            assert_motor_class(fw, coll, "Collection")
            assert coll.name == name
            assert coll.full_name == f"{tw.name}.{name}"
            assert_motor_class(fw, coll.database, "Database")
            assert coll.database == db
            assert coll.database.client is client
            await coll.insert_one({"_id": i})
            assert await coll.find_one({"_id": i}) == {"_id": i}
            assert await coll.find({"_id": i}).to_list() == [{"_id": i}]
        assert db.fs.files.database.client is client
        assert sorted(await db.list_collection_names()) == ["a.b", "a.b.c", "fs.files"]
        assert await db.fs.files.count_documents({}) == 3
        # Sub-collections of collections with options keep them, as in PyMongo.
        secondary = ReadPreference.SECONDARY
        coll = db.get_collection("fs", read_preference=secondary).files
        sync_coll = tw.sync_db.get_collection("fs", read_preference=secondary).files
        assert coll.read_preference == sync_coll.read_preference == secondary
    fw.probe.assert_below(MAX_BUSY)


async def test_collection_properties(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "coll_properties") as tw:
        coll, sync_coll = tw.coll, tw.sync_coll
        assert coll.name == "c" and coll.full_name == f"{tw.name}.c"
        assert coll.database == tw.db
        for attr in ("codec_options", "read_preference", "read_concern", "write_concern"):
            assert getattr(coll, attr) == getattr(sync_coll, attr), attr
        options: dict[str, Any] = {
            "codec_options": CodecOptions(document_class=SON, tz_aware=True),
            "read_preference": ReadPreference.SECONDARY_PREFERRED,
            "write_concern": WriteConcern(w=1, wtimeout=1000),
            "read_concern": ReadConcern("local"),
        }
        other = coll.with_options(**options)
        assert_motor_class(fw, other, "Collection")
        assert other.full_name == coll.full_name and other.database == tw.db
        expected = sync_coll.with_options(**options)
        for attr in options:
            assert getattr(other, attr) == getattr(expected, attr) == options[attr], attr
        assert coll.read_preference == ReadPreference.PRIMARY  # unchanged
        await tw.seed([{"_id": 1}])
        assert isinstance(await other.find_one(), SON)
        await tw.same(lambda c: c.with_options(read_preference="bad"), call="plain")
        # Bad names: InvalidName, as in sync PyMongo.
        for bad in ("$x", "", "a..b"):
            await tw.same(lambda c, bad=bad: c[bad], call="plain")
        with pytest.raises(InvalidName):
            coll["$x"]
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- CRUD


async def test_insert(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "insert") as tw:
        result = await tw.same(lambda c: c.insert_one({"_id": 1, "x": 1}))
        assert result.inserted_id == 1 and result.acknowledged
        error = await tw.same(lambda c: c.insert_one({"_id": 1}))
        assert isinstance(error, DuplicateKeyError) and error.code == 11000
        await tw.same(lambda c: c.insert_one(5))
        await tw.same(lambda c: c.insert_one({"_id": 2}, bypass_document_validation=True))
        await tw.same(lambda c: c.insert_one({"_id": 3}, comment="api"))
        result = await tw.same(lambda c: c.insert_many([{"_id": i} for i in range(10, 15)]))
        assert result.inserted_ids == list(range(10, 15))
        await tw.same(lambda c: c.insert_many(({"_id": i} for i in range(20, 23)), ordered=False))
        # BulkWriteError with its details, ordered and unordered.
        error = await tw.same(lambda c: c.insert_many([{"_id": 30}, {"_id": 1}, {"_id": 31}]))
        assert isinstance(error, BulkWriteError)
        assert error.details["nInserted"] == 1
        assert [e["index"] for e in error.details["writeErrors"]] == [1]
        error = await tw.same(
            lambda c: c.insert_many([{"_id": 32}, {"_id": 1}, {"_id": 33}], ordered=False)
        )
        assert isinstance(error, BulkWriteError) and error.details["nInserted"] == 2
        await tw.same(lambda c: c.insert_many([]))
        await tw.same(lambda c: c.insert_many({"_id": 40}))
        # Wrong arguments: PyMongo's TypeError, naming Collection.insert_many.
        await tw.same(lambda c: c.insert_many())
        await tw.same(lambda c: c.insert_many([{"_id": 41}], foo=1))
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.same(lambda c, s, i=i: c.insert_one({"_id": 50 + i}, session=s), session=s)
            await tw.same(
                lambda c, s, i=i: c.insert_many([{"_id": 60 + i}, {"_id": 70 + i}], session=s),
                session=s,
            )
        await session.end_session()
        docs = await tw.same(lambda c: c.find({}, sort=[("_id", 1)]), call="cursor")
        assert len(docs) == 20
    fw.probe.assert_below(MAX_BUSY)


async def test_find_one(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "find_one") as tw:
        await tw.seed(DOCS)
        assert await tw.same(lambda c: c.find_one({"n": 3})) == DOCS[2]
        await tw.same(lambda c: c.find_one())
        await tw.same(lambda c: c.find_one(4))
        await tw.same(lambda c: c.find_one({"n": 3}, {"_id": 0, "k": 1}))
        await tw.same(lambda c: c.find_one({"n": 3}, projection=["k"]))
        await tw.same(lambda c: c.find_one({"k": "a"}, sort=[("n", DESCENDING)]))
        await tw.same(lambda c: c.find_one({"k": "b"}, skip=1, sort=[("n", ASCENDING)]))
        assert await tw.same(lambda c: c.find_one({"n": 100})) is None
        error = await tw.same(lambda c: c.find_one({"$bad": 1}))
        assert isinstance(error, OperationFailure)
        await tw.same(lambda c: c.find_one({}, bogus_option=1))
        await tw.same(lambda c: c.find_one({}, max_time_ms="x"))
        session = await tw.motor_session()
        for s in _sessions(session):
            await tw.same(lambda c, s: c.find_one({"n": 5}, session=s), session=s)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_find(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "find") as tw:
        await tw.seed(DOCS)
        cursor = tw.coll.find()
        assert_motor_class(fw, cursor, "Cursor")
        assert cursor.collection == tw.coll
        await cursor.close()
        docs = await tw.same(
            lambda c: c.find({"k": "a"}, sort=[("n", DESCENDING)]),
            call="cursor",
            expect_class="Cursor",
        )
        assert [d["n"] for d in docs] == [7, 5, 3, 1]
        await tw.same(lambda c: c.find({}, {"k": 1}).sort("n").skip(2).limit(3), call="cursor")
        await tw.same(lambda c: c.find(batch_size=2).sort("_id", -1), call="cursor")
        await tw.same(lambda c: c.find({"$bad": 1}), call="cursor")
        await tw.same(lambda c: c.find({}, bogus_option=1), call="cursor")
        session = await tw.motor_session()
        for s in _sessions(session):
            await tw.same(
                lambda c, s: c.find({"k": "b"}, session=s, batch_size=1).sort("_id"),
                session=s,
                call="cursor",
                expect_class="Cursor",
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_update_replace_delete(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "update") as tw:
        await tw.seed(DOCS)
        result = await tw.same(lambda c: c.update_one({"_id": 1}, {"$set": {"u": 1}}))
        assert (result.matched_count, result.modified_count) == (1, 1)
        result = await tw.same(lambda c: c.update_one({"_id": 20}, {"$set": {"u": 2}}, upsert=True))
        assert result.upserted_id == 20
        await tw.same(lambda c: c.update_one({"_id": 99}, {"$set": {"u": 1}}))
        result = await tw.same(lambda c: c.update_many({"k": "a"}, {"$inc": {"n": 100}}))
        assert result.modified_count == 4
        await tw.same(lambda c: c.update_many({"_id": 21}, {"$set": {"m": 1}}, upsert=True))
        await tw.same(lambda c: c.update_one({"_id": 1}, {"u": 1}))  # ValueError
        error = await tw.same(lambda c: c.update_one({"_id": 1}, {"$bogus": {"u": 1}}))
        assert isinstance(error, WriteError)
        await tw.same(lambda c: c.update_many({}, {"$set": {"_id": 5}}))
        await tw.same(lambda c: c.update_one({"_id": 1}, [{"$set": {"p": 1}}]))  # pipeline
        result = await tw.same(lambda c: c.replace_one({"_id": 20}, {"r": 1}))
        assert result.modified_count == 1
        await tw.same(lambda c: c.replace_one({"_id": 22}, {"r": 2}, upsert=True))
        await tw.same(lambda c: c.replace_one({"_id": 20}, {"$set": {"r": 1}}))  # ValueError
        await tw.same(lambda c: c.replace_one({"_id": 20}, {"_id": 2}))  # immutable _id
        result = await tw.same(lambda c: c.delete_one({"k": "b"}))
        assert result.deleted_count == 1
        result = await tw.same(lambda c: c.delete_many({"_id": {"$gte": 20}}))
        assert result.deleted_count == 3
        await tw.same(lambda c: c.delete_many({"$bad": 1}))
        await tw.same(lambda c: c.delete_one(5))
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.same(
                lambda c, s, i=i: c.update_one({"_id": 2}, {"$set": {"s": i}}, session=s),
                session=s,
            )
            await tw.same(
                lambda c, s, i=i: c.update_many({"k": "a"}, {"$set": {"s": i}}, session=s),
                session=s,
            )
            await tw.same(
                lambda c, s, i=i: c.replace_one({"_id": 3}, {"s": i}, session=s), session=s
            )
            await tw.same(lambda c, s, i=i: c.delete_one({"_id": 4 + i}, session=s), session=s)
            await tw.same(lambda c, s: c.delete_many({"s": 99}, session=s), session=s)
        await session.end_session()
        await tw.same(lambda c: c.find({}, sort=[("_id", 1)]), call="cursor")
    fw.probe.assert_below(MAX_BUSY)


async def test_find_one_and_modify(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "find_and_modify") as tw:
        await tw.seed(DOCS)
        after = ReturnDocument.AFTER
        before = ReturnDocument.BEFORE
        # find_one_and_update
        doc = await tw.same(
            lambda c: c.find_one_and_update(
                {"k": "a"}, {"$set": {"z": 1}}, sort=[("n", DESCENDING)], return_document=after
            )
        )
        assert doc == {"_id": 7, "n": 7, "k": "a", "z": 1}
        doc = await tw.same(lambda c: c.find_one_and_update({"_id": 1}, {"$inc": {"n": 1}}))
        assert doc == {"_id": 1, "n": 1, "k": "a"}  # the document before, by default
        await tw.same(
            lambda c: c.find_one_and_update(
                {"_id": 30}, {"$set": {"z": 2}}, upsert=True, return_document=after
            )
        )
        assert (
            await tw.same(
                lambda c: c.find_one_and_update({"_id": 31}, {"$set": {"z": 3}}, upsert=True)
            )
            is None
        )
        # A projection (FerretDB: NotImplemented, like sync PyMongo sees it).
        await tw.same(
            lambda c: c.find_one_and_update(
                {"k": "b"}, {"$set": {"y": 1}}, projection={"n": 1}, sort=[("n", ASCENDING)]
            )
        )
        await tw.same(lambda c: c.find_one_and_update({"_id": 2}, {"$set": {"_id": 3}}))
        await tw.same(lambda c: c.find_one_and_update({"_id": 2}, {"y": 1}))  # ValueError
        await tw.same(lambda c: c.find_one_and_update({"_id": 2}, {"$set": {"y": 1}}, sort=5))
        # find_one_and_replace
        doc = await tw.same(
            lambda c: c.find_one_and_replace({"_id": 30}, {"z": 3}, return_document=before)
        )
        assert doc == {"_id": 30, "z": 2}
        doc = await tw.same(
            lambda c: c.find_one_and_replace(
                {"_id": 32}, {"z": 4}, upsert=True, return_document=after
            )
        )
        assert doc == {"_id": 32, "z": 4}
        await tw.same(
            lambda c: c.find_one_and_replace(
                {"k": "b"}, {"k": "b", "r": 1}, sort=[("n", DESCENDING)], return_document=after
            )
        )
        await tw.same(lambda c: c.find_one_and_replace({"_id": 30}, {"z": 5}, projection=["z"]))
        await tw.same(lambda c: c.find_one_and_replace({"_id": 30}, {"$set": {"z": 3}}))
        assert await tw.same(lambda c: c.find_one_and_replace({"_id": 99}, {"z": 1})) is None
        # find_one_and_delete
        doc = await tw.same(
            lambda c: c.find_one_and_delete({"z": {"$exists": True}}, sort=[("_id", DESCENDING)])
        )
        assert doc == {"_id": 32, "z": 4}
        await tw.same(lambda c: c.find_one_and_delete({"k": "a"}, projection={"_id": 1}))
        assert await tw.same(lambda c: c.find_one_and_delete({"nope": 1})) is None
        await tw.same(lambda c: c.find_one_and_delete({"$bad": 1}))
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.same(
                lambda c, s, i=i: c.find_one_and_update(
                    {"_id": 4}, {"$set": {"s": i}}, session=s, return_document=after
                ),
                session=s,
            )
            await tw.same(
                lambda c, s, i=i: c.find_one_and_replace({"_id": 5}, {"s": i}, session=s),
                session=s,
            )
            await tw.same(
                lambda c, s, i=i: c.find_one_and_delete({"_id": 5 + i}, session=s), session=s
            )
        await session.end_session()
        await tw.same(lambda c: c.find({}, sort=[("_id", 1)]), call="cursor")
    fw.probe.assert_below(MAX_BUSY)


async def test_bulk_write(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "bulk_write") as tw:
        await tw.seed(DOCS)
        requests = [
            InsertOne({"_id": 40}),
            UpdateOne({"_id": 40}, {"$set": {"b": 1}}),
            UpdateMany({"_id": {"$gte": 40}}, {"$inc": {"c": 1}}),
            ReplaceOne({"_id": 41}, {"r": 1}, upsert=True),
            UpdateOne({"_id": 42}, {"$set": {"u": 1}}, upsert=True),
            DeleteOne({"_id": 1}),
            DeleteMany({"k": "b"}),
        ]
        for ordered in (True, False):
            result = await tw.same(lambda c, o=ordered: c.bulk_write(requests, ordered=o))
            assert result.bulk_api_result["nInserted"] == 1
            # The values only: FerretDB numbers upserts 0, 1, ... instead of by statement
            # (sync PyMongo sees the same, compared above).
            assert sorted(result.upserted_ids.values()) == [41, 42]
            await tw.same(lambda c: c.delete_many({"_id": {"$gte": 40}}))
        # Errors: BulkWriteError with the details sync PyMongo reports.
        # (_id 3 and 5 are still there: the loop above deleted 1 and the "b" documents.)
        failing: list[InsertOne[Any] | UpdateOne] = [
            InsertOne({"_id": 50}),
            InsertOne({"_id": 3}),
            InsertOne({"_id": 51}),
        ]
        failing += [UpdateOne({"_id": 51}, {"$set": {"x": 1}}), InsertOne({"_id": 5})]
        error = await tw.same(lambda c: c.bulk_write(failing))
        assert isinstance(error, BulkWriteError)
        assert error.details["nInserted"] == 1
        assert [e["index"] for e in error.details["writeErrors"]] == [1]
        await tw.same(lambda c: c.delete_many({"_id": {"$gte": 50}}))
        error = await tw.same(lambda c: c.bulk_write(failing, ordered=False))
        assert isinstance(error, BulkWriteError)
        assert error.details["nInserted"] == 2 and error.details["nModified"] == 1
        assert [e["index"] for e in error.details["writeErrors"]] == [1, 4]
        error = await tw.same(lambda c: c.bulk_write([]))
        assert isinstance(error, InvalidOperation)
        error = await tw.same(lambda c: c.bulk_write([{"insertOne": {"document": {}}}]))
        assert isinstance(error, TypeError)
        await tw.same(lambda c: c.bulk_write([UpdateOne({"_id": 1}, {"no_operator": 1})]))
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.same(
                lambda c, s, i=i: c.bulk_write(
                    [InsertOne({"_id": 60 + i}), DeleteOne({"_id": 60 + i})], session=s
                ),
                session=s,
            )
        await session.end_session()
        await tw.same(lambda c: c.find({}, sort=[("_id", 1)]), call="cursor")
    fw.probe.assert_below(MAX_BUSY)


async def test_counts_and_distinct(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "counts") as tw:
        await tw.seed(DOCS)
        assert await tw.same(lambda c: c.count_documents({})) == 7
        assert await tw.same(lambda c: c.count_documents({"k": "a"})) == 4
        await tw.same(lambda c: c.count_documents({}, skip=2, limit=3))
        await tw.same(lambda c: c.count_documents({"$bad": 1}))
        await tw.same(lambda c: c.count_documents())  # filter is required
        await tw.same(lambda c: c.database.missing.count_documents({}))
        assert await tw.same(lambda c: c.estimated_document_count()) == 7
        await tw.same(lambda c: c.estimated_document_count(maxTimeMS=5000))
        await tw.same(lambda c: c.database.missing.estimated_document_count())
        assert await tw.same(lambda c: c.distinct("k"), fix=sorted) == ["a", "b"]
        await tw.same(lambda c: c.distinct("n", {"k": "b"}), fix=sorted)
        await tw.same(lambda c: c.distinct("missing"))
        await tw.same(lambda c: c.distinct(5))
        session = await tw.motor_session()
        for s in _sessions(session):
            await tw.same(lambda c, s: c.count_documents({"k": "b"}, session=s), session=s)
            await tw.same(lambda c, s: c.estimated_document_count(session=s), session=s)
            await tw.same(lambda c, s: c.distinct("k", session=s), session=s, fix=sorted)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


async def test_aggregate(fw: Framework, server: Any) -> None:
    recorder = CommandRecorder()
    async with Twin(fw, server, "aggregate", event_listeners=[recorder]) as tw:
        await tw.seed(DOCS)
        pipeline = [
            {"$match": {"n": {"$gte": 2}}},
            {"$group": {"_id": "$k", "total": {"$sum": "$n"}}},  # one accumulator: FerretDB
            {"$sort": {"_id": 1}},
            {"$project": {"total": 1}},
        ]
        docs = await tw.same(
            lambda c: c.aggregate(pipeline), call="cursor", expect_class="LatentCommandCursor"
        )
        assert docs == [{"_id": "a", "total": 15}, {"_id": "b", "total": 12}]
        await tw.same(lambda c: c.aggregate([{"$sort": {"_id": -1}}], batchSize=2), call="cursor")
        await tw.same(
            lambda c: c.aggregate([{"$match": {"k": "a"}}, {"$count": "n"}]), call="cursor"
        )
        # Latent: the command is sent on the first fetch, and its errors surface there.
        recorder.events.clear()
        cursor = tw.coll.aggregate([{"$noSuchStage": {}}])
        assert_motor_class(fw, cursor, "LatentCommandCursor")
        await tw.db.command("ping")  # a round trip: an eager aggregate would have started
        assert recorder.names() == ["ping"]
        with pytest.raises(OperationFailure) as info:
            await cursor.to_list()
        assert recorder.names().count("aggregate") == 1
        await tw.same(lambda c: c.aggregate([{"$noSuchStage": {}}]), call="cursor")
        assert info.value.code is not None
        # batch_size() before the first fetch is applied to the command.
        recorder.events.clear()
        cursor = tw.coll.aggregate([{"$sort": {"_id": 1}}]).batch_size(3)
        assert_motor_class(fw, cursor, "LatentCommandCursor")
        assert [d["_id"] async for d in cursor] == [d["_id"] for d in DOCS]
        commands = [e.command for e in recorder.events if e.command_name == "aggregate"]
        assert commands[0]["cursor"] == {"batchSize": 3}
        assert recorder.names().count("getMore") == 2
        await tw.same(lambda c: c.aggregate("not a pipeline"), call="cursor")
        session = await tw.motor_session()
        for s in _sessions(session):
            await tw.same(
                lambda c, s: c.aggregate([{"$match": {"k": "b"}}], session=s),
                session=s,
                call="cursor",
                expect_class="LatentCommandCursor",
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


def _decoded(batches: list[bytes]) -> list[list[dict[str, Any]]]:
    assert all(isinstance(batch, bytes) for batch in batches), batches
    return [bson.decode_all(batch) for batch in batches]


async def test_raw_batches(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "raw_batches") as tw:
        await tw.seed(DOCS)
        batches = await tw.same(
            lambda c: c.find_raw_batches({}, sort=[("_id", 1)], batch_size=3),
            call="cursor",
            expect_class="RawBatchCursor",
            fix=_decoded,
        )
        assert batches == [DOCS[0:3], DOCS[3:6], DOCS[6:7]]
        await tw.same(
            lambda c: c.find_raw_batches({"k": "a"}, {"n": 1}).sort("_id", -1),
            call="cursor",
            fix=_decoded,
        )
        await tw.same(lambda c: c.find_raw_batches({"$bad": 1}), call="cursor", fix=_decoded)
        batches = await tw.same(
            lambda c: c.aggregate_raw_batches([{"$sort": {"_id": 1}}], batchSize=2),
            call="cursor",
            expect_class="LatentCommandCursor",
            fix=_decoded,
        )
        assert [doc for batch in batches for doc in batch] == DOCS
        await tw.same(
            lambda c: c.aggregate_raw_batches([{"$noSuchStage": {}}]), call="cursor", fix=_decoded
        )
        # async for over raw batches.
        raw = [batch async for batch in tw.coll.find_raw_batches({}, batch_size=4).sort("_id")]
        assert _decoded(raw) == [DOCS[0:4], DOCS[4:7]]
        raw = [batch async for batch in tw.coll.aggregate_raw_batches([{"$sort": {"_id": 1}}])]
        assert [doc for batch in _decoded(raw) for doc in batch] == DOCS
        session = await tw.motor_session()
        for s in _sessions(session):
            await tw.same(
                lambda c, s: c.find_raw_batches({}, session=s).sort("_id"),
                session=s,
                call="cursor",
                fix=_decoded,
            )
            await tw.same(
                lambda c, s: c.aggregate_raw_batches([{"$sort": {"_id": 1}}], session=s),
                session=s,
                call="cursor",
                fix=_decoded,
            )
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- indexes


async def test_indexes(fw: Framework, server: Any) -> None:
    recorder = CommandRecorder()
    async with Twin(fw, server, "indexes", event_listeners=[recorder]) as tw:
        await tw.seed(DOCS)
        assert await tw.same(lambda c: c.create_index([("n", ASCENDING)], unique=True)) == "n_1"
        assert await tw.same(lambda c: c.create_index("k")) == "k_1"
        await tw.same(lambda c: c.create_index([("k", 1), ("n", -1)], name="kn", sparse=True))
        names = await tw.same(
            lambda c: c.create_indexes(
                [IndexModel("x"), IndexModel([("y", DESCENDING), ("z", 1)], name="yz")]
            )
        )
        assert names == ["x_1", "yz"]
        await tw.same(lambda c: c.create_indexes([]))
        await tw.same(lambda c: c.create_indexes(["not a model"]))
        await tw.same(lambda c: c.create_index([]))
        await tw.same(lambda c: c.create_index([("t", "text")]))  # FerretDB: code 27
        error = await tw.same(lambda c: c.insert_one({"_id": 100, "n": 1}))  # unique index
        assert isinstance(error, DuplicateKeyError)
        info = await tw.same(lambda c: c.index_information())
        assert set(info) == {"_id_", "n_1", "k_1", "kn", "x_1", "yz"}
        # list_indexes: a latent command cursor, no await.
        recorder.events.clear()
        cursor = tw.coll.list_indexes()
        assert_motor_class(fw, cursor, "LatentCommandCursor")
        await tw.db.command("ping")  # a round trip: an eager listIndexes would have started
        assert recorder.names() == ["ping"]
        indexes = await cursor.to_list()
        assert sorted(index["name"] for index in indexes) == sorted(info)
        await tw.same(lambda c: c.list_indexes(), call="cursor", expect_class="LatentCommandCursor")
        # Wrong arguments: a TypeError at the call, naming the method as PyMongo's does.
        with pytest.raises(TypeError, match=r"^Collection\.list_indexes\(\) got an unexpected"):
            tw.coll.list_indexes(foo=1)
        with pytest.raises(TypeError, match=r"^Collection\.watch\(\) got an unexpected"):
            tw.coll.watch(foo=1)
        # Python's own message for the call, as PyMongo's method raises it.
        calls: list[Callable[[Any], Any]] = [
            lambda c: c.list_indexes(None, None, None),
            lambda c: c.watch(*range(13)),
            lambda c: c.aggregate([], None, None, None, None),
        ]
        for call in calls:
            with pytest.raises(TypeError) as ours:
                call(tw.coll)
            with pytest.raises(TypeError) as pymongo_s:
                call(tw.coll.delegate)
            assert str(ours.value) == str(pymongo_s.value)
            assert "positional arguments but" in str(ours.value)
        await tw.same(lambda c: c.database.missing.list_indexes(), call="cursor")
        await tw.same(lambda c: c.database.missing.index_information())
        assert await tw.same(lambda c: c.drop_index("kn")) is None
        await tw.same(lambda c: c.drop_index([("y", DESCENDING), ("z", 1)]))  # by key: "y_-1_z_1"
        await tw.same(lambda c: c.drop_index("yz"))
        error = await tw.same(lambda c: c.drop_index("no_such_index"))
        assert isinstance(error, OperationFailure)
        await tw.same(lambda c: c.drop_index("*"))  # ValueError
        await tw.same(lambda c: c.drop_index(5))
        await tw.same(lambda c: c.index_information())
        assert await tw.same(lambda c: c.drop_indexes()) is None
        assert list(await tw.same(lambda c: c.index_information())) == ["_id_"]
        await tw.same(lambda c: c.database.missing.drop_indexes())
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.same(lambda c, s, i=i: c.create_index(f"s{i}", session=s), session=s)
            await tw.same(
                lambda c, s, i=i: c.create_indexes([IndexModel(f"t{i}")], session=s), session=s
            )
            await tw.same(lambda c, s: c.index_information(session=s), session=s)
            await tw.same(
                lambda c, s: c.list_indexes(session=s),
                session=s,
                call="cursor",
                expect_class="LatentCommandCursor",
            )
            await tw.same(lambda c, s, i=i: c.drop_index(f"s{i}_1", session=s), session=s)
            await tw.same(lambda c, s: c.drop_indexes(session=s), session=s)
        await session.end_session()
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------------------------------- the collection itself


async def test_rename_drop_options(fw: Framework, server: Any) -> None:
    async with Twin(fw, server, "rename") as tw:
        await tw.seed(DOCS)
        await tw.seed([{"_id": 1}], name="other")
        await tw.same(lambda c: c.database.create_collection("capped", capped=True, size=8192))
        # options()
        assert await tw.same(lambda c: c.options()) == {}
        assert (await tw.same(lambda c: c.database.capped.options()))["capped"] is True
        await tw.same(lambda c: c.database.missing.options())
        # rename(): the Motor collection keeps its name, as in PyMongo.
        result = await tw.same(lambda c: c.rename("renamed"))
        assert result["ok"] == 1
        assert tw.coll.name == "c"
        assert await tw.db.renamed.count_documents({}) == len(DOCS)
        await tw.same(lambda c: c.database.renamed.rename("other"))  # NamespaceExists
        await tw.same(lambda c: c.database.renamed.rename("other", dropTarget=True))
        await tw.same(lambda c: c.database.other.rename("$bad"))
        await tw.same(lambda c: c.database.other.rename(5))
        await tw.same(lambda c: c.database.missing.rename("x"))
        await tw.same(lambda c: c.database.list_collection_names(), fix=sorted)
        # drop()
        assert await tw.same(lambda c: c.database.capped.drop()) is None
        await tw.same(lambda c: c.database.missing.drop())
        assert "capped" not in await tw.db.list_collection_names()
        session = await tw.motor_session()
        for i, s in enumerate(_sessions(session)):
            await tw.seed([{"_id": 1}], name=f"s{i}")
            await tw.same(lambda c, s, i=i: c.database[f"s{i}"].options(session=s), session=s)
            await tw.same(
                lambda c, s, i=i: c.database[f"s{i}"].rename(f"t{i}", session=s), session=s
            )
            await tw.same(lambda c, s, i=i: c.database[f"t{i}"].drop(session=s), session=s)
        await session.end_session()
        await tw.same(lambda c: c.database.list_collection_names(), fix=sorted)
    fw.probe.assert_below(MAX_BUSY)


async def test_collection_constructor(fw: Framework, server: Any) -> None:
    # Motor 3.7.1's MotorCollection(database, name, codec_options, read_preference,
    # write_concern, read_concern): no I/O, so nothing that creates the collection.
    async with Twin(fw, server, "coll_constructor") as tw:
        cls = type(tw.coll)
        options = CodecOptions(document_class=SON)
        coll = cls(tw.db, "c", options)  # the third argument is the codec options
        assert_motor_class(fw, coll, "Collection")
        assert coll == tw.coll and coll.database is tw.db and coll.codec_options == options
        secondary = ReadPreference.SECONDARY_PREFERRED
        write_concern, read_concern = WriteConcern(w=1), ReadConcern("local")
        coll = cls(tw.db, "c", None, secondary, write_concern, read_concern)
        assert (coll.read_preference, coll.write_concern, coll.read_concern) == (
            secondary,
            write_concern,
            read_concern,
        )
        await tw.seed([{"_id": 1}])
        assert isinstance(await cls(tw.db, "c", codec_options=options).find_one(), SON)

        with pytest.raises(TypeError, match="create_collection"):
            cls(tw.db, "new", capped=True, size=1024)
        with pytest.raises(TypeError, match="create_collection"):
            cls(tw.db, "new", create=True)
        db_name = type(tw.db).__name__
        with pytest.raises(TypeError, match=f"must be {db_name}, not Database"):
            cls(tw.db.delegate, "c")
        # The other framework's database or collection is refused too, as in Motor 3.7.1.
        other_client = Loops("tornado" if fw.name == "asyncio" else "asyncio").client(
            server.uri, connect=False
        )
        try:
            other_db = other_client.motor_test
            refused = f"must be {db_name}, not {type(other_db).__name__}"
            with pytest.raises(TypeError, match=refused):
                cls(other_db, "c")
            module = sys.modules[cls.__module__]
            prefix = cls.__name__[: -len("Collection")]
            with pytest.raises(TypeError, match=refused):
                getattr(module, f"{prefix}GridFSBucket")(other_db)
            refused = f"must be {cls.__name__}, not {type(other_db.fs).__name__}"
            with pytest.raises(TypeError, match=refused):
                getattr(module, f"{prefix}GridIn")(other_db.fs)
        finally:
            other_client.close()
        assert await tw.db.list_collection_names() == ["c"]
    fw.probe.assert_below(MAX_BUSY)
