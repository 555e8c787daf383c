"""Cancellation storms: thousands of operations of every kind, cancelled at random points.

Against the real test server, :func:`storm` starts ``OPS`` operations concurrently (reads,
writes, cursors iterated in small batches, ``to_list``, aggregations, ``count_documents``,
~1 MB inserts, GridFS uploads and downloads) and cancels most of them at random points
chosen by a seeded RNG (``SEED``; a failure names it, so it reproduces): at once (queued
in Motor's admission queue), after a random delay (parked on a pooled connection, on a
read, mid-send, between the batches of a cursor), or in bursts of about a hundred at the
same instant.  The rest run to completion.

Afterwards: every operation ended; each one not cancelled succeeded; every acknowledged
insert is in the collection; the pool is idle; no greenlet is parked; admission has no
slot taken; 100 normal operations succeed; and once the client is closed the process has
exactly the file descriptors it had before.  With ``maxPoolSize=5`` most operations wait
in admission when they are cancelled.  :func:`test_burst_of_cancellations_of_parked_reads`
cancels 200 operations waiting for a MockupDB reply in one go and checks the same.

What keeps the loop running through a storm is the hub's work budget: it runs children
for at most ``WORK_BUDGET`` per loop iteration and queues the rest.  The storm asserts
that the budget held by a count that a slow machine cannot inflate: at most
``MAX_RUNS_PER_ITERATION`` child runs in one loop iteration, during the storm and after
it.  The loop thread's CPU between two 1 ms ticks of the probe is measured and printed
(the whole gap's, the application's task steps included, and the driver's children's
share, see :class:`~test.framework.LoopProbe`); it is not asserted here, because the
storm's 20 s of work on 3,000 tasks is where a slow spell of the virtual machine's host
shows (a clean-clone run measured its gaps at 5-15 times their usual CPU time, the
test's own pure-Python canceller included), and
:func:`test_burst_of_cancellations_of_parked_reads` asserts both.  As in the fault
suite, the cyclic garbage collector is off while
measuring (its pauses are the interpreter's and land in whichever gap allocates last;
their cost is printed), and the application's own share of a gap is kept small: the
canceller cancels at most ``MAX_PER_TICK`` operations per tick and the launcher starts
``LAUNCH_BATCH`` per loop iteration.  The test's bookkeeping is left out of the measure
(:meth:`LoopProbe.uncounted <test.framework.LoopProbe.uncounted>`): choosing what to
cancel (walking the frames of hundreds of tasks on every tick, 1-2.5 ms) and creating
the tasks; the cancellations and the tasks' steps, which call Motor, count.

FerretDB 1.24 (the default test server) closes a cursor when the connection that opened it
closes, where MongoDB keeps it for any connection.  A cancellation that interrupts an
operation mid-read closes that connection, as it must, so on FerretDB the ``getMore`` of
another operation's cursor opened on it can fail with ``CursorNotFound``, with FerretDB's
``InternalError`` naming the connection's end or a cancelled context, or succeed with a
last batch and cursor id 0 that ends the cursor early without an error (sync PyMongo gets
the same: four threads reading 120 such cursors while the opening connections closed saw
96 ``CursorNotFound``, 21 ``InternalError`` and 3 cursors cut short at 28-63 of 200
documents).  On FerretDB only, only for cursors iterated in several batches, and only when
the storm closed connections, those outcomes are counted (``ferretdb_cursor_losses``)
instead of failing the test; a cursor cut short must still have returned a prefix of the
collection sorted by ``_id``, no batch lost or repeated.

Cancellation has no sync PyMongo counterpart (a thread cannot be cancelled), so there is
no oracle run here; what matters is that nothing leaks, nothing is lost and every
operation that was not cancelled ends as it would have without the storm.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import heapq
import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pymongo.errors import OperationFailure

import motor.motor_asyncio
import motor.motor_tornado
from motor.green.hub import OpFuture
from test.framework import (
    MAX_RUNS_PER_ITERATION,
    ClosedConnections,
    Framework,
    assert_no_stall,
    fds_back_to,
    open_fds,
    parked_children,
    pool_counters,
)
from test.scripted import MAX_BUSY

SEED = int(os.environ.get("MOTOR_STORM_SEED", "20260613"))
OPS = 3000
# Operations started per loop iteration while launching (all of them run concurrently).
# Starting one costs the application (the task, its first step, asyncio.wait's
# bookkeeping) about 25 us of the loop thread here, in the iteration that starts it.
LAUNCH_BATCH = 50
# Documents in the collection the reads use.
READ_DOCS = 200
BIG = 1024 * 1024
# Bounds: a hang fails, a slow machine does not.
STORM_TIMEOUT = 45.0
SETTLE_TIMEOUT = 10.0

# Operation kinds and their weights.
KINDS = {
    "find_one": 12,
    "insert_one": 14,
    "update_one": 9,
    "delete_one": 7,
    "cursor": 10,
    "to_list": 10,
    "aggregate": 8,
    "count_documents": 8,
    "large_insert": 2,
    "gridfs_upload": 2,
    "gridfs_download": 3,
}
# When each operation is cancelled, and with what weight: "never" runs to completion;
# "at_once" is cancelled on the first tick after it started (it waits for admission);
# "early" after a short random delay, "spread" at a random point of the whole storm;
# "burst" together with about a hundred others at one of BURSTS instants; "on_state" as
# soon as it is seen parked in the state drawn for it (STATES).
PLANS = {"never": 20, "at_once": 10, "early": 25, "spread": 25, "burst": 12, "on_state": 8}
BURSTS = 3
STATES = ("read", "send", "pool")
# The canceller cancels at most this many operations per 1 ms tick.  The application's
# own side of a cancellation (Task.cancel, the cancelled task's last step, asyncio.wait's
# bookkeeping) costs about 15 us of the loop thread here, all of it in the gap of the
# probe that follows the tick: it must stay well under MAX_BUSY for the probe to
# measure Motor's share (300 at once cost 5-7 ms; 100 cost 1.5 ms).  A burst larger
# than this spans several ticks; test_burst_of_cancellations_of_parked_reads cancels
# 200 operations in one call.
MAX_PER_TICK = 100


@dataclass
class Storm:
    """What a storm did: per operation, its kind, plan and outcome."""

    seed: int
    kinds: list[str] = field(default_factory=list)
    plans: list[str] = field(default_factory=list)
    # Where each cancelled operation was when it was cancelled (see where()).
    cancelled_at: collections.Counter[str] = field(default_factory=collections.Counter)
    acknowledged: list[Any] = field(default_factory=list)
    errors: list[tuple[str, str, BaseException]] = field(default_factory=list)
    not_cancelled_ok: int = 0
    cancelled: int = 0
    busy_during_storm: float = 0.0
    # The second most loop-thread CPU in one gap, and the most the driver's children ran
    # in one (see LoopProbe).
    second_busy_during_storm: float = 0.0
    driver_during_storm: float = 0.0
    # The most child runs (switches into a child) in one loop iteration.
    runs_per_iteration: int = 0
    gap_during_storm: float = 0.0
    largest_burst: int = 0
    # The loop-thread CPU of the canceller's busiest tick (the test's own share of a gap).
    canceller_max_tick: float = 0.0
    ferretdb_cursor_losses: int = 0
    connections_closed: int = 0

    def summary(self) -> str:
        return (
            f"seed={self.seed} ops={len(self.kinds)} cancelled={self.cancelled} "
            f"completed={self.not_cancelled_ok} largest_burst={self.largest_burst} "
            f"busy={self.busy_during_storm * 1000:.2f} ms "
            f"(second {self.second_busy_during_storm * 1000:.2f} ms, "
            f"the driver's children {self.driver_during_storm * 1000:.2f} ms, at most "
            f"{self.runs_per_iteration} child runs in one loop iteration) "
            f"(canceller's own busiest tick {self.canceller_max_tick * 1000:.2f} ms) "
            f"connections_closed={self.connections_closed} "
            f"ferretdb_cursor_losses={self.ferretdb_cursor_losses} "
            f"where={dict(self.cancelled_at)}"
        )


def where(task: asyncio.Task[Any], admission_waiting: Callable[[], set[int]]) -> str:
    """Where a task's Motor operation is right now (before it is cancelled).

    "admission": waiting for an admission slot (no greenlet yet); "queued": admitted and
    waiting for a loop iteration to start; "pool": parked for a pooled connection or
    server selection; "send": parked mid-send; "read": parked waiting for a reply;
    "between": not waiting on an operation (between two operations of a cursor or a
    GridFS transfer, or not started).
    """
    waiter = task._fut_waiter  # type: ignore[attr-defined]
    if not isinstance(waiter, OpFuture):
        return "between"
    try:
        child = waiter._motor_child
    except AttributeError:
        return "admission" if id(waiter) in admission_waiting() else "queued"
    if child is None:
        return "between"
    frame = child.gr_frame
    while frame is not None:
        name = frame.f_code.co_name
        if name in ("sendall", "_send_from"):
            return "send"
        if name in ("_wait_readable", "recv_within", "receive_message"):
            return "read"
        if name in ("wait", "wait_for") and frame.f_code.co_filename.endswith("sync.py"):
            return "pool"
        frame = frame.f_back
    return "other"


class Ops:
    """The operations of a storm, on one client; ``run(kind, n)`` is operation ``n``."""

    def __init__(self, fw: Framework, client: Any, name: str) -> None:
        self.db = client[name]
        self.reads = self.db.reads
        self.writes = self.db.writes
        self.big = self.db.big
        module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
        bucket_class = (
            module.AsyncIOMotorGridFSBucket if fw.name == "asyncio" else module.MotorGridFSBucket
        )
        self.bucket = bucket_class(self.db)
        self.file_id: Any = None
        self.big_payload = b"\x01" * BIG
        self.file_payload = os.urandom(200 * 1024)

    async def prepare(self) -> None:
        await self.db.client.drop_database(self.db.name)
        await self.reads.insert_many([{"_id": i, "k": i % 10} for i in range(READ_DOCS)])
        # Targets of updates and deletes, apart from the inserts checked afterwards.
        await self.writes.insert_many([{"_id": f"victim-{i}", "victim": i} for i in range(500)])
        self.file_id = await self.bucket.upload_from_stream("shared", self.file_payload)

    async def run(self, kind: str, n: int, storm: Storm) -> Any:
        if kind == "find_one":
            return await self.reads.find_one({"_id": n % READ_DOCS})
        if kind == "insert_one":
            await self.writes.insert_one({"_id": f"op-{n}", "n": n})
            storm.acknowledged.append(f"op-{n}")
            return None
        if kind == "update_one":
            return await self.writes.update_one({"victim": n % 500}, {"$set": {"seen": n}})
        if kind == "delete_one":
            return await self.writes.delete_one({"victim": n % 500})
        if kind == "cursor":
            ids = [d["_id"] async for d in self.reads.find({}, batch_size=7, sort=[("_id", 1)])]
            if len(ids) != READ_DOCS:
                raise ShortCursor(ids)
            assert ids == list(range(READ_DOCS)), ids
            return len(ids)
        if kind == "to_list":
            docs = await self.reads.find({"k": n % 10}).to_list(None)
            assert len(docs) == READ_DOCS // 10
            return docs
        if kind == "aggregate":
            cursor = self.reads.aggregate([{"$match": {"k": n % 10}}, {"$limit": 5}])
            return await cursor.to_list(None)
        if kind == "count_documents":
            assert await self.reads.count_documents({"k": n % 10}) == READ_DOCS // 10
            return None
        if kind == "large_insert":
            await self.big.insert_one({"_id": f"big-{n}", "blob": self.big_payload})
            storm.acknowledged.append(f"big-{n}")
            return None
        if kind == "gridfs_upload":
            await self.bucket.upload_from_stream_with_id(
                f"file-{n}", f"file-{n}", self.file_payload[: 64 * 1024]
            )
            storm.acknowledged.append(f"file-{n}")
            return None
        if kind == "gridfs_download":
            out = io.BytesIO()
            await self.bucket.download_to_stream(self.file_id, out)
            assert out.getvalue() == self.file_payload
            return None
        raise AssertionError(kind)

    async def normal_operations(self, count: int) -> None:
        """``count`` ordinary operations after the storm: all must succeed."""

        async def one(i: int) -> None:
            kind = i % 4
            if kind == 0:
                assert await self.reads.find_one({"_id": i % READ_DOCS}) is not None
            elif kind == 1:
                await self.writes.insert_one({"_id": f"after-{i}"})
            elif kind == 2:
                docs = await self.reads.find({"k": i % 10}).to_list(None)
                assert len(docs) == READ_DOCS // 10
            else:
                assert await self.reads.count_documents({}) == READ_DOCS

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), SETTLE_TIMEOUT)
        assert await self.writes.count_documents({"_id": {"$regex": "^after-"}}) == count // 4


async def storm(fw: Framework, client: Any, ops: Ops, seed: int, ferretdb: bool = False) -> Storm:
    """Start OPS operations, cancel most of them at random points, wait for all to end."""
    rng = random.Random(seed)
    result = Storm(seed)
    loop = asyncio.get_running_loop()
    binding = client._binding
    kinds, weights = zip(*KINDS.items())
    plan_names, plan_weights = zip(*PLANS.items())
    result.kinds = rng.choices(kinds, weights, k=OPS)
    result.plans = rng.choices(plan_names, plan_weights, k=OPS)
    burst_times = sorted(rng.uniform(0.005, 0.25) for _ in range(BURSTS))
    # (delay after the launch began, operation index), for the canceller.
    deadlines: list[tuple[float, int]] = []
    # Operations cancelled once seen in a state: index -> the state.
    watched: dict[int, str] = {}
    for n, plan in enumerate(result.plans):
        if plan == "at_once":
            deadlines.append((0.0, n))
        elif plan == "early":
            deadlines.append((min(rng.expovariate(1 / 0.05), 1.0), n))
        elif plan == "spread":
            deadlines.append((rng.uniform(0.0, 1.5), n))
        elif plan == "burst":
            deadlines.append((rng.choice(burst_times), n))
        elif plan == "on_state":
            state = "send" if result.kinds[n] == "large_insert" else rng.choice(STATES)
            watched[n] = state
    heapq.heapify(deadlines)

    tasks: list[asyncio.Task[Any] | None] = [None] * OPS
    cancel_requested = [False] * OPS
    waiting_ids: list[set[int] | None] = [None]

    def admission_waiting() -> set[int]:
        # Futures waiting for admission (computed once per canceller tick).
        ids = waiting_ids[0]
        if ids is None:
            ids = waiting_ids[0] = {id(entry[3]) for entry in binding._waiting}
        return ids

    def cancel(n: int, task: asyncio.Task[Any], state: str) -> None:
        result.cancelled_at[state] += 1
        cancel_requested[n] = True
        task.cancel()

    def choose(now: float) -> list[tuple[int, asyncio.Task[Any], str]]:
        # The operations to cancel on this tick, and where each one is.
        waiting_ids[0] = None
        chosen: list[tuple[int, asyncio.Task[Any], str]] = []
        while deadlines and deadlines[0][0] <= now and len(chosen) < MAX_PER_TICK:
            _, n = heapq.heappop(deadlines)
            task = tasks[n]
            if task is None:  # not launched yet: try again on a later tick
                heapq.heappush(deadlines, (now + 0.001, n))
                break
            if task.done():
                result.cancelled_at["done before cancel"] += 1
                continue
            chosen.append((n, task, where(task, admission_waiting)))
        for n, state in list(watched.items()):
            task = tasks[n]
            if task is None:
                continue
            if task.done():
                del watched[n]
                continue
            if len(chosen) < MAX_PER_TICK and where(task, admission_waiting) == state:
                del watched[n]
                chosen.append((n, task, state))
        return chosen

    async def canceller(start: float) -> None:
        while deadlines or watched:
            await asyncio.sleep(0.001)
            tick_cpu = time.thread_time()
            # Choosing walks the frames of hundreds of watched tasks on every tick:
            # the test's bookkeeping, left out of the probe's measure.  The
            # cancellations themselves (Task.cancel cancels Motor's future) count.
            with fw.probe.uncounted():
                chosen = choose(loop.time() - start)
            for n, task, state in chosen:
                cancel(n, task, state)
            result.largest_burst = max(result.largest_burst, len(chosen))
            tick_cpu = time.thread_time() - tick_cpu
            result.canceller_max_tick = max(result.canceller_max_tick, tick_cpu)

    await fw.probe.settle()
    start = loop.time()
    cancelling = asyncio.ensure_future(canceller(start))
    for first in range(0, OPS, LAUNCH_BATCH):
        # Creating the tasks is the test's; their first steps call Motor and count.
        with fw.probe.uncounted():
            for n in range(first, min(first + LAUNCH_BATCH, OPS)):
                tasks[n] = asyncio.ensure_future(ops.run(result.kinds[n], n, result))
        await asyncio.sleep(0)
    launched = [task for task in tasks if task is not None]
    _, pending = await asyncio.wait(launched, timeout=STORM_TIMEOUT)
    await asyncio.wait_for(cancelling, STORM_TIMEOUT)
    result.busy_during_storm = fw.probe.max_busy
    result.second_busy_during_storm = fw.probe.second_busy
    result.driver_during_storm = fw.probe.max_driver
    result.runs_per_iteration = fw.probe.max_runs
    result.gap_during_storm = fw.probe.max_gap
    assert not pending, f"{len(pending)} operations never ended ({result.summary()})"

    for n, task in enumerate(launched):
        if task.cancelled():
            assert cancel_requested[n], f"operation {n} cancelled by nobody"
            result.cancelled += 1
            continue
        error = task.exception()
        if error is None:
            result.not_cancelled_ok += 1
        elif ferretdb and result.kinds[n] == "cursor" and ferretdb_cursor_loss(error):
            result.ferretdb_cursor_losses += 1
        else:
            result.errors.append((result.kinds[n], result.plans[n], error))
    return result


class ShortCursor(AssertionError):
    """A cursor iterated to its end had fewer documents than the collection."""

    def __init__(self, ids: list[Any]) -> None:
        super().__init__(f"{len(ids)} of {READ_DOCS} documents: {ids[-3:]} last")
        self.ids = ids


def ferretdb_cursor_loss(error: BaseException) -> bool:
    """FerretDB's answer to a getMore whose cursor died with its connection.

    ``CursorNotFound``; an ``InternalError`` naming the connection's end or the query's
    cancelled context; or, if the connection closes while a ``getMore`` reads the cursor,
    a last batch with cursor id 0 that ends the cursor early (PyMongo's sync client gets
    the same).  Such a cursor must still have returned a prefix of the sorted collection:
    no batch lost or repeated on the way.
    """
    if isinstance(error, ShortCursor):
        return error.ids == list(range(len(error.ids)))
    if not isinstance(error, OperationFailure):
        return False
    message = str((error.details or {}).get("errmsg", ""))
    return error.code == 43 or (
        error.code == 1 and ("wire.ReadMessage" in message or "context canceled" in message)
    )


async def start_measuring(fw: Framework) -> None:
    """Start measuring stalls on a collected heap, with the cyclic garbage collector off
    until :func:`stop_measuring` (as the fault suite does, see test/test_faults.py).

    A collection pauses the whole process for as long as the objects it walks take:
    here 4-12 ms for a young generation filled with the tracebacks of a few hundred
    cancelled operations, and tens of ms for a full one.  That is the interpreter's
    pause, not the driver holding the loop, and which gap it lands in is chance; what a
    collection costs is measured and reported instead (:func:`collect`).
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    fw.probe.skip_gap()
    await fw.probe.settle()


