"""Serve GridFS files from an aiohttp web application: :class:`AIOHTTPGridFS`.

Needs aiohttp, which Motor does not install by default: ``pip install 'motor[aiohttp]'``.
No other Motor module imports this one.

The HTTP decisions (conditional requests, ``Range``, the headers) are made in
:mod:`motor._http`, shared with :mod:`motor.web`; this module adapts them to aiohttp.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

try:
    import aiohttp.web
except ImportError as exc:
    raise ImportError(
        "motor.aiohttp needs aiohttp, which Motor does not install by default: "
        "install Motor's 'aiohttp' extra (pip install 'motor[aiohttp]')"
    ) from exc
from gridfs.errors import NoFile

from motor import _http
from motor.motor_asyncio import (
    AsyncIOMotorDatabase,
    AsyncIOMotorGridFSBucket,
    AsyncIOMotorGridOut,
)

__all__ = ["AIOHTTPGridFS", "get_cache_time", "get_gridfs_file", "set_extra_headers"]


def get_gridfs_file(
    bucket: AsyncIOMotorGridFSBucket, filename: str, request: aiohttp.web.Request
) -> Awaitable[AsyncIOMotorGridOut]:
    """The default way to choose the GridFS file to serve at a URL; pass another
    function as :class:`AIOHTTPGridFS`'s ``get_gridfs_file`` to change it.

    ``filename`` is the ``{filename}`` part of the URL: for the route
    ``/fs/{filename}``, a request for ``/fs/image.png`` is served
    ``await bucket.open_download_stream_by_name("image.png")``.  Return an awaitable
    :class:`~motor.motor_asyncio.AsyncIOMotorGridOut` (a coroutine will do), or raise
    :class:`gridfs.errors.NoFile` for a 404.  For instance, to serve files by ``_id``::

        def get_gridfile_by_id(bucket, filename, request):
            return bucket.open_download_stream(ObjectId(filename))

        handler = AIOHTTPGridFS(client.my_database, get_gridfs_file=get_gridfile_by_id)

    :Parameters:
      - `bucket`: an :class:`~motor.motor_asyncio.AsyncIOMotorGridFSBucket`
      - `filename`: a string, the URL's ``{filename}``
      - `request`: the :class:`aiohttp.web.Request`
    """
    return bucket.open_download_stream_by_name(filename)


def get_cache_time(filename: str, modified: datetime.datetime, mime_type: str) -> int:
    """The default cache time: 0.  Pass another function as :class:`AIOHTTPGridFS`'s
    ``get_cache_time`` to let clients cache files.

    Return a number of seconds for ``Cache-Control: max-age=<seconds>`` and an
    ``Expires`` that far ahead, or 0 for ``Cache-Control: public`` only.  For instance,
    to let clients keep images for an hour::

        def image_cache_time(filename, modified, mime_type):
            return 3600 if mime_type.startswith("image/") else 0

    :Parameters:
      - `filename`: a string, the URL's ``{filename}``
      - `modified`: the file's upload date, as the client decodes it (a naive UTC
        datetime unless the client is ``tz_aware``)
      - `mime_type`: the ``Content-Type`` it is served with, like ``"image/png"``
    """
    return 0


def set_extra_headers(response: aiohttp.web.StreamResponse, gridout: AsyncIOMotorGridOut) -> None:
    """The default extra headers: none.  Pass another function as
    :class:`AIOHTTPGridFS`'s ``set_extra_headers`` to add some; it is called after the
    standard headers are set, for every status but 404.  For instance::

        def gzip_header(response, gridout):
            response.headers["Content-Encoding"] = "gzip"

    :Parameters:
      - `response`: the :class:`aiohttp.web.StreamResponse` about to be sent
      - `gridout`: the :class:`~motor.motor_asyncio.AsyncIOMotorGridOut` served
    """


GetGridFSFile = Callable[
    [AsyncIOMotorGridFSBucket, str, aiohttp.web.Request], Awaitable[AsyncIOMotorGridOut]
]
GetCacheTime = Callable[[str, datetime.datetime, str], int]
SetExtraHeaders = Callable[[aiohttp.web.StreamResponse, AsyncIOMotorGridOut], None]


class AIOHTTPGridFS:
    """An aiohttp request handler that serves files from GridFS, like aiohttp's
    static file route serves them from disk.

    .. code-block:: python

        client = AsyncIOMotorClient()
        gridfs_handler = AIOHTTPGridFS(client.my_database)
        app = aiohttp.web.Application()
        # The route needs a {filename} variable; add_get also routes HEAD.
        app.router.add_get("/fs/{filename}", gridfs_handler)

    ``GET`` and ``HEAD`` of ``/fs/<name>`` serve the latest revision of the file named
    ``<name>`` in the bucket ``root_collection`` (see :func:`get_gridfs_file`), with
    ``Content-Type``, ``Content-Length``, ``Last-Modified``, an ``ETag`` and
    ``Accept-Ranges: bytes``; a missing file is a 404.

    ``If-None-Match`` and ``If-Modified-Since`` are honoured (304; the first wins when
    both are sent).  A single ``Range`` gets a 206 with that part of the file (``If-Range``
    permitting), or a 416 if it starts past the end; several ranges, or a malformed
    ``Range``, get the whole file.  The body is streamed chunk by chunk through a
    :class:`aiohttp.web.StreamResponse` (``write`` drains the connection before the next
    chunk is read), and only the chunks that cover the range are read.

    By default no expiry is sent (``Cache-Control: public``), so each request costs a
    query for the file document; pass ``get_cache_time`` to change that.

    :Parameters:
      - `database`: an :class:`~motor.motor_asyncio.AsyncIOMotorDatabase`
      - `root_collection`: the GridFS bucket's name
      - `get_gridfs_file`: replaces :func:`get_gridfs_file`
      - `get_cache_time`: replaces :func:`get_cache_time`
      - `set_extra_headers`: replaces :func:`set_extra_headers`

    Beyond Motor 3.7.1: ``Range`` and ``If-Range`` (206, 416), ``Accept-Ranges``,
    ``If-None-Match`` taking precedence over ``If-Modified-Since``, an ``ETag`` hashed
    from the file's ``_id``, length and upload date (not from its content), and
    ``application/octet-stream`` for a file whose type is unknown.  ``get_cache_time``
    is passed the URL's ``{filename}`` and the type the file is served with, as Motor's
    documentation says (Motor 3.7.1 passed the request's path and the file document's
    ``contentType``).
    """

    def __init__(
        self,
        database: AsyncIOMotorDatabase[Any],
        root_collection: str = "fs",
        get_gridfs_file: GetGridFSFile = get_gridfs_file,
        get_cache_time: GetCacheTime = get_cache_time,
        set_extra_headers: SetExtraHeaders = set_extra_headers,
    ) -> None:
        if not isinstance(database, AsyncIOMotorDatabase):
            raise TypeError(
                f"First argument to AIOHTTPGridFS must be AsyncIOMotorDatabase, not {database!r}"
            )
        self._database = database
        self._bucket = AsyncIOMotorGridFSBucket(database, root_collection)
        self._get_gridfs_file = get_gridfs_file
        self._get_cache_time = get_cache_time
        self._set_extra_headers = set_extra_headers
        _mark_coroutine_function(self)

    async def __call__(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        """Serve the file the request's ``{filename}`` names."""
        filename = request.match_info.get("filename")
        if filename is None:
            _route_error(request)
        if request.method not in ("GET", "HEAD"):
            raise aiohttp.web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        try:
            grid_out = await self._get_gridfs_file(self._bucket, filename, request)
            file = await _http.describe(grid_out, filename)  # may open the file: NoFile
        except NoFile:
            raise aiohttp.web.HTTPNotFound(text=request.path) from None
        cache_time = self._get_cache_time(filename, file.upload_date, file.content_type)
        reply = _http.respond(request.method, request.headers, file, cache_time)
        response = aiohttp.web.StreamResponse(status=reply.status)
        for name, value in reply.leading_headers:
            response.headers[name] = value
        self._set_extra_headers(response, grid_out)
        length = reply.content_length
        if length is not None:
            response.headers["Content-Length"] = length
        if reply.body is None:
            return response  # aiohttp sends the headers
        await response.prepare(request)
        try:
            await _http.send(grid_out, reply.body, response.write)
        except ConnectionError:  # reset while writing, or lost while draining
            return response  # the client went away
        await response.write_eof()
        return response


def _mark_coroutine_function(handler: AIOHTTPGridFS) -> None:
    """Let aiohttp see that ``handler(request)`` returns a coroutine.

    aiohttp warns (DeprecationWarning) when a route's handler is not a coroutine
    function, and a callable object is not one; Python marks one with
    :func:`inspect.markcoroutinefunction` (3.12+), older asyncio with an attribute.
    """
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:
        mark(handler)
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)
    if marker is not None:  # asyncio.iscoroutinefunction(), which aiohttp also asks
        handler._is_coroutine = marker  # type: ignore[attr-defined]


def _route_error(request: aiohttp.web.Request) -> NoReturn:
    info = request.match_info.route.resource
    route = info.canonical if info is not None else request.path
    raise aiohttp.web.HTTPInternalServerError(
        text=f'Bad AIOHTTPGridFS route "{route}", requires a {{filename}} variable'
    )
