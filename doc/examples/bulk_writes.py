"""Bulk writes: ``insert_many`` and ``bulk_write``, ordered and unordered, and their errors.

Runs with Tornado's ``MotorClient``; the asyncio version differs only in the import
(Tornado 6 runs on asyncio: ``asyncio.run`` runs both).  The server is ``$MONGODB_URI``, by
default ``mongodb://localhost:27017``::

    python doc/examples/bulk_writes.py
"""

import asyncio
import os
from pprint import pprint

from pymongo import DeleteMany, DeleteOne, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError

from motor.motor_tornado import MotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


def summarize(details):
    """The parts of a ``BulkWriteError`` that every server reports the same way."""
    errors = [(e["index"], e["code"], e["op"]) for e in details["writeErrors"]]
    counts = {k: v for k, v in details.items() if k.startswith("n")}
    return counts, errors


async def main():
    client = MotorClient(URI)
    collection = client.examples.bulk
    await collection.drop()

    # insert_many takes any iterable, a generator too, and splits it into batches that
    # fit the server's limits: one await for ten thousand documents.
    result = await collection.insert_many({"i": i} for i in range(10_000))
    print("inserted", len(result.inserted_ids), "documents")
    print("count:", await collection.count_documents({}))

    # An ordered bulk write: the operations run in this order, in as few round trips as
    # possible, and the result counts what each kind of operation did.
    result = await collection.bulk_write(
        [
            DeleteMany({}),  # remove the ten thousand documents above
            InsertOne({"_id": 1}),
            InsertOne({"_id": 2}),
            InsertOne({"_id": 3}),
            UpdateOne({"_id": 4}, {"$inc": {"j": 1}}, upsert=True),  # no _id 4: inserts it
            UpdateOne({"_id": 1}, {"$set": {"foo": "bar"}}),
            ReplaceOne({"j": 1}, {"j": 2}),
        ]
    )
    pprint(result.bulk_api_result)

    # An ordered bulk write stops at the first error: the duplicate _id 4 fails, and the
    # DeleteOne after it never runs.  BulkWriteError.details says what did happen.
    try:
        await collection.bulk_write(
            [
                ReplaceOne({"j": 2}, {"i": 5}),
                InsertOne({"_id": 4}),  # _id 4 exists already
                DeleteOne({"i": 5}),
            ]
        )
    except BulkWriteError as exc:
        counts, errors = summarize(exc.details)
        print("ordered:", counts)
        print("  errors (index, code, operation):", errors)

    # Unordered: every operation is attempted, and the errors are reported together.
    try:
        await collection.bulk_write(
            [
                InsertOne({"_id": 1}),  # duplicate
                DeleteOne({"_id": 2}),
                InsertOne({"_id": 3}),  # duplicate
                ReplaceOne({"_id": 4}, {"i": 1}),
            ],
            ordered=False,
        )
    except BulkWriteError as exc:
        counts, errors = summarize(exc.details)
        print("unordered:", counts)
        print("  errors (index, code, operation):", errors)

    print("left:", await collection.find({}, sort=[("_id", 1)]).to_list())
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
