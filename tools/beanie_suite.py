"""Run Beanie's test suite on this Motor and on Motor 3.7.1, on one server; diff.

A compatibility oracle for the most used library built on Motor 3.x:
``python tools/beanie_suite.py [--uri URI]``.

1. The Beanie 1.30.0 sdist (downloaded from PyPI and checked against a pinned sha256, as
   Motor 3.7.1's is for ``test/test_tutorials.py``) holds Beanie's tests.  Nothing of them
   is copied into this repository.
2. One virtualenv of its own (``<cache>/venv-beanie-suite``, made on first use) has Beanie
   (without its Motor requirement), its dependencies and test dependencies, and this
   project's PyMongo, Tornado and greenlet versions; Motor 3.7.1 is installed beside it in
   a directory of its own.  The suite runs twice against the same server, once with Motor
   3.7.1 and once with this checkout first on ``PYTHONPATH``; each run checks first which
   ``motor`` it imports.
3. Every test that passes with Motor 3.7.1 and not with this Motor is listed, and fails
   the run (exit status 1) unless :data:`EXPECTED` explains it.

FerretDB has no text indexes and no views, and it drops the connection on some of
Beanie's index specifications; against it Beanie's models are set up without their indexes
and views (a pytest plugin, for both runs), and the tests that need them fail for both
drivers.  Against ``mongod`` nothing is changed.  Without ``--uri`` (or
``MOTOR_TEST_URI``) a server is started with ``test/server.py`` and stopped at the end.
About 5 minutes against FerretDB, the first time more (the virtualenv).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from motor371_suite import diff_outcomes, outcomes, server_uri  # noqa: E402

from test import server as test_server  # noqa: E402
from test import tutorial_doctest  # noqa: E402

BEANIE_VERSION = "1.30.0"
# The sha256 of beanie-1.30.0.tar.gz as PyPI serves it.
BEANIE_SHA256 = "33ead17ff2742144c510b4b24e188f6b316dd1b614d86b57a3cfe20bc7b768c9"

#: Beanie's requirements other than Motor, and those of its tests (its pyproject.toml).
REQUIREMENTS = [
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
]

#: Tests that pass with Motor 3.7.1 and not with this Motor, on purpose: test id -> why.
EXPECTED: dict[str, str] = {}

# A pytest plugin for FerretDB 1.24: Beanie's models get no indexes (no text indexes; some
# specifications make FerretDB drop the connection) and its views no server view.
FERRETDB_PLUGIN = '''\
"""Beanie on FerretDB 1.24: models without indexes, views without the server's view."""
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
'''


def suite_python(cache: Path) -> tuple[Path, Path]:
    """The Python of the suite's virtualenv, and the directory holding Motor 3.7.1."""
    import greenlet
    import pymongo
    import tornado

    venv = cache / "venv-beanie-suite"
    python = venv / "bin" / "python"
    motor371 = venv / "motor-3.7.1"
    wanted = [
        *REQUIREMENTS,
        f"pymongo=={pymongo.version}",
        f"tornado=={tornado.version}",
        f"greenlet=={greenlet.__version__}",
    ]
    stamp = venv / "beanie-suite-requirements.txt"
    record = "\n".join([*wanted, f"beanie=={BEANIE_VERSION}", "motor==3.7.1"])
    if python.exists() and stamp.is_file() and stamp.read_text() == record:
        return python, motor371
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *wanted], check=True)
    subprocess.run([*pip, "--no-deps", f"beanie=={BEANIE_VERSION}"], check=True)
    subprocess.run(
        [*pip, "--no-deps", "--target", str(motor371), f"motor=={tutorial_doctest.MOTOR_VERSION}"],
        check=True,
    )
    stamp.write_text(record)
    return python, motor371


def extract_tests(sdist: Path, into: Path) -> None:
    """Beanie's ``tests`` package and its ``pyproject.toml`` (pytest's settings)."""
    prefix = f"beanie-{BEANIE_VERSION}/"
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            name = member.name[len(prefix) :]
            if member.isfile() and (name.startswith("tests/") or name == "pyproject.toml"):
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())


def is_ferretdb(uri: str) -> bool:
    import pymongo

    client: pymongo.MongoClient[dict[str, object]]
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=10000) as client:
        return "ferretdbVersion" in client.admin.command("buildInfo")


def run_suite(python: Path, motor_path: Path, root: Path, uri: str, ferretdb: bool) -> str:
    """Run Beanie's tests in ``root`` with ``motor_path`` first on the path; the summary."""
    parts = urlsplit(uri)
    dsn = urlunsplit((parts.scheme, parts.netloc, "/beanie_db", parts.query, ""))
    env = {
        **os.environ,
        "MONGODB_DSN": dsn,
        "MONGODB_DB_NAME": "beanie_db",
        "PYTHONPATH": os.pathsep.join([str(motor_path), str(root / "plugins")]),
    }
    imported = subprocess.run(
        [str(python), "-c", "import motor; print(motor.__file__)"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(imported).resolve().is_relative_to(motor_path.resolve()):
        raise SystemExit(f"expected motor from {motor_path}, imported {imported}")
    plugin = ["-p", "beanie_on_ferretdb"] if ferretdb else []
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            *plugin,
            "--junitxml=report.xml",
            "tests",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else done.stderr.strip()[-500:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default=os.environ.get("MOTOR_TEST_URI"))
    args = parser.parse_args(argv)
    cache = test_server.cache_dir()
    sdist = tutorial_doctest.pypi_sdist(
        cache / "beanie-sdist", "beanie", BEANIE_VERSION, BEANIE_SHA256
    )
    python, motor371 = suite_python(cache)
    with server_uri(args.uri) as uri, tempfile.TemporaryDirectory() as scratch:
        ferretdb = is_ferretdb(uri)
        results = {}
        for name, motor_path in (("Motor 3.7.1", motor371), ("this Motor", REPO)):
            root = Path(scratch) / name.replace(" ", "_")
            extract_tests(sdist, root)
            (root / "plugins").mkdir()
            (root / "plugins" / "beanie_on_ferretdb.py").write_text(FERRETDB_PLUGIN)
            summary = run_suite(python, motor_path, root, uri, ferretdb)
            print(f"{name}: {summary}", flush=True)
            results[name] = outcomes(root / "report.xml")
    both, lost, unexpected, gained = diff_outcomes(
        results["Motor 3.7.1"], results["this Motor"], EXPECTED
    )
    print(
        f"Beanie {BEANIE_VERSION}{' (FerretDB: no indexes, no views)' if ferretdb else ''}: "
        f"passed by both: {both}; only by Motor 3.7.1: {lost} ({unexpected} "
        f"unexpected); only by this Motor: {gained}"
    )
    return 1 if unexpected or not both else 0


if __name__ == "__main__":
    sys.exit(main())
