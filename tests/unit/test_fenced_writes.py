"""A run's last checkpoint writes and its end as one statement (``FencedWrites.ending_with``):
Postgres's own placeholders, numbered once per parameter, the function's arguments last, and
``None`` for writes that one statement cannot make. Executed against Postgres by
``tests/integration/test_held_writes.py``."""

from __future__ import annotations

import re
from typing import Any

from state.checkpoint_writes import CHECKPOINT, MAX_BATCH, WRITES_KEEP, FencedWrites
from state.fencing import RunFence

FENCE = RunFence("5f0c1e7e-3d6b-4bb4-9d27-4a3a2f0b6c11", 7)
THREAD = "0b9a3a58-8f7e-4c50-a7a2-2a1f3c6f9d01"
_CTES = ("w0_0", "w0_1", "w1_0", "w2_0", "w2_1")
"""The write CTEs of a checkpoint (its blobs, its row), a task's writes, a checkpoint."""


def _checkpoint(checkpoint_id: str) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {
        "thread_id": THREAD,
        "ns": "",
        "channels": [],
        "versions": [],
        "types": [],
        "blobs": [],
        "checkpoint_id": checkpoint_id,
        "parent_id": None,
        "checkpoint": b"{}",
        "metadata": b"{}",
    }
    return CHECKPOINT, params


def _task_writes(checkpoint_id: str, task_id: str) -> tuple[str, dict[str, Any]]:
    params = {
        "thread_id": THREAD,
        "ns": "",
        "checkpoint_id": checkpoint_id,
        "task_id": task_id,
        "task_path": "~__pregel_pull, bump",
        "idxs": [0],
        "channels": ["n"],
        "types": ["msgpack"],
        "blobs": [b"\x01"],
    }
    return WRITES_KEEP, params


def test_the_writes_and_the_call_are_one_statement_in_numbered_placeholders() -> None:
    writes = [_checkpoint("1"), _task_writes("1", "t1"), _checkpoint("2")]
    made = FencedWrites(FENCE, writes).ending_with("finish_it", ("a", 2))
    assert made is not None
    sql, params = made
    assert "%(" not in sql and "%s" not in sql
    numbers = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    assert numbers == set(range(1, len(params) + 1))  # each parameter sent once, all used
    last = len(params)
    assert f"\nSELECT * FROM finish_it(${last - 1}, ${last}) WHERE " in sql
    assert params[-2:] == ["a", 2]
    # The call runs once every write is made: each write's CTEs are read in its filter.
    made = sql.rsplit(" WHERE ", 1)[1]
    assert made == " + ".join(f"(SELECT count(*) FROM {cte})" for cte in _CTES) + " >= 0"
    # The fence comes first: it locks the thread, then checks (and locks) the run.
    assert "staffgraph_check_fence($1, $2)" in sql and params[:2] == [FENCE.run_id, FENCE.token]
    assert sql.index("FOR UPDATE") < sql.index("INSERT")
    # Each write's own values once: the lock names the first write's thread id, not a copy.
    assert params.count(THREAD) == len(writes)
    assert params.count("t1") == 1 and params.count("2") == 1


def test_writes_one_statement_cannot_make_are_left_to_the_pipeline() -> None:
    too_many = [_checkpoint(str(i)) for i in range(MAX_BATCH + 1)]
    assert FencedWrites(FENCE, too_many).ending_with("finish_it", ()) is None
    same_rows = [_checkpoint("1"), _checkpoint("1")]
    assert FencedWrites(FENCE, same_rows).ending_with("finish_it", ()) is None
    assert FencedWrites(FENCE, []).ending_with("finish_it", ()) is None
    statements = FencedWrites(FENCE, same_rows).statements_after_thread_lock()
    assert statements[0] == (
        "SELECT 1 FROM (SELECT count(*) FROM (SELECT 1 FROM threads WHERE thread_id = "
        "%(thread_id)s FOR UPDATE) AS thread) AS locked",
        {"thread_id": THREAD},
    )
    assert len(statements) == 3
