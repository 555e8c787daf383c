"""Timeouts: ``pymongo.timeout()``, ``timeoutMS``, ``socketTimeoutMS``, ``maxTimeMS`` and
``serverSelectionTimeoutMS``.

To have something that takes long, the examples wait on a tailable cursor for a document that
never comes (the server holds each ``getMore`` for up to ``max_await_time_ms``) and scan ten
thousand documents.  The server is ``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/timeouts.py
"""

import asyncio
import os
import socket
import time

import pymongo
from pymongo import CursorType
from pymongo.errors import ExecutionTimeout, NetworkTimeout, PyMongoError

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


async def read_news(client):
    """Open a tailable cursor on the news and read the three headlines there.

    Without a deadline (``pymongo.timeout(0)`` means none, as ``timeoutMS=0`` does): a
    deadline would also set ``maxTimeMS`` on the ``find``, and FerretDB 1.24, the server these
    examples are tested against, then discards the cursor during its first wait, which can fail
    at once with an internal error instead of waiting.
    """
    cursor = client.examples.news.find(cursor_type=CursorType.TAILABLE_AWAIT)
    cursor.batch_size(1).max_await_time_ms(5000)
    with pymongo.timeout(0):
        for _ in range(3):
            await cursor.next()
    return cursor


async def wait_for_more(news):
    """Wait for another headline, which nobody inserts (the server holds getMore up to 5 s)."""
    await news.next()


def report(what, exc, started):
    elapsed = time.monotonic() - started
    # exc.timeout is True for every error that a timeout caused, whatever its class.
    print(f"{what}: {type(exc).__name__} after {elapsed:.1f} s, timeout={exc.timeout}")


async def main():
    client = AsyncIOMotorClient(URI)
    db = client.examples
    await db.drop_collection("news")
    await db.create_collection("news", capped=True, size=64 * 1024)
    await db.news.insert_many([{"headline": "first"}, {"headline": "second"}])

    # pymongo.timeout(): one deadline for everything in the block, here 0.5 s.  It works
    # with Motor as with PyMongo (it is a context variable, and Motor runs each operation
    # with the caller's context).
    with pymongo.timeout(0.5):
        await db.news.insert_one({"headline": "third"})
        print("in time:", await db.news.count_documents({}))
    news = await read_news(client)
    started = time.monotonic()
    try:
        with pymongo.timeout(0.5):
            await wait_for_more(news)
    except PyMongoError as exc:
        report("pymongo.timeout(0.5)", exc, started)

    # timeoutMS: the same deadline for every operation of a client, here the wait.
    quick = AsyncIOMotorClient(URI, timeoutMS=300)
    news = await read_news(quick)
    started = time.monotonic()
    try:
        await wait_for_more(news)
    except PyMongoError as exc:
        report("timeoutMS=300", exc, started)
    await quick.close()

    # socketTimeoutMS: how long to wait for one reply from the server.
    impatient = AsyncIOMotorClient(URI, socketTimeoutMS=300)
    news = await read_news(impatient)
    started = time.monotonic()
    try:
        await wait_for_more(news)
    except NetworkTimeout as exc:
        report("socketTimeoutMS=300", exc, started)
    await impatient.close()

    # maxTimeMS: the server gives up on the operation (error code 50); the connection
    # stays usable.  Scanning ten thousand documents takes longer than 1 ms.
    await db.numbers.drop()
    await db.numbers.insert_many({"n": n} for n in range(10_000))
    started = time.monotonic()
    try:
        await db.numbers.find({"n": {"$lt": 0}}).max_time_ms(1).to_list()
    except ExecutionTimeout as exc:
        report("max_time_ms(1)", exc, started)
        print("  server error code:", exc.code)

    # serverSelectionTimeoutMS: how long to look for a server that is not there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free_port = sock.getsockname()[1]  # nothing listens there once the socket closes
    nowhere = AsyncIOMotorClient(f"mongodb://127.0.0.1:{free_port}", serverSelectionTimeoutMS=300)
    started = time.monotonic()
    try:
        await nowhere.admin.command("ping")
    except PyMongoError as exc:
        report("serverSelectionTimeoutMS=300", exc, started)
    await nowhere.close()

    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
