"""The Tornado framework adapter.

Tornado 6's ``IOLoop`` runs on an asyncio loop, and ``tornado.gen.coroutine`` can
yield asyncio futures, so Motor's futures serve Tornado unchanged; the adapter only
maps between an ``IOLoop`` and its asyncio loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado
from tornado.ioloop import IOLoop
from tornado.platform.asyncio import AsyncIOLoop

from motor.core import Framework

__all__ = ["framework"]


class TornadoFramework(Framework):
    name = "Tornado"
    platform = f"Tornado {tornado.version}"

    def loop_from_io_loop(self, io_loop: Any) -> asyncio.AbstractEventLoop:
        if not isinstance(io_loop, IOLoop):
            raise TypeError(f"io_loop must be a tornado.ioloop.IOLoop, not {io_loop!r}")
        loop = getattr(io_loop, "asyncio_loop", None)
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"{io_loop!r} does not run on an asyncio event loop")
        return loop

    def io_loop_for(self, loop: asyncio.AbstractEventLoop) -> IOLoop:
        # Tornado keeps one IOLoop per asyncio loop (IOLoop._ioloop_for_asyncio): the
        # running or current loop's is IOLoop.current(); any other loop gets one made
        # for it.
        if loop is asyncio._get_running_loop():
            return IOLoop.current()
        existing = getattr(IOLoop, "_ioloop_for_asyncio", {}).get(loop)
        if isinstance(existing, IOLoop):
            return existing
        return AsyncIOLoop(asyncio_loop=loop)


framework = TornadoFramework()
