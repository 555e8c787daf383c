"""GridFS over HTTP: :class:`motor.web.GridFSHandler` and :class:`motor.aiohttp.AIOHTTPGridFS`.

Every test is written once and runs once per handler, through the ``fw`` fixture: under
``fw.name == "tornado"`` the files are served by ``GridFSHandler`` in a Tornado application
with a ``MotorClient`` on the Tornado ``IOLoop``; under "asyncio" by ``AIOHTTPGridFS`` in an
aiohttp application with an ``AsyncIOMotorClient``.  (So the test ids' ``[tornado]`` means
the Tornado handler and ``[asyncio]`` the aiohttp one.)  The server listens on a loopback
port; the HTTP client is aiohttp's, on the same loop, against the real test server
(``server`` fixture).

The small files have 1000-byte chunks, so that ranges cross chunk boundaries.
``test_big_file`` serves a 100 MiB file (uploaded once per module through a PyMongo
``GridIn`` in 1 MiB pieces) from a server running in a subprocess started by this module
(``python -m test.test_web KIND URI DB``), so that its memory can be measured: after a
warm-up the child resets its peak RSS (``/proc/self/clear_refs``), the test downloads the
whole file (streaming and hashing, never holding it), and the child reports its peak RSS
growth, the most CPU its loop used between two 1 ms ticks of a :class:`LoopProbe`, and
the chunk documents a ``CommandListener`` saw returned.  The figures are printed (``-s``)
and asserted: growth under 20 MB, the stall bound (:attr:`LoopProbe.held`: the driver's
children in any gap, the loop in all gaps but one) under 10 ms, and a range in the middle
of the file reading only the chunks that cover it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import email.utils
import gc
import hashlib
import json
import logging
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from bson import ObjectId
from gridfs import GridFSBucket
from pymongo import MongoClient, monitoring

from motor import _http
from motor.aiohttp import AIOHTTPGridFS
from motor.motor_asyncio import (
    AsyncIOMotorGridFSBucket,
    AsyncIOMotorGridIn,
    AsyncIOMotorGridOut,
)
from motor.motor_tornado import MotorGridFSBucket, MotorGridIn, MotorGridOut
from motor.web import GridFSHandler
from test.framework import Framework, LoopProbe, assert_no_stall, timed_children

ROOT = Path(__file__).resolve().parent.parent
MAX_BUSY = 0.010

CHUNK = 1000
STORY = random.Random(7).randbytes(10_000)  # 10 chunks
OLD_STORY = b"the first revision"
PAGE = b"<p>hello</p>"
META = b"\x00\x01 typed by metadata"
DECLARED = b"a,b\n1,2\n"

BIG_PIECE = 1 << 20
BIG_PIECES = 100
BIG_LENGTH = BIG_PIECE * BIG_PIECES  # 100 MiB
BIG_SEED = 20240611
MIDDLE = (50_000_000, 51_000_000)  # [start, end) of the middle range
MAX_RSS_GROWTH = 20 * 1024 * 1024


# ---------------------------------------------------------------- serving in-process


@dataclasses.dataclass
class Hooks:
    """The overridable parts of a handler, in a form both handlers can take."""

    cache_time: Callable[[str, datetime.datetime, str], int] | None = None
    extra_headers: Callable[[Any], dict[str, str]] | None = None
    by_id: bool = False


@dataclasses.dataclass
class Response:
    status: int
    headers: Any  # aiohttp's CIMultiDictProxy: case-insensitive
    body: bytes


Fetch = Callable[..., Awaitable[Response]]


async def unopened(grid_out_class: Any, bucket: Any, file_id: str) -> Any:
    """A GridOut for the file with the ``_id`` ``file_id``, not opened (no I/O)."""
    return grid_out_class(bucket.collection, file_id=ObjectId(file_id))


def tornado_app(db: Any, hooks: Hooks) -> tornado.web.Application:
    class Handler(GridFSHandler):
        def get_gridfs_file(self, bucket: Any, filename: str, request: Any) -> Any:
            if hooks.by_id:
                return unopened(MotorGridOut, bucket, filename)
            return super().get_gridfs_file(bucket, filename, request)

        def get_cache_time(self, path: str, modified: datetime.datetime, mime_type: str) -> int:
            if hooks.cache_time is not None:
                return hooks.cache_time(path, modified, mime_type)
            return super().get_cache_time(path, modified, mime_type)

        def set_extra_headers(self, path: str, gridout: Any) -> None:
            if hooks.extra_headers is not None:
                for name, value in hooks.extra_headers(gridout).items():
                    self.set_header(name, value)

    return tornado.web.Application([(r"/fs/(.*)", Handler, {"database": db})])


def aiohttp_app(db: Any, hooks: Hooks) -> aiohttp.web.Application:
    options: dict[str, Any] = {}
    if hooks.by_id:
        options["get_gridfs_file"] = lambda bucket, filename, request: unopened(
            AsyncIOMotorGridOut, bucket, filename
        )
    if hooks.cache_time is not None:
        options["get_cache_time"] = hooks.cache_time
    if hooks.extra_headers is not None:
        extra = hooks.extra_headers

        def set_extra_headers(response: aiohttp.web.StreamResponse, gridout: Any) -> None:
            response.headers.update(extra(gridout))

        options["set_extra_headers"] = set_extra_headers
    app = aiohttp.web.Application()
    handler = AIOHTTPGridFS(db, **options)
    app.router.add_get("/fs/{filename}", handler)
    app.router.add_route("POST", "/fs/{filename}", handler)
    app.router.add_get("/nameless/{name}", AIOHTTPGridFS(db))
    return app


@contextlib.asynccontextmanager
async def listening(kind: str, app: Any) -> AsyncIterator[int]:
    """Serve ``app`` (Tornado's or aiohttp's) on a loopback port; yield the port."""
    if kind == "tornado":
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        http_server = tornado.httpserver.HTTPServer(app)
        http_server.add_sockets(sockets)
        try:
            yield sockets[0].getsockname()[1]
        finally:
            http_server.stop()
            await http_server.close_all_connections()
    else:
        runner = aiohttp.web.AppRunner(app)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield runner.addresses[0][1]
        finally:
            await runner.cleanup()


def handler_kind(fw: Framework) -> str:
    return "tornado" if fw.name == "tornado" else "aiohttp"


@contextlib.asynccontextmanager
async def serving(
    fw: Framework, db: Any, hooks: Hooks | None = None
) -> AsyncIterator[tuple[Fetch, int]]:
    """Serve ``db``'s bucket "fs" with the framework's handler; yield
    ``fetch(name, headers=None, method="GET")`` and the port."""
    hooks = hooks or Hooks()
    kind = handler_kind(fw)
    app = tornado_app(db, hooks) if kind == "tornado" else aiohttp_app(db, hooks)
    async with listening(kind, app) as port, aiohttp.ClientSession(auto_decompress=False) as http:

        async def fetch(
            name: str, headers: dict[str, str] | None = None, method: str = "GET"
        ) -> Response:
            url = f"http://127.0.0.1:{port}/{name}"
            async with http.request(method, url, headers=headers) as response:
                body = await response.read()
                return Response(response.status, response.headers, body)

        yield fetch, port


def bucket_class(fw: Framework) -> Any:
    return AsyncIOMotorGridFSBucket if fw.name == "asyncio" else MotorGridFSBucket


async def upload_files(fw: Framework, db: Any) -> dict[str, Any]:
    """The small files; returns their ``_id``s by name."""
    bucket = bucket_class(fw)(db, chunk_size_bytes=CHUNK)
    ids = {"old story": await bucket.upload_from_stream("story.txt", OLD_STORY)}
    await asyncio.sleep(0.002)  # the latest revision is the one uploaded last
    ids["story.txt"] = await bucket.upload_from_stream("story.txt", STORY)
    ids["page.html"] = await bucket.upload_from_stream("page.html", PAGE)
    ids["meta"] = await bucket.upload_from_stream(
        "meta", META, metadata={"contentType": "application/x-motor-test"}
    )
    # The file document's own contentType field (Motor 3.7.1's GridIn content_type).
    grid_in_class = AsyncIOMotorGridIn if fw.name == "asyncio" else MotorGridIn
    grid_in = grid_in_class(db.fs, filename="declared", contentType="text/csv")
    await grid_in.write(DECLARED)
    await grid_in.close()
    ids["declared"] = grid_in._id
    ids["noext"] = await bucket.upload_from_stream("noext", b"who knows")
    ids["empty.txt"] = await bucket.upload_from_stream("empty.txt", b"")
    return ids


@dataclasses.dataclass
class Site:
    """Small files served from a fresh database."""

    fetch: Fetch
    ids: dict[str, Any]  # the files' _ids by name
    db: Any


@contextlib.asynccontextmanager
async def files_served(
    fw: Framework, server: Any, hooks: Hooks | None = None, **client_options: Any
) -> AsyncIterator[Site]:
    """A fresh database with the small files, served."""
    client = fw.client(server.uri, **client_options)
    db = client[f"motor_test_web_{uuid.uuid4().hex[:8]}"]
    ids = await upload_files(fw, db)
    try:
        async with serving(fw, db, hooks) as (fetch, _):
            await fw.probe.settle()
            yield Site(fetch, ids, db)
    finally:
        await client.drop_database(db)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def http_date(moment: datetime.datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(datetime.UTC), usegmt=True)


def last_modified(response: Response) -> datetime.datetime:
    return email.utils.parsedate_to_datetime(response.headers["Last-Modified"])


# ---------------------------------------------------------------- the small files


async def test_get_whole_file(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        started = datetime.datetime.now(datetime.UTC)
        response = await site.fetch("fs/story.txt")
        latest = await site.db.fs.files.find_one(
            {"filename": "story.txt"}, sort=[("uploadDate", -1)]
        )
    assert response.status == 200
    assert sha(response.body) == sha(STORY)  # the latest revision
    headers = response.headers
    assert headers["Content-Length"] == str(len(STORY))
    assert headers["Content-Type"] == "text/plain"
    assert headers["Accept-Ranges"] == "bytes"
    assert headers["Cache-Control"] == "public"  # get_cache_time() == 0, as in Motor
    assert "Expires" not in headers
    assert "Content-Range" not in headers
    # Motor 3.7.1's entity tag: a cache holding one revalidates with this Motor.
    motor_371_tag = hashlib.sha256(
        f"{latest['_id']}{latest['length']}{latest['uploadDate']}".encode()
    ).hexdigest()
    assert headers["ETag"] == f'"{motor_371_tag}"'
    modified = last_modified(response)
    assert started - datetime.timedelta(seconds=30) < modified <= started
    fw.probe.assert_below(MAX_BUSY)


async def test_head(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        got = await site.fetch("fs/story.txt")
        head = await site.fetch("fs/story.txt", method="HEAD")
        # A Range is for GET only: HEAD describes the whole file.
        ranged = await site.fetch("fs/story.txt", {"Range": "bytes=0-9"}, method="HEAD")
    for response in (head, ranged):
        assert response.status == 200
        assert response.body == b""
        assert response.headers["Content-Length"] == str(len(STORY))
        for name in ("Content-Type", "ETag", "Last-Modified", "Accept-Ranges", "Cache-Control"):
            assert response.headers[name] == got.headers[name], name
    fw.probe.assert_below(MAX_BUSY)


async def test_missing_file(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        missing = await site.fetch("fs/no-such-file")
        head = await site.fetch("fs/no-such-file", method="HEAD")
    assert missing.status == 404
    assert head.status == 404
    assert "ETag" not in missing.headers
    fw.probe.assert_below(MAX_BUSY)


async def test_not_modified_by_date(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        first = await site.fetch("fs/story.txt")
        modified = last_modified(first)
        same = await site.fetch("fs/story.txt", {"If-Modified-Since": http_date(modified)})
        later = http_date(modified + datetime.timedelta(days=1))
        after = await site.fetch("fs/story.txt", {"If-Modified-Since": later})
        head = await site.fetch("fs/story.txt", {"If-Modified-Since": later}, method="HEAD")
        earlier = http_date(modified - datetime.timedelta(seconds=1))
        before = await site.fetch("fs/story.txt", {"If-Modified-Since": earlier})
        invalid = await site.fetch("fs/story.txt", {"If-Modified-Since": "yesterday"})
    for response in (same, after, head):
        assert response.status == 304
        assert response.body == b""
        assert response.headers["ETag"] == first.headers["ETag"]
        assert response.headers["Cache-Control"] == "public"
    for response in (before, invalid):
        assert response.status == 200
        assert sha(response.body) == sha(STORY)
    fw.probe.assert_below(MAX_BUSY)


async def test_not_modified_by_etag(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        first = await site.fetch("fs/story.txt")
        etag = first.headers["ETag"]
        fresh = http_date(last_modified(first))
        stale = http_date(last_modified(first) - datetime.timedelta(days=1))
        responses = {
            "current": await site.fetch("fs/story.txt", {"If-None-Match": etag}),
            "in a list": await site.fetch("fs/story.txt", {"If-None-Match": f'"x", W/{etag}'}),
            "star": await site.fetch("fs/story.txt", {"If-None-Match": "*"}),
            # RFC 9110 §13.2.2: If-None-Match is evaluated, If-Modified-Since is not.
            "match, old date": await site.fetch(
                "fs/story.txt", {"If-None-Match": etag, "If-Modified-Since": stale}
            ),
            "other": await site.fetch("fs/story.txt", {"If-None-Match": '"other"'}),
            "other, fresh date": await site.fetch(
                "fs/story.txt", {"If-None-Match": '"other"', "If-Modified-Since": fresh}
            ),
            "other file": await site.fetch("fs/page.html", {"If-None-Match": etag}),
            # Malformed: ignored (Motor 3.7.1 answered 200 too).
            "malformed": await site.fetch("fs/story.txt", {"If-None-Match": etag + "a"}),
            "malformed, fresh date": await site.fetch(
                "fs/story.txt", {"If-None-Match": f"{etag}, x", "If-Modified-Since": fresh}
            ),
        }
    statuses = {case: response.status for case, response in responses.items()}
    assert statuses == {
        "current": 304,
        "in a list": 304,
        "star": 304,
        "match, old date": 304,
        "other": 200,
        "other, fresh date": 200,
        "other file": 200,
        "malformed": 200,
        "malformed, fresh date": 304,
    }
    assert responses["current"].headers["ETag"] == etag
    assert responses["other"].body == STORY
    fw.probe.assert_below(MAX_BUSY)


async def test_etag_is_a_validator_of_the_revision(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        first = await site.fetch("fs/story.txt")
        again = await site.fetch("fs/story.txt")
        other = await site.fetch("fs/page.html")
        await bucket_class(fw)(site.db).upload_from_stream("story.txt", b"a new revision")
        new = await site.fetch("fs/story.txt", {"If-None-Match": first.headers["ETag"]})
    assert first.headers["ETag"] == again.headers["ETag"] != other.headers["ETag"]
    assert new.status == 200
    assert new.body == b"a new revision"
    assert new.headers["ETag"] != first.headers["ETag"]
    fw.probe.assert_below(MAX_BUSY)


RANGES = [
    # (Range, expected (start, end)), in a 10-chunk file of 1000-byte chunks.
    ("bytes=0-99", (0, 100)),  # first
    ("bytes=4100-4199", (4100, 4200)),  # middle, within a chunk
    ("bytes=2990-3009", (2990, 3010)),  # across a chunk boundary
    ("bytes=1500-6499", (1500, 6500)),  # across six chunks
    ("bytes=9000-", (9000, 10_000)),  # last, open-ended
    ("bytes=9990-20000", (9990, 10_000)),  # a last position past the end: the end
    ("bytes=-500", (9500, 10_000)),  # suffix
    ("bytes=-20000", (0, 10_000)),  # suffix longer than the file: all of it
    ("bytes=0-0", (0, 1)),
    ("bytes=9999-9999", (9999, 10_000)),
    ("BYTES = 10-19, ", (10, 20)),  # case, spaces, an empty list element
]


async def test_ranges(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        whole = await site.fetch("fs/story.txt")
        responses = [await site.fetch("fs/story.txt", {"Range": value}) for value, _ in RANGES]
    for (value, (start, end)), response in zip(RANGES, responses):
        assert response.status == 206, value
        assert response.body == STORY[start:end], value
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(STORY)}"
        assert response.headers["Content-Length"] == str(end - start)
        for name in ("Content-Type", "ETag", "Last-Modified", "Accept-Ranges"):
            assert response.headers[name] == whole.headers[name], (value, name)
    fw.probe.assert_below(MAX_BUSY)


async def test_range_reads_only_the_chunks_it_covers(fw: Framework, server: Any) -> None:
    counter = ChunkCounter()
    async with files_served(fw, server, event_listeners=[counter]) as site:
        counter.reset()
        response = await site.fetch("fs/story.txt", {"Range": "bytes=2500-4499"})
        ranged = counter.chunks
        counter.reset()
        await site.fetch("fs/story.txt")
        whole = counter.chunks
    assert response.status == 206
    assert response.body == STORY[2500:4500]
    assert (ranged, whole) == (3, 10)  # chunks 2, 3 and 4; all ten
    fw.probe.assert_below(MAX_BUSY)


class KilledCursors(monitoring.CommandListener):
    """Records the collections of ``killCursors`` commands that succeeded."""

    def __init__(self) -> None:
        self.collections: list[str] = []
        self._started: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "killCursors":
            self._started[event.request_id] = event.command["killCursors"]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.request_id in self._started:
            self.collections.append(self._started.pop(event.request_id))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._started.pop(event.request_id, None)


async def test_client_going_away(
    fw: Framework, server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects in the middle of the body: the handler stops, closes
    its chunk cursor and logs no error."""
    killed = KilledCursors()
    client = fw.client(server.uri, event_listeners=[killed])
    db = client[f"motor_test_web_{uuid.uuid4().hex[:8]}"]
    data = random.Random(3).randbytes(16 << 20)  # 65 chunks of 255 KiB: 17 batches
    await bucket_class(fw)(db).upload_from_stream("large.bin", data)
    async with serving(fw, db) as (fetch, port):
        await fw.probe.settle()
        # A small receive buffer, so the server cannot hand it all to the kernel.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"GET /fs/large.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = 0
        while received < 1 << 20:
            received += len(await reader.read(1 << 16))
        writer.transport.abort()  # reset the connection
        for _ in range(500):
            if "fs.chunks" in killed.collections:
                break
            await asyncio.sleep(0.01)
        # The connection still works for others.
        response = await fetch("fs/large.bin", {"Range": "bytes=0-9"})
    await client.drop_database(db)
    assert killed.collections == ["fs.chunks"]
    assert response.body == data[:10]
    errors = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert not errors, [record.getMessage() for record in errors]
    fw.probe.assert_below(MAX_BUSY)


