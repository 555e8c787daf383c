"""GridFS, framework-neutral (see :mod:`motor.core`): buckets, files in and out.

Wraps PyMongo's :mod:`gridfs` classes (``GridFSBucket``, ``GridIn``, ``GridOut``,
``GridOutCursor``) as Motor 3.7.1 does: what reads or writes the server is
asynchronous, the rest is plain.

Reading stays in bounded memory.  A ``GridOut`` reads its chunks through one cursor on
the chunks collection; Motor gives that cursor a batch size of about
:data:`CHUNK_BATCH_BYTES` (PyMongo's default first batch is up to 16 MB of chunks), and
:meth:`AgnosticGridOut.read_chunks` reads a byte range with a cursor limited to the
chunks that cover it, which is what the web handlers serve ``Range`` requests with.

Nothing here blocks the loop: ``seek()`` and ``close()`` hand a chunk cursor that is
still open to PyMongo's background thread instead of killing it on the loop.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import warnings
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, ClassVar

from gridfs import DEFAULT_CHUNK_SIZE
from gridfs.errors import CorruptGridFile
from gridfs.synchronous.grid_file import GridFSBucket, GridIn, GridOut, GridOutCursor
from pymongo.errors import InvalidOperation
from pymongo.synchronous.cursor import Cursor

from motor.core import (
    _COMPLETED,
    AgnosticBase,
    AgnosticCollection,
    AgnosticDatabase,
    _check_first_argument,
)
from motor.cursors import _STOP, AgnosticCursor, _close_cancelled, _next_or_stop, _to_list
from motor.green import pool as _green_pool
from motor.green.hub import Cancelled, current_child
from motor.green.socket import _pause_if_spent
from motor.metaprogramming import Async, Delegate, ReadOnly

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = [
    "CHUNK_BATCH_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "AgnosticGridFSBucket",
    "AgnosticGridIn",
    "AgnosticGridOut",
    "AgnosticGridOutCursor",
]

#: About how many bytes of chunks a GridOut's chunk cursor fetches per batch.
CHUNK_BATCH_BYTES = 1024 * 1024

# The attribute in which CPython's io.IOBase keeps its "closed" flag (Modules/_io/iobase.c).
# test_gridfs.py's test of a GridOut closed before it was opened fails if it changes.
_IOBASE_CLOSED = "__IOBase_closed"


def _batch_for(chunk_size: int) -> int:
    return max(1, CHUNK_BATCH_BYTES // max(1, chunk_size))


class _BatchedChunks:
    """A GridOut's chunks collection, whose ``find`` cursors fetch small batches.

    PyMongo's ``GridOutChunkIterator`` calls ``chunks.find(...)``; the default first
    batch would hold up to 16 MB of chunks in memory at once.
    """

    __slots__ = ("_chunks", "_grid_out")

    def __init__(self, chunks: Any, grid_out: GridOut) -> None:
        self._chunks = chunks
        self._grid_out = grid_out

    def find(self, *args: Any, **kwargs: Any) -> Cursor[Any]:
        cursor: Cursor[Any] = self._chunks.find(*args, **kwargs)
        cursor.batch_size(_batch_for(int(self._grid_out.chunk_size)))
        return cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._chunks, name)


class _PausingGridOut(GridOut):
    """PyMongo's GridOut, letting the loop run between two chunks once the loop
    iteration's work budget is spent: ``read()`` of a file of many small chunks takes
    them from one batch in a Python loop with no I/O in between."""

    def readchunk(self) -> bytes:
        _pause_if_spent()
        return super().readchunk()


def _batched(grid_out: GridOut) -> GridOut:
    """Make ``grid_out`` read its chunks in small batches (see :class:`_BatchedChunks`),
    pausing between two when the loop's work budget is spent (:class:`_PausingGridOut`)."""
    chunks = grid_out._chunks
    if not isinstance(chunks, _BatchedChunks):
        grid_out._chunks = _BatchedChunks(chunks, grid_out)  # type: ignore[assignment]
    if type(grid_out) is GridOut:
        object.__setattr__(grid_out, "__class__", _PausingGridOut)
    return grid_out


