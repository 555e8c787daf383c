"""coverage.py measures an application that uses Motor as it measures one that does not.

coverage.py's C tracer keeps one call stack per thread unless configured for greenlets
(``concurrency = greenlet``), and attributes each line to the file of the frame on top of
it.  Motor's child greenlets interleave their frames with the loop's on that one stack:
before :func:`motor.green.hub._switch_on_own_stack`, a plain ``coverage run``
(or ``pytest --cov``) reported lines of the application as not run, after a call that
started a child or after ``client.close()``, where Motor 3.7.1's threads lost nothing.

Each test runs an application under ``coverage run --branch`` in a fresh interpreter,
under one framework and one coverage configuration, and checks the report line by line:
every line ran but those marked ``# not run`` (and the other framework's).  :data:`APP`
runs code in child greenlets too (a command listener, a ``document_class``, a function run
with :func:`motor.run_green`); :data:`MOVING_APP` runs its loop on another thread between
two runs on the main thread, which leaves the main thread's first children behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

APP = """
import asyncio
import sys

import tornado.ioloop
from pymongo import monitoring
from pymongo.errors import OperationFailure

import motor
from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient

URI, FRAMEWORK, DB = sys.argv[1:]


class Listener(monitoring.CommandListener):
    def __init__(self):
        self.names = []

    def started(self, event):
        self.names.append(event.command_name)  # in a child greenlet

    def succeeded(self, event):
        succeeded = True  # in a child greenlet

    def failed(self, event):
        failed = True  # in a child greenlet


def never_called():
    called = True  # not run


class Doc(dict):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.decoded = True  # in a child greenlet


def submit(coll, i):
    future = coll.insert_one({"_id": i})  # starts a child at once
    after_submit = i
    return future


def count_green(green, db):
    total = green[db].c.count_documents({})  # in a child greenlet
    counted = True
    return total


async def main():
    listener = Listener()
    if FRAMEWORK == "asyncio":
        client = AsyncIOMotorClient(URI, event_listeners=[listener], document_class=Doc)  # asyncio
    else:
        client = MotorClient(URI, event_listeners=[listener], document_class=Doc)  # tornado
    coll = client[DB].c
    futures = [submit(coll, i) for i in range(20)]
    after_submits = len(futures)
    await asyncio.gather(*futures)
    docs = await coll.find().to_list(None)
    assert len(docs) == 20 and all(doc.decoded for doc in docs)
    try:
        await client[DB].command("noSuchCommand")
    except OperationFailure:
        failed = True
    future = coll.find_one({})  # parks in a child, reading the reply
    future.cancel()  # the child is then resumed with an exception
    cancelled = future.cancelled()
    assert cancelled
    assert await coll.count_documents({}) == 20
    green = motor.GreenMongoClient(URI)
    assert await motor.run_green(count_green, green, DB) == 20
    await motor.run_green(green.drop_database, DB)
    green.close()
    client.close()
    after_close = True
    assert "insert" in listener.names
    return after_close


if FRAMEWORK == "asyncio":
    assert asyncio.run(main())  # asyncio
else:
    assert tornado.ioloop.IOLoop.current().run_sync(main)  # tornado
after_run = True
print("ok")
"""


# A loop that runs on the main thread, then on another, then on the main thread again:
# the children the main thread made first are left behind on the way and ended later.
MOVING_APP = """
import asyncio
import gc
import sys
import threading

import tornado.ioloop

from motor.motor_asyncio import AsyncIOMotorClient
from motor.motor_tornado import MotorClient

URI, FRAMEWORK, DB = sys.argv[1:]

if FRAMEWORK == "asyncio":
    loop = asyncio.new_event_loop()  # asyncio
    client = AsyncIOMotorClient(URI)  # asyncio

    def run(coroutine_function):  # asyncio
        return loop.run_until_complete(coroutine_function())  # asyncio

else:
    loop = tornado.ioloop.IOLoop(make_current=False)  # tornado
    client = MotorClient(URI)  # tornado

    def run(coroutine_function):  # tornado
        return loop.run_sync(coroutine_function)  # tornado


async def finds():
    found = await asyncio.gather(*[client[DB].c.find_one({}) for _ in range(5)])
    return len(found)


def back_on_the_main_thread():
    assert run(finds) == 5
    after_run = True
    gc.collect()
    after_collect = True
    return after_run and after_collect


assert run(finds) == 5
moved = threading.Thread(target=run, args=(finds,))
moved.start()
moved.join()
assert back_on_the_main_thread()
after_all = True
print("ok")
"""


def _missing_lines(source: str, framework: str) -> list[int]:
    """The lines of ``source`` that should not run under ``framework``."""
    other = "tornado" if framework == "asyncio" else "asyncio"
    return [
        number
        for number, line in enumerate(source.splitlines(), 1)
        if line.endswith("# not run") or line.endswith(f"# {other}")
    ]


def _run(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "coverage", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO), "COVERAGE_FILE": str(cwd / ".coverage")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("framework", ["asyncio", "tornado"])
@pytest.mark.parametrize("concurrency", ["thread", "thread,greenlet"])
@pytest.mark.parametrize("source", [APP, MOVING_APP], ids=["app", "moving_app"])
def test_every_line_of_the_application_is_measured(
    framework: str, concurrency: str, source: str, server: Any, tmp_path: Path
) -> None:
    """``thread`` is coverage.py's default; ``thread,greenlet`` the configuration for
    greenlets, which Motor leaves as it is."""
    app = tmp_path / "app.py"
    app.write_text(source)
    db = f"test_coverage_{uuid.uuid4().hex[:12]}"
    out = _run(
        "run",
        "--branch",
        f"--concurrency={concurrency}",
        str(app),
        server.uri,
        framework,
        db,
        cwd=tmp_path,
    )
    assert out.strip() == "ok"
    _run("json", "-o", "report.json", "--include", str(app), cwd=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    (measured,) = report["files"].values()
    # A line counted from another file's frame would hide a "# not run" line.
    assert measured["missing_lines"] == _missing_lines(source, framework), textwrap.dedent(
        f"""
        lines reported as not run: {measured["missing_lines"]}
        expected: {_missing_lines(source, framework)}"""
    )
