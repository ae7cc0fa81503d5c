"""LangGraph's Postgres checkpointer, fenced by the run's lease and retried on lost connections.

:class:`FencedPostgresSaver` is ``AsyncPostgresSaver`` with these changes:

- Every checkpoint (with its new blobs) and every task's pending writes is one statement, so
  one round trip and one implicit transaction: inside a run (:data:`state.fencing.RUN_FENCE`
  set) its rows are selected from the lease fence, a function that fails when the run's lease
  is lost, so a worker whose lease was taken over writes nothing; it gets :class:`LeaseLost`
  and stops.
- The writes a run makes in one turn of the event loop go to Postgres together, as one statement
  behind one lease check (:mod:`state.checkpoint_writes`, which holds the writes' SQL): a step's
  checkpoint and the pending writes saved beside it cost one round trip and one commit.
- Writes and the point reads a run makes are retried with backoff on connection-level errors
  (a Postgres restart); all of them are upserts or reads, so a repeat is harmless.
- Loading a checkpoint probes each of its channels' blobs by primary key, so it costs the same
  on a thread with a long history as on a new one (LangGraph's join read every blob of the
  thread), and the thread_id indexes its primary keys make redundant are dropped at setup.
- Checkpoints and writes are (de)serialised on the event loop rather than in a worker thread.
  The work holds the GIL on either thread, so the hop bought no concurrency; it cost a thread
  wake-up and a GIL hand-over per write (a few per run step), and under load each hand-over
  waits for the loop's switch interval.
- A channel value stays inline in the checkpoint's jsonb only when jsonb can hold it: NaN,
  infinities and strings with a NUL character are stored as blobs (LangGraph's saver inlines
  them, and Postgres refuses the checkpoint). The checkpoint's JSON and its metadata's are
  written by orjson (``json.dumps`` where orjson refuses a value).

- Inside a run whose writes may be held (:mod:`state.held_writes`), writes wait in the run's
  :class:`~state.held_writes.HeldWrites` until a node starts after a step that ran nodes,
  the run reads, a short timer fires or the run's finish sends them in its own transaction;
  every read (or delete) the run makes sends them first. Their JSON is written when they are
  made, not when they are sent.

- A run's first read of its thread's latest checkpoint can be answered from
  :class:`PrefetchedCheckpoint`: the server reads that checkpoint in the statement that
  creates and claims the run (:data:`CLAIMED_CHECKPOINT`), which saves the run a statement and
  a round trip before its graph can start.

Outside a run (the API reading state, ``update_state``) it behaves as LangGraph's saver, but
without the saver-wide lock: each operation takes its own pool connection.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.base import CheckpointTuple as _Tuple
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver, Conn
from langgraph.checkpoint.postgres.base import WRITES_IDX_MAP
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from psycopg import AsyncCursor, AsyncPipeline
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from state.checkpoint_writes import CHECKPOINT, WRITES_KEEP, WRITES_REPLACE, WriteBatcher
from state.fencing import RUN_FENCE, check_fence, lease_lost_as
from state.held_writes import HELD_WRITES
from state.pg_arrays import ByteaArray, Int4Array, TextArray
from state.retry import retrying

__all__ = [
    "CHECKPOINT_COLUMNS",
    "CLAIMED_CHECKPOINT",
    "PREFETCHED_CHECKPOINT",
    "REDUNDANT_INDEXES",
    "FencedPostgresSaver",
    "PrefetchedCheckpoint",
]

# LangGraph's read joins a checkpoint's channel versions to checkpoint_blobs on the thread and
# namespace, and Postgres answers that with a hash join over every blob the thread ever stored:
# a run on a thread with a long history read all of it to load one checkpoint. Here each
# channel's blob is looked up on its own (a LATERAL subquery with LIMIT 1 is not flattened into
# a join, so every lookup is one probe of the primary key): the read costs the same on a
# thread's thousandth run as on its first. Same columns, same rows.
_SELECT_CHECKPOINT = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
          from jsonb_each_text(checkpoint -> 'channel_versions') as cv(channel, version)
          cross join lateral (
              select b.channel, b.type, b.blob
                from checkpoint_blobs b
               where b.thread_id = checkpoints.thread_id
                 and b.checkpoint_ns = checkpoints.checkpoint_ns
                 and b.channel = cv.channel
                 and b.version = cv.version
               limit 1
          ) as bl
    ) as channel_values,
    (
        select array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea,
                               cw.blob, convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
          from checkpoint_writes cw
         where cw.thread_id = checkpoints.thread_id
           and cw.checkpoint_ns = checkpoints.checkpoint_ns
           and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """

