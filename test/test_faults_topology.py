"""Topology faults: a primary that steps down mid-workload, and a ``mongodb+srv://`` seed list.

A replica set is simulated with three MockupDB members that answer from one shared state
(:class:`ReplicaSet`): ``hello`` replies carry ``setName``, ``hosts``, ``primary``,
``isWritablePrimary``/``secondary``, ``electionId``/``setVersion`` and a ``topologyVersion``
that is bumped on every change of state.  Each member records every write and read it
receives, so the tests count on the wire what the drivers did.

Every scenario runs twice: with Motor under the framework of ``fw``, then with PyMongo's
synchronous client in worker threads (the oracle) against a fresh replica set; both runs
must end in the same outcome class (:meth:`ReplicaSet.outcome`).  Waits are bounded by
timeouts, so a hang fails; no test asserts a duration.  Monitoring polls
(``serverMonitoringMode=poll``): MockupDB serves one request at a time per member under a
lock, so a streaming ``hello`` held open until the topology changes would stall that
member's other connections.

Which writes PyMongo sends as retryable is racy, in both drivers alike: after checking out a
connection PyMongo 4.20 reads the server's *current* description
(``_ClientConnectionRetryable._write``: ``self._server.description.retryable_writes_supported``),
so a write that selected the primary just before a concurrent write's ``NotWritablePrimary``
marked it Unknown goes out without a ``txnNumber``, is not retried, and its error reaches
the application.  The outcome class therefore says what happens to each kind of write
(refused with a ``txnNumber``: retried exactly once; refused without: raised, not retried)
rather than how many of each there were.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dns.rdata
import dns.resolver
import pymongo
import pytest
from bson import Int64, ObjectId
from mockupdb import MockupDB
from pymongo.errors import PyMongoError
from pymongo.read_preferences import SecondaryPreferred

from test.framework import Framework, lasting, open_fds, pool_counters
from test.scripted import MAX_BUSY, in_thread

# Concurrent writers in the workload, and inserts each of them makes one after another.
WRITERS = 4
WRITES_PER_WRITER = 15
# The primary steps down when it receives its STEP_DOWN_AT-th insert (which it refuses).
STEP_DOWN_AT = 20
# How long the set has no primary after the step-down (seconds).
ELECTION_DELAY = 0.3
# A bound for any one operation (a hang fails instead of stalling the run).
OP_TIMEOUT = 20.0
# Client options shared by Motor and the oracle.
CLIENT_OPTIONS: dict[str, Any] = {
    "serverMonitoringMode": "poll",
    "heartbeatFrequencyMS": 500,
    "serverSelectionTimeoutMS": 10000,
}


@dataclass
class Attempt:
    """One insert command as a member received it."""

    member: int
    ids: list[Any]
    lsid: bytes | None
    txn_number: int | None
    error_code: int | None  # None: stored and acknowledged


@dataclass
class Workload:
    """What the application saw."""

    acknowledged: list[Any] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    # The member (index) that answered each read.
    secondary_read_before: int = -1
    secondary_read_after: int = -1
    primary_read_after: int = -1


class ReplicaSet:
    """Three MockupDB members of the replica set "rs", answering from one shared state.

    Member 0 is the primary until it receives its ``STEP_DOWN_AT``-th insert: it refuses
    that one with ``step_down_code`` (and the ``RetryableWriteError`` label), and from then
    on says it is a secondary; ``ELECTION_DELAY`` later member 1 is primary, with a newer
    ``electionId``.  A member that is not primary refuses writes the same way.  ``names``
    gives the host name each member is known by (``127.0.0.1`` by default).
    """

    def __init__(
        self,
        mockup: Callable[..., MockupDB],
        step_down_code: int = 10107,
        names: tuple[str, str, str] = ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    ) -> None:
        self.members = [mockup(auto_ismaster=None) for _ in range(3)]
        self.hosts = [f"{name}:{m.port}" for name, m in zip(names, self.members)]
        self.step_down_code = step_down_code
        self.lock = threading.Lock()
        self.primary: int | None = 0
        self.election = 1
        self.elect_at = 0.0
        self.process_ids = [ObjectId() for _ in self.members]
        self.counters = [0, 0, 0]
        self.inserts_on_first_primary = 0
        self.stepped_down = False
        self.step_down_attempt = -1  # index in attempts of the write refused at step-down
        self.attempts: list[Attempt] = []
        self.stored: dict[Any, list[int]] = {}
        self.reads: list[tuple[int, str]] = []  # (member, read preference mode)
        self.unexpected: list[str] = []
        for index, member in enumerate(self.members):
            member.autoresponds(self._responder(index))

    @property
    def uri(self) -> str:
        return f"mongodb://{','.join(self.hosts)}/?replicaSet=rs"

    # -- the members' state (call with the lock held) ---------------------------------

    def _current_primary(self) -> int | None:
        if self.primary is None and self.stepped_down and time.monotonic() >= self.elect_at:
            self.primary = 1
            self.election += 1
            self.counters = [c + 1 for c in self.counters]
        return self.primary

    def _topology_version(self, index: int) -> dict[str, Any]:
        return {"processId": self.process_ids[index], "counter": Int64(self.counters[index])}

    def _hello(self, index: int) -> dict[str, Any]:
        primary = self._current_primary()
        is_primary = primary == index
        reply: dict[str, Any] = {
            "ismaster": is_primary,
            "isWritablePrimary": is_primary,
            "secondary": not is_primary,
            "helloOk": True,
            "setName": "rs",
            "hosts": self.hosts,
            "me": self.hosts[index],
            "setVersion": 1,
            "topologyVersion": self._topology_version(index),
            "minWireVersion": 0,
            "maxWireVersion": 21,
            "logicalSessionTimeoutMinutes": 30,
        }
        if primary is not None:
            reply["primary"] = self.hosts[primary]
        if is_primary:
            reply["electionId"] = ObjectId(f"{self.election:024x}")
        return reply

    # -- request handling (in MockupDB's connection threads) ---------------------------

    def _responder(self, index: int) -> Callable[[Any], bool]:
        def respond(request: Any) -> bool:
            return self._respond(index, request)

        return respond

    def _respond(self, index: int, request: Any) -> bool:
        name = (request.command_name or "").lower()
        with self.lock:
            if name in ("ismaster", "hello"):
                return bool(request.ok(self._hello(index)))
            if name == "insert":
                return self._insert(index, request)
            if name == "find":
                mode = (request.doc.get("$readPreference") or {}).get("mode", "primary")
                self.reads.append((index, mode))
                batch = [{"_id": 0, "member": index}]
                return bool(request.ok(cursor={"id": 0, "ns": "db.coll", "firstBatch": batch}))
            if name in ("endsessions", "ping", "killcursors"):
                return bool(request.ok())
            self.unexpected.append(name)
            return bool(request.command_err(59, f"no such command: {name}"))

    def _insert(self, index: int, request: Any) -> bool:
        doc = request.doc
        ids = [d["_id"] for d in doc.get("documents", [])]
        lsid = doc.get("lsid")
        txn_number = doc.get("txnNumber")
        attempt = Attempt(
            index,
            ids,
            bytes(lsid["id"]) if lsid else None,
            int(txn_number) if txn_number is not None else None,
            None,
        )
        self.attempts.append(attempt)
        if self._current_primary() == index and index == 0:
            self.inserts_on_first_primary += 1
            if self.inserts_on_first_primary == STEP_DOWN_AT:
                # Step down: refuse this write, and say "secondary" from now on.
                self.primary = None
                self.stepped_down = True
                self.step_down_attempt = len(self.attempts) - 1
                self.elect_at = time.monotonic() + ELECTION_DELAY
                self.counters[index] += 1
        if self._current_primary() != index:
            attempt.error_code = self.step_down_code
            return bool(
                request.command_err(
                    self.step_down_code,
                    "not primary" if self.step_down_code == 10107 else "operation was interrupted",
                    errorLabels=["RetryableWriteError"],
                    topologyVersion=self._topology_version(index),
                )
            )
        for _id in ids:
            self.stored.setdefault(_id, []).append(index)
        return bool(request.ok(n=len(ids)))

    # -- what happened ----------------------------------------------------------------

    def refusals(self) -> tuple[int, int, int]:
        """(attempts, writes refused with a txnNumber, refused without), for the report."""
        with self.lock:
            attempts = list(self.attempts)
        firsts: dict[Any, Attempt] = {}
        for attempt in attempts:
            firsts.setdefault(attempt.ids[0], attempt)
        refused = [a for a in firsts.values() if a.error_code is not None]
        with_txn = sum(a.txn_number is not None for a in refused)
        return len(attempts), with_txn, len(refused) - with_txn

    def outcome(self, workload: Workload, retry_writes: bool) -> dict[str, Any]:
        """The outcome class of a workload: equal for Motor and the oracle."""
        with self.lock:
            attempts = list(self.attempts)
            stored = dict(self.stored)
            unexpected = list(self.unexpected)
        by_id: dict[Any, list[Attempt]] = {}
        for attempt in attempts:
            assert len(attempt.ids) == 1, attempt  # insert_one: one document per command
            by_id.setdefault(attempt.ids[0], []).append(attempt)
        # A write refused with a txnNumber is retried exactly once: the same statement
        # (lsid + txnNumber), acknowledged by the new primary.  A write refused without
        # one is not retried, and its error reaches the application.  (Which writes go
        # without one is a race inside PyMongo, see the test; counted, not compared.)
        refused = {i: a for i, a in by_id.items() if a[0].error_code is not None}
        retryable = {i: a for i, a in refused.items() if a[0].txn_number is not None}
        unretryable = {i: a for i, a in refused.items() if a[0].txn_number is None}
        step_down_write = attempts[self.step_down_attempt].ids[0]
        acknowledged = set(workload.acknowledged)
        return {
            "errors_are_the_refusals": all(
                type(e).__name__ == "NotPrimaryError" and _code(e) == self.step_down_code
                for e in workload.errors
            )
            and len(workload.errors) == len(unretryable),
            "writes_answered": len(workload.acknowledged) + len(workload.errors),
            "unexpected_commands": unexpected,
            "step_down_write": ("retried" if step_down_write in retryable else "raised"),
            "refused_retryable_writes_retried_once_same_txn_on_new_primary": all(
                len(a) == 2
                and a[1].error_code is None
                and a[1].member == 1
                and a[0].lsid == a[1].lsid is not None
                and a[0].txn_number == a[1].txn_number
                for a in retryable.values()
            ),
            "refused_unretryable_writes_not_retried": all(
                len(a) == 1 and a[0].ids[0] not in acknowledged for a in unretryable.values()
            ),
            "unrefused_writes_sent_once": all(
                len(a) == 1 for i, a in by_id.items() if i not in refused
            ),
            "txn_numbers_only_with_retry_writes": retry_writes
            or all(a.txn_number is None for a in attempts),
            # Nothing acknowledged and then lost, nothing stored twice, nothing stored that
            # the application was told failed.
            "acknowledged_all_stored_once": all(
                len(stored.get(_id, ())) == 1 for _id in acknowledged
            ),
            "stored_only_acknowledged": set(stored) == acknowledged,
            "writes_resumed_on_new_primary": any(
                a.member == 1 and a.error_code is None for a in attempts
            ),
            "first_primary_took_writes_until_step_down": sum(
                a.member == 0 and a.error_code is None for a in attempts
            )
            == STEP_DOWN_AT - 1,
            "first_primary_refused_after_step_down": all(
                a.error_code is not None
                for a in attempts[self.step_down_attempt :]
                if a.member == 0
            ),
            "secondary_read_before_from_secondary": workload.secondary_read_before in (1, 2),
            "secondary_read_after_from_secondary": workload.secondary_read_after in (0, 2),
            "primary_read_after_from_new_primary": workload.primary_read_after == 1,
        }


def _topology(client: Any) -> Any:
    """The PyMongo topology of a Motor or PyMongo client."""
    if isinstance(client, pymongo.MongoClient):
        return client._topology
    return client.delegate._topology


def all_members_known(client: Any) -> bool:
    """Has the client checked all three members (so reads can choose a secondary)?

    Reads the topology's description (no wait).  Bounded by the test's timeout.
    """
    description = _topology(client).description
    kinds = [sd.server_type_name for sd in description.server_descriptions().values()]
    return sorted(kinds) == ["RSPrimary", "RSSecondary", "RSSecondary"]


def _code(error: BaseException) -> Any:
    """The server's error code of a PyMongo error (NotPrimaryError keeps it in details)."""
    details = getattr(error, "details", None) or {}
    return getattr(error, "code", None) or details.get("code")


