"""The server's garbage collection settings (``server.heap``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from server.heap import YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Put the test process's collector back as it was."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_what_is_alive_and_collects_young_objects_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    alive = [[n] for n in range(1000)]  # containers the collector tracks

    frozen = settle_heap()

    assert frozen == gc.get_freeze_count() >= len(alive)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    later = [[n] for n in range(1000)]
    assert settle_heap() >= frozen + len(later)  # again: what was created since


@pytest.mark.usefixtures("restored_gc")
def test_a_collector_the_operator_turned_off_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    settle_heap()
    assert gc.get_threshold() == (0, 10, 10)
