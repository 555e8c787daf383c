"""Motor for Tornado: ``MotorClient`` and the classes it hands out."""

from __future__ import annotations

from motor import core
from motor.frameworks.tornado import framework

__all__ = [
    "MotorClient",
    "MotorCollection",
    "MotorCommandCursor",
    "MotorCursor",
    "MotorDatabase",
]


class MotorClient(core.AgnosticClient):
    """:class:`~pymongo.mongo_client.MongoClient` for Tornado.

    ``io_loop`` is an optional :class:`tornado.ioloop.IOLoop`.
    """

    _framework = framework


class MotorDatabase(core.AgnosticDatabase):
    """:class:`~pymongo.database.Database` for Tornado."""

    _framework = framework


class MotorCollection(core.AgnosticCollection):
    """:class:`~pymongo.collection.Collection` for Tornado."""

    _framework = framework


class MotorCursor(core.AgnosticCursor):
    """:class:`~pymongo.cursor.Cursor` for Tornado."""

    _framework = framework


class MotorCommandCursor(core.AgnosticCommandCursor):
    """:class:`~pymongo.command_cursor.CommandCursor` for Tornado."""

    _framework = framework
