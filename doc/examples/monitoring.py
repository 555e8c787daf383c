"""Monitoring: PyMongo's event listeners and its log messages, with Tornado's ``MotorClient``.

Motor runs PyMongo's own code, so PyMongo's monitoring works unchanged: listeners passed to
the client (or registered globally with ``pymongo.monitoring.register``) see every command,
connection and server event, and PyMongo's loggers emit the same messages.  The server is
``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/monitoring.py
"""

import asyncio
import json
import logging
import os
import sys

from pymongo import monitoring
from pymongo.errors import OperationFailure

from motor.motor_tornado import MotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")


class CommandLogger(monitoring.CommandListener):
    """Print the commands sent to one database, and warn about slow ones."""

    def __init__(self, database, slow_ms=500):
        self.database = database
        self.slow_ms = slow_ms

    def started(self, event):
        if event.database_name == self.database:
            print(f"command {event.command_name} started")

    def succeeded(self, event):
        if event.database_name == self.database:
            print(f"command {event.command_name} succeeded")
        if event.duration_micros > self.slow_ms * 1000:
            print(f"slow: {event.command_name} took {event.duration_micros / 1000:.0f} ms")

    def failed(self, event):
        if event.database_name == self.database:
            print(f"command {event.command_name} failed: {event.failure.get('codeName')}")


class PoolLogger(monitoring.ConnectionPoolListener):
    """Print what happens to the connections of the pool."""

    def pool_created(self, event):
        print("pool created")

    def pool_ready(self, event):
        print("pool ready")

    def pool_cleared(self, event):
        print("pool cleared")

    def pool_closed(self, event):
        print("pool closed")

    def connection_created(self, event):
        print(f"connection {event.connection_id} created")

    def connection_ready(self, event):
        print(f"connection {event.connection_id} ready")

    def connection_closed(self, event):
        print(f"connection {event.connection_id} closed: {event.reason}")

    def connection_check_out_started(self, event):
        pass

    def connection_check_out_failed(self, event):
        print(f"check out failed: {event.reason}")

    def connection_checked_out(self, event):
        print(f"connection {event.connection_id} checked out")

    def connection_checked_in(self, event):
        print(f"connection {event.connection_id} checked in")


class PyMongoFormatter(logging.Formatter):
    """PyMongo's log messages are JSON documents: show a few of their fields."""

    def format(self, record):
        fields = json.loads(record.getMessage())
        return f"{record.name}: {fields['message']}: {fields.get('commandName', '')}"


async def main():
    client = MotorClient(URI, event_listeners=[CommandLogger("examples"), PoolLogger()])
    collection = client.examples.monitored
    await collection.delete_many({})
    await collection.insert_one({"message": "hi!"})
    print("found:", await collection.find_one({}, {"_id": 0}))
    try:
        await client.examples.command("noSuchCommand")
    except OperationFailure as exc:
        print("raised OperationFailure, code", exc.code)

    # PyMongo also logs each command, connection and server selection on the loggers
    # "pymongo.command", "pymongo.connection", "pymongo.serverSelection" and
    # "pymongo.topology", at DEBUG level.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(PyMongoFormatter())
    command_log = logging.getLogger("pymongo.command")
    command_log.addHandler(handler)
    command_log.setLevel(logging.DEBUG)
    await collection.count_documents({})
    command_log.setLevel(logging.WARNING)

    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
