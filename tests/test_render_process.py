"""A render process's child runs below its parent's CPU priority by the ``nice`` it was
given, so that where the cores are busy the parent's own work gets them first."""

from __future__ import annotations

import os

import pytest

from sendas.render_process import RenderProcess, Work
from sendas.sandbox import Limits


def _setup(arg: None) -> None:
    return None


def _own_priority(state: None, context: None, item: int, limits: Limits) -> int:
    """What the child reads of its own priority (module level: the child imports it)."""
    return os.getpriority(os.PRIO_PROCESS, 0)


def _overtime(item: int, limits: Limits) -> int:
    raise AssertionError("no item here runs out of time")


@pytest.mark.parametrize("nice", [0, 7])
def test_the_child_runs_below_its_parent_by_nice(nice: int) -> None:
    parent = os.getpriority(os.PRIO_PROCESS, 0)
    process = RenderProcess(Work(_setup, None, _own_priority, _overtime), Limits(), nice)
    try:
        assert process.run([1, 2]) == [min(19, parent + nice)] * 2
    finally:
        process.stop()
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent  # the parent's own is unchanged
