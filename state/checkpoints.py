"""LangGraph's Postgres checkpointer, fenced by the run's lease and retried on lost connections.

:class:`FencedPostgresSaver` is ``AsyncPostgresSaver`` with two changes:

- Inside a run (:data:`state.fencing.RUN_FENCE` set), every checkpoint and pending-writes write
  runs in one transaction that first checks the run's lease token (:func:`check_fence`). A
  worker whose lease was taken over writes nothing; it gets :class:`LeaseLost` and stops.
- Writes and the point reads a run makes are retried with backoff on connection-level errors
  (a Postgres restart); all of them are upserts or reads, so a repeat is harmless.

Outside a run (the API reading state, ``update_state``) it behaves as LangGraph's saver, but
without the saver-wide lock: each operation takes its own pool connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.base import CheckpointTuple as _Tuple
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from state.fencing import RUN_FENCE, check_fence
from state.retry import retrying

__all__ = ["FencedPostgresSaver"]


class FencedPostgresSaver(AsyncPostgresSaver):
    """``AsyncPostgresSaver`` on a pool, fenced by the run's lease, retrying lost connections."""

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool):
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        fence = RUN_FENCE.get()
        async with self.conn.connection() as conn:
            if not pipeline:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
                return
            # The writes of one call commit together, behind the fence when a run makes them.
            async with (
                conn.transaction(),
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
        put = super().aput
        return await retrying(
            lambda: put(config, checkpoint, metadata, new_versions), what="saving a checkpoint"
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's pending writes (fenced inside a run; retried on lost connections)."""
        put = super().aput_writes
        await retrying(
            lambda: put(config, writes, task_id, task_path), what="saving pending writes"
        )

    async def aget_tuple(self, config: RunnableConfig) -> _Tuple | None:
        """Read one checkpoint (retried on lost connections)."""
        get = super().aget_tuple
        return await retrying(lambda: get(config), what="reading a checkpoint")
