"""Bulk writes on green connections (``motor.green.bulk``).

Write commands are encoded in pieces sized by what encoding the previous one cost, joined
into PyMongo's commands (or, with :data:`~motor.green.bulk.JOIN_PIECES` off, as on a
connection that compresses, each sent as a command): the tests replace the thread-CPU
clock with one whose steps they choose, and check the documents per piece and command.
``insert_many`` is PyMongo's without a pair object per document: the tests compare its
results and errors with PyMongo's, and look at what refers to a document mid-write.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import threading
from typing import Any

import bson
import pymongo
import pytest
from bson import ObjectId
from bson.codec_options import DEFAULT_CODEC_OPTIONS
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, InsertOne, UpdateOne, monitoring
from pymongo.bulk_shared import _Run
from pymongo.compression_support import ZlibContext
from pymongo.errors import BulkWriteError, DocumentTooLarge
from pymongo.write_concern import WriteConcern

from motor import metaprogramming
from motor.green import bulk as green_bulk
from motor.green import pool as green_pool
from motor.green import splice
from motor.green.bulk import GreenBulk, next_batch_size
from test.faultproxy import FaultProxy
from test.framework import Framework
from test.scripted import in_thread, replica_set_member, standing_replies


class _Clock:
    """A stand-in for ``time.thread_time`` that advances ``step`` per reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class _Inserts(monitoring.CommandListener):
    """The documents of every ``insert`` command started."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "insert":
            self.sizes.append(len(event.command["documents"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _pieces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The documents of each piece encoded from now on (each command, not joined)."""
    pieces: list[int] = []
    encode_sized = green_bulk._encode_sized

    def counted(*args: Any) -> Any:
        encoded, following = encode_sized(*args)
        pieces.append(len(encoded[2]))
        return encoded, following

    monkeypatch.setattr(green_bulk, "_encode_sized", counted)
    return pieces


async def _timed_collection(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, clock: Any, name: str
) -> tuple[Any, _Inserts]:
    """An empty collection whose inserts are counted, on a client whose worker-thread
    commands aim at 1.0 s of ``clock``'s thread time."""
    monkeypatch.setattr(green_bulk, "ENCODE_SECONDS_IN_THREAD", 1.0)
    monkeypatch.setattr(green_bulk, "_thread_time", clock)
    inserts = _Inserts()
    client = fw.client(server.uri, event_listeners=[inserts])
    coll = client.motor_test[f"{name}_{fw.name}"]
    await coll.drop()
    return coll, inserts


def test_next_batch_size_aims_at_the_target() -> None:
    assert next_batch_size(1000, 0.002, 0.002, 100_000) == 1000
    assert next_batch_size(1000, 0.004, 0.002, 100_000) == 500
    assert next_batch_size(1000, 0.001, 0.002, 100_000) == 2000
    # At most GROWTH times the last command, within the server's limit, never zero.
    assert next_batch_size(1000, 0.00001, 0.002, 100_000) == 1000 * green_bulk.GROWTH
    assert next_batch_size(1000, 0.0, 0.002, 100_000) == 1000 * green_bulk.GROWTH
    assert next_batch_size(50_000, 0.0001, 0.002, 100_000) == 100_000
    assert next_batch_size(10, 1.0, 0.002, 100_000) == 1
    assert next_batch_size(0, 0.0, 0.002, 100_000) == green_bulk.GROWTH


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (1.0, [1000] * 12),  # each command took the target: the first command's size
        (0.25, [1000, 4000, 7000]),  # a quarter of it: four times more
        (0.0, [1000, 8000, 3000]),  # nothing measured: GROWTH times more
        (2.0, [1000, 500, 500, 500]),  # the first took twice the target, the others it
    ],
    ids=["on-target", "quicker", "unmeasured", "slower"],
)
@pytest.mark.parametrize("joined", [True, False], ids=["joined", "commands"])
async def test_commands_are_sized_by_encoding_time(
    fw: Framework,
    server: Any,
    monkeypatch: pytest.MonkeyPatch,
    step: float,
    expected: list[int],
    joined: bool,
) -> None:
    if step == 2.0:
        clock: Any = _Steps([2.0, 1.0])
    else:
        clock = _Clock(step)
    coll, inserts = await _timed_collection(fw, server, monkeypatch, clock, "bulk_sizes")
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", joined)
    pieces = _pieces(monkeypatch)

    total = sum(expected)
    assert total > metaprogramming.BULK_IN_THREAD  # a worker thread's write
    result = await coll.insert_many([{"i": i} for i in range(total)])
    assert len(result.inserted_ids) == total
    if joined:
        # The pieces are sized as the commands are; the server gets PyMongo's command.
        assert (pieces, inserts.sizes) == (expected, [total])
    else:
        assert inserts.sizes == expected
    assert await coll.count_documents({}) == total
    assert sorted(await coll.distinct("i")) == list(range(total))


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "commands"])
async def test_commands_are_sized_in_bytes_too(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, joined: bool
) -> None:
    # Each command takes its target time: the count stays 1,000, but the encoder writes
    # at most FIRST_COMMAND_BYTES for the first command, and as much for the next ones.
    coll, inserts = await _timed_collection(fw, server, monkeypatch, _Clock(1.0), "bulk_bytes")
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", joined)
    pieces = _pieces(monkeypatch)
    documents = [{"_id": i, "pad": "b" * 2000} for i in range(1500)]
    size = len(bson.encode(documents[0]))
    await coll.insert_many(documents)
    if joined:
        assert inserts.sizes == [1500]
    else:  # (the pieces: these commands, and those of the documents checked ahead)
        pieces = inserts.sizes
    per_command = green_bulk.FIRST_COMMAND_BYTES // size
    assert per_command - 5 <= pieces[0] <= per_command
    assert all(count <= per_command + 5 for count in pieces)
    assert sum(pieces) == 1500 and len(pieces) >= 3
    assert await coll.count_documents({}) == 1500


