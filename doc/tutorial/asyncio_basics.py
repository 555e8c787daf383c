"""The examples of doc/tutorial-asyncio.rst, in the order the page shows them.

With MongoDB on localhost:27017::

    python doc/tutorial/asyncio_basics.py

``MONGODB_URI`` names another server (and, in its path, the database: ``tutorial`` by
default). The script drops and refills the collection ``inventory`` of that database,
and deletes the GridFS file it stores, so it can run again and again. What it prints is
what the page shows: test/test_doc_tutorials.py runs it and compares.
"""

import asyncio
import os

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorGridFSBucket


# -- connect-start --
async def connect(client):
    # The client connects on its first operation; "ping" is the cheapest one.
    reply = await client.admin.command("ping")
    print("ping:", reply["ok"])


# -- connect-end --


# -- insert-one-start --
async def insert_one(inventory):
    result = await inventory.insert_one({"item": "notebook", "kind": "paper", "qty": 50})
    print(repr(result.inserted_id))


# -- insert-one-end --


# -- insert-many-start --
async def insert_many(inventory):
    result = await inventory.insert_many(
        [
            {"item": "sketchbook", "kind": "paper", "qty": 10},
            {"item": "envelope", "kind": "paper", "qty": 200},
            {"item": "pen", "kind": "writing", "qty": 120},
            {"item": "pencil", "kind": "writing", "qty": 80},
            {"item": "marker", "kind": "writing", "qty": 15},
            {"item": "stapler", "kind": "tools", "qty": 5},
            {"item": "scissors", "kind": "tools", "qty": 12},
        ]
    )
    print(f"inserted {len(result.inserted_ids)} documents")


# -- insert-many-end --


# -- find-one-start --
async def find_one(inventory):
    print(await inventory.find_one({"item": "pen"}))
    # A projection picks the fields to return; "_id" comes unless excluded.
    print(await inventory.find_one({"qty": {"$lt": 10}}, {"_id": 0, "item": 1}))
    print(await inventory.find_one({"item": "eraser"}))


# -- find-one-end --


# -- to-list-start --
async def find_to_list(inventory):
    cursor = inventory.find({"kind": "paper"}).sort("qty", DESCENDING)
    for document in await cursor.to_list(length=100):
        print(document["item"], document["qty"])


# -- to-list-end --


# -- async-for-start --
async def find_async_for(inventory):
    cursor = inventory.find({}, {"_id": 0, "item": 1, "qty": 1})
    # Shape the query before the first fetch: sort, skip, limit.
    cursor.sort("item", ASCENDING).skip(2).limit(3)
    async for document in cursor:
        print(document)


# -- async-for-end --


# -- count-start --
async def count(inventory):
    print(await inventory.count_documents({}), "documents")
    print(await inventory.count_documents({"qty": {"$gte": 50}}), "with qty >= 50")


# -- count-end --


# -- gather-start --
async def gather(inventory):
    names = ["pen", "stapler", "envelope"]
    # Three queries in flight at once; gather returns their results in order.
    documents = await asyncio.gather(*(inventory.find_one({"item": n}) for n in names))
    print([document["qty"] for document in documents])


# -- gather-end --


# -- update-start --
async def update(inventory):
    result = await inventory.update_one({"item": "pen"}, {"$inc": {"qty": -20}})
    print("matched", result.matched_count, "modified", result.modified_count)

    result = await inventory.update_many({"kind": "tools"}, {"$set": {"aisle": 7}})
    print("modified", result.modified_count)

    # find_one_and_update returns the document, before or (here) after the change.
    document = await inventory.find_one_and_update(
        {"item": "marker"}, {"$inc": {"qty": 25}}, return_document=ReturnDocument.AFTER
    )
    print(document["item"], document["qty"])

    result = await inventory.replace_one(
        {"item": "sketchbook"}, {"item": "sketchbook", "kind": "paper", "qty": 0}
    )
    print("replaced", result.modified_count)


# -- update-end --


# -- delete-start --
async def delete(inventory):
    result = await inventory.delete_one({"item": "sketchbook"})
    print("deleted", result.deleted_count)
    result = await inventory.delete_many({"qty": {"$lt": 20}})
    print("deleted", result.deleted_count)
    print(await inventory.count_documents({}), "documents left")


# -- delete-end --


# -- indexes-start --
async def indexes(inventory):
    # create_index returns the index's name; creating it again changes nothing.
    print(await inventory.create_index("item", unique=True))
    print(await inventory.create_index([("kind", ASCENDING), ("qty", DESCENDING)]))

    try:
        await inventory.insert_one({"item": "pen", "kind": "writing", "qty": 1})
    except DuplicateKeyError as error:
        print("refused: duplicate key, code", error.code)

    async for index in inventory.list_indexes():
        print(index["name"], dict(index["key"]))


# -- indexes-end --


# -- aggregate-start --
async def aggregate(inventory):
    pipeline = [
        {"$match": {"qty": {"$gt": 0}}},
        {"$group": {"_id": "$kind", "total": {"$sum": "$qty"}}},
        {"$sort": {"total": DESCENDING}},
    ]
    # aggregate() returns a cursor without I/O, like find().
    async for group in inventory.aggregate(pipeline):
        print(group)

    top = [
        {"$sort": {"qty": DESCENDING}},
        {"$limit": 2},
        {"$project": {"_id": 0, "item": 1, "qty": 1}},
    ]
    print(await inventory.aggregate(top).to_list())


# -- aggregate-end --


# -- gridfs-start --
async def gridfs(db):
    bucket = AsyncIOMotorGridFSBucket(db)  # the bucket "fs": fs.files and fs.chunks
    data = b"Hello, GridFS! " * 20_000  # 300,000 bytes: two chunks of 255 KiB
    file_id = await bucket.upload_from_stream(
        "hello.txt", data, metadata={"contentType": "text/plain"}
    )

    grid_out = await bucket.open_download_stream_by_name("hello.txt")
    print(grid_out.filename, grid_out.length, grid_out.metadata)
    print(await grid_out.read(14))
    grid_out.seek(299_985)  # no I/O: the next read fetches the chunk it needs
    print(await grid_out.read())

    await bucket.delete(file_id)  # the file document and its chunks


# -- gridfs-end --


# -- main-start --
async def main():
    uri = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
    # One client for the program; `async with` closes it at the end.
    async with AsyncIOMotorClient(uri) as client:
        db = client.get_default_database("tutorial")
        inventory = db.inventory  # no I/O: a collection object
        await inventory.drop()  # start afresh on every run

        await connect(client)
        await insert_one(inventory)
        await insert_many(inventory)
        await find_one(inventory)
        await find_to_list(inventory)
        await find_async_for(inventory)
        await count(inventory)
        await gather(inventory)
        await update(inventory)
        await delete(inventory)
        await indexes(inventory)
        await aggregate(inventory)
        await gridfs(db)


asyncio.run(main())
# -- main-end --