def _detach_chunk_cursor(grid_out: GridOut) -> None:
    """Hand ``grid_out``'s open chunk cursor, if any, to PyMongo's background kill queue.

    PyMongo's ``seek()`` and ``close()`` close the cursor, which sends ``killCursors``
    from the calling thread; on the loop's thread that would block.
    """
    chunk_iter = grid_out._chunk_iter
    cursor = getattr(chunk_iter, "_cursor", None)
    if cursor is not None:
        cursor._die_no_lock()
        cursor._sock_mgr = None
        chunk_iter._cursor = None


_SET_DOC = """Set a field of the file document. Asynchronous.

Stored when the file is closed; once it is closed, the file document on the server is
updated at once.  As in Motor 3.7.1, this is PyMongo's attribute assignment
(``grid_in.name = value``): the name of one of GridIn's properties sets that property
(``set("content_type", "text/html")`` sets the ``contentType`` field, and a read-only one
such as ``length`` raises :class:`AttributeError`); any other name is stored as given, as
PyMongo's ``GridIn.set`` does.  Other fields appear as attributes of the ``GridOut``
objects read from the file.
"""


def _set_field(grid_in: GridIn, name: str, value: Any) -> None:
    # Runs on a child: PyMongo's __setattr__, which updates a closed file's document.
    setattr(grid_in, name, value)


