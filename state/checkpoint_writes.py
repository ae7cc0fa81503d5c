"""The checkpointer's writes in SQL, and the batching of a run's writes into one statement.

A checkpoint (its new blobs with it) or a task's writes is one statement: one round trip and
one implicit transaction, rather than a statement per row. Inside a run the rows are selected
from the lease fence (:mod:`state.fencing`), a function that fails when the run's lease is
lost, so a worker that lost its run writes nothing.

The writes a run makes in one turn of the event loop go to Postgres together, as one statement
(each write a CTE, all behind one lease check): one round trip and one transaction. LangGraph
saves a checkpoint and the pending writes of the step before it at the same moment (each in a
task of its own), so a step's two writes cost one statement, one commit and one pool checkout
instead of two. Either all of them land or none does. (A pipeline of the same statements in one
transaction cost more client CPU than it saved: psycopg's pipeline machinery is heavy.)
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg_pool import AsyncConnectionPool

from state.fencing import RUN_FENCE, RunFence, lease_lost_as
from state.retry import retrying

__all__ = [
    "CHECKPOINT",
    "MAX_BATCH",
    "FencedWrites",
    "WRITES_KEEP",
    "WRITES_REPLACE",
    "Statement",
    "WriteBatcher",
    "execute",
    "fenced_statements",
]

# The tables and conflict rules are LangGraph's (its Postgres saver's schema); only the number
# of statements differs. The arrays travel in binary (``%b``): as text, psycopg quotes every
# element with a regular expression and hex-escapes every blob; they are packed by
# state.pg_arrays rather than psycopg's generic list dumper.
_FENCE = "staffgraph_check_fence(%(fence_run)s, %(fence_token)s) AS fence"
_OPEN = "(VALUES (true)) AS unfenced(ok)"

_BLOBS = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %(thread_id)s, %(ns)s, b.channel, b.version, b.type, b.blob
  FROM unnest(%(channels)b::text[], %(versions)b::text[], %(types)b::text[],
              %(blobs)b::bytea[]) AS b(channel, version, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

_CHECKPOINT_ROW = """
INSERT INTO checkpoints
    (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
SELECT %(thread_id)s, %(ns)s, %(checkpoint_id)s, %(parent_id)s::text, %(checkpoint)s,
       %(metadata)s
  FROM {source}
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata
"""

_PUT_WRITES = """
INSERT INTO checkpoint_writes
    (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(thread_id)s, %(ns)s, %(checkpoint_id)s, %(task_id)s, %(task_path)s,
       w.idx, w.channel, w.type, w.blob
  FROM {source}, unnest(%(idxs)b::int[], %(channels)b::text[], %(types)b::text[],
                        %(blobs)b::bytea[]) AS w(idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) {conflict}
"""
_REPLACE = "DO UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob"
_KEEP = "DO NOTHING"

CHECKPOINT, WRITES_REPLACE, WRITES_KEEP = "checkpoint", "writes, replaced", "writes, kept"
"""The kinds of write: a checkpoint with its new blobs, a task's writes (replacing an earlier
attempt's, for the special channels, or keeping it)."""

_PARTS = {
    CHECKPOINT: (_BLOBS, _CHECKPOINT_ROW),
    WRITES_REPLACE: (_PUT_WRITES.replace("{conflict}", _REPLACE),),
    WRITES_KEEP: (_PUT_WRITES.replace("{conflict}", _KEEP),),
}
"""Each kind's statements, its rows selected ``FROM {source}``: the fence, or nothing."""


def _one_statement(parts: Sequence[str], source: str) -> str:
    """A kind's statements as one: all but the last as CTEs of the last."""
    *before, last = (part.replace("{source}", source) for part in parts)
    ctes = ", ".join(f"part{i} AS ({cte})" for i, cte in enumerate(before))
    return f"WITH {ctes}{last}" if ctes else last


_SQL = {
    kind: {fenced: _one_statement(parts, _FENCE if fenced else _OPEN) for fenced in (False, True)}
    for kind, parts in _PARTS.items()
}
"""One write alone: ``_SQL[kind][fenced]``."""

MAX_BATCH = 8
"""Most writes of a run sent as one statement; more in one turn start another batch."""

_BATCH_WHAT = "saving checkpoint writes"
"""What a send of several writes is called in the retry log."""

_PLACEHOLDER = re.compile(r"%\((\w+)\)")
_NAMED = re.compile(r"%\((\w+)\)[sb]")
"""A named placeholder whole (its format letter included), to number it for Postgres."""


_LOCK_THREAD = (
    " FROM (SELECT count(*) FROM (SELECT 1 FROM threads WHERE thread_id = %(thread_id)s"
    " FOR UPDATE) AS thread) AS locked"
)
"""The FROM of a fence that first locks the writes' thread (its row, when there is one)."""


@functools.cache
def _batch_sql(kinds: tuple[str, ...], *, then: str = "") -> str:
    """One statement making the writes of ``kinds``, in order, behind one lease check.

    Write ``i``'s parameters are named with the suffix ``_i``. The fence is a CTE every write
    selects its rows from: no row lands unless it ran, and its error fails the whole statement,
    so every write lands or none does. ``then``: a main query to run once every write is made
    (each write's CTE then returns a row per row it wrote), the fence locking the first write's
    thread before it checks (and locks) the run; without one, ``SELECT 1``.
    """
    locked = _PLACEHOLDER.sub(functools.partial(_suffix, 0), _LOCK_THREAD) if then else ""
    ctes = [f"fence AS MATERIALIZED (SELECT {_FENCE}{locked})"]
    made = []
    for i, kind in enumerate(kinds):
        for j, part in enumerate(_PARTS[kind]):
            body = part.replace("{source}", "fence")
            body = _PLACEHOLDER.sub(functools.partial(_suffix, i), body)
            ctes.append(f"w{i}_{j} AS ({body}{' RETURNING 1' if then else ''})")
            made.append(f"(SELECT count(*) FROM w{i}_{j})")
    if not then:
        return "WITH " + ",\n".join(ctes) + "\nSELECT 1"
    # Read whole in the main query's one-time filter, the writes are made before it runs
    # (unread, Postgres would make them after it).
    return "WITH " + ",\n".join(ctes) + f"\n{then} WHERE {' + '.join(made)} >= 0"


@functools.cache
def _ending_sql(kinds: tuple[str, ...], function: str, count: int) -> tuple[str, tuple[str, ...]]:
    """The writes of ``kinds`` behind the thread-locking fence, then ``SELECT * FROM
    function(...)`` with ``count`` arguments once they are made, in Postgres's own
    placeholders; and the names of the writes' parameters, in the order of theirs."""
    names: dict[str, int] = {}

    def number(placeholder: re.Match[str]) -> str:
        return f"${names.setdefault(placeholder[1], len(names) + 1)}"

    call = f"SELECT * FROM {function}({{args}})"
    sql = _NAMED.sub(number, _batch_sql(kinds, then=call))
    args = ", ".join(f"${n}" for n in range(len(names) + 1, len(names) + 1 + count))
    return sql.replace("{args}", args), tuple(names)


def _suffix(i: int, placeholder: re.Match[str]) -> str:
    """A parameter's placeholder renamed for write ``i`` of a batch."""
    return f"%({placeholder[1]}_{i})"


def _key(kind: str, params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The rows a write touches, as far as two writes of one statement may not share them."""
    task = params["task_id"] if kind != CHECKPOINT else None
    return (kind == CHECKPOINT, params["ns"], params["checkpoint_id"], task)


Statement = tuple[str, dict[str, Any]]
"""SQL and its parameters."""

_Write = tuple[str, dict[str, Any], "asyncio.Future[None] | None"]
"""A fenced write waiting for its turn's batch: its kind, its parameters, and the future its
caller awaits (``None`` for the write that sends the batch)."""


class WriteBatcher:
    """Sends the checkpointer's writes: alone outside a run, batched per run inside one."""

    def __init__(self) -> None:
        """No batch waiting yet."""
        self._batches: dict[RunFence, list[_Write]] = {}

    async def write(
        self, pool: AsyncConnectionPool[Any], kind: str, params: dict[str, Any], *, what: str
    ) -> None:
        """Make one write of ``kind`` with ``params`` on ``pool``; retried on lost connections.

        Inside a run, the run's writes of this turn of the event loop are sent together: the
        first one waits one turn for the others, then sends them all; the others wait for it.

        Raises:
            LeaseLost: inside a run whose lease is no longer held with its token.
        """
        fence = RUN_FENCE.get()
        if fence is None:
            await execute(pool, [(_SQL[kind][False], params)], what=what)
            return
        batch = self._batches.get(fence)
        if batch is not None:
            joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            batch.append((kind, params, joined))
            if len(batch) >= MAX_BATCH:
                del self._batches[fence]
            await joined
            return
        batch = [(kind, params, None)]
        self._batches[fence] = batch
        try:
            try:
                await asyncio.sleep(0)  # the writes the run makes in this turn join the batch
            finally:
                if self._batches.get(fence) is batch:
                    del self._batches[fence]
            await self._send(pool, fence, batch, what=what)
        except BaseException as exc:
            for _, _, waiter in batch[1:]:
                if waiter is not None and not waiter.done():
                    if isinstance(exc, Exception):
                        waiter.set_exception(exc)
                    else:  # the run is being cancelled, these writes with it
                        waiter.cancel()
            raise
        for _, _, waiter in batch[1:]:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    @staticmethod
    async def _send(
        pool: AsyncConnectionPool[Any], fence: RunFence, batch: list[_Write], *, what: str
    ) -> None:
        """Send a run's batch of writes as one fenced statement (one transaction)."""
        statements = fenced_statements(fence, [(kind, params) for kind, params, _ in batch])
        with lease_lost_as(fence):
            await execute(pool, statements, what=what if len(batch) == 1 else _BATCH_WHAT)


@dataclass(frozen=True)
class FencedWrites:
    """Writes of a run not sent yet, to go behind its lease fence in the caller's transaction
    (:meth:`state.held_writes.HeldWrites.take`: a run's last writes, sent with its end)."""

    fence: RunFence
    writes: Sequence[tuple[str, dict[str, Any]]] = ()
    """Each write's kind and parameters, in order."""

    def __bool__(self) -> bool:
        """Whether there is anything to write."""
        return bool(self.writes)

    def ending_with(self, function: str, args: Sequence[Any]) -> tuple[str, list[Any]] | None:
        """The writes, then ``SELECT * FROM function(args...)``, as one statement; ``None``
        when the writes do not fit in one (then :meth:`statements_after_thread_lock`).

        The fence locks the writes' thread (``FOR UPDATE``) before it checks and locks the run,
        the order in which a run's finish and a cancel lock them, and the function is called
        once every write is made, as it was by a statement of its own after the writes'.

        The SQL is in Postgres's own placeholders (``$1``...), for psycopg's raw cursor: a
        run's end with its last writes has some 60 parameters, and psycopg keeps its parsing of
        a named-placeholder query only up to 50, so it would parse the 4 KB statement again at
        every run.
        """
        writes = self.writes
        if not writes or len(writes) > MAX_BATCH or not _distinct(writes):
            return None
        sql, names = _ending_sql(tuple(kind for kind, _ in writes), function, len(args))
        params = _batch_params(self.fence, writes)
        return sql, [params[name] for name in names] + list(args)

    def statements_after_thread_lock(self) -> list[Statement]:
        """The writes as statements behind the fence, after a statement locking their thread
        (``FOR UPDATE``) before the fence locks the run: for writes that :meth:`ending_with`
        cannot make in one statement."""
        writes = self.writes
        if not writes:
            return []
        lock = f"SELECT 1{_LOCK_THREAD}"
        return [(lock, {"thread_id": writes[0][1]["thread_id"]})] + fenced_statements(
            self.fence, writes
        )


def fenced_statements(
    fence: RunFence, writes: Sequence[tuple[str, dict[str, Any]]]
) -> list[Statement]:
    """The statements that make ``writes`` (kind, parameters), in order, behind ``fence``.

    One statement for up to :data:`MAX_BATCH` writes. Two writes to the same rows (the same
    task's writes twice) cannot share a statement: such writes go one after the other, each
    fenced, as unbatched writes do.
    """
    fenced = {"fence_run": fence.run_id, "fence_token": fence.token}
    if len(writes) == 1:
        kind, params = writes[0]
        return [(_SQL[kind][True], {**params, **fenced})]
    if not _distinct(writes):
        return [(_SQL[kind][True], {**params, **fenced}) for kind, params in writes]
    statements: list[Statement] = []
    for start in range(0, len(writes), MAX_BATCH):
        chunk = writes[start : start + MAX_BATCH]
        statements.append(
            (_batch_sql(tuple(kind for kind, _ in chunk)), _batch_params(fence, chunk))
        )
    return statements


def _distinct(writes: Sequence[tuple[str, dict[str, Any]]]) -> bool:
    """Whether no two of ``writes`` touch the same rows (so they may share a statement)."""
    return len({_key(kind, params) for kind, params in writes}) == len(writes)


def _batch_params(fence: RunFence, writes: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The parameters of a statement making ``writes`` (write ``i``'s with the suffix ``_i``)."""
    merged: dict[str, Any] = {"fence_run": fence.run_id, "fence_token": fence.token}
    for i, (_, params) in enumerate(writes):
        merged.update({f"{name}_{i}": value for name, value in params.items()})
    return merged


async def execute(
    pool: AsyncConnectionPool[Any], statements: list[Statement], *, what: str
) -> None:
    """Run ``statements`` one after the other on one connection, retried on lost connections."""

    async def attempt() -> None:
        async with pool.connection() as conn, conn.cursor(binary=True) as cur:
            for query, args in statements:
                await cur.execute(query, args)

    await retrying(attempt, what=what)
