"""Run synchronous PyMongo calls in child greenlets on an event loop thread.

Theory of operation
-------------------
A :class:`Hub` belongs to one asyncio event loop (Tornado 6 runs on asyncio, so one
hub serves both frameworks).  :meth:`Hub.spawn` starts a *child* greenlet that runs a
synchronous function, and returns an :class:`asyncio.Future` for its result.

The child starts at once, inside the caller's stack (on loops whose poll is native
code, uvloop's, from the hub's queue: see ``Hub._native_poll``), and runs until the function
would block.  There it parks: it registers a wake-up with the loop (a socket becoming
ready, a timer, a notification) and switches to its parent, the greenlet that runs the
loop (the *hub greenlet*).  When the loop fires the wake-up, the callback (running on
the hub greenlet) switches back into the child, which carries on exactly where it
stopped.  When the function returns, the child resolves the future and ends.

Invariants, enforced here and relied on everywhere else:

1. Every switch into a parked child goes through :class:`Waiter`.  A waiter is resumed
   at most once; a value that arrives before the child parks is kept, and a callback
   that fires after the child moved on is a no-op.
2. A child's parent is always the hub greenlet.  A child never switches into another
   child; a call made from inside a child (a listener, a finalizer, a nested Motor call)
   starts its own child from the loop, never as a grandchild.
3. A child runs with a copy of the caller's :mod:`contextvars` context, so
   ``pymongo.timeout()`` and session binding apply inside the operation.
4. Code outside a child (PyMongo's monitor and maintenance threads, plain sync code)
   never parks: the green primitives fall back to ordinary blocking there.
5. Cancelling the future throws :class:`Cancelled` into the child at its current (or
   next) wait; PyMongo's cleanup closes a connection interrupted mid-operation and
   restores its pool counters while the exception unwinds.  A call cancelled while
   still queued never starts.

Costs kept off the hot path: children are reused (a finished child parks in the hub's
idle list); the hub greenlet runs children (starts and resumes alike) for at most
:data:`WORK_BUDGET` per loop iteration (the children's own time: the application's
callbacks in the iteration do not count), and further work waits in queues (plain
tuples, no greenlet yet for a start) for later iterations, so neither a burst of calls
nor a burst of replies can stall the loop; timed waits share one loop timer, set for
the earliest deadline, rather than a timer each.  When a child finishes, its future's
done callbacks (the awaiting task's wake-up) run as soon as the child switches back,
in the loop iteration that finished the operation, rather than in the next one.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextvars
import functools
import math
import os
import select
import selectors
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import greenlet

__all__ = [
    "Cancelled",
    "Hub",
    "OpFuture",
    "Waiter",
    "current_child",
    "get_hub",
    "in_child",
    "refuse_to_block",
    "thread_token",
]

T = TypeVar("T")

_getcurrent = greenlet.getcurrent
_get_running_loop = asyncio._get_running_loop


def _current_task_lookup() -> Callable[[asyncio.AbstractEventLoop], Any]:
    # loop -> the task it is stepping, or None; a C callable where one exists
    # (asyncio.current_task is C from Python 3.12; on 3.11 the C tasks record the
    # current task of each loop in asyncio.tasks._current_tasks).
    lookup = asyncio.current_task
    if isinstance(lookup, types.FunctionType):
        tasks = getattr(asyncio.tasks, "_current_tasks", None)
        if isinstance(tasks, dict):
            return tasks.get
    return lookup


_current_task = _current_task_lookup()
_perf_counter = time.perf_counter
_monotonic = time.monotonic


def thread_token() -> greenlet.greenlet:
    """The calling thread's main greenlet: what tells threads apart for the hub.

    A new thread often gets an exited thread's ident, and a thread that
    :mod:`threading` did not start may get its ``_DummyThread`` too; a main greenlet
    held here stays that thread's alone.
    """
    current = _getcurrent()
    parent = current.parent
    while parent is not None:
        current = parent
        parent = current.parent
    return current


class Cancelled(BaseException):
    """Thrown into a child greenlet whose future was cancelled.

    A :class:`BaseException`, so PyMongo's ``except Exception`` blocks let it pass and
    its ``except BaseException`` cleanup (close the connection, restore pool counters)
    runs while it unwinds.
    """


class OpFuture(asyncio.Future):  # type: ignore[type-arg]
    """The future of a call run by a child; cancelling it stops the child."""

    # The child running the call; unset until it starts, None once it is over.  With
    # the stall detector on, what was called and from where.
    __slots__ = ("_motor_caller", "_motor_child")
    _motor_child: Child | None
    _motor_caller: tuple[str, str]

    def cancel(self, msg: Any = None) -> bool:
        if not super().cancel(msg):
            return False
        child = getattr(self, "_motor_child", None)
        if child is not None:
            self._motor_child = None
            # Possibly called from a child: stop the other child from the loop, within
            # the hub's work budget like any resume (its cleanup runs PyMongo code):
            # cancelling hundreds of parked calls at once, a gather under wait_for
            # timing out, would otherwise run all their cleanups in one iteration.
            hub = child.hub
            hub.resume_later(hub.cancel_child, child, self)
        return True


class Child(greenlet.greenlet):
    """A greenlet that runs synchronous calls for a :class:`Hub`, one at a time.

    After a call it parks in its hub's idle list and is reused for the next call:
    creating a greenlet (and the interpreter's frame stack for it) costs far more
    than switching into one.
    """

    __slots__ = ("future", "hub", "release", "thread", "waiter")

    def __init__(self, hub: Hub, parent: greenlet.greenlet) -> None:
        # The run function is a plain function, not a bound method: greenlet keeps its
        # run callable on the child's C stack for the child's lifetime, where the
        # garbage collector cannot see it (see _serve).
        super().__init__(_serve, parent)
        self.hub = hub
        # The future of the call being run, or None while idle.
        self.future: asyncio.Future[Any] | None = None
        # The waiter the child is parked on, or None while it runs.
        self.waiter: Waiter | None = None
        # What gives back the call's admission turn (None: nothing to give back, or
        # given back already: Hub._strand).
        self.release: Callable[[], None] | None = None
        # The thread the greenlet belongs to (thread_token()): it never runs on another.
        self.thread = thread_token()


# Set once a child started on a thread whose coverage.py tracer keeps one call stack for
# all greenlets (_own_stacks_needed): the hot paths' switches into children (a start, a
# resume) then go through _switch_on_own_stack too, as the others always do.
_coverage_stacks = False


def _own_stacks_needed(tracer: Any) -> bool:
    """Whether ``tracer`` (a thread's ``sys.gettrace()``) is coverage.py's C tracer
    keeping one call stack for all greenlets (not configured with ``concurrency =
    greenlet``)."""
    return (
        tracer is not None
        and type(tracer).__name__ == "CTracer"
        and type(tracer).__module__.partition(".")[0] == "coverage"
        and getattr(tracer, "concur_id_func", _getcurrent) is None
    )


def _switch_on_own_stack(switch: Callable[..., Any], *args: Any) -> Any:
    """``switch(*args)``, a switch into a child, with coverage.py's tracer on this
    thread keeping the child's frames on a call stack of the child's own.

    coverage.py's C tracer attributes each line to the file of the frame on top of
    the call stack it keeps, one per thread unless configured for greenlets
    (``concurrency = greenlet``).  A child's frames pushed on the thread's stack and
    popped after the loop's frames moved on would make the application's lines go
    missing from the report, or count in the wrong file.  While the child runs, the
    tracer is given ``greenlet.getcurrent`` as its concurrency function (the setting
    ``concurrency = greenlet`` gives it): the child's frames go on a stack of its
    own.  Back on the loop's greenlet, the tracer has none again and goes on with the
    thread's stack, untouched.  (Configuring greenlets instead would give the loop's
    greenlet a new, empty stack: the frames running at that moment, such as a
    script's lines after ``asyncio.run()``, would report no more lines.)
    """
    tracer: Any = sys.gettrace()
    if not _own_stacks_needed(tracer):
        return switch(*args)
    try:
        tracer.concur_id_func = _getcurrent
    except (AttributeError, TypeError):  # another coverage.py's layout: leave it
        return switch(*args)
    try:
        return switch(*args)
    finally:
        tracer.concur_id_func = None


def _serve() -> None:
    # Runs on a child greenlet, for as long as it lives: one call after another.
    #
    # A parked greenlet's frame (and the C stack it started on) holds references the
    # garbage collector cannot see.  While idle, a child therefore holds neither
    # itself nor its hub, nor anything of a call: otherwise an idle child would keep
    # itself, its hub and the hub's loop alive forever once the application dropped
    # the loop (a loop per asyncio.run(), say).  So the child starts without
    # arguments (greenlet keeps those of its first switch until it ends) and receives
    # each call, the first one too, at the switch it parks on.
    fn, args, kwargs, future = _getcurrent().parent.switch()  # type: ignore[union-attr]
    child: Any = _getcurrent()
    hub: Any = child.hub
    idle: Any = hub._idle
    while True:
        error: BaseException | None = None
        try:
            try:
                result = fn(*args, **kwargs) if kwargs else fn(*args)
            finally:
                release = child.release
                if release is not None:
                    child.release = None
                    release()
        except Cancelled as cancelled:
            result = _CANCELLED
            _drop_frames(cancelled)
            del cancelled
        except greenlet.GreenletExit as exit:
            # Ended by greenlet: a stranded child (Hub._strand, its future failed
            # already), ended on its own thread.
            if not future.done():
                future.set_exception(exit)
            child.future = None
            future._motor_child = None
            return
        except (KeyboardInterrupt, SystemExit) as exc:
            # Raised while this child ran: by a signal (Ctrl-C, a handler's sys.exit())
            # that arrived meanwhile, or by the call itself.  The hub raises it on the
            # loop (Hub.interrupt).  The call was interrupted (PyMongo's cleanup ran as
            # the exception unwound): its future is cancelled, as a call stopped by
            # cancellation.
            result = _CANCELLED
            if not future.done():
                future._motor_child = None  # (OpFuture.cancel would stop this child)
                future.cancel(f"Motor: the call was interrupted by {type(exc).__name__}")
            hub.interrupt(exc)
            del exc
        except BaseException as exc:
            result = None
            error = exc if not isinstance(exc, StopIteration) else _stop_iteration(exc)
            del exc
        if result is not _CANCELLED and not future.done():
            # Take the done callbacks (the awaiting task's wake-up, typically): the hub
            # greenlet runs them as soon as this child switches back
            # (Hub._run_finished), not on the next loop iteration.
            callbacks = future._callbacks
            if callbacks:
                # A copy: a pure-Python future's list is its own (nest_asyncio makes
                # asyncio.Future one), which remove_done_callback empties in place.
                callbacks = list(callbacks)
                for entry in callbacks:
                    future.remove_done_callback(entry[0])
                hub._done = (future, callbacks)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        child.future = None
        future._motor_child = None
        # No frame -> traceback -> frame cycle, and no result, kept while idle.
        fn = args = kwargs = future = release = result = error = callbacks = entry = None
        if len(idle) >= MAX_IDLE or hub._closed:
            return
        idle.append(child)
        child = hub = idle = None
        # Park until the hub hands over the next call (see Hub._start).
        fn, args, kwargs, future = _getcurrent().parent.switch()  # type: ignore[union-attr]
        child = _getcurrent()
        hub = child.hub
        idle = hub._idle


# The outcome of a call stopped by cancellation (its future is already done).
_CANCELLED = object()


def _stop_iteration(exc: StopIteration) -> RuntimeError:
    # A future cannot carry a StopIteration (asyncio refuses it: it would end the
    # awaiting coroutine as a return), so the call's caller gets a RuntimeError caused by
    # it, as a generator or coroutine raising StopIteration gives (PEP 479).  The
    # synchronous idiom next(cursor) on an empty result raises one.
    error = RuntimeError(f"the call raised StopIteration: {exc!r}")
    error.__cause__ = exc
    return error


def _drop_frames(exc: BaseException) -> None:
    # Nobody sees the Cancelled that stopped a call (its future is already cancelled),
    # but the frames it unwound often hold it, or an exception chained to it, in a
    # local (PyMongo's ``except BaseException as error: ... raise error``): a cycle per
    # cancelled operation that only the garbage collector frees, which after a burst
    # of cancellations means thousands of objects and a long collection.  Clearing the
    # finished frames' locals breaks those cycles at once.
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen or len(seen) >= 16:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        todo.append(current.__context__)
        todo.append(current.__cause__)


class Waiter:
    """The one switch primitive: park a child until a single value arrives.

    ``get()`` runs on a child and parks it; ``switch()`` and ``throw()`` run on the hub
    greenlet (loop callbacks) and resume it.  ``switch_threadsafe()`` may be called from
    any thread.
    """

    __slots__ = ("_child", "_exc", "_has_value", "_hub", "_value", "abandoned")

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._child: Child | None = None
        self._has_value = False
        self._value: Any = None
        self._exc: BaseException | None = None
        # Its child was stranded (Hub._strand): nothing will wait on it again, and a
        # condition's notification must go to another waiter.
        self.abandoned = False

    def switch(self, value: Any = None) -> None:
        """Resume the parked child with ``value`` (runs on the hub greenlet)."""
        child = self._child
        if child is None:
            # Not parked yet, or already resumed: keep the first value only.
            if not self._has_value:
                self._has_value = True
                self._value = value
            return
        if self._hub.pid != _process[0]:
            return  # after fork(): the parent's parked call is never resumed here
        self._child = None
        child.waiter = None
        # The child's time is charged to the iteration's work budget (Hub._window_open).
        hub = self._hub
        hub._entered = started = _perf_counter()
        try:
            if _coverage_stacks:
                _switch_on_own_stack(child.switch, value)
            else:
                child.switch(value)
        except greenlet.error:  # parked by a thread that no longer runs the loop
            self.abandoned = True
            hub._strand(child)
        clock = hub._clock
        clock.last = ended = _perf_counter()
        clock.spent += ended - started
        if hub._done is not None:
            hub._run_finished()

    def throw(self, exc: BaseException) -> None:
        """Resume the parked child by raising ``exc`` in it (runs on the hub greenlet)."""
        child = self._child
        if child is None:
            if not self._has_value:
                self._has_value = True
                self._exc = exc
            return
        if self._hub.pid != _process[0]:
            return  # after fork(): the parent's parked call is never resumed here
        self._child = None
        child.waiter = None
        hub = self._hub
        hub._entered = started = _perf_counter()
        try:
            _switch_on_own_stack(child.throw, exc)
        except greenlet.error:  # parked by a thread that no longer runs the loop
            self.abandoned = True
            hub._strand(child)
        clock = hub._clock
        clock.last = ended = _perf_counter()
        clock.spent += ended - started
        if hub._done is not None:
            hub._run_finished()

    def switch_threadsafe(self, value: Any = None) -> None:
        """Resume the child from any thread, on the next loop iteration.

        A no-op once the loop is closed (its children were ended by :meth:`Hub.close`):
        PyMongo's monitor threads notify conditions whatever the state of the loop.
        """
        try:
            self._hub.loop.call_soon_threadsafe(self.switch_budgeted, value)
        except RuntimeError:
            if not self._hub.loop.is_closed():
                raise

    def switch_budgeted(self, value: Any = None) -> None:
        """Like :meth:`switch`, for loop callbacks: resume the parked child now if this
        loop iteration's work window lasts and no resume is queued before it, otherwise
        on a later iteration's budget, as a readable socket's read is.

        A monitor thread's notify_all, or a pool closed or cleared with
        interruptInUseConnections, wakes hundreds of children at once: resumed one after
        another from loop callbacks, they would hold the loop for as long as they all
        take.  Runs on the hub greenlet.
        """
        hub = self._hub
        if self._child is not None and not (
            (not hub._resumes or hub._catch_up(False)) and hub._window_open()
        ):
            hub.resume_later(self.switch, value)
        else:
            self.switch(value)

    def get(self, timeout: float | None = None) -> Any:
        """Park the current child until ``switch`` or ``throw`` (runs on a child).

        With a ``timeout`` (seconds), the child gets False if it expires first.  Timed
        waits share one loop timer per hub, set for the earliest deadline (see
        :meth:`Hub._sweep`), rather than a timer each: PyMongo waits for its sockets
        in 0.5 s slices, and its replies nearly always arrive first.
        """
        if self._has_value:
            self._has_value = False
            exc = self._exc
            if exc is not None:
                self._exc = None
                raise exc
            value = self._value
            self._value = None
            return value
        child = _getcurrent()
        assert isinstance(child, Child), "Waiter.get() called outside a child greenlet"
        self._child = child
        child.waiter = self
        if timeout is not None:
            hub = self._hub
            deadline = _monotonic() + timeout
            hub._deadlines[self] = deadline
            if deadline < hub._sweep_at:
                hub._set_sweeper(deadline)
        try:
            return child.parent.switch()  # type: ignore[union-attr]
        except BaseException:
            # Stranded, and now ended on its own thread: what Hub._strand lent the pools
            # from it is put back first, so that its cleanup below does not give it
            # back twice.
            loans = self._hub._loans
            if loans:
                repay = loans.pop(child, None)
                if repay is not None:
                    repay()
            raise
        finally:
            if timeout is not None:
                self._hub._deadlines.pop(self, None)
            if self._child is not None:
                # Resumed by something other than this waiter (an exception thrown
                # straight into the greenlet): forget the registration.
                self._child = None
                child.waiter = None


# A timed wait whose deadline is this close (seconds) when the sweep runs expires
# then, rather than one more timer later (loops whose clocks tick in milliseconds
# may run a timer slightly early).
SWEEP_SLACK = 0.001

# The size of each hub's scratch buffer for reading replies (bytes).
SCRATCH_SIZE = 16384

# The stall detector (motor.detector.detect_stalls), or None while it is off.
DETECTOR: Any = None

# How many finished children a hub keeps for reuse.
MAX_IDLE = 256

# How long closing a loop may run it on, at most, for the calls nobody awaits to finish
# (seconds): see Hub.finish_unawaited.
UNAWAITED_TIMEOUT = 5.0

# How long the hub greenlet may run children (start or resume them) in one loop
# iteration before further work is queued for later iterations (seconds).  Bounds the
# loop stall of a burst.
WORK_BUDGET = 0.00035

# The share of WORK_BUDGET left to an iteration that starts with a loop timer due, and
# to the next one: the timer's callback (a ``call_later``, an ``asyncio.sleep``
# ending) runs after the iteration's I/O callbacks, the children's work among them,
# and what it schedules (the sleeping task's wake-up) after the next iteration's.
DUE_TIMER_SHARE = 0.25

# Whether time.perf_counter() (the hub's clock) and time.monotonic() (asyncio's loop
# time) read the same clock, so that loop timers' deadlines compare with the hub's.
_SAME_CLOCK = (
    time.get_clock_info("perf_counter").implementation
    == time.get_clock_info("monotonic").implementation
)


class _LoopClock:
    """A count of an event loop's iterations, and whether the green readers of a poll
    that reported several are running (see :meth:`Hub.submit`)."""

    __slots__ = (
        "deadline",
        "dispatching",
        "iteration",
        "last",
        "runner",
        "spent",
        "thread",
        "timer_ran",
    )

    def __init__(self) -> None:
        self.iteration = 0
        # The thread that ran the loop's last iteration, as far as the hub knows (its
        # children are greenlets of that thread: Hub._thread_changed), and the greenlet
        # that ran it (a thread's own, unlike its ident, is never another thread's).
        self.thread = thread_token()
        self.runner: greenlet.greenlet | None = None
        # The time children ran in this iteration (seconds): see Hub._window_open.
        self.spent = 0.0
        # When the loop's next timer is due (the hub's clock, time.perf_counter()), if
        # it is not due yet at the start of the iteration: children may not run past it
        # (Hub._window_open).  When the last switch to a child returned.  Whether the
        # iteration started with a timer due (DUE_TIMER_SHARE).
        self.deadline = math.inf
        self.last = 0.0
        self.timer_ran = False
        self.dispatching = False


class _GreenReader(asyncio.Handle):
    """A reader registered by :meth:`Hub.watch_readable`."""

    __slots__ = ()
    _callback: Callable[[], Any]  # Handle's slot (not in the type stubs)


def _epoll_select(selector: Any) -> Callable[..., Any] | None:
    """A ``select`` method for an :class:`selectors.EpollSelector` that does what the
    standard library's does with fewer Python steps (the loop polls once per reply).

    None for any other selector, or if the EpollSelector's private attributes it reads
    are not there.
    """
    if type(selector) is not selectors.EpollSelector:
        return None
    epoll = getattr(selector, "_selector", None)
    fd_to_key = getattr(selector, "_fd_to_key", None)
    if not isinstance(epoll, select.epoll) or not isinstance(fd_to_key, dict):
        return None
    poll = epoll.poll
    get_key = fd_to_key.get
    ceil = math.ceil
    epollin = select.EPOLLIN
    not_in = ~select.EPOLLIN
    not_out = ~select.EPOLLOUT
    event_read = selectors.EVENT_READ
    event_write = selectors.EVENT_WRITE

    def epoll_select(timeout: float | None = None) -> list[tuple[Any, int]]:
        if timeout is None:
            timeout = -1
        elif timeout <= 0:
            timeout = 0
        else:
            # epoll_wait() counts milliseconds: wait at least ``timeout``.
            timeout = ceil(timeout * 1e3) * 1e-3
        ready: list[tuple[Any, int]] = []
        try:
            fd_event_list = poll(timeout, len(fd_to_key) or 1)
        except InterruptedError:
            return ready
        for fd, event in fd_event_list:
            key = get_key(fd)
            if key:
                if event == epollin:
                    events = event_read
                else:
                    events = 0
                    if event & not_in:
                        events |= event_write
                    if event & not_out:
                        events |= event_read
                ready.append((key, events & key.events))
        return ready

    return epoll_select


class _LoopHook:
    """Installed once per selector event loop as the loop's ``_process_events``.

    The loop calls it once per iteration, with what its poll reported, before it runs
    the iteration's callbacks.  It counts the iteration (and gives it a fresh work
    budget, a smaller one around a loop timer that is due, and the time until the next
    timer is due: :meth:`Hub._window_open`), hands the loop's own events
    to the loop's ``_process_events`` (which queues their callbacks), and then runs
    the callbacks of ready green readers (:meth:`Hub.watch_readable`) at once: no
    handle is queued and run for them, the loop's cost per reply.
    """

    __slots__ = ("_loop", "_loop_process_events", "_timed", "clock")

    def __init__(self, loop: asyncio.AbstractEventLoop, process_events: Callable[..., Any]):
        self._loop = loop
        self._loop_process_events = process_events
        self.clock = _LoopClock()
        # Whether the loop's timers (the heap of TimerHandles in loop._scheduled) are
        # due on the hub's clock: asyncio's own time(), and perf_counter() reads the
        # same clock.
        self._timed = (
            _SAME_CLOCK
            and type(loop).time is asyncio.BaseEventLoop.time
            and isinstance(getattr(loop, "_scheduled", None), list)
        )
        selector = loop._selector  # type: ignore[attr-defined]
        select = _epoll_select(selector)
        if select is not None:
            selector.select = select

    def process_events(self, event_list: list[tuple[Any, int]]) -> None:
        clock = self.clock
        clock.iteration += 1
        if _getcurrent() is not clock.runner:
            self._runner_changed()
        # A fresh budget, unless a loop timer is due (or was at the start of the last
        # iteration: DUE_TIMER_SHARE); children may run until the next timer is due.
        timers = self._loop._scheduled if self._timed else None  # type: ignore[attr-defined]
        due = False
        clock.spent = 0.0
        clock.deadline = math.inf
        if timers:
            when = timers[0]._when
            if when <= _perf_counter():
                due = True
            else:
                clock.deadline = when
        if due or clock.timer_ran:
            clock.spent = WORK_BUDGET * (1.0 - DUE_TIMER_SHARE)
        clock.timer_ran = due
        if len(event_list) == 1:  # the common case: one descriptor is ready
            reader, writer = event_list[0][0].data
            if reader.__class__ is _GreenReader and writer is None:
                # (Cancelled if a stranded child's connection just closed: see
                # _runner_changed.)
                if not reader._cancelled:
                    self._run(reader)
                return
        elif not event_list:
            return
        readers: list[_GreenReader] = []
        others: list[tuple[Any, int]] = []
        for event in event_list:
            reader, writer = event[0].data
            if reader.__class__ is _GreenReader and writer is None:
                readers.append(reader)
            else:
                others.append(event)
        if others:
            self._loop_process_events(others)
        # Until every ready reader has run, the starts their callbacks make (the next
        # operation of a task its reply woke) wait in the hub's queue: replies first.
        clock.dispatching = True
        try:
            for reader in readers:
                if not reader._cancelled:  # unless removed by an earlier callback
                    self._run(reader)
        finally:
            clock.dispatching = False

    def _runner_changed(self) -> None:
        # Another greenlet runs the loop: another thread's, after a move.
        clock = self.clock
        clock.runner = _getcurrent()
        if clock.thread is not thread_token():
            hub = getattr(self._loop, "_motor_hub", None)
            if hub is not None:
                hub._thread_changed()
            else:
                clock.thread = thread_token()

    def _run(self, reader: _GreenReader) -> None:
        try:
            reader._callback()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"Exception in callback {reader._callback!r}",
                    "exception": exc,
                    "handle": reader,
                }
            )


class Hub:
    """Runs child greenlets for one event loop; created by :func:`get_hub`.

    Starting a child runs PyMongo's Python code until the child's first wait, and
    resuming one (a reply arrived, a connection came free) runs it until the next.  So
    that a burst (``gather`` of hundreds of operations, or replies to them all arriving
    together) cannot stall the loop, the hub runs children only within
    :data:`WORK_BUDGET` per loop iteration, counting the time the children run (each
    switch to a child is timed) and not the application's callbacks, and no further
    than the loop's next timer (:data:`DUE_TIMER_SHARE`); further work
    waits in two FIFO queues, resumes first (they finish operations and free
    connections), then starts (plain tuples, no greenlet yet).  :meth:`_drain` works
    through them at the start of later iterations, one budget each, and the hub's next
    start or resume runs them first while the budget lasts (:meth:`_catch_up`).

    The budget belongs to a loop iteration, so the hub counts iterations: on asyncio's
    selector event loops (which Tornado uses too) a hook in the loop's event processing
    counts them (:class:`_LoopHook`); on other loops the hub schedules a marker callback
    for the next iteration whenever it checks the budget and none is pending.
    """

    # Gives back to the pools what a stranded child holds (set by motor.green.pool:
    # reclaim_stranded); returns what puts it back, or None.
    reclaim_stranded: Callable[[Child], Callable[[], None] | None] | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pid = os.getpid()
        # Work waiting for a later iteration: resumes, then starts.
        self._resumes: deque[tuple[Any, ...]] = deque()
        self._queue: deque[tuple[Any, ...]] = deque()
        # The loop's iterations (counted by its _LoopHook, or by marker callbacks), with
        # the time children ran in the current one (_window_open); when the hub last
        # switched to a child (_child_window_open).
        self._selector: Any = None
        self._clock = self._hook_loop()
        self._marks_iterations = self._selector is None
        # A loop whose poll runs I/O callbacks inside native code (uvloop: libuv's
        # uv__io_poll) may keep pointers into that C stack frame while it calls them;
        # libuv does (the events being dispatched, read again by every uv_poll_start and
        # uv_poll_stop, which add_reader and remove_reader call).  A child resumed from
        # such a callback runs on the same C stack, over that frame (its stack began
        # where the hub first switched to it), and its add_reader or close() then reads
        # the child's data as libuv's: a segmentation fault.  On such loops children run
        # only from the loop's ready callbacks (call_soon), outside the poll and the
        # timers: starts are queued, and readiness callbacks and the timer that expires
        # timed waits resume their children from call_soon.
        self._native_poll = self._selector is None and not isinstance(loop, asyncio.BaseEventLoop)
        self._marker_pending = False
        self._entered = 0.0
        self._draining = False
        self._idle: list[Child] = []
        # Where children's reads of replies land first (motor.green.pool).
        self._scratch = memoryview(bytearray(SCRATCH_SIZE))
        # The future a child just resolved, with the done callbacks it took from it;
        # taken by the greenlet the child switched back to (Hub._run_finished).
        self._done: tuple[asyncio.Future[Any], list[tuple[Any, Any]]] | None = None
        # The thread that made the hub: where its loop runs, unless the loop was handed
        # to another thread (see owns_loop_thread).
        self._creator_thread = threading.get_ident()
        # Timed waits and their deadlines (time.monotonic()); one loop timer, set for
        # the earliest deadline (_sweep_at), expires them.
        self._deadlines: dict[Waiter, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        # Every live child (for close(); added when made, gone when it ends).
        self._children: weakref.WeakSet[Child] = weakref.WeakSet()
        # Children whose call failed because they parked on a thread that no longer
        # runs the loop (_strand): ended once their thread runs it again, or closes it.
        self._stranded: list[Child] = []
        # A KeyboardInterrupt or SystemExit raised in a child, until raised on the loop
        # (interrupt).
        self._interrupted: BaseException | None = None
        # What the pools got back from stranded children (Hub.reclaim_stranded), and
        # what puts it back should the child's own thread end it (Waiter.get).
        self._loans: dict[Child, Callable[[], None]] = {}
        # Calls that must complete even if the loop closes first (finish_on_close).
        self._finishers: dict[asyncio.Future[Any], Callable[[], None]] = {}
        self._closed = False
        self._hook_close()

    def spawn(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Run ``fn(*args, **kwargs)`` in a new child greenlet; return its future.

        Must be called on the loop's thread while the loop runs.  From the hub
        greenlet the child starts at once and runs until it first waits, unless this
        iteration's start budget is spent; from inside another child it is queued
        (invariant 2).
        """
        future = OpFuture(loop=self.loop)
        self.submit(future, contextvars.copy_context(), fn, args, kwargs)
        return future

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc``, a ``KeyboardInterrupt`` or ``SystemExit`` raised in a child, on
        the loop: from a callback of the loop's next iteration, or at the end of
        :meth:`close` if the loop does not run again before it closes.

        A signal's exception (Ctrl-C, a handler's ``sys.exit()``) lands in whatever code
        runs, often a child.  Kept in the call's future it would be lost when nobody
        awaits the future, and raised again by each task that does; raised from the
        hub's own code, where a child switched back, it would leave work the hub had
        begun (a start, a timed wait's resume) undone.  A loop callback that raises it
        stops ``run_forever()`` as when it lands in the application's code.  Only the
        first is kept until raised.
        """
        if self._interrupted is not None:
            return
        self._interrupted = exc
        try:
            self.loop.call_soon(self._raise_interrupt)
        except RuntimeError:  # the loop is closed
            pass

    def _raise_interrupt(self) -> None:
        exc, self._interrupted = self._interrupted, None
        if exc is not None:
            raise exc

    def finish_on_close(self, future: asyncio.Future[Any], finish: Callable[[], None]) -> None:
        """Run ``finish()`` if the hub closes before ``future``, a call of one of its
        children, is done: for work that must complete although nobody awaits it (a
        client's ``close()``, which Motor 3.7.1 ran synchronously).

        The hub closes when its loop is closed (``asyncio.run()`` returning, Tornado's
        ``AsyncTestCase`` tearing down), or at interpreter exit while the loop is
        stopped but open (``IOLoop.run_sync()``).  The call is cancelled where it waits,
        as every call is, and then ``finish()`` runs on the loop's thread, outside any
        child, with the loop stopped, so its I/O blocks, as PyMongo's does.
        """
        finishers = self._finishers
        finishers[future] = finish
        future.add_done_callback(lambda done: finishers.pop(done, None))
        with _hubs_lock:
            _finishing_hubs.add(self)

    def _run_finishers(self) -> None:
        # On close(), once every call was cancelled where it waited.
        pending = [finish for future, finish in self._finishers.items() if future.cancelled()]
        self._finishers.clear()
        for finish in pending:
            try:
                finish()
            except Exception as exc:  # reported, not raised from loop.close()
                self.loop.call_exception_handler(
                    {"message": f"Motor: {finish!r} failed as its loop closed", "exception": exc}
                )

    def submit(
        self,
        future: OpFuture,
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        release: Callable[[], None] | None = None,
    ) -> None:
        """Like :meth:`spawn`, with the future and context made by the caller.

        ``release``, if given, is called once the call is over: on the child when
        ``fn`` returns or raises (before the future resolves), or instead of ``fn`` if
        the call is cancelled while queued.

        The child starts at once if the hub greenlet may start it now: while this loop
        iteration's work budget lasts, after any queued work (resumes, then starts,
        oldest first), which runs first while the budget lasts; otherwise it is queued
        (first in, first out) for later iterations.  While the loop runs the callbacks
        of several replies that one poll reported, starts are queued until every reply
        is resumed: replies first.  On a loop whose poll is native code (uvloop) every
        start is queued (see ``_native_poll``).

        Only the greenlet that runs the loop (the thread's own, or the one the loop's
        iterations ran on) is the hub greenlet.  A call from another greenlet (a child,
        or a task that a library such as greenback runs in a greenlet of its own) is
        queued too: a child started there would take it as its parent, and each later
        wait of the child, resumed by a loop callback on the hub greenlet, would switch
        into that greenlet instead of back to the loop.
        """
        if DETECTOR is not None:
            DETECTOR.note_call(future, fn)
        current = _getcurrent()
        if (
            (current.parent is not None and current is not self._clock.runner)
            or self._clock.dispatching
            or self._native_poll
            or ((self._resumes or self._queue) and not self._catch_up(True))
            or not self._window_open()
        ):
            self._defer((self._start_queued, fn, args, kwargs, future, context, release))
        else:
            self._start(current, fn, args, kwargs, future, context, release)

    def submit_later(
        self,
        future: OpFuture,
        context: contextvars.Context,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        release: Callable[[], None] | None = None,
    ) -> None:
        """Like :meth:`submit`, but the child starts on a later loop iteration.

        For calls made on the loop's thread while the loop is not running yet: the
        call starts when the loop runs.
        """
        if DETECTOR is not None:
            DETECTOR.note_call(future, fn)
        self._defer((self._start_queued, fn, args, kwargs, future, context, release))

    def pause(self) -> None:
        """Park the current child until a later loop iteration (runs on a child).

        For long CPU work done in pieces (decoding a large batch): the loop runs its
        other callbacks and I/O between two pieces.
        """
        waiter = Waiter(self)
        self.resume_later(waiter.switch, None)
        waiter.get()

    def resume_later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)``, which resumes a child, on a later iteration's budget.

        For a loop callback that may not resume a child now: when resumes are queued
        already, or this iteration's work window is spent (``_window_open()``).  Runs
        on the loop thread (a loop callback, or a child: it never switches).
        """
        self._resumes.append((fn, *args))
        self._drain_soon()

    def _window_open(self) -> bool:
        # On the hub greenlet: may children run more in this loop iteration?  Yes while
        # the time they ran in it is under WORK_BUDGET.  Only the children's time counts
        # (charged on every switch from the hub to a child), not the application's
        # callbacks (a web framework's request handling, the tasks the hub wakes):
        # deferring the driver's work behind the application's own makes more, shorter
        # loop iterations, which cost CPU and throughput, and shortens no stall of the
        # driver's.  And until the loop's next timer comes due (the last switch to a
        # child returned past it): its callback, an ``asyncio.sleep`` ending, waits for
        # the iteration to end.
        if self._marks_iterations and not self._marker_pending:
            self._marker_pending = True
            self.loop.call_soon(self._next_iteration)
        clock = self._clock
        return clock.spent < WORK_BUDGET and clock.last < clock.deadline

    def _catch_up(self, starts: bool) -> bool:
        # On the hub greenlet, about to start (``starts``) or resume a child while work
        # queued from an earlier iteration waits: that work goes first, and runs now,
        # oldest first (resumes, then starts if ``starts``), while this iteration's
        # budget lasts.  True if none of it is left.  Queued starts wait for a resume:
        # finishing operations frees their connections.  Leaving queued starts to
        # _drain would put every later start behind them too, and under steady load
        # (a web server's requests) the queue would never empty: every operation would
        # wait a loop iteration before it starts.
        resumes = self._resumes
        queue = self._queue
        while resumes or (starts and queue):
            if not self._window_open():
                return False
            entry = resumes.popleft() if resumes else queue.popleft()
            entry[0](*entry[1:])
        return True

    def _child_window_open(self) -> bool:
        # On a child: may it go on in this iteration, counting the time since the hub
        # switched to it?
        now = _perf_counter()
        clock = self._clock
        return now - self._entered + clock.spent < WORK_BUDGET and now < clock.deadline

    def _next_iteration(self) -> None:
        # A loop callback scheduled from the previous iteration (by _window_open, on
        # loops without a _LoopHook): runs before the callbacks of this iteration's I/O
        # events.
        clock = self._clock
        clock.iteration += 1
        clock.spent = 0.0
        self._marker_pending = False

    def _hook_loop(self) -> _LoopClock:
        # On an asyncio selector event loop (Tornado's too), install the loop's
        # _LoopHook (once per loop) and use its clock.  Otherwise (uvloop, the proactor
        # loop) the hub counts iterations with marker callbacks on a clock of its own.
        loop = self.loop
        selector = getattr(loop, "_selector", None)
        process_events = getattr(loop, "_process_events", None)
        if selector is None or process_events is None:
            return _LoopClock()
        self._selector = selector
        hook = getattr(loop, "_motor_hook", None)
        if hook is None:
            hook = _LoopHook(loop, process_events)
            loop._motor_hook = hook  # type: ignore[attr-defined]
            loop._process_events = hook.process_events  # type: ignore[attr-defined]
        return hook.clock

    def _hook_close(self) -> None:
        # Runs once per hub: end the hub's children when its loop is closed.  A
        # greenlet is invisible to the garbage collector (greenlet does not track it),
        # so an idle child's reference to its hub, and through it the loop, would keep
        # both alive for ever after the application dropped the loop.
        loop = self.loop
        loop_close = loop.close

        def close() -> None:
            if loop.is_running():
                loop_close()  # asyncio refuses: the hub stays as it is
                return
            try:
                self.finish_unawaited()
            finally:
                try:
                    self.close()
                finally:
                    loop_close()

        loop.close = close  # type: ignore[method-assign]

        # asyncio.run() and asyncio.Runner call shutdown_asyncgens() once every task is
        # cancelled and done, and then shut down the default executor, which calls
        # still need (DNS lookups, key derivation): the calls nobody awaits finish there.
        shutdown_asyncgens = loop.shutdown_asyncgens

        async def finish_then_shutdown_asyncgens() -> None:
            try:
                await self._finish_unawaited_running()
            finally:
                await shutdown_asyncgens()

        loop.shutdown_asyncgens = finish_then_shutdown_asyncgens  # type: ignore[method-assign]

    def _unfinished(self) -> list[asyncio.Future[Any]]:
        # The futures of this thread's calls not done yet: running, or queued to start.
        # (getattr: a child that greenlet could not end on its exited thread may linger
        # with its slots cleared.)
        me = thread_token()
        unfinished: list[asyncio.Future[Any]] = []
        for child in self._children:
            future = getattr(child, "future", None)
            if future is not None and not future.done() and child.thread is me:
                unfinished.append(future)
        unfinished.extend(
            entry[4]
            for entry in self._queue
            if entry[0] == self._start_queued and not entry[4].done()
        )
        return unfinished

    def _may_finish_unawaited(self) -> bool:
        # On the loop's thread: whether this process's hub, not closed, has calls to
        # finish, and no task of the application's is left (the current one, running
        # this, aside).
        if self._closed or self.pid != _process[0] or sys.is_finalizing():
            return False
        try:
            if self._clock.thread is not thread_token() or not self._unfinished():
                return False
        except RuntimeError:  # "greenlet is being finalized": no switch is possible
            return False
        current = asyncio.current_task(self.loop) if self.loop.is_running() else None
        return all(task.done() or task is current for task in asyncio.all_tasks(self.loop))

    async def _finish_unawaited_running(self) -> None:
        # finish_unawaited, on the running loop (from shutdown_asyncgens).
        if not self._may_finish_unawaited():
            return
        loop = self.loop
        deadline = loop.time() + UNAWAITED_TIMEOUT
        unfinished = self._unfinished()
        while unfinished:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait(unfinished, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            unfinished = self._unfinished()

    def finish_unawaited(self) -> None:
        """Let the calls nobody awaits finish before the loop closes.

        A call made without ``await`` (a write fired and forgotten, ``close()`` as Motor
        3.7.1 code calls it) may still be running, or waiting to start, when its loop
        shuts down: ``asyncio.run()`` does as soon as the main coroutine is done.  Motor
        3.7.1 ran such calls to the end in its thread pool, which ``asyncio.run()``
        waits for; cancelled with the loop, a write not yet sent would be lost.  So, if
        every task of the loop is done and calls of this hub are not, the loop runs on
        until they are, for at most :data:`UNAWAITED_TIMEOUT` seconds; :meth:`close`
        then cancels what is left.  Calls that queued for their client's admission start
        as others finish, as usual.  Under ``asyncio.run()`` (and ``asyncio.Runner``)
        this happens in ``loop.shutdown_asyncgens()``, once every task was cancelled
        and while the default executor, which calls may need (DNS lookups), still runs;
        for a loop closed otherwise, in ``loop.close()`` (here).  A loop with tasks still
        pending is not run again: what ran then would be the application's too.  Nor is
        one closed while another loop runs in its thread.
        """
        loop = self.loop
        if (
            loop.is_closed()
            or loop.is_running()
            or asyncio._get_running_loop() is not None
            or not self._may_finish_unawaited()
        ):
            return
        loop.run_until_complete(self._finish_unawaited_running())

    def close(self) -> None:
        """End every child of this hub; called when its loop is closed, after
        :meth:`finish_unawaited`.

        Operations still running (parked, their loop gone) are cancelled where they
        wait, so PyMongo's cleanup closes their connections and restores the pools;
        queued calls never start; idle children end.  Runs on the loop's thread, where
        the children were made; from another thread, only what needs no switch is done.
        """
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._deadlines.clear()
        releases = []
        for entry in [*self._queue, *self._resumes]:
            if entry[0] == self._start_queued:
                entry[4].cancel()
                if entry[6] is not None:
                    releases.append(entry[6])
        self._queue.clear()
        self._resumes.clear()
        for release in releases:
            # A queued call never starts: give back its client's admission slot.
            release()
        try:
            current = _getcurrent()
        except RuntimeError:
            # "greenlet is being finalized": an unclosed loop collected at interpreter
            # exit (BaseEventLoop.__del__).  No greenlet can be switched to any more.
            return
        idle = list(self._idle)
        self._idle.clear()
        # (getattr: see _unfinished.)
        busy = [child for child in self._children if getattr(child, "future", None) is not None]
        if isinstance(current, Child):
            self._raise_interrupt()
            return  # closed from inside a child: the others cannot be switched to here
        # Are the parked calls all this thread's, so that they end here?  Not after
        # fork(), nor when the loop last ran on another thread, which may still run
        # them: what is left of a close then is not this process's or thread's to do.
        me = thread_token()
        ended = self.pid == _process[0] and all(child.thread is me for child in busy)
        for child in busy:
            future = child.future
            if future is not None and not future.done():
                future.cancel()
            waiter = child.waiter
            # Only children of the greenlet closing the loop can be switched to from here
            # (a child that parks or ends switches to its parent): not from another
            # greenlet than the one the loop ran on (see submit).
            if (
                waiter is not None
                and waiter._child is child
                and self.pid == _process[0]
                and child.parent is current
            ):
                try:
                    waiter.throw(Cancelled())
                except greenlet.error:  # another thread: leave it to greenlet's cleanup
                    pass
        if self._finishers:
            if ended:
                self._run_finishers()
            else:
                self._finishers.clear()
        for child in idle:
            if child.parent is not current:
                continue  # greenlet ends it once it is dropped
            try:
                _switch_on_own_stack(child.throw)
            except greenlet.error:
                pass
        if self._stranded:
            self._end_stranded()
            # Idle children kept for another thread's coverage tracer (_thread_changed):
            # nothing would end them now, and a greenlet holding its hub is a cycle the
            # garbage collector cannot see; greenlet ends them once they are dropped.
            self._stranded = [c for c in self._stranded if getattr(c, "future", None)]
        self._done = None
        # An interrupt raised as the children above ended, or not yet raised on the loop.
        self._raise_interrupt()

    @property
    def closed(self) -> bool:
        """True once the hub's loop has been closed (see :meth:`close`)."""
        return self._closed

    def idle(self) -> bool:
        """True when no call is running on a child, queued or waiting to resume."""
        if self._queue or self._resumes:
            return False
        return all(child.future is None for child in self._children)

    @property
    def thread_id(self) -> int:
        """The thread that runs (or last ran) this hub's loop."""
        thread: int | None = getattr(self.loop, "_thread_id", None)
        return self._creator_thread if thread is None else thread

    def owns_loop_thread(self) -> bool:
        """May the calling thread touch the loop's selector now?  Yes on the thread
        running the loop, and on any thread while the loop runs nowhere."""
        loop = self.loop
        thread = getattr(loop, "_thread_id", None)
        if thread is not None:
            return bool(thread == threading.get_ident())
        if loop.is_running():  # a loop that does not say which thread runs it
            return self._creator_thread == threading.get_ident()
        return True

    def watch_readable(self, fd: int, callback: Callable[[], None]) -> None:
        """Call ``callback()`` on the hub greenlet whenever ``fd`` is readable.

        Until ``loop.remove_reader(fd)``.  Runs on the loop thread.  On a selector
        loop the callback runs as soon as the loop's poll reports the descriptor (see
        :class:`_LoopHook`), rather than as a loop callback later in the iteration.
        """
        selector = self._selector
        if selector is not None:
            reader = _GreenReader(callback, (), self.loop, None)
            try:
                selector.register(fd, selectors.EVENT_READ, (reader, None))
                return
            except KeyError:  # registered already, for writing: the loop's own way
                pass
        if self._native_poll:
            # Resume from the ready queue, outside the native poll (see __init__).
            self.loop.add_reader(fd, self.loop.call_soon, callback)
        else:
            self.loop.add_reader(fd, callback)

    def _defer(self, entry: tuple[Any, ...]) -> None:
        # Runs on the loop thread: queue a start for a later iteration.
        self._queue.append(entry)
        self._drain_soon()

    def _drain_soon(self) -> None:
        # Runs on the loop thread: make sure the queues are drained next iteration.
        if not self._draining:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        # Runs on the hub greenlet, early in an iteration (scheduled by the previous
        # one): the oldest queued entry runs even if earlier callbacks of the iteration
        # spent the budget (progress), the others while it lasts.  (_window_open first:
        # on loops without a _LoopHook it marks the iteration.)
        if self.pid != _process[0]:
            return  # the parent's loop, run in a child after fork(): its calls stay parked
        self._window_open()
        resumes = self._resumes
        queue = self._queue
        try:
            if resumes or queue:
                entry = resumes.popleft() if resumes else queue.popleft()
                entry[0](*entry[1:])
                self._catch_up(True)
        finally:
            # Even if an entry raised (the loop reports it): the rest stay drained.
            if resumes or queue:
                self.loop.call_soon(self._drain)
            else:
                self._draining = False

    def _start_queued(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: OpFuture,
        context: contextvars.Context,
        release: Callable[[], None] | None,
    ) -> None:
        # Runs on the hub greenlet.
        if not future.done():
            self._start(_getcurrent(), fn, args, kwargs, future, context, release)
        elif release is not None:  # cancelled while queued: never runs
            release()

    def _thread_changed(self) -> None:
        """The loop runs in another thread than the one its children belong to.

        A loop may run in one thread, then in another: set up on the main thread, then
        served by ``run_forever()`` in a thread of its own, and back.  A greenlet never
        changes threads.  So the other threads' idle children are dropped (greenlet
        ends them on their thread; under coverage.py's tracer they are ended with the
        stranded ones instead), their busy ones stranded (:meth:`_strand`), and the
        stranded children of this thread, back again, ended.  Runs on the loop's
        thread, from the first iteration there (:class:`_LoopHook`) or the first start
        (:meth:`_adopt`, on loops without the hook).
        """
        me = thread_token()
        self._clock.thread = me
        idle = self._idle
        if _coverage_stacks:
            # Ended by greenlet, whenever it collects them, they would pop the thread's
            # own call stack in coverage.py's tracer (see _switch_on_own_stack): end
            # them from their thread, through that, with the stranded children.
            self._stranded.extend(child for child in idle if child.thread is not me)
        idle[:] = [child for child in idle if child.thread is me]
        for child in list(self._children):
            # getattr: a child that greenlet could not end on its exited thread may
            # linger with its slots cleared; it runs nothing.
            if getattr(child, "future", None) is not None and child.thread is not me:
                self._strand(child)
        if self._stranded:
            self._end_stranded()

    def _strand(self, child: Child) -> None:
        """Fail the operation of ``child``, a greenlet of a thread that no longer runs
        the loop, and give back its admission turn.

        The child cannot be resumed from this thread.  What it holds in the pools (a
        checked-out connection, a pool slot, a slot for opening a connection) goes back
        to them now, the connections closed (:attr:`reclaim_stranded`).  The greenlet
        itself lingers until its own thread runs or closes the loop again
        (:meth:`_end_stranded`), for good if that thread has exited.
        """
        from motor.errors import WrongThreadError

        waiter = child.waiter
        if waiter is not None:  # nothing may resume it here any more
            waiter.abandoned = True
            waiter._child = None
            child.waiter = None
            self._deadlines.pop(waiter, None)
        self._children.discard(child)
        self._stranded.append(child)
        release = child.release
        if release is not None:
            child.release = None
            release()
        future = child.future
        child.future = None  # runs nothing any more (see _serve)
        if future is not None:
            future._motor_child = None  # type: ignore[attr-defined]
        if future is not None and not future.done():
            future.set_exception(
                WrongThreadError(
                    "This operation started while another thread ran its event loop, and "
                    "cannot continue in the thread that runs the loop now (a greenlet never "
                    "changes threads): let operations finish before a loop moves to "
                    "another thread"
                )
            )
        self._forget_fd_wait(child)
        reclaim = Hub.reclaim_stranded
        if reclaim is not None:
            repay = reclaim(child)
            if repay is not None:
                self._loans[child] = repay

    def _forget_fd_wait(self, child: Child) -> None:
        """Stop the loop watching the descriptor a stranded child waits on in
        :meth:`wait_fd` (a send waiting for its socket to drain, a connect): its
        connection is about to be closed (:attr:`reclaim_stranded`), and the number of a
        closed descriptor goes to the next socket, which a registration left behind
        would hide from the loop (asyncio) or crash it (uvloop)."""
        if self.loop.is_closed():
            return
        code = Hub.wait_fd.__code__
        frame = child.gr_frame
        while frame is not None:
            if frame.f_code is code:
                values = frame.f_locals
                remove, fd = values.get("remove"), values.get("fd")
                if remove is not None and fd is not None:
                    remove(fd)
            frame = frame.f_back

    def _end_stranded(self) -> None:
        """End the stranded children that the calling thread can switch to: PyMongo's
        cleanup runs (a connection it was reading from is closed) as ``GreenletExit``
        unwinds them."""
        stranded = self._stranded
        self._stranded = []
        me = thread_token()
        for child in stranded:
            if child.thread is not me:
                self._stranded.append(child)
                continue
            try:
                _switch_on_own_stack(child.throw)
            except greenlet.error:
                continue
            if child:  # parked again by its cleanup: ended by close() at the latest
                self._stranded.append(child)

    def _adopt(self, child: Child, parent: greenlet.greenlet) -> Child:
        """An idle child that ``parent`` (the greenlet running the loop now) can run:
        ``child``, or a new one if ``child`` belongs to another thread."""
        try:
            child.parent = parent
            return child
        except ValueError:  # "parent cannot be on a different thread"
            pass
        self._children.discard(child)
        self._thread_changed()
        return self._new_child(parent)

    def _new_child(self, parent: greenlet.greenlet) -> Child:
        """A new child of ``parent``, started and parked for its first call."""
        global _coverage_stacks
        if not _coverage_stacks and _own_stacks_needed(sys.gettrace()):
            _coverage_stacks = True
        child = Child(self, parent)
        self._children.add(child)
        # Starts _serve, which parks at once for its first call.
        _switch_on_own_stack(child.switch)
        return child

    def _start(
        self,
        parent: greenlet.greenlet,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        future: OpFuture,
        context: contextvars.Context,
        release: Callable[[], None] | None,
    ) -> None:
        # Runs on the hub greenlet.
        idle = self._idle
        if idle:
            child = idle.pop()
            if child.parent is not parent:
                child = self._adopt(child, parent)
        else:
            if self._clock.thread is not thread_token():
                # The loop's first start in another thread, with no idle child to tell
                # (_adopt), on a loop without the hook (_LoopHook tells at once).
                self._thread_changed()
            child = self._new_child(parent)
        child.gr_context = context
        child.future = future
        child.release = release
        future._motor_child = child
        # The child's time is charged to the iteration's work budget (_window_open).
        self._entered = started = _perf_counter()
        if _coverage_stacks:
            _switch_on_own_stack(child.switch, fn, args, kwargs, future)
        else:
            child.switch(fn, args, kwargs, future)  # the release is child.release
        clock = self._clock
        clock.last = ended = _perf_counter()
        clock.spent += ended - started
        if self._done is not None:
            self._run_finished()

    def _run_finished(self) -> None:
        """Run the done callbacks of the future a child just resolved.

        Runs on the hub greenlet, right after a switch into a child returned.  asyncio
        would schedule them for the next loop iteration; running them here wakes the
        task awaiting the operation in the iteration that completed it, which saves a
        loop iteration per operation.  When the switch was made from inside a task's
        step, another task cannot be stepped there: the callbacks are scheduled as
        usual.  So they are in asyncio's debug mode, which times the loop's callbacks:
        the task's step is then one, and a slow one is reported as the task's ("Executing
        <Task ...> took"), not missed or charged to a callback of Motor's.  Errors are
        reported like those of loop callbacks.
        """
        future, callbacks = self._done  # type: ignore[misc]
        self._done = None
        loop = self.loop
        if _current_task(loop) is not None or loop.get_debug():
            for fn, context in callbacks:
                loop.call_soon(fn, future, context=context)
            return
        for fn, context in callbacks:
            try:
                context.run(fn, future)
            except (SystemExit, KeyboardInterrupt):
                # It leaves the loop, as from a loop callback; the callbacks after it
                # (the awaiting task's wake-up among them) run as asyncio would run
                # them, each on its own, or the task would never learn its result.
                # (Found again here rather than counted: this loop runs per operation.)
                index = next(i for i, (f, c) in enumerate(callbacks) if f is fn and c is context)
                for later, later_context in callbacks[index + 1 :]:
                    loop.call_soon(later, future, context=later_context)
                raise
            except BaseException as exc:
                loop.call_exception_handler(
                    {
                        "message": f"Exception in callback {fn!r}",
                        "exception": exc,
                        "future": future,
                    }
                )

    def cancel_child(self, child: Child, future: asyncio.Future[Any]) -> None:
        """Stop ``child`` at its current wait if it still runs ``future``'s call.

        Runs on the hub greenlet.  A child not parked on a waiter cannot be observed
        from a loop callback: it would be running, and notices nothing until it waits.
        """
        if child.future is future and self.pid == _process[0]:
            # (After fork(), a call the parent's loop parked stays the parent's: woken
            # in the child it would run PyMongo's cleanup there, killCursors and all.)
            waiter = child.waiter
            if waiter is not None:
                waiter.throw(Cancelled())

    # -- waiting (all of these run on a child) ------------------------------------

    def wait_fd(self, fd: int, write: bool, timeout: float | None) -> bool:
        """Park until ``fd`` is ready; False when ``timeout`` (seconds) expires first."""
        loop = self.loop
        waiter = Waiter(self)
        # Stop watching at the first report, and resume within the loop iteration's work
        # budget, like a green reader (a hundred sends waiting for their sockets to drain
        # are resumed over several iterations, not in one).
        remove = loop.remove_writer if write else loop.remove_reader
        native_poll = self._native_poll

        def on_ready() -> None:
            remove(fd)
            if native_poll:
                # From the ready queue, outside the native poll (see __init__).
                loop.call_soon(waiter.switch_budgeted, True)
            else:
                waiter.switch_budgeted(True)

        if write:
            loop.add_writer(fd, on_ready)
        else:
            loop.add_reader(fd, on_ready)
        try:
            ready: bool = waiter.get(timeout)
            return ready
        finally:
            # (Stranded, the descriptor was forgotten already, and may be another
            # socket's now: see _strand.)
            if not waiter.abandoned:
                remove(fd)

    def _set_sweeper(self, deadline: float) -> None:
        # Runs on the loop thread: run the sweep at ``deadline``, the earliest.
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_at = deadline
        delay = max(deadline - _monotonic(), 0)
        if self._native_poll:
            # From the ready queue, as every resume on such a loop (see __init__).
            self._sweeper = self.loop.call_later(delay, self.loop.call_soon, self._sweep)
        else:
            self._sweeper = self.loop.call_later(delay, self._sweep)

    def _sweep(self) -> None:
        # Runs on the hub greenlet when the earliest deadline falls due: expire the
        # timed waits due by now, and set the timer for the next deadline.
        self._sweeper = None
        self._sweep_at = math.inf
        deadlines = self._deadlines
        now = _monotonic() + SWEEP_SLACK
        for waiter in [w for w, deadline in deadlines.items() if deadline <= now]:
            if deadlines.pop(waiter, None) is not None:
                # Within the work budget: many waits may expire together.
                waiter.switch_budgeted(False)
        if deadlines:
            earliest = min(deadlines.values())
            if earliest < self._sweep_at:
                self._set_sweeper(earliest)

    def wait_future(self, future: asyncio.Future[T], timeout: float | None = None) -> T:
        """Park until an asyncio future on this loop is done; return its result.

        Raises :class:`TimeoutError` when ``timeout`` expires first (the future is
        cancelled).
        """
        if not future.done():
            waiter = Waiter(self)

            def wake(_: object) -> None:
                waiter.switch(True)

            future.add_done_callback(wake)
            try:
                done = waiter.get(timeout)
            finally:
                future.remove_done_callback(wake)
            if not done:
                future.cancel()
                raise TimeoutError("timed out")
        return future.result()

    def run_in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in the loop's default executor, with a copy of the
        calling child's context, and park until it is done; return its result (runs on
        a child).  For blocking calls and long C calls that release the GIL."""
        run = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return self.wait_future(self.loop.run_in_executor(None, run))

    def wait_job_to_end(self, job: concurrent.futures.Future[T]) -> T:
        """Park until ``job`` (submitted to an executor) is done, even if the call is
        cancelled meanwhile; return its result (runs on a child).

        For a job that uses memory the call's cleanup frees (libmongocrypt's context):
        a cancelled call waits for the job, then raises its cancellation.  An exception
        that ends the child otherwise (its loop closing) waits for the job without the
        loop, blocking, before it propagates.
        """
        future = asyncio.wrap_future(job, loop=self.loop)
        cancelled: BaseException | None = None
        while True:
            try:
                result = self.wait_future(future)
            except Cancelled as exc:
                if not future.done():
                    cancelled = exc
                    continue
                raise
            except BaseException:
                concurrent.futures.wait([job])
                raise
            if cancelled is not None:
                raise cancelled
            return result

    def sleep(self, seconds: float) -> None:
        """Park for ``seconds``."""
        Waiter(self).get(max(seconds, 0))


_hubs_lock = threading.Lock()
#: This process's id, cached (refreshed in a child after fork()): a hub whose ``pid``
#: differs is the parent's, and its parked calls are never resumed in this process.
#: The pool's fork check reads it too (motor.green.pool._green_os).
_process = [os.getpid()]
#: Hubs that had calls to finish on close (Hub.finish_on_close).
_finishing_hubs: weakref.WeakSet[Hub] = weakref.WeakSet()


@atexit.register
def _finish_at_exit() -> None:
    # A loop stopped but never closed (IOLoop.run_sync(), loop.run_until_complete()):
    # the calls that must complete end as they would when it closed.  Only on the
    # loop's thread; PyMongo's own exit handler, registered first, runs after this.
    with _hubs_lock:
        hubs = list(_finishing_hubs)
    for hub in hubs:
        loop = hub.loop
        if (
            hub._finishers
            and not hub._closed
            and not loop.is_closed()
            and not loop.is_running()
            and hub.pid == _process[0]
            and hub.thread_id == threading.get_ident()
        ):
            hub.close()


def _after_fork_in_child() -> None:
    # Another thread may have held the lock at fork(); the child's hubs are new ones.
    global _hubs_lock
    _hubs_lock = threading.Lock()
    _process[0] = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_hub(loop: asyncio.AbstractEventLoop) -> Hub:
    """Return the hub of ``loop``, creating it on first use."""
    hub: Hub | None = getattr(loop, "_motor_hub", None)
    if hub is None or hub.pid != _process[0]:
        with _hubs_lock:
            hub = getattr(loop, "_motor_hub", None)
            if hub is None or hub.pid != _process[0]:
                hub = Hub(loop)
                loop._motor_hub = hub  # type: ignore[attr-defined]
    return hub


def current_child() -> Child | None:
    """The child greenlet running now, if this code runs in one on its loop's thread."""
    current = _getcurrent()
    if isinstance(current, Child):
        return current
    return None


def in_child() -> bool:
    """True when the calling code runs in a child greenlet and may park."""
    return isinstance(_getcurrent(), Child)


def refuse_to_block(what: str) -> None:
    """Raise :class:`~motor.errors.WouldBlockError` if this thread runs an event loop.

    Called by the green primitives just before they would block the calling thread
    (outside a child greenlet): that is right for PyMongo's background threads and for
    code with no loop running, but on a running loop's thread it would stall every task
    of the loop, so the wait is refused instead.  ``what`` names the wait.
    """
    if _get_running_loop() is not None:
        from motor.errors import WouldBlockError

        raise WouldBlockError(
            f"Waiting for {what} here would block the running event loop: this code runs "
            "on the loop's thread outside a Motor operation.  Use Motor's asynchronous "
            "methods (with await) for anything that waits for the server."
        )
