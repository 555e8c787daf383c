"""Run the test suites of ODMs and other libraries on Motor 3.x on this Motor and on 3.7.1; diff.

A compatibility oracle for the libraries most applications on Motor 3.x use:
``python tools/odm_suites.py [--uri URI] [--suite NAME ...]``, ``NAME`` one of ``beanie``,
``umongo``, ``odmantic``, ``aiogram`` and ``fastapi_pagination``.

==================  =======  =============================================================
Beanie              1.30.0   its whole test suite (``tests``)
umongo              4.0.0    its tests of the Motor framework
                             (``tests/frameworks/test_motor_asyncio.py``)
ODMantic            1.0.2    its whole test suite (``tests``); the last sdist with tests
                             (1.0.3 and 1.1.0 ship the package only)
aiogram             3.31.0   its tests of FSM storages (``tests/test_fsm``): those of its
                             ``MongoStorage`` (on Motor), of its ``PyMongoStorage`` and of
                             the storages that need no server
fastapi-pagination  0.15.16  its tests of the Motor and ODMantic extensions
                             (``tests/ext/test_motor.py``, ``test_motor_aggregate.py``,
                             ``test_odmantic.py``, with ODMantic 1.1.0); 0.16 removed the
                             Motor extension
==================  =======  =============================================================

1. Each project's sdist (downloaded from PyPI and checked against a pinned sha256, as Motor
   3.7.1's is for ``test/test_tutorials.py``) holds its tests.  Nothing of them is copied
   into this repository.
2. A virtualenv (``<cache>/venv-odm-suites``, made on first use) has the projects (without
   their Motor requirement), their dependencies and test dependencies, and this project's
   PyMongo, Tornado and greenlet versions; Motor 3.7.1 is installed beside it in a
   directory of its own.  ODMantic's tests need an older pytest-asyncio (they override its
   ``event_loop`` fixture) and get one of their own, ``<cache>/venv-odmantic``; so do
   aiogram's (``<cache>/venv-aiogram``: pinned pytest, pytest-aiohttp) and
   fastapi-pagination's (``<cache>/venv-fastapi_pagination``: a newer FastAPI and
   ODMantic 1.1.0 than ODMantic's tests run with), which would otherwise bring their pytest
   plugins into the other suites' runs.  Each suite runs twice against the same server,
   once with Motor 3.7.1 and once with this checkout first on ``PYTHONPATH``; each run
   checks first which ``motor`` it imports.
3. Every test that passes with Motor 3.7.1 and not with this Motor is listed, and fails
   the run (exit status 1) unless :data:`EXPECTED` explains it.

A pytest plugin, the environment or pytest options per suite, the same for both runs,
point the tests at the server (umongo's connect to ``localhost:27017``; ODMantic's read
``TEST_MONGO_URI``, and ``TEST_MONGO_MODE=replicaSet`` lets its tests of sessions run,
those of transactions failing for both drivers on a standalone server; aiogram's take
``--mongo URI``, fastapi-pagination's ``--mongodb-dsn URI``).  FerretDB has no text
indexes and no views, and it drops the connection on some of Beanie's index
specifications; against it Beanie's models are set up without their indexes and views, and
the tests that need them fail for both drivers.  FerretDB 1.24 lacks ``findAndModify``'s
``fields`` and ``$group``'s ``$first``: the tests of aiogram's storages that use them, and
fastapi-pagination's of ``apaginate_aggregate``, fail for both drivers.
Without ``--uri`` (or ``MOTOR_TEST_URI``) a server is started with ``test/server.py`` and
stopped at the end.  About 7 minutes against FerretDB, the first time more (the virtualenvs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from motor371_suite import diff_outcomes, outcomes, server_uri  # noqa: E402

from test import server as test_server  # noqa: E402
from test import tutorial_doctest  # noqa: E402


@dataclass(frozen=True)
class Suite:
    """A project's test suite: where to get it, what it needs, how to point it at a server."""

    project: str
    version: str
    #: The sha256 of the project's sdist as PyPI serves it.
    sha256: str
    #: Its requirements other than Motor, and those of its tests.
    requirements: tuple[str, ...]
    #: Test paths inside the sdist.
    tests: tuple[str, ...]
    #: Source of the pytest plugin loaded for both runs.
    plugin: str
    #: Tests that pass with Motor 3.7.1 and not with this Motor, on purpose: id -> why.
    expected: dict[str, str]
    #: The virtualenv (in the cache) it runs in: suites whose requirements conflict get
    #: one each.
    venv: str = "venv-odm-suites"
    #: What of the sdist it needs besides ``pyproject.toml``: path prefixes.
    sources: tuple[str, ...] = ("tests/",)
    #: Further pytest options; ``{uri}`` in them is the server's URI.
    options: tuple[str, ...] = ()
    #: Further projects its tests use, pinned (``name==version``), installed like it without
    #: their requirements (which include Motor): those are in :attr:`requirements`.
    companions: tuple[str, ...] = ()

    def environment(self, uri: str, ferretdb: bool) -> dict[str, str]:
        """The environment variables the tests and the plugin read."""
        parts = urlsplit(uri)
        return {
            # Beanie's settings: the URI with its database.
            "MONGODB_DSN": urlunsplit((parts.scheme, parts.netloc, "/beanie_db", parts.query, "")),
            "MONGODB_DB_NAME": "beanie_db",
            # ODMantic's; its tests of sessions run only on a replica set (or a sharded
            # cluster): those of transactions fail for both drivers on a standalone server.
            "TEST_MONGO_URI": uri,
            "TEST_MONGO_MODE": "replicaSet",
            "ODM_SUITE_URI": uri,
            "ODM_SUITE_FERRETDB": "1" if ferretdb else "",
        }


