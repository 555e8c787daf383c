"""The media board: a small Tornado application on Motor and GridFS.

=====================  ================================================================
``GET /``              the uploads, newest first, from an ``aggregate()`` on ``fs.files``,
                       with a count per kind from a ``$group``; and the upload form
``POST /upload``       the form (multipart): the file goes into GridFS, the title and
                       note into the file document's ``metadata``
``GET /files/NAME``    a page that shows the file: ``<img>``, ``<audio>`` or ``<video>``
``GET /fs/NAME``       the file's bytes, served by :class:`motor.web.GridFSHandler`:
                       ``Last-Modified``, ``ETag``, ``304 Not Modified``, ``HEAD`` and
                       ``Range`` requests (``206 Partial Content``), which players need to seek
``GET /api/files``     the listing as JSON (a ``@gen.coroutine`` handler, the older style)
=====================  ================================================================

Every handler gets the database from the application's settings; nothing blocks the
event loop, so one process serves many uploads and downloads at once.
"""

from __future__ import annotations

import datetime
import hashlib
import mimetypes
import os
import re
import secrets
from collections.abc import Callable, Generator
from typing import Any

import tornado.web
from bson import json_util
from tornado import gen
from tornado.escape import url_escape

from motor.motor_tornado import MotorDatabase, MotorGridFSBucket
from motor.web import GridFSHandler

HERE = os.path.dirname(os.path.abspath(__file__))
BUCKET = "fs"  # GridFS keeps files in fs.files (one document each) and fs.chunks
MAX_UPLOAD = 64 * 1024 * 1024
KINDS = ("image", "audio", "video")

Database = MotorDatabase[dict[str, Any]]


def media_kind(content_type: str) -> str:
    """``image``, ``audio``, ``video`` or ``other``: what the file page shows it with."""
    major = content_type.split("/", 1)[0]
    return major if major in KINDS else "other"


def stored_name(original: str) -> str:
    """A unique, URL-safe GridFS file name that keeps the original's name and extension."""
    base = os.path.basename(original.replace("\\", "/"))
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.")[-80:] or "upload"
    return f"{secrets.token_hex(3)}-{safe}"


