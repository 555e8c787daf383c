"""The tutorials' code runs, and does what the pages say it does.

``doc/tutorial-tornado.rst`` and ``doc/tutorial-asyncio.rst`` show code from
``doc/tutorial/`` with ``literalinclude``; the files run here as they are, against the test
server (``MONGODB_URI``, which the files read, names a fresh database on it):

* ``asyncio_basics.py`` runs as a script, twice (it must be re-runnable); its output must be
  the page's output blocks (``.. code-block:: text`` with ``:class: output-of-asyncio-basics``)
  put together, ``...`` matching anything as in doctest.
* ``tornado_app.py`` and ``aiohttp_app.py`` are started as the pages say, each in a process of
  its own with ``--port 0`` (a free loopback port, which the app prints). One test per app
  drives every route with ``http.client``, a ``Range`` request answered 206 among them; another
  replays the ``$ curl`` sessions the page shows (``.. code-block:: console`` with ``:class:
  session-of-tornado-app`` or ``session-of-aiohttp-app``) through :func:`curl`, which sends
  what curl would send and prints what curl would print, and compares.
* Every ``literalinclude`` of the two pages names a file of ``doc/`` and markers found in it
  (the Sphinx build fails on these too; this catches it in a plain pytest run).
"""

from __future__ import annotations

import dataclasses
import doctest
import http.client
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from pymongo import MongoClient

from test import server as test_server

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "doc"
TUTORIAL = DOC / "tutorial"
PAGES = {"tornado": DOC / "tutorial-tornado.rst", "asyncio": DOC / "tutorial-asyncio.rst"}
START_TIMEOUT = 30.0
REQUEST_TIMEOUT = 15.0


# -- reading the pages -------------------------------------------------------------------


@dataclasses.dataclass
class Directive:
    name: str  # "code-block", "literalinclude", ...
    argument: str
    options: dict[str, str]
    content: str
    line: int  # of the directive, 1-based
    content_line: int  # of the content's first line


def directives(page: Path) -> list[Directive]:
    """The top-level directives of a reST page, with their options and (dedented) content."""
    lines = page.read_text().splitlines()
    found = []
    i = 0
    while i < len(lines):
        match = re.match(r"^\.\. ([a-z-]+)::\s*(.*)$", lines[i])
        if not match:
            i += 1
            continue
        start = i
        i += 1
        options = {}
        while i < len(lines) and (option := re.match(r"^\s+:([a-z-]+):\s*(.*)$", lines[i])):
            options[option[1]] = option[2].strip()
            i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        first = i  # the content's first line
        body = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
            body.append(lines[i])
            i += 1
        while body and not body[-1].strip():
            body.pop()
        indents = [len(line) - len(line.lstrip()) for line in body if line.strip()]
        indent = min(indents, default=0)
        content = "\n".join(line[indent:] for line in body)
        found.append(Directive(match[1], match[2].strip(), options, content, start + 1, first + 1))
    return found


def blocks_of_class(page: Path, css_class: str) -> list[Directive]:
    return [
        d
        for d in directives(page)
        if d.name == "code-block" and css_class in d.options.get("class", "").split()
    ]


ELLIPSIS = doctest.OutputChecker()


def matches(want: str, got: str) -> bool:
    return ELLIPSIS.check_output(want + "\n", got + "\n", doctest.ELLIPSIS)


def difference(want: str, got: str) -> str:
    example = doctest.Example("", want + "\n")
    return ELLIPSIS.output_difference(example, got + "\n", doctest.ELLIPSIS)


# The reason phrase of 416, which http.HTTPStatus shortened in Python 3.13 (RFC 9110).
_RANGE_NOT_SATISFIABLE = re.compile(r"\b416 (Requested )?Range Not Satisfiable\b")


