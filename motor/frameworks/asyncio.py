"""The asyncio framework adapter."""

from __future__ import annotations

import asyncio
from typing import Any

from motor.core import Framework

__all__ = ["framework"]


class AsyncIOFramework(Framework):
    name = "asyncio"
    platform = "asyncio"

    def loop_from_io_loop(self, io_loop: Any) -> asyncio.AbstractEventLoop:
        if not isinstance(io_loop, asyncio.AbstractEventLoop):
            raise TypeError(f"io_loop must be an asyncio event loop, not {io_loop!r}")
        return io_loop

    def io_loop_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
        return loop


framework = AsyncIOFramework()
