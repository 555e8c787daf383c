"""Pages and files: the aiohttp application of doc/tutorial-asyncio.rst.

Pages are documents in the collection ``pages``; files live in GridFS, uploaded with
``PUT /fs/NAME`` and served by :class:`motor.aiohttp.AIOHTTPGridFS`, with ``Range``
support. With MongoDB on localhost:27017::

    python doc/tutorial/aiohttp_app.py

``MONGODB_URI`` names another server (and, in its path, the database: ``tutorial`` by
default). ``--port 0`` serves on any free port; the first line printed says which.
test/test_doc_tutorials.py runs this file as it is and exercises every route.
"""

import argparse
import asyncio
import html
import os

from aiohttp import web

from motor.aiohttp import AIOHTTPGridFS
from motor.motor_asyncio import (
    AsyncIOMotorClient,
    AsyncIOMotorDatabase,
    AsyncIOMotorGridFSBucket,
)

# -- setup-start --
# Where handlers find the database: request.app[DB].
DB = web.AppKey("db", AsyncIOMotorDatabase)

PAGES = [
    {"_id": "hello", "title": "Hello", "body": "Served from MongoDB by Motor."},
    {"_id": "files", "title": "Files", "body": "PUT a file to /fs/NAME, then GET it."},
]


async def setup_db(db):
    # Demonstration data: replace whatever the collection held.
    await db.pages.drop()
    await db.pages.insert_many(PAGES)


# -- setup-end --


# -- handlers-start --
async def index(request):
    """A list of the pages, by title."""
    links = []
    async for page in request.app[DB].pages.find({}, {"title": 1}).sort("title"):
        title = html.escape(page["title"])
        links.append(f'<li><a href="/pages/{page["_id"]}">{title}</a></li>\n')
    return web.Response(text="<ul>\n" + "".join(links) + "</ul>\n", content_type="text/html")


async def page(request):
    """One page, found by its _id: the {name} part of the URL."""
    name = request.match_info["name"]
    document = await request.app[DB].pages.find_one({"_id": name})
    if document is None:
        raise web.HTTPNotFound(text=f"No page named {name!r}\n")
    title, body = html.escape(document["title"]), html.escape(document["body"])
    return web.Response(text=f"<h1>{title}</h1>\n<p>{body}</p>\n", content_type="text/html")


# -- handlers-end --


# -- upload-start --
async def upload(request):
    """Store the request's body in GridFS, under the {filename} of the URL."""
    filename = request.match_info["filename"]
    bucket = AsyncIOMotorGridFSBucket(request.app[DB])
    # Copy the body into GridFS as it arrives, so a large file is never held
    # in memory whole; closing the upload stream (at the end of `async with`)
    # writes the last chunk and the file document.
    async with bucket.open_upload_stream(filename) as grid_in:
        async for data in request.content.iter_chunked(256 * 1024):
            await grid_in.write(data)
    return web.json_response({"filename": filename, "length": grid_in.length}, status=201)


# -- upload-end --


# -- app-start --
def make_app(db):
    app = web.Application()
    app[DB] = db
    app.router.add_get("/", index)
    app.router.add_get("/pages/{name}", page)
    # GET (and HEAD) of a file in GridFS, with Range requests; the route must
    # have a {filename} variable.
    app.router.add_get("/fs/{filename}", AIOHTTPGridFS(db))
    app.router.add_put("/fs/{filename}", upload)
    return app


# -- app-end --


# -- main-start --
async def main(address, port):
    uri = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
    # One client for the whole process; `async with` closes it when main() ends.
    async with AsyncIOMotorClient(uri) as client:
        db = client.get_default_database("tutorial")
        await setup_db(db)
        runner = web.AppRunner(make_app(db))
        await runner.setup()
        try:
            await web.TCPSite(runner, address, port).start()
            host, port = runner.addresses[0][:2]
            print(f"Serving on http://{host}:{port}/", flush=True)
            await asyncio.Event().wait()  # serve until interrupted
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 for any free port")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.address, args.port))
    except KeyboardInterrupt:
        pass
# -- main-end --