async def test_unsatisfiable_ranges(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        cases = [
            ("story.txt", "bytes=10000-"),
            ("story.txt", "bytes=10000-10010"),
            ("story.txt", "bytes=20000-30000"),
            ("story.txt", "bytes=-0"),
            ("empty.txt", "bytes=0-"),
            ("empty.txt", "bytes=-5"),
        ]
        responses = [await site.fetch(f"fs/{name}", {"Range": value}) for name, value in cases]
    for (name, value), response in zip(cases, responses):
        length = len(STORY) if name == "story.txt" else 0
        assert response.status == 416, (name, value)
        assert response.headers["Content-Range"] == f"bytes */{length}"
        assert response.body == b""
    fw.probe.assert_below(MAX_BUSY)


IGNORED_RANGES = [
    "bytes=0-9,20-29",  # several ranges: RFC 9110 lets a server send the whole file
    "bytes=0-9, -5",
    "bytes=9-0",  # last before first: invalid
    "bytes=a-9",
    "bytes=-",
    "bytes=1.5-2",
    "bytes=+1-2",
    "bytes=\u0661-9",  # an Arabic-Indic digit one: not an ASCII DIGIT
    "bytes 0-9",
    "items=0-9",
    "",
]


async def test_ignored_ranges(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        responses = [await site.fetch("fs/story.txt", {"Range": value}) for value in IGNORED_RANGES]
    for value, response in zip(IGNORED_RANGES, responses):
        assert response.status == 200, value
        assert sha(response.body) == sha(STORY), value
        assert "Content-Range" not in response.headers
    fw.probe.assert_below(MAX_BUSY)


async def test_if_range(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        first = await site.fetch("fs/story.txt")
        etag = first.headers["ETag"]
        modified = last_modified(first)
        cases = {
            "current etag": etag,
            "current date": first.headers["Last-Modified"],
            "stale etag": '"0123456789abcdef0123456789abcdef"',
            "weak etag": f"W/{etag}",  # If-Range needs a strong match
            "stale date": http_date(modified - datetime.timedelta(seconds=1)),
            "later date": http_date(modified + datetime.timedelta(seconds=1)),
            "not a date": "yesterday",
        }
        responses = {
            case: await site.fetch("fs/story.txt", {"Range": "bytes=100-199", "If-Range": value})
            for case, value in cases.items()
        }
        # A stale If-Range makes an unsatisfiable Range moot: the whole file.
        moot = await site.fetch("fs/story.txt", {"Range": "bytes=20000-", "If-Range": '"stale"'})
    statuses = {case: response.status for case, response in responses.items()}
    assert statuses == {
        "current etag": 206,
        "current date": 206,
        "stale etag": 200,
        "weak etag": 200,
        "stale date": 200,
        "later date": 200,
        "not a date": 200,
    }
    for response in responses.values():
        expected = STORY[100:200] if response.status == 206 else STORY
        assert response.body == expected
    assert (moot.status, moot.body) == (200, STORY)
    fw.probe.assert_below(MAX_BUSY)


async def test_cache_time_and_extra_headers(fw: Framework, server: Any) -> None:
    cache_calls: list[tuple[str, datetime.datetime, str]] = []

    def cache_time(path: str, modified: datetime.datetime, mime_type: str) -> int:
        cache_calls.append((path, modified, mime_type))
        return 3600 if mime_type.startswith("text/") else 0

    def extra_headers(gridout: Any) -> dict[str, str]:
        # A Content-Length of the application's does not cut the body: Motor's is set
        # after these, as in Motor 3.7.1.
        return {
            "X-Served-Length": str(gridout.length),
            "X-Name": gridout.filename,
            "Content-Length": "3",
        }

    hooks = Hooks(cache_time=cache_time, extra_headers=extra_headers)
    async with files_served(fw, server, hooks) as site:
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        text = await site.fetch("fs/story.txt")
        after = datetime.datetime.now(datetime.UTC)
        binary = await site.fetch("fs/meta")
        not_modified = await site.fetch("fs/story.txt", {"If-None-Match": text.headers["ETag"]})
        ranged = await site.fetch("fs/story.txt", {"Range": "bytes=0-9"})
        story = await site.db.fs.files.find_one(
            {"filename": "story.txt"}, sort=[("uploadDate", -1)]
        )
    # The upload date as the client decodes it (naive UTC), as Motor 3.7.1 passed it: to
    # the second for Tornado, as it is for aiohttp.
    uploaded = story["uploadDate"]
    assert uploaded.tzinfo is None
    modified = uploaded.replace(microsecond=0) if fw.name == "tornado" else uploaded
    assert text.headers["Cache-Control"] == "max-age=3600"
    assert text.body == STORY and text.headers["Content-Length"] == str(len(STORY))
    assert ranged.body == STORY[:10] and ranged.headers["Content-Length"] == "10"
    expires = email.utils.parsedate_to_datetime(text.headers["Expires"])
    hour = datetime.timedelta(hours=1)
    assert before + hour <= expires <= after + hour
    assert binary.headers["Cache-Control"] == "public"
    assert "Expires" not in binary.headers
    for response in (text, not_modified, ranged):
        assert response.headers["Cache-Control"] == "max-age=3600"
        assert "Expires" in response.headers
        assert response.headers["X-Served-Length"] == str(len(STORY))
        assert response.headers["X-Name"] == "story.txt"
    assert binary.headers["X-Name"] == "meta"
    assert cache_calls[0] == ("story.txt", modified, "text/plain")
    assert modified.replace(microsecond=0, tzinfo=datetime.UTC) == last_modified(text)
    assert cache_calls[1][::2] == ("meta", "application/x-motor-test")

    # A tz_aware client's: aware.
    cache_calls.clear()
    async with files_served(fw, server, hooks, tz_aware=True) as site:
        await site.fetch("fs/story.txt")
        story = await site.db.fs.files.find_one(
            {"filename": "story.txt"}, sort=[("uploadDate", -1)]
        )
    uploaded = story["uploadDate"]
    assert uploaded.tzinfo is not None
    modified = uploaded.replace(microsecond=0) if fw.name == "tornado" else uploaded
    assert cache_calls == [("story.txt", modified, "text/plain")]
    fw.probe.assert_below(MAX_BUSY)


async def test_get_gridfs_file_override(fw: Framework, server: Any) -> None:
    async with files_served(fw, server, Hooks(by_id=True)) as site:
        old = await site.fetch(f"fs/{site.ids['old story']}")
        new = await site.fetch(f"fs/{site.ids['story.txt']}")
        missing = await site.fetch(f"fs/{ObjectId()}")
    assert (old.status, old.body) == (200, OLD_STORY)
    assert (new.status, new.body) == (200, STORY)
    assert missing.status == 404
    # The handler opened the GridOut; a missing one is a 404 (NoFile from open()).
    # The type is guessed from the file's name when the URL has no extension.
    assert old.headers["Content-Type"] == "text/plain"
    fw.probe.assert_below(MAX_BUSY)


async def test_content_type(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        types = {
            name: (await site.fetch(f"fs/{name}")).headers["Content-Type"]
            for name in ("meta", "declared", "page.html", "story.txt", "noext", "empty.txt")
        }
        empty = await site.fetch("fs/empty.txt")
    assert types == {
        "meta": "application/x-motor-test",  # metadata.contentType
        "declared": "text/csv",  # the file document's contentType
        "page.html": "text/html",  # guessed from the name
        "story.txt": "text/plain",
        "noext": "application/octet-stream",
        "empty.txt": "text/plain",
    }
    assert (empty.status, empty.body, empty.headers["Content-Length"]) == (200, b"", "0")
    fw.probe.assert_below(MAX_BUSY)


async def test_other_methods_and_routes(fw: Framework, server: Any) -> None:
    async with files_served(fw, server) as site:
        post = await site.fetch("fs/story.txt", method="POST")
        nameless = await site.fetch("nameless/story.txt") if fw.name == "asyncio" else None
    assert post.status == 405
    if nameless is not None:  # aiohttp
        assert set(post.headers["Allow"].split(",")) == {"GET", "HEAD"}
        # A route without {filename}.
        assert nameless.status == 500
        assert b"requires a {filename} variable" in nameless.body
    fw.probe.assert_below(MAX_BUSY)


def test_aiohttp_handler_needs_an_asyncio_database() -> None:
    with pytest.raises(TypeError, match="AsyncIOMotorDatabase"):
        AIOHTTPGridFS("not a database")  # type: ignore[arg-type]


def test_aiohttp_is_optional() -> None:
    """Without aiohttp every Motor module but motor.aiohttp imports, and that one says
    which extra to install."""
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "import motor, motor.motor_asyncio, motor.motor_tornado, motor.motor_gridfs\n"
        "import motor.web, motor._http\n"
        "try:\n"
        "    import motor.aiohttp\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    sys.exit('motor.aiohttp imported without aiohttp')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "motor[aiohttp]" in done.stdout


def test_parse_range() -> None:
    parse = _http.parse_range
    assert parse("bytes=0-99", 1000) == (0, 100)
    assert parse("bytes=990-", 1000) == (990, 1000)
    assert parse("bytes=-10", 1000) == (990, 1000)
    assert parse("bytes=0-99,200-299", 1000) is None
    assert parse("bytes=5-4", 1000) is None
    for value, length in [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=-1", 0)]:
        with pytest.raises(_http.RangeNotSatisfiable):
            parse(value, length)


# ---------------------------------------------------------------- the 100 MiB file


@dataclasses.dataclass
class BigFile:
    db_name: str
    sha256: str
    middle: bytes  # the bytes of MIDDLE


def big_pieces() -> Iterator[bytes]:
    rng = random.Random(BIG_SEED)
    for _ in range(BIG_PIECES):
        yield rng.randbytes(BIG_PIECE)


@pytest.fixture(scope="module")
def big_file(server: Any) -> Iterator[BigFile]:
    """A 100 MiB file "big.bin" (default chunk size), written 1 MiB at a time."""
    client: MongoClient[Any] = MongoClient(server.uri)
    db_name = f"motor_test_web_big_{uuid.uuid4().hex[:8]}"
    digest = hashlib.sha256()
    middle = bytearray()
    position = 0
    try:
        with GridFSBucket(client[db_name]).open_upload_stream("big.bin") as grid_in:
            for piece in big_pieces():
                digest.update(piece)
                start, end = MIDDLE
                middle += piece[max(0, start - position) : max(0, end - position)]
                position += len(piece)
                grid_in.write(piece)
        yield BigFile(db_name, digest.hexdigest(), bytes(middle))
    finally:
        client.drop_database(db_name)
        client.close()


class ChunkCounter(monitoring.CommandListener):
    """Counts the documents that ``find`` and ``getMore`` on ``fs.chunks`` return."""

    def __init__(self) -> None:
        self.chunks = 0
        self._targets: dict[int, Any] = {}

    def reset(self) -> None:
        self.chunks = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self._targets[event.request_id] = event.command["find"]
        elif event.command_name == "getMore":
            self._targets[event.request_id] = event.command["collection"]

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if self._targets.pop(event.request_id, None) == "fs.chunks":
            cursor = event.reply["cursor"]
            self.chunks += len(cursor.get("firstBatch", cursor.get("nextBatch", ())))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._targets.pop(event.request_id, None)


class Child:
    """The web server in a subprocess, and its control connection."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.http_port = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    async def start(cls, kind: str, uri: str, db_name: str, log: Path) -> Child:
        with open(log, "wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "test.test_web",
                kind,
                uri,
                db_name,
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        child = cls(process, log)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            await process.wait()
            raise AssertionError(f"the server did not start:\n{log.read_text()}")
        ports = json.loads(line)
        child.http_port = ports["http"]
        child._reader, child._writer = await asyncio.open_connection("127.0.0.1", ports["control"])
        return child

    async def command(self, name: str) -> dict[str, Any]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(name.encode() + b"\n")
        line = await asyncio.wait_for(self._reader.readline(), 30)
        assert line, f"the server died:\n{self.log.read_text()}"
        result: dict[str, Any] = json.loads(line)
        return result

    async def stop(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(OSError, AssertionError, asyncio.TimeoutError):
                await self.command("stop")
            self._writer.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def download(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, str, int]:
    """GET ``url``, hashing the body as it streams in: (status, headers, sha256, length)."""
    digest = hashlib.sha256()
    length = 0
    async with http.get(url, headers=headers) as response:
        async for data in response.content.iter_chunked(1 << 16):
            digest.update(data)
            length += len(data)
        return response.status, response.headers, digest.hexdigest(), length


async def test_big_file(fw: Framework, server: Any, big_file: BigFile, tmp_path: Path) -> None:
    kind = handler_kind(fw)
    child = await Child.start(kind, server.uri, big_file.db_name, tmp_path / "server.log")
    url = f"http://127.0.0.1:{child.http_port}/fs/big.bin"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            # Warm-up: connections, imports, the cursor path and the allocator.
            await download(http, url, {"Range": "bytes=0-4194303"})
            baseline = await child.command("reset")
            started = time.perf_counter()
            status, headers, digest, length = await download(http, url)
            elapsed = time.perf_counter() - started
            whole = await child.command("stats")
            await child.command("reset")
            start, end = MIDDLE
            ranged = await download(http, url, {"Range": f"bytes={start}-{end - 1}"})
            middle = await child.command("stats")
    finally:
        await child.stop()
    assert (status, length, digest) == (200, BIG_LENGTH, big_file.sha256)
    assert headers["Content-Length"] == str(BIG_LENGTH)
    assert ranged[0] == 206
    assert ranged[1]["Content-Range"] == f"bytes {start}-{end - 1}/{BIG_LENGTH}"
    assert (ranged[2], ranged[3]) == (sha(big_file.middle), end - start)

    growth = (whole["hwm_kb"] - baseline["rss_kb"]) * 1024
    chunk_size = 255 * 1024
    covering = (end - 1) // chunk_size - start // chunk_size + 1
    print(
        f"\n{kind}: served {BIG_LENGTH / 2**20:.0f} MiB in {elapsed:.2f} s "
        f"({BIG_LENGTH / 2**20 / elapsed:.0f} MiB/s); server peak RSS growth "
        f"{growth / 2**20:.2f} MiB (RSS {baseline['rss_kb'] / 1024:.1f} MiB at the reset); "
        f"loop max busy {whole['max_busy'] * 1000:.2f} ms, held "
        f"{whole['held'] * 1000:.2f} ms (longest gap "
        f"{whole['max_gap'] * 1000:.2f} ms); chunk documents read: {whole['chunks']} for the "
        f"whole file, {middle['chunks']} for the middle range (covering: {covering})"
    )
    assert whole["chunks"] == -(-BIG_LENGTH // chunk_size)
    assert middle["chunks"] == covering
    assert growth < MAX_RSS_GROWTH, growth
    assert_no_stall(whole["held"], MAX_BUSY, whole)
    assert_no_stall(middle["held"], MAX_BUSY, middle)


# ---------------------------------------------------------------- the server subprocess


def _proc_status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in kB."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


async def _serve(kind: str, uri: str, db_name: str) -> None:
    """Serve ``db_name``'s bucket with the ``kind`` handler; obey control commands."""
    counter = ChunkCounter()
    probe = LoopProbe()
    probe.start()
    if kind == "tornado":
        from tornado.ioloop import IOLoop

        from motor.motor_tornado import MotorClient

        client: Any = MotorClient(uri, event_listeners=[counter], io_loop=IOLoop.current())
        app: Any = tornado_app(client[db_name], Hooks())
    else:
        from motor.motor_asyncio import AsyncIOMotorClient

        client = AsyncIOMotorClient(uri, event_listeners=[counter])
        app = aiohttp.web.Application()
        app.router.add_get("/fs/{filename}", AIOHTTPGridFS(client[db_name]))
    stop = asyncio.Event()

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            command = line.decode().strip()
            if command == "reset":
                gc.collect()
                counter.reset()
                with open("/proc/self/clear_refs", "w") as clear_refs:
                    clear_refs.write("5")  # reset VmHWM to the current RSS
                reply: dict[str, Any] = {"rss_kb": _proc_status()["VmRSS"]}
                probe.reset()
            elif command == "stats":
                status = _proc_status()
                reply = {
                    "rss_kb": status["VmRSS"],
                    "hwm_kb": status["VmHWM"],
                    "max_busy": probe.max_busy,
                    "held": probe.held,
                    "max_gap": probe.max_gap,
                    "chunks": counter.chunks,
                }
            else:
                reply = {}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            if command == "stop":
                break
        writer.close()
        stop.set()

    # The driver's children timed, for the stall bound (LoopProbe.held).
    with timed_children(probe):
        async with listening(kind, app) as http_port:
            control_server = await asyncio.start_server(control, "127.0.0.1", 0)
            control_port = control_server.sockets[0].getsockname()[1]
            print(json.dumps({"http": http_port, "control": control_port}), flush=True)
            await stop.wait()
            control_server.close()
    await probe.stop()
    client.close()


if __name__ == "__main__":
    asyncio.run(_serve(*sys.argv[1:4]))
