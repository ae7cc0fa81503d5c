"""An upgrade does not stall the service, nor do the processes starting beside it fail.

Migration 0150 (the thread-end index) runs outside a transaction and builds its index
concurrently; processes that start while another holds the setup lock wait as long as it is
running statements. Each test starts from a database migrated up to the version before 0150, as
an install made before it is; most open a transaction writing to ``runs`` (a run being created
or finished) before the upgrade begins.
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

from state.db import _SETUP_LOCK_KEY, DatabaseUnavailable, _acquire_setup_lock
from state.schema import apply_migrations
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
        name = url.split("?", 1)[0].rsplit("/", 1)[1]
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
            await admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


async def _waiting_for_a_lock(observer: psycopg.AsyncConnection[Any], pid: int) -> None:
    """Return once backend ``pid`` waits for a lock (another transaction to end)."""
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        cur = await observer.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited for a lock")


async def _index_state(conn: psycopg.AsyncConnection[Any]) -> tuple[list[bool], list[int]]:
    """Whether each index named ``_INDEX`` is valid, and whether migration 0150 is recorded."""
    cur = await conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s",
        (_INDEX,),
    )
    valid = [row[0] for row in await cur.fetchall()]
    cur = await conn.execute("SELECT version FROM schema_version WHERE version = %s", (_VERSION,))
    return valid, [row[0] for row in await cur.fetchall()]


async def _index_oid(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT to_regclass(%s)::oid", (_INDEX,))
    row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


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


async def test_an_index_already_built_is_kept(before_the_index: str) -> None:
    # Built by an operator ahead of the upgrade, or by an attempt that stopped before its record.
    async with await psycopg.AsyncConnection.connect(before_the_index, autocommit=True) as conn:
        await conn.execute(
            sql.SQL(
                "CREATE INDEX CONCURRENTLY {} ON runs (thread_id, ended_at) "
                "WHERE ended_at IS NOT NULL"
            ).format(sql.Identifier(_INDEX))
        )
        built = await _index_oid(conn)

        assert await apply_migrations(conn) == [_VERSION]
        assert await _index_oid(conn) == built
        assert await _index_state(conn) == ([True], [_VERSION])


async def _polled_twice(
    observer: psycopg.AsyncConnection[Any], pid: int, waiting: asyncio.Task[None]
) -> None:
    """Return once backend ``pid`` has asked for the setup lock twice; raise what ``waiting``
    raised if it ended first."""
    seen: set[Any] = set()
    while len(seen) < 2:
        if waiting.done():
            await waiting
            raise AssertionError("took the setup lock while another session held it")
        cur = await observer.execute(
            "SELECT query_start FROM pg_stat_activity"
            " WHERE pid = %s AND query LIKE '%%pg_try_advisory_lock%%'",
            (pid,),
        )
        seen.update(row[0] for row in await cur.fetchall())
        await asyncio.sleep(0.01)


async def test_a_start_waits_for_a_setup_still_running_statements(before_the_index: str) -> None:
    url = before_the_index
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as holder,
        await psycopg.AsyncConnection.connect(url) as blocking,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as starting,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as observer,
    ):
        await holder.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
        await blocking.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        # The holder's long statement: as a migration's index build on a big table would be. It
        # lets go of the lock as it ends, so the holder is never seen idle while holding it (a
        # starter with no time to wait gives up on an idle holder, as it should).
        working = asyncio.create_task(
            holder.execute(
                "SELECT pg_advisory_unlock(%s) FROM (SELECT count(*) FROM runs) AS counted",
                (_SETUP_LOCK_KEY,),
            )
        )
        try:
            await _waiting_for_a_lock(observer, holder.info.backend_pid)
            # No time to wait at all, but the holder is running a statement.
            waiting = asyncio.create_task(_acquire_setup_lock(starting, timeout=0))
            await _polled_twice(observer, starting.info.backend_pid, waiting)
        finally:
            await blocking.rollback()
            await working
        await waiting


async def test_a_start_gives_up_on_a_setup_lock_held_by_an_idle_session(
    before_the_index: str,
) -> None:
    url = before_the_index
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as holder,
        await psycopg.AsyncConnection.connect(url, autocommit=True) as starting,
    ):
        await holder.execute("SELECT pg_advisory_lock(%s)", (_SETUP_LOCK_KEY,))
        with pytest.raises(DatabaseUnavailable, match="without running a statement"):
            await _acquire_setup_lock(starting, timeout=0.2)