def _ids(writer: int) -> list[str]:
    return [f"w{writer}-{n}" for n in range(WRITES_PER_WRITER)]


async def motor_workload(client: Any) -> Workload:
    """The workload, with Motor: WRITERS tasks insert concurrently; reads around them."""
    coll = client.db.coll
    secondary = coll.with_options(read_preference=SecondaryPreferred())
    result = Workload()
    await asyncio.wait_for(client.aconnect(), OP_TIMEOUT)
    while not all_members_known(client):
        await asyncio.sleep(0.01)
    doc = await asyncio.wait_for(secondary.find_one(), OP_TIMEOUT)
    result.secondary_read_before = doc["member"]

    async def writer(w: int) -> None:
        for _id in _ids(w):
            try:
                await asyncio.wait_for(coll.insert_one({"_id": _id}), OP_TIMEOUT)
            except PyMongoError as exc:
                result.errors.append(exc)
            else:
                result.acknowledged.append(_id)

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))
    result.secondary_read_after = (await asyncio.wait_for(secondary.find_one(), OP_TIMEOUT))[
        "member"
    ]
    result.primary_read_after = (await asyncio.wait_for(coll.find_one(), OP_TIMEOUT))["member"]
    return result


def sync_workload(client: pymongo.MongoClient[Any]) -> Workload:
    """The same workload with PyMongo's synchronous client: WRITERS threads."""
    coll = client.db.coll
    secondary = coll.with_options(read_preference=SecondaryPreferred())
    result = Workload()
    while not all_members_known(client):
        time.sleep(0.01)
    result.secondary_read_before = secondary.find_one()["member"]  # type: ignore[index]
    lock = threading.Lock()

    def writer(w: int) -> None:
        for _id in _ids(w):
            try:
                coll.insert_one({"_id": _id})
            except PyMongoError as exc:
                with lock:
                    result.errors.append(exc)
            else:
                with lock:
                    result.acknowledged.append(_id)

    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        for future in [pool.submit(writer, w) for w in range(WRITERS)]:
            future.result(timeout=OP_TIMEOUT * WRITES_PER_WRITER)
    result.secondary_read_after = secondary.find_one()["member"]  # type: ignore[index]
    result.primary_read_after = coll.find_one()["member"]  # type: ignore[index]
    return result