def collect(fw: Framework) -> tuple[float, int]:
    """Collect now, outside the measurement: (ms of the loop thread's CPU, objects)."""
    started = time.thread_time()
    collected = gc.collect()
    cost = ((time.thread_time() - started) * 1000, collected)
    fw.probe.skip_gap()
    return cost


def stop_measuring(fw: Framework) -> tuple[float, tuple[float, int]]:
    """The second longest stall since the probe's last reset (see ``second_busy`` in
    :class:`~test.framework.LoopProbe`), and what collecting then cost; the collector
    is back on."""
    busy = fw.probe.second_busy
    gc.enable()
    return busy, collect(fw)


@pytest.fixture(autouse=True)
def _collector_back_on() -> Iterator[None]:
    yield
    gc.enable()


async def settled(client: Any) -> dict[str, int]:
    """The pool counters once every connection is back (at most SETTLE_TIMEOUT).

    PyMongo's kill-cursors thread may still hold a connection for a moment, closing the
    server cursors of iterations that were cancelled.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        counters = pool_counters(client)
        busy = counters["requests"] or counters["active_sockets"] or counters["pending"]
        if not busy or time.monotonic() > deadline:
            return counters
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("max_pool_size", [100, 5], ids=["maxPoolSize=100", "maxPoolSize=5"])
async def test_cancellation_storm(fw: Framework, server: Any, max_pool_size: int) -> None:
    seed = SEED + max_pool_size + (0 if fw.name == "asyncio" else 1)
    fds = open_fds()
    closed = ClosedConnections()
    client = fw.client(server.uri, maxPoolSize=max_pool_size, event_listeners=[closed])
    name = f"motor_storm_{fw.name}_{max_pool_size}"
    ops = Ops(fw, client, name)
    await ops.prepare()

    await start_measuring(fw)
    result = await storm(fw, client, ops, seed, ferretdb=server.is_ferretdb)
    result.connections_closed = closed.reasons["error"]
    storm_gc = collect(fw)
    # Measure what follows on its own: the test's bookkeeping of 3,000 tasks is not the
    # driver's.
    fw.probe.reset()
    context = result.summary()
    print(f"\n{fw.name} maxPoolSize={max_pool_size}: {context}")

    # Every operation that was not cancelled succeeded, cancellations landed everywhere.
    assert not result.errors, (context, result.errors[:5])
    if result.ferretdb_cursor_losses:
        # Only where the storm closed connections (see the module docstring).
        assert result.connections_closed > 0, context
    assert result.cancelled > OPS // 2, context
    assert result.not_cancelled_ok > OPS // 10, context
    for state in ("admission" if max_pool_size == 5 else "queued", "read", "between"):
        assert result.cancelled_at[state] > 0, (state, context)

    # Nothing was lost: every acknowledged insert (small, ~1 MB, GridFS) is there.
    acknowledged = set(result.acknowledged)
    found = {d["_id"] async for d in ops.writes.find({"_id": {"$regex": "^op-"}}, {"_id": 1})}
    found |= {d["_id"] async for d in ops.big.find({}, {"_id": 1})}
    found |= {d["_id"] async for d in ops.db.fs.files.find({}, {"_id": 1})}
    missing = {i for i in acknowledged if i not in found}
    assert not missing, (len(missing), sorted(missing)[:10], context)

    # Nothing is left behind.
    counters = await settled(client)
    assert counters["requests"] == 0, counters
    assert counters["active_sockets"] == 0, counters
    assert counters["pending"] == 0, counters
    assert parked_children() == []
    assert client._binding._active == 0 and not client._binding._waiting
    # While the client is open: no more sockets than its pool and monitors may hold.
    assert len(open_fds() - fds) <= max_pool_size + 3, len(open_fds() - fds)

    # The client still works.
    await ops.normal_operations(100)
    busy_after, after_gc = stop_measuring(fw)
    await client.drop_database(name)
    counters = await settled(client)
    assert counters["active_sockets"] == 0 and counters["pending"] == 0, counters
    await client.close()
    leaked = await fds_back_to(fds)
    assert not leaked, leaked

    print(
        f"  most loop-thread CPU between two ticks: {result.busy_during_storm * 1000:.2f} ms "
        f"in the storm, {busy_after * 1000:.2f} ms after it; collections (GC off while "
        f"measuring): {storm_gc[0]:.2f} ms for the storm's {storm_gc[1]} objects, "
        f"{after_gc[0]:.2f} ms for {after_gc[1]} after"
    )
    # The session's stall summary reports this test's worst gap, the storm's included.
    fw.probe.max_busy = max(fw.probe.max_busy, result.busy_during_storm)
    fw.probe.max_gap = max(fw.probe.max_gap, result.gap_during_storm)
    fw.probe.max_driver = max(fw.probe.max_driver, result.driver_during_storm)
    # The hub's work budget held, during the storm and after it (a count, see
    # MAX_RUNS_PER_ITERATION); the loop thread's CPU per gap is reported above.
    assert result.runs_per_iteration <= MAX_RUNS_PER_ITERATION, context
    assert fw.probe.max_runs <= MAX_RUNS_PER_ITERATION, fw.probe.max_runs


# Operations parked on a read that one call cancels together.
BURST = 200


async def test_burst_of_cancellations_of_parked_reads(fw: Framework, mockup: Any) -> None:
    """BURST reads sent and waiting for a reply that never comes, cancelled in one go (a
    ``gather`` under ``wait_for`` timing out does this).  Each cancellation runs PyMongo's
    cleanup on the operation's child (the interrupted connection is closed); the hub runs
    those within its work budget per loop iteration, as it does resumes, so the loop
    thread's CPU between two ticks stays under MAX_BUSY.  Afterwards every operation is
    cancelled, each interrupted connection was closed, none was sent again, the pool is
    idle, no greenlet is parked, normal operations succeed, and once the client is closed
    the process has the file descriptors it had before."""
    answering = threading.Event()
    finds: list[int] = []
    server = mockup()

    def respond(request: Any) -> bool:
        if request.command_name != "find":
            return False
        finds.append(1)
        if not answering.is_set():
            return False  # left in MockupDB's queue: never answered
        return bool(request.ok(cursor={"id": 0, "ns": "db.coll", "firstBatch": [{"_id": 1}]}))

    server.autoresponds(respond)
    fds = open_fds()
    closed = ClosedConnections()
    client = fw.client(server.uri, maxPoolSize=BURST, event_listeners=[closed])
    coll = client.db.coll
    await asyncio.wait_for(client.aconnect(), SETTLE_TIMEOUT)

    futures = [coll.find_one() for _ in range(BURST)]
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while len(finds) < BURST and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert len(finds) == BURST, len(finds)
    assert not any(future.done() for future in futures)

    await start_measuring(fw)
    for future in futures:
        future.cancel()
    await asyncio.wait_for(asyncio.wait(futures), SETTLE_TIMEOUT)
    counters = await settled(client)
    most, driver, runs = fw.probe.max_busy, fw.probe.max_driver, fw.probe.max_runs
    busy, _ = stop_measuring(fw)
    print(
        f"\n{fw.name}: {BURST} parked reads cancelled at once, busiest gap {most * 1000:.2f} ms "
        f"(second {busy * 1000:.2f} ms, the driver's children {driver * 1000:.2f} ms, "
        f"{runs} child runs in one loop iteration at most)"
    )

    assert all(future.cancelled() for future in futures)
    assert counters == {"requests": 0, "active_sockets": 0, "pending": 0, "operation_count": 0}
    assert parked_children() == []
    assert client._binding._active == 0 and not client._binding._waiting
    assert closed.reasons["error"] == BURST, closed.reasons["error"]
    assert len(finds) == BURST, len(finds)  # nothing cancelled was sent again

    answering.set()
    docs = await asyncio.wait_for(asyncio.gather(*(coll.find_one() for _ in range(100))), 10)
    assert docs == [{"_id": 1}] * 100
    await client.close()
    leaked = await fds_back_to(fds)
    assert not leaked, leaked
    assert runs <= MAX_RUNS_PER_ITERATION, runs
    assert_no_stall(busy, MAX_BUSY)
    assert_no_stall(driver, MAX_BUSY)
