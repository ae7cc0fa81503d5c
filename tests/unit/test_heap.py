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


def _collected(obj: object) -> bool:
    """Whether the collector still examines ``obj`` (frozen objects are in no generation)."""
    return any(tracked is obj for tracked in gc.get_objects())


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_what_is_alive_and_collects_young_objects_less_often() -> None:
    gc.set_threshold(700, 10, 10)
    alive = [[n] for n in range(1000)]  # containers the collector tracks
    assert _collected(alive)

    frozen = settle_heap()

    assert frozen >= len(alive)
    assert not _collected(alive) and not _collected(alive[-1])
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    later = [[n] for n in range(1000)]
    assert _collected(later)
    settle_heap()  # again: what was created since
    assert not _collected(later)


@pytest.mark.usefixtures("restored_gc")
def test_a_collector_the_operator_turned_off_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    settle_heap()
    assert gc.get_threshold() == (0, 10, 10)
