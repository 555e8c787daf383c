"""Motor for asyncio: ``AsyncIOMotorClient`` and the classes it hands out."""

from __future__ import annotations

from motor import core
from motor.frameworks.asyncio import framework

__all__ = [
    "AsyncIOMotorClient",
    "AsyncIOMotorCollection",
    "AsyncIOMotorCommandCursor",
    "AsyncIOMotorCursor",
    "AsyncIOMotorDatabase",
]


class AsyncIOMotorClient(core.AgnosticClient):
    """:class:`~pymongo.mongo_client.MongoClient` for asyncio.

    ``io_loop`` is an optional :class:`asyncio.AbstractEventLoop`.
    """

    _framework = framework


class AsyncIOMotorDatabase(core.AgnosticDatabase):
    """:class:`~pymongo.database.Database` for asyncio."""

    _framework = framework


class AsyncIOMotorCollection(core.AgnosticCollection):
    """:class:`~pymongo.collection.Collection` for asyncio."""

    _framework = framework


class AsyncIOMotorCursor(core.AgnosticCursor):
    """:class:`~pymongo.cursor.Cursor` for asyncio."""

    _framework = framework


class AsyncIOMotorCommandCursor(core.AgnosticCommandCursor):
    """:class:`~pymongo.command_cursor.CommandCursor` for asyncio."""

    _framework = framework
