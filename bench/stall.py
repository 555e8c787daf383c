"""Where do the event loop's longest iterations come from?  (A diagnostic, not a benchmark.)

Runs ``find_one`` with C concurrent tasks (default 100) on this checkout's Motor
(asyncio or Tornado) against the canned server, with a 1 ms ticker (as in
``bench/compare.py``), and instruments every loop iteration:

* *work*: from the selector's return to the end of the iteration (callbacks run);
* *cpu*: the loop thread's CPU time over the same span (work much above cpu means the
  process was descheduled, not that it computed);
* *gc*: time inside the garbage collector (``gc.callbacks``), with the generation;
* counts of ready events, children started and children resumed.

It prints the distribution of iteration work, the longest iterations with their
attribution, and the ticker's longest gaps with the iterations they span.

Usage (from the repository root)::

    .venv/bin/python bench/stall.py [--framework tornado] [--ops 8000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for path in (str(REPO), str(BENCH_DIR)):
    if path not in sys.path:
        sys.path.insert(0, path)

from servers import canned_server, server_cpus  # noqa: E402

from motor.green import hub as hub_module  # noqa: E402

_perf = time.perf_counter
_thread_time = time.thread_time

TICK = 0.001


class Recorder:
    """Per-iteration records of one asyncio loop; see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # (start, end, cpu, gc, gc_gen, events, starts, resumes, handles)
        self.iterations: list[tuple[float, ...]] = []
        self.gaps: list[tuple[float, float]] = []  # (ticker wake time, gap)
        self.recording = False
        self._events = 0
        self._start = 0.0
        self._cpu = 0.0
        self._gc = 0.0
        self._gc_gen = -1
        self._gc_t0 = 0.0
        self.starts = 0
        self.resumes = 0
        self._restore: list[Callable[[], None]] = []

    # -- hooks -----------------------------------------------------------------

    def install(self) -> None:
        loop: Any = self.loop
        selector = loop._selector
        select = selector.select
        run_once = loop._run_once

        def timed_select(timeout: float | None = None) -> Any:
            events = select(timeout)
            self._start = _perf()
            self._cpu = _thread_time()
            self._events = len(events)
            self._gc = 0.0
            self._gc_gen = -1
            self.starts = self.resumes = 0
            return events

        def timed_run_once() -> None:
            handles = len(loop._ready)
            run_once()
            if self.recording:
                end = _perf()
                self.iterations.append(
                    (
                        self._start,
                        end,
                        _thread_time() - self._cpu,
                        self._gc,
                        self._gc_gen,
                        self._events,
                        self.starts,
                        self.resumes,
                        handles,
                    )
                )

        selector.select = timed_select
        loop._run_once = timed_run_once
        self._restore.append(lambda: setattr(selector, "select", select))
        self._restore.append(lambda: delattr(loop, "_run_once"))

        hub_start = hub_module.Hub._start
        waiter_switch = hub_module.Waiter.switch

        def counted_start(hub: Any, *args: Any) -> None:
            self.starts += 1
            hub_start(hub, *args)

        def counted_switch(waiter: Any, value: Any = None) -> None:
            if waiter._child is not None:
                self.resumes += 1
            waiter_switch(waiter, value)

        hub_module.Hub._start = counted_start  # type: ignore[method-assign,assignment]
        hub_module.Waiter.switch = counted_switch  # type: ignore[method-assign,assignment]
        self._restore.append(lambda: setattr(hub_module.Hub, "_start", hub_start))
        self._restore.append(lambda: setattr(hub_module.Waiter, "switch", waiter_switch))

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_t0 = _perf()
            else:
                self._gc += _perf() - self._gc_t0
                self._gc_gen = max(self._gc_gen, info["generation"])

        gc.callbacks.append(on_gc)
        self._restore.append(lambda: gc.callbacks.remove(on_gc))

    def sample_long_iterations(self, after: float = 0.002) -> None:
        """Record the Python stack every 0.5 ms of CPU once an iteration runs ``after`` s."""
        import signal
        import traceback

        self.samples: list[tuple[float, str]] = []

        def on_prof(signum: int, frame: Any) -> None:
            now = _perf()
            if self.recording and now - self._start > after and len(self.samples) < 50:
                stack = "".join(traceback.format_stack(frame, limit=12))
                self.samples.append((now - self._start, stack))

        signal.signal(signal.SIGPROF, on_prof)
        signal.setitimer(signal.ITIMER_PROF, 0.0005, 0.0005)

        def stop() -> None:
            signal.setitimer(signal.ITIMER_PROF, 0, 0)

        self._restore.append(stop)

    def uninstall(self) -> None:
        while self._restore:
            self._restore.pop()()

    async def ticker(self) -> None:
        last = _perf()
        while True:
            await asyncio.sleep(TICK)
            now = _perf()
            if self.recording:
                self.gaps.append((now, now - last))
            last = now


