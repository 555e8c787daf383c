"""Errors Motor raises for misuse.

Everything that goes wrong in an operation reaches the caller as PyMongo's own
exception, unchanged.  These classes only report using Motor the wrong way.
"""

from __future__ import annotations

from pymongo.errors import InvalidOperation

__all__ = [
    "ClientClosedError",
    "ForkedClientError",
    "MotorMisuseError",
    "WouldBlockError",
    "WrongLoopError",
    "WrongThreadError",
]


class MotorMisuseError(RuntimeError):
    """Base class: a Motor object was used where it cannot work.

    The subclasses that are also PyMongo's :class:`~pymongo.errors.InvalidOperation`
    list it first, so that they are PyMongo errors in full (error labels included).
    """


class WrongThreadError(MotorMisuseError):
    """A Motor method was called from a thread that is not running the client's event
    loop; or an operation was in flight when its loop moved to another thread."""


class WrongLoopError(MotorMisuseError):
    """A Motor object bound to one event loop was used from another that it cannot move
    to (its own loop is open: in another thread, with operations in flight, or named by
    ``io_loop=``), or, where no loop runs, its loop is closed."""


class ClientClosedError(InvalidOperation, MotorMisuseError):
    """An operation was started on a client after ``close()``."""


class ForkedClientError(InvalidOperation, MotorMisuseError):
    """A client bound to an event loop that was still open at ``fork()`` was used in the
    child process on that loop (the parent's) or with no event loop running."""


class WouldBlockError(InvalidOperation, MotorMisuseError):
    """A synchronous call would have had to wait for the network on a running event
    loop's thread.

    Motor runs every operation that waits in a child greenlet, which parks instead of
    blocking.  Code that reaches a Motor client's sockets, conditions or locks on the
    loop's thread *outside* such a greenlet (a property such as
    :attr:`~motor.motor_asyncio.AsyncIOMotorClient.address` read before the client
    knows its server, or a synchronous method called on ``client.delegate``) would
    block every other task of the loop: Motor raises this instead.
    """
