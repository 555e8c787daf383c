"""Big reads and writes leave the loop running.

A cursor batch of more than ``SLICED_DECODE_BYTES`` is decoded in slices, the child
pausing between two; ``insert_many`` and ``bulk_write`` of more than ``BULK_IN_THREAD``
items run in a worker thread (``test_green_bulk.py`` checks how their commands are
sized).  The tests check each of these by what the driver does (slices, pauses,
commands, threads) and that the results are PyMongo's.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import mmap
import pickle
import random
import string
import sys
import threading
import uuid
import zlib
from collections import deque
from typing import Any

import bson
import greenlet
import pymongo
import pytest
from bson import SON, Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex
from bson.codec_options import CodecOptions
from bson.timestamp import Timestamp
from pymongo import InsertOne, monitoring
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

import motor.motor_asyncio
import motor.motor_tornado
from motor import cursors, metaprogramming, motor_gridfs
from motor.green import bulk as green_bulk
from motor.green import hub as hub_module
from motor.green import pool as green_pool
from motor.green.socket import GreenSocket
from test.faultproxy import FaultProxy
from test.framework import Framework, assert_no_stall, loop_turns
from test.oracle import motor_class


class _CountingHub:
    def __init__(self, window_open: bool = False) -> None:
        self.pauses = 0
        # Whether the loop iteration's work budget lasts (by default it is spent: every
        # step that checks it pauses).
        self.window_open = window_open

    def pause(self) -> None:
        self.pauses += 1

    def _child_window_open(self) -> bool:
        return self.window_open


def _document(i: int) -> dict[str, Any]:
    # Every BSON type the slicer steps over, nested documents and arrays included.
    return {
        "_id": ObjectId(),
        "i": i,
        "big": Int64(1 << 40) + i,
        "f": i / 7,
        "s": f"héllo {i}" * (i % 5),
        "b": i % 2 == 0,
        "none": None,
        "when": datetime.datetime(2026, 11, 30, 12, 0, i % 60, 1000),
        "ts": Timestamp(1_700_000_000, i),
        "dec": Decimal128(f"{i}.25"),
        "bin": Binary(bytes(range(i % 256)), 0),
        "uuid": Binary(uuid.UUID(int=i).bytes, 4),
        "code": Code("function() { return 1; }"),
        "scope": Code("function() { return x; }", {"x": i}),
        "min": MinKey(),
        "max": MaxKey(),
        "nested": {"a": [1, {"b": [i, "x"]}], "": {"k": []}},
        "list": list(range(i % 10)),
        "re": Regex("^a.*", "i"),
    }


@pytest.fixture
def split_in_every_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    # Documents of SPLIT_BYTES or more decoded in pieces in a sliced reply of any size,
    # not only in one of more than WHOLE_DOCUMENTS_BYTES.
    monkeypatch.setattr(green_pool, "WHOLE_DOCUMENTS_BYTES", 0)


def _reply(documents: list[Any], batch: str = "firstBatch") -> bytes:
    return bson.encode(
        {
            "cursor": {"id": Int64(0), "ns": "db.coll", batch: documents},
            "ok": 1.0,
            "$clusterTime": {"clusterTime": Timestamp(1, 1)},
        }
    )


@pytest.mark.parametrize(
    "codec_options",
    [
        CodecOptions(),
        CodecOptions(document_class=SON),
        CodecOptions(tz_aware=True, uuid_representation=bson.binary.UuidRepresentation.STANDARD),
    ],
    ids=["dict", "SON", "tz_aware-uuid"],
)
def test_sliced_decode_returns_what_pymongo_decodes(codec_options: CodecOptions[Any]) -> None:
    documents = [_document(i) for i in range(3000)]
    payload = _reply(documents)
    assert len(payload) > green_pool.SLICED_DECODE_BYTES
    hub = _CountingHub()

    decoded = green_pool._decode_in_slices(memoryview(payload), codec_options, hub)

    expected = bson.decode(payload, codec_options)
    assert decoded == expected
    assert type(decoded) is type(expected)
    assert type(decoded["cursor"]) is type(expected["cursor"])
    assert [type(d) for d in decoded["cursor"]["firstBatch"]] == [
        type(d) for d in expected["cursor"]["firstBatch"]
    ]
    # A batch of at most HANDOVER_DOCUMENTS is the plain list PyMongo's decoder gives
    # (a command's reply shows it to the application).
    assert len(documents) <= green_pool.HANDOVER_DOCUMENTS
    assert type(decoded["cursor"]["firstBatch"]) is list
    assert list(decoded) == list(expected)  # field order kept
    # 3000 documents: three slices of at most 1000, or more when 256 KB fills first.
    slices = hub.pauses + 1
    assert slices >= max(3, len(payload) // green_pool.SLICE_BYTES)
    # While the iteration's work budget lasts, the slices follow one another: a pause
    # costs a loop iteration.
    unspent = _CountingHub(window_open=True)
    assert green_pool._decode_in_slices(memoryview(payload), codec_options, unspent) == expected
    assert unspent.pauses == 0


def test_sliced_decode_reads_the_reply_where_the_reader_put_it() -> None:
    # PyMongo's reader hands over a memoryview of the end of its receive buffer.
    payload = _reply([{"i": i, "pad": "x" * 300} for i in range(5000)], "nextBatch")
    buffer = bytearray(b"\x01" * 21) + bytearray(payload)
    view = memoryview(buffer)[21:]

    assert green_pool._buffer_of(view)[1] == 21
    decoded = green_pool._decode_in_slices(view, CodecOptions(), _CountingHub())
    assert decoded == bson.decode(payload)
    # A view that is not a suffix of its buffer is copied, and decoded all the same.
    middle = memoryview(bytearray(payload) + b"trailing")[: len(payload)]
    assert green_pool._buffer_of(middle)[1] == 0
    assert green_pool._decode_in_slices(middle, CodecOptions(), _CountingHub()) == decoded


def test_a_type_the_slicer_does_not_know_falls_back_to_pymongo() -> None:
    # Only the reply, its cursor, the batch array and large documents and arrays are
    # walked; an element of a type that is not BSON's, in the reply, is PyMongo's to
    # refuse.
    payload = bytearray(bson.encode({"cursor": {"firstBatch": [{"r": 1}]}, "n": 1}))
    at = payload.rindex(b"\x10n\x00")
    payload[at] = 0x20
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(payload), CodecOptions(), _CountingHub())
    with pytest.raises(bson.errors.InvalidBSON):
        bson.decode(bytes(payload))


def test_a_malformed_reply_is_pymongo_s_to_refuse() -> None:
    # A key of the reply or of its cursor that is not UTF-8, or a document whose last
    # byte is not its NUL: PyMongo's decoder reports it (or applies another error
    # handler to the key).
    reply = _reply([{"_id": 1, "pad": "p" * 400}] * 3000)

    def changed(at: int, byte: int) -> bytes:
        payload = bytearray(reply)
        payload[at] = byte
        return bytes(payload)

    cursor_key = changed(reply.index(b"firstBatch") + 9, 0xC3)
    reply_key = changed(reply.index(b"\x01ok\x00") + 1, 0xFF)
    reply_end = changed(len(reply) - 1, 0x41)
    cursor_end = changed(reply.index(b"\x01ok\x00") - 1, 0x41)
    for payload in (cursor_key, reply_key, reply_end, cursor_end):
        with pytest.raises(green_pool._UnknownBSON):
            green_pool._decode_in_slices(
                memoryview(bytearray(payload)), CodecOptions(), _CountingHub()
            )
        with pytest.raises(bson.errors.InvalidBSON):
            bson.decode(payload)
    replace: CodecOptions[Any] = CodecOptions(unicode_decode_error_handler="backslashreplace")
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(bytearray(cursor_key)), replace, _CountingHub())
    assert "firstBatc\\xc3" in bson.decode(cursor_key, replace)["cursor"]


def _large_documents() -> dict[str, list[Any]]:
    # Batches with documents of SPLIT_BYTES and more: large arrays, many fields,
    # documents and arrays within, and documents PyMongo's decoder makes DBRefs of.
    return {
        "array of ints": [{"_id": 1, "a": list(range(200_000))}],
        "array of mixed types": [{"_id": 1, "a": [1.5, Int64(1), *range(200_000), "s", None]}],
        "array of documents": [{"_id": 1, "a": [_document(i) for i in range(1500)]}],
        "many fields": [{f"f{i}": i for i in range(30_000)}],
        "nested": [
            {"_id": 0},
            {
                "_id": 1,
                "meta": {"deep": {"l": [[i, str(i)] for i in range(30_000)]}, "k": 1},
                "z": [1.5] * 40_000,
                "r": Regex("^a", "i"),
                "p": bson.DBRef("c", 1),
            },
            {"_id": 2, "ref": {"$ref": "c", "$id": 1, "pad": list(range(40_000))}},
            {"$ref": "c", "$id": 3, "pad": list(range(40_000))},
        ],
        "one string": [{"_id": 1, "s": "x" * (2 * green_pool.SPLIT_BYTES)}],
    }


_CODEC_OPTIONS = {
    "dict": CodecOptions(),
    "SON": CodecOptions(document_class=SON),
    "tz_aware": CodecOptions(tz_aware=True),
}


@pytest.mark.parametrize(
    "case, codecs",
    [
        (case, codecs)
        for case in _large_documents()
        for codecs in _CODEC_OPTIONS
        # SON's assignment is linear in its size: minutes for 30,000 fields.
        if (case, codecs) != ("many fields", "SON")
    ],
)
@pytest.mark.usefixtures("split_in_every_reply")
def test_a_large_document_is_decoded_in_pieces(case: str, codecs: str) -> None:
    codec_options = _CODEC_OPTIONS[codecs]
    documents = _large_documents()[case]
    payload = _reply(documents)
    hub = _CountingHub()

    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), codec_options, hub)

    expected = bson.decode(payload, codec_options)
    assert decoded == expected

    def shape(value: Any) -> Any:
        # Types all the way down, and field order.
        if isinstance(value, (dict, SON)):
            return (type(value), [(k, shape(v)) for k, v in value.items()])
        if isinstance(value, list):
            return (type(value), [shape(v) for v in value])
        return type(value)

    assert shape(decoded) == shape(expected)
    # Every SLICE_BYTES of a document or array of SPLIT_BYTES or more is a slice of its
    # own; a large string is decoded a slice at a time while the work budget lasts.
    large = sum(len(bson.encode(d)) for d in documents if len(bson.encode(d)) >= 2**18)
    if case != "one string":
        assert hub.pauses >= large // green_pool.SLICE_BYTES, hub.pauses


@pytest.mark.parametrize("first", [1.5, Int64(2), "text", None, True], ids=repr)
@pytest.mark.usefixtures("split_in_every_reply")
def test_an_array_of_mixed_types_is_sliced_where_its_elements_start(
    first: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Where a slice ends is guessed from the type of the slice's first element, not the
    # array's: an array whose first value differs from the rest is not stepped over
    # element by element (once per slice, 400 times for this array).
    steps: list[int] = []
    original = green_pool._step_over

    def step_over(*args: Any) -> int:
        steps.append(args[1])
        return original(*args)

    monkeypatch.setattr(green_pool, "_step_over", step_over)
    document = {"_id": 1, "a": [first, *range(400_000), 2.5, *range(100_000)]}
    payload = _reply([document])
    hub = _CountingHub()
    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), hub)
    assert decoded == bson.decode(payload)
    assert len(steps) <= 2, len(steps)
    assert hub.pauses >= len(payload) // green_pool.SLICE_BYTES


def test_documents_of_a_reply_of_at_most_1_mib_are_decoded_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A sliced reply of at most WHOLE_DOCUMENTS_BYTES is sliced between its documents
    # only, each decoded in one call as PyMongo decodes it: split field by field, a
    # document of many small fields costs several times the CPU.  A larger reply splits
    # its documents of SPLIT_BYTES or more.
    split: list[int] = []
    decode_fields = green_pool._decode_fields

    def fields(view: memoryview, start: int, *args: Any) -> Any:
        split.append(start)
        return decode_fields(view, start, *args)

    monkeypatch.setattr(green_pool, "_decode_fields", fields)
    many_fields = {f"f{i}": i for i in range(30_000)}  # about 350 KB
    assert len(bson.encode(many_fields)) >= green_pool.SPLIT_BYTES
    small = [{"_id": i, "n": i, "t": datetime.datetime(2026, 1, 1)} for i in range(5000)]
    cases: list[tuple[list[Any], int]] = [
        ([many_fields], 0),
        ([many_fields, *small], 0),
        ([many_fields] * 4, 4),  # about 1.4 MB
    ]
    for documents, pieces in cases:
        payload = _reply(documents)
        assert len(payload) > green_pool.SLICED_DECODE_BYTES
        assert (len(payload) > green_pool.WHOLE_DOCUMENTS_BYTES) == bool(pieces)
        split.clear()
        hub = _CountingHub()
        decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), hub)
        assert decoded == bson.decode(payload)
        assert len(split) == pieces
        if len(documents) > 1:
            assert hub.pauses > 2  # sliced between documents all the same


_TEXTS = {
    # UTF-8 of one, two, three and four bytes a character: a slice's end cuts some of
    # them, whose bytes the next slice decodes.
    "ascii": "x" * 1_100_000,
    "latin-1": "é" * 600_000,
    "cjk": "中" * 400_000,
    "emoji": "😀" * 300_000,
    "mixed": "aé中😀\x00" * 120_000,
}


@pytest.mark.parametrize("text", list(_TEXTS))
@pytest.mark.parametrize("where", ["field", "embedded", "array", "array after small", "SON"])
@pytest.mark.usefixtures("split_in_every_reply")
def test_a_large_string_is_decoded_a_slice_at_a_time(text: str, where: str) -> None:
    value = _TEXTS[text]
    codec_options: CodecOptions[Any] = CodecOptions()
    if where == "field":
        document: Any = {"_id": 1, "s": value, "after": "y"}
    elif where == "embedded":
        document = {"_id": 1, "meta": {"k": 1, "s": value, "n": [value[:10]]}}
    elif where == "array":
        document = {"_id": 1, "a": [value, value[:1000], value]}
    elif where == "array after small":
        document = {"_id": 1, "a": ["small", 2, value[: len(value) // 2], "tail"]}
    else:
        codec_options = CodecOptions(document_class=SON)
        document = SON([("_id", 1), ("s", value)])
    payload = _reply([{"_id": 0}, document])
    hub = _CountingHub(window_open=False)
    decode_in_place = green_pool._decode_in_place
    largest = [0]

    def in_place(view: memoryview, first: int, last: int, *args: Any) -> Any:
        largest[0] = max(largest[0], last - first)
        return decode_in_place(view, first, last, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(green_pool, "_decode_in_place", in_place)
        # ASCII strings in slices too (those of at most WHOLE_ASCII_BYTES are decoded in
        # one call otherwise: see the next test).
        patch.setattr(green_pool, "WHOLE_ASCII_BYTES", 0)
        decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), codec_options, hub)

    expected = bson.decode(payload, codec_options)
    assert decoded == expected
    assert type(decoded["cursor"]["firstBatch"][1]) is type(expected["cursor"]["firstBatch"][1])
    # No large string went to PyMongo's decoder in one piece: a pause after every
    # SLICE_BYTES of its UTF-8 but the last.
    assert largest[0] < 2 * green_pool.SLICE_BYTES, largest[0]
    strings = len(value.encode()) * (2.5 if where == "array" else 1)
    if where == "array after small":
        strings = len(value[: len(value) // 2].encode())
    assert hub.pauses >= strings // green_pool.SLICE_BYTES - 2, hub.pauses


_WHOLE_CASES = {
    # text, WHOLE_ASCII_BYTES (None: the default), decoded in one call after the first slice
    "ascii": ("x" * 1_100_000, None, True),
    "ascii, then not": ("x" * 600_000 + "中" * 100_000, None, True),
    "ascii over the limit": ("x" * 1_100_000, 1_000_000, False),
    "not ascii at first": ("é" * 200_000 + "x" * 600_000, None, False),
}


@pytest.mark.parametrize("case", list(_WHOLE_CASES))
@pytest.mark.usefixtures("split_in_every_reply")
def test_an_ascii_string_is_decoded_in_one_call(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A string of at most WHOLE_ASCII_BYTES whose first slice is ASCII: decoded again from
    # its start in one call (ASCII decodes at memory speed; slices and the copy joining
    # them cost as much again), with a budget check before and after that call.
    value, limit, whole = _WHOLE_CASES[case]
    if limit is not None:
        monkeypatch.setattr(green_pool, "WHOLE_ASCII_BYTES", limit)
    size = len(value.encode())
    assert size > green_pool.SLICE_BYTES
    calls: list[int] = []
    original = green_pool._utf_8_decode

    def utf_8_decode(data: Any, *args: Any) -> Any:
        calls.append(len(data))
        return original(data, *args)

    monkeypatch.setattr(green_pool, "_utf_8_decode", utf_8_decode)
    payload = _reply([{"_id": 1, "s": value, "after": "y"}])
    hub = _CountingHub()
    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), hub)
    assert decoded == bson.decode(payload)
    if whole:
        assert calls == [green_pool.SLICE_BYTES, size]
        assert hub.pauses >= 2
    else:
        assert len(calls) >= size // green_pool.SLICE_BYTES
        assert max(calls) <= green_pool.SLICE_BYTES


_IN_PLACE_CASES = {
    # text over the limit below, copied in place (False: not ASCII throughout, joined)
    "ascii": ("x" * 1_100_000, True),
    "ascii, one slice and a byte": ("x" * (1_000_000 + 1), True),
    "ascii, then not": ("x" * 600_000 + "中" * 200_000, False),
    "ascii, then a character cut by a slice's end": ("x" * (4 * 256 * 1024 - 1) + "é" * 9, False),
    "ascii, then not in the last slice": ("x" * 1_100_000 + "é", False),
}
_IN_PLACE_LIMIT = 1_000_000


@pytest.mark.parametrize("available", [True, False], ids=["in place", "no ctypes"])
@pytest.mark.parametrize("case", list(_IN_PLACE_CASES))
@pytest.mark.usefixtures("split_in_every_reply")
def test_a_long_ascii_string_is_copied_into_its_string_a_slice_at_a_time(
    case: str, available: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Longer than WHOLE_ASCII_BYTES, ASCII from the start: each slice is decoded, then
    # copied into a string made at the full length (no join of the whole at the end, one
    # call of 15 MB); a slice that is not ASCII sends it back to the joined slices.  Where
    # strings cannot be made so, the slices are joined.
    value, in_place = _IN_PLACE_CASES[case]
    monkeypatch.setattr(green_pool, "WHOLE_ASCII_BYTES", _IN_PLACE_LIMIT)
    if not available:
        monkeypatch.setattr(green_pool, "_in_place", None)
    size = len(value.encode())
    assert size > _IN_PLACE_LIMIT
    calls: list[int] = []
    original = green_pool._utf_8_decode

    def utf_8_decode(data: Any, *args: Any) -> Any:
        calls.append(len(data))
        return original(data, *args)

    copied: list[str | None] = []
    ascii_copied = green_pool._ascii_copied

    def record(*args: Any) -> str | None:
        copied.append(ascii_copied(*args))
        return copied[-1]

    monkeypatch.setattr(green_pool, "_utf_8_decode", utf_8_decode)
    monkeypatch.setattr(green_pool, "_ascii_copied", record)
    payload = _reply([{"_id": 1, "s": value, "after": "y"}])
    hub = _CountingHub()
    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), hub)
    expected = bson.decode(payload)
    assert decoded == expected
    made = decoded["cursor"]["firstBatch"][0]["s"]
    assert made == value and type(made) is str
    assert len(copied) == 1
    assert (copied[0] is made) == (in_place and available)
    # A string like any other: its hash, its size, a key of a dict.
    assert hash(made) == hash(value)
    assert sys.getsizeof(made) == sys.getsizeof(value)
    assert {value: 1}[made] == 1
    assert max(calls) <= green_pool.SLICE_BYTES
    assert hub.pauses >= size // green_pool.SLICE_BYTES, hub.pauses


def test_strings_can_be_made_in_place_on_this_python() -> None:
    # CPython's layout of ASCII strings, which long strings are copied into slice by slice:
    # if it changes, they are joined again (slower, and one call of their whole size).
    tools = green_pool._ascii_in_place()
    assert tools is not None, "PyUnicode_New/memmove or the ASCII string layout changed"
    new, move, offset = tools
    assert offset == sys.getsizeof("") - 1
    made = new(3, 127)
    source = "".join(("a", "bc"))
    move(id(made) + offset, id(source) + offset, 3)
    assert made == "abc" and made.isascii()


@pytest.mark.parametrize("where", ["array", "fields"])
def test_large_strings_of_one_slice_each_pause_between_them(where: str) -> None:
    # Each string is one slice of its own: the budget is checked after each, or forty of
    # them would be decoded in one stretch.
    value = "x" * (green_pool.SLICE_BYTES - 5)
    if where == "array":
        document: dict[str, Any] = {"_id": 1, "a": [value] * 40}
    else:
        document = {"_id": 1, **{f"s{i}": value for i in range(40)}}
    payload = _reply([document])
    hub = _CountingHub()
    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), hub)
    assert decoded == bson.decode(payload)
    assert hub.pauses >= 40, hub.pauses


@pytest.mark.usefixtures("split_in_every_reply")
def test_a_large_string_that_is_not_utf8_is_pymongo_s_to_decode() -> None:
    # PyMongo's decoder reports it (InvalidBSON), or applies another error handler.
    payload = bytearray(_reply([{"_id": 1, "s": "é" * 400_000}]))
    at = payload.index("é".encode()) + 300_001  # the second byte of a character
    payload[at] = 0x41
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(bytearray(payload)), CodecOptions(), _CountingHub())
    with pytest.raises(bson.errors.InvalidBSON):
        bson.decode(bytes(payload))
    # A character cut off by the string's end.
    cut = bytearray(_reply([{"_id": 1, "s": "x" * 400_000 + "é"}]))
    at = cut.index("é".encode())
    cut[at + 1] = 0  # the character's second byte becomes the string's NUL
    cut[at - 4 - 400_000 : at - 400_000] = (400_000 + 2).to_bytes(4, "little")
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(bytearray(cut)), CodecOptions(), _CountingHub())
    # Bytes that are not UTF-8 past an ASCII first slice (decoded in one call).
    late = bytearray(_reply([{"_id": 1, "s": "x" * 400_000}]))
    late[late.index(b"x") + 300_000] = 0xFF
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(bytearray(late)), CodecOptions(), _CountingHub())
    with pytest.raises(bson.errors.InvalidBSON):
        bson.decode(bytes(late))
    # ... and in a string copied into place slice by slice (over WHOLE_ASCII_BYTES).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(green_pool, "WHOLE_ASCII_BYTES", 300_000)
        with pytest.raises(green_pool._UnknownBSON):
            green_pool._decode_in_slices(
                memoryview(bytearray(late)), CodecOptions(), _CountingHub()
            )
    # With another error handler the string is PyMongo's to decode, in one piece.
    replace: CodecOptions[Any] = CodecOptions(unicode_decode_error_handler="replace")
    decoded = green_pool._decode_in_slices(memoryview(bytearray(payload)), replace, _CountingHub())
    assert decoded == bson.decode(bytes(payload), replace)
    assert "\ufffd" in decoded["cursor"]["firstBatch"][0]["s"]


async def test_a_large_batch_is_decoded_in_slices(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = fw.client(server.uri).motor_test[f"large_batch_{fw.name}"]
    await coll.drop()
    await coll.insert_many([{"_id": i, "pad": "p" * 400} for i in range(6000)])
    with monkeypatch.context() as patch:
        patch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause after every slice
        async with loop_turns() as turns:
            pauses[0] = 0
            documents = await coll.find().sort("_id").batch_size(6000).to_list(None)
    assert documents == [{"_id": i, "pad": "p" * 400} for i in range(6000)]
    # 2.5 MB in one batch: at least ten slices of 256 KB, the loop running between.
    assert pauses[0] >= 9, pauses[0]
    assert turns[0] >= pauses[0]

    # Small batches take PyMongo's path unchanged: no reply is decoded in slices.  (The
    # loop may still get a turn between two reads of a reply, when an iteration's work
    # budget is spent: that is the socket's pause, not the decoder's.)
    sliced = [0]
    original = green_pool._decode_in_slices

    def counting(payload: Any, codec_options: Any, hub: Any) -> Any:
        sliced[0] += 1
        return original(payload, codec_options, hub)

    monkeypatch.setattr(green_pool, "_decode_in_slices", counting)
    assert len(await coll.find().batch_size(500).to_list(None)) == 6000
    assert sliced[0] == 0
    assert len(await coll.find().batch_size(6000).to_list(None)) == 6000
    assert sliced[0] == 1


async def _handed_over_in_pieces(
    fw: Framework, server: Any, name: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[dict[str, Any]]]:
    # A collection of 6,000 documents of about 420 bytes, and hand-overs of batches of
    # more than 1,000 of them in pieces of 1,000.
    coll = fw.client(server.uri).motor_test[name]
    await coll.drop()
    expected = [{"_id": i, "pad": "p" * 400} for i in range(6000)]
    await coll.insert_many(expected)
    monkeypatch.setattr(green_pool, "MOVE_DOCUMENTS", 1000)
    monkeypatch.setattr(green_pool, "HANDOVER_DOCUMENTS", 1000)
    return coll, expected


async def test_a_large_batch_is_handed_over_in_pieces(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # PyMongo's deque of the batch and the list to_list returns are filled
    # MOVE_DOCUMENTS at a time, the loop running between two; with a length, the rest
    # stays in the cursor.
    coll, expected = await _handed_over_in_pieces(fw, server, f"large_move_{fw.name}", monkeypatch)
    moves: list[int] = []
    batches: list[type] = []
    original_iter = green_pool._Batch.__iter__

    def batch_iter(self: green_pool._Batch) -> Any:
        batches.append(type(self))
        return original_iter(self)

    monkeypatch.setattr(green_pool._Batch, "__iter__", batch_iter)
    original_move = cursors._move_documents

    def move(data: Any, result: list[Any], total: int | None, hub: Any) -> None:
        before = pauses[0]
        original_move(data, result, total, hub)
        moves.append(pauses[0] - before)

    monkeypatch.setattr(cursors, "_move_documents", move)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause after every slice

    cursor = coll.find().sort("_id").batch_size(6000)
    pauses[0] = 0
    first = await cursor.to_list(2500)
    # Ten or more slices of the decode, one pause after the last, five between the six
    # pieces of the deque, two between the three pieces moved into the list.
    assert pauses[0] >= 9 + 1 + 5 + 2, pauses[0]
    assert batches == [green_pool._Batch] and moves == [2]
    rest = await cursor.to_list(None)
    assert moves == [2, 3]  # 3500 documents, four pieces, from the cursor's deque
    assert type(first) is list and type(rest) is list
    assert first + rest == expected

    # A small batch is moved as PyMongo moves it, in one piece.
    moves.clear()
    assert await coll.find().sort("_id").batch_size(500).to_list(700) == expected[:700]
    assert moves == [0, 0]


@pytest.mark.parametrize(
    ("stage", "batch"),
    [("deque", 1), ("deque", 2), ("to_list", 1), ("to_list", 2), ("gridfs", 1), ("gridfs", 2)],
)
async def test_a_fetch_cancelled_in_a_hand_over_closes_the_cursor(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, stage: str, batch: int
) -> None:
    # A cancellation that stops the child between two pieces of a large batch's hand-over
    # (into PyMongo's deque, or into to_list's list) closes the cursor, as a fetch
    # interrupted where it waits does, and what the cancelled to_list gathered goes back
    # to the cursor's buffer: the next call never goes on past documents the cancelled
    # one dropped.  Cancelled in the first or the second batch of 3,000; GridFS's
    # to_list of file documents too.
    name = f"cancel_hand_over_{fw.name}_{stage}_{batch}"
    coll, expected = await _handed_over_in_pieces(fw, server, name, monkeypatch)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause before every piece
    if stage == "gridfs":
        files = [
            {
                "_id": i,
                "length": 0,
                "chunkSize": 1024,
                "uploadDate": datetime.datetime(2026, 1, 1),
                "metadata": {"pad": "p" * 400},  # batches of more than 1 MiB: sliced
            }
            for i in range(6000)
        ]
        await coll.database[f"{name}.files"].drop()
        await coll.database[f"{name}.files"].insert_many(files)
        module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
        bucket = getattr(module, motor_class(fw, "GridFSBucket"))(coll.database, bucket_name=name)
        cursor = bucket.find({}, sort=[("_id", 1)], batch_size=3000)
    else:
        cursor = coll.find().sort("_id").batch_size(3000)
    task: asyncio.Future[Any] | None = None
    within = {"deque": 0, "to_list": 0}  # the hand-over under way: its batch's number
    entered = {"deque": 0, "to_list": 0}
    original_pause = green_pool._pause_if_spent_on
    original_pieces = green_pool._Batch._pieces
    original_move = cursors._move_documents

    def pause(hub: Any) -> None:
        nonlocal task
        if task is not None and within[stage if stage != "gridfs" else "deque"] == batch:
            task.cancel()  # a timeout firing as the hand-over goes on
            task = None
        original_pause(hub)

    def pieces(self: Any) -> Any:
        entered["deque"] += 1
        within["deque"] = entered["deque"]
        try:
            yield from original_pieces(self)
        finally:
            within["deque"] = 0

    def move(*args: Any) -> None:
        entered["to_list"] += 1
        within["to_list"] = entered["to_list"]
        try:
            original_move(*args)
        finally:
            within["to_list"] = 0

    monkeypatch.setattr(green_pool, "_pause_if_spent_on", pause)
    monkeypatch.setattr(green_pool._Batch, "_pieces", pieces)
    monkeypatch.setattr(cursors, "_move_documents", move)
    task = asyncio.ensure_future(cursor.to_list(None))
    fetch = task
    with pytest.raises(asyncio.CancelledError):
        await fetch
    assert task is None  # cancelled where the test meant it to be
    monkeypatch.setattr(green_pool, "_pause_if_spent_on", original_pause)
    rest = await cursor.to_list(None)
    if stage == "gridfs":
        # The file documents of the earlier batch, back in the buffer; the batch being
        # handed into PyMongo's deque was dropped with the cancelled call.
        assert [f._id for f in rest] == [d["_id"] for d in expected[: 3000 * (batch - 1)]]
    else:
        # What the cancelled call had gathered, back in the buffer, and no more: the
        # batch being handed into PyMongo's deque was dropped with it.
        gathered = 3000 * (batch - 1) if stage == "deque" else 3000 * batch
        assert rest == expected[:gathered]
    assert not cursor.alive and await cursor.to_list(None) == []


class _CursorCommands(monitoring.CommandListener):
    """The cursor ids of aggregate replies, and those of killCursors commands."""

    def __init__(self) -> None:
        self.opened: list[int] = []
        self.killed: list[int] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "killCursors":
            self.killed.extend(event.command["cursors"])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        if event.command_name == "aggregate":
            self.opened.append(event.reply["cursor"]["id"])

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("method", ["aggregate", "to_list"])
async def test_an_aggregate_cancelled_in_its_first_batch_s_hand_over_kills_its_cursor(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    # PyMongo's CommandCursor takes the cursor id of the command's reply, then hands the
    # first batch into its deque, and only then is a cursor that closes itself: stopped
    # between two pieces of a large first batch, it never exists, and the server's cursor
    # would stay open until the server times it out.  It is killed instead, and the
    # command's implicit session ends.  The next fetch runs the command again.
    name = f"cancel_first_batch_{fw.name}_{method}"
    coll, expected = await _handed_over_in_pieces(fw, server, name, monkeypatch)
    commands = _CursorCommands()
    coll = fw.client(server.uri, event_listeners=[commands]).motor_test[name]
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause before every piece
    task: asyncio.Future[Any] | None = None
    handing_over = [False]
    original_pause = green_pool._pause_if_spent_on
    original_pieces = green_pool._Batch._pieces

    def pause(hub: Any) -> None:
        nonlocal task
        if task is not None and handing_over[0]:
            task.cancel()  # a timeout firing as the first batch is handed over
            task = None
        original_pause(hub)

    def pieces(self: Any) -> Any:
        handing_over[0] = True
        try:
            yield from original_pieces(self)
        finally:
            handing_over[0] = False

    monkeypatch.setattr(green_pool, "_pause_if_spent_on", pause)
    monkeypatch.setattr(green_pool._Batch, "_pieces", pieces)
    cursor = coll.aggregate([{"$sort": {"_id": 1}}], batchSize=3000)
    fetch = task = asyncio.ensure_future(
        cursor.to_list(None) if method == "to_list" else cursor.next()
    )
    with pytest.raises(asyncio.CancelledError):
        await fetch
    assert task is None  # cancelled where the test meant it to be
    assert len(commands.opened) == 1 and commands.opened[0] != 0
    client = coll.database.client
    for _ in range(200):  # killed in the background, within PyMongo's second or so
        if commands.opened[0] in commands.killed:
            break
        await asyncio.sleep(0.05)
    assert commands.killed == commands.opened
    with pytest.raises(OperationFailure):  # gone from the server
        await coll.database.command("getMore", commands.opened[0], collection=name)
    assert len(client.delegate._topology._session_pool) == 1  # the session went back
    assert await cursor.to_list(None) == expected


async def test_a_gridfs_to_list_makes_its_gridouts_a_few_at_a_time(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A GridOut costs tens of microseconds to make: a GridFS to_list of many files makes
    # them GRID_OUTS_PER_LOOK at a time, the loop running between two groups once the
    # budget is spent.  Cancelled between two, the cursor is closed and keeps the file
    # documents in its buffer: the next to_list returns every file, none skipped.
    name = f"gridouts_{fw.name}"
    db = fw.client(server.uri).motor_test
    count = 1000
    await db[f"{name}.files"].drop()
    await db[f"{name}.files"].insert_many(
        [
            {"_id": i, "length": 0, "chunkSize": 1024, "uploadDate": datetime.datetime(2026, 1, 1)}
            for i in range(count)
        ]
    )
    module = motor.motor_asyncio if fw.name == "asyncio" else motor.motor_tornado
    bucket = getattr(module, motor_class(fw, "GridFSBucket"))(db, bucket_name=name)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause wherever one may be
    converted: list[int] = []  # the GridOuts made by each call
    converting = [False]
    pauses_between = [0]
    task: asyncio.Future[Any] | None = None
    cancel_at = [0]  # cancel the to_list at this pause between two groups (0: never)
    original_convert = motor_gridfs.AgnosticGridOutCursor._convert_list
    original_pause = green_pool._pause_if_spent_on

    def convert(self: Any, documents: list[Any]) -> list[Any]:
        converted.append(len(documents))
        converting[0] = True
        return original_convert(self, documents)

    def pause(hub: Any) -> None:
        nonlocal task
        if converting[0]:
            pauses_between[0] += 1
            if task is not None and pauses_between[0] == cancel_at[0]:
                task.cancel()  # a timeout firing as the GridOuts are made
                task = None
        original_pause(hub)

    monkeypatch.setattr(motor_gridfs.AgnosticGridOutCursor, "_convert_list", convert)
    monkeypatch.setattr(green_pool, "_pause_if_spent_on", pause)
    files = await bucket.find({}, sort=[("_id", 1)]).to_list(None)
    assert [f._id for f in files] == list(range(count))
    per_look = motor_gridfs.GRID_OUTS_PER_LOOK
    assert converted == [per_look] * (count // per_look)
    assert pauses_between[0] == count // per_look - 1

    # Cancelled at the tenth pause between two groups: to_list(None) of a cursor that
    # has fetched its last batch, and to_list(500) of one with batches of 300 (its
    # second batch's last 100 documents still buffered, 400 on the server).  A to_list
    # called at once, before the cancelled child has unwound, gets every file the
    # cancelled one took, then what was buffered; the cursor was closed.
    for length, batch_size, returned in ((None, 0, count), (500, 300, 600)):
        converted.clear()
        converting[0] = False
        pauses_between[0] = 0
        cancel_at[0] = 10
        cursor = bucket.find({}, sort=[("_id", 1)], batch_size=batch_size)
        task = asyncio.ensure_future(cursor.to_list(length))
        fetch = task
        with pytest.raises(asyncio.CancelledError):
            await fetch
        assert task is None  # cancelled where the test meant it to be
        assert converted == [per_look] * 10
        converting[0] = False
        rest = await cursor.to_list(None)
        assert [f._id for f in rest] == list(range(returned))
        assert cursor.delegate._killed and not cursor.alive
        assert await cursor.to_list(None) == []


async def test_next_from_another_task_during_a_to_list_hand_over(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One cursor read by two tasks at once: next() takes buffered documents while a
    # to_list moves them in pieces, pausing between two.  Each document goes to one of
    # them, and the to_list neither fails nor returns a document twice.
    coll, expected = await _handed_over_in_pieces(fw, server, f"two_readers_{fw.name}", monkeypatch)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause between two pieces
    cursor = coll.find().sort("_id").batch_size(6000)
    first = await cursor.next()  # the batch, buffered
    taken: list[Any] = []
    original_pause = green_pool._pause_if_spent_on

    def pause(hub: Any) -> None:
        original_pause(hub)
        if moving[0] and cursor.delegate._data:
            # Another task reading the same cursor ran during the pause.
            taken.extend(cursor.delegate._data.popleft() for _ in range(1500))

    moving = [False]
    original_move = cursors._move_documents

    def move(*args: Any) -> None:
        moving[0] = True
        try:
            original_move(*args)
        finally:
            moving[0] = False

    monkeypatch.setattr(green_pool, "_pause_if_spent_on", pause)
    monkeypatch.setattr(cursors, "_move_documents", move)
    rest = await cursor.to_list(None)
    assert taken  # the other reader took documents between two pieces
    assert sorted([first, *taken, *rest], key=lambda d: d["_id"]) == expected
    assert len(rest) == len(expected) - 1 - len(taken)


async def test_to_list_twice_at_once_on_one_cursor(fw: Framework, server: Any) -> None:
    # Misuse, as with PyMongo's cursors in two threads, but neither call fails because of
    # the other's hand-over, and the cursor keeps PyMongo's own _next_batch afterwards.
    coll = fw.client(server.uri).motor_test[f"to_list_twice_{fw.name}"]
    await coll.drop()
    await coll.insert_many([{"_id": i} for i in range(300)])
    cursor = coll.find().batch_size(100)
    results = await asyncio.gather(
        cursor.to_list(None), cursor.to_list(None), return_exceptions=True
    )
    lists = [r for r in results if isinstance(r, list)]
    for error in (r for r in results if not isinstance(r, list)):
        # PyMongo's own errors for this misuse, in some interleavings: InvalidOperation
        # "Cannot use ended session" when one call exhausted the cursor, ending its
        # implicit session, while the other sent a getMore with it.  Two threads sharing
        # a sync cursor get such errors too (CursorNotFound once in 128 tries on FerretDB).
        if not isinstance(error, PyMongoError):
            raise error
    assert lists, results
    # Each call may also have sent the first find (the cursor was not started).
    ids = {d["_id"] for documents in lists for d in documents}
    assert ids <= set(range(300))
    if len(lists) == 2:
        assert ids == set(range(300))
    assert "_next_batch" not in vars(cursor.delegate)


@pytest.mark.parametrize("spent", [True, False], ids=["budget-spent", "budget-left"])
def test_a_large_batch_is_handed_over_as_the_budget_allows(
    spent: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each piece of a large batch, the first included (it follows the decoding and
    # PyMongo's handling of the reply), waits for a later loop iteration once the work
    # budget is spent, and only then: pieces follow one another while it lasts.
    hub = _CountingHub(window_open=not spent)
    monkeypatch.setattr(green_pool, "HANDOVER_DOCUMENTS", green_pool.MOVE_DOCUMENTS)

    class _Child(greenlet.greenlet):
        pass

    monkeypatch.setattr(green_pool, "Child", _Child)
    child = _Child(lambda: deque(batch))
    child.hub = hub  # type: ignore[attr-defined]
    size = green_pool.MOVE_DOCUMENTS * 2 + 7  # three pieces
    batch = green_pool._Batch({"i": i} for i in range(size))
    moved = child.switch()
    assert list(moved) == [{"i": i} for i in range(size)]
    assert hub.pauses == (3 if spent else 0)
    # So are the pieces to_list moves from PyMongo's deque into its list.
    hub.pauses = 0
    result: list[Any] = [None]
    cursors._move_documents(moved, result, size - 1, hub)
    assert result[1:] == [{"i": i} for i in range(size - 1)] and list(moved) == [{"i": size - 1}]
    assert hub.pauses == (2 if spent else 0)
    # Up to HANDOVER_DOCUMENTS, a batch moves in one piece, as PyMongo moves it.
    monkeypatch.setattr(green_pool, "HANDOVER_DOCUMENTS", size)
    hub.pauses = 0
    result = []
    cursors._move_documents(deque(batch), result, None, hub)
    assert result == batch and hub.pauses == 0


def test_a_large_batch_is_a_list_everywhere_else() -> None:
    batch = green_pool._Batch({"i": i} for i in range(green_pool.HANDOVER_DOCUMENTS + 5))
    plain = [{"i": i} for i in range(green_pool.HANDOVER_DOCUMENTS + 5)]
    assert batch == plain and isinstance(batch, list)
    # Not in a child: iterated as a list, never paused.
    assert list(iter(batch)) == plain and deque(batch) == deque(plain)
    for copied in (copy.copy(batch), copy.deepcopy(batch), pickle.loads(pickle.dumps(batch))):
        assert type(copied) is list and copied == plain


def test_a_reply_buffer_is_mapped_memory_reused_once_free() -> None:
    class _Owner:  # any object a hub's buffer can be keyed by
        pass

    hub = _Owner()
    size = green_pool.REUSED_BUFFER_BYTES * 4
    view = green_pool._receive_buffer(hub, size)
    buffer = view.obj
    assert isinstance(buffer, mmap.mmap) and len(view) == size
    # In use (a view is alive): the next reply gets a buffer of its own.
    other = green_pool._receive_buffer(hub, size // 2)
    assert other.obj is not buffer
    del view, other
    # Free: reused, the reply at its end.
    again = green_pool._receive_buffer(hub, size // 2)
    assert again.obj is buffer and len(again) == size // 2
    again[-4:] = b"abcd"
    assert buffer[-4:] == b"abcd"
    # A payload in it is walked where it lies.
    payload = _reply([{"i": i} for i in range(10)])
    again[-len(payload) :] = payload
    view, base = green_pool._buffer_of(again[-len(payload) :])
    assert view.obj is buffer and base == len(buffer) - len(payload)
    del view, again
    assert green_pool._unused(buffer)


async def test_a_large_reply_leaves_the_loop_between_reads(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With no work budget, a child reading a reply that needs several reads gives the
    # loop its turn after each one.
    coll = fw.client(server.uri).motor_test[f"large_reply_{fw.name}"]
    document = {"_id": 1, "pad": "r" * (8 * 1024 * 1024)}

    def insert() -> None:  # setup: encoding 8 MB is one call, kept off the loop's thread
        with pymongo.MongoClient(server.uri) as sync:  # type: pymongo.MongoClient[Any]
            sync.motor_test[coll.name].drop()
            sync.motor_test[coll.name].insert_one(document)

    await asyncio.to_thread(insert)
    reads: list[int] = []
    original_recv = GreenSocket.recv_within

    def recv_within(self: GreenSocket, buffer: Any, timeout: Any, nbytes: int = 0) -> int:
        got = original_recv(self, buffer, timeout, nbytes)
        reads.append(got)
        return got

    assert await coll.find_one({"_id": 0}) is None  # connected
    monkeypatch.setattr(GreenSocket, "recv_within", recv_within)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)
    pauses[0] = 0
    assert await coll.find_one({"_id": 1}) == document
    # The reply's reads: the first (whatever has arrived) and the rest of the reply, at
    # most RECEIVE_SLICE_BYTES each, a pause after each but the last.
    assert sum(reads) > 8 * 1024 * 1024 and len(reads) > 2
    assert max(reads) <= green_pool.RECEIVE_SLICE_BYTES, max(reads)
    assert len(reads) >= 8 * 1024 * 1024 // green_pool.RECEIVE_SLICE_BYTES
    assert pauses[0] >= len(reads) - 2


@pytest.mark.usefixtures("split_in_every_reply")
def test_a_large_document_s_undecodable_key_is_pymongo_s_to_decode() -> None:
    # A key that is not UTF-8: PyMongo's decoder applies the codec options' error
    # handler to keys too; the slicer leaves such a document to it.
    payload = bytearray(_reply([{"ab": 1, "pad": list(range(40_000))}]))
    payload[payload.index(b"ab\x00")] = 0xFF
    replace: CodecOptions[Any] = CodecOptions(unicode_decode_error_handler="replace")
    with pytest.raises(green_pool._UnknownBSON):
        green_pool._decode_in_slices(memoryview(bytearray(payload)), replace, _CountingHub())
    assert bson.decode(bytes(payload), replace)["cursor"]["firstBatch"][0]["\ufffdb"] == 1


async def test_a_large_document_is_read_in_pieces(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = fw.client(server.uri).motor_test[f"large_document_{fw.name}"]
    await coll.drop()
    document = {"_id": 1, "readings": list(range(300_000)), "meta": {"tags": ["a"] * 50_000}}
    await coll.insert_one(document)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause after every slice
    async with loop_turns() as turns:
        pauses[0] = 0
        found = await coll.find_one({"_id": 1})
    with fw.probe.uncounted():  # the test's comparison and encoding, not the driver's
        assert found == document
        encoded = len(bson.encode(document))
    # 3.3 MB of small values: a slice of at most 256 KB at a time, the loop running
    # between two.
    assert pauses[0] >= encoded // green_pool.SLICE_BYTES, pauses[0]
    assert turns[0] >= pauses[0]


async def test_a_large_string_is_read_a_slice_at_a_time(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4.5 MB of UTF-8 that is not ASCII: about 3 ms to decode in one call here.
    coll = fw.client(server.uri).motor_test[f"large_string_{fw.name}"]
    await coll.drop()
    with fw.probe.uncounted():  # the test's data
        text = "中文" * 750_000
        document = {"_id": 1, "text": text}
    await coll.insert_one(document)
    strings: list[int] = []
    original = green_pool._decode_string

    def decode_string(view: memoryview, value: int, last: int, hub: Any) -> str:
        strings.append(last - value)
        return original(view, value, last, hub)

    monkeypatch.setattr(green_pool, "_decode_string", decode_string)
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause at every check
    async with loop_turns() as turns:
        pauses[0] = 0
        found = await coll.find_one({"_id": 1})
    with fw.probe.uncounted():
        assert found == document
        size = len(text.encode())
    assert strings == [size + 5]
    assert pauses[0] >= size // green_pool.SLICE_BYTES, pauses[0]
    assert turns[0] >= pauses[0]


async def test_raw_batches_and_type_decoders_are_pymongo_s(
    fw: Framework, server: Any, pauses: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    coll = fw.client(server.uri).motor_test[f"large_raw_{fw.name}"]
    await coll.drop()
    await coll.insert_many([{"_id": i, "pad": "p" * 400} for i in range(4000)])
    monkeypatch.setattr(hub_module, "WORK_BUDGET", 0.0)  # a pause after every slice
    pauses[0] = 0
    raw = await coll.find_raw_batches().sort("_id").batch_size(4000).to_list(None)
    with fw.probe.uncounted():  # the test's own decoding
        assert [d["_id"] for d in bson.decode_all(b"".join(raw))] == list(range(4000))
    as_son = coll.with_options(codec_options=CodecOptions(document_class=SON))
    son = await as_son.find().sort("_id").batch_size(4000).to_list(None)
    assert all(type(d) is SON for d in son) and len(son) == 4000
    assert pauses[0] >= 3  # the SON read was sliced; the raw one was not decoded


class _Commands(monitoring.CommandListener):
    """(command name, documents, thread) of every command started."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        documents = len(event.command.get("documents", ()))
        self.events.append((event.command_name, documents, threading.get_ident()))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def of(self, name: str) -> list[tuple[str, int, int]]:
        return [entry for entry in self.events if entry[0] == name]