def fmt_iteration(rec: tuple[float, ...], t0: float) -> str:
    start, end, cpu, gct, gen, events, starts, resumes, handles = rec
    gc_text = f" gc{int(gen)} {gct * 1e3:.2f}" if gen >= 0 else ""
    return (
        f"t={(start - t0) * 1e3:8.1f} ms  work {(end - start) * 1e3:5.2f} ms  "
        f"cpu {cpu * 1e3:5.2f}{gc_text}  events {int(events):3d}  handles {int(handles):3d}  "
        f"starts {int(starts):3d}  resumes {int(resumes):3d}"
    )


def report(rec: Recorder, top: int) -> dict[str, float]:
    its = rec.iterations
    works = sorted(end - start for start, end, *_ in its)
    t0 = its[0][0]
    q = statistics.quantiles(works, n=1000)
    print(
        f"  iterations {len(its)}: work p50 {q[499] * 1e3:.3f} ms, p99 {q[989] * 1e3:.3f}, "
        f"p99.9 {q[998] * 1e3:.3f}, max {works[-1] * 1e3:.3f}"
    )
    longest = sorted(its, key=lambda r: r[1] - r[0], reverse=True)[:top]
    print("  longest iterations:")
    for r in longest:
        print("    " + fmt_iteration(r, t0))
    gaps = sorted(rec.gaps, key=lambda g: g[1], reverse=True)[:top]
    print("  longest ticker gaps (and the iterations in them):")
    for wake, gap in gaps:
        print(f"    gap {gap * 1e3:.2f} ms ending t={(wake - t0) * 1e3:.1f} ms")
        for r in its:
            if r[1] > wake - gap and r[0] < wake:
                print("      " + fmt_iteration(r, t0))
    return {"p99": q[989], "max": works[-1], "gap": gaps[0][1] if gaps else 0.0}


async def workload(client: Any, concurrency: int, ops: int) -> None:
    coll = client.bench.small
    remaining = ops

    async def one_task() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await coll.find_one({})

    await asyncio.gather(*(one_task() for _ in range(concurrency)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("asyncio", "tornado"), default="asyncio")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--ops", type=int, default=8000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after warm-up")
    parser.add_argument(
        "--budget", type=float, help="the hub's work budget per iteration, ms (to compare)"
    )
    parser.add_argument(
        "--sample",
        action="store_true",
        help="print Python stacks sampled inside iterations longer than 2 ms",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no per-iteration instrumentation: only throughput and the ticker's gaps",
    )
    args = parser.parse_args()
    if args.budget is not None:
        hub_module.WORK_BUDGET = args.budget / 1e3

    with canned_server(cpus=server_cpus()) as server:
        if args.framework == "tornado":
            from tornado.ioloop import IOLoop

            from motor.motor_tornado import MotorClient as Client

            io_loop = IOLoop(make_current=False)
            loop = io_loop.asyncio_loop  # type: ignore[attr-defined]

            def run(factory: Callable[[], Any]) -> Any:
                return io_loop.run_sync(factory)

        else:
            from motor.motor_asyncio import AsyncIOMotorClient as Client  # type: ignore[assignment]

            loop = asyncio.new_event_loop()

            def run(factory: Callable[[], Any]) -> Any:
                return loop.run_until_complete(factory())

        async def create() -> Any:
            return Client(server.uri, maxPoolSize=100)

        client = run(create)
        run(lambda: workload(client, args.concurrency, 1000))  # warm-up
        if args.freeze:
            gc.freeze()
        rec = Recorder(loop)
        if not args.plain:
            rec.install()
        if args.sample:
            rec.sample_long_iterations()
        summary = []
        try:
            for i in range(args.runs):
                gc.collect()

                async def timed() -> float:
                    ticker = asyncio.ensure_future(rec.ticker())
                    await asyncio.sleep(0)
                    rec.iterations.clear()
                    rec.gaps.clear()
                    rec.recording = True
                    t = _perf()
                    await workload(client, args.concurrency, args.ops)
                    wall = _perf() - t
                    rec.recording = False
                    ticker.cancel()
                    return wall

                wall = run(timed)
                print(
                    f"run {i + 1}: {args.framework} C={args.concurrency}: "
                    f"{args.ops / wall:,.0f} ops/s"
                )
                if args.plain:
                    gap = max(g for _, g in rec.gaps)
                    print(f"  longest ticker gap {gap * 1e3:.2f} ms")
                    summary.append({"p99": 0.0, "max": 0.0, "gap": gap, "rate": args.ops / wall})
                else:
                    summary.append(dict(report(rec, args.top), rate=args.ops / wall))
        finally:
            rec.uninstall()
            run(lambda: asyncio.sleep(0))
            client.close()
    for at, stack in getattr(rec, "samples", []):
        print(f"-- sampled {at * 1e3:.2f} ms into an iteration:\n{stack}")
    print(
        "summary: ops/s "
        + ", ".join(f"{s['rate']:,.0f}" for s in summary)
        + "; p99 "
        + ", ".join(f"{s['p99'] * 1e3:.2f}" for s in summary)
        + " ms; max iteration "
        + ", ".join(f"{s['max'] * 1e3:.2f}" for s in summary)
        + " ms; longest gap "
        + ", ".join(f"{s['gap'] * 1e3:.2f}" for s in summary)
        + " ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