class _Steps:
    """A clock whose first command costs ``first`` and every later one ``then``."""

    def __init__(self, costs: list[float]) -> None:
        self.now = 0.0
        self.costs = costs
        self.readings = 0

    def __call__(self) -> float:
        if self.readings % 2:  # the reading after an encoding
            self.now += self.costs[min(self.readings // 2, len(self.costs) - 1)]
        self.readings += 1
        return self.now


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "commands"])
async def test_bulk_write_commands_are_sized_too(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, joined: bool
) -> None:
    clock = _Clock(0.5)
    coll, inserts = await _timed_collection(fw, server, monkeypatch, clock, "bulk_write_sizes")
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", joined)
    pieces = _pieces(monkeypatch)
    result = await coll.bulk_write([InsertOne({"i": i}) for i in range(3200)])
    assert result.inserted_count == 3200
    if joined:
        assert (pieces, inserts.sizes) == ([1000, 2000, 200], [3200])
    else:
        assert inserts.sizes == [1000, 2000, 200]


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "commands"])
async def test_each_run_of_a_bulk_write_starts_at_the_first_command_s_sizes(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, joined: bool
) -> None:
    """A command that took long to encode shrinks the next command of its run, not the
    first command of the next run: a bulk write whose runs each fit in a first command
    is sent in PyMongo's commands (one per run), however slow an earlier run was."""
    commands: list[tuple[str, int]] = []
    items = {"insert": "documents", "update": "updates", "delete": "deletes"}

    class Writes(_Inserts):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name in items:
                commands.append((event.command_name, len(event.command[items[event.command_name]])))

    # Every command seems to take 10 s to encode: the next one of its run carries one
    # document.
    monkeypatch.setattr(green_bulk, "_thread_time", _Clock(10.0))
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", joined)
    pieces = _pieces(monkeypatch)
    client = fw.client(server.uri, event_listeners=[Writes()])
    coll = client.motor_test[f"bulk_runs_{fw.name}"]
    await coll.drop()
    result = await coll.bulk_write(
        [InsertOne({"_id": i}) for i in range(3)]
        + [UpdateOne({"_id": i}, {"$set": {"u": 1}}) for i in range(3)]
        + [DeleteOne({"_id": i}) for i in range(2)]
    )
    assert (result.inserted_count, result.modified_count, result.deleted_count) == (3, 3, 2)
    assert commands == [("insert", 3), ("update", 3), ("delete", 2)]
    # Within a run, the sizes still follow the encoding time.
    commands.clear()
    await coll.insert_many([{"i": i} for i in range(4)])
    assert commands == [("insert", 4)]
    pieces.clear()
    await coll.bulk_write([InsertOne({"i": i}) for i in range(1003)])
    if joined:
        assert pieces == [1000, 1, 1, 1]
        assert commands[1:] == [("insert", 1003)]
    else:
        assert commands[1:] == [("insert", 1000), ("insert", 1), ("insert", 1), ("insert", 1)]


