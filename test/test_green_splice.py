"""Large values sent as pieces of a write command (``motor.green.splice``).

The unit tests compare each spliced message, joined, with PyMongo's encoding of the same
command, byte for byte but the request id; the server tests check the documents that
arrive, the errors (PyMongo's), and that the loop ran while a large value was sent.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import enum
import itertools
import socket
import struct
import threading
import types
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import bson
import pymongo
import pymongo.message
import pytest
from bson import SON, Binary, Int64, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import DEFAULT_CODEC_OPTIONS, CodecOptions, TypeRegistry
from bson.raw_bson import RawBSONDocument
from pymongo.compression_support import ZlibContext
from pymongo.errors import DocumentTooLarge

from motor.green import hub as hub_module
from motor.green import pool as green_pool
from motor.green import socket as socket_module
from motor.green import splice
from test.framework import Framework, loop_turns

LARGE = splice.LARGE_VALUE_BYTES
ASCII = "a" * LARGE + "tail"
UNICODE = "é€😀" * (LARGE // 3 + 1)
BLOB = bytes(range(256)) * (LARGE // 256 + 3)
# Large arrays: of values, and of documents.
NUMBERS = [*range(splice.LARGE_ARRAY_ITEMS - 2), 2**40, 1.5]
# Numbers of one type, which _number_elements writes: doubles (with NaN, infinities, -0.0
# and the smallest subnormal) and 32-bit integers of both signs, past powers of ten.
FLOATS = [
    *(i * 0.37 - 99_000 for i in range(splice.LARGE_ARRAY_ITEMS)),
    float("nan"),
    float("inf"),
    -float("inf"),
    -0.0,
    5e-324,
]
INT32S = [
    *((i * 7919) % 2**32 - 2**31 for i in range(splice.LARGE_ARRAY_ITEMS)),
    2**31 - 1,
    -(2**31),
]
MIXED = [
    *(i if i % 3 else f"v{i}" for i in range(splice.LARGE_ARRAY_ITEMS)),
    None,
    True,
    {"a": 1},
    [1, "x"],
    ObjectId(),
    datetime.datetime(2020, 1, 2, 3, 4, 5, 6000),
    Binary(b"b", 4),
]
ROWS = [
    {"n": i, "name": f"row {i}", "tags": ["a", "b"]} for i in range(splice.LARGE_ARRAY_DOCUMENTS)
]


@pytest.fixture
def in_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make green_op_msg take its child's path on this thread (nothing here parks)."""
    monkeypatch.setattr(splice, "Child", object)


def _pymongo(identifier: str, docs: list[Any], command: dict[str, Any] | None = None) -> Any:
    command = command or {"insert": "c", "ordered": True, "$db": "db"}
    return splice._original(0, command, identifier, docs, DEFAULT_CODEC_OPTIONS)


def _green(identifier: str, docs: list[Any], command: dict[str, Any] | None = None) -> Any:
    command = command or {"insert": "c", "ordered": True, "$db": "db"}
    return splice.green_op_msg(0, command, identifier, docs, DEFAULT_CODEC_OPTIONS)


def _same_message(got: Any, expected: Any) -> None:
    # The same message but for the request id (bytes 4-7 of the header), and the same
    # sizes PyMongo checks against the server's limits.
    joined, message = bytes(got[1]), expected[1]
    assert len(got[1]) == len(message)
    assert joined[:4] + joined[8:] == message[:4] + message[8:]
    assert got[2:] == expected[2:]


def _nest(levels: int, value: Any) -> Any:
    # ``value`` in ``levels`` embedded documents and arrays, alternately.
    for level in range(levels):
        value = {"v": value} if level % 2 else [value]
    return value


class _Computed(dict):  # type: ignore[type-arg]
    """A dict subclass whose methods disagree with its entries, as PyMongo's C encoder
    ignores them: reversed keys, upper-cased values."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(dict.keys(self))[::-1])

    def keys(self) -> Any:
        return list(self)

    def __getitem__(self, key: Any) -> Any:
        value = dict.__getitem__(self, key)
        return value.upper() if isinstance(value, str) else value

    def items(self) -> Any:
        return [(key, self[key]) for key in self]


def _moved(pairs: list[tuple[str, Any]], last: str) -> collections.OrderedDict[str, Any]:
    """An OrderedDict whose order (move_to_end) is not its dict's order."""
    document = collections.OrderedDict(pairs)
    document.move_to_end(last)
    return document


