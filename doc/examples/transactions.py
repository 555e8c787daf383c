"""Sessions and transactions: ``with_transaction``, and ``start_transaction`` by hand.

Transactions need a replica set or a sharded cluster.  The server is ``$MONGODB_URI``, by
default ``mongodb://localhost:27017``; for a one-member replica set started with
``mongod --replSet rs``::

    MONGODB_URI="mongodb://localhost:27017/?replicaSet=rs" python doc/examples/transactions.py
"""

import asyncio
import os

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


class OutOfStock(Exception):
    pass


async def main():
    client = AsyncIOMotorClient(URI)
    db = client.examples
    inventory, orders = db.inventory, db.orders_placed
    await inventory.delete_many({})
    await orders.delete_many({})
    await inventory.insert_one({"_id": "apple", "qty": 10})

    async def place_order(session, sku, qty):
        """Take qty of sku from the inventory and record the order, all or nothing."""
        # Every operation of the transaction passes the session.
        taken = await inventory.update_one(
            {"_id": sku, "qty": {"$gte": qty}}, {"$inc": {"qty": -qty}}, session=session
        )
        if taken.modified_count == 0:
            raise OutOfStock(f"fewer than {qty} {sku}s in stock")
        await orders.insert_one({"sku": sku, "qty": qty}, session=session)

    # start_session() is awaited, as in Motor 3.x; the session is an async context manager.
    async with await client.start_session() as session:
        # with_transaction starts a transaction, awaits the callback, and commits.  It
        # retries the callback on TransientTransactionError and the commit on
        # UnknownTransactionCommitResult, for up to 120 seconds.
        await session.with_transaction(lambda s: place_order(s, "apple", 3))
        print("ordered 3 apples")

        # An exception in the callback aborts the transaction and propagates: the update
        # that matched nothing is rolled back with everything else.
        try:
            await session.with_transaction(lambda s: place_order(s, "apple", 30))
        except OutOfStock as exc:
            print("aborted:", exc)

        # By hand: start_transaction() is a plain call returning an async context manager,
        # which commits at the end of the block (or aborts if the block raises).
        async with session.start_transaction():
            await orders.insert_one({"sku": "apple", "qty": 0, "note": "sample"}, session=session)
        print("committed by hand")

    print("inventory:", await inventory.find_one({"_id": "apple"}))
    print("orders:", await orders.count_documents({}))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
