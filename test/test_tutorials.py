"""The code of Motor 3.7.1's published tutorials runs unchanged against this driver.

``doc/tutorial-asyncio.rst`` and ``doc/tutorial-tornado.rst`` are run as ``sphinx.ext.doctest``
runs them, group by group, and ``doc/examples/aiohttp_example.py`` (included by the asyncio
tutorial) serves its pages to an aiohttp client. All three are read from the Motor 3.7.1 sdist,
downloaded from PyPI and checked against a pinned sha256; each runs in a fresh Python process
against a server on 127.0.0.1:27017, where the tutorials' ``MotorClient()`` and
``pymongo.MongoClient()`` connect. How: :mod:`test.tutorial_doctest`.

``MOTOR_TUTORIAL_ORACLE=1`` runs the same tests against Motor 3.7.1 itself (its ``motor``
package from the sdist, which runs PyMongo's synchronous API in threads): a check of the
harness, since that run must pass.
"""

from __future__ import annotations

import contextlib
import doctest
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from test import server as test_server
from test import tutorial_doctest as td

ORACLE = os.environ.get("MOTOR_TUTORIAL_ORACLE", "") not in ("", "0")
CHILD_TIMEOUT = 40.0


def _cache() -> Path:
    return test_server.cache_dir() / "motor-sdist"


