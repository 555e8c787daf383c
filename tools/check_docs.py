"""Build the documentation and run every example it shows: ``python tools/check_docs.py``.

1. ``sphinx-build -E -W --keep-going -b html doc doc/_build/html``: warnings are errors,
   and ``doc/conf.py`` sets ``nitpicky``, so a broken ``:doc:``, ``:ref:`` or reference to
   Motor's documented API fails the build.
2. ``pytest`` on the tests that execute the documentation's code against a test server
   (started by the test session, see ``doc/testing.rst``, or ``MOTOR_TEST_URI``):
   ``doc/examples/*.py`` with their printed output (``test/test_doc_examples.py``), the
   Tornado, asyncio and aiohttp tutorials' apps and sessions
   (``test/test_doc_tutorials.py``), and Motor 3.7.1's tutorials run unchanged
   (``test/test_tutorials.py``).

``--build-only`` stops after step 1.  Extra arguments go to pytest.  ``tox -e docs`` and
``test/run.sh`` (CI) run this script.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC_TESTS = [
    "test/test_doc_examples.py",
    "test/test_doc_tutorials.py",
    "test/test_tutorials.py",
]


def main(argv: list[str]) -> int:
    build_only = "--build-only" in argv
    pytest_args = [a for a in argv if a != "--build-only"]
    build = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q"]
    build += ["-b", "html", "doc", "doc/_build/html"]
    print("check_docs: " + " ".join(build[2:]), flush=True)
    status = subprocess.call(build, cwd=REPO)
    if status or build_only:
        return status
    tests = [sys.executable, "-m", "pytest", *DOC_TESTS, *pytest_args]
    print("check_docs: " + " ".join(tests[2:]), flush=True)
    return subprocess.call(tests, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
