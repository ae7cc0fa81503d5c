"""An upgrade's index build does not stall the service: migrations run outside a transaction.

Each test starts from a database migrated up to the version before the thread-end index
(migration 0150), as an install made before it is, with a transaction already writing to
``runs`` (a run being created or finished) when the upgrade begins.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from state.db import _outside_transaction_statements, apply_migrations
from tests.support.server import fresh_database

_INDEX = "runs_thread_ended"
_VERSION = 150
_WRITE = "UPDATE runs SET updated_at = updated_at WHERE false"  # a write's lock, no rows


@pytest.fixture
async def before_the_index(database_url: str) -> AsyncIterator[str]:
    """A database migrated as one made before migration 0150 is."""
    url = fresh_database(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await apply_migrations(conn)
            await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(_INDEX)))
            await conn.execute("DELETE FROM schema_version WHERE version = %s", (_VERSION,))
        yield url
    finally:
        name = url.rsplit("/", 1)[1]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _waiting_for_a_lock(observer: psycopg.AsyncConnection[Any], pid: int) -> None:
    """Return once backend ``pid`` waits for a lock (the writer's transaction to end)."""
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        cur = await observer.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the migration (backend {pid}) never waited for the writer")


async def _index_state(conn: psycopg.AsyncConnection[Any]) -> tuple[list[bool], list[int]]:
    cur = await conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s",
        (_INDEX,),
    )
    valid = [row[0] for row in await cur.fetchall()]
    cur = await conn.execute("SELECT version FROM schema_version WHERE version = %s", (_VERSION,))
    return valid, [row[0] for row in await cur.fetchall()]


@dataclass
class _Upgrade:
    """An upgrade started while another transaction writes to ``runs``."""

    task: asyncio.Task[list[int]]
    migrator: psycopg.AsyncConnection[Any]
    writing: psycopg.AsyncConnection[Any]  # in its transaction until the test ends it
    other: psycopg.AsyncConnection[Any]  # autocommit, for the test's own statements


@asynccontextmanager
async def _upgrade_behind_a_writer(url: str) -> AsyncIterator[_Upgrade]:
    """Open a write on ``runs``, start the migrations, and yield once they wait for the write."""
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as migrator,
        await psycopg.AsyncConnection.connect(url) as writing,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as other,
    ):
        await writing.execute(_WRITE)  # its transaction stays open
        task = asyncio.create_task(apply_migrations(migrator))
        try:
            await _waiting_for_a_lock(other, migrator.info.backend_pid)
            yield _Upgrade(task, migrator, writing, other)
        finally:
            await writing.rollback()
            await asyncio.gather(task, return_exceptions=True)


async def test_writes_go_on_while_an_upgrade_waits_to_build_the_index(
    before_the_index: str,
) -> None:
    async with _upgrade_behind_a_writer(before_the_index) as upgrade:
        # A plain CREATE INDEX queues for its lock behind the open write, and every later
        # write queues behind it: this one would give up after 3 s.
        await upgrade.other.execute("SET lock_timeout = '3s'")
        await upgrade.other.execute(_WRITE)
        assert not upgrade.task.done()

        await upgrade.writing.rollback()
        assert await upgrade.task == [_VERSION]
        assert await _index_state(upgrade.other) == ([True], [_VERSION])


async def test_a_build_stopped_part_way_is_built_anew_at_the_next_start(
    before_the_index: str,
) -> None:
    async with _upgrade_behind_a_writer(before_the_index) as upgrade:
        pid = upgrade.migrator.info.backend_pid
        await upgrade.other.execute("SELECT pg_cancel_backend(%s)", (pid,))
        with pytest.raises(psycopg.errors.QueryCanceled):
            await upgrade.task
        await upgrade.writing.rollback()
        # What a stopped concurrent build leaves: an invalid index, no record of the migration.
        assert await _index_state(upgrade.other) == ([False], [])

        assert await apply_migrations(upgrade.migrator) == [_VERSION]
        assert await _index_state(upgrade.other) == ([True], [_VERSION])


def test_statements_outside_a_transaction_are_sent_one_by_one() -> None:
    marked = (
        "-- staffgraph: outside transaction\n-- why\nDROP INDEX CONCURRENTLY IF EXISTS a;\n"
        "CREATE INDEX CONCURRENTLY a\n  ON t (x) WHERE x IS NOT NULL;\n"
    )
    assert _outside_transaction_statements("m", marked) == [
        "DROP INDEX CONCURRENTLY IF EXISTS a",
        "CREATE INDEX CONCURRENTLY a\n  ON t (x) WHERE x IS NOT NULL",
    ]
    assert _outside_transaction_statements("m", "CREATE INDEX a ON t (x);\n") is None
    with pytest.raises(RuntimeError, match="dollar quotes"):
        _outside_transaction_statements(
            "m", "-- staffgraph: outside transaction\nDO $$ BEGIN END $$;\n"
        )
    with pytest.raises(RuntimeError, match="ended by ';'"):
        _outside_transaction_statements(
            "m", "-- staffgraph: outside transaction\nSELECT 1; SELECT 2;\n"
        )
