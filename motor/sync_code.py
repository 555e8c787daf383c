"""Running synchronous PyMongo code on the event loop without blocking it.

Motor's green core runs PyMongo's synchronous driver in child greenlets: a child parks,
and the loop goes on, wherever PyMongo would block.  The same works for *any*
synchronous function: data-access layers written for PyMongo, an ODM such as
MongoEngine, a library that takes a ``MongoClient``::

    client = motor.GreenMongoClient("mongodb://localhost:27017")

    def top_authors(limit):                     # plain PyMongo code
        return list(client.blog.posts.aggregate([...]))

    async def handler():
        authors = await motor.run_green(top_authors, 10)

:func:`run_green` runs the function in a child greenlet of the running loop;
:class:`GreenMongoClient` is a real :class:`pymongo.MongoClient` whose pools, sockets
and conditions are Motor's green ones, so its operations park the child instead of
blocking.  Outside a child (in a thread, in a script with no loop running) the same
client blocks exactly like PyMongo's; called straight from a coroutine, on the loop's
thread, it refuses to block the loop (:class:`~motor.errors.WouldBlockError`).

Only waits in green clients yield: other blocking calls in the function (``time.sleep``,
``requests.get``, file I/O) still block the loop, and so does CPU-bound work.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pymongo import MongoClient
from pymongo.driver_info import DriverInfo

from motor._version import __version__
from motor.green.hub import get_hub
from motor.green.pool import check_client_tls, client_hooks

__all__ = ["GreenMongoClient", "green_coroutine", "run_green"]

_T = TypeVar("_T")


def run_green(fn: Callable[..., _T], /, *args: Any, **kwargs: Any) -> asyncio.Future[_T]:
    """Run ``fn(*args, **kwargs)`` in a child greenlet of the running event loop.

    Returns an awaitable future of its result (or its exception).  Call it from a
    coroutine or callback of the loop (asyncio or Tornado).  Every operation ``fn``
    performs through a green client (:class:`GreenMongoClient`, or the ``delegate`` of
    a Motor client) parks the child while it waits, so the loop keeps serving other
    tasks.  Cancelling the future (or the task awaiting it) raises inside ``fn`` at its
    next wait, as for any Motor operation; ``fn`` runs with a copy of the caller's
    :mod:`contextvars` context.
    """
    loop = asyncio.get_running_loop()
    return get_hub(loop).spawn(fn, *args, **kwargs)


def green_coroutine(fn: Callable[..., _T]) -> Callable[..., asyncio.Future[_T]]:
    """Decorate a synchronous function so that calling it runs it with
    :func:`run_green`: the call returns an awaitable future.

    For Tornado handlers written in synchronous style::

        class AuthorsHandler(tornado.web.RequestHandler):
            @motor.green_coroutine
            def get(self):
                self.write({"authors": top_authors(10)})
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future[_T]:
        return run_green(fn, *args, **kwargs)

    return wrapper


class GreenMongoClient(MongoClient):  # type: ignore[type-arg]
    """A :class:`pymongo.MongoClient` whose I/O parks a child greenlet instead of
    blocking, for synchronous code run with :func:`run_green`.

    Takes ``MongoClient``'s arguments.  Its pools, sockets, DNS lookups, TLS handshakes
    and condition waits are Motor's green ones: in a child greenlet they park the child
    and let the loop run; anywhere else (a thread, a script) they block as PyMongo's
    do.  On a running loop's thread outside a child they raise
    :class:`~motor.errors.WouldBlockError` rather than block the loop.  The handshake
    reports Motor (``driver`` metadata is appended to).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(client_hooks())
        super().__init__(*args, **kwargs)
        check_client_tls(self)
        self.append_metadata(DriverInfo("Motor", __version__, "green"))
