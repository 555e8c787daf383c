"""Motor for Tornado: ``MotorClient`` and the classes it hands out."""

from __future__ import annotations

from motor import core, cursors, encryption, motor_gridfs, sessions
from motor.frameworks.tornado import framework

__all__ = [
    "MotorChangeStream",
    "MotorClient",
    "MotorClientEncryption",
    "MotorClientSession",
    "MotorCollection",
    "MotorCommandCursor",
    "MotorCursor",
    "MotorDatabase",
    "MotorGridFSBucket",
    "MotorGridIn",
    "MotorGridOut",
    "MotorGridOutCursor",
    "MotorLatentCommandCursor",
    "MotorRawBatchCommandCursor",
    "MotorRawBatchCursor",
]


class MotorClient(core.AgnosticClient):
    """:class:`~pymongo.mongo_client.MongoClient` for Tornado.

    ``io_loop`` is an optional :class:`tornado.ioloop.IOLoop`.
    """

    _framework = framework


class MotorClientSession(sessions.AgnosticClientSession):
    """:class:`~pymongo.client_session.ClientSession` for Tornado."""

    _framework = framework


class MotorDatabase(core.AgnosticDatabase):
    """:class:`~pymongo.database.Database` for Tornado."""

    _framework = framework


class MotorCollection(core.AgnosticCollection):
    """:class:`~pymongo.collection.Collection` for Tornado."""

    _framework = framework


class MotorCursor(cursors.AgnosticCursor):
    """:class:`~pymongo.cursor.Cursor` for Tornado."""

    _framework = framework


class MotorRawBatchCursor(cursors.AgnosticRawBatchCursor):
    """:class:`~pymongo.cursor.RawBatchCursor` for Tornado."""

    _framework = framework


class MotorCommandCursor(cursors.AgnosticCommandCursor):
    """:class:`~pymongo.command_cursor.CommandCursor` for Tornado."""

    _framework = framework


class MotorRawBatchCommandCursor(cursors.AgnosticRawBatchCommandCursor):
    """:class:`~pymongo.command_cursor.RawBatchCommandCursor` for Tornado."""

    _framework = framework


class MotorLatentCommandCursor(cursors.AgnosticLatentCommandCursor):
    """a command cursor returned without I/O (``aggregate()``, ``list_indexes()``) for Tornado."""

    _framework = framework


class MotorChangeStream(cursors.AgnosticChangeStream):
    """:class:`~pymongo.change_stream.ChangeStream` for Tornado."""

    _framework = framework


class MotorClientEncryption(encryption.AgnosticClientEncryption):
    """:class:`~pymongo.encryption.ClientEncryption` for Tornado."""

    _framework = framework


class MotorGridFSBucket(motor_gridfs.AgnosticGridFSBucket):
    """:class:`~gridfs.GridFSBucket` for Tornado."""

    _framework = framework


class MotorGridIn(motor_gridfs.AgnosticGridIn):
    """:class:`~gridfs.GridIn` for Tornado."""

    _framework = framework


class MotorGridOut(motor_gridfs.AgnosticGridOut):
    """:class:`~gridfs.GridOut` for Tornado."""

    _framework = framework


class MotorGridOutCursor(motor_gridfs.AgnosticGridOutCursor):
    """:class:`~gridfs.GridOutCursor` for Tornado."""

    _framework = framework
