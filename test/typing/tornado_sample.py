"""Typed use of Motor's Tornado API.

Not a test that runs: ``test/test_typing.py`` checks it with ``mypy --strict`` against
the generated stubs (``motor/motor_tornado.pyi``).  Motor's futures are awaitable and
yieldable in ``tornado.gen.coroutine`` generators (where ``yield`` gives ``Any``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, TypedDict

from pymongo.results import InsertOneResult
from tornado import gen, web
from tornado.ioloop import IOLoop

from motor.core import AgnosticCollection, AgnosticLatentCommandCursor
from motor.motor_tornado import (
    MotorChangeStream,
    MotorClient,
    MotorClientSession,
    MotorCollection,
    MotorCursor,
    MotorDatabase,
    MotorLatentCommandCursor,
)


class Movie(TypedDict):
    name: str
    year: int


class MovieHandler(web.RequestHandler):
    """``GET /movies/<name>``: a Motor 3.7.1-style handler, a ``gen.coroutine`` generator."""

    def initialize(self, movies: MotorCollection[Movie]) -> None:
        self.movies = movies

    @gen.coroutine
    def get(self, name: str) -> Generator[Any, Any, None]:
        doc: Movie | None = yield self.movies.find_one({"name": name})
        if doc is None:
            raise web.HTTPError(404)
        cursor: MotorCursor[Movie] = self.movies.find({"year": doc["year"]}).limit(10)
        same_year: list[Movie] = yield cursor.to_list(None)
        self.write({"movie": doc["name"], "same_year": [m["name"] for m in same_year]})


class StatsHandler(web.RequestHandler):
    """A native coroutine handler: the same futures, awaited."""

    def initialize(self, movies: MotorCollection[Movie]) -> None:
        self.movies = movies

    async def get(self) -> None:
        count: int = await self.movies.count_documents({})
        pipeline: list[dict[str, Any]] = [{"$group": {"_id": "$year", "n": {"$sum": 1}}}]
        latent: MotorLatentCommandCursor[Movie] = self.movies.aggregate(pipeline)
        by_year: list[Movie] = await latent.to_list(100)
        self.write({"count": count, "years": len(by_year)})

    async def post(self) -> None:
        result: InsertOneResult = await self.movies.insert_one({"name": "Jaws", "year": 1975})
        self.write({"id": str(result.inserted_id)})


@gen.coroutine
def each_movie(movies: MotorCollection[Movie]) -> Generator[Any, Any, int]:
    seen = 0
    cursor = movies.find()
    while (yield cursor.fetch_next):
        movie: Movie | None = cursor.next_object()
        if movie is not None:
            seen += 1
    return seen


def count_later(movies: AgnosticCollection[Movie], year: int) -> None:
    # Annotated with Motor 3.x's framework-neutral classes: takes the Tornado classes too.
    print(movies, year)


def neutral(movies: MotorCollection[Movie]) -> AgnosticLatentCommandCursor[Movie]:
    count_later(movies, 2000)
    return movies.aggregate([{"$sort": {"year": -1}}])


async def in_transaction(client: MotorClient[Movie]) -> None:
    movies = client.test.movies

    async def insert(session: MotorClientSession) -> None:
        await movies.insert_one({"name": "Up", "year": 2009}, session=session)

    async with await client.start_session() as session:
        await session.with_transaction(insert)
        async with session.start_transaction():
            await movies.delete_one({"name": "Up"}, session=session)
    starting: asyncio.Task[MotorClientSession] = asyncio.create_task(client.start_session())
    async with await starting as session:
        await movies.find_one({}, session=session)


async def changes(db: MotorDatabase[Movie]) -> None:
    stream: MotorChangeStream[Movie] = db.watch()
    async with stream:
        async for change in stream:
            print(change)
            break


def make_app(client: MotorClient[Movie]) -> web.Application:
    movies: MotorCollection[Movie] = client.test.movies
    return web.Application(
        [
            (r"/movies/(.*)", MovieHandler, {"movies": movies}),
            (r"/stats", StatsHandler, {"movies": movies}),
        ]
    )


def main() -> None:
    client: MotorClient[Movie] = MotorClient("mongodb://127.0.0.1:27017")
    make_app(client).listen(8888)
    seen: Any = IOLoop.current().run_sync(lambda: each_movie(client.test.movies))
    print(seen)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
