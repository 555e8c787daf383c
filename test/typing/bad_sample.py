"""Misuse that the stubs must reject: ``test/test_typing.py`` runs ``mypy --strict`` on
this file and expects an error on exactly the lines marked ``# E: <error code>``.

With mypy's ``unused-awaitable`` check on (``doc/compatibility.rst`` recommends it), a
forgotten ``await`` is an error too."""

# mypy: enable-error-code="unused-awaitable"

from __future__ import annotations

from typing import Any, TypedDict

from bson.raw_bson import RawBSONDocument
from tornado import gen

from motor.core import AgnosticClient, AgnosticCollection, AgnosticCursor, AgnosticDatabase
from motor.motor_asyncio import (
    AsyncIOMotorClient,
    AsyncIOMotorCollection,
    AsyncIOMotorCursor,
)
from motor.motor_tornado import MotorCollection


class Movie(TypedDict):
    name: str
    year: int


class Person(TypedDict):
    name: str
    born: int


async def wrong_documents(movies: AsyncIOMotorCollection[Movie]) -> None:
    await movies.insert_one({"name": "Jaws", "year": "1975"})  # E: arg-type
    await movies.insert_one(Person(name="Ann", born=1950))  # E: arg-type
    await movies.insert_many([{"name": "Alien"}])  # E: list-item
    _person: Person | None = await movies.find_one()  # E: assignment
    async for movie in movies.find():
        print(movie["title"])  # E: typeddict-item
    _people: list[Person] = await movies.find().to_list(None)  # E: assignment
    _year: str = (await movies.find().next())["year"]  # E: assignment


async def forgotten_await(movies: AsyncIOMotorCollection[Movie]) -> None:
    movies.insert_one({"name": "Jaws", "year": 1975})  # E: unused-awaitable
    movies.find().to_list()  # E: unused-awaitable


async def not_awaitable(movies: AsyncIOMotorCollection[Movie]) -> None:
    await movies.find({})  # E: misc
    await movies.aggregate([])  # E: misc
    await movies.watch()  # E: misc
    await movies.find().sort("year")  # E: misc
    await movies.find().next_object()  # E: misc
    for movie in movies.find():  # E: attr-defined
        print(movie)


async def wrong_arguments(client: AsyncIOMotorClient[Movie]) -> None:
    movies = client.test.movies
    await movies.count_documents({}, session="abc")  # E: arg-type
    await movies.find_one_and_update({"name": 1}, {"$set": {}}, upsert="yes")  # E: arg-type
    await client.test.list_collection_names(filter=[("a", 1)])  # E: arg-type
    movies.find().limit("10")  # E: arg-type
    await movies.create_index(keys=1.5)  # E: arg-type
    _count: str = await movies.count_documents({})  # E: assignment
    _cursor: AsyncIOMotorCursor[Movie] = movies.aggregate([])  # E: assignment


async def sessions(client: AsyncIOMotorClient[Movie]) -> None:
    session = client.start_session()
    session.end_session()  # E: attr-defined

    async def callback(session: Any, extra: int) -> None:
        pass

    async with await client.start_session() as s:
        await s.with_transaction(callback)  # E: arg-type


async def raw_client() -> None:
    client = AsyncIOMotorClient(document_class=RawBSONDocument)
    await client.db.coll.insert_one({"my": "doc"})  # E: arg-type
    raw = await client.db.coll.find_one()
    if raw is not None:
        raw["foo"] = "bar"  # E: index


async def framework_neutral(
    client: AgnosticClient[Movie], db: AgnosticDatabase[Movie], movies: AgnosticCollection[Movie]
) -> None:
    # motor.core's classes are typed (motor/core.pyi), as in Motor 3.7.1.
    await movies.insert_one({"name": "Jaws", "year": "1975"})  # E: arg-type
    _person: Person | None = await movies.find_one()  # E: assignment
    movies.insert_one({"name": "Jaws", "year": 1975})  # E: unused-awaitable
    await movies.find({})  # E: misc
    movies.find().limit("10")  # E: arg-type
    _cursor: AgnosticCursor[Movie] = movies.aggregate([])  # E: assignment
    db.get_collection(42)  # E: arg-type
    _people: AgnosticCollection[Person] = db.movies  # E: assignment
    await db.list_collection_names(filter=[("a", 1)])  # E: arg-type
    session = client.start_session()
    session.end_session()  # E: attr-defined


@gen.coroutine
def tornado_handler(movies: MotorCollection[Movie]) -> Any:
    yield movies.insert_one({"name": 1, "year": 1975})  # E: arg-type
