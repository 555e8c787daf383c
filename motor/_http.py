"""HTTP for serving GridFS files, shared by :mod:`motor.web` and :mod:`motor.aiohttp`.

Theory of operation
-------------------
A handler serves one GridFS file per ``GET`` or ``HEAD`` in five steps.  Only steps 1,
4 and 5 touch the web framework; the HTTP decisions are made here, once, for both:

1. find the file: ``grid_out = await get_gridfs_file(bucket, name, request)``
   (:class:`gridfs.errors.NoFile` means 404);
2. ``file = await describe(grid_out, name)``: what HTTP says about the file (length,
   ``Last-Modified``, ``ETag``, ``Content-Type``), from the file document alone;
3. ``reply = respond(method, request_headers, file, cache_time)``: the status, the
   response headers and the byte range to send, after the request's conditional
   headers (RFC 9110 §13) and its ``Range`` (§14);
4. set ``reply.status`` and ``reply.leading_headers``, then the application's extra
   headers, then ``reply.content_length``;
5. if ``reply.body`` is not None, ``await send(grid_out, reply.body, write)``: the
   bytes ``[start, end)``, piece by piece from
   :meth:`~motor.motor_gridfs.AgnosticGridOut.read_chunks`, each written and flushed
   (Tornado) or drained (aiohttp) before the next is read.

Invariants:

* The file's data is read in step 5 only, and only the chunks covering the range sent:
  the ``ETag`` is a hash of the file's ``_id``, ``length`` and ``uploadDate``, so an
  upload of new content (a new revision: a new ``_id``) gets a new one.
* At most one batch of chunks (:data:`motor.motor_gridfs.CHUNK_BATCH_BYTES`) and the
  piece being written are held at a time: ``write`` must not return before the piece
  is handed to the socket.
* :func:`respond` is a pure function of its arguments; it never raises for anything a
  client sends: what it cannot parse it ignores, as RFC 9110 allows (a malformed or
  multi-range ``Range`` gets the whole file, an invalid date matches nothing).
* Conditions are evaluated in RFC 9110's order (§13.2.2): ``If-None-Match``, else
  ``If-Modified-Since`` (304); then ``If-Range`` and ``Range`` (206, 416), for ``GET``
  only.  ``If-Match`` and ``If-Unmodified-Since`` are not evaluated.
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import mimetypes
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo.errors import InvalidOperation

__all__ = ["FileInfo", "RangeNotSatisfiable", "Reply", "describe", "parse_range", "respond", "send"]

_UTC = datetime.UTC

# An entity tag: optional weakness, then the quoted opaque tag.
_TAG = r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")'
_ENTITY_TAG = re.compile(_TAG)
# A whole entity-tag list ("x", W/"y"): anything else is malformed.
_ENTITY_TAG_LIST = re.compile(rf"\s*{_TAG}\s*(?:,\s*{_TAG}\s*)*")
# One range-spec of a "bytes" Range: int-range ("0-99", "100-") or suffix-range ("-500").
_RANGE_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
# A header value we are willing to send as given: visible ASCII and spaces.
_SAFE_VALUE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class FileInfo:
    """What HTTP says about a GridFS file (see :func:`describe`)."""

    #: The file's length in bytes.
    length: int
    #: Its upload date, in UTC, to the second (an HTTP date's resolution).
    modified: datetime.datetime
    #: A strong entity tag, quoted: ``"<hex digest>"``.
    etag: str
    #: The media type to send as ``Content-Type``.
    content_type: str
    #: The upload date as the client decodes it (naive UTC unless it is ``tz_aware``),
    #: for the application's ``get_cache_time``, as Motor 3.7.1 passed it.
    upload_date: datetime.datetime


@dataclass(frozen=True)
class Reply:
    """The response to send (see :func:`respond`)."""

    #: 200, 206, 304 or 416.
    status: int
    #: Header names and values, in order.
    headers: list[tuple[str, str]]
    #: The file's bytes ``(start, end)`` to send as the body, or None for no body.
    body: tuple[int, int] | None

    @property
    def leading_headers(self) -> list[tuple[str, str]]:
        """The headers to set before the application's extra ones: all but
        ``Content-Length``, which goes after them (:attr:`content_length`), as Motor
        3.7.1 set it, so that the body is always as long as it says."""
        return [(name, value) for name, value in self.headers if name != "Content-Length"]

    @property
    def content_length(self) -> str | None:
        """The ``Content-Length`` to set last, if the reply has one."""
        for name, value in self.headers:
            if name == "Content-Length":
                return value
        return None


class RangeNotSatisfiable(ValueError):
    """A ``Range`` that no byte of the file falls in: the reply is 416."""


async def describe(grid_out: Any, path: str) -> FileInfo:
    """What HTTP says about ``grid_out``, a Motor ``GridOut`` served at ``path``.

    Opens the file first if it is not open (one query for the file document); reads
    none of its chunks.  The ``Content-Type`` is the file document's ``contentType``,
    else its ``metadata.contentType``, else guessed from ``path`` or the file's name,
    else ``application/octet-stream``.
    """
    try:
        length = int(grid_out.length)
    except InvalidOperation:  # made directly, not by a bucket or cursor: not opened yet
        await grid_out.open()
        length = int(grid_out.length)
    upload_date = grid_out.upload_date
    return FileInfo(
        length=length,
        modified=_utc(upload_date).replace(microsecond=0),
        etag=_entity_tag(grid_out._id, length, upload_date),
        content_type=_content_type(grid_out, path),
        upload_date=upload_date,
    )


def respond(
    method: str,
    request_headers: Mapping[str, str],
    file: FileInfo,
    cache_time: float = 0,
    now: datetime.datetime | None = None,
) -> Reply:
    """The response to a ``GET`` or ``HEAD`` (``method``) of ``file``.

    ``request_headers`` is a case-insensitive mapping of the request's headers.
    ``cache_time`` is the application's ``get_cache_time``: more than 0 sends
    ``Cache-Control: max-age=<cache_time>`` and an ``Expires`` that far after ``now``
    (default: the current time); 0 sends ``Cache-Control: public``, as Motor 3.7.1 does.
    """
    caching = _caching_headers(cache_time, now)
    if _not_modified(request_headers, file):
        # RFC 9110 §15.4.5: what a cache needs to update the stored response.
        return Reply(304, [("ETag", file.etag), *caching], None)
    common = [
        ("Content-Type", file.content_type),
        ("Accept-Ranges", "bytes"),
        ("Last-Modified", _http_date(file.modified)),
        ("ETag", file.etag),
        *caching,
    ]
    is_get = method == "GET"
    full = Reply(
        200, [*common, ("Content-Length", str(file.length))], (0, file.length) if is_get else None
    )
    range_value = request_headers.get("Range")
    if_range = request_headers.get("If-Range")
    if not is_get or range_value is None:  # RFC 9110 defines Range for GET only
        return full
    if if_range is not None and not _if_range_matches(if_range, file):
        return full
    try:
        selected = parse_range(range_value, file.length)
    except RangeNotSatisfiable:
        return Reply(
            416,
            [*common, ("Content-Range", f"bytes */{file.length}"), ("Content-Length", "0")],
            None,
        )
    if selected is None:
        return full
    start, end = selected
    return Reply(
        206,
        [
            *common,
            ("Content-Range", f"bytes {start}-{end - 1}/{file.length}"),
            ("Content-Length", str(end - start)),
        ],
        selected,
    )


def parse_range(value: str, length: int) -> tuple[int, int] | None:
    """The bytes ``(start, end)`` that the ``Range`` header ``value`` selects from a
    representation of ``length`` bytes (RFC 9110 §14.1.2), or None to ignore it.

    Handles one range: ``bytes=0-99``, ``bytes=100-`` or the suffix ``bytes=-500``;
    a last position past the end means the end.  Ignores (None) other units,
    malformed values and several ranges, which RFC 9110 allows.  Raises
    :class:`RangeNotSatisfiable` when the range starts at or past the end, or is a
    zero-length suffix (every suffix of an empty file).
    """
    unit, equals, range_set = value.partition("=")
    if not equals or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in range_set.split(",") if spec.strip()]
    if len(specs) != 1:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # invalid: ignore
        if start >= length:
            raise RangeNotSatisfiable(value)
        return start, length if not last else min(int(last) + 1, length)
    if not last:
        return None  # "bytes=-"
    suffix = int(last)
    if suffix == 0 or length == 0:
        raise RangeNotSatisfiable(value)
    return max(0, length - suffix), length


async def send(
    grid_out: Any, body: tuple[int, int], write: Callable[[bytes], Awaitable[None]]
) -> None:
    """Send the bytes ``body = (start, end)`` of ``grid_out``: ``await write(piece)``
    for each piece :meth:`~motor.motor_gridfs.AgnosticGridOut.read_chunks` reads.

    ``write`` must return once the piece is handed to the connection (Tornado's
    ``write`` and ``flush``; aiohttp's ``write``, which drains).  Whatever ends the
    loop (the end of the range, or ``write`` raising because the client went away),
    the chunk cursor is closed before this returns.
    """
    pieces = grid_out.read_chunks(*body)
    try:
        async for piece in pieces:
            await write(piece)
    finally:
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()


def _not_modified(request_headers: Mapping[str, str], file: FileInfo) -> bool:
    """Whether the client's copy is current (RFC 9110 §13.2.2, steps 3 and 4)."""
    if_none_match = request_headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() == "*":
        return True  # any current representation
    if if_none_match is not None and _ENTITY_TAG_LIST.fullmatch(if_none_match):
        # Weak comparison.  A malformed list is ignored, as if absent.
        return any(tag == file.etag for _, tag in _ENTITY_TAG.findall(if_none_match))
    if_modified_since = _parse_http_date(request_headers.get("If-Modified-Since"))
    return if_modified_since is not None and file.modified <= if_modified_since


def _if_range_matches(value: str, file: FileInfo) -> bool:
    """Whether ``If-Range`` names the current file (RFC 9110 §13.1.5): by strong
    comparison of entity tags, or an exact match of the date."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == file.etag
    date = _parse_http_date(value)
    return date is not None and date == file.modified


def _caching_headers(cache_time: float, now: datetime.datetime | None) -> list[tuple[str, str]]:
    if cache_time <= 0:
        return [("Cache-Control", "public")]
    now = datetime.datetime.now(_UTC) if now is None else _utc(now)
    expires = now + datetime.timedelta(seconds=cache_time)
    return [("Expires", _http_date(expires)), ("Cache-Control", f"max-age={int(cache_time)}")]


def _entity_tag(file_id: Any, length: int, upload_date: Any) -> str:
    """A strong validator from what identifies a file's content: Motor 3.7.1's (a
    SHA-256 of the three values' ``str()``), so that a cache holding a tag from a Motor
    3.7.1 application revalidates with this one."""
    digest = hashlib.sha256(str(file_id).encode("utf8"))
    digest.update(str(length).encode("utf8"))
    digest.update(str(upload_date).encode("utf8"))
    return '"' + digest.hexdigest() + '"'


def _content_type(grid_out: Any, path: str) -> str:
    declared = getattr(grid_out, "contentType", None)  # a field of the file document
    if not declared:
        metadata = grid_out.metadata
        if isinstance(metadata, Mapping):
            declared = metadata.get("contentType")
    if isinstance(declared, str) and _SAFE_VALUE.fullmatch(declared):
        return declared
    for name in (path, grid_out.filename):
        if isinstance(name, str):
            guessed = _guess_type(name)
            if guessed is not None:
                return guessed
    return "application/octet-stream"


def _guess_type(name: str) -> str | None:
    media_type, encoding = mimetypes.guess_type(name, strict=False)
    if encoding == "gzip":  # "a.tar.gz" is sent as it is stored: gzipped
        return "application/gzip"
    if encoding is not None:
        return "application/octet-stream"
    return media_type


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC; a naive datetime (PyMongo's default) is UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_UTC)
    return moment.astimezone(_UTC)


def _http_date(moment: datetime.datetime) -> str:
    return email.utils.format_datetime(_utc(moment), usegmt=True)


def _parse_http_date(value: str | None) -> datetime.datetime | None:
    """An HTTP date (any of RFC 9110's three formats) in UTC, or None if invalid."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _utc(parsed)