def listing_pipeline(kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The uploads, newest first: an aggregation on the files collection."""
    return [
        {"$match": {"metadata.kind": kind} if kind else {}},
        {"$sort": {"uploadDate": -1}},
        {"$limit": limit},
        {"$project": {"_id": 0, "filename": 1, "length": 1, "uploadDate": 1, "metadata": 1}},
    ]


# How many files of each kind: one $group with one accumulator.
COUNTS_PIPELINE: list[dict[str, Any]] = [
    {"$group": {"_id": "$metadata.kind", "count": {"$sum": 1}}},
    {"$sort": {"_id": 1}},
]


def human_size(length: int) -> str:
    size = float(length)
    for unit in ("bytes", "KB", "MB"):
        if size < 1000 or unit == "MB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


class BaseHandler(tornado.web.RequestHandler):
    @property
    def db(self) -> Database:
        db: Database = self.settings["db"]
        return db

    @property
    def bucket(self) -> MotorGridFSBucket:
        return MotorGridFSBucket(self.db, bucket_name=BUCKET)

    async def uploads(self, kind: str | None = None) -> list[dict[str, Any]]:
        files = self.db[f"{BUCKET}.files"]
        uploads: list[dict[str, Any]] = await files.aggregate(listing_pipeline(kind)).to_list(None)
        return uploads

    def get_template_namespace(self) -> dict[str, Any]:
        namespace = super().get_template_namespace()
        namespace.update(human_size=human_size, uploaded_at=uploaded_at, url_escape=url_escape)
        return namespace


class IndexHandler(BaseHandler):
    async def get(self) -> None:
        kind = self.get_query_argument("kind", None)
        uploads = await self.uploads(kind)
        counts = await self.db[f"{BUCKET}.files"].aggregate(COUNTS_PIPELINE).to_list(None)
        self.render("index.html", uploads=uploads, counts=counts, kind=kind)


class UploadHandler(BaseHandler):
    async def post(self) -> None:
        files = self.request.files.get("file")
        if not files or not files[0]["filename"]:
            raise tornado.web.HTTPError(400, reason="Choose a file to upload")
        upload = files[0]
        data: bytes = upload["body"]
        content_type = upload["content_type"]
        if not content_type or content_type == "application/octet-stream":
            content_type = mimetypes.guess_type(upload["filename"])[0] or "application/octet-stream"
        name = stored_name(upload["filename"])
        metadata = {
            "title": self.get_body_argument("title", "").strip() or upload["filename"],
            "note": self.get_body_argument("note", "").strip(),
            "originalName": upload["filename"],
            "contentType": content_type,
            "kind": media_kind(content_type),
            # A checksum for the file's page: GridFS itself no longer stores one.
            "md5": hashlib.md5(data).hexdigest(),
        }
        await self.bucket.upload_from_stream(name, data, metadata=metadata)
        self.redirect(f"/files/{url_escape(name, plus=False)}", status=303)


class FilePageHandler(BaseHandler):
    async def get(self, name: str) -> None:
        files = self.db[f"{BUCKET}.files"]
        file = await files.find_one({"filename": name}, sort=[("uploadDate", -1)])
        if file is None:
            raise tornado.web.HTTPError(404, reason="No such file")
        self.render("file.html", file=file, src=f"/fs/{url_escape(name, plus=False)}")


class FilesAPIHandler(BaseHandler):
    """The listing as JSON, in the older style: ``yield`` Motor futures in a coroutine."""

    @gen.coroutine
    def get(self) -> Generator[Any, Any, None]:
        cursor = self.db[f"{BUCKET}.files"].aggregate(listing_pipeline())
        uploads = yield cursor.to_list(None)
        counts = yield self.db[f"{BUCKET}.files"].aggregate(COUNTS_PIPELINE).to_list(None)
        self.set_header("Content-Type", "application/json")
        self.write(json_util.dumps({"files": uploads, "counts": counts}))


def access_logger(write: Callable[[str], None]) -> Callable[[tornado.web.RequestHandler], None]:
    """A Tornado ``log_function`` that writes one line per request, with its Range header."""

    def log(handler: tornado.web.RequestHandler) -> None:
        request = handler.request
        asked = request.headers.get("Range")
        extra = f" [Range: {asked}]" if asked else ""
        # Static files' URLs end in a long version hash (?v=...): leave it out.
        uri = request.path if request.path.startswith("/static/") else request.uri
        elapsed = 1000 * request.request_time()
        write(f"http: {handler.get_status()} {request.method} {uri}{extra} {elapsed:.1f} ms")

    return log


def make_app(
    db: Database, log: Callable[[str], None] | None = None, **settings: Any
) -> tornado.web.Application:
    """The application; ``log`` gets one line per request (``None``: no access log)."""
    return tornado.web.Application(
        [
            (r"/", IndexHandler),
            (r"/upload", UploadHandler),
            (r"/files/(.+)", FilePageHandler),
            (r"/fs/(.+)", GridFSHandler, {"database": db, "root_collection": BUCKET}),
            (r"/api/files", FilesAPIHandler),
        ],
        db=db,
        template_path=os.path.join(HERE, "templates"),
        static_path=os.path.join(HERE, "static"),
        xsrf_cookies=True,  # the upload form carries the _xsrf token
        log_function=access_logger(log) if log else lambda handler: None,
        **settings,
    )


def uploaded_at(file: dict[str, Any]) -> str:
    """The upload time for display (GridFS stores it in UTC)."""
    date: datetime.datetime = file["uploadDate"]
    return date.strftime("%Y-%m-%d %H:%M:%S UTC")
