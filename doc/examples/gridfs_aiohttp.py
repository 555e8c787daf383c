"""Serve GridFS files from an aiohttp application with ``motor.aiohttp.AIOHTTPGridFS``.

The script stores a gzip-compressed file, starts the application on a free port of
127.0.0.1, fetches the file with aiohttp's client (whole, then a byte range), and stops.  Run
with ``--serve`` to keep serving on port 8080 instead.  The server is ``$MONGODB_URI``, by
default ``mongodb://localhost:27017``::

    python doc/examples/gridfs_aiohttp.py --serve
    curl -i --compressed http://localhost:8080/fs/report.txt
"""

import asyncio
import gzip
import os
import sys

import aiohttp
import aiohttp.web

from motor.aiohttp import AIOHTTPGridFS
from motor.motor_asyncio import AsyncIOMotorClient, AsyncIOMotorGridFSBucket

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

REPORT = b"".join(b"%04d all quiet\n" % n for n in range(1, 501))  # 7,500 bytes


def gzip_header(response, grid_out):
    """set_extra_headers: say that the stored bytes are compressed."""
    if (grid_out.metadata or {}).get("compressed"):
        response.headers["Content-Encoding"] = "gzip"


def make_app(db):
    app = aiohttp.web.Application()
    handler = AIOHTTPGridFS(db, set_extra_headers=gzip_header)
    # The route needs a {filename} variable; add_get also answers HEAD.
    app.router.add_get("/fs/{filename}", handler)
    return app


async def store(db):
    bucket = AsyncIOMotorGridFSBucket(db)  # the bucket "fs"
    async for old in bucket.find({"filename": {"$in": ["report.txt", "notes.txt"]}}):
        await bucket.delete(old._id)
    await bucket.upload_from_stream(
        "report.txt", gzip.compress(REPORT, mtime=0), metadata={"compressed": True}
    )
    await bucket.upload_from_stream("notes.txt", b"0123456789" * 30)


async def main():
    client = AsyncIOMotorClient(URI)
    db = client.examples
    await store(db)

    runner = aiohttp.web.AppRunner(make_app(db))
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}/fs"

    async with aiohttp.ClientSession() as http:
        # The client decompresses, as a browser would.
        async with http.get(f"{base}/report.txt") as response:
            body = await response.read()
            print("GET report.txt:", response.status, response.headers["Content-Encoding"])
            print("  decompressed:", len(body), "bytes, same:", body == REPORT)

        async with http.get(f"{base}/notes.txt", headers={"Range": "bytes=100-109"}) as response:
            print("GET notes.txt, Range: bytes=100-109:", response.status)
            print("  Content-Range:", response.headers["Content-Range"])
            print("  body:", await response.read())

        async with http.get(f"{base}/notes.txt", headers={"Range": "bytes=400-"}) as response:
            print("GET notes.txt, Range: bytes=400-:", response.status, response.reason)
            print("  Content-Range:", response.headers["Content-Range"])

        async with http.head(f"{base}/notes.txt") as response:
            print("HEAD notes.txt:", response.status, "length", response.headers["Content-Length"])

        async with http.get(f"{base}/missing.txt") as response:
            print("GET missing.txt:", response.status)

    await runner.cleanup()
    await client.close()


async def serve():
    client = AsyncIOMotorClient(URI)
    await store(client.examples)
    runner = aiohttp.web.AppRunner(make_app(client.examples))
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "localhost", 8080).start()
    print("serving http://localhost:8080/fs/report.txt")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve() if "--serve" in sys.argv else main())
