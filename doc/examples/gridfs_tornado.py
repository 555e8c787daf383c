"""Serve GridFS files from a Tornado application with ``motor.web.GridFSHandler``.

The script stores a file, starts the application on a free port of 127.0.0.1, fetches the
file with Tornado's HTTP client (whole, a byte range, conditionally, and a missing one), and
stops.  Run with ``--serve`` to keep serving on port 8888 instead.  The server is
``$MONGODB_URI``, by default ``mongodb://localhost:27017``::

    python doc/examples/gridfs_tornado.py --serve
    curl -i -H "Range: bytes=0-9" http://localhost:8888/media/hello.txt
"""

import asyncio
import os
import sys

import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

import motor.web
from motor.motor_tornado import MotorClient, MotorGridFSBucket

URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")

CONTENT = b"Hello from GridFS! " * 100  # 1900 bytes
HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag")


def make_app(db):
    # The route's group is the file name; root_collection is the bucket ("fs" by default).
    return tornado.web.Application(
        [
            (
                r"/media/(.*)",
                motor.web.GridFSHandler,
                {"database": db, "root_collection": "media"},
            )
        ]
    )


async def store(db):
    bucket = MotorGridFSBucket(db, "media")
    async for old in bucket.find({"filename": "hello.txt"}):
        await bucket.delete(old._id)
    await bucket.upload_from_stream("hello.txt", CONTENT, chunk_size_bytes=512)


async def fetch(url, **headers):
    response = await AsyncHTTPClient().fetch(url, headers=headers, raise_error=False)
    print(response.code, response.reason)
    if response.code not in (200, 206):
        return response
    for name in HEADERS:
        if name in response.headers:
            print(f"  {name}: {response.headers[name]}")
    print(f"  body: {response.body[:40]!r}{'...' if len(response.body) > 40 else ''}")
    return response


async def main():
    client = MotorClient(URI)
    db = client.examples
    await store(db)

    sock, port = bind_unused_port()
    server = HTTPServer(make_app(db))
    server.add_sockets([sock])
    url = f"http://127.0.0.1:{port}/media/hello.txt"

    print("GET /media/hello.txt")
    whole = await fetch(url)
    print("GET with Range: bytes=6-15")
    await fetch(url, Range="bytes=6-15")
    print("GET with Range: bytes=-4 (the last four)")
    await fetch(url, Range="bytes=-4")
    print("GET with If-None-Match (the ETag of the first answer)")
    await fetch(url, **{"If-None-Match": whole.headers["ETag"]})
    print("GET /media/missing.txt")
    await fetch(url.replace("hello", "missing"))

    server.stop()
    await server.close_all_connections()
    await client.close()


async def serve():
    client = MotorClient(URI)
    await store(client.examples)
    make_app(client.examples).listen(8888)
    print("serving http://localhost:8888/media/hello.txt")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve() if "--serve" in sys.argv else main())