@pytest.fixture(scope="module")
def sdist() -> Path:
    try:
        return td.motor_sdist(_cache())
    except td.FetchError as exc:
        pytest.fail(
            f"could not get the Motor {td.MOTOR_VERSION} sdist from PyPI, whose tutorials "
            f"these tests run:\n{exc}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def motor_path(sdist: Path) -> Path | None:
    """Where the child imports ``motor`` from: this repository, or Motor 3.7.1 (oracle)."""
    return td.extract_package(sdist, _cache()) if ORACLE else None


@pytest.fixture(scope="module")
def tutorial_server() -> Iterator[test_server.Server]:
    """A server on 127.0.0.1:27017, launched for this module unless one runs there already."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(td.default_port_server())
        except (td.PortTaken, TimeoutError, test_server.ServerUnavailable) as exc:
            problem = str(exc)
        else:
            if server.kind == "uri":  # not ours: it was running on 27017 already
                print(f"tutorial server: {server.flavor} {server.version} at {server.uri}")
            else:
                print(f"tutorial server: {server.describe()}")
            yield server
            return
    pytest.fail(f"no test server on 127.0.0.1:27017 for the tutorials:\n{problem}", pytrace=False)


def _sync_client() -> MongoClient[dict[str, Any]]:
    return MongoClient(td.TUTORIAL_HOST, td.TUTORIAL_PORT, serverSelectionTimeoutMS=10000)


@pytest.fixture
def tutorial_collections(tutorial_server: test_server.Server) -> Iterator[None]:
    """Start from what a fresh server has, and drop what the tutorials leave behind.

    Only the two collections the tutorials write to are touched, also on a server that was
    already running on 27017.
    """

    def drop() -> None:
        with _sync_client() as client:
            client.test_database.drop_collection("test_collection")
            client.test.drop_collection("pages")

    drop()
    yield
    drop()


def _groups(sdist: Path, name: str, path: Path) -> list[td.Group]:
    text = td.read_member(sdist, f"doc/{name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    global_setup = td.Block(
        "testsetup",
        ["*"],
        td.global_setup_imports(td.read_member(sdist, "doc/conf.py")),
        line=1,
        hidden=True,
        origin="doc/conf.py doctest_global_setup, its imports",
    )
    return td.build_groups(td.parse_rst(text, str(path)), global_setup)


def _n_records(groups: list[td.Group]) -> int:
    """How many example records a complete run of ``groups`` writes."""
    parser = doctest.DocTestParser()
    n = 0
    for group in groups:
        n += len(group.setup) + len(group.cleanup)
        n += sum(len(parser.get_examples(block.code)) for block in group.tests)
    return n


def _run_tutorial(name: str, sdist: Path, tmp_path: Path, motor_path: Path | None) -> None:
    path = tmp_path / td.SDIST_ROOT / "doc" / name
    groups = _groups(sdist, name, path)
    outcome = td.run_child(
        "doctest", path, tmp_path, groups, timeout=CHILD_TIMEOUT, motor_path=motor_path
    )
    summary = outcome.summary()
    print(summary)
    assert outcome.ok, f"{name} does not run unchanged:\n{summary}"
    # Every example ran: nothing was skipped or lost on the way.
    assert len(outcome.examples) == _n_records(groups), summary


# --------------------------------------------------------------------------- extraction


def test_tutorial_doctests_extracted(sdist: Path, tmp_path: Path) -> None:
    """The groups, in document order, with ``:hide:`` blocks; plain ``>>>`` text left out."""
    asyncio_groups = _groups(sdist, "tutorial-asyncio.rst", tmp_path / "a.rst")
    tornado_groups = _groups(sdist, "tutorial-tornado.rst", tmp_path / "t.rst")
    shape = {
        "asyncio": [(g.name, len(g.setup), len(g.tests), len(g.cleanup)) for g in asyncio_groups],
        "tornado": [(g.name, len(g.setup), len(g.tests), len(g.cleanup)) for g in tornado_groups],
    }
    assert shape == {
        "asyncio": [
            ("before-inserting-2000-docs", 2, 8, 1),
            ("after-inserting-2000-docs", 2, 10, 1),
        ],
        "tornado": [
            ("before-inserting-2000-docs", 2, 10, 1),
            ("after-inserting-2000-docs", 2, 10, 1),
            ("default", 1, 1, 1),
        ],
    }
    for groups in (asyncio_groups, tornado_groups):
        everything = "".join(b.code for g in groups for b in g.setup + g.tests + g.cleanup)
        # The global setup: conf.py's imports, not its server-version checks.
        assert groups[0].setup[0].code.startswith("import pprint\n")
        assert "from motor import MotorClient" in groups[0].setup[0].code
        assert "server_info" not in groups[0].setup[0].code
        # Hidden doctests are run ...
        hidden = [b for b in groups[0].tests if b.hidden]
        assert hidden and "DeleteResult({'n': 1, 'ok': 1.0}" in hidden[0].code
        # ... and the doctest after "Run them using ... :class:`...Database`::" is a doctest.
        assert "use_distinct_command" in everything
        # Examples that are not doctest directives are not run.
        assert "replicaSet=my-replicaset-name" not in everything
        assert "update_many" not in everything
    tornado_tests = "".join(b.code for g in tornado_groups for b in g.tests)
    assert "db.test_collection.insert_one({'i': i})" not in tornado_tests  # "NOT a doctest"
    assert 'await db.test_collection.insert_one({"i": i})' in tornado_tests
    assert tornado_groups[2].tests[0].code == ">>> import motor.motor_tornado\n"


_SELF_TEST_RST = """\
.. testsetup:: main

  import pprint
  state = []

.. testsetup:: broken

  raise RuntimeError("this setup fails")

.. testcleanup:: *

  state.append("cleanup")

Plain text with a literal block::

  >>> 1 / 0

  >>> 1 / 0

A doctest block that is not in a directive:

  >>> 1 / 0

.. doctest:: main

  >>> pprint.pprint({"b": 2, "a": "x" * 30})
  {'a': '...', 'b': 2}
  >>> state
  []

.. doctest:: main
  :hide:

  >>> state.append("hidden ran")

A paragraph that ends like the tutorials' Commands section::

.. doctest:: main

  >>> state
  ['hidden ran']
  >>> raise ValueError("some detail")
  Traceback (most recent call last):
  ValueError: other detail
  >>> True
  1
  >>> print("actual")
  expected
  >>> import warnings; warnings.warn("a warning")

.. doctest:: broken

  >>> print("never")
  never
"""


def test_runner_follows_sphinx_doctest(tmp_path: Path) -> None:
    """The child runs groups as sphinx.ext.doctest does and reports doctest's own output."""
    path = tmp_path / "selftest.rst"
    path.write_text(_SELF_TEST_RST)
    groups = td.build_groups(td.parse_rst(_SELF_TEST_RST, str(path)), None)
    assert [g.name for g in groups] == ["main", "broken"]
    outcome = td.run_child("doctest", path, tmp_path, groups, timeout=CHILD_TIMEOUT)
    summary = outcome.summary()
    got = [(e["group"], e["kind"], e["line"], e["status"]) for e in outcome.examples]
    assert got == [
        ("main", "setup", 3, "passed"),
        ("main", "doctest", 26, "passed"),  # ELLIPSIS
        ("main", "doctest", 28, "passed"),
        ("main", "doctest", 34, "passed"),  # :hide:
        ("main", "doctest", 40, "passed"),
        ("main", "doctest", 42, "passed"),  # IGNORE_EXCEPTION_DETAIL
        ("main", "doctest", 45, "failed"),  # DONT_ACCEPT_TRUE_FOR_1
        ("main", "doctest", 47, "failed"),
        ("main", "doctest", 49, "error"),  # warnings are errors
        ("main", "cleanup", 12, "passed"),
        ("broken", "setup", 8, "error"),  # so the group's test and cleanup do not run
        ("broken", "doctest", 53, "not run"),
    ], summary
    reports = {e["line"]: e["report"] for e in outcome.examples}
    assert f'File "{path}", line 47, in main' in reports[47]
    assert "Expected:\n    expected\nGot:\n    actual\n" in reports[47]
    assert "UserWarning: a warning" in reports[49]
    assert "RuntimeError: this setup fails" in reports[8]
    assert outcome.returncode == 0 and outcome.done is not None and not outcome.problems
    assert not outcome.ok


# --------------------------------------------------------------------------- the tutorials


def test_asyncio_tutorial(
    sdist: Path, tmp_path: Path, motor_path: Path | None, tutorial_collections: None
) -> None:
    _run_tutorial("tutorial-asyncio.rst", sdist, tmp_path, motor_path)


def test_tornado_tutorial(
    sdist: Path, tmp_path: Path, motor_path: Path | None, tutorial_collections: None
) -> None:
    _run_tutorial("tutorial-tornado.rst", sdist, tmp_path, motor_path)


def test_aiohttp_example(
    sdist: Path, tmp_path: Path, motor_path: Path | None, tutorial_collections: None
) -> None:
    """setup_db() and page_handler() of the example serve two pages and a 404."""
    path = tmp_path / td.SDIST_ROOT / "doc" / "examples" / "aiohttp_example.py"
    path.parent.mkdir(parents=True)
    path.write_text(td.read_member(sdist, "doc/examples/aiohttp_example.py"))
    outcome = td.run_child("aiohttp", path, tmp_path, timeout=CHILD_TIMEOUT, motor_path=motor_path)
    summary = outcome.summary()
    print(summary)
    assert outcome.ok, f"aiohttp_example.py does not run unchanged:\n{summary}"
    assert len(outcome.examples) == 4, summary
    # The allowed warnings come from the example's own code: the str key of app["db"] in
    # init_connection(), and page_handler() returning (not raising) HTTPNotFound for the 404.
    warned = {(e["category"], e["phase"]) for e in outcome.notes if e["event"] == "warning"}
    assert warned <= {
        ("aiohttp.web_exceptions.NotAppKeyWarning", "init_connection()"),
        ("DeprecationWarning", "GET /pages/page-three"),
    }, summary
    # setup_db() wrote to the server on 27017.
    with _sync_client() as client:
        pages = list(client.test.pages.find().sort("_id"))
    assert pages == [
        {"_id": "page-one", "body": "<html><body>Hello!</body></html>"},
        {"_id": "page-two", "body": "<html><body>Goodbye.</body></html>"},
    ]