async def test_green_connections_keep_the_server_s_write_batch_limit(
    fw: Framework, server: Any
) -> None:
    client = fw.client(server.uri)
    await client.admin.command("ping")
    hello = await client.admin.command("hello")
    pool = next(iter(client.delegate._topology._servers.values())).pool
    conn = pool.conns[0]
    # PyMongo's batched writers other than the bulk writer (motor.green.bulk) send at
    # most GREEN_WRITE_BATCH documents per command; the bulk writer sizes its own.
    limit = hello["maxWriteBatchSize"]
    assert conn.max_write_batch_size == min(green_bulk.GREEN_WRITE_BATCH, limit)
    assert getattr(conn, green_bulk.SERVER_WRITE_BATCH) == hello["maxWriteBatchSize"]


async def test_large_bulk_writes_run_in_a_worker_thread(fw: Framework, server: Any) -> None:
    commands = _Commands()
    client = fw.client(server.uri, event_listeners=[commands])
    coll = client.motor_test[f"bulk_thread_{fw.name}"]
    await coll.drop()
    loop_thread = threading.get_ident()
    limit = metaprogramming.BULK_IN_THREAD

    await coll.insert_many([{"i": i} for i in range(limit)])
    assert {ident for _, _, ident in commands.of("insert")} == {loop_thread}

    commands.events.clear()
    await coll.insert_many([{"i": i} for i in range(limit + 1)])
    assert loop_thread not in {ident for _, _, ident in commands.of("insert")}

    commands.events.clear()
    await coll.insert_many({"i": i} for i in range(3))  # an iterable of unknown length
    assert loop_thread not in {ident for _, _, ident in commands.of("insert")}

    commands.events.clear()
    requests = [InsertOne({"i": i}) for i in range(limit + 1)]
    await coll.bulk_write(requests=requests)
    assert loop_thread not in {ident for _, _, ident in commands.of("insert")}
    assert await coll.count_documents({}) == 2 * limit + 1 + 3 + limit + 1