def run_sync(uri: str, fn: Callable[[pymongo.MongoClient[Any]], Any], **options: Any) -> Any:
    """``fn(client)`` with a sync client (in the calling worker thread), then close it."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri, **options)
    try:
        return fn(client)
    finally:
        client.close()


@pytest.mark.parametrize(
    "code, retry_writes",
    [(10107, True), (11602, True), (10107, False)],
    ids=["NotWritablePrimary-retried", "InterruptedDueToReplStateChange-retried", "no-retry"],
)
async def test_primary_steps_down_mid_workload(
    fw: Framework, mockup: Any, code: int, retry_writes: bool
) -> None:
    # MockupDB servers start on the loop's thread (with a blocking DNS lookup of
    # "localhost"): set both replica sets up before the probe starts measuring.
    rs = ReplicaSet(mockup, step_down_code=code)
    oracle = ReplicaSet(mockup, step_down_code=code)
    fds = open_fds()
    await fw.probe.settle()
    client = fw.client(rs.uri, retryWrites=retry_writes, **CLIENT_OPTIONS)
    workload = await motor_workload(client)
    motor_outcome = rs.outcome(workload, retry_writes)
    assert rs.stepped_down and rs.primary == 1
    # Nothing left behind: the pools are idle, and once closed, no descriptor remains.
    counters = pool_counters(client)
    assert counters["active_sockets"] == 0 and counters["pending"] == 0, counters
    await client.close()
    await fds_back_to(fds, rs.members)

    sync_result = await in_thread(
        run_sync, oracle.uri, sync_workload, retryWrites=retry_writes, **CLIENT_OPTIONS
    )
    sync_outcome = oracle.outcome(sync_result, retry_writes)
    print(
        f"\n{fw.name}: (inserts received, refused with txnNumber, refused without): "
        f"Motor {rs.refusals()}, PyMongo {oracle.refusals()}; "
        f"errors raised: Motor {len(workload.errors)}, PyMongo {len(sync_result.errors)}"
    )
    assert motor_outcome == sync_outcome

    assert motor_outcome["writes_answered"] == WRITERS * WRITES_PER_WRITER
    assert motor_outcome["unexpected_commands"] == []
    assert motor_outcome["errors_are_the_refusals"]
    assert motor_outcome["refused_retryable_writes_retried_once_same_txn_on_new_primary"]
    assert motor_outcome["refused_unretryable_writes_not_retried"]
    assert motor_outcome["unrefused_writes_sent_once"]
    assert motor_outcome["txn_numbers_only_with_retry_writes"]
    assert motor_outcome["acknowledged_all_stored_once"]
    assert motor_outcome["stored_only_acknowledged"]
    assert motor_outcome["first_primary_took_writes_until_step_down"]
    assert motor_outcome["first_primary_refused_after_step_down"]
    assert motor_outcome["writes_resumed_on_new_primary"]
    assert motor_outcome["secondary_read_before_from_secondary"]
    assert motor_outcome["secondary_read_after_from_secondary"]
    assert motor_outcome["primary_read_after_from_new_primary"]
    # The write that met the step-down was retried exactly once (counted on the wire
    # above), or, without retryable writes, raised NotPrimaryError.
    assert motor_outcome["step_down_write"] == ("retried" if retry_writes else "raised")
    if not retry_writes:
        assert workload.errors and sync_result.errors
    fw.probe.assert_below(MAX_BUSY)


async def fds_back_to(fds: set[int], servers: list[MockupDB]) -> None:
    """Wait (at most 5 s) until the process has no descriptor beyond ``fds`` other than
    the in-process MockupDB servers' own sockets; fail naming the leftovers."""

    def leaked() -> set[int]:
        server_fds = set()
        for server in servers:
            for sock in list(server._server_socks):
                server_fds.add(sock.fileno())
        return open_fds() - fds - server_fds

    deadline = time.monotonic() + 5
    while leaked() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)

    def links() -> dict[int, str]:
        found = {}
        for fd in leaked():
            try:
                found[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass  # closed meanwhile
        return found

    # Only what stays open (a transient descriptor of another thread is not left), and
    # described only then: reading /proc/net costs milliseconds of CPU.
    left = {fd: _describe_fd(fd) for fd in await lasting(links)}
    left = {fd: what for fd, what in left.items() if what != CLOSED_MEANWHILE}
    # A server's end of a connection the client closed (CLOSE_WAIT) is the server's to
    # close, when its handler thread next reads; only the client's side is the driver's.
    ports = {server.port for server in servers}
    left = {fd: what for fd, what in left.items() if _local_port(what) not in ports}
    assert not left, (left, _socket_objects(set(left)))


#: What :func:`_describe_fd` says of a descriptor that is no longer open.
CLOSED_MEANWHILE = "closed meanwhile"


def _local_port(description: str) -> int | None:
    """The local port of a TCP socket described by :func:`_describe_socket`."""
    match = re.search(r" tcp6? :(\d+) -> ", description)
    return int(match.group(1)) if match else None


def _describe_fd(fd: int) -> str:
    try:
        return _describe_socket(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return CLOSED_MEANWHILE


def _socket_objects(fds: set[int]) -> list[str]:
    """The Python socket objects that own ``fds``, and what refers to them."""
    import gc

    found = []
    for obj in gc.get_objects():
        try:
            if not isinstance(obj, socket.socket) or obj.fileno() not in fds:
                continue
        except ReferenceError:  # a dead weak proxy
            continue
        referrers = [type(r).__qualname__ for r in gc.get_referrers(obj)]
        found.append(f"{obj!r} referred to by {referrers}")
    return found


def _describe_socket(link: str) -> str:
    """``socket:[INODE]`` with its kind, endpoints and state, from /proc/net."""
    if not link.startswith("socket:["):
        return link
    inode = link[len("socket:[") : -1]
    for table in ("tcp", "tcp6", "udp", "udp6", "unix", "netlink"):
        try:
            with open(f"/proc/net/{table}") as rows:
                lines = rows.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if table == "unix" and len(fields) >= 7 and fields[6] == inode:
                return f"{link} unix {fields[7] if len(fields) > 7 else ''}"
            if table == "netlink":
                if fields and fields[-1] == inode:
                    return f"{link} netlink protocol {fields[1]} port {fields[2]}"
                continue
            if table != "unix" and len(fields) > 9 and fields[9] == inode:
                local, remote = (int(f.split(":")[-1], 16) for f in fields[1:3])
                return f"{link} {table} :{local} -> :{remote} state {fields[3]}"
    return f"{link} (in no /proc/net table)"


# -- mongodb+srv:// ----------------------------------------------------------------------

SRV_FQDN = "rs.motor.test"
SRV_NAMES = ("m0.rs.motor.test", "m1.rs.motor.test", "m2.rs.motor.test")
# How long each stubbed SRV/TXT lookup blocks the thread that makes it (seconds).
DNS_DELAY = 0.3


class FakeAnswer(list):  # type: ignore[type-arg]
    """What dnspython's ``resolve`` returns, as far as PyMongo reads it."""

    rrset = None


@dataclass
class Lookup:
    """One SRV/TXT lookup as the stub saw it."""

    name: str
    kind: str
    thread: str
    # Did the event loop run a callback scheduled after the lookup began, while the
    # lookup held its thread?  None without a loop (the oracle).
    loop_ran_meanwhile: bool | None
    # How often the loop-stall probe ticked meanwhile (reported, not asserted).
    ticks: int


class DnsStub:
    """Stands in for DNS: SRV and TXT records of ``SRV_FQDN``, A records of its hosts.

    An SRV/TXT lookup blocks its thread as a slow resolver would: until the event loop
    (if given) has run a callback the lookup scheduled, then ``DNS_DELAY`` more.  A
    lookup made on the loop's thread would wait for that callback in vain (bounded by
    ``OP_TIMEOUT``) and record that the loop did not run.
    """

    def __init__(
        self,
        rs: ReplicaSet,
        loop: asyncio.AbstractEventLoop | None = None,
        probe: Any = None,
    ) -> None:
        self.ports = {name: m.port for name, m in zip(SRV_NAMES, rs.members)}
        self.loop = loop
        self.probe = probe
        self.lookups: list[Lookup] = []
        self.address_lookups: list[tuple[str, str]] = []  # (host, thread)
        self._getaddrinfo = socket.getaddrinfo

    def resolve(self, qname: Any, rdtype: Any = "A", *args: Any, **kwargs: Any) -> FakeAnswer:
        name, kind = str(qname).rstrip("."), str(rdtype)
        ticks = self.probe.ticks if self.probe is not None else 0
        loop_ran: bool | None = None
        if self.loop is not None:
            answered = threading.Event()
            self.loop.call_soon_threadsafe(answered.set)
            loop_ran = answered.wait(OP_TIMEOUT)
        time.sleep(DNS_DELAY)
        ticked = (self.probe.ticks - ticks) if self.probe is not None else 0
        self.lookups.append(Lookup(name, kind, threading.current_thread().name, loop_ran, ticked))
        if kind == "SRV" and name == f"_mongodb._tcp.{SRV_FQDN}":
            return FakeAnswer(
                dns.rdata.from_text("IN", "SRV", f"0 0 {port} {host}.")
                for host, port in self.ports.items()
            )
        if kind == "TXT" and name == SRV_FQDN:
            return FakeAnswer([dns.rdata.from_text("IN", "TXT", '"replicaSet=rs"')])
        raise dns.resolver.NXDOMAIN()  # type: ignore[no-untyped-call]

    def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith("." + SRV_FQDN):
            self.address_lookups.append((host, threading.current_thread().name))
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", int(port)))]
        return self._getaddrinfo(host, port, *args, **kwargs)


@pytest.fixture
def dns_stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., DnsStub]]:
    """Install a :class:`DnsStub` for a replica set: ``dns_stub(rs, loop, probe)``."""

    def install(rs: ReplicaSet, loop: Any = None, probe: Any = None) -> DnsStub:
        stub = DnsStub(rs, loop, probe)
        monkeypatch.setattr(dns.resolver, "resolve", stub.resolve)
        monkeypatch.setattr(socket, "getaddrinfo", stub.getaddrinfo)
        return stub

    yield install