class _BatchedGridIn(GridIn):
    """PyMongo's GridIn, sending its chunks about every :data:`CHUNK_BATCH_BYTES`.

    PyMongo buffers up to 48 MB of chunks and sends them with one ``insert_many``:
    encoding that many bytes at once holds the loop for milliseconds per megabyte.
    Between two chunks, the loop runs once its iteration's work budget is spent.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        # PyMongo's GridIn.__setattr__ tells its own attributes and properties
        # (content_type: the contentType field) from other fields of the file document
        # by looking in the instance's and its class's __dict__: GridIn's, not this one's.
        if name in GridIn.__dict__ and name not in self.__dict__:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _flush_data(self, data: Any, force: bool = False) -> None:
        # Called once per chunk: a write of many chunks is a Python loop with no I/O
        # until the batch is sent, so the loop runs between two chunks once the loop
        # iteration's work budget is spent.
        _pause_if_spent()
        if self._buffered_docs_size + len(data) >= CHUNK_BATCH_BYTES:
            force = True
        super()._flush_data(data, force)


# PyMongo's messages name the class ("property 'length' of 'GridIn' object has no setter").
_BatchedGridIn.__name__ = _BatchedGridIn.__qualname__ = GridIn.__name__


def _batched_in(grid_in: GridIn) -> GridIn:
    object.__setattr__(grid_in, "__class__", _BatchedGridIn)  # GridIn's own __setattr__
    return grid_in


class _BatchedBucket(GridFSBucket):
    """PyMongo's GridFSBucket whose files, in and out, move in batches of about
    :data:`CHUNK_BATCH_BYTES` (PyMongo's own upload_from_stream and download_to_stream
    call these methods)."""

    def open_upload_stream(self, *args: Any, **kwargs: Any) -> GridIn:
        return _batched_in(super().open_upload_stream(*args, **kwargs))

    def open_upload_stream_with_id(self, *args: Any, **kwargs: Any) -> GridIn:
        return _batched_in(super().open_upload_stream_with_id(*args, **kwargs))

    def open_download_stream(self, *args: Any, **kwargs: Any) -> GridOut:
        return _batched(super().open_download_stream(*args, **kwargs))

    def open_download_stream_by_name(self, *args: Any, **kwargs: Any) -> GridOut:
        return _batched(super().open_download_stream_by_name(*args, **kwargs))


class AgnosticGridOutCursor(AgnosticCursor[Any]):
    """A cursor over GridFS files (``bucket.find()``): yields Motor ``GridOut`` objects,
    ready to read (no ``open()`` needed)."""

    __pymongo_class__: ClassVar[type | None] = GridOutCursor
    _agnostic_name = "GridOutCursor"

    clone = Delegate(wrap="GridOutCursor")

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        # The bucket's root collection ("fs"), as in Motor 3.7.1.
        if isinstance(parent, AgnosticGridFSBucket):
            self._parent = parent.collection
        else:
            super()._init_from_parent(parent)

    def _grid_out(self, grid_out: GridOut) -> Any:
        return self._wrap("GridOut", _batched(grid_out))

    def _document(self, document: Any) -> Any:
        return self._convert_list([document])[0]

    def _convert_list(self, documents: list[Any]) -> list[Any]:
        delegate = self.delegate
        return [
            self._grid_out(
                GridOut(delegate._root_collection, file_document=doc, session=delegate.session)
            )
            for doc in documents
        ]

    async def next(self) -> Any:
        """The next file, as a Motor ``GridOut``. Asynchronous; raises
        :class:`StopAsyncIteration` at the end."""
        delegate = self.delegate
        if delegate._data:
            # A buffered file document: PyMongo makes the GridOut without I/O.
            return self._grid_out(delegate.next())
        if not self.alive:
            # Closed or exhausted: nothing to fetch, and not started by this.
            raise StopAsyncIteration
        grid_out = await self._fetch(_next_or_stop)
        if grid_out is _STOP:
            raise StopAsyncIteration
        return self._grid_out(grid_out)

    __anext__ = next


# GridOuts made between two looks at the work budget in a GridFS to_list: each costs
# 15-35 us (PyMongo's GridOut makes three Collection objects), so a few of them, not a
# whole batch, run between two chances for the loop.
GRID_OUTS_PER_LOOK = 8


def _to_list_of_files(cursor: AgnosticGridOutCursor, length: int | None) -> list[Any]:
    # Runs on a child greenlet: PyMongo's Cursor.to_list on the file documents (its
    # GridOutCursor.to_list raises StopIteration past the end), made into GridOuts a few
    # at a time, the loop running between two of those once the iteration's work budget
    # is spent.
    delegate = cursor.delegate
    files = _to_list(cursor, length, Cursor.to_list)
    child = current_child()
    if child is None or len(files) <= GRID_OUTS_PER_LOOK:
        return cursor._convert_list(files)
    # The file documents go back to the front of the buffer and are taken from it a
    # group at a time: the cursor stays alive, with its documents in order, until a
    # cancelled child has unwound (on a later loop iteration) and put back what it took.
    # Another task's next() during a pause takes documents from the front too: each
    # goes to one of them.
    data = delegate._data
    data.extendleft(reversed(files))
    count = len(files)
    taken: list[Any] = []
    result: list[Any] = []
    try:
        while count:
            if taken:
                _green_pool._pause_if_spent_on(child.hub)
            step = min(count, GRID_OUTS_PER_LOOK, len(data))
            if not step:
                break
            group = [data.popleft() for _ in range(step)]
            taken += group
            result += cursor._convert_list(group)
            count -= step
    except Cancelled:
        # As a cursor's to_list does: what it took goes back, and the cursor is closed.
        data.extendleft(reversed(taken))
        _close_cancelled(delegate)
        raise
    return result


AgnosticGridOutCursor._to_list_child = staticmethod(_to_list_of_files)  # type: ignore[arg-type]


class _WithIOLoop(AgnosticBase):
    """GridFS classes have Motor 3.7.1's ``io_loop`` attribute."""

    @property
    def io_loop(self) -> Any:
        """The framework's event loop this object's client is bound to (as
        :meth:`get_io_loop`)."""
        return self.get_io_loop()


