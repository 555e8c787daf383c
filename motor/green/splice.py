"""Write commands whose large string and binary values are sent in pieces, not encoded.

PyMongo encodes a command and its documents in one call into its C extension, which holds
the interpreter lock: inserting a document with a 15 MB string copies those 15 MB twice or
three times in that one call (the string's UTF-8 bytes, the growing encoding buffer, the
finished message), 4-20 ms in which the event loop cannot run, depending on how much of
that memory is new to the process.

In a child greenlet, :func:`green_op_msg` (installed as PyMongo's
``pymongo.message._op_msg_uncompressed``) encodes the message with each large value (a
``str``, ``bytes`` or :class:`~bson.binary.Binary` of at least :data:`LARGE_VALUE_BYTES`)
replaced by a short unique placeholder, and returns a :class:`SplicedMessage`: the pieces
of the same message, with the lengths patched and each large value in place of its
placeholder.  A ``bytes`` value is sent from its own memory; a ``str`` is encoded to UTF-8
:data:`STR_SLICE` characters at a time, the loop running between two slices once the
iteration's work budget is spent (an ASCII string as it is sent, each slice in the memory
the previous one freed; any other before the message, whose lengths need its size in
bytes); the green socket sends the pieces one by one
(:meth:`~motor.green.socket.GreenSocket.send_pieces`).  The server receives the same bytes
as PyMongo's message.

It looks for large values where applications put them, at a cost of a few type checks per
value: in inserted documents (``insert_one``), and in an update's replacement document,
update operators or pipeline (``replace_one``, ``update_one`` with ``$set``), at the top
level and in embedded documents and arrays (plain ``dict`` and ``list``), at most
:data:`MAX_DEPTH` levels down and :data:`VISIT_LIMIT` values per document.  A document is
a ``dict`` or a subclass of it (``SON``, ``OrderedDict``), read as PyMongo's C encoder
reads it: its own entries in their order, not through methods a subclass overrides.
Anything else (another mapping, values past those limits, a value PyMongo's encoder would
refuse, PyMongo outside a child, bulk writes on compressed connections) is encoded by
PyMongo as usual.

A large array (a ``list`` of at least :data:`LARGE_ARRAY_ITEMS` values, or of
:data:`LARGE_ARRAY_DOCUMENTS` if its first value is a document or an array), which
PyMongo's encoder would write in one call (about 40 ns a number, 0.5 µs a small document:
a million integers hold the loop 40-60 ms), is replaced by a placeholder array the same
way; its elements are encoded by PyMongo's encoder a slice at a time, as the values of a
document keyed by their indexes (the same bytes as the array's elements), each slice
sized to about :data:`ARRAY_SLICE_SECONDS`, with the loop running between two once the
iteration's budget is spent.  Its values are not looked in.  Making the keys and the
document costs more than encoding the values: an array of mixed values costs 5-6 times
the CPU of PyMongo's one call, of small documents about 1.4 times.  A slice of numbers
of one type (``int`` of 32 bits, or ``float``) is written without the document
(:func:`_number_elements`), at about the cost of PyMongo's one call.

On a compressed connection (``compressors=``), PyMongo's ``_op_msg_compressed`` is
:func:`green_op_msg_compressed`: in a child, a command with large values is spliced the
same way, and its pieces are compressed in the loop's default executor, zlib's one at a
time (:func:`compress_pieces`: ``zlib`` releases the GIL while it compresses, so the loop
runs throughout), another compressor's joined first.  The server receives an
``OP_COMPRESSED`` message whose content is PyMongo's message.

Bulk writes (``insert_many``, ``bulk_write``) splice their commands' large values the same
way, in a child or in a worker thread, through :func:`batch_command`, which
:class:`motor.green.bulk.GreenBulk` calls for each command: a command counts its values'
bytes against the server's ``maxMessageSize`` (PyMongo counts only what its encoder
writes), and PyMongo's encoder writes at most the bytes the bulk writer asks for.
"""

from __future__ import annotations

import itertools
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import bson
import pymongo.compression_support
import pymongo.errors
import pymongo.message
import pymongo.synchronous.pool
from bson.binary import Binary
from bson.codec_options import DEFAULT_CODEC_OPTIONS
from pymongo.errors import DocumentTooLarge

from motor.green.hub import Child, _getcurrent
from motor.green.internals import code_names
from motor.green.socket import _pause_if_spent

__all__ = [
    "LARGE_VALUE_BYTES",
    "STR_SLICE",
    "SplicedMessage",
    "check_pymongo_internals",
    "compress_pieces",
    "green_op_msg",
    "green_op_msg_compressed",
    "install",
]

#: A ``str``, ``bytes`` or ``Binary`` value of at least this length is spliced in.
LARGE_VALUE_BYTES = 256 * 1024
#: A ``list`` of at least this many values is spliced in, encoded a slice at a time ...
LARGE_ARRAY_ITEMS = 256 * 1024
#: ... or of at least this many, if its first value is a document or an array.
LARGE_ARRAY_DOCUMENTS = 2048
#: The elements of a large array encoded in one call at first; each next slice is sized
#: from the time the one before took, to about :data:`ARRAY_SLICE_SECONDS`.
ARRAY_FIRST_SLICE = 256
ARRAY_SLICE_SECONDS = 0.0005
#: The fewest elements of a slice after the first.
ARRAY_MIN_SLICE = 16
#: Characters of a large ``str`` encoded to UTF-8 at a time.
STR_SLICE = 256 * 1024
#: :func:`join_documents` copies pieces smaller than this many bytes together, into
#: pieces of at least this size: each piece of a message is a send of its own.
JOIN_BYTES = 64 * 1024
#: How many levels of embedded documents and arrays large values are looked for in.
MAX_DEPTH = 16
#: How many values of one document (its own and its embedded documents' and arrays')
#: are looked at, at most: a document with more leaves the rest to PyMongo's encoder
#: rather than walk them all in Python.
VISIT_LIMIT = 1000

