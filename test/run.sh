#!/usr/bin/env bash
# The one test command: bash test/run.sh [pytest arguments]
#
# From the repository root on a fresh machine: create or reuse the virtualenv .venv, install
# Motor in editable mode with its test, lint and docs extras, run ruff, mypy and a Sphinx
# build of doc/ (warnings are errors), then pytest. The pytest session starts its own
# MongoDB-compatible server (building FerretDB on first use) unless MOTOR_TEST_URI names one;
# see doc/testing.rst.
set -euo pipefail

cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
# Another Python gets a virtualenv of its own: VENV=.venv-3.13 PYTHON=python3.13.
venv="${VENV:-.venv}"

# Reused if it runs the same Python version as $python (3.11 or newer).
want=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if ! "$venv/bin/python" -c "import sys; assert sys.version_info >= (3, 11)
assert '%d.%d' % sys.version_info[:2] == '$want'" 2>/dev/null; then
    echo "run.sh: creating virtualenv $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
# Strict editable mode: site-packages points at a tree of links to motor's files (stubs
# included), which mypy follows; the default mode's import hook is invisible to type
# checkers, and "compat" mode would put the repository root, whose test/ package shadows
# the standard library's, on sys.path.  New files under motor/ appear on the next run.
"$venv/bin/python" -m pip install --quiet --config-settings editable_mode=strict \
    --editable '.[test,lint,docs]'

# CHECKS=0 skips the static checks (ruff, mypy, the docs build): .ci/run's second run,
# on another Python, where they give the same results (mypy checks for Python 3.11).
if [ "${CHECKS:-1}" != 0 ]; then
    echo "run.sh: ruff check ."
    "$venv/bin/ruff" check .
    echo "run.sh: ruff format --check ."
    "$venv/bin/ruff" format --check .
    echo "run.sh: mypy motor"
    "$venv/bin/mypy" motor
    # mypy motor reads motor/core.pyi, the generated stub, for motor.core: check its source too.
    echo "run.sh: mypy --follow-imports=silent motor/core.py"
    "$venv/bin/mypy" --follow-imports=silent motor/core.py
    echo "run.sh: mypy test bench"
    "$venv/bin/mypy" test bench
    echo "run.sh: tools/check_docs.py --build-only (Sphinx; warnings and broken links are errors)"
    "$venv/bin/python" tools/check_docs.py --build-only
else
    echo "run.sh: CHECKS=0: ruff, mypy and the docs build skipped"
fi

# test/test_demo.py drives headless Chromium: Debian's chromium package. Without it that
# test fails (it never skips), saying so.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "run.sh: installing Chromium for test/test_demo.py (apt-get install chromium)"
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends chromium >/dev/null; }; then
            echo "run.sh: installing Chromium failed; the browser test will fail" >&2
        fi
    else
        echo "run.sh: /usr/bin/chromium is missing and only root with apt-get can install" \
            "it here; the browser test in test/test_demo.py will fail" >&2
    fi
fi

echo "run.sh: pytest $*"
status=0
"$venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "run.sh: pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$status"