def srv_outcome(client: Any, doc: Any) -> dict[str, Any]:
    topology = _topology(client)
    return {
        "nodes": sorted(f"{h}:{p}" for h, p in topology.description.server_descriptions()),
        "topology_type": topology.description.topology_type_name,
        "set_name": topology.description.replica_set_name,
        "find_one": doc,
    }


async def test_srv_seed_list_resolved_without_blocking(
    fw: Framework, mockup: Any, dns_stub: Callable[..., DnsStub]
) -> None:
    rs = ReplicaSet(mockup, names=SRV_NAMES)
    stub = dns_stub(rs, asyncio.get_running_loop(), fw.probe)
    uri = f"mongodb+srv://{SRV_FQDN}/?tls=false"
    await fw.probe.settle()
    # Nothing is resolved yet: PyMongo looks the seed list up on the first operation.
    client = fw.client(uri, **CLIENT_OPTIONS)
    assert stub.lookups == []
    doc = await asyncio.wait_for(client.db.coll.find_one(), OP_TIMEOUT)
    assert doc == {"_id": 0, "member": 0}
    motor = srv_outcome(client, doc)

    loop_thread = threading.current_thread().name
    assert sorted(lookup.kind for lookup in stub.lookups) == ["SRV", "TXT"], stub.lookups
    for lookup in stub.lookups:
        # Looked up in a worker thread, while the loop went on running callbacks.
        assert lookup.thread != loop_thread, lookup
        assert lookup.loop_ran_meanwhile, lookup
    # The members' names were resolved off the loop too.
    assert {host for host, _ in stub.address_lookups} == set(SRV_NAMES)
    assert all(thread != loop_thread for _, thread in stub.address_lookups)
    fw.probe.assert_below(MAX_BUSY)
    print(f"\nprobe ticks during each lookup: {[lookup.ticks for lookup in stub.lookups]}")

    # The oracle: PyMongo's sync client resolves the same records to the same set.
    oracle_stub = dns_stub(rs)

    def sync_find(client: pymongo.MongoClient[Any]) -> dict[str, Any]:
        found = client.db.coll.find_one()
        return srv_outcome(client, found)

    sync = await in_thread(run_sync, uri, sync_find, **CLIENT_OPTIONS)
    assert sorted(lookup.kind for lookup in oracle_stub.lookups) == ["SRV", "TXT"]
    assert motor == sync
    assert motor["nodes"] == sorted(f"{n}:{m.port}" for n, m in zip(SRV_NAMES, rs.members))
    assert motor["topology_type"] == "ReplicaSetWithPrimary" and motor["set_name"] == "rs"
    fw.probe.assert_below(MAX_BUSY)