# The placeholders: a prefix unique to this process, then the value's number.
_PREFIX = "motor-splice-" + os.urandom(8).hex() + "-"
_INT32 = struct.Struct("<i")
_UNPACK_INT32_FROM = _INT32.unpack_from
_PACK_INT32_INTO = _INT32.pack_into
# OP_MSG: 16-byte header, 4 bytes of flags, then section kind 0 and the command document.
_COMMAND_AT = 21
# The bytes of an empty document, {}.
_EMPTY_DOCUMENT_BYTES = 5
# A placeholder array, [marker]: its length, a string element keyed "0" (type, key, the
# string's length), the marker, the string's NUL and the array's.
_ARRAY_MARKER_HEAD = b"\x020\x00"
_ARRAY_MARKER_AT = 4 + len(_ARRAY_MARKER_HEAD) + 4
_ARRAY_OVERHEAD = _ARRAY_MARKER_AT + 2
_perf_counter = time.perf_counter

# PyMongo's encoder (its C extension's when built), and its compressed counterpart.
_original: Any = pymongo.message._op_msg_uncompressed
_original_compressed: Any = pymongo.message._op_msg_compressed
_HEADER_BYTES = 16
# The types of the values spliced in (the old binary subtype excepted).
_VALUE_TYPES = frozenset((str, bytes, Binary))
# A dict's own entries and values, whatever a subclass overrides (OrderedDict's order after
# move_to_end, a __getitem__ that computes): what PyMongo's C encoder reads (PyDict_Next).
# Without the C extension, PyMongo's Python encoder reads mapping.items().
_C_ENCODER = bson.has_c()


def _dict_getitem(mapping: Any, key: Any) -> Any:
    return dict.__getitem__(mapping, key) if _C_ENCODER else mapping[key]


def _dict_items(mapping: Any) -> Any:
    if _C_ENCODER and isinstance(mapping, dict):
        return dict.items(mapping)
    return mapping.items()


# The types of the embedded documents and arrays looked in.
_CONTAINER_TYPES = frozenset((dict, list))
# The field of a bulk write command's documents, by PyMongo's operation number.
_BULK_FIELDS = {pymongo.message._INSERT: "documents", pymongo.message._UPDATE: "updates"}


class SplicedMessage:
    """An OP_MSG message in pieces, sent one after the other: bytes-like objects, and
    ASCII strings whose bytes are their characters (encoded as they are sent)."""

    __slots__ = ("pieces", "size")

    def __init__(self, pieces: list[Any], size: int) -> None:
        self.pieces = pieces
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.chunks())

    def chunks(self) -> Iterator[Any]:
        """The message's bytes, an ASCII string's :data:`STR_SLICE` characters at a
        time (in a child, the loop runs between two slices once the iteration's work
        budget is spent: each slice's memory is the previous one's, freed)."""
        for piece in self.pieces:
            if type(piece) is str:
                for start in range(0, len(piece), STR_SLICE):
                    _pause_if_spent()
                    yield piece[start : start + STR_SLICE].encode()
            else:
                yield piece


class _NotSpliced(Exception):
    """The message is PyMongo's to encode after all."""


class _ArrayPieces(list):  # type: ignore[type-arg]
    """A large array's pieces: its whole BSON document (length, elements, trailing NUL)."""

    __slots__ = ()