async def test_errors_of_a_threaded_bulk_write_are_pymongo_s(fw: Framework, server: Any) -> None:
    coll = fw.client(server.uri).motor_test[f"bulk_thread_error_{fw.name}"]
    await coll.drop()
    documents = [{"_id": i} for i in range(1500)] + [{"_id": 7}]
    sync: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(server.uri)
    try:
        sync_coll = sync.motor_test[f"bulk_thread_error_sync_{fw.name}"]
        sync_coll.drop()
        with pytest.raises(BulkWriteError) as expected:
            sync_coll.insert_many([dict(d) for d in documents])
        sync_coll.drop()
    finally:
        sync.close()

    with pytest.raises(BulkWriteError) as raised:
        await coll.insert_many(documents)
    assert raised.value.details["nInserted"] == expected.value.details["nInserted"] == 1500
    assert [e["index"] for e in raised.value.details["writeErrors"]] == [1500]
    assert raised.value.code == expected.value.code
    assert "insert_many" in "".join(_frames(raised.value))


def _frames(exc: BaseException) -> list[str]:
    import traceback

    return traceback.format_tb(exc.__traceback__)


async def test_a_cancelled_threaded_insert_many_still_completes(fw: Framework, server: Any) -> None:
    sending = threading.Event()

    class Inserts(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            if event.command_name == "insert":
                sending.set()

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            pass

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            pass

    client = fw.client(server.uri, event_listeners=[Inserts()])
    coll = client.motor_test[f"bulk_thread_cancel_{fw.name}"]
    await coll.drop()
    future = asyncio.ensure_future(coll.insert_many([{"i": i} for i in range(3000)]))
    # Cancelled once the worker thread sends (a call cancelled before it starts never
    # runs, and whether it starts within one loop iteration depends on the hub's window).
    for _ in range(5000):
        if sending.is_set():
            break
        await asyncio.sleep(0.001)
    assert sending.is_set() and not future.done()
    future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await future
    # The worker thread finishes the call: every document arrives, none twice.
    for _ in range(500):
        if await coll.count_documents({}) == 3000:
            break
        await asyncio.sleep(0.01)
    assert await coll.count_documents({}) == 3000
    assert len(await coll.distinct("i")) == 3000


async def test_wire_compression_of_large_messages_leaves_the_loop_s_thread(
    fw: Framework, server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``compressors="zlib"`` (through a proxy that speaks zlib to the client, for
    servers that do not), large messages are compressed, and large replies decompressed,
    in a worker thread: zlib takes about 30 ms of CPU to compress a 1 MB string of random
    letters, in one C call.  An insert whose large string is spliced (see
    ``motor.green.splice``) is compressed piece by piece (``zlib.compressobj``), without
    being encoded on the loop's thread; any other message of at least
    ``COMPRESS_OFF_LOOP_BYTES`` (an array of 50,000 integers) by PyMongo's compressor.
    Small messages stay on the loop's thread.  The documents are PyMongo's."""
    loop_thread = threading.get_ident()
    compressed_on: list[tuple[int, int]] = []  # (thread, uncompressed bytes)
    streamed_on: list[tuple[int, int]] = []
    decompressed_on: list[tuple[int, int]] = []
    real_compress, real_compressobj = zlib.compress, zlib.compressobj
    real_decompressobj = zlib.decompressobj

    def compress(data: Any, *args: Any) -> bytes:
        compressed_on.append((threading.get_ident(), len(data)))
        return real_compress(data, *args)

    class Watched:
        def __init__(self, real: Any, calls: list[tuple[int, int]], decompress: bool) -> None:
            self._real, self._calls, self._decompress = real, calls, decompress

        def compress(self, data: Any) -> bytes:
            self._calls.append((threading.get_ident(), len(data)))
            return bytes(self._real.compress(data))

        def decompress(self, data: Any, max_length: int = 0) -> bytes:
            out = self._real.decompress(data, max_length)
            self._calls.append((threading.get_ident(), len(out)))
            return bytes(out)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._real, name)

    rng = random.Random(20261202)
    text = {"_id": 1, "text": "".join(rng.choices(string.ascii_letters, k=1_000_000))}
    array = {"_id": 2, "a": list(range(50_000))}
    with FaultProxy((server.host, server.port), compression=True) as proxy:
        client = fw.client(proxy.uri, compressors="zlib")
        coll = client.motor_test[f"compressed_{fw.name}"]
        await coll.drop()
        # Watched from here (the first client of a process checks PyMongo's compressor).
        monkeypatch.setattr(zlib, "compress", compress)
        monkeypatch.setattr(
            zlib, "compressobj", lambda *a: Watched(real_compressobj(*a), streamed_on, False)
        )
        monkeypatch.setattr(
            zlib,
            "decompressobj",
            lambda *a: Watched(real_decompressobj(*a), decompressed_on, True),
        )
        await fw.probe.settle()
        await coll.insert_one(text)
        await coll.insert_one(array)
        found = await coll.find({}, sort=[("_id", 1)]).to_list()
        driver, slice_ = fw.probe.max_driver, fw.probe.max_slice

        def sync_find() -> Any:
            with pymongo.MongoClient(proxy.uri, compressors="zlib") as sync:  # type: pymongo.MongoClient[Any]
                return sync.motor_test[coll.name].find({}, sort=[("_id", 1)]).to_list()

        sync_found = await asyncio.to_thread(sync_find)
        await coll.drop()
        counts = proxy.compressed
    with fw.probe.uncounted():  # the test's comparison, not the driver's
        assert found == sync_found == [text, array]
    # Compression was on, both ways, for the large messages.
    assert counts.largest_request > 1_000_000 and counts.largest_reply > 1_000_000, counts

    def off_loop(calls: list[tuple[int, int]], at_least: int) -> bool:
        large = [thread for thread, size in calls if size >= at_least]
        return bool(large) and loop_thread not in large

    large = green_pool.COMPRESS_OFF_LOOP_BYTES
    # The spliced insert: its pieces, the string's among them, fed to zlib off the loop.
    assert sum(size for thread, size in streamed_on if thread != loop_thread) > 1_000_000
    assert all(thread != loop_thread for thread, _ in streamed_on), streamed_on
    # The array's insert: PyMongo's compressor, off the loop; small commands on it.
    assert off_loop(compressed_on, large), compressed_on
    assert any(thread == loop_thread for thread, size in compressed_on if size < large)
    assert off_loop(decompressed_on, green_pool.DECOMPRESS_OFF_LOOP_BYTES), decompressed_on
    # The child's longest run: encoding and decoding the documents, not compressing them.
    assert_no_stall(driver, 0.010, {"longest run": slice_})
