"""Notes and files: the application that doc/tutorial-tornado.rst builds step by step.

A small JSON API on Tornado and Motor. Notes (a title, a text and tags) live in the
collection ``notes``; files live in GridFS and are served with ``Range`` support by
:class:`motor.web.GridFSHandler`. With MongoDB on localhost:27017::

    python doc/tutorial/tornado_app.py

``MONGODB_URI`` names another server (and, in its path, the database: ``tutorial`` by
default). ``--port 0`` serves on any free port; the first line printed says which.
test/test_doc_tutorials.py runs this file as it is and exercises every route.
"""

import argparse
import asyncio
import json
import os
import re

import tornado.httpserver
import tornado.netutil
import tornado.web
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError
from tornado import gen
from tornado.httputil import responses

from motor.motor_tornado import MotorClient, MotorGridFSBucket
from motor.web import GridFSHandler


# -- base-start --
class BaseHandler(tornado.web.RequestHandler):
    """What every notes handler shares: the collection, and JSON in and out."""

    @property
    def notes(self):
        # The database the application was given at start-up; getting a
        # collection from it is a plain attribute access, with no I/O.
        return self.settings["db"].notes

    def json_body(self):
        """The request's JSON object: its "title", "text" and "tags", checked."""
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise tornado.web.HTTPError(400, reason="The body is not JSON") from None
        if not isinstance(body, dict):
            raise tornado.web.HTTPError(400, reason="The body is not a JSON object")
        fields = {key: body[key] for key in ("title", "text", "tags") if key in body}
        if not all(isinstance(fields.get(key, ""), str) for key in ("title", "text")):
            raise tornado.web.HTTPError(400, reason="The title and text are strings")
        tags = fields.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise tornado.web.HTTPError(400, reason="The tags are a list of strings")
        return fields

    def int_argument(self, name, default, highest):
        """The query argument `name` as a number from 1 to `highest`."""
        try:
            value = int(self.get_query_argument(name, str(default)))
        except ValueError:
            raise tornado.web.HTTPError(400, reason=f"{name} is a number") from None
        return max(1, min(value, highest))

    def write_error(self, status_code, **kwargs):
        # Errors as JSON too, instead of Tornado's HTML page.
        error = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(error, "reason", None) or responses.get(status_code, "Error")
        self.finish({"error": reason})


# -- base-end --


