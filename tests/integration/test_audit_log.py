"""The audit log in Postgres: appends chain and serialise, the database refuses edits, and a
tampered chain (altered, removed or reordered rows) is found at the first entry that breaks.

Each test gets its own database: tampering needs a superuser to get past the triggers, and the
session database's chain must stay intact for the server tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row

from state.audit import GENESIS_HASH, AuditEntry, append_entry, entry_hash, verify_log
from state.db import Persistence, open_persistence
from state.memory import MemoryScope, MemoryStore, Provenance
from tests.support.auth.matrix import cli
from tests.support.server import fresh_database


@pytest.fixture
async def audit_db(database_url: str) -> AsyncIterator[tuple[str, Persistence]]:
    url = fresh_database(database_url)
    async with open_persistence(url, max_size=8) as persistence:
        yield url, persistence


async def _append(
    persistence: Persistence, action: str = "thread.deleted", **kw: Any
) -> AuditEntry:
    async with persistence.pool.connection() as conn, conn.transaction():
        return await append_entry(
            conn, action, actor=kw.pop("actor", "alice"), resource_type="thread", **kw
        )


async def _superuser_sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``statement`` with triggers off (as a superuser can): how tampering gets past them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(statement.encode() if not params else statement, params)


async def test_entries_chain_from_genesis_and_verify_intact(
    audit_db: tuple[str, Persistence],
) -> None:
    _, persistence = audit_db
    first = await _append(persistence, resource_id="t1", details={"b": [1, 2.5], "a": "é"})
    second = await _append(persistence, "key.created", actor=None, details={"n": 10**30})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert entry_hash(first) == first.hash
    async with persistence.pool.connection() as conn:
        report = await verify_log(conn)
    assert report.broken is None
    assert (report.checked, report.head_seq, report.head_hash) == (2, 2, second.hash)


async def test_entry_commits_and_rolls_back_with_the_callers_transaction(
    audit_db: tuple[str, Persistence],
) -> None:
    _, persistence = audit_db
    with pytest.raises(ZeroDivisionError):
        async with persistence.pool.connection() as conn, conn.transaction():
            await append_entry(conn, "thread.deleted", actor="alice")
            raise ZeroDivisionError
    entry = await _append(persistence)
    assert entry.seq == 1  # the rolled-back append left no entry and no gap
    async with persistence.pool.connection() as conn:
        with pytest.raises(RuntimeError, match="open transaction"):
            await append_entry(conn, "thread.deleted", actor="alice")  # autocommit, no tx
        for bad in ("deleted", "Thread.Deleted", "x" * 70 + ".y"):
            with pytest.raises(ValueError, match="action"):
                async with conn.transaction():
                    await append_entry(conn, bad, actor="alice")
        with pytest.raises(ValueError, match="actor"):
            async with conn.transaction():
                await append_entry(conn, "thread.deleted", actor="a\x00b")
        with pytest.raises(ValueError, match="JSON"):
            async with conn.transaction():
                await append_entry(conn, "thread.deleted", actor="a", details={"x": float("nan")})
        assert (await verify_log(conn)).checked == 1


async def test_concurrent_appenders_never_fork_the_chain(
    audit_db: tuple[str, Persistence],
) -> None:
    _, persistence = audit_db
    entries = await asyncio.gather(
        *(_append(persistence, resource_id=f"t{i}", details={"i": i}) for i in range(60))
    )
    assert sorted(e.seq for e in entries) == list(range(1, 61))
    assert len({e.prev_hash for e in entries}) == 60
    async with persistence.pool.connection() as conn:
        report = await verify_log(conn)
    assert report.broken is None and report.checked == 60


async def test_the_database_refuses_to_change_or_remove_entries(
    audit_db: tuple[str, Persistence],
) -> None:
    _, persistence = audit_db
    await _append(persistence)
    await _append(persistence)
    async with persistence.pool.connection() as conn:
        for statement in (
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "TRUNCATE audit_log",
            "DELETE FROM audit_head",
            "UPDATE audit_head SET seq = 1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement.encode())
        assert (await verify_log(conn)).checked == 2


async def test_a_non_superuser_owner_has_no_update_or_delete_right(
    audit_db: tuple[str, Persistence],
) -> None:
    url, persistence = audit_db
    await _append(persistence)
    role = f"sg_owner_{id(persistence)}"
    async with persistence.pool.connection() as conn:
        await conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        await conn.execute(
            sql.SQL("ALTER TABLE audit_log OWNER TO {}").format(sql.Identifier(role))
        )
        await conn.execute(
            sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM {}").format(
                sql.Identifier(role)
            )
        )
        async with conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
            # The owner may switch the trigger off, but still has no right to edit rows.
            await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
                await conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")


async def _broken(persistence: Persistence) -> tuple[int, str]:
    async with persistence.pool.connection() as conn:
        report = await verify_log(conn)
    assert report.broken is not None
    return report.broken.seq, report.broken.reason


@pytest.mark.parametrize(
    ("tamper", "seq", "reason"),
    [
        ("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3", 3, "altered"),
        ("UPDATE audit_log SET details = '{\"x\":' WHERE seq = 2", 2, "altered"),
        ("UPDATE audit_log SET at = at + interval '1 second' WHERE seq = 4", 4, "altered"),
        ("DELETE FROM audit_log WHERE seq = 3", 3, "missing"),
        ("DELETE FROM audit_log WHERE seq >= 4", 4, "missing"),
        (
            "UPDATE audit_log SET seq = 100 WHERE seq = 2; "
            "UPDATE audit_log SET seq = 2 WHERE seq = 3; "
            "UPDATE audit_log SET seq = 3 WHERE seq = 100",
            2,
            "does not chain",
        ),
        ("UPDATE audit_log SET seq = 9 WHERE seq = 5", 5, "missing"),
    ],
)
async def test_tampering_is_found_at_the_first_broken_entry(
    audit_db: tuple[str, Persistence], tamper: str, seq: int, reason: str
) -> None:
    url, persistence = audit_db
    for i in range(5):
        await _append(persistence, resource_id=f"t{i}")
    await _superuser_sql(url, tamper)
    found_seq, found_reason = await _broken(persistence)
    assert found_seq == seq
    assert reason in found_reason


async def test_a_row_rewritten_with_a_fresh_hash_still_breaks_the_next_link(
    audit_db: tuple[str, Persistence],
) -> None:
    url, persistence = audit_db
    for _ in range(3):
        await _append(persistence)
    async with persistence.pool.connection() as conn:
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT * FROM audit_log WHERE seq = 2")
        row = await cur.fetchone()
    assert row is not None
    forged = AuditEntry(**{**row, "actor": "mallory", "details": {}})
    await _superuser_sql(
        url,
        "UPDATE audit_log SET actor = 'mallory', hash = %s WHERE seq = 2",
        (entry_hash(forged),),
    )
    assert await _broken(persistence) == (
        3,
        "entry 3 does not chain to entry 2: its prev_hash is not that entry's hash "
        "(an entry was altered, removed or reordered)",
    )


async def test_staffgraph_audit_verify_exits_1_naming_the_first_broken_entry(
    audit_db: tuple[str, Persistence],
) -> None:
    url, persistence = audit_db
    for i in range(4):
        await _append(persistence, resource_id=f"t{i}")
    intact = await asyncio.to_thread(cli, url, "audit", "verify")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert intact.stdout.startswith("audit log intact: 4 entries; head 4:")
    head = intact.stdout.strip().rsplit(" ", 1)[-1]
    again = await asyncio.to_thread(cli, url, "audit", "verify", "--expect", head)
    assert again.returncode == 0, again.stdout

    await _superuser_sql(url, "UPDATE audit_log SET resource_id = 'other' WHERE seq = 3")
    altered = await asyncio.to_thread(cli, url, "audit", "verify")
    assert altered.returncode == 1
    assert altered.stdout.startswith("audit log broken at entry 3: entry 3 was altered")

    await _superuser_sql(url, "DELETE FROM audit_log WHERE seq = 2")
    removed = await asyncio.to_thread(cli, url, "audit", "verify")
    assert removed.returncode == 1
    assert removed.stdout.startswith("audit log broken at entry 2: entry 2 is missing")

    bad = await asyncio.to_thread(cli, url, "audit", "verify", "--expect", "4:nothex")
    assert bad.returncode == 2 and "SEQ:HASH" in bad.stderr


async def test_an_agent_forgetting_and_an_erasure_are_audited_with_the_deletion(
    audit_db: tuple[str, Persistence],
) -> None:
    _, persistence = audit_db
    memory = MemoryStore(persistence.store)
    alice = MemoryScope(role="writer", user_id="alice")
    who = Provenance(recorded_by="writer", run_id="run-1")
    fact = await memory.write_fact(alice, "The launch is on 3 June.", provenance=who)
    await memory.write_fact(alice, "The brand colour is teal.", provenance=who)
    assert await memory.forget(alice, fact.memory.ref) is True
    assert await memory.forget(alice, fact.memory.ref) is False  # nothing deleted: no entry
    assert await memory.delete_user("alice", actor="root") == 1
    async with persistence.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, action, resource_type, resource_id, details::jsonb AS details "
            "FROM audit_log ORDER BY seq"
        )
        rows = await cur.fetchall()
        assert (await verify_log(conn)).broken is None
    namespace = ["memories", "user:alice", "writer", "semantic"]
    assert rows == [
        {
            "actor": "alice",
            "action": "memory.deleted",
            "resource_type": "store_item",
            "resource_id": ".".join(namespace) + "/" + fact.memory.key,
            "details": {
                "namespace": namespace,
                "key": fact.memory.key,
                "by": "forget tool",
                "role": "writer",
            },
        },
        {
            "actor": "root",
            "action": "memory.deleted",
            "resource_type": "user_memories",
            "resource_id": "alice",
            "details": {"deleted": 1, "namespace_prefix": "memories.user:alice"},
        },
    ]
