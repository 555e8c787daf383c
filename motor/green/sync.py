"""Green locks, conditions and sleep, safe to share with ordinary threads.

PyMongo's pools and topology are shared between the loop thread (where operations run
in child greenlets) and PyMongo's own background threads (monitors, the kill-cursors
and maintenance thread).  The primitives here therefore have two modes, chosen per
call:

* in a child greenlet, a wait parks the child (the loop keeps running);
* anywhere else, a wait blocks the calling thread, exactly like :mod:`threading`.

A notification may come from either side: a child is always woken through its hub's
loop (``call_soon_threadsafe`` from other threads), a thread through a per-waiter lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from motor.green.hub import Child, Waiter, _getcurrent, refuse_to_block

__all__ = ["GreenCondition", "GreenLock", "sleep"]


class _ThreadWaiter:
    """A thread parked on a condition: released by ``wake``."""

    __slots__ = ("lock",)

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()

    def wake(self) -> bool:
        self.lock.release()
        return True


class _GreenWaiter:
    """A child parked on a condition: resumed through its hub's loop."""

    __slots__ = ("thread_id", "waiter")

    def __init__(self, waiter: Waiter, thread_id: int) -> None:
        self.waiter = waiter
        self.thread_id = thread_id

    def wake(self) -> bool:
        """Resume the child; False if it was stranded (the wake-up is not taken)."""
        if self.waiter.abandoned:
            return False
        if threading.get_ident() == self.thread_id:
            # On the loop thread (a child or a loop callback): resume on a later
            # iteration's work budget, never by switching from here (we may be
            # inside a child).
            self.waiter._hub.resume_later(self.waiter.switch, True)
        else:
            self.waiter.switch_threadsafe(True)
        return True


class GreenCondition:
    """A drop-in for :class:`threading.Condition` that parks children instead of
    blocking the loop.  Used for the pools' wait queues and for server selection.
    """

    _lock: Any

    def __new__(cls, lock: Any = None) -> GreenCondition:
        # Entering and leaving a condition is entering and leaving its lock, which
        # PyMongo's pool does three times per operation.  Each condition gets a class
        # of its own whose __enter__ and __exit__ are its lock's own methods (C for a
        # threading.Lock), so ``with condition:`` runs no Python frame.
        lock = threading.Lock() if lock is None else lock
        own = type(
            cls.__name__,
            (cls,),
            {
                "__enter__": staticmethod(lock.__enter__),
                "__exit__": staticmethod(lock.__exit__),
                "__module__": cls.__module__,
            },
        )
        condition: GreenCondition = object.__new__(own)
        condition._lock = lock
        return condition

    def __init__(self, lock: Any = None) -> None:
        # self._lock is set by __new__.
        self.acquire = self._lock.acquire
        self.release = self._lock.release
        self._waiters: deque[_ThreadWaiter | _GreenWaiter] = deque()

    def __enter__(self) -> bool:  # replaced per instance, see __new__
        return bool(self._lock.__enter__())

    def __exit__(self, *args: Any) -> None:  # replaced per instance, see __new__
        self._lock.__exit__(*args)

    def __repr__(self) -> str:
        return f"<GreenCondition({self._lock!r}, {len(self._waiters)})>"

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for a notification or ``timeout``, reacquire.

        Returns False on timeout, like :meth:`threading.Condition.wait`.
        """
        current = _getcurrent()
        if isinstance(current, Child):
            return self._wait_green(current, timeout)
        return self._wait_thread(timeout)

    def _wait_green(self, child: Child, timeout: float | None) -> bool:
        # Runs on a child.
        hub = child.hub
        waiter = Waiter(hub)
        entry = _GreenWaiter(waiter, threading.get_ident())
        self._waiters.append(entry)
        self._lock.release()
        try:
            notified: bool = waiter.get(None if timeout is None else max(timeout, 0))
        except BaseException:
            # Cancelled: a notification that reached this waiter belongs to the next
            # (one that skipped it as stranded went to the next already).
            self._lock.acquire()
            if self._forget(entry) and not waiter.abandoned:
                self.notify(1)
            raise
        # Other holders are threads or children that never park with the lock held,
        # so this acquire is brief.
        self._lock.acquire()
        if not notified:
            notified = self._forget(entry)
        return notified

    def _forget(self, entry: _ThreadWaiter | _GreenWaiter) -> bool:
        """Remove a waiter that timed out or was cancelled (lock held).

        Returns True if a notification reached it anyway: it was already removed.
        """
        try:
            self._waiters.remove(entry)
        except ValueError:
            return True
        return False

    def _wait_thread(self, timeout: float | None) -> bool:
        if timeout is None or timeout > 0:
            refuse_to_block("a connection or a server")
        entry = _ThreadWaiter()
        self._waiters.append(entry)
        self._lock.release()
        notified = False
        try:
            if timeout is None:
                notified = entry.lock.acquire()
            else:
                notified = entry.lock.acquire(True, max(timeout, 0))
        finally:
            self._lock.acquire()
            if not notified:
                notified = self._forget(entry)
        return notified

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        """Wait until ``predicate()`` is true or ``timeout`` expires."""
        end = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            remaining = None
            if end is not None:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
            self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiters (the caller holds the lock)."""
        waiters = self._waiters
        while n > 0 and waiters:
            if waiters.popleft().wake():
                n -= 1

    def notify_all(self) -> None:
        """Wake every waiter."""
        self.notify(len(self._waiters))


