"""Aggregation: pipelines with ``$match``, ``$unwind``, ``$group``, ``$sort``, ``$project``.

The server is ``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/aggregation.py
"""

import asyncio
import os

from pymongo.errors import OperationFailure

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

ORDERS = [
    {"_id": 1, "customer": "ann", "total": 7, "items": [{"sku": "apple", "qty": 2}]},
    {"_id": 2, "customer": "bob", "total": 10, "items": [{"sku": "apple", "qty": 5}]},
    {"_id": 3, "customer": "ann", "total": 4, "items": [{"sku": "plum", "qty": 3}]},
    {
        "_id": 4,
        "customer": "cid",
        "total": 12,
        "items": [{"sku": "pear", "qty": 1}, {"sku": "plum", "qty": 4}],
    },
]


async def main():
    client = AsyncIOMotorClient(URI)
    orders = client.examples.orders
    await orders.drop()
    await orders.insert_many(ORDERS)

    # aggregate() is not awaited: like find(), it returns a cursor, and the aggregate
    # command runs when the first document is fetched (errors in the pipeline are raised
    # there too).
    cursor = orders.aggregate(
        [
            {"$group": {"_id": "$customer", "spent": {"$sum": "$total"}}},
            {"$sort": {"spent": -1}},
        ]
    )
    async for doc in cursor:
        print("spent:", doc)

    # $unwind makes one document per array element; then group by product.
    pipeline = [
        {"$unwind": "$items"},
        {"$group": {"_id": "$items.sku", "sold": {"$sum": "$items.qty"}}},
        {"$sort": {"sold": -1, "_id": 1}},
    ]
    print("sold:", await orders.aggregate(pipeline).to_list())

    # $match first, so the server can use an index; $project shapes the output.
    pipeline = [
        {"$match": {"total": {"$gte": 7}}},
        {"$sort": {"total": 1}},
        {"$project": {"_id": 0, "customer": 1, "total": 1}},
    ]
    async for doc in orders.aggregate(pipeline, batchSize=2):
        print("big order:", doc)

    # $count, and options such as allowDiskUse and comment, as keyword arguments.
    result = await orders.aggregate(
        [{"$match": {"customer": "ann"}}, {"$count": "orders"}],
        allowDiskUse=True,
        comment="orders of one customer",
    ).to_list()
    print("count:", result)

    # Because aggregate() only prepares the cursor, a bad pipeline fails on the first fetch.
    cursor = orders.aggregate([{"$no_such_stage": {}}])
    print("cursor made, nothing sent yet")
    try:
        await cursor.next()
    except OperationFailure as exc:
        print("first fetch raised", type(exc).__name__)

    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