def slugify(title):
    """The note's name in URLs: "Buy milk!" -> "buy-milk"."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


# -- notes-start --
class NotesHandler(BaseHandler):
    async def post(self):
        body = self.json_body()
        title = body.get("title", "").strip()
        if not slugify(title):
            raise tornado.web.HTTPError(400, reason="A note needs a title")
        note = {
            "slug": slugify(title),
            "title": title,
            "text": body.get("text", ""),
            "tags": body.get("tags", []),
        }
        try:
            await self.notes.insert_one(note)
        except DuplicateKeyError:
            # The unique index on "slug" refused a second note with this name.
            raise tornado.web.HTTPError(409, reason="A note with that title exists") from None
        # insert_one added the new ObjectId to the dict: leave it out of the reply.
        del note["_id"]
        self.set_status(201)
        self.set_header("Location", f"/notes/{note['slug']}")
        self.write(note)

    # -- notes-end --

    # -- list-start --
    async def get(self):
        query = {}
        tag = self.get_query_argument("tag", None)
        if tag is not None:
            query["tags"] = tag  # matches notes whose tags array contains it
        limit = self.int_argument("limit", 20, highest=100)
        # find() makes no I/O: it returns a cursor. Newest first: an ObjectId
        # starts with its creation time, so sorting on _id sorts by age.
        cursor = self.notes.find(query, {"_id": 0}).sort("_id", DESCENDING).limit(limit)
        # to_list() runs the query and gathers at most `limit` documents.
        notes = await cursor.to_list(length=limit)
        # Tornado writes dicts as JSON, but not lists: wrap it.
        self.write({"notes": notes})


# -- list-end --


# -- note-start --
class NoteHandler(BaseHandler):
    async def get(self, slug):
        note = await self.notes.find_one({"slug": slug}, {"_id": 0})
        if note is None:
            raise tornado.web.HTTPError(404, reason="No such note")
        self.write(note)

    async def patch(self, slug):
        body = self.json_body()
        changes = {key: body[key] for key in ("text", "tags") if key in body}
        if not changes:
            raise tornado.web.HTTPError(400, reason="Nothing to change")
        # Change the fields given, and get the note as it is afterwards.
        note = await self.notes.find_one_and_update(
            {"slug": slug}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        if note is None:
            raise tornado.web.HTTPError(404, reason="No such note")
        del note["_id"]
        self.write(note)

    async def delete(self, slug):
        result = await self.notes.delete_one({"slug": slug})
        if result.deleted_count == 0:
            raise tornado.web.HTTPError(404, reason="No such note")
        self.set_status(204)


# -- note-end --


# -- export-start --
class ExportHandler(BaseHandler):
    """Every note, oldest first, one JSON document per line."""

    async def get(self):
        self.set_header("Content-Type", "application/x-ndjson")
        cursor = self.notes.find({}, {"_id": 0}).sort("_id", ASCENDING).batch_size(100)
        # async for fetches the documents a batch at a time (here, 100 per round
        # trip), so the export never holds the whole collection in memory.
        async for note in cursor:
            self.write(json.dumps(note) + "\n")
            await self.flush()  # send this line now


# -- export-end --


# -- tags-start --
def tag_counts_pipeline(top):
    return [
        {"$unwind": "$tags"},  # one document per (note, tag)
        {"$group": {"_id": "$tags", "notes": {"$sum": 1}}},
        {"$sort": {"notes": DESCENDING, "_id": ASCENDING}},
        {"$limit": top},
    ]


class TagsHandler(BaseHandler):
    """The most used tags, written in the older style: gen.coroutine and yield."""

    @gen.coroutine
    def get(self):
        top = self.int_argument("top", 10, highest=100)
        cursor = self.notes.aggregate(tag_counts_pipeline(top))
        counts = yield cursor.to_list(None)
        self.write({"tags": {count["_id"]: count["notes"] for count in counts}})


# -- tags-end --


# -- files-start --
class FileHandler(GridFSHandler):
    """GET and HEAD serve a file from GridFS (GridFSHandler); PUT stores one."""

    async def put(self, filename):
        bucket = MotorGridFSBucket(self.database, self.root_collection)
        # A second upload with the same name adds a revision; GET serves the latest.
        await bucket.upload_from_stream(filename, self.request.body)
        self.set_status(201)
        self.write({"filename": filename, "length": len(self.request.body)})


# -- files-end --


# -- indexes-start --
async def create_indexes(db):
    # Unique: insert_one raises DuplicateKeyError for a second note with a slug.
    await db.notes.create_index("slug", unique=True)
    # A multikey index (one entry per tag) for GET /notes?tag=...
    await db.notes.create_index("tags")


# -- indexes-end --


# -- app-start --
def make_app(db):
    return tornado.web.Application(
        [
            (r"/notes", NotesHandler),
            (r"/notes/([a-z0-9-]+)", NoteHandler),
            (r"/export", ExportHandler),
            (r"/tags", TagsHandler),
            (r"/files/(.+)", FileHandler, {"database": db}),
        ],
        db=db,  # every handler finds it in self.settings["db"]
    )


# -- app-end --


# -- main-start --
async def main(address, port):
    uri = os.environ.get("MONGODB_URI", "mongodb://localhost:27017")
    # One client for the whole process. Creating it makes no I/O; it connects
    # on the first operation, and `async with` closes it when main() ends.
    async with MotorClient(uri) as client:
        db = client.get_default_database("tutorial")
        await create_indexes(db)
        sockets = tornado.netutil.bind_sockets(port, address)
        server = tornado.httpserver.HTTPServer(make_app(db))
        server.add_sockets(sockets)
        host, port = sockets[0].getsockname()[:2]
        print(f"Serving on http://{host}:{port}/", flush=True)
        await asyncio.Event().wait()  # serve until interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888, help="0 for any free port")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.address, args.port))
    except KeyboardInterrupt:
        pass
# -- main-end --