class GreenLock:
    """A non-reentrant lock that parks children instead of blocking the loop.

    Replaces PyMongo's per-cursor ``_ConnectionManager._lock``, which is held across
    network I/O: with a plain lock, a second child needing it would block the loop
    thread forever while the holder waits for the loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: deque[_GreenWaiter] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        current = _getcurrent()
        if not isinstance(current, Child):
            if timeout != 0:
                refuse_to_block("a cursor's connection")
            return self._lock.acquire(True, timeout)
        end = None if timeout < 0 else time.monotonic() + timeout
        hub = current.hub
        while True:
            waiter = Waiter(hub)
            entry = _GreenWaiter(waiter, threading.get_ident())
            self._waiters.append(entry)
            # Released between the failed attempt and the append: take it now.
            if self._lock.acquire(False):
                self._discard(entry)
                return True
            remaining = None if end is None else max(end - time.monotonic(), 0)
            try:
                waiter.get(remaining)
            except BaseException:
                # Cancelled.  A release() that woke this waiter meanwhile meant the
                # lock for it: hand the wake-up to the next waiter (one that skipped it
                # as stranded went to the next already).
                if not self._discard(entry) and not waiter.abandoned:
                    self._pass_wake()
                raise
            woken = not self._discard(entry)
            if self._lock.acquire(False):
                return True
            if end is not None and time.monotonic() >= end:
                if woken:
                    self._pass_wake()
                return False

    def _discard(self, entry: _GreenWaiter) -> bool:
        """Remove a waiter that gives up; False if a release() had removed it already."""
        try:
            self._waiters.remove(entry)
        except ValueError:
            return False
        return True

    def _pass_wake(self) -> None:
        # A woken waiter gives up: wake the next one, unless the lock is taken (its
        # release will).
        if not self._lock.locked():
            self._wake_next()

    def _wake_next(self) -> None:
        # The first waiter that takes the wake-up (stranded ones do not).
        waiters = self._waiters
        while waiters:
            try:
                entry = waiters.popleft()
            except IndexError:
                return
            if entry.wake():
                return

    def release(self) -> None:
        self._lock.release()
        if self._waiters:
            self._wake_next()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *args: object) -> None:
        self.release()


def sleep(seconds: float) -> None:
    """:func:`time.sleep` that parks a child greenlet instead of blocking the loop."""
    current = _getcurrent()
    if isinstance(current, Child):
        current.hub.sleep(seconds)
    else:
        if seconds > 0:
            refuse_to_block("a retry backoff")
        time.sleep(seconds)
