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
    "WrongLoopError",
    "WrongThreadError",
]


class MotorMisuseError(RuntimeError):
    """Base class: a Motor object was used where it cannot work."""


class WrongThreadError(MotorMisuseError):
    """A Motor method was called from a thread that is not running an event loop."""


class WrongLoopError(MotorMisuseError):
    """A Motor object bound to one event loop was used from another."""


class ClientClosedError(MotorMisuseError, InvalidOperation):
    """An operation was started on a client after ``close()``."""


class ForkedClientError(MotorMisuseError, InvalidOperation):
    """A client created before ``fork()`` was used in the child process."""
