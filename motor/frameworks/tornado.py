"""The Tornado framework adapter.

Tornado 6's ``IOLoop`` runs on an asyncio loop, and ``tornado.gen.coroutine`` can
yield asyncio futures, so Motor's futures serve Tornado unchanged; the adapter only
maps an ``IOLoop`` to its asyncio loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado.ioloop import IOLoop

from motor.core import Framework

__all__ = ["framework"]


class TornadoFramework(Framework):
    name = "Tornado"

    def loop_from_io_loop(self, io_loop: Any) -> asyncio.AbstractEventLoop:
        if not isinstance(io_loop, IOLoop):
            raise TypeError(f"io_loop must be a tornado.ioloop.IOLoop, not {io_loop!r}")
        loop = getattr(io_loop, "asyncio_loop", None)
        if not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"{io_loop!r} does not run on an asyncio event loop")
        return loop


framework = TornadoFramework()
