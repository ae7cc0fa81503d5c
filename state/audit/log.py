"""Appending to the audit log inside the caller's transaction, and reading the chain back."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import pq
from psycopg.rows import dict_row

from state.audit.chain import (
    AuditEntry,
    ChainBreak,
    ChainWalk,
    canonical_json,
    entry_from_row,
    entry_hash,
)

__all__ = [
    "MAX_DETAILS_BYTES",
    "ChainReport",
    "append_entry",
    "iter_entries",
    "verify_log",
]

MAX_DETAILS_BYTES = 256 * 1024
"""Largest canonical ``details`` an entry may carry."""
_MAX_FIELD_CHARS = 512
_ACTION = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_COLUMNS = "seq, at, actor, action, resource_type, resource_id, details, prev_hash, hash"


def _check_field(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value or len(value) > _MAX_FIELD_CHARS:
        raise ValueError(f"audit {name} must be a string of 1 to {_MAX_FIELD_CHARS} characters")
    if "\x00" in value:
        raise ValueError(f"audit {name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"audit {name} must be valid Unicode text") from None


async def append_entry(
    conn: psycopg.AsyncConnection[Any],
    action: str,
    *,
    actor: str | None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the audit log, inside the caller's open transaction.

    The entry commits or rolls back with whatever else the caller's transaction does, so record
    a change in the same transaction that makes it::

        async with pool.connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))
            await append_entry(conn, "thread.deleted", actor=user_id,
                               resource_type="thread", resource_id=str(thread_id))

    Appending locks the chain head (``audit_head``) until the caller's transaction ends: every
    transaction that appends is serialised there, so the chain never forks, and a rolled-back
    transaction leaves no entry and no gap. Keep such transactions short. In a REPEATABLE READ
    or SERIALIZABLE transaction a concurrent append raises
    :class:`psycopg.errors.SerializationFailure`; retry the transaction.

    This signature is stable: other parts of staffgraph (approvals, governance, keys, deletions)
    call it. New optional parameters, if ever, come after ``*`` with defaults.

    Args:
        conn: a connection in an open transaction (``async with conn.transaction()``; or a
            non-autocommit connection, whose implicit transaction the caller commits).
        action: what happened, dotted lower-case: ``<resource>.<verb>`` such as
            ``key.created`` (see :data:`state.audit.ACTIONS` for the ones staffgraph writes).
        actor: the user id who did it; ``None`` for staffgraph itself (required so that every
            caller says which).
        resource_type: the kind of resource acted on (``thread``, ``assistant``, ``api_key``).
        resource_id: its id.
        details: anything else worth keeping, as a JSON object (at most
            :data:`MAX_DETAILS_BYTES` once encoded). Never put secrets here: the log is kept
            forever.

    Returns:
        The entry as stored, with its ``seq`` and ``hash``.

    Raises:
        ValueError: a malformed action, an over-long or non-text field, details that are not
            a JSON object or are too large.
        RuntimeError: ``conn`` is in autocommit mode outside a transaction (the entry would
            commit on its own, and the head lock would not hold).
    """
    if not isinstance(action, str) or len(action) > 64 or not _ACTION.match(action):
        raise ValueError(f"audit action must look like 'resource.verb', got {action!r}")
    for name, value in (
        ("actor", actor),
        ("resource_type", resource_type),
        ("resource_id", resource_id),
    ):
        _check_field(name, value)
    details_text = canonical_json(dict(details) if details is not None else {})
    if len(details_text) > MAX_DETAILS_BYTES:
        raise ValueError(f"audit details must be at most {MAX_DETAILS_BYTES} bytes as JSON")
    if conn.autocommit and conn.info.transaction_status != pq.TransactionStatus.INTRANS:
        raise RuntimeError(
            "append_entry needs the caller's open transaction: "
            "call it inside `async with conn.transaction():`"
        )
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute("SELECT seq, hash FROM audit_head FOR UPDATE")
    head = await cur.fetchone()
    if head is None:
        raise RuntimeError("the audit head row is missing: migration 0060 was not applied")
    entry = AuditEntry(
        seq=head["seq"] + 1,
        # Postgres keeps microseconds, and so does this: the value hashed is the value stored.
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        # Parsed back from the canonical text: what verify reads is exactly what was hashed.
        details=json.loads(details_text),
        prev_hash=head["hash"],
        hash="",
    )
    digest = entry_hash(entry)
    await cur.execute(
        f"INSERT INTO audit_log ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            entry.seq,
            entry.at,
            actor,
            action,
            resource_type,
            resource_id,
            details_text,
            entry.prev_hash,
            digest,
        ),
    )
    await cur.execute(
        "UPDATE audit_head SET seq = %s, hash = %s WHERE only_row", (entry.seq, digest)
    )
    return AuditEntry(**{**entry.__dict__, "hash": digest})


async def iter_entries(
    conn: psycopg.AsyncConnection[Any], *, after: int = 0, batch: int = 1000
) -> AsyncIterator[AuditEntry]:
    """Every entry with ``seq > after``, oldest first, read ``batch`` rows at a time."""
    cur = conn.cursor(row_factory=dict_row)
    while True:
        await cur.execute(
            f"SELECT {_COLUMNS} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s",
            (after, batch),
        )
        rows = await cur.fetchall()
        for row in rows:
            yield entry_from_row(row)
        if len(rows) < batch:
            return
        after = rows[-1]["seq"]


@dataclass(frozen=True)
class ChainReport:
    """What :func:`verify_log` found."""

    checked: int
    """Entries that chain correctly, from the first."""
    head_seq: int
    """The chain head's entry number."""
    head_hash: str
    """The chain head's hash: keep a copy elsewhere to detect a chain rewritten end to end."""
    broken: ChainBreak | None
    """The first break, or ``None`` when the whole log is intact."""


async def verify_log(conn: psycopg.AsyncConnection[Any]) -> ChainReport:
    """Recompute the whole chain from the database and report the first entry that breaks it.

    Reads one consistent snapshot (a REPEATABLE READ, READ ONLY transaction), so appends made
    while it runs do not count as breaks. ``conn`` must not be in a transaction.
    """
    async with conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = conn.cursor(row_factory=dict_row)
        await cur.execute("SELECT seq, hash FROM audit_head")
        head = await cur.fetchone()
        if head is None:
            return ChainReport(0, 0, "", ChainBreak(1, "the chain head row is missing"))
        walk = ChainWalk()
        async for entry in iter_entries(conn):
            broken = walk.step(entry)
            if broken is not None:
                return ChainReport(walk.seq, head["seq"], head["hash"], broken)
        broken = walk.finish((head["seq"], head["hash"]))
        return ChainReport(walk.seq, head["seq"], head["hash"], broken)
