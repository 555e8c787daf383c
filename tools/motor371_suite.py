"""Run Motor 3.7.1's own test suite on this Motor and on Motor 3.7.1, on one server; diff.

A compatibility oracle: ``python tools/motor371_suite.py [--uri URI]``.

1. The Motor 3.7.1 sdist (downloaded and checked as for ``test/test_tutorials.py``, see
   :func:`test.tutorial_doctest.motor_sdist`) holds Motor's tests: ``test/asyncio_tests``
   and ``test/tornado_tests``.  Nothing of them is copied into this repository.
2. They run twice against the same server, with ``DB_IP``/``DB_PORT`` set from the URI:
   with Motor 3.7.1 (a virtualenv of its own, ``<cache>/venv-motor371-suite``, made on
   first use with this PyMongo's and this Tornado's versions, pytest, MockupDB, aiohttp
   and mypy), and with this project's virtualenv, whose ``motor`` is this checkout.  Two
   test modules import Motor 3.7.1 internals (``motor.motor_gridfs._hash_gridout``,
   ``motor.frameworks.asyncio.max_workers``); this Motor's copy of them gets the same
   values inline instead.
3. Every test that passes with Motor 3.7.1 and not with this Motor is listed.  The ones
   in :data:`EXPECTED` (Motor 3.7.1 internals, attribute lists that this Motor exceeds)
   are listed with their reason; any other one fails the run (exit status 1).
4. mypy (this project's version, Motor 3.7.1's settings) checks Motor 3.7.1's
   ``test/test_typing.py`` against each driver's type stubs; any difference in the errors
   (class names aside) fails the run too: code that type-checks with Motor 3.7.1 must
   type-check here, and the misuse its stubs reject must be rejected.

Without ``--uri`` (or ``MOTOR_TEST_URI``) a server is started with ``test/server.py`` and
stopped at the end.  Tests that the server cannot run (FerretDB lacks fail points, some
aggregation operators, ...) fail or are skipped for both drivers and are not listed.
About 4 minutes against FerretDB, the first time more (the virtualenv).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from test import server as test_server  # noqa: E402
from test import tutorial_doctest  # noqa: E402

SUITES = ["test/asyncio_tests", "test/tornado_tests"]

#: Tests that pass with Motor 3.7.1 and not with this Motor, on purpose: test id -> why.
EXPECTED = {
    "test.asyncio_tests.test_asyncio_cursor.TestAsyncIOCursor::test_fetch_next_is_idempotent": (
        "reads Motor 3.7.1's private cursor._buffer_size()"
    ),
    "test.tornado_tests.test_motor_cursor.MotorCursorTest::test_fetch_next_is_idempotent": (
        "reads Motor 3.7.1's private cursor._buffer_size()"
    ),
    "test.tornado_tests.test_motor_core.MotorCoreTest::test_cursor_attrs": (
        "this Motor's cursor also has PyMongo's retrieved"
    ),
    "test.tornado_tests.test_motor_core.MotorCoreTestGridFS::test_gridfs_attrs": (
        "this Motor's bucket also has PyMongo's delete_by_name and rename_by_name"
    ),
    "test.tornado_tests.test_motor_core.MotorCoreTestGridFS::test_gridin_attrs": (
        "this Motor's GridIn also has PyMongo's md5 (deprecated)"
    ),
    "test.tornado_tests.test_motor_core.MotorCoreTestGridFS::test_gridout_attrs": (
        "this Motor's GridOut also has read_chunks() and PyMongo's io methods (readlines, ...)"
    ),
    "test.tornado_tests.test_motor_core.MotorCoreTestGridFS::test_gridout_cursor_attrs": (
        "this Motor's GridOutCursor also has PyMongo's retrieved"
    ),
}

# Motor 3.7.1's mypy settings (its pyproject.toml), for its test/test_typing.py; Python 3.11
# because Tornado's sources need 3.10+.
MYPY_INI = """[mypy]
python_version = 3.11
strict = True
show_error_codes = True
warn_redundant_casts = True
warn_unreachable = True
disable_error_code = type-arg
enable_error_code = ignore-without-code, redundant-expr, truthy-bool
"""

PYTEST_INI = """[pytest]
testpaths = test
filterwarnings =
    error
    ignore:Bare functions are deprecated, use async ones:DeprecationWarning
    ignore:Application.make_handler:DeprecationWarning
    ignore:unclosed:ResourceWarning
    ignore: The fetch_next property is deprecated:DeprecationWarning
    ignore:The next_object method is deprecated:DeprecationWarning
    ignore:datetime.datetime.utc:DeprecationWarning
    ignore:GridOut property:DeprecationWarning
    ignore:GridIn property:DeprecationWarning