def _writes_losing_a_reply(mockup: Any, lost: int) -> tuple[Any, list[tuple[int, int, int]]]:
    """The primary of a one-member replica set that records each insert and update
    command (transaction number, first ``_id``, documents) and hangs up on the ``lost``-th
    instead of answering: received, and maybe applied, the case retries exist for."""
    server = replica_set_member(mockup)
    sent: list[tuple[int, int, int]] = []

    def respond(request: Any) -> bool:
        if request.command_name not in ("insert", "update"):
            return False  # the member's standing replies
        items = request.doc.get("documents") or request.doc.get("updates")
        first = items[0]["_id"] if "_id" in items[0] else items[0]["q"]["_id"]
        sent.append((request.doc["txnNumber"], first, len(items)))
        if len(sent) == lost:
            request.hangup()
            return True
        return bool(request.ok(n=len(items), nModified=len(items)))

    server.autoresponds(respond)
    return server, sent


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "commands"])
@pytest.mark.parametrize("count", [600, 1500], ids=["on-the-loop", "in-a-thread"])
@pytest.mark.parametrize("method", ["bulk_write", "insert_many"])
async def test_a_retried_command_carries_the_documents_of_the_failed_one(
    fw: Framework,
    mockup: Any,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    count: int,
    joined: bool,
) -> None:
    """A retryable write's retry has the transaction number and the statements of the
    attempt that failed (the server may have applied it): the same documents, however long
    the failed command took to encode, or those past the retry's end would go in the next
    command under a new transaction number, and be applied twice."""
    server, sent = _writes_losing_a_reply(mockup, 1)
    # Every command seems to take 10 s to encode: without the failed command's count,
    # the retry would carry one document.
    monkeypatch.setattr(green_bulk, "_thread_time", _Clock(10.0))
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", joined)
    pieces = _pieces(monkeypatch)
    client = fw.client(server.uri, directConnection=True)
    coll = client.db.coll
    if method == "bulk_write":
        ops = [UpdateOne({"_id": i}, {"$inc": {"x": 1}}) for i in range(count)]
        await coll.bulk_write(ops)
    else:
        await coll.insert_many([{"_id": i} for i in range(count)])
    if joined:
        # One command, of one-document pieces after the first: the retry is the same.
        assert sent == [(1, 0, count), (1, 0, count)]
        first = min(count, green_bulk.GREEN_WRITE_BATCH)
        assert pieces == 2 * ([first] + [1] * (count - first))
        return
    first = min(count, green_bulk.GREEN_WRITE_BATCH)
    assert sent[0] == (1, 0, first)
    assert sent[1] == sent[0]  # the retry
    # The rest, each statement once, under new transaction numbers.
    assert sum(n for _, _, n in sent[2:]) == count - first
    if count == first:
        return
    assert sent[2][:2] == (2, 1000)
    assert [first for _, first, _ in sent[2:]] == list(
        itertools.accumulate([1000] + [n for _, _, n in sent[2:-1]])
    )