class AgnosticGridOut(_WithIOLoop):
    """A GridFS file being read: ``await bucket.open_download_stream(file_id)``.

    Its properties (``filename``, ``length``, ``metadata``, ...) need the file's
    document: a ``GridOut`` from the bucket or a ``find()`` cursor has it; one made
    directly must ``await grid_out.open()`` first.  ``async for chunk in grid_out``
    reads the file chunk by chunk.
    """

    __pymongo_class__ = GridOut
    _agnostic_name = "GridOut"

    read = Async()
    readchunk = Async()
    readline = Async()
    readlines = Async()
    tell = Delegate()
    readable = Delegate()
    seekable = Delegate()
    writable = Delegate()
    isatty = Delegate()
    fileno = Delegate()
    flush = Delegate()
    truncate = Delegate()
    write = Delegate()
    writelines = Delegate()

    def __init__(
        self,
        root_collection: AgnosticCollection[Any],
        file_id: Any = None,
        file_document: Any = None,
        delegate: Any = None,
        session: Any = None,
    ) -> None:
        _check_first_argument(self, root_collection, "Collection")
        if delegate is None:
            session = getattr(session, "_motor_delegate", session)
            delegate = GridOut(root_collection.delegate, file_id, file_document, session=session)
        self.delegate = _batched(delegate)
        self._binding = root_collection._binding
        self._client = root_collection._client
        self._root_collection = root_collection

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        # From a bucket, or from a cursor over a bucket's files: the root collection.
        self.delegate = _batched(self.delegate)
        if isinstance(parent, AgnosticGridFSBucket):
            self._root_collection = parent.collection
        else:
            self._root_collection = parent.collection  # type: ignore[attr-defined]

    def _opened(self, what: str) -> Any:
        # The file document; InvalidOperation before open(), as Motor 3.7.1.
        file = self.delegate._file
        if not file:
            raise InvalidOperation(
                f"You must call {type(self).__name__}.open() before accessing the {what} property"
            )
        return file

    def _property(name: str) -> Any:  # type: ignore[misc]
        def fget(self: AgnosticGridOut) -> Any:
            self._opened(name)
            return getattr(self.delegate, name)

        fget.__name__ = name
        fget.__doc__ = getattr(GridOut, name).__doc__
        return property(fget)

    _id = _property("_id")
    aliases = _property("aliases")
    chunk_size = _property("chunk_size")
    content_type = _property("content_type")
    filename = _property("filename")
    length = _property("length")
    md5 = _property("md5")
    metadata = _property("metadata")
    name = _property("name")
    upload_date = _property("upload_date")
    del _property

    def __getattr__(self, name: str) -> Any:
        # An attribute of PyMongo's GridOut (``_file``, the file document, as in Motor
        # 3.7.1), or, once the file is open, a field of its document (PyMongo's
        # GridOut.__getattr__, which would open the file first).  Before open(), a
        # public name raises InvalidOperation, as in Motor 3.7.1, and a private one is
        # missing (for getattr(obj, name, default)).
        if name.startswith("__") or name == "delegate":
            raise AttributeError(name)
        delegate = self.delegate
        if name.startswith("_"):
            try:
                return object.__getattribute__(delegate, name)
            except AttributeError:
                if not delegate._file:
                    raise
        else:
            self._opened(name)
        return getattr(delegate, name)

    def open(self) -> asyncio.Future[Any]:
        """Fetch this file's document from the server (once). Asynchronous: resolves
        to this ``GridOut``."""
        return self._binding.call(_open, (self,), {})

    def seek(self, pos: int, whence: int = 0) -> int:
        """Set the position in the file (no I/O); returns the new position."""
        delegate = self.delegate
        if whence == 2:
            self._opened("length")
            target = int(delegate.length) + pos
        else:
            target = pos + (delegate._position if whence == 1 else 0)
        if target != delegate._position and target >= 0 and whence in (0, 1, 2):
            _detach_chunk_cursor(delegate)
        position: int = delegate.seek(pos, whence)
        return position

    def close(self) -> Awaitable[None]:
        """Close this file (no I/O: a chunk cursor still open is killed in the
        background).  Returns an awaitable that is already done."""
        delegate = self.delegate
        _detach_chunk_cursor(delegate)
        if delegate._file:
            delegate.close()
        else:
            # io.IOBase.close() first asks for the flag below, and PyMongo's GridOut,
            # which lacks it until closed, opens the file (I/O) in __getattr__ to answer.
            vars(delegate)[_IOBASE_CLOSED] = True
        return _COMPLETED

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        delegate = self.delegate
        if not delegate._file and _IOBASE_CLOSED not in vars(delegate):
            # PyMongo's GridOut would open the file (I/O) to answer: as for the file's
            # other properties, InvalidOperation until open(), as in Motor 3.7.1.
            self._opened("closed")
        return bool(delegate.closed)

    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> bytes:
        chunk: bytes = await self.readchunk()
        if chunk:
            return chunk
        raise StopAsyncIteration

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def read_chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Read the bytes ``[start, end)`` of the file (to its end when ``end`` is
        None), piece by piece: ``async for data in grid_out.read_chunks(100, 200)``.

        Reads only the chunks that cover the range, in batches of about
        :data:`CHUNK_BATCH_BYTES`; each piece is at most one chunk.  Raises PyMongo's
        :class:`~gridfs.errors.CorruptGridFile` on a missing, extra or truncated chunk.
        Does not move the file's position (see :meth:`seek`).
        """
        if not self.delegate._file:
            await self.open()
        length = int(self.delegate.length)
        chunk_size = int(self.delegate.chunk_size)
        end = length if end is None else min(end, length)
        if start < 0 or start > end:
            raise ValueError(f"invalid range [{start}, {end}) for a file of {length} bytes")
        if start == end:
            return
        first = start // chunk_size
        last = (end - 1) // chunk_size
        # Reading to the end also asks for one chunk past it, as PyMongo's reader
        # does, to report a file with extra chunks.
        to_the_end = end == length
        wanted = last - first + (2 if to_the_end else 1)
        query: dict[str, Any] = {"$gte": first} if to_the_end else {"$gte": first, "$lte": last}
        chunks = self._root_collection.chunks.find(
            {"files_id": self.delegate._id, "n": query},
            sort=[("n", 1)],
            session=self.delegate._session,
        )
        chunks.limit(wanted).batch_size(min(wanted, _batch_for(chunk_size)))
        expected = first
        count = math.ceil(length / chunk_size)
        try:
            async for chunk in chunks:
                data = _check_chunk(chunk, expected, count, chunk_size, length)
                begin = start - expected * chunk_size if expected == first else 0
                stop = end - expected * chunk_size if expected == last else len(data)
                expected += 1
                yield bytes(data[begin:stop])
            if expected <= last:
                raise CorruptGridFile(f"no chunk #{expected}")
        finally:
            if chunks.alive:
                await chunks.close()

    async def stream_to_handler(
        self, request_handler: Any, start: int = 0, end: int | None = None
    ) -> None:
        """Write the file (or the bytes ``[start, end)`` of it) to a Tornado
        ``RequestHandler``, flushing after each chunk, so that no more than a chunk
        is held at once.  Set the headers first.  Tornado's ``flush()`` returns a future,
        which is awaited (the next chunk waits until this one is sent); a handler whose
        ``flush()`` returns something else, as Motor 3.7.1 allowed, works too."""
        chunks = self.read_chunks(start, end)
        try:
            async for data in chunks:
                request_handler.write(data)
                flushed = request_handler.flush()
                if inspect.isawaitable(flushed):
                    await flushed
        finally:
            # Closes the chunk cursor now if the client went away mid-file.
            await chunks.aclose()  # type: ignore[attr-defined]


def _check_chunk(chunk: Any, expected: int, count: int, chunk_size: int, length: int) -> Any:
    """The data of chunk ``expected`` of a file of ``count`` chunks, after PyMongo's
    checks (``GridOutChunkIterator``): the right number, the right length."""
    n = chunk["n"]
    if n != expected:
        raise CorruptGridFile(
            f"Missing chunk: expected chunk #{expected} but found chunk with n={n}"
        )
    data = chunk["data"]
    if n >= count and len(data):
        raise CorruptGridFile(
            f"Extra chunk found: expected {count} chunks but found chunk with n={n}"
        )
    # (An empty extra chunk fails the length check below, as in PyMongo's reader.)
    expected_length = chunk_size if n < count - 1 else length - chunk_size * (count - 1)
    if len(data) != expected_length:
        raise CorruptGridFile(
            f"truncated chunk #{n}: expected chunk length to be {expected_length} but "
            f"found chunk with length {len(data)}"
        )
    return data


def _open(grid_out: AgnosticGridOut) -> AgnosticGridOut:
    # Runs on a child greenlet.
    grid_out.delegate.open()
    return grid_out


class AgnosticGridIn(_WithIOLoop):
    """A GridFS file being written: ``bucket.open_upload_stream(filename)``.

    ``await write(data)`` (bytes or a file-like object), ``await close()`` to finish
    the file; ``async with`` closes it on exit.  ``await set(name, value)`` sets a field
    of the file document.
    """

    __pymongo_class__ = GridIn
    _agnostic_name = "GridIn"

    _id = ReadOnly()
    chunk_size = ReadOnly()
    closed = ReadOnly()
    content_type = ReadOnly()
    filename = ReadOnly()
    length = ReadOnly()
    md5 = ReadOnly()
    name = ReadOnly()
    upload_date = ReadOnly()
    read = Delegate()
    readable = Delegate()
    seekable = Delegate()
    writeable = Delegate()
    write = Async()
    writelines = Async()
    close = Async()
    abort = Async()
    set = Async(call=_set_field, doc=_SET_DOC)

    def __init__(
        self,
        root_collection: AgnosticCollection[Any],
        delegate: Any = None,
        session: Any = None,
        **kwargs: Any,
    ) -> None:
        _check_first_argument(self, root_collection, "Collection")
        if delegate is None:
            session = getattr(session, "_motor_delegate", session)
            delegate = GridIn(root_collection.delegate, session=session, **kwargs)
        self.delegate = _batched_in(delegate)
        self._binding = root_collection._binding
        self._client = root_collection._client

    def __getattr__(self, name: str) -> Any:
        # A field of the file document (PyMongo's GridIn.__getattr__), as in Motor 3.7.1,
        # or an attribute of PyMongo's GridIn (``_file``, which Motor 3.7.1 refused).
        if name.startswith("__") or name == "delegate":
            raise AttributeError(name)
        return getattr(self.delegate, name)

    def _init_from_parent(self, parent: AgnosticBase) -> None:
        # From a bucket: open_upload_stream() (batched already), or wrap() of a GridIn.
        if type(self.delegate) is GridIn:
            self.delegate = _batched_in(self.delegate)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self._binding.call(self.delegate.__exit__, (exc_type, exc_val, exc_tb), {})


#: What ``AgnosticGridFSBucket.wrap()`` turns into Motor objects: PyMongo class, Motor
#: class name (subclasses first: a GridOutCursor is a Cursor).
_WRAPPED = ((GridOutCursor, "GridOutCursor"), (GridOut, "GridOut"), (GridIn, "GridIn"))


class AgnosticGridFSBucket(_WithIOLoop):
    """A GridFS bucket in a database: ``MotorGridFSBucket(db, bucket_name="fs")``.

    Takes the arguments of :class:`gridfs.GridFSBucket`, with a Motor database.
    """

    __pymongo_class__ = GridFSBucket
    _agnostic_name = "GridFSBucket"

    delete = Async()
    delete_by_name = Async()
    download_to_stream = Async()
    download_to_stream_by_name = Async()
    open_download_stream = Async(wrap="GridOut", coroutine=True)
    open_download_stream_by_name = Async(wrap="GridOut", coroutine=True)
    open_upload_stream = Delegate(wrap="GridIn")
    open_upload_stream_with_id = Delegate(wrap="GridIn")
    rename = Async()
    rename_by_name = Async()
    upload_from_stream = Async()
    upload_from_stream_with_id = Async()
    find = Delegate(wrap="GridOutCursor")

    def __init__(
        self,
        database: AgnosticDatabase[Any],
        bucket_name: str = "fs",
        chunk_size_bytes: int | None = None,
        write_concern: Any = None,
        read_preference: Any = None,
        collection: str | None = None,
    ) -> None:
        _check_first_argument(self, database, "Database")
        if collection is not None:
            warnings.warn(
                'the "collection" parameter is deprecated, use "bucket_name" instead',
                DeprecationWarning,
                stacklevel=2,
            )
            bucket_name = collection
        options: dict[str, Any] = {
            "bucket_name": bucket_name,
            "write_concern": write_concern,
            "read_preference": read_preference,
        }
        if chunk_size_bytes is not None:
            options["chunk_size_bytes"] = chunk_size_bytes
        self.delegate = _BatchedBucket(database.delegate, **options)
        self._binding = database._binding
        self._client = database._client
        self._database = database
        #: The bucket's root collection (``fs``), a Motor collection.
        self.collection = database.get_collection(
            bucket_name, write_concern=write_concern, read_preference=read_preference
        )

    def wrap(self, obj: Any) -> Any:
        """The Motor object, of this bucket's framework and client, for ``obj``: a
        PyMongo ``GridIn``, ``GridOut`` or ``GridOutCursor`` of a bucket with this
        bucket's root collection.  Anything else is returned unchanged.  Makes no I/O.

        As in Motor 3.7.1 (which returned ``None`` for anything else).
        """
        return self._wrap_first(obj, _WRAPPED)
