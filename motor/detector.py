"""An opt-in detector of driver work that holds the event loop.

Turn it on with :func:`detect_stalls` (or the environment variable
``MOTOR_DETECT_STALLS``, a threshold in milliseconds, read when :mod:`motor` is
imported).  It then logs a warning, on the ``motor.stalls`` logger, for:

* **blocking driver I/O on the loop's thread**: a command of a synchronous PyMongo
  client (``pymongo.MongoClient``) sent from a coroutine or callback, outside a child
  greenlet, which blocks every task of the loop while it waits for the reply (reported
  whatever its duration).  Only clients created after the detector is turned on are
  watched: PyMongo copies its global listeners when a client is made.
* **a driver call that holds the loop longer than the threshold**: a child greenlet
  (a Motor operation, or code run with :func:`motor.run_green`) that runs without
  yielding for longer than the threshold, for instance to encode a large document.

Each warning names the PyMongo operation, the caller's file, line and function (the
first frame outside Motor, PyMongo, asyncio and Tornado), and the duration.  Off by
default; while off, the only cost is one check per operation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import sys
import threading
import time
from typing import Any

import greenlet
from pymongo import monitoring

from motor.green import hub as _hub
from motor.green.hub import Child

__all__ = ["StallDetector", "detect_stalls", "stop_detecting_stalls"]

logger = logging.getLogger("motor.stalls")

_get_running_loop = asyncio._get_running_loop
_perf_counter = time.perf_counter


_MACHINERY_PACKAGES = ("motor", "asyncio", "pymongo", "bson", "gridfs", "greenlet", "tornado")
_machinery_paths: tuple[str, ...] = ()


def _machinery() -> tuple[str, ...]:
    # Frames in these packages' directories are the machinery, not the caller.
    # Computed again only until every one of them is imported (Tornado may come late).
    global _machinery_paths
    if len(_machinery_paths) < len(_MACHINERY_PACKAGES):
        paths = []
        for name in _MACHINERY_PACKAGES:
            filename = getattr(sys.modules.get(name), "__file__", None)
            if filename:
                paths.append(os.path.dirname(filename) + os.sep)
        _machinery_paths = tuple(paths)
    return _machinery_paths


def _caller(skip: int = 2) -> str:
    """``file:line in function`` of the first frame outside the driver's machinery."""
    frame: Any = sys._getframe(skip)
    machinery = _machinery()
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(machinery) and not filename.startswith("<frozen"):
            return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return "<unknown>"


def _operation(fn: Any) -> str:
    """A readable name for what a child runs (``Collection.find_one``).

    Never the callable's ``repr``: a ``functools.partial`` prints its arguments, which
    may be a password or a 17 MiB document."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__name__", None) or type(fn).__name__
    if owner is not None and not isinstance(owner, type):
        return f"{type(owner).__name__}.{name}"
    return getattr(fn, "__qualname__", name)


class _BlockingCommands(monitoring.CommandListener):
    """Commands sent from a running loop's thread outside a child: blocking I/O."""

    def __init__(self, detector: StallDetector) -> None:
        self._detector = detector
        self._started: dict[tuple[int, int], tuple[float, str]] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if _get_running_loop() is None or isinstance(greenlet.getcurrent(), Child):
            return
        key = (threading.get_ident(), event.request_id)
        self._started[key] = (_perf_counter(), _caller(3))

    def _ended(self, event: Any, outcome: str) -> None:
        started = self._started.pop((threading.get_ident(), event.request_id), None)
        if started is None:
            return
        began, caller = started
        self._detector.report(
            f"blocking PyMongo command {event.command_name!r} ({outcome}) on the event "
            f"loop's thread, outside a Motor operation or run_green()",
            caller,
            _perf_counter() - began,
            blocking=True,
        )

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._ended(event, "succeeded")

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._ended(event, "failed")


class StallDetector:
    """What :func:`detect_stalls` installs; see the module docstring."""

    def __init__(self, threshold: float, log: logging.Logger | None = None) -> None:
        #: Seconds a child may run without yielding before it is reported.
        self.threshold = threshold
        self.logger = log or logger
        self.listener = _BlockingCommands(self)
        self._local = threading.local()

    # -- called by the hub (motor.green.hub.DETECTOR), on the loop's thread -----------

    def note_call(self, future: Any, fn: Any) -> None:
        """Record where an operation was called from, and watch its child's slices."""
        future._motor_caller = (_operation(fn), _caller(3))
        if not getattr(self._local, "tracing", False):
            self._local.tracing = True
            self._local.previous = greenlet.settrace(self._trace)
            self._local.started = 0.0

    def _trace(self, event: str, args: Any) -> None:
        # Runs on every greenlet switch of this thread while the detector is on.
        origin, target = args
        local = self._local
        if type(target) is Child:
            local.started = _perf_counter()
            # Read now: a call that never waits has finished (and forgotten its
            # future) by the time it switches back.
            local.caller = getattr(target.future, "_motor_caller", None)
        elif type(origin) is Child and local.started:
            held = _perf_counter() - local.started
            local.started = 0.0
            if held > self.threshold:
                operation, caller = local.caller or ("?", "<unknown>")
                self.report(f"{operation} held the event loop", caller, held, blocking=False)
        previous = local.previous
        if previous is not None:
            previous(event, args)

    def report(self, what: str, caller: str, seconds: float, blocking: bool) -> None:
        """Log one warning."""
        self.logger.warning("%s for %.1f ms, called at %s", what, seconds * 1000, caller)

    def stop(self) -> None:
        """Stop reporting (this thread's greenlet tracing is restored lazily)."""
        self.threshold = float("inf")
        if getattr(self._local, "tracing", False):
            greenlet.settrace(self._local.previous)
            self._local.tracing = False


def threshold_from_environment(value: str) -> float:
    """``MOTOR_DETECT_STALLS``'s threshold in milliseconds; ``ValueError`` naming the
    variable for anything but a finite number of at least 0."""
    try:
        threshold = float(value)
    except ValueError:
        threshold = math.nan
    if not (0.0 <= threshold < math.inf):
        raise ValueError(
            "MOTOR_DETECT_STALLS must be a threshold in milliseconds, a number such as 20, "
            f"not {value!r} (unset it to turn the stall detector off)"
        )
    return threshold


def detect_stalls(threshold_ms: float = 10.0, log: logging.Logger | None = None) -> StallDetector:
    """Turn the stall detector on (see the module docstring); returns it.

    ``threshold_ms`` is how long a Motor operation may hold the loop before it is
    reported; blocking PyMongo commands on the loop's thread are reported whatever
    their duration.  Call it before creating the clients to watch.
    """
    stop_detecting_stalls()
    detector = StallDetector(threshold_ms / 1000.0, log)
    monitoring.register(detector.listener)
    _hub.DETECTOR = detector
    return detector


def stop_detecting_stalls() -> None:
    """Turn the stall detector off.  Clients made while it was on keep its command
    listener, which does nothing any more; clients made afterwards have none."""
    detector = _hub.DETECTOR
    if detector is not None:
        _hub.DETECTOR = None
        detector.stop()
        detector.listener._detector = _NULL
        # PyMongo has no public way to unregister a global listener: take it out of
        # its registry, so that clients made from now on publish no command events.
        registry = getattr(monitoring, "_LISTENERS", None)
        listeners = getattr(registry, "command_listeners", None)
        if isinstance(listeners, list) and detector.listener in listeners:
            listeners.remove(detector.listener)


class _NullDetector:
    def report(self, *args: Any, **kwargs: Any) -> None:
        pass


_NULL: Any = _NullDetector()