async def test_a_retry_encodes_large_values_as_the_failed_command_did(
    fw: Framework, mockup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry is encoded as the command that failed was, large values included: a
    command that followed small documents carried its 300 KB values in its own bytes
    (inline, up to maxMessageSize), and a retry that spliced them instead (fewer fit in a
    message then) carried fewer documents, the rest going under a new transaction number."""
    server, sent = _writes_losing_a_reply(mockup, 3)
    # Encoding seems to take no time: each command may be 8 times the one before.
    monkeypatch.setattr(green_bulk, "_thread_time", lambda: 0.0)
    monkeypatch.setattr(green_bulk, "JOIN_PIECES", False)
    client = fw.client(server.uri, directConnection=True)
    values = ["s" * 15_000] * 610 + ["L" * 300_000] * 140
    await client.db.coll.insert_many([{"_id": i, "v": v} for i, v in enumerate(values)])
    assert len(sent[2]) == 3 and sent[2][2] > 105  # more large values than a spliced command holds
    assert sent[3] == sent[2]  # the retry
    assert sum(n for _, _, n in sent) - sent[3][2] == len(values)


async def test_a_small_insert_many_is_one_command_on_the_loop(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands: list[int] = []

    class Threads(_Inserts):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "insert":
                commands.append(threading.get_ident())

    sleeps: list[float] = []
    monkeypatch.setattr(green_bulk, "_sleep", sleeps.append)
    client = fw.client(server.uri, event_listeners=[Threads()])
    coll = client.motor_test[f"bulk_small_{fw.name}"]
    await coll.drop()
    limit = metaprogramming.BULK_IN_THREAD
    await coll.insert_many([{"i": i} for i in range(limit)])
    assert commands == [threading.get_ident()]
    assert sleeps == []  # no lock to hand over on the loop's thread


@pytest.mark.parametrize(("step", "expected"), [(1.0, 6), (0.0, 0)], ids=["due", "not-due"])
async def test_a_threaded_insert_many_hands_the_lock_over(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, step: float, expected: int
) -> None:
    sleeps: list[float] = []
    real_sleep = green_bulk._sleep

    def counted(seconds: float) -> None:
        sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(green_bulk, "_sleep", counted)
    monkeypatch.setattr(green_bulk, "HAND_OVER_SECONDS", 1.0)
    monkeypatch.setattr(green_bulk, "_perf_counter", _Clock(step))
    coll = fw.client(server.uri).motor_test[f"bulk_hand_over_{fw.name}"]
    await coll.drop()
    count = 3 * green_bulk.HAND_OVER_STEP
    assert count > metaprogramming.BULK_IN_THREAD
    await coll.insert_many([{"i": i} for i in range(count)])
    # Due at every look: after each of the three steps of preparation, before the piece
    # of documents checked ahead of the first command (those past its 1,000), then
    # between the three steps the writer walks.
    assert sleeps == [0] * expected
    assert await coll.count_documents({}) == count


def test_the_connection_s_own_limit_comes_back_when_encoding_fails() -> None:
    class Conn:
        max_write_batch_size = green_bulk.GREEN_WRITE_BATCH
        max_message_size = 48_000_000
        max_bson_size = 16 * 1024 * 1024
        compression_context = None

    seen: list[tuple[int, int]] = []

    class Context:
        conn = Conn()
        op_type = pymongo.message._INSERT

        def batch_command(self, cmd: Any, ops: Any) -> Any:
            seen.append((self.conn.max_write_batch_size, self.conn.max_message_size))
            raise DocumentTooLarge("too large")

    writer = GreenBulk.__new__(GreenBulk)
    with pytest.raises(DocumentTooLarge):
        writer._green_encode(Context(), {}, iter([{}]), 100_000)
    # Tried under the first command's byte cap, then alone under the server's limit.
    assert seen == [(100_000, green_bulk.FIRST_COMMAND_BYTES), (100_000, 48_000_000)]
    assert Context.conn.max_write_batch_size == green_bulk.GREEN_WRITE_BATCH
    assert Context.conn.max_message_size == 48_000_000


@pytest.mark.parametrize("count", [5, 1500], ids=["on-the-loop", "in-a-thread"])
async def test_insert_many_keeps_no_object_per_document(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    referrers: list[set[str]] = []
    write_command = GreenBulk.write_command

    def looking(
        self: Any, bwc: Any, cmd: Any, request_id: int, msg: Any, docs: Any, client: Any
    ) -> Any:
        if not referrers:
            referrers.append({type(r).__name__ for r in gc.get_referrers(docs[0])})
        return write_command(self, bwc, cmd, request_id, msg, docs, client)

    monkeypatch.setattr(GreenBulk, "write_command", looking)
    coll = fw.client(server.uri).motor_test[f"bulk_referrers_{fw.name}"]
    await coll.drop()
    await coll.insert_many([{"i": i} for i in range(count)])
    assert referrers and "tuple" not in referrers[0], referrers

    # PyMongo's own insert_many (same writer) keeps an (op, document) pair per document.
    referrers.clear()
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    try:
        sync.motor_test[f"bulk_referrers_sync_{fw.name}"].insert_many([{"i": 0}])
    finally:
        sync.close()
    assert "tuple" in referrers[0]


async def _outcome(call: Any) -> tuple[str, str]:
    try:
        result = call()
        if asyncio.isfuture(result) or asyncio.iscoroutine(result):
            result = await result
    except Exception as exc:  # the outcome, raised or returned, is what is compared
        return type(exc).__name__, str(exc)
    return type(result).__name__, repr(getattr(result, "acknowledged", None))


@pytest.mark.parametrize("count", [3, 1500], ids=["on-the-loop", "in-a-thread"])
async def test_insert_many_results_and_errors_are_pymongo_s(
    fw: Framework, server: Any, count: int
) -> None:
    coll = fw.client(server.uri).motor_test[f"bulk_errors_{fw.name}"]
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    sync_coll = sync.motor_test[f"bulk_errors_sync_{fw.name}"]
    try:
        cases: list[Any] = [
            lambda: {"a": 1},
            lambda: [],
            lambda: 5,
            lambda: iter([]),
            lambda: [{"a": i} for i in range(count)] + [5],
            lambda: [{"a": i} for i in range(count)],
            lambda: ({"a": i} for i in range(count)),
        ]
        for make in cases:
            await coll.drop()
            sync_coll.drop()
            ours = await _outcome(lambda make=make: coll.insert_many(make()))
            theirs = await _outcome(
                lambda make=make: asyncio.to_thread(sync_coll.insert_many, make())
            )
            assert ours == theirs
            # Nothing is sent when a document is refused.
            assert await coll.count_documents({}) == await asyncio.to_thread(
                sync_coll.count_documents, {}
            )
    finally:
        sync.close()


class _Unencodable:
    """A value no encoder takes (its repr is the same in every run)."""

    def __repr__(self) -> str:
        return "<unencodable>"


@pytest.mark.parametrize("count", [3, 1500, 30_000], ids=["on-the-loop", "in-a-thread", "30k"])
@pytest.mark.parametrize("write", ["ordered", "unordered", "bulk_write", "unacknowledged"])
async def test_a_document_the_encoder_refuses_stops_the_write_before_anything_is_sent(
    fw: Framework, server: Any, count: int, write: str
) -> None:
    # PyMongo encodes a whole command (up to maxWriteBatchSize documents) before it sends
    # it, so a document its encoder refuses leaves nothing written.  Motor's commands are
    # smaller: the documents after its first one are checked before it is sent.
    client = fw.client(server.uri)
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri)
    try:
        coll = client.motor_test[f"bulk_refused_{fw.name}"]
        sync_coll = sync.motor_test[f"bulk_refused_{fw.name}_sync"]

        def make() -> list[Any]:
            documents: list[Any] = [{"_id": i, "s": "x" * 20} for i in range(count)]
            documents.insert(count - 1, {"_id": "bad", "v": _Unencodable()})
            return documents

        def write_to(target: Any) -> Any:
            if write == "bulk_write":
                return target.bulk_write([InsertOne(d) for d in make()])
            if write == "unacknowledged":
                target = target.with_options(write_concern=WriteConcern(w=0))
            return target.insert_many(make(), ordered=write != "unordered")

        await coll.drop()
        await asyncio.to_thread(sync_coll.drop)
        ours = await _outcome(lambda: write_to(coll))
        theirs = await _outcome(lambda: asyncio.to_thread(write_to, sync_coll))
        assert ours == theirs
        assert ours[0] == "InvalidDocument"
        if write == "unacknowledged":
            # Time for an unacknowledged command, had one been sent, to be applied.
            await asyncio.sleep(0.2)
        assert await coll.count_documents({}) == 0
        assert await asyncio.to_thread(sync_coll.count_documents, {}) == 0
        # The client goes on.
        assert (await coll.insert_many([{"_id": "after"}])).inserted_ids == ["after"]
    finally:
        sync.close()


@pytest.mark.parametrize("bound", ["maxWriteBatchSize", "maxMessageSizeBytes"])
async def test_a_refused_document_after_pymongo_s_command_lets_that_command_go(
    fw: Framework, mockup: Any, bound: str
) -> None:
    # With a server limit of 1,200 documents or 3,000,000 bytes per command, PyMongo sends
    # its first command and then refuses a document as it encodes its second: Motor sends
    # the same documents (in commands of its own), and raises the same error; with the
    # refused document in PyMongo's first command, neither sends anything.
    def server_receiving(received: list[list[int]]) -> Any:
        server = mockup(auto_ismaster=None)
        hello = {
            "ismaster": True,
            "isWritablePrimary": True,
            "minWireVersion": 0,
            "maxWireVersion": 21,
            bound: 1200 if bound == "maxWriteBatchSize" else 3_000_000,
        }
        standing = standing_replies(hello)

        def respond(request: Any) -> bool:
            if request.command_name == "insert":
                documents = request.doc["documents"]
                received.append([d["_id"] for d in documents])
                return bool(request.ok(n=len(documents)))
            return standing(request)

        server.autoresponds(respond)
        return server

    def make(refused: int | None) -> list[Any]:
        documents: list[Any] = [{"_id": i, "s": "x" * 1000} for i in range(6000)]
        if refused is not None:
            documents[refused] = {"_id": refused, "v": _Unencodable()}
        return documents

    def sync_insert(uri: str, refused: int | None) -> tuple[str, str]:
        client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
        try:
            client.db.coll.insert_many(make(refused))
        except Exception as exc:
            return type(exc).__name__, str(exc)
        finally:
            client.close()
        return "returned", ""

    # Where PyMongo's first command ends.
    commands: list[list[int]] = []
    await in_thread(sync_insert, server_receiving(commands).uri, None)
    first = len(commands[0])
    assert first == 1200 or 2000 < first < 3000
    for refused in (first - 1, first, first + 1):
        ours: list[list[int]] = []
        coll = fw.client(server_receiving(ours).uri).db.coll
        outcome = await _outcome(lambda c=coll, r=refused: c.insert_many(make(r)))
        theirs: list[list[int]] = []
        assert outcome == await in_thread(sync_insert, server_receiving(theirs).uri, refused)
        assert outcome[0] == "InvalidDocument"
        sent = [i for command in ours for i in command]
        assert sent == [i for command in theirs for i in command]
        # PyMongo encodes the document after its command's last to measure it: refused
        # there, it too stops the command (not when the document count ends it).
        next_one = first + (1 if bound == "maxMessageSizeBytes" else 0)
        assert sent == (list(range(first)) if refused >= next_one else []), (
            refused,
            first,
            len(sent),
        )


class _LimitedConnection:
    """What PyMongo's bulk write context reads of a connection: its limits, compression."""

    def __init__(self, max_message_size: int, compression: Any) -> None:
        self.max_message_size = max_message_size
        self.max_bson_size = 16 * 1024 * 1024
        self.max_write_batch_size = green_bulk.GREEN_WRITE_BATCH
        self.compression_context = compression


def _context(limit: int, compressed: bool, op_type: int) -> tuple[Any, Any]:
    """A bulk write context of ``op_type`` on a connection of ``limit`` (maxMessageSize),
    and that connection."""
    conn = _LimitedConnection(limit, ZlibContext(-1) if compressed else None)
    context: Any = pymongo.message._BulkWriteContext
    return context("db", "insert", conn, None, None, None, op_type, DEFAULT_CODEC_OPTIONS), conn


def _pymongo_command(bwc: Any, command: Any, docs: list[Any]) -> Any:
    """PyMongo's first command of ``docs`` (request id, message, documents)."""
    bwc.conn.max_write_batch_size = 100_000
    try:
        return bwc.batch_command(dict(command), list(docs))
    finally:
        bwc.conn.max_write_batch_size = green_bulk.GREEN_WRITE_BATCH


def _writer(op_type: int, docs: list[Any]) -> tuple[GreenBulk, Any]:
    """A bulk writer whose current run is ``docs``, and that run."""
    writer = GreenBulk.__new__(GreenBulk)
    run = _Run(op_type)
    for index, document in enumerate(docs):
        run.add(index, document)
    writer.current_run = run  # type: ignore[assignment]
    return writer, run


@pytest.mark.parametrize("mode", ["plain", "compressed", "joined"])
@pytest.mark.parametrize(
    "kind", ["small inserts", "large values", "updates", "deletes", "unacknowledged"]
)
def test_documents_are_checked_up_to_where_pymongo_s_command_ends(
    kind: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # maxMessageSize binds: the documents checked ahead end where PyMongo's first command
    # would (its uncompressed size, its limit less 16 bytes on a compressed connection),
    # whether their large values are spliced or not.  Joined, the first command is
    # PyMongo's message but for the request id, made of pieces of 1,000 documents (or
    # 1 MiB), the last ones of one document each.
    monkeypatch.setattr(green_bulk, "ENCODE_SECONDS_IN_THREAD", 1.0)
    monkeypatch.setattr(green_bulk, "_thread_time", _Clock(1.0))
    op_type = {"updates": pymongo.message._UPDATE, "deletes": pymongo.message._DELETE}.get(
        kind, pymongo.message._INSERT
    )
    docs: list[Any]
    if kind == "large values":
        limit = 20_000_000
        docs = [{"_id": i, "s": "y" * (300 * 1024), "b": b"z" * 70_000} for i in range(200)]
    elif kind == "updates":
        limit = 3_000_000
        docs = [{"q": {"_id": i}, "u": {"$set": {"s": "x" * 1000}}} for i in range(6000)]
    elif kind == "deletes":
        limit, docs = 3_000_000, [{"q": {"s": "x" * 1000}, "limit": 0} for _ in range(6000)]
    else:
        limit, docs = 3_000_000, [{"_id": i, "s": "x" * (1000 + i % 7)} for i in range(6000)]
    name = {pymongo.message._UPDATE: "update", pymongo.message._DELETE: "delete"}
    command: dict[str, Any] = {name.get(op_type, "insert"): "c", "ordered": True}
    ack = kind != "unacknowledged"
    if not ack:
        command["writeConcern"] = {"w": 0}
    bwc, conn = _context(limit, mode == "compressed", op_type)
    expected = _pymongo_command(bwc, command, docs)
    assert len(expected[2]) < len(docs)

    writer, run = _writer(op_type, docs)
    pieces = _pieces(monkeypatch)
    encoded = writer._green_encode(bwc, dict(command), iter(docs), 100_000)
    assert len(encoded[2]) < len(expected[2])
    if mode == "joined":
        _, msg, to_send = writer._green_join(bwc, dict(command), encoded, 100_000, ack)
        assert len(pieces) > 3 and pieces[-1] == 1 and sum(pieces) > len(to_send)
        assert type(msg) is splice.SplicedMessage
        got = bytes(msg)
        # PyMongo's message but for the request id (bytes 4 to 7).
        assert got[:4] + got[8:] == expected[1][:4] + expected[1][8:]
        assert to_send == expected[2]
    else:
        writer._green_check_ahead(bwc, dict(command), encoded, 100_000, ack)
    assert writer._green_checked == (run, len(expected[2]))
    assert (conn.compression_context is not None) == (mode == "compressed")


def _first_command(
    docs: list[Any],
    limit: int,
    compressed: bool,
    ack: bool,
    max_bson_size: int,
    joined: bool = False,
) -> tuple[Any, Any]:
    """(PyMongo's first command of ``docs``: its document count or its error; the same
    from Motor's first command and check ahead: where the checked documents end; or,
    ``joined``, from Motor's first command joined, whose message must be PyMongo's)."""

    def outcome(call: Any) -> Any:
        try:
            return "sent", call()
        except Exception as exc:  # the outcome, raised or returned, is what is compared
            return type(exc).__name__, str(exc)

    command: dict[str, Any] = {"insert": "c", "ordered": True}
    if not ack:
        command["writeConcern"] = {"w": 0}
    bwc, conn = _context(limit, compressed, pymongo.message._INSERT)
    conn.max_bson_size = max_bson_size
    message: list[bytes] = []

    def pymongo_s() -> int:
        _, msg, to_send = _pymongo_command(bwc, command, docs)
        message.append(msg)
        return len(to_send)

    theirs = outcome(pymongo_s)
    writer, run = _writer(pymongo.message._INSERT, docs)

    def ours() -> int:
        encoded = writer._green_encode(bwc, dict(command), iter(docs), 100_000)
        if joined:
            _, msg, to_send = writer._green_join(bwc, dict(command), encoded, 100_000, ack)
            assert writer._green_checked == (run, len(to_send))
            got = bytes(msg)
            # PyMongo's message, but for the request id (bytes 4 to 7).
            assert got[:4] + got[8:] == message[0][:4] + message[0][8:]
            assert to_send == docs[: len(to_send)]
            return len(to_send)
        writer._green_check_ahead(bwc, dict(command), encoded, 100_000, ack)
        assert writer._green_checked is not None
        return writer._green_checked[1]

    mine = outcome(ours)
    assert (conn.max_message_size, conn.max_write_batch_size) == (
        limit,
        green_bulk.GREEN_WRITE_BATCH,
    )
    assert (conn.compression_context is not None) == compressed and bwc.compress == compressed
    return theirs, mine


@pytest.mark.parametrize(
    ("case", "joined"),
    [
        ("compressed", False),
        ("exactly full", False),
        ("exactly full", True),
        ("unacknowledged", False),
        ("unacknowledged", True),
    ],
)
def test_a_refused_document_near_the_end_of_pymongo_s_command(case: str, joined: bool) -> None:
    # PyMongo's encoder encodes a document, raises if it refuses it, then ends its command
    # if it does not fit (it measures the one after the last); unacknowledged, it refuses
    # a document over maxBsonSize wherever its command reaches.  Motor's check raises or
    # not as PyMongo's encoder does, for a document refused just before, at and after
    # the end of PyMongo's first command.
    class Refused:
        def __repr__(self) -> str:
            return "<refused>"

    def documents(refused: int | None) -> list[Any]:
        docs: list[Any] = [{"_id": i, "s": "x" * 1000} for i in range(4000)]
        if refused is not None:
            if case == "unacknowledged":
                docs[refused] = {"_id": refused, "s": "x" * 6000}  # over maxBsonSize
            else:
                docs[refused] = {"_id": refused, "v": Refused()}
        return docs

    ack = case != "unacknowledged"
    max_bson_size = 5000 if case == "unacknowledged" else 16 * 1024 * 1024
    if case == "exactly full":
        # The first command's 1,000 documents fill maxMessageSize to the byte.
        conn = _LimitedConnection(48_000_000, None)
        context: Any = pymongo.message._BulkWriteContext
        bwc = context("db", "insert", conn, None, None, None, 0, DEFAULT_CODEC_OPTIONS)
        full = bwc.batch_command({"insert": "c", "ordered": True}, documents(None)[:1000])
        limits = [len(full[1])]
    elif case == "compressed":
        limits = [3_000_000 + 97 * step for step in range(12)]
    else:
        limits = [3_000_000]
    for limit in limits:
        compressed = case == "compressed"
        theirs, ours = _first_command(
            documents(None), limit, compressed, ack, max_bson_size, joined
        )
        assert theirs == ours
        end = theirs[1]
        for refused in (end - 1, end, end + 1, end + 2):
            theirs, ours = _first_command(
                documents(refused), limit, compressed, ack, max_bson_size, joined
            )
            assert theirs == ours, (limit, refused)


async def test_insert_many_gives_ids_as_pymongo_does(fw: Framework, server: Any) -> None:
    coll = fw.client(server.uri).motor_test[f"bulk_ids_{fw.name}"]
    await coll.drop()
    documents: list[Any] = [{"i": i} for i in range(1200)]
    documents[5]["_id"] = "mine"
    documents[7] = RawBSONDocument(bson.encode({"_id": "raw", "i": 7}))
    result = await coll.insert_many(documents)
    # RawBSONDocuments get no entry, as with PyMongo; the others get theirs, in order.
    assert len(result.inserted_ids) == 1199
    assert result.inserted_ids[5] == "mine"
    assert all(type(i) is ObjectId for i in result.inserted_ids[6:])
    assert [d["_id"] for d in documents if not isinstance(d, RawBSONDocument)] == list(
        result.inserted_ids
    )
    assert await coll.count_documents({}) == 1200
    assert await coll.count_documents({"_id": "raw"}) == 1


@pytest.mark.parametrize("count", [10, 2500], ids=["on-the-loop", "in-a-thread"])
async def test_insert_many_unordered_and_unacknowledged(
    fw: Framework, server: Any, count: int
) -> None:
    coll = fw.client(server.uri).motor_test[f"bulk_unordered_{fw.name}"]
    await coll.drop()
    documents = [{"_id": i} for i in range(count)] + [{"_id": 3}, {"_id": count}]
    with pytest.raises(BulkWriteError) as raised:
        await coll.insert_many(documents, ordered=False)
    assert raised.value.details["nInserted"] == count + 1
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [count]
    assert await coll.count_documents({}) == count + 1

    await coll.drop()
    unacknowledged = coll.with_options(write_concern=WriteConcern(w=0))
    result = await unacknowledged.insert_many([{"_id": i} for i in range(count)])
    assert not result.acknowledged
    for _ in range(500):
        if await coll.count_documents({}) == count:
            break
        await asyncio.sleep(0.01)
    assert await coll.count_documents({}) == count


def test_internals_check_reports_bulk_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert green_bulk.check_pymongo_internals() == []
    bulk_cls = pymongo.synchronous.bulk._Bulk

    def execute_batch(self: Any, context: Any, cmd: Any, ops: Any, client: Any) -> Any:
        return None

    monkeypatch.setattr(bulk_cls, "_execute_batch", execute_batch)
    problems = green_bulk.check_pymongo_internals()
    assert any("_Bulk._execute_batch(bwc, cmd, ops, client) changed" in p for p in problems)


def test_a_plain_pymongo_client_keeps_pymongo_s_batches(server: Any) -> None:
    green_pool.install()
    inserts = _Inserts()
    sync: pymongo.MongoClient[Any] = pymongo.MongoClient(server.uri, event_listeners=[inserts])
    try:
        coll = sync.motor_test.bulk_plain
        coll.drop()
        coll.insert_many([{"i": i} for i in range(2500)])
        assert inserts.sizes == [2500]
        assert coll.count_documents({}) == 2500
    finally:
        sync.close()


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "zlib"])
async def test_pieces_are_joined_unless_the_connection_compresses(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, compressed: bool
) -> None:
    # Pieces of 1,000 documents: one command, PyMongo's, on a plain connection; on one
    # that compresses (PyMongo compresses a message whole), a command per piece.
    monkeypatch.setattr(green_bulk, "ENCODE_SECONDS_IN_THREAD", 1.0)
    monkeypatch.setattr(green_bulk, "_thread_time", _Clock(1.0))
    inserts = _Inserts()
    with FaultProxy((server.host, server.port), compression=True) as proxy:
        options = {"compressors": "zlib"} if compressed else {}
        client = fw.client(proxy.uri, event_listeners=[inserts], **options)
        coll = client.motor_test[f"bulk_joined_{fw.name}_{compressed}"]
        await coll.drop()
        result = await coll.insert_many([{"_id": i, "s": "x" * 100} for i in range(3000)])
        assert result.inserted_ids == list(range(3000))
        assert inserts.sizes == ([1000, 1000, 1000] if compressed else [3000])
        assert sorted(await coll.distinct("_id")) == list(range(3000))
