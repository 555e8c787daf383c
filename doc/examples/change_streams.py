"""Change streams: watch a collection's inserts, updates and deletes, and resume after one.

Change streams need a replica set or a sharded cluster.  The server is ``$MONGODB_URI``, by
default ``mongodb://localhost:27017``; for a one-member replica set started with
``mongod --replSet rs``::

    MONGODB_URI="mongodb://localhost:27017/?replicaSet=rs" python doc/examples/change_streams.py
"""

import asyncio
import os

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


def describe(change):
    """The parts of a change event worth printing here."""
    what = [change["operationType"], change["documentKey"]]
    if "updateDescription" in change:
        what.append(change["updateDescription"]["updatedFields"])
    if change.get("fullDocument"):
        what.append(change["fullDocument"])
    return " ".join(str(part) for part in what)


async def main():
    client = AsyncIOMotorClient(URI)
    deliveries = client.examples.deliveries
    await deliveries.delete_many({})

    # watch() is not awaited: it returns the change stream at once, and the aggregate
    # command that opens it on the server runs on the first fetch.  full_document=
    # "updateLookup" adds the current document to update events.
    async with deliveries.watch(full_document="updateLookup", max_await_time_ms=500) as stream:
        # try_next() opens the stream and returns None if nothing has changed (after
        # waiting up to max_await_time_ms on the server): changes from now on are seen.
        print("before any change:", await stream.try_next())

        await deliveries.insert_one({"_id": 1, "item": "apple", "status": "new"})
        await deliveries.update_one({"_id": 1}, {"$set": {"status": "shipped"}})
        inserted = await stream.next()  # waits until the server has the change
        print(describe(inserted))
        print(describe(await stream.next()))

        await deliveries.delete_one({"_id": 1})
        print(describe(await stream.next()))

    # Every event's _id is a resume token: a new stream can pick up where another left
    # off, here just after the insert, with a pipeline that keeps only deletes.
    pipeline = [{"$match": {"operationType": "delete"}}]
    async with deliveries.watch(pipeline, resume_after=inserted["_id"]) as stream:
        async for change in stream:
            print("resumed:", describe(change))
            break

    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