CLAIMED_CHECKPOINT = "staffgraph_claimed_checkpoint"
"""A function of the run a creation returns (``jsonb``): when it is running (claimed), its
thread's latest root checkpoint, in the columns of the checkpointer's reads; else no row. Made
by :meth:`FencedPostgresSaver.setup`. The creation reads it in its own statement (``... FROM
staffgraph_create_run(...) AS c LEFT JOIN LATERAL staffgraph_claimed_checkpoint(c.run)``):
PL/pgSQL, so volatile, its query takes a snapshot of its own after the creation waited for the
thread's lock, and sees what the thread's previous run committed meanwhile (its end, its last
checkpoint), where a subquery of the statement would see the checkpoints of before the wait."""

_CLAIMED_CHECKPOINT_BODY = f"""
#variable_conflict use_column
BEGIN
    IF p_run ->> 'status' IS DISTINCT FROM 'running' THEN
        RETURN;
    END IF;
    RETURN QUERY {_SELECT_CHECKPOINT.strip()}
     where thread_id = p_run ->> 'thread_id' and checkpoint_ns = ''
     order by checkpoint_id desc limit 1;
END;
"""

_COLUMN_TYPES = {
    "thread_id": "text",
    "checkpoint": "jsonb",
    "checkpoint_ns": "text",
    "checkpoint_id": "text",
    "parent_checkpoint_id": "text",
    "metadata": "jsonb",
    "channel_values": "bytea[]",
    "pending_writes": "bytea[]",
}
CHECKPOINT_COLUMNS = tuple(_COLUMN_TYPES)
"""The columns of a checkpoint as the checkpointer reads it (and :data:`CLAIMED_CHECKPOINT`)."""

_CREATE_CLAIMED_CHECKPOINT = f"""
CREATE FUNCTION {CLAIMED_CHECKPOINT}(p_run jsonb)
RETURNS TABLE ({", ".join(f"{name} {kind}" for name, kind in _COLUMN_TYPES.items())})
LANGUAGE plpgsql AS $body${_CLAIMED_CHECKPOINT_BODY}$body$
"""


class PrefetchedCheckpoint:
    """A thread's latest root checkpoint as read when its run was created: the run's first read.

    The run's own first ``aget_tuple`` of the thread's latest root checkpoint (no
    ``checkpoint_id``, namespace ``""``) is answered from it; whichever read comes first uses
    it up, so every later read (and a run resuming from a given checkpoint) goes to Postgres.
    It is sound because it was read in the transaction that claimed the run, holding the
    thread's row lock with no other run active on the thread: nothing the run could see has
    been written since, except by a concurrent ``update_state``, which a run that started a
    moment later might equally have missed.
    """

    def __init__(self, thread_id: str, row: DictRow | None) -> None:
        """Hold ``row`` (``None``: the thread has no checkpoint yet) for ``thread_id``."""
        self.thread_id = thread_id
        self._row = row
        self._used = False

    def take(self, config: RunnableConfig) -> tuple[bool, DictRow | None]:
        """``(True, row)`` when this answers ``config``'s read; ``(False, None)`` otherwise.

        Used up by the first call, answered or not (checkpoint reads all run on the event
        loop, so no lock is needed); the row is let go then rather than kept for the run.
        """
        if self._used:
            return False, None
        self._used = True
        row, self._row = self._row, None
        configurable = config.get("configurable") or {}
        answers = (
            str(configurable.get("thread_id")) == self.thread_id
            and not configurable.get("checkpoint_ns")
            and not configurable.get("checkpoint_id")
            # LangGraph migrates pending sends of checkpoints before format 4 on read.
            and (row is None or row["checkpoint"].get("v", 0) >= 4)
        )
        return (True, row) if answers else (False, None)


PREFETCHED_CHECKPOINT: ContextVar[PrefetchedCheckpoint | None] = ContextVar(
    "staffgraph_prefetched_checkpoint", default=None
)
"""Set by the executor for a run whose latest checkpoint was read when it was created."""

# LangGraph's schema adds an index on thread_id to each table, besides primary keys that begin
# with thread_id and already serve every lookup by thread. They cost an index insert per row
# written, and with a table's statistics out of date the planner took the writes' thread_id
# index for a single checkpoint's pending writes, reading every write of the thread.
REDUNDANT_INDEXES = (
    "checkpoints_thread_id_idx",
    "checkpoint_blobs_thread_id_idx",
    "checkpoint_writes_thread_id_idx",
)


class FencedPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` on a pool, fenced by the run's lease, retrying lost connections."""

    SELECT_SQL = _SELECT_CHECKPOINT

    def __init__(
        self,
        conn: Conn,
        pipe: AsyncPipeline | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        """As ``AsyncPostgresSaver``: on ``conn`` (the server passes its pool)."""
        super().__init__(conn, pipe, serde)
        self._writes = WriteBatcher()

    async def setup(self) -> None:
        """LangGraph's migrations, then drop the indexes its primary keys make redundant, and
        make :data:`CLAIMED_CHECKPOINT` (after LangGraph's tables, from this module's query).

        Concurrently, outside a transaction (the pool's connections autocommit), so servers
        still running on the database keep writing while it happens; once dropped, nothing
        recreates them (LangGraph records its migrations as applied). The function is made anew
        (dropped and created in one transaction: its columns may have changed) only when its
        body differs from this version's, at the first start after an upgrade.
        """
        await super().setup()
        async with self._cursor() as cur:
            for index in REDUNDANT_INDEXES:
                await cur.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")
            await cur.execute(
                "SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(%s)",
                (f"{CLAIMED_CHECKPOINT}(jsonb)",),
            )
            made = await cur.fetchone()
            if made is None or made["prosrc"] != _CLAIMED_CHECKPOINT_BODY:
                async with cur.connection.transaction():
                    await cur.execute(f"DROP FUNCTION IF EXISTS {CLAIMED_CHECKPOINT}(jsonb)")
                    await cur.execute(_CREATE_CLAIMED_CHECKPOINT)

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool):
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        held = HELD_WRITES.get()
        if held is not None:
            await held.flush()  # the run reads (or deletes) what it has written
        fence = RUN_FENCE.get()
        async with self.conn.connection() as conn:
            if not pipeline:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
                return
            # The writes of one call commit together, behind the fence when a run makes them,
            # sent as one pipeline: a single round trip. Postgres runs what a pipeline sends
            # before its Sync as one implicit transaction, so no BEGIN and COMMIT are needed: a
            # failing statement (the fence's error, surfacing when the pipeline syncs) rolls
            # back the statements before it and skips the ones after.
            with lease_lost_as(fence) if fence is not None else nullcontext():
                async with (
                    conn.pipeline(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur,
                ):
                    if fence is not None:
                        await check_fence(cur, fence)
                    yield cur

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint (fenced inside a run; retried on lost connections)."""
        if not isinstance(self.conn, AsyncConnectionPool):
            save = super().aput
            return await retrying(
                lambda: save(config, checkpoint, metadata, new_versions),
                what="saving a checkpoint",
            )
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        namespace = configurable["checkpoint_ns"]
        # Primitive channel values stay inline in the checkpoint's JSON; the others (and delta
        # snapshots, marked ``True`` inline) go to checkpoint_blobs, one row per new version.
        inline = dict(checkpoint["channel_values"])
        blobs: dict[str, Any] = {}
        for name, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blobs[name] = value
                inline[name] = True
            elif value is not None and not _fits_jsonb(value):
                blobs[name] = inline.pop(name)
        versions = {name: v for name, v in new_versions.items() if name in blobs}
        rows = self._dump_blobs(thread_id, namespace, blobs, versions)
        await self._write(
            CHECKPOINT,
            {
                "thread_id": thread_id,
                "ns": namespace,
                "checkpoint_id": checkpoint["id"],
                "parent_id": configurable.get("checkpoint_id"),
                # Written now: a held write must not see what LangGraph changes afterwards.
                "checkpoint": _encoded(_json({**checkpoint, "channel_values": inline})),
                "metadata": _encoded(_json(get_serializable_checkpoint_metadata(config, metadata))),
                "channels": TextArray(row[2] for row in rows),
                "versions": TextArray(row[3] for row in rows),
                "types": TextArray(row[4] for row in rows),
                "blobs": ByteaArray(row[5] for row in rows),
            },
            what="saving a checkpoint",
            source=metadata.get("source"),
        )
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": namespace,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's pending writes (fenced inside a run; retried on lost connections)."""
        if not isinstance(self.conn, AsyncConnectionPool):
            put_writes = super().aput_writes
            await retrying(
                lambda: put_writes(config, writes, task_id, task_path),
                what="saving pending writes",
            )
            return
        # Writes to the special channels (errors, interrupts...) replace an earlier attempt's;
        # ordinary writes are kept once.
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        configurable = config["configurable"]
        rows = self._dump_writes(
            configurable["thread_id"],
            configurable["checkpoint_ns"],
            configurable["checkpoint_id"],
            task_id,
            task_path,
            writes,
        )
        if replace:
            # One statement may not update a row twice: the last write to an index wins, as
            # when each was its own statement.
            rows = list({row[5]: row for row in rows}.values())
        params = {
            "thread_id": configurable["thread_id"],
            "ns": configurable["checkpoint_ns"],
            "checkpoint_id": configurable["checkpoint_id"],
            "task_id": task_id,
            "task_path": task_path,
            "idxs": Int4Array(row[5] for row in rows),
            "channels": TextArray(row[6] for row in rows),
            "types": TextArray(row[7] for row in rows),
            "blobs": ByteaArray(row[8] for row in rows),
        }
        await self._write(
            WRITES_REPLACE if replace else WRITES_KEEP,
            params,
            what="saving pending writes",
        )

    async def _write(
        self, kind: str, params: dict[str, Any], *, what: str, source: str | None = None
    ) -> None:
        """Make one write, fenced by the run's lease inside a run (held: see
        :mod:`state.held_writes`; else batched: see :mod:`state.checkpoint_writes`); retried.

        ``source``: a checkpoint's metadata source (which held checkpoints a node waits for)."""
        held = HELD_WRITES.get()
        if held is not None and held.open:
            held.add(kind, params, source=source)
            return
        pool = self.conn
        assert isinstance(pool, AsyncConnectionPool)
        await self._writes.write(pool, kind, params, what=what)

    async def aget_tuple(self, config: RunnableConfig) -> _Tuple | None:
        """Read one checkpoint (retried on lost connections; see :class:`PrefetchedCheckpoint`)."""
        prefetched = PREFETCHED_CHECKPOINT.get()
        if prefetched is not None:
            answered, row = prefetched.take(config)
            if answered:
                return None if row is None else await self._load_checkpoint_tuple(row)
        get = super().aget_tuple
        return await retrying(lambda: get(config), what="reading a checkpoint")

    async def _load_checkpoint_tuple(self, value: DictRow) -> _Tuple:
        """A stored row as a checkpoint tuple, its blobs and pending writes loaded here."""
        parent = value["parent_checkpoint_id"]
        return _Tuple(
            {
                "configurable": {
                    "thread_id": value["thread_id"],
                    "checkpoint_ns": value["checkpoint_ns"],
                    "checkpoint_id": value["checkpoint_id"],
                }
            },
            {  # type: ignore[typeddict-item]  # the stored JSON holds the other keys
                **value["checkpoint"],
                "channel_values": {
                    **(value["checkpoint"].get("channel_values") or {}),
                    **self._load_blobs(value["channel_values"]),
                },
            },
            value["metadata"],
            {
                "configurable": {
                    "thread_id": value["thread_id"],
                    "checkpoint_ns": value["checkpoint_ns"],
                    "checkpoint_id": parent,
                }
            }
            if parent
            else None,
            self._load_writes(value["pending_writes"]),
        )


# LangGraph inspects ``aput_writes``'s signature on every run to see whether it takes
# ``task_path``; a precomputed ``__signature__`` answers that without rebuilding it each time.
FencedPostgresSaver.aput_writes.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    FencedPostgresSaver.aput_writes
)


def _fits_jsonb(value: Any) -> bool:
    """Whether a channel value can stay inline in the checkpoint's jsonb and come back equal.

    jsonb holds no NaN or infinity and no NUL character in a string: such values (a score that
    came out NaN, text with a NUL) are stored as blobs, which the serializer keeps exactly.
    """
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int)  # bool included


def _encoded(data: bytes | str) -> Jsonb:
    """A jsonb parameter holding a document already written as JSON."""
    return Jsonb(data, dumps=_as_written)


def _as_written(data: bytes | str) -> bytes | str:
    return data


def _json(value: Any) -> bytes | str:
    """A checkpoint's (or its metadata's) JSON, written by orjson (several times faster than
    ``json.dumps``, which LangGraph's saver uses for both).

    For what ``json.dumps`` writes as JSON Postgres accepts, orjson writes the same document.
    It refuses integers past 64 bits and keys that are not strings, which ``json.dumps`` then
    writes. It writes a few values ``json.dumps`` refuses (datetimes, UUIDs, dataclasses) and
    NaN as ``null`` where ``json.dumps`` writes ``NaN``, which Postgres refuses: metadata that
    failed the save before is stored now. The checkpoint's inline values are JSON-safe
    (:func:`_fits_jsonb`).
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value)