def _is_large(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is bytes:
        return len(value) >= LARGE_VALUE_BYTES
    # Binary subtype 2 (the old binary) carries a second length: left to PyMongo.
    return kind is Binary and value.subtype != 2 and len(value) >= LARGE_VALUE_BYTES


def _is_large_array(value: list[Any]) -> bool:
    # Many values, or many documents or arrays: a list whose encoding would be a long
    # call (about 50 ms for a million integers, a few ms for a thousand documents).
    size = len(value)
    if size >= LARGE_ARRAY_ITEMS:
        return True
    if size < LARGE_ARRAY_DOCUMENTS:
        return False
    first = type(value[0])
    return first is dict or first is list or isinstance(value[0], Mapping)


def _collect(
    container: Any, prefix: tuple[Any, ...], paths: list[tuple[Any, ...]], depth: int, budget: int
) -> int:
    """Add the paths of the large values in ``container`` (a document or an array) and
    in its embedded documents and arrays, at most :data:`MAX_DEPTH` levels down; how
    many more values may be looked at (negative: the walk stopped there)."""
    # A dict (a subclass at the top level) is read as PyMongo's encoder reads it: its own
    # entries, in their order, not through methods a subclass may override.
    items = _dict_items(container) if type(container) is not list else enumerate(container)
    for key, value in items:
        budget -= 1
        if budget < 0:
            return budget
        kind = type(value)
        if kind is str or kind is bytes or kind is Binary:
            if _is_large(value):
                paths.append((*prefix, key))
        elif kind is list and _is_large_array(value):
            paths.append((*prefix, key))  # its values are not looked in
        elif (kind is dict or kind is list) and value and depth < MAX_DEPTH:
            budget = _collect(value, (*prefix, key), paths, depth + 1, budget)
            if budget < 0:
                return budget
    return budget


def _document_paths(document: Any, prefix: tuple[Any, ...], paths: list[tuple[Any, ...]]) -> None:
    # The paths of a document's large values (a dict or a dict subclass such as SON at
    # the top level, plain dicts and lists below it), looking at VISIT_LIMIT values at
    # most.  Other mappings, raw documents among them, are PyMongo's to encode.
    if isinstance(document, dict):
        _collect(document, prefix, paths, 0, VISIT_LIMIT)


def _large_paths(identifier: str, docs: Any) -> list[tuple[Any, ...]]:
    """The paths (document number, then keys and array indexes) of the large values of
    a command's documents, in the places this module looks (see the module docstring)."""
    paths: list[tuple[Any, ...]] = []
    if identifier == "documents":
        for number, document in enumerate(docs):
            _document_paths(document, (number,), paths)
    elif identifier == "updates":
        for number, statement in enumerate(docs):
            update = statement.get("u") if isinstance(statement, Mapping) else None
            if type(update) is list:  # an aggregation pipeline
                _collect(update, (number, "u"), paths, 0, VISIT_LIMIT)
            else:
                _document_paths(update, (number, "u"), paths)
    return paths


def green_op_msg(flags: int, command: Any, identifier: str, docs: Any, opts: Any) -> Any:
    """PyMongo's ``_op_msg_uncompressed``: a :class:`SplicedMessage` for a command
    with large values, sent by a child; PyMongo's encoding of anything else."""
    if identifier and _may_splice(identifier, docs) and isinstance(_getcurrent(), Child):
        paths = _large_paths(identifier, docs)
        if paths:
            try:
                return _spliced(flags, command, identifier, docs, opts, paths)
            except _NotSpliced:
                pass
    return _original(flags, command, identifier, docs, opts)


def green_op_msg_compressed(
    flags: int, command: Any, identifier: str, docs: Any, opts: Any, ctx: Any
) -> Any:
    """PyMongo's ``_op_msg_compressed``: for a command with large values sent by a child,
    the spliced message compressed in the loop's default executor
    (:func:`compress_pieces`); PyMongo's compressed message for anything else."""
    if identifier and _may_splice(identifier, docs):
        current = _getcurrent()
        if isinstance(current, Child):
            paths = _large_paths(identifier, docs)
            if paths:
                try:
                    _, spliced, total_size, max_doc_size = _spliced(
                        flags, command, identifier, docs, opts, paths
                    )
                except _NotSpliced:
                    pass
                else:
                    request_id, message = current.hub.run_in_thread(compress_pieces, spliced, ctx)
                    return request_id, message, total_size, max_doc_size
    return _original_compressed(flags, command, identifier, docs, opts, ctx)


def compress_pieces(message: SplicedMessage, ctx: Any) -> tuple[int, bytes]:
    """``message`` (an OP_MSG) as an ``OP_COMPRESSED`` message compressed by ``ctx``, a
    PyMongo compression context, with a new request id: what PyMongo's ``_compress``
    makes of the joined message.  zlib compresses the pieces one at a time."""
    size = len(message) - _HEADER_BYTES
    if type(ctx) is pymongo.compression_support.ZlibContext:
        compressor = zlib.compressobj(ctx.level)
        out = []
        skip = _HEADER_BYTES
        for chunk in message.chunks():
            if skip:
                taken = min(skip, len(chunk))
                skip -= taken
                chunk = memoryview(chunk)[taken:]
            out.append(compressor.compress(chunk))
        out.append(compressor.flush())
        compressed = b"".join(out)
    else:
        compressed = ctx.compress(bytes(message)[_HEADER_BYTES:])
    request_id = pymongo.message._randint()
    header = pymongo.message._pack_compression_header(
        pymongo.message._COMPRESSION_HEADER_SIZE + len(compressed),
        request_id,
        0,
        2012,
        2013,
        size,
        ctx.compressor_id,
    )
    return request_id, header + compressed


def _may_splice(identifier: str, docs: Any) -> bool:
    # Whether a command's documents may hold large values, at a few type checks a value:
    # for an insert's plain documents, a large top-level value, or an embedded document
    # or array to look in; any update.
    if identifier == "documents":
        for document in docs:
            if type(document) is dict:
                for value in document.values():
                    kind = type(value)
                    if kind in _CONTAINER_TYPES or (
                        kind in _VALUE_TYPES and len(value) >= LARGE_VALUE_BYTES
                    ):
                        return True
            else:
                return True
        return False
    return True


def _placeholder(value: Any, number: int) -> tuple[Any, bytes]:
    # A short value of the same BSON type as ``value``, and its bytes.
    marker = f"{_PREFIX}{number:08x}"
    encoded = marker.encode()
    if type(value) is str:
        return marker, encoded
    if type(value) is bytes:
        return encoded, encoded
    if type(value) is list:
        return [marker], encoded
    return Binary(encoded, value.subtype), encoded


def _skeleton(docs: Any, paths: list[tuple[Any, ...]]) -> tuple[list[Any], list[Any], list[bytes]]:
    """The documents with each large value replaced by its placeholder (the containers
    along each path copied, the caller's left alone), the values, and the placeholders'
    bytes."""
    skeleton = list(docs)
    copies: dict[tuple[Any, ...], Any] = {}
    values: list[Any] = []
    markers: list[bytes] = []
    for number, path in enumerate(paths):
        container: Any
        for depth in range(1, len(path)):
            prefix = path[:depth]
            copy = copies.get(prefix)
            if copy is None:
                if depth == 1:
                    copy = dict(_dict_items(docs[path[0]]))
                    skeleton[path[0]] = copy
                else:
                    parent = copies[path[: depth - 1]]
                    original = parent[path[depth - 1]]
                    if type(original) is list:
                        copy = original.copy()
                    else:
                        copy = dict(_dict_items(original))
                    parent[path[depth - 1]] = copy
                copies[prefix] = copy
            container = copy
        value = container[path[-1]]
        container[path[-1]], marker = _placeholder(value, number)
        values.append(value)
        markers.append(marker)
    return skeleton, values, markers


def _encode_str(value: str) -> list[Any]:
    # A large non-ASCII string's UTF-8 bytes in slices (its length in bytes is needed
    # before the message is sent), the loop running between two once the iteration's
    # work budget is spent.  An error is PyMongo's to raise.
    pieces: list[Any] = []
    for start in range(0, len(value), STR_SLICE):
        if start:
            _pause_if_spent()
        try:
            pieces.append(value[start : start + STR_SLICE].encode())
        except UnicodeError:
            raise _NotSpliced from None
    return pieces


def _containers(data: Any, start: int, position: int, depth: int) -> list[int]:
    """Where the documents enclosing ``position`` start: the document at ``start``, then
    ``depth`` levels of embedded documents and arrays below it."""
    from motor.green.pool import _element_end, _nul

    found = [start]
    for _ in range(depth):
        end = start + _UNPACK_INT32_FROM(data, start)[0] - 1
        at = start + 4
        while at < end:
            kind = data[at]
            value = _nul(data, at + 1) + 1
            after = _element_end(data, kind, value)
            if value <= position < after:
                if kind != 0x03 and kind != 0x04:
                    raise _NotSpliced
                start = value
                found.append(start)
                break
            at = after
        else:
            raise _NotSpliced
    return found


def _encode_array(value: list[Any], opts: Any) -> tuple[list[Any], int]:
    """A large array's BSON document in pieces (:class:`_ArrayPieces`) and its size:
    its elements encoded by PyMongo's encoder a slice at a time, as the values of a
    document keyed by their indexes (the keys of an array), the loop running between two
    slices once the iteration's work budget is spent.  Whatever the encoder refuses is
    PyMongo's to refuse, on the whole message."""
    pieces = _ArrayPieces([b""])  # the length, once known
    size = 5  # the length and the trailing NUL
    count = len(value)
    start = 0
    step = ARRAY_FIRST_SLICE
    encode = bson.encode
    while start < count:
        if start:
            _pause_if_spent()
        stop = min(count, start + step)
        began = _perf_counter()
        elements = _number_elements(value, start, stop)
        if elements is not None:
            pieces.append(elements)
            size += len(elements)
        else:
            try:
                encoded = encode(
                    dict(zip(map(str, range(start, stop)), value[start:stop])), False, opts
                )
            except Exception:
                raise _NotSpliced from None
            pieces.append(memoryview(encoded)[4:-1])
            size += len(encoded) - 5
        spent = _perf_counter() - began
        start = stop
        # The next slice: sized to ARRAY_SLICE_SECONDS from this one, at most 8 times it.
        step = max(
            ARRAY_MIN_SLICE, min(step * 8, int(step * ARRAY_SLICE_SECONDS / max(spent, 1e-6)))
        )
    if size > 0x7FFFFFFF:
        raise _NotSpliced
    pieces[0] = _INT32.pack(size)
    pieces.append(b"\x00")
    return pieces, size


# The BSON type and ``struct`` format of the numbers _number_elements writes: a slice of
# only ``int`` (not bool, Int64 or other subclasses) that all fit in 32 bits is what
# PyMongo's encoder writes as int32 elements, a slice of only ``float`` as doubles (no
# codec option changes either: TypeRegistry refuses encoders for built-in types).
_NUMBER_FORMATS = {int: (b"\x10", "i", 4), float: (b"\x01", "d", 8)}
# The digits of every number, each as often as 10 ** place numbers in a row share it: the
# column of digits at ``place`` of consecutive numbers repeats it (see _digit_column).
_DIGIT_PERIODS = [b"".join(bytes([48 + d]) * 10**place for d in range(10)) for place in range(4)]


def _digit_column(first: int, count: int, place: int) -> bytes:
    """The digit at ``10 ** place`` of each of the numbers ``first`` to
    ``first + count - 1``, as ASCII, in one ``bytes``."""
    if place < len(_DIGIT_PERIODS):
        period = _DIGIT_PERIODS[place]
        offset = first % len(period)
        return (period * ((offset + count) // len(period) + 1))[offset : offset + count]
    unit = 10**place
    runs = []
    number = first
    last = first + count
    while number < last:
        run_end = min(last, (number // unit + 1) * unit)
        runs.append(bytes([48 + number // unit % 10]) * (run_end - number))
        number = run_end
    return b"".join(runs)


def _number_elements(value: list[Any], start: int, stop: int) -> bytearray | None:
    """The BSON array elements, keyed ``start`` to ``stop - 1``, of ``value[start:stop]``
    if those are all ``int`` of 32 bits or all ``float``, or None.

    The bytes PyMongo's encoder writes (type, key, NUL, value), built with a few calls
    that each run over the whole slice in C: elements whose keys have the same number of
    digits all have the same size, so each of their bytes is one column written with a
    slice assignment of step the element's size; the keys' digit columns repeat, and
    ``struct`` writes the values.  About 6 times as fast as encoding a document keyed
    by the indexes (60 against 360 ns a number)."""
    if type(value[start]) not in _NUMBER_FORMATS:  # most slices of other arrays
        return None
    chunk = value[start:stop]
    kinds = set(map(type, chunk))
    if len(kinds) != 1:
        return None
    number_format = _NUMBER_FORMATS.get(kinds.pop())
    if number_format is None:
        return None
    kind, code, width = number_format
    try:
        packed = struct.pack(f"<{len(chunk)}{code}", *chunk)
    except struct.error:  # an int beyond 32 bits: int64, or too large, as PyMongo decides
        return None
    out = bytearray()
    first = start
    while first < stop:
        digits = len(str(first))
        # The keys of this many digits in the slice.
        last = min(stop, 10**digits)
        count = last - first
        size = 2 + digits + width
        part = bytearray(size * count)
        part[0::size] = kind * count
        for column in range(digits):
            part[1 + column :: size] = _digit_column(first, count, digits - 1 - column)
        # (The keys' NULs are the zeros the bytearray starts with.)
        values = packed[(first - start) * width : (last - start) * width]
        for byte in range(width):
            part[2 + digits + byte :: size] = values[byte::width]
        out += part
        first = last
    return out


def _value_pieces(value: Any, opts: Any) -> tuple[list[Any], int]:
    # A large value's pieces (see SplicedMessage) and its size in bytes.
    if type(value) is list:
        return _encode_array(value, opts)
    if type(value) is str:
        if value.isascii():
            # Encoded as it is sent, a slice at a time.
            return [value], len(value)
        pieces = _encode_str(value)
        return pieces, sum(map(len, pieces))
    return [memoryview(value).cast("B")], len(value)


def _spliced(
    flags: int, command: Any, identifier: str, docs: Any, opts: Any, paths: list[tuple[Any, ...]]
) -> tuple[int, SplicedMessage, int, int]:
    skeleton, values, markers = _skeleton(docs, paths)
    try:
        request_id, message, total_size, _ = _original(flags, command, identifier, skeleton, opts)
    except Exception:
        # Whatever PyMongo's encoder refuses, it refuses with its own error.
        raise _NotSpliced from None
    pieces = [_value_pieces(value, opts) for value in values]
    spliced, added, max_doc_size = _splice(message, len(docs), paths, pieces, markers)
    return request_id, spliced, total_size + added, max_doc_size


def _splice(
    message: bytes,
    count: int,
    paths: list[tuple[Any, ...]],
    pieces: list[tuple[list[Any], int]],
    markers: list[bytes],
) -> tuple[SplicedMessage, int, int]:
    """An OP_MSG message of ``count`` documents with placeholders, as a
    :class:`SplicedMessage` with each value's pieces in its placeholder's place; also
    the bytes it adds, and the size of its largest document."""
    data = bytearray(message)
    # The type-1 section that holds the documents, and where each document starts.
    section = _COMMAND_AT + _UNPACK_INT32_FROM(data, _COMMAND_AT)[0]
    if data[_COMMAND_AT - 1] != 0 or data[section] != 1:
        raise _NotSpliced
    section_end = section + 1 + _UNPACK_INT32_FROM(data, section + 1)[0]
    at = data.index(0, section + 5) + 1
    starts = []
    while at < section_end:
        starts.append(at)
        at += _UNPACK_INT32_FROM(data, at)[0]
    if len(starts) != count:
        raise _NotSpliced
    # Each value: where its placeholder is, its pieces, and how much it adds.
    spliced: list[tuple[int, int, list[Any]]] = []
    growth: dict[int, int] = {}
    # The values' new lengths, written once every container is found (finding one
    # walks the elements before it, by their lengths as encoded).
    lengths: list[tuple[int, int]] = []
    for path, (value_pieces, size), marker in zip(paths, pieces, markers):
        start = starts[path[0]]
        end = start + _UNPACK_INT32_FROM(data, start)[0]
        position = data.find(marker, start, end)
        if position < 0:
            raise _NotSpliced
        if type(value_pieces) is _ArrayPieces:
            # The placeholder's whole array (length, a string element keyed "0", the
            # trailing NUL) gives way to the array's pieces, which carry its length.
            array_at, length = position - _ARRAY_MARKER_AT, len(marker) + _ARRAY_OVERHEAD
            if (
                _UNPACK_INT32_FROM(data, array_at)[0] != length
                or data[array_at + 4 : position - 4] != _ARRAY_MARKER_HEAD
                or _UNPACK_INT32_FROM(data, position - 4)[0] != len(marker) + 1
                or data[position + len(marker) : array_at + length] != b"\x00\x00"
            ):
                raise _NotSpliced
            added = size - length
            for container in _containers(data, start, array_at, len(path) - 2):
                growth[container] = growth.get(container, 0) + added
            spliced.append((array_at, length, value_pieces))
            continue
        if type(value_pieces[0]) is not memoryview:  # a string: its length counts its NUL
            length_at, length, new_length = position - 4, len(marker) + 1, size + 1
        else:  # binary: length, subtype, bytes
            length_at, length, new_length = position - 5, len(marker), size
        if _UNPACK_INT32_FROM(data, length_at)[0] != length:
            raise _NotSpliced
        lengths.append((length_at, new_length))
        added = size - len(marker)
        # path: document number, then keys; the containers are all but the last key.
        for container in _containers(data, start, position, len(path) - 2):
            growth[container] = growth.get(container, 0) + added
        spliced.append((position, len(marker), value_pieces))
    for length_at, new_length in lengths:
        _PACK_INT32_INTO(data, length_at, new_length)
    added_total = sum(growth.get(start, 0) for start in starts)
    for container, added in growth.items():
        _PACK_INT32_INTO(data, container, _UNPACK_INT32_FROM(data, container)[0] + added)
    _PACK_INT32_INTO(data, 0, len(data) + added_total)
    _PACK_INT32_INTO(data, section + 1, _UNPACK_INT32_FROM(data, section + 1)[0] + added_total)
    max_doc_size = max(_UNPACK_INT32_FROM(data, start)[0] for start in starts)
    # The pieces: the skeleton between placeholders, and the values in their place.
    view = memoryview(data)
    out: list[Any] = []
    at = 0
    for position, length, value_pieces in sorted(spliced, key=lambda item: item[0]):
        out.append(view[at:position])
        out.extend(value_pieces)
        at = position + length
    out.append(view[at:])
    return SplicedMessage(out, len(data) + added_total), added_total, max_doc_size


def batch_command(
    bwc: Any, cmd: Any, docs: Any, encode_bytes: int, look: bool = True
) -> tuple[int, Any, list[Any], int]:
    """``bwc.batch_command(cmd, docs)``, PyMongo's bulk writer's encoding of its next
    command, with the large values of its documents spliced in (when ``look``) and at
    most about ``encode_bytes`` bytes for PyMongo's encoder to write; also those bytes.

    The command carries the documents PyMongo's limits allow, counting each large
    value's bytes: they are taken off the connection's ``maxMessageSize`` while PyMongo
    encodes the placeholders, and ``encode_bytes`` caps what remains (a first document
    larger than that has a command of its own, as PyMongo's limits allow).  Values are
    looked for in inserts and updates, not in deletes or in unacknowledged writes (whose
    documents PyMongo checks against ``maxBsonSize`` as it encodes them); whatever
    PyMongo's encoder refuses, it refuses with its own error.
    """
    conn = bwc.conn
    own = conn.max_message_size
    batch = list(docs)
    identifier = _BULK_FIELDS.get(bwc.op_type)
    concern = cmd.get("writeConcern")
    paths = None
    acknowledged = concern is None or concern.get("w", 1)
    if look and identifier is not None and acknowledged and not conn.compression_context:
        paths = _large_paths(identifier, batch)
    chosen: list[tuple[Any, ...]] = []
    pieces: list[tuple[list[Any], int]] = []
    count, total = len(batch), 0
    if paths:
        # What is left of maxMessageSize for the rest is at least a maxBsonSize document.
        budget = own - conn.max_bson_size - pymongo.message._COMMAND_OVERHEAD
        try:
            chosen, pieces, count, total = _values_within(batch, paths, budget, bwc.codec)
        except _NotSpliced:  # a value PyMongo's encoder refuses, or too large a document
            chosen = []
    if chosen:
        skeleton, _, markers = _skeleton(batch[:count], chosen)
    else:
        skeleton, markers = batch, []
    limit = own - total
    try:
        conn.max_message_size = min(limit, encode_bytes)
        try:
            request_id, message, to_send = bwc.batch_command(cmd, skeleton)
        except DocumentTooLarge:
            if encode_bytes >= limit:
                raise
            # The first document alone is over the cap: a command of its own.
            conn.max_message_size = limit
            request_id, message, to_send = bwc.batch_command(cmd, skeleton[:1])
    except Exception:
        if not chosen:
            raise
        conn.max_message_size = own
        _raise_first_refused(bwc, cmd, skeleton)
        request_id, message, to_send = bwc.batch_command(cmd, batch)
        return request_id, message, to_send, len(message)
    finally:
        conn.max_message_size = own
    sent = len(to_send)
    if not chosen:
        return request_id, message, to_send, len(message)
    kept = [index for index, path in enumerate(chosen) if path[0] < sent]
    try:
        spliced, _, _ = _splice(
            message,
            sent,
            [chosen[index] for index in kept],
            [pieces[index] for index in kept],
            [markers[index] for index in kept],
        )
    except _NotSpliced:
        request_id, message, to_send = bwc.batch_command(cmd, batch)
        return request_id, message, to_send, len(message)
    return request_id, spliced, batch[:sent], len(message)


def sequence_prefix(bwc: Any, cmd: Any) -> int:
    """How many bytes come before the documents in ``bwc``'s (uncompressed) message of
    ``cmd``: the header, the command and the document sequence's own header."""
    return len(bwc.batch_command(cmd, [{}])[1]) - _EMPTY_DOCUMENT_BYTES


def document_pieces(message: Any, prefix: int) -> tuple[list[Any], int]:
    """The pieces of ``message`` (a bulk write command's uncompressed OP_MSG message,
    bytes or :class:`SplicedMessage`) after its first ``prefix`` bytes, where its
    documents start (:func:`sequence_prefix`); and their size."""
    if type(message) is SplicedMessage:
        pieces = message.pieces
        # The first piece is the message's start up to its first spliced value, which
        # is inside a document.
        return [memoryview(pieces[0])[prefix:], *pieces[1:]], len(message) - prefix
    return [memoryview(message)[prefix:]], len(message) - prefix


def join_documents(message: Any, more: list[tuple[list[Any], int]], prefix: int) -> SplicedMessage:
    """``message`` (as for :func:`document_pieces`) with the documents ``more`` (the
    :func:`document_pieces` of messages of the same command) at the end of its document
    sequence: one message, PyMongo's of all those documents but for the request id."""
    if type(message) is SplicedMessage:
        head = bytearray(memoryview(message.pieces[0])[:prefix])
    else:
        head = bytearray(memoryview(message)[:prefix])
    first, size = document_pieces(message, prefix)
    # Small pieces (documents encoded one at a time) are copied together, a send each.
    pieces: list[Any] = []
    small = bytearray()
    for some in itertools.chain([first], (more_pieces for more_pieces, _ in more)):
        for piece in some:
            if type(piece) is not str and len(piece) < JOIN_BYTES:
                small += piece
                if len(small) >= JOIN_BYTES:
                    pieces.append(small)
                    small = bytearray()
                continue
            if small:
                pieces.append(small)
                small = bytearray()
            pieces.append(piece)
    if small:
        pieces.append(small)
    added = sum(more_size for _, more_size in more)
    section = _COMMAND_AT + _UNPACK_INT32_FROM(head, _COMMAND_AT)[0]
    if head[_COMMAND_AT - 1] != 0 or head[section] != 1:
        raise ValueError("not a message with a document sequence after its command")
    total = prefix + size + added
    _PACK_INT32_INTO(head, 0, total)
    _PACK_INT32_INTO(head, section + 1, _UNPACK_INT32_FROM(head, section + 1)[0] + added)
    return SplicedMessage([head, *pieces], total)


def _raise_first_refused(bwc: Any, cmd: Any, documents: list[Any]) -> None:
    """PyMongo's error for the first of ``documents`` (the skeleton: large values replaced
    by placeholders, which PyMongo's encoder refuses when it refuses the originals) its
    encoder refuses, if one is: each encoded alone, the loop running between two.
    Returns if none is refused alone (a document over the message size is refused only
    first in a command: PyMongo's to judge, on the originals)."""
    for index in range(len(documents)):
        _pause_if_spent()
        try:
            bwc.batch_command(cmd, documents[index : index + 1])
        except DocumentTooLarge:
            return


def _values_within(
    batch: list[Any], paths: list[tuple[Any, ...]], budget: int, opts: Any
) -> tuple[list[tuple[Any, ...]], list[tuple[list[Any], int]], int, int]:
    """The paths and pieces of the large values of the first documents of ``batch``
    whose values add up to ``budget`` bytes at most; how many documents those are (up to
    the first one left out), and the values' bytes."""
    chosen: list[tuple[Any, ...]] = []
    pieces: list[tuple[list[Any], int]] = []
    total = 0
    number = 0
    while number < len(paths):
        document = paths[number][0]
        following = number
        added = 0
        document_pieces = []
        while following < len(paths) and paths[following][0] == document:
            value_pieces = _value_pieces(_value_at(batch, paths[following]), opts)
            document_pieces.append(value_pieces)
            added += value_pieces[1]
            following += 1
        if total + added > budget:
            if not chosen:
                raise _NotSpliced
            return chosen, pieces, document, total
        chosen.extend(paths[number:following])
        pieces.extend(document_pieces)
        total += added
        number = following
    return chosen, pieces, len(batch), total


def _value_at(docs: list[Any], path: tuple[Any, ...]) -> Any:
    value = docs[path[0]]
    for key in path[1:]:
        value = _dict_getitem(value, key) if isinstance(value, dict) else value[key]
    return value


def check_pymongo_internals() -> list[str]:
    """What changed in PyMongo's message encoding that this module relies on (empty:
    nothing): where ``_op_msg`` encodes and a connection sends, and the layout of the
    message, checked by splicing a small one."""
    problems: list[str] = []
    if not {"_op_msg_uncompressed", "_op_msg_compressed"} <= code_names(pymongo.message._op_msg):
        problems.append(
            "pymongo.message._op_msg no longer encodes with _op_msg_uncompressed and "
            "_op_msg_compressed"
        )
    if (
        not {"_op_msg_no_header", "_compress"} <= code_names(_original_compressed)
        or not _compresses_as_pymongo()
    ):
        problems.append("pymongo.message._op_msg_compressed's message changed")
    connection: Any = pymongo.synchronous.pool.Connection
    if "sendall" not in code_names(connection.send_message) or not callable(
        getattr(pymongo.synchronous.pool, "sendall", None)
    ):
        problems.append("Connection.send_message no longer sends with pool.sendall")
    # An array too: its placeholder's layout, and its elements encoded as a document keyed
    # by their indexes, are PyMongo's array.
    document = {"_id": 1, "s": "spliced", "b": b"bytes", "n": {"x": 1, "l": [1, "2", {"3": 3}]}}
    command = {"insert": "c", "ordered": True, "$db": "db"}
    try:
        expected = _original(0, command, "documents", [document], DEFAULT_CODEC_OPTIONS)
        got = _spliced(
            0,
            command,
            "documents",
            [document],
            DEFAULT_CODEC_OPTIONS,
            [(0, "s"), (0, "b"), (0, "n", "l")],
        )
        joined, message = bytes(got[1]), expected[1]
        # The same but for the request id (bytes 4-7 of the header).
        same = joined[:4] + joined[8:] == message[:4] + message[8:] and got[2:] == expected[2:]
    except Exception:
        same = False
    if not same:
        problems.append("pymongo.message._op_msg_uncompressed's message layout changed")
    if not _bulk_splices(document):
        problems.append("pymongo.message._do_batched_op_msg's message or limits changed")
    elif not _joins_as_pymongo(document):
        problems.append("pymongo.message._do_batched_op_msg's document sequence changed")
    return problems


def _joins_as_pymongo(document: dict[str, Any]) -> bool:
    # join_documents of a bulk write's messages (one spliced) is PyMongo's message of all
    # their documents but for the request id.
    context = _CheckContext()
    cmd = {"insert": "c"}
    documents = [{"_id": 0}, document, {"_id": 2, "x": "y" * 100}]
    try:
        expected = context.batch_command(cmd, iter(documents))[1]
        prefix = sequence_prefix(context, cmd)
        first = context.batch_command(cmd, iter(documents[:1]))[1]
        more = [
            document_pieces(_spliced_command(context, cmd, document), prefix),
            document_pieces(context.batch_command(cmd, iter(documents[2:]))[1], prefix),
        ]
        joined = bytes(join_documents(first, more, prefix))
    except Exception:
        return False
    return bool(joined[:4] + joined[8:] == expected[:4] + expected[8:])


def _spliced_command(context: Any, cmd: Any, document: Any) -> SplicedMessage:
    # The message of a bulk write of ``document`` with its values "s" and "b" spliced.
    paths: list[tuple[Any, ...]] = [(0, "s"), (0, "b")]
    skeleton, values, markers = _skeleton([document], paths)
    _, message, to_send = context.batch_command(cmd, iter(skeleton))
    pieces = [_value_pieces(value, DEFAULT_CODEC_OPTIONS) for value in values]
    return _splice(message, len(to_send), paths, pieces, markers)[0]


def _compresses_as_pymongo() -> bool:
    # compress_pieces makes PyMongo's compressed message of a spliced message: the same
    # header but for the request id, and the same content once decompressed.
    document = {"_id": 1, "s": "spliced" * 10, "b": b"bytes"}
    command = {"insert": "c", "ordered": True, "$db": "db"}
    ctx = pymongo.compression_support.ZlibContext(-1)
    try:
        _, expected, _, _ = _original_compressed(
            0, command, "documents", [document], DEFAULT_CODEC_OPTIONS, ctx
        )
        _, spliced, _, _ = _spliced(
            0, command, "documents", [document], DEFAULT_CODEC_OPTIONS, [(0, "s"), (0, "b")]
        )
        _, got = compress_pieces(spliced, ctx)
        return bool(
            got[:4] + got[8:25] == expected[:4] + expected[8:25]
            and zlib.decompress(got[25:]) == zlib.decompress(expected[25:])
        )
    except Exception:
        return False


_BULK_CONTEXT: Any = pymongo.message._BulkWriteContext


class _CheckConnection:
    max_message_size = 48_000_000
    max_bson_size = 16 * 1024 * 1024
    max_write_batch_size = 100_000
    compression_context = None


class _CheckContext:
    # What PyMongo's batched encoder reads of a _BulkWriteContext.
    conn = _CheckConnection()
    codec = DEFAULT_CODEC_OPTIONS
    max_message_size = property(lambda self: self.conn.max_message_size)
    max_bson_size = property(lambda self: self.conn.max_bson_size)
    max_write_batch_size = property(lambda self: self.conn.max_write_batch_size)
    op_type = pymongo.message._INSERT

    def batch_command(self, cmd: Any, docs: Any) -> Any:
        context: Any = self
        return pymongo.message._do_batched_op_msg(
            "db.$cmd", self.op_type, cmd, docs, DEFAULT_CODEC_OPTIONS, context
        )


def _bulk_splices(document: dict[str, Any]) -> bool:
    # A bulk write's command spliced: PyMongo's message; and PyMongo's encoder reads the
    # limits of the bulk write context, which reads its connection's.
    limit = getattr(_BULK_CONTEXT.max_message_size, "fget", None)
    if not {"conn", "max_message_size"} <= code_names(limit):
        return False
    context = _CheckContext()
    try:
        expected = context.batch_command({"insert": "c"}, iter([document]))
        skeleton = _skeleton([document], [(0, "s"), (0, "b")])[0]
        context.conn.max_message_size = 10
        try:
            context.batch_command({"insert": "c"}, iter(skeleton))
        except pymongo.errors.DocumentTooLarge:
            pass  # the first document over the limit: the limit is read from conn
        else:
            return False
        finally:
            context.conn.max_message_size = _CheckConnection.max_message_size
        joined = bytes(_spliced_command(context, {"insert": "c"}, document))
    except Exception:
        return False
    return bool(joined[:4] + joined[8:] == expected[1][:4] + expected[1][8:])


def install(message_module: Any) -> None:
    """Install :func:`green_op_msg` as ``message_module._op_msg_uncompressed`` and
    :func:`green_op_msg_compressed` as ``message_module._op_msg_compressed``."""
    global _original, _original_compressed
    current = message_module._op_msg_uncompressed
    if current is not green_op_msg:
        _original = current
        message_module._op_msg_uncompressed = green_op_msg
    current = message_module._op_msg_compressed
    if current is not green_op_msg_compressed:
        _original_compressed = current
        message_module._op_msg_compressed = green_op_msg_compressed