def normalize(text: str) -> str:
    text = _RANGE_NOT_SATISFIABLE.sub("416 Range Not Satisfiable", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


# -- the database and the apps ---------------------------------------------------------------


def with_database(uri: str, name: str) -> str:
    """``uri`` with ``name`` as its database (the path), its options kept as they are."""
    match = re.match(r"^(mongodb(?:\+srv)?://)([^/?]*)(?:/([^?]*))?(?:\?(.*))?$", uri)
    assert match is not None, f"not a MongoDB URI: {uri}"
    scheme, hosts, path, query = match[1], match[2], match[3] or "", match[4] or ""
    if "@" in hosts and not re.search(r"(^|&)authsource=", query, re.IGNORECASE):
        # Credentials are checked in the URI's database, else in "admin": keep that one.
        query += ("&" if query else "") + f"authSource={path or 'admin'}"
    return f"{scheme}{hosts}/{name}" + (f"?{query}" if query else "")


@pytest.fixture
def database_uri(server: test_server.Server) -> Iterator[str]:
    """A URI naming a fresh database of the test server, dropped after the test."""
    name = f"motor_tutorial_{uuid.uuid4().hex[:8]}"
    yield with_database(server.uri, name)
    with MongoClient(server.uri, serverSelectionTimeoutMS=10000) as client:  # type: MongoClient[dict[str, object]]
        client.drop_database(name)


def tutorial_env(uri: str) -> dict[str, str]:
    env = dict(os.environ)
    env["MONGODB_URI"] = uri
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONWARNINGS"] = "error"  # a deprecation in the tutorial's code fails the test
    return env


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

    @property
    def text(self) -> str:
        return self.body.decode()


class App:
    """One of the tutorial's apps, running in a process of its own until :meth:`stop`."""

    def __init__(self, script: Path, uri: str) -> None:
        self.script = script
        self.log: IO[bytes] = tempfile.TemporaryFile()  # its stderr
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--port", "0"],
            cwd=REPO,
            env=tutorial_env(uri),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        first_line = self._first_line()
        match = re.fullmatch(r"Serving on http://(127\.0\.0\.1):(\d+)/", first_line)
        if match is None:
            self.stop()
            pytest.fail(f"{script.name} printed {first_line!r}, not its address\n{self.output()}")
        self.host, self.port = match[1], int(match[2])

    def _first_line(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in data:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.stop()
                    pytest.fail(f"{self.script.name} did not start in time\n{self.output()}")
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.stop()
                    pytest.fail(f"{self.script.name} exited early\n{self.output()}")
                data += chunk
        return data.split(b"\n", 1)[0].decode()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return "its stderr:\n" + self.log.read().decode(errors="replace")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return Response(
                response.status, response.reason, response.getheaders(), response.read()
            )
        finally:
            connection.close()

    def stop(self) -> int | None:
        """Stop the app as Ctrl-C would; its exit status, or None if it had to be killed.

        SIGINT reaches it as KeyboardInterrupt unless this process ignores SIGINT (a
        background job of a non-interactive shell does), which the app would inherit: then
        it is terminated.
        """
        status = self.proc.poll()
        if status is None:
            if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                self.proc.terminate()
            else:
                self.proc.send_signal(signal.SIGINT)
            try:
                status = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return status


@pytest.fixture
def start_app(database_uri: str) -> Iterator[Callable[[str], App]]:
    """``start_app("tornado_app.py")`` starts that file of ``doc/tutorial/``; the app is
    stopped after the test, which fails if the app did not end quietly."""
    apps: list[App] = []

    def start(name: str) -> App:
        app = App(TUTORIAL / name, database_uri)
        apps.append(app)
        return app

    yield start
    for app in apps:
        status = app.stop()
        output = app.output()
        app.log.close()
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            # Ctrl-C ends the app quietly: exit status 0, the client closed, no traceback.
            assert status == 0, f"{app.script.name} exited with {status}\n{output}"
        # Anything on stderr beyond Tornado's log of 4xx answers (a traceback, a warning)
        # is a failure.
        problems = [
            line
            for line in output.splitlines()[1:]
            if line and not re.match(r"^4\d\d [A-Z]+ /\S* \(127\.0\.0\.1\) [\d.]+ms$", line)
        ]
        assert not problems, f"{app.script.name} wrote to stderr:\n" + "\n".join(problems)


# -- curl --------------------------------------------------------------------------------------


def split_flags(arg: str) -> list[str]:
    """``-si`` is ``-s -i``."""
    if re.fullmatch(r"-[siI]{2,}", arg):
        return [f"-{flag}" for flag in arg[1:]]
    return [arg]


def curl(app: App, command: str) -> str:
    """Run a ``curl`` command line of a page against ``app``: what curl would print.

    Understands the options the pages use: ``-s``, ``-i`` (print the status line and
    headers), ``-I`` (HEAD), ``-X METHOD``, ``-d``/``--data-binary DATA`` (POST unless
    ``-X`` says otherwise), ``-H "Name: value"`` and ``-r RANGE``. The URL's host and port
    (``localhost:8888`` on the page) are replaced with the app's.
    """
    argv = shlex.split(command)
    assert argv[0] == "curl", command
    method, data, include, url = None, None, False, None
    headers: dict[str, str] = {}
    args = iter([part for arg in argv[1:] for part in split_flags(arg)])
    for arg in args:
        if arg == "-s":
            continue
        elif arg == "-i":
            include = True
        elif arg == "-I":
            include, method = True, "HEAD"
        elif arg == "-X":
            method = next(args)
        elif arg in ("-d", "--data-binary"):
            data = next(args).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif arg == "-H":
            name, _, value = next(args).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-r":
            headers["Range"] = f"bytes={next(args)}"
        elif arg.startswith("-"):
            raise AssertionError(f"curl option {arg} is not emulated: {command}")
        else:
            url = arg
    assert url is not None, command
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    assert parts.hostname == "localhost", f"the pages' URLs are on localhost: {command}"
    path = parts.path or "/"
    if parts.query:
        path += f"?{parts.query}"
    method = method or ("POST" if data is not None else "GET")
    response = app.request(method, path, body=data, headers=headers)
    out = ""
    if include:
        out += f"HTTP/1.1 {response.status} {response.reason}\n"
        out += "".join(f"{name}: {value}\n" for name, value in response.headers)
        out += "\n"
    return out + response.text


@dataclasses.dataclass
class Step:
    command: str
    want: str
    line: int


def session(page: Path, name: str) -> list[Step]:
    """The ``$ curl`` commands of the page's sessions of ``name``, with their outputs."""
    blocks = blocks_of_class(page, f"session-of-{name}")
    assert blocks, f"{page.name} shows no session-of-{name} block"
    steps: list[Step] = []
    for block in blocks:
        for offset, line in enumerate(block.content.splitlines()):
            if line.startswith("$ "):
                steps.append(Step(line[2:], "", block.content_line + offset))
            else:
                assert steps, f"{page.name}:{block.line}: output before the first command"
                steps[-1].want += line + "\n"
    return steps


def replay(app: App, page: Path, name: str) -> None:
    steps = session(page, name)
    for step in steps:
        got = normalize(curl(app, step.command))
        want = normalize(step.want)
        assert matches(want, got), (
            f"{page.name}, line {step.line}: $ {step.command}\n{difference(want, got)}"
        )


# -- the pages' files and markers -------------------------------------------------------------


@pytest.mark.parametrize("page", sorted(PAGES))
def test_literalincludes_name_files_and_markers(page: str) -> None:
    includes = [d for d in directives(PAGES[page]) if d.name == "literalinclude"]
    assert includes
    for include in includes:
        path = (DOC / include.argument).resolve()
        assert path.is_file(), f"{PAGES[page].name}:{include.line}: no {include.argument}"
        text = path.read_text()
        for option in ("start-after", "end-before", "start-at", "end-at"):
            marker = include.options.get(option)
            if marker is not None:
                assert marker in text, (
                    f"{PAGES[page].name}:{include.line}: {marker!r} not in {include.argument}"
                )


# -- asyncio -----------------------------------------------------------------------------------


def test_asyncio_basics_prints_what_the_page_shows(database_uri: str) -> None:
    blocks = blocks_of_class(PAGES["asyncio"], "output-of-asyncio-basics")
    assert len(blocks) >= 10
    want = normalize("\n".join(block.content for block in blocks))
    for run in ("first run", "second run"):
        proc = subprocess.run(
            [sys.executable, str(TUTORIAL / "asyncio_basics.py")],
            cwd=REPO,
            env=tutorial_env(database_uri),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, f"{run}: exit status {proc.returncode}\n{proc.stderr}"
        assert proc.stderr == ""
        got = normalize(proc.stdout)
        if matches(want, got):
            continue
        # Point at the first block that differs (each "..." there stays within a line).
        lines = got.splitlines()
        for block in blocks:
            expected = normalize(block.content)
            part = "\n".join(lines[: len(expected.splitlines())])
            del lines[: len(expected.splitlines())]
            assert matches(expected, part), (
                f"{run}: the output block at tutorial-asyncio.rst:{block.content_line}\n"
                + difference(expected, part)
            )
        pytest.fail(f"{run}:\n{difference(want, got)}")


def test_aiohttp_app_routes(start_app: Callable[[str], App], database_uri: str) -> None:
    app = start_app("aiohttp_app.py")

    index = app.request("GET", "/")
    assert index.status == 200
    assert index.header("Content-Type") == "text/html; charset=utf-8"
    assert re.findall(r'href="([^"]+)">([^<]+)<', index.text) == [
        ("/pages/files", "Files"),
        ("/pages/hello", "Hello"),
    ]
    page = app.request("GET", "/pages/hello")
    assert page.status == 200
    assert page.text == "<h1>Hello</h1>\n<p>Served from MongoDB by Motor.</p>\n"
    missing = app.request("GET", "/pages/nope")
    assert (missing.status, missing.text) == (404, "No page named 'nope'\n")

    # Three and a half chunks of 255 KiB, uploaded in one request and streamed into GridFS.
    data = bytes(range(256)) * 3650
    put = app.request("PUT", "/fs/data.bin", body=data)
    assert put.status == 201
    assert put.header("Content-Type") == "application/json; charset=utf-8"
    assert put.body == b'{"filename": "data.bin", "length": 934400}'
    check_gridfs_file(app, "/fs/data.bin", data, "application/octet-stream")

    # The upload is a GridFS file of the app's database, in the default bucket.
    with MongoClient(database_uri, serverSelectionTimeoutMS=10000) as client:  # type: MongoClient[dict[str, object]]
        files = list(client.get_default_database().fs.files.find({}, {"_id": 0, "length": 1}))
    assert files == [{"length": len(data)}]


def test_aiohttp_session_matches_the_page(start_app: Callable[[str], App]) -> None:
    replay(start_app("aiohttp_app.py"), PAGES["asyncio"], "aiohttp-app")


# -- Tornado -----------------------------------------------------------------------------------


def check_gridfs_file(app: App, path: str, data: bytes, content_type: str) -> None:
    """GET, HEAD, Range (206 and 416), If-None-Match (304) and a missing file (404)."""
    whole = app.request("GET", path)
    assert whole.status == 200
    assert whole.body == data
    assert whole.header("Content-Type") == content_type
    assert whole.header("Content-Length") == str(len(data))
    assert whole.header("Accept-Ranges") == "bytes"
    etag = whole.header("ETag")
    assert etag is not None

    head = app.request("HEAD", path)
    assert (head.status, head.body) == (200, b"")
    assert head.header("Content-Length") == str(len(data))

    # Across the boundary of the first two chunks (255 KiB each).
    start, end = 261_000, 262_000
    part = app.request("GET", path, headers={"Range": f"bytes={start}-{end}"})
    assert part.status == 206
    assert part.body == data[start : end + 1]
    assert part.header("Content-Range") == f"bytes {start}-{end}/{len(data)}"
    assert part.header("Content-Length") == str(end - start + 1)

    tail = app.request("GET", path, headers={"Range": "bytes=-10"})
    assert (tail.status, tail.body) == (206, data[-10:])

    beyond = app.request("GET", path, headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status == 416
    assert beyond.header("Content-Range") == f"bytes */{len(data)}"

    cached = app.request("GET", path, headers={"If-None-Match": etag})
    assert (cached.status, cached.body) == (304, b"")

    assert app.request("GET", path + ".missing").status == 404


def test_tornado_app_routes(start_app: Callable[[str], App], database_uri: str) -> None:
    app = start_app("tornado_app.py")

    def call(method: str, path: str, body: str | None = None) -> tuple[int, str]:
        response = app.request(method, path, body=None if body is None else body.encode())
        return response.status, response.text

    created = app.request(
        "POST", "/notes", body=b'{"title": "Buy milk!", "text": "Two litres", "tags": ["home"]}'
    )
    assert created.status == 201
    assert created.header("Location") == "/notes/buy-milk"
    assert created.header("Content-Type") == "application/json; charset=UTF-8"
    milk = '{"slug": "buy-milk", "title": "Buy milk!", "text": "Two litres", "tags": ["home"]}'
    assert created.text == milk
    assert call("POST", "/notes", '{"title": "Buy  milk"}') == (
        409,
        '{"error": "A note with that title exists"}',
    )
    assert call("POST", "/notes", '{"title": "Fix the tap", "tags": ["home", "diy"]}')[0] == 201
    assert call("POST", "/notes", '{"title": "Paint", "tags": ["diy"]}')[0] == 201
    for bad, error in [
        ("{", "The body is not JSON"),
        ("[]", "The body is not a JSON object"),
        ('{"text": "no title"}', "A note needs a title"),
        ('{"title": "?!"}', "A note needs a title"),
        ('{"title": 7}', "The title and text are strings"),
        ('{"title": "x", "tags": "home"}', "The tags are a list of strings"),
    ]:
        assert call("POST", "/notes", bad) == (400, f'{{"error": "{error}"}}'), bad

    def slugs(path: str) -> list[str]:
        status, text = call("GET", path)
        assert status == 200, text
        return re.findall(r'"slug": "([^"]+)"', text)

    assert slugs("/notes") == ["paint", "fix-the-tap", "buy-milk"]  # newest first
    assert slugs("/notes?tag=home") == ["fix-the-tap", "buy-milk"]
    assert slugs("/notes?limit=2") == ["paint", "fix-the-tap"]
    assert slugs("/notes?limit=0") == ["paint"]  # at least one
    assert call("GET", "/notes?limit=many") == (400, '{"error": "limit is a number"}')

    assert call("GET", "/notes/buy-milk") == (200, milk)
    assert call("GET", "/notes/nothing") == (404, '{"error": "No such note"}')
    assert call("PATCH", "/notes/buy-milk", '{"text": "Three litres", "tags": []}') == (
        200,
        '{"slug": "buy-milk", "title": "Buy milk!", "text": "Three litres", "tags": []}',
    )
    assert call("PATCH", "/notes/buy-milk", '{"title": "New"}') == (
        400,
        '{"error": "Nothing to change"}',
    )
    assert call("PATCH", "/notes/nothing", '{"text": "x"}')[0] == 404

    assert call("GET", "/tags") == (200, '{"tags": {"diy": 2, "home": 1}}')
    assert call("GET", "/tags?top=1") == (200, '{"tags": {"diy": 2}}')

    export = app.request("GET", "/export")
    assert export.status == 200
    assert export.header("Content-Type") == "application/x-ndjson"
    assert re.findall(r'"slug": "([^"]+)"', export.text) == ["buy-milk", "fix-the-tap", "paint"]
    assert export.text.count("\n") == 3

    assert call("DELETE", "/notes/paint") == (204, "")
    assert call("DELETE", "/notes/paint")[0] == 404
    assert slugs("/notes") == ["fix-the-tap", "buy-milk"]

    # GridFS: PUT stores a file, GridFSHandler serves it. A second upload of the same name
    # is a new revision, and the one served.
    assert call("PUT", "/files/data.bin", "old") == (201, '{"filename": "data.bin", "length": 3}')
    data = bytes(range(256)) * 3650  # three and a half chunks of 255 KiB
    put = app.request("PUT", "/files/data.bin", body=data)
    assert (put.status, put.text) == (201, '{"filename": "data.bin", "length": 934400}')
    check_gridfs_file(app, "/files/data.bin", data, "application/octet-stream")
    assert call("PUT", "/files/hello.txt", "Hello")[0] == 201
    assert app.request("GET", "/files/hello.txt").header("Content-Type") == "text/plain"

    # The indexes the app created at start-up.
    with MongoClient(database_uri, serverSelectionTimeoutMS=10000) as client:  # type: MongoClient[dict[str, object]]
        indexes = client.get_default_database().notes.index_information()
    assert indexes["slug_1"]["key"] == [("slug", 1)]
    assert indexes["slug_1"]["unique"] is True
    assert indexes["tags_1"]["key"] == [("tags", 1)]


def test_tornado_session_matches_the_page(start_app: Callable[[str], App]) -> None:
    replay(start_app("tornado_app.py"), PAGES["tornado"], "tornado-app")


# -- the test's own helpers ----------------------------------------------------------------------


def test_with_database() -> None:
    assert with_database("mongodb://127.0.0.1:5", "db") == "mongodb://127.0.0.1:5/db"
    assert with_database("mongodb://h:1,h:2/old?replicaSet=rs", "db") == (
        "mongodb://h:1,h:2/db?replicaSet=rs"
    )
    assert with_database("mongodb://u:p@h/?tlsCAFile=/tmp/ca.pem", "db") == (
        "mongodb://u:p@h/db?tlsCAFile=/tmp/ca.pem&authSource=admin"
    )
    assert with_database("mongodb://u:p@h/users", "db") == "mongodb://u:p@h/db?authSource=users"
    assert with_database("mongodb://u:p@h/x?authSource=other", "db") == (
        "mongodb://u:p@h/db?authSource=other"
    )
