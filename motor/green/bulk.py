"""Bulk writes on green connections: batches sized by encoding time, no per-document pairs.

PyMongo's bulk writer (``pymongo.synchronous.bulk._Bulk``) encodes as many documents per
write command as the server's ``maxWriteBatchSize`` (100,000) and ``maxMessageSize``
(48 MB) allow, in one call into its C extension that holds the interpreter lock: 100,000
small documents (7.6 MB) are one call of about 30 ms, during which neither the event loop
nor any other thread runs.  A fixed count per command does not help either: 1,000
documents per command cost every 100,000 documents 99 round trips and about 60 ms of client
CPU more, and 1,000 documents of 16 KB are still one 16 MB encoding.

:class:`GreenBulk`, the bulk writer of every green connection, sizes each command by what
encoding the previous one cost: the first command of a write carries at most
:data:`GREEN_WRITE_BATCH` documents, and each next one as many as
its thread can encode in :data:`ENCODE_SECONDS_IN_THREAD` (a worker thread, where the loop
waits for the interpreter lock) or :data:`ENCODE_SECONDS_ON_LOOP` (a child greenlet on the
loop's thread), within the server's limits.  Its bytes are sized the same way, the first
command's at most :data:`FIRST_COMMAND_BYTES`, so that 1,000 documents of 30 KB are not one
30 MB encoding; and the large string and binary values of the documents are not encoded at
all but sent as pieces of the message (:func:`motor.green.splice.batch_command`).  The
measure is the calling thread's CPU time (:func:`time.thread_time`), not the wall clock,
so waiting for the interpreter lock does not count.  These commands are the pieces of
PyMongo's: the pieces of one of PyMongo's commands (up to ``maxWriteBatchSize`` documents
and ``maxMessageSize`` bytes) are joined into one message (:meth:`GreenBulk._green_join`),
PyMongo's but for its request id, so the server gets PyMongo's commands, and a document
PyMongo's encoder refuses is refused before anything of its command is sent, as PyMongo
refuses it.  On a connection that compresses (PyMongo compresses a message whole), or with
:data:`JOIN_PIECES` off, each piece is a command of its own: the number of commands then
depends on the documents and the machine, and before the first of them goes, the rest of
PyMongo's command is encoded too and the bytes dropped (:meth:`GreenBulk._green_check_ahead`;
about 0.5 µs of client CPU per small document), so that what a refused document leaves
written is PyMongo's as well.

:func:`insert_many` is PyMongo's ``Collection.insert_many`` (the same checks, ``_id``
assignment and result) without the ``(op_type, document)`` pair PyMongo keeps per document
for the whole write: 100,000 such pairs are container objects that survive young-generation
collections and set off a full collection of the process's heap (25-30 ms in the
benchmarks) in the middle of the write.  Here the pairs are made as the writer walks the
documents, and freed at once.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import bson
import pymongo.synchronous.bulk
import pymongo.synchronous.collection
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import _csot, common, message
from pymongo.errors import DocumentTooLarge
from pymongo.results import InsertManyResult

from motor.green import splice
from motor.green.hub import in_child
from motor.green.internals import DELEGATING, own_code, pymongo_own
from motor.green.socket import _pause_if_spent

__all__ = [
    "ENCODE_SECONDS_IN_THREAD",
    "ENCODE_SECONDS_ON_LOOP",
    "FIRST_COMMAND_BYTES",
    "GREEN_WRITE_BATCH",
    "GROWTH",
    "HAND_OVER_SECONDS",
    "HAND_OVER_STEP",
    "JOIN_PIECES",
    "MIN_COMMAND_BYTES",
    "SPLICE_AVERAGE_BYTES",
    "GreenBulk",
    "check_pymongo_internals",
    "insert_many",
    "next_batch_size",
]

#: The most documents the first write command of a bulk write carries.
GREEN_WRITE_BATCH = 1000
#: Encoding time a write command aims at, in a worker thread (seconds of thread CPU).  The
#: loop waits for the interpreter lock for the switch interval (5 ms) plus what is left of
#: a C call that holds it when the interval ends, so this stays below the interval.
ENCODE_SECONDS_IN_THREAD = 0.002
#: Encoding time a write command aims at in a child greenlet, on the loop's thread: the
#: hub's work budget per loop iteration (:data:`motor.green.hub.WORK_BUDGET`).
ENCODE_SECONDS_ON_LOOP = 0.00035
#: In a worker thread, :func:`insert_many` offers the interpreter lock to the loop
#: (``time.sleep(0)``) once this long (seconds) has passed since it last did, as it
#: prepares the documents and as PyMongo's writer walks them: the loop, waiting for the
#: lock, waits about this long instead of the switch interval (5 ms).  It looks at the
#: clock every :data:`HAND_OVER_STEP` documents.
HAND_OVER_SECONDS = 0.001
HAND_OVER_STEP = 500
# On the loop, insert_many checks and gives _ids to its documents this many at a time.
HAND_OVER_CHUNK = 100
#: The most bytes PyMongo's encoder writes for the first command of a bulk write (the
#: large values spliced in by :func:`motor.green.splice.batch_command` not counted);
#: each next command's bytes are sized by encoding time like its documents, and at
#: least :data:`MIN_COMMAND_BYTES`.  A first document larger than that is a command of
#: its own.
FIRST_COMMAND_BYTES = 1024 * 1024
MIN_COMMAND_BYTES = 256 * 1024
#: A bulk write looks for large values to splice into its next command
#: (:func:`motor.green.splice.batch_command`) while its commands carry documents of at least
#: this many bytes on average; it always looks in its first command.
SPLICE_AVERAGE_BYTES = 16 * 1024
#: A command carries at most this many times the documents of the one before it, so that
#: one quick measurement cannot make the next encoding long.
GROWTH = 8
#: Whether the pieces encoded for one of PyMongo's commands are joined into that command
#: (:meth:`GreenBulk._green_join`), or each sent as a command of its own, the documents
#: after the first one checked ahead (:meth:`GreenBulk._green_check_ahead`).  Pieces
#: are never joined on a connection that compresses: PyMongo compresses a message whole.
JOIN_PIECES = True

# The attribute a green connection keeps the server's maxWriteBatchSize in (its own
# max_write_batch_size is GREEN_WRITE_BATCH, for PyMongo's other batched writers).
SERVER_WRITE_BATCH = "_motor_server_write_batch"

_thread_time = time.thread_time
_sleep = time.sleep
_perf_counter = time.perf_counter
_collection_module: Any = pymongo.synchronous.collection
# PyMongo's name of the operation, as its insert_many passes it (pymongo.operations._Op;
# taken from the collection module: importing pymongo.operations here changes the order
# in which mypy analyses PyMongo's import cycles, and it then rejects PyMongo's _WriteOp).
_INSERT_OPERATION = _collection_module._Op.INSERT
_INSERT = message._INSERT


def next_batch_size(sent: int, spent: float, target: float, limit: int) -> int:
    """How many documents the next write command carries.

    ``sent`` documents took ``spent`` seconds to encode; the next command aims at
    ``target`` seconds, carrying between one and ``limit`` documents (the server's), at
    most :data:`GROWTH` times ``sent``.
    """
    most = min(limit, max(1, sent) * GROWTH)
    if spent <= 0:
        return most
    return max(1, min(most, int(sent * target / spent)))


def _document_bytes(document: Any, codec_options: Any) -> int:
    """The size of ``document`` encoded (rarely needed: it encodes it)."""
    if isinstance(document, RawBSONDocument):
        return len(document.raw)
    return len(bson.encode(document, codec_options=codec_options))


def _encode_sized(
    bwc: Any, cmd: Any, ops: Any, limit: int, sizes: tuple[int, int, bool]
) -> tuple[tuple[int, Any, list[Any]], tuple[int, int, bool]]:
    """The next command of ``ops`` (request id, message, documents), encoded by
    :func:`motor.green.splice.batch_command` with at most ``sizes``' documents and bytes
    (and large values spliced if it says so) within the server's ``limit``; and the sizes
    of the one after it, from what this one cost."""
    conn = bwc.conn
    count, encode_bytes, look = sizes
    target = ENCODE_SECONDS_ON_LOOP if in_child() else ENCODE_SECONDS_IN_THREAD
    own = conn.max_write_batch_size
    # The connection's own limit (GREEN_WRITE_BATCH) stays for PyMongo's other batched
    # writers; this connection is this write's alone while the command is encoded.
    conn.max_write_batch_size = limit
    started = _thread_time()
    try:
        request_id, msg, to_send, written = splice.batch_command(
            bwc, cmd, itertools.islice(ops, count), encode_bytes, look
        )
    finally:
        conn.max_write_batch_size = own
    spent = _thread_time() - started
    sent = len(to_send)
    most = conn.max_message_size
    # A command of one document: the next one takes at least such a document (one over
    # the cap is encoded twice: refused, then alone).
    floor = max(written, MIN_COMMAND_BYTES) if sent == 1 else MIN_COMMAND_BYTES
    # Large values are looked for while the documents are large on average.
    following = (
        next_batch_size(sent, spent, target, limit),
        max(floor, next_batch_size(written, spent, target, most)),
        len(msg) >= SPLICE_AVERAGE_BYTES * sent,
    )
    return (request_id, msg, to_send), following


def _joins(bwc: Any) -> bool:
    """Whether the pieces of ``bwc``'s next command are joined (see :data:`JOIN_PIECES`)."""
    return JOIN_PIECES and bwc.conn.compression_context is None


class GreenBulk(pymongo.synchronous.bulk._Bulk):
    """PyMongo's bulk writer, whose commands on green connections are sized as they go.

    On other connections (plain PyMongo clients in the same process) and for client-side
    encryption (which encodes through libmongocrypt) it is PyMongo's ``_Bulk``.
    """

    # The next command's documents and bytes, and whether large values are looked for
    # (_encode_sized); the same for the documents checked ahead of the commands, and the
    # run and where the checked documents end in it (_green_check_ahead).
    _green_sizes: tuple[int, int, bool] = (GREEN_WRITE_BATCH, FIRST_COMMAND_BYTES, True)
    _green_check_sizes: tuple[int, int, bool] = (GREEN_WRITE_BATCH, FIRST_COMMAND_BYTES, True)
    _green_checked: tuple[Any, int] | None = None
    # The run (operations of one type, one after the other) _green_sizes were sized in.
    _green_sized_run: Any = None
    # The sizes the last command (its first piece, if joined) was encoded with
    # (_green_sizes then); that command's run, where it starts in the run, its
    # documents, those sizes, and whether its pieces were joined.
    _green_used: tuple[int, int, bool] = _green_sizes
    _green_last: tuple[Any, int, int, tuple[int, int, bool], bool] | None = None

    def _green_encode(self, bwc: Any, cmd: Any, ops: Any, limit: int) -> Any:
        if in_child():
            # Each command is encoded in a loop iteration's work window of its own.
            _pause_if_spent()
        run = getattr(self, "current_run", None)
        if run is not self._green_sized_run:
            # A run's first command has a write's first sizes, whatever the previous
            # run's cost: a bulk write whose runs are each within them is sent in
            # PyMongo's commands (a run's first command after a slow one was split).
            self._green_sized_run = run
            self._green_sizes = GreenBulk._green_sizes
        self._green_used = used = self._green_sizes
        encoded, self._green_sizes = _encode_sized(bwc, cmd, ops, limit, used)
        return encoded

    def _green_retry(self, bwc: Any, cmd: Any, ops: Any, limit: int, ack: bool) -> Any:
        """The command that failed, again, for PyMongo's retry of it (None: not a retry).

        A retryable write is retried with the same transaction number, and the server
        recognises the statements it has already applied by their numbers: the retry must
        carry the documents of the attempt that failed, exactly, or those past its end
        would go in the next command, under a new transaction number, and be applied
        twice.  PyMongo's commands are sized by the server's limits alone, so its retry is
        the same command; here the sizes follow encoding time, so the retry is encoded
        with the failed command's count, byte cap and choice of spliced values instead of
        new sizes (a joined command's: its first piece's, then joined up to its count).
        """
        last = self._green_last
        run: Any = self.current_run
        if not self.retrying or last is None or last[0] is not run or last[1] != run.idx_offset:
            return None
        if in_child():
            _pause_if_spent()
        count = min(last[2], limit)
        first, encode_bytes, look = last[3]
        if last[4]:
            if _joins(bwc):
                sizes = (min(first, count), encode_bytes, look)
                encoded, self._green_sizes = _encode_sized(bwc, cmd, ops, count, sizes)
                return self._green_join(bwc, cmd, encoded, count, ack)
            # A connection that compresses: the whole command in one encoding.
            encode_bytes = bwc.conn.max_message_size
        sizes = (count, encode_bytes, look)
        encoded, _ = _encode_sized(bwc, cmd, itertools.islice(ops, count), limit, sizes)
        return encoded

    def _green_join(self, bwc: Any, cmd: Any, encoded: Any, limit: int, ack: bool) -> Any:
        """The command PyMongo would send, starting with ``encoded`` (its first piece,
        encoded by :meth:`_green_encode`): the run's documents after those of the piece,
        up to the server's ``maxWriteBatchSize`` (``limit``) documents and
        ``maxMessageSize`` bytes, are encoded in pieces sized as the commands of
        :meth:`_green_check` are (the loop runs between two), and their bytes joined
        after the piece's into one message (:func:`motor.green.splice.join_documents`).
        A document PyMongo's encoder refuses is refused before anything is sent, as
        PyMongo refuses it; what the server gets is PyMongo's message but for the request
        id.  The next command's first piece is sized by the last piece's cost.
        """
        run: Any = self.current_run
        request_id, msg, to_send = encoded
        if run is None:
            return encoded
        start = run.idx_offset
        position = start + len(to_send)
        stop = min(len(run.ops), start + limit)
        if position < stop:
            more: list[tuple[list[Any], int]] = []
            self._green_check_sizes = self._green_sizes
            position = self._green_check(
                bwc, cmd, run.ops, position, stop, limit, ack, len(msg), more
            )
            self._green_sizes = self._green_check_sizes
            if more:
                msg = splice.join_documents(msg, more, splice.sequence_prefix(bwc, cmd))
                to_send = run.ops[start:position]
        self._green_checked = (run, position)
        return request_id, msg, to_send

    def _green_check_ahead(self, bwc: Any, cmd: Any, encoded: Any, limit: int, ack: bool) -> None:
        """Encode, and drop, the documents PyMongo would have sent in one command with those
        of ``encoded`` (the next command, not sent yet): a document PyMongo's encoder
        refuses is refused before anything is sent, with PyMongo's error, as PyMongo
        refuses it before it sends its command.

        PyMongo's command would carry the run's documents from the first of this one, up
        to the server's ``maxWriteBatchSize`` documents and ``maxMessageSize`` bytes (of the
        uncompressed message).  They are checked once, when the first command that carries
        some of them is about to go (:meth:`_green_batch` calls this for a command that
        starts past the documents checked), in pieces encoded and sized as the commands are, but
        not compressed (large values spliced, not copied; the loop runs between two
        pieces).  In the piece where PyMongo's command would end, the documents are
        measured one at a time to find its last one.
        """
        run: Any = self.current_run
        if run is None:
            return
        start = run.idx_offset
        _, msg, to_send = encoded
        ops = run.ops
        position = start + len(to_send)
        stop = min(len(ops), start + limit)
        if position < stop:
            conn = bwc.conn
            # Uncompressed, with PyMongo's limit on the uncompressed message (the context's
            # compress flag takes 16 bytes off it for the compression header).
            compression, compress = conn.compression_context, bwc.compress
            conn.compression_context = None
            bwc.compress = False
            try:
                if compression is None:
                    first = len(msg)
                else:  # the first command's size before compression
                    sizes = (len(to_send), conn.max_message_size, True)
                    first = len(_encode_sized(bwc, cmd, iter(to_send), limit, sizes)[0][1])
                position = self._green_check(bwc, cmd, ops, position, stop, limit, ack, first)
            finally:
                conn.compression_context = compression
                bwc.compress = compress
        self._green_checked = (run, position)

    def _green_check(
        self,
        bwc: Any,
        cmd: Any,
        ops: Any,
        position: int,
        stop: int,
        limit: int,
        ack: bool,
        first: int,
        kept: list[tuple[list[Any], int]] | None = None,
    ) -> int:
        # _green_check_ahead's pieces (uncompressed), after a first command of ``first``
        # bytes; where the checked documents end.  With ``kept``, the documents' pieces
        # (splice.document_pieces) go in it, for _green_join.  Between two pieces a child
        # gives the loop its turn once the work budget is spent; a worker thread offers the
        # interpreter lock once HAND_OVER_SECONDS have passed (the pieces are lists, which
        # the encoder walks without the hand-overs of _handing_over): otherwise the loop,
        # waiting for the lock, waits the switch interval (5 ms) and then for the end of
        # the encoding call in progress, and on a machine where both threads share one
        # CPU, for more than one such wait in a row.
        child = in_child()
        pause = _pause_if_spent if child else _HandOver()
        own = bwc.conn.max_message_size
        # The bytes of a command without its documents: the same for every piece.
        header = splice.sequence_prefix(bwc, cmd)
        room = bwc.max_message_size - first

        def one_at_a_time(documents: list[Any]) -> bool:
            # As PyMongo's encoder goes: each document encoded (a refused one raises), then
            # measured; False at the first that does not fit, where PyMongo's command ends.
            nonlocal position, room
            for document in documents:
                pause()
                try:
                    (_, alone, _), _ = _encode_sized(bwc, cmd, iter([document]), 1, (1, own, True))
                except DocumentTooLarge:
                    # Over maxMessageSize, it does not fit; unacknowledged writes refuse a
                    # document over maxBsonSize wherever it is.
                    if not ack and _document_bytes(document, bwc.codec) > bwc.max_bson_size:
                        raise
                    return False
                size = len(alone) - header
                if size > room:
                    return False
                if kept is not None:
                    kept.append(splice.document_pieces(alone, header))
                position += 1
                room -= size
            return True

        # PyMongo encodes the next document even when its command is full, to measure it.
        while position < stop and room >= 0:
            pause()
            chunk = ops[position : min(stop, position + self._green_check_sizes[0])]
            try:
                (_, piece, done), self._green_check_sizes = _encode_sized(
                    bwc, cmd, iter(chunk), limit, self._green_check_sizes
                )
            except Exception as refused:
                if ack and isinstance(refused, DocumentTooLarge):
                    break  # a document over maxMessageSize starts PyMongo's next command
                # A refused document (unacknowledged: also one over maxBsonSize): PyMongo
                # raises if its command reaches it.
                if one_at_a_time(chunk):
                    raise
                break
            size = len(piece) - header
            if size <= room:
                if kept is not None:
                    kept.append(splice.document_pieces(piece, header))
                position += len(done)
                room -= size
                continue
            # PyMongo's command ends in this piece, after the last document that fits.
            one_at_a_time(done)
            break
        return position

    def _green_batch(self, bwc: Any, cmd: Any, ops: Any, ack: bool = True) -> Any:
        # The next command, encoded and sized here; None where PyMongo's own path applies.
        limit = getattr(bwc.conn, SERVER_WRITE_BATCH, None)
        if limit is None or self.is_encrypted:
            return None
        run: Any = self.current_run
        joined = _joins(bwc)
        encoded = self._green_retry(bwc, cmd, ops, limit, ack)
        if encoded is None:
            checked = self._green_checked
            if checked is not None and checked[0] is run and run.idx_offset < checked[1]:
                # Within documents checked ahead: the command ends where PyMongo's would.
                encoded = self._green_encode(
                    bwc, cmd, itertools.islice(ops, checked[1] - run.idx_offset), limit
                )
            else:
                encoded = self._green_encode(bwc, cmd, ops, limit)
                if joined:
                    encoded = self._green_join(bwc, cmd, encoded, limit, ack)
                else:
                    self._green_check_ahead(bwc, cmd, encoded, limit, ack)
        self._green_last = (run, run.idx_offset, len(encoded[2]), self._green_used, joined)
        return encoded

    def _execute_batch_unack(self, bwc: Any, cmd: Any, ops: Any, client: Any) -> Any:
        encoded = self._green_batch(bwc, cmd, ops, ack=False)
        if encoded is None:
            return super()._execute_batch_unack(bwc, cmd, ops, client)
        request_id, msg, to_send = encoded
        # As PyMongo: size checks were made as the documents were encoded.
        self.unack_write(bwc, cmd, request_id, msg, 0, to_send, client)
        return to_send

    def _execute_batch(self, bwc: Any, cmd: Any, ops: Any, client: Any) -> Any:
        encoded = self._green_batch(bwc, cmd, ops)
        if encoded is None:
            return super()._execute_batch(bwc, cmd, ops, client)
        request_id, msg, to_send = encoded
        return self.write_command(bwc, cmd, request_id, msg, to_send, client), to_send


class _Inserts:
    """The ``(op_type, document)`` pairs of an ``insert_many``, made as they are walked."""

    __slots__ = ("_documents",)

    def __init__(self, documents: list[Any]) -> None:
        self._documents = documents

    def __len__(self) -> int:
        return len(self._documents)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        documents = self._documents
        if len(documents) <= HAND_OVER_STEP or in_child():
            return zip(itertools.repeat(_INSERT), documents)
        return _handing_over(documents)


class _HandOver:
    """Offers the interpreter lock to other threads once HAND_OVER_SECONDS have passed."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = _perf_counter()

    def __call__(self) -> None:
        now = _perf_counter()
        if now - self._last >= HAND_OVER_SECONDS:
            _sleep(0)
            self._last = _perf_counter()


def _handing_over(documents: list[Any]) -> Iterator[tuple[int, Any]]:
    # In a worker thread: the pairs, HAND_OVER_STEP at a time, the interpreter lock offered
    # to the loop between two when it is due.
    step = HAND_OVER_STEP
    hand_over = _HandOver()
    for start in range(0, len(documents), step):
        if start:
            hand_over()
        yield from zip(itertools.repeat(_INSERT), documents[start : start + step])


@_csot.apply
def insert_many(
    self: Any,
    documents: Iterable[Any],
    ordered: bool = True,
    bypass_document_validation: bool | None = None,
    session: Any = None,
    comment: Any = None,
) -> InsertManyResult:
    """PyMongo's ``Collection.insert_many(documents, ...)`` on ``self``, a ``Collection``.

    Every document is checked and given its ``_id`` before anything is sent, as PyMongo
    does; the write keeps the documents in one list, and no object per document.  When the
    method in place is not PyMongo's own (an instrumentation's wrapper, a test's mock), it
    calls that method, which then sees the call (PyMongo's own still writes through
    :class:`GreenBulk`).
    """
    if type(self).insert_many is not _pymongo_insert_many and not DELEGATING.get():
        token = DELEGATING.set(True)
        try:
            result: InsertManyResult = self.insert_many(
                documents,
                ordered=ordered,
                bypass_document_validation=bypass_document_validation,
                session=session,
                comment=comment,
            )
        finally:
            DELEGATING.reset(token)
        return result
    if not isinstance(documents, Iterable) or isinstance(documents, Mapping) or not documents:
        raise TypeError("documents must be a non-empty list")
    inserted_ids: list[Any] = []
    kept: list[Any] = []
    validate = common.validate_is_document_type
    # On the loop, a child gives the loop its turn between two chunks once the
    # iteration's work budget is spent; in a worker thread, the interpreter lock.
    if in_child():
        hand_over: Any = _pause_if_spent
        step = HAND_OVER_CHUNK
    else:
        hand_over, step = _HandOver(), HAND_OVER_STEP
    remaining = iter(documents)
    while chunk := list(itertools.islice(remaining, step)):
        for document in chunk:
            validate("document", document)
            if not isinstance(document, RawBSONDocument):
                if "_id" not in document:
                    document["_id"] = ObjectId()
                inserted_ids.append(document["_id"])
        kept.extend(chunk)
        hand_over()
    write_concern = self._write_concern_for(session)
    blk = GreenBulk(self, ordered, bypass_document_validation, comment=comment)
    blk.ops = _Inserts(kept)  # type: ignore[assignment]
    blk.execute(write_concern, session, _INSERT_OPERATION)
    return InsertManyResult(inserted_ids, write_concern.acknowledged)


# Python's errors for wrong arguments name the function as PyMongo's method's do
# ("Collection.insert_many() missing 1 required positional argument: 'documents'").
insert_many.__qualname__ = "Collection.insert_many"
insert_many.__wrapped__.__qualname__ = "Collection.insert_many"  # type: ignore[attr-defined]

# PyMongo's own method (its _csot.apply wrapper), under any wrapper put on it before Motor
# was imported.
_pymongo_insert_many = pymongo_own(_collection_module.Collection.insert_many)


def check_pymongo_internals() -> list[str]:
    """What changed in PyMongo's bulk writer that this module relies on (empty: nothing)."""
    problems: list[str] = []
    bulk_cls = pymongo.synchronous.bulk._Bulk
    execute_command = own_code(bulk_cls._execute_command)
    if execute_command is None or not {"_execute_batch", "_execute_batch_unack", "islice"} <= set(
        execute_command.co_names
    ):
        problems.append("_Bulk._execute_command no longer encodes through _execute_batch")
    for name in ("_execute_batch", "_execute_batch_unack"):
        code = own_code(getattr(bulk_cls, name, None))
        if code is None or code.co_varnames[:5] != ("self", "bwc", "cmd", "ops", "client"):
            problems.append(f"_Bulk.{name}(bwc, cmd, ops, client) changed")
        elif not {"batch_command", "is_encrypted"} <= set(code.co_names):
            problems.append(f"_Bulk.{name} no longer encodes with bwc.batch_command")
    if not {"unack_write", "write_command"} <= set(vars(bulk_cls)):
        problems.append("_Bulk.write_command or _Bulk.unack_write is missing")
    # insert_many: PyMongo's, step for step, with the bulk writer it makes per call.
    code = own_code(_collection_module.Collection.insert_many)
    if code is None or code.co_varnames[:6] != (
        "self",
        "documents",
        "ordered",
        "bypass_document_validation",
        "session",
        "comment",
    ):
        problems.append("Collection.insert_many's parameters changed")
    elif not {"_Bulk", "ops", "execute", "_write_concern_for"} <= set(code.co_names):
        problems.append("Collection.insert_many no longer runs a _Bulk of its ops")
    execute = own_code(bulk_cls.execute)
    if execute is None or "ops" not in execute.co_names:
        problems.append("_Bulk.execute no longer checks its ops")
    return problems


def install() -> None:
    """Make :class:`GreenBulk` the bulk writer of PyMongo's ``Collection`` (idempotent)."""
    _collection_module._Bulk = GreenBulk