BEANIE = Suite(
    project="beanie",
    version="1.30.0",
    sha256="33ead17ff2742144c510b4b24e188f6b316dd1b614d86b57a3cfe20bc7b768c9",
    requirements=(
        "pydantic>=1.10.18,<3.0",
        "click>=7",
        "lazy-model==0.2.0",
        "typing-extensions>=4.7",
        "pytest>=8.3.3",
        "pytest-asyncio>=0.24.0",
        "asgi-lifespan>=1.0.1",
        "httpx>=0.23.0",
        "fastapi>=0.100",
        "pydantic-settings>=2",
        "pydantic-extra-types>=2",
        "pydantic[email]",
        "dnspython>=2.1.0",
        "tomli>=2.2.1,<3.0.0; python_version < '3.11'",
    ),
    tests=("tests",),
    # Beanie's tests read MONGODB_DSN.  On FerretDB 1.24 its models get no indexes (no text
    # indexes; some specifications make FerretDB drop the connection) and its views no
    # server view.
    plugin="""\
import os

if os.environ.get("ODM_SUITE_FERRETDB"):
    import beanie.odm.utils.init as init
    from pymongo.errors import OperationFailure

    _init_view = init.Initializer.init_view

    async def init_indexes(self, cls, allow_index_dropping=False):
        return None

    async def init_view(self, cls):
        try:
            await _init_view(self, cls)
        except OperationFailure as exc:
            if "viewOn" not in str(exc):
                raise

    init.Initializer.init_indexes = init_indexes
    init.Initializer.init_view = init_view
""",
    expected={},
)

UMONGO = Suite(
    project="umongo",
    version="4.0.0",
    sha256="6c9e9d0795924397658f5b013cb0bac96b8e2f562358e40ba10de1143bbe79be",
    requirements=("marshmallow>=4.0.1,<5.0", "pytest"),
    tests=("tests/frameworks/test_motor_asyncio.py",),
    # umongo's tests make AsyncIOMotorClient() of localhost:27017: PyMongo's default host,
    # which may be a whole URI.
    plugin="""\
import os

from pymongo.synchronous.mongo_client import MongoClient

MongoClient.HOST = os.environ["ODM_SUITE_URI"]
""",
    expected={},
)

ODMANTIC = Suite(
    project="odmantic",
    version="1.0.2",
    sha256="bbd0d46bc920e0e6d966d9f3add7396bc92377d2c73860d071d5ca8102f57235",
    # Its test requirements, less coverage, linters and pytest plugins it does not use;
    # pytest-asyncio 0.21 (it asks for 0.16) still lets its conftest override
    # ``event_loop``, which its Motor client is bound to; pydantic and FastAPI of its time.
    requirements=(
        "pydantic>=2.5.2,<2.8",
        "pytest>=8,<8.4",
        "pytest-asyncio==0.21.2",
        "pytest-benchmark>=4.0.0",
        "inline-snapshot>=0.6.0,<0.7",
        # inline-snapshot 0.6 makes click.testing.CliRunner(mix_stderr=False).
        "click<8.2",
        "async-asgi-testclient>=1.4.11",
        "pytz>=2023.3",
        "uvicorn>=0.17.0",
        "fastapi>=0.104.0,<0.109",
        "requests>=2.24",
        "httpx>=0.24.1,<0.28",
    ),
    tests=("tests",),
    # ODMantic's tests read TEST_MONGO_URI and TEST_MONGO_MODE (Suite.environment).
    plugin="",
    expected={},
    venv="venv-odmantic",
    # Its FastAPI tests import its documentation's example application.
    sources=("tests/", "docs/__init__.py", "docs/examples_src/"),
    # Its async fixtures are plain pytest fixtures (pytest-asyncio's auto mode), and its
    # benchmarks run once each.
    options=("-o", "asyncio_mode=auto", "--benchmark-disable"),
)

