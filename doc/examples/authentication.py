"""Authentication: log in with SCRAM, from the URI or from keyword arguments, and what the
errors look like.

``$MONGODB_URI`` names the server and a user, by default
``mongodb://user:password@localhost:27017`` (a user of the ``admin`` database)::

    MONGODB_URI="mongodb://alice:secret@db.example.com:27017" python doc/examples/authentication.py
"""

import asyncio
import os

from pymongo.errors import OperationFailure
from pymongo.uri_parser import parse_uri

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://user:password@localhost:27017")


async def main():
    # Credentials in the URI.  Motor logs in when a connection is first made: creating the
    # client does not talk to the server.  authSource is the database where the user was
    # created (admin by default); authMechanism defaults to SCRAM-SHA-256 where the server
    # offers it.
    client = AsyncIOMotorClient(URI)
    await client.examples.private.delete_many({})
    await client.examples.private.insert_one({"secret": 42})
    print("with the URI's credentials:", await client.examples.private.find_one({}, {"_id": 0}))
    await client.close()

    # The same as keyword arguments (which need no URL-escaping).
    parsed = parse_uri(URI)
    host, port = parsed["nodelist"][0]
    user, password = parsed["username"], parsed["password"]
    client = AsyncIOMotorClient(
        host,
        port,
        username=user,
        password=password,
        authSource="admin",
        authMechanism="SCRAM-SHA-256",
    )
    print("SCRAM-SHA-256:", await client.examples.private.count_documents({}), "document")
    await client.examples.private.drop()
    await client.close()

    # A wrong password: the first operation raises OperationFailure, code 18.
    client = AsyncIOMotorClient(host, port, username=user, password="wrong")
    try:
        await client.examples.private.find_one()
    except OperationFailure as exc:
        print("wrong password:", exc.code, exc.details.get("codeName"))
    await client.close()

    # No credentials: connecting works, but commands that need a user fail with code 13.
    client = AsyncIOMotorClient(host, port)
    try:
        await client.examples.private.find_one()
    except OperationFailure as exc:
        print("no credentials:", exc.code, exc.details.get("codeName"))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main())
