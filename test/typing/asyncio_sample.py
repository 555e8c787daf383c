"""Typed use of Motor's asyncio API.

Not a test that runs: ``test/test_typing.py`` checks it with ``mypy --strict`` against
the generated stubs (``motor/motor_asyncio.pyi``).  Each annotated assignment asserts
the type the stubs give, without ``reveal_type``.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Mapping
from typing import Any, TypedDict, assert_type

from bson import ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING
from pymongo.results import InsertManyResult, InsertOneResult, UpdateResult

from motor.core import (
    AgnosticBaseProperties,
    AgnosticClient,
    AgnosticClientSession,
    AgnosticCollection,
    AgnosticCommandCursor,
    AgnosticCursor,
)
from motor.motor_asyncio import (
    AsyncIOMotorChangeStream,
    AsyncIOMotorClient,
    AsyncIOMotorClientSession,
    AsyncIOMotorCollection,
    AsyncIOMotorCommandCursor,
    AsyncIOMotorCursor,
    AsyncIOMotorDatabase,
    AsyncIOMotorGridFSBucket,
    AsyncIOMotorLatentCommandCursor,
)


class Movie(TypedDict):
    name: str
    year: int


async def crud(client: AsyncIOMotorClient[Movie]) -> None:
    # client.db.coll: attribute access types as database and collection.
    db: AsyncIOMotorDatabase[Movie] = client.test
    movies: AsyncIOMotorCollection[Movie] = db.movies
    same: AsyncIOMotorCollection[Movie] = client["test"]["movies"]
    assert same.database.client is not None

    inserted: InsertOneResult = await movies.insert_one({"name": "Jaws", "year": 1975})
    new_id: Any = inserted.inserted_id
    many: InsertManyResult = await movies.insert_many(
        [Movie(name="Alien", year=1979), Movie(name="Heat", year=1995)]
    )
    assert len(many.inserted_ids) == 2

    doc: Movie | None = await movies.find_one({"_id": new_id})
    if doc is not None:
        year: int = doc["year"]
        print(year)
    updated: UpdateResult = await movies.update_one({"name": "Jaws"}, {"$inc": {"year": 1}})
    assert updated.modified_count in (0, 1)
    count: int = await movies.count_documents({"year": {"$gt": 1970}})
    names: list[Any] = await movies.distinct("name")
    index: str = await movies.create_index([("year", ASCENDING)])
    print(count, names, index)

    # A collection of raw BSON documents (PyMongo's with_options overloads).
    raw: AsyncIOMotorCollection[RawBSONDocument] = movies.with_options(
        codec_options=CodecOptions(document_class=RawBSONDocument)
    )
    raw_doc: RawBSONDocument | None = await raw.find_one()
    print(raw_doc)


async def inferred_document_class() -> None:
    # As with PyMongo's MongoClient (and Motor 3.7.1): document_class sets the client's
    # document type, no annotation needed.
    client = AsyncIOMotorClient(document_class=RawBSONDocument, connect=False)
    raw: RawBSONDocument | None = await client.db.coll.find_one()
    if raw is not None:
        print(len(raw.raw))
    client.close()


async def cursors(movies: AsyncIOMotorCollection[Movie]) -> None:
    # find() makes a cursor without I/O; chaining returns the same Motor cursor.
    cursor: AsyncIOMotorCursor[Movie] = movies.find({"year": {"$lt": 2000}}).sort("year").limit(5)
    async for movie in cursor:
        title: str = movie["name"]
        print(title)
    first_two: list[Movie] = await movies.find().to_list(2)
    every: list[Movie] = await movies.find().to_list()
    print(first_two, every)
    async with movies.find() as scoped:
        one: Movie = await scoped.next()
        print(one)

    # aggregate() is latent: no await to get it, the command runs on the first fetch.
    pipeline: list[dict[str, Any]] = [{"$match": {"year": {"$gte": 1990}}}, {"$sort": {"year": 1}}]
    latent: AsyncIOMotorLatentCommandCursor[Movie] = movies.aggregate(pipeline)
    async for result in latent.batch_size(10):
        print(result["name"])
    aggregated: list[Movie] = await movies.aggregate(pipeline).to_list(None)
    print(aggregated)

    indexes = movies.list_indexes()
    async for index in indexes:
        print(index["key"])

    client = movies.database.client
    databases: AsyncIOMotorCommandCursor[dict[str, Any]] = await client.list_databases()
    async for info in databases:
        print(info["name"])


async def sessions(client: AsyncIOMotorClient[Movie]) -> None:
    movies = client.test.movies
    async with await client.start_session() as session:
        typed: AsyncIOMotorClientSession = session
        async with session.start_transaction():
            await movies.insert_one({"name": "Up", "year": 2009}, session=typed)
            await movies.delete_many({"year": {"$lt": 1900}}, session=session)
        print(session.in_transaction)
    # start_session() is also an async context manager without the await.
    async with client.start_session() as session:
        await movies.find_one({}, session=session)
    # And a coroutine to asyncio.create_task(), as Motor 3.7.1's was.
    starting: asyncio.Task[AsyncIOMotorClientSession] = asyncio.create_task(client.start_session())
    async with await starting as session:
        await movies.find_one({}, session=session)

    async def transfer(session: AsyncIOMotorClientSession) -> ObjectId:
        result = await movies.insert_one({"name": "Big", "year": 1988}, session=session)
        inserted: ObjectId = result.inserted_id
        return inserted

    async with await client.start_session() as session:
        new_id: ObjectId = await session.with_transaction(transfer)
        print(new_id)


async def session_types(client: AsyncIOMotorClient[Movie]) -> None:
    # What awaiting start_session() gives, to every type checker (pyright reads it from the
    # first Awaitable base of the stubs' _SessionFuture: test_session_future_awaits_to_...).
    assert_type(await client.start_session(), AsyncIOMotorClientSession)


async def gridfs(database: AsyncIOMotorDatabase[Movie]) -> Any:
    bucket = AsyncIOMotorGridFSBucket(database)
    grid_in = bucket.open_upload_stream("notes.txt")
    await grid_in.write(b"hello")
    await grid_in.close()
    # The file attributes have PyMongo's types (filename and name Motor 3.7.1's), _id (the
    # upload's file id) included.
    assert_type(grid_in.filename, str)
    assert_type(grid_in.length, int)
    grid_out = await bucket.open_download_stream(grid_in._id)
    assert_type(grid_out.filename, str | None)
    assert_type(grid_out.upload_date, datetime.datetime)
    assert_type(grid_out.metadata, Mapping[str, Any] | None)
    assert_type(await grid_out.read(), bytes)
    return grid_out._id


async def change_streams(client: AsyncIOMotorClient[Movie]) -> None:
    movies = client.test.movies
    inserts = [{"$match": {"operationType": "insert"}}]
    stream: AsyncIOMotorChangeStream[Movie] = movies.watch(inserts)
    async with stream:
        change: Movie | None = await stream.try_next()
        print(change, stream.resume_token)
    async for event in client.test.watch(max_await_time_ms=100):
        print(event)
        break


def framework_neutral(client: AgnosticClient[Movie], movies: AgnosticCollection[Movie]) -> None:
    print(client, movies)


async def neutral_classes(client: AsyncIOMotorClient[Movie]) -> None:
    # Code annotated with Motor 3.x's framework-neutral classes (motor.core's, as Beanie
    # annotates) takes the asyncio classes, which derive from them.
    movies = client.test.movies
    framework_neutral(client, movies)
    cursor: AgnosticCursor[Movie] = movies.find()
    print(cursor)
    pipeline: AgnosticCommandCursor[Movie] = movies.aggregate([])
    print(pipeline)
    properties: AgnosticBaseProperties[Movie] = movies
    print(properties)
    async with await client.start_session() as session:
        neutral_session: AgnosticClientSession = session
        print(neutral_session)


async def motor_371_annotations(movies: AsyncIOMotorCollection[Movie]) -> None:
    # Motor 3.7.1's stubs typed collection.aggregate() as AsyncIOMotorCommandCursor.
    pipeline: AsyncIOMotorCommandCursor[Movie] = movies.aggregate([])
    print(pipeline)


class HelperCollection(AsyncIOMotorCollection[Movie]):
    # Quart-Motor's collection sets its database, an attribute in Motor 3.7.1.
    def __init__(self, database: AsyncIOMotorDatabase[Movie], name: str) -> None:
        super().__init__(database, name)
        self.database = database


async def main() -> None:
    client: AsyncIOMotorClient[Movie] = AsyncIOMotorClient("mongodb://127.0.0.1:27017")
    loop = asyncio.get_running_loop()
    plain: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(io_loop=loop)
    try:
        await crud(client)
        await cursors(client.test.movies)
        await sessions(client)
        await session_types(client)
        await gridfs(client.test)
        await change_streams(client)
        await neutral_classes(client)
        info: dict[str, Any] = await plain.admin.command("ping")
        print(info)
    finally:
        client.close()  # Motor 3.7.1 style: not awaited
        await plain.close()


if __name__ == "__main__":
    asyncio.run(main())
