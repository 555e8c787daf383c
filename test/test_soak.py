"""The soak command's two-minute version: ``bench/soak.py --seconds 100 --restart-at 0.5``.

``bench/soak.py`` runs a mixed workload (reads, cursors, writes, aggregate, GridFS, 5 %
cancelled at random points) with 50 workers on one ``AsyncIOMotorClient`` against a server
it launches, kills that server with SIGKILL half-way, restarts it on the same port and data
after 5 s, and fails (exit status 1) if RSS grows more than 10 % after warm-up or anything
is left after ``close()``.  This test runs it as a subprocess, as a user would, and checks
its exit status and its JSON report.  It takes about 105 s; the full soak (1,000,000
operations) is not run in CI, see ``doc/soak.rst``.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pymongo.errors
import pytest

REPO = Path(__file__).resolve().parent.parent
SOAK = REPO / "bench" / "soak.py"
SECONDS = 100
# A line of the periodic report: "   10.0s     12,345   1,234    65.1   60   50/50 ..."
REPORT_LINE = re.compile(r"^\s*\d+\.\ds\s+[\d,]+\s+[\d,]+\s+\d+\.\d\s+\d+\s+\d+/\d+\s")


def _is_connection_error(name: str) -> bool:
    """Is the error class ``name`` (as the soak counts it) one of PyMongo's network errors?"""
    cls = getattr(pymongo.errors, name.split("(")[0], None)
    return isinstance(cls, type) and issubclass(cls, pymongo.errors.ConnectionFailure)


@pytest.mark.timeout(SECONDS + 140)
def test_soak_two_minutes_with_a_server_crash(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--seconds",
            str(SECONDS),
            "--restart-at",
            "0.5",
            "--json",
            str(report_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    duration = time.monotonic() - started
    output = proc.stdout + proc.stderr
    # Exit status 1 means one of the soak's own checks failed: its FAIL lines say which.
    assert proc.returncode == 0, f"soak exited {proc.returncode} after {duration:.0f} s:\n{output}"
    assert "soak: PASSED" in proc.stdout, output

    report = json.loads(report_path.read_text())
    summary = report["summary"]
    result = report["result"]
    failed = [check for check in summary["checks"] if not check["ok"]]
    assert not failed, failed

    # One report line every 10 s.
    lines = [line for line in proc.stdout.splitlines() if REPORT_LINE.match(line)]
    assert len(lines) >= SECONDS // 10, proc.stdout

    # Nothing left: pools idle, no parked greenlet, fds and threads back to the start.
    assert result["pool_counters_end"] == {
        "requests": 0,
        "active_sockets": 0,
        "pending": 0,
        "operation_count": 0,
    }
    assert result["final_sample"]["parked"] == 0
    assert result["final_sample"]["queued"] == 0
    assert result["fds_end"] - result["fds_start"] <= 2, result
    extra_threads = collections.Counter(result["threads_end"]) - collections.Counter(
        result["threads_start"]
    )
    assert not extra_threads, extra_threads

    # RSS after warm-up.
    assert summary["warmup_end_s"] is not None
    assert summary["rss_growth_after_warmup"] < 0.10, summary["rss_growth_after_warmup"]

    # The workload did work, in every interval but the outage, and every kind of operation
    # succeeded; cancellations happened.
    assert summary["ok"] > 1000, summary
    for name, point in summary["points"].items():
        assert point["ops_per_s"] > 0, (name, point)
    for kind, counts in summary["by_kind"].items():
        assert counts.get("ok", 0) > 0, (kind, counts)
    assert summary["cancelled"] > 0

    # Errors: during the outage only, and of PyMongo's network classes there (or a cursor
    # the restarted server no longer knows); outside it only what the server is known to
    # raise on its own (FerretDB: a cursor whose connection closed), never a cursor this
    # client killed, never a wrong result.
    restart = summary["restart"]
    assert restart["recovered"] and restart["marker_found"], restart
    assert summary["errors"]["outage"], "the server was killed but no operation failed"
    for name in summary["errors"]["outage"]:
        assert _is_connection_error(name) or name == "CursorNotFound(43)", name
    outside = {**summary["errors"]["before"], **summary["errors"]["after"]}
    tolerated = {"CursorNotFound(43)"} if summary["server_flavor"] == "ferretdb" else set()
    assert set(outside) <= tolerated, outside
    assert summary["cursor_not_found"]["killed_by_client"] == 0
    assert not any("WrongResult" in c for c in summary["errors"].values())
