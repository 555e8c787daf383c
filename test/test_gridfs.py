"""GridFS: MotorGridFSBucket, MotorGridIn, MotorGridOut, MotorGridOutCursor (and AsyncIO).

Every test runs under asyncio and Tornado against the test server. Behaviour (bytes, file
documents, exceptions) is PyMongo 4.20's sync :mod:`gridfs`: where it matters the same
scenario runs through a sync ``gridfs.GridFSBucket`` in a worker thread, on the test's
database, and Motor must give the same outcome. The call style is Motor 3.7.1's: what reads
or writes the server is awaited; ``open_upload_stream``, ``find``, ``seek``, ``tell`` and the
properties are plain.

A :class:`Recorder` (a PyMongo command listener) shows which commands reach the server, on
which thread, and how many chunks (and bytes of chunk data) each reply to a ``find`` or
``getMore`` on a chunks collection carries: that reading stays in batches of about
:data:`motor.motor_gridfs.CHUNK_BATCH_BYTES`, that ``read_chunks`` fetches only the chunks of
its range, and that ``seek()``/``close()`` leave an open chunk cursor to PyMongo's background
thread instead of killing it on the loop.

Large byte strings are made, hashed and compared in worker threads, so that the loop-stall
probe measures the driver, not the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import inspect
import io
import math
import os
import random
import re
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gridfs
import pymongo
import pytest
from bson import ObjectId
from gridfs.errors import CorruptGridFile, FileExists, NoFile
from pymongo import monitoring
from pymongo.errors import InvalidOperation

import motor.motor_asyncio
import motor.motor_tornado
from motor.motor_gridfs import CHUNK_BATCH_BYTES
from test.framework import Framework, assert_no_stall
from test.oracle import MAX_BUSY, assert_motor_class, in_thread, motor_class

# The chunk size of the small files: 0 B, 1 B, one chunk, one chunk + 1 B.
CHUNK = 1000
SMALL_SIZES = [0, 1, CHUNK, CHUNK + 1]
# The big file, stored with the default chunk size (255 KiB: 41 chunks).
BIG = 10 * 1024 * 1024
DEFAULT_CHUNK = gridfs.DEFAULT_CHUNK_SIZE
# Upper bound for waiting on something that happens in the background (no wall-clock
# assert: only a guard against hanging).
WAIT = 10.0


# --------------------------------------------------------------------------- helpers


@dataclass
class Event:
    kind: str  # "started", "succeeded" or "failed"
    name: str
    thread: int
    # started: the command (without the documents of an insert)
    command: dict[str, Any] = field(default_factory=dict)
    # succeeded with a cursor: its namespace, id, documents and bytes of chunk data
    ns: str = ""
    cursor_id: int = 0
    docs: int = 0
    data_bytes: int = 0


class Recorder(monitoring.CommandListener):
    """Every command event, with the thread it happened on; cursor replies are summarised
    (how many documents, how many bytes of chunk data), not kept."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        command = {k: v for k, v in event.command.items() if k != "documents"}
        self.events.append(Event("started", event.command_name, threading.get_ident(), command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        recorded = Event("succeeded", event.command_name, threading.get_ident())
        cursor = event.reply.get("cursor")
        if isinstance(cursor, Mapping):
            batch = cursor.get("firstBatch", cursor.get("nextBatch", []))
            recorded.ns = cursor.get("ns", "")
            recorded.cursor_id = cursor.get("id", 0)
            recorded.docs = len(batch)
            recorded.data_bytes = sum(len(doc.get("data", b"")) for doc in batch)
        self.events.append(recorded)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.events.append(Event("failed", event.command_name, threading.get_ident()))

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> list[Event]:
        return self.events[mark:]

    def started_since(self, mark: int, name: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events[mark:]
            if e.kind == "started" and (name is None or e.name == name)
        ]

    def chunk_batches(self, mark: int = 0) -> list[Event]:
        """Replies carrying chunks (``find``/``getMore`` on a chunks collection)."""
        return [
            e
            for e in self.events[mark:]
            if e.kind == "succeeded" and e.name in ("find", "getMore") and e.ns.endswith(".chunks")
        ]

    def kill_of(self, cursor_id: int) -> Event | None:
        for event in self.events:
            if event.kind == "started" and event.name == "killCursors":
                if cursor_id in event.command.get("cursors", []):
                    return event
        return None


class Env:
    """The test's database, through Motor (``client``, ``db``) and through sync PyMongo in a
    worker thread (:meth:`sync`, the oracle)."""

    def __init__(self, fw: Framework, server: Any, **client_kwargs: Any) -> None:
        self.fw = fw
        self.name = f"motor_gridfs_{uuid.uuid4().hex[:10]}"
        self.client = fw.client(server.uri, **client_kwargs)
        self.db = self.client[self.name]
        self.uri = server.uri
        self.sync_client: pymongo.MongoClient[Any] | None = None

    def cls(self, agnostic_name: str) -> Any:
        """This framework's Motor class: "GridFSBucket" -> AsyncIOMotorGridFSBucket, ..."""
        module = motor.motor_asyncio if self.fw.name == "asyncio" else motor.motor_tornado
        return getattr(module, motor_class(self.fw, agnostic_name))

    def bucket(self, **kwargs: Any) -> Any:
        bucket = self.cls("GridFSBucket")(self.db, **kwargs)
        assert_motor_class(self.fw, bucket, "GridFSBucket")
        return bucket

    async def sync(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(sync_database)`` in a worker thread."""
        assert self.sync_client is not None
        sync_db = self.sync_client[self.name]
        return await in_thread(lambda: fn(sync_db))


@contextlib.asynccontextmanager
async def gridfs_env(fw: Framework, server: Any, **client_kwargs: Any) -> AsyncIterator[Env]:
    """An :class:`Env` on a database of its own, dropped at the end."""
    env = Env(fw, server, **client_kwargs)
    sync_client: pymongo.MongoClient[Any] = await in_thread(lambda: pymongo.MongoClient(server.uri))
    env.sync_client = sync_client
    try:
        yield env
    finally:

        def cleanup() -> None:
            try:
                sync_client.drop_database(env.name)
            finally:
                sync_client.close()

        await in_thread(cleanup)


async def make_data(size: int, seed: str = "") -> bytes:
    """``size`` pseudo-random bytes (made in a worker thread)."""
    return await in_thread(lambda: random.Random(f"{size}/{seed}").randbytes(size))


def sha(pieces: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(piece)
    return digest.hexdigest()


async def digest(pieces: Iterable[bytes]) -> str:
    """The sha256 of the concatenated ``pieces`` (computed in a worker thread)."""
    pieces = list(pieces)
    return await in_thread(lambda: sha(pieces))


async def digest_of_slice(data: bytes, start: int, end: int | None) -> str:
    return await in_thread(lambda: sha([data[start:end]]))


async def split(data: bytes, size: int) -> list[bytes]:
    """``data`` in pieces of ``size`` bytes (made in a worker thread)."""
    return await in_thread(lambda: [data[i : i + size] for i in range(0, len(data), size)])


async def wait_until(predicate: Callable[..., Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``predicate`` every 50 ms until it returns something true; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def raised(exc: BaseException) -> tuple[Any, ...]:
    return ("raised", type(exc), str(exc))


def sync_outcome(fn: Callable[..., Any]) -> tuple[Any, ...]:
    try:
        return ("returned", fn())
    except Exception as exc:
        return raised(exc)


async def motor_outcome(fn: Callable[..., Awaitable[Any]]) -> tuple[Any, ...]:
    try:
        return ("returned", await fn())
    except Exception as exc:
        return raised(exc)


def kind(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """An outcome without the exception's message."""
    return result[:2]


async def stored(bucket: Any, file_id: Any) -> tuple[int, int]:
    """How many file documents and chunks the bucket holds for ``file_id``."""
    files = await bucket.collection.files.count_documents({"_id": file_id})
    chunks = await bucket.collection.chunks.count_documents({"files_id": file_id})
    return files, chunks


def sync_stored(db: Any, bucket_name: str, file_id: Any) -> tuple[int, int]:
    return (
        db[bucket_name].files.count_documents({"_id": file_id}),
        db[bucket_name].chunks.count_documents({"files_id": file_id}),
    )


# --------------------------------------------------------------- uploads and downloads

UPLOADS = ["upload_from_stream(bytes)", "upload_from_stream(file)", "write", "writelines"]


async def upload(bucket: Any, how: str, filename: str, data: bytes, piece: int) -> Any:
    """Store ``data`` as ``filename`` in one of the ways of :data:`UPLOADS`; the file's id."""
    if how == "upload_from_stream(bytes)":
        file_id = await bucket.upload_from_stream(filename, data)
        assert isinstance(file_id, ObjectId)
        return file_id
    if how == "upload_from_stream(file)":
        return await bucket.upload_from_stream(filename, io.BytesIO(data))
    pieces = await split(data, piece)
    grid_in = bucket.open_upload_stream(filename)
    assert not inspect.isawaitable(grid_in)
    assert grid_in.closed is False
    if how == "write":
        for data_piece in pieces:
            written = grid_in.write(data_piece)
            assert inspect.isawaitable(written)
            assert await written is None
    else:
        assert how == "writelines"
        await grid_in.writelines(pieces)
    closing = grid_in.close()
    assert inspect.isawaitable(closing)
    await closing
    assert grid_in.closed is True
    # mypy keeps grid_in.closed narrowed to False across the awaits above.
    assert grid_in.length == len(data)  # type: ignore[unreachable]
    return grid_in._id


async def check_stored_file(bucket: Any, file_id: Any, size: int, chunk_size: int) -> None:
    """The file document and the chunks a GridFS writer must have stored."""
    doc = await bucket.collection.files.find_one({"_id": file_id})
    assert doc is not None
    assert doc["length"] == size
    assert doc["chunkSize"] == chunk_size
    assert isinstance(doc["uploadDate"], datetime.datetime)
    chunks = await bucket.collection.chunks.count_documents({"files_id": file_id})
    assert chunks == math.ceil(size / chunk_size)


def read_ranges(length: int, chunk_size: int) -> list[tuple[int, int | None]]:
    """Ranges for ``read_chunks``: whole file, single bytes, chunk boundaries, empty."""
    cs = chunk_size
    candidates: list[tuple[int, int | None]] = [
        (0, None),
        (0, length),
        (0, 0),
        (0, 1),
        (1, length - 1),
        (cs - 1, cs),
        (cs - 1, cs + 1),
        (cs, cs + 1),
        (cs, 2 * cs),
        (cs + 1, 3 * cs - 1),
        (3 * cs + 5, 9 * cs - 7),
        (length // 2, None),
        (length - 1, length),
        (length - 1, None),
        (length, length),
        (length, None),
    ]
    result = []
    for start, end in candidates:
        stop = length if end is None else end
        if 0 <= start <= stop <= length and (start, end) not in result:
            result.append((start, end))
    return result


async def download_all_ways(
    fw: Framework, bucket: Any, file_id: Any, filename: str, data: bytes, piece: int
) -> dict[str, str]:
    """The file read in every way, as {way: sha256}; checks piece sizes on the way."""
    length = len(data)
    chunk_size = (await bucket.open_download_stream(file_id)).chunk_size
    results: dict[str, str] = {}

    grid_out = await bucket.open_download_stream(file_id)
    assert grid_out.length == length
    results["read()"] = await digest([await read_whole(fw, grid_out)])
    assert grid_out.tell() == length
    assert await grid_out.read() == b""

    grid_out = await bucket.open_download_stream(file_id)
    pieces = []
    while True:
        position = grid_out.tell()
        data_piece = await grid_out.read(piece)
        if not data_piece:
            break
        assert len(data_piece) == min(piece, length - position)
        assert grid_out.tell() == position + len(data_piece)
        pieces.append(data_piece)
    assert grid_out.tell() == length
    results["read(size)"] = await digest(pieces)

    grid_out = await bucket.open_download_stream(file_id)
    pieces = []
    while True:
        position = grid_out.tell()
        chunk = await grid_out.readchunk()
        if not chunk:
            break
        assert len(chunk) == min(chunk_size, length - position)
        pieces.append(chunk)
    results["readchunk()"] = await digest(pieces)

    grid_out = await bucket.open_download_stream(file_id)
    pieces = []
    async for chunk in grid_out:
        assert isinstance(chunk, bytes)
        assert 0 < len(chunk) <= chunk_size
        pieces.append(chunk)
    assert sum(map(len, pieces)) == length
    results["async for"] = await digest(pieces)

    destination = io.BytesIO()
    assert await bucket.download_to_stream(file_id, destination) is None
    results["download_to_stream"] = await in_thread(lambda: sha([destination.getvalue()]))

    destination = io.BytesIO()
    assert await bucket.download_to_stream_by_name(filename, destination) is None
    results["download_to_stream_by_name"] = await in_thread(lambda: sha([destination.getvalue()]))

    grid_out = await bucket.open_download_stream_by_name(filename)
    results["open_download_stream_by_name"] = await digest([await read_whole(fw, grid_out)])

    grid_out = await bucket.open_download_stream(file_id)
    for start, end in read_ranges(length, chunk_size):
        pieces = [data_piece async for data_piece in grid_out.read_chunks(start, end)]
        assert all(0 < len(p) <= chunk_size for p in pieces), (start, end)
        # read_chunks does not move the file's position.
        assert grid_out.tell() == 0
        got = await digest(pieces)
        expected = await digest_of_slice(data, start, end)
        assert got == expected, f"read_chunks({start}, {end})"
    return results


async def read_whole(fw: Framework, grid_out: Any) -> bytes:
    """``await grid_out.read()``.  Building one bytes object of a multi-megabyte file
    (fresh pages from the kernel: about 7 ms for 10 MB here) is what the caller asked
    for, not the driver's work: the probe does not count it."""
    data: bytes = await grid_out.read()
    if len(data) > 1024 * 1024:
        fw.probe.skip_gap()
    return data


async def round_trip(
    fw: Framework, server: Any, size: int, chunk_size: int | None, piece: int, full: bool
) -> None:
    """Store ``size`` bytes in every way, read them back in every way: the same bytes.

    ``full``: every download way for every upload way (else every upload is checked with
    ``read()`` and one file is read every way).  Sync PyMongo reads what Motor stored, and
    Motor reads what sync PyMongo stored, byte for byte; both store the same documents.
    Each way of storing has a bucket of its own: FerretDB scans a whole chunks collection
    for every query of a file's chunks.
    """
    async with gridfs_env(fw, server) as env:
        options: dict[str, Any] = {} if chunk_size is None else {"chunk_size_bytes": chunk_size}
        buckets = {
            how: env.bucket(bucket_name=f"up{n}", **options) for n, how in enumerate(UPLOADS)
        }
        effective_chunk = chunk_size or DEFAULT_CHUNK
        data = await make_data(size)
        expected = await digest([data])
        await fw.probe.settle()

        file_ids = {}
        for how, bucket in buckets.items():
            filename = f"{how}.bin"
            file_ids[how] = await upload(bucket, how, filename, data, piece)
            await check_stored_file(bucket, file_ids[how], size, effective_chunk)
        upload_busy = fw.probe.held
        fw.probe.reset()

        for number, (how, bucket) in enumerate(buckets.items()):
            filename = f"{how}.bin"
            if full or number == 0:
                ways = await download_all_ways(fw, bucket, file_ids[how], filename, data, piece)
                assert ways == dict.fromkeys(ways, expected), how
            else:
                grid_out = await bucket.open_download_stream(file_ids[how])
                assert await digest([await read_whole(fw, grid_out)]) == expected, how

        # The oracle reads what Motor stored ...
        def sync_read(db: Any) -> list[str]:
            return [
                sha([gridfs.GridFSBucket(db, f"up{n}").open_download_stream(file_id).read()])
                for n, file_id in enumerate(file_ids.values())
            ]

        assert await env.sync(sync_read) == [expected] * len(UPLOADS)

        # ... and Motor reads what the oracle stored; the file documents are alike.
        def sync_store(db: Any) -> Any:
            sync_bucket = gridfs.GridFSBucket(db, "sync", **options)
            return sync_bucket.upload_from_stream("sync.bin", data)

        sync_id = await env.sync(sync_store)
        grid_out = await env.bucket(bucket_name="sync").open_download_stream(sync_id)
        assert await digest([await read_whole(fw, grid_out)]) == expected
        projection = {"_id": 0, "uploadDate": 0, "filename": 0}
        motor_doc = await env.db["up0.files"].find_one({"_id": file_ids[UPLOADS[0]]}, projection)
        sync_doc = await env.db["sync.files"].find_one({"_id": sync_id}, projection)
        assert motor_doc == sync_doc
        download_busy = fw.probe.held
        assert_no_stall(
            max(upload_busy, download_busy),
            MAX_BUSY,
            {"upload": upload_busy, "download": download_busy},
        )


@pytest.mark.parametrize("size", SMALL_SIZES, ids=[f"{s}B" for s in SMALL_SIZES])
async def test_round_trip(fw: Framework, server: Any, size: int) -> None:
    await round_trip(fw, server, size, CHUNK, piece=7, full=True)


async def test_round_trip_10mb(fw: Framework, server: Any) -> None:
    # The default chunk size; pieces that straddle chunks.
    await round_trip(fw, server, BIG, None, piece=100_003, full=False)


# --------------------------------------------------------------------- properties


def grid_out_fields(grid_out: Any) -> dict[str, Any]:
    return {
        "_id": grid_out._id,
        "filename": grid_out.filename,
        "name": grid_out.name,
        "length": grid_out.length,
        "chunk_size": grid_out.chunk_size,
        "upload_date": grid_out.upload_date,
        "metadata": grid_out.metadata,
    }


async def test_grid_out_properties(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=CHUNK)
        data = await make_data(2500)
        metadata = {"owner": "ann", "tags": ["x", "y"], "nested": {"n": 1}}
        written = bucket.upload_from_stream_with_id("my-id", "props.bin", data, metadata=metadata)
        assert inspect.isawaitable(written)
        assert await written is None

        grid_out = await bucket.open_download_stream("my-id")
        assert_motor_class(fw, grid_out, "GridOut")
        fields = grid_out_fields(grid_out)
        assert fields["_id"] == "my-id"
        assert fields["filename"] == fields["name"] == "props.bin"
        assert fields["length"] == 2500
        assert fields["chunk_size"] == CHUNK
        assert isinstance(fields["upload_date"], datetime.datetime)
        assert fields["metadata"] == metadata
        # A field of the file document, by attribute; a missing one is an AttributeError.
        assert grid_out.chunkSize == CHUNK
        with pytest.raises(AttributeError):
            grid_out.no_such_field  # noqa: B018
        with pytest.raises(AttributeError):
            grid_out._no_such_private_attribute  # noqa: B018
        # PyMongo's GridOut's own attributes, as in Motor 3.7.1: _file, the file document.
        file_document = grid_out._file
        assert file_document["metadata"] == metadata
        assert await grid_out.read() == data

        def sync_fields(db: Any) -> tuple[dict[str, Any], Any]:
            sync_out = gridfs.GridFSBucket(db).open_download_stream("my-id")
            return grid_out_fields(sync_out), sync_out._file

        assert await env.sync(sync_fields) == (fields, file_document)

        # Custom top-level fields and a content type: a GridIn made directly.
        grid_in = env.cls("GridIn")(
            bucket.collection,
            _id=42,
            filename="typed.txt",
            content_type="text/plain",
            chunk_size=7,
            colour="blue",
            aliases=["t.txt"],
        )
        assert_motor_class(fw, grid_in, "GridIn")
        await grid_in.write(b"hello, world")
        await grid_in.close()
        grid_out = await bucket.open_download_stream(42)
        assert grid_out.colour == "blue"
        assert grid_out.chunk_size == 7
        assert grid_out.length == 12
        assert grid_out.metadata is None
        with pytest.warns(DeprecationWarning):
            assert grid_out.content_type == "text/plain"
        with pytest.warns(DeprecationWarning):
            assert grid_out.aliases == ["t.txt"]

        def sync_custom(db: Any) -> tuple[Any, ...]:
            sync_out = gridfs.GridFSBucket(db).open_download_stream(42)
            return (sync_out.colour, sync_out.chunk_size, sync_out.length, sync_out.metadata)

        assert await env.sync(sync_custom) == ("blue", 7, 12, None)
        assert await grid_out.read() == b"hello, world"
    fw.probe.assert_below(MAX_BUSY)


async def test_grid_out_made_directly_needs_open(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=4)
        data = b"0123456789"
        file_id = await bucket.upload_from_stream("direct.bin", data, metadata={"m": 1})
        await bucket.collection.files.update_one({"_id": file_id}, {"$set": {"colour": "red"}})
        expected = grid_out_fields(await bucket.open_download_stream(file_id))
        GridOut = env.cls("GridOut")

        mark = recorder.mark()
        grid_out = GridOut(bucket.collection, file_id)
        assert_motor_class(fw, grid_out, "GridOut")
        names = [*expected, "content_type", "aliases", "md5", "colour", "closed"]
        for name in names:
            with pytest.raises(InvalidOperation, match=r"open\(\)"):
                getattr(grid_out, name)
        # PyMongo's own attributes are there (_file: None until open()); a private name
        # that is neither is missing, not a reason to open the file.
        assert grid_out._file is None
        assert getattr(grid_out, "_no_such_private_attribute", "missing") == "missing"
        # Neither making it nor the refused properties did any I/O.
        assert recorder.since(mark) == []

        opening = grid_out.open()
        assert inspect.isawaitable(opening)
        assert await opening is grid_out
        assert grid_out_fields(grid_out) == expected
        assert grid_out.colour == "red"
        document: Any = grid_out._file  # (mypy keeps the "is None" above)
        assert document["colour"] == "red"
        assert grid_out.closed is False
        # open() fetches the file document once.
        mark = recorder.mark()
        assert await grid_out.open() is grid_out
        assert recorder.started_since(mark) == []
        assert await grid_out.read() == data

        # Closed before it was opened: closed, without I/O.
        grid_out = GridOut(bucket.collection, file_id)
        mark = recorder.mark()
        await grid_out.close()
        assert grid_out.closed is True
        assert recorder.since(mark) == []

        # read() opens the file itself, as PyMongo's does.
        grid_out = GridOut(bucket.collection, file_id=file_id)
        assert await grid_out.read(3) == b"012"
        assert grid_out.length == 10

        # With the file document: no open() needed, no I/O.
        doc = await bucket.collection.files.find_one({"_id": file_id})
        mark = recorder.mark()
        grid_out = GridOut(bucket.collection, file_document=doc)
        assert grid_out_fields(grid_out) == expected
        assert recorder.since(mark) == []
        assert await grid_out.read() == data

        # A file that does not exist: NoFile from open(), as from PyMongo's GridOut.open().
        missing = ObjectId()
        with pytest.raises(NoFile) as motor_error:
            await GridOut(bucket.collection, missing).open()

        def sync_open(db: Any) -> tuple[Any, ...]:
            # PyMongo annotates GridOut's file_id as "int | None"; any _id value is valid.
            return sync_outcome(lambda: gridfs.GridOut(db.fs, missing).open())  # type: ignore[arg-type]

        expected_outcome = await env.sync(sync_open)
        assert expected_outcome[:2] == ("raised", NoFile)
        assert repr(missing) in str(motor_error.value)

        # Motor objects only.
        assert env.sync_client is not None
        with pytest.raises(TypeError):
            GridOut(env.sync_client[env.name].fs, file_id)
        with pytest.raises(TypeError):
            env.cls("GridIn")(env.sync_client[env.name].fs)
        with pytest.raises(TypeError):
            env.cls("GridFSBucket")(env.sync_client[env.name])
    fw.probe.assert_below(MAX_BUSY)


async def test_grid_in_properties_and_set(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket()

        async def motor_scenario() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            grid_in = bucket.open_upload_stream_with_id(
                "in-1", "in.bin", chunk_size_bytes=5, metadata={"k": 1}
            )
            assert_motor_class(fw, grid_in, "GridIn")
            seen["before"] = (
                grid_in._id,
                grid_in.filename,
                grid_in.name,
                grid_in.chunk_size,
                grid_in.closed,
                grid_in.metadata,
            )
            for name in ("length", "upload_date"):
                try:
                    getattr(grid_in, name)
                except AttributeError as exc:
                    seen[f"{name} before close"] = raised(exc)
            setting = grid_in.set("colour", "red")
            assert inspect.isawaitable(setting)
            assert await setting is None
            seen["colour"] = grid_in.colour
            seen["stored before close"] = await bucket.collection.files.find_one({"_id": "in-1"})
            await grid_in.write(b"0123456789ab")
            await grid_in.close()
            seen["after"] = (grid_in.closed, grid_in.length, type(grid_in.upload_date))
            # PyMongo's GridIn's own attributes: _file, the file document.
            seen["_file"] = (sorted(grid_in._file), grid_in._file["filename"])
            # After close, set() updates the file document at once.
            await grid_in.set("size", "L")
            seen["size"] = grid_in.size
            seen["doc"] = await bucket.collection.files.find_one({"_id": "in-1"}, {"uploadDate": 0})
            try:
                await grid_in.write(b"more")
            except ValueError as exc:
                seen["write after close"] = raised(exc)
            try:
                grid_in.no_such_field  # noqa: B018
            except AttributeError as exc:
                seen["missing field"] = raised(exc)
            grid_out = await bucket.open_download_stream("in-1")
            seen["grid_out"] = (grid_out.colour, grid_out.size, await grid_out.read())
            return seen

        def sync_scenario(db: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            sync_bucket = gridfs.GridFSBucket(db, bucket_name="s")
            grid_in = sync_bucket.open_upload_stream_with_id(
                "in-1", "in.bin", chunk_size_bytes=5, metadata={"k": 1}
            )
            seen["before"] = (
                grid_in._id,
                grid_in.filename,
                grid_in.name,
                grid_in.chunk_size,
                grid_in.closed,
                grid_in.metadata,
            )
            for name in ("length", "upload_date"):
                try:
                    getattr(grid_in, name)
                except AttributeError as exc:
                    seen[f"{name} before close"] = raised(exc)
            grid_in.set("colour", "red")
            seen["colour"] = grid_in.colour
            seen["stored before close"] = db.s.files.find_one({"_id": "in-1"})
            grid_in.write(b"0123456789ab")
            grid_in.close()
            seen["after"] = (grid_in.closed, grid_in.length, type(grid_in.upload_date))
            # PyMongo's GridIn's own attributes: _file, the file document.
            seen["_file"] = (sorted(grid_in._file), grid_in._file["filename"])
            grid_in.set("size", "L")
            seen["size"] = grid_in.size
            seen["doc"] = db.s.files.find_one({"_id": "in-1"}, {"uploadDate": 0})
            try:
                grid_in.write(b"more")
            except ValueError as exc:
                seen["write after close"] = raised(exc)
            try:
                grid_in.no_such_field  # noqa: B018
            except AttributeError as exc:
                seen["missing field"] = raised(exc)
            grid_out = sync_bucket.open_download_stream("in-1")
            seen["grid_out"] = (grid_out.colour, grid_out.size, grid_out.read())
            return seen

        seen = await motor_scenario()
        assert seen == await env.sync(sync_scenario)
        assert seen["before"] == ("in-1", "in.bin", "in.bin", 5, False, {"k": 1})
        assert seen["_file"][1] == "in.bin"
        assert seen["stored before close"] is None
        assert seen["doc"]["colour"] == "red"
        assert seen["doc"]["size"] == "L"
        assert seen["grid_out"] == ("red", "L", b"0123456789ab")

        # The GridIn's content type (deprecated by PyMongo) and its upload date.
        grid_in = env.cls("GridIn")(bucket.collection, filename="t.txt", content_type="text/x")
        with pytest.warns(DeprecationWarning):
            assert grid_in.content_type == "text/x"
        await grid_in.write(b"abc")
        await grid_in.close()
        doc = await bucket.collection.files.find_one({"_id": grid_in._id})
        # The server keeps milliseconds.
        local = grid_in.upload_date
        assert local.replace(microsecond=local.microsecond // 1000 * 1000, tzinfo=None) == doc[
            "uploadDate"
        ].replace(tzinfo=None)
    fw.probe.assert_below(MAX_BUSY)


async def test_custom_ids_and_file_exists(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=4)
        await bucket.upload_from_stream_with_id({"k": "composite"}, "a", b"abcdef")
        grid_in = bucket.open_upload_stream_with_id(7, "b")
        assert grid_in._id == 7
        await grid_in.write(b"xyz")
        await grid_in.close()
        assert await (await bucket.open_download_stream({"k": "composite"})).read() == b"abcdef"
        assert await (await bucket.open_download_stream(7)).read() == b"xyz"

        # Storing a second file with an id in use: PyMongo's FileExists (empty and not).
        for file_id, data in ((7, b"again"), (7, b""), ({"k": "composite"}, b"abcdef")):
            motor_result = await motor_outcome(
                lambda file_id=file_id, data=data: bucket.upload_from_stream_with_id(
                    file_id, "dup", data
                )
            )

            def sync_dup(db: Any, file_id: Any = file_id, data: bytes = data) -> tuple[Any, ...]:
                sync_bucket = gridfs.GridFSBucket(db, chunk_size_bytes=4)
                return sync_outcome(
                    lambda: sync_bucket.upload_from_stream_with_id(file_id, "dup", data)
                )

            assert motor_result == await env.sync(sync_dup)
            assert motor_result[:2] == ("raised", FileExists)
        assert await (await bucket.open_download_stream(7)).read() == b"xyz"
    fw.probe.assert_below(MAX_BUSY)


# ----------------------------------------------------------- revisions and NoFile


REVISIONS = [0, 1, 2, 3, -1, -2, -3, -4, 4, 5, -5]


async def store_revisions(bucket: Any, coll: Any) -> None:
    """Four revisions of "rev"; their upload dates put them in the order r2, r0, r3, r1."""
    for number in range(4):
        await bucket.upload_from_stream_with_id(f"r{number}", "rev", f"content {number}".encode())
    base = datetime.datetime(2020, 1, 1)
    for rank, number in enumerate([2, 0, 3, 1]):
        date = base + datetime.timedelta(seconds=rank)
        await coll.files.update_one({"_id": f"r{number}"}, {"$set": {"uploadDate": date}})


async def test_revisions_by_name(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket()
        await store_revisions(bucket, bucket.collection)

        async def motor_revision(revision: int | None) -> tuple[Any, ...]:
            async def read() -> Any:
                if revision is None:
                    grid_out = await bucket.open_download_stream_by_name("rev")
                else:
                    grid_out = await bucket.open_download_stream_by_name("rev", revision=revision)
                assert_motor_class(fw, grid_out, "GridOut")
                destination = io.BytesIO()
                if revision is None:
                    await bucket.download_to_stream_by_name("rev", destination)
                else:
                    await bucket.download_to_stream_by_name("rev", destination, revision)
                return (grid_out._id, await grid_out.read(), destination.getvalue())

            return await motor_outcome(read)

        def sync_revisions(db: Any) -> list[tuple[Any, ...]]:
            sync_bucket = gridfs.GridFSBucket(db)

            def read(revision: int | None) -> Any:
                kwargs: dict[str, Any] = {} if revision is None else {"revision": revision}
                grid_out = sync_bucket.open_download_stream_by_name("rev", **kwargs)
                destination = io.BytesIO()
                sync_bucket.download_to_stream_by_name("rev", destination, **kwargs)
                return (grid_out._id, grid_out.read(), destination.getvalue())

            return [sync_outcome(lambda r=r: read(r)) for r in [None, *REVISIONS]]

        got = [await motor_revision(r) for r in [None, *REVISIONS]]
        assert got == await env.sync(sync_revisions)
        by_revision = dict(zip([None, *REVISIONS], got))
        # 0 is the oldest upload date, -1 (the default) the newest.
        assert by_revision[0][1][0] == "r2"
        assert by_revision[1][1][0] == "r0"
        assert by_revision[-1][1][0] == "r1"
        assert by_revision[None][1][0] == "r1"
        assert by_revision[-2][1][0] == "r3"
        assert by_revision[-1][1][1] == b"content 1"
        for missing in (4, 5, -5):
            assert by_revision[missing] == (
                "raised",
                NoFile,
                f"no version {missing} for filename 'rev'",
            )
    fw.probe.assert_below(MAX_BUSY)


async def test_no_file(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket()
        await bucket.upload_from_stream("present", b"here")
        missing = ObjectId()
        cases: list[tuple[str, Callable[[Any], Any]]] = [
            ("open_download_stream", lambda b: b.open_download_stream(missing)),
            ("by_name", lambda b: b.open_download_stream_by_name("missing")),
            ("revision 1", lambda b: b.open_download_stream_by_name("present", revision=1)),
            ("revision -2", lambda b: b.open_download_stream_by_name("present", -2)),
            ("download_to_stream", lambda b: b.download_to_stream(missing, io.BytesIO())),
            (
                "download_to_stream_by_name",
                lambda b: b.download_to_stream_by_name("missing", io.BytesIO()),
            ),
            ("delete", lambda b: b.delete(missing)),
            ("delete_by_name", lambda b: b.delete_by_name("missing")),
            ("rename", lambda b: b.rename(missing, "new")),
            ("rename_by_name", lambda b: b.rename_by_name("missing", "new")),
        ]

        def sync_cases(db: Any) -> list[tuple[Any, ...]]:
            sync_bucket = gridfs.GridFSBucket(db)
            return [sync_outcome(lambda fn=fn: fn(sync_bucket)) for _, fn in cases]

        expected = await env.sync(sync_cases)
        for (name, fn), sync_result in zip(cases, expected):
            got = await motor_outcome(lambda fn=fn: fn(bucket))
            assert got[:2] == ("raised", NoFile), (name, got)
            assert sync_result[:2] == ("raised", NoFile), (name, sync_result)
            if "gridfs collection" in sync_result[2]:
                # PyMongo's message names the collection (with the client's repr).
                assert got[2].endswith(f"with _id {missing!r}"), (name, got)
            else:
                assert got == sync_result, name
        # Nothing was changed.
        assert [f.filename async for f in bucket.find()] == ["present"]
    fw.probe.assert_below(MAX_BUSY)


# ----------------------------------------------------- delete, rename, drop, find


async def bucket_state(bucket: Any) -> list[tuple[Any, ...]]:
    """(filename, contents, chunks) of every file, sorted."""
    state = []
    async for grid_out in bucket.find():
        chunks = await bucket.collection.chunks.count_documents({"files_id": grid_out._id})
        state.append((grid_out.filename, await grid_out.read(), chunks))
    orphans = await bucket.collection.chunks.count_documents(
        {"files_id": {"$nin": [f._id for f in await bucket.find().to_list()]}}
    )
    return [*sorted(state), ("orphan chunks", orphans)]


def sync_bucket_state(db: Any, bucket_name: str) -> list[tuple[Any, ...]]:
    sync_bucket = gridfs.GridFSBucket(db, bucket_name=bucket_name)
    state = []
    ids = []
    for grid_out in sync_bucket.find():
        chunks = db[bucket_name].chunks.count_documents({"files_id": grid_out._id})
        state.append((grid_out.filename, grid_out.read(), chunks))
        ids.append(grid_out._id)
    orphans = db[bucket_name].chunks.count_documents({"files_id": {"$nin": ids}})
    return [*sorted(state), ("orphan chunks", orphans)]


async def test_delete_and_rename(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=3)
        ids: dict[str, list[Any]] = {}
        for name, data in [
            ("a", b"aaaa"),
            ("b", b"bbbbbbb"),
            ("b", b"bb2"),
            ("c", b"c"),
            ("d", b""),
        ]:
            ids.setdefault(name, []).append(await bucket.upload_from_stream(name, data))

        results = []
        results.append(await bucket.rename(ids["a"][0], "a2"))
        results.append(await bucket.rename_by_name("b", "b2"))
        results.append(await bucket.delete(ids["c"][0]))
        await bucket.upload_from_stream("e", b"eeeeeeeeee")
        await bucket.upload_from_stream("e", b"ee")
        results.append(await bucket.delete_by_name("e"))
        results.append(await bucket.delete(ids["d"][0]))
        assert results == [None] * 5

        def sync_scenario(db: Any) -> list[tuple[Any, ...]]:
            sync_bucket = gridfs.GridFSBucket(db, bucket_name="s", chunk_size_bytes=3)
            sync_ids: dict[str, list[Any]] = {}
            for name, data in [
                ("a", b"aaaa"),
                ("b", b"bbbbbbb"),
                ("b", b"bb2"),
                ("c", b"c"),
                ("d", b""),
            ]:
                sync_ids.setdefault(name, []).append(sync_bucket.upload_from_stream(name, data))
            sync_bucket.rename(sync_ids["a"][0], "a2")
            sync_bucket.rename_by_name("b", "b2")
            sync_bucket.delete(sync_ids["c"][0])
            sync_bucket.upload_from_stream("e", b"eeeeeeeeee")
            sync_bucket.upload_from_stream("e", b"ee")
            sync_bucket.delete_by_name("e")
            sync_bucket.delete(sync_ids["d"][0])
            return sync_bucket_state(db, "s")

        state = await bucket_state(bucket)
        assert state == await env.sync(sync_scenario)
        assert state == [
            ("a2", b"aaaa", 2),
            ("b2", b"bb2", 1),
            ("b2", b"bbbbbbb", 3),
            ("orphan chunks", 0),
        ]
    fw.probe.assert_below(MAX_BUSY)


async def test_drop_the_bucket_collections(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket()
        file_id = await bucket.upload_from_stream("f", b"data")
        names = await env.db.list_collection_names()
        assert {"fs.files", "fs.chunks"} <= set(names)
        # PyMongo 4.20's GridFSBucket (and Motor 3.7.1's) has no drop(): neither does Motor's.
        sync_has_drop = await env.sync(lambda db: hasattr(gridfs.GridFSBucket(db), "drop"))
        assert hasattr(bucket, "drop") is sync_has_drop
        # The root collection is a Motor collection: drop the bucket's collections with it.
        assert bucket.collection.name == "fs"
        assert_motor_class(fw, bucket.collection, "Collection")
        await env.db.drop_collection(bucket.collection.files)
        await bucket.collection.chunks.drop()
        names = await env.db.list_collection_names()
        assert "fs.files" not in names
        assert "fs.chunks" not in names
        with pytest.raises(NoFile):
            await bucket.open_download_stream(file_id)
        assert await bucket.find().to_list() == []
        # The bucket works again; its indexes are made anew.
        file_id = await bucket.upload_from_stream("f", b"again")
        assert await (await bucket.open_download_stream(file_id)).read() == b"again"
        files_keys = [
            i["key"] for i in (await bucket.collection.files.index_information()).values()
        ]
        chunks_info = await bucket.collection.chunks.index_information()
        assert [("filename", 1), ("uploadDate", 1)] in files_keys
        unique = [i["key"] for i in chunks_info.values() if i.get("unique")]
        assert [("files_id", 1), ("n", 1)] in unique
    fw.probe.assert_below(MAX_BUSY)


async def store_find_files(bucket: Any) -> None:
    specs = [("a", 5, 0), ("b", 1, 1), ("c", 9, 2), ("a", 3, 3), ("b", 0, 4)]
    base = datetime.datetime(2021, 6, 1)
    for number, (name, length, meta) in enumerate(specs):
        file_id = f"f{number}"
        await bucket.upload_from_stream_with_id(
            file_id, name, bytes([65 + number]) * length, metadata={"i": meta}
        )
        date = base + datetime.timedelta(minutes=(number * 3) % 5)
        await bucket.collection.files.update_one({"_id": file_id}, {"$set": {"uploadDate": date}})


FIND_QUERIES: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (({"filename": "a"},), {"sort": [("_id", 1)]}),
    (({},), {"sort": [("uploadDate", -1)], "limit": 3}),
    (({"metadata.i": {"$gte": 1}},), {"skip": 1, "limit": 2, "sort": [("length", 1)]}),
    ((), {"filter": {"filename": {"$in": ["b", "c"]}}, "sort": [("uploadDate", 1)]}),
    (({"filename": "zzz"},), {}),
]


async def test_find(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=2)
        await store_find_files(bucket)

        async def summary(grid_outs: list[Any]) -> list[tuple[Any, ...]]:
            result = []
            for grid_out in grid_outs:
                assert_motor_class(fw, grid_out, "GridOut")
                fields = (grid_out._id, grid_out.filename, grid_out.length, grid_out.metadata)
                result.append((*fields, await grid_out.read()))
            return result

        def sync_find(db: Any) -> list[list[tuple[Any, ...]]]:
            sync_bucket = gridfs.GridFSBucket(db)
            return [
                [
                    (g._id, g.filename, g.length, g.metadata, g.read())
                    for g in sync_bucket.find(*args, **kwargs)
                ]
                for args, kwargs in FIND_QUERIES
            ]

        expected = await env.sync(sync_find)
        for (args, kwargs), sync_result in zip(FIND_QUERIES, expected):
            cursor = bucket.find(*args, **kwargs)
            assert not inspect.isawaitable(cursor)
            assert_motor_class(fw, cursor, "GridOutCursor")
            assert await summary(await cursor.to_list()) == sync_result, (args, kwargs)
        assert [len(r) for r in expected] == [2, 3, 2, 3, 0]

        # The files of a cursor are read without open(): no query of the files collection.
        grid_outs = await bucket.find({"_id": "f2"}).to_list()
        mark = recorder.mark()
        assert grid_outs[0].filename == "c"
        assert await grid_outs[0].read() == b"CCCCCCCCC"
        assert [e.command["find"] for e in recorder.started_since(mark, "find")] == ["fs.chunks"]

        # Chaining returns the Motor cursor; its collection is the bucket's root collection.
        cursor = bucket.find()
        assert cursor.sort("uploadDate", 1).skip(1).limit(3) is cursor
        assert cursor.collection.name == "fs"
        assert [g._id for g in await cursor.to_list()] == ["f2", "f4", "f1"]

        # to_list(length), to_list(0), next(), async for, clone().
        cursor = bucket.find({}, sort=[("_id", 1)], batch_size=2)
        assert [g._id for g in await cursor.to_list(2)] == ["f0", "f1"]
        assert await cursor.to_list(0) == []
        first = await cursor.next()
        assert_motor_class(fw, first, "GridOut")
        assert first._id == "f2"
        rest = [g async for g in cursor]
        assert await summary(rest) == await summary(
            await bucket.find({"_id": {"$in": ["f3", "f4"]}}, sort=[("_id", 1)]).to_list()
        )
        with pytest.raises(StopAsyncIteration):
            await cursor.next()
        assert await cursor.to_list() == []
        clone = bucket.find({"filename": "b"}, sort=[("_id", 1)]).clone()
        assert_motor_class(fw, clone, "GridOutCursor")
        assert [await g.read() for g in await clone.to_list()] == [b"B", b""]

        # The deprecated fetch_next / next_object, as Motor 3.7.1 has them.
        cursor = bucket.find({}, sort=[("_id", -1)], batch_size=2)
        found = []
        with pytest.warns(DeprecationWarning) as warned:
            while await cursor.fetch_next:
                grid_out = cursor.next_object()
                assert_motor_class(fw, grid_out, "GridOut")
                found.append((grid_out._id, await grid_out.read()))
        assert {w.category for w in warned} == {DeprecationWarning}
        assert found == [
            ("f4", b""),
            ("f3", b"DDD"),
            ("f2", b"C" * 9),
            ("f1", b"B"),
            ("f0", b"A" * 5),
        ]
    fw.probe.assert_below(MAX_BUSY)


# --------------------------------------------------- abort and the context manager


async def test_abort(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=4)

        async def motor_scenario() -> list[Any]:
            seen: list[Any] = []
            # Aborted while writing.
            grid_in = bucket.open_upload_stream_with_id("w", "w")
            await grid_in.write(b"0123456789")
            aborting = grid_in.abort()
            assert inspect.isawaitable(aborting)
            assert await aborting is None
            seen.append(("while writing", grid_in.closed, await stored(bucket, "w")))
            try:
                await grid_in.write(b"x")
            except ValueError as exc:
                seen.append(raised(exc))
            # Aborted after close: the stored file goes.
            grid_in = bucket.open_upload_stream_with_id("c", "c")
            await grid_in.write(b"0123456789")
            await grid_in.close()
            seen.append(("closed", await stored(bucket, "c")))
            await grid_in.abort()
            seen.append(("after close", grid_in.closed, await stored(bucket, "c")))
            # Chunks already on the server (as when PyMongo flushed its buffer) go too.
            grid_in = bucket.open_upload_stream_with_id("f", "f")
            await grid_in.write(b"01234567")
            await bucket.collection.chunks.insert_many(
                [{"files_id": "f", "n": n, "data": b"abcd"} for n in range(2)]
            )
            await grid_in.abort()
            seen.append(("flushed", grid_in.closed, await stored(bucket, "f")))
            return seen

        def sync_scenario(db: Any) -> list[Any]:
            seen: list[Any] = []
            sync_bucket = gridfs.GridFSBucket(db, bucket_name="s", chunk_size_bytes=4)
            grid_in = sync_bucket.open_upload_stream_with_id("w", "w")
            grid_in.write(b"0123456789")
            grid_in.abort()
            seen.append(("while writing", grid_in.closed, sync_stored(db, "s", "w")))
            try:
                grid_in.write(b"x")
            except ValueError as exc:
                seen.append(raised(exc))
            grid_in = sync_bucket.open_upload_stream_with_id("c", "c")
            grid_in.write(b"0123456789")
            grid_in.close()
            seen.append(("closed", sync_stored(db, "s", "c")))
            grid_in.abort()
            seen.append(("after close", grid_in.closed, sync_stored(db, "s", "c")))
            grid_in = sync_bucket.open_upload_stream_with_id("f", "f")
            grid_in.write(b"01234567")
            db.s.chunks.insert_many([{"files_id": "f", "n": n, "data": b"abcd"} for n in range(2)])
            grid_in.abort()
            seen.append(("flushed", grid_in.closed, sync_stored(db, "s", "f")))
            return seen

        seen = await motor_scenario()
        assert seen == await env.sync(sync_scenario)
        assert seen[0] == ("while writing", True, (0, 0))
        assert seen[2] == ("closed", (1, 3))
        assert seen[3] == ("after close", True, (0, 0))
        assert seen[4] == ("flushed", True, (0, 0))
    fw.probe.assert_below(MAX_BUSY)


async def test_async_with_upload_stream(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=4)

        grid_in = bucket.open_upload_stream("ok", metadata={"m": 1})
        async with grid_in as entered:
            assert entered is grid_in
            await entered.write(b"hello world")
            assert grid_in.closed is False
        assert grid_in.closed is True
        # mypy keeps grid_in.closed narrowed to False past the async with block.
        assert await stored(bucket, grid_in._id) == (1, 3)  # type: ignore[unreachable]
        assert await (await bucket.open_download_stream(grid_in._id)).read() == b"hello world"

        # On an exception: what PyMongo's GridIn.__exit__ does (marks the file closed
        # without storing its document; the exception propagates).
        async def motor_failing() -> tuple[Any, ...]:
            after: Any = None
            with pytest.raises(KeyError, match="boom"):
                async with bucket.open_upload_stream_with_id("x", "x") as failing:
                    await failing.write(b"hello world")
                    raise KeyError("boom")
            try:
                await failing.write(b"more")
            except ValueError as exc:
                after = raised(exc)
            return (failing.closed, await stored(bucket, "x"), after)

        def sync_failing(db: Any) -> tuple[Any, ...]:
            after: Any = None
            sync_bucket = gridfs.GridFSBucket(db, bucket_name="s", chunk_size_bytes=4)
            try:
                with sync_bucket.open_upload_stream_with_id("x", "x") as failing:
                    failing.write(b"hello world")
                    raise KeyError("boom")
            except KeyError:
                pass
            try:
                failing.write(b"more")
            except ValueError as exc:
                after = raised(exc)
            return (failing.closed, sync_stored(db, "s", "x"), after)

        got = await motor_failing()
        assert got == await env.sync(sync_failing)
        assert got[:2] == (True, (0, 0))
    fw.probe.assert_below(MAX_BUSY)  # type: ignore[unreachable]


# ----------------------------------------------------------------------- sessions


async def test_session_accepted_everywhere(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=4)
        session = await env.client.start_session()
        assert_motor_class(fw, session, "ClientSession")
        try:
            mark = recorder.mark()
            file_id = await bucket.upload_from_stream("a", b"0123456789", session=session)
            await bucket.upload_from_stream_with_id(
                "b-id", "b", io.BytesIO(b"abc"), None, None, session
            )
            grid_in = bucket.open_upload_stream("c", session=session)
            await grid_in.write(b"xyz")
            await grid_in.close()
            grid_in = bucket.open_upload_stream_with_id("d-id", "d", session=session)
            async with grid_in:
                await grid_in.write(b"dddd")
            grid_in = env.cls("GridIn")(bucket.collection, session=session, filename="e")
            await grid_in.write(b"eeeee")
            await grid_in.set("late", True)
            await grid_in.close()
            # (Not set() after close: PyMongo's GridIn.set sends that update without the
            # GridIn's session.)
            aborted = bucket.open_upload_stream("f", session=session)
            await aborted.write(b"ff")
            await aborted.abort()

            reads = []
            grid_out = await bucket.open_download_stream(file_id, session=session)
            reads.append(await grid_out.read(3))
            grid_out.seek(8)
            reads.append(await grid_out.read())
            grid_out = await bucket.open_download_stream_by_name("a", session=session)
            reads.append(b"".join([p async for p in grid_out.read_chunks(2, 9)]))
            grid_out = await bucket.open_download_stream_by_name("b", 0, session=session)
            reads.append(b"".join([chunk async for chunk in grid_out]))
            destination = io.BytesIO()
            await bucket.download_to_stream(file_id, destination, session=session)
            await bucket.download_to_stream_by_name("c", destination, session=session)
            reads.append(destination.getvalue())
            files = await bucket.find({"filename": "d"}, session=session).to_list()
            reads.append(await files[0].read())
            grid_out = env.cls("GridOut")(bucket.collection, "b-id", session=session)
            await grid_out.open()
            reads.append(await grid_out.readchunk())
            assert reads == [b"012", b"89", b"2345678", b"abc", b"0123456789xyz", b"dddd", b"abc"]

            await bucket.rename(file_id, "a2", session=session)
            await bucket.rename_by_name("b", "b2", session=session)
            await bucket.delete(file_id, session=session)
            await bucket.delete_by_name("b2", session=session)

            # (Commands from PyMongo's background thread, if any, are not the operations'.)
            started = [e for e in recorder.started_since(mark) if e.thread == threading.get_ident()]
            names = {e.name for e in started}
            assert {"insert", "find", "update", "delete"} <= names, names
            wrong = [
                (e.name, e.command.get("lsid"))
                for e in started
                if e.command.get("lsid") != session.session_id
            ]
            assert wrong == [], f"sent without the session: {wrong}"
        finally:
            await session.end_session()
        assert await bucket_state(bucket) == [
            ("c", b"xyz", 1),
            ("d", b"dddd", 1),
            ("e", b"eeeee", 1),
            ("orphan chunks", 0),
        ]
    fw.probe.assert_below(MAX_BUSY)


# ----------------------------------------------------------------- seek and close

# Files with an open chunk cursor after the first read: more chunks than Motor fetches per
# batch (1 MiB of 4 KiB chunks) and than the server's default first batch (101 documents).
SEEK_CHUNK = 4096
SEEK_LENGTH = 300 * SEEK_CHUNK - 100


async def grid_out_from(bucket: Any, source: str, file_id: Any) -> Any:
    """A GridOut of ``file_id`` got from the bucket, from find(), or made and opened."""
    if source == "open_download_stream":
        return await bucket.open_download_stream(file_id)
    if source == "find":
        return (await bucket.find({"_id": file_id}).to_list())[0]
    grid_out = motor_grid_out_class(bucket)(bucket.collection, file_id)
    return await grid_out.open()


def motor_grid_out_class(bucket: Any) -> Any:
    module = motor.motor_asyncio if "AsyncIO" in type(bucket).__name__ else motor.motor_tornado
    prefix = "AsyncIOMotor" if module is motor.motor_asyncio else "Motor"
    return getattr(module, prefix + "GridOut")


SOURCES = ["open_download_stream", "find", "MotorGridOut"]


async def read_opening_cursor(recorder: Recorder, grid_out: Any, size: int) -> tuple[bytes, int]:
    """Read ``size`` bytes, leaving the GridOut's chunk cursor open on the server: the bytes
    and the cursor's id."""
    mark = recorder.mark()
    data = await grid_out.read(size)
    batches = recorder.chunk_batches(mark)
    assert len(batches) == 1
    cursor_id = batches[0].cursor_id
    assert cursor_id, "the chunk cursor should still be open after the first batch"
    return data, cursor_id


async def open_chunk_cursor(recorder: Recorder, grid_out: Any) -> int:
    """Read a little, leaving the GridOut's chunk cursor open on the server; its id."""
    return (await read_opening_cursor(recorder, grid_out, 10))[1]


# Seek and read steps, run on a Motor GridOut and on PyMongo's: ("seek", pos, whence),
# ("read", size), ("readchunk",), ("tell",).
SEEK_STEPS: list[tuple[Any, ...]] = [
    ("read", 10),
    ("seek", 5 * SEEK_CHUNK + 7, 0),
    ("tell",),
    ("read", SEEK_CHUNK),
    ("seek", -3, 1),
    ("read", 6),
    ("seek", 100, os.SEEK_CUR),
    ("readchunk",),
    ("seek", -10, 2),
    ("tell",),
    ("read", -1),
    ("seek", 0, os.SEEK_END),
    ("read", 5),
    ("seek", SEEK_LENGTH + 50, 0),
    ("read", 5),
    ("tell",),
    ("seek", SEEK_CHUNK, 0),
    ("seek", SEEK_CHUNK, 0),
    ("readchunk",),
    ("seek", 0, 0),
    ("read", 2 * SEEK_CHUNK + 1),
    ("seek", -1, 0),
    ("seek", 0, 3),
    ("tell",),
    ("read", 3),
]


async def test_seek_does_no_io_and_reads_the_right_bytes(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    loop_thread = threading.get_ident()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=SEEK_CHUNK)
        data = await make_data(SEEK_LENGTH)
        file_id = await bucket.upload_from_stream("seek.bin", data)

        def sync_steps(db: Any) -> list[Any]:
            grid_out = gridfs.GridFSBucket(db).open_download_stream(file_id)
            results: list[Any] = []
            for step in SEEK_STEPS:
                if step[0] == "seek":
                    results.append(sync_outcome(lambda s=step, g=grid_out: g.seek(s[1], s[2])))
                elif step[0] == "read":
                    results.append(sync_outcome(lambda s=step: grid_out.read(s[1])))
                elif step[0] == "readchunk":
                    results.append(sync_outcome(grid_out.readchunk))
                else:
                    results.append(sync_outcome(grid_out.tell))
            return results

        expected = await env.sync(sync_steps)
        # The oracle's own sanity: reads after seeks are the file's bytes.
        assert expected[3] == ("returned", data[5 * SEEK_CHUNK + 7 : 6 * SEEK_CHUNK + 7])
        assert expected[10] == ("returned", data[-10:])
        assert expected[21][:2] == ("raised", OSError)

        for source in SOURCES:
            grid_out = await grid_out_from(bucket, source, file_id)
            results: list[Any] = []
            cursor_id = 0
            for number, step in enumerate(SEEK_STEPS):
                if number == 0:
                    assert step == ("read", 10)
                    first, cursor_id = await read_opening_cursor(recorder, grid_out, 10)
                    results.append(("returned", first))
                elif step[0] == "seek":
                    mark = recorder.mark()
                    result = sync_outcome(lambda s=step, g=grid_out: g.seek(s[1], s[2]))
                    assert not inspect.isawaitable(result[1]), "seek() is not awaited"
                    # seek() sent nothing from the loop's thread (the chunk cursor is left
                    # to PyMongo's background thread).
                    on_loop = [e.name for e in recorder.since(mark) if e.thread == loop_thread]
                    assert on_loop == [], (source, step, on_loop)
                    results.append(result)
                elif step[0] == "read":
                    mark = recorder.mark()
                    results.append(await motor_outcome(lambda s=step, g=grid_out: g.read(s[1])))
                    if number == 3:
                        # The chunks after the seek are fetched from the seek's chunk on.
                        finds = recorder.started_since(mark, "find")
                        assert finds[0].command["filter"]["n"] == {"$gte": 5}, source
                elif step[0] == "readchunk":
                    results.append(await motor_outcome(grid_out.readchunk))
                else:
                    tell = grid_out.tell()
                    assert isinstance(tell, int), "tell() is not awaited"
                    results.append(("returned", tell))
            assert [kind(r) for r in results] == [kind(r) for r in expected], source
            assert results == expected, source
            # The cursor left open by the first seek is killed in the background.
            kill = await wait_until(lambda c=cursor_id: recorder.kill_of(c), f"kill {cursor_id}")
            assert kill.thread != loop_thread
            assert kill.command["killCursors"] == "fs.chunks"
            await grid_out.close()

        # whence=2 needs the file's length: a GridOut made directly must be opened first.
        grid_out = env.cls("GridOut")(bucket.collection, file_id)
        with pytest.raises(InvalidOperation):
            grid_out.seek(-1, 2)
        assert grid_out.seek(3) == 3
        assert await grid_out.read(2) == data[3:5]
        assert grid_out.seek(-1, os.SEEK_END) == SEEK_LENGTH - 1
    fw.probe.assert_below(MAX_BUSY)


async def test_close_with_open_chunk_cursor_does_no_io(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    loop_thread = threading.get_ident()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=SEEK_CHUNK)
        data = await make_data(SEEK_LENGTH)
        file_id = await bucket.upload_from_stream("close.bin", data)
        for source in SOURCES:
            for how in ("close", "async with"):
                grid_out = await grid_out_from(bucket, source, file_id)
                if how == "close":
                    cursor_id = await open_chunk_cursor(recorder, grid_out)
                    mark = recorder.mark()
                    closing = grid_out.close()
                    on_loop = [e.name for e in recorder.since(mark) if e.thread == loop_thread]
                    assert inspect.isawaitable(closing)
                    assert await closing is None
                else:
                    async with grid_out as entered:
                        assert entered is grid_out
                        cursor_id = await open_chunk_cursor(recorder, grid_out)
                        mark = recorder.mark()
                    on_loop = [e.name for e in recorder.since(mark) if e.thread == loop_thread]
                assert on_loop == [], (source, how, on_loop)
                assert grid_out.closed is True
                kill = await wait_until(
                    lambda c=cursor_id: recorder.kill_of(c), f"kill {cursor_id}"
                )
                assert kill.thread != loop_thread, (source, how)
        # Closing a file that never read anything is fine too.
        grid_out = await bucket.open_download_stream(file_id)
        await grid_out.close()
        assert grid_out.closed is True
    fw.probe.assert_below(MAX_BUSY)


# -------------------------------------------------------------------- read_chunks


async def test_read_chunks_fetches_only_the_covering_chunks(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket(chunk_size_bytes=CHUNK)
        length = 50 * CHUNK + 500
        data = await make_data(length)
        file_id = await bucket.upload_from_stream("ranges.bin", data)
        grid_out = await bucket.open_download_stream(file_id)
        # (start, end) -> chunks that cover it
        cases: list[tuple[int, int | None, int]] = [
            (2500, 4500, 3),
            (0, 1, 1),
            (CHUNK, 2 * CHUNK, 1),
            (CHUNK - 1, CHUNK + 1, 2),
            (49 * CHUNK + 999, None, 2),
            (50 * CHUNK, length, 1),
            (length - 1, length, 1),
            (0, None, 51),
            (17, 17, 0),
            (length, None, 0),
        ]
        for start, end, chunks in cases:
            mark = recorder.mark()
            pieces = [p async for p in grid_out.read_chunks(start, end)]
            assert b"".join(pieces) == data[start:end], (start, end)
            batches = recorder.chunk_batches(mark)
            assert sum(b.docs for b in batches) == chunks, (start, end, batches)
            if chunks == 0:
                assert recorder.started_since(mark) == [], (start, end)
            # No cursor is left behind for the loop to kill.
            assert all(b.cursor_id == 0 for b in batches[-1:]), (start, end)
        assert grid_out.tell() == 0

        # A bad range: PyMongo has no read_chunks; Motor raises ValueError.
        for start, end in ((-1, 5), (10, 5), (length + 1, None)):
            with pytest.raises(ValueError):
                async for _ in grid_out.read_chunks(start, end):
                    pass

        # A GridOut made directly is opened by read_chunks.
        grid_out = env.cls("GridOut")(bucket.collection, file_id)
        assert b"".join([p async for p in grid_out.read_chunks(999, 1002)]) == data[999:1002]
    fw.probe.assert_below(MAX_BUSY)


# The corrupt files: 18 bytes in chunks of 4 (n = 0..4, the last one 2 bytes), tampered.
CORRUPT_DATA = b"0123456789abcdefgh"
CORRUPTIONS: dict[str, Callable[[Any, Any], Awaitable[Any]]] = {
    "missing chunk": lambda chunks, fid: chunks.delete_one({"files_id": fid, "n": 2}),
    "truncated chunk": lambda chunks, fid: chunks.update_one(
        {"files_id": fid, "n": 2}, {"$set": {"data": b"89"}}
    ),
    "extra chunk": lambda chunks, fid: chunks.insert_one({"files_id": fid, "n": 5, "data": b"xy"}),
    "missing last chunk": lambda chunks, fid: chunks.delete_one({"files_id": fid, "n": 4}),
    "truncated last chunk": lambda chunks, fid: chunks.update_one(
        {"files_id": fid, "n": 4}, {"$set": {"data": b"g"}}
    ),
}
CORRUPT_RANGES: list[tuple[int, int | None]] = [
    (0, None),
    (0, 18),
    (0, 4),
    (0, 8),
    (3, 9),
    (8, 12),
    (9, 10),
    (12, 16),
    (12, 18),
    (16, 18),
    (17, None),
    (5, 5),
]


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_corrupt_files_raise_like_pymongo(
    fw: Framework, server: Any, corruption: str
) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=4)
        file_id = await bucket.upload_from_stream("corrupt.bin", CORRUPT_DATA)
        await CORRUPTIONS[corruption](bucket.collection.chunks, file_id)

        def sync_reads(db: Any) -> dict[Any, tuple[Any, ...]]:
            sync_bucket = gridfs.GridFSBucket(db)
            results: dict[Any, tuple[Any, ...]] = {}
            results["read()"] = sync_outcome(
                lambda: sync_bucket.open_download_stream(file_id).read()
            )
            for start, end in CORRUPT_RANGES:

                def read_range(start: int = start, end: int | None = end) -> bytes:
                    grid_out = sync_bucket.open_download_stream(file_id)
                    grid_out.seek(start)
                    return grid_out.read(-1 if end is None else end - start)

                results[(start, end)] = sync_outcome(read_range)
            return results

        expected = await env.sync(sync_reads)
        assert expected["read()"][:2] == ("raised", CorruptGridFile), expected["read()"]

        # Motor's read() is PyMongo's.
        grid_out = await bucket.open_download_stream(file_id)
        assert await motor_outcome(grid_out.read) == expected["read()"]

        async def read_chunks(start: int, end: int | None) -> bytes:
            grid_out = await bucket.open_download_stream(file_id)
            return b"".join([p async for p in grid_out.read_chunks(start, end)])

        # read_chunks over the whole file: the same error, the same message.
        got = await motor_outcome(lambda: read_chunks(0, None))
        assert got == expected["read()"], corruption
        # Over ranges: an error where PyMongo's reader has one (reading the same bytes
        # after a seek), the same bytes where it has none.
        mismatches = []
        for start, end in CORRUPT_RANGES:
            got = await motor_outcome(lambda start=start, end=end: read_chunks(start, end))
            if kind(got) != kind(expected[(start, end)]) or (
                got[0] == "returned" and got != expected[(start, end)]
            ):
                mismatches.append(((start, end), got, expected[(start, end)]))
        assert mismatches == [], corruption
    fw.probe.assert_below(MAX_BUSY)


# ------------------------------------------------------------------------- memory


def batch_report(batches: list[Event]) -> list[tuple[int, int]]:
    return [(b.docs, b.data_bytes) for b in batches]


async def test_reading_10mb_fetches_about_1mib_per_batch(fw: Framework, server: Any) -> None:
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket()
        data = await make_data(BIG, "memory")
        expected = await digest([data])
        file_id = await bucket.upload_from_stream("big.bin", data)
        chunks = math.ceil(BIG / DEFAULT_CHUNK)
        per_batch = CHUNK_BATCH_BYTES // DEFAULT_CHUNK
        assert per_batch >= 1

        over: dict[str, Any] = {}
        for source in SOURCES:
            for how in ("read(chunk_size)", "async for", "read()"):
                grid_out = await grid_out_from(bucket, source, file_id)
                mark = recorder.mark()
                pieces = []
                if how == "read(chunk_size)":
                    while data_piece := await grid_out.read(grid_out.chunk_size):
                        pieces.append(data_piece)
                elif how == "async for":
                    pieces = [chunk async for chunk in grid_out]
                else:
                    pieces = [await grid_out.read()]
                assert await digest(pieces) == expected, (source, how)
                batches = recorder.chunk_batches(mark)
                assert sum(b.docs for b in batches) == chunks, (source, how)
                if any(b.data_bytes > CHUNK_BATCH_BYTES for b in batches):
                    over[f"{source}, {how}"] = batch_report(batches)
                else:
                    assert len(batches) == math.ceil(chunks / per_batch), (source, how)
        assert over == {}, f"batches of more than {CHUNK_BATCH_BYTES} bytes: {over}"

        # read_chunks over a range of several batches fetches the range's chunks only.
        grid_out = await bucket.open_download_stream(file_id)
        start, end = 5 * DEFAULT_CHUNK + 1, 13 * DEFAULT_CHUNK - 1
        mark = recorder.mark()
        pieces = [p async for p in grid_out.read_chunks(start, end)]
        assert await digest(pieces) == await digest_of_slice(data, start, end)
        batches = recorder.chunk_batches(mark)
        assert sum(b.docs for b in batches) == 8
        assert all(b.data_bytes <= CHUNK_BATCH_BYTES for b in batches), batch_report(batches)
    fw.probe.assert_below(MAX_BUSY)


async def test_download_to_stream_10mb_fetches_about_1mib_per_batch(
    fw: Framework, server: Any
) -> None:
    # The module's promise: reading stays in bounded memory, download_to_stream included.
    recorder = Recorder()
    async with gridfs_env(fw, server, event_listeners=[recorder]) as env:
        bucket = env.bucket()
        data = await make_data(BIG, "download")
        expected = await digest([data])
        file_id = await bucket.upload_from_stream("big.bin", data)
        over = {}
        for how in ("download_to_stream", "download_to_stream_by_name"):
            destination = io.BytesIO()
            mark = recorder.mark()
            if how == "download_to_stream":
                await bucket.download_to_stream(file_id, destination)
            else:
                await bucket.download_to_stream_by_name("big.bin", destination)
            assert await in_thread(lambda d=destination: sha([d.getvalue()])) == expected
            batches = recorder.chunk_batches(mark)
            if any(b.data_bytes > CHUNK_BATCH_BYTES for b in batches):
                over[how] = batch_report(batches)
        assert over == {}, f"batches of more than {CHUNK_BATCH_BYTES} bytes: {over}"


# ------------------------------------------------------------------ the bucket itself


async def test_bucket_options(fw: Framework, server: Any) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(bucket_name="photos", chunk_size_bytes=3)
        assert bucket.collection.name == "photos"
        file_id = await bucket.upload_from_stream("p", b"1234567")
        assert await env.db["photos.chunks"].count_documents({"files_id": file_id}) == 3
        assert await env.db["fs.files"].count_documents({}) == 0
        # A per-file chunk size wins over the bucket's.
        file_id = await bucket.upload_from_stream("q", b"1234567", chunk_size_bytes=5)
        assert (await bucket.open_download_stream(file_id)).chunk_size == 5
        assert await env.db["photos.chunks"].count_documents({"files_id": file_id}) == 2
    fw.probe.assert_below(MAX_BUSY)


async def test_bucket_collection_argument_is_a_deprecated_alias(fw: Framework, server: Any) -> None:
    # Motor 3.7.1's warning, word for word (warning filters match on it).
    async with gridfs_env(fw, server) as env:
        await env.bucket(bucket_name="photos").upload_from_stream("p", b"1234567")
        warning = 'the "collection" parameter is deprecated, use "bucket_name" instead'
        with pytest.warns(DeprecationWarning, match=f"^{re.escape(warning)}$"):
            legacy = env.cls("GridFSBucket")(env.db, collection="photos")
        assert legacy.collection.name == "photos"
        assert await (await legacy.open_download_stream_by_name("p")).read() == b"1234567"
    fw.probe.assert_below(MAX_BUSY)


async def test_set_is_motor_3_7_1_s_attribute_assignment(fw: Framework, server: Any) -> None:
    # Motor 3.7.1's GridIn.set(name, value) is PyMongo's grid_in.name = value: the name of a
    # GridIn property sets the property (content_type: the contentType field), a read-only
    # one raises, any other name is a field as given (PyMongo's GridIn.set).
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket()

        async def motor_scenario() -> dict[str, Any]:
            seen: dict[str, Any] = {}
            grid_in = bucket.open_upload_stream_with_id("set-1", "a.txt")
            with pytest.warns(DeprecationWarning):
                await grid_in.set("content_type", "text/html")
            await grid_in.set(name="filename", value="b.txt")
            seen["length"] = await motor_outcome(lambda: grid_in.set("length", 5))
            await grid_in.set("colour", "red")
            await grid_in.write(b"abc")
            await grid_in.close()
            # Closed: the file document is updated at once.
            with pytest.warns(DeprecationWarning):
                await grid_in.set("content_type", "text/plain")
            seen["doc"] = await bucket.collection.files.find_one(
                {"_id": "set-1"}, {"uploadDate": 0}
            )
            return seen

        def sync_scenario(db: Any) -> dict[str, Any]:
            seen: dict[str, Any] = {}
            sync_bucket = gridfs.GridFSBucket(db, bucket_name="s")
            grid_in = sync_bucket.open_upload_stream_with_id("set-1", "a.txt")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                grid_in.content_type = "text/html"
            grid_in.filename = "b.txt"

            def set_length() -> None:
                grid_in.length = 5

            seen["length"] = sync_outcome(set_length)
            grid_in.colour = "red"
            grid_in.write(b"abc")
            grid_in.close()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                grid_in.content_type = "text/plain"
            seen["doc"] = db.s.files.find_one({"_id": "set-1"}, {"uploadDate": 0})
            return seen

        seen = await motor_scenario()
        assert seen == await env.sync(sync_scenario)
        assert kind(seen["length"]) == ("raised", AttributeError)
        doc = seen["doc"]
        assert (doc["contentType"], doc["filename"], doc["colour"]) == (
            "text/plain",
            "b.txt",
            "red",
        )
        assert "content_type" not in doc and doc["length"] == 3
    fw.probe.assert_below(MAX_BUSY)


class _Handler:
    """What ``stream_to_handler`` needs of a Tornado ``RequestHandler``."""

    def __init__(self, flush_returns_future: bool) -> None:
        self.pieces: list[bytes] = []
        self.flushed = 0
        self.flush_returns_future = flush_returns_future

    def write(self, data: bytes) -> None:
        self.pieces.append(data)

    def flush(self) -> Any:
        self.flushed += 1
        if not self.flush_returns_future:
            return None  # Motor 3.7.1 never awaited flush()
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.mark.parametrize("flush_returns_future", [True, False])
async def test_stream_to_handler(fw: Framework, server: Any, flush_returns_future: bool) -> None:
    async with gridfs_env(fw, server) as env:
        bucket = env.bucket(chunk_size_bytes=1000)
        data = await make_data(5500)
        await bucket.upload_from_stream_with_id("s", "s.bin", data)
        grid_out = await bucket.open_download_stream("s")
        handler = _Handler(flush_returns_future)
        await grid_out.stream_to_handler(handler)
        assert b"".join(handler.pieces) == data
        assert handler.flushed == len(handler.pieces) >= 1
        # A range of the file.
        grid_out = await bucket.open_download_stream("s")
        handler = _Handler(flush_returns_future)
        await grid_out.stream_to_handler(handler, 1500, 4100)
        assert b"".join(handler.pieces) == data[1500:4100]
        # Motor 3.7.1's io_loop attribute of the GridFS objects.
        loop = env.client.io_loop
        grid_in = bucket.open_upload_stream("t")
        assert bucket.io_loop is grid_out.io_loop is grid_in.io_loop is loop
        await grid_in.abort()
    fw.probe.assert_below(MAX_BUSY)