INSERTS: dict[str, list[Any]] = {
    "ascii": [{"_id": 1, "name": "big", "pad": ASCII}],
    "unicode": [{"_id": 1, "pad": UNICODE, "n": 1}],
    "bytes": [{"pad": BLOB, "_id": ObjectId()}],
    "binary-subtypes": [{"a": Binary(BLOB, 0), "b": Binary(BLOB, 5), "c": Binary(BLOB, 0x80)}],
    "several": [
        {"_id": 1, "small": "x"},
        {"_id": 2, "a": ASCII, "b": BLOB, "c": UNICODE, "d": {"nested": 1}},
        {"_id": 3, "a": ASCII},
    ],
    "large-id": [{"x": 1, "_id": ASCII}],
    "son": [SON([("z", ASCII), ("_id", 5), ("a", [1, 2])])],
    "embedded": [{"_id": 1, "sub": {"pad": ASCII, "n": 1}, "list": [ASCII, 2, BLOB]}],
    "deep": [{"a": {"b": [{"c": {"d": [0, UNICODE]}}, {"e": Binary(BLOB, 4)}]}, "_id": 7}],
    "embedded-son-top": [SON([("_id", 1), ("meta", {"pad": ASCII, "x": [1, {"y": BLOB}]})])],
    "deepest": [{"_id": 1, "a": _nest(splice.MAX_DEPTH, ASCII)}],
    "ordered-dict-moved": [_moved([("_id", 1), ("a", 1), ("s", ASCII), ("b", 2)], "a")],
    "dict-subclass": [_Computed([("_id", 1), ("a", "q"), ("s", "x" * LARGE), ("b", BLOB)])],
    "embedded-several": [
        {"_id": 1, "a": {"x": 1}, "b": [], "c": {}},
        {"_id": 2, "a": {"x": ASCII}, "b": [{"y": ASCII}, {"z": BLOB}], "c": ASCII},
    ],
    "array": [{"_id": 1, "numbers": NUMBERS}],
    "array-mixed": [{"mixed": MIXED, "_id": 1}],
    "array-of-documents": [{"_id": 1, "rows": ROWS, "n": 2}],
    "array-of-arrays": [
        {"_id": 1, "grid": [[i, i + 1] for i in range(splice.LARGE_ARRAY_DOCUMENTS)]}
    ],
    "arrays-embedded": [
        {"_id": 1, "a": {"b": [1, {"c": NUMBERS}], "rows": ROWS}, "pad": ASCII, "z": 1},
        {"_id": 2},
        {"_id": 3, "numbers": NUMBERS, "blob": BLOB},
    ],
    "array-with-a-large-string": [{"_id": 1, "l": [ASCII, *NUMBERS]}],
    "array-of-floats": [{"_id": 1, "f": FLOATS}],
    "array-of-32-bit-ints": [{"_id": 1, "i": INT32S}],
    "array-of-ints-past-32-bits": [{"_id": 1, "i": [*INT32S, 2**31, -(2**31) - 1, 2**62]}],
}


@pytest.mark.parametrize("docs", list(INSERTS.values()), ids=list(INSERTS))
def test_a_spliced_insert_is_pymongo_s_message(in_child: None, docs: list[Any]) -> None:
    got = _green("documents", docs)
    assert type(got[1]) is splice.SplicedMessage
    _same_message(got, _pymongo("documents", docs))


UPDATES = {
    "replacement": [{"q": {"_id": 1}, "u": {"_id": 1, "pad": ASCII, "b": BLOB}, "upsert": True}],
    "operators": [
        {
            "q": {"_id": {"$in": [1, 2]}},
            "u": {"$set": {"pad": ASCII, "k": 1}, "$inc": {"n": 1}, "$setOnInsert": {"u": UNICODE}},
            "multi": True,
        }
    ],
    "several": [
        {"q": {"_id": 1}, "u": {"$set": {"pad": BLOB}}},
        {"q": {"_id": 2}, "u": {"x": 1}},
        {"q": {"_id": 3}, "u": {"pad": ASCII}, "hint": {"_id": 1}},
    ],
    "embedded": [
        {"q": {"_id": 1}, "u": {"$set": {"meta": {"pad": ASCII}}, "$push": {"l": {"b": BLOB}}}},
        {"q": {"_id": 2}, "u": {"_id": 2, "list": [UNICODE]}},
    ],
    "pipeline": [{"q": {}, "u": [{"$set": {"pad": ASCII}}, {"$unset": "x"}]}],
    "arrays": [
        {"q": {"_id": 1}, "u": {"$set": {"numbers": NUMBERS}}},
        {"q": {"_id": 2}, "u": {"$push": {"rows": {"$each": ROWS}}}},
        {"q": {"_id": 3}, "u": {"_id": 3, "rows": ROWS}, "upsert": True},
        {"q": {}, "u": [{"$set": {"numbers": NUMBERS}}]},
    ],
}


@pytest.mark.parametrize("docs", list(UPDATES.values()), ids=list(UPDATES))
def test_a_spliced_update_is_pymongo_s_message(in_child: None, docs: list[Any]) -> None:
    command = {"update": "c", "ordered": True, "$db": "db"}
    got = _green("updates", docs, command)
    assert type(got[1]) is splice.SplicedMessage
    _same_message(got, _pymongo("updates", docs, command))


PYMONGO_S = {
    "small values": ("documents", [{"_id": 1, "pad": "a" * (LARGE - 1), "b": BLOB[: LARGE - 1]}]),
    "old binary": ("documents", [{"_id": 1, "pad": Binary(BLOB, 2)}]),
    "embedded son": ("documents", [{"_id": 1, "sub": SON([("pad", ASCII)])}]),
    "tuple": ("documents", [{"_id": 1, "t": (ASCII,)}]),
    "mapping": ("documents", [types.MappingProxyType({"_id": 1, "pad": ASCII})]),
    "mapping update": ("updates", [{"q": {}, "u": types.MappingProxyType({"pad": ASCII})}]),
    "too deep": ("documents", [{"_id": 1, "a": _nest(splice.MAX_DEPTH + 1, ASCII)}]),
    "too many values": (
        "documents",
        [{"_id": 1, "l": list(range(splice.VISIT_LIMIT)), "pad": {"s": ASCII}}],
    ),
    "array of values, one short": ("documents", [{"_id": 1, "l": NUMBERS[:-3]}]),
    "array of documents, one short": ("documents", [{"_id": 1, "l": ROWS[:-1]}]),
    "array first of values": ("documents", [{"_id": 1, "l": [0, *ROWS[:-1]]}]),
    "tuple of many": ("documents", [{"_id": 1, "t": tuple(NUMBERS)}]),
    "array in a tuple": ("documents", [{"_id": 1, "t": (NUMBERS,)}]),
    "array of deletes": ("deletes", [{"q": {"_id": {"$in": NUMBERS}}, "limit": 0}]),
    "raw document": ("documents", [RawBSONDocument(bson.encode({"_id": 1, "pad": ASCII}))]),
    "str subclass": ("documents", [{"_id": 1, "pad": type("S", (str,), {})(ASCII)}]),
    "deletes": ("deletes", [{"q": {"pad": ASCII}, "limit": 1}]),
}


