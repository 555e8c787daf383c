"""TLS: connect to a server that requires it, trusting a given certificate authority.

The server is ``$MONGODB_URI``, by default ``mongodb://localhost:27017``, and the CA that
signed its certificate is the PEM file ``$MONGODB_CA_FILE`` (without it, the system's CAs)::

    MONGODB_CA_FILE=/etc/ssl/mongodb-ca.pem python doc/examples/tls.py
"""

import asyncio
import os

from pymongo.errors import ServerSelectionTimeoutError

from motor.motor_asyncio import AsyncIOMotorClient

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
CA_FILE = os.environ.get("MONGODB_CA_FILE")


async def main():
    # tls=True, and the CA to check the server's certificate against (the same options
    # can go in the URI: ?tls=true&tlsCAFile=/path/ca.pem).  For a server that wants a
    # client certificate too, add tlsCertificateKeyFile="/path/client.pem" (certificate
    # and private key in one PEM file).
    client = AsyncIOMotorClient(URI, tls=True, tlsCAFile=CA_FILE)
    print("ping:", await client.admin.command("ping"))
    await client.examples.secure.delete_many({})
    await client.examples.secure.insert_one({"over": "TLS"})
    print("found:", await client.examples.secure.find_one({}, {"_id": 0}))
    await client.close()

    # Without that CA, the certificate cannot be verified: the handshake fails, and after
    # serverSelectionTimeoutMS the operation raises, saying why.
    untrusting = AsyncIOMotorClient(URI, tls=True, serverSelectionTimeoutMS=500)
    try:
        await untrusting.admin.command("ping")
    except ServerSelectionTimeoutError as exc:
        print("without the CA:", "CERTIFICATE_VERIFY_FAILED" in str(exc))
    await untrusting.close()

    # And a client that does not use TLS gets no answer at all.
    plain = AsyncIOMotorClient(URI, serverSelectionTimeoutMS=500)
    try:
        await plain.admin.command("ping")
    except ServerSelectionTimeoutError:
        print("without TLS: ServerSelectionTimeoutError")
    await plain.close()


if __name__ == "__main__":
    asyncio.run(main())
