"""Running synchronous PyMongo code without blocking the event loop: ``motor.run_green``.

The data-access functions below are plain PyMongo code: they would run as they are in a
script or a WSGI application.  A coroutine runs them with ``motor.run_green``, and while they
wait for the server the loop goes on with other work.  The server is ``$MONGODB_URI``, by
default ``mongodb://localhost:27017``::

    python doc/examples/synchronous_code.py
"""

import asyncio
import logging
import os
import sys

import pymongo
from pymongo import CursorType

import motor
from motor.errors import WouldBlockError
from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

# A GreenMongoClient is a pymongo.MongoClient whose waits park a greenlet instead of
# blocking, when the code runs under motor.run_green.
client = motor.GreenMongoClient(URI)
events = client.examples.events


# -- synchronous code, nothing asynchronous about it -----------------------------------


def reset():
    client.examples.drop_collection("events")
    client.examples.create_collection("events", capped=True, size=64 * 1024)
    events.insert_many([{"n": 1, "what": "start"}, {"n": 2, "what": "tick"}])


def wait_for_event(what):
    """Tail the capped collection until an event ``what`` arrives, which may take a while."""
    cursor = events.find(cursor_type=CursorType.TAILABLE_AWAIT, batch_size=1)
    cursor.max_await_time_ms(5000)
    for event in cursor:  # each getMore waits on the server for new documents
        if event["what"] == what:
            cursor.close()
            return event["n"]
    return None


def count_events():
    return events.count_documents({})


# -- the application --------------------------------------------------------------------


async def main():
    await motor.run_green(reset)

    # While wait_for_event waits on the server, the loop runs other tasks, here one
    # that inserts the very event it waits for (with Motor).  Were the loop blocked, the
    # insert would never happen and the wait would end only at max_await_time_ms.
    motor_client = AsyncIOMotorClient(URI)

    async def announce():
        await asyncio.sleep(0.1)
        await motor_client.examples.events.insert_one({"n": 3, "what": "stop"})
        print("announced stop")

    stop_n, _ = await asyncio.gather(motor.run_green(wait_for_event, "stop"), announce())
    print("wait_for_event returned", stop_n)

    # Many calls at once: each runs in its own greenlet.
    counts = await asyncio.gather(*(motor.run_green(count_events) for _ in range(3)))
    print("three concurrent counts:", counts)

    # green_coroutine turns a synchronous function into one that returns an awaitable.
    @motor.green_coroutine
    def latest():
        return events.find_one(sort=[("n", pymongo.DESCENDING)], projection={"_id": 0})

    print("latest:", await latest())

    # Called straight from a coroutine, outside run_green, the green client would have to
    # block the loop while the server holds the getMore: it refuses.
    try:
        wait_for_event("shutdown")
    except WouldBlockError:
        print("called outside run_green: WouldBlockError")

    # Outside the loop's thread it blocks that thread only, like PyMongo's client: the
    # same function serves scripts and worker threads.
    print("in a worker thread:", await asyncio.to_thread(count_events))

    # The stall detector logs blocking PyMongo calls on the loop's thread (here a plain
    # pymongo.MongoClient, created after the detector is turned on).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger("motor.stalls").addHandler(handler)
    motor.detect_stalls(threshold_ms=50)
    plain = pymongo.MongoClient(URI)
    plain.admin.command("ping")  # blocks the loop while it waits for the reply
    motor.stop_detecting_stalls()

    plain.close()
    await motor_client.close()
    await motor.run_green(client.close)


if __name__ == "__main__":
    asyncio.run(main())