AIOGRAM = Suite(
    project="aiogram",
    version="3.31.0",
    sha256="f2c5064fe52d88898c86af62261c405440a014216e45dd99b2c6555a5602ce30",
    # Its requirements, its ``redis`` extra (its tests' conftest imports redis) and its test
    # requirements less pytest-mypy, pytest-cov and pytest-html.  Its ``mongo`` extra asks
    # for PyMongo <4.18; the suites run this project's PyMongo.
    requirements=(
        "aiofiles>=23.2.1,<26.0",
        "aiohttp>=3.9.0,<3.15",
        "certifi>=2023.7.22",
        "magic-filter>=1.0.12,<1.1",
        "pydantic>=2.4.1,<2.14",
        "typing-extensions>=4.7.0,<=5.0",
        "redis[hiredis]>=6.2.0,<8",
        "pytest==9.0.3",
        "pytest-mock==3.15.1",
        "pytest-aiohttp==1.1.0",
        "aresponses==3.0.0",
        "pytz>=2026,<2027",
        "pycryptodomex==3.23.0",
    ),
    tests=("tests/test_fsm",),
    plugin="",
    expected={},
    venv="venv-aiogram",
    # Its tests of MongoStorage (and PyMongoStorage) run with ``--mongo``; those of its
    # RedisStorage are skipped.
    options=("--mongo", "{uri}"),
)

FASTAPI_PAGINATION = Suite(
    # As its sdist is named (``fastapi_pagination-0.15.16.tar.gz``).
    project="fastapi_pagination",
    version="0.15.16",
    sha256="739a4e904729dc01e03ce95e260ed9be050d48a3659be8463e5c4fcdd0cf25b0",
    # Its requirements, those of ODMantic 1.1.0 but Motor, what its tests' conftest files
    # import (drivers of the other databases: SQLite, PostgreSQL, Cassandra) and its test
    # requirements less linters, coverage and documentation.
    requirements=(
        # FastAPI 0.165 (not 0.140) rejects its `Query` defaults in `Annotated`.
        "fastapi>=0.93.0,<0.141",
        "pydantic>=2.5.2",
        "typing-extensions>=4.8.0",
        "SQLAlchemy>=1.3.20",
        "aiosqlite>=0.19.0",
        "asyncpg>=0.24.0",
        "scylla-driver>=3.25.6",
        "pytest>=8.3.4",
        "pytest-asyncio>=0.25.3",
        "flaky>=3.8.1",
        "Faker>=35.2",
        "httpx>=0.28.1",
        "asgi-lifespan>=2.1.0",
        "requests>=2.32.2",
        "dirty-equals>=0.9.0",
    ),
    tests=(
        "tests/ext/test_motor.py",
        "tests/ext/test_motor_aggregate.py",
        "tests/ext/test_odmantic.py",
    ),
    plugin="",
    expected={},
    venv="venv-fastapi_pagination",
    # pytest.ini: its session-scoped event loop.
    sources=("tests/", "pytest.ini"),
    # Its conftest requires a DSN per database; only MongoDB's is used by these tests.
    options=(
        "--mongodb-dsn={uri}",
        "--postgres-dsn=postgresql://unused",
        "--cassandra-dsn=unused",
        "--firestore-dsn=unused",
    ),
    companions=("odmantic==1.1.0",),
)

SUITES = {suite.project: suite for suite in (BEANIE, UMONGO, ODMANTIC, AIOGRAM, FASTAPI_PAGINATION)}