@pytest.mark.parametrize("case", list(PYMONGO_S.values()), ids=list(PYMONGO_S))
def test_other_commands_are_pymongo_s_encoding(in_child: None, case: Any) -> None:
    identifier, docs = case
    got = _green(identifier, docs)
    assert type(got[1]) is bytes
    _same_message(got, _pymongo(identifier, docs))


def test_outside_a_child_nothing_is_spliced() -> None:
    docs = INSERTS["several"]
    got = _green("documents", docs)
    assert type(got[1]) is bytes
    _same_message(got, _pymongo("documents", docs))


def test_what_pymongo_s_encoder_refuses_it_refuses_with_its_own_error(in_child: None) -> None:
    for docs in (
        [{"_id": 1, "pad": ASCII, "bad": object()}],  # the skeleton's encoding fails
        [{"_id": 1, "pad": "\ud800" * LARGE}],  # a large value's encoding fails
        [{"_id": 1, "pad": ASCII, "bad\0key": 1}],
        [{"_id": 1, "numbers": [*NUMBERS, object()]}],  # a large array's encoding fails
        [{"_id": 1, "rows": [*ROWS, {"bad\0key": 1}]}],
        [{"_id": 1, "rows": [*ROWS, {1: "a key that is not a string"}]}],
        [{"_id": 1, "uuids": [uuid.uuid4()] * splice.LARGE_ARRAY_ITEMS}],  # no representation
    ):
        with pytest.raises(Exception) as pymongo_s:
            _pymongo("documents", docs)
        with pytest.raises(Exception) as green:
            _green("documents", docs)
        assert type(green.value) is type(pymongo_s.value)
        assert str(green.value) == str(pymongo_s.value)


