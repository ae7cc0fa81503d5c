"""Our SQL migrations (``state/migrations/NNNN_name.sql``) and how they are applied.

:func:`apply_migrations` applies, in version order, the migrations that the ``schema_version``
table does not record, each in its own transaction, and records each with it. Its caller holds
the setup lock (:func:`state.db.open_persistence`), so processes starting together apply each
migration once.

A migration whose first line is :data:`OUTSIDE_TRANSACTION` is run one statement at a time
in autocommit, and recorded once all have run. That is for index builds on tables the running
service writes to: a plain ``CREATE INDEX`` holds off every write to its table while it builds,
and while it waits for the transactions already writing to it, so an upgrade would stall the
processes of the old version still serving. ``CREATE INDEX CONCURRENTLY`` does not, but runs
only outside a transaction, and one stopped part-way (a crash, a cancel) leaves an invalid index
behind and the migration unrecorded. Such a build must say ``IF NOT EXISTS`` and name its
index: before it runs again, an invalid index of that name is dropped, and a valid one (built
by the attempt that stopped before its record, or by an operator ahead of the upgrade) is kept.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

__all__ = ["OUTSIDE_TRANSACTION", "apply_migrations", "outside_transaction_statements"]

log = logging.getLogger(__name__)

_MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_MIGRATION_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

OUTSIDE_TRANSACTION = "-- staffgraph: outside transaction"
"""First line of a migration that :func:`apply_migrations` runs statement by statement in
autocommit (for ``CREATE INDEX CONCURRENTLY``)."""

_CONCURRENT = r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY"
_CONCURRENT_BUILD = re.compile(_CONCURRENT + r"\b", re.IGNORECASE)
_RESUMABLE_BUILD = re.compile(
    _CONCURRENT + r"\s+IF\s+NOT\s+EXISTS\s+([a-z_][a-z0-9_]*)\s", re.IGNORECASE
)


def _migrations() -> list[tuple[int, str, str]]:
    found = []
    for entry in _MIGRATIONS_DIR.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


def outside_transaction_statements(name: str, text: str) -> list[str] | None:
    """The statements of migration ``name`` (its ``text``) when it is marked
    :data:`OUTSIDE_TRANSACTION`, one by one; ``None`` for an ordinary migration.

    Postgres runs a string of several statements as one transaction, which ``CREATE INDEX
    CONCURRENTLY`` refuses, so they are sent one at a time. Such a migration therefore holds
    plain statements, each ended by ``;`` at the end of a line, with no ``;`` or dollar quote
    inside one, and each concurrent index build says ``IF NOT EXISTS`` and names its index.

    Raises:
        RuntimeError: a marked migration breaks those rules.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != OUTSIDE_TRANSACTION:
        return None
    body = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    if "$" in body:
        raise RuntimeError(f"migration {name} runs outside a transaction: no dollar quotes")
    statements = [part.strip() for part in re.split(r";[ \t]*(?:\n|$)", body)]
    if any(";" in statement for statement in statements):
        raise RuntimeError(f"migration {name}: one statement a line group, each ended by ';'")
    statements = [statement for statement in statements if statement]
    for statement in statements:
        if _CONCURRENT_BUILD.match(statement) and not _RESUMABLE_BUILD.match(statement):
            raise RuntimeError(
                f"migration {name}: a concurrent index build says IF NOT EXISTS and names its "
                "index, so that one stopped part-way can be resumed"
            )
    return statements


async def apply_migrations(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Apply the pending migrations (see the module's docstring). Returns the versions applied.

    ``conn`` must be in autocommit when a pending migration is marked
    :data:`OUTSIDE_TRANSACTION`; that is checked before any is applied.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    cur = await conn.cursor(row_factory=tuple_row).execute("SELECT version FROM schema_version")
    done = {version for (version,) in await cur.fetchall()}
    pending = [
        (version, name, text, outside_transaction_statements(name, text))
        for version, name, text in _migrations()
        if version not in done
    ]
    for _, name, _, statements in pending:
        if statements is not None and not conn.autocommit:
            raise RuntimeError(f"migration {name} runs outside a transaction: use autocommit")
    record = "INSERT INTO schema_version (version, name) VALUES (%s, %s)"
    applied = []
    for version, name, text, statements in pending:
        if statements is not None:
            for statement in statements:
                await _run_alone(conn, statement)
            await conn.execute(record, (version, name))
        else:
            async with conn.transaction():
                await conn.execute(text.encode())  # several statements: no parameters
                await conn.execute(record, (version, name))
        log.info("applied migration %s", name)
        applied.append(version)
    return applied


async def _run_alone(conn: psycopg.AsyncConnection[Any], statement: str) -> None:
    """Run one statement of a migration outside a transaction, first dropping the invalid index
    that a concurrent build of the same index stopped part-way left."""
    build = _RESUMABLE_BUILD.match(statement)
    if build is not None:
        index = build[1].lower()  # as Postgres folds the unquoted name
        cur = await conn.cursor(row_factory=tuple_row).execute(
            "SELECT EXISTS (SELECT FROM pg_index"
            " WHERE indexrelid = to_regclass(%s) AND NOT indisvalid)",
            (index,),
        )
        if (await cur.fetchone()) == (True,):
            log.warning("dropping index %s, left invalid by a build stopped part-way", index)
            await conn.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(index)))
    await conn.execute(statement.encode())
