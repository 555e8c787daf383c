#!/usr/bin/env bash
# The demo in one command, from a fresh clone: bash demo/run.sh [--self-test] [--port N]
#
# Creates or reuses the virtualenv .venv and installs Motor into it exactly as
# test/run.sh does (so the two commands share it), then runs `python -m demo`: it starts a
# MongoDB-compatible server with the test harness (MOTOR_URI if set, else mongod if on
# PATH, else FerretDB, built once with Go into ~/.cache/motor-test/), serves the media
# board on http://127.0.0.1:8888/ and stays up until Ctrl-C. With --self-test it drives
# the app with a scripted HTTP client instead, prints each check and stops. Either way
# it stops everything it started.
set -euo pipefail

cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
venv=.venv

if ! "$venv/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    echo "demo: creating virtualenv $venv with $("$python" --version 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "demo: installing Motor into $venv as test/run.sh does (the first time: a minute or two)"
"$venv/bin/python" -m pip install --quiet --config-settings editable_mode=strict \
    --editable '.[test,lint,docs]'

exec "$venv/bin/python" -m demo "$@"
