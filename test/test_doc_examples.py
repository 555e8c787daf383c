"""The example scripts of ``doc/examples/`` run, and print what their pages show.

Each example ``doc/examples/NAME.py`` runs in a fresh Python process (``python -W error
NAME.py``, in ``doc/examples/``) with ``MONGODB_URI`` naming a test server, and its standard
output must equal ``doc/examples/NAME.out``, the file its page includes as the output, after
:func:`normalise` has replaced what changes from run to run (ObjectIds, dates, timestamps,
durations) on both sides.  So the output a reader sees is the output CI checks, and a broken
example fails the suite.

Most examples run against the session's main server (``server``); the TLS and authentication
examples against the ``tls_server`` and ``auth_server`` fixtures.  Change streams and
transactions need a replica set, which FerretDB is not (doc/testing.rst): those two examples run
unchanged against a MockupDB replica-set member that the test scripts here, and the test checks
the commands the example sent (``$changeStream`` options, ``startTransaction``, one ``lsid``
and ``txnNumber`` per transaction, ...).  The replies are written in the form MongoDB 7.0 gives
them.

``test_green_diagram`` checks the diagram of ``doc/green.rst``: the greenlet switches of one
``find_one``.

``MOTOR_UPDATE_EXAMPLES=1`` writes each example's output to its ``.out`` file instead of
comparing: review the diff before committing it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import greenlet
import pytest
from bson import Timestamp
from mockupdb import MockupDB

from motor.green.hub import Child
from motor.motor_asyncio import AsyncIOMotorClient
from test import server as test_server
from test.scripted import Step, cursor_reply, ok, play, replica_set_member

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "doc" / "examples"
# Example files that are not run by this module (test/test_sync_code.py runs the app).
NOT_HERE = {"mongoengine_app.py"}
UPDATE = os.environ.get("MOTOR_UPDATE_EXAMPLES", "") not in ("", "0")
RUN_TIMEOUT = 60.0

# Examples run against the main test server.
PLAIN = [
    "bulk_writes",
    "cursors",
    "aggregation",
    "gridfs_files",
    "gridfs_tornado",
    "gridfs_aiohttp",
    "timeouts",
    "monitoring",
    "synchronous_code",
]
TLS = ["tls"]
AUTH = ["authentication"]
SCRIPTED = ["transactions", "change_streams"]

_NORMALISE = [
    # ObjectId('65f0c0ffee...') -> ObjectId('...')
    (re.compile(r"ObjectId\('[0-9a-f]{24}'\)"), "ObjectId('...')"),
    (re.compile(r"datetime\.datetime\([^)]*\)"), "datetime.datetime(...)"),
    (re.compile(r"Timestamp\(\d+, \d+\)"), "Timestamp(...)"),
    # str(datetime): 2025-05-14 09:30:00.123000
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?"), "<datetime>"),
    # HTTP dates: Tue, 05 Mar 2024 10:00:00 GMT
    (re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"), "<http-date>"),
    # The reason phrase of 416, which http.HTTPStatus shortened in Python 3.13 (RFC 9110)
    (re.compile(r"\b416 (Requested )?Range Not Satisfiable\b"), "416 Range Not Satisfiable"),
    # Durations: "after 0.3 s", "for 0.4 ms"
    (re.compile(r"\b\d+(\.\d+)? (ms|s)\b"), r"<n> \2"),
    # Entity tags
    (re.compile(r'"[0-9a-f]{64}"'), '"<etag>"'),  # SHA-256
]


def normalise(text: str) -> list[str]:
    """The lines of an example's output, with what differs between runs replaced."""
    for pattern, replacement in _NORMALISE:
        text = pattern.sub(replacement, text)
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def start(name: str, uri: str, **env: str) -> subprocess.Popen[str]:
    environ = dict(os.environ)
    environ.pop("MOTOR_DETECT_STALLS", None)
    environ.update(MONGODB_URI=uri, PYTHONUNBUFFERED="1", **env)
    return subprocess.Popen(
        [sys.executable, "-W", "error", f"{name}.py"],
        cwd=EXAMPLES,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(name: str, proc: subprocess.Popen[str], timeout: float = RUN_TIMEOUT) -> str:
    """Wait for the example to end; its standard output, which it must have exited 0 with."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"{name}.py ran longer than {timeout} s\n{stdout}\n{stderr}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{name}.py exited with {proc.returncode}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            pytrace=False,
        )
    return stdout


def check_output(name: str, stdout: str) -> None:
    # Python names the script by its absolute path (in tracebacks, or the stall detector's
    # "called at"): show it as the reader runs it, from doc/examples/.
    stdout = stdout.replace(f"{EXAMPLES}{os.sep}", "")
    expected_file = EXAMPLES / f"{name}.out"
    if UPDATE:
        expected_file.write_text(stdout)
        return
    assert expected_file.exists(), f"{expected_file} is missing (MOTOR_UPDATE_EXAMPLES=1)"
    assert normalise(stdout) == normalise(expected_file.read_text()), (
        f"{name}.py printed something else than {expected_file.name} shows"
    )


def run(name: str, uri: str, **env: str) -> None:
    check_output(name, finish(name, start(name, uri, **env)))


# --------------------------------------------------------------------------- real servers


@pytest.mark.parametrize("name", PLAIN)
def test_example(name: str, server: test_server.Server) -> None:
    run(name, server.full_uri)


def test_tls(tls_server: test_server.Server) -> None:
    assert tls_server.ca_file is not None
    run("tls", tls_server.uri, MONGODB_CA_FILE=tls_server.ca_file)


def test_authentication(auth_server: test_server.Server) -> None:
    run("authentication", auth_server.uri)


# --------------------------------------------------------------------------- MockupDB

WALL_TIME = datetime.datetime(2025, 5, 14, 9, 30, 0)
CLUSTER_TIME = Timestamp(1747215000, 1)


def run_scripted(name: str, mockup: Callable[..., MockupDB], steps: list[Step]) -> list[Any]:
    """Run the example against a scripted replica-set member; the requests it answered."""
    member = replica_set_member(mockup)
    uri = f"mongodb://{member.address_string}/?replicaSet=rs"
    proc = start(name, uri)
    requests: list[Any] = []
    try:
        play(member, steps, requests)
    except BaseException as exc:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"{name}.py: {exc}\n--- its stderr\n{stderr}") from exc
    check_output(name, finish(name, proc))
    return requests


def command(request: Any) -> dict[str, Any]:
    return dict(request.doc)


def test_transactions(mockup: Callable[..., MockupDB]) -> None:
    def found(doc: dict[str, Any], ns: str) -> Step:
        return ("find", cursor_reply([doc], ns=ns))

    steps: list[Step] = [
        ("delete", ok(n=0)),
        ("delete", ok(n=0)),
        ("insert", ok(n=1)),
        # with_transaction: 3 apples are in stock
        ("update", ok(n=1, nModified=1)),
        ("insert", ok(n=1)),
        ("commitTransaction", ok()),
        # with_transaction: 30 are not, and the callback raises
        ("update", ok(n=0, nModified=0)),
        ("abortTransaction", ok()),
        # start_transaction by hand
        ("insert", ok(n=1)),
        ("commitTransaction", ok()),
        found({"_id": "apple", "qty": 7}, "examples.inventory"),
        ("aggregate", cursor_reply([{"_id": 1, "n": 2}], ns="examples.orders_placed")),
    ]
    requests = run_scripted("transactions", mockup, steps)
    docs = [command(r) for r in requests]

    # The three transactions: their commands, in one session, each with its own txnNumber;
    # the first command of each starts it, every one has autocommit false.
    transactions = [docs[3:6], docs[6:8], docs[8:10]]
    session_ids = {str(doc["lsid"]) for txn in transactions for doc in txn}
    assert len(session_ids) == 1, "the transactions ran in more than one session"
    numbers = []
    for txn in transactions:
        assert txn[0].get("startTransaction") is True, txn[0]
        assert all(doc.get("autocommit") is False for doc in txn), txn
        assert all("startTransaction" not in doc for doc in txn[1:]), txn
        assert len({doc["txnNumber"] for doc in txn}) == 1, txn
        numbers.append(txn[0]["txnNumber"])
    assert numbers == sorted(numbers) and len(set(numbers)) == 3, numbers
    assert docs[5]["$db"] == docs[7]["$db"] == docs[9]["$db"] == "admin"
    # What the transactions wrote: the guarded update, and the orders.
    assert docs[3]["updates"][0]["q"] == {"_id": "apple", "qty": {"$gte": 3}}
    assert docs[3]["updates"][0]["u"] == {"$inc": {"qty": -3}}
    assert docs[6]["updates"][0]["q"] == {"_id": "apple", "qty": {"$gte": 30}}
    assert [d["sku"] for d in docs[4]["documents"]] == ["apple"]
    assert docs[8]["documents"][0]["note"] == "sample"
    # The reads after the session are outside any transaction.
    assert all("txnNumber" not in doc for doc in docs[10:]), docs[10:]


def _change(
    token: str, operation: str, key: dict[str, Any], ns: str = "deliveries", **fields: Any
) -> dict[str, Any]:
    """A change event as MongoDB 7.0 sends it."""
    event: dict[str, Any] = {
        "_id": {"_data": token},
        "operationType": operation,
        "clusterTime": CLUSTER_TIME,
        "wallTime": WALL_TIME,
        "ns": {"db": "examples", "coll": ns},
        "documentKey": key,
    }
    event.update(fields)
    return event


def test_change_streams(mockup: Callable[..., MockupDB]) -> None:
    ns = "examples.deliveries"
    tokens = ["8268245B18000000012B", "8268245B18000000022B", "8268245B18000000032B"]
    insert = _change(
        tokens[0],
        "insert",
        {"_id": 1},
        fullDocument={"_id": 1, "item": "apple", "status": "new"},
    )
    update = _change(
        tokens[1],
        "update",
        {"_id": 1},
        updateDescription={
            "updatedFields": {"status": "shipped"},
            "removedFields": [],
            "truncatedArrays": [],
        },
        fullDocument={"_id": 1, "item": "apple", "status": "shipped"},
    )
    delete = _change(tokens[2], "delete", {"_id": 1})
    end = {"_data": "8268245B18000000042B"}

    def opened(cursor_id: int, batch: list[Any], token: dict[str, Any]) -> Step:
        return (
            "aggregate",
            ok(
                cursor={
                    "id": cursor_id,
                    "ns": ns,
                    "firstBatch": batch,
                    "postBatchResumeToken": token,
                }
            ),
        )

    def more(cursor_id: int, batch: list[Any], token: dict[str, Any]) -> Step:
        return (
            "getMore",
            ok(
                cursor={
                    "id": cursor_id,
                    "ns": ns,
                    "nextBatch": batch,
                    "postBatchResumeToken": token,
                }
            ),
        )

    start_token = {"_data": "8268245B17000000012B"}
    steps: list[Step] = [
        ("delete", ok(n=0)),
        opened(41, [], start_token),  # watch(): opened by try_next()
        more(41, [], start_token),  # ... which waits max_await_time_ms for a change: none
        ("insert", ok(n=1)),
        ("update", ok(n=1, nModified=1)),
        more(41, [insert, update], update["_id"]),
        ("delete", ok(n=1)),
        more(41, [delete], delete["_id"]),
        # (killCursors for 41 is answered automatically)
        opened(42, [delete], end),  # resumed after the insert, only deletes
    ]
    requests = run_scripted("change_streams", mockup, steps)
    docs = [command(r) for r in requests]

    first, resumed = docs[1], docs[8]
    assert first["aggregate"] == "deliveries"
    assert first["pipeline"] == [
        {"$changeStream": {"fullDocument": "updateLookup"}},
    ], first["pipeline"]
    for getmore in (docs[2], docs[5], docs[7]):
        assert getmore["getMore"] == 41 and getmore["maxTimeMS"] == 500, getmore
    assert resumed["pipeline"] == [
        {"$changeStream": {"resumeAfter": insert["_id"]}},
        {"$match": {"operationType": "delete"}},
    ], resumed["pipeline"]
    assert docs[3]["documents"] == [{"_id": 1, "item": "apple", "status": "new"}]


# --------------------------------------------------------------------------- doc/green.rst


async def _switches_of_find_one(uri: str) -> list[tuple[str, str, list[str]]]:
    """The greenlet switches of one find_one on a warm client: (from, to, the functions
    where the greenlet switched to resumes, innermost first)."""
    client: Any = AsyncIOMotorClient(uri)
    try:
        collection = client.examples.diagram
        await collection.delete_many({})
        await collection.insert_one({"x": 1})
        await collection.find_one({"x": 1})  # the server is known, a connection idle
        switches: list[tuple[str, str, list[str]]] = []

        def role(g: greenlet.greenlet) -> str:
            return "child" if isinstance(g, Child) else "hub"

        def trace(event: str, args: Any) -> None:
            if event in ("switch", "throw"):
                origin, target = args
                frame: Any = sys._getframe(1)  # where the target resumes
                functions: list[str] = []
                while frame is not None and len(functions) < 8:
                    functions.append(frame.f_code.co_name)
                    frame = frame.f_back
                switches.append((role(origin), role(target), functions))

        greenlet.settrace(trace)
        try:
            doc = await collection.find_one({"x": 1}, {"_id": 0})
        finally:
            greenlet.settrace(None)
        assert doc == {"x": 1}
        return switches
    finally:
        await client.close()


def test_green_diagram(server: test_server.Server) -> None:
    """One find_one switches greenlets as doc/green.rst's diagram shows."""
    switches = asyncio.run(_switches_of_find_one(server.uri))
    expected = [
        ("hub", "child", "_serve"),  # Hub._start hands the call to an idle child
        ("child", "hub", "_start"),  # the child parks after sending: back in Hub._start
        ("hub", "child", "_wait_readable"),  # the reply: the child resumes in its read
        ("child", "hub", "process_events"),  # done: back in the loop's event processing
    ]
    assert [(a, b) for a, b, _ in switches] == [(a, b) for a, b, _ in expected], switches
    for (_, _, functions), (_, _, where) in zip(switches, expected):
        assert where in functions, (where, functions)


# --------------------------------------------------------------------------- bookkeeping


def test_every_example_is_run_and_shown() -> None:
    """Each script is run above, and its page shows the script and its checked output."""
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if p.name not in NOT_HERE}
    assert scripts == set(PLAIN + TLS + AUTH + SCRIPTED)
    pages = {p.name: p.read_text() for p in EXAMPLES.glob("*.rst")}
    for name in sorted(scripts):
        assert (EXAMPLES / f"{name}.out").exists(), f"{name}.out is missing"
        including = [
            page
            for page, text in pages.items()
            if f"literalinclude:: {name}.py" in text and f"literalinclude:: {name}.out" in text
        ]
        assert including, f"no page in doc/examples/ includes both {name}.py and {name}.out"
    index = (REPO / "doc" / "examples.rst").read_text()
    for page in pages:
        assert f"examples/{page[: -len('.rst')]}" in index, f"{page} is not in doc/examples.rst"
