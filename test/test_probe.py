"""The loop-stall probe every framework test runs with (``test/framework.py``)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from motor import run_green
from test.framework import Framework, LoopStalled


async def test_the_probe_counts_the_loop_s_work_but_not_the_collector_s(fw: Framework) -> None:
    probe = fw.probe
    # A heap that the collector takes milliseconds to walk.
    junk = [[i] for i in range(400_000)]
    await probe.settle()

    started = time.thread_time()
    gc.collect()
    collected = time.thread_time() - started
    await asyncio.sleep(0.005)
    assert collected > 0.002, collected
    assert probe.max_gc >= collected * 0.8, (probe.max_gc, collected)
    assert probe.max_busy < collected / 2, (probe.max_busy, collected)

    probe.reset()
    spin_until = time.thread_time() + 0.02
    while time.thread_time() < spin_until:
        pass
    await asyncio.sleep(0.005)
    assert probe.max_busy >= 0.02, probe.max_busy
    del junk
    probe.reset()  # the spin above is this test's, not a stall to report


def _spin(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def test_uncounted_blocks_are_left_out_of_the_gap_they_fall_in(fw: Framework) -> None:
    probe = fw.probe
    await probe.settle()
    with probe.uncounted():
        _spin(0.02)
    _spin(0.003)
    await asyncio.sleep(0.005)
    # The gap's 23 ms of CPU, less the uncounted 20 ms.
    assert 0.003 <= probe.max_busy < 0.01, probe.max_busy

    # A collection inside the block is left out once (as the collector's), not twice.
    junk = [[i] for i in range(400_000)]
    probe.reset()
    with probe.uncounted():
        started = time.thread_time()
        gc.collect()
        collected = time.thread_time() - started
    _spin(0.003)
    await asyncio.sleep(0.005)
    assert collected > 0.003, collected
    assert probe.max_busy >= 0.003, (probe.max_busy, collected)
    del junk
    probe.reset()


async def test_the_driver_s_share_is_what_its_children_ran(fw: Framework) -> None:
    """A child's run counts as the driver's share of its gap (``max_driver``, and
    ``max_slice`` for one run); the application's own work between two ticks does not."""
    probe = fw.probe
    await probe.settle()
    _spin(0.02)  # the application's work, in the same gap as the child's
    await run_green(_spin, 0.004)
    await asyncio.sleep(0.005)
    assert probe.max_busy >= 0.024, probe.max_busy
    assert 0.004 <= probe.max_driver < 0.015, probe.max_driver
    assert 0.004 <= probe.max_slice <= probe.max_driver, (probe.max_slice, probe.max_driver)

    # The second busiest gap: one gap that stands alone is left out.
    probe.reset()
    _spin(0.02)
    await asyncio.sleep(0.005)
    _spin(0.006)
    await asyncio.sleep(0.005)
    assert probe.max_busy >= 0.02, probe.max_busy
    assert 0.006 <= probe.second_busy < 0.015, probe.second_busy
    assert probe.max_driver < 0.004, probe.max_driver
    probe.reset()  # the spins above are this test's, not stalls to report


async def test_a_stall_bound_holds_the_driver_s_gaps_and_any_stall_that_recurs(
    fw: Framework,
) -> None:
    """``assert_below``: the driver's children within the bound in every gap, and the
    loop's thread within it in all gaps but one, whoever's work it was."""
    probe = fw.probe
    await probe.settle()
    _spin(0.02)  # one busy gap of the application's (or one the machine stretched)
    await asyncio.sleep(0.005)
    await run_green(_spin, 0.002)
    await asyncio.sleep(0.005)
    probe.assert_below(0.01)

    # The driver's children over the bound in one gap.
    probe.reset()
    await run_green(_spin, 0.012)
    await asyncio.sleep(0.005)
    with pytest.raises(LoopStalled, match="the driver's children:"):
        probe.assert_below(0.01)

    # Any code over the bound in two gaps.
    probe.reset()
    for _ in range(2):
        _spin(0.012)
        await asyncio.sleep(0.005)
    assert probe.max_driver < 0.01, probe.max_driver
    with pytest.raises(LoopStalled, match="a recurring stall:"):
        probe.assert_below(0.01)
    probe.reset()  # the spins above are this test's, not stalls to report
