"""Motor for asyncio: ``AsyncIOMotorClient`` and the classes it hands out."""

from __future__ import annotations

from motor import core, cursors, encryption, sessions
from motor.frameworks.asyncio import framework

__all__ = [
    "AsyncIOMotorChangeStream",
    "AsyncIOMotorClient",
    "AsyncIOMotorClientEncryption",
    "AsyncIOMotorClientSession",
    "AsyncIOMotorCollection",
    "AsyncIOMotorCommandCursor",
    "AsyncIOMotorCursor",
    "AsyncIOMotorDatabase",
    "AsyncIOMotorLatentCommandCursor",
    "AsyncIOMotorRawBatchCommandCursor",
    "AsyncIOMotorRawBatchCursor",
]


class AsyncIOMotorClient(core.AgnosticClient):
    """:class:`~pymongo.mongo_client.MongoClient` for asyncio.

    ``io_loop`` is an optional :class:`asyncio.AbstractEventLoop`.
    """

    _framework = framework


class AsyncIOMotorClientSession(sessions.AgnosticClientSession):
    """:class:`~pymongo.client_session.ClientSession` for asyncio."""

    _framework = framework


class AsyncIOMotorDatabase(core.AgnosticDatabase):
    """:class:`~pymongo.database.Database` for asyncio."""

    _framework = framework


class AsyncIOMotorCollection(core.AgnosticCollection):
    """:class:`~pymongo.collection.Collection` for asyncio."""

    _framework = framework


class AsyncIOMotorCursor(cursors.AgnosticCursor):
    """:class:`~pymongo.cursor.Cursor` for asyncio."""

    _framework = framework


class AsyncIOMotorRawBatchCursor(cursors.AgnosticRawBatchCursor):
    """:class:`~pymongo.cursor.RawBatchCursor` for asyncio."""

    _framework = framework


class AsyncIOMotorCommandCursor(cursors.AgnosticCommandCursor):
    """:class:`~pymongo.command_cursor.CommandCursor` for asyncio."""

    _framework = framework


class AsyncIOMotorRawBatchCommandCursor(cursors.AgnosticRawBatchCommandCursor):
    """:class:`~pymongo.command_cursor.RawBatchCommandCursor` for asyncio."""

    _framework = framework


class AsyncIOMotorLatentCommandCursor(cursors.AgnosticLatentCommandCursor):
    """a command cursor returned without I/O (``aggregate()``, ``list_indexes()``) for asyncio."""

    _framework = framework


class AsyncIOMotorChangeStream(cursors.AgnosticChangeStream):
    """:class:`~pymongo.change_stream.ChangeStream` for asyncio."""

    _framework = framework


class AsyncIOMotorClientEncryption(encryption.AgnosticClientEncryption):
    """:class:`~pymongo.encryption.ClientEncryption` for asyncio."""

    _framework = framework
