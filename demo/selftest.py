"""The demo's self-test: a scripted HTTP client that uses the media board as a person would.

It uploads a tune (WAV), a picture (PNG) and a badge (SVG) through the upload form,
reads the listing, downloads each file and compares its SHA-256, and asks for parts of
the tune with ``Range`` (``206``, and ``416`` past the end), again with ``If-None-Match``
and ``If-Modified-Since`` (``304``), with ``HEAD``, and for a file that does not exist
(``404``). Each check prints one line; the first that fails raises :class:`SelfTestFailed`.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any, NamedTuple

from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from demo import media

# A GridFS chunk is 255 KiB: this range spans the end of chunk 0 and the start of chunk 1.
CHUNK_SIZE = 255 * 1024
ACROSS_CHUNKS = (CHUNK_SIZE - 100, CHUNK_SIZE + 99)


class SelfTestFailed(Exception):
    """A check failed; the message says which and what came back."""


class Sample(NamedTuple):
    filename: str
    content_type: str
    data: bytes
    title: str
    note: str


def samples() -> list[Sample]:
    return [
        Sample(
            "tune.wav",
            "audio/wav",
            media.wav_tune(seconds=4.0),
            "A short tune",
            "4 s of 44.1 kHz mono, made with the wave module",
        ),
        Sample("picture.png", "image/png", media.png_picture(), "A picture", "240x160 PNG"),
        Sample("badge.svg", "image/svg+xml", media.svg_badge(), "A badge", "SVG"),
    ]


def multipart(fields: dict[str, str], file: Sample) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with ``fields`` and ``file`` (as the form's ``file``)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{file.filename}"\r\n'
        f"Content-Type: {file.content_type}\r\n\r\n".encode()
        + file.data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def expect(condition: object, what: str, response: HTTPResponse | None = None) -> None:
    if not condition:
        if response is not None:
            what += f" (got {response.code} {response.reason}, {len(response.body or b'')} bytes)"
        raise SelfTestFailed(what)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def self_test(base_url: str, say: Callable[[str], None]) -> int:
    """Run every check against the app at ``base_url``; return how many passed."""
    started = time.monotonic()
    http = AsyncHTTPClient(force_instance=True)
    checks = 0

    async def fetch(path: str, method: str = "GET", **kwargs: Any) -> HTTPResponse:
        nonlocal checks
        checks += 1
        return await http.fetch(
            base_url.rstrip("/") + path,
            method=method,
            raise_error=False,
            follow_redirects=False,
            request_timeout=30,
            **kwargs,
        )

    try:
        # The index page sets the cookie that the upload form's _xsrf field must match.
        page = await fetch("/")
        expect(page.code == 200 and b'id="upload"' in page.body, "GET / shows the form", page)
        cookie: SimpleCookie = SimpleCookie()
        for header in page.headers.get_list("Set-Cookie"):
            cookie.load(header)
        expect("_xsrf" in cookie, "GET / sets the _xsrf cookie", page)
        xsrf = cookie["_xsrf"].value
        say("GET / -> 200: the upload form (and its _xsrf cookie)")

        names: dict[str, str] = {}
        for sample in samples():
            fields = {"_xsrf": xsrf, "title": sample.title, "note": sample.note}
            body, content_type = multipart(fields, sample)
            response = await fetch(
                "/upload",
                "POST",
                body=body,
                headers={"Content-Type": content_type, "Cookie": f"_xsrf={xsrf}"},
            )
            location = response.headers.get("Location", "")
            expect(
                response.code == 303 and location.startswith("/files/"),
                f"POST /upload {sample.filename} redirects to its page",
                response,
            )
            names[sample.filename] = urllib.parse.unquote(location[len("/files/") :])
            say(
                f"POST /upload {sample.filename} ({len(sample.data):,} bytes, "
                f"{sample.content_type}) -> 303 {location}"
            )

        listing = await fetch("/api/files")
        expect(listing.code == 200, "GET /api/files", listing)
        found = json.loads(listing.body)
        titles = [file["metadata"]["title"] for file in found["files"]]
        expect(
            titles == [sample.title for sample in reversed(samples())],
            f"GET /api/files lists the uploads newest first, got {titles}",
        )
        counts = {count["_id"]: count["count"] for count in found["counts"]}
        expect(counts == {"audio": 1, "image": 2}, f"counts by kind, got {counts}")
        say(
            f"GET /api/files -> {len(titles)} files, newest first: {', '.join(titles)}; "
            f"by kind: audio {counts['audio']}, image {counts['image']}"
        )

        index = await fetch("/")
        text = index.body.decode()
        expect(all(sample.title in text for sample in samples()), "GET / lists every title", index)
        say(f"GET / -> 200: the page lists all {len(titles)} uploads")

        tune = names["tune.wav"]
        page = await fetch(f"/files/{tune}")
        expect(
            page.code == 200 and f'<audio src="/fs/{tune}"'.encode() in page.body,
            "the tune's page has an <audio> element",
            page,
        )
        say(f"GET /files/{tune} -> 200: a page with <audio src=/fs/{tune}>")

        for sample in samples():
            name = names[sample.filename]
            response = await fetch(f"/fs/{name}")
            served_type = response.headers.get("Content-Type", "")
            expect(
                response.code == 200 and sha256(response.body) == sha256(sample.data),
                f"GET /fs/{name} returns the uploaded bytes",
                response,
            )
            expect(
                served_type.split("/")[0] == sample.content_type.split("/")[0],
                f"GET /fs/{name} is served as {sample.content_type}, not {served_type!r}",
            )
            say(
                f"GET /fs/{name} -> 200, {len(response.body):,} bytes, {served_type}, "
                "SHA-256 matches the upload"
            )

        data = samples()[0].data
        length = len(data)
        first, last = ACROSS_CHUNKS
        response = await fetch(f"/fs/{tune}", headers={"Range": f"bytes={first}-{last}"})
        expect(
            response.code == 206
            and response.headers.get("Content-Range") == f"bytes {first}-{last}/{length}"
            and response.body == data[first : last + 1],
            f"Range bytes={first}-{last} returns those bytes",
            response,
        )
        say(
            f"GET /fs/{tune} Range: bytes={first}-{last} -> 206, Content-Range "
            f"{response.headers['Content-Range']}, {len(response.body)} bytes across "
            "two GridFS chunks, as uploaded"
        )

        response = await fetch(f"/fs/{tune}", headers={"Range": "bytes=-44"})
        expect(
            response.code == 206 and response.body == data[-44:],
            "Range bytes=-44 returns the last 44 bytes",
            response,
        )
        say(f"GET /fs/{tune} Range: bytes=-44 -> 206, the last 44 bytes")

        response = await fetch(f"/fs/{tune}", headers={"Range": f"bytes={length}-"})
        expect(response.code == 416, "a Range past the end is refused", response)
        say(
            f"GET /fs/{tune} Range: bytes={length}- -> 416, Content-Range "
            f"{response.headers.get('Content-Range')}"
        )

        head = await fetch(f"/fs/{tune}", "HEAD")
        expect(
            head.code == 200
            and head.headers.get("Content-Length") == str(length)
            and not head.body,
            "HEAD gives the length and no body",
            head,
        )
        etag = head.headers.get("Etag")
        modified = head.headers.get("Last-Modified")
        say(f"HEAD /fs/{tune} -> 200, Content-Length {length}, ETag {etag}, no body")

        expect(etag or modified, "the file has an ETag or a Last-Modified date", head)
        if etag:
            response = await fetch(f"/fs/{tune}", headers={"If-None-Match": etag})
            expect(response.code == 304 and not response.body, "If-None-Match -> 304", response)
            say(f"GET /fs/{tune} If-None-Match: {etag} -> 304 Not Modified")
        if modified:
            response = await fetch(f"/fs/{tune}", headers={"If-Modified-Since": modified})
            expect(response.code == 304, "If-Modified-Since -> 304", response)
            say(f"GET /fs/{tune} If-Modified-Since: {modified} -> 304 Not Modified")

        response = await fetch("/fs/no-such-file.wav")
        expect(response.code == 404, "a missing file is 404", response)
        say("GET /fs/no-such-file.wav -> 404")
    finally:
        http.close()
    say(f"passed: {checks} requests checked in {time.monotonic() - started:.1f} s")
    return checks
