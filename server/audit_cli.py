"""``staffgraph audit verify``: recompute the audit log's hash chain and report the first break.

Exit codes: 0 the chain is intact (prints how many entries and the head's hash), 1 it is broken
(prints the first entry that does not fit and why), 2 the database cannot be checked.
Run it where the server's settings apply (``DATABASE_URL``, or the embedded Postgres in
``STAFFGRAPH_HOME``). It only reads.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from contextlib import ExitStack
from typing import Any

from state.settings import Settings

__all__ = ["add_audit_parser", "run_audit"]

_HEAD = re.compile(r"^([1-9][0-9]{0,18}):([0-9a-f]{64})$")


def _head(text: str) -> tuple[int, str]:
    found = _HEAD.match(text)
    if found is None:
        raise argparse.ArgumentTypeError("expected SEQ:HASH as printed by an earlier verify")
    return int(found.group(1)), found.group(2)


def add_audit_parser(sub: Any) -> None:
    """Add ``audit`` and its subcommands to the ``staffgraph`` parser."""
    audit = sub.add_parser("audit", help="check the audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify", help="recompute the hash chain; exit 1 naming the first entry that breaks it"
    )
    verify.add_argument(
        "--expect",
        type=_head,
        metavar="SEQ:HASH",
        help="also check that entry SEQ still has HASH (a head printed by an earlier verify, "
        "kept elsewhere): catches a log rewritten from the start",
    )


async def _verify(url: str, expect: tuple[int, str] | None) -> int:
    # Imported here: the `staffgraph` command line loads this module to build its parser.
    import psycopg
    from psycopg.rows import dict_row

    from state.audit import verify_log

    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, row_factory=dict_row
    ) as conn:
        cur = await conn.execute("SELECT to_regclass('audit_log') IS NOT NULL AS present")
        row = await cur.fetchone()
        if row is None or not row["present"]:
            print("staffgraph: this database has no audit log (start the server once to create it)")
            return 2
        report = await verify_log(conn)
        if report.broken is not None:
            print(f"audit log broken at entry {report.broken.seq}: {report.broken.reason}")
            return 1
        if expect is not None:
            cur = await conn.execute("SELECT hash FROM audit_log WHERE seq = %s", (expect[0],))
            row = await cur.fetchone()
            if row is None or row["hash"] != expect[1]:
                print(
                    f"audit log broken at entry {expect[0]}: it no longer has the hash "
                    "recorded earlier (the log was rewritten)"
                )
                return 1
        print(
            f"audit log intact: {report.checked} entries; head {report.head_seq}:{report.head_hash}"
        )
        return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    from server.startup import resolve_database
    from state.db import check_connection

    with ExitStack() as stack:
        database = resolve_database(settings, stack)
        await check_connection(database.url, timeout=settings.database.connect_timeout)
        return await _verify(database.url, args.expect)
    return 2  # unreachable: ExitStack does not swallow


def run_audit(settings: Settings, args: argparse.Namespace) -> int:
    """Run one ``staffgraph audit`` subcommand; returns the exit code."""
    return asyncio.run(_run(settings, args))
