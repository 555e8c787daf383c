"""Cursors: querying, iterating, batches, indexes, and a tailable cursor on a capped collection.

The server is ``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/cursors.py
"""

import asyncio
import os

import pymongo
from pymongo import CursorType

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


async def queries(db):
    fruit = db.fruit
    await fruit.drop()
    await fruit.insert_many(
        [
            {"_id": 1, "name": "apple", "color": "red", "price": 3},
            {"_id": 2, "name": "banana", "color": "yellow", "price": 2},
            {"_id": 3, "name": "cherry", "color": "red", "price": 8},
            {"_id": 4, "name": "lemon", "color": "yellow", "price": 4},
            {"_id": 5, "name": "lime", "color": "green", "price": 5},
        ]
    )

    # find() is not awaited: it returns a cursor at once, and nothing is sent until the
    # first document is fetched.  Modifiers chain before that.
    cursor = fruit.find({"color": {"$in": ["red", "yellow"]}}, {"_id": 0, "name": 1})
    cursor.sort("price", pymongo.DESCENDING).skip(1).limit(2)

    # async for fetches batch by batch, awaiting each getMore.
    async for doc in cursor:
        print("async for:", doc)

    # to_list() collects the documents; a length caps how many.
    cheap = await fruit.find({"price": {"$lt": 5}}, sort=[("price", 1)]).to_list(2)
    print("to_list(2):", [doc["name"] for doc in cheap])
    print("to_list():", len(await fruit.find().to_list()))

    # next() fetches one document and raises StopAsyncIteration at the end.
    cursor = fruit.find({"color": "green"})
    print("next():", await cursor.next())

    # batch_size sets how many documents each round trip carries: five documents in
    # batches of two take a find and two getMores.  to_list(n) returns the next n, so a
    # large result can be processed in chunks.
    cursor = fruit.find(sort=[("_id", 1)]).batch_size(2)
    while chunk := await cursor.to_list(2):
        print("chunk:", [doc["_id"] for doc in chunk])

    # find_one, counts and distinct are awaited directly.
    print("find_one:", await fruit.find_one({"name": "lime"}, {"_id": 0}))
    print("count_documents:", await fruit.count_documents({"color": "red"}))
    print("distinct:", sorted(await fruit.distinct("color")))

    # Indexes: create_index is awaited; list_indexes() returns a cursor like find().
    name = await fruit.create_index([("color", 1), ("price", -1)])
    print("created index:", name)
    async for index in fruit.list_indexes():
        print("  index", index["name"], dict(index["key"]))


async def tail(db):
    # A tailable cursor stays open on a capped collection after the last document, and
    # with TAILABLE_AWAIT each getMore waits on the server (up to max_await_time_ms) for
    # new documents instead of returning empty at once.
    await db.drop_collection("log")
    log = await db.create_collection("log", capped=True, size=64 * 1024)
    await log.insert_many([{"n": n, "msg": f"startup {n}"} for n in range(3)])

    async def writer():
        for n in range(3, 6):
            await asyncio.sleep(0.05)
            await log.insert_one({"n": n, "msg": "done" if n == 5 else f"event {n}"})

    writing = asyncio.ensure_future(writer())
    # A batch size smaller than the collection keeps the cursor open on every server
    # (FerretDB closes a tailable cursor whose first batch empties the collection).
    cursor = log.find({}, {"_id": 0}, cursor_type=CursorType.TAILABLE_AWAIT)
    cursor.batch_size(2).max_await_time_ms(1000)
    while cursor.alive:
        # async for ends when a getMore times out with nothing new; the cursor is still
        # alive, so the outer loop goes round and waits again.
        async for doc in cursor:
            print("tailed:", doc)
            if doc["msg"] == "done":
                await cursor.close()
                break
    print("cursor alive:", cursor.alive)
    await writing


async def main():
    client = AsyncIOMotorClient(URI)
    db = client.examples
    await queries(db)
    await tail(db)
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