def test_a_large_array_is_encoded_a_slice_at_a_time(
    in_child: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each slice is one call of PyMongo's encoder, on a document keyed by the elements'
    # indexes, or for numbers of one type one call of _number_elements; the first
    # ARRAY_FIRST_SLICE elements, each next at most 8 times the one before (sized by
    # time), the last what is left.  The numbers' type changes every 40,000 so that
    # both ways are taken.
    slices: list[tuple[str, int]] = []
    ways: set[str] = set()
    original = bson.encode
    original_numbers = splice._number_elements

    def encode(document: Any, *args: Any, **kwargs: Any) -> bytes:
        keys = list(document)
        slices.append((keys[0], len(keys)))
        ways.add("encoder")
        assert keys == [str(int(keys[0]) + i) for i in range(len(keys))]
        return original(document, *args, **kwargs)

    def number_elements(value: list[Any], start: int, stop: int) -> Any:
        elements = original_numbers(value, start, stop)
        if elements is not None:
            slices.append((str(start), stop - start))
            ways.add("numbers")
        return elements

    monkeypatch.setattr(bson, "encode", encode)
    monkeypatch.setattr(splice, "_number_elements", number_elements)
    numbers = [float(n) if n // 40_000 % 2 else n for n in NUMBERS]
    docs = [{"_id": 1, "numbers": numbers}]
    got = _green("documents", docs)
    assert type(got[1]) is splice.SplicedMessage
    monkeypatch.setattr(bson, "encode", original)
    _same_message(got, _pymongo("documents", docs))
    assert ways == {"encoder", "numbers"}
    assert len(slices) > 1 and slices[0] == ("0", splice.ARRAY_FIRST_SLICE)
    assert [int(first) for first, _ in slices] == [
        sum(count for _, count in slices[:i]) for i in range(len(slices))
    ]
    assert sum(count for _, count in slices) == len(numbers)
    for (_, before), (_, count) in itertools.pairwise(slices[:-1]):
        assert splice.ARRAY_MIN_SLICE <= count <= 8 * before


@pytest.mark.parametrize(
    "options",
    [
        CodecOptions(uuid_representation=UuidRepresentation.STANDARD),
        CodecOptions(uuid_representation=UuidRepresentation.PYTHON_LEGACY, tz_aware=True),
        CodecOptions(
            uuid_representation=UuidRepresentation.STANDARD,
            type_registry=TypeRegistry(fallback_encoder=lambda value: str(value)),
        ),
    ],
    ids=["uuid-standard", "uuid-legacy", "fallback-encoder"],
)
def test_a_large_array_is_encoded_with_the_collection_s_codec_options(
    in_child: None, options: Any
) -> None:
    values: list[Any] = [uuid.UUID(int=i) for i in range(splice.LARGE_ARRAY_ITEMS)]
    values += [datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC), complex(1, 2)]
    if options.type_registry.fallback_encoder is None:
        values.pop()
    docs = [{"_id": 1, "values": values}]
    command = {"insert": "c", "ordered": True, "$db": "db"}
    got = splice.green_op_msg(0, command, "documents", docs, options)
    assert type(got[1]) is splice.SplicedMessage
    _same_message(got, splice._original(0, command, "documents", docs, options))


def test_the_caller_s_documents_are_left_alone(in_child: None) -> None:
    inner = {"pad": ASCII}
    statement: dict[str, Any] = {"q": {"_id": 1}, "u": {"$set": inner}}
    document = {"_id": 1, "pad": BLOB}
    _green("updates", [statement], {"update": "c", "$db": "db"})
    _green("documents", [document])
    assert statement == {"q": {"_id": 1}, "u": {"$set": {"pad": ASCII}}}
    assert statement["u"]["$set"] is inner and document == {"_id": 1, "pad": BLOB}


def test_through_pymongo_s_op_msg(in_child: None) -> None:
    # message._op_msg, as PyMongo's command runner calls it: the documents are taken out
    # of the command and put back.
    green_pool.install()
    spec = {"insert": "c", "ordered": True, "documents": [{"_id": 1, "pad": ASCII}]}
    # Patched by install(): the message is a SplicedMessage, not the bytes PyMongo declares.
    got: tuple[int, Any, int, int] = pymongo.message._op_msg(
        0, spec, "db", None, DEFAULT_CODEC_OPTIONS
    )
    assert type(got[1]) is splice.SplicedMessage
    assert spec["documents"] == [{"_id": 1, "pad": ASCII}] and spec["$db"] == "db"
    expected = splice._original(
        0,
        {"insert": "c", "ordered": True, "$db": "db"},
        "documents",
        spec["documents"],
        DEFAULT_CODEC_OPTIONS,
    )
    _same_message(got, expected)


class _Reversing:
    # A compression context of another compressor than zlib.
    compressor_id = 3

    @staticmethod
    def compress(data: bytes) -> bytes:
        return bytes(data)[::-1]


@pytest.mark.parametrize(
    "ctx",
    [ZlibContext(-1), ZlibContext(1), _Reversing()],
    ids=["zlib", "zlib level 1", "another compressor"],
)
@pytest.mark.parametrize("value", [ASCII, UNICODE, BLOB], ids=["ascii", "unicode", "bytes"])
def test_a_spliced_message_compresses_to_pymongo_s(in_child: None, ctx: Any, value: Any) -> None:
    # On a compressed connection: PyMongo's compressed message but for the request id,
    # and, for zlib, the same message once decompressed (a stream compressed in pieces
    # is not byte for byte the one-shot compression of the same bytes).
    command = {"insert": "c", "ordered": True, "$db": "db"}
    docs = [{"_id": 1, "pad": value, "n": 1}]
    expected = splice._original_compressed(
        0, command, "documents", docs, DEFAULT_CODEC_OPTIONS, ctx
    )
    spliced = splice._spliced(0, command, "documents", docs, DEFAULT_CODEC_OPTIONS, [(0, "pad")])
    request_id, got = splice.compress_pieces(spliced[1], ctx)
    assert got[4:8] == request_id.to_bytes(4, "little", signed=True)
    assert got[8:25] == expected[1][8:25]  # header but its length, original opcode, size
    if isinstance(ctx, ZlibContext):
        assert zlib.decompress(got[25:]) == zlib.decompress(expected[1][25:])
        assert struct.unpack_from("<i", got)[0] == len(got)
    else:
        assert got == expected[1][:4] + got[4:8] + expected[1][8:]
    assert spliced[2:] == expected[2:]


def test_an_ascii_string_is_encoded_as_it_is_sent(in_child: None) -> None:
    got = _green("documents", [{"_id": 1, "pad": ASCII}])[1]
    assert ASCII in got.pieces  # the string itself, not a copy of its bytes
    chunks = [bytes(chunk) for chunk in got.chunks()]
    assert max(map(len, chunks)) <= max(splice.STR_SLICE, len(got.pieces[0]))
    assert b"".join(chunks) == bytes(got)
    # A bytes value is sent from its own memory.
    got = _green("documents", [{"_id": 1, "pad": BLOB}])[1]
    assert any(isinstance(p, memoryview) and p.obj is BLOB for p in got.pieces)


def test_any_other_socket_gets_the_message_joined(in_child: None) -> None:
    message = _green("documents", INSERTS["several"])[1]
    received = bytearray()
    left, right = socket.socketpair()

    def read() -> None:
        while len(received) < len(message):
            received.extend(right.recv(1 << 20))

    with left, right:
        reader = threading.Thread(target=read)
        reader.start()
        green_pool._green_sendall(left, message)
        reader.join(30)
    assert bytes(received) == bytes(message)


def test_the_internals_check_covers_the_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert splice.check_pymongo_internals() == []

    def other_layout(flags: int, command: Any, identifier: str, docs: Any, opts: Any) -> Any:
        request_id, message, size, max_size = splice._original(
            flags, command, identifier, docs, opts
        )
        return request_id, message + b"\0", size, max_size

    monkeypatch.setattr(splice, "_original", other_layout)
    assert any("layout changed" in p for p in splice.check_pymongo_internals())
    monkeypatch.undo()

    # Arrays whose elements the encoder keys otherwise than a document's.
    encode = bson.encode

    def other_keys(document: Any, *args: Any) -> bytes:
        if list(document) == ["0", "1", "2"]:
            document = dict(zip(["a", "b", "c"], document.values()))
        return encode(document, *args)

    monkeypatch.setattr(bson, "encode", other_keys)
    assert any("layout changed" in p for p in splice.check_pymongo_internals())
    monkeypatch.undo()

    batched = pymongo.message._do_batched_op_msg

    def other_batch(*args: Any) -> Any:
        request_id, message, to_send = batched(*args)
        return request_id, message + b"\0", to_send

    monkeypatch.setattr(pymongo.message, "_do_batched_op_msg", other_batch)
    assert any("_do_batched_op_msg" in p for p in splice.check_pymongo_internals())
    monkeypatch.undo()

    # A message whose bytes before its documents depend on how many there are (here its
    # flags): joined messages would not be PyMongo's.
    def counted(*args: Any) -> Any:
        request_id, message, to_send = batched(*args)
        return request_id, message[:16] + len(to_send).to_bytes(4, "little") + message[20:], to_send

    monkeypatch.setattr(pymongo.message, "_do_batched_op_msg", counted)
    assert splice.check_pymongo_internals() == [
        "pymongo.message._do_batched_op_msg's document sequence changed"
    ]


@pytest.fixture
def spliced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The sizes of the spliced messages sent."""
    sizes: list[int] = []
    original = splice._spliced

    def record(*args: Any) -> Any:
        result = original(*args)
        if args[1].get("$db") == "motor_test":  # not the internals check's sample
            sizes.append(len(result[1]))
        return result

    monkeypatch.setattr(splice, "_spliced", record)
    yield sizes


async def _insert_in_slices(
    coll: Any, document: dict[str, Any], ascii_bytes: int, pauses: list[int]
) -> None:
    # Insert ``document`` with no work budget: the loop turns, and the child pauses,
    # before each slice of its ``ascii_bytes`` of ASCII strings (at least).
    async with loop_turns() as turns:
        pauses[0] = 0
        result = await coll.insert_one(document)
    assert result.inserted_id == document["_id"]
    slices = ascii_bytes // splice.STR_SLICE
    assert pauses[0] >= slices and turns[0] >= slices, (pauses[0], turns[0])
    assert await coll.find_one({"_id": document["_id"]}) == document


async def test_a_large_document_is_sent_in_pieces_with_the_loop_running(
    fw: Framework,
    server: Any,
    pauses: list[int],
    spliced: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_{fw.name}"]
    await coll.drop()
    document = {"_id": 1, "pad": "p" * (8 * 1024 * 1024), "blob": BLOB, "u": UNICODE}
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    await _insert_in_slices(coll, document, 8 * 1024 * 1024, pauses)
    assert len(spliced) == 1


async def test_replace_and_update_with_large_values(
    fw: Framework, server: Any, spliced: list[int]
) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_update_{fw.name}"]
    await coll.drop()
    await coll.insert_one({"_id": 1, "n": 0})
    await coll.replace_one({"_id": 1}, {"pad": ASCII, "n": 1})
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "pad": ASCII, "n": 1}
    result = await coll.update_one(
        {"_id": 1}, {"$set": {"pad": UNICODE, "b": BLOB}, "$inc": {"n": 1}}
    )
    assert result.modified_count == 1
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "pad": UNICODE, "n": 2, "b": BLOB}
    await coll.update_one({"_id": 2}, {"$set": {"pad": ASCII}}, upsert=True)
    assert await coll.find_one({"_id": 2}) == {"_id": 2, "pad": ASCII}
    assert len(spliced) == 3


async def test_embedded_large_values_round_trip(
    fw: Framework,
    server: Any,
    pauses: list[int],
    spliced: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_embedded_{fw.name}"]
    await coll.drop()
    document = {
        "_id": 1,
        "meta": {"name": "x", "pad": "q" * (4 * 1024 * 1024)},
        "parts": [{"blob": BLOB}, UNICODE, 3],
    }
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    await _insert_in_slices(coll, document, 4 * 1024 * 1024, pauses)
    await coll.update_one({"_id": 1}, {"$set": {"meta": {"pad": ASCII}}, "$push": {"parts": BLOB}})
    document["meta"] = {"pad": ASCII}
    document["parts"].append(BLOB)  # type: ignore[attr-defined]
    assert await coll.find_one({"_id": 1}) == document
    assert len(spliced) == 2


async def test_large_arrays_are_sent_in_slices_with_the_loop_running(
    fw: Framework,
    server: Any,
    pauses: list[int],
    spliced: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_arrays_{fw.name}"]
    await coll.drop()
    with fw.probe.uncounted():  # the test's data
        numbers = NUMBERS * 2  # 524,288 values: 25-30 ms for PyMongo's encoder here
        document = {"_id": 1, "numbers": numbers, "meta": {"rows": ROWS * 2}}
        many = [{"_id": 2, "numbers": NUMBERS}, {"_id": 3, "rows": ROWS, "n": 1}]
    await coll.insert_one(document)
    await coll.insert_many(many)
    await coll.update_one({"_id": 3}, {"$push": {"rows": {"$each": ROWS}}})
    found = await coll.find({}, sort=[("_id", 1)]).to_list()
    with fw.probe.uncounted():  # the test's comparison
        assert found == [document, many[0], {**many[1], "rows": ROWS * 2}]
    fw.probe.assert_below(0.010)  # written and read back with the loop running
    assert len(spliced) == 2  # insert_one, update_one; insert_many splices its own way
    # Slices of a fixed size, and no work budget: a pause before each slice but an
    # array's first ...
    size = 8192
    monkeypatch.setattr(splice, "ARRAY_FIRST_SLICE", size)
    monkeypatch.setattr(splice, "ARRAY_MIN_SLICE", size)
    monkeypatch.setattr(splice, "ARRAY_SLICE_SECONDS", 0.0)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    with fw.probe.uncounted():
        replacement = {"_id": 1, "numbers": numbers[::-1], "rows": ROWS}
        encoded = len(bson.encode(replacement))
    async with loop_turns() as turns:
        pauses[0] = 0
        await coll.replace_one({"_id": 1}, replacement)
    # ... and one before each LARGE_SEND_BYTES of the slices sent (many small pieces).
    slices = -(-len(numbers) // size) + -(-len(ROWS) // size)
    least = slices - 2 + encoded // socket_module.LARGE_SEND_BYTES - 1
    assert pauses[0] >= least and turns[0] >= least, (pauses[0], turns[0], least)
    found = await coll.find_one({"_id": 1})
    with fw.probe.uncounted():
        assert found == replacement


async def test_a_document_too_large_is_pymongo_s_error(
    fw: Framework, server: Any, spliced: list[int]
) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_too_large_{fw.name}"]
    document = {"_id": 1, "pad": "x" * (17 * 1024 * 1024)}

    def sync_insert() -> None:  # PyMongo's encoding of 17 MB, off the loop's thread
        with pymongo.MongoClient(server.uri) as sync:  # type: pymongo.MongoClient[Any]
            sync.motor_test[coll.name].insert_one(document)

    with pytest.raises(DocumentTooLarge) as pymongo_s:
        await asyncio.to_thread(sync_insert)
    with pytest.raises(DocumentTooLarge) as green:
        await coll.insert_one(document)
    assert str(green.value) == str(pymongo_s.value)
    assert len(spliced) == 1
    assert await coll.find_one({"_id": 1}) is None


async def test_a_large_document_over_tls(
    fw: Framework, tls_server: Any, spliced: list[int]
) -> None:
    client = fw.client(tls_server.uri, tls=True, tlsCAFile=tls_server.ca_file)
    coll = client.motor_test[f"splice_tls_{fw.name}"]
    await coll.drop()
    document = {"_id": 1, "pad": ASCII, "u": UNICODE, "b": BLOB}
    await coll.insert_one(document)
    assert len(spliced) == 1
    assert await coll.find_one({"_id": 1}) == document


# --------------------------------------------------------------------------- bulk writes


class _Connection:
    """The limits PyMongo's batched encoder reads, through a bulk write context."""

    def __init__(self, max_message_size: int, max_bson_size: int = 16 * 1024 * 1024) -> None:
        self.max_message_size = max_message_size
        self.max_bson_size = max_bson_size
        self.max_write_batch_size = 100_000
        self.compression_context = None


class _Context:
    """A stand-in for PyMongo's ``_BulkWriteContext``: its limits and ``batch_command``."""

    def __init__(self, op_type: int, conn: _Connection) -> None:
        self.op_type = op_type
        self.conn = conn

    codec = DEFAULT_CODEC_OPTIONS
    max_bson_size = property(lambda self: self.conn.max_bson_size)
    max_message_size = property(lambda self: self.conn.max_message_size)
    max_write_batch_size = property(lambda self: self.conn.max_write_batch_size)

    def batch_command(self, cmd: Any, docs: Any) -> Any:
        # self is a stand-in for the _BulkWriteContext PyMongo's signature asks for.
        return pymongo.message._do_batched_op_msg(
            "db.$cmd",
            self.op_type,
            cmd,
            docs,
            DEFAULT_CODEC_OPTIONS,
            self,  # type: ignore[arg-type]
        )


def _pymongo_batch(op_type: int, cmd: dict[str, Any], docs: list[Any], limit: int) -> Any:
    return _Context(op_type, _Connection(limit)).batch_command(dict(cmd), iter(docs))


def _same_batch(got: Any, expected: Any) -> None:
    joined, message = bytes(got[1]), expected[1]
    assert len(got[1]) == len(message)
    assert joined[:4] + joined[8:] == message[:4] + message[8:]
    assert got[2] == expected[2]


MB = 1024 * 1024


def test_a_bulk_command_is_pymongo_s_message_with_values_spliced() -> None:
    docs = [
        {"_id": 1, "a": ASCII, "b": BLOB},
        {"_id": 2, "small": 1},
        {"_id": 3, "u": UNICODE, "bin": Binary(BLOB, 5)},
        {"_id": 4, "meta": {"a": ASCII, "l": [1, {"b": BLOB}]}},
        {"_id": 5, "numbers": NUMBERS, "rows": ROWS},
    ]
    cmd = {"insert": "c", "ordered": True}
    context = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    got = splice.batch_command(context, dict(cmd), iter(docs), 48 * MB)
    assert type(got[1]) is splice.SplicedMessage and got[3] < 64 * 1024
    _same_batch(got, _pymongo_batch(pymongo.message._INSERT, cmd, docs, 48 * MB))
    # Dict subclasses are read as PyMongo's encoder reads them: their own entries.
    docs = [
        _moved([("_id", 1), ("a", 1), ("s", ASCII), ("b", 2)], "a"),
        _Computed([("_id", 2), ("a", "q"), ("s", "x" * LARGE)]),
    ]
    got = splice.batch_command(context, dict(cmd), iter(docs), 48 * MB)
    assert type(got[1]) is splice.SplicedMessage
    _same_batch(got, _pymongo_batch(pymongo.message._INSERT, cmd, docs, 48 * MB))
    # Updates: replacements and operators.
    statements = [
        {"q": {"_id": 1}, "u": {"pad": ASCII}, "upsert": True},
        {"q": {"_id": 2}, "u": {"$set": {"b": BLOB}}, "multi": False},
        {"q": {"_id": 3}, "u": {"$push": {"l": {"b": BLOB, "s": ASCII}}}},
        {"q": {"_id": 4}, "u": {"$push": {"rows": {"$each": ROWS}}}},
    ]
    cmd = {"update": "c", "ordered": False}
    context = _Context(pymongo.message._UPDATE, _Connection(48 * MB))
    got = splice.batch_command(context, dict(cmd), iter(statements), 48 * MB)
    assert type(got[1]) is splice.SplicedMessage and got[3] < 64 * 1024
    _same_batch(got, _pymongo_batch(pymongo.message._UPDATE, cmd, statements, 48 * MB))


def test_a_refused_document_among_large_values_is_found_one_document_at_a_time() -> None:
    # PyMongo's error for a document its encoder refuses, without encoding the documents'
    # large values together in one call.
    class Bad:
        pass

    docs: list[Any] = [{"_id": i, "pad": ASCII} for i in range(6)]
    docs.insert(4, {"_id": "bad", "pad": ASCII, "v": Bad()})
    context = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    calls: list[tuple[int, int]] = []
    encode = context.batch_command

    def counting(cmd: Any, batch: Any) -> Any:
        batch = list(batch)
        calls.append((len(batch), sum(1 for d in batch if any(d is doc for doc in docs))))
        return encode(cmd, batch)

    context.batch_command = counting  # type: ignore[method-assign,assignment]
    with pytest.raises(bson.errors.InvalidDocument) as ours:
        splice.batch_command(context, {"insert": "c", "ordered": True}, iter(docs), 48 * MB)
    with pytest.raises(bson.errors.InvalidDocument) as theirs:
        _pymongo_batch(pymongo.message._INSERT, {"insert": "c", "ordered": True}, docs, 48 * MB)
    assert str(ours.value) == str(theirs.value)
    # The skeleton (large values replaced), then its documents one at a time up to the
    # refused one: no original document, whose large values would be copied.
    assert calls == [(len(docs), 0)] + [(1, 0)] * 5


def test_a_bulk_command_counts_the_values_bytes_against_the_message_limit() -> None:
    # 16 MiB documents: three fit in 48 MiB by PyMongo's count of the placeholders, two by
    # their real size (values at most maxMessageSize - maxBsonSize per command).
    docs = [{"_id": i, "pad": "p" * (15 * MB)} for i in range(5)]
    cmd = {"insert": "c", "ordered": True}
    context = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    got = splice.batch_command(context, dict(cmd), iter(docs), 48 * MB)
    assert got[2] == docs[:2] and len(got[1]) <= 48 * MB
    _same_batch(got, _pymongo_batch(pymongo.message._INSERT, cmd, docs[:2], 48 * MB))
    assert context.conn.max_message_size == 48 * MB


def test_a_bulk_command_s_encoding_is_capped_in_bytes() -> None:
    docs = [{"_id": i, "pad": "m" * (30 * 1024)} for i in range(100)]
    cmd = {"insert": "c", "ordered": True}
    context = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    got = splice.batch_command(context, dict(cmd), iter(docs), MB)
    # Values under LARGE_VALUE_BYTES are PyMongo's to encode: a command of about 1 MiB.
    assert type(got[1]) is bytes and len(got[1]) <= MB and got[3] == len(got[1])
    assert 30 <= len(got[2]) <= 34
    _same_batch(got, _pymongo_batch(pymongo.message._INSERT, cmd, got[2], 48 * MB))
    # A first document over the cap is a command of its own.
    big = [{"_id": 1, **{f"f{i}": "x" * 1000 for i in range(2000)}}, {"_id": 2}]
    got = splice.batch_command(context, dict(cmd), iter(big), MB)
    assert got[2] == big[:1]
    assert context.conn.max_message_size == 48 * MB


def test_a_bulk_command_leaves_to_pymongo_what_it_does_not_splice() -> None:
    cmd = {"insert": "c", "ordered": True}
    context = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    docs = [{"_id": 1, "pad": ASCII}]
    # Unacknowledged writes, deletes, and a look not asked for.
    unack = {**cmd, "writeConcern": {"w": 0}}
    assert type(splice.batch_command(context, dict(unack), iter(docs), 48 * MB)[1]) is bytes
    assert type(splice.batch_command(context, dict(cmd), iter(docs), 48 * MB, False)[1]) is bytes
    deletes = _Context(pymongo.message._DELETE, _Connection(48 * MB))
    statement = [{"q": {"pad": ASCII}, "limit": 1}]
    delete = {"delete": "c", "ordered": True}
    assert type(splice.batch_command(deletes, dict(delete), iter(statement), 48 * MB)[1]) is bytes
    # A document whose values alone exceed a command's room: PyMongo's, and its error.
    huge = [{"_id": 1, "pad": b"h" * (33 * MB)}]
    with pytest.raises(DocumentTooLarge) as pymongo_s:
        _pymongo_batch(pymongo.message._INSERT, cmd, huge, 16 * MB)
    with pytest.raises(DocumentTooLarge) as green:
        splice.batch_command(
            _Context(pymongo.message._INSERT, _Connection(16 * MB)), dict(cmd), iter(huge), MB
        )
    assert str(green.value) == str(pymongo_s.value)
    # A compressed connection.
    compressed = _Context(pymongo.message._INSERT, _Connection(48 * MB))
    compressed.conn.compression_context = object()  # type: ignore[assignment]
    compressed.batch_command = lambda cmd, docs: pymongo.message._batched_op_msg(  # type: ignore[method-assign]
        pymongo.message._INSERT,
        cmd,
        list(docs),
        True,
        DEFAULT_CODEC_OPTIONS,
        compressed,  # type: ignore[arg-type]
    )
    assert type(splice.batch_command(compressed, dict(cmd), iter(docs), 48 * MB)[1]) is bytes
    # A value PyMongo's encoder refuses: its error.
    bad = [{"_id": 1, "pad": "\ud800" * LARGE}]
    with pytest.raises(UnicodeEncodeError):
        splice.batch_command(context, dict(cmd), iter(bad), 48 * MB)
    assert context.conn.max_message_size == 48 * MB


class _Inserts(pymongo.monitoring.CommandListener):
    """The number of documents of every ``insert`` command started."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def started(self, event: Any) -> None:
        if event.command_name == "insert":
            self.sizes.append(len(event.command["documents"]))

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


async def test_insert_many_and_bulk_write_with_large_values(
    fw: Framework, server: Any, pauses: list[int]
) -> None:
    inserts = _Inserts()
    client = fw.client(server.uri, event_listeners=[inserts])
    coll = client.motor_test[f"splice_bulk_{fw.name}"]
    await coll.drop()
    documents = [{"_id": i, "pad": ASCII, "b": BLOB, "u": UNICODE, "n": i} for i in range(6)] + [
        {"_id": 6, "small": True}
    ]
    sent = splice.SplicedMessage.chunks
    spliced = [0]

    def chunks(self: splice.SplicedMessage) -> Any:
        spliced[0] += 1
        return sent(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(splice.SplicedMessage, "chunks", chunks)
        # With no work budget the loop runs between two slices whatever the machine's
        # speed (with the default budget it does once the budget is spent).
        patch.setattr(hub_module, "WORK_BUDGET", 0.0)
        pauses[0] = 0
        result = await coll.insert_many(documents)
        assert result.inserted_ids == list(range(7))
        assert spliced[0] == len(inserts.sizes) >= 1 and sum(inserts.sizes) == 7
        assert pauses[0] > 0
        assert await coll.find().sort("_id").to_list(None) == documents
        bulk = await coll.bulk_write(
            [
                pymongo.InsertOne({"_id": 10, "pad": BLOB}),
                pymongo.ReplaceOne({"_id": 1}, {"pad": UNICODE}),
                pymongo.UpdateOne({"_id": 2}, {"$set": {"pad": BLOB}, "$inc": {"n": 1}}),
                pymongo.DeleteOne({"_id": 3}),
            ]
        )
    assert (bulk.inserted_count, bulk.matched_count, bulk.modified_count) == (1, 2, 2)
    assert bulk.deleted_count == 1
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "pad": UNICODE}
    assert await coll.find_one({"_id": 2}) == {**documents[2], "pad": BLOB, "n": 3}
    assert await coll.find_one({"_id": 10}) == {"_id": 10, "pad": BLOB}
    assert await coll.count_documents({}) == 7


async def test_bulk_errors_with_large_values_are_pymongo_s(fw: Framework, server: Any) -> None:
    coll = fw.client(server.uri).motor_test[f"splice_bulk_errors_{fw.name}"]
    documents = [{"_id": 1, "pad": ASCII}, {"_id": 1, "pad": BLOB}, {"_id": 2, "pad": ASCII}]

    def sync_write() -> Any:  # PyMongo's own, off the loop's thread
        with pymongo.MongoClient(server.uri) as sync:  # type: pymongo.MongoClient[Any]
            sync.motor_test[coll.name].drop()
            try:
                sync.motor_test[coll.name].insert_many([dict(d) for d in documents])
            except pymongo.errors.BulkWriteError as error:
                return error.details

    expected = await asyncio.to_thread(sync_write)
    await coll.drop()
    with pytest.raises(pymongo.errors.BulkWriteError) as green:
        await coll.insert_many([dict(d) for d in documents])
    details = green.value.details
    assert details["nInserted"] == expected["nInserted"] == 1
    assert [e["index"] for e in details["writeErrors"]] == [
        e["index"] for e in expected["writeErrors"]
    ]
    assert await coll.find().to_list(None) == [documents[0]]


@pytest.mark.parametrize(
    ("first", "count"),
    [
        (0, 1),
        (0, 10),
        (5, 17),
        (9, 2),
        (95, 1234),
        (99_990, 20),
        (999_995, 10),
        (1_234_567, 20_000),
    ],
)
@pytest.mark.parametrize("kind", ["int", "float"])
def test_numbers_of_one_type_are_written_as_pymongo_s_encoder_writes_them(
    first: int, count: int, kind: str
) -> None:
    # The elements keyed first .. first + count - 1, whatever the keys' digits.
    value: list[Any]
    if kind == "int":
        value = [(n * 7919) % 2**32 - 2**31 for n in range(first + count)]
    else:
        value = [n / 7 - 1e5 for n in range(first + count)]
    keyed = dict(zip(map(str, range(first, first + count)), value[first:]))
    elements = splice._number_elements(value, first, first + count)
    assert elements is not None
    assert bytes(elements) == bson.encode(keyed)[4:-1]


class Letter(enum.IntEnum):
    A = 1


@pytest.mark.parametrize(
    "value",
    [
        [1, 2, True],
        [1, Int64(2)],
        [1, 2**31],
        [1, -(2**31) - 1],
        [1, 2.0],
        [1.0, 2],
        [Letter.A, 1],
        ["1", 2],
        [None],
    ],
    ids=[
        "bool",
        "Int64",
        "past-32-bits",
        "below-32-bits",
        "int-and-float",
        "float-and-int",
        "IntEnum",
        "str",
        "None",
    ],
)
def test_other_values_are_left_to_pymongo_s_encoder(value: list[Any]) -> None:
    assert splice._number_elements(value, 0, len(value)) is None
