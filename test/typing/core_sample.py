"""Typed use of Motor's framework-neutral classes, as code written for Motor 3.7.1 annotates.

Not a test that runs: ``test/test_typing.py`` checks it with ``mypy --strict`` against
the generated stub ``motor/core.pyi``.  Libraries that support both frameworks annotate
with ``motor.core``'s classes (``AgnosticCollection``, ``AgnosticDatabase``, ...); their
methods are typed as the framework classes' are, and what they return is framework-neutral
too (``AgnosticDatabase.get_collection()`` is an ``AgnosticCollection``).  Each
``assert_type`` asserts the type the stub gives (an ``Any`` fails it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, MutableMapping
from typing import Any, TypedDict, assert_type

from bson.raw_bson import RawBSONDocument
from pymongo.results import DeleteResult, InsertOneResult, UpdateResult

from motor.core import (
    AgnosticBaseProperties,
    AgnosticChangeStream,
    AgnosticClient,
    AgnosticClientEncryption,
    AgnosticClientSession,
    AgnosticCollection,
    AgnosticCommandCursor,
    AgnosticCursor,
    AgnosticDatabase,
    AgnosticLatentCommandCursor,
    current_loop,
)
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient


class Movie(TypedDict):
    name: str
    year: int


async def crud(movies: AgnosticCollection[Movie]) -> list[Movie]:
    assert_type(await movies.find_one({"name": "Jaws"}), Movie | None)
    assert_type(await movies.insert_one({"name": "Jaws", "year": 1975}), InsertOneResult)
    updated = await movies.update_one({"name": "Jaws"}, {"$set": {"year": 1976}})
    assert_type(updated, UpdateResult)
    assert_type(await movies.delete_many({"year": {"$lt": 1900}}), DeleteResult)
    assert_type(await movies.count_documents({}), int)
    assert_type(await movies.distinct("name"), list[Any])
    cursor = movies.find({"year": {"$gt": 1970}}).sort("year").skip(1).limit(10)
    assert_type(cursor, AgnosticCursor[Movie])
    async for movie in movies.find():
        assert_type(movie, Movie)
    return await cursor.to_list(None)


def collections(db: AgnosticDatabase[Movie]) -> AgnosticCollection[Movie]:
    assert_type(db.movies, AgnosticCollection[Movie])
    assert_type(db["movies"], AgnosticCollection[Movie])
    assert_type(db.client, AgnosticClient[Movie])
    assert_type(db.movies.database, AgnosticDatabase[Movie])
    properties: AgnosticBaseProperties[Movie] = db
    print(properties)
    return db.get_collection("movies")


async def database(db: AgnosticDatabase[Movie]) -> None:
    assert_type(await db.command("ping"), dict[str, Any])
    assert_type(await db.list_collection_names(), list[str])
    assert_type(await db.create_collection("new"), AgnosticCollection[Movie])
    listed = await db.list_collections()
    assert_type(listed, AgnosticCommandCursor[MutableMapping[str, Any]])
    assert_type(db.with_options(), AgnosticDatabase[Movie])


async def cursors(movies: AgnosticCollection[Movie]) -> None:
    pipeline = movies.aggregate([{"$match": {}}])
    assert_type(pipeline, AgnosticLatentCommandCursor[Movie])
    async for document in pipeline:
        assert_type(document, Movie)
    indexes = await movies.list_indexes().to_list(None)
    assert_type(indexes, list[MutableMapping[str, Any]])
    stream = movies.watch(max_await_time_ms=100)
    assert_type(stream, AgnosticChangeStream[Movie])
    async with stream:
        assert_type(await stream.try_next(), Movie | None)
        assert_type(stream.resume_token, Mapping[str, Any] | None)


async def sessions(client: AgnosticClient[Movie]) -> None:
    session = await client.start_session()
    assert_type(session, AgnosticClientSession)
    await session.end_session()
    async with client.start_session() as s:
        assert_type(s, AgnosticClientSession)
        async with s.start_transaction():
            await client.test.movies.insert_one({"name": "Heat", "year": 1995}, session=s)

    async def callback(session: AgnosticClientSession) -> int:
        movies = session.client.test.movies
        return await movies.count_documents({}, session=session)

    async with await client.start_session() as s:
        assert_type(await s.with_transaction(callback), int)
    assert_type(client.get_database("test"), AgnosticDatabase[Movie])
    assert_type(await client.list_database_names(), list[str])
    databases = await client.list_databases()
    assert_type(databases, AgnosticCommandCursor[dict[str, Any]])


async def encryption(keys: AgnosticClientEncryption[Mapping[str, Any]]) -> None:
    assert_type(await keys.get_keys(), AgnosticCursor[RawBSONDocument])


async def main() -> None:
    # The framework classes derive from the neutral ones: functions annotated with those
    # take them, whatever the framework.
    client: AsyncIOMotorClient[Movie] = AsyncIOMotorClient()
    tornado_client: MotorClient[Movie] = MotorClient()
    print(collections(client.test), collections(tornado_client.test))
    await crud(client.test.movies)
    await database(client.test)
    await cursors(client.test.movies)
    await sessions(client)
    assert_type(current_loop(), asyncio.AbstractEventLoop | None)
    client.close()


if __name__ == "__main__":
    asyncio.run(main())


async def framework_objects_from_neutral_ones(
    db: AgnosticDatabase[Movie], movies: AgnosticCollection[Movie], client: AgnosticClient[Any]
) -> None:
    # The framework classes' constructors take the neutral classes, as Motor 3.7.1's
    # stubs did (any framework's object of that kind).
    from motor.motor_asyncio import (
        AsyncIOMotorCollection,
        AsyncIOMotorDatabase,
        AsyncIOMotorGridFSBucket,
        AsyncIOMotorGridIn,
    )
    from motor.motor_tornado import MotorGridFSBucket

    assert_type(AsyncIOMotorGridFSBucket(db), AsyncIOMotorGridFSBucket)
    assert_type(MotorGridFSBucket(db), MotorGridFSBucket)
    assert_type(AsyncIOMotorGridIn(movies), AsyncIOMotorGridIn)
    assert_type(AsyncIOMotorDatabase(client, "db"), AsyncIOMotorDatabase[Any])
    assert_type(AsyncIOMotorCollection(db, "movies"), AsyncIOMotorCollection[Movie])
