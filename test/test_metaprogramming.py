"""Unit tests of the API manifest's argument handling."""

from __future__ import annotations

from typing import Any

import pytest

from motor.metaprogramming import _plain, unwrap_args


class _FakeMotor:
    def __init__(self, delegate: Any) -> None:
        self._motor_delegate = delegate


def test_plain_arguments_are_passed_through_unchanged() -> None:
    args: tuple[Any, ...] = ({"a": 1}, [1], "s", 2, 2.5, True, None, b"x", (1,))
    kwargs = {"upsert": True, "filter": {"x": 1}}
    assert _plain(args)
    new_args, new_kwargs = unwrap_args(args, kwargs)
    assert new_args is args and new_kwargs is kwargs


def test_motor_objects_are_replaced_by_their_delegates() -> None:
    delegate = object()
    wrapped = _FakeMotor(delegate)

    class Mapping(dict[str, object]):  # a subclass of a plain type is checked by attribute
        _motor_delegate = delegate

    for args in ((wrapped,), ({"a": 1}, wrapped), (Mapping(),)):
        assert not _plain(args)
        new_args, _ = unwrap_args(args, {})
        assert new_args[-1] is delegate
    _, new_kwargs = unwrap_args((), {"session": wrapped, "filter": {}})
    assert new_kwargs == {"session": delegate, "filter": {}}


def test_a_manifest_line_pymongo_lacks_fails_when_the_class_is_made() -> None:
    from pymongo.synchronous.collection import Collection

    from motor.core import AgnosticBase
    from motor.metaprogramming import Async, ReadOnly

    with pytest.raises(TypeError, match=r"Collection\.insert_onee, which the installed PyMongo"):

        class Typo(AgnosticBase):
            __pymongo_class__ = Collection
            insert_onee = Async()

    with pytest.raises(TypeError, match="no_such_property"):

        class Dropped(AgnosticBase):
            __pymongo_class__ = Collection
            no_such_property = ReadOnly()


def test_built_methods_have_pymongo_signatures_and_docs() -> None:
    import inspect

    from pymongo.synchronous.collection import Collection

    from motor.motor_tornado import MotorCollection

    motor_params = list(inspect.signature(MotorCollection.update_one).parameters)
    assert motor_params == list(inspect.signature(Collection.update_one).parameters)
    assert MotorCollection.update_one.__doc__ is not None
    assert MotorCollection.update_one.__doc__.startswith("Asynchronous")
    assert "Update a single document" in MotorCollection.update_one.__doc__
    # PyMongo's qualified name, as Motor 3.7.1's method (functools.wraps) had.
    assert MotorCollection.update_one.__qualname__ == "Collection.update_one"
    assert MotorCollection.with_options.__qualname__ == "Collection.with_options"
    # Methods that make a cursor without I/O were Motor 3.7.1's own.
    assert MotorCollection.find.__qualname__ == "AgnosticCollection.find"


def test_a_replacement_call_mirrors_pymongo_s_method() -> None:
    import inspect

    from pymongo.synchronous.collection import Collection

    from motor.metaprogramming import Async
    from motor.motor_asyncio import AsyncIOMotorCollection

    # find_one runs motor.green.find.find_one, but looks like PyMongo's.
    motor_params = list(inspect.signature(AsyncIOMotorCollection.find_one).parameters)
    assert motor_params == list(inspect.signature(Collection.find_one).parameters)
    assert "Get a single document" in (AsyncIOMotorCollection.find_one.__doc__ or "")
    for options in ({"wrap": "Collection"}, {"unqueued": True}):
        with pytest.raises(ValueError, match="does not wrap results and is always queued"):
            Async(call=len, **options)