faulthandler_timeout = 600
"""

# Motor 3.7.1 internals the suite imports, and what this Motor's copy uses instead.
INTERNALS = {
    "from motor.motor_gridfs import _hash_gridout\n": (
        "import hashlib\n\n\n"
        "def _hash_gridout(gridout):\n"
        '    grid_hash = hashlib.sha256(str(gridout._id).encode("utf8"))\n'
        '    grid_hash.update(str(gridout.length).encode("utf8"))\n'
        '    grid_hash.update(str(gridout.upload_date).encode("utf8"))\n'
        "    return grid_hash.hexdigest()\n"
    ),
    "from motor.frameworks.asyncio import max_workers\n": "max_workers = 10\n",
}


def motor371_python(cache: Path) -> Path:
    """The Python of a virtualenv with Motor 3.7.1 and what its tests need."""
    import mypy.version
    import pymongo
    import tornado

    venv = cache / "venv-motor371-suite"
    python = venv / "bin" / "python"
    wanted = [
        f"motor=={tutorial_doctest.MOTOR_VERSION}",
        f"pymongo=={pymongo.version}",
        f"tornado=={tornado.version}",
        "pytest",
        "mockupdb",
        "aiohttp",
        f"mypy=={mypy.version.__version__}",
    ]
    stamp = venv / "motor-suite-requirements.txt"
    if python.exists() and stamp.is_file() and stamp.read_text() == "\n".join(wanted):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted],
        check=True,
    )
    stamp.write_text("\n".join(wanted))
    return python


def extract_tests(sdist: Path, into: Path, patch_internals: bool) -> None:
    """Motor 3.7.1's ``test`` package from ``sdist`` into ``into``, with a pytest.ini."""
    with tarfile.open(sdist) as tar:
        prefix = f"motor-{tutorial_doctest.MOTOR_VERSION}/test/"
        members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
        for member in members:
            target = into / "test" / member.name[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            target.write_bytes(source.read())
    (into / "pytest.ini").write_text(PYTEST_INI)
    (into / "mypy.ini").write_text(MYPY_INI)
    if patch_internals:
        for path in (into / "test").rglob("*.py"):
            text = path.read_text()
            for line, replacement in INTERNALS.items():
                text = text.replace(line, replacement)
            path.write_text(text)


def run_suite(python: Path, root: Path, uri: str, report: Path) -> str:
    """Run the suites with ``python`` in ``root``; the summary line."""
    parts = urlsplit(uri)
    env = {
        **os.environ,
        "DB_IP": parts.hostname or "localhost",
        "DB_PORT": str(parts.port or 27017),
        "PYTHONPATH": "",
    }
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *SUITES,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else done.stderr.strip()[-500:]


def mypy_errors(python: Path, root: Path) -> list[str]:
    """mypy's errors on Motor 3.7.1's ``test/test_typing.py`` (type checking only), with
    the Motor class names left out: ``file:line: error: message [code]`` lines."""
    done = subprocess.run(
        [str(python), "-m", "mypy", "test/test_typing.py"],
        cwd=root,
        env={**os.environ, "SKIP_ENV_SETUP": "1", "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    return [
        re.sub(r'"(AsyncIOMotor|Motor|Agnostic)[A-Za-z]*"', '"<Motor class>"', e) for e in errors
    ]


def outcomes(report: Path) -> dict[str, str]:
    """Test id -> "pass", "fail" or "skip", from a JUnit XML report."""
    result = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        status = "pass"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "fail"
                break
            if child.tag == "skipped":
                status = "skip"
        result[f"{case.get('classname')}::{case.get('name')}"] = status
    return result


@contextlib.contextmanager
def server_uri(uri: str | None) -> Iterator[str]:
    """``uri``; without one, a server started with ``test/server.py`` for the block."""
    if uri:
        yield uri
        return
    started = subprocess.run(
        [sys.executable, "-m", "test.server", "start"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    try:
        yield started.stdout.splitlines()[0].strip()
    finally:
        subprocess.run([sys.executable, "-m", "test.server", "stop"], cwd=REPO, check=False)


def diff_outcomes(
    reference: dict[str, str], ours: dict[str, str], expected: dict[str, str]
) -> tuple[int, int, int, int]:
    """Print every test that passes with Motor 3.7.1 (``reference``) and not with this Motor,
    with its reason in ``expected``; return how many pass with both, with Motor 3.7.1 only,
    unexpectedly so, and with this Motor only."""
    lost = sorted(t for t, s in reference.items() if s == "pass" and ours.get(t) != "pass")
    unexpected = [t for t in lost if t not in expected]
    for test in lost:
        print(f"  {ours.get(test, 'missing')}: {test}  ({expected.get(test, 'UNEXPECTED')})")
    gained = sum(1 for t, status in ours.items() if status == "pass" and reference.get(t) != "pass")
    both = sum(1 for t, status in ours.items() if status == "pass" and reference.get(t) == "pass")
    return both, len(lost), len(unexpected), gained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uri", default=os.environ.get("MOTOR_TEST_URI"))
    args = parser.parse_args(argv)
    cache = test_server.cache_dir()
    sdist = tutorial_doctest.motor_sdist(cache / "motor-sdist")
    theirs = motor371_python(cache)
    with server_uri(args.uri) as uri, tempfile.TemporaryDirectory() as scratch:
        results = {}
        typing_errors: dict[str, list[str]] = {}
        for name, python, patch in (
            ("Motor 3.7.1", theirs, False),
            ("this Motor", Path(sys.executable), True),
        ):
            root = Path(scratch) / name.replace(" ", "_")
            extract_tests(sdist, root, patch_internals=patch)
            report = root / "report.xml"
            print(f"{name}: {run_suite(python, root, uri, report)}", flush=True)
            results[name] = outcomes(report)
            typing_errors[name] = mypy_errors(python, root)
    both, lost, unexpected, gained = diff_outcomes(
        results["Motor 3.7.1"], results["this Motor"], EXPECTED
    )
    print(
        f"passed by both: {both}; only by Motor 3.7.1: {lost} ({unexpected} "
        f"unexpected); only by this Motor: {gained}"
    )
    # Type checking: code that Motor 3.7.1's stubs accept must be accepted, and misuse
    # they reject rejected, the same way.
    theirs_errors, our_errors = typing_errors["Motor 3.7.1"], typing_errors["this Motor"]
    typing_diff = sorted(set(theirs_errors) ^ set(our_errors))
    for line in typing_diff:
        print(
            f"  mypy, only with {'Motor 3.7.1' if line in theirs_errors else 'this Motor'}: {line}"
        )
    print(
        f"mypy on test/test_typing.py: {len(theirs_errors)} errors with Motor 3.7.1, "
        f"{len(our_errors)} with this Motor, {len(typing_diff)} different"
    )
    return 1 if unexpected or typing_diff else 0


if __name__ == "__main__":
    sys.exit(main())
