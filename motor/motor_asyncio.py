"""Motor for asyncio: ``AsyncIOMotorClient`` and the classes it hands out."""

from __future__ import annotations

from motor import core, cursors, encryption, motor_gridfs, sessions
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
    "AsyncIOMotorGridFSBucket",
    "AsyncIOMotorGridIn",
    "AsyncIOMotorGridOut",
    "AsyncIOMotorGridOutCursor",
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


class AsyncIOMotorGridFSBucket(motor_gridfs.AgnosticGridFSBucket):
    """:class:`~gridfs.GridFSBucket` for asyncio."""

    _framework = framework


class AsyncIOMotorGridIn(motor_gridfs.AgnosticGridIn):
    """:class:`~gridfs.GridIn` for asyncio."""

    _framework = framework


class AsyncIOMotorGridOut(motor_gridfs.AgnosticGridOut):
    """:class:`~gridfs.GridOut` for asyncio."""

    _framework = framework


class AsyncIOMotorGridOutCursor(motor_gridfs.AgnosticGridOutCursor):
    """:class:`~gridfs.GridOutCursor` for asyncio."""

    _framework = framework