def suite_python(cache: Path, name: str) -> tuple[Path, Path]:
    """The Python of the virtualenv ``name`` of the suites, and the directory holding
    Motor 3.7.1 there."""
    import greenlet
    import pymongo
    import tornado

    venv = cache / name
    python = venv / "bin" / "python"
    motor371 = venv / "motor-3.7.1"
    suites = [suite for suite in SUITES.values() if suite.venv == name]
    wanted = [
        *(r for suite in suites for r in suite.requirements),
        f"pymongo=={pymongo.version}",
        f"tornado=={tornado.version}",
        f"greenlet=={greenlet.__version__}",
    ]
    projects = [
        *(f"{suite.project}=={suite.version}" for suite in suites),
        *(companion for suite in suites for companion in suite.companions),
    ]
    motor = f"motor=={tutorial_doctest.MOTOR_VERSION}"
    stamp = venv / "odm-suites-requirements.txt"
    record = "\n".join([*wanted, *projects, motor])
    if python.exists() and stamp.is_file() and stamp.read_text() == record:
        return python, motor371
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *wanted], check=True)
    subprocess.run([*pip, "--no-deps", *projects], check=True)
    subprocess.run([*pip, "--no-deps", "--target", str(motor371), motor], check=True)
    stamp.write_text(record)
    return python, motor371


def extract_tests(suite: Suite, sdist: Path, into: Path) -> None:
    """The suite's :attr:`~Suite.sources` (its ``tests`` package) and its
    ``pyproject.toml`` (pytest's settings)."""
    prefix = f"{suite.project}-{suite.version}/"
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = member.name[len(prefix) :]
            if member.isfile() and (name.startswith(suite.sources) or name == "pyproject.toml"):
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    (into / "plugins").mkdir()
    (into / "plugins" / "odm_suite_plugin.py").write_text(suite.plugin)


def is_ferretdb(uri: str) -> bool:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000) as client:
        return "ferretdbVersion" in client.admin.command("buildInfo")


def run_suite(
    suite: Suite, python: Path, motor_path: Path, root: Path, uri: str, ferretdb: bool
) -> str:
    """Run ``suite`` in ``root`` with ``motor_path`` first on the path; the summary."""
    env = {
        **os.environ,
        **suite.environment(uri, ferretdb),
        "PYTHONPATH": os.pathsep.join([str(motor_path), str(root / "plugins")]),
    }
    check = subprocess.run(
        [str(python), "-c", "import motor; print(motor.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        return f"import motor failed:\n{check.stderr.strip()[-2000:]}"
    imported = check.stdout.strip()
    if not Path(imported).resolve().is_relative_to(motor_path.resolve()):
        raise SystemExit(f"expected motor from {motor_path}, imported {imported}")
    command = [
        str(python),
        "-m",
        "pytest",
        "-q",
        "-o",
        "addopts=",
        "-p",
        "no:cacheprovider",
        "-p",
        "odm_suite_plugin",
        "--junitxml=report.xml",
        *(option.format(uri=uri) for option in suite.options),
        *suite.tests,
    ]
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired:
        return "pytest did not finish within 30 minutes"
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else done.stderr.strip()[-500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default=os.environ.get("MOTOR_TEST_URI"))
    parser.add_argument(
        "--suite", action="append", choices=sorted(SUITES), help="only these (default: all)"
    )
    args = parser.parse_args(argv)
    suites = [SUITES[name] for name in args.suite or SUITES]
    cache = test_server.cache_dir()
    sdists = {
        suite.project: tutorial_doctest.pypi_sdist(
            cache / "odm-sdists", suite.project, suite.version, suite.sha256
        )
        for suite in suites
    }
    pythons = {suite.venv: suite_python(cache, suite.venv) for suite in suites}
    failed = False
    with server_uri(args.uri) as uri, tempfile.TemporaryDirectory() as scratch:
        ferretdb = is_ferretdb(uri)
        for suite in suites:
            python, motor371 = pythons[suite.venv]
            results = {}
            for name, motor_path in (("Motor 3.7.1", motor371), ("this Motor", REPO)):
                root = Path(scratch) / suite.project / name.replace(" ", "_")
                extract_tests(suite, sdists[suite.project], root)
                summary = run_suite(suite, python, motor_path, root, uri, ferretdb)
                print(f"{suite.project} {suite.version}, {name}: {summary}", flush=True)
                report = root / "report.xml"
                if report.is_file():
                    results[name] = outcomes(report)
            if len(results) < 2:
                # pytest stopped before it ran a test (an import error): the summary says why.
                print(f"{suite.project} {suite.version}: a run made no report", flush=True)
                failed = True
                continue
            both, lost, unexpected, gained = diff_outcomes(
                results["Motor 3.7.1"], results["this Motor"], suite.expected
            )
            print(
                f"{suite.project} {suite.version}: passed by both: {both}; only by Motor "
                f"3.7.1: {lost} ({unexpected} unexpected); only by this Motor: {gained}",
                flush=True,
            )
            failed = failed or bool(unexpected) or not both
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
