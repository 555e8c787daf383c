"""Serve GridFS files from a Tornado web application: :class:`GridFSHandler`.

The HTTP decisions (conditional requests, ``Range``, the headers) are made in
:mod:`motor._http`, shared with :mod:`motor.aiohttp`; this module adapts them to
:class:`tornado.web.RequestHandler`.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable
from typing import Any

import tornado.web
from gridfs.errors import NoFile
from tornado.httputil import HTTPServerRequest
from tornado.iostream import StreamClosedError

from motor import _http
from motor.motor_tornado import MotorDatabase, MotorGridFSBucket, MotorGridOut

__all__ = ["GridFSHandler"]


class GridFSHandler(tornado.web.RequestHandler):
    """A handler that serves files from GridFS, like
    :class:`tornado.web.StaticFileHandler` serves them from disk.

    .. code-block:: python

        db = motor.motor_tornado.MotorClient().my_database
        application = tornado.web.Application(
            [(r"/static/(.*)", motor.web.GridFSHandler, {"database": db})]
        )

    ``GET`` and ``HEAD`` of ``/static/<name>`` serve the latest revision of the file
    named ``<name>`` in the bucket ``root_collection`` (see :meth:`get_gridfs_file`),
    with ``Content-Type``, ``Content-Length``, ``Last-Modified``, an ``ETag`` and
    ``Accept-Ranges: bytes``; a missing file is a 404.

    ``If-None-Match`` and ``If-Modified-Since`` are honoured (304; the first wins when
    both are sent).  A single ``Range`` gets a 206 with that part of the file (``If-Range``
    permitting), or a 416 if it starts past the end; several ranges, or a malformed
    ``Range``, get the whole file.  The body is read and sent chunk by chunk, each
    flushed to the connection before the next is read, and only the chunks that cover
    the range are read.

    By default no expiry is sent (``Cache-Control: public``), so each request costs a
    query for the file document; override :meth:`get_cache_time` to change that.

    Beyond Motor 3.7.1: ``Range`` and ``If-Range`` (206, 416), ``Accept-Ranges``,
    ``If-None-Match`` taking precedence over ``If-Modified-Since``, an ``ETag`` hashed
    from the file's ``_id``, length and upload date (not from its content), and
    ``application/octet-stream`` for a file whose type is unknown.
    """

    database: MotorDatabase[Any]
    root_collection: str

    def initialize(self, database: MotorDatabase[Any], root_collection: str = "fs") -> None:
        """Serve files from the bucket ``root_collection`` of ``database``, a
        :class:`~motor.motor_tornado.MotorDatabase`."""
        self.database = database
        self.root_collection = root_collection

    def get_gridfs_file(
        self, bucket: MotorGridFSBucket, filename: str, request: HTTPServerRequest
    ) -> Awaitable[MotorGridOut]:
        """Override to choose the GridFS file to serve at a URL.

        ``filename`` is the part of the URL the route's group matched: for the route
        ``r"/static/(.*)"``, a request for ``/static/image.png`` is served
        ``await bucket.open_download_stream_by_name("image.png")``.  Return an awaitable
        :class:`~motor.motor_tornado.MotorGridOut` (a coroutine will do), or raise
        :class:`gridfs.errors.NoFile` for a 404.  For instance, to serve files by
        ``_id``::

            class HandlerById(motor.web.GridFSHandler):
                def get_gridfs_file(self, bucket, filename, request):
                    return bucket.open_download_stream(ObjectId(filename))

        :Parameters:
          - `bucket`: a :class:`~motor.motor_tornado.MotorGridFSBucket`
          - `filename`: a string, the matched group of the URL pattern
          - `request`: the :class:`tornado.httputil.HTTPServerRequest`
        """
        return bucket.open_download_stream_by_name(filename)

    async def get(self, path: str, include_body: bool = True) -> None:
        """Serve the file at ``path`` (the body only if ``include_body``)."""
        bucket = MotorGridFSBucket(self.database, self.root_collection)
        try:
            grid_out = await self.get_gridfs_file(bucket, path, self.request)
            file = await _http.describe(grid_out, path)  # may open the file: NoFile
        except NoFile:
            raise tornado.web.HTTPError(404) from None
        # The upload date as the client decodes it, to the second, as Motor 3.7.1 passed it.
        modified = file.upload_date.replace(microsecond=0)
        cache_time = self.get_cache_time(path, modified, file.content_type)
        method = (self.request.method or "GET") if include_body else "HEAD"
        reply = _http.respond(method, self.request.headers, file, cache_time)
        self.set_status(reply.status)
        for name, value in reply.leading_headers:
            self.set_header(name, value)
        self.set_extra_headers(path, grid_out)
        length = reply.content_length
        if length is not None:
            self.set_header("Content-Length", length)
        if reply.body is None:
            return  # Tornado finishes the response
        try:
            await _http.send(grid_out, reply.body, self._write_and_flush)
        except StreamClosedError:
            return  # the client went away; Tornado closes the connection

    def head(self, path: str) -> Awaitable[None]:
        """Send the headers a ``GET`` of ``path`` would get, without the body."""
        return self.get(path, include_body=False)

    def get_cache_time(self, path: str, modified: datetime.datetime, mime_type: str) -> int:
        """Override to set how long clients may cache the file at ``path``.

        Return a number of seconds for ``Cache-Control: max-age=<seconds>`` and an
        ``Expires`` that far ahead, or 0 (the default) for ``Cache-Control: public``
        only.  ``modified`` is the file's upload date, to the second, as the client
        decodes it (a naive UTC datetime unless the client is ``tz_aware``), and
        ``mime_type`` the ``Content-Type`` it is served with.
        """
        return 0

    def set_extra_headers(self, path: str, gridout: MotorGridOut) -> None:
        """Override to add headers to the response (with :meth:`set_header`); called
        after the standard headers are set, for every status but 404."""

    async def _write_and_flush(self, data: bytes) -> None:
        self.write(data)
        await self.flush()
