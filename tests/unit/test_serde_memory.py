"""JSON kept for a while (a run's stream events) holds no more memory than its own size."""

from __future__ import annotations

import tracemalloc

from server.serde import dumps


def _held(values: list[object]) -> tuple[int, int]:
    """Bytes allocated by dumping every value and keeping the results, and their total size."""
    tracing = tracemalloc.is_tracing()  # PYTHONTRACEMALLOC: leave it on
    if not tracing:
        tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [dumps(value) for value in values]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    return held, sum(len(data) for data in kept)


def test_small_results_hold_about_their_size() -> None:
    # orjson alone: 4 KiB each, 4 MB for these 1,000 events of about 20 bytes.
    held, size = _held([{"n": index, "ok": True} for index in range(1000)])
    assert held < 100 * 1000, (held, size)  # a bytes object's header plus its data


def test_results_of_a_few_kilobytes_hold_about_their_size() -> None:
    # orjson alone: about 8 KiB each for 3 KB of JSON.
    held, size = _held([{"n": index, "text": "x" * 3000} for index in range(200)])
    assert held < size * 1.2, (held, size)
